//! `best-neighbour`: greedy local search with epsilon exploration.
//!
//! The strategy remembers the best complete trial of the study (lowest first loss, whoever
//! proposed it). Each proposal is, with probability `epsilon`, a uniform random candidate;
//! otherwise a neighbour of the best one: one choice changed. Until a trial completes, every
//! proposal is random. Candidates it has already seen are not proposed again while unseen
//! neighbours are left.
//!
//! Options: `epsilon` (default 0.1), the probability of a random proposal.

use std::collections::BTreeSet;

use nas_plugin::kit::{self, options, rand::Rng};
use nas_plugin::{
    Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext, TrialState,
};
use serde::{Deserialize, Serialize};

pub const NAME: &str = "best-neighbour";

/// Tries at drawing an unseen neighbour before falling back to a random candidate.
const NEIGHBOUR_TRIES: usize = 32;
/// A float neighbour is a Gaussian step of this fraction of the choice's range.
const FLOAT_STEP: f64 = 0.1;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Probability of a uniform random proposal instead of a neighbour of the best.
    pub epsilon: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { epsilon: 0.1 }
    }
}

pub struct BestNeighbour {
    space: SpaceDescriptor,
    config: Config,
    /// The choices with more than one value: the ones a neighbour can change.
    mutable: Vec<usize>,
    state: State,
}

/// Everything that changes during the search: `save` returns it, `restore` reads it back.
#[derive(Serialize, Deserialize)]
struct State {
    rng: kit::Rng,
    /// The best complete trial so far: (first loss, values).
    best: Option<(f64, Vec<f64>)>,
    /// Every candidate proposed or told, as bit patterns. A BTreeSet, not a HashSet: its
    /// order (and so `save`) does not change from one process to the next.
    seen: BTreeSet<Vec<u64>>,
}

impl BestNeighbour {
    fn neighbour(&mut self, of: &[f64]) -> Option<Vec<f64>> {
        if self.mutable.is_empty() {
            return None;
        }
        let rng = &mut self.state.rng;
        let i = self.mutable[rng.random_range(0..self.mutable.len())];
        let mut values = of.to_vec();
        values[i] = kit::mutate_value(&self.space.choices[i].kind, of[i], FLOAT_STEP, rng);
        Some(values)
    }

    fn propose(&mut self) -> Vec<f64> {
        if let Some((_, best)) = self.state.best.clone()
            && !self.state.rng.random_bool(self.config.epsilon)
        {
            for _ in 0..NEIGHBOUR_TRIES {
                match self.neighbour(&best) {
                    Some(n) if !self.state.seen.contains(&kit::bits(&n)) => return n,
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        kit::sample_point(&self.space, &mut self.state.rng)
    }
}

impl Strategy for BestNeighbour {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options(NAME, &ctx.config)?;
        let epsilon_ok = (0.0..=1.0).contains(&config.epsilon);
        options::check(
            NAME,
            "epsilon",
            epsilon_ok,
            "between 0 and 1",
            config.epsilon,
        )?;
        kit::check_space(NAME, &ctx.space)?;
        Ok(BestNeighbour {
            mutable: kit::mutable_choices(&ctx.space),
            space: ctx.space,
            config,
            state: State {
                rng: kit::seeded(ctx.seed),
                best: None,
                seen: BTreeSet::new(),
            },
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let mut proposals = Vec::with_capacity(n);
        for _ in 0..n {
            let values = self.propose();
            self.state.seen.insert(kit::bits(&values));
            proposals.push(Proposal {
                values,
                fidelity: None,
                parent: None,
            });
        }
        Ok(proposals)
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        for o in observations {
            self.state.seen.insert(kit::bits(&o.values));
            if o.state != TrialState::Complete {
                continue; // failed, pruned or infeasible: no losses
            }
            // Lower is better; the first objective decides.
            let Some(&loss) = o.losses.first().filter(|l| l.is_finite()) else {
                continue;
            };
            if self.state.best.as_ref().is_none_or(|(b, _)| loss < *b) {
                self.state.best = Some((loss, o.values.clone()));
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state(NAME, &self.state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: State = kit::restore_state(NAME, state)?;
        if let Some((_, values)) = &state.best {
            self.space
                .check(values)
                .map_err(|e| format!("{NAME}: the saved best does not fit the space: {e}"))?;
        }
        self.state = state;
        Ok(())
    }
}

nas_plugin::export_strategy!(NAME, BestNeighbour);

#[cfg(test)]
mod tests {
    use super::*;
    use nas_plugin::conformance;
    use serde_json::json;

    fn strategy(config: serde_json::Value) -> Result<BestNeighbour, PluginError> {
        BestNeighbour::new(StrategyContext {
            space: conformance::sample_spaces().remove(0).1, // 6 choices of 5 options
            objectives: vec![],
            seed: 1,
            config,
        })
    }

    fn complete(trial_id: u64, values: &[f64], loss: f64) -> Observation {
        Observation {
            trial_id,
            values: values.to_vec(),
            fidelity: None,
            state: TrialState::Complete,
            losses: vec![loss],
            metrics: Default::default(),
            proposer: "random".into(),
        }
    }

    /// Valid proposals, every kind of result accepted, exact save/restore, seeded draws.
    #[test]
    fn conforms_to_the_strategy_contract() {
        conformance::check::<BestNeighbour>(json!({ "epsilon": 0.3 }));
    }

    #[test]
    fn options_are_checked() {
        // TOML `epsilon = 1` arrives as a JSON integer.
        assert!(strategy(json!({ "epsilon": 1 })).is_ok());
        for (bad, says) in [
            (
                json!({ "epsilom": 0.2 }),
                "no option `epsilom`; accepted options: `epsilon`",
            ),
            (
                json!({ "epsilon": 2.0 }),
                "`epsilon` must be between 0 and 1, not `2`",
            ),
            (json!({ "epsilon": "high" }), "`epsilon` must be a number"),
        ] {
            let e = strategy(bad).err().unwrap().to_string();
            assert!(e.starts_with(NAME) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn without_exploration_it_proposes_neighbours_of_the_best() {
        let mut s = strategy(json!({ "epsilon": 0.0 })).unwrap();
        let best = [2.0, 1.0, 0.0, 3.0, 4.0, 0.0];
        s.tell(&[complete(1, &[0.0; 6], 5.0), complete(2, &best, 1.0)])
            .unwrap();
        for p in s.ask(5).unwrap() {
            let changed = p.values.iter().zip(best).filter(|(a, b)| **a != *b);
            assert_eq!(changed.count(), 1, "{:?}", p.values);
        }
    }
}
