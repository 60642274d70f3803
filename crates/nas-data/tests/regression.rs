//! Regression tables: the CSV label column read as numbers, rows without one dropped on
//! request, targets carried through selection, splits and batches, and their standardization
//! fitted on the training split only.

mod common;

use nas_data::{
    BatchOptions, CsvOptions, DataConfig, LabelColumn, LabelKind, Layout, MissingLabel, NpzKeys,
    Part, Targets, Task, load, load_csv, load_npz,
};

const TABLE: &[u8] = b"size,kind,price\n1.0,a,10.5\n2.0,b,21\n3.0,a,NA\n4.0,b,39.5\n5.0,a,52\n";

fn opts(missing_label: MissingLabel) -> CsvOptions {
    CsvOptions {
        label_column: LabelColumn::Name("price".into()),
        task: Task::Regression,
        missing_label,
        ..CsvOptions::default()
    }
}

#[test]
fn the_label_column_becomes_float_targets() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "prices.csv", TABLE);
    // A missing target is an error naming its line unless rows without one are dropped.
    let e = load_csv(&p, None, &opts(MissingLabel::Error), None, "prices")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 4") && e.contains("missing_label"), "{e}");
    let (d, _) = load_csv(&p, None, &opts(MissingLabel::Drop), None, "prices").unwrap();
    assert_eq!(d.task(), Task::Regression);
    assert_eq!((d.len(), d.classes, d.class_names.clone()), (4, 1, None));
    assert_eq!(d.labels, [0, 0, 0, 0]);
    assert_eq!(d.targets.as_deref(), Some(&[10.5, 21.0, 39.5, 52.0][..]));
    // `kind` holds text, so it is a one-hot feature: size, kind=a, kind=b.
    assert_eq!(d.images.dim(), (4, 3, 1, 1));
    assert_eq!(
        d.select(&[3, 0]).targets_of(&[0, 1]),
        Targets::Values(vec![52.0, 10.5])
    );

    let bad = common::write(dir.path(), "bad.csv", b"x,y\n1,2\n2,inf\n");
    let o = CsvOptions {
        label_column: LabelColumn::Name("y".into()),
        task: Task::Regression,
        ..CsvOptions::default()
    };
    let e = load_csv(&bad, None, &o, None, "bad")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3") && e.contains("not a finite number"),
        "{e}"
    );
}

#[test]
fn targets_are_standardized_on_the_training_split_and_batched_raw() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("x,y\n");
    for i in 0..40 {
        rows.push_str(&format!("{i},{}\n", 3.0 * i as f32 + 100.0));
    }
    let p = common::write(dir.path(), "line.csv", rows.as_bytes());
    let cfg: DataConfig = toml::from_str(&format!(
        "format = \"csv\"\ntrain = {p:?}\ntask = \"regression\"\nvalidation = 0.25\ntest_fraction = 0.25"
    ))
    .unwrap();
    let split = load(&cfg, 7).unwrap();
    let train = split.indices(Part::Train);
    assert!(train.len() >= 20 && train.len() < 40, "{}", train.len());
    let targets = split.data.targets.as_ref().unwrap();
    let values: Vec<f64> = train.iter().map(|&i| f64::from(targets[i])).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    let scale = split.normalization.target.unwrap();
    assert!((f64::from(scale.mean) - mean).abs() < 1e-3, "{scale:?}");
    assert!((f64::from(scale.std) - std).abs() < 1e-3, "{scale:?}");

    // Batches carry each sample's own raw target.
    let opts = BatchOptions {
        batch_size: 8,
        shuffle: true,
        drop_last: false,
        augment: None,
    };
    let mut seen = 0;
    for (x, t) in split.batches(Part::Train, &opts, 1).unwrap().with_targets() {
        let Targets::Values(t) = t else {
            panic!("regression targets")
        };
        for (row, y) in x.outer_iter().zip(&t) {
            // Normalized x back to the raw value it came from: y = 3 x + 100.
            let raw = row[[0, 0, 0]] * split.normalization.std[0] + split.normalization.mean[0];
            assert!((3.0 * raw + 100.0 - y).abs() < 1e-3, "x {raw}, y {y}");
        }
        seen += t.len();
    }
    assert_eq!(seen, train.len());
}

#[test]
fn only_csv_tables_hold_regression_targets() {
    let cfg: DataConfig = toml::from_str("dataset = \"digits\"\ntask = \"regression\"").unwrap();
    let e = load(&cfg, 0).unwrap_err().to_string();
    assert!(e.contains("task") && e.contains("format = \"csv\""), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(dir.path(), "t.csv", b"x,y\n1,2\n2,3\n3,4\n");
    let cfg: DataConfig = toml::from_str(&format!(
        "format = \"csv\"\ntrain = {p:?}\ntask = \"regression\"\nclasses = 3"
    ))
    .unwrap();
    let e = load(&cfg, 0).unwrap_err().to_string();
    assert!(e.contains("classes") && e.contains("remove it"), "{e}");
}

#[test]
fn numpy_label_arrays_hold_regression_targets() {
    let dir = tempfile::tempdir().unwrap();
    // Three float sequences of 2 steps x 2 features, the last padded after one step.
    let x = common::npy_bytes(
        "<f4",
        false,
        &[3, 2, 2],
        &common::f32_le(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 0., 0.]),
    );
    let y = common::npy_bytes("<f8", false, &[3], &common::f64_le(&[0.5, -1.25, 3.0]));
    let lengths = common::npy_bytes("<i8", false, &[3], &common::i64_le(&[2, 2, 1]));
    let npz = common::write(
        dir.path(),
        "s.npz",
        &common::npz_bytes(
            &[
                ("x_train", x.clone()),
                ("y_train", y),
                ("lengths_train", lengths),
            ],
            true,
        ),
    );
    let (d, test) = load_npz(
        &npz,
        &NpzKeys::default(),
        Layout::Ntf,
        LabelKind::Regression,
        "s",
    )
    .unwrap();
    assert!(test.is_none());
    assert_eq!(d.task(), Task::Regression);
    assert!(d.is_padded());
    assert_eq!(d.targets.as_deref(), Some(&[0.5, -1.25, 3.0][..]));
    // The same array read for classification is refused: its values are not class indices.
    let e = load_npz(&npz, &NpzKeys::default(), Layout::Ntf, None, "s")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a whole number"), "{e}");

    let nan = common::npy_bytes("<f4", false, &[3], &common::f32_le(&[1.0, f32::NAN, 2.0]));
    let bad = common::write(
        dir.path(),
        "bad.npz",
        &common::npz_bytes(&[("x_train", x), ("y_train", nan)], false),
    );
    let e = load_npz(
        &bad,
        &NpzKeys::default(),
        Layout::Ntf,
        LabelKind::Regression,
        "s",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("regression target 1 is NaN"), "{e}");
}
