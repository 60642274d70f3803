//! `cargo xtask bench-train`: images per second of the ONNX Runtime training step (as
//! `nas_train::Trainer` runs it) and of inference, for a fixed small CNN at 3x32x32 on CPU,
//! next to the same network in PyTorch when `python3` can import torch.
//!
//! Our side is crates/nas-train/examples/bench_train.rs (release build); PyTorch's is
//! xtask/bench/torch_reference.py. Each prints one line of JSON; this task compares
//! them and writes results/bench-train/summary.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, provision_cpu, run};

pub const TORCH_SCRIPT: &str = "xtask/bench/torch_reference.py";
pub const SUMMARY: &str = "results/bench-train/summary.md";

/// What to measure (the flags of `cargo xtask bench-train`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub threads: usize,
}

impl Options {
    fn args(&self) -> Vec<String> {
        [
            ("--batch", self.batch),
            ("--steps", self.steps),
            ("--warmup", self.warmup),
            ("--threads", self.threads),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
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

/// Runs a benchmark program (its stderr shows progress) and parses the last line of its
/// stdout that looks like a JSON object.
fn run_json(cmd: &mut Command) -> Result<Figures> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {line}"))?;
    if !out.status.success() {
        bail!("{line} failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{line} printed no JSON line; its stdout was:\n{stdout}"))?;
    parse_figures(json).with_context(|| format!("cannot read the figures of {line}"))
}

/// Whether `python3` can import torch; the error's last line when not.
fn torch_importable() -> std::result::Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import torch"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Err(format!("cannot run python3: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            Err(err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("import failed")
                .trim()
                .to_string())
        }
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

fn cpu_model() -> String {
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

pub fn bench_train(root: &Path, target: &Path, opts: Options) -> Result<()> {
    if opts.batch == 0 || opts.steps == 0 || opts.threads == 0 {
        bail!("--batch, --steps and --threads must be at least 1");
    }
    let library = provision_cpu(target)?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "nas-train",
        "--example",
        "bench_train",
    ]))?;
    let exe = target.join("release/examples/bench_train");
    if !exe.is_file() {
        bail!(
            "{} was not built; check `cargo build --release -p nas-train --example bench_train`",
            exe.display()
        );
    }
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

    eprintln!("ONNX Runtime: training step and inference ...");
    let ours = run_json(
        Command::new(&exe)
            .current_dir(root)
            .args(opts.args())
            .env("ORT_DYLIB_PATH", &library),
    )?;

    let torch = match torch_importable() {
        Ok(()) => {
            eprintln!("PyTorch: {TORCH_SCRIPT} ...");
            Ok(run_json(
                Command::new("python3")
                    .current_dir(root)
                    .arg(root.join(TORCH_SCRIPT))
                    .args(opts.args()),
            )?)
        }
        Err(why) => {
            eprintln!("PyTorch is not importable by python3 ({why}); reporting our figures only");
            Err(why)
        }
    };
    machine.load_after = loadavg();

    let summary = summarize(&opts, &ours, torch.as_ref(), &machine);
    print!("{summary}");
    let file = root.join(SUMMARY);
    let dir = file.parent().expect("the summary has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&file, &summary).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn fmt_rate(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.0}"))
}

