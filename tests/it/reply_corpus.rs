//! Reply stripping against real mail from other projects' test suites.
//!
//! The shared corpus (`../shared/corpus`, beside the repository, never copied into it) lists
//! inputs written by other mail projects together with the facts their own tests assert.
//! Every record with the `reply-stripping` behaviour is run through `casegate::parse::reply`
//! here, and its facts are checked the way its `compare` note says. The source projects
//! describe results in their own terms — a reply text, numbered "fragments", JavaScript
//! assertions — so each is translated into casegate's `ReplyParts`: the new text, and the
//! message's lines grouped into new, quoted and signature fragments.
//!
//! # Fragments
//!
//! github/email_reply_parser and crisp's port of it cut a message into fragments by reading
//! it bottom-up, and number them. Their facts (`fragments`, `quoted`, `signature`, `hidden`,
//! `fragment_matches`, `assertions`, `first_fragment`) are checked against casegate's
//! decision for every line, grouped the way those tools group lines ([`source_view`]):
//!
//! - a fragment is a run of lines alike in being quoted, signature and hidden; a line is
//!   quoted when it starts with `>` or casegate cut it as history, a signature when casegate
//!   cut it as one, hidden when it is not in casegate's new text;
//! - an attribution belongs to the quote below it (those tools count "On … wrote:" as part
//!   of the quoted fragment): where casegate keeps an answered quote as context and drops
//!   its attribution, the fragment is visible, as the quote is;
//! - blank lines at the end of a message that ends in a quote, or above a signature with a
//!   quote above them, are a fragment of their own there (the tools start a fragment at
//!   them and close it at the quote), hidden when nothing visible follows; casegate keeps
//!   blank lines inside its fragments.
//!
//! `fragment_matches` are the Ruby tests' `assert_match` lines in order: an entry without a
//! `(n)` index is about fragment n = its position, `^` matches at any line start as in Ruby,
//! and `(exact "…")` asks for that text exactly.

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
        let outcome = run_parts(&dir, &record).and_then(|(parts, text)| check(&dir, &record, &parts, text.as_deref()));
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

