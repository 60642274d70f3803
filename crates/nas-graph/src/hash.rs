//! A canonical hash: equal for graphs that compute the same function with the same
//! parameter tensors, whatever their node numbering or dead branches.

use sha2::{Digest, Sha256};

use crate::ir::{Graph, Op};

/// Canonical form of one node's value.
#[derive(Clone, Copy)]
struct Canon {
    /// The value is exactly zero whatever the input and weights.
    zero: bool,
    digest: [u8; 32],
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        // Length prefixes keep the encoding unambiguous.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn zero_of(shape: &[usize]) -> Canon {
    let dims: Vec<u8> = shape
        .iter()
        .flat_map(|d| (*d as u64).to_le_bytes())
        .collect();
    Canon {
        zero: true,
        digest: sha(&[b"zero", &dims]),
    }
}

/// Whether `op` maps an all-zero input to an all-zero output (it has no bias or offset).
fn keeps_zero(op: &Op) -> bool {
    match op {
        Op::Relu
        | Op::Relu6
        | Op::Silu
        | Op::Gelu
        | Op::Identity
        | Op::Dropout { .. }
        | Op::AvgPool { .. }
        | Op::MaxPool { .. }
        | Op::GlobalAvgPool
        | Op::Flatten => true,
        Op::Conv2d { bias, .. } | Op::Linear { bias, .. } => !bias,
        // Sigmoid(0) = 0.5; BatchNorm(0) = shift - mean * scale / sqrt(var + eps).
        Op::Sigmoid | Op::BatchNorm { .. } => false,
        Op::Input | Op::Add | Op::Concat | Op::Zero => false,
    }
}

