//! The parts of nas-graph this crate builds on, used through this one module: the
//! training-step API (`nas_graph::train`) and the deployable export.

use nas_graph::onnx::proto::{NodeProto, TensorProto};
use nas_graph::{Graph, GraphError, Weights};
use prost::Message;

pub use nas_graph::train::{
    CORRECT, DropoutMask, INPUT, LABELS, LOSS, LR, Optimizer, STEP, StateTensor, TrainOptions,
    TrainingStep, initial_state, training_step, weights_from_state,
};

// TEMPORARY until `ExportOptions` has `normalize` and `fold_batch_norm`.
/// Inference export with optional per-channel normalization as the first nodes (raw inputs)
/// and BatchNorm folding (ignored here until `ExportOptions` has it).
pub fn export_model(
    graph: &Graph,
    weights: &Weights,
    normalize: Option<(Vec<f32>, Vec<f32>)>,
    _fold_batch_norm: bool,
) -> Result<Vec<u8>, GraphError> {
    let options = nas_graph::ExportOptions::default();
    let mut model = nas_graph::onnx::inference_model(graph, weights, &options)?;
    if let Some((mean, std)) = normalize {
        let g = model.graph.as_mut().expect("exporter writes a graph");
        let c = mean.len();
        for n in &mut g.node {
            for i in &mut n.input {
                if *i == options.input_name {
                    *i = "input_normalized".into();
                }
            }
        }
        g.initializer
            .push(TensorProto::from_f32("norm_mean", &[1, c, 1, 1], mean));
        g.initializer
            .push(TensorProto::from_f32("norm_std", &[1, c, 1, 1], std));
        let pre = [
            ("Sub", vec!["input", "norm_mean"], "input_centered"),
            ("Div", vec!["input_centered", "norm_std"], "input_normalized"),
        ];
        for (k, (op, ins, out)) in pre.into_iter().enumerate() {
            g.node.insert(
                k,
                NodeProto {
                    input: ins.into_iter().map(String::from).collect(),
                    output: vec![out.into()],
                    name: out.into(),
                    op_type: op.into(),
                    ..Default::default()
                },
            );
        }
    }
    Ok(model.encode_to_vec())
}
