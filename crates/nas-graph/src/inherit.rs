//! Weight inheritance between related networks (network morphism): a child network derived
//! from a trained parent (one choice mutated) starts from the parent's weights wherever a
//! layer kept its place and shape.
//!
//! # Positions
//!
//! The IR has no layer names and node ids shift when an earlier part of a network changes, so
//! layers are matched by a *position* computed from the structure alone:
//!
//! - A *junction* is the input, a node with other than one input (`Add`, `Concat`, ...) or a
//!   node with other than one consumer (a fork, or the output).
//! - A junction's position is that of the nearest junction dominating it (every path from the
//!   input passes through it) plus its rank among the junctions anchored there, in node order.
//!   It does not depend on the ops between the two, so everything after a changed op keeps
//!   its position.
//! - A node with one input lies on a *branch*: a path of single-input, single-consumer nodes
//!   leaving a junction (a fork ends its branch). Its position is the junction's position,
//!   which of the junction's consumers the branch starts with, and how many steps along the
//!   branch the node is. A node with several inputs is placed as a junction.
//!
//! In the `cell` space (NAS-Bench-201) every cell node is a junction whatever the edge ops are,
//! so each edge of each cell keeps its position under any change of any op; a changed edge
//! keeps the positions of the layers it shares with the old op (`nor_conv_1x1` ->
//! `nor_conv_3x3`: the ReLU, the conv and the BatchNorm). In the `chain` space the blocks of a
//! stage follow each other, so a changed kernel, expansion or width keeps every other block's
//! position; a change of a stage's depth (or of whether a block has a residual connection)
//! moves the positions of everything after it, whose layers then start fresh.
//!
//! # What is inherited
//!
//! For every parameter tensor of the child (conv and linear weight and bias, BatchNorm scale,
//! shift, running mean and variance), in this order of preference:
//!
//! 1. *copied*: the parent has a layer of the same kind at the same position whose tensor of
//!    the same role has the same shape;
//! 2. *morphed*, function-preserving:
//!    - a conv whose kernel grew (same channels, groups, stride and dilation; padding grown by
//!      half the kernel growth): the parent's kernel is embedded at the centre, zeros around,
//!      so the conv computes exactly what the parent's did;
//!    - a branch the parent had as `Zero` (NAS-Bench-201 `none`) and the child fills with
//!      layers ending in a BatchNorm that feeds a merge: that BatchNorm's scale and shift are
//!      zero, so the branch still adds nothing until training moves them;
//! 3. *fresh*: the child's own initial value.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, IxDyn, s};
use serde::{Deserialize, Serialize};

use crate::ir::{Graph, NodeId, Op};
use crate::weights::{ParamRole, Weights, param_name, parameter_specs};

/// Which child tensors were inherited and how (tensor names of the child, in
/// [`parameter_specs`] order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InheritReport {
    /// Copied unchanged from the parent's layer at the same position.
    pub copied: Vec<String>,
    /// Derived from the parent's weights so the layer computes what the parent's did.
    pub morphed: Vec<String>,
    /// The child's own initial values.
    pub fresh: Vec<String>,
}

impl InheritReport {
    /// Whether anything came from the parent.
    pub fn inherited_any(&self) -> bool {
        !self.copied.is_empty() || !self.morphed.is_empty()
    }
}

/// A 64-bit FNV-1a hash of a few numbers: position keys are stable across runs and platforms.
fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

const TAG_INPUT: u64 = 1;
const TAG_JUNCTION: u64 = 2;
const TAG_BRANCH: u64 = 3;

