//! Softmax cross-entropy with label smoothing, the correct-prediction count and the loss
//! gradient with respect to the logits.

use crate::onnx::proto::AttributeProto;

use super::emit::Emitter;
use super::{CORRECT, LABELS, LOSS};

/// Emits `loss` (mean over the batch of `-sum_c q_c log softmax(z)_c` with
/// `q = (1 - s) onehot + s / K`) and `correct`; returns the name of `d loss / d logits`
/// `= (softmax(z) - q) / N`.
pub(crate) fn emit(e: &mut Emitter, logits: &str, classes: usize, smoothing: f32) -> String {
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
    let q = if smoothing > 0.0 {
        let on = e.scale(&onehot, 1.0 - smoothing);
        let uniform = e.scalar(smoothing / classes as f32);
        e.add(&on, &uniform)
    } else {
        onehot
    };
    let qlogp = e.mul(&q, &logp);
    let per_sample = e.reduce_sum(&qlogp, &[1], false);
    let mean = e.reduce_mean(&per_sample, &[0], false);
    e.op_to("Neg", &[&mean], LOSS, vec![]);

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

    let softmax = e.op("Exp", &[&logp], vec![]);
    let diff = e.sub(&softmax, &q);
    match e.batch {
        Some(b) => e.scale(&diff, 1.0 / b as f32),
        None => {
            let shape = e.op("Shape", &[LABELS], vec![]);
            let n = e.cast_float(&shape);
            e.div(&diff, &n)
        }
    }
}
