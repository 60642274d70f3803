//! Benchmark results: from the stored trials of many runs (methods x spaces x datasets x
//! budgets x seeds) to `trials.csv`, `runs.csv`, `summary.csv`, `summary.md`, anytime plots
//! and `report.md` next to published reference numbers.
//!
//! Every number follows one protocol: in each run the incumbent after a trial is the trial
//! with the best *search signal* so far (`select`); its `score` is what is reported. Regret is
//! the distance of that score to the benchmark optimum.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nas_plugin::{Direction, Objective, TrialState};

use super::curves::{self, Step, Trajectory};
use super::plot::{Chart, Line};
use super::stats;
use super::table::{Csv, csv_number, human_number, markdown_table};

/// A method as the report names it.
#[derive(Clone, Debug, Default)]
pub struct BenchMethod {
    pub name: String,
    /// The name of the reference (paper) row it is compared with, if any.
    pub reference: Option<String>,
    /// Its strategies and mix, for the protocol section.
    pub description: String,
}

#[derive(Clone, Debug, Default)]
pub struct BenchDataset {
    pub name: String,
    /// How the report titles it (e.g. `CIFAR-10`).
    pub label: String,
    /// Best score reachable on the benchmark (for regret); none: no regret measures.
    pub optimum: Option<f64>,
    /// Published scores by reference method name.
    pub reference: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default)]
pub struct BenchBudget {
    pub name: String,
    pub trials: Option<u64>,
    /// Proposals a run may ask for, repeats included (the study stops there).
    pub proposals: Option<u64>,
    /// Runs are cut where their cumulative cost passes this.
    pub simulated_seconds: Option<f64>,
    /// Each run stops once its objective reaches the dataset's optimum (`[budget] target`).
    pub stop_at_optimum: bool,
}

/// One stored trial, with its metrics aligned to the run's `metric_names`.
#[derive(Clone, Debug)]
pub struct BenchTrial {
    pub id: u64,
    pub state: TrialState,
    pub strategy: String,
    pub arch: String,
    pub fidelity: Option<f64>,
    pub metrics: Vec<Option<f64>>,
}

impl BenchTrial {
    /// It reached the evaluators (what trial budgets count).
    pub fn evaluated(&self) -> bool {
        matches!(
            self.state,
            TrialState::Complete | TrialState::Failed | TrialState::Pruned
        )
    }
}

/// One study of the benchmark.
#[derive(Clone, Debug, Default)]
pub struct BenchRun {
    pub method: usize,
    pub space: usize,
    pub dataset: usize,
    pub budget: usize,
    pub seed: u64,
    pub dir: PathBuf,
    pub wall_seconds: f64,
    pub stop_reason: String,
    pub metric_names: Vec<String>,
    pub trials: Vec<BenchTrial>,
}

impl BenchRun {
    fn metric(&self, t: &BenchTrial, name: &str) -> Option<f64> {
        let i = self.metric_names.iter().position(|m| m == name)?;
        t.metrics[i].filter(|v| v.is_finite())
    }
}

/// Everything the benchmark report is made from.
#[derive(Clone, Debug)]
pub struct Bench {
    pub name: String,
    /// Markdown from the suite, placed at the top of the report.
    pub notes: Option<String>,
    /// Where the reference numbers come from.
    pub reference_source: Option<String>,
    pub methods: Vec<BenchMethod>,
    pub spaces: Vec<String>,
    pub datasets: Vec<BenchDataset>,
    pub budgets: Vec<BenchBudget>,
    /// The search signal that picks the incumbent.
    pub select: Objective,
    /// What is reported of the incumbent.
    pub score: Objective,
    /// Per-trial cost metric (e.g. `simulated_seconds`) for the time axis.
    pub time: Option<String>,
    /// Regret at or below which a run has "reached" the optimum.
    pub threshold: f64,
    /// Show scores and regrets in percent (scores are fractions).
    pub percent: bool,
    pub seeds: usize,
    pub jobs: usize,
    pub wall_seconds: f64,
    /// Methods left out, with why.
    pub skipped: Vec<(String, String)>,
    pub runs: Vec<BenchRun>,
}

/// The measures of one run.
#[derive(Clone, Debug, Default)]
pub struct RunMeasures {
    pub trajectory: Trajectory,
    pub final_score: Option<f64>,
    pub regret: Option<f64>,
    pub auc_trials: Option<f64>,
    pub auc_time: Option<f64>,
    pub queries: Option<usize>,
}

/// Mean and spread of one measure over seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub ci95: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            n: values.len(),
            mean: stats::mean(values)?,
            std: stats::std_dev(values)?,
            ci95: stats::ci95_half_width(values)?,
        })
    }
}

/// One row of the summary: a method on a (space, dataset, budget).
#[derive(Clone, Debug, Default)]
pub struct GroupSummary {
    pub method: usize,
    pub space: usize,
    pub dataset: usize,
    pub budget: usize,
    pub runs: usize,
    pub score: Option<Spread>,
    pub regret: Option<Spread>,
    pub auc_trials: Option<Spread>,
    pub auc_time: Option<Spread>,
    /// Median over seeds of the queries to the threshold, seeds that never reach it counted
    /// as infinite (`None` when half or more never do).
    pub queries_median: Option<f64>,
    /// 90th percentile of the same (`None` when more than a tenth never get there).
    pub queries_p90: Option<f64>,
    /// Seeds reaching the threshold / seeds.
    pub reached: (usize, usize),
    pub trials: Option<Spread>,
    pub time: Option<Spread>,
    pub wall: Option<Spread>,
}

