//! Every study file shipped in configs/ parses (known tables, keys and space knobs), so a
//! config the README points users to never fails on a typo.

use std::path::{Path, PathBuf};

fn study_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            study_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Benchmark suites (configs/bench) are another format; they name study files.
            if text.lines().any(|l| l.trim() == "[study]") {
                out.push(path);
            }
        }
    }
}

#[test]
fn every_shipped_study_file_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut files = Vec::new();
    study_files(&root, &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = nas_core::config::parse(&path, &text) {
            panic!("{}: {e}", path.display());
        }
    }
}
