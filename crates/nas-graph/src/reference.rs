//! A plain-Rust float64 forward pass, written for clarity rather than speed: the ground truth
//! the ONNX export is tested against, and the function gradient checks differentiate.
//!
//! Inputs are `[N, ...graph.input]`; BatchNorm uses its running statistics (inference), Dropout
//! is the identity and `Zero` gives exact zeros.

use ndarray::{ArrayD, Axis, Ix4, IxDyn};

use crate::error::GraphError;
use crate::ir::{Graph, Op};
use crate::weights::{Weights, parameter_specs};

pub(crate) mod sequence;

pub use sequence::sinusoidal_positions;

/// Why a supernet's mixed edge has no inference value of its own.
pub(crate) const MIX_NEEDS_WEIGHTS: &str = "a mixed edge (supernet) has no inference form: its mixing weights are fed per training \
     step; derive an architecture from the supernet and export that";

/// The network output for `input` with `weights` (converted to f64).
pub fn forward(
    graph: &Graph,
    weights: &Weights,
    input: &ArrayD<f64>,
) -> Result<ArrayD<f64>, GraphError> {
    forward_with(
        graph,
        &|name| weights.get(name).map(|t| t.mapv(f64::from)),
        input,
    )
}

/// Like [`forward`], with every tensor looked up by name through `param` (e.g. f64 weights
/// with one element perturbed, for central differences).
pub fn forward_with(
    graph: &Graph,
    param: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    input: &ArrayD<f64>,
) -> Result<ArrayD<f64>, GraphError> {
    let mut values = forward_all(graph, param, input)?;
    Ok(values[graph.output]
        .take()
        .expect("the output node is always computed"))
}

/// The value of every node that reaches the output (index = node id; `None` for the others).
pub fn forward_all(
    graph: &Graph,
    param: &dyn Fn(&str) -> Option<ArrayD<f64>>,
    input: &ArrayD<f64>,
) -> Result<Vec<Option<ArrayD<f64>>>, GraphError> {
    graph.validate()?;
    let shape = input.shape();
    if shape.len() != graph.input.len() + 1 || shape[0] == 0 || shape[1..] != graph.input[..] {
        return Err(GraphError::InputShape {
            expected: graph.input.clone(),
            found: shape.to_vec(),
        });
    }
    let specs = parameter_specs(graph)?;
    let get = |name: String| -> Result<ArrayD<f64>, GraphError> {
        let t = param(&name).ok_or_else(|| GraphError::MissingWeight { name: name.clone() })?;
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .expect("only names from parameter_specs are requested");
        if t.shape() != spec.shape.as_slice() {
            return Err(GraphError::WeightShape {
                name,
                expected: spec.shape.clone(),
                found: t.shape().to_vec(),
            });
        }
        Ok(t)
    };

    let mut values: Vec<Option<ArrayD<f64>>> = vec![None; graph.nodes.len()];
    for id in graph.reachable() {
        let node = &graph.nodes[id];
        let ins: Vec<&ArrayD<f64>> = node
            .inputs
            .iter()
            .map(|&i| values[i].as_ref().expect("inputs of a live node are live"))
            .collect();
        let p = |role: &str| get(format!("n{id}.{role}"));
        let batch = shape[0];
        if let Some(y) = sequence::forward(id, &node.op, &ins, &p, batch)? {
            values[id] = Some(y);
            continue;
        }
        let y = match &node.op {
            Op::Input => input.clone(),
            Op::Conv2d {
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let b = if *bias { Some(p("bias")?) } else { None };
                conv2d(
                    ins[0],
                    &p("weight")?,
                    b.as_ref(),
                    *stride,
                    *padding,
                    *dilation,
                    *groups,
                )
            }
            Op::BatchNorm { eps, .. } => batch_norm(
                ins[0],
                &p("scale")?,
                &p("bias")?,
                &p("mean")?,
                &p("var")?,
                f64::from(*eps),
            ),
            Op::Relu => ins[0].mapv(|v| v.max(0.0)),
            Op::Relu6 => ins[0].mapv(|v| v.clamp(0.0, 6.0)),
            Op::Sigmoid => ins[0].mapv(sigmoid),
            Op::Silu => ins[0].mapv(|v| v * sigmoid(v)),
            Op::Gelu => ins[0].mapv(|v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))),
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
            Op::Mix => return Err(GraphError::node(id, &node.op, MIX_NEEDS_WEIGHTS)),
            Op::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad,
            } => pool(
                ins[0],
                *kernel,
                *stride,
                *padding,
                Pool::Avg(*count_include_pad),
            ),
            Op::MaxPool {
                kernel,
                stride,
                padding,
            } => pool(ins[0], *kernel, *stride, *padding, Pool::Max),
            Op::GlobalAvgPool => {
                let x = ins[0];
                let hw = (x.shape()[2] * x.shape()[3]) as f64;
                x.sum_axis(Axis(3)).sum_axis(Axis(2)).mapv(|v| v / hw)
            }
            Op::Flatten => {
                let n = ins[0].shape()[0];
                let f = ins[0].len() / n;
                flat(ins[0], n, f)
            }
            Op::Linear { bias, .. } => {
                let w = p("weight")?;
                let w2 = w
                    .view()
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("2-d weight");
                let x2 = ins[0]
                    .view()
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("[N, F] input");
                let mut y = x2.dot(&w2.t());
                if *bias {
                    let b = p("bias")?;
                    let b1 = b
                        .view()
                        .into_dimensionality::<ndarray::Ix1>()
                        .expect("1-d bias");
                    y += &b1;
                }
                y.into_dyn()
            }
            Op::Identity | Op::Dropout { .. } => ins[0].clone(),
            Op::Zero => ArrayD::zeros(ins[0].raw_dim()),
            op => unreachable!("{} is a sequence op", op.kind()),
        };
        values[id] = Some(y);
    }
    Ok(values)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn flat(x: &ArrayD<f64>, n: usize, f: usize) -> ArrayD<f64> {
    let data: Vec<f64> = x.iter().copied().collect();
    ArrayD::from_shape_vec(IxDyn(&[n, f]), data).expect("same element count")
}

