//! The chain space's one-shot supernet.
//!
//! A chain's choices change shapes (widths, expansion ratios) and lengths (depths), so its
//! options cannot simply be summed as the cell space's operations are. The supernet builds
//! every stage at its widest options and expresses each choice as mixed edges over masks,
//! as FBNetV2 (Wan et al., CVPR 2020) does for channels and ProxylessNAS / FBNet for kernels:
//!
//! - **width**: a block's projection has the stage's widest width; the width mix sums that
//!   output with every channel past option `w` set to zero, one masked copy per option;
//! - **expansion**: the expansion conv has `c_in x` the largest ratio channels; the mix sums
//!   copies with the channels past `c_in x e` zeroed (ratio 1 has no expansion conv in the
//!   network, so its option is the block's input itself, zero-padded), once before and once
//!   after the depthwise convs, so trained BatchNorm offsets do not leak into masked channels;
//! - **kernel**: one depthwise conv per kernel size, mixed;
//! - **depth**: the stage's output mixes its outputs after each allowed number of blocks.
//!
//! Blocks of a stage share its four choices (one mixed edge per block and choice). With
//! one-hot weights a path computes the network `decode` builds for that choice vector,
//! except that a block's hidden width (`c_in x e` channels, `e` above 1) follows the
//! widest option of its input (the previous stage's width for a stage's first block, the
//! stage's own for the others) rather than the chosen one, and that a stage's first block
//! adds its input where the widest options have equal widths (the network: where the
//! chosen ones do).
//! Weights of narrower options are the leading channels of the widest ones, as in
//! FBNetV2 and Once-for-All. There is no auxiliary skip (DARTS-): a chain has no
//! parameter-free operation to collapse onto.

use nas_graph::{ExtremePaths, GraphBuilder, MixedEdge, NodeId, Op, Supernet};

use super::{ChainSpace, KIND, StageOptions};
use crate::space::{SpaceError, checked};

/// Index of each field in a stage's options (see `FIELDS`).
const DEPTH: usize = 0;
const KERNEL: usize = 1;
const EXPANSION: usize = 2;
const WIDTH: usize = 3;

pub(super) fn build(space: &ChainSpace, aux_skip: bool) -> Result<Supernet, SpaceError> {
    if aux_skip {
        return Err(SpaceError::NoAuxSkip { kind: KIND });
    }
    let mut b = GraphBuilder::new(&space.input);
    let mut edges = Vec::new();
    let mut x = space.stem(&mut b);
    let mut c_in = space.stem_channels;
    for (s, stage) in space.stages.iter().enumerate() {
        let mut net = MixBuilder {
            b: &mut b,
            edges: &mut edges,
            choice: 4 * s,
        };
        let width = widest(&stage.options[WIDTH]);
        let mut after = Vec::new();
        for block in 0..widest(&stage.options[DEPTH]) {
            let stride = if block == 0 { stage.stride } else { 1 };
            x = net.block(space, stage, x, c_in, stride);
            c_in = width;
            after.push(x);
        }
        let terms: Vec<NodeId> = stage.options[DEPTH].iter().map(|&d| after[d - 1]).collect();
        x = net.mix(DEPTH, &terms);
    }
    let logits = space.head(&mut b, x);
    let supernet = Supernet {
        graph: checked(KIND, b.finish(logits))?,
        edges,
        options: space
            .stages
            .iter()
            .flat_map(|s| s.options.iter().map(Vec::len))
            .collect(),
        aux_skip: false,
        options_share_weights: true,
        extreme_paths: Some(extreme_paths(space)),
    };
    supernet.validate().map_err(|source| SpaceError::Graph {
        kind: KIND.into(),
        source,
    })?;
    Ok(supernet)
}

/// Every choice's smallest and largest option: a larger depth, kernel, expansion ratio or
/// width is a larger network, whatever order the config lists them in (the config refuses
/// empty and repeated option lists, so each end is one option).
fn extreme_paths(space: &ChainSpace) -> ExtremePaths {
    let options = || space.stages.iter().flat_map(|s| s.options.iter());
    ExtremePaths {
        smallest: options()
            .map(|v| (0..v.len()).min_by_key(|&i| v[i]).unwrap_or(0))
            .collect(),
        largest: options()
            .map(|v| (0..v.len()).max_by_key(|&i| v[i]).unwrap_or(0))
            .collect(),
    }
}

