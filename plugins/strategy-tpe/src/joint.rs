//! Joint (multivariate) Parzen estimators, following Optuna 5.x's `_ParzenEstimator` with its
//! defaults (prior kernel on, magic clip on, endpoints off).
//!
//! A group of observations becomes a mixture of one kernel per observation plus a prior kernel.
//! Each kernel is a product over the choices that can vary: for a categorical choice, the
//! observed option gets an extra unit of mass over a smoothed uniform row; for an integer or
//! float choice, a normal truncated to the range (in log space for log-scaled floats) centred
//! on the observed value. A draw picks one kernel by weight and then draws every choice from
//! that kernel, so the values that appeared together in one good trial tend to be proposed
//! together: unlike independent per-choice densities, the model sees interactions.

use nas_plugin::ChoiceKind;
use nas_plugin::kit::fixed_value;
use nas_plugin::kit::rand::Rng;

use crate::parzen::{log_sum_exp, mixture_weights, normal_mass, pick, truncated_normal};

/// The joint density of one group of observations.
#[derive(Clone, Debug)]
pub struct Joint {
    /// Kernel weights, normalized; the last is the prior's.
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    /// One factor per choice: `None` for a choice that cannot vary.
    factors: Vec<Option<Factor>>,
}

/// One choice's factor of every kernel.
#[derive(Clone, Debug)]
enum Factor {
    Categorical(CategoricalKernels),
    Numeric(NumericKernels),
}

/// Optuna's categorical kernels: row `k` gives each option `prior_weight / kernels` plus 1 for
/// the option observation `k` took, normalized; the prior's row is uniform.
#[derive(Clone, Debug)]
struct CategoricalKernels {
    options: usize,
    /// The option each observation took (the prior kernel has none).
    observed: Vec<usize>,
    /// Probability of the observed option, and of any other one, in an observation's row.
    own: f64,
    other: f64,
}

/// Truncated normals in the choice's working space (the logarithm for log-scaled floats).
#[derive(Clone, Debug)]
struct NumericKernels {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Per kernel: -ln(mass inside the range) [- ln(sigma sqrt(2 pi)) if continuous].
    log_norm: Vec<f64>,
    /// The range in working space, widened by half a step on both sides for integers.
    low: f64,
    high: f64,
    /// `Some(1.0)` for integers: each value owns the interval of width 1 around it.
    step: Option<f64>,
    log: bool,
    /// Bounds of the choice in value space, for clamping after the inverse transform.
    value_low: f64,
    value_high: f64,
}

impl Joint {
    /// Fits the observations `points` (each a full value vector, oldest first) with their
    /// `weights` over the choices `kinds`.
    pub fn new(
        kinds: &[&ChoiceKind],
        points: &[&[f64]],
        weights: &[f64],
        prior_weight: f64,
    ) -> Self {
        debug_assert_eq!(points.len(), weights.len());
        let mix = mixture_weights(weights, prior_weight);
        let factors = (kinds.iter().enumerate())
            .map(|(j, kind)| {
                fixed_value(kind).is_none().then(|| {
                    let column: Vec<f64> = points.iter().map(|p| p[j]).collect();
                    Factor::new(kind, &column, prior_weight)
                })
            })
            .collect();
        Joint {
            log_weights: mix.iter().map(|w| w.ln()).collect(),
            weights: mix,
            factors,
        }
    }

    /// One draw: a kernel by weight, then every varying choice from that kernel; the choices
    /// that cannot vary are left as `fixed` has them.
    pub fn sample(&self, rng: &mut impl Rng, fixed: &[f64]) -> Vec<f64> {
        let k = pick(&self.weights, rng);
        (self.factors.iter().zip(fixed))
            .map(|(f, &v)| match f {
                None => v,
                Some(f) => f.sample(k, rng),
            })
            .collect()
    }

    /// Log density (a probability for the discrete choices) of a valid point.
    pub fn log_pdf(&self, values: &[f64]) -> f64 {
        let terms = (0..self.weights.len()).map(|k| {
            self.log_weights[k]
                + (self.factors.iter().zip(values))
                    .filter_map(|(f, &v)| f.as_ref().map(|f| f.log_pdf(k, v)))
                    .sum::<f64>()
        });
        log_sum_exp(terms)
    }
}

