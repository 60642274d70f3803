//! Scoring the supernet's current weights with the forward half of its training step
//! (`nas_graph::train::loss_step`): perturbation-based selection measures the supernet dozens
//! of times on the whole validation split, and a forward pass costs about a third of a
//! training step run without committing.

use nas_runtime::SessionSettings;
use ndarray::{ArrayD, IxDyn};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};

use crate::error::TrainError;
use crate::step_api::{CORRECT, INPUT, LABELS, LOSS, TrainOptions, TrainingStep, loss_step};

/// A session of the loss step, fed the training step's state as it is.
pub(super) struct LossPass {
    session: Session,
    state_inputs: Vec<String>,
    mix_inputs: Vec<String>,
}

fn run_err(e: ort::Error) -> TrainError {
    TrainError::Ort {
        during: "scoring the supernet".into(),
        reason: e.to_string(),
    }
}

impl LossPass {
    /// `None` where the loss step cannot stand in for the training step: dropout masks (the
    /// trainer feeds none to it).
    pub(super) fn new(
        graph: &nas_graph::Graph,
        options: &TrainOptions,
        step: &TrainingStep,
        runtime: &SessionSettings,
    ) -> Result<Option<LossPass>, TrainError> {
        if !step.dropout_masks.is_empty() {
            return Ok(None);
        }
        let model = loss_step(graph, options)
            .map_err(TrainError::graph("cannot build the supernet's loss step"))?;
        let session = nas_runtime::session_from_bytes(&model, runtime)?;
        Ok(Some(LossPass {
            session,
            state_inputs: step.state.iter().map(|s| s.input.clone()).collect(),
            mix_inputs: step.mixes.iter().map(|m| m.input.clone()).collect(),
        }))
    }

    /// Loss and correct count of one batch under `state` (the training step's order).
    pub(super) fn run(
        &mut self,
        images: ArrayD<f32>,
        labels: &[u32],
        state: &[ArrayD<f32>],
        mixes: &[ArrayD<f32>],
    ) -> Result<(f32, f32), TrainError> {
        let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
        let labels = ArrayD::from_shape_vec(IxDyn(&[labels.len()]), labels).expect("1-D");
        let mut feeds: Vec<(String, SessionInputValue<'_>)> = vec![
            (
                INPUT.into(),
                Tensor::from_array(images).map_err(run_err)?.into(),
            ),
            (
                LABELS.into(),
                Tensor::from_array(labels).map_err(run_err)?.into(),
            ),
        ];
        for (name, v) in self.state_inputs.iter().zip(state) {
            let t = TensorRef::from_array_view(v.view()).map_err(run_err)?;
            feeds.push((name.clone(), t.into()));
        }
        for (name, v) in self.mix_inputs.iter().zip(mixes) {
            let t = TensorRef::from_array_view(v.view()).map_err(run_err)?;
            feeds.push((name.clone(), t.into()));
        }
        let out = self.session.run(feeds).map_err(run_err)?;
        let scalar = |name: &str| -> Result<f32, TrainError> {
            Ok(out[name].try_extract_tensor::<f32>().map_err(run_err)?.1[0])
        };
        Ok((scalar(LOSS)?, scalar(CORRECT)?))
    }
}
