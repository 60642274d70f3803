//! The ONNX export, run in a real ONNX Runtime, against the float64 reference forward pass.

use nas_graph::reference::forward;
use nas_graph::testing::random_graph;
use nas_graph::{ExportOptions, Graph, GraphBuilder, Op, Weights, export_inference};
use ndarray::{ArrayD, IxDyn};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorRef, ValueType};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

mod support;
use support::runtime::session_at;

const SEEDS: u64 = 60;

fn run(session: &mut Session, input_name: &str, x: &ArrayD<f32>) -> ort::Result<ArrayD<f32>> {
    let outputs = session.run(ort::inputs![input_name => TensorRef::from_array_view(x)?])?;
    Ok(outputs[0].try_extract_array::<f32>()?.to_owned())
}

/// A random `[n, ...shape]` input, rounded to f32 so both sides see the same numbers.
fn input(graph: &Graph, n: usize, seed: u64) -> (ArrayD<f32>, ArrayD<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dims = vec![n];
    dims.extend(&graph.input);
    let x32 = ArrayD::from_shape_simple_fn(IxDyn(&dims), || {
        let v: f64 = StandardNormal.sample(&mut rng);
        v as f32
    });
    let x64 = x32.mapv(f64::from);
    (x32, x64)
}

fn weights(graph: &Graph, seed: u64) -> Weights {
    let mut w = Weights::he_init(graph, seed).unwrap();
    w.randomize_batch_norm(graph, seed ^ 0x5eed).unwrap();
    w.randomize_biases(graph, seed ^ 0xb1a5).unwrap();
    w
}

/// `Err` with a description when `got` is not within `1e-4 * max(1, max|want|)` of `want`;
/// otherwise the error relative to that scale.
fn compare(got: &ArrayD<f32>, want: &ArrayD<f64>) -> Result<f64, String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} vs reference {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
    if err.is_nan() || err > 1e-4 * scale {
        return Err(format!("max |ort - ref| = {err:e} (scale {scale:e})"));
    }
    Ok(err / scale)
}

#[test]
fn random_graphs_match_the_reference() {
    let mut failures = vec![];
    let mut worst = 0.0f64;
    for seed in 0..SEEDS {
        let g = random_graph(seed);
        let w = weights(&g, seed);
        let model = export_inference(&g, &w, &ExportOptions::default()).unwrap();
        let mut s = session_at(&model, GraphOptimizationLevel::All);
        for n in [2, 3] {
            let (x32, x64) = input(&g, n, 1000 + seed);
            let want = forward(&g, &w, &x64).unwrap();
            let check = run(&mut s, "input", &x32)
                .map_err(|e| e.to_string())
                .and_then(|got| compare(&got, &want));
            match check {
                Ok(rel) => worst = worst.max(rel),
                Err(e) => failures.push(format!(
                    "seed {seed}, batch {n}: {e}\n{}",
                    serde_json::to_string(&g).unwrap()
                )),
            }
        }
    }
    eprintln!("worst error relative to max(1, max|ref|): {worst:e}");
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} graphs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fixed_batch_exports_match_and_reject_other_batches() {
    let options = ExportOptions {
        batch: Some(2),
        input_name: "images".into(),
        output_name: "scores".into(),
        ..Default::default()
    };
    for seed in 0..10 {
        let g = random_graph(seed);
        let w = weights(&g, seed);
        let model = export_inference(&g, &w, &options).unwrap();
        let mut s = session_at(&model, GraphOptimizationLevel::All);
        assert_eq!(s.inputs()[0].name(), "images");
        assert_eq!(s.outputs()[0].name(), "scores");
        let out_features = g.shapes().unwrap()[g.output][0] as i64;
        match s.outputs()[0].dtype() {
            ValueType::Tensor { shape, .. } => assert_eq!(&shape[..], &[2, out_features]),
            other => panic!("unexpected output type {other:?}"),
        }
        let (x32, x64) = input(&g, 2, seed);
        let got = run(&mut s, "images", &x32).unwrap();
        compare(&got, &forward(&g, &w, &x64).unwrap())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let (x3, _) = input(&g, 3, seed);
        assert!(
            run(&mut s, "images", &x3).is_err(),
            "seed {seed}: a batch-2 model accepted a batch of 3"
        );
    }
}

