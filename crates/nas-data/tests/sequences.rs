//! Sequence data: NPY / NPZ token ids and float sequences with lengths, `label<TAB>text`
//! files with a training-split vocabulary, and images read as sequences of rows.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nas_data::*;
use ndarray::{Array2, Array3, Axis};

fn err_text<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    let e = r.unwrap_err();
    e.to_string()
}

fn npy(dir: &Path, name: &str, descr: &str, shape: &[usize], data: &[u8]) -> PathBuf {
    write(dir, name, &npy_bytes(descr, false, shape, data))
}

fn npy_cfg(x: PathBuf, y: PathBuf, layout: Layout) -> DataConfig {
    DataConfig {
        format: Some(Format::Npy),
        train_images: Some(x),
        train_labels: Some(y),
        layout,
        validation: 0.0,
        test_fraction: Some(0.0),
        ..DataConfig::default()
    }
}

/// All batches of a part, in index order, flattened.
fn eval_values(s: &SplitDataset, part: Part) -> Vec<f32> {
    s.eval_batches(part, 3)
        .unwrap()
        .flat_map(|(b, _)| b.into_iter().collect::<Vec<_>>())
        .collect()
}

#[test]
fn npy_token_ids_with_lengths_are_padded_and_never_normalized() {
    let dir = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let ids = [
        5, 2, 7, 3, 4,
        9, 3, 99, 99, 99, // 99 lies past the length 2: padding, not a token
        1, 1, 1, 1, 1,
        6, 2, 8, 0, 0,
    ];
    let x = npy(dir.path(), "x.npy", "<i8", &[4, 5], &i64_le(&ids));
    let y = npy(dir.path(), "y.npy", "<i8", &[4], &i64_le(&[0, 1, 0, 1]));
    let l = npy(dir.path(), "l.npy", "|u1", &[4], &[5, 2, 0, 3]);
    let d = load_npy_with_lengths(&x, &y, Some(&l), Layout::Nt, None, "t").unwrap();
    assert_eq!(d.kind, DataKind::Sequence);
    assert_eq!(d.input_shape(), [5, 1, 1]);
    assert_eq!(d.sample_shape(), vec![5]);
    assert_eq!(d.vocab_size, Some(10), "largest kept id 9, plus one");
    #[rustfmt::skip]
    let want = [
        5., 2., 7., 3., 4.,
        9., 3., 0., 0., 0.,
        0., 0., 0., 0., 0.,
        6., 2., 8., 0., 0.,
    ];
    assert_eq!(d.images.as_slice().unwrap(), &want);

    let mut c = npy_cfg(x, y, Layout::Nt);
    c.train_lengths = Some(l);
    let s = load(&c, 3).unwrap();
    assert_eq!(s.vocab_size(), Some(10));
    assert_eq!(s.sample_shape(), vec![5]);
    assert_eq!(
        s.normalization,
        Normalization::identity_along(2, 1),
        "token ids are never normalized"
    );
    assert_eq!(eval_values(&s, Part::Train), want.to_vec());
    let e = s.train_batches(2, false, 0).unwrap().count();
    assert_eq!(e, 2);

    // Without lengths every id counts.
    let d = load_npy(
        &c.train_images.unwrap(),
        &c.train_labels.unwrap(),
        Layout::Nt,
        None,
        "t",
    );
    assert_eq!(d.unwrap().vocab_size, Some(100));
}

