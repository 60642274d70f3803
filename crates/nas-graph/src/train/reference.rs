//! A plain-Rust float64 training-mode forward and loss: the function gradient checks
//! differentiate and the source of expected BatchNorm batch statistics.
//!
//! Ops that compute the same in training reuse the inference [`crate::reference`] on a one-node
//! graph; BatchNorm uses batch statistics and Dropout multiplies by the given mask.

use ndarray::{ArrayD, Axis};

use crate::error::GraphError;
use crate::ir::{Graph, Node, NodeId, Op};

/// Result of [`training_forward`].
#[derive(Clone, Debug)]
pub struct TrainingForward {
    /// Mean softmax cross-entropy with label smoothing (weighted per sample and less the
    /// entropy bonus, as [`LossTerms`] say).
    pub loss: f64,
    /// Samples whose argmax (first maximum) equals the label.
    pub correct: usize,
    pub logits: ArrayD<f64>,
    /// Per live BatchNorm node, ascending: `(id, batch mean, unbiased batch variance)`.
    pub batch_stats: Vec<(NodeId, Vec<f64>, Vec<f64>)>,
}

/// The loss terms of [`training_forward_with`], as [`super::TrainOptions`] sets them.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossTerms<'a> {
    pub label_smoothing: f64,
    /// Per-sample weights of the cross-entropy (`None`: all 1).
    pub sample_weights: Option<&'a [f64]>,
    /// Coefficient of the mean softmax entropy subtracted from the loss.
    pub entropy_bonus: f64,
    /// Regression ([`super::TrainOptions::regression`]): the targets of the `[N, 1]` output;
    /// the loss is then the mean squared error and `labels` are not read.
    pub regression_targets: Option<&'a [f64]>,
}

/// The training loss of `graph` on `input` (`[N, ...graph.input]`) and `labels`, with every
/// tensor looked up through `param`, and what the training step takes per step through `fed`:
/// each live Dropout node's `[N, ...]` mask and each live Mix node's `[inputs]` weights.
pub fn training_forward(
    graph: &Graph,
    param: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    input: &ArrayD<f64>,
    labels: &[i64],
    fed: &dyn Fn(NodeId) -> Option<ArrayD<f64>>,
    label_smoothing: f64,
) -> Result<TrainingForward, GraphError> {
    let terms = LossTerms {
        label_smoothing,
        ..LossTerms::default()
    };
    training_forward_with(graph, param, input, labels, fed, &terms)
}

