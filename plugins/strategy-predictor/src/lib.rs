//! `predictor`: predictor-guided search (in the spirit of BANANAS, White et al. 2021, and
//! NPENAS, Wei et al. 2022).
//!
//! An ensemble of small neural networks (the *surrogate*) learns the first objective's loss
//! from an encoding of the choices: one-hot for categorical choices, the scaled value for
//! integer and float ones, plus the path encoding when the space is a cell DAG of the
//! NAS-Bench-201 kind (see [`encoding`]). Each proposal scores a pool of candidates with an
//! acquisition function over the ensemble and proposes the best one that has not been seen.
//!
//! - **Initial phase**: until `initial` complete trials are known (whoever proposed them), the
//!   proposals are uniform random.
//! - **Surrogate**: `ensemble` MLPs (ReLU, `hidden` widths, Adam on the squared error of the
//!   standardized loss), each from its own random initialization and its own minibatches. It
//!   is refitted when `refit_every` new complete trials have arrived since the last fit: a
//!   fresh network trains `3 x steps` minibatches, later refits continue from the current
//!   weights for `steps` minibatches (so a fit costs the same at 20 and at 2,000 trials).
//! - **Pool**: `pool` unseen candidates, a `mutation` share of them made by changing one or two
//!   choices of one of the `parents` best complete trials, the rest uniform random.
//! - **Acquisition** (`acquisition`): `its` (default; independent Thompson sampling: every
//!   candidate is scored by one ensemble member drawn at random), `ucb` (ensemble mean minus
//!   one standard deviation), `ei` (expected improvement over the best loss, from the ensemble
//!   mean and spread) or `mean` (greedy).
//! - Every choice vector proposed or told counts as seen and is never proposed again while an
//!   unseen one exists (finite spaces are enumerated when random draws keep hitting seen
//!   points); once every candidate has been seen, `ask` returns nothing.
//!
//! **Objectives**: the surrogate learns the *first* objective only (its loss, oriented so that
//! lower is better, hence minimize and maximize are both respected); further objectives are
//! ignored.
//!
//! **Metrics of other evaluators as inputs** (`features`). A metric such as a zero-cost proxy
//! from a cheap first stage of a cascade is an extra input of the surrogate. A candidate of the
//! pool has not been evaluated, so none of its metrics are known when it is scored; they
//! become known only after its cheap stage ran. The honest use made here: each feature metric
//! gets an auxiliary network that predicts it from the encoding, trained on *every* trial that
//! measured it, including trials pruned at the cheap stage (which a cascade has many more of
//! than complete ones). The surrogate trains on the measured values of its training trials
//! (the auxiliary prediction stands in where a trial lacks one) and scores pool candidates with
//! the auxiliary predictions. Nothing about a candidate is looked up that the study has not
//! measured. By default (`features` absent) the feature metrics are found automatically: every
//! metric reported by a trial that stopped before the end of the pipeline (`pruned`, or
//! `infeasible`, which carries the core's `params` and `flops`), other than the objectives, is
//! a metric a cheap stage measures. With a single-stage pipeline nothing is pruned and no
//! feature is used. `features = ["synflow"]` names them instead; `features = []` turns them off.
//! A feature is used once at least 5 trials measured it with some spread; positive metrics
//! spanning more than two orders of magnitude are learned on a log scale.
//!
//! The whole state (generator, observations, surrogate weights) is saved, so a restored
//! instance proposes bit for bit what the saved one would have.
//!
//! Options (the strategy's TOML table), all optional:
//! - `initial` (default 10): complete trials before the surrogate is used.
//! - `ensemble` (default 5): networks in the ensemble.
//! - `hidden` (default `[32, 32]`): widths of the hidden layers (1 to 4 layers).
//! - `steps` (default 200): minibatches per refit (a fresh network: three times as many).
//! - `refit_every` (default 1): new complete trials between refits.
//! - `pool` (default 200): candidates scored per proposal.
//! - `mutation` (default 0.5): share of the pool mutated from the best trials, in [0, 1].
//! - `parents` (default 10): how many of the best complete trials are mutated.
//! - `acquisition` (default `"its"`): `"its"`, `"ucb"`, `"ei"` or `"mean"`.
//! - `encoding` (default `"auto"`): `"auto"` (one-hot and scaled values, plus paths for a
//!   cell DAG), `"onehot"` or `"path"` (cell DAGs only).
//! - `features` (default: automatic, see above): metric names used as extra inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nas_plugin::kit::{self, bits, json_exact_point, options, rand::Rng};
use nas_plugin::{
    ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext,
    TrialState,
};
use serde::{Deserialize, Serialize};

