//! The `[data]` table of a study file and the [`load`] entry point.
//!
//! ```toml
//! [data]
//! dataset = "digits"          # bundled; or "fashion-mnist" (Debian package dataset-fashion-mnist)
//! validation = 0.2            # fraction of the training samples held out for validation
//! max_train = 5000            # optional: train on a subset of the training part
//! augment = false
//!
//! # or one of:
//! format = "idx"              # train_images, train_labels, test_images, test_labels (.gz or not)
//! format = "npy"              # the same four keys, pointing at .npy files; for sequences
//!                             # (layout = "nt" | "ntf") optional train_lengths, test_lengths
//! format = "cifar10"          # dir (holding data_batch_1.bin .. test_batch.bin)
//! format = "cifar100"         # dir (holding train.bin, test.bin)
//! format = "npz"              # path; [data.keys] renames x_train, y_train, x_test, y_test
//!                             # and may name lengths_train, lengths_test
//! format = "csv"              # train, optional test, label_column, header, and:
//! categorical = ["island", 3] # feature columns read as categories (by header name or 0-based
//!                             # index); a column holding no number at all is one anyway
//! categorical_encoding = "onehot" # or "embed": one code feature per column, embedded by the
//!                             # mlp space (codes are never normalized)
//! missing = "error"           # or "mean": fill gaps in numeric columns with the training mean
//! missing_indicator = false   # with "mean": add a 0/1 `name=<missing>` feature per gappy column
//! missing_label = "error"     # or "drop": leave out rows whose label is missing
//! task = "regression"        # csv, npy, npz: the labels are numbers to predict (default
//!                             # "classification"); networks get one output
//! format = "text"             # train, optional test: `label<TAB>text` lines;
//!                             # tokenize = "word" | "char", max_vocab, max_len
//!
//! as_sequence = true          # single-channel images as sequences of rows ([T = H, F = W])
//! ```
//!
//! Sequences (`layout = "nt"` token ids, `"ntf"` floats, text, `as_sequence`) are
//! [`DataKind::Sequence`]: float features are normalized per feature over samples and steps
//! of the training split; token ids are never normalized.
//!
//! CSV categories come from the training file alone (sorted); missing values (empty, `NA`, `?`,
//! ... see [`crate::MISSING_VALUES`]) in a categorical column and categories found only in
//! the test file are "unknown or missing": code 0 under `embed`; under `onehot`, the
//! `name=<missing>` feature when the training file has gaps in that column, else no feature
//! set. A missing value in a numeric column is an error unless `missing = "mean"`.
//!
//! Relative paths are taken as they are (relative to the working directory); call
//! [`DataConfig::resolve_paths`] with the study file's folder to make them relative to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::{Augment, not_images};
use crate::cifar::{CifarKind, load_cifar};
use crate::dataset::{DataKind, Dataset};
use crate::digits::{DIGITS_TEST_FRACTION, digits};
use crate::error::DataError;
use crate::idx::load_idx;
use crate::npy::{LabelKind, Layout, NpzKeys, load_npy_with_lengths, load_npz};
use crate::split::{SplitConfig, SplitDataset};
use crate::tabular::{
    CategoricalEncoding, CsvOptions, LabelColumn, Missing, MissingLabel, load_csv,
};
use crate::targets::Task;
use crate::text::{TextOptions, Tokenize, load_text};

/// Where `dataset = "fashion-mnist"` looks unless `dir` is given.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The file formats of `format = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Idx,
    Npy,
    Npz,
    Cifar10,
    Cifar100,
    Csv,
    /// `label<TAB>text` lines, see [`crate::load_text`].
    Text,
}

