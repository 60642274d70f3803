//! Gradient checks: the training-step model's float32 gradients, run in a real ONNX Runtime,
//! against float64 central differences of the plain-Rust training loss
//! ([`nas_graph::train::reference`], BatchNorm with batch statistics, label smoothing on).
//!
//! Criterion, per tensor: `||g_ort - g_fd|| / max(||g_fd||, 1e-6) <= 1e-4`. Small tensors are
//! checked element by element in full; larger ones on a fixed random subset of elements.

mod support;

use nas_graph::testing::random_graph;
use nas_graph::{Graph, GraphBuilder, NodeId, Op};
use support::gradcheck::{Case, check_all};

fn conv(
    out: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: usize,
    g: usize,
    bias: bool,
) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: k,
        stride: s,
        padding: p,
        dilation: [d, d],
        groups: g,
        bias,
    }
}

fn sq(out: usize, k: usize, s: usize, p: usize, d: usize, g: usize, bias: bool) -> Op {
    conv(out, [k, k], [s, s], [p, p], d, g, bias)
}

/// `input [c, h, w] -> conv3x3(c -> 4, bias) -> body -> Flatten -> Linear(3)`: the first conv's
/// weight gradient passes through the body's input gradient.
fn wrapped(hw: [usize; 2], body: impl FnOnce(&mut GraphBuilder, NodeId) -> NodeId) -> Graph {
    wrapped_channels(4, hw, body)
}

/// [`wrapped`] with a stem of `channels` outputs.
fn wrapped_channels(
    channels: usize,
    hw: [usize; 2],
    body: impl FnOnce(&mut GraphBuilder, NodeId) -> NodeId,
) -> Graph {
    let mut b = GraphBuilder::new(&[2, hw[0], hw[1]]);
    let stem = b.add(sq(channels, 3, 1, 1, 1, 1, true), &[0]);
    let y = body(&mut b, stem);
    let f = b.add(Op::Flatten, &[y]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    );
    b.finish(l)
}

fn case(name: &str, graph: Graph, batch: usize, seed: u64) -> Case {
    Case {
        name: name.to_string(),
        graph,
        batch,
        seed,
        max_elems: 160,
        input_scale: 1.0,
        tokens: None,
        policy_loss: None,
        regression: false,
    }
}

