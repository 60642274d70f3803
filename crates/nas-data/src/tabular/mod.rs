//! CSV tables: feature columns (numbers or categories) plus one label column, optionally
//! gzipped.
//!
//! Rows become samples `[F, 1, 1]` (see [`DataKind::Tabular`]). Labels are class indices when
//! every label is a number (each must then be a whole number >= 0); otherwise every distinct
//! label text is a class, numbered in sorted order over the training and test files together,
//! and the names are kept in [`Dataset::class_names`]. For regression
//! ([`CsvOptions::task`]) the label column holds the numbers to predict.
//!
//! Feature columns are numeric unless declared categorical ([`CsvOptions::categorical`]) or
//! holding no number at all; how categories and missing values become features is in
//! `columns`.

mod columns;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndarray::Array4;
use serde::{Deserialize, Serialize};

use crate::dataset::{DataKind, Dataset, infer_classes};
use crate::error::{CLASSES_FIX, DataError, Location};
use crate::read::read_maybe_gz;
use crate::targets::Task;

pub use columns::{CategoricalEncoding, MISSING_VALUES, Missing, MissingLabel};
use columns::{Plan, is_missing};

/// A column, by 0-based index (negative counts from the end: -1 is the last column) or by
/// header name: the label column, or one of [`CsvOptions::categorical`].
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
    /// `Some(true)`: the first row names the columns; `Some(false)`: it is data; `None`: a
    /// header whenever a column is named, else guessed: a header when one of its feature
    /// fields is text in a column of numbers, or, where every such column holds categories,
    /// when none of those texts recurs below it.
    pub header: Option<bool>,
    /// Feature columns read as categories even where they hold numbers (codes such as
    /// `1, 2, 3`). A column holding no number at all is categorical anyway.
    pub categorical: Vec<LabelColumn>,
    pub encoding: CategoricalEncoding,
    pub missing: Missing,
    /// With `missing = Mean`: a 0/1 feature after each numeric column that has gaps in the
    /// training file, 1 where the value was missing.
    pub missing_indicator: bool,
    /// `Regression`: the label column holds numbers to predict ([`Dataset::targets`]).
    pub task: Task,
    /// Rows whose label is missing: an error, or left out.
    pub missing_label: MissingLabel,
}

/// One CSV file as text fields.
pub(crate) struct RawTable {
    file: PathBuf,
    /// The header's fields, all columns, when the file has one.
    header: Option<Vec<String>>,
    /// Fields of the feature columns, row by row.
    fields: Vec<String>,
    /// The file column (0-based) of each feature column.
    columns: Vec<usize>,
    labels: Vec<String>,
    lines: Vec<u64>,
    label_col: usize,
}

impl RawTable {
    fn width(&self) -> usize {
        self.columns.len()
    }

    fn rows(&self) -> usize {
        self.labels.len()
    }

    fn field(&self, row: usize, feature: usize) -> &str {
        &self.fields[row * self.width() + feature]
    }

    fn at(&self, row: usize, feature: usize) -> Location {
        Location::Line {
            line: self.lines[row],
            column: Some(self.columns[feature] + 1),
        }
    }

    /// The feature column's header name, or `column N` (1-based) without a header.
    fn name(&self, feature: usize) -> String {
        let c = self.columns[feature];
        match &self.header {
            Some(h) => h[c].clone(),
            None => format!("column {}", c + 1),
        }
    }

    /// `field 3 (`b`)`, for messages.
    fn describe(&self, feature: usize) -> String {
        let c = self.columns[feature];
        match &self.header {
            Some(h) => format!("field {} (`{}`)", c + 1, h[c]),
            None => format!("field {}", c + 1),
        }
    }

    fn feature_names(&self) -> Option<Vec<String>> {
        self.header
            .as_ref()
            .map(|_| (0..self.width()).map(|f| self.name(f)).collect())
    }

