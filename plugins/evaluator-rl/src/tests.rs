//! Returns, advantages, action choice, the shape check and the table; training itself is
//! covered by tests/plugin.rs.

use nas_graph::{GraphBuilder, Op};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::config::{EvalPolicy, OptimizerKind, RlConfig, requested_iterations};
use crate::policy::{check_fit, greedy, sample};
use crate::returns::{batch_advantages, normalized, returns_to_go, time_baseline};

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12)
}

#[test]
fn returns_to_go_discount_the_rewards_after_each_step() {
    // By hand: G2 = 3, G1 = 2 + 0.5 * 3, G0 = 1 + 0.5 * 3.5.
    assert!(close(
        &returns_to_go(&[1.0, 2.0, 3.0], 0.5),
        &[2.75, 3.5, 3.0]
    ));
    // Undiscounted CartPole: the steps left in the episode.
    assert!(close(&returns_to_go(&[1.0; 4], 1.0), &[4.0, 3.0, 2.0, 1.0]));
    // Acrobot's last step (the tip reached the line) earns 0.
    assert!(close(
        &returns_to_go(&[-1.0, -1.0, 0.0], 0.9),
        &[-1.9, -1.0, 0.0]
    ));
    assert!(returns_to_go(&[], 0.99).is_empty());
}

#[test]
fn the_baseline_of_a_step_averages_the_episodes_that_reached_it() {
    let returns = vec![vec![3.0, 2.0, 1.0], vec![1.0], vec![5.0, 4.0]];
    assert!(close(&time_baseline(&returns), &[3.0, 3.0, 1.0]));
    assert!(time_baseline(&[]).is_empty());
}

#[test]
fn advantages_subtract_the_step_baseline_and_divide_by_their_spread() {
    let a = [1.0, 1.0];
    let b = [1.0, 1.0, 1.0];
    // Returns to go: [2, 1] and [3, 2, 1]; baselines 2.5, 1.5, 1; episode order kept.
    let got = batch_advantages(&[&a, &b], 1.0, false);
    assert!(close(&got, &[-0.5, -0.5, 0.5, 0.5, 0.0]));
    // Root mean square sqrt(4 * 0.25 / 5).
    let rms = (1.0f64 / 5.0).sqrt();
    let want: Vec<f64> = got.iter().map(|v| v / rms).collect();
    let scaled = batch_advantages(&[&a, &b], 1.0, true);
    assert!(close(&scaled, &want));
    assert!((scaled.iter().map(|v| v * v).sum::<f64>() / 5.0 - 1.0).abs() < 1e-12);
    // Episodes that went alike (every Acrobot episode truncated) carry no signal, nor does
    // one episode alone: zeros, not a division by zero.
    let truncated = [-1.0; 500];
    assert_eq!(
        batch_advantages(&[&truncated, &truncated], 0.99, true),
        vec![0.0; 1000]
    );
    assert_eq!(batch_advantages(&[&b], 0.99, true), vec![0.0; 3]);
    assert!(normalized(&[]).is_empty());
}

