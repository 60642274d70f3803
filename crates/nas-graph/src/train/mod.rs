//! The training-step graph: forward (training mode) + loss + backward + optimizer update as one
//! ONNX model of standard `ai.onnx` ops (opset [`OPSET`](crate::OPSET)), so a stock ONNX Runtime trains a
//! candidate by calling it once per batch and feeding its state outputs back as inputs.
//!
//! Graph inputs, in order: [`INPUT`] f32 `[B, ...graph.input]`, [`LABELS`] int64 `[B]`, [`LR`]
//! f32 `[]`, [`STEP`] f32 `[]` (1-based; AdamW bias correction), with
//! [`TrainOptions::sample_weights`] [`SAMPLE_WEIGHTS`] f32 `[B]`, then `state[i].input` for every
//! [`StateTensor`], then every [`DropoutMask`] input, then every [`MixInput`]'s weights.
//! Outputs: [`LOSS`] f32 `[]`, [`CORRECT`] f32 `[]`, then `state[i].output` in the same order,
//! then (with [`TrainOptions::emit_gradients`]) [`grad_name`]`(param)` for every trainable
//! tensor in state order, then every [`MixInput`]'s gradient. Bind a step's outputs to the
//! next step's inputs; never the same buffer as both.
//!
//! Semantics follow PyTorch:
//! - loss: mean softmax cross-entropy with label smoothing `s` (targets
//!   `(1 - s) onehot + s / K`); labels must lie in `[0, K)`. `correct`: argmax == label count.
//!   Optionally each sample's cross-entropy is multiplied by a weight fed with the batch
//!   ([`TrainOptions::sample_weights`]: `sum_i w_i CE_i / B`, REINFORCE's loss with advantages
//!   as weights and taken actions as labels), and the mean softmax entropy times
//!   [`TrainOptions::entropy_bonus`] is subtracted.
//! - BatchNorm normalizes with the batch mean and biased variance; running statistics are
//!   updated as `(1 - momentum) * running + momentum * batch`, the variance unbiased.
//! - Dropout multiplies by a mask the caller draws (0 or `1 / (1 - p)` per element).
//! - A supernet's mixed edge ([`Op::Mix`]) weighs its inputs by weights the caller feeds with
//!   every step and outputs the loss gradient of those weights; what they are (softmax of
//!   architecture logits, a sampled one-hot) and how they learn is the caller's business.
//! - Weight decay applies to conv, linear and dense weights and `Parameter` tensors only, not to
//!   biases, embedding or position tables, or BatchNorm/LayerNorm affine
//!   parameters: SGD adds `wd * w` to the gradient, AdamW decays decoupled (`w *= 1 - lr wd`).
//! - Sequence ops train with their inference form where it is differentiable as is; an
//!   `Embedding` passes no gradient to the token ids (its table's gradient scatters `dy` rows
//!   back with `ScatterND`), nor do masks (`PaddingMask`, a `TimePool`'s mask); a
//!   `Parameter` read by several nodes sums their gradients.
//! - Only nodes that reach the output are computed or carried in the state. A trainable tensor
//!   that receives no gradient (behind a `Zero`) is updated with a zero gradient. A bias or
//!   BatchNorm shift that a later training-mode BatchNorm cancels (a per-channel constant that
//!   only reaches BatchNorm through shift-preserving ops) has an exactly zero gradient, and zero
//!   is emitted rather than float32 rounding noise.

mod backward;
mod conditional;
mod conv_forms;
mod emit;
mod loss;
pub mod nchwc;
mod optimizer;
pub mod reference;
mod rules;
mod sequence;

use ndarray::{ArrayD, IxDyn};
use prost::Message;

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};
use crate::onnx::export::IR_VERSION;
use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, ValueInfoProto, tensor_proto::DataType,
};
use crate::weights::{ParamRole, Weights, parameter_specs};

use emit::Emitter;

/// Graph input: the batch, `[B, ...graph.input]`.
pub const INPUT: &str = "input";
/// Graph input: int64 class labels `[B]`; with [`TrainOptions::regression`], the f32
/// targets `[B]`.
pub const LABELS: &str = "labels";
/// Graph input: the learning rate, f32 scalar.
pub const LR: &str = "lr";
/// Graph input: the 1-based step count, f32 scalar (AdamW bias correction; unused by SGD).
pub const STEP: &str = "step";
/// Graph input with [`TrainOptions::sample_weights`]: f32 `[B]`, each sample's loss weight.
pub const SAMPLE_WEIGHTS: &str = "sample_weights";
/// Graph output: the mean loss, f32 scalar.
pub const LOSS: &str = "loss";
/// Graph output: how many samples of the batch the network classified right, f32 scalar;
/// with [`TrainOptions::regression`], the sum of the batch's absolute errors.
pub const CORRECT: &str = "correct";

/// The graph output holding the loss gradient of a trainable tensor (`grad:<param>`).
pub fn grad_name(param: &str) -> String {
    format!("grad:{param}")
}

