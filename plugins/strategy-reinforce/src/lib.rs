//! REINFORCE controller, after Zoph & Le (2017), "Neural Architecture Search with
//! Reinforcement Learning", with the RNN replaced by independent distributions, one per choice:
//!
//! - categorical and integer choices: a softmax over one logit per value (integer ranges wider
//!   than [`MAX_SOFTMAX_VALUES`] use the Gaussian below, rounded);
//! - float choices: a Gaussian in the normalized range [0, 1] (of the logarithm for log-scaled
//!   choices) with a learnable mean (starting at 0.5) and a learnable or fixed standard
//!   deviation; samples are clipped to the range.
//!
//! Every `tell` is one gradient-ascent step on `mean(advantage * grad log pi(values)) +
//! entropy * grad H(pi)`, over all finished trials of that call. The reward is `-loss[0]`
//! (`reward = "negative"`) or the fraction of earlier complete trials it beats (`"rank"`). The
//! advantage is `(reward - baseline) / rms`, where the baseline is a moving average of rewards
//! and `rms` a moving root mean square of `reward - baseline`, both with `baseline_decay`; the
//! division makes `lr` and `entropy` independent of the objective's scale. Failed, pruned and
//! infeasible trials (and complete ones without a finite first loss) get the worst reward seen
//! so far (with `"rank"`: 0); before any complete trial they are skipped.
//!
//! Trials proposed by other strategies (and duplicates answered from the study's cache) are
//! learned from as if the current policy had sampled them, without importance weights: an
//! approximation that lets the controller start from what other strategies found. Fidelity is
//! ignored: a loss measured at a low fidelity counts like any other.
//!
//! Options: `lr` (default 0.03: with 0.1 the policy collapsed onto one NAS-Bench-201 cell after
//! about 130 trials), `optimizer` (`"adam"` default, or `"sgd"`: plain gradient
//! ascent), `baseline_decay` (0.95), `entropy` (0.01), `reward` (`"negative"` or `"rank"`),
//! `std` (initial standard deviation of float choices in normalized units, 0.25) and
//! `learn_std` (true).

use nas_plugin::kit::{self, bits, from_bits, options, rand::Rng, rand_distr::StandardNormal};
use nas_plugin::{
    ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext,
    TrialState,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Integer choices with more values than this get a rounded Gaussian instead of a softmax, so
/// the policy stays small for ranges such as channel counts.
pub const MAX_SOFTMAX_VALUES: u64 = 1024;
/// Bounds of a learnable standard deviation (normalized units): it keeps some exploration and
/// never becomes wider than the whole range.
const MIN_STD: f64 = 0.01;
const MAX_STD: f64 = 1.0;
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// `-loss[0]`.
    Negative,
    /// Fraction of earlier complete trials with a higher loss (ties count half).
    Rank,
}

/// The strategy's options.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "options::positive_number")]
    pub lr: f64,
    pub optimizer: Optimizer,
    pub baseline_decay: f64,
    pub entropy: f64,
    pub reward: Reward,
    pub std: f64,
    pub learn_std: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lr: 0.03,
            optimizer: Optimizer::Adam,
            baseline_decay: 0.95,
            entropy: 0.01,
            reward: Reward::Negative,
            std: 0.25,
            learn_std: true,
        }
    }
}

impl Config {
    /// Reads the options table; `null` (no table) gives the defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Config, String> {
        let c: Config = options::parse_options("reinforce", value)?;
        let check = |key, ok, what, value| options::check("reinforce", key, ok, what, value);
        let decay = c.baseline_decay;
        check(
            "baseline_decay",
            (0.0..1.0).contains(&decay),
            "a number in [0, 1)",
            decay,
        )?;
        check(
            "entropy",
            c.entropy >= 0.0 && c.entropy.is_finite(),
            "a number >= 0",
            c.entropy,
        )?;
        let std_ok = (MIN_STD..=MAX_STD).contains(&c.std);
        check("std", std_ok, "a number in [0.01, 1]", c.std)?;
        Ok(c)
    }
}

/// The distribution of one choice; parameters live in the shared vector at `offset`.
#[derive(Clone, Debug)]
enum Head {
    /// A choice with a single value: nothing to learn.
    Fixed(f64),
    /// Value `low + i` with probability `softmax(theta[offset..offset + n])[i]`.
    Softmax { offset: usize, n: usize, low: i64 },
    /// Mean at `offset`, log standard deviation at `offset + 1`, in normalized units.
    Gaussian {
        offset: usize,
        low: f64,
        high: f64,
        log: bool,
        integer: bool,
    },
}

