//! Gradient checks: the training-step model's float32 gradients, run in a real ONNX Runtime,
//! against float64 central differences of the plain-Rust training loss
//! ([`nas_graph::train::reference`], BatchNorm with batch statistics, label smoothing on).
//!
//! Criterion, per tensor: `||g_ort - g_fd|| / max(||g_fd||, 1e-6) <= 1e-4`. Small tensors are
//! checked element by element in full; larger ones on a fixed random subset of elements.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use nas_graph::testing::random_graph;
use nas_graph::train::reference::training_forward;
use nas_graph::train::{
    INPUT, LABELS, LOSS, LR, Optimizer, STEP, StateKind, TrainOptions, grad_name, initial_state,
    training_step,
};
use nas_graph::{Graph, GraphBuilder, NodeId, Op, Weights};
use ndarray::{ArrayD, IxDyn};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const BOUND: f64 = 1e-4;
/// Central-difference step in float64.
const H: f64 = 1e-5;
const SMOOTHING: f32 = 0.1;

fn library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/ort/onnxruntime-1.31.1/libonnxruntime.so.1.31.1")
        })
}

fn env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library();
        assert!(
            path.is_file(),
            "ONNX Runtime library not found at {} (set ORT_DYLIB_PATH or run `cargo xtask ort`)",
            path.display()
        );
        ort::init_from(&path)
            .unwrap_or_else(|e| panic!("cannot load ONNX Runtime from {}: {e}", path.display()))
            .with_name("nas-graph-gradients")
            .with_telemetry(false)
            .build()
            .expect("ONNX Runtime environment")
    })
}

fn session(model: &[u8]) -> Session {
    Session::builder(env())
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
        .and_then(|mut b| b.commit_from_memory(model))
        .unwrap_or_else(|e| panic!("ONNX Runtime rejected the training model: {e}"))
}

/// One gradient check: a graph, a batch size and a seed for weights, data, labels and masks.
struct Case {
    name: String,
    graph: Graph,
    batch: usize,
    seed: u64,
    /// Elements checked per tensor at most.
    max_elems: usize,
    /// Multiplies the random input (to reach ReLU6's upper kink, for instance).
    input_scale: f32,
}

#[derive(Debug)]
struct Outcome {
    /// Worst per-tensor relative error, its tensor and that tensor's |g_fd|.
    worst: f64,
    worst_tensor: String,
    worst_norm: f64,
    loss_err: f64,
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
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
    let x = ArrayD::from_shape_simple_fn(IxDyn(&dims), || normal(&mut rng) * case.input_scale);
    let labels: Vec<i64> = (0..n)
        .map(|_| rng.random_range(0..classes as i64))
        .collect();

