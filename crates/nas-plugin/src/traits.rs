//! The plain Rust traits plugin authors implement. No abi_stable type appears here.

#[cfg(feature = "evaluator")]
use crate::messages::{EvalRequest, EvalResult, EvaluatorContext};
use crate::messages::{Observation, Proposal, StrategyContext};

/// Any error a plugin returns; `"message".into()` and `?` on std errors both work.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// A search strategy: proposes candidates (`ask`) and learns from finished trials (`tell`).
///
/// Contract enforced by the host:
/// - `ask(n)` returns at most `n` proposals, each with one in-range value per choice of
///   `ctx.space`; returning none is allowed (the host then waits for running trials or asks
///   another strategy, it does not spin). The study engine asks for one proposal at a time.
/// - `tell` receives every finished trial of the study, including those proposed by other
///   strategies (`proposer` names the strategy that asked for it), one observation per call.
///   Evaluated trials are told in proposal (submission) order, not completion order: results
///   are taken back oldest first. A trial answered without evaluation (infeasible,
///   undecodable) is told at once, possibly before earlier proposals still running.
/// - A proposal equal to an already evaluated candidate is a duplicate: it is not evaluated
///   again, and only the asking strategy is told the cached result, with the original
///   trial's id and state, its own proposed `values`, and itself as `proposer` (when the
///   original is still running, right after the original is told). So a `trial_id` can be
///   told more than once; a strategy that counts trials keys them accordingly.
/// - With `workers = 1`, the result of each proposal is told before the next `ask`.
/// - `save` returns the complete state and `restore` brings a fresh instance (created with
///   the same context) back to it, so a resumed study continues the same search. The state
///   is stored as JSON text: see [`kit::state`](crate::kit::state) for what does not survive
///   that as is.
///
/// [`conformance::check`](crate::conformance::check) tests a strategy against this contract.
pub trait Strategy: Send + 'static {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError>
    where
        Self: Sized;
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError>;
    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError>;
    fn save(&self) -> Result<serde_json::Value, PluginError>;
    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError>;
}

/// An evaluator: turns a candidate network into metrics. Needs the `evaluator` feature.
#[cfg(feature = "evaluator")]
pub trait Evaluator: Send + 'static {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError>
    where
        Self: Sized;
    fn evaluate(&mut self, request: &EvalRequest) -> Result<EvalResult, PluginError>;

    /// Learns from the study's finished trials (every state, with the metrics the whole
    /// pipeline produced), e.g. to rank candidates by a model of the study's own results.
    ///
    /// The host calls it before an evaluation with the trials finished since the last call,
    /// each trial once per instance, in the order they finished; a fresh instance (a resumed
    /// study, a new worker) first gets every trial finished so far. Its first call may be
    /// empty. Return whether to go on receiving them: the default says no at the first call,
    /// so evaluators that do not learn cost nothing. With several workers, a trial may still be
    /// running elsewhere when its successor is evaluated, so what is observed before an
    /// evaluation depends on timing; with one worker it does not.
    fn observe(&mut self, trials: &[Observation]) -> Result<bool, PluginError> {
        let _ = trials;
        Ok(false)
    }
}
