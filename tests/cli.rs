//! End-to-end tests of the `nas` program: real plugins (.so files from this build), real
//! ONNX Runtime, real SQLite files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{NAS, nas, stderr, stdout};

/// A small, quick study: tiny NB201 networks, random then evolution, the cost evaluator.
fn study_toml(trials: u64, latency_runs: u64, extra: &str) -> String {
    format!(
        r#"
[study]
name = "e2e"
seed = 7
directory = "study"

[budget]
trials = {trials}

[space]
kind = "cell"
input = [3, 16, 16]
classes = 10
channels = 8
cells_per_stage = 1

[[strategy]]
plugin = "random"
until = {{ trials = 10 }}

[[strategy]]
plugin = "evolution"
population = 8
sample = 3

[[evaluator]]
plugin = "cost"
latency = {{ batch = 4, runs = {latency_runs}, warmup = 1 }}

[objective]
minimize = "latency_ms"
{extra}
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn trials_json(dir: &Path, study: &str) -> Vec<serde_json::Value> {
    let o = nas(&["status", study, "--json"], dir);
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    serde_json::from_str::<serde_json::Value>(&stdout(&o))
        .expect("status --json is JSON")
        .as_array()
        .expect("an array of trials")
        .clone()
}

#[test]
fn search_status_best_export_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "s.toml", &study_toml(15, 3, ""));
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "search failed: {}", stderr(&o));
    assert!(stdout(&o).contains("best"), "{}", stdout(&o));

    let trials = trials_json(tmp.path(), "study");
    let evaluated = trials.iter().filter(|t| t["state"] != "infeasible").count();
    assert_eq!(evaluated, 15, "the trial budget is respected");
    for t in &trials {
        for key in ["id", "state", "strategy", "arch", "metrics", "error"] {
            assert!(t.get(key).is_some(), "trial lacks `{key}`: {t}");
        }
        let arch = t["arch"].as_str().unwrap();
        assert!(
            arch.starts_with('|') && arch.matches('+').count() == 2,
            "{arch}"
        );
        if t["state"] == "complete" {
            for m in ["params", "flops", "latency_ms", "latency_p90_ms"] {
                assert!(
                    t["metrics"][m].as_f64().unwrap() > 0.0,
                    "{m} missing in {t}"
                );
            }
        }
    }
    let proposers: Vec<&str> = trials
        .iter()
        .map(|t| t["strategy"].as_str().unwrap())
        .collect();
    assert!(
        proposers[..10].iter().all(|s| *s == "random"),
        "{proposers:?}"
    );
    assert!(
        proposers[10..].iter().all(|s| *s == "evolution"),
        "{proposers:?}"
    );

    let o = nas(&["best", "study", "--json", "--top", "3"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let best: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(best.len(), 3);
    let lat: Vec<f64> = best
        .iter()
        .map(|t| t["metrics"]["latency_ms"].as_f64().unwrap())
        .collect();
    assert!(
        lat.windows(2).all(|w| w[0] <= w[1]),
        "sorted best first: {lat:?}"
    );
    let min_all = trials
        .iter()
        .filter(|t| t["state"] == "complete")
        .map(|t| t["metrics"]["latency_ms"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(lat[0], min_all);

    let id = best[0]["id"].as_u64().unwrap().to_string();
    let o = nas(
        &["export", "study", "--trial", &id, "-o", "best.onnx"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("input `input`"), "{}", stdout(&o));
    let bytes = std::fs::read(tmp.path().join("best.onnx")).unwrap();
    assert!(bytes.len() > 10_000, "an ONNX model with weights");

    // Running the finished study again evaluates nothing more.
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(trials_json(tmp.path(), "study").len(), trials.len());
}

#[test]
fn killed_search_resumes_without_losing_or_redoing_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = 120;
    let cfg = write(tmp.path(), "s.toml", &study_toml(budget, 40, ""));
    let mut child = Command::new(NAS)
        .args(["search", cfg.to_str().unwrap()])
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some trials are complete but before the budget is spent.
    let db = tmp.path().join("study/study.db");
    let deadline = Instant::now() + Duration::from_secs(120);
    let complete_before = loop {
        assert!(Instant::now() < deadline, "no progress within 120 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("search ended ({status}) before it could be killed; make trials slower");
        }
        if db.exists()
            && let Ok(conn) = rusqlite::Connection::open(&db)
        {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM trials WHERE state = 'complete'",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if n >= 8 {
                break n;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let before: BTreeMap<u64, serde_json::Value> = trials_json(tmp.path(), "study")
        .into_iter()
        .filter(|t| t["state"] == "complete")
        .map(|t| (t["id"].as_u64().unwrap(), t))
        .collect();
    assert!(before.len() as i64 >= complete_before);
    assert!((before.len() as u64) < budget, "killed before the end");

    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let after = trials_json(tmp.path(), "study");
    for (id, t) in &before {
        let again = after.iter().find(|a| a["id"] == *id).expect("trial kept");
        assert_eq!(again, t, "completed trial {id} unchanged by the resume");
    }
    let evaluated = after.iter().filter(|t| t["state"] != "infeasible").count() as u64;
    assert_eq!(evaluated, budget, "budget respected across the kill");
    assert!(
        after.iter().all(|t| t["state"] == "complete"),
        "nothing left pending"
    );
    let mut archs: Vec<&str> = after.iter().map(|t| t["arch"].as_str().unwrap()).collect();
    archs.sort();
    let n = archs.len();
    archs.dedup();
    assert_eq!(archs.len(), n, "no architecture evaluated twice");
}

#[test]
fn config_errors_name_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[study]\nname = \"x\"\nsed = 1\n",
            "3:1",
            "unknown field `sed`",
        ),
        ("[study]\nname = 5\n", "2:8", "expected a string"),
        (
            &study_toml(5, 1, "").replace("channels = 8", "chanels = 8"),
            "",
            "unknown field `chanels`",
        ),
        (
            &study_toml(5, 1, "").replace("kind = \"cell\"", "kind = \"celll\""),
            "",
            "unknown space kind `celll`",
        ),
        (
            &study_toml(5, 1, "").replace("trials = 5", "trials = \"many\""),
            "",
            "expected u64",
        ),
        (
            &study_toml(5, 1, "[constraints]\nparams = { min = 1, maxx = 2 }\n"),
            "",
            "unknown field `maxx`",
        ),
        (
            &study_toml(5, 1, "").replace(
                "[[evaluator]]\nplugin = \"cost\"",
                "[[evaluator]]\nplugin = \"nosuch\"",
            ),
            "",
            "no evaluator plugin named `nosuch`",
        ),
        (
            &study_toml(5, 1, "").replace("population = 8", "population = 8\npopulaton = 3"),
            "",
            "populaton",
        ),
    ];
    for (text, position, message) in cases {
        let cfg = write(tmp.path(), "bad.toml", text);
        let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
        let err = stderr(&o);
        assert!(!o.status.success(), "accepted a bad config:\n{text}");
        assert!(err.contains(message), "expected `{message}` in: {err}");
        assert!(err.contains("bad.toml"), "error names the file: {err}");
        if !position.is_empty() {
            assert!(
                err.contains(&format!("bad.toml:{position}")),
                "expected {position} in {err}"
            );
        }
    }
}

#[test]
fn a_changed_config_is_refused_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "s.toml", &study_toml(6, 1, ""));
    assert!(
        nas(&["search", cfg.to_str().unwrap()], tmp.path())
            .status
            .success()
    );
    let before = trials_json(tmp.path(), "study");

    let changed = write(
        tmp.path(),
        "s2.toml",
        &study_toml(6, 1, "").replace("channels = 8", "channels = 12"),
    );
    let o = nas(&["search", changed.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("changed: space"), "{}", stderr(&o));

    // A bigger budget is a legitimate change: the study continues.
    let more = write(tmp.path(), "s3.toml", &study_toml(9, 1, ""));
    let o = nas(&["search", more.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let after = trials_json(tmp.path(), "study");
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(
        after.iter().filter(|t| t["state"] != "infeasible").count(),
        9
    );
}

/// `[budget] cost` sums a metric over the evaluated trials and stops the study once the sum
/// reaches its `max`; a resume with a larger `max` continues from what is stored.
#[test]
fn a_cost_budget_stops_when_the_summed_metric_reaches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let with_max = |max: u64| {
        study_toml(1000, 1, "").replace(
            "trials = 1000",
            &format!("trials = 1000\ncost = {{ metric = \"params\", max = {max} }}"),
        )
    };
    let spent = |trials: &[serde_json::Value]| -> Vec<f64> {
        trials
            .iter()
            .filter(|t| t["state"] == "complete")
            .map(|t| t["metrics"]["params"].as_f64().unwrap())
            .collect()
    };
    for max in [200_000u64, 500_000] {
        let cfg = write(tmp.path(), "s.toml", &with_max(max));
        let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
        assert!(o.status.success(), "{}", stderr(&o));
        let said = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            said.contains(&format!("cost budget of {max} params reached")),
            "{said}"
        );
        let params = spent(&trials_json(tmp.path(), "study"));
        let total: f64 = params.iter().sum();
        let before_last = total - params.last().unwrap();
        assert!(
            total >= max as f64 && before_last < max as f64,
            "stopped at {total} (before the last trial {before_last}) for a budget of {max}"
        );
    }
    // A budget that is not a metric name and a positive number is refused where it is written.
    let cfg = write(
        tmp.path(),
        "bad.toml",
        &study_toml(12, 1, "").replace(
            "trials = 12",
            "trials = 12\ncost = { metric = \"params\", max = -1 }",
        ),
    );
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml:") && e.contains("positive `max`"),
        "{e}"
    );
}

