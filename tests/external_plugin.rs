//! End-to-end: a strategy plugin written and built OUTSIDE this workspace, the way a user
//! would (a crate of its own with `crate-type = ["cdylib", "rlib"]` and the SDK as a path
//! dependency, built on the SDK's kit and tested with its conformance harness), then used by
//! `nas search`, first by path and then by name through NAS_PLUGIN_PATH. The crate's
//! dependency tree has no nas-graph: strategies leave the SDK's `evaluator` feature off.
//!
//! The plugin crate compiles the SDK and its dependencies once into its own target folder
//! (about a minute on two cores). The `cost` evaluator comes from this build:
//! `cargo build -p evaluator-cost` first (`cargo xtask test` builds everything).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NAS: &str = env!("CARGO_BIN_EXE_nas");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The name the external plugin exports.
const PLUGIN: &str = "external-corner";

const MANIFEST: &str = r#"[package]
name = "strategy-external-corner"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
nas-plugin = { path = '@SDK@' }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# A workspace of its own: the crate is not part of whatever folder it sits in.
[workspace]
"#;

/// Every choice at its last value, except one choice (picked at random) drawn at random.
/// Built on the SDK's kit, and tested with its conformance harness.
const SOURCE: &str = r#"
use nas_plugin::kit::{self, options::parse_options, rand::Rng};
use nas_plugin::{ChoiceKind, Observation, PluginError, Proposal, SpaceDescriptor, Strategy, StrategyContext};
use serde::{Deserialize, Serialize};

const NAME: &str = "external-corner";

/// No options: any key is an error.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {}

#[derive(Serialize, Deserialize)]
struct State {
    rng: kit::Rng,
    told: u64,
}

pub struct Corner {
    space: SpaceDescriptor,
    state: State,
}

fn last(kind: &ChoiceKind) -> f64 {
    match kind {
        ChoiceKind::Categorical { options } => (options.len() - 1) as f64,
        ChoiceKind::Integer { high, .. } => *high as f64,
        ChoiceKind::Float { high, .. } => *high,
    }
}

impl Strategy for Corner {
    fn new(ctx: StrategyContext) -> Result<Self, PluginError> {
        parse_options::<Options>(NAME, &ctx.config)?;
        kit::check_space(NAME, &ctx.space)?;
        if ctx.space.choices.is_empty() {
            return Err(format!("{NAME} needs at least one choice").into());
        }
        Ok(Corner { space: ctx.space, state: State { rng: kit::seeded(ctx.seed), told: 0 } })
    }

    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, PluginError> {
        let mut proposals = Vec::new();
        for _ in 0..n {
            let mut values: Vec<f64> = self.space.choices.iter().map(|c| last(&c.kind)).collect();
            let i = self.state.rng.random_range(0..values.len());
            values[i] = kit::sample_choice(&self.space.choices[i].kind, &mut self.state.rng);
            proposals.push(Proposal { values, fidelity: None, parent: None });
        }
        Ok(proposals)
    }

    fn tell(&mut self, observations: &[Observation]) -> Result<(), PluginError> {
        self.state.told += observations.len() as u64;
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value, PluginError> {
        Ok(kit::save_state(NAME, &self.state)?)
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), PluginError> {
        self.state = kit::restore_state(NAME, state)?;
        Ok(())
    }
}

nas_plugin::export_strategy!("external-corner", Corner);

#[cfg(test)]
mod tests {
    #[test]
    fn conforms_to_the_strategy_contract() {
        nas_plugin::conformance::check::<super::Corner>(serde_json::Value::Null);
    }
}
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Runs cargo in the crate folder `krate`, with its own target folder when building.
fn cargo_in(krate: &Path, target: Option<&Path>, args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(krate).args(args);
    if let Some(target) = target {
        cmd.arg("--target-dir").arg(target);
    }
    cmd.env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()))
}

