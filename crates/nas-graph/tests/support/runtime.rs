//! The ONNX Runtime the integration tests run models in: one process-wide environment loaded
//! from the library `cargo xtask ort` provisions (or `ORT_DYLIB_PATH`), and single-threaded
//! sessions.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

fn library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
        })
}

/// The process-wide environment; fails loudly when the library is missing.
fn env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library();
        assert!(
            path.is_file(),
            "ONNX Runtime library not found at {} (set ORT_DYLIB_PATH or run `cargo xtask ort`)",
            path.display()
        );
        ort::init_from(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot load ONNX Runtime from {} ({e}); run `cargo xtask ort`",
                    path.display()
                )
            })
            .with_name("nas-graph-tests")
            .with_telemetry(false)
            .build()
            .expect("ONNX Runtime environment")
    })
}

/// A one-thread session of `model` with every graph optimization.
pub fn session(model: &[u8]) -> Session {
    session_at(model, GraphOptimizationLevel::All)
}

/// A one-thread session of `model` at optimization `level`.
pub fn session_at(model: &[u8], level: GraphOptimizationLevel) -> Session {
    Session::builder(env())
        .and_then(|b| b.with_optimization_level(level).map_err(Into::into))
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|mut b| b.commit_from_memory(model))
        .unwrap_or_else(|e| panic!("ONNX Runtime rejected the model: {e}"))
}
