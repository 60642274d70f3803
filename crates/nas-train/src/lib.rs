//! Training of candidate networks inside a stock ONNX Runtime.
//!
//! - [`TrainConfig`]: epochs, batch, optimizer (SGD / AdamW), LR schedule, regularization.
//! - [`Trainer`]: builds the training-step graph (nas-graph's autodiff) and an ORT session,
//!   then runs epochs with double-buffered I/O binding ([`StepIo`]); validates through a
//!   plain inference session after each epoch; reports [`EpochStats`]; stops with
//!   [`TrainError::Diverged`] on a non-finite loss.
//! - [`TrainCheckpoint`]: save / resume with bit-for-bit continuation.
//! - [`Trainer::export`]: deployable ONNX taking raw data values, plus `<model>.json`;
//!   [`Trainer::evaluate`]: metrics through that same model.
//! - Every data kind trains the same way: batches reach the network in its per-sample shape
//!   ([`nas_data::Dataset::network_batch`]: `[N, C, H, W]`, `[N, T, F]`, `[N, T]` for token
//!   ids); crops and flips are refused for tables and sequences; exported models normalize
//!   image channels and sequence features themselves and take token ids as they are.
//! - [`TrainTable`]: the `train` evaluator's table (the recipe plus the evaluator's own keys),
//!   read by the evaluator and the final phase alike.
//! - [`retrain`]: the final phase's training (retrain the best, test, export, ensemble).
//! - [`oneshot`]: one-shot search (DARTS, DARTS-, GDAS, SPOS) of a supernet.
//! - [`write_atomic`]: model files are replaced, never truncated.

mod checkpoint;
mod config;
mod error;
mod eval;
mod export;
mod files;
mod nchwc;
pub mod oneshot;
mod recipe;
pub mod retrain;
mod runner;
mod schedule;
mod step_api;
mod tensor_file;
mod trainer;

pub use checkpoint::{CHECKPOINT_VERSION, TrainCheckpoint};
pub use config::{OptimizerKind, Schedule, TrainConfig};
pub use error::TrainError;
pub use eval::{Evaluation, RegressionErrors};
pub use export::{
    Dim, ExportInfo, TensorInfo, description_path, evaluate_model, probabilities_accuracy,
};
pub use files::write_atomic;
pub use recipe::{EVALUATOR_KEYS, TrainTable};
pub use runner::StepIo;
pub use schedule::LrSchedule;
pub use trainer::{DataFingerprint, EVAL_BATCH, EpochStats, Trainer};
