//! Epoch iterators: shuffled, normalized, optionally augmented batches.

use ndarray::Array4;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{DataKind, Dataset};
use crate::error::DataError;
use crate::normalize::{Normalization, is_padding};
use crate::rng::{Stream, below, rng, shuffle};
use crate::targets::Targets;

/// Training-time augmentation of images, applied after normalization.
///
/// Random crop: the image is padded by `crop_padding` zeros (zero in normalized space, i.e.
/// the channel mean) on every side and an `H x W` window is cut at a uniform offset; 0 turns
/// cropping off. Horizontal flip: with probability 0.5, after the crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    pub crop_padding: usize,
    pub horizontal_flip: bool,
}

impl Augment {
    /// The usual setting for an input shape: padding `max(1, round(H / 8))` (4 for 32x32, as
    /// in the CIFAR literature; 1 for 8x8) and horizontal flips.
    pub fn default_for(input_shape: [usize; 3]) -> Augment {
        let h = input_shape[1];
        Augment {
            crop_padding: ((h + 4) / 8).max(1),
            horizontal_flip: true,
        }
    }
}

/// The error of asking for crops and flips of data that are not images.
pub(crate) fn not_images(data: &Dataset) -> DataError {
    DataError::config(
        "augment",
        format!(
            "crop and flip need images, but `{}` holds {}; set augment = false",
            data.name,
            data.describe()
        ),
    )
}

/// How to cut a part into batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    pub batch_size: usize,
    /// Shuffle the order every epoch (from the seed and the epoch number).
    pub shuffle: bool,
    /// Leave out the last batch when it would be smaller than `batch_size`.
    pub drop_last: bool,
    pub augment: Option<Augment>,
}

/// Iterator over one epoch: `(images [B, C, H, W] normalized, labels)`.
///
/// The sample order depends only on (seed, epoch) and the augmentation draws only on (seed,
/// epoch) and the sample order, never on the batch size.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    next: usize,
    end: usize,
    batch_size: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
    /// See [`Normalization::keep_padding`].
    keep_padding: bool,
    augment: Option<(Augment, ChaCha8Rng)>,
}

/// The batches of one epoch over the samples `indices` of `data`.
pub fn batches<'a>(
    data: &'a Dataset,
    indices: &[usize],
    norm: &Normalization,
    opts: &BatchOptions,
    seed: u64,
    epoch: u64,
) -> Result<Batches<'a>, DataError> {
    if opts.batch_size == 0 {
        return Err(DataError::Invalid("batch size must be at least 1".into()));
    }
    let axis = data.feature_axis();
    let features = data.images.len_of(ndarray::Axis(axis));
    if norm.feature_axis != axis || norm.channels() != features {
        return Err(DataError::Invalid(format!(
            "normalization has {} entries along axis {} but data set `{}` ({}) has {features} along axis {axis}",
            norm.channels(),
            norm.feature_axis,
            data.name,
            data.describe(),
        )));
    }
    if let Some(&i) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(DataError::Invalid(format!(
            "sample index {i} is out of range for data set `{}` with {} samples",
            data.name,
            data.len()
        )));
    }
    if opts.augment.is_some() && data.kind != DataKind::Image {
        return Err(not_images(data));
    }
    let mut order = indices.to_vec();
    if opts.shuffle {
        shuffle(&mut rng(seed, Stream::Shuffle, epoch), &mut order);
    }
    let end = if opts.drop_last {
        order.len() / opts.batch_size * opts.batch_size
    } else {
        order.len()
    };
    Ok(Batches {
        data,
        order,
        next: 0,
        end,
        batch_size: opts.batch_size,
        mean: norm.mean.clone(),
        std: norm.std.clone(),
        keep_padding: norm.keep_padding,
        augment: opts.augment.map(|a| (a, rng(seed, Stream::Augment, epoch))),
    })
}