    // Alternate fixed and dynamic batch across cases.
    let options = TrainOptions {
        batch: case.seed.is_multiple_of(2).then_some(n),
        optimizer: Optimizer::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        weight_decay: 0.0,
        label_smoothing: SMOOTHING,
        emit_gradients: true,
        frozen: Vec::new(),
        conditional_mix: true,
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
    let lr = ndarray::arr0(0.0f32).into_dyn();
    let step_no = ndarray::arr0(1.0f32).into_dyn();
    let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
        (INPUT.into(), TensorRef::from_array_view(&x).unwrap().into()),
        (
            LABELS.into(),
            TensorRef::from_array_view(&labels_arr).unwrap().into(),
        ),
        (LR.into(), TensorRef::from_array_view(&lr).unwrap().into()),
        (
            STEP.into(),
            TensorRef::from_array_view(&step_no).unwrap().into(),
        ),
    ];
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
    let loss_of = |params: &BTreeMap<String, ArrayD<f64>>| -> f64 {
        training_forward(
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
            f64::from(SMOOTHING),
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

fn check_all(cases: Vec<Case>) {
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

fn conv(
    out: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: usize,
    g: usize,
    bias: bool,
) -> Op {
    Op::Conv2d {
        out_channels: out,
        kernel: k,
        stride: s,
        padding: p,
        dilation: [d, d],
        groups: g,
        bias,
    }
}

fn sq(out: usize, k: usize, s: usize, p: usize, d: usize, g: usize, bias: bool) -> Op {
    conv(out, [k, k], [s, s], [p, p], d, g, bias)
}

/// `input [c, h, w] -> conv3x3(c -> 4, bias) -> body -> Flatten -> Linear(3)`: the first conv's
/// weight gradient passes through the body's input gradient.
fn wrapped(hw: [usize; 2], body: impl FnOnce(&mut GraphBuilder, NodeId) -> NodeId) -> Graph {
    wrapped_channels(4, hw, body)
}

/// [`wrapped`] with a stem of `channels` outputs.
fn wrapped_channels(
    channels: usize,
    hw: [usize; 2],
    body: impl FnOnce(&mut GraphBuilder, NodeId) -> NodeId,
) -> Graph {
    let mut b = GraphBuilder::new(&[2, hw[0], hw[1]]);
    let stem = b.add(sq(channels, 3, 1, 1, 1, 1, true), &[0]);
    let y = body(&mut b, stem);
    let f = b.add(Op::Flatten, &[y]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    );
    b.finish(l)
}

fn case(name: &str, graph: Graph, batch: usize, seed: u64) -> Case {
    Case {
        name: name.to_string(),
        graph,
        batch,
        seed,
        max_elems: 160,
        input_scale: 1.0,
    }
}

#[test]
fn conv_rules() {
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let cases = vec![
        case(
            "conv 3x3 s2 p1 even",
            wrapped([8, 8], one(sq(4, 3, 2, 1, 1, 1, true))),
            2,
            1,
        ),
        case(
            "conv 3x3 s2 p1 odd",
            wrapped([9, 9], one(sq(3, 3, 2, 1, 1, 1, false))),
            3,
            2,
        ),
        case(
            "conv 3x3 s2 p0 even (crop)",
            wrapped([8, 8], one(sq(3, 3, 2, 0, 1, 1, true))),
            2,
            3,
        ),
        case(
            "conv 1x1 s2 even (crop)",
            wrapped([8, 7], one(sq(5, 1, 2, 0, 1, 1, false))),
            2,
            4,
        ),
        case(
            "conv 3x3 s2 p1 odd/even",
            wrapped([9, 8], one(sq(4, 3, 2, 1, 1, 1, true))),
            4,
            5,
        ),
        case(
            "conv 3x3 dilation 2",
            wrapped([8, 8], one(sq(3, 3, 1, 2, 2, 1, true))),
            2,
            6,
        ),
        case(
            "conv 3x3 dilation 2 s2",
            wrapped([9, 8], one(sq(3, 3, 2, 1, 2, 1, false))),
            2,
            7,
        ),
        case(
            "conv 3x3 dil 2 s2 p0 (crop)",
            wrapped([10, 10], one(sq(3, 3, 2, 0, 2, 1, false))),
            2,
            8,
        ),
        case(
            "conv groups 2",
            wrapped([7, 7], one(sq(6, 3, 1, 1, 1, 2, true))),
            3,
            9,
        ),
        case(
            "conv groups 2 s2",
            wrapped([8, 8], one(sq(4, 3, 2, 1, 1, 2, false))),
            2,
            10,
        ),
        case(
            "conv depthwise",
            wrapped([8, 8], one(sq(4, 3, 1, 1, 1, 4, false))),
            2,
            11,
        ),
        case(
            "conv depthwise s2 bias",
            wrapped([9, 9], one(sq(4, 3, 2, 1, 1, 4, true))),
            2,
            12,
        ),
        case(
            "conv depthwise x2 5x5",
            wrapped([8, 8], one(sq(8, 5, 2, 2, 1, 4, false))),
            2,
            13,
        ),
        // Even seeds fix the batch, which routes depthwise weight gradients through the
        // per-sample correlation form (odd seeds above take the im2col form).
        case(
            "conv depthwise fixed batch",
            wrapped([8, 8], one(sq(4, 3, 1, 1, 1, 4, false))),
            3,
            16,
        ),
        case(
            "conv depthwise x2 5x5 s2 fixed batch",
            wrapped([9, 9], one(sq(8, 5, 2, 2, 1, 4, true))),
            2,
            18,
        ),
        case(
            "conv depthwise 3x3 s2 p0 d2 fixed batch (crop)",
            wrapped([10, 10], one(sq(4, 3, 2, 0, 2, 4, false))),
            2,
            20,
        ),
        case(
            "conv depthwise 7x7 fixed batch",
            wrapped([9, 9], one(sq(4, 7, 1, 3, 1, 4, false))),
            2,
            22,
        ),
        // Small images with many channels run forward and input gradient as im2col + MatMul.
        case(
            "conv 3x3 64 channels 4x4 (MatMul form)",
            wrapped_channels(64, [4, 4], one(sq(64, 3, 1, 1, 1, 1, true))),
            2,
            24,
        ),
        case(
            "conv non-square 1x3 s(2,1)",
            wrapped([8, 8], one(conv(3, [1, 3], [2, 1], [0, 1], 1, 1, true))),
            2,
            14,
        ),
        case(
            "conv non-square 5x3 s2 d2",
            wrapped([11, 9], one(conv(3, [5, 3], [2, 2], [4, 2], 2, 1, false))),
            2,
            15,
        ),
    ];
    check_all(cases);
}

#[test]
fn batch_norm_and_activation_rules() {
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let bn = || Op::BatchNorm {
        eps: 1e-5,
        momentum: 0.1,
    };
    let mut cases = vec![
        case(
            "batch norm (after conv with bias)",
            wrapped([6, 6], one(bn())),
            3,
            21,
        ),
        case(
            "batch norm, conv, relu, batch norm",
            wrapped([6, 6], |b, x| {
                let n = b.add(bn(), &[x]);
                let r = b.add(Op::Relu, &[n]);
                let c = b.add(sq(3, 3, 2, 1, 1, 1, true), &[r]);
                b.add(bn(), &[c])
            }),
            4,
            22,
        ),
        case("relu", wrapped([6, 6], one(Op::Relu)), 2, 23),
        case("silu", wrapped([6, 6], one(Op::Silu)), 2, 25),
        case("gelu", wrapped([6, 6], one(Op::Gelu)), 2, 26),
        case("sigmoid", wrapped([6, 6], one(Op::Sigmoid)), 2, 27),
    ];
    let mut relu6 = case("relu6 (both kinks)", wrapped([6, 6], one(Op::Relu6)), 2, 24);
    relu6.input_scale = 6.0;
    cases.push(relu6);
    // BatchNorm on features: Linear -> BN -> activation -> Linear.
    let mut b = GraphBuilder::new(&[5]);
    let l1 = b.add(
        Op::Linear {
            out_features: 6,
            bias: true,
        },
        &[0],
    );
    let n = b.add(bn(), &[l1]);
    let a = b.add(Op::Gelu, &[n]);
    let l2 = b.add(
        Op::Linear {
            out_features: 4,
            bias: false,
        },
        &[a],
    );
    cases.push(case("batch norm on features, linear", b.finish(l2), 4, 28));
    check_all(cases);
}

#[test]
fn structural_rules() {
    let cases = vec![
        case(
            "add fan-out",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(4, 3, 1, 1, 1, 1, false), &[x]);
                let r = b.add(Op::Relu, &[x]);
                // x feeds c1, r and the sum twice.
                b.add(Op::Add, &[c1, x, r, x])
            }),
            2,
            31,
        ),
        case(
            "concat",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(3, 1, 1, 0, 1, 1, false), &[x]);
                let s = b.add(Op::Sigmoid, &[x]);
                b.add(Op::Concat, &[c1, x, s, c1])
            }),
            2,
            32,
        ),
        case(
            "zero",
            wrapped([6, 6], |b, x| {
                let c1 = b.add(sq(4, 3, 1, 1, 1, 1, true), &[x]);
                let z = b.add(Op::Zero, &[c1]);
                b.add(Op::Add, &[x, z])
            }),
            2,
            33,
        ),
        case(
            "identity",
            wrapped([6, 6], |b, x| {
                let i = b.add(Op::Identity, &[x]);
                b.add(Op::Silu, &[i])
            }),
            2,
            34,
        ),
        case(
            "dropout (fixed mask)",
            wrapped([6, 6], |b, x| {
                let d = b.add(Op::Dropout { p: 0.3 }, &[x]);
                b.add(Op::Gelu, &[d])
            }),
            3,
            35,
        ),
        case(
            "global average pool, linear, linear",
            {
                let mut b = GraphBuilder::new(&[3, 5, 6]);
                let c = b.add(sq(6, 3, 1, 1, 1, 1, true), &[0]);
                let g = b.add(Op::GlobalAvgPool, &[c]);
                let l1 = b.add(
                    Op::Linear {
                        out_features: 5,
                        bias: true,
                    },
                    &[g],
                );
                let s = b.add(Op::Sigmoid, &[l1]);
                let l2 = b.add(
                    Op::Linear {
                        out_features: 3,
                        bias: true,
                    },
                    &[s],
                );
                b.finish(l2)
            },
            3,
            36,
        ),
    ];
    check_all(cases);
}

