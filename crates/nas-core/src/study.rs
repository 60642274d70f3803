//! The study loop: ask the active strategy, decode, dedup, check constraints, store, evaluate,
//! store, tell every strategy, checkpoint; until the budget is spent.
//!
//! Everything needed to continue is in the study's storage: on resume the strategies are
//! restored from their checkpoints, trials left `pending`/`running` by a killed process are
//! evaluated again, and the budget counts what is already stored. Only one process runs a
//! study at a time (the storage's coordinator lock). With a database the trials are evaluated
//! by worker processes (`coordinator.rs`).

mod coordinator;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use nas_plugin::abi::PluginKind;
use nas_plugin::{
    Direction, EvalRequest, Metrics, Observation, Proposal, RuntimeSettings, SpaceDescriptor,
    StrategyContext, TrialState,
};

use crate::config::StudyConfig;
use crate::finished::FinishedTrials;
use crate::mix::{Mixer, Slot, Standing};
use crate::objectives;
use crate::oneshot::{OneShotStrategy, SupernetProgress};
use crate::pipeline::{Pipeline, static_metrics, violation};
use crate::plugins;
use crate::seeds::{derive_seed, hash_key};
use crate::space::{SearchSpace, SpaceConfig, build_space};
use crate::storage::{Checkpoint, NewTrial, OpenMode, Outcome, Storage, TrialRecord};
use crate::strategies::StrategyInstance;
use crate::workers::Workers;

/// Proposals in a row that produce no new evaluation before the study gives up.
const MAX_FRUITLESS_PROPOSALS: u64 = 10_000;
/// How long a claimed trial stays reserved for its worker.
const LEASE_SECONDS: f64 = 3600.0;

/// What the loop reports while it runs (the CLI draws a progress bar from it).
pub trait Observer {
    fn trial_finished(&mut self, trial: &TrialRecord, progress: &Progress);
    fn note(&mut self, message: &str);
    /// A one-shot strategy finished an epoch of its supernet.
    fn supernet_epoch(&mut self, p: &SupernetProgress<'_>) {
        self.note(&supernet_line(p));
    }
}

/// One line per supernet epoch: loss, architecture-step accuracy, derived architecture.
pub fn supernet_line(p: &SupernetProgress<'_>) -> String {
    let e = p.epoch;
    format!(
        "{}: supernet epoch {}/{}  loss {:.4}  train acc {:.3}{}{}  derived {}{}",
        p.strategy,
        e.epoch,
        p.epochs,
        e.train_loss,
        e.train_accuracy,
        e.arch_accuracy
            .map(|a| format!("  val acc {a:.3}"))
            .unwrap_or_default(),
        e.expected_cost
            .map(|c| format!("  expected cost {c:.3}"))
            .unwrap_or_default(),
        p.arch,
        if e.decided > 0 {
            format!("  ({}/{} edges decided)", e.decided, e.derived.len())
        } else {
            String::new()
        }
    )
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Trials that reached the evaluators (what the trial budget counts).
    pub evaluated: u64,
    pub budget_trials: Option<u64>,
    pub study_seconds: f64,
    pub budget_seconds: Option<f64>,
    /// Best first-objective value so far (in its own direction) and its trial.
    pub best: Option<(f64, u64)>,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub evaluated: u64,
    pub duplicates: u64,
    pub stop_reason: String,
}

/// One `[[strategy]]`: its instance and its name.
struct Phase {
    name: String,
    handle: StrategyInstance,
}

pub struct Study {
    config: StudyConfig,
    dir: PathBuf,
    storage: Storage,
    space: Box<dyn SearchSpace>,
    descriptor: SpaceDescriptor,
    phases: Vec<Phase>,
    slots: Vec<Slot>,
    mixer: Mixer,
    /// Proposals asked so far (stored, so the portfolio draw survives a resume).
    proposals: u64,
    workers: Workers,
    /// With a database: the pipelines of this process's worker threads, started by `run`.
    idle_pipelines: Vec<Pipeline>,
    /// Canonical hash prefix -> trial id, for dedup without keeping records in memory.
    seen: HashMap<u64, u64>,
    /// Duplicates of trials still running: original id -> (proposer, its values), told once
    /// the original finishes.
    waiting_duplicates: HashMap<u64, Vec<(usize, Vec<f64>)>>,
    evaluated: u64,
    /// The `[budget] cost` metric summed over the evaluated, finished trials.
    cost_spent: f64,
    best: Option<(Vec<f64>, f64, u64)>,
    prior_seconds: f64,
    started: Instant,
    worker: String,
    runtime: RuntimeSettings,
    /// Spans of the trials in evaluation: evaluation and storing a trial log in its span.
    spans: HashMap<u64, tracing::Span>,
    /// Finished trials, stored and new, for the evaluators that observe them.
    finished: FinishedTrials,
}

