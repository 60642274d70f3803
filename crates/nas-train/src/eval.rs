//! Loss and accuracy of an inference session over batches.

use nas_data::Dataset;
use ndarray::{ArrayD, s};
use ort::session::Session;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Mean cross-entropy (natural log, no label smoothing) and accuracy over `samples`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub samples: usize,
}

#[derive(Default)]
struct Totals {
    loss: f64,
    correct: usize,
    samples: usize,
}

impl Totals {
    /// Adds a batch of logits `[N, K]`. Ties go to the lowest class, as ONNX ArgMax does.
    fn add(&mut self, logits: &[f32], classes: usize, labels: &[u32]) {
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

    fn finish(self) -> Evaluation {
        let n = self.samples.max(1) as f64;
        Evaluation {
            loss: self.loss / n,
            accuracy: self.correct as f64 / n,
            samples: self.samples,
        }
    }
}

/// Runs a single-input, single-output classifier over `batches` (inputs in the shape the
/// network takes, see [`Dataset::network_batch`]).
pub(crate) fn evaluate_batches(
    session: &mut Session,
    batches: impl Iterator<Item = (ArrayD<f32>, Vec<u32>)>,
    during: &str,
) -> Result<Evaluation, TrainError> {
    let err = |e: ort::Error| TrainError::Ort {
        during: during.to_string(),
        reason: e.to_string(),
    };
    let input = session.inputs()[0].name().to_string();
    let output = session.outputs()[0].name().to_string();
    let mut totals = Totals::default();
    for (images, labels) in batches {
        let x = Tensor::from_array(images).map_err(err)?;
        let outputs = session
            .run(ort::inputs![input.as_str() => x])
            .map_err(err)?;
        let (shape, logits) = outputs[output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        let classes = shape.last().copied().unwrap_or(1).max(1) as usize;
        totals.add(logits, classes, &labels);
    }
    Ok(totals.finish())
}

/// Raw samples of `data` in order, `batch` at a time, shaped as networks take them.
pub(crate) fn raw_batches(
    data: &Dataset,
    batch: usize,
) -> impl Iterator<Item = (ArrayD<f32>, Vec<u32>)> + '_ {
    let n = data.len();
    (0..n.div_ceil(batch)).map(move |i| {
        let (a, b) = (i * batch, ((i + 1) * batch).min(n));
        (
            data.network_batch(data.images.slice(s![a..b, .., .., ..]).to_owned()),
            data.labels[a..b].to_vec(),
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
        t.add(&[0.0, 3f32.ln(), 1.0, 1.0], 2, &[1, 1]);
        let e = t.finish();
        assert_eq!(e.samples, 2);
        assert_eq!(e.accuracy, 0.5);
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
        assert_eq!(b[1].1[0], d.labels[256]);
    }
}
