//! The inference exporter: IR + weights -> ONNX `ModelProto` bytes (weights as initializers).

use std::collections::{HashMap, HashSet};
use std::fmt;

use prost::Message;

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    ValueInfoProto, tensor_proto::DataType,
};
use super::sequence::FLOAT;
use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};
use crate::weights::{Weights, parameter_specs};

pub(crate) use super::sequence::Context;

use ndarray::{ArrayD, Axis};

/// The ONNX opset every exporter of this crate targets. Pinned: `ReduceMean` takes its axes as
/// an attribute up to 17 (an input from 18), and the training emitter relies on that.
pub const OPSET: i64 = 17;

/// IR version 8 is the one released with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// Name of the symbolic batch dimension of dynamic-batch exports.
pub const BATCH_DIM: &str = "batch";

#[derive(Clone, Debug, PartialEq)]
pub struct ExportOptions {
    /// Fixed batch size, or `None` for a dynamic dimension named `"batch"`.
    pub batch: Option<usize>,
    /// Name of the graph input (default `"input"`).
    pub input_name: String,
    /// Name of the graph output (default `"logits"`).
    pub output_name: String,
    /// Per-channel `(mean, std)` (one value per entry of axis `normalize_axis` of
    /// `graph.input`) applied as the model's first nodes, `(x - mean) / std`, so the model
    /// takes data exactly as the dataset stores it. Default `None`.
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
    /// The per-sample axis of `graph.input` that `normalize` indexes: 0 for the channels of
    /// images `[C, H, W]` (the default), 1 for the features of sequences `[T, F]`.
    pub normalize_axis: usize,
    /// Padded float sequences `[T, F]`: steps whose features are all 0 are padding and stay
    /// 0 after the normalization (as in training, so the network's padding mask finds them).
    pub normalize_keep_padding: bool,
    /// Fold each BatchNorm into the Conv or Linear directly before it, when that node's output
    /// has no other consumer (its weights are scaled and it gains a bias). Default `false`.
    pub fold_batch_norm: bool,
    /// `(std, mean)`: the model outputs `y * std + mean` of the network's output `y` (a
    /// regression network trained on standardized targets then predicts in the targets'
    /// units). Default `None`.
    pub output_scale: Option<(f32, f32)>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch: None,
            input_name: "input".into(),
            output_name: "logits".into(),
            normalize: None,
            normalize_axis: 0,
            normalize_keep_padding: false,
            fold_batch_norm: false,
            output_scale: None,
        }
    }
}

/// Names and shapes (batch axis first) of an exported model's input and output; a `None`
/// dimension is the dynamic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphSignature {
    pub input_name: String,
    pub input_shape: Vec<Option<usize>>,
    pub output_name: String,
    pub output_shape: Vec<Option<usize>>,
}

fn fmt_shape(shape: &[Option<usize>]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| BATCH_DIM.to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", dims.join(", "))
}

impl fmt::Display for GraphSignature {
    /// `input [batch, 3, 32, 32] -> logits [batch, 10]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} {}",
            self.input_name,
            fmt_shape(&self.input_shape),
            self.output_name,
            fmt_shape(&self.output_shape)
        )
    }
}

/// The input and output an [`export_inference`] model with these options will have.
pub fn graph_signature(
    graph: &Graph,
    options: &ExportOptions,
) -> Result<GraphSignature, GraphError> {
    let shapes = graph.shapes()?;
    let with_batch = |s: &[usize]| -> Vec<Option<usize>> {
        std::iter::once(options.batch)
            .chain(s.iter().map(|&d| Some(d)))
            .collect()
    };
    Ok(GraphSignature {
        input_name: options.input_name.clone(),
        input_shape: with_batch(&graph.input),
        output_name: options.output_name.clone(),
        output_shape: with_batch(&shapes[graph.output]),
    })
}

