//! Host side: open plugin libraries, check their ABI, and call them through plain methods.

use std::path::{Path, PathBuf};

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::{RResult, RStr};

use crate::abi::{ABI_VERSION, PluginInstanceBox, PluginKind, PluginModuleRef, SDK_VERSION};
#[cfg(feature = "evaluator")]
use crate::messages::{EvalRequest, EvalResult, EvaluatorContext};
use crate::messages::{Observation, Proposal, StrategyContext};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load plugin {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "{path} is not a nas plugin (no nas root module): {reason}; a plugin is a cdylib crate that \
         calls `nas_plugin::export_strategy!` or `export_evaluator!`"
    )]
    NotAPlugin { path: PathBuf, reason: String },
    #[error(
        "plugin {path} was built against an incompatible plugin SDK ({reason}); \
         rebuild it against nas-plugin {SDK_VERSION} (ABI {ABI_VERSION}), e.g. `cargo build --release` in its crate"
    )]
    Incompatible { path: PathBuf, reason: String },
}

/// An error from one call into a plugin, naming the plugin and the method.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` failed in `{method}`: {message}")]
pub struct CallError {
    pub plugin: String,
    pub method: String,
    pub message: String,
}

/// An opened plugin library whose ABI has been checked. Libraries are never unloaded.
#[derive(Clone)]
pub struct PluginLibrary {
    pub path: PathBuf,
    pub name: String,
    pub kind: PluginKind,
    module: PluginModuleRef,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Keeps only what differs from abi_stable's (often 40 KB) layout report: its `Error:` lines
/// with their expected/found types, or the reason a library could not be opened.
fn summarize_abi_error(raw: &str) -> String {
    let lines: Vec<&str> = raw
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut errors: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(what) = line.strip_prefix("Error:") {
            let mut e = what.trim().to_string();
            if let [_, "Expected:", expected, "Found:", found, ..] = &lines[i..] {
                e.push_str(&format!(" (expected `{expected}`, found `{found}`)"));
            }
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
    }
    let summary = if !errors.is_empty() {
        errors
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    } else if let Some(i) = lines.iter().position(|l| *l == "because:") {
        lines[i + 1..].join(" ")
    } else {
        lines.join(" ")
    };
    if summary.is_empty() {
        "layout check failed".into()
    } else {
        summary.chars().take(400).collect()
    }
}

impl PluginLibrary {
    /// Opens one library. Each library gets its own root module (not abi_stable's per-type
    /// cache), so several plugins of one kind load side by side.
    pub fn open(path: &Path) -> Result<PluginLibrary, LoadError> {
        let header = lib_header_from_path(path).map_err(|e| match e {
            // A library that loads but lacks the root module symbol: some other shared library.
            abi_stable::library::LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
                path: path.to_path_buf(),
                reason: format!(
                    "it does not export `{}`",
                    abi_stable::library::ROOT_MODULE_LOADER_NAME
                ),
            },
            e => LoadError::Open {
                path: path.to_path_buf(),
                reason: summarize_abi_error(&e.to_string()),
            },
        })?;
        let module =
            header
                .init_root_module::<PluginModuleRef>()
                .map_err(|e| LoadError::Incompatible {
                    path: path.to_path_buf(),
                    reason: summarize_abi_error(&e.to_string()),
                })?;
        let abi = (module.abi_version())();
        let sdk = (module.sdk_version())().to_string();
        if abi != ABI_VERSION || sdk != SDK_VERSION {
            return Err(LoadError::Incompatible {
                path: path.to_path_buf(),
                reason: format!(
                    "it has ABI {abi} / SDK {sdk}, this program has ABI {ABI_VERSION} / SDK {SDK_VERSION}"
                ),
            });
        }
        Ok(PluginLibrary {
            path: path.to_path_buf(),
            name: (module.name())().to_string(),
            kind: (module.kind())(),
            module,
        })
    }

