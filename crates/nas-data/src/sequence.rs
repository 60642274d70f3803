//! Sequence data sets (stored `[N, T, F, 1]`, see [`DataKind::Sequence`]): from NumPy arrays
//! with optional lengths, and from single-channel images read row by row.

use ndarray::{Array4, IxDyn, s};

use crate::dataset::{DataKind, Dataset, MAX_VOCAB_SIZE, PAD_ID, check_vocab_size};
use crate::error::DataError;
use crate::npy::NpyArray;

/// A sequence data set from `[N, T]` token ids (`token_ids`) or `[N, T, F]` floats, with the
/// steps past each sample's length (from `lengths`, `[N]` or `[N, 1]`) set to padding.
///
/// The vocabulary size of token ids is one more than the largest id left after padding (at
/// least 2, so ids 0 and 1 keep their meaning of padding and unknown token).
pub(crate) fn sequence_dataset(
    x: &NpyArray,
    lengths: Option<&NpyArray>,
    token_ids: bool,
    labels: Vec<u32>,
    classes: usize,
    name: &str,
) -> Result<Dataset, DataError> {
    let (n, t) = (x.shape[0], x.shape[1]);
    let arr = if token_ids {
        x.to_whole_f32(
            "token id",
            (MAX_VOCAB_SIZE - 1) as u32,
            "Store token ids as whole numbers 0, 1, 2, ... (0 = padding, 1 = unknown token)",
        )?
    } else {
        x.to_f32()?
    };
    let f = if token_ids { 1 } else { x.shape[2] };
    let mut values: Array4<f32> = arr
        .into_shape_with_order(IxDyn(&[n, t, f, 1]))
        .expect("standard layout reshapes")
        .into_dimensionality()
        .expect("rank 4 by construction");
    if let Some(l) = lengths {
        for (i, len) in read_lengths(l, x, n, t)?.into_iter().enumerate() {
            values.slice_mut(s![i, len.., .., ..]).fill(PAD_ID as f32);
        }
    }
    let vocab_size = token_ids.then(|| {
        let top = values.iter().fold(0f32, |a, &b| a.max(b));
        (top as usize + 1).max(2)
    });
    if let Some(v) = vocab_size {
        check_vocab_size(name, v)?;
    }
    let mut d = Dataset::with_kind(name, DataKind::Sequence, values, labels, classes)?;
    d.vocab_size = vocab_size;
    d.padded = lengths.is_some() && !token_ids;
    Ok(d)
}

/// The lengths `[N]` (or `[N, 1]`) of the `n` sequences of `x`, each from 0 to `t`.
fn read_lengths(l: &NpyArray, x: &NpyArray, n: usize, t: usize) -> Result<Vec<usize>, DataError> {
    if !matches!(l.shape.as_slice(), [m] | [m, 1] if *m == n) {
        return Err(DataError::Mismatch {
            what: format!(
                "sequences {} hold {n} samples but lengths {} have shape {:?}",
                x.what(),
                l.what(),
                l.shape
            ),
            fix: "Give one length per sample, shape [N]".into(),
        });
    }
    let max = u32::try_from(t).unwrap_or(u32::MAX);
    let fix = format!("Each length counts the real steps of its sample: 0 to {t}");
    let values = l.to_whole_f32("length", max, &fix)?;
    Ok(values.iter().map(|&v| v as usize).collect())
}

impl Dataset {
    /// Single-channel images `[N, 1, H, W]` as sequences of `T = H` rows with `F = W` values
    /// each (sequential MNIST): stored `[N, H, W, 1]`, the same values in the same order.
    pub fn rows_as_sequence(self) -> Result<Dataset, DataError> {
        let [c, h, w] = self.input_shape();
        if self.kind != DataKind::Image || c != 1 {
            let what = if self.kind == DataKind::Image {
                format!("images with {c} channels")
            } else {
                self.describe().to_string()
            };
            return Err(DataError::config(
                "as_sequence",
                format!(
                    "reads single-channel images row by row, but `{}` holds {what}; remove it",
                    self.name
                ),
            ));
        }
        let n = self.len();
        let images = self
            .images
            .into_shape_with_order((n, h, w, 1))
            .expect("standard layout reshapes");
        Ok(Dataset {
            kind: DataKind::Sequence,
            images,
            ..self
        })
    }
}
