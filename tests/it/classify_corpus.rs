//! The machine-mail classifier against mail nobody here wrote: the shared corpus of samples
//! from zammad, sisimai, BounceParser, flanker and others (`../shared/corpus`, beside the
//! repository; see its README). Each record's expected facts come from its source
//! project's own tests and are mapped onto casegate's verdicts:
//!
//! | fact                                                  | true means            | false means       |
//! |-------------------------------------------------------|-----------------------|-------------------|
//! | `is_bounce`                                           | `Bounce`              | not `Bounce`      |
//! | `is_auto_reply`, `out_of_office`, `is_auto_response`  | `AutoReply`           | not `AutoReply`   |
//! | `is_auto_generated`                                   | any machine kind      | a person (`None`) |
//! | `is_delivery_notification`                            | `Bounce` or `Report`  | neither           |
//! | `send_auto_response`                                  | `auto_response_allowed` is `Ok` | `Err`   |
//!
//! Records tagged `negative` must never be a `Bounce`, whatever else they are (a
//! challenge-response or an abuse report is machine mail, but nothing bounced).
//!
//! The test prints the score — facts that hold out of facts checked, the allowed
//! mismatches counted as misses — and how many mails the corpus says a person wrote were
//! judged machine mail. It fails below 98 %, on any person's mail judged machine mail,
//! and on any mismatch not listed in `ALLOWED_MISMATCHES`. A person's mail is a record
//! whose machine-mail facts are all false (and that is no challenge-response), or one the
//! gateway may answer (`send_auto_response: true`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use casegate::classify::{auto_response_allowed, machine_mail, Context, MachineKind, Verdict};
use serde_json::Value;

/// Facts this test knows how to check; records without any of them (and not tagged
/// `negative`) are about parsing or reply stripping and are skipped.
const FACTS: &[&str] = &[
    "is_bounce",
    "is_auto_reply",
    "out_of_office",
    "is_auto_response",
    "is_auto_generated",
    "is_delivery_notification",
    "send_auto_response",
];

/// Expected facts that do not hold, each with the reason: (file, fact, why). Every entry
/// must still disagree, so fixing the cause forces its entry out of this list.
const ALLOWED_MISMATCHES: &[(&str, &str, &str)] = &[
    (
        "sisimai/maildir/bsd/lhost-sendmail-14.eml",
        "is_bounce",
        "a person forwards a bounce (Apple Mail, \"Fwd: Returned mail: ...\", \"Forward the message.\" \
         above the quoted notice); sisimai digs bounces out of forwards, but for a support desk \
         this is a customer asking about one, and it must open a case",
    ),
    (
        "sisimai/maildir/bsd/lhost-sendmail-14.eml",
        "is_auto_generated",
        "the same forward: a person wrote it (see the is_bounce entry)",
    ),
];

/// Least share of machine-mail facts that must hold (per cent).
const SCORE_TARGET: f64 = 98.0;

/// Facts that say a mail is machine mail when true.
const MACHINE_FACTS: &[&str] = &[
    "is_bounce",
    "is_auto_reply",
    "out_of_office",
    "is_auto_response",
    "is_auto_generated",
    "is_delivery_notification",
];

/// Whether the record says a person wrote the mail (see the module documentation).
fn written_by_a_person(expected: &Value) -> bool {
    if expected["send_auto_response"] == Value::Bool(true) {
        return true;
    }
    let facts: Vec<bool> = MACHINE_FACTS.iter().filter_map(|f| expected[*f].as_bool()).collect();
    !facts.is_empty() && facts.iter().all(|f| !f) && expected["kind"] != "challenge/response"
}

struct Mismatch {
    file: String,
    fact: String,
    expected: String,
    got: String,
}

