//! Per-channel (per-feature) normalization statistics, fitted on the training split only.

use ndarray::{Array4, Axis};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::DataError;

/// `x_norm = (x - mean[k]) / std[k]` per entry `k` of the feature axis: per channel of images,
/// per feature of tables and of sequence steps.
///
/// Returned as plain values so the exporter can put the same `Sub` and `Div` in front of the
/// model. A channel whose std is negligible (below 1e-6 × max(1, |mean|), i.e. constant up to
/// rounding) gets std 1, so it is only centred, never blown up. Token ids and the category
/// codes of a table ([`Dataset::categorical`]) are never normalized: their statistics are
/// mean 0, std 1, so training batches and exported models alike see the codes as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The axis of the stored `[N, ., ., .]` array that `mean` and `std` index (see
    /// [`Dataset::feature_axis`]): 1 for images and tables, 2 for sequences `[N, T, F, 1]`,
    /// whose statistics run over samples and steps, one per feature (the last axis of a
    /// sample `[T, F]`).
    #[serde(default = "channel_axis", skip_serializing_if = "is_channel_axis")]
    pub feature_axis: usize,
}

fn channel_axis() -> usize {
    1
}

fn is_channel_axis(axis: &usize) -> bool {
    *axis == 1
}

impl Normalization {
    /// Mean 0, std 1 over `channels` channels: leaves values unchanged.
    pub fn identity(channels: usize) -> Self {
        Self::identity_along(1, channels)
    }

    /// Mean 0, std 1 over `count` entries of `feature_axis`.
    pub fn identity_along(feature_axis: usize, count: usize) -> Self {
        Normalization {
            mean: vec![0.0; count],
            std: vec![1.0; count],
            feature_axis,
        }
    }

    /// Population mean and std of each feature over all values of the samples `indices`
    /// (every pixel of a channel; every step of a sequence feature).
    pub fn fit(data: &Dataset, indices: &[usize]) -> Result<Self, DataError> {
        if indices.is_empty() {
            return Err(DataError::Invalid(
                "cannot fit normalization on an empty training split".into(),
            ));
        }
        let axis = data.feature_axis();
        let features = data.images.len_of(Axis(axis));
        if data.is_token_ids() {
            return Ok(Self::identity_along(axis, features));
        }
        let per_sample = data.input_shape().iter().product::<usize>() / features.max(1);
        let count = (indices.len() * per_sample) as f64;
        // Within one sample, the feature axis is one lower than in the stored array.
        let sample_axis = Axis(axis - 1);
        // Two passes in f64: exact enough for 10^8 values, where sum-of-squares is not.
        let mut sum = vec![0f64; features];
        for &i in indices {
            let sample = data.images.index_axis(Axis(0), i);
            for (k, part) in sample.axis_iter(sample_axis).enumerate() {
                sum[k] += part.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let mut sq = vec![0f64; features];
        for &i in indices {
            let sample = data.images.index_axis(Axis(0), i);
            for (k, part) in sample.axis_iter(sample_axis).enumerate() {
                sq[k] += part
                    .iter()
                    .map(|&v| (f64::from(v) - mean[k]).powi(2))
                    .sum::<f64>();
            }
        }
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / count).sqrt();
                if sd <= 1e-6 * m.abs().max(1.0) {
                    1.0
                } else {
                    sd as f32
                }
            })
            .collect();
        let mut fitted = Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
            feature_axis: axis,
        };
        for c in &data.categorical {
            fitted.mean[c.feature] = 0.0;
            fitted.std[c.feature] = 1.0;
        }
        Ok(fitted)
    }

    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// `1 / std` per channel: what a `Mul` node would bake in instead of a `Div`.
    pub fn scale(&self) -> Vec<f32> {
        self.std.iter().map(|s| 1.0 / s).collect()
    }

    /// Normalizes stored `[N, ., ., .]` values in place. Panics if the feature axis does not
    /// have one entry per mean.
    pub fn apply(&self, images: &mut Array4<f32>) {
        let axis = Axis(self.feature_axis);
        assert_eq!(images.len_of(axis), self.channels(), "feature count");
        for (k, mut part) in images.axis_iter_mut(axis).enumerate() {
            let (m, s) = (self.mean[k], self.std[k]);
            part.mapv_inplace(|v| (v - m) / s);
        }
    }
}
