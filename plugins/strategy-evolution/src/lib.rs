//! Regularized (aging) evolution (Real et al. 2019, "Regularized Evolution for Image Classifier
//! Architecture Search").
//!
//! The population is a FIFO queue of the most recent `population` complete trials of the study,
//! whoever proposed them. Until it is full, proposals are uniform random. Afterwards every
//! proposal is a tournament: `sample` distinct members drawn uniformly, the one with the lowest
//! first loss becomes the parent, and exactly one of its choices is changed. Members leave by
//! age, not by fitness; that is the regularization. A mutated child names its parent's trial
//! (`Proposal::parent`), so an evaluator may start it from the parent's trained weights.
//!
//! Options (the strategy's TOML table): `population` (default 20), `sample` (default 5).

use std::collections::VecDeque;

use nas_plugin::kit::{self, options, rand::Rng};
use nas_plugin::{
    Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext, TrialState,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Standard deviation of a float mutation as a fraction of the choice's range (of its
/// logarithm for log-scaled choices).
const FLOAT_STEP: f64 = 0.1;

/// The strategy's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Number of most recent complete trials kept as the population.
    #[serde(deserialize_with = "options::positive_int")]
    pub population: usize,
    /// Tournament size.
    #[serde(deserialize_with = "options::positive_int")]
    pub sample: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            population: 20,
            sample: 5,
        }
    }
}

#[derive(Clone, Debug)]
struct Member {
    trial_id: u64,
    values: Vec<f64>,
    /// Every objective, lower is better (the first one alone ranks single-objective studies).
    losses: Vec<f64>,
}

/// The saved state. Floats are stored as bit patterns because JSON float parsing is not
/// guaranteed to round-trip exactly, and a restored search must continue bit for bit.
#[derive(Serialize, Deserialize)]
struct SavedState {
    rng: kit::Rng,
    population: Vec<SavedMember>,
}

#[derive(Serialize, Deserialize)]
struct SavedMember {
    trial_id: u64,
    values: Vec<u64>,
    losses: Vec<u64>,
}

/// Tournaments tried per proposal to find a child that is not already in the population.
const MUTATION_ATTEMPTS: usize = 8;

pub struct Evolution {
    space: SpaceDescriptor,
    config: Config,
    /// Indices of the choices that have more than one value.
    mutable: Vec<usize>,
    rng: kit::Rng,
    /// Oldest first.
    population: VecDeque<Member>,
    /// Several objectives: tournaments rank by Pareto front, then crowding (NSGA-II).
    multi_objective: bool,
}

impl Evolution {
    pub fn config(&self) -> Config {
        self.config
    }

    /// The next candidate and, for a mutated child, the trial id of its parent.
    fn propose(&mut self) -> (Vec<f64>, Option<u64>) {
        if self.population.len() < self.config.population {
            return (kit::sample_point(&self.space, &mut self.rng), None);
        }
        // A child equal to a living member would only re-enter the population as a copy
        // (the study answers it from its cache), so a few fresh tournaments are tried first.
        let mut child = Vec::new();
        let mut parent_id = None;
        for _ in 0..MUTATION_ATTEMPTS {
            let parent = self.tournament();
            child = self.population[parent].values.clone();
            parent_id = None;
            // A space with a single candidate has nothing to mutate.
            if !self.mutable.is_empty() {
                let i = self.mutable[self.rng.random_range(0..self.mutable.len())];
                let kind = &self.space.choices[i].kind;
                child[i] = kit::mutate_value(kind, child[i], FLOAT_STEP, &mut self.rng);
                parent_id = Some(self.population[parent].trial_id);
            }
            if !self.population.iter().any(|m| m.values == child) {
                break;
            }
        }
        (child, parent_id)
    }

    /// Index of the best of `sample` distinct members drawn uniformly; ties go to the first
    /// drawn, so they are broken at random.
    fn tournament(&mut self) -> usize {
        let drawn =
            kit::rand::seq::index::sample(&mut self.rng, self.population.len(), self.config.sample);
        if self.multi_objective {
            let losses: Vec<&[f64]> = self
                .population
                .iter()
                .map(|m| m.losses.as_slice())
                .collect();
            let (rank, crowding) = pareto_rank_and_crowding(&losses);
            return drawn
                .iter()
                .min_by(|&a, &b| {
                    rank[a]
                        .cmp(&rank[b])
                        .then(crowding[b].total_cmp(&crowding[a]))
                })
                .expect("sample is at least 1");
        }
        drawn
            .iter()
            .min_by(|&a, &b| self.population[a].losses[0].total_cmp(&self.population[b].losses[0]))
            .expect("sample is at least 1")
    }
}

