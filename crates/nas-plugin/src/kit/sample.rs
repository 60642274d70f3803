//! Drawing and changing values of a choice.

use rand::Rng;
use rand_distr::StandardNormal;

use super::float::json_exact;
use crate::messages::{ChoiceKind, SpaceDescriptor};

/// Draws one value uniformly for a choice (log-uniformly for log-scaled floats). The space
/// must have passed [`check_space`](super::check_space).
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

/// One uniform draw per choice, in choice order.
pub fn sample_point(space: &SpaceDescriptor, rng: &mut impl Rng) -> Vec<f64> {
    (space.choices.iter())
        .map(|c| sample_choice(&c.kind, rng))
        .collect()
}

/// Whether a choice has more than one value.
pub fn is_mutable(kind: &ChoiceKind) -> bool {
    match kind {
        ChoiceKind::Categorical { options } => options.len() > 1,
        ChoiceKind::Integer { low, high } => high > low,
        ChoiceKind::Float { low, high, .. } => high > low,
    }
}

/// The only value of a choice that has one (`None` when it [`is_mutable`]).
pub fn fixed_value(kind: &ChoiceKind) -> Option<f64> {
    match kind {
        ChoiceKind::Categorical { options } if options.len() == 1 => Some(0.0),
        ChoiceKind::Integer { low, high } if low == high => Some(*low as f64),
        ChoiceKind::Float { low, high, .. } if low == high => Some(*low),
        _ => None,
    }
}

/// Indices of the choices with more than one value: the ones a mutation can change.
pub fn mutable_choices(space: &SpaceDescriptor) -> Vec<usize> {
    (space.choices.iter().enumerate())
        .filter(|(_, c)| is_mutable(&c.kind))
        .map(|(i, _)| i)
        .collect()
}

/// Returns a value of `kind` different from `value`, which must be valid for it; the choice
/// must be [`is_mutable`]. Discrete choices move to another value uniformly; floats take a
/// Gaussian step of standard deviation `step` times the range (of its logarithm for
/// log-scaled choices), clipped to the range.
pub fn mutate_value(kind: &ChoiceKind, value: f64, step: f64, rng: &mut impl Rng) -> f64 {
    match kind {
        ChoiceKind::Categorical { options } => {
            // Draw among the n-1 other values by skipping the current one.
            let current = value as usize;
            let r = rng.random_range(0..options.len() - 1);
            (if r >= current { r + 1 } else { r }) as f64
        }
        ChoiceKind::Integer { low, high } => {
            let current = value as i64;
            let r = rng.random_range(*low..*high);
            (if r >= current { r + 1 } else { r }) as f64
        }
        ChoiceKind::Float { low, high, log } => {
            let to_value = |y: f64| {
                let y = if *log { y.exp() } else { y };
                y.clamp(*low, *high)
            };
            let (lo, hi, x) = if *log {
                (low.ln(), high.ln(), value.ln())
            } else {
                (*low, *high, value)
            };
            let sigma = step * (hi - lo);
            for _ in 0..64 {
                let step: f64 = rng.sample::<f64, _>(StandardNormal) * sigma;
                // At a bound the outward step clips back to the same value; go inward instead.
                for y in [x + step, x - step] {
                    let y = to_value(y.clamp(lo, hi));
                    if y != value {
                        return y;
                    }
                }
            }
            // Only reachable when the range is a few ulps wide.
            if value == *low { *high } else { *low }
        }
    }
}

/// The values one change of a choice reaches from `value`, without randomness: every other
/// option of a categorical choice, the integers one below and above, and for floats one step
/// of `step` times the range (of its logarithm for log-scaled choices) down and up, clipped
/// and made [`json_exact`].
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
