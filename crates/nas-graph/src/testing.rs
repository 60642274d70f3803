//! Test utilities: small random networks for property tests of exporters and evaluators, and
//! the expanded definition of the canonical hash to check [`Graph::canonical_hash`] against.
//!
//! Not meant for searching: the generator favours covering every op and attribute over
//! producing sensible architectures.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::{Graph, GraphBuilder, NodeId, Op};
use crate::shape::window_out;

pub use crate::hash::expanded_canonical_hash;

/// A small valid random network on a `[3, 8..=12, 8..=12]` input ending in `Linear` logits.
///
/// Across seeds it uses every op kind: convs with stride 1/2, dilation, non-square kernels,
/// groups and depthwise, bias on and off; BatchNorm (also on features); every activation;
/// `Add` and `Concat` of parallel branches (with `Zero`, `Identity` and `Dropout` branches);
/// average pools with and without `count_include_pad` and max pools, with padding; a
/// `GlobalAvgPool` or `Flatten` head; `Linear` with and without bias; sometimes a dead node.
/// Deterministic for a seed.
pub fn random_graph(seed: u64) -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let h = rng.random_range(8..=12);
    let w = rng.random_range(8..=12);
    let mut g = Gen {
        b: GraphBuilder::new(&[3, h, w]),
        shapes: vec![vec![3, h, w]],
        rng,
    };
    let mut x = 0;
    let blocks = g.rng.random_range(2..=4);
    for _ in 0..blocks {
        x = match g.rng.random_range(0..6) {
            0 | 1 => {
                let c = g.random_conv(x);
                g.bn_act(c)
            }
            2 => g.random_pool(x),
            3 => g.add_block(x),
            4 => g.concat_block(x),
            _ => {
                let a = g.activation(x);
                g.pass_through(a)
            }
        };
    }
    if g.rng.random_bool(0.2) {
        // A dead node: exporters and the reference must skip it.
        g.push(Op::Sigmoid, &[x]);
    }
    let [c, h, w] = g.chw(x);
    x = if c * h * w <= 400 && g.rng.random_bool(0.4) {
        g.push(Op::Flatten, &[x])
    } else {
        g.push(Op::GlobalAvgPool, &[x])
    };
    if g.rng.random_bool(0.5) {
        let bias = g.rng.random_bool(0.5);
        let out_features = g.rng.random_range(4..=12);
        x = g.push(Op::Linear { out_features, bias }, &[x]);
        if g.rng.random_bool(0.5) {
            x = g.batch_norm(x);
        }
        x = g.activation(x);
        x = g.pass_through(x);
    }
    let bias = g.rng.random_bool(0.6);
    let out_features = g.rng.random_range(2..=10);
    let out = g.push(Op::Linear { out_features, bias }, &[x]);
    g.b.finish(out)
}

struct Gen {
    b: GraphBuilder,
    shapes: Vec<Vec<usize>>,
    rng: ChaCha8Rng,
}

const ACTIVATIONS: [Op; 5] = [Op::Relu, Op::Relu6, Op::Silu, Op::Gelu, Op::Sigmoid];

impl Gen {
    fn push(&mut self, op: Op, inputs: &[NodeId]) -> NodeId {
        let id = self.b.add(op, inputs);
        let partial = self.b.clone().finish(id);
        let shape = partial
            .shapes()
            .unwrap_or_else(|e| panic!("random_graph built an invalid node: {e}"))
            .pop()
            .expect("one shape per node");
        self.shapes.push(shape);
        id
    }

    fn batch_norm(&mut self, x: NodeId) -> NodeId {
        let op = Op::BatchNorm {
            eps: 1e-5,
            momentum: 0.1,
        };
        self.push(op, &[x])
    }

    fn chw(&self, x: NodeId) -> [usize; 3] {
        let s = &self.shapes[x];
        [s[0], s[1], s[2]]
    }

    fn activation(&mut self, x: NodeId) -> NodeId {
        let op = ACTIVATIONS
            .choose(&mut self.rng)
            .expect("non-empty")
            .clone();
        self.push(op, &[x])
    }

    fn pass_through(&mut self, x: NodeId) -> NodeId {
        match self.rng.random_range(0..4) {
            0 => self.push(Op::Identity, &[x]),
            1 => self.push(Op::Dropout { p: 0.25 }, &[x]),
            _ => x,
        }
    }

    fn bn_act(&mut self, x: NodeId) -> NodeId {
        let y = if self.rng.random_bool(0.7) {
            self.batch_norm(x)
        } else {
            x
        };
        self.activation(y)
    }