/// The summary: our figures, PyTorch's (or why there are none) and the throughput ratios
/// ours / PyTorch (above 1: ours is faster).
pub fn summarize(
    opts: &Options,
    ours: &Figures,
    torch: std::result::Result<&Figures, &String>,
    machine: &Machine,
) -> String {
    let Options {
        batch,
        steps,
        warmup,
        threads,
    } = *opts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Training and inference throughput (`cargo xtask bench-train --batch {batch} --steps {steps} --threads {threads}`)\n"
    );
    let _ = writeln!(
        s,
        "Network: Conv3x3(3->16)+BN+ReLU -> Conv3x3/s2(16->32)+BN+ReLU -> GlobalAvgPool -> \
         Linear(32->10), softmax cross-entropy ({} parameters); input 3x32x32, batch {batch}, \
         seeded random images and labels. CPU, {threads} intra-op threads. {warmup} warm-up \
         steps, then {steps} timed; the median is reported.\n",
        text(ours, "params").unwrap_or_else(|| "?".into())
    );
    let _ = writeln!(
        s,
        "- ONNX Runtime training step: `nas_train::Trainer` (double-buffered I/O binding), \
         forward + backward + SGD (lr 0.1, Nesterov momentum 0.9, weight decay 5e-4 on conv and \
         linear weights), one step per `train_epochs` call; includes the batch assembly \
         (shuffle, gather, normalize: {} ms of it, timed on its own).",
        fmt_ms(num(ours, "data_ms_median"))
    );
    let _ = writeln!(
        s,
        "- ONNX Runtime inference: the model `nas_graph::onnx::export_inference` writes \
         (weights as initializers, dynamic batch), one `session.run` per batch."
    );
    match torch {
        Ok(t) => {
            let _ = writeln!(
                s,
                "- PyTorch {} (`{TORCH_SCRIPT}`, {} threads, oneDNN {}): the same network and \
                 step (`loss.item()` and the correct count read back every step); inference in \
                 eval mode under `torch.no_grad()`.",
                text(t, "torch_version").unwrap_or_else(|| "?".into()),
                text(t, "threads").unwrap_or_else(|| "?".into()),
                text(t, "mkldnn").unwrap_or_else(|| "?".into()),
            );
        }
        Err(why) => {
            let _ = writeln!(
                s,
                "- PyTorch: not available (`python3 -c \"import torch\"`: {why})."
            );
        }
    }
    let t = torch.ok();
    let tnum = |key: &str| t.and_then(|t| num(t, key));
    let ratio = |key: &str| match (num(ours, key), tnum(key)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    };
    let _ = writeln!(
        s,
        "\n| | ONNX Runtime (ours) | PyTorch | ours / PyTorch |\n|---|---:|---:|---:|"
    );
    let rows: [(&str, &str, bool); 8] = [
        ("training step, median ms", "train_ms_median", false),
        ("training step, min ms", "train_ms_min", false),
        ("training step, p90 ms", "train_ms_p90", false),
        ("**training, img/s**", "train_img_s", true),
        ("inference, median ms", "infer_ms_median", false),
        ("inference, min ms", "infer_ms_min", false),
        ("inference, p90 ms", "infer_ms_p90", false),
        ("**inference, img/s**", "infer_img_s", true),
    ];
    for (label, key, is_rate) in rows {
        let (a, b, r) = if is_rate {
            (fmt_rate(num(ours, key)), fmt_rate(tnum(key)), ratio(key))
        } else {
            (fmt_ms(num(ours, key)), fmt_ms(tnum(key)), String::new())
        };
        let _ = writeln!(s, "| {label} | {a} | {b} | {r} |");
    }
    let _ = writeln!(
        s,
        "\nRatios are throughputs, ours / PyTorch (PyTorch ms / our ms): above 1 ours is faster."
    );
    let loss = |f: &Figures| {
        format!(
            "{} -> {}",
            fmt_ms(num(f, "loss_first")),
            fmt_ms(num(f, "loss_last"))
        )
    };
    let _ = writeln!(
        s,
        "\n- Training loss over all {} steps: ours {}{}",
        warmup + steps,
        loss(ours),
        t.map_or(String::new(), |t| format!(", PyTorch {}", loss(t)))
    );
    let wait = |f: &Figures| {
        format!(
            "{} ms per training step, {} ms per inference run",
            fmt_ms(num(f, "train_wait_ms_per_step")),
            fmt_ms(num(f, "infer_wait_ms_per_run"))
        )
    };
    let _ = writeln!(
        s,
        "- Time the benchmark's threads spent waiting for a CPU (run queue) while timed: ours {}{}. \
         Near 0 on a quiet machine; more means other processes took CPU time and the figures \
         are too low.",
        wait(ours),
        t.map_or(String::new(), |t| format!("; PyTorch {}", wait(t)))
    );
    let _ = writeln!(
        s,
        "- Building the training step and its session: {} ms; provider `{}`; library `{}`",
        num(ours, "build_ms").map_or("n/a".into(), |v| format!("{v:.0}")),
        text(ours, "provider").unwrap_or_else(|| "?".into()),
        text(ours, "ort_library").unwrap_or_else(|| "?".into())
    );
    let _ = writeln!(
        s,
        "- Machine: {} CPUs (nproc), {}; load average {} before, {} after; measured {}",
        machine.nproc, machine.cpu, machine.load_before, machine.load_after, machine.date
    );
    s
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

    fn figures(pairs: &[(&str, f64)]) -> Figures {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect()
    }

    const OPTS: Options = Options {
        batch: 128,
        steps: 50,
        warmup: 20,
        threads: 2,
    };

    #[test]
    fn summary_with_and_without_pytorch() {
        let ours = figures(&[
            ("train_ms_median", 40.0),
            ("train_img_s", 3200.0),
            ("infer_ms_median", 1.6),
            ("infer_img_s", 80_000.0),
            ("params", 5258.0),
        ]);
        let machine = Machine {
            nproc: "2".into(),
            cpu: "Test CPU".into(),
            load_before: "0.10 0.20 0.30".into(),
            load_after: "1.00 0.50 0.40".into(),
            date: "2026-11-28 12:00 UTC".into(),
        };
        let why = "ModuleNotFoundError: No module named 'torch'".to_string();
        let s = summarize(&OPTS, &ours, Err(&why), &machine);
        assert!(s.contains("PyTorch: not available"), "{s}");
        assert!(s.contains("No module named 'torch'"), "{s}");
        assert!(
            s.contains("| **training, img/s** | 3200 | n/a | n/a |"),
            "{s}"
        );
        assert!(
            s.contains("| training step, median ms | 40.000 | n/a |  |"),
            "{s}"
        );
        assert!(s.contains("5258 parameters"), "{s}");
        assert!(s.contains("ours n/a ms per training step"), "{s}");
        assert!(s.contains("2 CPUs (nproc), Test CPU"), "{s}");
        assert!(s.contains("load average 0.10 0.20 0.30 before"), "{s}");

        let mut torch = figures(&[
            ("train_ms_median", 16.0),
            ("train_img_s", 8000.0),
            ("infer_ms_median", 6.4),
            ("infer_img_s", 20_000.0),
        ]);
        torch.insert("torch_version".into(), "2.9.0".into());
        let s = summarize(&OPTS, &ours, Ok(&torch), &machine);
        assert!(s.contains("PyTorch 2.9.0"), "{s}");
        assert!(
            s.contains("| **training, img/s** | 3200 | 8000 | 0.40x |"),
            "{s}"
        );
        assert!(
            s.contains("| **inference, img/s** | 80000 | 20000 | 4.00x |"),
            "{s}"
        );
    }

    #[test]
    fn passes_the_flags_on() {
        assert_eq!(
            OPTS.args(),
            [
                "--batch",
                "128",
                "--steps",
                "50",
                "--warmup",
                "20",
                "--threads",
                "2"
            ]
        );
    }

    #[test]
    fn the_reference_script_exists() {
        assert!(crate::repo_root().join(TORCH_SCRIPT).is_file());
    }
}
