//! Architecture parameters of a supernet and how each method turns them into mixing weights
//! and learns them (on the host: a few numbers per choice).
//!
//! - DARTS (Liu et al., ICLR 2019), first order: weights `softmax(alpha)`; `alpha` follows
//!   the loss gradient on validation batches with Adam.
//! - DARTS- (Chu et al., ICLR 2021): DARTS plus an auxiliary skip on every mixed edge whose
//!   weight `beta` decays linearly from `aux_beta` to 0 over the search, so skip connections
//!   need not win the softmax to pass gradients (the collapse of DARTS onto skips).
//! - GDAS (Dong & Yang, CVPR 2019): a one-hot sampled per step by Gumbel-max on
//!   `(alpha + g) / tau`; gradients reach `alpha` straight through the softmax of the same
//!   perturbed logits, an unsampled operation's as `GdasGradient` says (see
//!   `SupernetTrainer::choice_grads`); `tau` decays linearly from `tau_max` to `tau_min`.
//! - DrNAS (Chen et al., ICLR 2021): weights drawn per step from a Dirichlet distribution
//!   with concentrations `elu(alpha) + 1`; gradients reach `alpha` through the sample
//!   (pathwise, [`super::dirichlet`]), and an L2 penalty on the concentrations keeps the
//!   distribution from sharpening early. The sampling noise is what keeps parameter-free
//!   operations from winning by their early gradient advantage.
//! - SPOS (Guo et al., ECCV 2020): a uniformly sampled one-hot per step; no `alpha`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::dirichlet::{self, DirichletSample, concentration, concentration_grad};

/// Which one-shot method trains the supernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Darts,
    DartsMinus,
    Drnas,
    Gdas,
    Spos,
}

impl Method {
    /// Every method, in the order the docs list them.
    pub const ALL: [Method; 5] = [
        Method::Darts,
        Method::DartsMinus,
        Method::Drnas,
        Method::Gdas,
        Method::Spos,
    ];

    /// The names of the methods `has` holds for, as a message lists them: "a, b or c".
    pub fn names_where(has: fn(Method) -> bool) -> String {
        let names: Vec<&str> = Method::ALL
            .into_iter()
            .filter(|&m| has(m))
            .map(Method::name)
            .collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Darts => "darts",
            Method::DartsMinus => "darts-minus",
            Method::Drnas => "drnas",
            Method::Gdas => "gdas",
            Method::Spos => "spos",
        }
    }

    /// Whether the method learns architecture logits (on validation batches).
    pub fn learns_alpha(self) -> bool {
        !matches!(self, Method::Spos)
    }

    /// Whether mixed edges carry the auxiliary skip input.
    pub fn aux_skip(self) -> bool {
        matches!(self, Method::DartsMinus)
    }

    /// Whether the architecture weights are `softmax(alpha)` (GDAS: drawn through it), the
    /// weights Beta-Decay regularizes.
    pub fn softmax_weights(self) -> bool {
        matches!(self, Method::Darts | Method::DartsMinus | Method::Gdas)
    }

    /// Whether every step mixes all options by `softmax(alpha)` (no sampling): the weights
    /// random smoothing perturbs.
    pub fn mixes_every_option(self) -> bool {
        matches!(self, Method::Darts | Method::DartsMinus)
    }

    /// Whether a step weighs one operation per edge (a one-hot), so the others need not run.
    pub fn samples_paths(self) -> bool {
        matches!(self, Method::Gdas | Method::Spos)
    }
}

/// Streams of the per-step random draws, so a resumed search draws the same numbers.
#[derive(Clone, Copy)]
pub(crate) enum Draw {
    /// GDAS noise of the architecture step.
    ArchStep = 1,
    /// GDAS noise, SPOS path or random smoothing's noise of the weight step.
    WeightStep = 2,
    /// Which open choice perturbation-based selection decides next.
    Selection = 3,
}

/// A generator for `(seed, step, draw)` only.
pub(crate) fn step_rng(seed: u64, step: u64, draw: Draw) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0A5E_5E1E_C7ED_0000 ^ draw as u64);
    rng.set_stream(step);
    rng
}

