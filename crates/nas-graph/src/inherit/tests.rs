//! Networks built here carry a label per node naming its place by construction ("cell 2,
//! edge 3, conv"); inheritance must copy exactly the tensors whose labels and shapes match.

use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::*;
use crate::ir::GraphBuilder;
use crate::reference::forward;

/// A graph builder that labels every node.
struct Labelled {
    b: GraphBuilder,
    labels: Vec<String>,
}

impl Labelled {
    fn new(input: &[usize]) -> Labelled {
        Labelled {
            b: GraphBuilder::new(input),
            labels: vec!["input".into()],
        }
    }

    fn add(&mut self, op: Op, inputs: &[NodeId], label: String) -> NodeId {
        self.labels.push(label);
        self.b.add(op, inputs)
    }

    fn conv(
        &mut self,
        x: NodeId,
        c: usize,
        k: usize,
        stride: usize,
        groups: usize,
        label: String,
    ) -> NodeId {
        self.add(
            Op::Conv2d {
                out_channels: c,
                kernel: [k, k],
                stride: [stride, stride],
                padding: [k / 2, k / 2],
                dilation: [1, 1],
                groups,
                bias: false,
            },
            &[x],
            label,
        )
    }

    fn bn(&mut self, x: NodeId, label: String) -> NodeId {
        self.add(
            Op::BatchNorm {
                eps: 1e-5,
                momentum: 0.1,
            },
            &[x],
            label,
        )
    }

    fn finish(self, out: NodeId) -> (Graph, Vec<String>) {
        (self.b.finish(out), self.labels)
    }
}

/// A small NAS-Bench-201 network: stem, a cell, a residual reduction block, a cell, then
/// BN + ReLU + pooling + classifier. `ops` are NB201 op indices (none, skip_connect,
/// nor_conv_1x1, nor_conv_3x3, avg_pool_3x3) of the six edges.
fn nb201(ops: [usize; 6]) -> (Graph, Vec<String>) {
    let mut g = Labelled::new(&[2, 8, 8]);
    let stem = g.conv(0, 4, 3, 1, 1, "stem.conv".into());
    let mut x = g.bn(stem, "stem.bn".into());
    for stage in 0..2 {
        let c = 4 << stage;
        if stage > 0 {
            let l = |s: &str| format!("reduce{stage}.{s}");
            let r = g.add(Op::Relu, &[x], l("a.relu"));
            let a = g.conv(r, c, 3, 2, 1, l("a.conv"));
            let a = g.bn(a, l("a.bn"));
            let r = g.add(Op::Relu, &[a], l("b.relu"));
            let body = g.conv(r, c, 3, 1, 1, l("b.conv"));
            let body = g.bn(body, l("b.bn"));
            let pool = g.add(
                Op::AvgPool {
                    kernel: [2, 2],
                    stride: [2, 2],
                    padding: [0, 0],
                    count_include_pad: true,
                },
                &[x],
                l("pool"),
            );
            let short = g.conv(pool, c, 1, 1, 1, l("shortcut"));
            x = g.add(Op::Add, &[short, body], l("add"));
        }
        let mut nodes = vec![x];
        let mut edge = 0;
        for to in 1..=3 {
            let mut terms = Vec::new();
            for &input in &nodes[..to] {
                let l = |s: &str| format!("stage{stage}.edge{edge}.{s}");
                let y = match ops[edge] {
                    0 => g.add(Op::Zero, &[input], l("zero")),
                    1 => g.add(Op::Identity, &[input], l("skip")),
                    2 | 3 => {
                        let k = if ops[edge] == 2 { 1 } else { 3 };
                        let r = g.add(Op::Relu, &[input], l("relu"));
                        let cv = g.conv(r, c, k, 1, 1, l("conv"));
                        g.bn(cv, l("bn"))
                    }
                    _ => g.add(
                        Op::AvgPool {
                            kernel: [3, 3],
                            stride: [1, 1],
                            padding: [1, 1],
                            count_include_pad: false,
                        },
                        &[input],
                        l("pool"),
                    ),
                };
                terms.push(y);
                edge += 1;
            }
            let node = match terms.as_slice() {
                [only] => *only,
                _ => g.add(Op::Add, &terms, format!("stage{stage}.node{to}")),
            };
            nodes.push(node);
        }
        x = nodes[3];
    }
    let bn = g.bn(x, "last.bn".into());
    let act = g.add(Op::Relu, &[bn], "last.relu".into());
    let pool = g.add(Op::GlobalAvgPool, &[act], "gap".into());
    let fc = g.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[pool],
        "fc".into(),
    );
    g.finish(fc)
}

