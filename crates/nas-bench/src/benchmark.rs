//! Benchmark suites: many real studies (methods x spaces x datasets x budgets x seeds) run
//! through the normal engine, then one report (`report::bench`).
//!
//! A suite is a TOML file:
//!
//! ```toml
//! [suite]
//! name = "nb201"                 # default: the file name; results/bench/<name>/
//! seeds = 20                     # runs per combination (`--seeds` overrides)
//! seed = 0                       # run k uses study seed `seed + k`
//! reference = "the NAS-Bench-201 paper"   # where `reference` numbers come from
//! notes = "..."                  # markdown placed at the top of report.md
//!
//! [[method]]                     # a strategy, or several mixed
//! name = "REA"
//! reference = "REA"              # the reference row it is compared with (optional)
//! strategy = [{ plugin = "evolution", population = 10, sample = 3 }]
//!
//! [[method]]
//! name = "bandit(random,evolution)"
//! mix = "bandit"                 # or a [mix] table: { mode = "bandit", window = 20 }
//! strategy = [{ plugin = "random" }, { plugin = "evolution" }]
//! evaluator = { nb201 = { fidelity = "auto" } }   # per-method keys for an evaluator
//!
//! [[space]]                      # a `[space]` table of a study, plus a `name`
//! name = "nb201"
//! kind = "cell"
//!
//! [[dataset]]
//! name = "cifar10"
//! label = "CIFAR-10"
//! optimum = 0.94373              # best score of the benchmark: regret is measured to it
//! reference = { REA = 0.9392 }   # published scores by reference method name
//! space = { input = [3, 32, 32], classes = 10 }   # merged into every space
//! evaluator = { nb201 = { dataset = "cifar10" } } # merged into that evaluator's table
//!
//! [[budget]]
//! trials = 200                   # the study budget (required: the cap of every run)
//! proposals = 200                # optional: also stop after this many proposals, repeats
//!                                # included (a budget counted as Optuna counts trials)
//! simulated_seconds = 50000      # optional: each run stops once its summed cost (the `time`
//!                                # metric) reaches it, and is cut there for the report
//! stop_at_optimum = true         # optional: each run stops once its objective reaches the
//!                                # dataset's `optimum` (`[budget] target` of the study); the
//!                                # objective must then be the score
//!
//! [[evaluator]]                  # the pipeline, as in a study
//! plugin = "nb201"
//! fidelity = "12"
//!
//! [objective]                    # as in a study
//! maximize = "val_accuracy"
//!
//! [analysis]                     # all optional
//! select = { maximize = "val_accuracy" }   # search signal picking the incumbent (default: the objective)
//! score = { maximize = "test_accuracy" }   # what is reported of it (default: the search signal)
//! time = "simulated_seconds"     # per-trial cost metric for the time axis (default: it, when present)
//! threshold = 0.003              # regret counting as "reached" (default 0.003)
//! percent = true                 # show scores in percent (default: for `*accuracy` scores)
//! ```
//!
//! Every combination and seed becomes a normal study config (written as `study.toml` in its
//! run directory under `<out>/runs/`, existing run directories are replaced) and runs through
//! [`Study::open`] and [`Study::run`]; `jobs` studies run at once, each in its own thread.
//! Methods whose strategy plugin cannot be loaded are skipped with a warning; a missing
//! evaluator plugin is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use nas_plugin::abi::PluginKind;
use nas_plugin::{Direction, Objective};
use serde::Deserialize;

use crate::report::bench::{
    Bench, BenchBudget, BenchDataset, BenchMethod, BenchRun, BenchTrial, slug,
};
use nas_core::config::{self, StudyConfig};
use nas_core::plugins;
use nas_core::storage::{Storage, TrialRecord};
use nas_core::study::{Observer, Progress, Study};

/// Seeds per combination when the suite does not say.
pub const DEFAULT_SEEDS: usize = 10;
/// Regret counting as "reached" when the suite does not say.
pub const DEFAULT_THRESHOLD: f64 = 0.003;

// ---- the suite file -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    #[serde(default)]
    suite: RawHeader,
    #[serde(rename = "method")]
    methods: Vec<RawMethod>,
    #[serde(rename = "space")]
    spaces: Vec<toml::Table>,
    #[serde(rename = "dataset", default)]
    datasets: Vec<RawDataset>,
    #[serde(rename = "budget")]
    budgets: Vec<RawBudget>,
    #[serde(rename = "evaluator")]
    evaluators: Vec<toml::Table>,
    objective: toml::Table,
    constraints: Option<toml::Table>,
    #[serde(default)]
    analysis: RawAnalysis,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    seeds: Option<usize>,
    #[serde(default)]
    seed: u64,
    reference: Option<String>,
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    name: String,
    strategy: Vec<toml::Table>,
    mix: Option<toml::Value>,
    reference: Option<String>,
    #[serde(default)]
    evaluator: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: String,
    label: Option<String>,
    optimum: Option<f64>,
    #[serde(default)]
    reference: BTreeMap<String, f64>,
    #[serde(default)]
    space: toml::Table,
    #[serde(default)]
    evaluator: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    name: Option<String>,
    trials: Option<u64>,
    proposals: Option<u64>,
    simulated_seconds: Option<f64>,
    #[serde(default)]
    stop_at_optimum: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalysis {
    select: Option<RawGoal>,
    score: Option<RawGoal>,
    time: Option<String>,
    threshold: Option<f64>,
    percent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    minimize: Option<String>,
    maximize: Option<String>,
}

