//! `annealing`: simulated annealing over one-choice moves.
//!
//! The search walks from a current candidate. Each proposal is a neighbour of it: one choice
//! changed (another option, another integer, a Gaussian step of `step` times a float's range).
//! When the result of a move is told, the move is accepted if it is better, or else with
//! probability `exp(-(loss - current) / temperature)`; the temperature then cools by the
//! factor `cooling`. Below `min_temperature` the walk restarts from the best trial told so far
//! at the initial temperature. Trials of other strategies that beat the current candidate are
//! taken as the current candidate too. Until a trial completes, proposals are random.
//!
//! Options: `temperature` (initial, default 1.0), `cooling` (in (0, 1], default 0.95),
//! `min_temperature` (default 0.001), `step` (in (0, 1], default 0.2).

use std::collections::BTreeSet;

use nas_plugin::kit::{self, options, rand::Rng};
use nas_plugin::{
    Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext, TrialState,
};
use serde::{Deserialize, Serialize};

pub const NAME: &str = "annealing";

/// Draws per proposal to find a move not proposed before.
const MOVE_TRIES: usize = 16;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "options::positive_number")]
    pub temperature: f64,
    #[serde(deserialize_with = "options::fraction")]
    pub cooling: f64,
    #[serde(deserialize_with = "options::positive_number")]
    pub min_temperature: f64,
    #[serde(deserialize_with = "options::fraction")]
    pub step: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            temperature: 1.0,
            cooling: 0.95,
            min_temperature: 1e-3,
            step: 0.2,
        }
    }
}

/// A candidate with its first loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    values: Vec<f64>,
    loss: f64,
}

/// Everything that changes during the search.
#[derive(Serialize, Deserialize)]
struct State {
    rng: kit::Rng,
    current: Option<Point>,
    best: Option<Point>,
    temperature: f64,
    /// Moves proposed and not yet told (bit patterns), so results are matched to them.
    pending: BTreeSet<Vec<u64>>,
    /// Every candidate proposed or told.
    seen: BTreeSet<Vec<u64>>,
}

pub struct Annealing {
    space: SpaceDescriptor,
    config: Config,
    mutable: Vec<usize>,
    state: State,
}

impl Annealing {
    /// The current temperature.
    pub fn temperature(&self) -> f64 {
        self.state.temperature
    }

    /// One choice of `from` changed.
    fn step_from(&mut self, from: &[f64]) -> Vec<f64> {
        let mut values = from.to_vec();
        if !self.mutable.is_empty() {
            let rng = &mut self.state.rng;
            let i = self.mutable[rng.random_range(0..self.mutable.len())];
            let kind = &self.space.choices[i].kind;
            values[i] = kit::mutate_value(kind, values[i], self.config.step, rng);
        }
        kit::json_exact_point(&self.space, values)
    }

    fn propose(&mut self) -> Vec<f64> {
        let Some(current) = self.state.current.clone() else {
            return kit::sample_point(&self.space, &mut self.state.rng);
        };
        let mut values = self.step_from(&current.values);
        for _ in 1..MOVE_TRIES {
            if !self.state.seen.contains(&kit::bits(&values)) {
                break;
            }
            values = self.step_from(&current.values);
        }
        values
    }

    /// Metropolis acceptance of a told result, then cooling for the walk's own moves.
    fn consider(&mut self, point: Point, own: bool) {
        let s = &mut self.state;
        if s.best.as_ref().is_none_or(|b| point.loss < b.loss) {
            s.best = Some(point.clone());
        }
        let accept = match &s.current {
            None => true,
            Some(c) if point.loss <= c.loss => true,
            Some(_) if !own => false,
            Some(c) => s.rng.random::<f64>() < (-(point.loss - c.loss) / s.temperature).exp(),
        };
        if accept {
            s.current = Some(point);
        }
        if own {
            s.temperature *= self.config.cooling;
            if s.temperature < self.config.min_temperature {
                s.temperature = self.config.temperature;
                s.current = s.best.clone();
            }
        }
    }
}

impl Strategy for Annealing {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options(NAME, &ctx.config)?;
        kit::check_space(NAME, &ctx.space)?;
        Ok(Annealing {
            mutable: kit::mutable_choices(&ctx.space),
            space: ctx.space,
            state: State {
                rng: kit::seeded(ctx.seed),
                current: None,
                best: None,
                temperature: config.temperature,
                pending: BTreeSet::new(),
                seen: BTreeSet::new(),
            },
            config,
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let mut proposals = Vec::with_capacity(n);
        for _ in 0..n {
            let values = self.propose();
            self.state.pending.insert(kit::bits(&values));
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
            let key = kit::bits(&o.values);
            let own = self.state.pending.remove(&key);
            self.state.seen.insert(key);
            let loss = o.losses.first().copied().filter(|l| l.is_finite());
            match loss {
                Some(loss) if o.state == TrialState::Complete => {
                    let values = o.values.clone();
                    self.consider(Point { values, loss }, own);
                }
                // A failed move is rejected, and the walk cools all the same.
                _ if own => self.state.temperature *= self.config.cooling,
                _ => {}
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state(NAME, &self.state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        self.state = kit::restore_state(NAME, state)?;
        Ok(())
    }
}

nas_plugin::export_strategy!(NAME, Annealing);

#[cfg(test)]
mod tests {
    use super::*;
    use nas_plugin::conformance;
    use serde_json::json;

    fn strategy(config: serde_json::Value) -> Result<Annealing, PluginError> {
        Annealing::new(StrategyContext {
            space: conformance::sample_spaces().remove(0).1,
            objectives: vec![],
            seed: 3,
            config,
        })
    }

    fn told(trial_id: u64, values: &[f64], loss: f64, proposer: &str) -> Observation {
        Observation {
            trial_id,
            values: values.to_vec(),
            fidelity: None,
            state: TrialState::Complete,
            losses: vec![loss],
            metrics: Default::default(),
            proposer: proposer.into(),
        }
    }

    #[test]
    fn conforms_to_the_strategy_contract() {
        conformance::check::<Annealing>(json!(null));
        conformance::check::<Annealing>(json!({ "cooling": 0.5, "min_temperature": 0.1 }));
    }

    #[test]
    fn options_are_checked() {
        let e = strategy(json!({ "cool": 0.9 })).err().unwrap().to_string();
        assert!(e.contains("`cool`") && e.contains("`cooling`"), "{e}");
        let e = strategy(json!({ "cooling": 1.5 }))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`cooling` must be a number in (0, 1]"), "{e}");
    }

    #[test]
    fn moves_change_one_choice_and_the_walk_cools() {
        let mut s = strategy(json!({ "cooling": 0.5 })).unwrap();
        let start = s.ask(1).unwrap().remove(0).values;
        s.tell(&[told(1, &start, 1.0, NAME)]).unwrap();
        assert_eq!(s.temperature(), 0.5);
        let moved = s.ask(1).unwrap().remove(0).values;
        let changed = start.iter().zip(&moved).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 1, "{start:?} -> {moved:?}");
        // A better result of another strategy becomes the current point, without cooling.
        s.tell(&[told(2, &[0.0; 6], 0.0, "random")]).unwrap();
        assert_eq!(s.temperature(), 0.5);
        let next = s.ask(1).unwrap().remove(0).values;
        assert_eq!(next.iter().filter(|v| **v != 0.0).count(), 1, "{next:?}");
    }
}
