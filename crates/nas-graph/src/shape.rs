//! Validation, shape inference, parameter and FLOP counts.
//!
//! Shapes are per sample (no batch axis). Spatial ops (`Conv2d`, pools, `GlobalAvgPool`) need
//! `[C, H, W]`; `Linear` needs `[F]`; `BatchNorm` normalizes axis 0 of any rank; elementwise
//! ops, `Flatten`, `Identity`, `Zero` and `Dropout` accept any rank. Sequence ops: `Embedding`
//! and `PaddingMask` read token ids `[T]`; `TimePool`, `PositionalEncoding` read `[T, F]`,
//! `Conv1d` reads `[C, T]`; `Dense`, `LayerNorm` and `Softmax` work on the last axis of any
//! rank; `MatMul` needs rank 2 or more.

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op, ParamInit};

/// Parameters and multiply-accumulates of one node, for one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCost {
    pub params: u64,
    pub flops: u64,
}

/// Output size of a convolution or pooling window along one axis (PyTorch/ONNX floor mode):
/// `floor((n + 2p - d(k-1) - 1) / s) + 1`, or `None` when the window does not fit.
pub fn window_out(
    n: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    let padded = n.checked_add(pad.checked_mul(2)?)?;
    if stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

fn product(dims: &[usize]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}

impl Graph {
    /// Checks the graph: node 0 is the only `Input`, nodes are in topological order (inputs
    /// refer to earlier nodes), every op has the right number of inputs of the right rank,
    /// channels divide by groups, `Add` inputs agree in shape, `Concat` inputs agree in all
    /// but the channel axis, every size is non-zero and the output id exists.
    pub fn validate(&self) -> Result<(), GraphError> {
        self.shapes().map(|_| ())
    }

    /// The per-sample output shape of every node (index = node id), validating on the way.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>, GraphError> {
        if self.nodes.is_empty() {
            return Err(GraphError::Empty);
        }
        if self.input.is_empty() || self.input.contains(&0) {
            return Err(GraphError::BadInputShape {
                shape: self.input.clone(),
                reason: "it must have at least one axis and no zero-sized axis".into(),
            });
        }
        if product(&self.input).is_none() {
            return Err(GraphError::BadInputShape {
                shape: self.input.clone(),
                reason: "its element count overflows".into(),
            });
        }
        if self.output >= self.nodes.len() {
            return Err(GraphError::BadOutput {
                output: self.output,
                len: self.nodes.len(),
            });
        }
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        for (id, node) in self.nodes.iter().enumerate() {
            let op = &node.op;
            let err = |reason: String| GraphError::node(id, op, reason);
            if id == 0 {
                if *op != Op::Input || !node.inputs.is_empty() {
                    return Err(err("node 0 must be an Input with no inputs".to_string()));
                }
                shapes.push(self.input.clone());
                continue;
            }
            if let Some(&bad) = node.inputs.iter().find(|&&i| i >= id) {
                return Err(err(format!(
                    "input {bad} is not an earlier node (nodes must be in topological order)"
                )));
            }
            let ins: Vec<&Vec<usize>> = node.inputs.iter().map(|&i| &shapes[i]).collect();
            let shape = infer(op, &ins).map_err(err)?;
            if shape.is_empty() || shape.contains(&0) || product(&shape).is_none() {
                return Err(err(format!("output shape {shape:?} is empty or too large")));
            }
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// Parameters and FLOPs of every node (index = node id); see [`Graph::param_count`] and
    /// [`Graph::flops`] for the conventions.
    pub fn costs(&self) -> Result<Vec<NodeCost>, GraphError> {
        let shapes = self.shapes()?;
        self.nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                let input = node.inputs.first().map(|&i| shapes[i].as_slice());
                node_cost(&node.op, input, &shapes[id]).ok_or_else(|| {
                    GraphError::node(id, &node.op, "parameter or FLOP count overflows u64")
                })
            })
            .collect()
    }

    /// Number of trainable parameters: conv weights (+ bias), BatchNorm affine scale and shift
    /// (`2 * C`; running statistics are buffers, not parameters), Linear `in * out` (+ bias);
    /// Dense as Linear, LayerNorm `2 * F`, Embedding `vocab * dim`, a learned positional
    /// encoding `T * D`, a Parameter its element count (once, however many nodes read it).
    pub fn param_count(&self) -> Result<u64, GraphError> {
        sum(self.costs()?.iter().map(|c| c.params))
    }

    /// Multiply-accumulates for ONE sample, counted like NAS-Bench-201 (xautodl
    /// `get_model_infos` hooks), so numbers are comparable with its tables:
    /// - `Conv2d`: `H_out * W_out * k_h * k_w * C_in * C_out / groups`, plus
    ///   `C_out * H_out * W_out` with a bias;
    /// - `Linear`: `in * out`, plus `out` with a bias;
    /// - `AvgPool` / `MaxPool`: `C * H_out * W_out * k_h * k_w`;
    /// - `Dense`: `Linear`'s count at every position of the leading axes; `Conv1d`:
    ///   `T * C_in * C_out * k` (+ `C_out * T` with a bias); `MatMul`: `K` per output element;
    /// - `GlobalAvgPool`, `BatchNorm`, activations, `Add`, `Concat` and the rest: 0.
    pub fn flops(&self) -> Result<u64, GraphError> {
        sum(self.costs()?.iter().map(|c| c.flops))
    }

    /// FLOPs for one sample as NASLib's zero-cost data counts them (torchstat-style hooks):
    /// [`Graph::flops`] without Linear bias terms, plus 2 per element for BatchNorm, 1 per
    /// element for ReLU and `C * (H + 1) * (W + 1)` for the global average pool (torchstat's
    /// adaptive-pool formula). Only for comparing with NASLib's numbers.
    pub fn flops_naslib(&self) -> Result<u64, GraphError> {
        let shapes = self.shapes()?;
        let numel = |id: usize| shapes[id].iter().product::<usize>() as u64;
        let (mut extra, mut less) = (0u64, 0u64);
        for (id, node) in self.nodes.iter().enumerate() {
            match &node.op {
                Op::BatchNorm { .. } => extra += 2 * numel(id),
                Op::Relu => extra += numel(id),
                Op::GlobalAvgPool => {
                    if let [c, h, w] = shapes[node.inputs[0]][..] {
                        extra += (c * (h + 1) * (w + 1)) as u64;
                    }
                }
                Op::Linear {
                    out_features,
                    bias: true,
                } => less += *out_features as u64,
                _ => {}
            }
        }
        Ok(self.flops()? + extra - less)
    }

    /// The ids of nodes whose value reaches the output (the output included), ascending.
    pub fn reachable(&self) -> Vec<NodeId> {
        let mut live = vec![false; self.nodes.len()];
        if self.output < self.nodes.len() {
            live[self.output] = true;
        }
        for id in (0..self.nodes.len()).rev() {
            if live[id] {
                for &i in &self.nodes[id].inputs {
                    if i < live.len() {
                        live[i] = true;
                    }
                }
            }
        }
        (0..self.nodes.len()).filter(|&i| live[i]).collect()
    }
}

