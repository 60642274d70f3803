//! The training part of the final phase: retrain the best candidates from their
//! deterministic initialisation on train + validation, measure them on the held-out test
//! split, write deployable models (and an ensemble of them), and reuse what an earlier run
//! already produced.
//!
//! The engine picks the candidates and stores the [`FinalReport`]; [`retrain`] calls
//! [`RetrainObserver::save`] after each member, so a killed final phase redoes at most the
//! member it was training. Model paths in the report are relative to the study folder, so a
//! moved study still finds its models (absolute paths of older reports still read).

use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_data::{Normalization, Part, SplitDataset, Task};
use nas_graph::{Graph, Weights};
use nas_runtime::SessionSettings;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::eval::RegressionErrors;
use crate::export::{description_path, evaluate_model, probabilities_accuracy};
use crate::files::write_atomic;
use crate::trainer::Trainer;

/// Folder of the final models inside the study folder.
pub const FINAL_DIR: &str = "final";
/// File name of the ensemble model inside [`FINAL_DIR`].
pub const ENSEMBLE_FILE: &str = "ensemble.onnx";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalMember {
    pub trial_id: u64,
    pub arch: String,
    pub epochs: u64,
    /// `None` for regression (see `test_errors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Cross-entropy; for regression the mean squared error.
    pub test_loss: f64,
    /// Regression: errors on the test split in the targets' units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_errors: Option<RegressionErrors>,
    pub train_seconds: f64,
    /// The deployable model (relative to the study folder), when `export = true`.
    pub model: Option<PathBuf>,
    /// The recipe it was trained with; absent in reports written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<TrainConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleResult {
    pub members: Vec<u64>,
    /// `None` for regression (see `test_errors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_errors: Option<RegressionErrors>,
    /// The ensemble model (relative to the study folder), when `export = true`.
    pub model: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    pub members: Vec<FinalMember>,
    pub ensemble: Option<EnsembleResult>,
}

/// `test accuracy 0.9512`, or for regression `test RMSE 3.21, MAE 2.5, R^2 0.871`.
pub fn test_summary(accuracy: Option<f64>, errors: Option<&RegressionErrors>) -> String {
    match (accuracy, errors) {
        (_, Some(e)) => format!(
            "test RMSE {:.4}, MAE {:.4}, R^2 {:.4}",
            e.mse.sqrt(),
            e.mae,
            e.r2
        ),
        (Some(a), None) => format!("test accuracy {a:.4}"),
        (None, None) => "no test result".into(),
    }
}

impl FinalMember {
    /// See [`test_summary`].
    pub fn test_summary(&self) -> String {
        test_summary(self.test_accuracy, self.test_errors.as_ref())
    }
}

impl EnsembleResult {
    /// See [`test_summary`].
    pub fn test_summary(&self) -> String {
        test_summary(self.test_accuracy, self.test_errors.as_ref())
    }
}

impl FinalReport {
    /// The stored result of a trial, if it was retrained.
    pub fn member(&self, trial_id: u64) -> Option<&FinalMember> {
        self.members.iter().find(|m| m.trial_id == trial_id)
    }
}

/// A stored model path as a usable one: relative paths are taken from the study folder.
pub fn resolve_model(study_dir: &Path, stored: &Path) -> PathBuf {
    study_dir.join(stored)
}

/// How the final phase trains and what it writes.
pub struct RetrainPlan<'a> {
    /// The recipe with the final number of epochs.
    pub recipe: TrainConfig,
    /// Also build one model averaging the members' softmax outputs (with 2 or more members).
    pub ensemble: bool,
    /// Write the models under `<study_dir>/final/`.
    pub export: bool,
    pub study_dir: &'a Path,
    pub runtime: &'a SessionSettings,
}

/// One candidate to retrain.
pub struct Candidate {
    pub trial_id: u64,
    pub arch: String,
    pub graph: Graph,
    /// Seed of the weight initialisation (the engine derives it from the study seed).
    pub init_seed: u64,
}

/// What the final phase tells its caller.
pub trait RetrainObserver {
    /// A line for the user.
    fn note(&mut self, message: &str);
    /// Stores the report so far (called after each retrained member and at the end).
    fn save(&mut self, report: &FinalReport) -> Result<(), String>;
}

