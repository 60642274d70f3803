//! Throughput of the ONNX Runtime training step (as `nas_train::Trainer` runs it) and of
//! inference, on CPU, for several networks built by our search spaces; the program behind
//! `cargo xtask bench-train`.
//!
//! Networks (`--nets`, default all):
//! - `reference`: Conv3x3(3->16)+BN+ReLU -> Conv3x3/s2(16->32)+BN+ReLU -> GAP -> Linear(32->10),
//!   3x32x32, batch 128;
//! - `nb201-b64`, `nb201-b256`: the NAS-Bench-201 network (C = 16, N = 5) of the `cell` space for
//!   [`NB201_ARCH`], 3x32x32, batch 64 and 256;
//! - `chain`: a MobileNetV2-like network of the `chain` space (default stages, depth 2,
//!   kernel 3, expansion 6, middle width), 3x32x32, batch 128;
//! - `nb201-mnist`: the NB201 network on 1x28x28, batch 256.
//!
//! For each network it writes `<out>/<net>/graph.json` (the IR), `tensors.json` +
//! `tensors.bin` (the initial weights, the normalized batch, its labels and our inference
//! logits on the initial weights), so xtask/bench/torch_reference.py runs the very same
//! network, weights and data; then it trains on that one batch (`--warmup` + `--steps` steps,
//! every loss recorded) and times inference. One JSON line per network on stdout; progress on
//! stderr. `--profile` turns on ONNX Runtime's profiler for the training session and reports
//! the trace file. `--epoch` also trains one epoch of the NB201 network on 60,000 1x28x28
//! images (Fashion-MNIST when installed) and writes those tensors to `<out>/epoch/`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_core::space::{ChainSpace, ChainSpaceConfig, SearchSpace};
use nas_data::{BatchOptions, Dataset, FASHION_MNIST_DIR, Part, SplitConfig, SplitDataset};
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::{Graph, Weights};
use nas_runtime::SessionSettings;
use nas_train::{OptimizerKind, Schedule, TrainConfig, Trainer};
use ndarray::{Array4, ArrayD};
use ort::value::TensorRef;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[path = "shared/nets.rs"]
mod nets;
use nets::{CLASSES, NB201_ARCH, nb201_net, reference_net};

/// Every network, in the order of the report: (name, input shape, batch).
const NETS: [(&str, [usize; 3], usize); 5] = [
    ("reference", [3, 32, 32], 128),
    ("nb201-b64", [3, 32, 32], 64),
    ("nb201-b256", [3, 32, 32], 256),
    ("chain", [3, 32, 32], 128),
    ("nb201-mnist", [1, 28, 28], 256),
];

/// The epoch run: images, batch.
const EPOCH_INPUT: [usize; 3] = [1, 28, 28];
const EPOCH_BATCH: usize = 256;

struct Args {
    nets: Vec<String>,
    steps: usize,
    warmup: usize,
    threads: usize,
    seed: u64,
    out: PathBuf,
    profile: bool,
    epoch: bool,
    epoch_images: usize,
    /// Overrides every network's own batch.
    batch: Option<usize>,
    /// ONNX Runtime's NCHWc conv kernels in the step (`--no-nchwc`: standard ops only).
    nchwc: bool,
}

const USAGE: &str = "usage: bench_train [--nets a,b,...] [--batch N] [--steps N] [--warmup N] [--threads N] \
     [--seed N] [--out DIR] [--profile] [--no-nchwc] [--epoch] [--epoch-images N]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        nets: NETS.iter().map(|n| n.0.to_string()).collect(),
        steps: 100,
        warmup: 20,
        threads: 2,
        seed: 1,
        out: PathBuf::from("results/bench-train"),
        profile: false,
        epoch: false,
        epoch_images: 60_000,
        batch: None,
        nchwc: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--profile" => {
                args.profile = true;
                continue;
            }
            "--no-nchwc" => {
                args.nchwc = false;
                continue;
            }
            "--epoch" => {
                args.epoch = true;
                continue;
            }
            _ => {}
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
            "--nets" => {
                args.nets = value
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--batch" => args.batch = Some(number("--batch")? as usize),
            "--steps" => args.steps = number("--steps")? as usize,
            "--warmup" => args.warmup = number("--warmup")? as usize,
            "--threads" => args.threads = number("--threads")? as usize,
            "--seed" => args.seed = number("--seed")?,
            "--out" => args.out = PathBuf::from(&value),
            "--epoch-images" => args.epoch_images = number("--epoch-images")? as usize,
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    if args.steps == 0 || args.threads == 0 || args.batch == Some(0) {
        return Err("--batch, --steps and --threads must be at least 1".into());
    }
    if args.epoch && args.epoch_images < EPOCH_BATCH {
        return Err(format!("--epoch-images must be at least the batch, {EPOCH_BATCH}").into());
    }
    for net in &args.nets {
        if !NETS.iter().any(|n| n.0 == net) {
            let known: Vec<&str> = NETS.iter().map(|n| n.0).collect();
            return Err(format!(
                "unknown network `{net}` in --nets; known: {}",
                known.join(", ")
            )
            .into());
        }
    }
    Ok(args)
}

