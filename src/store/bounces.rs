//! Bounces of casegate's own mail and the addresses they suppress: the notifications a
//! bounce names (for the snapshot), each bounce recorded per address, and suppressions —
//! set by a bounce, looked up whenever mail is queued, lifted by staff
//! (`casegate outbox unsuppress`).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::outbox::recipients_json;
use crate::address::Address;
use crate::decide::{BounceRecord, SentRow};

/// Most notifications one bounce is tied to.
const MAX_ROWS: usize = 8;

/// The notifications a bounce names: the row of its return path, then the rows whose
/// Message-ID it returns. `since` starts the soft-bounce window; `now` decides whether the
/// address is suppressed.
pub fn sent_rows(
    conn: &Connection,
    return_path_row: Option<i64>,
    message_ids: &[String],
    since: &str,
    now: &str,
) -> rusqlite::Result<Vec<SentRow>> {
    let mut found: Vec<(i64, bool)> = Vec::new();
    if let Some(id) = return_path_row {
        found.push((id, true));
    }
    let mut by_id = conn.prepare_cached("SELECT id FROM outbox WHERE message_id = ?1")?;
    for message_id in message_ids.iter().take(MAX_ROWS) {
        if let Some(id) = by_id.query_row([message_id], |r| r.get::<_, i64>(0)).optional()? {
            if !found.iter().any(|(f, _)| *f == id) {
                found.push((id, false));
            }
        }
    }
    let mut rows = Vec::new();
    let mut row_of = conn.prepare_cached("SELECT case_id, recipients, status FROM outbox WHERE id = ?1")?;
    for (id, by_return_path) in found.into_iter().take(MAX_ROWS) {
        let Some((case, recipients, status)) = row_of
            .query_row([id], |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .optional()?
        else {
            continue;
        };
        let to: Vec<String> = serde_json::from_str(&recipients).unwrap_or_default();
        let Some(to) = to.first().and_then(|a| Address::parse(a)) else { continue };
        let (recent_bounces, recent_soft) = recent(conn, &to, since)?;
        let suppressed = suppression(conn, &to, now)?.is_some();
        rows.push(SentRow { id, case, to, status, by_return_path, recent_bounces, recent_soft, suppressed });
    }
    Ok(rows)
}

/// Bounces of `address` recorded since `since`: all, and the soft ones.
fn recent(conn: &Connection, address: &Address, since: &str) -> rusqlite::Result<(u32, u32)> {
    conn.prepare_cached(
        "SELECT count(*), count(*) - coalesce(sum(hard), 0) FROM bounces WHERE address = ?1 AND at >= ?2",
    )?
    .query_row(params![address.as_str(), since], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// Records a bounce: the row becomes `bounced` with the report's summary as its error.
pub fn record(conn: &Connection, bounce: &BounceRecord, mail_id: Option<i64>, now: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE outbox SET status = 'bounced', last_error = ?2 WHERE id = ?1")?
        .execute(params![bounce.row, bounce.summary])?;
    conn.prepare_cached(
        "INSERT INTO bounces (address, outbox_id, mail_id, status, cause, hard, diagnostic, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        bounce.address.as_str(),
        bounce.row,
        mail_id,
        bounce.status,
        bounce.cause.as_str(),
        bounce.hard,
        bounce.diagnostic,
        now
    ])?;
    Ok(())
}

/// An address that is not mailed for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    pub since: String,
    pub until: String,
}

/// Suppresses `address` until `until` (replacing an earlier suppression), and holds back
/// the mail still queued for it.
pub fn suppress(conn: &Connection, address: &Address, reason: &str, now: &str, until: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO suppressions (address, reason, since, until) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (address) DO UPDATE SET reason = ?2, since = ?3, until = ?4, lifted_at = NULL, lifted_by = NULL",
    )?
    .execute(params![address.as_str(), reason, now, until])?;
    conn.prepare_cached(
        "UPDATE outbox SET status = 'suppressed', last_error = ?2 WHERE recipients = ?1 AND status = 'queued'",
    )?
    .execute(params![recipients_json(address), format!("suppressed: {reason}")])?;
    Ok(())
}

/// The suppression in force for `address` at `now`, if any.
pub fn suppression(conn: &Connection, address: &Address, now: &str) -> rusqlite::Result<Option<Suppression>> {
    conn.prepare_cached(
        "SELECT address, reason, since, until FROM suppressions WHERE address = ?1 AND lifted_at IS NULL AND until > ?2",
    )?
    .query_row(params![address.as_str(), now], |r| {
        Ok(Suppression { address: r.get(0)?, reason: r.get(1)?, since: r.get(2)?, until: r.get(3)? })
    })
    .optional()
}

/// Whether any suppression is in force at `now`.
pub fn any_suppression(conn: &Connection, now: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM suppressions WHERE lifted_at IS NULL AND until > ?1)")?
        .query_row([now], |r| r.get(0))
}

/// Every suppression in force at `now`, newest first.
pub fn suppressions(conn: &Connection, now: &str) -> rusqlite::Result<Vec<Suppression>> {
    let mut stmt = conn.prepare(
        "SELECT address, reason, since, until FROM suppressions WHERE lifted_at IS NULL AND until > ?1 ORDER BY since DESC",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(Suppression { address: r.get(0)?, reason: r.get(1)?, since: r.get(2)?, until: r.get(3)? })
    })?;
    rows.collect()
}