/// The study's data with validation folded into training and the normalization refitted.
pub fn fold_validation_into_training(mut data: SplitDataset) -> Result<SplitDataset, TrainError> {
    let validation = std::mem::take(&mut data.splits.validation);
    data.splits.train.extend(validation);
    data.splits.train.sort_unstable();
    data.normalization = Normalization::fit(&data.data, &data.splits.train)?;
    Ok(data)
}

/// Whether a stored member can stand for a retraining with `recipe`, and if not, why.
fn stale_reason(member: &FinalMember, recipe: &TrainConfig) -> Option<String> {
    if member.epochs != recipe.epochs as u64 {
        return Some(format!(
            "it was retrained for {} epochs, now {} are asked",
            member.epochs, recipe.epochs
        ));
    }
    match &member.recipe {
        Some(r) if !r.same_recipe(recipe) => {
            Some("it was retrained with other training settings".into())
        }
        _ => None,
    }
}

/// What to do with one candidate.
enum Plan {
    /// Keep the stored result; `model` is its file when one exists.
    Reuse { model: Option<PathBuf> },
    /// Train it (again); the reason is told to the user when there is one.
    Train { reason: Option<String> },
}

fn plan_for(plan: &RetrainPlan, report: &FinalReport, trial_id: u64) -> Plan {
    let Some(member) = report.member(trial_id) else {
        return Plan::Train { reason: None };
    };
    if let Some(why) = stale_reason(member, &plan.recipe) {
        return Plan::Train {
            reason: Some(format!("final: trial {trial_id}: {why}; retraining it")),
        };
    }
    let model = member
        .model
        .as_deref()
        .map(|m| resolve_model(plan.study_dir, m));
    match (&model, plan.export) {
        (Some(path), _) if path.is_file() => Plan::Reuse { model },
        (Some(path), true) => Plan::Train {
            reason: Some(format!(
                "final: the model of trial {trial_id} ({}) is missing; retraining it",
                path.display()
            )),
        },
        (None, true) => Plan::Train {
            reason: Some(format!(
                "final: trial {trial_id} was retrained without `export`; retraining it to write its model"
            )),
        },
        (_, false) => Plan::Reuse { model: None },
    }
}

/// Retrains (or reuses) every candidate, then builds the ensemble; `previous` is the report
/// of an earlier run (empty for the first). Members no longer among the candidates are
/// dropped from the report.
pub fn retrain(
    plan: &RetrainPlan,
    data: &SplitDataset,
    candidates: &[Candidate],
    previous: FinalReport,
    observer: &mut dyn RetrainObserver,
) -> Result<FinalReport, TrainError> {
    let save = |observer: &mut dyn RetrainObserver, report: &FinalReport| {
        observer.save(report).map_err(TrainError::Report)
    };
    let mut report = previous;
    let previous_ensemble = report.ensemble.take();
    for m in &report.members {
        if !candidates.iter().any(|c| c.trial_id == m.trial_id) {
            observer.note(&format!(
                "final: trial {} is no longer among the trials to retrain; its result is dropped",
                m.trial_id
            ));
        }
    }
    report
        .members
        .retain(|m| candidates.iter().any(|c| c.trial_id == m.trial_id));
    let plans: Vec<Plan> = candidates
        .iter()
        .map(|c| plan_for(plan, &report, c.trial_id))
        .collect();
    let want_ensemble = plan.ensemble && candidates.len() > 1;
    let ids: Vec<u64> = candidates.iter().map(|c| c.trial_id).collect();
    let kept_ensemble = previous_ensemble.filter(|e| {
        want_ensemble
            && e.members == ids
            && plans.iter().all(|p| matches!(p, Plan::Reuse { .. }))
            && match (&e.model, plan.export) {
                (Some(m), _) => resolve_model(plan.study_dir, m).is_file(),
                (None, export) => !export,
            }
    });
    let need_models = want_ensemble && kept_ensemble.is_none();

    let mut models = Vec::new();
    for (candidate, member_plan) in candidates.iter().zip(plans) {
        let reason = match member_plan {
            Plan::Reuse { model } => {
                let done = report
                    .member(candidate.trial_id)
                    .expect("a reused member is in the report");
                observer.note(&format!(
                    "final: trial {} already retrained ({})",
                    candidate.trial_id,
                    done.test_summary()
                ));
                if !need_models {
                    continue;
                }
                match model.map(|p| (std::fs::read(&p), p)) {
                    Some((Ok(bytes), _)) => {
                        models.push(bytes);
                        continue;
                    }
                    Some((Err(e), p)) => format!(
                        "final: cannot read the model of trial {} ({}: {e}); retraining it for the ensemble",
                        candidate.trial_id,
                        p.display()
                    ),
                    None => format!(
                        "final: trial {}: no model file is kept (`export = false`); retraining it for the ensemble",
                        candidate.trial_id
                    ),
                }
            }
            Plan::Train { reason } => reason.unwrap_or_default(),
        };
        if !reason.is_empty() {
            observer.note(&reason);
        }
        observer.note(&format!(
            "final: retraining trial {} ({}) for {} epochs on train + validation",
            candidate.trial_id, candidate.arch, plan.recipe.epochs
        ));
        let (member, model) = retrain_member(plan, data, candidate)?;
        observer.note(&format!(
            "final: trial {} {}",
            candidate.trial_id,
            member.test_summary()
        ));
        report.members.retain(|m| m.trial_id != candidate.trial_id);
        report.members.push(member);
        save(observer, &report)?;
        models.push(model);
    }
    // Members in the order of the candidates (best first), as the report always listed them.
    report
        .members
        .sort_by_key(|m| ids.iter().position(|id| *id == m.trial_id));

    if let Some(kept) = kept_ensemble {
        observer.note(&format!(
            "final: ensemble of {} already built ({})",
            kept.members.len(),
            kept.test_summary()
        ));
        report.ensemble = Some(kept);
    } else if need_models {
        report.ensemble = Some(build_ensemble(plan, data, &models, ids)?);
        let e = report.ensemble.as_ref().expect("just built");
        observer.note(&format!(
            "final: ensemble of {} {}",
            e.members.len(),
            e.test_summary()
        ));
    }
    save(observer, &report)?;
    Ok(report)
}

