//! Tabular benchmarks of our own: every architecture of a small space trained once, with
//! per-epoch validation curves. `nas tabulate` writes them; the `tabular` evaluator answers
//! lookups from them, so strategies can be compared in seconds on real training results.
//!
//! A table is one JSON document, gzip-compressed when the file name ends in `.gz`:
//!
//! ```json
//! { "format": "nas-table", "version": 1, "name": "nb201-digits",
//!   "space": {..}, "data": {..}, "evaluator": {..}, "seed": 0, "epochs": 12,
//!   "archs_in_space": 15625, "networks_in_space": 5155, "config": "<the TOML it was built from>",
//!   "rows": [ { "hash": "..", "archs": ["|nor_conv_3x3~0|+..", ..], "trial": 17,
//!               "params": 1234, "flops": 5678,
//!               "val_accuracy": [0.41, 0.77, ..], "train_seconds": [0.08, 0.16, ..],
//!               "val_loss": 0.12, "train_loss": 0.05, "train_accuracy": 0.99,
//!               "test_accuracy": 0.97, "test_loss": 0.11 } ] }
//! ```
//!
//! One row per distinct network (canonical hash): isomorphic architectures were trained once
//! and are all listed in `archs`. `val_accuracy` and `train_seconds` have one entry per epoch
//! (`train_seconds` cumulative, training steps only, measured on the machine that built the
//! table); the other numbers are those after the last epoch. Accuracies are fractions 0..1.
//! A row whose training failed (e.g. diverged) has `error` and empty curves. `params` and
//! `flops` are those of the trained architecture (isomorphs can differ there, e.g. by
//! convolutions whose output no path uses).
//!
//! A table written before every network was trained (`nas tabulate --partial`) is a sample:
//! its `sample` records how many architectures the grid had drawn (a uniform random order of
//! the space), and [`Table::arch_weights`] turns the rows into an estimate of the whole
//! space's distribution.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const FORMAT: &str = "nas-table";
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The `[space]` the table covers, as resolved by the core (input and classes filled in).
    pub space: Value,
    /// The `[data]` table the networks were trained on.
    pub data: Value,
    /// The training evaluator's options.
    pub evaluator: Value,
    /// Study seed (data split, weight initialisation).
    pub seed: u64,
    /// Epochs every network was trained for: the length of each full curve.
    pub epochs: usize,
    /// Architectures in the space (rows cover them all, isomorphs merged).
    pub archs_in_space: u64,
    /// Distinct networks (canonical hashes) among them: the rows of a complete table.
    pub networks_in_space: u64,
    /// The TOML text the table was built from.
    pub config: String,
    /// Set when the rows are a random sample of the space rather than all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    pub rows: Vec<Row>,
}

/// How the rows of a partial table were drawn: the networks of the first `draws`
/// architectures of the grid strategy's uniform random order (isomorphs drawn again were not
/// trained again, so a network stands for every draw of its architectures).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub draws: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Canonical hash of the network (`Graph::canonical_hash`).
    pub hash: String,
    /// Every architecture string of the space that builds this network; the first was trained.
    pub archs: Vec<String>,
    /// The trial of the building study that trained it.
    pub trial: u64,
    pub params: f64,
    pub flops: f64,
    /// Validation accuracy after each epoch.
    pub val_accuracy: Vec<f64>,
    /// Cumulative training seconds after each epoch.
    pub train_seconds: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Why training failed; the curves are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Row {
    /// Validation accuracy after `epochs` epochs (1-based), if trained that far.
    pub fn val_accuracy_at(&self, epochs: usize) -> Option<f64> {
        epochs
            .checked_sub(1)
            .and_then(|i| self.val_accuracy.get(i).copied())
    }

    /// Cumulative training seconds after `epochs` epochs, if trained that far.
    pub fn seconds_at(&self, epochs: usize) -> Option<f64> {
        epochs
            .checked_sub(1)
            .and_then(|i| self.train_seconds.get(i).copied())
    }
}

