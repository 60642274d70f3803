//! End-to-end tests of `nas tabulate` and the `tabular` evaluator: real training on the
//! bundled digits data, real plugins, real SQLite files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use nas_core::config;
use nas_core::space::{CellSpace, CellSpaceConfig, SearchSpace, build_space};
use nas_table::Table;

mod common;
use common::{nas, nas_until, send_signal};

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn trials(dir: &Path, study: &str) -> Vec<serde_json::Value> {
    let o = nas(&["status", study, "--json"], dir);
    assert!(o.status.success(), "{}", err(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Four architectures (depth 1 or 2 x expansion 1 or 2) of a one-stage chain.
const CHAIN: &str = r#"
[space]
kind = "chain"
stem_channels = 4
kernels = [3]
expansions = [1, 2]
stages = [{ channels = 4, stride = 1, depths = [1, 2], widths = [4] }]
"#;

fn build_config(trials: u64) -> String {
    format!(
        r#"
[study]
name = "tiny-table"
seed = 5
directory = "build"

[budget]
trials = {trials}

[data]
dataset = "digits"
{CHAIN}
[[strategy]]
plugin = "grid"

[[evaluator]]
plugin = "train"
epochs = 3
batch = 64
optimizer = "adamw"
lr = 0.01
test_accuracy = true

[objective]
maximize = "val_accuracy"

[runtime]
threads = 1
workers = 2
"#
    )
}

#[test]
fn a_table_is_built_resumably_and_answers_a_search() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Stopped by its budget after two networks: no table yet, and the message says why.
    let cfg = write(dir, "build.toml", &build_config(2));
    let o = nas(&["tabulate", cfg.to_str().unwrap()], dir);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(e.contains("4 architectures, 4 distinct networks"), "{e}");
    assert!(
        e.contains("2 of 4 networks are not trained yet") && e.contains("run `nas tabulate` again"),
        "{e}"
    );
    assert!(!dir.join("build/table.json.gz").exists());

    // What is there can be written without training more.
    let o = nas(
        &[
            "tabulate",
            cfg.to_str().unwrap(),
            "--partial",
            "-o",
            "part.json",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", err(&o));
    let part = Table::read(&dir.join("part.json")).unwrap();
    assert_eq!(part.rows.len(), 2);
    assert_eq!(trials(dir, "build").len(), 2);
    // A partial table is a sample: the grid's first two draws, weighed as such.
    assert_eq!(part.sample, Some(nas_table::Sample { draws: 2 }));
    assert_eq!(part.arch_weights(), vec![2, 2]);

    // Resumed with a larger budget: only the two missing networks are trained.
    let cfg = write(dir, "build.toml", &build_config(100));
    let o = nas(&["tabulate", cfg.to_str().unwrap()], dir);
    assert!(o.status.success(), "{}", err(&o));
    let stored = trials(dir, "build");
    assert_eq!(stored.len(), 4, "no network trained twice");
    let table = Table::read(&dir.join("build/table.json.gz")).unwrap();
    assert_eq!((table.rows.len(), table.epochs), (4, 3));
    assert_eq!((table.archs_in_space, table.networks_in_space), (4, 4));
    assert_eq!(table.sample, None, "a complete table is no sample");
    assert_eq!(table.name, "tiny-table");
    let best = table.optimum();
    assert!(best.test_accuracy > 0.3, "above chance (0.1): {best:?}");
    for row in &part.rows {
        assert!(
            table.rows.contains(row),
            "rows of the first run are kept as they were"
        );
    }
    let by_arch: HashMap<&str, &serde_json::Value> = stored
        .iter()
        .map(|t| (t["arch"].as_str().unwrap(), t))
        .collect();
    for row in &table.rows {
        let t = by_arch[row.archs[0].as_str()];
        let m = &t["metrics"];
        assert_eq!(row.trial, t["id"].as_u64().unwrap());
        assert_eq!(row.val_accuracy.len(), 3);
        assert_eq!(row.val_accuracy[2], m["val_accuracy"].as_f64().unwrap());
        let test = row.test_accuracy.unwrap();
        assert!((0.0..=1.0).contains(&test), "{test}");
        assert!(row.train_seconds.windows(2).all(|w| w[0] <= w[1]));
    }

    // A search on the table: every answer is the table's row for the candidate.
    let search = format!(
        r#"
[study]
name = "on-table"
seed = 1
directory = "search"

[budget]
trials = 4
{}
input = [1, 8, 8]
classes = 10

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "tabular"
table = "build/table.json.gz"

[objective]
maximize = "val_accuracy"
"#,
        CHAIN.trim_end()
    );
    let cfg = write(dir, "search.toml", &search);
    let o = nas(&["search", cfg.to_str().unwrap()], dir);
    assert!(o.status.success(), "{}", err(&o));
    let index = table.index();
    let answered = trials(dir, "search");
    assert!(!answered.is_empty());
    for t in &answered {
        assert_eq!(t["state"], "complete", "{t}");
        let row = &table.rows[index.by_arch[t["arch"].as_str().unwrap()]];
        let m = &t["metrics"];
        assert_eq!(m["val_accuracy"].as_f64(), row.val_accuracy.last().copied());
        assert_eq!(m["test_accuracy"].as_f64(), row.test_accuracy);
        assert_eq!(
            m["simulated_seconds"].as_f64(),
            row.train_seconds.last().copied()
        );
    }
}

/// A table build of the NAS-Bench-201 cell space at width 2 on the digits, stopped after
/// `trials` networks.
fn cells(trials: u64) -> String {
    format!(
        r#"
[study]
name = "cells"
seed = 2
directory = "build"

[budget]
trials = {trials}

[data]
dataset = "digits"

[space]
kind = "cell"
channels = 2
cells_per_stage = 1

[[strategy]]
plugin = "grid"

[[evaluator]]
plugin = "train"
epochs = 1
batch = 256

[objective]
maximize = "val_accuracy"
"#
    )
}

/// SIGTERM (or SIGINT) stops a build cleanly: the networks in training are finished and
/// stored, the command says how to resume and how to write what is there.
#[test]
fn an_interrupted_build_stores_its_networks_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = cells(15625);
    let cfg = write(dir, "cells.toml", &text);
    let running = nas_until(&["tabulate", cfg.to_str().unwrap()], dir, |l| {
        l.starts_with("trial ")
    });
    send_signal(&running, "TERM");
    let (status, text) = running.finish();
    assert_eq!(status.code(), Some(143), "{text}");
    assert!(
        text.contains("interrupted by SIGTERM")
            && text.contains(&format!(
                "Resume with: nas tabulate {} --study-dir build",
                cfg.display()
            ))
            && text.contains("--partial"),
        "{text}"
    );
    let stored = trials(dir, "build");
    assert!(!stored.is_empty());
    assert!(
        stored
            .iter()
            .all(|t| t["state"] != "running" && t["state"] != "pending"),
        "every network in training was finished and stored"
    );
}

#[test]
fn isomorphic_cells_share_one_trained_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = cells(3);
    let cfg = write(dir, "cells.toml", &text);
    let o = nas(&["tabulate", cfg.to_str().unwrap()], dir);
    assert!(
        err(&o).contains("15625 architectures, 5155 distinct networks"),
        "{}",
        err(&o)
    );
    let o = nas(
        &[
            "tabulate",
            cfg.to_str().unwrap(),
            "--partial",
            "-o",
            "t.json",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", err(&o));
    let table = Table::read(&dir.join("t.json")).unwrap();
    assert_eq!(table.rows.len(), 3);
    let draws = table.sample.expect("a partial table is a sample").draws;
    assert!(
        draws >= 3,
        "three networks need three draws at least: {draws}"
    );

    // Every architecture of the space whose network was trained is listed in that row, once.
    let config = config::load(&cfg).unwrap();
    let space = build_space(&config.resolved_space().unwrap()).unwrap();
    let rows: HashMap<&str, usize> = table
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.hash.as_str(), i))
        .collect();
    let mut expected: Vec<HashSet<String>> = vec![HashSet::new(); rows.len()];
    for values in nas_bench::tabulate::enumerate(space.descriptor()).unwrap() {
        let hash = space.decode(&values).unwrap().canonical_hash();
        if let Some(&i) = rows.get(hash.as_str()) {
            expected[i].insert(space.arch_string(&values));
        }
    }
    for (row, want) in table.rows.iter().zip(&expected) {
        let listed: HashSet<String> = row.archs.iter().cloned().collect();
        assert_eq!(listed.len(), row.archs.len(), "an arch listed twice");
        assert_eq!(&listed, want, "row {}", row.hash);
    }
    assert!(
        table.rows.iter().any(|r| r.archs.len() > 1),
        "three trained cells without a single isomorph: {:?}",
        table.rows.iter().map(|r| r.archs.len()).collect::<Vec<_>>()
    );
}

/// A repeat of a sampled table: another `[study] seed` with the grid's `seed` fixed to the
/// first build's trains the same networks again, with other splits and initial weights.
#[test]
fn a_fixed_strategy_seed_repeats_a_sample_with_new_trainings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let build = |name: &str, text: String| {
        let text = text.replace("directory = \"build\"", &format!("directory = \"{name}\""));
        let cfg = write(dir, &format!("{name}.toml"), &text);
        let _ = nas(&["tabulate", cfg.to_str().unwrap()], dir);
        let out = format!("{name}.json");
        let o = nas(
            &["tabulate", cfg.to_str().unwrap(), "--partial", "-o", &out],
            dir,
        );
        assert!(o.status.success(), "{}", err(&o));
        let table = Table::read(&dir.join(out)).unwrap();
        assert_eq!(table.rows.len(), 4, "{name}: the budget's four networks");
        let accuracies: HashMap<String, f64> = table
            .rows
            .iter()
            .map(|r| (r.hash.clone(), *r.val_accuracy.last().unwrap()))
            .collect();
        (table.seed, accuracies)
    };
    let first = build("first", cells(4));
    let repeat = build(
        "repeat",
        cells(4)
            .replace("seed = 2", "seed = 3")
            .replace("plugin = \"grid\"", "plugin = \"grid\"\nseed = 2"),
    );
    let other = build("other", cells(4).replace("seed = 2", "seed = 3"));
    assert_eq!((first.0, repeat.0, other.0), (2, 3, 3));
    let hashes = |t: &HashMap<String, f64>| t.keys().cloned().collect::<HashSet<_>>();
    assert_eq!(hashes(&repeat.1), hashes(&first.1), "the same networks");
    assert_ne!(hashes(&other.1), hashes(&first.1), "another draw");
    assert!(
        first.1.iter().any(|(h, acc)| repeat.1[h] != *acc),
        "trained again, not copied: {first:?} {repeat:?}"
    );
}

#[test]
fn a_config_that_is_not_a_table_build_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = build_config(4).replace("plugin = \"grid\"", "plugin = \"random\"");
    let cfg = write(dir, "bad.toml", &text);
    let o = nas(&["tabulate", cfg.to_str().unwrap()], dir);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("exactly one [[strategy]] with `plugin = \"grid\"`") && e.contains("random"),
        "{e}"
    );
    assert!(!dir.join("build").exists(), "nothing is created");
}

