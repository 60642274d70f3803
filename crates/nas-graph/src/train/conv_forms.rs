//! Two ways to run a dense conv in standard ops, and when each is faster: ONNX Runtime's Conv,
//! or the input's patches (im2col, as a grouped conv with a constant one-hot kernel) times the
//! weight as one MatMul. The weight gradient always uses the patches; the forward and the input
//! gradient use the MatMul form only where ONNX Runtime's Conv (weights given as inputs, so no
//! NCHWc layout) is slow: small images with many input channels, e.g. 64 channels at 7x7, where
//! it ran 4-5x slower than the MatMul form on 2 threads (measured with ONNX Runtime 1.31).

use crate::ir::Op;
use crate::onnx::export::{pads, pair};
use crate::onnx::proto::AttributeProto;

use super::emit::Emitter;

/// A conv's shape parameters, as its backward rules read them.
#[derive(Clone, Copy)]
pub(crate) struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    /// The geometry of a conv op reading `in_channels` channels; `None` for other ops.
    pub(crate) fn of(op: &Op, in_channels: usize) -> Option<ConvGeometry> {
        match *op {
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => Some(ConvGeometry {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
            }),
            _ => None,
        }
    }

    /// The attributes of an ONNX `Conv` (or `ConvTranspose`) of this geometry.
    pub(crate) fn attributes(&self) -> Vec<AttributeProto> {
        vec![
            AttributeProto::ints("kernel_shape", &pair(self.kernel)),
            AttributeProto::ints("strides", &pair(self.stride)),
            AttributeProto::ints("pads", &pads(self.padding)),
            AttributeProto::ints("dilations", &pair(self.dilation)),
            AttributeProto::int("group", self.groups as i64),
        ]
    }
}

/// Whether the MatMul form beats ONNX Runtime's Conv for this conv with output size `out_hw`.
pub(crate) fn matmul_is_faster(g: &ConvGeometry, out_hw: [usize; 2]) -> bool {
    g.groups == 1
        && g.kernel != [1, 1]
        && out_hw[0] * out_hw[1] < 64
        && g.in_channels * g.kernel[0] * g.kernel[1] >= 512
}

/// `[N, C, H, W]` -> `[N, C * kh * kw, Ho, Wo]`: every kernel tap of every channel of a conv
/// of geometry `g` as a channel of its own (tap-major within a channel), by a grouped conv with
/// a constant one-hot kernel shared by every conv with the same channel count and kernel size.
pub(crate) fn im2col(e: &mut Emitter, x: &str, g: &ConvGeometry) -> String {
    let channels = g.in_channels;
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let taps = kh * kw;
    let key = format!("im2col_{channels}x{kh}x{kw}");
    let one_hot = e.shared_tensor(&key, &[channels * taps, 1, kh, kw], || {
        let mut v = vec![0.0f32; channels * taps * taps];
        for ch in 0..channels {
            for t in 0..taps {
                // Output channel ch * taps + t copies kernel element t.
                v[(ch * taps + t) * taps + t] = 1.0;
            }
        }
        v
    });
    // One group per input channel, each copying its taps.
    let per_channel = ConvGeometry {
        groups: channels,
        ..*g
    };
    e.op("Conv", &[x, &one_hot], per_channel.attributes())
}

/// A dense (one group) conv of geometry `g` as patches times weight: `patches` (its input's
/// [`im2col`]) and weight `w` `[Co, C, kh, kw]` give `[Co, C kh kw] x [N, C kh kw, P] ->
/// [N, Co, P]`, plus the bias; written to `out` when given.
pub(crate) fn conv_via_matmul(
    e: &mut Emitter,
    patches: &str,
    w: &str,
    bias: Option<&str>,
    g: &ConvGeometry,
    out_hw: [usize; 2],
    out: Option<&str>,
) -> String {
    let cols = (g.in_channels * g.kernel[0] * g.kernel[1]) as i64;
    let positions = (out_hw[0] * out_hw[1]) as i64;
    let co = g.out_channels as i64;
    let flat = e.reshape(patches, &[0, cols, positions]);
    let w2 = e.reshape(w, &[co, cols]);
    let y = e.op("MatMul", &[&w2, &flat], vec![]);
    let shape = e.ints(&[0, co, out_hw[0] as i64, out_hw[1] as i64]);
    match bias {
        None => {
            let name = out.map_or_else(|| e.fresh("reshape"), str::to_string);
            e.op_to("Reshape", &[&y, &shape], &name, vec![]);
            name
        }
        Some(b) => {
            let y4 = e.op("Reshape", &[&y, &shape], vec![]);
            let b3 = e.reshape(b, &[co, 1, 1]);
            let name = out.map_or_else(|| e.fresh("add"), str::to_string);
            e.op_to("Add", &[&y4, &b3], &name, vec![]);
            name
        }
    }
}
