//! Checks that a request's graph is the network the table was measured on: the NB201
//! `TinyNetwork` with C = 16, N = 5, the dataset's input and classes, and the cell of the
//! arch string. The cell string alone does not say this (a `cell` space with other
//! `channels` or `cells_per_stage` yields the same strings), so the graph is inspected.
//!
//! The check compares a census of the layers that define the network (convolutions by kernel,
//! stride and width; `none`, `skip_connect` and `avg_pool_3x3` edges; the classifier) with
//! the census the benchmark network has. BatchNorm, ReLU and sums are not counted, so how the
//! host composes those does not matter.

use std::collections::BTreeMap;

use nas_graph::{Graph, Op};

use crate::table::Dataset;

/// First-stage channels (C) of the benchmark network.
pub const CHANNELS: usize = 16;
/// Cells per stage (N) of the benchmark network.
pub const CELLS_PER_STAGE: usize = 5;

/// The cell's edge ops, in the order of the NB201 strings.
const OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Conv {
        kernel: usize,
        stride: usize,
        out: usize,
    },
    Zero,
    Identity,
    AvgPool {
        kernel: usize,
    },
    Linear {
        out: usize,
    },
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Conv {
                kernel,
                stride,
                out,
            } => write!(
                f,
                "{kernel}x{kernel} convolutions with {out} output channels and stride {stride}"
            ),
            Layer::Zero => write!(f, "`none` (zero) edges"),
            Layer::Identity => write!(f, "`skip_connect` (identity) edges"),
            Layer::AvgPool { kernel } => write!(f, "{kernel}x{kernel} average poolings"),
            Layer::Linear { out } => write!(f, "linear layers with {out} outputs"),
        }
    }
}

type Census = BTreeMap<Layer, usize>;

fn census(graph: &Graph) -> Census {
    let mut out = Census::new();
    for node in &graph.nodes {
        let layer = match &node.op {
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                ..
            } => Layer::Conv {
                kernel: kernel[0],
                stride: stride[0],
                out: *out_channels,
            },
            Op::Zero => Layer::Zero,
            Op::Identity => Layer::Identity,
            Op::AvgPool { kernel, .. } => Layer::AvgPool { kernel: kernel[0] },
            Op::Linear { out_features, .. } => Layer::Linear { out: *out_features },
            _ => continue,
        };
        *out.entry(layer).or_default() += 1;
    }
    out
}

/// Op counts of a cell from its NB201 string, or `None` if it is not one.
fn cell_ops(arch: &str) -> Option<[usize; 5]> {
    let mut counts = [0; 5];
    let mut edges = 0;
    for token in arch.split(['|', '+']).filter(|t| !t.is_empty()) {
        let (name, _) = token.split_once('~')?;
        counts[OPS.iter().position(|o| *o == name)?] += 1;
        edges += 1;
    }
    (edges == 6).then_some(counts)
}

/// The census of the benchmark network with cell `ops` (counts per [`OPS`] entry).
fn expected(ops: [usize; 5], classes: usize) -> Census {
    let [none, skip, conv1, conv3, pool] = ops;
    let cells = 3 * CELLS_PER_STAGE;
    let mut out = Census::new();
    let mut add = |layer, n: usize| {
        if n > 0 {
            *out.entry(layer).or_default() += n;
        }
    };
    let conv = |kernel, stride, out| Layer::Conv {
        kernel,
        stride,
        out,
    };
    add(conv(3, 1, CHANNELS), 1); // stem
    for stage in 0..3 {
        let c = CHANNELS << stage;
        if stage > 0 {
            // Residual reduction block: 3x3 s2, 3x3 s1, shortcut 2x2 pool + 1x1 conv.
            add(conv(3, 2, c), 1);
            add(conv(3, 1, c), 1);
            add(conv(1, 1, c), 1);
            add(Layer::AvgPool { kernel: 2 }, 1);
        }
        add(conv(3, 1, c), CELLS_PER_STAGE * conv3);
        add(conv(1, 1, c), CELLS_PER_STAGE * conv1);
    }
    add(Layer::Zero, cells * none);
    add(Layer::Identity, cells * skip);
    add(Layer::AvgPool { kernel: 3 }, cells * pool);
    add(Layer::Linear { out: classes }, 1);
    out
}

