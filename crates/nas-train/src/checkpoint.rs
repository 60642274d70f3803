//! Checkpoints: everything needed to continue training exactly where it stopped.
//!
//! File layout (version 1), all integers little-endian:
//! `b"NASTRAIN"` | u32 version | u64 header length | header (JSON) | tensor data (f32 LE, in
//! the header's tensor order, each `product(shape)` values).

use std::path::Path;

use nas_data::SplitDataset;
use nas_graph::{Graph, Weights, parameter_specs};
use nas_runtime::SessionSettings;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::TrainError;
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

#[derive(Serialize, Deserialize)]
struct TensorEntry {
    name: String,
    shape: Vec<usize>,
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
        let write_err = |e: std::io::Error| TrainError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let header = Header {
            graph: self.graph.clone(),
            config: self.config.clone(),
            data: self.data.clone(),
            epoch: self.epoch,
            step: self.step,
            seed: self.seed,
            history: self.history.clone(),
            tensors: self
                .state
                .iter()
                .map(|(name, t)| TensorEntry {
                    name: name.clone(),
                    shape: t.shape().to_vec(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| TrainError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let values: usize = self.state.iter().map(|(_, t)| t.len()).sum();
        let mut bytes = Vec::with_capacity(20 + json.len() + 4 * values);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        for (_, t) in &self.state {
            for v in t.iter() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        crate::files::write_atomic(path, &bytes).map_err(write_err)
    }

    /// Reads a checkpoint written by [`TrainCheckpoint::save`].
    pub fn load(path: &Path) -> Result<TrainCheckpoint, TrainError> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad(
                "is not a training checkpoint (it does not start with NASTRAIN)".into(),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != CHECKPOINT_VERSION {
            return Err(bad(format!(
                "has format version {version}; this build reads version {CHECKPOINT_VERSION}; \
                 retrain or use the matching build"
            )));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(20))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "is truncated: the header claims {len} bytes, the file has {}",
                    bytes.len()
                ))
            })?;
        let header: Header = serde_json::from_slice(&bytes[20..end])
            .map_err(|e| bad(format!("has a broken header: {e}")))?;
        let mut at = end;
        let mut state = Vec::with_capacity(header.tensors.len());
        for entry in header.tensors {
            let n: usize = entry.shape.iter().product();
            let stop = at
                .checked_add(n * 4)
                .filter(|&s| s <= bytes.len())
                .ok_or_else(|| {
                    bad(format!(
                        "is truncated in tensor `{}` (byte {at} of {})",
                        entry.name,
                        bytes.len()
                    ))
                })?;
            let data: Vec<f32> = bytes[at..stop]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            let t = ArrayD::from_shape_vec(IxDyn(&entry.shape), data).expect("length checked");
            state.push((entry.name, t));
            at = stop;
        }
        if at != bytes.len() {
            return Err(bad(format!(
                "has {} unexpected bytes after the last tensor",
                bytes.len() - at
            )));
        }
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
                train_accuracy: 0.5,
                val_loss: None,
                val_accuracy: Some(0.25),
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
