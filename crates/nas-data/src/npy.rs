//! NumPy `.npy` arrays and `.npz` archives of them.
//!
//! `.npy`: magic `\x93NUMPY`, version byte pair, header length (u16 little-endian in version 1,
//! u32 in versions 2 and 3), a Python dict literal `{'descr': '<f4', 'fortran_order': False,
//! 'shape': (N, ...), }`, then the raw values. `.npz`: a zip archive (stored or deflated) whose
//! members are `KEY.npy`, as written by `numpy.savez` and `numpy.savez_compressed`.
//!
//! Supported element types: bool, signed and unsigned integers of 1, 2, 4 and 8 bytes, float32
//! and float64, either byte order, C or Fortran order.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{Array4, ArrayD, IxDyn, ShapeBuilder};
use serde::{Deserialize, Serialize};

use crate::dataset::{DataKind, Dataset, infer_classes};
use crate::error::{CLASSES_FIX, DataError, Location};
use crate::read::read_file;
use crate::sequence::sequence_dataset;

/// How the axes of an image array are laid out.
///
/// `Auto` decides by rank: rank 2 is `nf` (tabular), rank 3 is `nhw` (one channel), rank 4
/// takes the smaller of axes 1 and 3 as the channel axis if it has at most 4 entries
/// (`[N, 32, 32, 3]` is `nhwc`, `[N, 3, 32, 32]` is `nchw`); when both axes are equal or both
/// exceed 4 the layout must be set explicitly. Sequences are never guessed: they need `nt`
/// or `ntf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Auto,
    /// `[N, C, H, W]`, the layout the models take.
    Nchw,
    /// `[N, H, W, C]`, as Keras and TensorFlow store images.
    Nhwc,
    /// `[N, H, W]`, single-channel images.
    Nhw,
    /// `[N, F]`, tabular rows of `F` features.
    Nf,
    /// `[N, T]`, token-id sequences: whole numbers, 0 = padding, 1 = unknown token.
    Nt,
    /// `[N, T, F]`, float sequences of `T` steps with `F` features.
    Ntf,
}

impl Layout {
    /// Whether the layout is one of the sequence layouts.
    pub fn is_sequence(self) -> bool {
        matches!(self, Layout::Nt | Layout::Ntf)
    }
}

/// Member names of an `.npz` archive, without the `.npy` suffix. The test pair is optional:
/// when neither test key is in the archive, the source has no test part. The lengths of
/// sequences (layouts `nt`, `ntf`) are read when their key is given, or when the archive
/// holds arrays named `lengths_train` / `lengths_test`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NpzKeys {
    pub x_train: String,
    pub y_train: String,
    pub x_test: String,
    pub y_test: String,
    /// Sequence lengths `[N]` of the training part: steps past them become padding.
    pub lengths_train: Option<String>,
    /// Sequence lengths `[N]` of the test part.
    pub lengths_test: Option<String>,
}

impl Default for NpzKeys {
    fn default() -> Self {
        NpzKeys {
            x_train: "x_train".into(),
            y_train: "y_train".into(),
            x_test: "x_test".into(),
            y_test: "y_test".into(),
            lengths_train: None,
            lengths_test: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
}

/// One array read from an `.npy` file or `.npz` member, values still as stored.
#[derive(Clone, Debug)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    /// The dtype string of the header, e.g. `<f4` or `|u1`.
    pub descr: String,
    pub fortran_order: bool,
    kind: Kind,
    size: usize,
    big_endian: bool,
    bytes: Vec<u8>,
    data_start: usize,
    file: PathBuf,
    member: Option<String>,
}

/// Reads one `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    parse_npy(read_file(path)?, path, None)
}

fn at(member: Option<&str>, byte: usize) -> Location {
    match member {
        Some(name) => Location::Member {
            name: name.to_string(),
            byte: byte as u64,
        },
        None => Location::Byte(byte as u64),
    }
}

const TRUNCATED: &str = "The file is truncated; write, download or copy it again";

