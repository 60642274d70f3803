//! The training forms and reverse-mode rules of the sequence ops. Most ops train with their
//! inference form (`onnx::sequence`); LayerNorm and TimePool emit their own forward to keep
//! what their backward reads.

use crate::ir::{Graph, NodeId, Op, TimePoolKind};
use crate::onnx::proto::AttributeProto;
use crate::onnx::sequence::{
    INT64, batched_perm, masked_steps, time_pool_weights, weighted_time_sum,
};

use super::backward::Backward;
use super::emit::Emitter;
use super::rules::{Saved, value};

/// Axes `0..rank` of a value with `rank` axes (batch included) but the last.
fn all_but_last(rank: usize) -> Vec<i64> {
    (0..rank as i64 - 1).collect()
}

/// Emits the training forward of node `id` where it differs from the inference form.
pub(crate) fn forward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    id: NodeId,
    out: &str,
) -> Option<Saved> {
    let node = &graph.nodes[id];
    let ins: Vec<String> = node.inputs.iter().map(|&i| value(i)).collect();
    match &node.op {
        Op::LayerNorm { eps } => {
            let x = &ins[0];
            let mean = e.reduce_mean(x, &[-1], true);
            let xc = e.sub(x, &mean);
            let sq = e.mul(&xc, &xc);
            let var = e.reduce_mean(&sq, &[-1], true);
            let eps_c = e.scalar(*eps);
            let ve = e.add(&var, &eps_c);
            let sd = e.op("Sqrt", &[&ve], vec![]);
            let inv = e.op("Reciprocal", &[&sd], vec![]);
            let xhat = e.mul(&xc, &inv);
            let scaled = e.mul(&xhat, &format!("n{id}.scale"));
            e.op_to("Add", &[&scaled, &format!("n{id}.bias")], out, vec![]);
            Some(Saved::LayerNorm { xhat, inv })
        }
        Op::TimePool { kind } => {
            let x = &ins[0];
            let mask = ins.get(1).map(String::as_str);
            let t = shapes[node.inputs[0]][0];
            Some(match kind {
                TimePoolKind::Max => {
                    let xm = match mask {
                        Some(m) => masked_steps(&mut e.b, id, x, m),
                        None => x.clone(),
                    };
                    e.op_to(
                        "ReduceMax",
                        &[&xm],
                        out,
                        vec![
                            AttributeProto::ints("axes", &[1]),
                            AttributeProto::int("keepdims", 0),
                        ],
                    );
                    Saved::TimePool {
                        weights: None,
                        masked: Some(xm),
                    }
                }
                kind => {
                    let w = time_pool_weights(&mut e.b, &format!("n{id}_pool"), mask, *kind, t);
                    weighted_time_sum(&mut e.b, id, x, &w, out);
                    Saved::TimePool {
                        weights: Some(w),
                        masked: None,
                    }
                }
            })
        }
        _ => None,
    }
}

/// What a sequence rule reads.
pub(crate) struct Site<'a> {
    pub id: NodeId,
    /// Input values and their per-sample shapes.
    pub ins: Vec<String>,
    pub in_shapes: Vec<&'a [usize]>,
    pub y: String,
    pub out_shape: &'a [usize],
    pub dy: &'a str,
    pub need: &'a [bool],
    pub want_bias: bool,
}

