//! Optimizer updates as graph nodes, with PyTorch's semantics.

use super::emit::Emitter;
use super::{LR, STEP};

/// One trainable tensor to update.
pub(crate) struct Update<'a> {
    /// Current value (graph input) and where the new value goes (graph output).
    pub param: &'a str,
    pub next: &'a str,
    pub grad: &'a str,
    /// Whether weight decay applies ([`crate::ParamRole::Weight`] tensors only).
    pub decay: bool,
    /// `(input, output)` of each optimizer buffer, in the order the optimizer defines.
    pub buffers: &'a [(String, String)],
}

/// `torch.optim.SGD`: `g' = g + wd w`; with momentum `buf = m buf + g'` and
/// `w -= lr (nesterov ? g' + m buf : buf)`; without, `w -= lr g'`.
pub(crate) fn sgd(e: &mut Emitter, momentum: f32, nesterov: bool, weight_decay: f32, u: &Update) {
    let g = if u.decay && weight_decay != 0.0 {
        let wd = e.scale(u.param, weight_decay);
        e.add(u.grad, &wd)
    } else {
        u.grad.to_string()
    };
    let step = if let [(buf, buf_next)] = u.buffers {
        let kept = e.scale(buf, momentum);
        e.op_to("Add", &[&kept, &g], buf_next, vec![]);
        if nesterov {
            let ahead = e.scale(buf_next, momentum);
            e.add(&g, &ahead)
        } else {
            buf_next.clone()
        }
    } else {
        g
    };
    let delta = e.mul(&step, LR);
    e.op_to("Sub", &[u.param, &delta], u.next, vec![]);
}

/// Scalars shared by every AdamW update of a step.
pub(crate) struct AdamScalars {
    /// `lr / (1 - b1^step)`.
    step_size: String,
    /// `1 / sqrt(1 - b2^step)`.
    rsqrt_bc2: String,
    /// `1 - lr * wd`.
    decay: String,
}

pub(crate) fn adam_scalars(e: &mut Emitter, beta1: f32, beta2: f32, wd: f32) -> AdamScalars {
    let one = e.scalar(1.0);
    let correction = |e: &mut Emitter, beta: f32| {
        let b = e.scalar(beta);
        let pow = e.op("Pow", &[&b, STEP], vec![]);
        e.sub(&one, &pow)
    };
    let bc1 = correction(e, beta1);
    let bc2 = correction(e, beta2);
    let step_size = e.div(LR, &bc1);
    let sq = e.op("Sqrt", &[&bc2], vec![]);
    let rsqrt_bc2 = e.op("Reciprocal", &[&sq], vec![]);
    let lrwd = e.scale(LR, wd);
    let decay = e.sub(&one, &lrwd);
    AdamScalars {
        step_size,
        rsqrt_bc2,
        decay,
    }
}

/// `torch.optim.AdamW` (amsgrad off): `w *= 1 - lr wd`; `m = b1 m + (1-b1) g`;
/// `v = b2 v + (1-b2) g^2`; `w -= lr/(1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)`.
/// Buffers: `[m, v]`.
pub(crate) fn adamw(
    e: &mut Emitter,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    s: &AdamScalars,
    u: &Update,
) {
    let [(m, m_next), (v, v_next)] = u.buffers else {
        unreachable!("AdamW keeps two buffers per tensor")
    };
    let mk = e.scale(m, beta1);
    let gk = e.scale(u.grad, 1.0 - beta1);
    e.op_to("Add", &[&mk, &gk], m_next, vec![]);
    let vk = e.scale(v, beta2);
    let g2 = e.mul(u.grad, u.grad);
    let g2k = e.scale(&g2, 1.0 - beta2);
    e.op_to("Add", &[&vk, &g2k], v_next, vec![]);
    let sqrt_v = e.op("Sqrt", &[v_next], vec![]);
    let vhat = e.mul(&sqrt_v, &s.rsqrt_bc2);
    let eps = e.scalar(eps);
    let denom = e.add(&vhat, &eps);
    let ratio = e.div(m_next, &denom);
    let delta = e.mul(&ratio, &s.step_size);
    let base = if u.decay && weight_decay != 0.0 {
        e.mul(u.param, &s.decay)
    } else {
        u.param.to_string()
    };
    e.op_to("Sub", &[&base, &delta], u.next, vec![]);
}
