//! A study stored by the previous version (SQLite schema 1) is read as it is and, when
//! resumed, migrated forward and continued.

use std::path::Path;

mod common;
use common::{nas, stderr, stdout};

fn trials(dir: &Path, cwd: &Path) -> Vec<serde_json::Value> {
    let o = nas(&["status", dir.to_str().unwrap(), "--json"], cwd);
    assert!(o.status.success(), "status failed: {}", stderr(&o));
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o)).unwrap()
}

fn schema_version(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_version_1_study_is_read_then_resumed_with_its_history() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(data.join("v1-study/study.db"), dir.join("study.db")).unwrap();
    let config = std::fs::read_to_string(data.join("v1-study.toml")).unwrap();
    assert_eq!(schema_version(&dir.join("study.db")), "1");

    // Reading never migrates.
    let before = trials(&dir, tmp.path());
    assert_eq!(before.len(), 6);
    assert!(before.iter().all(|t| t["state"] == "complete"));
    assert_eq!(schema_version(&dir.join("study.db")), "1");

    // Resumed with a larger budget: migrated, the 6 stored trials kept as they were, the
    // budget counts them, and the strategies go on from their checkpoints.
    let toml = tmp.path().join("v1.toml");
    std::fs::write(
        &toml,
        config.replace("[budget]\ntrials = 6", "[budget]\ntrials = 10"),
    )
    .unwrap();
    let o = nas(
        &[
            "search",
            toml.to_str().unwrap(),
            "--study-dir",
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert!(stderr(&o).contains("(6 trials stored)"), "{}", stderr(&o));
    assert_eq!(schema_version(&dir.join("study.db")), "3");
    let after = trials(&dir, tmp.path());
    assert_eq!(after.len(), 10, "{after:#?}");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old["id"], new["id"]);
        assert_eq!(old["arch"], new["arch"]);
        assert_eq!(old["metrics"], new["metrics"]);
    }
    // The first strategy had its 6 trials: the rest come from the second.
    assert!(
        after[6..].iter().all(|t| t["strategy"] == "evolution"),
        "{after:#?}"
    );
}