fn sum(mut it: impl Iterator<Item = u64>) -> Result<u64, GraphError> {
    it.try_fold(0u64, |a, b| a.checked_add(b))
        .ok_or(GraphError::Overflow)
}

fn one<'a>(ins: &[&'a Vec<usize>]) -> Result<&'a Vec<usize>, String> {
    match ins {
        [x] => Ok(x),
        _ => Err(format!("expects exactly 1 input, got {}", ins.len())),
    }
}

fn chw<'a>(ins: &[&'a Vec<usize>]) -> Result<&'a Vec<usize>, String> {
    let x = one(ins)?;
    if x.len() != 3 {
        return Err(format!("expects a [C, H, W] input, got {x:?}"));
    }
    Ok(x)
}

fn positive(name: &str, v: [usize; 2]) -> Result<(), String> {
    if v.contains(&0) {
        return Err(format!("{name} {v:?} must be positive"));
    }
    Ok(())
}

fn spatial(
    x: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Result<[usize; 2], String> {
    let mut out = [0; 2];
    for a in 0..2 {
        out[a] = window_out(x[1 + a], kernel[a], stride[a], padding[a], dilation[a]).ok_or_else(
            || {
                format!(
                    "kernel {kernel:?} (dilation {dilation:?}) does not fit the input {}x{} padded by {padding:?}",
                    x[1], x[2]
                )
            },
        )?;
    }
    Ok(out)
}

fn two<'a>(ins: &[&'a Vec<usize>]) -> Result<(&'a Vec<usize>, &'a Vec<usize>), String> {
    match ins {
        [a, b] => Ok((a, b)),
        _ => Err(format!("expects exactly 2 inputs, got {}", ins.len())),
    }
}

/// The first input, and the optional second one (a mask).
fn one_or_two<'a>(
    ins: &[&'a Vec<usize>],
) -> Result<(&'a Vec<usize>, Option<&'a Vec<usize>>), String> {
    match ins {
        [a] => Ok((a, None)),
        [a, b] => Ok((a, Some(b))),
        _ => Err(format!(
            "expects 1 or 2 inputs (the second a mask), got {}",
            ins.len()
        )),
    }
}

/// A `[T]` input of token ids.
fn token_ids<'a>(x: &'a Vec<usize>, what: &str) -> Result<&'a Vec<usize>, String> {
    if x.len() != 1 {
        return Err(format!(
            "expects {what} of shape [T], got {x:?} (feed token ids as the graph input)"
        ));
    }
    Ok(x)
}

