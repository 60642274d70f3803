//! The report of one stored study (`nas report STUDY_DIR`): every trial as CSV, the best
//! objective over trials marked by the strategy that proposed each improvement, the Pareto
//! front of a two-objective study, and a markdown summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nas_plugin::{Direction, Objective, TrialState};

use super::plot::{Chart, Line, Points};
use super::supernet::{self, SupernetSearch};
use super::table::{Csv, csv_number, human_number, markdown_table};
use nas_core::config::StudyConfig;
use nas_core::final_phase::{FinalReport, stored_report};
use nas_core::objectives::{self, dominates};
use nas_core::oneshot::{StoredSearch, SupernetRecord, stored_searches};
use nas_core::space::build_space;
use nas_core::storage::TrialRecord;
use nas_core::study_ref::StudyRef;

/// Rows of the best-trials table of a single-objective study.
const BEST_ROWS: usize = 10;

/// Wall seconds a trial spent in the evaluators.
pub fn trial_seconds(t: &TrialRecord) -> Option<f64> {
    match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) => Some((f - s).max(0.0)),
        _ => None,
    }
}

/// Every metric name of the trials, sorted.
pub fn metric_names<'a>(trials: impl IntoIterator<Item = &'a TrialRecord>) -> Vec<String> {
    let mut names: Vec<String> = trials
        .into_iter()
        .flat_map(|t| t.metrics.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `trials.csv`: id, state, strategy, arch, fidelity, one column per metric, seconds, error,
/// parent (the trial a proposal was derived from, e.g. mutated; with the `train` evaluator's
/// `inherit = true`, the one whose weights it started from).
pub fn trials_csv(trials: &[TrialRecord]) -> String {
    let metrics = metric_names(trials);
    let mut header: Vec<String> = ["id", "state", "strategy", "arch", "fidelity"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(metrics.iter().cloned());
    header.push("seconds".into());
    header.push("error".into());
    // Last, so that columns read by position before it stay where they were.
    header.push("parent".into());
    let mut csv = Csv::new(&header);
    for t in trials {
        let mut row = vec![
            t.id.to_string(),
            t.state.as_str().to_string(),
            t.strategy.clone(),
            t.arch.clone(),
            csv_number(t.fidelity),
        ];
        row.extend(
            metrics
                .iter()
                .map(|m| csv_number(t.metrics.get(m).copied())),
        );
        row.push(csv_number(trial_seconds(t)));
        row.push(t.error.clone().unwrap_or_default());
        row.push(t.parent.map(|p| p.to_string()).unwrap_or_default());
        csv.row(&row);
    }
    csv.into_string()
}

/// A complete trial that improved the study's best when it finished: for one objective a
/// strictly better first objective, for several a point no earlier trial dominates.
#[derive(Clone, Debug, PartialEq)]
pub struct Improvement {
    pub id: u64,
    pub strategy: String,
    /// The first objective's value (as measured, not oriented).
    pub value: f64,
}

/// The improvements of a study, in trial order.
pub fn improvements(objectives: &[Objective], trials: &[TrialRecord]) -> Vec<Improvement> {
    let mut seen: Vec<Vec<f64>> = Vec::new();
    let mut out = Vec::new();
    for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
        let Some(l) = objectives::losses(objectives, &t.metrics) else {
            continue;
        };
        let improved = if objectives.len() == 1 {
            seen.first().is_none_or(|b| l[0] < b[0])
        } else {
            !seen.iter().any(|s| dominates(s, &l) || s == &l)
        };
        if improved {
            out.push(Improvement {
                id: t.id,
                strategy: t.strategy.clone(),
                value: t.metrics[&objectives[0].metric],
            });
        }
        if objectives.len() == 1 {
            if seen.first().is_none_or(|b| l[0] < b[0]) {
                seen = vec![l];
            }
        } else {
            seen.push(l);
        }
    }
    out
}

/// Strategy names in the order they first proposed a trial.
fn strategy_order(trials: &[TrialRecord]) -> Vec<String> {
    let mut by_index: BTreeMap<usize, String> = BTreeMap::new();
    for t in trials {
        by_index
            .entry(t.strategy_index)
            .or_insert_with(|| t.strategy.clone());
    }
    let mut names: Vec<String> = Vec::new();
    for n in by_index.into_values() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

fn direction_word(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "minimize",
        Direction::Maximize => "maximize",
    }
}

/// The best-so-far chart of the first objective over trial ids.
pub fn best_so_far_chart(
    objectives: &[Objective],
    trials: &[TrialRecord],
    title: &str,
) -> Option<Chart> {
    let first = objectives.first()?;
    let complete: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| {
            let v = *t.metrics.get(&first.metric)?;
            v.is_finite().then_some((t.id as f64, v))
        })
        .collect();
    if complete.is_empty() {
        return None;
    }
    let single = [first.clone()];
    let mut best: Vec<(f64, f64)> = improvements(&single, trials)
        .iter()
        .map(|i| (i.id as f64, i.value))
        .collect();
    // The line runs to the last trial.
    if let (Some(&(_, v)), Some(last)) = (best.last(), trials.last())
        && best.last().map(|b| b.0) != Some(last.id as f64)
    {
        best.push((last.id as f64, v));
    }
    let order = strategy_order(trials);
    let mut by_strategy: Vec<Points> = order
        .iter()
        .enumerate()
        .map(|(i, name)| Points {
            name: format!("improvement by {name}"),
            points: Vec::new(),
            color: Some(i + 1),
            size: 5,
        })
        .collect();
    for imp in improvements(&single, trials) {
        if let Some(i) = order.iter().position(|n| *n == imp.strategy) {
            by_strategy[i].points.push((imp.id as f64, imp.value));
        }
    }
    let mut points = vec![Points {
        name: "complete trial".into(),
        points: complete,
        color: None,
        size: 2,
    }];
    points.extend(by_strategy.into_iter().filter(|p| !p.points.is_empty()));
    Some(Chart {
        title: title.to_string(),
        x_label: "trial".into(),
        y_label: format!("{} ({})", first.metric, direction_word(first.direction)),
        lines: vec![Line {
            name: "best so far".into(),
            points: best,
            step: true,
            color: Some(0),
            ..Line::default()
        }],
        points,
        hlines: Vec::new(),
        legend_top: first.direction == Direction::Minimize,
    })
}

/// The Pareto chart of a two-objective study: every complete trial and the front.
pub fn pareto_chart(
    objectives: &[Objective],
    trials: &[TrialRecord],
    title: &str,
) -> Option<Chart> {
    let [a, b] = objectives else {
        return None;
    };
    let value = |t: &TrialRecord| -> Option<(f64, f64)> {
        objectives::losses(objectives, &t.metrics)?;
        Some((t.metrics[&a.metric], t.metrics[&b.metric]))
    };
    let all: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(value)
        .collect();
    if all.is_empty() {
        return None;
    }
    let mut front: Vec<(f64, f64)> = objectives::best(objectives, trials)
        .into_iter()
        .filter_map(value)
        .collect();
    front.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.1.total_cmp(&q.1)));
    Some(Chart {
        title: title.to_string(),
        x_label: format!("{} ({})", a.metric, direction_word(a.direction)),
        y_label: format!("{} ({})", b.metric, direction_word(b.direction)),
        lines: vec![Line {
            name: String::new(),
            points: front.clone(),
            color: Some(3),
            ..Line::default()
        }],
        points: vec![
            Points {
                name: "complete trial".into(),
                points: all,
                color: None,
                size: 2,
            },
            Points {
                name: format!("Pareto front ({} trials)", front.len()),
                points: front,
                color: Some(3),
                size: 4,
            },
        ],
        hlines: Vec::new(),
        legend_top: true,
    })
}

