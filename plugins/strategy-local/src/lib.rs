//! Local search: first-improvement hill climbing over the one-choice neighbourhood, with random
//! restarts.
//!
//! The first climb starts from the best trial told so far (any strategy's), or from a uniform
//! random point when there is none yet. The neighbours of the incumbent (every point that
//! changes exactly one choice: another option, an integer one up or down, a float one `step` of
//! its range up or down, in log space for log-scaled floats) are proposed in a seeded random
//! order. The first told neighbour with a lower first loss becomes the incumbent. Points told
//! by other strategies count as evaluated, so they are never proposed again, and a better
//! neighbour found by someone else is a move too. When every neighbour of the incumbent has
//! been evaluated without improvement the climb is stuck and restarts from a new uniform
//! random point, at most `restarts` times. Failed, pruned and infeasible trials never improve.
//!
//! A neighbour names the incumbent's trial as its parent (`Proposal::parent`), so an evaluator
//! may start it from the incumbent's trained weights.
//!
//! Proposed floats are rounded to 12 significant digits so they cross the JSON ABI exactly
//! and told results can be matched to proposals bit for bit.
//!
//! Several proposals can be in flight at once (neighbours of the same incumbent). When only
//! neighbours still in flight remain, `ask` returns nothing until their results arrive; a
//! proposal with no result after `STALE_AFTER` further results is assumed lost (e.g. merged
//! by the study into an equivalent running trial) and may be proposed again.
//!
//! Options (the strategy's TOML table):
//! - `restarts` (default unlimited): restarts after getting stuck; then `ask` returns nothing.
//! - `step` (default 0.1): float step as a fraction of the choice's range, in (0, 1].

use std::collections::HashMap;

use nas_plugin::kit::float::{decode_value as decode, encode_value as encode};
use nas_plugin::kit::rand::seq::SliceRandom;
use nas_plugin::kit::{self, bits, json_exact_point, neighbour_values, options};
use nas_plugin::{
    Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext, TrialState,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Results told after a proposal before it counts as lost.
pub const STALE_AFTER: u64 = 64;
/// Uniform draws for a restart point before one already evaluated is accepted.
const START_ATTEMPTS: usize = 32;
/// Internal state changes (starts, moves, restarts) one proposal may go through, so a space
/// evaluated all over ends the search instead of looping.
const MAX_TRANSITIONS: usize = 64;

/// The strategy's options.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `None`: unlimited.
    #[serde(deserialize_with = "options::non_negative_int")]
    pub restarts: Option<u64>,
    /// A fraction of each float choice's range.
    #[serde(deserialize_with = "options::fraction")]
    pub step: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            restarts: None,
            step: 0.1,
        }
    }
}

#[derive(Clone, Debug)]
struct Incumbent {
    values: Vec<f64>,
    loss: f64,
    /// Its neighbours as (choice, value), in the order they are proposed.
    neighbours: Vec<(usize, f64)>,
}

/// The saved state; values encoded as by `encode`, losses as bit patterns.
#[derive(Serialize, Deserialize)]
struct SavedState {
    rng: kit::Rng,
    /// Every evaluated point with its loss (absent: bad), in the order told.
    points: Vec<(Vec<i64>, Option<u64>)>,
    /// The trial id of each point (absent in states saved before trial ids were kept).
    #[serde(default)]
    trial_ids: Vec<u64>,
    incumbent: Option<SavedIncumbent>,
    start: Option<Vec<i64>>,
    pending: Vec<(Vec<i64>, u64)>,
    told: u64,
    restarts: u64,
    started: bool,
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct SavedIncumbent {
    values: Vec<i64>,
    loss: u64,
    neighbours: Vec<(usize, i64)>,
}

pub struct Local {
    space: SpaceDescriptor,
    config: Config,
    rng: kit::Rng,
    /// Every evaluated point, in the order told, and an index into it by value bits.
    points: Vec<(Vec<f64>, Option<f64>)>,
    /// The trial id each point was told with (the first one), parallel to `points`; shorter
    /// when restored from an older state.
    trial_ids: Vec<u64>,
    index: HashMap<Vec<u64>, usize>,
    incumbent: Option<Incumbent>,
    /// A start point proposed and not yet told.
    start: Option<Vec<f64>>,
    /// Own proposals not yet told, with the number of results told when proposed.
    pending: Vec<(Vec<f64>, u64)>,
    /// Results told so far (the clock for `STALE_AFTER`).
    told: u64,
    /// Restarts after getting stuck.
    restarts: u64,
    /// Whether the first climb has begun (later ones start at random points).
    started: bool,
    /// Stuck with no restarts left.
    done: bool,
}

enum Next {
    /// A point and the trial it neighbours (the incumbent's), if any.
    Propose(Vec<f64>, Option<u64>),
    Wait,
}

impl Local {
    pub fn config(&self) -> Config {
        self.config
    }

    /// Restarts after getting stuck so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    fn loss_of(&self, values: &[f64]) -> Option<Option<f64>> {
        self.index.get(&bits(values)).map(|&i| self.points[i].1)
    }

