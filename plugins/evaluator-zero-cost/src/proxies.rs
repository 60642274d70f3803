//! The proxies, each computed in ONNX Runtime from nas-graph's training-step graph (forward in
//! training mode, reverse-mode gradients) after the rewrites in [`crate::surgery`].
//!
//! Every model is cut down to the outputs its proxy reads ([`Model::prune`]), so a
//! forward-only proxy never pays for the backward pass or the optimizer update.

use nas_graph::train::{
    INPUT, LABELS, LOSS, LR, Optimizer, STEP, StateKind, TrainOptions, grad_name, initial_state,
    training_step,
};
use nas_graph::weights::{ParamRole, Weights, parameter_specs};
use nas_graph::{Graph, NodeId, Op};
use nas_plugin::PluginError;
use nas_runtime::SessionSettings;
use ndarray::ArrayD;
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::init::{Init, init_weights};
use crate::linalg::{corrcoef, log_abs_det, symmetric_eigenvalues};
use crate::surgery::{
    Model, Output, live_nodes, probe_weight, shift_weights, sum_head_weight, with_batch_variance,
    with_input_probe, with_sum_head, without_batch_norm,
};

/// Stands for a score of minus infinity (a singular kernel, a constant Jacobian, no output
/// change): NASLib's value for a failed `jacov`, finite so metrics stay valid JSON.
pub const DEGENERATE: f64 = -1e8;

/// Zen-NAS's perturbation size (`mixup_gamma`).
pub const ZEN_GAMMA: f32 = 1e-2;

/// The `k` of NASLib's `jacov` score, `-sum(log(v + k) + 1 / (v + k))`.
const JACOV_K: f64 = 1e-5;

/// Slope of the sum head for `jacob_cov`: small, so `sigmoid(c * sum)` is 1/2 for every
/// sample to float32 precision and each sample's Jacobian gets the same weight.
const JACOV_HEAD: f32 = 1.0 / 1048576.0;

/// One batch of inputs `[B, ...input]` with labels.
#[derive(Clone, Debug)]
pub struct Batch {
    pub images: ArrayD<f32>,
    pub labels: Vec<i64>,
}

impl Batch {
    pub fn size(&self) -> usize {
        self.labels.len()
    }

    /// Standard-normal inputs and uniform labels below `classes`.
    pub fn random(shape: &[usize], batch: usize, classes: usize, seed: u64) -> Batch {
        Self::random_inputs(shape, &[], batch, classes, seed)
    }

    /// [`Batch::random`] for `graph`'s input: ids uniform below their vocabulary where it
    /// takes ids (token ids, table codes; see [`Graph::input_ids`]), standard-normal values
    /// elsewhere.
    pub fn random_for(graph: &Graph, batch: usize, classes: usize, seed: u64) -> Batch {
        Self::random_inputs(&graph.input, &graph.input_ids(), batch, classes, seed)
    }

    fn random_inputs(
        shape: &[usize],
        ids: &[(std::ops::Range<usize>, usize)],
        batch: usize,
        classes: usize,
        seed: u64,
    ) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut dims = vec![batch];
        dims.extend_from_slice(shape);
        let sample: usize = shape.iter().product();
        let mut at = 0;
        let images = ArrayD::from_shape_simple_fn(dims, || {
            let i = at % sample.max(1);
            at += 1;
            match ids.iter().find(|(r, _)| r.contains(&i)) {
                Some(&(_, v)) => rand::Rng::random_range(&mut rng, 0..v.max(1)) as f32,
                None => StandardNormal.sample(&mut rng),
            }
        });
        let labels = (0..batch)
            .map(|_| rand::Rng::random_range(&mut rng, 0..classes.max(1)) as i64)
            .collect();
        Batch { images, labels }
    }

    /// From normalized samples in the shape the network takes (`[N, C, H, W]`, `[N, T, F]`,
    /// ...) and labels.
    pub fn from_samples(images: ArrayD<f32>, labels: &[u32]) -> Batch {
        Batch {
            images,
            labels: labels.iter().map(|&l| i64::from(l)).collect(),
        }
    }
}

fn err(what: &str) -> impl Fn(String) -> PluginError + '_ {
    move |e| format!("zero-cost evaluator: {what}: {e}").into()
}

