//! The outbox: notifications written in the same transaction as the event that causes
//! them, then claimed, sent and marked by the outbox worker (`notify::send`).
//!
//! One row is one mail to one recipient (`recipients` is a one-element JSON array), so a
//! refused recipient fails alone and "who got what" is one row each. Every row carries its
//! Message-ID from the start, and a small `spec` (JSON: the event, the template,
//! threading) from which the sender renders the mail when it first claims the row; the
//! rendered mail and its subject are then stored in `payload` and `subject` (empty until
//! then: `notify::list` renders it for display), so a resend after a crash or a retry is
//! the very same mail. Rendering at send time keeps the ingest transaction small:
//! a reply on a case with many watchers writes a few hundred bytes per watcher, not a mail.
//!
//! The rendered mail is stored LZ4-compressed (size-prepended block, as `raw_mails`).
//!
//! Rows are *claimed* before they are sent: the claim moves `next_attempt_at` a lease into
//! the future inside a write transaction, so the daemon's worker and an operator's
//! `outbox flush` never send the same row at once — nor, on PostgreSQL, the outbox
//! workers of several nodes: each locks the rows it claims and passes over those another
//! has locked (`FOR UPDATE SKIP LOCKED`), so each notification is claimed by one. Should
//! a sender die mid-send, the lease runs out and the row is sent again, with the same
//! Message-ID.

use serde::Serialize;

use super::db::{Db, DbResult, TxMode};
use super::grouping::Appendable;
use crate::address::Address;
use crate::case::CaseId;
use crate::vals;

/// A notification being written.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub case: Option<CaseId>,
    /// What it is about: the template name (`acknowledgement`, `reply`, `resolved`...).
    pub event: &'a str,
    pub to: &'a Address,
    pub subject: &'a str,
    pub message_id: &'a str,
    /// The whole RFC 5322 mail, when it is already rendered.
    pub payload: Option<&'a [u8]>,
    /// What the sender renders the mail from (JSON), when it is not rendered yet.
    pub spec: Option<&'a str>,
    /// Why the notification could not be built; it is then stored as failed, for the
    /// operator to see.
    pub error: Option<&'a str>,
    /// Not to be sent before this time (default: at once).
    pub not_before: Option<&'a str>,
    /// Why the loop breaker holds it back: it is stored `suppressed`, with this reason,
    /// and never sent.
    pub held_back: Option<&'a str>,
}

static ROW: Appendable = Appendable {
    rank: 9,
    one: "INSERT INTO outbox (case_id, event, recipients, subject, message_id, payload, spec, status, last_error,
           next_attempt_at, created_at, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    many: "INSERT INTO outbox (case_id, event, recipients, subject, message_id, payload, spec, status, last_error,
           next_attempt_at, created_at, id)
         SELECT * FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::bytea[], ?7::text[],
           ?8::text[], ?9::text[], ?10::text[], ?11::text[], ?12::bigint[])",
    key: &[],
};

pub fn insert(db: Db<'_>, n: &NewNotification<'_>, now: &str) -> DbResult<i64> {
    let recipients = recipients_json(n.to);
    let status = match n.held_back {
        Some(_) => "suppressed",
        None if n.error.is_none() && (n.payload.is_some() || n.spec.is_some()) => "queued",
        None => "failed",
    };
    let payload = n.payload.map(lz4_flex::compress_prepend_size);
    let id = db.insert_with_id(
        "outbox",
        &ROW,
        vals![
            n.case,
            n.event,
            &recipients,
            n.subject,
            n.message_id,
            payload,
            n.spec,
            status,
            n.held_back.or(n.error),
            n.not_before.unwrap_or(now),
            now
        ],
    )?;
    if status != "suppressed" && AUTOMATIC_EVENTS.contains(&n.event) {
        super::loops::answered(db, &recipients, now);
    }
    super::references::changed(db, n.message_id);
    Ok(id)
}

/// The notification kinds that answer a mail automatically (`notify::limits::AUTOMATIC`),
/// as [`automatic_answers_since`] counts them.
pub const AUTOMATIC_EVENTS: [&str; 6] =
    ["acknowledgement", "follow-up-opened", "not-applied", "command-refused", "reason-required", "case-list"];

/// Stores the mail rendered from a row's spec, and its subject, so every later attempt
/// sends these bytes.
pub fn store_payload(db: Db<'_>, id: i64, subject: &str, payload: &[u8]) -> DbResult<()> {
    db.execute(
        "UPDATE outbox SET payload = ?2, subject = ?3, spec = NULL WHERE id = ?1",
        vals![id, lz4_flex::compress_prepend_size(payload), subject],
    )?;
    Ok(())
}

