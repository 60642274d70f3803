//! The results: `<out>/runs.csv`, `<out>/proxies.csv` and `<out>/summary.md`.

use std::fmt::Write as _;

use nas_train::oneshot::{Method, Selection};

use crate::Result;
use crate::args::Args;
use crate::proxies;
use crate::stats::{mean_of, mean_std, min};
use crate::truth::{BudgetPlacement, GroundTruth, Placement, RandomSearchPlace};

pub struct Run {
    pub method: Method,
    pub seed: u64,
    pub arch: String,
    pub place: Placement,
    pub search_seconds: f64,
    /// Random search given the same time (as many trainings as the search cost): where its
    /// pick is expected to stand.
    pub random_search: RandomSearchPlace,
    pub tau: Option<Tau>,
    pub final_probabilities: String,
    /// The derived network's `--cost-metric`, and where it stands among the table's networks
    /// within the budget (`--max-cost-share`, else its own cost; complete tables).
    pub cost: f64,
    pub cost_place: Option<BudgetPlacement>,
    /// Random search given the same time among the same networks, placed likewise.
    pub random_search_within: Option<BudgetPlacement>,
    /// With perturbation-based selection: what magnitude (argmax of alpha at the end of the
    /// search, before any tuning) reads from the same supernet, for comparison.
    pub magnitude: Option<Reading>,
    /// With `--derive` above 1: the selected architecture alone (what the search's pick
    /// would be without training the proposals).
    pub selected: Option<Reading>,
}

/// SPOS: Kendall's tau between supernet scores and the table's test accuracies, and between
/// the scores and the mean test accuracies over the table and its repeats; and the tau of the
/// scored networks' parameter counts with the test accuracies, the training-free baseline a
/// supernet's scores should beat.
#[derive(Clone, Copy)]
pub struct Tau {
    pub test: f64,
    pub mean: f64,
    pub params: f64,
}

/// One architecture and where the table puts it.
pub struct Reading {
    pub arch: String,
    pub place: Placement,
}

/// A proxy's run, where its pick stands in the table, and within the budget if one is set.
pub type ProxyPlacement = (proxies::ProxyRun, Placement, Option<BudgetPlacement>);

/// `<out>/proxies.csv` and a section of `<out>/summary.md`: the training-free baselines.
pub fn write_proxy_results(
    args: &Args,
    runs: &[ProxyPlacement],
    one_training: f64,
    truth: &GroundTruth,
) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut csv = String::from(
        "proxy,seed,arch,kendall_tau,kendall_tau_mean,test_accuracy,percentile,mean_test_accuracy,mean_percentile,seconds,budget_percentile,budget_mean_percentile\n",
    );
    for (r, p, within) in runs {
        writeln!(
            csv,
            "{},{},\"{}\",{:.4},{:.4},{:.4},{:.2},{:.4},{:.2},{:.2},{}",
            r.proxy,
            r.seed,
            r.arch,
            r.tau_test,
            r.tau_mean,
            p.test_accuracy,
            p.percentile,
            p.mean_accuracy,
            p.mean_percentile,
            r.seconds,
            within
                .map(|w| format!("{:.2},{:.2}", w.percentile, w.mean_percentile))
                .unwrap_or_else(|| ",".to_string())
        )?;
    }
    std::fs::write(args.out.join("proxies.csv"), csv)?;
    let (budget_head, budget_rule) = if args.max_cost_share.is_some() {
        (
            " within the budget: percentile, mean percentile (min) |",
            "---|",
        )
    } else {
        ("", "")
    };
    let mut md = format!(
        "\n## Training-free baselines\n\nThe `zero-cost` evaluator's proxies on the networks SPOS scores \
         ({} per seed, seeds {:?}, one batch of 64 training images), each proxy's best-scored \
         network placed as SPOS's pick is (mean of {}). Seconds: scoring one seed's networks \
         with every proxy, and as trainings of one candidate.{}\n\n\
         | proxy | Kendall tau, table (mean) | percentile of its pick, mean (min) | mean of {}: percentile, mean (min) | seconds (x one training) |{}\n\
         |---|---|---|---|---|{}\n",
        args.spos_sample,
        args.seeds,
        truth.trainings_label(),
        budget_note(args),
        truth.trainings_label(),
        budget_head,
        budget_rule,
    );
    for proxy in &args.proxies {
        let rs: Vec<&ProxyPlacement> = runs.iter().filter(|(r, ..)| &r.proxy == proxy).collect();
        let col =
            |f: &dyn Fn(&ProxyPlacement) -> f64| -> Vec<f64> { rs.iter().map(|r| f(r)).collect() };
        let (t, ts) = mean_std(&col(&|(r, ..)| r.tau_test));
        let (m, _) = mean_std(&col(&|(r, ..)| r.tau_mean));
        let pct = col(&|(_, p, _)| p.percentile);
        let mean_pct = col(&|(_, p, _)| p.mean_percentile);
        let (secs, _) = mean_std(&col(&|(r, ..)| r.seconds));
        let within: Vec<BudgetPlacement> = rs.iter().filter_map(|(.., w)| *w).collect();
        writeln!(
            md,
            "| {proxy} | {t:.3} ± {ts:.3} ({m:.3}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {secs:.1} ({:.1}x) |{}",
            mean_std(&pct).0,
            min(&pct),
            mean_std(&mean_pct).0,
            min(&mean_pct),
            secs / one_training,
            budget_cell(&within, ", ")
        )?;
    }
    let path = args.out.join("summary.md");
    let mut summary = std::fs::read_to_string(&path)?;
    summary.push_str(&md);
    std::fs::write(&path, summary)?;
    print!("{md}");
    Ok(())
}

