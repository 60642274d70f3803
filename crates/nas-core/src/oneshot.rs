//! The one-shot strategies `darts`, `darts-minus`, `drnas` and `gdas`: built into the core rather than
//! loaded as plugins, because they train a supernet, which needs the space's network, the
//! study's data and ONNX Runtime (a strategy plugin sees only the space's choices).
//!
//! ```toml
//! [[strategy]]
//! plugin = "darts"          # or "darts-minus", "drnas", "gdas"
//! epochs = 50               # every key of nas_train::oneshot::OneShotConfig but `method`
//! arch_lr = 3e-4
//! weight_lr = 0.025
//! derive = 1                # architectures to propose: the selected one, then the most
//!                           # likely others
//! selection = "perturbation" # or "magnitude" (default): how the architecture is read
//! ```
//!
//! On its first `ask` the strategy trains the supernet (the study waits; the observer sees
//! every epoch with the architecture derived so far), then proposes the derived
//! architectures as ordinary trials, which the evaluators score and `[final]` retrains, and
//! then nothing more. After every epoch it writes `<study dir>/oneshot/<index>-<name>.ckpt`
//! (weights, optimizer and architecture state); a killed study resumes the supernet from
//! there. Its saved state (stored with the study's strategy checkpoints) holds the softmax of
//! the architecture logits after every epoch.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nas_data::DataConfig;
use nas_plugin::{Observation, Proposal, RuntimeSettings};
use nas_runtime::SessionSettings;
use nas_train::oneshot::{
    Method, OneShotCheckpoint, OneShotConfig, OneShotEpoch, SelectionDecision, SupernetTrainer,
};
use serde::{Deserialize, Serialize};

use crate::config::StrategySpec;
use crate::space::SearchSpace;
use crate::storage::Checkpoint;

/// The built-in one-shot strategies by their `plugin` name.
pub const ONESHOT_STRATEGIES: [(&str, Method); 4] = [
    ("darts", Method::Darts),
    ("darts-minus", Method::DartsMinus),
    ("drnas", Method::Drnas),
    ("gdas", Method::Gdas),
];

/// The one-shot method a `[[strategy]] plugin` names, if it is one.
pub fn oneshot_method(plugin: &str) -> Option<Method> {
    ONESHOT_STRATEGIES
        .iter()
        .find(|(name, _)| *name == plugin)
        .map(|(_, m)| *m)
}

/// What a one-shot strategy reports while its supernet trains.
pub struct SupernetProgress<'a> {
    pub strategy: &'a str,
    pub epoch: &'a OneShotEpoch,
    pub epochs: usize,
    /// The derived architecture after this epoch, as the space prints it.
    pub arch: String,
}

/// The strategy's own keys besides the supernet's settings (which OneShotConfig checks,
/// unknown keys included: `deny_unknown_fields` does not work through `flatten`).
#[derive(Deserialize)]
struct Table {
    #[serde(default = "one")]
    derive: usize,
    #[serde(flatten)]
    supernet: serde_json::Map<String, serde_json::Value>,
}

fn one() -> usize {
    1
}

/// What survives in the study's strategy checkpoints: the search's record, which `nas
/// report` reads back with [`supernet_record`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SupernetRecord {
    /// Every epoch trained so far, with the architecture weights after it.
    pub history: Vec<OneShotEpoch>,
    /// Perturbation-based selection's decisions (`selection = "perturbation"`).
    #[serde(default)]
    pub decisions: Vec<SelectionDecision>,
    /// The derived architectures (option indices), most likely first, once trained.
    pub derived: Vec<Vec<usize>>,
    /// How many of them have been proposed as trials.
    pub proposed: usize,
}

/// The record of a one-shot strategy's search in a stored checkpoint; `None` when the
/// checkpoint is another strategy's.
pub fn supernet_record(cp: &Checkpoint) -> Option<anyhow::Result<SupernetRecord>> {
    oneshot_method(&cp.name)?;
    Some(serde_json::from_value(cp.state.clone()).with_context(|| {
        format!(
            "the stored state of strategy {} (`{}`) is no one-shot search record",
            cp.strategy_index, cp.name
        )
    }))
}

