//! `cargo xtask bench-optuna`: our strategies and Optuna side by side on the NAS-Bench-201
//! ImageNet16-120 test-accuracy table.
//!
//! 1. A release build of `nas` and the plugins the suite needs, then `nas benchmark
//!    configs/bench/nb201-optuna.toml` (our strategies through the real engine, both ways of
//!    counting repeats) into `<out>/ours/`.
//! 2. A throwaway virtual environment under `target/bench-optuna/venv` with Optuna from PyPI
//!    (pinned: [`OPTUNA`]); Optuna is a benchmark tool only, never a test dependency.
//! 3. nas-core's `nb201_networks` example: the canonical hash of every cell's network (what a
//!    study deduplicates), so Optuna's repeats are counted as our engine counts them.
//! 4. `xtask/bench/optuna_nb201.py`: Optuna's default `TPESampler` and its `RandomSampler` on
//!    the same table (the file the `nb201` evaluator embeds), then one markdown table of both,
//!    printed and written to `<out>/summary.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build_core_example, cargo, run};

/// The Optuna release compared against, installed from PyPI.
pub const OPTUNA: &str = "5.1.0";
pub const SUITE: &str = "configs/bench/nb201-optuna.toml";
pub const OUT_DIR: &str = "results/bench-optuna";
const SCRIPT: &str = "xtask/bench/optuna_nb201.py";
const TABLE: &str = "plugins/evaluator-nb201/data/nb201_test_accuracy.csv.gz";
/// What the suite runs: the engine and the plugins its methods and evaluator name.
const PACKAGES: [&str; 7] = [
    "nas",
    "evaluator-nb201",
    "strategy-predictor",
    "strategy-tpe",
    "strategy-local",
    "strategy-evolution",
    "strategy-random",
];

pub struct Options {
    pub seeds: usize,
    pub jobs: Option<usize>,
    pub python: PathBuf,
    pub out: PathBuf,
}

pub fn bench_optuna(root: &Path, target: &Path, o: &Options) -> Result<()> {
    if o.seeds < 2 {
        bail!(
            "--seeds must be at least 2 (a standard deviation over seeds is reported), got {}",
            o.seeds
        );
    }
    let jobs = o
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let out = root.join(&o.out);
    // Fail early, before the long parts, when there is no Python to make the venv with.
    let venv_python = venv(root, target, &o.python)?;

    let mut build = cargo(root);
    build.args(["build", "--release"]);
    for p in PACKAGES {
        build.args(["-p", p]);
    }
    run(&mut build)?;
    let ours = out.join("ours");
    let mut bench = Command::new(target.join("release/nas"));
    bench
        .current_dir(root)
        .arg("benchmark")
        .arg(root.join(SUITE))
        .arg("--out")
        .arg(&ours)
        .args(["--seeds", &o.seeds.to_string()])
        .args(["--jobs", &jobs.to_string()]);
    run(&mut bench)?;

    let networks = out.join("networks.csv");
    let exe = build_core_example(root, target, "nb201_networks")?;
    let file = std::fs::File::create(&networks)
        .with_context(|| format!("cannot create {}", networks.display()))?;
    run(Command::new(exe).stdout(file))?;

    let mut compare = Command::new(&venv_python);
    compare
        .current_dir(root)
        .arg(root.join(SCRIPT))
        .arg("--table")
        .arg(root.join(TABLE))
        .arg("--networks")
        .arg(&networks)
        .arg("--ours")
        .arg(ours.join("runs.csv"))
        .arg("--out")
        .arg(&out)
        .args(["--seeds", &o.seeds.to_string()])
        .args(["--jobs", &jobs.to_string()])
        .args(["--machine", &machine(jobs)]);
    run(&mut compare)?;
    eprintln!(
        "wrote {} (our runs in {})",
        out.join("summary.md").display(),
        ours.display()
    );
    Ok(())
}

/// The venv's interpreter, with Optuna [`OPTUNA`] installed (created or fixed when needed).
fn venv(root: &Path, target: &Path, python: &Path) -> Result<PathBuf> {
    let dir = target.join("bench-optuna/venv");
    let bin = dir.join("bin/python");
    let check = |bin: &Path| {
        Command::new(bin)
            .args(["-c", "import optuna; print(optuna.__version__)"])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == OPTUNA
            })
    };
    if bin.is_file() && check(&bin) {
        return Ok(bin);
    }
    if !bin.is_file() {
        let status = Command::new(python)
            .current_dir(root)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .with_context(|| {
                format!(
                    "cannot run {}: install Python 3 (with its venv module) or name an \
                     interpreter with --python",
                    python.display()
                )
            })?;
        if !status.success() {
            bail!(
                "`{} -m venv {}` failed ({status}); on Debian/Ubuntu install python3-venv",
                python.display(),
                dir.display()
            );
        }
    }
    run(Command::new(&bin).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("optuna=={OPTUNA}"),
    ]))
    .with_context(|| {
        format!(
            "installing Optuna {OPTUNA} from PyPI into {}",
            dir.display()
        )
    })?;
    if !check(&bin) {
        bail!(
            "{} does not import Optuna {OPTUNA} after installing it; remove {} and retry",
            bin.display(),
            dir.display()
        );
    }
    Ok(bin)
}

/// "AMD EPYC, 2 cores (2 jobs)": the CPU model from /proc/cpuinfo where there is one.
fn machine(jobs: usize) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{}, {cores} cores ({jobs} jobs)",
        crate::bench_train::cpu_model()
    )
}
