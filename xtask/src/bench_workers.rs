//! `cargo xtask bench-workers`: distributed search on both storage backends, side by side.
//!
//! - Throughput: a study whose `tabular` evaluator sleeps `delay_ms` (50 ms) per trial, with
//!   1, 2, 4 and 8 workers: PostgreSQL runs `nas search` with `workers = 0` and N `nas worker`
//!   processes; SQLite (no remote workers) runs `[runtime] workers = N` threads. Trials per
//!   second are counted in the window the workers were busy (first claim to last finish, on
//!   the store's clock) and over the whole `nas search` process (start-up included); ideal is
//!   N / delay. A run without the delay (4 workers) shows what the coordinator alone can do.
//! - Claim latency: a study filled by bulk SQL to 1,000 and 100,000 trials, a few hundred
//!   pending ones queued, then the real `Storage::claim_next` timed (the nas-core example
//!   `storage_bench`, so xtask itself does not build the engine).
//! - `nas status --json` and `nas status --workers --json` on the 100,000-trial study.
//!
//! Writes results/bench-workers/report.md and results.csv; the databases it creates are
//! dropped afterwards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, provision_cpu, run};

const STUDY: &str = "bench-workers";
const TABLE: &str = "configs/tables/nb201-digits.json.gz";
/// Pending trials queued for the claim timing, and claims timed.
const PENDING: u64 = 300;
const CLAIMS: u64 = 200;
/// Timed runs of each `nas status` command (the median is reported).
const STATUS_RUNS: usize = 3;

pub struct Options {
    /// Trials of a throughput run at least ...
    pub trials: u64,
    /// ... and at least this many per worker, so the start (the coordinator counts the
    /// workers that joined once a second to size its queue) weighs the same at any N.
    pub trials_per_worker: u64,
    pub delay_ms: u64,
    pub workers: Vec<usize>,
    pub sizes: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// One throughput run.
#[derive(Clone, Debug)]
struct Throughput {
    backend: Backend,
    workers: usize,
    delay_ms: u64,
    trials: u64,
    /// First claim to last finish (store clock).
    busy_s: f64,
    /// The `nas search` process, start to exit.
    whole_s: f64,
    /// Trials/s between the 10th and 90th percentile of the finish times (workers' start-up
    /// and the last stragglers left out).
    steady: Option<f64>,
}

impl Options {
    fn trials_for(&self, workers: usize) -> u64 {
        self.trials.max(self.trials_per_worker * workers as u64)
    }
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.trials as f64 / self.busy_s.max(1e-9)
    }
    fn whole_rate(&self) -> f64 {
        self.trials as f64 / self.whole_s.max(1e-9)
    }
}

#[derive(Clone, Debug)]
struct Claims {
    backend: Backend,
    stored: u64,
    median_ms: f64,
    p90_ms: f64,
}

#[derive(Clone, Debug)]
struct StatusTime {
    backend: Backend,
    stored: u64,
    what: &'static str,
    seconds: f64,
}

