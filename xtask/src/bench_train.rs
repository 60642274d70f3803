//! `cargo xtask bench-train`: images per second of the ONNX Runtime training step (as
//! `nas_train::Trainer` runs it) and of inference on CPU, for several networks of our search
//! spaces, next to PyTorch running the very same networks, initial weights and data when a
//! Python with torch is found; the loss curves of both from that common start; optionally
//! ONNX Runtime's profile of the training step and one full epoch of both.
//!
//! Our side is crates/nas-core/examples/bench_train.rs (release build): it writes each
//! network's IR, initial weights, batch and inference logits under `--out` and prints one JSON
//! line per network. PyTorch's side is xtask/bench/torch_reference.py, which interprets that
//! IR. This task compares them and writes `<out>/summary.md`.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::ort_profile::{self, Profile};
use crate::{build_core_example, provision_cpu};

pub const TORCH_SCRIPT: &str = "xtask/bench/torch_reference.py";
/// Where results go unless `--out` says otherwise; the summary is `summary.md` in it.
pub const OUT_DIR: &str = "results/bench-train";
pub const SUMMARY_FILE: &str = "summary.md";

/// The networks of the benchmark program, in report order.
pub const NETS: [&str; 5] = [
    "reference",
    "nb201-b64",
    "nb201-b256",
    "chain",
    "nb201-mnist",
];

/// Losses at these steps (1-based) go into the summary, with the last step.
const LOSS_STEPS: [usize; 3] = [1, 10, 50];

/// Curves agree when the largest |difference| over the first 10 steps is at most this.
const AGREE_FIRST10: f64 = 1e-2;

/// Relative loss difference within which step 1 (same start) and step 2 (same update) count
/// as equal: float32 rounding of two implementations stays far below it.
const SAME_STEP_REL: f64 = 1e-3;

/// What to measure (the flags of `cargo xtask bench-train`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub nets: Vec<String>,
    /// Overrides every network's own batch.
    pub batch: Option<usize>,
    pub steps: usize,
    pub warmup: usize,
    pub threads: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub profile: bool,
    pub epoch: bool,
    pub epoch_images: usize,
    /// The interpreter to use; `None` searches PATH.
    pub python: Option<PathBuf>,
    /// Our step on ONNX Runtime's NCHWc conv kernels (`--no-nchwc`: standard ops only).
    pub nchwc: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nets: NETS.iter().map(|s| s.to_string()).collect(),
            batch: None,
            steps: 100,
            warmup: 20,
            threads: 2,
            seed: 1,
            out: PathBuf::from(OUT_DIR),
            profile: false,
            epoch: false,
            epoch_images: 60_000,
            python: None,
            nchwc: true,
        }
    }
}

impl Options {
    fn check(&self) -> Result<()> {
        if self.steps == 0 || self.threads == 0 || self.batch == Some(0) {
            bail!("--batch, --steps and --threads must be at least 1");
        }
        if self.nets.is_empty() && !self.epoch {
            bail!("--nets names no network; choose among {}", NETS.join(", "));
        }
        if let Some(bad) = self.nets.iter().find(|n| !NETS.contains(&n.as_str())) {
            bail!(
                "unknown network `{bad}` in --nets; choose among {}",
                NETS.join(", ")
            );
        }
        Ok(())
    }

    /// The flags of the benchmark program, writing under `out`.
    fn args(&self, out: &Path) -> Vec<String> {
        let mut a: Vec<String> = vec!["--nets".into(), self.nets.join(",")];
        if let Some(b) = self.batch {
            a.extend(["--batch".into(), b.to_string()]);
        }
        for (k, v) in [
            ("--steps", self.steps as u64),
            ("--warmup", self.warmup as u64),
            ("--threads", self.threads as u64),
            ("--seed", self.seed),
        ] {
            a.extend([k.to_string(), v.to_string()]);
        }
        a.extend(["--out".into(), out.display().to_string()]);
        if self.profile {
            a.push("--profile".into());
        }
        if !self.nchwc {
            a.push("--no-nchwc".into());
        }
        if self.epoch {
            a.extend([
                "--epoch".into(),
                "--epoch-images".into(),
                self.epoch_images.to_string(),
            ]);
        }
        a
    }

    /// The flags of the PyTorch script, reading what the benchmark program wrote in `out`.
    fn torch_args(&self, out: &Path) -> Vec<String> {
        let mut a = vec![
            "--dir".to_string(),
            out.display().to_string(),
            "--nets".into(),
            self.nets.join(","),
        ];
        for (k, v) in [
            ("--steps", self.steps as u64),
            ("--warmup", self.warmup as u64),
            ("--threads", self.threads as u64),
            ("--seed", self.seed),
        ] {
            a.extend([k.to_string(), v.to_string()]);
        }
        if self.epoch {
            a.push("--epoch".into());
        }
        a
    }

