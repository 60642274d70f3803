//! Naming a stored study on the command line: a study folder (SQLite), or a study name in a
//! database (`--storage URL --study NAME`, or the `NAS_STORAGE` environment variable).

use std::path::PathBuf;

use anyhow::bail;

use crate::config::StudyConfig;
use crate::storage::{Storage, StorageUrl};

/// The environment variable naming the database when `--storage` is not given.
pub const STORAGE_ENV: &str = "NAS_STORAGE";

/// Where a stored study is.
// One per command run: the size of the database variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum StudyRef {
    Dir(PathBuf),
    Database { url: StorageUrl, name: String },
}

/// The database named by `--storage`, else by `NAS_STORAGE`; none: SQLite.
pub fn storage_url(flag: Option<&str>) -> anyhow::Result<Option<StorageUrl>> {
    let from_env = std::env::var(STORAGE_ENV).ok().filter(|v| !v.is_empty());
    match (flag, from_env) {
        (Some(url), _) => Ok(Some(url.parse()?)),
        (None, Some(url)) => Ok(Some(
            url.parse()
                .map_err(|e| anyhow::anyhow!("{STORAGE_ENV}: {e}"))?,
        )),
        (None, None) => Ok(None),
    }
}

/// The study a database holds when `--study` is left out: its only one (none while it holds
/// none); an error naming them when it holds several.
pub fn only_study(url: &StorageUrl) -> anyhow::Result<Option<String>> {
    match Storage::studies(url)?.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => bail!(
            "{url} holds several studies ({}); choose one with --study NAME",
            many.join(", ")
        ),
    }
}

impl StudyRef {
    /// A study folder if one is given; otherwise study `--study` (or the only study) of the
    /// database named by `--storage` / `NAS_STORAGE`.
    pub fn resolve(
        dir: Option<PathBuf>,
        storage: Option<&str>,
        study: Option<&str>,
    ) -> anyhow::Result<StudyRef> {
        if let Some(dir) = dir {
            if storage.is_some() || study.is_some() {
                bail!(
                    "give either a study folder or --storage URL --study NAME, not both ({} is a folder)",
                    dir.display()
                );
            }
            return Ok(StudyRef::Dir(dir));
        }
        let Some(url) = storage_url(storage)? else {
            bail!(
                "which study? Give its folder (e.g. runs/quickstart), or --storage URL --study NAME for a study in a database (or set {STORAGE_ENV})"
            );
        };
        let name = match study {
            Some(name) => name.to_string(),
            None => match only_study(&url)? {
                Some(name) => name,
                None => {
                    bail!("{url} holds no study; start one with `nas search CONFIG --storage URL`")
                }
            },
        };
        Ok(StudyRef::Database { url, name })
    }

    /// Opens the study for reading: its storage and stored config.
    pub fn open(&self) -> anyhow::Result<(Storage, StudyConfig)> {
        match self {
            StudyRef::Dir(dir) => crate::study::open_stored(dir),
            StudyRef::Database { url, name } => crate::study::open_stored_in(url, name),
        }
    }

    /// The folder of the study's files (final models, reports): the study folder, or for a
    /// database the `[study] directory` of its config.
    pub fn files_dir(&self, config: &StudyConfig) -> PathBuf {
        match self {
            StudyRef::Dir(dir) => dir.clone(),
            StudyRef::Database { .. } => config.directory.clone(),
        }
    }

    /// Where it is stored: the folder, or the database URL (without password).
    pub fn place(&self) -> String {
        match self {
            StudyRef::Dir(dir) => dir.display().to_string(),
            StudyRef::Database { url, .. } => url.to_string(),
        }
    }

    /// How to name the study again in a command (`runs/x` or `--storage URL --study NAME`).
    pub fn arguments(&self) -> String {
        match self {
            StudyRef::Dir(dir) => dir.display().to_string(),
            StudyRef::Database { url, name } => format!("--storage {url} --study {name}"),
        }
    }
}

impl std::fmt::Display for StudyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StudyRef::Dir(dir) => write!(f, "{}", dir.display()),
            StudyRef::Database { url, name } => write!(f, "study `{name}` in {url}"),
        }
    }
}
