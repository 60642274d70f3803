//! GPU check: trains and runs two benchmark networks on a GPU provider and on CPU, from the
//! same seed, weights and data, and checks that the GPU really ran and agrees with the CPU.
//!
//! Networks (10 classes, 3x32x32 inputs):
//! - `reference-cnn`, batch 128: Conv3x3(3->16)+BN+ReLU -> Conv3x3/s2(16->32)+BN+ReLU -> GAP ->
//!   Linear(10);
//! - `nb201-cell`, batch 64: the NAS-Bench-201 network (C=16, N=5) of the `cell` space for
//!   [`nets::NB201_ARCH`].
//!
//! For each: `--steps` SGD steps (default 200) through `nas_train::Trainer` on CPU and on the
//! provider, then inference throughput (median of timed runs, input and outputs kept in the
//! provider's memory, device-synchronised) on both, and on TensorRT when `--provider cuda` and
//! the TensorRT provider can be created (skipped with a note when it cannot, e.g. without
//! libnvinfer). Checks, each failing the exit code:
//! - the provider's sessions were built on it (no fallback is configured, so a missing GPU is
//!   an error) and the training state lives in its memory;
//! - the loss curves agree (see [`Tolerance`]).
//!
//! The data: one batch of seeded synthetic images (a class prototype plus noise), with random
//! crop and flip, so every step sees a different batch and each epoch is one step (its loss
//! is the step's). Step throughput counts the whole step as a study runs it, batch assembly
//! on the host included, and leaves out the first [`WARMUP_STEPS`] steps (cuDNN picks its
//! algorithms there).
//!
//! `cargo xtask gpu-check` provisions the GPU build of ONNX Runtime, builds this in release
//! mode and runs it. Directly, `--provider cpu` runs the same program against CPU on both
//! sides (the curves must then match exactly), which needs no GPU:
//!
//! ```text
//! ORT_DYLIB_PATH=... cargo run --release -p nas-core --example gpu_check -- \
//!     --provider cpu --steps 20 --out results/gpu-check/summary.md
//! ```
//!
//! Prints the table (also written to `--out`) on stdout, progress on stderr; exits 1 when a
//! check fails, 2 on a usage error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use nas_data::{Dataset, SplitConfig, SplitDataset};
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::{Graph, Weights};
use nas_runtime::{
    ExecutionProvider, RuntimeError, SessionSettings, TensorHome, TensorStore, time_runs,
};
use nas_train::{Schedule, TrainConfig, Trainer};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[path = "shared/nets.rs"]
mod nets;
use nets::{CLASSES, nb201_net, reference_net};

const INPUT: [usize; 3] = [3, 32, 32];
/// Steps left out of the step throughput.
const WARMUP_STEPS: usize = 5;
const INFERENCE_WARMUP: usize = 10;
const INFERENCE_RUNS: usize = 50;

const USAGE: &str = "usage: gpu_check [--provider cuda|tensorrt|cpu] [--steps N] [--threads N] \
                     [--seed N] [--out FILE]";

#[derive(Debug)]
struct Args {
    provider: ExecutionProvider,
    steps: usize,
    threads: usize,
    seed: u64,
    out: Option<PathBuf>,
}

fn parse_args(args: impl Iterator<Item = String>) -> std::result::Result<Args, String> {
    let mut parsed = Args {
        provider: ExecutionProvider::Cuda,
        steps: 200,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(16)),
        seed: 1,
        out: None,
    };
    let mut it = args;
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))?;
        let number = |what: &str| -> std::result::Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what} must be a whole number, got `{value}`"))
        };
        match flag.as_str() {
            "--provider" => {
                parsed.provider = ExecutionProvider::parse(&value).map_err(|e| e.to_string())?
            }
            "--steps" => parsed.steps = number("--steps")? as usize,
            "--threads" => parsed.threads = number("--threads")? as usize,
            "--seed" => parsed.seed = number("--seed")?,
            "--out" => parsed.out = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument `{other}`; {USAGE}")),
        }
    }
    if parsed.steps == 0 || parsed.threads == 0 {
        return Err("--steps and --threads must be at least 1".into());
    }
    Ok(parsed)
}