/// Non-dominated sorting and crowding distance (Deb et al. 2002) over `losses` (lower is
/// better): front index per member (0 = Pareto front) and its crowding distance in that front.
// `k` indexes the objective inside every member's loss vector, not one slice.
#[allow(clippy::needless_range_loop)]
pub fn pareto_rank_and_crowding(losses: &[&[f64]]) -> (Vec<usize>, Vec<f64>) {
    let n = losses.len();
    let dominates = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
    };
    let mut rank = vec![usize::MAX; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut front = 0;
    while !remaining.is_empty() {
        let current: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| !remaining.iter().any(|&j| dominates(losses[j], losses[i])))
            .collect();
        for &i in &current {
            rank[i] = front;
        }
        remaining.retain(|i| rank[*i] == usize::MAX);
        front += 1;
    }
    let mut crowding = vec![0.0; n];
    let objectives = losses.first().map_or(0, |l| l.len());
    for f in 0..front {
        let members: Vec<usize> = (0..n).filter(|&i| rank[i] == f).collect();
        for k in 0..objectives {
            let mut sorted = members.clone();
            sorted.sort_by(|&a, &b| losses[a][k].total_cmp(&losses[b][k]));
            let (lo, hi) = (losses[sorted[0]][k], losses[sorted[sorted.len() - 1]][k]);
            crowding[sorted[0]] = f64::INFINITY;
            crowding[sorted[sorted.len() - 1]] = f64::INFINITY;
            if hi > lo {
                for w in 1..sorted.len().saturating_sub(1) {
                    let gap = losses[sorted[w + 1]][k] - losses[sorted[w - 1]][k];
                    crowding[sorted[w]] += gap / (hi - lo);
                }
            }
        }
    }
    (rank, crowding)
}

impl Strategy for Evolution {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options("evolution", &ctx.config)?;
        if config.sample > config.population {
            return Err(format!(
                "evolution option `sample` ({}) must not exceed `population` ({})",
                config.sample, config.population
            )
            .into());
        }
        kit::check_space("evolution", &ctx.space)?;
        Ok(Evolution {
            mutable: kit::mutable_choices(&ctx.space),
            space: ctx.space,
            config,
            rng: kit::seeded(ctx.seed),
            population: VecDeque::with_capacity(config.population + 1),
            multi_objective: ctx.objectives.len() > 1,
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        Ok((0..n)
            .map(|_| {
                let (values, parent) = self.propose();
                Proposal {
                    values,
                    fidelity: None,
                    parent,
                }
            })
            .collect())
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        // Only complete trials with a comparable first loss can compete.
        let members: Vec<&Observation> = observations
            .iter()
            .filter(|o| o.state == TrialState::Complete)
            .filter(|o| !o.losses.is_empty() && o.losses.iter().all(|l| !l.is_nan()))
            .collect();
        // Check the whole batch first so an error leaves the population untouched.
        for o in &members {
            self.space
                .check(&o.values)
                .map_err(|e| format!("evolution was told about trial {}: {e}", o.trial_id))?;
        }
        for o in members {
            // A duplicate answered from the study's cache carries the original trial's id:
            // letting it in again would crowd the population with copies of one member.
            if self.population.iter().any(|m| m.trial_id == o.trial_id) {
                continue;
            }
            self.population.push_back(Member {
                trial_id: o.trial_id,
                values: o.values.clone(),
                losses: o.losses.clone(),
            });
            if self.population.len() > self.config.population {
                self.population.pop_front();
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        let state = SavedState {
            rng: self.rng.clone(),
            population: (self.population.iter())
                .map(|m| SavedMember {
                    trial_id: m.trial_id,
                    values: kit::bits(&m.values),
                    losses: kit::bits(&m.losses),
                })
                .collect(),
        };
        Ok(kit::save_state("evolution", &state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = kit::restore_state("evolution", state)?;
        let mut population = VecDeque::with_capacity(self.config.population + 1);
        for m in state.population {
            let values = kit::from_bits(&m.values);
            self.space.check(&values).map_err(|e| {
                format!(
                    "evolution's saved state does not fit the search space (trial {}): {e}",
                    m.trial_id
                )
            })?;
            population.push_back(Member {
                trial_id: m.trial_id,
                values,
                losses: kit::from_bits(&m.losses),
            });
        }
        // A smaller `population` than when saved keeps the most recent members.
        while population.len() > self.config.population {
            population.pop_front();
        }
        self.rng = state.rng;
        self.population = population;
        Ok(())
    }
}

nas_plugin::export_strategy!("evolution", Evolution);