fn next_name(state: &str) -> String {
    format!("next:{state}")
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.SGD` (dampening 0); `momentum = 0` keeps no buffer.
    Sgd { momentum: f32, nesterov: bool },
    /// `torch.optim.AdamW` (amsgrad off).
    AdamW { beta1: f32, beta2: f32, eps: f32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Fixed batch size, or `None` for a dynamic batch.
    pub batch: Option<usize>,
    pub optimizer: Optimizer,
    /// Conv, linear and dense weights and `Parameter` tensors only ([`ParamRole::Weight`]).
    /// SGD: L2 added to the gradient; AdamW: decoupled.
    pub weight_decay: f32,
    /// In `[0, 1)`.
    pub label_smoothing: f32,
    /// Also output [`grad_name`]`(param)` for every trainable tensor.
    pub emit_gradients: bool,
    /// Trainable tensors (by name, e.g. `n7.scale`) the step leaves as they are: no update,
    /// no weight decay, optimizer buffers unchanged (e.g. BatchNorm without affine
    /// parameters in a supernet). Unknown names are an error.
    pub frozen: Vec<String>,
    /// Wrap each operation a mixed edge owns in ONNX `If`s, so that a step whose weight for
    /// it is exactly zero does not compute it (one-hot weights then cost one path, not the
    /// whole supernet): its parameters get a zero gradient, its BatchNorm running statistics
    /// stay, its mixing weight's gradient is zero. Off: every operation runs. No effect on
    /// graphs without [`Op::Mix`]; the `If`s cost, so leave it off when no weight is zero.
    pub conditional_mix: bool,
    /// Take a [`SAMPLE_WEIGHTS`] input `[B]` and weigh each sample's cross-entropy by it:
    /// loss `= sum_i w_i CE_i / B` (any sign; with advantages as weights and the actions taken
    /// as labels, the REINFORCE policy-gradient loss). Off: no such input, every weight 1.
    pub sample_weights: bool,
    /// Subtract `entropy_bonus` times the mean entropy of the softmax from the loss (an
    /// exploration bonus for policies); >= 0, 0 leaves the term out.
    pub entropy_bonus: f32,
    /// Run dense and depthwise convs (not 1x1) and stride-1 input gradients on ONNX Runtime's
    /// blocked-layout CPU kernels (domain [`nchwc::DOMAIN`]) with this block size, which must
    /// be the running ONNX Runtime's (ask it with [`nchwc::probe_model`]); a wrong one gives
    /// wrong convs. Only for ONNX Runtime's CPU provider; `None` (the default): standard ops.
    pub nchwc_block: Option<usize>,
    /// Regression: the network's one output `[1]` predicts the f32 [`LABELS`] and the loss is
    /// the mean squared error (no label smoothing, sample weights or entropy bonus).
    pub regression: bool,
}

impl Default for TrainOptions {
    /// Dynamic batch, SGD with momentum 0.9, no weight decay, no smoothing, no gradients.
    fn default() -> Self {
        TrainOptions {
            batch: None,
            optimizer: Optimizer::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            weight_decay: 0.0,
            label_smoothing: 0.0,
            emit_gradients: false,
            frozen: Vec::new(),
            conditional_mix: true,
            sample_weights: false,
            entropy_bonus: 0.0,
            nchwc_block: None,
            regression: false,
        }
    }
}

/// What a state tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// A trainable tensor (conv/linear weight or bias, BatchNorm scale or shift).
    Param(ParamRole),
    /// SGD momentum buffer.
    Momentum,
    /// AdamW first moment.
    AdamM,
    /// AdamW second moment.
    AdamV,
    /// BatchNorm running mean.
    RunningMean,
    /// BatchNorm running variance.
    RunningVar,
}

/// One tensor carried from one step to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTensor {
    /// `n3.weight`, `n3.weight.momentum`, `n3.weight.adam_m`, `n5.mean`, ...
    pub name: String,
    /// Graph input holding the current value.
    pub input: String,
    /// Graph output holding the value after this step.
    pub output: String,
    pub shape: Vec<usize>,
    pub kind: StateKind,
    /// The weight name it belongs to (its own name for params and running statistics).
    pub param: String,
}

/// A dropout mask the caller fills every step: `[B, ...shape]`, each element 0 (dropped) or
/// `1 / (1 - p)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DropoutMask {
    pub input: String,
    /// Per sample (batch axis excluded).
    pub shape: Vec<usize>,
    pub p: f32,
}

/// The mixing weights of a live [`Op::Mix`] node: fed as `input` (`[len]`, one weight per
/// node input) with every step; the step outputs `grad` (`[len + 1]`): the loss gradient of
/// each weight, then that of a constant added to the node's output (the sum of its output
/// gradient).
#[derive(Clone, Debug, PartialEq)]
pub struct MixInput {
    pub node: NodeId,
    pub input: String,
    pub grad: String,
    pub len: usize,
}

#[derive(Clone, Debug)]
pub struct TrainingStep {
    /// Serialized ONNX `ModelProto`, opset [`OPSET`](crate::OPSET).
    pub model: Vec<u8>,
    /// Every tensor carried between steps, in graph input (and output) order.
    pub state: Vec<StateTensor>,
    /// Inputs after the state, in order.
    pub dropout_masks: Vec<DropoutMask>,
    /// Inputs after the dropout masks, in order (ascending node id).
    pub mixes: Vec<MixInput>,
}

fn bad_option(reason: String) -> GraphError {
    GraphError::Export(format!("training options: {reason}"))
}

fn check_options(o: &TrainOptions) -> Result<(), GraphError> {
    if o.batch == Some(0) {
        return Err(bad_option("a fixed batch size must be positive".into()));
    }
    if !(0.0..1.0).contains(&o.label_smoothing) {
        return Err(bad_option(format!(
            "label_smoothing {} must be in [0, 1)",
            o.label_smoothing
        )));
    }
    if !(o.entropy_bonus.is_finite() && o.entropy_bonus >= 0.0) {
        return Err(bad_option(format!(
            "entropy_bonus {} must be finite and >= 0",
            o.entropy_bonus
        )));
    }
    if o.regression && (o.label_smoothing > 0.0 || o.sample_weights || o.entropy_bonus > 0.0) {
        return Err(bad_option(
            "regression takes no label_smoothing, sample_weights or entropy_bonus (they belong \
             to the classification loss)"
                .into(),
        ));
    }
    if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
        return Err(bad_option(format!(
            "weight_decay {} must be finite and >= 0",
            o.weight_decay
        )));
    }
    if let Some(b) = o.nchwc_block.filter(|b| !nchwc::BLOCK_SIZES.contains(b)) {
        return Err(bad_option(format!(
            "nchwc_block {b} is no block size of ONNX Runtime's NCHWc kernels ({:?}); \
             take the one its probe model reports, or None for standard ops",
            nchwc::BLOCK_SIZES
        )));
    }
    match o.optimizer {
        Optimizer::Sgd { momentum, nesterov } => {
            if !(momentum.is_finite() && momentum >= 0.0) {
                return Err(bad_option(format!(
                    "SGD momentum {momentum} must be finite and >= 0"
                )));
            }
            if nesterov && momentum == 0.0 {
                return Err(bad_option("Nesterov SGD needs a momentum > 0".into()));
            }
        }
        Optimizer::AdamW { beta1, beta2, eps } => {
            if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                return Err(bad_option(format!(
                    "AdamW betas ({beta1}, {beta2}) must be in [0, 1)"
                )));
            }
            if !(eps.is_finite() && eps > 0.0) {
                return Err(bad_option(format!("AdamW eps {eps} must be positive")));
            }
        }
    }
    Ok(())
}