    /// The command line, for the summary's title.
    fn command(&self) -> String {
        let mut s = format!(
            "cargo xtask bench-train --steps {} --warmup {} --threads {}",
            self.steps, self.warmup, self.threads
        );
        if self.nets.len() != NETS.len() {
            let _ = write!(s, " --nets {}", self.nets.join(","));
        }
        if let Some(b) = self.batch {
            let _ = write!(s, " --batch {b}");
        }
        if self.profile {
            s.push_str(" --profile");
        }
        if !self.nchwc {
            s.push_str(" --no-nchwc");
        }
        if self.epoch {
            let _ = write!(s, " --epoch --epoch-images {}", self.epoch_images);
        }
        s
    }
}

/// The figures a benchmark program prints: one JSON object.
pub type Figures = serde_json::Map<String, serde_json::Value>;

/// Parses the JSON object a benchmark program prints.
pub fn parse_figures(text: &str) -> Result<Figures> {
    serde_json::from_str(&non_finite_as_null(text)).context("expected one JSON object")
}

/// Python's `json` writes `NaN` and `Infinity` for non-finite floats, which JSON does not
/// have; they carry no figure, so they are read as `null`.
fn non_finite_as_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string
            && let Some(word) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn num(f: &Figures, key: &str) -> Option<f64> {
    f.get(key)?.as_f64().filter(|v| v.is_finite())
}

fn text(f: &Figures, key: &str) -> Option<String> {
    match f.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => n.as_f64().map(|v| v.to_string()),
        _ => None,
    }
}

/// What the summary says about the machine and when.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub nproc: String,
    pub cpu: String,
    pub load_before: String,
    pub load_after: String,
    pub date: String,
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown ({})", std::env::consts::ARCH))
}

/// Runs a benchmark program (its stderr shows progress) and parses every line of its stdout
/// that looks like a JSON object.
fn run_json_lines(cmd: &mut Command) -> Result<Vec<Figures>> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {line}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{line} failed ({}); its error is above", out.status);
    }
    let figures = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| parse_figures(l).with_context(|| format!("cannot read the figures of {line}")))
        .collect::<Result<Vec<_>>>()?;
    if figures.is_empty() {
        bail!("{line} printed no JSON line; its stdout was:\n{stdout}");
    }
    Ok(figures)
}

/// Every `python3` on `path` (a PATH value), in PATH order, once per canonical file: the
/// first one is what `python3` runs.
pub fn python_candidates(path: &OsStr) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for dir in std::env::split_paths(path) {
        let candidate = dir.join("python3");
        let executable = std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            continue;
        }
        let canonical = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
        if !seen.contains(&canonical) {
            seen.push(canonical);
            out.push(candidate);
        }
    }
    out
}

/// The interpreter PyTorch's side runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Python {
    pub path: PathBuf,
    pub torch_version: String,
}

/// torch's version when `python` can import it; why not otherwise.
fn probe_torch(python: &Path) -> std::result::Result<String, String> {
    match Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Err(format!("cannot run it: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            Err(err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("import torch failed")
                .trim()
                .to_string())
        }
    }
}

/// `explicit`, or the first `python3` on PATH that imports torch. When none does, says which
/// interpreters were tried and why each failed.
fn find_python(explicit: Option<&Path>) -> std::result::Result<Python, String> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => python_candidates(&std::env::var_os("PATH").unwrap_or_default()),
    };
    if candidates.is_empty() {
        return Err("no python3 on PATH; install PyTorch for a Python 3, or pass --python".into());
    }
    let mut failures = Vec::new();
    for path in candidates {
        match probe_torch(&path) {
            Ok(torch_version) => {
                return Ok(Python {
                    path,
                    torch_version,
                });
            }
            Err(why) => failures.push(format!("`{}`: {why}", path.display())),
        }
    }
    Err(format!(
        "no interpreter can import torch (tried {}); install PyTorch or pass --python PATH",
        failures.join("; ")
    ))
}

/// PyTorch's side of a run.
#[derive(Clone, Debug, Default)]
pub struct TorchRun {
    pub python: PathBuf,
    /// One object per network (`"kind": "network"`) and one for the epoch.
    pub figures: Vec<Figures>,
}

/// Everything the summary reports.
#[derive(Clone, Debug)]
pub struct Report {
    /// Ours: one object per network, one for the epoch.
    pub ours: Vec<Figures>,
    /// PyTorch's figures, or why there are none.
    pub torch: std::result::Result<TorchRun, String>,
    /// The ONNX Runtime profile of each network's training step (`--profile`).
    pub profiles: BTreeMap<String, Profile>,
}

fn kind_is(f: &Figures, kind: &str) -> bool {
    f.get("kind").and_then(|k| k.as_str()) == Some(kind)
}

fn network<'a>(figures: &'a [Figures], net: &str) -> Option<&'a Figures> {
    figures
        .iter()
        .find(|f| kind_is(f, "network") && text(f, "net").as_deref() == Some(net))
}

fn epoch(figures: &[Figures]) -> Option<&Figures> {
    figures.iter().find(|f| kind_is(f, "epoch"))
}

