//! The ground truth: where a table and its repeats put an architecture, and what a
//! random search given the same time would pick.

use std::path::PathBuf;

use nas_data::DataConfig;
use nas_table::Table;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::report::{Reading, arch_cell};
use crate::stats::{kendall_tau, mean_of, mean_std, min};

/// A derived architecture's accuracies: its test accuracy in each training (the table's
/// first, then each repeat's; for a sampled table, fresh trainings with its recipe) and the
/// first training's final validation accuracy.
#[derive(Clone)]
pub struct Measured {
    pub tests: Vec<f64>,
    pub val: f64,
}

/// Where a network stands among the table's networks that cost at most a budget: what a
/// cost-aware pick is worth.
#[derive(Clone, Copy)]
pub struct BudgetPlacement {
    /// Its (first) test accuracy among their test accuracies, in percent.
    pub percentile: f64,
    /// Its mean test accuracy among their means (complete tables with repeats).
    pub mean_percentile: f64,
}

/// Where the ground truth puts a derived architecture.
pub struct Placement {
    /// Its (first) test accuracy.
    pub test_accuracy: f64,
    /// Share of the table's architectures with a lower test accuracy, in percent.
    pub percentile: f64,
    /// The same against the pooled validation + test accuracy (a less noisy measurement).
    pub pooled_percentile: f64,
    /// Mean test accuracy over its trainings, and its percentile among the table's means.
    pub mean_accuracy: f64,
    pub mean_percentile: f64,
    /// Its test percentile in each later training alone (trainings the search had nothing to
    /// do with, the unbiased measure to hold against the table's own best networks trained
    /// again).
    pub repeat_percentiles: Vec<f64>,
}

/// Where a simulated random search's pick is expected to stand.
#[derive(Clone, Copy)]
pub struct RandomSearchPlace {
    /// By the table's training (the one its validation accuracy picked it by).
    pub percentile: f64,
    /// By the mean over the table and its repeats.
    pub mean_percentile: f64,
    /// By its test percentile in each repeat alone, trainings the pick owes nothing to (the
    /// fair match for a derived cell's "other trainings alone"); with repeats only.
    pub repeats_percentile: Option<f64>,
}

/// How noisy the table's accuracies are, and a less noisy measurement to rank by.
///
/// Every network of the table was trained once and measured on a few hundred images, so its
/// test accuracy carries sampling noise of about one percentage point, as large as the spread
/// of the table's top 10 %. The validation accuracy of the same training is a second,
/// independent measurement: pooling both (weighted by their image counts) halves the variance,
/// and how well one predicts the other says what any search can reach on this table.
pub struct GroundTruth {
    /// Per row: test and final validation accuracy.
    pub test: Vec<f64>,
    val: Vec<f64>,
    /// Architectures per row (isomorphic cells share a row).
    weight: Vec<usize>,
    pooled_sorted: Vec<f64>,
    test_sorted: Vec<f64>,
    /// Per row: the test accuracy of the same network in each repeat table (another seed).
    repeats: Vec<Vec<f64>>,
    repeats_sorted: Vec<Vec<f64>>,
    /// Per row: the mean test accuracy over the table and its repeats.
    pub mean: Vec<f64>,
    mean_sorted: Vec<f64>,
    val_images: usize,
    test_images: usize,
    /// Trainings of each derived architecture of a sampled table (0 for a complete one).
    fresh_trainings: usize,
    pub name: String,
    /// A sampled table's draws.
    sample_draws: Option<u64>,
    /// How many architectures a row counts for in the oracles: those it stands for in a
    /// complete table, one per network in a sample (whose weights are estimates).
    oracle_weight: Vec<usize>,
}

impl GroundTruth {
    /// Simulated random searches per run (the summary says 2,000).
    const RANDOM_SEARCHES: usize = 2000;

