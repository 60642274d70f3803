//! `cargo xtask ort`: provisions the ONNX Runtime shared library (and, with `--gpu`, the CUDA
//! and cuDNN libraries) from PyPI wheels into `<target>/ort/`, where nas-runtime looks for it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::elf;

/// Matches `ort` 2.0.0-rc.15 with `api-31`; older libraries are refused at load time.
pub const ORT_VERSION: &str = "1.31.1";
pub const LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
const LIBRARY_IN_WHEEL: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
const CPU_PACKAGE: &str = "onnxruntime";
const GPU_PACKAGE: &str = "onnxruntime-gpu";

/// Loaded by the GPU library from its own folder.
const GPU_PROVIDER_FILES: &[&str] = &[
    "libonnxruntime_providers_shared.so",
    "libonnxruntime_providers_cuda.so",
    "libonnxruntime_providers_tensorrt.so",
];

/// The CUDA 13.0 (update 2) runtime set the GPU wheel was built against (its headers say
/// 13.0; the oldest 13.x needs the oldest driver, R580), plus cuDNN 9 for CUDA 13. These are
/// the wheels behind `onnxruntime-gpu[cuda,cudnn]`, pinned; nvjitlink is cuFFT's dependency.
const CUDA_WHEELS: &[(&str, &str)] = &[
    ("nvidia-cuda-runtime", "13.0.96"),
    ("nvidia-cublas", "13.1.0.3"),
    ("nvidia-curand", "10.4.0.35"),
    ("nvidia-cufft", "12.0.0.61"),
    ("nvidia-cuda-nvrtc", "13.0.88"),
    ("nvidia-nvjitlink", "13.0.88"),
    ("nvidia-cudnn-cu13", "9.28.1.4"),
];

/// Relative to the GPU library's folder; nas-runtime preloads from these (same constants).
pub const CUDA_LIB_SUBDIR: &str = "nvidia/cu13/lib";
pub const CUDNN_LIB_SUBDIR: &str = "nvidia/cudnn/lib";

/// What `ort::ep::cuda::preload_dylibs` loads (its CUDA_DYLIBS / CUDNN_DYLIBS), plus nvJitLink
/// which cuFFT needs.
const CUDA_LIBS: &[&str] = &[
    "libcudart.so.13",
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libnvrtc.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libnvJitLink.so.13",
];
const CUDNN_LIBS: &[&str] = &[
    "libcudnn.so.9",
    "libcudnn_graph.so.9",
    "libcudnn_ops.so.9",
    "libcudnn_heuristic.so.9",
    "libcudnn_adv.so.9",
    "libcudnn_cnn.so.9",
    "libcudnn_engines_precompiled.so.9",
    "libcudnn_engines_runtime_compiled.so.9",
];

/// A provisioned runtime: the library, and for the GPU build the CUDA and cuDNN folders.
#[derive(Debug)]
pub struct Provisioned {
    pub library: PathBuf,
    pub cuda_dirs: Option<(PathBuf, PathBuf)>,
}

pub fn build_dir(target: &Path, gpu: bool) -> PathBuf {
    let name = if gpu {
        format!("{GPU_PACKAGE}-{ORT_VERSION}")
    } else {
        format!("{CPU_PACKAGE}-{ORT_VERSION}")
    };
    target.join("ort").join(name)
}

fn cuda_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CUDA_LIB_SUBDIR), dir.join(CUDNN_LIB_SUBDIR))
}

fn manual_hint(gpu: bool, dest: &Path) -> String {
    if gpu {
        format!(
            "To supply it by hand: take libonnxruntime.so.1.31.1 and libonnxruntime_providers_*.so from \
             onnxruntime/capi/ in the onnxruntime-gpu {ORT_VERSION} wheel (https://pypi.org/project/onnxruntime-gpu/#files) \
             or from an ONNX Runtime >= 1.31 GPU release (https://github.com/microsoft/onnxruntime/releases), \
             put them in one folder and set ORT_DYLIB_PATH to the library there (or use {}); \
             the CUDA 13 and cuDNN 9 libraries must then be on LD_LIBRARY_PATH or unpacked under {}/{{{CUDA_LIB_SUBDIR},{CUDNN_LIB_SUBDIR}}}",
            dest.display(),
            dest.display()
        )
    } else {
        format!(
            "To supply it by hand: take onnxruntime/capi/{LIBRARY_FILE} from the onnxruntime {ORT_VERSION} wheel \
             (https://pypi.org/project/onnxruntime/#files, a zip file) or lib/libonnxruntime.so.* from an \
             ONNX Runtime >= 1.31 release (https://github.com/microsoft/onnxruntime/releases), and set \
             ORT_DYLIB_PATH to it (or put it at {})",
            dest.join(LIBRARY_FILE).display()
        )
    }
}

