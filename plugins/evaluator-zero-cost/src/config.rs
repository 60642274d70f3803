//! The evaluator's TOML table (as JSON) -> [`ZeroCostConfig`]. Unknown keys are errors that
//! name the key and list the accepted ones.

use serde_json::{Map, Value};

/// Every proxy, in the order metrics are computed and documented.
pub const PROXIES: &[&str] = &[
    "params",
    "flops",
    "naswot",
    "synflow",
    "grad_norm",
    "snip",
    "jacob_cov",
    "zen",
    "zc_combined",
];

/// What `zc_combined` is computed from (they are computed, and reported, whenever it is).
pub const COMBINED_FROM: &[&str] = &["naswot", "synflow", "params"];

const OPTIONS: &[&str] = &[
    "proxies",
    "batch",
    "seed",
    "data",
    "keep_top",
    "threshold",
    "rank_by",
    "warmup",
    "flops_convention",
    "label",
    "min_labels",
    "learn_choices",
];

/// Options only the learned ranking reads.
const LEARN_OPTIONS: &[&str] = &["label", "min_labels", "learn_choices"];

pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_WARMUP: usize = 10;
pub const DEFAULT_RANK_BY: &str = "zc_combined";
/// `rank_by` value of the learned ranking.
pub const LEARNED: &str = "learned";
pub const DEFAULT_MIN_LABELS: usize = 20;

/// Where the data-dependent proxies (naswot, grad_norm, snip, jacob_cov) get their batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// Training samples of the study's `[data]` table, normalized as for training.
    Real,
    /// Standard-normal inputs with uniform random labels.
    Random,
}

/// When a candidate is pruned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Kept when its value is among the best `fraction` of the values seen so far (itself
    /// included).
    KeepTop(f64),
    /// Kept when its value is at least the threshold.
    Threshold(f64),
}

/// The pruning cascade: candidates that fail `rule` on metric `rank_by` (higher is better)
/// come back `Pruned` once `warmup` candidates have been seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Cascade {
    /// A proxy, or [`LEARNED`].
    pub rank_by: String,
    pub rule: Rule,
    pub warmup: usize,
    /// Set when `rank_by` is [`LEARNED`].
    pub learn: Option<Learn>,
}

/// The learned ranking (`rank_by = "learned"`): a model of the study's own labelled trials,
/// from the proxies (and the candidate's choices) to a label, ranks the candidates; until
/// `min_labels` trials are labelled, `zc_combined` ranks them.
#[derive(Clone, Debug, PartialEq)]
pub struct Learn {
    /// The metric learned (higher is better); `None`: the study's first objective.
    pub label: Option<String>,
    pub min_labels: usize,
    /// Whether the choice values are features too.
    pub choices: bool,
}

/// How `flops` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlopsConvention {
    /// The core's count (NAS-Bench-201's convention), the same as the `flops` the core reports.
    Nb201,
    /// NASLib's zero-cost data convention, to compare with its published scores.
    Naslib,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ZeroCostConfig {
    /// Requested proxies, in [`PROXIES`] order.
    pub proxies: Vec<String>,
    /// Whether `proxies` was given: then a proxy that cannot score a network is an error; by
    /// default it is skipped (and named in the result's details).
    pub explicit: bool,
    pub batch: usize,
    /// Seed for weights and random inputs; the study's seed when absent.
    pub seed: Option<u64>,
    /// `None`: real data when the study has a `[data]` table, random otherwise.
    pub data: Option<DataSource>,
    pub cascade: Option<Cascade>,
    pub flops_convention: FlopsConvention,
}

impl Default for ZeroCostConfig {
    fn default() -> Self {
        ZeroCostConfig {
            proxies: PROXIES.iter().map(|s| s.to_string()).collect(),
            explicit: false,
            batch: DEFAULT_BATCH,
            seed: None,
            data: None,
            cascade: None,
            flops_convention: FlopsConvention::Nb201,
        }
    }
}

impl ZeroCostConfig {
    pub fn wants(&self, proxy: &str) -> bool {
        self.proxies.iter().any(|p| p == proxy)
    }
}

fn fail(msg: impl std::fmt::Display) -> String {
    format!("zero-cost evaluator: {msg}")
}

fn list(items: &[&str]) -> String {
    items.join(", ")
}