/// Writes the plugin crate into `dir` and builds it with its own target folder; returns the
/// library.
fn build_external_plugin(dir: &Path) -> PathBuf {
    let krate = dir.join("strategy-external-corner");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let sdk = Path::new(REPO).join("crates/nas-plugin");
    std::fs::write(
        krate.join("Cargo.toml"),
        MANIFEST.replace("@SDK@", &sdk.display().to_string()),
    )
    .unwrap();
    std::fs::write(krate.join("src/lib.rs"), SOURCE).unwrap();
    // The repository's lock file pins the dependency versions the `nas` program was built
    // with; every crate is then already in cargo's download cache, so no network is needed.
    let lock = Path::new(REPO).join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, krate.join("Cargo.lock")).unwrap();
    }

    let target = dir.join("target");
    let o = cargo_in(&krate, Some(&target), &["build", "--offline"]);
    check("`cargo build` of the external plugin crate", &o);

    // Its unit test runs the SDK's conformance harness.
    let o = cargo_in(&krate, Some(&target), &["test", "--offline"]);
    check("`cargo test` of the external plugin crate", &o);
    assert!(
        text(&o.stdout).contains("conforms_to_the_strategy_contract ... ok"),
        "the conformance test ran:\n{}",
        text(&o.stdout)
    );

    // A strategy plugin does not build the network crate: the SDK's evaluator side is off.
    let o = cargo_in(&krate, None, &["tree", "--offline", "-e", "normal"]);
    check("`cargo tree` of the external plugin crate", &o);
    assert!(
        text(&o.stdout).contains("nas-plugin"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        !text(&o.stdout).contains("nas-graph"),
        "a strategy plugin depends on nas-graph:\n{}",
        text(&o.stdout)
    );

    let lib = target.join("debug").join(format!(
        "{}strategy_external_corner{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        lib.is_file(),
        "cargo built the external crate but {} is missing; stderr:\n{}",
        lib.display(),
        text(&o.stderr)
    );
    lib
}

fn study(plugin: &str) -> String {
    format!(
        r#"
[study]
name = "external"
seed = 11
directory = "study"

[budget]
trials = 5

[space]
kind = "cell"
input = [3, 8, 8]
classes = 10
channels = 4
cells_per_stage = 1

[[strategy]]
plugin = '{plugin}'

[[evaluator]]
plugin = "cost"

[objective]
minimize = "params"
"#
    )
}

/// Runs `nas search` on `config` into `study_dir`, then returns `nas status --json`.
fn search(
    dir: &Path,
    config: &str,
    study_dir: &str,
    env: &[(&str, &Path)],
) -> Vec<serde_json::Value> {
    let cfg = dir.join(format!("{study_dir}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(NAS);
        cmd.args(args).current_dir(dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("nas runs")
    };
    let o = run(&["search", cfg.to_str().unwrap(), "--study-dir", study_dir]);
    check(
        &format!("`nas search` with the external plugin ({study_dir})"),
        &o,
    );
    let o = run(&["status", study_dir, "--json"]);
    check("`nas status --json`", &o);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&o.stdout)))
        .as_array()
        .expect("status --json prints an array of trials")
        .clone()
}

#[test]
fn a_strategy_built_outside_the_workspace_runs_a_study() {
    let nas_dir = Path::new(NAS).parent().unwrap();
    let cost = nas_dir.join(format!(
        "{}evaluator_cost{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(
        cost.is_file(),
        "{} is missing: run `cargo build -p evaluator-cost` (or `cargo xtask test`) first",
        cost.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    let lib = build_external_plugin(tmp.path());

    // By path.
    let trials = search(
        tmp.path(),
        &study(&lib.display().to_string()),
        "by-path",
        &[],
    );
    assert_eq!(trials.len(), 5, "the budget is 5 trials: {trials:#?}");
    // NB201 cell: 6 edges with 5 options each; the corner is every edge at option 4.
    for t in &trials {
        assert_eq!(
            t["strategy"], PLUGIN,
            "proposed by the external plugin: {t}"
        );
        assert_eq!(t["state"], "complete", "{t}");
        assert!(t["metrics"]["params"].as_f64().unwrap() > 0.0, "{t}");
        let values: Vec<f64> = (t["values"].as_array().expect("values"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(values.len(), 6, "{t}");
        let off_corner = values.iter().filter(|&&v| v != 4.0).count();
        assert!(
            off_corner <= 1,
            "the plugin changes one choice of the corner: {t}"
        );
    }

    // By name, found through NAS_PLUGIN_PATH; the same seed gives the same candidates.
    let folder = lib.parent().unwrap();
    let listed = Command::new(NAS)
        .args(["plugins"])
        .env("NAS_PLUGIN_PATH", folder)
        .output()
        .expect("nas runs");
    check("`nas plugins`", &listed);
    assert!(
        text(&listed.stdout).contains(PLUGIN),
        "`nas plugins` lists the external plugin:\n{}",
        text(&listed.stdout)
    );
    let by_name = search(
        tmp.path(),
        &study(PLUGIN),
        "by-name",
        &[("NAS_PLUGIN_PATH", folder)],
    );
    let values = |ts: &[serde_json::Value]| -> Vec<serde_json::Value> {
        ts.iter().map(|t| t["values"].clone()).collect()
    };
    assert_eq!(values(&by_name), values(&trials), "same seed, same search");
    assert!(by_name.iter().all(|t| t["strategy"] == PLUGIN));
}