/// The tables shipped in configs/tables/ (built by `nas tabulate configs/tables/<name>.toml`)
/// are complete: every cell of the space is listed once, in the row of the network it builds,
/// with a full validation curve and a test accuracy; the seed tables repeat the same space and
/// recipe with another seed; the digits benchmark suite regrets to the seed-0 table's optimum.
#[test]
fn the_shipped_digits_tables_cover_their_whole_space() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = check_shipped_table(root, "nb201-digits", 0);
    for seed in [1, 2] {
        let repeat = check_shipped_table(root, &format!("nb201-digits-seed{seed}"), seed);
        assert_eq!(
            (&repeat.evaluator, repeat.epochs),
            (&table.evaluator, table.epochs),
            "the same recipe"
        );
    }
    let suite: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("configs/bench/digits.toml")).unwrap())
            .unwrap();
    let optimum = suite["dataset"][0]["optimum"].as_float().unwrap();
    assert_eq!(
        optimum,
        table.optimum().test_accuracy,
        "configs/bench/digits.toml optimum"
    );
}

/// The shipped Fashion-MNIST sample: built from its TOML (compared as parsed: comments were
/// added since), a sample that says so, every row a 5-epoch training of the network its
/// architecture builds. Needs no Fashion-MNIST files: the table holds the resolved space.
#[test]
fn the_shipped_fashion_sample_is_a_weighed_sample_of_its_space() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = "nb201-fashion-sample";
    let table = Table::read(&root.join(format!("configs/tables/{name}.json.gz"))).unwrap();
    let toml_text =
        std::fs::read_to_string(root.join(format!("configs/tables/{name}.toml"))).unwrap();
    let parsed = |t: &str| t.parse::<toml::Table>().unwrap();
    assert_eq!(
        parsed(&table.config),
        parsed(&toml_text),
        "built from its config"
    );
    let draws = table.sample.expect("a sample").draws;
    assert!(table.rows.len() >= 500, "{} rows", table.rows.len());
    assert!(draws >= table.rows.len() as u64);
    assert_eq!(
        (table.archs_in_space, table.networks_in_space, table.epochs),
        (15625, 5155, 5)
    );
    let weights = table.arch_weights();
    let total: usize = weights.iter().sum();
    assert!(
        (12_000..=19_000).contains(&total),
        "the weights estimate the space's 15,625 architectures: {total}"
    );
    let space: CellSpaceConfig = serde_json::from_value(table.space.clone()).unwrap();
    assert_eq!(space.input, Some(vec![1, 28, 28]));
    let space = CellSpace::new(&space).unwrap();
    for row in &table.rows {
        assert!(row.error.is_none(), "{}", row.hash);
        assert_eq!(row.val_accuracy.len(), 5);
        let test = row.test_accuracy.expect("test accuracy recorded");
        assert!((0.0..=1.0).contains(&test), "{test}");
        let values = space.parse_arch(&row.archs[0]).unwrap();
        assert_eq!(space.decode(&values).unwrap().canonical_hash(), row.hash);
    }
    let best = table.optimum();
    assert!(
        best.test_accuracy > 0.8,
        "Fashion-MNIST after 5 epochs: {best:?}"
    );
}

