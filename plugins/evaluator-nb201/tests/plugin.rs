//! Loads the built `libevaluator_nb201.so` through the host loader, as `nas` does, and
//! evaluates a candidate of the real `cell` space.

use std::path::PathBuf;

use nas_core::space::{CellSpaceConfig, SpaceConfig, build_space};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvaluatorContext, Metrics, RuntimeSettings};

const BEST_C10: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|";

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-nb201")
}

fn context(config: serde_json::Value) -> EvaluatorContext {
    EvaluatorContext {
        config,
        runtime: RuntimeSettings::default(),
        seed: 1,
        study_dir: std::env::temp_dir().display().to_string(),
        data: serde_json::Value::Null,
        supernet: None,
    }
}

#[test]
fn the_plugin_loads_and_looks_up_a_cell_of_the_real_space() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "nb201");
    assert_eq!(lib.kind, PluginKind::Evaluator);
    let mut evaluator = lib
        .create_evaluator(&context(serde_json::Value::Null))
        .unwrap();

    let space = build_space(&SpaceConfig::Cell(CellSpaceConfig::default())).unwrap();
    let values = space.parse_arch(BEST_C10).unwrap();
    let graph = space.decode(&values).unwrap();
    let request = EvalRequest {
        trial_id: 3,
        arch: space.arch_string(&values),
        values,
        metrics: Metrics::from([("flops".to_string(), graph.flops().unwrap() as f64)]),
        graph,
        fidelity: None,
        parent: None,
    };
    let result = evaluator.evaluate(&request).unwrap();
    let m = &result.metrics;
    assert!((m["test_accuracy"] - 0.94373).abs() < 5e-6, "{m:?}");
    assert_eq!(m["val_accuracy"], m["test_accuracy"]);
    assert!((m["val_accuracy_12"] - 0.84384).abs() < 5e-6, "{m:?}");
    assert_eq!(m["epochs"], 200.0);
    assert!(m["simulated_seconds"] > 0.0);
    assert_eq!(result.details["benchmark"], "NAS-Bench-201");

    // Errors cross the ABI with their message.
    let mut unknown = request.clone();
    unknown.arch = "|x~0|".into();
    let err = evaluator.evaluate(&unknown).unwrap_err().to_string();
    assert!(err.contains("`|x~0|`"), "{err}");
}

#[test]
fn the_plugin_reports_bad_options_through_the_host() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let err = lib
        .create_evaluator(&context(serde_json::json!({"dataset": "svhn"})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"svhn\"") && err.contains("\"cifar10\", \"cifar100\", \"ImageNet16-120\""),
        "{err}"
    );
    let err = lib
        .create_evaluator(&context(serde_json::json!({"epochs": 12})))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown option `epochs`"), "{err}");
}
