//! `cargo xtask gpu-check`: on a machine with an NVIDIA GPU, checks that training and
//! inference run on CUDA and agree with the CPU.
//!
//! 1. Refuses at once, with a clear message, where no GPU is visible (`nvidia-smi -L` missing
//!    or listing none, or /dev/nvidia0 absent).
//! 2. Provisions the GPU build of ONNX Runtime with the CUDA 13 and cuDNN 9 libraries, as
//!    `cargo xtask ort --gpu` does (skipped with `--skip-provision`, which then needs
//!    ORT_DYLIB_PATH on a GPU build).
//! 3. Builds crates/nas-core/examples/gpu_check.rs in release mode and runs it on `cuda` with
//!    ORT_DYLIB_PATH on that library: two benchmark networks trained `--steps` steps on CUDA
//!    and on CPU from the same weights and batches (loss curves compared), inference on CPU,
//!    CUDA and TensorRT (when its provider can be created), the state's placement and the
//!    session's provider checked. It writes results/gpu-check/summary.md (the table it prints,
//!    plus the GPUs found); the exit code is non-zero when a check fails.
//!
//! Time on a fresh machine: the ~1.5 GB of wheels (onnxruntime-gpu, CUDA, cuDNN) and the
//! release build dominate (each one to two minutes with a good link and 16 cores); the check
//! itself takes about a minute at the default 200 steps, most of it the CPU reference run of
//! the NB201 network. A provisioned machine reruns it in about a minute. The provisioning
//! needs PyPI; on a machine without network, copy target/ort/onnxruntime-gpu-1.31.1 from one
//! that has it and pass `--skip-provision` with ORT_DYLIB_PATH set.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::{build_core_example, ort};

pub const SUMMARY: &str = "results/gpu-check/summary.md";

/// The flags of `cargo xtask gpu-check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub steps: usize,
    pub skip_provision: bool,
}

/// The GPUs `nvidia-smi -L` lists: its `GPU <n>: ...` lines (MIG lines belong to them).
pub fn parse_gpu_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.strip_prefix("GPU ")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect()
}

/// What `nvidia-smi -L` did: its stdout when it exited with success, else why not.
pub type SmiOutcome = std::result::Result<String, String>;

/// The GPUs found, or why none is usable: both the device node and a GPU listed by
/// `nvidia-smi -L` are needed.
pub fn detect_gpus(
    device_node: bool,
    smi: &SmiOutcome,
) -> std::result::Result<Vec<String>, String> {
    let mut why = Vec::new();
    let gpus = match smi {
        Ok(stdout) => {
            let gpus = parse_gpu_list(stdout);
            if gpus.is_empty() {
                why.push("`nvidia-smi -L` lists no GPU".to_string());
            }
            gpus
        }
        Err(e) => {
            why.push(format!("`nvidia-smi -L` failed: {e}"));
            Vec::new()
        }
    };
    if !device_node {
        why.push("/dev/nvidia0 is absent".into());
    }
    if why.is_empty() {
        Ok(gpus)
    } else {
        Err(format!(
            "no NVIDIA GPU found ({}); gpu-check needs one",
            why.join("; ")
        ))
    }
}

fn nvidia_smi() -> SmiOutcome {
    match Command::new("nvidia-smi").arg("-L").output() {
        Err(e) => Err(format!("cannot run it: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(format!("{} {}", o.status, line.trim()).trim().to_string())
        }
    }
}

/// The GPU library to use with `--skip-provision`: ORT_DYLIB_PATH, which must be a GPU build.
fn given_library() -> Result<PathBuf> {
    let Some(env) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) else {
        bail!(
            "--skip-provision needs ORT_DYLIB_PATH set to the GPU build of ONNX Runtime \
             (libonnxruntime.so.1.31.1 with libonnxruntime_providers_cuda.so beside it); \
             or drop --skip-provision to provision it"
        );
    };
    let path = PathBuf::from(env);
    let dir = path.parent().unwrap_or(Path::new("."));
    if !path.is_file() {
        bail!(
            "ORT_DYLIB_PATH={} does not exist; fix it, or drop --skip-provision",
            path.display()
        );
    }
    if !dir.join("libonnxruntime_providers_cuda.so").is_file() {
        bail!(
            "ORT_DYLIB_PATH={} is not a GPU build (no libonnxruntime_providers_cuda.so beside \
             it); point it at the one `cargo xtask ort --gpu` provisions, or drop --skip-provision",
            path.display()
        );
    }
    Ok(path)
}