/// The parts of a config that define what a study is; changing them makes stored results
/// incomparable, so a resume with a different one is refused. Budget and runtime may change.
fn identity(config: &StudyConfig) -> serde_json::Value {
    serde_json::json!({
        "seed": config.seed,
        "space": crate::config::space_json(&config.space),
        "strategy": config.strategies.iter().map(|s| {
            let mut spec = serde_json::json!({
                "plugin": s.plugin, "until": format!("{:?}", s.until), "weight": s.weight,
                "config": s.config,
            });
            // Only when set, so that studies stored before the key existed still resume.
            if let Some(seed) = s.seed {
                spec["seed"] = seed.into();
            }
            spec
        }).collect::<Vec<_>>(),
        "evaluator": config.evaluators.iter().map(|e| serde_json::json!({
            "plugin": e.plugin, "config": e.config,
        })).collect::<Vec<_>>(),
        "objective": config.objectives,
        "mix": config.mix,
        "data": config.data,
        "constraints": config.constraints.iter().map(|c| (c.metric.clone(), c.min, c.max)).collect::<Vec<_>>(),
    })
}

/// Opens the study's storage for `nas search` and takes its coordinator lock: one process
/// runs a study at a time.
fn open_storage(config: &StudyConfig, dir: &Path) -> anyhow::Result<Storage> {
    let storage = match &config.storage {
        None => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create study directory {}", dir.display()))?;
            Storage::create(dir)?
        }
        Some(url) => Storage::connect(url, &config.name, OpenMode::Create)?,
    };
    if !storage.lock_coordinator()? {
        match &config.storage {
            None => bail!(
                "study {} is being run by another process (it holds {}); wait for it or use another --study-dir",
                dir.display(),
                dir.join("study.lock").display()
            ),
            Some(_) => bail!(
                "study {} is being run by another `nas search` (it holds the study's coordinator lock); wait for it, or add workers with `nas worker`",
                storage.location()
            ),
        }
    }
    Ok(storage)
}

/// One instance per `[[strategy]]`, each with its own seed: a plugin, or one of the
/// built-in one-shot strategies (`darts`, `darts-minus`, `drnas`, `gdas`).
fn load_strategies(
    config: &StudyConfig,
    space_config: &SpaceConfig,
    descriptor: &SpaceDescriptor,
    runtime: &RuntimeSettings,
    dir: &Path,
) -> anyhow::Result<Vec<Phase>> {
    let mut phases = Vec::new();
    for (index, spec) in config.strategies.iter().enumerate() {
        if let Some(method) = crate::oneshot::oneshot_method(&spec.plugin) {
            // Its own instance of the study's space (resolved once by the caller).
            let space = build_space(space_config)
                .map_err(|e| crate::config_checks::space_error(config, e))?;
            let checkpoint = crate::oneshot::checkpoint_path(dir, index, &spec.plugin);
            let strategy = OneShotStrategy::new(
                &spec.plugin,
                method,
                &spec.config,
                space,
                config.data_config()?,
                config.seed,
                runtime,
                checkpoint,
            )
            .map_err(|e| anyhow::anyhow!("[[strategy]] at {}: {e:#}", spec.location))?;
            phases.push(Phase {
                name: spec.plugin.clone(),
                handle: StrategyInstance::OneShot(Box::new(strategy)),
            });
            continue;
        }
        let library = plugins::load(PluginKind::Strategy, &spec.plugin)
            .map_err(|e| anyhow::anyhow!("[[strategy]] at {}: {e}", spec.location))?;
        let ctx = StrategyContext {
            space: descriptor.clone(),
            objectives: config.objectives.clone(),
            seed: derive_seed(spec.seed.unwrap_or(config.seed), index as u64),
            config: spec.config.clone(),
        };
        let handle = library
            .create_strategy(&ctx)
            .map_err(|e| anyhow::anyhow!("[[strategy]] at {}: {e}", spec.location))?;
        phases.push(Phase {
            name: library.name.clone(),
            handle: StrategyInstance::Plugin(handle),
        });
    }
    Ok(phases)
}

/// One evaluator pipeline per worker: plugin instances are not shared between threads.
fn build_pipelines(
    config: &StudyConfig,
    space: &dyn SearchSpace,
    runtime: &RuntimeSettings,
    dir: &Path,
    finished: &FinishedTrials,
) -> anyhow::Result<Vec<Pipeline>> {
    let data = config.data_json()?;
    let supernet = crate::pipeline::evaluator_supernet(space)?;
    (0..config.runtime.workers)
        .map(|_| {
            Pipeline::new(
                &config.evaluators,
                &config.constraints,
                runtime,
                config.seed,
                &dir.display().to_string(),
                &data,
                supernet.as_ref(),
                finished.clone(),
            )
        })
        .collect()
}

