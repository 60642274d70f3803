//! A small multilayer perceptron (ReLU hidden layers, one linear output) trained with Adam on
//! the squared error, in plain Rust. Inputs are mostly zeros (one-hot and path encodings), so
//! every layer skips zero inputs: a weight matrix is stored input-major (row `i` holds the
//! weights leaving input `i`), and a zero input (or a ReLU that is off) costs nothing.
//!
//! All randomness (initialization, minibatches) comes from the caller's generator, so a fit
//! is reproducible; the weights are saved as bit patterns, so a restored network predicts bit
//! for bit what the saved one did.

use nas_plugin::kit::{self, rand::Rng};
use serde::{Deserialize, Serialize};

/// Adam's moment decay rates and its denominator guard.
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// How a network is trained.
#[derive(Clone, Copy, Debug)]
pub struct Training {
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (not the biases).
    pub weight_decay: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mlp {
    /// Layer widths, input first, 1 last.
    sizes: Vec<usize>,
    /// Per layer: weights (`in x out`, input-major), then biases (`out`).
    #[serde(with = "as_bits")]
    params: Vec<f64>,
}

mod as_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        nas_plugin::kit::bits(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(nas_plugin::kit::from_bits(&Vec::<u64>::deserialize(d)?))
    }
}

/// Where a layer's weights and biases start in `params`.
#[derive(Clone, Copy)]
struct Layer {
    inputs: usize,
    outputs: usize,
    weights: usize,
    biases: usize,
}

impl Mlp {
    /// A network with `inputs` inputs, the given hidden widths and one output, initialized
    /// He-uniform (biases zero).
    pub fn new(inputs: usize, hidden: &[usize], rng: &mut kit::Rng) -> Mlp {
        let mut sizes = Vec::with_capacity(hidden.len() + 2);
        sizes.push(inputs);
        sizes.extend_from_slice(hidden);
        sizes.push(1);
        let total: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let mut mlp = Mlp {
            sizes,
            params: vec![0.0; total],
        };
        for layer in mlp.layers() {
            let bound = (6.0 / layer.inputs.max(1) as f64).sqrt();
            for w in &mut mlp.params[layer.weights..layer.biases] {
                *w = rng.random_range(-bound..bound);
            }
        }
        mlp
    }

    pub fn inputs(&self) -> usize {
        self.sizes[0]
    }

    /// Whether every parameter is finite and the shape is consistent (a restored state).
    pub fn is_valid(&self) -> bool {
        self.sizes.len() >= 2
            && self.sizes.last() == Some(&1)
            && self.params.len()
                == self
                    .sizes
                    .windows(2)
                    .map(|w| w[0] * w[1] + w[1])
                    .sum::<usize>()
            && self.params.iter().all(|p| p.is_finite())
    }

    fn layers(&self) -> Vec<Layer> {
        let mut at = 0;
        self.sizes
            .windows(2)
            .map(|w| {
                let l = Layer {
                    inputs: w[0],
                    outputs: w[1],
                    weights: at,
                    biases: at + w[0] * w[1],
                };
                at = l.biases + w[1];
                l
            })
            .collect()
    }

    /// Activations of every layer for input `x` (the input first, the output last).
    fn forward(&self, layers: &[Layer], x: &[f64]) -> Vec<Vec<f64>> {
        let mut acts = Vec::with_capacity(layers.len() + 1);
        acts.push(x.to_vec());
        for (k, l) in layers.iter().enumerate() {
            let input = &acts[k];
            let mut z = self.params[l.biases..l.biases + l.outputs].to_vec();
            for (i, &a) in input.iter().enumerate() {
                if a != 0.0 {
                    let row = &self.params[l.weights + i * l.outputs..][..l.outputs];
                    for (z, w) in z.iter_mut().zip(row) {
                        *z += a * w;
                    }
                }
            }
            if k + 1 < layers.len() {
                for z in &mut z {
                    *z = z.max(0.0);
                }
            }
            acts.push(z);
        }
        acts
    }

    pub fn predict(&self, x: &[f64]) -> f64 {
        let layers = self.layers();
        self.forward(&layers, x).last().map_or(0.0, |o| o[0])
    }

    /// Minimizes the mean squared error on `(xs, ys)` with Adam from the current weights,
    /// `steps` minibatches of `batch` rows drawn with replacement. A fit that diverges (a
    /// parameter not finite) goes back to the weights it started from.
    pub fn fit(&mut self, xs: &[Vec<f64>], ys: &[f64], t: Training, rng: &mut kit::Rng) {
        if xs.is_empty() {
            return;
        }
        let start = self.params.clone();
        let layers = self.layers();
        let n = self.params.len();
        let (mut m, mut v, mut grad) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let batch = t.batch.min(xs.len()).max(1);
        for step in 1..=t.steps {
            grad.fill(0.0);
            for _ in 0..batch {
                let r = rng.random_range(0..xs.len());
                self.backward(&layers, &xs[r], ys[r], 1.0 / batch as f64, &mut grad);
            }
            let (c1, c2) = (1.0 - BETA1.powi(step as i32), 1.0 - BETA2.powi(step as i32));
            for l in &layers {
                let (g, p) = (
                    &mut grad[l.weights..l.biases],
                    &self.params[l.weights..l.biases],
                );
                for (g, p) in g.iter_mut().zip(p) {
                    *g += t.weight_decay * p;
                }
            }
            for i in 0..n {
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * grad[i];
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * grad[i] * grad[i];
                self.params[i] -= t.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + EPSILON);
            }
        }
        if !self.params.iter().all(|p| p.is_finite()) {
            self.params = start;
        }
    }

    /// Adds `scale` times the gradient of the squared error at `(x, y)` to `grad`.
    fn backward(&self, layers: &[Layer], x: &[f64], y: f64, scale: f64, grad: &mut [f64]) {
        let acts = self.forward(layers, x);
        let out = acts.last().expect("an output layer")[0];
        let mut delta = vec![2.0 * (out - y) * scale];
        for (k, l) in layers.iter().enumerate().rev() {
            let input = &acts[k];
            for (g, d) in grad[l.biases..l.biases + l.outputs].iter_mut().zip(&delta) {
                *g += d;
            }
            let mut previous = vec![0.0; l.inputs];
            for (i, &a) in input.iter().enumerate() {
                // Zero inputs have no weight gradient; a ReLU that is off passes none back.
                if a == 0.0 {
                    continue;
                }
                let row = l.weights + i * l.outputs;
                let mut back = 0.0;
                for (j, d) in delta.iter().enumerate() {
                    grad[row + j] += a * d;
                    back += self.params[row + j] * d;
                }
                previous[i] = back;
            }
            if k > 0 {
                // The input of layer k is a ReLU output: zero where it was off (already
                // skipped above), otherwise the gradient passes unchanged.
                delta = previous;
            }
        }
    }
}
