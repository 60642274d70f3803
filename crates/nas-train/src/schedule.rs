//! Learning rate per optimizer step, computed in Rust and fed to the step graph as `lr`.

use serde::{Deserialize, Serialize};

use crate::config::Schedule;

/// A schedule over a fixed number of steps (the span). Steps past the span keep the last
/// step's rate, so training longer than planned continues at the final (lowest) rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub base: f64,
    pub kind: Schedule,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let total = self.total_steps.max(1);
        let s = step.min(total - 1);
        let warmup = self.warmup_steps.min(total - 1);
        if s < warmup {
            // Linear ramp that reaches `base` on the first step after warm-up.
            return self.base * (s + 1) as f64 / (warmup + 1) as f64;
        }
        match self.kind {
            Schedule::Constant => self.base,
            Schedule::Cosine => {
                let t = (s - warmup) as f64;
                let span = (total - warmup) as f64;
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * t / span).cos())
            }
            Schedule::Step => {
                let passed = [total / 2, total * 3 / 4]
                    .iter()
                    .filter(|&&m| s >= m)
                    .count();
                self.base * 0.1f64.powi(passed as i32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: Schedule, warmup: u64, total: u64) -> LrSchedule {
        LrSchedule {
            base: 0.1,
            kind,
            warmup_steps: warmup,
            total_steps: total,
        }
    }

    #[test]
    fn cosine_starts_at_base_and_decays_towards_zero() {
        let s = sched(Schedule::Cosine, 0, 100);
        assert_eq!(s.lr(0), 0.1);
        assert!((s.lr(50) - 0.05).abs() < 1e-12);
        assert!(s.lr(99) > 0.0 && s.lr(99) < 1e-4);
        // Past the span: the last rate.
        assert_eq!(s.lr(500), s.lr(99));
        assert!((1..100).all(|i| s.lr(i) < s.lr(i - 1)));
    }

    #[test]
    fn warmup_is_linear_then_the_schedule_starts() {
        let s = sched(Schedule::Cosine, 4, 104);
        let got: Vec<f64> = (0..5).map(|i| s.lr(i)).collect();
        let want = [0.02, 0.04, 0.06, 0.08, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert!((s.lr(54) - 0.05).abs() < 1e-12);
        let c = sched(Schedule::Constant, 2, 10);
        assert_eq!(c.lr(9), 0.1);
        assert!((c.lr(0) - 0.1 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn step_decays_at_half_and_three_quarters() {
        let s = sched(Schedule::Step, 0, 100);
        assert_eq!(s.lr(49), 0.1);
        assert!((s.lr(50) - 0.01).abs() < 1e-12);
        assert!((s.lr(74) - 0.01).abs() < 1e-12);
        assert!((s.lr(75) - 0.001).abs() < 1e-12);
    }
}
