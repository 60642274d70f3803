//! How the architecture is read from a trained supernet.
//!
//! - `magnitude` (DARTS): the option with the largest `alpha` on every choice.
//! - `perturbation` (DARTS-PT: Wang et al., "Rethinking Architecture Selection in
//!   Differentiable NAS", ICLR 2021): `alpha`'s magnitude need not say how much an operation
//!   contributes to the supernet (skip connections win the softmax while the convolutions
//!   carry the accuracy). After the search, one open choice at a time (in a seeded random
//!   order), every option is removed in turn (its mixing weight set to zero, the others as
//!   the supernet stands) and the supernet's validation accuracy measured; the option whose
//!   removal costs the most accuracy is kept, the choice is fixed to it, and the supernet is
//!   tuned for `selection_epochs` epochs (weights at `weight_lr / 10`, `alpha` of the open
//!   choices still learning) before the next decision. Options progressive pruning removed
//!   are measured like the others but cannot be kept.

use serde::{Deserialize, Serialize};

use rand::Rng;

use super::SupernetTrainer;
use super::arch::{Draw, step_rng};
use crate::error::TrainError;

/// How the derived architecture is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The largest architecture weight of every choice.
    #[default]
    Magnitude,
    /// The option whose removal hurts the supernet's validation accuracy most, one choice
    /// at a time, with tuning in between (DARTS-PT).
    Perturbation,
}

/// What perturbation-based selection measures when an option is removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionMetric {
    /// Validation accuracy (the authors' default): keep the option whose removal lowers it
    /// most, ties broken by the larger loss.
    #[default]
    Accuracy,
    /// Validation loss: keep the option whose removal raises it most (a continuous measure,
    /// which a small validation split does not round into ties).
    Loss,
}

/// One decision of perturbation-based selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionDecision {
    /// Epochs completed when it was taken.
    pub epoch: usize,
    pub choice: usize,
    /// The option kept.
    pub option: usize,
    /// Per option: the supernet's validation accuracy and loss without it.
    pub accuracy_without: Vec<f64>,
    pub loss_without: Vec<f64>,
}

impl SupernetTrainer<'_> {
    /// Whether a decision is due before the epoch about to run (the tuning phase starts
    /// with one, then one every `selection_epochs` epochs).
    pub(super) fn decision_due(&self) -> bool {
        let Some(t) = self.epoch.checked_sub(self.cfg.epochs) else {
            return false;
        };
        self.cfg.selection == Selection::Perturbation
            && self.cfg.selection_epochs > 0
            && t % self.cfg.selection_epochs == 0
    }

    /// Fixes one open choice (seeded random order) to the option whose removal costs the
    /// supernet the most validation accuracy (ties: the larger loss, then the lower option).
    pub(super) fn decide_one(&mut self) -> Result<(), TrainError> {
        let open: Vec<usize> = (0..self.supernet.options.len())
            .filter(|&c| self.arch.decided(c).is_none())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let mut rng = step_rng(self.seed, self.decisions.len() as u64, Draw::Selection);
        let choice = open[rng.random_range(0..open.len())];
        let expected = self.arch.expected_weights();
        let (mut accuracy_without, mut loss_without) = (Vec::new(), Vec::new());
        for k in 0..self.supernet.options[choice] {
            let mut w = expected.clone();
            w[choice][k] = 0.0;
            let (loss, acc) = self.evaluate(&w, None)?;
            accuracy_without.push(acc);
            loss_without.push(loss);
        }
        let hurts_less = |a: usize, b: usize| {
            let by_loss = loss_without[b].total_cmp(&loss_without[a]);
            match self.cfg.selection_metric {
                SelectionMetric::Accuracy => accuracy_without[a]
                    .total_cmp(&accuracy_without[b])
                    .then(by_loss),
                SelectionMetric::Loss => by_loss,
            }
        };
        // An option progressive pruning removed is no candidate (removing it changes nothing).
        let option = self
            .arch
            .kept(choice)
            .into_iter()
            .min_by(|&a, &b| hurts_less(a, b))
            .expect("a choice has options");
        self.arch.decide(choice, option);
        self.decisions.push(SelectionDecision {
            epoch: self.epoch,
            choice,
            option,
            accuracy_without,
            loss_without,
        });
        Ok(())
    }

    /// The derived architecture once the search's epochs are done: with perturbation-based
    /// selection the choices still open are decided now (the last one, or all of them with
    /// `selection_epochs = 0`); with magnitude the largest `alpha` of every choice.
    pub fn select(&mut self) -> Result<Vec<usize>, TrainError> {
        if self.epoch < self.total_epochs() {
            return Err(TrainError::Mismatch(format!(
                "the supernet has trained {} of its {} epochs; train them before selecting",
                self.epoch,
                self.total_epochs()
            )));
        }
        if self.cfg.selection == Selection::Perturbation {
            while (0..self.supernet.options.len()).any(|c| self.arch.decided(c).is_none()) {
                self.decide_one()?;
            }
        }
        Ok(self.arch.derive())
    }

    /// The decisions of perturbation-based selection so far.
    pub fn decisions(&self) -> &[SelectionDecision] {
        &self.decisions
    }
}
