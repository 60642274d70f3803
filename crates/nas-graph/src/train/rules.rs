//! The training-mode forward of every op, in standard ONNX ops, and what it saves for the
//! op's reverse-mode rule (in `backward`).
//!
//! Tensors carry the batch axis first; per-sample shapes come from [`Graph::shapes`].

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};
use crate::onnx::export::{Context, emit_node, pads, pair};
use crate::onnx::proto::AttributeProto;

use super::INPUT;
use super::conv_forms::{ConvGeometry, conv_via_matmul, im2col, matmul_is_faster};
use super::emit::Emitter;
use super::nchwc;

/// The ONNX value of node `id` in the training graph.
pub(crate) fn value(id: NodeId) -> String {
    if id == 0 {
        INPUT.to_string()
    } else {
        format!("n{id}")
    }
}

/// What the backward of a node needs from its forward besides its input and output.
pub(crate) enum Saved {
    Plain,
    BatchNorm {
        /// `x - mean`.
        xc: String,
        /// `1 / sqrt(var + eps)`, broadcastable.
        inv: String,
        /// `scale * inv`, broadcastable.
        k: String,
        /// Values per channel (`N * H * W`), a float scalar.
        count: String,
    },
    MaxPool {
        indices: String,
    },
    /// A conv run as im2col + MatMul: its input's patches, which its weight gradient reuses.
    ConvPatches {
        patches: String,
    },
    Silu {
        sigmoid: String,
    },
    Gelu {
        /// `x / sqrt(2)`.
        d: String,
        /// `1 + erf(x / sqrt(2))`.
        a: String,
    },
    Dropout {
        mask: String,
    },
    LayerNorm {
        /// The normalized input `(x - mean) / sqrt(var + eps)`.
        xhat: String,
        /// `1 / sqrt(var + eps)`, `[N, ..., 1]`.
        inv: String,
    },
    /// A mean or last-step pool's step weights, or a max pool's (masked) input.
    TimePool {
        weights: Option<String>,
        masked: Option<String>,
    },
    /// A mixed edge: each input's weight as a `[1]` value (`None` for a `Zero` input, whose
    /// term is left out).
    Mix {
        weights: Vec<Option<String>>,
    },
}

/// Names a BatchNorm forward writes its updated running statistics to.
pub(crate) struct RunningOutputs {
    pub mean: String,
    pub var: String,
}

/// Axes of a `[N, C, ...]` tensor that per-channel statistics reduce over.
pub(crate) fn channel_reduce_axes(rank: usize) -> Vec<i64> {
    std::iter::once(0).chain(2..=rank as i64).collect()
}