impl Bench {
    fn direction_of_score(&self) -> Direction {
        self.score.direction
    }

    /// The evaluated trials of a run as steps of the anytime curves.
    pub fn steps(&self, run: &BenchRun) -> Vec<Step> {
        run.trials
            .iter()
            .filter(|t| t.evaluated())
            .map(|t| {
                let complete = t.state == TrialState::Complete;
                Step {
                    select: complete
                        .then(|| run.metric(t, &self.select.metric))
                        .flatten(),
                    score: complete
                        .then(|| run.metric(t, &self.score.metric))
                        .flatten(),
                    cost: self
                        .time
                        .as_ref()
                        .and_then(|m| run.metric(t, m))
                        .unwrap_or(0.0),
                }
            })
            .collect()
    }

    /// The run's trajectory cut to its budget, and its measures.
    pub fn measures(&self, run: &BenchRun) -> RunMeasures {
        let budget = &self.budgets[run.budget];
        let mut traj = curves::trajectory(&self.steps(run), self.select.direction);
        if let Some(n) = budget.trials {
            traj = traj.cut_trials(n as usize);
        }
        if let Some(s) = budget.simulated_seconds {
            traj = traj.cut_time(s);
        }
        let final_score = traj.final_score();
        let mut m = RunMeasures {
            final_score,
            ..RunMeasures::default()
        };
        if let Some(opt) = self.datasets[run.dataset].optimum {
            let d = self.direction_of_score();
            let regrets = traj.regrets(opt, d);
            m.regret = final_score.map(|s| curves::regret(s, opt, d));
            let horizon = budget.trials.map_or(traj.len(), |n| n as usize);
            m.auc_trials = curves::auc_trials(&regrets, horizon);
            m.auc_time = budget
                .simulated_seconds
                .and_then(|h| curves::auc_time(&traj.time, &regrets, h));
            m.queries = curves::queries_to(&regrets, self.threshold);
        }
        m.trajectory = traj;
        m
    }

    /// Summary rows in report order: spaces, datasets, budgets, then methods.
    pub fn summaries(&self, measures: &[RunMeasures]) -> Vec<GroupSummary> {
        let mut out = Vec::new();
        for (s, d, b) in self.groups() {
            for m in 0..self.methods.len() {
                let runs: Vec<(&BenchRun, &RunMeasures)> = self
                    .runs
                    .iter()
                    .zip(measures)
                    .filter(|(r, _)| {
                        r.method == m && r.space == s && r.dataset == d && r.budget == b
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let collect = |f: &dyn Fn(&RunMeasures) -> Option<f64>| -> Vec<f64> {
                    runs.iter().filter_map(|(_, x)| f(x)).collect()
                };
                let mut queries: Vec<f64> = runs
                    .iter()
                    .map(|(_, x)| x.queries.map_or(f64::INFINITY, |q| q as f64))
                    .collect();
                queries.sort_by(f64::total_cmp);
                let reached = queries.iter().filter(|q| q.is_finite()).count();
                let has_optimum = self.datasets[d].optimum.is_some();
                out.push(GroupSummary {
                    method: m,
                    space: s,
                    dataset: d,
                    budget: b,
                    runs: runs.len(),
                    score: Spread::of(&collect(&|x| x.final_score)),
                    regret: Spread::of(&collect(&|x| x.regret)),
                    auc_trials: Spread::of(&collect(&|x| x.auc_trials)),
                    auc_time: Spread::of(&collect(&|x| x.auc_time)),
                    queries_median: stats::median(&queries).filter(|q| q.is_finite()),
                    queries_p90: stats::quantile(&queries, 0.9).filter(|q| q.is_finite()),
                    reached: if has_optimum {
                        (reached, runs.len())
                    } else {
                        (0, 0)
                    },
                    trials: Spread::of(&collect(&|x| Some(x.trajectory.len() as f64))),
                    time: self
                        .time
                        .as_ref()
                        .and_then(|_| Spread::of(&collect(&|x| Some(x.trajectory.total_time())))),
                    wall: Spread::of(&runs.iter().map(|(r, _)| r.wall_seconds).collect::<Vec<_>>()),
                });
            }
        }
        out
    }

    /// `(space, dataset, budget)` combinations that have runs, in suite order.
    pub fn groups(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        for s in 0..self.spaces.len() {
            for d in 0..self.datasets.len() {
                for b in 0..self.budgets.len() {
                    if self
                        .runs
                        .iter()
                        .any(|r| r.space == s && r.dataset == d && r.budget == b)
                    {
                        out.push((s, d, b));
                    }
                }
            }
        }
        out
    }

    fn group_title(&self, s: usize, d: usize, b: usize) -> String {
        let mut parts = vec![self.datasets[d].label.clone()];
        if self.spaces.len() > 1 {
            parts.push(format!("space {}", self.spaces[s]));
        }
        if self.budgets.len() > 1 {
            parts.push(self.budgets[b].name.clone());
        }
        parts.join(", ")
    }

    fn group_slug(&self, s: usize, d: usize, b: usize) -> String {
        let mut parts = Vec::new();
        if self.spaces.len() > 1 {
            parts.push(slug(&self.spaces[s]));
        }
        parts.push(slug(&self.datasets[d].name));
        if self.budgets.len() > 1 {
            parts.push(slug(&self.budgets[b].name));
        }
        parts.join("_")
    }

    /// A score as shown to people (percent when scores are fractions).
    fn show_score(&self, v: f64) -> String {
        if self.percent {
            format!("{:.2}", v * 100.0)
        } else {
            human_number(v)
        }
    }

    fn show_spread(&self, s: Option<Spread>) -> String {
        match s {
            Some(s) if self.percent => format!("{:.2} ± {:.2}", s.mean * 100.0, s.std * 100.0),
            Some(s) => format!("{} ± {}", human_number(s.mean), human_number(s.std)),
            None => "-".into(),
        }
    }

    fn unit(&self) -> &'static str {
        if self.percent { " (%)" } else { "" }
    }

    fn regret_unit(&self) -> &'static str {
        if self.percent { " (pp)" } else { "" }
    }

