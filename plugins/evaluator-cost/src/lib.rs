//! Cost evaluator: `params` and `flops` from the graph and, when asked for, the measured
//! inference latency (`latency_ms` median, `latency_p90_ms`) on the study's execution provider.
//!
//! ```toml
//! [[evaluator]]
//! plugin = "cost"
//! latency = { batch = 1, runs = 20, warmup = 5 }   # or `latency = true`; each key optional
//! ```

use nas_graph::Graph;
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::weights::Weights;
use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use nas_runtime::{SessionSettings, TensorHome, TensorStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const OPTIONS: &[&str] = &["latency"];
const LATENCY_OPTIONS: &[&str] = &["batch", "runs", "warmup"];

/// How latency is measured: `runs` timed runs after `warmup` untimed ones, on inputs of
/// `batch` samples (see [`measure_latency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyConfig {
    pub batch: usize,
    pub runs: usize,
    pub warmup: usize,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            batch: 1,
            runs: 20,
            warmup: 5,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostConfig {
    /// `None`: count only, never touch ONNX Runtime.
    pub latency: Option<LatencyConfig>,
}

fn unknown(key: &str, table: &str, accepted: &[&str]) -> String {
    format!(
        "cost evaluator: unknown option `{key}` in {table}; accepted: {}",
        accepted.join(", ")
    )
}

/// Reads the evaluator's TOML table (as JSON). Unknown keys are errors that list the
/// accepted ones.
pub fn parse_config(config: &Value) -> Result<CostConfig, String> {
    let map = match config {
        Value::Null => return Ok(CostConfig::default()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "cost evaluator: expected a table of options, found {other}"
            ));
        }
    };
    if let Some(key) = map.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(unknown(key, "[[evaluator]]", OPTIONS));
    }
    let latency = match map.get("latency") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(LatencyConfig::default()),
        Some(Value::Object(t)) => {
            if let Some(key) = t.keys().find(|k| !LATENCY_OPTIONS.contains(&k.as_str())) {
                return Err(unknown(key, "`latency`", LATENCY_OPTIONS));
            }
            let d = LatencyConfig::default();
            let get = |key: &str, default: usize, min: u64| -> Result<usize, String> {
                match t.get(key) {
                    None => Ok(default),
                    Some(v) => v
                        .as_u64()
                        .filter(|n| *n >= min)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            format!(
                                "cost evaluator: `latency.{key}` must be an integer >= {min}, found {v}"
                            )
                        }),
                }
            };
            Some(LatencyConfig {
                batch: get("batch", d.batch, 1)?,
                runs: get("runs", d.runs, 1)?,
                warmup: get("warmup", d.warmup, 0)?,
            })
        }
        Some(other) => {
            return Err(format!(
                "cost evaluator: `latency` must be true, false or a table like \
                 {{ batch = 1, runs = 20, warmup = 5 }}, found {other}"
            ));
        }
    };
    Ok(CostConfig { latency })
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub median_ms: f64,
    pub p90_ms: f64,
    /// The provider the session ran on (differs from the configured one after a fallback).
    pub provider: String,
}

/// Median (mean of the middle two for an even count) of a non-empty sample.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of a non-empty sorted sample: the smallest value
/// with at least `q` of the sample at or below it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Exports `graph` with He-initialised weights, builds a session on the configured provider
/// and times `cfg.runs` runs on one fixed random input.
///
/// The input is placed once in the memory of the provider the session runs on (device memory
/// on CUDA / TensorRT) and the outputs are bound there too, so no run copies between host and
/// device; each timed run ends with a device synchronisation (see [`nas_runtime::time_runs`]).
/// The figure is thus the model's compute time on the provider. On CPU the same binding path
/// runs with host memory (it skips `session.run`'s per-call input and output handling).
pub fn measure_latency(
    graph: &Graph,
    cfg: &LatencyConfig,
    runtime: &SessionSettings,
    seed: u64,
) -> Result<Latency, PluginError> {
    let weights = Weights::he_init(graph, seed)
        .map_err(|e| format!("cost evaluator: cannot initialise weights: {e}"))?;
    let options = ExportOptions {
        batch: Some(cfg.batch),
        ..ExportOptions::default()
    };
    let model = export_inference(graph, &weights, &options)
        .map_err(|e| format!("cost evaluator: cannot export the candidate to ONNX: {e}"))?;
    let built = nas_runtime::build_session(&model, runtime)?;
    let mut session = built.session;
    let home = TensorHome::for_provider_name(&built.provider)?;
    let store = TensorStore::new(&session, home)?;

    let mut shape = vec![cfg.batch];
    shape.extend_from_slice(&graph.input);
    let len: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1A7E);
    // Token ids and table codes must be valid rows of their embedding; values are drawn in
    // [-1, 1).
    let ids = graph.input_ids();
    let sample: usize = graph.input.iter().product();
    let data: Vec<f32> = (0..len)
        .map(
            |i| match ids.iter().find(|(r, _)| r.contains(&(i % sample))) {
                Some(&(_, vocab)) => rng.random_range(0..vocab) as f32,
                None => rng.random_range(-1.0f32..1.0),
            },
        )
        .collect();
    let mut samples = nas_runtime::time_runs(
        &mut session,
        &store,
        &options.input_name,
        &shape,
        &data,
        cfg.warmup,
        cfg.runs,
    )
    .map_err(|e| format!("cost evaluator: cannot time the candidate: {e}"))?;
    samples.sort_by(f64::total_cmp);
    Ok(Latency {
        median_ms: median(&samples),
        p90_ms: percentile(&samples, 0.9),
        provider: built.provider,
    })
}

pub struct CostEvaluator {
    config: CostConfig,
    /// Present when latency is measured.
    runtime: Option<SessionSettings>,
    seed: u64,
}

impl Evaluator for CostEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let config = parse_config(&ctx.config)?;
        let runtime = match config.latency {
            Some(_) => {
                // The host resolved the library; fail at study start, not on the first
                // candidate, when it is missing or unusable.
                let settings = ctx.runtime.session_settings()?;
                nas_runtime::init(&settings.library)?;
                Some(settings)
            }
            None => None,
        };
        Ok(CostEvaluator {
            config,
            runtime,
            seed: ctx.seed,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let graph = &req.graph;
        let mut metrics = Metrics::new();
        let count = |what: &str, r: Result<u64, nas_graph::GraphError>| {
            r.map(|v| v as f64)
                .map_err(|e| format!("cost evaluator: cannot count {what}: {e}"))
        };
        metrics.insert("params".into(), count("parameters", graph.param_count())?);
        metrics.insert("flops".into(), count("FLOPs", graph.flops())?);
        let mut details = Value::Null;
        if let (Some(cfg), Some(runtime)) = (&self.config.latency, &self.runtime) {
            let latency = measure_latency(graph, cfg, runtime, self.seed)?;
            metrics.insert("latency_ms".into(), latency.median_ms);
            metrics.insert("latency_p90_ms".into(), latency.p90_ms);
            details = json!({
                "latency": {
                    "provider": latency.provider,
                    "batch": cfg.batch,
                    "runs": cfg.runs,
                    "warmup": cfg.warmup,
                }
            });
        }
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details,
        })
    }
}

nas_plugin::export_evaluator!("cost", CostEvaluator);

#[cfg(test)]
mod tests;
