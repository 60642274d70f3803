//! A worker of a shared study: claims pending trials, evaluates them with its own plugins,
//! ONNX Runtime and data, and reports the outcomes for the coordinator to tell its strategies.
//!
//! `nas worker` runs one; `nas search` with a database runs `[runtime] workers` of them as
//! threads. While a trial is evaluated, a heartbeat thread (with its own connection) renews
//! its lease every third of the lease, so a slow trial is never taken away; a killed worker
//! stops renewing, its lease runs out and the trial is queued again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nas_plugin::{EvalRequest, ParentRef};

use crate::config::StudyConfig;
use crate::finished::FinishedTrials;
use crate::pipeline::{Pipeline, PluginBuilds};
use crate::space::{SearchSpace, build_space};
use crate::storage::{Outcome, Requeued, Storage, TrialRecord, WorkerBeat};

/// Meta key under which the coordinator records the evaluator plugin builds of the study.
pub const PLUGIN_BUILDS_KEY: &str = "plugin_builds";
/// Meta key: `running` while a coordinator runs the study, `finished` once it has stopped
/// proposing for good (workers with nothing to claim then exit).
pub const SEARCH_STATE_KEY: &str = "search_state";

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// `host:pid` (threads of one process add `/N`), written on the trials it claims.
    pub name: String,
    pub lease: Duration,
    pub max_retries: u32,
    /// Stop after evaluating this many trials.
    pub max_trials: Option<u64>,
    /// Stop after this long without a trial to claim.
    pub idle_exit: Option<Duration>,
    /// Stop when the queue is empty and the coordinator has finished the study.
    pub exit_when_finished: bool,
    /// How long to wait before looking for a trial again when none is pending; doubled on
    /// each empty look, up to `MAX_POLL`.
    pub poll: Duration,
}

