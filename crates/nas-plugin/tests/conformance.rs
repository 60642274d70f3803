//! The conformance harness passes a correct strategy and catches each kind of broken one.

use nas_plugin::conformance::{self, Harness};
use nas_plugin::kit::{self, rand::Rng};
use nas_plugin::{Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext};

/// Uniform random search, with what each broken variant gets wrong switched on.
struct Random<const FLAW: u8> {
    space: SpaceDescriptor,
    rng: kit::Rng,
    seed: u64,
}

const CORRECT: u8 = 0;
const FORGETS_ITS_STATE: u8 = 1;
const OUT_OF_RANGE: u8 = 2;
const TOO_MANY: u8 = 3;
const IGNORES_SEED: u8 = 4;
const REFUSES_FAILED: u8 = 5;

impl<const FLAW: u8> Strategy for Random<FLAW> {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        kit::check_space("random", &ctx.space)?;
        let seed = if FLAW == IGNORES_SEED { 0 } else { ctx.seed };
        Ok(Random {
            space: ctx.space,
            rng: kit::seeded(seed),
            seed,
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let n = if FLAW == TOO_MANY && n > 1 { n + 1 } else { n };
        Ok((0..n)
            .map(|_| {
                let mut values = kit::sample_point(&self.space, &mut self.rng);
                if FLAW == OUT_OF_RANGE && self.rng.random_bool(0.2) {
                    values[0] = 1e9;
                }
                Proposal {
                    values,
                    fidelity: None,
                    parent: None,
                }
            })
            .collect())
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        for o in observations {
            if FLAW == REFUSES_FAILED && o.state == nas_plugin::TrialState::Failed {
                return Err("cannot handle failures".into());
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state("random", &self.rng)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        if FLAW == FORGETS_ITS_STATE {
            self.rng = kit::seeded(self.seed);
        } else {
            self.rng = kit::restore_state("random", state)?;
        }
        Ok(())
    }
}

#[test]
fn a_correct_strategy_passes() {
    conformance::check::<Random<CORRECT>>(serde_json::Value::Null);
}

#[test]
#[should_panic(expected = "a fresh instance after `restore` proposed")]
fn a_restore_that_loses_the_state_is_caught() {
    conformance::check::<Random<FORGETS_ITS_STATE>>(serde_json::Value::Null);
}

#[test]
#[should_panic(expected = "invalid proposal")]
fn an_out_of_range_proposal_is_caught() {
    conformance::check::<Random<OUT_OF_RANGE>>(serde_json::Value::Null);
}

#[test]
#[should_panic(expected = "returned 3 proposals")]
fn too_many_proposals_are_caught() {
    conformance::check::<Random<TOO_MANY>>(serde_json::Value::Null);
}

#[test]
#[should_panic(expected = "tell of trial 5 (failed")]
fn a_tell_that_refuses_a_failed_trial_is_caught() {
    conformance::check::<Random<REFUSES_FAILED>>(serde_json::Value::Null);
}

#[test]
#[should_panic(expected = "seeds 1 and 2 gave the same proposals")]
fn a_strategy_that_ignores_its_seed_is_caught() {
    conformance::check::<Random<IGNORES_SEED>>(serde_json::Value::Null);
}

#[test]
fn a_deterministic_strategy_can_say_so() {
    Harness::new(serde_json::Value::Null)
        .ignores_seed()
        .rounds(6)
        .run::<Random<IGNORES_SEED>>();
}

#[test]
#[should_panic(expected = "`new` failed: random: choice `none` has no options")]
fn a_strategy_refusing_a_space_names_it() {
    let mut spaces = conformance::sample_spaces();
    spaces[0].1.choices[0].kind = nas_plugin::ChoiceKind::Categorical { options: vec![] };
    spaces[0].1.choices[0].name = "none".into();
    Harness::new(serde_json::Value::Null)
        .spaces(spaces)
        .run::<Random<CORRECT>>();
}