/// Makes the runtime available and returns where it is. Idempotent: a library named by
/// ORT_DYLIB_PATH, or one already provisioned, is used as is.
pub fn provision(target: &Path, gpu: bool) -> Result<Provisioned> {
    if let Some(env) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&env);
        let dir = path.parent().unwrap_or(Path::new("."));
        if !path.is_file() {
            eprintln!(
                "warning: ORT_DYLIB_PATH={} does not exist; provisioning into {}",
                path.display(),
                build_dir(target, gpu).display()
            );
        } else if gpu && !dir.join("libonnxruntime_providers_cuda.so").is_file() {
            eprintln!(
                "note: ORT_DYLIB_PATH={} is not a GPU build (no libonnxruntime_providers_cuda.so beside it); \
                 provisioning the GPU build",
                path.display()
            );
        } else {
            let cuda = cuda_dirs(dir);
            let cuda_dirs = (gpu && cuda.0.is_dir()).then_some(cuda);
            return Ok(Provisioned {
                library: path,
                cuda_dirs,
            });
        }
    }

    let dest = build_dir(target, gpu);
    let library = dest.join(LIBRARY_FILE);
    if is_complete(&dest, gpu) {
        match elf::check_onnxruntime(&library) {
            Ok(()) => return Ok(provisioned(&dest, gpu)),
            Err(e) => eprintln!("warning: {e:#}; provisioning it again"),
        }
    }

    let downloads = target.join("ort").join("download");
    let staging = target.join("ort").join(format!(
        ".staging-{}-{}",
        dest.file_name().and_then(OsStr::to_str).unwrap_or("ort"),
        std::process::id()
    ));
    let result = fill(&staging, &downloads, gpu);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context(format!(
            "cannot provision ONNX Runtime {ORT_VERSION}{} into {}. {}",
            if gpu { " (GPU)" } else { "" },
            dest.display(),
            manual_hint(gpu, &dest)
        )));
    }
    // Publish complete folders only: an interrupted run never looks provisioned.
    if dest.exists() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("cannot replace the incomplete {}", dest.display()))?;
    }
    std::fs::rename(&staging, &dest)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dest.display()))?;
    Ok(provisioned(&dest, gpu))
}

fn provisioned(dest: &Path, gpu: bool) -> Provisioned {
    Provisioned {
        library: dest.join(LIBRARY_FILE),
        cuda_dirs: gpu.then(|| cuda_dirs(dest)),
    }
}

fn missing_files(dest: &Path, gpu: bool) -> Vec<PathBuf> {
    let mut want = vec![dest.join(LIBRARY_FILE)];
    if gpu {
        let (cuda, cudnn) = cuda_dirs(dest);
        want.extend(GPU_PROVIDER_FILES.iter().map(|f| dest.join(f)));
        want.extend(CUDA_LIBS.iter().map(|f| cuda.join(f)));
        want.extend(CUDNN_LIBS.iter().map(|f| cudnn.join(f)));
    }
    want.into_iter().filter(|p| !p.is_file()).collect()
}

fn is_complete(dest: &Path, gpu: bool) -> bool {
    missing_files(dest, gpu).is_empty()
}