/// Parses the bytes of an `.npy` file; `member` names it inside an `.npz`.
fn parse_npy(bytes: Vec<u8>, file: &Path, member: Option<&str>) -> Result<NpyArray, DataError> {
    let err = |byte: usize, what: String, fix: &str| {
        DataError::corrupt(file, at(member, byte), what, fix.to_string())
    };
    if bytes.len() < 10 {
        return Err(err(
            bytes.len(),
            format!(
                "the data ends after {} bytes, inside the .npy preamble",
                bytes.len()
            ),
            TRUNCATED,
        ));
    }
    if &bytes[..6] != b"\x93NUMPY" {
        let fix = if bytes.starts_with(b"PK") {
            "This is a zip archive: use format = \"npz\" with `path`"
        } else {
            "An .npy file is written by numpy.save; check the path"
        };
        return Err(err(
            0,
            format!(
                "bad magic number {:02x?}; an .npy file starts with \\x93NUMPY",
                &bytes[..6]
            ),
            fix,
        ));
    }
    let (len_bytes, header_start) = match bytes[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => {
            return Err(err(
                6,
                format!("unsupported .npy format version {v}.{}", bytes[7]),
                "Save the array with numpy.save (format versions 1 to 3 are read)",
            ));
        }
    };
    if bytes.len() < header_start {
        return Err(err(
            bytes.len(),
            "the data ends inside the header length".into(),
            TRUNCATED,
        ));
    }
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(err(
            bytes.len(),
            format!(
                "the data ends after {} bytes, inside the {header_len}-byte header",
                bytes.len()
            ),
            TRUNCATED,
        ));
    }
    let header = Header::parse(&bytes[header_start..data_start]).map_err(|(pos, what)| {
        err(
            header_start + pos,
            format!("cannot parse the .npy header: {what}"),
            "The header is damaged; write the array again with numpy.save",
        )
    })?;
    let (kind, size, big_endian) = parse_descr(&header.descr).ok_or_else(|| {
        err(
            header_start,
            format!("element type `{}` is not supported", header.descr),
            "Convert the array to float32, float64, an integer type or bool (e.g. x.astype(np.float32))",
        )
    })?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|c| c.checked_mul(size))
        .ok_or_else(|| {
            err(
                header_start,
                format!("shape {:?} overflows", header.shape),
                "The header is damaged; write the array again with numpy.save",
            )
        })?;
    let end = data_start + count;
    if bytes.len() < end {
        let element = (bytes.len() - data_start) / size;
        return Err(err(
            data_start + element * size,
            format!(
                "the data ends after {} bytes inside element {element}, but shape {:?} of `{}` needs {end} bytes",
                bytes.len(),
                header.shape,
                header.descr
            ),
            TRUNCATED,
        ));
    }
    if bytes.len() > end {
        return Err(err(
            end,
            format!(
                "{} unexpected bytes follow the {:?} array",
                bytes.len() - end,
                header.shape
            ),
            "The header and the data disagree; write the array again with numpy.save",
        ));
    }
    Ok(NpyArray {
        shape: header.shape,
        descr: header.descr,
        fortran_order: header.fortran_order,
        kind,
        size,
        big_endian,
        bytes,
        data_start,
        file: file.to_path_buf(),
        member: member.map(String::from),
    })
}

/// `<f4`, `|u1`, `>i8`, `?`, `b1` ... -> (kind, bytes per element, big-endian).
fn parse_descr(descr: &str) -> Option<(Kind, usize, bool)> {
    let d = descr.as_bytes();
    if descr == "?" {
        return Some((Kind::Bool, 1, false));
    }
    let (big, rest) = match d.first()? {
        b'<' | b'|' | b'=' => (false, &d[1..]),
        b'>' => (true, &d[1..]),
        _ => (false, d),
    };
    let (&k, size) = rest.split_first()?;
    let size: usize = std::str::from_utf8(size).ok()?.parse().ok()?;
    let kind = match (k, size) {
        (b'b', 1) => Kind::Bool,
        (b'i', 1 | 2 | 4 | 8) => Kind::Int,
        (b'u', 1 | 2 | 4 | 8) => Kind::Uint,
        (b'f', 4 | 8) => Kind::Float,
        _ => return None,
    };
    Some((kind, size, big && size > 1))
}

