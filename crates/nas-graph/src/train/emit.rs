//! A thin layer over the exporter's node builder: fresh value names, int64 constants and
//! small arithmetic helpers, so the rules read like the math they implement.

use crate::onnx::export::Builder;
use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};

pub(crate) struct Emitter {
    pub b: Builder,
    /// Fixed batch size, or `None` for a dynamic one (shapes then come from `Shape`/`Size`).
    pub batch: Option<usize>,
    /// The block size of ONNX Runtime's NCHWc conv kernels where the step may use them.
    pub nchwc_block: Option<usize>,
    next: usize,
    /// Constant tensors shared by key (e.g. one im2col kernel per channel count and size).
    shared: Vec<(String, String)>,
}

impl Emitter {
    pub fn new(batch: Option<usize>) -> Emitter {
        Emitter {
            b: Builder::default(),
            batch,
            nchwc_block: None,
            next: 0,
            shared: Vec::new(),
        }
    }

    /// A value name no other part of the graph uses (`t<k>_<hint>`).
    pub fn fresh(&mut self, hint: &str) -> String {
        let name = format!("t{}_{hint}", self.next);
        self.next += 1;
        name
    }

    /// Emits a one-output node into a fresh value; returns its name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op_type.to_ascii_lowercase());
        self.b.node(op_type, &out, inputs, &out, attrs);
        out
    }

    /// Emits a one-output node into the value `out`.
    pub fn op_to(&mut self, op_type: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) {
        self.b.node(op_type, out, inputs, out, attrs);
    }

    /// Emits a node with several outputs (named by the caller).
    pub fn op_multi(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<AttributeProto>,
    ) {
        self.b.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: outputs[0].clone(),
            op_type: op_type.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A float32 scalar constant (shared).
    pub fn scalar(&mut self, v: f32) -> String {
        self.b.scalar(v)
    }

    /// A 1-D int64 constant (shapes, axes, split sizes), shared between uses.
    pub fn ints(&mut self, v: &[i64]) -> String {
        self.b.ints(v)
    }

    /// A float32 constant tensor.
    pub fn tensor(&mut self, hint: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = self.fresh(hint);
        self.b
            .initializers
            .push(TensorProto::from_f32(&name, dims, data));
        name
    }

    /// A float32 constant tensor shared by every caller passing the same `key`; `data` is only
    /// called the first time.
    pub fn shared_tensor(
        &mut self,
        key: &str,
        dims: &[usize],
        data: impl FnOnce() -> Vec<f32>,
    ) -> String {
        if let Some((_, name)) = self.shared.iter().find(|(k, _)| k == key) {
            return name.clone();
        }
        let name = self.tensor(key, dims, data());
        self.shared.push((key.to_string(), name.clone()));
        name
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.op("Add", &[a, b], vec![])
    }

    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.op("Sub", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.op("Mul", &[a, b], vec![])
    }

    pub fn div(&mut self, a: &str, b: &str) -> String {
        self.op("Div", &[a, b], vec![])
    }

    /// `x * v` for a constant `v`.
    pub fn scale(&mut self, x: &str, v: f32) -> String {
        let c = self.scalar(v);
        self.mul(x, &c)
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![AttributeProto::ints("perm", perm)])
    }

    pub fn reduce_sum(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let a = self.ints(axes);
        self.op(
            "ReduceSum",
            &[x, &a],
            vec![AttributeProto::int("keepdims", keepdims as i64)],
        )
    }

    pub fn reduce_mean(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        // Opset 17: axes are an attribute.
        self.op(
            "ReduceMean",
            &[x],
            vec![
                AttributeProto::ints("axes", axes),
                AttributeProto::int("keepdims", keepdims as i64),
            ],
        )
    }

    /// `Cast(x)` to float32 (from bool or int64).
    pub fn cast_float(&mut self, x: &str) -> String {
        self.op("Cast", &[x], vec![AttributeProto::int("to", 1)])
    }

    /// The number of elements of `x` divided by `per`, as a float32 scalar: a batch-dependent
    /// count (constant when the batch is fixed, where `known` is the per-sample count).
    pub fn count(&mut self, x: &str, known_per_sample: usize, per: usize) -> String {
        match self.batch {
            Some(b) => self.scalar((b * known_per_sample / per) as f32),
            None => {
                let size = self.op("Size", &[x], vec![]);
                let f = self.cast_float(&size);
                self.scale(&f, 1.0 / per as f32)
            }
        }
    }

    /// A float32 tensor of zeros with a static shape.
    pub fn zeros(&mut self, shape: &[usize]) -> String {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.ints(&dims);
        self.op(
            "ConstantOfShape",
            &[&s],
            vec![AttributeProto::tensor(
                "value",
                TensorProto::from_f32("", &[1], [0.0]),
            )],
        )
    }
}
