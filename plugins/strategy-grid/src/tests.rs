use std::collections::HashSet;

use nas_plugin::Choice;
use nas_plugin::conformance::{self, categorical, loss_context as context, test_space as space};
use nas_plugin::kit::bits;
use serde_json::json;

use super::*;

/// 3 x 3 x 4 x 1 = 36 candidates, every kind of choice.
fn mixed_space() -> SpaceDescriptor {
    space(vec![
        categorical("op", 3),
        Choice {
            name: "depth".into(),
            kind: ChoiceKind::Integer { low: -1, high: 1 },
        },
        Choice {
            name: "lr".into(),
            kind: ChoiceKind::Float {
                low: 1e-4,
                high: 1e-1,
                log: true,
            },
        },
        categorical("fixed", 1),
    ])
}

/// A complete trial; the grid ignores its loss.
fn complete(trial_id: u64, values: Vec<f64>) -> Observation {
    conformance::complete(trial_id, values, 1.0)
}

/// Every candidate of the mixed space.
fn all_mixed() -> HashSet<Vec<u64>> {
    let lrs = float_points(1e-4, 1e-1, true, 4);
    let mut all = HashSet::new();
    for op in 0..3 {
        for depth in -1..=1 {
            for &lr in &lrs {
                all.insert(bits(&[op as f64, depth as f64, lr, 0.0]));
            }
        }
    }
    all
}

