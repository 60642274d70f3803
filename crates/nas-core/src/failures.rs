//! Telling a misconfigured study from unlucky candidates: when the first evaluated trials of a
//! run all fail with the same error, every further trial would too (an execution provider
//! that is not there, a data file that is missing, ...), so the study stops with that error
//! instead of burning its budget and exiting as if it had succeeded.

use nas_plugin::TrialState;

use crate::storage::Outcome;

/// Evaluated trials in a row, from the start of a run, that must fail alike to stop the study.
pub const FIRST_TRIALS: u64 = 5;

#[derive(Debug, Default)]
pub struct FailureWatch {
    /// Trials of this run that came back from the evaluators.
    seen: u64,
    /// The shared error so far; `None` before the first trial, and for good once any trial
    /// did not fail, or failed differently.
    common: Option<String>,
}

impl FailureWatch {
    /// Records one evaluated trial; the message to stop with once the first
    /// [`FIRST_TRIALS`] have all failed with the same error.
    pub fn record(&mut self, outcome: &Outcome) -> Option<String> {
        if self.disarmed() {
            return None;
        }
        self.seen += 1;
        let error = match (&outcome.state, &outcome.error) {
            (TrialState::Failed, Some(e)) => e,
            _ => {
                self.common = None;
                return None;
            }
        };
        // A configuration fault fails every candidate with the very same message; failures
        // that depend on the candidate (training diverging at different steps, ...) differ.
        match &self.common {
            None => self.common = Some(error.clone()),
            Some(c) if c == error => {}
            Some(_) => {
                self.common = None;
                return None;
            }
        }
        (self.seen >= FIRST_TRIALS).then(|| self.message())
    }

    /// At the end of a run: the message to stop with when every trial it evaluated (fewer
    /// than [`FIRST_TRIALS`]) failed with the same error.
    pub fn all_failed_alike(&self) -> Option<String> {
        self.common.as_ref().map(|_| self.message())
    }

    /// A trial of this run did not fail, or failed differently: nothing to stop for.
    fn disarmed(&self) -> bool {
        self.seen > 0 && self.common.is_none()
    }

    fn message(&self) -> String {
        let error = self.common.as_deref().unwrap_or_default();
        let first = if self.seen == 1 {
            "the only trial evaluated".to_string()
        } else {
            format!("the first {} trials evaluated all", self.seen)
        };
        format!(
            "{first} failed with the same error, so the configuration is probably at fault: {error}\n{}\
             Fix it and run the same command again: the study continues (the failed trials stay stored)",
            hint(error).map(|h| format!("{h}\n")).unwrap_or_default()
        )
    }
}

/// What to change for the errors a config typically causes.
fn hint(error: &str) -> Option<&'static str> {
    let e = error.to_lowercase();
    if e.contains("fallback") {
        // The error already says how to fall back.
        None
    } else if e.contains("execution provider") || e.contains("cuda") || e.contains("tensorrt") {
        Some(
            "hint: the execution provider is not available here; add `fallback = \"cpu\"` under [runtime], or set `execution_provider = \"cpu\"`",
        )
    } else if e.contains("onnx runtime") || e.contains("libonnxruntime") {
        Some(
            "hint: ONNX Runtime could not be loaded; run `cargo xtask ort` and set ORT_DYLIB_PATH, or `[runtime] ort_library`",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(state: TrialState, error: Option<&str>) -> Outcome {
        Outcome {
            state,
            metrics: Default::default(),
            details: serde_json::Value::Null,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn the_same_error_on_the_first_trials_stops_with_it() {
        let mut w = FailureWatch::default();
        let e = "execution provider `cuda` is not available";
        for _ in 1..FIRST_TRIALS {
            assert_eq!(w.record(&outcome(TrialState::Failed, Some(e))), None);
        }
        let stop = w
            .record(&outcome(TrialState::Failed, Some(e)))
            .expect("stops");
        assert!(stop.contains("the first 5 trials"), "{stop}");
        assert!(stop.contains("fallback = \"cpu\""), "{stop}");
    }

    #[test]
    fn one_success_or_a_different_error_means_unlucky_candidates() {
        let mut w = FailureWatch::default();
        w.record(&outcome(TrialState::Failed, Some("out of memory")));
        w.record(&outcome(TrialState::Complete, None));
        for _ in 0..10 {
            assert_eq!(
                w.record(&outcome(TrialState::Failed, Some("out of memory"))),
                None
            );
        }
        assert_eq!(w.all_failed_alike(), None);

        // Failures that depend on the candidate differ in their details.
        let mut w = FailureWatch::default();
        for step in 1..=FIRST_TRIALS + 2 {
            let e = format!("training diverged at epoch 1 step {step} (loss NaN)");
            assert_eq!(w.record(&outcome(TrialState::Failed, Some(&e))), None);
        }
        assert_eq!(w.all_failed_alike(), None);
    }

    #[test]
    fn a_short_run_that_only_failed_alike_is_an_error_too() {
        let mut w = FailureWatch::default();
        assert_eq!(w.all_failed_alike(), None, "nothing evaluated");
        w.record(&outcome(TrialState::Failed, Some("no such file data.csv")));
        w.record(&outcome(TrialState::Failed, Some("no such file data.csv")));
        let stop = w.all_failed_alike().expect("an error");
        assert!(stop.contains("the first 2 trials"), "{stop}");
        assert!(stop.contains("no such file data.csv"), "{stop}");
    }
}
