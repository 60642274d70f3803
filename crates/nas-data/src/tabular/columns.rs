//! How the text fields of a CSV table become features: the [`Plan`] is fitted on the training
//! file alone and then encodes the training and the test file alike.
//!
//! - Missing values are the fields of [`MISSING_VALUES`] (empty, `NA`, `?`, ...).
//! - A numeric column is read as float32. A missing value in it is an error unless
//!   `missing = "mean"`, which fills it with the column's mean over the training file (and, with
//!   `missing_indicator`, adds a 0/1 feature `name=<missing>` after each column that has gaps in
//!   the training file).
//! - A categorical column's categories are the distinct non-missing values of the training
//!   file, sorted (as numbers when every one is a number, else as text).
//!   - `onehot`: one 0/1 feature per category, `name=category`, preceded by `name=<missing>` when
//!     the training file has missing values in the column. A category seen only in the test
//!     file, or a missing value where training had none, sets none of them (all zeros).
//!   - `embed`: one feature holding the category's code: 1, 2, ... in sorted order, and 0 for
//!     "unknown or missing" (missing values, and categories the training file does not have);
//!     `categories` is the number of categories plus one. A network embeds the codes
//!     ([`crate::Dataset::categorical`]); they are never normalized.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::{CsvOptions, RawTable};
use crate::dataset::{CategoricalFeature, MAX_VOCAB_SIZE};
use crate::error::DataError;

/// Fields that stand for a missing value (compared after trimming, case-sensitively).
pub const MISSING_VALUES: &[&str] = &["", "NA", "N/A", "NaN", "nan", "null", "?"];

/// Most categories a column may have under one-hot encoding (one feature each).
const MAX_ONE_HOT: usize = 1000;

/// Whether a (trimmed) field is a missing value.
pub(crate) fn is_missing(field: &str) -> bool {
    MISSING_VALUES.contains(&field)
}

/// `categorical_encoding`: how categorical columns become features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CategoricalEncoding {
    /// One 0/1 feature per category.
    #[default]
    Onehot,
    /// One feature holding the category's code, for a network to embed.
    Embed,
}

/// `missing`: what a missing value in a numeric column does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Refuse the file, naming the field.
    #[default]
    Error,
    /// Fill it with the column's mean over the training file.
    Mean,
}

/// `missing_label`: what a row whose label is a missing value does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingLabel {
    /// Refuse the file, naming the row.
    #[default]
    Error,
    /// Leave the row out (it has nothing to learn from or to test against).
    Drop,
}

/// What one source column becomes.
#[derive(Clone, Debug, PartialEq)]
enum Column {
    Numeric {
        /// The training mean gaps are filled with (`missing = "mean"`).
        fill: Option<f32>,
        /// Whether a 0/1 "was missing" feature follows.
        indicator: bool,
    },
    Categorical {
        /// Sorted; a category's code is its index plus one (0: unknown or missing).
        categories: Vec<String>,
        /// Whether every category is a number (then sorted and looked up as numbers).
        numbers: bool,
        /// The training file has missing values here (one-hot: a `<missing>` feature).
        missing_seen: bool,
    },
}

/// The feature layout and encoding fitted on a training file.
pub(crate) struct Plan {
    names: Vec<String>,
    columns: Vec<Column>,
    encoding: CategoricalEncoding,
}