/// The `chain` space's default stages, each with depth 2 (or its largest depth below),
/// kernel 3, the largest expansion and the middle width option.
fn chain_net(input: [usize; 3]) -> Result<(Graph, String)> {
    let space = ChainSpace::new(&ChainSpaceConfig {
        input: Some(input.to_vec()),
        classes: Some(CLASSES),
        ..ChainSpaceConfig::default()
    })?;
    let pick = |options: &[String], want: &dyn Fn(&[usize]) -> usize| -> f64 {
        let nums: Vec<usize> = options.iter().map(|o| o.parse().unwrap_or(0)).collect();
        let v = want(&nums);
        nums.iter().position(|&n| n == v).unwrap_or(0) as f64
    };
    let mut values = Vec::new();
    for choice in &space.descriptor().choices {
        let nas_plugin::ChoiceKind::Categorical { options } = &choice.kind else {
            return Err(format!("chain choice `{}` is not categorical", choice.name).into());
        };
        let v = if choice.name.ends_with("depth") {
            pick(options, &|n| {
                n.iter().copied().filter(|&d| d <= 2).max().unwrap_or(n[0])
            })
        } else if choice.name.ends_with("kernel") {
            pick(options, &|n| {
                if n.contains(&3) {
                    3
                } else {
                    *n.iter().min().unwrap()
                }
            })
        } else if choice.name.ends_with("expansion") {
            pick(options, &|n| *n.iter().max().unwrap())
        } else {
            pick(options, &|n| n[n.len() / 2])
        };
        values.push(v);
    }
    let arch = space.arch_string(&values);
    Ok((space.decode(&values)?, arch))
}

fn build_net(name: &str, input: [usize; 3]) -> Result<(Graph, String)> {
    Ok(match name {
        "reference" => (
            reference_net(input),
            "conv3x3-16/conv3x3s2-32/gap/linear".into(),
        ),
        "chain" => chain_net(input)?,
        _ => (nb201_net(input)?, NB201_ARCH.to_string()),
    })
}

/// `n` seeded random images (uniform in [0, 1)) with random labels, all training samples.
fn random_data(n: usize, input: [usize; 3], seed: u64) -> Result<SplitDataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [c, h, w] = input;
    let images = Array4::from_shape_simple_fn((n, c, h, w), || rng.random::<f32>());
    let labels = (0..n)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    split(Dataset::new("random", images, labels, CLASSES)?, seed)
}

/// Everything in the training part: no validation or test split, so training never pauses.
fn split(data: Dataset, seed: u64) -> Result<SplitDataset> {
    let n = data.len();
    let cfg = SplitConfig {
        validation: 0.0,
        test: 0.0,
        stratify: false,
        max_train: None,
    };
    Ok(SplitDataset::new(data, n, &cfg, None, seed)?)
}

/// Named f32 tensors in one little-endian file plus a JSON manifest of name, shape and byte
/// offset (read by torch_reference.py).
#[derive(Default)]
struct TensorFile {
    bytes: Vec<u8>,
    entries: Vec<serde_json::Value>,
}

