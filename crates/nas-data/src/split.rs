//! Deterministic train / validation / test splits and the split data set handed to training.

use std::fmt;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{Augment, BatchOptions, Batches, batches};
use crate::dataset::Dataset;
use crate::error::DataError;
use crate::normalize::Normalization;
use crate::rng::{Stream, rng, shuffle};
use crate::text::Vocabulary;

/// How to split a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Fraction of the training samples held out for validation, in `[0, 1)`.
    pub validation: f64,
    /// Fraction of all samples held out as the test set, in `[0, 1)`; used only when the source
    /// has no test part of its own.
    pub test: f64,
    /// Hold out the same fraction of every class (exact totals by largest remainder).
    pub stratify: bool,
    /// Train on at most this many samples: a seeded subset (stratified with `stratify`) of
    /// the training part left after the test and validation parts are held out, which stay
    /// whole. For quick searches on a large data set.
    pub max_train: Option<usize>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            validation: 0.2,
            test: 0.2,
            stratify: true,
            max_train: None,
        }
    }
}

/// Indices into a data set, each list sorted ascending; the three are disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

/// One of the three parts of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        })
    }
}

impl Splits {
    /// Splits `labels.len()` samples of which the first `source_train` are the source's
    /// training part and the rest its own test part (which then is the test set as it is).
    /// When `source_train == labels.len()`, `cfg.test` of all samples is held out as the test
    /// set first. Then `cfg.validation` of the remaining training samples is held out.
    ///
    /// Each held-out count is `round(fraction × pool size)`. The result depends only on the
    /// labels, the config and the seed.
    pub fn new(
        labels: &[u32],
        classes: usize,
        source_train: usize,
        cfg: &SplitConfig,
        seed: u64,
    ) -> Result<Splits, DataError> {
        check_fraction("validation", cfg.validation)?;
        check_fraction("test_fraction", cfg.test)?;
        let n = labels.len();
        if source_train == 0 || source_train > n {
            return Err(DataError::Invalid(format!(
                "cannot split: the training part has {source_train} of {n} samples"
            )));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::Invalid(format!(
                "cannot split: label {} of sample {i} is not below the class count {classes}",
                labels[i]
            )));
        }
        let mut r = rng(seed, Stream::Split, 0);
        let (pool, test) = if source_train < n {
            ((0..source_train).collect(), (source_train..n).collect())
        } else {
            holdout(
                (0..n).collect(),
                labels,
                classes,
                cfg.test,
                cfg.stratify,
                &mut r,
            )
        };
        let (mut train, validation) =
            holdout(pool, labels, classes, cfg.validation, cfg.stratify, &mut r);
        match cfg.max_train {
            Some(0) => {
                return Err(DataError::config(
                    "max_train",
                    "is 0; give at least 1 (or remove it to train on the whole training part)",
                ));
            }
            Some(m) if train.len() > m => {
                let drop = 1.0 - m as f64 / train.len() as f64;
                train = holdout(train, labels, classes, drop, cfg.stratify, &mut r).0;
            }
            _ => {}
        }
        if train.is_empty() {
            return Err(DataError::Invalid(format!(
                "the split leaves no training samples ({n} samples, validation {}, test {}); use smaller fractions or more data",
                cfg.validation, cfg.test
            )));
        }
        Ok(Splits {
            train,
            validation,
            test,
        })
    }

    pub fn indices(&self, part: Part) -> &[usize] {
        match part {
            Part::Train => &self.train,
            Part::Validation => &self.validation,
            Part::Test => &self.test,
        }
    }
}

fn check_fraction(field: &str, f: f64) -> Result<(), DataError> {
    if (0.0..1.0).contains(&f) {
        Ok(())
    } else {
        Err(DataError::config(
            field,
            format!("is {f}; give a fraction from 0 (inclusive) to 1 (exclusive)"),
        ))
    }
}

