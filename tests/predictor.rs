//! The `predictor` strategy through the `nas` program on the NAS-Bench-201 table: a study
//! runs, resumes after a stop exactly where the uninterrupted one goes, and finds a good cell;
//! `[budget] target` ends a study at the optimum.

mod common;
use std::path::Path;

use common::{nas, stderr, stdout};

const STUDY: &str = r#"
[study]
name = "predictor"
seed = 3
directory = "study"

[budget]
trials = 60

[space]
kind = "cell"

[[strategy]]
plugin = "predictor"
steps = 60

[[evaluator]]
plugin = "nb201"
dataset = "cifar10"
fidelity = "200"

[objective]
maximize = "val_accuracy"
"#;

fn trials(dir: &Path, study: &str) -> Vec<serde_json::Value> {
    let o = nas(&["status", study, "--json"], dir);
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o)).expect("status --json")
}

fn search(dir: &Path, file: &str, text: &str, study: &str) {
    std::fs::write(dir.join(file), text).unwrap();
    let o = nas(&["search", file, "--study-dir", study], dir);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn archs(trials: &[serde_json::Value]) -> Vec<String> {
    trials
        .iter()
        .map(|t| t["arch"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_predictor_study_resumes_exactly_and_finds_a_good_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    search(dir, "full.toml", STUDY, "full");
    let full = trials(dir, "full");
    assert_eq!(full.len(), 60);
    assert!(full.iter().all(|t| t["strategy"] == "predictor"));

    // Stopped after 23 trials (a smaller budget), then resumed with the whole one.
    let short = STUDY.replace("trials = 60", "trials = 23");
    search(dir, "short.toml", &short, "resumed");
    assert_eq!(trials(dir, "resumed").len(), 23);
    search(dir, "full.toml", STUDY, "resumed");
    let resumed = trials(dir, "resumed");
    assert_eq!(
        archs(&resumed),
        archs(&full),
        "the resumed study must propose what the uninterrupted one did"
    );

    // 94 % or better on CIFAR-10: 42 of the 15,625 cells (0.27 %); 60 random trials find one
    // with probability about 15 %.
    let best = full
        .iter()
        .filter_map(|t| t["metrics"]["val_accuracy"].as_f64())
        .fold(0.0, f64::max);
    assert!(best >= 0.94, "best 200-epoch test accuracy {best}");
}

#[test]
fn a_budget_target_ends_the_study_when_reached() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = STUDY
        .replace("trials = 60", "trials = 500\ntarget = 0.935")
        .replace(
            "plugin = \"predictor\"\nsteps = 60",
            "plugin = \"evolution\"",
        );
    search(dir, "s.toml", &text, "study");
    let t = trials(dir, "study");
    let accuracy = |t: &serde_json::Value| t["metrics"]["val_accuracy"].as_f64().unwrap();
    let last = t.last().unwrap();
    assert!(t.len() < 500, "the target never stopped the study");
    assert!(accuracy(last) >= 0.935, "{last}");
    assert!(
        t[..t.len() - 1].iter().all(|x| accuracy(x) < 0.935),
        "the study went on after reaching the target"
    );

    let bad = text.replace("target = 0.935", "target = nan");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let o = nas(&["search", "bad.toml", "--study-dir", "bad"], dir);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml:") && e.contains("`[budget] target` must be a finite number"),
        "{e}"
    );
}
