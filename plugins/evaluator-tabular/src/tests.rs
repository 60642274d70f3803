//! Lookups in a small hand-made table whose rows are networks of the real `cell` space.

use nas_core::space::{CellSpaceConfig, SpaceConfig, build_space};
use nas_graph::Graph;
use nas_plugin::RuntimeSettings;
use nas_table::Row;

use super::*;

const CONV: &str = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|";
/// Computes the same network as [`CONV`] (a 3x3 conv of the cell input).
const CONV_ISOMORPH: &str = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|";
const POOL: &str = "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|";
const FAILED: &str = "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|";
const ABSENT: &str = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|";

fn space(channels: usize) -> CellSpaceConfig {
    CellSpaceConfig {
        input: Some(vec![1, 8, 8]),
        classes: Some(10),
        channels,
        cells_per_stage: 1,
        ..CellSpaceConfig::default()
    }
}

fn graph(channels: usize, arch: &str) -> Graph {
    let space = build_space(&SpaceConfig::Cell(space(channels))).unwrap();
    space.decode(&space.parse_arch(arch).unwrap()).unwrap()
}

fn row(arch: &str, curve: &[f64], test: f64) -> Row {
    Row {
        hash: graph(4, arch).canonical_hash(),
        archs: vec![arch.to_string()],
        trial: 7,
        params: 1.0,
        flops: 2.0,
        val_accuracy: curve.to_vec(),
        train_seconds: vec![0.5, 1.0, 1.5],
        val_loss: None,
        train_loss: None,
        train_accuracy: None,
        test_accuracy: Some(test),
        test_loss: None,
        error: None,
    }
}

fn table() -> Table {
    let mut conv = row(CONV, &[0.5, 0.75, 0.875], 0.8125);
    conv.archs.push(CONV_ISOMORPH.into());
    let mut failed = row(FAILED, &[], 0.0);
    failed.train_seconds.clear();
    failed.test_accuracy = None;
    failed.error = Some("training diverged at epoch 1".into());
    Table {
        format: nas_table::FORMAT.into(),
        version: nas_table::VERSION,
        name: "tiny".into(),
        space: serde_json::to_value(space(4)).unwrap(),
        data: json!({"dataset": "digits"}),
        evaluator: json!({"epochs": 3}),
        seed: 0,
        epochs: 3,
        archs_in_space: 15625,
        networks_in_space: 5155,
        config: String::new(),
        sample: None,
        rows: vec![conv, row(POOL, &[0.25, 0.5, 0.625], 0.5), failed],
    }
}

fn request(channels: usize, arch: &str, fidelity: Option<f64>) -> EvalRequest {
    EvalRequest {
        trial_id: 1,
        values: vec![],
        arch: arch.into(),
        graph: graph(channels, arch),
        fidelity,
        metrics: Metrics::new(),
        parent: None,
    }
}

fn evaluator() -> TabularEvaluator {
    TabularEvaluator::from_table(table(), "tiny.json".into())
}

#[test]
fn reports_the_full_budget_without_a_fidelity() {
    let m = evaluator()
        .evaluate(&request(4, CONV, None))
        .unwrap()
        .metrics;
    assert_eq!(m["val_accuracy"], 0.875);
    assert_eq!(m["val_accuracy_final"], 0.875);
    assert_eq!(m["test_accuracy"], 0.8125);
    assert_eq!(m["epochs"], 3.0);
    assert_eq!(m["simulated_seconds"], 1.5);
}

#[test]
fn a_fidelity_reads_the_curve_at_that_epoch() {
    let mut e = evaluator();
    let m = e.evaluate(&request(4, POOL, Some(1.2))).unwrap().metrics;
    assert_eq!(
        (m["val_accuracy"], m["epochs"], m["simulated_seconds"]),
        (0.5, 2.0, 1.0)
    );
    assert_eq!(m["test_accuracy"], 0.5);
    assert!(!m.contains_key("val_accuracy_final"), "not paid for: {m:?}");
    for bad in [0.0, 3.5, f64::NAN] {
        let err = e
            .evaluate(&request(4, POOL, Some(bad)))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a number of epochs in 1..=3"), "{err}");
    }
}

