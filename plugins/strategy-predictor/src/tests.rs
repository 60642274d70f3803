use nas_plugin::conformance;
use nas_plugin::kit::rand::SeedableRng;
use nas_plugin::kit::rand_chacha::ChaCha8Rng;
use nas_plugin::{Choice, Direction, Metrics, Objective};
use serde_json::json;

use super::*;

const OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

fn categorical(name: &str, options: &[&str]) -> Choice {
    Choice {
        name: name.into(),
        kind: ChoiceKind::Categorical {
            options: options.iter().map(|o| o.to_string()).collect(),
        },
    }
}

/// The descriptor of the `cell` space: six edges `edge_<to>_<from>` of five operations.
fn cell_space() -> SpaceDescriptor {
    let edges = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];
    SpaceDescriptor {
        kind: "cell".into(),
        choices: (edges.iter())
            .map(|(to, from)| categorical(&format!("edge_{to}_{from}"), &OPS))
            .collect(),
    }
}

/// One choice of every kind, plus one that cannot change.
fn mixed_space() -> SpaceDescriptor {
    SpaceDescriptor {
        kind: "test".into(),
        choices: vec![
            categorical("op", &["a", "b", "c", "d"]),
            Choice {
                name: "depth".into(),
                kind: ChoiceKind::Integer { low: 1, high: 8 },
            },
            Choice {
                name: "dropout".into(),
                kind: ChoiceKind::Float {
                    low: 0.0,
                    high: 0.5,
                    log: false,
                },
            },
            Choice {
                name: "lr".into(),
                kind: ChoiceKind::Float {
                    low: 1e-4,
                    high: 1e-1,
                    log: true,
                },
            },
            categorical("fixed", &["only"]),
        ],
    }
}

fn objective() -> Vec<Objective> {
    vec![Objective {
        metric: "val_accuracy".into(),
        direction: Direction::Maximize,
    }]
}

fn strategy_on(
    space: SpaceDescriptor,
    config: serde_json::Value,
) -> Result<Predictor, PluginError> {
    Predictor::new(StrategyContext {
        space,
        objectives: objective(),
        seed: 7,
        config,
    })
}

fn observation(id: u64, values: &[f64], state: TrialState, loss: Option<f64>) -> Observation {
    Observation {
        trial_id: id,
        values: values.to_vec(),
        fidelity: None,
        state,
        losses: loss.into_iter().collect(),
        metrics: Metrics::new(),
        proposer: "random".into(),
    }
}

/// A synthetic NB201-like loss: per-edge operation costs, plus a bonus for every
/// input-to-output path made of convolutions only (an interaction a sum of one-hot
/// weights cannot express).
fn cell_loss(v: &[f64]) -> f64 {
    const COST: [f64; 5] = [0.9, 0.5, 0.2, 0.0, 0.6];
    let edge_cost: f64 = v.iter().map(|&o| COST[o as usize]).sum();
    let conv = |e: usize| v[e] == 2.0 || v[e] == 3.0;
    // Paths 0->3, 0->1->3, 0->2->3, 0->1->2->3 as edge indices.
    let paths: [&[usize]; 4] = [&[3], &[0, 4], &[1, 5], &[0, 2, 5]];
    let conv_paths = paths.iter().filter(|p| p.iter().all(|&e| conv(e))).count();
    edge_cost - 0.7 * conv_paths as f64
}

/// A smooth loss on the mixed space.
fn mixed_loss(v: &[f64]) -> f64 {
    let op = [0.3, 0.0, 0.8, 0.5][v[0] as usize];
    let depth = ((v[1] - 5.0) / 3.0).powi(2);
    let dropout = (v[2] - 0.2).abs() * 2.0;
    let lr = ((v[3].log10() + 2.5) / 1.5).powi(2);
    op + depth + dropout + lr
}

/// Spearman rank correlation (ties get their mean rank).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(x: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
        let mut r = vec![0.0; x.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let (ma, sa) = stats(&ra);
    let (mb, sb) = stats(&rb);
    let cov = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / ra.len() as f64;
    cov / (sa * sb)
}

