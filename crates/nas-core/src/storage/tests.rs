//! Storage semantics, checked on both backends.

use super::*;

fn new_trial(hash: &str) -> NewTrial {
    NewTrial {
        state: TrialState::Pending,
        strategy: "random".into(),
        strategy_index: 0,
        values: vec![1.0, 2.0],
        arch: "a".into(),
        hash: hash.into(),
        fidelity: None,
        metrics: Metrics::from([("params".to_string(), 10.0)]),
        error: None,
        proposal: None,
    }
}

#[test]
fn trials_and_checkpoints_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let cp = Checkpoint {
        strategy_index: 0,
        name: "random".into(),
        state: serde_json::json!({"k": 1}),
    };
    {
        let mut s = Storage::create(dir.path()).unwrap();
        let id = s
            .insert_trial(&new_trial("h1"), std::slice::from_ref(&cp))
            .unwrap();
        assert!(s.claim(id, "w", 60.0).unwrap());
        let outcome = Outcome {
            state: TrialState::Complete,
            metrics: Metrics::from([("latency_ms".to_string(), 0.5)]),
            details: serde_json::Value::Null,
            error: None,
        };
        s.finish(id, &outcome, std::slice::from_ref(&cp), 3.0)
            .unwrap();
        s.insert_trial(&new_trial("h2"), &[]).unwrap();
    }
    let s = Storage::open_existing(dir.path()).unwrap();
    let trials = s.trials().unwrap();
    assert_eq!(trials.len(), 2);
    assert_eq!(trials[0].state, TrialState::Complete);
    assert_eq!(trials[0].metrics["latency_ms"], 0.5);
    assert!(trials[0].finished_at.is_some());
    assert_eq!(trials[1].state, TrialState::Pending);
    assert_eq!(s.unfinished().unwrap().len(), 1);
    assert_eq!(
        s.checkpoints().unwrap()[0].state,
        serde_json::json!({"k": 1})
    );
    assert_eq!(s.meta("study_seconds").unwrap().as_deref(), Some("3"));
}

#[test]
fn opening_a_missing_study_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = Storage::open_existing(&dir.path().join("nope"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("nas search"), "{err}");
}
