//! Throughput of the ONNX Runtime training step and of inference for a fixed small CNN.
//!
//! The network: Conv3x3(3->16)+BN+ReLU -> Conv3x3/s2(16->32)+BN+ReLU -> GlobalAvgPool ->
//! Linear(32->10), softmax cross-entropy, on seeded random 3x32x32 images with 10 classes.
//!
//! Training runs through [`nas_train::Trainer`] exactly as a study trains (double-buffered I/O
//! binding, SGD with Nesterov momentum 0.9, weight decay 5e-4, constant lr 0.1, no
//! augmentation). The data set holds exactly one batch, so every epoch is one optimizer step
//! and each `train_epochs` call is timed as one step (batch assembly included; its share is
//! timed separately and reported as `data_ms_median`). Inference runs the model that
//! `nas_graph::onnx::export_inference` writes (weights as initializers) on one batch.
//!
//! Run it through `cargo xtask bench-train`, which provisions ONNX Runtime, builds this in
//! release mode, compares with PyTorch when `python3` can import it and writes
//! results/bench-train/summary.md. Directly:
//!
//! ```text
//! ORT_DYLIB_PATH=... cargo run --release -p nas-train --example bench_train -- \
//!     --batch 128 --steps 100 --warmup 20 --threads 2
//! ```
//!
//! Progress goes to stderr; stdout gets one line of JSON with the figures.

use std::time::Instant;

use nas_data::{BatchOptions, Dataset, Part, SplitConfig, SplitDataset};
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::{Graph, GraphBuilder, NodeId, Op, Weights};
use nas_runtime::SessionSettings;
use nas_train::{OptimizerKind, Schedule, TrainConfig, Trainer};
use ndarray::Array4;
use ort::value::TensorRef;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const CLASSES: usize = 10;
const INPUT: [usize; 3] = [3, 32, 32];

struct Args {
    batch: usize,
    steps: usize,
    warmup: usize,
    threads: usize,
    seed: u64,
}

const USAGE: &str =
    "usage: bench_train [--batch N] [--steps N] [--warmup N] [--threads N] [--seed N]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        batch: 128,
        steps: 100,
        warmup: 20,
        threads: 2,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let number = |what: &str| -> Result<u64> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what} must be a whole number, got `{value}`").into())
        };
        match flag.as_str() {
            "--batch" => args.batch = number("--batch")? as usize,
            "--steps" => args.steps = number("--steps")? as usize,
            "--warmup" => args.warmup = number("--warmup")? as usize,
            "--threads" => args.threads = number("--threads")? as usize,
            "--seed" => args.seed = number("--seed")?,
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    if args.batch == 0 || args.steps == 0 || args.threads == 0 {
        return Err("--batch, --steps and --threads must be at least 1".into());
    }
    Ok(args)
}

fn conv_bn_relu(b: &mut GraphBuilder, x: NodeId, channels: usize, stride: usize) -> NodeId {
    let conv = b.conv(x, channels, 3, stride, 1);
    let bn = b.batch_norm(conv);
    b.add(Op::Relu, &[bn])
}

/// The fixed reference network (no conv biases: BatchNorm follows each conv).
fn reference_net() -> Graph {
    let mut b = GraphBuilder::new(&INPUT);
    let x = b.input();
    let a = conv_bn_relu(&mut b, x, 16, 1);
    let c = conv_bn_relu(&mut b, a, 32, 2);
    let p = b.add(Op::GlobalAvgPool, &[c]);
    let l = b.add(
        Op::Linear {
            out_features: CLASSES,
            bias: true,
        },
        &[p],
    );
    b.finish(l)
}

/// `n` seeded random images (uniform in [0, 1)) with random labels; no validation or test
/// part, so training never pauses to validate.
fn random_data(n: usize, seed: u64) -> Result<SplitDataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [c, h, w] = INPUT;
    let images = Array4::from_shape_simple_fn((n, c, h, w), || rng.random::<f32>());
    let labels = (0..n)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    let data = Dataset::new("random", images, labels, CLASSES)?;
    let split = SplitConfig {
        validation: 0.0,
        test: 0.0,
        stratify: false,
    };
    Ok(SplitDataset::new(data, n, &split, None, seed)?)
}

/// Run-queue wait since `before`, in milliseconds per step (NaN when unknown).
fn wait_delta_ms(before: Option<u64>, steps: usize) -> f64 {
    match (before, run_queue_wait_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6 / steps as f64,
        _ => f64::NAN,
    }
}

