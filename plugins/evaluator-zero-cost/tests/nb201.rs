//! Acceptance tests on NAS-Bench-201 networks against NASLib's zero-cost scores
//! (tests/data/nb201_zero_cost_subset.json, cifar10 part: 725 architectures).
//!
//! The default run checks parameter counts and synflow's rank agreement on 150 of them; the
//! ignored test computes every proxy on all 725 and compares rank correlations with
//! validation accuracy (`cargo test -p evaluator-zero-cost --release -- --ignored`).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use common::*;
use evaluator_zero_cost::ZeroCostEvaluator;
use evaluator_zero_cost::linalg::spearman;
use evaluator_zero_cost::ranking::fit_ranker;
use nas_plugin::{Evaluator, EvaluatorContext};
use serde_json::{Value, json};

/// NASLib scored with batches of 32 CIFAR-10 images: its `nwot` is about 32 ln(ReLU units)
/// and its `jacov` about -32 for uncorrelated Jacobians.
const NASLIB_BATCH: usize = 32;

fn evaluator(config: Value) -> ZeroCostEvaluator {
    ZeroCostEvaluator::new(EvaluatorContext {
        config,
        runtime: runtime(),
        seed: 0,
        study_dir: std::env::temp_dir().display().to_string(),
        data: Value::Null,
        supernet: None,
    })
    .expect("a valid configuration")
}

/// Every `len / count`-th architecture, `count` of them.
fn spread<T: Clone>(all: &[T], count: usize) -> Vec<T> {
    let step = all.len() as f64 / count as f64;
    (0..count)
        .map(|i| all[(i as f64 * step) as usize].clone())
        .collect()
}

fn naslib_params(arch: &Arch) -> u64 {
    (arch.scores["params"] * 1e6).round() as u64
}

#[test]
fn params_flops_and_synflow_agree_with_naslib_on_150_archs() {
    let space = nb201();
    let archs = spread(&cifar10_archs(), 150);
    let e = evaluator(json!({
        "proxies": ["params", "flops", "synflow"],
        "flops_convention": "naslib",
    }));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut worst_log_gap = 0.0f64;
    for arch in &archs {
        let (m, _) = e.score(&graph_of(&space, arch)).unwrap();
        assert_eq!(
            m["params"] as u64,
            naslib_params(arch),
            "params of {}",
            arch.key
        );
        let file_flops = arch.scores["flops"] * 1e6;
        assert!(
            (m["flops"] - file_flops).abs() < 1.0,
            "flops of {}: ours {}, NASLib {file_flops}",
            arch.key,
            m["flops"]
        );
        // NASLib's file holds ln(synflow) (0 where synflow is 0); one entry has none.
        if let Some(&s) = arch.scores.get("synflow") {
            if s > 0.0 {
                worst_log_gap = worst_log_gap.max((m["synflow"].ln() - s).abs());
            }
            ours.push(m["synflow"]);
            theirs.push(s);
        }
    }
    let rho = spearman(&ours, &theirs);
    println!(
        "synflow on {} archs: Spearman with NASLib {rho:.4}, largest |ln ours - ln NASLib| {worst_log_gap:.3}",
        ours.len()
    );
    assert!(rho >= 0.95, "synflow rank agreement {rho}");
}

/// NASLib's published Spearman correlations with CIFAR-10 validation accuracy on this subset.
const PUBLISHED: &[(&str, &str, f64)] = &[
    ("naswot", "nwot", 0.787),
    ("jacob_cov", "jacov", 0.766),
    ("params", "params", 0.737),
    ("synflow", "synflow", 0.736),
    ("flops", "flops", 0.711),
    ("snip", "snip", 0.608),
    ("grad_norm", "grad_norm", 0.606),
];

/// Every proxy the evaluator computes, in its order (the learned ranking's features).
const PROXIES: &[&str] = evaluator_zero_cost::config::PROXIES;
const SPLITS: u64 = 5;