macro_rules! decode {
    ($data:expr, $t:ty, $big:expr, $map:expr) => {{
        const N: usize = std::mem::size_of::<$t>();
        $data
            .chunks_exact(N)
            .map(|c| {
                let a: [u8; N] = c.try_into().expect("exact chunks");
                let v = if $big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                };
                $map(v)
            })
            .collect::<Vec<_>>()
    }};
}

/// A label value as stored: integers exactly, floats as they are.
#[derive(Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

impl NpyArray {
    fn data(&self) -> &[u8] {
        &self.bytes[self.data_start..]
    }

    pub(crate) fn at(&self, element: usize) -> Location {
        at(
            self.member.as_deref(),
            self.data_start + element * self.size,
        )
    }

    /// A name for messages: the file, or `file` plus member.
    pub(crate) fn what(&self) -> String {
        match &self.member {
            Some(m) => format!("`{m}` in {}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    /// The values in storage order, as f32.
    fn values_f32(&self) -> Vec<f32> {
        let d = self.data();
        let be = self.big_endian;
        match (self.kind, self.size) {
            (Kind::Bool, _) => d.iter().map(|&b| f32::from(u8::from(b != 0))).collect(),
            (Kind::Uint, 1) => d.iter().map(|&b| f32::from(b)).collect(),
            (Kind::Int, 1) => d.iter().map(|&b| f32::from(b as i8)).collect(),
            (Kind::Uint, 2) => decode!(d, u16, be, f32::from),
            (Kind::Int, 2) => decode!(d, i16, be, f32::from),
            (Kind::Uint, 4) => decode!(d, u32, be, |v| v as f32),
            (Kind::Int, 4) => decode!(d, i32, be, |v| v as f32),
            (Kind::Uint, 8) => decode!(d, u64, be, |v| v as f32),
            (Kind::Int, 8) => decode!(d, i64, be, |v| v as f32),
            (Kind::Float, 4) => decode!(d, f32, be, |v| v),
            (Kind::Float, 8) => decode!(d, f64, be, |v| v as f32),
            _ => unreachable!("parse_descr admits only these"),
        }
    }

    fn values_num(&self) -> Vec<Num> {
        let d = self.data();
        let be = self.big_endian;
        match (self.kind, self.size) {
            (Kind::Bool, _) => d.iter().map(|&b| Num::I(i128::from(b != 0))).collect(),
            (Kind::Uint, 1) => d.iter().map(|&b| Num::I(i128::from(b))).collect(),
            (Kind::Int, 1) => d.iter().map(|&b| Num::I(i128::from(b as i8))).collect(),
            (Kind::Uint, 2) => decode!(d, u16, be, |v| Num::I(i128::from(v))),
            (Kind::Int, 2) => decode!(d, i16, be, |v| Num::I(i128::from(v))),
            (Kind::Uint, 4) => decode!(d, u32, be, |v| Num::I(i128::from(v))),
            (Kind::Int, 4) => decode!(d, i32, be, |v| Num::I(i128::from(v))),
            (Kind::Uint, 8) => decode!(d, u64, be, |v| Num::I(i128::from(v))),
            (Kind::Int, 8) => decode!(d, i64, be, |v| Num::I(i128::from(v))),
            (Kind::Float, 4) => decode!(d, f32, be, |v| Num::F(f64::from(v))),
            (Kind::Float, 8) => decode!(d, f64, be, Num::F),
            _ => unreachable!("parse_descr admits only these"),
        }
    }

    /// The array as f32 in C order with its logical shape, checking that every value is finite.
    pub fn to_f32(&self) -> Result<ArrayD<f32>, DataError> {
        let values = self.values_f32();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(DataError::corrupt(
                &self.file,
                self.at(i),
                format!("element {i} (in storage order) is {}", values[i]),
                "Replace missing or infinite values before training",
            ));
        }
        let shape = IxDyn(&self.shape);
        let arr = if self.fortran_order {
            ArrayD::from_shape_vec(shape.f(), values)
        } else {
            ArrayD::from_shape_vec(shape, values)
        }
        .expect("length checked against the shape");
        Ok(if arr.is_standard_layout() {
            arr
        } else {
            arr.as_standard_layout().into_owned()
        })
    }

    /// The array as f32 in C order, checking that every value is a whole number from 0 to
    /// `max` (exact in float32 for `max < 2^24`); `noun` names a value in messages ("token
    /// id", "length") and `fix` says what a valid value is.
    pub(crate) fn to_whole_f32(
        &self,
        noun: &str,
        max: u32,
        fix: &str,
    ) -> Result<ArrayD<f32>, DataError> {
        for (i, n) in self.values_num().into_iter().enumerate() {
            let bad = match n {
                Num::I(v) if (0..=i128::from(max)).contains(&v) => continue,
                Num::F(f) if f.fract() == 0.0 && (0.0..=f64::from(max)).contains(&f) => continue,
                Num::I(v) => v.to_string(),
                Num::F(f) => f.to_string(),
            };
            return Err(DataError::corrupt(
                &self.file,
                self.at(i),
                format!(
                    "element {i} (in storage order) is {bad}, not a {noun} (a whole number from 0 to {max})"
                ),
                fix.to_string(),
            ));
        }
        self.to_f32()
    }

    /// Regression targets from an array of shape `[N]` or `[N, 1]` of finite numbers.
    pub fn to_targets(&self) -> Result<Vec<f32>, DataError> {
        if !matches!(self.shape.as_slice(), [_] | [_, 1]) {
            return Err(DataError::Mismatch {
                what: format!(
                    "regression targets {} have shape {:?}; expected [N] or [N, 1]",
                    self.what(),
                    self.shape
                ),
                fix: "Store one number per sample (one target; several are not supported)".into(),
            });
        }
        let values = self.values_f32();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(DataError::corrupt(
                &self.file,
                self.at(i),
                format!("regression target {i} is {}", values[i]),
                "Targets must be finite numbers; drop or fix the sample",
            ));
        }
        Ok(values)
    }

    /// Class indices from a label array of shape `[N]` or `[N, 1]`.
    ///
    /// Labels must be non-negative integers (floats with integral values are accepted); with
    /// `classes` given they must be below it, otherwise the count is one more than the largest.
    pub fn to_labels(&self, classes: Option<usize>) -> Result<(Vec<u32>, usize), DataError> {
        match self.shape.as_slice() {
            [_] | [_, 1] => {}
            [n, k] => {
                return Err(DataError::Mismatch {
                    what: format!(
                        "labels {} have shape [{n}, {k}]; one-hot or multi-column labels are not supported",
                        self.what()
                    ),
                    fix: "Store one class index per sample (e.g. y.argmax(axis=1))".into(),
                });
            }
            s => {
                return Err(DataError::Mismatch {
                    what: format!(
                        "labels {} have shape {s:?}; expected [N] or [N, 1]",
                        self.what()
                    ),
                    fix: "Store one class index per sample".into(),
                });
            }
        }
        let nums = self.values_num();
        let mut labels = Vec::with_capacity(nums.len());
        for (i, n) in nums.into_iter().enumerate() {
            let v: i128 = match n {
                Num::I(v) => v,
                Num::F(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e15 => f as i128,
                Num::F(f) => {
                    return Err(DataError::corrupt(
                        &self.file,
                        self.at(i),
                        format!("label {i} is {f}, not a whole number"),
                        "Labels must be class indices 0, 1, 2, ...",
                    ));
                }
            };
            if v < 0 || v > i128::from(u32::MAX) {
                return Err(DataError::corrupt(
                    &self.file,
                    self.at(i),
                    format!("label {i} is {v}, not a class index"),
                    "Labels must be class indices 0, 1, 2, ...",
                ));
            }
            labels.push(v as u32);
        }
        let classes_n = infer_classes(classes, &labels);
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes_n) {
            return Err(DataError::LabelOutOfRange {
                file: self.file.clone(),
                at: self.at(i),
                label: i64::from(labels[i]),
                classes: classes_n,
                fix: CLASSES_FIX.into(),
            });
        }
        Ok((labels, classes_n))
    }
}

/// What a label array holds: class indices (with the class count, or `None` to infer it as
/// the largest label + 1) or regression targets. `None` / `Some(k)` convert to `Classes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    Classes(Option<usize>),
    Regression,
}