/// The Fashion-MNIST sample's repeats: built from their TOMLs with their own study seed, the
/// sample's recipe and data, and every network of the sample trained again (not copied).
#[test]
fn the_shipped_fashion_repeats_train_the_sample_again() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |name: &str| Table::read(&root.join(format!("configs/tables/{name}.json.gz"))).unwrap();
    let sample = read("nb201-fashion-sample");
    for seed in [1, 2] {
        let name = format!("nb201-fashion-sample-seed{seed}");
        let repeat = read(&name);
        let toml_text =
            std::fs::read_to_string(root.join(format!("configs/tables/{name}.toml"))).unwrap();
        assert_eq!(
            repeat.config.parse::<toml::Table>().unwrap(),
            toml_text.parse::<toml::Table>().unwrap(),
            "{name} built from its config"
        );
        assert_eq!(repeat.seed, seed);
        assert_eq!(
            (
                &repeat.space,
                &repeat.data,
                &repeat.evaluator,
                repeat.epochs
            ),
            (
                &sample.space,
                &sample.data,
                &sample.evaluator,
                sample.epochs
            ),
            "{name}: the sample's space, data and recipe"
        );
        let index = repeat.index();
        let mut differ = 0;
        for row in &sample.rows {
            let again = &repeat.rows[*index
                .by_hash
                .get(&row.hash)
                .unwrap_or_else(|| panic!("{name} lacks {}", row.archs[0]))];
            assert!(again.error.is_none(), "{name}: {}", row.archs[0]);
            if again.test_accuracy != row.test_accuracy {
                differ += 1;
            }
        }
        assert!(
            differ > sample.rows.len() / 2,
            "{name}: only {differ} networks differ from the sample's training"
        );
    }
}

