//! Univariate Parzen estimators, following Optuna's `_ParzenEstimator` with its defaults
//! (prior kernel on, magic clip on, endpoints off), with the bandwidth rule of earlier Optuna
//! releases, which counted the prior's mean among an observation's neighbours (Optuna 5.x no
//! longer does; the joint estimators of [`crate::joint`] follow 5.x).

use nas_plugin::ChoiceKind;
use nas_plugin::kit::rand::Rng;
use nas_plugin::kit::rand_distr::StandardNormal;

/// Rejection draws before a truncated normal falls back to its clamped mean. Each kernel keeps
/// at least ~34% of its mass inside the range (mean inside, sigma >= range / 100 ... range),
/// so this is never reached in practice.
const MAX_REJECTIONS: usize = 1000;

/// Optuna's default observation weights: flat for the 25 most recent, a linear ramp down to
/// `1/n` for older ones. `n` observations, oldest first.
pub fn default_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let start = 1.0 / n as f64;
    let mut w: Vec<f64> = match ramp {
        0 => vec![],
        1 => vec![start],
        _ => (0..ramp)
            .map(|i| start + i as f64 * (1.0 - start) / (ramp - 1) as f64)
            .collect(),
    };
    w.resize(n, 1.0);
    w
}

/// The density of one choice fitted to a group of observations.
#[derive(Clone, Debug)]
pub enum Estimator {
    /// A mixture of categorical kernels is itself categorical: one probability per option.
    Categorical(Vec<f64>),
    Numeric(Mixture),
}

/// A mixture of normals truncated to the choice's range, in the choice's working space (the
/// logarithm for log-scaled floats).
#[derive(Clone, Debug)]
pub struct Mixture {
    weights: Vec<f64>,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Per kernel: ln(weight) - ln(mass inside the range) [- ln(sigma sqrt(2 pi)) if continuous].
    log_scale: Vec<f64>,
    low: f64,
    high: f64,
    /// `Some(1.0)` for integers: each value owns the interval of width 1 around it.
    step: Option<f64>,
    log: bool,
    /// Bounds of the choice in value space, for clamping after the inverse transform.
    value_low: f64,
    value_high: f64,
}

impl Estimator {
    /// Fits `observations` (values of this choice, oldest first) with their `weights`.
    pub fn new(
        kind: &ChoiceKind,
        observations: &[f64],
        weights: &[f64],
        prior_weight: f64,
    ) -> Self {
        debug_assert_eq!(observations.len(), weights.len());
        let n = observations.len();
        let mix = mixture_weights(weights, prior_weight);

        match kind {
            ChoiceKind::Categorical { options } => {
                let k = options.len();
                let kernels = (n + 1) as f64;
                let base = prior_weight / kernels;
                let row_sum = base * k as f64 + 1.0;
                let mut p = vec![0.0; k];
                for (&o, &w) in observations.iter().zip(&mix) {
                    for (c, pc) in p.iter_mut().enumerate() {
                        let own = if c == o as usize { 1.0 } else { 0.0 };
                        *pc += w * (base + own) / row_sum;
                    }
                }
                let prior = mix[n] / k as f64;
                p.iter_mut().for_each(|pc| *pc += prior);
                Estimator::Categorical(p)
            }
            ChoiceKind::Integer { low, high } => Estimator::Numeric(Mixture::new(
                observations,
                mix,
                (*low as f64, *high as f64),
                Some(1.0),
                false,
            )),
            ChoiceKind::Float { low, high, log } => {
                Estimator::Numeric(Mixture::new(observations, mix, (*low, *high), None, *log))
            }
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Estimator::Categorical(p) => pick(p, rng) as f64,
            Estimator::Numeric(m) => m.sample(rng),
        }
    }

    /// Log density (or log probability for discrete choices) of a valid value.
    pub fn log_pdf(&self, value: f64) -> f64 {
        match self {
            Estimator::Categorical(p) => p[value as usize].ln(),
            Estimator::Numeric(m) => m.log_pdf(value),
        }
    }
}

/// A normal draw truncated to `[a, b]`, by rejection; the clamped mean if every draw falls
/// outside.
/// Mixture weights of a Parzen estimator: one per observation plus the prior's (the only one
/// without observations), normalized.
pub(crate) fn mixture_weights(weights: &[f64], prior_weight: f64) -> Vec<f64> {
    let mut mix: Vec<f64> = weights.to_vec();
    mix.push(if weights.is_empty() {
        1.0
    } else {
        prior_weight
    });
    let total: f64 = mix.iter().sum();
    mix.iter_mut().for_each(|w| *w /= total);
    mix
}

pub(crate) fn truncated_normal(mu: f64, sigma: f64, a: f64, b: f64, rng: &mut impl Rng) -> f64 {
    for _ in 0..MAX_REJECTIONS {
        let y = mu + sigma * rng.sample::<f64, _>(StandardNormal);
        if (a..=b).contains(&y) {
            return y;
        }
    }
    mu.clamp(a, b)
}

