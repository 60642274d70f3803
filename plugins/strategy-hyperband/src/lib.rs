//! Multi-fidelity scheduling: Hyperband (Li et al. 2018, "Hyperband: A Novel Bandit-Based
//! Approach to Hyperparameter Optimization"), one successive-halving bracket, or ASHA (Li et al.
//! 2020, "A System for Massively Parallel Hyperparameter Tuning").
//!
//! Fidelities form a geometric ladder: rung `k` runs at `min_fidelity * eta^k`, rounded to an
//! integer when both bounds are integers (epochs), capped at `max_fidelity`, up to the first
//! rung that reaches `max_fidelity`. New configurations come from a [`Sampler`] and start at the
//! lowest rung of their bracket; a configuration is promoted by proposing the same values again
//! at the next rung's fidelity (the study dedups by network and fidelity, so that is a new
//! evaluation). Its loss at a rung is `losses[0]` of the observation whose values and fidelity
//! match; failed, pruned and infeasible trials rank last and are never promoted.
//!
//! - `mode = "hyperband"` (default): brackets `s = K, K-1, ..., 0` (`K + 1` rungs), then again.
//!   Bracket `s` starts `n = ceil((K + 1) * eta^s / (s + 1))` configurations at rung `K - s`,
//!   and rung `i` of the bracket keeps the best `floor(n / eta^i)`.
//! - `mode = "successive_halving"`: only the most exploratory bracket (`s = K`, `eta^K`
//!   configurations at `min_fidelity`), repeated.
//! - `mode = "asha"`: no brackets. Each ask promotes, from the highest rung down, a finished
//!   configuration that is in the top `floor(finished / eta)` of its rung and not yet promoted;
//!   if there is none it starts a new configuration at `min_fidelity`. It never waits.
//!
//! The synchronous modes wait for every result of a rung before promoting: meanwhile `ask`
//! returns no proposal, and the host has to ask again once running trials have finished.
//!
//! Options: `min_fidelity` (default 1), `max_fidelity` (27), `eta` (3), `mode`, and `sampler`
//! (`"random"`, the only one built in; see [`Sampler`] to add another).

use nas_plugin::kit::{self, bits, from_bits, options, rand_chacha::ChaCha8Rng};
use nas_plugin::{
    Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext, TrialState,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A ladder longer than this means `eta` is too close to 1 to be useful.
const MAX_RUNGS: usize = 32;
/// Draws per new configuration to find one not already in its rung.
const SAMPLE_ATTEMPTS: usize = 8;
/// Slack for float rounding in the bracket formulas (`27 / 3^3` must be exactly 1).
const EPS: f64 = 1e-9;

/// Where new configurations come from.
///
/// To add a sampler (a model-based one such as TPE, as in BOHB): implement this trait, add
/// its name to [`SamplerKind`] and build it in [`make_sampler`]. It sees every trial told
/// to the strategy (at all fidelities), draws from the strategy's generator so that resuming
/// stays bit for bit, and saves its own state.
pub trait Sampler: Send {
    /// One new configuration: one valid value per choice of `space`.
    fn sample(&mut self, space: &SpaceDescriptor, rng: &mut ChaCha8Rng) -> Vec<f64>;
    /// Every finished trial told to the strategy.
    fn observe(&mut self, _observations: &[Observation]) {}
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// Uniform independent sampling of every choice.
pub struct RandomSampler;

impl Sampler for RandomSampler {
    fn sample(&mut self, space: &SpaceDescriptor, rng: &mut ChaCha8Rng) -> Vec<f64> {
        kit::sample_point(space, rng)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Hyperband,
    SuccessiveHalving,
    Asha,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    Random,
}

pub fn make_sampler(kind: SamplerKind) -> Box<dyn Sampler> {
    match kind {
        SamplerKind::Random => Box::new(RandomSampler),
    }
}

/// The strategy's options.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "options::positive_number")]
    pub min_fidelity: f64,
    #[serde(deserialize_with = "options::positive_number")]
    pub max_fidelity: f64,
    #[serde(deserialize_with = "options::positive_number")]
    pub eta: f64,
    pub mode: Mode,
    pub sampler: SamplerKind,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_fidelity: 1.0,
            max_fidelity: 27.0,
            eta: 3.0,
            mode: Mode::Hyperband,
            sampler: SamplerKind::Random,
        }
    }
}

