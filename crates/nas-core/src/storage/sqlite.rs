//! The embedded backend: one SQLite file (`study.db`, WAL) per study folder.

use std::fs::File;
use std::path::{Path, PathBuf};

use nas_plugin::TrialState;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Backend, Checkpoint, DB_FILE, MetricValues, NewTrial, Outcome, Requeued, SCHEMA_VERSION,
    StorageError, TrialRecord, WorkerBeat, WorkerRecord, now,
};

const LOCK_FILE: &str = "study.lock";

/// The tables of schema version 3. Version 1 (no workers) lacked `attempts`, `requeues`,
/// `told`, `proposal` and the `workers` table, version 2 `parent`; `migrate` adds them.
const SCHEMA: &str = "
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
        finished_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        requeues INTEGER NOT NULL DEFAULT 0,
        told INTEGER NOT NULL DEFAULT 1,
        proposal INTEGER,
        parent INTEGER
    );
    CREATE INDEX IF NOT EXISTS trials_state ON trials (state);
    CREATE INDEX IF NOT EXISTS trials_hash ON trials (hash);
    CREATE TABLE IF NOT EXISTS checkpoints (
        strategy_index INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );";

/// Objects version 2 adds, created after the columns exist (old files get them by
/// `migrate`, new ones by `SCHEMA`).
const SCHEMA_V2_OBJECTS: &str = "
    CREATE UNIQUE INDEX IF NOT EXISTS trials_proposal ON trials (proposal);
    CREATE TABLE IF NOT EXISTS workers (
        name TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        last_heartbeat REAL NOT NULL,
        trials_done INTEGER NOT NULL DEFAULT 0,
        current_trial INTEGER,
        exited INTEGER NOT NULL DEFAULT 0
    );";

/// Forward migrations, by the version they start from.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "ALTER TABLE trials ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE trials ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE trials ADD COLUMN told INTEGER NOT NULL DEFAULT 1;
         ALTER TABLE trials ADD COLUMN proposal INTEGER;
         UPDATE trials SET attempts = 1 WHERE started_at IS NOT NULL;",
    ),
    (2, "ALTER TABLE trials ADD COLUMN parent INTEGER;"),
];

pub(crate) struct Sqlite {
    path: PathBuf,
    conn: Connection,
    /// Held while this process coordinates the study (`lock_coordinator`).
    lock: std::sync::Mutex<Option<File>>,
}

impl Sqlite {
    pub fn create(dir: &Path) -> Result<Sqlite, StorageError> {
        std::fs::create_dir_all(dir).map_err(|cause| StorageError::Dir {
            path: dir.to_path_buf(),
            cause,
        })?;
        Self::open_path(dir.join(DB_FILE))
    }

    pub fn open_existing(dir: &Path) -> Result<Sqlite, StorageError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StorageError::Missing(path, dir.display().to_string()));
        }
        Self::open_path(path)
    }

    pub fn open_read_only(dir: &Path) -> Result<Sqlite, StorageError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StorageError::Missing(path, dir.display().to_string()));
        }
        let conn = super::read_only::open(&path)?;
        Ok(Sqlite {
            path,
            conn,
            lock: Default::default(),
        })
    }

    fn open_path(path: PathBuf) -> Result<Sqlite, StorageError> {
        let conn = Connection::open(&path).map_err(|cause| StorageError::Sql {
            path: path.clone(),
            cause,
        })?;
        let storage = Sqlite {
            path,
            conn,
            lock: Default::default(),
        };
        storage.init()?;
        Ok(storage)
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
                 PRAGMA synchronous = NORMAL;",
            )
            .map_err(|e| self.sql(e))?;
        let tx = self.begin_immediate()?;
        let has_trials: bool = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'trials'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.sql(e))?
            > 0;
        if has_trials {
            let version = read_version(&tx).map_err(|e| self.sql(e))?.unwrap_or(1);
            if !(1..=SCHEMA_VERSION).contains(&version) {
                return Err(StorageError::Schema {
                    path: self.path.clone(),
                    found: version,
                });
            }
            for (from, steps) in MIGRATIONS {
                if *from >= version {
                    tracing::info!(
                        path = %self.path.display(),
                        from,
                        "migrating the study database to a newer schema"
                    );
                    tx.execute_batch(steps).map_err(|e| self.sql(e))?;
                }
            }
        }
        tx.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
        tx.execute_batch(SCHEMA_V2_OBJECTS)
            .map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    fn query_trials(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<TrialRecord>, StorageError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sql(e))?;
        let rows = stmt.query_map(params, raw_row).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.sql(e))?.decode(&self.path)?);
        }
        Ok(out)
    }

    fn transaction<T>(
        &self,
        body: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let tx = self.begin_immediate()?;
        let value = body(&tx).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(value)
    }

    /// Every write transaction takes the write lock first (IMMEDIATE): one that read first and
    /// then wrote could fail at once with SQLITE_BUSY when another process wrote meanwhile.
    fn begin_immediate(&self) -> Result<rusqlite::Transaction<'_>, StorageError> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))
    }

    /// Claims run in an IMMEDIATE transaction: the write lock is taken before reading, so
    /// two processes never pick the same trial.
    fn immediate<T>(
        &self,
        body: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))?;
        match body(&self.conn) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.sql(e))
            }
        }
    }
}

