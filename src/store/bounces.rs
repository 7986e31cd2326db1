//! Bounces of casegate's own mail and the addresses they suppress: the notifications a
//! bounce names (for the snapshot), each bounce recorded per address, and suppressions —
//! set by a bounce, looked up whenever mail is queued, lifted by staff
//! (`casegate outbox unsuppress`).

use serde::Serialize;

use super::db::{Db, DbResult};
use super::outbox::recipients_json;
use crate::address::Address;
use crate::decide::{BounceRecord, SentRow};
use crate::vals;

/// Most notifications one bounce is tied to.
const MAX_ROWS: usize = 8;

/// The notifications a bounce names: the row of its return path, then the rows whose
/// Message-ID it returns. `since` starts the soft-bounce window; `now` decides whether the
/// address is suppressed.
pub fn sent_rows(
    db: Db<'_>,
    return_path_row: Option<i64>,
    message_ids: &[String],
    since: &str,
    now: &str,
) -> DbResult<Vec<SentRow>> {
    let mut found: Vec<(i64, bool)> = Vec::new();
    if let Some(id) = return_path_row {
        found.push((id, true));
    }
    for message_id in message_ids.iter().take(MAX_ROWS) {
        let id = db.query_row("SELECT id FROM outbox WHERE message_id = ?1", vals![message_id], |r| r.get::<i64>(0))?;
        if let Some(id) = id {
            if !found.iter().any(|(f, _)| *f == id) {
                found.push((id, false));
            }
        }
    }
    let mut rows = Vec::new();
    for (id, by_return_path) in found.into_iter().take(MAX_ROWS) {
        let Some((case, recipients, status)) =
            db.query_row("SELECT case_id, recipients, status FROM outbox WHERE id = ?1", vals![id], |r| {
                Ok((r.get::<Option<i64>>(0)?, r.get::<String>(1)?, r.get::<String>(2)?))
            })?
        else {
            continue;
        };
        let to: Vec<String> = serde_json::from_str(&recipients).unwrap_or_default();
        let Some(to) = to.first().and_then(|a| Address::parse(a)) else { continue };
        let (recent_bounces, recent_soft) = recent(db, &to, since)?;
        let suppressed = suppression(db, &to, now)?.is_some();
        rows.push(SentRow { id, case, to, status, by_return_path, recent_bounces, recent_soft, suppressed });
    }
    Ok(rows)
}

