use super::*;
use serde_json::json;

fn row(hash: &str, archs: &[&str], curve: &[f64]) -> Row {
    Row {
        hash: hash.into(),
        archs: archs.iter().map(|a| a.to_string()).collect(),
        trial: 1,
        params: 100.0,
        flops: 1000.0,
        val_accuracy: curve.to_vec(),
        train_seconds: (1..=curve.len()).map(|e| e as f64 * 0.5).collect(),
        val_loss: Some(0.3),
        train_loss: Some(0.2),
        train_accuracy: Some(0.9),
        test_accuracy: Some(0.8),
        test_loss: Some(0.4),
        error: None,
    }
}

fn table() -> Table {
    let mut failed = row("c", &["z"], &[]);
    failed.error = Some("training diverged".into());
    failed.test_accuracy = None;
    Table {
        format: FORMAT.into(),
        version: VERSION,
        name: "t".into(),
        space: json!({"kind": "cell"}),
        data: json!({"dataset": "digits"}),
        evaluator: json!({"epochs": 2}),
        seed: 3,
        epochs: 2,
        archs_in_space: 4,
        networks_in_space: 3,
        config: "[study]\n".into(),
        sample: None,
        rows: vec![
            row("a", &["x", "y"], &[0.5, 0.75]),
            row("b", &["w"], &[0.25, 0.875]),
            failed,
        ],
    }
}

#[test]
fn round_trips_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let t = table();
    for name in ["t.json", "t.json.gz"] {
        let path = dir.path().join(name);
        t.write(&path).unwrap();
        assert_eq!(Table::read(&path).unwrap(), t, "{name}");
        assert!(!path.with_extension("partial").exists());
    }
    let plain = std::fs::metadata(dir.path().join("t.json")).unwrap().len();
    let gz = std::fs::metadata(dir.path().join("t.json.gz"))
        .unwrap()
        .len();
    assert!(gz < plain, "gzip {gz} vs plain {plain}");
}

#[test]
fn lookups_and_optimum() {
    let t = table();
    let i = t.index();
    assert_eq!(i.by_arch["y"], 0);
    assert_eq!(i.by_arch["w"], 1);
    assert_eq!(i.by_hash["c"], 2);
    assert_eq!(t.rows[0].val_accuracy_at(1), Some(0.5));
    assert_eq!(t.rows[0].val_accuracy_at(0), None);
    assert_eq!(t.rows[0].val_accuracy_at(3), None);
    assert_eq!(t.rows[1].seconds_at(2), Some(1.0));
    let o = t.optimum();
    assert_eq!((o.val_accuracy, o.test_accuracy), (0.875, 0.8));
}

#[test]
fn wrong_files_are_named_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.json.gz");
    table().write(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.json.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Table::read(&cut).unwrap_err();
    assert!(e.contains("cut.json.gz") && e.contains("truncated"), "{e}");

    let e = Table::read(&dir.path().join("missing.json")).unwrap_err();
    assert!(
        e.contains("cannot open table") && e.contains("missing.json"),
        "{e}"
    );

    let e = Table::from_json(br#"{"format": "nb201"}"#).unwrap_err();
    assert!(e.contains("not a `nas-table` file"), "{e}");
    let mut v = serde_json::to_value(table()).unwrap();
    v["version"] = json!(2);
    let e = Table::from_json(v.to_string().as_bytes()).unwrap_err();
    assert!(
        e.contains("version Some(2)") && e.contains("reads version 1"),
        "{e}"
    );

    let mut t = table();
    t.rows[1].val_accuracy.pop();
    let e = Table::from_json(serde_json::to_string(&t).unwrap().as_bytes()).unwrap_err();
    assert!(
        e.contains("row b has 1 validation accuracies for 2 epochs"),
        "{e}"
    );
}

#[test]
fn a_complete_table_weighs_rows_by_their_architectures() {
    assert_eq!(table().arch_weights(), vec![2, 1, 1]);
}

#[test]
fn a_sample_weighs_rows_by_the_inverse_chance_of_drawing_them() {
    let mut t = table();
    t.sample = Some(Sample { draws: 1 });
    // One draw of four architectures hits `a` (two of them) with p = 1/2, `b` with 1/4.
    assert_eq!(t.arch_weights(), vec![4, 4, 4]);
    // Many draws hit every network: the weights become the complete table's.
    t.sample = Some(Sample { draws: 1000 });
    assert_eq!(t.arch_weights(), vec![2, 1, 1]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json.gz");
    t.write(&path).unwrap();
    assert_eq!(
        Table::read(&path).unwrap().sample,
        Some(Sample { draws: 1000 })
    );
}

/// The weights make a sample's percentiles estimate the space's even when one network stands
/// for many architectures (drawn far more often than the rest): averaged over many seeded
/// samples, the weighted share of architectures below a threshold matches the space's, where
/// counting each sampled network once misses it badly.
#[test]
fn weighted_sample_percentiles_estimate_the_space() {
    use rand::seq::index::sample;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    // 1,000 architectures: 300 build one degenerate network (accuracy 0.1), the other 700 are
    // distinct networks with accuracies spread over 0.2..0.9.
    let value = |arch: usize| {
        if arch < 300 {
            0.1
        } else {
            0.2 + 0.7 * (arch - 300) as f64 / 700.0
        }
    };
    let network = |arch: usize| if arch < 300 { 0 } else { arch - 299 };
    let truth = (0..1000).filter(|&a| value(a) < 0.5).count() as f64 / 1000.0;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut weighted, mut naive, runs) = (0.0, 0.0, 400);
    for _ in 0..runs {
        let draws = rng.random_range(40..120);
        let mut rows: Vec<Row> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for arch in sample(&mut rng, 1000, draws) {
            if seen.insert(network(arch)) {
                let archs: Vec<String> = if network(arch) == 0 {
                    (0..300).map(|a| a.to_string()).collect()
                } else {
                    vec![arch.to_string()]
                };
                let mut r = row(&arch.to_string(), &[], &[]);
                r.archs = archs;
                r.test_accuracy = Some(value(arch));
                rows.push(r);
            }
        }
        let t = Table {
            archs_in_space: 1000,
            networks_in_space: 701,
            sample: Some(Sample {
                draws: draws as u64,
            }),
            rows,
            ..table()
        };
        let w = t.arch_weights();
        let below = |weights: &[usize]| {
            let total: usize = weights.iter().sum();
            let low: usize = t
                .rows
                .iter()
                .zip(weights)
                .filter(|(r, _)| r.test_accuracy.unwrap() < 0.5)
                .map(|(_, w)| w)
                .sum();
            low as f64 / total as f64
        };
        weighted += below(&w);
        naive += below(&vec![1; w.len()]);
    }
    let (weighted, naive) = (weighted / runs as f64, naive / runs as f64);
    assert!((weighted - truth).abs() < 0.02, "{weighted} vs {truth}");
    assert!((naive - truth).abs() > 0.1, "{naive} vs {truth}");
}
