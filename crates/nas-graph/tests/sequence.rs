//! Sequence ops and blocks: every op's ONNX export against the float64 reference, every op's
//! training gradients against float64 central differences (harness in `support::gradcheck`),
//! and the GRU, LSTM, self-attention and feed-forward builders against independent float64
//! implementations of their textbook equations.

mod support;

use nas_graph::reference::forward_all;
use nas_graph::sequence::{feed_forward, gru, lstm, self_attention};
use nas_graph::{
    ExportOptions, Graph, GraphBuilder, NodeId, Op, ParamInit, TimePoolKind, Weights,
    parameter_specs,
};
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use support::export::export_matches;
use support::gradcheck::{Case, check_all};

const VOCAB: usize = 7;

fn dense(out_features: usize, bias: bool) -> Op {
    Op::Dense { out_features, bias }
}

/// `... -> Flatten -> Linear(3)`: logits for the training step.
fn head(b: &mut GraphBuilder, x: NodeId) -> NodeId {
    let f = b.add(Op::Flatten, &[x]);
    b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    )
}

/// Input `shape` of features, a `Dense` stem (so input gradients are checked through the
/// stem's weight), `body`, then the head.
fn features(shape: &[usize], body: impl FnOnce(&mut GraphBuilder, NodeId) -> NodeId) -> Graph {
    let mut b = GraphBuilder::new(shape);
    let f = *shape.last().unwrap();
    let stem = b.add(dense(f, true), &[0]);
    let y = body(&mut b, stem);
    let out = head(&mut b, y);
    b.finish(out)
}

/// Input `[t]` token ids, an `Embedding(VOCAB, 4)`, `body(builder, ids, embedded)`, the head.
fn tokens(t: usize, body: impl FnOnce(&mut GraphBuilder, NodeId, NodeId) -> NodeId) -> Graph {
    let mut b = GraphBuilder::new(&[t]);
    let e = b.add(
        Op::Embedding {
            vocab: VOCAB,
            dim: 4,
        },
        &[0],
    );
    let y = body(&mut b, 0, e);
    let out = head(&mut b, y);
    b.finish(out)
}

