//! What the daily retention removes besides whole cases (see [`super::purge`]): raw copies
//! of old mails, quarantined mails nobody released, and the rendered copies of
//! notifications that were sent (or given up) long ago. The mails found here are removed by
//! [`super::remove_mails`].

use crate::store::db::{Db, DbResult};
use crate::vals;

/// Up to `limit` journal rows received before `before` whose raw copy is still kept, and
/// which do not wait in the quarantine for a person (the quarantine has its own limit).
pub fn old_mails(db: Db<'_>, before: &str, limit: usize) -> DbResult<Vec<i64>> {
    db.query_map(
        "SELECT id FROM mails m WHERE removed_at IS NULL AND received_at < ?1
           AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.mail_id = m.id AND q.released_at IS NULL)
         ORDER BY id LIMIT ?2",
        vals![before, limit],
        |r| r.get(0),
    )
}

/// Up to `limit` mails quarantined before `before` and never released.
pub fn old_quarantine(db: Db<'_>, before: &str, limit: usize) -> DbResult<Vec<i64>> {
    db.query_map(
        "SELECT DISTINCT mail_id FROM quarantine WHERE released_at IS NULL AND created_at < ?1 ORDER BY mail_id LIMIT ?2",
        vals![before, limit],
        |r| r.get(0),
    )
}

/// Forgets quarantine rows released before `before`; how many.
pub fn forget_released(db: Db<'_>, before: &str) -> DbResult<u64> {
    Ok(db.execute("DELETE FROM quarantine WHERE released_at IS NOT NULL AND released_at < ?1", vals![before])? as u64)
}

/// Notifications created before `before` that no longer wait to be sent lose their
/// rendered copy and what it was rendered from; those about no case (answers to senders)
/// go altogether. How many rows were cleared and removed.
pub fn clear_old_notifications(db: Db<'_>, before: &str) -> DbResult<(u64, u64)> {
    let cleared = db.execute(
        "UPDATE outbox SET payload = NULL, spec = NULL
         WHERE status <> 'queued' AND created_at < ?1 AND case_id IS NOT NULL AND (payload IS NOT NULL OR spec IS NOT NULL)",
        vals![before],
    )?;
    // A bounce stays recorded for its address; it no longer names the notification.
    db.execute(
        "UPDATE bounces SET outbox_id = NULL WHERE outbox_id IN
           (SELECT id FROM outbox WHERE status <> 'queued' AND created_at < ?1 AND case_id IS NULL)",
        vals![before],
    )?;
    let removed = db.execute(
        "DELETE FROM outbox WHERE status <> 'queued' AND created_at < ?1 AND case_id IS NULL",
        vals![before],
    )?;
    Ok((cleared as u64, removed as u64))
}
