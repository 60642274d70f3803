//! The training loop: epochs of fixed-size batches through the step graph, validation through
//! a plain inference session, divergence detection.

use std::time::Instant;

use nas_data::{Augment, BatchOptions, DataKind, Part, SplitDataset, Task};
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::{Graph, Weights};
use nas_runtime::{SessionSettings, TensorHome};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{OptimizerKind, TrainConfig};
use crate::error::TrainError;
use crate::eval::{Evaluation, evaluate_batches};
use crate::runner::{StepInputs, StepIo, StepRunner};
use crate::schedule::LrSchedule;
use crate::step_api::{
    Optimizer, TrainOptions, TrainingStep, initial_state, training_step, weights_from_state,
};

/// Batch size of validation and evaluation runs (the last batch may be smaller).
pub const EVAL_BATCH: usize = 256;

/// Training batches assembled ahead of the step that uses them.
const PREFETCH: usize = 2;

/// What one epoch did. `epoch` is 1-based (the number of epochs completed after it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean of the per-batch losses (with label smoothing, as optimized).
    pub train_loss: f64,
    /// Fraction of training samples classified correctly during the epoch's steps; `None`
    /// for regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Regression: mean absolute error of the epoch's steps' predictions, in the targets'
    /// units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_mae: Option<f64>,
    /// Plain cross-entropy on the validation split (regression: mean squared error in the
    /// targets' units); `None` when not validated this epoch or when the split is empty.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// Regression: validation mean absolute error and R^2 in the targets' units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_mae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_r2: Option<f64>,
    /// Wall time of the epoch's training steps (validation excluded).
    pub seconds: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
}

/// Identifies the data a trainer was built for, so a checkpoint is not resumed on other data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub name: String,
    pub input_shape: [usize; 3],
    pub classes: usize,
    pub train_samples: usize,
    pub seed: u64,
}

impl DataFingerprint {
    pub fn of(data: &SplitDataset) -> DataFingerprint {
        DataFingerprint {
            name: data.data.name.clone(),
            input_shape: data.input_shape(),
            classes: data.classes(),
            train_samples: data.indices(Part::Train).len(),
            seed: data.seed,
        }
    }
}

/// Where a trainer starts from.
pub(crate) enum Start {
    Weights(Weights),
    /// State tensors by name, with the progress made so far.
    Resume {
        state: Vec<(String, ArrayD<f32>)>,
        epoch: usize,
        step: u64,
        seed: u64,
        history: Vec<EpochStats>,
    },
}

/// Trains one network on one split data set. Borrowing the data keeps a large set in memory
/// once, however many trainers use it.
pub struct Trainer<'d> {
    pub(crate) graph: Graph,
    pub(crate) cfg: TrainConfig,
    pub(crate) data: &'d SplitDataset,
    pub(crate) runtime: SessionSettings,
    pub(crate) step: TrainingStep,
    runner: StepRunner,
    provider: String,
    batch: usize,
    steps_per_epoch: usize,
    schedule: LrSchedule,
    augment: Option<Augment>,
    pub(crate) seed: u64,
    pub(crate) epoch: usize,
    pub(crate) global_step: u64,
    pub(crate) history: Vec<EpochStats>,
    poisoned: Option<String>,
}

fn train_options(
    cfg: &TrainConfig,
    batch: usize,
    runtime: &SessionSettings,
    task: Task,
) -> TrainOptions {
    TrainOptions {
        batch: Some(batch),
        optimizer: match cfg.optimizer {
            OptimizerKind::Sgd => Optimizer::Sgd {
                momentum: cfg.momentum as f32,
                nesterov: cfg.nesterov,
            },
            OptimizerKind::Adamw => Optimizer::AdamW {
                beta1: cfg.beta1 as f32,
                beta2: cfg.beta2 as f32,
                eps: cfg.eps as f32,
            },
        },
        weight_decay: cfg.weight_decay as f32,
        label_smoothing: cfg.label_smoothing as f32,
        emit_gradients: false,
        frozen: Vec::new(),
        conditional_mix: true,
        sample_weights: false,
        entropy_bonus: 0.0,
        nchwc_block: if cfg.nchwc {
            crate::nchwc::block_size(runtime)
        } else {
            None
        },
        regression: task == Task::Regression,
    }
}

