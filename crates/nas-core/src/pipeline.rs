//! The evaluator pipeline: evaluators run in the order given, each seeing the metrics of the
//! ones before; a violated constraint, a pruned result or an error stops the pipeline.

use nas_graph::{Graph, Supernet};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::EvaluatorHandle;
use nas_plugin::{EvalRequest, EvalStatus, EvaluatorContext, Metrics, RuntimeSettings, TrialState};

use crate::config::{Constraint, EvaluatorSpec};
use crate::finished::FinishedTrials;
use crate::plugins;
use crate::space::{SearchSpace, SpaceError};
use crate::storage::Outcome;

pub struct Pipeline {
    evaluators: Vec<EvaluatorHandle>,
    constraints: Vec<Constraint>,
    builds: PluginBuilds,
    /// The finished trials evaluators observe, and how far this pipeline has read them.
    finished: FinishedTrials,
    read: usize,
    /// Per evaluator: whether it still wants finished trials (see `Evaluator::observe`).
    observing: Vec<bool>,
}

/// Each evaluator plugin of a pipeline (as the config names it) with the SHA-256 of its
/// library file: workers compare theirs with the coordinator's before claiming a trial.
pub type PluginBuilds = std::collections::BTreeMap<String, String>;

/// The builds of the evaluator plugins `specs` name, without creating any evaluator.
pub fn plugin_builds(specs: &[EvaluatorSpec]) -> anyhow::Result<PluginBuilds> {
    let mut builds = PluginBuilds::new();
    for spec in specs {
        let library = plugins::load(PluginKind::Evaluator, &spec.plugin)
            .map_err(|e| anyhow::anyhow!("[[evaluator]] at {}: {e}", spec.location))?;
        builds.insert(spec.plugin.clone(), build_digest(&library.path)?);
    }
    Ok(builds)
}