impl Config {
    /// Reads the options table; `null` (no table) gives the defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Config, String> {
        let config: Config = options::parse_options("hyperband", value)?;
        options::check(
            "hyperband",
            "eta",
            config.eta > 1.0,
            "greater than 1",
            config.eta,
        )?;
        if config.max_fidelity < config.min_fidelity {
            return Err(format!(
                "hyperband option `max_fidelity` ({}) must not be below `min_fidelity` ({})",
                config.max_fidelity, config.min_fidelity
            ));
        }
        Ok(config)
    }

    /// The fidelity of every rung, lowest first; the last is `max_fidelity`.
    pub fn ladder(&self) -> Result<Vec<f64>, String> {
        let (min, max, eta) = (self.min_fidelity, self.max_fidelity, self.eta);
        let integral = min.fract() == 0.0 && max.fract() == 0.0;
        let mut ladder: Vec<f64> = Vec::new();
        for k in 0..MAX_RUNGS as i32 {
            let raw = min * eta.powi(k);
            let top = raw >= max * (1.0 - EPS);
            let f = if top {
                max
            } else if integral {
                raw.round()
            } else {
                raw
            };
            if let Some(&last) = ladder.last()
                && f <= last
            {
                return Err(format!(
                    "hyperband: with `eta` = {eta}, rungs {} and {k} both get fidelity {f} once \
                     rounded to whole numbers; use a larger `eta`",
                    k - 1
                ));
            }
            ladder.push(f);
            if top {
                return Ok(ladder);
            }
        }
        Err(format!(
            "hyperband: `eta` = {eta} needs more than {MAX_RUNGS} rungs to go from \
             `min_fidelity` {min} to `max_fidelity` {max}; use a larger `eta`"
        ))
    }
}

/// `floor(x)`, tolerant of float error just below an integer.
fn floor(x: f64) -> usize {
    (x + EPS).floor() as usize
}

/// Sizes of the rungs of Hyperband bracket `s` when the ladder has `k_max + 1` rungs.
pub fn bracket_sizes(k_max: usize, s: usize, eta: f64) -> Vec<usize> {
    let n = ((k_max + 1) as f64 * eta.powi(s as i32) / (s + 1) as f64 - EPS).ceil();
    (0..=s).map(|i| floor(n / eta.powi(i as i32))).collect()
}

/// Whether two value vectors are the same configuration. Values travel through JSON and the
/// study's storage, which may move a float by an ulp.
fn same_values(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()))
}

#[derive(Clone, Debug)]
struct Entry {
    values: Vec<f64>,
    /// Handed out by `ask`; promotions of a synchronous bracket are queued first.
    proposed: bool,
    /// `None` while running; failures are `+inf`.
    loss: Option<f64>,
    promoted: bool,
}

#[derive(Clone, Debug)]
struct Rung {
    /// Index into the fidelity ladder.
    level: usize,
    /// Configurations a synchronous bracket wants here (unbounded for ASHA).
    target: usize,
    entries: Vec<Entry>,
}

impl Rung {
    /// Indices of finished entries with a finite loss, best first; ties keep arrival order.
    fn ranked(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].loss.is_some_and(f64::is_finite))
            .collect();
        order.sort_by(|&a, &b| {
            let (la, lb) = (self.entries[a].loss, self.entries[b].loss);
            la.unwrap().total_cmp(&lb.unwrap()).then(a.cmp(&b))
        });
        order
    }
}

/// The saved state. Floats are stored as bit patterns because JSON float parsing is not
/// guaranteed to round-trip exactly, and a restored search must continue bit for bit.
#[derive(Serialize, Deserialize)]
struct SavedState {
    mode: Mode,
    ladder: Vec<u64>,
    rng: ChaCha8Rng,
    sampler: serde_json::Value,
    brackets: u64,
    current: usize,
    rungs: Vec<SavedRung>,
}

#[derive(Serialize, Deserialize)]
struct SavedRung {
    level: usize,
    target: usize,
    entries: Vec<SavedEntry>,
}

#[derive(Serialize, Deserialize)]
struct SavedEntry {
    values: Vec<u64>,
    proposed: bool,
    loss: Option<u64>,
    promoted: bool,
}

pub struct Hyperband {
    space: SpaceDescriptor,
    config: Config,
    ladder: Vec<f64>,
    sampler: Box<dyn Sampler>,
    rng: ChaCha8Rng,
    /// Brackets started so far; hyperband runs bracket `K - brackets % (K + 1)`.
    brackets: u64,
    /// The rungs of the running bracket (empty between brackets), or ASHA's rungs.
    rungs: Vec<Rung>,
    /// The rung a synchronous bracket is filling.
    current: usize,
}

