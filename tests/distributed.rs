//! Distributed search against a real PostgreSQL, as separate processes: a coordinator
//! (`nas search --storage URL`) and `nas worker`s, with the faults they must live through:
//! workers killed or frozen mid-trial, the coordinator killed, the database restarted,
//! workers with a missing or different evaluator plugin, workers racing for trials, two
//! studies in one database, an unreachable server, and passwords that must not be shown.
//!
//! Each test makes its own database on the test server (`NAS_TEST_POSTGRES`, else
//! 127.0.0.1:5432; see `nas-testdb`); the restart test starts a throwaway server of its own.
//! Leases are short (2 s) so lost workers are noticed quickly.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{NAS, stderr, stdout};
use nas_testdb::{TestDb, TestServer};
use postgres::{Client, NoTls};
use tempfile::TempDir;

/// How long a study may take in these tests before it counts as stuck.
const STUDY_TIMEOUT: Duration = Duration::from_secs(50);

/// How long the trials of a test study take.
#[derive(Clone, Copy)]
enum Trials {
    /// Milliseconds (a tiny network timed 3 times).
    Quick,
    /// A few hundred milliseconds (a bigger network timed 250 times).
    Short,
    /// A second or more (the bigger network timed 2500 times): long enough to kill or
    /// freeze a worker while it evaluates one.
    Slow,
}

/// A study config: the NB201 cell space and the `cost` evaluator, whose latency runs make a
/// trial as long as `speed` says.
fn study_toml(name: &str, trials: u64, speed: Trials, runtime: &str) -> String {
    let (input, channels, runs) = match speed {
        Trials::Quick => ("[3, 16, 16]", 8, 3),
        Trials::Short => ("[3, 32, 32]", 16, 250),
        Trials::Slow => ("[3, 32, 32]", 16, 2500),
    };
    format!(
        r#"
[study]
name = "{name}"
seed = 7
directory = "study-{name}"

[budget]
trials = {trials}

[space]
kind = "cell"
input = {input}
classes = 10
channels = {channels}
cells_per_stage = 1

[[strategy]]
plugin = "random"
until = {{ trials = 6 }}

[[strategy]]
plugin = "evolution"
population = 6
sample = 3

[[evaluator]]
plugin = "cost"
latency = {{ batch = 4, runs = {runs}, warmup = 1 }}

[objective]
minimize = "latency_ms"

[runtime]
lease = "2s"
{runtime}
"#
    )
}

/// `host:pid`, the name a `nas worker` process writes on the trials it claims.
fn worker_name(pid: u32) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{pid}")
}