/// Bounces of `address` recorded since `since`: all, and the soft ones.
fn recent(db: Db<'_>, address: &Address, since: &str) -> DbResult<(u32, u32)> {
    let (all, soft): (i64, i64) = db.query_one(
        "SELECT count(*), count(*) - coalesce(sum(CASE WHEN hard THEN 1 ELSE 0 END), 0) FROM bounces
         WHERE address = ?1 AND at >= ?2",
        vals![address.as_str(), since],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((u32::try_from(all).unwrap_or(u32::MAX), u32::try_from(soft).unwrap_or(u32::MAX)))
}

/// Records a bounce: the row becomes `bounced` with the report's summary as its error.
pub fn record(db: Db<'_>, bounce: &BounceRecord, mail_id: Option<i64>, now: &str) -> DbResult<()> {
    db.execute(
        "UPDATE outbox SET status = 'bounced', last_error = ?2 WHERE id = ?1",
        vals![bounce.row, &bounce.summary],
    )?;
    db.execute(
        "INSERT INTO bounces (address, outbox_id, mail_id, status, cause, hard, diagnostic, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        vals![
            bounce.address.as_str(),
            bounce.row,
            mail_id,
            bounce.status.as_deref(),
            bounce.cause.as_str(),
            bounce.hard,
            &bounce.diagnostic,
            now
        ],
    )?;
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
pub fn suppress(db: Db<'_>, address: &Address, reason: &str, now: &str, until: &str) -> DbResult<()> {
    forget_any_suppression(db);
    super::loops::forget_answers(db, &recipients_json(address));
    db.execute(
        "INSERT INTO suppressions (address, reason, since, until) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (address) DO UPDATE SET reason = ?2, since = ?3, until = ?4, lifted_at = NULL, lifted_by = NULL",
        vals![address.as_str(), reason, now, until],
    )?;
    db.execute(
        "UPDATE outbox SET status = 'suppressed', last_error = ?2 WHERE recipients = ?1 AND status = 'queued'",
        vals![recipients_json(address), format!("suppressed: {reason}")],
    )?;
    Ok(())
}

/// The suppression in force for `address` at `now`, if any.
pub fn suppression(db: Db<'_>, address: &Address, now: &str) -> DbResult<Option<Suppression>> {
    db.query_row(
        "SELECT address, reason, since, until FROM suppressions WHERE address = ?1 AND lifted_at IS NULL AND until > ?2",
        vals![address.as_str(), now],
        |r| Ok(Suppression { address: r.get(0)?, reason: r.get(1)?, since: r.get(2)?, until: r.get(3)? }),
    )
}

/// What a transaction (PostgreSQL) keeps of [`any_suppression`]'s answer (`Db::kept`);
/// every write to the suppressions forgets it ([`forget_any_suppression`]). Time passing
/// cannot make the answer wrong in the direction that matters: "none" stays true until
/// one is written, and "some" only makes each address be looked up.
#[derive(Default)]
struct AnySuppression(Option<bool>);

/// Whether any suppression is in force at `now` (or, within a transaction, was when it
/// was first asked: it is kept until a suppression is written).
pub fn any_suppression(db: Db<'_>, now: &str) -> DbResult<bool> {
    if let Some(Some(known)) = db.kept(|k: &mut AnySuppression| k.0) {
        return Ok(known);
    }
    let found =
        db.query_row("SELECT 1 FROM suppressions WHERE lifted_at IS NULL AND until > ?1 LIMIT 1", vals![now], |r| {
            r.get::<i64>(0)
        })?;
    db.kept(|k: &mut AnySuppression| k.0 = Some(found.is_some()));
    Ok(found.is_some())
}

/// Forgets what the transaction knew of [`any_suppression`] (a suppression was written).
pub(crate) fn forget_any_suppression(db: Db<'_>) {
    db.kept(|k: &mut AnySuppression| k.0 = None);
}

/// Every suppression in force at `now`, newest first.
pub fn suppressions(db: Db<'_>, now: &str) -> DbResult<Vec<Suppression>> {
    db.query_map(
        "SELECT address, reason, since, until FROM suppressions WHERE lifted_at IS NULL AND until > ?1 ORDER BY since DESC",
        vals![now],
        |r| Ok(Suppression { address: r.get(0)?, reason: r.get(1)?, since: r.get(2)?, until: r.get(3)? }),
    )
}

/// Lifts the suppression of `address` (by `by`, at `now`); whether there was one in force.
/// The address's earlier bounces stop counting towards a new suppression.
pub fn lift(db: Db<'_>, address: &Address, by: Option<&str>, now: &str) -> DbResult<bool> {
    forget_any_suppression(db);
    let lifted = db.execute(
        "UPDATE suppressions SET lifted_at = ?2, lifted_by = ?3 WHERE address = ?1 AND lifted_at IS NULL AND until > ?2",
        vals![address.as_str(), now, by],
    )?;
    // A fresh start: the soft bounces that led here do not count again.
    db.execute("DELETE FROM bounces WHERE address = ?1 AND at <= ?2", vals![address.as_str(), now])?;
    Ok(lifted > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::bounce::Cause;
    use crate::store::migrations;
    use crate::store::outbox::{self, NewNotification};

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn queue(conn: &rusqlite::Connection, to: &str, message_id: &str) -> i64 {
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
            held_back: None,
        };
        outbox::insert(conn.into(), &n, "2026-01-01T00:00:00.000Z").unwrap()
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
        let rows = sent_rows((&conn).into(), Some(b), &["unknown@x".into(), "n1@example.com".into()], T1, T1).unwrap();
        let ids: Vec<(i64, bool)> = rows.iter().map(|r| (r.id, r.by_return_path)).collect();
        assert_eq!(ids, [(b, true), (a, false)]);
        assert_eq!(rows[1].to.as_str(), "gone@x.example");
        assert_eq!(rows[1].status, "queued");
        assert!(sent_rows((&conn).into(), Some(999), &[], T1, T1).unwrap().is_empty(), "an unknown row is nothing");
    }

    #[test]
    fn bounces_are_counted_per_address_and_rows_show_them() {
        let conn = db();
        let a = queue(&conn, "gone@x.example", "n1@example.com");
        record((&conn).into(), &bounce(a, "gone@x.example", false), None, T1).unwrap();
        let rows = sent_rows((&conn).into(), None, &["n1@example.com".into()], "2026-01-01T00:00:00.000Z", T1).unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].recent_bounces, rows[0].recent_soft), ("bounced", 1, 1));
        let listed = outbox::list((&conn).into(), "CASE", Some("bounced")).unwrap();
        assert_eq!(listed[0].last_error.as_deref(), Some("5.1.1 user-unknown: 550 5.1.1 no such user"));
        // Outside the window the bounce no longer counts.
        let later =
            sent_rows((&conn).into(), None, &["n1@example.com".into()], "2026-01-03T00:00:00.000Z", T1).unwrap();
        assert_eq!(later[0].recent_bounces, 0);
    }

    #[test]
    fn a_suppression_holds_back_queued_mail_until_it_ends_or_is_lifted() {
        let conn = db();
        let queued = queue(&conn, "gone@x.example", "n1@example.com");
        let other = queue(&conn, "fine@x.example", "n2@example.com");
        let gone = Address::parse("gone@x.example").unwrap();
        suppress((&conn).into(), &gone, "hard bounce: 5.1.1", T1, "2026-02-01T00:00:00.000Z").unwrap();
        let rows = outbox::list((&conn).into(), "CASE", None).unwrap();
        let status =
            |id: i64| rows.iter().find(|r| r.id == id).map(|r| (r.status.clone(), r.last_error.clone())).unwrap();
        assert_eq!(status(queued), ("suppressed".into(), Some("suppressed: hard bounce: 5.1.1".into())));
        assert_eq!(status(other).0, "queued");
        assert!(suppression((&conn).into(), &gone, "2026-01-15T00:00:00.000Z").unwrap().is_some());
        assert!(suppression((&conn).into(), &gone, "2026-02-02T00:00:00.000Z").unwrap().is_none(), "it ends");
        assert_eq!(suppressions((&conn).into(), T1).unwrap().len(), 1);
        assert!(lift((&conn).into(), &gone, Some("ann@support.example.com"), "2026-01-03T00:00:00.000Z").unwrap());
        assert!(suppression((&conn).into(), &gone, "2026-01-04T00:00:00.000Z").unwrap().is_none(), "lifted");
        assert!(!lift((&conn).into(), &gone, None, "2026-01-05T00:00:00.000Z").unwrap(), "nothing left to lift");
    }

    #[test]
    fn the_outbox_takes_the_new_statuses_and_still_refuses_others() {
        let conn = db();
        let id = queue(&conn, "a@x.example", "n1@example.com");
        for status in ["bounced", "suppressed", "sent"] {
            conn.execute("UPDATE outbox SET status = ?2 WHERE id = ?1", rusqlite::params![id, status]).unwrap();
        }
        let err = conn.execute("UPDATE outbox SET status = 'lost' WHERE id = ?1", [id]).unwrap_err().to_string();
        assert!(err.contains("CHECK constraint failed"), "{err}");
    }
}
