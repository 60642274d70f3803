//! Tabular evaluator: answers candidates from a table built by `nas tabulate` (see the
//! `nas-table` crate for the file format). No training happens: the network's recorded
//! validation curve, test accuracy and measured training time are reported, so strategies
//! (multi-fidelity ones included) can be compared in seconds on real training results.
//!
//! ```toml
//! [[evaluator]]
//! plugin = "tabular"
//! table = "runs/tables/my-space/table.json.gz"   # a file written by `nas tabulate`
//! delay_ms = 0          # optional: sleep this long per evaluation (see below)
//! ```
//!
//! `delay_ms = N` (default 0, at most 600000) simulates a slow evaluation for benchmarks: every
//! evaluation sleeps N milliseconds before answering (the answer is unchanged). `cargo xtask
//! bench-workers` uses it to make the scaling of distributed workers visible; never set it for
//! a real search.
//!
//! Metrics (accuracies are fractions 0..1):
//! - `val_accuracy`: validation accuracy after `epochs` epochs of the recorded run: the
//!   request's `fidelity` (epochs, rounded up) or, without one, the table's full budget. The
//!   recorded run used a learning-rate schedule spanning the full budget, so a short fidelity
//!   reads an early point of that run (as NAS-Bench-201's curves do).
//! - `test_accuracy`: test accuracy after the full budget (the number to report; never search
//!   on it).
//! - `epochs`, and `simulated_seconds`: the measured training seconds of those epochs (on the
//!   machine that built the table), so studies can be compared in simulated time.
//! - `val_accuracy_final`: validation accuracy after the full budget, only on requests for the
//!   full budget: a benchmark that selects its incumbent by it then only picks networks the
//!   search paid to train fully.
//!
//! The candidate is found by its network's canonical hash, so isomorphic architectures, and
//! the same network from any space, get the same answer; a network the table does not hold
//! (another width, input or class count) is an error that says what the table covers.

use std::path::Path;
use std::time::Duration;

use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use nas_table::{Index, Table};
use serde_json::{Value, json};

const OPTIONS: &[&str] = &["table", "delay_ms"];
/// The longest `delay_ms` accepted (10 minutes).
pub const MAX_DELAY_MS: u64 = 600_000;

/// Where the table comes from, and the simulated evaluation time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TabularConfig {
    pub table: String,
    /// Sleep this long in every evaluation (a slow evaluation simulated for benchmarks).
    pub delay: Duration,
}

/// Reads the evaluator's TOML table (as JSON); unknown keys are errors.
pub fn parse_config(config: &Value) -> Result<TabularConfig, String> {
    let map = match config {
        Value::Object(map) => map,
        _ => {
            return Err(
                "tabular evaluator: needs `table = \"path/to/table.json.gz\"` (a file written by \
                 `nas tabulate`)"
                    .into(),
            );
        }
    };
    if let Some(key) = map.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(format!(
            "tabular evaluator: unknown option `{key}`; accepted: {}",
            OPTIONS.join(", ")
        ));
    }
    let table = match map.get("table") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(format!(
                "tabular evaluator: `table` must be a file path, found {other}"
            ));
        }
        None => {
            return Err(
                "tabular evaluator: `table` is missing: give the file written by `nas tabulate`"
                    .into(),
            );
        }
    };
    let delay_ms = match map.get("delay_ms") {
        None => 0,
        Some(v) => v.as_u64().filter(|&ms| ms <= MAX_DELAY_MS).ok_or_else(|| {
            format!(
                "tabular evaluator: `delay_ms` must be a whole number of milliseconds from 0 to \
                 {MAX_DELAY_MS}, found {v}"
            )
        })?,
    };
    Ok(TabularConfig {
        table,
        delay: Duration::from_millis(delay_ms),
    })
}

pub struct TabularEvaluator {
    table: Table,
    index: Index,
    /// Where the table came from, for messages.
    source: String,
    /// Slept in every evaluation (`delay_ms`).
    delay: Duration,
}

impl TabularEvaluator {
    pub fn from_table(table: Table, source: String) -> TabularEvaluator {
        let index = table.index();
        TabularEvaluator {
            table,
            index,
            source,
            delay: Duration::ZERO,
        }
    }

    /// Sleeps `delay` in every evaluation (a slow evaluation simulated for benchmarks).
    pub fn with_delay(mut self, delay: Duration) -> TabularEvaluator {
        self.delay = delay;
        self
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    fn fail(&self, msg: impl std::fmt::Display) -> PluginError {
        format!("tabular evaluator ({}): {msg}", self.source).into()
    }

    /// The row of the request's network, or why there is none.
    fn row(&self, req: &EvalRequest) -> Result<&nas_table::Row, PluginError> {
        let hash = req.graph.canonical_hash();
        if let Some(&i) = self.index.by_hash.get(&hash) {
            return Ok(&self.table.rows[i]);
        }
        if self.table.sample.is_some() {
            return Err(self.fail(format!(
                "architecture `{}` is not in the table `{}`: it is a random sample of {} of the \
                 space's {} networks, which answers only the networks it holds; search with a \
                 complete table (`nas tabulate` run to the end)",
                req.arch,
                self.table.name,
                self.table.rows.len(),
                self.table.networks_in_space
            )));
        }
        let what = if self.index.by_arch.contains_key(req.arch.trim()) {
            "is listed in the table but builds a different network here"
        } else {
            "is not in the table"
        };
        Err(self.fail(format!(
            "architecture `{}` {what}; the table `{}` covers the space {} with data {}: use \
             that [space] (same width, input and classes)",
            req.arch, self.table.name, self.table.space, self.table.data
        )))
    }
}

impl Evaluator for TabularEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let cfg = parse_config(&ctx.config)?;
        let table =
            Table::read(Path::new(&cfg.table)).map_err(|e| format!("tabular evaluator: {e}"))?;
        Ok(TabularEvaluator::from_table(table, cfg.table).with_delay(cfg.delay))
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let row = self.row(req)?;
        if let Some(e) = &row.error {
            return Err(self.fail(format!(
                "training `{}` failed when the table was built: {e}",
                req.arch
            )));
        }
        let full = self.table.epochs;
        let epochs = match req.fidelity {
            None => full,
            Some(f) if f.is_finite() && f > 0.0 && f.ceil() <= full as f64 => f.ceil() as usize,
            Some(f) => {
                return Err(self.fail(format!(
                    "the request's fidelity {f} is not a number of epochs in 1..={full} (the \
                     table's curves end at {full} epochs)"
                )));
            }
        };
        let at = |v: Option<f64>, what: &str| {
            v.ok_or_else(|| self.fail(format!("row {} has no {what} at epoch {epochs}", row.hash)))
        };
        let mut metrics = Metrics::new();
        metrics.insert(
            "val_accuracy".into(),
            at(row.val_accuracy_at(epochs), "validation accuracy")?,
        );
        if epochs == full {
            metrics.insert(
                "val_accuracy_final".into(),
                at(row.val_accuracy_at(full), "validation accuracy")?,
            );
        }
        if let Some(t) = row.test_accuracy {
            metrics.insert("test_accuracy".into(), t);
        }
        metrics.insert("epochs".into(), epochs as f64);
        metrics.insert(
            "simulated_seconds".into(),
            at(row.seconds_at(epochs), "training time")?,
        );
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details: json!({
                "table": self.table.name,
                "row_trial": row.trial,
                "isomorphs": row.archs.len(),
            }),
        })
    }
}

nas_plugin::export_evaluator!("tabular", TabularEvaluator);

#[cfg(test)]
mod tests;
