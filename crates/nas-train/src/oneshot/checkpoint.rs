//! Supernet checkpoints: [`crate::tensor_file`] with magic `b"NASSUPER"`.

use std::path::Path;

use nas_graph::Supernet;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use super::{ArchParams, OneShotConfig, OneShotEpoch, SelectionDecision};
use crate::error::TrainError;
use crate::tensor_file::{self, TensorEntry};
use crate::trainer::DataFingerprint;

const MAGIC: &[u8; 8] = b"NASSUPER";
pub const ONESHOT_CHECKPOINT_VERSION: u32 = 1;

/// A one-shot search's complete state: supernet, settings, weights and optimizer buffers,
/// architecture logits with their Adam state, and the per-epoch history.
#[derive(Clone, Debug, PartialEq)]
pub struct OneShotCheckpoint {
    pub supernet: Supernet,
    pub config: OneShotConfig,
    pub data: DataFingerprint,
    /// Epochs completed.
    pub epoch: usize,
    /// Weight steps completed.
    pub step: u64,
    pub arch: ArchParams,
    pub history: Vec<OneShotEpoch>,
    /// Perturbation-based selection's decisions so far.
    pub decisions: Vec<SelectionDecision>,
    /// State tensors by the training step's state names.
    pub state: Vec<(String, ArrayD<f32>)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    supernet: Supernet,
    config: OneShotConfig,
    data: DataFingerprint,
    epoch: usize,
    step: u64,
    arch: ArchParams,
    history: Vec<OneShotEpoch>,
    /// Absent in checkpoints written before perturbation-based selection.
    #[serde(default)]
    decisions: Vec<SelectionDecision>,
    tensors: Vec<TensorEntry>,
}

impl OneShotCheckpoint {
    /// Writes the checkpoint atomically (a reader never sees a partial file).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let header = Header {
            supernet: self.supernet.clone(),
            config: self.config.clone(),
            data: self.data.clone(),
            epoch: self.epoch,
            step: self.step,
            arch: self.arch.clone(),
            history: self.history.clone(),
            decisions: self.decisions.clone(),
            tensors: tensor_file::entries(&self.state),
        };
        tensor_file::write(
            path,
            MAGIC,
            ONESHOT_CHECKPOINT_VERSION,
            &header,
            &self.state,
        )
    }

    pub fn load(path: &Path) -> Result<OneShotCheckpoint, TrainError> {
        let (h, state) = tensor_file::read(
            path,
            MAGIC,
            ONESHOT_CHECKPOINT_VERSION,
            "a supernet checkpoint",
            |h: &Header| &h.tensors,
        )?;
        Ok(OneShotCheckpoint {
            supernet: h.supernet,
            config: h.config,
            data: h.data,
            epoch: h.epoch,
            step: h.step,
            arch: h.arch,
            history: h.history,
            decisions: h.decisions,
            state,
        })
    }
}
