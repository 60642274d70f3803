//! The one error type of this crate.

use crate::ir::NodeId;

/// What went wrong while checking, counting, exporting or evaluating a graph.
///
/// Node errors name the node id and the op kind, so a message can be traced back to the
/// candidate that produced it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("graph has no nodes (node 0 must be an Input)")]
    Empty,
    #[error("graph input shape {shape:?} is invalid: {reason}")]
    BadInputShape { shape: Vec<usize>, reason: String },
    #[error("graph output id {output} does not exist (the graph has {len} nodes)")]
    BadOutput { output: NodeId, len: usize },
    #[error("node {node} ({op}): {reason}")]
    Node {
        node: NodeId,
        op: &'static str,
        reason: String,
    },
    #[error("weight `{name}` is missing")]
    MissingWeight { name: String },
    #[error("weight `{name}` has shape {found:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "input tensor has shape {found:?}, expected [N, {}] with N >= 1",
        join(expected)
    )]
    InputShape {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("the graph's total parameter or FLOP count overflows u64")]
    Overflow,
    #[error("ONNX export: {0}")]
    Export(String),
}

fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl GraphError {
    pub(crate) fn node(node: NodeId, op: &crate::ir::Op, reason: impl Into<String>) -> Self {
        GraphError::Node {
            node,
            op: op.kind(),
            reason: reason.into(),
        }
    }
}
