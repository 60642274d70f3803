//! Writers of the real on-disk formats, for round-trip tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// IDX bytes: magic 00 00 08 NDIMS, big-endian u32 sizes, then the values.
pub fn idx_bytes(dims: &[u32], values: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(values);
    b
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A pixel value that varies with sample, channel and position.
pub fn pixel(n: usize, i: usize) -> u8 {
    ((n * 37 + i * 11) % 256) as u8
}

/// CIFAR records for `labels` (CIFAR-100: `(coarse, fine)` pairs with `fine` given as label).
pub fn cifar_bytes(labels: &[u8], coarse: Option<&[u8]>, first: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, &l) in labels.iter().enumerate() {
        if let Some(c) = coarse {
            b.push(c[k]);
        }
        b.push(l);
        b.extend((0..3072).map(|i| pixel(first + k, i)));
    }
    b
}

/// `.npy` version 1.0 bytes: the header dict padded with spaces to a multiple of 64 bytes.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_s = match shape {
        [one] => format!("({one},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let fo = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fo}, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

pub fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn f64_le(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn i64_le(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An `.npz`: members `KEY.npy`, deflated when `compress`.
pub fn npz_bytes(members: &[(&str, Vec<u8>)], compress: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if compress {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (key, bytes) in members {
        w.start_file(format!("{key}.npy"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}
