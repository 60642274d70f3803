//! Derived seeds and hashing keys: pure functions of a seed and a stream (or a network hash),
//! shared by the study loop, the strategy mixer and the final phase.

/// Independent seeds for each strategy from the study seed (splitmix64).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed.wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Dedup key: the same network at the same fidelity. A multi-fidelity strategy promoting a
/// candidate to more epochs is a new evaluation, not a duplicate.
pub fn hash_key(hash: &str, fidelity: Option<f64>) -> u64 {
    let base = u64::from_str_radix(hash.get(..16).unwrap_or(hash), 16).unwrap_or(0);
    match fidelity {
        None => base,
        Some(f) => derive_seed(base, f.to_bits()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_of_one_seed_differ_and_repeat() {
        assert_eq!(derive_seed(7, 0), derive_seed(7, 0));
        assert_ne!(derive_seed(7, 0), derive_seed(7, 1));
        assert_ne!(derive_seed(7, 0), derive_seed(8, 0));
    }

    #[test]
    fn a_fidelity_makes_another_key() {
        let hash = "00000000000000ffabc";
        assert_eq!(hash_key(hash, None), 0xff);
        assert_ne!(hash_key(hash, Some(12.0)), hash_key(hash, None));
        assert_ne!(hash_key(hash, Some(12.0)), hash_key(hash, Some(200.0)));
    }
}
