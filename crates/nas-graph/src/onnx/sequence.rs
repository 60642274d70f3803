//! The ONNX form of the sequence ops (inference; the training forward reuses most of it).
//! Values carry the batch axis first, so per-sample axis `a` is ONNX axis `a + 1`.

use super::export::Builder;
use super::proto::{AttributeProto, TensorProto};
use crate::ir::{MASKED, NodeId, Op, TimePoolKind};
use crate::reference::sinusoidal_positions;

/// What an op's ONNX form needs to know beyond its own attributes.
pub(crate) struct Context<'a> {
    /// Per-sample shapes of the node's inputs.
    pub in_shapes: Vec<&'a [usize]>,
    /// The graph input's value (a [`Op::Parameter`] takes its batch size from it).
    pub input: &'a str,
    /// A fixed batch size, or `None` for a dynamic one.
    pub batch: Option<usize>,
}

/// ONNX `TensorProto.DataType` codes for `Cast`.
pub(crate) const FLOAT: i64 = 1;
pub(crate) const INT64: i64 = 7;

/// Emits the inference form of sequence op `op` into `out`; `false` when `op` is no sequence
/// op.
pub(crate) fn emit(
    b: &mut Builder,
    id: NodeId,
    op: &Op,
    ins: &[String],
    out: &str,
    ctx: &Context,
) -> bool {
    let name = format!("n{id}");
    let tmp = |s: &str| format!("n{id}_{s}");
    let x = ins.first().map(String::as_str).unwrap_or_default();
    let weight = format!("n{id}.weight");
    match op {
        Op::Embedding { .. } => {
            let ids = tmp("ids");
            b.node(
                "Cast",
                &ids,
                &[x],
                &ids,
                vec![AttributeProto::int("to", INT64)],
            );
            b.node(
                "Gather",
                &name,
                &[&weight, &ids],
                out,
                vec![AttributeProto::int("axis", 0)],
            );
        }
        Op::Dense { bias, .. } => {
            // x W^T over the last axis of any rank (Gemm only takes matrices).
            let wt = tmp("wt");
            b.node(
                "Transpose",
                &wt,
                &[&weight],
                &wt,
                vec![AttributeProto::ints("perm", &[1, 0])],
            );
            if *bias {
                let xw = tmp("xw");
                b.node("MatMul", &xw, &[x, &wt], &xw, vec![]);
                b.node("Add", &name, &[&xw, &format!("n{id}.bias")], out, vec![]);
            } else {
                b.node("MatMul", &name, &[x, &wt], out, vec![]);
            }
        }
        Op::LayerNorm { eps } => b.node(
            "LayerNormalization",
            &name,
            &[x, &format!("n{id}.scale"), &format!("n{id}.bias")],
            out,
            vec![
                AttributeProto::int("axis", -1),
                AttributeProto::float("epsilon", *eps),
            ],
        ),
        Op::Tanh => b.node("Tanh", &name, &[x], out, vec![]),
        Op::Mul => b.node("Mul", &name, &[x, &ins[1]], out, vec![]),
        Op::Sub => b.node("Sub", &name, &[x, &ins[1]], out, vec![]),
        Op::Scale { factor } => {
            let f = b.scalar(*factor);
            b.node("Mul", &name, &[x, &f], out, vec![]);
        }
        Op::Transpose { perm } => b.node(
            "Transpose",
            &name,
            &[x],
            out,
            vec![AttributeProto::ints("perm", &batched_perm(perm))],
        ),
        Op::Reshape { shape } => {
            let dims: Vec<i64> = std::iter::once(0)
                .chain(shape.iter().map(|&d| d as i64))
                .collect();
            let s = b.ints(&dims);
            b.node("Reshape", &name, &[x, &s], out, vec![]);
        }
        Op::Slice { axis, start, end } => {
            let (s, e, a) = (
                b.ints(&[*start as i64]),
                b.ints(&[*end as i64]),
                b.ints(&[*axis as i64 + 1]),
            );
            b.node("Slice", &name, &[x, &s, &e, &a], out, vec![]);
        }
        Op::Parameter { shape, .. } => {
            let target = batched_shape(b, id, shape, ctx);
            b.node("Expand", &name, &[&weight, &target], out, vec![]);
        }
        Op::MatMul => b.node("MatMul", &name, &[x, &ins[1]], out, vec![]),
        Op::Softmax => {
            let scores = match ins.get(1) {
                Some(mask) => {
                    let m =
                        broadcast_mask(b, id, mask, ctx.in_shapes[0].len(), ctx.in_shapes[1].len());
                    let masked = tmp("masked");
                    b.node("Add", &masked, &[x, &m], &masked, vec![]);
                    masked
                }
                None => x.to_string(),
            };
            b.node(
                "Softmax",
                &name,
                &[&scores],
                out,
                vec![AttributeProto::int("axis", -1)],
            );
        }
        Op::PaddingMask => {
            let zero = b.scalar(0.0);
            let (pad, padf) = (tmp("pad"), tmp("padf"));
            let values = if ctx.in_shapes[0].len() == 2 {
                // Float steps [N, T, F]: a step is padding when its largest |feature| is 0.
                let (abs, top) = (tmp("abs"), tmp("top"));
                b.node("Abs", &abs, &[x], &abs, vec![]);
                b.node(
                    "ReduceMax",
                    &top,
                    &[&abs],
                    &top,
                    vec![
                        AttributeProto::ints("axes", &[2]),
                        AttributeProto::int("keepdims", 0),
                    ],
                );
                top
            } else {
                x.to_string()
            };
            b.node("Equal", &pad, &[&values, &zero], &pad, vec![]);
            b.node(
                "Cast",
                &padf,
                &[&pad],
                &padf,
                vec![AttributeProto::int("to", FLOAT)],
            );
            let big = b.scalar(MASKED);
            b.node("Mul", &name, &[&padf, &big], out, vec![]);
        }
        Op::TimePool { kind } => {
            let t = ctx.in_shapes[0][0];
            match (kind, ins.get(1)) {
                (TimePoolKind::Max, mask) => {
                    let xm = match mask {
                        Some(m) => masked_steps(b, id, x, m),
                        None => x.to_string(),
                    };
                    b.node("ReduceMax", &name, &[&xm], out, reduce_time());
                }
                (TimePoolKind::Mean, None) => {
                    b.node("ReduceMean", &name, &[x], out, reduce_time());
                }
                (TimePoolKind::Last, None) => {
                    let (s, e, a) = (b.ints(&[t as i64 - 1]), b.ints(&[t as i64]), b.ints(&[1]));
                    let last = tmp("last");
                    b.node("Slice", &last, &[x, &s, &e, &a], &last, vec![]);
                    b.node(
                        "Flatten",
                        &name,
                        &[&last],
                        out,
                        vec![AttributeProto::int("axis", 1)],
                    );
                }
                (kind, Some(mask)) => {
                    let w = time_pool_weights(b, &tmp("w"), Some(mask), *kind, t);
                    weighted_time_sum(b, id, x, &w, out);
                }
            }
        }
        Op::PositionalEncoding { learned } => {
            let table = if *learned {
                weight
            } else {
                let (t, d) = (ctx.in_shapes[0][0], ctx.in_shapes[0][1]);
                let name = tmp("positions");
                let pe = sinusoidal_positions(t, d);
                b.initializers.push(TensorProto::from_f32(
                    &name,
                    &[t, d],
                    pe.iter().map(|&v| v as f32),
                ));
                name
            };
            b.node("Add", &name, &[x, &table], out, vec![]);
        }
        Op::Conv1d {
            kernel,
            dilation,
            causal,
            bias,
            ..
        } => {
            let left = crate::reference::sequence::conv1d_left_pad(*kernel, *dilation, *causal);
            let right = dilation * (kernel - 1) - left;
            let bias_name = format!("n{id}.bias");
            let mut inputs = vec![x, weight.as_str()];
            if *bias {
                inputs.push(&bias_name);
            }
            b.node(
                "Conv",
                &name,
                &inputs,
                out,
                vec![
                    AttributeProto::ints("kernel_shape", &[*kernel as i64]),
                    AttributeProto::ints("pads", &[left as i64, right as i64]),
                    AttributeProto::ints("dilations", &[*dilation as i64]),
                ],
            );
        }
        _ => return false,
    }
    true
}