/// A small MobileNetV2-like chain: per stage `(depth, kernel, expansion, width, stride)`.
fn chain(stages: &[(usize, usize, usize, usize, usize)]) -> (Graph, Vec<String>) {
    let mut g = Labelled::new(&[2, 8, 8]);
    let stem = g.conv(0, 4, 3, 1, 1, "stem.conv".into());
    let bn = g.bn(stem, "stem.bn".into());
    let mut x = g.add(Op::Relu6, &[bn], "stem.act".into());
    let mut c_in = 4;
    for (s, &(depth, kernel, expansion, width, stride)) in stages.iter().enumerate() {
        for block in 0..depth {
            let l = |p: &str| format!("stage{s}.block{block}.{p}");
            let st = if block == 0 { stride } else { 1 };
            let hidden = c_in * expansion;
            let mut h = x;
            if expansion != 1 {
                let c = g.conv(h, hidden, 1, 1, 1, l("expand.conv"));
                let b = g.bn(c, l("expand.bn"));
                h = g.add(Op::Relu6, &[b], l("expand.act"));
            }
            let dw = g.conv(h, hidden, kernel, st, hidden, l("dw.conv"));
            let b = g.bn(dw, l("dw.bn"));
            h = g.add(Op::Relu6, &[b], l("dw.act"));
            let p = g.conv(h, width, 1, 1, 1, l("project.conv"));
            let out = g.bn(p, l("project.bn"));
            x = if st == 1 && c_in == width {
                g.add(Op::Add, &[x, out], l("add"))
            } else {
                out
            };
            c_in = width;
        }
    }
    let pool = g.add(Op::GlobalAvgPool, &[x], "gap".into());
    let fc = g.add(
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[pool],
        "fc".into(),
    );
    g.finish(fc)
}

/// Trained-looking parent weights: He init with random BatchNorm statistics and biases.
fn trained(graph: &Graph, seed: u64) -> Weights {
    let mut w = Weights::he_init(graph, seed).unwrap();
    w.randomize_batch_norm(graph, seed + 1).unwrap();
    w.randomize_biases(graph, seed + 2).unwrap();
    w
}

#[derive(Debug, PartialEq)]
enum Expect {
    Copied(String),
    Morphed,
    Fresh,
}

/// What inheritance must do for each child tensor, from the labels alone: copy the parent's
/// tensor of the same label and shape, morph a conv whose kernel grew, else leave it fresh.
fn expected(
    parent: &(Graph, Vec<String>),
    child: &(Graph, Vec<String>),
    pw: &Weights,
) -> Vec<(String, Expect)> {
    parameter_specs(&child.0)
        .unwrap()
        .into_iter()
        .map(|spec| {
            let label = &child.1[spec.node];
            let p = parent.1.iter().position(|l| l == label);
            let e = match p.map(|p| (p, pw.get(&param_name(p, spec.role)).unwrap())) {
                Some((p, t)) if t.shape() == spec.shape.as_slice() => {
                    Expect::Copied(param_name(p, spec.role))
                }
                Some((p, t))
                    if spec.role == ParamRole::Weight
                        && matches!(parent.0.nodes[p].op, Op::Conv2d { .. })
                        && t.shape()[..2] == spec.shape[..2]
                        && t.shape()[2] < spec.shape[2] =>
                {
                    Expect::Morphed
                }
                _ => Expect::Fresh,
            };
            (spec.name, e)
        })
        .collect()
}

