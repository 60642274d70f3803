//! Deployable models: inference ONNX taking raw data values (normalization baked in), with a
//! JSON description beside it, and evaluation through exactly that model.

use std::path::{Path, PathBuf};

use nas_data::{Dataset, Normalization, Part, Task};
use nas_graph::onnx::export::BATCH_DIM;
use nas_graph::onnx::{ExportOptions, OPSET, export_inference, graph_signature};
use nas_runtime::SessionSettings;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::eval::{Evaluation, RegressionErrors, evaluate_batches, raw_batches};
use crate::step_api::{deployable_options, input_axis};
use crate::trainer::{EVAL_BATCH, Trainer};

/// One dimension of an exported tensor: fixed, or the symbolic batch dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    /// Always `float32`.
    pub dtype: String,
    pub shape: Vec<Dim>,
}

/// What `<model>.json` says about an exported model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportInfo {
    /// The ONNX file's name (beside this description); `None` from [`Trainer::export_info`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Raw data values as stored in the data set (e.g. 0..16 for digits); the model
    /// normalizes them itself with `normalization`.
    pub input: TensorInfo,
    /// Logits, one per class (apply softmax for probabilities); for regression, `prediction`
    /// `[N, 1]` in the targets' units.
    pub output: TensorInfo,
    /// `regression` for a regression model (absent: classification).
    #[serde(default, skip_serializing_if = "is_classification")]
    pub task: Task,
    pub classes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    pub normalization: Normalization,
    pub dataset: String,
    pub opset: i64,
    /// Epochs the weights were trained for.
    pub epochs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Accuracy on the held-out test split (models of the final phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Regression: errors on the held-out test split (models of the final phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_errors: Option<RegressionErrors>,
}

fn is_classification(task: &Task) -> bool {
    *task == Task::Classification
}

/// `model.onnx` -> `model.onnx.json`.
pub fn description_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    model.with_file_name(name)
}

impl Trainer<'_> {
    /// The inference model of the current weights, exported with [`deployable_options`]:
    /// it takes raw values (token ids as they are) and, for regression, predicts in the
    /// targets' units.
    pub fn deployable_model(&self, normalization: &Normalization) -> Result<Vec<u8>, TrainError> {
        let options = self.deployable_options(normalization);
        if options.normalize.is_some() {
            let axis = input_axis(normalization);
            let features = self.graph.input.get(axis).copied().unwrap_or(0);
            if normalization.channels() != features {
                return Err(TrainError::Mismatch(format!(
                    "the normalization has {} entries but the network's input {:?} has {features} along axis {axis}",
                    normalization.channels(),
                    self.graph.input
                )));
            }
        }
        let weights = self.weights()?;
        export_inference(&self.graph, &weights, &options)
            .map_err(TrainError::graph("cannot export the trained network"))
    }

    /// See [`deployable_options`].
    fn deployable_options(&self, normalization: &Normalization) -> ExportOptions {
        deployable_options(normalization, self.data.data.is_token_ids())
    }

    /// The description of [`Trainer::deployable_model`] (without a file name).
    pub fn export_info(&self, normalization: &Normalization) -> Result<ExportInfo, TrainError> {
        let sig = graph_signature(&self.graph, &self.deployable_options(normalization))
            .map_err(TrainError::graph("cannot describe the exported network"))?;
        let dims = |shape: &[Option<usize>]| -> Vec<Dim> {
            shape
                .iter()
                .map(|d| d.map_or_else(|| Dim::Symbolic(BATCH_DIM.into()), Dim::Fixed))
                .collect()
        };
        Ok(ExportInfo {
            model: None,
            input: TensorInfo {
                name: sig.input_name.clone(),
                dtype: "float32".into(),
                shape: dims(&sig.input_shape),
            },
            output: TensorInfo {
                name: sig.output_name.clone(),
                dtype: "float32".into(),
                shape: dims(&sig.output_shape),
            },
            task: self.data.data.task(),
            classes: self.data.classes(),
            class_names: self.data.data.class_names.clone(),
            normalization: normalization.clone(),
            dataset: self.data.data.name.clone(),
            opset: OPSET,
            epochs: self.epoch,
            val_accuracy: self.history.iter().rev().find_map(|s| s.val_accuracy),
            test_accuracy: None,
            test_loss: None,
            test_errors: None,
        })
    }

    /// Writes the deployable model to `path` and its description to `<path>.json`.
    pub fn export(
        &self,
        path: &Path,
        normalization: &Normalization,
    ) -> Result<ExportInfo, TrainError> {
        let model = self.deployable_model(normalization)?;
        let mut info = self.export_info(normalization)?;
        info.model = path.file_name().map(|n| n.to_string_lossy().into_owned());
        write_file(path, &model)?;
        let json = serde_json::to_vec_pretty(&info).expect("plain data serializes");
        write_file(&description_path(path), &json)?;
        Ok(info)
    }

    /// Loss and accuracy of the deployable model (normalization of the trainer's data) on
    /// raw samples: the path a user of the exported file takes.
    pub fn evaluate(&self, dataset: &Dataset) -> Result<Evaluation, TrainError> {
        let model = self.deployable_model(&self.data.normalization)?;
        evaluate_model(&model, dataset, &self.runtime)
    }

    /// [`Trainer::evaluate`] on one part of the trainer's split.
    pub fn evaluate_part(&self, part: Part) -> Result<Evaluation, TrainError> {
        self.evaluate(&self.data.part(part))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    crate::files::write_atomic(path, bytes).map_err(|e| TrainError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Loss and accuracy of any single-input classifier model whose first output is logits, on
/// raw samples (the model normalizes them itself, as deployable models do).
pub fn evaluate_model(
    model: &[u8],
    data: &Dataset,
    runtime: &SessionSettings,
) -> Result<Evaluation, TrainError> {
    let mut session = nas_runtime::session_from_bytes(model, runtime)?;
    evaluate_batches(
        &mut session,
        raw_batches(data, EVAL_BATCH),
        None,
        &format!("evaluating a model on `{}`", data.name),
    )
}

/// Accuracy (argmax of the first output) of a model that outputs class probabilities, such
/// as an ensemble of deployable models, on raw samples.
pub fn probabilities_accuracy(
    model: &[u8],
    data: &Dataset,
    runtime: &SessionSettings,
) -> Result<f64, TrainError> {
    // The loss part treats probabilities as logits and is meaningless; only argmax is used.
    evaluate_model(model, data, runtime)?
        .accuracy
        .ok_or_else(|| {
            TrainError::Mismatch(format!(
                "`{}` holds regression targets; class probabilities have no accuracy there",
                data.name
            ))
        })
}
