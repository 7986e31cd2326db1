//! Golden scenarios: every folder under `fixtures/scenarios/` is ingested, in file-name
//! order, into a fresh installation by the real binary, and the outcomes and resulting
//! cases are compared with its `expected.json` (see fixtures/README.md). Each scenario runs
//! twice: with the mails' CRLF line endings as received, and converted to LF (as a local
//! delivery agent stores them). On a mismatch the actual output is written to
//! `<scenario>/expected.json.failed` for review.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::casegate::{contains, fixtures, Installation};

fn scenario_dirs() -> Vec<PathBuf> {
    let root = fixtures().join("scenarios");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no scenarios found under {}", root.display());
    dirs
}

fn mails_of(dir: &Path) -> Vec<PathBuf> {
    let mut mails: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort();
    mails
}

/// Runs one scenario; returns a description of the first mismatch.
fn run_scenario(dir: &Path, lf: bool) -> Result<(), String> {
    let config = std::fs::read_to_string(fixtures().join("scenarios/casegate.toml")).unwrap();
    let install = Installation::with_config(&config);
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();

    let mut inputs = Vec::new();
    for mail in mails_of(dir) {
        let target = install.path().join(mail.file_name().unwrap());
        let raw = std::fs::read(&mail).unwrap();
        let raw = if lf { String::from_utf8_lossy(&raw).replace("\r\n", "\n").into_bytes() } else { raw };
        // ISO-2022-JP and other 7-bit encodings survive the lossy round-trip; 8-bit files are copied as is.
        let raw = if lf && std::str::from_utf8(&std::fs::read(&mail).unwrap()).is_err() {
            std::fs::read(&mail).unwrap()
        } else {
            raw
        };
        std::fs::write(&target, raw).unwrap();
        inputs.push(target);
    }
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut lines = install.ingest(&refs);
    for line in &mut lines {
        // Compare by base name, as the fixture README says.
        let base = Path::new(line["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
        line["file"] = json!(base);
    }

    let mut actual = json!({ "ingest": lines.clone(), "cases": {} });
    let mut problem = None;
    let expected_lines = expected["ingest"].as_array().expect("ingest array");
    if expected_lines.len() != lines.len() {
        problem = Some(format!("expected {} ingest lines, got {}", expected_lines.len(), lines.len()));
    }
    for (i, (e, a)) in expected_lines.iter().zip(&lines).enumerate() {
        let mut e = e.clone();
        // `reason` is compared as a substring.
        if let Some(want) = e.as_object_mut().and_then(|o| o.remove("reason")) {
            let have = a["reason"].as_str().unwrap_or_default();
            if problem.is_none() && !have.contains(want.as_str().unwrap_or_default()) {
                problem = Some(format!("ingest[{i}].reason: expected to contain {want}, found {have:?}"));
            }
        }
        if problem.is_none() {
            problem = contains(a, &e, &format!("ingest[{i}]")).err();
        }
    }
    for (id, e) in expected["cases"].as_object().into_iter().flatten() {
        let a = install.case(id);
        if problem.is_none() {
            problem = contains(&a, e, &format!("cases.{id}")).err();
        }
        actual["cases"][id] = a;
    }
    match problem {
        None => Ok(()),
        Some(p) => {
            let failed = dir.join("expected.json.failed");
            std::fs::write(&failed, serde_json::to_string_pretty(&actual).unwrap()).unwrap();
            Err(format!(
                "{}{}: {p}\n  (actual output written to {})",
                dir.file_name().unwrap().to_string_lossy(),
                if lf { " (LF)" } else { "" },
                failed.display()
            ))
        }
    }
}

#[test]
fn every_scenario_matches_its_golden_expectations() {
    let mut failures = Vec::new();
    for dir in scenario_dirs() {
        for lf in [false, true] {
            if let Err(e) = run_scenario(&dir, lf) {
                failures.push(e);
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn ingesting_the_same_files_twice_leaves_the_database_unchanged() {
    let install = Installation::new("");
    let mut inputs = Vec::new();
    for dir in scenario_dirs() {
        for mail in mails_of(&dir) {
            let target = install.path().join(format!(
                "{}-{}",
                dir.file_name().unwrap().to_string_lossy(),
                mail.file_name().unwrap().to_string_lossy()
            ));
            std::fs::copy(&mail, &target).unwrap();
            inputs.push(target);
        }
    }
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let first = install.ingest(&refs);
    assert!(first.iter().any(|l| l["outcome"] == "created"));
    let snapshot = |i: &Installation| -> Vec<String> {
        let mut out = Vec::new();
        for table in [
            "mails",
            "raw_mails",
            "cases",
            "participants",
            "messages",
            "attachments",
            "case_message_ids",
            "quarantine",
            "outbox",
            "audit",
        ] {
            let rows = i.rows(&format!("SELECT * FROM {table} ORDER BY 1"), []);
            out.extend(rows.iter().map(|r| format!("{table}: {r:?}")));
        }
        out
    };
    let before = snapshot(&install);
    let second = install.ingest(&refs);
    assert_eq!(second.len(), first.len());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(b["outcome"], "duplicate", "second ingest of {} was {b}", a["file"]);
    }
    assert_eq!(snapshot(&install), before, "the second ingest changed the database");
}
