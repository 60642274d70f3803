//! ONNX Runtime loading and session building.