impl WorkerOptions {
    pub fn new(name: String, config: &StudyConfig) -> WorkerOptions {
        WorkerOptions {
            name,
            lease: config.runtime.lease,
            max_retries: config.runtime.max_retries,
            max_trials: None,
            idle_exit: None,
            exit_when_finished: true,
            poll: Duration::from_millis(5),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WorkerSummary {
    /// Trials evaluated whose outcome was kept.
    pub done: u64,
    /// Trials evaluated whose outcome was discarded (another outcome was kept first).
    pub discarded: u64,
    pub stop_reason: String,
}

/// What evaluating the trials of one study takes on this machine.
pub struct Evaluator {
    space: Box<dyn SearchSpace>,
    pipeline: Pipeline,
    objectives: Vec<nas_plugin::Objective>,
}

impl Evaluator {
    pub fn new(config: &StudyConfig, pipeline: Pipeline) -> anyhow::Result<Evaluator> {
        let space = build_space(&config.resolved_space()?)
            .map_err(|e| crate::config_checks::space_error(config, e))?;
        Ok(Evaluator {
            space,
            pipeline,
            objectives: config.objectives.clone(),
        })
    }

    /// Builds the evaluator pipeline of a stored study on this machine (its plugins, its
    /// ONNX Runtime, data under `config.data_root`).
    pub fn for_study(
        config: &StudyConfig,
        study_dir: &std::path::Path,
    ) -> anyhow::Result<Evaluator> {
        let runtime = config.runtime.resolve()?;
        let space = build_space(&config.resolved_space()?)
            .map_err(|e| crate::config_checks::space_error(config, e))?;
        let pipeline = Pipeline::new(
            &config.evaluators,
            &config.constraints,
            &runtime,
            config.seed,
            &study_dir.display().to_string(),
            &config.data_json()?,
            crate::pipeline::evaluator_supernet(space.as_ref())?.as_ref(),
            FinishedTrials::default(),
        )?;
        Ok(Evaluator {
            space,
            pipeline,
            objectives: config.objectives.clone(),
        })
    }

    pub fn builds(&self) -> &PluginBuilds {
        self.pipeline.builds()
    }

    fn evaluate(&mut self, trial: &TrialRecord, storage: &Storage) -> Outcome {
        if self.pipeline.observes() {
            // Evaluators that learn from the study see what every worker has finished.
            match storage.trials() {
                Ok(trials) => self
                    .pipeline
                    .finished()
                    .push_stored(&trials, &self.objectives),
                Err(e) => tracing::warn!("cannot read the finished trials to observe: {e}"),
            }
        }
        let graph = match self.space.decode(&trial.values) {
            Ok(g) => g,
            Err(e) => return Outcome::undecodable(trial.metrics.clone(), &e),
        };
        self.pipeline.run(EvalRequest {
            trial_id: trial.id,
            values: trial.values.clone(),
            arch: trial.arch.clone(),
            graph,
            fidelity: trial.fidelity,
            metrics: trial.metrics.clone(),
            parent: parent_ref(storage, self.space.as_ref(), trial),
        })
    }
}

/// The parent a trial names, for its evaluation request: only a completed trial whose values
/// still decode is passed on (one that failed or is unknown is silently left out, since the
/// candidate is evaluated the same without it).
pub(crate) fn parent_ref(
    storage: &Storage,
    space: &dyn SearchSpace,
    trial: &TrialRecord,
) -> Option<ParentRef> {
    let id = trial.parent?;
    let parent = match storage.trial(id) {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(
                trial = trial.id,
                parent = id,
                "cannot read the parent trial: {e}"
            );
            return None;
        }
    };
    if parent.state != nas_plugin::TrialState::Complete {
        return None;
    }
    let graph = space.decode(&parent.values).ok()?;
    Some(ParentRef {
        trial_id: parent.id,
        hash: parent.hash,
        graph,
    })
}

/// Refuses to serve a study whose evaluator plugins were built differently here (their
/// results would not be comparable), naming each difference.
pub fn check_builds(storage: &Storage, mine: &PluginBuilds) -> anyhow::Result<()> {
    let Some(stored) = storage.meta(PLUGIN_BUILDS_KEY)? else {
        return Ok(());
    };
    let theirs: PluginBuilds = serde_json::from_str(&stored)
        .with_context(|| format!("{}: unreadable `{PLUGIN_BUILDS_KEY}`", storage.location()))?;
    let mut problems = Vec::new();
    for (plugin, digest) in &theirs {
        match mine.get(plugin) {
            None => problems.push(format!("evaluator plugin `{plugin}` is not loaded here")),
            Some(d) if d != digest => problems.push(format!(
                "evaluator plugin `{plugin}` here is another build (sha256 {}…, the study's is {}…)",
                &d[..12.min(d.len())],
                &digest[..12.min(digest.len())]
            )),
            Some(_) => {}
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "this worker cannot serve {}: {}. Install the same plugin build as the coordinator (copy its plugin files, or use the same image) and start the worker again; no trial was claimed",
        storage.location(),
        problems.join("; ")
    );
    Ok(())
}

/// `host:pid`, the owner written on the trials this process claims.
pub fn process_name() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Looks for expired leases (`Storage::requeue_expired`) at most every second (or a quarter
/// lease) rather than before every claim, which would cost a write per trial and worker, and
/// logs what it found. Workers and the coordinator both sweep.
pub struct LeaseSweeper {
    every: Duration,
    max_retries: u32,
    last: Option<Instant>,
}

impl LeaseSweeper {
    pub fn new(lease: Duration, max_retries: u32) -> LeaseSweeper {
        LeaseSweeper {
            every: (lease / 4).min(Duration::from_secs(1)),
            max_retries,
            last: None,
        }
    }

    /// The trials whose lease expired since the last sweep (none when it is not yet due).
    pub fn sweep(&mut self, storage: &Storage) -> anyhow::Result<Vec<Requeued>> {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return Ok(Vec::new());
        }
        self.last = Some(Instant::now());
        let expired = storage.requeue_expired(self.max_retries)?;
        for r in &expired {
            tracing::warn!(
                trial = r.id,
                state = r.state.as_str(),
                previous_worker = ?r.worker,
                "a trial's lease expired (its worker stopped renewing it)"
            );
        }
        Ok(expired)
    }
}

/// The longest wait between two looks at an empty queue.
const MAX_POLL: Duration = Duration::from_millis(250);

/// What the heartbeat thread shares with the evaluating one.
struct Shared {
    current: Mutex<Option<u64>>,
    done: AtomicU64,
    stop: AtomicBool,
}

/// Claims and evaluates trials until a stop condition of `options` holds or `stop` says so.
/// `connect` opens a second connection to the same study, for the heartbeat.
pub fn serve(
    storage: &Storage,
    connect: &(dyn Fn() -> anyhow::Result<Storage> + Sync),
    evaluator: &mut Evaluator,
    options: &WorkerOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> anyhow::Result<WorkerSummary> {
    let shared = Shared {
        current: Mutex::new(None),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let beat_storage = connect()?;
    let beat = |exited: bool, storage: &Storage| {
        storage.worker_beat(&WorkerBeat {
            name: options.name.clone(),
            host: host_name(),
            pid: std::process::id(),
            trials_done: shared.done.load(Ordering::SeqCst),
            current_trial: *shared.current.lock().expect("current trial"),
            exited,
        })
    };
    beat(false, storage)?;
    std::thread::scope(|scope| {
        let (shared_ref, beat_ref) = (&shared, &beat);
        let heartbeat =
            scope.spawn(move || heartbeat(&beat_storage, shared_ref, options, beat_ref));
        let result = claim_loop(storage, evaluator, options, stop, &shared);
        shared.stop.store(true, Ordering::SeqCst);
        let beat_result = heartbeat.join().expect("heartbeat thread");
        let summary = result?;
        beat_result?;
        beat(true, storage)?;
        Ok(summary)
    })
}

fn heartbeat(
    storage: &Storage,
    shared: &Shared,
    options: &WorkerOptions,
    beat: &(dyn Fn(bool, &Storage) -> Result<(), crate::storage::StorageError> + Sync),
) -> anyhow::Result<()> {
    let every = (options.lease / 3).max(Duration::from_millis(100));
    let lease = options.lease.as_secs_f64();
    let mut last = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(every));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let current = *shared.current.lock().expect("current trial");
        if let Some(id) = current
            && !storage.renew_lease(id, &options.name, lease)?
        {
            tracing::warn!(
                trial = id,
                worker = %options.name,
                "lost the lease on the trial (it expired and was queued again); its result may be discarded"
            );
        }
        beat(false, storage)?;
    }
    Ok(())
}

fn claim_loop(
    storage: &Storage,
    evaluator: &mut Evaluator,
    options: &WorkerOptions,
    stop: &(dyn Fn() -> bool + Sync),
    shared: &Shared,
) -> anyhow::Result<WorkerSummary> {
    let mut summary = WorkerSummary::default();
    let mut idle_since = Instant::now();
    let mut poll = options.poll;
    let mut sweeper = LeaseSweeper::new(options.lease, options.max_retries);
    let lease = options.lease.as_secs_f64();
    loop {
        if stop() {
            summary.stop_reason = "asked to stop".into();
            break;
        }
        if let Some(n) = options.max_trials
            && summary.done + summary.discarded >= n
        {
            summary.stop_reason = format!("evaluated --max-trials {n} trials");
            break;
        }
        sweeper.sweep(storage)?;
        let Some(trial) = storage.claim_next(&options.name, lease)? else {
            if let Some(limit) = options.idle_exit
                && idle_since.elapsed() >= limit
            {
                summary.stop_reason = format!(
                    "no trial to claim for {}",
                    humantime::format_duration(limit)
                );
                break;
            }
            if options.exit_when_finished
                && storage.meta(SEARCH_STATE_KEY)?.as_deref() == Some("finished")
            {
                summary.stop_reason = "the study is finished".into();
                break;
            }
            std::thread::sleep(poll);
            poll = (poll * 2).min(MAX_POLL.max(options.poll));
            continue;
        };
        poll = options.poll;
        let span = tracing::info_span!("trial", id = trial.id, worker = %options.name);
        let _entered = span.enter();
        *shared.current.lock().expect("current trial") = Some(trial.id);
        tracing::debug!(attempt = trial.attempts, "claimed; evaluating");
        let outcome = evaluator.evaluate(&trial, storage);
        *shared.current.lock().expect("current trial") = None;
        if storage.report(trial.id, &options.name, &outcome)? {
            summary.done += 1;
            shared.done.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(state = ?outcome.state, "reported");
        } else {
            summary.discarded += 1;
            tracing::warn!(
                "the trial already had an outcome (this worker's lease had expired and another result came first); this result is discarded"
            );
        }
        idle_since = Instant::now();
    }
    Ok(summary)
}