/// Optimizer buffers of one trainable tensor: `(kind, name suffix)`.
fn buffer_kinds(opt: &Optimizer) -> &'static [(StateKind, &'static str)] {
    match opt {
        Optimizer::Sgd { momentum, .. } if *momentum == 0.0 => &[],
        Optimizer::Sgd { .. } => &[(StateKind::Momentum, "momentum")],
        Optimizer::AdamW { .. } => &[(StateKind::AdamM, "adam_m"), (StateKind::AdamV, "adam_v")],
    }
}

/// The state of a graph under `options`: live params and running statistics in
/// [`parameter_specs`] order, then optimizer buffers in the same order.
fn state_layout(graph: &Graph, options: &TrainOptions) -> Result<Vec<StateTensor>, GraphError> {
    let live = graph.reachable();
    let specs: Vec<_> = parameter_specs(graph)?
        .into_iter()
        .filter(|s| live.binary_search(&s.node).is_ok())
        .collect();
    let tensor = |name: String, shape: &[usize], kind: StateKind, param: &str| StateTensor {
        input: name.clone(),
        output: next_name(&name),
        name,
        shape: shape.to_vec(),
        kind,
        param: param.to_string(),
    };
    let mut state: Vec<StateTensor> = specs
        .iter()
        .map(|s| {
            let kind = match s.role {
                ParamRole::BnMean => StateKind::RunningMean,
                ParamRole::BnVar => StateKind::RunningVar,
                role => StateKind::Param(role),
            };
            tensor(s.name.clone(), &s.shape, kind, &s.name)
        })
        .collect();
    for s in specs.iter().filter(|s| s.role.trainable()) {
        for (kind, suffix) in buffer_kinds(&options.optimizer) {
            state.push(tensor(
                format!("{}.{suffix}", s.name),
                &s.shape,
                *kind,
                &s.name,
            ));
        }
    }
    Ok(state)
}

/// Whether adding a per-channel constant to node `id`'s value leaves the loss unchanged: every
/// consumer normalizes it away (BatchNorm in training mode), ignores it (Zero), or turns it into
/// another constant per channel (or feature) for consumers of the same kind. Such a shift's
/// gradient (a bias, a BatchNorm shift) is exactly zero.
fn shift_absorbed(graph: &Graph, live: &[NodeId]) -> Vec<bool> {
    let n = graph.nodes.len();
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for &id in live {
        for &i in &graph.nodes[id].inputs {
            consumers[i].push(id);
        }
    }
    let mut absorbed = vec![false; n];
    for &id in live.iter().rev() {
        absorbed[id] = id != graph.output
            && !consumers[id].is_empty()
            && consumers[id].iter().all(|&c| match &graph.nodes[c].op {
                Op::BatchNorm { .. } | Op::Zero => true,
                // Constant in, constant out (padding would make borders differ).
                Op::Identity
                | Op::Add
                | Op::Concat
                | Op::MaxPool { .. }
                | Op::GlobalAvgPool
                | Op::Flatten
                | Op::Linear { .. }
                | Op::Mix
                | Op::AvgPool {
                    count_include_pad: false,
                    ..
                } => absorbed[c],
                Op::AvgPool { padding, .. } | Op::Conv2d { padding, .. } => {
                    *padding == [0, 0] && absorbed[c]
                }
                _ => false,
            });
    }
    absorbed
}

/// The forward half of a training step: the network in training mode and its loss.
struct Forward {
    e: Emitter,
    shapes: Vec<Vec<usize>>,
    live: Vec<NodeId>,
    state: Vec<StateTensor>,
    saved: SavedByNode,
    masks: Vec<DropoutMask>,
    mixes: Vec<MixInput>,
    emitted: conditional::Emitted,
    /// The loss gradient of the logits.
    dlogits: String,
}

fn forward(graph: &Graph, options: &TrainOptions) -> Result<Forward, GraphError> {
    let shapes = graph.shapes()?;
    check_options(options)?;
    let out_shape = &shapes[graph.output];
    if out_shape.len() != 1 {
        return Err(GraphError::Export(format!(
            "training needs [classes] logits, the output node {} has shape {out_shape:?}",
            graph.output
        )));
    }
    let classes = out_shape[0];
    if options.regression && classes != 1 {
        return Err(GraphError::Export(format!(
            "regression needs one output, the prediction; the output node {} has shape {out_shape:?}",
            graph.output
        )));
    }
    let live = graph.reachable();
    let state = state_layout(graph, options)?;
    if let Some(name) = options.frozen.iter().find(|f| {
        !state
            .iter()
            .any(|t| t.name == **f && matches!(t.kind, StateKind::Param(_)))
    }) {
        return Err(bad_option(format!(
            "frozen tensor `{name}` is no trainable tensor of the network"
        )));
    }
    let mut e = Emitter::new(options.batch);
    e.nchwc_block = options.nchwc_block;
    let mut emitted = conditional::Emitted::new(graph.nodes.len());
    let (saved, masks, mixes) = emit_forward(&mut e, graph, &shapes, &live, &mut emitted)?;
    let dlogits = if options.regression {
        loss::emit_squared_error(&mut e, &rules::value(graph.output))
    } else {
        loss::emit(
            &mut e,
            &rules::value(graph.output),
            classes,
            loss::LossTerms {
                smoothing: options.label_smoothing,
                weighted: options.sample_weights,
                entropy_bonus: options.entropy_bonus,
            },
        )
    };
    Ok(Forward {
        e,
        shapes,
        live,
        state,
        saved,
        masks,
        mixes,
        emitted,
        dlogits,
    })
}

