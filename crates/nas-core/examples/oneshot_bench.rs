//! One-shot search against ground truth: the program behind `cargo xtask bench-oneshot`.
//!
//! On the shipped `nb201-digits` table (every cell of the NAS-Bench-201 space at 4 channels,
//! one cell per stage, trained 8 epochs on the bundled digits; test accuracy known), for each
//! method and seed: train the supernet of that very space on the table's data split (weights
//! on the training part, architecture on the validation part), derive the architecture
//! (DARTS-family: argmax of alpha; SPOS: the best of `--spos-sample` random architectures
//! scored with inherited supernet weights), and look up its test accuracy and percentile
//! among the table's 15,625 architectures. For SPOS also Kendall's tau between those supernet
//! scores and the table's test accuracies. Every derived cell is also ranked by its mean test
//! accuracy over the table and its repeats (`--repeats`: the same space and recipe trained with
//! other seeds; by default every `nb201-digits-seed*` table), a ground truth with less
//! training noise.
//!
//! A sampled table (`nas tabulate --partial`, e.g. `configs/tables/nb201-fashion-sample`)
//! works too: percentiles are estimated from its rows, weighted by the architectures each
//! stands for ([`Table::arch_weights`]); a derived architecture is trained `--trainings` times
//! with the table's recipe and data split (it is rarely in the sample), and SPOS scores the
//! sample's networks, the only ones whose accuracy is known.
//! Writes `<out>/runs.csv` and `<out>/summary.md`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nas_core::space::{
    CellSpaceConfig, SearchSpace, SpaceConfig, build_space, network_cost, option_costs,
};
use nas_data::{DataConfig, Part};
use nas_runtime::SessionSettings;
use nas_table::Table;
use nas_train::oneshot::{
    CostMetric, GdasGradient, Method, OneShotConfig, Sandwich, Selection, SelectionMetric,
    SupernetTrainer,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "oneshot_bench/proxies.rs"]
mod proxies;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    table: PathBuf,
    /// Tables of the same space and recipe built with other study seeds (other splits and
    /// initial weights): every derived cell is also ranked by its mean over all trainings.
    repeats: Vec<PathBuf>,
    methods: Vec<Method>,
    seeds: Vec<u64>,
    epochs: usize,
    arch_lr: f64,
    weight_lr: f64,
    warmup: usize,
    /// β-DARTS' Beta-Decay weight (0: off).
    beta_decay: f64,
    /// SDARTS-RS's noise bound on the weight steps' mixing weights (0: off).
    random_smoothing: f64,
    /// Progressive pruning: options kept per choice (0: off) and after how many epochs
    /// (`None`: half the search).
    prune_to: usize,
    prune_after: Option<usize>,
    /// Cost-aware search: the weight of the expected cost (0: off) and what it counts.
    cost_penalty: f64,
    cost_metric: CostMetric,
    affine: bool,
    /// Compute every operation of an edge also for GDAS and SPOS (weighed by zero).
    all_ops: bool,
    /// GDAS: the gradient of the unsampled operations' weights.
    gdas_gradient: GdasGradient,
    spos_sample: usize,
    /// SPOS: the sandwich rule (the largest path, and with `both` the smallest, trained
    /// beside each drawn one).
    sandwich: Sandwich,
    /// SPOS: validation images each path is scored on (`None`: the whole split).
    score_images: Option<usize>,
    /// SPOS and the proxies on a complete table: score only networks costing at most this
    /// share of the table's costliest (`--cost-metric`), as a study with a cost constraint
    /// would, and rank the picks among the table's networks within that budget.
    max_cost_share: Option<f64>,
    /// SPOS: epochs of each few-shot sub-supernet (0: one supernet scores every path).
    few_shot: usize,
    /// Zero-cost proxies scored on the networks SPOS scores, as training-free baselines.
    proxies: Vec<String>,
    /// How the DARTS-family methods read the architecture.
    selection: Selection,
    selection_epochs: usize,
    selection_metric: SelectionMetric,
    /// Width of the supernet (default: the table's); derived cells are looked up in the
    /// table at its own width.
    channels: Option<usize>,
    /// Trainings of each derived architecture when the table is a sample without repeats
    /// (with repeats: one per table).
    trainings: usize,
    /// Whether `--trainings` was given (a sample with repeats refuses another count).
    trainings_given: bool,
    /// Architectures each search proposes, as a study's `derive`: the selected one, then
    /// the most likely others (SPOS: the best scored); each is trained once with the table's
    /// recipe (a complete table: its own training) and the best by validation accuracy is
    /// the search's pick, the one `[final]` would retrain. Their trainings count in the
    /// search's cost.
    derive: usize,
    /// `(k, n)`: also simulate `n` random searches of `k` trainings each on the table and
    /// train their picks again like a derived architecture (a sampled table's measure of
    /// what random search's pick is worth without the luck of the training that chose it).
    random_search: Option<(usize, usize)>,
    threads: usize,
    out: PathBuf,
}

const USAGE: &str = "usage: oneshot_bench [FLAGS]; --help lists them";

/// Every flag, with its default: `cargo xtask bench-oneshot --help` prints this.
const HELP: &str = "\
One-shot search against ground truth: for each method and seed, train the supernet of the
table's space on the table's data, derive an architecture and rank it in the table (a
sampled table: train it with the table's recipe). Writes <out>/runs.csv and <out>/summary.md.

The ground truth
  --table FILE            a table written by `nas tabulate`, complete or a sample (--partial)
                          [configs/tables/nb201-digits.json.gz]
  --repeats FILES|none    tables of the same space and recipe built with other seeds,
                          comma-separated: derived cells are also ranked by their mean test
                          accuracy over all trainings; a sample's repeats hold its networks
                          (its config with another [study] seed and the grid's `seed` fixed)
                          [every <table>-seed*.json.gz beside the table]
  --trainings N           a sampled table without repeats: trainings of each derived
                          architecture (with repeats: one per table, with its seed) [3]
  --derive K              architectures each search proposes, each trained once, the best by
                          validation accuracy kept; their trainings count in the cost [1]
  --random-search K,N     also simulate N random searches of K trainings on the table and
                          train their picks again --trainings times
The searches
  --methods LIST|none     darts, darts-minus, drnas, gdas, spos [all five]
  --seeds LIST            [1,2,3,4,5]
  --epochs N              supernet epochs per search [50]
  --arch-lr X             Adam learning rate of the architecture logits [0.003]
  --weight-lr X           SGD learning rate of the supernet's weights, cosine to 0.001 [0.025]
  --warmup N              epochs that train only the weights before alpha learns [0]
  --beta-decay X          beta-DARTS' Beta-Decay weight (softmax methods; 0: off) [0]
  --random-smoothing X    SDARTS-RS noise bound (darts, darts-minus; 0: off) [0]
  --prune-to K            progressive pruning: options kept per choice (0: off) [0]
  --prune-after N         epochs before the pruning [half the search]
  --cost-penalty X        cost-aware search: weight of the expected cost (0: off) [0]
  --cost-metric M         what the penalty weighs: flops or params [flops]
  --affine                train the affine parameters of the mixed edges' BatchNorms
  --all-ops               GDAS and SPOS compute every operation, not only the sampled one
  --gdas-gradient G       GDAS: auto (straight-through on a chain table, authors on a cell
                          table), authors or straight-through [auto]
  --selection S           magnitude (argmax of alpha) or perturbation (DARTS-PT) [magnitude]
  --selection-epochs N    perturbation: tuning epochs after each decision but the last [5]
  --selection-metric M    perturbation: removals measured by accuracy or loss [accuracy]
  --spos-sample N         SPOS: architectures scored with the supernet's weights [300]
  --sandwich ENDS         SPOS: also train these paths on every batch: both (the smallest
                          and the largest), largest or off [off]
  --score-images N        SPOS: score each path on the first N validation images [all]
  --max-cost-share X      SPOS and --proxies, complete table: score only networks costing at
                          most X times the costliest (--cost-metric); picks are then also
                          ranked among the table's networks within that budget, beside random
                          search among them given the same time [off]
  --few-shot N            SPOS: split the trained supernet on its widest choice into one
                          sub-supernet per option, each trained N epochs more (0: off) [0]
  --proxies LIST          also score the networks SPOS scores (--spos-sample per seed) with
                          these zero-cost proxies (the `zero-cost` evaluator's names, e.g.
                          params,synflow,zc_combined; its plugin is loaded from beside this
                          program), as training-free baselines: Kendall tau and the
                          best-scored network's place [none]
  --channels N            width of the supernet, cell space only [the table's]
The run
  --threads N             ONNX Runtime intra-op threads per search [1]
  --out DIR               [results/bench-oneshot]
";

/// A method, selection or metric by its TOML name (`darts-minus`, `perturbation`, `loss`).
fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown value `{s}`; {USAGE}").into())
}

const DEFAULT_TABLE: &str = "configs/tables/nb201-digits.json.gz";

/// A table's repeats by default: every `<name>-seed*.json.gz` beside `<name>.json.gz`.
fn default_repeats(table: &Path) -> Vec<PathBuf> {
    let Some(stem) = table
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".json.gz"))
    else {
        return Vec::new();
    };
    let prefix = format!("{stem}-seed");
    let dir = match table.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json.gz"))
        })
        .collect();
    found.sort();
    found
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        table: PathBuf::from(DEFAULT_TABLE),
        repeats: Vec::new(),
        methods: Method::ALL.to_vec(),
        seeds: (1..=5).collect(),
        epochs: 50,
        arch_lr: 3e-3,
        weight_lr: 0.025,
        warmup: 0,
        beta_decay: 0.0,
        random_smoothing: 0.0,
        prune_to: 0,
        cost_penalty: 0.0,
        cost_metric: CostMetric::Flops,
        prune_after: None,
        affine: false,
        all_ops: false,
        gdas_gradient: GdasGradient::Auto,
        spos_sample: 300,
        sandwich: Sandwich::Off,
        score_images: None,
        max_cost_share: None,
        few_shot: 0,
        proxies: Vec::new(),
        selection: Selection::Magnitude,
        selection_epochs: 5,
        selection_metric: SelectionMetric::Accuracy,
        channels: None,
        trainings: 3,
        trainings_given: false,
        derive: 1,
        random_search: None,
        threads: 1,
        out: PathBuf::from("results/bench-oneshot"),
    };
    let mut repeats = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--table" => a.table = value()?.into(),
            "--repeats" => {
                let v = value()?;
                repeats = Some(if v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(PathBuf::from).collect()
                })
            }
            "--methods" => {
                let v = value()?;
                a.methods = if v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(parse_name).collect::<Result<_>>()?
                }
            }
            "--random-search" => {
                let v = value()?;
                let (k, n) = v
                    .split_once(',')
                    .ok_or_else(|| format!("--random-search takes K,N; {USAGE}"))?;
                a.random_search = Some((k.parse()?, n.parse()?));
            }
            "--seeds" => {
                a.seeds = value()?
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<std::result::Result<_, _>>()?
            }
            "--epochs" => a.epochs = value()?.parse()?,
            "--arch-lr" => a.arch_lr = value()?.parse()?,
            "--weight-lr" => a.weight_lr = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--beta-decay" => a.beta_decay = value()?.parse()?,
            "--random-smoothing" => a.random_smoothing = value()?.parse()?,
            "--prune-to" => a.prune_to = value()?.parse()?,
            "--prune-after" => a.prune_after = Some(value()?.parse()?),
            "--cost-penalty" => a.cost_penalty = value()?.parse()?,
            "--cost-metric" => a.cost_metric = parse_name(&value()?)?,
            "--affine" => a.affine = true,
            "--all-ops" => a.all_ops = true,
            "--gdas-gradient" => a.gdas_gradient = parse_name(&value()?)?,
            "--spos-sample" => a.spos_sample = value()?.parse()?,
            "--sandwich" => a.sandwich = parse_name(&value()?)?,
            "--score-images" => a.score_images = Some(value()?.parse()?),
            "--max-cost-share" => a.max_cost_share = Some(value()?.parse()?),
            "--few-shot" => a.few_shot = value()?.parse()?,
            "--proxies" => {
                a.proxies = value()?
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            }
            "--selection" => a.selection = parse_name(&value()?)?,
            "--selection-epochs" => a.selection_epochs = value()?.parse()?,
            "--selection-metric" => a.selection_metric = parse_name(&value()?)?,
            "--channels" => a.channels = Some(value()?.parse()?),
            "--trainings" => {
                a.trainings = value()?.parse()?;
                a.trainings_given = true;
            }
            "--derive" => a.derive = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--out" => a.out = value()?.into(),
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    a.repeats = repeats.unwrap_or_else(|| default_repeats(&a.table));
    if a.trainings == 0 || a.derive == 0 {
        return Err(format!("--trainings and --derive must be at least 1; {USAGE}").into());
    }
    Ok(a)
}

