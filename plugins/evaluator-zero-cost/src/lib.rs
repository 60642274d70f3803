//! Zero-cost evaluator: training-free scores of a candidate network, computed with ONNX
//! Runtime on one batch, all reported as metrics (higher is better for each):
//!
//! | metric        | what                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | `params`      | trainable parameters (`Graph::param_count`)                            |
//! | `flops`       | FLOPs of one sample (`Graph::flops`, or `Graph::flops_naslib`)         |
//! | `naswot`      | log-determinant of the ReLU-code Hamming kernel (Mellor et al. 2021)   |
//! | `synflow`     | sum of `|w * dR/dw|`, `R` the output sum at `|w|`, ones input (Tanaka et al. 2020) |
//! | `grad_norm`   | sum over weights of the L2 norm of the cross-entropy gradient          |
//! | `snip`        | sum over weights of `|w * dL/dw|` (Lee et al. 2019)                    |
//! | `jacob_cov`   | Jacobian covariance score (Mellor et al. 2020, NASLib's `jacov`)       |
//! | `zen`         | Zen-score (Lin et al. 2021)                                            |
//! | `zc_combined` | `naswot / batch + ln(synflow) / 10 + ln(params)`, see [`combined`]     |
//!
//! Per-weight sums run over conv and linear weights, as in NASLib. Data-dependent proxies
//! (naswot, grad_norm, snip, jacob_cov) use one batch of the study's training data (`[data]`)
//! or of Gaussian inputs with random labels, at He-initialised weights, BatchNorm in training
//! mode; the same batch and weights seed serve every candidate, so scores are comparable.
//! How each proxy is computed and what differs from the reference code is documented in
//! [`proxies`]. A score of minus infinity (a singular kernel, a network whose output ignores
//! its input) is reported as [`proxies::DEGENERATE`]. A proxy that cannot apply to a network
//! is skipped with its reason in the details (an error only when it was asked for by name):
//! `jacob_cov` needs image inputs, `zen` a global average pool, `naswot` a ReLU, and
//! `synflow` inputs it can scale (not token ids). Sequence networks are scored in their own
//! input shape, on random ids below the vocabulary when they take token ids.
//!
//! ```toml
//! [[evaluator]]
//! plugin = "zero-cost"
//! proxies = ["naswot", "synflow", "params"]   # default: all
//! batch = 64                                  # samples of the scoring batch (>= 2)
//! seed = 0                                    # default: the study seed
//! data = "real"                               # or "random"; default: real if [data] exists
//! # Cascade: prune candidates that score badly, so later (expensive) evaluators skip them.
//! keep_top = 0.5          # keep the best half of what was seen so far ...
//! # threshold = 400.0     # ... or everything scoring at least this
//! rank_by = "zc_combined" # the metric both rules read (default zc_combined), or "learned"
//! warmup = 10             # candidates seen before anything is pruned
//! flops_convention = "nb201"  # or "naslib": count FLOPs as NASLib's zero-cost data does
//! # With rank_by = "learned" (keep_top only):
//! # label = "val_accuracy"  # metric learned, higher is better (default: the first objective)
//! # min_labels = 20         # labelled trials before the model ranks (zc_combined until then)
//! # learn_choices = true    # the candidate's choice values are features too
//! ```
//!
//! The cascade ranks a candidate among every candidate of the study it knows of: those it
//! scored and those it is shown as finished trials ([`Evaluator::observe`]), by trial id. So a
//! resumed study ranks as it did before it stopped, and several workers rank among the same
//! trials (each as far as they have finished when it scores).
//!
//! `rank_by = "learned"` ranks by a model of the study's own results: gradient-boosted trees
//! ([`boost`]) fitted on the complete trials' proxies (and choice values) against the ranks of
//! their label, refitted whenever labels arrive; the candidate and everything seen are scored
//! with the current model. See [`ranking`].

pub mod boost;
pub mod cascade;
pub mod config;
pub mod init;
pub mod linalg;
pub mod proxies;
pub mod ranking;
pub mod surgery;

use std::time::Instant;