/// Splits `pool` into (kept, held out) with `round(frac × len)` held out; both sorted.
fn holdout(
    pool: Vec<usize>,
    labels: &[u32],
    classes: usize,
    frac: f64,
    stratify: bool,
    r: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let k = (frac * pool.len() as f64).round() as usize;
    let mut held = Vec::with_capacity(k);
    let mut kept = Vec::with_capacity(pool.len() - k);
    if stratify {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for &i in &pool {
            by_class[labels[i] as usize].push(i);
        }
        // Largest remainder: floor of each class's share, then one more for the classes with
        // the largest fractional parts (ties to the lower class) until the total is k.
        let exact: Vec<f64> = by_class.iter().map(|c| frac * c.len() as f64).collect();
        let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| {
            let (fa, fb) = (exact[a].fract(), exact[b].fract());
            fb.total_cmp(&fa).then(a.cmp(&b))
        });
        let mut missing = k.saturating_sub(quota.iter().sum());
        for &c in &order {
            if missing == 0 {
                break;
            }
            if quota[c] < by_class[c].len() {
                quota[c] += 1;
                missing -= 1;
            }
        }
        for (c, mut members) in by_class.into_iter().enumerate() {
            shuffle(r, &mut members);
            held.extend_from_slice(&members[..quota[c]]);
            kept.extend_from_slice(&members[quota[c]..]);
        }
    } else {
        let mut members = pool;
        shuffle(r, &mut members);
        held.extend_from_slice(&members[..k]);
        kept.extend_from_slice(&members[k..]);
    }
    held.sort_unstable();
    kept.sort_unstable();
    (kept, held)
}

/// A data set with its split, the normalization fitted on its training part and the
/// augmentation to use while training: what a training evaluator needs.
#[derive(Clone, Debug)]
pub struct SplitDataset {
    /// All samples: the source's training part, then its test part (if it has one).
    pub data: Dataset,
    pub splits: Splits,
    /// Per-channel mean and std over the training indices only.
    pub normalization: Normalization,
    /// Augmentation for training batches; `None` when off (always `None` for tabular data
    /// and sequences).
    pub augment: Option<Augment>,
    pub seed: u64,
    /// The token ids of a text data set (built on the training split); `None` otherwise.
    pub vocabulary: Option<Vocabulary>,
}

impl SplitDataset {
    /// Splits `data` (see [`Splits::new`] for `source_train`) and fits the normalization.
    pub fn new(
        data: Dataset,
        source_train: usize,
        cfg: &SplitConfig,
        augment: Option<Augment>,
        seed: u64,
    ) -> Result<SplitDataset, DataError> {
        let splits = Splits::new(&data.labels, data.classes, source_train, cfg, seed)?;
        Self::from_splits(data, splits, augment, seed)
    }

    /// `data` with a split made already (by [`Splits::new`] from `seed`); fits the
    /// normalization on its training indices.
    pub(crate) fn from_splits(
        data: Dataset,
        splits: Splits,
        augment: Option<Augment>,
        seed: u64,
    ) -> Result<SplitDataset, DataError> {
        let normalization = Normalization::fit(&data, &splits.train)?;
        Ok(SplitDataset {
            data,
            splits,
            normalization,
            augment,
            seed,
            vocabulary: None,
        })
    }

    /// `[C, H, W]` of one sample as stored (`[T, F, 1]` for sequences).
    pub fn input_shape(&self) -> [usize; 3] {
        self.data.input_shape()
    }

    /// One sample as a network takes it (see [`Dataset::sample_shape`]).
    pub fn sample_shape(&self) -> Vec<usize> {
        self.data.sample_shape()
    }

    /// For token ids: the number of ids, an embedding table's size (see
    /// [`Dataset::vocab_size`]).
    pub fn vocab_size(&self) -> Option<usize> {
        self.data.vocab_size
    }

    /// Whether samples are padded float sequences (see [`Dataset::is_padded`]).
    pub fn is_padded(&self) -> bool {
        self.data.is_padded()
    }

    pub fn classes(&self) -> usize {
        self.data.classes
    }

    pub fn indices(&self, part: Part) -> &[usize] {
        self.splits.indices(part)
    }

    /// A copy of one part (raw values, not normalized).
    pub fn part(&self, part: Part) -> Dataset {
        self.data.select(self.indices(part))
    }

    /// The batches of one training epoch: shuffled from the seed and `epoch`, normalized,
    /// augmented when configured.
    pub fn train_batches(
        &self,
        batch_size: usize,
        drop_last: bool,
        epoch: u64,
    ) -> Result<Batches<'_>, DataError> {
        let opts = BatchOptions {
            batch_size,
            shuffle: true,
            drop_last,
            augment: self.augment,
        };
        self.batches(Part::Train, &opts, epoch)
    }

    /// The batches of a part in index order, normalized, not augmented, the last one partial.
    pub fn eval_batches(&self, part: Part, batch_size: usize) -> Result<Batches<'_>, DataError> {
        let opts = BatchOptions {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: None,
        };
        self.batches(part, &opts, 0)
    }

    /// Batches of a part with explicit options.
    pub fn batches(
        &self,
        part: Part,
        opts: &BatchOptions,
        epoch: u64,
    ) -> Result<Batches<'_>, DataError> {
        batches(
            &self.data,
            self.indices(part),
            &self.normalization,
            opts,
            self.seed,
            epoch,
        )
    }
}