/// Exports the inference graph (BatchNorm with running statistics, Dropout as Identity) as
/// serialized ONNX `ModelProto` bytes, opset [`OPSET`], float32, weights as initializers.
/// Only nodes that reach the output are written.
///
/// `Zero` becomes `ConstantOfShape(Shape(x))`: exact zeros whatever `x` holds (`Mul(x, 0)` and
/// `Sub(x, x)` give NaN for inf/NaN inputs) and it keeps a dynamic batch working.
pub fn export_inference(
    graph: &Graph,
    weights: &Weights,
    options: &ExportOptions,
) -> Result<Vec<u8>, GraphError> {
    Ok(inference_model(graph, weights, options)?.encode_to_vec())
}

/// [`export_inference`] before serialization.
pub fn inference_model(
    graph: &Graph,
    weights: &Weights,
    options: &ExportOptions,
) -> Result<ModelProto, GraphError> {
    let sig = graph_signature(graph, options)?;
    if options.input_name.is_empty()
        || options.output_name.is_empty()
        || options.input_name == options.output_name
    {
        return Err(GraphError::Export(format!(
            "input name `{}` and output name `{}` must be non-empty and different",
            options.input_name, options.output_name
        )));
    }
    if options.batch == Some(0) {
        return Err(GraphError::Export(
            "a fixed batch size must be positive".into(),
        ));
    }
    let live = graph.reachable();
    let mut is_live = vec![false; graph.nodes.len()];
    for &id in &live {
        is_live[id] = true;
        if graph.nodes[id].op == Op::Mix {
            return Err(GraphError::node(
                id,
                &Op::Mix,
                crate::reference::MIX_NEEDS_WEIGHTS,
            ));
        }
    }

    let folds = if options.fold_batch_norm {
        batch_norm_folds(graph, &live)
    } else {
        HashMap::new()
    };
    let folded_bn: HashSet<NodeId> = folds.values().copied().collect();

    let mut b = Builder::default();
    for spec in parameter_specs(graph)?
        .into_iter()
        .filter(|s| is_live[s.node] && !folds.contains_key(&s.node) && !folded_bn.contains(&s.node))
    {
        let t = weights.require(&spec.name)?;
        if t.shape() != spec.shape.as_slice() {
            return Err(GraphError::WeightShape {
                name: spec.name,
                expected: spec.shape,
                found: t.shape().to_vec(),
            });
        }
        b.initializers.push(TensorProto::from_f32(
            &spec.name,
            &spec.shape,
            t.iter().copied(),
        ));
    }
    let mut fold_order: Vec<(NodeId, NodeId)> = folds.iter().map(|(&l, &bn)| (l, bn)).collect();
    fold_order.sort_unstable();
    for &(layer, bn) in &fold_order {
        let (w, bias) = fold_batch_norm(graph, weights, layer, bn)?;
        b.initializers.push(TensorProto::from_f32(
            &format!("n{layer}.weight"),
            w.shape(),
            w.iter().copied(),
        ));
        b.initializers.push(TensorProto::from_f32(
            &format!("n{layer}.bias"),
            bias.shape(),
            bias.iter().copied(),
        ));
    }

    if let Some((mean, std)) = &options.normalize {
        emit_normalization(
            &mut b,
            graph,
            (mean, std),
            options.normalize_axis,
            &options.input_name,
            options.normalize_keep_padding,
        )?;
    }

    let value = |id: NodeId| value_name(graph, id, options);
    let shapes = graph.shapes()?;
    let input_value = value(0);
    for &id in live.iter().filter(|&&id| id != 0) {
        if folded_bn.contains(&id) {
            continue;
        }
        let node = &graph.nodes[id];
        let ins: Vec<String> = node.inputs.iter().map(|&i| value(i)).collect();
        let ctx = Context {
            in_shapes: node.inputs.iter().map(|&i| shapes[i].as_slice()).collect(),
            input: &input_value,
            batch: options.batch,
        };
        match folds.get(&id) {
            // The layer writes the BatchNorm's value directly, with the folded bias.
            Some(&bn) => {
                let mut op = node.op.clone();
                if let Op::Conv2d { bias, .. } | Op::Linear { bias, .. } = &mut op {
                    *bias = true;
                }
                emit_node(&mut b, id, &op, &ins, &value(bn), &ctx);
            }
            None => emit_node(&mut b, id, &node.op, &ins, &value(id), &ctx),
        }
    }
    if let Some((std, mean)) = options.output_scale {
        let y = if graph.output == 0 {
            value(0)
        } else {
            format!("n{}", graph.output)
        };
        for (name, v) in [("output_scale.std", std), ("output_scale.mean", mean)] {
            b.initializers
                .push(TensorProto::from_f32(name, &[1], std::iter::once(v)));
        }
        b.node(
            "Mul",
            "output_scale_mul",
            &[&y, "output_scale.std"],
            "output_scale.scaled",
            vec![],
        );
        b.node(
            "Add",
            "output_scale_add",
            &["output_scale.scaled", "output_scale.mean"],
            &options.output_name,
            vec![],
        );
    } else if graph.output == 0 {
        b.node(
            "Identity",
            "n0_out",
            &[&value(0)],
            &options.output_name,
            vec![],
        );
    }

    // Every value must have one producer, and the input name must not be reused internally.
    let mut produced = HashSet::new();
    let names = b
        .initializers
        .iter()
        .map(|t| &t.name)
        .chain(b.nodes.iter().flat_map(|n| &n.output));
    for name in names {
        if !produced.insert(name.as_str()) || *name == options.input_name {
            return Err(GraphError::Export(format!(
                "value name `{name}` is used twice; choose input/output names that do not look \
                 like internal names (`n<id>`, `n<id>.weight`, `const_*`)"
            )));
        }
    }

    let dims = |shape: &[Option<usize>]| -> Vec<Result<i64, String>> {
        shape
            .iter()
            .map(|d| d.map(|v| v as i64).ok_or_else(|| BATCH_DIM.to_string()))
            .collect()
    };
    let graph_proto = GraphProto {
        node: b.nodes,
        name: "nas".into(),
        initializer: b.initializers,
        input: vec![ValueInfoProto::tensor(
            &sig.input_name,
            DataType::Float,
            &dims(&sig.input_shape),
        )],
        output: vec![ValueInfoProto::tensor(
            &sig.output_name,
            DataType::Float,
            &dims(&sig.output_shape),
        )],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "nas-graph".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph_proto),
        ..Default::default()
    })
}

