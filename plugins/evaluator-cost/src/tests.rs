//! Unit tests; latency ones load the real ONNX Runtime (`cargo xtask ort`).

use super::*;
use nas_graph::{GraphBuilder, Op};
use nas_plugin::RuntimeSettings;

/// conv 3->4 (3x3, no bias: 108 params) -> ReLU -> global pool -> linear 4->10 (+bias: 50).
pub(crate) fn small_graph() -> Graph {
    let mut b = GraphBuilder::new(&[3, 8, 8]);
    let x = b.input();
    let c = b.conv(x, 4, 3, 1, 1);
    let r = b.add(Op::Relu, &[c]);
    let p = b.add(Op::GlobalAvgPool, &[r]);
    let l = b.add(
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[p],
    );
    b.finish(l)
}

fn request(graph: Graph) -> EvalRequest {
    EvalRequest {
        trial_id: 1,
        values: vec![],
        arch: "test".into(),
        graph,
        fidelity: None,
        metrics: Metrics::new(),
        parent: None,
    }
}

fn runtime(provider: &str, fallback: Option<&str>) -> RuntimeSettings {
    RuntimeSettings {
        execution_provider: provider.into(),
        fallback: fallback.map(str::to_string),
        threads: 1,
        ort_library: Some(
            nas_runtime::locate_library(None)
                .expect("ONNX Runtime is provisioned (`cargo xtask ort`)")
                .display()
                .to_string(),
        ),
    }
}

fn evaluator(config: Value, runtime: RuntimeSettings) -> Result<CostEvaluator, PluginError> {
    CostEvaluator::new(EvaluatorContext {
        config,
        runtime,
        seed: 7,
        study_dir: std::env::temp_dir().display().to_string(),
        data: serde_json::Value::Null,
        supernet: None,
    })
}

#[test]
fn config_defaults_and_forms() {
    assert_eq!(parse_config(&Value::Null).unwrap().latency, None);
    assert_eq!(parse_config(&json!({})).unwrap().latency, None);
    assert_eq!(
        parse_config(&json!({"latency": false})).unwrap().latency,
        None
    );
    assert_eq!(
        parse_config(&json!({"latency": true})).unwrap().latency,
        Some(LatencyConfig::default())
    );
    assert_eq!(
        parse_config(&json!({"latency": {"batch": 4}}))
            .unwrap()
            .latency,
        Some(LatencyConfig {
            batch: 4,
            runs: 20,
            warmup: 5
        })
    );
    assert_eq!(
        parse_config(&json!({"latency": {"runs": 3, "warmup": 0}}))
            .unwrap()
            .latency,
        Some(LatencyConfig {
            batch: 1,
            runs: 3,
            warmup: 0
        })
    );
}

#[test]
fn unknown_keys_are_named_with_the_accepted_ones() {
    let e = parse_config(&json!({"latncy": true})).unwrap_err();
    assert!(
        e.contains("`latncy`") && e.contains("accepted: latency"),
        "{e}"
    );
    let e = parse_config(&json!({"latency": {"batch": 1, "repeat": 3}})).unwrap_err();
    assert!(
        e.contains("`repeat`") && e.contains("batch, runs, warmup"),
        "{e}"
    );
}

#[test]
fn bad_values_are_errors() {
    for bad in [
        json!({"latency": {"runs": 0}}),
        json!({"latency": {"batch": 0}}),
        json!({"latency": {"warmup": -1}}),
        json!({"latency": {"runs": 2.5}}),
        json!({"latency": "fast"}),
        json!(3),
    ] {
        assert!(parse_config(&bad).is_err(), "{bad}");
    }
    let e = parse_config(&json!({"latency": {"runs": 0}})).unwrap_err();
    assert!(e.contains("`latency.runs` must be an integer >= 1"), "{e}");
}

#[test]
fn median_and_p90() {
    let odd = [1.0, 2.0, 3.0];
    assert_eq!(median(&odd), 2.0);
    let even = [1.0, 2.0, 3.0, 10.0];
    assert_eq!(median(&even), 2.5);
    let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(percentile(&twenty, 0.9), 18.0);
    assert_eq!(percentile(&[5.0], 0.9), 5.0);
    assert_eq!(percentile(&twenty, 1.0), 20.0);
}

#[test]
fn counts_params_and_flops_without_latency() {
    let graph = small_graph();
    let mut e = evaluator(Value::Null, RuntimeSettings::default()).unwrap();
    let r = e.evaluate(&request(graph.clone())).unwrap();
    assert_eq!(r.metrics["params"], 158.0);
    assert_eq!(r.metrics["params"], graph.param_count().unwrap() as f64);
    assert_eq!(r.metrics["flops"], graph.flops().unwrap() as f64);
    assert!(r.metrics["flops"] > 0.0);
    assert!(!r.metrics.contains_key("latency_ms"));
    assert_eq!(r.status, EvalStatus::Ok);
}

#[test]
fn measures_latency_on_cpu() {
    let cfg = json!({"latency": {"batch": 2, "runs": 7, "warmup": 2}});
    let mut e = evaluator(cfg, runtime("cpu", None)).unwrap();
    let r = e.evaluate(&request(small_graph())).unwrap();
    let (median, p90) = (r.metrics["latency_ms"], r.metrics["latency_p90_ms"]);
    assert!(median > 0.0 && median < 1000.0, "{median}");
    assert!(p90 >= median, "{p90} < {median}");
    assert_eq!(r.details["latency"]["provider"], "cpu");
    assert_eq!(r.details["latency"]["batch"], 2);
    assert_eq!(r.metrics["params"], 158.0);
}

#[test]
fn latency_true_uses_the_defaults() {
    let mut e = evaluator(json!({"latency": true}), runtime("cpu", None)).unwrap();
    let r = e.evaluate(&request(small_graph())).unwrap();
    assert_eq!(r.details["latency"]["runs"], 20);
    assert_eq!(r.details["latency"]["warmup"], 5);
    assert!(r.metrics["latency_ms"] > 0.0);
}

#[test]
fn an_unavailable_provider_falls_back_to_cpu_when_configured() {
    let lib = nas_runtime::locate_library(None).unwrap();
    if nas_runtime::available_providers(&lib)
        .unwrap()
        .contains(&nas_runtime::ExecutionProvider::Cuda)
    {
        return; // a GPU build: CUDA may well work here
    }
    let cfg = json!({"latency": {"runs": 2, "warmup": 0}});
    let mut e = evaluator(cfg.clone(), runtime("cuda", Some("cpu"))).unwrap();
    let r = e.evaluate(&request(small_graph())).unwrap();
    assert_eq!(r.details["latency"]["provider"], "cpu");

    let mut e = evaluator(cfg, runtime("cuda", None)).unwrap();
    let err = e.evaluate(&request(small_graph())).unwrap_err().to_string();
    assert!(err.contains("cargo xtask ort --gpu"), "{err}");
}

#[test]
fn latency_without_a_library_from_the_host_fails_at_creation() {
    // The evaluator takes the library the host resolved; it does not look for one itself.
    let err = evaluator(json!({"latency": true}), RuntimeSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ONNX Runtime library not found"), "{err}");
    assert!(err.contains("cargo xtask ort"), "{err}");
}

#[test]
fn unknown_options_fail_at_creation() {
    let err = evaluator(json!({"runs": 3}), RuntimeSettings::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`runs`") && err.contains("accepted: latency"),
        "{err}"
    );
}
