//! End-to-end tests of the final phase (`[final]`): the recipe it retrains with, what re-runs
//! reuse and regenerate, where model paths point, and what `nas best --json` and the model
//! descriptions report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{NAS, nas};

fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    stderr
}

/// Tiny cells on digits, one epoch per trial; `test_accuracy = true` in the train table.
fn study(final_table: &str) -> String {
    format!(
        r#"
[study]
name = "final-e2e"
seed = 5
directory = "study"

[budget]
trials = 3

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
epochs = 1
batch = 64
lr = 0.1
test_accuracy = true
keep_checkpoints = false

[objective]
maximize = "val_accuracy"

[final]
{final_table}
"#
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("study.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn search(cfg: &Path, study_dir: &str, cwd: &Path) -> String {
    ok(&nas(
        &["search", cfg.to_str().unwrap(), "--study-dir", study_dir],
        cwd,
    ))
}

fn best_json(study_dir: &str, top: &str, cwd: &Path) -> Vec<Value> {
    let o = nas(&["best", study_dir, "--json", "--top", top], cwd);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn final_results_reach_json_and_reruns_reuse_or_regenerate_models() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let cfg = write_config(cwd, &study("top_k = 2\nepochs = 1\nensemble = true\n"));

    // `test_accuracy = true` is the evaluator's key, not the recipe's: the final phase runs.
    let err = search(&cfg, "study", cwd);
    assert!(err.contains("final: ensemble of 2"), "{err}");

    let best = best_json("study", "2", cwd);
    assert_eq!(best.len(), 2);
    let mut models = Vec::new();
    for t in &best {
        // The existing fields stay as they were.
        for key in ["id", "state", "strategy", "arch", "metrics", "error"] {
            assert!(t.get(key).is_some(), "{key} missing in {t}");
        }
        let fin = &t["final"];
        let acc = fin["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{fin}");
        assert!(fin["test_loss"].as_f64().unwrap().is_finite(), "{fin}");
        assert_eq!(fin["epochs"], 1, "{fin}");
        assert!(fin["train_seconds"].as_f64().unwrap() > 0.0, "{fin}");
        let model = cwd.join(fin["model"].as_str().unwrap());
        assert!(model.is_file(), "{}", model.display());
        let ensemble = &fin["ensemble"];
        assert_eq!(ensemble["members"].as_array().unwrap().len(), 2, "{fin}");
        assert!((0.0..=1.0).contains(&ensemble["test_accuracy"].as_f64().unwrap()));
        assert!(cwd.join(ensemble["model"].as_str().unwrap()).is_file());

        // Each model's description carries its test results.
        let info: Value = serde_json::from_slice(
            &std::fs::read(model.with_file_name(format!(
                "{}.json",
                model.file_name().unwrap().to_string_lossy()
            )))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(info["test_accuracy"].as_f64(), Some(acc), "{info}");
        assert_eq!(info["test_loss"], fin["test_loss"], "{info}");
        assert_eq!(info["epochs"], 1, "{info}");
        models.push(model);
    }

    // A moved study still finds its models: the stored paths are relative to the study.
    std::fs::rename(cwd.join("study"), cwd.join("moved")).unwrap();
    let moved = best_json("moved", "2", cwd);
    for t in &moved {
        let model = t["final"]["model"].as_str().unwrap();
        assert!(model.starts_with("moved"), "{model}");
        assert!(cwd.join(model).is_file(), "{model}");
    }
    let models: Vec<PathBuf> = models
        .iter()
        .map(|m| cwd.join("moved/final").join(m.file_name().unwrap()))
        .collect();
    let ensemble = cwd.join("moved/final/ensemble.onnx");

    // A re-run reuses the stored members and ensemble: nothing is retrained or rewritten.
    let before: Vec<_> = models.iter().map(|m| modified(m)).collect();
    let ensemble_before = modified(&ensemble);
    let err = search(&cfg, "moved", cwd);
    assert_eq!(err.matches("already retrained").count(), 2, "{err}");
    assert!(err.contains("ensemble of 2 already built"), "{err}");
    assert!(!err.contains("retraining trial"), "{err}");
    let after: Vec<_> = models.iter().map(|m| modified(m)).collect();
    assert_eq!(before, after);
    assert_eq!(ensemble_before, modified(&ensemble));

    // A deleted member file is regenerated; the other member is reused from its file.
    std::fs::remove_file(&models[1]).unwrap();
    let err = search(&cfg, "moved", cwd);
    assert!(err.contains("is missing; retraining it"), "{err}");
    assert_eq!(err.matches("retraining trial").count(), 1, "{err}");
    assert!(models[1].is_file());
    assert_eq!(modified(&models[0]), before[0]);
    assert!(err.contains("final: ensemble of 2 test accuracy"), "{err}");
}

#[test]
fn a_changed_final_table_is_accepted_and_retrains_what_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let cfg = write_config(cwd, &study("top_k = 1\nepochs = 1\n"));
    search(&cfg, "study", cwd);
    assert_eq!(best_json("study", "1", cwd)[0]["final"]["epochs"], 1);

    // `[final]` does not change the search: a resume with other final epochs retrains.
    let cfg = write_config(cwd, &study("top_k = 1\nepochs = 2\n"));
    let err = search(&cfg, "study", cwd);
    assert!(
        err.contains("retrained for 1 epochs, now 2 are asked; retraining it"),
        "{err}"
    );
    let best = best_json("study", "1", cwd);
    assert_eq!(best[0]["final"]["epochs"], 2, "{}", best[0]);

    // Trials outside the (new) top-k have no `final` object.
    let all = best_json("study", "3", cwd);
    assert_eq!(all.iter().filter(|t| t.get("final").is_some()).count(), 1);

    // `nas export` replaces its output in one step: a write that fails half-way (here the
    // file size limit stands in for a full disk) leaves the previous file whole.
    let id = best[0]["id"].to_string();
    let export = ["export", "study", "--trial", &id, "-o", "model.onnx"];
    ok(&nas(&export, cwd));
    let size = std::fs::metadata(cwd.join("model.onnx")).unwrap().len();
    std::fs::write(cwd.join("model.onnx"), b"the previous model").unwrap();
    let o = nas_with_file_size_limit(&export, cwd, size - 1);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot write model.onnx"), "{err}");
    let kept = std::fs::read(cwd.join("model.onnx")).unwrap();
    assert!(
        kept == b"the previous model",
        "the previous file was replaced by {} bytes",
        kept.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `nas` with writes past `bytes` failing (EFBIG), as on a full disk.
#[allow(unsafe_code)] // a resource limit for the child only: std has no safe setrlimit
fn nas_with_file_size_limit(args: &[&str], cwd: &Path, bytes: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(NAS);
    cmd.args(args).current_dir(cwd);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("nas runs")
}

/// A study whose evaluators train nothing (here only `cost`; a `supernet` study alike) takes
/// its retraining recipe from `[final] train`; without it, or with a recipe that is not
/// valid, the study is refused when it starts (not after the search), saying how to give one.
#[test]
fn final_train_gives_the_recipe_of_a_study_without_a_train_evaluator() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let without_train = |final_table: &str| {
        study(final_table).replace(
            "plugin = \"train\"\nepochs = 1\nbatch = 64\nlr = 0.1\ntest_accuracy = true\nkeep_checkpoints = false\n",
            "plugin = \"cost\"\n",
        )
        .replace("maximize = \"val_accuracy\"", "minimize = \"params\"")
    };
    let cfg = write_config(cwd, &without_train("top_k = 1\n"));
    let o = nas(
        &["search", cfg.to_str().unwrap(), "--study-dir", "study"],
        cwd,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("train = {"), "{err}");
    assert!(!cwd.join("study").exists(), "refused before any trial ran");
    for (bad, says) in [
        ("train = { epochz = 2 }", "epochz"),
        ("train = { lr = -1.0 }", "lr"),
        ("train = 3", "must be a table"),
    ] {
        let cfg = write_config(cwd, &without_train(&format!("top_k = 1\n{bad}\n")));
        let o = nas(
            &["search", cfg.to_str().unwrap(), "--study-dir", "study"],
            cwd,
        );
        assert!(!o.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(says) && err.contains("[final]"),
            "{bad}: {err}"
        );
        assert!(
            !cwd.join("study").exists(),
            "{bad}: refused before any trial ran"
        );
    }

    // With the recipe in `[final]` the study runs and retrains.
    let cfg = write_config(
        cwd,
        &without_train("top_k = 1\ntrain = { epochs = 2, batch = 32, lr = 0.05 }\n"),
    );
    search(&cfg, "study", cwd);
    let best = best_json("study", "1", cwd);
    let fin = &best[0]["final"];
    assert_eq!(fin["epochs"], 2, "{fin}");
    assert!(
        (0.0..=1.0).contains(&fin["test_accuracy"].as_f64().unwrap()),
        "{fin}"
    );
    assert!(cwd.join(fin["model"].as_str().unwrap()).is_file(), "{fin}");
}