#[test]
fn dynamic_batch_is_symbolic_and_optimization_levels_agree() {
    for seed in 0..10 {
        let g = random_graph(seed);
        let w = weights(&g, seed);
        let model = export_inference(&g, &w, &ExportOptions::default()).unwrap();
        let mut all = session_at(&model, GraphOptimizationLevel::All);
        let mut none = session_at(&model, GraphOptimizationLevel::Disable);
        match all.inputs()[0].dtype() {
            ValueType::Tensor {
                shape,
                dimension_symbols,
                ..
            } => {
                assert_eq!(shape[0], -1);
                assert_eq!(dimension_symbols[0], "batch");
                let rest: Vec<i64> = g.input.iter().map(|&d| d as i64).collect();
                assert_eq!(&shape[1..], rest.as_slice());
            }
            other => panic!("unexpected input type {other:?}"),
        }
        let (x32, x64) = input(&g, 1, seed);
        let want = forward(&g, &w, &x64).unwrap();
        for s in [&mut all, &mut none] {
            let got = run(s, "input", &x32).unwrap();
            compare(&got, &want).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
}

/// `Zero` must give exact zeros even for inf/NaN inputs (x * 0 would give NaN).
#[test]
fn zero_ignores_non_finite_inputs() {
    let mut b = GraphBuilder::new(&[2, 3, 3]);
    let z = b.add(Op::Zero, &[0]);
    let gap = b.add(Op::GlobalAvgPool, &[z]);
    let l = b.add(
        Op::Linear {
            out_features: 2,
            bias: true,
        },
        &[gap],
    );
    let g = b.finish(l);
    let mut w = weights(&g, 3);
    w.insert("n3.bias", ndarray::arr1(&[1.5f32, -2.0]).into_dyn());
    let model = export_inference(&g, &w, &ExportOptions::default()).unwrap();
    let mut s = session_at(&model, GraphOptimizationLevel::All);
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 3, 3]));
    x[[0, 0, 0, 0]] = f32::INFINITY;
    x[[1, 1, 2, 2]] = f32::NAN;
    let got = run(&mut s, "input", &x).unwrap();
    assert_eq!(
        got,
        ndarray::arr2(&[[1.5f32, -2.0], [1.5, -2.0]]).into_dyn()
    );
    let want = forward(&g, &w, &x.mapv(f64::from)).unwrap();
    assert_eq!(want, ndarray::arr2(&[[1.5, -2.0], [1.5, -2.0]]).into_dyn());
}

/// Intermediate values exposed as extra outputs match the reference node by node.
#[test]
fn intermediate_outputs_match_the_reference() {
    use nas_graph::onnx::{add_outputs, inference_model};
    use nas_graph::reference::forward_all;
    use prost::Message;
    for seed in 0..10 {
        let g = random_graph(seed);
        let w = weights(&g, seed);
        let options = ExportOptions::default();
        let live: Vec<usize> = g.reachable().into_iter().filter(|&i| i != 0).collect();
        let mut model = inference_model(&g, &w, &options).unwrap();
        let names = add_outputs(&mut model, &g, &live, &options).unwrap();
        let mut s = session_at(&model.encode_to_vec(), GraphOptimizationLevel::All);
        let (x32, x64) = input(&g, 2, seed);
        let params = |name: &str| w.get(name).map(|t| t.mapv(f64::from));
        let want = forward_all(&g, &params, &x64).unwrap();
        let outputs = s
            .run(ort::inputs!["input" => TensorRef::from_array_view(&x32).unwrap()])
            .unwrap();
        for (&id, name) in live.iter().zip(&names) {
            let got = outputs[name.as_str()]
                .try_extract_array::<f32>()
                .unwrap()
                .to_owned();
            compare(&got, want[id].as_ref().unwrap())
                .unwrap_or_else(|e| panic!("seed {seed}, node {id} ({name}): {e}"));
        }
    }
}

/// A graph whose output is its input still exports (as an Identity node).
#[test]
fn output_may_be_the_input() {
    let g = GraphBuilder::new(&[4]).finish(0);
    let model = export_inference(&g, &Weights::new(), &ExportOptions::default()).unwrap();
    let mut s = session_at(&model, GraphOptimizationLevel::All);
    let x = ndarray::arr2(&[[1.0f32, 2.0, 3.0, 4.0]]).into_dyn();
    assert_eq!(run(&mut s, "input", &x).unwrap(), x);
}

#[test]
fn ensemble_averages_member_softmax() {
    use nas_graph::onnx::ensemble::{ENSEMBLE_OUTPUT, average_softmax};
    // Members must share the input shape: the same random architecture, different weights.
    let graph = random_graph(3);
    let options = ExportOptions::default();
    let members: Vec<Vec<u8>> = (0..3)
        .map(|seed| export_inference(&graph, &weights(&graph, 100 + seed), &options).unwrap())
        .collect();
    let (x32, _) = input(&graph, 4, 9);
    let softmax = |logits: &ArrayD<f32>| -> Vec<Vec<f64>> {
        logits
            .outer_iter()
            .map(|row| {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
                let e: Vec<f64> = row.iter().map(|v| (*v as f64 - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.into_iter().map(|v| v / sum).collect()
            })
            .collect()
    };
    let mut want = vec![];
    for m in &members {
        let mut s = session_at(m, GraphOptimizationLevel::All);
        let p = softmax(&run(&mut s, "input", &x32).unwrap());
        if want.is_empty() {
            want = vec![vec![0.0; p[0].len()]; p.len()];
        }
        for (w, row) in want.iter_mut().zip(&p) {
            for (a, b) in w.iter_mut().zip(row) {
                *a += b / members.len() as f64;
            }
        }
    }
    let ensemble = average_softmax(&members).unwrap();
    let mut s = session_at(&ensemble, GraphOptimizationLevel::All);
    assert_eq!(s.outputs()[0].name(), ENSEMBLE_OUTPUT);
    let got = run(&mut s, "input", &x32).unwrap();
    for (g, w) in got.outer_iter().zip(&want) {
        let total: f32 = g.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
        for (a, b) in g.iter().zip(w) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
    assert!(average_softmax(&[]).is_err());
}
