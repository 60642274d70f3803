//! The file layout of checkpoints, all integers little-endian:
//! 8-byte magic | u32 version | u64 header length | header (JSON) | tensor data (f32 LE, in
//! the header's tensor order, each `product(shape)` values). Written to a temporary file and
//! renamed into place, so readers never see a partial file.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// A tensor's name and shape, as a header lists them.
#[derive(Serialize, Deserialize)]
pub(crate) struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
}

/// The header's list of `tensors`.
pub(crate) fn entries(tensors: &[(String, ArrayD<f32>)]) -> Vec<TensorEntry> {
    tensors
        .iter()
        .map(|(name, t)| TensorEntry {
            name: name.clone(),
            shape: t.shape().to_vec(),
        })
        .collect()
}

/// Named tensors in file order.
pub(crate) type Tensors = Vec<(String, ArrayD<f32>)>;

/// Writes `header` (which lists the tensors' names and shapes) and the tensors' data.
pub(crate) fn write(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    header: &impl Serialize,
    tensors: &[(String, ArrayD<f32>)],
) -> Result<(), TrainError> {
    let write_err = |reason: String| TrainError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let json = serde_json::to_vec(header).map_err(|e| write_err(e.to_string()))?;
    let values: usize = tensors.iter().map(|(_, t)| t.len()).sum();
    let mut bytes = Vec::with_capacity(20 + json.len() + 4 * values);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&json);
    for (_, t) in tensors {
        for v in t.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    crate::files::write_atomic(path, &bytes).map_err(|e| write_err(e.to_string()))
}

/// Reads a file written by [`write`]: its header and the tensors `entries(header)` lists.
/// `what` names the kind of file in messages ("a training checkpoint").
pub(crate) fn read<H: DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    what: &str,
    entries: impl Fn(&H) -> &[TensorEntry],
) -> Result<(H, Tensors), TrainError> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() < 20 || &bytes[..8] != magic {
        return Err(bad(format!(
            "is not {what} (it does not start with {})",
            String::from_utf8_lossy(magic)
        )));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(bad(format!(
            "has format version {found}; this build reads version {version}; \
             retrain or use the matching build"
        )));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(20))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "is truncated: the header claims {len} bytes, the file has {}",
                bytes.len()
            ))
        })?;
    let header: H = serde_json::from_slice(&bytes[20..end])
        .map_err(|e| bad(format!("has a broken header: {e}")))?;
    let mut at = end;
    let mut tensors = Vec::new();
    for TensorEntry { name, shape } in entries(&header) {
        let n: usize = shape.iter().product();
        let stop = n
            .checked_mul(4)
            .and_then(|b| at.checked_add(b))
            .filter(|&s| s <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "is truncated in tensor `{name}` (byte {at} of {})",
                    bytes.len()
                ))
            })?;
        let data: Vec<f32> = bytes[at..stop]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let t = ArrayD::from_shape_vec(IxDyn(shape), data).expect("length checked");
        tensors.push((name.clone(), t));
        at = stop;
    }
    if at != bytes.len() {
        return Err(bad(format!(
            "has {} unexpected bytes after the last tensor",
            bytes.len() - at
        )));
    }
    Ok((header, tensors))
}
