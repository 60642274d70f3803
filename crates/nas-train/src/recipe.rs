//! The `train` evaluator's table: a [`TrainConfig`] (the recipe) plus the keys that only
//! concern the evaluator. The evaluator and the final phase both read the table through
//! [`TrainTable::parse`], so only this file knows which keys are which.

use serde_json::Value;

use crate::config::TrainConfig;

/// Keys of the evaluator's table besides those of [`TrainConfig`].
pub const EVALUATOR_KEYS: &[&str] = &[
    "keep_checkpoints",
    "test_accuracy",
    "inherit",
    "inherit_epochs",
];

/// The `train` evaluator's table, parsed and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTable {
    /// How to train: what the final phase retrains with as well.
    pub recipe: TrainConfig,
    /// Keep a checkpoint per network so a higher fidelity continues training.
    pub keep_checkpoints: bool,
    /// Also report `test_accuracy` and `test_loss`.
    pub test_accuracy: bool,
    /// Start a candidate whose proposer names a parent from the parent's trained weights
    /// (network morphism), for [`TrainTable::inherit_epochs`] epochs.
    pub inherit: bool,
    /// Epochs of an inherited candidate: `inherit_epochs`, by default half of `epochs` (at
    /// least 1).
    pub inherit_epochs: usize,
}

impl TrainTable {
    /// Every key the table accepts: the recipe's, then the evaluator's own.
    pub fn accepted_keys() -> Vec<&'static str> {
        TrainConfig::KEYS
            .iter()
            .chain(EVALUATOR_KEYS)
            .copied()
            .collect()
    }

    /// Reads the table (as JSON; `null` is an empty table) and validates the recipe. Unknown
    /// keys are errors listing the accepted ones; every message starts with
    /// "train evaluator:".
    pub fn parse(table: &Value) -> Result<TrainTable, String> {
        let mut map = match table {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map.clone(),
            other => {
                return Err(format!(
                    "train evaluator: expected a table of options, found {other}"
                ));
            }
        };
        let accepted = Self::accepted_keys();
        if let Some(key) = map.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(format!(
                "train evaluator: unknown option `{key}`; accepted: {}",
                accepted.join(", ")
            ));
        }
        let mut flag = |key: &str| match map.remove(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(format!(
                "train evaluator: `{key}` must be true or false, found {other}"
            )),
        };
        let keep_checkpoints = flag("keep_checkpoints")?;
        let test_accuracy = flag("test_accuracy")?;
        let inherit = flag("inherit")?;
        let inherit_epochs = match map.remove("inherit_epochs") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=1_000_000).contains(&n) => Some(n as usize),
                _ => {
                    return Err(format!(
                        "train evaluator: `inherit_epochs` must be a whole number of epochs of at least 1, found {v}"
                    ));
                }
            },
        };
        if inherit_epochs.is_some() && !inherit {
            return Err(
                "train evaluator: `inherit_epochs` is set but `inherit` is not; add `inherit = true` or remove it"
                    .into(),
            );
        }
        let recipe: TrainConfig = serde_json::from_value(Value::Object(map))
            .map_err(|e| format!("train evaluator: {e}"))?;
        recipe
            .validate()
            .map_err(|e| format!("train evaluator: {e}"))?;
        let inherit_epochs = inherit_epochs.unwrap_or((recipe.epochs / 2).max(1));
        Ok(TrainTable {
            recipe,
            keep_checkpoints,
            test_accuracy,
            inherit,
            inherit_epochs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_own_keys() {
        let s = TrainTable::parse(&Value::Null).unwrap();
        assert_eq!(s.recipe, TrainConfig::default());
        assert!(!s.keep_checkpoints);
        let s =
            TrainTable::parse(&json!({"epochs": 3, "lr": 0.1, "keep_checkpoints": true})).unwrap();
        assert_eq!((s.recipe.epochs, s.recipe.lr), (3, Some(0.1)));
        assert!(s.keep_checkpoints);
        assert!(!s.test_accuracy);
    }

    #[test]
    fn inherit_epochs_default_to_half_the_epochs() {
        let s = TrainTable::parse(&json!({"epochs": 6})).unwrap();
        assert!(!s.inherit);
        let s = TrainTable::parse(&json!({"epochs": 6, "inherit": true})).unwrap();
        assert!(s.inherit);
        assert_eq!(s.inherit_epochs, 3);
        let s = TrainTable::parse(&json!({"epochs": 1, "inherit": true})).unwrap();
        assert_eq!(s.inherit_epochs, 1);
        let s =
            TrainTable::parse(&json!({"epochs": 6, "inherit": true, "inherit_epochs": 4})).unwrap();
        assert_eq!((s.inherit_epochs, s.recipe.epochs), (4, 6));
    }

    #[test]
    fn evaluator_keys_are_not_part_of_the_recipe() {
        // The final phase retrains with `recipe`: the evaluator's own keys must not reach it.
        let s = TrainTable::parse(&json!({
            "epochs": 2, "test_accuracy": true, "keep_checkpoints": true
        }))
        .unwrap();
        assert!(s.test_accuracy && s.keep_checkpoints);
        assert_eq!(
            s.recipe,
            TrainConfig {
                epochs: 2,
                ..Default::default()
            }
        );
        for key in EVALUATOR_KEYS {
            assert!(!TrainConfig::KEYS.contains(key), "{key} is in both lists");
        }
    }

    #[test]
    fn unknown_keys_name_the_key_and_list_the_accepted_ones() {
        let e = TrainTable::parse(&json!({"epoch": 3})).unwrap_err();
        assert!(e.contains("unknown option `epoch`"), "{e}");
        assert!(
            e.contains("epochs, batch, optimizer, lr")
                && e.ends_with("keep_checkpoints, test_accuracy, inherit, inherit_epochs"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_explained() {
        let e = TrainTable::parse(&json!({"optimizer": "adam"})).unwrap_err();
        assert!(e.contains("adam") && e.contains("adamw"), "{e}");
        let e = TrainTable::parse(&json!({"momentum": 1.5})).unwrap_err();
        assert!(e.contains("`momentum`"), "{e}");
        let e = TrainTable::parse(&json!({"keep_checkpoints": "yes"})).unwrap_err();
        assert!(e.contains("true or false"), "{e}");
        let e = TrainTable::parse(&json!({"test_accuracy": 1})).unwrap_err();
        assert!(e.contains("`test_accuracy` must be true or false"), "{e}");
        let e = TrainTable::parse(&json!({"inherit": true, "inherit_epochs": 0})).unwrap_err();
        assert!(e.contains("`inherit_epochs` must be a whole number"), "{e}");
        let e = TrainTable::parse(&json!({"inherit_epochs": 2})).unwrap_err();
        assert!(e.contains("add `inherit = true`"), "{e}");
        let e = TrainTable::parse(&json!([1])).unwrap_err();
        assert!(e.contains("table"), "{e}");
    }
}