impl Graph {
    /// Hex SHA-256 that is equal for candidates computing the same function with the same
    /// parameter structure, for deduplication.
    ///
    /// Merkle-style from the output back: a node hashes its op with every attribute and the
    /// hashes of its inputs (sorted for the commutative `Add`, in order for `Concat`); the
    /// input node hashes the graph's input shape. Unreachable nodes are ignored;
    /// `Identity`, `Dropout` and one-input `Add`/`Concat` pass their input through. `Zero`
    /// values are tracked: `Add` drops zero inputs (all zero: zero; one left: that input),
    /// and zero flows through ops that map 0 to 0 (ReLU, ReLU6, SiLU, GELU, pools, Flatten,
    /// GlobalAvgPool, bias-free Conv and Linear). Such a dead conv still has parameters, so
    /// two graphs with equal hashes may differ in `param_count`.
    ///
    /// An invalid graph (see [`Graph::validate`]) hashes its JSON form instead.
    pub fn canonical_hash(&self) -> String {
        let Ok(shapes) = self.shapes() else {
            let json = serde_json::to_vec(self).unwrap_or_default();
            return hex::encode(sha(&[b"invalid", &json]));
        };
        let input_dims: Vec<u8> = self
            .input
            .iter()
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        let mut canon: Vec<Option<Canon>> = vec![None; self.nodes.len()];
        // Digest of a sum -> its terms, so nested sums flatten: (a + b) + c == a + (b + c).
        let mut sums: std::collections::HashMap<[u8; 32], Vec<[u8; 32]>> =
            std::collections::HashMap::new();
        for id in self.reachable() {
            let node = &self.nodes[id];
            let ins: Vec<Canon> = node
                .inputs
                .iter()
                .map(|&i| canon[i].expect("inputs of a live node are live"))
                .collect();
            let op_json = serde_json::to_vec(&node.op).expect("ops serialize");
            let hash_op = |inputs: &[Canon]| -> Canon {
                let mut parts: Vec<&[u8]> = vec![b"op", &op_json];
                parts.extend(inputs.iter().map(|c| c.digest.as_slice()));
                Canon {
                    zero: false,
                    digest: sha(&parts),
                }
            };
            let c = match &node.op {
                Op::Input => Canon {
                    zero: false,
                    digest: sha(&[b"input", &input_dims]),
                },
                Op::Identity | Op::Dropout { .. } => ins[0],
                Op::Zero => zero_of(&shapes[id]),
                Op::Add => {
                    let live: Vec<Canon> = ins.into_iter().filter(|c| !c.zero).collect();
                    match live.len() {
                        0 => zero_of(&shapes[id]),
                        1 => live[0],
                        _ => {
                            let mut terms: Vec<[u8; 32]> = Vec::new();
                            for c in &live {
                                match sums.get(&c.digest) {
                                    Some(inner) => terms.extend(inner.iter().copied()),
                                    None => terms.push(c.digest),
                                }
                            }
                            terms.sort();
                            let mut parts: Vec<&[u8]> = vec![b"sum"];
                            parts.extend(terms.iter().map(|t| t.as_slice()));
                            let c = Canon {
                                zero: false,
                                digest: sha(&parts),
                            };
                            sums.insert(c.digest, terms);
                            c
                        }
                    }
                }
                Op::Concat if ins.len() == 1 => ins[0],
                Op::Concat if ins.iter().all(|c| c.zero) => zero_of(&shapes[id]),
                op if ins.len() == 1 && ins[0].zero && keeps_zero(op) => zero_of(&shapes[id]),
                _ => hash_op(&ins),
            };
            canon[id] = Some(c);
        }
        hex::encode(canon[self.output].expect("the output is live").digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{GraphBuilder, NodeId};

    /// NB201 edge ops.
    #[derive(Clone, Copy)]
    enum E {
        None,
        Skip,
        Conv1,
        Conv3,
        Avg,
    }

    fn edge(b: &mut GraphBuilder, x: NodeId, e: E) -> NodeId {
        match e {
            E::None => b.add(Op::Zero, &[x]),
            E::Skip => b.add(Op::Identity, &[x]),
            E::Conv1 | E::Conv3 => {
                let k = if matches!(e, E::Conv1) { 1 } else { 3 };
                let r = b.add(Op::Relu, &[x]);
                let c = b.conv(r, 4, k, 1, 1);
                b.batch_norm(c)
            }
            E::Avg => b.add(
                Op::AvgPool {
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: [1, 1],
                    count_include_pad: false,
                },
                &[x],
            ),
        }
    }

    /// An NB201 cell on a [4, 6, 6] input; `ops[i]` are the edges into node i+1 from nodes
    /// 0..=i. `reverse` builds each node's edges in the opposite order.
    fn cell(ops: [&[E]; 3], reverse: bool) -> Graph {
        let mut b = GraphBuilder::new(&[4, 6, 6]);
        let mut nodes = vec![0];
        for edges in ops {
            let mut order: Vec<usize> = (0..edges.len()).collect();
            if reverse {
                order.reverse();
            }
            let outs: Vec<NodeId> = order
                .iter()
                .map(|&j| edge(&mut b, nodes[j], edges[j]))
                .collect();
            nodes.push(b.add(Op::Add, &outs));
        }
        let last = *nodes.last().unwrap();
        b.finish(last)
    }

    #[test]
    fn isomorphic_nb201_cells_hash_equal() {
        use E::*;
        // node3 = skip(x) only: every conv branch is dead.
        let a = cell([&[Conv3], &[None, Conv3], &[Skip, None, None]], false);
        let b = cell([&[Avg], &[None, Conv1], &[Skip, None, None]], false);
        let only_skip = {
            let mut g = GraphBuilder::new(&[4, 6, 6]);
            let i = g.add(Op::Identity, &[0]);
            g.finish(i)
        };
        assert_eq!(a.canonical_hash(), b.canonical_hash());
        assert_eq!(a.canonical_hash(), only_skip.canonical_hash());

        // Edge order inside each Add does not matter.
        let c = cell([&[Conv3], &[Skip, Conv1], &[Avg, Conv3, Skip]], false);
        let d = cell([&[Conv3], &[Skip, Conv1], &[Avg, Conv3, Skip]], true);
        assert_ne!(c, d);
        assert_eq!(c.canonical_hash(), d.canonical_hash());

        // A zero input to a node removes it; conv(ReLU(0)) is zero but BN(0) is not.
        let e = cell([&[None], &[Skip, Avg], &[Skip, None, Skip]], false);
        let f = cell([&[None], &[Skip, None], &[Skip, None, Skip]], false);
        assert_eq!(e.canonical_hash(), f.canonical_hash());
        let g = cell([&[None], &[Skip, Conv1], &[Skip, None, Skip]], false);
        assert_ne!(g.canonical_hash(), f.canonical_hash());
    }

    #[test]
    fn nested_sums_flatten() {
        use E::*;
        // n3 = avg(n1) + (conv(x) + avg(n1))  vs  n3 = conv(x) + avg(n1) + avg(n1).
        let a = cell([&[Conv3], &[Conv3, Avg], &[None, Avg, Skip]], false);
        let b = cell([&[Conv3], &[None, Avg], &[Conv3, Avg, Skip]], false);
        assert_eq!(a.canonical_hash(), b.canonical_hash());
        let c = cell([&[Conv3], &[None, Avg], &[Conv3, Conv3, Skip]], false);
        assert_ne!(a.canonical_hash(), c.canonical_hash());
    }

    #[test]
    fn different_functions_hash_differently() {
        use E::*;
        let base = cell([&[Conv3], &[Skip, Conv1], &[Avg, Conv3, Skip]], false);
        let others = [
            cell([&[Conv1], &[Skip, Conv1], &[Avg, Conv3, Skip]], false),
            cell([&[Conv3], &[Skip, Conv3], &[Avg, Conv3, Skip]], false),
            cell([&[Conv3], &[Skip, Conv1], &[Skip, Conv3, Skip]], false),
            cell([&[Conv3], &[Skip, Conv1], &[Avg, Conv3, None]], false),
        ];
        let h = base.canonical_hash();
        assert_eq!(h.len(), 64);
        for o in &others {
            assert_ne!(o.canonical_hash(), h);
        }
        let mut other_input = base.clone();
        other_input.input = vec![4, 8, 8];
        assert_ne!(other_input.canonical_hash(), h);

        let mut pool_flag = base.clone();
        for n in &mut pool_flag.nodes {
            if let Op::AvgPool {
                count_include_pad, ..
            } = &mut n.op
            {
                *count_include_pad = true;
            }
        }
        assert_ne!(pool_flag.canonical_hash(), h);

        // Concat is ordered.
        let concat = |swap: bool| {
            let mut b = GraphBuilder::new(&[2, 4, 4]);
            let r = b.add(Op::Relu, &[0]);
            let s = b.add(Op::Sigmoid, &[0]);
            let c = if swap {
                b.add(Op::Concat, &[s, r])
            } else {
                b.add(Op::Concat, &[r, s])
            };
            b.finish(c)
        };
        assert_ne!(
            concat(false).canonical_hash(),
            concat(true).canonical_hash()
        );
    }

    #[test]
    fn pass_through_dead_nodes_and_zero_propagation() {
        let relu_after = |wrap: &dyn Fn(&mut GraphBuilder, NodeId) -> NodeId| {
            let mut b = GraphBuilder::new(&[3, 5, 5]);
            let _dead = b.add(Op::Sigmoid, &[0]);
            let w = wrap(&mut b, 0);
            let r = b.add(Op::Relu, &[w]);
            b.finish(r)
        };
        let plain = relu_after(&|_, x| x);
        let ident = relu_after(&|b, x| b.add(Op::Identity, &[x]));
        let drop = relu_after(&|b, x| b.add(Op::Dropout { p: 0.3 }, &[x]));
        assert_eq!(plain.canonical_hash(), ident.canonical_hash());
        assert_eq!(plain.canonical_hash(), drop.canonical_hash());

        // Zero -> ReLU -> bias-free conv -> max pool is the zero of that shape.
        let chain = |bias: bool| {
            let mut b = GraphBuilder::new(&[3, 5, 5]);
            let z = b.add(Op::Zero, &[0]);
            let r = b.add(Op::Relu, &[z]);
            let c = b.add(
                Op::Conv2d {
                    out_channels: 3,
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: [1, 1],
                    dilation: [1, 1],
                    groups: 1,
                    bias,
                },
                &[r],
            );
            let p = b.add(
                Op::MaxPool {
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: [1, 1],
                },
                &[c],
            );
            let s = b.add(Op::Add, &[p, 0]);
            b.finish(s)
        };
        let mut ident = GraphBuilder::new(&[3, 5, 5]);
        let i = ident.add(Op::Identity, &[0]);
        let ident = ident.finish(i);
        assert_eq!(chain(false).canonical_hash(), ident.canonical_hash());
        assert_ne!(chain(true).canonical_hash(), ident.canonical_hash());
    }
}
