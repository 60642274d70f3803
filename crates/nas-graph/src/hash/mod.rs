//! A canonical hash: equal for graphs that compute the same function with the same
//! parameter tensors, whatever their node numbering or dead branches.

mod expanded;
mod sum;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use sha2::{Digest, Sha256};

use crate::ir::{Graph, Op};
use sum::{Part, Terms};

pub use expanded::expanded_canonical_hash;

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
        | Op::Flatten
        | Op::Tanh
        | Op::Scale { .. }
        | Op::Transpose { .. }
        | Op::Reshape { .. }
        | Op::Slice { .. }
        | Op::TimePool { .. } => true,
        Op::Conv2d { bias, .. }
        | Op::Linear { bias, .. }
        | Op::Dense { bias, .. }
        | Op::Conv1d { bias, .. } => !bias,
        // Sigmoid(0) = 0.5; BatchNorm(0) = shift - mean * scale / sqrt(var + eps); LayerNorm
        // and positional encodings add a shift, Softmax is uniform, Embedding and PaddingMask
        // read ids.
        Op::Sigmoid
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::Softmax
        | Op::Embedding { .. }
        | Op::PaddingMask
        | Op::PositionalEncoding { .. } => false,
        Op::Input
        | Op::Add
        | Op::Concat
        | Op::Zero
        | Op::Mix
        | Op::Mul
        | Op::Sub
        | Op::MatMul
        | Op::Parameter { .. } => false,
    }
}

