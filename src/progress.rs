//! Search progress: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use nas_core::storage::TrialRecord;
use nas_core::study::{Observer, Progress};
use nas_plugin::TrialState;

use crate::trial_view::{format_metric, metrics_line};

pub struct SearchProgress {
    bar: Option<ProgressBar>,
    objective: String,
    last_line: Option<Instant>,
    started: Instant,
    evaluated_at_start: Option<u64>,
}

impl SearchProgress {
    pub fn new(objective: &str, budget_trials: Option<u64>) -> SearchProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(budget_trials.unwrap_or(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} trials  eta {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        SearchProgress {
            bar,
            objective: objective.to_string(),
            last_line: None,
            started: Instant::now(),
            evaluated_at_start: None,
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn best_text(&self, p: &Progress) -> String {
        match p.best {
            Some((v, id)) => format!("best {} (trial {id})", format_metric(&self.objective, v)),
            None => "no complete trial yet".to_string(),
        }
    }

    /// Remaining time from this run's pace, for the plain-line output.
    fn eta(&mut self, p: &Progress) -> String {
        let start = *self
            .evaluated_at_start
            .get_or_insert(p.evaluated.saturating_sub(1));
        let done = p.evaluated.saturating_sub(start);
        let by_trials = p.budget_trials.and_then(|n| {
            (done > 0).then(|| {
                let per = self.started.elapsed().as_secs_f64() / done as f64;
                per * n.saturating_sub(p.evaluated) as f64
            })
        });
        let by_time = p.budget_seconds.map(|b| (b - p.study_seconds).max(0.0));
        match (by_trials, by_time) {
            (Some(a), Some(b)) => format!("{:.0}s", a.min(b)),
            (Some(a), None) | (None, Some(a)) => format!("{a:.0}s"),
            (None, None) => "?".into(),
        }
    }
}

impl nas_core::final_phase::FinalObserver for SearchProgress {
    fn note(&mut self, message: &str) {
        Observer::note(self, message);
    }
}

impl Observer for SearchProgress {
    fn trial_finished(&mut self, trial: &TrialRecord, p: &Progress) {
        let best = self.best_text(p);
        // Why a trial failed is always shown: it is usually something to fix.
        let failure = (trial.state == TrialState::Failed).then(|| {
            format!(
                "trial {} failed: {}",
                trial.id,
                trial.error.as_deref().unwrap_or("no reason given")
            )
        });
        if let Some(bar) = &self.bar {
            if let Some(f) = &failure {
                bar.println(f);
            }
            bar.set_position(p.evaluated);
            bar.set_message(best);
            return;
        }
        // Plain lines: every trial, but at most a few per second on fast studies.
        let now = Instant::now();
        if self
            .last_line
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
            && p.budget_trials != Some(p.evaluated)
        {
            if let Some(f) = failure {
                eprintln!("{f}");
            }
            return;
        }
        self.last_line = Some(now);
        let budget = p
            .budget_trials
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let eta = self.eta(p);
        eprintln!(
            "trial {} {} [{}] {}  |  {}/{} evaluated, {best}, eta {eta}",
            trial.id,
            trial.state.as_str(),
            trial.arch,
            metrics_line(trial),
            p.evaluated,
            budget,
        );
        if let Some(e) = trial.error.as_deref().filter(|_| failure.is_some()) {
            eprintln!("  reason: {e}");
        }
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }

    /// A line per epoch; on a terminal the bar's message also shows the epoch and the
    /// architecture derived so far while the supernet trains.
    fn supernet_epoch(&mut self, p: &nas_core::oneshot::SupernetProgress<'_>) {
        let line = nas_core::study::supernet_line(p);
        match &self.bar {
            Some(bar) => {
                bar.println(&line);
                bar.set_message(format!(
                    "{}: supernet epoch {}/{}, derived {}",
                    p.strategy, p.epoch.epoch, p.epochs, p.arch
                ));
            }
            None => eprintln!("{line}"),
        }
    }
}
