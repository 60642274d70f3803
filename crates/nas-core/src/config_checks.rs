//! Config checks beyond the TOML schema, each an error at the offending line: the study name
//! (it becomes a folder), constraint bounds, the space kind's type, and errors found later
//! while building the `[space]`.

use std::path::{Component, Path};

use toml::Spanned;

use crate::config::{ConfigError, Locator, StudyConfig};

/// The study name becomes `runs/<name>`: it must stay a single folder name.
pub(crate) fn study_name(loc: &Locator<'_>, name: &Spanned<String>) -> Result<(), ConfigError> {
    let n = name.get_ref();
    let components: Vec<Component<'_>> = Path::new(n).components().collect();
    let one_folder =
        matches!(components.as_slice(), [Component::Normal(c)] if c.to_str() == Some(n.as_str()));
    if n.trim().is_empty() || !one_folder || n.contains(['/', '\\']) {
        return Err(loc.at(
            name.span().start,
            format!(
                "study name {n:?} must be a plain folder name (no `/`, `\\`, `..` or empty name): it names the study's folder runs/<name>; use e.g. \"my-study\", and `directory = \"...\"` to put the study elsewhere"
            ),
        ));
    }
    Ok(())
}

/// A constraint whose `min` is above its `max` accepts nothing.
pub(crate) fn constraint_bounds(
    loc: &Locator<'_>,
    metric: &str,
    at: usize,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<(), ConfigError> {
    let nan = min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan);
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(loc.at(
            at,
            format!(
                "constraint on `{metric}` has min = {lo} above max = {hi}, so no candidate can satisfy it; swap or fix the bounds"
            ),
        ));
    }
    if nan {
        return Err(loc.at(at, format!("constraint on `{metric}` has a NaN bound")));
    }
    Ok(())
}

/// `[space] kind` must be a string; anything else would read as a missing `[space]` table.
pub(crate) fn space_kind(
    loc: &Locator<'_>,
    table: &toml::Table,
    expected: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(kind) = table.get("space").and_then(|s| s.get("kind")) else {
        return Ok(None);
    };
    match kind.as_str() {
        Some(k) => Ok(Some(k.to_string())),
        None => {
            let at = loc
                .text
                .find("[space]")
                .and_then(|s| loc.text[s..].find("kind").map(|k| s + k))
                .unwrap_or(0);
            Err(loc.at(
                at,
                format!(
                    "`[space] kind` must be a string, one of: {expected} (found {} `{kind}`); e.g. kind = \"cell\"",
                    kind.type_str()
                ),
            ))
        }
    }
}

/// An error from building the space, with the file and line of the `[space]` table.
pub fn space_error(config: &StudyConfig, error: impl std::fmt::Display) -> anyhow::Error {
    let line = config
        .source
        .lines()
        .position(|l| l.trim_start().starts_with("[space]"))
        .map(|i| format!(":{}", i + 1))
        .unwrap_or_default();
    let error = error.to_string();
    let table = if error.starts_with("[space]") {
        ""
    } else {
        "[space]: "
    };
    anyhow::anyhow!("{}{line}: {table}{error}", config.path.display())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn config(study: &str, constraints: &str, space: &str) -> String {
        format!(
            r#"
[study]
{study}

[budget]
trials = 3

[space]
{space}

[[strategy]]
plugin = "random"

[[evaluator]]
plugin = "cost"

[objective]
minimize = "params"

[constraints]
{constraints}
"#
        )
    }

    fn error(text: &str) -> String {
        crate::config::parse(Path::new("s.toml"), text)
            .expect_err("an error")
            .to_string()
    }

    #[test]
    fn study_names_that_leave_runs_are_refused_at_their_line() {
        for name in ["../../etc", "a/b", "..", "", "a\\\\b", "/abs"] {
            let err = error(&config(
                &format!("name = \"{name}\""),
                "",
                "kind = \"cell\"",
            ));
            assert!(err.starts_with("s.toml:3:"), "{name}: {err}");
            assert!(err.contains("plain folder name"), "{name}: {err}");
        }
        let ok = crate::config::parse(
            Path::new("s.toml"),
            &config("name = \"my-study.v2\"", "", "kind = \"cell\""),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn a_constraint_with_min_above_max_is_refused_at_its_line() {
        let err = error(&config(
            "name = \"s\"",
            "params = { min = 100, max = 10 }",
            "kind = \"cell\"",
        ));
        assert!(err.starts_with("s.toml:21:"), "{err}");
        assert!(err.contains("min = 100 above max = 10"), "{err}");
    }

    /// `seed` on a plugin strategy is the host's; on a one-shot strategy it stays the
    /// supernet's own key.
    #[test]
    fn a_strategy_seed_is_a_whole_number_kept_apart_from_the_plugin_keys() {
        let with = |strategy: &str| {
            config("name = \"s\"", "", "kind = \"cell\"").replace(
                "plugin = \"random\"",
                &format!("plugin = \"{strategy}\"\nseed = 7"),
            )
        };
        let parsed = crate::config::parse(Path::new("s.toml"), &with("random")).unwrap();
        let spec = &parsed.strategies[0];
        assert_eq!(spec.seed, Some(7));
        assert_eq!(
            spec.config,
            serde_json::json!({}),
            "not passed to the plugin"
        );
        let parsed = crate::config::parse(Path::new("s.toml"), &with("darts")).unwrap();
        let spec = &parsed.strategies[0];
        assert_eq!(spec.seed, None);
        assert_eq!(
            spec.config,
            serde_json::json!({"seed": 7}),
            "the supernet's seed"
        );
        for bad in ["-1", "\"7\"", "1.5"] {
            let text = with("random").replace("seed = 7", &format!("seed = {bad}"));
            let err = error(&text);
            assert!(err.starts_with("s.toml:11:"), "{bad}: {err}");
            assert!(
                err.contains("`seed` must be a whole number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_space_kind_that_is_not_a_string_says_so() {
        let err = error(&config("name = \"s\"", "", "kind = 3"));
        assert!(err.starts_with("s.toml:9:1:"), "{err}");
        assert!(err.contains("must be a string"), "{err}");
        assert!(!err.contains("missing"), "{err}");
    }
}