pub fn gpu_check(root: &Path, target: &Path, opts: Options) -> Result<ExitCode> {
    if opts.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let gpus = match detect_gpus(Path::new("/dev/nvidia0").exists(), &nvidia_smi()) {
        Ok(gpus) => gpus,
        Err(why) => {
            // A plain message and exit code: an expected refusal, not a failure to trace.
            eprintln!("error: {why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for g in &gpus {
        eprintln!("{g}");
    }
    let library = if opts.skip_provision {
        given_library()?
    } else {
        ort::provision(target, true)?.library
    };
    eprintln!("ONNX Runtime (GPU build): {}", library.display());
    let exe = build_core_example(root, target, "gpu_check")?;
    let summary = root.join(SUMMARY);
    let status = Command::new(&exe)
        .current_dir(root)
        .args(["--provider", "cuda", "--steps", &opts.steps.to_string()])
        .arg("--out")
        .arg(&summary)
        .env("ORT_DYLIB_PATH", &library)
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if summary.is_file() {
        let mut text = std::fs::read_to_string(&summary)
            .with_context(|| format!("cannot read {}", summary.display()))?;
        text.push_str(&format!(
            "\nGPUs (`nvidia-smi -L`): {}. ONNX Runtime: {}.\n",
            gpus.join("; "),
            library.display()
        ));
        std::fs::write(&summary, text)
            .with_context(|| format!("cannot write {}", summary.display()))?;
        eprintln!("wrote {}", summary.display());
    }
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("gpu-check: some checks failed ({status}); see the table above");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200: &str = "GPU 0: NVIDIA H200 (UUID: GPU-0c1d2e3f-1111-2222-3333-444455556666)\n";

    #[test]
    fn gpu_lines_are_counted_and_others_ignored() {
        let out = format!(
            "{H200}  MIG 1g.18gb     Device  0: (UUID: MIG-aaaa)\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-b)\n\
             No devices were found\nGPU: odd\n"
        );
        assert_eq!(
            parse_gpu_list(&out),
            [
                "GPU 0: NVIDIA H200 (UUID: GPU-0c1d2e3f-1111-2222-3333-444455556666)",
                "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-b)"
            ]
        );
        assert!(parse_gpu_list("No devices were found\n").is_empty());
        assert!(parse_gpu_list("").is_empty());
    }

    #[test]
    fn a_gpu_needs_the_device_node_and_a_listed_gpu() {
        assert_eq!(detect_gpus(true, &Ok(H200.into())).unwrap(), [H200.trim()]);
        let e = detect_gpus(true, &Ok("No devices were found\n".into())).unwrap_err();
        assert_eq!(
            e,
            "no NVIDIA GPU found (`nvidia-smi -L` lists no GPU); gpu-check needs one"
        );
        let e = detect_gpus(
            false,
            &Err("cannot run it: No such file or directory".into()),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "no NVIDIA GPU found (`nvidia-smi -L` failed: cannot run it: No such file or directory; \
             /dev/nvidia0 is absent); gpu-check needs one"
        );
        let e = detect_gpus(false, &Ok(H200.into())).unwrap_err();
        assert!(e.contains("(/dev/nvidia0 is absent)"), "{e}");
    }

    #[test]
    fn detection_on_this_machine_gives_gpus_or_the_refusal() {
        // Runs the real `nvidia-smi` (or finds it missing): either way the outcome is usable.
        match detect_gpus(Path::new("/dev/nvidia0").exists(), &nvidia_smi()) {
            Ok(gpus) => assert!(!gpus.is_empty()),
            Err(e) => assert!(
                e.starts_with("no NVIDIA GPU found (") && e.ends_with("gpu-check needs one")
            ),
        }
    }
}