/// A `nas` process run in the background, its output in files; killed when dropped (and its
/// output shown when a test fails).
struct Proc {
    what: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    fn spawn(program: &Path, what: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Proc {
        let out = cwd.join(format!("{what}.out"));
        let err = cwd.join(format!("{what}.err"));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            what: what.into(),
            child,
            out,
            err,
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it writes on trials (as a `nas worker`).
    fn worker(&self) -> String {
        worker_name(self.pid())
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn output(&self) -> String {
        format!(
            "--- {} stdout:\n{}--- {} stderr:\n{}",
            self.what,
            self.stdout(),
            self.what,
            self.stderr()
        )
    }

    fn running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status.is_none()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} ({}) failed", self.pid(), self.what);
    }

    /// `kill -9`, and reaps it.
    fn kill9(&mut self) {
        self.signal("KILL");
        self.status = Some(self.child.wait().unwrap());
    }

    /// Waits for it to exit; panics (with its output) after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        while self.running() {
            assert!(
                started.elapsed() < timeout,
                "{} still runs after {timeout:?}\n{}",
                self.what,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.status.unwrap()
    }

    /// Waits for it to exit and asserts it succeeded.
    fn succeeds(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "{} failed ({status})\n{}",
            self.what,
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// A trial row as the workers and the coordinator left it.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: i64,
    state: String,
    worker: Option<String>,
    attempts: i32,
    requeues: i32,
    told: bool,
    error: Option<String>,
    metrics: String,
    finished_at: Option<f64>,
    details: Option<String>,
}

/// A test's temporary folder and database.
struct Setup {
    tmp: TempDir,
    url: String,
    _db: Option<TestDb>,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let db = TestDb::create(tag);
        Setup {
            tmp: tempfile::tempdir().unwrap(),
            url: db.url.clone(),
            _db: Some(db),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn config(&self, name: &str, text: &str) -> String {
        let path = self.dir().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `nas search CONFIG --storage URL` in the background, once it has queued trials of
    /// `study` (a worker started before the study exists stops at once).
    fn search(&self, what: &str, config: &str, study: &str) -> Proc {
        self.search_with(what, config, study, &[])
    }

    fn search_with(&self, what: &str, config: &str, study: &str, env: &[(&str, &str)]) -> Proc {
        let mut search = Proc::spawn(
            Path::new(NAS),
            what,
            &["search", config, "--storage", &self.url],
            self.dir(),
            env,
        );
        wait_until(&format!("{what} to queue trials"), STUDY_TIMEOUT, || {
            assert!(search.running(), "{what} stopped\n{}", search.output());
            !self.rows(study).is_empty()
        });
        search
    }

    /// `nas worker --storage URL --study STUDY` in the background.
    fn worker(&self, what: &str, study: &str) -> Proc {
        self.worker_with(Path::new(NAS), what, study, &[])
    }

    fn worker_with(&self, program: &Path, what: &str, study: &str, env: &[(&str, &str)]) -> Proc {
        Proc::spawn(
            program,
            what,
            &["worker", "--storage", &self.url, "--study", study],
            self.dir(),
            env,
        )
    }

    fn nas(&self, args: &[&str]) -> Output {
        Command::new(NAS)
            .args(args)
            .current_dir(self.dir())
            .output()
            .expect("nas runs")
    }

    /// `nas status --storage URL --study STUDY --workers --json`.
    fn status(&self, study: &str) -> serde_json::Value {
        let o = self.nas(&[
            "status",
            "--storage",
            &self.url,
            "--study",
            study,
            "--workers",
            "--json",
        ]);
        assert!(o.status.success(), "status failed: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).expect("status --workers --json is JSON")
    }

    fn try_rows(&self, study: &str) -> Result<Vec<Row>, postgres::Error> {
        let mut client = Client::connect(&self.url, NoTls)?;
        let rows = client.query(
            "SELECT t.id, t.state, t.worker, t.attempts, t.requeues, t.told, t.error,
                    t.metrics, t.finished_at, t.details::text
             FROM nas_trials t JOIN nas_studies s ON s.id = t.study_id
             WHERE s.name = $1 ORDER BY t.id",
            &[&study],
        )?;
        Ok(rows
            .iter()
            .map(|r| Row {
                id: r.get(0),
                state: r.get(1),
                worker: r.get(2),
                attempts: r.get(3),
                requeues: r.get(4),
                told: r.get(5),
                error: r.get(6),
                metrics: r.get(7),
                finished_at: r.get(8),
                details: r.get(9),
            })
            .collect())
    }

    /// Every trial of `study`, straight from the database (none before the study exists).
    fn rows(&self, study: &str) -> Vec<Row> {
        self.try_rows(study).unwrap_or_default()
    }

    /// The database's clock, in unix seconds (what `finished_at` is measured on).
    fn clock(&self) -> f64 {
        let mut client = Client::connect(&self.url, NoTls).unwrap();
        client
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .unwrap()
            .get(0)
    }
}

/// Polls `done` until it holds; panics naming `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `worker` is evaluating a trial of `study` and returns its id.
fn running_trial_of(setup: &Setup, study: &str, worker: &Proc) -> i64 {
    let name = worker.worker();
    let mut found = None;
    wait_until(
        &format!("{} to evaluate a trial", worker.what),
        STUDY_TIMEOUT,
        || {
            found = setup
                .rows(study)
                .into_iter()
                .find(|r| r.state == "running" && r.worker.as_deref() == Some(name.as_str()))
                .map(|r| r.id);
            found.is_some()
        },
    );
    found.unwrap()
}

/// The study holds exactly `budget` trials, numbered 1..=budget, each told to the
/// strategies; returns them.
fn assert_exact_budget(setup: &Setup, study: &str, budget: i64) -> Vec<Row> {
    let rows = setup.rows(study);
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        (1..=budget).collect::<Vec<_>>(),
        "exactly the budget of trials, each once: {rows:#?}"
    );
    for r in &rows {
        assert!(told(r), "trial {} was never told: {r:?}", r.id);
        assert!(
            r.state == "complete" || r.state == "failed",
            "trial {} is unfinished: {r:?}",
            r.id
        );
    }
    rows
}

/// Whether the coordinator told the strategies the trial's outcome (the `told` column is
/// also true for a trial still queued or running: it only matters once there is an outcome).
fn told(r: &Row) -> bool {
    r.told && r.state != "pending" && r.state != "running"
}

fn complete_count(rows: &[Row]) -> usize {
    rows.iter().filter(|r| r.state == "complete").count()
}

/// The worker objects of `status --workers --json`, by name.
fn status_worker<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
}

#[test]
fn a_worker_killed_mid_trial_has_its_trial_requeued_and_finished_by_another() {
    let setup = Setup::new("kill_worker");
    let budget = 5;
    let config = setup.config("s", &study_toml("kw", budget, Trials::Slow, "workers = 0"));
    let mut search = setup.search("search", &config, "kw");
    let mut victim = setup.worker("victim", "kw");
    let mut survivor = setup.worker("survivor", "kw");

    let trial = running_trial_of(&setup, "kw", &victim);
    victim.kill9();
    let row = setup
        .rows("kw")
        .into_iter()
        .find(|r| r.id == trial)
        .unwrap();
    assert_eq!(
        (row.state.as_str(), row.worker.clone()),
        ("running", Some(victim.worker())),
        "the victim was killed while it held trial {trial}"
    );

    search.succeeds(STUDY_TIMEOUT);
    survivor.succeeds(Duration::from_secs(10));

    let rows = assert_exact_budget(&setup, "kw", budget as i64);
    assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
    let killed = rows.iter().find(|r| r.id == trial).unwrap();
    assert_eq!(killed.worker, Some(survivor.worker()), "{killed:?}");
    assert!(killed.requeues >= 1 && killed.attempts >= 2, "{killed:?}");
    for r in rows.iter().filter(|r| r.id != trial) {
        assert_eq!(
            (r.attempts, r.requeues),
            (1, 0),
            "only the killed trial was claimed twice: {r:?}"
        );
    }

    let status = setup.status("kw");
    assert_eq!(status["counts"]["complete"], budget, "{status:#}");
    let requeued = status["requeued"].as_array().unwrap();
    let entry = requeued
        .iter()
        .find(|t| t["id"] == trial)
        .unwrap_or_else(|| panic!("trial {trial} is not listed as requeued: {status:#}"));
    assert!(entry["requeues"].as_u64().unwrap() >= 1, "{status:#}");
    assert_eq!(entry["state"], "complete", "{status:#}");
    let victim_entry = status_worker(&status, &victim.worker()).unwrap();
    assert_eq!(
        (&victim_entry["live"], &victim_entry["exited"]),
        (&false.into(), &false.into()),
        "the killed worker went silent without saying it exited: {status:#}"
    );
    let victim_done = victim_entry["trials_done"].as_u64().unwrap();
    let survivor_entry = status_worker(&status, &survivor.worker()).unwrap();
    assert_eq!(survivor_entry["exited"], true, "{status:#}");
    // Workers count what they reported; the victim's last heartbeat may predate its last
    // report, so its own count is at most what it reported.
    let by_victim = rows
        .iter()
        .filter(|r| r.worker.as_deref() == Some(victim.worker().as_str()))
        .count() as u64;
    let by_survivor = rows
        .iter()
        .filter(|r| r.worker.as_deref() == Some(survivor.worker().as_str()))
        .count() as u64;
    assert_eq!(by_victim + by_survivor, budget, "{rows:#?}");
    assert!(victim_done <= by_victim, "{status:#}");
    assert_eq!(survivor_entry["trials_done"], by_survivor, "{status:#}");
}

#[test]
fn a_trial_whose_worker_dies_more_than_max_retries_times_fails_naming_the_lease() {
    let setup = Setup::new("max_retries");
    let budget = 4;
    let config = setup.config(
        "s",
        &study_toml("mr", budget, Trials::Slow, "workers = 0\nmax_retries = 0"),
    );
    let mut search = setup.search("search", &config, "mr");
    let mut victim = setup.worker("victim", "mr");
    let trial = running_trial_of(&setup, "mr", &victim);
    victim.kill9();
    let mut survivor = setup.worker("survivor", "mr");

    search.succeeds(STUDY_TIMEOUT);
    survivor.succeeds(Duration::from_secs(10));

    let rows = assert_exact_budget(&setup, "mr", budget as i64);
    let failed = rows.iter().find(|r| r.id == trial).unwrap();
    assert_eq!(failed.state, "failed", "{failed:?}");
    assert_eq!(
        (failed.attempts, failed.requeues),
        (1, 1),
        "claimed once (1 + max_retries 0), then its lease expired: {failed:?}"
    );
    let error = failed.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("lease expired") && error.contains(&victim.worker()),
        "the error names the lease and the lost worker: {error}"
    );
    assert_eq!(
        complete_count(&rows),
        budget as usize - 1,
        "every other trial completes: {rows:#?}"
    );
    let said = format!("{}{}", search.stdout(), search.stderr());
    assert!(
        said.contains(&format!("trial {trial} failed")) && said.contains("lease"),
        "the coordinator says the trial failed for its lease:\n{said}"
    );
    let status = setup.status("mr");
    assert_eq!(status["counts"]["failed"], 1, "{status:#}");
    let entry = status["requeued"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == trial)
        .unwrap_or_else(|| panic!("trial {trial} is not listed as requeued: {status:#}"));
    assert_eq!(entry["state"], "failed", "{status:#}");
    assert!(
        entry["error"].as_str().unwrap().contains("lease expired"),
        "{status:#}"
    );
}

#[test]
fn a_killed_coordinator_loses_nothing_the_workers_report_meanwhile() {
    let setup = Setup::new("kill_coordinator");
    let budget = 10;
    // Trials of a few hundred milliseconds: the workers are still busy when the
    // coordinator is killed, and done with its queue soon after.
    let config = setup.config("s", &study_toml("kc", budget, Trials::Short, "workers = 0"));
    let mut search = setup.search("search", &config, "kc");
    let mut workers = [setup.worker("w1", "kc"), setup.worker("w2", "kc")];

    wait_until("two told trials", STUDY_TIMEOUT, || {
        setup.rows("kc").iter().filter(|r| told(r)).count() >= 2
    });
    search.kill9();
    let killed_at = setup.clock();
    let at_kill = setup.rows("kc");
    let told_at_kill = at_kill.iter().filter(|r| told(r)).count() as i64;
    let queued_at_kill: Vec<i64> = at_kill.iter().filter(|r| !told(r)).map(|r| r.id).collect();
    assert!(
        told_at_kill < budget as i64,
        "the coordinator was killed before the end: {at_kill:#?}"
    );

    // Without a coordinator, the workers finish the queue; their results wait untold.
    wait_until("the workers to finish the queue", STUDY_TIMEOUT, || {
        let rows = setup.rows("kc");
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r.state != "pending" && r.state != "running")
    });
    for w in &mut workers {
        assert!(w.running(), "{} keeps serving the study", w.what);
    }
    let meanwhile: Vec<Row> = setup.rows("kc").into_iter().filter(|r| !r.told).collect();
    assert!(
        !queued_at_kill.is_empty(),
        "the coordinator keeps trials queued: {at_kill:#?}"
    );
    assert!(
        !meanwhile.is_empty()
            && meanwhile
                .iter()
                .any(|r| r.finished_at.is_some_and(|f| f >= killed_at)),
        "the workers reported trials while no coordinator ran (queued at the kill: \
         {queued_at_kill:?}): {meanwhile:#?}"
    );

    let mut resumed = setup.search("resumed", &config, "kc");
    resumed.succeeds(STUDY_TIMEOUT);
    for w in &mut workers {
        w.succeeds(Duration::from_secs(10));
    }
    let rows = assert_exact_budget(&setup, "kc", budget as i64);
    assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
    for kept in &meanwhile {
        let now = rows.iter().find(|r| r.id == kept.id).unwrap();
        assert_eq!(
            (&now.worker, &now.metrics, now.finished_at, now.attempts),
            (&kept.worker, &kept.metrics, kept.finished_at, kept.attempts),
            "the result reported without a coordinator is kept, not evaluated again"
        );
    }
    let out = resumed.output();
    assert!(
        out.contains(&format!(
            "{} trials evaluated in this run",
            budget as i64 - told_at_kill
        )),
        "the resumed run tells only the trials not told before (told at the kill: \
         {told_at_kill}):\n{}",
        resumed.output()
    );
    assert!(
        resumed
            .output()
            .contains("trials queued by an earlier run are kept"),
        "{}",
        resumed.output()
    );
}

#[test]
fn the_study_survives_a_database_restart() {
    let server = TestServer::start().unwrap_or_else(|e| {
        panic!("this test restarts a PostgreSQL server of its own and cannot start one: {e:#}")
    });
    let setup = Setup {
        tmp: tempfile::tempdir().unwrap(),
        url: server.url().to_string(),
        _db: None,
    };
    let budget = 14;
    let config = setup.config("s", &study_toml("dr", budget, Trials::Short, "workers = 0"));
    let mut search = setup.search("search", &config, "dr");
    let mut workers = [setup.worker("w1", "dr"), setup.worker("w2", "dr")];

    wait_until("three told trials", STUDY_TIMEOUT, || {
        setup.rows("dr").iter().filter(|r| told(r)).count() >= 3
    });
    server.stop().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server.restart().unwrap();
    let after = setup.rows("dr");
    assert!(
        after.iter().filter(|r| told(r)).count() < budget as usize,
        "the database went away in the middle of the study: {after:#?}"
    );

    search.succeeds(STUDY_TIMEOUT);
    for w in &mut workers {
        w.succeeds(Duration::from_secs(15));
    }
    let rows = assert_exact_budget(&setup, "dr", budget as i64);
    assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
    let logs: String = std::iter::once(&search)
        .chain(workers.iter())
        .map(Proc::stderr)
        .collect();
    assert!(
        logs.contains("lost the connection to the study database"),
        "the processes noticed the restart:\n{logs}"
    );
}

#[test]
fn a_late_result_from_an_expired_lease_is_discarded() {
    let setup = Setup::new("late_result");
    let budget = 4;
    let config = setup.config("s", &study_toml("lr", budget, Trials::Slow, "workers = 0"));
    let mut search = setup.search("search", &config, "lr");
    let mut frozen = setup.worker("frozen", "lr");
    let trial = running_trial_of(&setup, "lr", &frozen);
    // Its heartbeat thread stops too: the lease runs out.
    frozen.signal("STOP");
    let mut other = setup.worker("other", "lr");
    wait_until(
        &format!("trial {trial} done by the other worker"),
        STUDY_TIMEOUT,
        || {
            setup.rows("lr").iter().any(|r| {
                r.id == trial
                    && r.state == "complete"
                    && r.worker.as_deref() == Some(other.worker().as_str())
            })
        },
    );
    let kept = setup
        .rows("lr")
        .into_iter()
        .find(|r| r.id == trial)
        .unwrap();
    frozen.signal("CONT");

    search.succeeds(STUDY_TIMEOUT);
    frozen.succeeds(Duration::from_secs(15));
    other.succeeds(Duration::from_secs(15));

    let rows = assert_exact_budget(&setup, "lr", budget as i64);
    assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
    let now = rows.iter().find(|r| r.id == trial).unwrap();
    assert_eq!(
        (&now.worker, &now.metrics, now.finished_at),
        (&kept.worker, &kept.metrics, kept.finished_at),
        "the first reported outcome is kept"
    );
    assert_eq!((now.attempts, now.requeues), (2, 1), "{now:?}");
    let log = frozen.stderr();
    assert!(
        log.contains("this result is discarded") && log.contains("1 results discarded"),
        "the late worker says its result was discarded:\n{log}"
    );
}

/// The ONNX Runtime library the build's `nas` uses: ORT_DYLIB_PATH, else the one
/// `cargo xtask ort` put under `target/ort/`.
fn ort_library() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let ort = Path::new(NAS).ancestors().nth(2).unwrap().join("ort");
    std::fs::read_dir(&ort)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|dir| std::fs::read_dir(dir.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no ONNX Runtime library under {} and ORT_DYLIB_PATH is unset: run `cargo xtask ort`",
                ort.display()
            )
        })
}