/// An architecture given as an option index per choice (a one-shot search's form), as
/// `space` prints it; the indices themselves (`0,3,1`) without a space or where they are no
/// architecture of it.
pub fn arch_of(space: Option<&dyn SearchSpace>, choices: &[usize]) -> String {
    let values: Vec<f64> = choices.iter().map(|&c| c as f64).collect();
    match space {
        Some(s) if s.descriptor().check(&values).is_ok() => s.arch_string(&values),
        _ => choices
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Where the one-shot strategy at `index` of a study keeps its supernet checkpoint.
pub fn checkpoint_path(study_dir: &Path, index: usize, plugin: &str) -> PathBuf {
    study_dir
        .join("oneshot")
        .join(format!("{index}-{plugin}.ckpt"))
}

/// A one-shot strategy's search as a study holds it.
pub struct StoredSearch {
    /// Its position among the study's `[[strategy]]` tables, and its `plugin` name.
    pub index: usize,
    pub plugin: String,
    pub record: anyhow::Result<SupernetRecord>,
    /// The record is the supernet checkpoint's: the search has not proposed yet (its
    /// supernet still trains, or the study stopped while it did), so nothing is derived.
    pub unfinished: bool,
    /// For an unfinished search whose checkpoint reads: the epochs it trains in all (the
    /// record holds those trained so far).
    pub total_epochs: Option<usize>,
}

/// Every one-shot strategy of a study that has trained at least one epoch: its record from
/// the study's stored strategy checkpoints (`stored`), written once it proposes, or before
/// that from its supernet checkpoint file, which holds the epochs trained so far.
pub fn stored_searches(
    strategies: &[StrategySpec],
    study_dir: &Path,
    stored: &[Checkpoint],
) -> Vec<StoredSearch> {
    let mut out = Vec::new();
    for (index, spec) in strategies.iter().enumerate() {
        if oneshot_method(&spec.plugin).is_none() {
            continue;
        }
        let plugin = spec.plugin.clone();
        let finished = stored
            .iter()
            .find(|cp| cp.strategy_index == index && cp.name == spec.plugin)
            .and_then(supernet_record);
        if let Some(record) = finished {
            // A stored state that derived nothing is the strategy's before its search ended
            // (its epochs, if any, are also in the supernet checkpoint).
            if record.as_ref().map_or(true, |r| !r.derived.is_empty()) {
                out.push(StoredSearch {
                    index,
                    plugin,
                    record,
                    unfinished: false,
                    total_epochs: None,
                });
                continue;
            }
        }
        let path = checkpoint_path(study_dir, index, &spec.plugin);
        if !path.is_file() {
            continue;
        }
        let loaded = OneShotCheckpoint::load(&path)
            .with_context(|| format!("cannot read {}", path.display()));
        let total_epochs = loaded
            .as_ref()
            .ok()
            .map(|c| c.config.total_epochs(c.supernet.options.len()));
        let record = loaded.map(|c| SupernetRecord {
            history: c.history,
            decisions: c.decisions,
            derived: Vec::new(),
            proposed: 0,
        });
        out.push(StoredSearch {
            index,
            plugin,
            record,
            unfinished: true,
            total_epochs,
        });
    }
    out
}

pub struct OneShotStrategy {
    name: String,
    cfg: OneShotConfig,
    derive: usize,
    space: Box<dyn SearchSpace>,
    data: Option<DataConfig>,
    seed: u64,
    runtime: SessionSettings,
    checkpoint: PathBuf,
    state: SupernetRecord,
}

impl OneShotStrategy {
    /// Checks the table and the space (it must have a supernet); trains nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        method: Method,
        table: &serde_json::Value,
        space: Box<dyn SearchSpace>,
        data: Option<DataConfig>,
        seed: u64,
        runtime: &RuntimeSettings,
        checkpoint: PathBuf,
    ) -> anyhow::Result<OneShotStrategy> {
        let table: Table = serde_json::from_value(match table {
            serde_json::Value::Null => serde_json::json!({}),
            t => t.clone(),
        })
        .with_context(|| format!("strategy `{name}`"))?;
        if table.supernet.contains_key("method") {
            anyhow::bail!(
                "strategy `{name}`: `method` is set by the strategy's name; remove it (or use \
                 plugin = \"darts\", \"darts-minus\", \"drnas\" or \"gdas\")"
            );
        }
        let mut supernet = table.supernet;
        supernet.insert("method".into(), serde_json::to_value(method)?);
        let cfg: OneShotConfig = serde_json::from_value(serde_json::Value::Object(supernet))
            .with_context(|| format!("strategy `{name}`"))?;
        cfg.validate()
            .with_context(|| format!("strategy `{name}`"))?;
        if table.derive == 0 {
            anyhow::bail!("strategy `{name}`: `derive` must be at least 1");
        }
        if data.is_none() {
            anyhow::bail!(
                "strategy `{name}` trains a supernet on the study's data: add a [data] table"
            );
        }
        // Fails now, not after the first ask, when the space has no supernet.
        space.supernet(method.aux_skip())?;
        let runtime = runtime.session_settings()?;
        Ok(OneShotStrategy {
            name: name.to_string(),
            cfg,
            derive: table.derive,
            space,
            data,
            seed,
            runtime,
            checkpoint,
            state: SupernetRecord::default(),
        })
    }

    fn arch(&self, choices: &[usize]) -> String {
        arch_of(Some(self.space.as_ref()), choices)
    }

    /// Trains (or resumes) the supernet to its last epoch and derives the architectures.
    fn search(&mut self, report: &mut dyn FnMut(SupernetProgress<'_>)) -> anyhow::Result<()> {
        let data_cfg = self.data.as_ref().expect("checked in new");
        let data = nas_data::load(data_cfg, self.seed)
            .with_context(|| format!("strategy `{}`: [data]", self.name))?;
        let supernet = self.space.supernet(self.cfg.method.aux_skip())?;
        let resumable = match OneShotCheckpoint::load(&self.checkpoint) {
            Ok(c) if c.supernet == supernet && c.config == self.cfg => Some(c),
            Ok(_) => {
                tracing::warn!(
                    path = %self.checkpoint.display(),
                    "the supernet checkpoint is of another supernet or settings; starting afresh"
                );
                None
            }
            Err(e) if self.checkpoint.exists() => {
                // A truncated or foreign file: say so rather than restart silently.
                tracing::warn!(%e, "cannot resume the supernet from its checkpoint; starting afresh");
                None
            }
            Err(_) => None,
        };
        let mut trainer = match resumable {
            Some(c) => {
                tracing::info!(epoch = c.epoch, "resuming the supernet from its checkpoint");
                SupernetTrainer::resume(c, &self.runtime, &data)?
            }
            None => SupernetTrainer::new(&supernet, &self.cfg, &self.runtime, &data)?,
        };
        if self.cfg.cost_penalty > 0.0 {
            let costs = crate::space::option_costs(self.space.as_ref(), self.cfg.cost_metric)?;
            trainer.set_option_costs(costs)?;
        }
        if let Some(dir) = self.checkpoint.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let epochs = trainer.total_epochs();
        let mut interrupted = false;
        while trainer.epoch() < epochs && !interrupted {
            let epoch = trainer.train_epoch()?;
            trainer.checkpoint()?.save(&self.checkpoint)?;
            report(SupernetProgress {
                strategy: &self.name,
                epoch: &epoch,
                epochs,
                arch: self.arch(&epoch.derived),
            });
            // Stop at an epoch boundary: the checkpoint resumes from here.
            interrupted = crate::interrupt::requested().is_some();
        }
        let selected = if interrupted {
            None
        } else {
            Some(trainer.select()?)
        };
        self.state.history = trainer.history().to_vec();
        self.state.decisions = trainer.decisions().to_vec();
        let Some(selected) = selected else {
            return Ok(());
        };
        self.state.derived = trainer.arch().proposals(selected, self.derive);
        Ok(())
    }

    pub fn ask(
        &mut self,
        n: usize,
        report: &mut dyn FnMut(SupernetProgress<'_>),
    ) -> anyhow::Result<Vec<Proposal>> {
        if self.state.derived.is_empty() {
            self.search(report)?;
        }
        // Interrupted before the last epoch: nothing to propose in this run.
        let mut out = Vec::new();
        while out.len() < n && self.state.proposed < self.state.derived.len() {
            let choices = &self.state.derived[self.state.proposed];
            out.push(Proposal {
                values: choices.iter().map(|&v| v as f64).collect(),
                ..Proposal::default()
            });
            self.state.proposed += 1;
        }
        Ok(out)
    }

    /// The derived architectures are fixed by the supernet: trials teach it nothing.
    pub fn tell(&mut self, _observations: &[Observation]) -> anyhow::Result<()> {
        Ok(())
    }

    pub fn save(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::to_value(&self.state)?)
    }

    pub fn restore(&mut self, state: &serde_json::Value) -> anyhow::Result<()> {
        self.state = serde_json::from_value(state.clone())
            .with_context(|| format!("strategy `{}`: stored state", self.name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(name: &str, state: serde_json::Value) -> Checkpoint {
        Checkpoint {
            strategy_index: 2,
            name: name.into(),
            state,
        }
    }

    #[test]
    fn only_one_shot_checkpoints_hold_a_supernet_record() {
        let empty = serde_json::to_value(SupernetRecord::default()).unwrap();
        assert!(supernet_record(&checkpoint("evolution", empty.clone())).is_none());
        let read = supernet_record(&checkpoint("gdas", empty))
            .unwrap()
            .unwrap();
        assert!(read.history.is_empty() && read.derived.is_empty());
        let bad = supernet_record(&checkpoint("darts", serde_json::json!({"history": 3})))
            .unwrap()
            .unwrap_err();
        let message = format!("{bad:#}");
        assert!(message.contains("strategy 2 (`darts`)"), "{message}");
    }
}
