//! Mixed-edge branches that a step weighs by exactly zero are not computed.
//!
//! GDAS and SPOS feed one-hot mixing weights: every operation of an edge but one is weighed by
//! zero. Computing those anyway would make a supernet step cost every candidate operation, so
//! the training step wraps each branch an edge owns exclusively (the nodes that only feed that
//! input of the `Mix`) in ONNX `If` nodes whose condition is "this input's weight is not zero":
//! one `If` for the branch's forward, one for its backward. A branch left out yields a scalar
//! zero for its value, for everything its backward would have read and for its input's gradient
//! (sums broadcast it), zeros of full shape for its parameters' gradients, and its BatchNorm
//! running statistics unchanged. The optimizer still updates those parameters with their zero
//! gradient (momentum and weight decay go on), as PyTorch does once a parameter has had a
//! gradient: only the compute changes. The skipped input's mixing-weight gradient is zero.
//! Weights that are never exactly zero (DARTS' softmax) run every branch, at the cost of the
//! `If`s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use crate::error::GraphError;
use crate::ir::{Graph, NodeId, Op};
use crate::onnx::export::Builder;
use crate::onnx::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TypeProto, ValueInfoProto,
    tensor_proto::DataType, type_proto,
};

/// The nodes that feed input `input` of the mixed edge `mix` and nothing else.
#[derive(Debug)]
pub(super) struct Branch {
    pub mix: NodeId,
    pub input: usize,
    pub nodes: Vec<NodeId>,
}

/// Which emitted ONNX nodes (indices into the node list) came from what.
pub(super) struct Emitted {
    /// Per IR node: its training-mode forward.
    pub forward: Vec<Range<usize>>,
    /// Per IR node: the sum of its output gradients and its backward rule.
    pub backward: Vec<Range<usize>>,
}

impl Emitted {
    pub fn new(nodes: usize) -> Self {
        Emitted {
            forward: vec![0..0; nodes],
            backward: vec![0..0; nodes],
        }
    }
}

/// Every branch worth an `If`: a `Mix` input that is computed (not the edge's source itself,
/// not a `Zero`) by nodes no other part of the graph reads. Mixed edges and dropouts stay
/// outside branches (their fed inputs and gradient outputs belong to the whole step).
pub(super) fn exclusive_branches(graph: &Graph, live: &[NodeId]) -> Vec<Branch> {
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); graph.nodes.len()];
    for &id in live {
        for &i in &graph.nodes[id].inputs {
            consumers[i].push(id);
        }
    }
    let movable = |id: NodeId| {
        id != graph.output
            && !matches!(
                graph.nodes[id].op,
                Op::Input | Op::Zero | Op::Mix | Op::Dropout { .. }
            )
    };
    let mut branches = Vec::new();
    for &mix in live.iter().filter(|&&id| graph.nodes[id].op == Op::Mix) {
        for (input, &start) in graph.nodes[mix].inputs.iter().enumerate() {
            if !movable(start) || consumers[start] != [mix] {
                continue;
            }
            let mut set = BTreeSet::from([start]);
            loop {
                let grown: Vec<NodeId> = set
                    .iter()
                    .flat_map(|&n| graph.nodes[n].inputs.iter().copied())
                    .filter(|&i| {
                        !set.contains(&i)
                            && movable(i)
                            && consumers[i].iter().all(|c| set.contains(c))
                    })
                    .collect();
                if grown.is_empty() {
                    break;
                }
                set.extend(grown);
            }
            branches.push(Branch {
                mix,
                input,
                nodes: set.into_iter().collect(),
            });
        }
    }
    branches
}

/// One `If`: the nodes it runs when `cond` holds.
pub(super) struct Group {
    pub cond: String,
    pub members: Vec<usize>,
}

/// What the rewrite needs to know of the model's interface.
pub(super) struct Interface<'a> {
    pub inputs: &'a [ValueInfoProto],
    pub outputs: &'a [ValueInfoProto],
    pub initializers: &'a [TensorProto],
    /// State output -> the state input it replaces (`next:x` -> `x`).
    pub carried: HashMap<String, String>,
    /// Values a skipped branch gives as zeros of their full shape (parameter gradients, which
    /// the optimizer updates read whole).
    pub zeros: HashMap<String, Vec<usize>>,
}

