//! Sequence blocks as plain functions over a [`GraphBuilder`], built only from primitive ops
//! (so every ONNX Runtime execution provider trains them): GRU and LSTM unrolled over time,
//! multi-head self-attention and the transformer feed-forward block.
//!
//! Recurrent layers follow PyTorch's gate equations and weight layout. The input projection
//! of every step is one [`Op::Dense`] over the whole `[T, F]` sequence (PyTorch's `weight_ih`
//! `[gates * H, F]` and `bias_ih`); the hidden projection is one [`Op::Parameter`] `[H, gates *
//! H]` (`weight_hh` transposed) and one `[1, gates * H]` (`bias_hh`), read by every step. Each
//! step works on `[1, ...]` rows, so the steps' hidden states `Concat` into `[T, H]`; the
//! initial state is zero, and the terms it would zero are left out of step 0.
//!
//! Initialization: the input projection as any `Dense` (He weight, zero bias), `weight_hh`
//! uniform in `±1 / sqrt(H)` as PyTorch, `bias_hh` zero.

use crate::error::GraphError;
use crate::ir::{GraphBuilder, NodeId, Op, ParamInit};

/// The nodes of an unrolled recurrent layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recurrent {
    /// Every step's hidden state, `[T, H]`.
    pub sequence: NodeId,
    /// The last hidden state, `[H]`.
    pub last: NodeId,
    /// The `Dense` input projection `[T, F] -> [T, gates * H]` (`weight_ih`, `bias_ih`).
    pub input_projection: NodeId,
    /// The `Parameter` `[H, gates * H]`: `weight_hh` transposed.
    pub hidden_weight: NodeId,
    /// The `Parameter` `[1, gates * H]`: `bias_hh`.
    pub hidden_bias: NodeId,
}

/// The nodes of a multi-head self-attention block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    /// `[T, F]`, the input's shape.
    pub output: NodeId,
    /// `Dense` projections `[T, F] -> [T, width]`.
    pub query: NodeId,
    pub key: NodeId,
    pub value: NodeId,
    /// The `Dense` output projection `[T, width] -> [T, F]`.
    pub projection: NodeId,
}

/// The nodes of a feed-forward block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedForward {
    pub output: NodeId,
    /// `Dense` `[.., F] -> [.., hidden]`, then GELU.
    pub up: NodeId,
    /// `Dense` `[.., hidden] -> [.., F]`.
    pub down: NodeId,
}

fn bad(node: NodeId, op: &'static str, reason: String) -> GraphError {
    GraphError::Node { node, op, reason }
}

/// `[T, F]` of node `x`, or an error naming `block`.
fn sequence_shape(
    b: &GraphBuilder,
    x: NodeId,
    block: &'static str,
) -> Result<[usize; 2], GraphError> {
    match b.shape_of(x)?.as_slice() {
        &[t, f] => Ok([t, f]),
        other => Err(bad(
            x,
            block,
            format!("{block} reads a [T, F] sequence, node {x} has shape {other:?}"),
        )),
    }
}

fn dense(b: &mut GraphBuilder, x: NodeId, out_features: usize) -> NodeId {
    b.add(
        Op::Dense {
            out_features,
            bias: true,
        },
        &[x],
    )
}

fn slice(b: &mut GraphBuilder, x: NodeId, axis: usize, start: usize, end: usize) -> NodeId {
    b.add(Op::Slice { axis, start, end }, &[x])
}

/// The projections shared by every step: `(input projection, weight_hh^T, bias_hh)`.
fn recurrent_weights(
    b: &mut GraphBuilder,
    x: NodeId,
    hidden: usize,
    gates: usize,
) -> (NodeId, NodeId, NodeId) {
    let xp = dense(b, x, gates * hidden);
    let w = b.add(
        Op::Parameter {
            shape: vec![hidden, gates * hidden],
            init: ParamInit::Uniform {
                bound: 1.0 / (hidden as f32).sqrt(),
            },
        },
        &[],
    );
    let bias = b.add(
        Op::Parameter {
            shape: vec![1, gates * hidden],
            init: ParamInit::Zeros,
        },
        &[],
    );
    (xp, w, bias)
}

