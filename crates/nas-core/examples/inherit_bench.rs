//! What weight inheritance buys: mutate-and-train chains on the bundled digits data, with and
//! without inheritance, on the same seeds (docs/inheritance.md has a run).
//!
//! For each seed: a random NAS-Bench-201 cell (the `cell` space at `--channels`, one cell per
//! stage, 1x8x8 digits) is trained from scratch for `--epochs` epochs; then `--steps` times
//! one edge of the current cell is changed to another op at random (the same sequence of
//! cells in every arm) and the child is trained in four arms:
//!
//! - `scratch E`: from a fresh initialization, `E` = `--epochs` epochs;
//! - `scratch E/2`: the same for half the epochs;
//! - `inherit E/2`: from `nas_graph::inherit` of the previous cell's weights of this arm (what
//!   `inherit = true` does), half the epochs;
//! - `inherit E`: the same for the full epochs.
//!
//! Every arm starts a child from the same fresh weights (one seed per seed and step), and the
//! same SGD recipe (batch 64, lr 0.1, cosine over the epochs trained). Prints one line per
//! child (stderr) and a markdown table: epochs per child, mean validation and test accuracy of
//! the children, and the paired difference in validation accuracy to the two scratch arms
//! (mean ± standard error over the same children).
//!
//! `cargo run -p nas-core --example inherit_bench -- [--seeds 5] [--steps 6] [--epochs 4]
//! [--channels 8] [--threads 2]`

use std::time::Instant;

use nas_core::space::{CellSpace, CellSpaceConfig, NB201_OPS, SearchSpace};
use nas_data::{Part, SplitDataset};
use nas_graph::{Graph, Weights, inherit};
use nas_runtime::SessionSettings;
use nas_train::{TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    seeds: u64,
    steps: usize,
    epochs: usize,
    channels: usize,
    threads: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        seeds: 5,
        steps: 6,
        epochs: 4,
        channels: 8,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}")))
        };
        match flag.as_str() {
            "--seeds" => a.seeds = value()?,
            "--steps" => a.steps = value()? as usize,
            "--epochs" => a.epochs = (value()? as usize).max(2),
            "--channels" => a.channels = value()? as usize,
            "--threads" => a.threads = value()? as usize,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

/// One trained network: its graph and final weights, and what it reached.
struct Trained {
    graph: Graph,
    weights: Weights,
    val: f64,
    test: f64,
}

struct Bench<'d> {
    data: &'d SplitDataset,
    runtime: SessionSettings,
}

impl Bench<'_> {
    fn train(&self, graph: &Graph, weights: Weights, epochs: usize, seed: u64) -> Result<Trained> {
        let cfg = TrainConfig {
            epochs,
            batch: 64,
            lr: Some(0.1),
            seed: Some(seed),
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(graph, weights, &cfg, &self.runtime, self.data)?;
        trainer.train_epochs(epochs)?;
        let val = trainer
            .evaluate_normalized(Part::Validation)?
            .ok_or("no validation split")?;
        let test = trainer
            .evaluate_normalized(Part::Test)?
            .ok_or("no test split")?;
        Ok(Trained {
            graph: graph.clone(),
            weights: trainer.weights()?,
            val: val.accuracy.ok_or("a classification benchmark")?,
            test: test.accuracy.ok_or("a classification benchmark")?,
        })
    }
}

const ARMS: [&str; 4] = ["scratch E", "scratch E/2", "inherit E/2", "inherit E"];

#[derive(Default, Clone)]
struct Tally {
    val: Vec<f64>,
    test: Vec<f64>,
    epochs: usize,
    seconds: f64,
    copied: usize,
    tensors: usize,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt()
}