pub mod encoding;
pub mod mlp;
pub mod surrogate;
#[cfg(test)]
mod tests;

use encoding::{Encoder, Which};
use surrogate::{Surrogate, TrainRow};

/// The plugin's name: `plugin = "predictor"` in a study file.
pub const NAME: &str = "predictor";

/// A float mutation is a Gaussian step of this fraction of the choice's range.
const FLOAT_STEP: f64 = 0.1;
/// Uniform draws before a random proposal falls back to enumerating the unseen candidates.
const RANDOM_TRIES: usize = 64;
/// Largest finite space enumerated to find an unseen candidate.
const ENUMERATE_LIMIT: u64 = 1 << 20;
/// Draws per pool slot before the pool is left smaller.
const POOL_TRIES: usize = 4;

/// How a candidate of the pool is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Acquisition {
    /// Independent Thompson sampling: one random ensemble member per candidate.
    Its,
    /// Ensemble mean minus one standard deviation (lower confidence bound of the loss).
    Ucb,
    /// Expected improvement over the best loss, Gaussian from ensemble mean and spread.
    Ei,
    /// Ensemble mean (greedy).
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingOption {
    Auto,
    Onehot,
    Path,
}

/// The strategy's options.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "options::non_negative_int")]
    pub initial: usize,
    #[serde(deserialize_with = "options::positive_int")]
    pub ensemble: usize,
    pub hidden: Vec<usize>,
    #[serde(deserialize_with = "options::positive_int")]
    pub steps: usize,
    #[serde(deserialize_with = "options::positive_int")]
    pub refit_every: usize,
    #[serde(deserialize_with = "options::positive_int")]
    pub pool: usize,
    pub mutation: f64,
    #[serde(deserialize_with = "options::positive_int")]
    pub parents: usize,
    pub acquisition: Acquisition,
    pub encoding: EncodingOption,
    /// `None`: found automatically.
    pub features: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial: 10,
            ensemble: 5,
            hidden: vec![32, 32],
            steps: 200,
            refit_every: 1,
            pool: 200,
            mutation: 0.5,
            parents: 10,
            acquisition: Acquisition::Its,
            encoding: EncodingOption::Auto,
            features: None,
        }
    }
}

impl Config {
    fn check(&self) -> Result<(), String> {
        options::check(
            NAME,
            "mutation",
            (0.0..=1.0).contains(&self.mutation),
            "a number in [0, 1]",
            self.mutation,
        )?;
        let hidden_ok = (1..=4).contains(&self.hidden.len())
            && self.hidden.iter().all(|&w| (1..=1024).contains(&w));
        options::check(
            NAME,
            "hidden",
            hidden_ok,
            "a list of 1 to 4 layer widths, each 1 to 1024 (e.g. [32, 32])",
            format!("{:?}", self.hidden),
        )?;
        if let Some(f) = &self.features
            && let Some(bad) = f.iter().find(|n| n.trim().is_empty())
        {
            return Err(format!(
                "{NAME} option `features` must list metric names, not `{bad:?}`"
            ));
        }
        Ok(())
    }
}

/// What the strategy knows about one candidate: its loss when complete, and the metrics it
/// keeps of it (feature candidates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Row {
    trial_id: u64,
    values: Vec<f64>,
    /// The first objective's loss (lower is better), when the trial completed with one.
    loss: Option<f64>,
    metrics: BTreeMap<String, f64>,
}

/// Everything that changes during the search: `save` returns it, `restore` reads it back.
/// All floats in it are finite (values in the space, finite losses and metrics only), so JSON
/// keeps them exactly; the network weights are saved as bit patterns anyway.
#[derive(Clone, Serialize, Deserialize)]
struct State {
    rng: kit::Rng,
    /// Every candidate with a loss or a kept metric, in the order told.
    rows: Vec<Row>,
    /// Every choice vector proposed or told, as bit patterns.
    seen: BTreeSet<Vec<u64>>,
    /// Feature metrics found so far (automatic mode), sorted.
    found_features: BTreeSet<String>,
    /// Complete rows when the surrogate was last fitted.
    fitted_at: usize,
    surrogate: Option<Surrogate>,
}

