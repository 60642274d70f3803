//! Loss and accuracy (classification) or errors (regression) of an inference session over
//! batches.

use nas_data::{Dataset, TargetScale, Targets};
use ndarray::{ArrayD, s};
use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// How well a network did on `samples`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Classification: mean cross-entropy (natural log, no label smoothing); regression: the
    /// mean squared error in the targets' units.
    pub loss: f64,
    /// Fraction classified right; `None` for regression.
    pub accuracy: Option<f64>,
    /// Regression errors in the targets' units; `None` for classification.
    pub errors: Option<RegressionErrors>,
    pub samples: usize,
}

/// How far regression predictions are from their targets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionErrors {
    pub mse: f64,
    pub mae: f64,
    /// Coefficient of determination `1 - SSE / SST` over the evaluated samples (1 is perfect,
    /// 0 is predicting their mean; `-inf` when every target is the same and some error is not 0).
    pub r2: f64,
}

impl RegressionErrors {
    /// The errors under their metric names with `prefix` (`val`, `test`): `<prefix>_mse`,
    /// `_rmse`, `_mae`, `_r2`.
    pub fn metrics(&self, prefix: &str) -> Vec<(String, f64)> {
        vec![
            (format!("{prefix}_mse"), self.mse),
            (format!("{prefix}_rmse"), self.mse.sqrt()),
            (format!("{prefix}_mae"), self.mae),
            (format!("{prefix}_r2"), self.r2),
        ]
    }
}

impl Evaluation {
    /// [`RegressionErrors::metrics`]; empty for classification.
    pub fn regression_metrics(&self, prefix: &str) -> Vec<(String, f64)> {
        self.errors.map(|e| e.metrics(prefix)).unwrap_or_default()
    }
}

#[derive(Default)]
struct Totals {
    loss: f64,
    correct: usize,
    samples: usize,
    /// Regression: sums of |e|, y and y^2 (`loss` holds the sum of e^2).
    regression: Option<[f64; 3]>,
}

impl Totals {
    /// Adds a batch of logits `[N, K]`. Ties go to the lowest class, as ONNX ArgMax does.
    fn add_classes(&mut self, logits: &[f32], classes: usize, labels: &[u32]) {
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let (mut best, mut max) = (0, f32::NEG_INFINITY);
            for (k, &v) in row.iter().enumerate() {
                if v > max {
                    best = k;
                    max = v;
                }
            }
            let m = f64::from(max);
            let lse = m + row
                .iter()
                .map(|&v| (f64::from(v) - m).exp())
                .sum::<f64>()
                .ln();
            self.loss += lse - f64::from(row[label as usize]);
            self.correct += usize::from(best == label as usize);
            self.samples += 1;
        }
    }

    /// Adds a batch of predictions `[N, 1]` of `targets`, both in the targets' units.
    fn add_values(&mut self, predictions: &[f32], targets: &[f32]) {
        let sums = self.regression.get_or_insert([0.0; 3]);
        for (&p, &y) in predictions.iter().zip(targets) {
            let (p, y) = (f64::from(p), f64::from(y));
            self.loss += (p - y).powi(2);
            sums[0] += (p - y).abs();
            sums[1] += y;
            sums[2] += y * y;
            self.samples += 1;
        }
    }

    fn finish(self) -> Evaluation {
        let n = self.samples.max(1) as f64;
        let loss = self.loss / n;
        match self.regression {
            None => Evaluation {
                loss,
                accuracy: Some(self.correct as f64 / n),
                errors: None,
                samples: self.samples,
            },
            Some([abs, sum, sq]) => {
                let sst = (sq - sum * sum / n).max(0.0);
                let r2 = if sst > 0.0 {
                    1.0 - self.loss / sst
                } else if self.loss == 0.0 {
                    1.0
                } else {
                    f64::NEG_INFINITY
                };
                Evaluation {
                    loss,
                    accuracy: None,
                    errors: Some(RegressionErrors {
                        mse: loss,
                        mae: abs / n,
                        r2,
                    }),
                    samples: self.samples,
                }
            }
        }
    }
}