/// Reads `configs/tables/<name>.json.gz` and checks it against `<name>.toml` (built with `seed`).
fn check_shipped_table(root: &Path, name: &str, seed: u64) -> Table {
    let table = Table::read(&root.join(format!("configs/tables/{name}.json.gz"))).unwrap();
    let config = config::load(&root.join(format!("configs/tables/{name}.toml"))).unwrap();
    assert_eq!(table.seed, seed, "{name}");
    let resolved = config.resolved_space().unwrap();
    assert_eq!(
        table.space,
        config::space_json(&resolved),
        "built from its config"
    );
    assert_eq!(table.epochs, 8);
    assert_eq!(
        (table.archs_in_space, table.networks_in_space),
        (15625, 5155)
    );
    assert_eq!(table.rows.len(), 5155, "one row per distinct network");

    let space = build_space(&resolved).unwrap();
    let index = table.index();
    assert_eq!(index.by_arch.len(), 15625, "every cell listed exactly once");
    for values in nas_bench::tabulate::enumerate(space.descriptor()).unwrap() {
        let arch = space.arch_string(&values);
        let row = &table.rows[index.by_arch[arch.as_str()]];
        assert_eq!(
            row.hash,
            space.decode(&values).unwrap().canonical_hash(),
            "{arch}"
        );
    }
    let mut failed = 0;
    for row in &table.rows {
        if row.error.is_some() {
            failed += 1;
            continue;
        }
        assert_eq!(row.val_accuracy.len(), 8, "{}", row.hash);
        assert_eq!(row.train_seconds.len(), 8, "{}", row.hash);
        assert!(row.train_seconds.windows(2).all(|w| w[0] <= w[1]));
        let test = row.test_accuracy.expect("test accuracy recorded");
        assert!((0.0..=1.0).contains(&test), "{test}");
    }
    assert_eq!(failed, 0, "no network failed to train");
    let best = table.optimum();
    assert!(best.test_accuracy > 0.9, "digits are easy: {best:?}");
    table
}
