//! Named weight tensors of a graph and their initialization.
//!
//! Names: `n{id}.weight` / `n{id}.bias` for `Conv2d`, `Conv1d`, `Linear` and `Dense`;
//! `n{id}.scale`, `n{id}.bias`, `n{id}.mean`, `n{id}.var` for `BatchNorm` (`LayerNorm`: scale and
//! bias); `n{id}.weight` for the table of an `Embedding`, a learned `PositionalEncoding` and the
//! tensor of a `Parameter`. Shapes follow ONNX: conv weights are `[C_out, C_in / groups, k_h,
//! k_w]` (`Conv1d`: `[C_out, C_in, k]`), linear and dense weights `[out, in]` (used with `Gemm
//! transB=1`), embedding tables `[vocab, dim]`.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op, ParamInit};

/// What a tensor is to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// Conv, Linear or Dense weight, or the tensor of a [`Op::Parameter`]; the only role
    /// weight decay applies to.
    Weight,
    /// Conv, Linear or Dense bias.
    Bias,
    /// BatchNorm or LayerNorm affine scale (gamma).
    BnScale,
    /// BatchNorm or LayerNorm affine shift (beta).
    BnBias,
    /// BatchNorm running mean (a buffer, not trained by gradient).
    BnMean,
    /// BatchNorm running variance (a buffer, not trained by gradient).
    BnVar,
    /// A lookup table: an `Embedding`'s `[vocab, dim]` rows or a learned positional encoding.
    Table,
}

impl ParamRole {
    /// The name suffix after `n{id}.`.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight | ParamRole::Table => "weight",
            ParamRole::Bias | ParamRole::BnBias => "bias",
            ParamRole::BnScale => "scale",
            ParamRole::BnMean => "mean",
            ParamRole::BnVar => "var",
        }
    }

    /// Whether gradient descent updates it (running statistics are not).
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::BnMean | ParamRole::BnVar)
    }
}

/// The tensor name of `role` for node `node`, e.g. `n3.weight`.
pub fn param_name(node: NodeId, role: ParamRole) -> String {
    format!("n{node}.{}", role.suffix())
}

/// One named tensor a graph needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub node: NodeId,
    pub role: ParamRole,
    /// Inputs feeding one output element (for He init); 0 for biases and BN tensors.
    pub fan_in: usize,
    /// How [`Weights::he_init`] starts it.
    pub init: ParamInit,
}

/// Every tensor the graph needs, in node order (then weight before bias; BN scale, bias,
/// mean, var). Covers all nodes, reachable from the output or not, like
/// [`Graph::param_count`].
pub fn parameter_specs(graph: &Graph) -> Result<Vec<ParamSpec>, GraphError> {
    let shapes = graph.shapes()?;
    let mut specs = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        let mut push_init = |role: ParamRole, shape: Vec<usize>, fan_in: usize, init| {
            specs.push(ParamSpec {
                name: param_name(id, role),
                shape,
                node: id,
                role,
                fan_in,
                init,
            })
        };
        let mut push = |role: ParamRole, shape: Vec<usize>, fan_in: usize| {
            let init = match role {
                ParamRole::Weight => ParamInit::He,
                ParamRole::BnScale | ParamRole::BnVar => ParamInit::Ones,
                // nn.Embedding's N(0, 1).
                ParamRole::Table => ParamInit::Normal { std: 1.0 },
                ParamRole::Bias | ParamRole::BnBias | ParamRole::BnMean => ParamInit::Zeros,
            };
            push_init(role, shape, fan_in, init)
        };
        match &node.op {
            Op::Conv2d {
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let cin = shapes[node.inputs[0]][0] / groups;
                let fan_in = cin * kernel[0] * kernel[1];
                push(
                    ParamRole::Weight,
                    vec![*out_channels, cin, kernel[0], kernel[1]],
                    fan_in,
                );
                if *bias {
                    push(ParamRole::Bias, vec![*out_channels], 0);
                }
            }
            Op::Linear { out_features, bias } => {
                let fin = shapes[node.inputs[0]][0];
                push(ParamRole::Weight, vec![*out_features, fin], fin);
                if *bias {
                    push(ParamRole::Bias, vec![*out_features], 0);
                }
            }
            Op::Dense { out_features, bias } => {
                let fin = *shapes[node.inputs[0]].last().expect("validated shapes");
                push(ParamRole::Weight, vec![*out_features, fin], fin);
                if *bias {
                    push(ParamRole::Bias, vec![*out_features], 0);
                }
            }
            Op::Conv1d {
                out_channels,
                kernel,
                bias,
                ..
            } => {
                let cin = shapes[node.inputs[0]][0];
                push(
                    ParamRole::Weight,
                    vec![*out_channels, cin, *kernel],
                    cin * kernel,
                );
                if *bias {
                    push(ParamRole::Bias, vec![*out_channels], 0);
                }
            }
            Op::LayerNorm { .. } => {
                let f = *shapes[id].last().expect("validated shapes");
                push(ParamRole::BnScale, vec![f], 0);
                push(ParamRole::BnBias, vec![f], 0);
            }
            Op::Embedding { vocab, dim } => push(ParamRole::Table, vec![*vocab, *dim], 0),
            Op::PositionalEncoding { learned: true } => {
                push(ParamRole::Table, shapes[id].clone(), 0)
            }
            Op::Parameter { shape, init } => {
                // Read as `x @ W`: W's second-last axis meets x.
                let fan_in = if shape.len() >= 2 {
                    shape[shape.len() - 2]
                } else {
                    1
                };
                push_init(ParamRole::Weight, shape.clone(), fan_in, *init);
            }
            Op::BatchNorm { .. } => {
                let c = shapes[id][0];
                for role in [
                    ParamRole::BnScale,
                    ParamRole::BnBias,
                    ParamRole::BnMean,
                    ParamRole::BnVar,
                ] {
                    push(role, vec![c], 0);
                }
            }
            _ => {}
        }
    }
    Ok(specs)
}

