//! One function per subcommand. Search logic lives in nas-core; this only wires and prints.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nas_core::study::{Study, best_trials};
use nas_core::study_ref::{StudyRef, storage_url};
use nas_core::{config, final_phase, plugins};
use nas_graph::onnx::{ExportOptions, export_inference};
use nas_graph::weights::Weights;

use crate::progress::SearchProgress;
use crate::trial_view::{text_line, to_json, with_final};

pub fn search(
    config_path: &Path,
    study_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    storage: Option<&str>,
) -> anyhow::Result<()> {
    let mut config = config::load(config_path)?;
    config.data_root = data_dir;
    // --storage, else NAS_STORAGE, else `[storage] url`.
    if let Some(url) = storage_url(storage)? {
        config.storage = Some(url);
    }
    let objective = config.objectives[0].metric.clone();
    let budget = config.budget.trials;
    crate::signals::stop_searches_on_interrupt();
    let mut study = Study::open(config, study_dir)?;
    let dir = study.dir().to_path_buf();
    let study_ref = match &study.config().storage {
        Some(url) => StudyRef::Database {
            url: url.clone(),
            name: study.config().name.clone(),
        },
        None => StudyRef::Dir(dir.clone()),
    };
    eprintln!(
        "study `{}` in {} ({} trials stored)",
        study.config().name,
        match &study_ref {
            StudyRef::Dir(dir) => dir.display().to_string(),
            StudyRef::Database { .. } => study.storage().location(),
        },
        study.progress().evaluated
    );
    let mut progress = SearchProgress::new(&objective, budget);
    let result = study.run(&mut progress);
    progress.finish();
    let summary = result?;
    Interrupted::check(&study, |stored| {
        format!(
            "{} trials evaluated in this run; the study's {stored} trials are stored in {}. \
             Resume with: nas search {} {}",
            summary.evaluated,
            study_ref,
            config_path.display(),
            match &study_ref {
                StudyRef::Dir(dir) => format!("--study-dir {}", dir.display()),
                StudyRef::Database { url, .. } => format!("--storage {url}"),
            }
        )
    })?;
    eprintln!(
        "stopped: {} ({} trials evaluated in this run, {} duplicate proposals answered from the cache)",
        summary.stop_reason, summary.evaluated, summary.duplicates
    );
    if study.config().strategies.len() > 1 {
        let shares: Vec<String> = study
            .standings()
            .iter()
            .map(|s| {
                format!(
                    "{} {} trials (credit {:.2})",
                    s.strategy, s.evaluated, s.credit
                )
            })
            .collect();
        eprintln!("strategies: {}", shares.join(", "));
    }
    if study.config().final_phase.is_some() {
        final_phase::run(
            study.config(),
            study.storage(),
            study.dir(),
            study.runtime(),
            &mut progress,
        )?;
    }
    drop(study);
    best(&study_ref, false, 1)
}

/// A search stopped by SIGINT/SIGTERM after storing its trials: what was saved and how to
/// resume. The program exits with 128 + the signal.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

impl Interrupted {
    /// After a study's run: when a stop signal ended it, the error that names the signal and
    /// goes on with `what_now` (given the trials now stored); `Ok` when no signal came.
    pub fn check(study: &Study, what_now: impl FnOnce(usize) -> String) -> anyhow::Result<()> {
        let Some(signal) = nas_core::interrupt::requested() else {
            return Ok(());
        };
        let stored = study.storage().trials()?.len();
        Err(Interrupted {
            signal,
            message: format!(
                "{}: {}",
                nas_core::interrupt::stop_reason(signal),
                what_now(stored)
            ),
        }
        .into())
    }
}

