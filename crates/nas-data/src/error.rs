//! The one error type of this crate.
//!
//! Every variant says what broke, where (file plus byte offset, record or line) and what to do.

use std::fmt;
use std::path::PathBuf;

/// Where inside a file the data broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Byte offset from the start of the file.
    Byte(u64),
    /// Byte offset in the decompressed stream of a gzipped file.
    DecompressedByte(u64),
    /// A fixed-size record (0-based) and the byte offset where it starts (counted in the
    /// decompressed stream when `decompressed`).
    Record {
        index: u64,
        byte: u64,
        decompressed: bool,
    },
    /// A 1-based text line, with the 1-based column when one field is at fault.
    Line { line: u64, column: Option<usize> },
    /// A byte offset inside one member of an archive (an `.npy` inside an `.npz`).
    Member { name: String, byte: u64 },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Byte(b) => write!(f, "byte offset {b}"),
            Location::DecompressedByte(b) => write!(f, "byte offset {b} of the decompressed data"),
            Location::Record {
                index,
                byte,
                decompressed: false,
            } => write!(f, "record {index} (byte offset {byte})"),
            Location::Record {
                index,
                byte,
                decompressed: true,
            } => write!(
                f,
                "record {index} (byte offset {byte} of the decompressed data)"
            ),
            Location::Line { line, column: None } => write!(f, "line {line}"),
            Location::Line {
                line,
                column: Some(c),
            } => write!(f, "line {line}, column {c}"),
            Location::Member { name, byte } => write!(f, "member `{name}`, byte offset {byte}"),
        }
    }
}

/// What went wrong while loading, splitting or batching a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}. Check that the path exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes of a file do not follow its format.
    #[error("{}, {at}: {what}. {fix}", file.display())]
    Corrupt {
        file: PathBuf,
        at: Location,
        what: String,
        fix: String,
    },
    /// A label is not below the number of classes.
    #[error(
        "{}, {at}: label {label} is out of range for {classes} classes (valid: 0..={}). {fix}",
        file.display(),
        classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        file: PathBuf,
        at: Location,
        label: i64,
        classes: usize,
        fix: String,
    },
    /// A file the source needs is not there.
    #[error("{} is missing: {what}. {fix}", path.display())]
    Missing {
        path: PathBuf,
        what: String,
        fix: String,
    },
    /// A zip container (`.npz`) cannot be opened or one of its members cannot be read.
    #[error("{}: {what}. {fix}", file.display())]
    Archive {
        file: PathBuf,
        what: String,
        fix: String,
    },
    /// Two files (or parts) that belong together disagree, e.g. image and label counts.
    #[error("{what}. {fix}")]
    Mismatch { what: String, fix: String },
    /// A `[data]` setting is missing, contradictory or out of range.
    #[error("[data] `{field}`: {what}")]
    Config { field: String, what: String },
    /// A split, normalization or batching request cannot be met by the data.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        at: Location,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        DataError::Corrupt {
            file: file.into(),
            at,
            what: what.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn config(field: &str, what: impl Into<String>) -> Self {
        DataError::Config {
            field: field.to_string(),
            what: what.into(),
        }
    }
}

/// The fix offered with an out-of-range label when the class count was given in the config.
pub(crate) const CLASSES_FIX: &str = "Check the file for corruption, or raise `classes` in [data] if the data set really has more classes";