impl RawGoal {
    fn objective(&self, what: &str) -> anyhow::Result<Objective> {
        match (&self.minimize, &self.maximize) {
            (Some(m), None) => Ok(Objective {
                metric: m.clone(),
                direction: Direction::Minimize,
            }),
            (None, Some(m)) => Ok(Objective {
                metric: m.clone(),
                direction: Direction::Maximize,
            }),
            _ => bail!(
                "`[analysis] {what}` needs exactly one of `minimize = \"metric\"` or `maximize = \"metric\"`"
            ),
        }
    }
}

/// A method of the suite.
#[derive(Clone, Debug)]
pub struct Method {
    pub name: String,
    pub reference: Option<String>,
    pub strategies: Vec<toml::Table>,
    pub mix: Option<toml::Table>,
    pub evaluator: BTreeMap<String, toml::Table>,
}

impl Method {
    /// The strategy plugins it needs.
    pub fn plugins(&self) -> Vec<String> {
        self.strategies
            .iter()
            .filter_map(|t| t.get("plugin").and_then(|p| p.as_str()).map(str::to_string))
            .collect()
    }

    /// Its strategies and mix in one line, e.g. `evolution (population = 10, sample = 3)`.
    pub fn description(&self) -> String {
        let parts: Vec<String> = self
            .strategies
            .iter()
            .map(|t| {
                let plugin = t.get("plugin").and_then(|p| p.as_str()).unwrap_or("?");
                let options: Vec<String> = t
                    .iter()
                    .filter(|(k, _)| *k != "plugin")
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                if options.is_empty() {
                    plugin.to_string()
                } else {
                    format!("{plugin} ({})", options.join(", "))
                }
            })
            .collect();
        let mut text = parts.join(" + ");
        if let Some(mix) = &self.mix {
            let options: Vec<String> = mix.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            text.push_str(&format!(", mixed by [mix] {}", options.join(", ")));
        } else if self.strategies.len() > 1 {
            text.push_str(", as phases");
        }
        for (plugin, keys) in &self.evaluator {
            let options: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            text.push_str(&format!(
                "; evaluator `{plugin}` with {}",
                options.join(", ")
            ));
        }
        text
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub info: BenchDataset,
    pub space: toml::Table,
    pub evaluator: BTreeMap<String, toml::Table>,
}

#[derive(Clone, Debug)]
pub struct Space {
    pub name: String,
    pub table: toml::Table,
}

/// A parsed suite.
#[derive(Clone, Debug)]
pub struct Suite {
    pub path: PathBuf,
    pub name: String,
    pub seeds: usize,
    pub seed: u64,
    pub reference: Option<String>,
    pub notes: Option<String>,
    pub methods: Vec<Method>,
    pub spaces: Vec<Space>,
    pub datasets: Vec<Dataset>,
    pub budgets: Vec<BenchBudget>,
    pub evaluators: Vec<toml::Table>,
    pub objective: toml::Table,
    pub constraints: Option<toml::Table>,
    pub select: Option<Objective>,
    pub score: Option<Objective>,
    pub time: Option<String>,
    pub threshold: f64,
    pub percent: Option<bool>,
}

fn plugin_of(table: &toml::Table) -> Option<&str> {
    table.get("plugin").and_then(|p| p.as_str())
}

/// Reads and checks a suite file.
pub fn load_suite(path: &Path) -> anyhow::Result<Suite> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read suite {}", path.display()))?;
    parse_suite(path, &text)
}

