//! `nas tabulate`: a tabular benchmark of our own. Every architecture of a small space is
//! trained once through a normal study (the `grid` strategy, the config's evaluators, the
//! study's storage, so a build resumes where it stopped and trains on `workers` threads);
//! isomorphic architectures share one canonical hash, so the engine trains each network
//! once. [`build_table`] then turns the stored trials into a [`Table`] that the `tabular`
//! evaluator reads.

use std::collections::HashMap;

use anyhow::{Context, bail};
use nas_plugin::{ChoiceKind, SpaceDescriptor, TrialState};
use nas_table::{Row, Table};
use serde_json::Value;

use nas_core::config::{StudyConfig, space_json};
use nas_core::space::{SearchSpace, build_space};
use nas_core::storage::{Storage, TrialRecord};

/// Spaces larger than this are refused: a table of them would take too long to build.
pub const MAX_ARCHS: u64 = 1_000_000;

/// Checks that `config` describes a table build; the message says what to change.
pub fn check_config(config: &StudyConfig) -> anyhow::Result<()> {
    let plugins: Vec<&str> = config
        .strategies
        .iter()
        .map(|s| s.plugin.as_str())
        .collect();
    if plugins != ["grid"] {
        bail!(
            "{}: `nas tabulate` trains every architecture once with the grid strategy; the \
             config must have exactly one [[strategy]] with `plugin = \"grid\"` (found: {})",
            config.path.display(),
            plugins.join(", ")
        );
    }
    if config.final_phase.is_some() {
        bail!(
            "{}: remove the [final] table; a table build only trains the candidates once",
            config.path.display()
        );
    }
    if config.evaluators.is_empty() {
        bail!(
            "{}: a table build needs an [[evaluator]] that trains, e.g. `plugin = \"train\"`",
            config.path.display()
        );
    }
    Ok(())
}

/// Every choice vector of a discrete space, first choice most significant (the grid
/// strategy's numbering).
pub fn enumerate(descriptor: &SpaceDescriptor) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut radices = Vec::new();
    let mut offsets = Vec::new();
    let mut size: u64 = 1;
    for c in &descriptor.choices {
        let n = c.kind.cardinality().with_context(|| {
            format!(
                "choice `{}` is continuous; a table needs a space of discrete choices",
                c.name
            )
        })?;
        size = size.saturating_mul(n);
        radices.push(n);
        offsets.push(match c.kind {
            ChoiceKind::Integer { low, .. } => low as f64,
            _ => 0.0,
        });
    }
    if size > MAX_ARCHS {
        bail!("the space has {size} architectures; a table covers at most {MAX_ARCHS}");
    }
    Ok((0..size)
        .map(|mut i| {
            let mut values = vec![0.0; radices.len()];
            for k in (0..radices.len()).rev() {
                values[k] = (i % radices[k]) as f64 + offsets[k];
                i /= radices[k];
            }
            values
        })
        .collect())
}

/// The networks of a space: each canonical hash with the architectures that build it, in
/// enumeration order.
pub struct Networks {
    pub archs: u64,
    pub groups: Vec<(String, Vec<String>)>,
}

pub fn networks(space: &dyn SearchSpace) -> anyhow::Result<Networks> {
    let all = enumerate(space.descriptor())?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for values in &all {
        let arch = space.arch_string(values);
        let graph = space
            .decode(values)
            .with_context(|| format!("cannot build `{arch}`"))?;
        let hash = graph.canonical_hash();
        match index.get(&hash) {
            Some(&g) => groups[g].1.push(arch),
            None => {
                index.insert(hash.clone(), groups.len());
                groups.push((hash, vec![arch]));
            }
        }
    }
    Ok(Networks {
        archs: all.len() as u64,
        groups,
    })
}