impl From<Option<usize>> for LabelKind {
    fn from(classes: Option<usize>) -> Self {
        LabelKind::Classes(classes)
    }
}

/// Loads an image (or feature, or sequence) array and a label array from two `.npy` files.
pub fn load_npy(
    images: &Path,
    labels: &Path,
    layout: Layout,
    classes: impl Into<LabelKind>,
    name: &str,
) -> Result<Dataset, DataError> {
    load_npy_with_lengths(images, labels, None, layout, classes, name)
}

/// [`load_npy`] for sequences (layout `nt` or `ntf`) with an optional `.npy` of lengths `[N]`:
/// the steps of each sample past its length are set to padding (0).
pub fn load_npy_with_lengths(
    sequences: &Path,
    labels: &Path,
    lengths: Option<&Path>,
    layout: Layout,
    classes: impl Into<LabelKind>,
    name: &str,
) -> Result<Dataset, DataError> {
    let lengths = lengths.map(read_npy).transpose()?;
    to_dataset(
        &read_npy(sequences)?,
        &read_npy(labels)?,
        lengths.as_ref(),
        layout,
        classes.into(),
        name,
    )
}

/// Loads the training part and, when the archive has both test keys, the test part of an
/// `.npz` archive.
pub fn load_npz(
    path: &Path,
    keys: &NpzKeys,
    layout: Layout,
    classes: impl Into<LabelKind>,
    name: &str,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let classes = classes.into();
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| DataError::Archive {
        file: path.to_path_buf(),
        what: format!("cannot open it as a zip archive ({e})"),
        fix: "An .npz is written by numpy.savez or numpy.savez_compressed; check the path, or write or download the file again".into(),
    })?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| DataError::Archive {
            file: path.to_path_buf(),
            what: format!("cannot list its members ({e})"),
            fix: "The archive is damaged; write or download it again".into(),
        })?;
    let member_of = |key: &str| -> Option<String> {
        let with = format!("{key}.npy");
        [with.as_str(), key]
            .into_iter()
            .find(|n| names.iter().any(|m| m == n))
            .map(String::from)
    };
    let available = || {
        names
            .iter()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut read = |key: &str| -> Result<NpyArray, DataError> {
        let member = member_of(key).ok_or_else(|| DataError::Archive {
            file: path.to_path_buf(),
            what: format!("has no array `{key}`; it holds: {}", available()),
            fix: "Set the key names in [data.keys] (x_train, y_train, x_test, y_test)".into(),
        })?;
        let mut bytes = Vec::new();
        zip.by_name(&member)
            .map_err(|e| e.to_string())
            .and_then(|mut f| f.read_to_end(&mut bytes).map_err(|e| e.to_string()))
            .map_err(|e| DataError::Archive {
                file: path.to_path_buf(),
                what: format!(
                    "member `{member}` cannot be read after {} bytes ({e})",
                    bytes.len()
                ),
                fix: "The archive is truncated or damaged; write or download it again".into(),
            })?;
        parse_npy(bytes, path, Some(&member))
    };
    // Sequence lengths under their default names are read without being named.
    let lengths_key = |given: &Option<String>, default: &str| {
        given.clone().or_else(|| {
            (layout.is_sequence() && member_of(default).is_some()).then(|| default.to_string())
        })
    };
    let (lengths_train, lengths_test) = (
        lengths_key(&keys.lengths_train, "lengths_train"),
        lengths_key(&keys.lengths_test, "lengths_test"),
    );
    let train_lengths = lengths_train.as_deref().map(&mut read).transpose()?;
    let train = to_dataset(
        &read(&keys.x_train)?,
        &read(&keys.y_train)?,
        train_lengths.as_ref(),
        layout,
        classes,
        name,
    )?;
    let test = match (member_of(&keys.x_test), member_of(&keys.y_test)) {
        (Some(_), Some(_)) => {
            let test_lengths = lengths_test.as_deref().map(&mut read).transpose()?;
            Some(to_dataset(
                &read(&keys.x_test)?,
                &read(&keys.y_test)?,
                test_lengths.as_ref(),
                layout,
                classes,
                name,
            )?)
        }
        (None, None) if keys.lengths_test.is_some() => {
            return Err(DataError::Archive {
                file: path.to_path_buf(),
                what: format!(
                    "[data.keys] lengths_test is set, but the archive has no test arrays `{}` and `{}`; it holds: {}",
                    keys.x_test,
                    keys.y_test,
                    available()
                ),
                fix: "Remove lengths_test, or store the test arrays".into(),
            });
        }
        (None, None) => None,
        (x, _) => {
            let (has, lacks) = if x.is_some() {
                (&keys.x_test, &keys.y_test)
            } else {
                (&keys.y_test, &keys.x_test)
            };
            return Err(DataError::Archive {
                file: path.to_path_buf(),
                what: format!(
                    "has `{has}` but not `{lacks}`; it holds: {}",
                    available()
                ),
                fix: "Store both test arrays, or neither (then a test fraction is held out of the training data)".into(),
            });
        }
    };
    Ok((train, test))
}

