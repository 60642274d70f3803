//! Checks of a config against what its evaluator pipeline really produces, and of settings the
//! TOML schema cannot bound.
//!
//! Evaluators do not declare their metrics up front, so a metric the config relies on is
//! checked on the first trial that went through the whole pipeline (as the objective is): a
//! cost budget on a metric no evaluator reports would never be reached, and a constraint on
//! one would fail every candidate, so both stop the study at once with what to fix.

use crate::config::StudyConfig;
use crate::pipeline::unmeasured_constraints;
use crate::storage::Outcome;
use nas_plugin::TrialState;

/// More evaluations at once than this is a typo, not a machine: each worker is a thread with
/// its own evaluator instances (and ONNX Runtime sessions).
pub const MAX_WORKERS: usize = 256;

/// `[runtime] workers` within bounds, whichever way it was set (config or `--workers`); 0
/// only with a database, where `nas worker` processes evaluate.
pub fn workers(config: &StudyConfig) -> anyhow::Result<()> {
    let n = config.runtime.workers;
    if n == 0 && config.storage.is_some() {
        return Ok(());
    }
    anyhow::ensure!(
        n != 0,
        "{}: `[runtime] workers = 0` leaves every trial to `nas worker` processes, which needs a database: \
         add `[storage] url = \"postgresql://...\"` (or --storage URL), or set workers to 1 or more",
        config.path.display()
    );
    anyhow::ensure!(
        (1..=MAX_WORKERS).contains(&n),
        "{}: `[runtime] workers = {n}` is out of range: use 1 to {MAX_WORKERS} (about the number of CPU cores; each worker evaluates one trial with its own evaluators)",
        config.path.display()
    );
    Ok(())
}

/// Why the study cannot go on, when this outcome shows the pipeline never produces a metric
/// the config depends on.
pub fn unproduced_metric(config: &StudyConfig, outcome: &Outcome) -> Option<String> {
    let produced = || {
        let names: Vec<&str> = outcome.metrics.keys().map(String::as_str).collect();
        names.join(", ")
    };
    // The pipeline ran to its end and only the constrained metrics were missing.
    let missing = unmeasured_constraints(&config.constraints, &outcome.metrics);
    if outcome.state == TrialState::Failed
        && !missing.is_empty()
        && outcome.error.as_deref()
            == crate::pipeline::unmeasured_error(&config.constraints, &outcome.metrics).as_deref()
    {
        return Some(format!(
            "{}: [constraints] on {}: no evaluator produces {} (the pipeline produces: {}), so every candidate would fail; remove the constraint or add an evaluator that measures it",
            table_location(config, "[constraints]"),
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            produced()
        ));
    }
    if outcome.state == TrialState::Complete
        && let Some(cost) = &config.budget.cost
        && !outcome.metrics.contains_key(&cost.metric)
    {
        return Some(format!(
            "{}: [budget] cost = {{ metric = \"{}\" }}: no evaluator produces `{}` (the pipeline produces: {}), so the cost budget would never be reached; use one of those metrics or add an evaluator that reports it",
            table_location(config, "[budget]"),
            cost.metric,
            cost.metric,
            produced()
        ));
    }
    None
}

/// `file:line` of a table's header in the config (`file` alone if it is not found).
fn table_location(config: &StudyConfig, header: &str) -> String {
    let line = config
        .source
        .lines()
        .position(|l| l.trim_start().starts_with(header))
        .map(|i| format!(":{}", i + 1))
        .unwrap_or_default();
    format!("{}{line}", config.path.display())
}