use nas_data::{DataConfig, Part};
use nas_graph::{Graph, Op};
use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, Observation,
    PluginError,
};
use nas_runtime::SessionSettings;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

pub use config::{Cascade, DataSource, FlopsConvention, Learn, Rule, ZeroCostConfig, parse_config};
use init::{Init, init_weights};
use proxies::Batch;
use ranking::Ranking;

/// `zc_combined`: `naswot / batch + ln(synflow) / 10 + ln(params)`. Each term is on a log
/// scale (NASWOT is a log-determinant, about `batch * ln(units)`), so the sum is a log of a
/// product of the three; the weights put their spreads over NB201 on a par (about 3, 10 and
/// 3 before weighting). A zero synflow or param count counts as `ln(1) = 0`.
pub fn combined(naswot: f64, synflow: f64, params: f64, batch: usize) -> f64 {
    naswot / batch as f64 + synflow.max(1.0).ln() / 10.0 + params.max(1.0).ln()
}

/// The batch data-dependent proxies score on.
enum Inputs {
    /// Loaded once from `[data]`; the sample shape and class count checked per candidate.
    Real {
        batch: Batch,
        shape: Vec<usize>,
        classes: usize,
    },
    Random,
}

pub struct ZeroCostEvaluator {
    config: ZeroCostConfig,
    /// Present when a proxy runs inside ONNX Runtime.
    runtime: Option<SessionSettings>,
    seed: u64,
    inputs: Inputs,
    /// The cascade's memory, when there is a cascade.
    ranking: Option<Ranking>,
}

fn fail(msg: impl std::fmt::Display) -> PluginError {
    format!("zero-cost evaluator: {msg}").into()
}

/// `batch` training samples of the study's data, drawn with `seed`, normalized as training
/// normalizes them.
fn real_batch(
    data: &Value,
    study_seed: u64,
    batch: usize,
    seed: u64,
) -> Result<Inputs, PluginError> {
    let cfg: DataConfig =
        serde_json::from_value(data.clone()).map_err(|e| fail(format!("[data]: {e}")))?;
    let split = nas_data::load(&cfg, study_seed).map_err(|e| fail(format!("[data]: {e}")))?;
    if split.data.task() == nas_data::Task::Regression {
        return Err(fail(
            "[data] is for regression (`task = \"regression\"`), but the proxies score \
             classifiers through their cross-entropy gradients; use the `train` evaluator",
        ));
    }
    let mut train = split.indices(Part::Train).to_vec();
    if train.len() < 2 {
        return Err(fail(format!(
            "the training split has {} samples; scoring needs at least 2",
            train.len()
        )));
    }
    train.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xDA7A));
    train.truncate(batch);
    let picked = split.data.select(&train);
    let mut images = picked.images;
    split.normalization.apply(&mut images);
    Ok(Inputs::Real {
        batch: Batch::from_samples(split.data.network_batch(images), &picked.labels),
        shape: split.sample_shape(),
        classes: split.classes(),
    })
}

/// Why `proxy` cannot score `graph`, if it cannot.
fn inapplicable(proxy: &str, graph: &Graph) -> Option<String> {
    if matches!(proxy, "params" | "flops") {
        return None;
    }
    let shapes = graph.shapes().ok()?;
    if shapes[graph.output].len() != 1 {
        return Some(format!(
            "the output {:?} is not a vector of logits",
            shapes[graph.output]
        ));
    }
    let has = |pred: fn(&Op) -> bool| !surgery::live_nodes(graph, pred).is_empty();
    match proxy {
        "zen" => {
            let pools = surgery::live_nodes(graph, |op| matches!(op, Op::GlobalAvgPool));
            match pools.last() {
                Some(&p) if graph.nodes[p].inputs[0] != 0 => None,
                _ => Some("the network has no global average pool after a layer".into()),
            }
        }
        "jacob_cov" if graph.input.len() != 3 => Some(format!(
            "the input {:?} is not an image [C, H, W]",
            graph.input
        )),
        // Its rescaling multiplies the input by tiny factors: ids cannot be scaled.
        "synflow" if !graph.input_ids().is_empty() => Some(
            "the input holds ids (token ids or category codes), which its scaled all-ones input cannot stand for"
                .into(),
        ),
        "naswot" if !has(|op| matches!(op, Op::Relu)) => Some("the network has no ReLU".into()),
        _ => None,
    }
}

