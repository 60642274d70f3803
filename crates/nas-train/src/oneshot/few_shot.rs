//! Few-shot supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021): one
//! choice of a trained supernet is split into one sub-supernet per option, each a copy of the
//! trained weights with that choice fixed, trained on for a few more epochs. A path is then
//! scored with the sub-supernet that holds its option, whose weights were shared by fewer
//! paths (less co-adaptation between the operations of the split choice).

use super::SupernetTrainer;
use crate::error::TrainError;

impl<'d> SupernetTrainer<'d> {
    /// A sub-supernet: this trainer's complete state (weights, optimizer buffers,
    /// architecture logits, history) with choice `choice` fixed to `option`, and `epochs` more
    /// epochs to train. Its learning rate goes on along a cosine stretched over the longer
    /// search, so it resumes where that schedule stands after this trainer's epochs.
    /// SPOS only (the methods that learn `alpha` decide choices themselves); this trainer
    /// must have finished its epochs.
    pub fn split(
        &self,
        choice: usize,
        option: usize,
        epochs: usize,
    ) -> Result<SupernetTrainer<'d>, TrainError> {
        if self.cfg.method.learns_alpha() {
            return Err(TrainError::Mismatch(format!(
                "few-shot sub-supernets are for `spos`, whose paths are scored; `{}` reads \
                 its architecture from alpha",
                self.cfg.method.name()
            )));
        }
        if self.epoch < self.total_epochs() {
            return Err(TrainError::Mismatch(format!(
                "split a supernet after its training: {} of {} epochs done",
                self.epoch,
                self.total_epochs()
            )));
        }
        let options = self.supernet.options.get(choice).copied().ok_or_else(|| {
            TrainError::Mismatch(format!(
                "choice {choice} does not exist: the supernet has {} choices",
                self.supernet.options.len()
            ))
        })?;
        if option >= options {
            return Err(TrainError::Mismatch(format!(
                "choice {choice} has {options} options, not an option {option}"
            )));
        }
        if epochs == 0 {
            return Err(TrainError::Mismatch(
                "a sub-supernet needs at least one epoch of its own".into(),
            ));
        }
        let mut checkpoint = self.checkpoint()?;
        checkpoint.config.epochs += epochs;
        checkpoint.arch.decide(choice, option);
        // SPOS weighs no option costs (it refuses `cost_penalty`): none to carry over.
        let mut sub = SupernetTrainer::resume(checkpoint, &self.runtime, self.data.clone())?;
        sub.score_batches = self.score_batches;
        Ok(sub)
    }

    /// The choice a few-shot split divides: the one with the most options (the first of
    /// equals), as the authors split NAS-Bench-201's first edge.
    pub fn widest_choice(&self) -> usize {
        let options = &self.supernet.options;
        (0..options.len())
            .max_by_key(|&c| (options[c], std::cmp::Reverse(c)))
            .unwrap_or(0)
    }
}