/// Parses a suite's text; `path` names it in messages and gives the default name.
pub fn parse_suite(path: &Path, text: &str) -> anyhow::Result<Suite> {
    let raw: RawSuite =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let whole = |m: String| anyhow::anyhow!("{}: {m}", path.display());
    let name = raw.suite.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "suite".into())
    });
    let evaluator_plugins = check_sections(&raw).map_err(whole)?;
    let methods = methods(raw.methods, &evaluator_plugins).map_err(whole)?;
    let spaces = spaces(raw.spaces).map_err(whole)?;
    let datasets = datasets(raw.datasets, &evaluator_plugins).map_err(whole)?;
    let budgets = budgets(raw.budgets).map_err(whole)?;
    let threshold = raw.analysis.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if threshold.is_nan() || threshold < 0.0 {
        return Err(whole("`[analysis] threshold` must be a number >= 0".into()));
    }
    if budgets.iter().any(|b| b.stop_at_optimum) {
        check_stop_at_optimum(&raw.objective, &raw.analysis, &datasets).map_err(whole)?;
    }
    let seeds = raw.suite.seeds.unwrap_or(DEFAULT_SEEDS);
    if seeds == 0 {
        return Err(whole("`[suite] seeds` must be at least 1".into()));
    }
    let goal = |g: &Option<RawGoal>, what: &str| {
        g.as_ref()
            .map(|g| g.objective(what))
            .transpose()
            .map_err(|e| whole(e.to_string()))
    };
    Ok(Suite {
        path: path.to_path_buf(),
        name,
        seeds,
        seed: raw.suite.seed,
        reference: raw.suite.reference,
        notes: raw.suite.notes,
        methods,
        spaces,
        datasets,
        budgets,
        select: goal(&raw.analysis.select, "select")?,
        score: goal(&raw.analysis.score, "score")?,
        evaluators: raw.evaluators,
        objective: raw.objective,
        constraints: raw.constraints,
        time: raw.analysis.time,
        threshold,
        percent: raw.analysis.percent,
    })
}

/// `stop_at_optimum` makes each study stop when its objective reaches the dataset's optimum,
/// which is only that if the objective is the score the optimum is of.
fn check_stop_at_optimum(
    objective: &toml::Table,
    analysis: &RawAnalysis,
    datasets: &[Dataset],
) -> Result<(), String> {
    if let Some(d) = datasets.iter().find(|d| d.info.optimum.is_none()) {
        return Err(format!(
            "[[budget]] `stop_at_optimum` needs the `optimum` of every [[dataset]]; `{}` has none",
            d.info.name
        ));
    }
    if datasets.is_empty() {
        return Err(
            "[[budget]] `stop_at_optimum` needs [[dataset]] tables with an `optimum`".into(),
        );
    }
    let objective = match (
        objective.get("maximize").and_then(|v| v.as_str()),
        objective.get("minimize").and_then(|v| v.as_str()),
    ) {
        (Some(m), None) => (m, Direction::Maximize),
        (None, Some(m)) => (m, Direction::Minimize),
        _ => {
            return Err("[[budget]] `stop_at_optimum` needs a single `[objective]` \
                        (`maximize = \"metric\"` or `minimize = \"metric\"`)"
                .into());
        }
    };
    let goal = |g: &Option<RawGoal>| g.as_ref().and_then(|g| g.objective("").ok());
    let score = goal(&analysis.score).or_else(|| goal(&analysis.select));
    if let Some(score) = score
        && (score.metric != objective.0 || score.direction != objective.1)
    {
        return Err(format!(
            "[[budget]] `stop_at_optimum` stops each run when the objective `{}` reaches the \
             dataset's optimum, but the runs are scored by `{}`: make the objective the score \
             (or drop `stop_at_optimum`)",
            objective.0, score.metric
        ));
    }
    Ok(())
}

/// The tables every suite needs; returns the evaluator plugin names.
fn check_sections(raw: &RawSuite) -> Result<Vec<String>, String> {
    if raw.methods.is_empty() || raw.spaces.is_empty() || raw.budgets.is_empty() {
        return Err(
            "a suite needs at least one [[method]], one [[space]] and one [[budget]]".into(),
        );
    }
    if raw.evaluators.is_empty() {
        return Err("a suite needs at least one [[evaluator]], e.g. `plugin = \"nb201\"`".into());
    }
    let evaluator_plugins: Vec<String> = raw
        .evaluators
        .iter()
        .filter_map(plugin_of)
        .map(str::to_string)
        .collect();
    if evaluator_plugins.len() != raw.evaluators.len() {
        return Err("every [[evaluator]] needs `plugin = \"name\"`".into());
    }
    Ok(evaluator_plugins)
}

/// Per-method or per-dataset evaluator options must name one of the suite's evaluators.
fn check_overrides(
    owner: &str,
    map: &BTreeMap<String, toml::Table>,
    evaluator_plugins: &[String],
) -> Result<(), String> {
    for plugin in map.keys() {
        if !evaluator_plugins.contains(plugin) {
            return Err(format!(
                "{owner} sets options of evaluator `{plugin}`, but the suite's [[evaluator]] plugins are: {}",
                evaluator_plugins.join(", ")
            ));
        }
    }
    Ok(())
}

