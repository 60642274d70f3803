//! The training-step model in a real ONNX Runtime: optimizer updates against plain-Rust
//! formulas applied to the model's own gradients, BatchNorm running statistics against the
//! float64 reference, fixed vs dynamic batch, and double-buffered training to convergence.

use std::collections::BTreeMap;

use nas_graph::onnx::proto::ModelProto;
use nas_graph::train::reference::training_forward;
use nas_graph::train::{
    CORRECT, INPUT, LABELS, LOSS, LR, Optimizer, SAMPLE_WEIGHTS, STEP, StateKind, TrainOptions,
    TrainingStep, grad_name, initial_state, loss_step, nchwc, training_step, weights_from_state,
};
use nas_graph::{
    ExportOptions, Graph, GraphBuilder, NodeId, Op, ParamRole, Weights, export_inference,
};
use ndarray::{ArrayD, Axis, IxDyn};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

mod support;
use support::runtime::session;

/// conv3x3(2->4, bias) -> BN -> ReLU -> MaxPool3/s2/p1 -> Dropout -> conv3x3/s2(4->6, g2)
/// -> BN -> SiLU -> GAP -> Linear(6->5, bias) -> BN -> ReLU -> Linear(5->3, bias).
fn small_net() -> Graph {
    let mut b = GraphBuilder::new(&[2, 8, 8]);
    let conv = |out, s, g, bias| Op::Conv2d {
        out_channels: out,
        kernel: [3, 3],
        stride: [s, s],
        padding: [1, 1],
        dilation: [1, 1],
        groups: g,
        bias,
    };
    let c1 = b.add(conv(4, 1, 1, true), &[0]);
    let n1 = b.batch_norm(c1);
    let r1 = b.add(Op::Relu, &[n1]);
    let mp = b.add(
        Op::MaxPool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        },
        &[r1],
    );
    let d = b.add(Op::Dropout { p: 0.2 }, &[mp]);
    let c2 = b.add(conv(6, 2, 2, false), &[d]);
    let n2 = b.batch_norm(c2);
    let s = b.add(Op::Silu, &[n2]);
    let g = b.add(Op::GlobalAvgPool, &[s]);
    let l1 = b.add(
        Op::Linear {
            out_features: 5,
            bias: true,
        },
        &[g],
    );
    let n3 = b.batch_norm(l1);
    let r3 = b.add(Op::Relu, &[n3]);
    let l2 = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[r3],
    );
    b.finish(l2)
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let v: f64 = StandardNormal.sample(rng);
    v as f32
}

/// One batch: input, labels and one mask per dropout input.
struct Batch {
    x: ArrayD<f32>,
    labels: ArrayD<i64>,
    masks: Vec<ArrayD<f32>>,
    /// One weight vector per mixed edge (none for networks without one).
    mixes: Vec<ArrayD<f32>>,
    /// Per-sample loss weights, for a step built with `sample_weights`.
    sample_weights: Option<ArrayD<f32>>,
}

fn random_batch(
    graph: &Graph,
    step: &TrainingStep,
    n: usize,
    classes: usize,
    rng: &mut ChaCha8Rng,
) -> Batch {
    let mut dims = vec![n];
    dims.extend(&graph.input);
    let x = ArrayD::from_shape_simple_fn(IxDyn(&dims), || normal(rng));
    let labels = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || rng.random_range(0..classes as i64));
    let masks = step
        .dropout_masks
        .iter()
        .map(|m| {
            let mut d = vec![n];
            d.extend(&m.shape);
            let keep = 1.0 / (1.0 - m.p);
            ArrayD::from_shape_simple_fn(IxDyn(&d), || {
                if rng.random_bool(f64::from(m.p)) {
                    0.0
                } else {
                    keep
                }
            })
        })
        .collect();
    Batch {
        x,
        labels,
        masks,
        mixes: Vec::new(),
        sample_weights: None,
    }
}

struct StepOut {
    loss: f32,
    correct: f32,
    state: Vec<ArrayD<f32>>,
    grads: BTreeMap<String, ArrayD<f32>>,
}

fn run_step(
    s: &mut Session,
    step: &TrainingStep,
    batch: &Batch,
    lr: f32,
    step_no: f32,
    state: &[ArrayD<f32>],
) -> ort::Result<StepOut> {
    let lr = ndarray::arr0(lr).into_dyn();
    let t = ndarray::arr0(step_no).into_dyn();
    let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
        (INPUT.into(), TensorRef::from_array_view(&batch.x)?.into()),
        (
            LABELS.into(),
            TensorRef::from_array_view(&batch.labels)?.into(),
        ),
        (LR.into(), TensorRef::from_array_view(&lr)?.into()),
        (STEP.into(), TensorRef::from_array_view(&t)?.into()),
    ];
    if let Some(w) = &batch.sample_weights {
        feed.push((SAMPLE_WEIGHTS.into(), TensorRef::from_array_view(w)?.into()));
    }
    for (st, v) in step.state.iter().zip(state) {
        feed.push((st.input.clone(), TensorRef::from_array_view(v)?.into()));
    }
    for (m, v) in step.dropout_masks.iter().zip(&batch.masks) {
        feed.push((m.input.clone(), TensorRef::from_array_view(v)?.into()));
    }
    for (m, v) in step.mixes.iter().zip(&batch.mixes) {
        feed.push((m.input.clone(), TensorRef::from_array_view(v)?.into()));
    }
    let out = s.run(feed)?;
    let mut grads = BTreeMap::new();
    for st in &step.state {
        let g = grad_name(&st.name);
        if let Some(v) = out.get(g.as_str()) {
            grads.insert(st.name.clone(), v.try_extract_array::<f32>()?.to_owned());
        }
    }
    for m in &step.mixes {
        grads.insert(
            m.grad.clone(),
            out[m.grad.as_str()].try_extract_array::<f32>()?.to_owned(),
        );
    }
    Ok(StepOut {
        loss: out[LOSS].try_extract_scalar::<f32>()?,
        correct: out[CORRECT].try_extract_scalar::<f32>()?,
        state: step
            .state
            .iter()
            .map(|st| {
                Ok(out[st.output.as_str()]
                    .try_extract_array::<f32>()?
                    .to_owned())
            })
            .collect::<ort::Result<_>>()?,
        grads,
    })
}