/// How closely the provider's loss curve must follow the CPU's.
///
/// Both runs start from the same weights and see the same batches, but the GPU sums float32
/// values in another order (cuDNN / cuBLAS algorithms, parallel reductions in BatchNorm and
/// the loss), so each step differs from the CPU's by rounding (relative ~1e-6), and training
/// amplifies that slowly. Over the first `early_steps` the curves must stay within
/// `early_abs` (a wrong kernel or a stale state buffer is off by far more from the first
/// steps on); later the trajectories drift apart in detail but must reach the same level: the
/// mean of the last `final_window` losses within `final_rel` of the CPU's (or `final_abs`
/// when both are near zero).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub early_steps: usize,
    pub early_abs: f64,
    pub final_window: usize,
    pub final_rel: f64,
    pub final_abs: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            early_steps: 20,
            early_abs: 0.05,
            final_window: 10,
            final_rel: 0.05,
            final_abs: 0.01,
        }
    }
}

/// How two loss curves compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// max |other - cpu| over the first `early_steps` steps (or all when fewer).
    pub early_max_diff: f64,
    pub early_steps: usize,
    /// Mean of the last `final_window` losses.
    pub final_cpu: f64,
    pub final_other: f64,
    /// Why the curves disagree; `None` when they agree.
    pub failure: Option<String>,
}

impl Agreement {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Compares the provider's loss curve with the CPU's.
pub fn compare_curves(cpu: &[f64], other: &[f64], tol: &Tolerance) -> Agreement {
    let early = tol.early_steps.min(cpu.len()).min(other.len());
    let early_max_diff = cpu[..early]
        .iter()
        .zip(&other[..early])
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0,
            |m: f64, d| if d.is_nan() { f64::NAN } else { m.max(d) },
        );
    let window = |v: &[f64]| mean(&v[v.len().saturating_sub(tol.final_window)..]);
    let (final_cpu, final_other) = (window(cpu), window(other));
    let final_diff = (final_other - final_cpu).abs();
    let failure = if cpu.is_empty() || cpu.len() != other.len() {
        Some(format!(
            "the curves have {} and {} steps",
            cpu.len(),
            other.len()
        ))
    } else if let Some(i) = cpu.iter().chain(other).position(|v| !v.is_finite()) {
        Some(format!(
            "a loss is not finite (step {} of the {} run)",
            i % cpu.len() + 1,
            if i < cpu.len() { "CPU" } else { "provider's" }
        ))
    } else if early_max_diff.is_nan() || early_max_diff > tol.early_abs {
        Some(format!(
            "max |loss difference| over the first {early} steps is {early_max_diff:.4} > {}",
            tol.early_abs
        ))
    } else if final_diff > tol.final_abs && final_diff > tol.final_rel * final_cpu.abs() {
        Some(format!(
            "final loss {final_other:.4} vs {final_cpu:.4} on CPU differs by {:.1} % > {:.0} %",
            100.0 * final_diff / final_cpu.abs().max(f64::MIN_POSITIVE),
            100.0 * tol.final_rel
        ))
    } else {
        None
    };
    Agreement {
        early_max_diff,
        early_steps: early,
        final_cpu,
        final_other,
        failure,
    }
}

/// Median of a sample (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One network's figures and checks.
#[derive(Clone, Debug)]
pub struct Row {
    pub network: String,
    pub batch: usize,
    /// Images per second: training steps and inference, on CPU and on the provider.
    pub cpu_train: Option<f64>,
    pub gpu_train: Option<f64>,
    pub cpu_infer: Option<f64>,
    pub gpu_infer: Option<f64>,
    /// TensorRT inference images/s, or why there is none.
    pub trt_infer: std::result::Result<f64, String>,
    pub agreement: Option<Agreement>,
    /// Checks that failed (provider, state placement, errors), in order.
    pub failures: Vec<String>,
    /// Wall time of this network's check.
    pub seconds: f64,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            network: String::new(),
            batch: 0,
            cpu_train: None,
            gpu_train: None,
            cpu_infer: None,
            gpu_infer: None,
            trt_infer: Err("not tried".into()),
            agreement: None,
            failures: Vec::new(),
            seconds: 0.0,
        }
    }
}

