//! Architecture IR, shape inference, parameter/FLOP counts and the ONNX exporter.

pub mod ir;

pub use ir::{Graph, GraphBuilder, Node, NodeId, Op};