/// `[budget] proposals` counts every proposal, repeats answered from the cache included (as
/// Optuna counts trials), where `trials` counts only the networks evaluated.
#[test]
fn a_proposal_budget_counts_repeated_networks_too() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "s.toml",
        r#"
[study]
name = "proposals"
seed = 3
directory = "study"

[budget]
trials = 1000
proposals = 80

[space]
kind = "cell"
input = [3, 16, 16]
classes = 10
channels = 8
cells_per_stage = 1

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"

[objective]
minimize = "params"
"#,
    );
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stderr(&o);
    assert!(said.contains("proposal budget of 80 reached"), "{said}");
    // "(N trials evaluated in this run, D duplicate proposals answered from the cache)"
    let counts: Vec<u64> = said
        .split_once("reached (")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no counts in {said}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .take(2)
        .map(|w| w.parse().unwrap())
        .collect();
    let (evaluated, duplicates) = (counts[0], counts[1]);
    // Random NB201 cells repeat a network (isomorphic cells) now and then.
    assert!(duplicates > 0, "{said}");
    assert_eq!(evaluated + duplicates, 80, "{said}");
    assert_eq!(trials_json(tmp.path(), "study").len() as u64, evaluated);
}

#[test]
fn constraints_mark_candidates_infeasible_without_scoring_them() {
    let tmp = tempfile::tempdir().unwrap();
    // A floor most small cells miss, so some candidates must be infeasible.
    let cfg = write(
        tmp.path(),
        "s.toml",
        &study_toml(8, 1, "[constraints]\nparams = { min = 40_000 }\n"),
    );
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let trials = trials_json(tmp.path(), "study");
    let infeasible: Vec<_> = trials
        .iter()
        .filter(|t| t["state"] == "infeasible")
        .collect();
    assert!(!infeasible.is_empty(), "the floor rejected nothing");
    for t in infeasible {
        assert!(t["metrics"]["params"].as_f64().unwrap() < 40_000.0);
        assert!(
            t["metrics"].get("latency_ms").is_none(),
            "scored anyway: {t}"
        );
        assert!(t["error"].as_str().unwrap().contains("below the minimum"));
    }
    for t in trials.iter().filter(|t| t["state"] == "complete") {
        assert!(t["metrics"]["params"].as_f64().unwrap() >= 40_000.0);
    }
}