/// The network must take the data's samples and output one logit per class.
pub(crate) fn check_fit(graph: &Graph, data: &SplitDataset) -> Result<(), TrainError> {
    let shapes = graph
        .shapes()
        .map_err(TrainError::graph("the network is invalid"))?;
    let sample = data.sample_shape();
    if graph.input != sample {
        return Err(TrainError::Mismatch(format!(
            "the network takes inputs of shape {:?} but data set `{}` has samples of shape {:?}; \
             build the search space with the data's input shape",
            graph.input, data.data.name, sample
        )));
    }
    let out = &shapes[graph.output];
    if data.data.task() == Task::Regression && out.as_slice() != [1] {
        return Err(TrainError::Mismatch(format!(
            "the network outputs shape {out:?} but data set `{}` is for regression: its last \
             layer must output [1], the prediction (leave `classes` out of [space])",
            data.data.name
        )));
    }
    if out.as_slice() != [data.classes()] {
        return Err(TrainError::Mismatch(format!(
            "the network outputs shape {:?} but data set `{}` has {} classes; \
             its last layer must output [{}] logits",
            out,
            data.data.name,
            data.classes(),
            data.classes()
        )));
    }
    Ok(())
}

/// What `augment` (`None`: as the data set says) means for `data`: crops and flips for
/// images, refused for tabular data and sequences.
pub(crate) fn resolve_augment(
    requested: Option<bool>,
    data: &SplitDataset,
) -> Result<Option<Augment>, TrainError> {
    let not_images = match data.data.kind {
        DataKind::Image => None,
        DataKind::Tabular => Some("is tabular"),
        DataKind::Sequence => Some("holds sequences"),
    };
    match (requested, not_images) {
        (None, _) => Ok(data.augment),
        (Some(false), _) => Ok(None),
        (Some(true), Some(what)) => Err(TrainError::Config {
            key: "augment".into(),
            reason: format!(
                "is true, but crop and flip need images and `{}` {what}; remove it",
                data.data.name
            ),
        }),
        (Some(true), None) => Ok(data
            .augment
            .or_else(|| Some(Augment::default_for(data.input_shape())))),
    }
}

/// A checkpoint's state tensors (by name) in the order of `step`'s state; `what` names the
/// checkpoint in the error ("the checkpoint", "the supernet checkpoint").
pub(crate) fn state_in_step_order(
    step: &TrainingStep,
    saved: &[(String, ArrayD<f32>)],
    what: &str,
) -> Result<Vec<ArrayD<f32>>, TrainError> {
    step.state
        .iter()
        .map(|spec| {
            saved
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| {
                    TrainError::Mismatch(format!(
                        "{what} has no state tensor `{}`; it was written for another network or optimizer",
                        spec.name
                    ))
                })
        })
        .collect()
}

/// The session of `step` and a runner holding `values` as its state, bound in the memory of
/// the provider the session really runs on; also that provider's name.
pub(crate) fn start_runner(
    step: &TrainingStep,
    runtime: &SessionSettings,
    values: Vec<ArrayD<f32>>,
) -> Result<(StepRunner, String), TrainError> {
    let built = nas_runtime::build_session(&step.model, runtime)?;
    let home = TensorHome::for_provider_name(&built.provider)?;
    let runner = StepRunner::new(
        built.session,
        home,
        step.state.clone(),
        step.dropout_masks.clone(),
        step.mixes.clone(),
        values,
        StepIo::Binding,
    )?;
    Ok((runner, built.provider))
}

