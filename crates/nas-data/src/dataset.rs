//! The in-memory data set every loader produces.

use ndarray::{Array2, Array3, Array4, ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::targets::{Targets, Task};

/// Whether samples are images, rows of a table or sequences.
///
/// Tabular data with `F` features is stored as `[N, F, 1, 1]`: every feature is a "channel",
/// so per-channel normalization is per-feature standardization and the exporter can treat both
/// kinds alike. Sequences of `T` steps with `F` features each are stored as `[N, T, F, 1]`
/// (one sample is `[T, F]`); token-id sequences have `F = 1` (one sample is `[T]`) and a
/// [`Dataset::vocab_size`]. Augmentation (crop, flip) only applies to images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Image,
    Tabular,
    Sequence,
}

/// Token id of padding: steps past a sequence's end.
pub const PAD_ID: u32 = 0;
/// Token id of a token outside the vocabulary.
pub const UNKNOWN_ID: u32 = 1;
/// Ids must stay below this to be exact in float32 (2^24).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;

/// Samples as float32 tensors with class labels.
///
/// `images` holds raw values as stored (pixels 0..255 stay 0..255; no normalization), in
/// standard (C-contiguous) layout `[N, C, H, W]`. Constructors check that every label is below
/// `classes` and that there is one label per sample; code that edits the public fields directly
/// must keep that true.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub kind: DataKind,
    pub images: Array4<f32>,
    pub labels: Vec<u32>,
    pub classes: usize,
    /// Class names where the source has them (CIFAR meta files, text labels in CSV and
    /// text files).
    pub class_names: Option<Vec<String>>,
    /// For token-id sequences: ids are whole numbers below this (0 = padding, 1 = unknown
    /// token); the size of an embedding table over them. `None` for every other data set.
    pub vocab_size: Option<usize>,
    /// For float sequences loaded with lengths: the steps past a sample's length are padding,
    /// every feature exactly 0. Normalization leaves such steps at 0 and networks mask them
    /// (see [`Dataset::is_padded`]).
    pub padded: bool,
    /// For tables: one name per feature where the source has them (CSV: the header, with
    /// one-hot columns named `island=Biscoe`).
    pub feature_names: Option<Vec<String>>,
    /// For tables: the features that hold category codes (`categorical_encoding = "embed"`),
    /// whole numbers below their `categories`, which a network embeds and which are never
    /// normalized. Empty for every other data set.
    pub categorical: Vec<CategoricalFeature>,
    /// For regression ([`Dataset::set_targets`]): one target per sample, in its own units;
    /// then `labels` are all 0 and `classes` is 1 (one network output, the prediction).
    /// `None` for classification.
    pub targets: Option<Vec<f32>>,
}

/// A feature of a table holding category codes `0..categories` (0 = unknown or missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalFeature {
    /// Its index among the features (`F` of `[F, 1, 1]`).
    pub feature: usize,
    /// How many codes there are: the size of an embedding table over them.
    pub categories: usize,
}

impl Dataset {
    /// Builds an image data set `[N, C, H, W]`.
    pub fn new(
        name: impl Into<String>,
        images: Array4<f32>,
        labels: Vec<u32>,
        classes: usize,
    ) -> Result<Self, DataError> {
        Self::with_kind(name, DataKind::Image, images, labels, classes)
    }

    /// Builds a tabular data set from `[N, F]` features; stored as `[N, F, 1, 1]`.
    pub fn tabular(
        name: impl Into<String>,
        features: Array2<f32>,
        labels: Vec<u32>,
        classes: usize,
    ) -> Result<Self, DataError> {
        let (n, f) = features.dim();
        let features = features.as_standard_layout().into_owned();
        let images = features
            .into_shape_with_order((n, f, 1, 1))
            .expect("standard layout reshapes");
        Self::with_kind(name, DataKind::Tabular, images, labels, classes)
    }