/// The `[data]` table. Exactly one of `dataset` and `format` is set; a key the chosen source
/// does not use is an error rather than silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A named data set: `digits` (bundled) or `fashion-mnist`.
    pub dataset: Option<String>,
    pub format: Option<Format>,
    /// Name for reports; defaults to the data set or file name.
    pub name: Option<String>,
    pub train_images: Option<PathBuf>,
    pub train_labels: Option<PathBuf>,
    pub test_images: Option<PathBuf>,
    pub test_labels: Option<PathBuf>,
    /// `.npy` sequence lengths `[N]` of the training / test part (layouts `nt`, `ntf`).
    pub train_lengths: Option<PathBuf>,
    pub test_lengths: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub path: Option<PathBuf>,
    pub train: Option<PathBuf>,
    pub test: Option<PathBuf>,
    pub label_column: Option<LabelColumn>,
    pub header: Option<bool>,
    /// CSV: feature columns read as categories (by index or header name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categorical: Option<Vec<LabelColumn>>,
    /// CSV: `onehot` (default) or `embed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categorical_encoding: Option<CategoricalEncoding>,
    /// CSV: `error` (default) or `mean` for missing values in numeric columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Missing>,
    /// CSV, with `missing = "mean"`: add a 0/1 feature marking the filled values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_indicator: Option<bool>,
    /// CSV: rows without a label are an error (default) or dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_label: Option<MissingLabel>,
    pub keys: Option<NpzKeys>,
    /// Axis layout of npy / npz image arrays.
    pub layout: Layout,
    /// Text: how to cut texts into tokens (default word).
    pub tokenize: Option<Tokenize>,
    /// Text: at most this many token ids, padding and unknown included.
    pub max_vocab: Option<usize>,
    /// Text: tokens per sample (default: the longest training text).
    pub max_len: Option<usize>,
    /// Present single-channel images `[1, H, W]` as sequences of `H` rows of `W` values.
    pub as_sequence: bool,
    /// Class count; inferred as largest label + 1 when absent (fixed for CIFAR and digits).
    pub classes: Option<usize>,
    /// `regression`: the labels (a CSV label column, a NumPy label array) are numbers to
    /// predict (see [`Task`]).
    #[serde(skip_serializing_if = "is_classification")]
    pub task: Task,
    pub validation: f64,
    /// Train on at most this many samples (see [`SplitConfig::max_train`]).
    pub max_train: Option<usize>,
    /// Fraction held out as the test set when the source has no test part (digits: 0.2).
    pub test_fraction: Option<f64>,
    pub stratify: bool,
    pub augment: bool,
    /// Crop padding when `augment = true`; default `max(1, round(H / 8))`, 0 turns crops off.
    pub crop_padding: Option<usize>,
    /// Horizontal flips when `augment = true`; default true. Set false for digits and text,
    /// whose mirror images are not the same class.
    pub horizontal_flip: Option<bool>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: None,
            format: None,
            name: None,
            train_images: None,
            train_labels: None,
            test_images: None,
            test_labels: None,
            train_lengths: None,
            test_lengths: None,
            dir: None,
            path: None,
            train: None,
            test: None,
            label_column: None,
            header: None,
            categorical: None,
            categorical_encoding: None,
            missing: None,
            missing_indicator: None,
            missing_label: None,
            keys: None,
            layout: Layout::Auto,
            tokenize: None,
            max_vocab: None,
            max_len: None,
            as_sequence: false,
            classes: None,
            task: Task::Classification,
            validation: 0.2,
            max_train: None,
            test_fraction: None,
            stratify: true,
            augment: false,
            crop_padding: None,
            horizontal_flip: None,
        }
    }
}

fn is_classification(task: &Task) -> bool {
    *task == Task::Classification
}

/// The keys each source reads; every other source key must be absent.
fn used_keys(source: &str) -> &'static [&'static str] {
    match source {
        "digits" => &[],
        "fashion-mnist" => &["dir"],
        "idx" => &["train_images", "train_labels", "test_images", "test_labels"],
        "npy" => &[
            "train_images",
            "train_labels",
            "test_images",
            "test_labels",
            "train_lengths",
            "test_lengths",
        ],
        "npz" => &["path", "keys"],
        "cifar10" | "cifar100" => &["dir"],
        "csv" => &[
            "train",
            "test",
            "label_column",
            "header",
            "categorical",
            "categorical_encoding",
            "missing",
            "missing_indicator",
            "missing_label",
        ],
        "text" => &["train", "test", "tokenize", "max_vocab", "max_len"],
        _ => &[],
    }
}

