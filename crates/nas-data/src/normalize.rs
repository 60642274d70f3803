//! Per-channel normalization statistics, fitted on the training split only.

use ndarray::{Array4, Axis};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::DataError;

/// `x_norm = (x - mean[c]) / std[c]` per channel `c` (per feature for tabular data).
///
/// Returned as plain values so the exporter can put the same `Sub` and `Div` in front of the
/// model. A channel whose std is negligible (below 1e-6 × max(1, |mean|), i.e. constant up to
/// rounding) gets std 1, so it is only centred, never blown up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean 0, std 1: leaves values unchanged.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Population mean and std of each channel over all pixels of the samples `indices`.
    pub fn fit(data: &Dataset, indices: &[usize]) -> Result<Self, DataError> {
        if indices.is_empty() {
            return Err(DataError::Invalid(
                "cannot fit normalization on an empty training split".into(),
            ));
        }
        let [c, h, w] = data.input_shape();
        let count = (indices.len() * h * w) as f64;
        // Two passes in f64: exact enough for 10^8 values, where sum-of-squares is not.
        let mut sum = vec![0f64; c];
        for &i in indices {
            for (ch, plane) in data.images.index_axis(Axis(0), i).outer_iter().enumerate() {
                sum[ch] += plane.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let mut sq = vec![0f64; c];
        for &i in indices {
            for (ch, plane) in data.images.index_axis(Axis(0), i).outer_iter().enumerate() {
                sq[ch] += plane
                    .iter()
                    .map(|&v| (f64::from(v) - mean[ch]).powi(2))
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
        Ok(Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// `1 / std` per channel: what a `Mul` node would bake in instead of a `Div`.
    pub fn scale(&self) -> Vec<f32> {
        self.std.iter().map(|s| 1.0 / s).collect()
    }

    /// Normalizes `[N, C, H, W]` values in place. Panics if `C` differs from the channel count.
    pub fn apply(&self, images: &mut Array4<f32>) {
        assert_eq!(images.len_of(Axis(1)), self.channels(), "channel count");
        for mut sample in images.outer_iter_mut() {
            for (ch, mut plane) in sample.outer_iter_mut().enumerate() {
                let (m, s) = (self.mean[ch], self.std[ch]);
                plane.mapv_inplace(|v| (v - m) / s);
            }
        }
    }
}
