//! A bad library must be a recoverable error: in its own process, so nothing was loaded before.

use std::path::Path;

use nas_runtime::{RuntimeError, SessionSettings, init, locate_library, session_from_bytes};

#[test]
fn a_bad_library_is_an_error_and_a_good_one_still_loads_afterwards() {
    let bad = std::env::temp_dir().join(format!("nas-runtime-bad-{}.so", std::process::id()));
    std::fs::write(&bad, b"this is not a shared library").unwrap();
    let err = init(&bad).unwrap_err();
    std::fs::remove_file(&bad).unwrap();
    let msg = err.to_string();
    assert!(matches!(err, RuntimeError::Load { .. }), "{msg}");
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(msg.contains("cargo xtask ort"), "{msg}");

    let err = init(Path::new("/nonexistent/libonnxruntime.so.1.31.1")).unwrap_err();
    assert!(matches!(err, RuntimeError::Missing { .. }), "{err}");

    let good = locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)");
    init(&good).unwrap();
    let settings = SessionSettings::cpu(&good);
    let err = session_from_bytes(b"garbage", &settings).unwrap_err();
    assert!(matches!(err, RuntimeError::Session { .. }), "{err}");
}