impl DataConfig {
    /// Joins every relative path onto `base` (the study file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.train_images,
            &mut self.train_labels,
            &mut self.test_images,
            &mut self.test_labels,
            &mut self.train_lengths,
            &mut self.test_lengths,
            &mut self.dir,
            &mut self.path,
            &mut self.train,
            &mut self.test,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    fn present_source_keys(&self) -> Vec<&'static str> {
        let set = [
            ("train_images", self.train_images.is_some()),
            ("train_labels", self.train_labels.is_some()),
            ("test_images", self.test_images.is_some()),
            ("test_labels", self.test_labels.is_some()),
            ("train_lengths", self.train_lengths.is_some()),
            ("test_lengths", self.test_lengths.is_some()),
            ("dir", self.dir.is_some()),
            ("path", self.path.is_some()),
            ("train", self.train.is_some()),
            ("test", self.test.is_some()),
            ("label_column", self.label_column.is_some()),
            ("header", self.header.is_some()),
            ("categorical", self.categorical.is_some()),
            ("categorical_encoding", self.categorical_encoding.is_some()),
            ("missing", self.missing.is_some()),
            ("missing_indicator", self.missing_indicator.is_some()),
            ("missing_label", self.missing_label.is_some()),
            ("keys", self.keys.is_some()),
            ("layout", self.layout != Layout::Auto),
            ("tokenize", self.tokenize.is_some()),
            ("max_vocab", self.max_vocab.is_some()),
            ("max_len", self.max_len.is_some()),
        ];
        set.into_iter()
            .filter(|&(_, on)| on)
            .map(|(k, _)| k)
            .collect()
    }

    /// The source's name (`digits`, `idx`, ...) after checking that exactly one is chosen and
    /// that no key of another source is set.
    fn source(&self) -> Result<&str, DataError> {
        let source = match (&self.dataset, self.format) {
            (Some(_), Some(_)) => {
                return Err(DataError::config(
                    "dataset",
                    "and `format` are both set; use `dataset` for a named set or `format` with paths, not both",
                ));
            }
            (None, None) => {
                return Err(DataError::config(
                    "format",
                    "is missing; set dataset = \"digits\" or format = \"idx\" | \"npy\" | \"npz\" | \"cifar10\" | \"cifar100\" | \"csv\" | \"text\"",
                ));
            }
            (Some(d), None) => match d.as_str() {
                "digits" | "fashion-mnist" => d.as_str(),
                other => {
                    return Err(DataError::config(
                        "dataset",
                        format!(
                            "`{other}` is not a named data set (known: digits, fashion-mnist); for files use `format`"
                        ),
                    ));
                }
            },
            (None, Some(f)) => match f {
                Format::Idx => "idx",
                Format::Npy => "npy",
                Format::Npz => "npz",
                Format::Cifar10 => "cifar10",
                Format::Cifar100 => "cifar100",
                Format::Csv => "csv",
                Format::Text => "text",
            },
        };
        let used = used_keys(source);
        let mut allowed: Vec<&str> = used.to_vec();
        if matches!(source, "npy" | "npz") {
            allowed.push("layout");
        }
        if let Some(k) = self
            .present_source_keys()
            .into_iter()
            .find(|k| !allowed.contains(k))
        {
            let uses = if allowed.is_empty() {
                "no file keys".to_string()
            } else {
                allowed.join(", ")
            };
            return Err(DataError::config(
                k,
                format!("is not used by `{source}` (it uses {uses}); remove it"),
            ));
        }
        Ok(source)
    }

    fn required<'a>(&self, key: &str, v: &'a Option<PathBuf>) -> Result<&'a Path, DataError> {
        v.as_deref()
            .ok_or_else(|| DataError::config(key, "is missing: this format needs it"))
    }

    /// Both test keys or neither.
    fn test_pair<'a>(
        &self,
        images: &'a Option<PathBuf>,
        labels: &'a Option<PathBuf>,
    ) -> Result<Option<(&'a Path, &'a Path)>, DataError> {
        match (images, labels) {
            (Some(i), Some(l)) => Ok(Some((i, l))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(DataError::config(
                "test_labels",
                "is missing while test_images is set; give both or neither",
            )),
            (None, Some(_)) => Err(DataError::config(
                "test_images",
                "is missing while test_labels is set; give both or neither",
            )),
        }
    }

    fn check_test_fraction(&self, source_has_test: bool) -> Result<(), DataError> {
        if source_has_test && self.test_fraction.is_some() {
            return Err(DataError::config(
                "test_fraction",
                "is set, but the source has its own test part, which is used as the test set; remove it",
            ));
        }
        Ok(())
    }

    /// Crop and flip settings are refused without `augment = true`.
    fn check_augment_keys_unused(&self) -> Result<(), DataError> {
        for (key, set) in [
            ("crop_padding", self.crop_padding.is_some()),
            ("horizontal_flip", self.horizontal_flip.is_some()),
        ] {
            if set {
                return Err(DataError::config(
                    key,
                    "only applies with augment = true; set augment = true or remove it",
                ));
            }
        }
        Ok(())
    }

    fn split_config(&self, default_test: f64) -> SplitConfig {
        SplitConfig {
            validation: self.validation,
            test: self.test_fraction.unwrap_or(default_test),
            stratify: self.stratify,
            max_train: self.max_train,
        }
    }
}