/// Mixed edges of a supernet: every NAS-Bench-201 operation (conv-BN, avg pool, skip, zero)
/// weighed into one value, an auxiliary skip as an extra input, two edges in a row, an edge
/// of zeros only, and a Dropout behind an edge (masks and mixing weights fed together).
#[test]
fn mixed_edge_rules() {
    let bn = || Op::BatchNorm {
        eps: 1e-5,
        momentum: 0.1,
    };
    let edge = |b: &mut GraphBuilder, x: NodeId, aux: bool| {
        let r = b.add(Op::Relu, &[x]);
        let c3 = b.add(sq(4, 3, 1, 1, 1, 1, false), &[r]);
        let b3 = b.add(bn(), &[c3]);
        let r1 = b.add(Op::Relu, &[x]);
        let c1 = b.add(sq(4, 1, 1, 0, 1, 1, false), &[r1]);
        let b1 = b.add(bn(), &[c1]);
        let pool = b.add(
            Op::AvgPool {
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                count_include_pad: false,
            },
            &[x],
        );
        let skip = b.add(Op::Identity, &[x]);
        let zero = b.add(Op::Zero, &[x]);
        let mut ins = vec![zero, skip, b1, b3, pool];
        if aux {
            ins.push(x);
        }
        b.add(Op::Mix, &ins)
    };
    let cases = vec![
        case(
            "mixed edge, NB201 ops",
            wrapped([5, 5], |b, x| edge(b, x, false)),
            3,
            40,
        ),
        case(
            "mixed edge with auxiliary skip",
            wrapped([5, 5], |b, x| edge(b, x, true)),
            3,
            41,
        ),
        case(
            "two mixed edges and a sum",
            wrapped([4, 4], |b, x| {
                let a = edge(b, x, false);
                let c = edge(b, a, false);
                let z = b.add(Op::Zero, &[x]);
                let only_zero = b.add(Op::Mix, &[z]);
                b.add(Op::Add, &[a, c, only_zero])
            }),
            2,
            42,
        ),
        case(
            "mixed edge then dropout",
            wrapped([4, 4], |b, x| {
                let a = edge(b, x, false);
                b.add(Op::Dropout { p: 0.3 }, &[a])
            }),
            2,
            43,
        ),
    ];
    check_all(cases);
}

