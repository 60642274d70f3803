//! The study's side of the final phase: pick the best trials, hand them to nas-train's
//! [`retrain`](nas_train::retrain::retrain) with the `train` evaluator's recipe, and keep the
//! report in the study's meta table (saved after each member, so a killed final phase redoes
//! at most the member it was training).
//!
//! `[final]` may change between runs of a study (it does not change the search): members
//! retrained with another recipe or number of epochs are retrained, trials that left the
//! top-k are dropped, and the ensemble is rebuilt when its members changed.

use std::path::Path;

use anyhow::{Context, bail};
use nas_plugin::RuntimeSettings;
use nas_train::retrain::{Candidate, RetrainObserver, RetrainPlan};
use nas_train::{TrainConfig, TrainTable};

use crate::config::{FinalConfig, StudyConfig};
use crate::seeds::derive_seed;
use crate::space::build_space;
use crate::storage::Storage;
use crate::study::best_trials;

pub use nas_train::description_path;
pub use nas_train::retrain::{EnsembleResult, FinalMember, FinalReport, resolve_model};

const META_KEY: &str = "final";

/// The stored final report of a study, if its final phase ran.
pub fn stored_report(storage: &Storage) -> anyhow::Result<Option<FinalReport>> {
    match storage.meta(META_KEY)? {
        Some(json) => Ok(Some(
            serde_json::from_str(&json).context("the stored final report is unreadable")?,
        )),
        None => Ok(None),
    }
}

/// The training recipe: the first `train` evaluator's options, with `[final] train`'s keys
/// over them (alone when the study has no `train` evaluator) and the final epochs.
pub(crate) fn recipe(config: &StudyConfig, fin: &FinalConfig) -> anyhow::Result<TrainConfig> {
    let evaluator = config
        .evaluators
        .iter()
        .find(|e| e.plugin == "train" || e.plugin.contains("evaluator_train"));
    let (mut options, origin) = match (evaluator, &fin.train) {
        (Some(spec), over) => (
            spec.config.as_object().cloned().unwrap_or_default(),
            format!(
                "[[evaluator]] at {}{}",
                spec.location,
                if over.is_some() {
                    " with [final] train"
                } else {
                    ""
                }
            ),
        ),
        (None, Some(_)) => (serde_json::Map::new(), "[final] train".to_string()),
        (None, None) => bail!(
            "`[final]` retrains with the `train` evaluator's settings, but the study has no \
             `[[evaluator]] plugin = \"train\"`: add one, or give the recipe in `[final]` as \
             `train = {{ epochs = 30, lr = 0.05 }}` (any key of the train evaluator)"
        ),
    };
    match &fin.train {
        Some(serde_json::Value::Object(over)) => {
            options.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(other) => bail!("[final] train must be a table of training options, found {other}"),
        None => {}
    }
    let table = TrainTable::parse(&serde_json::Value::Object(options))
        .map_err(|e| anyhow::anyhow!("{origin}: not a valid training recipe: {e}"))?;
    let mut recipe = table.recipe;
    if let Some(epochs) = fin.epochs {
        recipe.epochs = epochs as usize;
    }
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("[final] with the recipe of {origin}: {e}"))?;
    Ok(recipe)
}

/// Observer of the final phase (the CLI prints from it).
pub trait FinalObserver {
    fn note(&mut self, message: &str);
}

/// Forwards notes to the CLI and stores each step of the report in the study.
struct StoreProgress<'a> {
    storage: &'a Storage,
    observer: &'a mut dyn FinalObserver,
}

impl RetrainObserver for StoreProgress<'_> {
    fn note(&mut self, message: &str) {
        self.observer.note(message);
    }

    fn save(&mut self, report: &FinalReport) -> Result<(), String> {
        let json = serde_json::to_string(report).map_err(|e| e.to_string())?;
        self.storage
            .set_meta(META_KEY, &json)
            .map_err(|e| format!("{e:#}"))
    }
}

pub fn run(
    config: &StudyConfig,
    storage: &Storage,
    dir: &Path,
    runtime: &RuntimeSettings,
    observer: &mut dyn FinalObserver,
) -> anyhow::Result<FinalReport> {
    let Some(fin) = &config.final_phase else {
        bail!("the study has no [final] table");
    };
    let Some(data_config) = &config.data else {
        bail!("[final] needs a [data] table");
    };
    let recipe = recipe(config, fin)?;
    let session = runtime
        .session_settings()
        .context("[final] retrains inside ONNX Runtime")?;
    let best = best_trials(storage, &config.objectives, Some(fin.top_k))?;
    if best.is_empty() {
        bail!("no complete trial to retrain: the search produced no result");
    }
    let space = build_space(&config.resolved_space()?)?;
    let candidates = best
        .iter()
        .map(|t| {
            Ok(Candidate {
                trial_id: t.id,
                arch: t.arch.clone(),
                graph: space.decode(&t.values)?,
                init_seed: derive_seed(config.seed, t.id),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data = nas_train::retrain::fold_validation_into_training(nas_data::load(
        data_config,
        config.seed,
    )?)?;
    let plan = RetrainPlan {
        recipe,
        ensemble: fin.ensemble,
        export: fin.export,
        study_dir: dir,
        runtime: &session,
    };
    let previous = stored_report(storage)?.unwrap_or_default();
    let mut progress = StoreProgress { storage, observer };
    Ok(nas_train::retrain::retrain(
        &plan,
        &data,
        &candidates,
        previous,
        &mut progress,
    )?)
}
