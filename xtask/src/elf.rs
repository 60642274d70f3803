//! Just enough ELF reading to check that a shared library exports a symbol, with no tool
//! (`nm`, `readelf`) required on the machine.

use std::path::Path;

use anyhow::{Context, Result, bail};

const SHT_DYNSYM: u32 = 11;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// True when `bytes` (a 64-bit little-endian ELF file) defines dynamic symbol `name`.
pub fn exports(bytes: &[u8], name: &str) -> Result<bool, String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "truncated or malformed ELF headers".to_string();
    let shoff = u64_at(bytes, 0x28).ok_or_else(bad)?;
    let shentsize = u16_at(bytes, 0x3A).ok_or_else(bad)? as usize;
    let shnum = u16_at(bytes, 0x3C).ok_or_else(bad)? as usize;
    if shoff == 0 || shnum == 0 || shentsize < 64 {
        return Err("the library has no section headers to read symbols from".into());
    }
    let section = |i: usize| -> Option<(u32, usize, usize, u32, usize)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(bytes, at + 4)?,  // sh_type
            u64_at(bytes, at + 24)?, // sh_offset
            u64_at(bytes, at + 32)?, // sh_size
            u32_at(bytes, at + 40)?, // sh_link
            u64_at(bytes, at + 56)?, // sh_entsize
        ))
    };
    for i in 0..shnum {
        let (kind, off, size, link, entsize) = section(i).ok_or_else(bad)?;
        if kind != SHT_DYNSYM {
            continue;
        }
        let (_, str_off, str_size, _, _) = section(link as usize).ok_or_else(bad)?;
        let strtab = bytes
            .get(str_off..str_off.saturating_add(str_size))
            .ok_or_else(bad)?;
        let entsize = if entsize == 0 { 24 } else { entsize };
        for s in 0..size / entsize {
            let at = off + s * entsize;
            let st_name = u32_at(bytes, at).ok_or_else(bad)? as usize;
            let st_shndx = u16_at(bytes, at + 6).ok_or_else(bad)?;
            let Some(rest) = strtab.get(st_name..) else {
                continue;
            };
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            // An undefined symbol (section 0) is an import, not an export.
            if &rest[..end] == name.as_bytes() && st_shndx != 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Fails unless `path` is an ONNX Runtime library (it exports `OrtGetApiBase`).
pub fn check_onnxruntime(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match exports(&bytes, "OrtGetApiBase") {
        Ok(true) => Ok(()),
        Ok(false) => bail!(
            "{} does not export `OrtGetApiBase`, so it is not an ONNX Runtime library",
            path.display()
        ),
        Err(e) => bail!("{} is not a usable shared library: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_not_exports() {
        // The test binary imports `malloc` from libc: present in .dynsym, but undefined.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(exports(&exe, "malloc"), Ok(false));
    }

    #[test]
    fn rejects_non_elf_files() {
        assert!(exports(b"hello", "x").unwrap_err().contains("not an ELF"));
        assert!(
            exports(b"\x7fELF\x01\x01", "x")
                .unwrap_err()
                .contains("64-bit")
        );
        assert!(exports(b"\x7fELF\x02\x01", "x").is_err());
    }

    #[test]
    fn finds_ort_get_api_base_in_the_provisioned_library() {
        let lib = match std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
            Some(p) => std::path::PathBuf::from(p),
            None => crate::ort::build_dir(&crate::target_dir(&crate::repo_root()), false)
                .join(crate::ort::LIBRARY_FILE),
        };
        assert!(
            lib.is_file(),
            "{} is missing: run `cargo xtask ort`",
            lib.display()
        );
        check_onnxruntime(&lib).unwrap();
        let bytes = std::fs::read(&lib).unwrap();
        assert!(!exports(&bytes, "OrtNotAFunction").unwrap());
    }
}
