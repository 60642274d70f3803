//! ONNX Runtime loading and session building: the one place that talks to `ort`.
//!
//! - [`locate_library`] finds the shared library without loading it (the host resolves the
//!   path once and hands it to every evaluator).
//! - [`init`] loads it once per process; a bad library is a recoverable error.
//! - [`session_from_bytes`] builds a session on the configured [`ExecutionProvider`], falling
//!   back to `settings.fallback` (announced once) when that provider is unavailable.
//! - [`SessionSettings`]: provider, fallback, threads and the library the host resolved.
//! - [`TensorHome`] / [`TensorStore`]: tensors kept across runs in the memory of the
//!   provider a session runs on (device memory on CUDA / TensorRT), with explicit copies;
//!   [`time_runs`] times runs with input and outputs kept there and a device synchronisation.
//!
//! This crate knows nothing of plugins: evaluators turn the host's runtime message into
//! [`SessionSettings`] with [`SessionSettings::from_names`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider as _, ExecutionProviderDispatch};

mod memory;
mod provider;
pub use memory::{TensorHome, TensorStore, time_runs};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
pub use provider::{ExecutionProvider, SessionSettings};

/// The ONNX Runtime release this workspace is built against (`ort` with `api-31`).
pub const ORT_VERSION: &str = "1.31.1";
/// File name of the shared library inside the wheels and the provisioned folders.
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// Folder under `target/ort/` holding the CPU build.
pub const CPU_DIR: &str = "onnxruntime-1.31.1";
/// Folder under `target/ort/` holding the GPU build and the CUDA libraries.
pub const GPU_DIR: &str = "onnxruntime-gpu-1.31.1";
/// Where `cargo xtask ort --gpu` unpacks the CUDA 13 and cuDNN 9 wheels, relative to the
/// folder of the GPU library.
pub const CUDA_LIB_SUBDIR: &str = "nvidia/cu13/lib";
pub const CUDNN_LIB_SUBDIR: &str = "nvidia/cudnn/lib";

const PROVISION_HINT: &str = "run `cargo xtask ort` or set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31 \
     (from the onnxruntime wheel on PyPI or a GitHub release)";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked in: {looked}); {PROVISION_HINT}")]
    NotFound { looked: String },
    #[error(
        "ONNX Runtime library {path} (from {origin}) does not exist; fix that path, or {PROVISION_HINT}"
    )]
    Missing { path: PathBuf, origin: &'static str },
    #[error("cannot load ONNX Runtime from {path}: {reason}; {PROVISION_HINT}")]
    Load { path: PathBuf, reason: String },
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process and cannot be switched to {requested}; \
         use one library per process (one `[runtime] ort_library` or ORT_DYLIB_PATH)"
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error(
        "unknown execution provider `{provider}`; expected one of: {}",
        ExecutionProvider::expected()
    )]
    UnknownProvider { provider: String },
    /// The host found no library when the study started, and an evaluator needs one.
    #[error(
        "ONNX Runtime library not found (looked at `[runtime] ort_library`, ORT_DYLIB_PATH and \
         `target/ort/` above the `nas` program); {PROVISION_HINT}"
    )]
    NotResolved,
    #[error(
        "execution provider `{provider}` is not available in {library}: {reason}; install the GPU build with \
         `cargo xtask ort --gpu` and point `[runtime] ort_library` (or ORT_DYLIB_PATH) at it{extra}, \
         or set `[runtime] fallback = \"cpu\"`"
    )]
    ProviderUnavailable {
        provider: String,
        library: PathBuf,
        reason: String,
        /// Provider-specific requirements beyond the GPU build.
        extra: &'static str,
    },
    #[error("ONNX Runtime could not build a session on `{provider}`: {reason}")]
    Session { provider: String, reason: String },
    /// Allocating or copying a tensor kept across runs failed.
    #[error("cannot {during} in {home}: {reason}{hint}")]
    Memory {
        during: String,
        home: String,
        reason: String,
        hint: &'static str,
    },
    #[error("ONNX Runtime failed {during}: {reason}")]
    Run { during: String, reason: String },
}

/// Which library build suits a provider: the GPU build can also run on CPU, not the reverse.
fn preferred_dirs(provider: &str) -> [&'static str; 2] {
    if provider == "cpu" {
        [CPU_DIR, GPU_DIR]
    } else {
        [GPU_DIR, CPU_DIR]
    }
}

/// Finds the ONNX Runtime library for CPU use; see [`locate_library_for`].
pub fn locate_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    locate_library_for(explicit, "cpu")
}

