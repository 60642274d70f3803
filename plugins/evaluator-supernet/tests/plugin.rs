//! Loads the built `libevaluator_supernet.so` through the host loader, as `nas` does: trains
//! a small cell supernet on the bundled digits once, loads it in a later instance, resumes a
//! partial checkpoint exactly, trains once when two instances start together, and refuses
//! what it cannot do with a message saying why.

use std::path::{Path, PathBuf};

use nas_core::space::{SearchSpace, build_space, find_kind};
use nas_data::DataConfig;
use nas_graph::Supernet;
use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{EvalRequest, EvaluatorContext, Metrics, RuntimeSettings};
use nas_runtime::SessionSettings;
use nas_train::oneshot::{Method, OneShotCheckpoint, OneShotConfig, SupernetTrainer};
use serde_json::{Value, json};

fn plugin_path() -> PathBuf {
    nas_plugin::host::built_plugin("evaluator-supernet")
}

const SEED: u64 = 5;

fn ort() -> PathBuf {
    nas_runtime::locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)")
}

/// The NAS-Bench-201 cell space at 4 channels, one cell per stage, on digits' 1x8x8 images.
fn space() -> Box<dyn SearchSpace> {
    let parse = find_kind("cell").unwrap().parse;
    let cfg = parse(
        "[space]\nkind = \"cell\"\ninput = [1, 8, 8]\nclasses = 10\nchannels = 4\ncells_per_stage = 1\n",
    )
    .unwrap();
    build_space(&cfg).unwrap()
}

fn data() -> Value {
    json!({"dataset": "digits", "validation": 0.25})
}

fn context(
    config: Value,
    supernet: Option<Supernet>,
    data: Value,
    study_dir: &Path,
) -> EvaluatorContext {
    EvaluatorContext {
        config,
        runtime: RuntimeSettings {
            threads: 2,
            ort_library: Some(ort().display().to_string()),
            ..RuntimeSettings::default()
        },
        seed: SEED,
        study_dir: study_dir.display().to_string(),
        data,
        supernet,
    }
}

fn table(epochs: usize) -> Value {
    json!({"epochs": epochs, "batch": 64, "weight_lr": 0.05})
}

fn request(space: &dyn SearchSpace, trial_id: u64, values: &[f64]) -> EvalRequest {
    EvalRequest {
        trial_id,
        values: values.to_vec(),
        arch: space.arch_string(values),
        graph: space.decode(values).unwrap(),
        fidelity: None,
        metrics: Metrics::new(),
        parent: None,
    }
}

const CONVS: [f64; 6] = [3.0, 3.0, 2.0, 3.0, 1.0, 3.0];
const SKIPS: [f64; 6] = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0];