#[test]
fn conv_rules() {
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let cases = vec![
        case(
            "conv 3x3 s2 p1 even",
            wrapped([8, 8], one(sq(4, 3, 2, 1, 1, 1, true))),
            2,
            1,
        ),
        case(
            "conv 3x3 s2 p1 odd",
            wrapped([9, 9], one(sq(3, 3, 2, 1, 1, 1, false))),
            3,
            2,
        ),
        case(
            "conv 3x3 s2 p0 even (crop)",
            wrapped([8, 8], one(sq(3, 3, 2, 0, 1, 1, true))),
            2,
            3,
        ),
        case(
            "conv 1x1 s2 even (crop)",
            wrapped([8, 7], one(sq(5, 1, 2, 0, 1, 1, false))),
            2,
            4,
        ),
        case(
            "conv 3x3 s2 p1 odd/even",
            wrapped([9, 8], one(sq(4, 3, 2, 1, 1, 1, true))),
            4,
            5,
        ),
        case(
            "conv 3x3 dilation 2",
            wrapped([8, 8], one(sq(3, 3, 1, 2, 2, 1, true))),
            2,
            6,
        ),
        case(
            "conv 3x3 dilation 2 s2",
            wrapped([9, 8], one(sq(3, 3, 2, 1, 2, 1, false))),
            2,
            7,
        ),
        case(
            "conv 3x3 dil 2 s2 p0 (crop)",
            wrapped([10, 10], one(sq(3, 3, 2, 0, 2, 1, false))),
            2,
            8,
        ),
        case(
            "conv groups 2",
            wrapped([7, 7], one(sq(6, 3, 1, 1, 1, 2, true))),
            3,
            9,
        ),
        case(
            "conv groups 2 s2",
            wrapped([8, 8], one(sq(4, 3, 2, 1, 1, 2, false))),
            2,
            10,
        ),
        case(
            "conv depthwise",
            wrapped([8, 8], one(sq(4, 3, 1, 1, 1, 4, false))),
            2,
            11,
        ),
        case(
            "conv depthwise s2 bias",
            wrapped([9, 9], one(sq(4, 3, 2, 1, 1, 4, true))),
            2,
            12,
        ),
        case(
            "conv depthwise x2 5x5",
            wrapped([8, 8], one(sq(8, 5, 2, 2, 1, 4, false))),
            2,
            13,
        ),
        // Even seeds fix the batch, which routes depthwise weight gradients through the
        // per-sample correlation form (odd seeds above take the im2col form).
        case(
            "conv depthwise fixed batch",
            wrapped([8, 8], one(sq(4, 3, 1, 1, 1, 4, false))),
            3,
            16,
        ),
        case(
            "conv depthwise x2 5x5 s2 fixed batch",
            wrapped([9, 9], one(sq(8, 5, 2, 2, 1, 4, true))),
            2,
            18,
        ),
        case(
            "conv depthwise 3x3 s2 p0 d2 fixed batch (crop)",
            wrapped([10, 10], one(sq(4, 3, 2, 0, 2, 4, false))),
            2,
            20,
        ),
        case(
            "conv depthwise 7x7 fixed batch",
            wrapped([9, 9], one(sq(4, 7, 1, 3, 1, 4, false))),
            2,
            22,
        ),
        // A fixed batch of 128 or more builds the weight gradients' patches in chunks of 64
        // samples: 64, 64 and 2 here, for both convs.
        case(
            "conv 3x3 fixed batch of 130 (weight gradients in chunks)",
            wrapped([4, 4], one(sq(3, 3, 1, 1, 1, 1, true))),
            130,
            26,
        ),
        // Small images with many channels run forward and input gradient as im2col + MatMul.
        case(
            "conv 3x3 64 channels 4x4 (MatMul form)",
            wrapped_channels(64, [4, 4], one(sq(64, 3, 1, 1, 1, 1, true))),
            2,
            24,
        ),
        case(
            "conv non-square 1x3 s(2,1)",
            wrapped([8, 8], one(conv(3, [1, 3], [2, 1], [0, 1], 1, 1, true))),
            2,
            14,
        ),
        case(
            "conv non-square 5x3 s2 d2",
            wrapped([11, 9], one(conv(3, [5, 3], [2, 2], [4, 2], 2, 1, false))),
            2,
            15,
        ),
    ];
    check_all(cases);
}

#[test]
fn batch_norm_and_activation_rules() {
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let bn = || Op::BatchNorm {
        eps: 1e-5,
        momentum: 0.1,
    };
    let mut cases = vec![
        case(
            "batch norm (after conv with bias)",
            wrapped([6, 6], one(bn())),
            3,
            21,
        ),
        case(
            "batch norm, conv, relu, batch norm",
            wrapped([6, 6], |b, x| {
                let n = b.add(bn(), &[x]);
                let r = b.add(Op::Relu, &[n]);
                let c = b.add(sq(3, 3, 2, 1, 1, 1, true), &[r]);
                b.add(bn(), &[c])
            }),
            4,
            22,
        ),
        case("relu", wrapped([6, 6], one(Op::Relu)), 2, 23),
        case("silu", wrapped([6, 6], one(Op::Silu)), 2, 25),
        case("gelu", wrapped([6, 6], one(Op::Gelu)), 2, 26),
        case("sigmoid", wrapped([6, 6], one(Op::Sigmoid)), 2, 27),
    ];
    let mut relu6 = case("relu6 (both kinks)", wrapped([6, 6], one(Op::Relu6)), 2, 24);
    relu6.input_scale = 6.0;
    cases.push(relu6);
    // BatchNorm on features: Linear -> BN -> activation -> Linear.
    let mut b = GraphBuilder::new(&[5]);
    let l1 = b.add(
        Op::Linear {
            out_features: 6,
            bias: true,
        },
        &[0],
    );
    let n = b.add(bn(), &[l1]);
    let a = b.add(Op::Gelu, &[n]);
    let l2 = b.add(
        Op::Linear {
            out_features: 4,
            bias: false,
        },
        &[a],
    );
    cases.push(case("batch norm on features, linear", b.finish(l2), 4, 28));
    check_all(cases);
}

