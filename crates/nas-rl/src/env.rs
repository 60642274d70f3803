//! The environment interface, the error type and lookup by name.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::acrobot::Acrobot;
use crate::cartpole::CartPole;

/// What one step returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub observation: Vec<f32>,
    pub reward: f64,
    /// The episode ended inside the task (pole fell, tip reached the line).
    pub terminated: bool,
    /// The episode hit the step limit. Both flags can be set on the same step, as in
    /// Gymnasium's `TimeLimit`.
    pub truncated: bool,
}

impl Step {
    /// The episode is over: terminated or truncated.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// What an environment is, apart from its dynamics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvSpec {
    /// The name [`by_name`] knows it by.
    pub name: &'static str,
    /// Length of every observation vector.
    pub observation_size: usize,
    /// Number of actions; actions are `0..actions`.
    pub actions: usize,
    /// Steps after which an episode is truncated.
    pub max_steps: usize,
    /// The mean return over 100 consecutive episodes at which the task counts as solved
    /// (Gymnasium's `reward_threshold`).
    pub reward_threshold: f64,
}

/// A discrete-action environment: its [`EnvSpec`] and its dynamics.
pub trait Env {
    fn spec(&self) -> EnvSpec;

    /// Starts an episode from an initial state drawn from `rng`; returns its observation.
    fn reset(&mut self, rng: &mut ChaCha8Rng) -> Vec<f32>;

    /// Applies `action` for one time step.
    ///
    /// # Panics
    ///
    /// If `action >= actions()`, or if no episode is running (before the first
    /// [`Env::reset`], or after a step that ended the episode).
    fn step(&mut self, action: usize) -> Step;

    /// [`EnvSpec::name`].
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// [`EnvSpec::observation_size`].
    fn observation_size(&self) -> usize {
        self.spec().observation_size
    }

    /// [`EnvSpec::actions`].
    fn actions(&self) -> usize {
        self.spec().actions
    }

    /// [`EnvSpec::max_steps`].
    fn max_steps(&self) -> usize {
        self.spec().max_steps
    }

    /// [`EnvSpec::reward_threshold`].
    fn reward_threshold(&self) -> f64 {
        self.spec().reward_threshold
    }
}

/// Names [`by_name`] accepts.
pub const ENV_NAMES: &[&str] = &["cartpole", "acrobot"];

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum RlError {
    #[error("unknown environment `{name}`; known: {}. Use one of those names", ENV_NAMES.join(", "))]
    UnknownEnv { name: String },
    #[error(
        "the policy chose action {action} in episode {episode}, step {step} of `{env}`, which has actions 0..{actions}. Return an action below {actions}"
    )]
    BadAction {
        env: &'static str,
        action: usize,
        actions: usize,
        episode: usize,
        step: usize,
    },
}

/// A fresh environment by name: `"cartpole"` (CartPole-v1) or `"acrobot"` (Acrobot-v1).
pub fn by_name(name: &str) -> Result<Box<dyn Env>, RlError> {
    match name {
        "cartpole" => Ok(Box::new(CartPole::new())),
        "acrobot" => Ok(Box::new(Acrobot::new())),
        _ => Err(RlError::UnknownEnv {
            name: name.to_string(),
        }),
    }
}

/// The running episode of an environment with a four-number float64 state: the state, the
/// steps taken and whether it is still running. The dynamics are each environment's own;
/// starting, the checks [`Env::step`] documents and the step limit are the same for all.
#[derive(Clone, Debug, Default)]
pub(crate) struct Episode {
    pub state: [f64; 4],
    pub steps: usize,
    running: bool,
}

impl Episode {
    /// Starts an episode at `state`.
    pub fn start(&mut self, state: [f64; 4]) {
        self.state = state;
        self.steps = 0;
        self.running = true;
    }

    /// Starts an episode at a state uniform in `[-range, range)` in every component.
    pub fn start_random(&mut self, rng: &mut ChaCha8Rng, range: f64) {
        self.start(std::array::from_fn(|_| rng.random_range(-range..range)));
    }

    /// Panics, as [`Env::step`] documents, unless `action` may be applied now.
    pub fn check_step(&self, spec: &EnvSpec, action: usize) {
        if action >= spec.actions {
            panic!(
                "{}: action {action} is out of range; actions are 0..{}",
                spec.name, spec.actions
            );
        }
        if !self.running {
            panic!(
                "{}: step called with no episode running; call reset first (also after an episode ends)",
                spec.name
            );
        }
    }

    /// Moves to `state` after one step; the episode ends when `terminated` or at
    /// `spec.max_steps`. Returns whether it was truncated.
    pub fn advance(&mut self, spec: &EnvSpec, state: [f64; 4], terminated: bool) -> bool {
        self.state = state;
        self.steps += 1;
        let truncated = self.steps >= spec.max_steps;
        self.running = !(terminated || truncated);
        truncated
    }
}
