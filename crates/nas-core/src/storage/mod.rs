//! Persistent study storage behind one interface, with two backends:
//!
//! - SQLite (`sqlite.rs`): one file (`study.db`, WAL) per study folder, the embedded default;
//! - PostgreSQL (`postgres.rs`): one database holding any number of studies, each named by its
//!   `[study] name`, shared by a coordinator (`nas search`) and worker processes
//!   (`nas worker`) on any number of machines.
//!
//! Every trial is written as it changes state, together with the strategy checkpoints taken
//! at the same moment, in one transaction, so a killed process loses at most the evaluation
//! that was running (the trial is found `running` and evaluated again).
//!
//! Trial life cycle with workers: the coordinator inserts `pending` trials; a worker claims
//! one (`claim_next`: `running` with a lease), renews the lease while it evaluates
//! (`renew_lease`) and reports the outcome (`report`, not yet told); the coordinator tells
//! the strategies and marks it told (`finish`, with their checkpoints). A lease that runs out
//! puts the trial back to `pending` (`requeue_expired`), or ends it `failed` once it has been
//! claimed `1 + max_retries` times. The first outcome reported is kept; a later one (from a
//! worker whose lease had expired) is discarded.

mod postgres;
mod read_only;
mod sqlite;
#[cfg(test)]
mod tests;
pub mod url;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nas_plugin::{Metrics, TrialState};

pub use url::StorageUrl;

pub const DB_FILE: &str = "study.db";
/// Version 2 added workers: claim attempts, requeues, the told flag, proposal numbers and
/// the worker table; version 3 the parent trial of a derived candidate. Older stores are
/// migrated forward when opened for writing.
pub(crate) const SCHEMA_VERSION: i64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    // The cause is part of the message and deliberately not a `source`: printing the error
    // chain (`{:#}`) would otherwise repeat it.
    #[error("study database {path}: {cause}")]
    Sql {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("cannot create study directory {path}: {cause}")]
    Dir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{path} is not a study database (it has no `meta` table); give the folder of a study made by `nas search`"
    )]
    NotAStudy { path: PathBuf },
    #[error(
        "{path} was written by a newer or unknown schema (version {found}); use a matching `nas` version"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("no study database at {0}: run `nas search CONFIG --study-dir {1}` first")]
    Missing(PathBuf, String),
    #[error("study database {path} holds corrupt data in trial {trial}: {message}")]
    Corrupt {
        path: PathBuf,
        trial: u64,
        message: String,
    },
    /// A PostgreSQL error; `location` never holds a password.
    #[error("PostgreSQL {location}: {cause}")]
    Postgres { location: String, cause: String },
    #[error(
        "cannot reach PostgreSQL at {host}:{port} ({cause}); check that the server runs and accepts connections there, or name another with --storage / NAS_STORAGE"
    )]
    Unreachable {
        host: String,
        port: u16,
        cause: String,
    },
    #[error(
        "no study named `{name}` in {location}{available}; start it with `nas search CONFIG --storage URL`"
    )]
    NoSuchStudy {
        location: String,
        name: String,
        available: String,
    },
    #[error("invalid storage URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
}

/// One row of the trial table.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialRecord {
    pub id: u64,
    pub state: TrialState,
    /// Name of the strategy plugin that proposed the trial.
    pub strategy: String,
    /// Index of that strategy in the config's `[[strategy]]` list (its phase).
    pub strategy_index: usize,
    pub values: Vec<f64>,
    pub arch: String,
    pub hash: String,
    pub fidelity: Option<f64>,
    pub metrics: Metrics,
    pub details: serde_json::Value,
    pub error: Option<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// The worker (`host:pid`) that claimed it last.
    pub worker: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// How many times an expired lease put it back in the queue.
    pub requeues: u32,
    /// Whether the strategies were told its outcome (a worker's result waits for the
    /// coordinator to tell it).
    pub told: bool,
    /// The trial its proposer derived it from (e.g. mutated), if any.
    pub parent: Option<u64>,
}

/// A trial id and fidelity with the values of some of its metrics (`None` where absent).
pub type MetricValues = (u64, Option<f64>, Vec<Option<f64>>);

