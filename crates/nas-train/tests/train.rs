//! Real training in ONNX Runtime on the bundled digits set (`cargo xtask ort` provisions the
//! library, or set ORT_DYLIB_PATH).

use std::time::Instant;

use nas_data::{DataConfig, Dataset, Part, SplitConfig, SplitDataset};
use nas_graph::{Graph, GraphBuilder, NodeId, Op, Weights};
use nas_runtime::SessionSettings;
use nas_train::{
    EpochStats, OptimizerKind, StepIo, TrainCheckpoint, TrainConfig, TrainError, Trainer,
    description_path,
};
use ndarray::{Array4, s};
use ort::session::Session;
use ort::value::Tensor;

fn runtime() -> SessionSettings {
    let lib = nas_runtime::locate_library(None)
        .expect("ONNX Runtime is provisioned (`cargo xtask ort` or ORT_DYLIB_PATH)");
    SessionSettings {
        threads: 2,
        ..SessionSettings::cpu(&lib)
    }
}

fn digits(seed: u64) -> SplitDataset {
    let cfg = DataConfig {
        dataset: Some("digits".into()),
        ..DataConfig::default()
    };
    nas_data::load(&cfg, seed).unwrap()
}

fn conv_bn_relu(b: &mut GraphBuilder, x: NodeId, c: usize, stride: usize) -> NodeId {
    let conv = b.conv(x, c, 3, stride, 1);
    let bn = b.batch_norm(conv);
    b.add(Op::Relu, &[bn])
}

/// conv3x3-BN-ReLU, conv3x3/s2-BN-ReLU, global average pool, (dropout,) linear.
fn reference_net(input: &[usize], classes: usize, dropout: Option<f32>) -> Graph {
    let mut b = GraphBuilder::new(input);
    let x = b.input();
    let a = conv_bn_relu(&mut b, x, 16, 1);
    let c = conv_bn_relu(&mut b, a, 32, 2);
    let mut p = b.add(Op::GlobalAvgPool, &[c]);
    if let Some(p_drop) = dropout {
        p = b.add(Op::Dropout { p: p_drop }, &[p]);
    }
    let l = b.add(
        Op::Linear {
            out_features: classes,
            bias: true,
        },
        &[p],
    );
    b.finish(l)
}

/// Accuracy and mean cross-entropy of an ONNX file on raw images, with nothing but `ort`.
fn plain_ort_eval(path: &std::path::Path, data: &Dataset) -> (f64, f64) {
    let mut session: Session =
        nas_runtime::session_from_bytes(&std::fs::read(path).unwrap(), &runtime()).unwrap();
    let (mut correct, mut loss) = (0usize, 0f64);
    for start in (0..data.len()).step_by(100) {
        let end = (start + 100).min(data.len());
        let x: Array4<f32> = data.images.slice(s![start..end, .., .., ..]).to_owned();
        let out = session
            .run(ort::inputs!["input" => Tensor::from_array(x).unwrap()])
            .unwrap();
        let logits = out["logits"].try_extract_array::<f32>().unwrap();
        for (row, &label) in logits.outer_iter().zip(&data.labels[start..end]) {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let arg = row.iter().position(|&v| v == max).unwrap();
            correct += usize::from(arg == label as usize);
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - row[label as usize];
        }
    }
    (correct as f64 / data.len() as f64, loss / data.len() as f64)
}

fn curve(stats: &[EpochStats]) -> Vec<(f64, Option<f64>, f64)> {
    stats
        .iter()
        .map(|s| (s.train_loss, s.train_accuracy, s.val_loss.unwrap_or(-1.0)))
        .collect()
}

