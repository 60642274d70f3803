//! Ensembles: one ONNX model that averages the softmax outputs (classifiers) or the outputs
//! (regression models) of several member models sharing one input.

use prost::Message;

use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, tensor_proto};
use crate::error::GraphError;

/// Output name of an ensemble model: class probabilities `[N, classes]`.
pub const ENSEMBLE_OUTPUT: &str = "probabilities";

fn decode(bytes: &[u8], index: usize) -> Result<ModelProto, GraphError> {
    ModelProto::decode(bytes).map_err(|e| {
        GraphError::Export(format!("ensemble member {index} is not an ONNX model: {e}"))
    })
}

/// Output name of a regression ensemble: the mean prediction `[N, 1]`.
pub const PREDICTION_ENSEMBLE_OUTPUT: &str = "prediction";

/// Combines member models (each with one input and one logits output, as exported by this
/// crate) into one model whose output [`ENSEMBLE_OUTPUT`] is the mean of the members'
/// softmax probabilities. Every name inside member `i` is prefixed with `m{i}/` except the
/// shared input, which keeps the first member's name.
pub fn average_softmax(members: &[Vec<u8>]) -> Result<Vec<u8>, GraphError> {
    average(members, true, ENSEMBLE_OUTPUT)
}

/// [`average_softmax`] for regression models: the output [`PREDICTION_ENSEMBLE_OUTPUT`] is
/// the mean of the members' predictions.
pub fn average_predictions(members: &[Vec<u8>]) -> Result<Vec<u8>, GraphError> {
    average(members, false, PREDICTION_ENSEMBLE_OUTPUT)
}

fn average(members: &[Vec<u8>], softmax: bool, output_name: &str) -> Result<Vec<u8>, GraphError> {
    let first = decode(
        members
            .first()
            .ok_or_else(|| GraphError::Export("an ensemble needs at least one member".into()))?,
        0,
    )?;
    let first_graph = first
        .graph
        .clone()
        .ok_or_else(|| GraphError::Export("ensemble member 0 has no graph".into()))?;
    let input = first_graph
        .input
        .first()
        .cloned()
        .ok_or_else(|| GraphError::Export("ensemble member 0 has no input".into()))?;
    let mut graph = GraphProto {
        name: "ensemble".into(),
        input: vec![input.clone()],
        ..Default::default()
    };
    let mut probabilities = Vec::new();
    for (i, bytes) in members.iter().enumerate() {
        let model = decode(bytes, i)?;
        let g = model
            .graph
            .ok_or_else(|| GraphError::Export(format!("ensemble member {i} has no graph")))?;
        let (Some(member_input), Some(member_output)) = (g.input.first(), g.output.first()) else {
            return Err(GraphError::Export(format!(
                "ensemble member {i} needs one input and one output"
            )));
        };
        if member_input.r#type != input.r#type {
            return Err(GraphError::Export(format!(
                "ensemble member {i} takes a different input than member 0"
            )));
        }
        let own_input = member_input.name.clone();
        let rename = |name: &str| -> String {
            if name.is_empty() || name == own_input {
                // Optional inputs stay empty; the input is shared.
                if name.is_empty() {
                    String::new()
                } else {
                    input.name.clone()
                }
            } else {
                format!("m{i}/{name}")
            }
        };
        for mut t in g.initializer {
            t.name = rename(&t.name);
            graph.initializer.push(t);
        }
        for mut n in g.node {
            n.input = n.input.iter().map(|s| rename(s)).collect();
            n.output = n.output.iter().map(|s| rename(s)).collect();
            if !n.name.is_empty() {
                n.name = rename(&n.name);
            }
            graph.node.push(n);
        }
        if softmax {
            let prob = format!("m{i}/probabilities");
            graph.node.push(NodeProto {
                input: vec![rename(&member_output.name)],
                output: vec![prob.clone()],
                name: format!("m{i}/softmax"),
                op_type: "Softmax".into(),
                attribute: vec![AttributeProto::int("axis", 1)],
                ..Default::default()
            });
            probabilities.push(prob);
        } else {
            probabilities.push(rename(&member_output.name));
        }
    }
    let count = TensorProto {
        name: "ensemble/count".into(),
        dims: vec![],
        data_type: tensor_proto::DataType::Float as i32,
        float_data: vec![members.len() as f32],
        ..Default::default()
    };
    graph.initializer.push(count);
    graph.node.push(NodeProto {
        input: probabilities,
        output: vec!["ensemble/sum".into()],
        name: "ensemble/sum".into(),
        op_type: "Sum".into(),
        ..Default::default()
    });
    graph.node.push(NodeProto {
        input: vec!["ensemble/sum".into(), "ensemble/count".into()],
        output: vec![output_name.into()],
        name: "ensemble/mean".into(),
        op_type: "Div".into(),
        ..Default::default()
    });
    let mut output = first_graph.output[0].clone();
    output.name = output_name.into();
    graph.output = vec![output];
    let model = ModelProto {
        graph: Some(graph),
        ..first
    };
    Ok(model.encode_to_vec())
}
