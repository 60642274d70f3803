//! With a database, outcomes are told in proposal order: with a fixed `[runtime] queue_depth`
//! a seed gives the same proposals whether one thread or several worker processes evaluate.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{NAS, nas, stderr, stdout};

/// A deterministic objective (the parameter count) so results, hence proposals, can only
/// differ through the order they are told in.
fn config(name: &str, workers: usize) -> String {
    format!(
        r#"
[study]
name = "{name}"
seed = 11
directory = "files-{name}"

[budget]
trials = 16

[space]
kind = "cell"
input = [3, 16, 16]
classes = 10
channels = 8
cells_per_stage = 1

[[strategy]]
plugin = "random"
until = {{ trials = 4 }}

[[strategy]]
plugin = "evolution"
population = 4
sample = 2

[[evaluator]]
plugin = "cost"
latency = {{ batch = 2, runs = 2, warmup = 0 }}

[objective]
minimize = "params"

[runtime]
workers = {workers}
queue_depth = 3
"#
    )
}

fn proposals(url: &str, study: &str, cwd: &Path) -> Vec<(u64, String)> {
    let o = nas(
        &["status", "--storage", url, "--study", study, "--json"],
        cwd,
    );
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o))
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_u64().unwrap(),
                t["arch"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_fixed_queue_depth_gives_the_same_proposals_for_any_number_of_workers() {
    let db = nas_testdb::TestDb::create("queue_order");
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();

    // One evaluator thread inside the coordinator.
    std::fs::write(cwd.join("one.toml"), config("one", 1)).unwrap();
    let o = nas(&["search", "one.toml", "--storage", &db.url], cwd);
    assert!(o.status.success(), "search failed: {}", stderr(&o));

    // Three worker processes, the coordinator evaluating nothing.
    std::fs::write(cwd.join("three.toml"), config("three", 0)).unwrap();
    let coordinator = Command::new(NAS)
        .args(["search", "three.toml", "--storage", &db.url])
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            Command::new(NAS)
                .args([
                    "worker",
                    "--storage",
                    &db.url,
                    "--study",
                    "three",
                    "--idle-exit",
                    "30s",
                ])
                .current_dir(cwd)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let o = coordinator.wait_with_output().unwrap();
    assert!(o.status.success(), "coordinator failed: {}", stderr(&o));
    let mut done = 0;
    for w in workers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "worker failed: {}", stderr(&o));
        let text = stderr(&o);
        // "worker HOST:PID: N trials evaluated; stopped: ..."
        let n: u64 = text
            .lines()
            .find_map(|l| {
                l.split(" trials evaluated")
                    .next()?
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no trial count in {text}"));
        done += n;
    }
    assert_eq!(done, 16, "the workers evaluated every trial once");

    let one = proposals(&db.url, "one", cwd);
    let three = proposals(&db.url, "three", cwd);
    assert_eq!(one.len(), 16);
    assert_eq!(one, three);
}
