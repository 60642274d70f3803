//! Rewrites of the IR and of exported ONNX models that the proxies need: the training-step
//! graph of nas-graph supplies training-mode forward values (`n<id>`) and reverse-mode
//! gradients; these helpers reshape the network so that those values are the quantities a
//! proxy wants, then cut the model down to the outputs one session needs.

use std::collections::{HashMap, HashSet};

use nas_graph::onnx::proto::{
    ModelProto, NodeProto, TensorProto, ValueInfoProto, tensor_proto::DataType,
};
use nas_graph::weights::Weights;
use nas_graph::{Graph, Node, NodeId, Op};
use ndarray::{ArrayD, IxDyn};
use prost::Message;

/// BatchNorm turned into Identity: NASLib's synflow runs a copy of the network whose
/// BatchNorm forwards are no-ops (`bn=False`), so nothing normalizes the positive signal.
pub fn without_batch_norm(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    for node in &mut g.nodes {
        if matches!(node.op, Op::BatchNorm { .. }) {
            node.op = Op::Identity;
        }
    }
    g
}

/// Every BatchNorm with momentum 1, so the training step's running-variance output
/// (`next:n<id>.var`) is the batch variance itself (Zen-NAS's BN scaling term).
pub fn with_batch_variance(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    for node in &mut g.nodes {
        if let Op::BatchNorm { momentum, .. } = &mut node.op {
            *momentum = 1.0;
        }
    }
    g
}

/// Appends `Linear(classes -> 2, no bias)` after the logits; returns the graph and the new
/// node. With [`sum_head_weight`] and label 0 every sample's cross-entropy is
/// `softplus(c * sum(logits))`, so the training step's gradients are those of the logit sum
/// times `c * sigmoid(c * sum)`: a cross-entropy graph turned into a sum-of-outputs graph.
pub fn with_sum_head(graph: &Graph) -> (Graph, NodeId) {
    let mut g = graph.clone();
    g.nodes.push(Node {
        op: Op::Linear {
            out_features: 2,
            bias: false,
        },
        inputs: vec![graph.output],
    });
    let head = g.nodes.len() - 1;
    g.output = head;
    (g, head)
}

/// Weight of the [`with_sum_head`] layer: row 0 zeros, row 1 all `c`.
pub fn sum_head_weight(classes: usize, c: f32) -> ArrayD<f32> {
    let mut w = ArrayD::zeros(IxDyn(&[2, classes]));
    for k in 0..classes {
        w[[1, k]] = c;
    }
    w
}

/// Inserts a 1x1 convolution with identity weights ([`probe_weight`]) right after the input,
/// as node 1; every other node moves up by one. The training step then computes the gradient
/// of the probe's output, which equals the gradient of the input ([`input_gradient`]).
pub fn with_input_probe(graph: &Graph) -> Result<Graph, String> {
    let &[channels, _, _] = graph.input.as_slice() else {
        return Err(format!(
            "input gradients need an image input [C, H, W], the network takes {:?}",
            graph.input
        ));
    };
    let shift = |i: NodeId| i + 1;
    let mut nodes = vec![
        graph.nodes[0].clone(),
        Node {
            op: Op::Conv2d {
                out_channels: channels,
                kernel: [1, 1],
                stride: [1, 1],
                padding: [0, 0],
                dilation: [1, 1],
                groups: 1,
                bias: false,
            },
            inputs: vec![0],
        },
    ];
    nodes.extend(graph.nodes[1..].iter().map(|n| Node {
        op: n.op.clone(),
        inputs: n.inputs.iter().map(|&i| shift(i)).collect(),
    }));
    Ok(Graph {
        input: graph.input.clone(),
        nodes,
        output: if graph.output == 0 {
            1
        } else {
            shift(graph.output)
        },
    })
}

/// The probe's weight: the identity on channels, `[C, C, 1, 1]`.
pub fn probe_weight(channels: usize) -> ArrayD<f32> {
    let mut w = ArrayD::zeros(IxDyn(&[channels, channels, 1, 1]));
    for c in 0..channels {
        w[[c, c, 0, 0]] = 1.0;
    }
    w
}

/// `n<k>.<role>` renamed `n<k + by>.<role>` (weights of a graph after [`with_input_probe`]).
pub fn shift_weights(weights: &Weights, by: usize) -> Weights {
    weights
        .iter()
        .map(|(name, t)| {
            let renamed = name
                .strip_prefix('n')
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(id, role)| {
                    id.parse::<usize>()
                        .ok()
                        .map(|id| format!("n{}.{role}", id + by))
                })
                .unwrap_or_else(|| name.to_string());
            (renamed, t.clone())
        })
        .collect()
}

/// Live nodes of `graph` whose op satisfies `pred`, in order.
pub fn live_nodes(graph: &Graph, pred: impl Fn(&Op) -> bool) -> Vec<NodeId> {
    graph
        .reachable()
        .into_iter()
        .filter(|&id| pred(&graph.nodes[id].op))
        .collect()
}

/// An ONNX output to keep: value name, element type, dims (batch axis included).
#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub elem: DataType,
    pub dims: Vec<usize>,
}

impl Output {
    pub fn f32(name: impl Into<String>, dims: Vec<usize>) -> Output {
        Output {
            name: name.into(),
            elem: DataType::Float,
            dims,
        }
    }
}