/// `nodes` with every group replaced by one `If`, in a topological order. A group whose
/// boundary carries a value of a type other than float32 is left as it is.
pub(super) fn wrap(
    nodes: Vec<NodeProto>,
    groups: &[Group],
    interface: &Interface,
) -> Result<Vec<NodeProto>, GraphError> {
    let types = elem_types(&nodes, interface);
    let graph_outputs: HashMap<&str, &ValueInfoProto> = interface
        .outputs
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut group_of: Vec<Option<usize>> = vec![None; nodes.len()];
    for (g, group) in groups.iter().enumerate() {
        for &m in &group.members {
            group_of[m] = Some(g);
        }
    }
    // Which nodes read each value, once for every group.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.input {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut ifs: Vec<(usize, NodeProto)> = Vec::new();
    let mut wrapped = vec![false; groups.len()];
    for (g, group) in groups.iter().enumerate() {
        if group.members.is_empty() {
            continue;
        }
        let produced: Vec<&String> = group
            .members
            .iter()
            .flat_map(|&m| nodes[m].output.iter())
            .collect();
        // What the group makes that the rest of the graph (or its outputs) reads.
        let crossing: Vec<&String> = produced
            .iter()
            .copied()
            .filter(|p| {
                graph_outputs.contains_key(p.as_str())
                    || readers
                        .get(p.as_str())
                        .is_some_and(|r| r.iter().any(|&i| group_of[i] != Some(g)))
            })
            .collect();
        if crossing
            .iter()
            .any(|c| types.get(c.as_str()) != Some(&(DataType::Float as i32)))
        {
            continue;
        }
        let inner = |name: &str| format!("b{g}:{name}");
        let produced_set: HashSet<&str> = produced.iter().map(|s| s.as_str()).collect();
        let rename = |name: &String| {
            if produced_set.contains(name.as_str()) {
                inner(name)
            } else {
                name.clone()
            }
        };
        let mut sorted = group.members.clone();
        sorted.sort_unstable();
        let then_nodes: Vec<NodeProto> = sorted
            .iter()
            .map(|&m| {
                let mut n = nodes[m].clone();
                n.input = n.input.iter().map(rename).collect();
                n.output = n.output.iter().map(rename).collect();
                n.name = format!("b{g}:{}", n.name);
                n
            })
            .collect();
        let unshaped = |name: &str| ValueInfoProto::unshaped(name, DataType::Float);
        let then_branch = GraphProto {
            node: then_nodes,
            name: format!("b{g}:then"),
            output: crossing.iter().map(|c| unshaped(&inner(c))).collect(),
            ..Default::default()
        };
        let mut els = Builder::default();
        let mut else_outputs = Vec::new();
        for c in &crossing {
            let out = format!("e{g}:{c}");
            if let Some(input) = interface.carried.get(c.as_str()) {
                els.node("Identity", &out, &[input], &out, vec![]);
            } else if let Some(dims) = interface
                .zeros
                .get(c.as_str())
                .map(|d| d.iter().map(|&v| v as i64).collect::<Vec<_>>())
                .or_else(|| graph_outputs.get(c.as_str()).and_then(|v| fixed_dims(v)))
            {
                // Zeros of the value's full shape.
                let shape = format!("e{g}:shape:{c}");
                let dims = TensorProto::from_i64("", &[dims.len()], &dims);
                els.node(
                    "Constant",
                    &shape,
                    &[],
                    &shape,
                    vec![AttributeProto::tensor("value", dims)],
                );
                let zero = TensorProto::from_f32("", &[1], [0.0]);
                els.node(
                    "ConstantOfShape",
                    &out,
                    &[&shape],
                    &out,
                    vec![AttributeProto::tensor("value", zero)],
                );
            } else {
                let zero = TensorProto::from_f32("", &[], [0.0]);
                els.node(
                    "Constant",
                    &out,
                    &[],
                    &out,
                    vec![AttributeProto::tensor("value", zero)],
                );
            }
            else_outputs.push(unshaped(&out));
        }
        let else_branch = GraphProto {
            node: els.nodes,
            name: format!("b{g}:else"),
            output: else_outputs,
            ..Default::default()
        };
        let last = *sorted.last().expect("non-empty group");
        ifs.push((
            last,
            NodeProto {
                input: vec![group.cond.clone()],
                output: crossing.iter().map(|c| c.to_string()).collect(),
                name: format!("if:b{g}"),
                op_type: "If".into(),
                attribute: vec![
                    AttributeProto::graph("then_branch", then_branch),
                    AttributeProto::graph("else_branch", else_branch),
                ],
                ..Default::default()
            },
        ));
        wrapped[g] = true;
    }
    // Keep each node's place; an If takes its group's last member's.
    let mut placed: Vec<(usize, NodeProto)> = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !group_of[*i].is_some_and(|g| wrapped[g]))
        .collect();
    placed.extend(ifs);
    placed.sort_by_key(|(i, _)| *i);
    topological(placed.into_iter().map(|(_, n)| n).collect(), interface)
}

