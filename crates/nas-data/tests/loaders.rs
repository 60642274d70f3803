//! Loaders against files written in the real binary formats, and their errors on broken files.

mod common;

use std::path::Path;

use common::*;
use nas_data::*;

fn err_text<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------- IDX

fn idx_pair(
    dir: &Path,
    n: usize,
    h: usize,
    w: usize,
    labels: &[u8],
    gz: bool,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let values: Vec<u8> = (0..n)
        .flat_map(|k| (0..h * w).map(move |i| pixel(k, i)))
        .collect();
    let img = idx_bytes(&[n as u32, h as u32, w as u32], &values);
    let lab = idx_bytes(&[labels.len() as u32], labels);
    let (img, lab) = if gz {
        (gzip(&img), gzip(&lab))
    } else {
        (img, lab)
    };
    let sfx = if gz { ".gz" } else { "" };
    (
        write(dir, &format!("train-images-idx3-ubyte{sfx}"), &img),
        write(dir, &format!("train-labels-idx1-ubyte{sfx}"), &lab),
    )
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let labels = [3u8, 0, 1, 4, 1];
        let (i, l) = idx_pair(dir.path(), 5, 3, 4, &labels, gz);
        let d = load_idx(&i, &l, None, "mnist").unwrap();
        assert_eq!(d.images.dim(), (5, 1, 3, 4));
        assert_eq!(d.input_shape(), [1, 3, 4]);
        assert_eq!(d.kind, DataKind::Image);
        assert_eq!(d.labels, vec![3, 0, 1, 4, 1]);
        assert_eq!(d.classes, 5, "inferred as largest label + 1");
        for k in 0..5 {
            for y in 0..3 {
                for x in 0..4 {
                    assert_eq!(d.images[[k, 0, y, x]], f32::from(pixel(k, y * 4 + x)));
                }
            }
        }
        let d10 = load_idx(&i, &l, Some(10), "mnist").unwrap();
        assert_eq!(d10.classes, 10);
    }
}

#[test]
fn idx_gzip_detected_by_magic_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let img = gzip(&idx_bytes(&[1, 2, 2], &[1, 2, 3, 4]));
    let i = write(dir.path(), "images.bin", &img);
    let l = write(dir.path(), "labels.bin", &idx_bytes(&[1], &[0]));
    let d = load_idx(&i, &l, None, "x").unwrap();
    assert_eq!(d.images.as_slice().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn idx_label_out_of_range_names_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = idx_pair(dir.path(), 3, 2, 2, &[0, 1, 7], false);
    let e = load_idx(&i, &l, Some(5), "x").unwrap_err();
    assert!(matches!(
        e,
        DataError::LabelOutOfRange {
            label: 7,
            classes: 5,
            ..
        }
    ));
    let t = e.to_string();
    assert!(t.contains("train-labels-idx1-ubyte"), "{t}");
    assert!(t.contains("record 2 (byte offset 10)"), "{t}");
    assert!(t.contains("label 7") && t.contains("classes"), "{t}");

    let (i, l) = idx_pair(dir.path(), 3, 2, 2, &[0, 1, 7], true);
    let t = err_text(load_idx(&i, &l, Some(5), "x"));
    assert!(t.contains("train-labels-idx1-ubyte.gz"), "{t}");
    assert!(
        t.contains("record 2 (byte offset 10 of the decompressed data)"),
        "{t}"
    );
}

#[test]
fn idx_stray_label_byte_is_refused_without_a_class_count() {
    // Digits 0..=9 and one byte of 255: counting classes up to it would make 256 classes.
    let dir = tempfile::tempdir().unwrap();
    let mut labels: Vec<u8> = (0..30).map(|k| (k % 10) as u8).collect();
    labels[17] = 255;
    for gz in [false, true] {
        let (i, l) = idx_pair(dir.path(), 30, 2, 2, &labels, gz);
        let t = err_text(load_idx(&i, &l, None, "x"));
        assert!(t.contains("train-labels-idx1-ubyte"), "{t}");
        assert!(t.contains("record 17 (byte offset 25"), "{t}");
        assert!(
            t.contains(
                "label 255 would make 256 classes, but only 11 distinct labels occur (0..=9, 255)"
            ),
            "{t}"
        );
        assert!(t.contains("set `classes` in [data]"), "{t}");
        // A declared class count decides: 256 admits the byte, 10 refuses it as before.
        assert_eq!(load_idx(&i, &l, Some(256), "x").unwrap().classes, 256);
        assert!(matches!(
            load_idx(&i, &l, Some(10), "x"),
            Err(DataError::LabelOutOfRange {
                label: 255,
                classes: 10,
                ..
            })
        ));
    }
    // Classes missing from a small file are fine while most classes occur.
    let (i, l) = idx_pair(dir.path(), 4, 2, 2, &[0, 5, 2, 3], false);
    assert_eq!(load_idx(&i, &l, None, "x").unwrap().classes, 6);
}

