//! RL evaluator: trains each candidate as a policy network with REINFORCE inside ONNX Runtime
//! on a classic-control environment (`nas-rl`: CartPole-v1 or Acrobot-v1) and reports how
//! well the trained policy does. Needs no `[data]`.
//!
//! ```toml
//! [space]
//! kind = "mlp"
//! input = [4]                   # the environment's observation size (CartPole 4, Acrobot 6)
//! classes = 2                   # its number of actions (CartPole 2, Acrobot 3)
//!
//! [[evaluator]]
//! plugin = "rl"
//! env = "cartpole"              # or "acrobot"
//! iterations = 100              # policy-gradient steps; a request's fidelity replaces it
//! episodes_per_iteration = 8    # episodes run with the current policy per step (>= 2)
//! gamma = 0.99                  # discount of the returns
//! lr = 0.01
//! optimizer = "adamw"           # or "sgd" (momentum 0.9)
//! entropy_bonus = 0.0           # coefficient of the policy's entropy in the loss
//! normalize_advantages = true   # divide advantages by their root mean square
//! eval_episodes = 100
//! eval_policy = "greedy"        # or "sampled"
//! seed = 0                      # default: the study's seed
//! ```
//!
//! Training: each iteration exports the current weights to an inference model and runs
//! `episodes_per_iteration` episodes at once (one ONNX Runtime call per time step for every
//! running episode), drawing each action from the softmax of the logits. Every (observation,
//! action) pair at step `t` gets the discounted return from `t` on less the baseline of step
//! `t` (the mean of that return over the batch's episodes that reached `t`), divided by the
//! advantages' root mean square (`normalize_advantages`); one step of nas-graph's training
//! graph with per-sample loss weights then minimizes
//! `sum_i A_i CE(logits_i, a_i) / N` (minus `entropy_bonus` times the mean entropy): the
//! REINFORCE gradient. Dropout is active in the steps, not when acting.
//!
//! Metrics:
//! - `mean_return`: mean undiscounted return of the trained policy over `eval_episodes`
//!   episodes, with the most likely action (`eval_policy = "greedy"`, the default) or sampled
//!   actions (`"sampled"`). The evaluation episodes start from other initial states than the
//!   training ones.
//! - `solved`: 1 when `mean_return` reaches the environment's threshold (CartPole-v1 475,
//!   Acrobot-v1 -100), else 0.
//! - `train_episodes`: episodes trained on; `iterations`: steps taken; `train_return`: mean
//!   return of the last iteration's (sampled) episodes; `rl_seconds`: wall time of training
//!   and evaluation.
//!
//! The trial's details hold the per-iteration curve (mean return, steps, loss), every
//! evaluation episode's return, the seeds and the threshold.
//!
//! The output layer starts at 1/100 of its He scale (see [`reinforce::initial_weights`]), so
//! the first policy explores. Policies with BatchNorm do poorly here: they learn with batch
//! statistics and act with running ones.
//!
//! Determinism: weights, initial states, sampled actions and dropout masks all come from
//! `seed` (by default the study's seed, the same for every trial, so every candidate meets
//! the same episodes), so a seed and a network give the same metrics on the CPU provider.

pub mod config;
pub mod learner;
pub mod policy;
pub mod reinforce;
pub mod returns;
pub mod rollout;

use std::time::Instant;

use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use nas_runtime::SessionSettings;
use serde_json::json;

pub use config::{EvalPolicy, RlConfig};

pub struct RlEvaluator {
    config: RlConfig,
    runtime: SessionSettings,
    /// The study's seed: the default of `seed`.
    seed: u64,
}

impl Evaluator for RlEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let config = RlConfig::parse(&ctx.config)?;
        // The host resolved the library; fail at study start, not on the first candidate.
        let runtime = ctx.runtime.session_settings()?;
        nas_runtime::init(&runtime.library)?;
        Ok(RlEvaluator {
            config,
            runtime,
            seed: ctx.seed,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let started = Instant::now();
        let cfg = &self.config;
        let iterations = config::requested_iterations(req.fidelity, cfg.iterations)?;
        let seed = cfg.seed.unwrap_or(self.seed);
        let outcome = reinforce::train(&req.graph, cfg, iterations, seed, &self.runtime)?;
        let threshold = nas_rl::by_name(&cfg.env)?.reward_threshold();
        let mean_return = reinforce::mean(outcome.eval_returns.iter().copied());
        let mut metrics = Metrics::new();
        metrics.insert("mean_return".into(), mean_return);
        metrics.insert(
            "solved".into(),
            if mean_return >= threshold { 1.0 } else { 0.0 },
        );
        metrics.insert("train_episodes".into(), outcome.train_episodes as f64);
        let last = outcome.curve.last().map_or(0.0, |s| s.mean_return);
        metrics.insert("train_return".into(), last);
        metrics.insert("iterations".into(), iterations as f64);
        metrics.insert("rl_seconds".into(), started.elapsed().as_secs_f64());
        let details = json!({
            "env": cfg.env,
            "eval_policy": cfg.eval_policy.name(),
            "eval_episodes": cfg.eval_episodes,
            "eval_seed": reinforce::eval_seed(seed),
            "threshold": threshold,
            "seed": seed,
            "curve": outcome.curve,
            "eval_returns": outcome.eval_returns,
        });
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details,
        })
    }
}

nas_plugin::export_evaluator!("rl", RlEvaluator);

#[cfg(test)]
mod tests;
