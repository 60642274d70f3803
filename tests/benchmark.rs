//! End-to-end tests of `nas benchmark` and `nas report`: the real `nas` program, real plugins
//! (the .so files of this build), real SQLite studies.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::nas;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn plugin_names(cwd: &Path) -> Vec<String> {
    let o = nas(&["plugins", "--json"], cwd);
    check(&o, "nas plugins --json");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("plugins JSON");
    list.iter()
        .filter(|p| p["error"].is_null())
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

/// The cells of one CSV line; quoted cells (method names with commas) are unquoted.
fn csv_cells(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs the shipped suite `configs/bench/<name>.toml` with two seeds, two at a time, into
/// `out`, after checking that this build has the plugins it needs.
fn run_shipped_suite(name: &str, plugins: &[&str], out: &Path) {
    let root = repo_root();
    let names = plugin_names(&root);
    for needed in plugins {
        assert!(
            names.iter().any(|n| n == needed),
            "the {name} benchmark needs the `{needed}` plugin, but `nas plugins --json` lists only \
             {names:?}; build it with `cargo build --workspace`"
        );
    }
    let suite = format!("configs/bench/{name}.toml");
    let o = nas(
        &[
            "benchmark",
            &suite,
            "--seeds",
            "2",
            "--jobs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &root,
    );
    check(&o, &format!("nas benchmark {suite}"));
}

#[test]
fn benchmark_smoke_suite_writes_every_output() {
    let root = repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smoke");
    run_shipped_suite("smoke", &["nb201", "evolution", "random"], &out);
    for f in [
        "trials.csv",
        "runs.csv",
        "summary.csv",
        "summary.md",
        "report.md",
        "best_cifar10_trials.svg",
        "best_cifar10_time.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    // One summary row per method, two seeds each.
    let summary = read(&out.join("summary.csv"));
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{summary}");
    for method in ["REA", "random"] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("{method},")))
            .unwrap_or_else(|| panic!("no summary row for {method}:\n{summary}"));
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[2], "cifar10");
        assert_eq!(cells[4], "2", "seeds: {row}");
        let score: f64 = cells[6].parse().expect("a mean score");
        assert!((0.0..=0.9438).contains(&score), "{row}");
    }
    // Raw trials: 2 methods x 2 seeds x 30 trials.
    let trials = read(&out.join("trials.csv"));
    assert_eq!(trials.lines().count(), 1 + 2 * 2 * 30);
    assert!(trials.lines().next().unwrap().contains("test_accuracy"));
    let report = read(&out.join("report.md"));
    assert!(report.contains("NAS-Bench-201 paper"), "{report}");
    assert!(report.contains("| REA |"), "{report}");
    assert!(read(&out.join("best_cifar10_trials.svg")).starts_with("<svg"));
    // Every run is a real study that `nas report` can open.
    let runs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert_eq!(runs, 4);
    let run = out.join("runs/rea-cifar10-s1");
    check(
        &nas(&["report", run.to_str().unwrap()], &root),
        "nas report on a run",
    );
    assert!(run.join("report/report.md").is_file());
}

