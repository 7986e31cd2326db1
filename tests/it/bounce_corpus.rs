//! The bounce reader against real bounces nobody here wrote: the shared corpus's samples
//! from sisimai's and BounceParser's sets (and flanker's), each with the facts those
//! projects' own tests assert per recipient. The test prints every score and fails below
//! its target:
//!
//! | score      | what is compared                                                        | target |
//! |------------|-------------------------------------------------------------------------|--------|
//! | recipients | sisimai: how many recipients (its tests give a number), and every address casegate reports occurs in the mail; BounceParser: the addresses, lower-cased | 95 % |
//! | status     | each expected DSN status code is among casegate's for the mail; sisimai's own pseudo codes (`x.0.9xx`) only when the mail carries a `Status:` field, as the corpus's `compare` note says | 95 % |
//! | hard/soft  | each expected `hard_bounce` among casegate's (sisimai)                  | 90 % |
//! | reply code | each expected SMTP reply code among casegate's (sisimai, BounceParser)  | shown  |
//! | cause      | each expected reason among casegate's causes, in sisimai's names (sisimai) | shown |
//!
//! Only bounces are scored (`is_bounce: true`): abuse reports, vacation replies and
//! delivery successes are other kinds of mail (see `classify_corpus`). Codes and
//! recipients are compared as multisets, since a report need not list its recipients in
//! the order a project's test does. `CASEGATE_CORPUS_VERBOSE=1` prints every miss.

use std::fmt::Write as _;

use casegate::classify::bounce::{self, Cause, Report};
use serde_json::Value;

/// Targets of the scores that have one (per cent).
const RECIPIENT_TARGET: f64 = 95.0;
const STATUS_TARGET: f64 = 95.0;
const HARD_SOFT_TARGET: f64 = 90.0;

#[derive(Default)]
struct Score {
    hits: usize,
    total: usize,
}

impl Score {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.hits += usize::from(hit);
    }

    fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.hits as f64 / self.total as f64
        }
    }

    fn line(&self, name: &str, target: Option<f64>) -> String {
        let target = target.map_or("(no target)".to_string(), |t| format!("(target {t:.0} %)"));
        format!("{name:<11} {:>3}/{:<3} = {:5.1} % {target}", self.hits, self.total, self.percent())
    }
}

/// sisimai's name of a cause, for comparing with its facts.
fn sisimai_name(cause: Cause) -> &'static str {
    match cause {
        Cause::UserUnknown => "userunknown",
        Cause::HostUnknown => "hostunknown",
        Cause::HasMoved => "hasmoved",
        Cause::NotAccepting => "notaccept",
        Cause::MailboxFull => "mailboxfull",
        Cause::TooLarge => "mesgtoobig",
        Cause::ExceedsLimit => "exceedlimit",
        Cause::Suspended => "suspend",
        Cause::Filtered => "filtered",
        Cause::Rejected => "rejected",
        Cause::Blocked => "blocked",
        Cause::Spam => "spamdetected",
        Cause::Virus => "virusdetected",
        Cause::Policy => "policyviolation",
        Cause::AuthFailure => "authfailure",
        Cause::NoReverseDns => "requireptr",
        Cause::BadReputation => "badreputation",
        Cause::Security => "securityerror",
        Cause::NoRelaying => "norelaying",
        Cause::TooManyConnections => "toomanyconn",
        Cause::RateLimited => "speeding",
        Cause::Expired => "expired",
        Cause::NetworkError => "networkerror",
        Cause::SystemError => "systemerror",
        Cause::SystemFull => "systemfull",
        Cause::MailerError => "mailererror",
        Cause::ContentError => "contenterror",
        Cause::NotCompliant => "notcompliantrfc",
        Cause::SyntaxError => "syntaxerror",
        Cause::Undefined => "undefined",
    }
}

/// A sisimai pseudo code: its own `x.y.9zz` for reasons without a standard code.
fn is_pseudo(status: &str) -> bool {
    status.rsplit('.').next().is_some_and(|detail| detail.len() == 3 && detail.starts_with('9'))
}

/// Whether the raw mail carries a `Status:` field with a code (a delivery status part).
fn has_status_field(raw: &str) -> bool {
    // `raw` is lower-cased already.
    raw.lines()
        .any(|l| l.trim_start().strip_prefix("status:").is_some_and(|v| v.trim_start().starts_with(['2', '4', '5'])))
}