/// A `[T, F]` (or `[C, T]`) input.
fn rank2<'a>(x: &'a Vec<usize>, layout: &str, hint: &str) -> Result<&'a Vec<usize>, String> {
    if x.len() != 2 {
        return Err(format!("expects a {layout} input, got {x:?}{hint}"));
    }
    Ok(x)
}

/// A `[T]` mask that must match the time axis of `x`'s length `t`.
fn time_mask(mask: Option<&Vec<usize>>, t: usize) -> Result<(), String> {
    match mask {
        Some(m) if m[..] != [t] => Err(format!(
            "the mask input must have shape [{t}] (one value per time step), got {m:?}"
        )),
        _ => Ok(()),
    }
}

/// Whether `perm` is a permutation of `0..rank`.
fn is_permutation(perm: &[usize], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank
        && perm
            .iter()
            .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true))
}

/// Output shape of a sequence op (see [`infer`]).
fn infer_sequence(op: &Op, ins: &[&Vec<usize>]) -> Result<Vec<usize>, String> {
    match op {
        Op::Embedding { vocab, dim } => {
            let x = token_ids(one(ins)?, "token ids")?;
            if *vocab == 0 || *dim == 0 {
                return Err(format!("vocab ({vocab}) and dim ({dim}) must be positive"));
            }
            Ok(vec![x[0], *dim])
        }
        Op::Dense { out_features, .. } => {
            let x = one(ins)?;
            if *out_features == 0 {
                return Err("out_features must be positive".into());
            }
            let mut out = x.clone();
            *out.last_mut().expect("shapes have at least one axis") = *out_features;
            Ok(out)
        }
        Op::LayerNorm { eps } => {
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(format!("eps {eps} must be positive and finite"));
            }
            Ok(one(ins)?.clone())
        }
        Op::Tanh => Ok(one(ins)?.clone()),
        Op::PaddingMask => match one(ins)?.as_slice() {
            [t] | [t, _] => Ok(vec![*t]),
            other => Err(format!(
                "expects token ids [T] or float steps [T, F], got {other:?} (feed the sequence as the graph input)"
            )),
        },
        Op::Scale { factor } => {
            if !factor.is_finite() {
                return Err(format!("factor {factor} must be finite"));
            }
            Ok(one(ins)?.clone())
        }
        Op::Mul | Op::Sub => {
            let (a, b) = two(ins)?;
            if a != b {
                return Err(format!(
                    "both inputs must have the same shape, got {a:?} and {b:?}"
                ));
            }
            Ok(a.clone())
        }
        Op::Transpose { perm } => {
            let x = one(ins)?;
            if !is_permutation(perm, x.len()) {
                return Err(format!(
                    "perm {perm:?} must be a permutation of the {} per-sample axes of {x:?}",
                    x.len()
                ));
            }
            Ok(perm.iter().map(|&p| x[p]).collect())
        }
        Op::Reshape { shape } => {
            let x = one(ins)?;
            if shape.is_empty() || product(shape) != product(x) {
                return Err(format!(
                    "shape {shape:?} must hold as many elements as the input {x:?}"
                ));
            }
            Ok(shape.clone())
        }
        Op::Slice { axis, start, end } => {
            let x = one(ins)?;
            if *axis >= x.len() {
                return Err(format!("axis {axis} does not exist in the input {x:?}"));
            }
            if start >= end || *end > x[*axis] {
                return Err(format!(
                    "range {start}..{end} must be non-empty and within axis {axis} of {x:?}"
                ));
            }
            let mut out = x.clone();
            out[*axis] = end - start;
            Ok(out)
        }
        Op::Parameter { shape, init } => {
            if !ins.is_empty() {
                return Err(format!("takes no inputs, got {}", ins.len()));
            }
            let ok = match init {
                ParamInit::Zeros | ParamInit::Ones | ParamInit::He => true,
                ParamInit::Uniform { bound: v } | ParamInit::Normal { std: v } => {
                    v.is_finite() && *v > 0.0
                }
            };
            if !ok {
                return Err(format!("init {init:?} needs a positive, finite scale"));
            }
            Ok(shape.clone())
        }
        Op::MatMul => {
            let (a, b) = two(ins)?;
            let (ra, rb) = (a.len(), b.len());
            if ra < 2 || ra != rb || a[..ra - 2] != b[..rb - 2] || a[ra - 1] != b[rb - 2] {
                return Err(format!(
                    "expects [..., M, K] and [..., K, N] with equal leading axes, got {a:?} and {b:?} (Reshape or Transpose first)"
                ));
            }
            let mut out = a.clone();
            out[ra - 1] = b[rb - 1];
            Ok(out)
        }
        Op::Softmax => {
            let (x, mask) = one_or_two(ins)?;
            if let Some(m) = mask
                && (m.len() > x.len() || x[x.len() - m.len()..] != m[..])
            {
                return Err(format!(
                    "the mask {m:?} must match the trailing axes of the input {x:?}"
                ));
            }
            Ok(x.clone())
        }
        Op::TimePool { .. } => {
            let (x, mask) = one_or_two(ins)?;
            let x = rank2(x, "[T, F]", " (pool a sequence of features)")?;
            time_mask(mask, x[0])?;
            Ok(vec![x[1]])
        }
        Op::PositionalEncoding { .. } => {
            Ok(rank2(one(ins)?, "[T, D]", " (a sequence of features)")?.clone())
        }
        Op::Conv1d {
            out_channels,
            kernel,
            dilation,
            causal,
            ..
        } => {
            let x = rank2(one(ins)?, "[C, T]", " (Transpose a [T, F] sequence first)")?;
            if *out_channels == 0 || *kernel == 0 || *dilation == 0 {
                return Err(format!(
                    "out_channels ({out_channels}), kernel ({kernel}) and dilation ({dilation}) must be positive"
                ));
            }
            if !causal && !(dilation * (kernel - 1)).is_multiple_of(2) {
                return Err(format!(
                    "a non-causal conv pads dilation * (kernel - 1) = {} evenly on both sides: make it even (odd kernel) or causal",
                    dilation * (kernel - 1)
                ));
            }
            Ok(vec![*out_channels, x[1]])
        }
        _ => unreachable!("infer handles {}", op.kind()),
    }
}

