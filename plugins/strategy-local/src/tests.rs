use std::collections::{HashMap, HashSet};

use nas_plugin::ChoiceKind;
use nas_plugin::kit::rand::SeedableRng;
use nas_plugin::kit::rand_chacha::ChaCha8Rng;
use nas_plugin::kit::{json_exact, sample_choice};
use serde_json::json;

use super::*;
use nas_plugin::conformance::{categorical, categorical_space, mixed_choices, test_space as space};
use nas_plugin::conformance::{complete, loss_context as context, observation};

/// Every kind of choice, plus this strategy's edge cases.
fn mixed_space() -> SpaceDescriptor {
    let mut choices = mixed_choices();
    choices.extend([categorical("fixed_op", 1)]);
    space(choices)
}

fn differing(a: &[f64], b: &[f64]) -> Vec<usize> {
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

fn mismatches(v: &[f64], target: &[f64]) -> f64 {
    differing(v, target).len() as f64
}

fn new_error(config: serde_json::Value) -> String {
    match Local::new(context(categorical_space(3, 3), 0, config)) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_defaults_and_values() {
    for config in [json!(null), json!({})] {
        let s = Local::new(context(categorical_space(3, 3), 0, config)).unwrap();
        assert_eq!(
            s.config(),
            Config {
                restarts: None,
                step: 0.1
            }
        );
    }
    let s = Local::new(context(
        categorical_space(3, 3),
        0,
        json!({"restarts": 0, "step": 0.25}),
    ))
    .unwrap();
    assert_eq!(
        s.config(),
        Config {
            restarts: Some(0),
            step: 0.25
        }
    );
}

#[test]
fn config_errors_say_what_is_wrong() {
    let e = new_error(json!({"restart": 3}));
    assert!(
        e.contains("`restart`") && e.contains("`restarts`") && e.contains("`step`"),
        "{e}"
    );
    for bad in [json!(-1), json!(2.5), json!("ten"), json!(null)] {
        let e = new_error(json!({ "restarts": bad }));
        assert!(
            e.contains("restarts") && e.contains("non-negative integer"),
            "{e}"
        );
    }
    for bad in [json!(0), json!(1.5), json!(-0.1), json!("0.1")] {
        let e = new_error(json!({ "step": bad }));
        assert!(e.contains("step") && e.contains("(0, 1]"), "{e}");
    }
    let e = new_error(json!(3));
    assert!(e.contains("table"), "{e}");
    let mut sp = categorical_space(2, 2);
    sp.choices.push(categorical("empty", 0));
    let e = Local::new(context(sp, 0, json!(null))).err().unwrap();
    assert!(e.to_string().contains("`empty`"), "{e}");
}

#[test]
fn neighbour_values_change_one_step() {
    let cat = categorical("op", 4).kind;
    assert_eq!(neighbour_values(&cat, 2.0, 0.1), [0.0, 1.0, 3.0]);
    let int = ChoiceKind::Integer { low: -2, high: 3 };
    assert_eq!(neighbour_values(&int, -2.0, 0.1), [-1.0]);
    assert_eq!(neighbour_values(&int, 0.0, 0.1), [-1.0, 1.0]);
    let f = ChoiceKind::Float {
        low: 0.0,
        high: 0.5,
        log: false,
    };
    assert_eq!(neighbour_values(&f, 0.5, 0.1), [0.45]);
    assert_eq!(neighbour_values(&f, 0.25, 0.1), [0.2, 0.3]);
    let lf = ChoiceKind::Float {
        low: 1e-4,
        high: 1e-1,
        log: true,
    };
    let n = neighbour_values(&lf, 1e-2, 1.0 / 3.0);
    assert!(
        (n[0] - 1e-3).abs() < 1e-15 && (n[1] - 1e-1).abs() < 1e-15,
        "{n:?}"
    );
    assert!(neighbour_values(&categorical("one", 1).kind, 0.0, 0.1).is_empty());
}

#[test]
fn climbs_through_one_choice_neighbours_and_waits_for_results() {
    let sp = mixed_space();
    let mut s = Local::new(context(sp.clone(), 5, json!(null))).unwrap();
    // No result yet: one random start, then nothing until it is told.
    let start = s.ask(10).unwrap();
    assert_eq!(start.len(), 1);
    assert!(s.ask(3).unwrap().is_empty());
    assert_eq!(start[0].parent, None, "a random start has no parent");
    let start = start[0].values.clone();
    s.tell(&[complete(0, start.clone(), 100.0)]).unwrap();
    // The whole neighbourhood, once each, then a wait for the results.
    let batch = s.ask(100).unwrap();
    let expected: usize = (sp.choices.iter().zip(&start))
        .map(|(c, &v)| neighbour_values(&c.kind, v, 0.1).len())
        .sum();
    assert_eq!(batch.len(), expected);
    let distinct: HashSet<Vec<u64>> = batch.iter().map(|p| bits(&p.values)).collect();
    assert_eq!(distinct.len(), expected);
    for p in &batch {
        sp.check(&p.values).unwrap();
        assert_eq!(differing(&p.values, &start).len(), 1, "{:?}", p.values);
        assert_eq!(p.parent, Some(0), "a neighbour names the incumbent's trial");
    }
    assert!(s.ask(1).unwrap().is_empty());
    // The third neighbour improves: its own neighbours come next.
    for (k, p) in batch.iter().enumerate().take(3) {
        let loss = if k == 2 { 50.0 } else { 200.0 };
        s.tell(&[complete(1 + k as u64, p.values.clone(), loss)])
            .unwrap();
    }
    let moved = batch[2].values.clone();
    for p in s.ask(5).unwrap() {
        assert_eq!(differing(&p.values, &moved).len(), 1, "{:?}", p.values);
        assert_eq!(p.parent, Some(3));
        // Points already evaluated (the start among them) are not proposed again.
        assert!(p.values != start);
    }
}

#[test]
fn uses_results_of_other_strategies() {
    let sp = categorical_space(4, 3);
    // The first climb starts at the best point told so far.
    let mut s = Local::new(context(sp.clone(), 1, json!(null))).unwrap();
    let best = vec![1.0, 1.0, 1.0, 1.0];
    s.tell(&[
        complete(0, vec![0.0; 4], 5.0),
        complete(1, best.clone(), 3.0),
        observation(2, vec![2.0; 4], TrialState::Failed, vec![]),
        // Two neighbours of `best` someone else has evaluated (no better).
        complete(3, vec![0.0, 1.0, 1.0, 1.0], 4.0),
        observation(4, vec![1.0, 2.0, 1.0, 1.0], TrialState::Infeasible, vec![]),
    ])
    .unwrap();
    let batch = s.ask(100).unwrap();
    assert_eq!(batch.len(), 8 - 2);
    for p in &batch {
        assert_eq!(differing(&p.values, &best).len(), 1);
        assert!(p.values != [0.0, 1.0, 1.0, 1.0] && p.values != [1.0, 2.0, 1.0, 1.0]);
    }
    // A better neighbour found by someone else is a move.
    let better = vec![1.0, 1.0, 0.0, 1.0];
    s.tell(&[complete(5, better.clone(), 1.0)]).unwrap();
    let next = s.ask(100).unwrap();
    assert!(!next.is_empty());
    for p in next {
        assert_eq!(differing(&p.values, &better).len(), 1);
    }
    // A better point that is no neighbour is not.
    let far = vec![2.0, 2.0, 2.0, 0.0];
    s.tell(&[complete(6, far, 0.0)]).unwrap();
    for p in s.ask(100).unwrap() {
        assert_eq!(differing(&p.values, &better).len(), 1);
    }
}

/// Drives `s` one trial at a time against `loss`, answering repeats from a cache as the study
/// does, until it returns nothing or `max` trials ran. Returns the proposals.
fn run(s: &mut Local, loss: impl Fn(&[f64]) -> f64, max: u64) -> Vec<Vec<f64>> {
    let mut cache: HashMap<Vec<u64>, u64> = HashMap::new();
    let mut proposed = vec![];
    for id in 0..max {
        let Some(p) = s.ask(1).unwrap().pop() else {
            break;
        };
        let original = *cache.entry(bits(&p.values)).or_insert(id);
        s.tell(&[complete(original, p.values.clone(), loss(&p.values))])
            .unwrap();
        proposed.push(p.values);
    }
    proposed
}

#[test]
fn restarts_when_stuck_and_stops_after_the_last_restart() {
    let sp = categorical_space(3, 3);
    // A flat objective: every climb is stuck once its six neighbours are evaluated.
    let mut s = Local::new(context(sp.clone(), 2, json!({"restarts": 2}))).unwrap();
    let proposed = run(&mut s, |_| 1.0, 1000);
    assert_eq!(s.restarts(), 2);
    let first = &proposed[0];
    let first_hood = 1 + 6;
    assert!(
        proposed[1..first_hood]
            .iter()
            .all(|p| differing(p, first).len() == 1)
    );
    // The restart is a random point, not a neighbour of the stuck incumbent.
    let restart = &proposed[first_hood];
    assert!(differing(restart, first).len() > 1, "{restart:?}");
    // Three climbs of at most seven new points each; nothing proposed twice.
    let distinct: HashSet<Vec<u64>> = proposed.iter().map(|p| bits(p)).collect();
    assert_eq!(distinct.len(), proposed.len());
    assert!(
        proposed.len() > first_hood + 1 && proposed.len() <= 3 * 7,
        "{}",
        proposed.len()
    );
    assert!(s.ask(5).unwrap().is_empty());

    // Unlimited restarts on a finite space: every point once, then nothing.
    let mut s = Local::new(context(sp, 3, json!(null))).unwrap();
    let proposed = run(&mut s, |_| 1.0, 1000);
    let distinct: HashSet<Vec<u64>> = proposed.iter().map(|p| bits(p)).collect();
    assert_eq!((proposed.len(), distinct.len()), (27, 27));
    assert!(s.ask(1).unwrap().is_empty());
}

#[test]
fn restarts_from_a_local_optimum() {
    // Loss = mismatches to `a`, except that `b` (far from `a`) is a trap with a lower loss
    // than its neighbours: a climb reaching either must restart.
    let sp = categorical_space(4, 3);
    let a = vec![0.0; 4];
    let b = vec![2.0; 4];
    let loss = |v: &[f64]| {
        if differing(v, &b).is_empty() {
            0.5
        } else {
            mismatches(v, &a)
        }
    };
    let mut s = Local::new(context(sp, 4, json!({"restarts": 3}))).unwrap();
    let proposed = run(&mut s, loss, 1000);
    assert!(s.restarts() >= 1);
    assert!(proposed.contains(&a));
}

#[test]
fn failed_start_is_replaced_and_lost_proposals_are_retried() {
    let sp = categorical_space(3, 4);
    let mut s = Local::new(context(sp, 8, json!(null))).unwrap();
    let first = s.ask(1).unwrap().pop().unwrap().values;
    s.tell(&[observation(0, first.clone(), TrialState::Failed, vec![])])
        .unwrap();
    let second = s.ask(1).unwrap().pop().unwrap().values;
    assert!(second != first);
    s.tell(&[complete(1, second.clone(), 3.0)]).unwrap();
    let hood = s.ask(100).unwrap();
    assert_eq!(hood.len(), 9);
    // Other results arrive while the proposals are in flight ...
    for id in 0..STALE_AFTER - 1 {
        s.tell(&[complete(100 + id, second.clone(), 3.0)]).unwrap();
    }
    assert!(s.ask(1).unwrap().is_empty());
    // ... and after STALE_AFTER of them without an answer they are proposed again.
    for id in STALE_AFTER - 1..STALE_AFTER {
        s.tell(&[complete(100 + id, second.clone(), 3.0)]).unwrap();
    }
    let again = s.ask(100).unwrap();
    assert_eq!(again.len(), 9);
    assert!(s.ask(1).unwrap().is_empty());
}

/// A deterministic objective over the mixed space, so both runs see the same losses.
fn mixed_loss(v: &[f64]) -> f64 {
    (v[0] - 2.0).abs() + (v[1] - 1.0).powi(2) + (v[2] - 0.3).abs() * 7.0 + (v[3].ln() + 6.0).abs()
}

/// Drives `s` for `steps` rounds of ask(3) + tell of the first two (the third stays in
/// flight a while), recording every proposal's bits.
fn drive(s: &mut Local, first_trial: u64, steps: u64) -> Vec<Vec<u64>> {
    let mut seen = vec![];
    let mut late: Vec<Observation> = vec![];
    for step in 0..steps {
        let proposals = s.ask(3).unwrap();
        let mut told = std::mem::take(&mut late);
        for (k, p) in proposals.into_iter().enumerate() {
            seen.push(bits(&p.values));
            let id = first_trial + 3 * step + k as u64;
            let o = if id % 7 == 3 {
                observation(id, p.values, TrialState::Failed, vec![])
            } else {
                let loss = mixed_loss(&p.values);
                complete(id, p.values, loss)
            };
            if k == 2 { late.push(o) } else { told.push(o) }
        }
        s.tell(&told).unwrap();
    }
    seen
}

#[test]
fn save_restore_continue_equals_uninterrupted_run() {
    let ctx = || context(mixed_space(), 42, json!({"step": 0.2, "restarts": 5}));
    for split in [1, 3, 40] {
        let mut uninterrupted = Local::new(ctx()).unwrap();
        drive(&mut uninterrupted, 0, split);
        // Through a string, as a checkpoint on disk would be.
        let saved = serde_json::to_string(&uninterrupted.save().unwrap()).unwrap();
        let mut resumed = Local::new(ctx()).unwrap();
        resumed
            .restore(serde_json::from_str(&saved).unwrap())
            .unwrap();

        let a = drive(&mut uninterrupted, 3 * split, 60);
        let b = drive(&mut resumed, 3 * split, 60);
        assert_eq!(a, b, "split at {split}");
        assert!(a.len() > 60, "{}", a.len());
        assert_eq!(uninterrupted.save().unwrap(), resumed.save().unwrap());
    }
}

#[test]
fn restore_rejects_foreign_state() {
    let mut s = Local::new(context(categorical_space(2, 2), 0, json!(null))).unwrap();
    let e = s.restore(json!({"rng": 3})).unwrap_err().to_string();
    assert!(e.contains("saved state"), "{e}");
    let mut other = Local::new(context(categorical_space(3, 2), 0, json!(null))).unwrap();
    other.tell(&[complete(1, vec![0.0; 3], 1.0)]).unwrap();
    let e = s.restore(other.save().unwrap()).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn bad_observation_is_an_error_and_changes_nothing() {
    let mut s = Local::new(context(categorical_space(3, 3), 0, json!(null))).unwrap();
    let before = s.save().unwrap();
    let e = s
        .tell(&[
            complete(1, vec![0.0; 3], 1.0),
            complete(2, vec![0.0, 3.0, 0.0], 1.0),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("trial 2") && e.contains("c1"), "{e}");
    assert_eq!(s.save().unwrap(), before);
}

/// Uniform independent sampling, the baseline: best of `trials` draws.
fn random_best(sp: &SpaceDescriptor, seed: u64, target: &[f64], trials: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..trials)
        .map(|_| {
            let v: Vec<f64> = (sp.choices.iter())
                .map(|c| sample_choice(&c.kind, &mut rng))
                .collect();
            mismatches(&v, target)
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn local_beats_random_search_on_hidden_categorical_target() {
    let sp = categorical_space(12, 5);
    let (mut local, mut random) = (0.0, 0.0);
    for seed in 0..10 {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let target: Vec<f64> = (sp.choices.iter())
            .map(|c| sample_choice(&c.kind, &mut rng))
            .collect();
        let mut s = Local::new(context(sp.clone(), seed, json!(null))).unwrap();
        let proposed = run(&mut s, |v| mismatches(v, &target), 200);
        assert_eq!(proposed.len(), 200);
        let best = (proposed.iter())
            .map(|p| mismatches(p, &target))
            .fold(f64::INFINITY, f64::min);
        local += best / 10.0;
        random += random_best(&sp, seed, &target, 200) / 10.0;
    }
    eprintln!("mean best mismatches over 10 seeds: local {local}, random {random}");
    // Random's best of 200 is 4, 5 or 6 mismatches per seed with probabilities 11%, 43%, 44%
    // (mean 5.35, sd 0.7), so a strategy no better than random averages 5.35 +- 0.22 over 10
    // seeds: 3 below the baseline cannot happen by chance.
    assert!(random > 4.5, "random {random}");
    assert!(local + 3.0 <= random, "local {local}, random {random}");
}

#[test]
fn float_proposals_survive_the_json_trip() {
    // Messages cross the ABI as JSON; the workspace enables serde_json's exact float
    // parsing (its default parser misreads about one long decimal in ten by an ulp), and the
    // proposals are also rounded so they stay exact for hosts built without it.
    let kinds = [
        ChoiceKind::Float {
            low: 1e-4,
            high: 1e-1,
            log: true,
        },
        ChoiceKind::Float {
            low: -3.0,
            high: 7.5,
            log: false,
        },
    ];
    let json =
        |x: f64| -> f64 { serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap() };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut raw, mut rounded) = (0, 0);
    for kind in &kinds {
        let ChoiceKind::Float { low, high, .. } = *kind else {
            unreachable!()
        };
        for _ in 0..20_000 {
            let x = sample_choice(kind, &mut rng);
            raw += usize::from(json(x).to_bits() != x.to_bits());
            let y = json_exact(x, low, high);
            assert!(
                (y - x).abs() <= 1e-11 * x.abs() && kind.check(y).is_ok(),
                "{x} {y}"
            );
            rounded += usize::from(json(y).to_bits() != y.to_bits());
            for n in neighbour_values(kind, y, 0.1) {
                rounded += usize::from(json(n).to_bits() != n.to_bits());
            }
        }
    }
    assert_eq!(raw, 0, "float_roundtrip is on: raw values round-trip too");
    assert_eq!(rounded, 0);
}

#[test]
fn conforms_to_the_strategy_contract() {
    nas_plugin::conformance::check::<Local>(json!({"restarts": 2}));
}
