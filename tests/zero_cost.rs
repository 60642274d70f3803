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

const LEARNED: &str = r#"
[study]
name = "learned"
seed = 11
directory = "study"

[budget]
trials = TRIALS

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
batch = 16
keep_top = 0.5
rank_by = "learned"
warmup = 2
min_labels = 3

[[evaluator]]
plugin = "train"
epochs = 1
batch = 128

[objective]
maximize = "val_accuracy"
"#;

/// (state, zero-cost cascade details) of every trial, from the study database.
fn cascade_rows(db: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT state, details FROM trials ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (state, details) = row.unwrap();
            let details: serde_json::Value = serde_json::from_str(&details).unwrap();
            (state, details["zero-cost"]["cascade"].clone())
        })
        .collect()
}

fn search(dir: &std::path::Path, trials: u32) {
    std::fs::write(
        dir.join("s.toml"),
        LEARNED.replace("TRIALS", &trials.to_string()),
    )
    .unwrap();
    let o = nas(&["search", "s.toml"], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn the_learned_cascade_ranks_by_a_model_of_the_study_and_resumes_exactly() {
    let whole = tempfile::tempdir().unwrap();
    search(whole.path(), 12);
    let rows = cascade_rows(&whole.path().join("study/study.db"));
    assert_eq!(rows.len(), 12);
    let mut labels_seen = 0;
    for (i, (state, cascade)) in rows.iter().enumerate() {
        assert_eq!(cascade["rank_by"], "learned", "{cascade}");
        // Every earlier trial finished before this one was scored (one worker).
        assert_eq!(cascade["seen"], i as u64 + 1, "{cascade}");
        let labels = cascade["labels"].as_u64().unwrap();
        assert!(labels >= labels_seen, "labels only grow: {cascade}");
        labels_seen = labels;
        let expected = if labels >= 3 { "model" } else { "zc_combined" };
        assert_eq!(cascade["ranked_with"], expected, "{cascade}");
        assert_eq!(
            state == "pruned",
            cascade["kept"] == false,
            "{state}: {cascade}"
        );
    }
    let by_model = rows
        .iter()
        .filter(|(_, c)| c["ranked_with"] == "model")
        .count();
    assert!(by_model >= 3, "the model ranked {by_model} candidates");

    // Stopped after 6 trials and resumed: the cascade ranks among the stored trials and the
    // model is refitted on the stored labels, so every decision and score is the same.
    let split = tempfile::tempdir().unwrap();
    search(split.path(), 6);
    search(split.path(), 12);
    let resumed = cascade_rows(&split.path().join("study/study.db"));
    for (i, (a, b)) in rows.iter().zip(&resumed).enumerate() {
        assert_eq!(a.0, b.0, "trial {}: state", i + 1);
        assert_eq!(a.1["kept"], b.1["kept"], "trial {}", i + 1);
        assert_eq!(a.1["seen"], b.1["seen"], "trial {}", i + 1);
        assert_eq!(a.1["labels"], b.1["labels"], "trial {}", i + 1);
        let (x, y) = (
            a.1["score"].as_f64().unwrap(),
            b.1["score"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "trial {}: {x} vs {y}",
            i + 1
        );
    }
}
