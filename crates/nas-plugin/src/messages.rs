//! The messages exchanged between the host and plugins. They cross the ABI as JSON, so
//! plugin authors work with plain Rust types and the binary interface stays tiny.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metric name -> value, e.g. `params`, `flops`, `latency_ms`, `val_accuracy`.
pub type Metrics = BTreeMap<String, f64>;

/// One searchable decision of a search space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Stable name, e.g. `edge_2_1` or `stage3.kernel`.
    pub name: String,
    pub kind: ChoiceKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ChoiceKind {
    /// Value is an index `0..options.len()` into `options`.
    Categorical { options: Vec<String> },
    /// Value is an integer in `low..=high`.
    Integer { low: i64, high: i64 },
    /// Value is a real number in `low..=high`; `log` hints a log-uniform prior.
    Float { low: f64, high: f64, log: bool },
}

impl ChoiceKind {
    /// Number of distinct values, or `None` for continuous choices.
    pub fn cardinality(&self) -> Option<u64> {
        match self {
            ChoiceKind::Categorical { options } => Some(options.len() as u64),
            ChoiceKind::Integer { low, high } => Some((high - low + 1).max(0) as u64),
            ChoiceKind::Float { .. } => None,
        }
    }

    /// Checks one value against this choice; the message says what was expected.
    pub fn check(&self, value: f64) -> Result<(), String> {
        if !value.is_finite() {
            return Err(format!("value {value} is not a finite number"));
        }
        match self {
            ChoiceKind::Categorical { options } => {
                if value.fract() != 0.0 || value < 0.0 || value >= options.len() as f64 {
                    return Err(format!(
                        "value {value} is not an option index in 0..{}",
                        options.len()
                    ));
                }
            }
            ChoiceKind::Integer { low, high } => {
                if value.fract() != 0.0 || value < *low as f64 || value > *high as f64 {
                    return Err(format!("value {value} is not an integer in {low}..={high}"));
                }
            }
            ChoiceKind::Float { low, high, .. } => {
                if value < *low || value > *high {
                    return Err(format!("value {value} is outside {low}..={high}"));
                }
            }
        }
        Ok(())
    }
}

/// What a strategy sees of the search space: the named choices, in order. A candidate is one
/// value per choice (a "choice vector"); categorical values are option indices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceDescriptor {
    /// The space kind (`cell`, `chain`, ...), for strategies that want structure hints.
    pub kind: String,
    pub choices: Vec<Choice>,
}

impl SpaceDescriptor {
    /// Checks a proposal: right arity and every value in range.
    pub fn check(&self, values: &[f64]) -> Result<(), String> {
        if values.len() != self.choices.len() {
            return Err(format!(
                "proposal has {} values but the space has {} choices",
                values.len(),
                self.choices.len()
            ));
        }
        for (choice, &v) in self.choices.iter().zip(values) {
            choice
                .kind
                .check(v)
                .map_err(|e| format!("choice `{}`: {e}", choice.name))?;
        }
        Ok(())
    }

    /// Total number of candidates, if finite and representable.
    pub fn size(&self) -> Option<u64> {
        self.choices.iter().try_fold(1u64, |acc, c| {
            c.kind.cardinality().and_then(|n| acc.checked_mul(n))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Minimize,
    Maximize,
}

/// One objective of the study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

/// Everything a strategy is created with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StrategyContext {
    pub space: SpaceDescriptor,
    pub objectives: Vec<Objective>,
    /// Seed for this strategy instance; derived from the study seed and its position.
    pub seed: u64,
    /// The strategy's own table from the TOML (`population = 20`, ...), as JSON.
    pub config: serde_json::Value,
}

/// A candidate a strategy wants evaluated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// One value per choice of the space descriptor.
    pub values: Vec<f64>,
    /// Requested fidelity (e.g. epochs) for multi-fidelity strategies; `None` = evaluator default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<f64>,
    /// The trial this candidate was derived from (e.g. the evaluated trial it mutates), so an
    /// evaluator may start it from that trial's trained weights; `None` for fresh candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Pending,
    Running,
    Complete,
    Failed,
    Pruned,
    Infeasible,
}

impl TrialState {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Failed => "failed",
            TrialState::Pruned => "pruned",
            TrialState::Infeasible => "infeasible",
        }
    }

    pub fn parse(s: &str) -> Option<TrialState> {
        Some(match s {
            "pending" => TrialState::Pending,
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "failed" => TrialState::Failed,
            "pruned" => TrialState::Pruned,
            "infeasible" => TrialState::Infeasible,
            _ => return None,
        })
    }

    /// A finished trial never runs again.
    pub fn is_finished(self) -> bool {
        !matches!(self, TrialState::Pending | TrialState::Running)
    }
}