/// What `nas report` wrote.
#[derive(Clone, Debug, Default)]
pub struct StudyReportFiles {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Writes the report of the study in `study_dir` into `out` (default `<study>/report/`).
pub fn write_study_report(
    study: &StudyRef,
    out: Option<&Path>,
) -> anyhow::Result<StudyReportFiles> {
    let (storage, config) = study.open()?;
    let study_dir = study.files_dir(&config);
    let trials = storage.trials()?;
    let standings = storage.meta("standings")?;
    let final_report = stored_report(&storage)?;
    let checkpoints = storage.checkpoints()?;
    drop(storage);
    let stored = stored_searches(&config.strategies, &study_dir, &checkpoints);
    let mut unreadable = Vec::new();
    let records: Vec<(&StoredSearch, &SupernetRecord)> = stored
        .iter()
        .filter_map(|s| match &s.record {
            Ok(r) => Some((s, r)),
            Err(e) => {
                unreadable.push(format!("{e:#}"));
                None
            }
        })
        .collect();
    // Names of choices and options for the one-shot sections; indices where the space
    // cannot be built here (its data gone, say).
    let space = if records.is_empty() {
        None
    } else {
        config
            .resolved_space()
            .ok()
            .and_then(|c| build_space(&c).ok())
    };
    let searches: Vec<SupernetSearch<'_>> = records
        .iter()
        .map(|&(s, record)| SupernetSearch {
            index: s.index,
            name: &s.plugin,
            record,
            unfinished: s.total_epochs,
            space: space.as_deref(),
        })
        .collect();
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| study_dir.join("report"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files = Vec::new();
    let mut write = |name: &str, text: &str| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write("trials.csv", &trials_csv(&trials))?;
    let mut charts = Vec::new();
    if let Some(chart) = best_so_far_chart(
        &config.objectives,
        &trials,
        &format!(
            "{}: best {} so far",
            config.name, config.objectives[0].metric
        ),
    ) {
        write("best_so_far.svg", &chart.to_svg((800, 500))?)?;
        charts.push(("best so far", "best_so_far.svg"));
    }
    if let Some(chart) = pareto_chart(
        &config.objectives,
        &trials,
        &format!("{}: Pareto front", config.name),
    ) {
        write("pareto.svg", &chart.to_svg((800, 500))?)?;
        charts.push(("Pareto front", "pareto.svg"));
    }
    // One-shot searches: their own section each, their files listed with the others.
    let mut supernet_md = String::new();
    let mut supernet_files: Vec<(String, String)> = Vec::new();
    if !searches.is_empty() {
        write("supernet_epochs.csv", &supernet::epochs_csv(&searches))?;
        write("supernet_weights.csv", &supernet::weights_csv(&searches))?;
        supernet_files.push((
            "supernet_epochs.csv".into(),
            "every epoch of every one-shot search (losses, accuracies, schedules, derived architecture)".into(),
        ));
        supernet_files.push((
            "supernet_weights.csv".into(),
            "every architecture weight after every epoch, by choice and option".into(),
        ));
    }
    for s in &searches {
        let file = match s.chart() {
            Some(chart) => {
                let file = format!("{}.svg", s.stem());
                write(&file, &chart.to_svg((800, 500))?)?;
                supernet_files.push((
                    file.clone(),
                    format!("`{}`'s architecture weights over its epochs", s.name),
                ));
                Some(file)
            }
            None => None,
        };
        supernet::section(&mut supernet_md, s, file.as_deref());
    }
    for e in &unreadable {
        let _ = writeln!(supernet_md, "Not shown: {e}.\n");
    }
    if config.objectives.len() > 2 {
        charts.push((
            "no Pareto plot: it is drawn for two objectives, this study has more",
            "",
        ));
    }
    let md = study_markdown(
        &study_dir,
        &config,
        &trials,
        standings.as_deref(),
        final_report.as_ref(),
        &charts,
        (&supernet_md, &supernet_files),
    );
    write("report.md", &md)?;
    Ok(StudyReportFiles { dir: out, files })
}

/// `report.md` of a study; `extra` is sections to add before the file list (the one-shot
/// searches') and the files they wrote, `(file, what it holds)`.
pub fn study_markdown(
    study_dir: &Path,
    config: &StudyConfig,
    trials: &[TrialRecord],
    standings: Option<&str>,
    final_report: Option<&FinalReport>,
    charts: &[(&str, &str)],
    extra: (&str, &[(String, String)]),
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Study `{}`\n", config.name);
    let _ = writeln!(
        md,
        "Directory `{}`, created from `{}` (seed {}).\n",
        study_dir.display(),
        config.path.display(),
        config.seed
    );
    let _ = writeln!(md, "## Objectives\n");
    for o in &config.objectives {
        let _ = writeln!(md, "- {} `{}`", direction_word(o.direction), o.metric);
    }
    for c in &config.constraints {
        let bound = match (c.min, c.max) {
            (Some(lo), Some(hi)) => format!("{lo} <= {} <= {hi}", c.metric),
            (Some(lo), None) => format!("{} >= {lo}", c.metric),
            (None, Some(hi)) => format!("{} <= {hi}", c.metric),
            (None, None) => continue,
        };
        let _ = writeln!(md, "- constraint: {bound}");
    }
    md.push('\n');

    let _ = writeln!(md, "## Trials\n");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in trials {
        *counts.entry(t.state.as_str()).or_default() += 1;
    }
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(s, n)| vec![s.to_string(), n.to_string()])
        .collect();
    let _ = writeln!(md, "{} trials.\n", trials.len());
    md.push_str(&markdown_table(&["state", "trials"], &rows));
    md.push('\n');

    best_section(&mut md, config, trials);
    improvement_section(&mut md, config, trials);
    standings_section(&mut md, config, standings);
    inheritance_section(&mut md, config, trials);
    final_section(&mut md, final_report);
    let (extra_sections, extra_files) = extra;
    md.push_str(extra_sections);

    let _ = writeln!(md, "## Files\n");
    let _ = writeln!(
        md,
        "- `trials.csv`: every trial (id, state, strategy, arch, fidelity, one column per metric, seconds, error, parent)"
    );
    for (file, what) in extra_files {
        let _ = writeln!(md, "- `{file}`: {what}");
    }
    for (title, file) in charts {
        if file.is_empty() {
            let _ = writeln!(md, "- {title}");
        } else {
            let _ = writeln!(md, "- `{file}`: {title}");
        }
    }
    md.push('\n');
    for (title, file) in charts.iter().filter(|(_, f)| !f.is_empty()) {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    md
}

fn best_section(md: &mut String, config: &StudyConfig, trials: &[TrialRecord]) {
    let best = objectives::best(&config.objectives, trials);
    let several = config.objectives.len() > 1;
    let shown: Vec<&TrialRecord> = if several {
        best
    } else {
        best.into_iter().take(BEST_ROWS).collect()
    };
    let heading = if several {
        format!("## Pareto set ({} trials)\n", shown.len())
    } else {
        format!("## Best trials (top {})\n", shown.len())
    };
    let _ = writeln!(md, "{heading}");
    if shown.is_empty() {
        let _ = writeln!(md, "No complete trial with every objective metric.\n");
        return;
    }
    let objective_names: Vec<&str> = config
        .objectives
        .iter()
        .map(|o| o.metric.as_str())
        .collect();
    let mut header: Vec<String> = vec!["id".into(), "strategy".into(), "arch".into()];
    header.extend(objective_names.iter().map(|s| s.to_string()));
    header.push("other metrics".into());
    header.push("seconds".into());
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|t| {
            let mut row = vec![
                t.id.to_string(),
                t.strategy.clone(),
                format!("`{}`", t.arch),
            ];
            row.extend(
                objective_names
                    .iter()
                    .map(|m| t.metrics.get(*m).map_or("".into(), |v| human_number(*v))),
            );
            let others: Vec<String> = t
                .metrics
                .iter()
                .filter(|(k, _)| !objective_names.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", human_number(*v)))
                .collect();
            row.push(others.join(" "));
            row.push(trial_seconds(t).map_or("".into(), |s| format!("{s:.2}")));
            row
        })
        .collect();
    md.push_str(&markdown_table(&header, &rows));
    md.push('\n');
}

fn improvement_section(md: &mut String, config: &StudyConfig, trials: &[TrialRecord]) {
    let _ = writeln!(md, "## Improvements by strategy\n");
    let what = if config.objectives.len() > 1 {
        "trials no earlier trial dominated when they finished"
    } else {
        "trials that improved the best objective when they finished"
    };
    let _ = writeln!(md, "Improvements are {what}.\n");
    let imps = improvements(&config.objectives, trials);
    let rows: Vec<Vec<String>> = strategy_order(trials)
        .iter()
        .map(|name| {
            let mine = trials.iter().filter(|t| &t.strategy == name);
            let proposed = mine.clone().count();
            let complete = mine.filter(|t| t.state == TrialState::Complete).count();
            let own: Vec<&Improvement> = imps.iter().filter(|i| &i.strategy == name).collect();
            vec![
                name.clone(),
                proposed.to_string(),
                complete.to_string(),
                own.len().to_string(),
                own.last().map_or("-".into(), |i| i.id.to_string()),
            ]
        })
        .collect();
    md.push_str(&markdown_table(
        &[
            "strategy",
            "trials",
            "complete",
            "improvements",
            "last improvement (trial)",
        ],
        &rows,
    ));
    md.push('\n');
}

fn standings_section(md: &mut String, config: &StudyConfig, standings: Option<&str>) {
    let Some(json) = standings else {
        return;
    };
    let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return;
    };
    let _ = writeln!(
        md,
        "## Strategy standings ({} mix, at the end of the last run)\n",
        format!("{:?}", config.mix.mode).to_lowercase()
    );
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s["strategy"].as_str().unwrap_or("?").to_string(),
                s["evaluated"].to_string(),
                format!("{:.3}", s["credit"].as_f64().unwrap_or(0.0)),
                format!("{}", s["weight"].as_f64().unwrap_or(1.0)),
            ]
        })
        .collect();
    md.push_str(&markdown_table(
        &["strategy", "evaluated", "credit", "weight"],
        &rows,
    ));
    md.push('\n');
}

