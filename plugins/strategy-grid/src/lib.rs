//! Grid search: every candidate of a small space exactly once, in a seeded random order.
//!
//! Candidates are numbered by their mixed-radix index (the first choice most significant) and
//! visited in the order of a seeded pseudo-random permutation of `0..size`: a Feistel network
//! over the next power of four, cycle-walked into range. The permutation needs no table, so the
//! saved state is a cursor, the keys and the few positions ahead of the cursor that other
//! strategies have already evaluated (those are skipped). Once every candidate has been
//! proposed or told, `ask` returns nothing.
//!
//! Options (the strategy's TOML table):
//! - `grid`: points per float choice (evenly spaced, log-spaced for log-scaled floats, both
//!   bounds included, inner points rounded to 12 significant digits; one point is the
//!   centre). Required when the space has a float choice.
//! - `max_size` (default 1e6): larger spaces are refused.

use std::collections::BTreeSet;

use nas_plugin::kit::{self, json_exact, options, rand::Rng};
use nas_plugin::{
    ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

const ROUNDS: usize = 6;

/// The strategy's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Points per float choice.
    #[serde(deserialize_with = "options::positive_int")]
    pub grid: Option<u64>,
    #[serde(deserialize_with = "options::positive_int")]
    pub max_size: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grid: None,
            max_size: 1_000_000,
        }
    }
}

/// The values one choice takes on the grid.
#[derive(Clone, Debug)]
enum Axis {
    Categorical(u64),
    Integer {
        low: i64,
        count: Option<u64>,
    },
    /// Ascending, distinct.
    Float(Vec<f64>),
}

impl Axis {
    /// The space has passed `kit::check_space`.
    fn new(name: &str, kind: &ChoiceKind, grid: Option<u64>) -> Result<Axis, String> {
        Ok(match kind {
            ChoiceKind::Categorical { options } => Axis::Categorical(options.len() as u64),
            ChoiceKind::Integer { low, high } => {
                // None: 2^64 values, more than any size limit.
                let count = high.abs_diff(*low).checked_add(1);
                Axis::Integer { low: *low, count }
            }
            ChoiceKind::Float { low, high, log } => {
                let Some(n) = grid else {
                    return Err(format!(
                        "grid: choice `{name}` is a float; set `grid = N` in the strategy's \
                         table to enumerate N evenly spaced points per float choice"
                    ));
                };
                Axis::Float(float_points(*low, *high, *log, n))
            }
        })
    }

    /// Number of values; `None` when it does not fit a u64.
    fn checked_radix(&self) -> Option<u64> {
        match self {
            Axis::Categorical(k) => Some(*k),
            Axis::Integer { count, .. } => *count,
            Axis::Float(points) => Some(points.len() as u64),
        }
    }

    /// Only called once the whole grid is known to fit a u64.
    fn radix(&self) -> u64 {
        self.checked_radix()
            .expect("grid size checked in Grid::new")
    }

    fn value(&self, digit: u64) -> f64 {
        match self {
            Axis::Categorical(_) => digit as f64,
            Axis::Integer { low, .. } => low.wrapping_add(digit as i64) as f64,
            Axis::Float(points) => points[digit as usize],
        }
    }

    /// The digit of a valid value, or `None` when it is not on the grid.
    fn digit(&self, value: f64) -> Option<u64> {
        match self {
            Axis::Categorical(_) => Some(value as u64),
            Axis::Integer { low, .. } => Some((value as i64).abs_diff(*low)),
            Axis::Float(points) => {
                let i = points.partition_point(|p| *p < value);
                (points.get(i) == Some(&value)).then_some(i as u64)
            }
        }
    }
}

/// `n` points from `low` to `high` (both included), evenly spaced in log space if `log`.
pub fn float_points(low: f64, high: f64, log: bool, n: u64) -> Vec<f64> {
    let (a, b) = if log {
        (low.ln(), high.ln())
    } else {
        (low, high)
    };
    let at = |t: f64| {
        let y = a + t * (b - a);
        json_exact(if log { y.exp() } else { y }, low, high)
    };
    let mut points: Vec<f64> = if n == 1 {
        vec![at(0.5)]
    } else {
        (0..n)
            .map(|i| match i {
                0 => low,
                i if i == n - 1 => high,
                i => at(i as f64 / (n - 1) as f64),
            })
            .collect()
    };
    // Rounding, or a range a few ulps wide, can merge points; each candidate counts once.
    points.dedup();
    points
}

/// A keyed pseudo-random permutation of `0..size`.
#[derive(Clone, Debug)]
pub struct Permutation {
    size: u64,
    /// Bits per Feistel half; the network permutes `0..4^half_bits`.
    half_bits: u32,
    keys: [u64; ROUNDS],
}