fn methods(raw: Vec<RawMethod>, evaluator_plugins: &[String]) -> Result<Vec<Method>, String> {
    let mut methods = Vec::new();
    for m in raw {
        if m.strategy.is_empty() {
            return Err(format!(
                "method `{}` has no strategy: `strategy = [{{ plugin = \"random\" }}]`",
                m.name
            ));
        }
        if m.strategy.iter().any(|t| plugin_of(t).is_none()) {
            return Err(format!(
                "method `{}`: every strategy table needs `plugin = \"name\"`",
                m.name
            ));
        }
        if methods.iter().any(|x: &Method| x.name == m.name) {
            return Err(format!("method `{}` is listed twice", m.name));
        }
        check_overrides(
            &format!("method `{}`", m.name),
            &m.evaluator,
            evaluator_plugins,
        )?;
        let mix = match m.mix {
            None => None,
            Some(toml::Value::String(mode)) => Some(toml::Table::from_iter([(
                "mode".to_string(),
                toml::Value::String(mode),
            )])),
            Some(toml::Value::Table(t)) => Some(t),
            Some(other) => {
                return Err(format!(
                    "method `{}`: `mix` is a mode (\"bandit\", \"portfolio\", \"phases\") or a [mix] table, not `{other}`",
                    m.name
                ));
            }
        };
        methods.push(Method {
            name: m.name,
            reference: m.reference,
            strategies: m.strategy,
            mix,
            evaluator: m.evaluator,
        });
    }
    Ok(methods)
}

/// `[[space]]` tables by name (default: their kind), each a study's `[space]` table.
fn spaces(raw: Vec<toml::Table>) -> Result<Vec<Space>, String> {
    let mut spaces = Vec::new();
    for mut t in raw {
        let name = match t.remove("name") {
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(format!("[[space]] `name` must be a string, not `{other}`"));
            }
            None => t
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("space")
                .to_string(),
        };
        if spaces.iter().any(|s: &Space| s.name == name) {
            return Err(format!(
                "two [[space]] tables are named `{name}`: give them different `name`s"
            ));
        }
        spaces.push(Space { name, table: t });
    }
    Ok(spaces)
}

/// The `[[dataset]]` tables; without any, one `default` dataset that changes nothing.
fn datasets(raw: Vec<RawDataset>, evaluator_plugins: &[String]) -> Result<Vec<Dataset>, String> {
    let raw = if raw.is_empty() {
        vec![RawDataset {
            name: "default".into(),
            label: None,
            optimum: None,
            reference: BTreeMap::new(),
            space: toml::Table::new(),
            evaluator: BTreeMap::new(),
        }]
    } else {
        raw
    };
    let mut datasets = Vec::new();
    for d in raw {
        check_overrides(
            &format!("dataset `{}`", d.name),
            &d.evaluator,
            evaluator_plugins,
        )?;
        datasets.push(Dataset {
            info: BenchDataset {
                label: d.label.unwrap_or_else(|| d.name.clone()),
                name: d.name,
                optimum: d.optimum,
                reference: d.reference,
            },
            space: d.space,
            evaluator: d.evaluator,
        });
    }
    Ok(datasets)
}

fn budgets(raw: Vec<RawBudget>) -> Result<Vec<BenchBudget>, String> {
    let mut budgets = Vec::new();
    for b in raw {
        let Some(trials) = b.trials else {
            return Err(
                "every [[budget]] needs `trials = N`: the cap of each run (a `simulated_seconds` budget then cuts the runs)".into(),
            );
        };
        if trials == 0
            || b.proposals == Some(0)
            || b.simulated_seconds.is_some_and(|s| s.is_nan() || s <= 0.0)
        {
            return Err(
                "[[budget]] `trials`, `proposals` and `simulated_seconds` must be positive".into(),
            );
        }
        let name = b.name.unwrap_or_else(|| {
            let mut name = format!("{trials} trials");
            if let Some(p) = b.proposals {
                name += &format!(", {p} proposals");
            }
            if let Some(s) = b.simulated_seconds {
                name += &format!(", {s} s");
            }
            name
        });
        budgets.push(BenchBudget {
            name,
            trials: Some(trials),
            proposals: b.proposals,
            simulated_seconds: b.simulated_seconds,
            stop_at_optimum: b.stop_at_optimum,
        });
    }
    Ok(budgets)
}

// ---- study configs --------------------------------------------------------------------

/// One study of the benchmark.
#[derive(Clone, Debug)]
pub struct Plan {
    pub method: usize,
    pub space: usize,
    pub dataset: usize,
    pub budget: usize,
    pub seed: u64,
    pub dir: PathBuf,
    /// The generated study file (also written as `<dir>/study.toml`).
    pub text: String,
}

fn merge(base: &mut toml::Table, extra: &toml::Table) {
    for (k, v) in extra {
        base.insert(k.clone(), v.clone());
    }
}

