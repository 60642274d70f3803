//! End-to-end tests of training-based studies: the `train` evaluator on the bundled digits
//! data, the final phase, and a diverging recipe.

use std::path::{Path, PathBuf};

mod common;
use common::nas;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("study.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A tiny training study: small cells on digits, a couple of epochs each.
fn study(trials: u64, lr: f64, extra: &str) -> String {
    format!(
        r#"
[study]
name = "train-e2e"
seed = 3
directory = "study"

[budget]
trials = {trials}

[data]
dataset = "digits"

[space]
kind = "cell"
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "train"
epochs = 2
batch = 64
lr = {lr}

[objective]
maximize = "val_accuracy"
{extra}
"#
    )
}

fn trials(dir: &Path) -> Vec<serde_json::Value> {
    let o = nas(&["status", "study", "--json"], dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn trained_study_retrains_the_best_and_exports_models() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        &study(4, 0.1, "[final]\ntop_k = 2\nepochs = 3\nensemble = true\n"),
    );
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let list = trials(tmp.path());
    assert_eq!(list.len(), 4);
    for t in &list {
        assert_eq!(t["state"], "complete", "{t}");
        let acc = t["metrics"]["val_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "accuracy is a fraction: {acc}");
        assert!(t["metrics"]["train_seconds"].as_f64().unwrap() > 0.0);
        assert!(t["metrics"]["val_loss"].as_f64().unwrap().is_finite());
    }
    // Two epochs of even a tiny network learn digits far above chance (0.1).
    let best = list
        .iter()
        .map(|t| t["metrics"]["val_accuracy"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(best > 0.5, "best validation accuracy {best}");

    assert!(stdout.contains("final models"), "{stdout}");
    assert!(stdout.contains("ensemble of trials"), "{stdout}");
    let final_dir = tmp.path().join("study/final");
    let models: Vec<_> = std::fs::read_dir(&final_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        models
            .iter()
            .filter(|m| m.starts_with("trial-") && m.ends_with(".onnx"))
            .count(),
        2,
        "{models:?}"
    );
    assert!(models.contains(&"ensemble.onnx".to_string()), "{models:?}");
    let description = models.iter().find(|m| m.ends_with(".onnx.json")).unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(final_dir.join(description)).unwrap()).unwrap();
    assert_eq!(info["input"]["name"], "input");
    assert_eq!(info["input"]["shape"][1], 1);
    assert_eq!(info["input"]["shape"][2], 8);
    assert_eq!(info["output"]["name"], "logits");
    assert_eq!(info["classes"], 10);

    // A second run finds the search and the final phase done: nothing is retrained.
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already retrained"));
}

#[test]
fn a_diverging_recipe_fails_trials_and_the_study_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), &study(3, 1e6, ""));
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = trials(tmp.path());
    assert_eq!(list.len(), 3, "the budget was spent, not aborted");
    for t in &list {
        assert_eq!(t["state"], "failed", "{t}");
        assert!(t["error"].as_str().unwrap().contains("diverged"), "{t}");
    }
}

#[test]
fn a_missing_data_table_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let text = study(2, 0.1, "").replace("[data]\ndataset = \"digits\"\n", "");
    let cfg = write(tmp.path(), &text);
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("[data]"), "{err}");
    assert!(
        !tmp.path().join("study").exists(),
        "nothing is created for a bad config"
    );
}
