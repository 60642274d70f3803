//! CSV tables: numeric feature columns plus one label column, optionally gzipped.
//!
//! Rows become samples `[F, 1, 1]` (see [`DataKind::Tabular`]). Labels are class indices when
//! every label is a number (each must then be a whole number >= 0); otherwise every distinct
//! label text is a class, numbered in sorted order over the training and test files together,
//! and the names are kept in [`Dataset::class_names`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndarray::Array4;
use serde::{Deserialize, Serialize};

use crate::dataset::{DataKind, Dataset, infer_classes};
use crate::error::{CLASSES_FIX, DataError, Location};
use crate::read::read_maybe_gz;

/// The label column, by 0-based index (negative counts from the end: -1 is the last column)
/// or by header name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelColumn {
    Index(i64),
    Name(String),
}

impl Default for LabelColumn {
    fn default() -> Self {
        LabelColumn::Index(-1)
    }
}

/// How to read a CSV table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvOptions {
    pub label_column: LabelColumn,
    /// `Some(true)`: the first row names the columns; `Some(false)`: it is data; `None`:
    /// it is a header when one of its feature fields is neither empty nor a number (or when
    /// the label column is given by name).
    pub header: Option<bool>,
}

/// One parsed CSV file.
struct Table {
    file: PathBuf,
    /// Feature column names when the file has a header.
    names: Option<Vec<String>>,
    features: Vec<f32>,
    width: usize,
    labels: Vec<String>,
    lines: Vec<u64>,
    label_col: usize,
}

