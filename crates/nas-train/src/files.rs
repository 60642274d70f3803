//! Writing files so that a failure never leaves a truncated one: the bytes go to a temporary
//! file in the target's folder, are flushed to disk, then renamed over the target (a rename
//! within one folder is atomic). A full disk or a killed process leaves the old file intact.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, creating the parent folders. On error the old file
/// (if any) is untouched and no temporary file is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // The temporary file may not exist (creating it failed); nothing else to do then.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dir/name` -> `dir/.name.tmp<pid>`: hidden, in the same folder (same file system), and
/// distinct per process.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/model.onnx");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(names(&tmp.path().join("sub")), ["model.onnx"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("models");
        let path = dir.join("model.onnx");
        write_atomic(&path, b"old").unwrap();
        // A read-only folder: the temporary file cannot be created.
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&dir, perms.clone()).unwrap();
        let denied = std::fs::File::create(dir.join("probe")).is_err();
        let result = write_atomic(&path, b"new");
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&dir, perms).unwrap();
        if denied {
            // Root ignores folder permissions; the check only holds for other users.
            assert!(result.is_err());
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
        }
        let _ = std::fs::remove_file(dir.join("probe"));
        assert_eq!(names(&dir), ["model.onnx"]);
    }

    #[test]
    fn a_parent_that_is_a_file_is_an_error_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain");
        std::fs::write(&file, b"keep").unwrap();
        let err = write_atomic(&file.join("model.onnx"), b"x").unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        assert_eq!(names(tmp.path()), ["plain"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_and_keeps_the_old_target() {
        // The target is a non-empty folder: the temporary file is written, the rename fails.
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("model.onnx");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"old").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"old");
        assert_eq!(names(tmp.path()), ["model.onnx"]);
    }
}
