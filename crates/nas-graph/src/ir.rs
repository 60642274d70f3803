//! The architecture IR: a typed DAG of layers in topological order.
//!
//! Shapes are per sample (no batch axis): `[C, H, W]` for images, `[F]` after `Flatten`,
//! `[T, F]` for a sequence of features and `[T]` for token ids (float32 values holding exact
//! integers, 0 = padding; [`Op::Embedding`] turns them into vectors). Node 0 is always
//! `Op::Input`; `output` names the node whose value is the network output (logits).
//!
//! Sequence models are built from the primitives below (see [`crate::sequence`] for GRU, LSTM,
//! attention and feed-forward blocks); a tensor used at several places (a recurrent weight
//! applied at every time step) is one [`Op::Parameter`] node read by every step.

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
    /// `[T]` token ids -> `[T, dim]`: row `id` of a learned `[vocab, dim]` table
    /// (`n{id}.weight`). Ids must be integers in `[0, vocab)`; no gradient reaches them.
    Embedding {
        vocab: usize,
        dim: usize,
    },
    /// `[..., F] -> [..., out_features]`: `x W^T + b` over the last axis of any rank (weight
    /// `[out, F]` as `Linear`, bias `[out]`).
    Dense {
        out_features: usize,
        bias: bool,
    },
    /// Normalizes the last axis to mean 0 and (biased) variance 1, then scales and shifts it by
    /// learned `[F]` tensors (`n{id}.scale`, `n{id}.bias`), as `torch.nn.LayerNorm`.
    LayerNorm {
        eps: f32,
    },
    Tanh,
    /// Elementwise product of two inputs of the same shape.
    Mul,
    /// Elementwise difference `inputs[0] - inputs[1]` of two inputs of the same shape.
    Sub,
    /// `x * factor` (e.g. the `1 / sqrt(d)` of attention scores).
    Scale {
        factor: f32,
    },
    /// Permutes the per-sample axes: output axis `i` is input axis `perm[i]`
    /// (`[T, F] -> [F, T]` with `perm = [1, 0]`).
    Transpose {
        perm: Vec<usize>,
    },
    /// The same elements in row-major order with the per-sample shape `shape`.
    Reshape {
        shape: Vec<usize>,
    },
    /// Indices `start..end` of per-sample axis `axis`, which is kept: time step `t` of `[T, F]`
    /// is `Slice { axis: 0, start: t, end: t + 1 }` (`[1, F]`; `Flatten` makes it `[F]`).
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// A learned tensor of per-sample shape `shape` (`n{id}.weight`), the same for every
    /// sample; no inputs. Lets several nodes share one tensor (a recurrent weight read at
    /// every time step). Initialized by `init`.
    Parameter {
        shape: Vec<usize>,
        init: ParamInit,
    },
    /// `a @ b` over the last two axes, batched over the leading per-sample axes (equal, not
    /// broadcast): `[..., M, K] x [..., K, N] -> [..., M, N]`.
    MatMul,
    /// Softmax over the last axis of `inputs[0]`, after adding the optional additive mask
    /// `inputs[1]`, whose shape must be a suffix of the first input's (it is broadcast over
    /// the leading axes), e.g. a [`Op::PaddingMask`] `[T]` against scores `[heads, T, T]`.
    Softmax,
    /// `[T]` token ids -> the `[T]` additive key mask: 0 for tokens, [`MASKED`] for padding
    /// (id 0); or `[T, F]` float steps -> `[T]`, [`MASKED`] where every feature of the step is
    /// 0 (padded float sequences). Read by `Softmax` and `TimePool`; passes no gradient.
    PaddingMask,
    /// `[T, F] -> [F]` over time; with a second input, a `[T]` additive mask (a
    /// [`Op::PaddingMask`]), steps whose mask is not 0 are left out (see [`TimePoolKind`]).
    TimePool {
        kind: TimePoolKind,
    },
    /// Adds a position table to `[T, D]`: a learned `[T, D]` tensor (`n{id}.weight`), or the
    /// fixed sinusoidal table of "Attention is all you need" (`sin` on even, `cos` on odd
    /// features: `pe[t, 2i] = sin(t / 10000^(2i / D))`, `pe[t, 2i + 1] = cos(...)`).
    PositionalEncoding {
        learned: bool,
    },
    /// A 1-D convolution over `[C, T] -> [out_channels, T]` (stride 1, same length): padded by
    /// `dilation * (kernel - 1)` zeros on the left when `causal` (output `t` sees inputs up to
    /// `t`), else by half that on each side (then `dilation * (kernel - 1)` must be even).
    /// Weight `[out, C, kernel]`, bias `[out]`.
    Conv1d {
        out_channels: usize,
        kernel: usize,
        dilation: usize,
        causal: bool,
        bias: bool,
    },
}