#[test]
fn npy_float_sequences_normalize_per_feature_over_training_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (n, t, f) = (8, 3, 2);
    // Feature 0 grows with sample and step; feature 1 is 10 x feature 0 + 5.
    let values: Vec<f32> = (0..n * t * f)
        .map(|k| {
            let (i, rest) = (k / (t * f), k % (t * f));
            let base = (i * t + rest / f) as f32;
            if rest % f == 0 {
                base
            } else {
                10.0 * base + 5.0
            }
        })
        .collect();
    let x = npy(dir.path(), "x.npy", "<f4", &[n, t, f], &f32_le(&values));
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
    let y = npy(dir.path(), "y.npy", "<i8", &[n], &i64_le(&labels));
    let mut c = npy_cfg(x, y, Layout::Ntf);
    c.validation = 0.5;
    let s = load(&c, 9).unwrap();
    assert_eq!((s.data.kind, s.vocab_size()), (DataKind::Sequence, None));
    assert_eq!(s.sample_shape(), vec![t, f]);
    assert_eq!(s.input_shape(), [t, f, 1]);
    assert_eq!(s.splits.train.len(), 4);

    // Mean and std of each feature over the training samples' steps only.
    let stats = |feature: usize| {
        let v: Vec<f64> = s
            .splits
            .train
            .iter()
            .flat_map(|&i| (0..t).map(move |step| (i, step)))
            .map(|(i, step)| f64::from(values[(i * t + step) * f + feature]))
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        (m, sd)
    };
    let norm = &s.normalization;
    assert_eq!((norm.feature_axis, norm.channels()), (2, f));
    for k in 0..f {
        let (m, sd) = stats(k);
        assert!(
            (f64::from(norm.mean[k]) - m).abs() < 1e-4,
            "{k}: {norm:?} {m}"
        );
        assert!(
            (f64::from(norm.std[k]) - sd).abs() < 1e-4,
            "{k}: {norm:?} {sd}"
        );
    }
    assert!(
        norm.mean[1] > 5.0 * norm.mean[0],
        "features get their own statistics"
    );

    // Batches and `apply` normalize the same way.
    let mut part = s.part(Part::Validation).images;
    norm.apply(&mut part);
    let got = eval_values(&s, Part::Validation);
    assert_eq!(part.iter().copied().collect::<Vec<_>>(), got);
    let raw = s.part(Part::Validation).images;
    let (i, step, k) = (1, 2, 1);
    let want = (raw[[i, step, k, 0]] - norm.mean[k]) / norm.std[k];
    assert_eq!(got[(i * t + step) * f + k], want);

    // The feature axis is written out only where it is not the channel axis.
    let text = toml::to_string(norm).unwrap();
    assert!(text.contains("feature_axis = 2"), "{text}");
    let back: Normalization = toml::from_str(&text).unwrap();
    assert_eq!(&back, norm);
    let image = toml::to_string(&Normalization::identity(3)).unwrap();
    assert!(!image.contains("feature_axis"), "{image}");
    let old: Normalization = toml::from_str("mean = [1.0]\nstd = [2.0]").unwrap();
    assert_eq!(old.feature_axis, 1);
}

#[test]
fn float_sequence_lengths_zero_every_feature_of_late_steps() {
    let dir = tempfile::tempdir().unwrap();
    let x = npy(dir.path(), "x.npy", "<f8", &[2, 3, 2], &f64_le(&[1.5; 12]));
    let y = npy(dir.path(), "y.npy", "<i8", &[2], &i64_le(&[0, 1]));
    let l = npy(dir.path(), "l.npy", "<i8", &[2, 1], &i64_le(&[1, 3]));
    let d = load_npy_with_lengths(&x, &y, Some(&l), Layout::Ntf, None, "t").unwrap();
    let want = [1.5, 1.5, 0., 0., 0., 0., 1.5, 1.5, 1.5, 1.5, 1.5, 1.5];
    assert_eq!(d.images.as_slice().unwrap(), &want);
    assert_eq!(d.sample_shape(), vec![3, 2]);
}

