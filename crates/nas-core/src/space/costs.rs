//! What each option of a space's choices costs, for cost-aware one-shot search
//! (`cost_penalty`, as ProxylessNAS' and FBNet's latency terms).
//!
//! A network's cost is not a sum over its choices (a stage's width changes what the next
//! stage's blocks cost), so the estimate is the best additive one: the cost of option `o` of
//! choice `c` is its main effect, the mean cost of networks with choice `c` at `o` over a
//! fixed set of networks (every network of a small space, else 64 drawn with a fixed seed),
//! less the same for the choice's cheapest option. FBNet's per-layer lookup table is the
//! same kind of estimate. Costs are scaled so that each choice's costliest option adds up to
//! 1: a `cost_penalty` of 1 weighs the whole range of the estimate like one unit of loss.

use nas_plugin::ChoiceKind;
use nas_train::oneshot::CostMetric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SearchSpace, SpaceError};

/// Networks the main effects average over, when the space has more.
const BASES: usize = 64;

/// Per choice, per option: the option's estimated cost (0 for each choice's cheapest; the
/// costliest options of all choices sum to 1).
pub fn option_costs(
    space: &dyn SearchSpace,
    metric: CostMetric,
) -> Result<Vec<Vec<f64>>, SpaceError> {
    let kind = || space.descriptor().kind.clone();
    let options: Vec<usize> = space
        .descriptor()
        .choices
        .iter()
        .map(|c| match &c.kind {
            ChoiceKind::Categorical { options } => Ok(options.len()),
            _ => Err(SpaceError::NoSupernet { kind: kind() }),
        })
        .collect::<Result<_, _>>()?;
    let bases = bases(&options);
    let mut effects = Vec::with_capacity(options.len());
    for (c, &n) in options.iter().enumerate() {
        let mut row = Vec::with_capacity(n);
        for o in 0..n {
            let mut sum = 0.0;
            for mut v in bases.iter().cloned() {
                v[c] = o;
                sum += network_cost(space, &v, metric)?;
            }
            row.push(sum / bases.len() as f64);
        }
        let cheapest = row.iter().copied().fold(f64::INFINITY, f64::min);
        row.iter_mut().for_each(|v| *v -= cheapest);
        effects.push(row);
    }
    let range: f64 = effects
        .iter()
        .map(|row| row.iter().copied().fold(0.0, f64::max))
        .sum();
    if range > 0.0 {
        effects
            .iter_mut()
            .flat_map(|row| row.iter_mut())
            .for_each(|v| *v /= range);
    }
    Ok(effects)
}

/// The `metric` of the network of `choices` (an option index per choice), as the study's
/// static `flops` / `params` metrics count it.
pub fn network_cost(
    space: &dyn SearchSpace,
    choices: &[usize],
    metric: CostMetric,
) -> Result<f64, SpaceError> {
    let values: Vec<f64> = choices.iter().map(|&v| v as f64).collect();
    let graph = space.decode(&values)?;
    let n = match metric {
        CostMetric::Flops => graph.flops(),
        CostMetric::Params => graph.param_count(),
    }
    .map_err(|source| SpaceError::Graph {
        kind: space.descriptor().kind.clone(),
        source,
    })?;
    Ok(n as f64)
}

/// Every network of a space of at most [`BASES`], else [`BASES`] drawn with a fixed seed.
fn bases(options: &[usize]) -> Vec<Vec<usize>> {
    let total = options
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&t| t <= BASES);
    match total {
        Some(total) => (0..total)
            .map(|mut i| {
                options
                    .iter()
                    .map(|&n| {
                        let o = i % n;
                        i /= n;
                        o
                    })
                    .collect()
            })
            .collect(),
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            (0..BASES)
                .map(|_| options.iter().map(|&n| rng.random_range(0..n)).collect())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{CellSpace, CellSpaceConfig, ChainSpace, ChainSpaceConfig};

    #[test]
    fn chain_options_cost_more_the_larger_they_are() {
        let space = ChainSpace::new(&ChainSpaceConfig {
            input: Some(vec![1, 28, 28]),
            classes: Some(10),
            ..ChainSpaceConfig::default()
        })
        .unwrap();
        for metric in [CostMetric::Flops, CostMetric::Params] {
            let costs = option_costs(&space, metric).unwrap();
            assert_eq!(costs.len(), 20);
            for (c, row) in costs.iter().enumerate() {
                assert_eq!(row[0], 0.0, "the smallest option is the cheapest");
                // Depths, expansions and widths grow with their index; kernels do not
                // change the parameter count much but do grow.
                assert!(
                    row.windows(2).all(|w| w[1] > w[0]),
                    "choice {c} ({metric:?}): {row:?}"
                );
            }
            let sum: f64 = costs.iter().map(|r| r.last().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{metric:?}: {sum}");
        }
    }

    #[test]
    fn cell_convolutions_cost_and_parameter_free_operations_do_not() {
        let space = CellSpace::new(&CellSpaceConfig {
            input: Some(vec![1, 8, 8]),
            classes: Some(10),
            ..CellSpaceConfig::default()
        })
        .unwrap();
        let costs = option_costs(&space, CostMetric::Params).unwrap();
        // NB201 options: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3.
        for row in &costs {
            let free = row[0].max(row[1]).max(row[4]);
            assert!(row[3] > row[2] && row[2] > free, "{row:?}");
            assert_eq!(row.iter().copied().fold(f64::INFINITY, f64::min), 0.0);
        }
    }
}