fn file_stem(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `train-images-idx3-ubyte.gz` -> `train-images-idx3-ubyte`, `data.npz` -> `data`.
    name.split('.').next().unwrap_or_default().to_string()
}

/// Loads the source the config names, splits it from `seed` and fits the normalization.
pub fn load(cfg: &DataConfig, seed: u64) -> Result<SplitDataset, DataError> {
    let source = cfg.source()?;
    cfg.check_task(source)?;
    if source == "text" {
        return load_text_source(cfg, seed);
    }
    let classes = cfg.classes;
    let (train, test): (Dataset, Option<Dataset>) = match source {
        "digits" => {
            if let Some(c) = classes
                && c != 10
            {
                return Err(DataError::config(
                    "classes",
                    format!("is {c}, but digits has 10 classes; remove it"),
                ));
            }
            (digits(), None)
        }
        "fashion-mnist" => {
            let dir = cfg
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR));
            let f = |n: &str| dir.join(n);
            if !f("train-images-idx3-ubyte.gz").is_file() {
                return Err(DataError::Missing {
                    path: f("train-images-idx3-ubyte.gz"),
                    what: "Fashion-MNIST is not installed there".into(),
                    fix: "Install it with `apt-get install dataset-fashion-mnist`, or set `dir` to a folder with the four gzipped IDX files".into(),
                });
            }
            let classes = Some(classes.unwrap_or(10));
            let name = "fashion-mnist";
            (
                load_idx(
                    &f("train-images-idx3-ubyte.gz"),
                    &f("train-labels-idx1-ubyte.gz"),
                    classes,
                    name,
                )?,
                Some(load_idx(
                    &f("t10k-images-idx3-ubyte.gz"),
                    &f("t10k-labels-idx1-ubyte.gz"),
                    classes,
                    name,
                )?),
            )
        }
        "idx" | "npy" => {
            let images = cfg.required("train_images", &cfg.train_images)?;
            let labels = cfg.required("train_labels", &cfg.train_labels)?;
            let test = cfg.test_pair(&cfg.test_images, &cfg.test_labels)?;
            if test.is_none() && cfg.test_lengths.is_some() {
                return Err(DataError::config(
                    "test_lengths",
                    "is set, but test_images and test_labels are not; give them too, or remove it",
                ));
            }
            let name = cfg.name.clone().unwrap_or_else(|| file_stem(images));
            let one = |i: &Path, l: &Path, lengths: Option<&Path>| {
                if source == "idx" {
                    load_idx(i, l, classes, &name)
                } else {
                    load_npy_with_lengths(i, l, lengths, cfg.layout, cfg.label_kind(), &name)
                }
            };
            (
                one(images, labels, cfg.train_lengths.as_deref())?,
                test.map(|(i, l)| one(i, l, cfg.test_lengths.as_deref()))
                    .transpose()?,
            )
        }
        "npz" => {
            let path = cfg.required("path", &cfg.path)?;
            let name = cfg.name.clone().unwrap_or_else(|| file_stem(path));
            let keys = cfg.keys.clone().unwrap_or_default();
            load_npz(path, &keys, cfg.layout, cfg.label_kind(), &name)?
        }
        "cifar10" | "cifar100" => {
            let dir = cfg.required("dir", &cfg.dir)?;
            let kind = if source == "cifar10" {
                CifarKind::Cifar10
            } else {
                CifarKind::Cifar100
            };
            if let Some(c) = classes
                && c != kind.classes()
            {
                return Err(DataError::config(
                    "classes",
                    format!("is {c}, but {source} has {}; remove it", kind.classes()),
                ));
            }
            let (train, test) = load_cifar(dir, kind)?;
            (train, Some(test))
        }
        "csv" => {
            let train = cfg.required("train", &cfg.train)?;
            let missing = cfg.missing.unwrap_or_default();
            if cfg.missing_indicator == Some(true) && missing != Missing::Mean {
                return Err(DataError::config(
                    "missing_indicator",
                    "marks the values that missing = \"mean\" fills; set missing = \"mean\" or remove it",
                ));
            }
            let opts = CsvOptions {
                label_column: cfg.label_column.clone().unwrap_or_default(),
                header: cfg.header,
                categorical: cfg.categorical.clone().unwrap_or_default(),
                encoding: cfg.categorical_encoding.unwrap_or_default(),
                missing,
                missing_indicator: cfg.missing_indicator.unwrap_or(false),
                task: cfg.task,
                missing_label: cfg.missing_label.unwrap_or_default(),
            };
            let name = cfg.name.clone().unwrap_or_else(|| file_stem(train));
            load_csv(train, cfg.test.as_deref(), &opts, classes, &name)?
        }
        other => unreachable!("source() returns known names, not {other}"),
    };
    cfg.check_test_fraction(test.is_some())?;
    let source_train = train.len();
    let mut data = match test {
        Some(t) => train.concat(t)?,
        None => train,
    };
    if let Some(name) = &cfg.name {
        data.name.clone_from(name);
    }
    if cfg.as_sequence {
        data = data.rows_as_sequence()?;
    }
    let augment = if cfg.augment {
        if data.kind != DataKind::Image {
            return Err(not_images(&data));
        }
        let mut a = Augment::default_for(data.input_shape());
        if let Some(p) = cfg.crop_padding {
            a.crop_padding = p;
        }
        if let Some(f) = cfg.horizontal_flip {
            a.horizontal_flip = f;
        }
        Some(a)
    } else {
        cfg.check_augment_keys_unused()?;
        None
    };
    let default_test = if source == "digits" {
        DIGITS_TEST_FRACTION
    } else {
        SplitConfig::default().test
    };
    SplitDataset::new(
        data,
        source_train,
        &cfg.split_config(default_test),
        augment,
        seed,
    )
}

