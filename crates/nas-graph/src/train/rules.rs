//! The training-mode forward of every op and its reverse-mode rule, in standard ONNX ops.
//!
//! Tensors carry the batch axis first; per-sample shapes come from [`Graph::shapes`].

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};
use crate::onnx::export::{emit_node, pads, pair};
use crate::onnx::proto::AttributeProto;

use super::INPUT;
use super::emit::Emitter;

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
}

/// Names a BatchNorm forward writes its updated running statistics to.
pub(crate) struct RunningOutputs {
    pub mean: String,
    pub var: String,
}

/// Axes of a `[N, C, ...]` tensor that per-channel statistics reduce over.
fn channel_reduce_axes(rank: usize) -> Vec<i64> {
    std::iter::once(0).chain(2..=rank as i64).collect()
}

/// Emits node `id`'s training-mode forward into `value(id)`.
pub(crate) fn forward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    id: NodeId,
    mask: Option<&str>,
    running: Option<&RunningOutputs>,
) -> Result<Saved, GraphError> {
    let node = &graph.nodes[id];
    let ins: Vec<String> = node.inputs.iter().map(|&i| value(i)).collect();
    let out = value(id);
    let x = ins.first().cloned().unwrap_or_default();
    Ok(match &node.op {
        Op::BatchNorm { eps, momentum } => {
            let s = &shapes[id];
            let c = s[0];
            let axes = channel_reduce_axes(s.len());
            let mean = e.reduce_mean(&x, &axes, true);
            let xc = e.sub(&x, &mean);
            let sq = e.mul(&xc, &xc);
            let var = e.reduce_mean(&sq, &axes, true);
            let eps = e.scalar(*eps);
            let ve = e.add(&var, &eps);
            let sd = e.op("Sqrt", &[&ve], vec![]);
            let inv = e.op("Reciprocal", &[&sd], vec![]);
            // [C] parameters broadcast against [N, C, ...] as [C, 1, ...].
            let bshape: Vec<i64> = std::iter::once(c as i64)
                .chain(std::iter::repeat_n(1, s.len() - 1))
                .collect();
            let param = |e: &mut Emitter, role: &str| {
                let p = format!("n{id}.{role}");
                if s.len() > 1 {
                    e.reshape(&p, &bshape)
                } else {
                    p
                }
            };
            let scale = param(e, "scale");
            let shift = param(e, "bias");
            let k = e.mul(&scale, &inv);
            let xk = e.mul(&xc, &k);
            e.op_to("Add", &[&xk, &shift], &out, vec![]);

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
                let var_c = e.reshape(&var, &[c as i64]);
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
            let mask = mask
                .ok_or_else(|| GraphError::node(id, &node.op, "no dropout mask input"))?
                .to_string();
            e.op_to("Mul", &[&x, &mask], &out, vec![]);
            Saved::Dropout { mask }
        }
        op => {
            emit_node(&mut e.b, id, op, &ins, &out);
            Saved::Plain
        }
    })
}

/// Gradients a node's backward produced.
#[derive(Default)]
pub(crate) struct Backward {
    /// Per input slot, the gradient of that input (`None` where not needed or zero).
    pub inputs: Vec<Option<String>>,
    /// `(param name, gradient)`.
    pub params: Vec<(String, String)>,
}

/// Which gradients a node's backward must produce.
pub(crate) struct Wanted<'a> {
    /// Per input slot: whether that input wants a gradient.
    pub inputs: &'a [bool],
    /// `false` where the bias (or BatchNorm shift) gradient is exactly zero (a later BatchNorm
    /// cancels any per-channel shift), so none is computed.
    pub bias: bool,
}