impl TensorFile {
    fn add(&mut self, name: &str, shape: &[usize], values: impl IntoIterator<Item = f32>) {
        let offset = self.bytes.len();
        for v in values {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.entries.push(serde_json::json!({
            "name": name, "shape": shape, "offset": offset, "dtype": "f32le",
        }));
    }

    fn add_array(&mut self, name: &str, t: &ArrayD<f32>) {
        self.add(name, t.shape(), t.iter().copied());
    }

    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(dir.join("tensors.bin"), &self.bytes)
            .map_err(|e| format!("cannot write {}: {e}", dir.join("tensors.bin").display()))?;
        let manifest = serde_json::json!({ "file": "tensors.bin", "tensors": self.entries });
        std::fs::write(dir.join("tensors.json"), manifest.to_string())?;
        Ok(())
    }
}

fn write_graph(dir: &Path, graph: &Graph) -> Result<()> {
    std::fs::write(dir.join("graph.json"), serde_json::to_string(graph)?)
        .map_err(|e| format!("cannot write {}: {e}", dir.join("graph.json").display()).into())
}

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()).into())
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

/// The training recipe of the benchmark: SGD lr 0.1, Nesterov momentum 0.9, weight decay
/// 5e-4, constant rate, no augmentation.
fn train_config(epochs: usize, batch: usize, seed: u64, nchwc: bool) -> TrainConfig {
    TrainConfig {
        epochs,
        batch,
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
        seed: Some(seed),
        nchwc,
        ..TrainConfig::default()
    }
}

/// Logits of `model` for the batch `x`, and the milliseconds of the run.
fn infer(
    session: &mut ort::session::Session,
    x: &Array4<f32>,
    batch: usize,
) -> Result<(Vec<f32>, f64)> {
    let input = session.inputs()[0].name().to_string();
    let output = session.outputs()[0].name().to_string();
    let t = Instant::now();
    let outputs = session.run(ort::inputs![input.as_str() => TensorRef::from_array_view(x)?])?;
    let (shape, logits) = outputs[output.as_str()].try_extract_tensor::<f32>()?;
    let ms = ms_since(t);
    if shape.len() != 2 || shape[0] as usize != batch || shape[1] as usize != CLASSES {
        return Err(format!("inference returned logits of shape {shape:?}").into());
    }
    Ok((logits.to_vec(), ms))
}

