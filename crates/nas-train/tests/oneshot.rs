//! One-shot search on a small supernet and the bundled digits: derivation from hand-set
//! architecture weights, single-path scores, and exact resume from a checkpoint.

use nas_data::{DataConfig, SplitDataset};
use nas_graph::{ExtremePaths, GraphBuilder, MixedEdge, NodeId, Op, Supernet};
use nas_runtime::SessionSettings;
use nas_train::oneshot::{
    ArchParams, GdasGradient, Method, OneShotCheckpoint, OneShotConfig, Sandwich, Selection,
    SelectionMetric, SupernetTrainer,
};

fn runtime() -> SessionSettings {
    let lib = nas_runtime::locate_library(None)
        .expect("ONNX Runtime is provisioned (`cargo xtask ort` or ORT_DYLIB_PATH)");
    SessionSettings {
        threads: 2,
        ..SessionSettings::cpu(&lib)
    }
}

fn digits() -> SplitDataset {
    let cfg = DataConfig {
        dataset: Some("digits".into()),
        validation: 0.3,
        ..DataConfig::default()
    };
    nas_data::load(&cfg, 0).unwrap()
}

fn relu_conv_bn(b: &mut GraphBuilder, x: NodeId, k: usize) -> NodeId {
    let r = b.add(Op::Relu, &[x]);
    let c = b.conv(r, 4, k, 1, 1);
    b.batch_norm(c)
}

/// Conv 3x3 to 4 channels and BatchNorm on the 8x8 digits.
fn stem(b: &mut GraphBuilder) -> NodeId {
    let c = b.conv(0, 4, 3, 1, 1);
    b.batch_norm(c)
}

/// ReLU, global average pooling and a linear layer to the 10 classes.
fn head(b: &mut GraphBuilder, x: NodeId) -> NodeId {
    let r = b.add(Op::Relu, &[x]);
    let p = b.add(Op::GlobalAvgPool, &[r]);
    b.add(
        Op::Linear {
            out_features: 10,
            bias: true,
        },
        &[p],
    )
}

/// Stem, edge A {none, skip, conv3x3, avg pool}, edge B {skip, conv1x1} used twice (a
/// repeated cell), head.
fn supernet(aux_skip: bool) -> Supernet {
    let mut b = GraphBuilder::new(&[1, 8, 8]);
    let x = stem(&mut b);
    let mut edges = Vec::new();
    let mut mix = |b: &mut GraphBuilder, mut ins: Vec<NodeId>, input: NodeId, choice: usize| {
        if aux_skip {
            ins.push(input);
        }
        let node = b.add(Op::Mix, &ins);
        edges.push(MixedEdge { node, choice });
        node
    };
    let zero = b.add(Op::Zero, &[x]);
    let skip = b.add(Op::Identity, &[x]);
    let conv = relu_conv_bn(&mut b, x, 3);
    let pool = b.add(
        Op::AvgPool {
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            count_include_pad: false,
        },
        &[x],
    );
    let a = mix(&mut b, vec![zero, skip, conv, pool], x, 0);
    let mut y = a;
    for _ in 0..2 {
        let skip = b.add(Op::Identity, &[y]);
        let conv = relu_conv_bn(&mut b, y, 1);
        y = mix(&mut b, vec![skip, conv], y, 1);
    }
    let bn = b.batch_norm(y);
    let l = head(&mut b, bn);
    let s = Supernet {
        graph: b.finish(l),
        edges,
        options: vec![4, 2],
        aux_skip,
        options_share_weights: false,
        extreme_paths: None,
    };
    s.validate().unwrap();
    s
}

fn config(method: Method, epochs: usize) -> OneShotConfig {
    OneShotConfig {
        method,
        epochs,
        batch: 32,
        weight_lr: 0.05,
        arch_lr: 3e-3,
        seed: Some(5),
        ..OneShotConfig::default()
    }
}

