//! CartPole-v1: a pole hinged on a cart that moves along a frictionless track (Barto, Sutton
//! and Anderson 1983, in the form Gymnasium uses).
//!
//! State `[x, x_dot, theta, theta_dot]` (cart position and velocity, pole angle from upright
//! in radians and its angular velocity), which is also the observation. Action 0 pushes the
//! cart left with 10 N, action 1 right. One explicit Euler step of 0.02 s per action. Reward
//! 1 for every step, including the one that ends the episode. Terminated when `|x| > 2.4` or
//! `|theta| > 12°`; truncated after 500 steps.

use rand_chacha::ChaCha8Rng;

use crate::env::{Env, EnvSpec, Episode, Step};

pub const GRAVITY: f64 = 9.8;
pub const MASS_CART: f64 = 1.0;
pub const MASS_POLE: f64 = 0.1;
/// Half the pole's length (the distance from the hinge to its centre of mass).
pub const HALF_LENGTH: f64 = 0.5;
pub const FORCE: f64 = 10.0;
/// Seconds per step.
pub const TAU: f64 = 0.02;
pub const X_THRESHOLD: f64 = 2.4;
/// 12 degrees in radians.
pub const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
pub const MAX_STEPS: usize = 500;
/// Mean return over 100 episodes that counts as solving the task (Gymnasium's).
pub const REWARD_THRESHOLD: f64 = 475.0;
/// Initial states are uniform in `[-INIT_RANGE, INIT_RANGE)` in every component.
pub const INIT_RANGE: f64 = 0.05;

/// The CartPole-v1 environment.
#[derive(Clone, Debug, Default)]
pub struct CartPole {
    episode: Episode,
}

impl CartPole {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state `[x, x_dot, theta, theta_dot]` in float64.
    pub fn state(&self) -> [f64; 4] {
        self.episode.state
    }

    /// Starts an episode at a given state (for tests and hand-made starts).
    pub fn set_state(&mut self, state: [f64; 4]) {
        self.episode.start(state);
    }

    /// Steps taken in the running episode.
    pub fn steps(&self) -> usize {
        self.episode.steps
    }

    fn observation(&self) -> Vec<f32> {
        self.episode.state.iter().map(|&v| v as f32).collect()
    }
}

/// The state after applying `force` for one Euler step from `state`.
fn euler_step(state: [f64; 4], force: f64) -> [f64; 4] {
    let [x, x_dot, theta, theta_dot] = state;
    let total_mass = MASS_CART + MASS_POLE;
    let pole_mass_length = MASS_POLE * HALF_LENGTH;
    let (sin, cos) = theta.sin_cos();
    let temp = (force + pole_mass_length * theta_dot * theta_dot * sin) / total_mass;
    let theta_acc = (GRAVITY * sin - cos * temp)
        / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos * cos / total_mass));
    let x_acc = temp - pole_mass_length * theta_acc * cos / total_mass;
    // Gymnasium's "euler" integrator: positions move with the old velocities.
    [
        x + TAU * x_dot,
        x_dot + TAU * x_acc,
        theta + TAU * theta_dot,
        theta_dot + TAU * theta_acc,
    ]
}

impl Env for CartPole {
    fn spec(&self) -> EnvSpec {
        EnvSpec {
            name: "cartpole",
            observation_size: 4,
            actions: 2,
            max_steps: MAX_STEPS,
            reward_threshold: REWARD_THRESHOLD,
        }
    }

    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Vec<f32> {
        self.episode.start_random(rng, INIT_RANGE);
        self.observation()
    }

    fn step(&mut self, action: usize) -> Step {
        let spec = self.spec();
        self.episode.check_step(&spec, action);
        let force = if action == 1 { FORCE } else { -FORCE };
        let state = euler_step(self.episode.state, force);
        let [x, _, theta, _] = state;
        let terminated = !(-X_THRESHOLD..=X_THRESHOLD).contains(&x)
            || !(-THETA_THRESHOLD..=THETA_THRESHOLD).contains(&theta);
        let truncated = self.episode.advance(&spec, state, terminated);
        Step {
            observation: self.observation(),
            reward: 1.0,
            terminated,
            truncated,
        }
    }
}
