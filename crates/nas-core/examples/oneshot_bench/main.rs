//! One-shot search against ground truth: the program behind `cargo xtask bench-oneshot`.
//!
//! On the shipped `nb201-digits` table (every cell of the NAS-Bench-201 space at 4 channels,
//! one cell per stage, trained 8 epochs on the bundled digits; test accuracy known), for each
//! method and seed: train the supernet of that very space on the table's data split (weights
//! on the training part, architecture on the validation part), derive the architecture
//! (DARTS-family: argmax of alpha; SPOS: the best of `--spos-sample` random architectures
//! scored with inherited supernet weights), and look up its test accuracy and percentile
//! among the table's 15,625 architectures. For SPOS also Kendall's tau between those supernet
//! scores and the table's test accuracies. Every derived cell is also ranked by its mean test
//! accuracy over the table and its repeats (`--repeats`: the same space and recipe trained with
//! other seeds; by default every `nb201-digits-seed*` table), a ground truth with less
//! training noise.
//!
//! A sampled table (`nas tabulate --partial`, e.g. `configs/tables/nb201-fashion-sample`)
//! works too: percentiles are estimated from its rows, weighted by the architectures each
//! stands for ([`Table::arch_weights`]); a derived architecture is trained with the table's
//! recipe (it is rarely in the sample): once per table when the sample has repeats, with that
//! table's seed and split, else `--trainings` times on the table's split; SPOS scores the
//! sample's networks, the only ones whose accuracy is known.
//! Writes `<out>/runs.csv` and `<out>/summary.md`.
//!
//! Here: the searches and their measurement (`Bench`). `args`: the flags; `truth`: where the
//! table and its repeats put an architecture, and simulated random searches; `spos`: the
//! networks SPOS scores; `proxies`: the training-free baselines; `report`: the output files;
//! `stats`: Kendall's tau and means.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use nas_core::space::{
    CellSpaceConfig, SearchSpace, SpaceConfig, build_space, network_cost, option_costs,
};
use nas_data::{DataConfig, Part, SplitDataset};
use nas_runtime::SessionSettings;
use nas_table::{Index, Table};
use nas_train::TrainConfig;
use nas_train::oneshot::{
    CostMetric, GdasGradient, Method, OneShotConfig, Sandwich, Selection, SupernetTrainer,
};

use args::{Args, parse_args};
use report::{ProxyPlacement, Reading, Run, Tau, write_proxy_results, write_results};
use spos::{row_cost, score_paths, spos_candidates};
use stats::kendall_tau;
use truth::{GroundTruth, Measured};

mod args;
mod combine;
mod proxies;
mod report;
mod spos;
mod stats;
mod truth;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = parse_args()?;
    if !args.combine.is_empty() {
        return combine::write(&args.combine, &args.out);
    }
    let table = Table::read(&args.table)?;
    settle_trainings(&mut args, &table)?;
    let bench = Bench::new(args, table)?;
    let mut runs = Vec::new();
    for &method in &bench.args.methods {
        for &seed in &bench.args.seeds {
            runs.push(bench.search(method, seed)?);
        }
    }
    let proxy_runs = bench.proxy_baselines()?;
    let retrained = bench.retrain_random_searches()?;
    let optimum = bench.table.optimum().test_accuracy;
    write_results(
        &bench.args,
        &runs,
        &retrained,
        optimum,
        bench.one_training,
        &bench.truth,
    )?;
    write_proxy_results(&bench.args, &proxy_runs, bench.one_training, &bench.truth)
}

/// A sample's derived architectures are trained once per table when it has repeats, each
/// time with that table's seed and split, so their mean compares with the rows' means.
fn settle_trainings(args: &mut Args, table: &Table) -> Result<()> {
    if table.sample.is_none() || args.repeats.is_empty() {
        return Ok(());
    }
    let per_table = 1 + args.repeats.len();
    if args.trainings_given && args.trainings != per_table {
        return Err(format!(
            "{} is a sample with {} repeat(s): its derived architectures are trained once \
             per table ({per_table} times); drop --trainings or pass --repeats none",
            args.table.display(),
            args.repeats.len()
        )
        .into());
    }
    args.trainings = per_table;
    Ok(())
}

