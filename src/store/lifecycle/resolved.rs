//! What deciding whether a Resolved case closes itself needs: when it became Resolved,
//! the newest staff and customer entries, and the reminder it got (table
//! `close_reminders`).

use crate::case::{AuditAction, CaseId, Status};
use crate::store::db::{Db, DbResult};
use crate::vals;

/// A Resolved case and the times that decide whether it is still waiting for its customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub case: CaseId,
    /// The newest change of its status to Resolved (stored time), if recorded.
    pub resolved_at: Option<String>,
    /// The case's last change: the fallback when the audit log no longer has the change
    /// to Resolved.
    pub updated_at: String,
    pub last_staff_at: Option<String>,
    pub last_customer_at: Option<String>,
    pub reminder: Option<Reminder>,
}

/// The reminder a case got: for which wait, when, and the closing time it promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    pub waiting_since: String,
    pub reminded_at: String,
    pub closes_at: String,
}

/// Every Resolved case with its times.
pub fn waiting(db: Db<'_>) -> DbResult<Vec<Waiting>> {
    // The change to Resolved is found in the audit log, where every status change is
    // recorded as "<from> -> <to>" (see `decide::request`).
    let resolved = format!("% -> {}", Status::Resolved);
    db.query_map(
        "SELECT c.id, c.updated_at,
           (SELECT max(a.at) FROM audit a WHERE a.case_id = c.id AND a.action = ?1 AND a.detail LIKE ?2),
           (SELECT max(m.created_at) FROM messages m WHERE m.case_id = c.id AND m.kind = 'staff'),
           (SELECT max(m.created_at) FROM messages m WHERE m.case_id = c.id AND m.kind = 'customer'),
           r.waiting_since, r.reminded_at, r.closes_at
         FROM cases c LEFT JOIN close_reminders r ON r.case_id = c.id
         WHERE c.status = 'resolved' ORDER BY c.id",
        vals![AuditAction::StatusChanged.as_str(), resolved],
        |r| {
            let reminder = match (r.get::<Option<String>>(5)?, r.get::<Option<String>>(6)?, r.get::<Option<String>>(7)?)
            {
                (Some(waiting_since), Some(reminded_at), Some(closes_at)) => {
                    Some(Reminder { waiting_since, reminded_at, closes_at })
                }
                _ => None,
            };
            Ok(Waiting {
                case: r.get(0)?,
                updated_at: r.get(1)?,
                resolved_at: r.get(2)?,
                last_staff_at: r.get(3)?,
                last_customer_at: r.get(4)?,
                reminder,
            })
        },
    )
}

/// Records the reminder of `case` (replacing one of an earlier wait): false when this
/// wait's reminder is recorded already (another process sent it), and then nothing
/// changes. The conditional upsert is the claim: of two writers, one changes the row.
pub fn record_reminder(db: Db<'_>, case: CaseId, reminder: &Reminder) -> DbResult<bool> {
    let changed = db.execute(
        "INSERT INTO close_reminders (case_id, waiting_since, reminded_at, closes_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (case_id) DO UPDATE SET waiting_since = ?2, reminded_at = ?3, closes_at = ?4
         WHERE close_reminders.waiting_since <> ?2",
        vals![case, &reminder.waiting_since, &reminder.reminded_at, &reminder.closes_at],
    )?;
    Ok(changed > 0)
}

/// Claims the closing of `case` for the wait that began at `waiting_since`: its reminder
/// row goes, and only the writer that removed it closes the case.
pub fn claim_close(db: Db<'_>, case: CaseId, waiting_since: &str) -> DbResult<bool> {
    let removed = db
        .execute("DELETE FROM close_reminders WHERE case_id = ?1 AND waiting_since = ?2", vals![case, waiting_since])?;
    Ok(removed > 0)
}
