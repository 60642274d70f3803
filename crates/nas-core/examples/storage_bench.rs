//! The storage side of `cargo xtask bench-workers`: fills a stored study with many trials by
//! bulk SQL, then times the real `Storage::claim_next` on it, on SQLite and PostgreSQL alike.
//!
//! ```text
//! storage_bench create-db SERVER_URL NAME        # CREATE DATABASE on that server
//! storage_bench drop-db SERVER_URL NAME          # DROP DATABASE ... WITH (FORCE)
//! storage_bench fill STUDY TOTAL                 # complete trials until the study holds TOTAL
//! storage_bench claims STUDY PENDING CLAIMS      # queue PENDING trials, time CLAIMS claims
//! storage_bench span STUDY                       # first claim to last finish of its trials
//! ```
//!
//! STUDY is a study folder (SQLite) or `postgresql://...#NAME` (the study `NAME` in that
//! database). Every command prints one JSON object on stdout. The study must hold at least
//! one complete trial (it is copied by `fill`): run a small real study first.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use nas_core::storage::{OpenMode, Storage, StorageUrl};
use serde_json::json;

enum Study {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, name: String },
}

impl Study {
    fn parse(arg: &str) -> Result<Study> {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            let (url, name) = arg
                .rsplit_once('#')
                .context("a PostgreSQL study is given as URL#NAME")?;
            Ok(Study::Postgres {
                url: url.to_string(),
                name: name.to_string(),
            })
        } else {
            Ok(Study::Sqlite(arg.into()))
        }
    }

    /// Opens it as `nas worker` does.
    fn open(&self) -> Result<Storage> {
        Ok(match self {
            Study::Sqlite(dir) => Storage::open_existing(dir)?,
            Study::Postgres { url, name } => {
                let url: StorageUrl = url.parse()?;
                Storage::connect(&url, name, OpenMode::Existing)?
            }
        })
    }

    /// Runs `sql` with `?1`/`$1` standing for the first of `args` and so on (integers only).
    /// PostgreSQL statements are written with `$N` and a `{study}` placeholder for the study
    /// id; SQLite ones with `?N`.
    fn execute(&self, sqlite: &str, postgres: &str, args: &[i64]) -> Result<u64> {
        match self {
            Study::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join(nas_core::storage::DB_FILE))?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                let n = conn.execute(sqlite, rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Study::Postgres { url, name } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls)?;
                let id: i64 = client
                    .query_one("SELECT id FROM nas_studies WHERE name = $1", &[name])?
                    .get(0);
                let sql = postgres.replace("{study}", &id.to_string());
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let n = client.execute(&sql, &params)?;
                // Fresh statistics, as autovacuum would gather after a bulk load.
                client.batch_execute("ANALYZE nas_trials")?;
                Ok(n)
            }
        }
    }

    fn count(&self) -> Result<u64> {
        Ok(self.open()?.state_counts()?.iter().map(|(_, n)| n).sum())
    }
}

/// Complete trials copied from the study's first complete one (fresh ids and hashes), until
/// it holds `total` trials.
fn fill(study: &Study, total: u64) -> Result<serde_json::Value> {
    let before = study.count()?;
    let add = total.saturating_sub(before) as i64;
    let start = Instant::now();
    if add > 0 {
        study.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1)
             INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, fidelity,
                                 metrics, details, worker, created_at, started_at, finished_at,
                                 attempts, told)
             SELECT 'complete', t.strategy, t.strategy_index, t.choices, t.arch,
                    lower(hex(randomblob(32))), t.fidelity, t.metrics, t.details, t.worker,
                    t.created_at, t.started_at, t.finished_at, 1, 1
             FROM g, (SELECT * FROM trials WHERE state = 'complete' ORDER BY id LIMIT 1) t",
            "INSERT INTO nas_trials (study_id, id, state, strategy, strategy_index, choices, arch,
                                     hash, fidelity, metrics, details, worker, created_at,
                                     started_at, finished_at, attempts, told)
             SELECT {study}, m.top + g, 'complete', t.strategy, t.strategy_index, t.choices,
                    t.arch, md5(g::text) || md5((-g)::text), t.fidelity, t.metrics, t.details,
                    t.worker, t.created_at, t.started_at, t.finished_at, 1, TRUE
             FROM generate_series(1, $1::bigint) g,
                  (SELECT * FROM nas_trials WHERE study_id = {study} AND state = 'complete'
                   ORDER BY id LIMIT 1) t,
                  (SELECT max(id) AS top FROM nas_trials WHERE study_id = {study}) m",
            &[add],
        )
        .context("bulk insert (does the study hold a complete trial?)")?;
    }
    Ok(json!({
        "before": before,
        "stored": study.count()?,
        "insert_seconds": start.elapsed().as_secs_f64(),
    }))
}

