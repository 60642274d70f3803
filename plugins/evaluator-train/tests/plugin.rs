//! Loads the built `libevaluator_train.so` through the host loader, as `nas` does, and trains
//! candidates on the bundled digits set.

use std::path::PathBuf;

use nas_graph::{Graph, GraphBuilder, Op};
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvaluatorContext, Metrics, RuntimeSettings};
use serde_json::{Value, json};

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-train")
}

fn context(config: Value, data: Value, study_dir: &std::path::Path) -> EvaluatorContext {
    let ort =
        nas_runtime::locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)");
    EvaluatorContext {
        config,
        runtime: RuntimeSettings {
            threads: 2,
            ort_library: Some(ort.display().to_string()),
            ..RuntimeSettings::default()
        },
        seed: 5,
        study_dir: study_dir.display().to_string(),
        data,
        supernet: None,
    }
}

fn net() -> Graph {
    let mut b = GraphBuilder::new(&[1, 8, 8]);
    let x = b.input();
    let c = b.conv(x, 16, 3, 1, 1);
    let n = b.batch_norm(c);
    let r = b.add(Op::Relu, &[n]);
    let c = b.conv(r, 32, 3, 2, 1);
    let n = b.batch_norm(c);
    let r = b.add(Op::Relu, &[n]);
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

fn request(trial_id: u64, fidelity: Option<f64>) -> EvalRequest {
    EvalRequest {
        trial_id,
        values: vec![],
        arch: "conv-bn-relu".into(),
        graph: net(),
        fidelity,
        metrics: Metrics::new(),
        parent: None,
    }
}

#[test]
fn the_plugin_trains_on_digits_and_continues_at_a_higher_fidelity() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "train");
    assert_eq!(lib.kind, PluginKind::Evaluator);
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        json!({"epochs": 6, "lr": 0.2, "keep_checkpoints": true}),
        json!({"dataset": "digits"}),
        dir.path(),
    );
    let mut evaluator = lib.create_evaluator(&ctx).unwrap();

    let first = evaluator.evaluate(&request(1, Some(2.0))).unwrap();
    let m = &first.metrics;
    println!("fidelity 2: {m:?}");
    assert_eq!(m["epochs"], 2.0);
    assert!(m["val_accuracy"] > 0.1 && m["val_accuracy"] <= 1.0);
    assert!(m["val_loss"].is_finite() && m["train_seconds"] > 0.0);
    assert_eq!(first.details["curve"].as_array().unwrap().len(), 2);
    assert_eq!(first.details["resumed_from_epoch"], 0);
    assert_eq!(first.details["schedule_epochs"], 6);
    let ckpt = dir
        .path()
        .join("checkpoints")
        .join(format!("{}.ckpt", net().canonical_hash()));
    assert!(ckpt.is_file());

    // Same network, no fidelity: the configured 6 epochs, continuing from epoch 2.
    let second = evaluator.evaluate(&request(2, None)).unwrap();
    println!("continued to 6: {:?}", second.metrics);
    assert_eq!(second.metrics["epochs"], 6.0);
    assert_eq!(second.details["resumed_from_epoch"], 2);
    let curve = second.details["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 6);
    assert_eq!(curve[0], first.details["curve"][0]);
    assert!(
        second.metrics["val_accuracy"] >= 0.9,
        "{:?}",
        second.metrics
    );

    // A lower fidelity than the kept checkpoint trains afresh and keeps the further one.
    let third = evaluator.evaluate(&request(3, Some(1.0))).unwrap();
    assert_eq!(third.metrics["epochs"], 1.0);
    assert_eq!(third.details["resumed_from_epoch"], 0);
    assert!(third.details["checkpoint"].is_null());
    let kept = nas_train::TrainCheckpoint::load(&ckpt).unwrap();
    assert_eq!(kept.epoch, 6);
}

#[test]
fn divergence_fails_the_trial_with_the_reason() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        json!({"epochs": 2, "lr": 1e6, "schedule": "constant"}),
        json!({"dataset": "digits"}),
        dir.path(),
    );
    let mut evaluator = lib.create_evaluator(&ctx).unwrap();
    let err = evaluator
        .evaluate(&request(1, None))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("training diverged at epoch 1 step"), "{err}");
    assert!(err.contains("optimizer = \"adamw\""), "{err}");
    // The instance stays usable for the next candidate.
    assert!(evaluator.evaluate(&request(2, None)).is_err());
}