    fn threshold_text(&self) -> String {
        if self.percent {
            format!("{:.2} pp", self.threshold * 100.0)
        } else {
            human_number(self.threshold)
        }
    }
}

/// A file-name-safe form of a name.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('_').to_string();
    let mut out = String::new();
    for c in s.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.is_empty() { "x".into() } else { out }
}

/// `trials.csv`: one row per stored trial of every run.
pub fn trials_csv(bench: &Bench, measures: &[RunMeasures]) -> String {
    let mut metrics: Vec<String> = bench
        .runs
        .iter()
        .flat_map(|r| r.metric_names.iter().cloned())
        .collect();
    metrics.sort();
    metrics.dedup();
    let time_col = bench
        .time
        .as_ref()
        .map_or("cumulative_cost".to_string(), |t| format!("cumulative_{t}"));
    let mut header: Vec<String> = [
        "method", "space", "dataset", "budget", "seed", "trial", "id", "state", "strategy", "arch",
        "fidelity",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(metrics.iter().cloned());
    header.push(time_col);
    header.push(format!("incumbent_{}", bench.score.metric));
    header.push("within_budget".into());
    let mut csv = Csv::new(&header);
    for (run, m) in bench.runs.iter().zip(measures) {
        let full = curves::trajectory(&bench.steps(run), bench.select.direction);
        let mut k = 0usize;
        for t in &run.trials {
            let index = t.evaluated().then(|| {
                k += 1;
                k
            });
            let mut row = vec![
                bench.methods[run.method].name.clone(),
                bench.spaces[run.space].clone(),
                bench.datasets[run.dataset].name.clone(),
                bench.budgets[run.budget].name.clone(),
                run.seed.to_string(),
                index.map_or(String::new(), |i| i.to_string()),
                t.id.to_string(),
                t.state.as_str().to_string(),
                t.strategy.clone(),
                t.arch.clone(),
                csv_number(t.fidelity),
            ];
            row.extend(metrics.iter().map(|name| csv_number(run.metric(t, name))));
            match index {
                Some(i) => {
                    row.push(csv_number(Some(full.time[i - 1])));
                    row.push(csv_number(full.score[i - 1]));
                    row.push((i <= m.trajectory.len()).to_string());
                }
                None => row.extend([String::new(), String::new(), String::new()]),
            }
            csv.row(&row);
        }
    }
    csv.into_string()
}

/// `runs.csv`: the measures of every run.
pub fn runs_csv(bench: &Bench, measures: &[RunMeasures]) -> String {
    let mut csv = Csv::new(&[
        "method",
        "space",
        "dataset",
        "budget",
        "seed",
        "trials",
        "final_score",
        "regret",
        "auc_trials",
        "auc_time",
        "queries",
        "cost",
        "wall_seconds",
        "stop_reason",
        "dir",
    ]);
    for (r, m) in bench.runs.iter().zip(measures) {
        csv.row(&[
            bench.methods[r.method].name.clone(),
            bench.spaces[r.space].clone(),
            bench.datasets[r.dataset].name.clone(),
            bench.budgets[r.budget].name.clone(),
            r.seed.to_string(),
            m.trajectory.len().to_string(),
            csv_number(m.final_score),
            csv_number(m.regret),
            csv_number(m.auc_trials),
            csv_number(m.auc_time),
            m.queries.map_or(String::new(), |q| q.to_string()),
            csv_number(Some(m.trajectory.total_time())),
            format!("{:.3}", r.wall_seconds),
            r.stop_reason.clone(),
            r.dir.display().to_string(),
        ]);
    }
    csv.into_string()
}

/// `summary.csv`: one row per method x space x dataset x budget (raw units: fractions).
pub fn summary_csv(bench: &Bench, rows: &[GroupSummary]) -> String {
    let mut csv = Csv::new(&[
        "method",
        "space",
        "dataset",
        "budget",
        "seeds",
        "score_metric",
        "score_mean",
        "score_std",
        "score_ci95",
        "optimum",
        "regret_mean",
        "regret_std",
        "auc_trials_mean",
        "auc_trials_std",
        "auc_time_mean",
        "auc_time_std",
        "threshold",
        "queries_median",
        "queries_p90",
        "reached_fraction",
        "trials_mean",
        "cost_mean",
        "wall_seconds_mean",
        "reference",
    ]);
    let mean = |s: Option<Spread>| csv_number(s.map(|s| s.mean));
    let std = |s: Option<Spread>| csv_number(s.map(|s| s.std));
    for g in rows {
        let method = &bench.methods[g.method];
        let dataset = &bench.datasets[g.dataset];
        let reference = method
            .reference
            .as_ref()
            .and_then(|r| dataset.reference.get(r))
            .copied();
        csv.row(&[
            method.name.clone(),
            bench.spaces[g.space].clone(),
            dataset.name.clone(),
            bench.budgets[g.budget].name.clone(),
            g.runs.to_string(),
            bench.score.metric.clone(),
            mean(g.score),
            std(g.score),
            csv_number(g.score.map(|s| s.ci95)),
            csv_number(dataset.optimum),
            mean(g.regret),
            std(g.regret),
            mean(g.auc_trials),
            std(g.auc_trials),
            mean(g.auc_time),
            std(g.auc_time),
            csv_number(dataset.optimum.map(|_| bench.threshold)),
            csv_number(g.queries_median),
            csv_number(g.queries_p90),
            if g.reached.1 > 0 {
                csv_number(Some(g.reached.0 as f64 / g.reached.1 as f64))
            } else {
                String::new()
            },
            mean(g.trials),
            mean(g.time),
            mean(g.wall),
            csv_number(reference),
        ]);
    }
    csv.into_string()
}

/// The markdown table of one group.
fn group_table(bench: &Bench, rows: &[&GroupSummary]) -> String {
    let with_time_auc = rows.iter().any(|g| g.auc_time.is_some());
    let with_regret = rows.iter().any(|g| g.regret.is_some());
    let mut header = vec![
        "method".to_string(),
        "seeds".into(),
        format!("{}{}", bench.score.metric, bench.unit()),
    ];
    if with_regret {
        header.push(format!("regret{}", bench.regret_unit()));
        header.push(format!("AUC regret / trials{}", bench.regret_unit()));
        if with_time_auc {
            header.push(format!("AUC regret / time{}", bench.regret_unit()));
        }
        header.push(format!("queries to ≤ {}", bench.threshold_text()));
        header.push("p90".into());
        header.push("seeds reaching it".into());
    }
    header.push("trials".into());
    if bench.time.is_some() {
        header.push(format!(
            "{} (mean)",
            bench.time.as_deref().unwrap_or("cost")
        ));
    }
    header.push("wall s / run".into());
    let pp = |s: Option<Spread>| match s {
        Some(s) if bench.percent => format!("{:.2} ± {:.2}", s.mean * 100.0, s.std * 100.0),
        other => bench.show_spread(other),
    };
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|g| {
            let mut row = vec![
                bench.methods[g.method].name.clone(),
                g.runs.to_string(),
                bench.show_spread(g.score),
            ];
            if with_regret {
                row.push(pp(g.regret));
                row.push(pp(g.auc_trials));
                if with_time_auc {
                    row.push(pp(g.auc_time));
                }
                row.push(match g.queries_median {
                    Some(q) => format!("{q:.0}"),
                    None => "not reached".into(),
                });
                row.push(match g.queries_p90 {
                    Some(q) => format!("{q:.0}"),
                    None => "not reached".into(),
                });
                row.push(format!("{}/{}", g.reached.0, g.reached.1));
            }
            row.push(g.trials.map_or("-".into(), |s| format!("{:.0}", s.mean)));
            if bench.time.is_some() {
                row.push(g.time.map_or("-".into(), |s| format!("{:.0}", s.mean)));
            }
            row.push(g.wall.map_or("-".into(), |s| format!("{:.2}", s.mean)));
            row
        })
        .collect();
    markdown_table(&header, &body)
}

