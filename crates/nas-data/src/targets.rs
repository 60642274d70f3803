//! Regression: one float target per sample in place of a class label.
//!
//! A regression data set keeps `labels` all 0 with `classes = 1` (so splits, class counts and
//! a network's `[classes]` output work unchanged: one output, the prediction) and holds the
//! targets in [`crate::Dataset::targets`]. Training standardizes them with the
//! [`TargetScale`] fitted on the training split; exported models undo it, so they predict in
//! the targets' own units.

use serde::{Deserialize, Serialize};

/// What a sample's label is: a class or a number to predict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Classification,
    Regression,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// `y_norm = (y - mean) / std` for regression targets, fitted on the training split. A
/// constant target gets std 1 (it is only centred).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetScale {
    pub mean: f32,
    pub std: f32,
}

impl TargetScale {
    /// Population mean and std of `values` (two passes in f64); identity when empty.
    pub fn fit(values: &[f32]) -> TargetScale {
        if values.is_empty() {
            return TargetScale {
                mean: 0.0,
                std: 1.0,
            };
        }
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        let std = if std < 1e-6 * mean.abs().max(1.0) {
            1.0
        } else {
            std
        };
        TargetScale {
            mean: mean as f32,
            std: std as f32,
        }
    }

    pub fn normalize(&self, y: f32) -> f32 {
        (y - self.mean) / self.std
    }

    /// A prediction in standardized units back in the targets' units.
    pub fn restore(&self, y: f32) -> f32 {
        y * self.std + self.mean
    }
}

/// The labels of a batch: class indices, or regression targets (in the targets' units).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Classes(Vec<u32>),
    Values(Vec<f32>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Regression targets standardized with `scale`; class indices unchanged.
    pub fn normalized(self, scale: Option<&TargetScale>) -> Targets {
        match (self, scale) {
            (Targets::Values(v), Some(s)) => {
                Targets::Values(v.into_iter().map(|y| s.normalize(y)).collect())
            }
            (t, _) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_standardizes_and_restores() {
        let s = TargetScale::fit(&[1.0, 3.0]);
        assert_eq!((s.mean, s.std), (2.0, 1.0));
        assert_eq!(s.normalize(3.0), 1.0);
        assert_eq!(s.restore(-1.0), 1.0);
        let constant = TargetScale::fit(&[5.0, 5.0, 5.0]);
        assert_eq!((constant.mean, constant.std), (5.0, 1.0));
    }

    #[test]
    fn only_values_are_normalized() {
        let s = TargetScale {
            mean: 1.0,
            std: 2.0,
        };
        let v = Targets::Values(vec![3.0, -1.0]).normalized(Some(&s));
        assert_eq!(v, Targets::Values(vec![1.0, -1.0]));
        let c = Targets::Classes(vec![3, 1]).normalized(Some(&s));
        assert_eq!(c, Targets::Classes(vec![3, 1]));
    }
}