#[test]
fn isomorphic_architectures_share_the_row() {
    let mut e = evaluator();
    let a = e.evaluate(&request(4, CONV, None)).unwrap();
    let b = e.evaluate(&request(4, CONV_ISOMORPH, None)).unwrap();
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(b.details["isomorphs"], 2);
}

/// The message of an evaluation that must fail.
fn failure(e: &mut TabularEvaluator, req: &EvalRequest) -> String {
    match e.evaluate(req) {
        Ok(_) => panic!("`{}` was answered", req.arch),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_sampled_table_says_it_holds_a_sample() {
    let mut t = table();
    t.sample = Some(nas_table::Sample { draws: 3 });
    let mut e = TabularEvaluator::from_table(t, "tiny.json".into());
    assert!(e.evaluate(&request(4, CONV, None)).is_ok());
    let err = failure(&mut e, &request(4, ABSENT, None));
    assert!(
        err.contains("random sample of 3 of the space's 5155 networks"),
        "{err}"
    );
}

#[test]
fn missing_networks_and_failed_rows_are_explained() {
    let mut e = evaluator();
    let err = failure(&mut e, &request(4, ABSENT, None));
    assert!(
        err.contains("tiny.json")
            && err.contains("is not in the table")
            && err.contains("\"channels\":4"),
        "{err}"
    );
    // The table lists CONV, but at width 4: a width-8 network is another network.
    let err = failure(&mut e, &request(8, CONV, None));
    assert!(err.contains("builds a different network here"), "{err}");
    let err = failure(&mut e, &request(4, FAILED, None));
    assert!(
        err.contains("failed when the table was built: training diverged"),
        "{err}"
    );
}

#[test]
fn options_are_checked() {
    assert_eq!(
        parse_config(&json!({"table": "t.json"})).unwrap().table,
        "t.json"
    );
    let e = parse_config(&Value::Null).unwrap_err();
    assert!(e.contains("nas tabulate"), "{e}");
    let e = parse_config(&json!({})).unwrap_err();
    assert!(e.contains("`table` is missing"), "{e}");
    let e = parse_config(&json!({"table": 3})).unwrap_err();
    assert!(e.contains("must be a file path"), "{e}");
    let e = parse_config(&json!({"table": "t", "dataset": "x"})).unwrap_err();
    assert!(e.contains("unknown option `dataset`"), "{e}");
}

#[test]
fn delay_ms_is_checked_and_slows_every_evaluation() {
    use std::time::{Duration, Instant};
    assert_eq!(
        parse_config(&json!({"table": "t"})).unwrap().delay,
        Duration::ZERO
    );
    assert_eq!(
        parse_config(&json!({"table": "t", "delay_ms": 50}))
            .unwrap()
            .delay,
        Duration::from_millis(50)
    );
    for bad in [json!(-1), json!(2.5), json!("50"), json!(MAX_DELAY_MS + 1)] {
        let e = parse_config(&json!({"table": "t", "delay_ms": bad})).unwrap_err();
        assert!(e.contains("`delay_ms` must be a whole number"), "{e}");
    }
    let mut e = evaluator().with_delay(Duration::from_millis(30));
    let start = Instant::now();
    let slow = e.evaluate(&request(4, CONV, None)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    // The answer is the same as without the delay.
    assert_eq!(
        slow.metrics,
        evaluator()
            .evaluate(&request(4, CONV, None))
            .unwrap()
            .metrics
    );
}

#[test]
fn creation_reads_the_file_and_names_it_when_it_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.json.gz");
    table().write(&path).unwrap();
    let ctx = |table: &str| EvaluatorContext {
        config: json!({ "table": table }),
        runtime: RuntimeSettings::default(),
        seed: 0,
        study_dir: dir.path().display().to_string(),
        data: Value::Null,
        supernet: None,
    };
    let mut e = TabularEvaluator::new(ctx(path.to_str().unwrap())).unwrap();
    assert_eq!(e.table().rows.len(), 3);
    assert!(e.evaluate(&request(4, POOL, None)).is_ok());
    let missing = dir.path().join("nope.json");
    let err = TabularEvaluator::new(ctx(missing.to_str().unwrap()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cannot open table") && err.contains("nope.json"),
        "{err}"
    );
}