/// The summary's sentence on `--max-cost-share`, empty without it.
pub fn budget_note(args: &Args) -> String {
    match args.max_cost_share {
        None => String::new(),
        Some(share) => format!(
            " Only networks costing at most {share} times the table's costliest ({:?}) are \
             scored; \"within the budget\" ranks a pick among the table's networks that cheap.",
            args.search.cost_metric
        ),
    }
}

/// Table cells: mean (min) of the percentiles within the budget, then `sep`, then the same of
/// the mean-of-all percentiles; empty when there is no budget.
pub fn budget_cell(within: &[BudgetPlacement], sep: &str) -> String {
    if within.is_empty() {
        return String::new();
    }
    let pct: Vec<f64> = within.iter().map(|w| w.percentile).collect();
    let mean: Vec<f64> = within.iter().map(|w| w.mean_percentile).collect();
    format!(
        " {:.1} ({:.1}){sep}{:.1} ({:.1}) |",
        mean_std(&pct).0,
        min(&pct),
        mean_std(&mean).0,
        min(&mean)
    )
}

/// Architecture strings as one markdown table cell, one per line (`|` would end the cell).
pub fn arch_cell<'a>(archs: impl Iterator<Item = &'a str>) -> String {
    archs
        .map(|a| format!("`{}`", a.replace('|', "\\|")))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Another reading of the same searches, per method: `intro` says which, `reading` gives
/// it per run (none: no section).
pub fn readings_markdown(
    md: &mut String,
    args: &Args,
    runs: &[Run],
    intro: &str,
    reading: impl Fn(&Run) -> Option<&Reading>,
) -> Result<()> {
    if !runs.iter().any(|r| reading(r).is_some()) {
        return Ok(());
    }
    md.push_str(&format!(
        "\n{intro}:\n\n\
         | method | test accuracy, mean ± std (%) | percentile, mean (min) | pooled percentile, mean (min) | mean percentile, mean (min) | architectures |\n\
         |---|---|---|---|---|---|\n"
    ));
    for &m in &args.methods {
        let rs: Vec<&Reading> = runs
            .iter()
            .filter(|r| r.method == m)
            .filter_map(&reading)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.test_accuracy).collect();
        let (am, asd) = mean_std(&acc);
        let pct: Vec<f64> = rs.iter().map(|r| r.place.percentile).collect();
        let pooled: Vec<f64> = rs.iter().map(|r| r.place.pooled_percentile).collect();
        let mean_pct: Vec<f64> = rs.iter().map(|r| r.place.mean_percentile).collect();
        let archs = arch_cell(rs.iter().map(|r| r.arch.as_str()));
        writeln!(
            md,
            "| {} | {am:.2} ± {asd:.2} | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {} |",
            m.name(),
            mean_std(&pct).0,
            min(&pct),
            mean_std(&pooled).0,
            min(&pooled),
            mean_std(&mean_pct).0,
            min(&mean_pct),
            archs
        )?;
    }
    Ok(())
}

