//! docs/writing-a-strategy.md shows the files of a real crate, docs/examples/: every code block
//! introduced by such a file's path must equal the file, so the page cannot drift from code
//! the workspace compiles and tests.

use std::path::Path;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const DOC: &str = "docs/writing-a-strategy.md";

/// (path, block) for every fenced code block right after a line "`docs/examples/...`:".
fn shown_files(doc: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut shown = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(path) = line
            .strip_prefix('`')
            .and_then(|l| l.strip_suffix("`:"))
            .filter(|p| p.starts_with("docs/examples/"))
        else {
            continue;
        };
        let fence = lines[i + 1..].iter().position(|l| !l.trim().is_empty());
        let start = i + 1 + fence.unwrap_or_else(|| panic!("{DOC}: nothing after `{path}`:"));
        assert!(
            lines[start].starts_with("```"),
            "{DOC}:{}: `{path}`: is not followed by a code block",
            start + 1
        );
        let end = (lines[start + 1..].iter())
            .position(|l| *l == "```")
            .map(|n| start + 1 + n)
            .unwrap_or_else(|| panic!("{DOC}:{}: unclosed code block", start + 1));
        let mut block = lines[start + 1..end].join("\n");
        block.push('\n');
        shown.push((path.to_string(), block));
    }
    shown
}

#[test]
fn every_file_the_doc_shows_equals_the_example_crate() {
    let doc = std::fs::read_to_string(Path::new(REPO).join(DOC)).expect("the doc exists");
    let shown = shown_files(&doc);
    let paths: Vec<&str> = shown.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "docs/examples/strategy-best-neighbour/Cargo.toml",
        "docs/examples/strategy-best-neighbour/src/lib.rs",
    ] {
        assert!(
            paths.contains(&expected),
            "{DOC} no longer shows {expected}: {paths:?}"
        );
    }
    for (path, block) in &shown {
        let file = std::fs::read_to_string(Path::new(REPO).join(path))
            .unwrap_or_else(|e| panic!("{DOC} shows {path}, which cannot be read: {e}"));
        if *block != file {
            let (n, (d, f)) = (block.lines().zip(file.lines()).enumerate())
                .find(|(_, (d, f))| d != f)
                .unwrap_or((
                    block.lines().count().min(file.lines().count()),
                    ("(end)", "(end)"),
                ));
            panic!(
                "{DOC} shows {path} differently from the file, first at line {}:\n  doc:  {d}\n  file: {f}\ncopy the file into the doc (or the doc into the file)",
                n + 1
            );
        }
    }
}

#[test]
fn a_changed_block_is_noticed() {
    let doc = "`docs/examples/x/src/lib.rs`:\n\n```rust\nfn a() {}\n```\n";
    assert_eq!(
        shown_files(doc),
        vec![(
            "docs/examples/x/src/lib.rs".to_string(),
            "fn a() {}\n".to_string()
        )]
    );
    assert!(shown_files("`src/lib.rs`:\n```rust\nx\n```\n").is_empty());
}
