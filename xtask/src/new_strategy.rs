//! `cargo xtask new-strategy NAME [--out DIR]`: a new strategy plugin crate from the templates
//! in xtask/templates/strategy (a working random search built on the SDK's kit, with options,
//! save/restore and the conformance test, ready to be turned into something smarter). Without
//! `--out` it is `plugins/strategy-NAME`, a workspace member; with it, `DIR/strategy-NAME`, a
//! standalone crate (its own `[workspace]`, nas-plugin by path) that builds anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// (path inside the new crate, template text). Placeholders: `{{name}}` (the plugin name),
/// `{{lib_name}}` (the name with `_` for `-`), `{{type_name}}` (the strategy's Rust type) and,
/// in the standalone manifest, `{{sdk_path}}` (crates/nas-plugin of this checkout).
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

/// The manifest of a crate made with `--out`, outside the workspace.
const STANDALONE_MANIFEST: &str = include_str!("../templates/strategy/Cargo.standalone.toml.tmpl");

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

/// The standalone manifest for `name`, depending on the SDK at `sdk` (a TOML basic string).
pub fn standalone_manifest(name: &str, sdk: &Path) -> String {
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    render(STANDALONE_MANIFEST, name).replace("{{sdk_path}}", &sdk)
}

/// Creates `plugins/strategy-NAME`, or `OUT/strategy-NAME` as a standalone crate, and returns
/// its folder.
pub fn new_strategy(root: &Path, name: &str, out: Option<&Path>) -> Result<PathBuf> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let dir = match out {
        None => {
            check_unused(root, name).map_err(anyhow::Error::msg)?;
            root.join("plugins").join(format!("strategy-{name}"))
        }
        Some(out) => {
            if !out.is_dir() {
                bail!(
                    "{} is not a folder; create it first or choose another --out",
                    out.display()
                );
            }
            let dir = out.join(format!("strategy-{name}"));
            if dir.exists() {
                bail!(
                    "{} already exists; choose another name or --out folder",
                    dir.display()
                );
            }
            dir
        }
    };
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = out.map(|_| {
        let sdk = root.join("crates").join("nas-plugin");
        standalone_manifest(name, &sdk.canonicalize().unwrap_or(sdk))
    });
    if let Err(e) = write_files(&dir, name, manifest.as_deref()) {
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

/// Writes the rendered templates; `manifest` replaces the workspace member's Cargo.toml.
fn write_files(dir: &Path, name: &str, manifest: Option<&str>) -> Result<()> {
    for (path, template) in TEMPLATES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = match manifest {
            Some(m) if *path == "Cargo.toml" => m.to_string(),
            _ => render(template, name),
        };
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// The command: creates the crate and says what to do next.
pub fn run(root: &Path, name: &str, out: Option<&Path>) -> Result<()> {
    let dir = match new_strategy(root, name, out) {
        Ok(dir) => dir,
        Err(e) => bail!("cannot create the strategy `{name}`: {e:#}"),
    };
    let lib = format!("libstrategy_{}.so", name.replace('-', "_"));
    if out.is_some() {
        println!(
            "created {}/ (Cargo.toml, src/lib.rs): the strategy `{name}`, a random search, as a \
             standalone crate using {}",
            dir.display(),
            root.join("crates/nas-plugin").display()
        );
        println!();
        println!("next, in {}:", dir.display());
        println!("  cargo test                 # its unit tests and the conformance checks");
        println!("  cargo build --release      # target/release/{lib}");
        println!(
            "  in a study file: [[strategy]] plugin = \"{}/target/release/{lib}\"",
            dir.display()
        );
        println!("  the contract and a complete example: docs/writing-a-strategy.md");
        return Ok(());
    }
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
        let err = new_strategy(&root, "random", None).unwrap_err().to_string();
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
        assert!(lib.contains("#[serde(default, deny_unknown_fields)]"));
        assert!(lib.contains("conformance::check::<BestNeighbourStrategy>"));
    }

    #[test]
    fn standalone_manifest_has_its_own_workspace_and_the_sdk_by_path() {
        let m = standalone_manifest(
            "best-neighbour",
            Path::new("/src/nas \"x\"/crates/nas-plugin"),
        );
        assert!(!m.contains("{{") && !m.contains(".workspace"), "{m}");
        assert!(m.contains("\n[workspace]\n"), "{m}");
        assert!(
            m.contains(r#"nas-plugin = { path = "/src/nas \"x\"/crates/nas-plugin" }"#),
            "{m}"
        );
        assert!(m.contains("name = \"strategy-best-neighbour\""), "{m}");
    }

    #[test]
    fn out_writes_a_standalone_crate_and_refuses_to_overwrite() {
        let root = crate::repo_root();
        let out = std::env::temp_dir().join(format!("nas-new-strategy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let dir = new_strategy(&root, "random", Some(&out)).unwrap();
        assert_eq!(dir, out.join("strategy-random"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
        let sdk = root.join("crates/nas-plugin").canonicalize().unwrap();
        assert!(
            manifest.contains(&format!("path = \"{}\"", sdk.display())),
            "{manifest}"
        );
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("impl Strategy for RandomStrategy"));
        let err = new_strategy(&root, "random", Some(&out))
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
        let err = new_strategy(&root, "x", Some(&out.join("missing"))).unwrap_err();
        assert!(err.to_string().contains("is not a folder"), "{err}");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