#[test]
fn a_small_cnn_learns_digits_and_its_export_agrees() {
    let data = digits(0);
    let graph = reference_net(&[1, 8, 8], 10, None);
    // lr 0.2 instead of the default 0.05: 15 epochs of 18 steps need the larger rate.
    let cfg = TrainConfig {
        epochs: 15,
        lr: Some(0.2),
        ..TrainConfig::default()
    };
    let weights = Weights::he_init(&graph, 1).unwrap();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &runtime(), &data).unwrap();
    assert_eq!(trainer.step_io(), StepIo::Binding);
    let start = Instant::now();
    let stats = trainer.train_epochs(15).unwrap();
    let secs = start.elapsed().as_secs_f64();
    for s in &stats {
        println!(
            "epoch {:2}  lr {:.4}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  {:.3}s",
            s.epoch,
            s.lr,
            s.train_loss,
            s.train_accuracy.unwrap(),
            s.val_loss.unwrap(),
            s.val_accuracy.unwrap(),
            s.seconds
        );
    }
    println!("15 epochs in {secs:.2}s on {}", trainer.provider());
    assert_eq!(stats.len(), 15);
    assert_eq!(trainer.epoch(), 15);
    assert_eq!(
        trainer.global_step(),
        15 * (data.indices(Part::Train).len() / 64) as u64
    );
    let last = stats.last().unwrap();
    let val_acc = last.val_accuracy.unwrap();
    assert!(val_acc >= 0.95, "validation accuracy {val_acc}");
    assert!(stats[0].train_loss > last.train_loss);

    // The deployable model on raw validation images reproduces the reported accuracy.
    let raw_val = trainer.evaluate_part(Part::Validation).unwrap();
    assert_eq!(raw_val.samples, data.indices(Part::Validation).len());
    assert!(
        (raw_val.accuracy.unwrap() - val_acc).abs() <= 1e-6,
        "{} vs {val_acc}",
        raw_val.accuracy.unwrap()
    );
    assert!((raw_val.loss - last.val_loss.unwrap()).abs() < 1e-4);

    // Written to disk and run by a plain ORT session on raw test images, it gives the same
    // accuracy as the trainer's own normalized path on the test split.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.onnx");
    let info = trainer.export(&path, &data.normalization).unwrap();
    let test = data.part(Part::Test);
    let (acc, loss) = plain_ort_eval(&path, &test);
    let own = trainer.evaluate_normalized(Part::Test).unwrap().unwrap();
    println!(
        "test: exported model acc {acc:.4} loss {loss:.4}; trainer acc {:.4} loss {:.4} ({} images)",
        own.accuracy.unwrap(),
        own.loss,
        test.len()
    );
    assert!(
        (acc - own.accuracy.unwrap()).abs() <= 1e-6,
        "{acc} vs {}",
        own.accuracy.unwrap()
    );
    assert!((loss - own.loss).abs() < 1e-4, "{loss} vs {}", own.loss);
    assert!(acc >= 0.93, "test accuracy {acc}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(description_path(&path)).unwrap()).unwrap();
    assert_eq!(json["model"], "digits.onnx");
    assert_eq!(json["input"]["name"], "input");
    assert_eq!(
        json["input"]["shape"],
        serde_json::json!(["batch", 1, 8, 8])
    );
    assert_eq!(json["output"]["shape"], serde_json::json!(["batch", 10]));
    assert_eq!(json["classes"], 10);
    assert_eq!(json["dataset"], "digits");
    assert_eq!(
        json["normalization"]["mean"][0].as_f64().unwrap() as f32,
        data.normalization.mean[0]
    );
    assert_eq!(info.epochs, 15);
    assert_eq!(info.model.as_deref(), Some("digits.onnx"));
    let model = std::fs::read(&path).unwrap();
    assert_eq!(
        model,
        trainer.deployable_model(&data.normalization).unwrap()
    );
    let by_argmax = nas_train::probabilities_accuracy(&model, &test, &runtime()).unwrap();
    assert!((by_argmax - acc).abs() <= 1e-6);
}