    /// Groups and output channels for `c` input channels: plain, depthwise or grouped.
    fn groups(&mut self, c: usize, cout: usize) -> (usize, usize) {
        match self.rng.random_range(0..5) {
            0 => (c, c * self.rng.random_range(1..=2)),
            1 => {
                let divisors: Vec<usize> = (2..c).filter(|g| c.is_multiple_of(*g)).collect();
                match divisors.choose(&mut self.rng) {
                    Some(&g) => (g, g * self.rng.random_range(1..=3)),
                    None => (1, cout),
                }
            }
            _ => (1, cout),
        }
    }

    /// Any conv that fits: kernel 1/3/5 (sometimes non-square), stride 1/2, dilation 1/2,
    /// padding none or "same".
    fn random_conv(&mut self, x: NodeId) -> NodeId {
        let [c, h, w] = self.chw(x);
        let cout = *[4, 6, 8, 12].choose(&mut self.rng).expect("non-empty");
        let (groups, out_channels) = self.groups(c, cout);
        for _ in 0..20 {
            let k = *[1, 3, 3, 5].choose(&mut self.rng).expect("non-empty");
            let kernel = if self.rng.random_bool(0.2) {
                [k, 3]
            } else {
                [k, k]
            };
            let s = if self.rng.random_bool(0.3) { 2 } else { 1 };
            let d = if self.rng.random_bool(0.25) { 2 } else { 1 };
            let same = self.rng.random_bool(0.7);
            let padding = kernel.map(|k| if same { (k - 1) / 2 * d } else { 0 });
            let fits = window_out(h, kernel[0], s, padding[0], d).is_some()
                && window_out(w, kernel[1], s, padding[1], d).is_some();
            if fits {
                let bias = self.rng.random_bool(0.4);
                return self.push(
                    Op::Conv2d {
                        out_channels,
                        kernel,
                        stride: [s, s],
                        padding,
                        dilation: [d, d],
                        groups,
                        bias,
                    },
                    &[x],
                );
            }
        }
        self.push(conv_same(out_channels, 1, 1, 1, groups, false), &[x])
    }

    fn random_pool(&mut self, x: NodeId) -> NodeId {
        let [_, h, w] = self.chw(x);
        let k = if h.min(w) >= 3 && self.rng.random_bool(0.6) {
            3
        } else {
            2
        };
        let kernel = [k, k];
        let stride = [self.rng.random_range(1..=2); 2];
        let padding = [
            self.rng.random_range(0..=k / 2),
            self.rng.random_range(0..=k / 2),
        ];
        if self.rng.random_bool(0.5) {
            let count_include_pad = self.rng.random_bool(0.5);
            self.push(
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                    count_include_pad,
                },
                &[x],
            )
        } else {
            self.push(
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                },
                &[x],
            )
        }
    }

    /// A branch whose spatial output is `floor((H - 1) / s) + 1` with `cout` channels: odd
    /// kernels with "same" padding all agree on that size.
    fn branch(&mut self, x: NodeId, s: usize, cout: usize) -> NodeId {
        let [c, _, _] = self.chw(x);
        let can_pass = s == 1 && cout == c;
        let pool_ok = cout == c;
        loop {
            match self.rng.random_range(0..7) {
                0 | 1 => {
                    // NB201-style ReLU -> conv -> BN.
                    let r = self.push(Op::Relu, &[x]);
                    let k = *[1, 3, 5].choose(&mut self.rng).expect("non-empty");
                    let d = if k == 3 && self.rng.random_bool(0.3) {
                        2
                    } else {
                        1
                    };
                    let groups = if cout == c && self.rng.random_bool(0.3) {
                        c
                    } else {
                        1
                    };
                    let bias = self.rng.random_bool(0.3);
                    let conv = self.push(conv_same(cout, k, s, d, groups, bias), &[r]);
                    return self.batch_norm(conv);
                }
                2 if pool_ok => {
                    let padding = [1, 1];
                    let op = if self.rng.random_bool(0.5) {
                        Op::AvgPool {
                            kernel: [3, 3],
                            stride: [s, s],
                            padding,
                            count_include_pad: self.rng.random_bool(0.5),
                        }
                    } else {
                        Op::MaxPool {
                            kernel: [3, 3],
                            stride: [s, s],
                            padding,
                        }
                    };
                    return self.push(op, &[x]);
                }
                3 if can_pass => return self.push(Op::Identity, &[x]),
                4 if can_pass => return self.push(Op::Dropout { p: 0.1 }, &[x]),
                5 if can_pass => return self.push(Op::Zero, &[x]),
                6 => {
                    // A zero of a strided conv's shape: the conv stays live in the graph.
                    let conv = self.push(conv_same(cout, 1, s, 1, 1, false), &[x]);
                    return self.push(Op::Zero, &[conv]);
                }
                _ => {}
            }
        }
    }

    fn add_block(&mut self, x: NodeId) -> NodeId {
        let [c, h, w] = self.chw(x);
        let s = if h.min(w) >= 6 && self.rng.random_bool(0.3) {
            2
        } else {
            1
        };
        let cout = if s == 1 && self.rng.random_bool(0.6) {
            c
        } else {
            c.max(4)
        };
        let n = self.rng.random_range(2..=3);
        let branches: Vec<NodeId> = (0..n).map(|_| self.branch(x, s, cout)).collect();
        self.push(Op::Add, &branches)
    }

    fn concat_block(&mut self, x: NodeId) -> NodeId {
        let [c, h, w] = self.chw(x);
        let s = if h.min(w) >= 6 && self.rng.random_bool(0.3) {
            2
        } else {
            1
        };
        let n = self.rng.random_range(2..=3);
        let branches: Vec<NodeId> = (0..n)
            .map(|_| {
                let cout = if self.rng.random_bool(0.5) {
                    c
                } else {
                    *[2, 4, 6].choose(&mut self.rng).expect("non-empty")
                };
                self.branch(x, s, cout)
            })
            .collect();
        self.push(Op::Concat, &branches)
    }
}

