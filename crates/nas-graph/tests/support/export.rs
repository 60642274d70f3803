//! The inference export, run in ONNX Runtime, against the float64 reference forward.

use nas_graph::reference::forward;
use nas_graph::{ExportOptions, Graph, Weights, export_inference};
use ndarray::ArrayD;
use ort::value::TensorRef;

use super::runtime::session;

/// Runs the exported model (options `options`) on `x` and compares it with the reference:
/// `Err` when an output is not within `1e-4 * max(1, max|ref|)`, else the error relative to
/// that scale.
pub fn export_matches(
    graph: &Graph,
    weights: &Weights,
    x: &ArrayD<f32>,
    options: &ExportOptions,
) -> Result<f64, String> {
    let model = export_inference(graph, weights, options).map_err(|e| e.to_string())?;
    let mut s = session(&model);
    let outputs = s
        .run(ort::inputs![options.input_name.as_str() => TensorRef::from_array_view(x).map_err(|e| e.to_string())?])
        .map_err(|e| format!("ORT run failed: {e}"))?;
    let got = outputs[0]
        .try_extract_array::<f32>()
        .map_err(|e| e.to_string())?
        .to_owned();
    let want = forward(graph, weights, &x.mapv(f64::from)).map_err(|e| e.to_string())?;
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} vs reference {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
    if err.is_nan() || err > 1e-4 * scale {
        return Err(format!("max |ort - ref| = {err:e} (scale {scale:e})"));
    }
    Ok(err / scale)
}