    /// `repeats`: tables of the same space, data and recipe built with other seeds; every
    /// network of `table` must be in each.
    pub fn new(
        table: &Table,
        repeats: &[(PathBuf, Table)],
        val_images: usize,
        test_images: usize,
        fresh_trainings: usize,
    ) -> Result<Self> {
        // Data tables are compared as parsed: a newer build writes keys added since as defaults.
        let data = |t: &Table| -> Result<serde_json::Value> {
            Ok(serde_json::to_value(serde_json::from_value::<DataConfig>(
                t.data.clone(),
            )?)?)
        };
        let table_data = data(table)?;
        let repeat_tests = repeats
            .iter()
            .map(|(path, r)| {
                if r.space != table.space
                    || r.evaluator != table.evaluator
                    || data(r).map_err(|e| e.to_string())? != table_data
                {
                    return Err(format!(
                        "{} is not a repeat of the table: its space, data or recipe differs",
                        path.display()
                    ));
                }
                let index = r.index();
                table
                    .rows
                    .iter()
                    .map(|row| {
                        index
                            .by_hash
                            .get(&row.hash)
                            .and_then(|&i| r.rows[i].test_accuracy)
                            .ok_or_else(|| {
                                format!(
                                    "{} has no test accuracy for {}; finish it with `nas tabulate`",
                                    path.display(),
                                    row.archs[0]
                                )
                            })
                    })
                    .collect::<std::result::Result<Vec<f64>, String>>()
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let test: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.test_accuracy.unwrap_or(0.0))
            .collect();
        let val: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.val_accuracy.last().copied().unwrap_or(0.0))
            .collect();
        let (nv, nt) = (val_images as f64, test_images as f64);
        let pooled: Vec<f64> = test
            .iter()
            .zip(&val)
            .map(|(t, v)| (t * nt + v * nv) / (nt + nv))
            .collect();
        let weight = table.arch_weights();
        // A sample's weights are estimates; its oracles count each sampled network once.
        let oracle_weight = if table.sample.is_some() {
            vec![1; weight.len()]
        } else {
            weight.clone()
        };
        let sorted = |v: &[f64]| {
            let mut all: Vec<f64> = v
                .iter()
                .zip(&weight)
                .flat_map(|(&x, &w)| std::iter::repeat_n(x, w))
                .collect();
            all.sort_by(f64::total_cmp);
            all
        };
        let mean: Vec<f64> = (0..test.len())
            .map(|i| {
                let tests: Vec<f64> = std::iter::once(test[i])
                    .chain(repeat_tests.iter().map(|r| r[i]))
                    .collect();
                mean_of(&tests)
            })
            .collect();
        Ok(Self {
            pooled_sorted: sorted(&pooled),
            test_sorted: sorted(&test),
            mean_sorted: sorted(&mean),
            mean,
            repeats_sorted: repeat_tests.iter().map(|r| sorted(r)).collect(),
            repeats: repeat_tests,
            test,
            val,
            weight,
            val_images,
            test_images,
            fresh_trainings,
            name: table.name.clone(),
            sample_draws: table.sample.map(|s| s.draws),
            oracle_weight,
        })
    }

    /// What a sampled table's percentiles are, for the summary's first paragraph.
    pub fn sample_note(&self) -> String {
        let rows = self.test.len();
        match self.sample_draws {
            None => String::new(),
            Some(draws) => format!(
                "The table is a sample: the {rows} networks of the first {draws} architectures \
                 of a uniform random order, so percentiles are estimates (each row weighted by \
                 the architectures it stands for; a percentile near 90 is off by about {:.1} \
                 points, one standard error). {} \"The k best\" below count sampled \
                 networks.\n\n",
                100.0 * (0.9 * 0.1 / rows as f64).sqrt(),
                if self.repeats.is_empty() {
                    format!(
                        "Every derived architecture was trained {} times with the table's \
                         recipe and split; \"percentile\" ranks its first training, \"mean\" \
                         the mean of all, \"the other trainings alone\" each later one, all \
                         among the sample's single trainings.",
                        self.fresh_trainings
                    )
                } else {
                    format!(
                        "The sample's networks were trained again in {} repeat(s) (other \
                         seeds and splits), and every derived architecture was trained once \
                         per table with that table's seed and split: \"percentile\" ranks its \
                         first training among the table's, \"mean\" its mean among the \
                         networks' means over the {} trainings, \"the other trainings alone\" \
                         each later one among that repeat's.",
                        self.repeats.len(),
                        self.fresh_trainings
                    )
                }
            ),
        }
    }

    /// Trainings behind a derived architecture's mean: the table's and one per repeat, or
    /// the fresh trainings of a sampled table's.
    fn trainings(&self) -> usize {
        if self.fresh_trainings > 0 {
            self.fresh_trainings
        } else {
            1 + self.repeats.len()
        }
    }

    /// "1 training", "2 trainings", ...
    pub fn trainings_label(&self) -> String {
        match self.trainings() {
            1 => "1 training".to_string(),
            n => format!("{n} trainings"),
        }
    }