#[test]
fn pool_rules() {
    let avg = |k: usize, s: usize, p: usize, cip: bool| Op::AvgPool {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        count_include_pad: cip,
    };
    let max = |k: usize, s: usize, p: usize| Op::MaxPool {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
    };
    let one = |op: Op| move |b: &mut GraphBuilder, x: NodeId| b.add(op, &[x]);
    let cases = vec![
        case(
            "avg 3x3 s1 p1 include pad",
            wrapped([6, 6], one(avg(3, 1, 1, true))),
            2,
            41,
        ),
        case(
            "avg 3x3 s1 p1 exclude pad",
            wrapped([6, 6], one(avg(3, 1, 1, false))),
            2,
            42,
        ),
        case(
            "avg 3x3 s2 p1 include pad even",
            wrapped([8, 8], one(avg(3, 2, 1, true))),
            2,
            43,
        ),
        case(
            "avg 3x3 s2 p1 exclude pad odd",
            wrapped([9, 9], one(avg(3, 2, 1, false))),
            2,
            44,
        ),
        case(
            "avg 2x2 s2 p0 odd",
            wrapped([7, 7], one(avg(2, 2, 0, true))),
            2,
            45,
        ),
        case(
            "avg 2x2 s1 p1 exclude pad",
            wrapped([5, 6], one(avg(2, 1, 1, false))),
            2,
            46,
        ),
        case(
            "max 3x3 s1 p1 (overlapping)",
            wrapped([6, 6], one(max(3, 1, 1))),
            2,
            47,
        ),
        case(
            "max 3x3 s2 p1 even",
            wrapped([8, 8], one(max(3, 2, 1))),
            2,
            48,
        ),
        case(
            "max 2x2 s2 p0 odd",
            wrapped([7, 7], one(max(2, 2, 0))),
            3,
            49,
        ),
        case("max 2x2 s1 p1", wrapped([5, 6], one(max(2, 1, 1))), 2, 50),
    ];
    check_all(cases);
}

#[test]
fn random_graphs() {
    let cases = (0..24)
        .map(|seed| Case {
            name: format!("random graph {seed}"),
            graph: random_graph(seed),
            batch: 4,
            seed: 100 + seed,
            max_elems: 16,
            input_scale: 1.0,
        })
        .collect();
    check_all(cases);
}