fn weights(graph: &Graph, seed: u64) -> Weights {
    let mut w = Weights::he_init(graph, seed).unwrap();
    w.randomize_batch_norm(graph, seed + 1).unwrap();
    w.randomize_biases(graph, seed + 2).unwrap();
    w
}

/// `max |a - b| / max(1, max |b|)`.
fn rel_err(a: &ArrayD<f32>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((f64::from(*x) - y).abs()))
        / scale
}

/// Per BatchNorm node: batch mean and unbiased batch variance.
type BatchStats = BTreeMap<NodeId, (Vec<f64>, Vec<f64>)>;

/// Reference batch statistics of a step whose input state is `state`.
fn batch_stats(
    graph: &Graph,
    step: &TrainingStep,
    batch: &Batch,
    state: &[ArrayD<f32>],
) -> (BatchStats, usize, f64) {
    let w = weights_from_state(step, state).unwrap();
    let masks: BTreeMap<NodeId, ArrayD<f64>> = step
        .dropout_masks
        .iter()
        .zip(&batch.masks)
        .map(|(m, v)| {
            (
                m.input.trim_start_matches("mask:n").parse().unwrap(),
                v.mapv(f64::from),
            )
        })
        .collect();
    let labels: Vec<i64> = batch.labels.iter().copied().collect();
    let r = training_forward(
        graph,
        &|name| w.get(name).map(|t| t.mapv(f64::from)),
        &batch.x.mapv(f64::from),
        &labels,
        &|id| masks.get(&id).cloned(),
        0.0,
    )
    .unwrap();
    let stats = r
        .batch_stats
        .into_iter()
        .map(|(id, m, v)| (id, (m, v)))
        .collect();
    (stats, r.correct, r.loss)
}

/// Three steps of `optimizer` in ORT vs the PyTorch formulas applied (in f64) to the gradients
/// ORT emitted; weights, buffers and running statistics must agree to 1e-5.
fn check_optimizer(optimizer: Optimizer, weight_decay: f32, batch: Option<usize>) {
    let graph = small_net();
    let options = TrainOptions {
        batch,
        optimizer,
        weight_decay,
        label_smoothing: 0.0,
        emit_gradients: true,
        frozen: Vec::new(),
        conditional_mix: true,
        sample_weights: false,
        entropy_bonus: 0.0,
        nchwc_block: None,
        regression: false,
    };
    let step = training_step(&graph, &options).unwrap();
    let mut s = session(&step.model);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut state = initial_state(&step, &weights(&graph, 3)).unwrap();
    // The plain-Rust copy of the state.
    let mut mine: Vec<ArrayD<f64>> = state.iter().map(|t| t.mapv(f64::from)).collect();
    let index: BTreeMap<&str, usize> = step
        .state
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let wd = f64::from(weight_decay);
    for (k, lr) in [0.1f32, 0.05, 0.02].into_iter().enumerate() {
        let t = (k + 1) as i32;
        let b = random_batch(&graph, &step, 4, 3, &mut rng);
        let out = run_step(&mut s, &step, &b, lr, t as f32, &state).unwrap();
        let (stats, correct, loss) = batch_stats(&graph, &step, &b, &state);
        assert_eq!(out.correct, correct as f32, "step {t}: correct count");
        assert!(
            (f64::from(out.loss) - loss).abs() <= 1e-5 * loss.abs().max(1.0),
            "step {t}: loss {} vs reference {loss}",
            out.loss
        );
        let lr = f64::from(lr);
        for (i, st) in step.state.iter().enumerate() {
            match st.kind {
                StateKind::Param(role) => {
                    let g = out.grads[&st.name].mapv(f64::from);
                    let decay = role == ParamRole::Weight;
                    let w = mine[i].clone();
                    match optimizer {
                        Optimizer::Sgd { momentum, nesterov } => {
                            let m = f64::from(momentum);
                            let gd = if decay { &g + &(&w * wd) } else { g };
                            let upd = if momentum > 0.0 {
                                let bi = index[format!("{}.momentum", st.name).as_str()];
                                mine[bi] = &mine[bi] * m + &gd;
                                if nesterov {
                                    &gd + &(&mine[bi] * m)
                                } else {
                                    mine[bi].clone()
                                }
                            } else {
                                gd
                            };
                            mine[i] = &w - &(upd * lr);
                        }
                        Optimizer::AdamW { beta1, beta2, eps } => {
                            let (b1, b2, eps) =
                                (f64::from(beta1), f64::from(beta2), f64::from(eps));
                            let mi = index[format!("{}.adam_m", st.name).as_str()];
                            let vi = index[format!("{}.adam_v", st.name).as_str()];
                            mine[mi] = &mine[mi] * b1 + &(&g * (1.0 - b1));
                            mine[vi] = &mine[vi] * b2 + &(g.mapv(|x| x * x) * (1.0 - b2));
                            let mhat = &mine[mi] / (1.0 - b1.powi(t));
                            let vhat = &mine[vi] / (1.0 - b2.powi(t));
                            let base = if decay { &w * (1.0 - lr * wd) } else { w };
                            let upd = mhat / vhat.mapv(|v| v.sqrt() + eps);
                            mine[i] = base - upd * lr;
                        }
                    }
                }
                StateKind::RunningMean | StateKind::RunningVar => {
                    let id: NodeId = st.name[1..st.name.find('.').unwrap()].parse().unwrap();
                    let (mean, var) = &stats[&id];
                    let batch_stat = if st.kind == StateKind::RunningMean {
                        mean
                    } else {
                        var
                    };
                    let m = 0.1;
                    let bs = ArrayD::from_shape_vec(IxDyn(&st.shape), batch_stat.clone()).unwrap();
                    mine[i] = &mine[i] * (1.0 - m) + &(bs * m);
                }
                _ => {}
            }
        }
        for (i, st) in step.state.iter().enumerate() {
            let e = rel_err(&out.state[i], &mine[i]);
            assert!(
                e <= 1e-5,
                "{optimizer:?}, step {t}: `{}` differs from the formula by {e:e}",
                st.name
            );
        }
        state = out.state;
    }
}