/// A new study records what it is; a stored one must have been created from the same study.
fn check_identity(storage: &Storage, config: &StudyConfig, dir: &Path) -> anyhow::Result<()> {
    let identity = identity(config);
    match storage.meta("identity")? {
        None => {
            storage.set_meta("identity", &identity.to_string())?;
            storage.set_meta("config_path", &config.path.display().to_string())?;
            storage.set_meta("name", &config.name)?;
        }
        Some(stored) => {
            let stored: serde_json::Value = serde_json::from_str(&stored)?;
            let changed: Vec<&str> = [
                "seed",
                "space",
                "strategy",
                "evaluator",
                "objective",
                "constraints",
                "mix",
                "data",
            ]
            .into_iter()
            .filter(|k| stored.get(k) != identity.get(k))
            .collect();
            if !changed.is_empty() {
                let (held_in, place, status) = match &config.storage {
                    None => (
                        dir.display().to_string(),
                        "--study-dir".to_string(),
                        format!("nas status {} --config", dir.display()),
                    ),
                    Some(url) => (
                        storage.location(),
                        "[study] name".to_string(),
                        format!(
                            "nas status --storage {url} --study {} --config",
                            config.name
                        ),
                    ),
                };
                bail!(
                    "{} holds a study created from a different config (changed: {}); \
                     only [budget], [runtime], [storage] and [final] may change on resume. Use another {place}, \
                     or restore the original config (stored in the study: `{status}`)",
                    held_in,
                    changed.join(", "),
                );
            }
        }
    }
    Ok(())
}

/// The latest config text (budget and runtime may have changed) and where data is read from.
fn record_run_settings(storage: &Storage, config: &StudyConfig) -> anyhow::Result<()> {
    // A password written in `[storage] url` is not stored (status, reports and workers show
    // the stored config).
    let source = match &config.storage {
        Some(url) => url.hide_in(&config.source),
        None => config.source.clone(),
    };
    storage.set_meta("config", &source)?;
    if let Some(root) = &config.data_root {
        storage.set_meta("data_root", &root.display().to_string())?;
    }
    Ok(())
}

/// Resume restores the search, not just the history: each strategy gets its saved state.
fn restore_checkpoints(storage: &Storage, phases: &mut [Phase]) -> anyhow::Result<()> {
    for cp in storage.checkpoints()? {
        let phase = phases.get_mut(cp.strategy_index).with_context(|| {
            format!(
                "checkpoint for strategy {} has no [[strategy]]",
                cp.strategy_index
            )
        })?;
        phase.handle.restore(&cp.state)?;
        tracing::info!(
            strategy = %cp.name,
            index = cp.strategy_index,
            "strategy state restored from its checkpoint"
        );
    }
    Ok(())
}