/// One graph per op (and per variant), with whether its input is token ids.
fn op_graphs() -> Vec<(&'static str, Graph, bool)> {
    let pool = |kind: TimePoolKind, masked: bool| {
        tokens(5, move |b, ids, e| {
            let x = b.add(dense(3, true), &[e]);
            let mut ins = vec![x];
            if masked {
                ins.push(b.add(Op::PaddingMask, &[ids]));
            }
            b.add(Op::TimePool { kind }, &ins)
        })
    };
    let conv1d = |kernel, dilation, causal, bias| {
        features(&[3, 6], move |b, x| {
            b.add(
                Op::Conv1d {
                    out_channels: 4,
                    kernel,
                    dilation,
                    causal,
                    bias,
                },
                &[x],
            )
        })
    };
    vec![
        ("embedding", tokens(5, |_, _, e| e), true),
        (
            "dense [F]",
            features(&[4], |b, x| b.add(dense(5, true), &[x])),
            false,
        ),
        (
            "dense [T, F]",
            features(&[3, 4], |b, x| b.add(dense(5, true), &[x])),
            false,
        ),
        (
            "dense [A, T, F] no bias",
            features(&[2, 3, 4], |b, x| b.add(dense(5, false), &[x])),
            false,
        ),
        (
            "layer norm [T, F]",
            features(&[3, 4], |b, x| b.add(Op::LayerNorm { eps: 1e-5 }, &[x])),
            false,
        ),
        (
            "layer norm [F] after dense",
            features(&[6], |b, x| {
                let d = b.add(dense(5, true), &[x]);
                b.add(Op::LayerNorm { eps: 1e-5 }, &[d])
            }),
            false,
        ),
        (
            "tanh, sigmoid, mul, sub, scale",
            features(&[3, 4], |b, x| {
                let t = b.add(Op::Tanh, &[x]);
                let g = b.add(Op::Sigmoid, &[x]);
                let m = b.add(Op::Mul, &[t, g]);
                let d = b.add(Op::Sub, &[m, x]);
                let s = b.add(Op::Scale { factor: -0.75 }, &[d]);
                // x read by both sides of a Mul.
                b.add(Op::Mul, &[s, x])
            }),
            false,
        ),
        (
            "transpose [T, F] and [A, T, F]",
            features(&[2, 3, 4], |b, x| {
                let t = b.add(
                    Op::Transpose {
                        perm: vec![2, 0, 1],
                    },
                    &[x],
                );
                let d = b.add(dense(3, true), &[t]);
                b.add(
                    Op::Transpose {
                        perm: vec![0, 2, 1],
                    },
                    &[d],
                )
            }),
            false,
        ),
        (
            "reshape and slices",
            features(&[3, 4], |b, x| {
                let r = b.add(Op::Reshape { shape: vec![2, 6] }, &[x]);
                let s1 = b.add(
                    Op::Slice {
                        axis: 1,
                        start: 1,
                        end: 4,
                    },
                    &[r],
                );
                let s0 = b.add(
                    Op::Slice {
                        axis: 0,
                        start: 1,
                        end: 2,
                    },
                    &[x],
                );
                let t = b.add(Op::Tanh, &[s0]);
                let f1 = b.add(Op::Flatten, &[s1]);
                let f0 = b.add(Op::Flatten, &[t]);
                b.add(Op::Concat, &[f0, f1])
            }),
            false,
        ),
        (
            "parameters and matmul",
            features(&[3, 4], |b, x| {
                let w = b.add(
                    Op::Parameter {
                        shape: vec![4, 5],
                        init: ParamInit::Uniform { bound: 0.5 },
                    },
                    &[],
                );
                let bias = b.add(
                    Op::Parameter {
                        shape: vec![3, 5],
                        init: ParamInit::Normal { std: 0.3 },
                    },
                    &[],
                );
                let xw = b.add(Op::MatMul, &[x, w]);
                // The shared weight read twice.
                let a = b.add(Op::Add, &[xw, bias]);
                let at = b.add(Op::Transpose { perm: vec![1, 0] }, &[a]);
                let aw = b.add(Op::MatMul, &[at, a]);
                let tw = b.add(Op::Reshape { shape: vec![5, 5] }, &[aw]);
                let y = b.add(
                    Op::Slice {
                        axis: 1,
                        start: 0,
                        end: 4,
                    },
                    &[tw],
                );
                b.add(Op::MatMul, &[y, w])
            }),
            false,
        ),
        (
            "softmax [T, F]",
            features(&[3, 4], |b, x| b.add(Op::Softmax, &[x])),
            false,
        ),
        (
            "softmax over [heads, T, T] with a padding mask",
            tokens(5, |b, ids, e| {
                let q = b.add(dense(4, true), &[e]);
                let r = b.add(
                    Op::Reshape {
                        shape: vec![5, 2, 2],
                    },
                    &[q],
                );
                let h = b.add(
                    Op::Transpose {
                        perm: vec![1, 0, 2],
                    },
                    &[r],
                );
                let kt = b.add(
                    Op::Transpose {
                        perm: vec![0, 2, 1],
                    },
                    &[h],
                );
                let scores = b.add(Op::MatMul, &[h, kt]);
                let mask = b.add(Op::PaddingMask, &[ids]);
                let p = b.add(Op::Softmax, &[scores, mask]);
                b.add(Op::MatMul, &[p, h])
            }),
            true,
        ),
        (
            "softmax with a learned additive mask",
            features(&[3, 4], |b, x| {
                let m = b.add(dense(4, false), &[x]);
                let s = b.add(
                    Op::Slice {
                        axis: 0,
                        start: 0,
                        end: 1,
                    },
                    &[m],
                );
                let flat = b.add(Op::Flatten, &[s]);
                let scores = b.add(dense(4, true), &[x]);
                b.add(Op::Softmax, &[scores, flat])
            }),
            false,
        ),
        ("time pool mean", pool(TimePoolKind::Mean, false), true),
        (
            "time pool mean, masked",
            pool(TimePoolKind::Mean, true),
            true,
        ),
        ("time pool max", pool(TimePoolKind::Max, false), true),
        ("time pool max, masked", pool(TimePoolKind::Max, true), true),
        ("time pool last", pool(TimePoolKind::Last, false), true),
        (
            "time pool last, masked",
            pool(TimePoolKind::Last, true),
            true,
        ),
        (
            "learned positional encoding",
            tokens(5, |b, _, e| {
                b.add(Op::PositionalEncoding { learned: true }, &[e])
            }),
            true,
        ),
        (
            "sinusoidal positional encoding",
            tokens(5, |b, _, e| {
                let p = b.add(Op::PositionalEncoding { learned: false }, &[e]);
                b.add(Op::Tanh, &[p])
            }),
            true,
        ),
        ("conv1d causal k3 d2", conv1d(3, 2, true, true), false),
        ("conv1d same k3", conv1d(3, 1, false, false), false),
        ("conv1d same k3 d2", conv1d(3, 2, false, true), false),
        ("conv1d k1", conv1d(1, 1, false, true), false),
    ]
}

