//! The execution providers a study may name: the one list that config validation and
//! session building share.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::RuntimeError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    TensorRt,
}

impl ExecutionProvider {
    /// Every provider, in the order error messages list them.
    pub const ALL: [ExecutionProvider; 3] = [
        ExecutionProvider::Cpu,
        ExecutionProvider::Cuda,
        ExecutionProvider::TensorRt,
    ];

    /// The name used in `[runtime] execution_provider`.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::TensorRt => "tensorrt",
        }
    }

    /// The valid names, as "cpu | cuda | tensorrt".
    pub fn expected() -> String {
        Self::ALL.map(Self::name).join(" | ")
    }

    /// The provider named `name`; an unknown name is an error listing the valid ones.
    pub fn parse(name: &str) -> Result<ExecutionProvider, RuntimeError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| RuntimeError::UnknownProvider {
                provider: name.into(),
            })
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How sessions are built: the provider, an optional fallback, threads, and the library the
/// host resolved (evaluators never look it up themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    pub provider: ExecutionProvider,
    /// Used when `provider` is unavailable; `None` makes that an error.
    pub fallback: Option<ExecutionProvider>,
    /// Intra-op threads per session (at least 1 is used).
    pub threads: usize,
    pub library: PathBuf,
    /// Where ONNX Runtime's profiler writes its JSON trace (`<prefix>_<date>.json`, written
    /// when the session ends); `None` (the default) leaves the profiler off.
    pub profiling: Option<PathBuf>,
}

impl SessionSettings {
    /// Settings from the names the host sends (`[runtime]` as given in the study); a missing
    /// `library` means the host found none.
    pub fn from_names(
        provider: &str,
        fallback: Option<&str>,
        threads: usize,
        library: Option<&Path>,
    ) -> Result<SessionSettings, RuntimeError> {
        Ok(SessionSettings {
            provider: ExecutionProvider::parse(provider)?,
            fallback: fallback.map(ExecutionProvider::parse).transpose()?,
            threads,
            library: library.ok_or(RuntimeError::NotResolved)?.to_path_buf(),
            profiling: None,
        })
    }

    /// CPU sessions with one thread on `library` (tests, tools).
    pub fn cpu(library: &Path) -> SessionSettings {
        SessionSettings {
            provider: ExecutionProvider::Cpu,
            fallback: None,
            threads: 1,
            library: library.to_path_buf(),
            profiling: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for p in ExecutionProvider::ALL {
            assert_eq!(ExecutionProvider::parse(p.name()).unwrap(), p);
        }
        let err = ExecutionProvider::parse("tpu").unwrap_err().to_string();
        assert!(
            err.contains("`tpu`") && err.contains("cpu | cuda | tensorrt"),
            "{err}"
        );
    }

    #[test]
    fn settings_need_a_library_and_known_providers() {
        let lib = Path::new("/lib/libonnxruntime.so");
        let s = SessionSettings::from_names("cuda", Some("cpu"), 2, Some(lib)).unwrap();
        assert_eq!(s.provider, ExecutionProvider::Cuda);
        assert_eq!(s.fallback, Some(ExecutionProvider::Cpu));
        let err = SessionSettings::from_names("cpu", None, 1, None).unwrap_err();
        assert!(matches!(err, RuntimeError::NotResolved), "{err}");
        assert!(err.to_string().contains("cargo xtask ort"), "{err}");
        let err = SessionSettings::from_names("cpu", Some("gpu"), 1, Some(lib)).unwrap_err();
        assert!(matches!(err, RuntimeError::UnknownProvider { .. }), "{err}");
    }
}