#[test]
fn workers_without_the_studys_evaluator_build_refuse_and_claim_nothing() {
    let setup = Setup::new("plugins");
    let budget = 6;
    let config = setup.config("s", &study_toml("pl", budget, Trials::Quick, "workers = 0"));
    let mut search = setup.search("search", &config, "pl");

    // Copies of `nas` away from the build's plugins, each with a plugin folder of its own.
    let builds = Path::new(NAS).parent().unwrap();
    let lay_out = |name: &str, plugin: &str, extra: &[u8]| -> (PathBuf, PathBuf) {
        let bin = setup.dir().join(name).join("bin");
        let plugins = setup.dir().join(name).join("plugins");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(NAS, bin.join("nas")).unwrap();
        let mut bytes = std::fs::read(builds.join(plugin)).unwrap();
        bytes.extend_from_slice(extra);
        std::fs::write(plugins.join(plugin), bytes).unwrap();
        (bin.join("nas"), plugins)
    };
    let (missing_nas, missing_dir) = lay_out("missing", "libstrategy_random.so", b"");
    let (other_nas, other_dir) = lay_out("other", "libevaluator_cost.so", b"\0");
    // The copies find ONNX Runtime where the build's `nas` does (only the plugins differ).
    let ort = ort_library();
    let mut missing = setup.worker_with(
        &missing_nas,
        "missing",
        "pl",
        &[
            ("NAS_PLUGIN_PATH", missing_dir.to_str().unwrap()),
            ("ORT_DYLIB_PATH", ort.to_str().unwrap()),
        ],
    );
    let mut other = setup.worker_with(
        &other_nas,
        "other",
        "pl",
        &[
            ("NAS_PLUGIN_PATH", other_dir.to_str().unwrap()),
            ("ORT_DYLIB_PATH", ort.to_str().unwrap()),
        ],
    );
    for (worker, says) in [
        (&mut missing, "no evaluator plugin named `cost`"),
        (&mut other, "evaluator plugin `cost` here is another build"),
    ] {
        let status = worker.wait(Duration::from_secs(20));
        assert!(!status.success(), "{}", worker.output());
        let err = worker.stderr();
        assert!(err.contains(says), "{}: {err}", worker.what);
        assert!(
            !err.contains("serving"),
            "{} never started serving: {err}",
            worker.what
        );
    }
    assert!(
        other.stderr().contains("no trial was claimed"),
        "{}",
        other.stderr()
    );

    let names = [missing.worker(), other.worker()];
    let rows = setup.rows("pl");
    assert!(
        rows.iter()
            .all(|r| r.state == "pending" && r.attempts == 0 && r.worker.is_none()),
        "no trial was claimed: {rows:#?}"
    );
    let status = setup.status("pl");
    for name in &names {
        assert!(
            status_worker(&status, name).is_none(),
            "{name} is not a worker of the study: {status:#}"
        );
    }

    // A worker with the study's build finishes it.
    let mut good = setup.worker("good", "pl");
    search.succeeds(STUDY_TIMEOUT);
    good.succeeds(Duration::from_secs(10));
    let rows = assert_exact_budget(&setup, "pl", budget as i64);
    assert!(
        rows.iter()
            .all(|r| r.worker.as_deref() == Some(good.worker().as_str())),
        "{rows:#?}"
    );
}