/// The ONNX value name of node `id` in an [`export_inference`] model: the input name for
/// node 0 (`n0`, the normalized input, with [`ExportOptions::normalize`]), the output name for
/// the output node (unless [`ExportOptions::output_scale`] follows it), `n{id}` otherwise.
pub fn value_name(graph: &Graph, id: NodeId, options: &ExportOptions) -> String {
    if id == 0 {
        if options.normalize.is_some() {
            "n0".into()
        } else {
            options.input_name.clone()
        }
    } else if id == graph.output && options.output_scale.is_none() {
        options.output_name.clone()
    } else {
        format!("n{id}")
    }
}

/// Makes the values of `nodes` extra outputs of `model` (ORT only returns graph outputs), e.g.
/// to read activations for zero-cost scores. Returns their names, in order. The nodes must
/// reach the graph output (others are not exported) and must not be the input node.
pub fn add_outputs(
    model: &mut ModelProto,
    graph: &Graph,
    nodes: &[NodeId],
    options: &ExportOptions,
) -> Result<Vec<String>, GraphError> {
    let shapes = graph.shapes()?;
    let live = graph.reachable();
    let proto = model
        .graph
        .as_mut()
        .ok_or_else(|| GraphError::Export("the model has no graph".into()))?;
    let mut names = Vec::with_capacity(nodes.len());
    for &id in nodes {
        if id == 0 || live.binary_search(&id).is_err() {
            return Err(GraphError::Export(format!(
                "node {id} cannot be an output: it is the input or does not reach the graph output"
            )));
        }
        let name = value_name(graph, id, options);
        if !proto.output.iter().any(|o| o.name == name) {
            let mut dims = vec![
                options
                    .batch
                    .map(|b| b as i64)
                    .ok_or_else(|| BATCH_DIM.to_string()),
            ];
            dims.extend(shapes[id].iter().map(|&d| Ok(d as i64)));
            proto
                .output
                .push(ValueInfoProto::tensor(&name, DataType::Float, &dims));
        }
        names.push(name);
    }
    Ok(names)
}

