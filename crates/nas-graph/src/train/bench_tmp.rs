use super::emit::Emitter;
use crate::onnx::proto::*;
use crate::onnx::proto::tensor_proto::DataType;
use prost::Message;

fn model(e: Emitter, inputs: &[(&str, Vec<usize>)], out: &str) -> Vec<u8> {
    let gp = GraphProto {
        node: e.b.nodes,
        name: "b".into(),
        initializer: e.b.initializers,
        input: inputs.iter().map(|(n, s)| ValueInfoProto::tensor(n, DataType::Float, &s.iter().map(|&d| Ok(d as i64)).collect::<Vec<_>>())).collect(),
        output: vec![ValueInfoProto { name: out.into(), ..Default::default() }],
        ..Default::default()
    };
    ModelProto { ir_version: 8, opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }], graph: Some(gp), ..Default::default() }.encode_to_vec()
}

fn time(model: &[u8], inputs: &[(&str, Vec<usize>)], threads: usize) -> f64 {
    use ort::session::Session;
    use ort::value::TensorRef;
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    let env = ENV.get_or_init(|| ort::init_from(std::env::var("ORT_DYLIB_PATH").unwrap()).unwrap().with_name("b").build().unwrap());
    let mut s = Session::builder(env).unwrap().with_intra_threads(threads).unwrap().commit_from_memory(model).unwrap();
    let arrays: Vec<ndarray::ArrayD<f32>> = inputs.iter().map(|(_, sh)| ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(sh), |i| { use ndarray::Dimension; (i.as_array_view().iter().sum::<usize>() % 7) as f32 * 0.1 })).collect();
    let mut best = f64::MAX;
    for _ in 0..8 {
        let feed: Vec<(String, ort::session::SessionInputValue<'_>)> = inputs.iter().zip(&arrays).map(|((n, _), a)| (n.to_string(), TensorRef::from_array_view(a).unwrap().into())).collect();
        let t = std::time::Instant::now();
        let o = s.run(feed).unwrap();
        let _ = o[0].try_extract_array::<f32>().unwrap();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    best
}

fn variants(n: usize, cin: usize, cout: usize, h: usize, k: usize, s: usize, p: usize) {
    let ho = (h + 2 * p - k) / s + 1;
    let inputs = vec![("x", vec![n, cin, h, h]), ("dy", vec![n, cout, ho, ho])];
    // A: conv trick.
    let mut e = Emitter::new(Some(n));
    let xt = e.transpose("x", &[1, 0, 2, 3]);
    let dyt = e.transpose("dy", &[1, 0, 2, 3]);
    let r = (h + 2 * p - (k - 1) - 1) % s;
    let end = p as i64 - r as i64;
    let gw = e.op("Conv", &[&xt, &dyt], vec![AttributeProto::ints("strides", &[1, 1]), AttributeProto::ints("dilations", &[s as i64, s as i64]), AttributeProto::ints("pads", &[p as i64, p as i64, end, end])]);
    e.op_to("Transpose", &[&gw], "out", vec![AttributeProto::ints("perm", &[1, 0, 2, 3])]);
    let a = model(e, &inputs, "out");
    // B: im2col with slices + MatMul.
    let mut e = Emitter::new(Some(n));
    let xh = e.transpose("x", &[0, 2, 3, 1]);
    let pads = e.ints(&[0, p as i64, p as i64, 0, 0, p as i64, p as i64, 0]);
    let xp = e.op("Pad", &[&xh, &pads], vec![]);
    let mut cols = vec![];
    for u in 0..k { for v in 0..k {
        let st = e.ints(&[u as i64, v as i64]);
        let en = e.ints(&[(u + s * (ho - 1) + 1) as i64, (v + s * (ho - 1) + 1) as i64]);
        let ax = e.ints(&[1, 2]);
        let sp = e.ints(&[s as i64, s as i64]);
        cols.push(e.op("Slice", &[&xp, &st, &en, &ax, &sp], vec![]));
    }}
    let refs: Vec<&str> = cols.iter().map(|s| s.as_str()).collect();
    let cat = e.op("Concat", &refs, vec![AttributeProto::int("axis", 3)]);
    let p2 = e.reshape(&cat, &[-1, (k * k * cin) as i64]);
    let dyh = e.transpose("dy", &[0, 2, 3, 1]);
    let d2 = e.reshape(&dyh, &[-1, cout as i64]);
    let g = e.op("Gemm", &[&d2, &p2], vec![AttributeProto::int("transA", 1)]);
    let g4 = e.reshape(&g, &[cout as i64, k as i64, k as i64, cin as i64]);
    e.op_to("Transpose", &[&g4], "out", vec![AttributeProto::ints("perm", &[0, 3, 1, 2])]);
    let b = model(e, &inputs, "out");
    // Forward conv for scale.
    let mut e = Emitter::new(Some(n));
    e.op_to("Conv", &["x", "w"], "out", vec![AttributeProto::ints("strides", &[s as i64, s as i64]), AttributeProto::ints("pads", &[p as i64; 4])]);
    let f = model(e, &[("x", vec![n, cin, h, h]), ("w", vec![cout, cin, k, k])], "out");
    for t in [1, 2] {
        eprintln!("n{n} {cin}->{cout} {h}x{h} k{k} s{s}: threads {t}: fwd {:.2} ms, conv trick {:.2} ms, im2col+gemm {:.2} ms",
            time(&f, &[("x", vec![n, cin, h, h]), ("w", vec![cout, cin, k, k])], t), time(&a, &inputs, t), time(&b, &inputs, t));
    }
}

#[test]
#[ignore]
fn bench_weight_grad() {
    variants(128, 3, 16, 32, 3, 1, 1);
    variants(128, 16, 32, 32, 3, 2, 1);
    variants(128, 32, 64, 16, 3, 1, 1);
}