/// The loss of one batch in training mode (BatchNorm on the batch's statistics, dropout by
/// the given masks), without backward or updates: the forward half of [`training_step`], at
/// a fraction of its cost, for scoring weights without changing them. Inputs: those of the
/// training step for `options` but [`LR`] and [`STEP`], state in the same order (state
/// tensors the forward does not read, e.g. optimizer buffers, are inputs all the same, so a
/// training step's state feeds it as it is); outputs [`LOSS`] and [`CORRECT`]. With
/// `conditional_mix`, operations weighed by exactly zero are skipped as in the training step.
pub fn loss_step(graph: &Graph, options: &TrainOptions) -> Result<Vec<u8>, GraphError> {
    let Forward {
        mut e,
        shapes,
        live,
        state,
        masks,
        mixes,
        emitted,
        ..
    } = forward(graph, options)?;
    let (mut inputs, mut outputs) = interface(graph, options, &state, &masks, &mixes, &[]);
    inputs.retain(|i| i.name != LR && i.name != STEP);
    outputs.retain(|o| o.name == LOSS || o.name == CORRECT);
    if options.conditional_mix {
        // Only forward groups: no backward was emitted, so those groups are empty.
        let wrap = Wrap::new(&live, &shapes, &emitted, &state);
        wrap_exclusive_branches(&mut e, graph, wrap, &inputs, &outputs)?;
    }
    // The loss gradient and the running statistics' updates feed no output.
    let keep: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
    e.b.nodes = live_nodes(std::mem::take(&mut e.b.nodes), &keep);
    Ok(encode_model(e, inputs, outputs))
}

/// What wrapping a step's exclusive mixed-edge branches in `If`s needs besides the graph.
struct Wrap<'a> {
    live: &'a [NodeId],
    shapes: &'a [Vec<usize>],
    emitted: &'a conditional::Emitted,
    state: &'a [StateTensor],
    /// Values a skipped branch gives as zeros of full shape (parameter gradients).
    zeros: std::collections::HashMap<String, Vec<usize>>,
}

impl<'a> Wrap<'a> {
    /// No value given as zeros (a forward-only step has no parameter gradients).
    fn new(
        live: &'a [NodeId],
        shapes: &'a [Vec<usize>],
        emitted: &'a conditional::Emitted,
        state: &'a [StateTensor],
    ) -> Self {
        Wrap {
            live,
            shapes,
            emitted,
            state,
            zeros: Default::default(),
        }
    }
}

/// Wraps every branch a mixed edge owns exclusively in `If`s (`conditional_mix`).
fn wrap_exclusive_branches(
    e: &mut Emitter,
    graph: &Graph,
    w: Wrap<'_>,
    inputs: &[ValueInfoProto],
    outputs: &[ValueInfoProto],
) -> Result<(), GraphError> {
    let branches = conditional::exclusive_branches(graph, w.live);
    if branches.is_empty() {
        return Ok(());
    }
    let groups = branch_groups(e, graph, w.shapes, &branches, w.emitted);
    let nodes = std::mem::take(&mut e.b.nodes);
    e.b.nodes = conditional::wrap(
        nodes,
        &groups,
        &conditional::Interface {
            inputs,
            outputs,
            initializers: &e.b.initializers,
            carried: w
                .state
                .iter()
                .map(|t| (t.output.clone(), t.input.clone()))
                .collect(),
            zeros: w.zeros,
        },
    )?;
    Ok(())
}

/// The nodes some of `outputs` depends on, in their order.
fn live_nodes(nodes: Vec<NodeProto>, outputs: &[&str]) -> Vec<NodeProto> {
    let mut needed: std::collections::HashSet<String> =
        outputs.iter().map(|s| s.to_string()).collect();
    let mut keep = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            // What an `If`'s branches read from outside counts too.
            needed.extend(conditional::reads(n));
        }
    }
    nodes
        .into_iter()
        .zip(keep)
        .filter_map(|(n, k)| k.then_some(n))
        .collect()
}

/// Builds the training-step model of `graph`.
pub fn training_step(graph: &Graph, options: &TrainOptions) -> Result<TrainingStep, GraphError> {
    let Forward {
        mut e,
        shapes,
        live,
        state,
        saved,
        masks,
        mixes,
        mut emitted,
        dlogits,
    } = forward(graph, options)?;
    let (grads, mix_grads) =
        emit_backward(&mut e, graph, &shapes, &live, &saved, dlogits, &mut emitted);
    let grad_outputs = emit_updates(&mut e, options, &state, &grads);
    for m in &mixes {
        // Zero when no gradient reaches the edge (it only feeds a Zero).
        let g = match mix_grads.iter().find(|(id, _)| *id == m.node) {
            Some((_, g)) => g.clone(),
            None => e.zeros(&[m.len + 1]),
        };
        e.op_to("Identity", &[&g], &m.grad, vec![]);
    }
    let (inputs, outputs) = interface(graph, options, &state, &masks, &mixes, &grad_outputs);
    if options.conditional_mix {
        let wrap = Wrap {
            zeros: grads
                .iter()
                .filter_map(|(param, g)| {
                    let t = state.iter().find(|t| t.name == *param)?;
                    Some((g.clone(), t.shape.clone()))
                })
                .collect(),
            ..Wrap::new(&live, &shapes, &emitted, &state)
        };
        wrap_exclusive_branches(&mut e, graph, wrap, &inputs, &outputs)?;
    }
    Ok(TrainingStep {
        model: encode_model(e, inputs, outputs),
        state,
        dropout_masks: masks,
        mixes,
    })
}

