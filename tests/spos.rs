//! SPOS in a study: `[[evaluator]] plugin = "supernet"` trains the cell space's supernet once
//! on the bundled digits (one of two workers trains, the other waits and loads it), regularized
//! evolution searches on `supernet_accuracy`, and `[final]` retrains the best candidate with
//! the recipe of a `train` evaluator placed after it in the pipeline.

use serde_json::Value;

mod common;
use common::{SMALL_CHAIN, nas, stderr, stdout};

fn study(evaluators: &str, space: &str, final_table: &str) -> String {
    format!(
        r#"
[study]
name = "spos-e2e"
seed = 7
directory = "study"

[budget]
trials = 8

[data]
dataset = "digits"

[space]
{space}

[[strategy]]
plugin = "evolution"
population = 4
sample = 2

{evaluators}

[objective]
maximize = "supernet_accuracy"

{final_table}

[runtime]
threads = 1
workers = 2
"#
    )
}

const CELL: &str = "kind = \"cell\"\nchannels = 4\ncells_per_stage = 1";

const SUPERNET: &str = r#"
[[evaluator]]
plugin = "supernet"
epochs = 3
batch = 64
weight_lr = 0.05
"#;

const TRAIN: &str = r#"
[[evaluator]]
plugin = "train"
epochs = 1
batch = 64
lr = 0.1
"#;

#[test]
fn evolution_searches_on_supernet_scores_and_final_retrains_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    // The sandwich rule's largest end in the cell space: `nor_conv_3x3` on every edge.
    let evaluators = format!("{SUPERNET}sandwich = \"largest\"\n{TRAIN}");
    let toml = study(
        &evaluators,
        CELL,
        "[final]\ntop_k = 1\nepochs = 3\nensemble = false",
    );
    std::fs::write(tmp.path().join("s.toml"), toml).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(tmp.path().join("study/supernet/spos.ckpt").is_file());

    let o = nas(&["status", "study", "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let trials: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(trials.len(), 8);
    let mut trained = 0;
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let m = &t["metrics"];
        let acc = m["supernet_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{t}");
        assert!(m["supernet_loss"].as_f64().unwrap().is_finite(), "{t}");
        assert!(m["val_accuracy"].is_number(), "the train stage ran: {t}");
        if m["supernet_seconds"].as_f64().unwrap() > 0.0 {
            trained += 1;
        }
    }
    // Two workers, one supernet: the first to take the lock trained it, the other loaded it.
    assert_eq!(trained, 1, "{trials:#?}");
    assert!(
        trials.iter().any(|t| t["strategy"] == "evolution"),
        "{trials:#?}"
    );

    let o = nas(&["best", "study", "--json", "--top", "1"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let best: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let top = trials
        .iter()
        .map(|t| t["metrics"]["supernet_accuracy"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(best[0]["metrics"]["supernet_accuracy"], top);
    let fin = &best[0]["final"];
    assert_eq!(fin["epochs"], 3, "{}", best[0]);
    let test = fin["test_accuracy"].as_f64().unwrap();
    assert!(test > 0.1 && test <= 1.0, "{fin}");
    // `nas best --json` gives the model's path as seen from where `nas` ran.
    let model = tmp.path().join(fin["model"].as_str().unwrap());
    assert!(model.is_file(), "{}", model.display());
}

#[test]
fn spos_scores_chain_networks_with_the_chain_supernet() {
    let tmp = tempfile::tempdir().unwrap();
    // The sandwich rule (a chain's options have sizes) and scores on two batches of 64.
    let supernet = format!("{SUPERNET}sandwich = \"largest\"\nscore_images = 150\n");
    std::fs::write(tmp.path().join("s.toml"), study(&supernet, SMALL_CHAIN, "")).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let o = nas(&["status", "study", "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let trials: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(trials.len(), 8);
    let mut scores = Vec::new();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let arch = t["arch"].as_str().unwrap();
        assert!(
            arch.starts_with('d') && arch.contains("-k"),
            "a chain network: {t}"
        );
        let acc = t["metrics"]["supernet_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{t}");
        let correct = acc * 128.0;
        assert!(
            (correct - correct.round()).abs() < 1e-9,
            "scored on 128 images: {t}"
        );
        scores.push(acc);
    }
    // Paths through the shared weights score differently: the masks and mixes route them.
    assert!(
        scores.iter().any(|&s| s != scores[0]),
        "every path scored the same: {scores:?}"
    );
}

#[test]
fn what_spos_cannot_do_in_a_study_is_said_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    // The mlp space has no supernet: refused before any trial.
    let mlp = study(SUPERNET, "kind = \"mlp\"", "");
    std::fs::write(tmp.path().join("mlp.toml"), mlp).unwrap();
    let o = nas(&["search", "mlp.toml"], tmp.path());
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("no one-shot supernet"), "{err}");
    assert!(err.contains("[[evaluator]] at"), "{err}");
    assert!(!tmp.path().join("study/study.db").exists(), "{err}");

    // A bad key names itself.
    let bad = study(&SUPERNET.replace("weight_lr", "lr"), CELL, "");
    std::fs::write(tmp.path().join("bad.toml"), bad).unwrap();
    let o = nas(&["search", "bad.toml"], tmp.path());
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("unknown field `lr`"), "{err}");

    // Fewer scoring images than one batch: refused when the study starts, naming the key.
    let few = study(&format!("{SUPERNET}score_images = 10\n"), CELL, "");
    std::fs::write(tmp.path().join("few.toml"), few).unwrap();
    let o = nas(&["search", "few.toml"], tmp.path());
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("score_images") && err.contains("less than one batch of 64"),
        "{err}"
    );

    // [final] retrains with a `train` evaluator's recipe or its own `train` table: with the
    // supernet evaluator alone and neither, the search runs, then the final phase says what
    // it needs.
    let alone =
        study(SUPERNET, CELL, "[final]\ntop_k = 1\nepochs = 1").replace("trials = 8", "trials = 2");
    std::fs::write(tmp.path().join("alone.toml"), alone).unwrap();
    let o = nas(&["search", "alone.toml"], tmp.path());
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("plugin = \"train\""), "{err}");
}

#[test]
fn the_shipped_spos_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, kind) in [
        ("configs/oneshot-spos.toml", "cell"),
        ("configs/oneshot-spos-chain.toml", "chain"),
    ] {
        let cfg = nas_core::config::load(&root.join(file)).unwrap();
        let plugins: Vec<&str> = cfg.evaluators.iter().map(|e| e.plugin.as_str()).collect();
        assert_eq!(plugins, ["supernet"], "{file}");
        assert_eq!(cfg.objectives[0].metric, "supernet_accuracy", "{file}");
        assert_eq!(cfg.space.kind(), kind, "{file}");
        // Both train their space's largest network on every batch (docs/oneshot.md).
        let table = &cfg.evaluators[0].config;
        assert_eq!(table["sandwich"], "largest", "{file}");
        // No train evaluator: `[final] train` is the retraining recipe.
        let recipe = cfg
            .final_phase
            .and_then(|f| f.train)
            .expect("[final] train");
        assert_eq!(recipe["epochs"], 30, "{file}");
    }
}
