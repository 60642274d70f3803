//! The `zero-cost` evaluator as the cheap first stage of a cascade before `train`, through the
//! `nas` program: pruned candidates are stored as such and never trained.

mod common;
use common::nas;

#[test]
fn a_zero_cost_cascade_prunes_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = r#"
[study]
name = "cascade"
seed = 4
directory = "study"

[budget]
trials = 10

[data]
dataset = "digits"

[space]
kind = "cell"
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "zero-cost"
proxies = ["synflow", "params"]
rank_by = "synflow"
keep_top = 0.5
warmup = 3

[[evaluator]]
plugin = "train"
epochs = 1
batch = 128

[objective]
maximize = "val_accuracy"
"#;
    std::fs::write(dir.join("s.toml"), text).unwrap();
    let o = nas(&["search", "s.toml"], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = nas(&["status", "study", "--json"], dir);
    let trials: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(trials.len(), 10);
    let (mut pruned, mut trained) = (0, 0);
    for (i, t) in trials.iter().enumerate() {
        let m = &t["metrics"];
        assert!(m["synflow"].is_number(), "every candidate is scored: {t}");
        match t["state"].as_str().unwrap() {
            "pruned" => {
                pruned += 1;
                assert!(i >= 3, "nothing is pruned during the warm-up: {t}");
                assert!(
                    m.get("val_accuracy").is_none(),
                    "a pruned trial is not trained: {t}"
                );
            }
            "complete" => {
                trained += 1;
                assert!(
                    m["val_accuracy"].is_number() && m["train_seconds"].is_number(),
                    "{t}"
                );
            }
            other => panic!("unexpected state {other}: {t}"),
        }
    }
    println!("{pruned} pruned, {trained} trained");
    assert!(
        pruned >= 1 && trained >= 3,
        "{pruned} pruned, {trained} trained"
    );
}
