//! A test harness for the [`Strategy`] contract. A strategy crate runs it from its tests:
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     nas_plugin::conformance::check::<MyStrategy>(serde_json::json!({"population": 8}));
//! }
//! ```
//!
//! On each of [`sample_spaces`] (categorical, integer, float, log-scaled float, mixed) it
//! drives the strategy through a small simulated study, as the study engine would (one
//! observation per `tell`, in proposal order; complete, failed, pruned and infeasible
//! results; cached duplicates told again; trials of another strategy), and checks:
//! - `ask(n)` returns at most `n` proposals, each with one in-range value per choice;
//! - `tell` accepts every observation above;
//! - `save`, through JSON text, then `restore` into a fresh instance continues with exactly
//!   the proposals the saved instance makes (and those of an uninterrupted run);
//! - two instances with the same seed propose the same sequence, and (unless
//!   [`Harness::ignores_seed`]) another seed proposes a different one on some space.
//!
//! It panics with a message naming the space, the round and what went wrong.
//! [`check_library`] checks the same contract through the plugin's built dynamic library
//! (name, kind, config errors across the ABI, save and restore).

use rand::SeedableRng;

use crate::kit;
use crate::messages::{
    Choice, ChoiceKind, Direction, Metrics, Objective, Observation, Proposal, SpaceDescriptor,
    StrategyContext, TrialState,
};
use crate::traits::Strategy;

/// The name the simulated study gives the strategy under test (`Observation::proposer`).
pub const PROPOSER: &str = "under-test";

/// Runs every check with the strategy's `options` (its TOML table as JSON) on every sample
/// space. Panics on the first failure.
pub fn check<S: Strategy>(options: serde_json::Value) {
    Harness::new(options).run::<S>();
}

/// The checks, with settings for strategies that need them.
#[derive(Clone, Debug)]
pub struct Harness {
    options: serde_json::Value,
    spaces: Vec<(String, SpaceDescriptor)>,
    seed_sensitive: bool,
    rounds: usize,
}

impl Harness {
    /// All sample spaces, 24 rounds each.
    pub fn new(options: serde_json::Value) -> Harness {
        Harness {
            options,
            spaces: sample_spaces(),
            seed_sensitive: true,
            rounds: 24,
        }
    }

    /// Only these spaces, for a strategy that refuses some kinds of choice.
    pub fn spaces(mut self, spaces: Vec<(String, SpaceDescriptor)>) -> Harness {
        self.spaces = spaces;
        self
    }

    /// For a deterministic strategy: do not require another seed to change the proposals.
    pub fn ignores_seed(mut self) -> Harness {
        self.seed_sensitive = false;
        self
    }

    /// Rounds of ask and tell per space (at least 2).
    pub fn rounds(mut self, rounds: usize) -> Harness {
        self.rounds = rounds.max(2);
        self
    }