/// SplitMix64's finalizer: a cheap, well-mixing round function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Permutation {
    pub fn new(size: u64, keys: [u64; ROUNDS]) -> Permutation {
        let bits = 64 - size.saturating_sub(1).leading_zeros();
        Permutation {
            size,
            half_bits: bits.div_ceil(2).max(1),
            keys,
        }
    }

    fn mask(&self) -> u64 {
        if self.half_bits >= 32 {
            u32::MAX as u64
        } else {
            (1 << self.half_bits) - 1
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let (mask, h) = (self.mask(), self.half_bits);
        let (mut left, mut right) = (x >> h, x & mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix(right ^ key) & mask));
        }
        (left << h) | right
    }

    fn feistel_inverse(&self, x: u64) -> u64 {
        let (mask, h) = (self.mask(), self.half_bits);
        let (mut left, mut right) = (x >> h, x & mask);
        for key in self.keys.iter().rev() {
            (left, right) = (right ^ (mix(left ^ key) & mask), left);
        }
        (left << h) | right
    }

    /// The candidate at `position`; cycle-walking keeps the bijection inside `0..size`.
    pub fn at(&self, position: u64) -> u64 {
        let mut x = self.feistel(position);
        while x >= self.size {
            x = self.feistel(x);
        }
        x
    }

    /// The position of `index`: `at(position_of(i)) == i`.
    pub fn position_of(&self, index: u64) -> u64 {
        let mut x = self.feistel_inverse(index);
        while x >= self.size {
            x = self.feistel_inverse(x);
        }
        x
    }
}

/// The saved state.
#[derive(Serialize, Deserialize)]
struct SavedState {
    keys: [u64; ROUNDS],
    cursor: u64,
    skip: Vec<u64>,
}

pub struct Grid {
    space: SpaceDescriptor,
    config: Config,
    axes: Vec<Axis>,
    permutation: Permutation,
    /// Positions before it have been proposed or skipped.
    cursor: u64,
    /// Positions at or after the cursor that other strategies have already evaluated.
    skip: BTreeSet<u64>,
}

impl Grid {
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of candidates of the grid.
    pub fn size(&self) -> u64 {
        self.permutation.size
    }

    fn values(&self, mut index: u64) -> Vec<f64> {
        let mut values = vec![0.0; self.axes.len()];
        for (v, axis) in values.iter_mut().zip(&self.axes).rev() {
            *v = axis.value(index % axis.radix());
            index /= axis.radix();
        }
        values
    }

    fn index(&self, values: &[f64]) -> Option<u64> {
        self.axes
            .iter()
            .zip(values)
            .try_fold(0u64, |acc, (axis, &v)| {
                Some(acc * axis.radix() + axis.digit(v)?)
            })
    }
}

impl Strategy for Grid {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options("grid", &ctx.config)?;
        kit::check_space("grid", &ctx.space)?;
        let axes = (ctx.space.choices.iter())
            .map(|c| Axis::new(&c.name, &c.kind, config.grid))
            .collect::<Result<Vec<_>, _>>()?;
        let size = (axes.iter()).try_fold(1u64, |acc, a| acc.checked_mul(a.checked_radix()?));
        let too_big = |what: String| {
            format!(
                "grid: the space has {what} candidates, more than `max_size` = {}; enumerate a \
                 smaller space (fewer choices or options{}), raise `max_size`, or use another \
                 strategy",
                config.max_size,
                if config.grid.is_some() {
                    ", a smaller `grid`"
                } else {
                    ""
                }
            )
        };
        let size = match size {
            Some(s) if s <= config.max_size => s,
            Some(s) => return Err(too_big(s.to_string()).into()),
            None => return Err(too_big("more than 2^64".into()).into()),
        };
        let mut rng = kit::seeded(ctx.seed);
        let keys = std::array::from_fn(|_| rng.random());
        Ok(Grid {
            space: ctx.space,
            config,
            axes,
            permutation: Permutation::new(size, keys),
            cursor: 0,
            skip: BTreeSet::new(),
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let mut proposals = Vec::with_capacity(n.min(1024));
        while proposals.len() < n && self.cursor < self.size() {
            let position = self.cursor;
            self.cursor += 1;
            if self.skip.remove(&position) {
                continue;
            }
            proposals.push(Proposal {
                values: self.values(self.permutation.at(position)),
                fidelity: None,
                parent: None,
            });
        }
        Ok(proposals)
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        for o in observations {
            self.space
                .check(&o.values)
                .map_err(|e| format!("grid was told about trial {}: {e}", o.trial_id))?;
        }
        for o in observations {
            // Off-grid points (floats proposed by others) match no candidate.
            if let Some(index) = self.index(&o.values) {
                let position = self.permutation.position_of(index);
                if position >= self.cursor {
                    self.skip.insert(position);
                }
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        let state = SavedState {
            keys: self.permutation.keys,
            cursor: self.cursor,
            skip: self.skip.iter().copied().collect(),
        };
        Ok(kit::save_state("grid", &state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = kit::restore_state("grid", state)?;
        let size = self.size();
        if state.cursor > size || state.skip.iter().any(|&p| p < state.cursor || p >= size) {
            return Err(format!(
                "grid's saved state does not fit this space of {size} candidates (was the \
                 space or `grid` changed?)"
            )
            .into());
        }
        self.permutation = Permutation::new(size, state.keys);
        self.cursor = state.cursor;
        self.skip = state.skip.into_iter().collect();
        Ok(())
    }
}

nas_plugin::export_strategy!("grid", Grid);
