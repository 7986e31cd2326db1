//! Reply stripping against real mail from other projects' test suites.
//!
//! The shared corpus (`../shared/corpus`, beside the repository, never copied into it) lists
//! inputs written by other mail projects together with the facts their own tests assert.
//! Every record with the `reply-stripping` behaviour is run through `casegate::parse::reply`
//! here, and its facts are checked the way its `compare` note says. The source projects
//! describe results in their own terms — a reply text, numbered "fragments", JavaScript
//! assertions — so each is translated into casegate's `ReplyParts`: the new text, and the
//! message's lines grouped into new, quoted and signature fragments.

use std::path::Path;

use casegate::parse::reply::{self, Part, ReplyParts};
use casegate::parse::{self, html_to_text, normalise_text, InboundMail};
use regex::Regex;
use serde_json::Value;

/// Records known not to pass, each with the reason. Empty: every record passes, and a record
/// listed here that starts passing fails the test so the list cannot go stale.
const ALLOWED_FAILURES: &[(&str, &str)] = &[];

#[test]
fn reply_stripping_matches_the_facts_of_the_shared_corpus() {
    let Some(dir) = crate::support::corpus::root() else {
        println!("{}", crate::support::corpus::skipping());
        return;
    };
    let index = std::fs::read_to_string(dir.join("expected.jsonl")).expect("expected.jsonl is readable");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for (number, line) in index.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", number + 1));
        let behaviours = record["behaviours"].as_array().cloned().unwrap_or_default();
        if !behaviours.iter().any(|b| b == "reply-stripping") {
            continue;
        }
        let id = record["id"].as_str().unwrap_or("?").to_string();
        let outcome = run_parts(&dir, &record).and_then(|parts| check(&dir, &record, &parts));
        match outcome {
            Ok(()) => checked.push(id),
            Err(why) => failures.push((id, why)),
        }
    }
    let total = checked.len() + failures.len();
    eprintln!("reply corpus: {} of {total} records pass", checked.len());
    // A corpus without reply records would make this test pass vacuously.
    assert!(total > 0, "no reply-stripping records in {}", dir.display());

    let allowed = |id: &str| ALLOWED_FAILURES.iter().any(|(a, _)| *a == id);
    let unexpected: Vec<String> =
        failures.iter().filter(|(id, _)| !allowed(id)).map(|(id, why)| format!("{id}: {why}")).collect();
    let stale: Vec<&str> = checked.iter().map(String::as_str).filter(|id| allowed(id)).collect();
    assert!(unexpected.is_empty(), "records failing:\n{}", unexpected.join("\n\n"));
    assert!(stale.is_empty(), "allow-listed records now pass, remove them: {stale:?}");
}

