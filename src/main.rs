//! `nas`: run and inspect neural architecture searches described by one TOML file.

mod benchmark_cmd;
mod commands;
mod progress;
mod report_cmd;
mod signals;
mod status_cmd;
mod tabulate_cmd;
mod trial_view;
mod worker_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nas",
    version,
    about = "Neural architecture search with plugin strategies and ONNX Runtime scoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A study in a database, for the commands that otherwise take a study folder.
#[derive(clap::Args, Clone, Debug, Default)]
struct Database {
    /// The database holding the study, e.g. postgresql://nas@db-host/nas (default: the
    /// NAS_STORAGE environment variable).
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// The study's `[study] name` in that database (may be left out when it holds one).
    #[arg(long, value_name = "NAME")]
    study: Option<String>,
}

impl Database {
    fn study(&self, dir: Option<PathBuf>) -> anyhow::Result<nas_core::study_ref::StudyRef> {
        nas_core::study_ref::StudyRef::resolve(dir, self.storage.as_deref(), self.study.as_deref())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run (or resume) the study described by CONFIG.
    Search {
        config: PathBuf,
        /// Study directory (default: `[study] directory` of the config). An existing study
        /// there is resumed.
        #[arg(long)]
        study_dir: Option<PathBuf>,
        /// Folder that relative paths of the `[data]` table are taken from (default: the
        /// current directory), e.g. where your CIFAR-10 or MNIST files are.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Store the study in this database (PostgreSQL URL) instead of the study directory's
        /// SQLite file; `nas worker` processes on any machine then evaluate its trials.
        /// Default: the NAS_STORAGE environment variable, else `[storage] url`.
        #[arg(long, value_name = "URL")]
        storage: Option<String>,
    },
    /// Evaluate the trials of a study stored in a database, on this machine, with its own
    /// plugins, ONNX Runtime and data, until stopped.
    Worker {
        /// The database (default: the NAS_STORAGE environment variable).
        #[arg(long, value_name = "URL")]
        storage: Option<String>,
        /// The study to serve (may be left out when the database holds one).
        #[arg(long, value_name = "NAME")]
        study: Option<String>,
        /// Stop after evaluating N trials.
        #[arg(long, value_name = "N")]
        max_trials: Option<u64>,
        /// Stop after this long without a trial to claim, e.g. 60s or 10m (default: wait until
        /// the study is finished).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        idle_exit: Option<std::time::Duration>,
        /// Folder that relative `[data]` paths are taken from on this machine (default: the
        /// current directory).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Folder for the files evaluators write (default: the study's `[study] directory`).
        #[arg(long)]
        study_dir: Option<PathBuf>,
    },
    /// Show every trial of a study, its workers and requeued trials.
    Status {
        /// The study folder (or name a study in a database with --storage/--study).
        study_dir: Option<PathBuf>,
        #[command(flatten)]
        database: Database,
        /// Print a JSON array of trials (stable format for scripts); with --workers, a JSON
        /// object with the counts, workers and requeued trials.
        #[arg(long)]
        json: bool,
        /// Print the config the study was created with.
        #[arg(long, conflicts_with = "json")]
        config: bool,
        /// Show only the trial counts, the workers and the requeued trials (not every trial).
        #[arg(long, conflicts_with = "config")]
        workers: bool,
    },
    /// Show the best trial(s): the top K, or the Pareto set for several objectives.
    Best {
        study_dir: Option<PathBuf>,
        #[command(flatten)]
        database: Database,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1)]
        top: usize,
    },
    /// Write a trial's network as an ONNX model.
    Export {
        study_dir: Option<PathBuf>,
        #[command(flatten)]
        database: Database,
        #[arg(long)]
        trial: u64,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Score given candidates with CONFIG's evaluator pipeline, without a search.
    Evaluate {
        config: PathBuf,
        /// An architecture string of the space (an NB201 string for `cell`) or a choice
        /// vector such as `[3,1,2,0,4,3]`; repeat for several candidates.
        #[arg(long = "arch", required = true)]
        archs: Vec<String>,
        #[arg(long)]
        json: bool,
        /// Folder that relative `[data]` paths are taken from.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a study's report: trials.csv, best_so_far.svg, pareto.svg (two objectives) and
    /// report.md; for a one-shot strategy also its supernet search (supernet_epochs.csv,
    /// supernet_weights.csv, a chart of the architecture weights and a section of report.md).
    Report {
        study_dir: Option<PathBuf>,
        #[command(flatten)]
        database: Database,
        /// Output folder (default: `<study>/report/`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a benchmark suite (methods x spaces x datasets x budgets x seeds, each a real
    /// study) and write trials.csv, summary.md/.csv, SVG plots and report.md.
    Benchmark {
        /// The suite file, e.g. configs/bench/nb201.toml.
        suite: PathBuf,
        /// Seeds per combination (default: the suite's `seeds`).
        #[arg(long)]
        seeds: Option<usize>,
        /// Studies run at once, each in its own thread (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Output folder (default: `results/bench/<suite name>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build a tabular benchmark: train every architecture of CONFIG's (small, discrete) space
    /// once with the grid strategy, isomorphs merged, then write a table the `tabular`
    /// evaluator reads. Resumable: run it again to continue an interrupted build.
    Tabulate {
        config: PathBuf,
        /// Study directory holding the trained trials (default: `[study] directory`).
        #[arg(long)]
        study_dir: Option<PathBuf>,
        /// Folder that relative `[data]` paths are taken from.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The table file (default: `<study dir>/table.json.gz`; `.gz` compresses).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Networks trained at once (default: `[runtime] workers`).
        #[arg(long)]
        workers: Option<usize>,
        /// Write a table of the networks trained so far, without training more (works while
        /// another process is building).
        #[arg(long)]
        partial: bool,
    },
    /// List the plugins found on the plugin search path.
    Plugins {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NAS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    signals::end_quietly_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Search {
            config,
            study_dir,
            data_dir,
            storage,
        } => commands::search(&config, study_dir, data_dir, storage.as_deref()),
        Command::Worker {
            storage,
            study,
            max_trials,
            idle_exit,
            data_dir,
            study_dir,
        } => worker_cmd::worker(worker_cmd::Options {
            storage,
            study,
            max_trials,
            idle_exit,
            data_dir,
            study_dir,
        }),
        Command::Status {
            study_dir,
            database,
            json,
            config,
            workers,
        } => database.study(study_dir).and_then(|s| {
            if workers {
                status_cmd::workers(&s, json)
            } else {
                commands::status(&s, json, config)
            }
        }),
        Command::Best {
            study_dir,
            database,
            json,
            top,
        } => database
            .study(study_dir)
            .and_then(|s| commands::best(&s, json, top)),
        Command::Export {
            study_dir,
            database,
            trial,
            output,
        } => database
            .study(study_dir)
            .and_then(|s| commands::export(&s, trial, &output)),
        Command::Evaluate {
            config,
            archs,
            json,
            data_dir,
        } => commands::evaluate(&config, &archs, json, data_dir),
        Command::Tabulate {
            config,
            study_dir,
            data_dir,
            output,
            workers,
            partial,
        } => tabulate_cmd::tabulate(
            &config,
            tabulate_cmd::Options {
                study_dir,
                data_dir,
                output,
                workers,
                partial,
            },
        ),
        Command::Report {
            study_dir,
            database,
            out,
        } => database
            .study(study_dir)
            .and_then(|s| report_cmd::report(&s, out)),
        Command::Benchmark {
            suite,
            seeds,
            jobs,
            out,
        } => benchmark_cmd::benchmark(&suite, seeds, jobs, out),
        Command::Plugins { json } => commands::plugins(json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::Interrupted>() {
            // 128 + the signal number, as a shell reports a program ended by it.
            Some(stop) => {
                eprintln!("{stop}");
                ExitCode::from(128 + stop.signal as u8)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
