//! CIFAR-10 and CIFAR-100 "binary version" batches.
//!
//! CIFAR-10 record: 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each
//! 32x32 row-major) = 3073 bytes. CIFAR-100 record: coarse label byte, fine label byte, then the
//! same 3072 pixel bytes = 3074 bytes; the fine label (100 classes) is used.
//! The pixel order is already `[C, H, W]`.

use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::dataset::Dataset;
use crate::error::{DataError, Location};
use crate::read::read_file;

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR variant a directory or file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    /// Bytes per record: label byte(s) plus 3072 pixels.
    pub fn record_len(self) -> usize {
        self.label_bytes() + PIXELS
    }

    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    pub fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }

    fn title(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "CIFAR-10",
            CifarKind::Cifar100 => "CIFAR-100",
        }
    }

    /// Training files, test file, the folder the official archive unpacks to, class-name file.
    fn layout(
        self,
    ) -> (
        &'static [&'static str],
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            CifarKind::Cifar10 => (
                &[
                    "data_batch_1.bin",
                    "data_batch_2.bin",
                    "data_batch_3.bin",
                    "data_batch_4.bin",
                    "data_batch_5.bin",
                ],
                "test_batch.bin",
                "cifar-10-batches-bin",
                "batches.meta.txt",
            ),
            CifarKind::Cifar100 => (
                &["train.bin"],
                "test.bin",
                "cifar-100-binary",
                "fine_label_names.txt",
            ),
        }
    }
}

/// Loads the training and test parts of CIFAR-10 (`data_batch_1.bin` .. `data_batch_5.bin`,
/// `test_batch.bin`) or CIFAR-100 (`train.bin`, `test.bin`) from `dir`.
///
/// `dir` may also be the folder that holds the unpacked archive folder
/// (`cifar-10-batches-bin` / `cifar-100-binary`). Class names are read from `batches.meta.txt`
/// / `fine_label_names.txt` when present.
pub fn load_cifar(dir: &Path, kind: CifarKind) -> Result<(Dataset, Dataset), DataError> {
    let (train_files, test_file, sub, names_file) = kind.layout();
    let dir = if !dir.join(train_files[0]).exists() && dir.join(sub).join(train_files[0]).exists() {
        dir.join(sub)
    } else {
        dir.to_path_buf()
    };
    let all: Vec<PathBuf> = train_files
        .iter()
        .chain(std::iter::once(&test_file))
        .map(|f| dir.join(f))
        .collect();
    if let Some(missing) = all.iter().find(|p| !p.is_file()) {
        return Err(DataError::Missing {
            path: missing.clone(),
            what: format!(
                "a {} directory must hold {} and {test_file}",
                kind.title(),
                train_files.join(", ")
            ),
            fix: format!(
                "Unpack the {} binary version archive and point `dir` at the folder with these files",
                kind.title()
            ),
        });
    }
    // Decode all training batches into one buffer: no repeated concatenation.
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for p in &all[..train_files.len()] {
        read_records(p, kind, &mut labels, &mut pixels)?;
    }
    let mut train = to_dataset(kind, labels, pixels)?;
    let mut test = load_cifar_file(&all[train_files.len()], kind)?;
    let names = read_class_names(&dir.join(names_file), kind.classes());
    train.class_names.clone_from(&names);
    test.class_names = names;
    Ok((train, test))
}

/// Loads one CIFAR binary batch file.
pub fn load_cifar_file(path: &Path, kind: CifarKind) -> Result<Dataset, DataError> {
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    read_records(path, kind, &mut labels, &mut pixels)?;
    to_dataset(kind, labels, pixels)
}

fn to_dataset(kind: CifarKind, labels: Vec<u32>, pixels: Vec<f32>) -> Result<Dataset, DataError> {
    let images = Array4::from_shape_vec((labels.len(), 3, 32, 32), pixels).expect("whole records");
    Dataset::new(kind.name(), images, labels, kind.classes())
}

/// Appends the labels and pixels of every record in `path`.
fn read_records(
    path: &Path,
    kind: CifarKind,
    labels: &mut Vec<u32>,
    pixels: &mut Vec<f32>,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    let rec = kind.record_len();
    if bytes.is_empty() {
        return Err(DataError::corrupt(
            path,
            Location::Byte(0),
            "the file is empty",
            "Download or copy the file again",
        ));
    }
    if bytes.len() % rec != 0 {
        let index = bytes.len() / rec;
        let other = match kind {
            CifarKind::Cifar10 if bytes.len() % CifarKind::Cifar100.record_len() == 0 => {
                " It divides into 3074-byte CIFAR-100 records: use format = \"cifar100\"."
            }
            CifarKind::Cifar100 if bytes.len() % CifarKind::Cifar10.record_len() == 0 => {
                " It divides into 3073-byte CIFAR-10 records: use format = \"cifar10\"."
            }
            _ => "",
        };
        return Err(DataError::corrupt(
            path,
            Location::Record {
                index: index as u64,
                byte: (index * rec) as u64,
                decompressed: false,
            },
            format!(
                "the file size {} is not a multiple of the {rec}-byte {} record; the last record has only {} bytes",
                bytes.len(),
                kind.title(),
                bytes.len() % rec
            ),
            format!("The file is truncated; download or copy it again.{other}"),
        ));
    }
    let n = bytes.len() / rec;
    let classes = kind.classes();
    labels.reserve(n);
    pixels.reserve(n * PIXELS);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let at = Location::Record {
            index: i as u64,
            byte: (i * rec) as u64,
            decompressed: false,
        };
        // CIFAR-100's coarse byte is checked too: a bad value there reveals misaligned records.
        if kind == CifarKind::Cifar100 && r[0] >= 20 {
            return Err(DataError::LabelOutOfRange {
                file: path.to_path_buf(),
                at,
                label: i64::from(r[0]),
                classes: 20,
                fix: "The coarse label byte is damaged, or this is not a CIFAR-100 file".into(),
            });
        }
        let label = r[kind.label_bytes() - 1];
        if usize::from(label) >= classes {
            return Err(DataError::LabelOutOfRange {
                file: path.to_path_buf(),
                at,
                label: i64::from(label),
                classes,
                fix: format!(
                    "The record is damaged, or this is not a {} file",
                    kind.title()
                ),
            });
        }
        labels.push(u32::from(label));
        pixels.extend(r[kind.label_bytes()..].iter().map(|&p| f32::from(p)));
    }
    Ok(())
}

/// Class names, one per non-empty line; ignored unless there is exactly one per class.
fn read_class_names(path: &Path, classes: usize) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    (names.len() == classes).then_some(names)
}
