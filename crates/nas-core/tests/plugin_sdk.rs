//! The plugin SDK through real dynamic libraries: the shipped `random` and `evolution`
//! strategies and two fixtures (tests/fixtures), one that panics on demand and one with an
//! incompatible ABI. They are dev-dependencies of nas-core, so `cargo test -p nas-core` builds
//! the .so files loaded here.

use std::path::PathBuf;

use nas_plugin::abi::PluginKind;
use nas_plugin::host::{LoadError, PluginLibrary, StrategyHandle};
use nas_plugin::{
    Choice, ChoiceKind, Direction, Metrics, Objective, Observation, Proposal, SpaceDescriptor,
    StrategyContext, TrialState,
};
use serde_json::json;

/// The library cargo built for crate `name` (a dev-dependency of nas-core, so `cargo test -p
/// nas-core` builds it).
fn library(name: &str) -> PathBuf {
    nas_plugin::host::built_plugin(name)
}

fn open(name: &str) -> PluginLibrary {
    let path = library(name);
    PluginLibrary::open(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn space() -> SpaceDescriptor {
    SpaceDescriptor {
        kind: "test".into(),
        choices: vec![
            Choice {
                name: "op".into(),
                kind: ChoiceKind::Categorical {
                    options: vec!["conv3x3".into(), "conv1x1".into(), "skip".into()],
                },
            },
            Choice {
                name: "depth".into(),
                kind: ChoiceKind::Integer { low: 1, high: 6 },
            },
            Choice {
                name: "lr".into(),
                kind: ChoiceKind::Float {
                    low: 1e-4,
                    high: 1e-1,
                    log: true,
                },
            },
        ],
    }
}

fn context(seed: u64, config: serde_json::Value) -> StrategyContext {
    StrategyContext {
        space: space(),
        objectives: vec![Objective {
            metric: "val_loss".into(),
            direction: Direction::Minimize,
        }],
        seed,
        config,
    }
}

fn observations(first_id: u64, proposals: &[Proposal]) -> Vec<Observation> {
    proposals
        .iter()
        .enumerate()
        .map(|(i, p)| Observation {
            trial_id: first_id + i as u64,
            values: p.values.clone(),
            fidelity: None,
            state: TrialState::Complete,
            losses: vec![p.values[0] + (p.values[1] - 3.0).abs() + p.values[2]],
            metrics: Metrics::new(),
            proposer: "other".into(),
        })
        .collect()
}

/// Asks and tells a few rounds, then checks that a fresh instance restored from `save`
/// proposes exactly what the original does.
fn round_trip(name: &str, config: serde_json::Value) {
    let lib = open(name);
    assert_eq!(lib.kind, PluginKind::Strategy);
    let mut original = lib.create_strategy(&context(7, config.clone())).unwrap();
    let mut id = 0;
    for _ in 0..4 {
        let proposals = original.ask(3).unwrap();
        assert_eq!(proposals.len(), 3);
        for p in &proposals {
            space().check(&p.values).unwrap();
        }
        original.tell(&observations(id, &proposals)).unwrap();
        id += 3;
    }
    let state = original.save().unwrap();
    let mut restored = lib.create_strategy(&context(7, config)).unwrap();
    restored.restore(&state).unwrap();
    for _ in 0..3 {
        let (a, b) = (original.ask(4).unwrap(), restored.ask(4).unwrap());
        assert_eq!(a, b, "{name}: restored instance diverged");
        original.tell(&observations(id, &a)).unwrap();
        restored.tell(&observations(id, &b)).unwrap();
        id += 4;
    }
}

#[test]
fn random_round_trips_through_its_library() {
    round_trip("strategy-random", json!(null));
}

#[test]
fn evolution_round_trips_through_its_library() {
    // A small population so the rounds reach the evolution phase.
    round_trip("strategy-evolution", json!({"population": 5, "sample": 2}));
}

#[test]
fn libraries_load_side_by_side() {
    let random = open("strategy-random");
    let evolution = open("strategy-evolution");
    let panic = open("strategy-test-panic");
    assert_eq!(
        (
            random.name.as_str(),
            evolution.name.as_str(),
            panic.name.as_str()
        ),
        ("random", "evolution", "test-panic")
    );
    // Instances too come from their own library.
    let mut r = random.create_strategy(&context(1, json!(null))).unwrap();
    let mut e = evolution.create_strategy(&context(1, json!(null))).unwrap();
    assert_eq!((r.name(), e.name()), ("random", "evolution"));
    // Same seed, different algorithms: evolution rejects an option random does not have.
    let bad = json!({"population": 3, "sample": 2});
    assert!(random.create_strategy(&context(1, bad.clone())).is_err());
    assert!(evolution.create_strategy(&context(1, bad)).is_ok());
    r.ask(1).unwrap();
    e.ask(1).unwrap();
}

#[test]
fn config_error_from_new_names_the_plugin() {
    let lib = open("strategy-evolution");
    let err = lib
        .create_strategy(&context(0, json!({"populaton": 10})))
        .err()
        .expect("unknown option accepted");
    assert_eq!(
        (err.plugin.as_str(), err.method.as_str()),
        ("evolution", "new")
    );
    assert!(err.message.contains("`populaton`"), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("`evolution`") && shown.contains("`new`"),
        "{shown}"
    );
}

fn panicking(
    lib: &PluginLibrary,
    method: &str,
) -> Result<StrategyHandle, nas_plugin::host::CallError> {
    lib.create_strategy(&context(0, json!({ "panic_in": method })))
}

#[test]
fn panics_become_errors_and_the_host_lives_on() {
    let lib = open("strategy-test-panic");
    let mut bystander = open("strategy-evolution")
        .create_strategy(&context(3, json!(null)))
        .unwrap();
    for method in ["new", "ask", "tell", "save", "restore"] {
        let result = panicking(&lib, method).and_then(|mut s| {
            let proposals = s.ask(2)?;
            assert_eq!(proposals[0].values, vec![0.0, 1.0, 1e-4]);
            s.tell(&observations(0, &proposals))?;
            let state = s.save()?;
            s.restore(&state)?;
            Ok(())
        });
        let err = result
            .err()
            .unwrap_or_else(|| panic!("no error from a panic in {method}"));
        assert_eq!(
            (err.plugin.as_str(), err.method.as_str()),
            ("test-panic", method)
        );
        assert!(err.message.contains("panicked"), "{err}");
        assert!(
            err.message
                .contains(&format!("told to panic in `{method}`")),
            "{err}"
        );
        // Other plugins keep working in this process.
        let proposals = bystander.ask(1).unwrap();
        bystander.tell(&observations(100, &proposals)).unwrap();
    }
    // An instance stays usable after one of its calls panicked.
    let mut s = panicking(&lib, "ask").unwrap();
    assert!(s.ask(1).is_err());
    s.tell(&[]).unwrap();
    assert_eq!(s.save().unwrap(), json!({"told": 0}));
}

#[test]
fn incompatible_abi_is_refused_with_a_short_message() {
    let path = library("strategy-test-abi-mismatch");
    let err = PluginLibrary::open(&path).expect_err("incompatible library was loaded");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, LoadError::Incompatible { .. }), "{err:?}");
    assert!(
        message.contains("libstrategy_test_abi_mismatch"),
        "{message}"
    );
    assert!(message.contains("rebuild"), "{message}");
    assert!(
        message.contains("expected `u32`, found `u64`"),
        "the message says what differs: {message}"
    );
    assert!(message.len() < 600, "{} chars: {message}", message.len());
}

#[test]
fn a_file_that_is_not_a_plugin_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("libstrategy_garbage.so");
    std::fs::write(&garbage, "not a shared library").unwrap();
    let missing = dir.path().join("libstrategy_missing.so");
    for (path, why) in [(garbage, "file too short"), (missing, "No such file")] {
        let err = PluginLibrary::open(&path).expect_err("not a plugin, but loaded");
        let message = err.to_string();
        eprintln!("{message}");
        assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(message.len() < 600, "{message}");
    }
}