/// Builds the table from the study's trials. With `partial`, networks not trained yet are
/// left out; otherwise they are an error saying how many remain.
pub fn build_table(
    config: &StudyConfig,
    storage: &Storage,
    name: &str,
    partial: bool,
) -> anyhow::Result<Table> {
    let resolved = config.resolved_space()?;
    let space = build_space(&resolved)?;
    let nets = networks(space.as_ref())?;
    let mut trained: HashMap<String, TrialRecord> = HashMap::new();
    let mut unfinished = 0u64;
    for t in storage.trials()? {
        let done = matches!(
            t.state,
            TrialState::Complete | TrialState::Failed | TrialState::Infeasible
        );
        // A complete trial wins over a failed attempt of the same network.
        let better = trained
            .get(&t.hash)
            .is_none_or(|old| old.state != TrialState::Complete);
        if !done {
            unfinished += 1;
        } else if t.fidelity.is_none() && better {
            trained.insert(t.hash.clone(), t);
        }
    }
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for (hash, archs) in &nets.groups {
        match trained.get(hash) {
            Some(t) => rows.push(row(t, hash, archs)?),
            None => missing.push(archs[0].as_str()),
        }
    }
    if !missing.is_empty() && !partial {
        bail!(
            "the table is incomplete: {} of {} networks are not trained yet (e.g. `{}`); run \
             `nas tabulate` again to continue, or pass --partial to write what is there",
            missing.len(),
            nets.groups.len(),
            missing[0]
        );
    }
    // The rows are the networks of the grid's first draws: those proposed, less the
    // proposals still waiting for a worker (one each).
    let sample = if missing.is_empty() {
        None
    } else {
        let proposals: u64 = storage
            .meta("proposals")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(rows.len() as u64);
        Some(nas_table::Sample {
            draws: proposals.saturating_sub(unfinished).max(rows.len() as u64),
        })
    };
    let epochs = rows
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.val_accuracy.len())
        .max()
        .unwrap_or(0);
    let evaluator = config
        .evaluators
        .last()
        .map(|e| e.config.clone())
        .unwrap_or(Value::Null);
    let table = Table {
        format: nas_table::FORMAT.into(),
        version: nas_table::VERSION,
        name: name.into(),
        space: space_json(&resolved),
        data: serde_json::to_value(&config.data)?,
        evaluator,
        seed: config.seed,
        epochs,
        archs_in_space: nets.archs,
        networks_in_space: nets.groups.len() as u64,
        config: config.source.clone(),
        sample,
        rows,
    };
    Ok(table)
}

/// One table row from the trial that trained the network.
fn row(t: &TrialRecord, hash: &str, archs: &[String]) -> anyhow::Result<Row> {
    // The trained architecture first, then its isomorphs in enumeration order.
    let mut listed = vec![t.arch.clone()];
    listed.extend(archs.iter().filter(|a| **a != t.arch).cloned());
    let metric = |k: &str| t.metrics.get(k).copied();
    let mut row = Row {
        hash: hash.into(),
        archs: listed,
        trial: t.id,
        params: metric("params").unwrap_or(f64::NAN),
        flops: metric("flops").unwrap_or(f64::NAN),
        val_accuracy: Vec::new(),
        train_seconds: Vec::new(),
        val_loss: metric("val_loss"),
        train_loss: metric("train_loss"),
        train_accuracy: metric("train_accuracy"),
        test_accuracy: metric("test_accuracy"),
        test_loss: metric("test_loss"),
        error: None,
    };
    if t.state != TrialState::Complete {
        row.error = Some(
            t.error
                .clone()
                .unwrap_or_else(|| format!("the trial ended {}", t.state.as_str())),
        );
        return Ok(row);
    }
    // Details are keyed by evaluator; the last one that recorded a curve trained the network.
    let curve = t
        .details
        .as_object()
        .and_then(|per_evaluator| {
            per_evaluator
                .values()
                .rev()
                .find_map(|d| d.get("curve").and_then(Value::as_array))
        })
        .with_context(|| {
            format!(
                "trial {} has no per-epoch curve in its details; a table needs an evaluator that \
             records one (the `train` evaluator)",
                t.id
            )
        })?;
    let mut elapsed = 0.0;
    for (epoch, point) in curve.iter().enumerate() {
        let field = |k: &str| point.get(k).and_then(Value::as_f64);
        let acc = field("val_accuracy").with_context(|| {
            format!(
                "trial {}: epoch {} has no validation accuracy; train with validation after \
                 every epoch",
                t.id,
                epoch + 1
            )
        })?;
        elapsed += field("seconds").unwrap_or(0.0);
        row.val_accuracy.push(acc);
        // Milliseconds are plenty for a time model and keep the file small.
        row.train_seconds.push((elapsed * 1e3).round() / 1e3);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_plugin::Choice;

    #[test]
    fn enumeration_is_mixed_radix_with_integer_offsets() {
        let d = SpaceDescriptor {
            kind: "test".into(),
            choices: vec![
                Choice {
                    name: "a".into(),
                    kind: ChoiceKind::Categorical {
                        options: vec!["x".into(), "y".into()],
                    },
                },
                Choice {
                    name: "b".into(),
                    kind: ChoiceKind::Integer { low: 3, high: 5 },
                },
            ],
        };
        let all = enumerate(&d).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], vec![0.0, 3.0]);
        assert_eq!(all[1], vec![0.0, 4.0]);
        assert_eq!(all[5], vec![1.0, 5.0]);
        let mut f = d.clone();
        f.choices[1].kind = ChoiceKind::Float {
            low: 0.0,
            high: 1.0,
            log: false,
        };
        let e = enumerate(&f).unwrap_err().to_string();
        assert!(e.contains("`b` is continuous"), "{e}");
    }
}