impl Factor {
    fn new(kind: &ChoiceKind, observations: &[f64], prior_weight: f64) -> Factor {
        match kind {
            ChoiceKind::Categorical { options } => {
                let k = options.len();
                let base = prior_weight / (observations.len() + 1) as f64;
                let row_sum = base * k as f64 + 1.0;
                Factor::Categorical(CategoricalKernels {
                    options: k,
                    observed: observations.iter().map(|&o| o as usize).collect(),
                    own: (base + 1.0) / row_sum,
                    other: base / row_sum,
                })
            }
            ChoiceKind::Integer { low, high } => Factor::Numeric(NumericKernels::new(
                observations,
                (*low as f64, *high as f64),
                Some(1.0),
                false,
            )),
            ChoiceKind::Float { low, high, log } => {
                Factor::Numeric(NumericKernels::new(observations, (*low, *high), None, *log))
            }
        }
    }

    fn sample(&self, k: usize, rng: &mut impl Rng) -> f64 {
        match self {
            Factor::Categorical(c) => match c.observed.get(k) {
                // The prior kernel.
                None => rng.random_range(0..c.options) as f64,
                Some(&o) => {
                    // The observed option, or one of the others uniformly.
                    let u = rng.random::<f64>();
                    if u < c.own || c.options == 1 {
                        o as f64
                    } else {
                        let r = rng.random_range(0..c.options - 1);
                        (if r >= o { r + 1 } else { r }) as f64
                    }
                }
            },
            Factor::Numeric(m) => m.sample(k, rng),
        }
    }

    fn log_pdf(&self, k: usize, value: f64) -> f64 {
        match self {
            Factor::Categorical(c) => match c.observed.get(k) {
                None => -(c.options as f64).ln(),
                Some(&o) if o == value as usize => c.own.ln(),
                Some(_) => c.other.ln(),
            },
            Factor::Numeric(m) => m.log_pdf(k, value),
        }
    }
}

impl NumericKernels {
    fn new(
        observations: &[f64],
        (value_low, value_high): (f64, f64),
        step: Option<f64>,
        log: bool,
    ) -> NumericKernels {
        let tr = |v: f64| if log { v.ln() } else { v };
        let half = step.unwrap_or(0.0) / 2.0;
        let (low, high) = (tr(value_low) - half, tr(value_high) + half);
        let range = high - low;
        let mut mus: Vec<f64> = observations.iter().map(|&v| tr(v)).collect();
        let mut sigmas = bandwidths(&mus, low, high);
        mus.push(0.5 * (low + high));
        sigmas.push(range);
        let log_norm = (mus.iter().zip(&sigmas))
            .map(|(&mu, &sigma)| {
                let z = normal_mass((low - mu) / sigma, (high - mu) / sigma).ln();
                let density = if step.is_some() {
                    0.0
                } else {
                    sigma.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln()
                };
                -z - density
            })
            .collect();
        NumericKernels {
            mus,
            sigmas,
            log_norm,
            low,
            high,
            step,
            log,
            value_low,
            value_high,
        }
    }

    fn sample(&self, k: usize, rng: &mut impl Rng) -> f64 {
        let mut x = truncated_normal(self.mus[k], self.sigmas[k], self.low, self.high, rng);
        if let Some(step) = self.step {
            let first = self.low + step / 2.0;
            x = first + ((x - first) / step).round() * step;
        }
        let v = if self.log { x.exp() } else { x };
        v.clamp(self.value_low, self.value_high)
    }

    fn log_pdf(&self, k: usize, value: f64) -> f64 {
        let x = if self.log { value.ln() } else { value };
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        let inner = match self.step {
            Some(step) => {
                normal_mass((x - step / 2.0 - mu) / sigma, (x + step / 2.0 - mu) / sigma).ln()
            }
            None => -0.5 * ((x - mu) / sigma).powi(2),
        };
        self.log_norm[k] + inner
    }
}

/// Optuna 5.x's bandwidth of each observation `mus` in `[low, high]`: the larger gap to its
/// sorted neighbours (the range ends standing in for missing ones), except that the outermost
/// observations take their inner gap only; clipped to `[range / min(100, n + 2), range]`.
pub fn bandwidths(mus: &[f64], low: f64, high: f64) -> Vec<f64> {
    let n = mus.len();
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
    let mut s = Vec::with_capacity(n + 2);
    s.push(low);
    s.extend(order.iter().map(|&i| mus[i]));
    s.push(high);
    let mut sorted: Vec<f64> = (0..n)
        .map(|i| (s[i + 1] - s[i]).max(s[i + 2] - s[i + 1]))
        .collect();
    if n >= 2 {
        sorted[0] = s[2] - s[1];
        sorted[n - 1] = s[n] - s[n - 1];
    }
    let range = high - low;
    let min_sigma = range / (100f64).min(2.0 + n as f64);
    let mut sigmas = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        sigmas[i] = sorted[rank].clamp(min_sigma, range);
    }
    sigmas
}