impl ZeroCostEvaluator {
    /// The session settings; only proxies that run in ONNX Runtime ask, and `new` sets them
    /// up whenever such a proxy is configured.
    fn runtime(&self) -> Result<&SessionSettings, PluginError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| fail("internal: a proxy needs ONNX Runtime but it was not set up"))
    }

    fn batch_for(&self, graph: &Graph, classes: usize) -> Result<Batch, PluginError> {
        match &self.inputs {
            Inputs::Real {
                batch,
                shape,
                classes: data_classes,
            } => {
                if *shape != graph.input {
                    return Err(fail(format!(
                        "the network takes inputs {:?} but [data] has samples {shape:?}",
                        graph.input
                    )));
                }
                if classes < *data_classes {
                    return Err(fail(format!(
                        "the network has {classes} outputs but [data] has {data_classes} classes"
                    )));
                }
                Ok(batch.clone())
            }
            Inputs::Random => Ok(Batch::random_for(
                graph,
                self.config.batch,
                classes,
                self.seed ^ 0x1A9E,
            )),
        }
    }

    /// Every requested metric of one network, with per-proxy seconds and skipped proxies.
    pub fn score(&self, graph: &Graph) -> Result<(Metrics, Value), PluginError> {
        let cfg = &self.config;
        let mut metrics = Metrics::new();
        let mut seconds = Map::new();
        let mut skipped = Map::new();
        let mut wanted: Vec<&str> = Vec::new();
        for p in cfg.proxies.iter().map(String::as_str) {
            match inapplicable(p, graph) {
                None => wanted.push(p),
                Some(why) if cfg.explicit => {
                    return Err(fail(format!("cannot compute `{p}`: {why}")));
                }
                Some(why) => {
                    skipped.insert(p.to_string(), Value::String(why));
                }
            }
        }
        if wanted.contains(&"zc_combined")
            && config::COMBINED_FROM.iter().any(|p| !wanted.contains(p))
        {
            wanted.retain(|p| *p != "zc_combined");
            skipped.insert(
                "zc_combined".into(),
                "one of its ingredients cannot be computed".into(),
            );
        }
        let wants = |p: &str| wanted.contains(&p);
        let mut timed = |name: &str, started: Instant| {
            seconds.insert(name.into(), json!(started.elapsed().as_secs_f64()));
        };

        let count = |what: &str, r: Result<u64, nas_graph::GraphError>| {
            r.map(|v| v as f64)
                .map_err(|e| fail(format!("cannot count {what}: {e}")))
        };
        if wants("params") {
            metrics.insert("params".into(), count("parameters", graph.param_count())?);
        }
        if wants("flops") {
            let flops = match cfg.flops_convention {
                FlopsConvention::Nb201 => graph.flops(),
                FlopsConvention::Naslib => graph.flops_naslib(),
            };
            metrics.insert("flops".into(), count("FLOPs", flops)?);
        }

        let data_dependent = ["naswot", "grad_norm", "snip", "jacob_cov"];
        let (batch, weights) = if data_dependent.iter().any(|p| wants(p)) {
            let shapes = graph
                .shapes()
                .map_err(|e| fail(format!("invalid network: {e}")))?;
            let classes = shapes[graph.output].first().copied().unwrap_or(1);
            let weights = init_weights(graph, Init::He, self.seed)
                .map_err(|e| fail(format!("cannot initialise weights: {e}")))?;
            (Some(self.batch_for(graph, classes)?), Some(weights))
        } else {
            (None, None)
        };

        if wants("naswot") || wants("grad_norm") || wants("snip") {
            let started = Instant::now();
            let s = proxies::data_scores(
                graph,
                weights.as_ref().expect("made above"),
                batch.as_ref().expect("made above"),
                wants("naswot"),
                wants("grad_norm") || wants("snip"),
                self.runtime()?,
            )?;
            for (name, v) in [
                ("naswot", s.naswot),
                ("grad_norm", s.grad_norm),
                ("snip", s.snip),
            ] {
                if let (true, Some(v)) = (wants(name), v) {
                    metrics.insert(name.into(), v);
                }
            }
            timed("naswot+grad_norm+snip", started);
        }
        if wants("synflow") {
            let started = Instant::now();
            metrics.insert(
                "synflow".into(),
                proxies::synflow(graph, self.seed, self.runtime()?)?,
            );
            timed("synflow", started);
        }
        if wants("jacob_cov") {
            let started = Instant::now();
            let v = proxies::jacob_cov(
                graph,
                weights.as_ref().expect("made above"),
                batch.as_ref().expect("made above"),
                self.runtime()?,
            )?;
            metrics.insert("jacob_cov".into(), v);
            timed("jacob_cov", started);
        }
        if wants("zen") {
            let started = Instant::now();
            let v = proxies::zen(graph, cfg.batch, self.seed, self.runtime()?)?;
            metrics.insert("zen".into(), v);
            timed("zen", started);
        }
        if wants("zc_combined") {
            let b = batch.as_ref().map_or(cfg.batch, Batch::size);
            let v = combined(metrics["naswot"], metrics["synflow"], metrics["params"], b);
            metrics.insert("zc_combined".into(), v);
        }
        let mut details = json!({
            "batch": batch.as_ref().map_or(cfg.batch, Batch::size),
            "data": match self.inputs { Inputs::Real { .. } => "real", Inputs::Random => "random" },
            "seconds": seconds,
        });
        if !skipped.is_empty() {
            details["skipped"] = Value::Object(skipped);
        }
        Ok((metrics, details))
    }
}