/// `summary.md`: the per-group tables.
pub fn summary_markdown(bench: &Bench, rows: &[GroupSummary]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark `{}`: summary\n", bench.name);
    let _ = writeln!(
        md,
        "Mean ± standard deviation over seeds of the `{}` of the trial with the best `{}` ({}) within the budget.\n",
        bench.score.metric,
        bench.select.metric,
        direction_word(bench.select.direction),
    );
    for (s, d, b) in bench.groups() {
        let _ = writeln!(md, "## {}\n", bench.group_title(s, d, b));
        let group: Vec<&GroupSummary> = rows
            .iter()
            .filter(|g| g.space == s && g.dataset == d && g.budget == b)
            .collect();
        md.push_str(&group_table(bench, &group));
        md.push('\n');
    }
    md
}

fn direction_word(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "lowest",
        Direction::Maximize => "highest",
    }
}

/// The two anytime charts of a group: over trials and over cumulative cost.
pub fn group_charts(
    bench: &Bench,
    measures: &[RunMeasures],
    (s, d, b): (usize, usize, usize),
) -> (Option<Chart>, Option<Chart>) {
    let scale = if bench.percent { 100.0 } else { 1.0 };
    let dataset = &bench.datasets[d];
    let budget = &bench.budgets[b];
    let in_group = |r: &BenchRun| r.space == s && r.dataset == d && r.budget == b;
    let trajectories = |m: usize| -> Vec<&Trajectory> {
        bench
            .runs
            .iter()
            .zip(measures)
            .filter(|(r, _)| in_group(r) && r.method == m)
            .map(|(_, x)| &x.trajectory)
            .collect()
    };
    let methods: Vec<usize> = (0..bench.methods.len())
        .filter(|&m| !trajectories(m).is_empty())
        .collect();
    let hlines: Vec<(String, f64)> = dataset
        .optimum
        .map(|o| vec![(format!("optimum {}", bench.show_score(o)), o * scale)])
        .unwrap_or_default();
    let y_label = format!("{} of the incumbent{}", bench.score.metric, bench.unit());
    let band_of = |values: &[f64]| -> Option<(f64, f64, f64)> {
        let m = stats::mean(values)?;
        let h = stats::ci95_half_width(values)?;
        Some((m * scale, (m - h) * scale, (m + h) * scale))
    };
    // Over trials: from a twentieth of the budget on, so the first random draws do not
    // squash the interesting part.
    let longest = methods
        .iter()
        .flat_map(|&m| trajectories(m))
        .map(|t| t.len())
        .max()
        .unwrap_or(0);
    let horizon = budget.trials.map_or(longest, |n| n as usize).max(1);
    let start = (horizon / 20).max(1);
    let mut by_trials = Vec::new();
    for (i, &m) in methods.iter().enumerate() {
        let trajs = trajectories(m);
        let mut line = Line {
            name: bench.methods[m].name.clone(),
            color: Some(i),
            ..Line::default()
        };
        for x in start..=horizon {
            let values: Vec<f64> = trajs.iter().filter_map(|t| t.after_trials(x)).collect();
            if let Some((mean, lo, hi)) = band_of(&values) {
                line.points.push((x as f64, mean));
                line.band.push((x as f64, lo, hi));
            }
        }
        by_trials.push(line);
    }
    let trials_chart = (!by_trials.is_empty()).then(|| Chart {
        title: format!(
            "{}: best so far over trials (mean, 95 % CI over seeds)",
            bench.group_title(s, d, b)
        ),
        x_label: "trials".into(),
        y_label: y_label.clone(),
        lines: by_trials,
        points: Vec::new(),
        hlines: hlines.clone(),
        legend_top: bench.score.direction == Direction::Minimize,
    });
    // Over cost: up to the simulated budget, or to where the shortest run ends (so every run
    // is defined over the whole axis); from where every run has finished `start` trials.
    let time_chart = bench.time.as_ref().and_then(|time| {
        let all: Vec<&Trajectory> = methods.iter().flat_map(|&m| trajectories(m)).collect();
        let end = budget.simulated_seconds.unwrap_or_else(|| {
            all.iter()
                .map(|t| t.total_time())
                .fold(f64::INFINITY, f64::min)
        });
        let begin = all
            .iter()
            .filter_map(|t| t.time.get(start - 1).or(t.time.last()).copied())
            .fold(0.0, f64::max);
        if !(end.is_finite() && end > begin) {
            return None;
        }
        const POINTS: usize = 200;
        let lines: Vec<Line> = methods
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let trajs = trajectories(m);
                let mut line = Line {
                    name: bench.methods[m].name.clone(),
                    color: Some(i),
                    ..Line::default()
                };
                for k in 0..=POINTS {
                    let x = begin + (end - begin) * k as f64 / POINTS as f64;
                    let values: Vec<f64> = trajs.iter().filter_map(|t| t.at_time(x)).collect();
                    if let Some((mean, lo, hi)) = band_of(&values) {
                        line.points.push((x, mean));
                        line.band.push((x, lo, hi));
                    }
                }
                line
            })
            .collect();
        Some(Chart {
            title: format!(
                "{}: best so far over {time} (mean, 95 % CI over seeds)",
                bench.group_title(s, d, b)
            ),
            x_label: format!("cumulative {time}"),
            y_label: y_label.clone(),
            lines,
            points: Vec::new(),
            hlines: hlines.clone(),
            legend_top: bench.score.direction == Direction::Minimize,
        })
    });
    (trials_chart, time_chart)
}

