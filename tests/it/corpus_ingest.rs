//! Every whole mail of the shared corpus (`input_kind: rfc822`) goes through the real
//! `casegate ingest` in one run: nothing panics, every mail is accounted for with exactly
//! one outcome, and the sender, subject and attachments that the source projects' own tests
//! assert are what casegate recorded (following each record's `compare` note: display
//! names and invented attachment names are tool-specific, so addresses, decoded subjects,
//! literal file names and content checksums are compared).

use std::collections::BTreeMap;
use std::path::PathBuf;

use md5::{Digest, Md5};
use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::corpus;

#[test]
fn every_corpus_mail_is_accounted_for_with_its_sender_subject_and_attachments() {
    let Some(root) = corpus::root() else {
        println!("{}", corpus::skipping());
        return;
    };
    let records: Vec<corpus::Record> =
        corpus::records(&root).into_iter().filter(|r| r.input_kind == "rfc822").collect();
    assert!(records.len() >= 50, "expected the corpus to hold at least 50 whole mails, found {}", records.len());

    let install = Installation::new("");
    let files: Vec<PathBuf> = records.iter().map(|r| root.join(&r.file)).collect();
    let refs: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let lines = install.ingest(&refs);
    assert_eq!(lines.len(), records.len(), "one outcome per mail");

    let db = install.db();
    let mut problems = Vec::new();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for (record, line) in records.iter().zip(&lines) {
        let outcome = line["outcome"].as_str().unwrap_or_default().to_string();
        *outcomes.entry(outcome.clone()).or_default() += 1;
        if !["created", "replied", "ignored", "quarantined", "duplicate"].contains(&outcome.as_str()) {
            problems.push(format!("{}: unexpected outcome {line}", record.file));
        }
        let raw = std::fs::read(root.join(&record.file)).unwrap();
        let sha = hex_sha256(&raw);
        // The journal row for this mail (a duplicate points at the first copy's row).
        let journal: Option<(Option<String>, Option<String>)> = db
            .query_row("SELECT from_addr, subject FROM mails WHERE raw_sha256 = ?1", [&sha], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ok();
        let (from, subject) = match journal {
            Some(j) => j,
            None if outcome == "duplicate" => continue,
            None => {
                problems.push(format!("{}: no journal row for this mail", record.file));
                continue;
            }
        };
        let e = &record.expected;
        let expected_from =
            e["from_email"].as_str().map(str::to_string).or_else(|| e["from"].as_str().and_then(address_in));
        if let Some(want) = expected_from {
            if from.as_deref() != Some(want.to_lowercase().as_str()) {
                problems.push(format!("{}: from {:?}, expected {want}", record.file, from));
            }
        }
        if let Some(want) = e["subject"].as_str() {
            if subject.as_deref().map(str::trim) != Some(want.trim()) {
                problems.push(format!("{}: subject {:?}, expected {want:?}", record.file, subject));
            }
        }
        check_attachments(record, &raw, &mut problems);
    }
    println!("corpus ingest: {} mails, outcomes {outcomes:?}", records.len());
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// Attachment facts: checksums as a subset (every expected one must be among ours), file
/// names where the record says they are literal in the raw mail (or the project does not
/// invent names), and the first-attachment facts flanker asserts.
fn check_attachments(record: &corpus::Record, raw: &[u8], problems: &mut Vec<String>) {
    let e = &record.expected;
    let parsed = casegate::parse::parse(raw);
    let ours: Vec<(String, String, String, &'static str)> = parsed
        .as_ref()
        .map(|m| {
            m.attachments
                .iter()
                .map(|a| (a.filename.clone(), hex_md5(&a.data), a.content_type.clone(), a.disposition.as_str()))
                .collect()
        })
        .unwrap_or_default();
    // Zammad stores text-like report parts with LF line endings and an empty attached
    // message as 0 bytes; casegate keeps the bytes as transmitted. Compare both forms.
    let normalised: Vec<String> = parsed
        .as_ref()
        .map(|m| {
            m.attachments
                .iter()
                .map(|a| {
                    hex_md5(String::from_utf8_lossy(&a.data).replace("\r\n", "\n").trim_start_matches('\n').as_bytes())
                })
                .collect()
        })
        .unwrap_or_default();
    for want in e["attachments"].as_array().into_iter().flatten() {
        let md5 = want["md5"].as_str().unwrap_or_default();
        let found = ours.iter().zip(&normalised).find(|((_, m, _, _), n)| m == md5 || *n == md5).map(|(o, _)| o);
        let Some(found) = found else {
            problems
                .push(format!("{}: no attachment with md5 {md5} ({}); ours: {ours:?}", record.file, want["filename"]));
            continue;
        };
        // Zammad invents names for unnamed parts; OTRS records carry no such flag and only
        // literal names.
        let literal = want.get("filename_literal_in_raw").and_then(Value::as_bool).unwrap_or(true);
        if let (true, Some(name)) = (literal, want["filename"].as_str()) {
            if found.0 != name {
                problems.push(format!("{}: attachment {md5} named {:?}, expected {name:?}", record.file, found.0));
            }
        }
    }
    if let Some(prefix) = e["attachment_filename_startswith"].as_str() {
        if !ours.first().is_some_and(|(n, ..)| n.starts_with(prefix)) {
            problems
                .push(format!("{}: first attachment name should start with {prefix:?}; ours: {ours:?}", record.file));
        }
    }
    if let Some(ct) = e["attachment_content_type"].as_str() {
        if ours.first().is_none_or(|(_, _, c, _)| c != ct) {
            problems.push(format!("{}: first attachment type should be {ct}; ours: {ours:?}", record.file));
        }
    }
    if let Some(name) = e["inline_image_filename"].as_str() {
        let inline = e["inline_image_is_attachment"].as_bool() == Some(false);
        match ours.iter().find(|(n, ..)| n == name) {
            Some((_, _, _, disposition)) if inline && *disposition != "inline" => {
                problems.push(format!("{}: {name} should be recorded as inline, is {disposition}", record.file))
            }
            Some(_) => {}
            None => problems.push(format!("{}: no part named {name}; ours: {ours:?}", record.file)),
        }
    }
}

/// The bare address in `Name <addr>` or `addr (Name)`.
fn address_in(s: &str) -> Option<String> {
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s.split_whitespace().next().unwrap_or_default(),
    };
    casegate::address::Address::parse(inner).map(|a| a.to_string())
}

fn hex_md5(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_sha256(data: &[u8]) -> String {
    casegate::store::blobs::sha256_hex(data)
}
