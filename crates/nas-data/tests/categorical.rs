//! Categorical columns and missing values in CSV tables: detection and declaration, categories
//! from the training file only, one-hot and embedded codes, the unknown / missing slot,
//! mean filling, and that codes are never normalized.

mod common;

use std::path::{Path, PathBuf};

use nas_data::{
    CategoricalEncoding, CategoricalFeature, CsvOptions, DataConfig, DataError, Dataset, Format,
    LabelColumn, Missing, Part, load, load_csv,
};
use ndarray::Axis;

fn err_text<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    r.unwrap_err().to_string()
}

/// The rows of a data set as plain vectors.
fn rows(d: &Dataset) -> Vec<Vec<f32>> {
    d.images
        .outer_iter()
        .map(|s| s.iter().copied().collect())
        .collect()
}

const TRAIN: &str = "\
island,bill,sex,species
Dream,39.1,male,Adelie
Biscoe,46.5,female,Gentoo
Dream,NA,,Chinstrap
Torgersen,40.3,female,Adelie
";

const TEST: &str = "\
island,bill,sex,species
Biscoe,45.0,NA,Gentoo
Atlantis,?,male,Adelie
";

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (
        common::write(dir, "train.csv", TRAIN.as_bytes()),
        common::write(dir, "test.csv.gz", &common::gzip(TEST.as_bytes())),
    )
}

/// The mean of the training file's `bill` values, as the loader takes it (f64 over the f32
/// values).
fn training_mean() -> f32 {
    ([39.1f32, 46.5, 40.3]
        .iter()
        .map(|&v| f64::from(v))
        .sum::<f64>()
        / 3.0) as f32
}

fn opts(encoding: CategoricalEncoding) -> CsvOptions {
    CsvOptions {
        label_column: LabelColumn::Name("species".into()),
        encoding,
        missing: Missing::Mean,
        ..CsvOptions::default()
    }
}

#[test]
fn text_columns_become_one_hot_features_from_the_training_categories() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = files(dir.path());
    let (a, b) = load_csv(
        &train,
        Some(&test),
        &opts(CategoricalEncoding::Onehot),
        None,
        "p",
    )
    .unwrap();
    let b = b.unwrap();
    // island: 3 training categories (no gap); bill: numeric; sex: a gap, so <missing> first.
    assert_eq!(
        a.feature_names.as_deref().unwrap(),
        [
            "island=Biscoe",
            "island=Dream",
            "island=Torgersen",
            "bill",
            "sex=<missing>",
            "sex=female",
            "sex=male"
        ]
    );
    assert_eq!(a.input_shape(), [7, 1, 1]);
    assert_eq!(b.input_shape(), [7, 1, 1]);
    assert!(a.categorical.is_empty(), "one-hot features are plain 0/1");
    let mean = training_mean();
    assert_eq!(
        rows(&a),
        [
            vec![0.0, 1.0, 0.0, 39.1, 0.0, 0.0, 1.0],
            vec![1.0, 0.0, 0.0, 46.5, 0.0, 1.0, 0.0],
            vec![0.0, 1.0, 0.0, mean, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0, 40.3, 0.0, 1.0, 0.0],
        ]
    );
    // The test file's `NA` sex is the <missing> category; `Atlantis` was never seen in
    // training, so no island feature is set; its `?` bill is the training mean.
    assert_eq!(
        rows(&b),
        [
            vec![1.0, 0.0, 0.0, 45.0, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, mean, 0.0, 0.0, 1.0],
        ]
    );
    assert_eq!(
        a.class_names.as_deref().unwrap(),
        ["Adelie", "Chinstrap", "Gentoo"]
    );
}