impl Suite {
    /// The study file of one combination and seed.
    pub fn study_text(
        &self,
        method: usize,
        space: usize,
        dataset: usize,
        budget: usize,
        seed: u64,
        dir: &Path,
    ) -> String {
        let m = &self.methods[method];
        let d = &self.datasets[dataset];
        let mut doc = toml::Table::new();
        let mut study = toml::Table::new();
        study.insert(
            "name".into(),
            self.run_name(method, space, dataset, budget, seed).into(),
        );
        study.insert("seed".into(), toml::Value::Integer(seed as i64));
        study.insert("directory".into(), dir.display().to_string().into());
        doc.insert("study".into(), study.into());
        let mut b = toml::Table::new();
        if let Some(t) = self.budgets[budget].trials {
            b.insert("trials".into(), toml::Value::Integer(t as i64));
        }
        if let Some(p) = self.budgets[budget].proposals {
            b.insert("proposals".into(), toml::Value::Integer(p as i64));
        }
        // A simulated-time budget also stops the study itself (the report cuts at it exactly).
        if let Some(s) = self.budgets[budget].simulated_seconds {
            let mut cost = toml::Table::new();
            let metric = self.time.as_deref().unwrap_or("simulated_seconds");
            cost.insert("metric".into(), metric.into());
            cost.insert("max".into(), s.into());
            b.insert("cost".into(), cost.into());
        }
        if self.budgets[budget].stop_at_optimum
            && let Some(optimum) = d.info.optimum
        {
            b.insert("target".into(), optimum.into());
        }
        doc.insert("budget".into(), b.into());
        let mut sp = self.spaces[space].table.clone();
        merge(&mut sp, &d.space);
        doc.insert("space".into(), sp.into());
        doc.insert(
            "strategy".into(),
            toml::Value::Array(
                m.strategies
                    .iter()
                    .cloned()
                    .map(toml::Value::Table)
                    .collect(),
            ),
        );
        if let Some(mix) = &m.mix {
            doc.insert("mix".into(), mix.clone().into());
        }
        let evaluators: Vec<toml::Value> = self
            .evaluators
            .iter()
            .map(|e| {
                let mut e = e.clone();
                let plugin = plugin_of(&e).unwrap_or_default().to_string();
                if let Some(extra) = d.evaluator.get(&plugin) {
                    merge(&mut e, extra);
                }
                if let Some(extra) = m.evaluator.get(&plugin) {
                    merge(&mut e, extra);
                }
                toml::Value::Table(e)
            })
            .collect();
        doc.insert("evaluator".into(), toml::Value::Array(evaluators));
        doc.insert("objective".into(), self.objective.clone().into());
        if let Some(c) = &self.constraints {
            doc.insert("constraints".into(), c.clone().into());
        }
        let mut runtime = toml::Table::new();
        runtime.insert("workers".into(), toml::Value::Integer(1));
        runtime.insert("threads".into(), toml::Value::Integer(1));
        doc.insert("runtime".into(), runtime.into());
        let header = format!(
            "# Generated by `nas benchmark {}`: method `{}`, space `{}`, dataset `{}`, budget `{}`, seed {seed}.\n",
            self.path.display(),
            m.name,
            self.spaces[space].name,
            d.info.name,
            self.budgets[budget].name
        );
        // Sections in the order a person writes them (a table serializes sorted by key).
        let mut text = header;
        for key in [
            "study",
            "budget",
            "space",
            "strategy",
            "mix",
            "evaluator",
            "objective",
            "constraints",
            "runtime",
        ] {
            if let Some(value) = doc.remove(key) {
                let one = toml::Table::from_iter([(key.to_string(), value)]);
                text.push('\n');
                text.push_str(&toml::to_string(&one).expect("TOML tables serialize"));
            }
        }
        text
    }

    /// `method-dataset-s3`, with the space and budget when the suite has several.
    pub fn run_name(
        &self,
        method: usize,
        space: usize,
        dataset: usize,
        budget: usize,
        seed: u64,
    ) -> String {
        let mut parts = vec![slug(&self.methods[method].name)];
        if self.spaces.len() > 1 {
            parts.push(slug(&self.spaces[space].name));
        }
        parts.push(slug(&self.datasets[dataset].info.name));
        if self.budgets.len() > 1 {
            parts.push(slug(&self.budgets[budget].name));
        }
        parts.push(format!("s{seed}"));
        parts.join("-")
    }