#[test]
fn structural_rules() {
    let cases = vec![
        case(
            "add fan-out",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(4, 3, 1, 1, 1, 1, false), &[x]);
                let r = b.add(Op::Relu, &[x]);
                // x feeds c1, r and the sum twice.
                b.add(Op::Add, &[c1, x, r, x])
            }),
            2,
            31,
        ),
        case(
            "concat",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(3, 1, 1, 0, 1, 1, false), &[x]);
                let s = b.add(Op::Sigmoid, &[x]);
                b.add(Op::Concat, &[c1, x, s, c1])
            }),
            2,
            32,
        ),
        case(
            "zero",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(4, 3, 1, 1, 1, 1, true), &[x]);
                let z = b.add(Op::Zero, &[c1]);
                b.add(Op::Add, &[x, z])
            }),
            2,
            33,
        ),
        case(
            "identity",
            wrapped([6, 6], |b, x| {
                let i = b.add(Op::Identity, &[x]);
                b.add(Op::Silu, &[i])
            }),
            2,
            34,
        ),
        case(
            "dropout (fixed mask)",
            wrapped([6, 6], |b, x| {
                let d = b.add(Op::Dropout { p: 0.3 }, &[x]);
                b.add(Op::Gelu, &[d])
            }),
            3,
            35,
        ),
        case(
            "global average pool, linear, linear",
            {
                let mut b = GraphBuilder::new(&[3, 5, 6]);
                let c = b.add(sq(6, 3, 1, 1, 1, 1, true), &[0]);
                let g = b.add(Op::GlobalAvgPool, &[c]);
                let l1 = b.add(
                    Op::Linear {
                        out_features: 5,
                        bias: true,
                    },
                    &[g],
                );
                let s = b.add(Op::Sigmoid, &[l1]);
                let l2 = b.add(
                    Op::Linear {
                        out_features: 3,
                        bias: true,
                    },
                    &[s],
                );
                b.finish(l2)
            },
            3,
            36,
        ),
    ];
    check_all(cases);
}

/// Mixed edges of a supernet: every NAS-Bench-201 operation (conv-BN, avg pool, skip, zero)
/// weighed into one value, an auxiliary skip as an extra input, two edges in a row, an edge
/// of zeros only, and a Dropout behind an edge (masks and mixing weights fed together).
#[test]
fn mixed_edge_rules() {
    let bn = || Op::BatchNorm {
        eps: 1e-5,
        momentum: 0.1,
    };
    let edge = |b: &mut GraphBuilder, x: NodeId, aux: bool| {
        let r = b.add(Op::Relu, &[x]);
        let c3 = b.add(sq(4, 3, 1, 1, 1, 1, false), &[r]);
        let b3 = b.add(bn(), &[c3]);
        let r1 = b.add(Op::Relu, &[x]);
        let c1 = b.add(sq(4, 1, 1, 0, 1, 1, false), &[r1]);
        let b1 = b.add(bn(), &[c1]);
        let pool = b.add(
            Op::AvgPool {
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                count_include_pad: false,
            },
            &[x],
        );
        let skip = b.add(Op::Identity, &[x]);
        let zero = b.add(Op::Zero, &[x]);
        let mut ins = vec![zero, skip, b1, b3, pool];
        if aux {
            ins.push(x);
        }
        b.add(Op::Mix, &ins)
    };
    let cases = vec![
        case(
            "mixed edge, NB201 ops",
            wrapped([5, 5], |b, x| edge(b, x, false)),
            3,
            40,
        ),
        case(
            "mixed edge with auxiliary skip",
            wrapped([5, 5], |b, x| edge(b, x, true)),
            3,
            41,
        ),
        case(
            "two mixed edges and a sum",
            wrapped([4, 4], |b, x| {
                let a = edge(b, x, false);
                let c = edge(b, a, false);
                let z = b.add(Op::Zero, &[x]);
                let only_zero = b.add(Op::Mix, &[z]);
                b.add(Op::Add, &[a, c, only_zero])
            }),
            2,
            42,
        ),
        case(
            "mixed edge then dropout",
            wrapped([4, 4], |b, x| {
                let a = edge(b, x, false);
                b.add(Op::Dropout { p: 0.3 }, &[a])
            }),
            2,
            43,
        ),
    ];
    check_all(cases);
}

