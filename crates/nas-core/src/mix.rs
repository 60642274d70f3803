//! Which strategy proposes next: phases (`until`), a weighted portfolio (`weight`), or an
//! adaptive bandit (`[mix] mode = "bandit"`) crediting strategies whose recent proposals
//! improved the objective.
//!
//! Every choice is a pure function of the study seed and what is stored, so a resumed study
//! picks exactly as an uninterrupted one would.

use std::collections::VecDeque;

use serde::Serialize;

use crate::config::{MixConfig, MixMode, Until};
use crate::seeds::derive_seed;

/// What the mixer knows about one strategy.
#[derive(Clone, Debug)]
pub struct Slot {
    pub until: Option<Until>,
    pub weight: f64,
    /// Trials this strategy proposed that reached the evaluators.
    pub evaluated: u64,
    /// Study seconds spent while this strategy was the active phase.
    pub seconds: f64,
    /// Finished trials of this strategy since the best last improved.
    pub since_improvement: u64,
    /// Improvement flags of its most recent finished proposals (bandit credit).
    pub recent: VecDeque<bool>,
    /// It returned no proposal: skipped from now on (in this run).
    pub exhausted: bool,
}

impl Slot {
    pub fn new(until: Option<Until>, weight: Option<f64>) -> Slot {
        Slot {
            until,
            weight: weight.unwrap_or(1.0),
            evaluated: 0,
            seconds: 0.0,
            since_improvement: 0,
            recent: VecDeque::new(),
            exhausted: false,
        }
    }

    fn phase_done(&self) -> bool {
        match &self.until {
            None => false,
            Some(Until::Trials(n)) => self.evaluated >= *n,
            Some(Until::WallTime(d)) => self.seconds >= d.as_secs_f64(),
            Some(Until::NoImprovement(n)) => self.since_improvement >= *n,
        }
    }

    /// Share of recent proposals that improved the study's best.
    pub fn credit(&self) -> f64 {
        if self.recent.is_empty() {
            0.0
        } else {
            self.recent.iter().filter(|b| **b).count() as f64 / self.recent.len() as f64
        }
    }
}

/// Each strategy's standing, as reported to users.
#[derive(Clone, Debug, Serialize)]
pub struct Standing {
    pub strategy: String,
    pub evaluated: u64,
    pub credit: f64,
    pub weight: f64,
}

pub struct Mixer {
    pub config: MixConfig,
    seed: u64,
}

impl Mixer {
    pub fn new(config: MixConfig, seed: u64) -> Mixer {
        Mixer { config, seed }
    }

    /// Records a finished trial of strategy `index` for the phase and credit bookkeeping.
    pub fn record(&self, slots: &mut [Slot], index: usize, improved: bool, seconds: f64) {
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        slot.since_improvement = if improved {
            0
        } else {
            slot.since_improvement + 1
        };
        slot.seconds += seconds;
        slot.recent.push_back(improved);
        while slot.recent.len() > self.config.window {
            slot.recent.pop_front();
        }
    }

    /// The strategy to ask next (`proposals` = proposals made so far in the study, which
    /// makes the portfolio draw reproducible); `None` when every strategy is exhausted.
    pub fn pick(&self, slots: &[Slot], proposals: u64) -> Option<usize> {
        let live: Vec<usize> = (0..slots.len()).filter(|&i| !slots[i].exhausted).collect();
        if live.is_empty() {
            return None;
        }
        match self.config.mode {
            MixMode::Phases => live
                .iter()
                .copied()
                .find(|&i| !slots[i].phase_done())
                .or(live.last().copied()),
            MixMode::Portfolio => {
                let total: f64 = live.iter().map(|&i| slots[i].weight).sum();
                let u = (derive_seed(self.seed ^ 0x006D_6978, proposals) >> 11) as f64
                    / (1u64 << 53) as f64;
                let mut acc = 0.0;
                for &i in &live {
                    acc += slots[i].weight / total;
                    if u < acc {
                        return Some(i);
                    }
                }
                live.last().copied()
            }
            MixMode::Bandit => {
                // UCB1 on the improvement rate: untried strategies first, then credit plus
                // an exploration bonus that shrinks as a strategy is used.
                let n_total: u64 = live.iter().map(|&i| slots[i].evaluated).sum();
                live.iter().copied().max_by(|&a, &b| {
                    let score = |i: usize| {
                        let s = &slots[i];
                        if s.evaluated == 0 {
                            return f64::INFINITY;
                        }
                        s.credit()
                            + self.config.exploration
                                * ((n_total as f64 + 1.0).ln() / s.evaluated as f64).sqrt()
                    };
                    // Ties go to the earlier strategy.
                    score(a).total_cmp(&score(b)).then(b.cmp(&a))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixer(mode: MixMode) -> Mixer {
        Mixer::new(
            MixConfig {
                mode,
                window: 4,
                exploration: 0.5,
            },
            7,
        )
    }

    #[test]
    fn phases_hand_over_when_done() {
        let m = mixer(MixMode::Phases);
        let mut slots = vec![
            Slot::new(Some(Until::Trials(2)), None),
            Slot::new(None, None),
        ];
        assert_eq!(m.pick(&slots, 0), Some(0));
        slots[0].evaluated = 2;
        assert_eq!(m.pick(&slots, 2), Some(1));
        slots[1].exhausted = true;
        slots[0].exhausted = true;
        assert_eq!(m.pick(&slots, 3), None);
    }

    #[test]
    fn portfolio_follows_the_weights_reproducibly() {
        let m = mixer(MixMode::Portfolio);
        let slots = vec![Slot::new(None, Some(3.0)), Slot::new(None, Some(1.0))];
        let picks: Vec<usize> = (0..4000).map(|p| m.pick(&slots, p).unwrap()).collect();
        let first = picks.iter().filter(|&&i| i == 0).count() as f64 / 4000.0;
        assert!((first - 0.75).abs() < 0.03, "share {first}");
        let again: Vec<usize> = (0..4000).map(|p| m.pick(&slots, p).unwrap()).collect();
        assert_eq!(picks, again);
    }

    #[test]
    fn bandit_prefers_the_strategy_that_improves() {
        let m = mixer(MixMode::Bandit);
        let mut slots = vec![Slot::new(None, None), Slot::new(None, None)];
        // Untried strategies are tried first.
        assert_eq!(m.pick(&slots, 0), Some(0));
        slots[0].evaluated = 1;
        assert_eq!(m.pick(&slots, 1), Some(1));
        for (i, improved) in [(0, false), (1, true), (0, false), (1, true)] {
            slots[i].evaluated += 1;
            m.record(&mut slots, i, improved, 0.0);
        }
        assert!(slots[1].credit() > slots[0].credit());
        assert_eq!(m.pick(&slots, 6), Some(1));
        // The window forgets old successes.
        for _ in 0..4 {
            m.record(&mut slots, 1, false, 0.0);
        }
        assert_eq!(slots[1].credit(), 0.0);
    }
}