#[test]
fn sgd_momentum_matches_the_formulas() {
    let sgd = |nesterov| Optimizer::Sgd {
        momentum: 0.9,
        nesterov,
    };
    check_optimizer(sgd(false), 0.05, Some(4));
    check_optimizer(sgd(true), 0.05, None);
    check_optimizer(
        Optimizer::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        0.01,
        Some(4),
    );
}

#[test]
fn adamw_matches_the_formulas() {
    let adam = Optimizer::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    check_optimizer(adam, 0.1, Some(4));
    check_optimizer(adam, 0.0, None);
}

#[test]
fn fixed_and_dynamic_batch_agree() {
    let graph = small_net();
    let make = |batch| {
        training_step(
            &graph,
            &TrainOptions {
                batch,
                label_smoothing: 0.1,
                weight_decay: 1e-3,
                ..TrainOptions::default()
            },
        )
        .unwrap()
    };
    let (fixed, dynamic) = (make(Some(4)), make(None));
    assert_eq!(fixed.state, dynamic.state);
    let mut sf = session(&fixed.model);
    let mut sd = session(&dynamic.model);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let state = initial_state(&fixed, &weights(&graph, 5)).unwrap();
    let b = random_batch(&graph, &fixed, 4, 3, &mut rng);
    let a = run_step(&mut sf, &fixed, &b, 0.1, 1.0, &state).unwrap();
    let d = run_step(&mut sd, &dynamic, &b, 0.1, 1.0, &state).unwrap();
    assert!((a.loss - d.loss).abs() <= 1e-6 * a.loss.abs().max(1.0));
    assert_eq!(a.correct, d.correct);
    for ((x, y), st) in a.state.iter().zip(&d.state).zip(&fixed.state) {
        let e = rel_err(x, &y.mapv(f64::from));
        assert!(
            e <= 1e-6,
            "`{}`: fixed vs dynamic batch differ by {e:e}",
            st.name
        );
    }
    // The dynamic model takes any batch; the fixed one only its own.
    for n in [1, 3, 9] {
        let b = random_batch(&graph, &dynamic, n, 3, &mut rng);
        let out = run_step(&mut sd, &dynamic, &b, 0.1, 1.0, &state).unwrap();
        assert!(out.loss.is_finite() && out.correct <= n as f32, "batch {n}");
        if n != 4 {
            assert!(
                run_step(&mut sf, &fixed, &b, 0.1, 1.0, &state).is_err(),
                "batch {n}"
            );
        }
    }
}

/// 4 classes of 1x8x8 textures (horizontal stripes, vertical stripes, checkerboard, flat) with a
/// random phase, a random brightness and noise.
fn texture_dataset(n: usize, rng: &mut ChaCha8Rng) -> (ArrayD<f32>, Vec<i64>) {
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[n, 1, 8, 8]));
    let mut labels = Vec::with_capacity(n);
    for (i, mut img) in x.axis_iter_mut(Axis(0)).enumerate() {
        let class = (i % 4) as i64;
        let phase = rng.random_range(0..2usize);
        let level = rng.random_range(0.5f32..1.5);
        for r in 0..8 {
            for c in 0..8 {
                let on = match class {
                    0 => (r + phase) % 2 == 0,
                    1 => (c + phase) % 2 == 0,
                    2 => (r + c + phase) % 2 == 0,
                    _ => phase == 0,
                };
                img[[0, r, c]] = if on { level } else { 0.0 } + 0.3 * normal(rng);
            }
        }
        labels.push(class);
    }
    (x, labels)
}

fn texture_net() -> Graph {
    let mut b = GraphBuilder::new(&[1, 8, 8]);
    let c1 = b.conv(0, 8, 3, 1, 1);
    let n1 = b.batch_norm(c1);
    let r1 = b.add(Op::Relu, &[n1]);
    let mp = b.add(
        Op::MaxPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
        &[r1],
    );
    let c2 = b.conv(mp, 8, 3, 1, 1);
    let n2 = b.batch_norm(c2);
    let r2 = b.add(Op::Relu, &[n2]);
    let g = b.add(Op::GlobalAvgPool, &[r2]);
    let d = b.add(Op::Dropout { p: 0.1 }, &[g]);
    let l = b.add(
        Op::Linear {
            out_features: 4,
            bias: true,
        },
        &[d],
    );
    b.finish(l)
}

