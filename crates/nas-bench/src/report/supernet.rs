//! The one-shot part of a study's report: what a `darts` / `darts-minus` / `drnas` / `gdas`
//! strategy stored of its supernet search (the architecture weights and the derived
//! architecture after every epoch, perturbation-based selection's decisions), as CSV files,
//! a chart of how sure the search became of each choice, and a section of `report.md`.

use std::fmt::Write as _;

use nas_core::oneshot::{SupernetRecord, arch_of};
use nas_core::space::SearchSpace;
use nas_plugin::ChoiceKind;

use super::plot::{Chart, Line};
use super::table::{Csv, csv_number, markdown_table};

/// Rows of the epoch table beyond which only the epochs that changed the derived
/// architecture (and the first and last) are shown.
const ALL_EPOCHS_UP_TO: usize = 20;

/// One one-shot strategy's stored search, with the names to print it by.
pub struct SupernetSearch<'a> {
    /// The strategy's position among the study's `[[strategy]]` tables.
    pub index: usize,
    /// Its `plugin` name (`darts`, ...).
    pub name: &'a str,
    pub record: &'a SupernetRecord,
    /// `Some(epochs in all)` when the record is the supernet checkpoint's: the search has
    /// derived nothing yet.
    pub unfinished: Option<usize>,
    /// The study's space (with `input` and `classes` resolved), for choice and option names
    /// and architecture strings; `None` prints indices.
    pub space: Option<&'a dyn SearchSpace>,
}

impl SupernetSearch<'_> {
    /// The file stem of this search's chart: `supernet-<index>-<name>`.
    pub fn stem(&self) -> String {
        format!("supernet-{}-{}", self.index, self.name)
    }

    fn choice_name(&self, choice: usize) -> String {
        self.space
            .and_then(|s| s.descriptor().choices.get(choice))
            .map_or_else(|| format!("choice {choice}"), |c| c.name.clone())
    }

    fn option_name(&self, choice: usize, option: usize) -> String {
        let kind = self
            .space
            .and_then(|s| s.descriptor().choices.get(choice))
            .map(|c| &c.kind);
        match kind {
            Some(ChoiceKind::Categorical { options }) if option < options.len() => {
                options[option].clone()
            }
            Some(ChoiceKind::Integer { low, high }) if *low + option as i64 <= *high => {
                (low + option as i64).to_string()
            }
            _ => format!("option {option}"),
        }
    }

    /// The architecture as the space prints it (option indices where it cannot).
    pub fn arch(&self, choices: &[usize]) -> String {
        arch_of(self.space, choices)
    }

    /// The weight of each choice's finally chosen option (the first proposed architecture;
    /// before the search ends, the last epoch's derived one) after every epoch, a line per
    /// choice: how early and how firmly the search settled on what it chose. `None` when no
    /// epoch holds weights (SPOS learns none).
    pub fn chart(&self) -> Option<Chart> {
        let last = self
            .record
            .history
            .iter()
            .rfind(|e| !e.probabilities.is_empty() && !e.derived.is_empty())?;
        let chosen = self.record.derived.first().unwrap_or(&last.derived);
        let lines = chosen
            .iter()
            .enumerate()
            .map(|(choice, &option)| Line {
                name: format!(
                    "{}: {}",
                    self.choice_name(choice),
                    self.option_name(choice, option)
                ),
                points: self
                    .record
                    .history
                    .iter()
                    .filter_map(|e| {
                        let w = e.probabilities.get(choice)?.get(option)?;
                        Some((e.epoch as f64, *w))
                    })
                    .collect(),
                ..Line::default()
            })
            .collect();
        Some(Chart {
            title: format!(
                "{} (strategy {}): weight of each choice's chosen option",
                self.name, self.index
            ),
            x_label: "supernet epoch".into(),
            y_label: "architecture weight".into(),
            lines,
            legend_top: false,
            ..Chart::default()
        })
    }
}

