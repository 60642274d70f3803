//! The one error type of this crate.

use std::path::PathBuf;

use nas_data::DataError;
use nas_graph::GraphError;
use nas_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training config: `{key}` {reason}")]
    Config { key: String, reason: String },
    /// A non-finite loss; `epoch` and `step` are 1-based (step within the epoch).
    #[error(
        "training diverged at epoch {epoch} step {step} (loss {loss}); lower `lr` or use `optimizer = \"adamw\"`"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f32,
    },
    #[error("the network does not fit the data: {0}")]
    Mismatch(String),
    #[error("{during}: {source}")]
    Graph {
        during: &'static str,
        source: GraphError,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// ONNX Runtime failed while running a model; the reason is its message.
    #[error("ONNX Runtime failed while {during}: {reason}")]
    Ort { during: String, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// The caller could not store the final phase's progress.
    #[error("cannot store the final report: {0}")]
    Report(String),
    /// An earlier error (such as divergence) left the trainer without a usable state.
    #[error("the trainer cannot continue after an earlier error: {0}")]
    Poisoned(String),
}

impl TrainError {
    pub(crate) fn graph(during: &'static str) -> impl FnOnce(GraphError) -> TrainError {
        move |source| TrainError::Graph { during, source }
    }
}