impl DataConfig {
    /// What the NumPy label arrays hold.
    fn label_kind(&self) -> LabelKind {
        match self.task {
            Task::Classification => LabelKind::Classes(self.classes),
            Task::Regression => LabelKind::Regression,
        }
    }

    /// Regression reads numbers from a CSV label column or a NumPy label array; the other
    /// sources hold class labels.
    fn check_task(&self, source: &str) -> Result<(), DataError> {
        if self.task != Task::Regression {
            return Ok(());
        }
        if !matches!(source, "csv" | "npy" | "npz") {
            return Err(DataError::config(
                "task",
                format!(
                    "is \"regression\", which reads the numbers to predict from a CSV label \
                     column or a NumPy label array, but this source (`{source}`) holds class \
                     labels; use format = \"csv\", \"npy\" or \"npz\", or remove `task`"
                ),
            ));
        }
        if self.classes.is_some() {
            return Err(DataError::config(
                "classes",
                "is set, but task = \"regression\" predicts a number, not a class; remove it",
            ));
        }
        Ok(())
    }
}

/// `format = "text"`: the vocabulary depends on the split, so text is split while it is read.
fn load_text_source(cfg: &DataConfig, seed: u64) -> Result<SplitDataset, DataError> {
    let train = cfg.required("train", &cfg.train)?;
    cfg.check_test_fraction(cfg.test.is_some())?;
    if cfg.as_sequence {
        return Err(DataError::config(
            "as_sequence",
            "applies to images; text is read as token-id sequences already, so remove it",
        ));
    }
    if cfg.augment {
        return Err(DataError::config(
            "augment",
            "crop and flip need images, but text files hold token ids; set augment = false",
        ));
    }
    cfg.check_augment_keys_unused()?;
    let opts = TextOptions {
        tokenize: cfg.tokenize.unwrap_or_default(),
        max_vocab: cfg.max_vocab,
        max_len: cfg.max_len,
    };
    let name = cfg.name.clone().unwrap_or_else(|| file_stem(train));
    let split = cfg.split_config(SplitConfig::default().test);
    load_text(
        train,
        cfg.test.as_deref(),
        &opts,
        cfg.classes,
        &name,
        &split,
        seed,
    )
}