impl Plan {
    /// Decides which columns are categorical and fits categories and fill values on `train`.
    pub(crate) fn fit(train: &RawTable, opts: &CsvOptions) -> Result<Plan, DataError> {
        let mut declared = vec![false; train.width()];
        for c in &opts.categorical {
            declared[train.feature_of(c, "categorical")?] = true;
        }
        let mut columns = Vec::with_capacity(train.width());
        for (f, &declared) in declared.iter().enumerate() {
            let present: Vec<&str> = (0..train.rows())
                .map(|r| train.field(r, f))
                .filter(|v| !is_missing(v))
                .collect();
            let missing_seen = present.len() < train.rows();
            let numbers: Vec<f64> = present
                .iter()
                .filter_map(|v| v.parse::<f32>().ok())
                .filter(|v| v.is_finite())
                .map(f64::from)
                .collect();
            // A column with no number at all holds categories; one mixing numbers and text is
            // left numeric, so its first text field is reported by `encode`.
            let text = present.iter().all(|v| v.parse::<f32>().is_err()) && !present.is_empty();
            let column = if declared || text {
                let categories = categories(present);
                let limit = match opts.encoding {
                    CategoricalEncoding::Onehot => MAX_ONE_HOT,
                    CategoricalEncoding::Embed => MAX_VOCAB_SIZE - 1,
                };
                if categories.len() > limit {
                    return Err(DataError::Invalid(format!(
                        "{}: the categorical column `{}` has {} distinct values in the training file, more than {limit} (is it an id or free text?). Drop the column{}",
                        train.file.display(),
                        train.name(f),
                        categories.len(),
                        if opts.encoding == CategoricalEncoding::Onehot {
                            ", or set categorical_encoding = \"embed\""
                        } else {
                            ""
                        }
                    )));
                }
                Column::Categorical {
                    numbers: categories.iter().all(|v| v.parse::<f64>().is_ok()),
                    categories,
                    missing_seen,
                }
            } else {
                let fill = match opts.missing {
                    Missing::Error => None,
                    Missing::Mean if numbers.is_empty() => {
                        return Err(DataError::Invalid(format!(
                            "{}: the numeric column `{}` has no value in the training file, so missing = \"mean\" has nothing to fill with. Drop the column",
                            train.file.display(),
                            train.name(f)
                        )));
                    }
                    Missing::Mean => {
                        Some((numbers.iter().sum::<f64>() / numbers.len() as f64) as f32)
                    }
                };
                Column::Numeric {
                    fill,
                    indicator: opts.missing_indicator && missing_seen,
                }
            };
            columns.push(column);
        }
        Ok(Plan {
            names: (0..train.width()).map(|f| train.name(f)).collect(),
            columns,
            encoding: opts.encoding,
        })
    }

