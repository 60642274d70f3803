//! Scoring given candidates with a config's evaluator pipeline, without a search: how a user
//! checks a known architecture.

use anyhow::{Context, bail};
use nas_plugin::{EvalRequest, Metrics, TrialState};
use serde::Serialize;

use crate::config::StudyConfig;
use crate::pipeline::{Pipeline, static_metrics, violation};
use crate::space::{SearchSpace, build_space};
use crate::storage::Outcome;

/// The result for one candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    pub arch: String,
    pub values: Vec<f64>,
    pub state: TrialState,
    pub metrics: Metrics,
    pub error: Option<String>,
}

/// A candidate given by the user: the space's architecture string (an NB201 string for the
/// `cell` space) or a choice vector such as `[3, 1, 2, 0, 4, 3]` or `3,1,2,0,4,3`.
pub fn parse_candidate(space: &dyn SearchSpace, spec: &str) -> anyhow::Result<Vec<f64>> {
    let trimmed = spec.trim().trim_start_matches('[').trim_end_matches(']');
    let as_vector: Option<Vec<f64>> = trimmed
        .split(',')
        .map(|v| v.trim().parse::<f64>().ok())
        .collect();
    let values = match as_vector {
        Some(v) if !trimmed.is_empty() => v,
        _ => space.parse_arch(spec).with_context(|| {
            format!("`{spec}` is neither an architecture string of this space nor a choice vector like [0, 1, 2]")
        })?,
    };
    space
        .descriptor()
        .check(&values)
        .map_err(|e| anyhow::anyhow!("candidate `{spec}`: {e}"))?;
    Ok(values)
}

/// Loads a config for `nas evaluate`, which uses only its `[space]`, `[[evaluator]]`s,
/// `[constraints]`, `[data]` and `[runtime]`: the search tables (`[study]`, `[budget]`,
/// `[[strategy]]`, `[objective]`) may be left out. Stand-ins for the missing ones are appended
/// after the user's text, so every error still points at the user's own lines.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<StudyConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    parse_config(path, &text)
}

/// [`load_config`] for a config's text; `path` is only used in messages.
pub fn parse_config(path: &std::path::Path, text: &str) -> anyhow::Result<StudyConfig> {
    let Ok(table) = text.parse::<toml::Table>() else {
        // A syntax error: the parser reports it with its line.
        return Ok(crate::config::parse(path, text)?);
    };
    let stand_ins = [
        ("study", "[study]\nname = \"evaluate\"\n"),
        ("budget", "[budget]\ntrials = 1\n"),
        ("strategy", "[[strategy]]\nplugin = \"random\"\n"),
        ("objective", "[objective]\nminimize = \"params\"\n"),
    ];
    let mut full = text.to_string();
    for (key, table_text) in stand_ins {
        if !table.contains_key(key) {
            full.push_str("\n# not used by `nas evaluate`\n");
            full.push_str(table_text);
        }
    }
    let mut config = crate::config::parse(path, &full)?;
    config.source = text.to_string();
    Ok(config)
}

/// Evaluates each candidate with the config's pipeline; artifacts go to a temporary folder.
pub fn evaluate(config: &StudyConfig, specs: &[String]) -> anyhow::Result<Vec<Scored>> {
    if specs.is_empty() {
        bail!("give at least one candidate with --arch");
    }
    let space = build_space(&config.resolved_space()?)
        .map_err(|e| crate::config_checks::space_error(config, e))?;
    let values = specs
        .iter()
        .map(|s| parse_candidate(space.as_ref(), s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scratch = std::env::temp_dir().join(format!("nas-evaluate-{}", std::process::id()));
    let mut pipeline = Pipeline::new(
        &config.evaluators,
        &config.constraints,
        &config.runtime.resolve()?,
        config.seed,
        &scratch.display().to_string(),
        &config.data_json()?,
        crate::pipeline::evaluator_supernet(space.as_ref())?.as_ref(),
        // Scoring stands alone: no study, nothing finished to observe.
        crate::finished::FinishedTrials::default(),
    )?;
    let mut out = Vec::new();
    for (i, values) in values.into_iter().enumerate() {
        let arch = space.arch_string(&values);
        let graph = space.decode(&values)?;
        let metrics = static_metrics(&graph).map_err(|e| anyhow::anyhow!(e))?;
        let outcome = match violation(&config.constraints, &metrics) {
            Some(why) => Outcome {
                state: TrialState::Infeasible,
                metrics,
                details: serde_json::Value::Null,
                error: Some(why),
            },
            None => pipeline.run(EvalRequest {
                trial_id: i as u64 + 1,
                values: values.clone(),
                arch: arch.clone(),
                graph,
                fidelity: None,
                metrics,
                parent: None,
            }),
        };
        out.push(Scored {
            arch,
            values,
            state: outcome.state,
            metrics: outcome.metrics,
            error: outcome.error,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(out)
}
