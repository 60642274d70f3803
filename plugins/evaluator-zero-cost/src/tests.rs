//! Unit tests; those that score networks load the real ONNX Runtime (`cargo xtask ort`).

use super::*;
use crate::linalg::{corrcoef, log_abs_det, ranks, spearman, symmetric_eigenvalues};
use crate::proxies::{Batch, DEGENERATE, data_scores, hamming_kernel, input_gradients, synflow};
use crate::ranking::Ranking;
use crate::surgery::{Model, Output, shift_weights, with_input_probe, without_batch_norm};
use nas_core::space::{CellSpace, CellSpaceConfig, SearchSpace};
use nas_graph::reference;
use nas_graph::train::reference::training_forward;
use nas_graph::weights::Weights;
use nas_graph::{GraphBuilder, Op};
use nas_plugin::{Observation, RuntimeSettings, TrialState};
use ndarray::ArrayD;
use prost::Message;
use rand::Rng;

fn runtime() -> RuntimeSettings {
    RuntimeSettings {
        threads: 2,
        ort_library: Some(
            nas_runtime::locate_library(None)
                .expect("ONNX Runtime is provisioned (`cargo xtask ort`)")
                .display()
                .to_string(),
        ),
        ..RuntimeSettings::default()
    }
}

/// What the proxies run with: the library the host would resolve.
fn session() -> nas_runtime::SessionSettings {
    let r = runtime();
    nas_runtime::SessionSettings::from_names(
        &r.execution_provider,
        r.fallback.as_deref(),
        r.threads,
        r.ort_library.as_deref().map(std::path::Path::new),
    )
    .unwrap()
}

fn context(config: Value, data: Value) -> EvaluatorContext {
    EvaluatorContext {
        config,
        runtime: runtime(),
        seed: 5,
        study_dir: std::env::temp_dir().display().to_string(),
        data,
        supernet: None,
    }
}

fn evaluator(config: Value) -> ZeroCostEvaluator {
    ZeroCostEvaluator::new(context(config, Value::Null)).unwrap()
}

/// A request with a new trial id (the cascade tells candidates apart by id).
fn request(graph: Graph) -> EvalRequest {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EvalRequest {
        trial_id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        values: vec![],
        arch: "test".into(),
        graph,
        fidelity: None,
        metrics: Metrics::new(),
        parent: None,
    }
}

/// conv -> BN -> ReLU -> conv, added to a skip -> ReLU -> pool -> linear.
fn small() -> Graph {
    let mut b = GraphBuilder::new(&[2, 6, 6]);
    let c = b.conv(0, 4, 3, 1, 1);
    let n = b.batch_norm(c);
    let r = b.add(Op::Relu, &[n]);
    let c2 = b.conv(r, 4, 3, 1, 1);
    let n2 = b.batch_norm(c2);
    let a = b.add(Op::Add, &[n2, r]);
    let r2 = b.add(Op::Relu, &[a]);
    let p = b.add(Op::GlobalAvgPool, &[r2]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[p],
    );
    b.finish(l)
}

/// `depth` 3x3 convs (ReLU between) -> pool -> linear without bias: every input-output path
/// crosses `depth + 1` weights.
fn chain(depth: usize, channels: usize) -> Graph {
    let mut b = GraphBuilder::new(&[3, 8, 8]);
    let mut x = b.input();
    for i in 0..depth {
        if i > 0 {
            x = b.add(Op::Relu, &[x]);
        }
        let c = b.conv(x, channels, 3, 1, 1);
        x = b.batch_norm(c);
    }
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let l = b.add(
        Op::Linear {
            out_features: 5,
            bias: false,
        },
        &[p],
    );
    b.finish(l)
}

/// A small NB201 network (C = 4, N = 1).
fn cell(arch: &str, input: &[usize]) -> Graph {
    let space = CellSpace::new(&CellSpaceConfig {
        input: Some(input.to_vec()),
        classes: Some(10),
        channels: 4,
        cells_per_stage: 1,
        ..CellSpaceConfig::default()
    })
    .unwrap();
    space.decode(&space.parse_arch(arch).unwrap()).unwrap()
}

const CONV_ARCH: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|";
const NONE_ARCH: &str = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|";

// ---- configuration --------------------------------------------------------------------------

#[test]
fn config_defaults() {
    let c = parse_config(&Value::Null).unwrap();
    assert_eq!(c, parse_config(&json!({})).unwrap());
    assert_eq!(c.proxies, config::PROXIES);
    assert!(!c.explicit);
    assert_eq!(c.batch, 64);
    assert_eq!((c.seed, c.data, c.cascade), (None, None, None));
}

