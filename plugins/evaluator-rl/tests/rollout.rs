//! The batched rollout and evaluation against `nas_rl::run_episodes` driving the same policy
//! one observation at a time, in a real ONNX Runtime.

use evaluator_rl::policy::{Policy, greedy};
use evaluator_rl::reinforce::{eval_seed, evaluate, initial_weights};
use evaluator_rl::rollout::{self, Act};
use evaluator_rl::{EvalPolicy, RlConfig};
use nas_graph::{Graph, GraphBuilder, Op};
use nas_runtime::SessionSettings;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn runtime() -> SessionSettings {
    let lib = nas_runtime::locate_library(None).expect("ONNX Runtime is provisioned");
    nas_runtime::init(&lib).unwrap();
    SessionSettings::cpu(&lib)
}

/// `[obs] -> Linear(16) -> BN -> SiLU -> Linear(actions)`: BatchNorm in inference
/// mode, a nonlinearity, random (He) weights so that episodes differ.
fn net(obs: usize, actions: usize) -> Graph {
    let mut b = GraphBuilder::new(&[obs]);
    let x = b.input();
    let h = b.add(
        Op::Linear {
            out_features: 16,
            bias: false,
        },
        &[x],
    );
    let n = b.batch_norm(h);
    let s = b.add(Op::Silu, &[n]);
    let l = b.add(
        Op::Linear {
            out_features: actions,
            bias: true,
        },
        &[s],
    );
    b.finish(l)
}

#[test]
fn batched_greedy_episodes_are_those_of_run_episodes() {
    let rt = runtime();
    for (env, actions, obs) in [("cartpole", 2, 4), ("acrobot", 3, 6)] {
        let g = net(obs, actions);
        let w = nas_graph::Weights::he_init(&g, 11).unwrap();
        let cfg = RlConfig {
            env: env.into(),
            eval_episodes: 12,
            ..RlConfig::default()
        };
        let batched = evaluate(&g, &w, &cfg, 5, &rt).unwrap();
        let mut one = Policy::new(&g, &w, actions, &rt).unwrap();
        let mut e = nas_rl::by_name(env).unwrap();
        let single = nas_rl::run_episodes(
            e.as_mut(),
            |o| greedy(&one.logits(o, 1).unwrap()),
            12,
            eval_seed(5),
        )
        .unwrap();
        println!("{env}: {batched:?}");
        assert_eq!(batched, single, "{env}");
    }
}

#[test]
fn rollouts_record_every_step_and_repeat_for_a_seed() {
    let rt = runtime();
    let g = net(4, 2);
    let w = initial_weights(&g, 2).unwrap();
    let mut policy = Policy::new(&g, &w, 2, &rt).unwrap();
    let run = |policy: &mut Policy| {
        let mut resets = ChaCha8Rng::seed_from_u64(1);
        let mut draws = ChaCha8Rng::seed_from_u64(2);
        rollout::run("cartpole", policy, 6, &mut resets, Act::Sample(&mut draws)).unwrap()
    };
    let episodes = run(&mut policy);
    assert_eq!(episodes.len(), 6);
    for e in &episodes {
        assert!(e.steps() >= 1 && e.steps() <= 500);
        assert_eq!(e.observations.len(), 4 * e.steps());
        assert_eq!(e.rewards.len(), e.steps());
        assert_eq!(e.total(), e.steps() as f64);
        assert!(e.actions.iter().all(|&a| a < 2));
    }
    // A near-uniform first policy: both actions are taken.
    let all: Vec<usize> = episodes.iter().flat_map(|e| e.actions.clone()).collect();
    assert!(all.contains(&0) && all.contains(&1));
    // The first observation of each episode is its initial state, in reset order.
    let mut resets = ChaCha8Rng::seed_from_u64(1);
    let mut env = nas_rl::by_name("cartpole").unwrap();
    for e in &episodes {
        assert_eq!(e.observations[..4], env.reset(&mut resets)[..]);
    }
    assert_eq!(run(&mut policy), episodes);

    // The sampled evaluation draws actions too, and repeats for a seed.
    let cfg = RlConfig {
        eval_episodes: 5,
        eval_policy: EvalPolicy::Sampled,
        ..RlConfig::default()
    };
    let a = evaluate(&g, &w, &cfg, 9, &rt).unwrap();
    assert_eq!(a, evaluate(&g, &w, &cfg, 9, &rt).unwrap());
}
