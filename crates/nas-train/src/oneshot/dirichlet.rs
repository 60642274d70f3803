//! Dirichlet samples with pathwise gradients, for DrNAS (Chen et al., "DrNAS: Dirichlet Neural
//! Architecture Search", ICLR 2021).
//!
//! A Dirichlet sample is `w = G / sum(G)` with independent `G_k ~ Gamma(beta_k, 1)`. The
//! gradient of a loss of `w` reaches the concentrations `beta` through the implicit
//! reparameterisation of the Gamma sample (Figurnov et al., "Implicit Reparameterization
//! Gradients", NeurIPS 2018), as PyTorch's `Dirichlet.rsample` does: with `F(x; a)` the Gamma
//! CDF held fixed at the drawn uniform, `dx/da = -(dF/da)(x; a) / f(x; a)`.

use rand::Rng;
use rand_distr::{Distribution, Gamma};
use statrs::function::gamma::{gamma_lr, ln_gamma};

/// The smallest concentration drawn from: below it Gamma samples underflow to zero.
pub(crate) const MIN_CONCENTRATION: f64 = 1e-3;

/// DrNAS's concentration of an architecture logit: `elu(alpha) + 1`, positive everywhere.
pub(crate) fn concentration(alpha: f64) -> f64 {
    let beta = if alpha > 0.0 {
        alpha + 1.0
    } else {
        alpha.exp()
    };
    beta.max(MIN_CONCENTRATION)
}

/// `d concentration / d alpha`.
pub(crate) fn concentration_grad(alpha: f64) -> f64 {
    if alpha > 0.0 { 1.0 } else { alpha.exp() }
}

/// The mean of `Dir(elu(alpha) + 1)`: `beta / sum(beta)`.
pub(crate) fn mean(alpha: &[f64]) -> Vec<f64> {
    let beta: Vec<f64> = alpha.iter().map(|&a| concentration(a)).collect();
    let total: f64 = beta.iter().sum();
    beta.iter().map(|b| b / total).collect()
}

/// `dx/da` of a `Gamma(a, 1)` sample `x`, the uniform behind it held fixed. `dF/da` has no
/// closed form; a central difference of the regularized incomplete gamma function is
/// accurate to about 1e-8 relative, far below the sampling noise it is used with.
pub(crate) fn gamma_sample_grad(x: f64, a: f64) -> f64 {
    if !(x > 0.0 && x.is_finite()) {
        return 0.0;
    }
    let h = 1e-5 * a;
    let dcdf = (gamma_lr(a + h, x) - gamma_lr(a - h, x)) / (2.0 * h);
    let ln_pdf = (a - 1.0) * x.ln() - x - ln_gamma(a);
    let g = -dcdf / ln_pdf.exp();
    if g.is_finite() { g } else { 0.0 }
}

/// One Dirichlet sample of one choice and what its backward pass needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DirichletSample {
    /// The mixing weights: a point on the simplex.
    pub weights: Vec<f64>,
    /// `d G_k / d alpha_k` (through the concentration).
    pub dgamma_dalpha: Vec<f64>,
    /// `sum(G)`.
    pub total: f64,
}

impl DirichletSample {
    /// Draws `Dir(elu(alpha) + 1)`.
    pub fn draw(alpha: &[f64], rng: &mut impl Rng) -> DirichletSample {
        let beta: Vec<f64> = alpha.iter().map(|&a| concentration(a)).collect();
        let g: Vec<f64> = beta
            .iter()
            .map(|&b| {
                let gamma = Gamma::new(b, 1.0).expect("a positive, finite concentration");
                gamma.sample(rng).max(f64::MIN_POSITIVE)
            })
            .collect();
        let total: f64 = g.iter().sum();
        let dgamma_dalpha = g
            .iter()
            .zip(&beta)
            .zip(alpha)
            .map(|((&x, &b), &a)| gamma_sample_grad(x, b) * concentration_grad(a))
            .collect();
        DirichletSample {
            weights: g.iter().map(|x| x / total).collect(),
            dgamma_dalpha,
            total,
        }
    }

    /// Gradient with respect to `alpha` of a loss whose gradient with respect to the
    /// weights is `grad`: `dL/dG_k = (grad_k - sum_j w_j grad_j) / sum(G)`.
    pub fn backward(&self, grad: &[f64]) -> Vec<f64> {
        let dot: f64 = self.weights.iter().zip(grad).map(|(w, g)| w * g).sum();
        grad.iter()
            .zip(&self.dgamma_dalpha)
            .map(|(g, d)| (g - dot) / self.total * d)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The `Gamma(a, 1)` sample at CDF value `u`, by bisection.
    fn quantile(a: f64, u: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, 100.0 + 10.0 * a);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if gamma_lr(a, mid) < u {
                lo = mid
            } else {
                hi = mid
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn gamma_sample_gradient_matches_the_moving_quantile() {
        // The implicit gradient is the derivative of the sample at a fixed uniform.
        for a in [0.05, 0.3, 1.0, 2.5, 9.0] {
            for u in [0.02, 0.3, 0.5, 0.9, 0.995] {
                let x = quantile(a, u);
                let h = 1e-5 * a;
                let fd = (quantile(a + h, u) - quantile(a - h, u)) / (2.0 * h);
                let g = gamma_sample_grad(x, a);
                assert!(
                    (g - fd).abs() <= 1e-4 * fd.abs().max(1e-3),
                    "a {a}, u {u}: implicit {g}, finite differences {fd}"
                );
            }
        }
    }

    #[test]
    fn concentration_is_elu_plus_one_and_its_derivative() {
        for a in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            let h = 1e-6;
            let fd = (concentration(a + h) - concentration(a - h)) / (2.0 * h);
            assert!((fd - concentration_grad(a)).abs() < 1e-6, "{a}");
        }
        assert_eq!(concentration(2.0), 3.0);
        assert!((concentration(-1.0) - (-1f64).exp()).abs() < 1e-15);
        assert_eq!(concentration(-100.0), MIN_CONCENTRATION);
    }

    #[test]
    fn pathwise_gradient_of_the_mean_matches_its_closed_form() {
        // E[w_k] = beta_k / sum(beta); the average pathwise gradient of w_0 must match the
        // derivative of that mean with respect to every alpha_j.
        let alpha = [0.4, -0.3, 1.2, 0.0];
        let beta: Vec<f64> = alpha.iter().map(|&a| concentration(a)).collect();
        let total: f64 = beta.iter().sum();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let n = 40_000;
        let mut mean_grad = [0.0; 4];
        for _ in 0..n {
            let s = DirichletSample::draw(&alpha, &mut rng);
            assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let g = s.backward(&[1.0, 0.0, 0.0, 0.0]);
            for (m, g) in mean_grad.iter_mut().zip(g) {
                *m += g / n as f64;
            }
        }
        for j in 0..4 {
            let d_mean_d_beta = if j == 0 {
                (total - beta[0]) / (total * total)
            } else {
                -beta[0] / (total * total)
            };
            let expected = d_mean_d_beta * concentration_grad(alpha[j]);
            assert!(
                (mean_grad[j] - expected).abs() < 0.05 * expected.abs() + 2e-3,
                "alpha_{j}: pathwise {}, closed form {expected}",
                mean_grad[j]
            );
        }
    }
}