/// Emits the backward of sequence op `op`; `false` when `op` is no sequence op.
pub(crate) fn backward(
    e: &mut Emitter,
    op: &Op,
    s: &Site,
    saved: &Saved,
    bw: &mut Backward,
) -> bool {
    let (id, dy) = (s.id, s.dy);
    let need0 = s.need.first().copied().unwrap_or(false);
    let weight = format!("n{id}.weight");
    let rank = s.out_shape.len() + 1;
    match op {
        Op::Embedding { vocab, dim } => {
            // Rows of dy added into the rows of the table they came from; the ids get none.
            let ids = e.op("Cast", &[&s.ins[0]], vec![AttributeProto::int("to", INT64)]);
            let last = e.ints(&[-1]);
            let index = e.op("Unsqueeze", &[&ids, &last], vec![]);
            let zeros = e.zeros(&[*vocab, *dim]);
            let dw = e.op(
                "ScatterND",
                &[&zeros, &index, dy],
                vec![AttributeProto::string("reduction", "add")],
            );
            bw.params.push((weight, dw));
        }
        Op::Dense { bias, .. } => {
            let (fin, out) = (
                *s.in_shapes[0].last().expect("rank >= 1") as i64,
                *s.out_shape.last().expect("rank >= 1") as i64,
            );
            if need0 {
                let dx = e.op("MatMul", &[dy, &weight], vec![]);
                bw.inputs[0] = Some(dx);
            }
            let (dy2, x2) = if rank == 2 {
                (dy.to_string(), s.ins[0].clone())
            } else {
                (e.reshape(dy, &[-1, out]), e.reshape(&s.ins[0], &[-1, fin]))
            };
            let dw = e.op("Gemm", &[&dy2, &x2], vec![AttributeProto::int("transA", 1)]);
            bw.params.push((weight, dw));
            if *bias && s.want_bias {
                let db = e.reduce_sum(dy, &all_but_last(rank), false);
                bw.params.push((format!("n{id}.bias"), db));
            }
        }
        Op::LayerNorm { .. } => {
            let Saved::LayerNorm { xhat, inv } = saved else {
                unreachable!("LayerNorm saves its statistics")
            };
            // dx = inv (g - mean(g) - xhat mean(g xhat)) with g = dy * scale.
            if need0 {
                let g = e.mul(dy, &format!("n{id}.scale"));
                let mg = e.reduce_mean(&g, &[-1], true);
                let gx = e.mul(&g, xhat);
                let mgx = e.reduce_mean(&gx, &[-1], true);
                let c = e.sub(&g, &mg);
                let t = e.mul(xhat, &mgx);
                let d = e.sub(&c, &t);
                bw.inputs[0] = Some(e.mul(&d, inv));
            }
            let dyx = e.mul(dy, xhat);
            let dscale = e.reduce_sum(&dyx, &all_but_last(rank), false);
            bw.params.push((format!("n{id}.scale"), dscale));
            if s.want_bias {
                let dbias = e.reduce_sum(dy, &all_but_last(rank), false);
                bw.params.push((format!("n{id}.bias"), dbias));
            }
        }
        Op::Tanh if need0 => {
            let yy = e.mul(&s.y, &s.y);
            let one = e.scalar(1.0);
            let d = e.sub(&one, &yy);
            bw.inputs[0] = Some(e.mul(dy, &d));
        }
        Op::Mul => {
            for slot in 0..2 {
                if s.need[slot] {
                    bw.inputs[slot] = Some(e.mul(dy, &s.ins[1 - slot]));
                }
            }
        }
        Op::Sub => {
            if need0 {
                bw.inputs[0] = Some(dy.to_string());
            }
            if s.need[1] {
                bw.inputs[1] = Some(e.op("Neg", &[dy], vec![]));
            }
        }
        Op::Scale { factor } if need0 => bw.inputs[0] = Some(e.scale(dy, *factor)),
        Op::Transpose { perm } if need0 => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            bw.inputs[0] = Some(e.transpose(dy, &batched_perm(&inverse)));
        }
        Op::Reshape { .. } if need0 => {
            let dims: Vec<i64> = std::iter::once(0)
                .chain(s.in_shapes[0].iter().map(|&d| d as i64))
                .collect();
            bw.inputs[0] = Some(e.reshape(dy, &dims));
        }
        Op::Slice { axis, start, end } if need0 => {
            // dy back in its place, zeros around.
            let mut pads = vec![0i64; 2 * rank];
            pads[axis + 1] = *start as i64;
            pads[rank + axis + 1] = (s.in_shapes[0][*axis] - end) as i64;
            let p = e.ints(&pads);
            bw.inputs[0] = Some(e.op("Pad", &[dy, &p], vec![]));
        }
        Op::Parameter { .. } => {
            // The same tensor for every sample: the gradients of all samples add up.
            let dw = e.reduce_sum(dy, &[0], false);
            bw.params.push((weight, dw));
        }
        Op::MatMul => {
            let mut swap: Vec<i64> = (0..rank as i64).collect();
            swap.swap(rank - 1, rank - 2);
            if need0 {
                let bt = e.transpose(&s.ins[1], &swap);
                bw.inputs[0] = Some(e.op("MatMul", &[dy, &bt], vec![]));
            }
            if s.need[1] {
                let at = e.transpose(&s.ins[0], &swap);
                bw.inputs[1] = Some(e.op("MatMul", &[&at, dy], vec![]));
            }
        }
        Op::Softmax => {
            // dx = y (dy - sum(dy y)); an additive mask gets dx summed over its broadcast axes.
            if !s.need.iter().any(|&n| n) {
                return true;
            }
            let dyy = e.mul(dy, &s.y);
            let sum = e.reduce_sum(&dyy, &[-1], true);
            let diff = e.sub(dy, &sum);
            let dx = e.mul(&s.y, &diff);
            if s.need.get(1).copied().unwrap_or(false) {
                let k = s.in_shapes[0].len() - s.in_shapes[1].len();
                bw.inputs[1] = Some(if k == 0 {
                    dx.clone()
                } else {
                    let axes: Vec<i64> = (1..=k as i64).collect();
                    e.reduce_sum(&dx, &axes, false)
                });
            }
            if need0 {
                bw.inputs[0] = Some(dx);
            }
        }
        Op::TimePool { .. } if need0 => {
            let Saved::TimePool { weights, masked } = saved else {
                unreachable!("TimePool saves its weights or masked input")
            };
            let one = e.ints(&[1]);
            let dy3 = e.op("Unsqueeze", &[dy, &one], vec![]);
            let w = match (weights, masked) {
                (Some(w), _) => w.clone(),
                (None, Some(xm)) => {
                    // The gradient goes to the first maximal step of each feature.
                    let t = s.in_shapes[0][0] as i64;
                    let arg = e.op(
                        "ArgMax",
                        &[xm],
                        vec![
                            AttributeProto::int("axis", 1),
                            AttributeProto::int("keepdims", 1),
                        ],
                    );
                    let range: Vec<i64> = (0..t).collect();
                    let steps = e.ints(&range);
                    let column = e.reshape(&steps, &[t, 1]);
                    let hit = e.op("Equal", &[&arg, &column], vec![]);
                    e.cast_float(&hit)
                }
                (None, None) => unreachable!("a pool saves one of them"),
            };
            bw.inputs[0] = Some(e.mul(&dy3, &w));
        }
        Op::PositionalEncoding { learned } => {
            if need0 {
                bw.inputs[0] = Some(dy.to_string());
            }
            if *learned {
                let dw = e.reduce_sum(dy, &[0], false);
                bw.params.push((weight, dw));
            }
        }
        Op::Conv1d {
            kernel,
            dilation,
            causal,
            bias,
            ..
        } => conv1d(e, s, *kernel, *dilation, *causal, *bias, bw),
        // PaddingMask passes nothing back; the rest had no input needing a gradient.
        Op::Tanh
        | Op::Scale { .. }
        | Op::Transpose { .. }
        | Op::Reshape { .. }
        | Op::Slice { .. }
        | Op::TimePool { .. }
        | Op::PaddingMask => {}
        _ => return false,
    }
    true
}