impl Study {
    /// Opens the study directory (creating or resuming) and loads every plugin.
    pub fn open(mut config: StudyConfig, dir: Option<PathBuf>) -> anyhow::Result<Study> {
        let dir = dir.unwrap_or_else(|| config.directory.clone());
        config.data_root = Some(data_root(&config, &dir)?);
        // Everything that can be wrong with the config is checked before the study directory
        // is touched, so a bad config never alters (or creates) a stored study.
        crate::checks::workers(&config)?;
        let space_config = config.resolved_space()?;
        let space = build_space(&space_config)
            .map_err(|e| crate::config_checks::space_error(&config, e))?;
        let descriptor = space.descriptor().clone();
        let runtime = config.runtime.resolve()?;
        let mut phases = load_strategies(&config, &space_config, &descriptor, &runtime, &dir)?;
        let finished = FinishedTrials::default();
        let pipelines = build_pipelines(&config, space.as_ref(), &runtime, &dir, &finished)?;

        let storage = open_storage(&config, &dir)?;
        check_identity(&storage, &config, &dir)?;
        record_run_settings(&storage, &config)?;
        if storage.is_shared() {
            // Workers compare their plugin builds with these before claiming.
            let builds = crate::pipeline::plugin_builds(&config.evaluators)?;
            storage.set_meta(
                crate::worker::PLUGIN_BUILDS_KEY,
                &serde_json::to_string(&builds)?,
            )?;
        }
        restore_checkpoints(&storage, &mut phases)?;

        let prior_seconds = storage
            .meta("study_seconds")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let proposals = storage
            .meta("proposals")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // With a database the pipelines serve this process's worker threads (`run_shared`).
        let (local_pipelines, idle_pipelines) = if storage.is_shared() {
            (Vec::new(), pipelines)
        } else {
            (pipelines, Vec::new())
        };
        let mut study = Study {
            dir,
            storage,
            space,
            descriptor,
            slots: config
                .strategies
                .iter()
                .map(|s| Slot::new(s.until.clone(), s.weight))
                .collect(),
            mixer: Mixer::new(config.mix, config.seed),
            proposals,
            phases,
            workers: Workers::new(local_pipelines),
            idle_pipelines,
            seen: HashMap::new(),
            waiting_duplicates: HashMap::new(),
            evaluated: 0,
            cost_spent: 0.0,
            best: None,
            prior_seconds,
            started: Instant::now(),
            worker: crate::worker::process_name(),
            runtime,
            spans: HashMap::new(),
            finished,
            config,
        };
        study.replay_history()?;
        if study.proposals > 0 {
            tracing::info!(
                dir = %study.dir.display(),
                evaluated = study.evaluated,
                proposals = study.proposals,
                "resuming the study"
            );
        }
        Ok(study)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The study's trial store (read access, e.g. to build a table from the trials).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// What evaluators (and the final phase) run on: provider, threads, resolved library.
    pub fn runtime(&self) -> &RuntimeSettings {
        &self.runtime
    }

    /// Rebuilds the in-memory counters (dedup index, budget, phases, best) from storage.
    fn replay_history(&mut self) -> anyhow::Result<()> {
        let trials = self.storage.trials()?;
        self.finished.push_stored(&trials, &self.config.objectives);
        for t in trials {
            self.seen.insert(hash_key(&t.hash, t.fidelity), t.id);
            let reached_evaluators = t.started_at.is_some()
                || matches!(t.state, TrialState::Pending | TrialState::Running);
            if reached_evaluators {
                self.evaluated += 1;
                if let Some(p) = self.slots.get_mut(t.strategy_index) {
                    p.evaluated += 1;
                }
            }
            if t.state.is_finished() {
                self.account_finished(&t);
            }
        }
        Ok(())
    }

    /// Updates best-so-far, the cost spent and the phase counters for a finished trial.
    fn account_finished(&mut self, t: &TrialRecord) {
        if let Some(c) = &self.config.budget.cost
            && matches!(
                t.state,
                TrialState::Complete | TrialState::Failed | TrialState::Pruned
            )
            && let Some(v) = t.metrics.get(&c.metric).filter(|v| v.is_finite())
        {
            self.cost_spent += v;
        }
        let improved = if t.state == TrialState::Complete
            && let Some(l) = objectives::losses(&self.config.objectives, &t.metrics)
        {
            let better = self.best.as_ref().is_none_or(|(b, _, _)| l[0] < b[0]);
            if better {
                let raw = t.metrics[&self.config.objectives[0].metric];
                self.best = Some((l, raw, t.id));
            }
            better
        } else {
            false
        };
        let seconds = match (t.started_at.or(Some(t.created_at)), t.finished_at) {
            (Some(s), Some(f)) => (f - s).max(0.0),
            _ => 0.0,
        };
        self.mixer
            .record(&mut self.slots, t.strategy_index, improved, seconds);
    }

    fn study_seconds(&self) -> f64 {
        self.prior_seconds + self.started.elapsed().as_secs_f64()
    }

    pub fn progress(&self) -> Progress {
        Progress {
            evaluated: self.evaluated,
            budget_trials: self.config.budget.trials,
            study_seconds: self.study_seconds(),
            budget_seconds: self.config.budget.wall_time.map(|d| d.as_secs_f64()),
            best: self.best.as_ref().map(|(_, raw, id)| (*raw, *id)),
        }
    }

    fn budget_left(&self) -> Option<String> {
        if let Some(n) = self.config.budget.trials
            && self.evaluated >= n
        {
            return Some(format!("trial budget of {n} reached"));
        }
        if let Some(n) = self.config.budget.proposals
            && self.proposals >= n
        {
            return Some(format!("proposal budget of {n} reached"));
        }
        if let Some(d) = self.config.budget.wall_time
            && self.study_seconds() >= d.as_secs_f64()
        {
            return Some(format!(
                "wall-time budget of {} reached",
                humantime::format_duration(d)
            ));
        }
        if let Some(c) = &self.config.budget.cost
            && self.cost_spent >= c.max
        {
            return Some(format!(
                "cost budget of {} {} reached ({:.6} spent)",
                c.max, c.metric, self.cost_spent
            ));
        }
        if let Some(target) = self.config.budget.target
            && let Some((_, best, id)) = &self.best
        {
            let objective = &self.config.objectives[0];
            let reached = match objective.direction {
                Direction::Maximize => *best >= target,
                Direction::Minimize => *best <= target,
            };
            if reached {
                return Some(format!(
                    "target {} = {target} reached by trial {id} ({best})",
                    objective.metric
                ));
            }
        }
        None
    }

    /// Each strategy's share of the study and its bandit credit.
    pub fn standings(&self) -> Vec<Standing> {
        self.phases
            .iter()
            .zip(&self.slots)
            .map(|(p, s)| Standing {
                strategy: p.name.clone(),
                evaluated: s.evaluated,
                credit: s.credit(),
                weight: s.weight,
            })
            .collect()
    }

    fn checkpoint(&mut self, indices: &[usize]) -> anyhow::Result<Vec<Checkpoint>> {
        indices
            .iter()
            .map(|&i| {
                let p = &mut self.phases[i];
                Ok(Checkpoint {
                    strategy_index: i,
                    name: p.name.clone(),
                    state: p.handle.save()?,
                })
            })
            .collect()
    }

    fn all_indices(&self) -> Vec<usize> {
        (0..self.phases.len()).collect()
    }

    fn observation(&self, t: &TrialRecord) -> Observation {
        crate::finished::observation(t, &self.config.objectives)
    }

    /// Tells every strategy about a finished trial and returns their checkpoints.
    fn tell_all(&mut self, t: &TrialRecord) -> anyhow::Result<Vec<Checkpoint>> {
        let obs = [self.observation(t)];
        for p in &mut self.phases {
            p.handle.tell(&obs)?;
        }
        self.checkpoint(&self.all_indices())
    }

    /// Runs until the budget is spent or no strategy has anything new to propose.
    pub fn run(&mut self, observer: &mut dyn Observer) -> anyhow::Result<Summary> {
        if self.storage.is_shared() {
            return self.run_shared(observer);
        }
        let mut summary = Summary::default();
        let capacity = self.config.runtime.workers;
        // Trials in evaluation, oldest first; results are taken back in this order.
        let mut in_flight: std::collections::VecDeque<u64> = Default::default();
        // Trials a killed process left behind are evaluated first, with their stored choices.
        for t in self.storage.unfinished()? {
            tracing::info!(
                trial = t.id,
                strategy = %t.strategy,
                "re-running a trial left unfinished by an earlier run"
            );
            observer.note(&format!(
                "re-running trial {} left unfinished by an earlier run",
                t.id
            ));
            match self.space.decode(&t.values) {
                Ok(graph) => {
                    self.submit(&t, graph)?;
                    in_flight.push_back(t.id);
                }
                Err(e) => {
                    let outcome = Outcome::undecodable(t.metrics.clone(), &e);
                    self.finish(t.id, outcome, observer)?;
                }
            }
        }
        let mut fruitless = 0u64;
        let mut stopped = false;
        let mut failures = crate::failures::FailureWatch::default();
        loop {
            // Fill the free workers with new trials.
            while !stopped
                && in_flight.len() < capacity
                && self.propose_into(
                    &mut in_flight,
                    &mut summary,
                    &mut fruitless,
                    &mut stopped,
                    observer,
                )?
            {}
            let Some(oldest) = in_flight.pop_front() else {
                break;
            };
            let outcome = self.workers.wait(oldest)?;
            let misconfigured = failures.record(&outcome);
            self.complete(oldest, outcome, observer)?;
            summary.evaluated += 1;
            if let Some(message) = misconfigured {
                bail!("{message}");
            }
        }
        if crate::interrupt::requested().is_none()
            && let Some(message) = failures.all_failed_alike()
        {
            bail!("{message}");
        }
        self.storage
            .set_meta("standings", &serde_json::to_string(&self.standings())?)?;
        Ok(summary)
    }

    /// One proposal round of a filling loop: a new trial joins `in_flight`. False when the
    /// loop should stop filling for now (the strategy waits for running trials) or for good
    /// (`stopped` set, with the reason in `summary`).
    fn propose_into(
        &mut self,
        in_flight: &mut std::collections::VecDeque<u64>,
        summary: &mut Summary,
        fruitless: &mut u64,
        stopped: &mut bool,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<bool> {
        match self.propose(summary, fruitless, observer, !in_flight.is_empty())? {
            Proposed::Trial(id) => in_flight.push_back(id),
            Proposed::Nothing => {}
            Proposed::Wait => return Ok(false),
            Proposed::Stop(reason) => {
                tracing::info!(%reason, "the study stops proposing");
                summary.stop_reason = reason;
                *stopped = true;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Asks the next strategy for one candidate and stores it: as a new trial submitted to
    /// the workers, or (duplicate, infeasible, undecodable) answered without evaluation.
    fn propose(
        &mut self,
        summary: &mut Summary,
        fruitless: &mut u64,
        observer: &mut dyn Observer,
        running: bool,
    ) -> anyhow::Result<Proposed> {
        let index = match self.pick_strategy(*fruitless) {
            Ok(index) => index,
            Err(reason) => return Ok(Proposed::Stop(reason)),
        };
        let Some(proposal) = self.ask(index, observer)? else {
            self.store_proposal_count()?;
            if running {
                // It may be waiting for running trials (e.g. a rung to fill): ask again later.
                return Ok(Proposed::Wait);
            }
            // With nothing running, an empty ask means the strategy is done: the others (or
            // the next phase) take over.
            tracing::info!(
                strategy = %self.phases[index].name,
                "strategy exhausted: it has nothing more to propose"
            );
            observer.note(&format!(
                "strategy `{}` has nothing more to propose",
                self.phases[index].name
            ));
            self.slots[index].exhausted = true;
            return Ok(Proposed::Nothing);
        };
        let mut new = self.new_trial(index, &proposal)?;
        let graph = match self.space.decode(&proposal.values) {
            Ok(g) => g,
            Err(e) => {
                new.state = TrialState::Failed;
                new.error = Some(format!("cannot decode the candidate: {e}"));
                new.hash = format!("undecodable:{}", new.arch);
                self.record_without_evaluation(new, observer)?;
                *fruitless += 1;
                return Ok(Proposed::Nothing);
            }
        };
        new.hash = graph.canonical_hash();
        if let Some(&original) = self.seen.get(&hash_key(&new.hash, new.fidelity)) {
            self.answer_duplicate(original, index, &proposal.values)?;
            summary.duplicates += 1;
            *fruitless += 1;
            return Ok(Proposed::Nothing);
        }
        if !self.passes_static_checks(&graph, &mut new) {
            self.record_without_evaluation(new, observer)?;
            *fruitless += 1;
            return Ok(Proposed::Nothing);
        }
        *fruitless = 0;
        let id = self.store_and_submit(index, new, graph)?;
        Ok(Proposed::Trial(id))
    }

    /// The strategy whose turn it is, or why the study stops proposing.
    fn pick_strategy(&self, fruitless: u64) -> Result<usize, String> {
        if let Some(signal) = crate::interrupt::requested() {
            return Err(crate::interrupt::stop_reason(signal));
        }
        if let Some(reason) = self.budget_left() {
            return Err(reason);
        }
        if fruitless >= MAX_FRUITLESS_PROPOSALS {
            return Err(format!(
                "{fruitless} proposals in a row were duplicates or infeasible; the space is probably exhausted"
            ));
        }
        self.mixer
            .pick(&self.slots, self.proposals)
            .ok_or_else(|| "no strategy has anything more to propose".into())
    }

    /// One proposal of strategy `index` (none: it has nothing to propose now). The count of
    /// proposals is stored with what the proposal leads to (the trial it becomes, in the same
    /// transaction as the proposer's checkpoint), so a resume restores both together.
    fn ask(
        &mut self,
        index: usize,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<Option<Proposal>> {
        self.proposals += 1;
        let proposals = self.phases[index]
            .handle
            .ask(1, &mut |p| observer.supernet_epoch(&p))?;
        Ok(proposals.into_iter().next())
    }

    /// Stores the proposal count when a proposal leaves no trial (a duplicate, an empty ask).
    fn store_proposal_count(&self) -> anyhow::Result<()> {
        self.storage
            .set_meta("proposals", &self.proposals.to_string())?;
        Ok(())
    }

    /// The trial a valid proposal becomes (hash and metrics still to fill in).
    fn new_trial(&self, index: usize, proposal: &Proposal) -> anyhow::Result<NewTrial> {
        let name = self.phases[index].name.clone();
        proposals_len_check(&self.descriptor, &proposal.values, &name)?;
        Ok(NewTrial {
            state: TrialState::Pending,
            strategy: name,
            strategy_index: index,
            values: proposal.values.clone(),
            arch: self.space.arch_string(&proposal.values),
            hash: String::new(),
            fidelity: proposal.fidelity,
            metrics: Metrics::new(),
            error: None,
            proposal: Some(self.proposals),
            parent: proposal.parent,
        })
    }

    /// A duplicate is not evaluated again: its proposer is told the cached result (once the
    /// original finishes, if it is still running).
    fn answer_duplicate(
        &mut self,
        original: u64,
        index: usize,
        values: &[f64],
    ) -> anyhow::Result<()> {
        let cached = self
            .storage
            .trial(original)?
            .context("dedup index points at a missing trial")?;
        tracing::debug!(
            original,
            proposer = %self.phases[index].name,
            finished = cached.state.is_finished(),
            "duplicate proposal answered from the stored trial"
        );
        let mut obs = self.observation(&cached);
        obs.values = values.to_vec();
        obs.proposer = self.phases[index].name.clone();
        if cached.state.is_finished() {
            self.phases[index].handle.tell(&[obs])?;
        } else {
            self.waiting_duplicates
                .entry(original)
                .or_default()
                .push((index, values.to_vec()));
        }
        let cps = self.checkpoint(&[index])?;
        self.store_proposal_count()?;
        self.storage.save_checkpoints(&cps)?;
        Ok(())
    }

    /// Fills in the static metrics (params, FLOPs) and checks the hard constraints; a trial
    /// that fails is marked (invalid network, infeasible) for recording without evaluation.
    fn passes_static_checks(&self, graph: &nas_graph::Graph, new: &mut NewTrial) -> bool {
        match static_metrics(graph) {
            Ok(m) => new.metrics = m,
            Err(e) => {
                new.state = TrialState::Failed;
                new.error = Some(format!("invalid network: {e}"));
                return false;
            }
        }
        if let Some(why) = violation(&self.config.constraints, &new.metrics) {
            new.state = TrialState::Infeasible;
            new.error = Some(why);
            return false;
        }
        true
    }

    /// Stores a new trial with its proposer's checkpoint and hands it to the workers (with a
    /// database, it waits in the queue for one to claim it).
    fn store_and_submit(
        &mut self,
        index: usize,
        new: NewTrial,
        graph: nas_graph::Graph,
    ) -> anyhow::Result<u64> {
        let cps = self.checkpoint(&[index])?;
        let id = self.storage.insert_trial(&new, &cps)?;
        self.seen.insert(hash_key(&new.hash, new.fidelity), id);
        self.evaluated += 1;
        self.slots[index].evaluated += 1;
        if self.storage.is_shared() {
            // Queued in the database: a worker claims it.
            return Ok(id);
        }
        let trial = self
            .storage
            .trial(id)?
            .context("trial vanished after insert")?;
        self.submit(&trial, graph)?;
        Ok(id)
    }

    /// Stores a trial that never reaches the evaluators (infeasible, undecodable) and tells
    /// every strategy about it.
    fn record_without_evaluation(
        &mut self,
        new: NewTrial,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<()> {
        let id = self.storage.insert_trial(&new, &[])?;
        tracing::debug!(
            trial = id,
            strategy = %new.strategy,
            state = ?new.state,
            error = ?new.error,
            "recorded without evaluation"
        );
        self.seen.insert(hash_key(&new.hash, new.fidelity), id);
        let trial = self
            .storage
            .trial(id)?
            .context("trial vanished after insert")?;
        let cps = self.tell_all(&trial)?;
        self.storage.save_checkpoints(&cps)?;
        self.account_finished(&trial);
        observer.trial_finished(&trial, &self.progress());
        Ok(())
    }

    /// Claims a stored trial and hands it to the workers.
    fn submit(&mut self, trial: &TrialRecord, graph: nas_graph::Graph) -> anyhow::Result<()> {
        let span = tracing::info_span!("trial", id = trial.id, strategy = %trial.strategy);
        span.in_scope(|| self.storage.claim(trial.id, &self.worker, LEASE_SECONDS))?;
        self.spans.insert(trial.id, span.clone());
        let request = EvalRequest {
            trial_id: trial.id,
            values: trial.values.clone(),
            arch: trial.arch.clone(),
            graph,
            fidelity: trial.fidelity,
            metrics: trial.metrics.clone(),
            parent: crate::worker::parent_ref(&self.storage, self.space.as_ref(), trial),
        };
        self.workers.submit(request, span)
    }

    /// Records an evaluated trial; a pipeline that cannot produce the objective stops the
    /// study (every trial would fail the same way).
    fn complete(
        &mut self,
        id: u64,
        mut outcome: Outcome,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<()> {
        let mut fatal = None;
        if outcome.state == TrialState::Complete
            && objectives::losses(&self.config.objectives, &outcome.metrics).is_none()
        {
            let missing: Vec<&str> = self
                .config
                .objectives
                .iter()
                .filter(|o| !outcome.metrics.contains_key(&o.metric))
                .map(|o| o.metric.as_str())
                .collect();
            let produced = outcome
                .metrics
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if missing.is_empty() {
                outcome.error = Some("an objective metric is not a finite number".into());
            } else {
                let message = format!(
                    "the evaluator pipeline does not produce the objective metric(s) {} (it produces: {produced}); fix [objective] or add an evaluator that measures it",
                    missing.join(", ")
                );
                outcome.error = Some(message.clone());
                fatal = Some(message);
            }
            outcome.state = TrialState::Failed;
        }
        let fatal = fatal.or_else(|| crate::checks::unproduced_metric(&self.config, &outcome));
        self.finish(id, outcome, observer)?;
        if let Some(message) = fatal {
            bail!("{message}");
        }
        Ok(())
    }

    fn finish(
        &mut self,
        id: u64,
        outcome: Outcome,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<()> {
        let span = self.spans.remove(&id).unwrap_or_else(tracing::Span::none);
        let _entered = span.enter();
        let mut trial = self.storage.trial(id)?.context("trial vanished")?;
        trial.state = outcome.state;
        trial.metrics = outcome.metrics.clone();
        trial.error = outcome.error.clone();
        let mut told = self.tell_all(&trial)?;
        // Proposers of duplicates of this trial get its result under their own values.
        for (index, values) in self.waiting_duplicates.remove(&id).unwrap_or_default() {
            let mut obs = self.observation(&trial);
            obs.values = values;
            obs.proposer = self.phases[index].name.clone();
            self.phases[index].handle.tell(&[obs])?;
            let cp = self.checkpoint(&[index])?;
            told.retain(|c| c.strategy_index != index);
            told.extend(cp);
        }
        let cps = told;
        let seconds = self.study_seconds();
        self.storage.finish(id, &outcome, &cps, seconds)?;
        tracing::debug!(state = ?outcome.state, "trial stored");
        let trial = self.storage.trial(id)?.context("trial vanished")?;
        self.finished.push(self.observation(&trial));
        self.account_finished(&trial);
        observer.trial_finished(&trial, &self.progress());
        Ok(())
    }
}

/// What one proposal round produced.
enum Proposed {
    /// A new trial, submitted for evaluation.
    Trial(u64),
    /// A proposal answered without evaluation (duplicate, infeasible) or an exhausted strategy.
    Nothing,
    /// The strategy waits for running trials.
    Wait,
    /// No more proposals: the reason.
    Stop(String),
}

/// Enforces the ask contract: one in-range value per choice, with the plugin named.
fn proposals_len_check(
    descriptor: &SpaceDescriptor,
    values: &[f64],
    plugin: &str,
) -> anyhow::Result<()> {
    descriptor
        .check(values)
        .map_err(|e| anyhow::anyhow!("strategy `{plugin}` proposed an invalid candidate: {e}"))
}

/// Where relative data paths point: `--data-dir`, else what the study stored, else the
/// current directory (made absolute, so later commands run from elsewhere agree).
fn data_root(config: &StudyConfig, dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(root) = &config.data_root {
        return Ok(std::path::absolute(root)?);
    }
    let stored = match &config.storage {
        None => dir
            .join(crate::storage::DB_FILE)
            .exists()
            .then(|| Storage::open_read_only(dir).ok()?.meta("data_root").ok()?)
            .flatten(),
        // A study not yet in the database has no stored root; an unreachable database is
        // reported when the study is opened.
        Some(url) => Storage::connect(url, &config.name, OpenMode::ReadOnly)
            .ok()
            .and_then(|s| s.meta("data_root").ok().flatten()),
    };
    match stored {
        Some(root) => Ok(PathBuf::from(root)),
        None => Ok(std::env::current_dir()?),
    }
}

/// Opens a study directory for reading: its storage and the config it was created with.
pub fn open_stored(dir: &Path) -> anyhow::Result<(Storage, StudyConfig)> {
    read_stored(Storage::open_read_only(dir)?)
}

/// Opens study `name` of a database for reading: its storage and the config it was created
/// (or last resumed) with.
pub fn open_stored_in(
    url: &crate::storage::StorageUrl,
    name: &str,
) -> anyhow::Result<(Storage, StudyConfig)> {
    read_stored(Storage::connect(url, name, OpenMode::ReadOnly)?)
}

fn read_stored(storage: Storage) -> anyhow::Result<(Storage, StudyConfig)> {
    let source = storage.meta("config")?.with_context(|| {
        format!(
            "{} has no stored config; it is not a complete study",
            storage.location()
        )
    })?;
    let path = storage
        .meta("config_path")?
        .unwrap_or_else(|| "study.toml".into());
    let mut config = crate::config::parse(Path::new(&path), &source).with_context(|| {
        format!(
            "the config stored in {} no longer parses",
            storage.location()
        )
    })?;
    config.data_root = storage.meta("data_root")?.map(PathBuf::from);
    Ok((storage, config))
}

/// The best `top` trials of a stored study, best first; with several objectives the Pareto
/// set (all of it when `top` is `None`).
pub fn best_trials(
    storage: &Storage,
    objectives: &[nas_plugin::Objective],
    top: Option<usize>,
) -> anyhow::Result<Vec<TrialRecord>> {
    let names: Vec<&str> = objectives.iter().map(|o| o.metric.as_str()).collect();
    let rows = storage.complete_metric_values(&names)?;
    // Multi-fidelity studies: only results at the highest fidelity reached compete, so a
    // lucky short run does not outrank fully trained candidates.
    let top_fidelity = rows
        .iter()
        .filter_map(|(_, f, _)| *f)
        .fold(None, |m: Option<f64>, f| Some(m.map_or(f, |m| m.max(f))));
    let scored = rows
        .into_iter()
        .filter(|(_, f, _)| top_fidelity.is_none() || f.is_none() || *f == top_fidelity)
        .filter_map(|(id, _, values)| {
            let metrics: Metrics = names
                .iter()
                .zip(values)
                .filter_map(|(n, v)| Some((n.to_string(), v?)))
                .collect();
            objectives::losses(objectives, &metrics).map(|l| (id, l))
        })
        .collect();
    let mut out = Vec::new();
    for id in objectives::rank(scored)
        .into_iter()
        .take(top.unwrap_or(usize::MAX))
    {
        out.extend(storage.trial(id)?);
    }
    Ok(out)
}
