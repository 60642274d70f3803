//! The policy-gradient step in ONNX Runtime: nas-graph's training step with per-sample loss
//! weights, fed (observation, action taken, advantage) triples, the state (weights, optimizer
//! buffers, BatchNorm statistics) kept in host arrays between steps.

use nas_graph::train::{
    INPUT, LABELS, LOSS, LR, SAMPLE_WEIGHTS, STEP, TrainOptions, TrainingStep, initial_state,
    training_step, weights_from_state,
};
use nas_graph::{Graph, Weights};
use nas_runtime::SessionSettings;
use ndarray::{ArrayD, IxDyn};
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{NAME, RlConfig};

pub struct Learner {
    step: TrainingStep,
    session: Session,
    state: Vec<ArrayD<f32>>,
    /// Per-sample input shape of the network.
    input: Vec<usize>,
    /// Steps taken (AdamW's bias correction counts from 1).
    steps: u64,
    /// Dropout masks, drawn in step order.
    masks: ChaCha8Rng,
}

/// One run's per-sample inputs.
struct Batch<'a> {
    observations: &'a [f32],
    actions: &'a [usize],
    weights: &'a [f64],
    lr: f64,
    masks: Vec<ArrayD<f32>>,
}

impl Learner {
    /// A learner of `graph` from `weights`, with the optimizer and entropy bonus of `cfg`.
    pub fn new(
        graph: &Graph,
        weights: &Weights,
        cfg: &RlConfig,
        runtime: &SessionSettings,
        masks: ChaCha8Rng,
    ) -> Result<Learner, String> {
        let options = TrainOptions {
            batch: None,
            optimizer: cfg.optimizer.optimizer(),
            sample_weights: true,
            entropy_bonus: cfg.entropy_bonus as f32,
            ..TrainOptions::default()
        };
        let step = training_step(graph, &options)
            .map_err(|e| format!("{NAME}: cannot build the training step: {e}"))?;
        let state = initial_state(&step, weights)
            .map_err(|e| format!("{NAME}: cannot set the initial weights: {e}"))?;
        let session = nas_runtime::session_from_bytes(&step.model, runtime)
            .map_err(|e| format!("{NAME}: cannot build the training session: {e}"))?;
        Ok(Learner {
            step,
            session,
            state,
            input: graph.input.clone(),
            steps: 0,
            masks,
        })
    }

    /// One step on `n = actions.len()` samples: observation `i` (`observations` laid end to
    /// end), the action taken and its advantage. Returns the loss (`sum_i A_i CE_i / n`, less
    /// the entropy bonus); the state moves on only when it is finite.
    pub fn step(
        &mut self,
        observations: &[f32],
        actions: &[usize],
        advantages: &[f64],
        lr: f64,
    ) -> Result<f32, String> {
        let masks = self.dropout_masks(actions.len());
        let batch = Batch {
            observations,
            actions,
            weights: advantages,
            lr,
            masks,
        };
        let (loss, next) = self.run(&batch)?;
        if loss.is_finite() {
            self.state = next;
            self.steps += 1;
        }
        Ok(loss)
    }

    /// Runs the step graph on `batch`: the loss and the state it outputs.
    fn run(&mut self, batch: &Batch<'_>) -> Result<(f32, Vec<ArrayD<f32>>), String> {
        let n = batch.actions.len();
        let shape_err =
            |e: ndarray::ShapeError| format!("{NAME}: a training batch is malformed: {e}");
        let mut dims = vec![n];
        dims.extend(&self.input);
        let x =
            ArrayD::from_shape_vec(IxDyn(&dims), batch.observations.to_vec()).map_err(shape_err)?;
        let labels = ArrayD::from_shape_vec(
            IxDyn(&[n]),
            batch.actions.iter().map(|&a| a as i64).collect(),
        )
        .map_err(shape_err)?;
        let weights = ArrayD::from_shape_vec(
            IxDyn(&[n]),
            batch.weights.iter().map(|&a| a as f32).collect(),
        )
        .map_err(shape_err)?;
        let lr = ndarray::arr0(batch.lr as f32).into_dyn();
        let t = ndarray::arr0((self.steps + 1) as f32).into_dyn();

        let err = |e: ort::Error| format!("{NAME}: the policy-gradient step failed: {e}");
        fn view(a: &ArrayD<f32>) -> ort::Result<SessionInputValue<'_>> {
            TensorRef::from_array_view(a).map(SessionInputValue::from)
        }
        let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
            (INPUT.into(), view(&x).map_err(err)?),
            (
                LABELS.into(),
                TensorRef::from_array_view(&labels).map_err(err)?.into(),
            ),
            (LR.into(), view(&lr).map_err(err)?),
            (STEP.into(), view(&t).map_err(err)?),
            (SAMPLE_WEIGHTS.into(), view(&weights).map_err(err)?),
        ];
        for (spec, v) in self.step.state.iter().zip(&self.state) {
            feed.push((spec.input.clone(), view(v).map_err(err)?));
        }
        for (m, v) in self.step.dropout_masks.iter().zip(&batch.masks) {
            feed.push((m.input.clone(), view(v).map_err(err)?));
        }
        let outputs = self.session.run(feed).map_err(err)?;
        let loss = outputs[LOSS].try_extract_scalar::<f32>().map_err(err)?;
        let next = self
            .step
            .state
            .iter()
            .map(|spec| {
                outputs[spec.output.as_str()]
                    .try_extract_array::<f32>()
                    .map(|v| v.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok((loss, next))
    }

    /// Keep-masks for the step's dropout inputs: 0 or `1 / (1 - p)` per element.
    fn dropout_masks(&mut self, n: usize) -> Vec<ArrayD<f32>> {
        let rng = &mut self.masks;
        self.step
            .dropout_masks
            .iter()
            .map(|m| {
                let mut shape = vec![n];
                shape.extend_from_slice(&m.shape);
                let keep = 1.0 / (1.0 - m.p);
                ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                    if rng.random::<f32>() < m.p { 0.0 } else { keep }
                })
            })
            .collect()
    }

    /// The current weights and BatchNorm statistics.
    pub fn weights(&self) -> Result<Weights, String> {
        weights_from_state(&self.step, &self.state)
            .map_err(|e| format!("{NAME}: cannot read the weights: {e}"))
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}