/// Step `t`'s pre-activations `[1, gates * H]`: `x_t W_ih^T + b_ih + h W_hh^T + b_hh` (no
/// `h` term at step 0, where `h = 0`).
fn step_inputs(
    b: &mut GraphBuilder,
    (xp, w, bias): (NodeId, NodeId, NodeId),
    t: usize,
    h: Option<NodeId>,
) -> (NodeId, NodeId) {
    let xt = slice(b, xp, 0, t, t + 1);
    let hp = match h {
        None => bias,
        Some(h) => {
            let hw = b.add(Op::MatMul, &[h, w]);
            b.add(Op::Add, &[hw, bias])
        }
    };
    (xt, hp)
}

/// A GRU layer over `x` `[T, F]` with `hidden` units, PyTorch's equations (gate order r, z, n):
///
/// ```text
/// r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
/// z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
/// h' = (1 - z) * n + z * h          (built as n + z * (h - n))
/// ```
pub fn gru(b: &mut GraphBuilder, x: NodeId, hidden: usize) -> Result<Recurrent, GraphError> {
    let [t_len, _] = sequence_shape(b, x, "gru")?;
    if hidden == 0 {
        return Err(bad(x, "gru", "hidden must be positive".into()));
    }
    let weights = recurrent_weights(b, x, hidden, 3);
    let hh = hidden;
    let mut h: Option<NodeId> = None;
    let mut states = Vec::with_capacity(t_len);
    for t in 0..t_len {
        let (xt, hp) = step_inputs(b, weights, t, h);
        let gate = |b: &mut GraphBuilder, k: usize| {
            (
                slice(b, xt, 1, k * hh, (k + 1) * hh),
                slice(b, hp, 1, k * hh, (k + 1) * hh),
            )
        };
        let (xr, hr) = gate(b, 0);
        let (xz, hz) = gate(b, 1);
        let (xn, hn) = gate(b, 2);
        let r_in = b.add(Op::Add, &[xr, hr]);
        let r = b.add(Op::Sigmoid, &[r_in]);
        let z_in = b.add(Op::Add, &[xz, hz]);
        let z = b.add(Op::Sigmoid, &[z_in]);
        let rh = b.add(Op::Mul, &[r, hn]);
        let n_in = b.add(Op::Add, &[xn, rh]);
        let n = b.add(Op::Tanh, &[n_in]);
        let next = match h {
            // h = 0: h' = n - z * n.
            None => {
                let zn = b.add(Op::Mul, &[z, n]);
                b.add(Op::Sub, &[n, zn])
            }
            Some(h) => {
                let d = b.add(Op::Sub, &[h, n]);
                let zd = b.add(Op::Mul, &[z, d]);
                b.add(Op::Add, &[n, zd])
            }
        };
        states.push(next);
        h = Some(next);
    }
    Ok(finish_recurrent(b, weights, &states))
}

/// An LSTM layer over `x` `[T, F]` with `hidden` units, PyTorch's equations (gate order i, f,
/// g, o), zero initial state:
///
/// ```text
/// i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
/// f = sigmoid(W_if x + b_if + W_hf h + b_hf)
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg)
/// o = sigmoid(W_io x + b_io + W_ho h + b_ho)
/// c' = f * c + i * g
/// h' = o * tanh(c')
/// ```
pub fn lstm(b: &mut GraphBuilder, x: NodeId, hidden: usize) -> Result<Recurrent, GraphError> {
    let [t_len, _] = sequence_shape(b, x, "lstm")?;
    if hidden == 0 {
        return Err(bad(x, "lstm", "hidden must be positive".into()));
    }
    let weights = recurrent_weights(b, x, hidden, 4);
    let hh = hidden;
    let (mut h, mut c): (Option<NodeId>, Option<NodeId>) = (None, None);
    let mut states = Vec::with_capacity(t_len);
    for t in 0..t_len {
        let (xt, hp) = step_inputs(b, weights, t, h);
        let gates = b.add(Op::Add, &[xt, hp]);
        let gate = |b: &mut GraphBuilder, k: usize, act: Op| {
            let s = slice(b, gates, 1, k * hh, (k + 1) * hh);
            b.add(act, &[s])
        };
        let i = gate(b, 0, Op::Sigmoid);
        let g = gate(b, 2, Op::Tanh);
        let o = gate(b, 3, Op::Sigmoid);
        let ig = b.add(Op::Mul, &[i, g]);
        let next_c = match c {
            None => ig,
            Some(c) => {
                let f = gate(b, 1, Op::Sigmoid);
                let fc = b.add(Op::Mul, &[f, c]);
                b.add(Op::Add, &[fc, ig])
            }
        };
        let tc = b.add(Op::Tanh, &[next_c]);
        let next_h = b.add(Op::Mul, &[o, tc]);
        states.push(next_h);
        (h, c) = (Some(next_h), Some(next_c));
    }
    Ok(finish_recurrent(b, weights, &states))
}