/// Lifts the suppression of `address` (by `by`, at `now`); whether there was one in force.
/// The address's earlier bounces stop counting towards a new suppression.
pub fn lift(conn: &Connection, address: &Address, by: Option<&str>, now: &str) -> rusqlite::Result<bool> {
    let lifted = conn
        .prepare_cached(
            "UPDATE suppressions SET lifted_at = ?2, lifted_by = ?3 WHERE address = ?1 AND lifted_at IS NULL AND until > ?2",
        )?
        .execute(params![address.as_str(), now, by])?;
    // A fresh start: the soft bounces that led here do not count again.
    conn.prepare_cached("DELETE FROM bounces WHERE address = ?1 AND at <= ?2")?
        .execute(params![address.as_str(), now])?;
    Ok(lifted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::bounce::Cause;
    use crate::store::migrations;
    use crate::store::outbox::{self, NewNotification};

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn queue(conn: &Connection, to: &str, message_id: &str) -> i64 {
        let to = Address::parse(to).unwrap();
        let n = NewNotification {
            case: None,
            event: "reply",
            to: &to,
            subject: "s",
            message_id,
            payload: Some(b"mail"),
            spec: None,
            error: None,
            not_before: None,
        };
        outbox::insert(conn, &n, "2026-01-01T00:00:00.000Z").unwrap()
    }

    fn bounce(row: i64, address: &str, hard: bool) -> BounceRecord {
        BounceRecord {
            row,
            address: Address::parse(address).unwrap(),
            status: Some(if hard { "5.1.1" } else { "4.2.2" }.into()),
            cause: if hard { Cause::UserUnknown } else { Cause::MailboxFull },
            hard,
            diagnostic: "550 5.1.1 no such user".into(),
            summary: "5.1.1 user-unknown: 550 5.1.1 no such user".into(),
        }
    }

    const T1: &str = "2026-01-02T00:00:00.000Z";

    #[test]
    fn a_bounce_is_tied_to_its_row_by_message_id_or_return_path() {
        let conn = db();
        let a = queue(&conn, "gone@x.example", "n1@example.com");
        let b = queue(&conn, "other@x.example", "n2@example.com");
        let rows = sent_rows(&conn, Some(b), &["unknown@x".into(), "n1@example.com".into()], T1, T1).unwrap();
        let ids: Vec<(i64, bool)> = rows.iter().map(|r| (r.id, r.by_return_path)).collect();
        assert_eq!(ids, [(b, true), (a, false)]);
        assert_eq!(rows[1].to.as_str(), "gone@x.example");
        assert_eq!(rows[1].status, "queued");
        assert!(sent_rows(&conn, Some(999), &[], T1, T1).unwrap().is_empty(), "an unknown row is nothing");
    }

    #[test]
    fn bounces_are_counted_per_address_and_rows_show_them() {
        let conn = db();
        let a = queue(&conn, "gone@x.example", "n1@example.com");
        record(&conn, &bounce(a, "gone@x.example", false), None, T1).unwrap();
        let rows = sent_rows(&conn, None, &["n1@example.com".into()], "2026-01-01T00:00:00.000Z", T1).unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].recent_bounces, rows[0].recent_soft), ("bounced", 1, 1));
        let listed = outbox::list(&conn, "CASE", Some("bounced")).unwrap();
        assert_eq!(listed[0].last_error.as_deref(), Some("5.1.1 user-unknown: 550 5.1.1 no such user"));
        // Outside the window the bounce no longer counts.
        let later = sent_rows(&conn, None, &["n1@example.com".into()], "2026-01-03T00:00:00.000Z", T1).unwrap();
        assert_eq!(later[0].recent_bounces, 0);
    }

    #[test]
    fn a_suppression_holds_back_queued_mail_until_it_ends_or_is_lifted() {
        let conn = db();
        let queued = queue(&conn, "gone@x.example", "n1@example.com");
        let other = queue(&conn, "fine@x.example", "n2@example.com");
        let gone = Address::parse("gone@x.example").unwrap();
        suppress(&conn, &gone, "hard bounce: 5.1.1", T1, "2026-02-01T00:00:00.000Z").unwrap();
        let rows = outbox::list(&conn, "CASE", None).unwrap();
        let status =
            |id: i64| rows.iter().find(|r| r.id == id).map(|r| (r.status.clone(), r.last_error.clone())).unwrap();
        assert_eq!(status(queued), ("suppressed".into(), Some("suppressed: hard bounce: 5.1.1".into())));
        assert_eq!(status(other).0, "queued");
        assert!(suppression(&conn, &gone, "2026-01-15T00:00:00.000Z").unwrap().is_some());
        assert!(suppression(&conn, &gone, "2026-02-02T00:00:00.000Z").unwrap().is_none(), "it ends");
        assert_eq!(suppressions(&conn, T1).unwrap().len(), 1);
        assert!(lift(&conn, &gone, Some("ann@support.example.com"), "2026-01-03T00:00:00.000Z").unwrap());
        assert!(suppression(&conn, &gone, "2026-01-04T00:00:00.000Z").unwrap().is_none(), "lifted");
        assert!(!lift(&conn, &gone, None, "2026-01-05T00:00:00.000Z").unwrap(), "nothing left to lift");
    }

    #[test]
    fn the_outbox_takes_the_new_statuses_and_still_refuses_others() {
        let conn = db();
        let id = queue(&conn, "a@x.example", "n1@example.com");
        for status in ["bounced", "suppressed", "sent"] {
            conn.execute("UPDATE outbox SET status = ?2 WHERE id = ?1", params![id, status]).unwrap();
        }
        let err = conn.execute("UPDATE outbox SET status = 'lost' WHERE id = ?1", [id]).unwrap_err().to_string();
        assert!(err.contains("CHECK constraint failed"), "{err}");
    }
}
