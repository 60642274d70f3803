//! IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST): `idx3-ubyte` images and `idx1-ubyte`
//! labels, plain or gzipped (detected by the magic bytes `1f 8b`, not by the file name).
//!
//! Layout: magic `00 00 08 NDIMS` (0x08 = unsigned byte), then NDIMS big-endian u32 sizes,
//! then the values row-major.

use std::path::Path;

use ndarray::Array4;

use crate::dataset::{Dataset, infer_classes};
use crate::error::{CLASSES_FIX, DataError};
use crate::read::{FileBytes, read_maybe_gz};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads one IDX image file and its label file as a single-channel image data set
/// `[N, 1, H, W]` with raw pixel values 0..255.
///
/// `classes`: when given, every label must be below it; when `None`, it is one more than the
/// largest label, and a label that would leave most classes without a sample (a byte of 255
/// among digits 0..=9) is refused.
pub fn load_idx(
    images: &Path,
    labels: &Path,
    classes: Option<usize>,
    name: &str,
) -> Result<Dataset, DataError> {
    let img = read_maybe_gz(images)?;
    let (dims, start) = header(&img, images, 3)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h == 0 || w == 0 {
        return Err(DataError::corrupt(
            images,
            img.at(8),
            format!("image size {h}x{w} is empty"),
            "The header is damaged; download or copy the file again",
        ));
    }
    let pixels = &img.bytes[start..];
    let lab = read_maybe_gz(labels)?;
    let (ldims, lstart) = header(&lab, labels, 1)?;
    if ldims[0] != n {
        return Err(DataError::Mismatch {
            what: format!(
                "{} holds {n} images but {} holds {} labels",
                images.display(),
                labels.display(),
                ldims[0]
            ),
            fix: "Pair each image file with its own label file (train with train, test with test)"
                .into(),
        });
    }
    let raw_labels: Vec<u32> = lab.bytes[lstart..].iter().map(|&b| u32::from(b)).collect();
    if classes.is_none() {
        check_sparse_labels(&raw_labels, labels, &lab, lstart)?;
    }
    let classes = infer_classes(classes, &raw_labels);
    if let Some((i, &l)) = raw_labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(DataError::LabelOutOfRange {
            file: labels.to_path_buf(),
            at: lab.record(i, lstart + i),
            label: i64::from(l),
            classes,
            fix: CLASSES_FIX.into(),
        });
    }
    let data: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
    let images = Array4::from_shape_vec((n, 1, h, w), data).expect("size checked by header()");
    Dataset::new(name, images, raw_labels, classes)
}

/// Checks magic, sizes and length; returns the sizes and the offset of the first value.
fn header(file: &FileBytes, path: &Path, ndims: u8) -> Result<(Vec<usize>, usize), DataError> {
    let b = &file.bytes;
    let (want, what) = if ndims == 3 {
        (IMAGES_MAGIC, "image")
    } else {
        (LABELS_MAGIC, "label")
    };
    if b.len() < 4 {
        return Err(DataError::corrupt(
            path,
            file.at(b.len()),
            format!(
                "the file ends after {} bytes, inside the 4-byte IDX magic number",
                b.len()
            ),
            "The file is truncated; download or copy it again",
        ));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != want {
        let hint = match magic {
            IMAGES_MAGIC | LABELS_MAGIC => {
                "This is the other kind of IDX file: check that the image and label paths are not swapped"
                    .to_string()
            }
            m if m >> 16 == 0 && b[3] == ndims => format!(
                "Element type 0x{:02x} is not supported; only unsigned bytes (0x08, as in MNIST) are",
                b[2]
            ),
            _ if b.starts_with(b"PK") => {
                "This is a zip archive: unpack it and point at the files inside".to_string()
            }
            _ => "This is not an IDX file (or it is damaged); check the path".to_string(),
        };
        return Err(DataError::corrupt(
            path,
            file.at(0),
            format!("bad magic number 0x{magic:08x}; an IDX {what} file starts with 0x{want:08x}"),
            hint,
        ));
    }
    let start = 4 + 4 * usize::from(ndims);
    if b.len() < start {
        return Err(DataError::corrupt(
            path,
            file.at(b.len()),
            format!(
                "the file ends after {} bytes, inside the {start}-byte header",
                b.len()
            ),
            "The file is truncated; download or copy it again",
        ));
    }
    let dims: Vec<usize> = (0..usize::from(ndims))
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize
        })
        .collect();
    let per: usize = dims[1..].iter().product();
    let total = dims[0]
        .checked_mul(per)
        .and_then(|v| v.checked_add(start))
        .ok_or_else(|| {
            DataError::corrupt(
                path,
                file.at(4),
                format!("sizes {dims:?} overflow"),
                "The header is damaged; download or copy the file again",
            )
        })?;
    if b.len() < total {
        // Name the first incomplete item so the user sees how far the data got.
        let item = (b.len() - start) / per.max(1);
        return Err(DataError::corrupt(
            path,
            file.record(item, start + item * per),
            format!(
                "the file ends after {} bytes inside {what} {item}, but its header promises {} {what}s ({total} bytes)",
                b.len(),
                dims[0]
            ),
            "The file is truncated; download or copy it again",
        ));
    }
    if b.len() > total {
        return Err(DataError::corrupt(
            path,
            file.at(total),
            format!(
                "{} unexpected bytes follow the last of {} {what}s",
                b.len() - total,
                dims[0]
            ),
            "The header and the data disagree; download or copy the file again",
        ));
    }
    Ok((dims, start))
}

/// Without a declared class count, refuses the first label at or above twice the number of
/// distinct labels: counting classes up to it would leave more than half of them without a
/// single sample, the mark of a sentinel or damaged byte rather than a class (one label byte
/// of 255 would otherwise make 256 classes).
fn check_sparse_labels(
    raw: &[u32],
    path: &Path,
    file: &FileBytes,
    start: usize,
) -> Result<(), DataError> {
    let mut seen = [false; 256];
    for &l in raw {
        seen[l as usize] = true;
    }
    let distinct: Vec<u32> = (0..256u32).filter(|&l| seen[l as usize]).collect();
    let observed = 2 * distinct.len() as u32;
    let Some((i, &l)) = raw.iter().enumerate().find(|&(_, &l)| l >= observed) else {
        return Ok(());
    };
    Err(DataError::corrupt(
        path,
        file.record(i, start + i),
        format!(
            "label {l} would make {} classes, but only {} distinct labels occur ({}), so most classes would have no sample",
            l + 1,
            distinct.len(),
            ranges(&distinct)
        ),
        "If this label marks unlabelled or damaged records, remove them; if the data set really has that many classes, set `classes` in [data] (every label must be below it)",
    ))
}

/// Sorted distinct values as runs: `0..=9, 255`.
fn ranges(sorted: &[u32]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        runs.push(if j > i {
            format!("{}..={}", sorted[i], sorted[j])
        } else {
            sorted[i].to_string()
        });
        i = j + 1;
    }
    runs.join(", ")
}