#[test]
fn embedded_columns_are_codes_with_zero_for_unknown_or_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = files(dir.path());
    let mut o = opts(CategoricalEncoding::Embed);
    o.missing_indicator = true;
    let (a, b) = load_csv(&train, Some(&test), &o, None, "p").unwrap();
    let b = b.unwrap();
    assert_eq!(
        a.feature_names.as_deref().unwrap(),
        ["island", "bill", "bill=<missing>", "sex"]
    );
    let cats = vec![
        CategoricalFeature {
            feature: 0,
            categories: 4,
        },
        CategoricalFeature {
            feature: 3,
            categories: 3,
        },
    ];
    assert_eq!(a.categorical, cats);
    assert_eq!(b.categorical, cats);
    let mean = training_mean();
    // Codes: Biscoe 1, Dream 2, Torgersen 3; female 1, male 2; 0 unknown or missing.
    assert_eq!(
        rows(&a),
        [
            vec![2.0, 39.1, 0.0, 2.0],
            vec![1.0, 46.5, 0.0, 1.0],
            vec![2.0, mean, 1.0, 0.0],
            vec![3.0, 40.3, 0.0, 1.0],
        ]
    );
    assert_eq!(
        rows(&b),
        [vec![1.0, 45.0, 0.0, 0.0], vec![0.0, mean, 1.0, 2.0]]
    );
}

#[test]
fn declared_columns_are_categories_even_when_numeric_and_sorted_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(
        dir.path(),
        "codes.csv",
        b"grade,size,y\n10,1.5,0\n2,2.5,1\n1,3.5,0\n2,4.5,1\n",
    );
    for column in [LabelColumn::Name("grade".into()), LabelColumn::Index(0)] {
        let o = CsvOptions {
            categorical: vec![column],
            ..CsvOptions::default()
        };
        let (d, _) = load_csv(&p, None, &o, None, "g").unwrap();
        assert_eq!(
            d.feature_names.as_deref().unwrap(),
            ["grade=1", "grade=2", "grade=10", "size"]
        );
        assert_eq!(rows(&d)[0], [0.0, 0.0, 1.0, 1.5]);
    }
    // Undeclared, the column is numeric.
    let (d, _) = load_csv(&p, None, &CsvOptions::default(), None, "g").unwrap();
    assert_eq!(d.feature_names.as_deref().unwrap(), ["grade", "size"]);
    assert_eq!(rows(&d)[0], [10.0, 1.5]);
}

#[test]
fn bad_declarations_and_gaps_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = files(dir.path());
    // A numeric gap without `missing`: what, where, what to do.
    let o = CsvOptions {
        label_column: LabelColumn::Name("species".into()),
        ..CsvOptions::default()
    };
    let t = err_text(load_csv(&train, None, &o, None, "p"));
    assert!(
        t.contains("train.csv, line 4, column 2")
            && t.contains("(`bill`) is `NA`, a missing value")
            && t.contains("missing = \"mean\""),
        "{t}"
    );
    for (column, says) in [
        (LabelColumn::Name("beak".into()), "names column `beak`"),
        (
            LabelColumn::Name("species".into()),
            "lists the label column",
        ),
        (LabelColumn::Index(3), "lists the label column"),
        (LabelColumn::Index(9), "lists column 9"),
    ] {
        let o = CsvOptions {
            categorical: vec![column],
            missing: Missing::Mean,
            ..o.clone()
        };
        let t = err_text(load_csv(&train, None, &o, None, "p"));
        assert!(
            t.contains("[data] `categorical`") && t.contains(says),
            "{t}"
        );
    }
    // A column mixing numbers and text is not guessed to be categorical.
    let p = common::write(dir.path(), "mixed.csv", b"a,b,y\n1,2,0\n3,x4,1\n");
    let t = err_text(load_csv(&p, None, &CsvOptions::default(), None, "m"));
    assert!(
        t.contains("line 3, column 2") && t.contains("`x4`") && t.contains("categorical = ["),
        "{t}"
    );
    // A missing label.
    let p = common::write(dir.path(), "nolabel.csv", b"a,y\n1,0\n2,NA\n");
    let t = err_text(load_csv(&p, None, &CsvOptions::default(), None, "m"));
    assert!(
        t.contains("line 3, column 2") && t.contains("missing"),
        "{t}"
    );
}