    /// The trial id a point was told with, when known.
    fn trial_of(&self, values: &[f64]) -> Option<u64> {
        let &i = self.index.get(&bits(values))?;
        self.trial_ids.get(i).copied()
    }

    fn in_flight(&self, values: &[f64]) -> bool {
        (self.pending.iter()).any(|(v, at)| v == values && self.told - at < STALE_AFTER)
    }

    fn random_point(&mut self) -> Vec<f64> {
        let point = kit::sample_point(&self.space, &mut self.rng);
        json_exact_point(&self.space, point)
    }

    /// `values` with choice `i` set to `v`; the other floats are rounded too, since
    /// `values` may come from another strategy.
    fn neighbour(&self, values: &[f64], i: usize, v: f64) -> Vec<f64> {
        let mut n = values.to_vec();
        n[i] = v;
        json_exact_point(&self.space, n)
    }

    /// Makes `values` the incumbent, then follows already evaluated improving neighbours in
    /// proposal order (what first improvement would have found by evaluating them).
    fn set_incumbent(&mut self, mut values: Vec<f64>, mut loss: f64) {
        loop {
            let mut neighbours: Vec<(usize, f64)> = (self.space.choices.iter().enumerate())
                .flat_map(|(i, c)| {
                    neighbour_values(&c.kind, values[i], self.config.step)
                        .into_iter()
                        .map(move |v| (i, v))
                })
                .collect();
            neighbours.shuffle(&mut self.rng);
            let better = neighbours.iter().find_map(|&(i, v)| {
                let n = self.neighbour(&values, i, v);
                match self.loss_of(&n) {
                    Some(Some(l)) if l < loss => Some((n, l)),
                    _ => None,
                }
            });
            match better {
                Some((n, l)) => (values, loss) = (n, l),
                None => {
                    self.incumbent = Some(Incumbent {
                        values,
                        loss,
                        neighbours,
                    });
                    return;
                }
            }
        }
    }

    fn best_told(&self) -> Option<(Vec<f64>, f64)> {
        let mut best: Option<(&Vec<f64>, f64)> = None;
        for (v, l) in &self.points {
            if let Some(l) = *l
                && best.is_none_or(|(_, b)| l < b)
            {
                best = Some((v, l));
            }
        }
        best.map(|(v, l)| (v.clone(), l))
    }

    fn next(&mut self) -> Next {
        for _ in 0..MAX_TRANSITIONS {
            if self.done {
                return Next::Wait;
            }
            if let Some(inc) = &self.incumbent {
                let mut waiting = false;
                for &(i, v) in &inc.neighbours {
                    let n = self.neighbour(&inc.values, i, v);
                    if self.loss_of(&n).is_some() {
                        continue;
                    }
                    if self.in_flight(&n) {
                        waiting = true;
                        continue;
                    }
                    return Next::Propose(n, self.trial_of(&inc.values));
                }
                if waiting {
                    return Next::Wait;
                }
                // Stuck: every neighbour evaluated, none better.
                self.incumbent = None;
                if self.config.restarts.is_some_and(|max| self.restarts >= max) {
                    self.done = true;
                    return Next::Wait;
                }
                self.restarts += 1;
                continue;
            }
            if let Some(start) = &self.start {
                return if self.in_flight(start) {
                    Next::Wait
                } else {
                    Next::Propose(start.clone(), None)
                };
            }
            if !self.started {
                self.started = true;
                if let Some((v, l)) = self.best_told() {
                    self.set_incumbent(v, l);
                    continue;
                }
            }
            if (self.space.size()).is_some_and(|size| self.points.len() as u64 >= size) {
                // Nothing left to evaluate.
                self.done = true;
                return Next::Wait;
            }
            let mut point = self.random_point();
            for _ in 1..START_ATTEMPTS {
                if self.loss_of(&point).is_none() && !self.in_flight(&point) {
                    break;
                }
                point = self.random_point();
            }
            match self.loss_of(&point) {
                // Already evaluated: climb from it without asking the study again.
                Some(Some(l)) => self.set_incumbent(point, l),
                _ => {
                    self.start = Some(point.clone());
                    return Next::Propose(point, None);
                }
            }
        }
        Next::Wait
    }

    fn encode_values(&self, values: &[f64]) -> Vec<i64> {
        (self.space.choices.iter().zip(values))
            .map(|(c, &v)| encode(&c.kind, v))
            .collect()
    }

    fn decode_values(&self, values: &[i64]) -> Result<Vec<f64>, String> {
        if values.len() != self.space.choices.len() {
            return Err(format!(
                "a point has {} values but the space has {} choices",
                values.len(),
                self.space.choices.len()
            ));
        }
        let v: Vec<f64> = (self.space.choices.iter().zip(values))
            .map(|(c, &v)| decode(&c.kind, v))
            .collect();
        self.space.check(&v)?;
        Ok(v)
    }
}