/// The SHA-256 of a plugin library, in hex.
fn build_digest(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read plugin {}: {e}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The supernet evaluators are given (`EvaluatorContext::supernet`): the space's one-shot
/// supernet without auxiliary skips, or `None` for a space that has none.
pub fn evaluator_supernet(space: &dyn SearchSpace) -> anyhow::Result<Option<Supernet>> {
    match space.supernet(false) {
        Ok(s) => Ok(Some(s)),
        Err(SpaceError::NoSupernet { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot build the space's supernet: {e}")),
    }
}

/// Metrics the core computes itself from the IR, before any evaluator runs.
pub fn static_metrics(graph: &Graph) -> Result<Metrics, String> {
    let params = graph.param_count().map_err(|e| e.to_string())?;
    let flops = graph.flops().map_err(|e| e.to_string())?;
    Ok(Metrics::from([
        ("params".to_string(), params as f64),
        ("flops".to_string(), flops as f64),
    ]))
}

/// First violated constraint among those whose metric is known.
pub fn violation(constraints: &[Constraint], metrics: &Metrics) -> Option<String> {
    constraints
        .iter()
        .filter_map(|c| metrics.get(&c.metric).and_then(|v| c.violation(*v)))
        .next()
}

/// Constrained metrics absent from `metrics`.
pub fn unmeasured_constraints<'a>(
    constraints: &'a [Constraint],
    metrics: &Metrics,
) -> Vec<&'a str> {
    constraints
        .iter()
        .filter(|c| !metrics.contains_key(&c.metric))
        .map(|c| c.metric.as_str())
        .collect()
}

/// The error of a candidate that went through every evaluator without some constrained metric
/// being measured.
pub fn unmeasured_error(constraints: &[Constraint], metrics: &Metrics) -> Option<String> {
    let unmeasured = unmeasured_constraints(constraints, metrics);
    (!unmeasured.is_empty()).then(|| {
        format!(
            "no evaluator produced the constrained metric(s) {}; produced: {}",
            unmeasured.join(", "),
            metrics.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

impl Pipeline {
    /// Loads and creates every evaluator of the config; `supernet` is the space's (see
    /// [`evaluator_supernet`]). Evaluators observe the trials of `finished` (see
    /// [`Pipeline::run`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        specs: &[EvaluatorSpec],
        constraints: &[Constraint],
        runtime: &RuntimeSettings,
        seed: u64,
        study_dir: &str,
        data: &serde_json::Value,
        supernet: Option<&Supernet>,
        finished: FinishedTrials,
    ) -> anyhow::Result<Pipeline> {
        let mut evaluators = Vec::new();
        let mut builds = PluginBuilds::new();
        for spec in specs {
            let library = plugins::load(PluginKind::Evaluator, &spec.plugin)
                .map_err(|e| anyhow::anyhow!("[[evaluator]] at {}: {e}", spec.location))?;
            builds.insert(spec.plugin.clone(), build_digest(&library.path)?);
            let ctx = EvaluatorContext {
                config: spec.config.clone(),
                runtime: runtime.clone(),
                seed,
                study_dir: study_dir.to_string(),
                data: data.clone(),
                supernet: supernet.cloned(),
            };
            let handle = library
                .create_evaluator(&ctx)
                .map_err(|e| anyhow::anyhow!("[[evaluator]] at {}: {e}", spec.location))?;
            evaluators.push(handle);
        }
        Ok(Pipeline {
            observing: vec![true; evaluators.len()],
            evaluators,
            constraints: constraints.to_vec(),
            builds,
            finished,
            read: 0,
        })
    }

    /// The log of finished trials this pipeline's evaluators observe.
    pub fn finished(&self) -> &FinishedTrials {
        &self.finished
    }

    /// Whether some evaluator still observes finished trials (before the first run: may).
    pub fn observes(&self) -> bool {
        self.observing.contains(&true)
    }

    /// Shows the observing evaluators the trials finished since the last call.
    fn observe(&mut self) -> Result<(), String> {
        if !self.observes() {
            return Ok(());
        }
        let trials = self.finished.since(self.read);
        self.read += trials.len();
        for (evaluator, observing) in self.evaluators.iter_mut().zip(&mut self.observing) {
            if *observing {
                *observing = evaluator.observe(&trials).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// The plugin builds this pipeline runs.
    pub fn builds(&self) -> &PluginBuilds {
        &self.builds
    }

    /// Runs every stage on one candidate, after showing the evaluators that observe them the
    /// trials finished since the last run. Never fails: problems become the trial's outcome.
    pub fn run(&mut self, mut request: EvalRequest) -> Outcome {
        let mut details = serde_json::Map::new();
        if let Err(e) = self.observe() {
            return Outcome {
                state: TrialState::Failed,
                metrics: request.metrics,
                details: serde_json::Value::Object(details),
                error: Some(e),
            };
        }
        for evaluator in &mut self.evaluators {
            let name = evaluator.name().to_string();
            let result = match evaluator.evaluate(&request) {
                Ok(r) => r,
                Err(e) => {
                    return Outcome {
                        state: TrialState::Failed,
                        metrics: request.metrics,
                        details: serde_json::Value::Object(details),
                        error: Some(e.to_string()),
                    };
                }
            };
            request.metrics.extend(result.metrics);
            if !result.details.is_null() {
                details.insert(name, result.details);
            }
            if let Some(why) = violation(&self.constraints, &request.metrics) {
                return Outcome {
                    state: TrialState::Infeasible,
                    metrics: request.metrics,
                    details: serde_json::Value::Object(details),
                    error: Some(why),
                };
            }
            if result.status == EvalStatus::Pruned {
                return Outcome {
                    state: TrialState::Pruned,
                    metrics: request.metrics,
                    details: serde_json::Value::Object(details),
                    error: None,
                };
            }
        }
        if let Some(error) = unmeasured_error(&self.constraints, &request.metrics) {
            return Outcome {
                state: TrialState::Failed,
                error: Some(error),
                metrics: request.metrics,
                details: serde_json::Value::Object(details),
            };
        }
        Outcome {
            state: TrialState::Complete,
            metrics: request.metrics,
            details: serde_json::Value::Object(details),
            error: None,
        }
    }
}