pub struct Predictor {
    space: SpaceDescriptor,
    config: Config,
    encoder: Encoder,
    mutable: Vec<usize>,
    objectives: BTreeSet<String>,
    state: State,
    /// Row index by value bits (rebuilt on restore).
    index: HashMap<Vec<u64>, usize>,
}

/// A pool candidate and the trial it was mutated from.
struct Candidate {
    values: Vec<f64>,
    parent: Option<u64>,
}

impl Predictor {
    /// Complete trials with a usable loss known so far.
    pub fn complete(&self) -> usize {
        self.state.rows.iter().filter(|r| r.loss.is_some()).count()
    }

    /// The encoder in use (its length says whether paths are encoded).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The feature metrics the surrogate currently uses as extra inputs.
    pub fn features_in_use(&self) -> Vec<String> {
        self.state
            .surrogate
            .as_ref()
            .map(|s| s.feature_names())
            .unwrap_or_default()
    }

    /// The surrogate's ensemble-mean prediction of the loss of `values`, if fitted.
    pub fn predict(&self, values: &[f64]) -> Option<f64> {
        let s = self.state.surrogate.as_ref()?;
        let x = s.input(&self.encoder, values, None);
        Some(s.unscale(stats(&s.predictions(&x)).0))
    }

    /// Fits the surrogate now on every complete trial told (what `ask` does when due).
    pub fn fit(&mut self) {
        let names = self.feature_names();
        let rows: Vec<TrainRow> = (self.state.rows.iter())
            .map(|r| TrainRow {
                values: &r.values,
                loss: r.loss,
                metrics: &r.metrics,
            })
            .collect();
        let mut surrogate = self.state.surrogate.take();
        Surrogate::fit(
            &mut surrogate,
            &self.encoder,
            &rows,
            &names,
            &self.config,
            &mut self.state.rng,
        );
        self.state.surrogate = surrogate;
        self.state.fitted_at = self.complete();
    }

    fn feature_names(&self) -> Vec<String> {
        match &self.config.features {
            Some(names) => names.clone(),
            None => self.state.found_features.iter().cloned().collect(),
        }
    }

    fn is_seen(&self, values: &[f64]) -> bool {
        self.state.seen.contains(&bits(values))
    }

    /// A uniform random unseen candidate; `None` when every candidate has been seen.
    fn random_unseen(&mut self) -> Option<Vec<f64>> {
        for _ in 0..RANDOM_TRIES {
            let p = json_exact_point(
                &self.space,
                kit::sample_point(&self.space, &mut self.state.rng),
            );
            if !self.is_seen(&p) {
                return Some(p);
            }
        }
        let size = self.space.size()?;
        if size > ENUMERATE_LIMIT {
            // Too many to list: accept a seen point rather than loop (a float space never
            // gets here, an integer one this large rarely).
            return Some(kit::sample_point(&self.space, &mut self.state.rng));
        }
        let unseen = self.unseen_points(size);
        if unseen.is_empty() {
            return None;
        }
        let i = self.state.rng.random_range(0..unseen.len());
        Some(unseen[i].clone())
    }

    /// Every unseen point of a finite space of `size` points, in enumeration order.
    fn unseen_points(&self, size: u64) -> Vec<Vec<f64>> {
        let values: Vec<Vec<f64>> = (self.space.choices.iter())
            .map(|c| match &c.kind {
                ChoiceKind::Categorical { options } => {
                    (0..options.len()).map(|o| o as f64).collect()
                }
                ChoiceKind::Integer { low, high } => (*low..=*high).map(|v| v as f64).collect(),
                ChoiceKind::Float { low, .. } => vec![*low], // size() is None for floats
            })
            .collect();
        let mut out = Vec::new();
        for mut k in 0..size {
            let mut point = Vec::with_capacity(values.len());
            for v in &values {
                point.push(v[(k % v.len() as u64) as usize]);
                k /= v.len() as u64;
            }
            if !self.is_seen(&point) {
                out.push(point);
            }
        }
        out
    }