/// How a row names its recipient (`["a@x.example"]`), for lookups by recipient.
pub(crate) fn recipients_json(to: &Address) -> String {
    // An array of one string cannot fail to serialise; the exact text (no spaces) is what
    // `not_applied_answered_since` compares against.
    serde_json::to_string(&[to.as_str()]).expect("a string array serialises")
}

/// Whether `to` was already sent (or is about to be sent) a `not-applied` answer about
/// this case (or about no case) since `since`. Used to answer a sender at most once
/// a day, so a forged or looping sender cannot make casegate a source of backscatter.
pub fn not_applied_answered_since(db: Db<'_>, to: &Address, case: Option<CaseId>, since: &str) -> DbResult<bool> {
    // `event` is written out so that the partial index `outbox_not_applied` serves it.
    db.exists(
        "SELECT 1 FROM outbox WHERE recipients = ?1 AND event = 'not-applied' AND case_id IS ?2 AND created_at >= ?3 LIMIT 1",
        vals![recipients_json(to), case, since],
    )
}

/// The automatic answers (see `notify::limits::AUTOMATIC`) `to` was sent, or is about to
/// be sent, since `since`; the ones held back do not count.
pub fn automatic_answers_since(db: Db<'_>, to: &Address, since: &str) -> DbResult<u32> {
    if let Some(n) = super::loops::answers_read_ahead(db, &recipients_json(to), since) {
        return Ok(u32::try_from(n).unwrap_or(u32::MAX));
    }
    // The event condition is written out as the partial index `outbox_automatic` has it,
    // so that SQLite uses the index.
    let count: i64 = db.query_one(
        "SELECT count(*) FROM outbox WHERE recipients = ?1 AND created_at >= ?2 AND status != 'suppressed'
           AND (event = 'acknowledgement' OR event = 'follow-up-opened' OR event = 'not-applied'
           OR event = 'command-refused' OR event = 'reason-required' OR event = 'case-list')",
        vals![recipients_json(to), since],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// A claimed notification, ready to send.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub recipients: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub case: Option<CaseId>,
    /// The mail; `None` when it is still to be rendered from `spec`, or when the stored
    /// copy cannot be decompressed (the row is damaged).
    pub payload: Option<Vec<u8>>,
    /// What to render the mail from, when it is not rendered yet.
    pub spec: Option<String>,
    /// Why the mail could not be rendered, when it could not.
    pub build_error: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// Claims up to `limit` queued notifications due at `now` (oldest first) until
/// `lease_until`, in one write transaction.
pub fn claim_due(db: Db<'_>, now: &str, lease_until: &str, limit: usize) -> DbResult<Vec<Due>> {
    const DUE: &str = "SELECT id, recipients, message_id, payload, attempts, spec, subject, case_id FROM outbox
             WHERE status = 'queued' AND next_attempt_at <= ?1 AND (payload IS NOT NULL OR spec IS NOT NULL)
             ORDER BY next_attempt_at, id LIMIT ?2";
    // PostgreSQL: rows another node is claiming right now are passed over, not waited
    // for (they are its to send); once its claim commits they are no longer due.
    let sql = match db {
        Db::Sqlite(_) => DUE.to_string(),
        Db::Postgres(_) => format!("{DUE} FOR UPDATE SKIP LOCKED"),
    };
    db.transaction(TxMode::Write, |db| {
        let due = db.query_map(&sql, vals![now, limit], |r| {
            let recipients: String = r.get(1)?;
            Ok(Due {
                id: r.get(0)?,
                // Written by `insert` as a JSON array of strings; anything else is a row
                // someone edited by hand, sent to nobody and failed by the sender.
                recipients: serde_json::from_str(&recipients).unwrap_or_default(),
                message_id: r.get(2)?,
                payload: r.get::<Option<Vec<u8>>>(3)?.and_then(|p| lz4_flex::decompress_size_prepended(&p).ok()),
                attempts: r.get::<i64>(4)?.try_into().unwrap_or(0),
                spec: r.get(5)?,
                build_error: None,
                subject: r.get(6)?,
                case: r.get(7)?,
            })
        })?;
        for d in &due {
            db.execute("UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1", vals![d.id, lease_until])?;
        }
        Ok(due)
    })
}

/// What became of one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// A transient failure: try again at `at`.
    Retry {
        at: String,
        error: String,
    },
    /// Permanent: the server refused it, or it ran out of attempts.
    Failed {
        error: String,
    },
}

/// Records the outcome of attempts, all in one transaction.
pub fn record(db: Db<'_>, results: &[(i64, Attempt)], now: &str) -> DbResult<()> {
    db.transaction(TxMode::Write, |db| {
        for (id, attempt) in results {
            match attempt {
                Attempt::Sent => db.execute(
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2, last_error = NULL WHERE id = ?1",
                    vals![*id, now],
                )?,
                Attempt::Retry { at, error } => db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
                    vals![*id, at, error],
                )?,
                Attempt::Failed { error } => db.execute(
                    "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                    vals![*id, error],
                )?,
            };
        }
        Ok(())
    })
}