    /// Every study of the suite for `seeds` seeds of the given methods, in a stable order.
    pub fn plans(&self, methods: &[usize], seeds: usize, runs_dir: &Path) -> Vec<Plan> {
        let mut out = Vec::new();
        for &m in methods {
            for s in 0..self.spaces.len() {
                for d in 0..self.datasets.len() {
                    for b in 0..self.budgets.len() {
                        for k in 0..seeds {
                            let seed = self.seed + k as u64;
                            let dir = runs_dir.join(self.run_name(m, s, d, b, seed));
                            let text = self.study_text(m, s, d, b, seed, &dir);
                            out.push(Plan {
                                method: m,
                                space: s,
                                dataset: d,
                                budget: b,
                                seed,
                                dir,
                                text,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

// ---- running --------------------------------------------------------------------------

/// How to run a suite.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Seeds per combination (default: the suite's).
    pub seeds: Option<usize>,
    /// Studies at once (default 1).
    pub jobs: usize,
    /// Output folder (default `results/bench/<suite name>`).
    pub out: Option<PathBuf>,
}

/// What the benchmark reports while it runs (the CLI prints it).
pub trait BenchObserver: Sync {
    /// A warning or a step (e.g. a skipped method).
    fn note(&self, message: &str);
    /// A study finished (`done` of `total`).
    fn run_finished(&self, done: usize, total: usize, suite: &Suite, run: &BenchRun);
}

/// The study loop's observer of a benchmark run: silent.
struct Silent;

impl Observer for Silent {
    fn trial_finished(&mut self, _trial: &TrialRecord, _progress: &Progress) {}
    fn note(&mut self, _message: &str) {}
}

/// The outcome of a benchmark.
pub struct Outcome {
    pub out: PathBuf,
    pub files: Vec<PathBuf>,
    pub bench: Bench,
}

/// Strategy plugins that cannot be loaded, with why (first line of the error).
fn missing_strategies(suite: &Suite) -> BTreeMap<String, String> {
    let mut missing = BTreeMap::new();
    for m in &suite.methods {
        for p in m.plugins() {
            if missing.contains_key(&p) || nas_core::oneshot::oneshot_method(&p).is_some() {
                continue;
            }
            if let Err(e) = plugins::load(PluginKind::Strategy, &p) {
                let why = e.to_string();
                let first = why.split(". ").next().unwrap_or(&why).to_string();
                missing.insert(p, first);
            }
        }
    }
    missing
}

/// Runs one planned study and reads its trials back.
fn run_plan(plan: &Plan) -> anyhow::Result<BenchRun> {
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("cannot create {}", plan.dir.display()))?;
    let file = plan.dir.join("study.toml");
    std::fs::write(&file, &plan.text)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let config: StudyConfig = config::parse(&file, &plan.text)?;
    let started = Instant::now();
    let mut study = Study::open(config, Some(plan.dir.clone()))?;
    let summary = study.run(&mut Silent)?;
    drop(study);
    let wall_seconds = started.elapsed().as_secs_f64();
    let trials = Storage::open_existing(&plan.dir)?.trials()?;
    let mut metric_names: Vec<String> = trials
        .iter()
        .flat_map(|t| t.metrics.keys().cloned())
        .collect();
    metric_names.sort();
    metric_names.dedup();
    let trials = trials
        .into_iter()
        .map(|t| BenchTrial {
            id: t.id,
            state: t.state,
            metrics: metric_names
                .iter()
                .map(|m| t.metrics.get(m).copied())
                .collect(),
            strategy: t.strategy,
            arch: t.arch,
            fidelity: t.fidelity,
        })
        .collect();
    Ok(BenchRun {
        method: plan.method,
        space: plan.space,
        dataset: plan.dataset,
        budget: plan.budget,
        seed: plan.seed,
        dir: plan.dir.clone(),
        wall_seconds,
        stop_reason: summary.stop_reason,
        metric_names,
        trials,
    })
}

/// Runs plans on `jobs` threads; the first error stops handing out new runs and is returned.
fn run_plans(
    suite: &Suite,
    plans: &[Plan],
    jobs: usize,
    observer: &dyn BenchObserver,
) -> anyhow::Result<Vec<BenchRun>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<BenchRun>>> = Mutex::new(vec![None; plans.len()]);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, plans.len().max(1)) {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else {
                        return;
                    };
                    match run_plan(plan) {
                        Ok(run) => {
                            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                            observer.run_finished(n, plans.len(), suite, &run);
                            results.lock().expect("results lock")[i] = Some(run);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            let e = e.context(format!(
                                "benchmark run `{}` (study in {})",
                                plan.dir
                                    .file_name()
                                    .map(|n| n.to_string_lossy().to_string())
                                    .unwrap_or_default(),
                                plan.dir.display()
                            ));
                            first_error.lock().expect("error lock").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error lock") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .flatten()
        .collect())
}

/// The default output folder of a suite.
pub fn default_out(suite: &Suite) -> PathBuf {
    PathBuf::from("results")
        .join("bench")
        .join(slug(&suite.name))
}

/// Loads a suite, runs every study and writes the report.
pub fn run(
    suite_path: &Path,
    options: &Options,
    observer: &dyn BenchObserver,
) -> anyhow::Result<Outcome> {
    let suite = load_suite(suite_path)?;
    let seeds = options.seeds.unwrap_or(suite.seeds);
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let jobs = options.jobs.max(1);
    let out = options.out.clone().unwrap_or_else(|| default_out(&suite));
    // Evaluators must exist: without them no method can run.
    let mut evaluator_names: Vec<&str> = suite.evaluators.iter().filter_map(plugin_of).collect();
    evaluator_names.dedup();
    for name in evaluator_names {
        plugins::load(PluginKind::Evaluator, name).map_err(|e| {
            anyhow::anyhow!(
                "{}: the suite's evaluator cannot be loaded: {e}",
                suite.path.display()
            )
        })?;
    }
    let missing = missing_strategies(&suite);
    let mut skipped = Vec::new();
    let mut methods = Vec::new();
    for (i, m) in suite.methods.iter().enumerate() {
        let absent: Vec<String> = m
            .plugins()
            .into_iter()
            .filter_map(|p| missing.get(&p).map(|why| format!("{p}: {why}")))
            .collect();
        if absent.is_empty() {
            methods.push(i);
        } else {
            let why = format!("strategy plugin missing ({})", absent.join("; "));
            observer.note(&format!("warning: skipping method `{}`: {why}", m.name));
            skipped.push((m.name.clone(), why));
        }
    }
    if methods.is_empty() {
        bail!(
            "{}: no method of the suite can run (their strategy plugins are missing); build them with `cargo build --release --workspace`",
            suite.path.display()
        );
    }
    let runs_dir = out.join("runs");
    let plans = suite.plans(&methods, seeds, &runs_dir);
    // Every generated config is checked before anything runs.
    for p in &plans {
        config::parse(&p.dir.join("study.toml"), &p.text).with_context(|| {
            format!(
                "{}: the study generated for method `{}`, dataset `{}` is invalid",
                suite.path.display(),
                suite.methods[p.method].name,
                suite.datasets[p.dataset].info.name
            )
        })?;
    }
    for p in &plans {
        if p.dir.exists() {
            std::fs::remove_dir_all(&p.dir)
                .with_context(|| format!("cannot replace {}", p.dir.display()))?;
        }
    }
    observer.note(&format!(
        "benchmark `{}`: {} studies ({} method(s), {} dataset(s), {} seed(s)), {} at a time, into {}",
        suite.name,
        plans.len(),
        methods.len(),
        suite.datasets.len(),
        seeds,
        jobs,
        out.display()
    ));
    let started = Instant::now();
    let runs = run_plans(&suite, &plans, jobs, observer)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let bench = bench_of(&suite, &plans, runs, seeds, jobs, wall_seconds, skipped)?;
    let files = crate::report::write_bench_report(&out, &bench)?;
    Ok(Outcome { out, files, bench })
}

/// The report's view of a finished suite.
fn bench_of(
    suite: &Suite,
    plans: &[Plan],
    runs: Vec<BenchRun>,
    seeds: usize,
    jobs: usize,
    wall_seconds: f64,
    skipped: Vec<(String, String)>,
) -> anyhow::Result<Bench> {
    let first = plans.first().context("the suite has no study to run")?;
    let objective = config::parse(&first.dir.join("study.toml"), &first.text)?
        .objectives
        .into_iter()
        .next()
        .context("the suite's [objective] is empty")?;
    let select = suite.select.clone().unwrap_or(objective);
    let score = suite.score.clone().unwrap_or_else(|| select.clone());
    let time = suite.time.clone().or_else(|| {
        runs.iter()
            .any(|r| r.metric_names.iter().any(|m| m == "simulated_seconds"))
            .then(|| "simulated_seconds".to_string())
    });
    let percent = suite
        .percent
        .unwrap_or_else(|| score.metric.ends_with("accuracy"));
    Ok(Bench {
        name: suite.name.clone(),
        notes: suite.notes.clone(),
        reference_source: suite.reference.clone(),
        methods: suite
            .methods
            .iter()
            .map(|m| BenchMethod {
                name: m.name.clone(),
                reference: m.reference.clone(),
                description: m.description(),
            })
            .collect(),
        spaces: suite.spaces.iter().map(|s| s.name.clone()).collect(),
        datasets: suite.datasets.iter().map(|d| d.info.clone()).collect(),
        budgets: suite.budgets.clone(),
        select,
        score,
        time,
        threshold: suite.threshold,
        percent,
        seeds,
        jobs,
        wall_seconds,
        skipped,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = r#"
[suite]
name = "unit"
seeds = 3

[[method]]
name = "REA"
reference = "REA"
strategy = [{ plugin = "evolution", population = 10, sample = 3 }]

[[method]]
name = "bandit(random,evolution)"
mix = "bandit"
strategy = [{ plugin = "random" }, { plugin = "evolution" }]
evaluator = { nb201 = { fidelity = "auto" } }

[[space]]
name = "nb201"
kind = "cell"

[[dataset]]
name = "cifar100"
label = "CIFAR-100"
optimum = 0.7351
reference = { REA = 0.7184 }
space = { input = [3, 32, 32], classes = 100 }
evaluator = { nb201 = { dataset = "cifar100" } }

[[budget]]
trials = 50

[[evaluator]]
plugin = "nb201"
fidelity = "12"

[objective]
maximize = "val_accuracy"

[analysis]
score = { maximize = "test_accuracy" }
"#;

    #[test]
    fn a_suite_becomes_valid_study_configs() {
        let suite = parse_suite(Path::new("unit.toml"), SUITE).unwrap();
        assert_eq!(suite.seeds, 3);
        assert_eq!(suite.threshold, DEFAULT_THRESHOLD);
        let plans = suite.plans(&[0, 1], 2, Path::new("out/runs"));
        assert_eq!(plans.len(), 4);
        assert_eq!(
            plans[3].dir,
            Path::new("out/runs/bandit_random_evolution-cifar100-s1")
        );
        let config = config::parse(Path::new("study.toml"), &plans[3].text).unwrap();
        assert_eq!(config.seed, 1);
        assert_eq!(config.budget.trials, Some(50));
        assert_eq!(config.strategies.len(), 2);
        assert_eq!(config.mix.mode, config::MixMode::Bandit);
        assert_eq!(config.runtime.workers, 1);
        let e = &config.evaluators[0].config;
        assert_eq!(e["dataset"], "cifar100");
        assert_eq!(e["fidelity"], "auto");
        let nas_core::space::SpaceConfig::Cell(cell) = &config.space else {
            panic!("a cell space");
        };
        assert_eq!(cell.classes, Some(100));
        let rea = config::parse(Path::new("study.toml"), &plans[0].text).unwrap();
        assert_eq!(rea.evaluators[0].config["fidelity"], "12");
        assert_eq!(rea.strategies[0].config["population"], 10);
        assert!(suite.methods[0].description().contains("population = 10"));
        assert_eq!(config.budget.cost, None);

        // A simulated-time budget stops each study once its summed cost reaches it.
        let timed = SUITE.replace("trials = 50", "trials = 50\nsimulated_seconds = 900");
        let suite = parse_suite(Path::new("unit.toml"), &timed).unwrap();
        let plan = &suite.plans(&[0], 1, Path::new("out/runs"))[0];
        let config = config::parse(Path::new("study.toml"), &plan.text).unwrap();
        assert_eq!(
            config.budget.cost,
            Some(config::CostBudget {
                metric: "simulated_seconds".into(),
                max: 900.0
            })
        );

        // A proposal budget counts repeats too, as Optuna counts trials.
        let counted = SUITE.replace("trials = 50", "trials = 50\nproposals = 40");
        let suite = parse_suite(Path::new("unit.toml"), &counted).unwrap();
        assert_eq!(suite.budgets[0].name, "50 trials, 40 proposals");
        let plan = &suite.plans(&[0], 1, Path::new("out/runs"))[0];
        let config = config::parse(Path::new("study.toml"), &plan.text).unwrap();
        assert_eq!(
            (config.budget.trials, config.budget.proposals),
            (Some(50), Some(40))
        );
    }

    #[test]
    fn stop_at_optimum_sets_the_study_target_and_needs_the_score_as_objective() {
        let stopping = SUITE
            .replace("trials = 50", "trials = 50\nstop_at_optimum = true")
            .replace("score = { maximize = \"test_accuracy\" }", "");
        let suite = parse_suite(Path::new("unit.toml"), &stopping).unwrap();
        let plan = &suite.plans(&[0], 1, Path::new("out/runs"))[0];
        let config = config::parse(Path::new("study.toml"), &plan.text).unwrap();
        assert_eq!(config.budget.target, Some(0.7351));
        assert_eq!(config.budget.trials, Some(50));

        // Scored by another metric than the objective: the optimum is not the objective's.
        let other = SUITE.replace("trials = 50", "trials = 50\nstop_at_optimum = true");
        let e = parse_suite(Path::new("s.toml"), &other)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stop_at_optimum") && e.contains("scored by `test_accuracy`"),
            "{e}"
        );
        let no_optimum = stopping.replace("optimum = 0.7351\n", "");
        let e = parse_suite(Path::new("s.toml"), &no_optimum)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs the `optimum`") && e.contains("cifar100"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let bad = SUITE.replace(
            "evaluator = { nb201 = { fidelity = \"auto\" } }",
            "evaluator = { train = { epochs = 1 } }",
        );
        let e = parse_suite(Path::new("s.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("evaluator `train`") && e.contains("nb201"),
            "{e}"
        );
        let bad = SUITE.replace("trials = 50", "simulated_seconds = 10.0");
        let e = parse_suite(Path::new("s.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `trials = N`"), "{e}");
        let bad = SUITE.replace("[analysis]", "[analysis]\nunknown = 1");
        let e = parse_suite(Path::new("s.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml") && e.contains("unknown"), "{e}");
    }
}
