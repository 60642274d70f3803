//! Tests against the real ONNX Runtime library (provisioned by `cargo xtask ort`).

use super::*;
use ort::value::Tensor;

/// A hand-encoded ONNX model `y = Relu(x)`, `x: float[batch, 4]`, so these tests do not
/// depend on the exporter in nas-graph.
pub(crate) fn relu_model() -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn int(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let value_info = |name: &str| {
        let mut batch = vec![];
        bytes(&mut batch, 2, b"batch");
        let mut four = vec![];
        int(&mut four, 1, 4);
        let mut shape = vec![];
        bytes(&mut shape, 1, &batch);
        bytes(&mut shape, 1, &four);
        let mut tensor = vec![];
        int(&mut tensor, 1, 1); // FLOAT
        bytes(&mut tensor, 2, &shape);
        let mut ty = vec![];
        bytes(&mut ty, 1, &tensor);
        let mut vi = vec![];
        bytes(&mut vi, 1, name.as_bytes());
        bytes(&mut vi, 2, &ty);
        vi
    };
    let mut node = vec![];
    bytes(&mut node, 1, b"x");
    bytes(&mut node, 2, b"y");
    bytes(&mut node, 4, b"Relu");
    let mut graph = vec![];
    bytes(&mut graph, 1, &node);
    bytes(&mut graph, 2, b"relu");
    bytes(&mut graph, 11, &value_info("x"));
    bytes(&mut graph, 12, &value_info("y"));
    let mut opset = vec![];
    bytes(&mut opset, 1, b"");
    int(&mut opset, 2, 17);
    let mut model = vec![];
    int(&mut model, 1, 8);
    bytes(&mut model, 8, &opset);
    bytes(&mut model, 7, &graph);
    model
}

fn settings(provider: &str, fallback: Option<&str>) -> SessionSettings {
    SessionSettings::from_names(provider, fallback, 1, Some(&library())).unwrap()
}

fn library() -> PathBuf {
    locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)")
}

fn run_relu(session: &mut Session) -> Vec<f32> {
    let x = Tensor::from_array((
        [2usize, 4],
        vec![-1.0f32, 2.0, -3.0, 4.0, 0.5, -0.5, 0.0, 7.0],
    ))
    .unwrap();
    let out = session.run(ort::inputs!["x" => x]).unwrap();
    let (shape, y) = out["y"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&**shape, &[2, 4]);
    y.to_vec()
}

#[test]
fn finds_the_provisioned_library() {
    let path = library();
    assert!(path.is_file());
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("libonnxruntime.so"),
        "{}",
        path.display()
    );
}

#[test]
fn an_explicit_path_that_does_not_exist_is_an_error_saying_what_to_do() {
    let err = locate_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
    assert!(msg.contains("[runtime] ort_library"), "{msg}");
    assert!(msg.contains("cargo xtask ort"), "{msg}");
}

#[test]
fn walks_up_to_the_target_folder_and_prefers_the_build_for_the_provider() {
    let root = std::env::temp_dir().join(format!("nas-runtime-locate-{}", std::process::id()));
    let exe = root.join("target/debug/deps/some-test");
    let cpu = root.join("target/ort").join(CPU_DIR).join(LIBRARY_FILE);
    let gpu = root.join("target/ort").join(GPU_DIR).join(LIBRARY_FILE);
    let found = |provider| {
        candidates_above(&exe, provider)
            .into_iter()
            .find(|p| p.is_file())
    };
    std::fs::create_dir_all(cpu.parent().unwrap()).unwrap();
    std::fs::write(&cpu, b"").unwrap();
    assert_eq!(found("cpu"), Some(cpu.clone()));
    assert_eq!(found("cuda"), Some(cpu.clone()));
    std::fs::create_dir_all(gpu.parent().unwrap()).unwrap();
    std::fs::write(&gpu, b"").unwrap();
    assert_eq!(found("cpu"), Some(cpu.clone()));
    assert_eq!(found("cuda"), Some(gpu.clone()));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn init_is_idempotent() {
    init(&library()).unwrap();
    init(&library()).unwrap();
    assert_eq!(
        loaded_library().map(|p| canonical(&p)),
        Some(canonical(&library()))
    );
}

#[test]
fn a_second_library_in_the_same_process_is_refused() {
    init(&library()).unwrap();
    let other = std::env::temp_dir().join(format!("nas-runtime-other-{}.so", std::process::id()));
    std::fs::write(&other, b"not a library").unwrap();
    let err = init(&other).unwrap_err();
    std::fs::remove_file(&other).unwrap();
    assert!(matches!(err, RuntimeError::AlreadyLoaded { .. }), "{err}");
}

#[test]
fn runs_a_model_on_cpu() {
    let built = build_session(&relu_model(), &settings("cpu", None)).unwrap();
    assert_eq!(built.provider, "cpu");
    let mut session = built.session;
    assert_eq!(
        run_relu(&mut session),
        vec![0.0, 2.0, 0.0, 4.0, 0.5, 0.0, 0.0, 7.0]
    );
}

#[test]
fn cpu_is_available() {
    let providers = available_providers(&library()).unwrap();
    assert!(providers.contains(&ExecutionProvider::Cpu), "{providers:?}");
}

#[test]
fn an_unavailable_provider_without_fallback_is_a_clear_error() {
    if available_providers(&library())
        .unwrap()
        .contains(&ExecutionProvider::Cuda)
    {
        return; // a GPU build: CUDA may well work here
    }
    let err = session_from_bytes(&relu_model(), &settings("cuda", None)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RuntimeError::ProviderUnavailable { .. }),
        "{msg}"
    );
    assert!(msg.contains("`cuda` is not available"), "{msg}");
    assert!(msg.contains("cargo xtask ort --gpu"), "{msg}");
    assert!(msg.contains("fallback = \"cpu\""), "{msg}");
}

#[test]
fn an_unavailable_provider_falls_back_when_configured() {
    if available_providers(&library())
        .unwrap()
        .contains(&ExecutionProvider::Cuda)
    {
        return;
    }
    for _ in 0..2 {
        let built = build_session(&relu_model(), &settings("cuda", Some("cpu"))).unwrap();
        assert_eq!(built.provider, "cpu");
        let mut session = built.session;
        assert_eq!(run_relu(&mut session)[1], 2.0);
    }
}

#[test]
fn unknown_providers_are_rejected() {
    let err = SessionSettings::from_names("tpu", None, 1, Some(&library())).unwrap_err();
    assert!(err.to_string().contains("cpu | cuda | tensorrt"), "{err}");
}

#[test]
fn a_broken_model_is_a_session_error() {
    let err = session_from_bytes(b"not onnx", &settings("cpu", None)).unwrap_err();
    assert!(matches!(err, RuntimeError::Session { .. }), "{err}");
}
