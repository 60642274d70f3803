//! Helpers shared by the integration tests that run ONNX Runtime.
#![allow(dead_code)]

pub mod export;
pub mod gradcheck;
pub mod runtime;
