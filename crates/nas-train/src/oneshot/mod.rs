//! One-shot search: a supernet ([`nas_graph::Supernet`]) trained once inside ONNX Runtime,
//! its architecture read from learned mixing weights (DARTS, DARTS-, GDAS) or its shared
//! weights used to score single paths (SPOS). See [`arch`] for the methods.
//!
//! Every step feeds each mixed edge its choice's weights; the architecture step (on a
//! validation batch) runs the training step without keeping its state (`commit = false`)
//! and reads the gradient of the mixing weights, from which the host updates `alpha`; the
//! weight step (on a training batch) trains the network weights with SGD. Per-step random
//! draws come from `(seed, step)` only, so [`SupernetTrainer::checkpoint`] and
//! [`SupernetTrainer::resume`] continue a search exactly.
//!
//! GDAS and SPOS compute every operation of an edge and weigh the unsampled ones by zero
//! (ONNX graphs have no data-dependent branches our autodiff could follow): a step costs a
//! supernet step, about 1.5x the step of the largest candidate on NAS-Bench-201's cell.

pub mod arch;
mod checkpoint;
mod dirichlet;
mod few_shot;
mod loss_pass;
mod selection;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use nas_data::{Augment, BatchOptions, Part, SplitDataset};
use nas_graph::{Supernet, Weights};
use nas_runtime::SessionSettings;
use ndarray::{Array4, ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

pub use arch::{ArchParams, Method};
pub use checkpoint::{ONESHOT_CHECKPOINT_VERSION, OneShotCheckpoint};
pub use selection::{Selection, SelectionDecision, SelectionMetric};

use crate::error::TrainError;
use crate::runner::{StepInputs, StepRunner};
use crate::step_api::{Optimizer, TrainOptions, TrainingStep, initial_state, training_step};
use crate::trainer::{check_fit, resolve_augment, start_runner, state_in_step_order};
use arch::{ArchAdam, Draw, StepWeights, one_hot, step_rng};

/// Scale and shift of every BatchNorm whose output is an input of a mixed edge.
fn mixed_batch_norm_params(supernet: &Supernet) -> Vec<String> {
    let g = &supernet.graph;
    let mut names: Vec<String> = supernet
        .edges
        .iter()
        .flat_map(|e| g.nodes[e.node].inputs.iter().copied())
        .filter(|&i| matches!(g.nodes[i].op, nas_graph::Op::BatchNorm { .. }))
        .flat_map(|i| [format!("n{i}.scale"), format!("n{i}.bias")])
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What a cost-aware search ([`OneShotConfig::cost_penalty`]) weighs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostMetric {
    /// Multiply-accumulates of one forward pass (the study's `flops` metric).
    #[default]
    Flops,
    /// Parameters (the study's `params` metric).
    Params,
}

/// GDAS: the gradient of an unsampled operation's weight in the one-hot (the sampled one's is
/// always the edge's output gradient times its output).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GdasGradient {
    /// `straight-through` where the supernet's options share their weights
    /// ([`Supernet::options_share_weights`]: a chain space's), `authors` otherwise (a cell
    /// space's). Measured on both kinds of ground truth (docs/oneshot.md).
    #[default]
    Auto,
    /// The authors' code adds an unsampled operation to the edge's output as its weight, a
    /// constant, so its gradient is the sum of the edge's output gradient: all unsampled
    /// operations get the same, and only the sampled one's differs from it.
    Authors,
    /// Straight through the whole mixture, as DARTS's gradient at the one-hot: the edge's
    /// output gradient times each operation's output, a first-order estimate of what
    /// switching to it would change. It needs every operation's output, so every operation
    /// runs (whatever `sampled_path_only` says). It suits options that share weights, which
    /// are trained whichever is sampled; on a cell space an unsampled operation's output is
    /// that of weights it barely trained, and the search collapses onto parameter-free ones.
    StraightThrough,
}

impl GdasGradient {
    /// `Auto` made concrete for `supernet`.
    pub fn resolve(self, supernet: &Supernet) -> GdasGradient {
        match self {
            GdasGradient::Auto if supernet.options_share_weights => GdasGradient::StraightThrough,
            GdasGradient::Auto => GdasGradient::Authors,
            other => other,
        }
    }
}

/// SPOS's sandwich rule (Yu & Huang, ICCV 2019; BigNAS, Yu et al., ECCV 2020): the paths
/// every training batch trains after the uniformly drawn one, each an SGD step of its own.
/// Nested options (a chain's widths, expansion ratios, depths) share their leading weights,
/// so the largest path holds every other path's weights and the smallest path's are in every
/// path. In a cell space each operation has weights of its own; there the largest path
/// (`nor_conv_3x3` on every edge) trains the convolutions on every batch, which the uniform
/// draw leaves behind the parameter-free operations. Needs a supernet with a smallest and a
/// largest path (`Supernet::extreme_paths`: the chain and cell spaces set them). TOML:
/// `true` / `"both"`, `"largest"`, `false` / `"off"`.
///
/// Measured on the chain ground truth (docs/oneshot.md, "SPOS with the sandwich rule"):
/// a path trained on every batch scores high, so `both` puts the smallest networks on top
/// of any search restricted to small networks (a cost constraint); `largest` does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sandwich {
    /// Plain SPOS: the drawn path only.
    #[default]
    Off,
    /// The smallest and the largest path (three steps per batch), the published rule.
    Both,
    /// The largest path only (two steps per batch).
    Largest,
}

