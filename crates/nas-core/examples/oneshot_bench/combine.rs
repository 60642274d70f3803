//! `--combine`: one table row per group of earlier runs, read back from their `runs.csv`, so a
//! comparison built from several invocations (other flags, more seeds) is computed, not
//! copied by hand.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::report::every_edge_is;
use crate::stats::{mean_std, min};

/// The columns a row needs from one run of `runs.csv`.
struct PastRun {
    method: String,
    seed: u64,
    arch: String,
    percentile: f64,
    mean_percentile: f64,
    /// Its mean test percentile in the repeats alone (none without repeats).
    alone: Option<f64>,
    /// Search seconds over one training's (none in files written before the column).
    cost: Option<f64>,
    random_search: [Option<f64>; 3],
}

fn read_runs(dir: &Path) -> Result<Vec<PastRun>> {
    let path = dir.join("runs.csv");
    let mut reader = csv::Reader::from_path(&path).map_err(|e| {
        format!(
            "{}: {e}; pass output folders of bench-oneshot",
            path.display()
        )
    })?;
    let columns: HashMap<String, usize> = reader
        .headers()?
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_string(), i))
        .collect();
    let mut runs = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record?;
        let at = |name: &str| columns.get(name).and_then(|&i| record.get(i)).unwrap_or("");
        let not_a_number = |name: &str, v: &str| {
            format!(
                "{}, run {}: `{name}` is `{v}`, not a number",
                path.display(),
                line + 1
            )
        };
        let number = |name: &str| -> Result<Option<f64>> {
            match at(name) {
                "" => Ok(None),
                v => Ok(Some(v.parse().map_err(|_| not_a_number(name, v))?)),
            }
        };
        let required = |name: &str| -> Result<f64> {
            number(name)?
                .ok_or_else(|| format!("{}, run {}: no `{name}`", path.display(), line + 1).into())
        };
        let alone: Vec<f64> = at("repeat_percentiles")
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<f64>()
                    .map_err(|_| not_a_number("repeat_percentiles", p))
            })
            .collect::<std::result::Result<_, _>>()?;
        runs.push(PastRun {
            method: at("method").to_string(),
            seed: at("seed")
                .parse()
                .map_err(|_| not_a_number("seed", at("seed")))?,
            arch: at("arch").to_string(),
            percentile: required("percentile")?,
            mean_percentile: required("mean_percentile")?,
            alone: (!alone.is_empty()).then(|| alone.iter().sum::<f64>() / alone.len() as f64),
            cost: match (number("search_seconds")?, number("one_training_seconds")?) {
                (Some(s), Some(t)) if t > 0.0 => Some(s / t),
                _ => None,
            },
            random_search: [
                number("random_search_percentile")?,
                number("random_search_mean_percentile")?,
                number("random_search_repeat_percentile")?,
            ],
        });
    }
    Ok(runs)
}

/// Mean of the values present, to one decimal; empty when none is.
fn mean_cell(values: impl Iterator<Item = Option<f64>>) -> String {
    let v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        String::new()
    } else {
        format!("{:.1}", mean_std(&v).0)
    }
}

/// One markdown row for the runs of `dirs`.
fn row(dirs: &[PathBuf]) -> Result<String> {
    let mut runs = Vec::new();
    for dir in dirs {
        runs.extend(read_runs(dir)?);
    }
    if runs.is_empty() {
        return Err(format!("{dirs:?} hold no runs").into());
    }
    let label = dirs
        .iter()
        .map(|d| d.file_name().unwrap_or(d.as_os_str()).to_string_lossy())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut methods: Vec<&str> = Vec::new();
    for r in &runs {
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
    }
    let seeds: Vec<String> = runs.iter().map(|r| r.seed.to_string()).collect();
    let first: Vec<f64> = runs.iter().map(|r| r.percentile).collect();
    let mean: Vec<f64> = runs.iter().map(|r| r.mean_percentile).collect();
    let (m, sd) = mean_std(&mean);
    let se = sd / (mean.len() as f64).sqrt();
    let costs: Vec<f64> = runs.iter().filter_map(|r| r.cost).collect();
    let cost = if costs.is_empty() {
        String::new()
    } else {
        format!(
            "{:.1}-{:.1}x",
            min(&costs),
            costs.iter().copied().fold(0.0, f64::max)
        )
    };
    let random: Vec<String> = (0..3)
        .map(|i| mean_cell(runs.iter().map(|r| r.random_search[i])))
        .filter(|c| !c.is_empty())
        .collect();
    let count = |op: &str| runs.iter().filter(|r| every_edge_is(&r.arch, op)).count();
    Ok(format!(
        "| {label} | {} | {} | {:.1} ({:.1}) | **{m:.1} ± {se:.1}** ({:.1}) | {} / {} | {} | {} / {} | {cost} | {} |",
        methods.join(", "),
        seeds.join(", "),
        mean_std(&first).0,
        min(&first),
        min(&mean),
        mean.iter().filter(|&&p| p >= 90.0).count(),
        mean.iter().filter(|&&p| p >= 98.0).count(),
        mean_cell(runs.iter().map(|r| r.alone)),
        count("skip_connect"),
        count("avg_pool_3x3"),
        random.join(", "),
    ))
}

/// Writes `<out>/combined.md`: a row per group of output folders.
pub fn write(groups: &[Vec<PathBuf>], out: &Path) -> Result<()> {
    let mut md = String::from(
        "| runs | method | seeds | first training: percentile mean (worst) | mean of the trainings: percentile mean ± SE (worst) | seeds in the top 10 % / top 2 % by the mean | repeats alone | all-skip / all-pool cells | cost, x one training | random search given that time: first, mean (, repeats alone) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for group in groups {
        writeln!(md, "{}", row(group)?)?;
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("combined.md"), &md)?;
    print!("{md}");
    Ok(())
}