/// The additive mask value of a padded position (see [`Op::PaddingMask`]): large enough that
/// `exp` of it is exactly 0 in float32, small enough to stay finite after adding a score.
pub const MASKED: f32 = -1e9;

/// How [`Op::TimePool`] reduces the time axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePoolKind {
    /// The mean over the (unmasked) steps; zeros when every step is masked.
    Mean,
    /// The per-feature maximum over the (unmasked) steps (the first one on ties).
    Max,
    /// The last (unmasked) step; step 0 when every step is masked.
    Last,
}

/// How a parameter tensor starts: chosen per tensor by [`crate::parameter_specs`] (He for conv
/// and dense weights, ...) and given explicitly by an [`Op::Parameter`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ParamInit {
    Zeros,
    Ones,
    /// Kaiming normal on the tensor's fan-in, `std = sqrt(2 / fan_in)`.
    He,
    /// Uniform in `[-bound, bound)` (PyTorch's recurrent layers: `bound = 1 / sqrt(hidden)`).
    Uniform {
        bound: f32,
    },
    Normal {
        std: f32,
    },
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
            Op::Embedding { .. } => "Embedding",
            Op::Dense { .. } => "Dense",
            Op::LayerNorm { .. } => "LayerNorm",
            Op::Tanh => "Tanh",
            Op::Mul => "Mul",
            Op::Sub => "Sub",
            Op::Scale { .. } => "Scale",
            Op::Transpose { .. } => "Transpose",
            Op::Reshape { .. } => "Reshape",
            Op::Slice { .. } => "Slice",
            Op::Parameter { .. } => "Parameter",
            Op::MatMul => "MatMul",
            Op::Softmax => "Softmax",
            Op::PaddingMask => "PaddingMask",
            Op::TimePool { .. } => "TimePool",
            Op::PositionalEncoding { .. } => "PositionalEncoding",
            Op::Conv1d { .. } => "Conv1d",
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

impl Graph {
    /// When the input is token ids (an [`Op::Embedding`] reads it): the number of valid ids,
    /// the smallest vocabulary among those embeddings. `None` for inputs of values. Lets code
    /// that makes up inputs (latency runs, scoring batches) draw ids rather than values.
    pub fn token_vocab(&self) -> Option<usize> {
        self.nodes
            .iter()
            .filter(|n| n.inputs.first() == Some(&0))
            .filter_map(|n| match n.op {
                Op::Embedding { vocab, .. } => Some(vocab),
                _ => None,
            })
            .min()
    }

    /// The input values an [`Op::Embedding`] reads as ids, as positions in the flattened
    /// input with the number of valid ids there: every position for token ids, and each code
    /// feature a table network slices out of its (flattened) input (`Slice` on axis 0, through
    /// `Flatten` / `Reshape`) to embed. Empty for inputs of values. Code that makes up inputs
    /// draws ids below the vocabulary at these positions and values elsewhere.
    pub fn input_ids(&self) -> Vec<(std::ops::Range<usize>, usize)> {
        let Ok(shapes) = self.shapes() else {
            return Vec::new();
        };
        let len: usize = self.input.iter().product();
        // Through ops that keep the flat order back to the input, if they lead there.
        let reaches_input = |mut id: NodeId| loop {
            match self.nodes[id].op {
                Op::Input => return true,
                Op::Flatten | Op::Reshape { .. } => id = self.nodes[id].inputs[0],
                _ => return false,
            }
        };
        let mut out: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
        for n in &self.nodes {
            let Op::Embedding { vocab, .. } = n.op else {
                continue;
            };
            let x = n.inputs[0];
            let range = match self.nodes[x].op {
                Op::Slice {
                    axis: 0,
                    start,
                    end,
                } if reaches_input(self.nodes[x].inputs[0]) => {
                    let inner: usize = shapes[self.nodes[x].inputs[0]][1..].iter().product();
                    start * inner..end * inner
                }
                _ if reaches_input(x) => 0..len,
                _ => continue,
            };
            match out.iter_mut().find(|(r, _)| *r == range) {
                Some((_, v)) => *v = (*v).min(vocab),
                None => out.push((range, vocab)),
            }
        }
        out
    }
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

    /// The per-sample shape of node `id` (validating the nodes so far).
    pub fn shape_of(&self, id: NodeId) -> Result<Vec<usize>, crate::GraphError> {
        if id >= self.nodes.len() {
            return Err(crate::GraphError::BadOutput {
                output: id,
                len: self.nodes.len(),
            });
        }
        let partial = Graph {
            input: self.input.clone(),
            nodes: self.nodes[..=id].to_vec(),
            output: id,
        };
        Ok(partial.shapes()?.swap_remove(id))
    }

    pub fn finish(self, output: NodeId) -> Graph {
        Graph {
            input: self.input,
            nodes: self.nodes,
            output,
        }
    }
}
