mod common;

use std::time::Instant;

use common::*;
use evaluator_zero_cost::init::{Init, init_weights};
use evaluator_zero_cost::proxies::{self, Batch};

#[test]
#[ignore]
fn explore() {
    let rt = runtime();
    nas_runtime::init(std::path::Path::new(rt.ort_library.as_ref().unwrap())).unwrap();
    let space = nb201();
    let archs = cifar10_archs();
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let b: usize = std::env::var("B")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    for a in archs.iter().take(n) {
        let g = graph_of(&space, a);
        let t = Instant::now();
        let s = proxies::synflow(&g, 0, &rt).unwrap();
        let ts = t.elapsed().as_secs_f64();
        let w = init_weights(&g, Init::He, 0).unwrap();
        let batch = Batch::random(&g.input, b, 10, 1);
        let t = Instant::now();
        let d = proxies::data_scores(&g, &w, &batch, true, true, &rt).unwrap();
        let td = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let j = proxies::jacob_cov(&g, &w, &batch, &rt).unwrap();
        let tj = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let z = proxies::zen(&g, b, 0, &rt).unwrap();
        let tz = t.elapsed().as_secs_f64();
        println!(
            "{} params {} (file {}) ln synflow {:.3} (file {:.3}) [{ts:.2}s] nwot {:.2} (file {:.2}) gn {:.3} ({:.3}) snip {:.3} ({:.3}) [{td:.2}s] jacov {:.3} ({:.3}) [{tj:.2}s] zen {z:.3} [{tz:.2}s]",
            a.key,
            g.param_count().unwrap(),
            a.scores["params"],
            s.ln(),
            a.scores.get("synflow").copied().unwrap_or(f64::NAN),
            d.naswot.unwrap(),
            a.scores["nwot"],
            d.grad_norm.unwrap(),
            a.scores["grad_norm"],
            d.snip.unwrap(),
            a.scores["snip"],
            j,
            a.scores["jacov"],
        );
    }
}