/// Cell edges in a census: parameter-free edge layers plus the stride-1 convolutions that
/// are not part of the fixed network (stem, and a 3x3 and a 1x1 per reduction block).
fn edge_ops(census: &Census) -> usize {
    let fixed_stride_1 = 5;
    let mut n = 0;
    for (layer, &count) in census {
        n += match layer {
            Layer::Zero | Layer::Identity | Layer::AvgPool { kernel: 3 } => count,
            Layer::Conv { stride: 1, .. } => count,
            _ => 0,
        };
    }
    n.saturating_sub(fixed_stride_1)
}

/// `Err` says how `graph` differs from the benchmark network for `arch` on `dataset`.
pub fn check(graph: &Graph, arch: &str, dataset: Dataset) -> Result<(), String> {
    let input = dataset.input();
    if graph.input != input {
        return Err(format!(
            "the network's input is {:?} but NAS-Bench-201 {} results are for {input:?} inputs; \
             set `[space] input = {input:?}` (or use the matching dataset)",
            graph.input,
            dataset.name()
        ));
    }
    let ops = cell_ops(arch).ok_or_else(|| format!("`{arch}` is not an NB201 cell string"))?;
    let classes = dataset.classes();
    let have = census(graph);
    let want = expected(ops, classes);
    if have == want {
        return Ok(());
    }
    // Name the most telling difference first: classes, then width, then depth.
    let linear = have
        .keys()
        .find_map(|l| match l {
            Layer::Linear { out } => Some(*out),
            _ => None,
        })
        .unwrap_or(0);
    let stem = graph
        .nodes
        .iter()
        .find(|n| n.inputs.first() == Some(&0) && matches!(n.op, Op::Conv2d { .. }))
        .and_then(|n| match n.op {
            Op::Conv2d { out_channels, .. } => Some(out_channels),
            _ => None,
        });
    let what = if linear != classes {
        format!(
            "its classifier has {linear} outputs, not the {classes} classes of {}; set `[space] classes = {classes}`",
            dataset.name()
        )
    } else if stem.is_some_and(|c| c != CHANNELS) {
        format!(
            "its first stage has {} channels, not {CHANNELS}; set `[space] channels = {CHANNELS}`",
            stem.unwrap_or(0)
        )
    } else if edge_ops(&have) != 18 * CELLS_PER_STAGE {
        let found = edge_ops(&have);
        let depth = if found.is_multiple_of(18) {
            format!("{} cells per stage", found / 18)
        } else {
            format!("{found} cell edges")
        };
        format!(
            "it has {depth}, not {CELLS_PER_STAGE} (6 edges, 3 stages); set `[space] cells_per_stage = {CELLS_PER_STAGE}`"
        )
    } else {
        let (layer, n, m) = want
            .iter()
            .map(|(l, &m)| (*l, have.get(l).copied().unwrap_or(0), m))
            .chain(
                have.iter()
                    .filter(|(l, _)| !want.contains_key(l))
                    .map(|(l, &n)| (*l, n, 0)),
            )
            .find(|(_, n, m)| n != m)
            .unwrap_or((Layer::Zero, 0, 0));
        format!(
            "it has {n} {layer} where the benchmark network with that cell has {m}, so its \
             cells are not the cell of the arch string"
        )
    };
    Err(format!(
        "the request's network is not the NAS-Bench-201 network the table was measured on \
         (C = {CHANNELS}, N = {CELLS_PER_STAGE}, cell `{arch}`): {what}, or set \
         `check_network = false` in the nb201 evaluator's table to look the cell up anyway"
    ))
}