/// What hashing one graph stored and fed through SHA-256: its cost, for tests that check it
/// stays bounded by the graph's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HashWork {
    /// Flattened sums kept for their enclosing sums.
    pub sums: usize,
    /// Distinct terms over all kept sums.
    pub stored_terms: usize,
    /// Term digests fed through SHA-256 for sums.
    pub hashed_terms: u64,
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
    /// Nested sums flatten, `(a + b) + c == a + (b + c)`, into a multiset of terms, kept as
    /// distinct terms with their multiplicities: a term may recur exponentially often (deep
    /// skip-only NB201 cells), yet each sum stores at most one entry per node, so time and
    /// memory are at most quadratic in the number of nodes (linear where sums share few
    /// terms). A sum of up to 65,536 terms (copies counted) hashes its full sorted term list,
    /// as this hash always did; a larger one hashes its `(term, multiplicity)` pairs.
    ///
    /// An invalid graph (see [`Graph::validate`]) hashes its JSON form instead.
    pub fn canonical_hash(&self) -> String {
        self.hash_with_work().0
    }

    pub(crate) fn hash_with_work(&self) -> (String, HashWork) {
        let mut work = HashWork::default();
        // Digest of a sum -> its flattened terms, so sums of sums flatten.
        let mut sums: HashMap<[u8; 32], Terms> = HashMap::new();
        let hash = self.hash_with_sums(|live| {
            let terms = sum::merge(live.iter().map(|d| match sums.get(d) {
                Some(inner) => Part::Sum(inner),
                None => Part::Term(*d),
            }));
            let (digest, hashed) = sum::digest(&terms);
            work.hashed_terms += hashed;
            if let Entry::Vacant(slot) = sums.entry(digest) {
                work.sums += 1;
                work.stored_terms += terms.len();
                slot.insert(terms);
            }
            digest
        });
        (hash, work)
    }

    /// The canonical hash with `hash_sum` turning the digests of an `Add`'s nonzero inputs
    /// (at least two, in input order) into the sum's digest.
    fn hash_with_sums(&self, mut hash_sum: impl FnMut(&[[u8; 32]]) -> [u8; 32]) -> String {
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
        // Parameter nodes hash their rank among Parameter nodes too: two distinct tensors of
        // one shape must not look like one shared tensor.
        let mut parameters = 0u64;
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
                Op::Parameter { .. } => {
                    parameters += 1;
                    Canon {
                        zero: false,
                        digest: sha(&[b"op", &op_json, &parameters.to_le_bytes()]),
                    }
                }
                Op::Add => {
                    let live: Vec<[u8; 32]> =
                        ins.iter().filter(|c| !c.zero).map(|c| c.digest).collect();
                    match live.as_slice() {
                        [] => zero_of(&shapes[id]),
                        [one] => Canon {
                            zero: false,
                            digest: *one,
                        },
                        _ => Canon {
                            zero: false,
                            digest: hash_sum(&live),
                        },
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
    #[derive(Clone, Copy, PartialEq)]
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
        cells(1, ops, reverse)
    }

    /// `n` such cells in a row, each reading the previous one's output.
    fn cells(n: usize, ops: [&[E]; 3], reverse: bool) -> Graph {
        let mut b = GraphBuilder::new(&[4, 6, 6]);
        let mut x = 0;
        for _ in 0..n {
            let mut nodes = vec![x];
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
            x = *nodes.last().unwrap();
        }
        b.finish(x)
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

    const ALL_SKIP: [&[E]; 3] = [
        &[E::Skip],
        &[E::Skip, E::Skip],
        &[E::Skip, E::Skip, E::Skip],
    ];
    const SKIP_HEAVY: [&[E]; 3] = [
        &[E::Skip],
        &[E::Skip, E::Conv1],
        &[E::Skip, E::Avg, E::Skip],
    ];

    #[test]
    fn deep_skip_cells_hash_with_bounded_work() {
        // 150 cells add the input 4^150 (skip-only) or about 3 * 2^150 (skip-heavy) times;
        // listing the copies would never end.
        let n = 150;
        for ops in [ALL_SKIP, SKIP_HEAVY] {
            let g = cells(n, ops, false);
            let (hash, work) = g.hash_with_work();
            assert!(work.sums <= g.nodes.len(), "{work:?}");
            // Copies are listed only up to the limit: a geometric series below it, then
            // one digest per distinct term.
            assert!(
                work.hashed_terms <= 8 * sum::LISTED_TERMS_LIMIT + work.stored_terms as u64,
                "{work:?}"
            );
            assert_eq!(cells(n, ops, true).canonical_hash(), hash);
            assert_ne!(cells(n - 1, ops, false).canonical_hash(), hash);
            let distinct = if ops == ALL_SKIP {
                // Every sum is some multiple of the input.
                work.sums
            } else {
                // A cell's output adds its input's terms plus two new ones (pool and conv of
                // the input): distinct terms grow by two per cell.
                2 * n * (2 * n + 3)
            };
            assert!(work.stored_terms <= distinct, "{work:?}");
        }
    }

    #[test]
    fn large_sums_keep_the_same_classes() {
        // Nested sums of a huge sum s flatten: (s + s) + s == s + (s + s) != s + s.
        let build = |shape: u8| {
            let mut b = GraphBuilder::new(&[4, 6, 6]);
            let mut s = 0;
            for _ in 0..40 {
                let t = b.add(Op::Identity, &[s]);
                s = b.add(Op::Add, &[s, t]);
            }
            let two = b.add(Op::Add, &[s, s]);
            let out = match shape {
                0 => b.add(Op::Add, &[two, s]),
                1 => b.add(Op::Add, &[s, two]),
                _ => two,
            };
            b.finish(out)
        };
        assert_eq!(build(0).canonical_hash(), build(1).canonical_hash());
        assert_ne!(build(0).canonical_hash(), build(2).canonical_hash());
    }

    #[test]
    fn same_hash_as_the_expanded_definition() {
        for seed in 0..200 {
            let g = crate::testing::random_graph(seed);
            assert_eq!(
                g.canonical_hash(),
                expanded_canonical_hash(&g),
                "seed {seed}"
            );
        }
        // 8 skip-only cells: 4^8 = 65,536 copies, still listed.
        for n in 1..=8 {
            let g = cells(n, ALL_SKIP, false);
            assert_eq!(g.canonical_hash(), expanded_canonical_hash(&g), "{n} cells");
        }
        // One more cell crosses the limit: the multiset hashes by counts.
        let g = cells(9, ALL_SKIP, false);
        assert_ne!(g.canonical_hash(), expanded_canonical_hash(&g));
        let mut invalid = cells(2, SKIP_HEAVY, false);
        invalid.output = 999;
        assert_eq!(invalid.canonical_hash(), expanded_canonical_hash(&invalid));
    }
}
