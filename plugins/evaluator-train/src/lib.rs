//! Train evaluator: trains each candidate on the study's `[data]` inside ONNX Runtime and
//! reports `val_accuracy` (fraction 0..1), `val_loss`, `train_loss`, `train_accuracy`,
//! `train_seconds` and `epochs`; the per-epoch curve goes into the trial's details.
//!
//! Regression data (`[data] task = "regression"`) report `val_mse`, `val_rmse`, `val_mae`,
//! `val_r2` (in the targets' units), `val_loss` (= `val_mse`), `train_loss` (squared error of
//! the standardized targets), `train_mae`, `train_seconds` and `epochs`; no accuracies.
//!
//! ```toml
//! [data]
//! dataset = "digits"
//!
//! [[evaluator]]
//! plugin = "train"
//! epochs = 10               # every key of the recipe (nas_train::TrainConfig: lr, batch, ...)
//! keep_checkpoints = true   # continue training when a higher fidelity comes for the same net
//! test_accuracy = false     # also measure the test split (for tabular benchmarks, `nas tabulate`)
//! inherit = false           # start a mutated child from its parent's trained weights
//! inherit_epochs = 5        # epochs of an inherited child (default: half of `epochs`, at least 1)
//! ```
//!
//! Inheritance: with `inherit = true` the final weights of every trained candidate are kept
//! (`<study_dir>/checkpoints/<canonical hash>.ckpt`, as with `keep_checkpoints`). A request
//! whose proposer named a parent (evolution and local search name the trial they mutated)
//! whose checkpoint exists, was trained on the same data and fits, starts from
//! [`nas_graph::inherit`] of the parent's weights (every layer at the same place with the same
//! shape copied, a grown conv kernel embedded at the centre, a conv replacing `none` starting
//! silent, the rest freshly initialised) and trains for `inherit_epochs` epochs (a requested
//! fidelity still wins). It reports `inherited` (1 or 0) and, in the details, `inheritance`:
//! the parent trial and the tensors copied, morphed and fresh (or why nothing was inherited).
//!
//! `test_accuracy = true` adds `test_accuracy` and `test_loss` of the trained network on the
//! test split. A search must not select on them (that leaks the test set into the choice); they
//! exist so a tabular benchmark can record the number reported after selection.
//!
//! Fidelity: a request's `fidelity` is the number of epochs (rounded up); without one,
//! `epochs` is used. The LR schedule of a fresh run spans `max(epochs, fidelity)` epochs.
//! With `keep_checkpoints`, the state after each evaluation is kept in
//! `<study_dir>/checkpoints/<canonical hash>.ckpt`; a later request for the same network with
//! a higher fidelity continues from it on the schedule the run started with, so evaluating at
//! 3 then at 9 epochs ends with the same weights as training 9 epochs at once (when
//! `epochs >= 9`); epochs past the schedule's span run at its last rate. A checkpoint of
//! another recipe or data, or one already past the requested fidelity, is not used (the run
//! starts fresh and the further checkpoint is kept).

use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_data::{DataConfig, Part, SplitDataset};
use nas_graph::{InheritReport, Weights};
use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use nas_runtime::SessionSettings;
use nas_train::{
    DataFingerprint, EpochStats, Evaluation, RegressionErrors, TrainCheckpoint, TrainTable, Trainer,
};
use serde_json::json;

const NO_DATA: &str =
    "the train evaluator needs a [data] table, e.g. `[data] dataset = \"digits\"`";

/// `<prefix>_loss` and `<prefix>_accuracy` of a classifier, or `<prefix>_loss` and the
/// regression metrics (`_mse`, `_rmse`, `_mae`, `_r2`) of a regression network.
fn insert_evaluation(metrics: &mut Metrics, prefix: &str, e: &Evaluation) {
    metrics.insert(format!("{prefix}_loss"), e.loss);
    if let Some(a) = e.accuracy {
        metrics.insert(format!("{prefix}_accuracy"), a);
    }
    for (name, value) in e.regression_metrics(prefix) {
        metrics.insert(name, value);
    }
}

/// The validation figures an epoch recorded, if it was validated.
fn last_validation(epoch: &EpochStats, samples: usize) -> Option<Evaluation> {
    let loss = epoch.val_loss?;
    let errors = match (epoch.val_mae, epoch.val_r2) {
        (Some(mae), Some(r2)) => Some(RegressionErrors { mse: loss, mae, r2 }),
        _ => None,
    };
    (epoch.val_accuracy.is_some() || errors.is_some()).then_some(Evaluation {
        loss,
        accuracy: epoch.val_accuracy,
        errors,
        samples,
    })
}

