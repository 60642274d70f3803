//! End-to-end tests of how the `nas` program copes with bad input, faults and signals: wrong
//! configs, misconfigured pipelines, read-only studies, closed pipes, interrupts. Real `nas`
//! binary, real plugins (.so files from this build), real SQLite files.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{NAS, nas, nas_until, send_signal, stderr, stdout};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A quick study: tiny NB201 networks, random search, parameter and FLOP counts only (no
/// ONNX Runtime), so trials take milliseconds. `extra` is appended (more tables).
fn quick_study(budget: &str, extra: &str) -> String {
    format!(
        r#"[study]
name = "quick"
seed = 3
directory = "study"

[budget]
{budget}

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
minimize = "flops"
{extra}
"#
    )
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

fn search(dir: &Path, text: &str) -> Output {
    let cfg = write(dir, "s.toml", text);
    nas(&["search", cfg.to_str().unwrap()], dir)
}

#[test]
fn a_cost_budget_on_a_metric_no_evaluator_reports_stops_at_the_first_trial() {
    let tmp = tempfile::tempdir().unwrap();
    // `trials` only bounds the test should the check be missing: the cost budget alone would
    // never be reached.
    let o = search(
        tmp.path(),
        &quick_study("trials = 30\ncost = { metric = \"nope\", max = 10 }", ""),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "accepted: {err}");
    assert!(
        err.contains("s.toml:6: [budget] cost") && err.contains("`nope`"),
        "{err}"
    );
    assert!(
        err.contains("flops, params"),
        "names what is produced: {err}"
    );
    assert_eq!(trials_json(tmp.path(), "study").len(), 1);
}

#[test]
fn a_constraint_on_a_metric_no_evaluator_reports_stops_at_the_first_trial() {
    let tmp = tempfile::tempdir().unwrap();
    let o = search(
        tmp.path(),
        &quick_study("trials = 30", "[constraints]\nlatency_ms = { max = 5.0 }"),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "every trial failed, yet: {err}");
    assert!(
        err.contains("s.toml:24: [constraints] on `latency_ms`")
            && err.contains("remove the constraint"),
        "{err}"
    );
    let trials = trials_json(tmp.path(), "study");
    assert_eq!(trials.len(), 1, "stopped at the first trial");

    // The failed trial exports with a warning that it has no valid result.
    let o = nas(
        &["export", "study", "--trial", "1", "-o", "t1.onnx"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: trial 1 is failed"),
        "{}",
        stderr(&o)
    );
    let o = nas(
        &["export", "study", "--trial", "1", "-o", "t.onnx"],
        tmp.path(),
    );
    assert!(stderr(&o).contains("no valid result"), "{}", stderr(&o));
}

#[test]
fn trials_failing_alike_print_their_reason_and_stop_the_study() {
    let tmp = tempfile::tempdir().unwrap();
    // CUDA on this build of ONNX Runtime, with no fallback: every latency measurement fails.
    let text = quick_study("trials = 20", "[runtime]\nexecution_provider = \"cuda\"").replace(
        "plugin = \"cost\"",
        "plugin = \"cost\"\nlatency = { batch = 2, runs = 1, warmup = 0 }",
    );
    let o = search(tmp.path(), &text);
    let err = stderr(&o);
    let trials = trials_json(tmp.path(), "study");
    if trials.iter().any(|t| t["state"] == "complete") {
        // This machine's ONNX Runtime has CUDA: the trials were measured on the GPU.
        assert!(o.status.success(), "{err}");
        return;
    }
    assert!(
        !o.status.success(),
        "every trial failed, yet it succeeded: {err}"
    );
    // Each of the five failed trials shows its reason, and the final error repeats it.
    assert_eq!(
        err.matches("execution provider `cuda` is not available")
            .count(),
        6,
        "{err}"
    );
    assert!(
        err.contains("the first 5 trials evaluated all failed with the same error"),
        "{err}"
    );
    assert!(err.contains("fallback"), "says what to fix: {err}");
    assert_eq!(trials.len(), 5, "stopped after the first five");
}

#[test]
fn too_many_workers_is_a_config_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let o = search(
        tmp.path(),
        &quick_study("trials = 3", "[runtime]\nworkers = 100000"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("workers = 100000") && err.contains("1 to 256"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn constraint_bounds_that_exclude_everything_are_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = search(
        tmp.path(),
        &quick_study(
            "trials = 3",
            "[constraints]\nparams = { min = 50000, max = 1000 }",
        ),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("s.toml:25:"), "names the line: {err}");
    assert!(err.contains("min = 50000 above max = 1000"), "{err}");
    assert!(!tmp.path().join("study").exists(), "nothing was created");
}

#[test]
fn a_study_name_cannot_leave_the_runs_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let text = quick_study("trials = 3", "")
        .replace("name = \"quick\"", "name = \"../../escaped\"")
        .replace("directory = \"study\"\n", "");
    let work = tmp.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let o = search(&work, &text);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("s.toml:2:"), "{err}");
    assert!(err.contains("plain folder name"), "{err}");
    assert!(!tmp.path().join("escaped").exists());
}

/// Runs `args` as a user for whom read-only permissions hold (`nobody` when the tests run as
/// root, who may write anywhere).
fn nas_without_write_access(args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(NAS);
    cmd.args(args).current_dir(cwd);
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if uid == 0 {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("nas runs")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn read_commands_work_on_a_read_only_study() {
    let tmp = tempfile::tempdir().unwrap();
    let o = search(tmp.path(), &quick_study("trials = 4", ""));
    assert!(o.status.success(), "{}", stderr(&o));
    let study = tmp.path().join("study");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Readable (and for `out`, writable) by everyone; the study itself read-only.
    set_mode(tmp.path(), 0o755);
    set_mode(&out, 0o777);
    for entry in std::fs::read_dir(&study).unwrap() {
        set_mode(&entry.unwrap().path(), 0o444);
    }
    set_mode(&study, 0o555);
    let before: Vec<String> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();

    for args in [
        vec!["status", "study"],
        vec!["status", "study", "--json"],
        vec!["best", "study"],
        vec!["export", "study", "--trial", "1", "-o", "out/t1.onnx"],
        vec!["report", "study", "--out", "out/report"],
    ] {
        let o = nas_without_write_access(&args, tmp.path());
        assert!(
            o.status.success(),
            "`nas {}` on a read-only study: {}",
            args.join(" "),
            stderr(&o)
        );
    }
    let o = nas_without_write_access(&["status", "study"], tmp.path());
    assert!(stdout(&o).contains("4 trials"), "{}", stdout(&o));
    assert!(out.join("t1.onnx").is_file());
    let mut after: Vec<String> = std::fs::read_dir(&study)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(before, after, "nothing was added to the study folder");
    set_mode(&study, 0o755);
}

#[test]
fn a_closed_output_pipe_ends_the_program_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let o = search(tmp.path(), &quick_study("trials = 3", ""));
    assert!(o.status.success(), "{}", stderr(&o));
    // A pipe whose reading end is already closed, as after `nas status | head` has exited.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(NAS)
        .args(["status", "study"])
        .current_dir(tmp.path())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(o.status.code(), Some(101), "{err}");
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
}

#[test]
fn an_interrupted_search_stores_its_trials_and_says_how_to_resume() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = write(tmp.path(), "s.toml", &quick_study("trials = 1000000", ""));
        // Interrupt once the search is under way.
        let running = nas_until(&["search", cfg.to_str().unwrap()], tmp.path(), |l| {
            l.starts_with("trial ")
        });
        send_signal(&running, &signal.to_string());
        let (status, err) = running.finish();
        assert_eq!(status.code(), Some(code), "{err}");
        assert!(err.contains("interrupted by SIG"), "{err}");
        assert!(
            err.contains(&format!(
                "Resume with: nas search {} --study-dir study",
                cfg.display()
            )),
            "{err}"
        );
        let trials = trials_json(tmp.path(), "study");
        assert!(!trials.is_empty());
        assert!(
            trials
                .iter()
                .all(|t| t["state"] != "running" && t["state"] != "pending"),
            "every trial was finished and stored"
        );
    }
}

#[test]
fn a_panicking_plugin_gives_one_clean_error_without_a_raw_panic_message() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = PathBuf::from(NAS).parent().unwrap().join(format!(
        "{}strategy_test_panic{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p strategy-test-panic` (or `cargo xtask test`)",
        lib.display()
    );
    let text = quick_study("trials = 3", "").replace(
        "plugin = \"random\"",
        &format!("plugin = \"{}\"\npanic_in = \"ask\"", lib.display()),
    );
    let o = search(tmp.path(), &text);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("panicked: test-panic was told to panic in `ask`"),
        "{err}"
    );
    assert!(!err.contains("panicked at"), "a raw panic message: {err}");
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    // A proc-macro library from this build: a real shared library, but no nas plugin.
    let deps = PathBuf::from(NAS).parent().unwrap().join("deps");
    let other = std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("libserde_derive-") && name.ends_with(std::env::consts::DLL_SUFFIX)
        })
        .expect("serde_derive's library in target/*/deps");
    let text = quick_study("trials = 3", "").replace(
        "plugin = \"random\"",
        &format!("plugin = \"{}\"", other.display()),
    );
    let o = search(tmp.path(), &text);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "{} is not a nas plugin (no nas root module)",
            other.display()
        )),
        "{err}"
    );
    assert!(!err.contains("abi_stable"), "{err}");
}

