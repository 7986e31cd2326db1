//! The shared corpus of real mails from other projects (`../shared/corpus`, beside the
//! repository, with the facts their own tests assert). Tests that use it skip with a clear
//! message when it is absent; `$CASEGATE_CORPUS` points elsewhere.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One line of `expected.jsonl`.
pub struct Record {
    pub file: String,
    pub input_kind: String,
    pub expected: Value,
}

/// Where the corpus is, if it is there.
pub fn root() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = match std::env::var_os("CASEGATE_CORPUS") {
        Some(dir) => vec![PathBuf::from(dir)],
        // From a git worktree the shared folder sits one level further up.
        None => vec![manifest.join("../shared/corpus"), manifest.join("../../shared/corpus")],
    };
    candidates.into_iter().find(|dir| dir.join("expected.jsonl").is_file())
}

/// The message a test prints when it skips for lack of a corpus.
pub fn skipping() -> String {
    format!(
        "skipping: corpus not found at {} (set CASEGATE_CORPUS to its folder)",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus").display()
    )
}

pub fn records(root: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(root.join("expected.jsonl")).expect("expected.jsonl is readable");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("expected.jsonl line is JSON");
            Record {
                file: v["file"].as_str().expect("record has a file").to_string(),
                input_kind: v["input_kind"].as_str().unwrap_or_default().to_string(),
                expected: v["expected"].clone(),
            }
        })
        .collect()
}