    /// Runs the checks; panics on the first failure.
    pub fn run<S: Strategy>(&self) {
        let strategy = std::any::type_name::<S>();
        let mut seed_changed_something = false;
        for (name, space) in &self.spaces {
            let at =
                |what: &str| format!("conformance of `{strategy}` on the {name} space: {what}");
            let create = |seed: u64| -> S {
                S::new(context(space, seed, &self.options))
                    .unwrap_or_else(|e| panic!("{}", at(&format!("`new` failed: {e}"))))
            };

            let mut first = create(1);
            let none = first
                .ask(0)
                .unwrap_or_else(|e| panic!("{}", at(&format!("ask(0): {e}"))));
            assert!(none.is_empty(), "{}", at("ask(0) returned proposals"));
            let reference = Study::new(space).drive(&mut first, self.rounds, &at);

            let mut again = create(1);
            let repeated = Study::new(space).drive(&mut again, self.rounds, &at);
            assert_same(
                &reference,
                &repeated,
                0,
                &at,
                "a second instance with the same seed",
            );

            // Save halfway, restore into a fresh instance, and continue both.
            let half = self.rounds / 2;
            let mut saved = create(1);
            let mut study = Study::new(space);
            study.drive(&mut saved, half, &at);
            let state = saved
                .save()
                .unwrap_or_else(|e| panic!("{}", at(&format!("save: {e}"))));
            // The study stores the state as JSON text.
            let text = serde_json::to_string(&state)
                .unwrap_or_else(|e| panic!("{}", at(&format!("saved state is not JSON: {e}"))));
            let state: serde_json::Value = serde_json::from_str(&text).expect("JSON reads back");
            let mut restored = create(1);
            restored
                .restore(state)
                .unwrap_or_else(|e| panic!("{}", at(&format!("restore: {e}"))));
            let mut study_copy = study.clone();
            let continued = study.drive(&mut saved, self.rounds - half, &at);
            let resumed = study_copy.drive(&mut restored, self.rounds - half, &at);
            assert_same(
                &reference[half..],
                &continued,
                half,
                &at,
                "the instance after `save`",
            );
            assert_same(
                &continued,
                &resumed,
                half,
                &at,
                "a fresh instance after `restore`",
            );

            let mut other = create(2);
            let other_seed = Study::new(space).drive(&mut other, self.rounds, &at);
            seed_changed_something |= other_seed != reference;
        }
        if self.seed_sensitive && !self.spaces.is_empty() {
            assert!(
                seed_changed_something,
                "conformance of `{strategy}`: seeds 1 and 2 gave the same proposals on every \
                 space; a strategy that ignores its seed is checked with `Harness::ignores_seed()`"
            );
        }
    }
}

/// A categorical choice with options `op0`, `op1`, ...
pub fn categorical(name: &str, n: usize) -> Choice {
    Choice {
        name: name.into(),
        kind: ChoiceKind::Categorical {
            options: (0..n).map(|i| format!("op{i}")).collect(),
        },
    }
}

/// An integer choice in `low..=high`.
pub fn integer(name: &str, low: i64, high: i64) -> Choice {
    Choice {
        name: name.into(),
        kind: ChoiceKind::Integer { low, high },
    }
}

/// A float choice in `[low, high]`, log-scaled when `log`.
pub fn float(name: &str, low: f64, high: f64, log: bool) -> Choice {
    Choice {
        name: name.into(),
        kind: ChoiceKind::Float { low, high, log },
    }
}

/// A space of kind `test` holding `choices`.
pub fn test_space(choices: Vec<Choice>) -> SpaceDescriptor {
    SpaceDescriptor {
        kind: "test".into(),
        choices,
    }
}

/// `n` categorical choices `c0`, `c1`, ... of `k` options each.
pub fn categorical_space(n: usize, k: usize) -> SpaceDescriptor {
    test_space((0..n).map(|i| categorical(&format!("c{i}"), k)).collect())
}

/// One choice of every kind: `op` (5 options), `depth` (integer -2..=3), `dropout` (float
/// 0..0.5) and `lr` (log float 1e-4..1e-1); strategies' tests add their own edge cases.
pub fn mixed_choices() -> Vec<Choice> {
    vec![
        categorical("op", 5),
        integer("depth", -2, 3),
        float("dropout", 0.0, 0.5, false),
        float("lr", 1e-4, 1e-1, true),
    ]
}

/// Named spaces covering every kind of choice, including choices with a single value.
pub fn sample_spaces() -> Vec<(String, SpaceDescriptor)> {
    let choice = |name: &str, kind: ChoiceKind| Choice {
        name: name.into(),
        kind,
    };
    let space = |kind: &str, choices: Vec<Choice>| SpaceDescriptor {
        kind: kind.into(),
        choices,
    };
    vec![
        (
            "categorical".into(),
            space(
                "cell",
                (0..6)
                    .map(|i| categorical(&format!("edge_{i}"), 5))
                    .collect(),
            ),
        ),
        (
            "integer".into(),
            space(
                "chain",
                vec![
                    choice("depth", ChoiceKind::Integer { low: 1, high: 8 }),
                    choice("width", ChoiceKind::Integer { low: -3, high: 3 }),
                    choice("fixed", ChoiceKind::Integer { low: 2, high: 2 }),
                ],
            ),
        ),
        (
            "float".into(),
            space(
                "chain",
                vec![
                    float("dropout", 0.0, 0.5, false),
                    float("shift", -5.0, 5.0, false),
                ],
            ),
        ),
        (
            "log float".into(),
            space(
                "chain",
                vec![
                    float("lr", 1e-4, 1e-1, true),
                    float("decay", 1.0, 1000.0, true),
                ],
            ),
        ),
        (
            "mixed".into(),
            space(
                "chain",
                vec![
                    categorical("op", 3),
                    categorical("only", 1),
                    choice("layers", ChoiceKind::Integer { low: 1, high: 4 }),
                    float("lr", 1e-3, 1.0, true),
                ],
            ),
        ),
    ]
}

