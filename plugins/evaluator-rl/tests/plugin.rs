//! Loads the built `libevaluator_rl.so` through the host loader, as `nas` does, and trains
//! small policy networks on CartPole-v1.

use std::path::PathBuf;

use nas_graph::{Graph, GraphBuilder, Op};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvaluatorContext, Metrics, RuntimeSettings};
use serde_json::{Value, json};

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-rl")
}

fn context(config: Value) -> EvaluatorContext {
    let ort =
        nas_runtime::locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)");
    EvaluatorContext {
        config,
        runtime: RuntimeSettings {
            threads: 1,
            ort_library: Some(ort.display().to_string()),
            ..RuntimeSettings::default()
        },
        seed: 3,
        study_dir: std::env::temp_dir().display().to_string(),
        data: Value::Null,
        supernet: None,
    }
}

/// `input (-> Flatten) -> Linear(hidden) -> ReLU -> Linear(actions)`, as the `mlp` space
/// builds it.
fn mlp(input: &[usize], hidden: usize, actions: usize) -> Graph {
    let mut b = GraphBuilder::new(input);
    let mut x = b.input();
    if input.len() > 1 {
        x = b.add(Op::Flatten, &[x]);
    }
    let h = b.add(
        Op::Linear {
            out_features: hidden,
            bias: true,
        },
        &[x],
    );
    let r = b.add(Op::Relu, &[h]);
    let l = b.add(
        Op::Linear {
            out_features: actions,
            bias: true,
        },
        &[r],
    );
    b.finish(l)
}

fn request(graph: Graph, fidelity: Option<f64>) -> EvalRequest {
    EvalRequest {
        trial_id: 1,
        values: vec![],
        arch: "mlp".into(),
        graph,
        fidelity,
        metrics: Metrics::new(),
        parent: None,
    }
}

/// Everything but the wall time.
fn without_time(m: &Metrics) -> Metrics {
    let mut m = m.clone();
    m.remove("rl_seconds");
    m
}

#[test]
fn reinforce_trains_a_small_mlp_well_past_a_random_policy_and_repeats_exactly() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "rl");
    assert_eq!(lib.kind, PluginKind::Evaluator);
    let config = json!({"env": "cartpole", "iterations": 40, "eval_episodes": 100});
    let mut evaluator = lib.create_evaluator(&context(config.clone())).unwrap();
    let result = evaluator
        .evaluate(&request(mlp(&[4], 32, 2), None))
        .unwrap();
    let m = &result.metrics;
    println!("{m:?}");
    // A uniformly random policy balances the pole for about 22 steps.
    assert!(m["mean_return"] > 150.0, "{m:?}");
    assert_eq!(m["train_episodes"], 40.0 * 8.0);
    assert_eq!(m["iterations"], 40.0);
    assert_eq!(m["solved"], f64::from(u8::from(m["mean_return"] >= 475.0)));
    assert!(m["rl_seconds"] > 0.0);
    let d = &result.details;
    assert_eq!(d["eval_policy"], "greedy");
    assert_eq!(d["threshold"], 475.0);
    assert_eq!(d["seed"], 3);
    let curve = d["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 40);
    let first = curve[0]["mean_return"].as_f64().unwrap();
    let last = curve[39]["mean_return"].as_f64().unwrap();
    assert!(first < 50.0 && last > 2.0 * first, "{first} -> {last}");
    let returns = d["eval_returns"].as_array().unwrap();
    assert_eq!(returns.len(), 100);

    // A fresh instance with the same seed gives the same numbers; another seed does not.
    let mut again = lib.create_evaluator(&context(config)).unwrap();
    let repeat = again.evaluate(&request(mlp(&[4], 32, 2), None)).unwrap();
    assert_eq!(without_time(&repeat.metrics), without_time(m));
    assert_eq!(repeat.details["curve"], result.details["curve"]);
    let mut other = lib
        .create_evaluator(&context(
            json!({"iterations": 40, "eval_episodes": 100, "seed": 4}),
        ))
        .unwrap();
    let different = other.evaluate(&request(mlp(&[4], 32, 2), None)).unwrap();
    assert_ne!(different.details["curve"], result.details["curve"]);

    // A request's fidelity is the number of iterations.
    let short = evaluator
        .evaluate(&request(mlp(&[4], 32, 2), Some(2.0)))
        .unwrap();
    assert_eq!(short.metrics["iterations"], 2.0);
    assert_eq!(short.metrics["train_episodes"], 16.0);
}

#[test]
fn the_plugin_explains_misfit_networks_and_bad_options() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let err = lib
        .create_evaluator(&context(json!({"episodes": 3})))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("rl evaluator has no option `episodes`")
            && err.contains("`episodes_per_iteration`"),
        "{err}"
    );
    let mut evaluator = lib
        .create_evaluator(&context(json!({"env": "acrobot", "iterations": 1})))
        .unwrap();
    let err = evaluator
        .evaluate(&request(mlp(&[4], 8, 2), None))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`acrobot` observations have 6 values")
            && err.contains("`[space] input = [6]`"),
        "{err}"
    );
    let err = evaluator
        .evaluate(&request(mlp(&[6], 8, 2), None))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`acrobot` has 3 actions") && err.contains("`[space] classes = 3`"),
        "{err}"
    );
    // The instance stays usable, and no data is needed: a network that fits trains.
    let ok = evaluator.evaluate(&request(mlp(&[6, 1, 1], 8, 3), None));
    let ok = ok.unwrap();
    assert!(ok.metrics["mean_return"] >= -500.0 && ok.metrics["mean_return"] <= 0.0);
}
