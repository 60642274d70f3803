//! One-shot strategies end to end: `[[strategy]] plugin = "darts"` trains a supernet on the
//! bundled digits, shows every epoch with its derived architecture, stores the architecture
//! weights per epoch, proposes the derived architectures as ordinary trials, and a study
//! killed during the supernet's training resumes it from its checkpoint to the very same
//! result.

use std::path::Path;

mod common;
use common::{SMALL_CHAIN, nas, nas_until, stderr};

fn study(epochs: usize, trials: usize) -> String {
    study_with(epochs, trials, "")
}

/// `toml` (a study of [`study_with`]) searching [`SMALL_CHAIN`] instead of the cell space.
fn on_chain(toml: String) -> String {
    let cell = "kind = \"cell\"\nchannels = 4\ncells_per_stage = 1";
    assert!(toml.contains(cell), "{toml}");
    toml.replace(cell, SMALL_CHAIN)
}

/// A study whose darts strategy table also holds `extra` (TOML lines).
fn study_with(epochs: usize, trials: usize, extra: &str) -> String {
    format!(
        r#"
[study]
name = "oneshot-e2e"
seed = 3
directory = "study"

[budget]
trials = {trials}

[data]
dataset = "digits"
validation = 0.3

[space]
kind = "cell"
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = "darts"
epochs = {epochs}
batch = 64
arch_lr = 3e-3
derive = 2
{extra}

[[evaluator]]
plugin = "train"
epochs = 1
batch = 64
lr = 0.1

[objective]
maximize = "val_accuracy"

[runtime]
threads = 1
"#
    )
}

/// The darts strategy's stored state and the (strategy, arch) of every trial.
fn stored(dir: &Path) -> (serde_json::Value, Vec<(String, String)>) {
    stored_of(dir, "darts")
}

/// Strategy `name`'s stored state and the (strategy, arch) of every trial.
fn stored_of(dir: &Path, name: &str) -> (serde_json::Value, Vec<(String, String)>) {
    let conn = rusqlite::Connection::open(dir.join("study/study.db")).unwrap();
    let state: String = conn
        .query_row(
            "SELECT state FROM checkpoints WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT strategy, arch FROM trials ORDER BY id")
        .unwrap();
    let trials = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    (serde_json::from_str(&state).unwrap(), trials)
}

#[test]
fn darts_trains_a_supernet_and_its_derived_architectures_become_trials() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("s.toml"), study(3, 2)).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for e in 1..=3 {
        assert!(
            err.contains(&format!("darts: supernet epoch {e}/3")),
            "epoch {e} not shown:\n{err}"
        );
    }
    assert!(err.contains("derived |"), "{err}");
    let (state, trials) = stored(tmp.path());
    let history = state["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    for epoch in history {
        let probs = epoch["probabilities"].as_array().unwrap();
        assert_eq!(probs.len(), 6, "one distribution per edge");
        for p in probs {
            let sum: f64 = p
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .sum();
            assert!((sum - 1.0).abs() < 1e-9, "{p}");
        }
    }
    let derived = state["derived"].as_array().unwrap();
    assert_eq!(derived.len(), 2);
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert!(trials.iter().all(|(s, _)| s == "darts"), "{trials:?}");
    assert_ne!(trials[0].1, trials[1].1, "two different architectures");
    assert!(tmp.path().join("study/oneshot/0-darts.ckpt").is_file());
    report_shows_the_supernet_search(tmp.path(), &state, &trials);
}

