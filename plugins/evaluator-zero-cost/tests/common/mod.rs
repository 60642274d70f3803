//! Shared by the integration tests: NB201 networks and NASLib's zero-cost file.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use nas_core::space::{CellSpace, CellSpaceConfig, SearchSpace};
use nas_graph::Graph;
use nas_plugin::RuntimeSettings;
use serde_json::Value;

/// The NASLib file shipped with the repository.
pub fn naslib_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/nb201_zero_cost_subset.json")
}

/// One cifar10 architecture of the NASLib file.
#[derive(Clone, Debug)]
pub struct Arch {
    /// NASLib's key, e.g. `(0, 2, 3, 2, 3, 1)`.
    pub key: String,
    /// Choice values of the cell space (indices into `NB201_OPS`).
    pub values: Vec<f64>,
    pub val_accuracy: f64,
    /// NASLib's scores by proxy name (`params` in millions; `-Infinity` read as `-inf`).
    pub scores: BTreeMap<String, f64>,
}

/// NASLib op index -> `NB201_OPS` index (none, skip_connect, nor_conv_1x1, nor_conv_3x3,
/// avg_pool_3x3).
const NASLIB_TO_NB201: [usize; 5] = [1, 0, 3, 2, 4];

/// Key `(t0, .., t5)` -> cell-space values: the string is `|t0~0|+|t1~0|t3~1|+|t2~0|t4~1|t5~2|`.
pub fn values_of_key(key: &str) -> Vec<f64> {
    let t: Vec<usize> = key
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(|s| s.trim().parse().expect("integer op index"))
        .collect();
    assert_eq!(t.len(), 6, "{key}");
    [t[0], t[1], t[3], t[2], t[4], t[5]]
        .iter()
        .map(|&o| NASLIB_TO_NB201[o] as f64)
        .collect()
}

/// The cifar10 part of the file, in file order.
pub fn cifar10_archs() -> Vec<Arch> {
    let text = std::fs::read_to_string(naslib_file()).expect("the NASLib file is in tests/data");
    // serde_json rejects the file's `-Infinity` literals (NWOT of singular kernels).
    let text = text.replace("-Infinity", "\"-inf\"");
    let root: Value = serde_json::from_str(&text).expect("valid JSON after the fix");
    let number = |v: &Value| match v {
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other.as_f64().expect("a number"),
    };
    root["cifar10"]
        .as_object()
        .expect("a cifar10 table")
        .iter()
        .map(|(key, entry)| {
            let scores = entry
                .as_object()
                .unwrap()
                .iter()
                .filter_map(|(name, v)| v.get("score").map(|s| (name.clone(), number(s))))
                .collect();
            Arch {
                key: key.clone(),
                values: values_of_key(key),
                val_accuracy: number(&entry["val_accuracy"]),
                scores,
            }
        })
        .collect()
}

/// The NB201 space of the file: C = 16, N = 5, 10 classes, 3x32x32.
pub fn nb201() -> CellSpace {
    let cfg = CellSpaceConfig {
        input: Some(vec![3, 32, 32]),
        classes: Some(10),
        ..CellSpaceConfig::default()
    };
    CellSpace::new(&cfg).expect("valid NB201 config")
}

pub fn graph_of(space: &CellSpace, arch: &Arch) -> Graph {
    space.decode(&arch.values).expect("a valid cell")
}

pub fn runtime() -> RuntimeSettings {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    RuntimeSettings {
        threads,
        ort_library: Some(
            nas_runtime::locate_library(None)
                .expect("ONNX Runtime is provisioned (`cargo xtask ort`)")
                .display()
                .to_string(),
        ),
        ..RuntimeSettings::default()
    }
}
