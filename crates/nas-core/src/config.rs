//! The study TOML file: the one home of its schema.
//!
//! Parsing is strict (unknown keys and wrong types are errors) and every error names the file,
//! line and column. Plugin tables (`[[strategy]]`, `[[evaluator]]`) keep the keys the core owns
//! (`plugin`, `until`, ...) and pass the rest to the plugin, which validates them itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nas_plugin::{Direction, Objective, RuntimeSettings};
use serde::Deserialize;
use toml::Spanned;

use nas_data::DataConfig;

use crate::space::{self, SpaceConfig};
use crate::storage::StorageUrl;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `cause`, not `source`: the message already holds it, and `{:#}` would repeat a source.
    #[error("cannot read config {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Whole { path: PathBuf, message: String },
}

/// A parsed, validated study configuration.
#[derive(Clone, Debug)]
pub struct StudyConfig {
    /// Where the config came from (for error messages).
    pub path: PathBuf,
    /// The file's text, stored with the study so a resume can compare.
    pub source: String,
    pub name: String,
    pub seed: u64,
    pub directory: PathBuf,
    pub budget: Budget,
    pub space: SpaceConfig,
    pub strategies: Vec<StrategySpec>,
    /// How the strategies share the proposals.
    pub mix: MixConfig,
    pub evaluators: Vec<EvaluatorSpec>,
    pub objectives: Vec<Objective>,
    pub constraints: Vec<Constraint>,
    pub runtime: RuntimeConfig,
    /// The `[data]` table, when the study trains candidates (paths as written; see
    /// [`StudyConfig::data_config`]).
    pub data: Option<DataConfig>,
    /// Folder that relative data paths are taken from (`nas search --data-dir`); default: the
    /// current directory.
    pub data_root: Option<PathBuf>,
    /// The `[final]` table: retrain the best candidates and measure them on the test split.
    pub final_phase: Option<FinalConfig>,
    /// The database holding the study (`[storage] url`, `--storage` or `NAS_STORAGE`);
    /// none: the SQLite file in the study directory.
    pub storage: Option<StorageUrl>,
}

/// What happens after the search.
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalConfig {
    /// How many of the best trials to retrain.
    #[serde(default = "one")]
    pub top_k: usize,
    /// Training epochs (default: the `train` evaluator's `epochs`).
    pub epochs: Option<u64>,
    /// Also write one model averaging the top-k members' softmax outputs.
    #[serde(default)]
    pub ensemble: bool,
    /// Write the trained models as ONNX under `<study dir>/final/`.
    #[serde(default = "yes")]
    pub export: bool,
    /// Training options for the retraining (any key of the `train` evaluator): they replace
    /// that evaluator's, or stand alone in a study without one (e.g. scored by a supernet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<serde_json::Value>,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// Trials that reach the evaluators (infeasible and duplicate proposals are not counted).
    pub trials: Option<u64>,
    /// Proposals asked of the strategies, duplicates and infeasible ones included: a budget
    /// counted as Optuna counts trials.
    pub proposals: Option<u64>,
    /// Study time summed over every run of the study (a resume continues the clock).
    pub wall_time: Option<Duration>,
    /// A metric summed over the finished trials (e.g. `simulated_seconds` of a tabular
    /// evaluator, `train_seconds`): the study stops proposing once the sum reaches `max`.
    pub cost: Option<CostBudget>,
    /// A value of the first objective that ends the study once a complete trial reaches it
    /// (at least it when maximized, at most it when minimized), e.g. a benchmark's known
    /// optimum. Not a budget by itself: the study also needs one of the others.
    pub target: Option<f64>,
}

/// `[budget] cost = { metric = "simulated_seconds", max = 3600 }`.
#[derive(Clone, Debug, PartialEq)]
pub struct CostBudget {
    pub metric: String,
    pub max: f64,
}

/// When a strategy phase hands over to the next `[[strategy]]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Until {
    /// After this many trials proposed by the phase.
    Trials(u64),
    /// After this much study time in the phase.
    WallTime(Duration),
    /// After this many consecutive finished trials without improving the best.
    NoImprovement(u64),
}