/// A decoded model being edited.
pub struct Model {
    proto: ModelProto,
}

impl Model {
    pub fn decode(bytes: &[u8]) -> Result<Model, String> {
        let proto = ModelProto::decode(bytes).map_err(|e| format!("cannot decode a model: {e}"))?;
        if proto.graph.is_none() {
            return Err("the model has no graph".into());
        }
        Ok(Model { proto })
    }

    pub fn encode(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }

    fn nodes(&self) -> &[NodeProto] {
        &self.proto.graph.as_ref().expect("checked at decode").node
    }

    /// Names of the graph inputs a session must be fed.
    pub fn input_names(&self) -> Vec<String> {
        let g = self.proto.graph.as_ref().expect("checked at decode");
        let init: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        g.input
            .iter()
            .map(|v| v.name.clone())
            .filter(|n| !init.contains(n.as_str()))
            .collect()
    }

    /// Adds `Greater(value, 0)` into a bool value `code:<value>` (NASWOT's binary codes,
    /// computed in the graph so a quarter of the bytes come back); returns its name.
    pub fn add_positive_code(&mut self, value: &str) -> String {
        const ZERO: &str = "zc_zero";
        let g = self.proto.graph.as_mut().expect("checked at decode");
        if !g.initializer.iter().any(|t| t.name == ZERO) {
            g.initializer.push(TensorProto::from_f32(ZERO, &[], [0.0]));
        }
        let out = format!("code:{value}");
        g.node.push(NodeProto {
            input: vec![value.to_string(), ZERO.to_string()],
            output: vec![out.clone()],
            name: out.clone(),
            op_type: "Greater".into(),
            ..Default::default()
        });
        out
    }

    /// The value holding the gradient of the probe output of a [`with_input_probe`] graph,
    /// found from how the training step computes the probe weight's gradient `grad_output`,
    /// in either of its forms: patches times `dy` (`Identity <- Reshape <- Transpose <-
    /// ReduceSum <- MatMul(x, Transpose(Reshape(dy)))`) or one correlation per sample
    /// (`Identity <- Reshape <- ReduceSum <- Reshape <- Conv(x, Reshape(dy))`); `None` when
    /// that gradient is the constant zero the step emits for a weight the loss does not depend
    /// on (then the input gradient is zero too). An unexpected layout is an error, never a
    /// wrong value.
    pub fn input_gradient(&self, grad_output: &str) -> Result<Option<String>, String> {
        let producer: HashMap<&str, &NodeProto> = self
            .nodes()
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let step = |value: &str, op: &str, slot: usize| -> Result<String, String> {
            let node = producer
                .get(value)
                .filter(|n| n.op_type == op && n.input.len() > slot)
                .ok_or_else(|| {
                    format!(
                        "the training step computes `{grad_output}` differently than expected \
                         (no {op} produces `{value}`); input gradients cannot be located"
                    )
                })?;
            Ok(node.input[slot].clone())
        };
        let t = step(grad_output, "Identity", 0)?;
        if producer
            .get(t.as_str())
            .is_some_and(|n| n.op_type == "ConstantOfShape")
        {
            return Ok(None);
        }
        let dw = step(&t, "Reshape", 0)?;
        if producer
            .get(dw.as_str())
            .is_some_and(|n| n.op_type == "Transpose")
        {
            let summed = step(&dw, "Transpose", 0)?;
            let per_sample = step(&summed, "ReduceSum", 0)?;
            let dyt = step(&per_sample, "MatMul", 1)?;
            let dyr = step(&dyt, "Transpose", 0)?;
            step(&dyr, "Reshape", 0).map(Some)
        } else {
            let by_sample = step(&dw, "ReduceSum", 0)?;
            let per_sample = step(&by_sample, "Reshape", 0)?;
            let kernel = step(&per_sample, "Conv", 1)?;
            step(&kernel, "Reshape", 0).map(Some)
        }
    }

    /// Keeps only what `outputs` need: their producing nodes and ancestors, the inputs and
    /// initializers those read. The outputs become the graph outputs, in order.
    pub fn prune(&mut self, outputs: &[Output]) -> Result<(), String> {
        let g = self.proto.graph.as_mut().expect("checked at decode");
        let produced: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .chain(g.input.iter().map(|v| v.name.as_str()))
            .chain(g.initializer.iter().map(|t| t.name.as_str()))
            .collect();
        if let Some(missing) = outputs.iter().find(|o| !produced.contains(o.name.as_str())) {
            return Err(format!("the model has no value `{}`", missing.name));
        }
        let mut needed: HashSet<String> = outputs.iter().map(|o| o.name.clone()).collect();
        let mut keep = vec![false; g.node.len()];
        for (i, node) in g.node.iter().enumerate().rev() {
            if node.output.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        let mut k = keep.into_iter();
        g.node.retain(|_| k.next().unwrap_or(false));
        g.input.retain(|v| needed.contains(&v.name));
        g.initializer.retain(|t| needed.contains(&t.name));
        g.value_info.clear();
        g.output = outputs
            .iter()
            .map(|o| {
                let dims: Vec<Result<i64, String>> = o.dims.iter().map(|&d| Ok(d as i64)).collect();
                ValueInfoProto::tensor(&o.name, o.elem, &dims)
            })
            .collect();
        Ok(())
    }
}