/// A trial about to be stored.
#[derive(Clone, Debug)]
pub struct NewTrial {
    pub state: TrialState,
    pub strategy: String,
    pub strategy_index: usize,
    pub values: Vec<f64>,
    pub arch: String,
    pub hash: String,
    pub fidelity: Option<f64>,
    pub metrics: Metrics,
    pub error: Option<String>,
    /// The study's proposal number it came from: storing the same proposal twice (a retry
    /// after a lost connection) stores one trial.
    pub proposal: Option<u64>,
    /// The trial its proposer derived it from, if any.
    pub parent: Option<u64>,
}

/// How a trial ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub state: TrialState,
    pub metrics: Metrics,
    pub details: serde_json::Value,
    pub error: Option<String>,
}

impl Outcome {
    /// A trial whose choices the space cannot decode into a network.
    pub fn undecodable(metrics: Metrics, error: &dyn std::fmt::Display) -> Outcome {
        Outcome {
            state: TrialState::Failed,
            metrics,
            details: serde_json::Value::Null,
            error: Some(format!("cannot decode the candidate: {error}")),
        }
    }
}

/// A strategy's saved state.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub strategy_index: usize,
    pub name: String,
    pub state: serde_json::Value,
}

/// A trial whose lease ran out: back in the queue, or failed after too many attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct Requeued {
    pub id: u64,
    pub state: TrialState,
    pub worker: Option<String>,
}

/// What a worker says about itself with each heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerBeat {
    /// `host:pid`, as written on the trials it claims.
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub trials_done: u64,
    pub current_trial: Option<u64>,
    /// The worker has stopped (it says so on its way out; a killed one just goes silent).
    pub exited: bool,
}

/// A worker as the store knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerRecord {
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub started_at: f64,
    pub last_heartbeat: f64,
    pub trials_done: u64,
    pub current_trial: Option<u64>,
    pub exited: bool,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a backend does; `Storage` is the one type the rest of the program holds.