/// Reads the evaluator's table.
pub fn parse_config(config: &Value) -> Result<ZeroCostConfig, String> {
    let empty = Map::new();
    let map = match config {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => return Err(fail(format!("expected a table of options, found {other}"))),
    };
    if let Some(key) = map.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(fail(format!(
            "unknown option `{key}` in [[evaluator]]; accepted: {}",
            list(OPTIONS)
        )));
    }
    let mut cfg = ZeroCostConfig::default();

    if let Some(v) = map.get("proxies") {
        let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            fail(format!(
                "`proxies` must be a non-empty list of names, found {v}"
            ))
        })?;
        let mut wanted = Vec::new();
        for item in items {
            let name = item
                .as_str()
                .ok_or_else(|| fail(format!("`proxies` entries must be strings, found {item}")))?;
            if !PROXIES.contains(&name) {
                return Err(fail(format!(
                    "unknown proxy `{name}` in `proxies`; known: {}",
                    list(PROXIES)
                )));
            }
            wanted.push(name);
        }
        if wanted.contains(&"zc_combined") {
            wanted.extend_from_slice(COMBINED_FROM);
        }
        cfg.proxies = PROXIES
            .iter()
            .filter(|p| wanted.contains(p))
            .map(|s| s.to_string())
            .collect();
        cfg.explicit = true;
    }

    if let Some(v) = map.get("batch") {
        cfg.batch = v
            .as_u64()
            .filter(|&b| b >= 2)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| {
                fail(format!(
                    "`batch` must be an integer >= 2 (BatchNorm needs two samples), found {v}"
                ))
            })?;
    }
    if let Some(v) = map.get("seed") {
        cfg.seed =
            Some(v.as_u64().ok_or_else(|| {
                fail(format!("`seed` must be a non-negative integer, found {v}"))
            })?);
    }
    if let Some(v) = map.get("data") {
        cfg.data = Some(match v.as_str() {
            Some("real") => DataSource::Real,
            Some("random") => DataSource::Random,
            _ => {
                return Err(fail(format!(
                    "`data` must be \"real\" or \"random\", found {v}"
                )));
            }
        });
    }

    if let Some(v) = map.get("flops_convention") {
        cfg.flops_convention = match v.as_str() {
            Some("nb201") => FlopsConvention::Nb201,
            Some("naslib") => FlopsConvention::Naslib,
            _ => {
                return Err(fail(format!(
                    "`flops_convention` must be \"nb201\" (the core's count) or \"naslib\" \
                     (NASLib's zero-cost data), found {v}"
                )));
            }
        };
    }

    let number = |key: &str| -> Result<Option<f64>, String> {
        map.get(key)
            .map(|v| {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| fail(format!("`{key}` must be a number, found {v}")))
            })
            .transpose()
    };
    let keep_top = number("keep_top")?;
    let threshold = number("threshold")?;
    let rule = match (keep_top, threshold) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "`keep_top` and `threshold` are both set; prune by one of them",
            ));
        }
        (Some(q), None) => {
            if !(q > 0.0 && q <= 1.0) {
                return Err(fail(format!(
                    "`keep_top` is the fraction of candidates kept, in (0, 1]; found {q}"
                )));
            }
            Some(Rule::KeepTop(q))
        }
        (None, Some(t)) => Some(Rule::Threshold(t)),
        (None, None) => None,
    };
    let warmup = match map.get("warmup") {
        None => DEFAULT_WARMUP,
        Some(v) => v
            .as_u64()
            .and_then(|w| usize::try_from(w).ok())
            .ok_or_else(|| {
                fail(format!(
                    "`warmup` must be a non-negative integer, found {v}"
                ))
            })?,
    };
    let rank_by = match map.get("rank_by") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| fail(format!("`rank_by` must be a proxy name, found {v}")))?
                .to_string(),
        ),
    };
    let learned = rank_by.as_deref() == Some(LEARNED);
    if !learned && let Some(key) = LEARN_OPTIONS.iter().find(|k| map.contains_key(**k)) {
        return Err(fail(format!(
            "`{key}` only applies to the learned ranking (`rank_by = \"{LEARNED}\"`)"
        )));
    }
    match rule {
        None => {
            if let Some(key) = ["rank_by", "warmup"].iter().find(|k| map.contains_key(**k)) {
                return Err(fail(format!(
                    "`{key}` only applies to the pruning cascade; add `keep_top` or `threshold`"
                )));
            }
        }
        Some(Rule::Threshold(_)) if learned => {
            return Err(fail(format!(
                "`rank_by = \"{LEARNED}\"` ranks candidates against each other; prune with \
                 `keep_top`, not `threshold` (the model's scale changes as it learns)"
            )));
        }
        Some(rule) if learned => {
            if !cfg.wants(DEFAULT_RANK_BY) {
                return Err(fail(format!(
                    "`rank_by = \"{LEARNED}\"` ranks by `{DEFAULT_RANK_BY}` until the study has \
                     labelled trials; add it to `proxies`"
                )));
            }
            let label = match map.get("label") {
                None => None,
                Some(v) => Some(
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| fail(format!("`label` must be a metric name, found {v}")))?
                        .to_string(),
                ),
            };
            let min_labels = match map.get("min_labels") {
                None => DEFAULT_MIN_LABELS,
                Some(v) => v
                    .as_u64()
                    .filter(|&n| n >= 2)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        fail(format!(
                            "`min_labels` must be an integer >= 2 (a ranking needs two \
                             labels), found {v}"
                        ))
                    })?,
            };
            let choices = match map.get("learn_choices") {
                None => true,
                Some(v) => v.as_bool().ok_or_else(|| {
                    fail(format!("`learn_choices` must be true or false, found {v}"))
                })?,
            };
            cfg.cascade = Some(Cascade {
                rank_by: LEARNED.to_string(),
                rule,
                warmup,
                learn: Some(Learn {
                    label,
                    min_labels,
                    choices,
                }),
            });
        }
        Some(rule) => {
            let rank_by = rank_by.unwrap_or_else(|| DEFAULT_RANK_BY.to_string());
            if !cfg.wants(&rank_by) {
                return Err(fail(format!(
                    "`rank_by = \"{rank_by}\"` is not among the computed proxies ({}); add it \
                     to `proxies` or rank by one of them",
                    cfg.proxies.join(", ")
                )));
            }
            cfg.cascade = Some(Cascade {
                rank_by,
                rule,
                warmup,
                learn: None,
            });
        }
    }
    Ok(cfg)
}