#[test]
fn racing_workers_spend_the_budget_exactly_once() {
    let setup = Setup::new("race");
    let budget = 40;
    let config = setup.config(
        "s",
        &study_toml("race", budget, Trials::Quick, "workers = 0"),
    );
    let mut search = setup.search("search", &config, "race");
    let mut workers: Vec<Proc> = (1..=4)
        .map(|i| setup.worker(&format!("w{i}"), "race"))
        .collect();
    search.succeeds(STUDY_TIMEOUT);
    for w in &mut workers {
        w.succeeds(Duration::from_secs(10));
    }
    let rows = assert_exact_budget(&setup, "race", budget as i64);
    assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
    for r in &rows {
        assert_eq!(
            (r.attempts, r.requeues),
            (1, 0),
            "each trial claimed once: {r:?}"
        );
    }
    let names: BTreeSet<String> = workers.iter().map(Proc::worker).collect();
    assert!(
        rows.iter()
            .all(|r| names.contains(r.worker.as_deref().unwrap_or_default())),
        "{rows:#?}"
    );
    // What the workers say they evaluated adds up to the budget, in their logs and in the
    // database.
    let status = setup.status("race");
    assert_eq!(status["requeued"], serde_json::json!([]), "{status:#}");
    let mut logged = 0;
    let mut counted = 0;
    for w in &workers {
        let err = w.stderr();
        let line = err
            .lines()
            .find(|l| l.contains("trials evaluated"))
            .unwrap_or_else(|| panic!("{}", w.output()));
        let n: u64 = line
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        logged += n;
        let entry = status_worker(&status, &w.worker()).unwrap();
        assert_eq!(entry["trials_done"], n, "{status:#}");
        counted += n;
    }
    assert_eq!(logged, budget);
    assert_eq!(counted, budget);
    assert!(
        search
            .output()
            .contains(&format!("{budget} trials evaluated in this run")),
        "{}",
        search.output()
    );
}