/// `padded index -> input index`, or `None` inside the zero padding.
fn source(
    out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    len: usize,
) -> Option<usize> {
    let i = (out * stride + k * dil).checked_sub(pad)?;
    (i < len).then_some(i)
}

fn conv2d(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    bias: Option<&ArrayD<f64>>,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
) -> ArrayD<f64> {
    let x = x.view().into_dimensionality::<Ix4>().expect("[N, C, H, W]");
    let w = w.view().into_dimensionality::<Ix4>().expect("4-d weight");
    let (n, _, h, wd) = x.dim();
    let (cout, cin_g, kh, kw) = w.dim();
    let oh = crate::shape::window_out(h, kh, stride[0], pad[0], dil[0]).expect("validated");
    let ow = crate::shape::window_out(wd, kw, stride[1], pad[1], dil[1]).expect("validated");
    let cout_g = cout / groups;
    let mut y = ndarray::Array4::<f64>::zeros((n, cout, oh, ow));
    for b in 0..n {
        for co in 0..cout {
            let g = co / cout_g;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bias.map_or(0.0, |bv| bv[[co]]);
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for u in 0..kh {
                            let Some(r) = source(i, u, stride[0], pad[0], dil[0], h) else {
                                continue;
                            };
                            for v in 0..kw {
                                if let Some(s) = source(j, v, stride[1], pad[1], dil[1], wd) {
                                    acc += x[[b, c, r, s]] * w[[co, ci, u, v]];
                                }
                            }
                        }
                    }
                    y[[b, co, i, j]] = acc;
                }
            }
        }
    }
    y.into_dyn()
}

fn batch_norm(
    x: &ArrayD<f64>,
    scale: &ArrayD<f64>,
    shift: &ArrayD<f64>,
    mean: &ArrayD<f64>,
    var: &ArrayD<f64>,
    eps: f64,
) -> ArrayD<f64> {
    let mut y = x.clone();
    for (c, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
        let k = scale[[c]] / (var[[c]] + eps).sqrt();
        lane.mapv_inplace(|v| (v - mean[[c]]) * k + shift[[c]]);
    }
    y
}

#[derive(Clone, Copy)]
enum Pool {
    /// `true`: divide by the full window (padding counts as zeros).
    Avg(bool),
    Max,
}

