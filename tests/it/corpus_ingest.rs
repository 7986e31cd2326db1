//! Every whole mail of the shared corpus (`input_kind: rfc822`) goes through the real
//! `casegate ingest` in one run: nothing panics, every mail is accounted for with exactly
//! one outcome, and the sender, subject and attachments that the source projects' own tests
//! assert are what casegate recorded (following each record's `compare` note: display
//! names and invented attachment names are tool-specific, so addresses, decoded subjects,
//! literal file names, sizes and content checksums are compared). The test prints the
//! share of facts right; it must be at least [`MIN_SCORE`], and every fact that is wrong
//! is listed (none is expected today).

use std::collections::BTreeMap;
use std::path::PathBuf;

use md5::{Digest, Md5};
use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::corpus;

/// The share of parse facts (sender, subject, attachment names, sizes and checksums) that
/// must be right.
const MIN_SCORE: f64 = 0.98;

/// Facts checked and problems found.
#[derive(Default)]
struct Score {
    facts: usize,
    problems: Vec<String>,
}

impl Score {
    /// Counts one fact; `Err` is what was wrong with it.
    fn check(&mut self, fact: Result<(), String>) {
        self.facts += 1;
        if let Err(problem) = fact {
            self.problems.push(problem);
        }
    }
}

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
    let mut score = Score::default();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for (record, line) in records.iter().zip(&lines) {
        let outcome = line["outcome"].as_str().unwrap_or_default().to_string();
        *outcomes.entry(outcome.clone()).or_default() += 1;
        let known = ["created", "replied", "ignored", "quarantined", "duplicate"].contains(&outcome.as_str());
        score.check(if known { Ok(()) } else { Err(format!("{}: unexpected outcome {line}", record.file)) });
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
                score.check(Err(format!("{}: no journal row for this mail", record.file)));
                continue;
            }
        };
        let e = &record.expected;
        let expected_from =
            e["from_email"].as_str().map(str::to_string).or_else(|| e["from"].as_str().and_then(address_in));
        if let Some(want) = expected_from {
            let right = from.as_deref() == Some(want.to_lowercase().as_str());
            score.check(if right { Ok(()) } else { Err(format!("{}: from {from:?}, expected {want}", record.file)) });
        }
        if let Some(want) = e["subject"].as_str() {
            let right = subject.as_deref().map(str::trim) == Some(want.trim());
            score.check(if right {
                Ok(())
            } else {
                Err(format!("{}: subject {subject:?}, expected {want:?}", record.file))
            });
        }
        check_attachments(record, &raw, &mut score);
    }
    let right = score.facts - score.problems.len();
    let share = right as f64 / score.facts.max(1) as f64;
    println!(
        "corpus ingest: {} mails, outcomes {outcomes:?}; parse facts right: {right} of {} ({:.1} %)",
        records.len(),
        score.facts,
        share * 100.0
    );
    assert!(score.facts >= 100, "too few facts checked ({}): is the corpus whole?", score.facts);
    assert!(
        share >= MIN_SCORE && score.problems.is_empty(),
        "{} of {} facts wrong ({:.1} % right, at least {:.0} % required, and every wrong fact is a bug):\n{}",
        score.problems.len(),
        score.facts,
        share * 100.0,
        MIN_SCORE * 100.0,
        score.problems.join("\n")
    );
}

/// Attachment facts: checksums as a subset (every expected one must be among ours), file
/// names where the record says they are literal in the raw mail (or the project does not
/// invent names), and the first-attachment facts flanker asserts.
fn check_attachments(record: &corpus::Record, raw: &[u8], score: &mut Score) {
    let e = &record.expected;
    let parsed = casegate::parse::parse(raw);
    // (name, md5, type, disposition, size, size with LF line endings)
    let ours: Vec<(String, String, String, &'static str, u64, u64)> = parsed
        .as_ref()
        .map(|m| {
            m.attachments
                .iter()
                .map(|a| {
                    let lf =
                        String::from_utf8_lossy(&a.data).replace("\r\n", "\n").trim_start_matches('\n').len() as u64;
                    let (name, kind) = (a.filename.clone(), a.content_type.clone());
                    (name, hex_md5(&a.data), kind, a.disposition.as_str(), a.data.len() as u64, lf)
                })
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
        let found = ours.iter().zip(&normalised).find(|((_, m, ..), n)| m == md5 || *n == md5).map(|(o, _)| o);
        let Some(found) = found else {
            score.check(Err(format!(
                "{}: no attachment with md5 {md5} ({}); ours: {ours:?}",
                record.file, want["filename"]
            )));
            continue;
        };
        score.check(Ok(()));
        // Zammad invents names for unnamed parts; OTRS records carry no such flag and only
        // literal names.
        let literal = want.get("filename_literal_in_raw").and_then(Value::as_bool).unwrap_or(true);
        if let (true, Some(name)) = (literal, want["filename"].as_str()) {
            score.check(if found.0 == name {
                Ok(())
            } else {
                Err(format!("{}: attachment {md5} named {:?}, expected {name:?}", record.file, found.0))
            });
        }
        if let Some(size) = want["size"].as_u64() {
            // The size of the bytes as sent, or of the normalised form the source project keeps.
            score.check(if found.4 == size || found.5 == size {
                Ok(())
            } else {
                Err(format!("{}: attachment {md5} has {} bytes, expected {size}", record.file, found.4))
            });
        }
    }
    if let Some(prefix) = e["attachment_filename_startswith"].as_str() {
        let right = ours.first().is_some_and(|(n, ..)| n.starts_with(prefix));
        score.check(if right {
            Ok(())
        } else {
            Err(format!("{}: first attachment name should start with {prefix:?}; ours: {ours:?}", record.file))
        });
    }
    if let Some(ct) = e["attachment_content_type"].as_str() {
        let right = ours.first().is_some_and(|(_, _, c, ..)| c == ct);
        score.check(if right {
            Ok(())
        } else {
            Err(format!("{}: first attachment type should be {ct}; ours: {ours:?}", record.file))
        });
    }
    if let Some(name) = e["inline_image_filename"].as_str() {
        let inline = e["inline_image_is_attachment"].as_bool() == Some(false);
        score.check(match ours.iter().find(|(n, ..)| n == name) {
            Some((_, _, _, disposition, ..)) if inline && *disposition != "inline" => {
                Err(format!("{}: {name} should be recorded as inline, is {disposition}", record.file))
            }
            Some(_) => Ok(()),
            None => Err(format!("{}: no part named {name}; ours: {ours:?}", record.file)),
        });
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
    casegate::digest::sha256_hex(data)
}