fn main() -> Result<()> {
    let a = args()?;
    let library = nas_runtime::locate_library(None)?;
    nas_runtime::init(&library)?;
    let runtime = SessionSettings {
        threads: a.threads,
        ..SessionSettings::cpu(&library)
    };
    let data_cfg = serde_json::from_value(serde_json::json!({
        "dataset": "digits",
        "validation": 0.2,
    }))?;
    let data = nas_data::load(&data_cfg, 0)?;
    let space = CellSpace::new(&CellSpaceConfig {
        input: Some(vec![1, 8, 8]),
        classes: Some(10),
        channels: a.channels,
        cells_per_stage: 1,
        ..CellSpaceConfig::default()
    })?;
    let bench = Bench {
        data: &data,
        runtime,
    };
    let (full, half) = (a.epochs, a.epochs / 2);
    let mut tallies = vec![Tally::default(); ARMS.len()];
    let started = Instant::now();
    for seed in 0..a.seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let mut values: Vec<f64> = (0..6)
            .map(|_| rng.random_range(0..NB201_OPS.len()) as f64)
            .collect();
        let root = space.decode(&values)?;
        let init_seed = |step: usize| seed * 1000 + step as u64;
        let root_trained = bench.train(
            &root,
            Weights::he_init(&root, init_seed(0))?,
            full,
            init_seed(0),
        )?;
        eprintln!(
            "seed {seed} root {}: val {:.4}",
            space.arch_string(&values),
            root_trained.val
        );
        // The parents of the two inheriting arms (each arm continues its own chain).
        let mut parents = [root_trained.graph.clone(), root_trained.graph.clone()];
        let mut parent_weights = [root_trained.weights.clone(), root_trained.weights];
        for step in 1..=a.steps {
            let edge = rng.random_range(0..6);
            let old = values[edge] as usize;
            let new = (old + rng.random_range(1..NB201_OPS.len())) % NB201_OPS.len();
            values[edge] = new as f64;
            let child = space.decode(&values)?;
            let init = Weights::he_init(&child, init_seed(step))?;
            let mut line = format!("seed {seed} step {step} {}:", space.arch_string(&values));
            for (arm, name) in ARMS.iter().enumerate() {
                let epochs = if name.ends_with("E/2") { half } else { full };
                let t = Instant::now();
                let (weights, copied) = if arm >= 2 {
                    let k = arm - 2;
                    let (w, report) = inherit(&parents[k], &parent_weights[k], &child, &init);
                    (w, Some(report))
                } else {
                    (init.clone(), None)
                };
                let trained = bench.train(&child, weights, epochs, init_seed(step))?;
                let tally = &mut tallies[arm];
                tally.seconds += t.elapsed().as_secs_f64();
                tally.epochs += epochs;
                tally.val.push(trained.val);
                tally.test.push(trained.test);
                if let Some(r) = copied {
                    tally.copied += r.copied.len() + r.morphed.len();
                    tally.tensors += r.copied.len() + r.morphed.len() + r.fresh.len();
                }
                line.push_str(&format!(" {name} {:.4}", trained.val));
                if arm >= 2 {
                    parents[arm - 2] = trained.graph;
                    parent_weights[arm - 2] = trained.weights;
                }
            }
            eprintln!("{line}");
        }
    }
    let children = tallies[0].val.len();
    println!(
        "digits, `cell` space (C = {}, N = 1), {} seeds x {} mutations = {children} children per arm, \
         E = {full} epochs; {:.0} s in all\n",
        a.channels,
        a.seeds,
        a.steps,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| arm | epochs per child | val accuracy (mean ± std) | test accuracy (mean ± std) | \
         val Δ vs scratch E/2 | val Δ vs scratch E | seconds per child | tensors inherited |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    // Paired over the same children: mean difference ± its standard error, in points.
    let delta = |a: &Tally, b: &Tally| {
        let d: Vec<f64> = a
            .val
            .iter()
            .zip(&b.val)
            .map(|(x, y)| 100.0 * (x - y))
            .collect();
        format!(
            "{:+.2} ± {:.2}",
            mean(&d),
            std(&d) / (d.len() as f64).sqrt()
        )
    };
    for (name, t) in ARMS.iter().zip(&tallies) {
        let per_child = t.epochs as f64 / children as f64;
        let inherited = if t.tensors > 0 {
            format!("{:.0} %", 100.0 * t.copied as f64 / t.tensors as f64)
        } else {
            "-".into()
        };
        println!(
            "| {name} | {per_child:.0} | {:.2} ± {:.2} % | {:.2} ± {:.2} % | {} | {} | {:.2} | {inherited} |",
            100.0 * mean(&t.val),
            100.0 * std(&t.val),
            100.0 * mean(&t.test),
            100.0 * std(&t.test),
            delta(t, &tallies[1]),
            delta(t, &tallies[0]),
            t.seconds / children as f64,
        );
    }
    Ok(())
}
