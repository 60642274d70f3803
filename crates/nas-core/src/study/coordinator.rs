//! The coordinator of a study stored in a database: `nas search` proposes trials into the
//! database's queue, worker processes (`nas worker`, and `[runtime] workers` threads of this
//! process) claim and evaluate them, and the coordinator tells the strategies each outcome.
//!
//! Outcomes are told in proposal order (the oldest queued trial first), whatever order the
//! workers finish in: with a fixed `[runtime] queue_depth` a seed always gives the same
//! proposals. The cost is head-of-line waiting: a slow trial delays telling the ones behind
//! it. By default the queue keeps `workers + QUEUE_MARGIN` trials unfinished, so workers go on
//! while finished outcomes wait their turn; a fixed depth counts every untold trial.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nas_plugin::TrialState;

use super::{Observer, Study, Summary};
use crate::storage::{OpenMode, Outcome, Storage};
use crate::worker::{
    Evaluator, LeaseSweeper, SEARCH_STATE_KEY, WorkerOptions, process_name, serve,
};

/// Trials queued beyond one per live worker, so a worker that finishes finds the next one
/// waiting.
const QUEUE_MARGIN: usize = 2;
const MIN_POLL: Duration = Duration::from_millis(2);
/// Short: while the coordinator sleeps, workers that finish find at most the queue's margin
/// of trials waiting.
const MAX_POLL: Duration = Duration::from_millis(10);
/// With the default (adaptive) queue, trials in flight (queued, running, or finished and
/// waiting to be told) at most this many times the queue depth.
const BACKLOG: usize = 4;
/// How often the live workers are counted (to size the queue).
const COUNT_WORKERS_EVERY: Duration = Duration::from_secs(1);