#[test]
fn idx_truncated_mid_image_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = idx_pair(dir.path(), 5, 4, 4, &[0, 1, 2, 3, 4], false);
    let full = std::fs::read(&i).unwrap();
    assert_eq!(full.len(), 16 + 5 * 16);
    std::fs::write(&i, &full[..16 + 2 * 16 + 5]).unwrap();
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(t.contains("train-images-idx3-ubyte"), "{t}");
    assert!(t.contains("record 2 (byte offset 48)"), "{t}");
    assert!(t.contains("truncated"), "{t}");
}

#[test]
fn idx_truncated_inside_header() {
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = idx_pair(dir.path(), 2, 2, 2, &[0, 1], false);
    let full = std::fs::read(&i).unwrap();
    std::fs::write(&i, &full[..10]).unwrap();
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(t.contains("byte offset 10") && t.contains("header"), "{t}");
}

#[test]
fn idx_truncated_gzip_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = idx_pair(dir.path(), 50, 8, 8, &[1; 50], true);
    let full = std::fs::read(&i).unwrap();
    std::fs::write(&i, &full[..full.len() / 2]).unwrap();
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(t.contains("train-images-idx3-ubyte.gz"), "{t}");
    assert!(t.contains("gzip") && t.contains("decompressed"), "{t}");
}

#[test]
fn idx_bad_magic_and_swapped_files() {
    let dir = tempfile::tempdir().unwrap();
    let (i, l) = idx_pair(dir.path(), 2, 2, 2, &[0, 1], false);
    let t = err_text(load_idx(&l, &i, None, "x"));
    assert!(t.contains("bad magic number 0x00000801"), "{t}");
    assert!(t.contains("byte offset 0"), "{t}");
    assert!(t.contains("swapped"), "{t}");

    let mut bytes = std::fs::read(&i).unwrap();
    bytes[2] = 0x0D; // float32 element type
    std::fs::write(&i, &bytes).unwrap();
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(
        t.contains("0x00000d03") && t.contains("not supported"),
        "{t}"
    );

    let junk = write(dir.path(), "junk", b"hello world, not idx");
    let t = err_text(load_idx(&junk, &l, None, "x"));
    assert!(t.contains("junk") && t.contains("bad magic"), "{t}");
}

#[test]
fn idx_count_mismatch_and_trailing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (i, _) = idx_pair(dir.path(), 3, 2, 2, &[0, 1, 2], false);
    let l = write(dir.path(), "short-labels", &idx_bytes(&[2], &[0, 1]));
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(
        t.contains("3 images") && t.contains("2 labels") && t.contains("short-labels"),
        "{t}"
    );

    let mut bytes = std::fs::read(&i).unwrap();
    bytes.extend_from_slice(&[9, 9]);
    std::fs::write(&i, &bytes).unwrap();
    let l = write(dir.path(), "labels", &idx_bytes(&[3], &[0, 1, 2]));
    let t = err_text(load_idx(&i, &l, None, "x"));
    assert!(
        t.contains("2 unexpected bytes") && t.contains("byte offset 28"),
        "{t}"
    );
}

// ---------------------------------------------------------------- CIFAR

fn cifar10_dir(dir: &Path) {
    for b in 0..5 {
        let labels = [(2 * b) as u8, (2 * b + 1) as u8];
        write(
            dir,
            &format!("data_batch_{}.bin", b + 1),
            &cifar_bytes(&labels, None, 2 * b),
        );
    }
    write(dir, "test_batch.bin", &cifar_bytes(&[9, 0, 5], None, 100));
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write(dir, "batches.meta.txt", names.as_bytes());
}