/// Finds the ONNX Runtime library, without loading it: `explicit` (the TOML
/// `[runtime] ort_library`) > env `ORT_DYLIB_PATH` > `<target>/ort/<build>/libonnxruntime.so.1.31.1`
/// in a folder above the running program (`nas` lives in target/release, tests in
/// target/debug/deps). For a GPU `provider` the GPU build is preferred there.
pub fn locate_library_for(
    explicit: Option<&Path>,
    provider: &str,
) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = explicit {
        return existing(path, "`[runtime] ort_library`");
    }
    if let Some(env) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return existing(Path::new(&env), "ORT_DYLIB_PATH");
    }
    let exe = std::env::current_exe().ok();
    let candidates = exe
        .as_deref()
        .map(|exe| candidates_above(exe, provider))
        .unwrap_or_default();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let mut looked: Vec<String> = vec![
        "`[runtime] ort_library` (unset)".into(),
        "ORT_DYLIB_PATH (unset)".into(),
    ];
    looked.extend(candidates.iter().map(|p| p.display().to_string()));
    if exe.is_none() {
        looked.push("(the running program's path is unknown)".into());
    }
    Err(RuntimeError::NotFound {
        looked: looked.join(", "),
    })
}

fn existing(path: &Path, origin: &'static str) -> Result<PathBuf, RuntimeError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(RuntimeError::Missing {
            path: path.to_path_buf(),
            origin,
        })
    }
}

/// `<ancestor>/ort/<build>/<file>` for every folder above `exe`: matches the target folder
/// whatever its name (CARGO_TARGET_DIR), plus `<ancestor>/target/ort/...` for programs
/// installed beside a checkout.
fn candidates_above(exe: &Path, provider: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in exe.ancestors().skip(1) {
        for base in [dir.join("ort"), dir.join("target").join("ort")] {
            for build in preferred_dirs(provider) {
                out.push(base.join(build).join(LIBRARY_FILE));
            }
        }
    }
    out
}

struct Loaded {
    path: PathBuf,
    canonical: PathBuf,
    env: Environment,
}

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// A poisoned lock only means another thread panicked mid-call; the data stays consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Loads ONNX Runtime from `library` and creates the process environment. Calling it again
/// with the same library is a no-op; a failed load leaves nothing behind, so a later call
/// with a good library still works.
pub fn init(library: &Path) -> Result<(), RuntimeError> {
    environment(library).map(|_| ())
}

fn environment(library: &Path) -> Result<Environment, RuntimeError> {
    let mut loaded = lock(&LOADED);
    let wanted = canonical(library);
    if let Some(l) = loaded.as_ref() {
        return if l.canonical == wanted {
            Ok(l.env.clone())
        } else {
            Err(RuntimeError::AlreadyLoaded {
                loaded: l.path.clone(),
                requested: library.to_path_buf(),
            })
        };
    }
    if !library.is_file() {
        return Err(RuntimeError::Missing {
            path: library.to_path_buf(),
            origin: "the runtime settings",
        });
    }
    let load_err = |reason: String| RuntimeError::Load {
        path: library.to_path_buf(),
        reason,
    };
    let env = ort::init_from(&wanted)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("nas")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    *loaded = Some(Loaded {
        path: library.to_path_buf(),
        canonical: wanted,
        env: env.clone(),
    });
    Ok(env)
}

/// The library this process loaded, if any.
pub fn loaded_library() -> Option<PathBuf> {
    lock(&LOADED).as_ref().map(|l| l.path.clone())
}

/// Providers the loaded library was compiled with. Compiled in does not mean usable (a GPU
/// build without a GPU lists `cuda`): sessions find that out.
pub fn available_providers(library: &Path) -> Result<Vec<ExecutionProvider>, RuntimeError> {
    init(library)?;
    let compiled_in = |p: ExecutionProvider| {
        match p {
            ExecutionProvider::Cpu => ep::CPU::is_available(),
            ExecutionProvider::Cuda => ep::CUDA::is_available(),
            ExecutionProvider::TensorRt => ep::TensorRT::is_available(),
        }
        .unwrap_or(false)
    };
    Ok(ExecutionProvider::ALL
        .into_iter()
        .filter(|p| compiled_in(*p))
        .collect())
}

/// A session and the provider it actually runs on (differs from the configured one after a
/// fallback).
pub struct RuntimeSession {
    pub session: Session,
    pub provider: String,
}

/// Builds a session from an in-memory ONNX model on `settings.execution_provider`.
pub fn session_from_bytes(
    model: &[u8],
    settings: &SessionSettings,
) -> Result<Session, RuntimeError> {
    build_session(model, settings).map(|s| s.session)
}

/// Like [`session_from_bytes`], also saying which provider the session runs on.
pub fn build_session(
    model: &[u8],
    settings: &SessionSettings,
) -> Result<RuntimeSession, RuntimeError> {
    let provider = settings.provider;
    let library = &settings.library;
    let env = environment(library)?;

    let first = if let Some(reason) = known_unavailable(provider) {
        Err(unavailable(provider, library, reason))
    } else {
        commit(&env, model, settings, provider, library)
    };
    let err = match first {
        Ok(session) => {
            return Ok(RuntimeSession {
                session,
                provider: provider.name().into(),
            });
        }
        Err(e) => e,
    };
    let fallback = match settings.fallback {
        Some(f) if f != provider => f,
        _ => return Err(err),
    };
    let reason = match &err {
        RuntimeError::ProviderUnavailable { reason, .. } => reason.clone(),
        // A session that fails only on the configured provider (e.g. no GPU at run time).
        other => other.to_string(),
    };
    let session = commit(&env, model, settings, fallback, library)?;
    if matches!(err, RuntimeError::ProviderUnavailable { .. }) {
        mark_unavailable(provider, &reason);
    }
    warn_fallback_once(provider, fallback, &reason);
    Ok(RuntimeSession {
        session,
        provider: fallback.name().into(),
    })
}

