//! The surrogate: an ensemble of MLPs predicting the standardized loss from the encoding of a
//! candidate plus its feature metrics, and one auxiliary MLP per feature metric predicting it
//! from the encoding (for candidates that have not been measured).

use std::collections::BTreeMap;

use nas_plugin::kit;
use serde::{Deserialize, Serialize};

use crate::Config;
use crate::encoding::Encoder;
use crate::mlp::{Mlp, Training};

/// Adam's step size, minibatch rows and weight decay of every fit.
const LEARNING_RATE: f64 = 0.01;
const BATCH: usize = 32;
const WEIGHT_DECAY: f64 = 1e-4;
/// A fresh network trains this many times `steps` minibatches.
const FRESH_FACTOR: usize = 3;
/// Trials that must have measured a feature metric before it is used.
pub const MIN_FEATURE_ROWS: usize = 5;
/// A positive metric whose largest value is more than this many times its smallest is
/// learned on a log scale.
const LOG_SPAN: f64 = 100.0;

/// One candidate known to the strategy, as the fit sees it.
pub struct TrainRow<'a> {
    pub values: &'a [f64],
    pub loss: Option<f64>,
    pub metrics: &'a BTreeMap<String, f64>,
}

/// A feature metric: how it is scaled, and the network predicting it from the encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Feature {
    name: String,
    log: bool,
    mean: f64,
    std: f64,
    model: Mlp,
}

impl Feature {
    fn scale(&self, v: f64) -> f64 {
        let t = if self.log { v.ln() } else { v };
        (t - self.mean) / self.std
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Surrogate {
    features: Vec<Feature>,
    members: Vec<Mlp>,
    loss_mean: f64,
    loss_std: f64,
    /// The lowest standardized loss of the training rows.
    best: f64,
}

fn training(steps: usize, fresh: bool) -> Training {
    Training {
        steps: if fresh { steps * FRESH_FACTOR } else { steps },
        batch: BATCH,
        learning_rate: LEARNING_RATE,
        weight_decay: WEIGHT_DECAY,
    }
}

/// Mean and standard deviation (1 when there is no spread).
fn moments(xs: &[f64]) -> (f64, f64) {
    let (mean, std) = crate::stats(xs);
    (mean, if std > 1e-12 { std } else { 1.0 })
}

impl Surrogate {
    /// Fits `slot` (warm-starting from what it holds when the shapes still match) on `rows`.
    pub fn fit(
        slot: &mut Option<Surrogate>,
        encoder: &Encoder,
        rows: &[TrainRow],
        feature_names: &[String],
        config: &Config,
        rng: &mut kit::Rng,
    ) {
        let old = slot.take();
        let encoded: Vec<Vec<f64>> = rows.iter().map(|r| encoder.encode(r.values)).collect();

        // Auxiliary networks, one per feature metric measured often enough.
        let mut features = Vec::new();
        for name in feature_names {
            let measured: Vec<(usize, f64)> = (rows.iter().enumerate())
                .filter_map(|(i, r)| r.metrics.get(name).map(|&v| (i, v)))
                .collect();
            if measured.len() < MIN_FEATURE_ROWS {
                continue;
            }
            let (lo, hi) = measured
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                    (lo.min(*v), hi.max(*v))
                });
            if hi <= lo {
                continue; // no spread: nothing to learn from it
            }
            let log = lo > 0.0 && hi / lo > LOG_SPAN;
            let t: Vec<f64> = (measured.iter())
                .map(|(_, v)| if log { v.ln() } else { *v })
                .collect();
            let (mean, std) = moments(&t);
            let previous = (old.as_ref())
                .and_then(|s| s.features.iter().find(|f| &f.name == name))
                .map(|f| f.model.clone())
                .filter(|m| m.inputs() == encoder.len());
            let fresh = previous.is_none();
            let mut model =
                previous.unwrap_or_else(|| Mlp::new(encoder.len(), &config.hidden, rng));
            let xs: Vec<Vec<f64>> = measured.iter().map(|(i, _)| encoded[*i].clone()).collect();
            let ys: Vec<f64> = t.iter().map(|v| (v - mean) / std).collect();
            model.fit(&xs, &ys, training(config.steps, fresh), rng);
            features.push(Feature {
                name: name.clone(),
                log,
                mean,
                std,
                model,
            });
        }

        let mut surrogate = Surrogate {
            features,
            members: Vec::new(),
            loss_mean: 0.0,
            loss_std: 1.0,
            best: 0.0,
        };
        let mut xs = Vec::new();
        let mut losses = Vec::new();
        for (r, e) in rows.iter().zip(&encoded) {
            if let Some(l) = r.loss {
                xs.push(surrogate.extend(e.clone(), Some(r.metrics)));
                losses.push(l);
            }
        }
        if losses.is_empty() {
            return; // nothing to learn the loss from yet: no surrogate
        }
        let (mean, std) = moments(&losses);
        let ys: Vec<f64> = losses.iter().map(|l| (l - mean) / std).collect();
        surrogate.loss_mean = mean;
        surrogate.loss_std = std;
        surrogate.best = ys.iter().copied().fold(f64::INFINITY, f64::min);

        let inputs = encoder.len() + surrogate.features.len();
        let same_features = old.as_ref().is_some_and(|s| {
            s.feature_names() == surrogate.feature_names()
                && s.members.len() == config.ensemble
                && s.members.iter().all(|m| m.inputs() == inputs)
        });
        let (members, fresh) = match old {
            Some(s) if same_features => (s.members, false),
            _ => (
                (0..config.ensemble)
                    .map(|_| Mlp::new(inputs, &config.hidden, rng))
                    .collect(),
                true,
            ),
        };
        surrogate.members = members;
        for m in &mut surrogate.members {
            m.fit(&xs, &ys, training(config.steps, fresh), rng);
        }
        *slot = Some(surrogate);
    }