/// `(x - mean) / std` per input channel into the value `n0`; with `keep_padding`, times 0 on
/// the steps of a `[T, F]` input whose features are all 0.
fn emit_normalization(
    b: &mut Builder,
    graph: &Graph,
    (mean, std): (&[f32], &[f32]),
    axis: usize,
    input: &str,
    keep_padding: bool,
) -> Result<(), GraphError> {
    if keep_padding && (graph.input.len() != 2 || axis != 1) {
        return Err(GraphError::Export(format!(
            "padding is kept only for sequences [T, F] normalized per feature (axis 1); the input is {:?}, axis {axis}",
            graph.input
        )));
    }
    let Some(&c) = graph.input.get(axis) else {
        return Err(GraphError::Export(format!(
            "normalization along axis {axis}, but the input {:?} has {} axes",
            graph.input,
            graph.input.len()
        )));
    };
    if mean.len() != c || std.len() != c {
        return Err(GraphError::Export(format!(
            "normalization needs one mean and one std per input channel ({c}) along axis {axis} of {:?}, got {} and {}",
            graph.input,
            mean.len(),
            std.len()
        )));
    }
    if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(GraphError::Export(format!(
            "normalization mean {mean:?} must be finite and std {std:?} positive and finite"
        )));
    }
    // [C, 1, ...] (ones for the axes after `axis`) broadcasts against [N, ..., C, ...].
    let mut dims = vec![c];
    dims.extend(std::iter::repeat_n(1, graph.input.len() - 1 - axis));
    b.initializers.push(TensorProto::from_f32(
        "n0_mean",
        &dims,
        mean.iter().copied(),
    ));
    b.initializers
        .push(TensorProto::from_f32("n0_std", &dims, std.iter().copied()));
    b.node(
        "Sub",
        "n0_centred",
        &[input, "n0_mean"],
        "n0_centred",
        vec![],
    );
    if !keep_padding {
        b.node("Div", "n0", &["n0_centred", "n0_std"], "n0", vec![]);
        return Ok(());
    }
    b.node(
        "Div",
        "n0_scaled",
        &["n0_centred", "n0_std"],
        "n0_scaled",
        vec![],
    );
    // [N, T, 1]: 1 where some feature of the step is not 0.
    let zero = b.scalar(0.0);
    b.node("Abs", "n0_abs", &[input], "n0_abs", vec![]);
    b.node(
        "ReduceMax",
        "n0_top",
        &["n0_abs"],
        "n0_top",
        vec![
            AttributeProto::ints("axes", &[2]),
            AttributeProto::int("keepdims", 1),
        ],
    );
    b.node("Greater", "n0_real", &["n0_top", &zero], "n0_real", vec![]);
    b.node(
        "Cast",
        "n0_keep",
        &["n0_real"],
        "n0_keep",
        vec![AttributeProto::int("to", FLOAT)],
    );
    b.node("Mul", "n0", &["n0_scaled", "n0_keep"], "n0", vec![]);
    Ok(())
}

/// Conv or Linear nodes whose only consumer is an inference BatchNorm: `layer -> batch norm`.
fn batch_norm_folds(graph: &Graph, live: &[NodeId]) -> HashMap<NodeId, NodeId> {
    let mut uses = vec![0usize; graph.nodes.len()];
    for &id in live {
        for &i in &graph.nodes[id].inputs {
            uses[i] += 1;
        }
    }
    live.iter()
        .filter_map(|&bn| {
            let node = &graph.nodes[bn];
            let &[layer] = node.inputs.as_slice() else {
                return None;
            };
            let foldable = matches!(node.op, Op::BatchNorm { .. })
                && matches!(graph.nodes[layer].op, Op::Conv2d { .. } | Op::Linear { .. })
                && uses[layer] == 1
                && layer != graph.output;
            foldable.then_some((layer, bn))
        })
        .collect()
}

