//! Objectives: orientation (lower is better inside the engine), ranking and Pareto fronts.

use nas_plugin::{Direction, Metrics, Objective, TrialState};

use crate::storage::TrialRecord;

/// Objective values of a trial, oriented so that lower is better. `None` when a metric is
/// missing or not a finite number.
pub fn losses(objectives: &[Objective], metrics: &Metrics) -> Option<Vec<f64>> {
    objectives
        .iter()
        .map(|o| {
            let v = *metrics.get(&o.metric)?;
            if !v.is_finite() {
                return None;
            }
            Some(match o.direction {
                Direction::Minimize => v,
                Direction::Maximize => -v,
            })
        })
        .collect()
}

/// `a` dominates `b`: no worse in every objective and better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Ranks scored trials `(id, losses)`: for one objective best first (ties by id); for
/// several, only the Pareto set (non-dominated trials) sorted by the first objective.
pub fn rank(mut scored: Vec<(u64, Vec<f64>)>) -> Vec<u64> {
    if scored.first().is_some_and(|(_, l)| l.len() > 1) {
        let front: Vec<bool> = scored
            .iter()
            .map(|(_, l)| !scored.iter().any(|(_, other)| dominates(other, l)))
            .collect();
        let mut keep = front.into_iter();
        scored.retain(|_| keep.next().unwrap_or(false));
    }
    scored.sort_by(|(ia, a), (ib, b)| {
        a.partial_cmp(b)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(ia.cmp(ib))
    });
    scored.into_iter().map(|(id, _)| id).collect()
}

/// The best complete trials of a list (see [`rank`]).
pub fn best<'a>(objectives: &[Objective], trials: &'a [TrialRecord]) -> Vec<&'a TrialRecord> {
    let scored = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| losses(objectives, &t.metrics).map(|l| (t.id, l)))
        .collect();
    rank(scored)
        .into_iter()
        .filter_map(|id| trials.iter().find(|t| t.id == id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(metric: &str, direction: Direction) -> Objective {
        Objective {
            metric: metric.into(),
            direction,
        }
    }

    fn trial(id: u64, acc: f64, lat: f64) -> TrialRecord {
        TrialRecord {
            id,
            state: TrialState::Complete,
            strategy: "random".into(),
            strategy_index: 0,
            values: vec![],
            arch: String::new(),
            hash: String::new(),
            fidelity: None,
            metrics: Metrics::from([("acc".into(), acc), ("lat".into(), lat)]),
            details: serde_json::Value::Null,
            error: None,
            created_at: 0.0,
            started_at: None,
            finished_at: None,
            worker: None,
            attempts: 0,
            requeues: 0,
            told: true,
            parent: None,
        }
    }

    #[test]
    fn single_objective_sorts_by_direction() {
        let trials = vec![trial(1, 0.5, 3.0), trial(2, 0.9, 2.0), trial(3, 0.7, 1.0)];
        let ids: Vec<u64> = best(&[obj("acc", Direction::Maximize)], &trials)
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec![2, 3, 1]);
        let ids: Vec<u64> = best(&[obj("lat", Direction::Minimize)], &trials)
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec![3, 2, 1]);
    }

    #[test]
    fn pareto_front_drops_dominated_trials() {
        // 1 is dominated by 2 (lower accuracy, higher latency).
        let trials = vec![trial(1, 0.5, 3.0), trial(2, 0.9, 2.0), trial(3, 0.7, 1.0)];
        let objectives = [
            obj("acc", Direction::Maximize),
            obj("lat", Direction::Minimize),
        ];
        let ids: Vec<u64> = best(&objectives, &trials).iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn missing_or_nan_metrics_have_no_loss() {
        let m = Metrics::from([("acc".into(), f64::NAN)]);
        assert_eq!(losses(&[obj("acc", Direction::Maximize)], &m), None);
        assert_eq!(losses(&[obj("lat", Direction::Minimize)], &m), None);
    }
}