/// Runs the record's input through the code a real mail takes.
fn run_parts(dir: &Path, record: &Value) -> Result<ReplyParts, String> {
    let file = record["file"].as_str().ok_or("record without a file")?;
    let bytes = std::fs::read(dir.join(file)).map_err(|e| format!("reading {file}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    match record["input_kind"].as_str() {
        Some("body_text") => Ok(reply::parts(&text)),
        Some("body_html") => {
            // What casegate::parse produces for an HTML-only reply.
            let mail = InboundMail {
                text: normalise_text(&html_to_text(&text)),
                html: Some(text.into_owned()),
                text_from_html: true,
                ..Default::default()
            };
            Ok(reply::parts_of(&mail))
        }
        Some("rfc822") => {
            let mail = parse::parse(&bytes).ok_or("not parsed as a mail")?;
            Ok(reply::parts_of(&mail))
        }
        other => Err(format!("unknown input_kind {other:?}")),
    }
}

/// How a reply text is compared, from the record's `compare` note.
#[derive(Debug, Clone, Copy)]
enum Comparison {
    /// Exact, after the output contract's own normalisation (LF line endings, no trailing
    /// spaces, at most one blank line in a row, trimmed): the expected texts were written by
    /// tools that keep runs of blank lines, and casegate collapses them by design.
    Exact,
    /// Runs of whitespace count as one space.
    WhitespaceNormalised,
    /// Whitespace is ignored entirely.
    NoWhitespace,
}

fn comparison_for(record: &Value) -> Comparison {
    let note = record["compare"].as_str().unwrap_or_default().to_lowercase();
    if note.contains("whitespace removed") {
        Comparison::NoWhitespace
    } else if note.contains("whitespace-normalised") || note.contains("whitespace-normalized") {
        Comparison::WhitespaceNormalised
    } else {
        Comparison::Exact
    }
}

fn canonical(text: &str, how: Comparison) -> String {
    match how {
        Comparison::NoWhitespace => text.split_whitespace().collect(),
        Comparison::WhitespaceNormalised => text.split_whitespace().collect::<Vec<_>>().join(" "),
        Comparison::Exact => {
            let normal = normalise_text(text);
            let mut out: Vec<&str> = Vec::new();
            for line in normal.split('\n') {
                let blank = line.trim().is_empty();
                if blank && out.last().is_some_and(|l| l.is_empty()) {
                    continue;
                }
                out.push(if blank { "" } else { line });
            }
            out.join("\n").trim().to_string()
        }
    }
}

fn check(dir: &Path, record: &Value, parts: &ReplyParts) -> Result<(), String> {
    let expected = record["expected"].as_object().ok_or("record without expected facts")?;
    let mut facts = 0;
    let mut problems = Vec::new();
    let how = comparison_for(record);

    // discourse keeps the trimmed text in a file; when it is not shipped, reply_text has it.
    let from_file =
        expected.get("expected_file").and_then(Value::as_str).and_then(|f| std::fs::read_to_string(dir.join(f)).ok());
    let reply_text = from_file.or_else(|| expected.get("reply_text").and_then(Value::as_str).map(str::to_string));
    let reply_text =
        reply_text.or_else(|| expected.get("reply_text_trimmed").and_then(Value::as_str).map(|t| t.trim().to_string()));
    if let Some(want) = reply_text {
        facts += 1;
        if canonical(&parts.text, how) != canonical(&want, how) {
            problems.push(format!("new text ({how:?})\n--- got:\n{}\n--- want:\n{want}", parts.text));
        }
    }
    if let Some(n) = expected.get("fragments").and_then(Value::as_u64) {
        facts += 1;
        if parts.fragments.len() as u64 != n {
            problems.push(format!("{} fragments, want {n}: {:?}", parts.fragments.len(), parts.fragments));
        }
    }
    for (key, part_test) in [
        ("quoted", (|p: Part| p == Part::Quoted) as fn(Part) -> bool),
        ("signature", |p| p == Part::Signature),
        ("hidden", |p| p != Part::New),
    ] {
        let Some(flags) = expected.get(key).and_then(Value::as_array) else {
            continue;
        };
        facts += 1;
        for (i, flag) in flags.iter().enumerate() {
            let got = parts.fragments.get(i).map(|f| part_test(f.part));
            if got != flag.as_bool() {
                problems.push(format!("fragment {i} {key}: got {got:?}, want {flag}"));
            }
        }
    }
    for pattern in expected.get("fragment_matches").and_then(Value::as_array).into_iter().flatten() {
        facts += 1;
        let pattern = pattern.as_str().ok_or("fragment_matches entry is not a string")?;
        if let Err(why) = check_fragment_match(parts, pattern) {
            problems.push(why);
        }
    }
    for assertion in expected.get("assertions").and_then(Value::as_array).into_iter().flatten() {
        facts += 1;
        let assertion = assertion.as_str().ok_or("assertion is not a string")?;
        if let Err(why) = check_js_assertion(parts, assertion) {
            problems.push(why);
        }
    }
    if facts == 0 {
        return Err(format!("no fact this test knows how to check in {expected:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn fragment(parts: &ReplyParts, index: usize) -> Result<&str, String> {
    parts
        .fragments
        .get(index)
        .map(|f| f.text.as_str())
        .ok_or_else(|| format!("no fragment {index} in {:?}", parts.fragments))
}

fn regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))
}

/// github/email_reply_parser's notes: `^Awesome` (fragment 0), `(1) ^-- \nrick`, or
/// `(1) ^On ... contains "Loader"` (starts with `On`, contains `Loader`).
fn check_fragment_match(parts: &ReplyParts, spec: &str) -> Result<(), String> {
    let shape = regex(r#"^(?:\((\d+)\)\s+)?(.*?)(?:\s+\.\.\.\s+contains\s+"(.*)")?$"#)?;
    let caps = shape.captures(spec).ok_or_else(|| format!("unreadable fragment_matches {spec:?}"))?;
    let index = caps.get(1).map_or(Ok(0), |m| m.as_str().parse::<usize>().map_err(|e| e.to_string()))?;
    let text = fragment(parts, index)?;
    let head = caps.get(2).map_or("", |m| m.as_str());
    if !regex(head)?.is_match(text) {
        return Err(format!("fragment {index} {text:?} does not match {head:?}"));
    }
    if let Some(needle) = caps.get(3) {
        if !text.contains(needle.as_str()) {
            return Err(format!("fragment {index} {text:?} does not contain {:?}", needle.as_str()));
        }
    }
    Ok(())
}

/// crisp-oss/email-reply-parser's test lines, in the shapes the corpus uses. An assertion of
/// another shape fails the record rather than being skipped.
fn check_js_assertion(parts: &ReplyParts, assertion: &str) -> Result<(), String> {
    let count = regex(r"^test\.equal\((\d+),\s*fragments\.length\);$")?;
    let at_least = regex(r"^test\.equal\(true,\s*fragments\.length\s*>=\s*(\d+)\);$")?;
    let flag = regex(r"^test\.equal\((true|false),\s*fragments\[(\d+)\]\.(isQuoted|isSignature|isHidden)\(\)\);$")?;
    let matches = regex(r"^test\.equal\(true,\s*/(.*)/\.test\(fragments\[(\d+)\](?:\.toString\(\))?\)\);$")?;
    let some_signature = regex(r"^test\.equal\(true,\s*fragments\.some\(f\s*=>\s*f\.isSignature\(\)\)\);$")?;
    let failed = |detail: String| Err(format!("{assertion}: {detail}"));
    if let Some(c) = count.captures(assertion) {
        let want: usize = c[1].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        if parts.fragments.len() != want {
            return failed(format!("{} fragments: {:?}", parts.fragments.len(), parts.fragments));
        }
        return Ok(());
    }
    if let Some(c) = at_least.captures(assertion) {
        let want: usize = c[1].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        if parts.fragments.len() < want {
            return failed(format!("{} fragments: {:?}", parts.fragments.len(), parts.fragments));
        }
        return Ok(());
    }
    if let Some(c) = flag.captures(assertion) {
        let index: usize = c[2].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        let part =
            parts.fragments.get(index).map(|f| f.part).ok_or_else(|| format!("{assertion}: no fragment {index}"))?;
        let got = match &c[3] {
            "isQuoted" => part == Part::Quoted,
            "isSignature" => part == Part::Signature,
            _ => part != Part::New,
        };
        if got.to_string() != c[1] {
            return failed(format!("fragment {index} is {part:?}"));
        }
        return Ok(());
    }
    if let Some(c) = matches.captures(assertion) {
        let index: usize = c[2].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        let text = fragment(parts, index)?;
        if !regex(&c[1])?.is_match(text) {
            return failed(format!("fragment {index} is {text:?}"));
        }
        return Ok(());
    }
    if some_signature.is_match(assertion) {
        if !parts.fragments.iter().any(|f| f.part == Part::Signature) {
            return failed(format!("no signature fragment in {:?}", parts.fragments));
        }
        return Ok(());
    }
    failed("assertion shape not understood".to_string())
}
