//! Cases that close themselves, against a real store fed through the real ingest path,
//! with the sweep's clock set by the test.

use std::sync::Arc;

use chrono::Duration;

use super::*;
use crate::ingest::{Gateway, Origin};
use crate::store::lifecycle::resolved::Waiting;

const JANE: &str = "jane@customer.example";
const ANN: &str = "ann@support.example.com";

fn gateway(dir: &std::path::Path) -> Gateway {
    let text = "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
         [survey]\nsecret = \"auto-close-test-secret-0123456789\"\nbase_url = \"http://127.0.0.1:9\"\n\
         [workflow]\nauto_close_after_days = 10\nremind_after_days = 7\n";
    let config = Config::from_toml(text, &dir.join("casegate.toml")).unwrap();
    Gateway::open(Arc::new(config)).unwrap()
}

fn ingest(g: &mut Gateway, from: &str, subject: &str, id: &str, body: &str) -> String {
    let raw = format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}@test.example>\r\n\r\n{body}\r\n"
    );
    g.ingest(raw.as_bytes(), &Origin::file(id)).unwrap().outcome.as_str().to_string()
}

fn count(g: &Gateway, sql: &str) -> i64 {
    one(g, sql)
}

/// The one value `sql` selects.
fn one<T: rusqlite::types::FromSql>(g: &Gateway, sql: &str) -> T {
    g.store.sqlite().expect("a SQLite store").query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Jane's CASE-1, resolved by Ann now.
fn resolved_case(dir: &std::path::Path) -> Gateway {
    let mut g = gateway(dir);
    assert_eq!(ingest(&mut g, JANE, "Printer", "open", "It is broken."), "created");
    assert_eq!(ingest(&mut g, ANN, "Re: [CASE-1] Printer", "resolve", "#resolve\r\nNew toner."), "command");
    g
}

#[test]
fn a_resolved_case_is_reminded_once_then_closes_once_with_its_survey() {
    let dir = tempfile::tempdir().unwrap();
    let g = resolved_case(dir.path());
    let now = Utc::now();
    assert_eq!(run(&g.config, now + Duration::days(6)).unwrap(), Swept::default(), "too early for anything");

    let swept = run(&g.config, now + Duration::days(7) + Duration::minutes(1)).unwrap();
    assert_eq!(swept.reminded, [1]);
    assert_eq!(count(&g, "SELECT count(*) FROM outbox WHERE event = 'closing-soon' AND recipients LIKE '%jane@%'"), 1);
    assert_eq!(count(&g, "SELECT count(*) FROM audit WHERE action = 'close-reminded'"), 1);
    assert_eq!(run(&g.config, now + Duration::days(8)).unwrap(), Swept::default(), "one reminder");
    // What keeps two processes from both reminding or both closing: the claims.
    let db = g.store.db();
    let stored: (String, String, String) = g
        .store
        .sqlite()
        .expect("a SQLite store")
        .query_row("SELECT waiting_since, reminded_at, closes_at FROM close_reminders WHERE case_id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let again = Reminder { waiting_since: stored.0.clone(), reminded_at: stored.1, closes_at: stored.2 };
    assert!(!resolved::record_reminder(db, 1, &again).unwrap(), "this wait's reminder is claimed already");
    assert!(!resolved::claim_close(db, 1, "2000-01-01T00:00:00.000Z").unwrap(), "another wait's close");

    let swept = run(&g.config, now + Duration::days(10) + Duration::minutes(1)).unwrap();
    assert_eq!(swept.closed, [1]);
    let status: String = one(&g, "SELECT status FROM cases WHERE id = 1");
    assert_eq!(status, "closed");
    let line: String =
        one(&g, "SELECT body FROM messages WHERE case_id = 1 AND kind = 'system' ORDER BY id DESC LIMIT 1");
    assert!(line.starts_with("The case closed itself") && line.contains("Resolved → Closed"), "{line}");
    assert_eq!(count(&g, "SELECT count(*) FROM outbox WHERE event = 'closed' AND recipients LIKE '%jane@%'"), 1);
    assert_eq!(count(&g, "SELECT count(*) FROM survey_invitations WHERE case_id = 1"), 1);
    assert_eq!(count(&g, "SELECT count(*) FROM outbox WHERE event = 'survey'"), 1);

    // Nothing more, however often the sweep runs.
    assert_eq!(run(&g.config, now + Duration::days(40)).unwrap(), Swept::default());
    assert_eq!(count(&g, "SELECT count(*) FROM outbox WHERE event IN ('closing-soon', 'closed', 'survey')"), 3);
}

#[test]
fn a_customer_reply_stops_the_clock_until_staff_answer_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = resolved_case(dir.path());
    let now = Utc::now();
    let swept = run(&g.config, now + Duration::days(7) + Duration::minutes(1)).unwrap();
    assert_eq!(swept.reminded, [1]);
    assert_eq!(ingest(&mut g, JANE, "Re: [CASE-1] Printer", "reply", "Still testing, give me a week."), "replied");
    assert_eq!(run(&g.config, now + Duration::days(60)).unwrap(), Swept::default(), "the clock stopped");
    let status: String = one(&g, "SELECT status FROM cases WHERE id = 1");
    assert_eq!(status, "resolved");

    // Staff answer: the case waits again, from that answer, and is reminded afresh.
    assert_eq!(ingest(&mut g, ANN, "Re: [CASE-1] Printer", "again", "Any news?"), "replied");
    assert_eq!(run(&g.config, now + Duration::days(6)).unwrap(), Swept::default());
    let swept = run(&g.config, now + Duration::days(7) + Duration::minutes(1)).unwrap();
    assert_eq!(swept.reminded, [1]);
    assert_eq!(count(&g, "SELECT count(*) FROM outbox WHERE event = 'closing-soon'"), 2);
}

fn waiting(resolved: &str, staff: Option<&str>, customer: Option<&str>, reminder: Option<Reminder>) -> Waiting {
    Waiting {
        case: 1,
        resolved_at: Some(resolved.into()),
        updated_at: resolved.into(),
        last_staff_at: staff.map(Into::into),
        last_customer_at: customer.map(Into::into),
        reminder,
    }
}

fn at(s: &str) -> DateTime<Utc> {
    parse(s).unwrap()
}

#[test]
fn a_late_reminder_still_gives_the_full_notice() {
    let rule = AutoClose {
        after: std::time::Duration::from_secs(10 * 86_400),
        remind_after: std::time::Duration::from_secs(7 * 86_400),
    };
    let case = waiting("2026-01-01T00:00:00.000Z", Some("2026-01-01T00:00:00.000Z"), None, None);
    // The daemon was down for a month: reminded now, closing three days from now.
    assert_eq!(
        due(&case, &rule, at("2026-02-01T00:00:00.000Z")),
        Due::Remind { waiting_since: at("2026-01-01T00:00:00.000Z"), closes_at: at("2026-02-04T00:00:00.000Z") }
    );
    // A reminder of an earlier wait does not count for this one.
    let old = Reminder {
        waiting_since: "2025-12-01T00:00:00.000Z".into(),
        reminded_at: "2025-12-08T00:00:00.000Z".into(),
        closes_at: "2025-12-11T00:00:00.000Z".into(),
    };
    let case = waiting("2026-01-01T00:00:00.000Z", None, None, Some(old));
    assert!(matches!(due(&case, &rule, at("2026-01-09T00:00:00.000Z")), Due::Remind { .. }));
    // The customer wrote after the wait began: nothing.
    let case = waiting("2026-01-01T00:00:00.000Z", None, Some("2026-01-02T00:00:00.000Z"), None);
    assert_eq!(due(&case, &rule, at("2026-03-01T00:00:00.000Z")), Due::Nothing);
}
