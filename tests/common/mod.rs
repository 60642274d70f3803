//! Helpers the end-to-end tests share: running the `nas` program and reading its output.
// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `nas` program cargo built for these tests.
pub const NAS: &str = env!("CARGO_BIN_EXE_nas");

/// Runs `nas ARGS` in `cwd` and waits for it.
pub fn nas(args: &[&str], cwd: &Path) -> Output {
    Command::new(NAS)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("nas runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