/// [`training_forward`] with every loss term: `sum_i w_i CE_i / N - beta mean_i H(p_i)`.
pub fn training_forward_with(
    graph: &Graph,
    param: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    input: &ArrayD<f64>,
    labels: &[i64],
    fed: &dyn Fn(NodeId) -> Option<ArrayD<f64>>,
    terms: &LossTerms<'_>,
) -> Result<TrainingForward, GraphError> {
    let shapes = graph.shapes()?;
    let n = input.shape().first().copied().unwrap_or(0);
    if input.shape().len() != graph.input.len() + 1
        || n == 0
        || input.shape()[1..] != graph.input[..]
    {
        return Err(GraphError::InputShape {
            expected: graph.input.clone(),
            found: input.shape().to_vec(),
        });
    }
    let mut values: Vec<Option<ArrayD<f64>>> = vec![None; graph.nodes.len()];
    let mut batch_stats = Vec::new();
    for id in graph.reachable() {
        let node = &graph.nodes[id];
        let ins: Vec<&ArrayD<f64>> = node
            .inputs
            .iter()
            .map(|&i| values[i].as_ref().expect("inputs of a live node are live"))
            .collect();
        let p = |role: &str| {
            let name = format!("n{id}.{role}");
            param(&name).ok_or(GraphError::MissingWeight { name })
        };
        let seq_param = |role: &str| p(role);
        if let Some(y) = crate::reference::sequence::forward(id, &node.op, &ins, &seq_param, n)? {
            values[id] = Some(y);
            continue;
        }
        let y = match &node.op {
            Op::Input => input.clone(),
            Op::BatchNorm { eps, .. } => {
                let x = ins[0];
                let (scale, shift) = (p("scale")?, p("bias")?);
                let c = x.shape()[1];
                let mut y = x.clone();
                let (mut means, mut vars) = (Vec::with_capacity(c), Vec::with_capacity(c));
                for (ch, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
                    let count = lane.len() as f64;
                    let mean = lane.sum() / count;
                    let ss = lane.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
                    let k = scale[[ch]] / (ss / count + f64::from(*eps)).sqrt();
                    lane.mapv_inplace(|v| (v - mean) * k + shift[[ch]]);
                    means.push(mean);
                    vars.push(ss / (count - 1.0));
                }
                batch_stats.push((id, means, vars));
                y
            }
            Op::Dropout { .. } => {
                let m = fed(id)
                    .ok_or_else(|| GraphError::node(id, &node.op, "no dropout mask given"))?;
                if m.shape() != ins[0].shape() {
                    return Err(GraphError::node(
                        id,
                        &node.op,
                        format!("mask shape {:?}, expected {:?}", m.shape(), ins[0].shape()),
                    ));
                }
                ins[0] * &m
            }
            Op::Mix => {
                let m = fed(id)
                    .ok_or_else(|| GraphError::node(id, &node.op, "no mixing weights given"))?;
                if m.shape() != [ins.len()] {
                    return Err(GraphError::node(
                        id,
                        &node.op,
                        format!(
                            "mixing weights of shape {:?}, expected [{}]",
                            m.shape(),
                            ins.len()
                        ),
                    ));
                }
                let mut acc = ins[0] * m[0];
                for (x, w) in ins[1..].iter().zip(m.iter().skip(1)) {
                    acc.scaled_add(*w, *x);
                }
                acc
            }
            Op::Add => {
                let mut acc = ins[0].clone();
                for x in &ins[1..] {
                    acc += *x;
                }
                acc
            }
            Op::Concat => {
                let views: Vec<_> = ins.iter().map(|x| x.view()).collect();
                ndarray::concatenate(Axis(1), &views).expect("validated shapes")
            }
            op => {
                // Same in training and inference: the inference reference on a one-node graph.
                let one = Graph {
                    input: shapes[node.inputs[0]].clone(),
                    nodes: vec![
                        Node {
                            op: Op::Input,
                            inputs: vec![],
                        },
                        Node {
                            op: op.clone(),
                            inputs: vec![0],
                        },
                    ],
                    output: 1,
                };
                let lookup = |name: &str| {
                    name.strip_prefix("n1.")
                        .and_then(|role| param(&format!("n{id}.{role}")))
                };
                crate::reference::forward_with(&one, &lookup, ins[0])?
            }
        };
        values[id] = Some(y);
    }
    let logits = values[graph.output]
        .take()
        .expect("the output node is always computed");
    let (loss, correct) = match terms.regression_targets {
        Some(targets) => (squared_error(&logits, targets)?, 0),
        None => cross_entropy(&logits, labels, terms)?,
    };
    Ok(TrainingForward {
        loss,
        correct,
        logits,
        batch_stats,
    })
}

/// Mean squared error of `[N, 1]` predictions.
fn squared_error(predictions: &ArrayD<f64>, targets: &[f64]) -> Result<f64, GraphError> {
    if predictions.shape() != [targets.len(), 1] {
        return Err(GraphError::Export(format!(
            "regression needs [N, 1] predictions for {} targets, got {:?}",
            targets.len(),
            predictions.shape()
        )));
    }
    let sum: f64 = predictions
        .iter()
        .zip(targets)
        .map(|(p, y)| (p - y).powi(2))
        .sum();
    Ok(sum / targets.len().max(1) as f64)
}

/// Mean smoothed (weighted, entropy-regularized) cross-entropy and the argmax hit count of
/// `[N, K]` logits.
fn cross_entropy(
    logits: &ArrayD<f64>,
    labels: &[i64],
    terms: &LossTerms<'_>,
) -> Result<(f64, usize), GraphError> {
    let smoothing = terms.label_smoothing;
    let (n, k) = match logits.shape() {
        &[n, k] => (n, k),
        s => {
            return Err(GraphError::Export(format!(
                "training needs [N, classes] logits, got {s:?}"
            )));
        }
    };
    if labels.len() != n || labels.iter().any(|&l| l < 0 || l as usize >= k) {
        return Err(GraphError::Export(format!(
            "expected {n} labels in [0, {k}), got {labels:?}"
        )));
    }
    if let Some(w) = terms.sample_weights
        && w.len() != n
    {
        return Err(GraphError::Export(format!(
            "expected {n} sample weights, got {}",
            w.len()
        )));
    }
    let mut loss = 0.0;
    let mut correct = 0;
    for (i, (row, &label)) in logits.axis_iter(Axis(0)).zip(labels).enumerate() {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let weight = terms.sample_weights.map_or(1.0, |w| w[i]);
        for (c, &z) in row.iter().enumerate() {
            let q = smoothing / k as f64
                + if c as i64 == label {
                    1.0 - smoothing
                } else {
                    0.0
                };
            let logp = z - lse;
            loss -= weight * q * logp;
            // Minus the entropy bonus: beta * sum_c p log p.
            loss += terms.entropy_bonus * logp.exp() * logp;
        }
        let argmax = row
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv { (i, v) } else { (bi, bv) }
            })
            .0;
        correct += usize::from(argmax as i64 == label);
    }
    Ok((loss / n as f64, correct))
}