/// The comparison table with the reference numbers: one column pair per dataset.
fn reference_table(bench: &Bench, rows: &[GroupSummary], s: usize, b: usize) -> Option<String> {
    let datasets: Vec<usize> = (0..bench.datasets.len())
        .filter(|&d| {
            rows.iter()
                .any(|g| g.space == s && g.budget == b && g.dataset == d)
        })
        .collect();
    if datasets
        .iter()
        .all(|&d| bench.datasets[d].reference.is_empty())
    {
        return None;
    }
    let mut header = vec!["method".to_string()];
    for &d in &datasets {
        header.push(format!("{} ours", bench.datasets[d].label));
        header.push(format!("{} paper", bench.datasets[d].label));
    }
    let mut body = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for (m, method) in bench.methods.iter().enumerate() {
        if !rows
            .iter()
            .any(|g| g.method == m && g.space == s && g.budget == b)
        {
            continue;
        }
        let label = match &method.reference {
            Some(r) if r != &method.name => format!("{} (paper: {r})", method.name),
            _ => method.name.clone(),
        };
        let mut row = vec![label];
        for &d in &datasets {
            let ours = rows
                .iter()
                .find(|g| g.method == m && g.space == s && g.budget == b && g.dataset == d);
            row.push(ours.map_or("-".into(), |g| bench.show_spread(g.score)));
            let paper = method
                .reference
                .as_ref()
                .and_then(|r| bench.datasets[d].reference.get(r));
            row.push(paper.map_or("-".into(), |v| bench.show_score(*v)));
        }
        if let Some(r) = &method.reference {
            used.push(r);
        }
        body.push(row);
    }
    // Reference rows no method of ours stands for.
    let mut others: Vec<&String> = datasets
        .iter()
        .flat_map(|&d| bench.datasets[d].reference.keys())
        .filter(|k| !used.contains(&k.as_str()))
        .collect();
    others.sort();
    others.dedup();
    for name in others {
        let mut row = vec![format!("{name} (paper only)")];
        for &d in &datasets {
            row.push("-".into());
            row.push(
                bench.datasets[d]
                    .reference
                    .get(name)
                    .map_or("-".into(), |v| bench.show_score(*v)),
            );
        }
        body.push(row);
    }
    let mut row = vec!["optimum of the table".to_string()];
    for &d in &datasets {
        let o = bench.datasets[d]
            .optimum
            .map_or("-".into(), |v| bench.show_score(v));
        row.push(o.clone());
        row.push(o);
    }
    body.push(row);
    Some(markdown_table(&header, &body))
}