    fn create(&self, context: String) -> Result<PluginHandle, CallError> {
        match (self.module.create())(RStr::from_str(&context)) {
            RResult::ROk(instance) => Ok(PluginHandle {
                name: self.name.clone(),
                instance,
            }),
            RResult::RErr(e) => Err(CallError {
                plugin: self.name.clone(),
                method: "new".into(),
                message: e.into_string(),
            }),
        }
    }

    fn expect_kind(&self, kind: PluginKind) -> Result<(), CallError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(CallError {
                plugin: self.name.clone(),
                method: "new".into(),
                message: format!(
                    "{} is a {} plugin, not a {} plugin",
                    self.path.display(),
                    self.kind.as_str(),
                    kind.as_str()
                ),
            })
        }
    }

    pub fn create_strategy(&self, ctx: &StrategyContext) -> Result<StrategyHandle, CallError> {
        self.expect_kind(PluginKind::Strategy)?;
        let json = serde_json::to_string(ctx).expect("context serializes");
        Ok(StrategyHandle(self.create(json)?))
    }

    #[cfg(feature = "evaluator")]
    pub fn create_evaluator(&self, ctx: &EvaluatorContext) -> Result<EvaluatorHandle, CallError> {
        self.expect_kind(PluginKind::Evaluator)?;
        let json = serde_json::to_string(ctx).expect("context serializes");
        Ok(EvaluatorHandle(self.create(json)?))
    }
}

/// A live plugin instance.
struct PluginHandle {
    name: String,
    instance: PluginInstanceBox,
}

impl PluginHandle {
    fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        payload: &impl serde::Serialize,
    ) -> Result<T, CallError> {
        let err = |message: String| CallError {
            plugin: self.name.clone(),
            method: method.to_string(),
            message,
        };
        let payload = serde_json::to_string(payload).map_err(|e| err(e.to_string()))?;
        match self
            .instance
            .call(RStr::from_str(method), RStr::from_str(&payload))
        {
            RResult::ROk(reply) => serde_json::from_str(reply.as_str())
                .map_err(|e| err(format!("unreadable reply: {e}"))),
            RResult::RErr(e) => Err(err(e.into_string())),
        }
    }
}

/// A strategy plugin instance, called like the `Strategy` trait.
pub struct StrategyHandle(PluginHandle);

impl StrategyHandle {
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, CallError> {
        self.0.call("ask", &n)
    }
    pub fn tell(&mut self, observations: &[Observation]) -> Result<(), CallError> {
        self.0.call("tell", &observations)
    }
    pub fn save(&mut self) -> Result<serde_json::Value, CallError> {
        self.0.call("save", &())
    }
    pub fn restore(&mut self, state: &serde_json::Value) -> Result<(), CallError> {
        self.0.call("restore", state)
    }
}

/// An evaluator plugin instance, called like the `Evaluator` trait.
#[cfg(feature = "evaluator")]
pub struct EvaluatorHandle(PluginHandle);

#[cfg(feature = "evaluator")]
impl EvaluatorHandle {
    pub fn name(&self) -> &str {
        &self.0.name
    }
    pub fn evaluate(&mut self, request: &EvalRequest) -> Result<EvalResult, CallError> {
        self.0.call("evaluate", request)
    }
    /// Shows the evaluator finished trials; the reply says whether it wants more.
    pub fn observe(&mut self, trials: &[Observation]) -> Result<bool, CallError> {
        self.0.call("observe", &trials)
    }
}

/// The plugin library of `package` (e.g. `evaluator-train`) that cargo built alongside the
/// running test binary: `target/<profile>/deps/` (where `cargo test` compiles a package's
/// cdylib) or one folder up (where `cargo build` puts it). For a plugin's own tests; panics
/// naming the file and the command that builds it when it is in neither.
pub fn built_plugin(package: &str) -> PathBuf {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let file = format!("{DLL_PREFIX}{}{DLL_SUFFIX}", package.replace('-', "_"));
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's folder");
    [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{file} is not in {} or the folder above: build it with `cargo build -p {package}`",
                deps.display()
            )
        })
}
