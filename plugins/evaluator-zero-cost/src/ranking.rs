//! What the cascade ranks a candidate against: every candidate of the study it knows of (those
//! this instance scored and those observed as finished trials, by trial id, so a resumed study
//! or another worker ranks among the same ones), and for the learned ranking, the labelled
//! trials and the model fitted on them.

use std::collections::BTreeMap;

use nas_plugin::{Metrics, Observation, TrialState};
use serde_json::{Value, json};

use crate::boost::{BoostOptions, Booster};
use crate::config::{Cascade, DEFAULT_RANK_BY, Learn};
use crate::linalg::ranks;

/// A candidate as the cascade sees it.
#[derive(Clone, Debug)]
struct Candidate {
    /// Its `rank_by` metric (`zc_combined` for the learned ranking).
    value: f64,
    /// The learned ranking's features (empty otherwise).
    features: Vec<f64>,
}

/// The learned ranking's model of `labels` (higher is better) from the rows of `features`.
/// It fits the labels' ranks, not their values: the order is all that matters, and outliers
/// (a training that failed at chance accuracy) do not pull the fit.
pub fn fit_ranker(features: &[Vec<f64>], labels: &[f64], seed: u64) -> Result<Booster, String> {
    let n = labels.len() as f64;
    let y: Vec<f64> = ranks(labels).iter().map(|r| r / n).collect();
    let options = BoostOptions {
        seed,
        ..BoostOptions::default()
    };
    Booster::fit(features, &y, &options)
}

/// The cascade's memory; see the module docs.
pub struct Ranking {
    cascade: Cascade,
    /// The proxies computed, in order: the learned ranking's first features.
    proxies: Vec<String>,
    seed: u64,
    seen: BTreeMap<u64, Candidate>,
    /// Learned ranking: labelled trials' features and labels (higher is better).
    labelled: BTreeMap<u64, (Vec<f64>, f64)>,
    /// Fitted on `labelled` as it is, or `None` when labels came since (or too few).
    model: Option<Booster>,
}

/// The decision on one candidate and what it was ranked by, for the result's details.
pub struct Judgement {
    pub keep: bool,
    pub details: Value,
}

impl Ranking {
    pub fn new(cascade: Cascade, proxies: Vec<String>, seed: u64) -> Ranking {
        Ranking {
            cascade,
            proxies,
            seed,
            seen: BTreeMap::new(),
            labelled: BTreeMap::new(),
            model: None,
        }
    }

    fn learn(&self) -> Option<&Learn> {
        self.cascade.learn.as_ref()
    }

    /// The metric a candidate's stored value is.
    fn value_metric(&self) -> &str {
        if self.learn().is_some() {
            DEFAULT_RANK_BY
        } else {
            &self.cascade.rank_by
        }
    }

    fn features(&self, metrics: &Metrics, values: &[f64]) -> Vec<f64> {
        let Some(learn) = self.learn() else {
            return Vec::new();
        };
        let mut f: Vec<f64> = self
            .proxies
            .iter()
            .map(|p| metrics.get(p).copied().unwrap_or(f64::NAN))
            .collect();
        if learn.choices {
            f.extend_from_slice(values);
        }
        f
    }

    /// Takes in finished trials: each one this evaluator scored joins the candidates, and with
    /// the learned ranking each complete one with a finite label joins the labelled set.
    pub fn observe(&mut self, trials: &[Observation]) {
        for t in trials {
            let Some(&value) = t.metrics.get(self.value_metric()) else {
                continue;
            };
            let features = self.features(&t.metrics, &t.values);
            if let Some(learn) = self.learn() {
                let label = match &learn.label {
                    Some(metric) => t.metrics.get(metric).copied(),
                    // Losses are oriented lower-is-better.
                    None => t.losses.first().map(|l| -l),
                };
                if let (TrialState::Complete, Some(label)) = (t.state, label)
                    && label.is_finite()
                {
                    self.labelled.insert(t.trial_id, (features.clone(), label));
                    self.model = None;
                }
            }
            self.seen.insert(t.trial_id, Candidate { value, features });
        }
    }

    /// Fits the model if labels came since the last fit and the learned ranking has its
    /// `min_labels`.
    fn fit(&mut self) -> Result<(), String> {
        let Some(learn) = self.learn() else {
            return Ok(());
        };
        if self.model.is_some() || self.labelled.len() < learn.min_labels {
            return Ok(());
        }
        let (x, labels): (Vec<Vec<f64>>, Vec<f64>) = self.labelled.values().cloned().unzip();
        self.model = Some(fit_ranker(&x, &labels, self.seed)?);
        Ok(())
    }

    /// Ranks trial `id` (its metrics and choice values) against every other candidate known,
    /// then remembers it.
    pub fn judge(
        &mut self,
        id: u64,
        metrics: &Metrics,
        values: &[f64],
    ) -> Result<Judgement, String> {
        let metric = self.value_metric().to_string();
        let value = *metrics.get(&metric).ok_or_else(|| {
            format!("the cascade ranks by `{metric}`, which this network has no value for")
        })?;
        let candidate = Candidate {
            value,
            features: self.features(metrics, values),
        };
        self.fit()?;
        let others = self.seen.iter().filter(|(k, _)| **k != id).map(|(_, c)| c);
        let (score, others): (f64, Vec<f64>) = match &self.model {
            Some(m) => (
                m.predict(&candidate.features),
                others.map(|c| m.predict(&c.features)).collect(),
            ),
            None => (value, others.map(|c| c.value).collect()),
        };
        let keep = self.cascade.keeps(&others, score);
        let mut details = json!({
            "rank_by": self.cascade.rank_by,
            "seen": others.len() + 1,
            "kept": keep,
        });
        if self.learn().is_some() {
            let with = if self.model.is_some() {
                "model"
            } else {
                DEFAULT_RANK_BY
            };
            details["ranked_with"] = json!(with);
            details["labels"] = json!(self.labelled.len());
            details["score"] = json!(score);
        }
        self.seen.insert(id, candidate);
        Ok(Judgement { keep, details })
    }
}