/// The chart files of each `(space, dataset, budget)` group: `(title, file name)`.
pub type Charts = BTreeMap<(usize, usize, usize), Vec<(String, String)>>;

/// `report.md`.
pub fn report_markdown(bench: &Bench, rows: &[GroupSummary], charts: &Charts) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark `{}`\n", bench.name);
    if let Some(notes) = &bench.notes {
        let _ = writeln!(md, "{}\n", notes.trim());
    }
    let _ = writeln!(md, "## Protocol\n");
    let _ = writeln!(
        md,
        "- {} run(s): {} method(s) x {} space(s) x {} dataset(s) x {} budget(s) x {} seed(s), {} at a time, in {:.1} s of wall time. Each run is a real study of the engine, stored under `runs/` (open one with `nas report`).",
        bench.runs.len(),
        bench
            .methods
            .iter()
            .enumerate()
            .filter(|(m, _)| bench.runs.iter().any(|r| r.method == *m))
            .count(),
        bench.spaces.len(),
        bench.datasets.len(),
        bench.budgets.len(),
        bench.seeds,
        bench.jobs,
        bench.wall_seconds,
    );
    let _ = writeln!(
        md,
        "- Incumbent: after each trial, the trial with the {} `{}` so far (the search signal). Reported: its `{}`{}. Means ± standard deviations are over seeds.",
        direction_word(bench.select.direction),
        bench.select.metric,
        bench.score.metric,
        if bench.percent { ", in percent" } else { "" },
    );
    if bench.select.metric == bench.score.metric {
        let _ = writeln!(
            md,
            "- Note: the incumbent is selected by the metric it is scored by. That is right for a deterministic objective (parameters, FLOPs, a measured latency); for an accuracy it means selecting on the test score, an oracle no real search has, and the numbers are optimistic."
        );
    }
    if bench.datasets.iter().any(|d| d.optimum.is_some()) {
        let _ = writeln!(
            md,
            "- Regret: the optimum of the table minus the incumbent's score{}. AUC: the area under the incumbent's regret curve divided by the budget, i.e. its mean regret over trials 1..B (trials before the first result count with the first incumbent's regret; a run that stops early keeps its last one){}. Queries: trials until the incumbent's regret is at most {}, median and 90th percentile over seeds (linear interpolation between ranks), with seeds that never get there within their budget counted as infinite (censored: they rank last, so the median is exact while fewer than half are censored, \"not reached\" otherwise; likewise the 90th percentile with a tenth).",
            if bench.percent {
                " in percentage points (pp)"
            } else {
                ""
            },
            if bench.budgets.iter().any(|b| b.simulated_seconds.is_some()) {
                "; the time AUC does the same over cumulative cost up to the simulated budget"
            } else {
                ""
            },
            bench.threshold_text(),
        );
    }
    for b in &bench.budgets {
        let mut parts = Vec::new();
        if let Some(t) = b.trials {
            parts.push(format!("{t} trials"));
        }
        if let Some(s) = b.simulated_seconds {
            parts.push(format!(
                "cut at {s} s of cumulative `{}`",
                bench.time.as_deref().unwrap_or("cost")
            ));
        }
        if b.stop_at_optimum {
            parts.push(
                "each run stops as soon as a trial reaches the dataset's optimum (`[budget] target`)"
                    .into(),
            );
        }
        let _ = writeln!(md, "- Budget `{}`: {}.", b.name, parts.join(", "));
    }
    let _ = writeln!(md, "- Methods:");
    for (m, method) in bench.methods.iter().enumerate() {
        if bench.runs.iter().any(|r| r.method == m) {
            let _ = writeln!(md, "  - `{}`: {}", method.name, method.description);
        }
    }
    for (name, why) in &bench.skipped {
        let _ = writeln!(md, "- Skipped `{name}`: {why}");
    }
    md.push('\n');

    for s in 0..bench.spaces.len() {
        for b in 0..bench.budgets.len() {
            if let Some(table) = reference_table(bench, rows, s, b) {
                let mut title = format!(
                    "## Comparison with {}",
                    bench
                        .reference_source
                        .as_deref()
                        .unwrap_or("published results")
                );
                if bench.spaces.len() > 1 || bench.budgets.len() > 1 {
                    let _ = write!(title, " ({}, {})", bench.spaces[s], bench.budgets[b].name);
                }
                let _ = writeln!(
                    md,
                    "{title}\n\n`{}` of the incumbent{}, mean ± std over seeds.\n",
                    bench.score.metric,
                    bench.unit()
                );
                md.push_str(&table);
                md.push('\n');
            }
        }
    }

    for (s, d, b) in bench.groups() {
        let _ = writeln!(md, "## {}\n", bench.group_title(s, d, b));
        let group: Vec<&GroupSummary> = rows
            .iter()
            .filter(|g| g.space == s && g.dataset == d && g.budget == b)
            .collect();
        md.push_str(&group_table(bench, &group));
        md.push('\n');
        for (title, file) in charts.get(&(s, d, b)).into_iter().flatten() {
            let _ = writeln!(md, "![{title}]({file})\n");
        }
    }
    let _ = writeln!(
        md,
        "## Files\n\n- `trials.csv`: every stored trial of every run, with the cumulative cost and the incumbent's score after it\n- `runs.csv`: the measures of each run\n- `summary.csv`, `summary.md`: per method x dataset (CSV in raw units, fractions)\n- `*.svg`: anytime curves per dataset\n- `runs/`: the studies"
    );
    md
}