impl<'d> Trainer<'d> {
    /// A trainer at epoch 0 starting from `weights`. Builds the training step for a fixed
    /// batch of `cfg.batch` (the whole training split when it is smaller) and its session.
    pub fn new(
        graph: &Graph,
        weights: Weights,
        cfg: &TrainConfig,
        runtime: &SessionSettings,
        data: &'d SplitDataset,
    ) -> Result<Trainer<'d>, TrainError> {
        Self::build(graph, cfg, runtime, data, Start::Weights(weights))
    }

    pub(crate) fn build(
        graph: &Graph,
        cfg: &TrainConfig,
        runtime: &SessionSettings,
        data: &'d SplitDataset,
        start: Start,
    ) -> Result<Trainer<'d>, TrainError> {
        cfg.validate()?;
        check_fit(graph, data)?;
        let augment = resolve_augment(cfg.augment, data)?;
        let train_n = data.indices(Part::Train).len();
        let batch = cfg.batch.min(train_n).max(1);
        let options = train_options(cfg, batch, runtime, data.data.task());
        let step = training_step(graph, &options)
            .map_err(TrainError::graph("cannot build the training step"))?;
        if !step.mixes.is_empty() {
            return Err(TrainError::Mismatch(
                "the network has mixed edges (a one-shot supernet): train it with \
                 nas_train::oneshot, or derive an architecture first"
                    .into(),
            ));
        }
        let (values, epoch, global_step, seed, history) = match start {
            Start::Weights(w) => {
                let values = initial_state(&step, &w)
                    .map_err(TrainError::graph("cannot set the initial weights"))?;
                (values, 0, 0, cfg.seed.unwrap_or(data.seed), Vec::new())
            }
            Start::Resume {
                state,
                epoch,
                step: s,
                seed,
                history,
            } => {
                let values = state_in_step_order(&step, &state, "the checkpoint")?;
                (values, epoch, s, seed, history)
            }
        };
        let (runner, provider) = start_runner(&step, runtime, values)?;
        let steps_per_epoch = train_n / batch;
        let schedule = LrSchedule {
            base: cfg.base_lr(),
            kind: cfg.schedule,
            warmup_steps: (cfg.warmup_epochs * steps_per_epoch) as u64,
            total_steps: (cfg.epochs * steps_per_epoch) as u64,
        };
        Ok(Trainer {
            graph: graph.clone(),
            cfg: cfg.clone(),
            data,
            runtime: runtime.clone(),
            step,
            runner,
            provider,
            batch,
            steps_per_epoch,
            schedule,
            augment,
            seed,
            epoch,
            global_step,
            history,
            poisoned: None,
        })
    }

    /// Trains until `until_epoch` epochs are complete in total, continuing from the current
    /// epoch (nothing happens when it is already reached). Returns the stats of the epochs run
    /// by this call. Validates every `eval_every` epochs and after the last one.
    ///
    /// After an error the trainer refuses to continue (its state is partial or non-finite);
    /// the epochs finished before it are in [`Trainer::history`].
    pub fn train_epochs(&mut self, until_epoch: usize) -> Result<Vec<EpochStats>, TrainError> {
        if let Some(why) = &self.poisoned {
            return Err(TrainError::Poisoned(why.clone()));
        }
        let mut out = Vec::new();
        while self.epoch < until_epoch {
            let stats = match self.train_one_epoch(until_epoch) {
                Ok(s) => s,
                Err(e) => {
                    self.poisoned = Some(e.to_string());
                    return Err(e);
                }
            };
            self.history.push(stats.clone());
            out.push(stats);
        }
        Ok(out)
    }

    fn train_one_epoch(&mut self, until_epoch: usize) -> Result<EpochStats, TrainError> {
        let index = self.epoch;
        let opts = BatchOptions {
            batch_size: self.batch,
            shuffle: true,
            drop_last: true,
            augment: self.augment,
        };
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut steps) = (0f64, 0f64, 0usize, 0usize);
        let mut lr = self.schedule.lr(self.global_step);
        let batches = self
            .data
            .batches(Part::Train, &opts, index as u64)?
            .with_targets();
        let scale = self.data.normalization.target;
        // Batches are assembled (gathered, normalized, augmented) on a thread of their own,
        // up to PREFETCH ahead, while ONNX Runtime runs the step; the order is the
        // iterator's, so results do not change.
        std::thread::scope(|scope| -> Result<(), TrainError> {
            let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH);
            scope.spawn(move || {
                for batch in batches {
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            for (i, (images, labels)) in rx.iter().enumerate() {
                lr = self.schedule.lr(self.global_step);
                let masks = self.dropout_masks(self.global_step);
                // The step predicts standardized targets.
                let labels = labels.normalized(scale.as_ref());
                let (loss, hits) = self.runner.step(StepInputs {
                    images: self.data.data.network_batch(images),
                    labels: &labels,
                    lr: lr as f32,
                    step: (self.global_step + 1) as f32,
                    masks,
                    mixes: Vec::new(),
                    commit: true,
                })?;
                if !loss.is_finite() {
                    return Err(TrainError::Diverged {
                        epoch: index + 1,
                        step: i + 1,
                        loss,
                    });
                }
                loss_sum += f64::from(loss);
                correct += f64::from(hits);
                seen += labels.len();
                steps += 1;
                self.global_step += 1;
            }
            Ok(())
        })?;
        let seconds = start.elapsed().as_secs_f64();
        self.epoch += 1;
        let every = self.cfg.eval_every;
        let validate = self.epoch == until_epoch || (every > 0 && self.epoch.is_multiple_of(every));
        let val = if validate {
            self.evaluate_normalized(Part::Validation)?
        } else {
            None
        };
        // `correct` sums absolute errors (standardized) for regression.
        let per_sample = correct / seen.max(1) as f64;
        let (train_accuracy, train_mae) = match scale {
            None => (Some(per_sample), None),
            Some(s) => (None, Some(per_sample * f64::from(s.std))),
        };
        let errors = val.and_then(|v| v.errors);
        Ok(EpochStats {
            epoch: self.epoch,
            train_loss: loss_sum / steps.max(1) as f64,
            train_accuracy,
            train_mae,
            val_loss: val.map(|v| v.loss),
            val_accuracy: val.and_then(|v| v.accuracy),
            val_mae: errors.map(|e| e.mae),
            val_r2: errors.map(|e| e.r2),
            seconds,
            lr,
        })
    }

    /// Scaled keep-masks for the step graph's dropout inputs, drawn from (seed, step) only so
    /// a resumed run draws the same masks.
    fn dropout_masks(&self, step: u64) -> Vec<ArrayD<f32>> {
        if self.step.dropout_masks.is_empty() {
            return Vec::new();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xD50F_0A75_3C1B_2E47);
        rng.set_stream(step);
        self.step
            .dropout_masks
            .iter()
            .map(|m| {
                let mut shape = vec![self.batch];
                shape.extend_from_slice(&m.shape);
                let p = m.p.clamp(0.0, 1.0);
                let keep = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
                ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                    if rng.random::<f32>() < p { 0.0 } else { keep }
                })
            })
            .collect()
    }

    /// Loss and accuracy on a part of the split through an inference session of the current
    /// weights, on normalized batches (the path validation takes); `None` for an empty part.
    pub fn evaluate_normalized(&self, part: Part) -> Result<Option<Evaluation>, TrainError> {
        if self.data.indices(part).is_empty() {
            return Ok(None);
        }
        let weights = self.weights()?;
        let model = export_inference(&self.graph, &weights, &ExportOptions::default()).map_err(
            TrainError::graph("cannot export the network for validation"),
        )?;
        let mut session = nas_runtime::session_from_bytes(&model, &self.runtime)?;
        let data = &self.data.data;
        let batches = self
            .data
            .eval_batches(part, EVAL_BATCH)?
            .with_targets()
            .map(|(x, labels)| (data.network_batch(x), labels));
        evaluate_batches(
            &mut session,
            batches,
            self.data.normalization.target.as_ref(),
            &format!("evaluating the {part} split"),
        )
        .map(Some)
    }

    /// The current weights and BatchNorm statistics.
    pub fn weights(&self) -> Result<Weights, TrainError> {
        let state = self.runner.state()?;
        weights_from_state(&self.step, &state).map_err(TrainError::graph(
            "cannot read the weights from the training state",
        ))
    }

    /// The full state (weights, optimizer buffers, BN statistics) by state tensor name.
    pub fn state(&self) -> Result<Vec<(String, ArrayD<f32>)>, TrainError> {
        let values = self.runner.state()?;
        Ok(self
            .step
            .state
            .iter()
            .map(|s| s.name.clone())
            .zip(values)
            .collect())
    }

    /// Switches between double-buffered I/O binding (default) and `session.run`; the state
    /// carries over. For cross-checks of the two paths.
    pub fn set_step_io(&mut self, io: StepIo) -> Result<(), TrainError> {
        let values = self.runner.state()?;
        self.runner.set_io(io, values)
    }

    pub fn step_io(&self) -> StepIo {
        self.runner.io()
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Optimizer steps completed.
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// Every epoch trained so far, including those before a resume.
    pub fn history(&self) -> &[EpochStats] {
        &self.history
    }

    /// The training batch size actually used.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn data(&self) -> &'d SplitDataset {
        self.data
    }

    /// The execution provider the training session runs on (after any fallback).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Where the training state lives between steps (device memory on a GPU provider).
    pub fn state_home(&self) -> &TensorHome {
        self.runner.home()
    }

    /// The seed of the dropout masks.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}