/// A search of `cfg` after `epochs` epochs.
fn trained<'d>(
    net: &Supernet,
    cfg: &OneShotConfig,
    data: &'d SplitDataset,
    epochs: usize,
) -> SupernetTrainer<'d> {
    let mut t = SupernetTrainer::new(net, cfg, &runtime(), data).unwrap();
    for _ in 0..epochs {
        t.train_epoch().unwrap();
    }
    t
}

/// Trains `cfg` one epoch, saves a checkpoint to `path`, drops the trainer, resumes from the
/// file and trains the search to its end; asserts it ends as `straight`, trained without a
/// stop: the same alpha, weights and per-epoch losses and derivations. Returns the resumed
/// search.
fn assert_resumes_exactly<'d>(
    straight: &SupernetTrainer<'_>,
    net: &Supernet,
    cfg: &OneShotConfig,
    data: &'d SplitDataset,
    path: &std::path::Path,
) -> SupernetTrainer<'d> {
    let killed = trained(net, cfg, data, 1);
    killed.checkpoint().unwrap().save(path).unwrap();
    drop(killed);
    let loaded = OneShotCheckpoint::load(path).unwrap();
    let mut resumed = SupernetTrainer::resume(loaded, &runtime(), data).unwrap();
    assert_eq!(resumed.epoch(), 1);
    for _ in 1..cfg.epochs {
        resumed.train_epoch().unwrap();
    }
    let (a, b) = (
        straight.checkpoint().unwrap(),
        resumed.checkpoint().unwrap(),
    );
    let what = cfg.method;
    assert_eq!(a.arch, b.arch, "{what:?}: alpha differs after resume");
    assert_eq!(a.state, b.state, "{what:?}: weights differ after resume");
    let strip = |h: &[nas_train::oneshot::OneShotEpoch]| -> Vec<(f64, Vec<usize>)> {
        h.iter()
            .map(|e| (e.train_loss, e.derived.clone()))
            .collect()
    };
    assert_eq!(strip(&a.history), strip(&b.history));
    resumed
}

#[test]
fn hand_set_architecture_weights_derive_their_argmax_and_paths_score() {
    let data = digits();
    let net = supernet(false);
    let mut t = SupernetTrainer::new(&net, &config(Method::Darts, 1), &runtime(), &data).unwrap();
    t.set_alpha(vec![vec![0.0, 0.1, 2.0, -1.0], vec![0.5, 0.2]])
        .unwrap();
    assert_eq!(t.derive(), vec![2, 0]);
    let err = t.set_alpha(vec![vec![0.0; 4]]).unwrap_err().to_string();
    assert!(err.contains("[4, 2]"), "{err}");
    t.train_epoch().unwrap();
    // Scores read the state and leave it as it was.
    let before = t.checkpoint().unwrap().state;
    let (loss, acc) = t.score(&[2, 1]).unwrap();
    assert!(
        loss.is_finite() && (0.0..=1.0).contains(&acc),
        "{loss} {acc}"
    );
    assert_eq!(
        t.score(&[2, 1]).unwrap(),
        (loss, acc),
        "scores are deterministic"
    );
    assert_eq!(t.checkpoint().unwrap().state, before);
    let err = t.score(&[4, 0]).unwrap_err().to_string();
    assert!(err.contains("one option per choice"), "{err}");
}

#[test]
fn paths_score_on_the_first_validation_images_when_asked() {
    let data = digits();
    let net = supernet(false);
    let mut t = trained(&net, &config(Method::Spos, 1), &data, 1);
    let path = [2, 1];
    let all = t.score(&path).unwrap();
    // Whole batches of 32: 64 and 95 images both score the first two.
    t.set_score_images(Some(64)).unwrap();
    let two = t.score(&path).unwrap();
    t.set_score_images(Some(95)).unwrap();
    assert_eq!(t.score(&path).unwrap(), two);
    assert_ne!(two, all, "two batches scored like the whole split");
    assert!(
        (two.1 * 64.0 - (two.1 * 64.0).round()).abs() < 1e-9,
        "{two:?}"
    );
    t.set_score_images(Some(100_000)).unwrap();
    assert_eq!(t.score(&path).unwrap(), all);
    t.set_score_images(None).unwrap();
    assert_eq!(t.score(&path).unwrap(), all);
    let err = t.set_score_images(Some(31)).unwrap_err().to_string();
    assert!(
        err.contains("score_images") && err.contains("one batch"),
        "{err}"
    );
}