/// Kendall's tau-b of two equally long series.
fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut ties_x, mut ties_y) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
            if dx == 0.0 && dy == 0.0 {
                continue;
            } else if dx == 0.0 {
                ties_x += 1.0;
            } else if dy == 0.0 {
                ties_y += 1.0;
            } else if dx * dy > 0.0 {
                concordant += 1.0;
            } else {
                discordant += 1.0;
            }
        }
    }
    let n = concordant + discordant;
    (concordant - discordant) / ((n + ties_x) * (n + ties_y)).sqrt()
}

/// The smallest value (infinity for none).
fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The mean of one network's test accuracies, the first plus the sum of the rest: every mean
/// is summed in this one order, as means of equal image counts tie often and a rounding
/// difference would move a percentile.
fn mean_of(tests: &[f64]) -> f64 {
    (tests[0] + tests[1..].iter().sum::<f64>()) / tests.len() as f64
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

struct Run {
    method: Method,
    seed: u64,
    arch: String,
    place: Placement,
    search_seconds: f64,
    /// Random search given the same time (as many trainings as the search cost): where its
    /// pick is expected to stand.
    random_search: RandomSearchPlace,
    tau: Option<Tau>,
    final_probabilities: String,
    /// The derived network's `--cost-metric`, and where it stands among the table's networks
    /// within the budget (`--max-cost-share`, else its own cost; complete tables).
    cost: f64,
    cost_place: Option<BudgetPlacement>,
    /// Random search given the same time among the same networks, placed likewise.
    random_search_within: Option<BudgetPlacement>,
    /// With perturbation-based selection: what magnitude (argmax of alpha at the end of the
    /// search, before any tuning) reads from the same supernet, for comparison.
    magnitude: Option<Reading>,
    /// With `--derive` above 1: the selected architecture alone (what the search's pick
    /// would be without training the proposals).
    selected: Option<Reading>,
}

/// SPOS: Kendall's tau between supernet scores and the table's test accuracies, and between
/// the scores and the mean test accuracies over the table and its repeats; and the tau of the
/// scored networks' parameter counts with the test accuracies, the training-free baseline a
/// supernet's scores should beat.
#[derive(Clone, Copy)]
struct Tau {
    test: f64,
    mean: f64,
    params: f64,
}

/// One architecture and where the table puts it.
struct Reading {
    arch: String,
    place: Placement,
}

/// A derived architecture's accuracies: its test accuracy in each training (the table's
/// first, then each repeat's; for a sampled table, fresh trainings with its recipe) and the
/// first training's final validation accuracy.
#[derive(Clone)]
struct Measured {
    tests: Vec<f64>,
    val: f64,
}

/// Where a network stands among the table's networks that cost at most a budget: what a
/// cost-aware pick is worth.
#[derive(Clone, Copy)]
struct BudgetPlacement {
    /// Its (first) test accuracy among their test accuracies, in percent.
    percentile: f64,
    /// Its mean test accuracy among their means (complete tables with repeats).
    mean_percentile: f64,
}

/// Where the ground truth puts a derived architecture.
struct Placement {
    /// Its (first) test accuracy.
    test_accuracy: f64,
    /// Share of the table's architectures with a lower test accuracy, in percent.
    percentile: f64,
    /// The same against the pooled validation + test accuracy (a less noisy measurement).
    pooled_percentile: f64,
    /// Mean test accuracy over its trainings, and its percentile among the table's means.
    mean_accuracy: f64,
    mean_percentile: f64,
    /// Its test percentile in each later training alone (trainings the search had nothing to
    /// do with, the unbiased measure to hold against the table's own best networks trained
    /// again).
    repeat_percentiles: Vec<f64>,
}

fn main() -> Result<()> {
    let mut args = parse_args()?;
    let table = Table::read(&args.table)?;
    let index = table.index();
    let sampled = table.sample.is_some();
    // A sample's derived architectures are trained once per table when it has repeats, each
    // time with that table's seed and split, so their mean compares with the rows' means.
    if sampled && !args.repeats.is_empty() {
        let per_table = 1 + args.repeats.len();
        if args.trainings_given && args.trainings != per_table {
            return Err(format!(
                "{} is a sample with {} repeat(s): its derived architectures are trained once \
                 per table ({per_table} times); drop --trainings or pass --repeats none",
                args.table.display(),
                args.repeats.len()
            )
            .into());
        }
        args.trainings = per_table;
    }
    let space_cfg = SpaceConfig::from_json(&table.space)?;
    let space = build_space(&space_cfg)?;
    // The supernet may be wider than the table's networks; choices and strings are the same.
    let search_space = match args.channels {
        None => build_space(&space_cfg)?,
        Some(channels) => {
            let cfg: CellSpaceConfig = serde_json::from_value(table.space.clone())
                .map_err(|e| format!("--channels widens `cell` supernets only: {e}"))?;
            build_space(&CellSpaceConfig { channels, ..cfg }.into())?
        }
    };
    // `auto` as the trainer resolves it, so that the summary names the gradient used.
    args.gdas_gradient = args.gdas_gradient.resolve(&search_space.supernet(false)?);
    let data_cfg: DataConfig = serde_json::from_value(table.data.clone())?;
    let data = nas_data::load(&data_cfg, table.seed)?;
    let library = nas_runtime::locate_library(None)?;
    let runtime = SessionSettings {
        threads: args.threads,
        ..SessionSettings::cpu(&library)
    };
    let recipe = nas_train::TrainTable::parse(&table.evaluator)?.recipe;
    let optimum = table.optimum().test_accuracy;
    let repeats = args
        .repeats
        .iter()
        .map(|p| Ok((p.clone(), Table::read(p)?)))
        .collect::<Result<Vec<_>>>()?;
    // Each repeat's seed and split, for a sample's fresh trainings (training i: table i).
    let repeat_data = if sampled {
        repeats
            .iter()
            .map(|(_, r)| Ok((r.seed, nas_data::load(&data_cfg, r.seed)?)))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let truth = GroundTruth::new(
        &table,
        &repeats,
        data.splits.validation.len(),
        data.splits.test.len(),
        if sampled { args.trainings } else { 0 },
    )?;
    let percentile = |acc: f64| truth.test_percentile(acc);
    // Trains `graph` once with the table's recipe on `data`'s split: (val, test) accuracy.
    let train_on = |graph: &nas_graph::Graph,
                    seed: u64,
                    data: &nas_data::SplitDataset|
     -> Result<(f64, f64)> {
        let mut cfg = recipe.clone();
        cfg.seed = Some(seed);
        let weights = nas_graph::Weights::he_init(graph, seed)?;
        let mut trainer = nas_train::Trainer::new(graph, weights, &cfg, &runtime, data)?;
        trainer.train_epochs(cfg.epochs)?;
        let accuracy = |part| -> Result<f64> {
            Ok(trainer
                .evaluate_normalized(part)?
                .and_then(|e| e.accuracy)
                .ok_or("the split is empty")?)
        };
        Ok((accuracy(Part::Validation)?, accuracy(Part::Test)?))
    };
    // ... on the table's split.
    let train_once = |graph: &nas_graph::Graph, seed: u64| train_on(graph, seed, &data);
    // What training one candidate costs, measured here under the same conditions as the
    // searches: the table's recipe on the table's best architecture.
    let one_training: f64 = {
        let best = table
            .rows
            .iter()
            .max_by(|a, b| {
                a.test_accuracy
                    .partial_cmp(&b.test_accuracy)
                    .expect("finite")
            })
            .ok_or("the table is empty")?;
        let graph = space.decode(&space.parse_arch(&best.archs[0])?)?;
        let started = Instant::now();
        train_once(&graph, table.seed)?;
        started.elapsed().as_secs_f64()
    };
    // A derived architecture's accuracies: from the table and its repeats, or, for a sample,
    // trained afresh (seeds the table's trials do not use; cached, derivations repeat).
    let mut fresh: HashMap<String, Measured> = HashMap::new();
    let mut measure = |arch: &str| -> Result<Measured> {
        if !sampled {
            let row = *index
                .by_arch
                .get(arch)
                .ok_or_else(|| format!("{arch} is not in the table"))?;
            return Ok(truth.measured(row));
        }
        let graph = space.decode(&space.parse_arch(arch)?)?;
        let hash = graph.canonical_hash();
        if let Some(m) = fresh.get(&hash) {
            return Ok(m.clone());
        }
        let mut m = Measured {
            tests: Vec::new(),
            val: 0.0,
        };
        for i in 0..args.trainings {
            // With repeats, training i is table i's: its seed and split.
            let (val, test) = match i.checked_sub(1).filter(|_| !repeat_data.is_empty()) {
                Some(r) => {
                    let (seed, data) = &repeat_data[r];
                    train_on(&graph, FRESH_SEED ^ seed, data)?
                }
                None => train_once(&graph, FRESH_SEED ^ table.seed.wrapping_add(i as u64))?,
            };
            if i == 0 {
                m.val = val;
            }
            m.tests.push(test);
        }
        fresh.insert(hash, m.clone());
        Ok(m)
    };
    let arch_of = |choices: &[usize]| {
        space.arch_string(&choices.iter().map(|&v| v as f64).collect::<Vec<_>>())
    };

    // The options' costs depend on the space alone: estimated once for every search.
    let costs = (args.cost_penalty > 0.0)
        .then(|| option_costs(search_space.as_ref(), args.cost_metric))
        .transpose()?;
    // A cost budget for the networks SPOS and the proxies score: a share of the table's
    // costliest network.
    let row_costs: Vec<f64> = table
        .rows
        .iter()
        .map(|r| row_cost(r, args.cost_metric))
        .collect();
    let budget_limit = args
        .max_cost_share
        .map(|share| share * row_costs.iter().copied().fold(0.0, f64::max));
    // The networks SPOS and the proxies score for a seed, within the budget.
    let candidates = |seed: u64| -> Result<Vec<Vec<usize>>> {
        let mut candidates = spos_candidates(&table, space.as_ref(), args.spos_sample, seed)?;
        if let Some(limit) = budget_limit {
            candidates.retain(|c| {
                network_cost(space.as_ref(), c, args.cost_metric).is_ok_and(|cost| cost <= limit)
            });
        }
        Ok(candidates)
    };
    let mut runs = Vec::new();
    for &method in &args.methods {
        let budget = budget_limit.filter(|_| method == Method::Spos);
        for &seed in &args.seeds {
            let supernet = search_space.supernet(method.aux_skip())?;
            let cfg = OneShotConfig {
                method,
                epochs: args.epochs,
                arch_lr: args.arch_lr,
                weight_lr: args.weight_lr,
                warmup_epochs: args.warmup,
                // Methods without softmax weights refuse it.
                beta_decay: if method.softmax_weights() {
                    args.beta_decay
                } else {
                    0.0
                },
                random_smoothing: if method.mixes_every_option() {
                    args.random_smoothing
                } else {
                    0.0
                },
                // SPOS learns no architecture weights to prune by.
                prune_to: if method.learns_alpha() {
                    args.prune_to
                } else {
                    0
                },
                prune_after: args.prune_after,
                cost_penalty: if method.learns_alpha() {
                    args.cost_penalty
                } else {
                    0.0
                },
                cost_metric: args.cost_metric,
                affine: args.affine,
                sampled_path_only: !args.all_ops,
                gdas_gradient: if method == Method::Gdas {
                    args.gdas_gradient
                } else {
                    GdasGradient::Auto
                },
                sandwich: if method == Method::Spos {
                    args.sandwich
                } else {
                    Sandwich::Off
                },
                seed: Some(seed),
                // SPOS reads no architecture weights: it selects by scoring paths.
                selection: if method.learns_alpha() {
                    args.selection
                } else {
                    Selection::Magnitude
                },
                selection_epochs: args.selection_epochs,
                selection_metric: args.selection_metric,
                ..OneShotConfig::default()
            };
            let started = Instant::now();
            let mut trainer = SupernetTrainer::new(&supernet, &cfg, &runtime, &data)?;
            if let Some(costs) = costs.as_ref().filter(|_| cfg.cost_penalty > 0.0) {
                trainer.set_option_costs(costs.clone())?;
            }
            if method == Method::Spos {
                trainer.set_score_images(args.score_images)?;
            }
            let epochs = trainer.total_epochs();
            for _ in 0..epochs {
                let e = trainer.train_epoch()?;
                eprint!(
                    "\r{} seed {seed}: epoch {}/{} loss {:.3} {}",
                    method.name(),
                    e.epoch,
                    epochs,
                    e.train_loss,
                    if e.derived.is_empty() {
                        String::new()
                    } else {
                        arch_of(&e.derived)
                    }
                );
            }
            eprintln!(
                "\n  supernet trained in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let (choices, tau) = if method == Method::Spos {
                // Score distinct architectures of known accuracy with the shared weights.
                let (mut scores, mut truths, mut means, mut params, mut scored) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (c, acc) in score_paths(&mut trainer, candidates(seed)?, args.few_shot)? {
                    let row = index.by_arch[&arch_of(&c)];
                    scores.push(acc);
                    truths.push(truth.test[row]);
                    means.push(truth.mean[row]);
                    // The decoded network's count, as the `params` proxy counts it (a
                    // table row's may differ: it stands for isomorphic cells).
                    params.push(network_cost(space.as_ref(), &c, CostMetric::Params)?);
                    scored.push((acc, c));
                }
                let tau = Tau {
                    test: kendall_tau(&scores, &truths),
                    mean: kendall_tau(&scores, &means),
                    params: kendall_tau(&params, &truths),
                };
                // The best scored first (the first of equal scores, as sampled).
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                if scored.is_empty() {
                    return Err("--spos-sample is 0".into());
                }
                let proposals = scored
                    .into_iter()
                    .take(args.derive)
                    .map(|(_, c)| c)
                    .collect();
                (proposals, Some(tau))
            } else {
                let selected = trainer.select()?;
                (trainer.arch().proposals(selected, args.derive), None)
            };
            let mut search_seconds = started.elapsed().as_secs_f64();
            // Train every proposal once and keep the best by validation accuracy, as a study
            // does with its trials before `[final]`.
            let (choices, selected) = if choices.len() > 1 {
                let mut best: Option<(f64, usize)> = None;
                for (i, c) in choices.iter().enumerate() {
                    let val = if sampled {
                        let graph = space.decode(&space.parse_arch(&arch_of(c))?)?;
                        let started = Instant::now();
                        let (val, _) = train_once(&graph, PICK_SEED ^ seed.wrapping_add(i as u64))?;
                        search_seconds += started.elapsed().as_secs_f64();
                        val
                    } else {
                        // The table's training stands in for the trial's.
                        search_seconds += one_training;
                        measure(&arch_of(c))?.val
                    };
                    if best.is_none_or(|(b, _)| val > b) {
                        best = Some((val, i));
                    }
                }
                let first = arch_of(&choices[0]);
                let selected = Reading {
                    place: truth.place(&measure(&first)?),
                    arch: first,
                };
                let (_, i) = best.expect("two proposals at least");
                (choices[i].clone(), Some(selected))
            } else {
                (choices[0].clone(), None)
            };
            let arch = arch_of(&choices);
            let measured = measure(&arch)?;
            let place = truth.place(&measured);
            let cost = network_cost(space.as_ref(), &choices, args.cost_metric)?;
            // Without a budget, a cost-aware pick is worth what it is among the networks that
            // cost at most as much as itself.
            let cost_place = (!sampled)
                .then(|| truth.place_within(&row_costs, budget.unwrap_or(cost), &measured));
            let random_search_within = (!sampled).then(|| {
                let trainings = (search_seconds / one_training) as usize;
                truth.random_search_within(trainings, &row_costs, budget.unwrap_or(cost))
            });
            let probs = trainer
                .arch()
                .probabilities()
                .iter()
                .map(|p| {
                    p.iter()
                        .map(|v| format!("{v:.2}"))
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!(
                "  -> {arch}: test {:.2} % (percentile {:.1}, mean of {} {:.2} %, percentile {:.1}), {:?} {cost}{}, {search_seconds:.1} s{}",
                100.0 * place.test_accuracy,
                place.percentile,
                truth.trainings_label(),
                100.0 * place.mean_accuracy,
                place.mean_percentile,
                args.cost_metric,
                cost_place
                    .map(|p| format!(
                        " (percentile {:.1}, mean {:.1}, among networks {})",
                        p.percentile,
                        p.mean_percentile,
                        if budget.is_some() {
                            "within the budget"
                        } else {
                            "as costly or less"
                        }
                    ))
                    .unwrap_or_default(),
                tau.map(|t| format!(
                    ", Kendall tau {:.3} (mean {:.3}; parameter count {:.3})",
                    t.test, t.mean, t.params
                ))
                .unwrap_or_default()
            );
            let magnitude = match args
                .epochs
                .checked_sub(1)
                .and_then(|last| trainer.history().get(last))
            {
                Some(e) if args.selection == Selection::Perturbation && !e.derived.is_empty() => {
                    let arch = arch_of(&e.derived);
                    let place = truth.place(&measure(&arch)?);
                    eprintln!(
                        "     by magnitude: {arch}: test {:.2} % (percentile {:.1})",
                        100.0 * place.test_accuracy,
                        percentile(place.test_accuracy)
                    );
                    Some(Reading { arch, place })
                }
                _ => None,
            };
            runs.push(Run {
                method,
                seed,
                arch,
                place,
                search_seconds,
                random_search: truth.random_search((search_seconds / one_training) as usize),
                tau,
                final_probabilities: probs,
                cost,
                cost_place,
                random_search_within,
                magnitude,
                selected,
            });
        }
    }
    // Training-free baselines on SPOS's networks, each proxy's pick placed as SPOS's is.
    let mut proxy_runs = Vec::new();
    if !args.proxies.is_empty() {
        let config = proxies::evaluator_config(&table, &args.proxies, args.threads)?;
        for &seed in &args.seeds {
            let archs: Vec<String> = candidates(seed)?.iter().map(|c| arch_of(c)).collect();
            let runs = proxies::score(
                &config,
                &args.proxies,
                seed,
                &archs,
                |arch| index.by_arch[arch],
                |row| (truth.test[row], truth.mean[row]),
            )?;
            for run in runs {
                let measured = measure(&run.arch)?;
                let place = truth.place(&measured);
                let within =
                    budget_limit.map(|limit| truth.place_within(&row_costs, limit, &measured));
                eprintln!(
                    "{} seed {seed}: Kendall tau {:.3} (mean {:.3}); best {}: percentile {:.1}, mean percentile {:.1}{} ({:.1} s for every proxy)",
                    run.proxy,
                    run.tau_test,
                    run.tau_mean,
                    run.arch,
                    place.percentile,
                    place.mean_percentile,
                    within
                        .map(|p| format!(
                            "; within the budget {:.1}, mean {:.1}",
                            p.percentile, p.mean_percentile
                        ))
                        .unwrap_or_default(),
                    run.seconds
                );
                proxy_runs.push((run, place, within));
            }
        }
    }
    // The picks of simulated random searches, trained again.
    let mut retrained = Vec::new();
    if let Some((k, n)) = args.random_search {
        for row in truth.random_search_picks(k, n, |_| true) {
            let arch = table.rows[row].archs[0].clone();
            let place = truth.place(&measure(&arch)?);
            eprintln!(
                "random search of {k}: {arch}: table percentile {:.1}, trained again: mean percentile {:.1}",
                truth.test_percentile(truth.test[row]),
                place.mean_percentile
            );
            retrained.push((row, Reading { arch, place }));
        }
    }
    write_results(&args, &runs, &retrained, optimum, one_training, &truth)?;
    write_proxy_results(&args, &proxy_runs, one_training, &truth)
}

/// A proxy's run, where its pick stands in the table, and within the budget if one is set.
type ProxyPlacement = (proxies::ProxyRun, Placement, Option<BudgetPlacement>);

/// `<out>/proxies.csv` and a section of `<out>/summary.md`: the training-free baselines.
fn write_proxy_results(
    args: &Args,
    runs: &[ProxyPlacement],
    one_training: f64,
    truth: &GroundTruth,
) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut csv = String::from(
        "proxy,seed,arch,kendall_tau,kendall_tau_mean,test_accuracy,percentile,mean_test_accuracy,mean_percentile,seconds,budget_percentile,budget_mean_percentile\n",
    );
    for (r, p, within) in runs {
        writeln!(
            csv,
            "{},{},\"{}\",{:.4},{:.4},{:.4},{:.2},{:.4},{:.2},{:.2},{}",
            r.proxy,
            r.seed,
            r.arch,
            r.tau_test,
            r.tau_mean,
            p.test_accuracy,
            p.percentile,
            p.mean_accuracy,
            p.mean_percentile,
            r.seconds,
            within
                .map(|w| format!("{:.2},{:.2}", w.percentile, w.mean_percentile))
                .unwrap_or_else(|| ",".to_string())
        )?;
    }
    std::fs::write(args.out.join("proxies.csv"), csv)?;
    let (budget_head, budget_rule) = if args.max_cost_share.is_some() {
        (
            " within the budget: percentile, mean percentile (min) |",
            "---|",
        )
    } else {
        ("", "")
    };
    let mut md = format!(
        "\n## Training-free baselines\n\nThe `zero-cost` evaluator's proxies on the networks SPOS scores \
         ({} per seed, seeds {:?}, one batch of 64 training images), each proxy's best-scored \
         network placed as SPOS's pick is (mean of {}). Seconds: scoring one seed's networks \
         with every proxy, and as trainings of one candidate.{}\n\n\
         | proxy | Kendall tau, table (mean) | percentile of its pick, mean (min) | mean of {}: percentile, mean (min) | seconds (x one training) |{}\n\
         |---|---|---|---|---|{}\n",
        args.spos_sample,
        args.seeds,
        truth.trainings_label(),
        budget_note(args),
        truth.trainings_label(),
        budget_head,
        budget_rule,
    );
    for proxy in &args.proxies {
        let rs: Vec<&ProxyPlacement> = runs.iter().filter(|(r, ..)| &r.proxy == proxy).collect();
        let col =
            |f: &dyn Fn(&ProxyPlacement) -> f64| -> Vec<f64> { rs.iter().map(|r| f(r)).collect() };
        let (t, ts) = mean_std(&col(&|(r, ..)| r.tau_test));
        let (m, _) = mean_std(&col(&|(r, ..)| r.tau_mean));
        let pct = col(&|(_, p, _)| p.percentile);
        let mean_pct = col(&|(_, p, _)| p.mean_percentile);
        let (secs, _) = mean_std(&col(&|(r, ..)| r.seconds));
        let within: Vec<BudgetPlacement> = rs.iter().filter_map(|(.., w)| *w).collect();
        writeln!(
            md,
            "| {proxy} | {t:.3} ± {ts:.3} ({m:.3}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {secs:.1} ({:.1}x) |{}",
            mean_std(&pct).0,
            min(&pct),
            mean_std(&mean_pct).0,
            min(&mean_pct),
            secs / one_training,
            budget_cell(&within, ", ")
        )?;
    }
    let path = args.out.join("summary.md");
    let mut summary = std::fs::read_to_string(&path)?;
    summary.push_str(&md);
    std::fs::write(&path, summary)?;
    print!("{md}");
    Ok(())
}

/// The summary's sentence on `--max-cost-share`, empty without it.
fn budget_note(args: &Args) -> String {
    match args.max_cost_share {
        None => String::new(),
        Some(share) => format!(
            " Only networks costing at most {share} times the table's costliest ({:?}) are \
             scored; \"within the budget\" ranks a pick among the table's networks that cheap.",
            args.cost_metric
        ),
    }
}

/// Table cells: mean (min) of the percentiles within the budget, then `sep`, then the same of
/// the mean-of-all percentiles; empty when there is no budget.
fn budget_cell(within: &[BudgetPlacement], sep: &str) -> String {
    if within.is_empty() {
        return String::new();
    }
    let pct: Vec<f64> = within.iter().map(|w| w.percentile).collect();
    let mean: Vec<f64> = within.iter().map(|w| w.mean_percentile).collect();
    format!(
        " {:.1} ({:.1}){sep}{:.1} ({:.1}) |",
        mean_std(&pct).0,
        min(&pct),
        mean_std(&mean).0,
        min(&mean)
    )
}

/// SPOS: every candidate with its supernet accuracy. With `few_shot` epochs the trained
/// supernet is split on its widest choice into one sub-supernet per option, each trained
/// that many epochs more, and a candidate is scored by the one holding its option.
fn score_paths(
    trainer: &mut SupernetTrainer<'_>,
    candidates: Vec<Vec<usize>>,
    few_shot: usize,
) -> Result<Vec<(Vec<usize>, f64)>> {
    let mut scored = Vec::with_capacity(candidates.len());
    if few_shot == 0 {
        for c in candidates {
            let (_, acc) = trainer.score(&c)?;
            scored.push((c, acc));
        }
        return Ok(scored);
    }
    let choice = trainer.widest_choice();
    let options = trainer.supernet().options[choice];
    for option in 0..options {
        let mut sub = trainer.split(choice, option, few_shot)?;
        for _ in 0..few_shot {
            let e = sub.train_epoch()?;
            eprint!(
                "\r  few-shot choice {choice} option {option}: epoch {}/{} loss {:.3}",
                e.epoch,
                sub.total_epochs(),
                e.train_loss
            );
        }
        for c in candidates.iter().filter(|c| c[choice] == option) {
            let (_, acc) = sub.score(c)?;
            scored.push((c.clone(), acc));
        }
    }
    eprintln!();
    Ok(scored)
}

/// Seeds of a sampled table's fresh trainings: far from the study seed plus trial id that its
/// rows were trained with.
const FRESH_SEED: u64 = 0x5A3F_1E00_0000_0000;

/// Seeds of the trainings that pick among a search's proposals (`--derive`): apart from the
/// fresh trainings that then measure the pick, so the pick's luck does not count.
const PICK_SEED: u64 = 0x71C4_0000_0000_0000;

/// A table row's `metric`.
fn row_cost(row: &nas_table::Row, metric: CostMetric) -> f64 {
    match metric {
        CostMetric::Flops => row.flops,
        CostMetric::Params => row.params,
    }
}

/// The architectures SPOS scores: `n` distinct random ones of a complete table, or, for a
/// sample, `n` of its networks (the only accuracies known), in a seeded random order.
fn spos_candidates(
    table: &Table,
    space: &dyn SearchSpace,
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5905);
    let choices = |arch: &str| -> Result<Vec<usize>> {
        Ok(space
            .parse_arch(arch)?
            .iter()
            .map(|&v| v as usize)
            .collect())
    };
    if table.sample.is_some() {
        let mut rows: Vec<&nas_table::Row> = table
            .rows
            .iter()
            .filter(|r| r.test_accuracy.is_some())
            .collect();
        rows.shuffle(&mut rng);
        return rows.iter().take(n).map(|r| choices(&r.archs[0])).collect();
    }
    let options: Vec<usize> = space
        .descriptor()
        .choices
        .iter()
        .map(|c| c.kind.cardinality().map(|n| n as usize))
        .collect::<Option<_>>()
        .ok_or("SPOS scores architectures of categorical choices only")?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n.min(table.archs_in_space as usize) {
        let c: Vec<usize> = options.iter().map(|&k| rng.random_range(0..k)).collect();
        if seen.insert(c.clone()) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Architecture strings as one markdown table cell, one per line (`|` would end the cell).
fn arch_cell<'a>(archs: impl Iterator<Item = &'a str>) -> String {
    archs
        .map(|a| format!("`{}`", a.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Another reading of the same searches, per method: `intro` says which, `reading` gives
/// it per run (none: no section).
fn readings_markdown(
    md: &mut String,
    args: &Args,
    runs: &[Run],
    intro: &str,
    reading: impl Fn(&Run) -> Option<&Reading>,
) -> Result<()> {
    if !runs.iter().any(|r| reading(r).is_some()) {
        return Ok(());
    }
    md.push_str(&format!(
        "\n{intro}:\n\n\
         | method | test accuracy, mean ± std (%) | percentile, mean (min) | pooled percentile, mean (min) | mean percentile, mean (min) | architectures |\n\
         |---|---|---|---|---|---|\n"
    ));
    for &m in &args.methods {
        let rs: Vec<&Reading> = runs
            .iter()
            .filter(|r| r.method == m)
            .filter_map(&reading)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.test_accuracy).collect();
        let (am, asd) = mean_std(&acc);
        let pct: Vec<f64> = rs.iter().map(|r| r.place.percentile).collect();
        let pooled: Vec<f64> = rs.iter().map(|r| r.place.pooled_percentile).collect();
        let mean_pct: Vec<f64> = rs.iter().map(|r| r.place.mean_percentile).collect();
        let archs = arch_cell(rs.iter().map(|r| r.arch.as_str()));
        writeln!(
            md,
            "| {} | {am:.2} ± {asd:.2} | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {} |",
            m.name(),
            mean_std(&pct).0,
            min(&pct),
            mean_std(&pooled).0,
            min(&pooled),
            mean_std(&mean_pct).0,
            min(&mean_pct),
            archs
        )?;
    }
    Ok(())
}

/// Where a simulated random search's pick is expected to stand.
#[derive(Clone, Copy)]
struct RandomSearchPlace {
    /// By the table's training (the one its validation accuracy picked it by).
    percentile: f64,
    /// By the mean over the table and its repeats.
    mean_percentile: f64,
    /// By its test percentile in each repeat alone, trainings the pick owes nothing to (the
    /// fair match for a derived cell's "other trainings alone"); with repeats only.
    repeats_percentile: Option<f64>,
}

/// How noisy the table's accuracies are, and a less noisy measurement to rank by.
///
/// Every network of the table was trained once and measured on a few hundred images, so its
/// test accuracy carries sampling noise of about one percentage point, as large as the spread
/// of the table's top 10 %. The validation accuracy of the same training is a second,
/// independent measurement: pooling both (weighted by their image counts) halves the variance,
/// and how well one predicts the other says what any search can reach on this table.
struct GroundTruth {
    /// Per row: test and final validation accuracy.
    test: Vec<f64>,
    val: Vec<f64>,
    /// Architectures per row (isomorphic cells share a row).
    weight: Vec<usize>,
    pooled_sorted: Vec<f64>,
    test_sorted: Vec<f64>,
    /// Per row: the test accuracy of the same network in each repeat table (another seed).
    repeats: Vec<Vec<f64>>,
    repeats_sorted: Vec<Vec<f64>>,
    /// Per row: the mean test accuracy over the table and its repeats.
    mean: Vec<f64>,
    mean_sorted: Vec<f64>,
    val_images: usize,
    test_images: usize,
    /// Trainings of each derived architecture of a sampled table (0 for a complete one).
    fresh_trainings: usize,
    name: String,
    /// A sampled table's draws.
    sample_draws: Option<u64>,
    /// How many architectures a row counts for in the oracles: those it stands for in a
    /// complete table, one per network in a sample (whose weights are estimates).
    oracle_weight: Vec<usize>,
}

impl GroundTruth {
    /// Simulated random searches per run (the summary says 2,000).
    const RANDOM_SEARCHES: usize = 2000;

    /// `repeats`: tables of the same space, data and recipe built with other seeds; every
    /// network of `table` must be in each.
    fn new(
        table: &Table,
        repeats: &[(PathBuf, Table)],
        val_images: usize,
        test_images: usize,
        fresh_trainings: usize,
    ) -> Result<Self> {
        // Data tables are compared as parsed: a newer build writes keys added since as defaults.
        let data = |t: &Table| -> Result<serde_json::Value> {
            Ok(serde_json::to_value(serde_json::from_value::<DataConfig>(
                t.data.clone(),
            )?)?)
        };
        let table_data = data(table)?;
        let repeat_tests = repeats
            .iter()
            .map(|(path, r)| {
                if r.space != table.space
                    || r.evaluator != table.evaluator
                    || data(r).map_err(|e| e.to_string())? != table_data
                {
                    return Err(format!(
                        "{} is not a repeat of the table: its space, data or recipe differs",
                        path.display()
                    ));
                }
                let index = r.index();
                table
                    .rows
                    .iter()
                    .map(|row| {
                        index
                            .by_hash
                            .get(&row.hash)
                            .and_then(|&i| r.rows[i].test_accuracy)
                            .ok_or_else(|| {
                                format!(
                                    "{} has no test accuracy for {}; finish it with `nas tabulate`",
                                    path.display(),
                                    row.archs[0]
                                )
                            })
                    })
                    .collect::<std::result::Result<Vec<f64>, String>>()
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let test: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.test_accuracy.unwrap_or(0.0))
            .collect();
        let val: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.val_accuracy.last().copied().unwrap_or(0.0))
            .collect();
        let (nv, nt) = (val_images as f64, test_images as f64);
        let pooled: Vec<f64> = test
            .iter()
            .zip(&val)
            .map(|(t, v)| (t * nt + v * nv) / (nt + nv))
            .collect();
        let weight = table.arch_weights();
        // A sample's weights are estimates; its oracles count each sampled network once.
        let oracle_weight = if table.sample.is_some() {
            vec![1; weight.len()]
        } else {
            weight.clone()
        };
        let sorted = |v: &[f64]| {
            let mut all: Vec<f64> = v
                .iter()
                .zip(&weight)
                .flat_map(|(&x, &w)| std::iter::repeat_n(x, w))
                .collect();
            all.sort_by(f64::total_cmp);
            all
        };
        let mean: Vec<f64> = (0..test.len())
            .map(|i| {
                let tests: Vec<f64> = std::iter::once(test[i])
                    .chain(repeat_tests.iter().map(|r| r[i]))
                    .collect();
                mean_of(&tests)
            })
            .collect();
        Ok(Self {
            pooled_sorted: sorted(&pooled),
            test_sorted: sorted(&test),
            mean_sorted: sorted(&mean),
            mean,
            repeats_sorted: repeat_tests.iter().map(|r| sorted(r)).collect(),
            repeats: repeat_tests,
            test,
            val,
            weight,
            val_images,
            test_images,
            fresh_trainings,
            name: table.name.clone(),
            sample_draws: table.sample.map(|s| s.draws),
            oracle_weight,
        })
    }

    /// What a sampled table's percentiles are, for the summary's first paragraph.
    fn sample_note(&self) -> String {
        let rows = self.test.len();
        match self.sample_draws {
            None => String::new(),
            Some(draws) => format!(
                "The table is a sample: the {rows} networks of the first {draws} architectures \
                 of a uniform random order, so percentiles are estimates (each row weighted by \
                 the architectures it stands for; a percentile near 90 is off by about {:.1} \
                 points, one standard error). {} \"The k best\" below count sampled \
                 networks.\n\n",
                100.0 * (0.9 * 0.1 / rows as f64).sqrt(),
                if self.repeats.is_empty() {
                    format!(
                        "Every derived architecture was trained {} times with the table's \
                         recipe and split; \"percentile\" ranks its first training, \"mean\" \
                         the mean of all, \"the other trainings alone\" each later one, all \
                         among the sample's single trainings.",
                        self.fresh_trainings
                    )
                } else {
                    format!(
                        "The sample's networks were trained again in {} repeat(s) (other \
                         seeds and splits), and every derived architecture was trained once \
                         per table with that table's seed and split: \"percentile\" ranks its \
                         first training among the table's, \"mean\" its mean among the \
                         networks' means over the {} trainings, \"the other trainings alone\" \
                         each later one among that repeat's.",
                        self.repeats.len(),
                        self.fresh_trainings
                    )
                }
            ),
        }
    }

    /// Trainings behind a derived architecture's mean: the table's and one per repeat, or
    /// the fresh trainings of a sampled table's.
    fn trainings(&self) -> usize {
        if self.fresh_trainings > 0 {
            self.fresh_trainings
        } else {
            1 + self.repeats.len()
        }
    }

    /// "1 training", "2 trainings", ...
    fn trainings_label(&self) -> String {
        match self.trainings() {
            1 => "1 training".to_string(),
            n => format!("{n} trainings"),
        }
    }

    /// `row`'s accuracies in the table and its repeats.
    fn measured(&self, row: usize) -> Measured {
        let mut tests = vec![self.test[row]];
        tests.extend(self.repeats.iter().map(|r| r[row]));
        Measured {
            tests,
            val: self.val[row],
        }
    }

    /// Where `m` stands: each training ranked among the table's (the repeats' for a complete
    /// table's later trainings, the table's own for a sample's), the mean among the means.
    fn place(&self, m: &Measured) -> Placement {
        let test = m.tests[0];
        let (nv, nt) = (self.val_images as f64, self.test_images as f64);
        let mean = mean_of(&m.tests);
        Placement {
            test_accuracy: test,
            percentile: self.test_percentile(test),
            pooled_percentile: Self::rank_in(
                &self.pooled_sorted,
                (test * nt + m.val * nv) / (nt + nv),
            ),
            mean_accuracy: mean,
            mean_percentile: Self::rank_in(&self.mean_sorted, mean),
            repeat_percentiles: m.tests[1..]
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    Self::rank_in(self.repeats_sorted.get(i).unwrap_or(&self.test_sorted), t)
                })
                .collect(),
        }
    }

    /// Where `m` stands among the networks whose `costs` (per row) are at most `limit`: its
    /// first training among their test accuracies, its mean among their means, each row
    /// counted once per architecture it stands for, as `place` counts.
    fn place_within(&self, costs: &[f64], limit: f64, m: &Measured) -> BudgetPlacement {
        let rank = |values: &[f64], x: f64| {
            let (mut below, mut all) = (0usize, 0usize);
            for ((&v, &cost), &w) in values.iter().zip(costs).zip(&self.weight) {
                if cost <= limit {
                    all += w;
                    if v < x {
                        below += w;
                    }
                }
            }
            100.0 * below as f64 / all.max(1) as f64
        };
        BudgetPlacement {
            percentile: rank(&self.test, m.tests[0]),
            mean_percentile: rank(&self.mean, mean_of(&m.tests)),
        }
    }

    /// Share of the architectures with a lower mean test accuracy than `row`'s, in percent.
    fn mean_percentile(&self, row: usize) -> f64 {
        Self::rank_in(&self.mean_sorted, self.mean[row])
    }

    /// The accuracy at which the best `percent` % of the architectures start.
    fn top_threshold(sorted: &[f64], percent: f64) -> f64 {
        let i = ((1.0 - percent / 100.0) * sorted.len() as f64) as usize;
        sorted[i.min(sorted.len() - 1)]
    }

    fn rank_in(sorted: &[f64], x: f64) -> f64 {
        100.0 * sorted.partition_point(|&v| v < x) as f64 / sorted.len() as f64
    }

    /// Share of the table's architectures with a lower test accuracy than `acc`, in percent.
    fn test_percentile(&self, acc: f64) -> f64 {
        Self::rank_in(&self.test_sorted, acc)
    }

    /// The test percentile of the architectures a perfect search by validation accuracy would
    /// pick: the `k` best rows by final validation accuracy (ties broken by row order), each
    /// row counted once per architecture it stands for; `percentile` ranks a row.
    fn oracle_by_validation(&self, k: usize, percentile: impl Fn(usize) -> f64) -> (f64, f64) {
        Self::oracle(&self.val, &self.oracle_weight, k, percentile)
    }

    /// Markdown rows of [`Self::oracle_by_validation`] for 1, 5, 20 and 100 architectures.
    fn validation_oracle_rows(&self, percentile: impl Fn(usize) -> f64) -> String {
        [1, 5, 20, 100]
            .iter()
            .map(|&k| {
                let (mean, worst) = self.oracle_by_validation(k, &percentile);
                format!("| {k} | {mean:.1} ({worst:.1}) |\n")
            })
            .collect()
    }

    /// Random search given `trainings` trainings: that many architectures drawn uniformly
    /// (each row as often as the architectures it stands for), the best by final validation
    /// accuracy kept; where its pick stands, averaged over seeded repetitions.
    fn random_search(&self, trainings: usize) -> RandomSearchPlace {
        let picks = self.random_search_picks(trainings, Self::RANDOM_SEARCHES, |_| true);
        let average = |place: &dyn Fn(usize) -> f64| {
            picks.iter().map(|&row| place(row)).sum::<f64>() / picks.len() as f64
        };
        RandomSearchPlace {
            percentile: average(&|row| self.test_percentile(self.test[row])),
            mean_percentile: average(&|row| self.mean_percentile(row)),
            repeats_percentile: (!self.repeats.is_empty()).then(|| {
                average(&|row| mean_of(&self.place(&self.measured(row)).repeat_percentiles))
            }),
        }
    }

    /// Random search given `trainings` trainings among the networks whose `costs` are at most
    /// `limit`: its pick's mean place among them, as `place_within` ranks.
    fn random_search_within(&self, trainings: usize, costs: &[f64], limit: f64) -> BudgetPlacement {
        let picks =
            self.random_search_picks(trainings, Self::RANDOM_SEARCHES, |row| costs[row] <= limit);
        let places: Vec<BudgetPlacement> = picks
            .iter()
            .map(|&row| self.place_within(costs, limit, &self.measured(row)))
            .collect();
        BudgetPlacement {
            percentile: mean_of(&places.iter().map(|p| p.percentile).collect::<Vec<_>>()),
            mean_percentile: mean_of(&places.iter().map(|p| p.mean_percentile).collect::<Vec<_>>()),
        }
    }

    /// The rows `searches` seeded random searches of `trainings` trainings each would pick,
    /// drawing only `eligible` rows.
    fn random_search_picks(
        &self,
        trainings: usize,
        searches: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let cumulative: Vec<usize> = self
            .weight
            .iter()
            .enumerate()
            .scan(0, |sum, (row, &w)| {
                if eligible(row) {
                    *sum += w;
                }
                Some(*sum)
            })
            .collect();
        let total = cumulative.last().copied().unwrap_or(0).max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(0x4A4D ^ trainings as u64);
        (0..searches)
            .map(|_| {
                let mut best: Option<usize> = None;
                for _ in 0..trainings.max(1) {
                    let x = rng.random_range(0..total);
                    let row = cumulative.partition_point(|&c| c <= x);
                    if best.is_none_or(|b| self.val[row] > self.val[b]) {
                        best = Some(row);
                    }
                }
                best.expect("one draw at least")
            })
            .collect()
    }

    /// The random-search section: each pick's percentile in the table (the training that
    /// chose it) and trained again.
    fn retrained_markdown(&self, k: usize, picks: &[(usize, Reading)]) -> String {
        let mut md = format!(
            "\n## Random search of {k} trainings, its picks trained again\n\n{} simulated \
             searches; each pick trained {} more times with the table's recipe. In the table, \
             its percentile counts the luck of the training that chose it; trained again, it \
             does not.\n\n| pick | percentile in the table | trained again: first, mean of all |\n|---|---|---|\n",
            picks.len(),
            self.trainings()
        );
        let (mut table_pct, mut first, mut mean) = (Vec::new(), Vec::new(), Vec::new());
        for (row, r) in picks {
            let t = self.test_percentile(self.test[*row]);
            md.push_str(&format!(
                "| {} | {t:.1} | {:.1}, {:.1} |\n",
                arch_cell(std::iter::once(r.arch.as_str())),
                r.place.percentile,
                r.place.mean_percentile
            ));
            table_pct.push(t);
            first.push(r.place.percentile);
            mean.push(r.place.mean_percentile);
        }
        md.push_str(&format!(
            "| mean (worst) | {:.1} ({:.1}) | {:.1} ({:.1}), {:.1} ({:.1}) |\n",
            mean_std(&table_pct).0,
            min(&table_pct),
            mean_std(&first).0,
            min(&first),
            mean_std(&mean).0,
            min(&mean)
        ));
        md
    }

    /// The `k` best rows by `by` (ties broken by row order), each row counted once per
    /// architecture it stands for, ranked by `percentile`: their mean and worst.
    fn oracle(
        by: &[f64],
        weight: &[usize],
        k: usize,
        percentile: impl Fn(usize) -> f64,
    ) -> (f64, f64) {
        let mut order: Vec<usize> = (0..by.len()).collect();
        order.sort_by(|&a, &b| by[b].total_cmp(&by[a]));
        let (mut sum, mut n, mut worst) = (0.0, 0usize, f64::INFINITY);
        for &row in &order {
            if n >= k {
                break;
            }
            let p = percentile(row);
            let w = weight[row].min(k - n);
            sum += p * w as f64;
            n += w;
            worst = worst.min(p);
        }
        (sum / n as f64, worst)
    }

    /// The noise section of the summary.
    fn markdown(&self) -> String {
        let mut md = format!(
            "\n## How noisy the table is\n\nEvery network was trained once; its test accuracy is \
             measured on {} images (one image = {:.2} points) and its validation accuracy on {}. \
             A perfect search by the table's own validation accuracy (the same training run) \
             would pick architectures at these test percentiles:\n\n\
             | the k best by validation accuracy | their test percentile, mean (worst) |\n|---|---|\n",
            self.test_images,
            100.0 / self.test_images as f64,
            self.val_images
        );
        md.push_str(&self.validation_oracle_rows(|row| self.test_percentile(self.test[row])));
        md.push_str(&format!(
            "\nKendall tau between the table's validation and test accuracy over its {} distinct \
             networks: {:.3}. A second measurement of the same trained networks ranks them no \
             better than that, so it is the scale to read SPOS's tau on.\n",
            self.val.len(),
            kendall_tau(&self.val, &self.test)
        ));
        md.push_str(
            "\nThe \"pooled percentile\" column ranks the derived architecture by its validation \
             and test accuracy pooled (weighted by image counts), which halves the measurement \
             noise of either alone.\n",
        );
        if !self.repeats.is_empty() {
            md.push_str(&self.repeats_markdown());
        }
        md
    }

    /// What the repeat tables add: agreement between independent trainings, and the mean.
    fn repeats_markdown(&self) -> String {
        let n = self.trainings();
        let mut md = format!(
            "\n## The mean of {n} trainings\n\nEvery network was also trained with {} other \
             study seed(s) (another data split, other initial weights and batch order). Kendall \
             tau between the test accuracies of independent trainings:",
            n - 1
        );
        for (i, r) in self.repeats.iter().enumerate() {
            md.push_str(&format!(
                " table vs repeat {}: {:.3};",
                i + 1,
                kendall_tau(&self.test, r)
            ));
        }
        if self.repeats.len() >= 2 {
            md.push_str(&format!(
                " repeat 1 vs repeat 2: {:.3};",
                kendall_tau(&self.repeats[0], &self.repeats[1])
            ));
        }
        let t = |sorted: &[f64], p| 100.0 * Self::top_threshold(sorted, p);
        md.push_str(&format!(
            " the table's test accuracy vs the mean: {:.3}.\n\n\
             The top 10 % start at {:.2} % by one training and at {:.2} % by the mean; the top \
             2 % at {:.2} % and {:.2} %. The \"mean percentile\" column ranks the derived \
             architecture by its mean test accuracy over the {n} trainings. A perfect search by \
             the table's validation accuracy would pick architectures at these mean \
             percentiles:\n\n| the k best by validation accuracy | their mean percentile, mean \
             (worst) |\n|---|---|\n",
            kendall_tau(&self.test, &self.mean),
            t(&self.test_sorted, 10.0),
            t(&self.mean_sorted, 10.0),
            t(&self.test_sorted, 2.0),
            t(&self.mean_sorted, 2.0),
        ));
        md.push_str(&self.validation_oracle_rows(|row| self.mean_percentile(row)));
        md.push_str(
            "\nHow well the table's own best networks hold their place when trained again: the k \
             best by the table's test accuracy (the measurement its percentiles rank by), at their \
             test percentile in each independent training:\n\n| the k best by the table's test \
             accuracy |",
        );
        for i in 0..self.repeats.len() {
            md.push_str(&format!(
                " test percentile in repeat {}, mean (worst) |",
                i + 1
            ));
        }
        md.push_str(&format!("\n|---|{}\n", "---|".repeat(self.repeats.len())));
        // The last row: the best 10 % (of the architectures, or of a sample's networks).
        let tenth = self.oracle_weight.iter().sum::<usize>().div_ceil(10);
        let mut ks = vec![1, 5, 20, 100, tenth];
        ks.sort_unstable();
        ks.dedup();
        for k in ks {
            md.push_str(&format!("| {k} |"));
            for (r, sorted) in self.repeats.iter().zip(&self.repeats_sorted) {
                let (mean, worst) = Self::oracle(&self.test, &self.oracle_weight, k, |row| {
                    Self::rank_in(sorted, r[row])
                });
                md.push_str(&format!(" {mean:.1} ({worst:.1}) |"));
            }
            md.push('\n');
        }
        md
    }
}

fn write_results(
    args: &Args,
    runs: &[Run],
    retrained: &[(usize, Reading)],
    optimum: f64,
    one_training: f64,
    truth: &GroundTruth,
) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut csv = String::from(
        "method,seed,arch,test_accuracy,percentile,pooled_percentile,search_seconds,kendall_tau,probabilities,mean_test_accuracy,mean_percentile,kendall_tau_mean,repeat_percentiles,random_search_percentile,random_search_mean_percentile,selected_arch,selected_percentile,selected_mean_percentile,cost,cost_percentile,cost_mean_percentile,cost_random_search_percentile,cost_random_search_mean_percentile,random_search_repeat_percentile\n",
    );
    for r in runs {
        writeln!(
            csv,
            "{},{},\"{}\",{:.4},{:.2},{:.2},{:.2},{},{},{:.4},{:.2},{},{},{:.2},{:.2},{},{},{},{}",
            r.method.name(),
            r.seed,
            r.arch,
            r.place.test_accuracy,
            r.place.percentile,
            r.place.pooled_percentile,
            r.search_seconds,
            r.tau.map(|t| format!("{:.4}", t.test)).unwrap_or_default(),
            r.final_probabilities,
            r.place.mean_accuracy,
            r.place.mean_percentile,
            r.tau.map(|t| format!("{:.4}", t.mean)).unwrap_or_default(),
            r.place
                .repeat_percentiles
                .iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join("/"),
            r.random_search.percentile,
            r.random_search.mean_percentile,
            r.selected
                .as_ref()
                .map(|s| format!(
                    "\"{}\",{:.2},{:.2}",
                    s.arch, s.place.percentile, s.place.mean_percentile
                ))
                .unwrap_or_else(|| ",,".to_string()),
            r.cost,
            [r.cost_place, r.random_search_within]
                .map(|p| p
                    .map(|p| format!("{:.2},{:.2}", p.percentile, p.mean_percentile))
                    .unwrap_or_else(|| ",".to_string()))
                .join(","),
            r.random_search
                .repeats_percentile
                .map(|p| format!("{p:.2}"))
                .unwrap_or_default(),
        )?;
    }
    std::fs::write(args.out.join("runs.csv"), csv)?;
    let mut md = format!(
        "# One-shot search on `{}`\n\n{}{} epochs per search, seeds {:?}, arch_lr {}, \
         weight_lr {}, warmup {} epochs, Beta-Decay {}, random smoothing {}, progressive pruning {}, cost penalty {} ({:?}), affine BatchNorm in mixed edges {}, GDAS/SPOS compute {}, GDAS gradient {:?}, SPOS sandwich rule {:?}, SPOS scores on {} validation images, selection {}, {} proposal(s) per search trained once to pick the best by validation accuracy (in the search's cost), supernet width {} channels, {} thread(s). Table optimum (test accuracy): {:.2} %. Training one candidate (the \
         table's recipe, measured in this run): {one_training:.2} s.\n\n\
         | method | test accuracy, mean ± std (%) | percentile, mean (min) | pooled percentile, mean (min) | mean of {}: accuracy (%), percentile mean (min) | test percentile in the other trainings alone, mean (min) | all-skip / all-pool / all-none cells | search seconds (x one training) | random search given that time: percentile, mean percentile (, in the repeats alone) | Kendall tau | derived architectures |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        truth.name,
        truth.sample_note(),
        args.epochs,
        args.seeds,
        args.arch_lr,
        args.weight_lr,
        args.warmup,
        args.beta_decay,
        args.random_smoothing,
        if args.prune_to == 0 {
            "off".to_string()
        } else {
            let schedule = OneShotConfig {
                epochs: args.epochs,
                prune_after: args.prune_after,
                ..OneShotConfig::default()
            };
            format!(
                "to {} options per choice after {} epochs",
                args.prune_to,
                schedule.prune_epoch()
            )
        },
        args.cost_penalty,
        args.cost_metric,
        args.affine,
        if args.all_ops {
            "every operation"
        } else {
            "the sampled path only"
        },
        args.gdas_gradient,
        args.sandwich,
        args.score_images
            .map_or("all".to_string(), |n| format!("the first {n}")),
        match args.selection {
            Selection::Magnitude => "by magnitude (argmax of alpha)".to_string(),
            Selection::Perturbation => format!(
                "by perturbation (DARTS-PT, validation {:?}), {} tuning epochs per decision",
                args.selection_metric, args.selection_epochs
            ),
        },
        args.derive,
        args.channels
            .map_or("the table's".to_string(), |c| c.to_string()),
        args.threads,
        100.0 * optimum,
        truth.trainings_label()
    );
    for &m in &args.methods {
        let rs: Vec<&Run> = runs.iter().filter(|r| r.method == m).collect();
        if rs.is_empty() {
            continue;
        }
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.test_accuracy).collect();
        let pct: Vec<f64> = rs.iter().map(|r| r.place.percentile).collect();
        let secs: Vec<f64> = rs.iter().map(|r| r.search_seconds).collect();
        let (am, asd) = mean_std(&acc);
        let (pm, _) = mean_std(&pct);
        let pmin = min(&pct);
        let pooled: Vec<f64> = rs.iter().map(|r| r.place.pooled_percentile).collect();
        let (qm, _) = mean_std(&pooled);
        let qmin = min(&pooled);
        let (sm, _) = mean_std(&secs);
        let means: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.mean_accuracy).collect();
        let mean_pct: Vec<f64> = rs.iter().map(|r| r.place.mean_percentile).collect();
        let repeat_pct: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.place.repeat_percentiles.iter().copied())
            .collect();
        let mean_cell = format!(
            "{:.2}, {:.1} ({:.1}) | {}",
            mean_std(&means).0,
            mean_std(&mean_pct).0,
            min(&mean_pct),
            if repeat_pct.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1} ({:.1})", mean_std(&repeat_pct).0, min(&repeat_pct))
            }
        );
        // Cells (NB201 strings) with `op` on every edge; other spaces have none.
        let degenerate = |op: &str| {
            rs.iter()
                .filter(|r| {
                    let mut edges = r.arch.split('|').filter(|t| t.contains('~')).peekable();
                    edges.peek().is_some() && edges.all(|t| t.starts_with(op))
                })
                .count()
        };
        let taus: Vec<Tau> = rs.iter().filter_map(|r| r.tau).collect();
        let tau = if taus.is_empty() {
            "-".to_string()
        } else {
            let (t, ts) = mean_std(&taus.iter().map(|t| t.test).collect::<Vec<_>>());
            let (m, ms) = mean_std(&taus.iter().map(|t| t.mean).collect::<Vec<_>>());
            let (p, _) = mean_std(&taus.iter().map(|t| t.params).collect::<Vec<_>>());
            format!("{t:.3} ± {ts:.3} (mean: {m:.3} ± {ms:.3}; parameter count: {p:.3})")
        };
        let archs = arch_cell(rs.iter().map(|r| r.arch.as_str()));
        // Random search given that time: its pick by the table, by the mean, in the repeats alone.
        let random: Vec<RandomSearchPlace> = rs.iter().map(|r| r.random_search).collect();
        let mut random_cell = format!(
            "{:.1}, {:.1}",
            mean_of(&random.iter().map(|p| p.percentile).collect::<Vec<_>>()),
            mean_of(&random.iter().map(|p| p.mean_percentile).collect::<Vec<_>>())
        );
        let alone: Vec<f64> = random.iter().filter_map(|p| p.repeats_percentile).collect();
        if !alone.is_empty() {
            random_cell.push_str(&format!(", {:.1}", mean_of(&alone)));
        }
        writeln!(
            md,
            "| {} | {am:.2} ± {asd:.2} | {pm:.1} ({pmin:.1}) | {qm:.1} ({qmin:.1}) | {mean_cell} | {} / {} / {} | {sm:.1} ({:.1}x) | {random_cell} | {tau} | {} |",
            m.name(),
            degenerate("skip_connect"),
            degenerate("avg_pool_3x3"),
            degenerate("none"),
            sm / one_training,
            archs
        )?;
    }
    md.push_str(
        "\n\"Random search given that time\": as many architectures as the search cost \
         trainings of one, drawn uniformly from the table, the best by the table's final \
         validation accuracy kept (its test percentile, its mean percentile and, with repeats, \
         its test percentile in the repeats alone, where the luck of the training that chose it \
         does not count), averaged over 2,000 simulated searches per run.\n",
    );
    let costed: Vec<&Run> = runs.iter().filter(|r| r.cost_place.is_some()).collect();
    if args.max_cost_share.is_some() || args.cost_penalty > 0.0 {
        writeln!(
            md,
            "\n## Within a cost budget\n\nEach pick ranked among the table's networks that cost \
             at most the budget (`--max-cost-share`, for SPOS) or, without one, at most the pick's \
             own {:?}.{}\n\n| method | percentile, mean (min) | mean of {}: percentile, mean (min) | random search given that time among the same networks: percentile, mean percentile |\n|---|---|---|---|",
            args.cost_metric,
            budget_note(args),
            truth.trainings_label()
        )?;
        for &m in &args.methods {
            let rs: Vec<&&Run> = costed.iter().filter(|r| r.method == m).collect();
            let within: Vec<BudgetPlacement> = rs.iter().filter_map(|r| r.cost_place).collect();
            let random: Vec<BudgetPlacement> =
                rs.iter().filter_map(|r| r.random_search_within).collect();
            if !within.is_empty() {
                writeln!(
                    md,
                    "| {} |{} {:.1}, {:.1} |",
                    m.name(),
                    budget_cell(&within, " | "),
                    mean_of(&random.iter().map(|p| p.percentile).collect::<Vec<_>>()),
                    mean_of(&random.iter().map(|p| p.mean_percentile).collect::<Vec<_>>())
                )?;
            }
        }
    }
    readings_markdown(
        &mut md,
        args,
        runs,
        "The same supernets read by magnitude (argmax of alpha after the search's last epoch, \
         before perturbation-based selection tuned them)",
        |r| r.magnitude.as_ref(),
    )?;
    readings_markdown(
        &mut md,
        args,
        runs,
        &format!(
            "The same searches' selected architecture alone (the first of the {} proposals, \
             without training them to pick one)",
            args.derive
        ),
        |r| r.selected.as_ref(),
    )?;
    md.push_str(&truth.markdown());
    if let Some((k, _)) = args.random_search.filter(|_| !retrained.is_empty()) {
        md.push_str(&truth.retrained_markdown(k, retrained));
    }
    std::fs::write(args.out.join("summary.md"), &md)?;
    println!("{md}");
    Ok(())
}
