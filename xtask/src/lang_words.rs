//! `cargo xtask lang-words`: a language-identification text set (one `language<TAB>word` per
//! line) built from the word lists Debian packages, so the data is never shipped with the
//! project (several lists are GPL). `apt-get install wamerican wngerman wfrench wspanish
//! witalian wportuguese wdutch` provides them under /usr/share/dict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// (label, word list under /usr/share/dict, Debian package).
pub const LANGUAGES: &[(&str, &str, &str)] = &[
    ("english", "american-english", "wamerican"),
    ("german", "ngerman", "wngerman"),
    ("french", "french", "wfrench"),
    ("spanish", "spanish", "wspanish"),
    ("italian", "italian", "witalian"),
    ("portuguese", "portuguese", "wportuguese"),
    ("dutch", "dutch", "wdutch"),
];

pub const DEFAULT_OUT: &str = "results/data/lang-words.txt";

pub struct Options {
    pub per_language: usize,
    pub seed: u64,
    pub dict: PathBuf,
    pub out: PathBuf,
}

/// Lowercased words of 3 to 20 letters (accents included); proper nouns are lowercased like
/// German nouns, so capitalisation gives no language away.
fn words(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|w| w.trim().to_lowercase())
        .filter(|w| {
            let n = w.chars().count();
            (3..=20).contains(&n) && w.chars().all(char::is_alphabetic)
        })
        .collect()
}

pub fn run(root: &Path, options: &Options) -> Result<()> {
    let mut lists: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (label, file, package) in LANGUAGES {
        let path = options.dict.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                lists.insert(label, words(&text));
            }
            Err(_) => missing.push(*package),
        }
    }
    if !missing.is_empty() {
        bail!(
            "word lists missing under {}: install them with `apt-get install {}`",
            options.dict.display(),
            missing.join(" ")
        );
    }
    // A word spelled the same in two languages has no single label: left out.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for list in lists.values() {
        for w in list {
            *count.entry(w).or_default() += 1;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut lines = Vec::new();
    let mut summary = String::new();
    for (label, list) in &lists {
        let mut own: Vec<&String> = list.iter().filter(|w| count[w.as_str()] == 1).collect();
        own.shuffle(&mut rng);
        own.truncate(options.per_language);
        if own.len() < options.per_language {
            bail!(
                "{label}: only {} words of its own, {} asked for; lower --per-language",
                own.len(),
                options.per_language
            );
        }
        writeln!(
            summary,
            "{label}: {} words (of the {} in its list)",
            own.len(),
            list.len()
        )?;
        lines.extend(own.into_iter().map(|w| format!("{label}\t{w}")));
    }
    lines.shuffle(&mut rng);
    let out = root.join(&options.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&out, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprint!("{summary}");
    eprintln!("wrote {} ({} lines)", out.display(), lines.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_letters_of_three_to_twenty() {
        let w = words("Haus\nà\nl'eau\nStraße\nabc1\nüberall\n  été  \n");
        let got: Vec<&str> = w.iter().map(String::as_str).collect();
        assert_eq!(got, ["haus", "straße", "été", "überall"]);
    }
}