fn new_error(space: SpaceDescriptor, config: serde_json::Value) -> String {
    match Grid::new(context(space, 0, config)) {
        Ok(_) => panic!("config was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_defaults_and_values() {
    let s = Grid::new(context(space(vec![categorical("a", 3)]), 0, json!(null))).unwrap();
    assert_eq!(
        s.config(),
        Config {
            grid: None,
            max_size: 1_000_000
        }
    );
    // TOML's `max_size = 1e6` arrives as a float.
    let s = Grid::new(context(
        mixed_space(),
        0,
        json!({"grid": 4, "max_size": 1e2}),
    ))
    .unwrap();
    assert_eq!(
        s.config(),
        Config {
            grid: Some(4),
            max_size: 100
        }
    );
    assert_eq!(s.size(), 36);
}

#[test]
fn config_errors_say_what_is_wrong() {
    let cat = || space(vec![categorical("a", 3)]);
    let e = new_error(cat(), json!({"points": 3}));
    assert!(
        e.contains("`points`") && e.contains("`grid`") && e.contains("`max_size`"),
        "{e}"
    );
    for bad in [json!(0), json!(-1), json!(2.5), json!("ten"), json!(null)] {
        for key in ["grid", "max_size"] {
            let e = new_error(cat(), json!({ key: bad.clone() }));
            assert!(e.contains(key) && e.contains("positive integer"), "{e}");
        }
    }
    let e = new_error(cat(), json!([1]));
    assert!(e.contains("table"), "{e}");

    // A float choice needs `grid`.
    let e = new_error(mixed_space(), json!(null));
    assert!(e.contains("`lr`") && e.contains("grid = N"), "{e}");

    // Too large: the message gives the size and the limit.
    let big = space((0..7).map(|i| categorical(&format!("c{i}"), 10)).collect());
    let e = new_error(big.clone(), json!(null));
    assert!(
        e.contains("10000000") && e.contains("1000000") && e.contains("max_size"),
        "{e}"
    );
    assert!(Grid::new(context(big, 0, json!({"max_size": 1e7}))).is_ok());
    let e = new_error(mixed_space(), json!({"grid": 4, "max_size": 35}));
    assert!(e.contains("36") && e.contains("smaller `grid`"), "{e}");
    let huge = space(vec![
        Choice {
            name: "i".into(),
            kind: ChoiceKind::Integer {
                low: i64::MIN,
                high: i64::MAX,
            },
        },
        categorical("c", 2),
    ]);
    let e = new_error(huge, json!(null));
    assert!(e.contains("more than 2^64"), "{e}");
    let e = new_error(space(vec![categorical("none", 0)]), json!(null));
    assert!(e.contains("`none`"), "{e}");
}

#[test]
fn float_points_include_both_bounds() {
    assert_eq!(
        float_points(0.0, 1.0, false, 5),
        [0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(float_points(0.0, 1.0, false, 1), [0.5]);
    let p = float_points(1e-4, 1e-1, true, 4);
    assert_eq!((p[0], p[3]), (1e-4, 1e-1));
    assert!(
        (p[1] - 1e-3).abs() < 1e-15 && (p[2] - 1e-2).abs() < 1e-15,
        "{p:?}"
    );
    assert_eq!(float_points(2.0, 2.0, false, 3), [2.0]);
}

#[test]
fn permutation_is_a_bijection() {
    for size in [1, 2, 3, 4, 5, 17, 64, 1000, 4097] {
        let p = Permutation::new(size, [1, 2, 3, 4, 5, size]);
        let image: HashSet<u64> = (0..size).map(|i| p.at(i)).collect();
        assert_eq!(image.len() as u64, size);
        assert!(image.iter().all(|&i| i < size));
        for i in 0..size {
            assert_eq!(p.at(p.position_of(i)), i);
        }
    }
    // Wide domains too (half_bits = 32).
    let p = Permutation::new(u64::MAX, [9; ROUNDS]);
    for i in [0, 1, 12345, u64::MAX - 1] {
        assert_eq!(p.position_of(p.at(i)), i);
    }
}

/// Asks in uneven batches until the grid runs dry, checking each proposal.
fn drain(s: &mut Grid, sp: &SpaceDescriptor) -> Vec<Vec<u64>> {
    let mut out = vec![];
    for n in [1, 2, 5, 3].iter().cycle() {
        let batch = s.ask(*n).unwrap();
        assert!(batch.len() <= *n);
        if batch.is_empty() {
            break;
        }
        for p in batch {
            sp.check(&p.values).unwrap();
            out.push(bits(&p.values));
        }
    }
    out
}

#[test]
fn covers_the_space_exactly_once_then_stops() {
    let sp = mixed_space();
    let mut orders = HashSet::new();
    for seed in 0..5 {
        let mut s = Grid::new(context(sp.clone(), seed, json!({"grid": 4}))).unwrap();
        let order = drain(&mut s, &sp);
        assert_eq!(order.len(), 36);
        let set: HashSet<Vec<u64>> = order.iter().cloned().collect();
        assert_eq!(set, all_mixed());
        for n in [1, 10] {
            assert!(s.ask(n).unwrap().is_empty());
        }
        orders.insert(order);
    }
    // Seeds shuffle the order; the same seed repeats it.
    assert_eq!(orders.len(), 5);
    let mut again = Grid::new(context(sp.clone(), 0, json!({"grid": 4}))).unwrap();
    assert!(orders.contains(&drain(&mut again, &sp)));
}

#[test]
fn skips_candidates_others_have_evaluated() {
    let sp = mixed_space();
    let mut s = Grid::new(context(sp.clone(), 7, json!({"grid": 4}))).unwrap();
    let first = s.ask(4).unwrap();
    // Told by others: two grid points (one of them twice), one off-grid float, and one that
    // this grid already proposed.
    let others = [
        vec![2.0, 1.0, 1e-2, 0.0],
        vec![0.0, -1.0, 1e-4, 0.0],
        vec![0.0, -1.0, 1e-4, 0.0],
        vec![1.0, 0.0, 0.05, 0.0],
        first[0].values.clone(),
    ];
    let already: HashSet<Vec<u64>> = first.iter().map(|p| bits(&p.values)).collect();
    let mut expected = all_mixed();
    expected.retain(|v| !already.contains(v));
    let mut told_grid_points = 0;
    for (id, v) in others.iter().enumerate() {
        s.tell(&[complete(id as u64, v.clone())]).unwrap();
        if expected.remove(&bits(v)) {
            told_grid_points += 1;
        }
    }
    let rest = drain(&mut s, &sp);
    let rest_set: HashSet<Vec<u64>> = rest.iter().cloned().collect();
    assert_eq!(rest.len(), rest_set.len());
    assert_eq!(rest_set, expected);
    assert_eq!(rest.len(), 36 - 4 - told_grid_points);
    assert!(told_grid_points <= 2);
}

#[test]
fn save_restore_continue_equals_uninterrupted_run() {
    let sp = mixed_space();
    let ctx = || context(mixed_space(), 11, json!({"grid": 4}));
    let mut uninterrupted = Grid::new(ctx()).unwrap();
    uninterrupted.ask(5).unwrap();
    // Someone else's point still ahead of the cursor is part of the state.
    let mut probe = Grid::new(ctx()).unwrap();
    probe.ask(30).unwrap();
    let ahead = probe.ask(1).unwrap().pop().unwrap();
    uninterrupted.tell(&[complete(1, ahead.values)]).unwrap();
    assert!(!uninterrupted.skip.is_empty());

    let saved = serde_json::to_string(&uninterrupted.save().unwrap()).unwrap();
    let mut resumed = Grid::new(ctx()).unwrap();
    resumed
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    assert_eq!(drain(&mut uninterrupted, &sp), drain(&mut resumed, &sp));
    assert_eq!(uninterrupted.save().unwrap(), resumed.save().unwrap());
}

#[test]
fn restore_rejects_foreign_state() {
    let mut s = Grid::new(context(space(vec![categorical("a", 3)]), 0, json!(null))).unwrap();
    let e = s.restore(json!({"cursor": 1})).unwrap_err().to_string();
    assert!(e.contains("saved state"), "{e}");
    let mut bigger = Grid::new(context(space(vec![categorical("a", 9)]), 0, json!(null))).unwrap();
    bigger.ask(5).unwrap();
    let e = s.restore(bigger.save().unwrap()).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn bad_observation_is_an_error_and_changes_nothing() {
    let sp = space(vec![categorical("a", 3), categorical("b", 3)]);
    let mut s = Grid::new(context(sp, 0, json!(null))).unwrap();
    let before = s.save().unwrap();
    let e = s
        .tell(&[complete(1, vec![0.0, 0.0]), complete(2, vec![0.0, 3.0])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("trial 2") && e.contains("`b`"), "{e}");
    assert_eq!(s.save().unwrap(), before);
}

#[test]
fn large_spaces_need_no_table() {
    // A million candidates: constructing, asking and telling stay cheap.
    let sp = space((0..6).map(|i| categorical(&format!("c{i}"), 10)).collect());
    let mut s = Grid::new(context(sp.clone(), 3, json!(null))).unwrap();
    assert_eq!(s.size(), 1_000_000);
    let batch = s.ask(1000).unwrap();
    let set: HashSet<Vec<u64>> = batch.iter().map(|p| bits(&p.values)).collect();
    assert_eq!(set.len(), 1000);
    s.tell(&[complete(1, vec![9.0; 6])]).unwrap();
    assert!(serde_json::to_string(&s.save().unwrap()).unwrap().len() < 400);
}

#[test]
fn conforms_to_the_strategy_contract() {
    nas_plugin::conformance::check::<Grid>(json!({"grid": 3}));
}