#[test]
fn os_and_sqlite_errors_are_stated_once() {
    let tmp = tempfile::tempdir().unwrap();
    let o = nas(&["search", "missing.toml"], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));
    assert_no_repeats(&stderr(&o));

    // A study folder whose database cannot be opened (a folder in its place).
    std::fs::create_dir_all(tmp.path().join("broken/study.db")).unwrap();
    for command in ["status", "best"] {
        let o = nas(&[command, "broken"], tmp.path());
        assert!(!o.status.success());
        assert!(stderr(&o).contains("study database"), "{}", stderr(&o));
        assert_no_repeats(&stderr(&o));
    }
}

/// No part of an `a: b: c` error line is said twice.
fn assert_no_repeats(err: &str) {
    let parts: Vec<&str> = err.trim().split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "`{p}` repeated in: {err}");
    }
}

#[test]
fn space_errors_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let text = quick_study("trials = 3", "").replace("channels = 8", "channels = 0");
    let o = search(tmp.path(), &text);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("s.toml:9: [space]"), "{err}");
    assert!(err.contains("`channels` must be at least 1"), "{err}");
}

#[test]
fn concurrent_creators_of_one_study_get_the_lock_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "s.toml", &quick_study("trials = 300", ""));
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(NAS)
                .args(["search", cfg.to_str().unwrap()])
                .current_dir(tmp.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(!err.contains("database is locked"), "{err}");
        if !o.status.success() {
            assert!(err.contains("is being run by another process"), "{err}");
        }
    }
}