/// Two groups per branch (see [`conditional`]): its forward and its backward, both run when
/// the branch's weight is not zero. The optimizer updates stay outside: a skipped operation's
/// parameters are updated with a zero gradient.
fn branch_groups(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    branches: &[conditional::Branch],
    emitted: &conditional::Emitted,
) -> Vec<conditional::Group> {
    let zero = e.scalar(0.0);
    let mut groups = Vec::new();
    for b in branches {
        let index = e.ints(&[b.input as i64]);
        let weight = e.op(
            "Gather",
            &[&format!("mix:n{}", b.mix), &index],
            vec![AttributeProto::int("axis", 0)],
        );
        let is_zero = e.op("Equal", &[&weight, &zero], vec![]);
        let cond = e.op("Not", &[&is_zero], vec![]);
        let forward = b.nodes.iter().flat_map(|&n| emitted.forward[n].clone());
        groups.push(conditional::Group {
            cond: cond.clone(),
            members: forward.collect(),
        });
        let backward = b.nodes.iter().flat_map(|&n| emitted.backward[n].clone());
        groups.push(conditional::Group {
            cond,
            members: backward.collect(),
        });
    }
    // A mixed sum whose every computed input may be skipped could come out as a scalar zero:
    // give it the edge's shape.
    let mut mixes: Vec<NodeId> = branches.iter().map(|b| b.mix).collect();
    mixes.dedup();
    for mix in mixes {
        let node = &graph.nodes[mix];
        let all_wrapped = node.inputs.iter().enumerate().all(|(k, &i)| {
            graph.nodes[i].op == Op::Zero || branches.iter().any(|b| b.mix == mix && b.input == k)
        });
        if !all_wrapped {
            continue;
        }
        let out = rules::value(mix);
        let partial = format!("{out}:partial");
        let Some(last) = e.b.nodes[emitted.forward[mix].clone()]
            .iter_mut()
            .find(|n| n.output.first() == Some(&out))
        else {
            continue;
        };
        last.output[0] = partial.clone();
        last.name = partial.clone();
        let dims: Vec<i64> = shapes[mix].iter().map(|&d| d as i64).collect();
        let shape = match e.batch {
            Some(b) => e.ints(&std::iter::once(b as i64).chain(dims).collect::<Vec<_>>()),
            None => {
                let batch = e.op(
                    "Shape",
                    &[INPUT],
                    vec![
                        AttributeProto::int("start", 0),
                        AttributeProto::int("end", 1),
                    ],
                );
                let rest = e.ints(&dims);
                e.op(
                    "Concat",
                    &[&batch, &rest],
                    vec![AttributeProto::int("axis", 0)],
                )
            }
        };
        e.op_to("Expand", &[&partial, &shape], &out, vec![]);
    }
    groups
}

/// What a node's backward needs, per node.
type SavedByNode = Vec<Option<rules::Saved>>;

/// `(param name, gradient)` pairs and `(mixed edge, gradient of its weights)` pairs.
type Gradients = (Vec<(String, String)>, Vec<(NodeId, String)>);

/// Emits the training-mode forward of every live node; returns what each node's backward
/// needs, the dropout masks and the mixing weights the caller feeds.
fn emit_forward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    live: &[NodeId],
    emitted: &mut conditional::Emitted,
) -> Result<(SavedByNode, Vec<DropoutMask>, Vec<MixInput>), GraphError> {
    let mut masks = Vec::new();
    let mut mixes = Vec::new();
    let mut saved: Vec<Option<rules::Saved>> = (0..graph.nodes.len()).map(|_| None).collect();
    for &id in live.iter().filter(|&&id| id != 0) {
        let op = &graph.nodes[id].op;
        let fed = match op {
            Op::Dropout { p } => {
                masks.push(DropoutMask {
                    input: format!("mask:n{id}"),
                    shape: shapes[id].clone(),
                    p: *p,
                });
                masks.last().map(|m| m.input.clone())
            }
            Op::Mix => {
                let input = format!("mix:n{id}");
                mixes.push(MixInput {
                    node: id,
                    grad: grad_name(&input),
                    input,
                    len: graph.nodes[id].inputs.len(),
                });
                mixes.last().map(|m| m.input.clone())
            }
            _ => None,
        };
        let running = matches!(op, Op::BatchNorm { .. }).then(|| rules::RunningOutputs {
            mean: next_name(&format!("n{id}.mean")),
            var: next_name(&format!("n{id}.var")),
        });
        let start = e.b.nodes.len();
        saved[id] = Some(rules::forward(
            e,
            graph,
            shapes,
            id,
            fed.as_deref(),
            running.as_ref(),
        )?);
        emitted.forward[id] = start..e.b.nodes.len();
    }
    Ok((saved, masks, mixes))
}

/// Which live nodes' values depend on a trainable tensor (only they need gradients).
fn requires_grad(graph: &Graph, live: &[NodeId]) -> Vec<bool> {
    let mut requires = vec![false; graph.nodes.len()];
    for &id in live {
        let node = &graph.nodes[id];
        requires[id] = match node.op {
            Op::Input | Op::Zero | Op::PaddingMask => false,
            // A mixed edge's weights want a gradient, whatever its inputs.
            Op::Conv2d { .. }
            | Op::Linear { .. }
            | Op::BatchNorm { .. }
            | Op::Mix
            | Op::Embedding { .. }
            | Op::Dense { .. }
            | Op::LayerNorm { .. }
            | Op::Parameter { .. }
            | Op::Conv1d { .. }
            | Op::PositionalEncoding { learned: true } => true,
            _ => node.inputs.iter().any(|&i| requires[i]),
        };
    }
    requires
}