#[test]
fn the_sandwich_rule_trains_its_ends_and_resumes_exactly() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    let plain = supernet(false);
    // Edge A: skip is the smallest option, conv 3x3 the largest; edge B: skip, conv 1x1.
    let ends = ExtremePaths {
        smallest: vec![1, 0],
        largest: vec![2, 1],
    };
    let net = Supernet {
        extreme_paths: Some(ends.clone()),
        ..plain.clone()
    };
    let cfg = |sandwich: Sandwich| OneShotConfig {
        sandwich,
        // Fast enough for two epochs to tell.
        weight_lr: 0.2,
        ..config(Method::Spos, 2)
    };
    let mut without = trained(&net, &cfg(Sandwich::Off), &data, 2);
    let (smallest_without, _) = without.score(&ends.smallest).unwrap();
    let (largest_without, _) = without.score(&ends.largest).unwrap();
    // Trained on every batch, not on one in eight: the ends it trains fit the data better.
    for sandwich in [Sandwich::Both, Sandwich::Largest] {
        let cfg = cfg(sandwich);
        let mut with = trained(&net, &cfg, &data, 2);
        let (largest, _) = with.score(&ends.largest).unwrap();
        assert!(
            largest < largest_without - 0.05,
            "{sandwich:?}: the largest path's validation loss is {largest}, {largest_without} \
             without the rule"
        );
        let (smallest, _) = with.score(&ends.smallest).unwrap();
        if sandwich == Sandwich::Both {
            assert!(
                smallest < smallest_without - 0.05,
                "the smallest path's validation loss is {smallest}, {smallest_without} \
                 without the rule"
            );
        }
        let path = dir.path().join("sandwich.ckpt");
        assert_resumes_exactly(&with, &net, &cfg, &data, &path);
        // A supernet whose options have no size order refuses it, naming the key.
        let err = SupernetTrainer::new(&plain, &cfg, &runtime(), &data)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("sandwich") && err.contains("ordered by size"),
            "{err}"
        );
    }
}

#[test]
fn every_method_learns_and_resumes_exactly() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    for method in Method::ALL {
        let net = supernet(method.aux_skip());
        let cfg = config(method, 3);
        let mut straight = SupernetTrainer::new(&net, &cfg, &runtime(), &data).unwrap();
        let first = straight.train_epoch().unwrap();
        for _ in 1..3 {
            straight.train_epoch().unwrap();
        }
        let last = straight.history().last().unwrap().clone();
        assert!(
            last.train_loss < first.train_loss,
            "{method:?}: loss {} -> {}",
            first.train_loss,
            last.train_loss
        );
        assert_eq!(last.derived.is_empty(), method == Method::Spos);
        if method.learns_alpha() {
            assert!(last.arch_accuracy.is_some());
            let moved = last.probabilities[0]
                .iter()
                .any(|p| (p - 0.25).abs() > 1e-3);
            assert!(
                moved,
                "{method:?}: alpha did not move: {:?}",
                last.probabilities
            );
        }

        // Stop after one epoch, save, load, continue: the same search.
        let path = dir.path().join(format!("{}.ckpt", method.name()));
        assert_resumes_exactly(&straight, &net, &cfg, &data, &path);
    }
}

