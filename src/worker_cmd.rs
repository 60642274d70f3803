//! `nas worker`: evaluates the trials of a study stored in a database on this machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use nas_core::storage::{OpenMode, Storage};
use nas_core::study_ref::StudyRef;
use nas_core::worker::{Evaluator, WorkerOptions, check_builds, process_name, serve};

pub struct Options {
    pub storage: Option<String>,
    pub study: Option<String>,
    pub max_trials: Option<u64>,
    pub idle_exit: Option<Duration>,
    pub data_dir: Option<PathBuf>,
    pub study_dir: Option<PathBuf>,
}

pub fn worker(o: Options) -> anyhow::Result<()> {
    crate::signals::stop_searches_on_interrupt();
    let study = StudyRef::resolve(None, o.storage.as_deref(), o.study.as_deref())?;
    let StudyRef::Database { url, name } = &study else {
        anyhow::bail!("`nas worker` serves a study in a database: give --storage URL");
    };
    let (_, mut config) = study.open()?;
    config.storage = Some(url.clone());
    // Data paths are this machine's: --data-dir, else the current directory.
    config.data_root = Some(match o.data_dir {
        Some(d) => std::path::absolute(d)?,
        None => std::env::current_dir()?,
    });
    let files = o.study_dir.unwrap_or_else(|| config.directory.clone());
    std::fs::create_dir_all(&files).with_context(|| {
        format!(
            "cannot create the worker's study folder {}",
            files.display()
        )
    })?;
    let connect =
        || -> anyhow::Result<Storage> { Ok(Storage::connect(url, name, OpenMode::Existing)?) };
    let storage = connect()?;
    // Everything this machine lacks is found before any trial is claimed.
    let mut evaluator = Evaluator::for_study(&config, &files)
        .with_context(|| format!("this worker cannot evaluate {study}"))?;
    check_builds(&storage, evaluator.builds())?;
    let mut options = WorkerOptions::new(process_name(), &config);
    options.max_trials = o.max_trials;
    options.idle_exit = o.idle_exit;
    eprintln!(
        "worker {} serving {study} (lease {}, files in {})",
        options.name,
        humantime::format_duration(options.lease),
        files.display()
    );
    let summary = serve(&storage, &connect, &mut evaluator, &options, &|| {
        nas_core::interrupt::requested().is_some()
    })?;
    let discarded = if summary.discarded > 0 {
        format!(
            ", {} results discarded (their trial had an outcome already)",
            summary.discarded
        )
    } else {
        String::new()
    };
    let message = format!(
        "worker {}: {} trials evaluated{discarded}; stopped: {}",
        options.name, summary.done, summary.stop_reason
    );
    match nas_core::interrupt::requested() {
        Some(signal) => Err(crate::commands::Interrupted { signal, message }.into()),
        None => {
            eprintln!("{message}");
            Ok(())
        }
    }
}
