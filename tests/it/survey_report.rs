//! `casegate survey report` run as an operator would: the numbers, the filters, the JSON
//! shape documented in docs/surveys.md, and usage errors.

use casegate::address::Address;
use casegate::config::Config;
use casegate::store::Store;
use casegate::survey::{Answer, Channel, Score};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::support::casegate::{contains, Installation};
use crate::support::mail::to_support;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Three cases (two of ACME, one of Customer Inc), four people asked, three answers.
fn installation_with_answers() -> Installation {
    let install = Installation::new("[survey]\nsecret = \"report-test secret 0123456789\"\nlink_valid_days = 30\n");
    for (n, from) in [(1, "ann@acme.example"), (2, "jane@customer.example"), (3, "bob@acme.example")] {
        let raw = to_support(from, &format!("Problem {n}"), &format!("report-{n}@example.com"), "", "Help.");
        assert_eq!(install.ingest_bytes(&format!("{n}.eml"), &raw)["case"], format!("CASE-{n}"));
    }
    let config = Config::load(&install.config).unwrap();
    let store = Store::open(&config).unwrap();
    let conn = store.db();
    let addr = |s: &str| Address::parse(s).unwrap();
    let invite = |case: i64, who: &str, when: &str| {
        casegate::store::surveys::invite(conn, &config, case, &addr(who), at(when)).unwrap().unwrap();
    };
    invite(1, "ann@acme.example", "2030-01-05T09:00:00Z");
    invite(2, "jane@customer.example", "2030-02-10T09:00:00Z");
    invite(3, "bob@acme.example", "2030-03-01T09:00:00Z");
    invite(3, "carol@acme.example", "2030-03-01T09:00:00Z");
    let answer = |case: i64, who: &str, score: u8, solved: Option<bool>, comment: Option<&str>, channel, when: &str| {
        let a = Answer::new(Score::new(score).unwrap(), solved, comment);
        casegate::store::surveys::record_answer(conn, case, &addr(who), &a, channel, at(when)).unwrap();
    };
    answer(1, "ann@acme.example", 5, Some(true), Some("Fast, thank you"), Channel::Web, "2030-01-06T10:00:00Z");
    answer(2, "jane@customer.example", 2, Some(false), Some("Still\nbroken"), Channel::Mail, "2030-02-11T10:00:00Z");
    answer(3, "bob@acme.example", 4, None, None, Channel::Mail, "2030-03-02T10:00:00Z");
    install
}

#[test]
fn the_json_report_has_the_documented_numbers_and_comments() {
    let install = installation_with_answers();

    let report = install.json(&["survey", "report", "--json"]);

    let expected = json!({
        "since": null, "account": null,
        "sent": 4, "answered": 3,
        "response_rate": 0.75, "average_score": 3.67, "solved_share": 0.5,
        "solved_yes": 1, "solved_no": 1,
        "scores": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1},
        "comments": [
            {"case": "CASE-2", "recipient": "jane@customer.example", "score": 2, "solved": false,
             "comment": "Still\nbroken", "channel": "mail",
             "answered_at": "2030-02-11T10:00:00.000Z", "updated_at": "2030-02-11T10:00:00.000Z"},
            {"case": "CASE-1", "recipient": "ann@acme.example", "score": 5, "solved": true,
             "comment": "Fast, thank you", "channel": "web"}
        ]
    });
    contains(&report, &expected, "$").unwrap_or_else(|e| panic!("{e}\n{report:#}"));
}

#[test]
fn since_and_account_narrow_the_report() {
    let install = installation_with_answers();

    let since = install.json(&["survey", "report", "--json", "--since", "2030-02-10"]);
    let acme = install.json(&["survey", "report", "--json", "--account", "acme"]);
    let both = install.json(&["survey", "report", "--json", "--account", "ACME", "--since", "2030-02-01"]);

    contains(&since, &json!({"since": "2030-02-10", "sent": 3, "answered": 2, "average_score": 3.0}), "$").unwrap();
    contains(
        &acme,
        &json!({"account": "acme", "sent": 3, "answered": 2, "average_score": 4.5, "solved_share": 1.0}),
        "$",
    )
    .unwrap();
    contains(&both, &json!({"sent": 2, "answered": 1, "response_rate": 0.5, "comments": []}), "$").unwrap();
}

#[test]
fn the_table_is_readable() {
    let install = installation_with_answers();

    let text = install.ok(&["survey", "report"]);

    for line in [
        "Survey report: all surveys",
        "sent:           4",
        "answered:       3",
        "response rate:  75.0 %",
        "average score:  3.67 of 5",
        "solved:         50.0 % (1 of 2 who said)",
        "Comments (2), newest first:",
        "CASE-2  2      no      jane@customer.example  Still broken",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn an_empty_installation_reports_zeroes_and_nulls() {
    let install = Installation::new("");

    let report = install.json(&["survey", "report", "--json"]);

    contains(
        &report,
        &json!({"sent": 0, "answered": 0, "response_rate": null, "average_score": null, "comments": []}),
        "$",
    )
    .unwrap();
    assert!(install.ok(&["survey", "report"]).contains("No comments."));
}

#[test]
fn a_malformed_since_date_is_a_usage_error() {
    let install = Installation::new("");

    for bad in ["2030-13-01", "1.2.2030", "last week"] {
        let out = install.run(&["survey", "report", "--since", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("YYYY-MM-DD"), "{bad}: {stderr}");
    }
}