/// Puts an image array and a label array together into a data set, applying `layout` and,
/// for sequences, the lengths.
fn to_dataset(
    x: &NpyArray,
    y: &NpyArray,
    lengths: Option<&NpyArray>,
    layout: Layout,
    kind: LabelKind,
    name: &str,
) -> Result<Dataset, DataError> {
    if let Some(l) = lengths
        && !layout.is_sequence()
    {
        return Err(DataError::Mismatch {
            what: format!(
                "lengths {} are given, but layout {layout:?} is not a sequence layout",
                l.what()
            ),
            fix: "Set layout = \"nt\" (token ids) or \"ntf\" (float sequences) in [data], or remove the lengths".into(),
        });
    }
    let shape = x.shape.as_slice();
    let resolved = match (layout, shape.len()) {
        (Layout::Auto, 2) => Layout::Nf,
        (Layout::Auto, 3) => Layout::Nhw,
        (Layout::Auto, 4) => {
            let (a, b) = (shape[1], shape[3]);
            match (a.min(b) <= 4, a.cmp(&b)) {
                (true, std::cmp::Ordering::Greater) => Layout::Nhwc,
                (true, std::cmp::Ordering::Less) => Layout::Nchw,
                _ => {
                    return Err(DataError::Mismatch {
                        what: format!(
                            "images {} have shape {shape:?}: cannot tell channels-first from channels-last",
                            x.what()
                        ),
                        fix: "Set layout = \"nchw\" or layout = \"nhwc\" in [data]".into(),
                    });
                }
            }
        }
        (l, _) => l,
    };
    let rank = match resolved {
        Layout::Nf | Layout::Nt => 2,
        Layout::Nhw | Layout::Ntf => 3,
        _ => 4,
    };
    if shape.len() != rank {
        return Err(DataError::Mismatch {
            what: format!(
                "images {} have shape {shape:?} (rank {}) but layout {resolved:?} needs rank {rank}",
                x.what(),
                shape.len()
            ),
            fix: "Set `layout` in [data] to match the array (nchw, nhwc, nhw, nf, or nt / ntf for sequences), or leave it auto for rank 2 and 3".into(),
        });
    }
    let n = shape[0];
    if y.shape.first() != Some(&n) {
        return Err(DataError::Mismatch {
            what: format!(
                "images {} hold {n} samples but labels {} have shape {:?}",
                x.what(),
                y.what(),
                y.shape
            ),
            fix: "Pair each image array with its own label array".into(),
        });
    }
    let (labels, classes, targets) = match kind {
        LabelKind::Classes(classes) => {
            let (labels, classes) = y.to_labels(classes)?;
            (labels, classes, None)
        }
        LabelKind::Regression => (vec![0; n], 1, Some(y.to_targets()?)),
    };
    let mut data = to_samples(x, lengths, resolved, labels, classes, name)?;
    if let Some(t) = targets {
        data.set_targets(t)?;
    }
    Ok(data)
}

