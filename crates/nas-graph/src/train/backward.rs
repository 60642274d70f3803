//! The reverse-mode rule of every op, in standard ONNX ops: one function per op family, each
//! turning the gradient of a node's output into the gradients of its inputs and parameters.

use crate::ir::{Graph, NodeId, Op};
use crate::onnx::export::{pads, pair};
use crate::onnx::proto::{AttributeProto, TensorProto};

use super::conv_forms::{ConvGeometry, conv_via_matmul, im2col, matmul_is_faster};
use super::emit::Emitter;
use super::nchwc;
use super::rules::nchwc_layout;
use super::rules::{Saved, channel_reduce_axes, value};

/// Gradients a node's backward produced.
#[derive(Default)]
pub(crate) struct Backward {
    /// Per input slot, the gradient of that input (`None` where not needed or zero).
    pub inputs: Vec<Option<String>>,
    /// `(param name, gradient)`.
    pub params: Vec<(String, String)>,
    /// A mixed edge's gradient of its mixing weights, `[inputs]`.
    pub mix: Option<String>,
}

/// Which gradients a node's backward must produce.
pub(crate) struct Wanted<'a> {
    /// Per input slot: whether that input wants a gradient.
    pub inputs: &'a [bool],
    /// `false` where the bias (or BatchNorm shift) gradient is exactly zero (a later BatchNorm
    /// cancels any per-channel shift), so none is computed.
    pub bias: bool,
}

/// What a rule reads of the node it differentiates.
struct Site<'a> {
    id: NodeId,
    /// The first input's value and per-sample shape (empty for none).
    x: String,
    in_shape: &'a [usize],
    /// The node's output value and per-sample shape.
    y: String,
    out_shape: &'a [usize],
    /// The gradient of the output.
    dy: &'a str,
}

impl Backward {
    fn set0(&mut self, g: String) {
        self.inputs[0] = Some(g);
    }
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
    let node = &graph.nodes[id];
    let s = Site {
        id,
        x: node.inputs.first().map(|&i| value(i)).unwrap_or_default(),
        in_shape: node
            .inputs
            .first()
            .map(|&i| shapes[i].as_slice())
            .unwrap_or(&[]),
        y: value(id),
        out_shape: shapes[id].as_slice(),
        dy,
    };
    let mut bw = Backward {
        inputs: vec![None; node.inputs.len()],
        params: Vec::new(),
        mix: None,
    };
    let need0 = need.first().copied().unwrap_or(false);
    let site = super::sequence::Site {
        id,
        ins: node.inputs.iter().map(|&i| value(i)).collect(),
        in_shapes: node.inputs.iter().map(|&i| shapes[i].as_slice()).collect(),
        y: value(id),
        out_shape: &shapes[id],
        dy,
        need,
        want_bias: wanted.bias,
    };
    if super::sequence::backward(e, &node.op, &site, saved, &mut bw) {
        return bw;
    }
    match (&node.op, saved) {
        (Op::Conv2d { .. }, saved) => {
            let patches = match saved {
                Saved::ConvPatches { patches } => Some(patches.as_str()),
                _ => None,
            };
            conv(e, &s, &node.op, patches, need0, wanted.bias, &mut bw)
        }
        (Op::Linear { bias, .. }, _) => linear(e, &s, *bias, need0, wanted.bias, &mut bw),
        (Op::BatchNorm { .. }, Saved::BatchNorm { .. }) => {
            batch_norm(e, &s, saved, need0, wanted.bias, &mut bw)
        }
        (Op::Relu | Op::Relu6 | Op::Sigmoid | Op::Silu | Op::Gelu, _) if need0 => {
            let dx = activation(e, &s, &node.op, saved);
            bw.set0(dx);
        }
        (Op::Add, _) => {
            for (slot, &n) in need.iter().enumerate() {
                if n {
                    bw.inputs[slot] = Some(dy.to_string());
                }
            }
        }
        (Op::Concat, _) if need.iter().any(|&n| n) => {
            let sizes: Vec<i64> = node.inputs.iter().map(|&i| shapes[i][0] as i64).collect();
            concat(e, dy, &sizes, need, &mut bw);
        }
        (Op::AvgPool { .. }, _) if need0 => {
            let dx = avg_pool(e, &s, &node.op);
            bw.set0(dx);
        }
        (Op::MaxPool { .. }, Saved::MaxPool { indices }) if need0 => {
            let dx = max_pool(e, &s, indices);
            bw.set0(dx);
        }
        (Op::GlobalAvgPool, _) if need0 => {
            let dx = global_avg_pool(e, &s);
            bw.set0(dx);
        }
        (Op::Flatten, _) if need0 => {
            let dx = e.reshape(dy, &batched(0, s.in_shape));
            bw.set0(dx);
        }
        (Op::Mix, Saved::Mix { weights }) => {
            let ins: Vec<String> = node.inputs.iter().map(|&i| value(i)).collect();
            mix(e, dy, &ins, weights, need, &mut bw)
        }
        (Op::Identity, _) if need0 => bw.set0(dy.to_string()),
        (Op::Dropout { .. }, Saved::Dropout { mask }) if need0 => {
            let dx = e.mul(dy, mask);
            bw.set0(dx);
        }
        // Zero passes nothing back; the rest had no input needing a gradient.
        _ => {}
    }
    bw
}

