//! The shared backend: a PostgreSQL database holding any number of studies, each named by
//! its `[study] name`, read and written by a coordinator and workers on many machines.
//!
//! The synchronous `postgres` crate fits the rest of the program, which has no async code;
//! each process (and each worker thread) holds its own connection.
//!
//! Lost connections (a database restart, a network blip) are retried with backoff for up to
//! `RECONNECT_FOR`: every operation is one transaction written so that running it again after
//! an unknown outcome does no harm (proposal numbers make trial inserts idempotent, claims
//! are leased, reports keep the first outcome).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, NoTls, Row, Statement, Transaction};
use nas_plugin::TrialState;

use super::{
    Backend, Checkpoint, MetricValues, NewTrial, OpenMode, Outcome, RawRow, Requeued,
    SCHEMA_VERSION, StorageError, StorageUrl, TrialRecord, WorkerBeat, WorkerRecord,
};

/// How long an operation keeps trying to reconnect before the error is reported.
const RECONNECT_FOR: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The server's clock in unix seconds: leases are measured on it, not on the machines'.
const CLOCK: &str = "extract(epoch from clock_timestamp())::float8";

/// Database-wide schema (tables prefixed `nas_`, so they can share a database with others).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS nas_schema (version INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS nas_studies (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS nas_meta (
        study_id BIGINT NOT NULL REFERENCES nas_studies (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (study_id, key)
    );
    CREATE TABLE IF NOT EXISTS nas_trials (
        study_id BIGINT NOT NULL REFERENCES nas_studies (id) ON DELETE CASCADE,
        id BIGINT NOT NULL,
        state TEXT NOT NULL,
        strategy TEXT NOT NULL,
        strategy_index INTEGER NOT NULL,
        choices TEXT NOT NULL,
        arch TEXT NOT NULL,
        hash TEXT NOT NULL,
        fidelity DOUBLE PRECISION,
        metrics TEXT NOT NULL DEFAULT '{}',
        details TEXT,
        error TEXT,
        worker TEXT,
        lease_expires DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        requeues INTEGER NOT NULL DEFAULT 0,
        told BOOLEAN NOT NULL DEFAULT TRUE,
        proposal BIGINT,
        parent BIGINT,
        PRIMARY KEY (study_id, id),
        UNIQUE (study_id, proposal)
    );
    -- Claiming takes the oldest pending trial: this index keeps that one lookup, however
    -- many trials are stored.
    CREATE INDEX IF NOT EXISTS nas_trials_pending ON nas_trials (study_id, id)
        WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS nas_trials_running ON nas_trials (study_id, lease_expires)
        WHERE state = 'running';
    CREATE INDEX IF NOT EXISTS nas_trials_untold ON nas_trials (study_id, id)
        WHERE NOT told OR state IN ('pending', 'running');
    CREATE TABLE IF NOT EXISTS nas_checkpoints (
        study_id BIGINT NOT NULL REFERENCES nas_studies (id) ON DELETE CASCADE,
        strategy_index INTEGER NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (study_id, strategy_index)
    );
    CREATE TABLE IF NOT EXISTS nas_workers (
        study_id BIGINT NOT NULL REFERENCES nas_studies (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        last_heartbeat DOUBLE PRECISION NOT NULL,
        trials_done BIGINT NOT NULL DEFAULT 0,
        current_trial BIGINT,
        exited BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (study_id, name)
    );";

/// Forward migrations by the version they start from (the PostgreSQL schema began at
/// version 2).
const MIGRATIONS: &[(i64, &str)] = &[(
    2,
    "ALTER TABLE nas_trials ADD COLUMN IF NOT EXISTS parent BIGINT;",
)];

/// Key of the advisory lock that serialises schema creation across processes.
const SCHEMA_LOCK: i64 = 0x6e61_735f_7363_6865;
/// Advisory-lock namespace of the coordinator locks (one per study id).
const COORDINATOR_LOCK: i32 = 0x6e61_7363;

const TRIAL_COLUMNS: &str = "id, state, strategy, strategy_index, choices, arch, hash, fidelity,
    metrics, details, error, created_at, started_at, finished_at, worker, attempts, requeues,
    told, parent";
/// The same, read from a version-2 database opened read-only (it has no `parent` column and
/// is not migrated).
const TRIAL_COLUMNS_V2: &str = "id, state, strategy, strategy_index, choices, arch, hash,
    fidelity, metrics, details, error, created_at, started_at, finished_at, worker, attempts,
    requeues, told, NULL::BIGINT AS parent";

pub(crate) struct Postgres {
    url: StorageUrl,
    name: String,
    study_id: i64,
    conn: Mutex<Connection>,
    /// The trial columns as this database holds them.
    trial_columns: &'static str,
}

struct Connection {
    client: Option<Session>,
    /// Whether this process holds the study's coordinator lock (it is re-taken after a
    /// reconnect, since a session-level lock ends with its connection).
    coordinating: bool,
}

/// A connection with its prepared statements: each statement is parsed once per connection,
/// so running one costs one round trip instead of two.
struct Session {
    client: Client,
    statements: std::collections::HashMap<String, Statement>,
}

impl Session {
    fn new(client: Client) -> Session {
        Session {
            client,
            statements: Default::default(),
        }
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, ::postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, ::postgres::Error> {
        let statement = self.prepare(sql)?;
        self.client.execute(&statement, params)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ::postgres::Error> {
        let statement = self.prepare(sql)?;
        self.client.query(&statement, params)
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, ::postgres::Error> {
        let statement = self.prepare(sql)?;
        self.client.query_one(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, ::postgres::Error> {
        let statement = self.prepare(sql)?;
        self.client.query_opt(&statement, params)
    }
}

/// Whether an error means the connection is gone (retry on a new one) rather than that the
/// statement is wrong.
fn is_connection_error(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || *code == SqlState::TOO_MANY_CONNECTIONS
        }
    }
}

fn connect(url: &StorageUrl) -> Result<Client, StorageError> {
    url.config().connect(NoTls).map_err(|e| {
        let (host, port) = url.host_port();
        match e.as_db_error() {
            // The server answered: a wrong database, role or password, not an unreachable one.
            Some(db) => StorageError::Postgres {
                location: url.to_string(),
                cause: db.message().to_string(),
            },
            None => StorageError::Unreachable {
                host,
                port,
                cause: describe(&e),
            },
        }
    })
}

/// The innermost cause of a connection error ("Connection refused", "timed out").
fn describe(e: &::postgres::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn create_schema(client: &mut Client) -> Result<(), ::postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM nas_schema", &[])?
        .map(|r| r.get(0));
    match version {
        None => {
            tx.execute(
                "INSERT INTO nas_schema (version) VALUES ($1)",
                &[&(SCHEMA_VERSION as i32)],
            )?;
        }
        Some(v) => {
            for (from, steps) in MIGRATIONS {
                if *from >= i64::from(v) {
                    tx.batch_execute(steps)?;
                }
            }
            if i64::from(v) < SCHEMA_VERSION {
                tx.execute(
                    "UPDATE nas_schema SET version = $1",
                    &[&(SCHEMA_VERSION as i32)],
                )?;
            }
        }
    }
    tx.commit()
}

impl Postgres {
    pub fn open(url: &StorageUrl, name: &str, mode: OpenMode) -> Result<Postgres, StorageError> {
        let mut client = connect(url)?;
        let location = format!("{url} (study `{name}`)");
        let pg = |e: ::postgres::Error| StorageError::Postgres {
            location: location.clone(),
            cause: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string()),
        };
        let version: Option<i32> = client
            .query_opt(
                "SELECT version FROM nas_schema WHERE to_regclass('nas_schema') IS NOT NULL",
                &[],
            )
            .or_else(|e| match e.code() {
                Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
                _ => Err(e),
            })
            .map_err(&pg)?
            .map(|r| r.get(0));
        if let Some(v) = version
            && i64::from(v) > SCHEMA_VERSION
        {
            return Err(StorageError::Postgres {
                location,
                cause: format!(
                    "the database was written by a newer schema (version {v}); use a matching `nas` version"
                ),
            });
        }
        if mode != OpenMode::ReadOnly {
            create_schema(&mut client).map_err(&pg)?;
        }
        let found: Option<i64> = if version.is_some() || mode != OpenMode::ReadOnly {
            client
                .query_opt("SELECT id FROM nas_studies WHERE name = $1", &[&name])
                .map_err(&pg)?
                .map(|r| r.get(0))
        } else {
            None
        };
        let study_id = match (found, mode) {
            (Some(id), _) => id,
            (None, OpenMode::Create) => client
                .query_one(
                    &format!(
                        "INSERT INTO nas_studies (name, created_at) VALUES ($1, {CLOCK})
                         ON CONFLICT (name) DO UPDATE SET name = excluded.name
                         RETURNING id"
                    ),
                    &[&name],
                )
                .map_err(&pg)?
                .get(0),
            (None, _) => {
                let names = Postgres::names(&mut client).map_err(&pg)?;
                return Err(StorageError::NoSuchStudy {
                    location: url.to_string(),
                    name: name.to_string(),
                    available: if names.is_empty() {
                        " (it holds no study)".into()
                    } else {
                        format!(" (it holds: {})", names.join(", "))
                    },
                });
            }
        };
        Ok(Postgres {
            url: url.clone(),
            name: name.to_string(),
            study_id,
            conn: Mutex::new(Connection {
                client: Some(Session::new(client)),
                coordinating: false,
            }),
            trial_columns: match version {
                Some(v) if mode == OpenMode::ReadOnly && v < 3 => TRIAL_COLUMNS_V2,
                _ => TRIAL_COLUMNS,
            },
        })
    }

    pub fn study_names(url: &StorageUrl) -> Result<Vec<String>, StorageError> {
        let mut client = connect(url)?;
        Postgres::names(&mut client).map_err(|e| StorageError::Postgres {
            location: url.to_string(),
            cause: e.to_string(),
        })
    }

    fn names(client: &mut Client) -> Result<Vec<String>, ::postgres::Error> {
        if client
            .query_one("SELECT to_regclass('nas_studies') IS NOT NULL", &[])?
            .get::<_, bool>(0)
        {
            Ok(client
                .query("SELECT name FROM nas_studies ORDER BY id", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        } else {
            Ok(Vec::new())
        }
    }

    fn error(&self, e: ::postgres::Error) -> StorageError {
        StorageError::Postgres {
            location: self.location(),
            cause: e
                .as_db_error()
                .map_or_else(|| describe(&e), |d| d.message().to_string()),
        }
    }

    /// Runs `op` on the connection, reconnecting with backoff while the database is away.
    /// `op` gets the attempt number (0 first), so a write can tell a retry from a first try.
    fn run<T>(
        &self,
        mut op: impl FnMut(&mut Session, u32) -> Result<T, ::postgres::Error>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let result = match conn.client.as_mut() {
                Some(client) => op(client, attempt).map_err(Failure::Sql),
                None => self.reconnect(&mut conn).and_then(|()| {
                    let client = conn.client.as_mut().expect("just connected");
                    op(client, attempt).map_err(Failure::Sql)
                }),
            };
            let failure = match result {
                Ok(v) => return Ok(v),
                Err(Failure::Sql(e)) if !is_connection_error(&e) => return Err(self.error(e)),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(f) => f,
            };
            conn.client = None;
            if started.elapsed() >= RECONNECT_FOR {
                return Err(match failure {
                    Failure::Sql(e) => self.error(e),
                    Failure::Storage(e) | Failure::Fatal(e) => e,
                });
            }
            tracing::warn!(
                location = %self.location(),
                retry_in = ?backoff,
                "lost the connection to the study database; reconnecting"
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    fn reconnect(&self, conn: &mut Connection) -> Result<(), Failure> {
        let mut client = connect(&self.url).map_err(Failure::Storage)?;
        if conn.coordinating && !try_coordinator_lock(&mut client, self.study_id)? {
            return Err(Failure::Fatal(StorageError::Postgres {
                location: self.location(),
                cause: "another `nas search` took over the study while the database was away; this one stops".into(),
            }));
        }
        tracing::info!(location = %self.location(), "reconnected to the study database");
        conn.client = Some(Session::new(client));
        Ok(())
    }

    fn query_trials(
        &self,
        filter: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<TrialRecord>, StorageError> {
        let sql = format!(
            "SELECT {} FROM nas_trials WHERE study_id = $1 {filter} ORDER BY id",
            self.trial_columns
        );
        let rows = self.run(|c, _| {
            let mut all: Vec<&(dyn ToSql + Sync)> = vec![&self.study_id];
            all.extend_from_slice(params);
            c.query(&sql, &all)
        })?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    fn decode(&self, r: &Row) -> Result<TrialRecord, StorageError> {
        raw_row(r).decode(std::path::Path::new(&self.location()))
    }
}

enum Failure {
    Sql(::postgres::Error),
    /// Reconnecting failed: retried like a lost connection.
    Storage(StorageError),
    /// Not worth retrying.
    Fatal(StorageError),
}

impl From<::postgres::Error> for Failure {
    fn from(e: ::postgres::Error) -> Failure {
        Failure::Sql(e)
    }
}

fn try_coordinator_lock(client: &mut Client, study_id: i64) -> Result<bool, ::postgres::Error> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&COORDINATOR_LOCK, &(study_id as i32)],
        )?
        .get(0))
}

fn raw_row(r: &Row) -> RawRow {
    RawRow {
        id: r.get::<_, i64>("id") as u64,
        state: r.get("state"),
        strategy: r.get("strategy"),
        strategy_index: r.get::<_, i32>("strategy_index") as usize,
        choices: r.get("choices"),
        arch: r.get("arch"),
        hash: r.get("hash"),
        fidelity: r.get("fidelity"),
        metrics: r.get("metrics"),
        details: r.get("details"),
        error: r.get("error"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        worker: r.get("worker"),
        attempts: r.get::<_, i32>("attempts") as u32,
        requeues: r.get::<_, i32>("requeues") as u32,
        told: r.get("told"),
        parent: r.get::<_, Option<i64>>("parent").map(|p| p as u64),
    }
}

/// The checkpoint upsert, prepared before the transaction that runs it.
fn checkpoint_statement(c: &mut Session) -> Result<Statement, ::postgres::Error> {
    c.prepare(&format!(
        "INSERT INTO nas_checkpoints (study_id, strategy_index, name, state, updated_at)
         VALUES ($1, $2, $3, $4, {CLOCK})
         ON CONFLICT (study_id, strategy_index) DO UPDATE
         SET name = excluded.name, state = excluded.state, updated_at = excluded.updated_at"
    ))
}

fn write_checkpoints(
    tx: &mut Transaction<'_>,
    statement: &Statement,
    study_id: i64,
    cps: &[Checkpoint],
) -> Result<(), ::postgres::Error> {
    for cp in cps {
        tx.execute(
            statement,
            &[
                &study_id,
                &(cp.strategy_index as i32),
                &cp.name,
                &cp.state.to_string(),
            ],
        )?;
    }
    Ok(())
}

fn details_text(outcome: &Outcome) -> Option<String> {
    (!outcome.details.is_null()).then(|| outcome.details.to_string())
}

fn metrics_text(metrics: &nas_plugin::Metrics) -> String {
    serde_json::to_string(metrics).expect("metrics serialize")
}

impl Backend for Postgres {
    fn location(&self) -> String {
        format!("{} (study `{}`)", self.url, self.name)
    }

    fn clock(&self) -> Result<f64, StorageError> {
        self.run(|c, _| Ok(c.query_one(&format!("SELECT {CLOCK}"), &[])?.get(0)))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.run(|c, _| {
            Ok(c.query_opt(
                "SELECT value FROM nas_meta WHERE study_id = $1 AND key = $2",
                &[&self.study_id, &key],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.run(|c, _| {
            c.execute(
                "INSERT INTO nas_meta (study_id, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (study_id, key) DO UPDATE SET value = excluded.value",
                &[&self.study_id, &key, &value],
            )
        })?;
        Ok(())
    }

    fn insert_trial(&self, trial: &NewTrial, cps: &[Checkpoint]) -> Result<u64, StorageError> {
        let values = serde_json::to_string(&trial.values).expect("values serialize");
        let metrics = metrics_text(&trial.metrics);
        let proposal = trial.proposal.map(|p| p as i64);
        let parent = trial.parent.map(|p| p as i64);
        let finished = trial.state.is_finished();
        self.run(|c, _| {
            let existing =
                c.prepare("SELECT id FROM nas_trials WHERE study_id = $1 AND proposal = $2")?;
            let insert = c.prepare(&format!(
                "INSERT INTO nas_trials (study_id, id, state, strategy, strategy_index,
                     choices, arch, hash, fidelity, metrics, error, created_at,
                     finished_at, proposal, parent)
                 SELECT $1, coalesce(max(id), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9,
                        $10, {CLOCK}, CASE WHEN $11 THEN {CLOCK} END, $12, $13
                 FROM nas_trials WHERE study_id = $1
                 RETURNING id"
            ))?;
            let checkpoint = checkpoint_statement(c)?;
            let count = c.prepare(
                "INSERT INTO nas_meta (study_id, key, value) VALUES ($1, 'proposals', $2)
                 ON CONFLICT (study_id, key) DO UPDATE SET value = excluded.value",
            )?;
            let mut tx = c.client.transaction()?;
            if let Some(p) = proposal
                && let Some(row) = tx.query_opt(&existing, &[&self.study_id, &p])?
            {
                // Stored by an earlier try whose answer was lost with the connection.
                return Ok(row.get::<_, i64>(0) as u64);
            }
            let id: i64 = tx
                .query_one(
                    &insert,
                    &[
                        &self.study_id,
                        &trial.state.as_str(),
                        &trial.strategy,
                        &(trial.strategy_index as i32),
                        &values,
                        &trial.arch,
                        &trial.hash,
                        &trial.fidelity,
                        &metrics,
                        &trial.error,
                        &finished,
                        &proposal,
                        &parent,
                    ],
                )?
                .get(0);
            write_checkpoints(&mut tx, &checkpoint, self.study_id, cps)?;
            if let Some(p) = proposal {
                tx.execute(&count, &[&self.study_id, &p.to_string()])?;
            }
            tx.commit()?;
            Ok(id as u64)
        })
    }

    fn claim(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError> {
        let n = self.run(|c, _| {
            c.execute(
                &format!(
                    "UPDATE nas_trials SET state = 'running', worker = $3,
                         lease_expires = {CLOCK} + $4, started_at = {CLOCK},
                         attempts = attempts + 1
                     WHERE study_id = $1 AND id = $2 AND state IN ('pending', 'running')"
                ),
                &[&self.study_id, &(id as i64), &worker, &lease_seconds],
            )
        })?;
        Ok(n == 1)
    }

    fn claim_next(
        &self,
        worker: &str,
        lease_seconds: f64,
    ) -> Result<Option<TrialRecord>, StorageError> {
        // SKIP LOCKED: a trial another worker is claiming right now is passed over, never
        // waited for.
        let row = self.run(|c, _| {
            c.query_opt(
                &format!(
                    "UPDATE nas_trials SET state = 'running', worker = $2,
                         lease_expires = {CLOCK} + $3, started_at = {CLOCK},
                         attempts = attempts + 1
                     WHERE study_id = $1 AND id = (
                         SELECT id FROM nas_trials WHERE study_id = $1 AND state = 'pending'
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {TRIAL_COLUMNS}"
                ),
                &[&self.study_id, &worker, &lease_seconds],
            )
        })?;
        row.map(|r| self.decode(&r)).transpose()
    }

    fn renew_lease(&self, id: u64, worker: &str, lease_seconds: f64) -> Result<bool, StorageError> {
        let n = self.run(|c, _| {
            c.execute(
                &format!(
                    "UPDATE nas_trials SET lease_expires = {CLOCK} + $4
                     WHERE study_id = $1 AND id = $2 AND worker = $3 AND state = 'running'"
                ),
                &[&self.study_id, &(id as i64), &worker, &lease_seconds],
            )
        })?;
        Ok(n == 1)
    }

    fn report(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool, StorageError> {
        let metrics = metrics_text(&outcome.metrics);
        let details = details_text(outcome);
        self.run(|c, attempt| {
            let n = c.execute(
                &format!(
                    "UPDATE nas_trials SET state = $4, metrics = $5, details = $6, error = $7,
                         finished_at = {CLOCK}, lease_expires = NULL, worker = $3, told = FALSE
                     WHERE study_id = $1 AND id = $2 AND state IN ('pending', 'running')"
                ),
                &[
                    &self.study_id,
                    &(id as i64),
                    &worker,
                    &outcome.state.as_str(),
                    &metrics,
                    &details,
                    &outcome.error,
                ],
            )?;
            if n == 1 || attempt == 0 {
                return Ok(n == 1);
            }
            // A retry: the first try may have been stored before the connection was lost.
            let row = c.query_opt(
                "SELECT worker, metrics FROM nas_trials WHERE study_id = $1 AND id = $2",
                &[&self.study_id, &(id as i64)],
            )?;
            Ok(row.is_some_and(|r| {
                r.get::<_, Option<String>>(0).as_deref() == Some(worker)
                    && r.get::<_, String>(1) == metrics
            }))
        })
    }

    fn requeue_expired(&self, max_retries: u32) -> Result<Vec<Requeued>, StorageError> {
        let rows = self.run(|c, _| {
            c.query(
                &format!(
                    "UPDATE nas_trials SET
                        state = CASE WHEN attempts > $2 THEN 'failed' ELSE 'pending' END,
                        error = CASE WHEN attempts > $2
                            THEN 'its lease expired ' || attempts || ' times (last worker ' ||
                                 coalesce(worker, '?') ||
                                 '): every worker that claimed it stopped renewing it (killed or unreachable)'
                            ELSE error END,
                        finished_at = CASE WHEN attempts > $2 THEN {CLOCK} END,
                        told = CASE WHEN attempts > $2 THEN FALSE ELSE told END,
                        requeues = requeues + 1,
                        lease_expires = NULL
                     WHERE study_id = $1 AND state = 'running' AND lease_expires < {CLOCK}
                     RETURNING id, state, worker"
                ),
                &[&self.study_id, &(max_retries as i32)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Requeued {
                id: r.get::<_, i64>(0) as u64,
                state: TrialState::parse(r.get(1)).unwrap_or(TrialState::Failed),
                worker: r.get(2),
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
        let metrics = metrics_text(&outcome.metrics);
        let details = details_text(outcome);
        let seconds = study_seconds.to_string();
        self.run(|c, _| {
            let update = c.prepare(&format!(
                "UPDATE nas_trials SET state = $3, metrics = $4, details = $5, error = $6,
                     finished_at = coalesce(CASE WHEN NOT told THEN finished_at END, {CLOCK}),
                     lease_expires = NULL, told = TRUE
                 WHERE study_id = $1 AND id = $2"
            ))?;
            let checkpoint = checkpoint_statement(c)?;
            let seconds_meta = c.prepare(
                "INSERT INTO nas_meta (study_id, key, value) VALUES ($1, 'study_seconds', $2)
                 ON CONFLICT (study_id, key) DO UPDATE SET value = excluded.value",
            )?;
            let mut tx = c.client.transaction()?;
            tx.execute(
                &update,
                &[
                    &self.study_id,
                    &(id as i64),
                    &outcome.state.as_str(),
                    &metrics,
                    &details,
                    &outcome.error,
                ],
            )?;
            write_checkpoints(&mut tx, &checkpoint, self.study_id, cps)?;
            tx.execute(&seconds_meta, &[&self.study_id, &seconds])?;
            tx.commit()
        })
    }

    fn save_checkpoints(&self, cps: &[Checkpoint]) -> Result<(), StorageError> {
        self.run(|c, _| {
            let checkpoint = checkpoint_statement(c)?;
            let mut tx = c.client.transaction()?;
            write_checkpoints(&mut tx, &checkpoint, self.study_id, cps)?;
            tx.commit()
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
        let rows = self.run(|c, _| {
            c.query(
                "SELECT strategy_index, name, state FROM nas_checkpoints
                 WHERE study_id = $1 ORDER BY strategy_index",
                &[&self.study_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                super::decode_checkpoint(
                    &self.location(),
                    i64::from(r.get::<_, i32>(0)),
                    r.get(1),
                    r.get(2),
                )
            })
            .collect()
    }

    fn trials(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("", &[])
    }

    fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StorageError> {
        Ok(self.query_trials("AND id = $2", &[&(id as i64)])?.pop())
    }

    fn trials_where_state(&self, states: &[TrialState]) -> Result<Vec<TrialRecord>, StorageError> {
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.query_trials("AND state = ANY($2)", &[&names])
    }

    fn untold(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("AND (NOT told OR state IN ('pending', 'running'))", &[])
    }

    fn requeued(&self) -> Result<Vec<TrialRecord>, StorageError> {
        self.query_trials("AND requeues > 0", &[])
    }

    fn count_unfinished(&self, ids: &[u64]) -> Result<u64, StorageError> {
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let n: i64 = self.run(|c, _| {
            Ok(c.query_one(
                "SELECT count(*) FROM nas_trials
                 WHERE study_id = $1 AND id = ANY($2) AND state IN ('pending', 'running')",
                &[&self.study_id, &ids],
            )?
            .get(0))
        })?;
        Ok(n as u64)
    }

    fn state_counts(&self) -> Result<Vec<(TrialState, u64)>, StorageError> {
        let rows = self.run(|c, _| {
            c.query(
                "SELECT state, count(*) FROM nas_trials WHERE study_id = $1 GROUP BY state",
                &[&self.study_id],
            )
        })?;
        super::decode_counts(
            &self.location(),
            rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        )
    }

    fn complete_metric_values(&self, names: &[&str]) -> Result<Vec<MetricValues>, StorageError> {
        let columns: Vec<String> = (0..names.len())
            .map(|i| format!("(metrics::jsonb ->> ${})::float8", i + 2))
            .collect();
        let sql = format!(
            "SELECT id, fidelity{}{} FROM nas_trials
             WHERE study_id = $1 AND state = 'complete' ORDER BY id",
            if names.is_empty() { "" } else { ", " },
            columns.join(", ")
        );
        let rows = self.run(|c, _| {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.study_id];
            params.extend(names.iter().map(|n| n as &(dyn ToSql + Sync)));
            c.query(&sql, &params)
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let values = (2..names.len() + 2).map(|i| r.get(i)).collect();
                (r.get::<_, i64>(0) as u64, r.get(1), values)
            })
            .collect())
    }

    fn worker_beat(&self, beat: &WorkerBeat) -> Result<(), StorageError> {
        self.run(|c, _| {
            c.execute(
                &format!(
                    "INSERT INTO nas_workers (study_id, name, host, pid, started_at,
                         last_heartbeat, trials_done, current_trial, exited)
                     VALUES ($1, $2, $3, $4, {CLOCK}, {CLOCK}, $5, $6, $7)
                     ON CONFLICT (study_id, name) DO UPDATE SET
                         last_heartbeat = excluded.last_heartbeat,
                         trials_done = excluded.trials_done,
                         current_trial = excluded.current_trial, exited = excluded.exited"
                ),
                &[
                    &self.study_id,
                    &beat.name,
                    &beat.host,
                    &i64::from(beat.pid),
                    &(beat.trials_done as i64),
                    &beat.current_trial.map(|t| t as i64),
                    &beat.exited,
                ],
            )
        })?;
        Ok(())
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, StorageError> {
        let rows = self.run(|c, _| {
            c.query(
                "SELECT name, host, pid, started_at, last_heartbeat, trials_done, current_trial,
                        exited
                 FROM nas_workers WHERE study_id = $1 ORDER BY name",
                &[&self.study_id],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| WorkerRecord {
                name: r.get(0),
                host: r.get(1),
                pid: r.get::<_, i64>(2) as u32,
                started_at: r.get(3),
                last_heartbeat: r.get(4),
                trials_done: r.get::<_, i64>(5) as u64,
                current_trial: r.get::<_, Option<i64>>(6).map(|t| t as u64),
                exited: r.get(7),
            })
            .collect())
    }

    fn lock_coordinator(&self) -> Result<bool, StorageError> {
        let locked = self.run(|c, _| try_coordinator_lock(&mut c.client, self.study_id))?;
        if locked {
            self.conn
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .coordinating = true;
        }
        Ok(locked)
    }
}