/// Owned ORT tensor holding `a`.
fn tensor(a: &ArrayD<f32>) -> Tensor<f32> {
    let mut t = Tensor::<f32>::new(&Allocator::default(), a.shape().to_vec()).unwrap();
    t.extract_array_mut().assign(a);
    t
}

/// State lives in two sets of ORT tensors: step k reads set k % 2 and writes the other, so the
/// outputs of one step are the next step's inputs without a copy through Rust.
#[test]
fn double_buffered_training_converges() {
    let graph = texture_net();
    let n_train = 256;
    let batch = 32;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let (x_all, y_all) = texture_dataset(n_train, &mut rng);
    let step = training_step(
        &graph,
        &TrainOptions {
            batch: Some(batch),
            optimizer: Optimizer::Sgd {
                momentum: 0.9,
                nesterov: true,
            },
            weight_decay: 5e-4,
            label_smoothing: 0.05,
            emit_gradients: false,
            frozen: Vec::new(),
            conditional_mix: true,
            sample_weights: false,
            entropy_bonus: 0.0,
            nchwc_block: None,
            regression: false,
        },
    )
    .unwrap();
    let mut s = session(&step.model);
    let init = initial_state(&step, &Weights::he_init(&graph, 1).unwrap()).unwrap();
    let mut buffers: [Vec<Tensor<f32>>; 2] = [
        init.iter().map(tensor).collect(),
        init.iter()
            .map(|a| tensor(&ArrayD::zeros(a.raw_dim())))
            .collect(),
    ];
    let mut binding = s.create_binding().unwrap();
    let steps = 240;
    let mut last_epoch_correct = 0.0f64;
    for k in 0..steps {
        // A fresh shuffle each epoch.
        let per_epoch = n_train / batch;
        if k % per_epoch == 0 {
            last_epoch_correct = 0.0;
        }
        let idx: Vec<usize> = (0..batch).map(|_| rng.random_range(0..n_train)).collect();
        let xb = x_all.select(Axis(0), &idx);
        let yb = ArrayD::from_shape_vec(IxDyn(&[batch]), idx.iter().map(|&i| y_all[i]).collect())
            .unwrap();
        let lr = 0.05 * (1.0 + (std::f32::consts::PI * k as f32 / steps as f32).cos()) / 2.0 + 1e-3;
        binding
            .bind_input(INPUT, &Tensor::from_array(xb).unwrap())
            .unwrap();
        binding
            .bind_input(LABELS, &Tensor::from_array(yb).unwrap())
            .unwrap();
        binding
            .bind_input(
                LR,
                &Tensor::from_array(ndarray::arr0(lr).into_dyn()).unwrap(),
            )
            .unwrap();
        binding
            .bind_input(
                STEP,
                &Tensor::from_array(ndarray::arr0((k + 1) as f32).into_dyn()).unwrap(),
            )
            .unwrap();
        for m in &step.dropout_masks {
            let keep = 1.0 / (1.0 - m.p);
            let mut d = vec![batch];
            d.extend(&m.shape);
            let mask = ArrayD::from_shape_simple_fn(IxDyn(&d), || {
                if rng.random_bool(f64::from(m.p)) {
                    0.0
                } else {
                    keep
                }
            });
            binding
                .bind_input(m.input.as_str(), &Tensor::from_array(mask).unwrap())
                .unwrap();
        }
        // Even steps read set 0 and write set 1, odd steps the reverse.
        let [a, b] = &mut buffers;
        let (src, dst) = if k % 2 == 0 { (&*a, b) } else { (&*b, a) };
        for (st, t) in step.state.iter().zip(src) {
            binding.bind_input(st.input.as_str(), t).unwrap();
        }
        for (st, t) in step.state.iter().zip(dst.iter_mut()) {
            binding.bind_output(st.output.as_str(), t).unwrap();
        }
        let cpu = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .unwrap();
        binding.bind_output_to_device(LOSS, &cpu).unwrap();
        binding.bind_output_to_device(CORRECT, &cpu).unwrap();
        let out = s.run_binding(&binding).unwrap();
        let loss = out[LOSS].try_extract_scalar::<f32>().unwrap();
        assert!(loss.is_finite(), "step {k}: loss {loss}");
        last_epoch_correct += f64::from(out[CORRECT].try_extract_scalar::<f32>().unwrap());
        drop(out);
    }
    let final_set = steps % 2;
    let state: Vec<ArrayD<f32>> = buffers[final_set]
        .iter()
        .map(|t| t.extract_array().to_owned())
        .collect();
    let trained = weights_from_state(&step, &state).unwrap();

    // Inference export with the trained weights (BatchNorm on running statistics).
    let model = export_inference(&graph, &trained, &ExportOptions::default()).unwrap();
    let mut inf = session(&model);
    let logits = inf
        .run(ort::inputs![INPUT => TensorRef::from_array_view(&x_all).unwrap()])
        .unwrap()[0]
        .try_extract_array::<f32>()
        .unwrap()
        .to_owned();
    let hits = logits
        .axis_iter(Axis(0))
        .zip(&y_all)
        .filter(|(row, y)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 as i64 == **y
        })
        .count();
    let acc = hits as f64 / n_train as f64;
    let per_epoch = (n_train / batch * batch) as f64;
    eprintln!(
        "training accuracy {:.1} % (last epoch, training mode: {:.1} %)",
        100.0 * acc,
        100.0 * last_epoch_correct / per_epoch
    );
    assert!(acc > 0.95, "training accuracy {acc} after {steps} steps");
}

