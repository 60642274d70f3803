//! The NAS-Bench-201 cell space, with the exact encoding and network of NB201 (xautodl
//! `TinyNetwork` with `InferCell`s), so tabular NB201 results can be looked up by arch string.

use nas_graph::{ExtremePaths, Graph, GraphBuilder, MixedEdge, NodeId, Op, Supernet};
use nas_plugin::{Choice, ChoiceKind, SpaceDescriptor};
use serde::{Deserialize, Serialize};

use super::{SearchSpace, SpaceError, check_kind, check_values, checked, config_error, image_io};

const KIND: &str = "cell";

/// Edge operations, in the option order of every edge choice.
pub const NB201_OPS: [&str; 5] = [
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
];

/// The cell's edges as `(to, from)`, in choice order (= arch string order).
pub const NB201_EDGES: [(usize, usize); 6] = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)];

/// Largest `cells_per_stage`: 300 cells in all, far deeper than NB201's 15, and still quick
/// to build and hash.
const MAX_CELLS_PER_STAGE: usize = 100;

/// Largest first-stage `channels` (the third stage has four times as many; NB201 uses 16).
const MAX_CHANNELS: usize = 1024;

const EXAMPLE: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

/// `[space] kind = "cell"`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CellSpaceConfig {
    pub kind: String,
    /// Per-sample input shape `[C, H, W]`; from the dataset when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// Number of classes; from the dataset when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Channels of the first stage (C); stages 2 and 3 have 2C and 4C.
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Cells per stage (N).
    #[serde(default = "default_cells_per_stage")]
    pub cells_per_stage: usize,
}

fn default_channels() -> usize {
    16
}

fn default_cells_per_stage() -> usize {
    5
}

impl Default for CellSpaceConfig {
    fn default() -> Self {
        CellSpaceConfig {
            kind: KIND.to_string(),
            input: None,
            classes: None,
            channels: default_channels(),
            cells_per_stage: default_cells_per_stage(),
        }
    }
}

impl super::KindConfig for CellSpaceConfig {
    const KIND: &'static str = KIND;

    fn io(&self) -> (&Option<Vec<usize>>, &Option<usize>) {
        (&self.input, &self.classes)
    }

    fn io_mut(&mut self) -> (&mut Option<Vec<usize>>, &mut Option<usize>) {
        (&mut self.input, &mut self.classes)
    }

    fn build(&self) -> Result<Box<dyn SearchSpace>, SpaceError> {
        Ok(Box::new(CellSpace::new(self)?))
    }
}

/// The NB201 space for one config.
#[derive(Clone, Debug)]
pub struct CellSpace {
    descriptor: SpaceDescriptor,
    input: Vec<usize>,
    classes: usize,
    channels: usize,
    cells_per_stage: usize,
}

impl CellSpace {
    pub fn new(config: &CellSpaceConfig) -> Result<CellSpace, SpaceError> {
        check_kind(KIND, &config.kind)?;
        let (input, classes) = image_io(KIND, &config.input, config.classes)?;
        // Two stride-2 reductions: conv (ceil) and 2x2 pooling (floor) branches must agree.
        if !input[1].is_multiple_of(4) || !input[2].is_multiple_of(4) {
            return Err(config_error(
                KIND,
                "input",
                format!(
                    "is {input:?}; height and width must be multiples of 4 (the network halves them twice)"
                ),
            ));
        }
        if config.channels == 0 {
            return Err(config_error(KIND, "channels", "must be at least 1"));
        }
        if config.channels > MAX_CHANNELS {
            return Err(config_error(
                KIND,
                "channels",
                format!(
                    "is {}, above the limit of {MAX_CHANNELS} (the third stage has four times as many); NB201 uses 16: set at most {MAX_CHANNELS}",
                    config.channels
                ),
            ));
        }
        if config.cells_per_stage == 0 {
            return Err(config_error(KIND, "cells_per_stage", "must be at least 1"));
        }
        if config.cells_per_stage > MAX_CELLS_PER_STAGE {
            return Err(config_error(
                KIND,
                "cells_per_stage",
                format!(
                    "is {}, above the limit of {MAX_CELLS_PER_STAGE} (the network has three stages of that many cells); NB201 uses 5: set at most {MAX_CELLS_PER_STAGE}",
                    config.cells_per_stage
                ),
            ));
        }
        let options: Vec<String> = NB201_OPS.iter().map(|s| s.to_string()).collect();
        let choices = NB201_EDGES
            .iter()
            .map(|(to, from)| Choice {
                name: format!("edge_{to}_{from}"),
                kind: ChoiceKind::Categorical {
                    options: options.clone(),
                },
            })
            .collect();
        Ok(CellSpace {
            descriptor: SpaceDescriptor {
                kind: KIND.to_string(),
                choices,
            },
            input,
            classes,
            channels: config.channels,
            cells_per_stage: config.cells_per_stage,
        })
    }
}

