use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::options::{self, parse_options};
use super::*;
use crate::messages::{Choice, ChoiceKind, SpaceDescriptor};

fn choice(name: &str, kind: ChoiceKind) -> Choice {
    Choice {
        name: name.into(),
        kind,
    }
}

fn space(choices: Vec<Choice>) -> SpaceDescriptor {
    SpaceDescriptor {
        kind: "chain".into(),
        choices,
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    #[serde(deserialize_with = "options::positive_int")]
    population: usize,
    #[serde(deserialize_with = "options::non_negative_int")]
    restarts: Option<u64>,
    #[serde(deserialize_with = "options::fraction")]
    step: f64,
    #[serde(deserialize_with = "options::positive_number")]
    weight: Option<f64>,
    verbose: bool,
    mode: Mode,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Fast,
    Thorough,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            population: 20,
            restarts: None,
            step: 0.1,
            weight: None,
            verbose: false,
            mode: Mode::Fast,
        }
    }
}

fn options_error(value: serde_json::Value) -> String {
    parse_options::<Options>("mine", &value).unwrap_err()
}

#[test]
fn options_default_when_absent_and_read_when_given() {
    for empty in [json!(null), json!({})] {
        assert_eq!(
            parse_options::<Options>("mine", &empty).unwrap(),
            Options::default()
        );
    }
    let o: Options = parse_options(
        "mine",
        &json!({"population": 1e3, "restarts": 0, "step": 1, "weight": 2.5, "verbose": true, "mode": "thorough"}),
    )
    .unwrap();
    assert_eq!(
        o,
        Options {
            population: 1000,
            restarts: Some(0),
            step: 1.0,
            weight: Some(2.5),
            verbose: true,
            mode: Mode::Thorough,
        }
    );
}

#[test]
fn unknown_option_is_named_with_every_accepted_one() {
    assert_eq!(
        options_error(json!({"populaton": 3})),
        "mine has no option `populaton`; accepted options: `population`, `restarts`, `step`, \
         `weight`, `verbose`, `mode`"
    );
    // Also when another key is bad too.
    assert!(options_error(json!({"population": 0, "x": 1})).contains("no option `x`"));
}

#[test]
fn bad_values_say_what_the_key_must_be() {
    for bad in [json!(0), json!(-1), json!(2.5), json!("ten"), json!(null)] {
        let e = options_error(json!({ "population": bad }));
        assert_eq!(
            e,
            format!("mine option `population` must be a positive integer, not `{bad}`")
        );
    }
    let e = options_error(json!({"restarts": -1}));
    assert_eq!(
        e,
        "mine option `restarts` must be a non-negative integer, not `-1`"
    );
    for bad in [json!(0), json!(1.5), json!("0.1")] {
        let e = options_error(json!({ "step": bad }));
        assert!(e.contains("`step` must be a number in (0, 1]"), "{e}");
    }
    let e = options_error(json!({"weight": -2}));
    assert!(e.contains("`weight` must be a positive number"), "{e}");
    let e = options_error(json!({"verbose": 1}));
    assert_eq!(e, "mine option `verbose` must be a boolean, not `1`");
    let e = options_error(json!({"mode": "slow"}));
    assert_eq!(
        e,
        "mine option `mode` must be `fast` or `thorough`, not `\"slow\"`"
    );
    let e = options_error(json!([1]));
    assert_eq!(e, "mine options must be a table, not `[1]`");
}

