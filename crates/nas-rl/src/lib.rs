//! Classic-control environments for reinforcement learning, with the dynamics of Gymnasium's
//! `CartPole-v1` and `Acrobot-v1` (same constants, integrators, termination and truncation).
//!
//! - [`Env`]: reset from an explicit [`ChaCha8Rng`], then [`Env::step`] with a discrete action.
//!   Physics runs in float64 as in Gymnasium; observations are float32.
//! - [`by_name`]: `"cartpole"` or `"acrobot"`; [`Env::reward_threshold`] says when one is solved.
//! - [`run_episodes`]: the return of each of a number of episodes of a policy closure.
//!
//! A seed gives the same episodes forever: the only randomness is the initial state, drawn
//! from the generator passed to [`Env::reset`].

pub mod acrobot;
pub mod cartpole;
mod env;
mod episodes;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use env::{ENV_NAMES, Env, EnvSpec, RlError, Step, by_name};
pub use episodes::run_episodes;
pub use rand_chacha::ChaCha8Rng;