fn finish_recurrent(
    b: &mut GraphBuilder,
    (xp, w, bias): (NodeId, NodeId, NodeId),
    states: &[NodeId],
) -> Recurrent {
    let sequence = b.add(Op::Concat, states);
    let last = b.add(Op::Flatten, &[*states.last().expect("T >= 1")]);
    Recurrent {
        sequence,
        last,
        input_projection: xp,
        hidden_weight: w,
        hidden_bias: bias,
    }
}

/// Multi-head self-attention over `x` `[T, F]`: `heads` heads of `width / heads` features,
/// `softmax(Q K^T / sqrt(width / heads) + mask) V` per head, heads concatenated and projected
/// back to `F` features. Query, value and output projections have a bias, the key projection
/// none (its gradient would be exactly zero). `mask` is an additive `[T]` key mask (a [`Op::PaddingMask`] of the
/// token ids), or `None`.
pub fn self_attention(
    b: &mut GraphBuilder,
    x: NodeId,
    heads: usize,
    width: usize,
    mask: Option<NodeId>,
) -> Result<Attention, GraphError> {
    let [t, f] = sequence_shape(b, x, "self_attention")?;
    if heads == 0 || width == 0 || !width.is_multiple_of(heads) {
        return Err(bad(
            x,
            "self_attention",
            format!("width {width} must be a positive multiple of heads {heads}"),
        ));
    }
    let dh = width / heads;
    let query = dense(b, x, width);
    // No key bias: it adds `q . b` to a whole row of scores, which softmax ignores.
    let key = b.add(
        Op::Dense {
            out_features: width,
            bias: false,
        },
        &[x],
    );
    let value = dense(b, x, width);
    let split = |b: &mut GraphBuilder, v: NodeId, perm: Vec<usize>| {
        let r = b.add(
            Op::Reshape {
                shape: vec![t, heads, dh],
            },
            &[v],
        );
        b.add(Op::Transpose { perm }, &[r])
    };
    let q = split(b, query, vec![1, 0, 2]); // [heads, T, dh]
    let kt = split(b, key, vec![1, 2, 0]); // [heads, dh, T]
    let v = split(b, value, vec![1, 0, 2]);
    let scores = b.add(Op::MatMul, &[q, kt]);
    let scaled = b.add(
        Op::Scale {
            factor: 1.0 / (dh as f32).sqrt(),
        },
        &[scores],
    );
    let mut softmax_in = vec![scaled];
    softmax_in.extend(mask);
    let attn = b.add(Op::Softmax, &softmax_in);
    let ctx = b.add(Op::MatMul, &[attn, v]); // [heads, T, dh]
    let by_step = b.add(
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[ctx],
    );
    let merged = b.add(
        Op::Reshape {
            shape: vec![t, width],
        },
        &[by_step],
    );
    let projection = dense(b, merged, f);
    b.shape_of(projection)?;
    Ok(Attention {
        output: projection,
        query,
        key,
        value,
        projection,
    })
}

/// The transformer feed-forward block `Dense(hidden) -> GELU -> Dense(F)` over the last axis.
pub fn feed_forward(
    b: &mut GraphBuilder,
    x: NodeId,
    hidden: usize,
) -> Result<FeedForward, GraphError> {
    let shape = b.shape_of(x)?;
    let f = *shape.last().expect("shapes have at least one axis");
    if hidden == 0 {
        return Err(bad(x, "feed_forward", "hidden must be positive".into()));
    }
    let up = dense(b, x, hidden);
    let act = b.add(Op::Gelu, &[up]);
    let down = dense(b, act, f);
    Ok(FeedForward {
        output: down,
        up,
        down,
    })
}