/// Downloads and unpacks everything into `staging`, laid out as the final folder.
fn fill(staging: &Path, downloads: &Path, gpu: bool) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging)?;
    }
    std::fs::create_dir_all(staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let package = if gpu { GPU_PACKAGE } else { CPU_PACKAGE };
    let wheel = download_wheel(package, ORT_VERSION, downloads)?;
    let mut members = vec![LIBRARY_IN_WHEEL.to_string()];
    if gpu {
        members.extend(
            GPU_PROVIDER_FILES
                .iter()
                .map(|f| format!("onnxruntime/capi/{f}")),
        );
    }
    extract(&wheel, &members, staging)?;
    let capi = staging.join("onnxruntime/capi");
    for m in &members {
        let file = Path::new(m).file_name().expect("member has a file name");
        std::fs::rename(capi.join(file), staging.join(file))
            .with_context(|| format!("{} has no {m}", wheel.display()))?;
    }
    std::fs::remove_dir_all(staging.join("onnxruntime"))?;
    elf::check_onnxruntime(&staging.join(LIBRARY_FILE))?;

    if gpu {
        for (name, version) in CUDA_WHEELS {
            let wheel = download_wheel(name, version, &downloads.join("cuda"))?;
            extract(&wheel, &["nvidia/*/lib/*".to_string()], staging)?;
        }
        let missing = missing_files(staging, true);
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .map(|p| p.strip_prefix(staging).unwrap_or(p).display().to_string())
                .collect();
            bail!(
                "the CUDA wheels ({}) did not provide: {}",
                CUDA_WHEELS
                    .iter()
                    .map(|(n, v)| format!("{n}=={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                names.join(", ")
            );
        }
    }
    Ok(())
}

/// Wheel file names use the normalized project name: `onnxruntime_gpu-1.31.1-cp311-...whl`.
fn find_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Returns the wheel of `package==version`, downloading it with pip unless already there.
pub fn download_wheel(package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    if let Some(w) = find_wheel(dir, package, version) {
        return Ok(w);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pip_ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !pip_ok {
        bail!(
            "cannot download the {package} {version} wheel: `python3 -m pip` is not available \
             (install python3 with pip, e.g. `apt-get install python3-pip`)"
        );
    }
    let spec = format!("{package}=={version}");
    eprintln!("downloading {spec} into {}", dir.display());
    // pip's progress goes to stderr so that stdout carries only the result.
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg(&spec)
        .arg("-d")
        .arg(dir)
        .stdout(std::io::stderr())
        .status()
        .context("cannot run `python3 -m pip download`")?;
    if !status.success() {
        bail!(
            "`python3 -m pip download --no-deps --only-binary=:all: {spec}` failed ({status}); \
             check network access to PyPI (or a pip index/mirror configured in pip.conf)"
        );
    }
    find_wheel(dir, package, version).with_context(|| {
        format!(
            "pip reported success but no {package} {version} wheel is in {}",
            dir.display()
        )
    })
}

fn tool_runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const PY_UNZIP: &str = "import fnmatch, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if any(fnmatch.fnmatchcase(n, p) for p in sys.argv[3:])]
if not names:
    sys.exit('no file in the archive matches ' + ' '.join(sys.argv[3:]))
for n in names:
    z.extract(n, sys.argv[2])";

/// Extracts the members matching `patterns` (paths kept) from a wheel (a zip file), with
/// `unzip` or else python3's zipfile.
pub fn extract(wheel: &Path, patterns: &[String], dest: &Path) -> Result<()> {
    let status = if tool_runs("unzip", "-v") {
        Command::new("unzip")
            .args(["-o", "-q"])
            .arg(wheel)
            .args(patterns)
            .arg("-d")
            .arg(dest)
            .stdout(std::io::stderr())
            .status()
            .context("cannot run unzip")?
    } else if tool_runs("python3", "--version") {
        Command::new("python3")
            .args(["-c", PY_UNZIP])
            .arg(wheel)
            .arg(dest)
            .args(patterns)
            .stdout(std::io::stderr())
            .status()
            .context("cannot run python3")?
    } else {
        bail!(
            "cannot unpack {}: neither `unzip` nor `python3` is installed (install either)",
            wheel.display()
        );
    };
    if !status.success() {
        bail!(
            "unpacking {} from {} failed ({status}); the file may be damaged: delete it and retry",
            patterns.join(" "),
            wheel.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_wheels_by_normalized_name() {
        let dir = scratch("wheels");
        for f in [
            "onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "onnxruntime-1.31.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let cpu = find_wheel(&dir, "onnxruntime", "1.31.1").unwrap();
        assert!(cpu.ends_with("onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"));
        let gpu = find_wheel(&dir, "onnxruntime-gpu", "1.31.1").unwrap();
        assert!(gpu.to_str().unwrap().contains("onnxruntime_gpu-1.31.1-"));
        assert!(find_wheel(&dir, "nvidia-cublas", "13.1.0.3").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completeness_depends_on_the_build() {
        let dir = scratch("complete");
        assert!(!is_complete(&dir, false));
        std::fs::write(dir.join(LIBRARY_FILE), b"").unwrap();
        assert!(is_complete(&dir, false));
        assert!(!is_complete(&dir, true));
        let missing = missing_files(&dir, true);
        assert!(
            missing
                .iter()
                .any(|p| p.ends_with("nvidia/cu13/lib/libcublas.so.13"))
        );
        assert!(
            missing
                .iter()
                .any(|p| p.ends_with("nvidia/cudnn/lib/libcudnn.so.9"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_gpu_hint_says_how_to_supply_the_libraries_by_hand() {
        let hint = manual_hint(true, Path::new("/t/ort/onnxruntime-gpu-1.31.1"));
        assert!(hint.contains("ORT_DYLIB_PATH"));
        assert!(hint.contains("nvidia/cu13/lib"));
        let hint = manual_hint(false, Path::new("/t/ort/onnxruntime-1.31.1"));
        assert!(hint.contains("/t/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
    }
}