#[test]
fn a_headerless_table_of_categories_keeps_its_first_row() {
    let dir = tempfile::tempdir().unwrap();
    // The first row's `red` recurs below: data, not a header.
    let p = common::write(dir.path(), "h.csv", b"red,1.0,0\nblue,2.0,1\nred,3.0,0\n");
    let (d, _) = load_csv(&p, None, &CsvOptions::default(), None, "h").unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(
        d.feature_names.as_deref().unwrap(),
        ["column 1=blue", "column 1=red", "column 2"]
    );
    // With a header whose columns are all categories, no header name recurs.
    let p = common::write(dir.path(), "n.csv", b"colour,y\nred,0\nblue,1\nred,0\n");
    let (d, _) = load_csv(&p, None, &CsvOptions::default(), None, "n").unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(
        d.feature_names.as_deref().unwrap(),
        ["colour=blue", "colour=red"]
    );
}

/// `[data]` with embedded codes: the code features keep mean 0 and std 1 in the fitted
/// normalization, so batches (and exported models) see the raw codes; numeric features are
/// standardized. The metadata survives the split and subsets.
#[test]
fn codes_are_never_normalized_and_survive_splits() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("colour,size,y\n");
    for i in 0..40 {
        let colour = ["red", "green", "blue"][i % 3];
        text.push_str(&format!("{colour},{},{}\n", i * 3, i % 2));
    }
    let p = common::write(dir.path(), "t.csv", text.as_bytes());
    let toml = format!(
        "format = \"csv\"\ntrain = {p:?}\ncategorical_encoding = \"embed\"\ntest_fraction = 0.25\n"
    );
    let cfg: DataConfig = toml::from_str(&toml).unwrap();
    assert_eq!(cfg.format, Some(Format::Csv));
    let s = load(&cfg, 3).unwrap();
    let cats = vec![CategoricalFeature {
        feature: 0,
        categories: 4,
    }];
    assert_eq!(s.data.categorical, cats);
    assert_eq!(s.part(Part::Test).categorical, cats);
    assert_eq!(
        (s.normalization.mean[0], s.normalization.std[0]),
        (0.0, 1.0)
    );
    assert!(s.normalization.std[1] > 1.0, "{:?}", s.normalization);
    let (x, _) = s.eval_batches(Part::Train, 1000).unwrap().next().unwrap();
    let raw = s.part(Part::Train);
    assert_eq!(
        x.index_axis(Axis(1), 0),
        raw.images.index_axis(Axis(1), 0),
        "codes pass unchanged"
    );
    let m: f32 = x.index_axis(Axis(1), 1).sum() / x.len_of(Axis(0)) as f32;
    assert!(m.abs() < 1e-5, "the numeric feature is standardized: {m}");

    // `missing_indicator` needs `missing = "mean"`; the keys belong to csv only.
    let bad: DataConfig = toml::from_str(&format!("{toml}missing_indicator = true\n")).unwrap();
    let t = err_text(load(&bad, 3));
    assert!(
        t.contains("`missing_indicator`") && t.contains("missing = \"mean\""),
        "{t}"
    );
    let bad: DataConfig =
        toml::from_str("dataset = \"digits\"\ncategorical_encoding = \"embed\"\n").unwrap();
    let t = err_text(load(&bad, 3));
    assert!(
        t.contains("`categorical_encoding`: is not used by `digits`"),
        "{t}"
    );
}

#[test]
fn the_shipped_penguins_load_with_embedded_categories() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/data");
    let toml = format!(
        "format = \"csv\"\ntrain = {:?}\ntest = {:?}\nlabel_column = \"species\"\n\
         categorical_encoding = \"embed\"\nmissing = \"mean\"\n",
        root.join("penguins-train.csv.gz"),
        root.join("penguins-test.csv.gz")
    );
    let s = load(&toml::from_str(&toml).unwrap(), 0).unwrap();
    assert_eq!(s.data.len(), 344);
    assert_eq!((s.splits.test.len(), s.classes()), (69, 3));
    assert_eq!(
        s.data.feature_names.as_deref().unwrap(),
        [
            "island",
            "bill_length_mm",
            "bill_depth_mm",
            "flipper_length_mm",
            "body_mass_g",
            "sex",
            "year"
        ]
    );
    // island: Biscoe, Dream, Torgersen (+ unknown); sex: female, male (+ unknown or missing).
    assert_eq!(
        s.data.categorical,
        [
            CategoricalFeature {
                feature: 0,
                categories: 4
            },
            CategoricalFeature {
                feature: 5,
                categories: 3
            }
        ]
    );
}