/// With the `train` evaluator's `inherit = true` (trials report `inherited`): how many
/// trials started from their parent's weights, and the first objective on each side.
fn inheritance_section(md: &mut String, config: &StudyConfig, trials: &[TrialRecord]) {
    let trained: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.metrics.contains_key("inherited"))
        .collect();
    if trained.is_empty() {
        return;
    }
    let (inherited, scratch): (Vec<&TrialRecord>, Vec<&TrialRecord>) =
        trained.iter().partition(|t| t.metrics["inherited"] == 1.0);
    let metric = &config.objectives[0].metric;
    let mean = |ts: &[&TrialRecord]| -> String {
        let values: Vec<f64> = ts
            .iter()
            .filter_map(|t| t.metrics.get(metric))
            .copied()
            .collect();
        if values.is_empty() {
            "-".into()
        } else {
            format!("{:.4}", values.iter().sum::<f64>() / values.len() as f64)
        }
    };
    let _ = writeln!(md, "## Weight inheritance\n");
    let _ = writeln!(
        md,
        "{} of {} trained trials started from their parent's weights (`inherited = 1`; the \
         `parent` column of `trials.csv` names the parent), {} from scratch. Mean `{metric}`: \
         {} inherited, {} from scratch (children of chosen parents, often trained fewer \
         epochs: not a controlled comparison; docs/inheritance.md has one).\n",
        inherited.len(),
        trained.len(),
        scratch.len(),
        mean(&inherited),
        mean(&scratch),
    );
}

