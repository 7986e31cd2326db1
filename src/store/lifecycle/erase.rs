//! Erasing one person: where their address and their words are stored, and the writes
//! that remove them. Their thread entries keep their place with the text `(erased)` and
//! the pseudonym as author (a thread must still read in order); their attachments, the
//! raw copies of every mail on the cases they took part in, and the rendered copies of
//! notifications about those cases go; everywhere else their address is replaced by the
//! pseudonym. Cases they only watched lose them as a watcher.
//!
//! The pure parts — what the pseudonym is, how an address is replaced in a text — are
//! here too, so the store's writes and their tests read together.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{remove_attachments, remove_mails, Dead};
use crate::address::Address;
use crate::case::{AuditAction, CaseId, ParticipantRole};
use crate::store::db::{Db, DbResult};
use crate::vals;

/// What an erased entry's body becomes, and a case subject that was theirs.
pub const ERASED: &str = "(erased)";

/// Why a notification to the erased person (or quoting them) was not sent.
pub const NOT_SENT: &str = "not sent: the personal data of a person it named was erased";

/// Replaces every occurrence of `address` in `text` (ASCII case ignored, as addresses are
/// compared) by `with`; `None` when there is none.
pub fn replace_address(text: &str, address: &str, with: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let needle = address.to_ascii_lowercase();
    if needle.is_empty() || !lower.contains(&needle) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    // ASCII lower-casing keeps every byte where it was, so positions in `lower` are
    // positions in `text`, on character boundaries.
    for (at, _) in lower.match_indices(&needle) {
        if at < rest {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push_str(with);
        rest = at + needle.len();
    }
    out.push_str(&text[rest..]);
    Some(out)
}

/// A `LIKE` pattern that finds `address` anywhere in a lower-cased column (`\` escapes).
pub fn like_pattern(address: &str) -> String {
    let mut p = String::from("%");
    for c in address.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A case the person took part in, as the erasure lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Involvement {
    pub case: CaseId,
    /// The roles they held (held before, for a watcher who left).
    pub roles: Vec<ParticipantRole>,
    /// Thread entries they wrote there.
    pub entries: u64,
    /// Whether the case was opened with their words (its subject goes too).
    pub opened: bool,
}

/// Where one person is stored, found before anything is erased (the dry run shows it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    pub cases: Vec<Involvement>,
    /// Thread entries they wrote.
    pub entries: Vec<i64>,
    /// Attachments of those entries.
    pub files: u64,
    /// Journal rows of their own mails (including mails that opened no case).
    pub own_mails: Vec<i64>,
    /// Journal rows of every mail on the cases they took part in (their raw copies answer
    /// or quote theirs).
    pub case_mails: Vec<i64>,
    /// Notifications addressed to them.
    pub notifications_to: u64,
    pub survey_answers: u64,
}

impl Footprint {
    /// Whether there is nothing of them (an erasure would change nothing but the log).
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty() && self.own_mails.is_empty() && self.notifications_to == 0 && self.survey_answers == 0
    }

    fn case_numbers(&self) -> Vec<CaseId> {
        self.cases.iter().map(|c| c.case).collect()
    }
}