/// The digits suite searches the shipped table of real training results: every method of it
/// runs, the multi-fidelity one asks for fewer epochs, and every run's score is a test
/// accuracy the table holds.
#[test]
fn benchmark_digits_suite_runs_every_method_on_the_shipped_table() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("digits");
    let plugins = [
        "tabular",
        "evolution",
        "random",
        "reinforce",
        "tpe",
        "hyperband",
        "local",
        "predictor",
    ];
    run_shipped_suite("digits", &plugins, &out);
    let summary = read(&out.join("summary.csv"));
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        8 * 2,
        "one row per method and budget:\n{summary}"
    );
    for row in &rows {
        let cells = csv_cells(row);
        assert_eq!(
            (cells[2].as_str(), cells[4].as_str()),
            ("digits", "2"),
            "{row}"
        );
        let score: f64 = cells[6].parse().expect("a mean score");
        assert!((0.8..=1.0).contains(&score), "{row}");
    }
    // 8 methods x 2 seeds x 100 trials in the first budget, none failed anywhere; Hyperband's
    // first rung is one epoch.
    let trials = read(&out.join("trials.csv"));
    let mut lines = trials.lines();
    let header = csv_cells(lines.next().unwrap());
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no `{name}` column in {header:?}"))
    };
    let (method, budget) = (col("method"), col("budget"));
    let (state, fidelity) = (col("state"), col("fidelity"));
    let body: Vec<Vec<String>> = lines.map(csv_cells).collect();
    let in_budget = |name: &str| body.iter().filter(|r| r[budget] == name).count();
    assert_eq!(in_budget("100 trials"), 8 * 2 * 100, "{:?}", body[0]);
    assert!(
        body.iter().all(|r| r[state] == "complete"),
        "a trial failed"
    );
    assert!(
        body.iter()
            .any(|r| r[method] == "Hyperband" && r[fidelity] == "1"),
        "Hyperband never asked for one epoch"
    );
    assert!(out.join("best_digits_100_trials_time.svg").is_file());
    let table =
        nas_table::Table::read(&repo_root().join("configs/tables/nb201-digits.json.gz")).unwrap();
    let runs = read(&out.join("runs.csv"));
    let mut runs = runs.lines();
    let header = csv_cells(runs.next().unwrap());
    let score = header.iter().position(|h| h == "final_score").unwrap();
    for run in runs.map(csv_cells) {
        let s: f64 = run[score].parse().expect("every run has a score");
        assert!(
            table.rows.iter().any(|r| r.test_accuracy == Some(s)),
            "score {s} is no test accuracy of the table: {run:?}"
        );
    }
    let report = read(&out.join("report.md"));
    assert!(report.contains("| Hyperband |"), "{report}");
}

#[test]
fn benchmark_refuses_a_broken_suite_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("bad.toml");
    std::fs::write(&suite, "[suite]\nname = \"bad\"\nunknown = 1\n").unwrap();
    let o = nas(&["benchmark", suite.to_str().unwrap()], tmp.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("unknown"), "{err}");
}

#[test]
fn report_of_a_real_study() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("study.toml");
    std::fs::write(
        &config,
        r#"
[study]
name = "report-e2e"
seed = 5
directory = "study"

[budget]
trials = 20

[space]
kind = "cell"
input = [3, 16, 16]
classes = 10
channels = 8
cells_per_stage = 1

[[strategy]]
plugin = "random"
until = { trials = 8 }

[[strategy]]
plugin = "evolution"
population = 6
sample = 3

[[evaluator]]
plugin = "cost"

[objective]
objectives = [{ minimize = "params" }, { minimize = "flops" }]
"#,
    )
    .unwrap();
    check(&nas(&["search", "study.toml"], tmp.path()), "nas search");
    check(&nas(&["report", "study"], tmp.path()), "nas report");
    let dir = tmp.path().join("study/report");
    for f in ["trials.csv", "best_so_far.svg", "pareto.svg", "report.md"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let csv = read(&dir.join("trials.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,state,strategy,arch,fidelity,flops,params,seconds,error,parent"
    );
    assert_eq!(lines.len(), 21);
    assert!(lines[1].starts_with("1,complete,random,|"), "{}", lines[1]);
    // Random proposals have no parent; evolution's children name an earlier trial.
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        let (id, parent): (u64, &str) = (fields[0].parse().unwrap(), fields[fields.len() - 1]);
        match fields[2] {
            "random" => assert_eq!(parent, "", "{line}"),
            _ => assert!(parent.parse::<u64>().unwrap() < id, "{line}"),
        }
    }
    let md = read(&dir.join("report.md"));
    for text in [
        "# Study `report-e2e`",
        "minimize `params`",
        "| complete | 20 |",
        "## Pareto set",
        "## Improvements by strategy",
        "| evolution | 12 |",
        "## Strategy standings",
    ] {
        assert!(md.contains(text), "missing {text:?} in:\n{md}");
    }
    // --out puts it elsewhere; a folder without a study is an error that says what to do.
    let other = tmp.path().join("elsewhere");
    check(
        &nas(
            &["report", "study", "--out", other.to_str().unwrap()],
            tmp.path(),
        ),
        "nas report --out",
    );
    assert!(other.join("report.md").is_file());
    let o = nas(&["report", "nothing-here"], tmp.path());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nas search"));
}