#[test]
fn corpus_machine_mail_facts_hold() {
    let Some(root) = crate::support::corpus::root() else {
        println!("{}", crate::support::corpus::skipping());
        return;
    };
    let index = root.join("expected.jsonl");
    let ctx = Context { system_addresses: &[], instance_id: "test" };
    let index = std::fs::read_to_string(&index).expect("expected.jsonl is readable");

    let mut mismatches = Vec::new();
    let mut records_checked = 0;
    let mut facts_checked = 0;
    let mut people = 0;
    let mut people_judged_machine = Vec::new();
    for (line_no, line) in index.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("expected.jsonl line {}: {e}", line_no + 1));
        if record["input_kind"] != "rfc822" {
            continue;
        }
        let file = record["file"].as_str().expect("record has a file").to_string();
        let expected = &record["expected"];
        let negative = record["behaviours"].as_array().is_some_and(|b| b.iter().any(|x| x == "negative"));
        let facts: Vec<(&str, bool)> = FACTS.iter().filter_map(|f| expected[*f].as_bool().map(|v| (*f, v))).collect();
        let verbose = std::env::var_os("CASEGATE_CORPUS_VERBOSE").is_some();
        if facts.is_empty() && !negative && !verbose {
            continue;
        }

        let raw = std::fs::read(root.join(&file)).unwrap_or_else(|e| panic!("{file} listed in expected.jsonl: {e}"));
        let parsed = casegate::parse::parse(&raw);
        if facts.is_empty() && !negative {
            // Verbose only: what casegate makes of the corpus's ordinary mail, unchecked.
            let verdict = parsed.as_ref().and_then(|m| machine_mail(m, &ctx));
            println!("{file} (no facts): {}", describe(verdict.as_ref()));
            continue;
        }
        records_checked += 1;
        let Some(mail) = parsed else {
            mismatches.push(Mismatch { file, fact: "parses".into(), expected: "a mail".into(), got: "nothing".into() });
            continue;
        };
        let verdict = machine_mail(&mail, &ctx);
        let kind = verdict.as_ref().map(|v| v.kind);
        if written_by_a_person(expected) {
            people += 1;
            if let Some(v) = &verdict {
                people_judged_machine.push(format!("{file}: {}", describe(Some(v))));
            }
        }
        let allowed = auto_response_allowed(&mail);
        // `CASEGATE_CORPUS_VERBOSE=1 cargo test ... -- --nocapture` shows every verdict.
        if verbose {
            println!("{file}: {}; {allowed:?}", describe(verdict.as_ref()));
        }

        let mut check = |fact: &str, expected: String, holds: bool, got: String| {
            facts_checked += 1;
            if !holds {
                mismatches.push(Mismatch { file: file.clone(), fact: fact.into(), expected, got });
            }
        };
        for (fact, want) in facts {
            let holds = match fact {
                "is_bounce" => (kind == Some(MachineKind::Bounce)) == want,
                "is_auto_reply" | "out_of_office" | "is_auto_response" => {
                    (kind == Some(MachineKind::AutoReply)) == want
                }
                "is_auto_generated" => kind.is_some() == want,
                "is_delivery_notification" => matches!(kind, Some(MachineKind::Bounce | MachineKind::Report)) == want,
                "send_auto_response" => allowed.is_ok() == want,
                other => unreachable!("FACTS lists only known facts, not {other}"),
            };
            let got = if fact == "send_auto_response" {
                match &allowed {
                    Ok(()) => "allowed".to_string(),
                    Err(why) => format!("refused: {why}"),
                }
            } else {
                describe(verdict.as_ref())
            };
            check(fact, want.to_string(), holds, got);
        }
        if negative {
            check("negative", "not a bounce".into(), kind != Some(MachineKind::Bounce), describe(verdict.as_ref()));
        }
    }

    // A corpus without the records this test is about would make it pass vacuously.
    assert!(
        records_checked >= 10 && facts_checked >= records_checked,
        "only {records_checked} corpus records ({facts_checked} facts) were checked"
    );

    // Every fact that does not hold is a miss, the allowed ones included.
    let score = 100.0 * (facts_checked - mismatches.len()) as f64 / facts_checked as f64;
    println!(
        "machine-mail classification: {}/{facts_checked} facts hold = {score:.1} % (target {SCORE_TARGET:.0} %); \
         mails written by a person judged machine mail: {} of {people}",
        facts_checked - mismatches.len(),
        people_judged_machine.len()
    );
    assert!(score >= SCORE_TARGET, "machine-mail classification {score:.1} % is below {SCORE_TARGET} %");
    assert!(people >= 5, "only {people} mails written by a person in the corpus");
    assert!(people_judged_machine.is_empty(), "people's mail judged machine mail: {people_judged_machine:#?}");

    let allowed: BTreeSet<(&str, &str)> = ALLOWED_MISMATCHES.iter().map(|(f, fact, _)| (*f, *fact)).collect();
    let stale: Vec<_> =
        allowed.iter().filter(|(f, fact)| !mismatches.iter().any(|m| m.file == *f && m.fact == *fact)).collect();
    mismatches.retain(|m| !allowed.contains(&(m.file.as_str(), m.fact.as_str())));
    println!(
        "corpus: {records_checked} records, {facts_checked} facts checked, {} mismatches, {} allowed",
        mismatches.len(),
        allowed.len() - stale.len()
    );

    let mut table = String::new();
    for m in &mismatches {
        let _ = writeln!(table, "| {} | {} | expected {} | got {} |", m.file, m.fact, m.expected, m.got);
    }
    assert!(
        mismatches.is_empty(),
        "{} corpus facts do not hold:\n| file | fact | expected | got |\n{table}",
        mismatches.len()
    );
    assert!(stale.is_empty(), "ALLOWED_MISMATCHES entries that now hold (remove them): {stale:?}");
}

fn describe(verdict: Option<&Verdict>) -> String {
    match verdict {
        Some(v) => format!("{} ({})", v.kind.as_str(), v.reason),
        None => "human".into(),
    }
}
