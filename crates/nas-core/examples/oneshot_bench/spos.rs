//! SPOS: which networks a seed scores, and scoring them with the shared weights.

use std::collections::BTreeSet;

use nas_core::space::SearchSpace;
use nas_table::Table;
use nas_train::oneshot::{CostMetric, SupernetTrainer};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;

/// SPOS: every candidate with its supernet accuracy. With `few_shot` epochs the trained
/// supernet is split on its widest choice into one sub-supernet per option, each trained
/// that many epochs more, and a candidate is scored by the one holding its option.
pub fn score_paths(
    trainer: &mut SupernetTrainer<'_>,
    candidates: Vec<Vec<usize>>,
    few_shot: usize,
) -> Result<Vec<(Vec<usize>, f64)>> {
    let mut scored = Vec::with_capacity(candidates.len());
    if few_shot == 0 {
        for c in candidates {
            let (_, acc) = trainer.score(&c)?;
            scored.push((c, acc));
        }
        return Ok(scored);
    }
    let choice = trainer.widest_choice();
    let options = trainer.supernet().options[choice];
    for option in 0..options {
        let mut sub = trainer.split(choice, option, few_shot)?;
        for _ in 0..few_shot {
            let e = sub.train_epoch()?;
            eprint!(
                "\r  few-shot choice {choice} option {option}: epoch {}/{} loss {:.3}",
                e.epoch,
                sub.total_epochs(),
                e.train_loss
            );
        }
        for c in candidates.iter().filter(|c| c[choice] == option) {
            let (_, acc) = sub.score(c)?;
            scored.push((c.clone(), acc));
        }
    }
    eprintln!();
    Ok(scored)
}

/// A table row's `metric`.
pub fn row_cost(row: &nas_table::Row, metric: CostMetric) -> f64 {
    match metric {
        CostMetric::Flops => row.flops,
        CostMetric::Params => row.params,
    }
}

/// The architectures SPOS scores: `n` distinct random ones of a complete table, or, for a
/// sample, `n` of its networks (the only accuracies known), in a seeded random order.
pub fn spos_candidates(
    table: &Table,
    space: &dyn SearchSpace,
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5905);
    let choices = |arch: &str| -> Result<Vec<usize>> {
        Ok(space
            .parse_arch(arch)?
            .iter()
            .map(|&v| v as usize)
            .collect())
    };
    if table.sample.is_some() {
        let mut rows: Vec<&nas_table::Row> = table
            .rows
            .iter()
            .filter(|r| r.test_accuracy.is_some())
            .collect();
        rows.shuffle(&mut rng);
        return rows.iter().take(n).map(|r| choices(&r.archs[0])).collect();
    }
    let options: Vec<usize> = space
        .descriptor()
        .choices
        .iter()
        .map(|c| c.kind.cardinality().map(|n| n as usize))
        .collect::<Option<_>>()
        .ok_or("SPOS scores architectures of categorical choices only")?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n.min(table.archs_in_space as usize) {
        let c: Vec<usize> = options.iter().map(|&k| rng.random_range(0..k)).collect();
        if seen.insert(c.clone()) {
            out.push(c);
        }
    }
    Ok(out)
}
