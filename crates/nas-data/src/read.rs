//! Reading whole files, transparently gunzipping them.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Location};

/// The bytes of a file, decompressed when it starts with the gzip magic `1f 8b`.
pub(crate) struct FileBytes {
    pub bytes: Vec<u8>,
    pub gzipped: bool,
}

impl FileBytes {
    /// The location of a byte offset in `bytes`, telling whether it counts decompressed bytes.
    pub fn at(&self, offset: usize) -> Location {
        if self.gzipped {
            Location::DecompressedByte(offset as u64)
        } else {
            Location::Byte(offset as u64)
        }
    }

    pub fn record(&self, index: usize, offset: usize) -> Location {
        Location::Record {
            index: index as u64,
            byte: offset as u64,
            decompressed: self.gzipped,
        }
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Reads `path`, gunzipping it when its first two bytes are the gzip magic number.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<FileBytes, DataError> {
    let raw = read_file(path)?;
    gunzip_if_gz(raw, path)
}

pub(crate) fn gunzip_if_gz(raw: Vec<u8>, path: &Path) -> Result<FileBytes, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(FileBytes {
            bytes: raw,
            gzipped: false,
        });
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    let mut dec = MultiGzDecoder::new(raw.as_slice());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DataError::corrupt(
                    path,
                    Location::DecompressedByte(out.len() as u64),
                    format!("the gzip stream breaks off ({e})"),
                    "The file is truncated or damaged; download or copy it again",
                ));
            }
        }
    }
    Ok(FileBytes {
        bytes: out,
        gzipped: true,
    })
}
