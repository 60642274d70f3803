//! Checkpoints: everything needed to continue training exactly where it stopped.
//!
//! File layout (version 1): [`tensor_file`] with magic `b"NASTRAIN"`.

use std::path::Path;

use nas_data::SplitDataset;
use nas_graph::{Graph, Weights, parameter_specs};
use nas_runtime::SessionSettings;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::tensor_file::{self, TensorEntry};
use crate::trainer::{DataFingerprint, EpochStats, Start, Trainer};

const MAGIC: &[u8; 8] = b"NASTRAIN";
pub const CHECKPOINT_VERSION: u32 = 1;

/// A trainer's complete state: weights, optimizer buffers, BN statistics and progress.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainCheckpoint {
    pub graph: Graph,
    pub config: TrainConfig,
    pub data: DataFingerprint,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: u64,
    /// Seed of the dropout masks.
    pub seed: u64,
    pub history: Vec<EpochStats>,
    /// State tensors by the training step's state names.
    pub state: Vec<(String, ArrayD<f32>)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    graph: Graph,
    config: TrainConfig,
    data: DataFingerprint,
    epoch: usize,
    step: u64,
    seed: u64,
    history: Vec<EpochStats>,
    tensors: Vec<TensorEntry>,
}

impl<'d> Trainer<'d> {
    /// The trainer's state now.
    pub fn checkpoint(&self) -> Result<TrainCheckpoint, TrainError> {
        Ok(TrainCheckpoint {
            graph: self.graph.clone(),
            config: self.cfg.clone(),
            data: DataFingerprint::of(self.data),
            epoch: self.epoch,
            step: self.global_step,
            seed: self.seed,
            history: self.history.clone(),
            state: self.state()?,
        })
    }

    /// A trainer continuing from `checkpoint` on the same data. Training on from here gives
    /// the same results as never having stopped.
    pub fn resume(
        checkpoint: &TrainCheckpoint,
        runtime: &SessionSettings,
        data: &'d SplitDataset,
    ) -> Result<Trainer<'d>, TrainError> {
        let here = DataFingerprint::of(data);
        if here != checkpoint.data {
            return Err(TrainError::Mismatch(format!(
                "the checkpoint was trained on {:?}, not on this data {:?}; \
                 resume it with the same [data] table and seed",
                checkpoint.data, here
            )));
        }
        Trainer::build(
            &checkpoint.graph,
            &checkpoint.config,
            runtime,
            data,
            Start::Resume {
                state: checkpoint.state.clone(),
                epoch: checkpoint.epoch,
                step: checkpoint.step,
                seed: checkpoint.seed,
                history: checkpoint.history.clone(),
            },
        )
    }
}

impl TrainCheckpoint {
    /// The network's weights and BatchNorm statistics held in the state (of the layers that
    /// reach the output; optimizer buffers left out).
    pub fn weights(&self) -> Result<Weights, TrainError> {
        let specs = parameter_specs(&self.graph)
            .map_err(TrainError::graph("the checkpoint's network is invalid"))?;
        Ok(self
            .state
            .iter()
            .filter(|(name, _)| specs.iter().any(|s| s.name == *name))
            .map(|(name, t)| (name.clone(), t.clone()))
            .collect())
    }

    /// Writes the checkpoint; a temporary file is renamed into place, so readers never see
    /// a partial file.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let header = Header {
            graph: self.graph.clone(),
            config: self.config.clone(),
            data: self.data.clone(),
            epoch: self.epoch,
            step: self.step,
            seed: self.seed,
            history: self.history.clone(),
            tensors: tensor_file::entries(&self.state),
        };
        tensor_file::write(path, MAGIC, CHECKPOINT_VERSION, &header, &self.state)
    }

    /// Reads a checkpoint written by [`TrainCheckpoint::save`].
    pub fn load(path: &Path) -> Result<TrainCheckpoint, TrainError> {
        let (header, state): (Header, _) = tensor_file::read(
            path,
            MAGIC,
            CHECKPOINT_VERSION,
            "a training checkpoint",
            |h: &Header| &h.tensors,
        )?;
        Ok(TrainCheckpoint {
            graph: header.graph,
            config: header.config,
            data: header.data,
            epoch: header.epoch,
            step: header.step,
            seed: header.seed,
            history: header.history,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_graph::{GraphBuilder, Op};
    use ndarray::IxDyn;

    fn sample() -> TrainCheckpoint {
        let mut b = GraphBuilder::new(&[1, 2, 2]);
        let f = b.add(Op::Flatten, &[0]);
        let l = b.add(
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[f],
        );
        TrainCheckpoint {
            graph: b.finish(l),
            config: TrainConfig::default(),
            data: DataFingerprint {
                name: "x".into(),
                input_shape: [1, 2, 2],
                classes: 3,
                train_samples: 10,
                seed: 1,
            },
            epoch: 2,
            step: 6,
            seed: 9,
            history: vec![EpochStats {
                epoch: 1,
                train_loss: 1.0,
                train_accuracy: Some(0.5),
                train_mae: None,
                val_loss: None,
                val_accuracy: Some(0.25),
                val_mae: None,
                val_r2: None,
                seconds: 0.1,
                lr: 0.05,
            }],
            state: vec![
                (
                    "n2.weight".into(),
                    ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as f32 * 0.5),
                ),
                ("n2.bias".into(), ArrayD::from_elem(IxDyn(&[3]), -1.25)),
                (
                    "n2.weight.momentum".into(),
                    ArrayD::from_elem(IxDyn(&[3, 4]), 0.5),
                ),
            ],
        }
    }

    #[test]
    fn weights_leave_the_optimizer_state_out() {
        let c = sample();
        let w = c.weights().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w.get("n2.weight"), Some(&c.state[0].1));
        assert_eq!(w.get("n2.bias"), Some(&c.state[1].1));
        w.check(&c.graph).unwrap();
    }

    #[test]
    fn save_load_round_trip_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.ckpt");
        let c = sample();
        c.save(&path).unwrap();
        assert_eq!(TrainCheckpoint::load(&path).unwrap(), c);

        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.ckpt");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let e = TrainCheckpoint::load(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.ckpt") && e.contains("truncated"), "{e}");

        let mut v2 = bytes.clone();
        v2[8] = 2;
        std::fs::write(&cut, &v2).unwrap();
        let e = TrainCheckpoint::load(&cut).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");

        std::fs::write(&cut, b"hello").unwrap();
        let e = TrainCheckpoint::load(&cut).unwrap_err().to_string();
        assert!(e.contains("not a training checkpoint"), "{e}");
        let e = TrainCheckpoint::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none") && e.contains("cannot read"), "{e}");
    }
}