#[test]
fn checkpoint_resume_continues_exactly() {
    let data = digits(3);
    // Dropout and AdamW: masks and bias correction must also continue where they stopped.
    let graph = reference_net(&[1, 8, 8], 10, Some(0.2));
    let cfg = TrainConfig {
        epochs: 4,
        optimizer: OptimizerKind::Adamw,
        warmup_epochs: 1,
        label_smoothing: 0.1,
        seed: Some(11),
        ..TrainConfig::default()
    };
    let init = Weights::he_init(&graph, 5).unwrap();
    let rt = runtime();

    let mut straight = Trainer::new(&graph, init.clone(), &cfg, &rt, &data).unwrap();
    let all = straight.train_epochs(4).unwrap();

    let mut first = Trainer::new(&graph, init, &cfg, &rt, &data).unwrap();
    let mut resumed_curve = first.train_epochs(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    first.checkpoint().unwrap().save(&path).unwrap();
    drop(first);
    let ckpt = TrainCheckpoint::load(&path).unwrap();
    assert_eq!((ckpt.epoch, ckpt.history.len()), (2, 2));
    let mut second = Trainer::resume(&ckpt, &rt, &data).unwrap();
    assert_eq!(second.epoch(), 2);
    resumed_curve.extend(second.train_epochs(4).unwrap());

    let (a, b) = (curve(&all), curve(&resumed_curve));
    println!("uninterrupted {a:?}\nresumed       {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.0 - y.0).abs() <= 1e-5
                && (x.1.unwrap() - y.1.unwrap()).abs() <= 1e-6
                && (x.2 - y.2).abs() <= 1e-5
        );
    }
    assert_eq!(second.history().len(), 4);
    let (wa, wb) = (straight.weights().unwrap(), second.weights().unwrap());
    for (name, t) in wa.iter() {
        let u = wb.get(name).unwrap();
        let diff = t
            .iter()
            .zip(u.iter())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{name}: {diff}");
    }

    // Another data split is refused.
    let other = digits(4);
    let e = Trainer::resume(&ckpt, &rt, &other)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("same [data] table"), "{e}");
}

#[test]
fn io_binding_and_session_run_agree() {
    let data = digits(1);
    let graph = reference_net(&[1, 8, 8], 10, None);
    let cfg = TrainConfig {
        epochs: 2,
        eval_every: 0,
        ..TrainConfig::default()
    };
    let init = Weights::he_init(&graph, 2).unwrap();
    let rt = runtime();
    let mut bound = Trainer::new(&graph, init.clone(), &cfg, &rt, &data).unwrap();
    let mut plain = Trainer::new(&graph, init, &cfg, &rt, &data).unwrap();
    plain.set_step_io(StepIo::Run).unwrap();
    let a = bound.train_epochs(2).unwrap();
    let b = plain.train_epochs(2).unwrap();
    assert_eq!(
        a[0].val_loss, None,
        "eval_every = 0 validates only the last epoch"
    );
    assert_eq!(curve(&a), curve(&b));
    let (sa, sb) = (bound.state().unwrap(), plain.state().unwrap());
    assert_eq!(
        sa, sb,
        "double-buffered binding must equal session.run bit for bit"
    );
    // Switching modes mid-run keeps the state.
    bound.set_step_io(StepIo::Run).unwrap();
    assert_eq!(bound.state().unwrap(), sb);
}

#[test]
fn a_huge_learning_rate_is_reported_as_divergence() {
    let data = digits(0);
    let graph = reference_net(&[1, 8, 8], 10, None);
    let cfg = TrainConfig {
        epochs: 3,
        lr: Some(1e6),
        schedule: nas_train::Schedule::Constant,
        ..TrainConfig::default()
    };
    let weights = Weights::he_init(&graph, 1).unwrap();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &runtime(), &data).unwrap();
    let err = trainer.train_epochs(3).unwrap_err();
    let TrainError::Diverged { epoch, step, loss } = err else {
        panic!("expected divergence, got {err}");
    };
    assert!(!loss.is_finite());
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.starts_with(&format!(
            "training diverged at epoch {epoch} step {step} (loss "
        )) && msg.contains("lower `lr` or use `optimizer = \"adamw\"`"),
        "{msg}"
    );
    let again = trainer.train_epochs(3).unwrap_err().to_string();
    assert!(again.contains("cannot continue"), "{again}");
}

#[test]
fn mismatched_network_and_data_are_explained() {
    let data = digits(0);
    let rt = runtime();
    let wrong_input = reference_net(&[3, 8, 8], 10, None);
    let w = Weights::he_init(&wrong_input, 0).unwrap();
    let e = Trainer::new(&wrong_input, w, &TrainConfig::default(), &rt, &data)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[3, 8, 8]") && e.contains("[1, 8, 8]"), "{e}");
    let wrong_classes = reference_net(&[1, 8, 8], 7, None);
    let w = Weights::he_init(&wrong_classes, 0).unwrap();
    let e = Trainer::new(&wrong_classes, w, &TrainConfig::default(), &rt, &data)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("10 classes"), "{e}");
}