#[test]
fn npz_sequences_with_lengths_keys() {
    let dir = tempfile::tempdir().unwrap();
    let members = vec![
        (
            "ids",
            npy_bytes("<i4", false, &[2, 3], &i32_bytes(&[4, 5, 6, 7, 8, 9])),
        ),
        ("y", npy_bytes("<i8", false, &[2], &i64_le(&[0, 1]))),
        ("len", npy_bytes("<i8", false, &[2], &i64_le(&[2, 1]))),
        (
            "ids_t",
            npy_bytes("<i4", false, &[1, 3], &i32_bytes(&[2, 3, 11])),
        ),
        ("y_t", npy_bytes("<i8", false, &[1], &i64_le(&[1]))),
    ];
    let path = write(dir.path(), "seq.npz", &npz_bytes(&members, true));
    let c: DataConfig = toml::from_str(&format!(
        r#"
        format = "npz"
        path = "{}"
        layout = "nt"
        validation = 0.0
        [keys]
        x_train = "ids"
        y_train = "y"
        lengths_train = "len"
        x_test = "ids_t"
        y_test = "y_t"
        "#,
        path.display()
    ))
    .unwrap();
    let s = load(&c, 0).unwrap();
    assert_eq!(
        s.data.images.as_slice().unwrap(),
        &[4., 5., 0., 7., 0., 0., 2., 3., 11.],
        "the test part has no lengths: kept whole"
    );
    assert_eq!(s.vocab_size(), Some(12), "the largest id over both parts");
    assert_eq!(s.splits.test, vec![2]);

    let mut bad = c.clone();
    bad.keys.as_mut().unwrap().lengths_test = Some("nope".into());
    let e = err_text(load(&bad, 0));
    assert!(e.contains("no array `nope`") && e.contains("ids_t"), "{e}");
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn broken_sequence_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let full = npy_bytes("<i8", false, &[3, 4], &i64_le(&[2; 12]));
    let y = npy(p, "y.npy", "<i8", &[3], &i64_le(&[0, 1, 0]));
    let load_nt =
        |x: &Path, l: Option<&Path>| load_npy_with_lengths(x, &y, l, Layout::Nt, None, "t");

    // Truncated: cut inside element 9.
    let start = full.len() - 96;
    let x = write(p, "cut.npy", &full[..start + 8 * 9 + 3]);
    let e = err_text(load_nt(&x, None));
    assert!(
        e.contains("cut.npy") && e.contains("truncated") && e.contains("element 9"),
        "{e}"
    );
    assert!(e.contains(&format!("byte offset {}", start + 72)), "{e}");

    // Label count mismatch.
    let x = write(p, "x.npy", &full);
    let y2 = npy(p, "y2.npy", "<i8", &[2], &i64_le(&[0, 1]));
    let e = err_text(load_npy_with_lengths(&x, &y2, None, Layout::Nt, None, "t"));
    assert!(e.contains("hold 3 samples") && e.contains("y2.npy"), "{e}");

    // Lengths: wrong count, too long, negative, not a sequence layout.
    let l = npy(p, "l2.npy", "<i8", &[2], &i64_le(&[1, 1]));
    let e = err_text(load_nt(&x, Some(&l)));
    assert!(
        e.contains("l2.npy") && e.contains("one length per sample"),
        "{e}"
    );
    let l = npy(p, "l5.npy", "<i8", &[3], &i64_le(&[1, 5, 1]));
    let e = err_text(load_nt(&x, Some(&l)));
    assert!(
        e.contains("l5.npy") && e.contains("element 1") && e.contains("0 to 4"),
        "{e}"
    );
    let l = npy(p, "ln.npy", "<f4", &[3], &f32_le(&[1.0, 2.5, 1.0]));
    let e = err_text(load_nt(&x, Some(&l)));
    assert!(e.contains("2.5, not a length"), "{e}");
    let e = err_text(load_npy_with_lengths(
        &x,
        &y,
        Some(&l),
        Layout::Auto,
        None,
        "t",
    ));
    assert!(
        e.contains("not a sequence layout") && e.contains("nt"),
        "{e}"
    );

    // Ids must be whole and not negative; the byte offset points at the bad element.
    let bytes = npy_bytes(
        "<i8",
        false,
        &[3, 4],
        &i64_le(&[2, 2, 2, 2, 2, -3, 2, 2, 2, 2, 2, 2]),
    );
    let at = format!("byte offset {}", bytes.len() - 96 + 40);
    let x = write(p, "neg.npy", &bytes);
    let e = err_text(load_nt(&x, None));
    assert!(
        e.contains("neg.npy") && e.contains(&at) && e.contains("-3, not a token id"),
        "{e}"
    );
    let x = npy(p, "frac.npy", "<f4", &[3, 4], &f32_le(&[0.5; 12]));
    assert!(err_text(load_nt(&x, None)).contains("0.5, not a token id"));

    // Rank: token ids are [N, T].
    let x = npy(p, "r3.npy", "<i8", &[3, 2, 2], &i64_le(&[1; 12]));
    let e = err_text(load_nt(&x, None));
    assert!(e.contains("rank 3") && e.contains("needs rank 2"), "{e}");

    // Config: lengths keys only where they apply.
    let x = write(p, "x.npy", &full);
    let mut c = npy_cfg(x.clone(), y.clone(), Layout::Nt);
    c.test_lengths = Some(x.clone());
    let e = err_text(load(&c, 0));
    assert!(
        e.contains("[data] `test_lengths`") && e.contains("test_images"),
        "{e}"
    );
    let mut c = npy_cfg(x.clone(), y.clone(), Layout::Auto);
    c.format = Some(Format::Idx);
    c.train_lengths = Some(x);
    let e = err_text(load(&c, 0));
    assert!(
        e.contains("[data] `train_lengths`") && e.contains("not used by `idx`"),
        "{e}"
    );
}