impl CellSpace {
    /// The NB201 network (stem, three stages of cells, two reduction blocks, classifier);
    /// `edge(builder, input, channels, edge index)` builds each cell edge.
    fn network(
        &self,
        edge: &mut dyn FnMut(&mut GraphBuilder, NodeId, usize, usize) -> NodeId,
    ) -> Graph {
        let mut b = GraphBuilder::new(&self.input);
        let c = self.channels;
        let stem = b.add(conv3x3(c, 1), &[b.input()]);
        let mut x = b.batch_norm(stem);
        for stage in 0..3 {
            let c_stage = c << stage;
            if stage > 0 {
                x = reduction_block(&mut b, x, c_stage);
            }
            for _ in 0..self.cells_per_stage {
                x = cell(&mut b, x, c_stage, edge);
            }
        }
        // "lastact": BN + ReLU before the classifier.
        let bn = b.batch_norm(x);
        let act = b.add(Op::Relu, &[bn]);
        let pool = b.add(Op::GlobalAvgPool, &[act]);
        let logits = b.add(
            Op::Linear {
                out_features: self.classes,
                bias: true,
            },
            &[pool],
        );
        b.finish(logits)
    }
}

impl SearchSpace for CellSpace {
    fn descriptor(&self) -> &SpaceDescriptor {
        &self.descriptor
    }

    fn decode(&self, values: &[f64]) -> Result<Graph, SpaceError> {
        check_values(KIND, &self.descriptor, values)?;
        let ops: Vec<usize> = values.iter().map(|&v| super::index(v)).collect();
        let graph = self.network(&mut |b, x, c, edge| edge_op(b, x, c, ops[edge]));
        checked(KIND, graph)
    }

    /// Every edge of every cell mixes the five NB201 ops (`none` included, as in NB201's
    /// DARTS, GDAS and SPOS search networks); the cells share one choice per edge.
    fn supernet(&self, aux_skip: bool) -> Result<Supernet, SpaceError> {
        let mut edges = Vec::new();
        let graph = self.network(&mut |b, x, c, edge| {
            let mut terms: Vec<NodeId> = (0..NB201_OPS.len())
                .map(|op| edge_op(b, x, c, op))
                .collect();
            if aux_skip {
                terms.push(x);
            }
            let node = b.add(Op::Mix, &terms);
            edges.push(MixedEdge { node, choice: edge });
            node
        });
        let supernet = Supernet {
            graph: checked(KIND, graph)?,
            edges,
            options: vec![NB201_OPS.len(); NB201_EDGES.len()],
            aux_skip,
            options_share_weights: false,
            extreme_paths: Some(extreme_paths()),
        };
        supernet.validate().map_err(|source| SpaceError::Graph {
            kind: KIND.into(),
            source,
        })?;
        Ok(supernet)
    }

    fn arch_string(&self, values: &[f64]) -> String {
        let names: Vec<&str> = (0..NB201_EDGES.len())
            .map(|i| {
                values
                    .get(i)
                    .filter(|v| v.fract() == 0.0 && **v >= 0.0)
                    .and_then(|&v| NB201_OPS.get(v as usize).copied())
                    .unwrap_or("?")
            })
            .collect();
        join_arch(&names)
    }

    fn parse_arch(&self, arch: &str) -> Result<Vec<f64>, SpaceError> {
        Ok(parse_nb201_arch(arch)?.iter().map(|&i| i as f64).collect())
    }
}