/// Finds where `address` is stored.
pub fn footprint(db: Db<'_>, address: &Address) -> DbResult<Footprint> {
    let a = address.as_str();
    let mut cases: Vec<Involvement> = Vec::new();
    let roles: Vec<(CaseId, String)> =
        db.query_map("SELECT case_id, role FROM participants WHERE address = ?1 ORDER BY case_id", vals![a], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    for (case, role) in roles {
        let Ok(role) = role.parse::<ParticipantRole>() else { continue };
        involvement(&mut cases, case).roles.push(role);
    }
    let entries: Vec<(i64, CaseId)> =
        db.query_map("SELECT id, case_id FROM messages WHERE from_addr = ?1 ORDER BY id", vals![a], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    for (_, case) in &entries {
        involvement(&mut cases, *case).entries += 1;
    }
    for c in cases.iter_mut() {
        let first: Option<Option<String>> = db.query_row(
            "SELECT from_addr FROM messages WHERE case_id = ?1 ORDER BY id LIMIT 1",
            vals![c.case],
            |r| r.get(0),
        )?;
        c.opened = first.flatten().as_deref() == Some(a);
    }
    cases.sort_by_key(|c| c.case);
    let mut files = 0;
    for (entry, _) in &entries {
        files += db
            .query_row("SELECT count(*) FROM attachments WHERE message = ?1", vals![*entry], |r| r.get::<i64>(0))?
            .unwrap_or(0) as u64;
    }
    let own_mails = db.query_map("SELECT id FROM mails WHERE from_addr = ?1 ORDER BY id", vals![a], |r| r.get(0))?;
    let mut case_mails = Vec::new();
    for c in &cases {
        case_mails.extend(db.query_map(
            "SELECT id FROM mails WHERE case_id = ?1 AND removed_at IS NULL
             UNION SELECT mail_id FROM messages WHERE case_id = ?1 AND mail_id IS NOT NULL",
            vals![c.case],
            |r| r.get::<i64>(0),
        )?);
    }
    case_mails.sort_unstable();
    case_mails.dedup();
    let to = recipients_json(a);
    let notifications_to = db
        .query_row("SELECT count(*) FROM outbox WHERE recipients = ?1", vals![&to], |r| r.get::<i64>(0))?
        .unwrap_or(0);
    let survey_answers = db
        .query_row("SELECT count(*) FROM survey_answers WHERE recipient = ?1", vals![a], |r| r.get::<i64>(0))?
        .unwrap_or(0);
    Ok(Footprint {
        cases,
        entries: entries.into_iter().map(|(id, _)| id).collect(),
        files,
        own_mails,
        case_mails,
        notifications_to: notifications_to as u64,
        survey_answers: survey_answers as u64,
    })
}

fn involvement(cases: &mut Vec<Involvement>, case: CaseId) -> &mut Involvement {
    match cases.iter().position(|c| c.case == case) {
        Some(i) => &mut cases[i],
        None => {
            cases.push(Involvement { case, roles: Vec::new(), entries: 0, opened: false });
            cases.last_mut().expect("just pushed")
        }
    }
}

/// How the outbox names a recipient (as `store::outbox` writes it).
fn recipients_json(address: &str) -> String {
    serde_json::Value::from(vec![address]).to_string()
}

/// Journal rows (after `after`, at most `limit`) whose raw copy is still kept: the pages
/// of the search for other mails that name the person.
pub fn kept_mails(db: Db<'_>, after: i64, limit: usize) -> DbResult<Vec<(i64, String)>> {
    db.query_map(
        "SELECT id, raw_sha256 FROM mails WHERE removed_at IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
        vals![after, limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// How many journal rows still have their raw copy (the size of that search).
pub fn kept_mail_count(db: Db<'_>) -> DbResult<u64> {
    let n = db.query_row("SELECT count(*) FROM mails WHERE removed_at IS NULL", vals![], |r| r.get::<i64>(0))?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Notifications (after `after`, at most `limit`) with a rendered copy: the pages of the
/// search for copies that name the person.
pub fn rendered_notifications(db: Db<'_>, after: i64, limit: usize) -> DbResult<Vec<(i64, Vec<u8>)>> {
    db.query_map(
        "SELECT id, payload FROM outbox WHERE payload IS NOT NULL AND id > ?1 ORDER BY id LIMIT ?2",
        vals![after, limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// What [`erase`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub cases: u64,
    pub entries: u64,
    pub files: u64,
    /// Mails whose raw copy was removed.
    pub mails: u64,
    pub watcher_rows: u64,
    /// Notifications whose copy was dropped or that will not be sent.
    pub notifications: u64,
    pub survey_answers: u64,
    /// Other texts (other people's entries, subjects, audit records, bounces …) in which
    /// the address was replaced by the pseudonym.
    pub texts_rewritten: u64,
    /// Identifier columns (Message-IDs, journal keys) that contain the address and are
    /// kept, because the journal and reply routing depend on them.
    pub kept_in_identifiers: Vec<String>,
}

/// What erasing needs besides the footprint: mails and notifications found (by reading
/// their bytes) to name the person.
#[derive(Debug, Clone, Default)]
pub struct Mentions {
    pub mails: Vec<i64>,
    pub notifications: Vec<i64>,
}

/// Erases `address`, replacing it by `pseudonym`: see the module documentation. What is
/// left for the bytes goes into `dead`. Fails, changing nothing, when the address would
/// still be found in a text column afterwards (a table this code does not know).
pub fn erase(
    db: Db<'_>,
    address: &Address,
    pseudonym: &Address,
    found: &Footprint,
    mentions: &Mentions,
    now: &str,
    dead: &mut Dead,
) -> anyhow::Result<Erased> {
    let (a, p) = (address.as_str(), pseudonym.as_str());
    let mut done = Erased { cases: found.cases.len() as u64, ..Erased::default() };
    let mut files = Vec::new();
    for &entry in &found.entries {
        files.extend(remove_attachments(db, entry)?);
        done.entries +=
            db.execute("UPDATE messages SET body = ?2, from_addr = ?3 WHERE id = ?1", vals![entry, ERASED, p])? as u64;
    }
    done.files = files.len() as u64;
    dead.blobs.extend(files);
    // A case opened with their mail has their words as its subject, and so has every
    // notification about it.
    for c in found.cases.iter().filter(|c| c.opened) {
        // The key of their opening words (the loop breaker's) goes with the words.
        db.execute("UPDATE cases SET subject = ?2, opening_gist = NULL WHERE id = ?1", vals![c.case, ERASED])?;
        db.execute("UPDATE outbox SET subject = ?2 WHERE case_id = ?1 AND subject <> ''", vals![c.case, ERASED])?;
    }
    let mut mails: BTreeSet<i64> = found.own_mails.iter().chain(&found.case_mails).copied().collect();
    mails.extend(&mentions.mails);
    let mails: Vec<i64> = mails.into_iter().collect();
    let raw = remove_mails(db, &mails, now)?;
    done.mails = raw.len() as u64;
    dead.raw.extend(raw);
    done.watcher_rows = participants(db, a, p)?;
    done.survey_answers = survey(db, a, p)?;
    done.notifications = notifications(db, a, p, &found.case_numbers(), &mentions.notifications)?;
    suppressions(db, a, p, now)?;
    for (table, column) in TEXTS {
        done.texts_rewritten += rewrite(db, table, column, a, p)?;
    }
    let detail = format!(
        "personal data of one person erased: {} thread entries, {} files, {} raw mails, {} notifications, {} survey answers, on {} cases",
        done.entries, done.files, done.mails, done.notifications, done.survey_answers, done.cases
    );
    db.execute(
        "INSERT INTO audit (at, mail_id, case_id, actor, action, detail) VALUES (?1, NULL, NULL, NULL, ?2, ?3)",
        vals![now, AuditAction::PersonErased.as_str(), detail],
    )?;
    let (left, kept) = still_named(db, a)?;
    if !left.is_empty() {
        anyhow::bail!(
            "the address would still be stored in {} after the erasure, which casegate does not know how to erase; nothing was changed",
            left.join(", ")
        );
    }
    done.kept_in_identifiers = kept;
    Ok(done)
}

/// Requester and contact rows name the pseudonym; watcher rows go (current and past).
fn participants(db: Db<'_>, a: &str, p: &str) -> DbResult<u64> {
    let watchers = db.execute("DELETE FROM participants WHERE address = ?1 AND role = 'watcher'", vals![a])? as u64;
    db.execute("UPDATE participants SET address = ?2 WHERE address = ?1", vals![a, p])?;
    db.execute("UPDATE participants SET added_by = ?2 WHERE added_by = ?1", vals![a, p])?;
    Ok(watchers)
}

/// Their survey answers stay as scores under the pseudonym, without their comment. An
/// answer refers to its invitation, so the invitation is copied under the pseudonym first
/// (without the survey mail's Message-ID: a later answer by mail cannot be theirs).
fn survey(db: Db<'_>, a: &str, p: &str) -> DbResult<u64> {
    db.execute(
        "INSERT INTO survey_invitations (case_id, recipient, created_at, expires_at, message_id)
         SELECT case_id, ?2, created_at, expires_at, NULL FROM survey_invitations WHERE recipient = ?1",
        vals![a, p],
    )?;
    let answers =
        db.execute("UPDATE survey_answers SET recipient = ?2, comment = NULL WHERE recipient = ?1", vals![a, p])?;
    db.execute("DELETE FROM survey_invitations WHERE recipient = ?1", vals![a])?;
    Ok(answers as u64)
}

/// Notifications to them are never sent and keep no copy; the copies of notifications
/// about their cases, or that name them, are dropped; mail about their cases waiting to
/// be sent keeps its place but loses the name and subject of their mail it would quote.
fn notifications(db: Db<'_>, a: &str, p: &str, cases: &[CaseId], naming: &[i64]) -> DbResult<u64> {
    let mut n = db.execute(
        "UPDATE outbox SET recipients = ?2, subject = ?3, payload = NULL, spec = NULL,
           last_error = CASE WHEN status = 'queued' THEN ?4 ELSE last_error END,
           status = CASE WHEN status = 'queued' THEN 'suppressed' ELSE status END
         WHERE recipients = ?1",
        vals![recipients_json(a), recipients_json(p), ERASED, NOT_SENT],
    )? as u64;
    // A rendered mail still waiting (a retry) would carry their words: it is not sent. One
    // waiting to be rendered is rendered from the erased thread, and keeps its spec.
    let drop_copy = |id: i64| -> DbResult<u64> {
        Ok(db.execute(
            "UPDATE outbox SET
               last_error = CASE WHEN status = 'queued' AND payload IS NOT NULL THEN ?2 ELSE last_error END,
               status = CASE WHEN status = 'queued' AND payload IS NOT NULL THEN 'suppressed' ELSE status END,
               spec = CASE WHEN status = 'queued' AND payload IS NULL THEN spec ELSE NULL END,
               payload = NULL
             WHERE id = ?1 AND (payload IS NOT NULL OR (spec IS NOT NULL AND status <> 'queued'))",
            vals![id, NOT_SENT],
        )? as u64)
    };
    for &id in naming {
        n += drop_copy(id)?;
    }
    for &case in cases {
        let ids: Vec<i64> = db.query_map("SELECT id FROM outbox WHERE case_id = ?1", vals![case], |r| r.get(0))?;
        for id in ids {
            n += drop_copy(id)?;
        }
    }
    // What a queued notification is still to be rendered from names the mail that caused
    // it (`notify::Spec`): its author's display name and its subject go.
    let specs: Vec<(i64, String)> = db.query_map(
        "SELECT id, spec FROM outbox WHERE status = 'queued' AND spec IS NOT NULL AND lower(spec) LIKE ?1 ESCAPE '\\'",
        vals![like_pattern(a)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (id, spec) in specs {
        let mut value: serde_json::Value = serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null);
        if let Some(spec) = value.as_object_mut() {
            spec.insert("author".into(), serde_json::Value::Null);
            spec.insert("your_subject".into(), serde_json::Value::Null);
        }
        let text = replace_address(&value.to_string(), a, p).unwrap_or_else(|| value.to_string());
        db.execute("UPDATE outbox SET spec = ?2 WHERE id = ?1", vals![id, text])?;
    }
    Ok(n)
}

/// Their suppression goes; the pseudonym is suppressed for good, so that no mail about a
/// case they took part in is sent to it.
fn suppressions(db: Db<'_>, a: &str, p: &str, now: &str) -> DbResult<()> {
    crate::store::bounces::forget_any_suppression(db);
    db.execute("DELETE FROM suppressions WHERE address = ?1", vals![a])?;
    db.execute("UPDATE suppressions SET lifted_by = ?2 WHERE lifted_by = ?1", vals![a, p])?;
    db.execute(
        "INSERT INTO suppressions (address, reason, since, until) VALUES (?1, ?2, ?3, '9999-12-31T23:59:59.999Z')
         ON CONFLICT (address) DO UPDATE SET reason = ?2, until = '9999-12-31T23:59:59.999Z', lifted_at = NULL, lifted_by = NULL",
        vals![p, "personal data erased", now],
    )?;
    Ok(())
}

/// The text columns (of tables whose rows have an `id`) in which the address is replaced
/// wherever it occurs: other people's words and the records about them.
const TEXTS: &[(&str, &str)] = &[
    ("cases", "subject"),
    ("cases", "environment"),
    ("cases", "account"),
    ("messages", "body"),
    ("messages", "from_addr"),
    ("mails", "from_addr"),
    ("mails", "subject"),
    ("mails", "reason"),
    ("mails", "origin"),
    ("quarantine", "detail"),
    ("outbox", "recipients"),
    ("outbox", "subject"),
    ("outbox", "last_error"),
    ("outbox", "spec"),
    ("audit", "actor"),
    ("audit", "detail"),
    ("bounces", "address"),
    ("bounces", "diagnostic"),
];

/// Replaces the address in one column wherever it occurs; how many rows changed.
fn rewrite(db: Db<'_>, table: &str, column: &str, a: &str, p: &str) -> DbResult<u64> {
    let rows: Vec<(i64, String)> = db.query_map(
        &format!("SELECT id, {column} FROM {table} WHERE lower({column}) LIKE ?1 ESCAPE '\\'"),
        vals![like_pattern(a)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut n = 0;
    for (id, text) in rows {
        if let Some(new) = replace_address(&text, a, p) {
            n += db.execute(&format!("UPDATE {table} SET {column} = ?2 WHERE id = ?1"), vals![id, new])? as u64;
        }
    }
    Ok(n)
}

/// Columns that identify mails rather than describe them: the journal's keys and the
/// Message-IDs that route replies. Kept even when an address is part of them.
const IDENTIFIERS: &[&str] = &["message_id", "dedupe_key", "source_key", "raw_sha256", "sha256", "content_id"];

/// Every text column of every table that still contains the address, as `table.column`:
/// those it must not be in, and the identifier columns it is kept in.
pub fn still_named(db: Db<'_>, a: &str) -> DbResult<(Vec<String>, Vec<String>)> {
    let columns: Vec<(String, String)> = if db.is_postgres() {
        db.query_map(
            "SELECT table_name, column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying')
             ORDER BY table_name, column_name",
            vals![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    } else {
        db.query_map(
            "SELECT t.name, c.name FROM sqlite_schema t, pragma_table_info(t.name) c
             WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite%' AND upper(c.type) = 'TEXT'
             ORDER BY t.name, c.name",
            vals![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    };
    let (mut left, mut kept) = (Vec::new(), Vec::new());
    for (table, column) in columns {
        let found = db.query_row(
            &format!("SELECT 1 FROM {table} WHERE lower({column}) LIKE ?1 ESCAPE '\\' LIMIT 1"),
            vals![like_pattern(a)],
            |_| Ok(()),
        )?;
        if found.is_some() {
            let name = format!("{table}.{column}");
            if IDENTIFIERS.contains(&column.as_str()) {
                kept.push(name);
            } else {
                left.push(name);
            }
        }
    }
    Ok((left, kept))
}
