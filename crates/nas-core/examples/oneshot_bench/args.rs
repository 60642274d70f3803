//! The command line: every flag, its default and its checks.

use std::path::{Path, PathBuf};

use nas_train::oneshot::{Method, OneShotConfig};

use crate::Result;

pub struct Args {
    pub table: PathBuf,
    /// Tables of the same space and recipe built with other study seeds (other splits and
    /// initial weights): every derived cell is also ranked by its mean over all trainings.
    pub repeats: Vec<PathBuf>,
    pub methods: Vec<Method>,
    pub seeds: Vec<u64>,
    /// The search flags, as a study's `[[strategy]]` would set them; [`crate::Bench`] turns
    /// this into each method's configuration (leaving out what a method refuses).
    pub search: OneShotConfig,
    /// SPOS: architectures scored with the supernet's weights.
    pub spos_sample: usize,
    /// SPOS: validation images each path is scored on (`None`: the whole split).
    pub score_images: Option<usize>,
    /// SPOS and the proxies on a complete table: score only networks costing at most this
    /// share of the table's costliest (`--cost-metric`), as a study with a cost constraint
    /// would, and rank the picks among the table's networks within that budget.
    pub max_cost_share: Option<f64>,
    /// SPOS: epochs of each few-shot sub-supernet (0: one supernet scores every path).
    pub few_shot: usize,
    /// Zero-cost proxies scored on the networks SPOS scores, as training-free baselines.
    pub proxies: Vec<String>,
    /// Width of the supernet (default: the table's); derived cells are looked up in the
    /// table at its own width.
    pub channels: Option<usize>,
    /// Trainings of each derived architecture when the table is a sample without repeats
    /// (with repeats: one per table).
    pub trainings: usize,
    /// Whether `--trainings` was given (a sample with repeats refuses another count).
    pub trainings_given: bool,
    /// Architectures each search proposes, as a study's `derive`: the selected one, then
    /// the most likely others (SPOS: the best scored); each is trained once with the table's
    /// recipe (a complete table: its own training) and the best by validation accuracy is
    /// the search's pick, the one `[final]` would retrain. Their trainings count in the
    /// search's cost.
    pub derive: usize,
    /// `(k, n)`: also simulate `n` random searches of `k` trainings each on the table and
    /// train their picks again like a derived architecture (a sampled table's measure of
    /// what random search's pick is worth without the luck of the training that chose it).
    pub random_search: Option<(usize, usize)>,
    pub threads: usize,
    pub out: PathBuf,
    /// `--combine`: earlier runs' output folders, one group per table row (no search runs).
    pub combine: Vec<Vec<PathBuf>>,
}

pub const USAGE: &str = "usage: oneshot_bench [FLAGS]; --help lists them";

/// Every flag, with its default: `cargo xtask bench-oneshot --help` prints this.
pub const HELP: &str = "\
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
  --combine DIRS          no search: read the runs.csv of earlier runs' output folders and
                          write one table row per comma-separated group (a group's folders
                          joined by +, their runs pooled: e.g. seeds 1-8 and 9-16 of one
                          setting) to <out>/combined.md
";

/// A method, selection or metric by its TOML name (`darts-minus`, `perturbation`, `loss`).
pub fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown value `{s}`; {USAGE}").into())
}

pub const DEFAULT_TABLE: &str = "configs/tables/nb201-digits.json.gz";

/// A table's repeats by default: every `<name>-seed*.json.gz` beside `<name>.json.gz`.
pub fn default_repeats(table: &Path) -> Vec<PathBuf> {
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

pub fn parse_args() -> Result<Args> {
    let mut a = Args {
        table: PathBuf::from(DEFAULT_TABLE),
        repeats: Vec::new(),
        methods: Method::ALL.to_vec(),
        seeds: (1..=5).collect(),
        search: OneShotConfig {
            arch_lr: 3e-3,
            ..OneShotConfig::default()
        },
        spos_sample: 300,
        score_images: None,
        max_cost_share: None,
        few_shot: 0,
        proxies: Vec::new(),
        channels: None,
        trainings: 3,
        trainings_given: false,
        derive: 1,
        random_search: None,
        threads: 1,
        out: PathBuf::from("results/bench-oneshot"),
        combine: Vec::new(),
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
            "--epochs" => a.search.epochs = value()?.parse()?,
            "--arch-lr" => a.search.arch_lr = value()?.parse()?,
            "--weight-lr" => a.search.weight_lr = value()?.parse()?,
            "--warmup" => a.search.warmup_epochs = value()?.parse()?,
            "--beta-decay" => a.search.beta_decay = value()?.parse()?,
            "--random-smoothing" => a.search.random_smoothing = value()?.parse()?,
            "--prune-to" => a.search.prune_to = value()?.parse()?,
            "--prune-after" => a.search.prune_after = Some(value()?.parse()?),
            "--cost-penalty" => a.search.cost_penalty = value()?.parse()?,
            "--cost-metric" => a.search.cost_metric = parse_name(&value()?)?,
            "--affine" => a.search.affine = true,
            "--all-ops" => a.search.sampled_path_only = false,
            "--gdas-gradient" => a.search.gdas_gradient = parse_name(&value()?)?,
            "--spos-sample" => a.spos_sample = value()?.parse()?,
            "--sandwich" => a.search.sandwich = parse_name(&value()?)?,
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
            "--selection" => a.search.selection = parse_name(&value()?)?,
            "--selection-epochs" => a.search.selection_epochs = value()?.parse()?,
            "--selection-metric" => a.search.selection_metric = parse_name(&value()?)?,
            "--channels" => a.channels = Some(value()?.parse()?),
            "--trainings" => {
                a.trainings = value()?.parse()?;
                a.trainings_given = true;
            }
            "--derive" => a.derive = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--out" => a.out = value()?.into(),
            "--combine" => {
                a.combine = value()?
                    .split(',')
                    .filter(|g| !g.trim().is_empty())
                    .map(|g| g.split('+').map(|d| PathBuf::from(d.trim())).collect())
                    .collect()
            }
            other => return Err(format!("unknown argument `{other}`; {USAGE}").into()),
        }
    }
    a.repeats = repeats.unwrap_or_else(|| default_repeats(&a.table));
    if a.trainings == 0 || a.derive == 0 {
        return Err(format!("--trainings and --derive must be at least 1; {USAGE}").into());
    }
    Ok(a)
}