#[test]
fn dataset_constructors_for_sequences() {
    let ids = Array2::from_shape_vec((2, 3), vec![0, 1, 4, 2, 3, 0]).unwrap();
    let d = Dataset::token_ids("t", &ids, vec![0, 1], 2, 5).unwrap();
    assert_eq!((d.sample_shape(), d.vocab_size), (vec![3], Some(5)));
    assert_eq!(d.images.as_slice().unwrap(), &[0., 1., 4., 2., 3., 0.]);
    let e = err_text(Dataset::token_ids("t", &ids, vec![0, 1], 2, 4));
    assert!(e.contains("token id 4 of sample 0, step 2"), "{e}");
    let e = err_text(Dataset::token_ids("t", &ids, vec![0, 1], 2, 1));
    assert!(e.contains("vocabulary size 1"), "{e}");
    let v = Array3::from_shape_fn((2, 4, 3), |(i, t, f)| (i * 100 + t * 10 + f) as f32);
    let d = Dataset::sequence("s", v.clone(), vec![1, 0], 2).unwrap();
    assert_eq!(d.sample_shape(), vec![4, 3]);
    assert_eq!(d.images[[1, 3, 2, 0]], 132.0);
    assert_eq!(d.feature_axis(), 2);
    assert!(!d.is_token_ids());
    // Batches as networks take them: [N, T, F] for features, [N, T] for ids, images as stored.
    let b = d.network_batch(d.images.clone());
    assert_eq!(b.shape(), &[2, 4, 3]);
    assert_eq!(b[[1, 3, 2]], 132.0);
    let ids = Dataset::token_ids("t", &ids, vec![0, 1], 2, 5).unwrap();
    let b = ids.network_batch(ids.images.slice(ndarray::s![1.., .., .., ..]).to_owned());
    assert_eq!(b.shape(), &[1, 3]);
    assert_eq!(b.as_slice().unwrap(), &[2., 3., 0.]);
    let digits = nas_data::digits();
    let b = digits.network_batch(digits.images.clone());
    assert_eq!(b.shape(), &[1797, 1, 8, 8]);
}

fn text_cfg(train: &Path, test: Option<&Path>, extra: &str) -> DataConfig {
    let test = test.map_or(String::new(), |t| format!("test = \"{}\"\n", t.display()));
    toml::from_str(&format!(
        "format = \"text\"\ntrain = \"{}\"\n{test}{extra}",
        train.display()
    ))
    .unwrap()
}

/// The ids of sample `i` of a split text set.
fn ids(s: &SplitDataset, i: usize) -> Vec<u32> {
    s.data
        .images
        .index_axis(Axis(0), i)
        .iter()
        .map(|&v| v as u32)
        .collect()
}

#[test]
fn text_word_tokens_vocabulary_from_training_file_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(
        dir.path(),
        "reviews.txt",
        "\u{feff}pos\tGood film, good cast!\r\nneg\tBad film.\n\n  neg \tbad, BAD plot\tends\npos\tgood\n"
            .as_bytes(),
    );
    let test = write(dir.path(), "test.txt", b"pos\tgood unseen film\n");
    let s = load(&text_cfg(&train, Some(&test), "validation = 0.0"), 4).unwrap();
    assert_eq!(s.data.name, "reviews");
    assert_eq!(
        s.data.class_names.as_deref(),
        Some(&["neg".to_string(), "pos".to_string()][..])
    );
    assert_eq!(s.data.labels, vec![1, 0, 0, 1, 1]);
    assert_eq!(s.splits.test, vec![4], "the test file is the test set");
    let v = s.vocabulary.as_ref().unwrap();
    // bad 3, good 3, film 2, then the singletons alphabetically; `unseen` is only in the
    // test file.
    assert_eq!(v.tokens(), &["bad", "good", "film", "cast", "ends", "plot"]);
    assert_eq!(s.vocab_size(), Some(8));
    assert_eq!((v.id("good"), v.id("unseen")), (3, UNKNOWN_ID));
    assert_eq!(s.sample_shape(), vec![4], "longest training text: 4 words");
    assert_eq!(ids(&s, 0), vec![3, 4, 3, 5]);
    assert_eq!(ids(&s, 1), vec![2, 4, 0, 0]);
    assert_eq!(
        ids(&s, 2),
        vec![2, 2, 7, 6],
        "text after the first tab, tabs included"
    );
    assert_eq!(ids(&s, 4), vec![3, 1, 4, 0]);
    assert_eq!(s.normalization, Normalization::identity_along(2, 1));
    let batch: Vec<f32> = eval_values(&s, Part::Test);
    assert_eq!(
        batch,
        vec![3., 1., 4., 0.],
        "batches carry the ids unchanged"
    );

    // max_vocab counts padding and unknown; max_len cuts.
    let s = load(
        &text_cfg(
            &train,
            Some(&test),
            "validation = 0.0\nmax_vocab = 4\nmax_len = 2",
        ),
        4,
    )
    .unwrap();
    assert_eq!(s.vocabulary.as_ref().unwrap().tokens(), &["bad", "good"]);
    assert_eq!(s.vocab_size(), Some(4));
    assert_eq!(ids(&s, 0), vec![3, 1]);
    assert_eq!(ids(&s, 2), vec![2, 2]);
}