/// Trains on `train` random points of `space` and returns the Spearman correlation of the
/// predictions with the truth on 300 other points.
fn held_out_spearman(space: SpaceDescriptor, loss: fn(&[f64]) -> f64, train: usize) -> f64 {
    let mut s = strategy_on(space.clone(), json!({})).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut seen = BTreeSet::new();
    let mut points = Vec::new();
    while points.len() < train + 300 {
        let p = kit::sample_point(&space, &mut rng);
        if seen.insert(bits(&p)) {
            points.push(p);
        }
    }
    let (fit, test) = points.split_at(train);
    let told: Vec<Observation> = (fit.iter().enumerate())
        .map(|(i, p)| observation(i as u64, p, TrialState::Complete, Some(loss(p))))
        .collect();
    s.tell(&told).unwrap();
    s.fit();
    let predicted: Vec<f64> = test.iter().map(|p| s.predict(p).unwrap()).collect();
    let truth: Vec<f64> = test.iter().map(|p| loss(p)).collect();
    let rho = spearman(&predicted, &truth);
    eprintln!("held-out Spearman {rho:.3} ({train} training points)");
    rho
}

/// Quick settings for tests that drive many proposals in a debug build.
fn quick() -> serde_json::Value {
    json!({ "initial": 4, "ensemble": 3, "hidden": [8], "steps": 10, "pool": 20 })
}

#[test]
fn conforms_to_the_strategy_contract() {
    conformance::check::<Predictor>(quick());
    conformance::check::<Predictor>(json!({
        "initial": 3, "ensemble": 2, "hidden": [6, 6], "steps": 5, "pool": 10,
        "acquisition": "ei", "refit_every": 2, "mutation": 1.0
    }));
    conformance::check::<Predictor>(json!({
        "initial": 5, "ensemble": 2, "hidden": [4], "steps": 5, "pool": 8,
        "acquisition": "ucb", "encoding": "onehot", "mutation": 0.0
    }));
}

/// Threshold 0.9: the cell loss is a sum of per-edge costs plus path interactions, with a
/// few dozen distinct levels; trained on 150 random cells (1 % of the space) the default
/// ensemble measured 0.987 on 300 held-out cells, a surrogate that learned nothing is near 0,
/// and a regression to the mean of the losses is undefined (no spread), so 0.9 fails on a
/// broken fit, encoding or ranking while leaving room for a change of the defaults.
#[test]
fn the_surrogate_ranks_held_out_cells() {
    let rho = held_out_spearman(cell_space(), cell_loss, 150);
    assert!(rho > 0.9, "Spearman on held-out cells: {rho:.3}");
}

/// The scaled-value encoding of integer and float choices (log scale for `lr`): trained on
/// 200 points, the sum of four bowls was ranked at 0.992 on 300 held-out points; threshold
/// 0.9 as above.
#[test]
fn the_surrogate_ranks_held_out_points_of_a_mixed_space() {
    let rho = held_out_spearman(mixed_space(), mixed_loss, 200);
    assert!(rho > 0.9, "Spearman on held-out mixed points: {rho:.3}");
}

#[test]
fn the_cell_space_gets_the_path_encoding_and_other_spaces_do_not() {
    let cell = cell_space();
    let path = encoding::PathEncoding::detect(&cell).expect("the cell DAG is recognised");
    assert_eq!(path.paths(), 4);
    // 4 non-`none` operations: paths of 1, 2, 2 and 3 edges.
    assert_eq!(path.len, 4 + 16 + 16 + 64);
    let s = strategy_on(cell.clone(), json!({})).unwrap();
    assert!(s.encoder().has_path());
    assert_eq!(s.encoder().len(), 30 + 100);
    // The path of the all-`none` cell is empty; a conv-only cell has all four paths.
    let e = s.encoder().encode(&[0.0; 6]);
    assert_eq!(e[30..].iter().sum::<f64>(), 0.0);
    let e = s.encoder().encode(&[3.0; 6]);
    assert_eq!(e[30..].iter().sum::<f64>(), 4.0);

    let mut renamed = cell.clone();
    renamed.choices[2].name = "stage2.op".into();
    assert!(encoding::PathEncoding::detect(&renamed).is_none());
    let mut cyclic = cell;
    cyclic.choices[0].name = "edge_0_1".into();
    assert!(encoding::PathEncoding::detect(&cyclic).is_none());
    assert!(encoding::PathEncoding::detect(&mixed_space()).is_none());
    let e = strategy_on(mixed_space(), json!({ "encoding": "path" }))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("predictor option `encoding`") && e.contains("not a cell DAG"),
        "{e}"
    );
}