#[test]
fn plugins_lists_the_shipped_plugins() {
    let tmp = tempfile::tempdir().unwrap();
    let o = nas(&["plugins", "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    for (name, kind) in [
        ("random", "strategy"),
        ("evolution", "strategy"),
        ("cost", "evaluator"),
    ] {
        assert!(
            list.iter()
                .any(|p| p["name"] == name && p["kind"] == kind && p["error"].is_null()),
            "{name} missing from {list:?}"
        );
    }
}

#[test]
fn the_seed_makes_a_study_repeatable() {
    let tmp = tempfile::tempdir().unwrap();
    // Params and FLOPs only: every metric is deterministic, so whole trials must agree.
    let text = study_toml(14, 1, "")
        .replace("latency = { batch = 4, runs = 1, warmup = 1 }", "")
        .replace("minimize = \"latency_ms\"", "minimize = \"flops\"");
    let cfg = write(tmp.path(), "s.toml", &text);
    let runs: Vec<Vec<(String, String, String)>> = ["a", "b"]
        .iter()
        .map(|dir| {
            let o = nas(
                &["search", cfg.to_str().unwrap(), "--study-dir", dir],
                tmp.path(),
            );
            assert!(o.status.success(), "{}", stderr(&o));
            trials_json(tmp.path(), dir)
                .iter()
                .map(|t| {
                    (
                        t["arch"].as_str().unwrap().to_string(),
                        t["strategy"].as_str().unwrap().to_string(),
                        t["metrics"].to_string(),
                    )
                })
                .collect()
        })
        .collect();
    assert_eq!(runs[0].len(), runs[1].len());
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn several_objectives_give_a_pareto_set() {
    let tmp = tempfile::tempdir().unwrap();
    let text = study_toml(12, 2, "").replace(
        "minimize = \"latency_ms\"",
        "objectives = [{ maximize = \"params\" }, { minimize = \"flops\" }]",
    );
    let cfg = write(tmp.path(), "s.toml", &text);
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = nas(&["best", "study", "--json"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let front: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(!front.is_empty());
    let point = |t: &serde_json::Value| {
        (
            t["metrics"]["params"].as_f64().unwrap(),
            t["metrics"]["flops"].as_f64().unwrap(),
        )
    };
    let dominated =
        |a: (f64, f64), b: (f64, f64)| b.0 >= a.0 && b.1 <= a.1 && (b.0 > a.0 || b.1 < a.1);
    let all: Vec<(f64, f64)> = trials_json(tmp.path(), "study")
        .iter()
        .filter(|t| t["state"] == "complete")
        .map(point)
        .collect();
    for t in &front {
        let p = point(t);
        assert!(!all.iter().any(|q| dominated(p, *q)), "{p:?} is dominated");
    }
    // Every complete trial not in the set is dominated by a member of it.
    for q in &all {
        if !front.iter().any(|t| point(t) == *q) {
            assert!(
                front.iter().any(|t| dominated(*q, point(t))),
                "{q:?} missing from the front"
            );
        }
    }
}

/// Random and evolution mixed by `mix` (a TOML fragment), params and FLOPs only.
fn mixed_study(trials: u64, strategies: &str, mix: &str) -> String {
    format!(
        r#"
[study]
name = "mix"
seed = 11
directory = "study"

[budget]
trials = {trials}

[space]
kind = "chain"

{strategies}

[[evaluator]]
plugin = "cost"

[objective]
minimize = "flops"
{mix}
"#
    )
}

#[test]
fn a_weighted_portfolio_shares_proposals_and_records_proposers() {
    let tmp = tempfile::tempdir().unwrap();
    let strategies = "[[strategy]]\nplugin = \"random\"\nweight = 3\n\n[[strategy]]\nplugin = \"evolution\"\npopulation = 5\nsample = 2\nweight = 1\n";
    let cfg = write(tmp.path(), "s.toml", &mixed_study(200, strategies, ""));
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let trials = trials_json(tmp.path(), "study");
    assert_eq!(trials.len(), 200);
    let random = trials.iter().filter(|t| t["strategy"] == "random").count() as f64;
    let share = random / 200.0;
    assert!(
        (0.62..=0.88).contains(&share),
        "random's share {share}, weight 3 of 4"
    );
    assert!(
        trials
            .iter()
            .all(|t| t["strategy"] == "random" || t["strategy"] == "evolution")
    );
    let o = nas(&["status", "study"], tmp.path());
    assert!(stdout(&o).contains("Portfolio mix"), "{}", stdout(&o));
}

#[test]
fn the_bandit_credits_strategies_and_reports_them() {
    let tmp = tempfile::tempdir().unwrap();
    let strategies = "[[strategy]]\nplugin = \"random\"\n\n[[strategy]]\nplugin = \"evolution\"\npopulation = 5\nsample = 2\n";
    let cfg = write(
        tmp.path(),
        "s.toml",
        &mixed_study(60, strategies, "[mix]\nmode = \"bandit\"\nwindow = 10\n"),
    );
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("credit"), "{}", stderr(&o));
    let trials = trials_json(tmp.path(), "study");
    for name in ["random", "evolution"] {
        assert!(
            trials.iter().any(|t| t["strategy"] == name),
            "{name} never proposed"
        );
    }
    let o = nas(&["status", "study"], tmp.path());
    assert!(stdout(&o).contains("Bandit mix"), "{}", stdout(&o));

    // Phases and portfolio keys do not mix.
    let bad = mixed_study(
        5,
        "[[strategy]]\nplugin = \"random\"\nuntil = { trials = 2 }\nweight = 2\n\n[[strategy]]\nplugin = \"evolution\"\n",
        "",
    );
    let cfg = write(tmp.path(), "bad.toml", &bad);
    let o = nas(
        &["search", cfg.to_str().unwrap(), "--study-dir", "other"],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.toml:"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("`until` makes phases"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn parallel_workers_are_reproducible_for_a_seed_and_worker_count() {
    let tmp = tempfile::tempdir().unwrap();
    let strategies = "[[strategy]]\nplugin = \"random\"\nuntil = { trials = 8 }\n\n[[strategy]]\nplugin = \"evolution\"\npopulation = 6\nsample = 3\n";
    let text = mixed_study(30, strategies, "[runtime]\nworkers = 3\n");
    let cfg = write(tmp.path(), "s.toml", &text);
    let runs: Vec<Vec<serde_json::Value>> = ["a", "b"]
        .iter()
        .map(|dir| {
            let o = nas(
                &["search", cfg.to_str().unwrap(), "--study-dir", dir],
                tmp.path(),
            );
            assert!(o.status.success(), "{}", stderr(&o));
            trials_json(tmp.path(), dir)
                .into_iter()
                .map(|mut t| {
                    // Timings differ from run to run; everything else must not.
                    t.as_object_mut().unwrap().remove("seconds");
                    t
                })
                .collect()
        })
        .collect();
    assert_eq!(runs[0].len(), 30);
    assert!(runs[0].iter().all(|t| t["state"] == "complete"));
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn evaluate_scores_given_architectures_without_a_search() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "s.toml", &study_toml(5, 2, ""));
    let nb201 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|";
    let o = nas(
        &[
            "evaluate",
            cfg.to_str().unwrap(),
            "--arch",
            nb201,
            "--arch",
            "[3,2,3,1,2,3]",
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let scored: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(scored.len(), 2);
    // The NB201 string and its choice vector are the same network.
    assert_eq!(scored[0]["arch"], nb201);
    assert_eq!(scored[1]["arch"], nb201);
    assert_eq!(
        scored[0]["metrics"]["params"],
        scored[1]["metrics"]["params"]
    );
    assert!(scored[0]["metrics"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(!tmp.path().join("study").exists(), "no study is created");

    let o = nas(
        &["evaluate", cfg.to_str().unwrap(), "--arch", "[9,9,9,9,9,9]"],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not an option index"), "{}", stderr(&o));
}

/// The test fixture strategy, built with the workspace (`cargo test --workspace`).
fn fixture_strategy() -> String {
    let exe = std::path::PathBuf::from(NAS);
    let dir = exe.parent().unwrap();
    let lib = dir.join(format!(
        "{}strategy_test_panic{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.exists(),
        "{} is missing: run the tests with `cargo xtask test` (it builds the fixtures)",
        lib.display()
    );
    lib.display().to_string()
}

#[test]
fn strategies_breaking_the_ask_contract_are_named_and_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = fixture_strategy();
    for (mode, expected) in [
        (
            "wrong_arity",
            "proposed an invalid candidate: proposal has 5 values but the space has 6 choices",
        ),
        (
            "out_of_range",
            "choice `edge_1_0`: value 1000000000 is not an option index",
        ),
    ] {
        let text = study_toml(5, 1, "")
            .replace(
                "[[strategy]]\nplugin = \"random\"\nuntil = { trials = 10 }\n\n[[strategy]]\nplugin = \"evolution\"\npopulation = 8\nsample = 3\n",
                &format!("[[strategy]]\nplugin = \"{lib}\"\npropose = \"{mode}\"\n"),
            );
        let cfg = write(tmp.path(), "s.toml", &text);
        let o = nas(
            &["search", cfg.to_str().unwrap(), "--study-dir", mode],
            tmp.path(),
        );
        assert!(!o.status.success(), "{mode} accepted");
        let err = stderr(&o);
        assert!(err.contains("strategy `test-panic`"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    // A strategy with nothing to propose ends the search without spinning.
    let text = study_toml(5, 1, "").replace(
        "[[strategy]]\nplugin = \"random\"\nuntil = { trials = 10 }\n\n[[strategy]]\nplugin = \"evolution\"\npopulation = 8\nsample = 3\n",
        &format!("[[strategy]]\nplugin = \"{lib}\"\npropose = \"nothing\"\n"),
    );
    let cfg = write(tmp.path(), "s.toml", &text);
    let o = nas(
        &["search", cfg.to_str().unwrap(), "--study-dir", "nothing"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nothing more to propose"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn hyperband_promotes_through_fidelities_and_best_uses_the_top_one() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
[study]
name = "hb"
seed = 5
directory = "study"

[budget]
trials = 40

[space]
kind = "cell"

[[strategy]]
plugin = "hyperband"
min_fidelity = 1
max_fidelity = 9
eta = 3

[[evaluator]]
plugin = "nb201"
fidelity = "auto"

[objective]
maximize = "val_accuracy"

[runtime]
workers = 2
"#;
    let cfg = write(tmp.path(), "s.toml", text);
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let trials = trials_json(tmp.path(), "study");
    assert_eq!(trials.len(), 40);
    let fidelities: Vec<f64> = trials
        .iter()
        .map(|t| t["fidelity"].as_f64().unwrap())
        .collect();
    assert!(
        fidelities.iter().all(|f| [1.0, 3.0, 9.0].contains(f)),
        "{fidelities:?}"
    );
    assert!(
        fidelities.contains(&9.0),
        "nothing was promoted to the top rung"
    );
    // A promotion re-evaluates the same architecture at a higher fidelity.
    let promoted = trials.iter().filter(|t| t["fidelity"] == 3.0).count();
    assert!(promoted > 0 && promoted < trials.iter().filter(|t| t["fidelity"] == 1.0).count());
    let o = nas(&["best", "study", "--json"], tmp.path());
    let best: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        best[0]["fidelity"], 9.0,
        "the best is chosen among top-fidelity results"
    );
}