/// Conv1d (stride 1): `dx` is a conv of `dy` with the weight's channel axes swapped and its
/// taps reversed, padded by `reach - left` on the left and `left` on the right; `dW[:, :, j]`
/// is `sum_n dy x_j^T`, `x_j` the (padded) input shifted by `j * dilation`; `db` sums `dy`.
fn conv1d(
    e: &mut Emitter,
    s: &Site,
    kernel: usize,
    dilation: usize,
    causal: bool,
    bias: bool,
    bw: &mut Backward,
) {
    let (id, dy, x) = (s.id, s.dy, &s.ins[0]);
    let w = format!("n{id}.weight");
    let reach = dilation * (kernel - 1);
    let left = crate::reference::sequence::conv1d_left_pad(kernel, dilation, causal);
    let t = s.in_shapes[0][1] as i64;
    if s.need[0] {
        let swapped = e.transpose(&w, &[1, 0, 2]);
        let flipped = if kernel == 1 {
            swapped
        } else {
            let starts = e.ints(&[-1]);
            let ends = e.ints(&[-(kernel as i64) - 1]);
            let axes = e.ints(&[2]);
            let steps = e.ints(&[-1]);
            e.op("Slice", &[&swapped, &starts, &ends, &axes, &steps], vec![])
        };
        let dx = e.op(
            "Conv",
            &[dy, &flipped],
            vec![
                AttributeProto::ints("kernel_shape", &[kernel as i64]),
                AttributeProto::ints("pads", &[(reach - left) as i64, left as i64]),
                AttributeProto::ints("dilations", &[dilation as i64]),
            ],
        );
        bw.inputs[0] = Some(dx);
    }
    let padded = if reach == 0 {
        x.clone()
    } else {
        let pads = e.ints(&[0, 0, left as i64, 0, 0, (reach - left) as i64]);
        e.op("Pad", &[x, &pads], vec![])
    };
    let axis2 = e.ints(&[2]);
    let taps: Vec<String> = (0..kernel)
        .map(|j| {
            let from = (j * dilation) as i64;
            let (starts, ends) = (e.ints(&[from]), e.ints(&[from + t]));
            let tap = e.op("Slice", &[&padded, &starts, &ends, &axis2], vec![]);
            let tap_t = e.transpose(&tap, &[0, 2, 1]);
            let per_sample = e.op("MatMul", &[dy, &tap_t], vec![]);
            let summed = e.reduce_sum(&per_sample, &[0], false);
            e.op("Unsqueeze", &[&summed, &axis2], vec![])
        })
        .collect();
    let dw = if taps.len() == 1 {
        taps[0].clone()
    } else {
        let refs: Vec<&str> = taps.iter().map(String::as_str).collect();
        e.op("Concat", &refs, vec![AttributeProto::int("axis", 2)])
    };
    bw.params.push((w, dw));
    if bias && s.want_bias {
        let db = e.reduce_sum(dy, &[0, 2], false);
        bw.params.push((format!("n{id}.bias"), db));
    }
}