#[test]
fn range_check_names_strategy_key_and_value() {
    assert!(options::check("mine", "eta", true, "greater than 1", 2).is_ok());
    assert_eq!(
        options::check("mine", "eta", false, "greater than 1", 0.5).unwrap_err(),
        "mine option `eta` must be greater than 1, not `0.5`"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct WithPairs {
    #[serde(with = "state::pairs")]
    counts: HashMap<Vec<u64>, u32>,
    #[serde(with = "state::pairs")]
    best: BTreeMap<(i64, i64), f64>,
    by_id: BTreeMap<u64, f64>,
}

#[test]
fn state_with_non_string_map_keys_round_trips_through_json_text() {
    let state = WithPairs {
        counts: HashMap::from([(vec![1, 2], 3), (vec![], 1)]),
        best: BTreeMap::from([((-1, 2), 0.1), ((3, 4), 1e-300)]),
        by_id: BTreeMap::from([(7, 0.30000000000000004)]),
    };
    let saved = save_state("mine", &state).unwrap();
    let text = serde_json::to_string(&saved).unwrap();
    let back: WithPairs = restore_state("mine", serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back, state);
}

#[test]
fn state_with_a_tuple_keyed_map_is_refused_with_the_fix() {
    #[derive(Serialize)]
    struct Plain {
        best: BTreeMap<(i64, i64), f64>,
    }
    let e = save_state(
        "mine",
        &Plain {
            best: BTreeMap::from([((1, 2), 0.5)]),
        },
    )
    .unwrap_err();
    assert!(
        e.starts_with("mine cannot save its state") && e.contains("kit::state::pairs"),
        "{e}"
    );
    let e = restore_state::<WithPairs>("mine", json!({"counts": 3})).unwrap_err();
    assert!(e.starts_with("mine cannot read its saved state"), "{e}");
}

#[test]
fn check_space_names_the_choice_nothing_can_be_drawn_from() {
    let ok = space(vec![
        choice(
            "op",
            ChoiceKind::Categorical {
                options: vec!["a".into()],
            },
        ),
        choice(
            "lr",
            ChoiceKind::Float {
                low: 1e-3,
                high: 1.0,
                log: true,
            },
        ),
    ]);
    assert!(check_space("mine", &ok).is_ok());
    for (kind, problem) in [
        (
            ChoiceKind::Categorical { options: vec![] },
            "has no options",
        ),
        (ChoiceKind::Integer { low: 2, high: 1 }, "has low > high"),
        (
            ChoiceKind::Float {
                low: 0.0,
                high: f64::INFINITY,
                log: false,
            },
            "not finite",
        ),
        (
            ChoiceKind::Float {
                low: 0.0,
                high: 1.0,
                log: true,
            },
            "log-scaled",
        ),
    ] {
        let e = check_space("mine", &space(vec![choice("bad", kind)])).unwrap_err();
        assert!(
            e.starts_with("mine: choice `bad` ") && e.contains(problem),
            "{e}"
        );
    }
}

#[test]
fn samples_and_mutations_stay_in_range_and_mutations_change_the_value() {
    let sp = space(vec![
        choice(
            "op",
            ChoiceKind::Categorical {
                options: vec!["a".into(), "b".into(), "c".into()],
            },
        ),
        choice("n", ChoiceKind::Integer { low: -2, high: 2 }),
        choice(
            "x",
            ChoiceKind::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        ),
        choice(
            "lr",
            ChoiceKind::Float {
                low: 1e-4,
                high: 1e-1,
                log: true,
            },
        ),
        choice("fixed", ChoiceKind::Integer { low: 5, high: 5 }),
    ]);
    assert_eq!(mutable_choices(&sp), vec![0, 1, 2, 3]);
    let mut rng = seeded(3);
    for _ in 0..200 {
        let point = sample_point(&sp, &mut rng);
        sp.check(&point).unwrap();
        for i in mutable_choices(&sp) {
            let kind = &sp.choices[i].kind;
            let v = mutate_value(kind, point[i], 0.1, &mut rng);
            assert_ne!(v, point[i]);
            kind.check(v).unwrap();
        }
    }
}

#[test]
fn neighbours_are_one_step_away_and_json_exact() {
    let cat = ChoiceKind::Categorical {
        options: vec!["a".into(), "b".into(), "c".into()],
    };
    assert_eq!(neighbour_values(&cat, 1.0, 0.1), vec![0.0, 2.0]);
    let int = ChoiceKind::Integer { low: 0, high: 3 };
    assert_eq!(neighbour_values(&int, 0.0, 0.1), vec![1.0]);
    let float = ChoiceKind::Float {
        low: 0.0,
        high: 1.0,
        log: false,
    };
    assert_eq!(neighbour_values(&float, 1.0, 0.3), vec![0.7]);
    for v in neighbour_values(
        &ChoiceKind::Float {
            low: 1e-4,
            high: 1e-1,
            log: true,
        },
        3e-3,
        0.1,
    ) {
        assert_eq!(
            v,
            serde_json::from_str::<f64>(&serde_json::to_string(&v).unwrap()).unwrap()
        );
    }
}

#[test]
fn float_helpers_are_exact() {
    let values = [0.1, -0.0, f64::INFINITY, 1e-300];
    assert_eq!(from_bits(&bits(&values)), values);
    assert_eq!(json_exact(0.1 + 0.2, 0.0, 1.0), 0.3);
    assert_eq!(json_exact(2.0, 0.0, 1.0), 1.0);
    let sp = space(vec![
        choice("n", ChoiceKind::Integer { low: 0, high: 9 }),
        choice(
            "x",
            ChoiceKind::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        ),
    ]);
    assert_eq!(
        json_exact_point(&sp, vec![3.0, 1.0 / 3.0]),
        vec![3.0, 0.333333333333]
    );
    let kind = ChoiceKind::Float {
        low: -1.0,
        high: 1.0,
        log: false,
    };
    assert_eq!(
        float::decode_value(&kind, float::encode_value(&kind, -0.0)).to_bits(),
        (-0.0f64).to_bits()
    );
}