pub fn write_results(
    args: &Args,
    runs: &[Run],
    retrained: &[(usize, Reading)],
    optimum: f64,
    one_training: f64,
    truth: &GroundTruth,
) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut csv = String::from(
        "method,seed,arch,test_accuracy,percentile,pooled_percentile,search_seconds,kendall_tau,probabilities,mean_test_accuracy,mean_percentile,kendall_tau_mean,repeat_percentiles,random_search_percentile,random_search_mean_percentile,selected_arch,selected_percentile,selected_mean_percentile,cost,cost_percentile,cost_mean_percentile,cost_random_search_percentile,cost_random_search_mean_percentile,random_search_repeat_percentile,one_training_seconds\n",
    );
    for r in runs {
        writeln!(
            csv,
            "{},{},\"{}\",{:.4},{:.2},{:.2},{:.2},{},{},{:.4},{:.2},{},{},{:.2},{:.2},{},{},{},{},{one_training:.3}",
            r.method.name(),
            r.seed,
            r.arch,
            r.place.test_accuracy,
            r.place.percentile,
            r.place.pooled_percentile,
            r.search_seconds,
            r.tau.map(|t| format!("{:.4}", t.test)).unwrap_or_default(),
            r.final_probabilities,
            r.place.mean_accuracy,
            r.place.mean_percentile,
            r.tau.map(|t| format!("{:.4}", t.mean)).unwrap_or_default(),
            r.place
                .repeat_percentiles
                .iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join("/"),
            r.random_search.percentile,
            r.random_search.mean_percentile,
            r.selected
                .as_ref()
                .map(|s| format!(
                    "\"{}\",{:.2},{:.2}",
                    s.arch, s.place.percentile, s.place.mean_percentile
                ))
                .unwrap_or_else(|| ",,".to_string()),
            r.cost,
            [r.cost_place, r.random_search_within]
                .map(|p| p
                    .map(|p| format!("{:.2},{:.2}", p.percentile, p.mean_percentile))
                    .unwrap_or_else(|| ",".to_string()))
                .join(","),
            r.random_search
                .repeats_percentile
                .map(|p| format!("{p:.2}"))
                .unwrap_or_default(),
        )?;
    }
    std::fs::write(args.out.join("runs.csv"), csv)?;
    let mut md = format!(
        "# One-shot search on `{}`\n\n{}{} epochs per search, seeds {:?}, arch_lr {}, \
         weight_lr {}, warmup {} epochs, Beta-Decay {}, random smoothing {}, progressive pruning {}, cost penalty {} ({:?}), affine BatchNorm in mixed edges {}, GDAS/SPOS compute {}, GDAS gradient {:?}, SPOS sandwich rule {:?}, SPOS scores on {} validation images, selection {}, {} proposal(s) per search trained once to pick the best by validation accuracy (in the search's cost), supernet width {} channels, {} thread(s). Table optimum (test accuracy): {:.2} %. Training one candidate (the \
         table's recipe, measured in this run): {one_training:.2} s.\n\n\
         | method | test accuracy, mean ± std (%) | percentile, mean (min) | pooled percentile, mean (min) | mean of {}: accuracy (%), percentile mean (min) | test percentile in the other trainings alone, mean (min) | all-skip / all-pool / all-none cells | search seconds (x one training) | random search given that time: percentile, mean percentile (, in the repeats alone) | Kendall tau | derived architectures |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        truth.name,
        truth.sample_note(),
        args.search.epochs,
        args.seeds,
        args.search.arch_lr,
        args.search.weight_lr,
        args.search.warmup_epochs,
        args.search.beta_decay,
        args.search.random_smoothing,
        if args.search.prune_to == 0 {
            "off".to_string()
        } else {
            format!(
                "to {} options per choice after {} epochs",
                args.search.prune_to,
                args.search.prune_epoch()
            )
        },
        args.search.cost_penalty,
        args.search.cost_metric,
        args.search.affine,
        if args.search.sampled_path_only {
            "the sampled path only"
        } else {
            "every operation"
        },
        args.search.gdas_gradient,
        args.search.sandwich,
        args.score_images
            .map_or("all".to_string(), |n| format!("the first {n}")),
        match args.search.selection {
            Selection::Magnitude => "by magnitude (argmax of alpha)".to_string(),
            Selection::Perturbation => format!(
                "by perturbation (DARTS-PT, validation {:?}), {} tuning epochs per decision",
                args.search.selection_metric, args.search.selection_epochs
            ),
        },
        args.derive,
        args.channels
            .map_or("the table's".to_string(), |c| c.to_string()),
        args.threads,
        100.0 * optimum,
        truth.trainings_label()
    );
    for &m in &args.methods {
        let rs: Vec<&Run> = runs.iter().filter(|r| r.method == m).collect();
        if rs.is_empty() {
            continue;
        }
        let acc: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.test_accuracy).collect();
        let pct: Vec<f64> = rs.iter().map(|r| r.place.percentile).collect();
        let secs: Vec<f64> = rs.iter().map(|r| r.search_seconds).collect();
        let (am, asd) = mean_std(&acc);
        let (pm, _) = mean_std(&pct);
        let pmin = min(&pct);
        let pooled: Vec<f64> = rs.iter().map(|r| r.place.pooled_percentile).collect();
        let (qm, _) = mean_std(&pooled);
        let qmin = min(&pooled);
        let (sm, _) = mean_std(&secs);
        let means: Vec<f64> = rs.iter().map(|r| 100.0 * r.place.mean_accuracy).collect();
        let mean_pct: Vec<f64> = rs.iter().map(|r| r.place.mean_percentile).collect();
        let repeat_pct: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.place.repeat_percentiles.iter().copied())
            .collect();
        let mean_cell = format!(
            "{:.2}, {:.1} ({:.1}) | {}",
            mean_std(&means).0,
            mean_std(&mean_pct).0,
            min(&mean_pct),
            if repeat_pct.is_empty() {
                "-".to_string()
            } else {
                format!("{:.1} ({:.1})", mean_std(&repeat_pct).0, min(&repeat_pct))
            }
        );
        let degenerate = |op: &str| rs.iter().filter(|r| every_edge_is(&r.arch, op)).count();
        let taus: Vec<Tau> = rs.iter().filter_map(|r| r.tau).collect();
        let tau = if taus.is_empty() {
            "-".to_string()
        } else {
            let (t, ts) = mean_std(&taus.iter().map(|t| t.test).collect::<Vec<_>>());
            let (m, ms) = mean_std(&taus.iter().map(|t| t.mean).collect::<Vec<_>>());
            let (p, _) = mean_std(&taus.iter().map(|t| t.params).collect::<Vec<_>>());
            format!("{t:.3} ± {ts:.3} (mean: {m:.3} ± {ms:.3}; parameter count: {p:.3})")
        };
        let archs = arch_cell(rs.iter().map(|r| r.arch.as_str()));
        // Random search given that time: its pick by the table, by the mean, in the repeats alone.
        let random: Vec<RandomSearchPlace> = rs.iter().map(|r| r.random_search).collect();
        let mut random_cell = format!(
            "{:.1}, {:.1}",
            mean_of(&random.iter().map(|p| p.percentile).collect::<Vec<_>>()),
            mean_of(&random.iter().map(|p| p.mean_percentile).collect::<Vec<_>>())
        );
        let alone: Vec<f64> = random.iter().filter_map(|p| p.repeats_percentile).collect();
        if !alone.is_empty() {
            random_cell.push_str(&format!(", {:.1}", mean_of(&alone)));
        }
        writeln!(
            md,
            "| {} | {am:.2} ± {asd:.2} | {pm:.1} ({pmin:.1}) | {qm:.1} ({qmin:.1}) | {mean_cell} | {} / {} / {} | {sm:.1} ({:.1}x) | {random_cell} | {tau} | {} |",
            m.name(),
            degenerate("skip_connect"),
            degenerate("avg_pool_3x3"),
            degenerate("none"),
            sm / one_training,
            archs
        )?;
    }
    md.push_str(
        "\n\"Random search given that time\": as many architectures as the search cost \
         trainings of one, drawn uniformly from the table, the best by the table's final \
         validation accuracy kept (its test percentile, its mean percentile and, with repeats, \
         its test percentile in the repeats alone, where the luck of the training that chose it \
         does not count), averaged over 2,000 simulated searches per run.\n",
    );
    let costed: Vec<&Run> = runs.iter().filter(|r| r.cost_place.is_some()).collect();
    if args.max_cost_share.is_some() || args.search.cost_penalty > 0.0 {
        writeln!(
            md,
            "\n## Within a cost budget\n\nEach pick ranked among the table's networks that cost \
             at most the budget (`--max-cost-share`, for SPOS) or, without one, at most the pick's \
             own {:?}.{}\n\n| method | percentile, mean (min) | mean of {}: percentile, mean (min) | random search given that time among the same networks: percentile, mean percentile |\n|---|---|---|---|",
            args.search.cost_metric,
            budget_note(args),
            truth.trainings_label()
        )?;
        for &m in &args.methods {
            let rs: Vec<&&Run> = costed.iter().filter(|r| r.method == m).collect();
            let within: Vec<BudgetPlacement> = rs.iter().filter_map(|r| r.cost_place).collect();
            let random: Vec<BudgetPlacement> =
                rs.iter().filter_map(|r| r.random_search_within).collect();
            if !within.is_empty() {
                writeln!(
                    md,
                    "| {} |{} {:.1}, {:.1} |",
                    m.name(),
                    budget_cell(&within, " | "),
                    mean_of(&random.iter().map(|p| p.percentile).collect::<Vec<_>>()),
                    mean_of(&random.iter().map(|p| p.mean_percentile).collect::<Vec<_>>())
                )?;
            }
        }
    }
    readings_markdown(
        &mut md,
        args,
        runs,
        "The same supernets read by magnitude (argmax of alpha after the search's last epoch, \
         before perturbation-based selection tuned them)",
        |r| r.magnitude.as_ref(),
    )?;
    readings_markdown(
        &mut md,
        args,
        runs,
        &format!(
            "The same searches' selected architecture alone (the first of the {} proposals, \
             without training them to pick one)",
            args.derive
        ),
        |r| r.selected.as_ref(),
    )?;
    md.push_str(&truth.markdown());
    if let Some((k, _)) = args.random_search.filter(|_| !retrained.is_empty()) {
        md.push_str(&truth.retrained_markdown(k, retrained));
    }
    std::fs::write(args.out.join("summary.md"), &md)?;
    println!("{md}");
    Ok(())
}

/// Whether `arch` is a cell (an NB201 string) with `op` on every edge; other spaces' strings
/// never are.
pub fn every_edge_is(arch: &str, op: &str) -> bool {
    let mut edges = arch.split('|').filter(|t| t.contains('~')).peekable();
    edges.peek().is_some() && edges.all(|t| t.starts_with(op))
}