pub fn status(study: &StudyRef, json: bool, show_config: bool) -> anyhow::Result<()> {
    let (storage, config) = study.open()?;
    if show_config {
        print!("{}", config.source);
        return Ok(());
    }
    let trials = storage.trials()?;
    if json {
        let list: Vec<_> = trials.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("study `{}` ({})", config.name, study.place());
    let mut counts = std::collections::BTreeMap::new();
    for t in &trials {
        *counts.entry(t.state.as_str()).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("{} trials: {}", trials.len(), counts.join(", "));
    print_unfinished_supernets(&config, &study.files_dir(&config), &storage.checkpoints()?);
    crate::status_cmd::print_for_status(&storage, config.runtime.lease.as_secs_f64())?;
    if let Some(json) = storage.meta("standings")? {
        let standings: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
        let line: Vec<String> = standings
            .iter()
            .map(|s| {
                format!(
                    "{} {} trials, credit {:.2}",
                    s["strategy"].as_str().unwrap_or("?"),
                    s["evaluated"],
                    s["credit"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!(
            "strategies ({:?} mix): {}",
            config.mix.mode,
            line.join("; ")
        );
    }
    println!(
        "{:>6}  {:<10}  {:<10}  arch  metrics",
        "id", "state", "strategy"
    );
    for t in &trials {
        println!("{}", text_line(t));
    }
    Ok(())
}

/// A one-shot strategy whose supernet still trains (or stopped during training) has no trial
/// yet to show: a line for each, from its supernet checkpoint, with the architecture derived
/// so far where the space can be built without loading the data.
fn print_unfinished_supernets(
    config: &config::StudyConfig,
    dir: &Path,
    checkpoints: &[nas_core::storage::Checkpoint],
) {
    let searches: Vec<_> = nas_core::oneshot::stored_searches(&config.strategies, dir, checkpoints)
        .into_iter()
        .filter(|s| s.unfinished)
        .collect();
    if searches.is_empty() {
        return;
    }
    let space = (!config.space.needs_data())
        .then(|| nas_core::space::build_space(&config.space).ok())
        .flatten();
    for s in searches {
        let what = format!("supernet `{}` (strategy {})", s.plugin, s.index);
        let r = match &s.record {
            Ok(r) => r,
            Err(e) => {
                println!("{what}: {e:#}");
                continue;
            }
        };
        let Some(last) = r.history.last() else {
            continue;
        };
        let derived = match &space {
            Some(space) if !last.derived.is_empty() => format!(
                ", derived so far {}",
                nas_core::oneshot::arch_of(Some(space.as_ref()), &last.derived)
            ),
            _ => String::new(),
        };
        println!(
            "{what}: {} of {} epochs trained (train loss {:.4}, accuracy {:.4}){derived}",
            r.history.len(),
            s.total_epochs.map_or("?".into(), |e| e.to_string()),
            last.train_loss,
            last.train_accuracy,
        );
    }
}

pub fn best(study: &StudyRef, json: bool, top: usize) -> anyhow::Result<()> {
    let (storage, config) = study.open()?;
    let dir = &study.files_dir(&config);
    // Several objectives: the whole Pareto set unless --top narrows it.
    let limit = (config.objectives.len() == 1 || top > 1).then_some(top);
    let shown = best_trials(&storage, &config.objectives, limit)?;
    let report = final_phase::stored_report(&storage)?;
    if json {
        let list: Vec<_> = shown
            .iter()
            .map(|t| with_final(to_json(t), t.id, report.as_ref(), dir))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let goal: Vec<String> = config
        .objectives
        .iter()
        .map(|o| format!("{:?} {}", o.direction, o.metric).to_lowercase())
        .collect();
    if shown.is_empty() {
        println!("no complete trial yet ({})", goal.join(", "));
        return Ok(());
    }
    let what = if config.objectives.len() > 1 {
        "Pareto set"
    } else {
        "best"
    };
    println!("{what} ({}):", goal.join(", "));
    for t in shown {
        println!("{}", text_line(&t));
    }
    if let Some(report) = report {
        println!("final models (retrained on train + validation, measured on the test split):");
        for m in &report.members {
            println!(
                "{:>6}  {}  epochs={}  {}",
                m.trial_id,
                test_fields(m.test_accuracy, Some(m.test_loss), m.test_errors.as_ref()),
                m.epochs,
                m.model
                    .as_ref()
                    .map_or_else(String::new, |p| describe_model(
                        &final_phase::resolve_model(dir, p)
                    ))
            );
        }
        if let Some(e) = &report.ensemble {
            println!(
                "ensemble of trials {:?}: {}  {}",
                e.members,
                test_fields(e.test_accuracy, None, e.test_errors.as_ref()),
                e.model
                    .as_ref()
                    .map_or_else(String::new, |p| final_phase::resolve_model(dir, p)
                        .display()
                        .to_string())
            );
        }
    }
    Ok(())
}

/// The model path with the input/output names and shapes from its description file.
fn describe_model(path: &Path) -> String {
    let info = std::fs::read(final_phase::description_path(path))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let tensor = |t: &serde_json::Value| {
        format!(
            "`{}` {} {}",
            t["name"].as_str().unwrap_or("?"),
            t["dtype"].as_str().unwrap_or("?"),
            t["shape"]
        )
    };
    match info {
        Some(i) => format!(
            "{}  input {} -> output {}",
            path.display(),
            tensor(&i["input"]),
            tensor(&i["output"])
        ),
        None => path.display().to_string(),
    }
}

pub fn export(study: &StudyRef, trial_id: u64, output: &Path) -> anyhow::Result<()> {
    let (storage, config) = study.open()?;
    let trial = storage
        .trial(trial_id)?
        .with_context(|| format!("study {study} has no trial {trial_id}"))?;
    if trial.state != nas_plugin::TrialState::Complete {
        eprintln!(
            "warning: trial {trial_id} is {}{}; its network is exported anyway, but it has no valid result",
            trial.state.as_str(),
            trial
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    let space = nas_core::space::build_space(&config.resolved_space()?)?;
    let graph = space
        .decode(&trial.values)
        .with_context(|| format!("cannot decode trial {trial_id}"))?;
    // Until candidates are trained, the exported weights are the He initialisation.
    let weights = Weights::he_init(&graph, nas_core::seeds::derive_seed(config.seed, trial_id))?;
    let options = ExportOptions::default();
    let bytes = export_inference(&graph, &weights, &options)?;
    // Replaced in one step: a failed write (full disk) keeps the previous file whole.
    nas_train::write_atomic(output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let mut input = vec!["N".to_string()];
    input.extend(graph.input.iter().map(|d| d.to_string()));
    let classes = graph
        .shapes()?
        .get(graph.output)
        .and_then(|s| s.last().copied())
        .unwrap_or(0);
    println!(
        "wrote {} (trial {trial_id}, {}): input `{}` float32 [{}], output `{}` float32 [N, {classes}]; weights are untrained (He initialisation)",
        output.display(),
        trial.arch,
        options.input_name,
        input.join(", "),
        options.output_name,
    );
    Ok(())
}

pub fn evaluate(
    config_path: &Path,
    archs: &[String],
    json: bool,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = nas_core::evaluate::load_config(config_path)?;
    config.data_root = data_dir;
    let scored = nas_core::evaluate::evaluate(&config, archs)?;
    if json {
        let list: Vec<serde_json::Value> = scored
            .iter()
            .map(|s| {
                serde_json::json!({
                    "arch": s.arch,
                    "values": s.values,
                    "state": s.state.as_str(),
                    "metrics": s.metrics,
                    "error": s.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for s in &scored {
        let metrics: Vec<String> = s
            .metrics
            .iter()
            .map(|(k, v)| crate::trial_view::format_metric(k, *v))
            .collect();
        println!(
            "{:<10}  {}  {}",
            s.state.as_str(),
            s.arch,
            metrics.join(" ")
        );
        if let Some(e) = &s.error {
            println!("            [{e}]");
        }
    }
    Ok(())
}

pub fn plugins(json: bool) -> anyhow::Result<()> {
    let dirs = plugins::search_dirs();
    let found = plugins::list(&dirs);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    println!(
        "search path: {}",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if found.is_empty() {
        println!("no plugins found; build them with `cargo build --release --workspace`");
    }
    for p in found {
        match (&p.kind, &p.error) {
            (Some(kind), None) => {
                println!("{:<10} {:<14} {}", kind.as_str(), p.name, p.path.display())
            }
            (_, Some(e)) => println!(
                "{:<10} {:<14} {}  REFUSED: {e}",
                "?",
                p.name,
                p.path.display()
            ),
            (None, None) => {}
        }
    }
    for (name, _) in nas_core::oneshot::ONESHOT_STRATEGIES {
        println!(
            "{:<10} {:<14} (built in: one-shot supernet search)",
            "strategy", name
        );
    }
    Ok(())
}

/// `test_accuracy=0.9512  test_loss=0.1234`, or for regression
/// `test_rmse=3.2100  test_mae=2.5000  test_r2=0.8710`.
fn test_fields(
    accuracy: Option<f64>,
    loss: Option<f64>,
    errors: Option<&nas_train::RegressionErrors>,
) -> String {
    let mut fields = Vec::new();
    if let Some(e) = errors {
        fields.push(format!("test_rmse={:.4}", e.mse.sqrt()));
        fields.push(format!("test_mae={:.4}", e.mae));
        fields.push(format!("test_r2={:.4}", e.r2));
        return fields.join("  ");
    }
    if let Some(a) = accuracy {
        fields.push(format!("test_accuracy={a:.4}"));
    }
    if let Some(l) = loss {
        fields.push(format!("test_loss={l:.4}"));
    }
    fields.join("  ")
}
