//! ONNX: the protobuf messages and the inference-graph exporter.

pub mod ensemble;
pub mod export;
pub mod proto;
pub(crate) mod sequence;

pub use export::{
    ExportOptions, GraphSignature, OPSET, add_outputs, export_inference, graph_signature,
    inference_model, value_name,
};