/// Weight and bias of `layer` with BatchNorm `bn` folded in (computed in f64):
/// `k = scale / sqrt(var + eps)`, `W' = W k` per output channel, `b' = (b - mean) k + shift`.
fn fold_batch_norm(
    graph: &Graph,
    weights: &Weights,
    layer: NodeId,
    bn: NodeId,
) -> Result<(ArrayD<f32>, ArrayD<f32>), GraphError> {
    let Op::BatchNorm { eps, .. } = graph.nodes[bn].op else {
        unreachable!("folds pair a layer with a BatchNorm")
    };
    let specs = parameter_specs(graph)?;
    let get = |name: String| -> Result<ArrayD<f64>, GraphError> {
        let t = weights.require(&name)?;
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .expect("the names come from parameter_specs");
        if t.shape() != spec.shape.as_slice() {
            return Err(GraphError::WeightShape {
                name,
                expected: spec.shape.clone(),
                found: t.shape().to_vec(),
            });
        }
        Ok(t.mapv(f64::from))
    };
    let w = get(format!("n{layer}.weight"))?;
    let out = w.shape()[0];
    let bias = match &graph.nodes[layer].op {
        Op::Conv2d { bias: true, .. } | Op::Linear { bias: true, .. } => {
            get(format!("n{layer}.bias"))?
        }
        _ => ArrayD::zeros(ndarray::IxDyn(&[out])),
    };
    let (scale, shift) = (get(format!("n{bn}.scale"))?, get(format!("n{bn}.bias"))?);
    let (mean, var) = (get(format!("n{bn}.mean"))?, get(format!("n{bn}.var"))?);
    let k: Vec<f64> = (0..out)
        .map(|c| scale[[c]] / (var[[c]] + f64::from(eps)).sqrt())
        .collect();
    let mut w2 = w;
    for (c, mut lane) in w2.axis_iter_mut(Axis(0)).enumerate() {
        lane.mapv_inplace(|v| v * k[c]);
    }
    let b2 = ArrayD::from_shape_fn(ndarray::IxDyn(&[out]), |i| {
        let c = i[0];
        (bias[[c]] - mean[[c]]) * k[c] + shift[[c]]
    });
    Ok((w2.mapv(|v| v as f32), b2.mapv(|v| v as f32)))
}

/// Collects nodes and initializers; shared scalar and int64 constants are created once.
#[derive(Default)]
pub(crate) struct Builder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    scalars: Vec<(u32, String)>,
    ints: Vec<(Vec<i64>, String)>,
}

impl Builder {
    pub fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// The name of a float32 scalar initializer holding `v`.
    pub fn scalar(&mut self, v: f32) -> String {
        if let Some((_, name)) = self.scalars.iter().find(|(bits, _)| *bits == v.to_bits()) {
            return name.clone();
        }
        let name = format!("const_{}", self.scalars.len());
        self.initializers
            .push(TensorProto::from_f32(&name, &[], [v]));
        self.scalars.push((v.to_bits(), name.clone()));
        name
    }

    /// The name of a 1-D int64 initializer holding `v` (shapes, axes, indices).
    pub fn ints(&mut self, v: &[i64]) -> String {
        if let Some((_, name)) = self.ints.iter().find(|(vals, _)| vals == v) {
            return name.clone();
        }
        let name = format!("i64_{}", self.ints.len());
        self.initializers
            .push(TensorProto::from_i64(&name, &[v.len()], v));
        self.ints.push((v.to_vec(), name.clone()));
        name
    }
}

pub(crate) fn pair(v: [usize; 2]) -> Vec<i64> {
    vec![v[0] as i64, v[1] as i64]
}

