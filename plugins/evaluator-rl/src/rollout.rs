//! Running a batch of episodes at once: every running episode's observation goes through the
//! policy in one ONNX Runtime call per time step.

use rand_chacha::ChaCha8Rng;

use crate::policy::{Policy, greedy, sample};

/// One finished episode. Step `t` saw `observations[t * obs..(t + 1) * obs]`, took
/// `actions[t]` and got `rewards[t]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Episode {
    pub observations: Vec<f32>,
    pub actions: Vec<usize>,
    pub rewards: Vec<f64>,
}

impl Episode {
    /// The undiscounted return.
    pub fn total(&self) -> f64 {
        self.rewards.iter().sum()
    }

    pub fn steps(&self) -> usize {
        self.actions.len()
    }
}

/// How actions are chosen.
pub enum Act<'a> {
    Greedy,
    /// Drawn from the softmax; one draw per running episode and step, in episode order.
    Sample(&'a mut ChaCha8Rng),
}

/// Runs `episodes` episodes of environment `env` with `policy` until each ends (terminated
/// or truncated). Episode `k` starts from the `k`-th initial state drawn from `resets`, as
/// [`nas_rl::run_episodes`] draws them, so a greedy policy gives the returns it would.
pub fn run(
    env: &str,
    policy: &mut Policy,
    episodes: usize,
    resets: &mut ChaCha8Rng,
    mut act: Act<'_>,
) -> Result<Vec<Episode>, String> {
    let mut envs = Vec::with_capacity(episodes);
    let mut current = Vec::with_capacity(episodes);
    for _ in 0..episodes {
        let mut e = nas_rl::by_name(env).map_err(|e| e.to_string())?;
        current.push(e.reset(resets));
        envs.push(e);
    }
    let (obs, actions) = match envs.first() {
        Some(e) => (e.observation_size(), e.actions()),
        None => return Ok(Vec::new()),
    };
    let mut done = vec![Episode::default(); episodes];
    let mut running: Vec<usize> = (0..episodes).collect();
    let mut ended = vec![false; episodes];
    let mut batch = Vec::with_capacity(episodes * obs);
    while !running.is_empty() {
        batch.clear();
        for &k in &running {
            batch.extend_from_slice(&current[k]);
        }
        let logits = policy.logits(&batch, running.len())?;
        for (&k, z) in running.iter().zip(logits.chunks_exact(actions)) {
            let action = match &mut act {
                Act::Greedy => greedy(z),
                Act::Sample(rng) => sample(z, rng),
            };
            let step = envs[k].step(action);
            ended[k] = step.done();
            let episode = &mut done[k];
            let seen = std::mem::replace(&mut current[k], step.observation);
            episode.observations.extend(seen);
            episode.actions.push(action);
            episode.rewards.push(step.reward);
        }
        running.retain(|&k| !ended[k]);
    }
    Ok(done)
}