/// The structural position of every node (see the module documentation); equal keys in two
/// networks mean "the same place". Node ids must be in topological order (as [`Graph`]
/// requires).
pub fn positions(graph: &Graph) -> Vec<u64> {
    let n = graph.nodes.len();
    let consumers = consumers(graph);
    let junction = junctions(graph, &consumers);
    // Immediate dominators: inputs precede their consumers, and so do dominators.
    let mut idom: Vec<NodeId> = vec![0; n];
    for v in 1..n {
        let mut inputs = graph.nodes[v].inputs.iter().copied().filter(|&i| i < v);
        let Some(first) = inputs.next() else {
            continue;
        };
        idom[v] = inputs.fold(first, |mut a, mut b| {
            while a != b {
                if a > b {
                    a = idom[a];
                } else {
                    b = idom[b];
                }
            }
            a
        });
    }
    // `anchor`: the position of a junction as its consumers see it; `own`: the position of
    // a node's own layer (a single-input fork, e.g. the last layer of a block whose output two
    // branches read, is placed on the branch it ends, like any other layer of that branch).
    let mut anchor = vec![0u64; n];
    let mut own = vec![0u64; n];
    anchor[0] = mix(&[TAG_INPUT]);
    own[0] = anchor[0];
    let mut anchored: HashMap<NodeId, u64> = HashMap::new();
    for v in 1..n {
        if junction[v] {
            let mut a = idom[v];
            while !junction[a] {
                a = idom[a];
            }
            let rank = anchored.entry(a).or_insert(0);
            anchor[v] = mix(&[TAG_JUNCTION, anchor[a], *rank]);
            *rank += 1;
        }
        own[v] = match graph.nodes[v].inputs.as_slice() {
            [input] => {
                let (mut first, mut steps, mut u) = (v, 1u64, *input);
                while !junction[u] {
                    first = u;
                    u = graph.nodes[u].inputs[0];
                    steps += 1;
                }
                let slot = consumers[u].iter().position(|&c| c == first).unwrap_or(0);
                mix(&[TAG_BRANCH, anchor[u], slot as u64, steps])
            }
            _ => anchor[v],
        };
    }
    own
}

/// The head of the branch single-input node `v` ends (its first node after a junction).
fn branch_head(graph: &Graph, junction: &[bool], v: NodeId) -> Option<NodeId> {
    let &[mut u] = graph.nodes[v].inputs.as_slice() else {
        return None;
    };
    let mut first = v;
    while !junction[u] {
        first = u;
        u = graph.nodes[u].inputs[0];
    }
    Some(first)
}

/// The child's weights started from the parent's: `child_init` (e.g. He initialization of
/// `child`) with every tensor replaced that can be inherited from `parent` / `parent_weights`
/// (see the module documentation). Tensors the parent's weights lack (e.g. layers that did not
/// reach its output) are not inherited. Never fails: whatever cannot be matched stays fresh.
pub fn inherit(
    parent: &Graph,
    parent_weights: &Weights,
    child: &Graph,
    child_init: &Weights,
) -> (Weights, InheritReport) {
    let mut weights = child_init.clone();
    let mut report = InheritReport::default();
    let Ok(specs) = parameter_specs(child) else {
        return (weights, report);
    };
    let parent_keys = positions(parent);
    let child_keys = positions(child);
    // Position -> parent node; a position held twice is ambiguous and matches nothing.
    let mut at: BTreeMap<u64, Option<NodeId>> = BTreeMap::new();
    for (id, &k) in parent_keys.iter().enumerate() {
        at.entry(k).and_modify(|e| *e = None).or_insert(Some(id));
    }
    let parent_at = |k: u64| at.get(&k).copied().flatten();
    let child_consumers = consumers(child);
    let child_junction = junctions(child, &child_consumers);

    for spec in specs {
        let node = &child.nodes[spec.node];
        let matched = parent_at(child_keys[spec.node])
            .map(|p| (p, &parent.nodes[p]))
            .filter(|(_, pn)| pn.op.kind() == node.op.kind());
        let source = matched.and_then(|(p, _)| parent_weights.get(&param_name(p, spec.role)));
        if let Some(t) = source
            && t.shape() == spec.shape.as_slice()
        {
            weights.insert(spec.name.clone(), t.clone());
            report.copied.push(spec.name);
            continue;
        }
        if spec.role == ParamRole::Weight
            && let (Some((_, pn)), Some(t)) = (matched, source)
            && let Some(grown) = grown_kernel(&pn.op, &node.op, t, &spec.shape)
        {
            weights.insert(spec.name.clone(), grown);
            report.morphed.push(spec.name);
            continue;
        }
        if matches!(spec.role, ParamRole::BnScale | ParamRole::BnBias)
            && fills_a_zero_branch(
                parent,
                &parent_at,
                &child_keys,
                &child_consumers,
                &child_junction,
                spec.node,
                child,
            )
        {
            weights.insert(spec.name.clone(), ArrayD::zeros(IxDyn(&spec.shape)));
            report.morphed.push(spec.name);
            continue;
        }
        report.fresh.push(spec.name);
    }
    (weights, report)
}