/// Emits the backward of node `id` given the gradient `dy` of its output.
pub(crate) fn backward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    id: NodeId,
    dy: &str,
    saved: &Saved,
    wanted: &Wanted,
) -> Backward {
    let need = wanted.inputs;
    let zero_bias = !wanted.bias;
    let node = &graph.nodes[id];
    let x = node.inputs.first().map(|&i| value(i)).unwrap_or_default();
    let y = value(id);
    let in_shape = node
        .inputs
        .first()
        .map(|&i| shapes[i].as_slice())
        .unwrap_or(&[]);
    let out_shape = shapes[id].as_slice();
    let mut bw = Backward {
        inputs: vec![None; node.inputs.len()],
        params: Vec::new(),
    };
    let need0 = need.first().copied().unwrap_or(false);
    let set0 = |bw: &mut Backward, g: String| bw.inputs[0] = Some(g);
    match (&node.op, saved) {
        (
            Op::Conv2d {
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            },
            _,
        ) => {
            let w = format!("n{id}.weight");
            let hw = [in_shape[1], in_shape[2]];
            if need0 {
                let opad = output_padding(hw, *kernel, *stride, *padding, *dilation);
                let dx = e.op(
                    "ConvTranspose",
                    &[dy, &w],
                    vec![
                        AttributeProto::ints("kernel_shape", &pair(*kernel)),
                        AttributeProto::ints("strides", &pair(*stride)),
                        AttributeProto::ints("pads", &pads(*padding)),
                        AttributeProto::ints("dilations", &pair(*dilation)),
                        AttributeProto::int("group", *groups as i64),
                        AttributeProto::ints("output_padding", &pair(opad)),
                    ],
                );
                set0(&mut bw, dx);
            }
            let dw = conv_weight_grad(
                e, &x, dy, in_shape, *kernel, *stride, *padding, *dilation, *groups,
            );
            bw.params.push((w, dw));
            if *bias && !zero_bias {
                let db = e.reduce_sum(dy, &[0, 2, 3], false);
                bw.params.push((format!("n{id}.bias"), db));
            }
        }
        (Op::Linear { bias, .. }, _) => {
            let w = format!("n{id}.weight");
            if need0 {
                let dx = e.op("MatMul", &[dy, &w], vec![]);
                set0(&mut bw, dx);
            }
            let dw = e.op("Gemm", &[dy, &x], vec![AttributeProto::int("transA", 1)]);
            bw.params.push((w, dw));
            if *bias && !zero_bias {
                let db = e.reduce_sum(dy, &[0], false);
                bw.params.push((format!("n{id}.bias"), db));
            }
        }
        (Op::BatchNorm { .. }, Saved::BatchNorm { xc, inv, k, count }) => {
            // Per-channel coefficient form: dx = (dy - mean(dy)) * k - xc * k * inv^2 * mean(dy * xc).
            let c = out_shape[0] as i64;
            let axes = channel_reduce_axes(out_shape.len());
            let s1 = e.reduce_sum(dy, &axes, true);
            let dyxc = e.mul(dy, xc);
            let s2 = e.reduce_sum(&dyxc, &axes, true);
            let s2inv = e.mul(&s2, inv);
            let dscale = e.reshape(&s2inv, &[c]);
            bw.params.push((format!("n{id}.scale"), dscale));
            if !zero_bias {
                let dbias = e.reshape(&s1, &[c]);
                bw.params.push((format!("n{id}.bias"), dbias));
            }
            if need0 {
                let m1 = e.div(&s1, count);
                let centred = e.sub(dy, &m1);
                let first = e.mul(&centred, k);
                let kinv = e.mul(k, inv);
                let kinv2 = e.mul(&kinv, inv);
                let p = e.div(&s2, count);
                let coef = e.mul(&kinv2, &p);
                let second = e.mul(xc, &coef);
                let dx = e.sub(&first, &second);
                set0(&mut bw, dx);
            }
        }
        (Op::Relu, _) if need0 => {
            let zero = e.scalar(0.0);
            let pos = e.op("Greater", &[&y, &zero], vec![]);
            let m = e.cast_float(&pos);
            let dx = e.mul(dy, &m);
            set0(&mut bw, dx);
        }
        (Op::Relu6, _) if need0 => {
            let (zero, six) = (e.scalar(0.0), e.scalar(6.0));
            let pos = e.op("Greater", &[&y, &zero], vec![]);
            let below = e.op("Less", &[&y, &six], vec![]);
            let inside = e.op("And", &[&pos, &below], vec![]);
            let m = e.cast_float(&inside);
            let dx = e.mul(dy, &m);
            set0(&mut bw, dx);
        }
        (Op::Sigmoid, _) if need0 => {
            // y' = y (1 - y)
            let one = e.scalar(1.0);
            let omy = e.sub(&one, &y);
            let d = e.mul(&y, &omy);
            let dx = e.mul(dy, &d);
            set0(&mut bw, dx);
        }
        (Op::Silu, Saved::Silu { sigmoid }) if need0 => {
            // (x s)' = s + x s (1 - s) = s + y (1 - s)
            let one = e.scalar(1.0);
            let oms = e.sub(&one, sigmoid);
            let t = e.mul(&y, &oms);
            let d = e.add(sigmoid, &t);
            let dx = e.mul(dy, &d);
            set0(&mut bw, dx);
        }
        (Op::Gelu, Saved::Gelu { d, a }) if need0 => {
            // GELU' = (1 + erf(x/sqrt2)) / 2 + x * exp(-x^2/2) / sqrt(2 pi)
            let dd = e.mul(d, d);
            let nd = e.op("Neg", &[&dd], vec![]);
            let ex = e.op("Exp", &[&nd], vec![]);
            let xe = e.mul(&x, &ex);
            let pdf = e.scale(&xe, 1.0 / (2.0 * std::f32::consts::PI).sqrt());
            let half = e.scale(a, 0.5);
            let deriv = e.add(&half, &pdf);
            let dx = e.mul(dy, &deriv);
            set0(&mut bw, dx);
        }
        (Op::Add, _) => {
            for (slot, &n) in need.iter().enumerate() {
                if n {
                    bw.inputs[slot] = Some(dy.to_string());
                }
            }
        }
        (Op::Concat, _) if need.iter().any(|&n| n) => {
            if node.inputs.len() == 1 {
                set0(&mut bw, dy.to_string());
            } else {
                let sizes: Vec<i64> = node.inputs.iter().map(|&i| shapes[i][0] as i64).collect();
                let split = e.ints(&sizes);
                let outs: Vec<String> = (0..sizes.len()).map(|_| e.fresh("split")).collect();
                e.op_multi(
                    "Split",
                    &[dy, &split],
                    &outs,
                    vec![AttributeProto::int("axis", 1)],
                );
                for (slot, out) in outs.into_iter().enumerate() {
                    if need[slot] {
                        bw.inputs[slot] = Some(out);
                    }
                }
            }
        }
        (
            Op::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
            },
            _,
        ) if need0 => {
            let c = in_shape[0];
            let hw = [in_shape[1], in_shape[2]];
            let ohw = [out_shape[1], out_shape[2]];
            let area = kernel[0] * kernel[1];
            let (weight, scaled) = if *count_include_pad {
                let k = e.tensor(
                    "avgpool_kernel",
                    &[c, 1, kernel[0], kernel[1]],
                    vec![1.0 / area as f32; c * area],
                );
                (k, dy.to_string())
            } else {
                // Each output spreads dy / (its own count of real inputs).
                let k = e.tensor(
                    "avgpool_kernel",
                    &[c, 1, kernel[0], kernel[1]],
                    vec![1.0; c * area],
                );
                let counts = window_counts(hw, ohw, *kernel, *stride, *padding);
                let recip = e.tensor(
                    "avgpool_recip_count",
                    &[ohw[0], ohw[1]],
                    counts.iter().map(|&n| 1.0 / n as f32).collect(),
                );
                (k, e.mul(dy, &recip))
            };
            let opad = output_padding(hw, *kernel, *stride, *padding, [1, 1]);
            let dx = e.op(
                "ConvTranspose",
                &[&scaled, &weight],
                vec![
                    AttributeProto::ints("kernel_shape", &pair(*kernel)),
                    AttributeProto::ints("strides", &pair(*stride)),
                    AttributeProto::ints("pads", &pads(*padding)),
                    AttributeProto::int("group", c as i64),
                    AttributeProto::ints("output_padding", &pair(opad)),
                ],
            );
            set0(&mut bw, dx);
        }
        (Op::MaxPool { .. }, Saved::MaxPool { indices }) if need0 => {
            // Indices are flat over the whole unpadded input; overlapping windows add up.
            let total: usize = in_shape.iter().product();
            let zeros = match e.batch {
                Some(b) => e.zeros(&[b * total]),
                None => {
                    let size = e.op("Size", &[&x], vec![]);
                    let shape = e.reshape(&size, &[1]);
                    e.op(
                        "ConstantOfShape",
                        &[&shape],
                        vec![AttributeProto::tensor(
                            "value",
                            crate::onnx::proto::TensorProto::from_f32("", &[1], [0.0]),
                        )],
                    )
                }
            };
            let idx = e.reshape(indices, &[-1]);
            let upd = e.reshape(dy, &[-1]);
            let flat = e.op(
                "ScatterElements",
                &[&zeros, &idx, &upd],
                vec![
                    AttributeProto::int("axis", 0),
                    AttributeProto::string("reduction", "add"),
                ],
            );
            let dx = e.reshape(&flat, &batched(-1, in_shape));
            set0(&mut bw, dx);
        }
        (Op::GlobalAvgPool, _) if need0 => {
            let (c, h, w) = (in_shape[0], in_shape[1], in_shape[2]);
            let d4 = e.reshape(dy, &[0, c as i64, 1, 1]);
            let scaled = e.scale(&d4, 1.0 / (h * w) as f32);
            let target = e.ints(&[1, 1, h as i64, w as i64]);
            let dx = e.op("Expand", &[&scaled, &target], vec![]);
            set0(&mut bw, dx);
        }
        (Op::Flatten, _) if need0 => {
            let dx = e.reshape(dy, &batched(0, in_shape));
            set0(&mut bw, dx);
        }
        (Op::Identity, _) if need0 => set0(&mut bw, dy.to_string()),
        (Op::Dropout { .. }, Saved::Dropout { mask }) if need0 => {
            let dx = e.mul(dy, mask);
            set0(&mut bw, dx);
        }
        // Zero passes nothing back; the rest had no input needing a gradient.
        _ => {}
    }
    bw
}