impl Strategy for Local {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options("local", &ctx.config)?;
        kit::check_space("local", &ctx.space)?;
        Ok(Local {
            space: ctx.space,
            config,
            rng: kit::seeded(ctx.seed),
            points: Vec::new(),
            trial_ids: Vec::new(),
            index: HashMap::new(),
            incumbent: None,
            start: None,
            pending: Vec::new(),
            told: 0,
            restarts: 0,
            started: false,
            done: false,
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        // Lost proposals are forgotten rather than kept in the state for good.
        let told = self.told;
        self.pending.retain(|(_, at)| told - at < STALE_AFTER);
        let mut proposals = Vec::new();
        while proposals.len() < n {
            let Next::Propose(values, parent) = self.next() else {
                break;
            };
            // A stale entry proposed again restarts its clock.
            self.pending.retain(|(v, _)| *v != values);
            self.pending.push((values.clone(), self.told));
            proposals.push(Proposal {
                values,
                fidelity: None,
                parent,
            });
        }
        Ok(proposals)
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        // Check the whole batch first so an error leaves the state untouched.
        for o in observations {
            self.space
                .check(&o.values)
                .map_err(|e| format!("local was told about trial {}: {e}", o.trial_id))?;
        }
        for o in observations {
            self.told += 1;
            // Discrete values are normalized so -0.0 and 0.0 are one point.
            let values: Vec<f64> = (self.space.choices.iter().zip(&o.values))
                .map(|(c, &v)| decode(&c.kind, encode(&c.kind, v)))
                .collect();
            self.pending.retain(|(v, _)| *v != values);
            let loss = (o.state == TrialState::Complete)
                .then(|| o.losses.first().copied())
                .flatten()
                .filter(|l| !l.is_nan());
            // The first result for a point is kept; a cached duplicate repeats it.
            let key = bits(&values);
            if !self.index.contains_key(&key) {
                self.index.insert(key, self.points.len());
                self.points.push((values.clone(), loss));
                if self.trial_ids.len() + 1 == self.points.len() {
                    self.trial_ids.push(o.trial_id);
                }
            }
            let loss = self.loss_of(&values).flatten();
            if self.start.as_ref() == Some(&values) {
                self.start = None;
                // A failed start is replaced by another random point at the next ask.
                if let Some(l) = loss {
                    self.set_incumbent(values, l);
                }
                continue;
            }
            if let (Some(inc), Some(l)) = (&self.incumbent, loss) {
                let is_neighbour = (inc.neighbours.iter())
                    .any(|&(i, v)| self.neighbour(&inc.values, i, v) == values);
                if is_neighbour && l < inc.loss {
                    self.set_incumbent(values, l);
                }
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        let state = SavedState {
            rng: self.rng.clone(),
            points: (self.points.iter())
                .map(|(v, l)| (self.encode_values(v), l.map(f64::to_bits)))
                .collect(),
            trial_ids: self.trial_ids.clone(),
            incumbent: self.incumbent.as_ref().map(|inc| SavedIncumbent {
                values: self.encode_values(&inc.values),
                loss: inc.loss.to_bits(),
                neighbours: (inc.neighbours.iter())
                    .map(|&(i, v)| (i, encode(&self.space.choices[i].kind, v)))
                    .collect(),
            }),
            start: self.start.as_ref().map(|v| self.encode_values(v)),
            pending: (self.pending.iter())
                .map(|(v, at)| (self.encode_values(v), *at))
                .collect(),
            told: self.told,
            restarts: self.restarts,
            started: self.started,
            done: self.done,
        };
        Ok(kit::save_state("local", &state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = kit::restore_state("local", state)?;
        let fits = |e: String| format!("local's saved state does not fit the search space: {e}");
        let mut points = Vec::with_capacity(state.points.len());
        let mut index = HashMap::with_capacity(state.points.len());
        for (v, l) in &state.points {
            let v = self.decode_values(v).map_err(fits)?;
            index.insert(bits(&v), points.len());
            points.push((v, l.map(f64::from_bits)));
        }
        let incumbent = match state.incumbent {
            None => None,
            Some(inc) => {
                let mut neighbours = Vec::with_capacity(inc.neighbours.len());
                for (i, v) in inc.neighbours {
                    let kind = &(self.space.choices.get(i))
                        .ok_or_else(|| fits(format!("no choice {i}")))?
                        .kind;
                    neighbours.push((i, decode(kind, v)));
                }
                Some(Incumbent {
                    values: self.decode_values(&inc.values).map_err(fits)?,
                    loss: f64::from_bits(inc.loss),
                    neighbours,
                })
            }
        };
        let start = match &state.start {
            None => None,
            Some(v) => Some(self.decode_values(v).map_err(fits)?),
        };
        let mut pending = Vec::with_capacity(state.pending.len());
        for (v, at) in &state.pending {
            pending.push((self.decode_values(v).map_err(fits)?, *at));
        }
        *self = Local {
            space: self.space.clone(),
            config: self.config,
            rng: state.rng,
            points,
            trial_ids: state.trial_ids,
            index,
            incumbent,
            start,
            pending,
            told: state.told,
            restarts: state.restarts,
            started: state.started,
            done: state.done,
        };
        Ok(())
    }
}

nas_plugin::export_strategy!("local", Local);
