//! Loads the built `libevaluator_zero_cost.so` through the host loader, as `nas` does.

mod common;

use std::path::PathBuf;

use common::*;
use nas_core::space::{CellSpace, CellSpaceConfig, SearchSpace};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvalStatus, EvaluatorContext, Metrics};
use serde_json::{Value, json};

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-zero-cost")
}

fn context(config: Value) -> EvaluatorContext {
    EvaluatorContext {
        config,
        runtime: runtime(),
        seed: 3,
        study_dir: std::env::temp_dir().display().to_string(),
        data: Value::Null,
        supernet: None,
    }
}

fn request(trial_id: u64, space: &CellSpace, arch: &str) -> EvalRequest {
    let values = space.parse_arch(arch).unwrap();
    EvalRequest {
        trial_id,
        graph: space.decode(&values).unwrap(),
        arch: arch.into(),
        values,
        fidelity: None,
        metrics: Metrics::new(),
        parent: None,
    }
}

#[test]
fn the_plugin_loads_and_scores_an_nb201_network() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "zero-cost");
    assert_eq!(lib.kind, PluginKind::Evaluator);
    let mut evaluator = lib.create_evaluator(&context(json!({"batch": 8}))).unwrap();

    // NASLib key (0, 2, 3, 2, 3, 1): two 3x3 and two 1x1 convs, 615,386 parameters.
    let space = nb201();
    let arch =
        "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|";
    let result = evaluator.evaluate(&request(1, &space, arch)).unwrap();
    assert_eq!(result.status, EvalStatus::Ok);
    let m = &result.metrics;
    assert_eq!(m["params"], 615_386.0);
    for name in [
        "flops",
        "naswot",
        "synflow",
        "grad_norm",
        "snip",
        "jacob_cov",
        "zen",
        "zc_combined",
    ] {
        assert!(m[name].is_finite(), "{name} = {}", m[name]);
    }
    // NASLib's ln(synflow) for this network is 41.949 (at other random weights).
    assert!((m["synflow"].ln() - 41.95).abs() < 1.0, "{}", m["synflow"]);
    assert_eq!(result.details["data"], "random");
}

#[test]
fn the_cascade_prunes_through_the_host_after_warmup() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let config = json!({
        "proxies": ["params", "synflow"],
        "rank_by": "synflow",
        "keep_top": 0.5,
        "warmup": 2,
    });
    let mut evaluator = lib.create_evaluator(&context(config)).unwrap();
    let space = CellSpace::new(&CellSpaceConfig {
        input: Some(vec![3, 16, 16]),
        classes: Some(10),
        channels: 8,
        cells_per_stage: 1,
        ..CellSpaceConfig::default()
    })
    .unwrap();
    let deep = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    let mid = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";
    let shallow =
        "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|";
    let mut statuses = Vec::new();
    for (i, arch) in [mid, deep, shallow, deep].iter().enumerate() {
        let r = evaluator
            .evaluate(&request(i as u64, &space, arch))
            .unwrap();
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [
            EvalStatus::Ok,     // warm-up
            EvalStatus::Ok,     // warm-up
            EvalStatus::Pruned, // last of three
            EvalStatus::Ok,     // tied best
        ]
    );
}

#[test]
fn the_plugin_reports_unknown_options_through_the_host() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let err = lib
        .create_evaluator(&context(json!({"keep_best": 0.5})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`keep_best`") && err.contains("keep_top, threshold, rank_by, warmup"),
        "{err}"
    );
}