pub(crate) fn softmax(x: &[f64]) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Gradient with respect to `z` of a loss whose gradient with respect to `softmax(z)` is `g`.
pub(crate) fn softmax_backward(p: &[f64], g: &[f64]) -> Vec<f64> {
    let dot: f64 = p.iter().zip(g).map(|(p, g)| p * g).sum();
    p.iter().zip(g).map(|(p, g)| p * (g - dot)).collect()
}

fn argmax(x: &[f64]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// The option choice `c` is fixed to in `decided` (empty: no choice decided). A free function
/// so that `update` can read it while it borrows `alpha` mutably.
fn decided_option(decided: &[Option<usize>], c: usize) -> Option<usize> {
    decided.get(c).copied().flatten()
}

/// Whether progressive pruning removed option `o` of choice `c` from `pruned` (empty: none).
fn pruned_option(pruned: &[Vec<bool>], c: usize, o: usize) -> bool {
    pruned
        .get(c)
        .and_then(|p| p.get(o))
        .copied()
        .unwrap_or(false)
}

/// `values` spread over `n` options: `values[i]` at `kept[i]`, 0 elsewhere.
fn scatter(kept: &[usize], values: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for (&k, &v) in kept.iter().zip(values) {
        out[k] = v;
    }
    out
}

pub(crate) fn one_hot(k: usize, n: usize) -> Vec<f64> {
    (0..n).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
}

/// Mixing weights of every choice for one step, and what the architecture gradient of that
/// step needs to reach `alpha`.
pub(crate) struct StepWeights {
    /// Per choice: the weights its mixed edges use.
    pub weights: Vec<Vec<f64>>,
    /// Per choice: how the loss gradient of its weights reaches `alpha` (empty for SPOS).
    backward: Vec<Backward>,
}

/// How one choice's weights depend on `alpha`.
enum Backward {
    /// Through `softmax(scale * z)` (DARTS: `z = alpha`, scale 1; GDAS: the perturbed logits
    /// and `1 / tau`).
    Softmax { p: Vec<f64>, scale: f64 },
    /// Through a Dirichlet sample (DrNAS).
    Dirichlet(DirichletSample),
    /// Through `inner` over the options progressive pruning kept (`kept` of `n`); pruned
    /// options get no gradient.
    Kept {
        kept: Vec<usize>,
        n: usize,
        inner: Box<Backward>,
    },
}

impl Backward {
    fn alpha_grad(&self, grad: &[f64]) -> Vec<f64> {
        match self {
            Backward::Softmax { p, scale } => softmax_backward(p, grad)
                .into_iter()
                .map(|g| g * scale)
                .collect(),
            Backward::Dirichlet(sample) => sample.backward(grad),
            Backward::Kept { kept, n, inner } => {
                let sub: Vec<f64> = kept.iter().map(|&k| grad[k]).collect();
                scatter(kept, &inner.alpha_grad(&sub), *n)
            }
        }
    }
}

/// How the architecture logits become probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relaxation {
    /// `softmax(alpha)`.
    #[default]
    Softmax,
    /// The mean of `Dir(elu(alpha) + 1)` (DrNAS).
    Dirichlet,
}

/// Architecture logits per choice and their Adam state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchParams {
    pub alpha: Vec<Vec<f64>>,
    /// What `probabilities` reports (absent in checkpoints written before DrNAS: softmax).
    #[serde(default)]
    relaxation: Relaxation,
    /// Per choice: the option perturbation-based selection has fixed, if any (empty: none;
    /// checkpoints written before it have none). A decided choice's edges use that option
    /// alone and its `alpha` no longer moves.
    #[serde(default)]
    decided: Vec<Option<usize>>,
    /// Per choice and option: whether progressive pruning removed it (empty: none removed;
    /// checkpoints written before it have none). A pruned option's weight is 0 in every
    /// step, the others share the relaxation, and its `alpha` no longer moves.
    #[serde(default)]
    pruned: Vec<Vec<bool>>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    /// Adam steps taken.
    t: u64,
}