/// Writes every output of a benchmark into `out`; returns the files written.
pub fn write_bench_report(out: &Path, bench: &Bench) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let measures: Vec<RunMeasures> = bench.runs.iter().map(|r| bench.measures(r)).collect();
    let rows = bench.summaries(&measures);
    let mut files = Vec::new();
    let mut write = |name: &str, text: &str| -> anyhow::Result<()> {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    write("trials.csv", &trials_csv(bench, &measures))?;
    write("runs.csv", &runs_csv(bench, &measures))?;
    write("summary.csv", &summary_csv(bench, &rows))?;
    write("summary.md", &summary_markdown(bench, &rows))?;
    let mut charts = Charts::new();
    for g in bench.groups() {
        let slug = bench.group_slug(g.0, g.1, g.2);
        let (by_trials, by_time) = group_charts(bench, &measures, g);
        for (chart, kind) in [(by_trials, "trials"), (by_time, "time")] {
            if let Some(chart) = chart {
                let file = format!("best_{slug}_{kind}.svg");
                write(&file, &chart.to_svg((900, 560))?)?;
                charts
                    .entry(g)
                    .or_default()
                    .push((chart.title.clone(), file));
            }
        }
    }
    write("report.md", &report_markdown(bench, &rows, &charts))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: u64, val: f64, test: f64, cost: f64) -> BenchTrial {
        BenchTrial {
            id,
            state: TrialState::Complete,
            strategy: "random".into(),
            arch: format!("a{id}"),
            fidelity: None,
            metrics: vec![Some(cost), Some(test), Some(val)],
        }
    }

    fn run(method: usize, seed: u64, trials: Vec<BenchTrial>) -> BenchRun {
        BenchRun {
            method,
            seed,
            dir: PathBuf::from(format!("runs/m{method}-s{seed}")),
            wall_seconds: 0.5,
            stop_reason: "trial budget of 3 reached".into(),
            metric_names: vec![
                "simulated_seconds".into(),
                "test_accuracy".into(),
                "val_accuracy".into(),
            ],
            trials,
            ..BenchRun::default()
        }
    }

    fn bench() -> Bench {
        let maximize = |m: &str| Objective {
            metric: m.into(),
            direction: Direction::Maximize,
        };
        Bench {
            name: "unit".into(),
            notes: Some("Notes.".into()),
            reference_source: Some("the paper".into()),
            methods: vec![
                BenchMethod {
                    name: "REA".into(),
                    reference: Some("REA".into()),
                    description: "evolution".into(),
                },
                BenchMethod {
                    name: "random".into(),
                    reference: None,
                    description: "random".into(),
                },
            ],
            spaces: vec!["cell".into()],
            datasets: vec![BenchDataset {
                name: "cifar10".into(),
                label: "CIFAR-10".into(),
                optimum: Some(0.95),
                reference: BTreeMap::from([("REA".into(), 0.9392), ("BOHB".into(), 0.9361)]),
            }],
            budgets: vec![BenchBudget {
                name: "3 trials".into(),
                trials: Some(3),
                proposals: None,
                simulated_seconds: None,
                stop_at_optimum: false,
            }],
            select: maximize("val_accuracy"),
            score: maximize("test_accuracy"),
            time: Some("simulated_seconds".into()),
            threshold: 0.003,
            percent: true,
            seeds: 2,
            jobs: 1,
            wall_seconds: 1.0,
            skipped: vec![("TPE".into(), "plugin missing".into())],
            runs: vec![
                // Seed 0 reaches the optimum at its third trial.
                run(
                    0,
                    0,
                    vec![
                        trial(1, 0.80, 0.90, 10.0),
                        trial(2, 0.85, 0.93, 10.0),
                        trial(3, 0.90, 0.95, 10.0),
                    ],
                ),
                // Seed 1: a high test score behind a poor search signal is never picked.
                run(
                    0,
                    1,
                    vec![
                        trial(1, 0.80, 0.92, 10.0),
                        trial(2, 0.70, 0.95, 10.0),
                        trial(3, 0.81, 0.91, 10.0),
                    ],
                ),
                run(1, 0, vec![trial(1, 0.8, 0.90, 10.0)]),
                run(1, 1, vec![trial(1, 0.8, 0.94, 10.0)]),
            ],
        }
    }

    #[test]
    fn measures_follow_the_protocol() {
        let b = bench();
        let m: Vec<RunMeasures> = b.runs.iter().map(|r| b.measures(r)).collect();
        assert_eq!(m[0].final_score, Some(0.95));
        assert_eq!(m[1].final_score, Some(0.91));
        assert!((m[1].regret.unwrap() - 0.04).abs() < 1e-12);
        assert_eq!(m[0].queries, Some(3));
        assert_eq!(m[1].queries, None);
        // Seed 0: regrets 0.05, 0.02, 0 over a budget of 3.
        assert!((m[0].auc_trials.unwrap() - 0.07 / 3.0).abs() < 1e-12);
        // A one-trial run keeps its regret for the whole budget.
        assert!((m[2].auc_trials.unwrap() - 0.05).abs() < 1e-12);
        let rows = b.summaries(&m);
        assert_eq!(rows.len(), 2);
        let rea = &rows[0];
        assert_eq!(rea.runs, 2);
        assert!((rea.score.unwrap().mean - 0.93).abs() < 1e-12);
        assert_eq!(rea.reached, (1, 2));
        // Half the seeds never reach it: the median is infinite.
        assert_eq!(rea.queries_median, None);
        assert_eq!(rea.queries_p90, None);
        assert_eq!(rows[1].reached, (0, 2));
    }

    #[test]
    fn a_simulated_budget_cuts_runs() {
        let mut b = bench();
        b.budgets[0].simulated_seconds = Some(25.0);
        let m = b.measures(&b.runs[0]);
        assert_eq!(m.trajectory.len(), 2);
        assert_eq!(m.final_score, Some(0.93));
        // Regret 0.05 on [0, 20), 0.02 on [20, 25].
        let expected = (0.05 * 20.0 + 0.02 * 5.0) / 25.0;
        assert!((m.auc_time.unwrap() - expected).abs() < 1e-12);
    }

    #[test]
    fn csv_and_markdown_outputs() {
        let b = bench();
        let m: Vec<RunMeasures> = b.runs.iter().map(|r| b.measures(r)).collect();
        let rows = b.summaries(&m);
        let summary = summary_csv(&b, &rows);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("method,space,dataset,budget,seeds,score_metric,score_mean"));
        assert!(
            lines[1].starts_with("REA,cell,cifar10,3 trials,2,test_accuracy,0.9299999"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(",0.9392"), "{}", lines[1]);
        let trials = trials_csv(&b, &m);
        assert_eq!(trials.lines().count(), 1 + 3 + 3 + 1 + 1);
        let header = trials.lines().next().unwrap();
        assert!(header.contains("cumulative_simulated_seconds,incumbent_test_accuracy"));
        assert!(
            trials
                .lines()
                .nth(3)
                .unwrap()
                .starts_with("REA,cell,cifar10,3 trials,0,3,3,complete"),
            "{trials}"
        );
        let md = summary_markdown(&b, &rows);
        assert!(md.contains("| REA | 2 | 93.00 ± 2.83 |"), "{md}");
        assert!(md.contains("| random | 2 | 92.00 ± 2.83 |"), "{md}");
        let report = report_markdown(&b, &rows, &BTreeMap::new());
        assert!(
            report.contains("| REA | 93.00 ± 2.83 | 93.92 |"),
            "{report}"
        );
        assert!(
            report.contains("| BOHB (paper only) | - | 93.61 |"),
            "{report}"
        );
        assert!(
            report.contains("| optimum of the table | 95.00 | 95.00 |"),
            "{report}"
        );
        assert!(report.contains("Skipped `TPE`: plugin missing"));
    }

    #[test]
    fn writes_every_file() {
        let b = bench();
        let dir = tempfile::tempdir().unwrap();
        let files = write_bench_report(dir.path(), &b).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        for n in [
            "trials.csv",
            "runs.csv",
            "summary.csv",
            "summary.md",
            "best_cifar10_trials.svg",
            "report.md",
        ] {
            assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
        }
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(slug("bandit(random,evolution)"), "bandit_random_evolution");
        assert_eq!(slug("ImageNet16-120"), "imagenet16-120");
        assert_eq!(slug("200 trials"), "200_trials");
    }
}
