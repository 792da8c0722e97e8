//! The README's example of an application binary is the module example of
//! `eddy::cli`, which rustdoc compiles: the two must stay the same.

use std::path::Path;

/// The lines of the first fenced block that starts after `marker` in `text`.
fn block_after(text: &str, marker: &str) -> Vec<String> {
    let start = text.find(marker).unwrap_or_else(|| panic!("no {marker:?}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_shows_the_compiled_cli_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let module = std::fs::read_to_string(root.join("src/cli/mod.rs")).unwrap();
    let doc: String = module
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let shown = block_after(&readme, "### Your processors in your binary");
    let compiled = block_after(&doc, "");
    assert!(shown.len() > 10, "{shown:?}");
    assert_eq!(shown, compiled);
}