#[test]
fn cifar10_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    cifar10_dir(dir.path());
    let (train, test) = load_cifar(dir.path(), CifarKind::Cifar10).unwrap();
    assert_eq!(train.images.dim(), (10, 3, 32, 32));
    assert_eq!(train.labels, (0..10).collect::<Vec<u32>>());
    assert_eq!(test.labels, vec![9, 0, 5]);
    assert_eq!(train.classes, 10);
    for (d, first) in [(&train, 0), (&test, 100)] {
        for k in 0..d.len() {
            for c in 0..3 {
                for (y, x) in [(0, 0), (5, 17), (31, 31)] {
                    let want = pixel(first + k, c * 1024 + y * 32 + x);
                    assert_eq!(d.images[[k, c, y, x]], f32::from(want));
                }
            }
        }
    }
    let names = train.class_names.as_ref().unwrap();
    assert_eq!(names[0], "airplane");
    assert_eq!(names[9], "truck");
}

#[test]
fn cifar10_in_the_unpacked_archive_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&sub).unwrap();
    cifar10_dir(&sub);
    let (train, _) = load_cifar(dir.path(), CifarKind::Cifar10).unwrap();
    assert_eq!(train.len(), 10);
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.bin",
        &cifar_bytes(&[99, 42, 7], Some(&[19, 3, 0]), 0),
    );
    write(dir.path(), "test.bin", &cifar_bytes(&[11], Some(&[5]), 50));
    let (train, test) = load_cifar(dir.path(), CifarKind::Cifar100).unwrap();
    assert_eq!(train.labels, vec![99, 42, 7]);
    assert_eq!(test.labels, vec![11]);
    assert_eq!(train.classes, 100);
    assert_eq!(
        train.images[[1, 2, 3, 4]],
        f32::from(pixel(1, 2 * 1024 + 3 * 32 + 4))
    );
    assert_eq!(test.images[[0, 0, 0, 1]], f32::from(pixel(50, 1)));
}

#[test]
fn cifar_truncated_batch_names_file_and_incomplete_record() {
    let dir = tempfile::tempdir().unwrap();
    cifar10_dir(dir.path());
    let p = dir.path().join("data_batch_3.bin");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..3073 + 1000]).unwrap();
    let t = err_text(load_cifar(dir.path(), CifarKind::Cifar10));
    assert!(t.contains("data_batch_3.bin"), "{t}");
    assert!(t.contains("record 1 (byte offset 3073)"), "{t}");
    assert!(t.contains("not a multiple of the 3073-byte"), "{t}");
}

#[test]
fn cifar_label_out_of_range_and_wrong_variant() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "b.bin", &cifar_bytes(&[3, 10], None, 0));
    let t = err_text(load_cifar_file(&p, CifarKind::Cifar10));
    assert!(
        t.contains("b.bin") && t.contains("record 1 (byte offset 3073)"),
        "{t}"
    );
    assert!(t.contains("label 10 is out of range for 10 classes"), "{t}");

    // Two CIFAR-100 records read as CIFAR-10: the size gives it away.
    let p = write(
        dir.path(),
        "c100.bin",
        &cifar_bytes(&[1, 2], Some(&[0, 0]), 0),
    );
    let t = err_text(load_cifar_file(&p, CifarKind::Cifar10));
    assert!(t.contains("cifar100"), "{t}");
}

#[test]
fn cifar_missing_batch() {
    let dir = tempfile::tempdir().unwrap();
    cifar10_dir(dir.path());
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    let e = load_cifar(dir.path(), CifarKind::Cifar10).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }));
    assert!(e.to_string().contains("data_batch_4.bin"), "{e}");
}

// ---------------------------------------------------------------- NPY / NPZ

fn nhwc_u8(n: usize, h: usize, w: usize, c: usize) -> Vec<u8> {
    (0..n * h * w * c).map(|i| (i % 251) as u8).collect()
}