/// ONNX pads are `[top, left, bottom, right]`; the IR pads symmetrically.
pub(crate) fn pads(p: [usize; 2]) -> Vec<i64> {
    vec![p[0] as i64, p[1] as i64, p[0] as i64, p[1] as i64]
}

pub(crate) fn emit_node(
    b: &mut Builder,
    id: NodeId,
    op: &Op,
    ins: &[String],
    out: &str,
    ctx: &Context,
) {
    if super::sequence::emit(b, id, op, ins, out, ctx) {
        return;
    }
    let name = format!("n{id}");
    let x = ins.first().map(String::as_str).unwrap_or_default();
    let tmp = |s: &str| format!("n{id}_{s}");
    match op {
        Op::Input => {}
        Op::Conv2d {
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
            ..
        } => {
            let w = format!("n{id}.weight");
            let bias_name = format!("n{id}.bias");
            let mut inputs = vec![x, w.as_str()];
            if *bias {
                inputs.push(&bias_name);
            }
            b.node(
                "Conv",
                &name,
                &inputs,
                out,
                vec![
                    AttributeProto::ints("kernel_shape", &pair(*kernel)),
                    AttributeProto::ints("strides", &pair(*stride)),
                    AttributeProto::ints("pads", &pads(*padding)),
                    AttributeProto::ints("dilations", &pair(*dilation)),
                    AttributeProto::int("group", *groups as i64),
                ],
            );
        }
        Op::BatchNorm { eps, .. } => {
            let p = |s: &str| format!("n{id}.{s}");
            let (s, bb, m, v) = (p("scale"), p("bias"), p("mean"), p("var"));
            b.node(
                "BatchNormalization",
                &name,
                &[x, &s, &bb, &m, &v],
                out,
                vec![AttributeProto::float("epsilon", *eps)],
            );
        }
        Op::Relu => b.node("Relu", &name, &[x], out, vec![]),
        Op::Relu6 => {
            let (lo, hi) = (b.scalar(0.0), b.scalar(6.0));
            b.node("Clip", &name, &[x, &lo, &hi], out, vec![]);
        }
        Op::Sigmoid => b.node("Sigmoid", &name, &[x], out, vec![]),
        Op::Silu => {
            let s = tmp("sigmoid");
            b.node("Sigmoid", &s, &[x], &s, vec![]);
            b.node("Mul", &name, &[x, &s], out, vec![]);
        }
        Op::Gelu => {
            // 0.5 * x * (1 + erf(x / sqrt(2))): opset 17 has no Gelu.
            let sqrt2 = b.scalar(std::f32::consts::SQRT_2);
            let one = b.scalar(1.0);
            let half = b.scalar(0.5);
            let (d, e, a, m) = (tmp("div"), tmp("erf"), tmp("add"), tmp("mul"));
            b.node("Div", &d, &[x, &sqrt2], &d, vec![]);
            b.node("Erf", &e, &[&d], &e, vec![]);
            b.node("Add", &a, &[&e, &one], &a, vec![]);
            b.node("Mul", &m, &[x, &a], &m, vec![]);
            b.node("Mul", &name, &[&m, &half], out, vec![]);
        }
        Op::Add => match ins {
            [one] => b.node("Identity", &name, &[one.as_str()], out, vec![]),
            // Pairwise Adds: ONNX Runtime's Sum of three or more tensors is 2-3x slower.
            [first, middle @ .., last] => {
                let mut acc = first.clone();
                for (i, x) in middle.iter().enumerate() {
                    let partial = format!("{out}.sum{i}");
                    b.node("Add", &partial, &[&acc, x], &partial, vec![]);
                    acc = partial;
                }
                b.node("Add", &name, &[&acc, last], out, vec![]);
            }
            [] => unreachable!("Add has inputs"),
        },
        Op::Mix => unreachable!("inference_model rejects mixed edges; training emits its own"),
        Op::Concat => {
            let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
            b.node(
                "Concat",
                &name,
                &refs,
                out,
                vec![AttributeProto::int("axis", 1)],
            );
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
            count_include_pad,
        } => b.node(
            "AveragePool",
            &name,
            &[x],
            out,
            vec![
                AttributeProto::ints("kernel_shape", &pair(*kernel)),
                AttributeProto::ints("strides", &pair(*stride)),
                AttributeProto::ints("pads", &pads(*padding)),
                AttributeProto::int("count_include_pad", *count_include_pad as i64),
            ],
        ),
        Op::MaxPool {
            kernel,
            stride,
            padding,
        } => b.node(
            "MaxPool",
            &name,
            &[x],
            out,
            vec![
                AttributeProto::ints("kernel_shape", &pair(*kernel)),
                AttributeProto::ints("strides", &pair(*stride)),
                AttributeProto::ints("pads", &pads(*padding)),
            ],
        ),
        Op::GlobalAvgPool => {
            // GlobalAveragePool keeps [N, C, 1, 1]; flatten so the value is [N, C] as in the IR.
            let g = tmp("gap");
            b.node("GlobalAveragePool", &g, &[x], &g, vec![]);
            b.node(
                "Flatten",
                &name,
                &[&g],
                out,
                vec![AttributeProto::int("axis", 1)],
            );
        }
        Op::Flatten => b.node(
            "Flatten",
            &name,
            &[x],
            out,
            vec![AttributeProto::int("axis", 1)],
        ),
        Op::Linear { bias, .. } => {
            let w = format!("n{id}.weight");
            let bias_name = format!("n{id}.bias");
            let mut inputs = vec![x, w.as_str()];
            if *bias {
                inputs.push(&bias_name);
            }
            b.node(
                "Gemm",
                &name,
                &inputs,
                out,
                vec![AttributeProto::int("transB", 1)],
            );
        }
        Op::Identity | Op::Dropout { .. } => b.node("Identity", &name, &[x], out, vec![]),
        op @ (Op::Embedding { .. }
        | Op::Dense { .. }
        | Op::LayerNorm { .. }
        | Op::Tanh
        | Op::Mul
        | Op::Sub
        | Op::Scale { .. }
        | Op::Transpose { .. }
        | Op::Reshape { .. }
        | Op::Slice { .. }
        | Op::Parameter { .. }
        | Op::MatMul
        | Op::Softmax
        | Op::PaddingMask
        | Op::TimePool { .. }
        | Op::PositionalEncoding { .. }
        | Op::Conv1d { .. }) => unreachable!("{} is emitted by onnx::sequence", op.kind()),
        Op::Zero => {
            let s = tmp("shape");
            b.node("Shape", &s, &[x], &s, vec![]);
            b.node(
                "ConstantOfShape",
                &name,
                &[&s],
                out,
                vec![AttributeProto::tensor(
                    "value",
                    TensorProto::from_f32("", &[1], [0.0]),
                )],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;

    fn net() -> Graph {
        let mut b = GraphBuilder::new(&[3, 8, 8]);
        let c = b.conv(0, 4, 3, 1, 1);
        let dead = b.add(Op::Relu, &[c]);
        let _ = dead;
        let z = b.add(Op::Zero, &[c]);
        let a = b.add(Op::Add, &[c, z]);
        let g = b.add(Op::GlobalAvgPool, &[a]);
        let l = b.add(
            Op::Linear {
                out_features: 5,
                bias: true,
            },
            &[g],
        );
        b.finish(l)
    }

    #[test]
    fn model_structure() {
        let g = net();
        let w = Weights::he_init(&g, 0).unwrap();
        let m = inference_model(&g, &w, &ExportOptions::default()).unwrap();
        assert_eq!(m.opset_import[0].version, 17);
        let gp = m.graph.as_ref().unwrap();
        let ops: Vec<&str> = gp.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Conv",
                "Shape",
                "ConstantOfShape",
                "Add",
                "GlobalAveragePool",
                "Flatten",
                "Gemm"
            ]
        );
        assert_eq!(gp.node.last().unwrap().output, ["logits"]);
        assert_eq!(gp.node[0].input, ["input", "n1.weight"]);
        let inits: Vec<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(inits, ["n1.weight", "n6.weight", "n6.bias"]);
        let bytes = export_inference(&g, &w, &ExportOptions::default()).unwrap();
        assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), m);
    }

    #[test]
    fn signature_and_name_checks() {
        let g = net();
        let sig = graph_signature(&g, &ExportOptions::default()).unwrap();
        assert_eq!(
            sig.to_string(),
            "input [batch, 3, 8, 8] -> logits [batch, 5]"
        );
        let fixed = ExportOptions {
            batch: Some(4),
            ..Default::default()
        };
        let sig = graph_signature(&g, &fixed).unwrap();
        assert_eq!(sig.output_shape, vec![Some(4), Some(5)]);

        let w = Weights::he_init(&g, 0).unwrap();
        let clash = ExportOptions {
            output_name: "n1".into(),
            ..Default::default()
        };
        let e = export_inference(&g, &w, &clash).unwrap_err().to_string();
        assert!(e.contains("`n1` is used twice"), "{e}");
        let mut missing = w.clone();
        missing.remove("n6.bias");
        assert_eq!(
            export_inference(&g, &missing, &ExportOptions::default()),
            Err(GraphError::MissingWeight {
                name: "n6.bias".into()
            })
        );
    }

    #[test]
    fn fold_batch_norm_and_normalize_structure() {
        let mut b = GraphBuilder::new(&[2, 6, 6]);
        let c1 = b.conv(0, 4, 3, 1, 1);
        let n1 = b.batch_norm(c1);
        let r = b.add(Op::Relu, &[n1]);
        // c2 feeds two nodes: its BatchNorm stays.
        let c2 = b.conv(r, 4, 3, 1, 1);
        let n2 = b.batch_norm(c2);
        let a = b.add(Op::Add, &[n2, c2]);
        let g = b.add(Op::GlobalAvgPool, &[a]);
        let l = b.add(
            Op::Linear {
                out_features: 3,
                bias: false,
            },
            &[g],
        );
        let n3 = b.batch_norm(l);
        let g = b.finish(n3);
        let mut w = Weights::he_init(&g, 0).unwrap();
        w.randomize_batch_norm(&g, 1).unwrap();
        let options = ExportOptions {
            normalize: Some((vec![0.5, 0.25], vec![2.0, 4.0])),
            fold_batch_norm: true,
            ..Default::default()
        };
        let m = inference_model(&g, &w, &options).unwrap();
        let gp = m.graph.as_ref().unwrap();
        let ops: Vec<&str> = gp.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Sub",
                "Div",
                "Conv",
                "Relu",
                "Conv",
                "BatchNormalization",
                "Add",
                "GlobalAveragePool",
                "Flatten",
                "Gemm"
            ]
        );
        assert_eq!(gp.node[0].input, ["input", "n0_mean"]);
        assert_eq!(gp.node[2].input, ["n0", "n1.weight", "n1.bias"]);
        assert_eq!(gp.node[2].output, ["n2"]);
        assert_eq!(
            gp.node.last().unwrap().input,
            ["n7", "n8.weight", "n8.bias"]
        );
        assert_eq!(gp.node.last().unwrap().output, ["logits"]);
        let inits: Vec<&str> = gp.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(
            !inits.contains(&"n2.scale") && inits.contains(&"n5.scale"),
            "{inits:?}"
        );

        let short = ExportOptions {
            normalize: Some((vec![0.5], vec![1.0])),
            ..Default::default()
        };
        let e = export_inference(&g, &w, &short).unwrap_err().to_string();
        assert!(
            e.contains("one mean and one std per input channel (2)"),
            "{e}"
        );
        let zero_std = ExportOptions {
            normalize: Some((vec![0.5, 0.5], vec![1.0, 0.0])),
            ..Default::default()
        };
        assert!(export_inference(&g, &w, &zero_std).is_err());
    }
}