/// A per-sample permutation with the batch axis kept first.
pub(crate) fn batched_perm(perm: &[usize]) -> Vec<i64> {
    std::iter::once(0)
        .chain(perm.iter().map(|&p| p as i64 + 1))
        .collect()
}

/// `[batch, ...shape]` as an int64 shape value.
pub(crate) fn batched_shape(b: &mut Builder, id: NodeId, shape: &[usize], ctx: &Context) -> String {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    match ctx.batch {
        Some(n) => b.ints(&std::iter::once(n as i64).chain(dims).collect::<Vec<_>>()),
        None => {
            let n = format!("n{id}_batch");
            b.node(
                "Shape",
                &n,
                &[ctx.input],
                &n,
                vec![
                    AttributeProto::int("start", 0),
                    AttributeProto::int("end", 1),
                ],
            );
            let rest = b.ints(&dims);
            let shape = format!("n{id}_shape");
            b.node(
                "Concat",
                &shape,
                &[&n, &rest],
                &shape,
                vec![AttributeProto::int("axis", 0)],
            );
            shape
        }
    }
}

/// A `[N, ...suffix]` mask with unit axes after the batch axis, so it broadcasts against a
/// value of per-sample rank `rank` (the mask's per-sample rank is `mask_rank`).
pub(crate) fn broadcast_mask(
    b: &mut Builder,
    id: NodeId,
    mask: &str,
    rank: usize,
    mask_rank: usize,
) -> String {
    if rank == mask_rank {
        return mask.to_string();
    }
    let axes: Vec<i64> = (1..=(rank - mask_rank) as i64).collect();
    let a = b.ints(&axes);
    let m = format!("n{id}_mask");
    b.node("Unsqueeze", &m, &[mask, &a], &m, vec![]);
    m
}

