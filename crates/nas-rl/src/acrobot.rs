//! Acrobot-v1: two links hanging from a fixed pivot, torque applied only at the joint between
//! them (Sutton and Barto's book, section 11.3, as Gymnasium implements it).
//!
//! State `[theta1, theta2, dtheta1, dtheta2]`: the first link's angle from hanging straight
//! down, the second link's angle relative to the first, and their angular velocities. The
//! observation is `[cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2]`.
//! Actions 0, 1, 2 apply torque -1, 0, +1 for 0.2 s, integrated with one classic RK4 step;
//! angles are then wrapped to `[-pi, pi]` and velocities clipped to `4 pi` and `9 pi`.
//! Reward -1 per step until the tip rises above the line one link length above the pivot
//! (`-cos theta1 - cos(theta1 + theta2) > 1`), where the episode terminates with reward 0;
//! truncated after 500 steps.

use std::f64::consts::PI;

use rand_chacha::ChaCha8Rng;

use crate::env::{Env, EnvSpec, Episode, Step};

pub const DT: f64 = 0.2;
pub const LINK_LENGTH_1: f64 = 1.0;
pub const LINK_MASS_1: f64 = 1.0;
pub const LINK_MASS_2: f64 = 1.0;
/// Distance from each link's joint to its centre of mass.
pub const LINK_COM_1: f64 = 0.5;
pub const LINK_COM_2: f64 = 0.5;
/// Moment of inertia of each link.
pub const LINK_MOI: f64 = 1.0;
pub const GRAVITY: f64 = 9.8;
pub const MAX_VEL_1: f64 = 4.0 * PI;
pub const MAX_VEL_2: f64 = 9.0 * PI;
/// Torque of actions 0, 1, 2.
pub const TORQUES: [f64; 3] = [-1.0, 0.0, 1.0];
pub const MAX_STEPS: usize = 500;
/// Mean return over 100 episodes that counts as solving the task (Gymnasium's).
pub const REWARD_THRESHOLD: f64 = -100.0;
/// Initial states are uniform in `[-INIT_RANGE, INIT_RANGE)` in every component.
pub const INIT_RANGE: f64 = 0.1;

/// The Acrobot-v1 environment.
#[derive(Clone, Debug, Default)]
pub struct Acrobot {
    episode: Episode,
}

impl Acrobot {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state `[theta1, theta2, dtheta1, dtheta2]` in float64.
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

    /// Whether the tip is above the line: the termination test.
    pub fn tip_above_line(state: [f64; 4]) -> bool {
        -state[0].cos() - (state[1] + state[0]).cos() > 1.0
    }

    fn observation(&self) -> Vec<f32> {
        let [t1, t2, d1, d2] = self.episode.state;
        [t1.cos(), t1.sin(), t2.cos(), t2.sin(), d1, d2]
            .iter()
            .map(|&v| v as f32)
            .collect()
    }
}

/// Time derivative of `[theta1, theta2, dtheta1, dtheta2]` under `torque` (the book's
/// equations of motion, not the NIPS paper's variant).
pub fn derivatives(state: [f64; 4], torque: f64) -> [f64; 4] {
    let (m1, m2, l1) = (LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1);
    let (lc1, lc2, i1, i2, g) = (LINK_COM_1, LINK_COM_2, LINK_MOI, LINK_MOI, GRAVITY);
    let [t1, t2, d1, d2] = state;
    let d_1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * t2.cos()) + i1 + i2;
    let d_2 = m2 * (lc2 * lc2 + l1 * lc2 * t2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (t1 + t2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * d2 * d2 * t2.sin() - 2.0 * m2 * l1 * lc2 * d2 * d1 * t2.sin()
        + (m1 * lc1 + m2 * l1) * g * (t1 - PI / 2.0).cos()
        + phi2;
    let dd2 = (torque + d_2 / d_1 * phi1 - m2 * l1 * lc2 * d1 * d1 * t2.sin() - phi2)
        / (m2 * lc2 * lc2 + i2 - d_2 * d_2 / d_1);
    let dd1 = -(d_2 * dd2 + phi1) / d_1;
    [d1, d2, dd1, dd2]
}

/// One classic fourth-order Runge-Kutta step of length `DT`, torque held constant.
fn rk4(state: [f64; 4], torque: f64) -> [f64; 4] {
    let along = |s: [f64; 4], k: [f64; 4], h: f64| std::array::from_fn(|i| s[i] + h * k[i]);
    let k1 = derivatives(state, torque);
    let k2 = derivatives(along(state, k1, DT / 2.0), torque);
    let k3 = derivatives(along(state, k2, DT / 2.0), torque);
    let k4 = derivatives(along(state, k3, DT), torque);
    std::array::from_fn(|i| state[i] + DT / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// `x` shifted by whole periods of `2 pi` into `[-pi, pi]`.
pub fn wrap_angle(mut x: f64) -> f64 {
    while x > PI {
        x -= 2.0 * PI;
    }
    while x < -PI {
        x += 2.0 * PI;
    }
    x
}

/// The state after one action: RK4, then wrapped angles and clipped velocities.
pub fn next_state(state: [f64; 4], torque: f64) -> [f64; 4] {
    let [t1, t2, d1, d2] = rk4(state, torque);
    [
        wrap_angle(t1),
        wrap_angle(t2),
        d1.clamp(-MAX_VEL_1, MAX_VEL_1),
        d2.clamp(-MAX_VEL_2, MAX_VEL_2),
    ]
}

impl Env for Acrobot {
    fn spec(&self) -> EnvSpec {
        EnvSpec {
            name: "acrobot",
            observation_size: 6,
            actions: 3,
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
        let state = next_state(self.episode.state, TORQUES[action]);
        let terminated = Self::tip_above_line(state);
        let truncated = self.episode.advance(&spec, state, terminated);
        Step {
            observation: self.observation(),
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated,
        }
    }
}