fn ort_err(what: &str) -> impl Fn(ort::Error) -> PluginError + '_ {
    move |e| format!("zero-cost evaluator: ONNX Runtime failed {what}: {e}").into()
}

/// A training-step model of one graph with its weights, ready to be cut down and run.
struct Step {
    model: Model,
    /// `(graph input, value)` for every state tensor (params and BatchNorm statistics).
    state: Vec<(String, ArrayD<f32>)>,
    /// `(state output, kind)`, in state order.
    outputs: Vec<(String, StateKind, String)>,
    batch: usize,
}

impl Step {
    fn new(graph: &Graph, weights: &Weights, batch: usize) -> Result<Step, PluginError> {
        let options = TrainOptions {
            batch: Some(batch),
            optimizer: Optimizer::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            weight_decay: 0.0,
            label_smoothing: 0.0,
            emit_gradients: true,
            frozen: Vec::new(),
            conditional_mix: true,
            sample_weights: false,
            entropy_bonus: 0.0,
            nchwc_block: None,
            regression: false,
        };
        let e = err("cannot build the training-step graph");
        let step = training_step(graph, &options).map_err(|x| e(x.to_string()))?;
        let values = initial_state(&step, weights).map_err(|x| e(x.to_string()))?;
        let model = Model::decode(&step.model).map_err(&e)?;
        let state = step
            .state
            .iter()
            .zip(values)
            .map(|(t, v)| (t.input.clone(), v))
            .collect();
        let outputs = step
            .state
            .iter()
            .map(|t| (t.output.clone(), t.kind, t.param.clone()))
            .collect();
        Ok(Step {
            model,
            state,
            outputs,
            batch,
        })
    }

    /// Cuts the model down to `outputs` and opens a session on it.
    fn session(
        mut self,
        outputs: &[Output],
        runtime: &SessionSettings,
    ) -> Result<Prepared, PluginError> {
        self.model
            .prune(outputs)
            .map_err(err("cannot prepare a model"))?;
        let inputs = self.model.input_names();
        let session = nas_runtime::session_from_bytes(&self.model.encode(), runtime)?;
        Ok(Prepared {
            session,
            inputs,
            state: self.state,
            batch: self.batch,
        })
    }
}

struct Prepared {
    session: Session,
    inputs: Vec<String>,
    state: Vec<(String, ArrayD<f32>)>,
    batch: usize,
}

impl Prepared {
    /// Runs on `images` (`[batch, ...]`) with `labels`; feeds only the inputs the pruned model
    /// still has.
    fn run(
        &mut self,
        images: &ArrayD<f32>,
        labels: &[i64],
    ) -> Result<SessionOutputs<'_>, PluginError> {
        let e = ort_err("to run a proxy model");
        let mut feeds: Vec<(String, SessionInputValue<'_>)> = Vec::new();
        for name in &self.inputs {
            let value: SessionInputValue<'_> = match name.as_str() {
                INPUT => {
                    if images.shape()[0] != self.batch {
                        return Err(format!(
                            "zero-cost evaluator: batch of {} samples, the model takes {}",
                            images.shape()[0],
                            self.batch
                        )
                        .into());
                    }
                    Tensor::from_array(images.clone()).map_err(&e)?.into()
                }
                LABELS => Tensor::from_array(([labels.len()], labels.to_vec()))
                    .map_err(&e)?
                    .into(),
                LR => Tensor::from_array(((), vec![0.0f32])).map_err(&e)?.into(),
                STEP => Tensor::from_array(((), vec![1.0f32])).map_err(&e)?.into(),
                other => {
                    let v = self
                        .state
                        .iter()
                        .find(|(n, _)| n == other)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            format!("zero-cost evaluator: nothing to feed model input `{other}`")
                        })?;
                    Tensor::from_array(v).map_err(&e)?.into()
                }
            };
            feeds.push((name.clone(), value));
        }
        self.session.run(feeds).map_err(e)
    }
}

fn f32_slice<'a>(outputs: &'a SessionOutputs<'_>, name: &str) -> Result<&'a [f32], PluginError> {
    outputs[name]
        .try_extract_tensor::<f32>()
        .map(|(_, d)| d)
        .map_err(ort_err("to return an output"))
}

fn shapes(graph: &Graph) -> Result<Vec<Vec<usize>>, PluginError> {
    graph
        .shapes()
        .map_err(|e| format!("zero-cost evaluator: invalid network: {e}").into())
}

fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect()
}

/// Live conv and linear weights `(name, shape)`: the tensors NASLib's per-weight proxies sum
/// over (`nn.Conv2d` and `nn.Linear` weights, not biases or BatchNorm; in sequence networks
/// also `Dense`, a linear layer over the last axis, and `Conv1d`).
fn scored_weights(graph: &Graph) -> Result<Vec<(String, Vec<usize>)>, PluginError> {
    let live = graph.reachable();
    Ok(parameter_specs(graph)
        .map_err(|e| format!("zero-cost evaluator: invalid network: {e}"))?
        .into_iter()
        .filter(|s| s.role == ParamRole::Weight && live.binary_search(&s.node).is_ok())
        .filter(|s| {
            matches!(
                graph.nodes[s.node].op,
                Op::Conv2d { .. } | Op::Linear { .. } | Op::Dense { .. } | Op::Conv1d { .. }
            )
        })
        .map(|s| (s.name, s.shape))
        .collect())
}

/// What one cross-entropy step on the batch gives: NASWOT from the ReLU codes of its forward
/// pass, grad_norm and snip from its weight gradients.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataScores {
    pub naswot: Option<f64>,
    pub grad_norm: Option<f64>,
    pub snip: Option<f64>,
}

/// NASWOT (Mellor et al. 2021), grad_norm and snip on one batch, BatchNorm in training mode
/// (batch statistics), as NASLib scores them, at `weights`.
pub fn data_scores(
    graph: &Graph,
    weights: &Weights,
    batch: &Batch,
    naswot: bool,
    grads: bool,
    runtime: &SessionSettings,
) -> Result<DataScores, PluginError> {
    let b = batch.size();
    let shapes = shapes(graph)?;
    let mut step = Step::new(graph, weights, b)?;
    let mut outputs = Vec::new();
    let scored = scored_weights(graph)?;
    if grads {
        for (name, shape) in &scored {
            outputs.push(Output::f32(grad_name(name), shape.clone()));
        }
    }
    let relus = live_nodes(graph, |op| matches!(op, Op::Relu));
    let mut codes = Vec::new();
    if naswot {
        for &id in &relus {
            let code = step.model.add_positive_code(&format!("n{id}"));
            outputs.push(Output {
                name: code.clone(),
                elem: nas_graph::onnx::proto::tensor_proto::DataType::Bool,
                dims: batched(b, &shapes[id]),
            });
            codes.push((code, shapes[id].iter().product::<usize>()));
        }
    }
    if outputs.is_empty() {
        return Ok(DataScores::default());
    }
    let weights_of: Vec<(String, ArrayD<f32>)> = scored
        .iter()
        .map(|(n, _)| {
            step.state
                .iter()
                .find(|(s, _)| s == n)
                .cloned()
                .ok_or_else(|| format!("zero-cost evaluator: no state tensor `{n}`"))
        })
        .collect::<Result<_, _>>()?;
    let mut prepared = step.session(&outputs, runtime)?;
    let out = prepared.run(&batch.images, &batch.labels)?;
    let mut scores = DataScores::default();
    if grads {
        let (mut norm, mut snip) = (0.0f64, 0.0f64);
        for (name, w) in &weights_of {
            let g = f32_slice(&out, &grad_name(name))?;
            let w = w
                .as_slice()
                .ok_or("zero-cost evaluator: weights are not contiguous")?;
            norm += g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            snip += g
                .iter()
                .zip(w)
                .map(|(&gv, &wv)| (f64::from(gv) * f64::from(wv)).abs())
                .sum::<f64>();
        }
        scores.grad_norm = Some(norm);
        scores.snip = Some(snip);
    }
    if naswot {
        let mut layers = Vec::with_capacity(codes.len());
        for (name, per_sample) in &codes {
            let (_, data) = out[name.as_str()]
                .try_extract_tensor::<bool>()
                .map_err(ort_err("to return ReLU codes"))?;
            layers.push((data, *per_sample));
        }
        let k = hamming_kernel(&layers, b);
        scores.naswot = Some(finite_or_degenerate(log_abs_det(&k, b)));
    }
    Ok(scores)
}

fn finite_or_degenerate(v: f64) -> f64 {
    if v.is_finite() { v } else { DEGENERATE }
}

