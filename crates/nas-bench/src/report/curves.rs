//! Anytime curves of a search run: the incumbent (the trial with the best search signal so
//! far) after each evaluated trial and over cumulative cost, and the measures built on them:
//! regret to a known optimum, the area under the regret curve, queries to reach a threshold.
//!
//! The incumbent is chosen by the *search signal* (e.g. validation accuracy) and reported by
//! its *score* (e.g. test accuracy), so a search is never credited for a test result it could
//! not have picked. Ties keep the earlier trial.

use nas_plugin::Direction;

/// `a` is strictly better than `b` in `direction`.
pub fn better(a: f64, b: f64, direction: Direction) -> bool {
    match direction {
        Direction::Minimize => a < b,
        Direction::Maximize => a > b,
    }
}

/// One evaluated trial of a run, in evaluation order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The search signal; `None` when the trial did not complete or lacks it.
    pub select: Option<f64>,
    /// The score reported for this trial (`None` when it lacks one).
    pub score: Option<f64>,
    /// The trial's own cost (e.g. simulated training seconds); 0 when unknown.
    pub cost: f64,
}

/// After each evaluated trial: the incumbent's score and the cumulative cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trajectory {
    /// The incumbent's score (`None` before the first trial with a search signal).
    pub score: Vec<Option<f64>>,
    /// Cumulative cost including this trial.
    pub time: Vec<f64>,
}

/// The incumbent trajectory of a run.
pub fn trajectory(steps: &[Step], select: Direction) -> Trajectory {
    let mut best: Option<(f64, Option<f64>)> = None;
    let mut out = Trajectory::default();
    let mut time = 0.0;
    for s in steps {
        if let Some(v) = s.select.filter(|v| v.is_finite())
            && best.is_none_or(|(b, _)| better(v, b, select))
        {
            best = Some((v, s.score));
        }
        if s.cost.is_finite() {
            time += s.cost;
        }
        out.score.push(best.and_then(|(_, score)| score));
        out.time.push(time);
    }
    out
}

impl Trajectory {
    /// Evaluated trials.
    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    /// The trials that finished within `seconds` of cumulative cost.
    pub fn cut_time(&self, seconds: f64) -> Trajectory {
        let n = self.time.iter().take_while(|t| **t <= seconds).count();
        self.cut_trials(n)
    }

    /// The first `n` trials.
    pub fn cut_trials(&self, n: usize) -> Trajectory {
        let n = n.min(self.len());
        Trajectory {
            score: self.score[..n].to_vec(),
            time: self.time[..n].to_vec(),
        }
    }

    /// The incumbent's score after `n >= 1` trials; a shorter run keeps its last incumbent.
    pub fn after_trials(&self, n: usize) -> Option<f64> {
        if n == 0 || self.is_empty() {
            return None;
        }
        self.score[n.min(self.len()) - 1]
    }

    /// The incumbent's score once `t` of cumulative cost is spent (`None` before the first
    /// trial finished).
    pub fn at_time(&self, t: f64) -> Option<f64> {
        let n = self.time.iter().take_while(|x| **x <= t).count();
        self.after_trials(n)
    }

    /// The incumbent's score at the end of the run.
    pub fn final_score(&self) -> Option<f64> {
        self.score.last().copied().flatten()
    }

    /// Cumulative cost at the end of the run.
    pub fn total_time(&self) -> f64 {
        self.time.last().copied().unwrap_or(0.0)
    }

    /// Regret after each trial (see [`regret`]).
    pub fn regrets(&self, optimum: f64, direction: Direction) -> Vec<Option<f64>> {
        self.score
            .iter()
            .map(|s| s.map(|s| regret(s, optimum, direction)))
            .collect()
    }
}

/// How far a score is from the optimum (0 at the optimum, positive when worse).
pub fn regret(score: f64, optimum: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Maximize => optimum - score,
        Direction::Minimize => score - optimum,
    }
}

/// Regrets with the leading `None`s (no incumbent yet) replaced by the first known regret;
/// `None` when there is none at all.
fn filled(regrets: &[Option<f64>]) -> Option<Vec<f64>> {
    let first = regrets.iter().flatten().next().copied()?;
    let mut last = first;
    Some(
        regrets
            .iter()
            .map(|r| {
                if let Some(r) = r {
                    last = *r;
                }
                last
            })
            .collect(),
    )
}

/// Area under the regret-per-trial curve over trials `1..=budget`, divided by `budget`: the
/// mean regret of the incumbent over the run. A run shorter than the budget keeps its last
/// regret; trials before the first incumbent count with the first incumbent's regret.
pub fn auc_trials(regrets: &[Option<f64>], budget: usize) -> Option<f64> {
    if budget == 0 {
        return None;
    }
    let r = filled(regrets)?;
    let last = *r.last()?;
    let sum: f64 = (0..budget).map(|i| r.get(i).copied().unwrap_or(last)).sum();
    Some(sum / budget as f64)
}