#[test]
fn the_first_evaluation_trains_the_supernet_and_a_later_instance_loads_it() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    assert_eq!(lib.name, "supernet");
    assert_eq!(lib.kind, PluginKind::Evaluator);
    let space = space();
    let supernet = space.supernet(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(table(2), Some(supernet), data(), dir.path());

    let mut first = lib.create_evaluator(&ctx).unwrap();
    let a = first.evaluate(&request(space.as_ref(), 1, &CONVS)).unwrap();
    println!("convs: {:?} {}", a.metrics, a.details["history"]);
    assert!(a.metrics["supernet_seconds"] > 0.0);
    // Two epochs train each operation on about a fifth of the steps: the accuracy is near
    // chance, but a valid fraction; that training happened shows in the falling loss below.
    let acc = a.metrics["supernet_accuracy"];
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert!(a.metrics["supernet_loss"].is_finite());
    let ckpt = dir.path().join("supernet/spos.ckpt");
    assert!(ckpt.is_file());
    assert_eq!(OneShotCheckpoint::load(&ckpt).unwrap().epoch, 2);
    let history = a.details["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    let loss = |e: usize| history[e]["train_loss"].as_f64().unwrap();
    assert!(loss(1) > 0.0 && loss(1) < loss(0), "{history:?}");
    assert_eq!(a.details["trained_here"], true);

    // Trained once: the next request only scores.
    let b = first.evaluate(&request(space.as_ref(), 2, &SKIPS)).unwrap();
    assert_eq!(b.metrics["supernet_seconds"], 0.0);
    assert_ne!(b.metrics["supernet_loss"], a.metrics["supernet_loss"]);

    // A new instance loads the checkpoint and scores the same path the same.
    drop(first);
    let mut second = lib.create_evaluator(&ctx).unwrap();
    let c = second
        .evaluate(&request(space.as_ref(), 3, &CONVS))
        .unwrap();
    assert_eq!(c.metrics["supernet_seconds"], 0.0);
    assert_eq!(c.details["loaded"], true);
    assert_eq!(c.metrics["supernet_accuracy"], acc);
    assert_eq!(c.metrics["supernet_loss"], a.metrics["supernet_loss"]);
    assert_eq!(c.details["history"], a.details["history"]);
}

#[test]
fn a_partial_checkpoint_is_resumed_to_the_same_supernet() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let space = space();
    let supernet = space.supernet(false).unwrap();
    let config = table(3);

    // Uninterrupted: three epochs in one go.
    let whole = tempfile::tempdir().unwrap();
    let ctx = context(config.clone(), Some(supernet.clone()), data(), whole.path());
    let straight = lib
        .create_evaluator(&ctx)
        .unwrap()
        .evaluate(&request(space.as_ref(), 1, &CONVS))
        .unwrap();
    assert_eq!(straight.details["resumed_from_epoch"], Value::Null);

    // Stopped after epoch 1: the library writes the checkpoint the evaluator writes after
    // its first epoch (same supernet, settings and data), as a killed study leaves it.
    let partial = tempfile::tempdir().unwrap();
    let data_cfg: DataConfig = serde_json::from_value(data()).unwrap();
    let split = nas_data::load(&data_cfg, SEED).unwrap();
    let mut cfg: OneShotConfig = serde_json::from_value(config.clone()).unwrap();
    cfg.method = Method::Spos;
    let runtime = SessionSettings {
        threads: 2,
        ..SessionSettings::cpu(&ort())
    };
    let mut trainer = SupernetTrainer::new(&supernet, &cfg, &runtime, &split).unwrap();
    trainer.train_epoch().unwrap();
    std::fs::create_dir_all(partial.path().join("supernet")).unwrap();
    let ckpt = partial.path().join("supernet/spos.ckpt");
    trainer.checkpoint().unwrap().save(&ckpt).unwrap();
    drop(trainer);

    let ctx = context(config, Some(supernet), data(), partial.path());
    let resumed = lib
        .create_evaluator(&ctx)
        .unwrap()
        .evaluate(&request(space.as_ref(), 1, &CONVS))
        .unwrap();
    assert_eq!(resumed.details["resumed_from_epoch"], 1);
    assert!(resumed.metrics["supernet_seconds"] > 0.0);
    assert_eq!(OneShotCheckpoint::load(&ckpt).unwrap().epoch, 3);
    let losses = |r: &nas_plugin::EvalResult| {
        r.details["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["train_loss"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&resumed), losses(&straight));
    assert_eq!(
        resumed.metrics["supernet_accuracy"],
        straight.metrics["supernet_accuracy"]
    );
    assert_eq!(
        resumed.metrics["supernet_loss"],
        straight.metrics["supernet_loss"]
    );
}

#[test]
fn checkpoints_of_other_settings_are_replaced_and_instances_started_together_train_once() {
    let space = space();
    let supernet = space.supernet(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A finished checkpoint of other settings (1 epoch, another seed) is not used.
    let other = context(
        json!({"epochs": 1, "batch": 64, "seed": 99}),
        Some(supernet.clone()),
        data(),
        dir.path(),
    );
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    lib.create_evaluator(&other)
        .unwrap()
        .evaluate(&request(space.as_ref(), 1, &SKIPS))
        .unwrap();

    let ctx = context(table(1), Some(supernet), data(), dir.path());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (ctx, space) = (&ctx, &space);
                s.spawn(move || {
                    let lib = PluginLibrary::open(&plugin_path()).unwrap();
                    let mut e = lib.create_evaluator(ctx).unwrap();
                    e.evaluate(&request(space.as_ref(), i, &CONVS)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let trained: Vec<bool> = results
        .iter()
        .map(|r| r.metrics["supernet_seconds"] > 0.0)
        .collect();
    assert_eq!(trained.iter().filter(|t| **t).count(), 1, "{trained:?}");
    let replaced = results.iter().find(|r| r.metrics["supernet_seconds"] > 0.0);
    assert_eq!(
        replaced.unwrap().details["checkpoint_note"],
        "the checkpoint was trained with other settings; replaced"
    );
    assert_eq!(
        results[0].metrics["supernet_accuracy"],
        results[1].metrics["supernet_accuracy"]
    );
}

#[test]
fn what_it_cannot_do_is_refused_with_the_reason() {
    let lib = PluginLibrary::open(&plugin_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let supernet = space().supernet(false).unwrap();
    let err = |ctx: EvaluatorContext| match lib.create_evaluator(&ctx) {
        Ok(_) => panic!("created"),
        Err(e) => e.to_string(),
    };

    let e = err(context(table(1), None, data(), dir.path()));
    assert!(
        e.contains("no one-shot supernet") && e.contains("cell"),
        "{e}"
    );
    let e = err(context(
        table(1),
        Some(supernet.clone()),
        Value::Null,
        dir.path(),
    ));
    assert!(e.contains("[data]"), "{e}");
    let e = err(context(
        table(1),
        Some(supernet.clone()),
        json!({"dataset": "digits", "validation": 0.0}),
        dir.path(),
    ));
    assert!(e.contains("validation split") && e.contains("empty"), "{e}");
    let e = err(context(
        json!({"method": "darts"}),
        Some(supernet.clone()),
        data(),
        dir.path(),
    ));
    assert!(e.contains("`method`") && e.contains("spos"), "{e}");
    let e = err(context(
        json!({"epochs": 1, "lr": 0.1}),
        Some(supernet),
        data(),
        dir.path(),
    ));
    assert!(e.contains("`lr`"), "{e}");
}