fn widest(options: &[usize]) -> usize {
    options.iter().copied().max().unwrap_or(1)
}

/// Adds one stage's mixed edges to the graph.
struct MixBuilder<'a> {
    b: &'a mut GraphBuilder,
    edges: &'a mut Vec<MixedEdge>,
    /// The stage's first choice (its depth) in the space's choice order.
    choice: usize,
}

impl MixBuilder<'_> {
    /// A mixed edge over `terms` deciding the stage's choice `field`.
    fn mix(&mut self, field: usize, terms: &[NodeId]) -> NodeId {
        let node = self.b.add(Op::Mix, terms);
        self.edges.push(MixedEdge {
            node,
            choice: self.choice + field,
        });
        node
    }

    /// `x` (of `total` channels) with its channels from `keep` on set to zero. Always a
    /// node of its own, so no BatchNorm is a mixed edge's option (`affine` concerns the
    /// cell space's operations; the chain's BatchNorms all learn their affine parameters,
    /// as ProxylessNAS' and FBNet's do).
    fn mask(&mut self, x: NodeId, keep: usize, total: usize) -> NodeId {
        if keep >= total {
            return self.b.add(Op::Identity, &[x]);
        }
        let head = self.b.add(
            Op::Slice {
                axis: 0,
                start: 0,
                end: keep,
            },
            &[x],
        );
        let zeros = self.zeros_like_channels(x, keep, total);
        self.b.add(Op::Concat, &[head, zeros])
    }

    /// Zeros shaped as channels `from..total` of `x`.
    fn zeros_like_channels(&mut self, x: NodeId, from: usize, total: usize) -> NodeId {
        let tail = self.b.add(
            Op::Slice {
                axis: 0,
                start: from,
                end: total,
            },
            &[x],
        );
        self.b.add(Op::Zero, &[tail])
    }

    /// The expansion mix over `h` (`hidden` channels); `x` (`c_in` channels) stands for
    /// ratio 1, which has no expansion conv.
    fn expansion_mix(
        &mut self,
        expansions: &[usize],
        h: NodeId,
        x: NodeId,
        c_in: usize,
        hidden: usize,
    ) -> NodeId {
        let terms: Vec<NodeId> = expansions
            .iter()
            .map(|&e| {
                if e == 1 && x != h {
                    let zeros = self.zeros_like_channels(h, c_in, hidden);
                    self.b.add(Op::Concat, &[x, zeros])
                } else {
                    self.mask(h, c_in * e, hidden)
                }
            })
            .collect();
        self.mix(EXPANSION, &terms)
    }

    /// One inverted-residual block holding every kernel, expansion and width of the stage.
    fn block(
        &mut self,
        space: &ChainSpace,
        stage: &StageOptions,
        x: NodeId,
        c_in: usize,
        stride: usize,
    ) -> NodeId {
        let act = space.activation.op();
        let [_, kernels, expansions, widths] = &stage.options;
        let hidden = c_in * widest(expansions);
        let h = if hidden == c_in {
            x
        } else {
            let c = self.b.conv(x, hidden, 1, 1, 1);
            let bn = self.b.batch_norm(c);
            self.b.add(act.clone(), &[bn])
        };
        let h = self.expansion_mix(expansions, h, x, c_in, hidden);
        let depthwise: Vec<NodeId> = kernels
            .iter()
            .map(|&k| {
                let dw = self.b.conv(h, hidden, k, stride, hidden);
                let bn = self.b.batch_norm(dw);
                self.b.add(act.clone(), &[bn])
            })
            .collect();
        let d = self.mix(KERNEL, &depthwise);
        // The depthwise BatchNorms' offsets would otherwise reach the masked channels.
        let d = if hidden == c_in {
            d
        } else {
            let terms: Vec<NodeId> = expansions
                .iter()
                .map(|&e| self.mask(d, c_in * e, hidden))
                .collect();
            self.mix(EXPANSION, &terms)
        };
        let width = widest(widths);
        let project = self.b.conv(d, width, 1, 1, 1);
        let bn = self.b.batch_norm(project);
        let terms: Vec<NodeId> = widths.iter().map(|&w| self.mask(bn, w, width)).collect();
        let out = self.mix(WIDTH, &terms);
        if stride == 1 && c_in == width {
            self.b.add(Op::Add, &[x, out])
        } else {
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, Slice};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use nas_graph::train::reference::training_forward;
    use nas_graph::{Graph, Weights, parameter_specs, weights::param_name};

    use super::*;
    use crate::space::SearchSpace;
    use crate::space::chain::{ChainSpaceConfig, ChainStage};

    fn stage(stride: usize, options: [&[usize]; 4]) -> ChainStage {
        ChainStage {
            channels: 8,
            stride,
            depths: Some(options[0].to_vec()),
            kernels: Some(options[1].to_vec()),
            expansions: Some(options[2].to_vec()),
            widths: Some(options[3].to_vec()),
        }
    }

    fn space() -> ChainSpace {
        ChainSpace::new(&ChainSpaceConfig {
            input: Some(vec![1, 8, 8]),
            classes: Some(10),
            stem_channels: 8,
            stages: vec![
                stage(1, [&[1, 2, 3], &[3, 5], &[1, 3, 6], &[6, 8]]),
                stage(2, [&[1, 2], &[3, 5], &[1, 4], &[8, 12]]),
            ],
            head_channels: 16,
            ..ChainSpaceConfig::default()
        })
        .unwrap()
    }

    /// The nodes a path computes: from the output back, a mixed edge following only its
    /// chosen option, a `Zero` nothing.
    fn path_nodes(net: &Supernet, values: &[usize]) -> Vec<NodeId> {
        let g = &net.graph;
        let mut seen = vec![false; g.nodes.len()];
        let mut stack = vec![g.output];
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id], true) {
                continue;
            }
            let node = &g.nodes[id];
            match node.op {
                Op::Zero => {}
                Op::Mix => {
                    let edge = net.edges.iter().find(|e| e.node == id).unwrap();
                    stack.push(node.inputs[values[edge.choice]]);
                }
                _ => stack.extend(&node.inputs),
            }
        }
        (0..g.nodes.len()).filter(|&i| seen[i]).collect()
    }

    fn has_params(g: &Graph, id: NodeId) -> bool {
        matches!(
            g.nodes[id].op,
            Op::Conv2d { .. } | Op::BatchNorm { .. } | Op::Linear { .. }
        )
    }

    /// With one-hot mixing weights the supernet computes the network `decode` builds, given
    /// that network's weights in the leading channels of the supernet's tensors (the paths
    /// avoid the two documented differences: a narrower previous width with an expansion
    /// conv, and a first block's residual decided by other widths).
    #[test]
    fn a_one_hot_path_computes_the_decoded_network() {
        let space = space();
        let net = space.supernet(false).unwrap();
        let want: Vec<usize> = space
            .descriptor()
            .choices
            .iter()
            .map(|c| match &c.kind {
                nas_plugin::ChoiceKind::Categorical { options } => options.len(),
                other => panic!("unexpected choice {other:?}"),
            })
            .collect();
        assert_eq!(net.options, want);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let input = ArrayD::from_shape_fn(IxDyn(&[4, 1, 8, 8]), |_| rng.random_range(-1.0..1.0));
        let labels = [0i64, 3, 5, 9];
        // Stage 1: depth 2 of 3, kernel 5, expansion 3 (masked), widest width; stage 2:
        // depth 2, kernel 3, expansion 1 (the zero-padded input), the narrower width.
        // Then: depth 1, kernel 3, expansion 1, widest width; depth 1, kernel 5, expansion 4,
        // widest width.
        for values in [[1, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 1, 1, 1]] {
            let f: Vec<f64> = values.iter().map(|&v| v as f64).collect();
            let decoded = space.decode(&f).unwrap();
            let mut dw = Weights::he_init(&decoded, 11).unwrap();
            dw.randomize_batch_norm(&decoded, 12).unwrap();
            let mut sw = Weights::he_init(&net.graph, 13).unwrap();
            sw.randomize_batch_norm(&net.graph, 14).unwrap();
            let ours: Vec<NodeId> = path_nodes(&net, &values)
                .into_iter()
                .filter(|&i| has_params(&net.graph, i))
                .collect();
            let theirs: Vec<NodeId> = (0..decoded.nodes.len())
                .filter(|&i| has_params(&decoded, i))
                .collect();
            assert_eq!(ours.len(), theirs.len(), "path {values:?}");
            for spec in parameter_specs(&decoded).unwrap() {
                let at = theirs.iter().position(|&i| i == spec.node).unwrap();
                let node = ours[at];
                assert_eq!(
                    net.graph.nodes[node].op.kind(),
                    decoded.nodes[spec.node].op.kind()
                );
                let target = sw.get_mut(&param_name(node, spec.role)).unwrap();
                let from = dw.get(&spec.name).unwrap();
                target
                    .slice_each_axis_mut(|a| Slice::from(0..from.shape()[a.axis.index()]))
                    .assign(from);
            }
            let fed = |id: NodeId| {
                let edge = net.edges.iter().find(|e| e.node == id)?;
                let mut w = ArrayD::zeros(IxDyn(&[net.options[edge.choice]]));
                w[values[edge.choice]] = 1.0;
                Some(w)
            };
            let sup = |name: &str| sw.get(name).map(|t| t.mapv(f64::from));
            let dec = |name: &str| dw.get(name).map(|t| t.mapv(f64::from));
            let a = training_forward(&net.graph, &sup, &input, &labels, &fed, 0.0).unwrap();
            let b = training_forward(&decoded, &dec, &input, &labels, &|_| None, 0.0).unwrap();
            let diff = (&a.logits - &b.logits)
                .mapv(f64::abs)
                .fold(0.0f64, |m, &v| m.max(v));
            assert!(diff < 1e-9, "path {values:?}: logits differ by {diff}");
            // The comparison can fail: the logits depend on the path's weights.
            assert!(b.logits.iter().any(|v| v.abs() > 1e-3));
        }
    }

    #[test]
    fn every_choice_has_its_edges_and_darts_minus_is_refused() {
        let space = ChainSpace::new(&ChainSpaceConfig {
            input: Some(vec![3, 32, 32]),
            classes: Some(10),
            ..ChainSpaceConfig::default()
        })
        .unwrap();
        let net = space.supernet(false).unwrap();
        // Per stage: a depth edge, and per block of the deepest option one kernel, one
        // width and two expansion edges.
        let per_choice = |c: usize| net.edges.iter().filter(|e| e.choice == c).count();
        assert_eq!(per_choice(0), 1);
        assert_eq!(per_choice(1), 4);
        assert_eq!(per_choice(2), 8);
        assert_eq!(per_choice(3), 4);
        assert_eq!(net.options.len(), 4 * 5);
        let err = space.supernet(true).unwrap_err().to_string();
        assert!(err.contains("darts-minus"), "{err}");
    }

    /// The sandwich rule's ends follow the options' sizes, not the order a config lists them.
    #[test]
    fn the_extreme_paths_are_the_smallest_and_largest_options() {
        let space = ChainSpace::new(&ChainSpaceConfig {
            input: Some(vec![1, 8, 8]),
            classes: Some(10),
            stem_channels: 8,
            stages: vec![
                stage(1, [&[2, 1, 3], &[5, 3], &[1, 6, 3], &[8, 6]]),
                stage(2, [&[1, 2], &[3, 5], &[4, 1], &[8, 12]]),
            ],
            head_channels: 16,
            ..ChainSpaceConfig::default()
        })
        .unwrap();
        let mut net = space.supernet(false).unwrap();
        let ends = net.extreme_paths.clone().unwrap();
        assert_eq!(ends.smallest, vec![1, 1, 0, 1, 0, 0, 1, 0]);
        assert_eq!(ends.largest, vec![2, 0, 1, 0, 1, 1, 0, 1]);
        // A path that misses a choice or names an option past its last is refused.
        net.extreme_paths.as_mut().unwrap().largest[0] = 3;
        let err = net.validate().unwrap_err().to_string();
        assert!(err.contains("largest path"), "{err}");
    }
}