#[test]
fn throughput_of_the_reference_net_on_cifar_sized_inputs() {
    // Random 3x32x32 images, batch 128: one epoch of 10 steps; printed, not asserted.
    let n = 1280;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let images = Array4::from_shape_simple_fn((n, 3, 32, 32), &mut next);
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let ds = Dataset::new("random", images, labels, 10).unwrap();
    let split = SplitConfig {
        validation: 0.0,
        test: 0.0,
        stratify: false,
        max_train: None,
    };
    let data = SplitDataset::new(ds, n, &split, None, 0).unwrap();
    let graph = reference_net(&[3, 32, 32], 10, None);
    let cfg = TrainConfig {
        epochs: 3,
        batch: 128,
        eval_every: 0,
        ..TrainConfig::default()
    };
    let weights = Weights::he_init(&graph, 0).unwrap();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &runtime(), &data).unwrap();
    // The first epoch warms up ORT; the second is timed, then a third with session.run.
    let warm = trainer.train_epochs(1).unwrap();
    let bound = trainer.train_epochs(2).unwrap()[0].seconds;
    trainer.set_step_io(StepIo::Run).unwrap();
    let run = trainer.train_epochs(3).unwrap()[0].seconds;
    for (what, secs) in [("I/O binding", bound), ("session.run", run)] {
        println!(
            "reference net 3x32x32, batch 128, 2 threads, {what}: epoch {secs:.3}s = {:.0} images/s ({:.1} ms/step; warm-up epoch {:.3}s)",
            n as f64 / secs,
            secs * 1e3 / 10.0,
            warm[0].seconds,
        );
    }
}

/// Digits read row by row (8 steps of 8 features): a GRU learns them from `[N, 8, 8]`
/// batches, the exported model normalizes the features itself and agrees with training's
/// own evaluation; token ids are exported without normalization; crops and flips are refused.
#[test]
fn sequences_train_in_their_sample_shape_and_export() {
    use nas_graph::TimePoolKind;
    use nas_graph::sequence::gru;

    let cfg = DataConfig {
        dataset: Some("digits".into()),
        as_sequence: true,
        ..DataConfig::default()
    };
    let data = nas_data::load(&cfg, 0).unwrap();
    assert_eq!(data.sample_shape(), vec![8, 8]);
    let mut b = GraphBuilder::new(&[8, 8]);
    let stem = b.add(
        Op::Dense {
            out_features: 16,
            bias: true,
        },
        &[0],
    );
    let r = gru(&mut b, stem, 16).unwrap();
    let pooled = b.add(
        Op::TimePool {
            kind: TimePoolKind::Mean,
        },
        &[r.sequence],
    );
    let out = b.add(
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[pooled],
    );
    let graph = b.finish(out);
    let recipe = TrainConfig {
        epochs: 6,
        batch: 32,
        optimizer: OptimizerKind::Adamw,
        lr: Some(0.01),
        weight_decay: 0.0,
        ..TrainConfig::default()
    };
    let weights = Weights::he_init(&graph, 2).unwrap();
    let mut trainer = Trainer::new(&graph, weights.clone(), &recipe, &runtime(), &data).unwrap();
    let stats = trainer.train_epochs(6).unwrap();
    let val = stats.last().unwrap().val_accuracy.unwrap();
    // Chance is 0.1.
    assert!(val > 0.8, "validation accuracy {val}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.onnx");
    trainer.export(&path, &data.normalization).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(description_path(&path)).unwrap()).unwrap();
    assert_eq!(json["input"]["shape"], serde_json::json!(["batch", 8, 8]));
    assert_eq!(json["normalization"]["feature_axis"], 2);
    assert_eq!(json["normalization"]["mean"].as_array().unwrap().len(), 8);
    let model = std::fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&model).contains("n0_mean"));
    let test = data.part(Part::Test);
    let exported = trainer.evaluate(&test).unwrap();
    let own = trainer.evaluate_normalized(Part::Test).unwrap().unwrap();
    assert!(
        (exported.accuracy.unwrap() - own.accuracy.unwrap()).abs() <= 1e-6,
        "{exported:?} vs {own:?}"
    );
    assert!((exported.loss - own.loss).abs() < 1e-4);

    let augmented = TrainConfig {
        augment: Some(true),
        ..recipe.clone()
    };
    let e = Trainer::new(&graph, weights, &augmented, &runtime(), &data)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("crop and flip need images") && e.contains("holds sequences"),
        "{e}"
    );

    // Token ids: Embedding -> mean over the unpadded steps -> Linear, exported as it is.
    let dir = tempfile::tempdir().unwrap();
    let cfg = token_text(dir.path(), |i| {
        if i % 2 == 0 {
            "a\tyes yes maybe\n"
        } else {
            "b\tno\n"
        }
    });
    let ids = nas_data::load(&cfg, 0).unwrap();
    let graph = mean_pooled_embedding(&ids.sample_shape(), ids.vocab_size().unwrap(), 2);
    let weights = Weights::he_init(&graph, 0).unwrap();
    let quick = TrainConfig {
        epochs: 5,
        lr: Some(0.05),
        ..recipe
    };
    let mut trainer = Trainer::new(&graph, weights, &quick, &runtime(), &ids).unwrap();
    trainer.train_epochs(5).unwrap();
    let model = trainer.deployable_model(&ids.normalization).unwrap();
    assert!(!String::from_utf8_lossy(&model).contains("n0_mean"));
    let raw = trainer.evaluate_part(Part::Test).unwrap();
    assert_eq!(raw.accuracy.unwrap(), 1.0, "{raw:?}");
}

