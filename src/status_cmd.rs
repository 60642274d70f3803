//! `nas status --workers`: the state of a study's queue and of the workers serving it, read
//! with a few small queries (no trial list), so it stays quick on a study of any size.

use nas_core::storage::{Storage, TrialRecord, WorkerRecord};
use nas_core::study_ref::StudyRef;

/// A worker counts as live while its last heartbeat is younger than the study's lease.
fn is_live(w: &WorkerRecord, clock: f64, lease: f64) -> bool {
    !w.exited && w.last_heartbeat >= clock - lease
}

fn worker_json(w: &WorkerRecord, clock: f64, lease: f64) -> serde_json::Value {
    serde_json::json!({
        "name": w.name,
        "host": w.host,
        "pid": w.pid,
        "started_at": w.started_at,
        "last_heartbeat": w.last_heartbeat,
        "seconds_since_heartbeat": (clock - w.last_heartbeat).max(0.0),
        "trials_done": w.trials_done,
        "current_trial": w.current_trial,
        "live": is_live(w, clock, lease),
        "exited": w.exited,
    })
}

fn requeued_json(t: &TrialRecord) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "state": t.state.as_str(),
        "requeues": t.requeues,
        "attempts": t.attempts,
        "worker": t.worker,
        "error": t.error,
    })
}

pub fn workers(study: &StudyRef, json: bool) -> anyhow::Result<()> {
    let (storage, config) = study.open()?;
    let lease = config.runtime.lease.as_secs_f64();
    let clock = storage.clock()?;
    let counts = storage.state_counts()?;
    let workers = storage.workers()?;
    let requeued = storage.requeued()?;
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), (*n).into()))
            .collect();
        let out = serde_json::json!({
            "study": config.name,
            "storage": storage.location(),
            "counts": counts,
            "workers": workers.iter().map(|w| worker_json(w, clock, lease)).collect::<Vec<_>>(),
            "requeued": requeued.iter().map(requeued_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("study `{}` ({})", config.name, study.place());
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let line: Vec<String> = counts
        .iter()
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    println!("{total} trials: {}", line.join(", "));
    print_workers(&storage, &workers, &requeued, clock, lease);
    Ok(())
}

/// The workers table and the requeued trials, as `nas status` prints them.
pub fn print_workers(
    storage: &Storage,
    workers: &[WorkerRecord],
    requeued: &[TrialRecord],
    clock: f64,
    lease: f64,
) {
    if workers.is_empty() {
        if storage.is_shared() {
            println!("no worker has served this study yet (start one with `nas worker`)");
        }
    } else {
        let live = workers.iter().filter(|w| is_live(w, clock, lease)).count();
        println!("workers ({live} live of {}):", workers.len());
        println!(
            "  {:<28} {:<16} {:>8}  {:>14}  {:>6}  {:>7}  state",
            "name", "host", "pid", "last heartbeat", "done", "trial"
        );
        for w in workers {
            let state = if w.exited {
                "exited"
            } else if is_live(w, clock, lease) {
                "live"
            } else {
                "silent"
            };
            println!(
                "  {:<28} {:<16} {:>8}  {:>12.1}s  {:>6}  {:>7}  {state}",
                w.name,
                w.host,
                w.pid,
                (clock - w.last_heartbeat).max(0.0),
                w.trials_done,
                w.current_trial.map_or("-".into(), |t| t.to_string()),
            );
        }
    }
    if !requeued.is_empty() {
        let ids: Vec<String> = requeued
            .iter()
            .map(|t| format!("{} ({}x, {})", t.id, t.requeues, t.state.as_str()))
            .collect();
        println!(
            "requeued trials (a worker stopped renewing its lease): {}",
            ids.join(", ")
        );
    }
}

/// The workers section of the full `nas status`, for a study in a database.
pub fn print_for_status(storage: &Storage, lease: f64) -> anyhow::Result<()> {
    if !storage.is_shared() && storage.workers()?.is_empty() {
        return Ok(());
    }
    let clock = storage.clock()?;
    print_workers(
        storage,
        &storage.workers()?,
        &storage.requeued()?,
        clock,
        lease,
    );
    Ok(())
}