/// Adam settings of the architecture step (DARTS: lr 3e-4, betas (0.5, 0.999), L2 1e-3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArchAdam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    /// DrNAS: scale of the L2 penalty on the concentrations `elu(alpha) + 1`.
    pub concentration_l2: f64,
    /// β-DARTS: this step's weight of the Beta-Decay penalty (softmax relaxation only).
    pub beta_decay: f64,
}

/// Gradient of β-DARTS' Beta-Decay penalty `weight / choices * logsumexp(alpha)` of one
/// choice's logits: `weight / choices * softmax(alpha)`.
pub(crate) fn beta_decay_grad(alpha: &[f64], weight: f64, choices: usize) -> Vec<f64> {
    let scale = weight / choices.max(1) as f64;
    softmax(alpha).into_iter().map(|p| scale * p).collect()
}

/// One choice's mixing weights for one step from its logits `a`, and how their gradient
/// reaches `a` (`None` for SPOS, which learns no logits).
fn relax(method: Method, a: &[f64], tau: f64, rng: &mut impl Rng) -> (Vec<f64>, Option<Backward>) {
    match method {
        Method::Darts | Method::DartsMinus => {
            let p = softmax(a);
            (p.clone(), Some(Backward::Softmax { p, scale: 1.0 }))
        }
        Method::Drnas => {
            let sample = DirichletSample::draw(a, rng);
            (sample.weights.clone(), Some(Backward::Dirichlet(sample)))
        }
        Method::Gdas => {
            let logits: Vec<f64> = a
                .iter()
                .map(|&v| {
                    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                    (v - (-u.ln()).ln()) / tau
                })
                .collect();
            let p = softmax(&logits);
            let w = one_hot(argmax(&p), a.len());
            (
                w,
                Some(Backward::Softmax {
                    p,
                    scale: 1.0 / tau,
                }),
            )
        }
        Method::Spos => (one_hot(rng.random_range(0..a.len()), a.len()), None),
    }
}