#[test]
fn config_proxies_keep_canonical_order_and_combined_pulls_its_inputs() {
    let c = parse_config(&json!({"proxies": ["synflow", "params"]})).unwrap();
    assert_eq!(c.proxies, ["params", "synflow"]);
    assert!(c.explicit);
    let c = parse_config(&json!({"proxies": ["zc_combined"]})).unwrap();
    assert_eq!(c.proxies, ["params", "naswot", "synflow", "zc_combined"]);
}

#[test]
fn config_values() {
    let c = parse_config(&json!({"batch": 8, "seed": 3, "data": "random"})).unwrap();
    assert_eq!(
        (c.batch, c.seed, c.data),
        (8, Some(3), Some(DataSource::Random))
    );
    let c = parse_config(&json!({"keep_top": 0.25, "rank_by": "naswot"})).unwrap();
    assert_eq!(
        c.cascade,
        Some(Cascade {
            rank_by: "naswot".into(),
            rule: Rule::KeepTop(0.25),
            warmup: 10,
            learn: None,
        })
    );
    let c = parse_config(&json!({"threshold": -2, "warmup": 0})).unwrap();
    assert_eq!(
        c.cascade,
        Some(Cascade {
            rank_by: "zc_combined".into(),
            rule: Rule::Threshold(-2.0),
            warmup: 0,
            learn: None,
        })
    );
    let c = parse_config(&json!({"keep_top": 0.5, "rank_by": "learned"})).unwrap();
    assert_eq!(
        c.cascade.unwrap().learn,
        Some(Learn {
            label: None,
            min_labels: 20,
            choices: true
        })
    );
    let c = parse_config(&json!({
        "keep_top": 0.5, "rank_by": "learned", "label": "val_accuracy", "min_labels": 5,
        "learn_choices": false
    }))
    .unwrap();
    assert_eq!(
        c.cascade.unwrap().learn,
        Some(Learn {
            label: Some("val_accuracy".into()),
            min_labels: 5,
            choices: false
        })
    );
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = parse_config(&json!({"proxy": ["naswot"]})).unwrap_err();
    assert!(
        e.contains("`proxy`") && e.contains("accepted: proxies, batch"),
        "{e}"
    );
    let e = parse_config(&json!({"proxies": ["nwot"]})).unwrap_err();
    assert!(e.contains("`nwot`") && e.contains("naswot"), "{e}");
    for (bad, says) in [
        (json!({"proxies": []}), "non-empty"),
        (json!({"proxies": "naswot"}), "non-empty"),
        (json!({"batch": 1}), "`batch`"),
        (json!({"batch": 4.5}), "`batch`"),
        (json!({"seed": -1}), "`seed`"),
        (json!({"data": "cifar"}), "\"real\" or \"random\""),
        (json!({"keep_top": 0}), "(0, 1]"),
        (json!({"keep_top": 1.5}), "(0, 1]"),
        (json!({"keep_top": "half"}), "must be a number"),
        (json!({"keep_top": 0.5, "threshold": 1}), "both set"),
        (
            json!({"rank_by": "naswot"}),
            "add `keep_top` or `threshold`",
        ),
        (json!({"warmup": 3}), "add `keep_top` or `threshold`"),
        (json!({"keep_top": 0.5, "warmup": -1}), "`warmup`"),
        (
            json!({"proxies": ["params"], "keep_top": 0.5}),
            "`rank_by = \"zc_combined\"` is not among",
        ),
        (
            json!({"proxies": ["params"], "keep_top": 0.5, "rank_by": "naswot"}),
            "is not among",
        ),
        (json!(7), "expected a table"),
        (
            json!({"threshold": 1, "rank_by": "learned"}),
            "prune with `keep_top`",
        ),
        (
            json!({"keep_top": 0.5, "rank_by": "learned", "proxies": ["naswot"]}),
            "add it to `proxies`",
        ),
        (
            json!({"keep_top": 0.5, "label": "val_accuracy"}),
            "only applies to the learned ranking",
        ),
        (
            json!({"keep_top": 0.5, "rank_by": "learned", "min_labels": 1}),
            "`min_labels`",
        ),
        (
            json!({"keep_top": 0.5, "rank_by": "learned", "label": 3}),
            "`label`",
        ),
        (
            json!({"keep_top": 0.5, "rank_by": "learned", "learn_choices": "yes"}),
            "`learn_choices`",
        ),
    ] {
        let e = parse_config(&bad).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
        assert!(e.starts_with("zero-cost evaluator: "), "{e}");
    }
}

#[test]
fn real_data_without_a_data_table_is_an_error_at_creation() {
    let e = ZeroCostEvaluator::new(context(json!({"data": "real"}), Value::Null))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[data]") && e.contains("\"random\""), "{e}");
}

// ---- cascade --------------------------------------------------------------------------------