fn context(space: &SpaceDescriptor, seed: u64, options: &serde_json::Value) -> StrategyContext {
    StrategyContext {
        space: space.clone(),
        objectives: vec![Objective {
            metric: "loss".into(),
            direction: Direction::Minimize,
        }],
        seed,
        config: options.clone(),
    }
}

/// A deterministic simulated study: its answers depend only on what it was asked.
#[derive(Clone)]
struct Study {
    space: SpaceDescriptor,
    next_id: u64,
    round: usize,
    /// Draws the trials of "another strategy".
    rng: kit::Rng,
}

impl Study {
    fn new(space: &SpaceDescriptor) -> Study {
        Study {
            space: space.clone(),
            next_id: 1,
            round: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed),
        }
    }

    /// A smooth, finite loss, so model-based strategies have something to learn.
    fn loss(&self, values: &[f64]) -> f64 {
        (self.space.choices.iter().zip(values).enumerate())
            .map(|(i, (c, &v))| {
                let x = match &c.kind {
                    ChoiceKind::Float { log: true, .. } => v.ln(),
                    _ => v,
                };
                (x * 1.7 + i as f64).sin()
            })
            .sum()
    }

    fn observation(
        &mut self,
        values: Vec<f64>,
        fidelity: Option<f64>,
        proposer: &str,
    ) -> Observation {
        let trial_id = self.next_id;
        self.next_id += 1;
        let state = match trial_id % 8 {
            5 => TrialState::Failed,
            6 => TrialState::Pruned,
            7 => TrialState::Infeasible,
            _ => TrialState::Complete,
        };
        let (losses, metrics) = if state == TrialState::Complete {
            let loss = self.loss(&values);
            (vec![loss], Metrics::from([("loss".to_string(), loss)]))
        } else {
            (Vec::new(), Metrics::new())
        };
        Observation {
            trial_id,
            values,
            fidelity,
            state,
            losses,
            metrics,
            proposer: proposer.into(),
        }
    }

    /// `rounds` rounds of ask and tell; returns every round's proposals.
    fn drive<S: Strategy>(
        &mut self,
        s: &mut S,
        rounds: usize,
        at: &dyn Fn(&str) -> String,
    ) -> Vec<Vec<Proposal>> {
        let mut asked = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let round = self.round;
            self.round += 1;
            let n = 1 + round % 3;
            let proposals = s
                .ask(n)
                .unwrap_or_else(|e| panic!("{}", at(&format!("round {round}: ask({n}): {e}"))));
            assert!(
                proposals.len() <= n,
                "{}",
                at(&format!(
                    "round {round}: ask({n}) returned {} proposals",
                    proposals.len()
                ))
            );
            for p in &proposals {
                if let Err(e) = self.space.check(&p.values) {
                    panic!(
                        "{}",
                        at(&format!(
                            "round {round}: invalid proposal {:?}: {e}",
                            p.values
                        ))
                    );
                }
            }
            let mut told = Vec::new();
            for p in &proposals {
                let o = self.observation(p.values.clone(), p.fidelity, PROPOSER);
                self.tell(s, &o, round, at);
                told.push(o);
            }
            // A cached duplicate: the same trial told again to the strategy that proposed it.
            if round % 3 == 2
                && let Some(first) = told.first()
            {
                self.tell(s, &first.clone(), round, at);
            }
            // A trial of another strategy of the study.
            if round % 4 == 3 {
                let values = kit::sample_point(&self.space, &mut self.rng);
                let o = self.observation(values, None, "another-strategy");
                self.tell(s, &o, round, at);
            }
            asked.push(proposals);
        }
        asked
    }

    fn tell<S: Strategy>(
        &self,
        s: &mut S,
        o: &Observation,
        round: usize,
        at: &dyn Fn(&str) -> String,
    ) {
        if let Err(e) = s.tell(std::slice::from_ref(o)) {
            panic!(
                "{}",
                at(&format!(
                    "round {round}: tell of trial {} ({}, proposer `{}`) failed: {e}",
                    o.trial_id,
                    o.state.as_str(),
                    o.proposer
                ))
            );
        }
    }
}