/// Output shape of `op` given its input shapes, or what is wrong.
fn infer(op: &Op, ins: &[&Vec<usize>]) -> Result<Vec<usize>, String> {
    match op {
        Op::Embedding { .. }
        | Op::Dense { .. }
        | Op::LayerNorm { .. }
        | Op::Tanh
        | Op::Mul
        | Op::Sub
        | Op::Scale { .. }
        | Op::Transpose { .. }
        | Op::Reshape { .. }
        | Op::Slice { .. }
        | Op::Parameter { .. }
        | Op::MatMul
        | Op::Softmax
        | Op::PaddingMask
        | Op::TimePool { .. }
        | Op::PositionalEncoding { .. }
        | Op::Conv1d { .. } => infer_sequence(op, ins),
        Op::Input => Err("only node 0 may be an Input".into()),
        Op::Conv2d {
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias: _,
        } => {
            let x = chw(ins)?;
            positive("kernel", *kernel)?;
            positive("stride", *stride)?;
            positive("dilation", *dilation)?;
            if *groups == 0 || *out_channels == 0 {
                return Err(format!(
                    "groups ({groups}) and out_channels ({out_channels}) must be positive"
                ));
            }
            if !x[0].is_multiple_of(*groups) || !out_channels.is_multiple_of(*groups) {
                return Err(format!(
                    "in_channels {} and out_channels {out_channels} must both be divisible by groups {groups}",
                    x[0]
                ));
            }
            let [h, w] = spatial(x, *kernel, *stride, *padding, *dilation)?;
            Ok(vec![*out_channels, h, w])
        }
        Op::BatchNorm { eps, momentum } => {
            let x = one(ins)?;
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(format!("eps {eps} must be positive and finite"));
            }
            if !(0.0..=1.0).contains(momentum) {
                return Err(format!("momentum {momentum} must be in [0, 1]"));
            }
            Ok(x.clone())
        }
        Op::Relu | Op::Relu6 | Op::Silu | Op::Gelu | Op::Sigmoid | Op::Identity | Op::Zero => {
            Ok(one(ins)?.clone())
        }
        Op::Dropout { p } => {
            if !(0.0..1.0).contains(p) {
                return Err(format!("drop probability {p} must be in [0, 1)"));
            }
            Ok(one(ins)?.clone())
        }
        Op::Add | Op::Mix => {
            let first = ins.first().ok_or("expects at least 1 input, got 0")?;
            if let Some(other) = ins.iter().find(|s| *s != first) {
                return Err(format!(
                    "all inputs must have the same shape, got {first:?} and {other:?}"
                ));
            }
            Ok((*first).clone())
        }
        Op::Concat => {
            let first = ins.first().ok_or("expects at least 1 input, got 0")?;
            let mut out = (*first).clone();
            for s in &ins[1..] {
                if s.len() != first.len() || s[1..] != first[1..] {
                    return Err(format!(
                        "inputs must agree on all axes but the channel axis (same H/W), got {first:?} and {s:?}"
                    ));
                }
                out[0] += s[0];
            }
            Ok(out)
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
            ..
        }
        | Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            let x = chw(ins)?;
            positive("kernel", *kernel)?;
            positive("stride", *stride)?;
            // PyTorch's rule; it also guarantees every window holds a real element (no empty
            // average with count_include_pad = false, no -inf max).
            if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
                return Err(format!(
                    "padding {padding:?} must be at most half the kernel {kernel:?}"
                ));
            }
            let [h, w] = spatial(x, *kernel, *stride, *padding, [1, 1])?;
            Ok(vec![x[0], h, w])
        }
        Op::GlobalAvgPool => Ok(vec![chw(ins)?[0]]),
        Op::Flatten => {
            let x = one(ins)?;
            Ok(vec![x.iter().product()])
        }
        Op::Linear { out_features, .. } => {
            let x = one(ins)?;
            if x.len() != 1 {
                return Err(format!(
                    "expects a [F] input, got {x:?} (insert Flatten or GlobalAvgPool first)"
                ));
            }
            if *out_features == 0 {
                return Err("out_features must be positive".into());
            }
            Ok(vec![*out_features])
        }
    }
}

