//! Exact floats. Values cross the plugin ABI, and saved states are stored, as JSON text.

use crate::messages::{ChoiceKind, SpaceDescriptor};

/// The bit patterns of `values`: a hashable, exactly comparable key (and an exact way to save
/// floats, e.g. losses).
pub fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// The inverse of [`bits`].
pub fn from_bits(bits: &[u64]) -> Vec<f64> {
    bits.iter().copied().map(f64::from_bits).collect()
}

/// Rounds a float to 12 significant digits, clamped to `low..=high`. serde_json's default
/// parser can be one ulp off on long decimals; a 12-digit value reads back exactly, so the
/// study stores, and tells back, the very value proposed. Use it for computed float values
/// (a step from another value, a model's sample) that the strategy later compares.
pub fn json_exact(x: f64, low: f64, high: f64) -> f64 {
    let y: f64 = format!("{x:.11e}").parse().unwrap_or(x);
    y.clamp(low, high)
}

/// `values` with every float choice rounded by [`json_exact`].
pub fn json_exact_point(space: &SpaceDescriptor, mut values: Vec<f64>) -> Vec<f64> {
    for (v, c) in values.iter_mut().zip(&space.choices) {
        if let ChoiceKind::Float { low, high, .. } = c.kind {
            *v = json_exact(*v, low, high);
        }
    }
    values
}

/// One value as an integer for a compact, exact saved state: discrete values as themselves,
/// floats as their bit pattern. [`decode_value`] reverses it.
pub fn encode_value(kind: &ChoiceKind, v: f64) -> i64 {
    match kind {
        ChoiceKind::Float { .. } => v.to_bits() as i64,
        _ => v as i64,
    }
}

/// The inverse of [`encode_value`].
pub fn decode_value(kind: &ChoiceKind, v: i64) -> f64 {
    match kind {
        ChoiceKind::Float { .. } => f64::from_bits(v as u64),
        _ => v as f64,
    }
}