#[test]
fn text_char_tokens_keep_case_and_spaces() {
    assert_eq!(tokenize("Ab a", Tokenize::Char), vec!["A", "b", " ", "a"]);
    assert_eq!(
        tokenize("Ça VA? it's 2x—ok", Tokenize::Word),
        vec!["ça", "va", "it", "s", "2x", "ok"]
    );
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "c.txt", b"x\taab\ny\tbA\n");
    let s = load(
        &text_cfg(
            &train,
            None,
            "tokenize = \"char\"\nvalidation = 0.0\ntest_fraction = 0.0",
        ),
        0,
    )
    .unwrap();
    let v = s.vocabulary.as_ref().unwrap();
    assert_eq!(
        v.tokens(),
        &["a", "b", "A"],
        "a 2, b 2, A 1; ties by code point"
    );
    assert_eq!(v.tokenization(), Tokenize::Char);
    assert_eq!(ids(&s, 0), vec![2, 2, 3]);
    assert_eq!(ids(&s, 1), vec![3, 4, 0]);
    assert_eq!(v.encode("Abz", 5), vec![4, 3, 1, 0, 0]);
}

#[test]
fn text_vocabulary_sees_the_training_split_only() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..20)
        .map(|i| format!("{}\tcommon word{i}\n", i % 2))
        .collect();
    let train = write(dir.path(), "t.txt", lines.as_bytes());
    let cfg = text_cfg(&train, None, "validation = 0.25\ntest_fraction = 0.2");
    let s = load(&cfg, 11).unwrap();
    let sp = &s.splits;
    assert_eq!(
        (sp.train.len(), sp.validation.len(), sp.test.len()),
        (12, 4, 4)
    );
    let v = s.vocabulary.as_ref().unwrap();
    assert_eq!(
        v.size(),
        2 + 1 + 12,
        "common plus one word per training sample"
    );
    assert_eq!(v.tokens()[0], "common");
    for &i in &sp.train {
        let got = ids(&s, i);
        assert!(got[0] == 2 && got[1] >= 3, "train sample {i}: {got:?}");
    }
    for &i in sp.validation.iter().chain(&sp.test) {
        assert_eq!(ids(&s, i), vec![2, UNKNOWN_ID], "held-out sample {i}");
    }
    // Same seed, same ids; another seed holds out other samples.
    assert_eq!(load(&cfg, 11).unwrap().data, s.data);
    assert_ne!(load(&cfg, 12).unwrap().data.images, s.data.images);
}