/// `nas report` of that study: every stored architecture weight by name, an epoch row per
/// epoch with its derived architecture, the chart, and a report section naming the derived
/// architectures in the order they became trials.
fn report_shows_the_supernet_search(
    dir: &Path,
    state: &serde_json::Value,
    trials: &[(String, String)],
) {
    let o = nas(&["report", "study"], dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = dir.join("study/report");
    let weights = std::fs::read_to_string(report.join("supernet_weights.csv")).unwrap();
    let rows: Vec<Vec<&str>> = weights
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        rows.len(),
        3 * 6 * 5,
        "3 epochs x 6 edges x 5 operations:\n{weights}"
    );
    let history = state["history"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let (epoch, choice, option) = (i / 30, i / 5 % 6, i % 5);
        assert_eq!(
            row[..3],
            ["darts", "0", &(epoch + 1).to_string()],
            "{row:?}"
        );
        assert!(row[3].starts_with("edge_"), "choices by name: {row:?}");
        let want = history[epoch]["probabilities"][choice][option]
            .as_f64()
            .unwrap();
        assert_eq!(row[5].parse::<f64>().unwrap(), want, "{row:?}");
    }
    assert!(
        rows.iter().any(|r| r[4] == "nor_conv_3x3"),
        "operations by name"
    );
    let epochs = std::fs::read_to_string(report.join("supernet_epochs.csv")).unwrap();
    assert_eq!(epochs.lines().count(), 1 + 3, "{epochs}");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let section = &md[md
        .find("## Supernet search: `darts` (strategy 0)")
        .expect(&md)..];
    let listed: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("1. `").or_else(|| l.strip_prefix("2. `")))
        .map(|l| l.trim_end_matches('`'))
        .collect();
    let proposed: Vec<&str> = trials.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(listed, proposed, "{section}");
    let svg = std::fs::read_to_string(report.join("supernet-0-darts.svg")).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    let files = &md[md.find("## Files").expect(&md)..];
    for f in [
        "supernet_epochs.csv",
        "supernet_weights.csv",
        "supernet-0-darts.svg",
    ] {
        assert!(
            files.contains(&format!("- `{f}`: ")),
            "{f} not listed:\n{files}"
        );
    }
}

#[test]
fn perturbation_selection_decides_every_edge_and_proposes_its_cell_first() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = "selection = \"perturbation\"\nselection_epochs = 1";
    std::fs::write(tmp.path().join("s.toml"), study_with(2, 2, extra)).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // Six edges: 2 search epochs, then one tuning epoch after each decision but the last.
    assert!(err.contains("darts: supernet epoch 7/7"), "{err}");
    assert!(err.contains("(5/6 edges decided)"), "{err}");
    let (state, trials) = stored(tmp.path());
    let decisions = state["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 6, "{state}");
    let selected = state["derived"][0].as_array().unwrap().clone();
    let mut edges: Vec<u64> = Vec::new();
    for d in decisions {
        let choice = d["choice"].as_u64().unwrap();
        edges.push(choice);
        assert_eq!(selected[choice as usize], d["option"], "{d}");
        assert_eq!(d["accuracy_without"].as_array().unwrap().len(), 5, "{d}");
    }
    edges.sort();
    assert_eq!(
        edges,
        (0..6).collect::<Vec<u64>>(),
        "every edge decided once"
    );
    assert_eq!(trials.len(), 2, "{trials:?}");
    assert_ne!(trials[0].1, trials[1].1, "the runner-up by alpha differs");
}

#[test]
fn a_killed_supernet_training_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("s.toml"), study(8, 1)).unwrap();
    let mut running = nas_until(&["search", "s.toml"], tmp.path(), |l| {
        l.contains("supernet epoch 2/8")
    });
    running.child.kill().unwrap();
    running.child.wait().unwrap();
    assert!(
        running
            .seen
            .iter()
            .any(|l| l.contains("supernet epoch 2/8")),
        "{}",
        running.seen.join("\n")
    );
    // The report of the stopped study shows the epochs its supernet checkpoint holds.
    let o = nas(&["report", "study"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(tmp.path().join("study/report/report.md")).unwrap();
    assert!(md.contains("Not finished"), "{md}");
    let epochs =
        std::fs::read_to_string(tmp.path().join("study/report/supernet_epochs.csv")).unwrap();
    let trained = epochs.lines().count() - 1;
    assert!((2..8).contains(&trained), "{epochs}");
    assert!(
        md.contains(&format!("{trained} of 8 epochs trained")),
        "{md}"
    );
    // So does `nas status`, where no trial shows the search yet.
    let o = nas(&["status", "study"], tmp.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains(&format!(
            "supernet `darts` (strategy 0): {trained} of 8 epochs trained"
        )),
        "{out}"
    );
    let o = nas(&["search", "s.toml"], tmp.path());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("supernet epoch 1/8"),
        "epoch 1 trained again:\n{err}"
    );
    assert!(err.contains("supernet epoch 8/8"), "{err}");
    let (resumed, resumed_trials) = stored(tmp.path());

    // The same study, never interrupted.
    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("s.toml"), study(8, 1)).unwrap();
    let o = nas(&["search", "s.toml"], clean.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let (straight, straight_trials) = stored(clean.path());
    assert_eq!(resumed["history"].as_array().unwrap().len(), 8);
    let losses = |s: &serde_json::Value| -> Vec<f64> {
        s["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["train_loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(losses(&resumed), losses(&straight));
    assert_eq!(resumed["derived"], straight["derived"]);
    assert_eq!(resumed_trials, straight_trials);
}

#[test]
fn pruning_that_keeps_every_option_is_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("s.toml"), study_with(4, 1, "prune_to = 5")).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("prune_to") && err.contains("keeps every option"),
        "{err}"
    );
    assert!(
        !err.contains("supernet epoch"),
        "refused before any training:\n{err}"
    );
}