/// Inherits `parent` into `child` and checks every tensor against [`expected`]; returns the
/// weights and report.
fn check(parent: &(Graph, Vec<String>), child: &(Graph, Vec<String>)) -> (Weights, InheritReport) {
    let pw = trained(&parent.0, 11);
    let init = Weights::he_init(&child.0, 99).unwrap();
    let (w, report) = inherit(&parent.0, &pw, &child.0, &init);
    w.check(&child.0).unwrap();
    let mut copied = Vec::new();
    let mut fresh = Vec::new();
    for (name, e) in expected(parent, child, &pw) {
        match e {
            Expect::Copied(from) => {
                assert_eq!(w.get(&name), pw.get(&from), "{name} should equal {from}");
                copied.push(name);
            }
            Expect::Fresh => {
                if !report.morphed.contains(&name) {
                    assert_eq!(w.get(&name), init.get(&name), "{name} should be fresh");
                    fresh.push(name);
                }
            }
            Expect::Morphed => assert!(report.morphed.contains(&name), "{name} not morphed"),
        }
    }
    assert_eq!(report.copied, copied, "copied tensors");
    assert_eq!(report.fresh, fresh, "fresh tensors");
    let all = report.copied.len() + report.morphed.len() + report.fresh.len();
    assert_eq!(all, parameter_specs(&child.0).unwrap().len());
    (w, report)
}

fn input(graph: &Graph, seed: u64) -> ArrayD<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let mut shape = vec![2];
    shape.extend(&graph.input);
    ArrayD::from_shape_simple_fn(IxDyn(&shape), || normal.sample(&mut rng))
}

fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

const PARENT: [usize; 6] = [3, 1, 2, 0, 4, 3];

#[test]
fn identical_networks_copy_everything() {
    let g = nb201(PARENT);
    let (w, report) = check(&g, &g);
    assert!(report.morphed.is_empty() && report.fresh.is_empty());
    assert_eq!(w, trained(&g.0, 11));
}

#[test]
fn cell_conv_1x1_to_3x3_is_morphed_and_the_network_computes_the_same() {
    let parent = nb201(PARENT);
    let mut ops = PARENT;
    ops[2] = 3; // edge 2 (node 2 <- node 1): nor_conv_1x1 -> nor_conv_3x3, in both cells
    let child = nb201(ops);
    let (w, report) = check(&parent, &child);
    assert_eq!(report.morphed.len(), 2, "{report:?}");
    assert!(report.fresh.is_empty(), "{report:?}");
    // The centre of the grown kernel is the parent's kernel, the ring around it zero.
    let name = &report.morphed[0];
    let grown = w.get(name).unwrap();
    assert_eq!(grown.shape()[2..], [3, 3]);
    let pw = trained(&parent.0, 11);
    let node: usize = name[1..name.find('.').unwrap()].parse().unwrap();
    let p = parent.1.iter().position(|l| *l == child.1[node]).unwrap();
    let small = pw.get(&param_name(p, ParamRole::Weight)).unwrap();
    for ((o, i, y, x), v) in grown
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter()
    {
        let want = if y == 1 && x == 1 {
            small[[o, i, 0, 0]]
        } else {
            0.0
        };
        assert_eq!(*v, want);
    }
    let x = input(&child.0, 3);
    let d = max_diff(
        &forward(&parent.0, &pw, &x).unwrap(),
        &forward(&child.0, &w, &x).unwrap(),
    );
    assert!(d < 1e-9, "outputs differ by {d}");
}

#[test]
fn cell_edges_after_a_changed_op_keep_their_place() {
    let parent = nb201(PARENT);
    let mut ops = PARENT;
    // Edge 0 (node 1 <- node 0) feeds edges 2 and 4 through node 1: conv -> pooling.
    ops[0] = 4;
    let child = nb201(ops);
    let (_, report) = check(&parent, &child);
    assert!(
        report.fresh.is_empty() && report.morphed.is_empty(),
        "{report:?}"
    );
    // Everything but the two removed edge-0 convs (and their BatchNorms) came over.
    let parent_tensors = parameter_specs(&parent.0).unwrap().len();
    assert_eq!(report.copied.len(), parent_tensors - 2 * 5);
    // And an op change the other way (pooling -> conv) leaves just that edge fresh.
    let (_, report) = check(&child, &parent);
    assert_eq!(report.fresh.len(), 2 * 5, "{report:?}");
}

