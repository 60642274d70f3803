//! Supernet evaluator (SPOS, Guo et al., ECCV 2020): trains the study space's one-shot
//! supernet once with uniform single-path sampling, then scores every candidate with the
//! inherited shared weights, a cheap stand-in for training it.
//!
//! ```toml
//! [data]
//! dataset = "digits"
//!
//! [[evaluator]]
//! plugin = "supernet"
//! epochs = 30        # every key of nas_train::oneshot::OneShotConfig except `method`
//! batch = 64         # (always spos here): weight_lr, weight_lr_min, momentum,
//! weight_lr = 0.025  # weight_decay, augment, seed, sandwich; the architecture keys are
//!                    # accepted and unused
//! sandwich = "largest" # also train the largest path per batch (a cell's all-nor_conv_3x3
//!                      # cell; `true`: the smallest and the largest)
//! score_images = 1000  # score each candidate on the first 1,000 validation images [all]
//! ```
//!
//! The first `evaluate` trains the supernet on the study's `[data]` (training split) and
//! writes `<study_dir>/supernet/spos.ckpt` after every epoch; a checkpoint of the same
//! supernet, settings and data is resumed (a finished one is just loaded), any other is
//! replaced. Training holds an advisory lock on `<study_dir>/supernet/spos.lock`, so that
//! several instances (`[runtime] workers`, or `nas worker` processes sharing the study
//! folder) train it once: the others wait for the lock, then load the finished checkpoint.
//! The lock belongs to the process: one that dies releases it, and the next instance resumes
//! from the last epoch written.
//!
//! Every request is then scored by [`SupernetTrainer::score`]: the request's `values` (the
//! space's choice indices, which are the supernet's choices) pick one path, and the
//! validation split runs through it with the shared weights, BatchNorm on the batch's own
//! statistics (the running statistics are shared by every path and fit none, so no
//! recalibration is needed); `score_images` limits that to the split's first images (whole
//! batches), which makes each score cheaper where a search scores many. Metrics:
//! `supernet_accuracy` (fraction 0..1), `supernet_loss` and `supernet_seconds` (seconds this
//! call spent training the supernet; 0 once it is trained). The trial's details hold the
//! supernet's epoch history.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nas_data::{DataConfig, Part, SplitDataset};
use nas_graph::Supernet;
use nas_plugin::{
    EvalRequest, EvalResult, EvalStatus, Evaluator, EvaluatorContext, Metrics, PluginError,
};
use nas_runtime::SessionSettings;
use nas_train::DataFingerprint;
use nas_train::oneshot::{Method, OneShotCheckpoint, OneShotConfig, SupernetTrainer};
use serde_json::{Value, json};

const NAME: &str = "supernet evaluator";
/// The checkpoint and lock file names under `<study_dir>/supernet/`.
pub const CHECKPOINT_FILE: &str = "spos.ckpt";
pub const LOCK_FILE: &str = "spos.lock";

/// The evaluator's table.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The supernet's training: every `OneShotConfig` key but `method`, always `spos`.
    pub training: OneShotConfig,
    /// `score_images`: validation images a candidate is scored on (`None`: all). Not part
    /// of the training, so a checkpoint stays usable when it changes.
    pub score_images: Option<usize>,
}

/// The evaluator's table as its [`Settings`].
pub fn parse_config(table: &Value) -> Result<Settings, String> {
    let mut map = match table {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        other => return Err(format!("{NAME}: its table must be a table, not {other}")),
    };
    let score_images = match map.remove("score_images") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n as usize),
            _ => {
                return Err(format!(
                    "{NAME}: `score_images` is {v}; it must be a whole number of validation \
                     images above 0 (leave it out to score on the whole split)"
                ));
            }
        },
    };
    if map.contains_key("method") {
        return Err(format!(
            "{NAME}: `method` cannot be set: this evaluator always trains with `spos` (uniform \
             single paths); remove the key (DARTS, DARTS- and GDAS are strategies: \
             `[[strategy]] plugin = \"darts\"`)"
        ));
    }
    map.insert("method".into(), json!("spos"));
    let cfg: OneShotConfig = serde_json::from_value(Value::Object(map)).map_err(|e| {
        // serde lists `method` among the expected keys; ours are the rest.
        let e = e.to_string();
        let what = e.split(", expected one of").next().unwrap_or(&e);
        format!(
            "{NAME}: {what}; its keys are epochs, batch, weight_lr, weight_lr_min, momentum, \
             weight_decay, augment, seed, sandwich and score_images (arch_lr, \
             arch_weight_decay, arch_beta1, arch_beta2, tau_max, tau_min and aux_beta are \
             accepted and unused by SPOS)"
        )
    })?;
    cfg.validate().map_err(|e| format!("{NAME}: {e}"))?;
    debug_assert_eq!(cfg.method, Method::Spos);
    Ok(Settings {
        training: cfg,
        score_images,
    })
}