#[test]
fn broken_text_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let err = |name: &str, body: &[u8], extra: &str| {
        let f = write(p, name, body);
        err_text(load(&text_cfg(&f, None, extra), 0))
    };
    let e = err("tab.txt", b"a\tone\nb\ttwo\nthree without tab\n", "");
    assert!(
        e.contains("tab.txt")
            && e.contains("line 3")
            && e.contains("no tab")
            && e.contains("label<TAB>text"),
        "{e}"
    );
    let e = err("utf.txt", b"a\tok\nb\tbad \xff byte\n", "");
    assert!(
        e.contains("line 2") && e.contains("byte 7") && e.contains("UTF-8"),
        "{e}"
    );
    let e = err("label.txt", b"a\tok\n \tno label\n", "");
    assert!(e.contains("line 2, column 1") && e.contains("label"), "{e}");
    let e = err("empty.txt", b"\n\n", "");
    assert!(e.contains("empty.txt") && e.contains("no samples"), "{e}");
    let e = err("ok.txt", b"a\tx\nb\ty\nc\tz\n", "classes = 2");
    assert!(
        e.contains("[data] `classes`") && e.contains("a, b, c"),
        "{e}"
    );
    let e = err("ok.txt", b"a\tx\nb\ty\n", "max_vocab = 2");
    assert!(
        e.contains("[data] `max_vocab`") && e.contains("at least 3"),
        "{e}"
    );
    let e = err("ok.txt", b"a\tx\nb\ty\n", "max_len = 0");
    assert!(e.contains("[data] `max_len`"), "{e}");
    let e = err("ok.txt", b"a\tx\nb\ty\n", "augment = true");
    assert!(
        e.contains("[data] `augment`") && e.contains("token ids"),
        "{e}"
    );
    let e = err("ok.txt", b"a\tx\nb\ty\n", "as_sequence = true");
    assert!(e.contains("[data] `as_sequence`"), "{e}");
    let e = err("ok.txt", b"a\tx\nb\ty\n", "header = true");
    assert!(
        e.contains("[data] `header`") && e.contains("not used by `text`"),
        "{e}"
    );
    let e = err("missing.txt", b"", "");
    assert!(e.contains("missing.txt") && e.contains("no samples"), "{e}");
    let e = err_text(load(&text_cfg(&p.join("nowhere.txt"), None, ""), 0));
    assert!(
        e.contains("cannot read") && e.contains("nowhere.txt"),
        "{e}"
    );

    // Text keys belong to text only.
    let c: DataConfig = toml::from_str("dataset = \"digits\"\ntokenize = \"word\"").unwrap();
    let e = err_text(load(&c, 0));
    assert!(
        e.contains("[data] `tokenize`") && e.contains("not used by `digits`"),
        "{e}"
    );
    let e = toml::from_str::<DataConfig>("format = \"text\"\ntokenize = \"bytes\"").unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
    let e = toml::from_str::<DataConfig>("format = \"text\"\nmax_tokens = 3").unwrap_err();
    assert!(e.to_string().contains("max_tokens"), "{e}");
}

#[test]
fn images_as_sequences_of_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (n, h, w) = (6, 3, 4);
    let pixels: Vec<u8> = (0..n * h * w).map(|i| pixel(i / (h * w), i)).collect();
    let xi = write(
        dir.path(),
        "x.idx",
        &idx_bytes(&[n as u32, h as u32, w as u32], &pixels),
    );
    let yi = write(
        dir.path(),
        "y.idx",
        &idx_bytes(&[n as u32], &[0, 1, 0, 1, 0, 1]),
    );
    let mut c = npy_cfg(xi, yi, Layout::Auto);
    c.format = Some(Format::Idx);
    c.test_fraction = None;
    c.validation = 0.25;
    let images = load(&c, 2).unwrap();
    c.as_sequence = true;
    let s = load(&c, 2).unwrap();
    assert_eq!(s.data.kind, DataKind::Sequence);
    assert_eq!((s.sample_shape(), s.input_shape()), (vec![h, w], [h, w, 1]));
    assert_eq!(
        s.data.images.as_slice(),
        images.data.images.as_slice(),
        "rows become steps in the same order"
    );
    assert_eq!(
        s.splits, images.splits,
        "the split does not depend on the shape"
    );
    // Statistics per column (feature), over the rows and training samples.
    assert_eq!(s.normalization.channels(), w);
    let col = 2;
    let v: Vec<f64> = s
        .splits
        .train
        .iter()
        .flat_map(|&i| (0..h).map(move |r| (i, r)))
        .map(|(i, r)| f64::from(pixels[(i * h + r) * w + col]))
        .collect();
    let m = v.iter().sum::<f64>() / v.len() as f64;
    assert!((f64::from(s.normalization.mean[col]) - m).abs() < 1e-4);

    let d = load(
        &toml::from_str("dataset = \"digits\"\nas_sequence = true").unwrap(),
        0,
    )
    .unwrap();
    assert_eq!(d.sample_shape(), vec![8, 8]);

    c.augment = true;
    let e = err_text(load(&c, 2));
    assert!(
        e.contains("[data] `augment`") && e.contains("float sequences"),
        "{e}"
    );

    // Three channels or a table cannot be read row by row.
    let rgb = npy(dir.path(), "rgb.npy", "|u1", &[2, 4, 4, 3], &[7; 96]);
    let y = npy(dir.path(), "y.npy", "<i8", &[2], &i64_le(&[0, 1]));
    let mut c = npy_cfg(rgb, y.clone(), Layout::Auto);
    c.as_sequence = true;
    let e = err_text(load(&c, 0));
    assert!(
        e.contains("[data] `as_sequence`") && e.contains("3 channels"),
        "{e}"
    );
    let table = npy(dir.path(), "tab.npy", "<f4", &[2, 3], &f32_le(&[1.0; 6]));
    let mut c = npy_cfg(table, y, Layout::Auto);
    c.as_sequence = true;
    let e = err_text(load(&c, 0));
    assert!(
        e.contains("[data] `as_sequence`") && e.contains("tabular"),
        "{e}"
    );
}

