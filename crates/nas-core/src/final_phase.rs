//! The final phase: retrain the best candidates at full fidelity on train + validation,
//! measure them on the held-out test split, and write them (and optionally an ensemble of
//! them) as deployable ONNX models.
//!
//! Progress is stored in the study after each member, so a killed final phase redoes at most
//! the member it was training.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nas_data::{Normalization, Part, SplitDataset};
use nas_graph::weights::Weights;
use nas_plugin::RuntimeSettings;
use nas_train::{TrainConfig, Trainer};
use serde::{Deserialize, Serialize};

use crate::config::{FinalConfig, StudyConfig};
use crate::seeds::derive_seed;
use crate::space::build_space;
use crate::storage::Storage;
use crate::study::best_trials;

pub use nas_train::description_path;

const META_KEY: &str = "final";
/// Keys of the `train` evaluator's table that are about the evaluator, not the recipe.
const EVALUATOR_ONLY_KEYS: &[&str] = &["keep_checkpoints"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalMember {
    pub trial_id: u64,
    pub arch: String,
    pub epochs: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub train_seconds: f64,
    /// The deployable model, when `export = true`.
    pub model: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleResult {
    pub members: Vec<u64>,
    pub test_accuracy: f64,
    pub model: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    pub members: Vec<FinalMember>,
    pub ensemble: Option<EnsembleResult>,
}

/// The stored final report of a study, if its final phase ran.
pub fn stored_report(storage: &Storage) -> anyhow::Result<Option<FinalReport>> {
    match storage.meta(META_KEY)? {
        Some(json) => Ok(Some(
            serde_json::from_str(&json).context("the stored final report is unreadable")?,
        )),
        None => Ok(None),
    }
}

/// The training recipe: the first `train` evaluator's table, with the final epochs.
fn recipe(config: &StudyConfig, fin: &FinalConfig) -> anyhow::Result<TrainConfig> {
    let spec = config
        .evaluators
        .iter()
        .find(|e| e.plugin == "train" || e.plugin.contains("evaluator_train"))
        .with_context(|| {
            "`[final]` retrains with the `train` evaluator's settings, but the study has no `[[evaluator]] plugin = \"train\"`"
        })?;
    let mut table = spec.config.clone();
    if let Some(map) = table.as_object_mut() {
        for key in EVALUATOR_ONLY_KEYS {
            map.remove(*key);
        }
        if let Some(epochs) = fin.epochs {
            map.insert("epochs".into(), epochs.into());
        }
    }
    serde_json::from_value(table).with_context(|| {
        format!(
            "[[evaluator]] at {}: not a valid training recipe",
            spec.location
        )
    })
}

/// The study's data with validation folded into training and the normalization refitted.
fn train_on_everything(mut data: SplitDataset) -> anyhow::Result<SplitDataset> {
    let validation = std::mem::take(&mut data.splits.validation);
    data.splits.train.extend(validation);
    data.splits.train.sort_unstable();
    data.normalization = Normalization::fit(&data.data, &data.splits.train)?;
    Ok(data)
}

/// Observer of the final phase (the CLI prints from it).
pub trait FinalObserver {
    fn note(&mut self, message: &str);
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
    let epochs = recipe.epochs as u64;
    let best = best_trials(storage, &config.objectives, Some(fin.top_k))?;
    if best.is_empty() {
        bail!("no complete trial to retrain: the search produced no result");
    }
    let data = train_on_everything(nas_data::load(data_config, config.seed)?)?;
    let space = build_space(&config.resolved_space()?)?;
    let out_dir = dir.join("final");
    let mut report = stored_report(storage)?.unwrap_or_default();
    // Members retrained earlier with the same recipe are kept; others are redone.
    report
        .members
        .retain(|m| m.epochs == epochs && best.iter().any(|t| t.id == m.trial_id));
    report.ensemble = None;
    let mut member_models = Vec::new();
    for trial in &best {
        let graph = space.decode(&trial.values)?;
        if let Some(done) = report.members.iter().find(|m| m.trial_id == trial.id) {
            observer.note(&format!(
                "final: trial {} already retrained (test accuracy {:.4})",
                trial.id, done.test_accuracy
            ));
            if fin.ensemble {
                // The ensemble needs the member's weights again: retrain deterministically.
                member_models
                    .push(train_member(&graph, trial.id, &recipe, config, runtime, &data)?.1);
            }
            continue;
        }
        observer.note(&format!(
            "final: retraining trial {} ({}) for {epochs} epochs on train + validation",
            trial.id, trial.arch
        ));
        let started = std::time::Instant::now();
        let (mut trainer_result, model) =
            train_member(&graph, trial.id, &recipe, config, runtime, &data)?;
        let model_path = if fin.export {
            let path = out_dir.join(format!("trial-{}.onnx", trial.id));
            write(&path, &model)?;
            trainer_result.info.model = Some(format!("trial-{}.onnx", trial.id));
            write(
                &nas_train::description_path(&path),
                &serde_json::to_vec_pretty(&trainer_result.info)?,
            )?;
            Some(path)
        } else {
            None
        };
        let member = FinalMember {
            trial_id: trial.id,
            arch: trial.arch.clone(),
            epochs,
            test_accuracy: trainer_result.test.accuracy,
            test_loss: trainer_result.test.loss,
            train_seconds: started.elapsed().as_secs_f64(),
            model: model_path,
        };
        observer.note(&format!(
            "final: trial {} test accuracy {:.4}",
            trial.id, member.test_accuracy
        ));
        report.members.push(member);
        storage.set_meta(META_KEY, &serde_json::to_string(&report)?)?;
        member_models.push(model);
    }
    if fin.ensemble && member_models.len() > 1 {
        let model = nas_graph::onnx::ensemble::average_softmax(&member_models)?;
        let test = data.part(Part::Test);
        let accuracy = nas_train::probabilities_accuracy(&model, &test, runtime)?;
        let path = if fin.export {
            let p = out_dir.join("ensemble.onnx");
            write(&p, &model)?;
            Some(p)
        } else {
            None
        };
        observer.note(&format!(
            "final: ensemble of {} test accuracy {accuracy:.4}",
            member_models.len()
        ));
        report.ensemble = Some(EnsembleResult {
            members: best.iter().map(|t| t.id).collect(),
            test_accuracy: accuracy,
            model: path,
        });
    }
    storage.set_meta(META_KEY, &serde_json::to_string(&report)?)?;
    Ok(report)
}

struct Trained {
    test: nas_train::Evaluation,
    info: nas_train::ExportInfo,
}

/// Trains one member from its deterministic initialisation; returns its test metrics and
/// deployable model bytes.
fn train_member(
    graph: &nas_graph::Graph,
    trial_id: u64,
    recipe: &TrainConfig,
    config: &StudyConfig,
    runtime: &RuntimeSettings,
    data: &SplitDataset,
) -> anyhow::Result<(Trained, Vec<u8>)> {
    let weights = Weights::he_init(graph, derive_seed(config.seed, trial_id))?;
    let mut trainer = Trainer::new(graph, weights, recipe, runtime, data)?;
    trainer.train_epochs(recipe.epochs)?;
    let test = trainer.evaluate_part(Part::Test)?;
    let model = trainer.deployable_model(&data.normalization)?;
    let info = trainer.export_info(&data.normalization)?;
    Ok((Trained { test, info }, model))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