impl Row {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.agreement.as_ref().is_some_and(Agreement::ok)
    }
}

fn rate(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or("n/a".into(), |v| format!("{v:.0}"))
}

/// The summary: what ran, a table of figures, then each failure.
pub fn table(provider: &str, steps: usize, tol: &Tolerance, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# GPU check: `{provider}` against CPU\n");
    let _ = writeln!(
        out,
        "{steps} SGD steps per network from the same weights and batches; images/s of training \
         steps (batch assembly included) and of inference (median of {INFERENCE_RUNS} runs, \
         device-synchronised). Loss agreement: max |loss_{provider} - loss_cpu| over the first \
         {} steps <= {}, and the mean of the last {} losses within {:.0} % (or {}).\n",
        tol.early_steps,
        tol.early_abs,
        tol.final_window,
        100.0 * tol.final_rel,
        tol.final_abs
    );
    let _ = writeln!(
        out,
        "| network | batch | train img/s cpu | train img/s {provider} | inference img/s cpu | \
         inference img/s {provider} | inference img/s tensorrt | max loss diff (first steps) | \
         final loss cpu / {provider} | result | check s |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    for r in rows {
        let (diff, fin) = match &r.agreement {
            Some(a) => (
                format!("{:.2e} ({} steps)", a.early_max_diff, a.early_steps),
                format!("{:.4} / {:.4}", a.final_cpu, a.final_other),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        let trt = match &r.trt_infer {
            Ok(v) => rate(Some(*v)),
            Err(_) => "skipped".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.network,
            r.batch,
            rate(r.cpu_train),
            rate(r.gpu_train),
            rate(r.cpu_infer),
            rate(r.gpu_infer),
            trt,
            diff,
            fin,
            if r.ok() { "ok" } else { "FAIL" },
            r.seconds
        );
    }
    let mut notes = String::new();
    for r in rows {
        for f in &r.failures {
            let _ = writeln!(notes, "- FAIL {}: {f}", r.network);
        }
        if let Some(why) = r.agreement.as_ref().and_then(|a| a.failure.as_ref()) {
            let _ = writeln!(notes, "- FAIL {}: loss curves: {why}", r.network);
        }
        if let Err(why) = &r.trt_infer {
            let _ = writeln!(notes, "- {}: TensorRT skipped: {why}", r.network);
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, "\n{notes}");
    }
    out
}

/// `n` images: the prototype of its class (seeded noise) plus as much noise again, so the
/// classes are learnable and the loss falls.
fn synthetic_data(n: usize, seed: u64) -> Result<SplitDataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [c, h, w] = INPUT;
    let prototypes =
        Array4::from_shape_simple_fn((CLASSES, c, h, w), || rng.random_range(-1.0f32..1.0));
    let labels: Vec<u32> = (0..n).map(|i| (i % CLASSES) as u32).collect();
    let images = Array4::from_shape_fn((n, c, h, w), |(i, ch, y, x)| {
        prototypes[[labels[i] as usize, ch, y, x]] + rng.random_range(-1.0f32..1.0)
    });
    let data = Dataset::new("synthetic", images, labels, CLASSES)?;
    let split = SplitConfig {
        validation: 0.0,
        test: 0.0,
        stratify: false,
        max_train: None,
    };
    Ok(SplitDataset::new(data, n, &split, None, seed)?)
}

/// One training run: per-step losses and seconds.
struct Curve {
    losses: Vec<f64>,
    seconds: Vec<f64>,
}

impl Curve {
    fn images_per_second(&self, batch: usize) -> Option<f64> {
        let timed = &self.seconds[WARMUP_STEPS.min(self.seconds.len().saturating_sub(1))..];
        let m = median(timed);
        (m > 0.0).then(|| batch as f64 / m)
    }
}

fn settings(
    provider: ExecutionProvider,
    threads: usize,
    library: &std::path::Path,
) -> SessionSettings {
    SessionSettings {
        provider,
        // No fallback: a provider that cannot run is an error, never a silent CPU run.
        fallback: None,
        threads,
        ..SessionSettings::cpu(library)
    }
}

fn train(
    graph: &Graph,
    weights: &Weights,
    cfg: &TrainConfig,
    runtime: &SessionSettings,
    data: &SplitDataset,
    failures: &mut Vec<String>,
) -> Result<Curve> {
    let mut trainer = Trainer::new(graph, weights.clone(), cfg, runtime, data)?;
    let wanted = runtime.provider.name();
    if trainer.provider() != wanted {
        failures.push(format!(
            "the training session runs on `{}`, not `{wanted}`",
            trainer.provider()
        ));
    }
    let home = TensorHome::for_provider(runtime.provider);
    if *trainer.state_home() != home {
        failures.push(format!(
            "the training state lives in {}, not in {home}",
            trainer.state_home()
        ));
    }
    let mut curve = Curve {
        losses: Vec::with_capacity(cfg.epochs),
        seconds: Vec::with_capacity(cfg.epochs),
    };
    let start = Instant::now();
    // One batch per epoch: each epoch's loss is one step's.
    for epoch in 1..=cfg.epochs {
        let stats = trainer.train_epochs(epoch)?;
        curve.losses.push(stats[0].train_loss);
        curve.seconds.push(stats[0].seconds);
    }
    eprintln!(
        "  trained {} steps on {wanted} in {:.1}s (loss {:.4} -> {:.4})",
        cfg.epochs,
        start.elapsed().as_secs_f64(),
        curve.losses[0],
        curve.losses[curve.losses.len() - 1]
    );
    Ok(curve)
}

/// Inference images/s on `runtime.provider`; `Err` with the provider error when the session
/// cannot be built there.
fn infer(
    graph: &Graph,
    weights: &Weights,
    batch: usize,
    runtime: &SessionSettings,
    seed: u64,
) -> std::result::Result<Result<f64>, RuntimeError> {
    let options = ExportOptions {
        batch: Some(batch),
        ..ExportOptions::default()
    };
    let model = match export_inference(graph, weights, &options) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e.into())),
    };
    let built = nas_runtime::build_session(&model, runtime)?;
    if built.provider != runtime.provider.name() {
        return Ok(Err(format!(
            "the inference session runs on `{}`, not `{}`",
            built.provider, runtime.provider
        )
        .into()));
    }
    let mut session = built.session;
    let store = match TensorStore::new(&session, TensorHome::for_provider(runtime.provider)) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    let mut shape = vec![batch];
    shape.extend_from_slice(&INPUT);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Ok(time_runs(
        &mut session,
        &store,
        &options.input_name,
        &shape,
        &data,
        INFERENCE_WARMUP,
        INFERENCE_RUNS,
    )
    .map(|ms| batch as f64 * 1e3 / median(&ms))
    .map_err(Into::into))
}