#[test]
fn a_cascade_ranks_among_the_trials_every_worker_finished() {
    let setup = Setup::new("cascade");
    // Trials of a few hundred milliseconds: with quick ones, one worker was seen to finish all
    // 16 before the other had started, leaving nothing to share.
    let text = study_toml("cascade", 16, Trials::Short, "workers = 0").replace(
        "[[evaluator]]\nplugin = \"cost\"",
        "[[evaluator]]\nplugin = \"zero-cost\"\nproxies = [\"params\"]\nkeep_top = 0.5\n\
         rank_by = \"params\"\nwarmup = 2\n\n[[evaluator]]\nplugin = \"cost\"",
    );
    assert!(text.contains("zero-cost"));
    let config = setup.config("s", &text);
    let mut search = setup.search("search", &config, "cascade");
    let mut workers: Vec<Proc> = (1..=2)
        .map(|i| setup.worker(&format!("w{i}"), "cascade"))
        .collect();
    search.succeeds(STUDY_TIMEOUT);
    for w in &mut workers {
        w.succeeds(Duration::from_secs(10));
    }
    let rows = setup.rows("cascade");
    assert_eq!(rows.len(), 16, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| told(r) && (r.state == "complete" || r.state == "pruned")),
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| r.state == "pruned"), "{rows:#?}");
    // Each worker's cascade counts the trials the other finished too (read from the
    // database before each evaluation), not only its own.
    let mut beyond_own = 0;
    for r in &rows {
        let details: serde_json::Value =
            serde_json::from_str(r.details.as_deref().unwrap_or("null")).unwrap();
        let seen = details["zero-cost"]["cascade"]["seen"]
            .as_u64()
            .unwrap_or_else(|| panic!("{r:?}"));
        let own_before = rows
            .iter()
            .filter(|o| o.worker == r.worker && o.finished_at < r.finished_at)
            .count() as u64;
        if seen > own_before + 1 {
            beyond_own += 1;
        }
    }
    // How many depends on how the two workers interleave (one was seen to take most of the
    // trials); a cascade that reads only its own trials gives exactly 0.
    assert!(
        beyond_own >= 1,
        "{beyond_own} trials ranked among others' trials: {rows:#?}"
    );
}