/// How several `[[strategy]]` tables share the proposals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixMode {
    /// One after the other, each `until` its condition holds.
    Phases,
    /// All at once, each proposing a `weight`-proportional share.
    Portfolio,
    /// All at once, the next proposal going to the strategy whose recent proposals improved
    /// the objective most (UCB1 with `exploration`).
    Bandit,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MixConfig {
    pub mode: MixMode,
    /// Bandit: how many recent proposals of a strategy its credit looks at.
    pub window: usize,
    /// Bandit: weight of the exploration bonus.
    pub exploration: f64,
}

#[derive(Clone, Debug)]
pub struct StrategySpec {
    /// `random`, or a path to a library.
    pub plugin: String,
    pub until: Option<Until>,
    /// Portfolio share (default 1).
    pub weight: Option<f64>,
    /// `seed`: the study seed this strategy draws its proposals from (default: `[study]
    /// seed`). Studies that differ only in `[study] seed` but fix it train the same candidates
    /// with other data splits and initial weights. One-shot strategies keep `seed` in
    /// `config`, where it already seeds their supernet.
    pub seed: Option<u64>,
    /// Plugin-specific keys.
    pub config: serde_json::Value,
    /// `file:line:column` of the table, for messages.
    pub location: String,
}

#[derive(Clone, Debug)]
pub struct EvaluatorSpec {
    pub plugin: String,
    pub config: serde_json::Value,
    pub location: String,
}

/// A hard limit on a metric: candidates outside it are recorded as infeasible.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    pub metric: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Constraint {
    /// `None` when satisfied, otherwise why not.
    pub fn violation(&self, value: f64) -> Option<String> {
        // NaN violates every bound.
        if let Some(min) = self.min
            && (value.is_nan() || value < min)
        {
            return Some(format!(
                "{} = {value} is below the minimum {min}",
                self.metric
            ));
        }
        if let Some(max) = self.max
            && (value.is_nan() || value > max)
        {
            return Some(format!(
                "{} = {value} is above the maximum {max}",
                self.metric
            ));
        }
        None
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    pub execution_provider: String,
    pub fallback: Option<String>,
    pub threads: usize,
    /// Trials evaluated at once, each by its own evaluator instances. With a database, 0:
    /// the coordinator evaluates nothing itself and `nas worker` processes do it all.
    pub workers: usize,
    pub ort_library: Option<PathBuf>,
    /// Times a trial whose worker vanished (lease expired) is queued again before it counts
    /// as failed.
    pub max_retries: u32,
    /// How long a claimed trial stays reserved without a heartbeat from its worker.
    pub lease: Duration,
    /// Trials queued for workers at once: fixed here, the proposals of a seed are the same
    /// whatever the number of workers; unset, the queue follows the live workers.
    pub queue_depth: Option<usize>,
}

impl RuntimeConfig {
    /// What evaluators receive, with the ONNX Runtime library located once for all of them.
    /// An explicit `ort_library` must exist; otherwise a missing library only matters to
    /// evaluators that need ONNX Runtime, and they report it themselves.
    pub fn resolve(&self) -> Result<RuntimeSettings, nas_runtime::RuntimeError> {
        let ort_library = match nas_runtime::locate_library_for(
            self.ort_library.as_deref(),
            &self.execution_provider,
        ) {
            Ok(p) => Some(p.display().to_string()),
            Err(e) if self.ort_library.is_some() => return Err(e),
            Err(_) => None,
        };
        Ok(RuntimeSettings {
            execution_provider: self.execution_provider.clone(),
            fallback: self.fallback.clone(),
            threads: self.threads,
            ort_library,
        })
    }
}