fn run_inference(model: &[u8], x: &ArrayD<f32>) -> ArrayD<f32> {
    let mut s = session(model);
    s.run(ort::inputs![INPUT => TensorRef::from_array_view(x).unwrap()])
        .unwrap()[0]
        .try_extract_array::<f32>()
        .unwrap()
        .to_owned()
}

/// Deployment exports of trained weights: BatchNorm folded into the preceding layer and the
/// dataset normalization built in compute what the plain export computes.
#[test]
fn folded_and_normalized_exports_match_the_plain_export() {
    use nas_graph::testing::random_graph;
    let mut folds = 0;
    for seed in 0..40 {
        let g = random_graph(seed);
        let w = weights(&g, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut dims = vec![3];
        dims.extend(&g.input);
        let x = ArrayD::from_shape_simple_fn(IxDyn(&dims), || normal(&mut rng));
        let plain = export_inference(&g, &w, &ExportOptions::default()).unwrap();
        let want = run_inference(&plain, &x);
        let close = |got: &ArrayD<f32>, what: &str| {
            let e = rel_err(got, &want.mapv(f64::from));
            assert!(e <= 1e-5, "seed {seed}, {what}: differs by {e:e}");
        };
        let folded = ExportOptions {
            fold_batch_norm: true,
            ..Default::default()
        };
        let model = export_inference(&g, &w, &folded).unwrap();
        let bn_nodes = |m: &[u8]| {
            use prost::Message;
            nas_graph::onnx::proto::ModelProto::decode(m)
                .unwrap()
                .graph
                .unwrap()
                .node
                .iter()
                .filter(|n| n.op_type == "BatchNormalization")
                .count()
        };
        folds += bn_nodes(&plain) - bn_nodes(&model);
        close(&run_inference(&model, &x), "folded");

        // Raw data through a normalizing model == normalized data through the plain one.
        let mean: Vec<f32> = (0..3).map(|c| 0.1 * c as f32 - 0.2).collect();
        let std: Vec<f32> = (0..3).map(|c| 0.5 + 0.25 * c as f32).collect();
        let mut raw = x.clone();
        for (c, mut lane) in raw.axis_iter_mut(Axis(1)).enumerate() {
            lane.mapv_inplace(|v| v * std[c] + mean[c]);
        }
        let normalizing = ExportOptions {
            normalize: Some((mean, std)),
            fold_batch_norm: seed.is_multiple_of(2),
            ..Default::default()
        };
        let model = export_inference(&g, &w, &normalizing).unwrap();
        close(&run_inference(&model, &raw), "normalized");
    }
    eprintln!("{folds} BatchNorms folded");
    assert!(folds >= 20, "only {folds} BatchNorms were folded");
}

/// A step with per-sample loss weights all 1 computes what the plain step does, and constant
/// weights `c` scale the loss and every gradient by `c` (the forward, BatchNorm batch
/// statistics included, does not depend on them).
#[test]
fn constant_sample_weights_scale_the_plain_step() {
    let graph = small_net();
    let plain = TrainOptions {
        batch: None,
        emit_gradients: true,
        ..TrainOptions::default()
    };
    let weighted = TrainOptions {
        sample_weights: true,
        ..plain.clone()
    };
    let plain_step = training_step(&graph, &plain).unwrap();
    let weighted_step = training_step(&graph, &weighted).unwrap();
    assert_eq!(plain_step.state, weighted_step.state);
    let (mut sp, mut sw) = (session(&plain_step.model), session(&weighted_step.model));
    let state = initial_state(&plain_step, &weights(&graph, 9)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut b = random_batch(&graph, &plain_step, 5, 3, &mut rng);
    let want = run_step(&mut sp, &plain_step, &b, 0.1, 1.0, &state).unwrap();
    for c in [1.0f32, -0.5] {
        b.sample_weights = Some(ArrayD::from_elem(IxDyn(&[5]), c));
        let got = run_step(&mut sw, &weighted_step, &b, 0.1, 1.0, &state).unwrap();
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
        assert!(
            close(got.loss, c * want.loss),
            "c = {c}: loss {} vs {}",
            got.loss,
            want.loss
        );
        assert_eq!(got.correct, want.correct);
        assert_eq!(got.grads.len(), want.grads.len());
        for (name, g) in &want.grads {
            let scaled = g.mapv(|v| f64::from(c * v));
            let err = rel_err(&got.grads[name], &scaled);
            assert!(err <= 1e-6, "c = {c}: gradient of {name} off by {err:e}");
        }
    }
}

/// Frozen tensors (and their optimizer buffers) leave a step as they entered it, while
/// every other trainable tensor moves; an unknown name is refused.
#[test]
fn frozen_tensors_are_not_updated() {
    let graph = small_net();
    let trainable: Vec<String> = nas_graph::parameter_specs(&graph)
        .unwrap()
        .into_iter()
        .filter(|s| s.role.trainable())
        .map(|s| s.name)
        .collect();
    let frozen: Vec<String> = trainable
        .iter()
        .filter(|n| n.ends_with(".scale") || n.ends_with(".bias"))
        .cloned()
        .collect();
    assert!(!frozen.is_empty() && frozen.len() < trainable.len());
    let options = TrainOptions {
        batch: Some(4),
        optimizer: Optimizer::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        weight_decay: 1e-3,
        label_smoothing: 0.0,
        emit_gradients: false,
        frozen: frozen.clone(),
        conditional_mix: true,
        sample_weights: false,
        entropy_bonus: 0.0,
        nchwc_block: None,
        regression: false,
    };
    let step = training_step(&graph, &options).unwrap();
    let mut s = session(&step.model);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut state = initial_state(&step, &weights(&graph, 5)).unwrap();
    let first = state.clone();
    for k in 0..2 {
        let b = random_batch(&graph, &step, 4, 3, &mut rng);
        state = run_step(&mut s, &step, &b, 0.1, (k + 1) as f32, &state)
            .unwrap()
            .state;
    }
    for ((t, before), after) in step.state.iter().zip(&first).zip(&state) {
        let is_frozen = frozen.contains(&t.param);
        match t.kind {
            StateKind::Param(_) | StateKind::Momentum if is_frozen => {
                assert_eq!(before, after, "{} moved although frozen", t.name)
            }
            StateKind::Param(_) => assert_ne!(before, after, "{} did not train", t.name),
            _ => {}
        }
    }
    let bad = TrainOptions {
        frozen: vec!["n99.scale".into()],
        ..options
    };
    let err = training_step(&graph, &bad).unwrap_err().to_string();
    assert!(err.contains("`n99.scale`"), "{err}");
}

/// Two NB201-like mixed edges behind a stem: per edge `[zero, skip, 1x1 conv, 3x3 conv,
/// pool]`; returns the graph and, per edge, the nodes of each input's branch.
fn two_mixed_edges() -> (Graph, Vec<Vec<Vec<NodeId>>>) {
    let mut b = GraphBuilder::new(&[2, 6, 6]);
    let stem = b.conv(0, 4, 3, 1, 1);
    let stem = b.batch_norm(stem);
    let mut branches = Vec::new();
    let mut edge = |b: &mut GraphBuilder, x: NodeId| {
        let zero = b.add(Op::Zero, &[x]);
        let skip = b.add(Op::Identity, &[x]);
        let mut conv = |k: usize| {
            let r = b.add(Op::Relu, &[x]);
            let c = b.conv(r, 4, k, 1, 1);
            let n = b.batch_norm(c);
            (n, vec![r, c, n])
        };
        let (c1, n1) = conv(1);
        let (c3, n3) = conv(3);
        let pool = b.add(
            Op::AvgPool {
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                count_include_pad: false,
            },
            &[x],
        );
        branches.push(vec![vec![], vec![skip], n1, n3, vec![pool]]);
        b.add(Op::Mix, &[zero, skip, c1, c3, pool])
    };
    let a = edge(&mut b, stem);
    let c = edge(&mut b, a);
    let g = b.add(Op::GlobalAvgPool, &[c]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[g],
    );
    (b.finish(l), branches)
}

/// The loss step is the training step's forward: the same loss and correct count from the
/// same state, mixing weights and batch (dropout included), with no backward or update node
/// and the state fed as it is; with `conditional_mix`, one `If` per wrapped operation's
/// forward and none for a backward.
#[test]
fn the_loss_step_is_the_training_steps_forward() {
    let one_hot = |e: usize| -> Vec<f32> {
        let k = [3, 4][e];
        (0..5).map(|i| if i == k { 1.0 } else { 0.0 }).collect()
    };
    let softmax_like = |e: usize| vec![0.1, 0.2, 0.3 + e as f32 * 0.1, 0.25, 0.0];
    type MixingWeights<'a> = Option<&'a dyn Fn(usize) -> Vec<f32>>;
    let cases: [(Graph, MixingWeights, bool); 4] = [
        (two_mixed_edges().0, Some(&softmax_like), false),
        (two_mixed_edges().0, Some(&softmax_like), true),
        (two_mixed_edges().0, Some(&one_hot), true),
        (small_net(), None, false),
    ];
    for (graph, mix, conditional_mix) in cases {
        let options = TrainOptions {
            batch: Some(6),
            weight_decay: 0.01,
            conditional_mix,
            ..TrainOptions::default()
        };
        let step = training_step(&graph, &options).unwrap();
        let model = loss_step(&graph, &options).unwrap();
        let decoded = ModelProto::decode(model.as_slice()).unwrap();
        let g = decoded.graph.as_ref().unwrap();
        let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, [LOSS, CORRECT]);
        assert!(
            g.input.iter().all(|i| i.name != LR && i.name != STEP),
            "no optimizer inputs"
        );
        let ifs = g.node.iter().filter(|n| n.op_type == "If").count();
        // skip, 1x1, 3x3 and pool of each of the two edges
        assert_eq!(ifs, if conditional_mix { 2 * 4 } else { 0 });
        let full = ModelProto::decode(step.model.as_slice()).unwrap();
        assert!(
            3 * g.node.len() < full.graph.unwrap().node.len(),
            "{} nodes in the loss step: backward or updates left in it",
            g.node.len()
        );
        let mut s_step = session(&step.model);
        let mut s_loss = session(&model);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let state = initial_state(&step, &weights(&graph, 5)).unwrap();
        let mut batch = random_batch(&graph, &step, 6, 3, &mut rng);
        if let Some(w) = mix {
            batch.mixes = (0..2)
                .map(|e| ArrayD::from_shape_vec(IxDyn(&[5]), w(e)).unwrap())
                .collect();
        }
        let full = run_step(&mut s_step, &step, &batch, 0.1, 1.0, &state).unwrap();
        let mut feed: Vec<(String, SessionInputValue<'_>)> = vec![
            (
                INPUT.into(),
                TensorRef::from_array_view(&batch.x).unwrap().into(),
            ),
            (
                LABELS.into(),
                TensorRef::from_array_view(&batch.labels).unwrap().into(),
            ),
        ];
        for (st, v) in step.state.iter().zip(&state) {
            feed.push((
                st.input.clone(),
                TensorRef::from_array_view(v).unwrap().into(),
            ));
        }
        for (m, v) in step.dropout_masks.iter().zip(&batch.masks) {
            feed.push((
                m.input.clone(),
                TensorRef::from_array_view(v).unwrap().into(),
            ));
        }
        for (m, v) in step.mixes.iter().zip(&batch.mixes) {
            feed.push((
                m.input.clone(),
                TensorRef::from_array_view(v).unwrap().into(),
            ));
        }
        let out = s_loss.run(feed).unwrap();
        let loss = out[LOSS].try_extract_scalar::<f32>().unwrap();
        let correct = out[CORRECT].try_extract_scalar::<f32>().unwrap();
        assert!(
            (loss - full.loss).abs() <= 1e-6 * full.loss.abs().max(1.0),
            "conditional {conditional_mix}: loss {loss} against the training step's {}",
            full.loss
        );
        assert_eq!(correct, full.correct);
    }
}

/// With one-hot mixing weights the conditional step computes one path per edge: the same loss,
/// gradients and updates as the plain step on that path, the other operations' parameters,
/// optimizer buffers and running statistics untouched (the plain step moves them by weight
/// decay and momentum), their weight gradients zero. With weights that are nowhere zero both
/// steps are the same computation.
#[test]
fn zero_mixing_weights_skip_their_operations() {
    let (graph, branches) = two_mixed_edges();
    let options = |conditional_mix| TrainOptions {
        batch: Some(6),
        optimizer: Optimizer::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        weight_decay: 0.01,
        conditional_mix,
        ..TrainOptions::default()
    };
    let conditional = training_step(&graph, &options(true)).unwrap();
    let plain = training_step(&graph, &options(false)).unwrap();
    let model = <nas_graph::onnx::proto::ModelProto as prost::Message>::decode(
        conditional.model.as_slice(),
    )
    .unwrap();
    let ifs = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type == "If")
        .count();
    // Per edge a forward If for skip, 1x1, 3x3 and pool, a backward If for all but the skip
    // (whose backward passes the gradient on without a node).
    assert_eq!(ifs, 2 * (4 + 3), "If nodes in the conditional step");
    assert_eq!(conditional.state, plain.state);
    let mut sc = session(&conditional.model);
    let mut sp = session(&plain.model);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let start = initial_state(&conditional, &weights(&graph, 9)).unwrap();

    let close = |a: &ArrayD<f32>, b: &ArrayD<f32>| {
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * scale)
    };
    let selected = [3usize, 4]; // 3x3 conv on the first edge, pooling on the second
    for (case, weights_of) in [
        ("one-hot", &|e: usize| -> Vec<f32> {
            (0..5)
                .map(|k| if k == selected[e] { 1.0 } else { 0.0 })
                .collect()
        } as &dyn Fn(usize) -> Vec<f32>),
        ("softmax-like", &|e: usize| {
            vec![0.1, 0.2, 0.3 + e as f32 * 0.1, 0.25, 0.15]
        }),
    ] {
        let (mut c_state, mut p_state) = (start.clone(), start.clone());
        for k in 0..3 {
            let mut batch = random_batch(&graph, &conditional, 6, 3, &mut rng);
            batch.mixes = (0..2)
                .map(|e| ArrayD::from_shape_vec(IxDyn(&[5]), weights_of(e)).unwrap())
                .collect();
            let c = run_step(&mut sc, &conditional, &batch, 0.1, (k + 1) as f32, &c_state).unwrap();
            let p = run_step(&mut sp, &plain, &batch, 0.1, (k + 1) as f32, &p_state).unwrap();
            assert!(
                (c.loss - p.loss).abs() <= 1e-5 * p.loss.abs().max(1.0),
                "{case}: loss {} against {}",
                c.loss,
                p.loss
            );
            for (e, m) in conditional.mixes.iter().enumerate() {
                let (gc, gp) = (&c.grads[&m.grad], &p.grads[&m.grad]);
                for i in 0..6 {
                    let skipped = case == "one-hot" && i < 5 && i != selected[e] && i > 0;
                    if skipped {
                        assert_eq!(gc[[i]], 0.0, "{case}: edge {e} input {i} gradient");
                    } else {
                        let tol = 1e-5 * gp[[i]].abs().max(1e-3);
                        assert!(
                            (gc[[i]] - gp[[i]]).abs() <= tol,
                            "{case}: edge {e} input {i} gradient {} against {}",
                            gc[[i]],
                            gp[[i]]
                        );
                    }
                }
            }
            c_state = c.state;
            p_state = p.state;
        }
        for (i, t) in conditional.state.iter().enumerate() {
            let owner: NodeId = t.param[1..].split('.').next().unwrap().parse().unwrap();
            let skipped = case == "one-hot"
                && (0..2)
                    .any(|e| (0..5).any(|k| k != selected[e] && branches[e][k].contains(&owner)));
            let statistic = matches!(t.kind, StateKind::RunningMean | StateKind::RunningVar);
            if skipped && statistic {
                assert_eq!(
                    c_state[i], start[i],
                    "{case}: {} moved off the path",
                    t.name
                );
                assert_ne!(p_state[i], start[i], "{case}: plain step left {}", t.name);
            } else {
                assert!(
                    close(&c_state[i], &p_state[i]),
                    "{case}: {} differs",
                    t.name
                );
            }
        }
    }
}

