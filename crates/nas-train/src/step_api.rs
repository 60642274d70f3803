//! The parts of nas-graph this crate builds on, used through this one module: the
//! training-step API (`nas_graph::train`) and the deployable export.

use nas_data::Normalization;
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::{Graph, GraphError, Weights};

pub use nas_graph::train::{
    CORRECT, DropoutMask, INPUT, LABELS, LOSS, LR, MixInput, Optimizer, STEP, StateTensor,
    TrainOptions, TrainingStep, initial_state, training_step, weights_from_state,
};

/// Inference export (dynamic batch) with optional normalization as the first nodes (so the
/// model takes raw values; for regression its target scale as the last, so the model predicts
/// in the targets' units) and BatchNorm folding.
pub fn export_model(
    graph: &Graph,
    weights: &Weights,
    normalize: Option<&Normalization>,
    fold_batch_norm: bool,
) -> Result<Vec<u8>, GraphError> {
    export_inference(graph, weights, &export_options(normalize, fold_batch_norm))
}

/// The options of [`export_model`]. A regression model's output is named
/// [`PREDICTION_OUTPUT`] (a classifier's: logits).
pub fn export_options(normalize: Option<&Normalization>, fold_batch_norm: bool) -> ExportOptions {
    let output_scale = normalize.and_then(|n| n.target).map(|t| (t.std, t.mean));
    let defaults = ExportOptions::default();
    ExportOptions {
        normalize: normalize.map(|n| (n.mean.clone(), n.std.clone())),
        normalize_axis: normalize.map_or(0, input_axis),
        normalize_keep_padding: normalize.is_some_and(|n| n.keep_padding),
        fold_batch_norm,
        output_scale,
        output_name: match output_scale {
            Some(_) => PREDICTION_OUTPUT.into(),
            None => defaults.output_name.clone(),
        },
        ..defaults
    }
}

/// Output name of exported regression models.
pub const PREDICTION_OUTPUT: &str = "prediction";

/// The axis of a network's per-sample input that `normalization` indexes: the stored
/// array's feature axis less the batch axis (channels of `[C, H, W]`, features of `[T, F]`).
pub fn input_axis(normalization: &Normalization) -> usize {
    normalization.feature_axis.saturating_sub(1)
}