#[test]
fn npy_u8_nhwc_becomes_nchw() {
    let dir = tempfile::tempdir().unwrap();
    let (n, h, w, c) = (4, 5, 6, 3);
    let x = write(
        dir.path(),
        "x.npy",
        &npy_bytes("|u1", false, &[n, h, w, c], &nhwc_u8(n, h, w, c)),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &npy_bytes("<i8", false, &[n], &i64_le(&[1, 0, 2, 1])),
    );
    let d = load_npy(&x, &y, Layout::Auto, None, "t").unwrap();
    assert_eq!(d.images.dim(), (4, 3, 5, 6));
    assert_eq!(d.labels, vec![1, 0, 2, 1]);
    assert_eq!(d.classes, 3);
    for k in 0..n {
        for ch in 0..c {
            for yy in 0..h {
                for xx in 0..w {
                    let flat = ((k * h + yy) * w + xx) * c + ch;
                    assert_eq!(d.images[[k, ch, yy, xx]], (flat % 251) as f32);
                }
            }
        }
    }
}

#[test]
fn npy_float_layouts_and_tabular() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| i as f32 * 0.25).collect();
    let x = write(
        dir.path(),
        "x.npy",
        &npy_bytes("<f4", false, &[2, 3, 4, 4], &f32_le(&vals)),
    );
    let y = write(
        dir.path(),
        "y.npy",
        &npy_bytes("<i8", false, &[2, 1], &i64_le(&[0, 1])),
    );
    let d = load_npy(&x, &y, Layout::Auto, None, "t").unwrap();
    assert_eq!(d.images.dim(), (2, 3, 4, 4), "axis 1 of 3 -> NCHW");
    assert_eq!(d.images.as_slice().unwrap(), vals.as_slice());

    let v64: Vec<f64> = (0..3 * 2 * 2).map(f64::from).collect();
    let x = write(
        dir.path(),
        "x3.npy",
        &npy_bytes("<f8", false, &[3, 2, 2], &f64_le(&v64)),
    );
    let y = write(
        dir.path(),
        "y3.npy",
        &npy_bytes("<f8", false, &[3], &f64_le(&[2.0, 0.0, 1.0])),
    );
    let d = load_npy(&x, &y, Layout::Auto, None, "t").unwrap();
    assert_eq!(d.images.dim(), (3, 1, 2, 2), "rank 3 -> NHW");
    assert_eq!(d.labels, vec![2, 0, 1]);

    let x = write(
        dir.path(),
        "x2.npy",
        &npy_bytes("<f8", false, &[3, 4], &f64_le(&v64)),
    );
    let d = load_npy(&x, &y, Layout::Auto, None, "t").unwrap();
    assert_eq!(d.kind, DataKind::Tabular);
    assert_eq!(d.input_shape(), [4, 1, 1]);
    assert_eq!(d.images[[2, 3, 0, 0]], 11.0);

    // [N, 3, 4, 3] is ambiguous; an explicit layout settles it.
    let amb: Vec<f32> = (0..2 * 3 * 4 * 3).map(|i| i as f32).collect();
    let x = write(
        dir.path(),
        "amb.npy",
        &npy_bytes("<f4", false, &[2, 3, 4, 3], &f32_le(&amb)),
    );
    let y2 = write(
        dir.path(),
        "y2.npy",
        &npy_bytes("|u1", false, &[2], &[0, 1]),
    );
    let t = err_text(load_npy(&x, &y2, Layout::Auto, None, "t"));
    assert!(t.contains("amb.npy") && t.contains("layout"), "{t}");
    let d = load_npy(&x, &y2, Layout::Nhwc, None, "t").unwrap();
    assert_eq!(d.images.dim(), (2, 3, 3, 4));
    assert_eq!(d.images[[1, 2, 1, 3]], amb[((3 + 1) * 4 + 3) * 3 + 2]);
    let d = load_npy(&x, &y2, Layout::Nchw, None, "t").unwrap();
    assert_eq!(d.images.dim(), (2, 3, 4, 3));
}

