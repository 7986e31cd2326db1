//! The processed-mail journal, raw mails, quarantine and the audit log.
//!
//! The journal is what makes ingest exactly-once: each distinct mail has one row, found
//! again by its source position (IMAP UID, file) or by its dedupe key (Message-ID, or a
//! content hash when there is none).

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::packs::{self, Place, RawPacks};

use crate::case::{CaseId, Outcome};

/// A journal row, as needed to answer "did we see this mail already, and what became of it?"
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailRecord {
    pub id: i64,
    pub message_id: Option<String>,
    pub outcome: Outcome,
    pub case_id: Option<CaseId>,
    pub reason: Option<String>,
    pub raw_sha256: String,
    pub origin: String,
}

const MAIL_COLUMNS: &str = "id, message_id, outcome, case_id, reason, raw_sha256, origin";

fn row_to_mail(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailRecord> {
    let outcome: String = r.get(2)?;
    Ok(MailRecord {
        id: r.get(0)?,
        message_id: r.get(1)?,
        outcome: Outcome::parse_db(&outcome).unwrap_or(Outcome::Quarantined),
        case_id: r.get(3)?,
        reason: r.get(4)?,
        raw_sha256: r.get(5)?,
        origin: r.get(6)?,
    })
}

pub fn find_by_position(conn: &Connection, source: &str, key: &str) -> rusqlite::Result<Option<MailRecord>> {
    conn.prepare_cached(&format!("SELECT {MAIL_COLUMNS} FROM mails WHERE source = ?1 AND source_key = ?2"))?
        .query_row([source, key], row_to_mail)
        .optional()
}

pub fn find_by_dedupe_key(conn: &Connection, key: &str) -> rusqlite::Result<Option<MailRecord>> {
    conn.prepare_cached(&format!("SELECT {MAIL_COLUMNS} FROM mails WHERE dedupe_key = ?1"))?
        .query_row([key], row_to_mail)
        .optional()
}

/// Every journal row whose dedupe key is `prefix` or starts with `prefix` and a space:
/// the mails of one Message-ID (`mid:<id>`), with their keys. One range of the unique
/// index on the key (`!` is the character after the space).
pub fn find_by_message_id_key(conn: &Connection, prefix: &str) -> rusqlite::Result<Vec<(MailRecord, String)>> {
    conn.prepare_cached(&format!(
        "SELECT {MAIL_COLUMNS}, dedupe_key FROM mails WHERE dedupe_key >= ?1 AND dedupe_key < ?2 ORDER BY id"
    ))?
    .query_map([prefix, &format!("{prefix}!")], |r| Ok((row_to_mail(r)?, r.get::<_, String>(7)?)))?
    .filter(|row| !matches!(row, Ok((_, key)) if key != prefix && !key.starts_with(&format!("{prefix} "))))
    .collect()
}

pub fn find_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<MailRecord>> {
    conn.prepare_cached(&format!("SELECT {MAIL_COLUMNS} FROM mails WHERE id = ?1"))?
        .query_row([id], row_to_mail)
        .optional()
}

/// Raw bytes as stored: LZ4-compressed. Mail text shrinks to about a third, which is
/// what the pack file then holds.
pub fn pack_raw(raw: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(raw)
}

/// Stores raw bytes (packed by [`pack_raw`]) once per content: the record is staged in
/// `packs` only when its row is new, and is written before the transaction commits
/// ([`RawPacks::flush`]).
pub fn store_raw(
    conn: &Connection,
    packs: &mut RawPacks,
    sha256: &str,
    size: usize,
    packed: &[u8],
) -> anyhow::Result<()> {
    let place = packs.next_place(packed.len()).context("cannot open a pack file for raw mails")?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO raw_mails (sha256, size, data, pack, pack_offset, pack_length)
             VALUES (?1, ?2, X'', ?3, ?4, ?5)",
        )?
        .execute(params![sha256, size as i64, place.pack, place.offset as i64, place.length as i64])?;
    // Staged only when the row is new: the same content may be stored already.
    if inserted > 0 {
        packs.stage(packed).context("cannot hand the raw mail to its pack file")?;
    }
    Ok(())
}

/// The raw bytes of a stored mail (`packs_dir` is `data_dir/raw`), checked against the
/// hash they are stored under. `None` when there is no such mail, or when its raw copy was
/// removed (retention, purge, erasure: the row is kept, empty and in no pack).
pub fn raw(conn: &Connection, packs_dir: &Path, sha256: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let Some((mut data, mut place)) = raw_row(conn, sha256)? else { return Ok(None) };
    let mut read = place.as_ref().map(|at| packs::read(packs_dir, at));
    // Compaction may move the record to a new pack between reading the row and opening the
    // old pack, which it then deletes: the row, read again, names the new place.
    if matches!(&read, Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound) {
        let Some(again) = raw_row(conn, sha256)? else { return Ok(None) };
        (data, place) = again;
        read = place.as_ref().map(|at| packs::read(packs_dir, at));
    }
    let packed = match (place, read) {
        (Some(place), Some(read)) => read
            .with_context(|| format!("cannot read raw mail {sha256} from {}", packs_dir.join(&place.pack).display()))?,
        (None, _) if data.is_empty() => return Ok(None),
        // Stored before packs existed (schema version 5 and older).
        _ => data,
    };
    let raw = lz4_flex::decompress_size_prepended(&packed)
        .with_context(|| format!("the stored raw mail {sha256} is damaged (cannot decompress)"))?;
    if crate::digest::sha256_hex(&raw) != sha256 {
        anyhow::bail!("the stored raw mail {sha256} is damaged (its content does not match its hash)");
    }
    Ok(Some(raw))
}

