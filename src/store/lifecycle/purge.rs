//! Purging closed cases: everything of a case goes — its thread, attachments no other
//! entry names, its mails' raw copies (their journal rows become tombstones), its
//! notifications, survey invitations and answers, participants, the Message-IDs that
//! routed replies to it and its audit records — and one audit record is written in their
//! place: the case's number, when it was opened and closed, and why it was purged.

use serde::Serialize;

use super::{remove_attachments, remove_mails, Dead};
use crate::case::{AuditAction, CaseId};
use crate::store::db::{Db, DbResult};
use crate::vals;

/// A closed case, as a purge lists it: its number and dates, nothing of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosedCase {
    pub number: CaseId,
    pub created_at: String,
    /// When it was closed, or last changed after that (a watcher leaving).
    pub closed_at: String,
}

/// Closed cases last changed before `before` (stored time), oldest number first.
pub fn closed_before(db: Db<'_>, before: &str) -> DbResult<Vec<ClosedCase>> {
    db.query_map(
        "SELECT id, created_at, updated_at FROM cases WHERE status = 'closed' AND updated_at < ?1 ORDER BY id",
        vals![before],
        |r| Ok(ClosedCase { number: r.get(0)?, created_at: r.get(1)?, closed_at: r.get(2)? }),
    )
}

/// How much purging removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub cases: u64,
    pub entries: u64,
    pub attachments: u64,
    pub mails: u64,
    pub notifications: u64,
    pub survey_answers: u64,
    pub audit_records: u64,
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, o: Purged) {
        self.cases += o.cases;
        self.entries += o.entries;
        self.attachments += o.attachments;
        self.mails += o.mails;
        self.notifications += o.notifications;
        self.survey_answers += o.survey_answers;
        self.audit_records += o.audit_records;
    }
}

/// Purges one case, if it is (still) closed; what it leaves for the bytes goes into
/// `dead`. `why` is recorded in the audit record that stays ("retention.closed_cases_days
/// = 730", "casegate purge --closed-before 2024-01-01").
pub fn purge_case(db: Db<'_>, case: &ClosedCase, why: &str, now: &str, dead: &mut Dead) -> DbResult<Option<Purged>> {
    let id = case.number;
    let closed = db.query_row("SELECT 1 FROM cases WHERE id = ?1 AND status = 'closed'", vals![id], |_| Ok(()))?;
    if closed.is_none() {
        return Ok(None);
    }
    let mut n = Purged { cases: 1, ..Purged::default() };
    let mut mails: Vec<i64> = db.query_map(
        "SELECT id FROM mails WHERE case_id = ?1
         UNION SELECT mail_id FROM messages WHERE case_id = ?1 AND mail_id IS NOT NULL",
        vals![id],
        |r| r.get(0),
    )?;
    mails.sort_unstable();
    mails.dedup();
    let raw = remove_mails(db, &mails, now)?;
    n.mails = raw.len() as u64;
    dead.raw.extend(raw);
    db.execute("UPDATE mails SET case_id = NULL WHERE case_id = ?1", vals![id])?;

    let entries: Vec<i64> = db.query_map("SELECT id FROM messages WHERE case_id = ?1", vals![id], |r| r.get(0))?;
    let mut files = Vec::new();
    for entry in &entries {
        files.extend(remove_attachments(db, *entry)?);
    }
    n.attachments = files.len() as u64;
    dead.blobs.extend(files);
    n.entries = db.execute("DELETE FROM messages WHERE case_id = ?1", vals![id])? as u64;
    db.execute("DELETE FROM case_message_ids WHERE case_id = ?1", vals![id])?;

    // A bounce stays recorded for its address (it counts towards suppressing it); it no
    // longer names the notification.
    db.execute(
        "UPDATE bounces SET outbox_id = NULL WHERE outbox_id IN (SELECT id FROM outbox WHERE case_id = ?1)",
        vals![id],
    )?;
    n.notifications = db.execute("DELETE FROM outbox WHERE case_id = ?1", vals![id])? as u64;
    n.survey_answers = db.execute("DELETE FROM survey_answers WHERE case_id = ?1", vals![id])? as u64;
    db.execute("DELETE FROM survey_invitations WHERE case_id = ?1", vals![id])?;
    db.execute("DELETE FROM close_reminders WHERE case_id = ?1", vals![id])?;
    db.execute("DELETE FROM participants WHERE case_id = ?1", vals![id])?;
    n.audit_records = db.execute("DELETE FROM audit WHERE case_id = ?1", vals![id])? as u64;
    // A follow-up case stays; it no longer names a case that does not exist.
    db.execute("UPDATE cases SET linked_case = NULL WHERE linked_case = ?1", vals![id])?;
    db.execute("DELETE FROM cases WHERE id = ?1", vals![id])?;

    let detail = format!("opened {}, closed {}; purged: {why}", case.created_at, case.closed_at);
    db.execute(
        "INSERT INTO audit (at, mail_id, case_id, actor, action, detail) VALUES (?1, NULL, ?2, NULL, ?3, ?4)",
        vals![now, id, AuditAction::CasePurged.as_str(), detail],
    )?;
    Ok(Some(n))
}