/// The newest `<prefix>_*.json` ONNX Runtime's profiler wrote in `dir`.
fn profile_file(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

const PROFILE_PREFIX: &str = "ort-profile";

fn bench_net(
    args: &Args,
    library: &Path,
    (name, input, batch): (&str, [usize; 3], usize),
) -> Result<serde_json::Value> {
    let dir = args.out.join(name);
    make_dir(&dir)?;
    let runtime = SessionSettings {
        threads: args.threads,
        ..SessionSettings::cpu(library)
    };
    let (graph, arch) = build_net(name, input)?;
    let params = graph.param_count()?;
    let weights = Weights::he_init(&graph, args.seed)?;
    let data = random_data(batch, input, args.seed)?;

    // The batch as the step sees it (normalized), and our logits on the initial weights: the
    // PyTorch side checks its interpreter of the IR against them.
    let (x, labels) = data
        .eval_batches(Part::Train, batch)?
        .next()
        .ok_or("the data set is empty")?;
    let model = export_inference(&graph, &weights, &ExportOptions::default())?;
    let mut session = nas_runtime::session_from_bytes(&model, &runtime)?;
    let (logits, _) = infer(&mut session, &x, batch)?;
    write_graph(&dir, &graph)?;
    let mut file = TensorFile::default();
    for (n, t) in weights.iter() {
        file.add_array(n, t);
    }
    file.add("input", x.shape(), x.iter().copied());
    file.add("labels", &[batch], labels.iter().map(|&l| l as f32));
    file.add("logits", &[batch, CLASSES], logits);
    file.write(&dir)?;

    let mut train_runtime = runtime.clone();
    if args.profile {
        // Earlier traces would be taken for this run's.
        for old in std::iter::from_fn(|| profile_file(&dir, PROFILE_PREFIX)) {
            std::fs::remove_file(&old)?;
        }
        train_runtime.profiling = Some(dir.join(PROFILE_PREFIX));
    }
    let cfg = train_config(args.warmup + args.steps, batch, args.seed, args.nchwc);
    eprintln!(
        "[{name}] building the training step (input {input:?}, batch {batch}, {} threads, \
         {params} parameters) ...",
        args.threads
    );
    let t = Instant::now();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &train_runtime, &data)?;
    let build_ms = ms_since(t);
    if trainer.steps_per_epoch() != 1 || trainer.batch() != batch {
        return Err(format!(
            "expected one step of batch {batch} per epoch, the trainer has {} of batch {}",
            trainer.steps_per_epoch(),
            trainer.batch()
        )
        .into());
    }

    eprintln!(
        "[{name}] training: {} warm-up, {} timed steps ...",
        args.warmup, args.steps
    );
    let mut losses = Vec::new();
    for e in 1..=args.warmup {
        let s = trainer.train_epochs(e)?;
        losses.extend(s.iter().map(|s| s.train_loss));
    }
    let mut train_ms = Vec::with_capacity(args.steps);
    let wait_before = run_queue_wait_ns();
    for e in args.warmup + 1..=args.warmup + args.steps {
        let t = Instant::now();
        let s = trainer.train_epochs(e)?;
        train_ms.push(ms_since(t));
        losses.extend(s.iter().map(|s| s.train_loss));
    }
    let train_wait_ms = wait_delta_ms(wait_before, args.steps);
    let provider = trainer.provider().to_string();
    let trained = trainer.weights()?;
    // Ending the session makes ONNX Runtime write the profile.
    drop(trainer);
    let profile = if args.profile {
        let file = profile_file(&dir, PROFILE_PREFIX).ok_or_else(|| {
            format!(
                "ONNX Runtime wrote no {PROFILE_PREFIX}_*.json in {}",
                dir.display()
            )
        })?;
        Some(file.display().to_string())
    } else {
        None
    };

    // The batch assembly each step includes (shuffle, gather, normalize), on its own.
    let opts = BatchOptions {
        batch_size: batch,
        shuffle: true,
        drop_last: true,
        augment: None,
    };
    let mut data_ms = Vec::with_capacity(args.steps);
    for e in 0..args.steps {
        let t = Instant::now();
        let b = data.batches(Part::Train, &opts, e as u64)?.next();
        data_ms.push(ms_since(t));
        std::hint::black_box(b);
    }

    eprintln!("[{name}] inference: exporting the trained weights ...");
    let model = export_inference(&graph, &trained, &ExportOptions::default())?;
    let mut session = nas_runtime::session_from_bytes(&model, &runtime)?;
    for _ in 0..args.warmup {
        infer(&mut session, &x, batch)?;
    }
    let wait_before = run_queue_wait_ns();
    let infer_ms = (0..args.steps)
        .map(|_| infer(&mut session, &x, batch).map(|r| r.1))
        .collect::<Result<Vec<f64>>>()?;
    let infer_wait_ms = wait_delta_ms(wait_before, args.steps);

    let (train_med, train_min, train_p90) = stats(train_ms);
    let (data_med, _, _) = stats(data_ms);
    let (infer_med, infer_min, infer_p90) = stats(infer_ms);
    let img_s = |ms: f64| batch as f64 / ms * 1e3;
    eprintln!(
        "[{name}] train: {train_med:.2} ms/step ({:.0} img/s); inference: {infer_med:.3} ms \
         ({:.0} img/s); waiting for a CPU: {train_wait_ms:.2} ms per step, {infer_wait_ms:.3} ms \
         per inference",
        img_s(train_med),
        img_s(infer_med)
    );
    Ok(serde_json::json!({
        "kind": "network",
        "net": name,
        "arch": arch,
        "input": input,
        "dir": dir.display().to_string(),
        "batch": batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "seed": args.seed,
        "params": params,
        "provider": provider,
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
        "losses": losses,
        "profile": profile,
    }))
}

/// Fashion-MNIST's training images when installed, else seeded random ones; the first `n`.
fn epoch_data(n: usize, seed: u64) -> Result<(SplitDataset, String)> {
    let dir = Path::new(FASHION_MNIST_DIR);
    let images = dir.join("train-images-idx3-ubyte.gz");
    let labels = dir.join("train-labels-idx1-ubyte.gz");
    if images.is_file() && labels.is_file() {
        let data = nas_data::load_idx(&images, &labels, Some(CLASSES), "fashion-mnist")?;
        if data.len() < n {
            return Err(format!(
                "{} holds {} images, fewer than --epoch-images {n}",
                images.display(),
                data.len()
            )
            .into());
        }
        let first: Vec<usize> = (0..n).collect();
        let what = format!(
            "Fashion-MNIST training images ({}, the first {n})",
            images.display()
        );
        return Ok((split(data.select(&first), seed)?, what));
    }
    let what = format!(
        "{n} seeded random 1x28x28 images (Fashion-MNIST is not installed at {FASHION_MNIST_DIR}; \
         Debian package `dataset-fashion-mnist`)"
    );
    Ok((random_data(n, EPOCH_INPUT, seed)?, what))
}