    fn widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns.iter().map(|c| match c {
            Column::Numeric { indicator, .. } => 1 + usize::from(*indicator),
            Column::Categorical {
                categories,
                missing_seen,
                ..
            } => match self.encoding {
                CategoricalEncoding::Onehot => categories.len() + usize::from(*missing_seen),
                CategoricalEncoding::Embed => 1,
            },
        })
    }

    /// Features per row.
    pub(crate) fn width(&self) -> usize {
        self.widths().sum()
    }

    /// One name per feature: the column's name, `name=category` for one-hot features and
    /// `name=<missing>` for missing-value features.
    pub(crate) fn feature_names(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.width());
        for (name, column) in self.names.iter().zip(&self.columns) {
            match (column, self.encoding) {
                (Column::Numeric { indicator, .. }, _) => {
                    out.push(name.clone());
                    if *indicator {
                        out.push(format!("{name}=<missing>"));
                    }
                }
                (
                    Column::Categorical {
                        categories,
                        missing_seen,
                        ..
                    },
                    CategoricalEncoding::Onehot,
                ) => {
                    if *missing_seen {
                        out.push(format!("{name}=<missing>"));
                    }
                    out.extend(categories.iter().map(|c| format!("{name}={c}")));
                }
                (Column::Categorical { .. }, CategoricalEncoding::Embed) => out.push(name.clone()),
            }
        }
        out
    }

    /// The features holding category codes (`embed` only).
    pub(crate) fn categorical(&self) -> Vec<CategoricalFeature> {
        let mut at = 0;
        let mut out = Vec::new();
        for (column, width) in self.columns.iter().zip(self.widths()) {
            if let (Column::Categorical { categories, .. }, CategoricalEncoding::Embed) =
                (column, self.encoding)
            {
                out.push(CategoricalFeature {
                    feature: at,
                    categories: categories.len() + 1,
                });
            }
            at += width;
        }
        out
    }

    /// The features of every row of `t`, row by row.
    pub(crate) fn encode(&self, t: &RawTable) -> Result<Vec<f32>, DataError> {
        let mut out = Vec::with_capacity(t.rows() * self.width());
        for row in 0..t.rows() {
            for (f, column) in self.columns.iter().enumerate() {
                let field = t.field(row, f);
                match column {
                    Column::Numeric { fill, indicator } => {
                        let (value, gap) = numeric(t, row, f, *fill)?;
                        out.push(value);
                        if *indicator {
                            out.push(if gap { 1.0 } else { 0.0 });
                        }
                    }
                    Column::Categorical {
                        categories,
                        numbers,
                        missing_seen,
                    } => {
                        let code = if is_missing(field) {
                            None
                        } else {
                            find(categories, *numbers, field)
                        };
                        match self.encoding {
                            CategoricalEncoding::Embed => {
                                out.push(code.map_or(0.0, |i| (i + 1) as f32));
                            }
                            CategoricalEncoding::Onehot => {
                                let start = out.len();
                                out.resize(
                                    start + categories.len() + usize::from(*missing_seen),
                                    0.0,
                                );
                                let hot = match code {
                                    Some(i) => Some(i + usize::from(*missing_seen)),
                                    None if *missing_seen && is_missing(field) => Some(0),
                                    None => None,
                                };
                                if let Some(h) = hot {
                                    out[start + h] = 1.0;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A numeric field's value and whether it was missing (then filled with `fill`).
fn numeric(
    t: &RawTable,
    row: usize,
    f: usize,
    fill: Option<f32>,
) -> Result<(f32, bool), DataError> {
    let field = t.field(row, f);
    if is_missing(field) {
        return match fill {
            Some(m) => Ok((m, true)),
            None => Err(DataError::corrupt(
                &t.file,
                t.at(row, f),
                format!("{} is `{field}`, a missing value", t.describe(f)),
                format!(
                    "Fill in or drop rows with missing values, or set missing = \"mean\" in [data] to fill gaps in numeric columns with the training mean (missing_indicator = true also adds a 0/1 feature marking them); if `{}` holds categories, list it in categorical = [...]",
                    t.name(f)
                ),
            )),
        };
    }
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok((v, false)),
        Ok(_) => Err(DataError::corrupt(
            &t.file,
            t.at(row, f),
            format!("{} is `{field}`, not a finite number", t.describe(f)),
            "Give finite values (or a missing-value marker such as NA)",
        )),
        Err(_) => Err(DataError::corrupt(
            &t.file,
            t.at(row, f),
            format!(
                "{} holds `{field}`, not a number, in a column of numbers",
                t.describe(f)
            ),
            format!(
                "Fix or remove the row; if `{}` holds categories, list it in categorical = [...]; if the first row names the columns, set header = true",
                t.name(f)
            ),
        )),
    }
}

/// The distinct values, sorted as numbers when all are numbers, else as text.
fn categories(present: Vec<&str>) -> Vec<String> {
    let mut values: Vec<&str> = present;
    let numbers = values.iter().all(|v| v.parse::<f64>().is_ok());
    values.sort_by(|a, b| order(a, b, numbers));
    values.dedup();
    values.into_iter().map(String::from).collect()
}

fn order(a: &str, b: &str, numbers: bool) -> Ordering {
    if numbers {
        let (x, y) = (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap());
        x.total_cmp(&y).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// A field's index among the sorted categories.
fn find(categories: &[String], numbers: bool, field: &str) -> Option<usize> {
    if numbers && field.parse::<f64>().is_err() {
        return None;
    }
    categories
        .binary_search_by(|c| order(c, field, numbers))
        .ok()
}
