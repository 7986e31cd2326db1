//! Cases, their participants, thread messages, attachment metadata and the Message-IDs
//! that route replies to them; plus the read models shown by `cases list/show`.

use std::collections::HashMap;

use serde::Serialize;

use super::db::{Db, DbError, DbResult, Row};
use super::grouping::Appendable;
use super::{held, references, thread};
use crate::address::Address;
use crate::case::{CaseId, Impact, MessageKind, ParticipantRole, Status};
use crate::decide::NewCase;
use crate::parse::Disposition;
use crate::vals;

static CASE: Appendable = Appendable {
    rank: 0,
    one: "INSERT INTO cases (subject, status, impact, account, environment, linked_case, created_at, updated_at, opening_gist, id)
         VALUES (?1, 'new', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)",
    many: "INSERT INTO cases (subject, status, impact, account, environment, linked_case, created_at, updated_at, opening_gist, id)
         SELECT s, 'new', i, a, e, l, c, c, g, n
         FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::bigint[], ?6::text[], ?7::text[], ?8::bigint[])
           AS u(s, i, a, e, l, c, g, n)",
    key: &[],
};

static PARTICIPANT: Appendable = Appendable {
    rank: 4,
    one: "INSERT INTO participants (case_id, address, role, added_via, added_by, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (case_id, role, address) DO UPDATE
           SET removed_at = NULL, added_via = excluded.added_via, added_by = excluded.added_by, added_at = excluded.added_at
         WHERE participants.removed_at IS NOT NULL",
    many: "INSERT INTO participants (case_id, address, role, added_via, added_by, added_at)
         SELECT * FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[])
         ON CONFLICT (case_id, role, address) DO UPDATE
           SET removed_at = NULL, added_via = excluded.added_via, added_by = excluded.added_by, added_at = excluded.added_at
         WHERE participants.removed_at IS NOT NULL",
    key: &[0, 1, 2],
};

static MESSAGE: Appendable = Appendable {
    rank: 5,
    one: "INSERT INTO messages (case_id, mail_id, message_id, kind, from_addr, body, created_at, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    many: "INSERT INTO messages (case_id, mail_id, message_id, kind, from_addr, body, created_at, id)
         SELECT * FROM unnest(?1::bigint[], ?2::bigint[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], ?7::text[], ?8::bigint[])",
    key: &[],
};

static ATTACHMENT: Appendable = Appendable {
    rank: 6,
    one: "INSERT INTO attachments (message, filename, content_type, disposition, content_id, size, sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    many: "INSERT INTO attachments (message, filename, content_type, disposition, content_id, size, sha256)
         SELECT * FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::bigint[], ?7::text[])",
    key: &[],
};

