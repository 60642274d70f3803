//! The parts of nas-graph this crate builds on, used through this one module: the
//! training-step API (`nas_graph::train`) and the deployable export.

use nas_data::Normalization;
use nas_graph::onnx::ExportOptions;

pub use nas_graph::train::{
    CORRECT, DropoutMask, INPUT, LABELS, LOSS, LR, MixInput, Optimizer, STEP, StateTensor,
    TrainOptions, TrainingStep, initial_state, loss_step, training_step, weights_from_state,
};

/// The export options of a deployable model (dynamic batch, BatchNorm folded where possible):
/// `normalization`'s per-feature statistics as the first nodes, so the model takes raw values,
/// except for token ids, which it takes as they are; and for regression the target scale as the
/// last nodes, so it predicts in the targets' units under the output name
/// [`PREDICTION_OUTPUT`] (a classifier's output is its logits).
pub fn deployable_options(normalization: &Normalization, token_ids: bool) -> ExportOptions {
    let normalize = (!token_ids).then_some(normalization);
    let output_scale = normalization.target.map(|t| (t.std, t.mean));
    let defaults = ExportOptions::default();
    ExportOptions {
        normalize: normalize.map(|n| (n.mean.clone(), n.std.clone())),
        normalize_axis: normalize.map_or(0, input_axis),
        normalize_keep_padding: normalize.is_some_and(|n| n.keep_padding),
        fold_batch_norm: true,
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
