//! `nas worker`: evaluates the trials of a study stored in a database on this machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use nas_core::config::StudyConfig;
use nas_core::storage::{OpenMode, Storage, StorageError};
use nas_core::study_ref::{StudyRef, only_study, storage_url};
use nas_core::worker::{Evaluator, WorkerOptions, check_builds, process_name, serve};

pub struct Options {
    pub storage: Option<String>,
    pub study: Option<String>,
    pub max_trials: Option<u64>,
    pub idle_exit: Option<Duration>,
    pub data_dir: Option<PathBuf>,
    pub study_dir: Option<PathBuf>,
}

/// How often a worker started before its study looks for it again.
const STUDY_POLL: Duration = Duration::from_secs(1);

/// The study to serve, waiting (up to `idle_exit`) for a coordinator to create it: workers
/// are often started before, or at the same time as, `nas search` (a cluster job).
fn wait_for_study(o: &Options) -> anyhow::Result<(StudyRef, StudyConfig)> {
    let Some(url) = storage_url(o.storage.as_deref())? else {
        anyhow::bail!(
            "`nas worker` serves a study in a database: give --storage URL (or set NAS_STORAGE)"
        );
    };
    let started = Instant::now();
    let mut said = false;
    loop {
        let name = match &o.study {
            Some(name) => Some(name.clone()),
            None => only_study(&url)?,
        };
        if let Some(name) = name {
            // A study counts once its coordinator has stored its config.
            let ready = match Storage::connect(&url, &name, OpenMode::ReadOnly) {
                Ok(storage) => storage.meta("config")?.is_some(),
                Err(StorageError::NoSuchStudy { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if ready {
                let study = StudyRef::Database { url, name };
                let (_, config) = study.open()?;
                return Ok((study, config));
            }
        }
        if let Some(limit) = o.idle_exit
            && started.elapsed() >= limit
        {
            anyhow::bail!(
                "no study {} appeared in {url} within --idle-exit {}",
                o.study.as_deref().map_or("".into(), |n| format!("`{n}`")),
                humantime::format_duration(limit)
            );
        }
        if nas_core::interrupt::requested().is_some() {
            anyhow::bail!("interrupted while waiting for the study to appear in {url}");
        }
        if !said {
            eprintln!(
                "waiting for {} to appear in {url} (start it with `nas search CONFIG --storage URL`)",
                o.study
                    .as_deref()
                    .map_or("a study".into(), |n| format!("study `{n}`"))
            );
            said = true;
        }
        std::thread::sleep(STUDY_POLL);
    }
}

pub fn worker(o: Options) -> anyhow::Result<()> {
    crate::signals::stop_searches_on_interrupt();
    let (study, mut config) = wait_for_study(&o)?;
    let StudyRef::Database { url, name } = &study else {
        unreachable!("a worker's study is in a database");
    };
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