impl Study {
    /// Runs the study with a database: this process's `[runtime] workers` threads claim
    /// trials like remote workers do, while this thread proposes and tells.
    pub(super) fn run_shared(&mut self, observer: &mut dyn Observer) -> anyhow::Result<Summary> {
        let url = self
            .config
            .storage
            .clone()
            .context("a shared study has a database URL")?;
        self.storage.set_meta(SEARCH_STATE_KEY, "running")?;
        let pipelines = std::mem::take(&mut self.idle_pipelines);
        let local = pipelines.len();
        let config = self.config.clone();
        let stop = AtomicBool::new(false);
        let failed: Mutex<Option<String>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for (i, pipeline) in pipelines.into_iter().enumerate() {
                let (config, url, stop, failed) = (&config, &url, &stop, &failed);
                scope.spawn(move || {
                    let run = || -> anyhow::Result<()> {
                        let connect = || -> anyhow::Result<Storage> {
                            Ok(Storage::connect(url, &config.name, OpenMode::Existing)?)
                        };
                        let storage = connect()?;
                        let mut evaluator = Evaluator::new(config, pipeline)?;
                        let mut options =
                            WorkerOptions::new(format!("{}/{}", process_name(), i + 1), config);
                        options.exit_when_finished = false;
                        serve(&storage, &connect, &mut evaluator, &options, &|| {
                            stop.load(Ordering::SeqCst)
                        })?;
                        Ok(())
                    };
                    if let Err(e) = run() {
                        failed
                            .lock()
                            .expect("worker error slot")
                            .get_or_insert(format!("{e:#}"));
                    }
                });
            }
            let result = self.coordinate(observer, local, &failed);
            // Local workers finish the trial they are evaluating, report it and stop.
            stop.store(true, Ordering::SeqCst);
            result
        })
    }

    /// Workers of other processes whose heartbeat is recent (within one lease).
    fn live_remote_workers(&self) -> anyhow::Result<usize> {
        let clock = self.storage.clock()?;
        let lease = self.config.runtime.lease.as_secs_f64();
        let mine = format!("{}/", process_name());
        Ok(self
            .storage
            .workers()?
            .iter()
            .filter(|w| !w.exited && w.last_heartbeat >= clock - lease)
            .filter(|w| !w.name.starts_with(&mine))
            .count())
    }

    fn coordinate(
        &mut self,
        observer: &mut dyn Observer,
        local: usize,
        failed: &Mutex<Option<String>>,
    ) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        // Trials queued, running or reported but not told by an earlier coordinator are
        // told first, in proposal order.
        let mut in_flight: VecDeque<u64> =
            self.storage.untold()?.into_iter().map(|t| t.id).collect();
        if !in_flight.is_empty() {
            observer.note(&format!(
                "{} trials queued by an earlier run are kept; their outcomes are told first",
                in_flight.len()
            ));
        }
        let mut fruitless = 0u64;
        let mut stopped = false;
        let mut failures = crate::failures::FailureWatch::default();
        let mut remote = 0;
        let mut counted: Option<Instant> = None;
        let mut poll = MIN_POLL;
        let mut sweeper =
            LeaseSweeper::new(self.config.runtime.lease, self.config.runtime.max_retries);
        loop {
            if let Some(e) = failed.lock().expect("worker error slot").take() {
                bail!("a worker thread of this process stopped: {e}");
            }
            for r in sweeper.sweep(&self.storage)? {
                let what = if r.state == TrialState::Failed {
                    "failed: its lease expired too many times"
                } else {
                    "queued again"
                };
                observer.note(&format!(
                    "trial {} {what} (worker {} stopped renewing its lease)",
                    r.id,
                    r.worker.as_deref().unwrap_or("?")
                ));
            }
            if counted.is_none_or(|t| t.elapsed() >= COUNT_WORKERS_EVERY) {
                remote = self.live_remote_workers()?;
                counted = Some(Instant::now());
            }
            let depth = self
                .config
                .runtime
                .queue_depth
                .unwrap_or(local + remote + QUEUE_MARGIN);
            // A fixed depth counts every trial not yet told, so a seed always gives the same
            // proposals. The default counts only unfinished ones: outcomes waiting behind a
            // slower, older trial do not leave workers idle (up to BACKLOG x depth in flight).
            let adaptive = self.config.runtime.queue_depth.is_none();
            while !stopped {
                let waiting = if in_flight.len() < depth {
                    in_flight.len()
                } else if adaptive && in_flight.len() < BACKLOG * depth {
                    self.storage.count_unfinished(in_flight.make_contiguous())? as usize
                } else {
                    break;
                };
                if waiting >= depth
                    || !self.propose_into(
                        &mut in_flight,
                        &mut summary,
                        &mut fruitless,
                        &mut stopped,
                        observer,
                    )?
                {
                    break;
                }
            }
            // Interrupted: the queued trials stay for the workers; the next `nas search`
            // tells their outcomes.
            if let Some(signal) = crate::interrupt::requested() {
                summary.stop_reason = crate::interrupt::stop_reason(signal);
                break;
            }
            let Some(&oldest) = in_flight.front() else {
                break;
            };
            let trial = self
                .storage
                .trial(oldest)?
                .context("a queued trial vanished from the database")?;
            if !trial.state.is_finished() {
                std::thread::sleep(poll);
                poll = (poll * 2).min(MAX_POLL);
                continue;
            }
            poll = MIN_POLL;
            in_flight.pop_front();
            let outcome = Outcome {
                state: trial.state,
                metrics: trial.metrics,
                details: trial.details,
                error: trial.error,
            };
            let misconfigured = failures.record(&outcome);
            self.complete(oldest, outcome, observer)?;
            summary.evaluated += 1;
            if let Some(message) = misconfigured {
                bail!("{message}");
            }
        }
        if crate::interrupt::requested().is_none() {
            if let Some(message) = failures.all_failed_alike() {
                bail!("{message}");
            }
            self.storage.set_meta(SEARCH_STATE_KEY, "finished")?;
        }
        self.storage
            .set_meta("standings", &serde_json::to_string(&self.standings())?)?;
        Ok(summary)
    }
}