/// The request's choice values as option indices.
fn path_of(values: &[f64]) -> Result<Vec<usize>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                Err(format!(
                    "{NAME}: choice {i} is {v}, not an option index; the supernet scores \
                     categorical choices only"
                ))
            }
        })
        .collect()
}

pub struct SupernetEvaluator {
    cfg: OneShotConfig,
    score_images: Option<usize>,
    supernet: Supernet,
    runtime: SessionSettings,
    data: Arc<SplitDataset>,
    dir: PathBuf,
    /// The trained supernet, once the first request trained or loaded it.
    trainer: Option<SupernetTrainer<'static>>,
    /// What the details say about the supernet (checkpoint, epochs, where it came from).
    provenance: Value,
}

impl Evaluator for SupernetEvaluator {
    fn new(ctx: EvaluatorContext) -> Result<Self, PluginError> {
        let Settings {
            training: cfg,
            score_images,
        } = parse_config(&ctx.config)?;
        let Some(supernet) = ctx.supernet else {
            return Err(format!(
                "{NAME}: the study's space has no one-shot supernet yet (`[space] kind = \
                 \"cell\"` and `\"chain\"` have one); use one of those, or score candidates \
                 with another evaluator (e.g. `train`)"
            )
            .into());
        };
        cfg.check_supernet(&supernet)
            .map_err(|e| format!("{NAME}: {e}"))?;
        if ctx.data.is_null() {
            return Err(format!(
                "{NAME}: SPOS trains the supernet on the study's data: add a [data] table, \
                 e.g. `[data] dataset = \"digits\"`"
            )
            .into());
        }
        let data_cfg: DataConfig =
            serde_json::from_value(ctx.data.clone()).map_err(|e| format!("{NAME}: [data]: {e}"))?;
        let data =
            nas_data::load(&data_cfg, ctx.seed).map_err(|e| format!("{NAME}: [data]: {e}"))?;
        if data.data.task() == nas_data::Task::Regression {
            return Err(format!(
                "{NAME}: [data] is for regression (`task = \"regression\"`); supernets are \
                 trained as classifiers, so use the `train` evaluator"
            )
            .into());
        }
        let val_n = data.indices(Part::Validation).len();
        if val_n == 0 {
            return Err(format!(
                "{NAME}: candidates are scored on the validation split, which is empty; set \
                 `[data] validation` above 0 (e.g. 0.2)"
            )
            .into());
        }
        let batch = cfg.batch.min(data.indices(Part::Train).len()).max(1);
        if val_n < batch {
            return Err(format!(
                "{NAME}: the validation split has {val_n} samples, less than one batch of \
                 {batch} (candidates are scored on full batches); lower `batch` or raise \
                 `[data] validation`"
            )
            .into());
        }
        nas_train::oneshot::score_batches(score_images, batch)
            .map_err(|e| format!("{NAME}: {e}"))?;
        let runtime = ctx.runtime.session_settings()?;
        nas_runtime::init(&runtime.library)?;
        Ok(SupernetEvaluator {
            cfg,
            score_images,
            supernet,
            runtime,
            data: Arc::new(data),
            dir: Path::new(&ctx.study_dir).join("supernet"),
            trainer: None,
            provenance: Value::Null,
        })
    }

    fn evaluate(&mut self, req: &EvalRequest) -> Result<EvalResult, PluginError> {
        let seconds = if self.trainer.is_none() {
            self.train()?
        } else {
            0.0
        };
        let path = path_of(&req.values)?;
        let trainer = self.trainer.as_mut().expect("trained above");
        let (loss, accuracy) = trainer.score(&path).map_err(|e| format!("{NAME}: {e}"))?;
        let mut metrics = Metrics::new();
        metrics.insert("supernet_accuracy".into(), accuracy);
        metrics.insert("supernet_loss".into(), loss);
        metrics.insert("supernet_seconds".into(), seconds);
        let mut details = self.provenance.clone();
        details["trained_here"] = json!(seconds > 0.0);
        Ok(EvalResult {
            metrics,
            status: EvalStatus::Ok,
            details,
        })
    }
}

