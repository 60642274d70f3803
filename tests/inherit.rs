//! Weight inheritance end to end: regularized evolution on the bundled digits data with the
//! `train` evaluator's `inherit = true`; mutated children start from their parents' kept
//! weights.

use std::path::Path;

mod common;
use common::{nas, stderr, stdout};

const STUDY: &str = r#"
[study]
name = "inherit-e2e"
seed = 4
directory = "study"

[budget]
trials = 8

[data]
dataset = "digits"

[space]
kind = "cell"
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = "evolution"
population = 3
sample = 2

[[evaluator]]
plugin = "train"
epochs = 2
batch = 64
lr = 0.1
inherit = true

[objective]
maximize = "val_accuracy"
"#;

/// (id, parent, metrics, details by evaluator) of every trial, straight from the study
/// database.
fn rows(db: &Path) -> Vec<(u64, Option<u64>, serde_json::Value, serde_json::Value)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, parent, metrics, details FROM trials ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, Option<i64>>(1)?.map(|p| p as u64),
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })
    .unwrap()
    .map(|row| {
        let (id, parent, metrics, details) = row.unwrap();
        (
            id,
            parent,
            serde_json::from_str(&metrics).unwrap(),
            details.map_or(serde_json::Value::Null, |d| {
                serde_json::from_str(&d).unwrap()
            }),
        )
    })
    .collect()
}

#[test]
fn evolution_children_inherit_their_parents_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("study.toml");
    std::fs::write(&cfg, STUDY).unwrap();
    let o = nas(&["search", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));

    let rows = rows(&tmp.path().join("study/study.db"));
    assert_eq!(rows.len(), 8);
    let by_id = |id: u64| rows.iter().find(|r| r.0 == id).unwrap();
    // The first three fill the population at random: no parent, nothing inherited.
    for (id, parent, metrics, details) in &rows[..3] {
        assert_eq!(*parent, None, "trial {id}");
        assert_eq!(metrics["inherited"], 0.0, "trial {id}");
        assert_eq!(metrics["epochs"], 2.0);
        assert!(
            details["train"]["inheritance"]["note"].is_string(),
            "{details}"
        );
    }
    let mut inherited = 0;
    for (id, parent, metrics, details) in &rows[3..] {
        let Some(parent) = parent else {
            continue;
        };
        assert!(parent < id, "trial {id} names a later parent {parent}");
        assert!(
            by_id(*parent).2.get("val_accuracy").is_some(),
            "trial {id}'s parent {parent} is complete"
        );
        if metrics["inherited"] == 1.0 {
            inherited += 1;
            let info = &details["train"]["inheritance"];
            assert_eq!(info["parent"], *parent, "{info}");
            let copied = info["copied"].as_array().unwrap();
            assert!(!copied.is_empty(), "trial {id} copied nothing: {info}");
            // An inherited child trains half the epochs.
            assert_eq!(metrics["epochs"], 1.0, "trial {id}");
            assert!(metrics["val_accuracy"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(inherited >= 1, "no trial inherited: {rows:#?}");
    // Scripts see the same parents in `nas best --json`.
    let o = nas(&["best", "study", "--json", "--top", "8"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let best: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(best.len(), 8);
    for t in &best {
        let id = t["id"].as_u64().unwrap();
        assert_eq!(t["parent"].as_u64(), by_id(id).1, "trial {id}: {t}");
    }
    // `nas report` counts them.
    let o = nas(&["report", "study"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(tmp.path().join("study/report/report.md")).unwrap();
    assert!(
        md.contains(&format!(
            "## Weight inheritance\n\n{inherited} of 8 trained trials started from their \
             parent's weights"
        )),
        "{md}"
    );
    // The kept weights the children started from.
    let kept = std::fs::read_dir(tmp.path().join("study/checkpoints"))
        .unwrap()
        .count();
    assert_eq!(kept, 8);
}
