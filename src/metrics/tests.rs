use std::time::Duration;

use chrono::Utc;

use super::database::Figures;
use super::*;

/// The value of the sample `name{labels}` in rendered metrics (`labels` as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn reasons_become_bounded_classes_never_their_text() {
    for reason in Reason::ALL {
        let text = format!("{}: mail from jane@customer.example, subject \"Printer\"", reason.as_str());
        assert_eq!(reason_class(Some(&text)), reason.as_str());
    }
    assert_eq!(reason_class(None), "none");
    assert_eq!(reason_class(Some("auto-reply: Auto-Submitted: auto-replied")), "auto-reply");
    assert_eq!(reason_class(Some("refused: #reopen: unknown command")), "refused");
    assert_eq!(reason_class(Some("applied: #accept")), "applied");
    assert_eq!(reason_class(Some("survey answer recorded: score 5, solved yes")), "survey-answer");
    assert_eq!(
        reason_class(Some("already processed from this source position: mail #3 from imap:support uid 3")),
        "same-position"
    );
    assert_eq!(reason_class(Some("jane@customer.example wrote something new")), "other");
    assert_eq!(reason_class(Some("")), "other");
}

#[test]
fn outcomes_reasons_and_timings_render_with_units_and_total_suffixes() {
    let m = Metrics::new();
    m.mail(Outcome::Created, None);
    m.mail(Outcome::Created, None);
    m.mail(Outcome::Quarantined, Some("sender-not-participant: eve@elsewhere.example on CASE-1"));
    m.ingest_latency(Duration::from_millis(700));
    m.writer_batch(Duration::from_millis(30), true);
    m.writer_batch(Duration::from_millis(30), false);
    m.notification_sent(Duration::from_millis(12));
    m.notification_outcome("deferred");
    m.smtp_error("connection");
    m.token_refresh("support", true);
    m.token_refresh("smtp", false);

    let text = m.render();
    assert_eq!(sample(&text, r#"casegate_mails_total{outcome="created"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, r#"casegate_mails_total{outcome="quarantined"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_mails_total{outcome="duplicate"}"#), Some(0.0), "every outcome is shown");
    let reasons = r#"casegate_mail_reasons_total{outcome="quarantined",reason="sender-not-participant"}"#;
    assert_eq!(sample(&text, reasons), Some(1.0), "{text}");
    assert!(!text.contains("eve@"), "an address leaked into a label:\n{text}");
    assert_eq!(sample(&text, r#"casegate_ingest_latency_seconds_bucket{le="0.5"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"casegate_ingest_latency_seconds_bucket{le="1.0"}"#), Some(1.0));
    assert_eq!(sample(&text, "casegate_writer_batch_duration_seconds_count"), Some(1.0));
    assert_eq!(sample(&text, "casegate_writer_batch_failures_total"), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_outbox_sends_total{result="sent"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_outbox_sends_total{result="deferred"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_smtp_errors_total{kind="connection"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_oauth_token_refreshes_total{client="smtp",result="error"}"#), Some(1.0));
    assert!(text.contains("# TYPE casegate_ingest_latency_seconds histogram"), "{text}");
    assert!(text.contains("# UNIT casegate_database_size_bytes bytes"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn a_mailbox_state_follows_its_connection_and_keeps_the_start_of_an_outage() {
    let m = Metrics::new();
    let mailbox = m.mailbox("support");
    assert!(!m.mailbox_states()["support"].connected, "registered as not yet connected");

    mailbox.connected(true);
    mailbox.fetched();
    let text = m.render();
    assert_eq!(sample(&text, r#"casegate_mailbox_connected{mailbox="support"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_mailbox_idle{mailbox="support"}"#), Some(1.0));
    let fetched = sample(&text, r#"casegate_mailbox_last_fetch_timestamp_seconds{mailbox="support"}"#).unwrap();
    assert!((fetched - Utc::now().timestamp() as f64).abs() < 5.0, "{fetched}");

    mailbox.failed("nothing accepts connections on 127.0.0.1:143", Duration::from_secs(2));
    let first = m.mailbox_states()["support"].clone();
    assert!(!first.connected && first.last_error.as_deref().unwrap().contains("nothing accepts"));
    std::thread::sleep(Duration::from_millis(5));
    mailbox.failed("again", Duration::from_secs(4));
    let second = m.mailbox_states()["support"].clone();
    assert_eq!(second.since, first.since, "the outage started at the first failure");
    assert!(second.retry_at > first.retry_at);
    let text = m.render();
    assert_eq!(sample(&text, r#"casegate_mailbox_connected{mailbox="support"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"casegate_mailbox_reconnects_total{mailbox="support"}"#), Some(2.0));

    mailbox.connected(false);
    assert!(m.mailbox_states()["support"].connected);
    assert_eq!(sample(&m.render(), r#"casegate_mailbox_idle{mailbox="support"}"#), Some(0.0), "polling");
}

#[test]
fn the_writer_counts_as_active_only_within_the_window() {
    let m = Metrics::new();
    assert!(!m.writer_active_within(Duration::from_secs(60)), "never active yet");
    m.writer_finished_job();
    assert!(m.writer_active_within(Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!m.writer_active_within(Duration::from_millis(5)));
}

#[test]
fn the_database_figures_count_what_waits_and_not_what_waits_for_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open_dir(dir.path(), false).unwrap();
    let now = Utc::now();
    let ago = |secs: i64| crate::store::stamp(now - chrono::Duration::seconds(secs));
    let insert = |id: i64, status: &str, attempts: i64, next: String, created: String| {
        store
            .sqlite()
            .unwrap()
            .execute(
                "INSERT INTO outbox (id, event, recipients, subject, message_id, status, attempts, next_attempt_at, created_at)
                 VALUES (?1, 'acknowledgement', '[\"jane@customer.example\"]', 's', ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![id, format!("m{id}@x"), status, attempts, next, created],
            )
            .unwrap();
    };
    // Tried twice, retrying later: waits since it was created an hour ago.
    insert(1, "queued", 2, ago(-600), ago(3600));
    // A survey waiting for its delay: not waiting on anything.
    insert(2, "queued", 0, ago(-7200), ago(7200));
    // Due now, never tried.
    insert(3, "queued", 0, ago(10), ago(60));
    insert(4, "sent", 1, ago(0), ago(9000));
    insert(5, "failed", 5, ago(0), ago(9000));

    let db = dir.path().join("casegate.db");
    let f = Figures::read(store.db(), &db, now).unwrap();
    assert_eq!(f.outbox, [("failed".to_string(), 1), ("queued".to_string(), 3), ("sent".to_string(), 1)]);
    assert!((f.oldest_queued_secs - 3600.0).abs() < 1.0, "{}", f.oldest_queued_secs);
    assert_eq!(f.quarantined, 0);
    assert!(f.size_bytes >= std::fs::metadata(&db).unwrap().len());

    let m = Metrics::new();
    f.publish(&m);
    let text = m.render();
    assert_eq!(sample(&text, r#"casegate_outbox_rows{status="queued"}"#), Some(3.0));
    assert_eq!(sample(&text, "casegate_outbox_oldest_queued_age_seconds"), Some(f.oldest_queued_secs));
    assert_eq!(sample(&text, "casegate_quarantine_rows"), Some(0.0));

    store.sqlite().unwrap().execute("DELETE FROM outbox WHERE status <> 'sent'", []).unwrap();
    let f = Figures::read(store.db(), &db, now).unwrap();
    assert_eq!(f.oldest_queued_secs, 0.0, "nothing waits");
    f.publish(&m);
    assert_eq!(sample(&m.render(), r#"casegate_outbox_rows{status="failed"}"#), Some(0.0), "gone, not stale");
}
