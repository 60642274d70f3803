//! The pruning decision of the cascade, from the values seen earlier in the study.

use crate::config::{Cascade, Rule};

impl Cascade {
    /// Whether a candidate scoring `value` goes on to the later evaluators, given the values of
    /// the candidates seen before it. Everything passes during the warm-up.
    pub fn keeps(&self, seen: &[f64], value: f64) -> bool {
        if seen.len() < self.warmup {
            return true;
        }
        match self.rule {
            Rule::Threshold(t) => value >= t,
            Rule::KeepTop(fraction) => {
                // Rank among everything seen, itself included; ties favour the candidate.
                let n = seen.len() + 1;
                let rank = 1 + seen.iter().filter(|&&v| v > value).count();
                rank as f64 <= (fraction * n as f64).ceil().max(1.0)
            }
        }
    }
}