/// Stem, edge A {skip, skip} (two options computing the same output), edge B {skip,
/// conv1x1}, head.
fn twin_option_supernet() -> Supernet {
    let mut b = GraphBuilder::new(&[1, 8, 8]);
    let x = stem(&mut b);
    let twins = [b.add(Op::Identity, &[x]), b.add(Op::Identity, &[x])];
    let a = b.add(Op::Mix, &twins);
    let skip = b.add(Op::Identity, &[a]);
    let conv = relu_conv_bn(&mut b, a, 1);
    let m = b.add(Op::Mix, &[skip, conv]);
    let l = head(&mut b, m);
    let s = Supernet {
        graph: b.finish(l),
        edges: vec![
            MixedEdge { node: a, choice: 0 },
            MixedEdge { node: m, choice: 1 },
        ],
        options: vec![2, 2],
        aux_skip: false,
        options_share_weights: false,
        extreme_paths: None,
    };
    s.validate().unwrap();
    s
}

#[test]
fn gdas_straight_through_gives_every_option_its_own_output_gradient() {
    // Two options with the same output have the same straight-through gradient, whichever
    // was sampled, so the softmax passes alpha none; the authors' gradient gives the
    // unsampled one the sum of the output gradient instead, and their alpha drift apart.
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    // (how far the twins' and edge B's weights moved in two epochs)
    let moved = |gradient: GdasGradient, shared: bool| {
        let net = Supernet {
            options_share_weights: shared,
            ..twin_option_supernet()
        };
        // `sampled_path_only` stays on: the straight-through gradient runs every operation.
        let cfg = OneShotConfig {
            gdas_gradient: gradient,
            arch_weight_decay: 0.0,
            ..config(Method::Gdas, 2)
        };
        let t = trained(&net, &cfg, &data, 2);
        // The trainer's initial alpha: drawn from its seed alone.
        let before = ArchParams::new(&net.options, cfg.seed.unwrap(), cfg.method).probabilities();
        let after = t.arch().probabilities();
        let path = dir.path().join("gdas.ckpt");
        let resumed = assert_resumes_exactly(&t, &net, &cfg, &data, &path);
        let resolved = resumed.gdas_gradient();
        assert_eq!(
            resolved,
            t.gdas_gradient(),
            "a resumed search keeps its gradient"
        );
        let gap = |c: usize| (after[c][0] - before[c][0]).abs();
        (gap(0), gap(1), resolved)
    };
    let straight = GdasGradient::StraightThrough;
    for (gradient, shared) in [(straight, false), (GdasGradient::Auto, true)] {
        let (twins, learned, resolved) = moved(gradient, shared);
        assert!(
            twins < 1e-6,
            "{gradient:?}: the twins' weights moved by {twins}"
        );
        assert!(
            learned > 1e-3,
            "{gradient:?}: edge B did not learn: {learned}"
        );
        assert_eq!(resolved, straight);
    }
    for (gradient, shared) in [(GdasGradient::Authors, true), (GdasGradient::Auto, false)] {
        let (twins, _, resolved) = moved(gradient, shared);
        assert!(
            twins > 1e-3,
            "{gradient:?}: the twins moved by only {twins}"
        );
        assert_eq!(resolved, GdasGradient::Authors);
    }
}

#[test]
fn beta_decay_keeps_the_architecture_weights_flatter() {
    let data = digits();
    let net = supernet(false);
    // The largest gap between two options' probabilities of any choice after the search.
    let spread = |beta_decay: f64| -> f64 {
        let cfg = OneShotConfig {
            beta_decay,
            ..config(Method::Darts, 3)
        };
        let t = trained(&net, &cfg, &data, 3);
        let last = t.history().last().unwrap();
        // Recorded per epoch, rising linearly to the setting.
        let weights: Vec<Option<f64>> = t.history().iter().map(|e| e.beta_decay).collect();
        let expected = if beta_decay > 0.0 {
            vec![Some(0.0), Some(beta_decay / 2.0), Some(beta_decay)]
        } else {
            vec![None; 3]
        };
        assert_eq!(weights, expected);
        last.probabilities
            .iter()
            .map(|p| {
                let max = p.iter().copied().fold(f64::MIN, f64::max);
                let min = p.iter().copied().fold(f64::MAX, f64::min);
                max - min
            })
            .fold(0.0, f64::max)
    };
    let (plain, decayed) = (spread(0.0), spread(20.0));
    // Measured here: about half the spread (0.018 against 0.034).
    assert!(
        decayed < plain * 0.75,
        "Beta-Decay should hold the options together: spread {decayed} with it, {plain} without"
    );
}