/// Mean and standard deviation over [`SPLITS`] random splits of the Spearman correlation, on
/// the held-out networks, of the learned ranking trained on `n` of them.
fn held_out_spearman(features: &[Vec<f64>], acc: &[f64], n: usize) -> (f64, f64) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let rhos: Vec<f64> = (0..SPLITS)
        .map(|seed| {
            let mut order: Vec<usize> = (0..acc.len()).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let (train, test) = order.split_at(n);
            let x: Vec<Vec<f64>> = train.iter().map(|&i| features[i].clone()).collect();
            let y: Vec<f64> = train.iter().map(|&i| acc[i]).collect();
            let model = fit_ranker(&x, &y, seed).expect("a fit");
            let predicted: Vec<f64> = test.iter().map(|&i| model.predict(&features[i])).collect();
            let truth: Vec<f64> = test.iter().map(|&i| acc[i]).collect();
            spearman(&predicted, &truth)
        })
        .collect();
    let mean = rhos.iter().sum::<f64>() / rhos.len() as f64;
    let var = rhos.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rhos.len() as f64;
    (mean, var.sqrt())
}

#[test]
#[ignore = "all proxies on 725 networks: run with --release -- --ignored"]
fn proxy_correlations_on_725_archs() {
    let space = nb201();
    let archs = cifar10_archs();
    let e = evaluator(json!({"batch": NASLIB_BATCH}));
    let mut rows: Vec<BTreeMap<String, f64>> = Vec::new();
    let mut seconds = Vec::new();
    let mut per_proxy: BTreeMap<String, f64> = BTreeMap::new();
    for (i, arch) in archs.iter().enumerate() {
        let started = Instant::now();
        let (m, details) = e.score(&graph_of(&space, arch)).unwrap();
        seconds.push(started.elapsed().as_secs_f64());
        for (k, v) in details["seconds"].as_object().unwrap() {
            *per_proxy.entry(k.clone()).or_default() += v.as_f64().unwrap();
        }
        assert_eq!(
            m["params"] as u64,
            naslib_params(arch),
            "params of {}",
            arch.key
        );
        rows.push(m);
        if (i + 1) % 50 == 0 {
            eprintln!("{} / {} scored", i + 1, archs.len());
        }
    }
    let dump: Vec<Value> = archs
        .iter()
        .zip(&rows)
        .map(|(a, m)| json!({"key": a.key, "val_accuracy": a.val_accuracy, "ours": m, "naslib": a.scores}))
        .collect();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("zero_cost_nb201.json");
    std::fs::write(&out, serde_json::to_string(&dump).unwrap()).unwrap();

    let acc: Vec<f64> = archs.iter().map(|a| a.val_accuracy).collect();
    let ours = |name: &str| -> Vec<f64> { rows.iter().map(|m| m[name]).collect() };
    let file = |name: &str| -> Vec<f64> {
        archs
            .iter()
            .map(|a| a.scores.get(name).copied().unwrap_or(f64::NEG_INFINITY))
            .collect()
    };
    let mut report = String::from(
        "# Zero-cost proxies on NAS-Bench-201 (CIFAR-10)\n\n\
         Written by `cargo xtask zero-cost` (the ignored test `proxy_correlations_on_725_archs` \
         of `evaluator-zero-cost`).\n\n",
    );
    writeln!(
        report,
        "Spearman rank correlation with CIFAR-10 validation accuracy, {} NB201 archs (ours: batch \
         {NASLIB_BATCH} of Gaussian inputs with random labels, He-initialised weights; NASLib: \
         CIFAR-10 images):\n",
        archs.len()
    )
    .unwrap();
    writeln!(
        report,
        "| proxy | ours | NASLib file (recomputed) | NASLib published |"
    )
    .unwrap();
    writeln!(report, "|---|---|---|---|").unwrap();
    let mut singles = Vec::new();
    for (name, theirs, published) in PUBLISHED {
        let rho = spearman(&ours(name), &acc);
        singles.push((*name, rho));
        let file_rho = spearman(&file(theirs), &acc);
        writeln!(
            report,
            "| {name} | {rho:.3} | {file_rho:.3} | {published:.3} |"
        )
        .unwrap();
    }
    let zen = spearman(&ours("zen"), &acc);
    singles.push(("zen", zen));
    writeln!(report, "| zen | {zen:.3} | - | - |").unwrap();
    let combined = spearman(&ours("zc_combined"), &acc);
    writeln!(report, "| zc_combined | {combined:.3} | - | - |").unwrap();

    let with_synflow: Vec<usize> = (0..archs.len())
        .filter(|&i| archs[i].scores.contains_key("synflow"))
        .collect();
    let agreement = spearman(
        &with_synflow
            .iter()
            .map(|&i| rows[i]["synflow"])
            .collect::<Vec<_>>(),
        &with_synflow
            .iter()
            .map(|&i| archs[i].scores["synflow"])
            .collect::<Vec<_>>(),
    );
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let max = seconds.iter().copied().fold(0.0, f64::max);
    writeln!(
        report,
        "\nsynflow rank agreement with NASLib (Spearman): {agreement:.4} ({} archs)\n",
        with_synflow.len()
    )
    .unwrap();
    writeln!(
        report,
        "seconds per architecture: mean {mean:.2}, max {max:.2}; per proxy (mean):\n"
    )
    .unwrap();
    for (k, v) in &per_proxy {
        writeln!(report, "- {k}: {:.3}", v / archs.len() as f64).unwrap();
    }
    writeln!(report, "\nper-architecture scores: {}", out.display()).unwrap();

    let ours_features = |with_choices: bool| -> Vec<Vec<f64>> {
        archs
            .iter()
            .zip(&rows)
            .map(|(a, m)| {
                let mut f: Vec<f64> = PROXIES.iter().map(|p| m[*p]).collect();
                if with_choices {
                    f.extend_from_slice(&a.values);
                }
                f
            })
            .collect()
    };
    let naslib_features: Vec<Vec<f64>> = archs
        .iter()
        .map(|a| {
            PUBLISHED
                .iter()
                .map(|(_, theirs, _)| a.scores.get(*theirs).copied().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    writeln!(
        report,
        "\n## Learned combination\n\nThe `rank_by = \"learned\"` model (`fit_ranker`: \
         gradient-boosted trees on the ranks of the labels) trained on n labelled networks, \
         Spearman with validation accuracy on the other {} - n; mean +- std over {SPLITS} \
         random splits (seeds 0..{SPLITS}):\n",
        archs.len()
    )
    .unwrap();
    writeln!(report, "| features | n = 20 | n = 50 | n = 100 |").unwrap();
    writeln!(report, "|---|---|---|---|").unwrap();
    let mut learned_100 = 0.0;
    for (name, features) in [
        ("our proxies + choices (the default)", ours_features(true)),
        ("our proxies", ours_features(false)),
        ("NASLib's 7 proxies (CIFAR-10 images)", naslib_features),
    ] {
        let mut cells = Vec::new();
        for n in [20, 50, 100] {
            let (mean, std) = held_out_spearman(&features, &acc, n);
            if n == 100 && name.ends_with("(the default)") {
                learned_100 = mean;
            }
            cells.push(format!("{mean:.3} +- {std:.3}"));
        }
        writeln!(report, "| {name} | {} |", cells.join(" | ")).unwrap();
    }

    print!("{report}");
    if let Some(path) = std::env::var_os("ZERO_COST_REPORT") {
        std::fs::write(&path, &report).unwrap();
    }
    assert!(agreement >= 0.95, "synflow rank agreement {agreement}");
    assert!(
        learned_100 > combined,
        "the learned ranking on 100 labels ({learned_100:.3}) does not beat zc_combined \
         ({combined:.3})"
    );
    for (name, rho) in singles {
        assert!(
            combined > rho,
            "zc_combined {combined:.3} does not beat {name} {rho:.3}"
        );
    }
}