/// `[batch_dim, ...shape]` as Reshape dims (`0`: copy the batch, `-1`: infer it).
fn batched(batch_dim: i64, shape: &[usize]) -> Vec<i64> {
    std::iter::once(batch_dim)
        .chain(shape.iter().map(|&d| d as i64))
        .collect()
}

/// ConvTranspose `output_padding` that restores the forward input size exactly:
/// `(H + 2p - d(k-1) - 1) mod s` (without it even sizes at stride 2 come back one short).
fn output_padding(
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> [usize; 2] {
    let mut op = [0; 2];
    for a in 0..2 {
        op[a] = (hw[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) % stride[a];
    }
    op
}

/// For each output position of a pool, how many real (non-padding) inputs its window covers.
fn window_counts(
    hw: [usize; 2],
    ohw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Vec<usize> {
    let covered = |a: usize, o: usize| {
        (0..kernel[a])
            .filter(|&u| {
                let i = o * stride[a] + u;
                i >= padding[a] && i - padding[a] < hw[a]
            })
            .count()
    };
    let mut counts = Vec::with_capacity(ohw[0] * ohw[1]);
    for i in 0..ohw[0] {
        for j in 0..ohw[1] {
            counts.push(covered(0, i) * covered(1, j));
        }
    }
    counts
}

/// `dW[co, ci, u, v] = sum_{n,i,j} dy[n, co, i, j] * xpad[n, g ci, i s + u d, j s + v d]` as one
/// Conv of the batch-transposed input with the batch-transposed `dy` as kernel (strides and
/// dilations swap roles). End pads are chosen so the result is exactly `k x k`; where even a
/// zero end pad is too much, the unused trailing rows/columns of `x` are sliced off.
#[allow(clippy::too_many_arguments)]
fn conv_weight_grad(
    e: &mut Emitter,
    x: &str,
    dy: &str,
    in_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> String {
    let (c, mut hw) = (in_shape[0], [in_shape[1], in_shape[2]]);
    let mut crop = [0usize; 2];
    let mut end = [0usize; 2];
    for a in 0..2 {
        // Rows of the padded input the forward never reads at the end.
        let r = (hw[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) % stride[a];
        // Valid end pads: [p - r, p - r + d - 1].
        let lo = padding[a] as i64 - r as i64;
        let hi = lo + dilation[a] as i64 - 1;
        if lo >= 0 {
            end[a] = lo as usize;
        } else if hi >= 0 {
            end[a] = 0;
        } else {
            crop[a] = (-hi) as usize;
        }
    }
    let xs = if crop != [0, 0] {
        let starts = e.ints(&[0, 0]);
        let ends = e.ints(&[(hw[0] - crop[0]) as i64, (hw[1] - crop[1]) as i64]);
        let axes = e.ints(&[2, 3]);
        hw = [hw[0] - crop[0], hw[1] - crop[1]];
        e.op("Slice", &[x, &starts, &ends, &axes], vec![])
    } else {
        x.to_string()
    };
    let (h, w) = (hw[0] as i64, hw[1] as i64);
    let xt = if groups == 1 {
        e.transpose(&xs, &[1, 0, 2, 3])
    } else {
        // [N, g*cig, H, W] -> [cig, g*N, H, W] so a group-g conv pairs group i of x with
        // group i of dy.
        let cig = (c / groups) as i64;
        let g = groups as i64;
        let r5 = e.reshape(&xs, &[-1, g, cig, h, w]);
        let t5 = e.transpose(&r5, &[2, 1, 0, 3, 4]);
        e.reshape(&t5, &[cig, -1, h, w])
    };
    let dyt = e.transpose(dy, &[1, 0, 2, 3]);
    let gw = e.op(
        "Conv",
        &[&xt, &dyt],
        vec![
            AttributeProto::ints("strides", &pair(dilation)),
            AttributeProto::ints("dilations", &pair(stride)),
            AttributeProto::ints(
                "pads",
                &[
                    padding[0] as i64,
                    padding[1] as i64,
                    end[0] as i64,
                    end[1] as i64,
                ],
            ),
            AttributeProto::int("group", groups as i64),
        ],
    );
    e.transpose(&gw, &[1, 0, 2, 3])
}