impl<'de> Deserialize<'de> for Sandwich {
    /// `true` and `false` as well as the names, so `sandwich = true` reads as in the papers.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Sandwich;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, \"both\", \"largest\" or \"off\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Sandwich, E> {
                Ok(if v { Sandwich::Both } else { Sandwich::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sandwich, E> {
                match v {
                    "off" => Ok(Sandwich::Off),
                    "both" => Ok(Sandwich::Both),
                    "largest" => Ok(Sandwich::Largest),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The one-shot search's settings (a strategy's or evaluator's TOML table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OneShotConfig {
    pub method: Method,
    /// Passes over the training split.
    pub epochs: usize,
    /// The first epochs train only the weights, with `alpha` at its initial (uniform)
    /// value (PC-DARTS' warm-up): the architecture is then not judged on barely trained
    /// operations, which favours parameter-free ones.
    pub warmup_epochs: usize,
    pub batch: usize,
    /// SGD (momentum, L2) on the network weights, cosine from `weight_lr` to `weight_lr_min`.
    pub weight_lr: f64,
    pub weight_lr_min: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Adam on the architecture logits.
    pub arch_lr: f64,
    pub arch_weight_decay: f64,
    pub arch_beta1: f64,
    pub arch_beta2: f64,
    /// GDAS temperature, linear from `tau_max` to `tau_min` over the search.
    pub tau_max: f64,
    pub tau_min: f64,
    /// DARTS-: initial weight of the auxiliary skip, linear to 0 over the search.
    pub aux_beta: f64,
    /// DrNAS: scale of the L2 penalty on the Dirichlet concentrations `elu(alpha) + 1` (the
    /// paper's `reg_scale`), added to the architecture step's loss.
    pub concentration_l2: f64,
    /// β-DARTS (Ye et al., CVPR 2022): weight of the Beta-Decay penalty, the mean over
    /// choices of `logsumexp(alpha)`, added to the architecture step's loss; it rises
    /// linearly from 0 to this value over the search (0: off). Its gradient, `softmax(alpha)`
    /// per choice, pulls the largest logits down hardest, so no option's weight runs away
    /// early, the collapse onto parameter-free operations. Methods with `softmax(alpha)`
    /// only (darts, darts-minus, gdas).
    pub beta_decay: f64,
    /// SDARTS-RS (Chen & Hsieh, ICML 2020): every weight step mixes the operations with
    /// `softmax(alpha)` plus noise uniform in `[-eps, eps]`, `eps` rising linearly from a
    /// tenth of this value to this value over the search (the paper: 0.03 to 0.3; 0: off).
    /// The network weights then learn to work for nearby architecture weights too, which
    /// flattens the validation loss around `alpha`; its sharpness is what the authors tie to
    /// DARTS's collapse. The architecture steps see the weights unperturbed. Methods that mix
    /// every option by `softmax(alpha)` only (darts, darts-minus).
    pub random_smoothing: f64,
    /// Progressive pruning (DrNAS's progressive stage, Chen et al., ICLR 2021): after
    /// `prune_after` epochs every choice keeps its `prune_to` most likely options and the
    /// rest leave the supernet (weight 0 from then on); the warm-up (`warmup_epochs`, no
    /// architecture steps) runs again after the pruning, so the kept operations' weights
    /// adapt to the smaller supernet before `alpha` learns again. 0: off (DrNAS keeps 3 of
    /// NAS-Bench-201's 5). Methods that learn `alpha` only.
    pub prune_to: usize,
    /// Epochs before progressive pruning (`None`: half the search).
    pub prune_after: Option<usize>,
    /// Cost-aware search (ProxylessNAS, Cai et al., ICLR 2019; FBNet, Wu et al., CVPR 2019):
    /// the architecture step's loss gains `cost_penalty` times the expected cost of the
    /// architecture under the step's mixing weights, `sum_c sum_o w_co cost_co`, where
    /// `cost_co` is what option `o` of choice `c` adds to the network's `cost_metric`
    /// (given by the caller: [`SupernetTrainer::set_option_costs`]; the space's estimate
    /// scales them so that every choice's costliest option adds up to 1). Its gradient
    /// reaches `alpha` through the method's own relaxation. 0: off. Methods that learn
    /// `alpha` only.
    pub cost_penalty: f64,
    /// What `cost_penalty` weighs: `flops` (multiply-accumulates) or `params`.
    pub cost_metric: CostMetric,
    /// Train the scale and shift of the BatchNorms that end a mixed edge's operations. Off
    /// by default, as in NAS-Bench-201's search networks: with them an operation can grow
    /// its output instead of its architecture weight.
    pub affine: bool,
    /// Crop and flip the training batches (`None`: as the data set says).
    pub augment: Option<bool>,
    /// Seed of the initial weights, `alpha` and every draw (`None`: the data's seed).
    pub seed: Option<u64>,
    /// GDAS and SPOS: compute only the sampled operation of each edge (its weight is the only
    /// one not zero), where the gradient allows it (GDAS's straight-through gradient reads
    /// every operation's output). The others' parameters are still updated with a zero
    /// gradient (momentum and weight decay), as in the methods' PyTorch code, so only the
    /// compute changes. Off: every operation runs, weighed by zero (slower; kept for
    /// measurements).
    pub sampled_path_only: bool,
    /// GDAS: what gradient an unsampled operation's architecture weight gets
    /// ([`GdasGradient`]).
    pub gdas_gradient: GdasGradient,
    /// SPOS: the sandwich rule ([`Sandwich`]): the supernet's largest path, and with `both`
    /// (`true`) its smallest too, trained on every batch after the uniformly drawn one.
    pub sandwich: Sandwich,
    /// How the architecture is read from the trained supernet ([`Selection`]):
    /// `magnitude` (argmax of `alpha`) or `perturbation` (DARTS-PT).
    pub selection: Selection,
    /// Perturbation-based selection: epochs of tuning after each decision but the last
    /// (0: decide every choice right after the search).
    pub selection_epochs: usize,
    /// Perturbation-based selection: what removing an option is measured by.
    pub selection_metric: SelectionMetric,
}

impl Default for OneShotConfig {
    /// The settings of NAS-Bench-201's DARTS / GDAS / SPOS searches, 50 epochs.
    fn default() -> Self {
        OneShotConfig {
            method: Method::Darts,
            epochs: 50,
            warmup_epochs: 0,
            batch: 64,
            weight_lr: 0.025,
            weight_lr_min: 0.001,
            momentum: 0.9,
            weight_decay: 3e-4,
            arch_lr: 3e-4,
            arch_weight_decay: 1e-3,
            arch_beta1: 0.5,
            arch_beta2: 0.999,
            tau_max: 10.0,
            tau_min: 0.1,
            aux_beta: 1.0,
            concentration_l2: 1e-3,
            beta_decay: 0.0,
            random_smoothing: 0.0,
            prune_to: 0,
            prune_after: None,
            cost_penalty: 0.0,
            cost_metric: CostMetric::Flops,
            affine: false,
            augment: None,
            seed: None,
            sampled_path_only: true,
            gdas_gradient: GdasGradient::Auto,
            sandwich: Sandwich::Off,
            selection: Selection::Magnitude,
            selection_epochs: 5,
            selection_metric: SelectionMetric::Accuracy,
        }
    }
}

impl OneShotConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &str, reason: String| {
            Err(TrainError::Config {
                key: key.into(),
                reason,
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.warmup_epochs >= self.epochs {
            return bad(
                "warmup_epochs",
                format!(
                    "is {}; it must be below `epochs` ({}), or the architecture never learns",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        // `arch_lr = 0` keeps `alpha` uniform (DARTS-PT's "fixed alpha"): only perturbation
        // can read an architecture from such a supernet.
        let fixed_alpha = self.arch_lr == 0.0 && self.selection == Selection::Perturbation;
        let learned = self.arch_lr.is_finite() && self.arch_lr > 0.0;
        if !(fixed_alpha || learned) {
            return bad(
                "arch_lr",
                format!(
                    "is {}; it must be a positive number (or 0, alpha kept uniform, with \
                     selection = \"perturbation\")",
                    self.arch_lr
                ),
            );
        }
        for (key, v) in [("weight_lr", self.weight_lr), ("tau_min", self.tau_min)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, format!("is {v}; it must be a positive number"));
            }
        }
        for (key, v) in [
            ("weight_lr_min", self.weight_lr_min),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("arch_weight_decay", self.arch_weight_decay),
            ("aux_beta", self.aux_beta),
            ("concentration_l2", self.concentration_l2),
            ("beta_decay", self.beta_decay),
            ("random_smoothing", self.random_smoothing),
            ("cost_penalty", self.cost_penalty),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("is {v}; it must be a number >= 0"));
            }
        }
        for (key, v) in [
            ("arch_beta1", self.arch_beta1),
            ("arch_beta2", self.arch_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(key, format!("is {v}; it must be in [0, 1)"));
            }
        }
        if self.selection == Selection::Perturbation && !self.method.learns_alpha() {
            return bad(
                "selection",
                format!(
                    "`perturbation` perturbs learned architecture weights, which `{}` has \
                     none of; remove it (SPOS selects by scoring paths)",
                    self.method.name()
                ),
            );
        }
        if self.gdas_gradient == GdasGradient::StraightThrough && self.method != Method::Gdas {
            return bad(
                "gdas_gradient",
                format!(
                    "sets how GDAS's sampled one-hot passes gradients; `{}` samples no \
                     one-hot; remove it",
                    self.method.name()
                ),
            );
        }
        if self.sandwich != Sandwich::Off && self.method != Method::Spos {
            return bad(
                "sandwich",
                format!(
                    "trains the supernet's largest (and smallest) path beside SPOS's uniformly \
                     drawn one; `{}` trains a mixture or a learned sample, not uniform paths; \
                     remove it",
                    self.method.name()
                ),
            );
        }
        if self.beta_decay > 0.0 && !self.method.softmax_weights() {
            return bad(
                "beta_decay",
                format!(
                    "regularizes softmax architecture weights, which `{}` has none of; \
                     remove it or use {}",
                    self.method.name(),
                    Method::names_where(Method::softmax_weights)
                ),
            );
        }
        if self.random_smoothing > 0.0 && !self.method.mixes_every_option() {
            return bad(
                "random_smoothing",
                format!(
                    "perturbs the softmax mixture of every operation, which `{}` does not \
                     train with; remove it or use {}",
                    self.method.name(),
                    Method::names_where(Method::mixes_every_option)
                ),
            );
        }
        if self.cost_penalty > 0.0 && !self.method.learns_alpha() {
            return bad(
                "cost_penalty",
                format!(
                    "steers learned architecture weights, which `{}` has none of; remove it \
                     (or put a constraint on `flops` / `params` in the study)",
                    self.method.name()
                ),
            );
        }
        if self.prune_to > 0 {
            if !self.method.learns_alpha() {
                return bad(
                    "prune_to",
                    format!(
                        "keeps the options with the largest architecture weights, which `{}` \
                         has none of; remove it",
                        self.method.name()
                    ),
                );
            }
            let after = self.prune_epoch();
            if after <= self.warmup_epochs || after + self.warmup_epochs >= self.epochs {
                return bad(
                    "prune_after",
                    format!(
                        "is {after}{}; the architecture must learn before the pruning (more \
                         than warmup_epochs = {w}) and after it, past the warm-up it runs again \
                         (below epochs - warmup_epochs = {}); set prune_after in that range or \
                         change epochs / warmup_epochs",
                        if self.prune_after.is_none() {
                            " (its default, half of epochs)"
                        } else {
                            ""
                        },
                        self.epochs.saturating_sub(self.warmup_epochs),
                        w = self.warmup_epochs,
                    ),
                );
            }
        }
        if !(self.tau_max.is_finite() && self.tau_max >= self.tau_min) {
            return bad(
                "tau_max",
                format!(
                    "is {}; it must be at least tau_min ({})",
                    self.tau_max, self.tau_min
                ),
            );
        }
        Ok(())
    }

    /// Whether these settings can train `supernet` (before any data is read): the method's
    /// auxiliary skips, the sandwich rule's size order, progressive pruning's option counts.
    pub fn check_supernet(&self, supernet: &Supernet) -> Result<(), TrainError> {
        if supernet.aux_skip != self.method.aux_skip() {
            return Err(TrainError::Mismatch(format!(
                "method `{}` needs a supernet {} auxiliary skips",
                self.method.name(),
                if self.method.aux_skip() {
                    "with"
                } else {
                    "without"
                }
            )));
        }
        if self.sandwich != Sandwich::Off && supernet.extreme_paths.is_none() {
            return Err(TrainError::Config {
                key: "sandwich".into(),
                reason: "needs a supernet whose options are ordered by size, with a \
                         smallest and a largest path (`Supernet::extreme_paths`, which the \
                         chain and cell spaces set); this one has none: remove it"
                    .into(),
            });
        }
        let most = supernet.options.iter().copied().max().unwrap_or(0);
        if self.prune_to > 0 && self.prune_to >= most {
            return Err(TrainError::Config {
                key: "prune_to".into(),
                reason: format!(
                    "is {}, which keeps every option of this supernet (at most {most} per \
                     choice); set it below {most}, or 0 for no pruning",
                    self.prune_to
                ),
            });
        }
        Ok(())
    }

    /// Epochs a search of a supernet with `choices` choices trains in all: `epochs`, then
    /// with perturbation-based selection `selection_epochs` after each decision but the last.
    pub fn total_epochs(&self, choices: usize) -> usize {
        let tuning = match self.selection {
            Selection::Magnitude => 0,
            Selection::Perturbation => self.selection_epochs * choices.saturating_sub(1),
        };
        self.epochs + tuning
    }

    /// Epochs before progressive pruning: `prune_after`, by default half the search.
    pub fn prune_epoch(&self) -> usize {
        self.prune_after.unwrap_or(self.epochs / 2)
    }

    /// Whether epoch `index` (0-based) trains the weights only: the warm-up, and with
    /// progressive pruning the warm-up again right after it.
    fn warms_up(&self, index: usize) -> bool {
        let after_pruning = self.prune_to > 0
            && (self.prune_epoch()..self.prune_epoch() + self.warmup_epochs).contains(&index);
        index < self.warmup_epochs || after_pruning
    }

    /// The architecture step's settings; `beta_decay` is the Beta-Decay weight of the step.
    fn adam(&self, beta_decay: f64) -> ArchAdam {
        ArchAdam {
            beta_decay,
            lr: self.arch_lr,
            beta1: self.arch_beta1,
            beta2: self.arch_beta2,
            weight_decay: self.arch_weight_decay,
            concentration_l2: self.concentration_l2,
        }
    }
}

/// What one epoch of the search did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneShotEpoch {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// Loss and accuracy of the architecture steps on validation batches (not for SPOS).
    pub arch_loss: Option<f64>,
    pub arch_accuracy: Option<f64>,
    /// Learning rate of the epoch's last weight step.
    pub lr: f64,
    /// GDAS temperature / DARTS- auxiliary skip weight of the epoch.
    pub tau: Option<f64>,
    pub aux_beta: Option<f64>,
    /// The Beta-Decay weight of the epoch's architecture steps (when `beta_decay` is set;
    /// absent in records written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_decay: Option<f64>,
    /// Random smoothing's noise bound `eps` in the epoch's weight steps (when
    /// `random_smoothing` is set; absent in records written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_smoothing: Option<f64>,
    pub seconds: f64,
    /// With `cost_penalty`: the expected cost of the architecture after the epoch (its
    /// probabilities times the options' costs, in the costs' scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_cost: Option<f64>,
    /// `ArchParams::probabilities` after the epoch: the softmax of `alpha` per choice (DrNAS:
    /// the Dirichlet mean; empty for SPOS).
    pub probabilities: Vec<Vec<f64>>,
    /// The derived architecture after the epoch: an option index per choice (empty for SPOS).
    pub derived: Vec<usize>,
    /// Choices perturbation-based selection had fixed by the end of the epoch (absent in
    /// records written before it: 0).
    #[serde(default)]
    pub decided: usize,
}

/// The data a [`SupernetTrainer`] reads: borrowed from the caller, or shared with it (a
/// trainer that outlives the caller's borrow, e.g. one kept by an evaluator).
#[derive(Clone, Debug)]
pub enum TrainData<'d> {
    Borrowed(&'d SplitDataset),
    Shared(Arc<SplitDataset>),
}

impl Deref for TrainData<'_> {
    type Target = SplitDataset;

    fn deref(&self) -> &SplitDataset {
        match self {
            TrainData::Borrowed(d) => d,
            TrainData::Shared(d) => d,
        }
    }
}

impl<'d> From<&'d SplitDataset> for TrainData<'d> {
    fn from(d: &'d SplitDataset) -> Self {
        TrainData::Borrowed(d)
    }
}

impl From<Arc<SplitDataset>> for TrainData<'static> {
    fn from(d: Arc<SplitDataset>) -> Self {
        TrainData::Shared(d)
    }
}