impl Head {
    /// Normalized position of a valid value in [0, 1].
    fn normalize(low: f64, high: f64, log: bool, value: f64) -> f64 {
        let (lo, hi, x) = if log {
            (low.ln(), high.ln(), value.ln())
        } else {
            (low, high, value)
        };
        ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    }

    fn denormalize(low: f64, high: f64, log: bool, integer: bool, u: f64) -> f64 {
        if integer {
            return (low + (u * (high - low)).round()).clamp(low, high);
        }
        let x = if log {
            (low.ln() + u * (high.ln() - low.ln())).exp()
        } else {
            low + u * (high - low)
        };
        // exp(ln(x)) and the products may land one ulp outside the range.
        x.clamp(low, high)
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The saved state. Floats are stored as bit patterns because JSON float parsing is not
/// guaranteed to round-trip exactly, and a restored search must continue bit for bit.
#[derive(Serialize, Deserialize)]
struct SavedState {
    rng: kit::Rng,
    theta: Vec<u64>,
    adam_m: Vec<u64>,
    adam_v: Vec<u64>,
    steps: u64,
    baseline: Option<u64>,
    mean_square: Option<u64>,
    worst_reward: Option<u64>,
    /// Complete losses seen, sorted (only kept for `reward = "rank"`).
    losses: Vec<u64>,
}

pub struct Reinforce {
    space: SpaceDescriptor,
    config: Config,
    heads: Vec<Head>,
    rng: kit::Rng,
    /// All policy parameters (logits, means, log standard deviations).
    theta: Vec<f64>,
    adam_m: Vec<f64>,
    adam_v: Vec<f64>,
    /// Optimizer steps taken.
    steps: u64,
    /// Moving average of rewards; `None` before the first one.
    baseline: Option<f64>,
    /// Moving average of `(reward - baseline)^2`.
    mean_square: Option<f64>,
    /// Lowest reward of a complete trial, given to failed ones.
    worst_reward: Option<f64>,
    /// Sorted complete losses, for rank rewards.
    losses: Vec<f64>,
}

/// Builds the heads and the initial parameters (uniform softmaxes, centred Gaussians).
fn build_policy(space: &SpaceDescriptor, std: f64) -> (Vec<Head>, Vec<f64>) {
    let mut heads = Vec::with_capacity(space.choices.len());
    let mut theta = Vec::new();
    let gaussian = |theta: &mut Vec<f64>, low: f64, high: f64, log: bool, integer: bool| {
        let offset = theta.len();
        theta.extend([0.5, std.ln()]);
        Head::Gaussian {
            offset,
            low,
            high,
            log,
            integer,
        }
    };
    for c in &space.choices {
        let head = match &c.kind {
            ChoiceKind::Categorical { options } if options.len() == 1 => Head::Fixed(0.0),
            ChoiceKind::Categorical { options } => {
                let offset = theta.len();
                theta.resize(offset + options.len(), 0.0);
                Head::Softmax {
                    offset,
                    n: options.len(),
                    low: 0,
                }
            }
            ChoiceKind::Integer { low, high } if low == high => Head::Fixed(*low as f64),
            ChoiceKind::Integer { low, high } => {
                let n = c.kind.cardinality().unwrap_or(u64::MAX);
                if n <= MAX_SOFTMAX_VALUES {
                    let offset = theta.len();
                    theta.resize(offset + n as usize, 0.0);
                    Head::Softmax {
                        offset,
                        n: n as usize,
                        low: *low,
                    }
                } else {
                    gaussian(&mut theta, *low as f64, *high as f64, false, true)
                }
            }
            ChoiceKind::Float { low, high, .. } if low == high => Head::Fixed(*low),
            ChoiceKind::Float { low, high, log } => gaussian(&mut theta, *low, *high, *log, false),
        };
        heads.push(head);
    }
    (heads, theta)
}

impl Reinforce {
    pub fn config(&self) -> Config {
        self.config
    }

    /// Probabilities of the values of a softmax choice (`None` for other heads).
    pub fn probabilities(&self, choice: usize) -> Option<Vec<f64>> {
        match self.heads[choice] {
            Head::Softmax { offset, n, .. } => Some(softmax(&self.theta[offset..offset + n])),
            _ => None,
        }
    }

    /// Mean and standard deviation (normalized units) of a Gaussian choice.
    pub fn gaussian(&self, choice: usize) -> Option<(f64, f64)> {
        match self.heads[choice] {
            Head::Gaussian { offset, .. } => {
                Some((self.theta[offset], self.theta[offset + 1].exp()))
            }
            _ => None,
        }
    }

    fn sample(&mut self) -> Vec<f64> {
        let mut values = Vec::with_capacity(self.heads.len());
        for head in &self.heads {
            let v = match *head {
                Head::Fixed(v) => v,
                Head::Softmax { offset, n, low } => {
                    let p = softmax(&self.theta[offset..offset + n]);
                    let r: f64 = self.rng.random();
                    let mut acc = 0.0;
                    // Rounding may leave the sum a hair under 1: the last value catches it.
                    let mut index = n - 1;
                    for (i, pi) in p.iter().enumerate() {
                        acc += pi;
                        if r < acc {
                            index = i;
                            break;
                        }
                    }
                    (low + index as i64) as f64
                }
                Head::Gaussian {
                    offset,
                    low,
                    high,
                    log,
                    integer,
                } => {
                    let z: f64 = self.rng.sample(StandardNormal);
                    let u = (self.theta[offset] + self.theta[offset + 1].exp() * z).clamp(0.0, 1.0);
                    Head::denormalize(low, high, log, integer, u)
                }
            };
            values.push(v);
        }
        values
    }

    /// The reward of one finished trial, `None` when it cannot be rated yet.
    fn reward(&mut self, o: &Observation) -> Option<f64> {
        let loss = (o.state == TrialState::Complete)
            .then(|| o.losses.first().copied())
            .flatten()
            .filter(|l| l.is_finite());
        match (self.config.reward, loss) {
            (Reward::Negative, Some(l)) => {
                let r = -l;
                self.worst_reward = Some(self.worst_reward.map_or(r, |w| w.min(r)));
                Some(r)
            }
            (Reward::Negative, None) => self.worst_reward,
            (Reward::Rank, Some(l)) => {
                let below = self.losses.partition_point(|&x| x < l);
                let up_to = self.losses.partition_point(|&x| x <= l);
                let n = self.losses.len();
                let r = if n == 0 {
                    0.5
                } else {
                    ((n - up_to) as f64 + 0.5 * (up_to - below) as f64) / n as f64
                };
                self.losses.insert(up_to, l);
                Some(r)
            }
            (Reward::Rank, None) => Some(0.0),
        }
    }

    /// Normalized advantage of a reward; updates the moving averages.
    fn advantage(&mut self, reward: f64) -> f64 {
        let decay = self.config.baseline_decay;
        let Some(b) = self.baseline else {
            // The first reward only sets the baseline: there is nothing to compare it with.
            self.baseline = Some(reward);
            return 0.0;
        };
        let d = reward - b;
        let ms = match self.mean_square {
            None => d * d,
            Some(ms) => decay * ms + (1.0 - decay) * d * d,
        };
        self.mean_square = Some(ms);
        self.baseline = Some(decay * b + (1.0 - decay) * reward);
        if ms > 0.0 { d / ms.sqrt() } else { 0.0 }
    }

    /// Adds `scale * grad log pi(values)` to `grad`.
    fn add_log_prob_gradient(&self, values: &[f64], scale: f64, grad: &mut [f64]) {
        for (head, &v) in self.heads.iter().zip(values) {
            match *head {
                Head::Fixed(_) => {}
                Head::Softmax { offset, n, low } => {
                    let p = softmax(&self.theta[offset..offset + n]);
                    let chosen = (v as i64 - low) as usize;
                    for (k, pk) in p.iter().enumerate() {
                        let indicator = if k == chosen { 1.0 } else { 0.0 };
                        grad[offset + k] += scale * (indicator - pk);
                    }
                }
                Head::Gaussian {
                    offset,
                    low,
                    high,
                    log,
                    ..
                } => {
                    let u = Head::normalize(low, high, log, v);
                    let mu = self.theta[offset];
                    let var = (2.0 * self.theta[offset + 1]).exp();
                    let z2 = (u - mu) * (u - mu) / var;
                    grad[offset] += scale * (u - mu) / var;
                    if self.config.learn_std {
                        grad[offset + 1] += scale * (z2 - 1.0);
                    }
                }
            }
        }
    }

    /// Adds `scale * grad H(pi)` to `grad`.
    fn add_entropy_gradient(&self, scale: f64, grad: &mut [f64]) {
        for head in &self.heads {
            match *head {
                Head::Fixed(_) => {}
                Head::Softmax { offset, n, .. } => {
                    let p = softmax(&self.theta[offset..offset + n]);
                    // Values whose probability underflowed to 0 add nothing (not 0 * -inf).
                    let h: f64 = -p
                        .iter()
                        .filter(|&&q| q > 0.0)
                        .map(|&q| q * q.ln())
                        .sum::<f64>();
                    for (k, &pk) in p.iter().enumerate() {
                        if pk > 0.0 {
                            grad[offset + k] += scale * (-pk * (pk.ln() + h));
                        }
                    }
                }
                Head::Gaussian { offset, .. } => {
                    // H = log(std) + const.
                    if self.config.learn_std {
                        grad[offset + 1] += scale;
                    }
                }
            }
        }
    }

    /// One ascent step along `grad`.
    fn step(&mut self, grad: &[f64]) {
        self.steps += 1;
        let lr = self.config.lr;
        match self.config.optimizer {
            Optimizer::Sgd => {
                for (t, g) in self.theta.iter_mut().zip(grad) {
                    *t += lr * g;
                }
            }
            Optimizer::Adam => {
                let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
                let c1 = 1.0 - ADAM_BETA1.powi(t);
                let c2 = 1.0 - ADAM_BETA2.powi(t);
                let params = (self.theta.iter_mut())
                    .zip(&mut self.adam_m)
                    .zip(&mut self.adam_v)
                    .zip(grad);
                for (((theta, m), v), &g) in params {
                    *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * g;
                    *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * g * g;
                    *theta += lr * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPS);
                }
            }
        }
        for head in &self.heads {
            if let Head::Gaussian { offset, .. } = *head {
                self.theta[offset] = self.theta[offset].clamp(0.0, 1.0);
                self.theta[offset + 1] = self.theta[offset + 1].clamp(MIN_STD.ln(), MAX_STD.ln());
            }
        }
    }
}

impl Strategy for Reinforce {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config = Config::from_json(&ctx.config)?;
        kit::check_space("reinforce", &ctx.space)?;
        let (heads, theta) = build_policy(&ctx.space, config.std);
        let p = theta.len();
        Ok(Reinforce {
            space: ctx.space,
            config,
            heads,
            rng: kit::seeded(ctx.seed),
            theta,
            adam_m: vec![0.0; p],
            adam_v: vec![0.0; p],
            steps: 0,
            baseline: None,
            mean_square: None,
            worst_reward: None,
            losses: Vec::new(),
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        Ok((0..n)
            .map(|_| Proposal {
                values: self.sample(),
                fidelity: None,
                parent: None,
            })
            .collect())
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        // Check the whole batch first so an error leaves the policy untouched.
        for o in observations {
            self.space
                .check(&o.values)
                .map_err(|e| format!("reinforce was told about trial {}: {e}", o.trial_id))?;
        }
        let mut grad = vec![0.0; self.theta.len()];
        let mut used = 0usize;
        for o in observations {
            let Some(reward) = self.reward(o) else {
                continue;
            };
            let a = self.advantage(reward);
            self.add_log_prob_gradient(&o.values, a, &mut grad);
            used += 1;
        }
        if used == 0 {
            return Ok(());
        }
        for g in &mut grad {
            *g /= used as f64;
        }
        self.add_entropy_gradient(self.config.entropy, &mut grad);
        self.step(&grad);
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        let state = SavedState {
            rng: self.rng.clone(),
            theta: bits(&self.theta),
            adam_m: bits(&self.adam_m),
            adam_v: bits(&self.adam_v),
            steps: self.steps,
            baseline: self.baseline.map(f64::to_bits),
            mean_square: self.mean_square.map(f64::to_bits),
            worst_reward: self.worst_reward.map(f64::to_bits),
            losses: bits(&self.losses),
        };
        Ok(kit::save_state("reinforce", &state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: SavedState = kit::restore_state("reinforce", state)?;
        let p = self.theta.len();
        for (name, len) in [
            ("parameters", state.theta.len()),
            ("optimizer moments", state.adam_m.len()),
            ("optimizer moments", state.adam_v.len()),
        ] {
            if len != p {
                return Err(format!(
                    "reinforce's saved state does not fit the search space: {len} {name} for a policy of {p}"
                )
                .into());
            }
        }
        self.rng = state.rng;
        self.theta = from_bits(&state.theta);
        self.adam_m = from_bits(&state.adam_m);
        self.adam_v = from_bits(&state.adam_v);
        self.steps = state.steps;
        self.baseline = state.baseline.map(f64::from_bits);
        self.mean_square = state.mean_square.map(f64::from_bits);
        self.worst_reward = state.worst_reward.map(f64::from_bits);
        self.losses = from_bits(&state.losses);
        Ok(())
    }
}

nas_plugin::export_strategy!("reinforce", Reinforce);
