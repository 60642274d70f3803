//! Whether a training step may use ONNX Runtime's blocked-layout (NCHWc) conv kernels, and
//! with which block size: only on the CPU provider of an x86-64 machine (the only one they
//! were measured on), with the block size the loaded ONNX Runtime itself reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use nas_graph::train::nchwc;
use nas_runtime::{ExecutionProvider, SessionSettings};
use ndarray::{ArrayD, IxDyn};

/// The NCHWc block size for a step whose session `runtime` builds, or `None` (standard ops):
/// another provider, another architecture, or an ONNX Runtime without those kernels.
pub(crate) fn block_size(runtime: &SessionSettings) -> Option<usize> {
    if runtime.provider != ExecutionProvider::Cpu || !cfg!(target_arch = "x86_64") {
        return None;
    }
    // One probe per library and process: a session build costs milliseconds.
    static PROBED: OnceLock<Mutex<HashMap<PathBuf, Option<usize>>>> = OnceLock::new();
    let mut probed = PROBED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *probed
        .entry(runtime.library.clone())
        .or_insert_with(|| probe(runtime))
}

/// Runs nas-graph's probe model: its output's channel count is the block size.
fn probe(runtime: &SessionSettings) -> Option<usize> {
    let settings = SessionSettings {
        threads: 1,
        profiling: None,
        fallback: None,
        ..runtime.clone()
    };
    let mut session = nas_runtime::session_from_bytes(&nchwc::probe_model(), &settings).ok()?;
    let x = ort::value::Tensor::from_array(ArrayD::<f32>::zeros(IxDyn(&[1, 4, 1, 1]))).ok()?;
    let out = session.run(ort::inputs![nchwc::PROBE_INPUT => x]).ok()?;
    let (shape, _) = out[nchwc::PROBE_OUTPUT].try_extract_tensor::<f32>().ok()?;
    let block = usize::try_from(*shape.get(1)?).ok()?;
    nchwc::BLOCK_SIZES.contains(&block).then_some(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe reports one of ONNX Runtime's block sizes on the CPU provider (x86-64) and
    /// nothing for other providers.
    #[test]
    fn the_cpu_provider_reports_a_block_size() {
        let library = nas_runtime::locate_library(None)
            .expect("ONNX Runtime is provisioned (`cargo xtask ort` or ORT_DYLIB_PATH)");
        let cpu = SessionSettings::cpu(&library);
        let block = block_size(&cpu);
        if cfg!(target_arch = "x86_64") {
            assert!(
                block.is_some_and(|b| nchwc::BLOCK_SIZES.contains(&b)),
                "{block:?}"
            );
        } else {
            assert_eq!(block, None);
        }
        let cuda = SessionSettings {
            provider: ExecutionProvider::Cuda,
            ..cpu
        };
        assert_eq!(block_size(&cuda), None);
    }
}
