//! Persistent study storage: one SQLite file (`study.db`, WAL) per study.
//!
//! Every trial is written as it changes state, together with the strategy checkpoints taken
//! at the same moment, in one transaction, so a killed process loses at most the trial that
//! was being evaluated (it is found `running` and evaluated again on resume).
//!
//! The trial table already carries what many worker processes need to share a study:
//! `state` + `worker` + `lease_expires` let a worker claim a pending trial atomically.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nas_plugin::{Metrics, TrialState};
use rusqlite::{Connection, OptionalExtension, params};

pub const DB_FILE: &str = "study.db";
pub(crate) const SCHEMA_VERSION: i64 = 1;

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
}

/// How a trial ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub state: TrialState,
    pub metrics: Metrics,
    pub details: serde_json::Value,
    pub error: Option<String>,
}

/// A strategy's saved state.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub strategy_index: usize,
    pub name: String,
    pub state: serde_json::Value,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub struct Storage {
    path: PathBuf,
    conn: Connection,
}

impl Storage {
    /// Opens (creating if needed) the study database in `dir`.
    pub fn create(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|cause| StorageError::Dir {
            path: dir.to_path_buf(),
            cause,
        })?;
        Self::open_path(dir.join(DB_FILE))
    }

    /// Opens an existing study database; an error if there is none.
    pub fn open_existing(dir: &Path) -> Result<Storage, StorageError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StorageError::Missing(path, dir.display().to_string()));
        }
        Self::open_path(path)
    }

    /// Opens an existing study database for reading only (`status`, `best`, `report`,
    /// `export`): nothing is written, so it works on a read-only or archived study folder.
    pub fn open_read_only(dir: &Path) -> Result<Storage, StorageError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StorageError::Missing(path, dir.display().to_string()));
        }
        let conn = crate::read_only::open(&path)?;
        Ok(Storage { path, conn })
    }

    fn open_path(path: PathBuf) -> Result<Storage, StorageError> {
        let conn = Connection::open(&path).map_err(|cause| StorageError::Sql {
            path: path.clone(),
            cause,
        })?;
        let storage = Storage { path, conn };
        storage.init()?;
        Ok(storage)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, cause: rusqlite::Error) -> StorageError {
        StorageError::Sql {
            path: self.path.clone(),
            cause,
        }
    }

    fn init(&self) -> Result<(), StorageError> {
        // WAL: readers (`nas status` while a search runs) never block the writer.
        // synchronous=NORMAL in WAL mode is durable across process kills (not power loss).
        self.conn
            .execute_batch(
                "PRAGMA busy_timeout = 10000;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS meta (
                     key TEXT PRIMARY KEY,
                     value TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS trials (
                     id INTEGER PRIMARY KEY,
                     state TEXT NOT NULL,
                     strategy TEXT NOT NULL,
                     strategy_index INTEGER NOT NULL,
                     choices TEXT NOT NULL,
                     arch TEXT NOT NULL,
                     hash TEXT NOT NULL,
                     fidelity REAL,
                     metrics TEXT NOT NULL DEFAULT '{}',
                     details TEXT,
                     error TEXT,
                     worker TEXT,
                     lease_expires REAL,
                     created_at REAL NOT NULL,
                     started_at REAL,
                     finished_at REAL
                 );
                 CREATE INDEX IF NOT EXISTS trials_state ON trials (state);
                 CREATE INDEX IF NOT EXISTS trials_hash ON trials (hash);
                 CREATE TABLE IF NOT EXISTS checkpoints (
                     strategy_index INTEGER PRIMARY KEY,
                     name TEXT NOT NULL,
                     state TEXT NOT NULL,
                     updated_at REAL NOT NULL
                 );",
            )
            .map_err(|e| self.sql(e))?;
        match self.meta("schema_version")? {
            None => self.set_meta("schema_version", &SCHEMA_VERSION.to_string()),
            Some(v) if v == SCHEMA_VERSION.to_string() => Ok(()),
            Some(v) => Err(StorageError::Schema {
                path: self.path.clone(),
                found: v.parse().unwrap_or(-1),
            }),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Stores a new trial and, in the same transaction, the proposer's checkpoint taken right
    /// after it proposed the trial. Returns the trial id.
    pub fn insert_trial(
        &mut self,
        trial: &NewTrial,
        checkpoints: &[Checkpoint],
    ) -> Result<u64, StorageError> {
        let path = self.path.clone();
        let sql = |cause| StorageError::Sql {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let t = now();
        let finished = trial.state.is_finished().then_some(t);
        tx.execute(
            "INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, fidelity,
                                 metrics, error, created_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                trial.state.as_str(),
                trial.strategy,
                trial.strategy_index as i64,
                serde_json::to_string(&trial.values).expect("values serialize"),
                trial.arch,
                trial.hash,
                trial.fidelity,
                serde_json::to_string(&trial.metrics).expect("metrics serialize"),
                trial.error,
                t,
                finished,
            ],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid() as u64;
        write_checkpoints(&tx, checkpoints).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(id)
    }

    /// Marks a trial as taken by `worker` until `lease_expires` (unix seconds).
    pub fn claim(&self, id: u64, worker: &str, lease_expires: f64) -> Result<bool, StorageError> {
        let n = self
            .conn
            .execute(
                "UPDATE trials SET state = 'running', worker = ?2, lease_expires = ?3,
                        started_at = ?4
                 WHERE id = ?1 AND state IN ('pending', 'running')",
                params![id as i64, worker, lease_expires, now()],
            )
            .map_err(|e| self.sql(e))?;
        tracing::debug!(
            trial = id,
            worker,
            lease_expires,
            claimed = n == 1,
            "trial claimed with a lease"
        );
        Ok(n == 1)
    }

    /// Records how a trial ended, with the checkpoints of every strategy after being told.
    pub fn finish(
        &mut self,
        id: u64,
        outcome: &Outcome,
        checkpoints: &[Checkpoint],
        study_seconds: f64,
    ) -> Result<(), StorageError> {
        let path = self.path.clone();
        let sql = |cause| StorageError::Sql {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "UPDATE trials SET state = ?2, metrics = ?3, details = ?4, error = ?5,
                    finished_at = ?6, lease_expires = NULL
             WHERE id = ?1",
            params![
                id as i64,
                outcome.state.as_str(),
                serde_json::to_string(&outcome.metrics).expect("metrics serialize"),
                (!outcome.details.is_null()).then(|| outcome.details.to_string()),
                outcome.error,
                now(),
            ],
        )
        .map_err(sql)?;
        write_checkpoints(&tx, checkpoints).map_err(sql)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('study_seconds', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [study_seconds.to_string()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Saves checkpoints on their own (e.g. after a duplicate was answered from the cache).
    pub fn save_checkpoints(&mut self, checkpoints: &[Checkpoint]) -> Result<(), StorageError> {
        let path = self.path.clone();
        let sql = |cause| StorageError::Sql {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        write_checkpoints(&tx, checkpoints).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT strategy_index, name, state FROM checkpoints ORDER BY strategy_index")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (index, name, state) = row.map_err(|e| self.sql(e))?;
            let state = serde_json::from_str(&state).map_err(|e| StorageError::Corrupt {
                path: self.path.clone(),
                trial: 0,
                message: format!("checkpoint of strategy {index} ({name}): {e}"),
            })?;
            out.push(Checkpoint {
                strategy_index: index as usize,
                name,
                state,
            });
        }
        Ok(out)
    }

    /// Every trial, in id order.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("SELECT * FROM trials ORDER BY id", [])
    }

    pub fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StorageError> {
        Ok(self
            .query_trials("SELECT * FROM trials WHERE id = ?1", [id as i64])?
            .pop())
    }

    /// `(id, values of the named metrics)` of every complete trial, read straight from the
    /// JSON column so ranking a large study stays small in memory.
    pub fn complete_metric_values(
        &self,
        names: &[&str],
    ) -> Result<Vec<MetricValues>, StorageError> {
        let columns: Vec<String> = (0..names.len())
            .map(|i| format!("json_extract(metrics, ?{})", i + 1))
            .collect();
        let sql = format!(
            "SELECT id, fidelity, {} FROM trials WHERE state = 'complete' ORDER BY id",
            columns.join(", ")
        );
        // JSON object keys are quoted so metric names with dots or dashes work.
        let paths: Vec<String> = names.iter().map(|n| format!("$.\"{n}\"")).collect();
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(paths.iter()), |r| {
                let id = r.get::<_, i64>(0)? as u64;
                let fidelity = r.get::<_, Option<f64>>(1)?;
                let values = (2..names.len() + 2)
                    .map(|i| r.get::<_, Option<f64>>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((id, fidelity, values))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// Trials that were pending or running when the last process stopped.
    pub fn unfinished(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials(
            "SELECT * FROM trials WHERE state IN ('pending', 'running') ORDER BY id",
            [],
        )
    }

    fn query_trials(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<TrialRecord>, StorageError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok(RawRow {
                    id: r.get::<_, i64>("id")? as u64,
                    state: r.get("state")?,
                    strategy: r.get("strategy")?,
                    strategy_index: r.get::<_, i64>("strategy_index")? as usize,
                    choices: r.get("choices")?,
                    arch: r.get("arch")?,
                    hash: r.get("hash")?,
                    fidelity: r.get("fidelity")?,
                    metrics: r.get("metrics")?,
                    details: r.get("details")?,
                    error: r.get("error")?,
                    created_at: r.get("created_at")?,
                    started_at: r.get("started_at")?,
                    finished_at: r.get("finished_at")?,
                })
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.sql(e))?.decode(&self.path)?);
        }
        Ok(out)
    }
}

fn write_checkpoints(tx: &rusqlite::Transaction<'_>, cps: &[Checkpoint]) -> rusqlite::Result<()> {
    let t = now();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO checkpoints (strategy_index, name, state, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (strategy_index) DO UPDATE
         SET name = excluded.name, state = excluded.state, updated_at = excluded.updated_at",
    )?;
    for cp in cps {
        stmt.execute(params![
            cp.strategy_index as i64,
            cp.name,
            cp.state.to_string(),
            t
        ])?;
    }
    Ok(())
}

struct RawRow {
    id: u64,
    state: String,
    strategy: String,
    strategy_index: usize,
    choices: String,
    arch: String,
    hash: String,
    fidelity: Option<f64>,
    metrics: String,
    details: Option<String>,
    error: Option<String>,
    created_at: f64,
    started_at: Option<f64>,
    finished_at: Option<f64>,
}

impl RawRow {
    fn decode(self, path: &Path) -> Result<TrialRecord, StorageError> {
        let corrupt = |message: String| StorageError::Corrupt {
            path: path.to_path_buf(),
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_trial(hash: &str) -> NewTrial {
        NewTrial {
            state: TrialState::Pending,
            strategy: "random".into(),
            strategy_index: 0,
            values: vec![1.0, 2.0],
            arch: "a".into(),
            hash: hash.into(),
            fidelity: None,
            metrics: Metrics::from([("params".to_string(), 10.0)]),
            error: None,
        }
    }

    #[test]
    fn trials_and_checkpoints_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint {
            strategy_index: 0,
            name: "random".into(),
            state: serde_json::json!({"k": 1}),
        };
        {
            let mut s = Storage::create(dir.path()).unwrap();
            let id = s
                .insert_trial(&new_trial("h1"), std::slice::from_ref(&cp))
                .unwrap();
            assert!(s.claim(id, "w", now() + 60.0).unwrap());
            let outcome = Outcome {
                state: TrialState::Complete,
                metrics: Metrics::from([("latency_ms".to_string(), 0.5)]),
                details: serde_json::Value::Null,
                error: None,
            };
            s.finish(id, &outcome, std::slice::from_ref(&cp), 3.0)
                .unwrap();
            s.insert_trial(&new_trial("h2"), &[]).unwrap();
        }
        let s = Storage::open_existing(dir.path()).unwrap();
        let trials = s.trials().unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].state, TrialState::Complete);
        assert_eq!(trials[0].metrics["latency_ms"], 0.5);
        assert!(trials[0].finished_at.is_some());
        assert_eq!(trials[1].state, TrialState::Pending);
        assert_eq!(s.unfinished().unwrap().len(), 1);
        assert_eq!(
            s.checkpoints().unwrap()[0].state,
            serde_json::json!({"k": 1})
        );
        assert_eq!(s.meta("study_seconds").unwrap().as_deref(), Some("3"));
    }

    #[test]
    fn opening_a_missing_study_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = Storage::open_existing(&dir.path().join("nope"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("nas search"), "{err}");
    }
}