    /// The names of the feature metrics in use, in input order.
    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }

    /// The encoding followed by the scaled feature metrics: measured ones from `metrics`,
    /// the auxiliary networks' predictions for the rest.
    fn extend(&self, mut x: Vec<f64>, metrics: Option<&BTreeMap<String, f64>>) -> Vec<f64> {
        let encoded_len = x.len();
        for f in &self.features {
            let v = match metrics.and_then(|m| m.get(&f.name)) {
                Some(&v) => f.scale(v),
                None => f.model.predict(&x[..encoded_len]),
            };
            x.push(v);
        }
        x
    }

    /// The surrogate's input for a candidate (`metrics`: what was measured of it, if any).
    pub fn input(
        &self,
        encoder: &Encoder,
        values: &[f64],
        metrics: Option<&BTreeMap<String, f64>>,
    ) -> Vec<f64> {
        self.extend(encoder.encode(values), metrics)
    }

    /// Every member's prediction of the standardized loss.
    pub fn predictions(&self, x: &[f64]) -> Vec<f64> {
        self.members.iter().map(|m| m.predict(x)).collect()
    }

    /// A standardized loss in the loss's own units.
    pub fn unscale(&self, y: f64) -> f64 {
        y * self.loss_std + self.loss_mean
    }

    /// The lowest standardized loss seen in training.
    pub fn best_scaled(&self) -> f64 {
        self.best
    }

    /// Checks a restored surrogate against the encoding length.
    pub fn check(&self, encoded_len: usize) -> Result<(), String> {
        let inputs = encoded_len + self.features.len();
        if self.members.is_empty() {
            return Err("it has no ensemble members".into());
        }
        if let Some(m) = self
            .members
            .iter()
            .find(|m| !m.is_valid() || m.inputs() != inputs)
        {
            return Err(format!(
                "a member takes {} inputs (expected {inputs}) or has a weight that is not finite",
                m.inputs()
            ));
        }
        if let Some(f) =
            (self.features.iter()).find(|f| !f.model.is_valid() || f.model.inputs() != encoded_len)
        {
            return Err(format!("the network of feature `{}` does not fit", f.name));
        }
        let finite = [self.loss_mean, self.loss_std, self.best];
        if !finite.iter().all(|v| v.is_finite()) || self.loss_std <= 0.0 {
            return Err("its loss scaling is not finite".into());
        }
        Ok(())
    }
}