/// What every search is measured against, set up once: the table's space, data and recipe,
/// its ground truth, and what one training of a candidate costs here.
struct Bench {
    args: Args,
    table: Table,
    index: Index,
    /// A sampled table: derived architectures are trained afresh, not looked up.
    sampled: bool,
    /// The table's space (derived architectures are decoded at its width) and the space the
    /// supernets are built from (`--channels` may widen it).
    space: Box<dyn SearchSpace>,
    search_space: Box<dyn SearchSpace>,
    data: SplitDataset,
    /// Each repeat's seed and split, for a sample's fresh trainings (training i: table i).
    repeat_data: Vec<(u64, SplitDataset)>,
    runtime: SessionSettings,
    recipe: TrainConfig,
    truth: GroundTruth,
    /// Seconds to train one candidate with the table's recipe, measured here under the
    /// searches' conditions: the unit of every search's cost.
    one_training: f64,
    /// A sample's derived architectures as measured, by canonical hash (derivations repeat).
    fresh: RefCell<HashMap<String, Measured>>,
    /// The options' costs for `--cost-penalty` (they depend on the space alone).
    option_costs: Option<Vec<Vec<f64>>>,
    /// Per table row: its `--cost-metric`; and the budget SPOS and the proxies score within.
    row_costs: Vec<f64>,
    budget_limit: Option<f64>,
}