    /// A child of one of the best complete trials: one or two choices changed.
    fn mutant(&mut self, parents: &[usize]) -> Option<Candidate> {
        if parents.is_empty() || self.mutable.is_empty() {
            return None;
        }
        let rng = &mut self.state.rng;
        let parent = &self.state.rows[parents[rng.random_range(0..parents.len())]];
        let changes = if self.mutable.len() >= 2 && rng.random_bool(0.5) {
            2
        } else {
            1
        };
        let mut values = parent.values.clone();
        for i in kit::rand::seq::index::sample(rng, self.mutable.len(), changes) {
            let c = self.mutable[i];
            values[c] = kit::mutate_value(&self.space.choices[c].kind, values[c], FLOAT_STEP, rng);
        }
        Some(Candidate {
            values: json_exact_point(&self.space, values),
            parent: Some(parent.trial_id),
        })
    }

    /// `pool` distinct unseen candidates at most: mutants of the best trials and random ones.
    fn pool(&mut self) -> Vec<Candidate> {
        let mut ranked: Vec<usize> = (0..self.state.rows.len())
            .filter(|&i| self.state.rows[i].loss.is_some())
            .collect();
        ranked.sort_by(|&a, &b| {
            let (la, lb) = (self.state.rows[a].loss, self.state.rows[b].loss);
            la.unwrap_or(f64::INFINITY)
                .total_cmp(&lb.unwrap_or(f64::INFINITY))
                .then(a.cmp(&b))
        });
        ranked.truncate(self.config.parents);
        let mutants = (self.config.pool as f64 * self.config.mutation).round() as usize;
        let mut pool = Vec::with_capacity(self.config.pool);
        let mut in_pool = BTreeSet::new();
        for slot in 0..self.config.pool {
            for _ in 0..POOL_TRIES {
                let c = if slot < mutants {
                    self.mutant(&ranked)
                } else {
                    None
                };
                let c = c.unwrap_or_else(|| Candidate {
                    values: json_exact_point(
                        &self.space,
                        kit::sample_point(&self.space, &mut self.state.rng),
                    ),
                    parent: None,
                });
                let key = bits(&c.values);
                if !self.state.seen.contains(&key) && in_pool.insert(key) {
                    pool.push(c);
                    break;
                }
            }
        }
        pool
    }

    /// Acquisition values of the candidates (lower is better).
    fn acquire(&mut self, pool: &[Candidate]) -> Vec<f64> {
        let Some(s) = self.state.surrogate.as_ref() else {
            return vec![0.0; pool.len()];
        };
        let best = s.best_scaled();
        let mut out = Vec::with_capacity(pool.len());
        for c in pool {
            let x = s.input(&self.encoder, &c.values, None);
            let preds = s.predictions(&x);
            let (mean, std) = stats(&preds);
            out.push(match self.config.acquisition {
                Acquisition::Its => preds[self.state.rng.random_range(0..preds.len())],
                Acquisition::Ucb => mean - std,
                Acquisition::Mean => mean,
                Acquisition::Ei => -expected_improvement(mean, std, best),
            });
        }
        out
    }