/// Trains a supernet with one method on one split data set.
pub struct SupernetTrainer<'d> {
    supernet: Supernet,
    cfg: OneShotConfig,
    data: TrainData<'d>,
    step: TrainingStep,
    /// The step's options and runtime, to build [`loss_pass::LossPass`] when first needed.
    step_options: TrainOptions,
    runtime: SessionSettings,
    /// Forward-only scoring (SPOS paths, perturbation-based selection), built on first use;
    /// `None` inside when the training step must score itself.
    loss_pass: Option<Option<loss_pass::LossPass>>,
    runner: StepRunner,
    /// Per mixed input of the step (its order): the choice the edge decides.
    choice_of_mix: Vec<usize>,
    arch: ArchParams,
    batch: usize,
    steps_per_epoch: usize,
    augment: Option<Augment>,
    seed: u64,
    epoch: usize,
    global_step: u64,
    history: Vec<OneShotEpoch>,
    decisions: Vec<SelectionDecision>,
    /// Per choice and option, its cost ([`OneShotConfig::cost_penalty`]); set by the caller.
    option_costs: Option<Vec<Vec<f64>>>,
    /// `cfg.gdas_gradient` resolved for this supernet (never `Auto`).
    gdas_gradient: GdasGradient,
    /// Validation batches [`Self::score`] reads (`None`: every full batch); set by the
    /// caller ([`Self::set_score_images`]). Scoring only: the training and its checkpoint
    /// do not depend on it.
    score_batches: Option<usize>,
}

