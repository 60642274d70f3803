//! Running a policy for whole episodes.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::env::{Env, RlError};

/// Runs `episodes` episodes of `policy` (observation -> action) on `env` and returns each
/// episode's return (sum of rewards), in order.
///
/// The initial states come from one `ChaCha8Rng` seeded with `seed`, so the same seed and a
/// deterministic policy give the same returns. A policy that returns an action outside
/// `0..env.actions()` is an error, not a panic.
pub fn run_episodes(
    env: &mut dyn Env,
    mut policy: impl FnMut(&[f32]) -> usize,
    episodes: usize,
    seed: u64,
) -> Result<Vec<f64>, RlError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let actions = env.actions();
    let mut returns = Vec::with_capacity(episodes);
    for episode in 0..episodes {
        let mut observation = env.reset(&mut rng);
        let mut total = 0.0;
        for step in 0.. {
            let action = policy(&observation);
            if action >= actions {
                return Err(RlError::BadAction {
                    env: env.name(),
                    action,
                    actions,
                    episode,
                    step,
                });
            }
            let s = env.step(action);
            total += s.reward;
            if s.done() {
                break;
            }
            observation = s.observation;
        }
        returns.push(total);
    }
    Ok(returns)
}