/// `url` with `password` set (the test server's own password, if it has one, stays).
fn with_password(url: &str, password: &str) -> (String, String) {
    let scheme = url.find("://").unwrap() + 3;
    let at = url.rfind('@').expect("the test server URL names a user");
    let userinfo = &url[scheme..at];
    match userinfo.split_once(':') {
        Some((_, p)) if !p.is_empty() => (url.to_string(), p.to_string()),
        _ => (
            format!("{}{userinfo}:{password}{}", &url[..scheme], &url[at..]),
            password.to_string(),
        ),
    }
}

#[test]
fn database_passwords_are_never_shown_or_stored() {
    let mut setup = Setup::new("credentials");
    let (url, secret) = with_password(&setup.url, "SeCrEt");
    setup.url = url;
    let text = study_toml("cr", 6, Trials::Quick, "workers = 0").replace(
        "[runtime]",
        &format!("[storage]\nurl = \"{}\"\n\n[runtime]", setup.url),
    );
    let config = setup.config("s", &text);
    let debug = [("NAS_LOG", "debug")];
    let run = |args: &[&str]| -> Output {
        let o = Command::new(NAS)
            .args(args)
            .current_dir(setup.dir())
            .envs(debug)
            .output()
            .expect("nas runs");
        assert!(o.status.success(), "nas {args:?}: {}", stderr(&o));
        o
    };
    let mut search = setup.search_with("search", &config, "cr", &debug);
    let mut worker = setup.worker_with(Path::new(NAS), "worker", "cr", &debug);
    search.succeeds(STUDY_TIMEOUT);
    worker.succeeds(Duration::from_secs(10));
    assert_exact_budget(&setup, "cr", 6);

    let mut shown = vec![
        ("search".to_string(), search.output()),
        ("worker".to_string(), worker.output()),
    ];
    let db = ["--storage", setup.url.as_str(), "--study", "cr"];
    let report = setup.dir().join("report");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", "--workers"],
        vec!["status", "--workers", "--json"],
        vec!["status", "--config"],
        vec!["best"],
        vec!["best", "--json"],
        vec!["report", "--out", report.to_str().unwrap()],
    ];
    for args in commands {
        let mut full = args.clone();
        full.extend(db);
        let o = run(&full);
        shown.push((
            format!("nas {}", args.join(" ")),
            format!("{}{}", stdout(&o), stderr(&o)),
        ));
    }
    // `--config` shows the stored config: the study, not the database's password.
    let stored = &shown
        .iter()
        .find(|(c, _)| c.ends_with("--config"))
        .unwrap()
        .1;
    assert!(stored.contains("[study]"), "{stored}");
    for entry in std::fs::read_dir(&report).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            shown.push((path.display().to_string(), text));
        }
    }
    // Debug logs say where the study is: the password is taken out there too.
    assert!(
        shown[0].1.contains("127.0.0.1"),
        "the search names its database: {}",
        shown[0].1
    );
    for (what, text) in &shown {
        assert!(
            !text.contains(&secret),
            "{what} shows the database password:\n{text}"
        );
    }
    // Nor do errors that name the database.
    for args in [
        vec![
            "status",
            "--storage",
            setup.url.as_str(),
            "--study",
            "nosuch",
        ],
        // A worker waits for its study to appear, here for a second.
        vec![
            "worker",
            "--storage",
            setup.url.as_str(),
            "--study",
            "nosuch",
            "--idle-exit",
            "1s",
        ],
        vec!["best", "--storage", setup.url.as_str(), "--study", "nosuch"],
    ] {
        let o = Command::new(NAS)
            .args(&args)
            .current_dir(setup.dir())
            .envs(debug)
            .output()
            .expect("nas runs");
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            !o.status.success() && text.contains("nosuch"),
            "nas {args:?}: {text}"
        );
        assert!(
            !text.contains(&secret),
            "nas {args:?} shows the password:\n{text}"
        );
    }
    // Nor does the database keep it anywhere.
    let mut client = Client::connect(&setup.url, NoTls).unwrap();
    let stored: i64 = client
        .query_one(
            "SELECT count(*) FROM nas_meta WHERE strpos(value, $1) > 0",
            &[&secret],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "the study's meta holds the password");
}

