//! Validation, shape inference, parameter and FLOP counts.
//!
//! Shapes are per sample (no batch axis). Spatial ops (`Conv2d`, pools, `GlobalAvgPool`) need
//! `[C, H, W]`; `Linear` needs `[F]`; `BatchNorm` normalizes axis 0 of any rank; elementwise
//! ops, `Flatten`, `Identity`, `Zero` and `Dropout` accept any rank.

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};

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
    /// (`2 * C`; running statistics are buffers, not parameters), Linear `in * out` (+ bias).
    pub fn param_count(&self) -> Result<u64, GraphError> {
        sum(self.costs()?.iter().map(|c| c.params))
    }

    /// Multiply-accumulates for ONE sample, counted like NAS-Bench-201 (xautodl
    /// `get_model_infos` hooks), so numbers are comparable with its tables:
    /// - `Conv2d`: `H_out * W_out * k_h * k_w * C_in * C_out / groups`, plus
    ///   `C_out * H_out * W_out` with a bias;
    /// - `Linear`: `in * out`, plus `out` with a bias;
    /// - `AvgPool` / `MaxPool`: `C * H_out * W_out * k_h * k_w`;
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

/// Output shape of `op` given its input shapes, or what is wrong.
fn infer(op: &Op, ins: &[&Vec<usize>]) -> Result<Vec<usize>, String> {
    match op {
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
    let Some(x) = input else { return Some(zero) };
    Some(match op {
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