/// A raw mail's row: the bytes kept in the row (before packs), and its place in a pack.
fn raw_row(conn: &Connection, sha256: &str) -> rusqlite::Result<Option<(Vec<u8>, Option<Place>)>> {
    conn.prepare_cached("SELECT data, pack, pack_offset, pack_length FROM raw_mails WHERE sha256 = ?1")?
        .query_row([sha256], |r| {
            let place = match (r.get::<_, Option<String>>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, Option<i64>>(3)?)
            {
                (Some(pack), Some(offset), Some(length)) => {
                    Some(Place { pack, offset: offset as u64, length: length as u64 })
                }
                _ => None,
            };
            Ok((r.get::<_, Vec<u8>>(0)?, place))
        })
        .optional()
}

/// A journal row being written: where the mail came from and what identifies it.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    pub origin: &'a str,
    pub source: Option<&'a str>,
    pub source_key: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub dedupe_key: &'a str,
    pub raw_sha256: &'a str,
    pub from: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// The outcome a journal row records.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub outcome: Outcome,
    pub case: Option<CaseId>,
    pub reason: Option<&'a str>,
}

pub fn insert_mail(conn: &Connection, m: &NewMail<'_>, recorded: Recorded<'_>, now: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO mails (received_at, origin, source, source_key, message_id, dedupe_key, raw_sha256, from_addr, subject, outcome, case_id, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        now,
        m.origin,
        m.source,
        m.source_key,
        m.message_id,
        m.dedupe_key,
        m.raw_sha256,
        m.from,
        m.subject,
        recorded.outcome.as_str(),
        recorded.case,
        recorded.reason
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records a new outcome on a journal row (a quarantined mail released).
pub fn set_outcome(conn: &Connection, id: i64, recorded: Recorded<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE mails SET outcome = ?2, case_id = ?3, reason = ?4 WHERE id = ?1")?.execute(params![
        id,
        recorded.outcome.as_str(),
        recorded.case,
        recorded.reason
    ])?;
    Ok(())
}

/// Appends to the audit log.
pub fn audit(
    conn: &Connection,
    mail: Option<i64>,
    case: Option<CaseId>,
    actor: Option<&str>,
    action: &str,
    detail: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, mail_id, case_id, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, mail, case, actor, action, detail])?;
    Ok(())
}

pub fn quarantine(
    conn: &Connection,
    mail: i64,
    reason: &str,
    detail: Option<&str>,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO quarantine (mail_id, reason, detail, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![mail, reason, detail, now])?;
    Ok(conn.last_insert_rowid())
}

/// One quarantined mail, for `quarantine list`.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineView {
    pub id: i64,
    pub mail_id: i64,
    pub reason: String,
    pub detail: Option<String>,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub origin: String,
    pub size: i64,
    pub created_at: String,
    pub released_at: Option<String>,
    pub released_outcome: Option<String>,
}

pub fn list_quarantine(conn: &Connection, include_released: bool) -> rusqlite::Result<Vec<QuarantineView>> {
    let mut stmt = conn.prepare(
        "SELECT q.id, q.mail_id, q.reason, q.detail, m.message_id, m.from_addr, m.subject, m.origin, r.size, q.created_at,
                q.released_at, q.released_outcome
         FROM quarantine q JOIN mails m ON m.id = q.mail_id JOIN raw_mails r ON r.sha256 = m.raw_sha256
         WHERE ?1 OR q.released_at IS NULL ORDER BY q.id",
    )?;
    let rows = stmt.query_map([include_released], |r| {
        Ok(QuarantineView {
            id: r.get(0)?,
            mail_id: r.get(1)?,
            reason: r.get(2)?,
            detail: r.get(3)?,
            message_id: r.get(4)?,
            from: r.get(5)?,
            subject: r.get(6)?,
            origin: r.get(7)?,
            size: r.get(8)?,
            created_at: r.get(9)?,
            released_at: r.get(10)?,
            released_outcome: r.get(11)?,
        })
    })?;
    rows.collect()
}

pub fn get_quarantine(conn: &Connection, id: i64) -> rusqlite::Result<Option<QuarantineView>> {
    Ok(list_quarantine(conn, true)?.into_iter().find(|q| q.id == id))
}

pub fn mark_released(conn: &Connection, id: i64, outcome: Outcome, now: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE quarantine SET released_at = ?2, released_outcome = ?3 WHERE id = ?1")?
        .execute(params![id, now, outcome.as_str()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_mails_stored_inside_the_database_before_packs_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let mail = b"From: a@x.example\r\nSubject: old\r\n\r\nkept in the row\r\n";
        let sha = crate::digest::sha256_hex(mail);
        // As written before migration 6: the bytes in `data`, no pack.
        conn.execute(
            "INSERT INTO raw_mails (sha256, size, data) VALUES (?1, ?2, ?3)",
            params![sha, mail.len() as i64, pack_raw(mail)],
        )
        .unwrap();
        assert_eq!(raw(&conn, dir.path(), &sha).unwrap().as_deref(), Some(&mail[..]));
        assert_eq!(raw(&conn, dir.path(), &"0".repeat(64)).unwrap(), None);
    }

    #[test]
    fn the_same_content_is_staged_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        let mail = b"Subject: twice\r\n\r\nsame bytes\r\n";
        let sha = crate::digest::sha256_hex(mail);
        store_raw(&conn, &mut packs, &sha, mail.len(), &pack_raw(mail)).unwrap();
        let once = packs.mark();
        store_raw(&conn, &mut packs, &sha, mail.len(), &pack_raw(mail)).unwrap();
        assert_eq!(packs.mark(), once, "the second copy was not staged");
        packs.flush().unwrap();
        assert_eq!(raw(&conn, dir.path(), &sha).unwrap().as_deref(), Some(&mail[..]));
    }
}