#[test]
fn random_smoothing_perturbs_the_weight_steps_and_resumes_exactly() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    let net = supernet(false);
    let cfg = OneShotConfig {
        random_smoothing: 0.3,
        ..config(Method::Darts, 3)
    };
    let smoothed = trained(&net, &cfg, &data, 3);
    // The bound, recorded per epoch, rises from a tenth of the setting to the setting.
    let bounds: Vec<f64> = smoothed
        .history()
        .iter()
        .map(|e| e.random_smoothing.expect("recorded when set"))
        .collect();
    for (got, want) in bounds.iter().zip([0.03, 0.165, 0.3]) {
        assert!((got - want).abs() < 1e-12, "bounds {bounds:?}");
    }
    // The noise reaches the weight steps: the first epoch's training differs from DARTS's.
    let plain = trained(&net, &config(Method::Darts, 3), &data, 1);
    assert!(plain.history()[0].random_smoothing.is_none());
    assert_ne!(
        plain.history()[0].train_loss,
        smoothed.history()[0].train_loss
    );

    // The noise is drawn per step from the seed: a resumed search is the same search.
    assert_resumes_exactly(
        &smoothed,
        &net,
        &cfg,
        &data,
        &dir.path().join("sdarts.ckpt"),
    );
}

#[test]
fn progressive_pruning_drops_the_least_likely_options_and_resumes_exactly() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    let net = supernet(false);
    for method in [Method::Drnas, Method::Darts] {
        let cfg = OneShotConfig {
            prune_to: 2,
            prune_after: Some(1),
            ..config(method, 3)
        };
        let pruned = trained(&net, &cfg, &data, 3);
        let history = pruned.history();
        // After the first epoch every option of choice 0 has weight; its two most likely
        // then are the two it keeps.
        let before = &history[0].probabilities[0];
        assert!(before.iter().all(|&p| p > 0.0), "{method:?}: {before:?}");
        let mut by_weight: Vec<usize> = (0..4).collect();
        by_weight.sort_by(|&a, &b| before[b].total_cmp(&before[a]));
        let mut expected = by_weight[..2].to_vec();
        expected.sort();
        assert_eq!(pruned.arch().kept(0), expected, "{method:?}");
        // Choice 1 has two options: nothing to prune.
        assert_eq!(pruned.arch().kept(1), vec![0, 1], "{method:?}");
        for epoch in &history[1..] {
            let p = &epoch.probabilities[0];
            for o in &by_weight[2..] {
                assert_eq!(p[*o], 0.0, "{method:?}: a pruned option kept weight: {p:?}");
            }
            assert!(
                (p.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{method:?}: {p:?}"
            );
            assert!(expected.contains(&epoch.derived[0]), "{method:?}");
        }
        // The pruning happens in the epoch after the checkpoint: the resumed search prunes
        // the same options and trains on as the straight one.
        assert_resumes_exactly(
            &pruned,
            &net,
            &cfg,
            &data,
            &dir.path().join(format!("{method:?}.ckpt")),
        );
    }
    // Keeping as many options as a choice has prunes nothing: refused with its key.
    let keeps_all = OneShotConfig {
        prune_to: 4,
        ..config(Method::Darts, 3)
    };
    match SupernetTrainer::new(&net, &keeps_all, &runtime(), &data) {
        Err(nas_train::TrainError::Config { key, reason }) => {
            assert_eq!(key, "prune_to");
            assert!(reason.contains("keeps every option"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("prune_to = 4 of at most 4 options was accepted"),
    }
}

#[test]
fn perturbation_selection_keeps_the_option_whose_removal_hurts_most_and_resumes_exactly() {
    let data = digits();
    let dir = tempfile::tempdir().unwrap();
    let net = supernet(false);
    let cfg = OneShotConfig {
        selection: Selection::Perturbation,
        selection_epochs: 1,
        ..config(Method::Darts, 2)
    };
    let mut straight = trained(&net, &cfg, &data, 2);
    // Two choices: one decision starts the single tuning epoch, the other ends the search.
    assert_eq!(straight.total_epochs(), 3);
    assert!(straight.decisions().is_empty());
    let err = straight.select().unwrap_err().to_string();
    assert!(err.contains("2 of its 3 epochs"), "{err}");
    let tuning = straight.train_epoch().unwrap();
    let first = straight.decisions()[0].clone();
    assert_eq!(first.epoch, 2);
    assert_eq!(tuning.derived[first.choice], first.option);
    let chosen = straight.select().unwrap();
    assert!(straight.train_epoch().is_err(), "no epoch after the last");
    let decisions = straight.decisions().to_vec();
    assert_eq!(decisions.len(), 2);
    let mut choices: Vec<usize> = decisions.iter().map(|d| d.choice).collect();
    choices.sort();
    assert_eq!(choices, vec![0, 1], "every choice decided once");
    for d in &decisions {
        assert_eq!(d.accuracy_without.len(), net.options[d.choice]);
        assert_eq!(chosen[d.choice], d.option);
        let worst = d
            .accuracy_without
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        assert_eq!(d.accuracy_without[d.option], worst, "{d:?}");
        assert!(d.loss_without.iter().all(|l| l.is_finite()), "{d:?}");
    }
    assert_eq!(straight.derive(), chosen);

    // Stopped before the tuning epoch (no decision yet) or after it (one decision): the
    // resumed search decides the same way and ends with the same weights.
    for stop in [2, 3] {
        let killed = trained(&net, &cfg, &data, stop);
        let path = dir.path().join(format!("pt-{stop}.ckpt"));
        killed.checkpoint().unwrap().save(&path).unwrap();
        drop(killed);
        let loaded = OneShotCheckpoint::load(&path).unwrap();
        assert_eq!(loaded.decisions.len(), stop - 2);
        let mut resumed = SupernetTrainer::resume(loaded, &runtime(), &data).unwrap();
        while resumed.epoch() < resumed.total_epochs() {
            resumed.train_epoch().unwrap();
        }
        assert_eq!(resumed.select().unwrap(), chosen, "stopped after {stop}");
        assert_eq!(resumed.decisions(), &decisions[..], "stopped after {stop}");
        assert_eq!(
            resumed.checkpoint().unwrap().state,
            straight.checkpoint().unwrap().state,
            "stopped after {stop}: weights differ"
        );
    }
}

#[test]
fn fixed_alpha_trains_weights_only_and_perturbation_still_selects() {
    let data = digits();
    let net = supernet(false);
    let cfg = OneShotConfig {
        arch_lr: 0.0,
        selection: Selection::Perturbation,
        selection_epochs: 0,
        selection_metric: SelectionMetric::Loss,
        ..config(Method::Darts, 2)
    };
    let mut t = SupernetTrainer::new(&net, &cfg, &runtime(), &data).unwrap();
    let alpha = t.arch().alpha.clone();
    assert_eq!(
        t.total_epochs(),
        2,
        "no tuning epochs with selection_epochs = 0"
    );
    for _ in 0..2 {
        let e = t.train_epoch().unwrap();
        assert_eq!(e.arch_accuracy, None, "no architecture steps");
    }
    assert_eq!(t.arch().alpha, alpha);
    let chosen = t.select().unwrap();
    assert_eq!(t.decisions().len(), 2, "both choices decided back to back");
    for d in t.decisions() {
        assert_eq!(chosen[d.choice], d.option);
        let worst = d.loss_without.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(d.loss_without[d.option], worst, "by loss: {d:?}");
    }
}

#[test]
fn a_method_and_a_supernet_must_agree_on_the_auxiliary_skip() {
    let data = digits();
    let err = SupernetTrainer::new(
        &supernet(false),
        &config(Method::DartsMinus, 1),
        &runtime(),
        &data,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("with auxiliary skips"), "{err}");
}

#[test]
fn a_cost_penalty_steers_every_method_to_the_cheap_options() {
    let data = digits();
    let net = supernet(false);
    for method in [Method::Darts, Method::Drnas, Method::Gdas] {
        // Two cost tables, two different cheapest architectures: the penalty decides.
        for (costs, cheapest) in [
            (vec![vec![1.0, 1.0, 0.0, 1.0], vec![1.0, 0.0]], vec![2, 1]),
            (vec![vec![0.0, 1.0, 1.0, 1.0], vec![0.0, 1.0]], vec![0, 0]),
        ] {
            let cfg = OneShotConfig {
                cost_penalty: 5.0,
                ..config(method, 2)
            };
            let mut t = SupernetTrainer::new(&net, &cfg, &runtime(), &data).unwrap();
            let err = t.train_epoch().unwrap_err().to_string();
            assert!(err.contains("cost_penalty"), "{err}");
            assert_eq!(t.epoch(), 0, "refused before training");
            let err = t.set_option_costs(vec![vec![0.0; 4]]).unwrap_err();
            assert!(err.to_string().contains("[4, 2]"), "{err}");
            t.set_option_costs(costs).unwrap();
            t.train_epoch().unwrap();
            t.train_epoch().unwrap();
            assert_eq!(t.derive(), cheapest, "{method:?}");
            let spent: Vec<f64> = t
                .history()
                .iter()
                .map(|e| e.expected_cost.unwrap())
                .collect();
            // Uniform probabilities would expect 3/4 + 1/2.
            assert!(
                spent[1] < spent[0] && spent[0] < 1.25,
                "{method:?}: {spent:?}"
            );
        }
    }
}

#[test]
fn a_few_shot_split_starts_from_the_parent_and_trains_its_option_alone() {
    let data = digits();
    let net = supernet(false);
    let cfg = config(Method::Spos, 2);
    let mut parent = trained(&net, &cfg, &data, 1);
    let err = parent.split(0, 2, 2).err().unwrap().to_string();
    assert!(err.contains("1 of 2 epochs"), "{err}");
    parent.train_epoch().unwrap();
    for (choice, option, needle) in [(2, 0, "2 choices"), (1, 2, "not an option 2")] {
        let err = parent.split(choice, option, 2).err().unwrap().to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = parent.split(0, 2, 0).err().unwrap().to_string();
    assert!(err.contains("at least one epoch"), "{err}");
    assert_eq!(parent.widest_choice(), 0, "edge A has 4 options, edge B 2");

    let path = [2, 1];
    let before = parent.score(&path).unwrap();
    let mut sub = parent.split(0, 2, 2).unwrap();
    assert_eq!(sub.arch().decided(0), Some(2));
    assert_eq!(sub.arch().decided(1), None);
    assert_eq!(
        sub.score(&path).unwrap(),
        before,
        "the parent's weights, copied"
    );
    assert_eq!((sub.epoch(), sub.total_epochs()), (2, 4));
    for _ in 0..2 {
        sub.train_epoch().unwrap();
    }
    assert!(sub.train_epoch().is_err(), "the sub-supernet has 2 epochs");
    let (sub_loss, _) = sub.score(&path).unwrap();
    assert!(
        sub_loss < before.0,
        "two epochs on the conv option alone: loss {} -> {sub_loss}",
        before.0
    );
    assert_eq!(
        parent.score(&path).unwrap(),
        before,
        "the parent is unchanged"
    );

    let darts = trained(&net, &config(Method::Darts, 1), &data, 1);
    let err = darts.split(0, 2, 1).err().unwrap().to_string();
    assert!(err.contains("for `spos`"), "{err}");
}