/// Median, minimum and 90th percentile of millisecond samples.
fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    let p90 = ms[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    (median, ms[0], p90)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Nanoseconds this process's threads have spent runnable but waiting for a CPU (Linux
/// `/proc/self/task/*/schedstat`, second field), summed over the threads alive now; `None`
/// where the kernel does not report it. Growth during a timed loop means other processes
/// took CPU time from it, so its figures are low.
fn run_queue_wait_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let library = nas_runtime::locate_library(None)?;
    let runtime = SessionSettings {
        threads: args.threads,
        ..SessionSettings::cpu(&library)
    };
    let graph = reference_net();
    let params = graph.param_count()?;
    let weights = Weights::he_init(&graph, args.seed)?;
    let data = random_data(args.batch, args.seed)?;
    let cfg = TrainConfig {
        epochs: args.warmup + args.steps,
        batch: args.batch,
        optimizer: OptimizerKind::Sgd,
        lr: Some(0.1),
        momentum: 0.9,
        nesterov: true,
        schedule: Schedule::Constant,
        warmup_epochs: 0,
        weight_decay: 5e-4,
        label_smoothing: 0.0,
        augment: Some(false),
        eval_every: 0,
        seed: Some(args.seed),
        ..TrainConfig::default()
    };

    eprintln!(
        "building the training step (batch {}, {} threads, {params} parameters) ...",
        args.batch, args.threads
    );
    let t = Instant::now();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &runtime, &data)?;
    let build_ms = ms_since(t);
    if trainer.steps_per_epoch() != 1 || trainer.batch() != args.batch {
        return Err(format!(
            "expected one step of batch {} per epoch, the trainer has {} of batch {}",
            args.batch,
            trainer.steps_per_epoch(),
            trainer.batch()
        )
        .into());
    }

    eprintln!("training: {} warm-up steps ...", args.warmup);
    let mut losses = Vec::new();
    for e in 1..=args.warmup {
        let s = trainer.train_epochs(e)?;
        losses.extend(s.iter().map(|s| s.train_loss));
    }
    eprintln!("training: {} timed steps ...", args.steps);
    let mut train_ms = Vec::with_capacity(args.steps);
    let wait_before = run_queue_wait_ns();
    for e in args.warmup + 1..=args.warmup + args.steps {
        let t = Instant::now();
        let s = trainer.train_epochs(e)?;
        train_ms.push(ms_since(t));
        losses.extend(s.iter().map(|s| s.train_loss));
    }
    let train_wait_ms = wait_delta_ms(wait_before, args.steps);

    // The batch assembly each step includes (shuffle, gather, normalize), on its own.
    let opts = BatchOptions {
        batch_size: args.batch,
        shuffle: true,
        drop_last: true,
        augment: None,
    };
    let mut data_ms = Vec::with_capacity(args.steps);
    for e in 0..args.steps {
        let t = Instant::now();
        let batch = data.batches(Part::Train, &opts, e as u64)?.next();
        data_ms.push(ms_since(t));
        std::hint::black_box(batch);
    }

    eprintln!("inference: exporting the trained weights ...");
    let model = export_inference(&graph, &trainer.weights()?, &ExportOptions::default())?;
    let mut session = nas_runtime::session_from_bytes(&model, &runtime)?;
    let input = session.inputs()[0].name().to_string();
    let output = session.outputs()[0].name().to_string();
    let (x, _) = data
        .eval_batches(Part::Train, args.batch)?
        .next()
        .ok_or("the data set is empty")?;
    let mut infer = || -> Result<f64> {
        let t = Instant::now();
        let outputs =
            session.run(ort::inputs![input.as_str() => TensorRef::from_array_view(&x)?])?;
        let (shape, logits) = outputs[output.as_str()].try_extract_tensor::<f32>()?;
        let ms = ms_since(t);
        if shape.len() != 2 || shape[0] as usize != args.batch || shape[1] as usize != CLASSES {
            return Err(format!("inference returned logits of shape {shape:?}").into());
        }
        std::hint::black_box(logits);
        Ok(ms)
    };
    eprintln!(
        "inference: {} warm-up and {} timed runs ...",
        args.warmup, args.steps
    );
    for _ in 0..args.warmup {
        infer()?;
    }
    let wait_before = run_queue_wait_ns();
    let infer_ms = (0..args.steps)
        .map(|_| infer())
        .collect::<Result<Vec<f64>>>()?;
    let infer_wait_ms = wait_delta_ms(wait_before, args.steps);

    let (train_med, train_min, train_p90) = stats(train_ms);
    let (data_med, _, _) = stats(data_ms);
    let (infer_med, infer_min, infer_p90) = stats(infer_ms);
    let img_s = |ms: f64| args.batch as f64 / ms * 1e3;
    let report = serde_json::json!({
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "params": params,
        "provider": trainer.provider(),
        "ort_library": library.display().to_string(),
        "build_ms": build_ms,
        "train_ms_median": train_med,
        "train_ms_min": train_min,
        "train_ms_p90": train_p90,
        "train_img_s": img_s(train_med),
        "data_ms_median": data_med,
        "infer_ms_median": infer_med,
        "infer_ms_min": infer_min,
        "infer_ms_p90": infer_p90,
        "infer_img_s": img_s(infer_med),
        "train_wait_ms_per_step": train_wait_ms,
        "infer_wait_ms_per_run": infer_wait_ms,
        "loss_first": losses.first().copied().unwrap_or(f64::NAN),
        "loss_last": losses.last().copied().unwrap_or(f64::NAN),
    });
    eprintln!(
        "train: {train_med:.2} ms/step ({:.0} img/s); inference: {infer_med:.3} ms ({:.0} img/s); \
         waiting for a CPU: {train_wait_ms:.2} ms per step, {infer_wait_ms:.3} ms per inference",
        img_s(train_med),
        img_s(infer_med)
    );
    println!("{report}");
    Ok(())
}