fn fail(row: &mut Row, what: &str, e: &dyn std::fmt::Display) {
    row.failures.push(format!("{what}: {e}"));
}

fn check_network(
    name: &str,
    graph: &Graph,
    batch: usize,
    args: &Args,
    library: &std::path::Path,
    tol: &Tolerance,
) -> Row {
    let start = Instant::now();
    let mut row = Row {
        network: name.into(),
        batch,
        ..Row::default()
    };
    let data = match synthetic_data(batch, args.seed) {
        Ok(d) => d,
        Err(e) => {
            fail(&mut row, "making the data", &e);
            return row;
        }
    };
    let weights = match Weights::he_init(graph, args.seed) {
        Ok(w) => w,
        Err(e) => {
            fail(&mut row, "initialising the weights", &e);
            return row;
        }
    };
    let cfg = TrainConfig {
        epochs: args.steps,
        batch,
        lr: Some(0.05),
        schedule: Schedule::Constant,
        augment: Some(true),
        eval_every: 0,
        seed: Some(args.seed),
        ..TrainConfig::default()
    };
    let cpu = settings(ExecutionProvider::Cpu, args.threads, library);
    let gpu = settings(args.provider, args.threads, library);
    eprintln!("{name} (batch {batch}):");
    let mut failures = Vec::new();
    let curves = (
        train(graph, &weights, &cfg, &cpu, &data, &mut failures),
        train(graph, &weights, &cfg, &gpu, &data, &mut failures),
    );
    row.failures.append(&mut failures);
    match curves {
        (Ok(c), Ok(g)) => {
            row.cpu_train = c.images_per_second(batch);
            row.gpu_train = g.images_per_second(batch);
            row.agreement = Some(compare_curves(&c.losses, &g.losses, tol));
        }
        (c, g) => {
            for (side, r) in [("CPU", c), (args.provider.name(), g)] {
                if let Err(e) = r {
                    fail(&mut row, &format!("training on {side}"), &e);
                }
            }
        }
    }
    for (runtime, slot) in [(&cpu, 0), (&gpu, 1)] {
        match infer(graph, &weights, batch, runtime, args.seed) {
            Ok(Ok(v)) => {
                if slot == 0 {
                    row.cpu_infer = Some(v)
                } else {
                    row.gpu_infer = Some(v)
                }
            }
            Ok(Err(e)) => fail(&mut row, &format!("inference on {}", runtime.provider), &e),
            Err(e) => fail(&mut row, &format!("inference on {}", runtime.provider), &e),
        }
    }
    if args.provider == ExecutionProvider::Cuda {
        let trt = settings(ExecutionProvider::TensorRt, args.threads, library);
        row.trt_infer = match infer(graph, &weights, batch, &trt, args.seed) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                fail(&mut row, "inference on tensorrt", &e);
                Err(format!("failed: {e}"))
            }
            // The provider itself is missing (no libnvinfer): a note, not a failure.
            Err(e @ RuntimeError::ProviderUnavailable { .. }) => Err(e.to_string()),
            Err(e) => {
                fail(&mut row, "inference on tensorrt", &e);
                Err(format!("failed: {e}"))
            }
        };
    } else {
        row.trt_infer = Err(format!(
            "only tried with --provider cuda, not {}",
            args.provider
        ));
    }
    if let Some(a) = &row.agreement {
        eprintln!(
            "  loss agreement: max diff {:.2e} over {} steps, final {:.4} vs {:.4} on CPU: {}",
            a.early_max_diff,
            a.early_steps,
            a.final_other,
            a.final_cpu,
            a.failure.as_deref().unwrap_or("ok")
        );
    }
    row.seconds = start.elapsed().as_secs_f64();
    row
}

