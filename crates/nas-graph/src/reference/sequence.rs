//! The float64 forward of the sequence ops (the same in training and inference), written
//! element by element after their definitions in [`Op`].

use ndarray::{ArrayD, Axis, IxDyn, Slice};

use crate::error::GraphError;
use crate::ir::{MASKED, NodeId, Op, TimePoolKind};

/// Looks up node `id`'s tensor of a role (`"weight"`, `"bias"`, ...).
pub(crate) type Param<'a> = dyn Fn(&str) -> Result<ArrayD<f64>, GraphError> + 'a;

/// The value of sequence op `op` (node `id`) on `ins` (batch axis first; `batch` samples), or
/// `None` when `op` is no sequence op.
pub(crate) fn forward(
    id: NodeId,
    op: &Op,
    ins: &[&ArrayD<f64>],
    p: &Param,
    batch: usize,
) -> Result<Option<ArrayD<f64>>, GraphError> {
    let x = ins.first().copied();
    let x0 = || x.expect("validated: the op has an input");
    Ok(Some(match op {
        Op::Embedding { vocab, dim } => embedding(id, op, x0(), &p("weight")?, *vocab, *dim)?,
        Op::Dense { bias, .. } => {
            let b = if *bias { Some(p("bias")?) } else { None };
            dense(x0(), &p("weight")?, b.as_ref())
        }
        Op::LayerNorm { eps } => layer_norm(x0(), &p("scale")?, &p("bias")?, f64::from(*eps)),
        Op::Tanh => x0().mapv(f64::tanh),
        Op::Mul => ins[0] * ins[1],
        Op::Sub => ins[0] - ins[1],
        Op::Scale { factor } => x0() * f64::from(*factor),
        Op::Transpose { perm } => {
            let axes: Vec<usize> = std::iter::once(0)
                .chain(perm.iter().map(|a| a + 1))
                .collect();
            x0().view()
                .permuted_axes(IxDyn(&axes))
                .as_standard_layout()
                .into_owned()
        }
        Op::Reshape { shape } => batched_reshape(x0(), shape),
        Op::Slice { axis, start, end } => x0()
            .slice_axis(Axis(axis + 1), Slice::from(*start..*end))
            .to_owned(),
        Op::Parameter { shape, .. } => {
            let w = p("weight")?;
            let dims: Vec<usize> = std::iter::once(batch)
                .chain(shape.iter().copied())
                .collect();
            w.broadcast(IxDyn(&dims))
                .expect("the tensor has the parameter's shape")
                .to_owned()
        }
        Op::MatMul => matmul(ins[0], ins[1]),
        Op::Softmax => softmax(ins[0], ins.get(1).copied()),
        Op::PaddingMask => padding_mask(x0()),
        Op::TimePool { kind } => time_pool(x0(), ins.get(1).copied(), *kind),
        Op::PositionalEncoding { learned } => {
            let table = if *learned {
                p("weight")?
            } else {
                let s = x0().shape();
                sinusoidal_positions(s[1], s[2])
            };
            x0() + &table
        }
        Op::Conv1d {
            kernel,
            dilation,
            causal,
            bias,
            ..
        } => {
            let b = if *bias { Some(p("bias")?) } else { None };
            let pad = conv1d_left_pad(*kernel, *dilation, *causal);
            conv1d(x0(), &p("weight")?, b.as_ref(), *dilation, pad)
        }
        _ => return Ok(None),
    }))
}

/// The fixed sinusoidal position table `[t, d]`: `pe[p, 2i] = sin(p / 10000^(2i / d))`,
/// `pe[p, 2i + 1] = cos(p / 10000^(2i / d))`.
pub fn sinusoidal_positions(t: usize, d: usize) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[t, d]), |i| {
        let (pos, f) = (i[0] as f64, i[1]);
        let angle = pos / 10000f64.powf((f - f % 2) as f64 / d as f64);
        if f % 2 == 0 { angle.sin() } else { angle.cos() }
    })
}