/// Epochs for a request: its fidelity rounded up, or the configured `epochs`.
pub fn requested_epochs(fidelity: Option<f64>, default: usize) -> Result<usize, String> {
    match fidelity {
        None => Ok(default),
        Some(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(f.ceil() as usize),
        Some(f) => Err(format!(
            "train evaluator: fidelity {f} is not a positive number of epochs"
        )),
    }
}

pub struct TrainEvaluator {
    /// The table, parsed by nas-train (the final phase reads it the same way).
    settings: TrainTable,
    runtime: SessionSettings,
    seed: u64,
    checkpoints: PathBuf,
    /// Loaded once per instance, split with the study seed (the split the host uses).
    data: SplitDataset,
}

impl Evaluator for TrainEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let settings = TrainTable::parse(&ctx.config)?;
        if ctx.data.is_null() {
            return Err(NO_DATA.into());
        }
        let data_cfg: DataConfig = serde_json::from_value(ctx.data.clone())
            .map_err(|e| format!("train evaluator: [data]: {e}"))?;
        let data = nas_data::load(&data_cfg, ctx.seed)
            .map_err(|e| format!("train evaluator: [data]: {e}"))?;
        if data.indices(Part::Validation).is_empty() {
            return Err(
                "train evaluator: the validation split is empty; set `[data] validation` above 0 \
                 (e.g. 0.2)"
                    .into(),
            );
        }
        // The host resolved the library; fail at study start, not on the first candidate,
        // when it is missing or unusable.
        let runtime = ctx.runtime.session_settings()?;
        nas_runtime::init(&runtime.library)?;
        Ok(TrainEvaluator {
            settings,
            runtime,
            seed: ctx.seed,
            checkpoints: Path::new(&ctx.study_dir).join("checkpoints"),
            data,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let started = Instant::now();
        let mut target = requested_epochs(req.fidelity, self.settings.recipe.epochs)?;
        let keep = self.settings.keep_checkpoints || self.settings.inherit;
        let path = keep.then(|| self.checkpoint_path(&req.graph.canonical_hash()));
        let (resumable, note) = match &path {
            Some(p) if self.settings.keep_checkpoints && p.is_file() => {
                self.usable_checkpoint(p, req, target)
            }
            _ => (None, None),
        };
        let mut inheritance = serde_json::Value::Null;
        let mut inherited = false;
        let mut trainer = match &resumable {
            Some(c) => Trainer::resume(c, &self.runtime, &self.data)?,
            None => {
                let mut cfg = self.settings.recipe.clone();
                let seed = cfg
                    .seed
                    .unwrap_or_else(|| self.seed.wrapping_add(req.trial_id));
                cfg.seed = Some(seed);
                let mut weights = Weights::he_init(&req.graph, seed)
                    .map_err(|e| format!("train evaluator: cannot initialise weights: {e}"))?;
                if self.settings.inherit {
                    let (w, info) = self.inherit(req, weights);
                    weights = w;
                    if let Ok(report) = &info {
                        inherited = report.inherited_any();
                    }
                    if inherited && req.fidelity.is_none() {
                        target = self.settings.inherit_epochs;
                    }
                    inheritance = inheritance_details(req, info);
                }
                cfg.epochs = if inherited && req.fidelity.is_none() {
                    target
                } else {
                    cfg.epochs.max(target)
                };
                Trainer::new(&req.graph, weights, &cfg, &self.runtime, &self.data)?
            }
        };
        let resumed_from = trainer.epoch();
        trainer.train_epochs(target)?;
        let last = trainer
            .history()
            .last()
            .cloned()
            .ok_or("train evaluator: no epoch was trained")?;
        // Validated after the last epoch (the usual case): that epoch's figures.
        let val = match last_validation(&last, self.data.indices(Part::Validation).len()) {
            Some(v) => v,
            None => trainer
                .evaluate_normalized(Part::Validation)?
                .ok_or("train evaluator: the validation split is empty")?,
        };
        let mut saved = None;
        if let Some(p) = &path
            && let Some(dir) = p.parent()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "train evaluator: cannot create the checkpoint folder {}: {e}",
                    dir.display()
                )
            })?;
            let further = resumable.is_none() && note.as_deref() == Some(FURTHER);
            if !further {
                trainer.checkpoint()?.save(p)?;
                saved = Some(p.display().to_string());
            }
        }
        let mut metrics = Metrics::new();
        insert_evaluation(&mut metrics, "val", &val);
        metrics.insert("train_loss".into(), last.train_loss);
        if let Some(a) = last.train_accuracy {
            metrics.insert("train_accuracy".into(), a);
        }
        if let Some(mae) = last.train_mae {
            metrics.insert("train_mae".into(), mae);
        }
        metrics.insert("train_seconds".into(), started.elapsed().as_secs_f64());
        metrics.insert("epochs".into(), trainer.epoch() as f64);
        if self.settings.test_accuracy {
            let t = trainer.evaluate_normalized(Part::Test)?.ok_or(
                "train evaluator: `test_accuracy = true` but the test split is empty; set \
                 `[data] test` above 0",
            )?;
            insert_evaluation(&mut metrics, "test", &t);
        }
        if self.settings.inherit {
            metrics.insert("inherited".into(), if inherited { 1.0 } else { 0.0 });
        }
        let mut details = json!({
            "curve": trainer.history(),
            "resumed_from_epoch": resumed_from,
            "schedule_epochs": trainer.config().epochs,
            "batch": trainer.batch(),
            "steps_per_epoch": trainer.steps_per_epoch(),
            "provider": trainer.provider(),
            "seed": trainer.seed(),
            "checkpoint": saved,
            "checkpoint_note": note,
        });
        if self.settings.inherit {
            details["inheritance"] = inheritance;
        }
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details,
        })
    }
}