#[test]
fn cascade_keeps_everything_during_warmup_then_the_top_fraction() {
    let c = Cascade {
        rank_by: "x".into(),
        rule: Rule::KeepTop(0.5),
        warmup: 3,
        learn: None,
    };
    assert!(c.keeps(&[], -100.0));
    assert!(c.keeps(&[5.0, 6.0], -100.0));
    let seen = [1.0, 2.0, 3.0];
    // Rank among 4 values; the best ceil(0.5 * 4) = 2 are kept, ties favour the candidate.
    assert!(c.keeps(&seen, 2.5));
    assert!(c.keeps(&seen, 2.0));
    assert!(!c.keeps(&seen, 1.5));
    assert!(c.keeps(&seen, 10.0));
    let t = Cascade {
        rule: Rule::Threshold(2.0),
        ..c
    };
    assert!(t.keeps(&[0.0], 1.0));
    assert!(t.keeps(&seen, 2.0));
    assert!(!t.keeps(&seen, 1.99));
}

fn linear_net(hidden: usize) -> Graph {
    let mut b = GraphBuilder::new(&[2, 4, 4]);
    let p = b.add(Op::GlobalAvgPool, &[0]);
    let h = b.add(
        Op::Linear {
            out_features: hidden,
            bias: true,
        },
        &[p],
    );
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[h],
    );
    b.finish(l)
}

#[test]
fn cascade_prunes_after_warmup_through_evaluate() {
    let mut e = evaluator(json!({
        "proxies": ["params"], "keep_top": 0.5, "rank_by": "params", "warmup": 3
    }));
    let status = |e: &mut ZeroCostEvaluator, hidden: usize| {
        let r = e.evaluate(&request(linear_net(hidden))).unwrap();
        assert_eq!(r.metrics["params"], (6 * hidden + 3) as f64);
        r.status
    };
    for hidden in [10, 20, 30] {
        assert_eq!(status(&mut e, hidden), EvalStatus::Ok, "warm-up");
    }
    assert_eq!(status(&mut e, 5), EvalStatus::Pruned);
    assert_eq!(status(&mut e, 100), EvalStatus::Ok);
    assert_eq!(status(&mut e, 25), EvalStatus::Ok);
    assert_eq!(status(&mut e, 11), EvalStatus::Pruned);
    let r = e.evaluate(&request(linear_net(1))).unwrap();
    assert_eq!(r.details["cascade"]["seen"], 8);
    assert_eq!(r.details["cascade"]["kept"], false);
}

// ---- linear algebra -------------------------------------------------------------------------