/// The samples of `x` in `resolved` layout with their `labels`.
fn to_samples(
    x: &NpyArray,
    lengths: Option<&NpyArray>,
    resolved: Layout,
    labels: Vec<u32>,
    classes: usize,
    name: &str,
) -> Result<Dataset, DataError> {
    let shape = x.shape.as_slice();
    let n = shape[0];
    if resolved.is_sequence() {
        return sequence_dataset(x, lengths, resolved == Layout::Nt, labels, classes, name);
    }
    let arr = x.to_f32()?;
    let (images, kind) = match resolved {
        Layout::Nf => (
            arr.into_shape_with_order(IxDyn(&[n, shape[1], 1, 1])),
            DataKind::Tabular,
        ),
        Layout::Nhw => (
            arr.into_shape_with_order(IxDyn(&[n, 1, shape[1], shape[2]])),
            DataKind::Image,
        ),
        Layout::Nhwc => (
            Ok(arr
                .permuted_axes(IxDyn(&[0, 3, 1, 2]))
                .as_standard_layout()
                .into_owned()),
            DataKind::Image,
        ),
        Layout::Nchw | Layout::Auto => (Ok(arr), DataKind::Image),
        Layout::Nt | Layout::Ntf => unreachable!("sequences returned above"),
    };
    let images: Array4<f32> = images
        .expect("standard layout reshapes")
        .into_dimensionality()
        .expect("rank 4 by construction");
    Dataset::with_kind(name, kind, images, labels, classes)
}