/// Index drawn with probability proportional to `weights` (which sum to about 1).
pub(crate) fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    // Rounding can leave `u` just above the last weight.
    weights.len() - 1
}

impl Mixture {
    fn new(
        observations: &[f64],
        weights: Vec<f64>,
        (value_low, value_high): (f64, f64),
        step: Option<f64>,
        log: bool,
    ) -> Mixture {
        let tr = |v: f64| if log { v.ln() } else { v };
        let (low, high) = (tr(value_low), tr(value_high));
        let step_or_0 = step.unwrap_or(0.0);
        let range = high - low + step_or_0;
        let prior_mu = 0.5 * (low + high);
        let mut mus: Vec<f64> = observations.iter().map(|&v| tr(v)).collect();
        let n = mus.len();

        // Bandwidth of each observation: the larger gap to its sorted neighbours (the prior's
        // mean included, the range ends standing in for missing neighbours), except that the
        // outermost kernels take their inner gap only.
        let mut sigmas = vec![0.0; n];
        if n > 0 {
            let mut with_prior = mus.clone();
            with_prior.push(prior_mu);
            let m = with_prior.len();
            let mut order: Vec<usize> = (0..m).collect();
            order.sort_by(|&a, &b| with_prior[a].total_cmp(&with_prior[b]));
            let mut s = Vec::with_capacity(m + 2);
            s.push(low - step_or_0 / 2.0);
            s.extend(order.iter().map(|&i| with_prior[i]));
            s.push(high + step_or_0 / 2.0);
            let mut sorted_sigmas: Vec<f64> = (0..m)
                .map(|i| (s[i + 1] - s[i]).max(s[i + 2] - s[i + 1]))
                .collect();
            if m >= 2 {
                sorted_sigmas[0] = s[2] - s[1];
                sorted_sigmas[m - 1] = s[m] - s[m - 1];
            }
            let min_sigma = range / (100f64).min(2.0 + n as f64);
            for (rank, &i) in order.iter().enumerate() {
                if i < n {
                    sigmas[i] = sorted_sigmas[rank].clamp(min_sigma, range);
                }
            }
        }
        mus.push(prior_mu);
        sigmas.push(range);

        let (a, b) = (low - step_or_0 / 2.0, high + step_or_0 / 2.0);
        let log_scale = (0..mus.len())
            .map(|k| {
                let (mu, sigma) = (mus[k], sigmas[k]);
                let z = normal_mass((a - mu) / sigma, (b - mu) / sigma).ln();
                let density = if step.is_some() {
                    0.0
                } else {
                    sigma.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln()
                };
                weights[k].ln() - z - density
            })
            .collect();
        Mixture {
            weights,
            mus,
            sigmas,
            log_scale,
            low,
            high,
            step,
            log,
            value_low,
            value_high,
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let k = pick(&self.weights, rng);
        let half = self.step.unwrap_or(0.0) / 2.0;
        let (a, b) = (self.low - half, self.high + half);
        let mut x = truncated_normal(self.mus[k], self.sigmas[k], a, b, rng);
        if let Some(step) = self.step {
            x = self.low + ((x - self.low) / step).round() * step;
        }
        let v = if self.log { x.exp() } else { x };
        v.clamp(self.value_low, self.value_high)
    }

    fn log_pdf(&self, value: f64) -> f64 {
        let x = if self.log { value.ln() } else { value };
        let terms = (0..self.mus.len()).map(|k| {
            let (mu, sigma) = (self.mus[k], self.sigmas[k]);
            let inner = match self.step {
                Some(step) => {
                    normal_mass((x - step / 2.0 - mu) / sigma, (x + step / 2.0 - mu) / sigma).ln()
                }
                None => -0.5 * ((x - mu) / sigma).powi(2),
            };
            self.log_scale[k] + inner
        });
        log_sum_exp(terms)
    }
}

/// P(a <= Z <= b) for a standard normal Z, taking the tail that keeps precision.
pub fn normal_mass(a: f64, b: f64) -> f64 {
    let r = std::f64::consts::FRAC_1_SQRT_2;
    if a >= 0.0 {
        0.5 * (libm::erfc(a * r) - libm::erfc(b * r))
    } else if b <= 0.0 {
        0.5 * (libm::erfc(-b * r) - libm::erfc(-a * r))
    } else {
        1.0 - 0.5 * libm::erfc(-a * r) - 0.5 * libm::erfc(b * r)
    }
}

/// ln(sum(exp(t))) without overflow; terms of -inf (underflowed kernels) contribute nothing.
pub(crate) fn log_sum_exp(terms: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = terms.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + terms.map(|t| (t - max).exp()).sum::<f64>().ln()
}
