//! Training-free baselines for SPOS (`--proxies`): the `zero-cost` evaluator, loaded as a
//! study loads it (the plugin's library next to this program), scores the very networks SPOS
//! scores for each seed, on a batch of the table's own training data. Per proxy: Kendall's
//! tau with the table's test accuracies (and their means over the repeats), and where the
//! table puts the network the proxy scores best, as SPOS's pick is placed.

use std::time::Instant;

use nas_table::Table;

use crate::Result;
use crate::stats::kendall_tau;

/// One proxy on one seed's networks.
pub struct ProxyRun {
    pub seed: u64,
    pub proxy: String,
    /// Kendall's tau of the proxy with the table's test accuracies, and with their means.
    pub tau_test: f64,
    pub tau_mean: f64,
    /// The best-scored network (the first of equal scores, in SPOS's sampling order).
    pub arch: String,
    /// Seconds to score all of the seed's networks with every proxy.
    pub seconds: f64,
}

/// A `nas evaluate` config for the table's space and data with one `zero-cost` evaluator:
/// written as TOML and parsed as the command parses a user's file, so its checks apply.
pub fn evaluator_config(
    table: &Table,
    proxies: &[String],
    threads: usize,
) -> Result<nas_core::config::StudyConfig> {
    // JSON nulls (unset options) have no TOML form; the config's defaults stand for them.
    fn without_nulls(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
            other => other.clone(),
        }
    }
    let mut doc = toml::Table::new();
    doc.insert(
        "space".into(),
        toml::Value::try_from(without_nulls(&table.space))?,
    );
    doc.insert(
        "data".into(),
        toml::Value::try_from(without_nulls(&table.data))?,
    );
    let mut evaluator = toml::Table::new();
    evaluator.insert("plugin".into(), "zero-cost".into());
    evaluator.insert("batch".into(), 64.into());
    evaluator.insert("proxies".into(), toml::Value::try_from(proxies)?);
    doc.insert(
        "evaluator".into(),
        toml::Value::Array(vec![toml::Value::Table(evaluator)]),
    );
    let mut runtime = toml::Table::new();
    runtime.insert("threads".into(), (threads as i64).into());
    doc.insert("runtime".into(), toml::Value::Table(runtime));
    let name = std::path::Path::new("the zero-cost config of --proxies");
    Ok(nas_core::evaluate::parse_config(
        name,
        &toml::to_string(&doc)?,
    )?)
}

/// Scores `archs` (one seed's networks) with every proxy of `config`; `row_of` maps an
/// architecture string to its table row, `truth(row)` gives its (test, mean) accuracy.
pub fn score(
    config: &nas_core::config::StudyConfig,
    proxies: &[String],
    seed: u64,
    archs: &[String],
    row_of: impl Fn(&str) -> usize,
    truth: impl Fn(usize) -> (f64, f64),
) -> Result<Vec<ProxyRun>> {
    let started = Instant::now();
    let scored = nas_core::evaluate::evaluate(config, archs)?;
    let seconds = started.elapsed().as_secs_f64();
    let rows: Vec<usize> = scored.iter().map(|s| row_of(&s.arch)).collect();
    let tests: Vec<f64> = rows.iter().map(|&r| truth(r).0).collect();
    let means: Vec<f64> = rows.iter().map(|&r| truth(r).1).collect();
    proxies
        .iter()
        .map(|proxy| {
            let values = scored
                .iter()
                .map(|s| {
                    s.metrics.get(proxy).copied().ok_or_else(|| {
                        format!(
                            "the zero-cost evaluator gave no `{proxy}` for {} ({:?}: {}); \
                             leave the proxy it names out of --proxies",
                            s.arch,
                            s.state,
                            s.error.as_deref().unwrap_or("no error")
                        )
                    })
                })
                .collect::<std::result::Result<Vec<f64>, String>>()?;
            let best = (0..values.len())
                .reduce(|b, i| if values[i] > values[b] { i } else { b })
                .ok_or("no network to score")?;
            Ok(ProxyRun {
                seed,
                proxy: proxy.clone(),
                tau_test: kendall_tau(&values, &tests),
                tau_mean: kendall_tau(&values, &means),
                arch: scored[best].arch.clone(),
                seconds,
            })
        })
        .collect()
}