/// Named f32 tensors, ordered by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl Weights {
    pub fn new() -> Weights {
        Weights::default()
    }

    /// Every tensor as its [`ParamSpec::init`] says: He/Kaiming normal init on fan-in
    /// (`std = sqrt(2 / fan_in)`) for conv, linear and dense weights, zero biases, BatchNorm and
    /// LayerNorm scale 1 and shift 0, running mean 0 and var 1, embedding and learned position
    /// tables N(0, 1) (as `torch.nn.Embedding`), a `Parameter` its own init. Deterministic for
    /// a seed (ChaCha8, tensors drawn in [`parameter_specs`] order).
    pub fn he_init(graph: &Graph, seed: u64) -> Result<Weights, GraphError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = Weights::new();
        for spec in parameter_specs(graph)? {
            let shape = IxDyn(&spec.shape);
            let mut normal = |std: f64| {
                let normal = Normal::new(0.0, std).expect("std is finite and positive");
                ArrayD::from_shape_simple_fn(shape.clone(), || normal.sample(&mut rng) as f32)
            };
            let t = match spec.init {
                ParamInit::He => normal((2.0 / spec.fan_in.max(1) as f64).sqrt()),
                ParamInit::Normal { std } => normal(f64::from(std)),
                ParamInit::Uniform { bound } => {
                    let b = f64::from(bound);
                    let u = Uniform::new(-b, b).expect("validated bound");
                    ArrayD::from_shape_simple_fn(shape, || u.sample(&mut rng) as f32)
                }
                ParamInit::Ones => ArrayD::ones(shape),
                ParamInit::Zeros => ArrayD::zeros(shape),
            };
            w.insert(spec.name, t);
        }
        Ok(w)
    }

    /// Replaces every BatchNorm's scale, shift, running mean and variance with random values
    /// (scale in [0.5, 1.5), shift and mean ~ N(0, 0.5), var in [0.25, 2)), so tests see
    /// BatchNorm doing more than the identity.
    pub fn randomize_batch_norm(&mut self, graph: &Graph, seed: u64) -> Result<(), GraphError> {
        let normal = Normal::new(0.0f64, 0.5).expect("valid normal");
        let scale = Uniform::new(0.5f64, 1.5).expect("valid range");
        let var = Uniform::new(0.25f64, 2.0).expect("valid range");
        self.redraw(graph, seed, |role, rng| match role {
            ParamRole::BnScale => Some(scale.sample(rng)),
            ParamRole::BnBias | ParamRole::BnMean => Some(normal.sample(rng)),
            ParamRole::BnVar => Some(var.sample(rng)),
            _ => None,
        })
    }

    /// Replaces every conv and linear bias with N(0, 0.1) values (He init zeroes them), so
    /// tests see the bias being applied.
    pub fn randomize_biases(&mut self, graph: &Graph, seed: u64) -> Result<(), GraphError> {
        let normal = Normal::new(0.0f64, 0.1).expect("valid normal");
        self.redraw(graph, seed, |role, rng| {
            (role == ParamRole::Bias).then(|| normal.sample(rng))
        })
    }

    /// Refills every tensor whose role `draw` accepts (returns `Some` for), element by element.
    fn redraw(
        &mut self,
        graph: &Graph,
        seed: u64,
        draw: impl Fn(ParamRole, &mut ChaCha8Rng) -> Option<f64>,
    ) -> Result<(), GraphError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for spec in parameter_specs(graph)? {
            if draw(spec.role, &mut rng).is_none() {
                continue;
            }
            let t = ArrayD::from_shape_simple_fn(IxDyn(&spec.shape), || {
                draw(spec.role, &mut rng).expect("the role was accepted") as f32
            });
            self.insert(spec.name, t);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&ArrayD<f32>> {
        self.tensors.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<f32>> {
        self.tensors.get_mut(name)
    }

    /// The tensor `name`, or [`GraphError::MissingWeight`].
    pub fn require(&self, name: &str) -> Result<&ArrayD<f32>, GraphError> {
        self.get(name).ok_or_else(|| GraphError::MissingWeight {
            name: name.to_string(),
        })
    }

    /// Inserts or replaces a tensor; returns the previous one.
    pub fn insert(&mut self, name: impl Into<String>, tensor: ArrayD<f32>) -> Option<ArrayD<f32>> {
        self.tensors.insert(name.into(), tensor)
    }

    pub fn remove(&mut self, name: &str) -> Option<ArrayD<f32>> {
        self.tensors.remove(name)
    }

    /// Tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<f32>)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Checks that every tensor `graph` needs is present with the right shape (extra tensors
    /// are allowed).
    pub fn check(&self, graph: &Graph) -> Result<(), GraphError> {
        for spec in parameter_specs(graph)? {
            let t = self.require(&spec.name)?;
            if t.shape() != spec.shape.as_slice() {
                return Err(GraphError::WeightShape {
                    name: spec.name,
                    expected: spec.shape,
                    found: t.shape().to_vec(),
                });
            }
        }
        Ok(())
    }
}

impl FromIterator<(String, ArrayD<f32>)> for Weights {
    fn from_iter<I: IntoIterator<Item = (String, ArrayD<f32>)>>(iter: I) -> Self {
        Weights {
            tensors: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;

    fn net() -> Graph {
        let mut b = GraphBuilder::new(&[4, 6, 6]);
        let c = b.conv(0, 8, 3, 1, 2);
        let bn = b.batch_norm(c);
        let g = b.add(Op::GlobalAvgPool, &[bn]);
        let l = b.add(
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[g],
        );
        b.finish(l)
    }

    #[test]
    fn specs_names_and_shapes() {
        let specs = parameter_specs(&net()).unwrap();
        let got: Vec<(&str, &[usize], bool)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.shape.as_slice(), s.role.trainable()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("n1.weight", &[8, 2, 3, 3][..], true),
                ("n2.scale", &[8][..], true),
                ("n2.bias", &[8][..], true),
                ("n2.mean", &[8][..], false),
                ("n2.var", &[8][..], false),
                ("n4.weight", &[3, 8][..], true),
                ("n4.bias", &[3][..], true),
            ]
        );
        assert_eq!(specs[0].fan_in, 18);
        // Trainable elements agree with param_count.
        let trainable: usize = specs
            .iter()
            .filter(|s| s.role.trainable())
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert_eq!(trainable as u64, net().param_count().unwrap());
    }

    #[test]
    fn he_init_is_deterministic_and_scaled() {
        let g = net();
        let a = Weights::he_init(&g, 7).unwrap();
        let b = Weights::he_init(&g, 7).unwrap();
        let c = Weights::he_init(&g, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        a.check(&g).unwrap();
        assert!(a.get("n2.var").unwrap().iter().all(|&v| v == 1.0));
        assert!(a.get("n4.bias").unwrap().iter().all(|&v| v == 0.0));
        // 144 samples of N(0, 2/18): the sample std is within 25 % of 1/3.
        let w = a.get("n1.weight").unwrap();
        let var = w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!(
            (var.sqrt() - (2.0f64 / 18.0).sqrt()).abs() < 0.25 / 3.0,
            "{var}"
        );
    }

    #[test]
    fn randomized_bn_and_check_errors() {
        let g = net();
        let mut w = Weights::he_init(&g, 1).unwrap();
        w.randomize_batch_norm(&g, 2).unwrap();
        assert!(
            w.get("n2.var")
                .unwrap()
                .iter()
                .all(|&v| (0.25..2.0).contains(&v))
        );
        assert!(w.get("n2.mean").unwrap().iter().any(|&v| v != 0.0));
        w.check(&g).unwrap();
        w.insert("n2.var", ArrayD::zeros(IxDyn(&[7])));
        assert_eq!(
            w.check(&g).unwrap_err().to_string(),
            "weight `n2.var` has shape [7], expected [8]"
        );
        w.remove("n2.var");
        assert_eq!(
            w.check(&g),
            Err(GraphError::MissingWeight {
                name: "n2.var".into()
            })
        );
    }
}