/// When the next queued notification falls due (it may be in the past).
pub fn next_due_at(db: Db<'_>) -> DbResult<Option<String>> {
    db.query_one(
        "SELECT min(next_attempt_at) FROM outbox WHERE status = 'queued' AND (payload IS NOT NULL OR spec IS NOT NULL)",
        vals![],
        |r| r.get(0),
    )
}

/// A notification as `outbox list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutboxView {
    pub id: i64,
    pub case: Option<String>,
    pub event: String,
    pub to: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: String,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// What a notification not rendered yet is rendered from (see `notify::list`).
    #[serde(skip)]
    pub spec: Option<String>,
}

/// Every notification (optionally of one status), oldest first.
pub fn list(db: Db<'_>, prefix: &str, status: Option<&str>) -> DbResult<Vec<OutboxView>> {
    db.query_map(
        "SELECT id, case_id, event, recipients, subject, message_id, status, attempts, last_error, next_attempt_at, created_at, sent_at, spec
         FROM outbox WHERE CAST(?1 AS TEXT) IS NULL OR status = ?1 ORDER BY id",
        vals![status],
        |r| {
            let recipients: String = r.get(3)?;
            Ok(OutboxView {
                id: r.get(0)?,
                case: r.get::<Option<CaseId>>(1)?.map(|c| format!("{prefix}-{c}")),
                event: r.get(2)?,
                to: serde_json::from_str(&recipients).unwrap_or_default(),
                subject: r.get(4)?,
                message_id: r.get(5)?,
                status: r.get(6)?,
                attempts: r.get::<i64>(7)?.try_into().unwrap_or(0),
                last_error: r.get(8)?,
                next_attempt_at: r.get(9)?,
                created_at: r.get(10)?,
                sent_at: r.get(11)?,
                spec: r.get(12)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations;

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn add(conn: &rusqlite::Connection, to: &str, id: &str, now: &str) -> i64 {
        add_event(conn, to, id, now, "not-applied")
    }

    fn add_event(conn: &rusqlite::Connection, to: &str, id: &str, now: &str, event: &str) -> i64 {
        add_held(conn, to, id, now, event, None)
    }

    fn add_held(conn: &rusqlite::Connection, to: &str, id: &str, now: &str, event: &str, held: Option<&str>) -> i64 {
        let to = Address::parse(to).unwrap();
        let n = NewNotification {
            case: None,
            event,
            to: &to,
            subject: "s",
            message_id: id,
            payload: Some(b"mail"),
            spec: None,
            error: None,
            not_before: None,
            held_back: held,
        };
        insert(conn.into(), &n, now).unwrap()
    }

    #[test]
    fn claimed_rows_are_not_due_again_until_their_lease_ends() {
        let conn = db();
        let a = add(&conn, "a@x.example", "1@x", "2026-01-01T00:00:00.000Z");
        let b = add(&conn, "b@x.example", "2@x", "2026-01-01T00:00:00.000Z");
        let now = "2026-01-01T00:00:01.000Z";
        let lease = "2026-01-01T00:05:00.000Z";
        let first = claim_due((&conn).into(), now, lease, 1).unwrap();
        assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), [a]);
        assert_eq!(first[0].recipients, ["a@x.example"]);
        assert_eq!(first[0].payload.as_deref(), Some(&b"mail"[..]), "stored compressed, claimed as written");
        let second = claim_due((&conn).into(), now, lease, 10).unwrap();
        assert_eq!(second.iter().map(|d| d.id).collect::<Vec<_>>(), [b]);
        assert!(claim_due((&conn).into(), now, lease, 10).unwrap().is_empty());
        assert_eq!(
            claim_due((&conn).into(), "2026-01-01T00:05:00.000Z", "2026-01-01T00:10:00.000Z", 10).unwrap().len(),
            2
        );
    }

    #[test]
    fn a_damaged_stored_mail_is_claimed_without_payload() {
        let conn = db();
        let id = add(&conn, "a@x.example", "1@x", "2026-01-01T00:00:00.000Z");
        conn.execute("UPDATE outbox SET payload = x'ff00' WHERE id = ?1", [id]).unwrap();
        let due = claim_due((&conn).into(), "2026-01-01T00:00:01.000Z", "2026-01-01T00:05:00.000Z", 10).unwrap();
        assert_eq!((due[0].id, due[0].payload.is_none()), (id, true));
    }

    #[test]
    fn outcomes_are_recorded_with_attempts_and_errors() {
        let conn = db();
        let a = add(&conn, "a@x.example", "1@x", "2026-01-01T00:00:00.000Z");
        let b = add(&conn, "b@x.example", "2@x", "2026-01-01T00:00:00.000Z");
        let c = add(&conn, "c@x.example", "3@x", "2026-01-01T00:00:00.000Z");
        let results = [
            (a, Attempt::Sent),
            (b, Attempt::Retry { at: "2026-01-01T01:00:00.000Z".into(), error: "451 later".into() }),
            (c, Attempt::Failed { error: "550 no such user".into() }),
        ];
        record((&conn).into(), &results, "2026-01-01T00:00:02.000Z").unwrap();
        let rows = list((&conn).into(), "CASE", None).unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].attempts, rows[0].sent_at.is_some()), ("sent", 1, true));
        assert_eq!((rows[1].status.as_str(), rows[1].last_error.as_deref()), ("queued", Some("451 later")));
        assert_eq!(rows[1].next_attempt_at, "2026-01-01T01:00:00.000Z");
        assert_eq!((rows[2].status.as_str(), rows[2].last_error.as_deref()), ("failed", Some("550 no such user")));
        assert_eq!(next_due_at((&conn).into()).unwrap().as_deref(), Some("2026-01-01T01:00:00.000Z"));
        assert_eq!(list((&conn).into(), "CASE", Some("failed")).unwrap().len(), 1);
    }

    #[test]
    fn answers_are_found_by_recipient_case_and_time_through_their_own_index() {
        let conn = db();
        add(&conn, "a@x.example", "1@x", "2026-01-01T10:00:00.000Z");
        add_event(&conn, "b@x.example", "2@x", "2026-01-01T10:00:00.000Z", "reply");
        let (a, b) = (Address::parse("A@x.example").unwrap(), Address::parse("b@x.example").unwrap());
        let day = "2026-01-01T00:00:00.000Z";
        assert!(not_applied_answered_since((&conn).into(), &a, None, day).unwrap());
        assert!(!not_applied_answered_since((&conn).into(), &a, None, "2026-01-01T11:00:00.000Z").unwrap());
        assert!(!not_applied_answered_since((&conn).into(), &a, Some(3), day).unwrap());
        assert!(
            !not_applied_answered_since((&conn).into(), &b, None, day).unwrap(),
            "other notifications do not count"
        );
        // As the store's connections run it: with stable plans (see store::configure).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT 1 FROM outbox WHERE recipients = ?1 AND event = 'not-applied' AND case_id IS ?2 AND created_at >= ?3 LIMIT 1",
                ["[]", "", ""],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("outbox_not_applied"), "{plan}");
    }

    #[test]
    fn automatic_answers_are_counted_per_recipient_without_the_held_back_ones_through_their_index() {
        let conn = db();
        let t = "2026-01-01T10:00:00.000Z";
        add_event(&conn, "a@x.example", "1@x", t, "acknowledgement");
        add_event(&conn, "a@x.example", "2@x", t, "case-list");
        add_event(&conn, "a@x.example", "3@x", t, "reply");
        add_held(&conn, "a@x.example", "4@x", t, "not-applied", Some("loop breaker: test"));
        add_event(&conn, "b@x.example", "5@x", t, "acknowledgement");
        let a = Address::parse("a@x.example").unwrap();
        assert_eq!(automatic_answers_since((&conn).into(), &a, "2026-01-01T00:00:00.000Z").unwrap(), 2);
        assert_eq!(automatic_answers_since((&conn).into(), &a, "2026-01-01T11:00:00.000Z").unwrap(), 0);
        let held = list((&conn).into(), "CASE", Some("suppressed")).unwrap();
        assert_eq!((held.len(), held[0].last_error.as_deref()), (1, Some("loop breaker: test")));
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT count(*) FROM outbox WHERE recipients = ?1 AND created_at >= ?2 AND status != 'suppressed'
                   AND (event = 'acknowledgement' OR event = 'follow-up-opened' OR event = 'not-applied'
                   OR event = 'command-refused' OR event = 'reason-required' OR event = 'case-list')",
                ["[]", ""],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("outbox_automatic"), "{plan}");
    }
}