    /// `row`'s accuracies in the table and its repeats.
    pub fn measured(&self, row: usize) -> Measured {
        let mut tests = vec![self.test[row]];
        tests.extend(self.repeats.iter().map(|r| r[row]));
        Measured {
            tests,
            val: self.val[row],
        }
    }

    /// Where `m` stands: each training ranked among the table's (the repeats' for a complete
    /// table's later trainings, the table's own for a sample's), the mean among the means.
    pub fn place(&self, m: &Measured) -> Placement {
        let test = m.tests[0];
        let (nv, nt) = (self.val_images as f64, self.test_images as f64);
        let mean = mean_of(&m.tests);
        Placement {
            test_accuracy: test,
            percentile: self.test_percentile(test),
            pooled_percentile: Self::rank_in(
                &self.pooled_sorted,
                (test * nt + m.val * nv) / (nt + nv),
            ),
            mean_accuracy: mean,
            mean_percentile: Self::rank_in(&self.mean_sorted, mean),
            repeat_percentiles: m.tests[1..]
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    Self::rank_in(self.repeats_sorted.get(i).unwrap_or(&self.test_sorted), t)
                })
                .collect(),
        }
    }

    /// Where `m` stands among the networks whose `costs` (per row) are at most `limit`: its
    /// first training among their test accuracies, its mean among their means, each row
    /// counted once per architecture it stands for, as `place` counts.
    pub fn place_within(&self, costs: &[f64], limit: f64, m: &Measured) -> BudgetPlacement {
        let rank = |values: &[f64], x: f64| {
            let (mut below, mut all) = (0usize, 0usize);
            for ((&v, &cost), &w) in values.iter().zip(costs).zip(&self.weight) {
                if cost <= limit {
                    all += w;
                    if v < x {
                        below += w;
                    }
                }
            }
            100.0 * below as f64 / all.max(1) as f64
        };
        BudgetPlacement {
            percentile: rank(&self.test, m.tests[0]),
            mean_percentile: rank(&self.mean, mean_of(&m.tests)),
        }
    }

    /// Share of the architectures with a lower mean test accuracy than `row`'s, in percent.
    fn mean_percentile(&self, row: usize) -> f64 {
        Self::rank_in(&self.mean_sorted, self.mean[row])
    }

    /// The accuracy at which the best `percent` % of the architectures start.
    fn top_threshold(sorted: &[f64], percent: f64) -> f64 {
        let i = ((1.0 - percent / 100.0) * sorted.len() as f64) as usize;
        sorted[i.min(sorted.len() - 1)]
    }

    fn rank_in(sorted: &[f64], x: f64) -> f64 {
        100.0 * sorted.partition_point(|&v| v < x) as f64 / sorted.len() as f64
    }

    /// Share of the table's architectures with a lower test accuracy than `acc`, in percent.
    pub fn test_percentile(&self, acc: f64) -> f64 {
        Self::rank_in(&self.test_sorted, acc)
    }

    /// The test percentile of the architectures a perfect search by validation accuracy would
    /// pick: the `k` best rows by final validation accuracy (ties broken by row order), each
    /// row counted once per architecture it stands for; `percentile` ranks a row.
    fn oracle_by_validation(&self, k: usize, percentile: impl Fn(usize) -> f64) -> (f64, f64) {
        Self::oracle(&self.val, &self.oracle_weight, k, percentile)
    }

    /// Markdown rows of [`Self::oracle_by_validation`] for 1, 5, 20 and 100 architectures.
    fn validation_oracle_rows(&self, percentile: impl Fn(usize) -> f64) -> String {
        [1, 5, 20, 100]
            .iter()
            .map(|&k| {
                let (mean, worst) = self.oracle_by_validation(k, &percentile);
                format!("| {k} | {mean:.1} ({worst:.1}) |\n")
            })
            .collect()
    }

    /// Random search given `trainings` trainings: that many architectures drawn uniformly
    /// (each row as often as the architectures it stands for), the best by final validation
    /// accuracy kept; where its pick stands, averaged over seeded repetitions.
    pub fn random_search(&self, trainings: usize) -> RandomSearchPlace {
        let picks = self.random_search_picks(trainings, Self::RANDOM_SEARCHES, |_| true);
        let average = |place: &dyn Fn(usize) -> f64| {
            picks.iter().map(|&row| place(row)).sum::<f64>() / picks.len() as f64
        };
        RandomSearchPlace {
            percentile: average(&|row| self.test_percentile(self.test[row])),
            mean_percentile: average(&|row| self.mean_percentile(row)),
            repeats_percentile: (!self.repeats.is_empty()).then(|| {
                average(&|row| mean_of(&self.place(&self.measured(row)).repeat_percentiles))
            }),
        }
    }

    /// Random search given `trainings` trainings among the networks whose `costs` are at most
    /// `limit`: its pick's mean place among them, as `place_within` ranks.
    pub fn random_search_within(
        &self,
        trainings: usize,
        costs: &[f64],
        limit: f64,
    ) -> BudgetPlacement {
        let picks =
            self.random_search_picks(trainings, Self::RANDOM_SEARCHES, |row| costs[row] <= limit);
        let places: Vec<BudgetPlacement> = picks
            .iter()
            .map(|&row| self.place_within(costs, limit, &self.measured(row)))
            .collect();
        BudgetPlacement {
            percentile: mean_of(&places.iter().map(|p| p.percentile).collect::<Vec<_>>()),
            mean_percentile: mean_of(&places.iter().map(|p| p.mean_percentile).collect::<Vec<_>>()),
        }
    }

    /// The rows `searches` seeded random searches of `trainings` trainings each would pick,
    /// drawing only `eligible` rows.
    pub fn random_search_picks(
        &self,
        trainings: usize,
        searches: usize,
        eligible: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let cumulative: Vec<usize> = self
            .weight
            .iter()
            .enumerate()
            .scan(0, |sum, (row, &w)| {
                if eligible(row) {
                    *sum += w;
                }
                Some(*sum)
            })
            .collect();
        let total = cumulative.last().copied().unwrap_or(0).max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(0x4A4D ^ trainings as u64);
        (0..searches)
            .map(|_| {
                let mut best: Option<usize> = None;
                for _ in 0..trainings.max(1) {
                    let x = rng.random_range(0..total);
                    let row = cumulative.partition_point(|&c| c <= x);
                    if best.is_none_or(|b| self.val[row] > self.val[b]) {
                        best = Some(row);
                    }
                }
                best.expect("one draw at least")
            })
            .collect()
    }

    /// The random-search section: each pick's percentile in the table (the training that
    /// chose it) and trained again.
    pub fn retrained_markdown(&self, k: usize, picks: &[(usize, Reading)]) -> String {
        let mut md = format!(
            "\n## Random search of {k} trainings, its picks trained again\n\n{} simulated \
             searches; each pick trained {} more times with the table's recipe. In the table, \
             its percentile counts the luck of the training that chose it; trained again, it \
             does not.\n\n| pick | percentile in the table | trained again: first, mean of all |\n|---|---|---|\n",
            picks.len(),
            self.trainings()
        );
        let (mut table_pct, mut first, mut mean) = (Vec::new(), Vec::new(), Vec::new());
        for (row, r) in picks {
            let t = self.test_percentile(self.test[*row]);
            md.push_str(&format!(
                "| {} | {t:.1} | {:.1}, {:.1} |\n",
                arch_cell(std::iter::once(r.arch.as_str())),
                r.place.percentile,
                r.place.mean_percentile
            ));
            table_pct.push(t);
            first.push(r.place.percentile);
            mean.push(r.place.mean_percentile);
        }
        md.push_str(&format!(
            "| mean (worst) | {:.1} ({:.1}) | {:.1} ({:.1}), {:.1} ({:.1}) |\n",
            mean_std(&table_pct).0,
            min(&table_pct),
            mean_std(&first).0,
            min(&first),
            mean_std(&mean).0,
            min(&mean)
        ));
        md
    }

    /// The `k` best rows by `by` (ties broken by row order), each row counted once per
    /// architecture it stands for, ranked by `percentile`: their mean and worst.
    fn oracle(
        by: &[f64],
        weight: &[usize],
        k: usize,
        percentile: impl Fn(usize) -> f64,
    ) -> (f64, f64) {
        let mut order: Vec<usize> = (0..by.len()).collect();
        order.sort_by(|&a, &b| by[b].total_cmp(&by[a]));
        let (mut sum, mut n, mut worst) = (0.0, 0usize, f64::INFINITY);
        for &row in &order {
            if n >= k {
                break;
            }
            let p = percentile(row);
            let w = weight[row].min(k - n);
            sum += p * w as f64;
            n += w;
            worst = worst.min(p);
        }
        (sum / n as f64, worst)
    }

    /// The noise section of the summary.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "\n## How noisy the table is\n\nEvery network was trained once; its test accuracy is \
             measured on {} images (one image = {:.2} points) and its validation accuracy on {}. \
             A perfect search by the table's own validation accuracy (the same training run) \
             would pick architectures at these test percentiles:\n\n\
             | the k best by validation accuracy | their test percentile, mean (worst) |\n|---|---|\n",
            self.test_images,
            100.0 / self.test_images as f64,
            self.val_images
        );
        md.push_str(&self.validation_oracle_rows(|row| self.test_percentile(self.test[row])));
        md.push_str(&format!(
            "\nKendall tau between the table's validation and test accuracy over its {} distinct \
             networks: {:.3}. A second measurement of the same trained networks ranks them no \
             better than that, so it is the scale to read SPOS's tau on.\n",
            self.val.len(),
            kendall_tau(&self.val, &self.test)
        ));
        md.push_str(
            "\nThe \"pooled percentile\" column ranks the derived architecture by its validation \
             and test accuracy pooled (weighted by image counts), which halves the measurement \
             noise of either alone.\n",
        );
        if !self.repeats.is_empty() {
            md.push_str(&self.repeats_markdown());
        }
        md
    }

    /// What the repeat tables add: agreement between independent trainings, and the mean.
    fn repeats_markdown(&self) -> String {
        let n = self.trainings();
        let mut md = format!(
            "\n## The mean of {n} trainings\n\nEvery network was also trained with {} other \
             study seed(s) (another data split, other initial weights and batch order). Kendall \
             tau between the test accuracies of independent trainings:",
            n - 1
        );
        for (i, r) in self.repeats.iter().enumerate() {
            md.push_str(&format!(
                " table vs repeat {}: {:.3};",
                i + 1,
                kendall_tau(&self.test, r)
            ));
        }
        if self.repeats.len() >= 2 {
            md.push_str(&format!(
                " repeat 1 vs repeat 2: {:.3};",
                kendall_tau(&self.repeats[0], &self.repeats[1])
            ));
        }
        let t = |sorted: &[f64], p| 100.0 * Self::top_threshold(sorted, p);
        md.push_str(&format!(
            " the table's test accuracy vs the mean: {:.3}.\n\n\
             The top 10 % start at {:.2} % by one training and at {:.2} % by the mean; the top \
             2 % at {:.2} % and {:.2} %. The \"mean percentile\" column ranks the derived \
             architecture by its mean test accuracy over the {n} trainings. A perfect search by \
             the table's validation accuracy would pick architectures at these mean \
             percentiles:\n\n| the k best by validation accuracy | their mean percentile, mean \
             (worst) |\n|---|---|\n",
            kendall_tau(&self.test, &self.mean),
            t(&self.test_sorted, 10.0),
            t(&self.mean_sorted, 10.0),
            t(&self.test_sorted, 2.0),
            t(&self.mean_sorted, 2.0),
        ));
        md.push_str(&self.validation_oracle_rows(|row| self.mean_percentile(row)));
        md.push_str(
            "\nHow well the table's own best networks hold their place when trained again: the k \
             best by the table's test accuracy (the measurement its percentiles rank by), at their \
             test percentile in each independent training:\n\n| the k best by the table's test \
             accuracy |",
        );
        for i in 0..self.repeats.len() {
            md.push_str(&format!(
                " test percentile in repeat {}, mean (worst) |",
                i + 1
            ));
        }
        md.push_str(&format!("\n|---|{}\n", "---|".repeat(self.repeats.len())));
        // The last row: the best 10 % (of the architectures, or of a sample's networks).
        let tenth = self.oracle_weight.iter().sum::<usize>().div_ceil(10);
        let mut ks = vec![1, 5, 20, 100, tenth];
        ks.sort_unstable();
        ks.dedup();
        for k in ks {
            md.push_str(&format!("| {k} |"));
            for (r, sorted) in self.repeats.iter().zip(&self.repeats_sorted) {
                let (mean, worst) = Self::oracle(&self.test, &self.oracle_weight, k, |row| {
                    Self::rank_in(sorted, r[row])
                });
                md.push_str(&format!(" {mean:.1} ({worst:.1}) |"));
            }
            md.push('\n');
        }
        md
    }
}
