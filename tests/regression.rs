//! End-to-end regression: the shipped Palmer penguins with `task = "regression"` predicting
//! the body mass in grams, searched with the `mlp` space, retrained by `[final]` with an
//! ensemble, and exported. The study must report regression metrics (no accuracies), and the
//! exported model, fed raw features, must predict grams with the test error the study reports.

use std::path::Path;

use nas_data::{Part, Targets};

mod common;
use common::{load_data, nas, onnx_test_output, search_study, shipped, stderr, stdout};

const SEED: u64 = 5;

/// `[data]` of configs/regression-penguins-mass.toml, with absolute paths.
fn data_table() -> String {
    format!(
        r#"format = "csv"
train = {:?}
test = {:?}
task = "regression"
label_column = "body_mass_g"
missing_label = "drop"
categorical_encoding = "embed"
missing = "mean"
missing_indicator = true
validation = 0.2"#,
        shipped("penguins-train.csv.gz"),
        shipped("penguins-test.csv.gz")
    )
}

const MLP_SPACE: &str = r#"kind = "mlp"
depths = [1, 2]
widths = [16, 32]
activations = ["relu", "gelu"]
dropouts = [0.0]
norms = ["none", "batch"]
skips = [false]
embed_dims = [2, 4]"#;

fn study(data: &str, objective: &str) -> String {
    study_of(data, MLP_SPACE, 5, objective)
}

fn study_of(data: &str, space: &str, trials: usize, objective: &str) -> String {
    format!(
        r#"
[study]
name = "regression-e2e"
seed = {SEED}
directory = "study"

[budget]
trials = {trials}

[data]
{data}

[space]
{space}

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "train"
epochs = 30
batch = 32
optimizer = "adamw"
lr = 0.01
weight_decay = 1e-4

[objective]
{objective}

[final]
top_k = 2
epochs = 30
ensemble = true
"#
    )
}

/// RMSE of `predictions` against the regression targets of `data`.
fn rmse(predictions: &[f32], data: &nas_data::Dataset) -> f64 {
    let Targets::Values(y) = data.targets_of(&(0..data.len()).collect::<Vec<_>>()) else {
        panic!("regression targets")
    };
    assert_eq!(predictions.len(), y.len());
    let sse: f64 = predictions
        .iter()
        .zip(&y)
        .map(|(p, y)| f64::from(p - y).powi(2))
        .sum();
    (sse / y.len() as f64).sqrt()
}

/// Predictions `[N]` of the ONNX regression model at `path` on the raw test part of `split`.
fn onnx_test_predictions(path: &Path, split: &nas_data::SplitDataset) -> Vec<f32> {
    let y = onnx_test_output(path, split, "prediction");
    assert_eq!(y.shape(), [split.indices(Part::Test).len(), 1]);
    y.iter().copied().collect()
}

#[test]
fn penguin_body_mass_regression_search_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = data_table();
    let (trials, best) = search_study(dir, &study(&data, r#"minimize = "val_rmse""#));
    assert_eq!(trials.len(), 5);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let m = &t["metrics"];
        for name in ["val_mse", "val_rmse", "val_mae", "val_r2", "train_mae"] {
            assert!(m[name].as_f64().unwrap().is_finite(), "{name}: {t}");
        }
        assert!(m.get("val_accuracy").is_none() && m.get("train_accuracy").is_none());
        let (mse, rmse) = (
            m["val_mse"].as_f64().unwrap(),
            m["val_rmse"].as_f64().unwrap(),
        );
        assert!((rmse * rmse - mse).abs() <= 1e-6 * mse, "{t}");
    }
    // Predicting the training mean gives R^2 = 0 (RMSE about 800 g); a linear regression on
    // one-hot features gets R^2 0.86 on the test file.
    let val_r2 = best["metrics"]["val_r2"].as_f64().unwrap();
    assert!(val_r2 >= 0.7, "best val_r2 {val_r2}: {best}");
    let fin = &best["final"];
    assert!(fin.get("test_accuracy").is_none(), "{fin}");
    let reported_rmse = fin["test_rmse"].as_f64().unwrap();
    assert!(fin["test_r2"].as_f64().unwrap() >= 0.7, "{fin}");
    assert!(
        fin["ensemble"]["test_rmse"].as_f64().unwrap() > 0.0,
        "{fin}"
    );

    // The exported model predicts grams from the raw features: its RMSE on the test file is
    // the one the study reports.
    let split = load_data(dir, &data, SEED);
    let test = split.part(Part::Test);
    assert_eq!(test.len(), 69, "no test penguin lacks its mass");
    let model = dir.join(fin["model"].as_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("onnx.json")).unwrap()).unwrap();
    assert_eq!(info["task"], "regression", "{info}");
    assert_eq!(info["output"]["name"], "prediction", "{info}");
    let rmse = rmse(&onnx_test_predictions(&model, &split), &test);
    assert!(
        (rmse - reported_rmse).abs() <= 1e-3 * reported_rmse,
        "the exported model's RMSE is {rmse} g, the study reported {reported_rmse} g"
    );

    // The ensemble averages its members' predictions.
    let members: Vec<Vec<f32>> = std::fs::read_dir(dir.join("study/final"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .filter(|p| p.file_name().unwrap() != "ensemble.onnx")
        .map(|p| onnx_test_predictions(&p, &split))
        .collect();
    assert_eq!(members.len(), 2);
    let ensemble = onnx_test_predictions(&dir.join("study/final/ensemble.onnx"), &split);
    for (i, e) in ensemble.iter().enumerate() {
        let mean = (members[0][i] + members[1][i]) / 2.0;
        assert!((e - mean).abs() <= 1e-3 * mean.abs(), "{e} vs {mean}");
    }
}

#[test]
fn regression_needs_numbers_and_a_csv_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A target that is not a number names its line.
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "x,y\n1.0,2.5\n2.0,heavy\n3.0,4.0\n").unwrap();
    let data = format!(
        "format = \"csv\"\ntrain = {:?}\ntask = \"regression\"\nlabel_column = \"y\"",
        csv
    );
    std::fs::write(
        dir.join("study.toml"),
        study(&data, r#"minimize = "val_mse""#),
    )
    .unwrap();
    let o = nas(&["search", "study.toml"], dir);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("line 3") && e.contains("`heavy`"), "{e}");

    // A space asked for classes where the data predict a number.
    let good = dir.join("good.csv");
    std::fs::write(&good, "x,y\n1.0,2.5\n2.0,3.5\n3.0,4.0\n4.0,5.5\n5.0,6.0\n").unwrap();
    let data = format!(
        "format = \"csv\"\ntrain = {:?}\ntask = \"regression\"\ntest_fraction = 0.2",
        good
    );
    let space = format!("{MLP_SPACE}\nclasses = 3");
    std::fs::write(
        dir.join("classes.toml"),
        study_of(&data, &space, 1, r#"minimize = "val_mse""#),
    )
    .unwrap();
    let o = nas(&["search", "classes.toml"], dir);
    let e = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        e.contains("is for regression") && e.contains("leave `classes` out"),
        "{e}"
    );

    // Class-labelled sources are refused with what to do.
    std::fs::write(
        dir.join("digits.toml"),
        study(
            "dataset = \"digits\"\ntask = \"regression\"",
            r#"minimize = "val_mse""#,
        ),
    )
    .unwrap();
    let o = nas(&["search", "digits.toml"], dir);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("task") && e.contains("format = \"csv\""), "{e}");
}