fn losses(f: &Figures) -> Vec<f64> {
    f.get("losses")
        .and_then(|l| l.as_array())
        .map(|l| l.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
        .unwrap_or_default()
}

pub fn bench_train(root: &Path, target: &Path, opts: &Options) -> Result<()> {
    opts.check()?;
    let out = if opts.out.is_absolute() {
        opts.out.clone()
    } else {
        root.join(&opts.out)
    };
    let library = provision_cpu(target)?;
    let exe = build_core_example(root, target, "bench_train")?;
    let mut machine = Machine {
        nproc: command_line("nproc", &[]).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or("unknown".into(), |n| n.get().to_string())
        }),
        cpu: cpu_model(),
        load_before: loadavg(),
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .unwrap_or_else(|| "unknown".into()),
        ..Machine::default()
    };

    // Each network runs on our side and then on PyTorch's before the next one starts, so a
    // pair is measured minutes apart, not a whole suite apart: on a shared machine the CPU
    // time available drifts, and the ratio is what this benchmark reports.
    let python = find_python(opts.python.as_deref());
    if let Err(why) = &python {
        eprintln!("PyTorch: {why}; reporting our figures only");
    }
    let mut ours = Vec::new();
    let mut torch_figures = Vec::new();
    // A failing PyTorch run (its interpreter disagreeing with ours above all) fails the task,
    // after the summary of our figures is written.
    let mut torch_failed: Option<String> = None;
    for (i, net) in opts.nets.iter().enumerate() {
        let part = Options {
            nets: vec![net.clone()],
            // The epoch comes after the last network, on both sides.
            epoch: opts.epoch && i + 1 == opts.nets.len(),
            ..opts.clone()
        };
        eprintln!("ONNX Runtime: {net} ...");
        ours.extend(run_json_lines(
            Command::new(&exe)
                .current_dir(root)
                .args(part.args(&out))
                .env("ORT_DYLIB_PATH", &library),
        )?);
        if let (Ok(python), None) = (&python, &torch_failed) {
            eprintln!(
                "PyTorch {} ({}): {net} ...",
                python.torch_version,
                python.path.display()
            );
            match run_json_lines(
                Command::new(&python.path)
                    .current_dir(root)
                    .arg(root.join(TORCH_SCRIPT))
                    .args(part.torch_args(&out)),
            ) {
                Ok(figures) => torch_figures.extend(figures),
                Err(e) => torch_failed = Some(format!("{e:#}")),
            }
        }
    }

    let mut profiles = BTreeMap::new();
    for f in ours.iter().filter(|f| kind_is(f, "network")) {
        let (Some(net), Some(file)) = (text(f, "net"), text(f, "profile")) else {
            continue;
        };
        let trace = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read the profile {file}"))?;
        let profile =
            ort_profile::aggregate(&trace).with_context(|| format!("cannot read {file}"))?;
        let md = format!(
            "# ONNX Runtime profile of the `{net}` training step\n\nTrace: `{file}` \
             (warm-up and timed steps).\n\n{}",
            profile.markdown()
        );
        let path = out.join(&net).join("profile.md");
        std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        profiles.insert(net, profile);
    }

    let torch = match (python, &torch_failed) {
        (Ok(_), Some(why)) => Err(format!("the PyTorch run failed: {why}")),
        (Ok(python), None) => Ok(TorchRun {
            python: python.path,
            figures: torch_figures,
        }),
        (Err(why), _) => Err(why),
    };
    machine.load_after = loadavg();

    let report = Report {
        ours,
        torch,
        profiles,
    };
    let summary = summarize(opts, &report, &machine);
    print!("{summary}");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = out.join(SUMMARY_FILE);
    std::fs::write(&file, &summary).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    if let Some(why) = torch_failed {
        bail!("{why}");
    }
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn fmt_rate(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.0}"))
}

fn fmt_loss(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

/// The largest |a - b| over the first `n` steps both have.
fn max_diff(a: &[f64], b: &[f64], n: usize) -> Option<f64> {
    let diffs = a.iter().zip(b).take(n).map(|(x, y)| (x - y).abs());
    diffs.fold(None, |m, d| Some(m.map_or(d, |m: f64| m.max(d))))
}

/// The loss-curve comparison of one network: losses at some steps and the differences.
#[derive(Clone, Debug, PartialEq)]
pub struct LossCompare {
    pub at: Vec<(usize, Option<f64>, Option<f64>)>,
    /// |ours - PyTorch| / |PyTorch| at step 1 (the initial weights) and step 2 (after one
    /// update).
    pub step1_rel: Option<f64>,
    pub step2_rel: Option<f64>,
    pub first10: Option<f64>,
    pub all: Option<f64>,
}

pub fn compare_losses(ours: &[f64], torch: &[f64]) -> LossCompare {
    let last = ours.len().max(torch.len());
    let mut steps: Vec<usize> = LOSS_STEPS.iter().copied().filter(|&s| s < last).collect();
    steps.push(last);
    steps.dedup();
    let at = steps
        .into_iter()
        .map(|s| {
            let get = |v: &[f64]| v.get(s.wrapping_sub(1)).copied().filter(|x| x.is_finite());
            (s, get(ours), get(torch))
        })
        .collect();
    let rel = |i: usize| match (ours.get(i), torch.get(i)) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() => {
            Some((a - b).abs() / b.abs().max(1e-12))
        }
        _ => None,
    };
    LossCompare {
        at,
        step1_rel: rel(0),
        step2_rel: rel(1),
        first10: max_diff(ours, torch, 10),
        all: max_diff(ours, torch, usize::MAX),
    }
}

