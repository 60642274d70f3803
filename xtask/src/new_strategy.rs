//! `cargo xtask new-strategy NAME`: a new strategy plugin crate, `plugins/strategy-NAME`,
//! from the templates in xtask/templates/strategy (a working random search with options,
//! save/restore and unit tests, ready to be turned into something smarter).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// (path inside the new crate, template text). Placeholders: `{{name}}` (the plugin name),
/// `{{lib_name}}` (the name with `_` for `-`) and `{{type_name}}` (the strategy's Rust type).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/strategy/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/strategy/src/lib.rs.tmpl"),
    ),
];

/// Longest accepted plugin name.
const MAX_NAME_LEN: usize = 40;

/// Checks the form of a plugin name: lowercase ASCII letters, digits and single inner `-`,
/// starting with a letter. The message says what is wrong and what would be accepted.
pub fn check_name(name: &str) -> Result<(), String> {
    let rule =
        "use lowercase letters, digits and `-`, starting with a letter (e.g. `best-neighbour`)";
    if name.is_empty() {
        return Err(format!("the strategy name is empty; {rule}"));
    }
    if let Some(rest) = name.strip_prefix("strategy-") {
        return Err(format!(
            "give the plugin name without the `strategy-` prefix: `cargo xtask new-strategy {rest}` \
             creates the crate strategy-{rest}"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the strategy name `{name}` is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "the strategy name `{name}` contains {bad:?}; {rule}"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "the strategy name `{name}` does not start with a letter; {rule}"
        ));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "the strategy name `{name}` has a trailing or doubled `-`; {rule}"
        ));
    }
    Ok(())
}

/// `best-neighbour` -> `BestNeighbourStrategy`. The suffix keeps the type clear of the
/// names the template imports (`Strategy`, `Proposal`, ...).
pub fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split('-') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out.push_str("Strategy");
    out
}

/// Fills in a template's placeholders for the plugin `name`.
pub fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{lib_name}}", &name.replace('-', "_"))
        .replace("{{type_name}}", &type_name(name))
}

/// Refuses a name a crate or plugin of the workspace already uses.
fn check_unused(root: &Path, name: &str) -> Result<(), String> {
    for dir in ["plugins", "tests/fixtures"] {
        let path = root.join(dir).join(format!("strategy-{name}"));
        if path.exists() {
            return Err(format!(
                "{} already exists: the strategy `{name}` is taken; choose another name",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Creates `plugins/strategy-NAME` and returns its folder.
pub fn new_strategy(root: &Path, name: &str) -> Result<PathBuf> {
    check_name(name).map_err(anyhow::Error::msg)?;
    check_unused(root, name).map_err(anyhow::Error::msg)?;
    let dir = root.join("plugins").join(format!("strategy-{name}"));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Err(e) = write_files(&dir, name) {
        // Leave nothing half-made behind.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    // Long names can push a line past rustfmt's width; formatting is a nicety, not a need.
    let _ = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(dir.join("src/lib.rs"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(dir)
}

fn write_files(dir: &Path, name: &str) -> Result<()> {
    for (path, template) in TEMPLATES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&file, render(template, name))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// The command: creates the crate and says what to do next.
pub fn run(root: &Path, name: &str) -> Result<()> {
    let dir = match new_strategy(root, name) {
        Ok(dir) => dir,
        Err(e) => bail!("cannot create the strategy `{name}`: {e:#}"),
    };
    let rel = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
    println!("created {rel}/ (Cargo.toml, src/lib.rs): the strategy `{name}`, a random search");
    println!();
    println!("next:");
    println!("  cargo test -p strategy-{name}     # its unit tests");
    println!(
        "  cargo build -p strategy-{name}    # target/debug/libstrategy_{}.so",
        name.replace('-', "_")
    );
    println!("  in a study file: [[strategy]] plugin = \"{name}\"");
    println!("  the contract and a complete example: docs/writing-a-strategy.md");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_a_reason() {
        for ok in ["tpe2", "best-neighbour", "a", "e-greedy-2"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("", "empty"),
            ("Best", "contains 'B'"),
            ("best_neighbour", "contains '_'"),
            ("best neighbour", "contains ' '"),
            ("bäst", "contains 'ä'"),
            ("2opt", "does not start with a letter"),
            ("-x", "does not start with a letter"),
            ("x-", "trailing or doubled"),
            ("a--b", "trailing or doubled"),
            ("strategy-foo", "without the `strategy-` prefix"),
        ] {
            let err = check_name(bad).expect_err(bad);
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn names_of_existing_crates_are_refused() {
        let root = crate::repo_root();
        let err = check_unused(&root, "random").unwrap_err();
        assert!(
            err.contains("plugins/strategy-random already exists"),
            "{err}"
        );
        let err = check_unused(&root, "test-panic").unwrap_err();
        assert!(err.contains("strategy-test-panic already exists"), "{err}");
        assert_eq!(check_unused(&root, "surely-not-a-plugin-yet"), Ok(()));
        // The whole command refuses before writing anything.
        let err = new_strategy(&root, "random").unwrap_err().to_string();
        assert!(err.contains("is taken"), "{err}");
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("random"), "RandomStrategy");
        assert_eq!(type_name("best-neighbour"), "BestNeighbourStrategy");
        assert_eq!(type_name("e-greedy-2"), "EGreedy2Strategy");
    }

    #[test]
    fn templates_render_every_placeholder() {
        let rendered: Vec<(&str, String)> = TEMPLATES
            .iter()
            .map(|(path, t)| (*path, render(t, "best-neighbour")))
            .collect();
        for (path, text) in &rendered {
            assert!(!text.contains("{{"), "{path} keeps a placeholder:\n{text}");
            assert!(!text.contains("}}"), "{path} keeps a placeholder:\n{text}");
        }
        let file = |p: &str| &rendered.iter().find(|(path, _)| *path == p).unwrap().1;
        let manifest = file("Cargo.toml");
        assert!(manifest.contains("name = \"strategy-best-neighbour\""));
        assert!(manifest.contains("crate-type = [\"cdylib\", \"rlib\"]"));
        assert!(manifest.contains("nas-plugin.workspace = true"));
        assert!(manifest.contains("libstrategy_best_neighbour.so"));
        let lib = file("src/lib.rs");
        assert!(lib.contains("pub const NAME: &str = \"best-neighbour\";"));
        assert!(lib.contains("impl Strategy for BestNeighbourStrategy {"));
        assert!(lib.contains("nas_plugin::export_strategy!(NAME, BestNeighbourStrategy);"));
        assert!(lib.contains("#[serde(deny_unknown_fields)]"));
    }
}
