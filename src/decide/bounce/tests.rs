//! Bounce decisions on plain data: a bounce, the notification rows a snapshot would hold,
//! a configuration. No database.

use std::path::Path;

use super::*;
use crate::case::Event;
use crate::decide::EntryRef;

const GONE: &str = "gone@customer.example";

fn config(extra: &str) -> Config {
    let text = format!("system_addresses = [\"support@example.com\"]\n{extra}");
    Config::from_toml(&text, Path::new("/casegate.toml")).unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-12-07T10:00:00Z".parse().unwrap()
}

/// A DSN for our notification `<n1@example.com>` with this status and diagnostic.
fn dsn(config: &Config, action: &str, status: &str, diagnostic: &str) -> Analyzed {
    let raw = format!(
        "From: MAILER-DAEMON@mx.customer.example\r\nTo: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn1@mx.customer.example>\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.example\r\n\r\n\
         Final-Recipient: rfc822; {GONE}\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <n1@example.com>\r\nSubject: [CASE-7] Printer\r\n\
         --B--\r\n"
    );
    let mail = crate::parse::parse(raw.as_bytes()).unwrap();
    Analyzed::read(config, mail, raw.as_bytes())
}

fn row(recent_soft: u32, suppressed: bool) -> SentRow {
    SentRow {
        id: 17,
        case: Some(7),
        to: Address::parse(GONE).unwrap(),
        status: "sent".into(),
        by_return_path: false,
        recent_bounces: recent_soft,
        recent_soft,
        suppressed,
    }
}

fn events(plan: &Plan<'_>) -> Vec<Event<CaseRef, EntryRef>> {
    plan.events().cloned().collect()
}

#[test]
fn a_hard_bounce_marks_the_row_writes_on_the_case_tells_staff_and_suppresses_the_address() {
    let c = config("");
    let a = dsn(&c, "failed", "5.1.1", "550 5.1.1 <gone@customer.example>: Recipient address rejected: User unknown");
    assert_eq!(a.bounce.as_ref().map(|b| b.returned_ids.clone()), Some(vec!["n1@example.com".to_string()]));
    let p = plan(&c, &a, &[row(0, false)], now()).expect("a bounce of row 17");
    assert_eq!((p.outcome, p.case), (Outcome::Replied, Some(CaseRef::Existing(7))));
    let Some(Effect::RecordBounce(b)) = p.effects.first() else { panic!("{p:?}") };
    assert_eq!((b.row, b.address.as_str(), b.status.as_deref(), b.hard), (17, GONE, Some("5.1.1"), true));
    assert!(b.summary.starts_with("5.1.1 user-unknown: 550 5.1.1"), "{}", b.summary);
    let until = p.effects.iter().find_map(|e| match e {
        Effect::Suppress { address, until, .. } if address.as_str() == GONE => Some(*until),
        _ => None,
    });
    assert_eq!(until, Some(now() + chrono::Duration::days(30)));
    let entry = p.effects.iter().find_map(|e| match e {
        Effect::AddEntry(e) => Some(e),
        _ => None,
    });
    let entry = entry.expect("a system entry");
    assert_eq!(entry.kind, MessageKind::System);
    assert!(entry.body.contains(GONE) && entry.body.contains("the mailbox does not exist"), "{}", entry.body);
    assert!(
        matches!(&events(&p)[..], [Event::Bounced { case: CaseRef::Existing(7), address, .. }] if address.as_str() == GONE)
    );
    assert!(p.reason.as_deref().unwrap().starts_with("bounce: notification #17 to gone@customer.example bounced"));
}

#[test]
fn soft_bounces_count_towards_a_suppression_and_staff_are_told_once() {
    let c = config("[bounces]\nsoft_bounces_to_suppress = 3");
    let a = dsn(&c, "failed", "5.2.2", "552 5.2.2 Mailbox full");
    let first = plan(&c, &a, &[row(0, false)], now()).unwrap();
    assert!(!first.effects.iter().any(|e| matches!(e, Effect::Suppress { .. })), "one soft bounce suppresses nothing");
    assert_eq!(events(&first).len(), 1, "staff hear of the first bounce");
    let second = plan(&c, &a, &[row(1, false)], now()).unwrap();
    assert!(events(&second).is_empty(), "not of the second");
    let third = plan(&c, &a, &[row(2, false)], now()).unwrap();
    let reason = third.effects.iter().find_map(|e| match e {
        Effect::Suppress { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.unwrap().starts_with("3 soft bounces within 7 days"), "the third does");
    // Already suppressed: recorded, not suppressed again, nobody told.
    let again = plan(&c, &a, &[row(0, true)], now()).unwrap();
    assert!(again.effects.iter().any(|e| matches!(e, Effect::RecordBounce(_))));
    assert!(!again.effects.iter().any(|e| matches!(e, Effect::Suppress { .. })) && events(&again).is_empty());
}

#[test]
fn a_delay_or_a_row_that_bounced_already_changes_nothing() {
    let c = config("");
    let delayed = dsn(&c, "delayed", "4.4.1", "451 4.4.1 no answer from host");
    let p = plan(&c, &delayed, &[row(0, false)], now()).unwrap();
    assert!(p.effects.iter().all(|e| matches!(e, Effect::Audit(_))), "{p:?}");
    assert!(p.reason.unwrap().contains("delivery is delayed"));
    let a = dsn(&c, "failed", "5.1.1", "550 5.1.1 user unknown");
    let mut bounced = row(1, true);
    bounced.status = "bounced".into();
    let p = plan(&c, &a, &[bounced], now()).unwrap();
    assert!(p.effects.iter().all(|e| matches!(e, Effect::Audit(_))), "{p:?}");
}

#[test]
fn a_bounce_that_names_no_notification_of_ours_is_left_to_the_machine_mail_rules() {
    let c = config("");
    let a = dsn(&c, "failed", "5.1.1", "550 5.1.1 user unknown");
    assert!(plan(&c, &a, &[], now()).is_none());
}

#[test]
fn a_bounce_at_a_return_path_needs_no_report() {
    let c = config("");
    let raw = "From: MAILER-DAEMON@mx.customer.example\r\nTo: bounce+17@example.com\r\n\
               Subject: Undeliverable\r\n\r\nSorry.\r\n";
    let a = Analyzed::read(&c, crate::parse::parse(raw.as_bytes()).unwrap(), raw.as_bytes());
    let mut r = row(0, false);
    r.by_return_path = true;
    let p = plan(&c, &a, &[r], now()).expect("the return path names row 17");
    let Some(Effect::RecordBounce(b)) = p.effects.first() else { panic!("{p:?}") };
    assert_eq!((b.cause, b.hard), (Cause::Undefined, false));
}