impl Table {
    /// Reads a table (gzip when the file name ends in `.gz`), with a message naming the file.
    pub fn read(path: &Path) -> Result<Table, String> {
        let file =
            File::open(path).map_err(|e| format!("cannot open table {}: {e}", path.display()))?;
        let mut reader: Box<dyn Read> = if is_gz(path) {
            Box::new(GzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read table {}: {e} (truncated?)", path.display()))?;
        Table::from_json(&bytes).map_err(|e| format!("table {}: {e}", path.display()))
    }

    /// Parses a table document and checks that it is one this version understands.
    pub fn from_json(bytes: &[u8]) -> Result<Table, String> {
        // Check the header first so a wrong file gets a plain message, not a serde one.
        let head: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        if head.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format!(
                "not a `{FORMAT}` file (written by `nas tabulate`); its `format` is {}",
                head.get("format").unwrap_or(&Value::Null)
            ));
        }
        let version = head.get("version").and_then(Value::as_u64);
        if version != Some(VERSION as u64) {
            return Err(format!(
                "format version {version:?}; this build reads version {VERSION}"
            ));
        }
        let table: Table = serde_json::from_value(head).map_err(|e| e.to_string())?;
        table.check()?;
        Ok(table)
    }

    fn check(&self) -> Result<(), String> {
        for row in &self.rows {
            if row.error.is_none() && row.val_accuracy.len() != self.epochs {
                return Err(format!(
                    "row {} has {} validation accuracies for {} epochs",
                    row.hash,
                    row.val_accuracy.len(),
                    self.epochs
                ));
            }
            if row.train_seconds.len() != row.val_accuracy.len() {
                return Err(format!(
                    "row {}: {} epoch times for {} accuracies",
                    row.hash,
                    row.train_seconds.len(),
                    row.val_accuracy.len()
                ));
            }
            if row.archs.is_empty() {
                return Err(format!("row {} lists no architecture", row.hash));
            }
        }
        Ok(())
    }

    /// Writes the table (gzip when the file name ends in `.gz`) through a temporary file, so
    /// an interrupted write never leaves a truncated table under the final name.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("partial");
        let fail = |e: std::io::Error| format!("cannot write table {}: {e}", path.display());
        {
            let file = BufWriter::new(File::create(&tmp).map_err(fail)?);
            let mut out: Box<dyn Write> = if is_gz(path) {
                Box::new(GzEncoder::new(file, Compression::best()))
            } else {
                Box::new(file)
            };
            serde_json::to_writer(&mut out, self).map_err(|e| fail(e.into()))?;
            out.flush().map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// Row index by architecture string and by canonical hash.
    pub fn index(&self) -> Index {
        let mut by_arch = HashMap::new();
        let mut by_hash = HashMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            by_hash.insert(row.hash.clone(), i);
            for a in &row.archs {
                by_arch.insert(a.clone(), i);
            }
        }
        Index { by_arch, by_hash }
    }

    /// How many of the space's architectures each row stands for. A complete table: the
    /// architectures that build its network. A sample: the Horvitz-Thompson weight `g / p`,
    /// with `g` those architectures and `p = 1 - (1 - g / archs_in_space)^draws` the chance
    /// that `draws` uniform draws hit the network, rounded (at least 1), so percentiles over
    /// the weighted rows estimate those over every architecture of the space without the
    /// pull of networks with many isomorphs (drawn more often) or few.
    pub fn arch_weights(&self) -> Vec<usize> {
        self.rows
            .iter()
            .map(|row| {
                let g = row.archs.len();
                match self.sample {
                    None => g,
                    Some(s) => {
                        let miss = 1.0 - g as f64 / self.archs_in_space.max(1) as f64;
                        let p = 1.0 - miss.max(0.0).powf(s.draws as f64);
                        ((g as f64 / p.max(f64::MIN_POSITIVE)).round() as usize).max(1)
                    }
                }
            })
            .collect()
    }

    /// The best final validation and test accuracy over the rows (the regret references).
    pub fn optimum(&self) -> Optimum {
        let best = |f: &dyn Fn(&Row) -> Option<f64>| {
            self.rows
                .iter()
                .filter_map(f)
                .fold(f64::NEG_INFINITY, f64::max)
        };
        Optimum {
            val_accuracy: best(&|r| r.val_accuracy.last().copied()),
            test_accuracy: best(&|r| r.test_accuracy),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimum {
    pub val_accuracy: f64,
    pub test_accuracy: f64,
}

/// Lookup maps of a [`Table`].
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub by_arch: HashMap<String, usize>,
    pub by_hash: HashMap<String, usize>,
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

#[cfg(test)]
mod tests;