#[test]
fn evaluate_needs_only_a_space_and_evaluators() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
[space]
kind = "cell"
input = [3, 16, 16]
classes = 10
channels = 8
cells_per_stage = 1

[[evaluator]]
plugin = "cost"
"#;
    let cfg = write(tmp.path(), "e.toml", text);
    let o = nas(
        &[
            "evaluate",
            cfg.to_str().unwrap(),
            "--arch",
            "[0,1,2,3,4,0]",
            "--json",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let scored: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(scored[0]["state"], "complete");
    assert!(scored[0]["metrics"]["params"].as_f64().unwrap() > 0.0);

    // Errors still point at the user's own lines.
    let cfg = write(
        tmp.path(),
        "e.toml",
        &text.replace("channels = 8", "channels = \"8\""),
    );
    let o = nas(
        &["evaluate", cfg.to_str().unwrap(), "--arch", "[0,1,2,3,4,0]"],
        tmp.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("e.toml:6:"), "{}", stderr(&o));
}

#[test]
fn plugins_lists_each_folder_once_and_no_test_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let exe_dir = PathBuf::from(NAS).parent().unwrap().to_path_buf();
    let o = Command::new(NAS)
        .arg("plugins")
        .env("NAS_PLUGIN_PATH", &exe_dir)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let path_line = out.lines().next().unwrap();
    assert_eq!(
        path_line.matches(&exe_dir.display().to_string()).count(),
        1,
        "{out}"
    );
    assert!(out.contains("random"), "{out}");
    assert!(
        !out.contains("test-panic") && !out.contains("test_"),
        "{out}"
    );
}