#[derive(Default)]
struct Results {
    throughput: Vec<Throughput>,
    claims: Vec<Claims>,
    status: Vec<StatusTime>,
    /// /proc/loadavg's 1-minute load at the start and at the end (other work on the machine
    /// shows here; every process of the benchmark shares its CPUs).
    load: (Option<f64>, Option<f64>),
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The study file of a throughput run.
fn study_toml(root: &Path, files: &Path, trials: u64, delay_ms: u64, workers: usize) -> String {
    format!(
        r#"# cargo xtask bench-workers: a cheap evaluator with a fixed delay per trial.
[study]
name = "{STUDY}"
seed = 1
directory = "{files}"

[budget]
trials = {trials}

[space]                      # the space of the shipped nb201-digits table
kind = "cell"
channels = 4
cells_per_stage = 1
input = [1, 8, 8]
classes = 10

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "tabular"
table = "{table}"
delay_ms = {delay_ms}

[objective]
maximize = "val_accuracy"

[runtime]
workers = {workers}
"#,
        files = files.display(),
        table = root.join(TABLE).display(),
    )
}

/// `url` with its database (the path) replaced by `database`, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let end = base[start..].find('/').map_or(base.len(), |i| start + i);
    let mut out = format!("{}/{database}", &base[..end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

struct Bench {
    root: PathBuf,
    nas: PathBuf,
    helper: PathBuf,
    library: PathBuf,
    server: String,
    work: PathBuf,
    databases: Vec<String>,
}

impl Bench {
    /// Runs the storage helper and parses the JSON object it prints.
    fn helper(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = Command::new(&self.helper)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.helper.display()))?;
        if !out.status.success() {
            bail!(
                "storage_bench {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim())
            .with_context(|| format!("storage_bench {} printed `{text}`", args.join(" ")))
    }

    fn nas(&self) -> Command {
        let mut cmd = Command::new(&self.nas);
        cmd.current_dir(&self.root)
            .env("ORT_DYLIB_PATH", &self.library)
            .env_remove("NAS_STORAGE")
            .stdin(Stdio::null());
        cmd
    }

    fn spawn_logged(&self, mut cmd: Command, log: &str) -> Result<Child> {
        let file = std::fs::File::create(self.work.join(log))?;
        cmd.stdout(file.try_clone()?).stderr(file);
        cmd.spawn()
            .with_context(|| format!("cannot start {}", self.nas.display()))
    }

    fn wait_ok(&self, mut child: Child, log: &str) -> Result<()> {
        let status = child.wait()?;
        if !status.success() {
            let text = std::fs::read_to_string(self.work.join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            bail!(
                "a benchmarked process failed ({status}); the end of {}:\n{}",
                self.work.join(log).display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    fn create_db(&mut self, name: &str) -> Result<String> {
        self.helper(&["drop-db", &self.server, name])?;
        self.helper(&["create-db", &self.server, name])?;
        self.databases.push(name.to_string());
        Ok(with_database(&self.server, name))
    }

    fn write_config(
        &self,
        tag: &str,
        trials: u64,
        delay_ms: u64,
        workers: usize,
    ) -> Result<PathBuf> {
        let files = self.work.join(format!("files-{tag}"));
        let path = self.work.join(format!("{tag}.toml"));
        std::fs::write(
            &path,
            study_toml(&self.root, &files, trials, delay_ms, workers),
        )?;
        Ok(path)
    }

    /// A PostgreSQL study: the coordinator with no workers of its own, and `workers`
    /// `nas worker` processes started as soon as the study exists. Returns the run and the
    /// study (URL#NAME).
    fn postgres_run(
        &mut self,
        workers: usize,
        trials: u64,
        delay_ms: u64,
    ) -> Result<(Throughput, String)> {
        let tag = format!("pg-{workers}w-{delay_ms}ms");
        let db = format!(
            "nas_bench_workers_{}_{}",
            std::process::id(),
            tag.replace('-', "_")
        );
        let url = self.create_db(&db)?;
        let config = self.write_config(&tag, trials, delay_ms, 0)?;
        let mut search = self.nas();
        search.arg("search").arg(&config).args(["--storage", &url]);
        let start = Instant::now();
        let coordinator = self.spawn_logged(search, &format!("{tag}-search.log"))?;
        // Workers need the study to exist: wait until `nas status` finds it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .nas()
                .args(["status", "--storage", &url, "--study", STUDY, "--workers"])
                .arg("--json")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if found {
                break;
            }
            if Instant::now() > deadline {
                bail!("the study did not appear in {url} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut children = Vec::new();
        for i in 0..workers {
            let mut w = self.nas();
            w.args(["worker", "--storage", &url, "--study", STUDY])
                .args(["--idle-exit", "60s"]);
            let log = format!("{tag}-worker-{i}.log");
            children.push((self.spawn_logged(w, &log)?, log));
        }
        self.wait_ok(coordinator, &format!("{tag}-search.log"))?;
        let whole_s = start.elapsed().as_secs_f64();
        for (child, log) in children {
            self.wait_ok(child, &log)?;
        }
        let study = format!("{url}#{STUDY}");
        let run = self.throughput(Backend::Postgres, workers, delay_ms, &study, whole_s)?;
        Ok((run, study))
    }

    /// A SQLite study with `workers` evaluation threads in the `nas search` process.
    fn sqlite_run(
        &mut self,
        workers: usize,
        trials: u64,
        delay_ms: u64,
    ) -> Result<(Throughput, String)> {
        let tag = format!("sqlite-{workers}w-{delay_ms}ms");
        let config = self.write_config(&tag, trials, delay_ms, workers)?;
        let dir = self.work.join(format!("study-{tag}"));
        let mut search = self.nas();
        search
            .arg("search")
            .arg(&config)
            .arg("--study-dir")
            .arg(&dir);
        let start = Instant::now();
        let child = self.spawn_logged(search, &format!("{tag}-search.log"))?;
        self.wait_ok(child, &format!("{tag}-search.log"))?;
        let whole_s = start.elapsed().as_secs_f64();
        let study = dir.display().to_string();
        let run = self.throughput(Backend::Sqlite, workers, delay_ms, &study, whole_s)?;
        Ok((run, study))
    }

    fn throughput(
        &self,
        backend: Backend,
        workers: usize,
        delay_ms: u64,
        study: &str,
        whole_s: f64,
    ) -> Result<Throughput> {
        let span = self.helper(&["span", study])?;
        let run = Throughput {
            backend,
            workers,
            delay_ms,
            trials: span["finished"].as_u64().unwrap_or(0),
            busy_s: span["seconds"].as_f64().unwrap_or(0.0),
            whole_s,
            steady: span["steady"]["trials"]
                .as_f64()
                .zip(span["steady"]["seconds"].as_f64())
                .map(|(n, s)| n / s.max(1e-9)),
        };
        eprintln!(
            "  {} {} worker(s), delay {} ms: {} trials, {:.1} trials/s busy, {:.1} trials/s whole ({:.2} s)",
            backend.label(),
            workers,
            delay_ms,
            run.trials,
            run.rate(),
            run.whole_rate(),
            whole_s
        );
        Ok(run)
    }

    /// Median wall time of `nas status` on `study`, with `--workers` or not.
    fn status_time(&self, backend: Backend, study: &str, workers: bool) -> Result<f64> {
        let mut times = Vec::new();
        for _ in 0..STATUS_RUNS {
            let mut cmd = self.nas();
            cmd.arg("status");
            match backend {
                Backend::Postgres => {
                    let (url, name) = study.rsplit_once('#').expect("URL#NAME");
                    cmd.args(["--storage", url, "--study", name]);
                }
                Backend::Sqlite => {
                    cmd.arg(study);
                }
            }
            if workers {
                cmd.arg("--workers");
            }
            cmd.arg("--json");
            let out = self.work.join("status.json");
            cmd.stdout(std::fs::File::create(&out)?)
                .stderr(Stdio::inherit());
            let start = Instant::now();
            let status = cmd.status()?;
            times.push(start.elapsed().as_secs_f64());
            if !status.success() {
                bail!("nas status on {study} failed ({status})");
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}

pub fn bench_workers(root: &Path, target: &Path, opts: &Options) -> Result<()> {
    if opts.trials < 10 {
        bail!("--trials must be at least 10, got {}", opts.trials);
    }
    let server = nas_testdb::TestServer::find_or_start()?;
    let library = provision_cpu(target)?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "nas",
        "-p",
        "evaluator-tabular",
        "-p",
        "strategy-random",
    ]))?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "nas-core",
        "--example",
        "storage_bench",
    ]))?;
    let work = target
        .join("bench-workers")
        .join(format!("run-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let mut bench = Bench {
        root: root.to_path_buf(),
        nas: target.join("release/nas"),
        helper: target.join("release/examples/storage_bench"),
        library,
        server: server.url().to_string(),
        work: work.clone(),
        databases: Vec::new(),
    };
    let result = measure_all(&mut bench, opts);
    // The databases go whatever happened; the files stay when something failed.
    for db in std::mem::take(&mut bench.databases) {
        if let Err(e) = bench.helper(&["drop-db", &bench.server, &db]) {
            eprintln!("cannot drop database {db}: {e:#}");
        }
    }
    let results = result.with_context(|| {
        format!(
            "bench-workers failed; its logs and studies are kept in {}",
            work.display()
        )
    })?;
    let report = report(&results, opts);
    print!("{report}");
    let out = root.join("results/bench-workers");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("report.md"), &report)?;
    std::fs::write(out.join("results.csv"), csv(&results))?;
    eprintln!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("results.csv").display()
    );
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

fn measure_all(bench: &mut Bench, opts: &Options) -> Result<Results> {
    let mut results = Results {
        load: (load_average(), None),
        ..Results::default()
    };
    let largest = *opts.sizes.iter().max().expect("sizes");
    for backend in [Backend::Postgres, Backend::Sqlite] {
        eprintln!("{}: throughput", backend.label());
        let mut studies = Vec::new();
        for &n in &opts.workers {
            let (run, study) = match backend {
                Backend::Postgres => bench.postgres_run(n, opts.trials_for(n), opts.delay_ms)?,
                Backend::Sqlite => bench.sqlite_run(n, opts.trials_for(n), opts.delay_ms)?,
            };
            results.throughput.push(run);
            studies.push(study);
        }
        // What the coordinator alone can do: no delay.
        let ceiling_workers = 4;
        let (run, _) = match backend {
            Backend::Postgres => {
                bench.postgres_run(ceiling_workers, opts.trials_for(ceiling_workers), 0)?
            }
            Backend::Sqlite => {
                bench.sqlite_run(ceiling_workers, opts.trials_for(ceiling_workers), 0)?
            }
        };
        results.throughput.push(run);

        eprintln!("{}: claim latency and status time", backend.label());
        for (i, &size) in opts.sizes.iter().enumerate() {
            // Each size fills a study of its own (one of the throughput runs).
            let study = &studies[i.min(studies.len() - 1)];
            let filled = bench.helper(&["fill", study, &size.to_string()])?;
            eprintln!(
                "  filled to {} trials in {:.1} s",
                filled["stored"],
                filled["insert_seconds"].as_f64().unwrap_or(0.0)
            );
            if size == largest {
                for (what, workers) in [
                    ("nas status --json", false),
                    ("nas status --workers --json", true),
                ] {
                    let seconds = bench.status_time(backend, study, workers)?;
                    eprintln!("  {what} at {size} trials: {seconds:.3} s");
                    results.status.push(StatusTime {
                        backend,
                        stored: filled["stored"].as_u64().unwrap_or(size),
                        what,
                        seconds,
                    });
                }
            }
            let c = bench.helper(&["claims", study, &PENDING.to_string(), &CLAIMS.to_string()])?;
            let claims = Claims {
                backend,
                stored: c["stored"].as_u64().unwrap_or(size),
                median_ms: c["median_ms"].as_f64().unwrap_or(f64::NAN),
                p90_ms: c["p90_ms"].as_f64().unwrap_or(f64::NAN),
            };
            eprintln!(
                "  claim_next at {} stored trials: median {:.3} ms, p90 {:.3} ms",
                claims.stored, claims.median_ms, claims.p90_ms
            );
            results.claims.push(claims);
        }
    }
    results.load.1 = load_average();
    Ok(results)
}

fn find(runs: &[Throughput], backend: Backend, workers: usize, delay: bool) -> Option<&Throughput> {
    runs.iter()
        .find(|r| r.backend == backend && r.workers == workers && (r.delay_ms > 0) == delay)
}

fn ceiling(runs: &[Throughput], backend: Backend) -> Option<f64> {
    runs.iter()
        .find(|r| r.backend == backend && r.delay_ms == 0)
        .map(Throughput::rate)
}

fn report(r: &Results, opts: &Options) -> String {
    let delay_s = opts.delay_ms as f64 / 1e3;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Distributed search on both backends (`cargo xtask bench-workers`)\n"
    );
    let _ = writeln!(
        s,
        "Machine: {} {}, {} CPUs; measured {}. Release build; PostgreSQL: the server of \
         `cargo xtask test` (a fresh database per run); SQLite: a fresh study folder per run.\n",
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::bench::utc_now()
    );
    let load = |l: Option<f64>| l.map_or("?".to_string(), |l| format!("{l:.2}"));
    let _ = writeln!(
        s,
        "Load average (1 min) at the start and the end: {} and {}. Every process measured here \
         (coordinator, workers, PostgreSQL) shares the machine's CPUs, with anything else that \
         runs on it: the throughput figures are only as quiet as the machine was.\n",
        load(r.load.0),
        load(r.load.1)
    );
    let _ = writeln!(s, "## Throughput\n");
    let _ = writeln!(
        s,
        "Random search on the `nb201-digits` table, max({}, {} x N) trials per run, the \
         `tabular` evaluator with `delay_ms = {}` (every trial sleeps {} ms). PostgreSQL: `nas search --storage` with \
         `workers = 0` plus N `nas worker` processes; SQLite: `[runtime] workers = N` threads \
         in `nas search` (SQLite has no remote workers). trials/s is counted from the first \
         claim to the last finish (store clock); \"whole\" is the `nas search` process from \
         start to exit (plugin loading, start-up and the workers' start included). Ideal = N / \
         {delay_s} s; the last row is what the coordinator does with no delay at all (its own \
         ceiling, under the same load).\n",
        opts.trials, opts.trials_per_worker, opts.delay_ms, opts.delay_ms
    );
    let _ = writeln!(
        s,
        "| workers | trials | ideal (trials/s) | PostgreSQL trials/s | % of ideal | whole (s) | SQLite trials/s | % of ideal | whole (s) |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &opts.workers {
        let raw_ideal = n as f64 / delay_s;
        let mut row = format!("| {n} | {} | {raw_ideal:.0} |", opts.trials_for(n));
        for backend in [Backend::Postgres, Backend::Sqlite] {
            match find(&r.throughput, backend, n, true) {
                Some(t) => {
                    let _ = write!(
                        row,
                        " {:.1} | {:.0} % | {:.2} |",
                        t.rate(),
                        100.0 * t.rate() / raw_ideal,
                        t.whole_s
                    );
                }
                None => row.push_str(" - | - | - |"),
            }
        }
        let _ = writeln!(s, "{row}");
    }
    let mut row = format!(
        "| coordinator alone (4 workers, no delay) | {} | - |",
        opts.trials_for(4)
    );
    for backend in [Backend::Postgres, Backend::Sqlite] {
        match r
            .throughput
            .iter()
            .find(|t| t.backend == backend && t.delay_ms == 0)
        {
            Some(t) => {
                let _ = write!(row, " {:.1} | - | {:.2} |", t.rate(), t.whole_s);
            }
            None => row.push_str(" - | - | - |"),
        }
    }
    let _ = writeln!(s, "{row}\n");
    let _ = writeln!(
        s,
        "Steady state (trials/s between the 10th and 90th percentile of the finish times: the \
         workers' start-up, loading plugins and data on shared cores, left out):\n"
    );
    let _ = writeln!(
        s,
        "| workers | ideal | PostgreSQL | % of ideal | SQLite | % of ideal |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
    for &n in &opts.workers {
        let raw_ideal = n as f64 / delay_s;
        let mut row = format!("| {n} | {raw_ideal:.0} |");
        for backend in [Backend::Postgres, Backend::Sqlite] {
            match find(&r.throughput, backend, n, true).and_then(|t| t.steady) {
                Some(rate) => {
                    let _ = write!(row, " {rate:.1} | {:.0} % |", 100.0 * rate / raw_ideal);
                }
                None => row.push_str(" - | - |"),
            }
        }
        let _ = writeln!(s, "{row}");
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Claim latency (`Storage::claim_next`)\n");
    let _ = writeln!(
        s,
        "A study filled by bulk SQL with complete trials, then {PENDING} pending ones queued; \
         {CLAIMS} claims timed one after another through the real `Storage::claim_next` (one \
         untimed claim first). Milliseconds, median / p90.\n"
    );
    let _ = writeln!(s, "| stored trials | PostgreSQL | SQLite |");
    let _ = writeln!(s, "|---:|---:|---:|");
    for &size in &opts.sizes {
        let cell = |backend: Backend| {
            r.claims
                .iter()
                .filter(|c| c.backend == backend)
                .nth(opts.sizes.iter().position(|&x| x == size).unwrap_or(0))
                .map_or("-".to_string(), |c| {
                    format!("{:.2} / {:.2} ({} stored)", c.median_ms, c.p90_ms, c.stored)
                })
        };
        let _ = writeln!(
            s,
            "| {size} | {} | {} |",
            cell(Backend::Postgres),
            cell(Backend::Sqlite)
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## `nas status` on the largest study\n");
    let _ = writeln!(
        s,
        "Wall time of the whole command (median of {STATUS_RUNS}), JSON written to a file.\n"
    );
    let _ = writeln!(s, "| command | trials | PostgreSQL (s) | SQLite (s) |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for what in ["nas status --json", "nas status --workers --json"] {
        let get = |backend: Backend| {
            r.status
                .iter()
                .find(|t| t.backend == backend && t.what == what)
        };
        let stored = get(Backend::Postgres)
            .or(get(Backend::Sqlite))
            .map_or(0, |t| t.stored);
        let fmt = |t: Option<&StatusTime>| t.map_or("-".into(), |t| format!("{:.3}", t.seconds));
        let _ = writeln!(
            s,
            "| `{what}` | {stored} | {} | {} |",
            fmt(get(Backend::Postgres)),
            fmt(get(Backend::Sqlite))
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Against the goals\n");
    let most = *opts.workers.iter().max().unwrap_or(&1);
    for backend in [Backend::Postgres, Backend::Sqlite] {
        if let Some(t) = find(&r.throughput, backend, most, true) {
            // The verdict is on N / delay: a coordinator slowed down (by load, or by its
            // own cost per trial) must not make the goal easier.
            let raw_ideal = most as f64 / delay_s;
            let pct = 100.0 * t.rate() / raw_ideal;
            let ceiling = ceiling(&r.throughput, backend).map_or(String::new(), |c| {
                format!(
                    " ({:.0} % of the coordinator's own rate without delay, {c:.0} trials/s)",
                    100.0 * t.rate() / raw_ideal.min(c)
                )
            });
            let _ = writeln!(
                s,
                "- Throughput >= 90 % of ideal at {most} workers, {}: {:.1} trials/s = {pct:.0} % \
                 of {raw_ideal:.0}{ceiling}: **{}**",
                backend.label(),
                t.rate(),
                if pct >= 90.0 { "met" } else { "not met" }
            );
            if let Some(rate) = t.steady {
                let pct = 100.0 * rate / raw_ideal;
                let _ = writeln!(
                    s,
                    "- The same in steady state (workers' start-up left out), {}: {rate:.1} \
                     trials/s = {pct:.0} % of {raw_ideal:.0}: **{}**",
                    backend.label(),
                    if pct >= 90.0 { "met" } else { "not met" }
                );
            }
        }
    }
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let claims: Vec<&Claims> = r.claims.iter().filter(|c| c.backend == backend).collect();
        if let (Some(first), Some(last)) = (claims.first(), claims.last()) {
            let fast = claims.iter().all(|c| c.median_ms < 5.0);
            // Flat: the largest study's median within 2x (+0.5 ms) of the smallest's.
            let flat = last.median_ms <= 2.0 * first.median_ms + 0.5;
            let _ = writeln!(
                s,
                "- Claim latency < 5 ms median, flat from {} to {} trials, {}: {:.2} -> {:.2} ms: \
                 **{}**",
                first.stored,
                last.stored,
                backend.label(),
                first.median_ms,
                last.median_ms,
                if fast && flat { "met" } else { "not met" }
            );
        }
    }
    let _ = writeln!(
        s,
        "- Context: users of Optuna's RDB storage report the per-trial overhead growing from \
         about 0.5 s to about 5 s around 80,000 trials (user reports, not measured here)."
    );
    s
}

fn csv(r: &Results) -> String {
    let mut s = String::from("section,backend,workers,delay_ms,stored_trials,metric,value\n");
    for t in &r.throughput {
        for (metric, value) in [
            ("trials", t.trials as f64),
            ("busy_seconds", t.busy_s),
            ("trials_per_second", t.rate()),
            ("whole_seconds", t.whole_s),
            ("whole_trials_per_second", t.whole_rate()),
        ] {
            let _ = writeln!(
                s,
                "throughput,{},{},{},,{metric},{value}",
                t.backend.key(),
                t.workers,
                t.delay_ms
            );
        }
    }
    for c in &r.claims {
        let _ = writeln!(
            s,
            "claim,{},,,{},median_ms,{}",
            c.backend.key(),
            c.stored,
            c.median_ms
        );
        let _ = writeln!(
            s,
            "claim,{},,,{},p90_ms,{}",
            c.backend.key(),
            c.stored,
            c.p90_ms
        );
    }
    for t in &r.status {
        let metric = t.what.replace(' ', "_").replace("--", "");
        let _ = writeln!(
            s,
            "status,{},,,{},{metric}_seconds,{}",
            t.backend.key(),
            t.stored,
            t.seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_grow_with_the_workers() {
        let opts = Options {
            trials: 160,
            trials_per_worker: 80,
            delay_ms: 50,
            workers: vec![1, 8],
            sizes: vec![1000],
        };
        assert_eq!(opts.trials_for(1), 160);
        assert_eq!(opts.trials_for(8), 640);
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgresql://postgres@127.0.0.1:5432/postgres", "x"),
            "postgresql://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "y"),
            "postgresql://u@h/y?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "z"), "postgresql://h/z");
    }

    #[test]
    fn the_study_file_sets_workers_delay_and_trials() {
        let t = study_toml(Path::new("/r"), Path::new("/w/files"), 160, 50, 0);
        assert!(t.contains("trials = 160\n"), "{t}");
        assert!(t.contains("delay_ms = 50\n"), "{t}");
        assert!(t.contains("workers = 0\n"), "{t}");
        assert!(
            t.contains("table = \"/r/configs/tables/nb201-digits.json.gz\""),
            "{t}"
        );
    }

    #[test]
    fn the_report_compares_against_the_ideal() {
        let run = |backend, workers, delay_ms, busy_s| Throughput {
            backend,
            workers,
            delay_ms,
            trials: 160,
            busy_s,
            whole_s: busy_s + 0.5,
            steady: None,
        };
        let results = Results {
            throughput: vec![
                run(Backend::Postgres, 8, 50, 1.0), // 160/s of 160
                run(Backend::Postgres, 4, 0, 0.5),  // ceiling 320/s
                run(Backend::Sqlite, 8, 50, 2.0),   // 80/s
                run(Backend::Sqlite, 4, 0, 1.6),    // ceiling 100/s
            ],
            claims: vec![],
            status: vec![],
            load: (Some(0.5), None),
        };
        let opts = Options {
            trials: 160,
            trials_per_worker: 10,
            delay_ms: 50,
            workers: vec![8],
            sizes: vec![1000],
        };
        let s = report(&results, &opts);
        assert!(s.contains("| 8 | 160 | 160 | 160.0 | 100 % |"), "{s}");
        assert!(s.contains("80.0 | 50 % |"), "{s}");
        assert!(
            s.contains("PostgreSQL: 160.0 trials/s = 100 % of 160 (100 % of the coordinator's own rate without delay, 320 trials/s): **met**"),
            "{s}"
        );
        assert!(s.contains("start and the end: 0.50 and ?."), "{s}");
        assert!(
            s.contains("SQLite: 80.0 trials/s = 50 % of 160 (80 % of the coordinator's own rate without delay, 100 trials/s): **not met**"),
            "{s}"
        );
    }
}