    fn propose(&mut self, n: usize) -> Vec<Proposal> {
        let mut out = Vec::with_capacity(n);
        if self.complete() < self.config.initial.max(1) {
            self.fill_random(&mut out, n);
            return out;
        }
        let complete = self.complete();
        if self.state.surrogate.is_none()
            || complete >= self.state.fitted_at + self.config.refit_every
        {
            self.fit();
        }
        let pool = self.pool();
        let scores = self.acquire(&pool);
        let mut order: Vec<usize> = (0..pool.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        for i in order.into_iter().take(n) {
            let c = &pool[i];
            self.state.seen.insert(bits(&c.values));
            out.push(Proposal {
                values: c.values.clone(),
                fidelity: None,
                parent: c.parent,
            });
        }
        // A pool left empty (every draw seen): random unseen candidates instead.
        self.fill_random(&mut out, n);
        out
    }

    /// Appends random unseen candidates to `out` until it holds `n` or none is left.
    fn fill_random(&mut self, out: &mut Vec<Proposal>, n: usize) {
        while out.len() < n {
            let Some(values) = self.random_unseen() else {
                break;
            };
            self.state.seen.insert(bits(&values));
            out.push(Proposal {
                values,
                fidelity: None,
                parent: None,
            });
        }
    }

    fn rebuild_index(&mut self) {
        self.index = (self.state.rows.iter().enumerate())
            .map(|(i, r)| (bits(&r.values), i))
            .collect();
    }
}

/// Mean and (population) standard deviation.
pub fn stats(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Expected improvement below `best` of a Gaussian loss (mean, std).
pub fn expected_improvement(mean: f64, std: f64, best: f64) -> f64 {
    if std <= 1e-12 {
        return (best - mean).max(0.0);
    }
    let z = (best - mean) / std;
    (best - mean) * normal_cdf(z) + std * (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

impl Strategy for Predictor {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        let config: Config = options::parse_options(NAME, &ctx.config)?;
        config.check()?;
        kit::check_space(NAME, &ctx.space)?;
        let which = match config.encoding {
            EncodingOption::Auto => Which::Auto,
            EncodingOption::Onehot => Which::OneHot,
            EncodingOption::Path => Which::Path,
        };
        let encoder = Encoder::new(&ctx.space, which)
            .map_err(|e| format!("{NAME} option `encoding`: {e}"))?;
        Ok(Predictor {
            mutable: kit::mutable_choices(&ctx.space),
            objectives: ctx.objectives.iter().map(|o| o.metric.clone()).collect(),
            space: ctx.space,
            config,
            encoder,
            state: State {
                rng: kit::seeded(ctx.seed),
                rows: Vec::new(),
                seen: BTreeSet::new(),
                found_features: BTreeSet::new(),
                fitted_at: 0,
                surrogate: None,
            },
            index: HashMap::new(),
        })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(self.propose(n))
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        for o in observations {
            self.space
                .check(&o.values)
                .map_err(|e| format!("{NAME} was told about trial {}: {e}", o.trial_id))?;
        }
        for o in observations {
            let key = bits(&o.values);
            self.state.seen.insert(key.clone());
            let loss = (o.state == TrialState::Complete)
                .then(|| o.losses.first().copied().filter(|l| l.is_finite()))
                .flatten();
            // Automatic features: what a trial that stopped before the end carries.
            if self.config.features.is_none()
                && matches!(o.state, TrialState::Pruned | TrialState::Infeasible)
            {
                for (name, v) in &o.metrics {
                    if v.is_finite() && !self.objectives.contains(name) {
                        self.state.found_features.insert(name.clone());
                    }
                }
            }
            let metrics: BTreeMap<String, f64> = (o.metrics.iter())
                .filter(|(name, v)| {
                    v.is_finite()
                        && !self.objectives.contains(*name)
                        && self
                            .config
                            .features
                            .as_ref()
                            .is_none_or(|f| f.contains(name))
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            match self.index.get(&key) {
                Some(&i) => {
                    // Told again (a cached duplicate, or another fidelity): fill in what the
                    // first report lacked.
                    let row = &mut self.state.rows[i];
                    if row.loss.is_none() && loss.is_some() {
                        row.loss = loss;
                    }
                    for (k, v) in metrics {
                        row.metrics.entry(k).or_insert(v);
                    }
                }
                None if loss.is_some() || !metrics.is_empty() => {
                    self.index.insert(key, self.state.rows.len());
                    self.state.rows.push(Row {
                        trial_id: o.trial_id,
                        values: o.values.clone(),
                        loss,
                        metrics,
                    });
                }
                None => {}
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state(NAME, &self.state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        let state: State = kit::restore_state(NAME, state)?;
        for r in &state.rows {
            self.space.check(&r.values).map_err(|e| {
                format!(
                    "{NAME}: the saved state does not fit the search space (trial {}): {e}",
                    r.trial_id
                )
            })?;
        }
        if let Some(s) = &state.surrogate {
            s.check(self.encoder.len()).map_err(|e| {
                format!("{NAME}: the saved surrogate does not fit this space and options: {e}")
            })?;
        }
        self.state = state;
        self.rebuild_index();
        Ok(())
    }
}

nas_plugin::export_strategy!(NAME, Predictor);