/// Conv: the input gradient is a conv of `dy` with the flipped, transposed weight (stride 1) or
/// a transposed conv (strided); the weight gradient comes from the input's patches times `dy`
/// (see [`conv_weight_grad`]; `patches` when the forward made them); the bias gradient sums
/// `dy`.
fn conv(
    e: &mut Emitter,
    s: &Site,
    op: &Op,
    patches: Option<&str>,
    need0: bool,
    want_bias: bool,
    bw: &mut Backward,
) {
    let Op::Conv2d { bias, .. } = *op else {
        unreachable!("conv rule on {}", op.kind())
    };
    let (id, dy) = (s.id, s.dy);
    let w = format!("n{id}.weight");
    let hw = [s.in_shape[1], s.in_shape[2]];
    let geometry = ConvGeometry::of(op, s.in_shape[0]).expect("a conv");
    if need0 {
        let dx = conv_input_grad(e, dy, &w, hw, &geometry);
        bw.set0(dx);
    }
    let out_hw = [s.out_shape[1], s.out_shape[2]];
    let dw = conv_weight_grad(e, &s.x, patches, dy, hw, out_hw, &geometry);
    bw.params.push((w, dw));
    if bias && want_bias {
        let db = e.reduce_sum(dy, &[0, 2, 3], false);
        bw.params.push((format!("n{id}.bias"), db));
    }
}

/// `dx` of a conv. At stride 1 it is an ordinary conv of `dy` with the weight flipped in space
/// and with its channel axes swapped per group, padded by `d (k - 1) - p`: ONNX Runtime's Conv
/// is threaded and 3-5x faster than its ConvTranspose (measured on NAS-Bench-201 shapes).
/// Strided convs (and pads beyond the kernel's reach) take ConvTranspose with the
/// `output_padding` that restores the input size.
fn conv_input_grad(e: &mut Emitter, dy: &str, w: &str, hw: [usize; 2], g: &ConvGeometry) -> String {
    let reach = [
        g.dilation[0] * (g.kernel[0] - 1),
        g.dilation[1] * (g.kernel[1] - 1),
    ];
    if g.stride == [1, 1] && g.padding[0] <= reach[0] && g.padding[1] <= reach[1] {
        let (kh, kw) = (g.kernel[0] as i64, g.kernel[1] as i64);
        let swapped = if g.groups == 1 {
            e.transpose(w, &[1, 0, 2, 3])
        } else {
            // [g * cog, cig, k, k] -> [g * cig, cog, k, k]
            let (gr, cig, cog) = (
                g.groups as i64,
                (g.in_channels / g.groups) as i64,
                (g.out_channels / g.groups) as i64,
            );
            let r5 = e.reshape(w, &[gr, cog, cig, kh, kw]);
            let t5 = e.transpose(&r5, &[0, 2, 1, 3, 4]);
            e.reshape(&t5, &[gr * cig, cog, kh, kw])
        };
        let flipped = if g.kernel == [1, 1] {
            swapped
        } else {
            let starts = e.ints(&[-1, -1]);
            let ends = e.ints(&[-kh - 1, -kw - 1]);
            let axes = e.ints(&[2, 3]);
            let steps = e.ints(&[-1, -1]);
            e.op("Slice", &[&swapped, &starts, &ends, &axes, &steps], vec![])
        };
        let pads = [
            (reach[0] - g.padding[0]) as i64,
            (reach[1] - g.padding[1]) as i64,
        ];
        let transposed = ConvGeometry {
            in_channels: g.out_channels,
            out_channels: g.in_channels,
            padding: [pads[0] as usize, pads[1] as usize],
            ..*g
        };
        if matmul_is_faster(&transposed, hw) {
            let patches = im2col(e, dy, &transposed);
            return conv_via_matmul(e, &patches, &flipped, None, &transposed, hw, None);
        }
        if let Some(layout) = nchwc_layout(e, &transposed) {
            let block = e.nchwc_block.expect("a layout needs a block size");
            return nchwc::conv(e, dy, &flipped, None, &transposed, layout, block, None);
        }
        return e.op("Conv", &[dy, &flipped], transposed.attributes());
    }
    let opad = output_padding(hw, g.kernel, g.stride, g.padding, g.dilation);
    let mut attributes = g.attributes();
    attributes.push(AttributeProto::ints("output_padding", &pair(opad)));
    e.op("ConvTranspose", &[dy, w], attributes)
}