/// Runs a single-input, single-output network over `batches` (inputs in the shape the
/// network takes, see [`Dataset::network_batch`]): a classifier's logits, or a regression
/// prediction, which `restore` (when given) takes from standardized to the targets' units.
pub(crate) fn evaluate_batches(
    session: &mut Session,
    batches: impl Iterator<Item = (ArrayD<f32>, Targets)>,
    restore: Option<&TargetScale>,
    during: &str,
) -> Result<Evaluation, TrainError> {
    let err = |e: ort::Error| TrainError::Ort {
        during: during.to_string(),
        reason: e.to_string(),
    };
    let input = session.inputs()[0].name().to_string();
    let output = session.outputs()[0].name().to_string();
    let mut totals = Totals::default();
    for (images, targets) in batches {
        let x = Tensor::from_array(images).map_err(err)?;
        let outputs = session
            .run(ort::inputs![input.as_str() => x])
            .map_err(err)?;
        let (shape, out) = outputs[output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        match &targets {
            Targets::Classes(labels) => {
                let classes = shape.last().copied().unwrap_or(1).max(1) as usize;
                totals.add_classes(out, classes, labels);
            }
            Targets::Values(values) => {
                let predictions: Vec<f32> = match restore {
                    Some(s) => out.iter().map(|&p| s.restore(p)).collect(),
                    None => out.to_vec(),
                };
                totals.add_values(&predictions, values);
            }
        }
    }
    Ok(totals.finish())
}

/// Raw samples of `data` in order, `batch` at a time, shaped as networks take them.
pub(crate) fn raw_batches(
    data: &Dataset,
    batch: usize,
) -> impl Iterator<Item = (ArrayD<f32>, Targets)> + '_ {
    let n = data.len();
    (0..n.div_ceil(batch)).map(move |i| {
        let (a, b) = (i * batch, ((i + 1) * batch).min(n));
        let picked: Vec<usize> = (a..b).collect();
        (
            data.network_batch(data.images.slice(s![a..b, .., .., ..]).to_owned()),
            data.targets_of(&picked),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    #[test]
    fn totals_match_a_hand_computation() {
        let mut t = Totals::default();
        // Row 0: logits (0, ln 3) -> p = (1/4, 3/4); label 1 is right, loss ln(4/3).
        // Row 1: a tie goes to class 0; label 1 is wrong, loss ln 2.
        t.add_classes(&[0.0, 3f32.ln(), 1.0, 1.0], 2, &[1, 1]);
        let e = t.finish();
        assert_eq!(e.samples, 2);
        assert_eq!(e.accuracy, Some(0.5));
        assert_eq!(e.errors, None);
        let want = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        assert!((e.loss - want).abs() < 1e-7, "{} vs {want}", e.loss);
    }

    #[test]
    fn raw_batches_cover_every_sample_once() {
        let d = nas_data::digits();
        let b: Vec<_> = raw_batches(&d, 256).collect();
        assert_eq!(b.len(), 1797usize.div_ceil(256));
        assert_eq!(
            b.iter().map(|(x, _)| x.len_of(Axis(0))).sum::<usize>(),
            1797
        );
        assert_eq!(b[1].1, d.targets_of(&(256..512).collect::<Vec<_>>()));
    }

    #[test]
    fn regression_errors_match_a_hand_computation() {
        let mut t = Totals::default();
        // Targets 1, 2, 3 (mean 2, SST 2); predictions 1, 3, 2: errors 0, 1, -1.
        t.add_values(&[1.0, 3.0], &[1.0, 2.0]);
        t.add_values(&[2.0], &[3.0]);
        let e = t.finish();
        assert_eq!(e.accuracy, None);
        let r = e.errors.unwrap();
        assert!((r.mse - 2.0 / 3.0).abs() < 1e-12 && e.loss == r.mse);
        assert!((r.mae - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.r2 - 0.0).abs() < 1e-12, "{r:?}");
        let names: Vec<String> = e
            .regression_metrics("val")
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(names, ["val_mse", "val_rmse", "val_mae", "val_r2"]);
    }
}
