//! The plain Rust traits plugin authors implement. No abi_stable type appears here.

use crate::messages::{
    EvalRequest, EvalResult, EvaluatorContext, Observation, Proposal, StrategyContext,
};

/// Any error a plugin returns; `"message".into()` and `?` on std errors both work.
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;

/// A search strategy: proposes candidates (`ask`) and learns from finished trials (`tell`).
///
/// Contract enforced by the host:
/// - `ask(n)` returns at most `n` proposals, each with one in-range value per choice of
///   `ctx.space`; returning none is allowed (the host then waits for running trials or asks
///   another strategy, it does not spin).
/// - `tell` receives every finished trial of the study, including those proposed by other
///   strategies and duplicates answered from the cache, exactly once each, in completion order.
/// - `save` returns the complete state and `restore` brings a fresh instance (created with
///   the same context) back to it, so a resumed study continues the same search.
pub trait Strategy: Send + 'static {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError>
    where
        Self: Sized;
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError>;
    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError>;
    fn save(&self) -> Result<serde_json::Value, PluginError>;
    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError>;
}

/// An evaluator: turns a candidate network into metrics.
pub trait Evaluator: Send + 'static {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError>
    where
        Self: Sized;
    fn evaluate(&mut self, request: &EvalRequest) -> Result<EvalResult, PluginError>;
}