/// Emits the backward pass from the logits' gradient `dlogits`, in reverse topological order
/// (a value used several times sums its gradients); returns `(param name, gradient)` pairs
/// and `(mixed edge, gradient of its weights)` pairs.
fn emit_backward(
    e: &mut Emitter,
    graph: &Graph,
    shapes: &[Vec<usize>],
    live: &[NodeId],
    saved: &[Option<rules::Saved>],
    dlogits: String,
    emitted: &mut conditional::Emitted,
) -> Gradients {
    let requires = requires_grad(graph, live);
    let absorbed = shift_absorbed(graph, live);
    let mut contributions: Vec<Vec<String>> = vec![Vec::new(); graph.nodes.len()];
    contributions[graph.output].push(dlogits);
    let mut grads: Vec<(String, String)> = Vec::new();
    let mut mix_grads = Vec::new();
    for &id in live.iter().rev() {
        if !requires[id] || contributions[id].is_empty() {
            continue;
        }
        let start = e.b.nodes.len();
        let parts = std::mem::take(&mut contributions[id]);
        let dy = match parts.as_slice() {
            [one] => one.clone(),
            // Pairwise Adds: ONNX Runtime's Sum of three or more tensors is 2-3x slower than
            // the Adds it replaces.
            [first, rest @ ..] => rest.iter().fold(first.clone(), |acc, g| e.add(&acc, g)),
            [] => unreachable!("skipped above"),
        };
        let node = &graph.nodes[id];
        let need: Vec<bool> = node.inputs.iter().map(|&i| requires[i]).collect();
        let saved = saved[id].as_ref().expect("live nodes have a forward");
        let wanted = backward::Wanted {
            inputs: &need,
            bias: !absorbed[id],
        };
        let bw = backward::backward(e, graph, shapes, id, &dy, saved, &wanted);
        for (slot, g) in bw.inputs.into_iter().enumerate() {
            if let Some(g) = g {
                contributions[node.inputs[slot]].push(g);
            }
        }
        grads.extend(bw.params);
        mix_grads.extend(bw.mix.map(|g| (id, g)));
        emitted.backward[id] = start..e.b.nodes.len();
    }
    (grads, mix_grads)
}

/// Emits the optimizer update of every trainable tensor (a zero gradient where the backward
/// produced none); returns the gradient outputs (name, shape) when they are wanted.
fn emit_updates(
    e: &mut Emitter,
    options: &TrainOptions,
    state: &[StateTensor],
    grads: &[(String, String)],
) -> Vec<(String, Vec<usize>)> {
    let adam = match options.optimizer {
        Optimizer::AdamW { beta1, beta2, .. } => Some(optimizer::adam_scalars(
            e,
            beta1,
            beta2,
            options.weight_decay,
        )),
        Optimizer::Sgd { .. } => None,
    };
    let mut grad_outputs = Vec::new();
    for (i, t) in state.iter().enumerate() {
        let StateKind::Param(role) = t.kind else {
            continue;
        };
        if options.frozen.contains(&t.name) {
            for s in state.iter().filter(|s| s.param == t.name) {
                e.op_to("Identity", &[&s.input], &s.output, vec![]);
            }
            continue;
        }
        let grad = match grads.iter().find(|(p, _)| *p == t.name) {
            Some((_, g)) => g.clone(),
            None => e.zeros(&t.shape),
        };
        let buffers: Vec<(String, String)> = state[i + 1..]
            .iter()
            .chain(&state[..i])
            .filter(|b| b.param == t.name && !matches!(b.kind, StateKind::Param(_)))
            .map(|b| (b.input.clone(), b.output.clone()))
            .collect();
        let u = optimizer::Update {
            param: &t.input,
            next: &t.output,
            grad: &grad,
            decay: role == ParamRole::Weight,
            buffers: &buffers,
        };
        match (options.optimizer, &adam) {
            (Optimizer::Sgd { momentum, nesterov }, _) => {
                optimizer::sgd(e, momentum, nesterov, options.weight_decay, &u)
            }
            (Optimizer::AdamW { beta1, beta2, eps }, Some(s)) => {
                optimizer::adamw(e, beta1, beta2, eps, options.weight_decay, s, &u)
            }
            (Optimizer::AdamW { .. }, None) => unreachable!("AdamW scalars exist"),
        }
        if options.emit_gradients {
            let name = grad_name(&t.name);
            e.op_to("Identity", &[&grad], &name, vec![]);
            grad_outputs.push((name, t.shape.clone()));
        }
    }
    grad_outputs
}

/// The model's graph inputs and outputs, in the order the module documentation gives.
fn interface(
    graph: &Graph,
    options: &TrainOptions,
    state: &[StateTensor],
    masks: &[DropoutMask],
    mixes: &[MixInput],
    grad_outputs: &[(String, Vec<usize>)],
) -> (Vec<ValueInfoProto>, Vec<ValueInfoProto>) {
    let batch = || -> Result<i64, String> {
        options
            .batch
            .map(|b| b as i64)
            .ok_or_else(|| crate::onnx::export::BATCH_DIM.to_string())
    };
    let fixed = |shape: &[usize]| -> Vec<Result<i64, String>> {
        shape.iter().map(|&d| Ok(d as i64)).collect()
    };
    let batched = |shape: &[usize]| -> Vec<Result<i64, String>> {
        std::iter::once(batch()).chain(fixed(shape)).collect()
    };
    let f32v = |name: &str, dims: Vec<Result<i64, String>>| {
        ValueInfoProto::tensor(name, DataType::Float, &dims)
    };
    let mut inputs = vec![
        f32v(INPUT, batched(&graph.input)),
        if options.regression {
            f32v(LABELS, vec![batch()])
        } else {
            ValueInfoProto::tensor(LABELS, DataType::Int64, &[batch()])
        },
        f32v(LR, vec![]),
        f32v(STEP, vec![]),
    ];
    if options.sample_weights {
        inputs.push(f32v(SAMPLE_WEIGHTS, vec![batch()]));
    }
    inputs.extend(state.iter().map(|t| f32v(&t.input, fixed(&t.shape))));
    inputs.extend(masks.iter().map(|m| f32v(&m.input, batched(&m.shape))));
    inputs.extend(mixes.iter().map(|m| f32v(&m.input, fixed(&[m.len]))));
    let mut outputs = vec![f32v(LOSS, vec![]), f32v(CORRECT, vec![])];
    outputs.extend(state.iter().map(|t| f32v(&t.output, fixed(&t.shape))));
    outputs.extend(grad_outputs.iter().map(|(n, s)| f32v(n, fixed(s))));
    outputs.extend(mixes.iter().map(|m| f32v(&m.grad, fixed(&[m.len + 1]))));
    (inputs, outputs)
}