#[test]
fn npy_fortran_order_and_big_endian() {
    let dir = tempfile::tempdir().unwrap();
    // Logical [2, 3] = [[0, 1, 2], [3, 4, 5]] stored column-major: 0 3 1 4 2 5.
    let x = write(
        dir.path(),
        "x.npy",
        &npy_bytes("<f4", true, &[2, 3], &f32_le(&[0., 3., 1., 4., 2., 5.])),
    );
    let be: Vec<u8> = [1i32, 0].iter().flat_map(|v| v.to_be_bytes()).collect();
    let y = write(dir.path(), "y.npy", &npy_bytes(">i4", false, &[2], &be));
    let d = load_npy(&x, &y, Layout::Auto, None, "t").unwrap();
    assert_eq!(d.images.as_slice().unwrap(), &[0., 1., 2., 3., 4., 5.]);
    assert_eq!(d.labels, vec![1, 0]);
}

#[test]
fn npy_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let y = write(
        dir.path(),
        "y.npy",
        &npy_bytes("<i8", false, &[3], &i64_le(&[0, 1, 2])),
    );
    let full = npy_bytes("<f4", false, &[3, 2, 2], &f32_le(&[0.5; 12]));
    let x_start = full.len() - 48;
    assert_eq!(x_start % 64, 0, "header padded to 64 bytes");
    let y_start = std::fs::metadata(&y).unwrap().len() as usize - 24;
    let x = write(dir.path(), "x.npy", &full[..x_start + 4 * 5 + 2]);
    let t = err_text(load_npy(&x, &y, Layout::Auto, None, "t"));
    assert!(
        t.contains("x.npy") && t.contains(&format!("byte offset {}", x_start + 20)),
        "{t}"
    );
    assert!(t.contains("element 5") && t.contains("truncated"), "{t}");

    let mut bad = full.clone();
    bad[1] = b'X';
    let x = write(dir.path(), "x.npy", &bad);
    let t = err_text(load_npy(&x, &y, Layout::Auto, None, "t"));
    assert!(
        t.contains("bad magic") && t.contains("byte offset 0"),
        "{t}"
    );

    let x = write(dir.path(), "x.npy", &full);
    let yb = write(
        dir.path(),
        "yb.npy",
        &npy_bytes("<i8", false, &[3], &i64_le(&[0, 12, 2])),
    );
    let t = err_text(load_npy(&x, &yb, Layout::Auto, Some(10), "t"));
    let label1 = format!("byte offset {}", y_start + 8);
    assert!(
        t.contains("yb.npy") && t.contains(&label1) && t.contains("label 12"),
        "{t}"
    );

    let yn = write(
        dir.path(),
        "yn.npy",
        &npy_bytes("<i8", false, &[3], &i64_le(&[0, -1, 2])),
    );
    let t = err_text(load_npy(&x, &yn, Layout::Auto, None, "t"));
    assert!(
        t.contains("yn.npy") && t.contains("-1") && t.contains(&label1),
        "{t}"
    );

    let oh = write(
        dir.path(),
        "oh.npy",
        &npy_bytes("<f4", false, &[3, 2], &f32_le(&[1., 0., 0., 1., 1., 0.])),
    );
    let t = err_text(load_npy(&x, &oh, Layout::Auto, None, "t"));
    assert!(t.contains("one-hot"), "{t}");

    let xs = write(
        dir.path(),
        "xs.npy",
        &npy_bytes("<c8", false, &[3, 2], &[0; 48]),
    );
    let t = err_text(load_npy(&xs, &y, Layout::Auto, None, "t"));
    assert!(t.contains("`<c8` is not supported"), "{t}");

    let nan_bytes = npy_bytes(
        "<f4",
        false,
        &[3, 2],
        &f32_le(&[0., 1., f32::NAN, 0., 0., 0.]),
    );
    let at = format!("byte offset {}", nan_bytes.len() - 24 + 8);
    let nan = write(dir.path(), "nan.npy", &nan_bytes);
    let t = err_text(load_npy(&nan, &y, Layout::Auto, None, "t"));
    assert!(
        t.contains("nan.npy") && t.contains("element 2") && t.contains(&at),
        "{t}"
    );
}

fn npz_members(test: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut m = vec![
        (
            "x_train",
            npy_bytes(
                "|u1",
                false,
                &[3, 2, 2],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            ),
        ),
        (
            "y_train",
            npy_bytes("<i8", false, &[3], &i64_le(&[0, 1, 1])),
        ),
    ];
    if test {
        m.push((
            "x_test",
            npy_bytes("|u1", false, &[1, 2, 2], &[20, 21, 22, 23]),
        ));
        m.push(("y_test", npy_bytes("<i8", false, &[1], &i64_le(&[2]))));
    }
    m
}