impl Evaluator for ZeroCostEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let config = parse_config(&ctx.config)?;
        let seed = config.seed.unwrap_or(ctx.seed);
        let source = match config.data {
            Some(s) => s,
            None if ctx.data.is_null() => DataSource::Random,
            None => DataSource::Real,
        };
        let needs_data = ["naswot", "grad_norm", "snip", "jacob_cov"]
            .iter()
            .any(|p| config.wants(p));
        let inputs = match source {
            DataSource::Real if ctx.data.is_null() => {
                return Err(fail(
                    "`data = \"real\"` needs the study's [data] table; add one or set \
                     `data = \"random\"`",
                ));
            }
            DataSource::Real if needs_data => real_batch(&ctx.data, ctx.seed, config.batch, seed)?,
            _ => Inputs::Random,
        };
        let needs_runtime = config.proxies.iter().any(|p| p != "params" && p != "flops");
        let runtime = if needs_runtime {
            // The host resolved the library; fail at study start, not on the first
            // candidate, when it is missing or unusable.
            let settings = ctx.runtime.session_settings()?;
            nas_runtime::init(&settings.library)?;
            Some(settings)
        } else {
            None
        };
        let ranking = config
            .cascade
            .clone()
            .map(|c| Ranking::new(c, config.proxies.clone(), seed));
        Ok(ZeroCostEvaluator {
            config,
            runtime,
            seed,
            inputs,
            ranking,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let (metrics, mut details) = self.score(&req.graph)?;
        let mut status = EvalStatus::Ok;
        if let Some(ranking) = &mut self.ranking {
            let judged = ranking
                .judge(req.trial_id, &metrics, &req.values)
                .map_err(fail)?;
            if !judged.keep {
                status = EvalStatus::Pruned;
            }
            details["cascade"] = judged.details;
        }
        Ok(EvalResult {
            metrics,
            status,
            details,
        })
    }

    /// The cascade ranks among the study's finished trials too (and the learned ranking
    /// learns from them); without a cascade nothing is observed.
    fn observe(&mut self, trials: &[Observation]) -> Result<bool, PluginError> {
        match &mut self.ranking {
            Some(ranking) => {
                ranking.observe(trials);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

nas_plugin::export_evaluator!("zero-cost", ZeroCostEvaluator);

#[cfg(test)]
mod tests;