fn pool(
    x: &ArrayD<f64>,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    kind: Pool,
) -> ArrayD<f64> {
    let x = x.view().into_dimensionality::<Ix4>().expect("[N, C, H, W]");
    let (n, c, h, w) = x.dim();
    let oh = crate::shape::window_out(h, kernel[0], stride[0], pad[0], 1).expect("validated");
    let ow = crate::shape::window_out(w, kernel[1], stride[1], pad[1], 1).expect("validated");
    let mut y = ndarray::Array4::<f64>::zeros((n, c, oh, ow));
    for ((b, ch, i, j), out) in y.indexed_iter_mut() {
        let mut sum = 0.0;
        let mut max = f64::NEG_INFINITY;
        let mut count = 0usize;
        for u in 0..kernel[0] {
            let Some(r) = source(i, u, stride[0], pad[0], 1, h) else {
                continue;
            };
            for v in 0..kernel[1] {
                if let Some(s) = source(j, v, stride[1], pad[1], 1, w) {
                    let val = x[[b, ch, r, s]];
                    sum += val;
                    max = max.max(val);
                    count += 1;
                }
            }
        }
        *out = match kind {
            Pool::Max => max,
            Pool::Avg(true) => sum / (kernel[0] * kernel[1]) as f64,
            Pool::Avg(false) => sum / count as f64,
        };
    }
    y.into_dyn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::GraphBuilder;
    use ndarray::array;

    fn params(pairs: Vec<(&str, ArrayD<f64>)>) -> impl Fn(&str) -> Option<ArrayD<f64>> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.clone())
        }
    }

    #[test]
    fn conv_with_padding_stride_and_bias_by_hand() {
        // 1x3x3 input 1..9, 2x2 kernel of ones, stride 2, pad 1, bias 0.5.
        let mut b = GraphBuilder::new(&[1, 3, 3]);
        let c = b.add(
            Op::Conv2d {
                out_channels: 1,
                kernel: [2, 2],
                stride: [2, 2],
                padding: [1, 1],
                dilation: [1, 1],
                groups: 1,
                bias: true,
            },
            &[0],
        );
        let g = b.finish(c);
        let x =
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (1..=9).map(f64::from).collect()).unwrap();
        let p = params(vec![
            ("n1.weight", ArrayD::ones(IxDyn(&[1, 1, 2, 2]))),
            ("n1.bias", array![0.5].into_dyn()),
        ]);
        let y = forward_with(&g, &p, &x).unwrap();
        // Windows: {1}, {2,3}, {4,7}, {5,6,8,9}.
        assert_eq!(y, array![[[[1.5, 5.5], [11.5, 28.5]]]].into_dyn());
    }

    #[test]
    fn pools_and_activations_by_hand() {
        let mut b = GraphBuilder::new(&[1, 2, 2]);
        let pool = |cip| Op::AvgPool {
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            count_include_pad: cip,
        };
        let a_in = b.add(pool(true), &[0]);
        let a_ex = b.add(pool(false), &[0]);
        let m = b.add(
            Op::MaxPool {
                kernel: [2, 2],
                stride: [2, 2],
                padding: [1, 1],
            },
            &[0],
        );
        let r6 = b.add(Op::Relu6, &[0]);
        let gl = b.add(Op::Gelu, &[0]);
        let z = b.add(Op::Zero, &[0]);
        let cat = b.add(Op::Concat, &[a_in, a_ex, r6, gl, z]);
        let _ = m;
        let g = b.finish(cat);
        let x = array![[[[-1.0, 2.0], [3.0, 8.0]]]].into_dyn();
        let none = |_: &str| None;
        let all = forward_all(&g, &none, &x).unwrap();
        // Every 3x3 window covers all four pixels: sum 12.
        assert_eq!(
            all[a_in].as_ref().unwrap(),
            &ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 12.0 / 9.0)
        );
        assert_eq!(
            all[a_ex].as_ref().unwrap(),
            &ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 3.0)
        );
        assert!(all[m].is_none(), "unreachable nodes are skipped");
        assert_eq!(
            all[r6].as_ref().unwrap(),
            &array![[[[0.0, 2.0], [3.0, 6.0]]]].into_dyn()
        );
        let gelu = all[gl].as_ref().unwrap();
        // GELU(-1) = -0.158655..., GELU(2) = 1.954499...
        assert!((gelu[[0, 0, 0, 0]] + 0.15865525393145707).abs() < 1e-12);
        assert!((gelu[[0, 0, 0, 1]] - 1.9544997361036416).abs() < 1e-12);
        assert_eq!(all[cat].as_ref().unwrap().shape(), &[1, 5, 2, 2]);

        let g2 = {
            let mut b = GraphBuilder::new(&[1, 2, 2]);
            let m = b.add(
                Op::MaxPool {
                    kernel: [2, 2],
                    stride: [2, 2],
                    padding: [1, 1],
                },
                &[0],
            );
            b.finish(m)
        };
        let y = forward_with(&g2, &none, &x).unwrap();
        assert_eq!(y, array![[[[-1.0, 2.0], [3.0, 8.0]]]].into_dyn());
    }

    #[test]
    fn batch_norm_linear_and_errors() {
        let mut b = GraphBuilder::new(&[2]);
        let bn = b.batch_norm(0);
        let l = b.add(
            Op::Linear {
                out_features: 1,
                bias: true,
            },
            &[bn],
        );
        let g = b.finish(l);
        let p = params(vec![
            ("n1.scale", array![2.0, 1.0].into_dyn()),
            ("n1.bias", array![0.0, 1.0].into_dyn()),
            ("n1.mean", array![1.0, 0.0].into_dyn()),
            ("n1.var", array![4.0 - 1e-5, 1.0 - 1e-5].into_dyn()),
            ("n2.weight", array![[1.0, 10.0]].into_dyn()),
            ("n2.bias", array![0.25].into_dyn()),
        ]);
        let x = array![[3.0, 2.0]].into_dyn();
        // bn: [(3-1)/2*2 + 0, 2/1*1 + 1] = [2, 3] (eps is f32 1e-5, close to the f64 one)
        let y = forward_with(&g, &p, &x).unwrap();
        assert!((y[[0, 0]] - 32.25).abs() < 1e-6, "{y}");

        let bad = array![[1.0, 2.0, 3.0]].into_dyn();
        assert!(matches!(
            forward_with(&g, &p, &bad),
            Err(GraphError::InputShape { .. })
        ));
        let none = |_: &str| None;
        assert_eq!(
            forward_with(&g, &none, &x),
            Err(GraphError::MissingWeight {
                name: "n1.scale".into()
            })
        );
    }
}