/// Runs the record's input through the code a real mail takes. Returns the parts, and for a
/// plain-text body the text whose lines they group.
fn run_parts(dir: &Path, record: &Value) -> Result<(ReplyParts, Option<String>), String> {
    let file = record["file"].as_str().ok_or("record without a file")?;
    let bytes = std::fs::read(dir.join(file)).map_err(|e| format!("reading {file}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let parts = match record["input_kind"].as_str() {
        Some("body_text") => return Ok((reply::parts(&text), Some(text.into_owned()))),
        Some("body_html") => {
            // What casegate::parse produces for an HTML-only reply.
            let mail = InboundMail {
                text: normalise_text(&html_to_text(&text)),
                html: Some(text.into_owned()),
                text_from_html: true,
                ..Default::default()
            };
            reply::parts_of(&mail)
        }
        Some("rfc822") => {
            let mail = parse::parse(&bytes).ok_or("not parsed as a mail")?;
            reply::parts_of(&mail)
        }
        other => return Err(format!("unknown input_kind {other:?}")),
    };
    Ok((parts, None))
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

fn check(dir: &Path, record: &Value, parts: &ReplyParts, text: Option<&str>) -> Result<(), String> {
    let expected = record["expected"].as_object().ok_or("record without expected facts")?;
    let mut facts = 0;
    let mut problems = Vec::new();
    let how = comparison_for(record);
    let view = source_view(parts, text)?;

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
        if view.len() as u64 != n {
            problems.push(format!("{} fragments, want {n}: {view:?}", view.len()));
        }
    }
    for (key, flag_of) in [
        ("quoted", (|f: &SourceFragment| f.quoted) as fn(&SourceFragment) -> bool),
        ("signature", |f| f.signature),
        ("hidden", |f| f.hidden),
    ] {
        let Some(flags) = expected.get(key).and_then(Value::as_array) else {
            continue;
        };
        facts += 1;
        for (i, flag) in flags.iter().enumerate() {
            let got = view.get(i).map(flag_of);
            if got != flag.as_bool() {
                problems.push(format!("fragment {i} {key}: got {got:?}, want {flag}"));
            }
        }
    }
    let matches = expected.get("fragment_matches").and_then(Value::as_array);
    for (position, pattern) in matches.into_iter().flatten().enumerate() {
        facts += 1;
        let pattern = pattern.as_str().ok_or("fragment_matches entry is not a string")?;
        if let Err(why) = check_fragment_match(&view, position, pattern) {
            problems.push(why);
        }
    }
    for assertion in expected.get("assertions").and_then(Value::as_array).into_iter().flatten() {
        facts += 1;
        let assertion = assertion.as_str().ok_or("assertion is not a string")?;
        if let Err(why) = check_js_assertion(&view, assertion) {
            problems.push(why);
        }
    }
    if let Some(want) = expected.get("first_fragment").and_then(Value::as_str) {
        facts += 1;
        if let Err(why) = check_first_fragment(&view, want) {
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

/// A fragment as github/email_reply_parser and crisp's port count them (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceFragment {
    text: String,
    quoted: bool,
    signature: bool,
    hidden: bool,
}

/// What one non-blank line is, in the source tools' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    quoted: bool,
    signature: bool,
    hidden: bool,
}

/// casegate's decision for every line of `text`, grouped into the source tools' fragments.
/// Without the text (an HTML or whole-mail input), casegate's own fragments stand in.
fn source_view(parts: &ReplyParts, text: Option<&str>) -> Result<Vec<SourceFragment>, String> {
    let Some(text) = text else {
        let view = parts.fragments.iter().map(|f| SourceFragment {
            text: f.text.clone(),
            quoted: f.part == Part::Quoted,
            signature: f.part == Part::Signature,
            hidden: f.part != Part::New,
        });
        return Ok(view.collect());
    };
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let blank = |k: usize| lines[k].trim().is_empty();
    let quote_line = |k: usize| lines[k].trim_start().starts_with('>');

    // casegate's part for every line; blank lines between its fragments have none.
    let mut fates: Vec<Option<Part>> = vec![None; lines.len()];
    let mut at = 0;
    for fragment in &parts.fragments {
        let own: Vec<&str> = fragment.text.split('\n').collect();
        while at < lines.len() && blank(at) {
            at += 1;
        }
        if lines.get(at..at + own.len()) != Some(&own[..]) {
            return Err(format!("fragment {:?} is not the next lines of the message at line {at}", fragment.text));
        }
        fates[at..at + own.len()].fill(Some(fragment.part));
        at += own.len();
    }

    let mut keys: Vec<Option<Key>> = (0..lines.len())
        .map(|k| {
            let part = fates[k]?;
            (!blank(k)).then_some(Key {
                quoted: quote_line(k) || part == Part::Quoted,
                signature: part == Part::Signature,
                hidden: part != Part::New,
            })
        })
        .collect();
    // An attribution cut as history takes the fate of the quote directly below it.
    let mut below: Option<Key> = None;
    for k in (0..lines.len()).rev() {
        let Some(key) = keys[k] else { continue };
        if quote_line(k) {
            below = Some(key);
        } else if let Some(quote) = below.filter(|_| fates[k] == Some(Part::Quoted)) {
            keys[k] = Some(quote);
        } else {
            below = None;
        }
    }

    // Blank runs that are a fragment of their own: at the end after a quote, and between a
    // quote and a signature.
    let last = (0..lines.len()).rev().find(|&k| !blank(k));
    let mut alone = vec![false; lines.len()];
    let mut k = 0;
    while k < lines.len() {
        if !blank(k) {
            k += 1;
            continue;
        }
        let start = k;
        while k < lines.len() && blank(k) {
            k += 1;
        }
        let above_is_quote = start > 0 && quote_line(start - 1);
        let at_end = k == lines.len() && last.is_some_and(|l| l < start);
        let signature_below = keys.get(k).copied().flatten().is_some_and(|key| key.signature)
            && keys[..start].iter().rev().flatten().next().is_some_and(|key| !key.signature);
        if above_is_quote && (at_end || signature_below) {
            alone[start..k].fill(true);
        }
    }

    let mut view: Vec<(Option<Key>, Vec<&str>)> = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        if alone[k] {
            if k == 0 || !alone[k - 1] {
                view.push((None, Vec::new()));
            }
            continue;
        }
        let Some(key) = keys[k] else {
            pending.push(line);
            continue;
        };
        match view.last_mut() {
            Some((Some(current), body)) if *current == key => {
                body.append(&mut pending);
                body.push(line);
            }
            _ => {
                pending.clear();
                view.push((Some(key), vec![line]));
            }
        }
    }
    let visible_after: Vec<bool> =
        (0..view.len()).map(|i| view[i + 1..].iter().any(|(key, _)| key.is_some_and(|k| !k.hidden))).collect();
    Ok(view
        .into_iter()
        .zip(visible_after)
        .map(|((key, body), visible_after)| match key {
            Some(key) => SourceFragment {
                text: body.join("\n"),
                quoted: key.quoted,
                signature: key.signature,
                hidden: key.hidden,
            },
            None => SourceFragment { text: String::new(), quoted: false, signature: false, hidden: !visible_after },
        })
        .collect())
}

fn fragment(view: &[SourceFragment], index: usize) -> Result<&str, String> {
    view.get(index).map(|f| f.text.as_str()).ok_or_else(|| format!("no fragment {index} in {view:?}"))
}

fn regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))
}

