//! Softmax cross-entropy with label smoothing, optionally weighted per sample and with an
//! entropy bonus, the correct-prediction count and the loss gradient with respect to the
//! logits; and the squared error of a regression output.

use crate::onnx::proto::AttributeProto;

use super::emit::Emitter;
use super::{CORRECT, LABELS, LOSS, SAMPLE_WEIGHTS};

/// What the loss is made of (from [`super::TrainOptions`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LossTerms {
    pub smoothing: f32,
    /// Multiply each sample's cross-entropy by [`SAMPLE_WEIGHTS`]`[i]`.
    pub weighted: bool,
    /// Coefficient of the mean softmax entropy subtracted from the loss (0: none).
    pub entropy_bonus: f32,
}

/// Emits `loss` `= -1/N sum_i w_i sum_c q_ic log p_ic - beta/N sum_i H(p_i)` (with
/// `q = (1 - s) onehot + s / K`, `w_i = 1` unless weighted, `H` the softmax entropy) and
/// `correct`; returns the name of `d loss / d logits`
/// `= (w_i (p_i - q_i) + beta p_i (log p_i + H(p_i))) / N`.
///
/// With neither weights nor entropy the emitted nodes are those of the plain loss, one for one.
pub(crate) fn emit(e: &mut Emitter, logits: &str, classes: usize, terms: LossTerms) -> String {
    let logp = e.op(
        "LogSoftmax",
        &[logits],
        vec![AttributeProto::int("axis", 1)],
    );
    // One-hot as Cast(Equal(labels[:, None], 0..K)).
    let axis1 = e.ints(&[1]);
    let labels = e.op("Unsqueeze", &[LABELS, &axis1], vec![]);
    let range: Vec<i64> = (0..classes as i64).collect();
    let range = e.ints(&range);
    let hit = e.op("Equal", &[&labels, &range], vec![]);
    let onehot = e.cast_float(&hit);
    let q = if terms.smoothing > 0.0 {
        let on = e.scale(&onehot, 1.0 - terms.smoothing);
        let uniform = e.scalar(terms.smoothing / classes as f32);
        e.add(&on, &uniform)
    } else {
        onehot
    };
    let qlogp = e.mul(&q, &logp);
    let mut per_sample = e.reduce_sum(&qlogp, &[1], false);
    // `[N, 1]` sample weights, broadcast over the classes in the gradient.
    let weights = terms.weighted.then(|| {
        per_sample = e.mul(&per_sample, SAMPLE_WEIGHTS);
        e.op("Unsqueeze", &[SAMPLE_WEIGHTS, &axis1], vec![])
    });
    let mean = e.reduce_mean(&per_sample, &[0], false);
    // With an entropy bonus: the softmax and `-H` per sample (`sum_c p log p`, `[N]`).
    let entropy = (terms.entropy_bonus > 0.0).then(|| {
        let softmax = e.op("Exp", &[&logp], vec![]);
        let plogp = e.mul(&softmax, &logp);
        let neg_h = e.reduce_sum(&plogp, &[1], false);
        (softmax, neg_h)
    });
    match &entropy {
        None => e.op_to("Neg", &[&mean], LOSS, vec![]),
        Some((_, neg_h)) => {
            let mean_neg_h = e.reduce_mean(neg_h, &[0], false);
            let bonus = e.scale(&mean_neg_h, terms.entropy_bonus);
            e.op_to("Sub", &[&bonus, &mean], LOSS, vec![]);
        }
    }

    let argmax = e.op(
        "ArgMax",
        &[logits],
        vec![
            AttributeProto::int("axis", 1),
            AttributeProto::int("keepdims", 0),
        ],
    );
    let same = e.op("Equal", &[&argmax, LABELS], vec![]);
    let samef = e.cast_float(&same);
    let axis0 = e.ints(&[0]);
    e.op_to(
        "ReduceSum",
        &[&samef, &axis0],
        CORRECT,
        vec![AttributeProto::int("keepdims", 0)],
    );

    let softmax = match &entropy {
        Some((softmax, _)) => softmax.clone(),
        None => e.op("Exp", &[&logp], vec![]),
    };
    let mut diff = e.sub(&softmax, &q);
    if let Some(w) = &weights {
        diff = e.mul(&diff, w);
    }
    if let Some((softmax, neg_h)) = &entropy {
        // d(-beta H)/dz = beta p (log p + H), H = -neg_h.
        let neg_h = e.op("Unsqueeze", &[neg_h, &axis1], vec![]);
        let log_p_plus_h = e.sub(&logp, &neg_h);
        let d_entropy = e.mul(softmax, &log_p_plus_h);
        let d_entropy = e.scale(&d_entropy, terms.entropy_bonus);
        diff = e.add(&diff, &d_entropy);
    }
    match e.batch {
        Some(b) => e.scale(&diff, 1.0 / b as f32),
        None => {
            let shape = e.op("Shape", &[LABELS], vec![]);
            let n = e.cast_float(&shape);
            e.div(&diff, &n)
        }
    }
}

/// Regression: emits `loss` `= 1/N sum_i (y_hat_i - y_i)^2` (the prediction `y_hat` is the
/// network's `[N, 1]` output, `y` the float [`LABELS`]) and, in the place of the correct count,
/// `correct` `= sum_i |y_hat_i - y_i|`; returns the name of `d loss / d y_hat`
/// `= 2 (y_hat - y) / N`, shaped `[N, 1]`.
pub(crate) fn emit_squared_error(e: &mut Emitter, prediction: &str) -> String {
    let axis1 = e.ints(&[1]);
    let y_hat = e.op("Squeeze", &[prediction, &axis1], vec![]);
    let diff = e.sub(&y_hat, LABELS);
    let squared = e.mul(&diff, &diff);
    let mean = e.reduce_mean(&squared, &[0], false);
    e.op_to("Identity", &[&mean], LOSS, vec![]);
    let abs = e.op("Abs", &[&diff], vec![]);
    let axis0 = e.ints(&[0]);
    e.op_to(
        "ReduceSum",
        &[&abs, &axis0],
        CORRECT,
        vec![AttributeProto::int("keepdims", 0)],
    );
    let diff = e.op("Unsqueeze", &[&diff, &axis1], vec![]);
    match e.batch {
        Some(b) => e.scale(&diff, 2.0 / b as f32),
        None => {
            let shape = e.op("Shape", &[LABELS], vec![]);
            let n = e.cast_float(&shape);
            let half_n = e.scale(&n, 0.5);
            e.div(&diff, &half_n)
        }
    }
}
