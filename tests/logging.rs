//! `NAS_LOG` turns on the engine's log events: trial spans, leases, resume. They go to stderr
//! and leave stdout (and `--json`) untouched. Real `nas` program, real plugins, real SQLite.

use std::path::Path;
use std::process::{Command, Output};

const NAS: &str = env!("CARGO_BIN_EXE_nas");

const STUDY: &str = r#"
[study]
name = "logged"
seed = 3
directory = "study"

[budget]
trials = TRIALS

[space]
kind = "cell"
input = [3, 8, 8]
classes = 10
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"

[objective]
minimize = "params"
"#;

fn nas(args: &[&str], cwd: &Path, log: &str) -> Output {
    let o = Command::new(NAS)
        .args(args)
        .current_dir(cwd)
        .env("NAS_LOG", log)
        .output()
        .expect("nas runs");
    assert!(
        o.status.success(),
        "nas {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Log text without terminal colour codes.
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ ... letter`.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn trials_log_in_their_span_and_a_resume_says_what_it_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("study.toml");
    std::fs::write(&config, STUDY.replace("TRIALS", "3")).unwrap();
    let config = config.to_str().unwrap();

    let first = nas(&["search", config], tmp.path(), "debug");
    let log = plain(&first.stderr);
    for wanted in [
        "trial{id=1 strategy=random}",
        "trial claimed with a lease",
        "evaluated",
        "trial stored",
        "the study stops proposing",
    ] {
        assert!(
            log.contains(wanted),
            "`{wanted}` missing from the log:\n{log}"
        );
    }
    assert!(
        !plain(&first.stdout).contains("trial claimed"),
        "logs on stdout"
    );

    std::fs::write(tmp.path().join("study.toml"), STUDY.replace("TRIALS", "5")).unwrap();
    let resumed = plain(&nas(&["search", config], tmp.path(), "info").stderr);
    for wanted in [
        "resuming the study",
        "strategy state restored from its checkpoint",
    ] {
        assert!(resumed.contains(wanted), "`{wanted}` missing:\n{resumed}");
    }
    assert!(
        !resumed.contains("trial claimed"),
        "debug events at info level:\n{resumed}"
    );

    let status = nas(&["status", "study", "--json"], tmp.path(), "trace");
    let trials: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(trials.as_array().map(Vec::len), Some(5));
}