impl StudyConfig {
    /// The `[data]` table with relative paths resolved against `data_root`.
    pub fn data_config(&self) -> Result<Option<DataConfig>, ConfigError> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        let root = match &self.data_root {
            Some(r) => r.clone(),
            None => std::env::current_dir().map_err(|e| ConfigError::Whole {
                path: self.path.clone(),
                message: format!("cannot read the current directory: {e}"),
            })?,
        };
        let mut data = data.clone();
        data.resolve_paths(&root);
        Ok(Some(data))
    }

    /// The resolved `[data]` table as evaluators receive it (`null` without one).
    pub fn data_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(match self.data_config()? {
            Some(d) => serde_json::to_value(d)?,
            None => serde_json::Value::Null,
        })
    }

    /// The space with `input`, `classes` (and a vocabulary) taken from the dataset where the
    /// config omits them (loading the dataset only in that case).
    pub fn resolved_space(&self) -> Result<SpaceConfig, ConfigError> {
        match (self.data_config()?, self.space.needs_data()) {
            (Some(data), true) => {
                let loaded = nas_data::load(&data, self.seed).map_err(|e| ConfigError::Whole {
                    path: self.path.clone(),
                    message: format!("[data]: {e}"),
                })?;
                Ok(self
                    .space
                    .clone()
                    .with_data_defaults(&space::DataDefaults::of(&loaded)))
            }
            _ => Ok(self.space.clone()),
        }
    }
}

/// The `[space]` table as JSON (stored with the study and compared on resume).
pub fn space_json(space: &SpaceConfig) -> serde_json::Value {
    space.to_json()
}

