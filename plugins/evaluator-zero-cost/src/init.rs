//! Weight initializations the proxies' reference implementations score networks at.

use nas_graph::weights::{ParamRole, Weights, parameter_specs};
use nas_graph::{Graph, GraphError};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// How conv and linear tensors are drawn; BatchNorm is always scale 1, shift 0, mean 0, var 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `Weights::he_init`: weights N(0, 2 / fan_in), zero biases.
    He,
    /// PyTorch's default for `nn.Conv2d` / `nn.Linear` (what NASLib scores): weights and
    /// biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    TorchDefault,
    /// Zen-NAS: weights N(0, 1), zero biases.
    Gaussian,
}

/// Weights for every tensor of `graph`, deterministic for a seed (drawn in
/// [`parameter_specs`] order).
pub fn init_weights(graph: &Graph, init: Init, seed: u64) -> Result<Weights, GraphError> {
    if init == Init::He {
        return Weights::he_init(graph, seed);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = parameter_specs(graph)?;
    let mut w = Weights::new();
    for spec in &specs {
        let shape = IxDyn(&spec.shape);
        // A bias takes its bound from the weight of the same node.
        let fan_in = if spec.role == ParamRole::Bias {
            specs
                .iter()
                .find(|s| s.node == spec.node && s.role == ParamRole::Weight)
                .map_or(1, |s| s.fan_in)
        } else {
            spec.fan_in
        }
        .max(1);
        let t = match (spec.role, init) {
            (ParamRole::Weight | ParamRole::Bias, Init::TorchDefault) => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                let u = Uniform::new(-bound, bound).expect("bound is positive");
                ArrayD::from_shape_simple_fn(shape, || u.sample(&mut rng) as f32)
            }
            (ParamRole::Weight, _) => {
                let n = Normal::new(0.0f64, 1.0).expect("valid normal");
                ArrayD::from_shape_simple_fn(shape, || n.sample(&mut rng) as f32)
            }
            (ParamRole::BnScale | ParamRole::BnVar, _) => ArrayD::ones(shape),
            _ => ArrayD::zeros(shape),
        };
        w.insert(spec.name.clone(), t);
    }
    Ok(w)
}