/// Float sequences loaded with lengths are padded: the normalization's statistics leave the
/// padding steps out, and batches and `apply` keep those steps at 0 (so a network can mask
/// them), while every other step is normalized as usual.
#[test]
fn padded_float_sequences_keep_their_padding_through_normalization() {
    let dir = tempfile::tempdir().unwrap();
    let (n, t, f) = (4, 3, 2);
    // Real values 1..=24 (never 0); lengths 3, 1, 2, 3.
    let values: Vec<f32> = (1..=n * t * f).map(|v| v as f32).collect();
    let x = npy(dir.path(), "x.npy", "<f4", &[n, t, f], &f32_le(&values));
    let y = npy(dir.path(), "y.npy", "<i8", &[n], &i64_le(&[0, 1, 0, 1]));
    let lengths = [3usize, 1, 2, 3];
    let l = npy(
        dir.path(),
        "l.npy",
        "<i8",
        &[n],
        &i64_le(&lengths.map(|v| v as i64)),
    );
    let mut c = npy_cfg(x.clone(), y.clone(), Layout::Ntf);
    c.train_lengths = Some(l);
    let s = load(&c, 3).unwrap();
    assert!(s.is_padded() && s.data.is_padded());
    let norm = &s.normalization;
    assert!(norm.keep_padding, "{norm:?}");
    // Statistics over the 9 real steps only.
    for k in 0..f {
        let real: Vec<f64> = (0..n)
            .flat_map(|i| (0..lengths[i]).map(move |step| (i, step)))
            .map(|(i, step)| f64::from(values[(i * t + step) * f + k]))
            .collect();
        assert_eq!(real.len(), 9);
        let m = real.iter().sum::<f64>() / 9.0;
        let sd = (real.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 9.0).sqrt();
        assert!((f64::from(norm.mean[k]) - m).abs() < 1e-4, "{norm:?} {m}");
        assert!((f64::from(norm.std[k]) - sd).abs() < 1e-4, "{norm:?} {sd}");
    }
    let got = eval_values(&s, Part::Train);
    let mut applied = s.part(Part::Train).images;
    norm.apply(&mut applied);
    assert_eq!(applied.iter().copied().collect::<Vec<_>>(), got);
    let raw = s.part(Part::Train).images;
    for (i, &len) in s.splits.train.iter().map(|i| &lengths[*i]).enumerate() {
        for step in 0..t {
            for k in 0..f {
                let v = got[(i * t + step) * f + k];
                if step < len {
                    let want = (raw[[i, step, k, 0]] - norm.mean[k]) / norm.std[k];
                    assert_eq!(v, want, "sample {i} step {step}");
                } else {
                    assert_eq!(v, 0.0, "padding of sample {i} step {step}");
                }
            }
        }
    }
    let text = toml::to_string(norm).unwrap();
    assert!(text.contains("keep_padding = true"), "{text}");
    assert_eq!(&toml::from_str::<Normalization>(&text).unwrap(), norm);

    // Without lengths nothing is padding.
    let plain = load(&npy_cfg(x, y, Layout::Ntf), 3).unwrap();
    assert!(!plain.is_padded() && !plain.normalization.keep_padding);
}