#[test]
fn options_are_checked_with_clear_messages() {
    assert!(strategy_on(cell_space(), json!({ "mutation": 1, "initial": 0 })).is_ok());
    for (bad, says) in [
        (
            json!({ "pool_size": 10 }),
            "no option `pool_size`; accepted options: `initial`",
        ),
        (
            json!({ "acquisition": "pi" }),
            "`acquisition` must be one of `its`, `ucb`, `ei`, `mean`",
        ),
        (
            json!({ "mutation": 1.5 }),
            "`mutation` must be a number in [0, 1], not `1.5`",
        ),
        (
            json!({ "ensemble": 0 }),
            "`ensemble` must be a positive integer, not `0`",
        ),
        (
            json!({ "hidden": [] }),
            "`hidden` must be a list of 1 to 4 layer widths",
        ),
        (json!({ "hidden": 32 }), "`hidden` must be"),
        (
            json!({ "encoding": "graph" }),
            "`encoding` must be one of `auto`, `onehot`, `path`",
        ),
        (json!({ "features": "synflow" }), "`features` must be"),
        (
            json!({ "features": [""] }),
            "`features` must list metric names",
        ),
    ] {
        let e = strategy_on(cell_space(), bad.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with(NAME) && e.contains(says), "{bad}: {e}");
    }
}

/// Runs `trials` proposals against `loss` on `space`, telling each result; returns the
/// best loss found and every proposed vector.
fn search(s: &mut Predictor, loss: fn(&[f64]) -> f64, trials: u64) -> (f64, Vec<Vec<f64>>) {
    let mut best = f64::INFINITY;
    let mut proposed = Vec::new();
    for id in 0..trials {
        let Some(p) = s.ask(1).unwrap().pop() else {
            break;
        };
        let l = loss(&p.values);
        best = best.min(l);
        s.tell(&[observation(id, &p.values, TrialState::Complete, Some(l))])
            .unwrap();
        proposed.push(p.values);
    }
    (best, proposed)
}

#[test]
fn it_never_proposes_a_seen_candidate_and_stops_when_all_are_seen() {
    let space = SpaceDescriptor {
        kind: "small".into(),
        choices: vec![
            categorical("a", &["x", "y", "z"]),
            categorical("b", &["x", "y"]),
        ],
    };
    let mut s = strategy_on(
        space,
        json!({ "initial": 2, "hidden": [4], "steps": 5, "pool": 50 }),
    )
    .unwrap();
    let (_, proposed) = search(&mut s, |v| v[0] - v[1], 100);
    assert_eq!(proposed.len(), 6, "{proposed:?}");
    let distinct: BTreeSet<Vec<u64>> = proposed.iter().map(|v| bits(v)).collect();
    assert_eq!(distinct.len(), 6);
    assert!(s.ask(1).unwrap().is_empty());
}

/// The guided search finds the optimum of the synthetic cell loss (all four paths of
/// 3x3 convolutions) within 80 trials, which random search over 15,625 cells does with
/// probability about 0.5 %.
#[test]
fn it_finds_the_optimum_of_a_synthetic_cell_loss() {
    let mut s = strategy_on(cell_space(), json!({ "steps": 60 })).unwrap();
    let (best, proposed) = search(&mut s, cell_loss, 80);
    let first = proposed.iter().position(|p| cell_loss(p) == best);
    eprintln!("optimum first proposed at trial {first:?}");
    assert_eq!(
        best,
        cell_loss(&[3.0; 6]),
        "best of {} trials",
        proposed.len()
    );
}