/// github/email_reply_parser's notes: `^Awesome` (the fragment at this entry's position),
/// `(1) ^-- \nrick`, `(1) ^On ... contains "Loader"` (starts with `On`, contains `Loader`),
/// or `^Hi,$ (exact "Hi,")`.
fn check_fragment_match(view: &[SourceFragment], position: usize, spec: &str) -> Result<(), String> {
    let shape = regex(r#"^(?:\((\d+)\)\s+)?(.*?)(?:\s+\.\.\.\s+contains\s+"(.*)")?(?:\s+\(exact\s+"(.*)"\))?$"#)?;
    let caps = shape.captures(spec).ok_or_else(|| format!("unreadable fragment_matches {spec:?}"))?;
    let index = caps.get(1).map_or(Ok(position), |m| m.as_str().parse::<usize>().map_err(|e| e.to_string()))?;
    let text = fragment(view, index)?;
    let head = caps.get(2).map_or("", |m| m.as_str());
    // Ruby's `^` and `$` match at line boundaries.
    if !regex(&format!("(?m){head}"))?.is_match(text) {
        return Err(format!("fragment {index} {text:?} does not match {head:?}"));
    }
    if let Some(needle) = caps.get(3) {
        if !text.contains(needle.as_str()) {
            return Err(format!("fragment {index} {text:?} does not contain {:?}", needle.as_str()));
        }
    }
    if let Some(exact) = caps.get(4) {
        if text.trim() != exact.as_str() {
            return Err(format!("fragment {index} is {text:?}, not exactly {:?}", exact.as_str()));
        }
    }
    Ok(())
}

/// crisp's `fragments[0].toString()`. Its record notes that the first fragment "may still
/// contain the signature": crisp does not cut some signatures that casegate does, so the
/// first fragment with the signature fragments right after it counts too.
fn check_first_fragment(view: &[SourceFragment], want: &str) -> Result<(), String> {
    let first = fragment(view, 0)?;
    let signature: Vec<&str> = view[1..].iter().take_while(|f| f.signature).map(|f| f.text.as_str()).collect();
    let with_signature = std::iter::once(first).chain(signature).collect::<Vec<_>>().join("\n\n");
    let same = |got: &str| canonical(got, Comparison::Exact) == canonical(want, Comparison::Exact);
    if same(first) || same(&with_signature) {
        Ok(())
    } else {
        Err(format!("first fragment\n--- got:\n{first}\n--- want:\n{want}"))
    }
}

/// crisp-oss/email-reply-parser's test lines, in the shapes the corpus uses. An assertion of
/// another shape fails the record rather than being skipped.
fn check_js_assertion(view: &[SourceFragment], assertion: &str) -> Result<(), String> {
    let count = regex(r"^test\.equal\((\d+),\s*fragments\.length\);$")?;
    let at_least = regex(r"^test\.equal\(true,\s*fragments\.length\s*>=\s*(\d+)\);$")?;
    let flag = regex(r"^test\.equal\((true|false),\s*fragments\[(\d+)\]\.(isQuoted|isSignature|isHidden)\(\)\);$")?;
    let matches = regex(r"^test\.equal\(true,\s*/(.*)/\.test\(fragments\[(\d+)\](?:\.toString\(\))?\)\);$")?;
    let some_signature = regex(r"^test\.equal\(true,\s*fragments\.some\(f\s*=>\s*f\.isSignature\(\)\)\);$")?;
    let failed = |detail: String| Err(format!("{assertion}: {detail}"));
    if let Some(c) = count.captures(assertion) {
        let want: usize = c[1].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        if view.len() != want {
            return failed(format!("{} fragments: {view:?}", view.len()));
        }
        return Ok(());
    }
    if let Some(c) = at_least.captures(assertion) {
        let want: usize = c[1].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        if view.len() < want {
            return failed(format!("{} fragments: {view:?}", view.len()));
        }
        return Ok(());
    }
    if let Some(c) = flag.captures(assertion) {
        let index: usize = c[2].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        let f = view.get(index).ok_or_else(|| format!("{assertion}: no fragment {index}"))?;
        let got = match &c[3] {
            "isQuoted" => f.quoted,
            "isSignature" => f.signature,
            _ => f.hidden,
        };
        if got.to_string() != c[1] {
            return failed(format!("fragment {index} is {f:?}"));
        }
        return Ok(());
    }
    if let Some(c) = matches.captures(assertion) {
        let index: usize = c[2].parse().map_err(|e: std::num::ParseIntError| e.to_string())?;
        let text = fragment(view, index)?;
        if !regex(&c[1])?.is_match(text) {
            return failed(format!("fragment {index} is {text:?}"));
        }
        return Ok(());
    }
    if some_signature.is_match(assertion) {
        if !view.iter().any(|f| f.signature) {
            return failed(format!("no signature fragment in {view:?}"));
        }
        return Ok(());
    }
    failed("assertion shape not understood".to_string())
}