    /// Builds a sequence data set from `[N, T, F]` float values; stored as `[N, T, F, 1]`.
    pub fn sequence(
        name: impl Into<String>,
        values: Array3<f32>,
        labels: Vec<u32>,
        classes: usize,
    ) -> Result<Self, DataError> {
        let (n, t, f) = values.dim();
        let values = values.as_standard_layout().into_owned();
        let images = values
            .into_shape_with_order((n, t, f, 1))
            .expect("standard layout reshapes");
        Self::with_kind(name, DataKind::Sequence, images, labels, classes)
    }

    /// Builds a token-id sequence data set from `[N, T]` ids below `vocab_size`; stored as
    /// `[N, T, 1, 1]` float32 holding the exact ids.
    pub fn token_ids(
        name: impl Into<String>,
        ids: &Array2<u32>,
        labels: Vec<u32>,
        classes: usize,
        vocab_size: usize,
    ) -> Result<Self, DataError> {
        let name = name.into();
        check_vocab_size(&name, vocab_size)?;
        if let Some(((i, t), &id)) = ids
            .indexed_iter()
            .find(|&(_, &id)| id as usize >= vocab_size)
        {
            return Err(DataError::Invalid(format!(
                "data set `{name}`: token id {id} of sample {i}, step {t} is not below the vocabulary size {vocab_size}"
            )));
        }
        let (n, t) = ids.dim();
        let values: Vec<f32> = ids.iter().map(|&id| id as f32).collect();
        let images = Array4::from_shape_vec((n, t, 1, 1), values).expect("n * t values");
        let mut d = Self::with_kind(name, DataKind::Sequence, images, labels, classes)?;
        d.vocab_size = Some(vocab_size);
        Ok(d)
    }

