//! REINFORCE with a baseline: each iteration runs a batch of episodes with the current policy
//! (actions sampled from its softmax), weighs every (state, action taken) pair by its
//! advantage and takes one policy-gradient step; then the final policy is evaluated.

use nas_graph::{Graph, Op, Weights};
use nas_runtime::SessionSettings;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{EvalPolicy, NAME, RlConfig};
use crate::learner::Learner;
use crate::policy::{Policy, check_fit};
use crate::returns::batch_advantages;
use crate::rollout::{self, Act, Episode};

/// Streams of the seed's generator, one per use, so that one use never shifts another's
/// draws.
const RESETS: u64 = 1;
const ACTIONS: u64 = 2;
const MASKS: u64 = 3;
const EVAL_ACTIONS: u64 = 4;

/// The seed of the evaluation episodes' initial states: evaluation episode `k` starts where
/// episode `k` of [`nas_rl::run_episodes`] with this seed does (and never where a training
/// episode did).
pub fn eval_seed(seed: u64) -> u64 {
    seed ^ 0xE7A1_5EED_0B5E_7EA1
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// What one iteration did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IterationStats {
    /// 1-based.
    pub iteration: usize,
    /// Mean undiscounted return of its episodes (sampled actions).
    pub mean_return: f64,
    /// Environment steps of its episodes (the step's batch size).
    pub steps: usize,
    pub loss: f64,
}

/// A trained policy and its evaluation.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub weights: Weights,
    pub curve: Vec<IterationStats>,
    pub train_episodes: usize,
    /// Return of each evaluation episode, in order.
    pub eval_returns: Vec<f64>,
}

/// Trains `graph` (initialised by [`initial_weights`] from `seed`) for `iterations` iterations on
/// `cfg.env`, then evaluates it over `cfg.eval_episodes` episodes.
pub fn train(
    graph: &Graph,
    cfg: &RlConfig,
    iterations: usize,
    seed: u64,
    runtime: &SessionSettings,
) -> Result<Outcome, String> {
    let env = nas_rl::by_name(&cfg.env).map_err(|e| format!("{NAME}: {e}"))?;
    check_fit(graph, env.as_ref())?;
    let actions = env.actions();
    let init = initial_weights(graph, seed)?;
    let mut learner = Learner::new(graph, &init, cfg, runtime, stream(seed, MASKS))?;
    let (mut resets, mut draws) = (stream(seed, RESETS), stream(seed, ACTIONS));
    let mut curve = Vec::with_capacity(iterations);
    for iteration in 1..=iterations {
        let mut policy = Policy::new(graph, &learner.weights()?, actions, runtime)?;
        let episodes = rollout::run(
            &cfg.env,
            &mut policy,
            cfg.episodes_per_iteration,
            &mut resets,
            Act::Sample(&mut draws),
        )?;
        let rewards: Vec<&[f64]> = episodes.iter().map(|e| e.rewards.as_slice()).collect();
        let advantages = batch_advantages(&rewards, cfg.gamma, cfg.normalize_advantages);
        let observations: Vec<f32> = episodes
            .iter()
            .flat_map(|e| e.observations.iter().copied())
            .collect();
        let taken: Vec<usize> = episodes
            .iter()
            .flat_map(|e| e.actions.iter().copied())
            .collect();
        let loss = learner.step(&observations, &taken, &advantages, cfg.lr)?;
        if !loss.is_finite() {
            return Err(format!(
                "{NAME}: training diverged at iteration {iteration} (loss {loss}); lower `lr` \
                 (now {})",
                cfg.lr
            ));
        }
        curve.push(IterationStats {
            iteration,
            mean_return: mean(episodes.iter().map(Episode::total)),
            steps: taken.len(),
            loss: f64::from(loss),
        });
    }
    let weights = learner.weights()?;
    let eval_returns = evaluate(graph, &weights, cfg, seed, runtime)?;
    Ok(Outcome {
        weights,
        curve,
        train_episodes: iterations * cfg.episodes_per_iteration,
        eval_returns,
    })
}

/// Scale of the output layer's weights relative to He initialisation.
pub const OUTPUT_SCALE: f32 = 0.01;

/// He weights from `seed`, with the output layer (when it is a `Linear`) scaled by
/// [`OUTPUT_SCALE`] and its bias zero: the first policy is then close to uniform whatever the
/// observations' scale, so the first episodes explore (as PPO and most policy-gradient
/// implementations start).
pub fn initial_weights(graph: &Graph, seed: u64) -> Result<Weights, String> {
    let mut w = Weights::he_init(graph, seed)
        .map_err(|e| format!("{NAME}: cannot initialise the weights: {e}"))?;
    if let Op::Linear { .. } = graph.nodes[graph.output].op {
        let out = graph.output;
        if let Some(t) = w.get_mut(&format!("n{out}.weight")) {
            t.mapv_inplace(|v| v * OUTPUT_SCALE);
        }
        if let Some(t) = w.get_mut(&format!("n{out}.bias")) {
            t.fill(0.0);
        }
    }
    Ok(w)
}

/// The return of each of `cfg.eval_episodes` episodes of the policy `graph` with `weights`
/// (greedy or sampled, as `cfg.eval_policy` says), from the initial states of
/// [`eval_seed`]`(seed)`.
pub fn evaluate(
    graph: &Graph,
    weights: &Weights,
    cfg: &RlConfig,
    seed: u64,
    runtime: &SessionSettings,
) -> Result<Vec<f64>, String> {
    let env = nas_rl::by_name(&cfg.env).map_err(|e| format!("{NAME}: {e}"))?;
    let mut policy = Policy::new(graph, weights, env.actions(), runtime)?;
    let mut resets = ChaCha8Rng::seed_from_u64(eval_seed(seed));
    let mut draws = stream(seed, EVAL_ACTIONS);
    let act = match cfg.eval_policy {
        EvalPolicy::Greedy => Act::Greedy,
        EvalPolicy::Sampled => Act::Sample(&mut draws),
    };
    let episodes = rollout::run(&cfg.env, &mut policy, cfg.eval_episodes, &mut resets, act)?;
    Ok(episodes.iter().map(Episode::total).collect())
}

pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}