/// The nodes reading each node, in node order (a node reading it twice counted once).
fn consumers(graph: &Graph) -> Vec<Vec<NodeId>> {
    let n = graph.nodes.len();
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (id, node) in graph.nodes.iter().enumerate() {
        for &i in &node.inputs {
            if i < n && consumers[i].last() != Some(&id) {
                consumers[i].push(id);
            }
        }
    }
    consumers
}

/// Which nodes are junctions (see [`positions`]).
fn junctions(graph: &Graph, consumers: &[Vec<NodeId>]) -> Vec<bool> {
    (0..graph.nodes.len())
        .map(|v| v == 0 || graph.nodes[v].inputs.len() != 1 || consumers[v].len() != 1)
        .collect()
}

/// The parent's conv weight `t` embedded at the centre of the child's larger kernel, when that
/// makes the child's conv compute exactly what the parent's did.
fn grown_kernel(parent: &Op, child: &Op, t: &ArrayD<f32>, shape: &[usize]) -> Option<ArrayD<f32>> {
    let (
        Op::Conv2d {
            out_channels: po,
            kernel: pk,
            stride: ps,
            padding: pp,
            dilation: pd,
            groups: pg,
            ..
        },
        Op::Conv2d {
            out_channels: co,
            kernel: ck,
            stride: cs,
            padding: cp,
            dilation: cd,
            groups: cg,
            ..
        },
    ) = (parent, child)
    else {
        return None;
    };
    let same = po == co && ps == cs && pd == cd && pg == cg;
    let fits = (0..2).all(|a| {
        ck[a] >= pk[a]
            && (ck[a] - pk[a]) % 2 == 0
            && cp[a] >= pp[a]
            && cp[a] - pp[a] == (ck[a] - pk[a]) / 2 * cd[a]
    });
    if !same || !fits || ck == pk || t.ndim() != 4 || shape.len() != 4 {
        return None;
    }
    if t.shape()[..2] != shape[..2] || t.shape()[2..] != pk[..] || shape[2..] != ck[..] {
        return None;
    }
    let (oh, ow) = ((ck[0] - pk[0]) / 2, (ck[1] - pk[1]) / 2);
    let mut out = ArrayD::<f32>::zeros(IxDyn(shape));
    out.slice_mut(s![.., .., oh..oh + pk[0], ow..ow + pk[1]])
        .assign(t);
    Some(out)
}

/// Whether BatchNorm `bn` of the child ends a branch that feeds a merge and that the parent had
/// as a single `Zero` node at the same position (zeroing its scale and shift then keeps the
/// branch's output zero).
fn fills_a_zero_branch(
    parent: &Graph,
    parent_at: &dyn Fn(u64) -> Option<NodeId>,
    child_keys: &[u64],
    child_consumers: &[Vec<NodeId>],
    child_junction: &[bool],
    bn: NodeId,
    child: &Graph,
) -> bool {
    if !matches!(child.nodes[bn].op, Op::BatchNorm { .. }) {
        return false;
    }
    let Some(head) = branch_head(child, child_junction, bn) else {
        return false;
    };
    // The BatchNorm is the branch's last node: its one consumer is a merge.
    let feeds_merge = matches!(child_consumers[bn].as_slice(),
        [c] if matches!(child.nodes[*c].op, Op::Add) && child.nodes[*c].inputs.len() > 1);
    if !feeds_merge {
        return false;
    }
    parent_at(child_keys[head]).is_some_and(|p| {
        matches!(parent.nodes[p].op, Op::Zero)
            && parent
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&p))
                .all(|n| matches!(n.op, Op::Add))
    })
}

#[cfg(test)]
mod tests;
