//! How trials are shown: the stable JSON object and the text table.

use std::path::Path;

use nas_core::final_phase::{FinalReport, resolve_model};
use nas_core::storage::TrialRecord;
use serde_json::json;

/// The JSON shape scripts rely on: `id`, `state`, `strategy`, `arch`, `metrics`, `error`
/// (plus extra fields that may grow).
pub fn to_json(t: &TrialRecord) -> serde_json::Value {
    json!({
        "id": t.id,
        "state": t.state.as_str(),
        "strategy": t.strategy,
        "arch": t.arch,
        "metrics": t.metrics,
        "error": t.error,
        "values": t.values,
        "fidelity": t.fidelity,
        // The trial its proposer derived it from (mutation), or null.
        "parent": t.parent,
        "seconds": match (t.started_at, t.finished_at) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        },
    })
}

/// Adds a `final` object to a trial object when the final phase retrained the trial: its
/// test metrics, epochs, training seconds and model path (from the study folder `dir`), and
/// `ensemble` when the trial is a member of the stored ensemble. Other fields are unchanged.
pub fn with_final(
    mut trial: serde_json::Value,
    trial_id: u64,
    report: Option<&FinalReport>,
    dir: &Path,
) -> serde_json::Value {
    let Some(report) = report else {
        return trial;
    };
    let Some(m) = report.member(trial_id) else {
        return trial;
    };
    let path = |p: &Path| resolve_model(dir, p).display().to_string();
    let mut fin = json!({
        "test_loss": m.test_loss,
        "epochs": m.epochs,
        "train_seconds": m.train_seconds,
        "model": m.model.as_deref().map(path),
    });
    insert_test_scores(&mut fin, m.test_accuracy, m.test_errors.as_ref());
    if let Some(e) = report
        .ensemble
        .as_ref()
        .filter(|e| e.members.contains(&trial_id))
    {
        let mut ensemble = json!({
            "members": e.members,
            "model": e.model.as_deref().map(path),
        });
        insert_test_scores(&mut ensemble, e.test_accuracy, e.test_errors.as_ref());
        fin["ensemble"] = ensemble;
    }
    trial["final"] = fin;
    trial
}

/// `test_accuracy` of a classifier, or `test_mse`, `test_rmse`, `test_mae` and `test_r2` of a
/// regression model (the names the train evaluator gives its metrics).
fn insert_test_scores(
    out: &mut serde_json::Value,
    accuracy: Option<f64>,
    errors: Option<&nas_train::RegressionErrors>,
) {
    if let Some(a) = accuracy {
        out["test_accuracy"] = json!(a);
    }
    for (name, value) in errors.map(|e| e.metrics("test")).unwrap_or_default() {
        out[name] = json!(value);
    }
}

pub fn format_metric(name: &str, v: f64) -> String {
    match name {
        "params" | "flops" => format!("{name}={}", v as u64),
        _ if v.fract() == 0.0 && v.abs() < 1e15 => format!("{name}={}", v as i64),
        // Scores such as synflow span dozens of orders of magnitude.
        _ if v.is_finite() && v.abs() >= 1e15 => format!("{name}={v:.4e}"),
        _ => format!("{name}={v:.4}"),
    }
}

pub fn metrics_line(t: &TrialRecord) -> String {
    t.metrics
        .iter()
        .map(|(k, v)| format_metric(k, *v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line per trial for humans.
pub fn text_line(t: &TrialRecord) -> String {
    let mut line = format!(
        "{:>6}  {:<10}  {:<10}  {}  {}",
        t.id,
        t.state.as_str(),
        t.strategy,
        t.arch,
        metrics_line(t)
    );
    if let Some(e) = &t.error {
        line.push_str(&format!("  [{e}]"));
    }
    line
}