/// Loads a training CSV and, if given, a test CSV with the same columns.
pub fn load_csv(
    train: &Path,
    test: Option<&Path>,
    opts: &CsvOptions,
    classes: Option<usize>,
    name: &str,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let a = parse_table(&read_maybe_gz(train)?.bytes, train, opts)?;
    let b = match test {
        Some(p) => Some(parse_table(&read_maybe_gz(p)?.bytes, p, opts)?),
        None => None,
    };
    if let Some(b) = &b {
        if a.width != b.width {
            return Err(DataError::Mismatch {
                what: format!(
                    "{} has {} feature columns but {} has {}",
                    a.file.display(),
                    a.width,
                    b.file.display(),
                    b.width
                ),
                fix: "Use training and test files with the same columns".into(),
            });
        }
        if let (Some(x), Some(y)) = (&a.names, &b.names)
            && x != y
        {
            return Err(DataError::Mismatch {
                what: format!(
                    "{} names its feature columns {x:?} but {} names them {y:?}",
                    a.file.display(),
                    b.file.display()
                ),
                fix: "Use training and test files with the same columns in the same order".into(),
            });
        }
    }
    let tables: Vec<&Table> = std::iter::once(&a).chain(b.as_ref()).collect();
    let numeric = tables
        .iter()
        .all(|t| t.labels.iter().all(|l| l.parse::<f64>().is_ok()));
    let (per_table, classes, class_names) = if numeric {
        let mut per_table = Vec::new();
        for t in &tables {
            per_table.push(numeric_labels(t)?);
        }
        let all: Vec<u32> = per_table.iter().flatten().copied().collect();
        let n = infer_classes(classes, &all);
        for (t, labels) in tables.iter().zip(&per_table) {
            if let Some(i) = labels.iter().position(|&l| l as usize >= n) {
                return Err(DataError::LabelOutOfRange {
                    file: t.file.clone(),
                    at: label_at(t, i),
                    label: i64::from(labels[i]),
                    classes: n,
                    fix: CLASSES_FIX.into(),
                });
            }
        }
        (per_table, n, None)
    } else {
        let names: BTreeSet<&str> = tables
            .iter()
            .flat_map(|t| t.labels.iter().map(String::as_str))
            .collect();
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        if let Some(c) = classes
            && c < names.len()
        {
            return Err(DataError::config(
                "classes",
                format!(
                    "is {c}, but the label column holds {} distinct labels ({})",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let per_table = tables
            .iter()
            .map(|t| {
                t.labels
                    .iter()
                    .map(|l| names.binary_search(l).expect("collected above") as u32)
                    .collect()
            })
            .collect();
        (per_table, classes.unwrap_or(names.len()), Some(names))
    };
    let mut out = tables
        .iter()
        .zip(per_table)
        .map(|(t, labels)| {
            let n = labels.len();
            let images = Array4::from_shape_vec((n, t.width, 1, 1), t.features.clone())
                .expect("rows checked to the same width");
            let mut d = Dataset::with_kind(name, DataKind::Tabular, images, labels, classes)?;
            d.class_names.clone_from(&class_names);
            Ok(d)
        })
        .collect::<Result<Vec<_>, DataError>>()?
        .into_iter();
    let train = out.next().expect("training table");
    Ok((train, out.next()))
}

fn label_at(t: &Table, row: usize) -> Location {
    Location::Line {
        line: t.lines[row],
        column: Some(t.label_col + 1),
    }
}

fn numeric_labels(t: &Table) -> Result<Vec<u32>, DataError> {
    t.labels
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v: f64 = s.parse().expect("checked numeric");
            if v.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&v) {
                return Err(DataError::corrupt(
                    &t.file,
                    label_at(t, i),
                    format!("label `{s}` is not a class index"),
                    "Numeric labels must be whole numbers 0, 1, 2, ... (or give every class a text name)",
                ));
            }
            Ok(v as u32)
        })
        .collect()
}

/// Parses CSV bytes (already decompressed) into features and raw label texts.
fn parse_table(bytes: &[u8], file: &Path, opts: &CsvOptions) -> Result<Table, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let csv_err = |e: csv::Error| {
        let at = match e.position() {
            Some(p) => Location::Line {
                line: p.line(),
                column: None,
            },
            None => Location::Byte(0),
        };
        DataError::corrupt(
            file,
            at,
            format!("cannot read the CSV ({e})"),
            "Save the table as UTF-8 CSV with commas between fields",
        )
    };
    let mut records = reader.records();
    let first = match records.next() {
        Some(r) => r.map_err(csv_err)?,
        None => {
            return Err(DataError::corrupt(
                file,
                Location::Byte(0),
                "the file has no rows",
                "Give a CSV file with feature columns and a label column",
            ));
        }
    };
    let ncols = first.len();
    let first_line = first.position().map_or(1, |p| p.line());
    if ncols < 2 {
        return Err(DataError::corrupt(
            file,
            Location::Line {
                line: first_line,
                column: None,
            },
            format!(
                "the first row has {ncols} field(s); a table needs at least one feature column and a label column"
            ),
            "Separate fields with commas",
        ));
    }
    let label_col = match &opts.label_column {
        LabelColumn::Index(i) => {
            let idx = if *i < 0 { ncols as i64 + i } else { *i };
            if idx < 0 || idx >= ncols as i64 {
                return Err(DataError::config(
                    "label_column",
                    format!(
                        "is {i}, but {} has {ncols} columns (0-based indices 0..{}, or -1 for the last)",
                        file.display(),
                        ncols - 1
                    ),
                ));
            }
            Some(idx as usize)
        }
        LabelColumn::Name(_) => None,
    };
    let header = match (opts.header, &opts.label_column) {
        (Some(false), LabelColumn::Name(n)) => {
            return Err(DataError::config(
                "label_column",
                format!("names column `{n}`, but header = false; give the column's index instead"),
            ));
        }
        (Some(h), _) => h,
        (None, LabelColumn::Name(_)) => true,
        (None, LabelColumn::Index(_)) => first
            .iter()
            .enumerate()
            .any(|(c, f)| Some(c) != label_col && !f.is_empty() && f.parse::<f32>().is_err()),
    };
    let label_col = match (&opts.label_column, label_col) {
        (_, Some(c)) => c,
        (LabelColumn::Name(n), None) => first.iter().position(|f| f == n).ok_or_else(|| {
            DataError::config(
                "label_column",
                format!(
                    "names column `{n}`, but the header of {} has {}",
                    file.display(),
                    first.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })?,
        (LabelColumn::Index(_), None) => unreachable!("indices resolve above"),
    };
    let names = header.then(|| {
        first
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != label_col)
            .map(|(_, f)| f.to_string())
            .collect::<Vec<_>>()
    });
    let mut t = Table {
        file: file.to_path_buf(),
        names,
        features: Vec::new(),
        width: ncols - 1,
        labels: Vec::new(),
        lines: Vec::new(),
        label_col,
    };
    let missing = |at, what: String| {
        DataError::corrupt(
            file,
            at,
            format!("{what}, a missing value"),
            "Fill in or drop rows with missing values",
        )
    };
    let rows = std::iter::once(Ok(first))
        .filter(|_| !header)
        .chain(records);
    for rec in rows {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != ncols {
            return Err(DataError::corrupt(
                file,
                Location::Line { line, column: None },
                format!(
                    "the row has {} fields but line {first_line} has {ncols}",
                    rec.len()
                ),
                "Give every row the same number of fields (is a value missing, or does one hold an unquoted comma?)",
            ));
        }
        for (c, field) in rec.iter().enumerate() {
            if c == label_col {
                continue;
            }
            let col = |what: &str| {
                let name = t
                    .names
                    .as_ref()
                    .map(|n| format!(" (`{}`)", n[if c > label_col { c - 1 } else { c }]))
                    .unwrap_or_default();
                format!("field {}{name} {what}", c + 1)
            };
            let at = Location::Line {
                line,
                column: Some(c + 1),
            };
            match field.parse::<f32>() {
                Ok(v) if v.is_finite() => t.features.push(v),
                Ok(_) => return Err(missing(at, col(&format!("is `{field}`")))),
                Err(_) if field.is_empty() => {
                    return Err(missing(at, col("is empty")));
                }
                Err(_) => {
                    return Err(DataError::corrupt(
                        file,
                        at,
                        col(&format!("holds `{field}`, not a number")),
                        "Fix or remove the row; if the first row names the columns, set header = true",
                    ));
                }
            }
        }
        t.labels.push(rec[label_col].to_string());
        t.lines.push(line);
    }
    if t.labels.is_empty() {
        return Err(DataError::corrupt(
            file,
            Location::Line {
                line: first_line,
                column: None,
            },
            "the file has a header but no data rows",
            "Add data rows",
        ));
    }
    Ok(t)
}

/// Parses the bundled digits table from already decompressed bytes.
pub(crate) fn parse_digits(bytes: &[u8], file: &Path) -> Result<Dataset, DataError> {
    let t = parse_table(bytes, file, &CsvOptions::default())?;
    let labels = numeric_labels(&t)?;
    let n = labels.len();
    let images = Array4::from_shape_vec((n, t.width, 1, 1), t.features)
        .expect("rows checked to the same width");
    let classes = infer_classes(None, &labels);
    Dataset::with_kind("digits", DataKind::Tabular, images, labels, classes)
}