    pub(crate) fn with_kind(
        name: impl Into<String>,
        kind: DataKind,
        images: Array4<f32>,
        labels: Vec<u32>,
        classes: usize,
    ) -> Result<Self, DataError> {
        let name = name.into();
        if images.len_of(Axis(0)) != labels.len() {
            return Err(DataError::Mismatch {
                what: format!(
                    "data set `{name}` has {} samples but {} labels",
                    images.len_of(Axis(0)),
                    labels.len()
                ),
                fix: "Give exactly one label per sample".into(),
            });
        }
        if classes == 0 {
            return Err(DataError::Invalid(format!(
                "data set `{name}` has 0 classes; a classifier needs at least 1"
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(DataError::Invalid(format!(
                "data set `{name}`: label {l} of sample {i} is not below the class count {classes}"
            )));
        }
        let images = if images.is_standard_layout() {
            images
        } else {
            images.as_standard_layout().into_owned()
        };
        Ok(Dataset {
            name,
            kind,
            images,
            labels,
            classes,
            class_names: None,
            vocab_size: None,
            padded: false,
            feature_names: None,
            categorical: Vec::new(),
            targets: None,
        })
    }

    /// Makes this a regression data set predicting `targets` (one finite number per sample):
    /// labels become 0 and the class count 1.
    pub fn set_targets(&mut self, targets: Vec<f32>) -> Result<(), DataError> {
        if targets.len() != self.len() {
            return Err(DataError::Mismatch {
                what: format!(
                    "data set `{}` has {} samples but {} regression targets",
                    self.name,
                    self.len(),
                    targets.len()
                ),
                fix: "Give exactly one target per sample".into(),
            });
        }
        if let Some((i, y)) = targets.iter().enumerate().find(|(_, y)| !y.is_finite()) {
            return Err(DataError::Invalid(format!(
                "data set `{}`: the regression target of sample {i} is {y}; targets must be finite numbers",
                self.name
            )));
        }
        self.labels = vec![0; targets.len()];
        self.classes = 1;
        self.class_names = None;
        self.targets = Some(targets);
        Ok(())
    }

    /// Classification or regression (see [`Dataset::targets`]).
    pub fn task(&self) -> Task {
        if self.targets.is_some() {
            Task::Regression
        } else {
            Task::Classification
        }
    }

    /// The labels of the samples `indices`: their classes, or their regression targets.
    ///
    /// Panics if an index is out of range.
    pub fn targets_of(&self, indices: &[usize]) -> Targets {
        match &self.targets {
            Some(t) => Targets::Values(indices.iter().map(|&i| t[i]).collect()),
            None => Targets::Classes(indices.iter().map(|&i| self.labels[i]).collect()),
        }
    }

    /// Marks tabular features as category codes after checking that each is a feature of
    /// this table and holds whole numbers below its `categories` in every sample.
    pub fn set_categorical(&mut self, features: Vec<CategoricalFeature>) -> Result<(), DataError> {
        let width = self.channels();
        for (i, c) in features.iter().enumerate() {
            let why = if self.kind != DataKind::Tabular {
                Some(format!("it holds {}, not tabular rows", self.describe()))
            } else if c.feature >= width {
                Some(format!("it has {width} features"))
            } else if !(1..=MAX_VOCAB_SIZE).contains(&c.categories) {
                Some(format!(
                    "{} categories is outside 1..={MAX_VOCAB_SIZE}",
                    c.categories
                ))
            } else if features[..i].iter().any(|o| o.feature == c.feature) {
                Some("it is listed twice".into())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(DataError::Invalid(format!(
                    "data set `{}`: feature {} cannot be categorical: {why}",
                    self.name, c.feature
                )));
            }
            let column = self.images.index_axis(Axis(1), c.feature);
            if let Some((at, v)) = column
                .indexed_iter()
                .find(|&(_, &v)| v.fract() != 0.0 || !(0.0..c.categories as f32).contains(&v))
            {
                return Err(DataError::Invalid(format!(
                    "data set `{}`: categorical feature {} of sample {} is {v}, not a code 0..{}",
                    self.name, c.feature, at.0, c.categories
                )));
            }
        }
        self.categorical = features;
        Ok(())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample as stored, `[C, H, W]` (`[F, 1, 1]` for tabular data, `[T, F, 1]`
    /// for sequences).
    pub fn input_shape(&self) -> [usize; 3] {
        let (_, c, h, w) = self.images.dim();
        [c, h, w]
    }

    /// Shape of one sample as a network takes it: `[C, H, W]` for images, `[F, 1, 1]` for
    /// tables, `[T, F]` for float sequences and `[T]` for token ids. It has as many values
    /// as [`Dataset::input_shape`], in the same order, so a batch reshapes without copying.
    pub fn sample_shape(&self) -> Vec<usize> {
        let [a, b, c] = self.input_shape();
        match (self.kind, self.vocab_size) {
            (DataKind::Sequence, Some(_)) => vec![a],
            (DataKind::Sequence, None) => vec![a, b],
            _ => vec![a, b, c],
        }
    }

    /// A batch of stored samples `[N, ., ., .]` (what [`crate::Batches`] yields) in the shape a
    /// network takes, `[N]` followed by [`Dataset::sample_shape`]: the same values in the
    /// same order, so nothing is copied. Panics if `stored` does not hold samples of this
    /// data set.
    pub fn network_batch(&self, stored: Array4<f32>) -> ArrayD<f32> {
        let mut shape = vec![stored.len_of(Axis(0))];
        shape.extend(self.sample_shape());
        let stored = if stored.is_standard_layout() {
            stored
        } else {
            stored.as_standard_layout().into_owned()
        };
        stored
            .into_shape_with_order(IxDyn(&shape))
            .expect("a batch of this data set's samples")
    }

    /// Whether samples are token ids (never normalized).
    pub fn is_token_ids(&self) -> bool {
        self.vocab_size.is_some()
    }

    /// Whether samples are float sequences with padding: a step whose features are all
    /// exactly 0 is padding, not data (token ids mark padding with id 0 instead).
    pub fn is_padded(&self) -> bool {
        self.padded && !self.is_token_ids()
    }

    /// Channels: the `C` of `[C, H, W]`, or the feature count of tabular data (for
    /// sequences: the step count `T`; see [`Dataset::feature_axis`]).
    pub fn channels(&self) -> usize {
        self.images.len_of(Axis(1))
    }

    /// What a sample is, for messages.
    pub(crate) fn describe(&self) -> &'static str {
        match (self.kind, self.vocab_size) {
            (DataKind::Image, _) => "images",
            (DataKind::Tabular, _) => "tabular rows",
            (DataKind::Sequence, None) => "float sequences",
            (DataKind::Sequence, Some(_)) => "token ids",
        }
    }

    /// The axis of the stored `[N, ., ., .]` array that normalization statistics are kept
    /// per entry of: 1 (image channels, table features) or 2 (the features of sequence
    /// steps).
    pub fn feature_axis(&self) -> usize {
        match self.kind {
            DataKind::Sequence => 2,
            DataKind::Image | DataKind::Tabular => 1,
        }
    }

    /// Samples per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A copy holding only the given samples, in the given order.
    ///
    /// Panics if an index is out of range.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            kind: self.kind,
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
            class_names: self.class_names.clone(),
            vocab_size: self.vocab_size,
            padded: self.padded,
            feature_names: self.feature_names.clone(),
            categorical: self.categorical.clone(),
            targets: self
                .targets
                .as_ref()
                .map(|t| indices.iter().map(|&i| t[i]).collect()),
        }
    }

    /// Appends `other`'s samples after this set's; shapes, kinds and class names must agree.
    pub(crate) fn concat(self, other: Dataset) -> Result<Dataset, DataError> {
        if self.input_shape() != other.input_shape()
            || self.kind != other.kind
            || self.is_token_ids() != other.is_token_ids()
        {
            return Err(DataError::Mismatch {
                what: format!(
                    "the training part has samples of shape {:?} ({}) but the test part {:?} ({})",
                    self.sample_shape(),
                    self.describe(),
                    other.sample_shape(),
                    other.describe()
                ),
                fix: "Point the training and test settings at files of the same data set".into(),
            });
        }
        if let (Some(a), Some(b)) = (&self.class_names, &other.class_names)
            && a != b
        {
            return Err(DataError::Mismatch {
                what: format!("the training part names its classes {a:?} but the test part {b:?}"),
                fix: "Use training and test files with the same classes".into(),
            });
        }
        if self.categorical != other.categorical {
            return Err(DataError::Mismatch {
                what: format!(
                    "the training part has categorical features {:?} but the test part {:?}",
                    self.categorical, other.categorical
                ),
                fix: "Encode the training and test parts with the same categories".into(),
            });
        }
        if self.task() != other.task() {
            return Err(DataError::Mismatch {
                what: format!(
                    "the training part is for {} but the test part for {}",
                    self.task().name(),
                    other.task().name()
                ),
                fix: "Read the training and test parts with the same `task`".into(),
            });
        }
        let images = ndarray::concatenate(Axis(0), &[self.images.view(), other.images.view()])
            .expect("shapes checked above");
        let targets = match (self.targets, other.targets) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let mut labels = self.labels;
        labels.extend(other.labels);
        Ok(Dataset {
            name: self.name,
            kind: self.kind,
            images,
            labels,
            classes: self.classes.max(other.classes),
            class_names: self.class_names.or(other.class_names),
            vocab_size: self.vocab_size.max(other.vocab_size),
            padded: self.padded || other.padded,
            feature_names: self.feature_names.or(other.feature_names),
            categorical: self.categorical,
            targets,
        })
    }
}

/// Refuses vocabularies without room for padding and unknown ids, or too large for float32.
pub(crate) fn check_vocab_size(name: &str, vocab_size: usize) -> Result<(), DataError> {
    if !(2..=MAX_VOCAB_SIZE).contains(&vocab_size) {
        return Err(DataError::Invalid(format!(
            "data set `{name}`: vocabulary size {vocab_size} is outside 2..={MAX_VOCAB_SIZE} (ids 0 and 1 are padding and unknown; larger ids are not exact in float32)"
        )));
    }
    Ok(())
}

/// The class count to use: the configured one, or one more than the largest label seen.
pub(crate) fn infer_classes(configured: Option<usize>, labels: &[u32]) -> usize {
    configured.unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1))
}