/// The sandwich rule's ends in the cell space: the largest network puts `nor_conv_3x3` (the
/// most weights and FLOPs) on every edge, the smallest `skip_connect`, the cheapest operation
/// that still passes its input on (`none` on every edge would cut the cell off).
fn extreme_paths() -> ExtremePaths {
    let everywhere = |name: &str| {
        let op = NB201_OPS.iter().position(|o| *o == name).unwrap_or(0);
        vec![op; NB201_EDGES.len()]
    };
    ExtremePaths {
        smallest: everywhere("skip_connect"),
        largest: everywhere("nor_conv_3x3"),
    }
}

/// The NB201 string of six op indices (into [`NB201_OPS`], in [`NB201_EDGES`] order).
pub fn nb201_arch_string(ops: &[usize; 6]) -> String {
    let names: Vec<&str> = ops
        .iter()
        .map(|&o| NB201_OPS.get(o).copied().unwrap_or("?"))
        .collect();
    join_arch(&names)
}

fn join_arch(names: &[&str]) -> String {
    let mut out = String::new();
    let mut edge = 0;
    for to in 1..=3 {
        if to > 1 {
            out.push('+');
        }
        out.push('|');
        for from in 0..to {
            out.push_str(names[edge]);
            out.push('~');
            out.push_str(&from.to_string());
            out.push('|');
            edge += 1;
        }
    }
    out
}

/// Parses an NB201 string into six op indices (into [`NB201_OPS`], in [`NB201_EDGES`] order).
pub fn parse_nb201_arch(arch: &str) -> Result<[usize; 6], SpaceError> {
    let err = |reason: String| SpaceError::Arch {
        kind: KIND,
        arch: arch.to_string(),
        reason,
        example: EXAMPLE.to_string(),
    };
    let nodes: Vec<&str> = arch.trim().split('+').collect();
    if nodes.len() != 3 {
        return Err(err(format!(
            "found {} `+`-separated node groups, expected 3",
            nodes.len()
        )));
    }
    let mut ops = [0usize; 6];
    let mut edge = 0;
    for (j, group) in nodes.iter().enumerate() {
        let to = j + 1;
        let inner = group
            .strip_prefix('|')
            .and_then(|g| g.strip_suffix('|'))
            .ok_or_else(|| {
                err(format!(
                    "node {to} group `{group}` must start and end with `|`"
                ))
            })?;
        let edges: Vec<&str> = inner.split('|').collect();
        if edges.len() != to {
            return Err(err(format!(
                "node {to} has {} inputs, expected {to} (one per earlier node)",
                edges.len()
            )));
        }
        for (from, token) in edges.iter().enumerate() {
            let (name, src) = token
                .split_once('~')
                .ok_or_else(|| err(format!("edge `{token}` is not of the form `op~input`")))?;
            if src != from.to_string() {
                return Err(err(format!(
                    "edge `{token}` of node {to} should read from node {from}"
                )));
            }
            ops[edge] = NB201_OPS.iter().position(|o| *o == name).ok_or_else(|| {
                err(format!(
                    "unknown op `{name}`, expected one of: {}",
                    NB201_OPS.join(", ")
                ))
            })?;
            edge += 1;
        }
    }
    Ok(ops)
}

fn conv3x3(out_channels: usize, stride: usize) -> Op {
    conv(out_channels, 3, stride)
}

/// Conv with padding k/2, no bias (all NB201 convs).
fn conv(out_channels: usize, kernel: usize, stride: usize) -> Op {
    Op::Conv2d {
        out_channels,
        kernel: [kernel, kernel],
        stride: [stride, stride],
        padding: [kernel / 2, kernel / 2],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    }
}

/// NB201 `ReLUConvBN`: ReLU -> Conv (no bias) -> affine BN.
fn relu_conv_bn(b: &mut GraphBuilder, x: NodeId, c_out: usize, k: usize, stride: usize) -> NodeId {
    let r = b.add(Op::Relu, &[x]);
    let c = b.add(conv(c_out, k, stride), &[r]);
    b.batch_norm(c)
}

/// NB201 `ResNetBasicblock` with stride 2; the shortcut is 2x2 average pooling then a 1x1
/// conv (no BN), as in xautodl.
fn reduction_block(b: &mut GraphBuilder, x: NodeId, c_out: usize) -> NodeId {
    let a = relu_conv_bn(b, x, c_out, 3, 2);
    let body = relu_conv_bn(b, a, c_out, 3, 1);
    let pool = b.add(
        Op::AvgPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            count_include_pad: true,
        },
        &[x],
    );
    let shortcut = b.add(conv(c_out, 1, 1), &[pool]);
    b.add(Op::Add, &[shortcut, body])
}

