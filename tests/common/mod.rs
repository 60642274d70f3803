//! Helpers the end-to-end tests share: running the `nas` program and reading its output.
// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

/// The `nas` program cargo built for these tests.
pub const NAS: &str = env!("CARGO_BIN_EXE_nas");

/// A small `chain` space for the 8x8 digits (`[space]` lines): two stages of 2 x 2 x 2 x 2
/// options each.
pub const SMALL_CHAIN: &str = r#"kind = "chain"
stem_channels = 8
head_channels = 32
depths = [1, 2]
kernels = [3, 5]
expansions = [1, 3]
width_multipliers = [0.5, 1.0]
stages = [{ channels = 8, stride = 1 }, { channels = 16, stride = 2 }]"#;

/// Runs `nas ARGS` in `cwd` and waits for it.
pub fn nas(args: &[&str], cwd: &Path) -> Output {
    Command::new(NAS)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("nas runs")
}

/// A running `nas` whose stderr was read up to a line of interest.
pub struct Running {
    pub child: Child,
    /// The stderr lines read so far, the line of interest last.
    pub seen: Vec<String>,
    /// The rest of stderr.
    pub rest: Lines<BufReader<ChildStderr>>,
}

impl Running {
    /// Reads the rest of stderr into `seen` and waits for the program to end.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        self.seen.extend(self.rest.map(|l| l.unwrap()));
        (self.child.wait().unwrap(), self.seen.join("\n"))
    }
}

/// Starts `nas ARGS` in `cwd` and reads its stderr until a line satisfies `until` (or the
/// stream ends), e.g. to interrupt it once a search is under way.
pub fn nas_until(args: &[&str], cwd: &Path, until: impl Fn(&str) -> bool) -> Running {
    let mut child = Command::new(NAS)
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nas runs");
    let mut rest = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in rest.by_ref() {
        let line = line.unwrap();
        let found = until(&line);
        seen.push(line);
        if found {
            break;
        }
    }
    Running { child, seen, rest }
}

/// Sends `signal` (a name or number, as `kill -s` takes it) to a running `nas`.
pub fn send_signal(running: &Running, signal: &str) {
    let sent = Command::new("kill")
        .args(["-s", signal, &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -s {signal}");
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `nas ... --json` output, after checking the command succeeded.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Writes `config` to `dir/study.toml` and runs `nas search` on it (which must succeed);
/// returns every trial (`nas status study --json`) and the best one (`nas best study --json`,
/// the first of a Pareto set), with its `final` part. The config's study folder must be
/// `study`.
pub fn search_study(dir: &Path, config: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    std::fs::write(dir.join("study.toml"), config).unwrap();
    let o = nas(&["search", "study.toml"], dir);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let trials = json(&nas(&["status", "study", "--json"], dir));
    let best = match json(&nas(&["best", "study", "--json"], dir)) {
        serde_json::Value::Array(mut list) => list.remove(0),
        one => one,
    };
    (trials.as_array().unwrap().clone(), best)
}

/// The `[data]` table `data` as a study in `dir` reads it (relative paths from `dir`), split
/// with `seed`.
pub fn load_data(dir: &Path, data: &str, seed: u64) -> nas_data::SplitDataset {
    let mut cfg: nas_data::DataConfig = toml::from_str(data).unwrap();
    cfg.resolve_paths(dir);
    nas_data::load(&cfg, seed).unwrap()
}

/// A data file shipped in `configs/data/`.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/data")
        .join(name)
}

/// Output `output` of the ONNX model at `path` on the raw test part of `split` (samples in the
/// shape networks take, values as stored: the model normalizes them itself).
pub fn onnx_test_output(
    path: &Path,
    split: &nas_data::SplitDataset,
    output: &str,
) -> ndarray::ArrayD<f32> {
    let test = split.part(nas_data::Part::Test);
    let x: ndarray::ArrayD<f32> = test.network_batch(test.images.clone());
    let lib = nas_runtime::locate_library(None)
        .expect("ONNX Runtime is provisioned (`cargo xtask ort` or ORT_DYLIB_PATH)");
    let model = std::fs::read(path).unwrap();
    let mut session =
        nas_runtime::session_from_bytes(&model, &nas_runtime::SessionSettings::cpu(&lib)).unwrap();
    let outputs = session
        .run(ort::inputs!["input" => ort::value::Tensor::from_array(x).unwrap()])
        .unwrap();
    outputs[output]
        .try_extract_array::<f32>()
        .unwrap()
        .to_owned()
}

/// Accuracy of the ONNX model at `path` on the raw test part of `split` (see
/// [`onnx_test_output`]), and the sample count.
pub fn onnx_test_accuracy(path: &Path, split: &nas_data::SplitDataset) -> (f64, usize) {
    let test = split.part(nas_data::Part::Test);
    let logits = onnx_test_output(path, split, "logits");
    let correct = logits
        .outer_iter()
        .zip(&test.labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |m, (k, &v)| if v > m.1 { (k, v) } else { m },
                );
            best.0 == **label as usize
        })
        .count();
    (correct as f64 / test.len() as f64, test.len())
}
