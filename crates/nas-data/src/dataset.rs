//! The in-memory data set every loader produces.

use ndarray::{Array2, Array4, Axis};
use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// Whether samples are images or rows of a table.
///
/// Tabular data with `F` features is stored as `[N, F, 1, 1]`: every feature is a "channel",
/// so per-channel normalization is per-feature standardization and the exporter can treat both
/// kinds alike. Augmentation (crop, flip) only applies to images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Image,
    Tabular,
}

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
    /// Class names where the source has them (CIFAR meta files, text labels in CSV).
    pub class_names: Option<Vec<String>>,
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
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample, `[C, H, W]` (`[F, 1, 1]` for tabular data).
    pub fn input_shape(&self) -> [usize; 3] {
        let (_, c, h, w) = self.images.dim();
        [c, h, w]
    }

    /// Channels: the `C` of `[C, H, W]`, or the feature count of tabular data.
    pub fn channels(&self) -> usize {
        self.images.len_of(Axis(1))
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
        }
    }

    /// Appends `other`'s samples after this set's; shapes, kinds and class names must agree.
    pub(crate) fn concat(self, other: Dataset) -> Result<Dataset, DataError> {
        if self.input_shape() != other.input_shape() || self.kind != other.kind {
            return Err(DataError::Mismatch {
                what: format!(
                    "the training part has samples of shape {:?} ({:?}) but the test part {:?} ({:?})",
                    self.input_shape(),
                    self.kind,
                    other.input_shape(),
                    other.kind
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
        let images = ndarray::concatenate(Axis(0), &[self.images.view(), other.images.view()])
            .expect("shapes checked above");
        let mut labels = self.labels;
        labels.extend(other.labels);
        Ok(Dataset {
            name: self.name,
            kind: self.kind,
            images,
            labels,
            classes: self.classes.max(other.classes),
            class_names: self.class_names.or(other.class_names),
        })
    }
}

/// The class count to use: the configured one, or one more than the largest label seen.
pub(crate) fn infer_classes(configured: Option<usize>, labels: &[u32]) -> usize {
    configured.unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1))
}