/// The summary: one table of throughputs (ours, PyTorch's, ratios) per network, step times,
/// loss curves from the same start, profile, epoch, and the setup.
pub fn summarize(opts: &Options, report: &Report, machine: &Machine) -> String {
    let mut s = String::new();
    let ours = &report.ours;
    let torch = report.torch.as_ref();
    let tf: &[Figures] = torch.map_or(&[], |t| &t.figures);
    let nets: Vec<&Figures> = ours.iter().filter(|f| kind_is(f, "network")).collect();
    let _ = writeln!(
        s,
        "# Training and inference throughput (`{}`)\n",
        opts.command()
    );
    let _ = writeln!(
        s,
        "Each network is trained from the same He-initialized weights on one batch of seeded \
         random images (normalized) and labels, by ONNX Runtime through `nas_train::Trainer` \
         (ours) and by PyTorch running the same IR with the same weights and batch \
         (`{TORCH_SCRIPT}`): SGD, lr 0.1, Nesterov momentum 0.9, weight decay 5e-4 on conv and \
         linear weights; {} warm-up steps, then {} timed; medians. CPU, {} intra-op threads. \
         Inference: the model `nas_graph::onnx::export_inference` writes (ours), eval mode \
         under `torch.no_grad()` (PyTorch), same batch.\n",
        opts.warmup, opts.steps, opts.threads
    );
    let _ = writeln!(
        s,
        "| network | input | batch | params | train img/s ours | PyTorch | ours / PyTorch | \
         inference img/s ours | PyTorch | ours / PyTorch |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for f in &nets {
        let net = text(f, "net").unwrap_or_default();
        let t = network(tf, &net);
        let tn = |k: &str| t.and_then(|t| num(t, k));
        let input = f
            .get("input")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            })
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "| {net} | {input} | {} | {} | {} | {} | {} | {} | {} | {} |",
            text(f, "batch").unwrap_or_default(),
            text(f, "params").unwrap_or_default(),
            fmt_rate(num(f, "train_img_s")),
            fmt_rate(tn("train_img_s")),
            ratio(num(f, "train_img_s"), tn("train_img_s")),
            fmt_rate(num(f, "infer_img_s")),
            fmt_rate(tn("infer_img_s")),
            ratio(num(f, "infer_img_s"), tn("infer_img_s")),
        );
    }
    let _ = writeln!(
        s,
        "\nRatios are throughputs, ours / PyTorch (PyTorch ms / our ms): above 1 ours is faster."
    );
    if let Some(worst) = busy_share(&nets, tf) {
        let _ = writeln!(
            s,
            "\n**The machine was busy**: while timed, the benchmark's threads waited for a CPU up \
             to {worst:.0} % of the step time (run-queue wait, see Step times). Absolute figures \
             are too low and the ratios unreliable; rerun on a quiet machine."
        );
    }
    if opts.profile {
        let _ = writeln!(
            s,
            "With `--profile` our training steps run under ONNX Runtime's profiler, which slows them."
        );
    }

    let _ = writeln!(
        s,
        "\n## Step times\n\nms per call: median / min / p90. Run-queue wait: ms per call the \
         benchmark's threads waited for a CPU while timed (near 0 on a quiet machine; more \
         means other processes took CPU time and the figures are too low). Batch assembly: \
         the shuffle, gather and normalization our training step includes, timed on its own.\n"
    );
    let _ = writeln!(
        s,
        "| network | train ours | train PyTorch | inference ours | inference PyTorch | \
         batch assembly ms | step build ms | wait ours train / infer | wait PyTorch train / infer |\n\
         |---|---|---|---|---|---:|---:|---|---|"
    );
    let three = |f: Option<&Figures>, p: &str| match f {
        Some(f) => format!(
            "{} / {} / {}",
            fmt_ms(num(f, &format!("{p}_ms_median"))),
            fmt_ms(num(f, &format!("{p}_ms_min"))),
            fmt_ms(num(f, &format!("{p}_ms_p90")))
        ),
        None => "n/a".into(),
    };
    let waits = |f: Option<&Figures>| match f {
        Some(f) => format!(
            "{} / {}",
            fmt_ms(num(f, "train_wait_ms_per_step")),
            fmt_ms(num(f, "infer_wait_ms_per_run"))
        ),
        None => "n/a".into(),
    };
    for f in &nets {
        let net = text(f, "net").unwrap_or_default();
        let t = network(tf, &net);
        let _ = writeln!(
            s,
            "| {net} | {} | {} | {} | {} | {} | {} | {} | {} |",
            three(Some(f), "train"),
            three(t, "train"),
            three(Some(f), "infer"),
            three(t, "infer"),
            fmt_ms(num(f, "data_ms_median")),
            num(f, "build_ms").map_or("n/a".into(), |v| format!("{v:.0}")),
            waits(Some(f)),
            waits(t),
        );
    }

    let _ = writeln!(s, "\n## Loss curves from the same start\n");
    match torch {
        Err(_) => {
            let _ = writeln!(s, "No PyTorch run: our losses only.\n");
            for f in &nets {
                let l = losses(f);
                let _ = writeln!(
                    s,
                    "- {}: {} -> {} over {} steps",
                    text(f, "net").unwrap_or_default(),
                    fmt_loss(l.first().copied()),
                    fmt_loss(l.last().copied()),
                    l.len()
                );
            }
        }
        Ok(_) => {
            let _ = writeln!(
                s,
                "Both sides start from the same weights on the same batch, so the same step gives \
                 the same curve up to float rounding. Our trainer reshuffles the one-batch data \
                 set every step; the loss (BatchNorm's batch statistics included) does not depend \
                 on the order, which the PyTorch script checks on a permuted copy of the batch.\n"
            );
            let _ = writeln!(
                s,
                "| network | step: ours / PyTorch | max abs diff, steps 1-10 | max abs diff, all steps | \
                 permuted-batch loss diff (PyTorch) |\n|---|---|---:|---:|---:|"
            );
            let mut verdicts = Vec::new();
            for f in &nets {
                let net = text(f, "net").unwrap_or_default();
                let t = network(tf, &net);
                let c = compare_losses(&losses(f), &t.map(losses).unwrap_or_default());
                let at =
                    c.at.iter()
                        .map(|(step, a, b)| format!("{step}: {} / {}", fmt_loss(*a), fmt_loss(*b)))
                        .collect::<Vec<_>>()
                        .join("; ");
                let _ = writeln!(
                    s,
                    "| {net} | {at} | {} | {} | {} |",
                    c.first10.map_or("n/a".into(), |v| format!("{v:.2e}")),
                    c.all.map_or("n/a".into(), |v| format!("{v:.2e}")),
                    t.and_then(|t| num(t, "permutation_loss_diff"))
                        .map_or("n/a".into(), |v| format!("{v:.1e}")),
                );
                verdicts.push(loss_verdict(&net, &c));
            }
            let _ = writeln!(s);
            for v in verdicts {
                let _ = writeln!(s, "- {v}");
            }
        }
    }

    if !report.profiles.is_empty() {
        let _ = writeln!(
            s,
            "\n## Where our training step's time goes (ONNX Runtime profiler)\n\n\
             Kernel time per op type, share of all kernel time and ms per step; the full table \
             is `<out>/<network>/profile.md`.\n"
        );
        for (net, p) in &report.profiles {
            let _ = writeln!(s, "- {net}: {}", p.top(6));
        }
    }

    if opts.epoch {
        let _ = writeln!(s, "\n## One epoch\n");
        match epoch(ours) {
            Some(e) => {
                let t = epoch(tf);
                let secs = |f: Option<&Figures>, k: &str| {
                    f.and_then(|f| num(f, k))
                        .map_or("n/a".into(), |v| format!("{v:.1} s"))
                };
                let _ = writeln!(
                    s,
                    "The NB201 network (C = 16, N = 5) on {} images 1x28x28 ({}), batch {}, {} \
                     steps, from the same initial weights: ours through `nas_train::Trainer` as \
                     a study trains it (shuffle, gather, normalize per batch), PyTorch's loop \
                     over the same tensors (shuffle, gather, normalize per batch).\n",
                    text(e, "images").unwrap_or_default(),
                    text(e, "source").unwrap_or_default(),
                    text(e, "batch").unwrap_or_default(),
                    text(e, "steps").unwrap_or_default(),
                );
                let _ = writeln!(
                    s,
                    "| | ours | PyTorch | ours / PyTorch (speed) |\n|---|---:|---:|---:|\n\
                     | epoch time | {} | {} | {} |\n| mean training loss | {} | {} | |\n\
                     | training accuracy | {} | {} | |\n\
                     | run-queue wait, ms per step | {} | {} | |",
                    secs(Some(e), "seconds"),
                    secs(t, "seconds"),
                    ratio(t.and_then(|t| num(t, "seconds")), num(e, "seconds")),
                    fmt_loss(num(e, "train_loss")),
                    fmt_loss(t.and_then(|t| num(t, "train_loss"))),
                    fmt_loss(num(e, "train_accuracy")),
                    fmt_loss(t.and_then(|t| num(t, "train_accuracy"))),
                    fmt_ms(num(e, "wait_ms_per_step")),
                    fmt_ms(t.and_then(|t| num(t, "wait_ms_per_step"))),
                );
            }
            None => {
                let _ = writeln!(s, "The benchmark program reported no epoch.");
            }
        }
    }

    let _ = writeln!(s, "\n## Setup\n");
    if let Some(f) = nets.first() {
        let _ = writeln!(
            s,
            "- ONNX Runtime: provider `{}`, library `{}`",
            text(f, "provider").unwrap_or_else(|| "?".into()),
            text(f, "ort_library").unwrap_or_else(|| "?".into())
        );
    }
    for f in &nets {
        let _ = writeln!(
            s,
            "- {}: `{}`",
            text(f, "net").unwrap_or_default(),
            text(f, "arch").unwrap_or_default()
        );
    }
    match torch {
        Ok(t) => {
            let any = t.figures.first();
            let checks = nets
                .iter()
                .filter_map(|f| {
                    let net = text(f, "net")?;
                    let rel = num(network(tf, &net)?, "check_rel_diff")?;
                    Some(format!("{net} {rel:.1e}"))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "- PyTorch {} (Python {}, `{}`, {} threads, oneDNN {}); its eval-mode logits on \
                 the initial weights match our ONNX Runtime logits within (max relative): {}",
                any.and_then(|f| text(f, "torch_version"))
                    .unwrap_or_else(|| "?".into()),
                any.and_then(|f| text(f, "python"))
                    .unwrap_or_else(|| "?".into()),
                t.python.display(),
                any.and_then(|f| text(f, "threads"))
                    .unwrap_or_else(|| "?".into()),
                any.and_then(|f| text(f, "mkldnn"))
                    .unwrap_or_else(|| "?".into()),
                if checks.is_empty() {
                    "n/a".into()
                } else {
                    checks
                }
            );
        }
        Err(why) => {
            let _ = writeln!(s, "- PyTorch: not available ({why}).");
        }
    }
    let _ = writeln!(
        s,
        "- Machine: {} CPUs (nproc), {}; load average {} before, {} after; measured {}",
        machine.nproc, machine.cpu, machine.load_before, machine.load_after, machine.date
    );
    s
}

