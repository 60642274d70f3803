//! Tabular NAS-Bench-201 evaluator: looks a `cell` candidate up by its NB201 arch string and
//! reports the benchmark's accuracies at once, plus a simulated training cost, so search
//! strategies can be compared in simulated time. No training happens and no data is read:
//! both tables are compiled in (`data/README.md` has their provenance).
//!
//! ```toml
//! [space]
//! kind = "cell"                # C = 16, N = 5 (the defaults), as in the benchmark
//!
//! [[evaluator]]
//! plugin = "nb201"
//! dataset = "cifar10"          # "cifar10" (default) | "cifar100" | "ImageNet16-120"
//! fidelity = "200"             # "200" (default) | "12" | "auto": what `val_accuracy` is
//! cost = "flops"               # "flops" (default) | "epochs": the simulated time model
//! check_network = true         # the graph must be the benchmark network (default true)
//!
//! [objective]
//! maximize = "val_accuracy"
//! ```
//!
//! Metrics (accuracies are fractions 0..1):
//! - `val_accuracy`: the search signal, chosen by `fidelity`:
//!   - `"200"`: the 200-epoch mean TEST accuracy. The 200-epoch table has no validation
//!     accuracy, so this searches on the test set (an optimistic, oracle-like signal); say so
//!     when reporting results.
//!   - `"12"`: the 12-epoch validation accuracy (NB201 `hp=12` results), a genuine
//!     validation signal at a short budget: the paper's protocol, approximately.
//!   - `"auto"`: per request, the largest table budget not above the requested epochs
//!     (`fidelity` of the request; the 12-epoch one below 200 epochs, the 200-epoch one from
//!     200 epochs or without a request fidelity), for multi-fidelity strategies.
//! - `test_accuracy`: 200-epoch mean test accuracy, always (the number to report).
//! - `val_accuracy_12`, `test_accuracy_12`: 12-epoch validation and test accuracy, always.
//! - `epochs`: the training epochs the simulated cost covers: the request's `fidelity`
//!   (rounded up) or, without one, the budget of the table behind `val_accuracy`.
//! - `simulated_seconds`: the simulated training time of those epochs:
//!   - `cost = "flops"`: `3 * flops * train_samples * epochs / 1e12`. `flops` is the core's
//!     multiply-accumulates per sample (forward); training is taken as 3x forward (forward +
//!     backward); [`MACS_PER_SECOND`] = 1e12 is an assumed effective training throughput (one
//!     GPU at realistic utilisation), not a measurement.
//!   - `cost = "epochs"`: `epochs * train_samples / 5000`: every architecture costs the same
//!     per epoch ([`IMAGES_PER_SECOND`] = 5,000, assumed).
//!
//!   `train_samples` is 50,000 for CIFAR-10/100 and 151,700 for ImageNet16-120. The tables
//!   have no measured training times, so the cost is a model only.
//!
//! The tables hold results for the benchmark network only (C = 16, N = 5, input 3x32x32, or
//! 3x16x16 for ImageNet16-120, 10/100/120 classes). The arch string does not carry those, so
//! the request's graph is checked against that network (see [`network`]); an arch string not
//! in the table is an error naming it.

pub mod network;
pub mod table;

use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use serde_json::{Value, json};

pub use table::{Dataset, Row, Table};

/// Assumed effective training throughput of the `flops` cost model, multiply-accumulates/s.
pub const MACS_PER_SECOND: f64 = 1e12;
/// A training step costs about three forward passes (forward, then two for backward).
pub const TRAIN_STEP_FORWARDS: f64 = 3.0;
/// Assumed training throughput of the `epochs` cost model, images/s.
pub const IMAGES_PER_SECOND: f64 = 5_000.0;

const OPTIONS: &[&str] = &["dataset", "fidelity", "cost", "check_network"];

/// Which table `val_accuracy` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fidelity {
    /// 200-epoch test accuracy (the table has no validation accuracy).
    Epochs200,
    /// 12-epoch validation accuracy.
    Epochs12,
    /// Per request: 12-epoch table below 200 requested epochs, else the 200-epoch one.
    Auto,
}

impl Fidelity {
    /// The table used for a request asking for `epochs` (`None`: evaluator default).
    pub fn table_for(self, epochs: Option<f64>) -> Fidelity {
        match (self, epochs) {
            (Fidelity::Auto, Some(e)) if e < 200.0 => Fidelity::Epochs12,
            (Fidelity::Auto, _) => Fidelity::Epochs200,
            (f, _) => f,
        }
    }

    /// Training epochs of a concrete table.
    fn epochs(self) -> f64 {
        match self {
            Fidelity::Epochs12 => 12.0,
            _ => 200.0,
        }
    }
}

/// The simulated time model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostModel {
    /// Proportional to the candidate's FLOPs.
    Flops,
    /// The same per-epoch time for every candidate.
    Epochs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nb201Config {
    pub dataset: Dataset,
    pub fidelity: Fidelity,
    pub cost: CostModel,
    pub check_network: bool,
}

impl Default for Nb201Config {
    fn default() -> Self {
        Nb201Config {
            dataset: Dataset::Cifar10,
            fidelity: Fidelity::Epochs200,
            cost: CostModel::Flops,
            check_network: true,
        }
    }
}