/// Cost of one node; `None` on overflow. `input` is the first input's shape.
fn node_cost(op: &Op, input: Option<&[usize]>, out: &[usize]) -> Option<NodeCost> {
    let zero = NodeCost::default();
    if let Op::Parameter { shape, .. } = op {
        return Some(NodeCost {
            params: product(shape)?,
            flops: 0,
        });
    }
    let Some(x) = input else { return Some(zero) };
    Some(match op {
        Op::Dense { out_features, bias } => {
            let fin = *x.last().expect("shapes have at least one axis");
            let w = product(&[fin, *out_features])?;
            let b = if *bias { *out_features as u64 } else { 0 };
            let positions = product(&x[..x.len() - 1])?;
            NodeCost {
                params: w.checked_add(b)?,
                flops: w.checked_add(b)?.checked_mul(positions)?,
            }
        }
        Op::Embedding { vocab, dim } => NodeCost {
            params: product(&[*vocab, *dim])?,
            flops: 0,
        },
        Op::LayerNorm { .. } => NodeCost {
            params: 2 * *x.last().expect("shapes have at least one axis") as u64,
            flops: 0,
        },
        Op::PositionalEncoding { learned: true } => NodeCost {
            params: product(x)?,
            flops: 0,
        },
        // Every output element takes K multiply-accumulates.
        Op::MatMul => NodeCost {
            params: 0,
            flops: product(out)?.checked_mul(*x.last().expect("rank >= 2") as u64)?,
        },
        Op::Conv1d {
            out_channels,
            kernel,
            bias,
            ..
        } => {
            let per_pos = product(&[x[0], *out_channels, *kernel])?;
            let b = if *bias { *out_channels as u64 } else { 0 };
            NodeCost {
                params: per_pos.checked_add(b)?,
                flops: per_pos.checked_add(b)?.checked_mul(out[1] as u64)?,
            }
        }
        Op::Conv2d {
            out_channels,
            kernel,
            groups,
            bias,
            ..
        } => {
            let per_pos = product(&[x[0] / groups, *out_channels, kernel[0], kernel[1]])?;
            let positions = product(&out[1..])?;
            let b = if *bias { *out_channels as u64 } else { 0 };
            NodeCost {
                params: per_pos.checked_add(b)?,
                flops: per_pos
                    .checked_mul(positions)?
                    .checked_add(b.checked_mul(positions)?)?,
            }
        }
        Op::BatchNorm { .. } => NodeCost {
            params: 2 * x[0] as u64,
            flops: 0,
        },
        Op::Linear { out_features, bias } => {
            let w = product(&[x[0], *out_features])?;
            let b = if *bias { *out_features as u64 } else { 0 };
            NodeCost {
                params: w.checked_add(b)?,
                flops: w.checked_add(b)?,
            }
        }
        Op::AvgPool { kernel, .. } | Op::MaxPool { kernel, .. } => NodeCost {
            params: 0,
            flops: product(out)?.checked_mul(product(kernel)?)?,
        },
        _ => zero,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;

    fn conv(out: usize, k: usize, s: usize, p: usize, d: usize, g: usize, bias: bool) -> Op {
        Op::Conv2d {
            out_channels: out,
            kernel: [k, k],
            stride: [s, s],
            padding: [p, p],
            dilation: [d, d],
            groups: g,
            bias,
        }
    }

    /// conv3x3(3->16) -> BN -> ReLU -> grouped conv3x3/s2(16->32, g4, bias) -> MaxPool3/s2/p1
    /// -> GAP -> Linear(32->10, bias).
    fn small_net() -> Graph {
        let mut b = GraphBuilder::new(&[3, 8, 8]);
        let c1 = b.add(conv(16, 3, 1, 1, 1, 1, false), &[0]);
        let bn = b.batch_norm(c1);
        let r = b.add(Op::Relu, &[bn]);
        let c2 = b.add(conv(32, 3, 2, 1, 1, 4, true), &[r]);
        let mp = b.add(
            Op::MaxPool {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
            },
            &[c2],
        );
        let g = b.add(Op::GlobalAvgPool, &[mp]);
        let l = b.add(
            Op::Linear {
                out_features: 10,
                bias: true,
            },
            &[g],
        );
        b.finish(l)
    }

    #[test]
    fn shapes_params_flops_of_a_small_net() {
        let g = small_net();
        let shapes = g.shapes().unwrap();
        assert_eq!(
            shapes,
            vec![
                vec![3, 8, 8],
                vec![16, 8, 8],
                vec![16, 8, 8],
                vec![16, 8, 8],
                vec![32, 4, 4], // floor((8 + 2 - 2 - 1) / 2) + 1
                vec![32, 2, 2], // floor((4 + 2 - 3) / 2) + 1
                vec![32],
                vec![10],
            ]
        );
        // 3*16*9 + 2*16 + (16/4)*32*9 + 32 + 32*10 + 10
        assert_eq!(g.param_count().unwrap(), 432 + 32 + 1184 + 330);
        // conv1: 8*8*9*3*16; conv2: 4*4*9*16*32/4 + 32*4*4; pool: 32*2*2*9; linear: 320 + 10
        assert_eq!(g.flops().unwrap(), 27648 + (18432 + 512) + 1152 + 330);
        g.validate().unwrap();
    }

    #[test]
    fn dilation_depthwise_and_concat() {
        let mut b = GraphBuilder::new(&[4, 10, 10]);
        // 3x3 dilation 2, no padding: floor((10 - 4 - 1) / 1) + 1 = 6
        let a = b.add(conv(8, 3, 1, 0, 2, 1, false), &[0]);
        // depthwise 5x5 stride 2 pad 2 dilation 1: floor((6 + 4 - 4 - 1) / 2) + 1 = 3
        let d = b.add(conv(8, 5, 2, 2, 1, 8, true), &[a]);
        let p = b.add(
            Op::AvgPool {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
                count_include_pad: false,
            },
            &[a],
        );
        let c = b.add(Op::Concat, &[d, p, d]);
        let f = b.add(Op::Flatten, &[c]);
        let l = b.add(
            Op::Linear {
                out_features: 2,
                bias: false,
            },
            &[f],
        );
        let g = b.finish(l);
        let s = g.shapes().unwrap();
        assert_eq!(s[a], vec![8, 6, 6]);
        assert_eq!(s[d], vec![8, 3, 3]);
        assert_eq!(s[p], vec![8, 3, 3]);
        assert_eq!(s[c], vec![24, 3, 3]);
        assert_eq!(s[f], vec![216]);
        let costs = g.costs().unwrap();
        assert_eq!(costs[a].params, 4 * 8 * 9);
        assert_eq!(costs[a].flops, 6 * 6 * 9 * 4 * 8);
        assert_eq!(costs[d].params, 8 * 25 + 8);
        assert_eq!(costs[d].flops, 3 * 3 * 25 * 8 + 8 * 3 * 3);
        assert_eq!(costs[p].flops, 8 * 3 * 3 * 9);
        assert_eq!(costs[l].params, 216 * 2);
        assert_eq!(costs[l].flops, 216 * 2);
        assert_eq!(costs[c], NodeCost::default());
    }

    #[test]
    fn mlp_on_flat_input() {
        let mut b = GraphBuilder::new(&[5]);
        let l1 = b.add(
            Op::Linear {
                out_features: 7,
                bias: true,
            },
            &[0],
        );
        let bn = b.batch_norm(l1);
        let r = b.add(Op::Gelu, &[bn]);
        let l2 = b.add(
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[r],
        );
        let g = b.finish(l2);
        assert_eq!(g.param_count().unwrap(), 5 * 7 + 7 + 14 + 7 * 3 + 3);
        assert_eq!(g.flops().unwrap(), 5 * 7 + 7 + 7 * 3 + 3);
    }

    fn err_of(g: &Graph) -> String {
        g.validate().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_node_and_op() {
        let mut g = small_net();
        g.nodes[4].op = conv(32, 3, 2, 1, 1, 3, true);
        let e = err_of(&g);
        assert!(
            e.contains("node 4 (Conv2d)") && e.contains("divisible by groups 3"),
            "{e}"
        );

        let mut g = small_net();
        g.nodes[2].inputs = vec![5];
        let e = err_of(&g);
        assert!(
            e.contains("node 2 (BatchNorm)") && e.contains("topological"),
            "{e}"
        );

        let mut g = small_net();
        g.nodes[3].inputs = vec![];
        assert!(err_of(&g).contains("node 3 (Relu): expects exactly 1 input"));

        let mut g = small_net();
        g.nodes.push(crate::ir::Node {
            op: Op::Add,
            inputs: vec![1, 4],
        });
        let e = err_of(&g);
        assert!(
            e.contains("node 8 (Add)") && e.contains("same shape"),
            "{e}"
        );

        let mut g = small_net();
        g.nodes.push(crate::ir::Node {
            op: Op::Concat,
            inputs: vec![1, 4],
        });
        assert!(err_of(&g).contains("node 8 (Concat)"));

        let mut g = small_net();
        g.output = 99;
        assert!(err_of(&g).contains("output id 99"));

        let mut g = small_net();
        g.nodes[0].op = Op::Relu;
        assert!(err_of(&g).contains("node 0 (Relu)"));

        let mut g = small_net();
        g.nodes[7].inputs = vec![5];
        let e = err_of(&g);
        assert!(e.contains("node 7 (Linear)") && e.contains("[F]"), "{e}");

        let mut g = small_net();
        g.input = vec![3, 0, 8];
        assert!(matches!(
            g.validate(),
            Err(GraphError::BadInputShape { .. })
        ));

        let mut g = small_net();
        g.input = vec![3, 2, 2];
        g.nodes[1].op = conv(16, 3, 1, 0, 1, 1, false);
        let e = err_of(&g);
        assert!(
            e.contains("node 1 (Conv2d)") && e.contains("does not fit"),
            "{e}"
        );

        assert_eq!(
            Graph {
                input: vec![1],
                nodes: vec![],
                output: 0
            }
            .validate(),
            Err(GraphError::Empty)
        );
    }

    #[test]
    fn pool_padding_limited_to_half_kernel() {
        let mut b = GraphBuilder::new(&[2, 6, 6]);
        let p = b.add(
            Op::MaxPool {
                kernel: [2, 2],
                stride: [1, 1],
                padding: [2, 0],
            },
            &[0],
        );
        let e = err_of(&b.finish(p));
        assert!(
            e.contains("node 1 (MaxPool)") && e.contains("half the kernel"),
            "{e}"
        );
    }

    /// ids [6] -> Embedding(10, 4) -> Dense(8) -> LayerNorm -> Transpose -> Conv1d(3, k3,
    /// causal) -> Transpose -> attention scores -> Softmax(mask) -> MatMul -> TimePool -> Dense.
    #[test]
    fn sequence_shapes_params_and_flops() {
        use crate::ir::{ParamInit, TimePoolKind};
        let mut b = GraphBuilder::new(&[6]);
        let e = b.add(Op::Embedding { vocab: 10, dim: 4 }, &[0]);
        let d = b.add(
            Op::Dense {
                out_features: 8,
                bias: true,
            },
            &[e],
        );
        let n = b.add(Op::LayerNorm { eps: 1e-5 }, &[d]);
        let t = b.add(Op::Transpose { perm: vec![1, 0] }, &[n]);
        let c = b.add(
            Op::Conv1d {
                out_channels: 3,
                kernel: 3,
                dilation: 2,
                causal: true,
                bias: false,
            },
            &[t],
        );
        let back = b.add(Op::Transpose { perm: vec![1, 0] }, &[c]);
        let kt = b.add(Op::Transpose { perm: vec![1, 0] }, &[back]);
        let scores = b.add(Op::MatMul, &[back, kt]);
        let mask = b.add(Op::PaddingMask, &[0]);
        let p = b.add(Op::Softmax, &[scores, mask]);
        let ctx = b.add(Op::MatMul, &[p, back]);
        let w = b.add(
            Op::Parameter {
                shape: vec![6, 3],
                init: ParamInit::Zeros,
            },
            &[],
        );
        let sum = b.add(Op::Add, &[ctx, w]);
        let pos = b.add(Op::PositionalEncoding { learned: true }, &[sum]);
        let pool = b.add(
            Op::TimePool {
                kind: TimePoolKind::Mean,
            },
            &[pos, mask],
        );
        let r = b.add(Op::Reshape { shape: vec![1, 3] }, &[pool]);
        let sl = b.add(
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            &[r],
        );
        let g = b.finish(sl);
        let shapes = g.shapes().unwrap();
        assert_eq!(shapes[e], vec![6, 4]);
        assert_eq!(shapes[d], vec![6, 8]);
        assert_eq!(shapes[t], vec![8, 6]);
        assert_eq!(shapes[c], vec![3, 6]);
        assert_eq!(shapes[scores], vec![6, 6]);
        assert_eq!(shapes[mask], vec![6]);
        assert_eq!(shapes[ctx], vec![6, 3]);
        assert_eq!(shapes[w], vec![6, 3]);
        assert_eq!(shapes[pool], vec![3]);
        assert_eq!(shapes[sl], vec![1, 2]);
        let costs = g.costs().unwrap();
        assert_eq!(
            costs[e],
            NodeCost {
                params: 40,
                flops: 0
            }
        );
        assert_eq!(
            costs[d],
            NodeCost {
                params: 4 * 8 + 8,
                flops: 6 * (4 * 8 + 8)
            }
        );
        assert_eq!(costs[n].params, 16);
        assert_eq!(
            costs[c],
            NodeCost {
                params: 8 * 3 * 3,
                flops: 6 * 8 * 3 * 3
            }
        );
        assert_eq!(costs[scores].flops, 6 * 6 * 3);
        assert_eq!(costs[w].params, 18);
        assert_eq!(costs[pos].params, 18);
        assert_eq!(
            g.param_count().unwrap(),
            40 + 40 + 16 + 72 + 18 + 18,
            "every tensor once"
        );
        let specs = crate::weights::parameter_specs(&g).unwrap();
        let trainable: usize = specs
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(trainable as u64, g.param_count().unwrap());
    }

    #[test]
    fn sequence_errors_name_node_op_and_rank() {
        let one = |input: &[usize], op: Op| {
            let mut b = GraphBuilder::new(input);
            let y = b.add(op, &[0]);
            err_of(&b.finish(y))
        };
        let e = one(&[3, 4], Op::Embedding { vocab: 5, dim: 2 });
        assert!(e.contains("node 1 (Embedding)") && e.contains("[T]"), "{e}");
        let e = one(
            &[4, 6, 6],
            Op::TimePool {
                kind: crate::ir::TimePoolKind::Max,
            },
        );
        assert!(
            e.contains("node 1 (TimePool)") && e.contains("[T, F]"),
            "{e}"
        );
        let e = one(
            &[4],
            Op::Conv1d {
                out_channels: 2,
                kernel: 3,
                dilation: 1,
                causal: false,
                bias: false,
            },
        );
        assert!(e.contains("node 1 (Conv1d)") && e.contains("[C, T]"), "{e}");
        let e = one(
            &[4, 8],
            Op::Conv1d {
                out_channels: 2,
                kernel: 2,
                dilation: 1,
                causal: false,
                bias: false,
            },
        );
        assert!(e.contains("evenly") && e.contains("causal"), "{e}");
        let e = one(&[3, 4], Op::Transpose { perm: vec![0, 0] });
        assert!(
            e.contains("node 1 (Transpose)") && e.contains("permutation"),
            "{e}"
        );
        let e = one(&[3, 4], Op::Reshape { shape: vec![5, 2] });
        assert!(e.contains("as many elements"), "{e}");
        let e = one(
            &[3, 4],
            Op::Slice {
                axis: 2,
                start: 0,
                end: 1,
            },
        );
        assert!(e.contains("axis 2 does not exist"), "{e}");
        let e = one(
            &[3, 4],
            Op::Slice {
                axis: 0,
                start: 2,
                end: 4,
            },
        );
        assert!(e.contains("within axis 0"), "{e}");
        let e = one(&[3, 4], Op::MatMul);
        assert!(e.contains("exactly 2 inputs"), "{e}");

        let mut b = GraphBuilder::new(&[3, 4]);
        let m = b.add(Op::MatMul, &[0, 0]);
        let e = err_of(&b.finish(m));
        assert!(
            e.contains("node 1 (MatMul)") && e.contains("[..., K, N]"),
            "{e}"
        );
        let mut b = GraphBuilder::new(&[3, 4]);
        let s = b.add(Op::Softmax, &[0, 0, 0]);
        assert!(err_of(&b.finish(s)).contains("1 or 2 inputs"));
        let mut b = GraphBuilder::new(&[5]);
        let e1 = b.add(Op::Embedding { vocab: 9, dim: 3 }, &[0]);
        let mask = b.add(Op::PaddingMask, &[0]);
        let t = b.add(Op::Transpose { perm: vec![1, 0] }, &[e1]);
        let s = b.add(Op::Softmax, &[t, mask]);
        let ok = b.clone().finish(s);
        ok.validate().unwrap();
        let bad_mask = b.add(Op::Softmax, &[e1, mask]);
        let e = err_of(&b.finish(bad_mask));
        assert!(
            e.contains("node 5 (Softmax)") && e.contains("trailing axes"),
            "{e}"
        );
        let mut b = GraphBuilder::new(&[3]);
        let p = b.add(
            Op::Parameter {
                shape: vec![2],
                init: crate::ir::ParamInit::Normal { std: 0.0 },
            },
            &[],
        );
        assert!(err_of(&b.finish(p)).contains("positive, finite scale"));
    }

    #[test]
    fn reachable_skips_dead_nodes() {
        let mut b = GraphBuilder::new(&[3, 4, 4]);
        let dead = b.add(Op::Relu, &[0]);
        let live = b.add(Op::Sigmoid, &[0]);
        let _ = dead;
        let g = b.finish(live);
        assert_eq!(g.reachable(), vec![0, live]);
    }
}
