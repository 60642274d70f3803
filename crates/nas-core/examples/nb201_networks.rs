//! The network of every NAS-Bench-201 cell as the engine deduplicates it, for `cargo xtask
//! bench-optuna`: prints `arch,hash` (the NB201 string and the canonical hash of the decoded
//! benchmark network, C = 16, N = 5, ImageNet16-120 input) for all 15,625 cells. Two cells
//! with one hash are one network to a study: the second is answered from its cache.

use anyhow::{Context, Result};
use nas_core::space::{build_space, find_kind};

const SPACE: &str = r#"
[space]
kind = "cell"
input = [3, 16, 16]
classes = 120
"#;

fn main() -> Result<()> {
    let kind = find_kind("cell").context("the cell space kind is registered")?;
    let space = build_space(&(kind.parse)(SPACE)?)?;
    let options = 5usize;
    let edges = space.descriptor().choices.len();
    println!("arch,hash");
    for index in 0..options.pow(edges as u32) {
        let values: Vec<f64> = (0..edges)
            .map(|e| ((index / options.pow(e as u32)) % options) as f64)
            .collect();
        let hash = space.decode(&values)?.canonical_hash();
        println!("{},{hash}", space.arch_string(&values));
    }
    Ok(())
}