#[test]
fn npz_stored_and_deflated_round_trip() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.npz",
            &npz_bytes(&npz_members(true), compress),
        );
        let (train, test) = load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d").unwrap();
        let test = test.expect("test part");
        assert_eq!(train.images.dim(), (3, 1, 2, 2));
        assert_eq!(train.images[[2, 0, 1, 1]], 12.0);
        assert_eq!(train.labels, vec![0, 1, 1]);
        assert_eq!(test.labels, vec![2]);
        assert_eq!(test.images[[0, 0, 1, 0]], 22.0);

        let p = write(
            dir.path(),
            "t.npz",
            &npz_bytes(&npz_members(false), compress),
        );
        let (_, test) = load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d").unwrap();
        assert!(test.is_none());
    }
}

#[test]
fn npz_custom_keys_and_missing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<_> = npz_members(false)
        .into_iter()
        .map(|(k, v)| (if k == "x_train" { "images" } else { "targets" }, v))
        .collect();
    let p = write(dir.path(), "d.npz", &npz_bytes(&members, true));
    let t = err_text(load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d"));
    assert!(
        t.contains("d.npz") && t.contains("no array `x_train`"),
        "{t}"
    );
    assert!(t.contains("images, targets"), "{t}");
    let keys = NpzKeys {
        x_train: "images".into(),
        y_train: "targets".into(),
        ..NpzKeys::default()
    };
    let (train, _) = load_npz(&p, &keys, Layout::Auto, None, "d").unwrap();
    assert_eq!(train.len(), 3);

    let mut m = npz_members(true);
    m.pop();
    let p = write(dir.path(), "half.npz", &npz_bytes(&m, false));
    let t = err_text(load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d"));
    assert!(t.contains("has `x_test` but not `y_test`"), "{t}");
}

#[test]
fn npz_broken_archives() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = npz_bytes(&npz_members(true), true);
    let p = write(dir.path(), "cut.npz", &bytes[..bytes.len() - 30]);
    let t = err_text(load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d"));
    assert!(t.contains("cut.npz") && t.contains("zip"), "{t}");

    // A member whose .npy data is short: the error names the member and the offset in it.
    let mut m = npz_members(false);
    let start = m[0].1.len() - 12;
    m[0].1.truncate(start + 7);
    let p = write(dir.path(), "short.npz", &npz_bytes(&m, false));
    let t = err_text(load_npz(&p, &NpzKeys::default(), Layout::Auto, None, "d"));
    let at = format!("member `x_train.npy`, byte offset {}", start + 7);
    assert!(t.contains("short.npz") && t.contains(&at), "{t}");

    let mut m = npz_members(false);
    m[1].1 = npy_bytes("<i8", false, &[3], &i64_le(&[0, 1, 40]));
    let at = format!(
        "member `y_train.npy`, byte offset {}",
        m[1].1.len() - 24 + 16
    );
    let p = write(dir.path(), "lab.npz", &npz_bytes(&m, true));
    let t = err_text(load_npz(
        &p,
        &NpzKeys::default(),
        Layout::Auto,
        Some(10),
        "d",
    ));
    assert!(t.contains(&at) && t.contains("label 40"), "{t}");
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Files written by NumPy 2.4 itself (tests/fixtures/make_fixtures.py).
#[test]
fn npz_written_by_numpy() {
    for name in ["numpy_compressed.npz", "numpy_stored.npz"] {
        let (train, test) = load_npz(
            &fixture(name),
            &NpzKeys::default(),
            Layout::Auto,
            None,
            "np",
        )
        .unwrap();
        assert_eq!(train.images.dim(), (6, 3, 4, 4), "{name}: NHWC -> NCHW");
        assert_eq!(train.labels, vec![0, 1, 2, 0, 1, 2]);
        for (k, c, y, x) in [(0, 0, 0, 0), (5, 2, 3, 3), (2, 1, 1, 2)] {
            let flat = ((k * 4 + y) * 4 + x) * 3 + c;
            assert_eq!(train.images[[k, c, y, x]], (flat % 251) as f32, "{name}");
        }
        match name {
            "numpy_compressed.npz" => {
                let test = test.unwrap();
                assert_eq!(test.labels, vec![2, 1]);
                assert_eq!(
                    test.images[[1, 2, 3, 1]],
                    (((4 + 3) * 4 + 1) * 3 + 2) as f32 * 0.5
                );
            }
            _ => assert!(test.is_none()),
        }
    }
    let a = read_npy(&fixture("numpy_fortran_f64.npy")).unwrap();
    assert!(a.fortran_order);
    let v = a.to_f32().unwrap();
    assert_eq!(v.shape(), &[2, 3, 4]);
    assert_eq!(
        v.as_slice().unwrap(),
        (0..24).map(|i| i as f32).collect::<Vec<_>>().as_slice()
    );
    let l = read_npy(&fixture("numpy_labels_be_i4.npy")).unwrap();
    assert_eq!(l.descr, ">i4");
    assert_eq!(l.to_labels(None).unwrap(), (vec![2, 0, 1], 3));
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_header_named_label_and_text_classes() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(
        dir.path(),
        "iris.csv",
        b"sepal_length,species,petal_length\n5.1,setosa,1.4\n6.3,virginica,6.0\n\"5.8\",versicolor,4.1\n",
    );
    let test = write(
        dir.path(),
        "iris_test.csv",
        b"sepal_length,species,petal_length\n4.9,setosa,1.3\n",
    );
    let opts = CsvOptions {
        label_column: LabelColumn::Name("species".into()),
        ..CsvOptions::default()
    };
    let (a, b) = load_csv(&train, Some(&test), &opts, None, "iris").unwrap();
    let b = b.unwrap();
    assert_eq!(a.kind, DataKind::Tabular);
    assert_eq!(a.images.dim(), (3, 2, 1, 1));
    assert_eq!(a.images[[1, 0, 0, 0]], 6.3);
    assert_eq!(a.images[[2, 1, 0, 0]], 4.1);
    assert_eq!(
        a.class_names.as_deref().unwrap(),
        ["setosa", "versicolor", "virginica"]
    );
    assert_eq!(a.labels, vec![0, 2, 1]);
    assert_eq!(b.labels, vec![0]);
    assert_eq!(a.classes, 3);
}

#[test]
fn csv_no_header_numeric_labels_last_column_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"0.5,1,2,3\n1.5,-2,0,1\n\n2.5,3e2,7,0\n";
    for (name, bytes) in [("t.csv", text.to_vec()), ("t.csv.gz", gzip(text))] {
        let p = write(dir.path(), name, &bytes);
        let (d, _) = load_csv(&p, None, &CsvOptions::default(), None, "t").unwrap();
        assert_eq!(d.images.dim(), (3, 3, 1, 1));
        assert_eq!(d.labels, vec![3, 1, 0]);
        assert_eq!(d.images[[2, 1, 0, 0]], 300.0);
        assert_eq!(d.classes, 4);
    }
    let p = write(dir.path(), "first.csv", b"7,0.5,1\n3,1.5,2\n");
    let opts = CsvOptions {
        label_column: LabelColumn::Index(0),
        header: Some(false),
        ..CsvOptions::default()
    };
    let (d, _) = load_csv(&p, None, &opts, Some(10), "t").unwrap();
    assert_eq!(d.labels, vec![7, 3]);
    assert_eq!(d.classes, 10);
    assert_eq!(d.images[[1, 1, 0, 0]], 2.0);
}

#[test]
fn csv_broken_rows_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CsvOptions::default();
    let p = write(dir.path(), "ragged.csv", b"a,b,label\n1,2,0\n3,4,1\n5,1\n");
    let t = err_text(load_csv(&p, None, &opts, None, "t"));
    assert!(
        t.contains("ragged.csv, line 4") && t.contains("2 fields") && t.contains("has 3"),
        "{t}"
    );

    let p = write(dir.path(), "text.csv", b"a,b,label\n1,2,0\n3,x4,1\n");
    let t = err_text(load_csv(&p, None, &opts, None, "t"));
    assert!(
        t.contains("text.csv, line 3, column 2") && t.contains("(`b`)") && t.contains("`x4`"),
        "{t}"
    );

    let p = write(dir.path(), "gap.csv", b"1,,0\n");
    let t = err_text(load_csv(&p, None, &opts, None, "t"));
    assert!(
        t.contains("gap.csv, line 1, column 2") && t.contains("missing"),
        "{t}"
    );

    let p = write(dir.path(), "nan.csv", b"1,2,0\n1,NaN,0\n");
    let t = err_text(load_csv(&p, None, &opts, None, "t"));
    assert!(
        t.contains("line 2, column 2") && t.contains("missing"),
        "{t}"
    );

    let p = write(dir.path(), "lab.csv", b"1,2,0\n1,2,11\n");
    let t = err_text(load_csv(&p, None, &opts, Some(10), "t"));
    assert!(
        t.contains("lab.csv, line 2, column 3") && t.contains("label 11"),
        "{t}"
    );

    let p = write(dir.path(), "frac.csv", b"1,2,0\n1,2,1.5\n");
    let t = err_text(load_csv(&p, None, &opts, None, "t"));
    assert!(t.contains("line 2, column 3") && t.contains("`1.5`"), "{t}");

    let p = write(dir.path(), "empty.csv", b"");
    assert!(err_text(load_csv(&p, None, &opts, None, "t")).contains("no rows"));

    let a = write(dir.path(), "a.csv", b"1,2,0\n");
    let b = write(dir.path(), "b.csv", b"1,2,3,0\n");
    let t = err_text(load_csv(&a, Some(&b), &opts, None, "t"));
    assert!(
        t.contains("a.csv has 2 feature columns") && t.contains("b.csv has 3"),
        "{t}"
    );

    let named = CsvOptions {
        label_column: LabelColumn::Name("y".into()),
        ..CsvOptions::default()
    };
    let t = err_text(load_csv(&a, None, &named, None, "t"));
    assert!(t.contains("label_column") && t.contains("`y`"), "{t}");
}

