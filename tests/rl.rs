//! The shipped `configs/rl-cartpole.toml` through the `nas` program, on a small budget: a
//! study with no `[data]` whose `rl` evaluator trains `mlp` policies on CartPole-v1.

mod common;
use common::{nas, stderr};

#[test]
fn the_rl_cartpole_config_searches_policy_architectures() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/rl-cartpole.toml"
    ))
    .unwrap();
    let text = shipped
        .replace("trials = 30", "trials = 3")
        .replace("until = { trials = 10 }", "until = { trials = 2 }")
        .replace("iterations = 60 ", "iterations = 20 ")
        .replace("directory = \"runs/rl-cartpole\"", "directory = \"study\"");
    assert_ne!(text, shipped);
    assert!(!text.contains("[data]"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("rl.toml"), text).unwrap();
    let o = nas(&["search", "rl.toml"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nas(&["status", "study", "--json"], dir);
    let trials: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let m = &t["metrics"];
        let r = m["mean_return"].as_f64().unwrap();
        assert!((8.0..=500.0).contains(&r), "{t}");
        assert_eq!(
            m["solved"].as_f64().unwrap(),
            f64::from(u8::from(r >= 475.0))
        );
        assert_eq!(m["train_episodes"], 20.0 * 8.0);
        assert!(m["rl_seconds"].as_f64().unwrap() > 0.0);
        assert!(t["arch"].as_str().unwrap().starts_with("depth="));
    }
}