/// A text file of 200 labelled lines (`line(i)` is line `i`) in `dir`, as a text data set.
fn token_text(dir: &std::path::Path, line: impl Fn(usize) -> &'static str) -> DataConfig {
    let text = dir.join("t.tsv");
    std::fs::write(&text, (0..200).map(line).collect::<String>()).unwrap();
    DataConfig {
        format: Some(nas_data::Format::Text),
        train: Some(text),
        ..DataConfig::default()
    }
}

/// Token ids -> Embedding (dim 4) -> mean over the unpadded steps -> Linear(`outputs`).
fn mean_pooled_embedding(shape: &[usize], vocab: usize, outputs: usize) -> Graph {
    let mut b = GraphBuilder::new(shape);
    let e = b.add(Op::Embedding { vocab, dim: 4 }, &[0]);
    let mask = b.add(Op::PaddingMask, &[0]);
    let pooled = b.add(
        Op::TimePool {
            kind: nas_graph::TimePoolKind::Mean,
        },
        &[e, mask],
    );
    let out = b.add(
        Op::Linear {
            out_features: outputs,
            bias: true,
        },
        &[pooled],
    );
    b.finish(out)
}

/// Regression on token ids: the exported model, which takes the ids as they are (no
/// normalization), still predicts in the targets' units, so its test errors are the trainer's.
#[test]
fn token_id_regression_exports_predictions_in_target_units() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = token_text(dir.path(), |i| match i % 3 {
        0 => "a\tyes yes maybe\n",
        1 => "a\tno\n",
        _ => "a\tyes no\n",
    });
    let ids = nas_data::load(&cfg, 0).unwrap();
    // Target: 100 + 10 x the number of words, far from standardized units.
    let mut data = ids.data.clone();
    let targets: Vec<f32> = data
        .images
        .outer_iter()
        .map(|s| 100.0 + 10.0 * s.iter().filter(|&&id| id != 0.0).count() as f32)
        .collect();
    data.set_targets(targets).unwrap();
    let n = data.len();
    let split = SplitDataset::new(data, n, &SplitConfig::default(), None, 0).unwrap();
    assert!(split.data.is_token_ids() && split.normalization.target.is_some());
    let graph = mean_pooled_embedding(&split.sample_shape(), split.vocab_size().unwrap(), 1);
    let recipe = TrainConfig {
        epochs: 5,
        lr: Some(0.05),
        ..TrainConfig::default()
    };
    let weights = Weights::he_init(&graph, 0).unwrap();
    let mut trainer = Trainer::new(&graph, weights, &recipe, &runtime(), &split).unwrap();
    trainer.train_epochs(5).unwrap();
    let own = trainer.evaluate_normalized(Part::Test).unwrap().unwrap();
    let exported = trainer.evaluate_part(Part::Test).unwrap();
    let (a, b) = (own.errors.unwrap(), exported.errors.unwrap());
    assert!(
        (a.mse - b.mse).abs() <= 1e-3 * a.mse.max(1e-3),
        "trainer {a:?}, exported model {b:?}"
    );
}
