//! The gradient-check harness: a training-step model's float32 gradients, run in a real ONNX
//! Runtime, against float64 central differences of the plain-Rust training loss
//! ([`nas_graph::train::reference`], BatchNorm with batch statistics, label smoothing on; or
//! the squared error of regression cases).
//!
//! Criterion, per tensor: `||g_ort - g_fd|| / max(||g_fd||, 1e-6) <= 1e-4`. Small tensors are
//! checked element by element in full; larger ones on a fixed random subset of elements.

use std::collections::BTreeMap;

use nas_graph::train::reference::{LossTerms, training_forward_with};
use nas_graph::train::{
    INPUT, LABELS, LOSS, LR, Optimizer, SAMPLE_WEIGHTS, STEP, StateKind, TrainOptions, grad_name,
    initial_state, training_step,
};
use nas_graph::{Graph, NodeId, Op, Weights};
use ndarray::{ArrayD, IxDyn};
use ort::session::SessionInputValue;
use ort::value::TensorRef;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::runtime::session;

pub const BOUND: f64 = 1e-4;
/// Central-difference step in float64.
pub const H: f64 = 1e-5;
pub const SMOOTHING: f32 = 0.1;

/// One gradient check: a graph, a batch size and a seed for weights, data, labels and masks.
pub struct Case {
    pub name: String,
    pub graph: Graph,
    pub batch: usize,
    pub seed: u64,
    /// Elements checked per tensor at most.
    pub max_elems: usize,
    /// Multiplies the random input (to reach ReLU6's upper kink, for instance).
    pub input_scale: f32,
    /// Token ids in `[0, vocab)` as the input instead of normal values (0 is padding; the
    /// last step of the first sample is always padding).
    pub tokens: Option<usize>,
    /// The policy-gradient loss: per-sample weights in `[-2, 2)` (both signs, as advantages)
    /// fed as [`SAMPLE_WEIGHTS`], and this entropy bonus (0: none).
    pub policy_loss: Option<f32>,
    /// The regression loss: the network's `[1]` output against standard-normal float targets
    /// (mean squared error, no label smoothing).
    pub regression: bool,
}

#[derive(Debug)]
struct Outcome {
    /// Worst per-tensor relative error, its tensor and that tensor's |g_fd|.
    worst: f64,
    worst_tensor: String,
    worst_norm: f64,
    loss_err: f64,
}

pub fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let v: f64 = StandardNormal.sample(rng);
    v as f32
}