fn unavailable(provider: ExecutionProvider, library: &Path, reason: String) -> RuntimeError {
    RuntimeError::ProviderUnavailable {
        provider: provider.name().into(),
        library: library.to_path_buf(),
        reason: tidy(reason),
        extra: if provider == ExecutionProvider::TensorRt {
            " (TensorRT also needs NVIDIA TensorRT 10, libnvinfer.so.10, on the library path)"
        } else {
            ""
        },
    }
}

/// ORT messages end with a period; ours continue after them.
fn tidy(reason: String) -> String {
    reason.trim_end().trim_end_matches('.').to_string()
}

/// Providers that already failed in this process, with why: later sessions skip them
/// instead of retrying a slow, failing registration per candidate.
static UNAVAILABLE: Mutex<Option<HashMap<ExecutionProvider, String>>> = Mutex::new(None);

fn known_unavailable(provider: ExecutionProvider) -> Option<String> {
    lock(&UNAVAILABLE)
        .as_ref()
        .and_then(|m| m.get(&provider).cloned())
}

fn mark_unavailable(provider: ExecutionProvider, reason: &str) {
    lock(&UNAVAILABLE)
        .get_or_insert_with(HashMap::new)
        .entry(provider)
        .or_insert_with(|| reason.into());
}

static WARNED: Mutex<Vec<(ExecutionProvider, ExecutionProvider)>> = Mutex::new(Vec::new());

fn warn_fallback_once(provider: ExecutionProvider, fallback: ExecutionProvider, reason: &str) {
    let mut warned = lock(&WARNED);
    let key = (provider, fallback);
    if !warned.contains(&key) {
        // Plugins have no tracing subscriber of their own: stderr is what the user sees.
        eprintln!(
            "warning: execution provider `{provider}` is unavailable ({reason}); using `{fallback}` as configured by `[runtime] fallback`"
        );
        warned.push(key);
    }
}

fn base_builder(env: &Environment, settings: &SessionSettings) -> ort::Result<SessionBuilder> {
    let builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(settings.threads.max(1))?
        .with_inter_threads(1)?
        // Denormal floats are 100x slower on x86; training steps produce them (tiny gradients
        // and momenta) and slowed down 2.6x after ~60 steps without this.
        .with_flush_to_zero()?;
    Ok(match &settings.profiling {
        Some(prefix) => builder.with_profiling(prefix)?,
        None => builder,
    })
}

fn commit(
    env: &Environment,
    model: &[u8],
    settings: &SessionSettings,
    provider: ExecutionProvider,
    library: &Path,
) -> Result<Session, RuntimeError> {
    let session_err = |reason: String| RuntimeError::Session {
        provider: provider.name().into(),
        reason: tidy(reason),
    };
    let builder = base_builder(env, settings).map_err(|e| session_err(e.to_string()))?;
    let mut builder = match provider {
        ExecutionProvider::Cpu => builder,
        ExecutionProvider::Cuda | ExecutionProvider::TensorRt => {
            preload_cuda(library).map_err(|r| unavailable(provider, library, r))?;
            let eps: Vec<ExecutionProviderDispatch> = if provider == ExecutionProvider::Cuda {
                vec![ep::CUDA::default().build().error_on_failure()]
            } else {
                // TensorRT hands the nodes it cannot run to CUDA, then CPU.
                vec![
                    ep::TensorRT::default().build().error_on_failure(),
                    ep::CUDA::default().build().fail_silently(),
                ]
            };
            builder
                .with_execution_providers(eps)
                .map_err(|e| unavailable(provider, library, e.to_string()))?
        }
    };
    builder
        .commit_from_memory(model)
        .map_err(|e| session_err(e.to_string()))
}

/// Preloads the CUDA and cuDNN libraries that `cargo xtask ort --gpu` unpacked beside the GPU
/// library, once; without those folders the system's library path is used.
fn preload_cuda(library: &Path) -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = library.parent().unwrap_or(Path::new("."));
        let cuda = dir.join(CUDA_LIB_SUBDIR);
        let cudnn = dir.join(CUDNN_LIB_SUBDIR);
        let cuda = cuda.is_dir().then_some(cuda);
        let cudnn = cudnn.is_dir().then_some(cudnn);
        if cuda.is_none() && cudnn.is_none() {
            return Ok(());
        }
        ep::cuda::preload_dylibs(cuda.as_deref(), cudnn.as_deref()).map_err(|e| {
            format!(
                "cannot load the CUDA libraries next to {}: {e} (they need the NVIDIA driver's \
                 libcuda.so.1, R580 or newer, which a machine without a GPU lacks)",
                library.display()
            )
        })
    })
    .clone()
}

#[cfg(test)]
mod tests;