fn run(args: &Args) -> Result<bool> {
    let library = nas_runtime::locate_library_for(None, args.provider.name())?;
    nas_runtime::init(&library)?;
    eprintln!("ONNX Runtime: {}", library.display());
    let tol = Tolerance::default();
    let networks: Vec<(&str, Graph, usize)> = vec![
        ("reference-cnn", reference_net(INPUT), 128),
        ("nb201-cell", nb201_net(INPUT)?, 64),
    ];
    let rows: Vec<Row> = networks
        .iter()
        .map(|(name, graph, batch)| check_network(name, graph, *batch, args, &library, &tol))
        .collect();
    let summary = table(args.provider.name(), args.steps, &tol, &rows);
    print!("{summary}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(out, &summary)
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(rows.iter().all(Row::ok))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("gpu_check: some checks failed (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gpu_check: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_curves_agree() {
        let cpu: Vec<f64> = (0..40).map(|i| 2.3 - 0.05 * i as f64).collect();
        let gpu: Vec<f64> = cpu.iter().map(|v| v + 1e-4).collect();
        let a = compare_curves(&cpu, &gpu, &Tolerance::default());
        assert!(a.ok(), "{a:?}");
        assert_eq!(a.early_steps, 20);
        assert!((a.early_max_diff - 1e-4).abs() < 1e-9);
        assert!((a.final_cpu - mean(&cpu[30..])).abs() < 1e-12);
    }

    #[test]
    fn an_early_gap_fails() {
        let cpu = vec![2.3; 30];
        let mut gpu = cpu.clone();
        gpu[3] += 0.06;
        let a = compare_curves(&cpu, &gpu, &Tolerance::default());
        assert!(
            a.failure
                .as_deref()
                .unwrap()
                .contains("first 20 steps is 0.0600 > 0.05"),
            "{a:?}"
        );
        // Past the early steps only the final level counts.
        let mut later = cpu.clone();
        later[25] += 0.5;
        assert!(compare_curves(&cpu, &later, &Tolerance::default()).ok());
    }

    #[test]
    fn the_final_level_must_match_within_five_percent() {
        let cpu = vec![1.0; 30];
        let mut gpu = cpu.clone();
        for v in &mut gpu[20..] {
            *v = 1.04;
        }
        assert!(compare_curves(&cpu, &gpu, &Tolerance::default()).ok());
        for v in &mut gpu[20..] {
            *v = 1.08;
        }
        let a = compare_curves(&cpu, &gpu, &Tolerance::default());
        assert!(
            a.failure.as_deref().unwrap().contains("differs by 8.0 %"),
            "{a:?}"
        );
        // Near zero, an absolute 0.01 is enough.
        let tiny = vec![0.001; 30];
        let twice: Vec<f64> = tiny.iter().map(|v| v * 2.0).collect();
        assert!(compare_curves(&tiny, &twice, &Tolerance::default()).ok());
    }

    #[test]
    fn broken_curves_fail() {
        let tol = Tolerance::default();
        let a = compare_curves(&[1.0, 1.0], &[1.0], &tol);
        assert!(a.failure.unwrap().contains("2 and 1 steps"));
        let a = compare_curves(&[1.0, 1.0], &[1.0, f64::NAN], &tol);
        assert!(
            a.failure
                .unwrap()
                .contains("not finite (step 2 of the provider's run)")
        );
        assert!(!compare_curves(&[], &[], &tol).ok());
    }

    #[test]
    fn the_table_shows_figures_results_and_notes() {
        let tol = Tolerance::default();
        let good = Row {
            network: "net-a".into(),
            batch: 128,
            cpu_train: Some(3000.4),
            gpu_train: Some(45000.0),
            cpu_infer: Some(90000.0),
            gpu_infer: None,
            trt_infer: Err("libnvinfer.so.10 not found".into()),
            agreement: Some(compare_curves(&[2.0, 1.0], &[2.0, 1.00002], &tol)),
            failures: vec![],
            seconds: 12.3,
        };
        let bad = Row {
            network: "net-b".into(),
            batch: 64,
            failures: vec!["the training session runs on `cpu`, not `cuda`".into()],
            trt_infer: Ok(1234.0),
            ..Row::default()
        };
        let t = table("cuda", 200, &tol, &[good, bad]);
        println!("{t}");
        assert!(t.starts_with("# GPU check: `cuda` against CPU"));
        assert!(t.contains("| net-a | 128 | 3000 | 45000 | 90000 | n/a | skipped | 2.00e-5 (2 steps) | 1.5000 / 1.5000 | ok | 12 |"), "{t}");
        assert!(
            t.contains("| net-b | 64 | n/a | n/a | n/a | n/a | 1234 | n/a | n/a | FAIL | 0 |"),
            "{t}"
        );
        assert!(t.contains("- FAIL net-b: the training session runs on `cpu`, not `cuda`"));
        assert!(t.contains("- net-a: TensorRT skipped: libnvinfer.so.10 not found"));
    }

    #[test]
    fn arguments_have_defaults_and_checks() {
        let parse = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        let a = parse(&[]).unwrap();
        assert_eq!(
            (a.provider, a.steps, a.seed),
            (ExecutionProvider::Cuda, 200, 1)
        );
        let a = parse(&["--provider", "cpu", "--steps", "7", "--out", "x.md"]).unwrap();
        assert_eq!((a.provider, a.steps), (ExecutionProvider::Cpu, 7));
        assert_eq!(a.out, Some(PathBuf::from("x.md")));
        assert!(parse(&["--steps", "0"]).is_err());
        assert!(
            parse(&["--provider", "tpu"])
                .unwrap_err()
                .contains("cpu | cuda | tensorrt")
        );
        assert!(parse(&["--steps"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--fast", "1"])
                .unwrap_err()
                .contains("unknown argument")
        );
    }
}