/// NB201 `InferCell`: node j sums op_{j,i}(node i) over i < j; the output is node 3.
/// `edge` builds edge `k` (in [`NB201_EDGES`] order) from its input.
fn cell(
    b: &mut GraphBuilder,
    x: NodeId,
    c: usize,
    edge: &mut dyn FnMut(&mut GraphBuilder, NodeId, usize, usize) -> NodeId,
) -> NodeId {
    let mut nodes = vec![x];
    let mut k = 0;
    for to in 1..=3 {
        let terms: Vec<NodeId> = (0..to)
            .map(|from| {
                let y = edge(b, nodes[from], c, k);
                k += 1;
                y
            })
            .collect();
        // A single input needs no sum (as in InferCell).
        let node = match terms.as_slice() {
            [only] => *only,
            _ => b.add(Op::Add, &terms),
        };
        nodes.push(node);
    }
    nodes[3]
}

fn edge_op(b: &mut GraphBuilder, x: NodeId, c: usize, op: usize) -> NodeId {
    match NB201_OPS[op] {
        "none" => b.add(Op::Zero, &[x]),
        "skip_connect" => b.add(Op::Identity, &[x]),
        "nor_conv_1x1" => relu_conv_bn(b, x, c, 1, 1),
        "nor_conv_3x3" => relu_conv_bn(b, x, c, 3, 1),
        "avg_pool_3x3" => b.add(
            Op::AvgPool {
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                count_include_pad: false,
            },
            &[x],
        ),
        other => unreachable!("op `{other}` is not in NB201_OPS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_string_format() {
        let ops = [3, 3, 4, 1, 3, 1];
        let s = nb201_arch_string(&ops);
        assert_eq!(s, EXAMPLE);
        assert_eq!(parse_nb201_arch(&s).unwrap(), ops);
    }

    /// The sandwich rule's ends: the largest path is the costliest network of the space, the
    /// smallest the all-skip cell (the cheapest that still reaches the output).
    #[test]
    fn the_extreme_paths_are_the_all_conv3x3_and_all_skip_cells() {
        let space = CellSpace::new(&CellSpaceConfig {
            input: Some(vec![1, 8, 8]),
            classes: Some(10),
            channels: 4,
            cells_per_stage: 1,
            ..CellSpaceConfig::default()
        })
        .unwrap();
        let ends = space.supernet(false).unwrap().extreme_paths.unwrap();
        let arch = |path: &[usize]| {
            let values: Vec<f64> = path.iter().map(|&o| o as f64).collect();
            (space.arch_string(&values), space.decode(&values).unwrap())
        };
        let (largest, big) = arch(&ends.largest);
        let (smallest, small) = arch(&ends.smallest);
        assert_eq!(largest, join_arch(&["nor_conv_3x3"; 6]));
        assert_eq!(smallest, join_arch(&["skip_connect"; 6]));
        // No single-op change makes the largest network larger, or the smallest (`none`
        // aside) smaller.
        for edge in 0..NB201_EDGES.len() {
            for (op, name) in NB201_OPS.iter().enumerate() {
                let mut values = vec![3.0; 6];
                values[edge] = op as f64;
                let g = space.decode(&values).unwrap();
                assert!(g.param_count().unwrap() <= big.param_count().unwrap());
                assert!(g.flops().unwrap() <= big.flops().unwrap());
                let mut values = vec![1.0; 6];
                values[edge] = op as f64;
                if *name != "none" {
                    let g = space.decode(&values).unwrap();
                    assert!(
                        g.flops().unwrap() >= small.flops().unwrap(),
                        "{op} on {edge}"
                    );
                }
            }
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let bad = [
            ("|none~0|+|none~0|none~1|", "expected 3"),
            ("|none~0|+|none~0|+|none~0|none~1|none~2|", "has 1 inputs"),
            (
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                "from node 0",
            ),
            (
                "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "unknown op `conv`",
            ),
            (
                "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "start and end",
            ),
        ];
        for (arch, want) in bad {
            let e = parse_nb201_arch(arch).unwrap_err().to_string();
            assert!(e.contains(want), "{arch}: {e}");
        }
    }
}