/// The parsed `.npy` header dict.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the Python dict literal; errors carry the position inside the header.
    fn parse(text: &[u8]) -> Result<Header, (usize, String)> {
        let mut p = Parser { s: text, i: 0 };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.expect(b':')?;
            p.ws();
            match key.as_str() {
                "descr" => {
                    if p.peek() == Some(b'[') {
                        return Err((p.i, "structured (record) arrays are not supported".into()));
                    }
                    descr = Some(p.string()?);
                }
                "fortran_order" => fortran = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err((p.i, format!("unexpected key `{other}`"))),
            }
            p.ws();
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        let missing = |k: &str| (0, format!("key `{k}` is missing"));
        Ok(Header {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), (usize, String)> {
        if self.eat(c) {
            Ok(())
        } else {
            Err((self.i, format!("expected `{}`", c as char)))
        }
    }

    fn string(&mut self) -> Result<String, (usize, String)> {
        self.ws();
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err((self.i, "expected a quoted string".into())),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or((self.i, "unterminated string".to_string()))?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, (usize, String)> {
        self.ws();
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err((self.i, "expected True or False".into()))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, (usize, String)> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            self.ws();
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            // Python 2 era files may write sizes as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).expect("ascii digits");
            let d = digits
                .parse()
                .map_err(|_| (start, "expected a dimension size".to_string()))?;
            self.eat(b'L');
            dims.push(d);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_variants() {
        let h = Header::parse(
            b"{\"descr\": \"<u2\", \"shape\": (3L, 4L), \"fortran_order\": False}  \n",
        )
        .unwrap();
        assert_eq!(
            (h.descr.as_str(), h.shape, h.fortran_order),
            ("<u2", vec![3, 4], false)
        );
        let h = Header::parse(b"{'descr': '|b1', 'fortran_order': True, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty() && h.fortran_order);
        let e =
            Header::parse(b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }");
        assert!(e.unwrap_err().1.contains("structured"));
        let e = Header::parse(b"{'descr': '<f4', 'shape': (2,), }");
        assert!(e.unwrap_err().1.contains("fortran_order"));
    }

    #[test]
    fn version_2_header_and_dtypes() {
        let header = b"{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }\n";
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(header);
        b.extend_from_slice(&[5, 0, 1, 0]);
        let a = parse_npy(b, Path::new("v2.npy"), None).unwrap();
        assert_eq!(a.to_labels(None).unwrap(), (vec![5, 1], 6));
        assert_eq!(parse_descr("?"), Some((Kind::Bool, 1, false)));
        assert_eq!(parse_descr(">f8"), Some((Kind::Float, 8, true)));
        assert_eq!(parse_descr("|u1"), Some((Kind::Uint, 1, false)));
        assert_eq!(parse_descr("<f2"), None);
        assert_eq!(parse_descr("<U10"), None);
    }
}