#[test]
fn regularizers_are_refused_by_methods_they_do_not_fit() {
    // Beta-Decay needs softmax weights (DrNAS's are Dirichlet samples); random smoothing a
    // softmax mixture of every operation (GDAS samples one).
    for (key, method, takes) in [
        ("beta_decay = 1.0", "drnas", "darts-minus"),
        ("random_smoothing = 0.3", "gdas", "darts-minus"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let toml =
            study_with(1, 1, key).replace("plugin = \"darts\"", &format!("plugin = \"{method}\""));
        std::fs::write(tmp.path().join("s.toml"), toml).unwrap();
        let o = nas(&["search", "s.toml"], tmp.path());
        let err = stderr(&o);
        let name = key.split(' ').next().unwrap();
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains(name) && err.contains(method) && err.contains(takes),
            "the error names the key, the method and the methods that take it:\n{err}"
        );
        assert!(
            !err.contains("supernet epoch"),
            "refused before any training:\n{err}"
        );
    }
}

#[test]
fn darts_and_gdas_search_a_chain_space() {
    // GDAS takes the straight-through gradient of every option here (`gdas_gradient =
    // "auto"`): a chain supernet's options share their weights.
    for method in ["darts", "gdas"] {
        let tmp = tempfile::tempdir().unwrap();
        let toml =
            on_chain(study(2, 2).replace("plugin = \"darts\"", &format!("plugin = \"{method}\"")));
        std::fs::write(tmp.path().join("s.toml"), toml).unwrap();
        let o = nas(&["search", "s.toml"], tmp.path());
        let err = stderr(&o);
        assert!(o.status.success(), "{method}: {err}");
        assert!(
            err.contains(&format!("{method}: supernet epoch 2/2")),
            "{err}"
        );
        let (state, trials) = stored_of(tmp.path(), method);
        let probs = state["history"][1]["probabilities"].as_array().unwrap();
        assert_eq!(probs.len(), 8, "four choices per stage, two stages");
        let archs: Vec<&String> = trials.iter().map(|(_, arch)| arch).collect();
        assert_eq!(archs.len(), 2, "{archs:?}");
        for arch in &archs {
            let stages: Vec<&str> = arch.split('|').collect();
            assert_eq!(stages.len(), 2, "{arch}");
            assert!(stages.iter().all(|s| s.starts_with('d')), "{arch}");
        }
        assert_ne!(archs[0], archs[1]);
        let ckpt = tmp.path().join(format!("study/oneshot/0-{method}.ckpt"));
        let ckpt = nas_train::oneshot::OneShotCheckpoint::load(&ckpt).unwrap();
        // What `gdas_gradient = "auto"` resolves by; the settings stay as the study gave them,
        // so that a resumed study finds its checkpoint's settings equal to its own.
        assert!(ckpt.supernet.options_share_weights);
        assert_eq!(
            ckpt.config.gdas_gradient,
            nas_train::oneshot::GdasGradient::Auto
        );
    }
}

#[test]
fn a_cost_penalty_derives_the_cheapest_chain_network() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = on_chain(study_with(
        2,
        1,
        "cost_penalty = 20.0\ncost_metric = \"flops\"",
    ));
    std::fs::write(tmp.path().join("s.toml"), toml).unwrap();
    let o = nas(&["search", "s.toml"], tmp.path());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("expected cost"), "{err}");
    let (state, trials) = stored(tmp.path());
    let spent: Vec<f64> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["expected_cost"].as_f64().unwrap())
        .collect();
    assert!(spent[1] < spent[0], "{spent:?}");
    // Every choice at its smallest option: depth 1, kernel 3, expansion 1, half width.
    assert_eq!(trials[0].1, "d1-k3-e1-w4|d1-k3-e1-w8", "{trials:?}");
}