/// Zeros a [`Op::Conv1d`] pads on the left: all of its reach when causal, else half.
pub(crate) fn conv1d_left_pad(kernel: usize, dilation: usize, causal: bool) -> usize {
    let reach = dilation * (kernel - 1);
    if causal { reach } else { reach / 2 }
}

fn embedding(
    id: NodeId,
    op: &Op,
    x: &ArrayD<f64>,
    table: &ArrayD<f64>,
    vocab: usize,
    dim: usize,
) -> Result<ArrayD<f64>, GraphError> {
    let (n, t) = (x.shape()[0], x.shape()[1]);
    let mut y = ArrayD::zeros(IxDyn(&[n, t, dim]));
    for ((b, s), &v) in x
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("[N, T] ids")
        .indexed_iter()
    {
        if v.fract() != 0.0 || v < 0.0 || v >= vocab as f64 {
            return Err(GraphError::node(
                id,
                op,
                format!(
                    "token id {v} (sample {b}, step {s}) is not an integer in [0, {vocab}); check the vocabulary size"
                ),
            ));
        }
        y.slice_mut(ndarray::s![b, s, ..])
            .assign(&table.index_axis(Axis(0), v as usize));
    }
    Ok(y)
}

/// `[N, ...]` -> `[N, ...shape]`, row-major.
fn batched_reshape(x: &ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
    let dims: Vec<usize> = std::iter::once(x.shape()[0])
        .chain(shape.iter().copied())
        .collect();
    ArrayD::from_shape_vec(IxDyn(&dims), x.iter().copied().collect()).expect("same element count")
}

/// Rows of the last axis as a matrix `[rows, last]`.
fn rows(x: &ArrayD<f64>) -> ndarray::Array2<f64> {
    let last = *x.shape().last().expect("rank >= 1");
    let data: Vec<f64> = x.iter().copied().collect();
    ndarray::Array2::from_shape_vec((data.len() / last, last), data).expect("whole rows")
}

fn dense(x: &ArrayD<f64>, w: &ArrayD<f64>, b: Option<&ArrayD<f64>>) -> ArrayD<f64> {
    let w2 = w
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .expect("[out, in]");
    let mut y = rows(x).dot(&w2.t());
    if let Some(b) = b {
        y += &b
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("[out]");
    }
    let mut dims = x.shape().to_vec();
    *dims.last_mut().expect("rank >= 1") = w2.nrows();
    y.into_shape_with_order(IxDyn(&dims))
        .expect("same element count")
}

fn layer_norm(x: &ArrayD<f64>, scale: &ArrayD<f64>, shift: &ArrayD<f64>, eps: f64) -> ArrayD<f64> {
    let mut y = x.as_standard_layout().into_owned();
    let last = Axis(y.ndim() - 1);
    for mut lane in y.lanes_mut(last) {
        let f = lane.len() as f64;
        let mean = lane.sum() / f;
        let var = lane.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, v) in lane.iter_mut().enumerate() {
            *v = (*v - mean) * inv * scale[[i]] + shift[[i]];
        }
    }
    y
}

/// Batched `a @ b` over the last two axes.
fn matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    let r = a.ndim();
    let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
    let lead: usize = a.shape()[..r - 2].iter().product();
    let a3 = a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((lead, m, k))
        .expect("whole matrices");
    let b3 = b
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((lead, k, n))
        .expect("whole matrices");
    let mut y = ndarray::Array3::<f64>::zeros((lead, m, n));
    for i in 0..lead {
        let prod = a3.index_axis(Axis(0), i).dot(&b3.index_axis(Axis(0), i));
        y.index_axis_mut(Axis(0), i).assign(&prod);
    }
    let mut dims = a.shape().to_vec();
    dims[r - 1] = n;
    y.into_shape_with_order(IxDyn(&dims))
        .expect("same element count")
        .into_dyn()
}

