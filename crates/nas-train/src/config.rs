//! The training configuration (the `train` evaluator's table and `[final]` retraining).

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with (Nesterov) momentum and coupled L2 weight decay, as in PyTorch's `SGD`.
    Sgd,
    /// Adam with decoupled weight decay, as in PyTorch's `AdamW`.
    Adamw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Half-cosine from `lr` towards 0 over the steps after warm-up.
    Cosine,
    Constant,
    /// `lr` times 0.1 from half the steps on, times 0.01 from three quarters on.
    Step,
}

/// How to train a candidate. Every key has a default; unknown keys are errors.
///
/// ```toml
/// epochs = 10            # also the span of the LR schedule
/// batch = 64
/// optimizer = "sgd"      # or "adamw"
/// lr = 0.05              # default 0.05 for sgd, 1e-3 for adamw
/// momentum = 0.9         # sgd
/// nesterov = true        # sgd
/// beta1 = 0.9            # adamw
/// beta2 = 0.999          # adamw
/// eps = 1e-8             # adamw
/// schedule = "cosine"    # or "constant", "step"
/// warmup_epochs = 0      # linear warm-up
/// weight_decay = 5e-4
/// label_smoothing = 0.0
/// augment = true         # overrides `[data] augment` when given
/// eval_every = 1         # validate every n epochs (0: only after the last)
/// seed = 1               # dropout masks; default: the data set's seed
/// nchwc = true           # CPU: ONNX Runtime's blocked-layout conv kernels in the step
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub optimizer: OptimizerKind,
    pub lr: Option<f64>,
    pub momentum: f64,
    pub nesterov: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: Schedule,
    pub warmup_epochs: usize,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    pub augment: Option<bool>,
    pub eval_every: usize,
    pub seed: Option<u64>,
    /// On the CPU provider (x86-64), run the step's convs on ONNX Runtime's blocked-layout
    /// (NCHWc) kernels where they apply (same results, faster); off: standard ops only.
    pub nchwc: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch: 64,
            optimizer: OptimizerKind::Sgd,
            lr: None,
            momentum: 0.9,
            nesterov: true,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Cosine,
            warmup_epochs: 0,
            weight_decay: 5e-4,
            label_smoothing: 0.0,
            augment: None,
            eval_every: 1,
            seed: None,
            nchwc: true,
        }
    }
}

impl TrainConfig {
    /// Every key of the table, in declaration order (for "accepted: ..." messages).
    pub const KEYS: &'static [&'static str] = &[
        "epochs",
        "batch",
        "optimizer",
        "lr",
        "momentum",
        "nesterov",
        "beta1",
        "beta2",
        "eps",
        "schedule",
        "warmup_epochs",
        "weight_decay",
        "label_smoothing",
        "augment",
        "eval_every",
        "seed",
        "nchwc",
    ];

    /// The learning rate: `lr` or the optimizer's default.
    pub fn base_lr(&self) -> f64 {
        self.lr.unwrap_or(match self.optimizer {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adamw => 1e-3,
        })
    }

    /// Checks value ranges; the error names the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &str, reason: String| {
            Err(TrainError::Config {
                key: key.into(),
                reason,
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "is 0; give at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch", "is 0; give at least 1".into());
        }
        let lr = self.base_lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("lr", format!("is {lr}; give a positive number"));
        }
        let unit = |key: &str, v: f64| -> Result<(), TrainError> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                bad(
                    key,
                    format!("is {v}; give a value from 0 (inclusive) to 1 (exclusive)"),
                )
            }
        };
        unit("momentum", self.momentum)?;
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        unit("label_smoothing", self.label_smoothing)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(
                "eps",
                format!("is {}; give a small positive number", self.eps),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("is {}; give 0 or a positive number", self.weight_decay),
            );
        }
        if self.warmup_epochs >= self.epochs && self.warmup_epochs > 0 {
            return bad(
                "warmup_epochs",
                format!(
                    "is {} but `epochs` is {}; warm-up must end before training does",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        Ok(())
    }

    /// Whether two configs train the same way, ignoring the keys that only say how long
    /// (`epochs`), how often to validate (`eval_every`) and the seed.
    pub fn same_recipe(&self, other: &TrainConfig) -> bool {
        let strip = |c: &TrainConfig| TrainConfig {
            epochs: 0,
            eval_every: 0,
            seed: None,
            ..c.clone()
        };
        strip(self) == strip(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_serialized_fields() {
        let v = serde_json::to_value(TrainConfig::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = TrainConfig::KEYS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn defaults_and_lr_per_optimizer() {
        let c: TrainConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, TrainConfig::default());
        assert_eq!(c.base_lr(), 0.05);
        let a: TrainConfig = serde_json::from_str(r#"{"optimizer": "adamw"}"#).unwrap();
        assert_eq!(a.base_lr(), 1e-3);
        let e = serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `epoch`"), "{e}");
        let e = serde_json::from_str::<TrainConfig>(r#"{"schedule": "linear"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosine"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let check = |c: TrainConfig, key: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{e}");
        };
        check(
            TrainConfig {
                lr: Some(-1.0),
                ..Default::default()
            },
            "lr",
        );
        check(
            TrainConfig {
                momentum: 1.0,
                ..Default::default()
            },
            "momentum",
        );
        check(
            TrainConfig {
                warmup_epochs: 10,
                ..Default::default()
            },
            "warmup_epochs",
        );
        check(
            TrainConfig {
                batch: 0,
                ..Default::default()
            },
            "batch",
        );
        TrainConfig::default().validate().unwrap();
    }

    #[test]
    fn recipe_ignores_length_and_seed() {
        let a = TrainConfig::default();
        let b = TrainConfig {
            epochs: 30,
            seed: Some(4),
            eval_every: 0,
            ..Default::default()
        };
        assert!(a.same_recipe(&b));
        let c = TrainConfig {
            lr: Some(0.1),
            ..Default::default()
        };
        assert!(!a.same_recipe(&c));
    }
}
