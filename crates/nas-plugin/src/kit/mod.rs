//! The strategy kit: what nearly every strategy needs besides its algorithm.
//!
//! - [`sample`]: uniform draws per choice, one-choice mutations and neighbour steps, the
//!   choices that can change at all.
//! - [`check_space`]: refuses spaces nothing can be sampled from, naming the choice.
//! - [`float`]: exact float handling (bit patterns, values that survive the JSON trip).
//! - [`options`]: the strategy's TOML table read into a `#[serde(deny_unknown_fields)]`
//!   struct, with errors that name the key and list the accepted ones.
//! - [`state`]: `save`/`restore` through serde, maps with non-string keys included.
//!
//! [`rand`], [`rand_chacha`] and [`rand_distr`] are re-exported so a strategy crate can draw with the same
//! versions the kit's functions take; [`Rng`] is the seeded generator every built-in
//! strategy saves with its state.

pub mod float;
pub mod options;
pub mod sample;
mod space;
pub mod state;

pub use float::{bits, from_bits, json_exact, json_exact_point};
pub use options::parse_options;
pub use sample::{
    fixed_value, is_mutable, mutable_choices, mutate_value, neighbour_values, sample_choice,
    sample_point,
};
pub use space::check_space;
pub use state::{restore_state, save_state};

pub use rand;
pub use rand_chacha;
pub use rand_distr;

/// The seeded generator of the built-in strategies: small, fast, and serializable, so a saved
/// state resumes the exact stream of draws.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator seeded with `seed` (`StrategyContext::seed`).
pub fn seeded(seed: u64) -> Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests;