/// Linear `y = x W^T + b`: `dx = dy W`, `dW = dy^T x`, `db = sum dy`.
fn linear(e: &mut Emitter, s: &Site, bias: bool, need0: bool, want_bias: bool, bw: &mut Backward) {
    let (id, dy) = (s.id, s.dy);
    let w = format!("n{id}.weight");
    if need0 {
        let dx = e.op("MatMul", &[dy, &w], vec![]);
        bw.set0(dx);
    }
    let dw = e.op("Gemm", &[dy, &s.x], vec![AttributeProto::int("transA", 1)]);
    bw.params.push((w, dw));
    if bias && want_bias {
        let db = e.reduce_sum(dy, &[0], false);
        bw.params.push((format!("n{id}.bias"), db));
    }
}

/// Training-mode BatchNorm, through the batch statistics.
fn batch_norm(
    e: &mut Emitter,
    s: &Site,
    saved: &Saved,
    need0: bool,
    want_bias: bool,
    bw: &mut Backward,
) {
    let Saved::BatchNorm { xc, inv, k, count } = saved else {
        unreachable!("BatchNorm saves its statistics")
    };
    let (id, dy) = (s.id, s.dy);
    // Per-channel coefficient form: dx = (dy - mean(dy)) * k - xc * k * inv^2 * mean(dy * xc).
    let c = s.out_shape[0] as i64;
    let axes = channel_reduce_axes(s.out_shape.len());
    let s1 = e.reduce_sum(dy, &axes, true);
    let dyxc = e.mul(dy, xc);
    let s2 = e.reduce_sum(&dyxc, &axes, true);
    let s2inv = e.mul(&s2, inv);
    let dscale = e.reshape(&s2inv, &[c]);
    bw.params.push((format!("n{id}.scale"), dscale));
    if want_bias {
        let dbias = e.reshape(&s1, &[c]);
        bw.params.push((format!("n{id}.bias"), dbias));
    }
    if need0 {
        // dx = k dy + a xc + b per channel, with a = -k inv^2 mean(dy xc) and b = -k mean(dy);
        // `a xc + b` is one BatchNormalization pass (mean 0, variance 1, epsilon 0).
        let c = c as usize;
        let m1 = e.div(&s1, count);
        let kinv = e.mul(k, inv);
        let kinv2 = e.mul(&kinv, inv);
        let p = e.div(&s2, count);
        let coef = e.mul(&kinv2, &p);
        let a4 = e.op("Neg", &[&coef], vec![]);
        let km1 = e.mul(k, &m1);
        let b4 = e.op("Neg", &[&km1], vec![]);
        let a = e.reshape(&a4, &[c as i64]);
        let b = e.reshape(&b4, &[c as i64]);
        let zeros = e.shared_tensor(&format!("zeros_{c}"), &[c], || vec![0.0; c]);
        let ones = e.shared_tensor(&format!("ones_{c}"), &[c], || vec![1.0; c]);
        let affine = e.op(
            "BatchNormalization",
            &[xc, &a, &b, &zeros, &ones],
            vec![AttributeProto::float("epsilon", 0.0)],
        );
        let scaled = e.mul(dy, k);
        let dx = e.add(&scaled, &affine);
        bw.set0(dx);
    }
}