#[test]
fn a_conv_replacing_none_starts_silent() {
    let parent = nb201(PARENT);
    let mut ops = PARENT;
    ops[3] = 2; // edge 3 (node 3 <- node 0): none -> nor_conv_1x1
    let child = nb201(ops);
    let (w, report) = check(&parent, &child);
    // The new BatchNorm's scale and shift are zero, so the new branch adds zero.
    assert_eq!(report.morphed.len(), 4, "{report:?}");
    assert!(
        report
            .morphed
            .iter()
            .all(|n| n.ends_with(".scale") || n.ends_with(".bias"))
    );
    for name in &report.morphed {
        assert!(w.get(name).unwrap().iter().all(|&v| v == 0.0), "{name}");
    }
    // conv weight, BN mean and var of each cell's new edge
    assert_eq!(report.fresh.len(), 2 * 3, "{report:?}");
    let pw = trained(&parent.0, 11);
    let x = input(&child.0, 4);
    let d = max_diff(
        &forward(&parent.0, &pw, &x).unwrap(),
        &forward(&child.0, &w, &x).unwrap(),
    );
    assert!(d < 1e-9, "outputs differ by {d}");
}

const STAGES: [(usize, usize, usize, usize, usize); 2] = [(2, 3, 2, 4, 1), (2, 3, 3, 8, 2)];

#[test]
fn chain_kernel_growth_is_morphed_and_the_network_computes_the_same() {
    let parent = chain(&STAGES);
    let mut stages = STAGES;
    stages[0].1 = 5;
    let child = chain(&stages);
    let (w, report) = check(&parent, &child);
    // The depthwise conv of both blocks of stage 0.
    assert_eq!(report.morphed.len(), 2, "{report:?}");
    assert!(report.fresh.is_empty(), "{report:?}");
    let pw = trained(&parent.0, 11);
    let x = input(&child.0, 5);
    let d = max_diff(
        &forward(&parent.0, &pw, &x).unwrap(),
        &forward(&child.0, &w, &x).unwrap(),
    );
    assert!(d < 1e-9, "outputs differ by {d}");
}

#[test]
fn chain_width_and_expansion_changes_copy_what_still_fits() {
    let parent = chain(&STAGES);
    let mut stages = STAGES;
    stages[1].3 = 12; // last stage wider
    let (_, report) = check(&parent, &chain(&stages));
    assert!(report.copied.len() > report.fresh.len(), "{report:?}");
    let mut stages = STAGES;
    stages[1].2 = 4; // last stage expands more
    let (_, report) = check(&parent, &chain(&stages));
    assert!(!report.fresh.is_empty() && !report.copied.is_empty());
    // A shallower first stage: its first block and everything before it stay.
    let mut stages = STAGES;
    stages[0].0 = 1;
    let child = chain(&stages);
    let pw = trained(&parent.0, 11);
    let init = Weights::he_init(&child.0, 99).unwrap();
    let (_, report) = inherit(&parent.0, &pw, &child.0, &init);
    for spec in parameter_specs(&child.0).unwrap() {
        let label = &child.1[spec.node];
        if label.starts_with("stem") || label.starts_with("stage0.block0") {
            assert!(report.copied.contains(&spec.name), "{label} {}", spec.name);
        }
    }
}

#[test]
fn unrelated_or_missing_parent_weights_leave_the_child_fresh() {
    let parent = chain(&STAGES);
    let child = nb201(PARENT);
    let init = Weights::he_init(&child.0, 1).unwrap();
    let (w, report) = inherit(&parent.0, &trained(&parent.0, 2), &child.0, &init);
    // Only the stem's shapes can agree between the two.
    assert!(report.copied.len() <= 5, "{report:?}");
    let (w2, report) = inherit(&child.0, &Weights::new(), &child.0, &init);
    assert_eq!(w2, init);
    assert!(!report.inherited_any());
    assert_eq!(report.fresh.len(), parameter_specs(&child.0).unwrap().len());
    w.check(&child.0).unwrap();
}

#[test]
fn positions_are_unique_in_both_spaces() {
    for (g, _) in [nb201(PARENT), nb201([1, 0, 4, 2, 3, 0]), chain(&STAGES)] {
        let keys = positions(&g);
        let specs = parameter_specs(&g).unwrap();
        let mut layer_keys: Vec<u64> = specs.iter().map(|s| keys[s.node]).collect();
        layer_keys.dedup();
        let n = layer_keys.len();
        layer_keys.sort();
        layer_keys.dedup();
        assert_eq!(layer_keys.len(), n, "two layers share a position");
    }
}