impl Bench {
    fn new(mut args: Args, table: Table) -> Result<Bench> {
        let sampled = table.sample.is_some();
        let space_cfg = SpaceConfig::from_json(&table.space)?;
        let space = build_space(&space_cfg)?;
        // The supernet may be wider than the table's networks; choices and strings are the same.
        let search_space = match args.channels {
            None => build_space(&space_cfg)?,
            Some(channels) => {
                let cfg: CellSpaceConfig = serde_json::from_value(table.space.clone())
                    .map_err(|e| format!("--channels widens `cell` supernets only: {e}"))?;
                build_space(&CellSpaceConfig { channels, ..cfg }.into())?
            }
        };
        // `auto` as the trainer resolves it, so that the summary names the gradient used.
        args.search.gdas_gradient = args
            .search
            .gdas_gradient
            .resolve(&search_space.supernet(false)?);
        let data_cfg: DataConfig = serde_json::from_value(table.data.clone())?;
        let data = nas_data::load(&data_cfg, table.seed)?;
        let library = nas_runtime::locate_library(None)?;
        let runtime = SessionSettings {
            threads: args.threads,
            ..SessionSettings::cpu(&library)
        };
        let recipe = nas_train::TrainTable::parse(&table.evaluator)?.recipe;
        let repeats = args
            .repeats
            .iter()
            .map(|p| Ok((p.clone(), Table::read(p)?)))
            .collect::<Result<Vec<_>>>()?;
        let repeat_data = if sampled {
            repeats
                .iter()
                .map(|(_, r)| Ok((r.seed, nas_data::load(&data_cfg, r.seed)?)))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let truth = GroundTruth::new(
            &table,
            &repeats,
            data.splits.validation.len(),
            data.splits.test.len(),
            if sampled { args.trainings } else { 0 },
        )?;
        let option_costs = (args.search.cost_penalty > 0.0)
            .then(|| option_costs(search_space.as_ref(), args.search.cost_metric))
            .transpose()?;
        let row_costs: Vec<f64> = table
            .rows
            .iter()
            .map(|r| row_cost(r, args.search.cost_metric))
            .collect();
        let budget_limit = args
            .max_cost_share
            .map(|share| share * row_costs.iter().copied().fold(0.0, f64::max));
        let mut bench = Bench {
            index: table.index(),
            args,
            table,
            sampled,
            space,
            search_space,
            data,
            repeat_data,
            runtime,
            recipe,
            truth,
            one_training: 0.0,
            fresh: RefCell::new(HashMap::new()),
            option_costs,
            row_costs,
            budget_limit,
        };
        bench.one_training = bench.time_one_training()?;
        Ok(bench)
    }

    /// What training one candidate costs: the table's recipe on the table's best architecture.
    fn time_one_training(&self) -> Result<f64> {
        let best = self
            .table
            .rows
            .iter()
            .max_by(|a, b| {
                a.test_accuracy
                    .partial_cmp(&b.test_accuracy)
                    .expect("finite")
            })
            .ok_or("the table is empty")?;
        let graph = self.space.decode(&self.space.parse_arch(&best.archs[0])?)?;
        let started = Instant::now();
        self.train_once(&graph, self.table.seed)?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Trains `graph` once with the table's recipe on `data`'s split: (val, test) accuracy.
    fn train_on(
        &self,
        graph: &nas_graph::Graph,
        seed: u64,
        data: &SplitDataset,
    ) -> Result<(f64, f64)> {
        let mut cfg = self.recipe.clone();
        cfg.seed = Some(seed);
        let weights = nas_graph::Weights::he_init(graph, seed)?;
        let mut trainer = nas_train::Trainer::new(graph, weights, &cfg, &self.runtime, data)?;
        trainer.train_epochs(cfg.epochs)?;
        let accuracy = |part| -> Result<f64> {
            Ok(trainer
                .evaluate_normalized(part)?
                .and_then(|e| e.accuracy)
                .ok_or("the split is empty")?)
        };
        Ok((accuracy(Part::Validation)?, accuracy(Part::Test)?))
    }

    /// ... on the table's split.
    fn train_once(&self, graph: &nas_graph::Graph, seed: u64) -> Result<(f64, f64)> {
        self.train_on(graph, seed, &self.data)
    }

    /// A derived architecture's accuracies: from the table and its repeats, or, for a sample,
    /// trained afresh (seeds the table's trials do not use; cached, derivations repeat).
    fn measure(&self, arch: &str) -> Result<Measured> {
        if !self.sampled {
            let row = *self
                .index
                .by_arch
                .get(arch)
                .ok_or_else(|| format!("{arch} is not in the table"))?;
            return Ok(self.truth.measured(row));
        }
        let graph = self.space.decode(&self.space.parse_arch(arch)?)?;
        let hash = graph.canonical_hash();
        if let Some(m) = self.fresh.borrow().get(&hash) {
            return Ok(m.clone());
        }
        let mut m = Measured {
            tests: Vec::new(),
            val: 0.0,
        };
        for i in 0..self.args.trainings {
            // With repeats, training i is table i's: its seed and split.
            let (val, test) = match i.checked_sub(1).filter(|_| !self.repeat_data.is_empty()) {
                Some(r) => {
                    let (seed, data) = &self.repeat_data[r];
                    self.train_on(&graph, FRESH_SEED ^ seed, data)?
                }
                None => {
                    self.train_once(&graph, FRESH_SEED ^ self.table.seed.wrapping_add(i as u64))?
                }
            };
            if i == 0 {
                m.val = val;
            }
            m.tests.push(test);
        }
        self.fresh.borrow_mut().insert(hash, m.clone());
        Ok(m)
    }

    fn arch_of(&self, choices: &[usize]) -> String {
        self.space
            .arch_string(&choices.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }

    /// The networks SPOS and the proxies score for a seed, within the budget.
    fn candidates(&self, seed: u64) -> Result<Vec<Vec<usize>>> {
        let mut candidates = spos_candidates(
            &self.table,
            self.space.as_ref(),
            self.args.spos_sample,
            seed,
        )?;
        if let Some(limit) = self.budget_limit {
            candidates.retain(|c| {
                network_cost(self.space.as_ref(), c, self.args.search.cost_metric)
                    .is_ok_and(|cost| cost <= limit)
            });
        }
        Ok(candidates)
    }

    /// The search's settings: the flags, less what `method` refuses or ignores.
    fn config(&self, method: Method, seed: u64) -> OneShotConfig {
        let mut cfg = OneShotConfig {
            method,
            seed: Some(seed),
            ..self.args.search.clone()
        };
        // What a method refuses is left out, so one command line can run every method.
        if !method.softmax_weights() {
            cfg.beta_decay = 0.0;
        }
        if !method.mixes_every_option() {
            cfg.random_smoothing = 0.0;
        }
        // SPOS learns no architecture weights to prune by, penalize or read.
        if !method.learns_alpha() {
            cfg.prune_to = 0;
            cfg.cost_penalty = 0.0;
            cfg.selection = Selection::Magnitude;
        }
        if method != Method::Gdas {
            cfg.gdas_gradient = GdasGradient::Auto;
        }
        if method != Method::Spos {
            cfg.sandwich = Sandwich::Off;
        }
        cfg
    }

    /// One search: train the supernet, derive the architecture (with `--derive` above 1, the
    /// best of the proposals by one training's validation accuracy), and place it.
    fn search(&self, method: Method, seed: u64) -> Result<Run> {
        let args = &self.args;
        let truth = &self.truth;
        let budget = self.budget_limit.filter(|_| method == Method::Spos);
        let supernet = self.search_space.supernet(method.aux_skip())?;
        let cfg = self.config(method, seed);
        let started = Instant::now();
        let mut trainer = SupernetTrainer::new(&supernet, &cfg, &self.runtime, &self.data)?;
        if let Some(costs) = self
            .option_costs
            .as_ref()
            .filter(|_| cfg.cost_penalty > 0.0)
        {
            trainer.set_option_costs(costs.clone())?;
        }
        if method == Method::Spos {
            trainer.set_score_images(args.score_images)?;
        }
        let epochs = trainer.total_epochs();
        for _ in 0..epochs {
            let e = trainer.train_epoch()?;
            eprint!(
                "\r{} seed {seed}: epoch {}/{} loss {:.3} {}",
                method.name(),
                e.epoch,
                epochs,
                e.train_loss,
                if e.derived.is_empty() {
                    String::new()
                } else {
                    self.arch_of(&e.derived)
                }
            );
        }
        eprintln!(
            "\n  supernet trained in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (choices, tau) = if method == Method::Spos {
            let (proposals, tau) = self.spos_proposals(&mut trainer, seed)?;
            (proposals, Some(tau))
        } else {
            let selected = trainer.select()?;
            (trainer.arch().proposals(selected, args.derive), None)
        };
        let mut search_seconds = started.elapsed().as_secs_f64();
        let (choices, selected) = if choices.len() > 1 {
            let (i, seconds) = self.pick_proposal(&choices, seed)?;
            search_seconds += seconds;
            let first = self.arch_of(&choices[0]);
            let selected = Reading {
                place: truth.place(&self.measure(&first)?),
                arch: first,
            };
            (choices[i].clone(), Some(selected))
        } else {
            (choices[0].clone(), None)
        };
        let arch = self.arch_of(&choices);
        let measured = self.measure(&arch)?;
        let place = truth.place(&measured);
        let cost = network_cost(self.space.as_ref(), &choices, args.search.cost_metric)?;
        // Without a budget, a cost-aware pick is worth what it is among the networks that
        // cost at most as much as itself.
        let cost_place = (!self.sampled)
            .then(|| truth.place_within(&self.row_costs, budget.unwrap_or(cost), &measured));
        // Random search given the same time: as many trainings as the search cost.
        let trainings = (search_seconds / self.one_training) as usize;
        let random_search_within = (!self.sampled).then(|| {
            truth.random_search_within(trainings, &self.row_costs, budget.unwrap_or(cost))
        });
        let probs = trainer
            .arch()
            .probabilities()
            .iter()
            .map(|p| {
                p.iter()
                    .map(|v| format!("{v:.2}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!(
            "  -> {arch}: test {:.2} % (percentile {:.1}, mean of {} {:.2} %, percentile {:.1}), {:?} {cost}{}, {search_seconds:.1} s{}",
            100.0 * place.test_accuracy,
            place.percentile,
            truth.trainings_label(),
            100.0 * place.mean_accuracy,
            place.mean_percentile,
            args.search.cost_metric,
            cost_place
                .map(|p| format!(
                    " (percentile {:.1}, mean {:.1}, among networks {})",
                    p.percentile,
                    p.mean_percentile,
                    if budget.is_some() {
                        "within the budget"
                    } else {
                        "as costly or less"
                    }
                ))
                .unwrap_or_default(),
            tau.map(|t| format!(
                ", Kendall tau {:.3} (mean {:.3}; parameter count {:.3})",
                t.test, t.mean, t.params
            ))
            .unwrap_or_default()
        );
        let magnitude = match args
            .search
            .epochs
            .checked_sub(1)
            .and_then(|last| trainer.history().get(last))
        {
            Some(e)
                if args.search.selection == Selection::Perturbation && !e.derived.is_empty() =>
            {
                let arch = self.arch_of(&e.derived);
                let place = truth.place(&self.measure(&arch)?);
                eprintln!(
                    "     by magnitude: {arch}: test {:.2} % (percentile {:.1})",
                    100.0 * place.test_accuracy,
                    truth.test_percentile(place.test_accuracy)
                );
                Some(Reading { arch, place })
            }
            _ => None,
        };
        Ok(Run {
            method,
            seed,
            arch,
            place,
            search_seconds,
            random_search: truth.random_search(trainings),
            tau,
            final_probabilities: probs,
            cost,
            cost_place,
            random_search_within,
            magnitude,
            selected,
        })
    }

    /// SPOS: score distinct architectures of known accuracy with the shared weights; the
    /// `--derive` best scored (the first of equal scores, as sampled) and how the scores
    /// rank the table.
    fn spos_proposals(
        &self,
        trainer: &mut SupernetTrainer<'_>,
        seed: u64,
    ) -> Result<(Vec<Vec<usize>>, Tau)> {
        let (mut scores, mut truths, mut means, mut params, mut scored) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (c, acc) in score_paths(trainer, self.candidates(seed)?, self.args.few_shot)? {
            let row = self.index.by_arch[&self.arch_of(&c)];
            scores.push(acc);
            truths.push(self.truth.test[row]);
            means.push(self.truth.mean[row]);
            // The decoded network's count, as the `params` proxy counts it (a table row's
            // may differ: it stands for isomorphic cells).
            params.push(network_cost(self.space.as_ref(), &c, CostMetric::Params)?);
            scored.push((acc, c));
        }
        let tau = Tau {
            test: kendall_tau(&scores, &truths),
            mean: kendall_tau(&scores, &means),
            params: kendall_tau(&params, &truths),
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        if scored.is_empty() {
            return Err("--spos-sample is 0".into());
        }
        let proposals = scored
            .into_iter()
            .take(self.args.derive)
            .map(|(_, c)| c)
            .collect();
        Ok((proposals, tau))
    }

    /// Trains every proposal once and keeps the best by validation accuracy, as a study does
    /// with its trials before `[final]`: its index, and the seconds the trainings took (on a
    /// complete table the table's training stands in for the trial's, at one training's cost).
    fn pick_proposal(&self, choices: &[Vec<usize>], seed: u64) -> Result<(usize, f64)> {
        let mut seconds = 0.0;
        let mut best: Option<(f64, usize)> = None;
        for (i, c) in choices.iter().enumerate() {
            let val = if self.sampled {
                let graph = self
                    .space
                    .decode(&self.space.parse_arch(&self.arch_of(c))?)?;
                let started = Instant::now();
                let (val, _) = self.train_once(&graph, PICK_SEED ^ seed.wrapping_add(i as u64))?;
                seconds += started.elapsed().as_secs_f64();
                val
            } else {
                seconds += self.one_training;
                self.measure(&self.arch_of(c))?.val
            };
            if best.is_none_or(|(b, _)| val > b) {
                best = Some((val, i));
            }
        }
        let (_, i) = best.expect("two proposals at least");
        Ok((i, seconds))
    }

    /// Training-free baselines on SPOS's networks, each proxy's pick placed as SPOS's is.
    fn proxy_baselines(&self) -> Result<Vec<ProxyPlacement>> {
        let args = &self.args;
        let truth = &self.truth;
        let mut proxy_runs = Vec::new();
        if args.proxies.is_empty() {
            return Ok(proxy_runs);
        }
        let config = proxies::evaluator_config(&self.table, &args.proxies, args.threads)?;
        for &seed in &args.seeds {
            let archs: Vec<String> = self
                .candidates(seed)?
                .iter()
                .map(|c| self.arch_of(c))
                .collect();
            let runs = proxies::score(
                &config,
                &args.proxies,
                seed,
                &archs,
                |arch| self.index.by_arch[arch],
                |row| (truth.test[row], truth.mean[row]),
            )?;
            for run in runs {
                let measured = self.measure(&run.arch)?;
                let place = truth.place(&measured);
                let within = self
                    .budget_limit
                    .map(|limit| truth.place_within(&self.row_costs, limit, &measured));
                eprintln!(
                    "{} seed {seed}: Kendall tau {:.3} (mean {:.3}); best {}: percentile {:.1}, mean percentile {:.1}{} ({:.1} s for every proxy)",
                    run.proxy,
                    run.tau_test,
                    run.tau_mean,
                    run.arch,
                    place.percentile,
                    place.mean_percentile,
                    within
                        .map(|p| format!(
                            "; within the budget {:.1}, mean {:.1}",
                            p.percentile, p.mean_percentile
                        ))
                        .unwrap_or_default(),
                    run.seconds
                );
                proxy_runs.push((run, place, within));
            }
        }
        Ok(proxy_runs)
    }

    /// `--random-search K,N`: the picks of N simulated random searches, trained again.
    fn retrain_random_searches(&self) -> Result<Vec<(usize, Reading)>> {
        let mut retrained = Vec::new();
        let Some((k, n)) = self.args.random_search else {
            return Ok(retrained);
        };
        let truth = &self.truth;
        for row in truth.random_search_picks(k, n, |_| true) {
            let arch = self.table.rows[row].archs[0].clone();
            let place = truth.place(&self.measure(&arch)?);
            eprintln!(
                "random search of {k}: {arch}: table percentile {:.1}, trained again: mean percentile {:.1}",
                truth.test_percentile(truth.test[row]),
                place.mean_percentile
            );
            retrained.push((row, Reading { arch, place }));
        }
        Ok(retrained)
    }
}

/// Seeds of a sampled table's fresh trainings: far from the study seed plus trial id that its
/// rows were trained with.
const FRESH_SEED: u64 = 0x5A3F_1E00_0000_0000;

/// Seeds of the trainings that pick among a search's proposals (`--derive`): apart from the
/// fresh trainings that then measure the pick, so the pick's luck does not count.
const PICK_SEED: u64 = 0x71C4_0000_0000_0000;