impl SupernetEvaluator {
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// Trains the supernet to its last epoch (resuming a checkpoint of the same supernet,
    /// settings and data) under the study's lock; the seconds spent training.
    fn train(&mut self) -> Result<f64, PluginError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            format!(
                "{NAME}: cannot create the supernet folder {}: {e}",
                self.dir.display()
            )
        })?;
        let waiting = Instant::now();
        let lock = self.lock()?;
        let waited = waiting.elapsed().as_secs_f64();
        let ckpt = self.checkpoint_path();
        let (resumable, note) = self.usable_checkpoint(&ckpt);
        let mut trainer = match resumable {
            Some(c) => SupernetTrainer::resume(c, &self.runtime, self.data.clone())?,
            None => {
                SupernetTrainer::new(&self.supernet, &self.cfg, &self.runtime, self.data.clone())?
            }
        };
        let resumed_from = trainer.epoch();
        let started = Instant::now();
        while trainer.epoch() < self.cfg.epochs {
            trainer
                .train_epoch()
                .map_err(|e| format!("{NAME}: training the supernet: {e}"))?;
            trainer.checkpoint()?.save(&ckpt).map_err(|e| {
                format!(
                    "{NAME}: cannot write the supernet checkpoint {}: {e}",
                    ckpt.display()
                )
            })?;
        }
        let trained = trainer.epoch() > resumed_from;
        let seconds = if trained {
            started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE)
        } else {
            0.0
        };
        drop(lock);
        let history: Vec<Value> = trainer
            .history()
            .iter()
            .map(|e| {
                json!({
                    "epoch": e.epoch,
                    "train_loss": e.train_loss,
                    "train_accuracy": e.train_accuracy,
                    "lr": e.lr,
                    "seconds": e.seconds,
                })
            })
            .collect();
        self.provenance = json!({
            "checkpoint": ckpt.display().to_string(),
            "epochs": trainer.epoch(),
            "history": history,
            "resumed_from_epoch": (trained && resumed_from > 0).then_some(resumed_from),
            "loaded": !trained,
            "waited_seconds": waited,
            "checkpoint_note": note,
        });
        trainer
            .set_score_images(self.score_images)
            .map_err(|e| format!("{NAME}: {e}"))?;
        self.trainer = Some(trainer);
        Ok(seconds)
    }

    /// Holds `<study_dir>/supernet/spos.lock` (waiting while another instance trains); the
    /// lock is released when the file is dropped or its process ends.
    fn lock(&self) -> Result<File, PluginError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{NAME}: cannot open the lock {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => file
                .lock()
                .map_err(|e| format!("{NAME}: cannot wait for the lock {}: {e}", path.display()))?,
            Err(TryLockError::Error(e)) => {
                return Err(format!(
                    "{NAME}: cannot lock {} (the study folder must support file locks): {e}",
                    path.display()
                )
                .into());
            }
        }
        Ok(file)
    }

    /// The checkpoint at `path` when it is of this supernet, settings and data, else why not.
    fn usable_checkpoint(&self, path: &Path) -> (Option<OneShotCheckpoint>, Option<String>) {
        if !path.exists() {
            return (None, None);
        }
        let c = match OneShotCheckpoint::load(path) {
            Ok(c) => c,
            Err(e) => return (None, Some(format!("ignored and replaced: {e}"))),
        };
        let why = if c.supernet != self.supernet {
            "the checkpoint was of another supernet; replaced"
        } else if c.config != self.cfg {
            "the checkpoint was trained with other settings; replaced"
        } else if c.data != DataFingerprint::of(&self.data) {
            "the checkpoint was trained on other data; replaced"
        } else if c.epoch > self.cfg.epochs {
            "the checkpoint was past the configured epochs; replaced"
        } else {
            return (Some(c), None);
        };
        (None, Some(why.to_string()))
    }
}

nas_plugin::export_evaluator!("supernet", SupernetEvaluator);

#[cfg(test)]
mod tests;