/// The emitted nodes and the interface as a serialized opset-[`OPSET`](crate::OPSET) `ModelProto`.
fn encode_model(e: Emitter, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> Vec<u8> {
    let nchwc = nchwc::uses_domain(&e.b.nodes);
    let graph_proto = GraphProto {
        node: e.b.nodes,
        name: "nas-train".into(),
        initializer: e.b.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: nchwc::opset_imports(nchwc),
        producer_name: "nas-graph".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph_proto),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// The first step's state: params and BatchNorm statistics from `weights` (shapes checked),
/// optimizer buffers zero. In `step.state` order.
pub fn initial_state(
    step: &TrainingStep,
    weights: &Weights,
) -> Result<Vec<ArrayD<f32>>, GraphError> {
    step.state
        .iter()
        .map(|t| match t.kind {
            StateKind::Param(_) | StateKind::RunningMean | StateKind::RunningVar => {
                let w = weights.require(&t.param)?;
                if w.shape() != t.shape.as_slice() {
                    return Err(GraphError::WeightShape {
                        name: t.param.clone(),
                        expected: t.shape.clone(),
                        found: w.shape().to_vec(),
                    });
                }
                Ok(w.clone())
            }
            StateKind::Momentum | StateKind::AdamM | StateKind::AdamV => {
                Ok(ArrayD::zeros(IxDyn(&t.shape)))
            }
        })
        .collect()
}

/// The weights (params and BatchNorm statistics of the nodes that reach the output) held in a
/// state, e.g. after the last step, for [`crate::export_inference`].
pub fn weights_from_state(
    step: &TrainingStep,
    state: &[ArrayD<f32>],
) -> Result<Weights, GraphError> {
    if state.len() != step.state.len() {
        return Err(GraphError::Export(format!(
            "the state has {} tensors, the training step expects {}",
            state.len(),
            step.state.len()
        )));
    }
    let mut weights = Weights::new();
    for (t, v) in step.state.iter().zip(state) {
        if v.shape() != t.shape.as_slice() {
            return Err(GraphError::WeightShape {
                name: t.name.clone(),
                expected: t.shape.clone(),
                found: v.shape().to_vec(),
            });
        }
        if matches!(
            t.kind,
            StateKind::Param(_) | StateKind::RunningMean | StateKind::RunningVar
        ) {
            weights.insert(t.param.clone(), v.clone());
        }
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;
    use crate::onnx::proto::ModelProto;
    use crate::testing::random_graph;

    fn net() -> Graph {
        let mut b = GraphBuilder::new(&[3, 6, 6]);
        let c = b.conv(0, 4, 3, 1, 1);
        let n = b.batch_norm(c);
        let r = b.add(Op::Relu, &[n]);
        let _dead = b.add(
            Op::Conv2d {
                out_channels: 2,
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
                bias: true,
            },
            &[r],
        );
        let d = b.add(Op::Dropout { p: 0.5 }, &[r]);
        let g = b.add(Op::GlobalAvgPool, &[d]);
        let l = b.add(
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[g],
        );
        b.finish(l)
    }

    fn adamw() -> Optimizer {
        Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    #[test]
    fn state_layout_and_interface() {
        let g = net();
        let options = TrainOptions {
            optimizer: adamw(),
            emit_gradients: true,
            ..TrainOptions::default()
        };
        let step = training_step(&g, &options).unwrap();
        let names: Vec<&str> = step.state.iter().map(|t| t.name.as_str()).collect();
        // The dead conv (node 4) carries nothing.
        assert_eq!(
            names,
            [
                "n1.weight",
                "n2.scale",
                "n2.bias",
                "n2.mean",
                "n2.var",
                "n7.weight",
                "n7.bias",
                "n1.weight.adam_m",
                "n1.weight.adam_v",
                "n2.scale.adam_m",
                "n2.scale.adam_v",
                "n2.bias.adam_m",
                "n2.bias.adam_v",
                "n7.weight.adam_m",
                "n7.weight.adam_v",
                "n7.bias.adam_m",
                "n7.bias.adam_v",
            ]
        );
        assert_eq!(step.state[3].kind, StateKind::RunningMean);
        assert_eq!(step.state[0].kind, StateKind::Param(ParamRole::Weight));
        assert_eq!(step.state[8].kind, StateKind::AdamV);
        assert_eq!(step.state[8].param, "n1.weight");
        assert_eq!(step.state[8].output, "next:n1.weight.adam_v");
        assert_eq!(
            step.dropout_masks,
            [DropoutMask {
                input: "mask:n5".into(),
                shape: vec![4, 6, 6],
                p: 0.5
            }]
        );

        let m = ModelProto::decode(step.model.as_slice()).unwrap();
        assert_eq!(m.opset_import[0].version, 17);
        let gp = m.graph.unwrap();
        let inputs: Vec<&str> = gp.input.iter().map(|v| v.name.as_str()).collect();
        let mut want = vec![INPUT, LABELS, LR, STEP];
        want.extend(names.iter().copied());
        want.push("mask:n5");
        assert_eq!(inputs, want);
        let outputs: Vec<String> = gp.output.iter().map(|v| v.name.clone()).collect();
        let mut want: Vec<String> = vec![LOSS.into(), CORRECT.into()];
        want.extend(step.state.iter().map(|t| t.output.clone()));
        want.extend(
            step.state
                .iter()
                .filter(|t| matches!(t.kind, StateKind::Param(_)))
                .map(|t| grad_name(&t.name)),
        );
        assert_eq!(outputs, want);

        // Sample weights: one more input after the step count, nothing else changes.
        let weighted = TrainOptions {
            sample_weights: true,
            entropy_bonus: 0.01,
            ..options.clone()
        };
        let ws = training_step(&g, &weighted).unwrap();
        assert_eq!(ws.state, step.state);
        let wm = ModelProto::decode(ws.model.as_slice()).unwrap();
        let winputs: Vec<&str> = wm
            .graph
            .as_ref()
            .unwrap()
            .input
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(winputs[..5], [INPUT, LABELS, LR, STEP, SAMPLE_WEIGHTS]);
        assert_eq!(winputs.len(), inputs.len() + 1);

        let sgd = training_step(&g, &TrainOptions::default()).unwrap();
        assert_eq!(sgd.state.len(), 7 + 5);
        assert!(sgd.state[7..].iter().all(|t| t.kind == StateKind::Momentum));
        let plain = TrainOptions {
            optimizer: Optimizer::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            ..TrainOptions::default()
        };
        assert_eq!(training_step(&g, &plain).unwrap().state.len(), 7);
    }

    #[test]
    fn state_round_trip_and_errors() {
        let g = net();
        let step = training_step(&g, &TrainOptions::default()).unwrap();
        let w = Weights::he_init(&g, 3).unwrap();
        let state = initial_state(&step, &w).unwrap();
        assert!(state[7..].iter().all(|t| t.iter().all(|&v| v == 0.0)));
        let back = weights_from_state(&step, &state).unwrap();
        assert_eq!(back.len(), 7);
        for (name, t) in back.iter() {
            assert_eq!(Some(t), w.get(name));
        }
        let mut missing = w.clone();
        missing.remove("n2.var");
        assert_eq!(
            initial_state(&step, &missing),
            Err(GraphError::MissingWeight {
                name: "n2.var".into()
            })
        );
        assert!(weights_from_state(&step, &state[1..]).is_err());
        let mut wrong = state.clone();
        wrong[0] = ArrayD::zeros(IxDyn(&[1]));
        assert!(matches!(
            weights_from_state(&step, &wrong),
            Err(GraphError::WeightShape { .. })
        ));
    }

    #[test]
    fn bad_options_and_graphs_are_errors() {
        let g = net();
        let bad = |o: TrainOptions| training_step(&g, &o).unwrap_err().to_string();
        let d = TrainOptions::default;
        assert!(
            bad(TrainOptions {
                batch: Some(0),
                ..d()
            })
            .contains("batch")
        );
        assert!(
            bad(TrainOptions {
                label_smoothing: 1.0,
                ..d()
            })
            .contains("label_smoothing")
        );
        assert!(
            bad(TrainOptions {
                weight_decay: -1.0,
                ..d()
            })
            .contains("weight_decay")
        );
        assert!(
            bad(TrainOptions {
                entropy_bonus: -0.1,
                ..d()
            })
            .contains("entropy_bonus")
        );
        let nesterov0 = Optimizer::Sgd {
            momentum: 0.0,
            nesterov: true,
        };
        assert!(
            bad(TrainOptions {
                optimizer: nesterov0,
                ..d()
            })
            .contains("Nesterov")
        );
        let beta = Optimizer::AdamW {
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
        };
        assert!(
            bad(TrainOptions {
                optimizer: beta,
                ..d()
            })
            .contains("betas")
        );

        // Logits must be [classes]; batch 1 without spatial extent cannot train BatchNorm.
        let mut b = GraphBuilder::new(&[2, 3, 3]);
        let c = b.conv(0, 2, 3, 1, 1);
        let conv_out = b.finish(c);
        assert!(
            training_step(&conv_out, &d())
                .unwrap_err()
                .to_string()
                .contains("[classes] logits")
        );
        let mut b = GraphBuilder::new(&[4]);
        let n = b.batch_norm(0);
        let features = b.finish(n);
        let one = TrainOptions {
            batch: Some(1),
            ..d()
        };
        assert!(
            training_step(&features, &one)
                .unwrap_err()
                .to_string()
                .contains("more than one value per channel")
        );
    }

    /// Every op is a standard `ai.onnx` op the CPU provider has float32 kernels for.
    #[test]
    fn only_standard_ops() {
        const ALLOWED: &[&str] = &[
            "Add",
            "And",
            "ArgMax",
            "AveragePool",
            "BatchNormalization",
            "Cast",
            "Clip",
            "Concat",
            "ConstantOfShape",
            "Conv",
            "ConvTranspose",
            "Div",
            "Equal",
            "Erf",
            "Exp",
            "Expand",
            "Flatten",
            "Gemm",
            "GlobalAveragePool",
            "Greater",
            "Identity",
            "Less",
            "LogSoftmax",
            "MatMul",
            "MaxPool",
            "Mul",
            "Neg",
            "Pow",
            "Reciprocal",
            "ReduceMean",
            "ReduceSum",
            "Relu",
            "Reshape",
            "ScatterElements",
            "Shape",
            "Sigmoid",
            "Size",
            "Slice",
            "Split",
            "Sqrt",
            "Sub",
            "Sum",
            "Transpose",
            "Unsqueeze",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let g = random_graph(seed);
            for (batch, optimizer) in [
                (Some(2), adamw()),
                (None, TrainOptions::default().optimizer),
            ] {
                let o = TrainOptions {
                    batch,
                    optimizer,
                    ..TrainOptions::default()
                };
                let step = training_step(&g, &o).unwrap();
                let m = ModelProto::decode(step.model.as_slice()).unwrap();
                for n in m.graph.unwrap().node {
                    assert!(n.domain.is_empty(), "{}", n.op_type);
                    assert!(ALLOWED.contains(&n.op_type.as_str()), "{}", n.op_type);
                    // Only the inference form (an affine map of given statistics): the
                    // training form hides the batch statistics and keeps a biased variance.
                    if n.op_type == "BatchNormalization" {
                        assert!(
                            n.attribute
                                .iter()
                                .all(|a| a.name != "training_mode" || a.i.unwrap_or(0) == 0),
                            "BatchNormalization in training mode"
                        );
                    }
                    seen.insert(n.op_type);
                }
            }
        }
        assert!(seen.contains("ScatterElements") && seen.contains("ConvTranspose"));
    }
}