impl Hyperband {
    pub fn config(&self) -> Config {
        self.config
    }

    pub fn ladder(&self) -> &[f64] {
        &self.ladder
    }

    fn k_max(&self) -> usize {
        self.ladder.len() - 1
    }

    fn asha_rungs(&self) -> Vec<Rung> {
        (0..self.ladder.len())
            .map(|level| Rung {
                level,
                target: usize::MAX,
                entries: Vec::new(),
            })
            .collect()
    }

    /// Sets up the next synchronous bracket.
    fn start_bracket(&mut self) {
        let k = self.k_max();
        let s = match self.config.mode {
            Mode::SuccessiveHalving => k,
            _ => k - (self.brackets % (k as u64 + 1)) as usize,
        };
        self.brackets += 1;
        self.rungs = bracket_sizes(k, s, self.config.eta)
            .into_iter()
            .enumerate()
            .map(|(i, target)| Rung {
                level: k - s + i,
                target,
                entries: Vec::new(),
            })
            .collect();
        self.current = 0;
    }

    /// A new configuration for rung `r`, preferably one not already there.
    fn new_entry(&mut self, r: usize) -> Proposal {
        let mut values = Vec::new();
        for _ in 0..SAMPLE_ATTEMPTS {
            values = self.sampler.sample(&self.space, &mut self.rng);
            if !self.rungs[r]
                .entries
                .iter()
                .any(|e| same_values(&e.values, &values))
            {
                break;
            }
        }
        self.rungs[r].entries.push(Entry {
            values: values.clone(),
            proposed: true,
            loss: None,
            promoted: false,
        });
        Proposal {
            values,
            fidelity: Some(self.ladder[self.rungs[r].level]),
            parent: None,
        }
    }

    fn next_synchronous(&mut self) -> Option<Proposal> {
        loop {
            if self.rungs.is_empty() {
                self.start_bracket();
            }
            let c = self.current;
            let fidelity = self.ladder[self.rungs[c].level];
            if let Some(e) = self.rungs[c].entries.iter_mut().find(|e| !e.proposed) {
                e.proposed = true;
                return Some(Proposal {
                    values: e.values.clone(),
                    fidelity: Some(fidelity),
                    parent: None,
                });
            }
            let rung = &self.rungs[c];
            if c == 0 && rung.entries.len() < rung.target {
                return Some(self.new_entry(0));
            }
            if rung.entries.iter().any(|e| e.loss.is_none()) {
                return None;
            }
            if c + 1 < self.rungs.len() {
                let best: Vec<usize> = (rung.ranked().into_iter())
                    .take(self.rungs[c + 1].target)
                    .collect();
                if !best.is_empty() {
                    for &i in &best {
                        self.rungs[c].entries[i].promoted = true;
                        let values = self.rungs[c].entries[i].values.clone();
                        self.rungs[c + 1].entries.push(Entry {
                            values,
                            proposed: false,
                            loss: None,
                            promoted: false,
                        });
                    }
                    self.current += 1;
                    continue;
                }
            }
            // The bracket is done (or every configuration in it failed).
            self.rungs.clear();
        }
    }

    fn next_asha(&mut self) -> Proposal {
        let eta = self.config.eta;
        for r in (0..self.rungs.len() - 1).rev() {
            let rung = &self.rungs[r];
            let finished = rung.entries.iter().filter(|e| e.loss.is_some()).count();
            let top = floor(finished as f64 / eta);
            let Some(i) =
                (rung.ranked().into_iter().take(top)).find(|&i| !self.rungs[r].entries[i].promoted)
            else {
                continue;
            };
            self.rungs[r].entries[i].promoted = true;
            let values = self.rungs[r].entries[i].values.clone();
            self.rungs[r + 1].entries.push(Entry {
                values: values.clone(),
                proposed: true,
                loss: None,
                promoted: false,
            });
            return Proposal {
                values,
                fidelity: Some(self.ladder[self.rungs[r + 1].level]),
                parent: None,
            };
        }
        self.new_entry(0)
    }