/// A finished trial, told to every strategy of the study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub trial_id: u64,
    pub values: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<f64>,
    pub state: TrialState,
    /// Objective values in study order, oriented so that LOWER IS BETTER (maximized metrics are
    /// negated). Empty unless `state` is `complete`.
    pub losses: Vec<f64>,
    pub metrics: Metrics,
    /// Name of the strategy that proposed the trial.
    pub proposer: String,
}

/// Execution settings shared by every evaluator of a study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeSettings {
    /// `cpu`, `cuda`, `tensorrt`, ...
    pub execution_provider: String,
    /// Provider to use when `execution_provider` is unavailable; `None` makes that an error.
    pub fallback: Option<String>,
    /// Intra-op threads for ONNX Runtime sessions.
    pub threads: usize,
    /// Path of the ONNX Runtime shared library, resolved by the host.
    pub ort_library: Option<String>,
}

#[cfg(feature = "runtime")]
impl RuntimeSettings {
    /// The ONNX Runtime session settings these name (the library path is the host's).
    pub fn session_settings(
        &self,
    ) -> Result<nas_runtime::SessionSettings, nas_runtime::RuntimeError> {
        nas_runtime::SessionSettings::from_names(
            &self.execution_provider,
            self.fallback.as_deref(),
            self.threads,
            self.ort_library.as_deref().map(std::path::Path::new),
        )
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            execution_provider: "cpu".into(),
            fallback: None,
            threads: 1,
            ort_library: None,
        }
    }
}

/// Everything an evaluator is created with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvaluatorContext {
    /// The evaluator's own table from the TOML, as JSON.
    pub config: serde_json::Value,
    pub runtime: RuntimeSettings,
    pub seed: u64,
    /// Folder where the evaluator may write artifacts (models, curves).
    pub study_dir: String,
    /// The study's `[data]` table (see nas-data's `DataConfig`), with paths resolved; `null`
    /// when the study has none.
    #[serde(default)]
    pub data: serde_json::Value,
    /// The study space's one-shot supernet (SPOS evaluators score paths of it); `None` when
    /// the space has none. Evaluator side only, like [`EvalRequest`]; absent from the JSON
    /// when `None`, so plugins built before it read the context as before.
    #[cfg(feature = "evaluator")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supernet: Option<nas_graph::Supernet>,
}

/// One candidate to evaluate. Evaluator side only: it carries the network, so it needs the
/// `evaluator` feature (and nas-graph).
#[cfg(feature = "evaluator")]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRequest {
    pub trial_id: u64,
    pub values: Vec<f64>,
    /// Human-readable architecture (the NB201 string for the `cell` space).
    pub arch: String,
    pub graph: nas_graph::Graph,
    #[serde(default)]
    pub fidelity: Option<f64>,
    /// Metrics produced so far by the core (`params`, `flops`) and earlier pipeline stages.
    pub metrics: Metrics,
    /// The completed trial the candidate was derived from, when its proposer named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
}

/// The trial a candidate was derived from: its id, canonical hash and network.
#[cfg(feature = "evaluator")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParentRef {
    pub trial_id: u64,
    /// Canonical hash of the parent's network (the key of its kept checkpoint).
    pub hash: String,
    pub graph: nas_graph::Graph,
}

/// How an evaluation ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalStatus {
    /// Metrics are valid; later pipeline stages run.
    #[default]
    Ok,
    /// The evaluator stopped the candidate early (e.g. a cascade's cheap stage); later stages
    /// do not run and the trial is recorded as `pruned`.
    Pruned,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalResult {
    pub metrics: Metrics,
    #[serde(default)]
    pub status: EvalStatus,
    /// Free-form details kept with the trial (curves, file names).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}