/// ReduceMax / ReduceMean attributes over the time axis (opset 17: axes as an attribute).
fn reduce_time() -> Vec<AttributeProto> {
    vec![
        AttributeProto::ints("axes", &[1]),
        AttributeProto::int("keepdims", 0),
    ]
}

/// `x + mask` per step (`[N, T, F] + [N, T, 1]`): masked steps sink to about [`MASKED`].
pub(crate) fn masked_steps(b: &mut Builder, id: NodeId, x: &str, mask: &str) -> String {
    let a = b.ints(&[2]);
    let (m3, xm) = (format!("n{id}_mask3"), format!("n{id}_masked"));
    b.node("Unsqueeze", &m3, &[mask, &a], &m3, vec![]);
    b.node("Add", &xm, &[x, &m3], &xm, vec![]);
    xm
}

/// The weight of every time step of a mean or last-step pool, to broadcast against
/// `[N, T, F]`: `[T, 1]` constants without a mask; `[N, T, 1]` from a mask (kept steps: mask
/// 0): the mean weighs kept steps `1 / max(kept, 1)`, the last-step pool puts 1 on the last
/// kept step (on step 0 when none is kept: ArgMax takes the first of equal values).
/// Value names start with `prefix`.
pub(crate) fn time_pool_weights(
    b: &mut Builder,
    prefix: &str,
    mask: Option<&str>,
    kind: TimePoolKind,
    t: usize,
) -> String {
    let name = |s: &str| format!("{prefix}_{s}");
    let Some(mask) = mask else {
        let w: Vec<f32> = match kind {
            TimePoolKind::Mean => vec![1.0 / t as f32; t],
            _ => (0..t).map(|s| f32::from(u8::from(s + 1 == t))).collect(),
        };
        let w_name = name("weights");
        b.initializers
            .push(TensorProto::from_f32(&w_name, &[t, 1], w));
        return w_name;
    };
    let zero = b.scalar(0.0);
    let (kept, keptf) = (name("kept"), name("keptf"));
    b.node("Equal", &kept, &[mask, &zero], &kept, vec![]);
    b.node(
        "Cast",
        &keptf,
        &[&kept],
        &keptf,
        vec![AttributeProto::int("to", FLOAT)],
    );
    let w = match kind {
        TimePoolKind::Mean => {
            let (count, clamped, w) = (name("count"), name("clamped"), name("w"));
            let axis = b.ints(&[1]);
            b.node(
                "ReduceSum",
                &count,
                &[&keptf, &axis],
                &count,
                vec![AttributeProto::int("keepdims", 1)],
            );
            let one = b.scalar(1.0);
            b.node("Max", &clamped, &[&count, &one], &clamped, vec![]);
            b.node("Div", &w, &[&keptf, &clamped], &w, vec![]);
            w
        }
        _ => {
            // Kept step s scores s + 1, masked steps 0: the argmax is the last kept step.
            let steps = name("steps");
            b.initializers.push(TensorProto::from_f32(
                &steps,
                &[t],
                (1..=t).map(|s| s as f32),
            ));
            let (score, last, hit, w) = (name("score"), name("last"), name("hit"), name("w"));
            b.node("Mul", &score, &[&keptf, &steps], &score, vec![]);
            b.node(
                "ArgMax",
                &last,
                &[&score],
                &last,
                vec![
                    AttributeProto::int("axis", 1),
                    AttributeProto::int("keepdims", 1),
                ],
            );
            let range: Vec<i64> = (0..t as i64).collect();
            let range = b.ints(&range);
            b.node("Equal", &hit, &[&last, &range], &hit, vec![]);
            b.node(
                "Cast",
                &w,
                &[&hit],
                &w,
                vec![AttributeProto::int("to", FLOAT)],
            );
            w
        }
    };
    let a = b.ints(&[2]);
    let w3 = name("weights");
    b.node("Unsqueeze", &w3, &[&w, &a], &w3, vec![]);
    w3
}

/// `out = sum_t w[t] x[t]` over the time axis of `[N, T, F]`.
pub(crate) fn weighted_time_sum(b: &mut Builder, id: NodeId, x: &str, w: &str, out: &str) {
    let prod = format!("n{id}_weighted");
    b.node("Mul", &prod, &[x, w], &prod, vec![]);
    let axis = b.ints(&[1]);
    b.node(
        "ReduceSum",
        &format!("n{id}"),
        &[&prod, &axis],
        out,
        vec![AttributeProto::int("keepdims", 0)],
    );
}