/// NASWOT's kernel `K[i][j] = sum over units of [c_i == c_j]` (the paper's
/// `c_i . c_j + (1 - c_i) . (1 - c_j)`) from per-layer binary codes `(codes [B * d], d)`.
/// Codes are packed 64 to a word, each layer starting on a word; equal padding bits never
/// count as a mismatch, and the unit count excludes them.
pub fn hamming_kernel(layers: &[(&[bool], usize)], batch: usize) -> Vec<f64> {
    let words_of = |d: usize| d.div_ceil(64);
    let words: usize = layers.iter().map(|&(_, d)| words_of(d)).sum();
    let units: usize = layers.iter().map(|&(_, d)| d).sum();
    let mut packed = vec![0u64; batch * words];
    let mut offset = 0;
    for &(codes, d) in layers {
        assert_eq!(codes.len(), batch * d, "codes per layer");
        for n in 0..batch {
            let row = &mut packed[n * words + offset..n * words + offset + words_of(d)];
            for (word, chunk) in row.iter_mut().zip(codes[n * d..(n + 1) * d].chunks(64)) {
                *word = chunk
                    .iter()
                    .enumerate()
                    .fold(0u64, |acc, (k, &c)| acc | (u64::from(c) << k));
            }
        }
        offset += words_of(d);
    }
    let mut k = vec![0.0; batch * batch];
    for i in 0..batch {
        k[i * batch + i] = units as f64;
        for j in i + 1..batch {
            let (a, b) = (
                &packed[i * words..(i + 1) * words],
                &packed[j * words..(j + 1) * words],
            );
            let differ: u64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| u64::from((x ^ y).count_ones()))
                .sum();
            let same = (units as u64 - differ) as f64;
            k[i * batch + j] = same;
            k[j * batch + i] = same;
        }
    }
    k
}

/// Synflow (Tanaka et al. 2020) as NASLib scores it: PyTorch-default weights replaced by their
/// absolute values, BatchNorm forwards removed, one all-ones input, `R` = sum of the logits,
/// score = sum over conv and linear weights of `|w * dR/dw|`.
///
/// `R` reaches 1e50 on NB201, beyond float32, so the float32 graph runs a rescaled problem and
/// float64 undoes the scaling: with every bias scaled by the input scale `a`, the network with
/// positive weights is positively homogeneous in (input, biases), so feeding `a * 1` scales
/// every activation and every weight gradient by exactly `a`; the sum head
/// ([`with_sum_head`]) scales the backward pass by `c * sigmoid(c * R_a)`. A first pass at a
/// tiny `a` measures `R`; the second uses `a = c = 2^-round(log2(R) / 2)`, which keeps
/// activations, gradients and products near `sqrt(R)` or 1.
pub fn synflow(graph: &Graph, seed: u64, runtime: &SessionSettings) -> Result<f64, PluginError> {
    let shapes = shapes(graph)?;
    let classes = logit_count(graph, &shapes)?;
    let no_bn = without_batch_norm(graph);
    let (g, head) = with_sum_head(&no_bn);
    let scored = scored_weights(graph)?;
    let base = init_weights(graph, Init::TorchDefault, seed)
        .map_err(|e| format!("zero-cost evaluator: cannot initialise weights: {e}"))?;

    let mut outputs = vec![
        Output::f32(LOSS, vec![]),
        Output::f32(
            format!("n{}", graph.output),
            batched(1, &shapes[graph.output]),
        ),
    ];
    outputs.extend(
        scored
            .iter()
            .map(|(n, s)| Output::f32(grad_name(n), s.clone())),
    );
    let weights_at = |a: f32, c: f32| -> Weights {
        let mut w: Weights = base
            .iter()
            .map(|(name, t)| {
                let t = if name.ends_with(".bias") {
                    t.mapv(|v| v.abs() * a)
                } else {
                    t.mapv(f32::abs)
                };
                (name.to_string(), t)
            })
            .collect();
        w.insert(format!("n{head}.weight"), sum_head_weight(classes, c));
        w
    };
    let mut input_shape = vec![1];
    input_shape.extend_from_slice(&graph.input);
    let labels = [0i64];

    let mut prepared = Step::new(&g, &weights_at(1.0, 1.0), 1)?.session(&outputs, runtime)?;
    let mut pass = |a: f32, c: f32| -> Result<(f64, f64), PluginError> {
        let w = weights_at(a, c);
        for (name, v) in prepared.state.iter_mut() {
            if let Some(t) = w.get(name) {
                *v = t.clone();
            }
        }
        let x = ArrayD::from_elem(input_shape.clone(), a);
        let out = prepared.run(&x, &labels)?;
        let r: f64 = f32_slice(&out, &outputs[1].name)?
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        let mut total = 0.0f64;
        for (name, _) in &scored {
            let g = f32_slice(&out, &grad_name(name))?;
            let w = w.get(name).expect("scored weights exist");
            let w = w
                .as_slice()
                .ok_or("zero-cost evaluator: weights are not contiguous")?;
            total += g
                .iter()
                .zip(w)
                .map(|(&gv, &wv)| (f64::from(gv) * f64::from(wv)).abs())
                .sum::<f64>();
        }
        Ok((r, total))
    };
    let probe_exp = -100i32;
    let (r0, _) = pass(2f32.powi(probe_exp), 1.0)?;
    if !r0.is_finite() {
        return Err(
            "zero-cost evaluator: synflow: the network's output exceeds the float32 \
                    range even on a 2^-100 input"
                .into(),
        );
    }
    let log2_r = r0.log2() - f64::from(probe_exp);
    // A vanishing output (a network cut by `none` edges) needs no rescaling.
    let k = if r0 > 0.0 && log2_r.is_finite() {
        (log2_r / 2.0).round().clamp(-120.0, 120.0) as i32
    } else {
        0
    };
    let (a, c) = (2f32.powi(-k), 2f32.powi(-k));
    let (r, total) = pass(a, c)?;
    let sig = 1.0 / (1.0 + (-(f64::from(c) * r)).exp());
    let score = total / (f64::from(a) * f64::from(c) * sig);
    if !score.is_finite() {
        return Err("zero-cost evaluator: synflow is not finite (float32 overflow)".into());
    }
    Ok(score)
}