/// A regression target computed from real speech frames (Japanese Vowels, zero-padded after
/// each utterance): the mean of the first cepstrum coefficient over the utterance's own
/// frames. Written as NumPy files with lengths (`format = "npy"`, `layout = "ntf"`) and
/// searched with the `sequence` space: float targets from a NumPy label array, padded
/// sequences, one output, and an exported model that predicts the target's units. (Mean
/// pooling over the real frames fits it best: R^2 0.99 on validation; without the padding
/// mask a network still reaches about 0.97 by learning the lengths from the padding.)
#[test]
fn padded_sequence_regression_from_numpy_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let npz = format!(
        "format = \"npz\"\npath = {:?}\nlayout = \"ntf\"",
        shipped("japanese-vowels.npz")
    );
    let speech = load_data(dir, &npz, SEED);
    let frames = &speech.data.images; // [N, T, F, 1]
    let (n, t, f, _) = frames.dim();
    let x = frames.to_shape((n, t, f)).unwrap().to_owned();
    let mut lengths = ndarray::Array1::<i64>::zeros(n);
    let mut y = ndarray::Array1::<f32>::zeros(n);
    for (i, utterance) in x.outer_iter().enumerate() {
        let real: Vec<f32> = utterance
            .outer_iter()
            .take_while(|step| !nas_data::is_padding(step.as_slice().unwrap()))
            .map(|step| step[0])
            .collect();
        lengths[i] = real.len() as i64;
        y[i] = real.iter().sum::<f32>() / real.len() as f32;
    }
    ndarray_npy::write_npy(dir.join("x.npy"), &x).unwrap();
    ndarray_npy::write_npy(dir.join("y.npy"), &y).unwrap();
    ndarray_npy::write_npy(dir.join("lengths.npy"), &lengths).unwrap();
    let data = r#"format = "npy"
train_images = "x.npy"
train_labels = "y.npy"
train_lengths = "lengths.npy"
layout = "ntf"
task = "regression"
validation = 0.2
test_fraction = 0.2"#;
    let space = r#"kind = "sequence"
widths = [16]
depths = [1]
blocks = ["conv", "identity"]
kernels = [3]
dilations = [1]
poolings = ["mean"]
classifiers = ["linear"]"#;
    let (_, best) = search_study(dir, &study_of(data, space, 2, r#"minimize = "val_mse""#));
    let val_r2 = best["metrics"]["val_r2"].as_f64().unwrap();
    assert!(val_r2 >= 0.8, "{best}");
    let fin = &best["final"];
    let split = load_data(dir, data, SEED);
    assert!(split.is_padded());
    let model = dir.join(fin["model"].as_str().unwrap());
    let measured = rmse(
        &onnx_test_predictions(&model, &split),
        &split.part(Part::Test),
    );
    let reported = fin["test_rmse"].as_f64().unwrap();
    assert!(
        (measured - reported).abs() <= 1e-3 * reported,
        "exported model RMSE {measured}, reported {reported}: {fin}"
    );
    assert!(fin["test_r2"].as_f64().unwrap() >= 0.8, "{fin}");
}