/// Reads the evaluator's TOML table (as JSON). Unknown keys and values are errors that list
/// what is accepted.
pub fn parse_config(config: &Value) -> Result<Nb201Config, String> {
    let map = match config {
        Value::Null => return Ok(Nb201Config::default()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "nb201 evaluator: expected a table of options, found {other}"
            ));
        }
    };
    if let Some(key) = map.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(format!(
            "nb201 evaluator: unknown option `{key}`; accepted: {}",
            OPTIONS.join(", ")
        ));
    }
    let mut cfg = Nb201Config::default();
    if let Some(v) = map.get("dataset") {
        let names: Vec<String> = Dataset::ALL
            .iter()
            .map(|d| format!("\"{}\"", d.name()))
            .collect();
        cfg.dataset = v.as_str().and_then(Dataset::parse).ok_or_else(|| {
            format!(
                "nb201 evaluator: `dataset` is {v}; valid datasets: {}",
                names.join(", ")
            )
        })?;
    }
    if let Some(v) = map.get("fidelity") {
        // `fidelity = 12` and `fidelity = "12"` both read naturally in TOML.
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        cfg.fidelity = match text.as_str() {
            "200" => Fidelity::Epochs200,
            "12" => Fidelity::Epochs12,
            "auto" => Fidelity::Auto,
            _ => {
                return Err(format!(
                    "nb201 evaluator: `fidelity` is {v}; accepted: \"200\" (200-epoch test \
                     accuracy), \"12\" (12-epoch validation accuracy), \"auto\" (by the \
                     requested epochs)"
                ));
            }
        };
    }
    if let Some(v) = map.get("cost") {
        cfg.cost = match v.as_str() {
            Some("flops") => CostModel::Flops,
            Some("epochs") => CostModel::Epochs,
            _ => {
                return Err(format!(
                    "nb201 evaluator: `cost` is {v}; accepted: \"flops\", \"epochs\""
                ));
            }
        };
    }
    if let Some(v) = map.get("check_network") {
        cfg.check_network = v.as_bool().ok_or_else(|| {
            format!("nb201 evaluator: `check_network` must be true or false, found {v}")
        })?;
    }
    Ok(cfg)
}

/// Simulated training seconds of `epochs` epochs on `dataset` (see the crate docs).
pub fn simulated_seconds(cost: CostModel, dataset: Dataset, flops: f64, epochs: f64) -> f64 {
    let images = dataset.train_samples() * epochs;
    match cost {
        CostModel::Flops => TRAIN_STEP_FORWARDS * flops * images / MACS_PER_SECOND,
        CostModel::Epochs => images / IMAGES_PER_SECOND,
    }
}

pub struct Nb201Evaluator {
    config: Nb201Config,
    table: &'static Table,
}

impl Nb201Evaluator {
    pub fn config(&self) -> &Nb201Config {
        &self.config
    }
}

impl Evaluator for Nb201Evaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let config = parse_config(&ctx.config)?;
        Ok(Nb201Evaluator {
            config,
            table: table::table()?,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let cfg = &self.config;
        let arch = req.arch.trim();
        let row = self.table.get(arch).ok_or_else(|| {
            format!(
                "nb201 evaluator: architecture `{arch}` is not in the NAS-Bench-201 table; it \
                 looks up `cell` space strings such as \
                 `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`"
            )
        })?;
        if cfg.check_network {
            network::check(&req.graph, arch, cfg.dataset)
                .map_err(|e| format!("nb201 evaluator: {e}"))?;
        }
        let requested = match req.fidelity {
            None => None,
            Some(f) if f.is_finite() && f > 0.0 => Some(f.ceil()),
            Some(f) => {
                return Err(format!(
                    "nb201 evaluator: the request's fidelity {f} is not a positive number of epochs"
                )
                .into());
            }
        };
        let source = cfg.fidelity.table_for(requested);
        let epochs = requested.unwrap_or(source.epochs());
        let flops = match req.metrics.get("flops") {
            Some(&f) => f,
            None => req
                .graph
                .flops()
                .map_err(|e| format!("nb201 evaluator: cannot count FLOPs: {e}"))?
                as f64,
        };

        let d = cfg.dataset.index();
        let signal = match source {
            Fidelity::Epochs12 => row.val_12[d],
            _ => row.test_200[d],
        };
        let mut metrics = Metrics::new();
        metrics.insert("val_accuracy".into(), signal);
        metrics.insert("test_accuracy".into(), row.test_200[d]);
        metrics.insert("val_accuracy_12".into(), row.val_12[d]);
        metrics.insert("test_accuracy_12".into(), row.test_12[d]);
        metrics.insert("epochs".into(), epochs);
        metrics.insert(
            "simulated_seconds".into(),
            simulated_seconds(cfg.cost, cfg.dataset, flops, epochs),
        );
        let val_source = match source {
            Fidelity::Epochs12 => "12-epoch validation accuracy",
            _ => "200-epoch test accuracy (the table has no validation accuracy)",
        };
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details: json!({
                "benchmark": "NAS-Bench-201",
                "dataset": cfg.dataset.name(),
                "val_accuracy": val_source,
            }),
        })
    }
}

nas_plugin::export_evaluator!("nb201", Nb201Evaluator);

#[cfg(test)]
mod tests;