/// The whole batches of `batch` that `images` validation images hold, for
/// [`SupernetTrainer::set_score_images`] (`None`: every batch); an error below one batch.
/// Callers that know the batch before training (the `supernet` evaluator) check with it
/// at start-up.
pub fn score_batches(images: Option<usize>, batch: usize) -> Result<Option<usize>, TrainError> {
    match images {
        None => Ok(None),
        Some(n) if n < batch => Err(TrainError::Config {
            key: "score_images".into(),
            reason: format!(
                "is {n}, less than one batch of {batch} (paths are scored on full batches); \
                 raise it or lower `batch`"
            ),
        }),
        Some(n) => Ok(Some(n / batch)),
    }
}

/// Where a trainer starts.
enum Start {
    Fresh,
    Resume(Box<OneShotCheckpoint>),
}

impl<'d> SupernetTrainer<'d> {
    /// A search at epoch 0: He-initialized weights, `alpha` near zero.
    pub fn new(
        supernet: &Supernet,
        cfg: &OneShotConfig,
        runtime: &SessionSettings,
        data: impl Into<TrainData<'d>>,
    ) -> Result<SupernetTrainer<'d>, TrainError> {
        Self::build(supernet, cfg, runtime, data.into(), Start::Fresh)
    }

    /// Continues a search from a checkpoint of the same supernet, settings and data.
    pub fn resume(
        checkpoint: OneShotCheckpoint,
        runtime: &SessionSettings,
        data: impl Into<TrainData<'d>>,
    ) -> Result<SupernetTrainer<'d>, TrainError> {
        let data = data.into();
        let here = crate::DataFingerprint::of(&data);
        if here != checkpoint.data {
            return Err(TrainError::Mismatch(format!(
                "the supernet checkpoint was trained on {:?}, not on this data {:?}; \
                 resume it with the same [data] table and seed",
                checkpoint.data, here
            )));
        }
        let (supernet, cfg) = (checkpoint.supernet.clone(), checkpoint.config.clone());
        Self::build(
            &supernet,
            &cfg,
            runtime,
            data,
            Start::Resume(Box::new(checkpoint)),
        )
    }

    fn build(
        supernet: &Supernet,
        cfg: &OneShotConfig,
        runtime: &SessionSettings,
        data: TrainData<'d>,
        start: Start,
    ) -> Result<SupernetTrainer<'d>, TrainError> {
        cfg.validate()?;
        // The settings stay as given (a study compares them with its checkpoint's); the
        // supernet, which the checkpoint keeps too, resolves `auto` the same way on resume.
        let gdas_gradient = cfg.gdas_gradient.resolve(supernet);
        let every_output =
            cfg.method == Method::Gdas && gdas_gradient == GdasGradient::StraightThrough;
        supernet
            .validate()
            .map_err(TrainError::graph("the supernet is invalid"))?;
        cfg.check_supernet(supernet)?;
        check_fit(&supernet.graph, &data)?;
        if data.data.task() == nas_data::Task::Regression {
            return Err(TrainError::Mismatch(format!(
                "`{}` searches classifiers; data set `{}` is for regression (`[data] task`)",
                cfg.method.name(),
                data.data.name
            )));
        }
        let augment = resolve_augment(cfg.augment, &data)?;
        let train_n = data.indices(Part::Train).len();
        let val_n = data.indices(Part::Validation).len();
        if cfg.method.learns_alpha() && val_n == 0 {
            return Err(TrainError::Mismatch(format!(
                "`{}` learns the architecture on the validation split, which is empty; \
                 set `[data] validation` above 0 (e.g. 0.5)",
                cfg.method.name()
            )));
        }
        let mut batch = cfg.batch.min(train_n).max(1);
        if cfg.method.learns_alpha() {
            batch = batch.min(val_n);
        }
        let options = TrainOptions {
            batch: Some(batch),
            optimizer: Optimizer::Sgd {
                momentum: cfg.momentum as f32,
                nesterov: false,
            },
            weight_decay: cfg.weight_decay as f32,
            label_smoothing: 0.0,
            emit_gradients: false,
            frozen: if cfg.affine {
                Vec::new()
            } else {
                mixed_batch_norm_params(supernet)
            },
            // One-hot weights (GDAS, SPOS) then run one path per edge; DARTS' softmax
            // weights are never zero, so the `If`s would only cost.
            conditional_mix: cfg.sampled_path_only && cfg.method.samples_paths() && !every_output,
            sample_weights: false,
            entropy_bonus: 0.0,
            nchwc_block: crate::nchwc::block_size(runtime),
            regression: false,
        };
        let step = training_step(&supernet.graph, &options).map_err(TrainError::graph(
            "cannot build the supernet's training step",
        ))?;
        let choice_of_mix = step
            .mixes
            .iter()
            .map(|m| {
                supernet
                    .edges
                    .iter()
                    .find(|e| e.node == m.node)
                    .map(|e| e.choice)
                    .ok_or_else(|| {
                        TrainError::Mismatch(format!(
                            "mixed edge {} is not an edge of the supernet's description",
                            m.node
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seed = cfg.seed.unwrap_or(data.seed);
        let (values, arch, epoch, global_step, history, decisions) = match start {
            Start::Fresh => {
                let w = Weights::he_init(&supernet.graph, seed)
                    .map_err(TrainError::graph("cannot initialize the supernet"))?;
                let values = initial_state(&step, &w)
                    .map_err(TrainError::graph("cannot set the initial weights"))?;
                (
                    values,
                    ArchParams::new(&supernet.options, seed, cfg.method),
                    0,
                    0,
                    Vec::new(),
                    Vec::new(),
                )
            }
            Start::Resume(c) => {
                let values = state_in_step_order(&step, &c.state, "the supernet checkpoint")?;
                (values, c.arch, c.epoch, c.step, c.history, c.decisions)
            }
        };
        let (runner, _) = start_runner(&step, runtime, values)?;
        Ok(SupernetTrainer {
            supernet: supernet.clone(),
            cfg: cfg.clone(),
            data,
            step,
            step_options: options,
            runtime: runtime.clone(),
            loss_pass: None,
            runner,
            choice_of_mix,
            arch,
            batch,
            steps_per_epoch: train_n / batch,
            augment,
            seed,
            epoch,
            global_step,
            history,
            decisions,
            option_costs: None,
            gdas_gradient,
            score_batches: None,
        })
    }

    /// The gradient GDAS's unsampled operations get in this search (`auto` resolved for its
    /// supernet).
    pub fn gdas_gradient(&self) -> GdasGradient {
        self.gdas_gradient
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Epochs in all: the search's, then perturbation-based selection's tuning.
    pub fn total_epochs(&self) -> usize {
        self.cfg.total_epochs(self.supernet.options.len())
    }

    pub fn history(&self) -> &[OneShotEpoch] {
        &self.history
    }

    pub fn config(&self) -> &OneShotConfig {
        &self.cfg
    }

    pub fn supernet(&self) -> &Supernet {
        &self.supernet
    }

    pub fn arch(&self) -> &ArchParams {
        &self.arch
    }

    /// The cost of every option of every choice, as `cost_penalty` weighs it
    /// (`nas_core::space::option_costs` estimates them for a space).
    pub fn set_option_costs(&mut self, costs: Vec<Vec<f64>>) -> Result<(), TrainError> {
        let fits = costs.len() == self.supernet.options.len()
            && costs
                .iter()
                .zip(&self.supernet.options)
                .all(|(c, &n)| c.len() == n && c.iter().all(|v| v.is_finite()));
        if !fits {
            return Err(TrainError::Mismatch(format!(
                "option costs must be finite numbers, one per option of each choice ({:?})",
                self.supernet.options
            )));
        }
        self.option_costs = Some(costs);
        Ok(())
    }

    /// Scores paths on the validation split's first `images` only, in whole batches (`None`:
    /// the whole split). Scoring costs a forward pass over those images per path; when a
    /// search scores hundreds of paths that is most of its cost, and the ranking at the top
    /// needs fewer images than the split holds.
    pub fn set_score_images(&mut self, images: Option<usize>) -> Result<(), TrainError> {
        self.score_batches = score_batches(images, self.batch)?;
        Ok(())
    }

    /// Adds the cost penalty's gradient to the mixing weights' loss gradients: the expected
    /// cost `sum_o w_co cost_co` is linear in the weights.
    fn add_cost_gradient(&self, grads: &mut [Vec<f64>]) {
        let Some(costs) = self.penalized_costs() else {
            return;
        };
        for (g, cost) in grads.iter_mut().zip(costs) {
            for (g, c) in g.iter_mut().zip(cost) {
                *g += self.cfg.cost_penalty * c;
            }
        }
    }

    /// The expected cost under `probabilities` (with `cost_penalty` set).
    fn expected_cost(&self, probabilities: &[Vec<f64>]) -> Option<f64> {
        let costs = self.penalized_costs()?;
        Some(
            probabilities
                .iter()
                .zip(costs)
                .flat_map(|(p, c)| p.iter().zip(c).map(|(p, c)| p * c))
                .sum(),
        )
    }

    /// The options' costs when the search weighs them (`cost_penalty` above 0).
    fn penalized_costs(&self) -> Option<&[Vec<f64>]> {
        self.option_costs
            .as_deref()
            .filter(|_| self.cfg.cost_penalty > 0.0)
    }

    /// Sets the architecture logits (a derived architecture from hand-set weights, tests).
    pub fn set_alpha(&mut self, alpha: Vec<Vec<f64>>) -> Result<(), TrainError> {
        let fits = alpha.len() == self.supernet.options.len()
            && alpha
                .iter()
                .zip(&self.supernet.options)
                .all(|(a, &n)| a.len() == n);
        if !fits {
            return Err(TrainError::Mismatch(format!(
                "alpha needs {:?} values per choice",
                self.supernet.options
            )));
        }
        self.arch.alpha = alpha;
        Ok(())
    }

    /// The derived architecture: the most likely option per choice.
    pub fn derive(&self) -> Vec<usize> {
        self.arch.derive()
    }

    /// The weights' learning rate at optimizer step `step` (cosine to the minimum; a tenth of
    /// `weight_lr` while perturbation-based selection tunes, as DARTS-PT does).
    fn lr(&self, step: u64) -> f64 {
        let search_steps = (self.cfg.epochs * self.steps_per_epoch) as u64;
        if step >= search_steps && self.cfg.selection == Selection::Perturbation {
            return self.cfg.weight_lr / 10.0;
        }
        let total = search_steps.max(1) as f64;
        let t = (step as f64).min(total);
        let (hi, lo) = (
            self.cfg.weight_lr,
            self.cfg.weight_lr_min.min(self.cfg.weight_lr),
        );
        lo + (hi - lo) * 0.5 * (1.0 + (std::f64::consts::PI * t / total).cos())
    }

    /// Progress of the search in [0, 1] at the start of epoch `epoch` (0-based; 1 during
    /// selection's tuning).
    fn progress(&self, epoch: usize) -> f64 {
        if self.cfg.epochs <= 1 {
            0.0
        } else {
            (epoch as f64 / (self.cfg.epochs - 1) as f64).min(1.0)
        }
    }

    fn tau(&self, epoch: usize) -> f64 {
        self.cfg.tau_max - (self.cfg.tau_max - self.cfg.tau_min) * self.progress(epoch)
    }

    fn beta_decay(&self, epoch: usize) -> f64 {
        self.cfg.beta_decay * self.progress(epoch)
    }

    /// Random smoothing's noise bound in epoch `epoch`: a tenth of the setting, rising to it.
    fn smoothing(&self, epoch: usize) -> f64 {
        self.cfg.random_smoothing * (0.1 + 0.9 * self.progress(epoch))
    }

    fn aux_beta(&self, epoch: usize) -> f64 {
        self.cfg.aux_beta * (1.0 - self.progress(epoch))
    }

    /// The sandwich rule's extra paths for each training batch, as one-hot weights per
    /// choice: the smallest (with `both`), then the largest; none without `sandwich`.
    fn sandwich_ends(&self) -> Vec<Vec<Vec<f64>>> {
        let Some(ends) = self.supernet.extreme_paths.as_ref() else {
            return Vec::new();
        };
        let paths = match self.cfg.sandwich {
            Sandwich::Off => Vec::new(),
            Sandwich::Largest => vec![&ends.largest],
            Sandwich::Both => vec![&ends.smallest, &ends.largest],
        };
        paths
            .into_iter()
            .map(|path| {
                path.iter()
                    .zip(&self.supernet.options)
                    .map(|(&o, &n)| one_hot(o, n))
                    .collect()
            })
            .collect()
    }

    /// The step's mixing weights per mixed edge, from per-choice weights.
    fn mix_inputs(&self, per_choice: &[Vec<f64>], beta: f64) -> Vec<ArrayD<f32>> {
        self.choice_of_mix
            .iter()
            .map(|&c| {
                let mut w: Vec<f32> = per_choice[c].iter().map(|&v| v as f32).collect();
                if self.supernet.aux_skip {
                    w.push(beta as f32);
                }
                ArrayD::from_shape_vec(IxDyn(&[w.len()]), w).expect("1-D")
            })
            .collect()
    }

    /// Sums the gradient of each choice's weights over its mixed edges (the auxiliary skip's
    /// slot is fixed, not learned). GDAS, as its authors compute it, runs only the sampled
    /// operation and adds each unsampled weight to the edge's output as a constant, so an
    /// unsampled weight's gradient is the sum of the output gradient (the last value of the
    /// step's gradient output), the sampled one's is the usual one.
    fn choice_grads(&self, w: &StepWeights) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = self
            .supernet
            .options
            .iter()
            .map(|&n| vec![0.0; n])
            .collect();
        let authors =
            self.cfg.method == Method::Gdas && self.gdas_gradient == GdasGradient::Authors;
        for (g, &c) in self.runner.mix_grads().iter().zip(&self.choice_of_mix) {
            let output_sum = f64::from(*g.last().expect("the output sum ends the gradient"));
            for (k, (o, v)) in out[c].iter_mut().zip(g).enumerate() {
                *o += if authors && w.weights[c][k] == 0.0 {
                    output_sum
                } else {
                    f64::from(*v)
                };
            }
        }
        out
    }

    fn run(
        &mut self,
        images: Array4<f32>,
        labels: &[u32],
        lr: f64,
        mixes: Vec<ArrayD<f32>>,
        commit: bool,
    ) -> Result<(f32, f32), TrainError> {
        let labels = nas_data::Targets::Classes(labels.to_vec());
        let (loss, correct) = self.runner.step(StepInputs {
            images: self.data.data.network_batch(images),
            labels: &labels,
            lr: lr as f32,
            step: (self.global_step + 1) as f32,
            masks: Vec::new(),
            mixes,
            commit,
        })?;
        self.check_finite(loss)?;
        Ok((loss, correct))
    }

    /// A non-finite loss stops the search: the supernet diverged at the current step.
    fn check_finite(&self, loss: f32) -> Result<(), TrainError> {
        if loss.is_finite() {
            return Ok(());
        }
        Err(TrainError::Diverged {
            epoch: self.epoch + 1,
            step: (self.global_step as usize % self.steps_per_epoch.max(1)) + 1,
            loss,
        })
    }

    /// Runs one epoch: per training batch an architecture step on the next validation batch
    /// (methods that learn `alpha`), then a weight step.
    /// During perturbation-based selection's tuning, a decision comes first when one is due.
    pub fn train_epoch(&mut self) -> Result<OneShotEpoch, TrainError> {
        if self.epoch >= self.total_epochs() {
            return Err(TrainError::Mismatch(format!(
                "the supernet has trained all its {} epochs",
                self.total_epochs()
            )));
        }
        if self.cfg.cost_penalty > 0.0 && self.option_costs.is_none() {
            return Err(TrainError::Mismatch(
                "`cost_penalty` needs the cost of every option; set them first \
                 (SupernetTrainer::set_option_costs)"
                    .into(),
            ));
        }
        if self.decision_due() {
            self.decide_one()?;
        }
        let index = self.epoch;
        if self.cfg.prune_to > 0 && index == self.cfg.prune_epoch() {
            self.arch.prune(self.cfg.prune_to);
        }
        let started = Instant::now();
        let tau = self.tau(index);
        let beta_decay = self.beta_decay(index);
        let smoothing = self.smoothing(index);
        let beta = if self.supernet.aux_skip {
            self.aux_beta(index)
        } else {
            0.0
        };
        let train_opts = BatchOptions {
            batch_size: self.batch,
            shuffle: true,
            drop_last: true,
            augment: self.augment,
        };
        let val_opts = BatchOptions {
            augment: None,
            ..train_opts
        };
        let learns = self.cfg.method.learns_alpha();
        // Warm-up, or `alpha` kept uniform (`arch_lr = 0`): no architecture steps.
        let warm = self.cfg.warms_up(index) || self.cfg.arch_lr == 0.0;
        // A handle of our own: the batch iterators borrow it while steps borrow `self`.
        let data = self.data.clone();
        let train: Vec<(Array4<f32>, Vec<u32>)> = data
            .batches(Part::Train, &train_opts, index as u64)?
            .collect();
        let mut val = if learns && !warm {
            Some(data.batches(Part::Validation, &val_opts, index as u64)?)
        } else {
            None
        };
        let mut refills = 0u64;
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0f64, 0usize);
        let (mut arch_loss, mut arch_correct, mut arch_seen) = (0f64, 0f64, 0usize);
        let mut lr = self.lr(self.global_step);
        // The sandwich rule's paths are fixed for the search: built once per epoch.
        let ends = self.sandwich_ends();
        for (images, labels) in train {
            if let Some(batches) = val.as_mut() {
                let (vx, vy) = match batches.next() {
                    Some(b) => b,
                    None => {
                        // The validation split ran out: start it again, reshuffled.
                        refills += 1;
                        let seed = (index as u64) << 16 | refills;
                        *batches = data.batches(Part::Validation, &val_opts, seed)?;
                        batches.next().ok_or_else(|| {
                            TrainError::Mismatch("the validation split has no full batch".into())
                        })?
                    }
                };
                let mut rng = step_rng(self.seed, self.global_step, Draw::ArchStep);
                let w = self.arch.step_weights(self.cfg.method, tau, &mut rng);
                let mixes = self.mix_inputs(&w.weights, beta);
                let (l, c) = self.run(vx, &vy, 0.0, mixes, false)?;
                arch_loss += f64::from(l) * vy.len() as f64;
                arch_correct += f64::from(c);
                arch_seen += vy.len();
                let mut grads = self.choice_grads(&w);
                self.add_cost_gradient(&mut grads);
                self.arch.update(&w, &grads, &self.cfg.adam(beta_decay));
            }
            lr = self.lr(self.global_step);
            let mut rng = step_rng(self.seed, self.global_step, Draw::WeightStep);
            let mut w: StepWeights = self.arch.step_weights(self.cfg.method, tau, &mut rng);
            if smoothing > 0.0 {
                self.arch.smooth(&mut w.weights, smoothing, &mut rng);
            }
            let mixes = self.mix_inputs(&w.weights, beta);
            let n = labels.len();
            let again = (!ends.is_empty()).then(|| images.clone());
            let (l, c) = self.run(images, &labels, lr, mixes, true)?;
            // The epoch's loss is the uniformly drawn paths', as without the sandwich.
            loss_sum += f64::from(l) * n as f64;
            correct += f64::from(c);
            seen += n;
            if let Some(images) = again {
                for path in &ends {
                    let mixes = self.mix_inputs(path, beta);
                    self.run(images.clone(), &labels, lr, mixes, true)?;
                }
            }
            self.global_step += 1;
        }
        self.epoch += 1;
        let (probabilities, derived) = if learns {
            (self.arch.probabilities(), self.arch.derive())
        } else {
            (Vec::new(), Vec::new())
        };
        let stats = OneShotEpoch {
            epoch: self.epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct / seen.max(1) as f64,
            arch_loss: (arch_seen > 0).then(|| arch_loss / arch_seen as f64),
            arch_accuracy: (arch_seen > 0).then(|| arch_correct / arch_seen as f64),
            lr,
            tau: (self.cfg.method == Method::Gdas).then_some(tau),
            aux_beta: self.supernet.aux_skip.then_some(beta),
            beta_decay: (self.cfg.beta_decay > 0.0).then_some(beta_decay),
            random_smoothing: (self.cfg.random_smoothing > 0.0).then_some(smoothing),
            seconds: started.elapsed().as_secs_f64(),
            expected_cost: self.expected_cost(&probabilities),
            probabilities,
            derived,
            decided: self.decisions.len(),
        };
        self.history.push(stats.clone());
        Ok(stats)
    }

    /// Loss and accuracy of one path (`choices`: an option per choice) of the trained
    /// supernet on the validation split, BatchNorm on batch statistics (as NAS-Bench-201's
    /// one-shot evaluation does: running statistics are shared by every path and fit none).
    /// Full batches only (the first of them with [`Self::set_score_images`]); the state is
    /// not changed.
    pub fn score(&mut self, choices: &[usize]) -> Result<(f64, f64), TrainError> {
        if choices.len() != self.supernet.options.len()
            || choices
                .iter()
                .zip(&self.supernet.options)
                .any(|(&c, &n)| c >= n)
        {
            return Err(TrainError::Mismatch(format!(
                "path {choices:?} does not pick one option per choice ({:?} options)",
                self.supernet.options
            )));
        }
        let per_choice: Vec<Vec<f64>> = choices
            .iter()
            .zip(&self.supernet.options)
            .map(|(&c, &n)| one_hot(c, n))
            .collect();
        self.evaluate(&per_choice, self.score_batches)
    }

    /// Loss and accuracy of the supernet with the given mixing weights per choice on the
    /// validation split (full batches, the first `max_batches` of them where given,
    /// BatchNorm on batch statistics, auxiliary skips off); the state is not changed.
    fn evaluate(
        &mut self,
        per_choice: &[Vec<f64>],
        max_batches: Option<usize>,
    ) -> Result<(f64, f64), TrainError> {
        let opts = BatchOptions {
            batch_size: self.batch,
            shuffle: false,
            drop_last: true,
            augment: None,
        };
        let (mut loss, mut correct, mut seen) = (0f64, 0f64, 0usize);
        let data = self.data.clone();
        if self.loss_pass.is_none() {
            self.loss_pass = Some(loss_pass::LossPass::new(
                &self.supernet.graph,
                &self.step_options,
                &self.step,
                &self.runtime,
            )?);
        }
        // The forward pass reads the weights as they stand, copied once for all batches.
        let state = match self.loss_pass {
            Some(Some(_)) => Some(self.runner.state()?),
            _ => None,
        };
        let batches = data.batches(Part::Validation, &opts, 0)?;
        for (x, y) in batches.take(max_batches.unwrap_or(usize::MAX)) {
            let mixes = self.mix_inputs(per_choice, 0.0);
            let (l, c) = match (&mut self.loss_pass, &state) {
                (Some(Some(pass)), Some(state)) => {
                    let (l, c) = pass.run(self.data.data.network_batch(x), &y, state, &mixes)?;
                    self.check_finite(l)?;
                    (l, c)
                }
                _ => self.run(x, &y, 0.0, mixes, false)?,
            };
            loss += f64::from(l) * y.len() as f64;
            correct += f64::from(c);
            seen += y.len();
        }
        if seen == 0 {
            return Err(TrainError::Mismatch(format!(
                "the validation split has no full batch of {}; lower `batch`",
                self.batch
            )));
        }
        Ok((loss / seen as f64, correct / seen as f64))
    }

    /// The search's complete state: training on from it gives the same results.
    pub fn checkpoint(&self) -> Result<OneShotCheckpoint, TrainError> {
        let state = self
            .step
            .state
            .iter()
            .zip(self.runner.state()?)
            .map(|(spec, t)| (spec.name.clone(), t))
            .collect();
        Ok(OneShotCheckpoint {
            supernet: self.supernet.clone(),
            config: self.cfg.clone(),
            data: crate::DataFingerprint::of(&self.data),
            epoch: self.epoch,
            step: self.global_step,
            arch: self.arch.clone(),
            history: self.history.clone(),
            decisions: self.decisions.clone(),
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_key() {
        OneShotConfig::default().validate().unwrap();
        type Spoil = fn(&mut OneShotConfig);
        let cases: [(&str, Spoil); 20] = [
            ("epochs", |c| c.epochs = 0),
            ("warmup_epochs", |c| c.warmup_epochs = c.epochs),
            ("arch_lr", |c| c.arch_lr = f64::NAN),
            ("arch_lr", |c| c.arch_lr = 0.0),
            ("concentration_l2", |c| c.concentration_l2 = -1e-3),
            ("arch_beta2", |c| c.arch_beta2 = 1.0),
            ("tau_max", |c| c.tau_max = c.tau_min / 2.0),
            ("beta_decay", |c| c.beta_decay = -0.5),
            // The cases' method is DrNAS, whose Dirichlet weights Beta-Decay does not fit.
            ("beta_decay", |c| c.beta_decay = 0.5),
            ("random_smoothing", |c| c.random_smoothing = f64::INFINITY),
            // Dirichlet and Gumbel samples are no softmax mixture to perturb.
            ("random_smoothing", |c| c.random_smoothing = 0.3),
            ("random_smoothing", |c| {
                c.method = Method::Gdas;
                c.random_smoothing = 0.3;
            }),
            ("selection", |c| {
                c.method = Method::Spos;
                c.selection = Selection::Perturbation;
            }),
            // SPOS has no architecture weights to rank options by.
            ("prune_to", |c| {
                c.method = Method::Spos;
                c.prune_to = 3;
            }),
            // Only GDAS samples a one-hot whose gradient it could set.
            ("gdas_gradient", |c| {
                c.gdas_gradient = GdasGradient::StraightThrough
            }),
            // The sandwich rule trains SPOS's uniform paths' ends; DARTS draws no paths.
            ("sandwich", |c| c.sandwich = Sandwich::Both),
            ("cost_penalty", |c| c.cost_penalty = -1.0),
            // SPOS learns no architecture weights for a cost to steer.
            ("cost_penalty", |c| {
                c.method = Method::Spos;
                c.cost_penalty = 0.5;
            }),
            // Pruning before `alpha` has learned anything would be a random pick.
            ("prune_after", |c| {
                c.prune_to = 3;
                c.warmup_epochs = 5;
                c.prune_after = Some(5);
            }),
            // Nor may the architecture stop learning at the pruning.
            ("prune_after", |c| {
                c.prune_to = 3;
                c.prune_after = Some(c.epochs);
            }),
        ];
        let fixed_alpha = OneShotConfig {
            arch_lr: 0.0,
            selection: Selection::Perturbation,
            ..OneShotConfig::default()
        };
        fixed_alpha.validate().unwrap();
        let beta_darts = OneShotConfig {
            beta_decay: 0.5,
            ..OneShotConfig::default()
        };
        beta_darts.validate().unwrap();
        for method in [Method::Darts, Method::DartsMinus] {
            let sdarts = OneShotConfig {
                method,
                random_smoothing: 0.3,
                ..OneShotConfig::default()
            };
            sdarts.validate().unwrap();
        }
        let straight_through = OneShotConfig {
            method: Method::Gdas,
            gdas_gradient: GdasGradient::StraightThrough,
            ..OneShotConfig::default()
        };
        straight_through.validate().unwrap();
        for (key, spoil) in cases {
            let mut c = OneShotConfig {
                method: Method::Drnas,
                ..OneShotConfig::default()
            };
            spoil(&mut c);
            match c.validate() {
                Err(TrainError::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