/// One epoch of the NB201 network over `--epoch-images` 1x28x28 images through
/// `nas_train::Trainer`, as a study trains; the raw images, labels and normalization go to
/// `<out>/epoch/` for PyTorch's loop.
fn bench_epoch(args: &Args, library: &Path) -> Result<serde_json::Value> {
    let dir = args.out.join("epoch");
    make_dir(&dir)?;
    let runtime = SessionSettings {
        threads: args.threads,
        ..SessionSettings::cpu(library)
    };
    let graph = nb201_net(EPOCH_INPUT)?;
    let weights = Weights::he_init(&graph, args.seed)?;
    eprintln!("[epoch] loading {} images ...", args.epoch_images);
    let (data, source) = epoch_data(args.epoch_images, args.seed)?;
    write_graph(&dir, &graph)?;
    let mut file = TensorFile::default();
    for (n, t) in weights.iter() {
        file.add_array(n, t);
    }
    let images = &data.data.images;
    file.add("images", images.shape(), images.iter().copied());
    file.add(
        "labels",
        &[data.data.len()],
        data.data.labels.iter().map(|&l| l as f32),
    );
    let norm = &data.normalization;
    file.add("mean", &[norm.mean.len()], norm.mean.iter().copied());
    file.add("std", &[norm.std.len()], norm.std.iter().copied());
    file.write(&dir)?;

    let cfg = train_config(1, EPOCH_BATCH, args.seed, args.nchwc);
    let t = Instant::now();
    let mut trainer = Trainer::new(&graph, weights, &cfg, &runtime, &data)?;
    let build_ms = ms_since(t);
    eprintln!(
        "[epoch] training one epoch: {} steps of batch {EPOCH_BATCH} ...",
        trainer.steps_per_epoch()
    );
    let wait_before = run_queue_wait_ns();
    let t = Instant::now();
    let stats = trainer.train_epochs(1)?;
    let seconds = t.elapsed().as_secs_f64();
    let steps = trainer.steps_per_epoch();
    let wait_ms = wait_delta_ms(wait_before, steps);
    let s = stats.first().ok_or("the epoch reported nothing")?;
    eprintln!(
        "[epoch] {seconds:.1} s ({:.1} s in the steps), loss {:.4}, accuracy {:.3}",
        s.seconds,
        s.train_loss,
        s.train_accuracy.unwrap_or(f64::NAN)
    );
    Ok(serde_json::json!({
        "kind": "epoch",
        "net": "nb201-mnist",
        "dir": dir.display().to_string(),
        "source": source,
        "images": data.data.len(),
        "batch": EPOCH_BATCH,
        "steps": steps,
        "threads": args.threads,
        "build_ms": build_ms,
        "seconds": seconds,
        "step_seconds": s.seconds,
        "train_loss": s.train_loss,
        "train_accuracy": s.train_accuracy,
        "wait_ms_per_step": wait_ms,
    }))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let library = nas_runtime::locate_library(None)?;
    make_dir(&args.out)?;
    let nets: BTreeMap<&str, ([usize; 3], usize)> =
        NETS.iter().map(|&(n, i, b)| (n, (i, b))).collect();
    let mut stdout = std::io::stdout();
    for name in &args.nets {
        let (input, batch) = nets[name.as_str()];
        let batch = args.batch.unwrap_or(batch);
        let report = bench_net(&args, &library, (name, input, batch))
            .map_err(|e| format!("network `{name}`: {e}"))?;
        writeln!(stdout, "{report}")?;
        stdout.flush()?;
    }
    if args.epoch {
        let report = bench_epoch(&args, &library).map_err(|e| format!("epoch: {e}"))?;
        writeln!(stdout, "{report}")?;
    }
    Ok(())
}