#[test]
fn greedy_takes_the_first_maximum_and_sampling_follows_the_softmax() {
    assert_eq!(greedy(&[0.1, 2.0, 2.0]), 1);
    assert_eq!(greedy(&[3.0, -1.0]), 0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // Probabilities 0.2, 0.3, 0.5 (logits are log-probabilities up to a constant).
    let logits: Vec<f32> = [0.2f32, 0.3, 0.5].iter().map(|p| p.ln() + 7.0).collect();
    let n = 20_000;
    let mut counts = [0usize; 3];
    for _ in 0..n {
        counts[sample(&logits, &mut rng)] += 1;
    }
    for (c, p) in counts.iter().zip([0.2, 0.3, 0.5]) {
        let f = *c as f64 / n as f64;
        // 5 standard deviations of a binomial frequency.
        assert!(
            (f - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(),
            "{counts:?}"
        );
    }
    // An action of probability 0 (in float64) is never drawn.
    let certain = [0.0f32, 1000.0];
    assert!((0..100).all(|_| sample(&certain, &mut rng) == 1));
    // Same seed, same draws.
    let draws = |seed| {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        (0..50).map(|_| sample(&logits, &mut r)).collect::<Vec<_>>()
    };
    assert_eq!(draws(3), draws(3));
}

fn mlp(input: &[usize], hidden: usize, outputs: usize) -> nas_graph::Graph {
    let mut b = GraphBuilder::new(input);
    let mut x = b.input();
    if input.len() > 1 {
        x = b.add(Op::Flatten, &[x]);
    }
    let h = b.add(
        Op::Linear {
            out_features: hidden,
            bias: true,
        },
        &[x],
    );
    let r = b.add(Op::Relu, &[h]);
    let l = b.add(
        Op::Linear {
            out_features: outputs,
            bias: true,
        },
        &[r],
    );
    b.finish(l)
}

#[test]
fn the_network_must_take_an_observation_and_output_one_logit_per_action() {
    let cartpole = nas_rl::by_name("cartpole").unwrap();
    let acrobot = nas_rl::by_name("acrobot").unwrap();
    assert!(check_fit(&mlp(&[4], 8, 2), cartpole.as_ref()).is_ok());
    // Any input shape holding the observation's values is reshaped to it.
    assert!(check_fit(&mlp(&[4, 1, 1], 8, 2), cartpole.as_ref()).is_ok());
    assert!(check_fit(&mlp(&[6], 8, 3), acrobot.as_ref()).is_ok());

    let err = check_fit(&mlp(&[6], 8, 2), cartpole.as_ref()).unwrap_err();
    assert!(
        err.contains("inputs of shape [6]")
            && err.contains("`cartpole` observations have 4 values")
            && err.contains("`[space] input = [4]`"),
        "{err}"
    );
    let err = check_fit(&mlp(&[6], 8, 2), acrobot.as_ref()).unwrap_err();
    assert!(
        err.contains("outputs shape [2]")
            && err.contains("`acrobot` has 3 actions")
            && err.contains("`[space] classes = 3`"),
        "{err}"
    );
}

#[test]
fn the_table_has_defaults_and_explains_bad_keys() {
    let d = RlConfig::parse(&serde_json::Value::Null).unwrap();
    assert_eq!(d, RlConfig::default());
    assert_eq!(
        (d.env.as_str(), d.eval_episodes, d.eval_policy),
        ("cartpole", 100, EvalPolicy::Greedy)
    );
    let c = RlConfig::parse(&json!({
        "env": "acrobot", "iterations": 5, "episodes_per_iteration": 3, "gamma": 1.0,
        "lr": 0.003, "optimizer": "sgd", "seed": 7, "eval_episodes": 10,
        "eval_policy": "sampled", "entropy_bonus": 0.01, "normalize_advantages": false,
    }))
    .unwrap();
    assert_eq!(
        (
            c.env.as_str(),
            c.iterations,
            c.episodes_per_iteration,
            c.seed
        ),
        ("acrobot", 5, 3, Some(7))
    );
    assert_eq!(c.optimizer, OptimizerKind::Sgd);

    let err = |v: serde_json::Value| RlConfig::parse(&v).unwrap_err();
    let e = err(json!({"episodes": 4}));
    assert!(
        e.contains("rl evaluator has no option `episodes`")
            && e.contains("`episodes_per_iteration`")
            && e.contains("`eval_episodes`"),
        "{e}"
    );
    let e = err(json!({"env": "pendulum"}));
    assert!(
        e.contains("`pendulum`") && e.contains("cartpole, acrobot"),
        "{e}"
    );
    let e = err(json!({"gamma": 1.5}));
    assert!(e.contains("`gamma` must be a number in (0, 1]"), "{e}");
    let e = err(json!({"iterations": 0}));
    assert!(e.contains("`iterations` must be a positive integer"), "{e}");
    let e = err(json!({"optimizer": "adam"}));
    assert!(e.contains("`optimizer`") && e.contains("adamw"), "{e}");
    let e = err(json!({"episodes_per_iteration": 1}));
    assert!(
        e.contains("`episodes_per_iteration` must be at least 2"),
        "{e}"
    );
    let e = err(json!({"entropy_bonus": -1.0}));
    assert!(e.contains("`entropy_bonus` must be a number >= 0"), "{e}");
}

#[test]
fn fidelity_is_iterations_rounded_up() {
    assert_eq!(requested_iterations(None, 60), Ok(60));
    assert_eq!(requested_iterations(Some(2.5), 60), Ok(3));
    assert!(requested_iterations(Some(0.0), 60).is_err());
    assert!(requested_iterations(Some(f64::INFINITY), 60).is_err());
}