#[test]
fn an_unreachable_database_fails_quickly_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "postgresql://postgres@127.0.0.1:1/x",
        "postgresql://postgres:SeCrEt@127.0.0.1:1/x",
    ] {
        for args in [
            vec!["status", "--storage", url, "--study", "s"],
            vec!["worker", "--storage", url, "--study", "s"],
        ] {
            let started = Instant::now();
            let o = common::nas(&args, tmp.path());
            let took = started.elapsed();
            assert!(!o.status.success(), "nas {args:?}: {}", stdout(&o));
            assert!(took < Duration::from_secs(15), "nas {args:?} took {took:?}");
            let err = stderr(&o);
            assert!(err.contains("127.0.0.1:1"), "nas {args:?}: {err}");
            assert!(
                err.contains("cannot reach PostgreSQL"),
                "nas {args:?}: {err}"
            );
            assert!(
                !err.contains("SeCrEt"),
                "nas {args:?} shows the password: {err}"
            );
        }
    }
}

#[test]
fn two_studies_share_a_database_with_a_coordinator_each() {
    let setup = Setup::new("two_studies");
    let a = setup.config("a", &study_toml("alpha", 9, Trials::Short, "workers = 1"));
    let b = setup.config("b", &study_toml("beta", 13, Trials::Short, "workers = 2"));
    let search = |what: &str, config: &str| {
        Proc::spawn(
            Path::new(NAS),
            what,
            &["search", config, "--storage", &setup.url],
            setup.dir(),
            &[],
        )
    };
    let mut first = search("alpha", &a);
    let mut second = search("beta", &b);
    first.succeeds(STUDY_TIMEOUT);
    second.succeeds(STUDY_TIMEOUT);
    // They ran at once: each finished a trial while the other was still going.
    let span = |study: &str| {
        let done: Vec<f64> = setup
            .rows(study)
            .iter()
            .filter_map(|r| r.finished_at)
            .collect();
        let first = done.iter().cloned().fold(f64::INFINITY, f64::min);
        let last = done.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (first, last)
    };
    let (alpha, beta) = (span("alpha"), span("beta"));
    assert!(
        alpha.0 < beta.1 && beta.0 < alpha.1,
        "the two studies overlapped in time: alpha {alpha:?}, beta {beta:?}"
    );
    for (study, search, budget) in [("alpha", &first, 9), ("beta", &second, 13)] {
        let rows = assert_exact_budget(&setup, study, budget);
        assert_eq!(complete_count(&rows), budget as usize, "{rows:#?}");
        // Each coordinator's own worker threads (`host:pid/N`) evaluated its trials.
        let own = format!("{}/", worker_name(search.pid()));
        assert!(
            rows.iter()
                .all(|r| r.worker.as_deref().is_some_and(|w| w.starts_with(&own))),
            "{study}: {rows:#?}"
        );
        let status = setup.status(study);
        assert_eq!(status["counts"]["complete"], budget, "{status:#}");
        assert!(
            search
                .output()
                .contains(&format!("{budget} trials evaluated in this run")),
            "{}",
            search.output()
        );
    }
}