fn read_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_meta: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if has_meta == 0 {
        return Ok(None);
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.map(|v| v.parse().unwrap_or(-1)))
}

impl Backend for Sqlite {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn clock(&self) -> Result<f64, StorageError> {
        Ok(now())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    fn insert_trial(&self, trial: &NewTrial, cps: &[Checkpoint]) -> Result<u64, StorageError> {
        self.transaction(|tx| {
            if let Some(p) = trial.proposal
                && let Some(id) = tx
                    .query_row(
                        "SELECT id FROM trials WHERE proposal = ?1",
                        [p as i64],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?
            {
                return Ok(id as u64);
            }
            let t = now();
            let finished = trial.state.is_finished().then_some(t);
            tx.execute(
                "INSERT INTO trials (state, strategy, strategy_index, choices, arch, hash, fidelity,
                                     metrics, error, created_at, finished_at, proposal, parent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                    trial.proposal.map(|p| p as i64),
                    trial.parent.map(|p| p as i64),
                ],
            )?;
            let id = tx.last_insert_rowid() as u64;
            write_checkpoints(tx, cps)?;
            if let Some(p) = trial.proposal {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('proposals', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [p.to_string()],
                )?;
            }
            Ok(id)
        })
    }

    fn claim(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError> {
        let t = now();
        let n = self
            .conn
            .execute(
                "UPDATE trials SET state = 'running', worker = ?2, lease_expires = ?3,
                        started_at = ?4, attempts = attempts + 1
                 WHERE id = ?1 AND state IN ('pending', 'running')",
                params![id as i64, worker, t + lease_seconds, t],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    fn claim_next(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<TrialRecord>, StorageError> {
        let t = now();
        let row = self.immediate(|conn| {
            conn.query_row(
                "UPDATE trials SET state = 'running', worker = ?1, lease_expires = ?2,
                        started_at = ?3, attempts = attempts + 1
                 WHERE id = (SELECT id FROM trials WHERE state = 'pending' ORDER BY id LIMIT 1)
                 RETURNING *",
                params![worker, t + lease_seconds, t],
                raw_row,
            )
            .optional()
        })?;
        row.map(|r| r.decode(&self.path)).transpose()
    }

    fn renew_lease(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError> {
        let n = self
            .conn
            .execute(
                "UPDATE trials SET lease_expires = ?3
                 WHERE id = ?1 AND worker = ?2 AND state = 'running'",
                params![id as i64, worker, now() + lease_seconds],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    fn report(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool, StorageError> {
        let n = self.immediate(|conn| {
            conn.execute(
                "UPDATE trials SET state = ?3, metrics = ?4, details = ?5, error = ?6,
                        finished_at = ?7, lease_expires = NULL, worker = ?2, told = 0
                 WHERE id = ?1 AND state IN ('pending', 'running')",
                params![
                    id as i64,
                    worker,
                    outcome.state.as_str(),
                    serde_json::to_string(&outcome.metrics).expect("metrics serialize"),
                    (!outcome.details.is_null()).then(|| outcome.details.to_string()),
                    outcome.error,
                    now(),
                ],
            )
        })?;
        Ok(n == 1)
    }

    fn requeue_expired(&self, max_retries: u32) -> Result<Vec<Requeued>, StorageError> {
        let t = now();
        let rows = self.immediate(|conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE trials SET
                    state = CASE WHEN attempts > ?2 THEN 'failed' ELSE 'pending' END,
                    error = CASE WHEN attempts > ?2
                        THEN 'its lease expired ' || attempts || ' times (last worker ' ||
                             coalesce(worker, '?') ||
                             '): every worker that claimed it stopped renewing it (killed or unreachable)'
                        ELSE error END,
                    finished_at = CASE WHEN attempts > ?2 THEN ?1 ELSE NULL END,
                    told = CASE WHEN attempts > ?2 THEN 0 ELSE told END,
                    requeues = requeues + 1,
                    lease_expires = NULL
                 WHERE state = 'running' AND lease_expires < ?1
                 RETURNING id, state, worker",
            )?;
            let rows = stmt.query_map(params![t, max_retries as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, state, worker)| Requeued {
                id,
                state: TrialState::parse(&state).unwrap_or(TrialState::Failed),
                worker,
            })
            .collect())
    }

    fn finish(
        &self,
        id: u64,
        outcome: &Outcome,
        cps: &[Checkpoint],
        study_seconds: f64,
    ) -> Result<(), StorageError> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE trials SET state = ?2, metrics = ?3, details = ?4, error = ?5,
                        finished_at = coalesce(CASE WHEN told = 0 THEN finished_at END, ?6),
                        lease_expires = NULL, told = 1
                 WHERE id = ?1",
                params![
                    id as i64,
                    outcome.state.as_str(),
                    serde_json::to_string(&outcome.metrics).expect("metrics serialize"),
                    (!outcome.details.is_null()).then(|| outcome.details.to_string()),
                    outcome.error,
                    now(),
                ],
            )?;
            write_checkpoints(tx, cps)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('study_seconds', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [study_seconds.to_string()],
            )?;
            Ok(())
        })
    }

    fn save_checkpoints(&self, cps: &[Checkpoint]) -> Result<(), StorageError> {
        self.transaction(|tx| write_checkpoints(tx, cps))
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
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
            out.push(super::decode_checkpoint(
                &self.location(),
                index,
                name,
                &state,
            )?);
        }
        Ok(out)
    }

    fn trials(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("SELECT * FROM trials ORDER BY id", [])
    }

    fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StorageError> {
        Ok(self
            .query_trials("SELECT * FROM trials WHERE id = ?1", [id as i64])?
            .pop())
    }

    fn trials_where_state(&self, states: &[TrialState]) -> Result<Vec<TrialRecord>, StorageError> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let marks = vec!["?"; names.len()].join(", ");
        self.query_trials(
            &format!("SELECT * FROM trials WHERE state IN ({marks}) ORDER BY id"),
            rusqlite::params_from_iter(names),
        )
    }

    fn untold(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials(
            "SELECT * FROM trials WHERE state IN ('pending', 'running') OR told = 0 ORDER BY id",
            [],
        )
    }

    fn requeued(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("SELECT * FROM trials WHERE requeues > 0 ORDER BY id", [])
    }

    fn count_unfinished(&self, ids: &[u64]) -> Result<u64, StorageError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let n: i64 = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM trials
                     WHERE state IN ('pending', 'running') AND id IN ({marks})"
                ),
                rusqlite::params_from_iter(ids.iter().map(|&id| id as i64)),
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }

    fn state_counts(&self) -> Result<Vec<(TrialState, u64)>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM trials GROUP BY state")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.sql(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))?;
        super::decode_counts(&self.location(), rows)
    }

    fn complete_metric_values(&self, names: &[&str]) -> Result<Vec<MetricValues>, StorageError> {
        let columns: Vec<String> = (0..names.len())
            .map(|i| format!("json_extract(metrics, ?{})", i + 1))
            .collect();
        let sql = format!(
            "SELECT id, fidelity{}{} FROM trials WHERE state = 'complete' ORDER BY id",
            if names.is_empty() { "" } else { ", " },
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

    fn worker_beat(&self, beat: &WorkerBeat) -> Result<(), StorageError> {
        let t = now();
        self.conn
            .execute(
                "INSERT INTO workers (name, host, pid, started_at, last_heartbeat, trials_done,
                                      current_trial, exited)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)
                 ON CONFLICT (name) DO UPDATE SET last_heartbeat = excluded.last_heartbeat,
                     trials_done = excluded.trials_done, current_trial = excluded.current_trial,
                     exited = excluded.exited",
                params![
                    beat.name,
                    beat.host,
                    beat.pid as i64,
                    t,
                    beat.trials_done as i64,
                    beat.current_trial.map(|id| id as i64),
                    beat.exited,
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, host, pid, started_at, last_heartbeat, trials_done, current_trial,
                        exited
                 FROM workers ORDER BY name",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(WorkerRecord {
                    name: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get::<_, i64>(2)? as u32,
                    started_at: r.get(3)?,
                    last_heartbeat: r.get(4)?,
                    trials_done: r.get::<_, i64>(5)? as u64,
                    current_trial: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                    exited: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    fn lock_coordinator(&self) -> Result<bool, StorageError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(LOCK_FILE);
        let file = File::create(&path).map_err(|cause| StorageError::Dir {
            path: path.clone(),
            cause,
        })?;
        match file.try_lock() {
            Ok(()) => {
                *self.lock.lock().expect("lock slot") = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(cause)) => Err(StorageError::Dir { path, cause }),
        }
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

/// A trial row as stored; version-1 files opened read-only lack the worker columns, which
/// then read as their defaults.
fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<super::RawRow> {
    let optional_count = |name: &str| -> rusqlite::Result<i64> {
        match r.get::<_, i64>(name) {
            Ok(v) => Ok(v),
            Err(rusqlite::Error::InvalidColumnName(_)) => Ok(0),
            Err(e) => Err(e),
        }
    };
    Ok(super::RawRow {
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
        worker: r.get("worker")?,
        attempts: optional_count("attempts")? as u32,
        requeues: optional_count("requeues")? as u32,
        told: match r.get::<_, bool>("told") {
            Ok(v) => v,
            Err(rusqlite::Error::InvalidColumnName(_)) => true,
            Err(e) => return Err(e),
        },
        parent: match r.get::<_, Option<i64>>("parent") {
            Ok(v) => v.map(|p| p as u64),
            Err(rusqlite::Error::InvalidColumnName(_)) => None,
            Err(e) => return Err(e),
        },
    })
}
