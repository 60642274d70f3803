//! Finding plugin libraries: by explicit path, in `NAS_PLUGIN_PATH` folders, or next to the
//! running program (the build's target folder).
//!
//! A plugin named `foo` of kind strategy lives in `libstrategy_foo.so` (crate
//! `strategy-foo`); evaluators in `libevaluator_foo.so`. The file name only narrows the
//! search: the library's own name and kind are checked after loading.

use std::collections::BTreeMap;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};

use nas_plugin::abi::PluginKind;
use nas_plugin::host::{LoadError, PluginLibrary};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "no {kind} plugin named `{name}` (looked for {file} in: {dirs}). {available}\
         Build it (e.g. `cargo build --release -p {kind}-{name}`), add its folder to NAS_PLUGIN_PATH, \
         or give its path: plugin = \"path/to/{file}\""
    )]
    NotFound {
        kind: &'static str,
        name: String,
        file: String,
        dirs: String,
        available: String,
    },
    #[error("{path} is the {found_kind} plugin `{found}`, but a {kind} plugin was asked for here")]
    WrongKind {
        path: PathBuf,
        found: String,
        found_kind: &'static str,
        kind: &'static str,
    },
}

/// Folders searched for plugins by name, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(paths) = std::env::var_os("NAS_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        // Test and example binaries live in target/<profile>/deps or /examples.
        if matches!(
            dir.file_name().and_then(|n| n.to_str()),
            Some("deps" | "examples")
        ) && let Some(parent) = dir.parent()
        {
            dirs.push(parent.to_path_buf());
        }
    }
    // A folder both on NAS_PLUGIN_PATH and next to the program is searched (and shown) once.
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    dirs
}

/// Plugin names starting with `test-` are the project's test fixtures (deliberately broken
/// plugins built next to the real ones); listings leave them out.
fn is_test_fixture(file: &str) -> bool {
    ["strategy_test_", "evaluator_test_"]
        .iter()
        .any(|k| file.starts_with(&format!("{DLL_PREFIX}{k}")))
}

pub fn file_name(kind: PluginKind, name: &str) -> String {
    format!(
        "{DLL_PREFIX}{}_{}{DLL_SUFFIX}",
        kind.as_str(),
        name.replace('-', "_")
    )
}

/// True when a `plugin = "..."` value is a path rather than a name.
fn is_path(spec: &str) -> bool {
    spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || spec.ends_with(DLL_SUFFIX)
}

/// Loads a plugin library given a name or a path and checks its kind.
pub fn load(kind: PluginKind, spec: &str) -> Result<PluginLibrary, PluginError> {
    let path = if is_path(spec) {
        PathBuf::from(spec)
    } else {
        let file = file_name(kind, spec);
        let dirs = search_dirs();
        match dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
            Some(p) => p,
            None => {
                let names: Vec<String> = list(&dirs)
                    .into_iter()
                    .filter(|e| e.kind == Some(kind) && e.error.is_none())
                    .map(|e| e.name)
                    .collect();
                let available = if names.is_empty() {
                    String::new()
                } else {
                    format!("Available: {}. ", names.join(", "))
                };
                return Err(PluginError::NotFound {
                    kind: kind.as_str(),
                    name: spec.to_string(),
                    file,
                    dirs: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    available,
                });
            }
        }
    };
    let library = PluginLibrary::open(&path)?;
    if library.kind != kind {
        return Err(PluginError::WrongKind {
            path,
            found: library.name.clone(),
            found_kind: library.kind.as_str(),
            kind: kind.as_str(),
        });
    }
    Ok(library)
}

/// One plugin file found on the search path.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listed {
    pub name: String,
    #[serde(serialize_with = "kind_str")]
    pub kind: Option<PluginKind>,
    pub path: PathBuf,
    /// Why it could not be loaded, if it could not.
    pub error: Option<String>,
}

fn kind_str<S: serde::Serializer>(k: &Option<PluginKind>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_str(k.as_str()),
        None => s.serialize_none(),
    }
}

/// Every plugin library in `dirs` (first occurrence of a file name wins), loaded to read its
/// name; libraries that fail to load are listed with their error.
pub fn list(dirs: &[PathBuf]) -> Vec<Listed> {
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let is_plugin = ["strategy_", "evaluator_"]
                .iter()
                .any(|k| file.starts_with(&format!("{DLL_PREFIX}{k}")))
                && file.ends_with(DLL_SUFFIX);
            if is_plugin && !is_test_fixture(&file) {
                found.entry(file).or_insert_with(|| entry.path());
            }
        }
    }
    found.into_values().map(|p| describe(&p)).collect()
}

fn describe(path: &Path) -> Listed {
    match PluginLibrary::open(path) {
        Ok(lib) => Listed {
            name: lib.name,
            kind: Some(lib.kind),
            path: path.to_path_buf(),
            error: None,
        },
        Err(e) => Listed {
            name: path
                .file_stem()
                .map(|s| {
                    s.to_string_lossy()
                        .trim_start_matches(DLL_PREFIX)
                        .to_string()
                })
                .unwrap_or_default(),
            kind: None,
            path: path.to_path_buf(),
            error: Some(e.to_string()),
        },
    }
}