const FURTHER: &str = "the kept checkpoint is past the requested fidelity; trained from scratch";

/// What the trial's details say about inheritance: the parent and the tensors copied,
/// morphed and fresh, or why nothing was inherited.
fn inheritance_details(
    req: &EvalRequest,
    info: Result<InheritReport, String>,
) -> serde_json::Value {
    let parent = req.parent.as_ref().map(|p| p.trial_id);
    match info {
        Ok(r) => json!({
            "parent": parent,
            "copied": r.copied,
            "morphed": r.morphed,
            "fresh": r.fresh,
        }),
        Err(why) => json!({ "parent": parent, "note": why }),
    }
}

impl TrainEvaluator {
    fn checkpoint_path(&self, hash: &str) -> PathBuf {
        self.checkpoints.join(format!("{hash}.ckpt"))
    }

    /// `init` with what can be inherited from the request's parent, and what was (or why
    /// nothing was).
    fn inherit(
        &self,
        req: &EvalRequest,
        init: Weights,
    ) -> (Weights, Result<InheritReport, String>) {
        let Some(parent) = &req.parent else {
            return (init, Err("the candidate has no parent".into()));
        };
        let path = self.checkpoint_path(&parent.hash);
        if !path.is_file() {
            return (
                init,
                Err(format!(
                    "no kept weights of parent trial {} ({})",
                    parent.trial_id,
                    path.display()
                )),
            );
        }
        let c = match TrainCheckpoint::load(&path) {
            Ok(c) => c,
            Err(e) => return (init, Err(format!("ignored: {e}"))),
        };
        if c.data != DataFingerprint::of(&self.data) {
            return (
                init,
                Err("the parent's weights were trained on other data".into()),
            );
        }
        let weights = match c.weights() {
            Ok(w) => w,
            Err(e) => return (init, Err(format!("ignored: {e}"))),
        };
        // The kept weights belong to the checkpoint's network (equivalent to the parent's,
        // with possibly other node numbers).
        let (w, report) = nas_graph::inherit(&c.graph, &weights, &req.graph, &init);
        (w, Ok(report))
    }

    /// The checkpoint at `path` if training can continue from it, else why not.
    fn usable_checkpoint(
        &self,
        path: &Path,
        req: &EvalRequest,
        target: usize,
    ) -> (Option<TrainCheckpoint>, Option<String>) {
        let c = match TrainCheckpoint::load(path) {
            Ok(c) => c,
            Err(e) => return (None, Some(format!("ignored: {e}"))),
        };
        let why = if c.graph != req.graph {
            "the kept checkpoint is of an equivalent but differently numbered network; trained from scratch"
        } else if !c.config.same_recipe(&self.settings.recipe) {
            "the kept checkpoint used other training settings; trained from scratch"
        } else if c.data != DataFingerprint::of(&self.data) {
            "the kept checkpoint was trained on other data; trained from scratch"
        } else if c.epoch > target {
            FURTHER
        } else {
            return (Some(c), None);
        };
        (None, Some(why.to_string()))
    }
}

nas_plugin::export_evaluator!("train", TrainEvaluator);

#[cfg(test)]
mod tests;