fn logit_count(graph: &Graph, shapes: &[Vec<usize>]) -> Result<usize, PluginError> {
    match shapes[graph.output].as_slice() {
        [k] => Ok(*k),
        other => Err(format!(
            "zero-cost evaluator: the network's output must be [classes] logits, found {other:?}"
        )
        .into()),
    }
}

/// Jacobian covariance (Mellor et al. 2020) as NASLib's `jacov`: the rows of
/// [`input_gradients`], `C = corrcoef(J)`, score `-sum(ln(v + k) + 1 / (v + k))` over the
/// eigenvalues `v` of `C`, `k = 1e-5`.
pub fn jacob_cov(
    graph: &Graph,
    weights: &Weights,
    batch: &Batch,
    runtime: &SessionSettings,
) -> Result<f64, PluginError> {
    let b = batch.size();
    let j = input_gradients(graph, weights, batch, runtime)?;
    let Some(corr) = corrcoef(&j, b, j.len() / b) else {
        return Ok(DEGENERATE);
    };
    // Rounding can leave eigenvalues of a singular correlation matrix slightly negative.
    let score: f64 = -symmetric_eigenvalues(&corr, b)
        .into_iter()
        .map(|v| {
            let v = v.max(0.0) + JACOV_K;
            v.ln() + 1.0 / v
        })
        .sum::<f64>();
    Ok(finite_or_degenerate(score))
}

/// `J[i]` = gradient of the sum of all logits of the batch with respect to input `i`,
/// BatchNorm in training mode (so samples interact, as in PyTorch), flattened `[B, ...input]`.
///
/// An identity 1x1 conv inserted after the input ([`with_input_probe`]) makes the training
/// step compute the gradient of its output, which is the input's. The sum head turns the
/// mean cross-entropy into `mean(softplus(c * sum))`, whose gradient is that of the logit sum
/// times `c * sigmoid(c * sum) / B`; at the tiny `c` used the sigmoid is 1/2 to float32
/// precision, and the factor is divided out.
pub fn input_gradients(
    graph: &Graph,
    weights: &Weights,
    batch: &Batch,
    runtime: &SessionSettings,
) -> Result<Vec<f64>, PluginError> {
    let shapes = shapes(graph)?;
    let classes = logit_count(graph, &shapes)?;
    let probed = with_input_probe(graph).map_err(err("jacob_cov"))?;
    let (g, head) = with_sum_head(&probed);
    let mut w = shift_weights(weights, 1);
    w.insert("n1.weight", probe_weight(graph.input[0]));
    w.insert(
        format!("n{head}.weight"),
        sum_head_weight(classes, JACOV_HEAD),
    );
    let b = batch.size();
    let step = Step::new(&g, &w, b)?;
    let Some(dy) = step
        .model
        .input_gradient(&grad_name("n1.weight"))
        .map_err(err("jacob_cov"))?
    else {
        return Ok(vec![0.0; batch.images.len()]);
    };
    let mut prepared = step.session(
        &[Output::f32(dy.clone(), batched(b, &graph.input))],
        runtime,
    )?;
    let labels = vec![0i64; b];
    let out = prepared.run(&batch.images, &labels)?;
    let unscale = 2.0 * b as f64 / f64::from(JACOV_HEAD);
    Ok(f32_slice(&out, &dy)?
        .iter()
        .map(|&v| f64::from(v) * unscale)
        .collect())
}

