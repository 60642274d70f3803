//! The architecture IR: a typed DAG of layers in topological order.
//!
//! Shapes are per sample (no batch axis): `[C, H, W]` for images, `[F]` after `Flatten`.
//! Node 0 is always `Op::Input`; `output` names the node whose value is the network output
//! (logits).

use serde::{Deserialize, Serialize};

pub type NodeId = usize;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    Input,
    Conv2d {
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    /// Affine batch normalization over channels (inference: running statistics).
    BatchNorm {
        eps: f32,
        momentum: f32,
    },
    Relu,
    Relu6,
    Silu,
    Gelu,
    Sigmoid,
    /// Elementwise sum of all inputs (same shape).
    Add,
    /// Concatenation of all inputs along channels.
    Concat,
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// `[C, H, W] -> [C]`.
    GlobalAvgPool,
    /// `[..] -> [product]`.
    Flatten,
    /// `[F] -> [out_features]`.
    Linear {
        out_features: usize,
        bias: bool,
    },
    Identity,
    /// Outputs zeros of the input's shape (NB201 `none`).
    Zero,
    /// Identity at inference; drops with probability `p` in training.
    Dropout {
        p: f32,
    },
    /// A supernet's mixed edge: `sum_k m_k x_k` over the inputs (same shape), with mixing
    /// weights `m` that are no parameter of the network but fed with every training step
    /// (input `mix:n{id}` of shape `[inputs]`, whose gradient the step outputs): softmax
    /// weights (DARTS), a sampled one-hot (GDAS, SPOS). Training only: derive an
    /// architecture to export or run a network.
    Mix,
}

impl Op {
    /// The op's kind as a short name (`"Conv2d"`, `"Relu"`, ...), for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "Input",
            Op::Conv2d { .. } => "Conv2d",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Relu => "Relu",
            Op::Relu6 => "Relu6",
            Op::Silu => "Silu",
            Op::Gelu => "Gelu",
            Op::Sigmoid => "Sigmoid",
            Op::Add => "Add",
            Op::Concat => "Concat",
            Op::AvgPool { .. } => "AvgPool",
            Op::MaxPool { .. } => "MaxPool",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Flatten => "Flatten",
            Op::Linear { .. } => "Linear",
            Op::Identity => "Identity",
            Op::Zero => "Zero",
            Op::Dropout { .. } => "Dropout",
            Op::Mix => "Mix",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Input shape per sample, e.g. `[3, 32, 32]`.
    pub input: Vec<usize>,
    pub nodes: Vec<Node>,
    pub output: NodeId,
}

/// Builds a graph node by node; every `add` returns the new node's id.
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    input: Vec<usize>,
    nodes: Vec<Node>,
}

impl GraphBuilder {
    /// Starts a graph; the input node has id 0.
    pub fn new(input: &[usize]) -> GraphBuilder {
        GraphBuilder {
            input: input.to_vec(),
            nodes: vec![Node {
                op: Op::Input,
                inputs: vec![],
            }],
        }
    }

    pub fn input(&self) -> NodeId {
        0
    }

    pub fn add(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
        });
        self.nodes.len() - 1
    }

    /// A square convolution with symmetric padding `k / 2 * dilation` (same size at stride 1).
    pub fn conv(
        &mut self,
        x: NodeId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> NodeId {
        self.add(
            Op::Conv2d {
                out_channels,
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [kernel / 2, kernel / 2],
                dilation: [1, 1],
                groups,
                bias: false,
            },
            &[x],
        )
    }

    pub fn batch_norm(&mut self, x: NodeId) -> NodeId {
        self.add(
            Op::BatchNorm {
                eps: 1e-5,
                momentum: 0.1,
            },
            &[x],
        )
    }

    pub fn finish(self, output: NodeId) -> Graph {
        Graph {
            input: self.input,
            nodes: self.nodes,
            output,
        }
    }
}