/// The largest run-queue wait of a timed training step as a percentage of its median time,
/// over both sides, when it exceeds 10 %.
fn busy_share(ours: &[&Figures], torch: &[Figures]) -> Option<f64> {
    let share =
        |f: &Figures| Some(100.0 * num(f, "train_wait_ms_per_step")? / num(f, "train_ms_median")?);
    let worst = ours
        .iter()
        .copied()
        .chain(torch.iter().filter(|f| kind_is(f, "network")))
        .filter_map(share)
        .fold(0.0f64, f64::max);
    (worst > 10.0).then_some(worst)
}

/// Whether the curves agree, in words: step 1 shows whether both start alike, step 2 whether
/// one update does the same; later steps only show how rounding differences grow.
fn loss_verdict(net: &str, c: &LossCompare) -> String {
    let (Some(first10), Some(all)) = (c.first10, c.all) else {
        return format!("{net}: no curve to compare");
    };
    match (c.step1_rel, c.step2_rel) {
        (Some(r1), _) if r1 > SAME_STEP_REL => format!(
            "{net}: the losses differ already at step 1 (relative {r1:.1e}): the two sides do not compute the same network on the same start"
        ),
        (_, Some(r2)) if r2 > SAME_STEP_REL => format!(
            "{net}: the same start, but after one update the losses differ (relative {r2:.1e}): the training steps differ"
        ),
        (Some(r1), r2) => {
            let start = format!(
                "{net}: the same start and the same step (relative difference {r1:.1e} at step 1, {} after one update)",
                r2.map_or("n/a".into(), |r| format!("{r:.1e}"))
            );
            if all <= AGREE_FIRST10 {
                format!("{start}; the curves agree throughout (max abs difference {all:.1e})")
            } else if first10 <= AGREE_FIRST10 {
                format!(
                    "{start}; the curves agree over the first 10 steps (max abs difference {first10:.1e}) and then drift apart (up to {all:.2}) as float rounding differences grow step after step"
                )
            } else {
                format!(
                    "{start}; the curves drift apart within 10 steps (max abs difference {first10:.2}, {all:.2} over all steps) as float rounding differences grow step after step (lr 0.1 on a single batch amplifies them)"
                )
            }
        }
        (None, _) => format!("{net}: no curve to compare"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_figures_python_and_rust_print() {
        let f = parse_figures(
            r#" {"a": 1.5, "b": -2e-3, "s": "x\"y\\zNaN\u00e9", "t": true, "f": false, "n": null, "nan": NaN, "inf": -Infinity} "#,
        )
        .unwrap();
        assert_eq!(num(&f, "a"), Some(1.5));
        assert_eq!(num(&f, "b"), Some(-2e-3));
        assert_eq!(text(&f, "s").unwrap(), "x\"y\\zNaNé");
        assert_eq!(text(&f, "t").unwrap(), "true");
        assert_eq!(text(&f, "f").unwrap(), "false");
        assert_eq!(f["n"], serde_json::Value::Null);
        assert_eq!(f["nan"], serde_json::Value::Null);
        assert_eq!(num(&f, "inf"), None);
        assert!(parse_figures("{}").unwrap().is_empty());
        assert!(parse_figures(r#"{"a": 1"#).is_err());
        assert!(parse_figures(r#"[1]"#).is_err());
        assert!(parse_figures(r#"{"a": 1} x"#).is_err());
    }

    fn figures(net: &str, pairs: &[(&str, f64)], losses: &[f64]) -> Figures {
        let mut f: Figures = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        f.insert("kind".into(), "network".into());
        f.insert("net".into(), net.into());
        f.insert("losses".into(), serde_json::json!(losses));
        f
    }

    fn opts() -> Options {
        Options {
            steps: 50,
            ..Options::default()
        }
    }

    fn machine() -> Machine {
        Machine {
            nproc: "2".into(),
            cpu: "Test CPU".into(),
            load_before: "0.10 0.20 0.30".into(),
            load_after: "1.00 0.50 0.40".into(),
            date: "2026-11-28 12:00 UTC".into(),
        }
    }

    #[test]
    fn summary_with_and_without_pytorch() {
        let curve: Vec<f64> = (0..70).map(|i| 2.3 - i as f64 * 0.01).collect();
        let mut ours = figures(
            "reference",
            &[
                ("train_ms_median", 40.0),
                ("train_img_s", 3200.0),
                ("infer_ms_median", 1.6),
                ("infer_img_s", 80_000.0),
                ("params", 5258.0),
                ("batch", 128.0),
            ],
            &curve,
        );
        ours.insert("input".into(), serde_json::json!([3, 32, 32]));
        let why = "no interpreter can import torch (tried `/usr/bin/python3`: \
                   ModuleNotFoundError: No module named 'torch')"
            .to_string();
        let mut report = Report {
            ours: vec![ours],
            torch: Err(why),
            profiles: BTreeMap::new(),
        };
        let s = summarize(&opts(), &report, &machine());
        assert!(s.contains("PyTorch: not available"), "{s}");
        assert!(s.contains("No module named 'torch'"), "{s}");
        assert!(
            s.contains(
                "| reference | 3x32x32 | 128 | 5258 | 3200 | n/a | n/a | 80000 | n/a | n/a |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| reference | 40.000 / n/a / n/a | n/a |"),
            "{s}"
        );
        assert!(
            s.contains("- reference: 2.3000 -> 1.6100 over 70 steps"),
            "{s}"
        );
        assert!(s.contains("2 CPUs (nproc), Test CPU"), "{s}");
        assert!(!s.contains("machine was busy"), "{s}");
        assert!(s.contains("load average 0.10 0.20 0.30 before"), "{s}");

        let mut drifting = curve.clone();
        drifting[40] += 0.5;
        let mut torch = figures(
            "reference",
            &[
                ("train_ms_median", 16.0),
                ("train_img_s", 8000.0),
                ("infer_ms_median", 6.4),
                ("infer_img_s", 20_000.0),
                ("check_rel_diff", 2e-7),
                ("train_wait_ms_per_step", 8.0),
            ],
            &drifting,
        );
        torch.insert("torch_version".into(), "1.13.1".into());
        report.torch = Ok(TorchRun {
            python: "/usr/bin/python3".into(),
            figures: vec![torch],
        });
        report.profiles.insert(
            "reference".into(),
            ort_profile::aggregate(
                r#"[{"cat":"Session","name":"model_run"},
                    {"cat":"Node","name":"a_kernel_time","dur":3000,"args":{"op_name":"Conv"}},
                    {"cat":"Node","name":"b_kernel_time","dur":1000,"args":{"op_name":"Mul"}}]"#,
            )
            .unwrap(),
        );
        let s = summarize(
            &Options {
                profile: true,
                ..opts()
            },
            &report,
            &machine(),
        );
        assert!(s.contains("PyTorch 1.13.1"), "{s}");
        assert!(s.contains("`/usr/bin/python3`"), "{s}");
        assert!(
            s.contains(
                "| reference | 3x32x32 | 128 | 5258 | 3200 | 8000 | 0.40x | 80000 | 20000 | 4.00x |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| reference | 1: 2.3000 / 2.3000; 10: 2.2100 / 2.2100; 50: 1.8100 / 1.8100; 70: 1.6100 / 1.6100 | 0.00e0 | 5.00e-1 |"),
            "{s}"
        );
        assert!(s.contains("agree over the first 10 steps"), "{s}");
        assert!(s.contains("the same start and the same step"), "{s}");
        assert!(s.contains("reference 2.0e-7"), "{s}");
        assert!(
            s.contains("- reference: Conv 75.0 % (3.00 ms), Mul 25.0 % (1.00 ms)"),
            "{s}"
        );
        assert!(s.contains("--profile"), "{s}");
        assert!(s.contains("waited for a CPU up to 50 %"), "{s}");
    }

    #[test]
    fn summary_of_an_epoch() {
        let epoch = |pairs: &[(&str, f64)], source: Option<&str>| {
            let mut f: Figures = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            f.insert("kind".into(), "epoch".into());
            if let Some(src) = source {
                f.insert("source".into(), src.into());
            }
            f
        };
        let ours = epoch(
            &[
                ("images", 6000.0),
                ("batch", 256.0),
                ("steps", 23.0),
                ("seconds", 40.0),
                ("train_loss", 1.35),
                ("wait_ms_per_step", 2.5),
            ],
            Some("Fashion-MNIST training images"),
        );
        let torch = epoch(&[("seconds", 20.0), ("train_loss", 1.36)], None);
        let report = Report {
            ours: vec![ours],
            torch: Ok(TorchRun {
                python: "/usr/bin/python3".into(),
                figures: vec![torch],
            }),
            profiles: BTreeMap::new(),
        };
        let o = Options {
            nets: vec![],
            epoch: true,
            epoch_images: 6000,
            ..opts()
        };
        let s = summarize(&o, &report, &machine());
        assert!(s.contains("## One epoch"), "{s}");
        assert!(
            s.contains("on 6000 images 1x28x28 (Fashion-MNIST training images)"),
            "{s}"
        );
        assert!(
            s.contains("| epoch time | 40.0 s | 20.0 s | 0.50x |"),
            "{s}"
        );
        assert!(
            s.contains("| mean training loss | 1.3500 | 1.3600 | |"),
            "{s}"
        );
        assert!(
            s.contains("| run-queue wait, ms per step | 2.500 | n/a | |"),
            "{s}"
        );
    }

    #[test]
    fn loss_comparison_and_verdicts() {
        let c = compare_losses(&[2.0, 1.5, 1.0], &[2.0, 1.6, 1.0]);
        assert_eq!(
            c.at,
            vec![(1, Some(2.0), Some(2.0)), (3, Some(1.0), Some(1.0))]
        );
        assert!((c.first10.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(c.step1_rel, Some(0.0));
        assert!((c.step2_rel.unwrap() - 0.0625).abs() < 1e-12);
        assert!(loss_verdict("x", &c).contains("the training steps differ"));
        let start = compare_losses(&[2.1, 1.5], &[2.0, 1.5]);
        assert!(loss_verdict("x", &start).contains("differ already at step 1"));
        let same = compare_losses(&[2.0, 1.5], &[2.0, 1.5001]);
        let v = loss_verdict("x", &same);
        assert!(v.contains("same start and the same step"), "{v}");
        assert!(v.contains("agree throughout"), "{v}");
        let mut chaotic: Vec<f64> = vec![2.0, 1.5, 1.4, 1.3, 1.6];
        let torch = chaotic.clone();
        chaotic[4] += 0.3;
        let v = loss_verdict("x", &compare_losses(&chaotic, &torch));
        assert!(v.contains("drift apart within 10 steps"), "{v}");
        let none = compare_losses(&[2.0], &[]);
        assert_eq!(none.at, vec![(1, Some(2.0), None)]);
        assert!(loss_verdict("x", &none).contains("no curve"));
    }

    #[test]
    fn passes_the_flags_on() {
        let o = Options {
            nets: vec!["reference".into(), "chain".into()],
            steps: 20,
            warmup: 5,
            profile: true,
            ..Options::default()
        };
        let out = Path::new("/tmp/out");
        assert_eq!(
            o.args(out).join(" "),
            "--nets reference,chain --steps 20 --warmup 5 --threads 2 --seed 1 --out /tmp/out --profile"
        );
        assert_eq!(
            o.torch_args(out).join(" "),
            "--dir /tmp/out --nets reference,chain --steps 20 --warmup 5 --threads 2 --seed 1"
        );
        let e = Options {
            nets: vec!["nb201-mnist".into()],
            epoch: true,
            epoch_images: 6000,
            batch: Some(32),
            ..Options::default()
        };
        assert!(
            e.args(out)
                .join(" ")
                .ends_with("--out /tmp/out --epoch --epoch-images 6000")
        );
        assert!(e.args(out).join(" ").contains("--batch 32"));
        assert!(e.torch_args(out).join(" ").ends_with("--epoch"));
        assert!(e.command().contains("--nets nb201-mnist"));
        let bad = Options {
            nets: vec!["resnet".into()],
            ..Options::default()
        };
        let err = bad.check().unwrap_err().to_string();
        assert!(
            err.contains("`resnet`") && err.contains("nb201-b64"),
            "{err}"
        );
        Options::default().check().unwrap();
    }

    /// A folder of fake `python3` files under the system temp folder, removed on drop.
    struct FakeBins(PathBuf);

    impl Drop for FakeBins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn python_candidates_follow_path_order_once_per_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("xtask-python-{}", std::process::id()));
        let _cleanup = FakeBins(root.clone());
        let dir = |name: &str| root.join(name);
        for d in ["a", "b", "c", "d", "e"] {
            std::fs::create_dir_all(dir(d)).unwrap();
        }
        let exe = |p: PathBuf, mode: u32| {
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        exe(dir("a").join("python3"), 0o755);
        // Not executable: skipped.
        exe(dir("b").join("python3"), 0o644);
        exe(dir("c").join("python3"), 0o755);
        // A link to a's file: the same interpreter, listed once.
        std::os::unix::fs::symlink(dir("a").join("python3"), dir("d").join("python3")).unwrap();
        // e has none.
        let path =
            std::env::join_paths(["e", "a", "b", "missing", "d", "c", "a"].map(dir)).unwrap();
        assert_eq!(
            python_candidates(&path),
            vec![dir("a").join("python3"), dir("c").join("python3")]
        );
        assert!(python_candidates(OsStr::new("")).is_empty());
    }

    #[test]
    fn a_missing_interpreter_says_what_was_tried() {
        let err = find_python(Some(Path::new("/nonexistent/python3"))).unwrap_err();
        assert!(
            err.contains("`/nonexistent/python3`: cannot run it"),
            "{err}"
        );
        assert!(err.contains("--python"), "{err}");
    }

    #[test]
    fn the_reference_script_exists() {
        assert!(crate::repo_root().join(TORCH_SCRIPT).is_file());
    }
}
