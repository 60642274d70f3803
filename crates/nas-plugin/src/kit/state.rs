//! `save` and `restore` through serde.
//!
//! A saved state is JSON. Two things do not survive JSON as a plain `#[derive(Serialize)]`
//! would have them:
//! - maps whose keys are not strings or integers (tuples, vectors, structs): serde_json
//!   refuses them with "key must be a string". Mark such fields
//!   `#[serde(with = "nas_plugin::kit::state::pairs")]` to save them as a list of pairs;
//!   [`save_state`] names the fix when it meets one.
//! - non-finite floats (`inf`, `NaN`) become `null`; save those as bit patterns
//!   ([`bits`](super::bits)).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The state as JSON, for `Strategy::save`.
pub fn save_state<T: Serialize>(strategy: &str, state: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(state).map_err(|e| {
        let hint = if e.to_string().contains("key must be a string") {
            "; a map with non-string keys must be saved as a list of pairs: mark the field \
             `#[serde(with = \"nas_plugin::kit::state::pairs\")]`"
        } else {
            ""
        };
        format!("{strategy} cannot save its state: {e}{hint}")
    })
}

/// A state saved by [`save_state`], for `Strategy::restore`.
pub fn restore_state<T: DeserializeOwned>(
    strategy: &str,
    state: serde_json::Value,
) -> Result<T, String> {
    serde_json::from_value(state)
        .map_err(|e| format!("{strategy} cannot read its saved state: {e}"))
}

/// `#[serde(with = "nas_plugin::kit::state::pairs")]`: a map (`HashMap`, `BTreeMap`) saved as
/// a list of `[key, value]` pairs, so any serializable key works.
pub mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<M, K, V, S>(map: &M, s: S) -> Result<S::Ok, S::Error>
    where
        for<'a> &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        s.collect_seq(map)
    }

    pub fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
