//! The networks `cargo xtask bench-train` and `cargo xtask gpu-check` measure, in one place so
//! both speak of the same networks.

use nas_core::space::{CellSpace, CellSpaceConfig, SearchSpace, SpaceError};
use nas_graph::{Graph, GraphBuilder, NodeId, Op};

/// Classes of every benchmark network.
pub const CLASSES: usize = 10;

/// The NAS-Bench-201 cell of the benchmark network: every edge kind (3x3 and 1x1 conv,
/// average pool, skip) in one cell.
pub const NB201_ARCH: &str = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|";

fn conv_bn_relu(b: &mut GraphBuilder, x: NodeId, channels: usize, stride: usize) -> NodeId {
    let conv = b.conv(x, channels, 3, stride, 1);
    let bn = b.batch_norm(conv);
    b.add(Op::Relu, &[bn])
}

/// The small reference CNN: Conv3x3(16)+BN+ReLU, Conv3x3/s2(32)+BN+ReLU, global average pool,
/// Linear (no conv biases: BatchNorm follows each conv).
pub fn reference_net(input: [usize; 3]) -> Graph {
    let mut b = GraphBuilder::new(&input);
    let x = b.input();
    let a = conv_bn_relu(&mut b, x, 16, 1);
    let c = conv_bn_relu(&mut b, a, 32, 2);
    let p = b.add(Op::GlobalAvgPool, &[c]);
    let l = b.add(
        Op::Linear {
            out_features: CLASSES,
            bias: true,
        },
        &[p],
    );
    b.finish(l)
}

/// The NB201 network (C = 16, N = 5) of [`NB201_ARCH`], as the `cell` space decodes it.
pub fn nb201_net(input: [usize; 3]) -> Result<Graph, SpaceError> {
    let space = CellSpace::new(&CellSpaceConfig {
        input: Some(input.to_vec()),
        classes: Some(CLASSES),
        channels: 16,
        cells_per_stage: 5,
        ..CellSpaceConfig::default()
    })?;
    space.decode(&space.parse_arch(NB201_ARCH)?)
}