// ---- raw serde shapes -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile<S> {
    study: RawStudy,
    budget: RawBudget,
    /// Read by its kind's parser (`space::SpaceKind::parse`); here it only has to be there.
    #[serde(rename = "space")]
    _space: S,
    #[serde(default)]
    strategy: Vec<Spanned<toml::Table>>,
    mix: Option<Spanned<RawMix>>,
    #[serde(default)]
    evaluator: Vec<Spanned<toml::Table>>,
    objective: Spanned<RawObjective>,
    #[serde(default)]
    constraints: BTreeMap<String, Spanned<RawBound>>,
    #[serde(default)]
    runtime: RawRuntime,
    data: Option<DataConfig>,
    #[serde(rename = "final")]
    final_phase: Option<Spanned<FinalConfig>>,
    storage: Option<RawStorage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: Spanned<String>,
    #[serde(default)]
    seed: u64,
    directory: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    mode: Option<MixMode>,
    window: Option<usize>,
    exploration: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    trials: Option<u64>,
    proposals: Option<u64>,
    wall_time: Option<Spanned<String>>,
    cost: Option<Spanned<RawCostBudget>>,
    target: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCostBudget {
    metric: String,
    max: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    minimize: Option<String>,
    maximize: Option<String>,
    objectives: Option<Vec<RawObjectiveEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjectiveEntry {
    minimize: Option<String>,
    maximize: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBound {
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    #[serde(default = "default_provider")]
    execution_provider: Spanned<String>,
    fallback: Option<Spanned<String>>,
    #[serde(default = "default_threads")]
    threads: usize,
    #[serde(default = "default_threads")]
    workers: usize,
    ort_library: Option<PathBuf>,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    lease: Option<Spanned<String>>,
    queue_depth: Option<usize>,
}

impl Default for RawRuntime {
    fn default() -> Self {
        RawRuntime {
            execution_provider: default_provider(),
            fallback: None,
            threads: default_threads(),
            workers: default_threads(),
            ort_library: None,
            max_retries: default_max_retries(),
            lease: None,
            queue_depth: None,
        }
    }
}

fn default_max_retries() -> u32 {
    2
}

/// A worker renews its lease every third of it, so a lease survives two lost heartbeats.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

fn default_provider() -> Spanned<String> {
    Spanned::new(0..0, "cpu".to_string())
}

fn default_threads() -> usize {
    1
}

// ---- loading ----------------------------------------------------------------------------

/// Turns byte offsets into `line:column` messages for one file.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    pub(crate) fn at(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_col(offset);
        ConfigError::At {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn location(&self, offset: usize) -> String {
        let (line, column) = self.line_col(offset);
        format!("{}:{line}:{column}", self.path.display())
    }

    fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Whole {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    /// Converts a toml error into `file:line:column: message`.
    fn toml(&self, error: toml::de::Error) -> ConfigError {
        let message = error.message().to_string();
        match error.span() {
            Some(span) => self.at(span.start, message),
            None => self.whole(message),
        }
    }
}

pub fn load(path: &Path) -> Result<StudyConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    parse(path, &text)
}

/// Parses a config's text; `path` is only used in messages and to name the study.
pub fn parse(path: &Path, text: &str) -> Result<StudyConfig, ConfigError> {
    let loc = Locator { path, text };
    // First pass: syntax, and which space kind decides the shape of `[space]`.
    let table: toml::Table = toml::from_str(text).map_err(|e| loc.toml(e))?;
    let expected = space::kind_names().join(" | ");
    let kind = crate::config_checks::space_kind(&loc, &table, &expected)?;
    match kind.as_deref() {
        Some(name) if let Some(kind) = space::find_kind(name) => {
            let (raw, space) = read_tables(text, kind).map_err(|e| loc.toml(e))?;
            finish(&loc, raw, space)
        }
        Some(other) => {
            let offset = text.find(&format!("\"{other}\"")).unwrap_or(0);
            Err(loc.at(
                offset,
                format!("unknown space kind `{other}`, expected one of: {expected}"),
            ))
        }
        None => {
            // Report mistakes elsewhere in the file first: they are usually the real problem.
            toml::from_str::<RawFile<Option<toml::Value>>>(text).map_err(|e| loc.toml(e))?;
            Err(loc.whole(format!(
                "missing `[space]` table with `kind = \"...\"` (one of: {expected})"
            )))
        }
    }
}

/// Reads the file's tables: `[space]` as its kind's config, the others into [`RawFile`].
/// When both have a mistake, the one earlier in the file is reported.
fn read_tables(
    text: &str,
    kind: &space::SpaceKind,
) -> Result<(RawFile<serde::de::IgnoredAny>, SpaceConfig), toml::de::Error> {
    match (toml::from_str(text), (kind.parse)(text)) {
        (Ok(raw), Ok(space)) => Ok((raw, space)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(rest), Err(space)) => {
            let start = |e: &toml::de::Error| e.span().map_or(usize::MAX, |s| s.start);
            Err(if start(&space) < start(&rest) {
                space
            } else {
                rest
            })
        }
    }
}

fn finish<S>(
    loc: &Locator<'_>,
    raw: RawFile<S>,
    space: SpaceConfig,
) -> Result<StudyConfig, ConfigError> {
    let budget = Budget {
        trials: raw.budget.trials,
        proposals: raw.budget.proposals,
        wall_time: raw
            .budget
            .wall_time
            .as_ref()
            .map(|w| parse_duration(loc, w))
            .transpose()?,
        cost: raw
            .budget
            .cost
            .as_ref()
            .map(|c| parse_cost_budget(loc, c))
            .transpose()?,
        target: match &raw.budget.target {
            Some(t) if !t.get_ref().is_finite() => {
                return Err(loc.at(
                    t.span().start,
                    "`[budget] target` must be a finite number (the first objective's value that ends the study)",
                ));
            }
            t => t.as_ref().map(|t| *t.get_ref()),
        },
    };
    if budget.trials.is_none()
        && budget.proposals.is_none()
        && budget.wall_time.is_none()
        && budget.cost.is_none()
    {
        return Err(loc.whole(
            "`[budget]` needs `trials = N`, `proposals = N`, `wall_time = \"10m\"` or `cost = { metric = \"...\", max = X }` (any of them), otherwise the study never ends (`target` alone may never be reached)",
        ));
    }
    if raw.strategy.is_empty() {
        return Err(loc.whole(
            "no `[[strategy]]` table: add at least one, e.g. `[[strategy]]\\nplugin = \"random\"`",
        ));
    }
    if raw.evaluator.is_empty() {
        return Err(loc.whole(
            "no `[[evaluator]]` table: add at least one, e.g. `[[evaluator]]\\nplugin = \"cost\"`",
        ));
    }
    let strategies = raw
        .strategy
        .iter()
        .map(|t| strategy_spec(loc, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mix = mix_config(loc, raw.mix.as_ref(), &strategies)?;
    let strategies: Vec<StrategySpec> = strategies.into_iter().map(|(s, _)| s).collect();
    let evaluators = raw
        .evaluator
        .iter()
        .map(|t| evaluator_spec(loc, t))
        .collect::<Result<Vec<_>, _>>()?;
    let objectives = objectives(loc, &raw.objective)?;
    crate::config_checks::study_name(loc, &raw.study.name)?;
    let constraints = raw
        .constraints
        .into_iter()
        .map(|(metric, b)| {
            let at = b.span().start;
            let b = b.into_inner();
            crate::config_checks::constraint_bounds(loc, &metric, at, b.min, b.max)?;
            Ok(Constraint {
                metric,
                min: b.min,
                max: b.max,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let runtime = runtime(loc, raw.runtime)?;
    let storage = raw
        .storage
        .map(|st| {
            st.url
                .get_ref()
                .parse::<StorageUrl>()
                .map_err(|e| loc.at(st.url.span().start, e.to_string()))
        })
        .transpose()?;
    if let Some(f) = &raw.final_phase {
        if f.get_ref().top_k == 0 {
            return Err(loc.at(f.span().start, "`[final] top_k` must be at least 1"));
        }
        if raw.data.is_none() {
            return Err(loc.at(
                f.span().start,
                "`[final]` retrains on the study's data, but there is no `[data]` table (e.g. `[data] dataset = \"digits\"`)",
            ));
        }
    }
    let directory = raw
        .study
        .directory
        .unwrap_or_else(|| PathBuf::from("runs").join(raw.study.name.get_ref()));
    let final_at = raw.final_phase.as_ref().map(|f| f.span().start);
    let config = StudyConfig {
        path: loc.path.to_path_buf(),
        source: loc.text.to_string(),
        name: raw.study.name.into_inner(),
        seed: raw.study.seed,
        directory,
        budget,
        space,
        strategies,
        mix,
        evaluators,
        objectives,
        constraints,
        runtime,
        data: raw.data,
        data_root: None,
        final_phase: raw.final_phase.map(Spanned::into_inner),
        storage,
    };
    // The retraining recipe is checked now, not after the search has run.
    if let (Some(fin), Some(at)) = (&config.final_phase, final_at) {
        crate::final_phase::recipe(&config, fin).map_err(|e| loc.at(at, format!("{e:#}")))?;
    }
    Ok(config)
}

fn parse_cost_budget(
    loc: &Locator<'_>,
    c: &Spanned<RawCostBudget>,
) -> Result<CostBudget, ConfigError> {
    let raw = c.get_ref();
    if raw.metric.is_empty() || !(raw.max.is_finite() && raw.max > 0.0) {
        return Err(loc.at(
            c.span().start,
            format!(
                "`cost` needs a metric name and a positive `max`, e.g. `cost = {{ metric = \"simulated_seconds\", max = 3600 }}` (found metric {:?}, max {})",
                raw.metric, raw.max
            ),
        ));
    }
    Ok(CostBudget {
        metric: raw.metric.clone(),
        max: raw.max,
    })
}

fn parse_duration(loc: &Locator<'_>, s: &Spanned<String>) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.get_ref()).map_err(|e| {
        loc.at(
            s.span().start,
            format!(
                "invalid duration {:?}: {e}; write e.g. \"90s\", \"10m\" or \"1h 30m\"",
                s.get_ref()
            ),
        )
    })
}

/// Takes a required string key out of a plugin table.
fn take_plugin(
    loc: &Locator<'_>,
    table: &Spanned<toml::Table>,
    what: &str,
) -> Result<(String, toml::Table), ConfigError> {
    let mut rest = table.get_ref().clone();
    match rest.remove("plugin") {
        Some(toml::Value::String(p)) => Ok((p, rest)),
        Some(other) => Err(loc.at(
            table.span().start,
            format!(
                "`plugin` in this [[{what}]] must be a string (a plugin name or a library path), found {}",
                other.type_str()
            ),
        )),
        None => Err(loc.at(
            table.span().start,
            format!("this [[{what}]] has no `plugin = \"name\"`"),
        )),
    }
}

fn to_json(table: toml::Table) -> serde_json::Value {
    serde_json::to_value(table).expect("TOML values convert to JSON")
}

fn strategy_spec(
    loc: &Locator<'_>,
    table: &Spanned<toml::Table>,
) -> Result<(StrategySpec, usize), ConfigError> {
    let at = table.span().start;
    let (plugin, mut rest) = take_plugin(loc, table, "strategy")?;
    let until = match rest.remove("until") {
        None => None,
        Some(value) => Some(parse_until(loc, at, value)?),
    };
    let weight = match rest.remove("weight") {
        None => None,
        Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
            Some(w) if w > 0.0 && w.is_finite() => Some(w),
            _ => {
                return Err(loc.at(
                    at,
                    format!("`weight` must be a positive number, found `{v}`"),
                ));
            }
        },
    };
    let seed = if crate::oneshot::oneshot_method(&plugin).is_some() {
        None
    } else {
        match rest.remove("seed") {
            None => None,
            Some(toml::Value::Integer(s)) if s >= 0 => Some(s as u64),
            Some(v) => {
                return Err(loc.at(
                    at,
                    format!("`seed` must be a whole number of at least 0, found `{v}`"),
                ));
            }
        }
    };
    Ok((
        StrategySpec {
            plugin,
            until,
            weight,
            seed,
            config: to_json(rest),
            location: loc.location(at),
        },
        at,
    ))
}

/// Decides the mix mode and checks the strategies' `until`/`weight` keys fit it.
fn mix_config(
    loc: &Locator<'_>,
    raw: Option<&Spanned<RawMix>>,
    strategies: &[(StrategySpec, usize)],
) -> Result<MixConfig, ConfigError> {
    let any_weight = strategies.iter().any(|(s, _)| s.weight.is_some());
    let mode = raw.and_then(|m| m.get_ref().mode).unwrap_or(if any_weight {
        MixMode::Portfolio
    } else {
        MixMode::Phases
    });
    for (i, (s, at)) in strategies.iter().enumerate() {
        match mode {
            MixMode::Phases => {
                if s.weight.is_some() {
                    return Err(loc.at(
                        *at,
                        "`weight` needs strategies active at once: remove `[mix] mode = \"phases\"` or the weights",
                    ));
                }
                if s.until.is_some() && i + 1 == strategies.len() {
                    return Err(loc.at(
                        *at,
                        "the last [[strategy]] has `until`, but there is no next strategy to take over; remove it or add another [[strategy]]",
                    ));
                }
            }
            MixMode::Portfolio | MixMode::Bandit => {
                if s.until.is_some() {
                    return Err(loc.at(
                        *at,
                        format!(
                            "`until` makes phases, but the strategies here are mixed as a {:?} (all active at once); remove `until` or the weights / [mix] mode",
                            mode
                        )
                        .to_lowercase(),
                    ));
                }
                if mode == MixMode::Bandit && s.weight.is_some() {
                    return Err(loc.at(
                        *at,
                        "`weight` has no meaning with `[mix] mode = \"bandit\"`, which shares proposals by credit; remove it",
                    ));
                }
            }
        }
    }
    let window = raw.and_then(|m| m.get_ref().window).unwrap_or(20);
    let exploration = raw.and_then(|m| m.get_ref().exploration).unwrap_or(0.5);
    if window == 0 || exploration.is_nan() || exploration < 0.0 {
        return Err(loc.at(
            raw.map_or(0, |m| m.span().start),
            "`[mix] window` must be at least 1 and `exploration` a number >= 0",
        ));
    }
    Ok(MixConfig {
        mode,
        window,
        exploration,
    })
}

fn parse_until(loc: &Locator<'_>, at: usize, value: toml::Value) -> Result<Until, ConfigError> {
    let shape = "`until` must be one of `{ trials = N }`, `{ wall_time = \"10m\" }`, `{ no_improvement = N }`";
    let toml::Value::Table(t) = value else {
        return Err(loc.at(at, shape));
    };
    if t.len() != 1 {
        return Err(loc.at(at, shape));
    }
    let (key, v) = t.into_iter().next().expect("one entry");
    let count = |v: &toml::Value| v.as_integer().filter(|n| *n > 0).map(|n| n as u64);
    match (key.as_str(), &v) {
        ("trials", v) if count(v).is_some() => Ok(Until::Trials(count(v).unwrap())),
        ("no_improvement", v) if count(v).is_some() => Ok(Until::NoImprovement(count(v).unwrap())),
        ("wall_time", toml::Value::String(s)) => humantime::parse_duration(s)
            .map(Until::WallTime)
            .map_err(|e| loc.at(at, format!("invalid `until.wall_time` {s:?}: {e}"))),
        _ => Err(loc.at(
            at,
            format!("{shape} (positive integers); found `{key} = {v}`"),
        )),
    }
}

fn evaluator_spec(
    loc: &Locator<'_>,
    table: &Spanned<toml::Table>,
) -> Result<EvaluatorSpec, ConfigError> {
    let (plugin, rest) = take_plugin(loc, table, "evaluator")?;
    Ok(EvaluatorSpec {
        plugin,
        config: to_json(rest),
        location: loc.location(table.span().start),
    })
}

fn objectives(
    loc: &Locator<'_>,
    raw: &Spanned<RawObjective>,
) -> Result<Vec<Objective>, ConfigError> {
    let at = raw.span().start;
    let one = |min: &Option<String>, max: &Option<String>| {
        match (min, max) {
        (Some(m), None) => Ok(Objective {
            metric: m.clone(),
            direction: Direction::Minimize,
        }),
        (None, Some(m)) => Ok(Objective {
            metric: m.clone(),
            direction: Direction::Maximize,
        }),
        _ => Err(loc.at(
            at,
            "each objective needs exactly one of `minimize = \"metric\"` or `maximize = \"metric\"`",
        )),
    }
    };
    let r = raw.get_ref();
    let list = match (&r.objectives, r.minimize.is_some() || r.maximize.is_some()) {
        (Some(_), true) => {
            return Err(loc.at(
                at,
                "use either `minimize`/`maximize` or `objectives = [...]` in [objective], not both",
            ));
        }
        (Some(list), false) => list
            .iter()
            .map(|e| one(&e.minimize, &e.maximize))
            .collect::<Result<Vec<_>, _>>()?,
        (None, _) => vec![one(&r.minimize, &r.maximize)?],
    };
    if list.is_empty() {
        return Err(loc.at(at, "`objectives` is empty: name at least one metric"));
    }
    let mut names: Vec<&str> = list.iter().map(|o| o.metric.as_str()).collect();
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(loc.at(at, "an objective metric is listed twice"));
    }
    Ok(list)
}

fn runtime(loc: &Locator<'_>, raw: RawRuntime) -> Result<RuntimeConfig, ConfigError> {
    // The provider names are nas-runtime's (one list for config and sessions).
    let check = |p: &Spanned<String>| match nas_runtime::ExecutionProvider::parse(p.get_ref()) {
        Ok(_) => Ok(p.get_ref().clone()),
        Err(e) => Err(loc.at(p.span().start, e.to_string())),
    };
    // `workers = 0` is only meaningful with a database; `checks::workers` tells, once the
    // storage is known (it may come from the command line).
    if raw.threads == 0 {
        return Err(loc.whole("`[runtime] threads` must be at least 1"));
    }
    if raw.queue_depth == Some(0) {
        return Err(loc.whole("`[runtime] queue_depth` must be at least 1"));
    }
    let lease = match &raw.lease {
        Some(l) => parse_duration(loc, l)?,
        None => DEFAULT_LEASE,
    };
    if lease < Duration::from_secs(1) {
        return Err(loc.at(
            raw.lease.as_ref().map_or(0, |l| l.span().start),
            "`[runtime] lease` must be at least 1s (workers renew it every third of it)",
        ));
    }
    let most = crate::checks::MAX_WORKERS;
    if raw.workers > most {
        return Err(loc.whole(format!(
            "`[runtime] workers = {}` is too many: use 1 to {most} (about the number of CPU cores; each worker evaluates one trial with its own evaluators)",
            raw.workers
        )));
    }
    Ok(RuntimeConfig {
        execution_provider: check(&raw.execution_provider)?,
        fallback: raw.fallback.as_ref().map(check).transpose()?,
        threads: raw.threads,
        workers: raw.workers,
        ort_library: raw.ort_library,
        max_retries: raw.max_retries,
        lease,
        queue_depth: raw.queue_depth,
    })
}
