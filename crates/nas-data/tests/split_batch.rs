//! Splits, normalization, batching, augmentation and the `[data]` config.

mod common;

use std::collections::BTreeSet;

use nas_data::*;
use ndarray::{Array4, Axis};

fn cfg(text: &str) -> DataConfig {
    toml::from_str(text).unwrap()
}

fn digits_split(seed: u64) -> SplitDataset {
    load(&cfg("dataset = \"digits\""), seed).unwrap()
}

#[test]
fn digits_split_sizes_disjoint_and_deterministic() {
    let s = digits_split(42);
    let sp = &s.splits;
    assert_eq!(sp.test.len(), 359, "round(0.2 x 1797)");
    assert_eq!(sp.validation.len(), 288, "round(0.2 x 1438)");
    assert_eq!(sp.train.len(), 1797 - 359 - 288);
    let all: BTreeSet<usize> = sp
        .train
        .iter()
        .chain(&sp.validation)
        .chain(&sp.test)
        .copied()
        .collect();
    assert_eq!(all.len(), 1797, "disjoint and complete");
    for part in [&sp.train, &sp.validation, &sp.test] {
        assert!(part.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
    assert_eq!(&digits_split(42).splits, sp, "same seed, same split");
    assert_ne!(&digits_split(43).splits, sp, "other seed, other split");
    // Pinned: a change here silently changes every study's data.
    assert_eq!(&sp.test[..8], &[10, 11, 29, 34, 41, 46, 47, 49]);
}

#[test]
fn split_is_stratified() {
    let s = digits_split(7);
    let counts = s.data.class_counts();
    for (part, frac_of) in [(Part::Test, 1.0), (Part::Validation, 0.8)] {
        let got = s.part(part).class_counts();
        for (c, (&g, &n)) in got.iter().zip(&counts).enumerate() {
            let want = 0.2 * frac_of * n as f64;
            assert!(
                (g as f64 - want).abs() <= 1.5,
                "{part} class {c}: {g} vs {want}"
            );
        }
    }
}

#[test]
fn unstratified_split_and_source_test_part() {
    let labels: Vec<u32> = (0..100).map(|i| (i % 3) as u32).collect();
    let c = SplitConfig {
        validation: 0.25,
        test: 0.1,
        stratify: false,
        max_train: None,
    };
    let a = Splits::new(&labels, 3, 100, &c, 5).unwrap();
    assert_eq!(
        (a.train.len(), a.validation.len(), a.test.len()),
        (67, 23, 10)
    );
    assert_eq!(a, Splits::new(&labels, 3, 100, &c, 5).unwrap());
    // With a source test part (the last 30), that part is the test set as it is.
    let b = Splits::new(&labels, 3, 70, &c, 5).unwrap();
    assert_eq!(b.test, (70..100).collect::<Vec<_>>());
    assert_eq!(b.validation.len(), 18);
    assert!(b.train.iter().chain(&b.validation).all(|&i| i < 70));

    let bad = SplitConfig {
        validation: 1.0,
        ..c
    };
    let e = Splits::new(&labels, 3, 100, &bad, 5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[data] `validation`") && e.contains("is 1"),
        "{e}"
    );
}

/// `max_train` keeps a stratified subset of exactly that many training samples, drawn from
/// the training part only: validation and test are the parts of the same split without it.
#[test]
fn max_train_subsets_the_training_part_only() {
    let labels: Vec<u32> = (0..1000).map(|i| (i % 4) as u32).collect();
    let whole = SplitConfig {
        validation: 0.2,
        test: 0.1,
        stratify: true,
        max_train: None,
    };
    let full = Splits::new(&labels, 4, 1000, &whole, 9).unwrap();
    let cfg = SplitConfig {
        max_train: Some(100),
        ..whole
    };
    let sub = Splits::new(&labels, 4, 1000, &cfg, 9).unwrap();
    assert_eq!(sub.train.len(), 100);
    assert_eq!(sub.validation, full.validation);
    assert_eq!(sub.test, full.test);
    assert!(
        sub.train
            .iter()
            .all(|i| full.train.binary_search(i).is_ok())
    );
    for c in 0..4 {
        let n = sub.train.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(n, 25, "class {c}");
    }
    assert_eq!(sub, Splits::new(&labels, 4, 1000, &cfg, 9).unwrap());
    assert_ne!(
        sub.train,
        Splits::new(&labels, 4, 1000, &cfg, 10).unwrap().train
    );
    // Above the training part's size it changes nothing; 0 is refused.
    let big = SplitConfig {
        max_train: Some(5000),
        ..whole
    };
    assert_eq!(Splits::new(&labels, 4, 1000, &big, 9).unwrap(), full);
    let zero = SplitConfig {
        max_train: Some(0),
        ..whole
    };
    let e = Splits::new(&labels, 4, 1000, &zero, 9)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_train"), "{e}");
}

/// Train samples are all 1.0 / 3.0 per channel, test samples 100: stats see train only.
#[test]
fn normalization_uses_training_split_only() {
    let n = 40;
    let mut images = Array4::<f32>::zeros((n, 2, 3, 3));
    for k in 0..n {
        let v = if k < 30 {
            if k % 2 == 0 { 1.0 } else { 3.0 }
        } else {
            100.0
        };
        images
            .index_axis_mut(Axis(0), k)
            .index_axis_mut(Axis(0), 0)
            .fill(v);
        images
            .index_axis_mut(Axis(0), k)
            .index_axis_mut(Axis(0), 1)
            .fill(5.0);
    }
    let labels = (0..n).map(|k| (k % 2) as u32).collect();
    let data = Dataset::new("t", images, labels, 2).unwrap();
    let cfg = SplitConfig {
        validation: 0.0,
        test: 0.2,
        stratify: true,
        max_train: None,
    };
    let s = SplitDataset::new(data, 30, &cfg, None, 1).unwrap();
    assert_eq!(s.splits.train.len(), 30);
    assert_eq!(s.normalization.mean, vec![2.0, 5.0]);
    assert_eq!(
        s.normalization.std,
        vec![1.0, 1.0],
        "constant channel gets std 1"
    );
    assert_eq!(s.normalization.scale(), vec![1.0, 1.0]);

    let mut imgs = s.part(Part::Train).images;
    s.normalization.apply(&mut imgs);
    assert!(imgs.iter().all(|&v| v == -1.0 || v == 1.0 || v == 0.0));
}

#[test]
fn normalization_of_digits_matches_direct_computation() {
    let s = digits_split(3);
    let train = s.part(Part::Train);
    let vals: Vec<f64> = train.images.iter().map(|&v| f64::from(v)).collect();
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
    assert!((f64::from(s.normalization.mean[0]) - mean).abs() < 1e-5);
    assert!((f64::from(s.normalization.std[0]) - std).abs() < 1e-5);
    assert!(
        (4.0..6.0).contains(&mean) && (5.0..7.0).contains(&std),
        "{mean} {std}"
    );
}

#[test]
fn train_batches_cover_the_epoch_and_are_reproducible() {
    let s = digits_split(11);
    let n = s.splits.train.len(); // 1150
    let epoch =
        |e| -> Vec<(Array4<f32>, Vec<u32>)> { s.train_batches(64, false, e).unwrap().collect() };
    let b0 = epoch(0);
    assert_eq!(b0.len(), n.div_ceil(64));
    assert_eq!(s.train_batches(64, false, 0).unwrap().len(), n.div_ceil(64));
    assert!(
        b0[..b0.len() - 1]
            .iter()
            .all(|(x, y)| x.dim() == (64, 1, 8, 8) && y.len() == 64)
    );
    assert_eq!(b0.last().unwrap().1.len(), n % 64);
    let mut seen: Vec<u32> = b0.iter().flat_map(|(_, y)| y.clone()).collect();
    let mut want: Vec<u32> = s.splits.train.iter().map(|&i| s.data.labels[i]).collect();
    seen.sort_unstable();
    want.sort_unstable();
    assert_eq!(seen, want, "every training sample once");
    assert_eq!(epoch(0), b0, "same seed and epoch, same batches");
    assert_ne!(epoch(1)[0].1, b0[0].1, "another epoch, another order");

    let dropped: Vec<_> = s.train_batches(64, true, 0).unwrap().collect();
    assert_eq!(dropped.len(), n / 64);
    assert!(dropped.iter().all(|(_, y)| y.len() == 64));
    assert_eq!(dropped[0], b0[0], "drop_last does not change the order");
}

#[test]
fn eval_batches_are_ordered_and_normalized() {
    let s = digits_split(2);
    let batches: Vec<_> = s.eval_batches(Part::Test, 100).unwrap().collect();
    assert_eq!(batches.len(), 4);
    let (x, y) = &batches[1];
    let i = s.splits.test[100];
    assert_eq!(y[0], s.data.labels[i]);
    let (m, sd) = (s.normalization.mean[0], s.normalization.std[0]);
    for yy in 0..8 {
        for xx in 0..8 {
            assert_eq!(x[[0, 0, yy, xx]], (s.data.images[[i, 0, yy, xx]] - m) / sd);
        }
    }
}

/// CIFAR-sized images: 3 x 32 x 32 with distinct values.
fn cifar_like(n: usize) -> SplitDataset {
    let images = Array4::from_shape_fn((n, 3, 32, 32), |(k, c, y, x)| {
        (k * 7 + c * 50 + y * 3 + x) as f32
    });
    let labels = (0..n).map(|k| (k % 10) as u32).collect();
    let data = Dataset::new("c", images, labels, 10).unwrap();
    let cfg = SplitConfig {
        validation: 0.0,
        test: 0.0,
        stratify: true,
        max_train: None,
    };
    let aug = Augment::default_for([3, 32, 32]);
    assert_eq!(
        aug,
        Augment {
            crop_padding: 4,
            horizontal_flip: true
        }
    );
    SplitDataset::new(data, n, &cfg, Some(aug), 9).unwrap()
}

#[test]
fn augmentation_keeps_shapes_and_is_reproducible() {
    let s = cifar_like(20);
    let a: Vec<_> = s.train_batches(8, false, 3).unwrap().collect();
    let b: Vec<_> = s.train_batches(8, false, 3).unwrap().collect();
    assert_eq!(a, b, "same seed and epoch, same augmentation");
    assert_eq!(a[0].0.dim(), (8, 3, 32, 32));
    assert_eq!(a[2].0.dim(), (4, 3, 32, 32));
    let c: Vec<_> = s.train_batches(8, false, 4).unwrap().collect();
    assert_ne!(a, c);
    // The batch size does not change what each sample gets.
    let whole: Vec<_> = s.train_batches(20, false, 3).unwrap().collect();
    let parts: Vec<&Array4<f32>> = a.iter().map(|(x, _)| x).collect();
    let joined =
        ndarray::concatenate(Axis(0), &parts.iter().map(|x| x.view()).collect::<Vec<_>>()).unwrap();
    assert_eq!(whole[0].0, joined);
}

/// Each augmented sample is its normalized source shifted by some (dy, dx) in [-4, 4],
/// possibly mirrored, with zeros where the window leaves the image.
#[test]
fn augmentation_is_a_padded_crop_and_flip() {
    let s = cifar_like(30);
    let norm = &s.normalization;
    let mut flips = 0;
    let mut shifted = 0;
    let opts = BatchOptions {
        batch_size: 30,
        shuffle: false,
        drop_last: false,
        augment: s.augment,
    };
    let (x, _) = s.batches(Part::Train, &opts, 0).unwrap().next().unwrap();
    for k in 0..30 {
        let src = s.data.images.index_axis(Axis(0), k);
        let out = x.index_axis(Axis(0), k);
        let matches = |dy: i64, dx: i64, flip: bool| {
            (0..3).all(|c| {
                (0..32).all(|y| {
                    (0..32).all(|xx| {
                        let xc = if flip { 31 - xx } else { xx };
                        let (sy, sx) = (y as i64 + dy, xc as i64 + dx);
                        let want = if (0..32).contains(&sy) && (0..32).contains(&sx) {
                            (src[[c, sy as usize, sx as usize]] - norm.mean[c]) / norm.std[c]
                        } else {
                            0.0
                        };
                        out[[c, y, xx]] == want
                    })
                })
            })
        };
        let found = (-4..=4)
            .flat_map(|dy| (-4..=4).flat_map(move |dx| [(dy, dx, false), (dy, dx, true)]))
            .find(|&(dy, dx, f)| matches(dy, dx, f))
            .unwrap_or_else(|| panic!("sample {k} is no crop/flip of its source"));
        flips += usize::from(found.2);
        shifted += usize::from(found.0 != 0 || found.1 != 0);
    }
    assert!((5..=25).contains(&flips), "about half flipped: {flips}");
    assert!(shifted >= 20, "most samples shifted: {shifted}");

    // No padding and no flip: plain normalized samples.
    let plain = BatchOptions {
        augment: Some(Augment {
            crop_padding: 0,
            horizontal_flip: false,
        }),
        ..opts.clone()
    };
    let none = BatchOptions {
        augment: None,
        ..opts
    };
    let a = s.batches(Part::Train, &plain, 0).unwrap().next().unwrap();
    let b = s.batches(Part::Train, &none, 0).unwrap().next().unwrap();
    assert_eq!(a, b);
}

#[test]
fn batch_errors() {
    let s = digits_split(1);
    assert!(s.train_batches(0, false, 0).is_err());
    let csv = tempfile::tempdir().unwrap();
    let p = common::write(csv.path(), "t.csv", b"1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n");
    let c = DataConfig {
        format: Some(Format::Csv),
        train: Some(p),
        augment: true,
        ..DataConfig::default()
    };
    let e = load(&c, 0).unwrap_err().to_string();
    assert!(
        e.contains("[data] `augment`") && e.contains("tabular"),
        "{e}"
    );
}

#[test]
fn config_from_toml() {
    let c = cfg(r#"
        format = "npz"
        path = "data/set.npz"
        layout = "nhwc"
        classes = 10
        validation = 0.1
        augment = true
        crop_padding = 2
        horizontal_flip = false
        [keys]
        x_train = "images"
        "#);
    assert_eq!(c.format, Some(Format::Npz));
    assert_eq!(c.layout, Layout::Nhwc);
    assert_eq!(c.keys.as_ref().unwrap().x_train, "images");
    assert_eq!(c.keys.as_ref().unwrap().y_train, "y_train");
    assert_eq!(c.validation, 0.1);
    let mut r = c.clone();
    r.resolve_paths(std::path::Path::new("/studies/a"));
    assert_eq!(
        r.path.unwrap(),
        std::path::Path::new("/studies/a/data/set.npz")
    );

    let d = cfg("dataset = \"digits\"");
    assert_eq!(
        d,
        DataConfig {
            dataset: Some("digits".into()),
            ..DataConfig::default()
        }
    );
    let csv = cfg("format = \"csv\"\ntrain = \"a.csv\"\nlabel_column = \"species\"");
    assert_eq!(csv.label_column, Some(LabelColumn::Name("species".into())));
    let csv = cfg("format = \"csv\"\ntrain = \"a.csv\"\nlabel_column = 0");
    assert_eq!(csv.label_column, Some(LabelColumn::Index(0)));

    let e = toml::from_str::<DataConfig>("dataset = \"digits\"\nvalidaton = 0.1").unwrap_err();
    assert!(e.to_string().contains("validaton"), "{e}");
    let e = toml::from_str::<DataConfig>("format = \"jpeg\"").unwrap_err();
    assert!(e.to_string().contains("jpeg"), "{e}");
}

#[test]
fn config_mistakes_are_named() {
    let err = |t: &str| load(&cfg(t), 0).unwrap_err().to_string();
    let e = err("");
    assert!(e.contains("[data] `format`") && e.contains("digits"), "{e}");
    let e = err("dataset = \"digits\"\nformat = \"idx\"");
    assert!(e.contains("both"), "{e}");
    let e = err("dataset = \"mnist\"");
    assert!(e.contains("`mnist` is not a named data set"), "{e}");
    let e = err("dataset = \"digits\"\ndir = \"x\"");
    assert!(
        e.contains("[data] `dir`") && e.contains("not used by `digits`"),
        "{e}"
    );
    let e = err("format = \"idx\"\ntrain_images = \"a\"");
    assert!(
        e.contains("[data] `train_labels`") && e.contains("missing"),
        "{e}"
    );
    let e =
        err("format = \"idx\"\ntrain_images = \"a\"\ntrain_labels = \"b\"\ntest_images = \"c\"");
    assert!(e.contains("[data] `test_labels`"), "{e}");
    let e = err("format = \"cifar10\"\ndir = \"/nonexistent/cifar\"");
    assert!(
        e.contains("/nonexistent/cifar/data_batch_1.bin is missing"),
        "{e}"
    );
    let e = err("dataset = \"digits\"\ncrop_padding = 2");
    assert!(
        e.contains("[data] `crop_padding`") && e.contains("augment = true"),
        "{e}"
    );
    let e = err("dataset = \"digits\"\nclasses = 9");
    assert!(e.contains("[data] `classes`"), "{e}");
    let e = err("dataset = \"digits\"\nvalidation = -0.5");
    assert!(e.contains("[data] `validation`"), "{e}");
    let e = err("dataset = \"fashion-mnist\"\ndir = \"/nonexistent\"");
    assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
}

#[test]
fn load_idx_source_with_test_part_and_augment() {
    let dir = tempfile::tempdir().unwrap();
    let img = |n: usize| {
        common::idx_bytes(
            &[n as u32, 8, 8],
            &(0..n * 64).map(|i| (i % 256) as u8).collect::<Vec<_>>(),
        )
    };
    let lab = |n: usize| {
        common::idx_bytes(
            &[n as u32],
            &(0..n).map(|i| (i % 4) as u8).collect::<Vec<_>>(),
        )
    };
    common::write(dir.path(), "tr-i.gz", &common::gzip(&img(40)));
    common::write(dir.path(), "tr-l", &lab(40));
    common::write(dir.path(), "te-i", &img(12));
    common::write(dir.path(), "te-l.gz", &common::gzip(&lab(12)));
    let mut c = cfg(r#"
        format = "idx"
        train_images = "tr-i.gz"
        train_labels = "tr-l"
        test_images = "te-i"
        test_labels = "te-l.gz"
        validation = 0.25
        augment = true
        name = "tiny"
        "#);
    c.resolve_paths(dir.path());
    let s = load(&c, 0).unwrap();
    assert_eq!(s.data.name, "tiny");
    assert_eq!(s.data.len(), 52);
    assert_eq!(s.classes(), 4);
    assert_eq!(s.splits.test, (40..52).collect::<Vec<_>>());
    assert_eq!(s.splits.validation.len(), 10);
    assert_eq!(
        s.augment,
        Some(Augment {
            crop_padding: 1,
            horizontal_flip: true
        })
    );
    assert_eq!(s.train_batches(16, true, 0).unwrap().count(), 1);

    c.test_fraction = Some(0.1);
    let e = load(&c, 0).unwrap_err().to_string();
    assert!(e.contains("[data] `test_fraction`"), "{e}");
}

#[test]
fn load_csv_without_test_holds_out_test_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("f1,f2,y\n");
    for i in 0..50 {
        text.push_str(&format!(
            "{},{},{}\n",
            i,
            i * 2,
            if i % 2 == 0 { "even" } else { "odd" }
        ));
    }
    let p = common::write(dir.path(), "t.csv", text.as_bytes());
    let c = DataConfig {
        format: Some(Format::Csv),
        train: Some(p),
        test_fraction: Some(0.2),
        ..DataConfig::default()
    };
    let s = load(&c, 4).unwrap();
    assert_eq!(s.input_shape(), [2, 1, 1]);
    assert_eq!(s.data.kind, DataKind::Tabular);
    assert_eq!(s.splits.test.len(), 10);
    assert_eq!(s.part(Part::Test).class_counts(), vec![5, 5]);
    assert_eq!(s.data.class_names.as_deref().unwrap(), ["even", "odd"]);
    assert_eq!(s.normalization.channels(), 2);
    let (x, _) = s.eval_batches(Part::Train, 1000).unwrap().next().unwrap();
    let m: f32 = x.index_axis(Axis(1), 0).iter().sum::<f32>() / x.len_of(Axis(0)) as f32;
    assert!(m.abs() < 1e-5, "features standardized on train: {m}");
}