#[test]
fn save_and_restore_continue_bit_for_bit_with_the_surrogate() {
    let mut a = strategy_on(cell_space(), json!({ "steps": 30, "acquisition": "its" })).unwrap();
    search(&mut a, cell_loss, 25);
    assert!(a.predict(&[3.0; 6]).is_some(), "the surrogate is fitted");
    let text = serde_json::to_string(&a.save().unwrap()).unwrap();
    let mut b = strategy_on(cell_space(), json!({ "steps": 30, "acquisition": "its" })).unwrap();
    b.restore(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(
        a.predict(&[2.0; 6]).map(f64::to_bits),
        b.predict(&[2.0; 6]).map(f64::to_bits)
    );
    let (_, pa) = search(&mut a, cell_loss, 15);
    let (_, pb) = search(&mut b, cell_loss, 15);
    assert_eq!(pa.len(), 15);
    let key = |v: &Vec<Vec<f64>>| v.iter().map(|p| bits(p)).collect::<Vec<_>>();
    assert_eq!(key(&pa), key(&pb));
    assert_eq!(a.save().unwrap(), b.save().unwrap());

    // A state saved for another space is refused with the reason.
    let mut c = strategy_on(mixed_space(), json!({})).unwrap();
    let e = c
        .restore(serde_json::from_str(&text).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not fit the search space"), "{e}");
}

/// The first objective alone is learned: a second one that disagrees changes nothing.
#[test]
fn only_the_first_objective_is_learned() {
    let fit = |second: bool| {
        let mut s = strategy_on(cell_space(), json!({ "steps": 40 })).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let told: Vec<Observation> = (0..60)
            .map(|i| {
                let p = kit::sample_point(&cell_space(), &mut rng);
                let l = cell_loss(&p);
                let mut o = observation(i, &p, TrialState::Complete, Some(l));
                if second {
                    o.losses.push(-l);
                }
                o
            })
            .collect();
        s.tell(&told).unwrap();
        s.fit();
        s.predict(&[3.0; 6]).unwrap().to_bits()
    };
    assert_eq!(fit(false), fit(true));
}

/// A cheap stage's metric reported on pruned trials becomes an input; the pool candidates
/// get the auxiliary network's prediction of it, the training trials their measured value.
#[test]
fn metrics_of_pruned_trials_become_features() {
    let proxy = |v: &[f64]| -cell_loss(v) * 10.0 + 3.0;
    let make = |config| {
        let mut s = strategy_on(cell_space(), config).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut told = Vec::new();
        for i in 0..80 {
            let p = kit::sample_point(&cell_space(), &mut rng);
            let mut metrics = Metrics::from([("proxy".to_string(), proxy(&p))]);
            metrics.insert("params".into(), 1000.0 + p[0]);
            // The cascade keeps one in four; the others stop at the cheap stage.
            let mut o = if i % 4 == 0 {
                metrics.insert("val_accuracy".into(), -cell_loss(&p));
                observation(i, &p, TrialState::Complete, Some(cell_loss(&p)))
            } else {
                observation(i, &p, TrialState::Pruned, None)
            };
            o.metrics = metrics;
            told.push(o);
        }
        s.tell(&told).unwrap();
        s.fit();
        s
    };
    let auto = make(json!({ "steps": 40 }));
    assert_eq!(auto.features_in_use(), ["params", "proxy"]);
    let named = make(json!({ "steps": 40, "features": ["proxy"] }));
    assert_eq!(named.features_in_use(), ["proxy"]);
    let none = make(json!({ "steps": 40, "features": [] }));
    assert!(none.features_in_use().is_empty());
    // The objective is never a feature, even when named by a pruned trial.
    assert!(!auto.features_in_use().contains(&"val_accuracy".to_string()));
    // With the proxy learned from 60 pruned trials on top of 20 complete ones, the best cell
    // is predicted better than by the 20 complete trials alone.
    let best = [3.0; 6];
    let err = |s: &Predictor| (s.predict(&best).unwrap() - cell_loss(&best)).abs();
    eprintln!(
        "error at the best cell: {} with the proxy, {} without",
        err(&named),
        err(&none)
    );
    assert!(
        err(&named) < err(&none),
        "{} vs {}",
        err(&named),
        err(&none)
    );
}
