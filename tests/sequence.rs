//! End-to-end studies of the `sequence` space: the bundled digits read row by row (8 steps of
//! 8 features) and a small text file (token ids with padding), each searched, trained,
//! retrained by `[final]` and exported; the exported model is then run in ONNX Runtime on the
//! raw test split and must reproduce the accuracy the study reports.

use std::path::Path;

mod common;
use common::{load_data, onnx_test_accuracy, search_study};

const SEED: u64 = 11;

/// What every study shares: random search, cost and training evaluators, `[final]` export.
fn study(data: &str, space: &str, trials: u64, epochs: u64) -> String {
    format!(
        r#"
[study]
name = "sequence-e2e"
seed = {SEED}
directory = "study"

[budget]
trials = {trials}

[data]
{data}

[space]
kind = "sequence"
{space}

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"
latency = {{ batch = 2, runs = 2, warmup = 1 }}

[[evaluator]]
plugin = "train"
epochs = {epochs}
batch = 32
optimizer = "adamw"
lr = 0.01
weight_decay = 0.0

[objective]
maximize = "val_accuracy"

[final]
top_k = 1
epochs = {epochs}
"#
    )
}

/// The exported model of the best trial, checked against its description and the study.
fn check_final_model(dir: &Path, best: &serde_json::Value, data: &str, input: &[usize]) {
    let fin = &best["final"];
    // `nas best` names the model as seen from where it ran.
    let model = dir.join(fin["model"].as_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("onnx.json")).unwrap()).unwrap();
    let shape: Vec<&serde_json::Value> =
        info["input"]["shape"].as_array().unwrap().iter().collect();
    assert_eq!(shape[0], "batch", "{info}");
    let dims: Vec<usize> = shape[1..]
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(dims, input, "{info}");
    let reported = fin["test_accuracy"].as_f64().unwrap();
    let (measured, samples) = onnx_test_accuracy(&model, &load_data(dir, data, SEED));
    // The study ran the test split in batches of 256, here it is one batch: allow the one
    // sample whose argmax such a change of kernels could flip.
    assert!(
        (measured - reported).abs() <= 1.0 / samples as f64 + 1e-12,
        "the exported model scores {measured}, the study reported {reported}"
    );
}

#[test]
fn digits_as_row_sequences_search_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let data = "dataset = \"digits\"\nas_sequence = true";
    let space = "widths = [32]\ndepths = [1, 2]\nheads = [2, 4]";
    let (trials, best) = search_study(tmp.path(), &study(data, space, 4, 2));
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let acc = t["metrics"]["val_accuracy"].as_f64().unwrap();
        // Chance is 0.1; two epochs of any of these networks get far above it.
        assert!(acc > 0.4, "{}: val_accuracy {acc}", t["arch"]);
        assert!(t["metrics"]["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(t["arch"].as_str().unwrap().starts_with("width=32 depth="));
    }
    let best_val = best["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(best_val > 0.8, "best val_accuracy {best_val}");
    assert!(
        best["final"]["test_accuracy"].as_f64().unwrap() > 0.8,
        "{best}"
    );
    check_final_model(tmp.path(), &best, data, &[8, 8]);
}

/// `label<TAB>text` lines whose class is whether "good" or "bad" words dominate, among
/// filler words, with lengths 3 to 8 (so shorter texts are padded).
fn text_file(path: &Path) {
    let filler = [
        "the", "a", "film", "was", "plot", "and", "it", "very", "actors",
    ];
    let good = ["good", "great", "fine"];
    let bad = ["bad", "awful", "dull"];
    let mut state = 7u64;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut lines = String::new();
    for i in 0..400 {
        let positive = i % 2 == 0;
        let len = 3 + next(6);
        let words: Vec<&str> = (0..len)
            .map(|k| {
                if k == 0 || next(3) == 0 {
                    let pick = if positive { &good } else { &bad };
                    pick[next(3)]
                } else {
                    filler[next(filler.len())]
                }
            })
            .collect();
        let label = if positive { "pos" } else { "neg" };
        lines.push_str(&format!("{label}\t{}\n", words.join(" ")));
    }
    std::fs::write(path, lines).unwrap();
}

#[test]
fn text_token_ids_search_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    text_file(&tmp.path().join("reviews.tsv"));
    let data = "format = \"text\"\ntrain = \"reviews.tsv\"";
    let space = "widths = [16]\ndepths = [1]\nblocks = [\"attention\", \"gru\", \"conv\"]\nheads = [2]\nkernels = [3]\ndilations = [1]\npoolings = [\"mean\", \"max\", \"attention\"]";
    let (trials, best) = search_study(tmp.path(), &study(data, space, 3, 4));
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
    }
    let best_val = best["metrics"]["val_accuracy"].as_f64().unwrap();
    assert!(best_val > 0.85, "best val_accuracy {best_val}");
    // Token ids are fed as they are: the description's normalization is the identity, and
    // the model scores the raw ids as the study reported.
    let model = tmp.path().join(best["final"]["model"].as_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("onnx.json")).unwrap()).unwrap();
    assert_eq!(info["normalization"]["mean"], serde_json::json!([0.0]));
    assert_eq!(info["normalization"]["std"], serde_json::json!([1.0]));
    assert_eq!(
        load_data(tmp.path(), data, SEED).sample_shape(),
        vec![8],
        "the longest text"
    );
    check_final_model(tmp.path(), &best, data, &[8]);
}

/// Speech with variable lengths: the shipped Japanese Vowels set (utterances of 7 to 29
/// frames of 12 coefficients, padded to 29). The data set is padded, so the space masks the
/// padding: even `last` pooling reads each utterance's own last frame (without the mask it
/// read a padding frame, the same for every sample, and stayed at chance). The exported model
/// takes the raw padded frames and reproduces the study's test accuracy.
#[test]
fn padded_speech_features_search_train_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let npz = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/data/japanese-vowels.npz");
    let data = format!(
        "format = \"npz\"\npath = \"{}\"\nlayout = \"ntf\"\nvalidation = 0.2",
        npz.display()
    );
    let space = "widths = [16]\ndepths = [1]\nblocks = [\"conv\", \"gru\"]\nkernels = [3]\ndilations = [2]\npoolings = [\"last\"]\nclassifiers = [\"linear\"]";
    let (trials, best) = search_study(tmp.path(), &study(&data, space, 2, 12));
    assert_eq!(trials.len(), 2);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        let acc = t["metrics"]["val_accuracy"].as_f64().unwrap();
        // Chance is 1/9.
        assert!(acc > 0.6, "{}: val_accuracy {acc}", t["arch"]);
    }
    let test = best["final"]["test_accuracy"].as_f64().unwrap();
    assert!(test > 0.7, "{best}");
    let model = tmp.path().join(best["final"]["model"].as_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("onnx.json")).unwrap()).unwrap();
    assert_eq!(info["normalization"]["keep_padding"], true, "{info}");
    check_final_model(tmp.path(), &best, &data, &[29, 12]);
}