///
/// Times (leases, heartbeats) come from the store's clock (`clock`), so machines whose
/// clocks disagree still agree on when a lease runs out.
pub(crate) trait Backend: Send {
    /// Where the study is, for messages (never with a password).
    fn location(&self) -> String;
    fn clock(&self) -> Result<f64, StorageError>;
    fn meta(&self, key: &str) -> Result<Option<String>, StorageError>;
    fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError>;
    fn insert_trial(&self, trial: &NewTrial, cps: &[Checkpoint]) -> Result<u64, StorageError>;
    fn claim(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError>;
    fn claim_next(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<TrialRecord>, StorageError>;
    fn renew_lease(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError>;
    fn report(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool, StorageError>;
    fn requeue_expired(&self, max_retries: u32) -> Result<Vec<Requeued>, StorageError>;
    fn finish(
        &self,
        id: u64,
        outcome: &Outcome,
        cps: &[Checkpoint],
        study_seconds: f64,
    ) -> Result<(), StorageError>;
    fn save_checkpoints(&self, cps: &[Checkpoint]) -> Result<(), StorageError>;
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError>;
    fn trials(&self) -> Result<Vec<TrialRecord>, StorageError>;
    fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StorageError>;
    fn trials_where_state(&self, states: &[TrialState]) -> Result<Vec<TrialRecord>, StorageError>;
    fn untold(&self) -> Result<Vec<TrialRecord>, StorageError>;
    fn requeued(&self) -> Result<Vec<TrialRecord>, StorageError>;
    fn count_unfinished(&self, ids: &[u64]) -> Result<u64, StorageError>;
    fn state_counts(&self) -> Result<Vec<(TrialState, u64)>, StorageError>;
    fn complete_metric_values(&self, names: &[&str]) -> Result<Vec<MetricValues>, StorageError>;
    fn worker_beat(&self, beat: &WorkerBeat) -> Result<(), StorageError>;
    fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError>;
    /// Takes the study's coordinator lock (one `nas search` per study); false if another
    /// process holds it. Released when the storage is dropped or its process dies.
    fn lock_coordinator(&self) -> Result<bool, StorageError>;
}

/// How to open a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the study if it does not exist (`nas search`).
    Create,
    /// The study must exist; writes allowed (workers).
    Existing,
    /// The study must exist; nothing is written (`status`, `best`, `report`, `export`).
    ReadOnly,
}

pub struct Storage {
    backend: Box<dyn Backend>,
    shared: bool,
}

impl Storage {
    /// Opens (creating if needed) the SQLite study database in `dir`.
    pub fn create(dir: &Path) -> Result<Storage, StorageError> {
        Ok(Storage::local(sqlite::Sqlite::create(dir)?))
    }

    /// Opens an existing SQLite study database; an error if there is none.
    pub fn open_existing(dir: &Path) -> Result<Storage, StorageError> {
        Ok(Storage::local(sqlite::Sqlite::open_existing(dir)?))
    }

    /// Opens an existing SQLite study database for reading only (`status`, `best`, `report`,
    /// `export`): nothing is written, so it works on a read-only or archived study folder.
    pub fn open_read_only(dir: &Path) -> Result<Storage, StorageError> {
        Ok(Storage::local(sqlite::Sqlite::open_read_only(dir)?))
    }

    /// Opens study `name` in a PostgreSQL database.
    pub fn connect(url: &StorageUrl, name: &str, mode: OpenMode) -> Result<Storage, StorageError> {
        Ok(Storage {
            backend: Box::new(postgres::Postgres::open(url, name, mode)?),
            shared: true,
        })
    }

    /// The names of the studies a PostgreSQL database holds, oldest first.
    pub fn studies(url: &StorageUrl) -> Result<Vec<String>, StorageError> {
        postgres::Postgres::study_names(url)
    }

    fn local(backend: sqlite::Sqlite) -> Storage {
        Storage {
            backend: Box::new(backend),
            shared: false,
        }
    }

    /// Whether other processes (workers) may evaluate this study's trials.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Where the study is stored, for messages (a path, or a database URL without password
    /// and the study name).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// The store's clock, in unix seconds (leases and heartbeats are measured on it).
    pub fn clock(&self) -> Result<f64, StorageError> {
        self.backend.clock()
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.backend.meta(key)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.backend.set_meta(key, value)
    }

    /// Stores a new trial and, in the same transaction, the proposer's checkpoint taken right
    /// after it proposed the trial and (meta `proposals`) its proposal number. Returns the
    /// trial id.
    pub fn insert_trial(
        &mut self,
        trial: &NewTrial,
        checkpoints: &[Checkpoint],
    ) -> Result<u64, StorageError> {
        self.backend.insert_trial(trial, checkpoints)
    }

    /// Marks trial `id` as taken by `worker` for `lease_seconds`; false if it is finished.
    pub fn claim(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError> {
        let claimed = self.backend.claim(id, worker, lease_seconds)?;
        tracing::debug!(trial = id, worker, claimed, "trial claimed with a lease");
        Ok(claimed)
    }

    /// Claims the oldest pending trial for `worker`, without waiting for trials other
    /// workers are claiming at the same moment.
    pub fn claim_next(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<TrialRecord>, StorageError> {
        self.backend.claim_next(worker, lease_seconds)
    }

    /// Extends `worker`'s lease on trial `id`; false if the worker no longer holds it.
    pub fn renew_lease(
        &self,
        id: u64,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<bool, StorageError> {
        self.backend.renew_lease(id, worker, lease_seconds)
    }

    /// A worker's outcome of trial `id`: kept if the trial has no outcome yet (true),
    /// discarded if another one was reported first or the trial failed meanwhile (false).
    pub fn report(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool, StorageError> {
        self.backend.report(id, worker, outcome)
    }

    /// Puts trials whose lease ran out back in the queue, or ends them `failed` once claimed
    /// more than `1 + max_retries` times.
    pub fn requeue_expired(&self, max_retries: u32) -> Result<Vec<Requeued>, StorageError> {
        self.backend.requeue_expired(max_retries)
    }

    /// Records how a trial ended and that the strategies were told, with the checkpoints of
    /// every strategy after being told.
    pub fn finish(
        &mut self,
        id: u64,
        outcome: &Outcome,
        checkpoints: &[Checkpoint],
        study_seconds: f64,
    ) -> Result<(), StorageError> {
        self.backend.finish(id, outcome, checkpoints, study_seconds)
    }

    /// Saves checkpoints on their own (e.g. after a duplicate was answered from the cache).
    pub fn save_checkpoints(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StorageError> {
        self.backend.save_checkpoints(checkpoints)
    }

    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
        self.backend.checkpoints()
    }

    /// Every trial, in id order.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.backend.trials()
    }

    pub fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StorageError> {
        self.backend.trial(id)
    }

    /// `(id, values of the named metrics)` of every complete trial, read straight from the
    /// JSON column so ranking a large study stays small in memory.
    pub fn complete_metric_values(
        &self,
        names: &[&str],
    ) -> Result<Vec<MetricValues>, StorageError> {
        self.backend.complete_metric_values(names)
    }

    /// Trials that were pending or running when the last process stopped.
    pub fn unfinished(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.backend
            .trials_where_state(&[TrialState::Pending, TrialState::Running])
    }

    /// Trials whose outcome the strategies were not told yet (queued, running, or reported
    /// by a worker), in id order.
    pub fn untold(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.backend.untold()
    }

    /// Trials an expired lease put back in the queue at least once, in id order.
    pub fn requeued(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.backend.requeued()
    }

    /// How many of the trials `ids` are still pending or running.
    pub fn count_unfinished(&self, ids: &[u64]) -> Result<u64, StorageError> {
        self.backend.count_unfinished(ids)
    }

    /// How many trials are in each state (states with none left out).
    pub fn state_counts(&self) -> Result<Vec<(TrialState, u64)>, StorageError> {
        self.backend.state_counts()
    }

    /// Records a worker's heartbeat (registering it on the first).
    pub fn worker_beat(&self, beat: &WorkerBeat) -> Result<(), StorageError> {
        self.backend.worker_beat(beat)
    }

    /// Every worker that ever served the study, by name.
    pub fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        self.backend.workers()
    }

    /// Takes the coordinator lock of the study (one `nas search` at a time); false if another
    /// process holds it.
    pub fn lock_coordinator(&self) -> Result<bool, StorageError> {
        self.backend.lock_coordinator()
    }
}

/// A trial row as read from either backend, before its JSON columns are decoded.
pub(crate) struct RawRow {
    pub id: u64,
    pub state: String,
    pub strategy: String,
    pub strategy_index: usize,
    pub choices: String,
    pub arch: String,
    pub hash: String,
    pub fidelity: Option<f64>,
    pub metrics: String,
    pub details: Option<String>,
    pub error: Option<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub worker: Option<String>,
    pub attempts: u32,
    pub requeues: u32,
    pub told: bool,
    pub parent: Option<u64>,
}

impl RawRow {
    pub fn decode(self, location: &Path) -> Result<TrialRecord, StorageError> {
        let corrupt = |message: String| StorageError::Corrupt {
            path: location.to_path_buf(),
            trial: self.id,
            message,
        };
        let state = TrialState::parse(&self.state)
            .ok_or_else(|| corrupt(format!("unknown state `{}`", self.state)))?;
        let values =
            serde_json::from_str(&self.choices).map_err(|e| corrupt(format!("choices: {e}")))?;
        let metrics =
            serde_json::from_str(&self.metrics).map_err(|e| corrupt(format!("metrics: {e}")))?;
        let details = match &self.details {
            Some(d) => serde_json::from_str(d).map_err(|e| corrupt(format!("details: {e}")))?,
            None => serde_json::Value::Null,
        };
        Ok(TrialRecord {
            id: self.id,
            state,
            strategy: self.strategy,
            strategy_index: self.strategy_index,
            values,
            arch: self.arch,
            hash: self.hash,
            fidelity: self.fidelity,
            metrics,
            details,
            error: self.error,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            worker: self.worker,
            attempts: self.attempts,
            requeues: self.requeues,
            told: self.told,
            parent: self.parent,
        })
    }
}

pub(crate) fn decode_checkpoint(
    location: &str,
    index: i64,
    name: String,
    state: &str,
) -> Result<Checkpoint, StorageError> {
    let state = serde_json::from_str(state).map_err(|e| StorageError::Corrupt {
        path: PathBuf::from(location),
        trial: 0,
        message: format!("checkpoint of strategy {index} ({name}): {e}"),
    })?;
    Ok(Checkpoint {
        strategy_index: index as usize,
        name,
        state,
    })
}

pub(crate) fn decode_counts(
    location: &str,
    rows: Vec<(String, i64)>,
) -> Result<Vec<(TrialState, u64)>, StorageError> {
    let mut out = Vec::new();
    for (state, n) in rows {
        let parsed = TrialState::parse(&state).ok_or_else(|| StorageError::Corrupt {
            path: PathBuf::from(location),
            trial: 0,
            message: format!("unknown trial state `{state}`"),
        })?;
        out.push((parsed, n as u64));
    }
    out.sort_by_key(|(s, _)| s.as_str());
    Ok(out)
}