/// Emits node `id`'s training-mode forward into `value(id)`.
pub(crate) fn forward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    id: NodeId,
    fed: Option<&str>,
    running: Option<&RunningOutputs>,
) -> Result<Saved, GraphError> {
    let node = &graph.nodes[id];
    let ins: Vec<String> = node.inputs.iter().map(|&i| value(i)).collect();
    let out = value(id);
    let x = ins.first().cloned().unwrap_or_default();
    if let Some(saved) = super::sequence::forward(e, graph, shapes, id, &out) {
        return Ok(saved);
    }
    let conv_geometry = node
        .inputs
        .first()
        .and_then(|&i| ConvGeometry::of(&node.op, shapes[i][0]));
    Ok(match &node.op {
        Op::BatchNorm { eps, momentum } => {
            let s = &shapes[id];
            let c = s[0];
            let axes = channel_reduce_axes(s.len());
            let mean = e.reduce_mean(&x, &axes, true);
            let xc = e.sub(&x, &mean);
            let sq = e.mul(&xc, &xc);
            let var = e.reduce_mean(&sq, &axes, true);
            let eps_c = e.scalar(*eps);
            let ve = e.add(&var, &eps_c);
            let sd = e.op("Sqrt", &[&ve], vec![]);
            let inv = e.op("Reciprocal", &[&sd], vec![]);
            // [C] parameters broadcast against [N, C, ...] as [C, 1, ...].
            let bshape: Vec<i64> = std::iter::once(c as i64)
                .chain(std::iter::repeat_n(1, s.len() - 1))
                .collect();
            let scale_c = format!("n{id}.scale");
            let scale = if s.len() > 1 {
                e.reshape(&scale_c, &bshape)
            } else {
                scale_c.clone()
            };
            let k = e.mul(&scale, &inv);
            // The normalization itself is one pass of ONNX's BatchNormalization (inference
            // form) fed the batch statistics: `xc / sqrt(var + eps) * scale + shift`, fewer
            // full-size tensors written than Mul + Add.
            let zeros = e.shared_tensor(&format!("zeros_{c}"), &[c], || vec![0.0; c]);
            let var_c = e.reshape(&var, &[c as i64]);
            e.op_to(
                "BatchNormalization",
                &[&xc, &scale_c, &format!("n{id}.bias"), &zeros, &var_c],
                &out,
                vec![AttributeProto::float("epsilon", *eps)],
            );
            let count = e.count(&x, s.iter().product(), c);
            if let Some(r) = running {
                // PyTorch: running = (1 - m) * running + m * batch stat, the variance unbiased.
                if e.batch
                    .is_some_and(|b| b * s[1..].iter().product::<usize>() < 2)
                {
                    return Err(GraphError::node(
                        id,
                        &node.op,
                        "training needs more than one value per channel (batch * spatial size >= 2)",
                    ));
                }
                let keep = e.scalar(1.0 - momentum);
                let m = e.scalar(*momentum);
                let mean_c = e.reshape(&mean, &[c as i64]);
                let rm = e.mul(&format!("n{id}.mean"), &keep);
                let bm = e.mul(&mean_c, &m);
                e.op_to("Add", &[&rm, &bm], &r.mean, vec![]);
                let one = e.scalar(1.0);
                let nm1 = e.sub(&count, &one);
                let unbias = e.div(&count, &nm1);
                let factor = e.mul(&unbias, &m);
                let rv = e.mul(&format!("n{id}.var"), &keep);
                let bv = e.mul(&var_c, &factor);
                e.op_to("Add", &[&rv, &bv], &r.var, vec![]);
            }
            Saved::BatchNorm { xc, inv, k, count }
        }
        Op::Conv2d { bias, .. }
            if conv_geometry
                .as_ref()
                .is_some_and(|g| matmul_is_faster(g, [shapes[id][1], shapes[id][2]])) =>
        {
            let g = conv_geometry.as_ref().expect("checked above");
            let bias_name = format!("n{id}.bias");
            let patches = im2col(e, &x, g);
            conv_via_matmul(
                e,
                &patches,
                &format!("n{id}.weight"),
                bias.then_some(bias_name.as_str()),
                g,
                [shapes[id][1], shapes[id][2]],
                Some(&out),
            );
            Saved::ConvPatches { patches }
        }
        Op::Conv2d { bias, .. }
            if conv_geometry
                .as_ref()
                .is_some_and(|g| nchwc_layout(e, g).is_some()) =>
        {
            let g = conv_geometry.as_ref().expect("checked above");
            let layout = nchwc_layout(e, g).expect("checked above");
            let bias_name = format!("n{id}.bias");
            nchwc::conv(
                e,
                &x,
                &format!("n{id}.weight"),
                bias.then_some(bias_name.as_str()),
                g,
                layout,
                e.nchwc_block.expect("a layout needs a block size"),
                Some(&out),
            );
            Saved::Plain
        }
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            let indices = e.fresh("maxpool_indices");
            e.op_multi(
                "MaxPool",
                &[&x],
                &[out.clone(), indices.clone()],
                vec![
                    AttributeProto::ints("kernel_shape", &pair(*kernel)),
                    AttributeProto::ints("strides", &pair(*stride)),
                    AttributeProto::ints("pads", &pads(*padding)),
                ],
            );
            Saved::MaxPool { indices }
        }
        Op::Silu => {
            let sigmoid = e.op("Sigmoid", &[&x], vec![]);
            e.op_to("Mul", &[&x, &sigmoid], &out, vec![]);
            Saved::Silu { sigmoid }
        }
        Op::Gelu => {
            let d = e.scale(&x, std::f32::consts::FRAC_1_SQRT_2);
            let erf = e.op("Erf", &[&d], vec![]);
            let one = e.scalar(1.0);
            let a = e.add(&erf, &one);
            let xa = e.mul(&x, &a);
            let half = e.scalar(0.5);
            e.op_to("Mul", &[&xa, &half], &out, vec![]);
            Saved::Gelu { d, a }
        }
        Op::Dropout { .. } => {
            let mask = fed
                .ok_or_else(|| GraphError::node(id, &node.op, "no dropout mask input"))?
                .to_string();
            e.op_to("Mul", &[&x, &mask], &out, vec![]);
            Saved::Dropout { mask }
        }
        Op::Mix => {
            let m = fed.ok_or_else(|| GraphError::node(id, &node.op, "no mixing weights input"))?;
            mix_forward(e, graph, id, &ins, m, &out)
        }
        op => {
            let ctx = Context {
                in_shapes: node.inputs.iter().map(|&i| shapes[i].as_slice()).collect(),
                input: INPUT,
                batch: e.batch,
            };
            emit_node(&mut e.b, id, op, &ins, &out, &ctx);
            Saved::Plain
        }
    })
}

/// `out = sum_k m[k] x_k`, leaving out `Zero` inputs (their term is exactly zero).
fn mix_forward(
    e: &mut Emitter,
    graph: &Graph,
    id: NodeId,
    ins: &[String],
    m: &str,
    out: &str,
) -> Saved {
    let node = &graph.nodes[id];
    let weights: Vec<Option<String>> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            (graph.nodes[i].op != Op::Zero).then(|| {
                let index = e.ints(&[k as i64]);
                e.op("Gather", &[m, &index], vec![AttributeProto::int("axis", 0)])
            })
        })
        .collect();
    let mut terms: Vec<String> = ins
        .iter()
        .zip(&weights)
        .filter_map(|(x, w)| w.as_ref().map(|w| e.mul(x, w)))
        .collect();
    if terms.is_empty() {
        // Every input is Zero: so is the sum (the first input times its weight).
        let index = e.ints(&[0]);
        let w = e.op("Gather", &[m, &index], vec![AttributeProto::int("axis", 0)]);
        terms.push(e.mul(&ins[0], &w));
    }
    let last = terms.pop().expect("at least one term");
    match terms.into_iter().reduce(|acc, t| e.add(&acc, &t)) {
        Some(acc) => e.op_to("Add", &[&acc, &last], out, vec![]),
        None => e.op_to("Identity", &[&last], out, vec![]),
    }
    Saved::Mix { weights }
}

/// The NCHWc layout of a conv of geometry `g`, where the step uses ONNX Runtime's NCHWc
/// kernels and they take it.
pub(crate) fn nchwc_layout(e: &Emitter, g: &ConvGeometry) -> Option<nchwc::Layout> {
    e.nchwc_block.and_then(|b| nchwc::layout(g, b))
}