/// A square conv with "same" padding `(k - 1) / 2 * d`.
fn conv_same(out_channels: usize, k: usize, s: usize, d: usize, groups: usize, bias: bool) -> Op {
    Op::Conv2d {
        out_channels,
        kernel: [k, k],
        stride: [s, s],
        padding: [(k - 1) / 2 * d; 2],
        dilation: [d, d],
        groups,
        bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn random_graphs_are_valid_deterministic_and_cover_every_op() {
        let mut kinds = BTreeSet::new();
        let mut features = BTreeSet::new();
        for seed in 0..60 {
            let g = random_graph(seed);
            assert_eq!(g, random_graph(seed));
            let shapes = g.shapes().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(shapes[0][0], 3);
            assert!((8..=12).contains(&shapes[0][1]) && (8..=12).contains(&shapes[0][2]));
            assert!(matches!(g.nodes[g.output].op, Op::Linear { .. }));
            if g.reachable().len() < g.nodes.len() {
                features.insert("dead node");
            }
            for n in &g.nodes {
                kinds.insert(n.op.kind());
                let c_in = n.inputs.first().map(|&i| shapes[i][0]).unwrap_or(0);
                match &n.op {
                    Op::Conv2d {
                        out_channels,
                        kernel,
                        stride,
                        dilation,
                        groups,
                        bias,
                        ..
                    } => {
                        features.insert(if *bias { "conv bias" } else { "conv no bias" });
                        if stride[0] == 2 {
                            features.insert("conv stride 2");
                        }
                        if dilation[0] == 2 {
                            features.insert("conv dilation 2");
                        }
                        if kernel[0] != kernel[1] {
                            features.insert("conv non-square");
                        }
                        if *groups == c_in && *out_channels == c_in && c_in > 1 {
                            features.insert("depthwise");
                        } else if *groups > 1 {
                            features.insert("grouped");
                        }
                    }
                    Op::AvgPool {
                        count_include_pad,
                        padding,
                        ..
                    } => {
                        features.insert(if *count_include_pad {
                            "avg include pad"
                        } else {
                            "avg exclude pad"
                        });
                        if padding[0] > 0 {
                            features.insert("avg padded");
                        }
                    }
                    Op::MaxPool { padding, .. } if padding[0] > 0 => {
                        features.insert("max padded");
                    }
                    Op::Linear { bias, .. } => {
                        features.insert(if *bias {
                            "linear bias"
                        } else {
                            "linear no bias"
                        });
                    }
                    Op::BatchNorm { .. } if shapes[n.inputs[0]].len() == 1 => {
                        features.insert("bn on features");
                    }
                    _ => {}
                }
            }
        }
        let all = [
            "Input",
            "Conv2d",
            "BatchNorm",
            "Relu",
            "Relu6",
            "Silu",
            "Gelu",
            "Sigmoid",
            "Add",
            "Concat",
            "AvgPool",
            "MaxPool",
            "GlobalAvgPool",
            "Flatten",
            "Linear",
            "Identity",
            "Zero",
            "Dropout",
        ];
        let missing: Vec<_> = all.iter().filter(|k| !kinds.contains(*k)).collect();
        assert!(missing.is_empty(), "ops never generated: {missing:?}");
        let want = [
            "conv bias",
            "conv no bias",
            "conv stride 2",
            "conv dilation 2",
            "conv non-square",
            "depthwise",
            "grouped",
            "avg include pad",
            "avg exclude pad",
            "avg padded",
            "max padded",
            "linear bias",
            "linear no bias",
            "bn on features",
            "dead node",
        ];
        let missing: Vec<_> = want.iter().filter(|f| !features.contains(*f)).collect();
        assert!(missing.is_empty(), "features never generated: {missing:?}");
    }
}