impl ArchParams {
    /// `alpha = 1e-3 N(0, 1)` per option, as in DARTS (and DrNAS: concentrations near 1, a
    /// uniform distribution over the simplex).
    pub fn new(options: &[usize], seed: u64, method: Method) -> ArchParams {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA1FA_0000_0000_0001);
        let alpha: Vec<Vec<f64>> = options
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        1e-3 * z
                    })
                    .collect()
            })
            .collect();
        let zeros: Vec<Vec<f64>> = options.iter().map(|&n| vec![0.0; n]).collect();
        let relaxation = if method == Method::Drnas {
            Relaxation::Dirichlet
        } else {
            Relaxation::Softmax
        };
        ArchParams {
            alpha,
            relaxation,
            decided: Vec::new(),
            pruned: Vec::new(),
            m: zeros.clone(),
            v: zeros,
            t: 0,
        }
    }

    /// Per choice: the softmax of `alpha` (DrNAS: the Dirichlet mean `beta / sum(beta)`)
    /// over the options not pruned, 0 for the pruned ones.
    pub fn probabilities(&self) -> Vec<Vec<f64>> {
        (0..self.alpha.len())
            .map(|c| {
                self.on_kept(c, |a| match self.relaxation {
                    Relaxation::Softmax => softmax(a),
                    Relaxation::Dirichlet => dirichlet::mean(a),
                })
            })
            .collect()
    }

    /// The derived architecture: the decided option of a decided choice, otherwise the most
    /// likely option not pruned (both relaxations are monotone in `alpha`).
    pub fn derive(&self) -> Vec<usize> {
        (0..self.alpha.len())
            .map(|c| {
                self.decided(c).unwrap_or_else(|| {
                    let (kept, logits) = self.kept_logits(c);
                    kept[argmax(&logits)]
                })
            })
            .collect()
    }

    /// The options of choice `c` that progressive pruning has not removed, in order.
    pub fn kept(&self, c: usize) -> Vec<usize> {
        (0..self.alpha[c].len())
            .filter(|&o| !pruned_option(&self.pruned, c, o))
            .collect()
    }

    /// Choice `c`'s kept options and their logits, in order.
    fn kept_logits(&self, c: usize) -> (Vec<usize>, Vec<f64>) {
        let kept = self.kept(c);
        let logits = kept.iter().map(|&o| self.alpha[c][o]).collect();
        (kept, logits)
    }

    /// `f` of choice `c`'s logits restricted to its kept options, spread back over every
    /// option (0 for the pruned ones).
    fn on_kept(&self, c: usize, f: impl FnOnce(&[f64]) -> Vec<f64>) -> Vec<f64> {
        let (kept, logits) = self.kept_logits(c);
        scatter(&kept, &f(&logits), self.alpha[c].len())
    }

    /// Progressive pruning (DrNAS's progressive stage): every open choice keeps its `keep`
    /// most likely options (ties: the lower option) and drops the rest from the supernet.
    /// Returns how many options were removed.
    pub(crate) fn prune(&mut self, keep: usize) -> usize {
        let p = self.probabilities();
        if self.pruned.len() < self.alpha.len() {
            self.pruned = self.alpha.iter().map(|a| vec![false; a.len()]).collect();
        }
        let mut removed = 0;
        for (c, p) in p.iter().enumerate() {
            if self.decided(c).is_some() {
                continue;
            }
            let mut kept = self.kept(c);
            kept.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            for &o in kept.iter().skip(keep.max(1)) {
                self.pruned[c][o] = true;
                removed += 1;
            }
        }
        removed
    }

    /// The option choice `c` is fixed to, if selection has decided it.
    pub fn decided(&self, c: usize) -> Option<usize> {
        decided_option(&self.decided, c)
    }

    /// Replaces the weights of every decided choice with its one-hot.
    fn fix_decided(&self, weights: &mut [Vec<f64>]) {
        for (c, w) in weights.iter_mut().enumerate() {
            if let Some(o) = self.decided(c) {
                *w = one_hot(o, w.len());
            }
        }
    }

    /// Fixes choice `c` to option `option` (perturbation-based selection).
    pub(crate) fn decide(&mut self, c: usize, option: usize) {
        if self.decided.len() < self.alpha.len() {
            self.decided.resize(self.alpha.len(), None);
        }
        self.decided[c] = Some(option);
    }

    /// The mixing weights the supernet stands for now: a decided choice's one-hot, otherwise
    /// [`ArchParams::probabilities`] (what perturbation-based selection perturbs).
    pub(crate) fn expected_weights(&self) -> Vec<Vec<f64>> {
        let mut p = self.probabilities();
        self.fix_decided(&mut p);
        p
    }

    /// The `k` most likely architectures under independent softmaxes, most likely first
    /// (the first is [`ArchParams::derive`]), none with a pruned option. A beam of width
    /// `k` over the choices is exact here: log-probabilities add up choice by choice.
    pub fn most_likely(&self, k: usize) -> Vec<Vec<usize>> {
        let mut beam: Vec<(f64, Vec<usize>)> = vec![(0.0, Vec::new())];
        for (c, p) in self.probabilities().into_iter().enumerate() {
            let (kept, p) = (&self.kept(c), &p);
            let mut next: Vec<(f64, Vec<usize>)> = beam
                .iter()
                .flat_map(|(score, prefix)| {
                    kept.iter().map(move |&o| {
                        let mut path = prefix.clone();
                        path.push(o);
                        (score + p[o].ln(), path)
                    })
                })
                .collect();
            // Stable: ties keep the lower option first, as `derive` does.
            next.sort_by(|a, b| b.0.total_cmp(&a.0));
            next.truncate(k.max(1));
            beam = next;
        }
        beam.into_iter().map(|(_, path)| path).collect()
    }

    /// The architectures a search proposes: `selected` (what the selection read) first, then
    /// the most likely others by `alpha`, `k` in all.
    pub fn proposals(&self, selected: Vec<usize>, k: usize) -> Vec<Vec<usize>> {
        let mut out = vec![selected];
        for path in self.most_likely(k) {
            if out.len() < k && !out.contains(&path) {
                out.push(path);
            }
        }
        out
    }

    /// SDARTS-RS: adds noise uniform in `[-eps, eps]` to every open choice's mixing weights
    /// (a decided choice keeps its one-hot, a pruned option its 0).
    pub(crate) fn smooth(&self, weights: &mut [Vec<f64>], eps: f64, rng: &mut impl Rng) {
        for (c, w) in weights.iter_mut().enumerate() {
            if decided_option(&self.decided, c).is_none() {
                for (o, v) in w.iter_mut().enumerate() {
                    if !pruned_option(&self.pruned, c, o) {
                        *v += rng.random_range(-eps..=eps);
                    }
                }
            }
        }
    }

    /// The weights one step uses (a decided choice: its one-hot). `tau` is GDAS's temperature.
    pub(crate) fn step_weights(&self, method: Method, tau: f64, rng: &mut impl Rng) -> StepWeights {
        let mut w = self.relaxed_weights(method, tau, rng);
        self.fix_decided(&mut w.weights);
        w
    }

    /// Per choice, the method's weights over the options not pruned (pruned ones: 0).
    fn relaxed_weights(&self, method: Method, tau: f64, rng: &mut impl Rng) -> StepWeights {
        let mut weights = Vec::with_capacity(self.alpha.len());
        let mut backward = Vec::with_capacity(self.alpha.len());
        for c in 0..self.alpha.len() {
            let n = self.alpha[c].len();
            let (kept, logits) = self.kept_logits(c);
            let (w, b) = relax(method, &logits, tau, rng);
            weights.push(scatter(&kept, &w, n));
            // With nothing pruned the relaxation's own gradient is the whole story.
            backward.extend(b.map(|inner| {
                if kept.len() == n {
                    inner
                } else {
                    Backward::Kept {
                        kept,
                        n,
                        inner: Box::new(inner),
                    }
                }
            }));
        }
        StepWeights { weights, backward }
    }

    /// One Adam step on `alpha` from `grad_weights`, the loss gradient of each choice's
    /// mixing weights (summed over its mixed edges), through the step's relaxation.
    pub(crate) fn update(&mut self, w: &StepWeights, grad_weights: &[Vec<f64>], adam: &ArchAdam) {
        self.t += 1;
        let t = self.t as i32;
        let dirichlet = self.relaxation == Relaxation::Dirichlet;
        let count = self.alpha.len();
        // Beta-Decay's `logsumexp` runs over the options still in the supernet.
        let decay: Vec<Vec<f64>> = (0..count)
            .map(|c| {
                if !dirichlet && adam.beta_decay > 0.0 {
                    self.on_kept(c, |a| beta_decay_grad(a, adam.beta_decay, count))
                } else {
                    Vec::new()
                }
            })
            .collect();
        let choices = self.alpha.iter_mut().zip(&mut self.m).zip(&mut self.v);
        for (c, ((alpha, m), v)) in choices.enumerate() {
            if decided_option(&self.decided, c).is_some() {
                continue;
            }
            let mut g = w.backward[c].alpha_grad(&grad_weights[c]);
            g.iter_mut().zip(&decay[c]).for_each(|(g, d)| *g += d);
            for (j, g) in g.iter().enumerate() {
                if pruned_option(&self.pruned, c, j) {
                    continue;
                }
                let penalty = if dirichlet {
                    2.0 * adam.concentration_l2
                        * concentration(alpha[j])
                        * concentration_grad(alpha[j])
                } else {
                    0.0
                };
                let g = g + penalty + adam.weight_decay * alpha[j];
                m[j] = adam.beta1 * m[j] + (1.0 - adam.beta1) * g;
                v[j] = adam.beta2 * v[j] + (1.0 - adam.beta2) * g * g;
                let m_hat = m[j] / (1.0 - adam.beta1.powi(t));
                let v_hat = v[j] / (1.0 - adam.beta2.powi(t));
                alpha[j] -= adam.lr * m_hat / (v_hat.sqrt() + 1e-8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `analytic` is the gradient of `f` at `z` (central differences).
    fn assert_gradient(f: impl Fn(&[f64]) -> f64, z: &[f64], analytic: &[f64]) {
        for j in 0..z.len() {
            let (mut up, mut down) = (z.to_vec(), z.to_vec());
            up[j] += 1e-6;
            down[j] -= 1e-6;
            let fd = (f(&up) - f(&down)) / 2e-6;
            assert!(
                (fd - analytic[j]).abs() < 1e-8,
                "{j}: {fd} vs {}",
                analytic[j]
            );
        }
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        let z = [0.3, -1.2, 0.7, 0.0];
        let g = [1.5, -0.4, 0.25, 2.0];
        let f = |z: &[f64]| -> f64 { softmax(z).iter().zip(&g).map(|(p, g)| p * g).sum() };
        assert_gradient(f, &z, &softmax_backward(&softmax(&z), &g));
    }

    #[test]
    fn beta_decay_grad_is_the_gradient_of_the_mean_logsumexp() {
        let z = [0.3, -1.2, 0.7, 0.0, 2.5];
        let (weight, choices) = (0.8, 6);
        let f = |z: &[f64]| -> f64 {
            weight / choices as f64 * z.iter().map(|v| v.exp()).sum::<f64>().ln()
        };
        let analytic = beta_decay_grad(&z, weight, choices);
        assert_gradient(f, &z, &analytic);
        // The largest logit is pulled down hardest.
        assert!(analytic[4] > analytic[2] && analytic[2] > analytic[0]);
    }

    #[test]
    fn derive_takes_the_largest_logit_of_every_choice() {
        let mut a = ArchParams::new(&[5, 5, 3], 1, Method::Darts);
        a.alpha = vec![
            vec![0.1, 0.0, 0.3, 2.0, -1.0],
            vec![5.0, 0.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.5],
        ];
        assert_eq!(a.derive(), vec![3, 0, 2]);
    }

    #[test]
    fn decided_choices_use_their_option_alone_and_stop_learning() {
        for method in [Method::Darts, Method::Drnas, Method::Gdas] {
            let mut a = ArchParams::new(&[4, 3], 2, method);
            a.alpha[0] = vec![3.0, 0.0, 0.0, 0.0];
            a.decide(0, 2);
            assert_eq!(a.decided(0), Some(2));
            assert_eq!(a.decided(1), None);
            assert_eq!(a.derive()[0], 2, "{method:?}: the decision wins over alpha");
            assert_eq!(a.expected_weights()[0], vec![0.0, 0.0, 1.0, 0.0]);
            assert_eq!(a.expected_weights()[1], a.probabilities()[1]);
            let mut rng = step_rng(1, 0, Draw::WeightStep);
            let w = a.step_weights(method, 1.0, &mut rng);
            assert_eq!(w.weights[0], vec![0.0, 0.0, 1.0, 0.0], "{method:?}");
            let before = a.alpha.clone();
            let grads = vec![vec![1.0, -1.0, 0.5, 0.0], vec![1.0, -1.0, 0.0]];
            a.update(
                &w,
                &grads,
                &ArchAdam {
                    lr: 0.1,
                    beta1: 0.5,
                    beta2: 0.999,
                    weight_decay: 0.0,
                    concentration_l2: 0.0,
                    beta_decay: 0.0,
                },
            );
            assert_eq!(
                a.alpha[0], before[0],
                "{method:?}: a decided choice's alpha moved"
            );
            assert_ne!(
                a.alpha[1], before[1],
                "{method:?}: an open choice's alpha did not move"
            );
        }
    }

    #[test]
    fn pruned_options_get_no_weight_no_gradient_and_are_never_derived() {
        let adam = ArchAdam {
            lr: 0.1,
            beta1: 0.5,
            beta2: 0.999,
            weight_decay: 1e-3,
            concentration_l2: 1e-3,
            beta_decay: 0.5,
        };
        for method in [Method::Darts, Method::Drnas, Method::Gdas] {
            let mut a = ArchParams::new(&[5, 3], 4, method);
            a.alpha = vec![vec![0.5, -1.0, 2.0, 0.0, 1.0], vec![0.1, 0.2, 0.3]];
            assert_eq!(a.prune(3), 2, "{method:?}");
            assert_eq!(a.kept(0), vec![0, 2, 4], "{method:?}");
            assert_eq!(a.kept(1), vec![0, 1, 2], "{method:?}");
            // A pruned option that would now win the argmax is still not derived.
            a.alpha[0][1] = 9.0;
            assert_eq!(a.derive()[0], 2, "{method:?}");
            let every = a.most_likely(100);
            assert_eq!(every.len(), 9, "{method:?}: 3 x 3 architectures left");
            assert!(every.iter().all(|path| a.kept(0).contains(&path[0])));
            let p = a.probabilities();
            assert_eq!((p[0][1], p[0][3]), (0.0, 0.0), "{method:?}");
            assert!((p[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
            for step in 0..20 {
                let w = a.step_weights(method, 1.0, &mut step_rng(3, step, Draw::ArchStep));
                assert_eq!((w.weights[0][1], w.weights[0][3]), (0.0, 0.0), "{method:?}");
                assert!((w.weights[0].iter().sum::<f64>() - 1.0).abs() < 1e-12);
                let before = a.alpha.clone();
                a.update(&w, &[vec![1.0, -5.0, 0.5, -5.0, 0.0], vec![0.0; 3]], &adam);
                assert_eq!((a.alpha[0][1], a.alpha[0][3]), (9.0, before[0][3]));
                assert_ne!(
                    a.alpha[0][0], before[0][0],
                    "{method:?}: a kept option froze"
                );
            }
        }
    }

    #[test]
    fn gradient_over_the_kept_options_is_that_of_their_softmax() {
        let mut a = ArchParams::new(&[4], 1, Method::Darts);
        a.alpha = vec![vec![0.3, -0.2, 1.1, 0.4]];
        a.prune(3);
        assert_eq!(a.kept(0), vec![0, 2, 3]);
        let g = [1.5, 7.0, -0.4, 0.25];
        let w = a.step_weights(Method::Darts, 1.0, &mut step_rng(0, 0, Draw::ArchStep));
        let analytic = w.backward[0].alpha_grad(&g);
        assert_eq!(analytic[1], 0.0);
        let f = |z: &[f64]| -> f64 {
            let p = softmax(&[z[0], z[2], z[3]]);
            p[0] * g[0] + p[1] * g[2] + p[2] * g[3]
        };
        assert_gradient(f, &a.alpha[0], &analytic);
    }

    #[test]
    fn names_where_lists_the_methods_a_property_holds_for() {
        assert_eq!(
            Method::names_where(Method::softmax_weights),
            "darts, darts-minus or gdas"
        );
        assert_eq!(
            Method::names_where(Method::mixes_every_option),
            "darts or darts-minus"
        );
        assert_eq!(Method::names_where(Method::aux_skip), "darts-minus");
    }

    #[test]
    fn proposals_put_the_selected_architecture_first_then_the_most_likely() {
        let mut a = ArchParams::new(&[3, 2], 1, Method::Darts);
        a.alpha = vec![vec![0.0, 2.0, 1.0], vec![0.0, 0.5]];
        // A selection other than the argmax (e.g. perturbation) leads; no path twice.
        assert_eq!(
            a.proposals(vec![1, 0], 3),
            vec![vec![1, 0], vec![1, 1], vec![2, 1]]
        );
        assert_eq!(a.proposals(vec![1, 1], 1), vec![vec![1, 1]]);
    }

    #[test]
    fn smoothing_moves_open_choices_within_its_bound_and_keeps_decisions() {
        let mut a = ArchParams::new(&[3, 2], 1, Method::Darts);
        a.decide(1, 0);
        let mut rng = step_rng(7, 0, Draw::WeightStep);
        let before = a.step_weights(Method::Darts, 1.0, &mut rng).weights;
        let mut w = before.clone();
        a.smooth(&mut w, 0.3, &mut rng);
        let moved: Vec<f64> = w[0].iter().zip(&before[0]).map(|(x, y)| x - y).collect();
        assert!(moved.iter().all(|d| d.abs() <= 0.3), "{moved:?}");
        assert!(moved.iter().all(|d| *d != 0.0), "{moved:?}");
        assert_eq!(w[1], vec![1.0, 0.0], "a decided choice keeps its one-hot");
    }

    #[test]
    fn most_likely_lists_architectures_by_probability() {
        let mut a = ArchParams::new(&[3, 2], 1, Method::Darts);
        a.alpha = vec![vec![0.0, 2.0, 1.0], vec![0.0, 0.5]];
        let top = a.most_likely(4);
        assert_eq!(top[0], a.derive());
        assert_eq!(top, vec![vec![1, 1], vec![1, 0], vec![2, 1], vec![2, 0]]);
        assert_eq!(
            a.most_likely(100).len(),
            6,
            "every architecture at most once"
        );
    }

    #[test]
    fn gdas_draws_are_one_hot_and_seeded() {
        let a = ArchParams::new(&[5, 5], 3, Method::Gdas);
        let draw = |step| {
            let mut rng = step_rng(7, step, Draw::WeightStep);
            a.step_weights(Method::Gdas, 1.0, &mut rng).weights
        };
        let w = draw(4);
        assert_eq!(w, draw(4), "same seed and step, same sample");
        for choice in &w {
            assert_eq!(choice.iter().sum::<f64>(), 1.0);
            assert_eq!(choice.iter().filter(|&&v| v == 1.0).count(), 1);
        }
        // Over many steps every option of near-uniform logits is drawn.
        let mut seen = [false; 5];
        for step in 0..200 {
            let k = draw(step)[0].iter().position(|&v| v == 1.0).unwrap();
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn adam_moves_alpha_against_the_gradient() {
        for method in [Method::Darts, Method::Drnas] {
            let mut a = ArchParams::new(&[3], 0, method);
            let adam = ArchAdam {
                lr: 0.1,
                beta1: 0.5,
                beta2: 0.999,
                weight_decay: 0.0,
                concentration_l2: 0.0,
                beta_decay: 0.0,
            };
            for step in 0..40 {
                let w = a.step_weights(method, 1.0, &mut step_rng(0, step, Draw::ArchStep));
                // The loss falls as the weight of option 2 grows.
                a.update(&w, &[vec![0.0, 0.0, -1.0]], &adam);
            }
            assert_eq!(a.derive(), vec![2], "{method:?}");
            assert!(a.probabilities()[0][2] > 0.5, "{method:?}");
        }
    }

    #[test]
    fn drnas_draws_points_of_the_simplex_and_reports_the_dirichlet_mean() {
        let mut a = ArchParams::new(&[4, 2], 5, Method::Drnas);
        a.alpha = vec![vec![1.0, 0.0, -1.0, 2.0], vec![0.0, 0.0]];
        let p = a.probabilities();
        // Concentrations 2, 1, e^-1, 3.
        let total = 6.0 + (-1f64).exp();
        assert!((p[0][3] - 3.0 / total).abs() < 1e-12);
        assert_eq!(p[1], vec![0.5, 0.5]);
        assert_eq!(a.derive(), vec![3, 0]);
        let draw = |step| {
            let w = a.step_weights(Method::Drnas, 1.0, &mut step_rng(2, step, Draw::ArchStep));
            w.weights
        };
        assert_eq!(draw(3), draw(3), "same seed and step, same sample");
        assert_ne!(draw(3), draw(4));
        for choice in draw(3) {
            assert!(choice.iter().all(|&v| v > 0.0));
            assert!((choice.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn drnas_penalty_shrinks_large_concentrations() {
        let mut a = ArchParams::new(&[2], 0, Method::Drnas);
        a.alpha = vec![vec![3.0, 3.0]];
        let adam = ArchAdam {
            lr: 0.01,
            beta1: 0.5,
            beta2: 0.999,
            weight_decay: 0.0,
            concentration_l2: 1.0,
            beta_decay: 0.0,
        };
        let w = a.step_weights(Method::Drnas, 1.0, &mut step_rng(0, 0, Draw::ArchStep));
        // A loss that does not depend on the weights: only the penalty moves alpha.
        a.update(&w, &[vec![0.0, 0.0]], &adam);
        assert!(a.alpha[0].iter().all(|&v| v < 3.0), "{:?}", a.alpha);
    }
}
