//! The strategy through its dynamic library, as the host loads it.

use std::path::PathBuf;

use nas_plugin::abi::PluginKind;
use nas_plugin::host::PluginLibrary;
use nas_plugin::{
    Choice, ChoiceKind, Direction, Metrics, Objective, Observation, Proposal, SpaceDescriptor,
    StrategyContext, TrialState,
};
use serde_json::json;

fn library() -> PathBuf {
    nas_plugin::host::built_plugin("strategy-tpe")
}

fn context(config: serde_json::Value) -> StrategyContext {
    StrategyContext {
        space: SpaceDescriptor {
            kind: "test".into(),
            choices: vec![
                Choice {
                    name: "op".into(),
                    kind: ChoiceKind::Categorical {
                        options: vec!["a".into(), "b".into(), "c".into()],
                    },
                },
                Choice {
                    name: "depth".into(),
                    kind: ChoiceKind::Integer { low: 1, high: 4 },
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
        },
        objectives: vec![Objective {
            metric: "loss".into(),
            direction: Direction::Minimize,
        }],
        seed: 3,
        config,
    }
}

fn observations(first_id: u64, proposals: &[Proposal]) -> Vec<Observation> {
    (proposals.iter().enumerate())
        .map(|(i, p)| Observation {
            trial_id: first_id + i as u64,
            values: p.values.clone(),
            fidelity: None,
            state: TrialState::Complete,
            losses: vec![p.values[0] + (p.values[1] - 3.0).abs() + p.values[2].ln().abs()],
            metrics: Metrics::new(),
            proposer: "other".into(),
        })
        .collect()
}

#[test]
fn loads_by_name_and_round_trips_its_state() {
    let lib = PluginLibrary::open(&library()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((lib.name.as_str(), lib.kind), ("tpe", PluginKind::Strategy));
    // Config errors cross the ABI intact.
    let e = lib
        .create_strategy(&context(json!({"no_such_option": 1})))
        .err()
        .expect("unknown option accepted")
        .to_string();
    assert!(
        e.contains("`no_such_option`") && e.contains("`gamma`"),
        "{e}"
    );

    let config = json!({"startup": 3});
    let mut original = lib.create_strategy(&context(config.clone())).unwrap();
    let mut id = 0;
    for _ in 0..5 {
        let proposals = original.ask(2).unwrap();
        assert!(!proposals.is_empty());
        original.tell(&observations(id, &proposals)).unwrap();
        id += proposals.len() as u64;
    }
    let mut restored = lib.create_strategy(&context(config)).unwrap();
    restored.restore(&original.save().unwrap()).unwrap();
    for _ in 0..4 {
        let (a, b) = (original.ask(2).unwrap(), restored.ask(2).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, b, "restored instance diverged");
        original.tell(&observations(id, &a)).unwrap();
        restored.tell(&observations(id, &b)).unwrap();
        id += a.len() as u64;
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
}