    /// The feature index of a column given by index or name (`key` names the setting).
    fn feature_of(&self, column: &LabelColumn, key: &str) -> Result<usize, DataError> {
        let ncols = self.width() + 1;
        let c = match column {
            LabelColumn::Index(i) => {
                let idx = if *i < 0 { ncols as i64 + i } else { *i };
                if idx < 0 || idx >= ncols as i64 {
                    return Err(DataError::config(
                        key,
                        format!(
                            "lists column {i}, but {} has {ncols} columns (0-based indices 0..{}, or -1 for the last)",
                            self.file.display(),
                            ncols - 1
                        ),
                    ));
                }
                idx as usize
            }
            LabelColumn::Name(n) => {
                let Some(header) = &self.header else {
                    return Err(DataError::config(
                        key,
                        format!(
                            "names column `{n}`, but {} has no header; give the column's index instead",
                            self.file.display()
                        ),
                    ));
                };
                header.iter().position(|f| f == n).ok_or_else(|| {
                    DataError::config(
                        key,
                        format!(
                            "names column `{n}`, but the header of {} has {}",
                            self.file.display(),
                            header.join(", ")
                        ),
                    )
                })?
            }
        };
        if c == self.label_col {
            return Err(DataError::config(
                key,
                format!(
                    "lists the label column ({}); list feature columns only",
                    match column {
                        LabelColumn::Index(i) => i.to_string(),
                        LabelColumn::Name(n) => format!("`{n}`"),
                    }
                ),
            ));
        }
        Ok(self
            .columns
            .iter()
            .position(|&x| x == c)
            .expect("every column but the label is a feature"))
    }
}

/// Loads a training CSV and, if given, a test CSV with the same columns.
///
/// Categories, fill values and the feature layout come from the training file alone; the
/// test file is encoded with them (see [`crate::DataConfig`] for the rules).
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
        if a.width() != b.width() {
            return Err(DataError::Mismatch {
                what: format!(
                    "{} has {} feature columns but {} has {}",
                    a.file.display(),
                    a.width(),
                    b.file.display(),
                    b.width()
                ),
                fix: "Use training and test files with the same columns".into(),
            });
        }
        if let (Some(x), Some(y)) = (a.feature_names(), b.feature_names())
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
    let plan = Plan::fit(&a, opts)?;
    let tables: Vec<&RawTable> = std::iter::once(&a).chain(b.as_ref()).collect();
    let (per_table, classes, class_names) = match opts.task {
        Task::Classification => labels(&tables, classes)?,
        Task::Regression => (tables.iter().map(|t| vec![0; t.rows()]).collect(), 1, None),
    };
    let mut out = Vec::new();
    for (t, labels) in tables.iter().zip(per_table) {
        let n = labels.len();
        let images = Array4::from_shape_vec((n, plan.width(), 1, 1), plan.encode(t)?)
            .expect("one value per row and feature");
        let mut d = Dataset::with_kind(name, DataKind::Tabular, images, labels, classes)?;
        if opts.task == Task::Regression {
            d.set_targets(regression_targets(t)?)?;
        }
        d.class_names.clone_from(&class_names);
        d.feature_names = Some(plan.feature_names());
        d.set_categorical(plan.categorical())?;
        out.push(d);
    }
    let mut out = out.into_iter();
    let train = out.next().expect("training table");
    Ok((train, out.next()))
}

/// Class indices of every table's labels, the class count and the class names (text labels).
#[allow(clippy::type_complexity)]
fn labels(
    tables: &[&RawTable],
    classes: Option<usize>,
) -> Result<(Vec<Vec<u32>>, usize, Option<Vec<String>>), DataError> {
    let numeric = tables
        .iter()
        .all(|t| t.labels.iter().all(|l| l.parse::<f64>().is_ok()));
    if numeric {
        let mut per_table = Vec::new();
        for t in tables {
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
        return Ok((per_table, n, None));
    }
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
    Ok((per_table, classes.unwrap_or(names.len()), Some(names)))
}

fn label_at(t: &RawTable, row: usize) -> Location {
    Location::Line {
        line: t.lines[row],
        column: Some(t.label_col + 1),
    }
}

/// The label column as numbers to predict.
fn regression_targets(t: &RawTable) -> Result<Vec<f32>, DataError> {
    t.labels
        .iter()
        .enumerate()
        .map(|(i, s)| match s.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(DataError::corrupt(
                &t.file,
                label_at(t, i),
                format!("regression target `{s}` is not a finite number"),
                "With task = \"regression\" the label column must hold numbers; drop or fix the row",
            )),
        })
        .collect()
}