#[test]
fn the_plugin_explains_missing_data_and_unknown_options() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = lib
        .create_evaluator(&context(json!({}), Value::Null, dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("needs a [data] table, e.g. `[data] dataset = \"digits\"`"),
        "{err}"
    );
    let err = lib
        .create_evaluator(&context(
            json!({"epocs": 3}),
            json!({"dataset": "digits"}),
            dir.path(),
        ))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unknown option `epocs`") && err.contains("epochs, batch"),
        "{err}"
    );
    let err = lib
        .create_evaluator(&context(json!({}), json!({"dataset": "mnist"}), dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[data]") && err.contains("mnist"), "{err}");
}

#[test]
fn test_accuracy_is_measured_on_the_test_split_when_asked_for() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        json!({"epochs": 4, "lr": 0.2, "test_accuracy": true}),
        json!({"dataset": "digits"}),
        dir.path(),
    );
    let mut evaluator = lib.create_evaluator(&ctx).unwrap();
    let m = evaluator.evaluate(&request(1, None)).unwrap().metrics;
    println!("{m:?}");
    assert!(
        m["test_accuracy"] > 0.5 && m["test_accuracy"] <= 1.0,
        "{m:?}"
    );
    assert!(m["test_loss"].is_finite() && m["test_loss"] > 0.0, "{m:?}");

    let ctx = context(
        json!({"epochs": 1}),
        json!({"dataset": "digits"}),
        dir.path(),
    );
    let m = lib
        .create_evaluator(&ctx)
        .unwrap()
        .evaluate(&request(2, None))
        .unwrap()
        .metrics;
    assert!(!m.contains_key("test_accuracy"), "{m:?}");
}

/// `net()` with its second conv's kernel grown from 3 to 5.
fn wider_kernel_net() -> Graph {
    let mut g = net();
    for node in &mut g.nodes {
        if let Op::Conv2d {
            out_channels: 32,
            kernel,
            padding,
            ..
        } = &mut node.op
        {
            *kernel = [5, 5];
            *padding = [2, 2];
        }
    }
    g
}

#[test]
fn an_inherited_child_starts_from_its_parents_weights() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        json!({"epochs": 4, "lr": 0.2, "inherit": true}),
        json!({"dataset": "digits"}),
        dir.path(),
    );
    let mut evaluator = lib.create_evaluator(&ctx).unwrap();
    let parent = evaluator.evaluate(&request(1, None)).unwrap();
    assert_eq!(parent.metrics["inherited"], 0.0);
    assert_eq!(parent.metrics["epochs"], 4.0);
    assert_eq!(
        parent.details["inheritance"]["note"],
        "the candidate has no parent"
    );
    let child = |id: u64, parent: Option<nas_plugin::ParentRef>| EvalRequest {
        graph: wider_kernel_net(),
        parent,
        ..request(id, None)
    };
    let parent_ref = nas_plugin::ParentRef {
        trial_id: 1,
        hash: net().canonical_hash(),
        graph: net(),
    };
    let inherited = evaluator.evaluate(&child(2, Some(parent_ref))).unwrap();
    println!("inherited: {:?}", inherited.metrics);
    let m = &inherited.metrics;
    assert_eq!(m["inherited"], 1.0);
    assert_eq!(m["epochs"], 2.0, "half of `epochs`");
    let info = &inherited.details["inheritance"];
    assert_eq!(info["parent"], 1);
    // Every tensor but the grown kernel came over unchanged; that one was morphed.
    assert_eq!(info["copied"].as_array().unwrap().len(), 1 + 4 + 4 + 2);
    assert_eq!(info["morphed"], json!(["n4.weight"]));
    assert_eq!(info["fresh"], json!([]));
    // A parent without kept weights: trained from scratch for the full epochs.
    let orphan = nas_plugin::ParentRef {
        trial_id: 7,
        hash: "0000".into(),
        graph: net(),
    };
    let fresh = evaluator.evaluate(&child(3, Some(orphan))).unwrap();
    assert_eq!(fresh.metrics["inherited"], 0.0);
    assert_eq!(fresh.metrics["epochs"], 4.0);
    assert!(
        fresh.details["inheritance"]["note"]
            .as_str()
            .unwrap()
            .contains("no kept weights of parent trial 7"),
        "{}",
        fresh.details
    );
}