#[test]
fn log_determinant() {
    assert!((log_abs_det(&[2.0, 1.0, 1.0, 3.0], 2) - 5f64.ln()).abs() < 1e-12);
    // Needs a row swap; det = -6.
    let a = [0.0, 2.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    assert!((log_abs_det(&a, 3) - 6f64.ln()).abs() < 1e-12);
    assert_eq!(log_abs_det(&[1.0, 2.0, 2.0, 4.0], 2), f64::NEG_INFINITY);
}

#[test]
fn eigenvalues_of_symmetric_matrices() {
    let ev = symmetric_eigenvalues(&[2.0, 1.0, 1.0, 2.0], 2);
    assert!(
        (ev[0] - 1.0).abs() < 1e-12 && (ev[1] - 3.0).abs() < 1e-12,
        "{ev:?}"
    );
    // Q diag(1, 2, 5) Q^T for a rotation Q: eigenvalues survive, trace and det agree.
    let n = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let m: Vec<f64> = (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = (0..n).map(|k| m[i * n + k] * m[j * n + k]).sum();
        }
    }
    let ev = symmetric_eigenvalues(&s, n);
    let trace: f64 = (0..n).map(|i| s[i * n + i]).sum();
    assert!((ev.iter().sum::<f64>() - trace).abs() < 1e-9);
    assert!((ev.iter().map(|v| v.ln()).sum::<f64>() - log_abs_det(&s, n)).abs() < 1e-8);
    assert!(ev.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn correlations_and_ranks() {
    let c = corrcoef(&[1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 3.0, 2.0, 1.0], 3, 3).unwrap();
    let want = [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0];
    assert!(
        c.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
        "{c:?}"
    );
    assert!(corrcoef(&[1.0, 1.0, 1.0, 2.0], 2, 2).is_none());
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    assert!((spearman(&[f64::NEG_INFINITY, 0.0, 5.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
}

#[test]
fn hamming_kernel_counts_agreeing_units() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let b = 5;
    let sizes = [3usize, 70, 129];
    let layers: Vec<Vec<bool>> = sizes
        .iter()
        .map(|&d| (0..b * d).map(|_| rng.random_bool(0.5)).collect())
        .collect();
    let views: Vec<(&[bool], usize)> = layers
        .iter()
        .zip(sizes)
        .map(|(l, d)| (l.as_slice(), d))
        .collect();
    let k = hamming_kernel(&views, b);
    for i in 0..b {
        for j in 0..b {
            let same: usize = layers
                .iter()
                .zip(sizes)
                .map(|(l, d)| (0..d).filter(|&u| l[i * d + u] == l[j * d + u]).count())
                .sum();
            assert_eq!(k[i * b + j], same as f64, "({i}, {j})");
        }
    }
}

// ---- model surgery --------------------------------------------------------------------------

#[test]
fn the_input_probe_renumbers_nodes_and_weights() {
    let g = small();
    let p = with_input_probe(&g).unwrap();
    assert_eq!(p.nodes.len(), g.nodes.len() + 1);
    assert_eq!(p.output, g.output + 1);
    assert_eq!(p.shapes().unwrap()[1..], g.shapes().unwrap()[..]);
    assert_eq!(p.param_count().unwrap(), g.param_count().unwrap() + 4);
    let w = shift_weights(&Weights::he_init(&g, 1).unwrap(), 1);
    assert_eq!(
        w.get("n2.weight"),
        Weights::he_init(&g, 1).unwrap().get("n1.weight")
    );
    assert!(w.get("n1.weight").is_none());
    let mut flat = GraphBuilder::new(&[6]);
    let l = flat.add(
        Op::Linear {
            out_features: 2,
            bias: false,
        },
        &[0],
    );
    assert!(with_input_probe(&flat.finish(l)).is_err());
}

#[test]
fn pruning_keeps_only_what_the_outputs_need() {
    let g = small();
    let bytes =
        nas_graph::export_inference(&g, &Weights::he_init(&g, 0).unwrap(), &Default::default())
            .unwrap();
    let mut m = Model::decode(&bytes).unwrap();
    m.prune(&[Output::f32("n3", vec![1, 4, 6, 6])]).unwrap();
    assert_eq!(m.input_names(), ["input"]);
    let kept = nas_graph::onnx::proto::ModelProto::decode(m.encode().as_slice()).unwrap();
    let gp = kept.graph.unwrap();
    let ops: Vec<&str> = gp.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Conv", "BatchNormalization", "Relu"]);
    assert_eq!(gp.output.len(), 1);
    assert!(m.prune(&[Output::f32("nope", vec![])]).is_err());
}

// ---- proxies against float64 references -----------------------------------------------------

#[test]
fn input_gradients_match_central_differences() {
    let g = small();
    let mut w = Weights::he_init(&g, 3).unwrap();
    w.randomize_batch_norm(&g, 4).unwrap();
    w.randomize_biases(&g, 5).unwrap();
    let batch = Batch::random(&g.input, 4, 3, 6);
    let j = input_gradients(&g, &w, &batch, &session()).unwrap();
    let x0 = batch.images.mapv(f64::from);
    let param = |name: &str| w.get(name).map(|t| t.mapv(f64::from));
    let total = |x: &ArrayD<f64>| -> f64 {
        training_forward(&g, &param, x, &batch.labels, &|_| None, 0.0)
            .unwrap()
            .logits
            .sum()
    };
    let scale = j.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let h = 1e-5;
    for _ in 0..24 {
        let k = rng.random_range(0..x0.len());
        let mut up = x0.clone();
        let mut down = x0.clone();
        up.as_slice_mut().unwrap()[k] += h;
        down.as_slice_mut().unwrap()[k] -= h;
        let fd = (total(&up) - total(&down)) / (2.0 * h);
        assert!(
            (fd - j[k]).abs() < 2e-3 * scale,
            "element {k}: ORT {} vs central difference {fd}",
            j[k]
        );
    }
}

/// `R` of synflow's problem in float64: `|w|`, BatchNorm removed, one all-ones input.
fn synflow_output(g: &Graph, seed: u64) -> f64 {
    let w: Weights = init_weights(g, Init::TorchDefault, seed)
        .unwrap()
        .iter()
        .map(|(n, t)| (n.to_string(), t.mapv(f32::abs)))
        .collect();
    let mut shape = vec![1];
    shape.extend_from_slice(&g.input);
    reference::forward(&without_batch_norm(g), &w, &ArrayD::ones(shape))
        .unwrap()
        .sum()
}

#[test]
fn synflow_of_a_chain_is_its_depth_times_its_output() {
    // sum over weights of w dR/dw = (weights per path) * R when every path crosses the same
    // number of weights (Euler's theorem per layer).
    let g = chain(3, 6);
    let s = synflow(&g, 11, &session()).unwrap();
    let want = 4.0 * synflow_output(&g, 11);
    assert!((s / want - 1.0).abs() < 1e-4, "{s} vs {want}");
}

#[test]
fn synflow_beyond_the_float32_range_is_exact() {
    let g = chain(50, 32);
    let r = synflow_output(&g, 2);
    assert!(r > 1e40, "the test needs an output beyond f32: {r:e}");
    let s = synflow(&g, 2, &session()).unwrap();
    let want = 51.0 * r;
    assert!((s / want - 1.0).abs() < 1e-3, "{s:e} vs {want:e}");
}

#[test]
fn naswot_matches_a_direct_computation() {
    let g = small();
    let w = Weights::he_init(&g, 8).unwrap();
    let batch = Batch::random(&g.input, 6, 3, 9);
    let s = data_scores(&g, &w, &batch, true, false, &session()).unwrap();
    assert_eq!((s.grad_norm, s.snip), (None, None));
    // NASWOT from the float64 training-mode forward's ReLU outputs.
    let param = |name: &str| w.get(name).map(|t| t.mapv(f64::from));
    let x = batch.images.mapv(f64::from);
    let relus = [3usize, 7];
    let mut k = vec![0.0; 36];
    for &id in &relus {
        let mut cut = g.clone();
        cut.output = id;
        // The training forward of the prefix graph gives node `id`'s value as its "logits".
        let v = training_forward_values(&cut, &param, &x, &batch.labels);
        let d = v.len() / 6;
        for i in 0..6 {
            for jj in 0..6 {
                k[i * 6 + jj] += (0..d)
                    .filter(|&u| (v[i * d + u] > 0.0) == (v[jj * d + u] > 0.0))
                    .count() as f64;
            }
        }
    }
    let want = log_abs_det(&k, 6);
    assert!(
        (s.naswot.unwrap() - want).abs() < 1e-9,
        "{:?} vs {want}",
        s.naswot
    );
}

/// A prefix graph's output node value in training mode, flattened.
fn training_forward_values(
    g: &Graph,
    param: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    x: &ArrayD<f64>,
    labels: &[i64],
) -> Vec<f64> {
    // Route the value through a flatten so the loss sees a vector; the flatten is exact.
    let mut flat = g.clone();
    flat.nodes.push(nas_graph::Node {
        op: Op::Flatten,
        inputs: vec![g.output],
    });
    flat.output = flat.nodes.len() - 1;
    let zero_labels: Vec<i64> = labels.iter().map(|_| 0).collect();
    training_forward(&flat, param, x, &zero_labels, &|_| None, 0.0)
        .unwrap()
        .logits
        .iter()
        .copied()
        .collect()
}

#[test]
fn grad_norm_and_snip_match_central_differences() {
    let g = small();
    let mut w = Weights::he_init(&g, 8).unwrap();
    w.randomize_batch_norm(&g, 10).unwrap();
    let batch = Batch::random(&g.input, 6, 3, 9);
    let s = data_scores(&g, &w, &batch, false, true, &session()).unwrap();
    assert_eq!(s.naswot, None);
    let x = batch.images.mapv(f64::from);
    let loss = |name: &str, k: usize, d: f64| -> f64 {
        let param = |n: &str| {
            w.get(n).map(|t| {
                let mut t = t.mapv(f64::from);
                if n == name {
                    t.as_slice_mut().unwrap()[k] += d;
                }
                t
            })
        };
        training_forward(&g, &param, &x, &batch.labels, &|_| None, 0.0)
            .unwrap()
            .loss
    };
    let h = 1e-5;
    let (mut norm, mut snip) = (0.0, 0.0);
    // The conv and linear weights (node 1, 4 and 9), not biases or BatchNorm.
    for name in ["n1.weight", "n4.weight", "n9.weight"] {
        let t = w.get(name).unwrap();
        let mut sq = 0.0;
        for (k, &v) in t.iter().enumerate() {
            let g = (loss(name, k, h) - loss(name, k, -h)) / (2.0 * h);
            sq += g * g;
            snip += (g * f64::from(v)).abs();
        }
        norm += f64::sqrt(sq);
    }
    let (gn, sn) = (s.grad_norm.unwrap(), s.snip.unwrap());
    assert!((gn / norm - 1.0).abs() < 1e-3, "grad_norm {gn} vs {norm}");
    assert!((sn / snip - 1.0).abs() < 1e-3, "snip {sn} vs {snip}");
}

// ---- the evaluator --------------------------------------------------------------------------

#[test]
fn every_proxy_on_a_small_cell_network() {
    let e = evaluator(json!({"batch": 8}));
    let g = cell(CONV_ARCH, &[3, 8, 8]);
    let (m, details) = e.score(&g).unwrap();
    for p in config::PROXIES {
        let v = m[*p];
        assert!(v.is_finite() && v != DEGENERATE, "{p} = {v}");
    }
    assert_eq!(m["params"], g.param_count().unwrap() as f64);
    assert_eq!(m["flops"], g.flops().unwrap() as f64);
    assert!(m["synflow"] > 0.0 && m["grad_norm"] > 0.0 && m["snip"] > 0.0);
    assert_eq!(
        m["zc_combined"],
        combined(m["naswot"], m["synflow"], m["params"], 8)
    );
    assert_eq!(details["data"], "random");
    assert_eq!(details["batch"], 8);
    assert!(details["seconds"]["synflow"].as_f64().unwrap() >= 0.0);
    // Same network, same seed: same scores.
    assert_eq!(e.score(&g).unwrap().0, m);
}

#[test]
fn a_network_cut_by_none_edges_scores_as_degenerate() {
    let e = evaluator(json!({"batch": 8}));
    let (m, _) = e.score(&cell(NONE_ARCH, &[3, 8, 8])).unwrap();
    assert_eq!(m["synflow"], 0.0);
    assert_eq!(m["naswot"], DEGENERATE);
    assert_eq!(m["jacob_cov"], DEGENERATE);
    assert_eq!(m["zen"], DEGENERATE);
    let (good, _) = e.score(&cell(CONV_ARCH, &[3, 8, 8])).unwrap();
    assert!(m["zc_combined"] < good["zc_combined"]);
}

#[test]
fn real_data_comes_from_the_data_table() {
    let data = json!({"dataset": "digits"});
    let e = ZeroCostEvaluator::new(context(
        json!({"batch": 16, "proxies": ["naswot", "jacob_cov"]}),
        data.clone(),
    ))
    .unwrap();
    let (m, details) = e.score(&cell(CONV_ARCH, &[1, 8, 8])).unwrap();
    assert_eq!(details["data"], "real");
    assert!(m["naswot"].is_finite() && m["jacob_cov"].is_finite());
    assert_eq!(m.len(), 2);
    let err = e
        .score(&cell(CONV_ARCH, &[3, 8, 8]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 8, 8]") && err.contains("[3, 8, 8]"),
        "{err}"
    );
    // `data = "random"` ignores the table.
    let e = ZeroCostEvaluator::new(context(json!({"batch": 16, "data": "random"}), data)).unwrap();
    assert_eq!(
        e.score(&cell(CONV_ARCH, &[1, 8, 8])).unwrap().1["data"],
        "random"
    );
}

#[test]
fn inapplicable_proxies_are_skipped_by_default_and_errors_when_asked_for() {
    let g = linear_net(4);
    let (m, details) = evaluator(json!({"batch": 4})).score(&g).unwrap();
    assert!(m.contains_key("synflow") && m.contains_key("jacob_cov"));
    for p in ["zen", "naswot", "zc_combined"] {
        assert!(!m.contains_key(p), "{p}");
        assert!(details["skipped"][p].is_string(), "{details}");
    }
    let err = evaluator(json!({"proxies": ["zen"]}))
        .score(&g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot compute `zen`"), "{err}");
}

#[test]
fn the_weights_seed_changes_random_scores_but_not_counts() {
    let g = cell(CONV_ARCH, &[3, 8, 8]);
    let a = evaluator(json!({"batch": 8, "seed": 1}))
        .score(&g)
        .unwrap()
        .0;
    let b = evaluator(json!({"batch": 8, "seed": 2}))
        .score(&g)
        .unwrap()
        .0;
    assert_eq!(a["params"], b["params"]);
    assert_ne!(a["naswot"], b["naswot"]);
    assert_ne!(a["synflow"], b["synflow"]);
}

// ---- ranking among observed trials, learned ranking --------------------------------------

fn finished(id: u64, state: TrialState, metrics: &[(&str, f64)], loss: Option<f64>) -> Observation {
    Observation {
        trial_id: id,
        values: vec![(id % 5) as f64],
        fidelity: None,
        state,
        losses: loss.into_iter().collect(),
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        proposer: "random".into(),
    }
}

#[test]
fn without_a_cascade_nothing_is_observed() {
    let mut e = evaluator(json!({"proxies": ["params"]}));
    assert!(!e.observe(&[]).unwrap());
    let mut e = evaluator(json!({"proxies": ["params"], "keep_top": 0.5, "rank_by": "params"}));
    assert!(e.observe(&[]).unwrap());
}

#[test]
fn the_cascade_ranks_among_finished_trials_it_is_shown() {
    let mut e = evaluator(json!({
        "proxies": ["params"], "keep_top": 0.5, "rank_by": "params", "warmup": 3
    }));
    // Three finished trials (any state) scored before: the warm-up is over.
    let shown = [
        finished(1001, TrialState::Complete, &[("params", 100.0)], Some(0.1)),
        finished(1002, TrialState::Pruned, &[("params", 200.0)], None),
        finished(1003, TrialState::Failed, &[("params", 300.0)], None),
        // Scored by nothing this evaluator knows: not a candidate.
        finished(
            1004,
            TrialState::Complete,
            &[("val_accuracy", 0.5)],
            Some(0.5),
        ),
    ];
    e.observe(&shown).unwrap();
    let r = e.evaluate(&request(linear_net(5))).unwrap(); // 33 params
    assert_eq!(r.status, EvalStatus::Pruned, "{}", r.details);
    assert_eq!(r.details["cascade"]["seen"], 4);
    // The candidate finishing later is not counted twice.
    let mut again = request(linear_net(100)); // 603 params
    let id = again.trial_id;
    e.evaluate(&again).unwrap();
    e.observe(&[finished(
        id,
        TrialState::Complete,
        &[("params", 603.0)],
        None,
    )])
    .unwrap();
    again.trial_id = id;
    let r = e.evaluate(&again).unwrap();
    assert_eq!(r.details["cascade"]["seen"], 5, "{}", r.details);
}

/// Metrics of a candidate whose fixed score (`zc_combined`) and learnable label disagree:
/// `zc_combined` grows with `x`, the label falls with it.
fn disagreeing(x: f64) -> Vec<(&'static str, f64)> {
    vec![
        ("naswot", x),
        ("synflow", 1.0),
        ("params", 10.0),
        ("zc_combined", x),
    ]
}

#[test]
fn the_learned_ranking_falls_back_to_zc_combined_then_follows_the_labels() {
    let config = parse_config(&json!({
        "proxies": ["naswot", "synflow", "params", "zc_combined"],
        "keep_top": 0.5, "rank_by": "learned", "warmup": 0, "min_labels": 6,
        "learn_choices": false
    }))
    .unwrap();
    let cascade = config.cascade.clone().unwrap();
    let mut ranking = Ranking::new(cascade, config.proxies.clone(), 7);
    let metrics = |x: f64| -> Metrics {
        disagreeing(x)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    // Five labelled trials: one short of min_labels. The first objective is a loss, so the
    // label is its negation: low x is good.
    let labelled: Vec<Observation> = (0..5)
        .map(|i| {
            let x = i as f64;
            finished(i + 1, TrialState::Complete, &disagreeing(x), Some(x))
        })
        .collect();
    ranking.observe(&labelled);
    let low = ranking.judge(100, &metrics(0.5), &[]).unwrap();
    assert_eq!(low.details["ranked_with"], "zc_combined");
    assert_eq!(low.details["labels"], 5);
    assert!(!low.keep, "zc_combined prefers high x: {}", low.details);
    // The sixth label (and a pruned trial, which labels nothing) switches to the model.
    ranking.observe(&[
        finished(6, TrialState::Complete, &disagreeing(5.0), Some(5.0)),
        finished(7, TrialState::Pruned, &disagreeing(9.0), None),
    ]);
    let low = ranking.judge(101, &metrics(0.5), &[]).unwrap();
    assert_eq!(low.details["ranked_with"], "model", "{}", low.details);
    assert_eq!(low.details["labels"], 6);
    assert!(
        low.keep,
        "the model learned that low x is good: {}",
        low.details
    );
    let high = ranking.judge(102, &metrics(8.0), &[]).unwrap();
    assert!(!high.keep, "{}", high.details);

    // A fresh ranking shown the same trials in other batches (a resumed study) judges alike.
    let mut resumed = Ranking::new(config.cascade.clone().unwrap(), config.proxies.clone(), 7);
    let mut all = labelled.clone();
    all.push(finished(7, TrialState::Pruned, &disagreeing(9.0), None));
    all.push(finished(
        6,
        TrialState::Complete,
        &disagreeing(5.0),
        Some(5.0),
    ));
    resumed.observe(&all[..3]);
    resumed.observe(&all[3..]);
    resumed.observe(&[finished(100, TrialState::Pruned, &disagreeing(0.5), None)]);
    resumed.observe(&[finished(101, TrialState::Complete, &disagreeing(0.5), None)]);
    let again = resumed.judge(102, &metrics(8.0), &[]).unwrap();
    assert_eq!(again.details, high.details);
}

#[test]
fn a_named_label_metric_is_learned_higher_is_better() {
    let config = parse_config(&json!({
        "proxies": ["naswot", "synflow", "params", "zc_combined"],
        "keep_top": 0.5, "rank_by": "learned", "warmup": 0, "min_labels": 4,
        "label": "score"
    }))
    .unwrap();
    let mut ranking = Ranking::new(config.cascade.clone().unwrap(), config.proxies.clone(), 1);
    let trials: Vec<Observation> = (0..8)
        .map(|i| {
            let x = i as f64;
            let mut m = disagreeing(x);
            m.push(("score", -x));
            // The objective's loss says the opposite: only `label` counts.
            finished(i + 1, TrialState::Complete, &m, Some(-x))
        })
        .collect();
    ranking.observe(&trials);
    let metrics: Metrics = disagreeing(0.2)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let j = ranking.judge(50, &metrics, &[0.0]).unwrap();
    assert!(
        j.keep && j.details["ranked_with"] == "model",
        "{}",
        j.details
    );
}

/// Sequence networks (from the `sequence` space): the proxies that apply score finitely, on
/// real digit rows or random inputs (random ids for token inputs); the image-only ones and
/// synflow on token ids are skipped with their reason.
#[test]
fn sequence_networks_score_or_skip_with_a_reason() {
    use nas_core::space::{SequenceSpace, SequenceSpaceConfig};
    let space = |input: Vec<usize>, vocab: Option<usize>| {
        SequenceSpace::new(&SequenceSpaceConfig {
            input: Some(input),
            classes: Some(10),
            vocab,
            ..SequenceSpaceConfig::default()
        })
        .unwrap()
    };
    let decode = |s: &SequenceSpace, arch: &str| s.decode(&s.parse_arch(arch).unwrap()).unwrap();
    let rows = decode(
        &space(vec![8, 8], None),
        "width=32 depth=2 blocks=conv_k3_d1,gru,identity residual=true norm=layer pooling=attention classifier=mlp",
    );
    let ids = decode(
        &space(vec![6], Some(20)),
        "width=32 depth=2 blocks=attention_h4,conv_k3_d2,identity residual=true norm=none pooling=mean classifier=linear",
    );
    let digit_rows = json!({"dataset": "digits", "as_sequence": true});
    let real = ZeroCostEvaluator::new(context(json!({"batch": 16}), digit_rows)).unwrap();
    let random = evaluator(json!({"batch": 8}));
    for (e, g, data) in [
        (&real, &rows, "real"),
        (&random, &rows, "random"),
        (&random, &ids, "random"),
    ] {
        let (m, details) = e.score(g).unwrap();
        assert_eq!(details["data"], data);
        for p in ["params", "flops", "naswot", "grad_norm", "snip"] {
            let v = m[p];
            assert!(
                v.is_finite() && v != DEGENERATE && v > 0.0,
                "{p} = {v} ({details})"
            );
        }
        for p in ["jacob_cov", "zen"] {
            assert!(details["skipped"][p].is_string(), "{p}: {details}");
        }
        if g.token_vocab().is_some() {
            let why = details["skipped"]["synflow"].as_str().unwrap();
            assert!(why.contains("token ids"), "{why}");
            assert!(details["skipped"]["zc_combined"].is_string());
        } else {
            assert!(m["synflow"].is_finite() && m["synflow"] > 0.0, "{m:?}");
            assert!(m["zc_combined"].is_finite());
        }
    }
    // A real batch of another shape is refused by name.
    let err = real.score(&ids).unwrap_err().to_string();
    assert!(err.contains("[6]") && err.contains("[8, 8]"), "{err}");
}

/// Table networks that embed category codes (the `mlp` space over `categorical_encoding =
/// "embed"` data) score on random inputs holding valid codes at the code features; synflow,
/// whose scaled input cannot stand for codes, is skipped with its reason.
#[test]
fn mlp_networks_with_embedded_codes_score_on_random_codes() {
    use nas_core::space::{MlpSpace, MlpSpaceConfig};
    use nas_data::CategoricalFeature;
    let space = MlpSpace::new(&MlpSpaceConfig {
        input: Some(vec![5, 1, 1]),
        classes: Some(3),
        categorical: Some(vec![
            CategoricalFeature {
                feature: 0,
                categories: 4,
            },
            CategoricalFeature {
                feature: 3,
                categories: 2,
            },
        ]),
        ..MlpSpaceConfig::default()
    })
    .unwrap();
    let g = space
        .decode(
            &space
                .parse_arch("depth=2 widths=64,64,64 activation=relu dropout=0 norm=batch skip=false embed=4")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(g.input_ids(), [(0..1, 4), (3..4, 2)]);
    let batch = Batch::random_for(&g, 64, 3, 5);
    for sample in batch.images.outer_iter() {
        let v: Vec<f32> = sample.iter().copied().collect();
        assert!(
            [0.0, 1.0, 2.0, 3.0].contains(&v[0]) && [0.0, 1.0].contains(&v[3]),
            "{v:?}"
        );
    }
    let (m, details) = evaluator(json!({"batch": 8})).score(&g).unwrap();
    for p in ["params", "flops", "naswot", "grad_norm", "snip"] {
        let v = m[p];
        assert!(
            v.is_finite() && v != DEGENERATE && v > 0.0,
            "{p} = {v} ({details})"
        );
    }
    let why = details["skipped"]["synflow"].as_str().unwrap();
    assert!(why.contains("category codes"), "{why}");
}