/// Counts how many of `expected` are found in `got`, each found item used once.
fn multiset_hits<T: PartialEq + Clone>(expected: &[T], got: &[T]) -> Vec<bool> {
    let mut pool = got.to_vec();
    expected
        .iter()
        .map(|e| match pool.iter().position(|g| g == e) {
            Some(i) => {
                pool.remove(i);
                true
            }
            None => false,
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[derive(Default)]
struct Scores {
    recipients: Score,
    status: Score,
    hard: Score,
    reply: Score,
    cause: Score,
    misses: Vec<String>,
}

impl Scores {
    fn miss(&mut self, file: &str, what: &str, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) {
        self.misses.push(format!("{file}: {what}: expected {expected:?}, got {got:?}"));
    }
}

#[test]
fn corpus_bounces_are_read_per_recipient() {
    let Some(root) = crate::support::corpus::root() else {
        println!("{}", crate::support::corpus::skipping());
        return;
    };
    let mut s = Scores::default();
    let mut records = 0;
    for record in crate::support::corpus::records(&root) {
        let e = &record.expected;
        if record.input_kind != "rfc822" || e["is_bounce"] != Value::Bool(true) {
            continue;
        }
        records += 1;
        let raw = std::fs::read(root.join(&record.file)).expect("corpus file is readable");
        let mail = casegate::parse::parse(&raw);
        // Where an address may be written: the raw mail, or its decoded text and parts.
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(m) = &mail {
            text.push_str(&m.text);
            for a in &m.attachments {
                text.push_str(&String::from_utf8_lossy(&a.data));
            }
        }
        let report = mail.as_ref().and_then(|m| bounce::parse(m, &raw));
        if std::env::var("CASEGATE_BOUNCE_FILE").is_ok_and(|f| record.file.ends_with(&f)) {
            println!("{}: {report:#?}\n--- text:\n{}", record.file, mail.as_ref().map_or("", |m| m.text.as_str()));
        }
        score_record(&mut s, &record.file, e, &text.to_lowercase(), report.as_ref());
    }
    assert!(records >= 250, "only {records} bounces in the corpus: is it complete?");

    let lines = [
        s.recipients.line("recipients", Some(RECIPIENT_TARGET)),
        s.status.line("status", Some(STATUS_TARGET)),
        s.hard.line("hard/soft", Some(HARD_SOFT_TARGET)),
        s.reply.line("reply code", None),
        s.cause.line("cause", None),
    ];
    println!("bounce corpus: {records} bounces\n  {}", lines.join("\n  "));
    let below = s.recipients.percent() < RECIPIENT_TARGET
        || s.status.percent() < STATUS_TARGET
        || s.hard.percent() < HARD_SOFT_TARGET;
    if below || std::env::var_os("CASEGATE_CORPUS_VERBOSE").is_some() {
        let mut list = String::new();
        for m in &s.misses {
            let _ = writeln!(list, "  {m}");
        }
        println!("misses:\n{list}");
    }
    assert!(!below, "bounce scores below target:\n  {}", lines[..3].join("\n  "));
}

fn score_record(s: &mut Scores, file: &str, e: &Value, raw_lower: &str, report: Option<&Report>) {
    let empty = Vec::new();
    let recipients = report.map_or(&empty, |r| &r.recipients);
    let addresses: Vec<String> = recipients.iter().map(|r| r.address.to_string()).collect();

    // Recipients: a number (sisimai) or the addresses (BounceParser).
    if let Some(n) = e["recipients"].as_u64() {
        let all_in_mail = addresses.iter().all(|a| raw_lower.contains(a.as_str()));
        let hit = addresses.len() as u64 == n && all_in_mail;
        s.recipients.add(hit);
        if !hit {
            s.miss(file, "recipients", n, &addresses);
        }
    } else if let Some(list) = e["addresses"].as_array() {
        let mut want: Vec<String> = list.iter().filter_map(|a| a.as_str()).map(str::to_lowercase).collect();
        let mut got = addresses.clone();
        want.sort();
        got.sort();
        s.recipients.add(want == got);
        if want != got {
            s.miss(file, "addresses", &want, &got);
        }
    }

    // Status codes, skipping sisimai's pseudo codes where the mail has no Status: field.
    let statuses: Vec<String> = recipients.iter().filter_map(|r| r.status.clone()).collect();
    let has_field = has_status_field(raw_lower);
    let want: Vec<String> =
        strings(&e["dsn_status"]).into_iter().filter(|st| !st.is_empty() && (!is_pseudo(st) || has_field)).collect();
    for (st, hit) in want.iter().zip(multiset_hits(&want, &statuses)) {
        s.status.add(hit);
        if !hit {
            s.miss(file, "status", st, &statuses);
        }
    }

    // Reply codes: sisimai's list, or BounceParser's one code.
    let replies: Vec<String> = recipients.iter().filter_map(|r| r.reply_code.map(|c| c.to_string())).collect();
    let want: Vec<String> =
        strings(&e["reply_code"]).into_iter().chain(strings(&e["smtp_code"])).filter(|c| !c.is_empty()).collect();
    for (code, hit) in want.iter().zip(multiset_hits(&want, &replies)) {
        s.reply.add(hit);
        if !hit {
            s.miss(file, "reply code", code, &replies);
        }
    }

    // Hard or soft, per recipient.
    let hards: Vec<bool> = recipients.iter().map(|r| r.hard).collect();
    let want: Vec<bool> =
        e["hard_bounce"].as_array().map_or(Vec::new(), |a| a.iter().filter_map(Value::as_bool).collect());
    for (h, hit) in want.iter().zip(multiset_hits(&want, &hards)) {
        s.hard.add(hit);
        if !hit {
            let causes: Vec<&str> = recipients.iter().map(|r| r.cause.as_str()).collect();
            s.miss(file, "hard", h, (&hards, causes));
        }
    }

    // The cause, in sisimai's names.
    let causes: Vec<String> = recipients.iter().map(|r| sisimai_name(r.cause).to_string()).collect();
    let want = strings(&e["reason"]);
    if e["recipients"].is_u64() {
        for (reason, hit) in want.iter().zip(multiset_hits(&want, &causes)) {
            s.cause.add(hit);
            if !hit {
                let said: Vec<&str> = recipients.iter().map(|r| r.diagnostic.as_str()).collect();
                s.miss(file, "cause", reason, (&causes, said));
            }
        }
    }
}