/// `supernet_weights.csv`: strategy, index, epoch, choice, option, weight: every
/// architecture weight after every epoch, by name.
pub fn weights_csv(searches: &[SupernetSearch<'_>]) -> String {
    let mut csv = Csv::new(&["strategy", "index", "epoch", "choice", "option", "weight"]);
    for s in searches {
        for e in &s.record.history {
            for (choice, weights) in e.probabilities.iter().enumerate() {
                for (option, w) in weights.iter().enumerate() {
                    csv.row(&[
                        s.name.to_string(),
                        s.index.to_string(),
                        e.epoch.to_string(),
                        s.choice_name(choice),
                        s.option_name(choice, option),
                        w.to_string(),
                    ]);
                }
            }
        }
    }
    csv.into_string()
}

/// `supernet_epochs.csv`: a row per strategy and epoch with its losses, accuracies,
/// schedules, seconds and derived architecture.
pub fn epochs_csv(searches: &[SupernetSearch<'_>]) -> String {
    let mut csv = Csv::new(&[
        "strategy",
        "index",
        "epoch",
        "train_loss",
        "train_accuracy",
        "arch_loss",
        "arch_accuracy",
        "lr",
        "tau",
        "aux_beta",
        "beta_decay",
        "random_smoothing",
        "expected_cost",
        "seconds",
        "derived",
    ]);
    for s in searches {
        for e in &s.record.history {
            csv.row(&[
                s.name.to_string(),
                s.index.to_string(),
                e.epoch.to_string(),
                csv_number(Some(e.train_loss)),
                csv_number(Some(e.train_accuracy)),
                csv_number(e.arch_loss),
                csv_number(e.arch_accuracy),
                csv_number(Some(e.lr)),
                csv_number(e.tau),
                csv_number(e.aux_beta),
                csv_number(e.beta_decay),
                csv_number(e.random_smoothing),
                csv_number(e.expected_cost),
                csv_number(Some(e.seconds)),
                if e.derived.is_empty() {
                    String::new()
                } else {
                    s.arch(&e.derived)
                },
            ]);
        }
    }
    csv.into_string()
}

fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The `report.md` section of one search: its epochs (those that changed the derived
/// architecture where there are many), the final weights of every choice, the selection's
/// decisions and the architectures proposed as trials.
pub fn section(md: &mut String, s: &SupernetSearch<'_>, chart_file: Option<&str>) {
    let h = &s.record.history;
    let _ = writeln!(
        md,
        "## Supernet search: `{}` (strategy {})\n",
        s.name, s.index
    );
    let Some(last) = h.last() else {
        let _ = writeln!(md, "No epoch trained yet.\n");
        return;
    };
    let seconds: f64 = h.iter().map(|e| e.seconds).sum();
    if let Some(epochs) = s.unfinished {
        let _ = writeln!(
            md,
            "Not finished: {} of {epochs} epochs trained; the supernet still trains, or the \
             study stopped while it did (it resumes from `oneshot/{}-{}.ckpt`, which these \
             epochs come from).\n",
            h.len(),
            s.index,
            s.name
        );
    }
    let _ = writeln!(
        md,
        "{} epochs trained in {seconds:.1} s. Files: `supernet_epochs.csv` (every epoch), \
         `supernet_weights.csv` (every architecture weight after every epoch){}.\n",
        h.len(),
        chart_file.map_or(String::new(), |f| format!(", `{f}`"))
    );
    epochs_table(md, s);
    final_weights(md, s, last.epoch, &last.probabilities);
    decisions_table(md, s);
    proposals(md, s);
    if let Some(f) = chart_file {
        let _ = writeln!(md, "![{} architecture weights]({f})\n", s.name);
    }
}

/// The epochs (only the first, the last and those that changed the derived architecture
/// when there are more than [`ALL_EPOCHS_UP_TO`]).
fn epochs_table(md: &mut String, s: &SupernetSearch<'_>) {
    let h = &s.record.history;
    let shown: Vec<usize> = if h.len() <= ALL_EPOCHS_UP_TO {
        (0..h.len()).collect()
    } else {
        (0..h.len())
            .filter(|&i| i == 0 || i + 1 == h.len() || h[i].derived != h[i - 1].derived)
            .collect()
    };
    if shown.len() < h.len() {
        let _ = writeln!(
            md,
            "The first and last epochs and those that changed the derived architecture:\n"
        );
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|&i| {
            let e = &h[i];
            vec![
                e.epoch.to_string(),
                fixed(Some(e.train_loss), 4),
                fixed(Some(e.train_accuracy), 4),
                fixed(e.arch_loss, 4),
                fixed(e.arch_accuracy, 4),
                fixed(Some(e.seconds), 1),
                if e.derived.is_empty() {
                    "-".into()
                } else {
                    format!("`{}`", s.arch(&e.derived))
                },
            ]
        })
        .collect();
    md.push_str(&markdown_table(
        &[
            "epoch",
            "train loss",
            "train accuracy",
            "architecture loss",
            "architecture accuracy",
            "seconds",
            "derived architecture",
        ],
        &rows,
    ));
    md.push('\n');
}

/// The two largest weights of every choice after the last epoch.
fn final_weights(md: &mut String, s: &SupernetSearch<'_>, epoch: usize, weights: &[Vec<f64>]) {
    if weights.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Architecture weights after epoch {epoch} (the two largest per choice):\n"
    );
    let rows: Vec<Vec<String>> = weights
        .iter()
        .enumerate()
        .map(|(choice, w)| {
            let mut order: Vec<usize> = (0..w.len()).collect();
            order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
            let top = |k: usize| {
                order.get(k).map_or_else(
                    || "-".into(),
                    |&o| format!("{} {:.3}", s.option_name(choice, o), w[o]),
                )
            };
            vec![s.choice_name(choice), top(0), top(1)]
        })
        .collect();
    md.push_str(&markdown_table(&["choice", "largest", "second"], &rows));
    md.push('\n');
}

/// Perturbation-based selection's decisions, with the accuracy without each option.
fn decisions_table(md: &mut String, s: &SupernetSearch<'_>) {
    if !s.record.decisions.is_empty() {
        let _ = writeln!(
            md,
            "Perturbation-based selection: the supernet's validation accuracy without each \
             option; the option whose removal cost most was kept:\n"
        );
        let rows: Vec<Vec<String>> = s
            .record
            .decisions
            .iter()
            .map(|d| {
                let without = d
                    .accuracy_without
                    .iter()
                    .enumerate()
                    .map(|(o, a)| format!("{} {a:.4}", s.option_name(d.choice, o)))
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![
                    d.epoch.to_string(),
                    s.choice_name(d.choice),
                    s.option_name(d.choice, d.option),
                    without,
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &["after epoch", "choice", "kept", "accuracy without"],
            &rows,
        ));
        md.push('\n');
    }
}

/// The derived architectures in the order they become trials.
fn proposals(md: &mut String, s: &SupernetSearch<'_>) {
    if !s.record.derived.is_empty() {
        let _ = writeln!(
            md,
            "Derived architectures, most likely first ({} proposed as trials):\n",
            s.record.proposed
        );
        for (i, d) in s.record.derived.iter().enumerate() {
            let _ = writeln!(md, "{}. `{}`", i + 1, s.arch(d));
        }
        md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_core::space::{SpaceConfig, build_space};

    /// Two epochs of a two-choice search (hand-written, as a stored state reads).
    fn record() -> SupernetRecord {
        let epoch = |epoch: usize, w: [f64; 2], derived: [usize; 2]| {
            serde_json::json!({
                "epoch": epoch, "train_loss": 1.0, "train_accuracy": 0.5,
                "arch_loss": 1.1, "arch_accuracy": 0.4, "lr": 0.01, "tau": null,
                "aux_beta": null, "seconds": 2.0,
                "probabilities": [[w[0], 1.0 - w[0]], [w[1], 1.0 - w[1]]],
                "derived": derived,
            })
        };
        serde_json::from_value(serde_json::json!({
            "history": [epoch(1, [0.6, 0.5], [0, 0]), epoch(2, [0.7, 0.2], [0, 1])],
            "derived": [[0, 1], [1, 1]],
            "proposed": 1,
        }))
        .unwrap()
    }

    #[test]
    fn without_the_space_choices_options_and_architectures_print_as_indices() {
        let r = record();
        let s = SupernetSearch {
            index: 1,
            name: "gdas",
            record: &r,
            unfinished: None,
            space: None,
        };
        let csv = weights_csv(std::slice::from_ref(&s));
        assert_eq!(csv.lines().count(), 1 + 2 * 2 * 2, "{csv}");
        assert!(csv.contains("gdas,1,2,choice 1,option 1,0.8"), "{csv}");
        let mut md = String::new();
        section(&mut md, &s, Some("supernet-1-gdas.svg"));
        assert!(
            md.contains("| choice 0 | option 0 0.700 | option 1 0.300 |"),
            "{md}"
        );
        assert!(md.contains("1. `0,1`\n2. `1,1`"), "{md}");
        // The chart follows each choice's option in the first proposal (`[0, 1]`).
        let chart = s.chart().unwrap();
        assert_eq!(chart.lines[1].name, "choice 1: option 1");
        assert_eq!(chart.lines[1].points, vec![(1.0, 0.5), (2.0, 0.8)]);
        // Before the search has derived anything, the last epoch's derived option.
        let mut running = record();
        running.derived.clear();
        running.history[1].derived = vec![1, 0];
        let s = SupernetSearch {
            record: &running,
            ..s
        };
        let chart = s.chart().unwrap();
        assert_eq!(chart.lines[0].name, "choice 0: option 1");
        assert_eq!(
            chart.lines[0].points,
            vec![(1.0, 0.4), (2.0, 0.30000000000000004)]
        );
    }

    #[test]
    fn an_architecture_the_space_cannot_read_prints_as_indices() {
        let space = build_space(
            &SpaceConfig::from_json(&serde_json::json!({
                "kind": "cell", "input": [1, 8, 8], "classes": 10, "channels": 4,
            }))
            .unwrap(),
        )
        .unwrap();
        let r = record();
        let s = SupernetSearch {
            index: 0,
            name: "darts",
            record: &r,
            unfinished: None,
            space: Some(space.as_ref()),
        };
        // Two choices where the cell space has six: not its architecture.
        assert_eq!(s.arch(&[0, 1]), "0,1");
        assert_eq!(s.choice_name(0), "edge_1_0");
        assert_eq!(s.option_name(0, 3), "nor_conv_3x3");
        let six = s.arch(&[3; 6]);
        assert!(six.starts_with("|nor_conv_3x3~0|"), "{six}");
    }
}
