//! Loads the built `libevaluator_cost.so` through the host loader, as `nas` does.

use std::path::PathBuf;

use nas_graph::{GraphBuilder, Op};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvaluatorContext, Metrics, RuntimeSettings};

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-cost")
}

#[test]
fn the_plugin_loads_and_evaluates_a_graph() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "cost");
    assert_eq!(lib.kind, PluginKind::Evaluator);

    let ort =
        nas_runtime::locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)");
    let ctx = EvaluatorContext {
        config: serde_json::json!({"latency": {"runs": 3, "warmup": 1}}),
        runtime: RuntimeSettings {
            ort_library: Some(ort.display().to_string()),
            ..RuntimeSettings::default()
        },
        seed: 3,
        study_dir: std::env::temp_dir().display().to_string(),
        data: serde_json::Value::Null,
        supernet: None,
    };
    let mut evaluator = lib.create_evaluator(&ctx).unwrap();

    let mut b = GraphBuilder::new(&[1, 6, 6]);
    let x = b.input();
    let c = b.conv(x, 2, 3, 1, 1);
    let p = b.add(Op::GlobalAvgPool, &[c]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[p],
    );
    let graph = b.finish(l);
    let request = EvalRequest {
        trial_id: 9,
        values: vec![],
        arch: "tiny".into(),
        graph: graph.clone(),
        fidelity: None,
        metrics: Metrics::new(),
        parent: None,
    };
    let result = evaluator.evaluate(&request).unwrap();
    assert_eq!(result.metrics["params"], (2 * 9 + 2 * 3 + 3) as f64);
    assert_eq!(result.metrics["flops"], graph.flops().unwrap() as f64);
    assert!(result.metrics["latency_ms"] > 0.0);
    assert!(result.metrics["latency_p90_ms"] >= result.metrics["latency_ms"]);
}

#[test]
fn the_plugin_reports_bad_options_through_the_host() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let ctx = EvaluatorContext {
        config: serde_json::json!({"latency": {"iterations": 3}}),
        runtime: RuntimeSettings::default(),
        seed: 0,
        study_dir: String::new(),
        data: serde_json::Value::Null,
        supernet: None,
    };
    let err = lib.create_evaluator(&ctx).err().unwrap().to_string();
    assert!(
        err.contains("`iterations`") && err.contains("batch, runs, warmup"),
        "{err}"
    );
}