/// Zen-score (Lin et al. 2021), the paper's definition with one repeat: weights N(0, 1),
/// BatchNorm in training mode, Gaussian inputs `x` and perturbations `d`;
/// `ln(mean over samples of sum |f(x) - f(x + 0.01 d)|) + sum over BatchNorms of
/// ln(sqrt(mean over channels of the batch variance))`, `f` the feature map entering the last
/// global average pool. The batch variance (unbiased) is that of the `f(x)` pass, read from
/// the training step's running-variance output with momentum 1; the Zen-NAS code reads
/// PyTorch running variances after two passes at momentum 0.1 instead.
pub fn zen(
    graph: &Graph,
    batch: usize,
    seed: u64,
    runtime: &SessionSettings,
) -> Result<f64, PluginError> {
    let shapes = shapes(graph)?;
    let pool = live_nodes(graph, |op| matches!(op, Op::GlobalAvgPool));
    let feature: NodeId = match pool.last() {
        Some(&p) if graph.nodes[p].inputs[0] != 0 => graph.nodes[p].inputs[0],
        _ => {
            return Err(
                "zero-cost evaluator: zen needs a global average pool after at least \
                        one layer (it scores the feature map entering it)"
                    .into(),
            );
        }
    };
    let g = with_batch_variance(graph);
    let weights = init_weights(graph, Init::Gaussian, seed)
        .map_err(|e| format!("zero-cost evaluator: cannot initialise weights: {e}"))?;
    let step = Step::new(&g, &weights, batch)?;
    let feature_name = format!("n{feature}");
    let mut outputs = vec![Output::f32(
        feature_name.clone(),
        batched(batch, &shapes[feature]),
    )];
    let vars: Vec<String> = step
        .outputs
        .iter()
        .filter(|(_, kind, _)| *kind == StateKind::RunningVar)
        .map(|(name, _, _)| name.clone())
        .collect();
    for (name, _, param) in step
        .outputs
        .iter()
        .filter(|(_, kind, _)| *kind == StateKind::RunningVar)
    {
        let shape = weights
            .get(param)
            .map(|t| t.shape().to_vec())
            .unwrap_or_default();
        outputs.push(Output::f32(name.clone(), shape));
    }
    let mut prepared = step.session(&outputs, runtime)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x2E4_5C0E);
    let dims = batched(batch, &graph.input);
    let x: ArrayD<f32> =
        ArrayD::from_shape_simple_fn(dims.clone(), || StandardNormal.sample(&mut rng));
    let d: ArrayD<f32> = ArrayD::from_shape_simple_fn(dims, || StandardNormal.sample(&mut rng));
    let mixed = &x + &(d * ZEN_GAMMA);
    let labels = vec![0i64; batch];

    let (f1, log_bn) = {
        let out = prepared.run(&x, &labels)?;
        let f1 = f32_slice(&out, &feature_name)?.to_vec();
        let mut log_bn = 0.0f64;
        for name in &vars {
            let v = f32_slice(&out, name)?;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
            log_bn += mean.sqrt().ln();
        }
        (f1, log_bn)
    };
    let out = prepared.run(&mixed, &labels)?;
    let f2 = f32_slice(&out, &feature_name)?;
    let change = f1
        .iter()
        .zip(f2)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / batch as f64;
    Ok(finite_or_degenerate(change.ln() + log_bn))
}