// The casts tell PostgreSQL the parameters' types, which a select list does not.
static MESSAGE_ID_LINK: Appendable = Appendable {
    rank: 7,
    one: "INSERT INTO case_message_ids (message_id, case_id, direction)
         SELECT CAST(?1 AS TEXT), CAST(?2 AS BIGINT), 'in'
         WHERE NOT EXISTS (SELECT 1 FROM ambiguous_message_ids WHERE message_id = ?1)
         ON CONFLICT (message_id) DO NOTHING",
    many: "INSERT INTO case_message_ids (message_id, case_id, direction)
         SELECT u.m, u.c, 'in' FROM unnest(?1::text[], ?2::bigint[]) AS u(m, c)
         WHERE NOT EXISTS (SELECT 1 FROM ambiguous_message_ids a WHERE a.message_id = u.m COLLATE \"C\")
         ON CONFLICT (message_id) DO NOTHING",
    key: &[0],
};

// Last among the rows of a stretch: it changes a case opened before it. A case touched
// more than once gets the latest time, as one touch after another leaves it; a status or
// field change (which writes the unit's time too) may come before or after it.
static TOUCH: Appendable = Appendable {
    rank: 10,
    one: "UPDATE cases SET updated_at = ?2 WHERE id = ?1",
    many: "UPDATE cases SET updated_at = u.t
         FROM (SELECT id, max(t) AS t FROM unnest(?1::bigint[], ?2::text[]) AS x(id, t) GROUP BY id) AS u
         WHERE cases.id = u.id",
    key: &[0, 1],
};

/// Opens a case (status New) and returns its number.
pub fn insert_case(db: Db<'_>, case: &NewCase, now: &str) -> DbResult<CaseId> {
    let id = db.insert_numbered(
        "cases",
        &CASE,
        vals![
            &case.subject,
            case.impact.as_db(),
            case.account.as_deref(),
            case.environment.as_deref(),
            case.linked_case,
            now,
            case.opening_gist.as_deref()
        ],
    )?;
    if held::active(db) {
        let row = CaseRow {
            id,
            subject: case.subject.clone(),
            status: Status::New,
            impact: case.impact,
            account: case.account.clone(),
            environment: case.environment.clone(),
            linked_case: case.linked_case,
            created_at: now.to_string(),
            updated_at: now.to_string(),
        };
        held::hold_new(db, row);
    }
    if let Some(key) = &case.opening_gist {
        super::loops::opened(db, key, id, now);
    }
    Ok(id)
}

pub use crate::case::CaseRow;

const CASE_COLUMNS: &str = "id, subject, status, impact, account, environment, linked_case, created_at, updated_at";

pub fn case_row(db: Db<'_>, id: CaseId) -> DbResult<Option<CaseRow>> {
    if let Some((row, _)) = held::facts(db, id) {
        return Ok(Some(row));
    }
    db.query_row(&format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1"), vals![id], row_to_case)
}

fn row_to_case(r: &Row<'_>) -> DbResult<CaseRow> {
    Ok(CaseRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        status: r.parse(2)?,
        impact: r.parse(3)?,
        account: r.get(4)?,
        environment: r.get(5)?,
        linked_case: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn set_status(db: Db<'_>, id: CaseId, status: Status, now: &str) -> DbResult<()> {
    db.defer_late("UPDATE cases SET status = ?2, updated_at = ?3 WHERE id = ?1", vals![id, status.as_db(), now])?;
    held::set_status(db, id, status, now);
    Ok(())
}

/// Updates one of the editable scalar fields (`impact`, `account`, `environment`, `subject`).
pub fn set_field(db: Db<'_>, id: CaseId, field: &str, value: Option<&str>, now: &str) -> DbResult<()> {
    let column = match field {
        "impact" | "account" | "environment" | "subject" => field,
        other => return Err(DbError::column(0, format!("{other} is not an editable field of a case"))),
    };
    db.defer_late(&format!("UPDATE cases SET {column} = ?2, updated_at = ?3 WHERE id = ?1"), vals![id, value, now])?;
    held::set_field(db, id, column, value, now);
    Ok(())
}

pub fn touch(db: Db<'_>, id: CaseId, now: &str) -> DbResult<()> {
    db.defer_row(&TOUCH, vals![id, now])?;
    held::touch(db, id, now);
    Ok(())
}

/// Adds a participant (nothing changes when they already hold that role). A watcher who
/// had left and is added again becomes active again.
pub fn add_participant(
    db: Db<'_>,
    case: CaseId,
    address: &Address,
    role: ParticipantRole,
    via: &str,
    by: Option<&Address>,
    now: &str,
) -> DbResult<()> {
    db.defer_row(&PARTICIPANT, vals![case, address.as_str(), role.as_db(), via, by.map(Address::as_str), now])?;
    held::add_participant(db, case, address, role, now);
    Ok(())
}

/// Marks a participant as gone; returns false when they did not hold that role.
pub fn remove_participant(
    db: Db<'_>,
    case: CaseId,
    address: &Address,
    role: ParticipantRole,
    now: &str,
) -> DbResult<bool> {
    let changed = db.execute(
        "UPDATE participants SET removed_at = ?4 WHERE case_id = ?1 AND address = ?2 AND role = ?3 AND removed_at IS NULL",
        vals![case, address.as_str(), role.as_db(), now],
    )?;
    held::remove_participant(db, case, address, role);
    Ok(changed > 0)
}

/// An active participant: address and role.
pub type Participant = (Address, ParticipantRole);

const PARTICIPANTS: &str = "SELECT address, role, added_at FROM participants
    WHERE case_id = ?1 AND removed_at IS NULL ORDER BY added_at, address";

/// Active participants of a case: (address, role), in the order they were added.
pub fn participants(db: Db<'_>, case: CaseId) -> DbResult<Vec<(Address, ParticipantRole)>> {
    if let Some((_, people)) = held::facts(db, case) {
        return Ok(people);
    }
    let mut people = Vec::new();
    db.query_many(&[(PARTICIPANTS, vals![case])], |_, r| read_participant(r, &mut people))?;
    Ok(without_times(people))
}

/// One row of [`PARTICIPANTS`] into `people`. Stored addresses were validated on the
/// way in; one that no longer parses is skipped.
fn read_participant(r: &Row<'_>, people: &mut Vec<held::Kept>) -> DbResult<()> {
    let (address, role, added_at) = (r.get::<String>(0)?, r.parse::<ParticipantRole>(1)?, r.get::<String>(2)?);
    if let Some(address) = Address::parse(&address) {
        people.push((address, role, added_at));
    }
    Ok(())
}

fn without_times(people: Vec<held::Kept>) -> Vec<Participant> {
    people.into_iter().map(|(address, role, _)| (address, role)).collect()
}

/// Active participants of several cases (a list, `?1`, of numbers separated by commas),
/// as [`PARTICIPANTS`] reads them, each row ending with its case's number.
const PARTICIPANTS_OF: &str = "SELECT address, role, added_at, case_id FROM participants
    WHERE case_id = ANY(string_to_array(?1, ',')::bigint[]) AND removed_at IS NULL ORDER BY case_id, added_at, address";

/// Reads ahead, and holds for the transaction (see `store::held`), the cases a batch's
/// mails name: each as [`row_and_participants`] reads a case to change (its row locked,
/// here in number order), with the ends of its thread (`store::thread`), all in one
/// round trip. Without it, each reply to a case the transaction did not hold yet cost
/// two round trips of its own, each first sending the writes deferred before it.
/// PostgreSQL inside a transaction only; cases held already, and numbers that name no
/// case, are left alone.
pub fn hold_ahead(db: Db<'_>, cases: &[CaseId]) -> DbResult<()> {
    if !held::active(db) {
        return Ok(());
    }
    let mut wanted: Vec<CaseId> = cases.iter().copied().filter(|c| !held::holds(db, *c)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(());
    }
    let list = wanted.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let rows_sql = format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE id = ANY(string_to_array(?1, ',')::bigint[]) ORDER BY id FOR UPDATE"
    );
    let walks = thread::of_many(&list);
    let one = [super::db::Value::from(list.as_str())];
    let mut queries: Vec<(&str, &[super::db::Value<'_>])> = vec![(&rows_sql, &one), (PARTICIPANTS_OF, &one)];
    queries.extend(walks.iter().map(|(sql, values)| (*sql, values.as_slice())));
    let (mut rows, mut people) = (Vec::new(), HashMap::<CaseId, Vec<held::Kept>>::new());
    let mut threads = HashMap::new();
    db.query_many(&queries, |i, r| match i {
        0 => {
            rows.push(row_to_case(r)?);
            Ok(())
        }
        1 => read_participant(r, people.entry(r.get(3)?).or_default()),
        _ => thread::read_of_many(&mut threads, i - 2, r),
    })?;
    for row in rows {
        let id = row.id;
        held::hold(db, row, people.remove(&id).unwrap_or_default());
        held::keep_thread(db, id, threads.remove(&id).unwrap_or_default());
    }
    Ok(())
}

/// A case's row and active participants, read together (one round trip on PostgreSQL).
/// With `to_change`, for a decision about to change the case: on PostgreSQL the row is
/// locked until the unit of work ends, so two nodes that got mail for one case at once
/// decide one after the other, each on what the other wrote (SQLite has one writer at a
/// time), and the case is held in memory for the transaction (`store::held`).
pub fn row_and_participants(
    db: Db<'_>,
    case: CaseId,
    to_change: bool,
) -> DbResult<Option<(CaseRow, Vec<Participant>)>> {
    if let Some(found) = held::facts(db, case) {
        return Ok(Some(found));
    }
    let row_sql = match db {
        Db::Postgres(_) if to_change => format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1 FOR UPDATE"),
        _ => format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1"),
    };
    let (mut row, mut people) = (None, Vec::new());
    db.query_many(&[(&row_sql, vals![case]), (PARTICIPANTS, vals![case])], |i, r| match i {
        0 => {
            row = Some(row_to_case(r)?);
            Ok(())
        }
        _ => read_participant(r, &mut people),
    })?;
    let Some(row) = row else { return Ok(None) };
    if to_change && held::active(db) {
        held::hold(db, row.clone(), people.clone());
    }
    Ok(Some((row, without_times(people))))
}

/// Fields of a thread entry being added.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub case: CaseId,
    pub mail_id: Option<i64>,
    pub message_id: Option<&'a str>,
    pub kind: MessageKind,
    pub from: Option<&'a Address>,
    pub body: &'a str,
}

pub fn insert_message(db: Db<'_>, m: &NewMessage<'_>, now: &str) -> DbResult<i64> {
    let id = db.insert_with_id(
        "messages",
        &MESSAGE,
        vals![m.case, m.mail_id, m.message_id, m.kind.as_db(), m.from.map(Address::as_str), m.body, now],
    )?;
    held::add_entry(db, m.case, (id, m.message_id, m.kind), m.from, now);
    Ok(id)
}

/// Attachment metadata as stored and shown.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttachmentView {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub disposition: Disposition,
}

pub fn insert_attachment(db: Db<'_>, message: i64, a: &AttachmentView, content_id: Option<&str>) -> DbResult<()> {
    db.defer_row(
        &ATTACHMENT,
        vals![message, &a.filename, &a.content_type, a.disposition.as_str(), content_id, a.size, &a.sha256],
    )?;
    Ok(())
}

/// The newest case that follows up a closed one and is not closed itself.
pub fn open_follow_up(db: Db<'_>, closed: CaseId) -> DbResult<Option<CaseId>> {
    db.query_row(
        "SELECT id FROM cases WHERE linked_case = ?1 AND status <> 'closed' ORDER BY id DESC LIMIT 1",
        vals![closed],
        |r| r.get(0),
    )
}

/// Remembers that the Message-ID of a mail on a case's thread belongs to the case (first
/// writer wins). Our own notifications need no row here: their outbox row names the case.
pub fn link_message_id(db: Db<'_>, message_id: &str, case: CaseId) -> DbResult<()> {
    db.defer_row(&MESSAGE_ID_LINK, vals![message_id, case])?;
    references::linked(db, message_id, case);
    Ok(())
}

/// A Message-ID that mails on different cases share (their senders reused it): it no
/// longer routes replies to any case, now or later.
pub fn forget_message_id(db: Db<'_>, message_id: &str) -> DbResult<()> {
    references::changed(db, message_id);
    db.defer(
        "INSERT INTO ambiguous_message_ids (message_id) VALUES (?1) ON CONFLICT (message_id) DO NOTHING",
        vals![message_id],
    )?;
    db.defer("DELETE FROM case_message_ids WHERE message_id = ?1 AND direction = 'in'", vals![message_id])?;
    Ok(())
}

/// The case a Message-ID belongs to: a mail on its thread, or a notification about it
/// (`out` rows written before notifications were found through the outbox still count).
pub fn case_for_message_id(db: Db<'_>, message_id: &str) -> DbResult<Option<CaseId>> {
    if let Some(found) = references::case_read_ahead(db, message_id) {
        return Ok(found);
    }
    db.query_row(
        "SELECT case_id FROM case_message_ids WHERE message_id = ?1
         UNION ALL SELECT case_id FROM outbox WHERE message_id = ?1 AND case_id IS NOT NULL
         LIMIT 1",
        vals![message_id],
        |r| r.get(0),
    )
}

/// What a mail about a case shows and how it threads: the case's row, its active
/// participants and [`thread::inbound_thread_ids`].
pub struct CaseForMail {
    pub row: CaseRow,
    pub participants: Vec<(Address, ParticipantRole)>,
    pub thread: Vec<String>,
}

/// [`CaseForMail`] of `case`: from what the transaction holds (see `store::held`), or read
/// together (one round trip on PostgreSQL); `None` when the case does not exist.
pub fn case_for_mail(db: Db<'_>, case: CaseId, recent: usize) -> DbResult<Option<CaseForMail>> {
    if let Some((row, participants)) = held::facts(db, case) {
        let thread = thread::inbound_thread_ids(db, case, recent)?;
        return Ok(Some(CaseForMail { row, participants, thread }));
    }
    let row_sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1");
    let (mut row, mut participants, mut ends) = (None, Vec::new(), held::Thread::default());
    let limit = [super::db::Value::from(case), super::db::Value::from(recent)];
    let [first, newest] = thread::queries(&limit);
    let queries: [(&str, &[super::db::Value<'_>]); 4] =
        [(&row_sql, vals![case]), (PARTICIPANTS, vals![case]), first, newest];
    db.query_many(&queries, |i, r| match i {
        0 => {
            row = Some(row_to_case(r)?);
            Ok(())
        }
        1 => read_participant(r, &mut participants),
        i => thread::read(&mut ends, i - 2, r),
    })?;
    let thread = thread::ids(&ends, recent);
    Ok(row.map(|row| CaseForMail { row, participants: without_times(participants), thread }))
}

/// Whether `address` takes part in a case in any role.
pub fn is_participant(db: Db<'_>, case: CaseId, address: &Address) -> DbResult<bool> {
    db.exists(
        "SELECT 1 FROM participants WHERE case_id = ?1 AND address = ?2 AND removed_at IS NULL LIMIT 1",
        vals![case, address.as_str()],
    )
}

/// One thread entry, as a notification shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEntry {
    pub kind: MessageKind,
    pub from: Option<String>,
    pub body: String,
    /// File names of its attachments.
    pub attachments: Vec<String>,
}

pub fn message_entry(db: Db<'_>, id: i64) -> DbResult<Option<MessageEntry>> {
    let Some((kind, from, body)) =
        db.query_row("SELECT kind, from_addr, body FROM messages WHERE id = ?1", vals![id], |r| {
            Ok((r.parse::<MessageKind>(0)?, r.get(1)?, r.get(2)?))
        })?
    else {
        return Ok(None);
    };
    let attachments =
        db.query_map("SELECT filename FROM attachments WHERE message = ?1 ORDER BY id", vals![id], |r| r.get(0))?;
    Ok(Some(MessageEntry { kind, from, body, attachments }))
}

/// What a case was opened with: the body of its first thread entry.
pub fn description(db: Db<'_>, case: CaseId) -> DbResult<Option<String>> {
    db.query_row("SELECT body FROM messages WHERE case_id = ?1 ORDER BY id LIMIT 1", vals![case], |r| r.get(0))
}

/// A case someone takes part in (for the list of their cases).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOfPerson {
    pub case: CaseId,
    /// Their strongest role: requester, then contact, then watcher.
    pub role: ParticipantRole,
    pub status: Status,
    pub subject: String,
    pub updated_at: String,
}

/// The cases `address` takes part in (as requester, contact or watcher), most recently
/// active first, at most `limit`.
pub fn cases_of(db: Db<'_>, address: &Address, limit: usize) -> DbResult<Vec<CaseOfPerson>> {
    let rows = db.query_map(
        "SELECT c.id, p.role, c.status, c.subject, c.updated_at FROM cases c
         JOIN participants p ON p.case_id = c.id AND p.address = ?1 AND p.removed_at IS NULL
         ORDER BY c.updated_at DESC, c.id DESC",
        vals![address.as_str()],
        |r| {
            Ok(CaseOfPerson {
                case: r.get(0)?,
                role: r.parse(1)?,
                status: r.parse(2)?,
                subject: r.get(3)?,
                updated_at: r.get(4)?,
            })
        },
    )?;
    let rank = |role: ParticipantRole| ParticipantRole::ALL.iter().position(|r| *r == role);
    let mut out: Vec<CaseOfPerson> = Vec::new();
    for row in rows {
        if let Some(seen) = out.iter_mut().find(|o| o.case == row.case) {
            if rank(row.role) < rank(seen.role) {
                seen.role = row.role;
            }
        } else if out.len() < limit {
            out.push(row);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Read models for `cases list` / `cases show`.

#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub id: String,
    pub number: CaseId,
    pub status: Status,
    pub subject: String,
    pub impact: Impact,
    pub account: Option<String>,
    pub environment: Option<String>,
    pub reported_by: Option<String>,
    pub contact: Option<String>,
    pub watchers: Vec<String>,
    pub linked_case: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only in `cases show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: i64,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub kind: MessageKind,
    pub body: String,
    pub created_at: String,
    pub attachments: Vec<AttachmentView>,
}

fn view_of(row: CaseRow, prefix: &str, people: &[(String, String)]) -> CaseView {
    let first = |role: &str| people.iter().find(|(_, r)| r == role).map(|(a, _)| a.clone());
    let mut watchers: Vec<String> = people.iter().filter(|(_, r)| r == "watcher").map(|(a, _)| a.clone()).collect();
    watchers.sort();
    CaseView {
        id: format!("{prefix}-{}", row.id),
        number: row.id,
        status: row.status,
        subject: row.subject,
        impact: row.impact,
        account: row.account,
        environment: row.environment,
        reported_by: first("requester"),
        contact: first("contact"),
        watchers,
        linked_case: row.linked_case.map(|c| format!("{prefix}-{c}")),
        created_at: row.created_at,
        updated_at: row.updated_at,
        description: None,
        messages: None,
    }
}

/// All cases (optionally of one status), newest first.
pub fn list_cases(db: Db<'_>, prefix: &str, status: Option<Status>) -> DbResult<Vec<CaseView>> {
    let mut people: std::collections::HashMap<CaseId, Vec<(String, String)>> = std::collections::HashMap::new();
    let rows = db.query_map(
        "SELECT case_id, address, role FROM participants WHERE removed_at IS NULL ORDER BY added_at, address",
        vals![],
        |r| Ok((r.get::<CaseId>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
    )?;
    for (case, addr, role) in rows {
        people.entry(case).or_default().push((addr, role));
    }
    let rows = db.query_map(
        &format!("SELECT {CASE_COLUMNS} FROM cases WHERE CAST(?1 AS TEXT) IS NULL OR status = ?1 ORDER BY id DESC"),
        vals![status.map(Status::as_db)],
        row_to_case,
    )?;
    let mut out = Vec::new();
    for row in rows {
        let p = people.remove(&row.id).unwrap_or_default();
        out.push(view_of(row, prefix, &p));
    }
    Ok(out)
}

/// One case with its description and whole thread.
pub fn show_case(db: Db<'_>, prefix: &str, id: CaseId) -> DbResult<Option<CaseView>> {
    let Some(row) = case_row(db, id)? else {
        return Ok(None);
    };
    let people: Vec<(String, String)> = db.query_map(
        "SELECT address, role FROM participants WHERE case_id = ?1 AND removed_at IS NULL ORDER BY added_at, address",
        vals![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut view = view_of(row, prefix, &people);
    // The description is the opening entry of the thread.
    view.description = Some(description(db, id)?.unwrap_or_default());

    let mut messages: Vec<MessageView> = db.query_map(
        "SELECT id, message_id, from_addr, kind, body, created_at FROM messages WHERE case_id = ?1 ORDER BY id",
        vals![id],
        |r| {
            Ok(MessageView {
                id: r.get(0)?,
                message_id: r.get(1)?,
                from: r.get(2)?,
                kind: r.parse(3)?,
                body: r.get(4)?,
                created_at: r.get(5)?,
                attachments: Vec::new(),
            })
        },
    )?;
    let rows = db.query_map(
        "SELECT a.message, a.filename, a.content_type, a.size, a.sha256, a.disposition FROM attachments a
         JOIN messages m ON m.id = a.message WHERE m.case_id = ?1 ORDER BY a.id",
        vals![id],
        |r| {
            let disposition: String = r.get(5)?;
            Ok((
                r.get::<i64>(0)?,
                AttachmentView {
                    filename: r.get(1)?,
                    content_type: r.get(2)?,
                    size: r.get::<i64>(3)? as u64,
                    sha256: r.get(4)?,
                    disposition: match disposition.as_str() {
                        "inline" => Disposition::Inline,
                        "message" => Disposition::Message,
                        _ => Disposition::Attachment,
                    },
                },
            ))
        },
    )?;
    for (message, att) in rows {
        if let Some(m) = messages.iter_mut().find(|m| m.id == message) {
            m.attachments.push(att);
        }
    }
    view.messages = Some(messages);
    Ok(Some(view))
}