fn run_case(case: &Case) -> Result<Outcome, String> {
    let g = &case.graph;
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
    let mut w = Weights::he_init(g, case.seed).unwrap();
    w.randomize_batch_norm(g, case.seed ^ 0x5eed).unwrap();
    w.randomize_biases(g, case.seed ^ 0xb1a5).unwrap();
    let shapes = g.shapes().unwrap();
    let classes = shapes[g.output][0];
    let n = case.batch;
    let mut dims = vec![n];
    dims.extend(&g.input);
    let mut x = match case.tokens {
        Some(vocab) => {
            ArrayD::from_shape_simple_fn(IxDyn(&dims), || rng.random_range(0..vocab) as f32)
        }
        None => ArrayD::from_shape_simple_fn(IxDyn(&dims), || normal(&mut rng) * case.input_scale),
    };
    if case.tokens.is_some() {
        let last = x.shape()[1..].iter().product::<usize>() - 1;
        x.as_slice_mut().expect("standard layout")[last] = 0.0;
    }
    let labels: Vec<i64> = (0..n)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();
    let targets: Option<Vec<f32>> = case
        .regression
        .then(|| (0..n).map(|_| normal(&mut rng)).collect());
    let smoothing = if case.regression { 0.0 } else { SMOOTHING };
    let sample_weights: Option<Vec<f32>> = case
        .policy_loss
        .map(|_| (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect());

    // Alternate fixed and dynamic batch across cases.
    let options = TrainOptions {
        batch: case.seed.is_multiple_of(2).then_some(n),
        optimizer: Optimizer::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        weight_decay: 0.0,
        label_smoothing: smoothing,
        emit_gradients: true,
        frozen: Vec::new(),
        conditional_mix: true,
        sample_weights: sample_weights.is_some(),
        entropy_bonus: case.policy_loss.unwrap_or(0.0),
        nchwc_block: None,
        regression: case.regression,
    };
    let step = training_step(g, &options).map_err(|e| e.to_string())?;
    let state = initial_state(&step, &w).map_err(|e| e.to_string())?;
    let mut masks: BTreeMap<NodeId, ArrayD<f32>> = BTreeMap::new();
    let mut mask_values = Vec::new();
    for m in &step.dropout_masks {
        let id: NodeId = m.input.trim_start_matches("mask:n").parse().unwrap();
        let mut mdims = vec![n];
        mdims.extend(&m.shape);
        let keep = 1.0 / (1.0 - m.p);
        let mask = ArrayD::from_shape_simple_fn(IxDyn(&mdims), || {
            if rng.random_bool(f64::from(m.p)) {
                0.0
            } else {
                keep
            }
        });
        masks.insert(id, mask.clone());
        mask_values.push((m.input.clone(), mask));
    }
    // Mixing weights of mixed edges: positive, not normalized (any weights must work).
    for m in &step.mixes {
        let weights =
            ArrayD::from_shape_simple_fn(IxDyn(&[m.len]), || rng.random_range(0.2f32..1.0));
        mask_values.push((m.input.clone(), weights));
    }

    // ORT.
    let mut s = session(&step.model);
    let labels_arr = ArrayD::from_shape_vec(IxDyn(&[n]), labels.clone()).unwrap();
    let targets_arr = targets
        .as_ref()
        .map(|t| ArrayD::from_shape_vec(IxDyn(&[n]), t.clone()).unwrap());
    let lr = ndarray::arr0(0.0f32).into_dyn();
    let step_no = ndarray::arr0(1.0f32).into_dyn();
    let weights_arr = sample_weights
        .as_ref()
        .map(|w| ArrayD::from_shape_vec(IxDyn(&[n]), w.clone()).unwrap());
    let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
        (INPUT.into(), TensorRef::from_array_view(&x).unwrap().into()),
        (
            LABELS.into(),
            match &targets_arr {
                Some(t) => TensorRef::from_array_view(t).unwrap().into(),
                None => TensorRef::from_array_view(&labels_arr).unwrap().into(),
            },
        ),
        (LR.into(), TensorRef::from_array_view(&lr).unwrap().into()),
        (
            STEP.into(),
            TensorRef::from_array_view(&step_no).unwrap().into(),
        ),
    ];
    if let Some(w) = &weights_arr {
        feed.push((
            SAMPLE_WEIGHTS.into(),
            TensorRef::from_array_view(w).unwrap().into(),
        ));
    }
    for (t, v) in step.state.iter().zip(&state) {
        feed.push((
            t.input.clone(),
            TensorRef::from_array_view(v).unwrap().into(),
        ));
    }
    for (name, v) in &mask_values {
        feed.push((name.clone(), TensorRef::from_array_view(v).unwrap().into()));
    }
    let outputs = s.run(feed).map_err(|e| format!("ORT run failed: {e}"))?;
    let loss_ort = f64::from(outputs[LOSS].try_extract_scalar::<f32>().unwrap());
    let mut grads = BTreeMap::new();
    for t in &step.state {
        if let StateKind::Param(_) = t.kind {
            let gname = grad_name(&t.name);
            let gv = outputs[gname.as_str()]
                .try_extract_array::<f32>()
                .unwrap()
                .mapv(f64::from);
            grads.insert(t.name.clone(), gv);
        }
    }
    // Per mixed edge, the gradient of a constant added to its output (the last value of its
    // gradient output).
    let mut output_sums: Vec<(NodeId, f64)> = Vec::new();
    for m in &step.mixes {
        let gv = outputs[m.grad.as_str()]
            .try_extract_array::<f32>()
            .unwrap()
            .mapv(f64::from);
        assert_eq!(
            gv.len(),
            m.len + 1,
            "{}: weights then the output sum",
            m.grad
        );
        let weights = gv.slice(ndarray::s![..m.len]).to_owned().into_dyn();
        output_sums.push((m.node, gv[[m.len]]));
        grads.insert(m.input.clone(), weights);
    }

    // Reference.
    // Mixing weights are differentiated like params, under their input names.
    let mut params: BTreeMap<String, ArrayD<f64>> = w
        .iter()
        .map(|(k, v)| (k.to_string(), v.mapv(f64::from)))
        .chain(
            mask_values
                .iter()
                .filter(|(name, _)| name.starts_with("mix:"))
                .map(|(k, v)| (k.clone(), v.mapv(f64::from))),
        )
        .collect();
    let x64 = x.mapv(f64::from);
    let masks64: BTreeMap<NodeId, ArrayD<f64>> =
        masks.iter().map(|(k, v)| (*k, v.mapv(f64::from))).collect();
    let weights64: Option<Vec<f64>> = sample_weights
        .as_ref()
        .map(|w| w.iter().map(|&v| f64::from(v)).collect());
    let targets64: Option<Vec<f64>> = targets
        .as_ref()
        .map(|t| t.iter().map(|&v| f64::from(v)).collect());
    let terms = LossTerms {
        label_smoothing: f64::from(smoothing),
        sample_weights: weights64.as_deref(),
        entropy_bonus: f64::from(case.policy_loss.unwrap_or(0.0)),
        regression_targets: targets64.as_deref(),
    };
    let loss_of = |params: &BTreeMap<String, ArrayD<f64>>| -> f64 {
        training_forward_with(
            g,
            &|name| params.get(name).cloned(),
            &x64,
            &labels,
            &|id| {
                masks64
                    .get(&id)
                    .or_else(|| params.get(&format!("mix:n{id}")))
                    .cloned()
            },
            &terms,
        )
        .unwrap()
        .loss
    };
    let loss_ref = loss_of(&params);
    let loss_err = (loss_ort - loss_ref).abs() / loss_ref.abs().max(1.0);
    if loss_err.is_nan() || loss_err > 1e-5 {
        return Err(format!("loss: ORT {loss_ort}, reference {loss_ref}"));
    }

    let mut worst = 0.0f64;
    let mut worst_tensor = String::new();
    let mut worst_norm = 0.0;
    let mut failures = Vec::new();
    for (name, g_ort) in &grads {
        let len = g_ort.len();
        let picked: Vec<usize> = if len <= case.max_elems {
            (0..len).collect()
        } else {
            let mut v = sample(&mut rng, len, case.max_elems).into_vec();
            v.sort_unstable();
            v
        };
        let (mut diff2, mut fd2) = (0.0f64, 0.0f64);
        for &i in &picked {
            let orig = params[name].as_slice().unwrap()[i];
            let set = |params: &mut BTreeMap<String, ArrayD<f64>>, v: f64| {
                params.get_mut(name).unwrap().as_slice_mut().unwrap()[i] = v;
            };
            set(&mut params, orig + H);
            let up = loss_of(&params);
            set(&mut params, orig - H);
            let down = loss_of(&params);
            set(&mut params, orig);
            let fd = (up - down) / (2.0 * H);
            let got = g_ort.as_slice().unwrap()[i];
            diff2 += (got - fd).powi(2);
            fd2 += fd * fd;
        }
        let rel = diff2.sqrt() / fd2.sqrt().max(1e-6);
        if rel.is_nan() || rel > BOUND {
            failures.push(format!(
                "{name}: relative error {rel:e} (|g_fd| = {:e}, {} of {len} elements)",
                fd2.sqrt(),
                picked.len()
            ));
        }
        if rel >= worst {
            worst = rel;
            worst_tensor = name.clone();
            worst_norm = fd2.sqrt();
        }
    }
    // A mixed edge read only by Flatten -> Linear: a constant c added to its output adds
    // c * rowsum(W) to the logits, as a bias would, so its gradient is
    // sum_o rowsum(W)_o * dL/db_o (the bias gradient itself is checked above).
    let mut sums_checked = 0;
    for (mix, got) in &output_sums {
        let readers = |id: NodeId| -> Vec<NodeId> {
            (0..g.nodes.len())
                .filter(|&c| g.nodes[c].inputs.contains(&id))
                .collect()
        };
        let [flat] = readers(*mix)[..] else { continue };
        let [lin] = readers(flat)[..] else { continue };
        if g.nodes[flat].op != Op::Flatten
            || !matches!(g.nodes[lin].op, Op::Linear { bias: true, .. })
        {
            continue;
        }
        let w = &params[&format!("n{lin}.weight")];
        let gb = &grads[&format!("n{lin}.bias")];
        let want: f64 = w
            .outer_iter()
            .zip(gb.iter())
            .map(|(row, gb)| row.sum() * gb)
            .sum();
        let rel = (got - want).abs() / want.abs().max(1e-6);
        if rel.is_nan() || rel > BOUND {
            return Err(format!(
                "output sum of mixed edge {mix}: {got} against {want} (relative error {rel:e})"
            ));
        }
        sums_checked += 1;
    }
    if case.name.contains("NB201 ops") && sums_checked == 0 {
        return Err("the mixed edge's output sum was not checked".into());
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    Ok(Outcome {
        worst,
        worst_tensor,
        worst_norm,
        loss_err,
    })
}

pub fn check_all(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        match run_case(case) {
            Ok(o) => eprintln!(
                "{:<40} worst rel err {:.2e} ({}, |g_fd| {:.1e})  loss err {:.1e}",
                case.name, o.worst, o.worst_tensor, o.worst_norm, o.loss_err
            ),
            Err(e) => failures.push(format!(
                "{} (seed {}): {e}\n  {}",
                case.name,
                case.seed,
                serde_json::to_string(&case.graph).unwrap()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} gradient checks failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