/// The block size of ONNX Runtime's NCHWc kernels on this machine, as its probe model says.
fn nchwc_block() -> usize {
    let mut s = session(&nchwc::probe_model());
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 1, 1]));
    let out = s
        .run(vec![(
            nchwc::PROBE_INPUT.to_string(),
            SessionInputValue::from(TensorRef::from_array_view(&x).unwrap()),
        )])
        .unwrap();
    let blocked = out[nchwc::PROBE_OUTPUT].try_extract_array::<f32>().unwrap();
    blocked.shape()[1]
}

/// Every conv form the NCHWc rewrite takes (RGB stem with plain input, blocked dense, blocked
/// depthwise, strided) next to ones it leaves (1x1, 24 channels).
fn nchwc_net() -> Graph {
    let mut b = GraphBuilder::new(&[3, 10, 10]);
    let conv = |out, k: usize, s, g| Op::Conv2d {
        out_channels: out,
        kernel: [k, k],
        stride: [s, s],
        padding: [k / 2, k / 2],
        dilation: [1, 1],
        groups: g,
        bias: true,
    };
    let stem = b.add(conv(16, 3, 1, 1), &[0]);
    let n1 = b.batch_norm(stem);
    let r1 = b.add(Op::Relu, &[n1]);
    let dense = b.add(conv(16, 3, 1, 1), &[r1]);
    let n2 = b.batch_norm(dense);
    let r2 = b.add(Op::Relu, &[n2]);
    let dw = b.add(conv(16, 3, 1, 16), &[r2]);
    let down = b.add(conv(32, 3, 2, 1), &[dw]);
    let r3 = b.add(Op::Relu, &[down]);
    let point = b.add(conv(24, 1, 1, 1), &[r3]);
    let odd = b.add(conv(16, 3, 1, 1), &[point]);
    let g = b.add(Op::GlobalAvgPool, &[odd]);
    let l = b.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[g],
    );
    b.finish(l)
}

