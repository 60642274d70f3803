//! The study's finished trials as evaluators observe them (`Evaluator::observe`): an
//! append-only log the study (or a worker reading shared storage) fills, which every pipeline
//! of the process reads from its own position.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use nas_plugin::{Objective, Observation, TrialState};

use crate::objectives;
use crate::storage::TrialRecord;

/// A finished trial as strategies and evaluators are told it.
pub fn observation(t: &TrialRecord, objectives: &[Objective]) -> Observation {
    Observation {
        trial_id: t.id,
        values: t.values.clone(),
        fidelity: t.fidelity,
        state: t.state,
        losses: if t.state == TrialState::Complete {
            objectives::losses(objectives, &t.metrics).unwrap_or_default()
        } else {
            Vec::new()
        },
        metrics: t.metrics.clone(),
        proposer: t.strategy.clone(),
    }
}

/// The finished trials among `trials`, in the order they finished (ties by id).
pub fn in_finishing_order(trials: &[TrialRecord]) -> Vec<&TrialRecord> {
    let mut finished: Vec<&TrialRecord> = trials.iter().filter(|t| t.state.is_finished()).collect();
    finished.sort_by(|a, b| {
        let at = |t: &TrialRecord| t.finished_at.unwrap_or(f64::INFINITY);
        at(a).total_cmp(&at(b)).then(a.id.cmp(&b.id))
    });
    finished
}

#[derive(Default)]
struct Log {
    trials: Vec<Observation>,
    ids: HashSet<u64>,
}

/// Finished trials in the order they were added, each trial once. Clones share the log.
#[derive(Clone, Default)]
pub struct FinishedTrials(Arc<Mutex<Log>>);

impl FinishedTrials {
    /// Adds a finished trial unless it is there already.
    pub fn push(&self, trial: Observation) {
        let mut log = self.0.lock().expect("finished-trials log");
        if log.ids.insert(trial.trial_id) {
            log.trials.push(trial);
        }
    }

    /// Adds the finished trials among `trials` that are not there yet, in finishing order.
    pub fn push_stored(&self, trials: &[TrialRecord], objectives: &[Objective]) {
        for t in in_finishing_order(trials) {
            self.push(observation(t, objectives));
        }
    }

    /// The trials from position `from` on.
    pub fn since(&self, from: usize) -> Vec<Observation> {
        let log = self.0.lock().expect("finished-trials log");
        log.trials.get(from..).unwrap_or_default().to_vec()
    }
}