fn build_ensemble(
    plan: &RetrainPlan,
    data: &SplitDataset,
    models: &[Vec<u8>],
    members: Vec<u64>,
) -> Result<EnsembleResult, TrainError> {
    let test = data.part(Part::Test);
    let (model, test_accuracy, test_errors) = if data.data.task() == Task::Regression {
        let model = nas_graph::onnx::ensemble::average_predictions(models)
            .map_err(TrainError::graph("cannot build the ensemble"))?;
        let errors = evaluate_model(&model, &test, plan.runtime)?.errors;
        (model, None, errors)
    } else {
        let model = nas_graph::onnx::ensemble::average_softmax(models)
            .map_err(TrainError::graph("cannot build the ensemble"))?;
        let accuracy = probabilities_accuracy(&model, &test, plan.runtime)?;
        (model, Some(accuracy), None)
    };
    let model = if plan.export {
        let relative = Path::new(FINAL_DIR).join(ENSEMBLE_FILE);
        write(&resolve_model(plan.study_dir, &relative), &model)?;
        Some(relative)
    } else {
        None
    };
    Ok(EnsembleResult {
        members,
        test_accuracy,
        test_errors,
        model,
    })
}

/// Trains one member from its deterministic initialisation, measures it on the test split
/// and writes its model and description (with `export`); returns its result and model bytes.
fn retrain_member(
    plan: &RetrainPlan,
    data: &SplitDataset,
    candidate: &Candidate,
) -> Result<(FinalMember, Vec<u8>), TrainError> {
    let started = Instant::now();
    let weights = Weights::he_init(&candidate.graph, candidate.init_seed)
        .map_err(TrainError::graph("cannot initialise the weights"))?;
    let mut trainer = Trainer::new(&candidate.graph, weights, &plan.recipe, plan.runtime, data)?;
    trainer.train_epochs(plan.recipe.epochs)?;
    let test = trainer.evaluate_part(Part::Test)?;
    let model = trainer.deployable_model(&data.normalization)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let path = if plan.export {
        let name = format!("trial-{}.onnx", candidate.trial_id);
        let relative = Path::new(FINAL_DIR).join(&name);
        let path = resolve_model(plan.study_dir, &relative);
        let mut info = trainer.export_info(&data.normalization)?;
        info.model = Some(name);
        info.test_accuracy = test.accuracy;
        info.test_loss = Some(test.loss);
        info.test_errors = test.errors;
        write(&path, &model)?;
        let json = serde_json::to_vec_pretty(&info).expect("plain data serializes");
        write(&description_path(&path), &json)?;
        Some(relative)
    } else {
        None
    };
    let member = FinalMember {
        trial_id: candidate.trial_id,
        arch: candidate.arch.clone(),
        epochs: trainer.epoch() as u64,
        test_accuracy: test.accuracy,
        test_loss: test.loss,
        test_errors: test.errors,
        train_seconds,
        model: path,
        recipe: Some(plan.recipe.clone()),
    };
    Ok((member, model))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic(path, bytes).map_err(|e| TrainError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(epochs: u64, recipe: Option<TrainConfig>, model: Option<&str>) -> FinalMember {
        FinalMember {
            trial_id: 7,
            arch: "a".into(),
            epochs,
            test_accuracy: Some(0.9),
            test_loss: 0.3,
            test_errors: None,
            train_seconds: 1.0,
            model: model.map(PathBuf::from),
            recipe,
        }
    }

    fn plan<'a>(dir: &'a Path, runtime: &'a SessionSettings, export: bool) -> RetrainPlan<'a> {
        RetrainPlan {
            recipe: TrainConfig {
                epochs: 3,
                ..Default::default()
            },
            ensemble: true,
            export,
            study_dir: dir,
            runtime,
        }
    }

    fn report(m: FinalMember) -> FinalReport {
        FinalReport {
            members: vec![m],
            ensemble: None,
        }
    }

    #[test]
    fn a_member_with_its_model_on_disk_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = SessionSettings::cpu(Path::new("libonnxruntime.so"));
        let p = plan(tmp.path(), &runtime, true);
        write_atomic(&tmp.path().join("final/trial-7.onnx"), b"m").unwrap();
        let r = report(member(
            3,
            Some(p.recipe.clone()),
            Some("final/trial-7.onnx"),
        ));
        match plan_for(&p, &r, 7) {
            Plan::Reuse { model } => {
                assert_eq!(model, Some(tmp.path().join("final/trial-7.onnx")))
            }
            Plan::Train { reason } => panic!("retrained: {reason:?}"),
        }
    }

    #[test]
    fn an_absolute_model_path_of_an_older_report_still_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = SessionSettings::cpu(Path::new("libonnxruntime.so"));
        let p = plan(Path::new("/elsewhere"), &runtime, true);
        let abs = tmp.path().join("trial-7.onnx");
        write_atomic(&abs, b"m").unwrap();
        let r = report(member(3, None, Some(abs.to_str().unwrap())));
        assert!(matches!(plan_for(&p, &r, 7), Plan::Reuse { model } if model == Some(abs)));
    }

    #[test]
    fn a_missing_model_file_is_retrained_with_a_note() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = SessionSettings::cpu(Path::new("libonnxruntime.so"));
        let p = plan(tmp.path(), &runtime, true);
        let r = report(member(3, None, Some("final/trial-7.onnx")));
        match plan_for(&p, &r, 7) {
            Plan::Train { reason: Some(r) } => assert!(r.contains("is missing"), "{r}"),
            _ => panic!("a missing file must be regenerated"),
        }
    }

    #[test]
    fn another_recipe_or_length_is_retrained() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = SessionSettings::cpu(Path::new("libonnxruntime.so"));
        let p = plan(tmp.path(), &runtime, false);
        let r = report(member(5, None, None));
        assert!(matches!(
            plan_for(&p, &r, 7),
            Plan::Train { reason: Some(r) } if r.contains("5 epochs")
        ));
        let other = TrainConfig {
            epochs: 3,
            lr: Some(0.3),
            ..Default::default()
        };
        let r = report(member(3, Some(other), None));
        assert!(matches!(
            plan_for(&p, &r, 7),
            Plan::Train { reason: Some(r) } if r.contains("other training settings")
        ));
        assert!(matches!(plan_for(&p, &r, 8), Plan::Train { reason: None }));
    }

    #[test]
    fn older_reports_without_a_recipe_still_parse() {
        let json = r#"{"members":[{"trial_id":1,"arch":"a","epochs":2,"test_accuracy":0.5,
            "test_loss":1.0,"train_seconds":0.1,"model":"/abs/final/trial-1.onnx"}],
            "ensemble":null}"#;
        let r: FinalReport = serde_json::from_str(json).unwrap();
        assert_eq!(r.members[0].recipe, None);
        assert_eq!(
            resolve_model(Path::new("study"), r.members[0].model.as_deref().unwrap()),
            PathBuf::from("/abs/final/trial-1.onnx")
        );
    }
}