#[test]
fn pool_rules() {
    let avg = |k: usize, s: usize, p: usize, cip: bool| Op::AvgPool {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        count_include_pad: cip,
    };
    let max = |k: usize, s: usize, p: usize| Op::MaxPool {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
    };
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let cases = vec![
        case(
            "avg 3x3 s1 p1 include pad",
            wrapped([6, 6], one(avg(3, 1, 1, true))),
            2,
            41,
        ),
        case(
            "avg 3x3 s1 p1 exclude pad",
            wrapped([6, 6], one(avg(3, 1, 1, false))),
            2,
            42,
        ),
        case(
            "avg 3x3 s2 p1 include pad even",
            wrapped([8, 8], one(avg(3, 2, 1, true))),
            2,
            43,
        ),
        case(
            "avg 3x3 s2 p1 exclude pad odd",
            wrapped([9, 9], one(avg(3, 2, 1, false))),
            2,
            44,
        ),
        case(
            "avg 2x2 s2 p0 odd",
            wrapped([7, 7], one(avg(2, 2, 0, true))),
            2,
            45,
        ),
        case(
            "avg 2x2 s1 p1 exclude pad",
            wrapped([5, 6], one(avg(2, 1, 1, false))),
            2,
            46,
        ),
        case(
            "max 3x3 s1 p1 (overlapping)",
            wrapped([6, 6], one(max(3, 1, 1))),
            2,
            47,
        ),
        case(
            "max 3x3 s2 p1 even",
            wrapped([8, 8], one(max(3, 2, 1))),
            2,
            48,
        ),
        case(
            "max 2x2 s2 p0 odd",
            wrapped([7, 7], one(max(2, 2, 0))),
            3,
            49,
        ),
        case("max 2x2 s1 p1", wrapped([5, 6], one(max(2, 1, 1))), 2, 50),
    ];
    check_all(cases);
}

#[test]
fn random_graphs() {
    let cases = (0..24)
        .map(|seed| Case {
            name: format!("random graph {seed}"),
            graph: random_graph(seed),
            batch: 4,
            seed: 100 + seed,
            max_elems: 16,
            input_scale: 1.0,
            tokens: None,
            policy_loss: None,
            regression: false,
        })
        .collect();
    check_all(cases);
}

/// A policy network as the `mlp` space builds it: `[features] -> (Linear -> norm -> act ->
/// dropout (+ skip))* -> Linear(actions)`.
fn policy_mlp(features: usize, widths: &[usize], act: Op, batch_norm: bool, dropout: f32) -> Graph {
    mlp(features, widths, act, batch_norm, dropout, 3)
}