fn fixed_dims(v: &ValueInfoProto) -> Option<Vec<i64>> {
    use crate::onnx::proto::tensor_shape_proto::dimension::Value;
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    t.shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(v)) => Some(v),
            _ => None,
        })
        .collect()
}

/// Element types of every value, propagated from the graph inputs and initializers: the ops the
/// training step emits produce their first input's type unless they make indices, masks or
/// casts.
fn elem_types(nodes: &[NodeProto], interface: &Interface) -> HashMap<String, i32> {
    let mut types: HashMap<String, i32> = HashMap::new();
    for v in interface.inputs {
        if let Some(TypeProto {
            value: Some(type_proto::Value::TensorType(t)),
            ..
        }) = &v.r#type
        {
            types.insert(v.name.clone(), t.elem_type);
        }
    }
    for t in interface.initializers {
        types.insert(t.name.clone(), t.data_type);
    }
    let attr = |n: &NodeProto, name: &str| n.attribute.iter().find(|a| a.name == name).cloned();
    // Nodes appended out of order (a renamed output's new producer) need a second pass.
    loop {
        let known = types.len();
        for n in nodes {
            let first = n.input.first().and_then(|i| types.get(i)).copied();
            let ty = match n.op_type.as_str() {
                "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => Some(DataType::Int64 as i32),
                "Equal" | "Greater" | "Less" | "GreaterOrEqual" | "LessOrEqual" | "Not" | "And"
                | "Or" | "Xor" | "IsNaN" | "IsInf" => Some(DataType::Bool as i32),
                "Cast" => attr(n, "to").and_then(|a| a.i).map(|t| t as i32),
                "Constant" => attr(n, "value").and_then(|a| a.t).map(|t| t.data_type),
                "ConstantOfShape" => Some(
                    attr(n, "value")
                        .and_then(|a| a.t)
                        .map_or(DataType::Float as i32, |t| t.data_type),
                ),
                _ => first,
            };
            for (k, out) in n.output.iter().enumerate() {
                let t = if n.op_type == "MaxPool" && k == 1 {
                    Some(DataType::Int64 as i32)
                } else {
                    ty
                };
                if let Some(t) = t {
                    types.insert(out.clone(), t);
                }
            }
        }
        if types.len() == known {
            break;
        }
    }
    types
}

/// Names a node reads, its subgraphs' references to the outer scope included.
pub(super) fn reads(n: &NodeProto) -> Vec<String> {
    let mut out: Vec<String> = n.input.iter().filter(|s| !s.is_empty()).cloned().collect();
    for a in &n.attribute {
        if let Some(g) = &a.g {
            let inner: HashSet<&String> = g.node.iter().flat_map(|m| m.output.iter()).collect();
            for m in &g.node {
                out.extend(reads(m).into_iter().filter(|r| !inner.contains(r)));
            }
        }
    }
    out
}

/// Kahn's algorithm, earliest original position first, so an unchanged graph keeps its order.
fn topological(nodes: Vec<NodeProto>, interface: &Interface) -> Result<Vec<NodeProto>, GraphError> {
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let external: HashSet<&str> = interface
        .inputs
        .iter()
        .map(|v| v.name.as_str())
        .chain(interface.initializers.iter().map(|t| t.name.as_str()))
        .collect();
    let mut waiting = vec![0usize; nodes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let deps: BTreeSet<usize> = reads(n)
            .iter()
            .filter_map(|r| match producer.get(r.as_str()) {
                Some(&p) => Some(Ok(p)),
                None if external.contains(r.as_str()) => None,
                None => Some(Err(r.clone())),
            })
            .collect::<Result<_, _>>()
            .map_err(|r| {
                GraphError::Export(format!(
                    "conditional branches: `{r}` is read but never made"
                ))
            })?;
        waiting[i] = deps.len();
        for d in deps {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(GraphError::Export(
            "conditional branches: wrapping made a cycle".into(),
        ));
    }
    let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each node once"))
        .collect())
}