/// `mask` (`[N, ...suffix]`) with unit axes inserted after the batch axis so it broadcasts
/// against `x`.
fn broadcastable(mask: &ArrayD<f64>, rank: usize) -> ArrayD<f64> {
    let mut m = mask.clone();
    while m.ndim() < rank {
        m.insert_axis_inplace(Axis(1));
    }
    m
}

fn softmax(x: &ArrayD<f64>, mask: Option<&ArrayD<f64>>) -> ArrayD<f64> {
    let mut y = match mask {
        Some(m) => x + &broadcastable(m, x.ndim()),
        None => x.clone(),
    };
    let last = Axis(y.ndim() - 1);
    for mut lane in y.lanes_mut(last) {
        let max = lane.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
        lane.mapv_inplace(|v| (v - max).exp());
        let sum = lane.sum();
        lane.mapv_inplace(|v| v / sum);
    }
    y
}

/// The weight of each step `[N, T]` of a mean or last-step pool (steps whose mask is 0 count).
pub(crate) fn time_pool_weights(
    mask: Option<&ArrayD<f64>>,
    n: usize,
    t: usize,
    kind: TimePoolKind,
) -> ndarray::Array2<f64> {
    let kept = |b: usize, s: usize| mask.is_none_or(|m| m[[b, s]] == 0.0);
    let mut w = ndarray::Array2::<f64>::zeros((n, t));
    for b in 0..n {
        let steps: Vec<usize> = (0..t).filter(|&s| kept(b, s)).collect();
        match kind {
            TimePoolKind::Mean => {
                for &s in &steps {
                    w[[b, s]] = 1.0 / steps.len() as f64;
                }
            }
            TimePoolKind::Last => w[[b, steps.last().copied().unwrap_or(0)]] = 1.0,
            TimePoolKind::Max => unreachable!("max pooling has no fixed weights"),
        }
    }
    w
}

fn time_pool(x: &ArrayD<f64>, mask: Option<&ArrayD<f64>>, kind: TimePoolKind) -> ArrayD<f64> {
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("[N, T, F]");
    let (n, t, f) = x3.dim();
    let mut y = ndarray::Array2::<f64>::zeros((n, f));
    if kind == TimePoolKind::Max {
        // max_t (x + mask): the maximum over the kept steps when there is one.
        for ((b, c), out) in y.indexed_iter_mut() {
            *out = (0..t)
                .map(|s| x3[[b, s, c]] + mask.map_or(0.0, |m| m[[b, s]]))
                .fold(f64::NEG_INFINITY, f64::max);
        }
    } else {
        let w = time_pool_weights(mask, n, t, kind);
        for ((b, c), out) in y.indexed_iter_mut() {
            *out = (0..t).map(|s| w[[b, s]] * x3[[b, s, c]]).sum();
        }
    }
    y.into_dyn()
}

fn conv1d(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
    dilation: usize,
    left: usize,
) -> ArrayD<f64> {
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("[N, C, T]");
    let w3 = w
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("[O, C, k]");
    let (n, c, t) = x3.dim();
    let (o, _, k) = w3.dim();
    let mut y = ndarray::Array3::<f64>::zeros((n, o, t));
    for ((bi, oi, ti), out) in y.indexed_iter_mut() {
        let mut acc = b.map_or(0.0, |b| b[[oi]]);
        for j in 0..k {
            let Some(src) = (ti + j * dilation).checked_sub(left) else {
                continue;
            };
            if src >= t {
                continue;
            }
            for ci in 0..c {
                acc += w3[[oi, ci, j]] * x3[[bi, ci, src]];
            }
        }
        *out = acc;
    }
    y.into_dyn()
}

/// [`Op::PaddingMask`] of batched token ids `[N, T]` or float steps `[N, T, F]`.
fn padding_mask(x: &ArrayD<f64>) -> ArrayD<f64> {
    let masked = |pad: bool| if pad { f64::from(MASKED) } else { 0.0 };
    if x.ndim() == 2 {
        return x.mapv(|v| masked(v == 0.0));
    }
    x.map_axis(Axis(2), |step| masked(step.iter().all(|&v| v == 0.0)))
}
