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

use nas_plugin::{
    ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext,
    TrialState,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// `None`: unlimited.
    pub restarts: Option<u64>,
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

impl Config {
    /// Reads the options table; `null` (no table) gives the defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Config, String> {
        const ACCEPTED: &str = "accepted options: `restarts`, `step`";
        let mut config = Config::default();
        let map = match value {
            serde_json::Value::Null => return Ok(config),
            serde_json::Value::Object(map) => map,
            other => return Err(format!("local options must be a table, not `{other}`")),
        };
        for (key, v) in map {
            match key.as_str() {
                "restarts" => {
                    config.restarts = Some(v.as_u64().ok_or_else(|| {
                        format!("local option `restarts` must be a non-negative integer, not `{v}`")
                    })?)
                }
                "step" => {
                    config.step = v.as_f64().filter(|&s| s > 0.0 && s <= 1.0).ok_or_else(|| {
                        format!(
                            "local option `step` must be a number in (0, 1] (a fraction of each \
                             float choice's range), not `{v}`"
                        )
                    })?
                }
                _ => return Err(format!("local has no option `{key}`; {ACCEPTED}")),
            }
        }
        Ok(config)
    }
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Rounds a float to 12 significant digits. Messages cross the plugin ABI as JSON, and
/// serde_json's default parser can be one ulp off on long decimals; a 12-digit value reads
/// back exactly, so the study stores, and tells back, the very value proposed.
pub fn json_exact(x: f64, low: f64, high: f64) -> f64 {
    let y: f64 = format!("{x:.11e}").parse().unwrap_or(x);
    y.clamp(low, high)
}

/// `values` with every float rounded by `json_exact`.
fn json_exact_point(space: &SpaceDescriptor, mut values: Vec<f64>) -> Vec<f64> {
    for (v, c) in values.iter_mut().zip(&space.choices) {
        if let ChoiceKind::Float { low, high, .. } = c.kind {
            *v = json_exact(*v, low, high);
        }
    }
    values
}

/// Draws one value uniformly for a choice (log-uniformly for log-scaled floats).
pub fn sample_choice(kind: &ChoiceKind, rng: &mut impl Rng) -> f64 {
    match kind {
        ChoiceKind::Categorical { options } => rng.random_range(0..options.len()) as f64,
        ChoiceKind::Integer { low, high } => rng.random_range(*low..=*high) as f64,
        ChoiceKind::Float { low, high, log } => {
            if *log {
                // exp(ln(x)) may land one ulp outside the range.
                rng.random_range(low.ln()..=high.ln())
                    .exp()
                    .clamp(*low, *high)
            } else {
                rng.random_range(*low..=*high)
            }
        }
    }
}

/// The values one change of a choice reaches from `value`.
pub fn neighbour_values(kind: &ChoiceKind, value: f64, step: f64) -> Vec<f64> {
    let mut out: Vec<f64> = match kind {
        ChoiceKind::Categorical { options } => (0..options.len())
            .map(|o| o as f64)
            .filter(|&o| o != value)
            .collect(),
        ChoiceKind::Integer { low, high } => [value - 1.0, value + 1.0]
            .into_iter()
            .filter(|v| (*low as f64..=*high as f64).contains(v))
            .collect(),
        ChoiceKind::Float { low, high, log } => {
            let tr = |v: f64| if *log { v.ln() } else { v };
            let (lo, hi, x) = (tr(*low), tr(*high), tr(value));
            let delta = step * (hi - lo);
            [x - delta, x + delta]
                .into_iter()
                .map(|y| {
                    let y = y.clamp(lo, hi);
                    json_exact(if *log { y.exp() } else { y }, *low, *high)
                })
                .filter(|&v| v != value)
                .collect()
        }
    };
    out.dedup();
    out
}

/// Rejects choices nothing can be sampled from, so `ask` never panics on them.
fn check_space(space: &SpaceDescriptor) -> Result<(), String> {
    for c in &space.choices {
        let problem = match &c.kind {
            ChoiceKind::Categorical { options } if options.is_empty() => "has no options",
            ChoiceKind::Integer { low, high } if low > high => "has low > high",
            ChoiceKind::Float { low, high, .. } if !(low.is_finite() && high.is_finite()) => {
                "has a bound that is not finite"
            }
            ChoiceKind::Float { low, high, .. } if low > high => "has low > high",
            ChoiceKind::Float { low, log: true, .. } if *low <= 0.0 => {
                "is log-scaled but its low bound is not positive"
            }
            _ => continue,
        };
        return Err(format!("local: choice `{}` {problem}", c.name));
    }
    Ok(())
}

/// Discrete values travel as integers, floats as their bits, so saved states stay small and
/// round-trip exactly.
fn encode(kind: &ChoiceKind, v: f64) -> i64 {
    match kind {
        ChoiceKind::Float { .. } => v.to_bits() as i64,
        _ => v as i64,
    }
}

fn decode(kind: &ChoiceKind, v: i64) -> f64 {
    match kind {
        ChoiceKind::Float { .. } => f64::from_bits(v as u64),
        _ => v as f64,
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
    rng: ChaCha8Rng,
    /// Every evaluated point with its loss (absent: bad), in the order told.
    points: Vec<(Vec<i64>, Option<u64>)>,
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
    rng: ChaCha8Rng,
    /// Every evaluated point, in the order told, and an index into it by value bits.
    points: Vec<(Vec<f64>, Option<f64>)>,
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
    Propose(Vec<f64>),
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

    fn in_flight(&self, values: &[f64]) -> bool {
        (self.pending.iter()).any(|(v, at)| v == values && self.told - at < STALE_AFTER)
    }

    fn random_point(&mut self) -> Vec<f64> {
        let point = (self.space.choices.iter())
            .map(|c| sample_choice(&c.kind, &mut self.rng))
            .collect();
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
                    return Next::Propose(n);
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
                    Next::Propose(start.clone())
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
                    return Next::Propose(point);
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
        let config = Config::from_json(&ctx.config)?;
        check_space(&ctx.space)?;
        Ok(Local {
            space: ctx.space,
            config,
            rng: ChaCha8Rng::seed_from_u64(ctx.seed),
            points: Vec::new(),
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
            let Next::Propose(values) = self.next() else {
                break;
            };
            // A stale entry proposed again restarts its clock.
            self.pending.retain(|(v, _)| *v != values);
            self.pending.push((values.clone(), self.told));
            proposals.push(Proposal {
                values,
                fidelity: None,
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
        Ok(serde_json::to_value(state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = serde_json::from_value(state)
            .map_err(|e| format!("local cannot read its saved state: {e}"))?;
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