/// The step on ONNX Runtime's NCHWc kernels computes what the standard-op step computes:
/// loss, every gradient and every updated state tensor, over two steps.
#[test]
fn nchwc_step_matches_the_plain_step() {
    let graph = nchwc_net();
    let block = nchwc_block();
    assert!(nchwc::BLOCK_SIZES.contains(&block), "block size {block}");
    let plain = TrainOptions {
        batch: Some(4),
        emit_gradients: true,
        weight_decay: 5e-4,
        ..TrainOptions::default()
    };
    let blocked = TrainOptions {
        nchwc_block: Some(block),
        ..plain.clone()
    };
    let plain_step = training_step(&graph, &plain).unwrap();
    let blocked_step = training_step(&graph, &blocked).unwrap();
    assert_eq!(plain_step.state, blocked_step.state);
    // Forward: stem, dense, depthwise, strided; input gradients: dense, depthwise (the stem's
    // input needs none, the strided conv's takes ConvTranspose, 1x1 stays plain). The 24->16
    // conv's 24 channels are on a block of 8 (AVX2) but not of 16 (AVX-512): its forward and
    // input-gradient convs are blocked only with 8.
    let expected = if block == 8 { 8 } else { 6 };
    let nodes = |model: &[u8], domain: &str| {
        let m = ModelProto::decode(model).unwrap();
        m.graph
            .unwrap()
            .node
            .iter()
            .filter(|n| n.domain == domain && n.op_type == "Conv")
            .count()
    };
    assert_eq!(
        nodes(&blocked_step.model, nchwc::DOMAIN),
        expected,
        "block {block}"
    );
    assert_eq!(nodes(&plain_step.model, nchwc::DOMAIN), 0);
    let (mut sp, mut sb) = (session(&plain_step.model), session(&blocked_step.model));
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut want_state = initial_state(&plain_step, &weights(&graph, 5)).unwrap();
    let mut got_state = want_state.clone();
    for step in 1..=2 {
        let b = random_batch(&graph, &plain_step, 4, 3, &mut rng);
        let want = run_step(&mut sp, &plain_step, &b, 0.1, step as f32, &want_state).unwrap();
        let got = run_step(&mut sb, &blocked_step, &b, 0.1, step as f32, &got_state).unwrap();
        assert!(
            (got.loss - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0),
            "step {step}: loss {} vs {}",
            got.loss,
            want.loss
        );
        assert_eq!(got.grads.len(), want.grads.len());
        for (name, g) in &want.grads {
            let err = rel_err(&got.grads[name], &g.mapv(f64::from));
            assert!(
                err <= 1e-4,
                "step {step}: gradient of {name} off by {err:e}"
            );
        }
        for ((st, a), b) in plain_step.state.iter().zip(&got.state).zip(&want.state) {
            let err = rel_err(a, &b.mapv(f64::from));
            assert!(err <= 1e-4, "step {step}: {} off by {err:e}", st.name);
        }
        (want_state, got_state) = (want.state, got.state);
    }
}

/// A block size ONNX Runtime does not use is refused before any graph is built.
#[test]
fn unknown_nchwc_block_sizes_are_refused() {
    let options = TrainOptions {
        nchwc_block: Some(12),
        ..TrainOptions::default()
    };
    let err = training_step(&nchwc_net(), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nchwc_block 12"), "{err}");
}
