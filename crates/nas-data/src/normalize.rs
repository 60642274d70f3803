//! Per-channel (per-feature) normalization statistics, fitted on the training split only.

use ndarray::{Array4, Axis};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::DataError;
use crate::targets::TargetScale;

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
    /// Padded float sequences (see [`Dataset::is_padded`]): a step whose features are all 0
    /// is padding, left out of the statistics and left at 0 by [`Normalization::apply`] (and
    /// by the exported model's normalization), so the network still sees it as padding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_padding: bool,
    /// Regression (see [`Dataset::targets`]): the standardization of the targets over the
    /// training split; training predicts standardized targets and exported models undo it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetScale>,
}

fn channel_axis() -> usize {
    1
}

fn is_channel_axis(axis: &usize) -> bool {
    *axis == 1
}

/// Whether the features of one sequence step mark it as padding (all exactly 0).
pub fn is_padding(step: &[f32]) -> bool {
    step.iter().all(|&v| v == 0.0)
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
            keep_padding: false,
            target: None,
        }
    }

    /// Population mean and std of each feature over all values of the samples `indices`
    /// (every pixel of a channel; every step of a sequence feature, padding steps left out).
    ///
    /// For regression data the targets' [`TargetScale`] over the same samples is fitted too.
    pub fn fit(data: &Dataset, indices: &[usize]) -> Result<Self, DataError> {
        let mut fitted = Self::fit_features(data, indices)?;
        fitted.target = data.targets.as_ref().map(|t| {
            let values: Vec<f32> = indices.iter().map(|&i| t[i]).collect();
            TargetScale::fit(&values)
        });
        Ok(fitted)
    }

    fn fit_features(data: &Dataset, indices: &[usize]) -> Result<Self, DataError> {
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
        if data.is_padded() {
            return Ok(Self::fit_padded_steps(data, indices));
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
        let mut fitted = Self::from_sums(&mean, &sq, count, axis, false);
        // Category codes are embedded, never scaled.
        for c in &data.categorical {
            fitted.mean[c.feature] = 0.0;
            fitted.std[c.feature] = 1.0;
        }
        Ok(fitted)
    }

    /// [`Normalization::fit`] of padded float sequences `[N, T, F, 1]`: statistics over the
    /// steps that are not padding.
    fn fit_padded_steps(data: &Dataset, indices: &[usize]) -> Self {
        let features = data.images.len_of(Axis(2));
        let steps = || {
            indices.iter().flat_map(|&i| {
                data.images
                    .index_axis(Axis(0), i)
                    .outer_iter()
                    .map(|step| step.iter().copied().collect::<Vec<f32>>())
                    .filter(|step| !is_padding(step))
                    .collect::<Vec<_>>()
            })
        };
        let mut sum = vec![0f64; features];
        let mut count = 0usize;
        for step in steps() {
            count += 1;
            for (k, &v) in step.iter().enumerate() {
                sum[k] += f64::from(v);
            }
        }
        // Every step padding: nothing to learn from, so leave values as they are.
        let count = count.max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let mut sq = vec![0f64; features];
        for step in steps() {
            for (k, &v) in step.iter().enumerate() {
                sq[k] += (f64::from(v) - mean[k]).powi(2);
            }
        }
        Self::from_sums(&mean, &sq, count, 2, true)
    }

    /// The normalization of per-feature means and sums of squared deviations over `count`
    /// values each.
    fn from_sums(mean: &[f64], sq: &[f64], count: f64, axis: usize, keep_padding: bool) -> Self {
        let std = sq
            .iter()
            .zip(mean)
            .map(|(s, m)| {
                let sd = (s / count).sqrt();
                if sd <= 1e-6 * m.abs().max(1.0) {
                    1.0
                } else {
                    sd as f32
                }
            })
            .collect();
        Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
            feature_axis: axis,
            keep_padding,
            target: None,
        }
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
        if self.keep_padding {
            // [N, T, F, 1]: step by step, padding left at 0.
            for mut sample in images.outer_iter_mut() {
                for mut step in sample.outer_iter_mut() {
                    if is_padding(step.as_slice().expect("standard layout")) {
                        continue;
                    }
                    for (k, v) in step.iter_mut().enumerate() {
                        *v = (*v - self.mean[k]) / self.std[k];
                    }
                }
            }
            return;
        }
        for (k, mut part) in images.axis_iter_mut(axis).enumerate() {
            let (m, s) = (self.mean[k], self.std[k]);
            part.mapv_inplace(|v| (v - m) / s);
        }
    }
}