fn final_section(md: &mut String, report: Option<&FinalReport>) {
    let Some(report) = report else {
        return;
    };
    let _ = writeln!(
        md,
        "## Final phase\n\nRetrained on train + validation, measured on the held-out test split.\n"
    );
    let regression = report.members.iter().any(|m| m.test_errors.is_some());
    let rows: Vec<Vec<String>> = report
        .members
        .iter()
        .map(|m| {
            let mut row = vec![
                m.trial_id.to_string(),
                format!("`{}`", m.arch),
                m.epochs.to_string(),
            ];
            match (&m.test_errors, m.test_accuracy) {
                (Some(e), _) => row.extend([
                    format!("{:.4}", e.mse.sqrt()),
                    format!("{:.4}", e.mae),
                    format!("{:.4}", e.r2),
                ]),
                (None, accuracy) => row.extend([
                    accuracy.map_or("-".into(), |a| format!("{a:.4}")),
                    format!("{:.4}", m.test_loss),
                ]),
            }
            row.push(format!("{:.1}", m.train_seconds));
            row.push(
                m.model
                    .as_ref()
                    .map_or("-".into(), |p| format!("`{}`", p.display())),
            );
            row
        })
        .collect();
    let scores: &[&str] = if regression {
        &["test RMSE", "test MAE", "test R^2"]
    } else {
        &["test accuracy", "test loss"]
    };
    let header: Vec<&str> = ["trial", "arch", "epochs"]
        .iter()
        .chain(scores)
        .chain(&["train s", "model"])
        .copied()
        .collect();
    md.push_str(&markdown_table(&header, &rows));
    if let Some(e) = &report.ensemble {
        let members: Vec<String> = e.members.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(
            md,
            "\nEnsemble of trials {}: {}{}",
            members.join(", "),
            e.test_summary(),
            e.model
                .as_ref()
                .map_or(String::new(), |p| format!(" (`{}`)", p.display()))
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_plugin::Metrics;

    fn trial(id: u64, strategy: &str, state: TrialState, metrics: &[(&str, f64)]) -> TrialRecord {
        TrialRecord {
            id,
            state,
            strategy: strategy.into(),
            strategy_index: usize::from(strategy != "random"),
            values: vec![],
            arch: format!("a{id}"),
            hash: String::new(),
            fidelity: None,
            metrics: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<Metrics>(),
            details: serde_json::Value::Null,
            error: (state == TrialState::Failed).then(|| "boom, \"bad\"".to_string()),
            created_at: 0.0,
            started_at: Some(10.0),
            finished_at: Some(10.5),
            worker: None,
            attempts: 1,
            requeues: 0,
            told: true,
            parent: None,
        }
    }

    fn maximize(m: &str) -> Objective {
        Objective {
            metric: m.into(),
            direction: Direction::Maximize,
        }
    }

    fn minimize(m: &str) -> Objective {
        Objective {
            metric: m.into(),
            direction: Direction::Minimize,
        }
    }

    #[test]
    fn csv_has_every_metric_column() {
        let trials = vec![
            trial(1, "random", TrialState::Complete, &[("acc", 0.5)]),
            TrialRecord {
                parent: Some(1),
                ..trial(2, "evolution", TrialState::Failed, &[("params", 10.0)])
            },
        ];
        let csv = trials_csv(&trials);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "id,state,strategy,arch,fidelity,acc,params,seconds,error,parent"
        );
        assert_eq!(lines[1], "1,complete,random,a1,,0.5,,0.5,,");
        assert_eq!(
            lines[2],
            "2,failed,evolution,a2,,,10,0.5,\"boom, \"\"bad\"\"\",1"
        );
    }

    #[test]
    fn improvements_credit_the_proposer() {
        let trials = vec![
            trial(1, "random", TrialState::Complete, &[("acc", 0.5)]),
            trial(2, "random", TrialState::Complete, &[("acc", 0.4)]),
            trial(3, "evolution", TrialState::Failed, &[]),
            trial(4, "evolution", TrialState::Complete, &[("acc", 0.7)]),
            trial(5, "random", TrialState::Complete, &[("acc", 0.7)]),
        ];
        let imps = improvements(&[maximize("acc")], &trials);
        let ids: Vec<(u64, &str)> = imps.iter().map(|i| (i.id, i.strategy.as_str())).collect();
        assert_eq!(ids, vec![(1, "random"), (4, "evolution")]);
        let chart = best_so_far_chart(&[maximize("acc")], &trials, "t").unwrap();
        // The best line runs to the last trial.
        assert_eq!(
            chart.lines[0].points,
            vec![(1.0, 0.5), (4.0, 0.7), (5.0, 0.7)]
        );
    }

    #[test]
    fn several_objectives_count_new_non_dominated_points() {
        let o = [maximize("acc"), minimize("lat")];
        let trials = vec![
            trial(
                1,
                "random",
                TrialState::Complete,
                &[("acc", 0.5), ("lat", 2.0)],
            ),
            trial(
                2,
                "random",
                TrialState::Complete,
                &[("acc", 0.4), ("lat", 3.0)],
            ),
            trial(
                3,
                "random",
                TrialState::Complete,
                &[("acc", 0.3), ("lat", 1.0)],
            ),
            trial(
                4,
                "random",
                TrialState::Complete,
                &[("acc", 0.9), ("lat", 0.5)],
            ),
        ];
        let ids: Vec<u64> = improvements(&o, &trials).iter().map(|i| i.id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        let chart = pareto_chart(&o, &trials, "p").unwrap();
        assert_eq!(chart.points[1].points, vec![(0.9, 0.5)]);
        assert!(pareto_chart(&o[..1], &trials, "p").is_none());
    }
}