/// Proposals compared bit for bit (0.0 and -0.0, or two NaNs, are told apart correctly).
fn assert_same(
    expected: &[Vec<Proposal>],
    found: &[Vec<Proposal>],
    first_round: usize,
    at: &dyn Fn(&str) -> String,
    who: &str,
) {
    let key = |p: &Proposal| (kit::bits(&p.values), p.fidelity.map(f64::to_bits));
    for (i, (e, f)) in expected.iter().zip(found).enumerate() {
        let (ek, fk): (Vec<_>, Vec<_>) = (e.iter().map(key).collect(), f.iter().map(key).collect());
        assert!(
            ek == fk,
            "{}",
            at(&format!(
                "round {}: {who} proposed {:?}, expected {:?}",
                first_round + i,
                f.iter().map(|p| &p.values).collect::<Vec<_>>(),
                e.iter().map(|p| &p.values).collect::<Vec<_>>()
            ))
        );
    }
}

/// The contract through the plugin's dynamic library, as the host loads it: the library of
/// `package` (see [`crate::host::built_plugin`]) declares the strategy `name`; an unknown
/// option in the config comes back across the ABI as an error that names it and lists
/// `known_option` among the valid ones; and an instance created with `config` and driven for a
/// few rounds, saved and restored into a fresh instance, makes the same proposals and saves
/// the same state as the original from then on.
pub fn check_library(package: &str, name: &str, config: serde_json::Value, known_option: &str) {
    use crate::abi::PluginKind;
    use crate::host::{PluginLibrary, built_plugin};

    let lib = PluginLibrary::open(&built_plugin(package)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((lib.name.as_str(), lib.kind), (name, PluginKind::Strategy));
    let space = library_space();
    let e = lib
        .create_strategy(&loss_context(
            space.clone(),
            3,
            serde_json::json!({"no_such_option": 1}),
        ))
        .err()
        .expect("unknown option accepted")
        .to_string();
    assert!(
        e.contains("`no_such_option`") && e.contains(&format!("`{known_option}`")),
        "{e}"
    );

    let create = || {
        lib.create_strategy(&loss_context(space.clone(), 3, config.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // A loss of every value, so that model-based strategies have something to learn.
    let told = |first_id: u64, proposals: &[Proposal]| -> Vec<Observation> {
        (proposals.iter().enumerate())
            .map(|(i, p)| {
                let v = &p.values;
                let loss = v[0] + (v[1] - 3.0).abs() + v[2].ln().abs();
                observation(
                    first_id + i as u64,
                    v.clone(),
                    TrialState::Complete,
                    vec![loss],
                )
            })
            .collect()
    };
    let mut original = create();
    let mut id = 0;
    for _ in 0..5 {
        let proposals = original.ask(2).unwrap();
        assert!(!proposals.is_empty());
        original.tell(&told(id, &proposals)).unwrap();
        id += proposals.len() as u64;
    }
    let mut restored = create();
    restored.restore(&original.save().unwrap()).unwrap();
    for _ in 0..4 {
        let (a, b) = (original.ask(2).unwrap(), restored.ask(2).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, b, "restored instance diverged");
        original.tell(&told(id, &a)).unwrap();
        restored.tell(&told(id, &b)).unwrap();
        id += a.len() as u64;
    }
    assert_eq!(original.save().unwrap(), restored.save().unwrap());
}

/// A categorical, an integer and a log-scaled float choice.
fn library_space() -> SpaceDescriptor {
    test_space(vec![
        Choice {
            name: "op".into(),
            kind: ChoiceKind::Categorical {
                options: vec!["a".into(), "b".into(), "c".into()],
            },
        },
        integer("depth", 1, 4),
        float("lr", 1e-4, 1e-1, true),
    ])
}

/// A strategy's context for unit tests: `space`, one objective `loss` to minimize, `seed`
/// and the strategy's `config`.
pub fn loss_context(
    space: SpaceDescriptor,
    seed: u64,
    config: serde_json::Value,
) -> StrategyContext {
    StrategyContext {
        space,
        objectives: vec![Objective {
            metric: "loss".into(),
            direction: Direction::Minimize,
        }],
        seed,
        config,
    }
}

/// A finished trial as the engine tells it, with no metrics, proposed by another strategy.
pub fn observation(
    trial_id: u64,
    values: Vec<f64>,
    state: TrialState,
    losses: Vec<f64>,
) -> Observation {
    Observation {
        trial_id,
        values,
        fidelity: None,
        state,
        losses,
        metrics: Metrics::new(),
        proposer: "someone-else".into(),
    }
}

/// A complete trial of [`loss_context`]'s objective.
pub fn complete(trial_id: u64, values: Vec<f64>, loss: f64) -> Observation {
    observation(trial_id, values, TrialState::Complete, vec![loss])
}

/// Drives `s` as a study would for `steps` rounds of `ask(2)` and one `tell` of both
/// results: trial ids count from `first_trial`, a trial with `id % 7 == 3` fails, the others
/// complete with `loss(values)`. Returns every proposal's values as bits, so two runs
/// compare exactly.
pub fn drive<S: Strategy>(
    s: &mut S,
    first_trial: u64,
    steps: u64,
    loss: impl Fn(&[f64]) -> f64,
) -> Vec<Vec<u64>> {
    let mut seen = vec![];
    for step in 0..steps {
        let proposals = s.ask(2).expect("ask");
        let mut told = vec![];
        for (k, p) in proposals.into_iter().enumerate() {
            seen.push(p.values.iter().map(|v| v.to_bits()).collect());
            let id = first_trial + 2 * step + k as u64;
            if id % 7 == 3 {
                told.push(observation(id, p.values, TrialState::Failed, vec![]));
            } else {
                let l = loss(&p.values);
                told.push(complete(id, p.values, l));
            }
        }
        s.tell(&told).expect("tell");
    }
    seen
}

/// Drives a strategy made from `ctx` for `split` rounds of [`drive`], saves it (through JSON
/// text, as a checkpoint on disk), restores the state into a fresh instance, drives both
/// `rounds` more, and asserts that they propose the same and end in the same state. `case`
/// names the case in a failure.
pub fn assert_resumes_exactly<S: Strategy>(
    ctx: impl Fn() -> StrategyContext,
    split: u64,
    rounds: u64,
    loss: impl Fn(&[f64]) -> f64 + Copy,
    case: &str,
) {
    let mut uninterrupted = S::new(ctx()).expect("new");
    drive(&mut uninterrupted, 0, split, loss);
    let saved = serde_json::to_string(&uninterrupted.save().expect("save")).expect("JSON");
    let mut resumed = S::new(ctx()).expect("new");
    resumed
        .restore(serde_json::from_str(&saved).expect("JSON"))
        .expect("restore");
    let a = drive(&mut uninterrupted, 2 * split, rounds, loss);
    let b = drive(&mut resumed, 2 * split, rounds, loss);
    assert_eq!(
        a, b,
        "{case}: saved after {split} rounds, then proposed otherwise"
    );
    assert_eq!(
        uninterrupted.save().expect("save"),
        resumed.save().expect("save"),
        "{case}: saved after {split} rounds, then ended in another state"
    );
}