/// Area under the regret-over-cost step curve on `[0, horizon]`, divided by `horizon`.
/// `times` are cumulative costs after each trial; the regret before the first trial finished
/// is the first incumbent's, and after the last trial the last one continues.
pub fn auc_time(times: &[f64], regrets: &[Option<f64>], horizon: f64) -> Option<f64> {
    if horizon.is_nan() || horizon <= 0.0 {
        return None;
    }
    let r = filled(regrets)?;
    let mut area = 0.0;
    let mut prev_t = 0.0;
    let mut prev_r = r[0];
    for (t, r) in times.iter().zip(&r) {
        let t = t.min(horizon);
        if t > prev_t {
            area += prev_r * (t - prev_t);
            prev_t = t;
        }
        prev_r = *r;
        if prev_t >= horizon {
            break;
        }
    }
    if horizon > prev_t {
        area += prev_r * (horizon - prev_t);
    }
    Some(area / horizon)
}

/// Trials until the incumbent's regret is at most `threshold` (1-based); `None` if never.
pub fn queries_to(regrets: &[Option<f64>], threshold: f64) -> Option<usize> {
    // A tolerance for the decimal rounding of tabulated accuracies.
    regrets
        .iter()
        .position(|r| r.is_some_and(|r| r <= threshold + 1e-12))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(select: Option<f64>, score: f64, cost: f64) -> Step {
        Step {
            select,
            score: Some(score),
            cost,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn incumbent_follows_the_search_signal_not_the_score() {
        let steps = [
            step(None, 0.99, 1.0), // failed: no signal
            step(Some(0.80), 0.90, 2.0),
            step(Some(0.70), 0.95, 1.0), // better score, worse signal: not picked
            step(Some(0.85), 0.88, 3.0),
            step(Some(0.85), 0.99, 1.0), // tie: the earlier trial stays
        ];
        let t = trajectory(&steps, Direction::Maximize);
        assert_eq!(
            t.score,
            vec![None, Some(0.90), Some(0.90), Some(0.88), Some(0.88)]
        );
        assert_eq!(t.time, vec![1.0, 3.0, 4.0, 7.0, 8.0]);
        assert_eq!(t.final_score(), Some(0.88));
        assert_eq!(t.after_trials(3), Some(0.90));
        assert_eq!(t.after_trials(100), Some(0.88));
        assert_eq!(t.at_time(0.5), None);
        assert_eq!(t.at_time(3.5), Some(0.90));
        assert_eq!(t.cut_time(4.0).len(), 3);
        let min = trajectory(&steps, Direction::Minimize);
        assert_eq!(min.final_score(), Some(0.95));
    }

    #[test]
    fn regret_is_positive_when_worse() {
        assert!(close(regret(0.90, 0.94, Direction::Maximize), 0.04));
        assert!(close(regret(12.0, 10.0, Direction::Minimize), 2.0));
    }

    #[test]
    fn auc_over_trials_is_the_mean_regret_with_the_budget_as_horizon() {
        let r = [None, Some(0.4), Some(0.2), Some(0.1)];
        // Leading None takes the first regret: (0.4 + 0.4 + 0.2 + 0.1) / 4.
        assert!(close(auc_trials(&r, 4).unwrap(), 1.1 / 4.0));
        // A short run keeps its last regret up to the budget.
        assert!(close(auc_trials(&r, 6).unwrap(), 1.3 / 6.0));
        // A budget below the run length looks at the first trials only.
        assert!(close(auc_trials(&r, 2).unwrap(), 0.4));
        assert_eq!(auc_trials(&[None, None], 2), None);
        assert_eq!(auc_trials(&r, 0), None);
    }

    #[test]
    fn auc_over_time_integrates_the_step_curve() {
        let times = [1.0, 3.0, 4.0];
        let r = [Some(0.5), Some(0.3), Some(0.1)];
        // [0,1): 0.5 (first regret), [1,3): 0.5, [3,4): 0.3, [4,10]: 0.1.
        let expected = (0.5 * 3.0 + 0.3 * 1.0 + 0.1 * 6.0) / 10.0;
        assert!(close(auc_time(&times, &r, 10.0).unwrap(), expected));
        // A horizon inside the run stops there.
        let expected = (0.5 * 3.0 + 0.3 * 0.5) / 3.5;
        assert!(close(auc_time(&times, &r, 3.5).unwrap(), expected));
        assert_eq!(auc_time(&times, &r, 0.0), None);
    }

    #[test]
    fn queries_to_threshold() {
        let r = [None, Some(0.01), Some(0.004), Some(0.003), Some(0.0)];
        assert_eq!(queries_to(&r, 0.003), Some(4));
        assert_eq!(queries_to(&r, 0.0), Some(5));
        assert_eq!(queries_to(&r, -0.1), None);
        assert_eq!(queries_to(&[], 0.1), None);
    }
}