fn numeric_labels(t: &RawTable) -> Result<Vec<u32>, DataError> {
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

/// Whether the first row is a header, when not told: when one of its feature fields is text
/// (neither a number nor a missing value) in a column that holds numbers below it, or, if
/// every such column holds text (categories), when none of those first-row texts occurs again
/// in its column (a category recurs, a column name does not). Set `header` where this guess
/// could fail, e.g. a headerless file of categories whose first row is its only rare one.
fn header_guess(rows: &[csv::StringRecord], label_col: usize) -> bool {
    let Some((first, rest)) = rows.split_first() else {
        return false;
    };
    let text: Vec<usize> = (0..first.len())
        .filter(|&c| c != label_col && !is_missing(&first[c]) && first[c].parse::<f32>().is_err())
        .collect();
    if text.is_empty() {
        return false;
    }
    let below = |c: usize| rest.iter().filter_map(move |r| r.get(c));
    let numeric_below = text.iter().any(|&c| {
        below(c).any(|f| !is_missing(f))
            && below(c).all(|f| is_missing(f) || f.parse::<f32>().is_ok())
    });
    numeric_below || text.iter().all(|&c| below(c).all(|f| f != &first[c]))
}

/// Parses CSV bytes (already decompressed) into text fields: every row has as many fields as
/// the first, and no label is missing.
pub(crate) fn parse_table(
    bytes: &[u8],
    file: &Path,
    opts: &CsvOptions,
) -> Result<RawTable, DataError> {
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
    let rows = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(csv_err)?;
    let Some(first) = rows.first() else {
        return Err(DataError::corrupt(
            file,
            Location::Byte(0),
            "the file has no rows",
            "Give a CSV file with feature columns and a label column",
        ));
    };
    let ncols = first.len();
    let line_of = |r: &csv::StringRecord| r.position().map_or(0, |p| p.line());
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
    if let Some(r) = rows.iter().find(|r| r.len() != ncols) {
        return Err(DataError::corrupt(
            file,
            Location::Line {
                line: line_of(r),
                column: None,
            },
            format!(
                "the row has {} fields but line {first_line} has {ncols}",
                r.len()
            ),
            "Give every row the same number of fields (is a value missing, or does one hold an unquoted comma?)",
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
    let names_a_column = matches!(opts.label_column, LabelColumn::Name(_))
        || opts
            .categorical
            .iter()
            .any(|c| matches!(c, LabelColumn::Name(_)));
    let header = match (opts.header, &opts.label_column) {
        (Some(false), LabelColumn::Name(n)) => {
            return Err(DataError::config(
                "label_column",
                format!("names column `{n}`, but header = false; give the column's index instead"),
            ));
        }
        (Some(h), _) => h,
        (None, _) if names_a_column => true,
        (None, _) => header_guess(&rows, label_col.expect("an index when nothing is named")),
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
    let body = &rows[usize::from(header)..];
    if body.is_empty() {
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
    let mut t = RawTable {
        file: file.to_path_buf(),
        header: header.then(|| first.iter().map(String::from).collect()),
        fields: Vec::with_capacity(body.len() * (ncols - 1)),
        columns: (0..ncols).filter(|&c| c != label_col).collect(),
        labels: Vec::with_capacity(body.len()),
        lines: Vec::with_capacity(body.len()),
        label_col,
    };
    for rec in body {
        let line = line_of(rec);
        let label = &rec[label_col];
        if is_missing(label) {
            if opts.missing_label == MissingLabel::Drop {
                continue;
            }
            return Err(DataError::corrupt(
                file,
                Location::Line {
                    line,
                    column: Some(label_col + 1),
                },
                format!("the label is `{label}`, a missing value"),
                "Drop rows without a label, or set missing_label = \"drop\" to leave them out",
            ));
        }
        t.fields.extend(
            rec.iter()
                .enumerate()
                .filter(|&(c, _)| c != label_col)
                .map(|(_, f)| f.to_string()),
        );
        t.labels.push(label.to_string());
        t.lines.push(line);
    }
    Ok(t)
}

/// Parses the bundled digits table from already decompressed bytes.
pub(crate) fn parse_digits(bytes: &[u8], file: &Path) -> Result<Dataset, DataError> {
    let opts = CsvOptions::default();
    let t = parse_table(bytes, file, &opts)?;
    let plan = Plan::fit(&t, &opts)?;
    let labels = numeric_labels(&t)?;
    let n = labels.len();
    let images = Array4::from_shape_vec((n, plan.width(), 1, 1), plan.encode(&t)?)
        .expect("one value per row and feature");
    let classes = infer_classes(None, &labels);
    Dataset::with_kind("digits", DataKind::Tabular, images, labels, classes)
}
