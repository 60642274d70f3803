//! `cargo xtask ...`: project chores that need more than cargo (see `cargo xtask --help`).

mod bench;
mod bench_optuna;
mod bench_train;
mod bench_workers;
mod elf;
mod gpu_check;
mod lang_words;
mod new_strategy;
mod ort;
mod ort_profile;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Project tasks: ONNX Runtime provisioning, tests, quickstart, benchmarks, zero-cost proxy check, new plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Provision the ONNX Runtime shared library into target/ort/ (idempotent); prints its path
    /// as the last line of stdout.
    Ort {
        /// The GPU build (CUDA and TensorRT providers) plus the CUDA 13 and cuDNN 9 libraries
        /// (about 1.5 GB).
        #[arg(long)]
        gpu: bool,
    },
    /// Check formatting (`cargo fmt --all --check`) and lints (`cargo clippy --workspace
    /// --all-targets -- -D warnings`), provision ONNX Runtime, then run `cargo test --workspace
    /// [ARGS...]` with ORT_DYLIB_PATH set and NAS_TEST_POSTGRES naming a PostgreSQL server for
    /// the storage tests: NAS_TEST_POSTGRES as given, else the one on 127.0.0.1:5432, else a
    /// throwaway one started with initdb and pg_ctl (stopped afterwards).
    Test {
        /// Passed on to `cargo test`, e.g. `-- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run COMMAND with NAS_TEST_POSTGRES naming the server the tests would use (see
    /// `cargo xtask test`), e.g. `cargo xtask with-postgres cargo test -p nas-core --lib
    /// storage`.
    WithPostgres {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Provision, build in release mode, run configs/quickstart.toml and show the best trials.
    Quickstart,
    /// Measure the engine's overhead per trial and its memory over N/10 and N trials of a
    /// parameter-counting study; writes results/bench-loop/summary.md.
    BenchLoop {
        /// Trials of the long run; the short run has a tenth of them.
        #[arg(long, default_value_t = 10_000)]
        trials: u64,
    },
    /// Distributed search on PostgreSQL and SQLite side by side: trials/s with 1, 2, 4 and 8
    /// workers on an evaluator that sleeps 50 ms per trial, `claim_next` latency at 1,000 and
    /// 100,000 stored trials, and `nas status` time on the large study; writes
    /// results/bench-workers/report.md and results.csv (a few minutes; PostgreSQL as for
    /// `cargo xtask test`).
    BenchWorkers {
        /// Trials of a throughput run, at least.
        #[arg(long, default_value_t = 160)]
        trials: u64,
        /// Trials of a throughput run per worker, at least (N workers: max(trials, this x N)).
        #[arg(long, default_value_t = 80)]
        trials_per_worker: u64,
        /// Simulated evaluation time per trial (the tabular evaluator's `delay_ms`).
        #[arg(long, default_value_t = 50)]
        delay_ms: u64,
    },
    /// Measure images/s of the ONNX Runtime training step and of inference on CPU for several
    /// networks of our search spaces (a small CNN, NAS-Bench-201 cells, a MobileNetV2-like
    /// chain), next to PyTorch running the same networks, weights and data when a python3 can
    /// import torch; compares the loss curves from that common start; writes
    /// results/bench-train/summary.md.
    BenchTrain {
        /// Networks to run, comma-separated: reference, nb201-b64, nb201-b256, chain,
        /// nb201-mnist (default: all).
        #[arg(long, value_delimiter = ',')]
        nets: Option<Vec<String>>,
        /// Images per training step and per inference run for every network (default: each
        /// network's own batch).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed steps (and timed inference runs).
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Untimed steps (and inference runs) first.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Intra-op threads of both runtimes.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seed of the initial weights and the data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder of the results (each network's tensors and profile, summary.md).
        #[arg(long, default_value = bench_train::OUT_DIR)]
        out: PathBuf,
        /// Profile our training steps with ONNX Runtime's profiler: time per op type.
        #[arg(long)]
        profile: bool,
        /// Also train one full epoch of the NB201 network on 60,000 1x28x28 images (Fashion-MNIST
        /// when installed), ours and PyTorch's (long).
        #[arg(long)]
        epoch: bool,
        /// Images of the `--epoch` run.
        #[arg(long, default_value_t = 60_000)]
        epoch_images: usize,
        /// The Python interpreter with torch (default: the first python3 on PATH that imports
        /// torch).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Train our side with standard ONNX ops only, not ONNX Runtime's blocked-layout
        /// (NCHWc) conv kernels (to measure what they bring).
        #[arg(long)]
        no_nchwc: bool,
    },
    /// One-shot search against ground truth: for each method (darts, darts-minus, drnas,
    /// gdas, spos) and seed, train the supernet of the table's space on its data (default:
    /// `nb201-digits`), derive the architecture and look up its test accuracy and percentile in
    /// the table (a sampled table: train it with the table's recipe); writes
    /// results/bench-oneshot/{runs.csv,summary.md}. `--help` lists its flags.
    #[command(disable_help_flag = true)]
    BenchOneshot {
        /// The benchmark's flags, passed to it as they are (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// On a machine with an NVIDIA GPU: provision the GPU build of ONNX Runtime, then train and
    /// run two benchmark networks on CUDA and on CPU from the same weights and data, check the
    /// GPU really ran and the loss curves agree, time inference on CPU, CUDA and TensorRT;
    /// writes results/gpu-check/summary.md, exits non-zero when a check fails (a few minutes).
    GpuCheck {
        /// Training steps per network and provider.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// Use the GPU build ORT_DYLIB_PATH names instead of provisioning one.
        #[arg(long)]
        skip_provision: bool,
    },
    /// Build in release mode, then run a benchmark suite with `target/release/nas benchmark`;
    /// writes results/bench/<suite>/ (CSV, markdown, SVG plots, the studies).
    Benchmark {
        /// The suite file, or the name of one in configs/bench/ (`nb201`, `digits`, `smoke`).
        #[arg(default_value = "configs/bench/nb201.toml")]
        suite: PathBuf,
        /// Seeds per combination (default: the suite's).
        #[arg(long)]
        seeds: Option<usize>,
        /// Studies run at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Our strategies (`tpe` both ways, `local`, `evolution`, `random`) and Optuna's default
    /// TPESampler and RandomSampler side by side on the NAS-Bench-201 ImageNet16-120
    /// test-accuracy table, 100 trials, seeds 1..N, repeats counted both ways; Optuna is
    /// installed from PyPI into a throwaway venv under target/ (a few minutes); writes
    /// results/bench-optuna/summary.md.
    BenchOptuna {
        /// Seeds 1..N of every method.
        #[arg(long, default_value_t = 100)]
        seeds: usize,
        /// Studies run at once (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// The Python 3 that creates the venv.
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        #[arg(long, default_value = bench_optuna::OUT_DIR)]
        out: PathBuf,
    },
    /// Score the 725 NAS-Bench-201 networks of NASLib's zero-cost file with every proxy of the
    /// `zero-cost` evaluator (release build, about 30 minutes on 2 cores) and compare rank
    /// correlations with NASLib's; writes results/zero-cost/report.md.
    ZeroCost,
    /// Build the language-identification text set (`language<TAB>word`, 7 languages) from the
    /// word lists Debian packages (`apt-get install wamerican wngerman wfrench wspanish
    /// witalian wportuguese wdutch`); configs/text-language-id.toml reads it.
    LangWords {
        /// Words sampled from each language (only words found in no other list).
        #[arg(long, default_value_t = 4000)]
        per_language: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where the word lists are.
        #[arg(long, default_value = "/usr/share/dict")]
        dict: PathBuf,
        /// The file written (relative to the repository root).
        #[arg(long, default_value = lang_words::DEFAULT_OUT)]
        out: PathBuf,
    },
    /// Create plugins/strategy-NAME: a strategy plugin crate (random search on the SDK's kit,
    /// options, save/restore, conformance tests) to start from; see docs/writing-a-strategy.md.
    NewStrategy {
        /// The plugin name: lowercase letters, digits and `-` (used as `plugin = "NAME"`).
        name: String,
        /// Write DIR/strategy-NAME instead: a standalone crate (its own workspace, nas-plugin
        /// by path) for a plugin kept outside this repository.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// The workspace root: xtask lives in <root>/xtask.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// Cargo's target folder: CARGO_TARGET_DIR (relative to the current folder, as cargo reads
/// it) or <root>/target.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir().map(|c| c.join(&dir)).unwrap_or(dir)
            }
        }
        None => root.join("target"),
    }
}

/// The cargo that runs us (cargo sets CARGO), so the same toolchain builds everything.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// Runs a command to completion, failing with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// Builds example `name` of nas-core in release mode; returns the program's path.
pub fn build_core_example(root: &Path, target: &Path, name: &str) -> Result<PathBuf> {
    run(cargo(root).args(["build", "--release", "-p", "nas-core", "--example", name]))?;
    let exe = target.join("release/examples").join(name);
    if !exe.is_file() {
        bail!(
            "{} was not built; check `cargo build --release -p nas-core --example {name}`",
            exe.display()
        );
    }
    Ok(exe)
}

/// Formatting and lints, checked before the tests (CI runs `cargo xtask test`): each check
/// with what to run to fix what it found.
const STYLE_CHECKS: [(&[&str], &str); 2] = [
    (
        &["fmt", "--all", "--check"],
        "the code is not formatted as `cargo fmt` formats it (the diff is above): run `cargo fmt --all`",
    ),
    (
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        "clippy found the problems listed above: fix them, then check with \
         `cargo clippy --workspace --all-targets -- -D warnings`",
    ),
];

fn check_style(root: &Path) -> Result<()> {
    for (args, fix) in STYLE_CHECKS {
        eprintln!("cargo {}", args.join(" "));
        let status = cargo(root)
            .args(args)
            .status()
            .with_context(|| format!("cannot run `cargo {}`", args.join(" ")))?;
        if !status.success() {
            bail!("`cargo {}` failed: {fix}", args.join(" "));
        }
    }
    Ok(())
}

/// Provisions the CPU runtime and returns the library path, announcing it on stderr.
pub fn provision_cpu(target: &Path) -> Result<PathBuf> {
    let p = ort::provision(target, false)?;
    eprintln!("ONNX Runtime: {}", p.library.display());
    Ok(p.library)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = repo_root();
    let target = target_dir(&root);
    match cli.command {
        Task::Ort { gpu } => {
            let p = ort::provision(&target, gpu)?;
            if let Some((cuda, cudnn)) = &p.cuda_dirs {
                println!("cuda: {}", cuda.display());
                println!("cudnn: {}", cudnn.display());
            }
            println!("{}", p.library.display());
        }
        Task::Test { args: _ } => {
            let args = passthrough(&std::env::args().collect::<Vec<_>>());
            // Found (or started) first: without one the PostgreSQL tests would fail late.
            let server = nas_testdb::TestServer::find_or_start()?;
            check_style(&root)?;
            let library = provision_cpu(&target)?;
            // The end-to-end tests load plugins from the build's target folder: build every
            // library first, so they never load a stale one (`cargo test` alone leaves the
            // plugin .so files in deps/ only). Every target, as `cargo test` builds them:
            // the tests' dev-dependencies change the features of shared dependencies, so a
            // build of the libraries alone would be compiled a second time by the tests.
            let release = args
                .iter()
                .take_while(|a| *a != "--")
                .any(|a| a == "--release");
            let mut build = cargo(&root);
            build.args(["build", "--workspace", "--all-targets"]);
            if release {
                build.arg("--release");
            }
            run(&mut build)?;
            let status = cargo(&root)
                .args(["test", "--workspace"])
                .args(&args)
                .env("ORT_DYLIB_PATH", &library)
                .env(nas_testdb::ENV, server.url())
                .status()
                .context("cannot run `cargo test`")?;
            return Ok(exit_code(status));
        }
        Task::WithPostgres { command } => {
            let server = nas_testdb::TestServer::find_or_start()?;
            let status = Command::new(&command[0])
                .args(&command[1..])
                .env(nas_testdb::ENV, server.url())
                .status()
                .with_context(|| format!("cannot run `{}`", command.join(" ")))?;
            return Ok(exit_code(status));
        }
        Task::Quickstart => quickstart(&root, &target)?,
        Task::BenchLoop { trials } => bench::bench_loop(&root, &target, trials)?,
        Task::BenchWorkers {
            trials,
            trials_per_worker,
            delay_ms,
        } => bench_workers::bench_workers(
            &root,
            &target,
            &bench_workers::Options {
                trials,
                trials_per_worker,
                delay_ms,
                workers: vec![1, 2, 4, 8],
                sizes: vec![1_000, 100_000],
            },
        )?,
        Task::BenchTrain {
            nets,
            batch,
            steps,
            warmup,
            threads,
            seed,
            out,
            profile,
            epoch,
            epoch_images,
            python,
            no_nchwc,
        } => bench_train::bench_train(
            &root,
            &target,
            &bench_train::Options {
                nets: nets
                    .unwrap_or_else(|| bench_train::NETS.iter().map(|s| s.to_string()).collect()),
                batch,
                steps,
                warmup,
                threads,
                seed,
                out,
                profile,
                epoch,
                epoch_images,
                python,
                nchwc: !no_nchwc,
            },
        )?,
        Task::BenchOneshot { args } => {
            let library = provision_cpu(&target)?;
            let exe = build_core_example(&root, &target, "oneshot_bench")?;
            // `--proxies` loads the zero-cost evaluator's plugin from beside the program.
            if args.iter().any(|a| a == "--proxies") {
                run(cargo(&root).args(["build", "--release", "-p", "evaluator-zero-cost"]))?;
            }
            run(Command::new(exe)
                .current_dir(&root)
                .env("ORT_DYLIB_PATH", &library)
                .args(&args))?;
        }
        Task::GpuCheck {
            steps,
            skip_provision,
        } => {
            return gpu_check::gpu_check(
                &root,
                &target,
                gpu_check::Options {
                    steps,
                    skip_provision,
                },
            );
        }
        Task::NewStrategy { name, out } => new_strategy::run(&root, &name, out.as_deref())?,
        Task::ZeroCost => zero_cost(&root, &target)?,
        Task::LangWords {
            per_language,
            seed,
            dict,
            out,
        } => lang_words::run(
            &root,
            &lang_words::Options {
                per_language,
                seed,
                dict,
                out,
            },
        )?,
        Task::Benchmark { suite, seeds, jobs } => benchmark(&root, &target, &suite, seeds, jobs)?,
        Task::BenchOptuna {
            seeds,
            jobs,
            python,
            out,
        } => bench_optuna::bench_optuna(
            &root,
            &target,
            &bench_optuna::Options {
                seeds,
                jobs,
                python,
                out,
            },
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The arguments after `test`, verbatim: clap drops a leading `--`, which `cargo test` needs
/// to tell its own options from the test harness's (`cargo xtask test -- --nocapture`).
fn passthrough(argv: &[String]) -> Vec<String> {
    argv.iter().skip(2).cloned().collect()
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE, // killed by a signal
    }
}

fn quickstart(root: &Path, target: &Path) -> Result<()> {
    let config = root.join("configs/quickstart.toml");
    if !config.is_file() {
        bail!(
            "{} is missing; restore it from version control",
            config.display()
        );
    }
    let library = provision_cpu(target)?;
    run(cargo(root).args(["build", "--release", "--workspace"]))?;
    for mut cmd in quickstart_commands(&target.join("release/nas"), root, &library) {
        run(&mut cmd)?;
    }
    Ok(())
}

/// What the quickstart runs after the build: `nas search` alone, since it ends by printing the
/// best trials and the final models itself (a `nas best` after it printed them twice).
fn quickstart_commands(nas: &Path, root: &Path, library: &Path) -> Vec<Command> {
    let mut search = Command::new(nas);
    search
        .current_dir(root)
        .args(["search", "configs/quickstart.toml"])
        .env("ORT_DYLIB_PATH", library);
    vec![search]
}

/// `cargo xtask benchmark`: a release build, then `nas benchmark` from the workspace root.
fn benchmark(
    root: &Path,
    target: &Path,
    suite: &Path,
    seeds: Option<usize>,
    jobs: Option<usize>,
) -> Result<()> {
    // A suite path is taken from the current folder when it is there, else from the root; a
    // bare name (`digits`) means configs/bench/<name>.toml.
    let named = root
        .join("configs/bench")
        .join(suite)
        .with_extension("toml");
    let suite = if suite.is_file() {
        std::path::absolute(suite)?
    } else if root.join(suite).is_file() {
        root.join(suite)
    } else if suite.extension().is_none() && named.is_file() {
        named
    } else {
        bail!(
            "suite {} not found (looked in the current folder, in {} and for {}); the shipped \
             suites are the .toml files in configs/bench/",
            suite.display(),
            root.display(),
            named.display()
        );
    };
    run(cargo(root).args(["build", "--release"]))?;
    let mut cmd = Command::new(target.join("release/nas"));
    cmd.current_dir(root).arg("benchmark").arg(&suite);
    if let Some(n) = seeds {
        cmd.args(["--seeds", &n.to_string()]);
    }
    if let Some(j) = jobs {
        cmd.args(["--jobs", &j.to_string()]);
    }
    run(&mut cmd)
}

/// `cargo xtask zero-cost`: the ignored correlation test of `evaluator-zero-cost`, in release
/// mode, with its report written under results/.
fn zero_cost(root: &Path, target: &Path) -> Result<()> {
    let library = provision_cpu(target)?;
    let out = root.join("results/zero-cost");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let report = out.join("report.md");
    run(cargo(root)
        .args([
            "test",
            "--release",
            "-p",
            "evaluator-zero-cost",
            "--test",
            "nb201",
        ])
        .args([
            "--",
            "--ignored",
            "--nocapture",
            "proxy_correlations_on_725_archs",
        ])
        .env("ORT_DYLIB_PATH", &library)
        .env("ZERO_COST_REPORT", &report))?;
    eprintln!("wrote {}", report.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_prints_its_results_once() {
        let commands = quickstart_commands(
            Path::new("nas"),
            Path::new("."),
            Path::new("libonnxruntime.so"),
        );
        let args: Vec<Vec<String>> = commands
            .iter()
            .map(|c| {
                c.get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(args, vec![vec!["search", "configs/quickstart.toml"]]);
    }

    fn test_args(argv: &[&str]) -> Vec<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        assert!(matches!(
            Cli::try_parse_from(&argv).unwrap().command,
            Task::Test { .. }
        ));
        passthrough(&argv)
    }

    #[test]
    fn test_passes_arguments_through_verbatim() {
        assert_eq!(test_args(&["xtask", "test"]), Vec::<String>::new());
        assert_eq!(
            test_args(&["xtask", "test", "--release", "-q"]),
            ["--release", "-q"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--release", "--", "--nocapture"]),
            ["--release", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
    }
}
