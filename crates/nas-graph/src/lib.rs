//! Architecture IR, shape inference, parameter/FLOP counts and the ONNX exporter.
//!
//! - [`ir`]: the typed layer DAG ([`Graph`], [`Op`], [`GraphBuilder`]).
//! - [`shape`]: [`Graph::validate`], [`Graph::shapes`], [`Graph::param_count`], [`Graph::flops`].
//! - [`weights`]: named f32 tensors, [`parameter_specs`], He initialization.
//! - [`onnx`]: hand-written `onnx.proto` messages and [`export_inference`] (opset [`OPSET`]).
//! - [`inherit`](mod@inherit): weight inheritance from a parent network (network morphism).
//! - [`reference`](mod@reference): a float64 forward pass, the ground truth for tests and gradient checks.
//! - [`Graph::canonical_hash`]: deduplication of equivalent candidates.
//! - [`sequence`]: GRU, LSTM, self-attention and feed-forward blocks built from primitive ops.
//! - [`testing`]: random valid graphs for tests.

pub mod error;
mod hash;
pub mod inherit;
pub mod ir;
pub mod onnx;
pub mod reference;
pub mod sequence;
pub mod shape;
pub mod supernet;
pub mod testing;
pub mod train;
pub mod weights;

pub use error::GraphError;
pub use inherit::{InheritReport, inherit};
pub use ir::{Graph, GraphBuilder, MASKED, Node, NodeId, Op, ParamInit, TimePoolKind};
pub use onnx::{ExportOptions, GraphSignature, OPSET, export_inference, graph_signature};
pub use shape::NodeCost;
pub use supernet::{ExtremePaths, MixedEdge, Supernet};
pub use weights::{ParamRole, ParamSpec, Weights, parameter_specs};