/// An elementwise activation: `dx = dy * f'(x)`, with `f'` from the output or saved values.
fn activation(e: &mut Emitter, s: &Site, op: &Op, saved: &Saved) -> String {
    let (dy, x, y) = (s.dy, &s.x, &s.y);
    let deriv = match (op, saved) {
        (Op::Relu, _) => {
            let zero = e.scalar(0.0);
            let pos = e.op("Greater", &[y, &zero], vec![]);
            e.cast_float(&pos)
        }
        (Op::Relu6, _) => {
            let (zero, six) = (e.scalar(0.0), e.scalar(6.0));
            let pos = e.op("Greater", &[y, &zero], vec![]);
            let below = e.op("Less", &[y, &six], vec![]);
            let inside = e.op("And", &[&pos, &below], vec![]);
            e.cast_float(&inside)
        }
        (Op::Sigmoid, _) => {
            // y' = y (1 - y)
            let one = e.scalar(1.0);
            let omy = e.sub(&one, y);
            e.mul(y, &omy)
        }
        (Op::Silu, Saved::Silu { sigmoid }) => {
            // (x s)' = s + x s (1 - s) = s + y (1 - s)
            let one = e.scalar(1.0);
            let oms = e.sub(&one, sigmoid);
            let t = e.mul(y, &oms);
            e.add(sigmoid, &t)
        }
        (Op::Gelu, Saved::Gelu { d, a }) => {
            // GELU' = (1 + erf(x/sqrt2)) / 2 + x * exp(-x^2/2) / sqrt(2 pi)
            let dd = e.mul(d, d);
            let nd = e.op("Neg", &[&dd], vec![]);
            let ex = e.op("Exp", &[&nd], vec![]);
            let xe = e.mul(x, &ex);
            let pdf = e.scale(&xe, 1.0 / (2.0 * std::f32::consts::PI).sqrt());
            let half = e.scale(a, 0.5);
            e.add(&half, &pdf)
        }
        _ => unreachable!("no activation rule for {}", op.kind()),
    };
    e.mul(dy, &deriv)
}

