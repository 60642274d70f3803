//! ONNX Runtime's blocked-layout ("NCHWc") conv kernels in the training step, CPU only.
//!
//! ONNX Runtime switches an inference model's convs to its NCHWc kernels (channels in blocks
//! of `B`, 8 or 16 by the CPU) only for constant weights, so a training step, whose weights
//! are inputs, got its plain NCHW conv: about 1.5-2x slower on NAS-Bench-201's 3x3 convs. The
//! contrib ops of the `com.microsoft.nchwc` domain take the weight at run time when it is
//! already in the blocked filter layout, so the step reorders each weight in the graph
//! (Reshape + Transpose of a small tensor) and wraps the conv in `ReorderInput` /
//! `ReorderOutput`. These ops exist only in ONNX Runtime's CPU provider: exported models and
//! the steps of other providers keep standard ops.

use crate::onnx::OPSET;
use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
    tensor_proto::DataType,
};

use super::conv_forms::ConvGeometry;
use super::emit::Emitter;

/// The operator domain of ONNX Runtime's NCHWc ops.
pub const DOMAIN: &str = "com.microsoft.nchwc";

/// The block sizes ONNX Runtime's CPU kernels use (AVX-512F: 16, other x86: 8).
pub const BLOCK_SIZES: [usize; 2] = [8, 16];

/// Input of [`probe_model`]: f32 `[1, 4, 1, 1]`.
pub const PROBE_INPUT: &str = "x";
/// Output of [`probe_model`]: f32 `[1, B, 1, 1]`, the 4 channels padded to one block.
pub const PROBE_OUTPUT: &str = "blocked";