/// Queues `pending` trials (copies of the first complete one, as the coordinator would
/// insert them), then times `claims` calls of `Storage::claim_next`.
fn claims(study: &Study, pending: u64, claims: u64) -> Result<serde_json::Value> {
    if claims > pending {
        bail!("{claims} claims need at least as many pending trials, not {pending}");
    }
    study
        .execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?1)
         INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, fidelity,
                             metrics, created_at, told, proposal)
         SELECT 'pending', t.strategy, t.strategy_index, t.choices, t.arch,
                lower(hex(randomblob(32))), t.fidelity, '{}', t.created_at, 0,
                (SELECT coalesce(max(proposal), 0) FROM trials) + n
         FROM g, (SELECT * FROM trials WHERE state = 'complete' ORDER BY id LIMIT 1) t",
            "INSERT INTO nas_trials (study_id, id, state, strategy, strategy_index, choices, arch,
                                 hash, fidelity, metrics, created_at, told, proposal)
         SELECT {study}, m.top + g, 'pending', t.strategy, t.strategy_index, t.choices, t.arch,
                md5(g::text) || md5((-g)::text), t.fidelity, '{}', t.created_at, FALSE,
                m.proposals + g
         FROM generate_series(1, $1::bigint) g,
              (SELECT * FROM nas_trials WHERE study_id = {study} AND state = 'complete'
               ORDER BY id LIMIT 1) t,
              (SELECT max(id) AS top, coalesce(max(proposal), 0) AS proposals
               FROM nas_trials WHERE study_id = {study}) m",
            &[pending as i64],
        )
        .context("queueing pending trials")?;
    let storage = study.open()?;
    let stored = study.count()?;
    // One untimed claim first: the connection and statement caches warm up, as in a worker
    // that has been running.
    storage.claim_next("bench:warm-up", 60.0)?;
    let mut ms = Vec::with_capacity(claims as usize);
    for _ in 0..claims {
        let start = Instant::now();
        let trial = storage.claim_next("bench:1", 60.0)?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        if trial.is_none() {
            bail!("the queue ran dry after {} claims", ms.len());
        }
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok(json!({
        "stored": stored,
        "claims": ms.len(),
        "median_ms": at(0.5),
        "p90_ms": at(0.9),
        "max_ms": at(1.0),
        "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64,
    }))
}

/// How many trials finished, the first claim and the last finish (the store's clock): the
/// window in which the workers were busy.
fn span(study: &Study) -> Result<serde_json::Value> {
    let trials = study.open()?.trials()?;
    let done: Vec<_> = trials.iter().filter(|t| t.state.is_finished()).collect();
    let first = done
        .iter()
        .filter_map(|t| t.started_at)
        .fold(f64::INFINITY, f64::min);
    let last = done
        .iter()
        .filter_map(|t| t.finished_at)
        .fold(f64::NEG_INFINITY, f64::max);
    // Steady state: between the 10th and 90th percentile of the finish times, so workers
    // still starting (loading plugins and data) or already idle at the end do not count.
    let mut finishes: Vec<f64> = done.iter().filter_map(|t| t.finished_at).collect();
    finishes.sort_by(f64::total_cmp);
    let (lo, hi) = (
        finishes.len() / 10,
        finishes.len() - 1 - finishes.len() / 10,
    );
    let steady = (finishes.len() >= 10 && finishes[hi] > finishes[lo])
        .then(|| json!({ "trials": hi - lo, "seconds": finishes[hi] - finishes[lo] }));
    Ok(json!({
        "finished": done.len(),
        "complete": done.iter().filter(|t| t.state == nas_plugin::TrialState::Complete).count(),
        "seconds": if last > first { last - first } else { 0.0 },
        "steady": steady,
    }))
}

fn admin(server: &str, sql: &str) -> Result<serde_json::Value> {
    let mut client = postgres::Client::connect(server, postgres::NoTls)
        .with_context(|| format!("cannot connect to {server}"))?;
    client.batch_execute(sql)?;
    Ok(json!({ "ok": true }))
}

/// A database name that needs no quoting.
fn db_name(name: &str) -> Result<&str> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("database name `{name}`: use lowercase letters, digits and `_`");
    }
    Ok(name)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let number = |s: &str| -> Result<u64> {
        s.parse()
            .with_context(|| format!("`{s}` is not a whole number"))
    };
    let out = match a.as_slice() {
        ["create-db", server, name] => {
            admin(server, &format!("CREATE DATABASE {}", db_name(name)?))?
        }
        ["drop-db", server, name] => admin(
            server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db_name(name)?),
        )?,
        ["fill", study, total] => fill(&Study::parse(study)?, number(total)?)?,
        ["claims", study, pending, n] => {
            claims(&Study::parse(study)?, number(pending)?, number(n)?)?
        }
        ["span", study] => span(&Study::parse(study)?)?,
        _ => bail!(
            "usage: storage_bench create-db SERVER_URL NAME | drop-db SERVER_URL NAME | \
             fill STUDY TOTAL | claims STUDY PENDING CLAIMS | span STUDY \
             (STUDY: a study folder, or postgresql://...#NAME)"
        ),
    };
    println!("{out}");
    Ok(())
}