/// Concat along channels: each input gets its slice of `dy`.
fn concat(e: &mut Emitter, dy: &str, sizes: &[i64], need: &[bool], bw: &mut Backward) {
    if sizes.len() == 1 {
        bw.set0(dy.to_string());
        return;
    }
    let split = e.ints(sizes);
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

/// Average pooling: a depthwise transposed conv spreading each output's gradient evenly over
/// its window.
fn avg_pool(e: &mut Emitter, s: &Site, op: &Op) -> String {
    let Op::AvgPool {
        kernel,
        stride,
        padding,
        count_include_pad,
    } = *op
    else {
        unreachable!("average-pool rule on {}", op.kind())
    };
    let dy = s.dy;
    let c = s.in_shape[0];
    let hw = [s.in_shape[1], s.in_shape[2]];
    let ohw = [s.out_shape[1], s.out_shape[2]];
    let area = kernel[0] * kernel[1];
    // Each output spreads dy / (its count) over its window; without padding in the count,
    // the count varies at the borders.
    let per_output = if count_include_pad {
        None
    } else {
        let counts = window_counts(hw, ohw, kernel, stride, padding);
        Some(counts.iter().map(|&n| 1.0 / n as f32).collect::<Vec<f32>>())
    };
    if stride == [1, 1] && kernel[0] == 2 * padding[0] + 1 && kernel[1] == 2 * padding[1] + 1 {
        // A centred stride-1 window is symmetric: the windows covering an input are the
        // window around it, so the spread is an average pool of `dy` (padding counted), 5-10x
        // faster than the transposed conv.
        let spread = match per_output {
            None => dy.to_string(),
            Some(recip) => {
                let scaled: Vec<f32> = recip.iter().map(|r| r * area as f32).collect();
                let t = e.tensor("avgpool_area_over_count", &[ohw[0], ohw[1]], scaled);
                e.mul(dy, &t)
            }
        };
        return e.op(
            "AveragePool",
            &[&spread],
            vec![
                AttributeProto::ints("kernel_shape", &pair(kernel)),
                AttributeProto::ints("pads", &pads(padding)),
                AttributeProto::int("count_include_pad", 1),
            ],
        );
    }
    let (weight, scaled) = match per_output {
        None => {
            let k = e.tensor(
                "avgpool_kernel",
                &[c, 1, kernel[0], kernel[1]],
                vec![1.0 / area as f32; c * area],
            );
            (k, dy.to_string())
        }
        Some(recip) => {
            let k = e.tensor(
                "avgpool_kernel",
                &[c, 1, kernel[0], kernel[1]],
                vec![1.0; c * area],
            );
            let r = e.tensor("avgpool_recip_count", &[ohw[0], ohw[1]], recip);
            (k, e.mul(dy, &r))
        }
    };
    let opad = output_padding(hw, kernel, stride, padding, [1, 1]);
    e.op(
        "ConvTranspose",
        &[&scaled, &weight],
        vec![
            AttributeProto::ints("kernel_shape", &pair(kernel)),
            AttributeProto::ints("strides", &pair(stride)),
            AttributeProto::ints("pads", &pads(padding)),
            AttributeProto::int("group", c as i64),
            AttributeProto::ints("output_padding", &pair(opad)),
        ],
    )
}

/// Max pooling: `dy` scattered to the argmax positions the forward saved.
fn max_pool(e: &mut Emitter, s: &Site, indices: &str) -> String {
    // Indices are flat over the whole unpadded input; overlapping windows add up.
    let total: usize = s.in_shape.iter().product();
    let zeros = match e.batch {
        Some(b) => e.zeros(&[b * total]),
        None => {
            let size = e.op("Size", &[&s.x], vec![]);
            let shape = e.reshape(&size, &[1]);
            e.op(
                "ConstantOfShape",
                &[&shape],
                vec![AttributeProto::tensor(
                    "value",
                    TensorProto::from_f32("", &[1], [0.0]),
                )],
            )
        }
    };
    let idx = e.reshape(indices, &[-1]);
    let upd = e.reshape(s.dy, &[-1]);
    let flat = e.op(
        "ScatterElements",
        &[&zeros, &idx, &upd],
        vec![
            AttributeProto::int("axis", 0),
            AttributeProto::string("reduction", "add"),
        ],
    );
    e.reshape(&flat, &batched(-1, s.in_shape))
}

/// Global average pooling: `dy / (H W)` broadcast over every position.
fn global_avg_pool(e: &mut Emitter, s: &Site) -> String {
    let (c, h, w) = (s.in_shape[0], s.in_shape[1], s.in_shape[2]);
    let d4 = e.reshape(s.dy, &[0, c as i64, 1, 1]);
    let scaled = e.scale(&d4, 1.0 / (h * w) as f32);
    let target = e.ints(&[1, 1, h as i64, w as i64]);
    e.op("Expand", &[&scaled, &target], vec![])
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

/// `dW[co, ci, u, v] = sum_{n,p} dy[n, co, p] * patch(x)[n, ci, u, v, p]`. Two forms, chosen by
/// what ONNX Runtime runs fastest on 2 threads (NAS-Bench-201 and MobileNet shapes):
/// - [`per_sample_correlation`] where each group has one input channel (depthwise) and the
///   patches would be large (kernels above 3x3 or small images): no copy of the input per tap;
/// - otherwise the input's patches (im2col, as a grouped conv with a constant one-hot kernel
///   that copies each tap into a channel of its own; a 1x1 conv's patches are the input itself)
///   times `dy`, one batched MatMul per sample and group, summed over the batch (a fixed batch
///   of 128 or more in chunks of [`WEIGHT_GRAD_CHUNK`] samples, each with its own patches,
///   where the patches are built for the gradient). Against the
///   classic conv of the batch-transposed input with the batch-transposed `dy` as kernel, this
///   is 5-13x faster for dense convs: that conv has a kernel as large as the image and a 3x3
///   output, which ONNX Runtime's conv kernels neither vectorize nor thread well.
fn conv_weight_grad(
    e: &mut Emitter,
    x: &str,
    saved_patches: Option<&str>,
    dy: &str,
    in_hw: [usize; 2],
    out_hw: [usize; 2],
    g: &ConvGeometry,
) -> String {
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let taps = kh * kw;
    let cig = g.in_channels / g.groups;
    let cog = g.out_channels / g.groups;
    let positions = (out_hw[0] * out_hw[1]) as i64;
    if let Some(batch) = e.batch
        && cig == 1
        && (taps > 9 || positions < 256)
    {
        return per_sample_correlation(e, x, dy, batch, in_hw, out_hw, g);
    }
    let summed = if g.kernel == [1, 1] && g.padding == [0, 0] {
        let patches = if g.stride == [1, 1] {
            x.to_string()
        } else {
            let starts = e.ints(&[0, 0]);
            let ends = e.ints(&[i64::MAX, i64::MAX]);
            let axes = e.ints(&[2, 3]);
            let steps = e.ints(&[g.stride[0] as i64, g.stride[1] as i64]);
            e.op("Slice", &[x, &starts, &ends, &axes, &steps], vec![])
        };
        patches_times_dy(e, &patches, dy, positions, g)
    } else if let Some(patches) = saved_patches {
        patches_times_dy(e, patches, dy, positions, g)
    } else {
        if let Some(chunks) = weight_grad_chunks(e.batch) {
            // Per chunk of the batch: its patches, times its dy, summed; then the chunks summed.
            let sizes = e.ints(&chunks);
            let xs: Vec<String> = chunks.iter().map(|_| e.fresh("split")).collect();
            let dys: Vec<String> = chunks.iter().map(|_| e.fresh("split")).collect();
            let axis = || vec![AttributeProto::int("axis", 0)];
            e.op_multi("Split", &[x, &sizes], &xs, axis());
            e.op_multi("Split", &[dy, &sizes], &dys, axis());
            let mut total: Option<String> = None;
            for (xc, dyc) in xs.iter().zip(&dys) {
                let patches = im2col(e, xc, g);
                let part = patches_times_dy(e, &patches, dyc, positions, g);
                total = Some(match total {
                    None => part,
                    Some(t) => e.add(&t, &part),
                });
            }
            total.expect("at least two chunks")
        } else {
            let patches = im2col(e, x, g);
            patches_times_dy(e, &patches, dy, positions, g)
        }
    };
    let (gr, cig, cog) = (g.groups as i64, cig as i64, cog as i64);
    let by_out = e.transpose(&summed, &[0, 2, 1]);
    e.reshape(&by_out, &[gr * cog, cig, kh as i64, kw as i64])
}

/// Samples per chunk of a weight gradient whose im2col patches are built for it. Building
/// and multiplying the patches of 64 samples at a time, rather than of the whole batch at
/// once, was 8-35 % faster for batches of 128 and 256 (3x3 convs, 7x7 to 32x32 images, ONNX
/// Runtime 1.31, 2 threads, AVX-512; docs/performance.md); at 64 samples or fewer, splitting
/// was slower.
const WEIGHT_GRAD_CHUNK: usize = 64;

/// The batch's chunk sizes for [`conv_weight_grad`]; `None` (no split) for a dynamic batch
/// or one under two chunks' worth.
fn weight_grad_chunks(batch: Option<usize>) -> Option<Vec<i64>> {
    let n = batch.filter(|&n| n >= 2 * WEIGHT_GRAD_CHUNK)?;
    Some(
        (0..n)
            .step_by(WEIGHT_GRAD_CHUNK)
            .map(|start| (n - start).min(WEIGHT_GRAD_CHUNK) as i64)
            .collect(),
    )
}

/// `sum_n patches[n] x dy[n]^T` per group: `[N, g, cig * taps, P] x [N, g, P, cog] -> [g,
/// cig * taps, cog]` (one MatMul per sample and group, summed over the batch); the transpose
/// of dy folds into the MatMul (ONNX Runtime fuses it into a transposed-operand MatMul).
fn patches_times_dy(
    e: &mut Emitter,
    patches: &str,
    dy: &str,
    positions: i64,
    g: &ConvGeometry,
) -> String {
    let gr = g.groups as i64;
    let cig = (g.in_channels / g.groups) as i64;
    let cog = (g.out_channels / g.groups) as i64;
    let taps = (g.kernel[0] * g.kernel[1]) as i64;
    let cols = e.reshape(patches, &[0, gr, cig * taps, positions]);
    let dyr = e.reshape(dy, &[0, gr, cog, positions]);
    let dyt = e.transpose(&dyr, &[0, 1, 3, 2]);
    let per_sample = e.op("MatMul", &[&cols, &dyt], vec![]);
    e.reduce_sum(&per_sample, &[0], false)
}

/// The weight gradient of a conv whose groups have one input channel each, as one depthwise
/// conv over the whole batch: the input `[N, C, H, W]` seen as `[1, N C, H, W]`, `dy` as its
/// kernel `[N C m, 1, Ho, Wo]` (`m` outputs per group; strides and dilations swap roles), which
/// gives every sample's `[C m, k, k]` correlation; they are summed over the batch. End pads are
/// chosen so the result is exactly `k x k`; where even a zero end pad is too much, the unused
/// trailing rows/columns of `x` are sliced off. The group count `N C` needs a fixed batch.
fn per_sample_correlation(
    e: &mut Emitter,
    x: &str,
    dy: &str,
    batch: usize,
    mut hw: [usize; 2],
    out_hw: [usize; 2],
    g: &ConvGeometry,
) -> String {
    let (c, co) = (g.in_channels as i64, g.out_channels as i64);
    let (kh, kw) = (g.kernel[0] as i64, g.kernel[1] as i64);
    let mut crop = [0usize; 2];
    let mut end = [0usize; 2];
    for a in 0..2 {
        // Rows of the padded input the forward never reads at the end.
        let r = (hw[a] + 2 * g.padding[a] - g.dilation[a] * (g.kernel[a] - 1) - 1) % g.stride[a];
        // Valid end pads: [p - r, p - r + d - 1].
        let lo = g.padding[a] as i64 - r as i64;
        let hi = lo + g.dilation[a] as i64 - 1;
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
    let flat_x = e.reshape(&xs, &[1, -1, h, w]);
    let kernel = e.reshape(dy, &[-1, 1, out_hw[0] as i64, out_hw[1] as i64]);
    let groups = batch as i64 * c;
    let per_sample = e.op(
        "Conv",
        &[&flat_x, &kernel],
        vec![
            AttributeProto::ints("strides", &pair(g.dilation)),
            AttributeProto::ints("dilations", &pair(g.stride)),
            AttributeProto::ints(
                "pads",
                &[
                    g.padding[0] as i64,
                    g.padding[1] as i64,
                    end[0] as i64,
                    end[1] as i64,
                ],
            ),
            AttributeProto::int("group", groups),
        ],
    );
    let by_sample = e.reshape(&per_sample, &[-1, co, kh, kw]);
    let summed = e.reduce_sum(&by_sample, &[0], false);
    e.reshape(&summed, &[co, 1, kh, kw])
}

/// `dx_k = m_k dy`; `dm_k = sum(dy * x_k)` over the batch and every axis, zero for a `Zero`
/// input (its term was left out of the forward); then `sum(dy)`, the gradient of a constant
/// added to the edge's output (what GDAS gives every unsampled operation).
fn mix(
    e: &mut Emitter,
    dy: &str,
    ins: &[String],
    weights: &[Option<String>],
    need: &[bool],
    bw: &mut Backward,
) {
    let mut parts = Vec::with_capacity(ins.len());
    for (k, (x, w)) in ins.iter().zip(weights).enumerate() {
        let Some(w) = w else {
            parts.push(e.zeros(&[1]));
            continue;
        };
        if need[k] {
            bw.inputs[k] = Some(e.mul(dy, w));
        }
        let prod = e.mul(dy, x);
        let total = e.op(
            "ReduceSum",
            &[&prod],
            vec![AttributeProto::int("keepdims", 0)],
        );
        parts.push(e.reshape(&total, &[1]));
    }
    let total = e.op("ReduceSum", &[dy], vec![AttributeProto::int("keepdims", 0)]);
    parts.push(e.reshape(&total, &[1]));
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    bw.mix = Some(e.op("Concat", &refs, vec![AttributeProto::int("axis", 0)]));
}