/// [`policy_mlp`] with `outputs` outputs.
fn mlp(
    features: usize,
    widths: &[usize],
    act: Op,
    batch_norm: bool,
    dropout: f32,
    outputs: usize,
) -> Graph {
    let mut b = GraphBuilder::new(&[features]);
    let mut x = b.input();
    let mut width = features;
    for &out in widths {
        let mut h = b.add(
            Op::Linear {
                out_features: out,
                bias: !batch_norm,
            },
            &[x],
        );
        if batch_norm {
            h = b.batch_norm(h);
        }
        h = b.add(act.clone(), &[h]);
        if dropout > 0.0 {
            h = b.add(Op::Dropout { p: dropout }, &[h]);
        }
        if out == width {
            h = b.add(Op::Add, &[x, h]);
        }
        x = h;
        width = out;
    }
    let logits = b.add(
        Op::Linear {
            out_features: outputs,
            bias: true,
        },
        &[x],
    );
    b.finish(logits)
}

/// The regression loss (mean squared error of one output against float targets) on MLPs as
/// the `mlp` space builds them and on a small conv net, fixed and dynamic batches.
#[test]
fn squared_error_loss() {
    let regression = |name: &str, graph: Graph, batch: usize, seed: u64| Case {
        regression: true,
        ..case(name, graph, batch, seed)
    };
    let mut conv_net = GraphBuilder::new(&[2, 5, 5]);
    let c = conv_net.add(sq(4, 3, 1, 1, 1, 1, false), &[0]);
    let n = conv_net.batch_norm(c);
    let r = conv_net.add(Op::Relu, &[n]);
    let p = conv_net.add(Op::GlobalAvgPool, &[r]);
    let out = conv_net.add(
        Op::Linear {
            out_features: 1,
            bias: true,
        },
        &[p],
    );
    check_all(vec![
        regression(
            "regression, linear",
            mlp(5, &[], Op::Relu, false, 0.0, 1),
            6,
            1,
        ),
        regression(
            "regression, relu mlp",
            mlp(4, &[8, 8], Op::Relu, false, 0.0, 1),
            5,
            2,
        ),
        regression(
            "regression, bn gelu dropout",
            mlp(6, &[8, 8], Op::Gelu, true, 0.25, 1),
            6,
            4,
        ),
        regression("regression, conv bn pool", conv_net.finish(out), 4, 3),
    ]);
}

/// The policy-gradient loss: cross-entropy weighted per sample (weights of both signs), with
/// and without an entropy bonus, fixed (even seeds) and dynamic (odd seeds) batches.
#[test]
fn sample_weighted_loss_and_entropy_bonus() {
    let policy = |name: &str, graph: Graph, batch: usize, seed: u64, entropy: f32| Case {
        policy_loss: Some(entropy),
        ..case(name, graph, batch, seed)
    };
    let mut cases = vec![
        policy(
            "weighted, linear policy",
            policy_mlp(4, &[], Op::Relu, false, 0.0),
            6,
            1,
            0.0,
        ),
        policy(
            "weighted, relu mlp",
            policy_mlp(4, &[8, 8], Op::Relu, false, 0.0),
            5,
            2,
            0.0,
        ),
        policy(
            "weighted + entropy, linear policy",
            policy_mlp(4, &[], Op::Relu, false, 0.0),
            7,
            3,
            0.5,
        ),
        policy(
            "weighted + entropy, bn gelu dropout",
            policy_mlp(6, &[8, 8], Op::Gelu, true, 0.25),
            6,
            4,
            0.1,
        ),
        policy(
            "weighted + entropy, silu residual",
            policy_mlp(6, &[6, 6], Op::Silu, false, 0.0),
            3,
            5,
            1.0,
        ),
    ];
    cases.extend((0..4).map(|seed| Case {
        name: format!("weighted + entropy, random graph {seed}"),
        graph: random_graph(seed),
        batch: 4,
        seed: 200 + seed,
        max_elems: 16,
        input_scale: 1.0,
        tokens: None,
        policy_loss: Some(0.2),
        regression: false,
    }));
    check_all(cases);
}
