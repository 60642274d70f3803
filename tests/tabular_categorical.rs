//! End-to-end: the shipped Palmer penguins (categorical `island` and `sex`, `NA` gaps) searched
//! with the `mlp` space, the categories embedded from their codes, retrained by `[final]` and
//! exported. The exported model, fed the raw feature vectors (codes as stored, numbers not
//! normalized), must reproduce the test accuracy the study reports: neither training nor
//! export may normalize the codes.

mod common;
use common::{load_data, onnx_test_accuracy, search_study, shipped};

const SEED: u64 = 3;

/// `[data]` of the shipped config, with absolute paths.
fn data_table() -> String {
    format!(
        r#"format = "csv"
train = {:?}
test = {:?}
label_column = "species"
categorical_encoding = "embed"
missing = "mean"
missing_indicator = true
validation = 0.2"#,
        shipped("penguins-train.csv.gz"),
        shipped("penguins-test.csv.gz")
    )
}

fn study(data: &str) -> String {
    format!(
        r#"
[study]
name = "penguins-e2e"
seed = {SEED}
directory = "study"

[budget]
trials = 6

[data]
{data}

[space]
kind = "mlp"
depths = [1, 2]
widths = [16, 32]
activations = ["relu", "gelu"]
dropouts = [0.0]
norms = ["none", "batch"]
skips = [false]
embed_dims = [2, 4]

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"
latency = {{ batch = 4, runs = 2, warmup = 1 }}

[[evaluator]]
plugin = "train"
epochs = 30
batch = 32
optimizer = "adamw"
lr = 0.01
weight_decay = 1e-4

[objective]
maximize = "val_accuracy"

[final]
top_k = 1
epochs = 30
"#
    )
}

#[test]
fn penguins_with_embedded_categories_search_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = data_table();
    let (trials, best) = search_study(dir, &study(&data));
    assert_eq!(trials.len(), 6);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let arch = t["arch"].as_str().unwrap();
        assert!(arch.contains(" embed="), "{arch}");
        assert!(t["metrics"]["latency_ms"].as_f64().unwrap() > 0.0, "{t}");
    }
    // The species are nearly separable from the measurements (logistic regression on one-hot
    // features scores about 0.99); 55 validation and 69 test penguins.
    let val = best["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(val >= 0.94, "best val_accuracy {val}");
    let fin = &best["final"];
    let reported = fin["test_accuracy"].as_f64().unwrap();
    assert!(reported >= 0.95, "{best}");

    let split = load_data(dir, &data, SEED);
    let codes: Vec<usize> = split.data.categorical.iter().map(|c| c.feature).collect();
    assert_eq!(
        codes,
        [0, 9],
        "island first, sex after four numbers and their flags"
    );
    // The exported model takes the raw 11 features, normalizing the numbers only (its
    // description lists what it bakes in), and gets what the study measured.
    let model = dir.join(fin["model"].as_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("onnx.json")).unwrap()).unwrap();
    let norm = &info["normalization"];
    for f in 0..11 {
        let (mean, std) = (
            norm["mean"][f].as_f64().unwrap(),
            norm["std"][f].as_f64().unwrap(),
        );
        if codes.contains(&f) {
            assert_eq!((mean, std), (0.0, 1.0), "code feature {f}: {norm}");
        } else {
            assert!(mean != 0.0 && std != 1.0, "numeric feature {f}: {norm}");
        }
    }
    let (measured, samples) = onnx_test_accuracy(&model, &split);
    assert_eq!(samples, 69);
    assert!(
        (measured - reported).abs() <= 1.0 / samples as f64 + 1e-12,
        "the exported model scores {measured}, the study reported {reported}"
    );
}