/// A one-node model that tells the block size of the ONNX Runtime running it: `ReorderInput`
/// pads [`PROBE_INPUT`]'s 4 channels to one block, so [`PROBE_OUTPUT`]'s dimension 1 is `B`.
pub fn probe_model() -> Vec<u8> {
    use prost::Message;
    let value = |name: &str| ValueInfoProto::unshaped(name, DataType::Float);
    let graph = GraphProto {
        node: vec![NodeProto {
            input: vec![PROBE_INPUT.into()],
            output: vec![PROBE_OUTPUT.into()],
            name: "probe".into(),
            op_type: "ReorderInput".into(),
            domain: DOMAIN.into(),
            ..Default::default()
        }],
        name: "nchwc-probe".into(),
        input: vec![value(PROBE_INPUT)],
        output: vec![value(PROBE_OUTPUT)],
        ..Default::default()
    };
    ModelProto {
        ir_version: crate::onnx::export::IR_VERSION,
        opset_import: opset_imports(true),
        producer_name: "nas-graph".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The model's operator sets: standard ONNX, and the NCHWc domain when `nchwc`.
pub(crate) fn opset_imports(nchwc: bool) -> Vec<OperatorSetIdProto> {
    let mut v = vec![OperatorSetIdProto {
        domain: String::new(),
        version: OPSET,
    }];
    if nchwc {
        v.push(OperatorSetIdProto {
            domain: DOMAIN.into(),
            version: 1,
        });
    }
    v
}

/// Whether any node (If branches included) is of the NCHWc domain.
pub(crate) fn uses_domain(nodes: &[NodeProto]) -> bool {
    nodes.iter().any(|n| {
        n.domain == DOMAIN
            || n.attribute.iter().any(|a| {
                a.g.as_ref().is_some_and(|g| uses_domain(&g.node))
                    || a.graphs.iter().any(|g| uses_domain(&g.node))
            })
    })
}

/// How ONNX Runtime's NCHWc conv reads a conv's input and filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Blocked input, filter `OIHWBiBo` (dense conv, input channels a multiple of `B`).
    Blocked,
    /// Plain NCHW input, filter `OIHWBo` (dense conv with fewer than `B` input channels,
    /// e.g. the RGB stem).
    PlainInput,
    /// Blocked input, filter `OIHWBo` (depthwise: one channel per group).
    Depthwise,
}

/// The layout for a conv of geometry `g` at block size `block`, or `None` where the standard
/// Conv stays: 1x1 convs (the two reorders cost more than the conv gains: 0.6 against 1.0 ms
/// for 64 x 16->16 x 32x32 on 2 threads), output channels not a multiple of the block (the
/// weight and bias would need padding), other grouped convs.
pub(crate) fn layout(g: &ConvGeometry, block: usize) -> Option<Layout> {
    if g.kernel == [1, 1] || !g.out_channels.is_multiple_of(block) {
        return None;
    }
    if g.groups == 1 {
        if g.in_channels.is_multiple_of(block) {
            Some(Layout::Blocked)
        } else if g.in_channels < block {
            Some(Layout::PlainInput)
        } else {
            None
        }
    } else if g.groups == g.in_channels && g.groups == g.out_channels {
        Some(Layout::Depthwise)
    } else {
        None
    }
}

/// Emits a node of the NCHWc domain into a fresh value.
fn op(e: &mut Emitter, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
    let out = e.op(op_type, inputs, attrs);
    e.b.nodes.last_mut().expect("just emitted").domain = DOMAIN.into();
    out
}

/// Weight `w` `[O, C/groups, kh, kw]` in the blocked filter layout of `layout`, same shape.
fn blocked_filter(
    e: &mut Emitter,
    w: &str,
    g: &ConvGeometry,
    layout: Layout,
    block: usize,
) -> String {
    let (o, b) = (g.out_channels as i64, block as i64);
    let ci = (g.in_channels / g.groups) as i64;
    let (kh, kw) = (g.kernel[0] as i64, g.kernel[1] as i64);
    let t = match layout {
        // [O/B, Bo, C/B, Bi, kh, kw] -> [O/B, C/B, kh, kw, Bi, Bo]
        Layout::Blocked => {
            let r = e.reshape(w, &[o / b, b, ci / b, b, kh, kw]);
            e.transpose(&r, &[0, 2, 4, 5, 3, 1])
        }
        // [O/B, Bo, C, kh, kw] -> [O/B, C, kh, kw, Bo]
        Layout::PlainInput | Layout::Depthwise => {
            let r = e.reshape(w, &[o / b, b, ci, kh, kw]);
            e.transpose(&r, &[0, 2, 3, 4, 1])
        }
    };
    e.reshape(&t, &[o, ci, kh, kw])
}

/// A conv of geometry `g` (the layout [`layout`] chose) of NCHW input `x` with the standard
/// `[O, C/groups, kh, kw]` weight `w`, plus `bias`, padded by `pad` (top/left = bottom/right),
/// as NCHWc ops; the NCHW result goes to `out` when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    e: &mut Emitter,
    x: &str,
    w: &str,
    bias: Option<&str>,
    g: &ConvGeometry,
    layout: Layout,
    block: usize,
    out: Option<&str>,
) -> String {
    let filter = blocked_filter(e, w, g, layout, block);
    let input = match layout {
        Layout::PlainInput => x.to_string(),
        Layout::Blocked | Layout::Depthwise => op(e, "ReorderInput", &[x], vec![]),
    };
    let mut inputs = vec![input.as_str(), filter.as_str()];
    inputs.extend(bias);
    let y = op(e, "Conv", &inputs, g.attributes());
    let attrs = vec![AttributeProto::int("channels", g.out_channels as i64)];
    match out {
        Some(name) => {
            e.op_to("ReorderOutput", &[&y], name, attrs);
            e.b.nodes.last_mut().expect("just emitted").domain = DOMAIN.into();
            name.to_string()
        }
        None => op(e, "ReorderOutput", &[&y], attrs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(c: usize, o: usize, k: usize, groups: usize) -> ConvGeometry {
        ConvGeometry {
            in_channels: c,
            out_channels: o,
            kernel: [k, k],
            stride: [1, 1],
            padding: [k / 2, k / 2],
            dilation: [1, 1],
            groups,
        }
    }

    #[test]
    fn layouts_follow_the_kernels_support() {
        assert_eq!(layout(&geometry(16, 32, 3, 1), 16), Some(Layout::Blocked));
        assert_eq!(layout(&geometry(3, 16, 3, 1), 16), Some(Layout::PlainInput));
        assert_eq!(
            layout(&geometry(96, 96, 3, 96), 16),
            Some(Layout::Depthwise)
        );
        assert_eq!(layout(&geometry(96, 96, 3, 96), 8), Some(Layout::Depthwise));
        // 1x1, output not a block multiple, input above one block but not a multiple, groups.
        assert_eq!(layout(&geometry(16, 16, 1, 1), 16), None);
        assert_eq!(layout(&geometry(16, 24, 3, 1), 16), None);
        assert_eq!(layout(&geometry(24, 16, 3, 1), 16), None);
        assert_eq!(layout(&geometry(32, 32, 3, 2), 16), None);
    }
}