impl Batches<'_> {
    /// Writes sample `src` (one `[C, H, W]` block) normalized, and augmented if set, to `dst`.
    fn fill(&mut self, src: &[f32], dst: &mut [f32]) {
        let [c, h, w] = self.data.input_shape();
        let hw = h * w;
        let Some((aug, r)) = &mut self.augment else {
            // Runs of `run` values share one feature: a channel plane of an image, one
            // feature of one step of a sequence `[T, F, 1]` (then run = 1).
            let features = self.mean.len();
            if self.keep_padding {
                // Padded sequences [T, F, 1]: a step of all-zero features stays 0 (dst is).
                let steps = dst.chunks_mut(features).zip(src.chunks(features));
                for (d, s) in steps.filter(|(_, s)| !is_padding(s)) {
                    for (k, (d, &v)) in d.iter_mut().zip(s).enumerate() {
                        *d = (v - self.mean[k]) / self.std[k];
                    }
                }
                return;
            }
            let run = if self.data.feature_axis() == 1 { hw } else { w };
            for (k, (d, s)) in dst.chunks_mut(run).zip(src.chunks(run)).enumerate() {
                let (m, sd) = (self.mean[k % features], self.std[k % features]);
                for (d, &v) in d.iter_mut().zip(s) {
                    *d = (v - m) / sd;
                }
            }
            return;
        };
        let p = aug.crop_padding;
        let (dy, dx) = if p > 0 {
            (below(r, 2 * p + 1), below(r, 2 * p + 1))
        } else {
            (0, 0)
        };
        let flip = aug.horizontal_flip && r.next_u32() & 1 == 1;
        // dst starts zeroed: positions that fall into the padding stay 0 (= the mean).
        for ch in 0..c {
            let (m, s) = (self.mean[ch], self.std[ch]);
            for y in 0..h {
                let Some(sy) = (y + dy).checked_sub(p).filter(|&sy| sy < h) else {
                    continue;
                };
                for x in 0..w {
                    let xc = if flip { w - 1 - x } else { x };
                    if let Some(sx) = (xc + dx).checked_sub(p).filter(|&sx| sx < w) {
                        dst[ch * hw + y * w + x] = (src[ch * hw + sy * w + sx] - m) / s;
                    }
                }
            }
        }
    }
}

impl<'a> Batches<'a> {
    /// The same batches with their [`Targets`]: class indices, or the regression targets of
    /// a [`Dataset::targets`] set (in their own units; see [`Targets::normalized`]).
    pub fn with_targets(self) -> TargetBatches<'a> {
        TargetBatches(self)
    }

    /// The next batch of samples, normalized (and augmented), with the indices it holds.
    fn next_samples(&mut self) -> Option<(Array4<f32>, Vec<usize>)> {
        if self.next >= self.end {
            return None;
        }
        let stop = (self.next + self.batch_size).min(self.end);
        let picked: Vec<usize> = self.order[self.next..stop].to_vec();
        self.next = stop;
        let [c, h, w] = self.data.input_shape();
        let chw = c * h * w;
        let mut out = Array4::<f32>::zeros((picked.len(), c, h, w));
        let data = self.data;
        let src = data
            .images
            .as_slice()
            .map(std::borrow::Cow::Borrowed)
            .unwrap_or_else(|| std::borrow::Cow::Owned(data.images.iter().copied().collect()));
        let dst = out.as_slice_mut().expect("fresh array is contiguous");
        for (j, &i) in picked.iter().enumerate() {
            self.fill(
                &src[i * chw..(i + 1) * chw],
                &mut dst[j * chw..(j + 1) * chw],
            );
        }
        Some((out, picked))
    }

    fn remaining(&self) -> usize {
        (self.end - self.next).div_ceil(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = (Array4<f32>, Vec<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        let (out, picked) = self.next_samples()?;
        let labels = picked.iter().map(|&i| self.data.labels[i]).collect();
        Some((out, labels))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// [`Batches`] yielding `(samples, targets)`; see [`Batches::with_targets`].
pub struct TargetBatches<'a>(Batches<'a>);

impl Iterator for TargetBatches<'_> {
    type Item = (Array4<f32>, Targets);

    fn next(&mut self) -> Option<Self::Item> {
        let (out, picked) = self.0.next_samples()?;
        Some((out, self.0.data.targets_of(&picked)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for TargetBatches<'_> {}
