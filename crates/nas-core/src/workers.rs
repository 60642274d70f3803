//! Evaluating several trials at once: one evaluator pipeline per worker thread.
//!
//! The study hands out trials in order and takes their results back in the SAME order
//! (waiting for the oldest first), so strategies are told exactly what they would be told in
//! any other run with the same seed and worker count: results are reproducible, while up to
//! `workers` evaluations run concurrently.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use anyhow::Context;
use nas_plugin::EvalRequest;
use tracing::Span;

use crate::pipeline::Pipeline;
use crate::storage::Outcome;

/// A trial to evaluate, with its span (log events of the evaluation are reported in it).
type Job = (EvalRequest, Span);

pub enum Workers {
    /// One worker: the trial is evaluated on the calling thread when its result is needed.
    Inline {
        pipeline: Pipeline,
        queued: HashMap<u64, Job>,
    },
    Threads {
        jobs: Option<Sender<Job>>,
        results: Receiver<(u64, Outcome)>,
        done: HashMap<u64, Outcome>,
        handles: Vec<JoinHandle<()>>,
    },
}

impl Workers {
    pub fn new(mut pipelines: Vec<Pipeline>) -> Workers {
        if pipelines.len() == 1 {
            return Workers::Inline {
                pipeline: pipelines.pop().expect("one pipeline"),
                queued: HashMap::new(),
            };
        }
        let (job_tx, job_rx) = channel::<Job>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (result_tx, results) = channel();
        let handles = pipelines
            .into_iter()
            .enumerate()
            .map(|(i, mut pipeline)| {
                let jobs = job_rx.clone();
                let results = result_tx.clone();
                std::thread::Builder::new()
                    .name(format!("nas-worker-{i}"))
                    .spawn(move || {
                        loop {
                            // The lock is held only while taking the next job.
                            let job = jobs.lock().expect("job queue").recv();
                            let Ok((request, span)) = job else { break };
                            let id = request.trial_id;
                            let outcome = evaluate(&mut pipeline, request, &span);
                            if results.send((id, outcome)).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("worker thread starts")
            })
            .collect();
        Workers::Threads {
            jobs: Some(job_tx),
            results,
            done: HashMap::new(),
            handles,
        }
    }

    /// Queues a trial; `span` is the trial's span, entered while it is evaluated.
    pub fn submit(&mut self, request: EvalRequest, span: Span) -> anyhow::Result<()> {
        match self {
            Workers::Inline { queued, .. } => {
                queued.insert(request.trial_id, (request, span));
                Ok(())
            }
            Workers::Threads { jobs, .. } => jobs
                .as_ref()
                .context("workers already stopped")?
                .send((request, span))
                .context("every worker thread has stopped"),
        }
    }

    /// The outcome of trial `id`, waiting for it if needed.
    pub fn wait(&mut self, id: u64) -> anyhow::Result<Outcome> {
        match self {
            Workers::Inline { pipeline, queued } => {
                let (request, span) = queued.remove(&id).context("trial was never submitted")?;
                Ok(evaluate(pipeline, request, &span))
            }
            Workers::Threads { results, done, .. } => loop {
                if let Some(outcome) = done.remove(&id) {
                    return Ok(outcome);
                }
                let (got, outcome) = results
                    .recv()
                    .context("a worker thread stopped before finishing its trial")?;
                done.insert(got, outcome);
            },
        }
    }
}

/// Runs the pipeline on one trial inside the trial's span.
fn evaluate(pipeline: &mut Pipeline, request: EvalRequest, span: &Span) -> Outcome {
    span.in_scope(|| {
        tracing::debug!("evaluating");
        let outcome = pipeline.run(request);
        tracing::debug!(state = ?outcome.state, error = ?outcome.error, "evaluated");
        outcome
    })
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Workers::Threads { jobs, handles, .. } = self {
            // Closing the queue ends each worker after its current trial.
            jobs.take();
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