// ---------------------------------------------------------------- digits

#[test]
fn digits_bundled() {
    let d = digits();
    assert_eq!(d.name, "digits");
    assert_eq!(d.images.dim(), (1797, 1, 8, 8));
    assert_eq!(d.input_shape(), [1, 8, 8]);
    assert_eq!(d.classes, 10);
    assert!(
        d.images
            .iter()
            .all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0)
    );
    assert_eq!(d.images.iter().fold(0f32, |m, &v| m.max(v)), 16.0);
    let counts = d.class_counts();
    assert_eq!(counts.iter().sum::<usize>(), 1797);
    assert!(
        counts.iter().all(|&c| (170..=190).contains(&c)),
        "{counts:?}"
    );
    // First row of the CSV: a zero.
    let first: Vec<f32> = d
        .images
        .index_axis(ndarray::Axis(0), 0)
        .iter()
        .copied()
        .collect();
    assert_eq!(&first[..10], &[0., 0., 5., 13., 9., 1., 0., 0., 0., 0.]);
    assert_eq!(d.labels[0], 0);
    assert_eq!(d.labels[1], 1);
}

/// The full Fashion-MNIST from the Debian package `dataset-fashion-mnist`.
#[test]
#[ignore = "needs `apt-get install dataset-fashion-mnist`"]
fn fashion_mnist_installed() {
    let cfg: DataConfig = toml::from_str("dataset = \"fashion-mnist\"\nvalidation = 0.1").unwrap();
    let s = load(&cfg, 1).unwrap();
    assert_eq!(s.data.len(), 70_000);
    assert_eq!(s.input_shape(), [1, 28, 28]);
    assert_eq!(s.splits.test, (60_000..70_000).collect::<Vec<_>>());
    assert_eq!(s.splits.validation.len(), 6_000);
    let train = s.data.select(&(0..60_000).collect::<Vec<_>>());
    assert_eq!(train.class_counts(), vec![6_000; 10]);
    assert_eq!(s.part(Part::Test).class_counts(), vec![1_000; 10]);
    assert!(s.data.images.iter().all(|&v| (0.0..=255.0).contains(&v)));
}