/// Random inputs: normal features, or ids in `[0, VOCAB)` with the last step of sample 0
/// padding and every step of the last sample but the first padding.
fn input(graph: &Graph, n: usize, token_ids: bool, seed: u64) -> ArrayD<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dims = vec![n];
    dims.extend(&graph.input);
    let normal = Normal::new(0.0f64, 1.0).unwrap();
    if !token_ids {
        return ArrayD::from_shape_simple_fn(IxDyn(&dims), || normal.sample(&mut rng) as f32);
    }
    let mut x = ArrayD::from_shape_simple_fn(IxDyn(&dims), || rng.random_range(1..VOCAB) as f32);
    let t = graph.input[0];
    x[[0, t - 1]] = 0.0;
    for s in 1..t {
        x[[n - 1, s]] = 0.0;
    }
    x
}

/// He init with every bias, BatchNorm/LayerNorm tensor and zero-started Parameter redrawn.
fn weights(graph: &Graph, seed: u64) -> Weights {
    let mut w = Weights::he_init(graph, seed).unwrap();
    w.randomize_batch_norm(graph, seed ^ 0x5eed).unwrap();
    w.randomize_biases(graph, seed ^ 0xb1a5).unwrap();
    w
}

#[test]
fn every_op_exports_like_the_reference() {
    let mut failures = Vec::new();
    for (k, (name, graph, ids)) in op_graphs().into_iter().enumerate() {
        graph.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let w = weights(&graph, k as u64);
        for (n, batch) in [(2, None), (3, None), (2, Some(2))] {
            let options = ExportOptions {
                batch,
                ..Default::default()
            };
            let x = input(&graph, n, ids, 100 + k as u64);
            if let Err(e) = export_matches(&graph, &w, &x, &options) {
                failures.push(format!("{name}, batch {n} ({batch:?}): {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_op_has_exact_gradients() {
    let cases = op_graphs()
        .into_iter()
        .enumerate()
        .map(|(k, (name, graph, ids))| Case {
            name: name.to_string(),
            graph,
            batch: 3,
            seed: 200 + k as u64,
            max_elems: 160,
            input_scale: 1.0,
            tokens: ids.then_some(VOCAB),
            policy_loss: None,
            regression: false,
        })
        .collect();
    check_all(cases);
}

/// Every tensor of `graph` N(0, 0.5), so biases and zero-started tensors matter too.
fn random_weights(graph: &Graph, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f64, 0.5).unwrap();
    parameter_specs(graph)
        .unwrap()
        .into_iter()
        .map(|s| {
            let t =
                ArrayD::from_shape_simple_fn(IxDyn(&s.shape), || normal.sample(&mut rng) as f32);
            (s.name, t)
        })
        .collect()
}

fn tensor(w: &Weights, node: NodeId, role: &str) -> ArrayD<f64> {
    w.get(&format!("n{node}.{role}")).unwrap().mapv(f64::from)
}

fn matrix(t: ArrayD<f64>) -> Array2<f64> {
    t.into_dimensionality().unwrap()
}

fn vector(t: ArrayD<f64>) -> Array1<f64> {
    let n = t.len();
    t.into_shape_with_order(n).unwrap()
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-10, "{what}: max error {err:e}");
}

/// GRU and LSTM (T = 3, F = 4, H = 5) against their equations, step by step.
#[test]
fn recurrent_builders_follow_the_pytorch_equations() {
    for cell in ["gru", "lstm"] {
        let mut b = GraphBuilder::new(&[3, 4]);
        let r = if cell == "gru" {
            gru(&mut b, 0, 5).unwrap()
        } else {
            lstm(&mut b, 0, 5).unwrap()
        };
        let g = b.finish(r.sequence);
        let w = random_weights(&g, 7);
        let x = input(&g, 2, false, 8).mapv(f64::from);
        let values = forward_all(&g, &|n| w.get(n).map(|t| t.mapv(f64::from)), &x).unwrap();
        let w_ih = matrix(tensor(&w, r.input_projection, "weight"));
        let b_ih = vector(tensor(&w, r.input_projection, "bias"));
        let w_hh_t = matrix(tensor(&w, r.hidden_weight, "weight"));
        let b_hh = vector(tensor(&w, r.hidden_bias, "weight"));
        let mut want = ArrayD::zeros(IxDyn(&[2, 3, 5]));
        for n in 0..2 {
            let (mut h, mut c) = (Array1::<f64>::zeros(5), Array1::<f64>::zeros(5));
            for t in 0..3 {
                let xt = x.slice(s![n, t, ..]);
                let gi = w_ih.dot(&xt) + &b_ih;
                let gh = h.dot(&w_hh_t) + &b_hh;
                let part = |v: &Array1<f64>, k: usize| v.slice(s![k * 5..(k + 1) * 5]).to_owned();
                if cell == "gru" {
                    let r = (part(&gi, 0) + part(&gh, 0)).mapv(sigmoid);
                    let z = (part(&gi, 1) + part(&gh, 1)).mapv(sigmoid);
                    let nn = (part(&gi, 2) + &r * &part(&gh, 2)).mapv(f64::tanh);
                    h = (1.0 - &z) * &nn + &z * &h;
                } else {
                    let pre = &gi + &gh;
                    let i = part(&pre, 0).mapv(sigmoid);
                    let f = part(&pre, 1).mapv(sigmoid);
                    let gg = part(&pre, 2).mapv(f64::tanh);
                    let o = part(&pre, 3).mapv(sigmoid);
                    c = &f * &c + &i * &gg;
                    h = &o * &c.mapv(f64::tanh);
                }
                want.slice_mut(s![n, t, ..]).assign(&h);
            }
        }
        assert_close(values[r.sequence].as_ref().unwrap(), &want, cell);
        let mut g = g;
        g.output = r.last;
        let last = forward_all(&g, &|n| w.get(n).map(|t| t.mapv(f64::from)), &x).unwrap();
        let last = last[r.last].as_ref().unwrap();
        assert_close(last, &want.index_axis(Axis(1), 2).to_owned(), cell);
        g.output = r.sequence;
        // PyTorch's parameter count: gates * (F H + H H + 2 H).
        let gates = if cell == "gru" { 3 } else { 4 };
        assert_eq!(
            g.param_count().unwrap(),
            gates * (4 * 5 + 5 * 5 + 2 * 5),
            "{cell}"
        );
    }
}

/// A small transformer encoder on token ids: embedding, learned positions, masked two-head
/// self-attention, residual, LayerNorm, feed-forward, masked mean pool.
fn encoder() -> (
    Graph,
    nas_graph::sequence::Attention,
    nas_graph::sequence::FeedForward,
) {
    let mut b = GraphBuilder::new(&[3]);
    let e = b.add(
        Op::Embedding {
            vocab: VOCAB,
            dim: 4,
        },
        &[0],
    );
    let p = b.add(Op::PositionalEncoding { learned: true }, &[e]);
    let mask = b.add(Op::PaddingMask, &[0]);
    let att = self_attention(&mut b, p, 2, 4, Some(mask)).unwrap();
    let res = b.add(Op::Add, &[p, att.output]);
    let norm = b.add(Op::LayerNorm { eps: 1e-5 }, &[res]);
    let ff = feed_forward(&mut b, norm, 5).unwrap();
    let pooled = b.add(
        Op::TimePool {
            kind: TimePoolKind::Mean,
        },
        &[ff.output, mask],
    );
    let out = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[pooled],
    );
    (b.finish(out), att, ff)
}

/// Self-attention and feed-forward against their equations, written per sample and head.
#[test]
fn attention_and_feed_forward_follow_their_equations() {
    let (g, att, ff) = encoder();
    let w = random_weights(&g, 11);
    let x = input(&g, 3, true, 12).mapv(f64::from);
    let values = forward_all(&g, &|n| w.get(n).map(|t| t.mapv(f64::from)), &x).unwrap();
    let attn_in = values[g.nodes[att.query].inputs[0]].as_ref().unwrap();
    let proj = |node: NodeId, v: &Array2<f64>| {
        let y = v.dot(&matrix(tensor(&w, node, "weight")).t());
        match w.get(&format!("n{node}.bias")) {
            Some(b) => y + &vector(b.mapv(f64::from)),
            None => y,
        }
    };
    let mut want = ArrayD::zeros(IxDyn(&[3, 3, 4]));
    for n in 0..3 {
        let xs: Array2<f64> = attn_in
            .index_axis(Axis(0), n)
            .to_owned()
            .into_dimensionality()
            .unwrap();
        let (q, k, v) = (
            proj(att.query, &xs),
            proj(att.key, &xs),
            proj(att.value, &xs),
        );
        let mut heads = Array2::<f64>::zeros((3, 4));
        for h in 0..2 {
            let cols = s![.., h * 2..(h + 1) * 2];
            // The graph holds 1 / sqrt(2) as a float32 attribute.
            let scores = q.slice(cols).dot(&k.slice(cols).t()) * f64::from(1.0f32 / 2f32.sqrt());
            for i in 0..3 {
                let row: Vec<f64> = (0..3)
                    .map(|j| scores[[i, j]] + if x[[n, j]] == 0.0 { -1e9 } else { 0.0 })
                    .collect();
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = row.iter().map(|r| (r - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..2 {
                    heads[[i, h * 2 + d]] = (0..3).map(|j| e[j] / sum * v[[j, h * 2 + d]]).sum();
                }
            }
        }
        want.index_axis_mut(Axis(0), n)
            .assign(&proj(att.projection, &heads));
    }
    assert_close(
        values[att.output].as_ref().unwrap(),
        &want,
        "self-attention",
    );

    let ff_in = values[g.nodes[ff.up].inputs[0]].as_ref().unwrap();
    let mut want = ArrayD::zeros(IxDyn(&[3, 3, 4]));
    for n in 0..3 {
        let xs: Array2<f64> = ff_in
            .index_axis(Axis(0), n)
            .to_owned()
            .into_dimensionality()
            .unwrap();
        let up = proj(ff.up, &xs).mapv(|v| 0.5 * v * (1.0 + libm_erf(v / 2f64.sqrt())));
        want.index_axis_mut(Axis(0), n).assign(&proj(ff.down, &up));
    }
    assert_close(values[ff.output].as_ref().unwrap(), &want, "feed-forward");
}

/// erf by its Taylor series (|x| small here) to stay independent of the crate's GELU.
fn libm_erf(x: f64) -> f64 {
    if x.abs() > 3.0 {
        return x.signum() * (1.0 - (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()));
    }
    let mut term = x;
    let mut sum = x;
    for k in 1..200 {
        term *= -x * x / k as f64;
        sum += term / (2 * k + 1) as f64;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

fn recurrent_classifier(cell: &str) -> Graph {
    let mut b = GraphBuilder::new(&[3, 4]);
    let r = if cell == "gru" {
        gru(&mut b, 0, 5).unwrap()
    } else {
        lstm(&mut b, 0, 5).unwrap()
    };
    let pooled = b.add(
        Op::TimePool {
            kind: TimePoolKind::Max,
        },
        &[r.sequence],
    );
    let both = b.add(Op::Add, &[pooled, r.last]);
    let out = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[both],
    );
    b.finish(out)
}

#[test]
fn builders_export_and_train_exactly() {
    let graphs = [
        ("gru", recurrent_classifier("gru"), false),
        ("lstm", recurrent_classifier("lstm"), false),
        ("attention encoder", encoder().0, true),
    ];
    for (k, (name, g, ids)) in graphs.iter().enumerate() {
        let w = random_weights(g, 20 + k as u64);
        for batch in [None, Some(3)] {
            let options = ExportOptions {
                batch,
                ..Default::default()
            };
            let x = input(g, 3, *ids, 30 + k as u64);
            export_matches(g, &w, &x, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let cases = graphs
        .into_iter()
        .enumerate()
        .map(|(k, (name, graph, ids))| Case {
            name: name.to_string(),
            graph,
            batch: 3,
            seed: 300 + k as u64,
            max_elems: 60,
            input_scale: 1.0,
            tokens: ids.then_some(VOCAB),
            policy_loss: None,
            regression: false,
        })
        .collect();
    check_all(cases);
}

/// Hashing, parameter specs, initialization and inheritance work on sequence graphs; the
/// reference rejects ids that are no vocabulary index.
#[test]
fn hash_init_inherit_and_bad_ids() {
    use nas_graph::testing::expanded_canonical_hash;
    let (enc, ..) = encoder();
    let gru_net = recurrent_classifier("gru");
    let lstm_net = recurrent_classifier("lstm");
    for g in [&enc, &gru_net, &lstm_net] {
        assert_eq!(g.canonical_hash(), expanded_canonical_hash(g));
    }
    assert_ne!(gru_net.canonical_hash(), lstm_net.canonical_hash());

    // One tensor read twice is not two tensors of the same shape.
    let reads = |shared: bool| {
        let mut b = GraphBuilder::new(&[2, 3]);
        let p = |b: &mut GraphBuilder| {
            b.add(
                Op::Parameter {
                    shape: vec![3, 3],
                    init: ParamInit::He,
                },
                &[],
            )
        };
        let w1 = p(&mut b);
        let w2 = if shared { w1 } else { p(&mut b) };
        let a = b.add(Op::MatMul, &[0, w1]);
        let c = b.add(Op::MatMul, &[a, w2]);
        b.finish(c)
    };
    assert_ne!(reads(true).canonical_hash(), reads(false).canonical_hash());
    assert_eq!(reads(true).param_count().unwrap(), 9);
    assert_eq!(reads(false).param_count().unwrap(), 18);

    // Every spec initialized with its shape; uniform recurrent weights within their bound.
    let w = Weights::he_init(&gru_net, 1).unwrap();
    w.check(&gru_net).unwrap();
    let mut b = GraphBuilder::new(&[3, 4]);
    let r = gru(&mut b, 0, 5).unwrap();
    let hw = w.get(&format!("n{}.weight", r.hidden_weight)).unwrap();
    let bound = 1.0 / 5f32.sqrt();
    assert!(hw.iter().all(|v| v.abs() <= bound) && hw.iter().any(|&v| v != 0.0));
    let hb = w.get(&format!("n{}.weight", r.hidden_bias)).unwrap();
    assert!(hb.iter().all(|&v| v == 0.0));
    let table = Weights::he_init(&enc, 2).unwrap();
    let emb = table.get("n1.weight").unwrap();
    let var = emb.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / emb.len() as f64;
    assert!((0.4..2.5).contains(&var), "embedding variance {var}");

    // Inheritance: an identical child copies everything; a wider GRU copies what still fits.
    let (child, report) = nas_graph::inherit(
        &gru_net,
        &w,
        &gru_net,
        &Weights::he_init(&gru_net, 3).unwrap(),
    );
    assert!(
        report.fresh.is_empty() && report.morphed.is_empty(),
        "{report:?}"
    );
    assert_eq!(child, w);
    let mut b = GraphBuilder::new(&[3, 4]);
    let wide = gru(&mut b, 0, 6).unwrap();
    let out = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[wide.last],
    );
    let wide_net = b.finish(out);
    let (_, report) = nas_graph::inherit(
        &gru_net,
        &w,
        &wide_net,
        &Weights::he_init(&wide_net, 4).unwrap(),
    );
    assert!(!report.fresh.is_empty());

    // Ids must be integers in [0, vocab).
    let wts = weights(&enc, 5);
    for bad in [7.0f64, -1.0, 2.5] {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![1.0, bad, 0.0]).unwrap();
        let e = nas_graph::reference::forward(&enc, &wts, &x)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 1 (Embedding)")
                && e.contains(&format!("token id {bad}"))
                && e.contains("[0, 7)"),
            "{e}"
        );
    }
}

/// Embedding -> GRU -> Linear learns, inside ONNX Runtime with AdamW, whether token 1 came
/// first: the label sits at step 0, so it has to cross every recurrent step.
#[test]
fn a_gru_classifier_learns_in_onnx_runtime() {
    use nas_graph::train::{
        INPUT, LABELS, LOSS, LR, Optimizer, STEP, TrainOptions, initial_state, training_step,
    };
    use ort::session::SessionInputValue;
    use ort::value::TensorRef;
    let mut b = GraphBuilder::new(&[4]);
    let e = b.add(Op::Embedding { vocab: 5, dim: 6 }, &[0]);
    let r = gru(&mut b, e, 8).unwrap();
    let out = b.add(
        Op::Linear {
            out_features: 2,
            bias: true,
        },
        &[r.last],
    );
    let g = b.finish(out);
    let options = TrainOptions {
        batch: Some(32),
        optimizer: Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        weight_decay: 0.01,
        ..TrainOptions::default()
    };
    let step = training_step(&g, &options).unwrap();
    let mut state = initial_state(&step, &Weights::he_init(&g, 0).unwrap()).unwrap();
    let mut s = support::runtime::session(&step.model);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut losses = Vec::new();
    for k in 1..=150 {
        let x = ArrayD::from_shape_simple_fn(IxDyn(&[32, 4]), || rng.random_range(1..5) as f32);
        let labels = ArrayD::from_shape_fn(IxDyn(&[32]), |i| i64::from(x[[i[0], 0]] == 1.0));
        let lr = ndarray::arr0(0.02f32).into_dyn();
        let t = ndarray::arr0(k as f32).into_dyn();
        let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
            (INPUT.into(), TensorRef::from_array_view(&x).unwrap().into()),
            (
                LABELS.into(),
                TensorRef::from_array_view(&labels).unwrap().into(),
            ),
            (LR.into(), TensorRef::from_array_view(&lr).unwrap().into()),
            (STEP.into(), TensorRef::from_array_view(&t).unwrap().into()),
        ];
        for (st, v) in step.state.iter().zip(&state) {
            feed.push((
                st.input.clone(),
                TensorRef::from_array_view(v).unwrap().into(),
            ));
        }
        let outputs = s.run(feed).unwrap();
        losses.push(outputs[LOSS].try_extract_scalar::<f32>().unwrap());
        let next: Vec<ArrayD<f32>> = step
            .state
            .iter()
            .map(|st| {
                outputs[st.output.as_str()]
                    .try_extract_array::<f32>()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        drop(outputs);
        state = next;
    }
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    assert!(last < 0.1 && last < first / 4.0, "loss {first} -> {last}");
}

/// A model exported with feature normalization (`normalize_axis = 1`) takes raw `[T, F]`
/// values and computes what the plain network computes on normalized ones; the axis must
/// exist and have one mean and std per entry.
#[test]
fn sequence_features_are_normalized_along_their_last_axis() {
    let mut b = GraphBuilder::new(&[4, 3]);
    let d = b.add(dense(5, true), &[0]);
    let r = gru(&mut b, d, 4).unwrap();
    let out = head(&mut b, r.sequence);
    let g = b.finish(out);
    let w = weights(&g, 7);
    let raw = input(&g, 3, false, 8).mapv(|v| 2.0 * v + 1.0);
    let (mean, std) = (vec![1.0f32, -0.5, 3.0], vec![2.0f32, 0.5, 4.0]);
    let mut normalized = raw.mapv(f64::from);
    for (f, mut lane) in normalized.axis_iter_mut(Axis(2)).enumerate() {
        lane.mapv_inplace(|v| (v - f64::from(mean[f])) / f64::from(std[f]));
    }
    let options = ExportOptions {
        normalize: Some((mean.clone(), std.clone())),
        normalize_axis: 1,
        ..Default::default()
    };
    let model = nas_graph::export_inference(&g, &w, &options).unwrap();
    let mut s = support::runtime::session(&model);
    let outputs = s
        .run(ort::inputs!["input" => ort::value::TensorRef::from_array_view(&raw).unwrap()])
        .unwrap();
    let got = outputs[0]
        .try_extract_array::<f32>()
        .unwrap()
        .mapv(f64::from);
    let want = nas_graph::reference::forward(&g, &w, &normalized).unwrap();
    assert_eq!(got.shape(), want.shape());
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err < 1e-4,
        "normalized along the feature axis: max error {err:e}"
    );

    for (axis, m, says) in [
        (2, mean.clone(), "has 2 axes"),
        (0, mean.clone(), "per input channel (4) along axis 0"),
        (1, vec![0.0; 4], "per input channel (3) along axis 1"),
    ] {
        let bad = ExportOptions {
            normalize: Some((m.clone(), vec![1.0; m.len()])),
            normalize_axis: axis,
            ..Default::default()
        };
        let e = nas_graph::export_inference(&g, &w, &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
    }
}

/// Token-id inputs are recognized by the embedding reading them; value inputs are not.
#[test]
fn token_vocab_names_the_embedding_of_the_input() {
    let (enc, ..) = encoder();
    assert_eq!(enc.token_vocab(), Some(VOCAB));
    assert_eq!(recurrent_classifier("gru").token_vocab(), None);
}

/// Padded float sequences: a step whose features are all 0 is padding. The exported model's
/// normalization keeps such steps at 0, `PaddingMask` of `[T, F]` finds them, and a masked
/// pool over them computes what the reference computes on normalized values with the padding
/// kept at 0; the same network without the mask computes something else.
#[test]
fn padded_float_steps_are_masked_after_normalization() {
    let build = |masked: bool| {
        let mut b = GraphBuilder::new(&[4, 3]);
        let d = b.add(dense(5, true), &[0]);
        // The mask node exists either way, so both graphs number their nodes alike.
        let mask = b.add(Op::PaddingMask, &[0]);
        let mut ins = vec![d];
        if masked {
            ins.push(mask);
        }
        let pooled = b.add(
            Op::TimePool {
                kind: TimePoolKind::Last,
            },
            &ins,
        );
        let out = head(&mut b, pooled);
        b.finish(out)
    };
    let g = build(true);
    let w = weights(&g, 9);
    // Sample lengths 4, 2 and 1.
    let mut raw = input(&g, 3, false, 10).mapv(|v| 2.0 * v + 1.0);
    for (i, len) in [(1, 2), (2, 1)] {
        raw.slice_mut(ndarray::s![i, len.., ..]).fill(0.0);
    }
    let (mean, std) = (vec![1.0f32, -0.5, 3.0], vec![2.0f32, 0.5, 4.0]);
    let mut normalized = raw.mapv(f64::from);
    for mut step in normalized.rows_mut() {
        if step.iter().any(|&v| v != 0.0) {
            for (f, v) in step.iter_mut().enumerate() {
                *v = (*v - f64::from(mean[f])) / f64::from(std[f]);
            }
        }
    }
    let options = ExportOptions {
        normalize: Some((mean.clone(), std.clone())),
        normalize_axis: 1,
        normalize_keep_padding: true,
        ..Default::default()
    };
    let run = |g: &Graph| {
        let model = nas_graph::export_inference(g, &w, &options).unwrap();
        let mut s = support::runtime::session(&model);
        let outputs = s
            .run(ort::inputs!["input" => ort::value::TensorRef::from_array_view(&raw).unwrap()])
            .unwrap();
        outputs[0]
            .try_extract_array::<f32>()
            .unwrap()
            .mapv(f64::from)
    };
    let got = run(&g);
    let want = nas_graph::reference::forward(&g, &w, &normalized).unwrap();
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-4, "masked export against the reference: {err:e}");
    // Unmasked, the last step of a padded sample is the padding's: other logits.
    let plain = run(&build(false));
    for i in [1, 2] {
        let diff = (0..plain.shape()[1])
            .map(|k| (plain[[i, k]] - got[[i, k]]).abs())
            .fold(0.0f64, f64::max);
        assert!(diff > 1e-3, "sample {i}: the mask changed nothing");
    }
    let diff0 = (0..plain.shape()[1])
        .map(|k| (plain[[0, k]] - got[[0, k]]).abs())
        .fold(0.0f64, f64::max);
    assert!(diff0 < 1e-5, "an unpadded sample must not change: {diff0}");

    // Kept padding needs a [T, F] input normalized per feature.
    let image = GraphBuilder::new(&[3, 4, 4]);
    let mut ib = image;
    let flat = ib.add(Op::Flatten, &[0]);
    let gi = ib.finish(flat);
    let bad = ExportOptions {
        normalize: Some((mean.clone(), std.clone())),
        normalize_axis: 0,
        normalize_keep_padding: true,
        ..Default::default()
    };
    let e = nas_graph::export_inference(&gi, &Weights::he_init(&gi, 1).unwrap(), &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("padding is kept only for sequences"), "{e}");
}
