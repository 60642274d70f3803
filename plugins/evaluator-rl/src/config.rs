//! The evaluator's TOML table (as JSON) -> [`RlConfig`]. Unknown keys and bad values are
//! errors that name the key (and list the accepted keys).

use nas_graph::train::Optimizer;
use nas_plugin::kit::options::{self, parse_options};
use serde::Deserialize;

/// Prefix of every configuration error.
pub const NAME: &str = "rl evaluator";

/// Which policy the evaluation episodes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalPolicy {
    /// The most likely action (ties: the lowest action).
    Greedy,
    /// An action drawn from the softmax, as in training.
    Sampled,
}

impl EvalPolicy {
    pub fn name(self) -> &'static str {
        match self {
            EvalPolicy::Greedy => "greedy",
            EvalPolicy::Sampled => "sampled",
        }
    }
}

/// The optimizer of the policy-gradient steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// PyTorch's `AdamW` (betas 0.9, 0.999, eps 1e-8), no weight decay.
    Adamw,
    /// PyTorch's `SGD` with momentum 0.9.
    Sgd,
}

impl OptimizerKind {
    pub fn optimizer(self) -> Optimizer {
        match self {
            OptimizerKind::Adamw => Optimizer::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            OptimizerKind::Sgd => Optimizer::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
        }
    }
}

/// `[[evaluator]] plugin = "rl"`: every key is optional.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// `"cartpole"` (CartPole-v1) or `"acrobot"` (Acrobot-v1).
    pub env: String,
    /// Policy-gradient steps (one per batch of episodes); a request's fidelity replaces it.
    #[serde(deserialize_with = "options::positive_int")]
    pub iterations: usize,
    /// Episodes run with the current policy before each step; at least 2 (the baseline
    /// compares them).
    #[serde(deserialize_with = "options::positive_int")]
    pub episodes_per_iteration: usize,
    /// Discount of the returns, in (0, 1].
    #[serde(deserialize_with = "options::fraction")]
    pub gamma: f64,
    #[serde(deserialize_with = "options::positive_number")]
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// Coefficient of the policy's mean entropy subtracted from the loss (>= 0).
    pub entropy_bonus: f64,
    /// Divide the advantages (returns less the time-step baseline) by their root mean square.
    pub normalize_advantages: bool,
    /// Weights, episodes and action draws; default: the study's seed (the same for every
    /// trial, so architectures are compared on the same episodes).
    #[serde(deserialize_with = "options::non_negative_int")]
    pub seed: Option<u64>,
    /// Episodes of the final evaluation.
    #[serde(deserialize_with = "options::positive_int")]
    pub eval_episodes: usize,
    pub eval_policy: EvalPolicy,
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            env: "cartpole".into(),
            iterations: 100,
            episodes_per_iteration: 8,
            gamma: 0.99,
            lr: 0.01,
            optimizer: OptimizerKind::Adamw,
            entropy_bonus: 0.0,
            normalize_advantages: true,
            seed: None,
            eval_episodes: 100,
            eval_policy: EvalPolicy::Greedy,
        }
    }
}

impl RlConfig {
    /// Reads and checks the table (`null` is an empty table).
    pub fn parse(table: &serde_json::Value) -> Result<RlConfig, String> {
        let c: RlConfig = parse_options(NAME, table)?;
        if !nas_rl::ENV_NAMES.contains(&c.env.as_str()) {
            return Err(format!(
                "{NAME} option `env` is `{}`; known environments: {}",
                c.env,
                nas_rl::ENV_NAMES.join(", ")
            ));
        }
        options::check(
            NAME,
            "episodes_per_iteration",
            c.episodes_per_iteration >= 2,
            "at least 2 (the baseline of a step is the mean return of the episodes that reached it, so one episode alone teaches nothing)",
            c.episodes_per_iteration,
        )?;
        options::check(
            NAME,
            "entropy_bonus",
            c.entropy_bonus.is_finite() && c.entropy_bonus >= 0.0,
            "a number >= 0",
            c.entropy_bonus,
        )?;
        Ok(c)
    }
}

/// Iterations of a request: its fidelity rounded up, or the configured `iterations`.
pub fn requested_iterations(fidelity: Option<f64>, default: usize) -> Result<usize, String> {
    match fidelity {
        None => Ok(default),
        Some(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(f.ceil() as usize),
        Some(f) => Err(format!(
            "{NAME}: fidelity {f} is not a positive number of iterations"
        )),
    }
}