    /// Records the result for every running entry with these values and fidelity. Usually
    /// there is one; with several workers the same values may run twice, and the study then
    /// evaluates (and tells) only the first.
    fn record(&mut self, o: &Observation) {
        let Some(fidelity) = o.fidelity else {
            return;
        };
        let loss = (o.state == TrialState::Complete)
            .then(|| o.losses.first().copied())
            .flatten()
            .filter(|l| !l.is_nan())
            .unwrap_or(f64::INFINITY);
        for rung in &mut self.rungs {
            let f = self.ladder[rung.level];
            if !(f == fidelity || (f - fidelity).abs() <= 1e-12 * f.abs()) {
                continue;
            }
            for e in &mut rung.entries {
                if e.proposed && e.loss.is_none() && same_values(&e.values, &o.values) {
                    e.loss = Some(loss);
                }
            }
        }
    }
}

impl Strategy for Hyperband {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config = Config::from_json(&ctx.config)?;
        let ladder = config.ladder()?;
        kit::check_space("hyperband", &ctx.space)?;
        let mut s = Hyperband {
            space: ctx.space,
            config,
            ladder,
            sampler: make_sampler(config.sampler),
            rng: kit::seeded(ctx.seed),
            brackets: 0,
            rungs: Vec::new(),
            current: 0,
        };
        if config.mode == Mode::Asha {
            s.rungs = s.asha_rungs();
        }
        Ok(s)
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = match self.config.mode {
                Mode::Asha => Some(self.next_asha()),
                _ => self.next_synchronous(),
            };
            match next {
                Some(p) => out.push(p),
                None => break,
            }
        }
        Ok(out)
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        // Check the whole batch first so an error leaves the state untouched.
        for o in observations {
            self.space
                .check(&o.values)
                .map_err(|e| format!("hyperband was told about trial {}: {e}", o.trial_id))?;
        }
        self.sampler.observe(observations);
        // Trials of other strategies match nothing running here and are skipped; duplicates
        // answered from the study's cache carry another trial's id, so matching is by values
        // and fidelity.
        for o in observations {
            self.record(o);
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        let state = SavedState {
            mode: self.config.mode,
            ladder: bits(&self.ladder),
            rng: self.rng.clone(),
            sampler: self.sampler.save(),
            brackets: self.brackets,
            current: self.current,
            rungs: (self.rungs.iter())
                .map(|r| SavedRung {
                    level: r.level,
                    target: r.target,
                    entries: (r.entries.iter())
                        .map(|e| SavedEntry {
                            values: bits(&e.values),
                            proposed: e.proposed,
                            loss: e.loss.map(f64::to_bits),
                            promoted: e.promoted,
                        })
                        .collect(),
                })
                .collect(),
        };
        Ok(kit::save_state("hyperband", &state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = kit::restore_state("hyperband", state)?;
        let ladder = from_bits(&state.ladder);
        if state.mode != self.config.mode || ladder != self.ladder {
            return Err(format!(
                "hyperband's saved state was made with mode {:?} and fidelities {ladder:?}, \
                 but this study has mode {:?} and fidelities {:?}",
                state.mode, self.config.mode, self.ladder
            )
            .into());
        }
        let mut rungs = Vec::with_capacity(state.rungs.len());
        for r in state.rungs {
            if r.level >= self.ladder.len() {
                return Err(format!(
                    "hyperband's saved state has a rung at level {} of a {}-rung ladder",
                    r.level,
                    self.ladder.len()
                )
                .into());
            }
            let mut entries = Vec::with_capacity(r.entries.len());
            for e in r.entries {
                let values = from_bits(&e.values);
                self.space.check(&values).map_err(|err| {
                    format!("hyperband's saved state does not fit the search space: {err}")
                })?;
                entries.push(Entry {
                    values,
                    proposed: e.proposed,
                    loss: e.loss.map(f64::from_bits),
                    promoted: e.promoted,
                });
            }
            rungs.push(Rung {
                level: r.level,
                target: r.target,
                entries,
            });
        }
        let valid_current = if self.config.mode == Mode::Asha {
            rungs.len() == self.ladder.len()
        } else {
            rungs.is_empty() || state.current < rungs.len()
        };
        if !valid_current {
            return Err("hyperband's saved state has an inconsistent set of rungs".into());
        }
        self.sampler.restore(state.sampler)?;
        self.rng = state.rng;
        self.brackets = state.brackets;
        self.current = state.current;
        self.rungs = rungs;
        Ok(())
    }
}

nas_plugin::export_strategy!("hyperband", Hyperband);
