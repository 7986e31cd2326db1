//! The processed-mail journal, raw mails, quarantine and the audit log.
//!
//! The journal is what makes ingest exactly-once: each distinct mail has one row, found
//! again by its source position (IMAP UID, file) or by its dedupe key (Message-ID, or a
//! content hash when there is none). Both are unique in the database, so two writers
//! (two nodes on one PostgreSQL) can never both record one mail: the second is refused
//! and finds the mail a duplicate when it tries again.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::db::{Db, DbResult, Row};
use super::grouping::Appendable;
use super::packs::{self, Place, RawPacks};
use crate::vals;

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

fn row_to_mail(r: &Row<'_>) -> DbResult<MailRecord> {
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

pub fn find_by_position(db: Db<'_>, source: &str, key: &str) -> DbResult<Option<MailRecord>> {
    db.query_row(
        &format!("SELECT {MAIL_COLUMNS} FROM mails WHERE source = ?1 AND source_key = ?2"),
        vals![source, key],
        row_to_mail,
    )
}

pub fn find_by_dedupe_key(db: Db<'_>, key: &str) -> DbResult<Option<MailRecord>> {
    db.query_row(&format!("SELECT {MAIL_COLUMNS} FROM mails WHERE dedupe_key = ?1"), vals![key], row_to_mail)
}

/// Every journal row whose dedupe key is `prefix` or starts with `prefix` and a space:
/// the mails of one Message-ID (`mid:<id>`), with their keys. One range of the unique
/// index on the key (`!` is the character after the space).
pub fn find_by_message_id_key(db: Db<'_>, prefix: &str) -> DbResult<Vec<(MailRecord, String)>> {
    let rows = db.query_map(
        &format!("SELECT {MAIL_COLUMNS}, dedupe_key FROM mails WHERE dedupe_key >= ?1 AND dedupe_key < ?2 ORDER BY id"),
        vals![prefix, format!("{prefix}!")],
        |r| Ok((row_to_mail(r)?, r.get::<String>(7)?)),
    )?;
    Ok(rows.into_iter().filter(|(_, key)| is_of_message_id(key, prefix)).collect())
}

/// PostgreSQL only: the journal rows at any of a batch's source positions (two lists of
/// lines: sources, positions), with the source and position after the row.
pub const BY_POSITIONS: &str = "SELECT m.id, m.message_id, m.outcome, m.case_id, m.reason, m.raw_sha256, m.origin,
        m.dedupe_key, m.source, m.source_key
    FROM unnest(string_to_array(?1, chr(10)), string_to_array(?2, chr(10))) AS p(source, source_key)
    JOIN mails m ON m.source = p.source COLLATE \"C\" AND m.source_key = p.source_key COLLATE \"C\"";

/// PostgreSQL only: the journal rows under any of a batch's keys (a list of lines).
pub const BY_KEYS: &str = "SELECT id, message_id, outcome, case_id, reason, raw_sha256, origin, dedupe_key
    FROM mails WHERE dedupe_key = ANY(string_to_array(?1, chr(10)) COLLATE \"C\")";

/// PostgreSQL only: [`find_by_message_id_key`] for each of a batch's prefixes (a list of
/// lines), with the prefix after the row; by id.
pub const BY_PREFIXES: &str = "SELECT m.id, m.message_id, m.outcome, m.case_id, m.reason, m.raw_sha256, m.origin,
        m.dedupe_key, p.prefix
    FROM unnest(string_to_array(?1, chr(10))) AS p(prefix)
    CROSS JOIN LATERAL (
        SELECT * FROM mails
        WHERE dedupe_key >= p.prefix COLLATE \"C\" AND dedupe_key < (p.prefix || '!') COLLATE \"C\"
        -- In the key's order, with a limit no Message-ID reaches: what makes the planner
        -- walk the key's index for each prefix rather than read the whole journal.
        ORDER BY dedupe_key LIMIT 100000
    ) m
    ORDER BY m.id";

/// A row of [`BY_POSITIONS`], [`BY_KEYS`] or [`BY_PREFIXES`]: the record and its key.
pub fn journal_row(r: &Row<'_>) -> DbResult<(MailRecord, String)> {
    Ok((row_to_mail(r)?, r.get(7)?))
}

/// Whether a journal key belongs to the mails of Message-ID key `prefix` (see
/// [`find_by_message_id_key`]).
pub fn is_of_message_id(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

pub fn find_by_id(db: Db<'_>, id: i64) -> DbResult<Option<MailRecord>> {
    db.query_row(&format!("SELECT {MAIL_COLUMNS} FROM mails WHERE id = ?1"), vals![id], row_to_mail)
}

/// Raw bytes as stored: LZ4-compressed. Mail text shrinks to about a third, which is
/// what the pack file (or, on PostgreSQL, the row) then holds.
pub fn pack_raw(raw: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(raw)
}

/// Stores raw bytes (packed by [`pack_raw`]) once per content. With `packs` (SQLite) the
/// record is staged in a pack file only when its row is new, and is written before the
/// transaction commits ([`RawPacks::flush`]); without (PostgreSQL, where every node must
/// read every mail) the bytes go into the row itself.
pub fn store_raw(
    db: Db<'_>,
    packs: Option<&mut RawPacks>,
    sha256: &str,
    size: usize,
    packed: &[u8],
) -> anyhow::Result<()> {
    const INSERT: &str = "INSERT INTO raw_mails (sha256, size, data, pack, pack_offset, pack_length)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sha256) DO NOTHING";
    let Some(packs) = packs else {
        let none: Option<i64> = None;
        db.defer_row(&RAW, vals![sha256, size, packed, none, none, none])?;
        return Ok(());
    };
    let place = packs.next_place(packed.len()).context("cannot open a pack file for raw mails")?;
    let empty: &[u8] = &[];
    let inserted = db.execute(INSERT, vals![sha256, size, empty, &place.pack, place.offset, place.length])?;
    // Staged only when the row is new: the same content may be stored already.
    if inserted > 0 {
        packs.stage(packed).context("cannot hand the raw mail to its pack file")?;
    }
    Ok(())
}

/// A raw mail's row: the bytes kept in the row (before packs, and on PostgreSQL), and its
/// place in a pack.
fn raw_row(db: Db<'_>, sha256: &str) -> DbResult<Option<(Vec<u8>, Option<Place>)>> {
    db.query_row("SELECT data, pack, pack_offset, pack_length FROM raw_mails WHERE sha256 = ?1", vals![sha256], |r| {
        let place = match (r.get::<Option<String>>(1)?, r.get::<Option<i64>>(2)?, r.get::<Option<i64>>(3)?) {
            (Some(pack), Some(offset), Some(length)) => {
                Some(Place { pack, offset: offset as u64, length: length as u64 })
            }
            _ => None,
        };
        Ok((r.get::<Vec<u8>>(0)?, place))
    })
}

/// The packed bytes of a stored mail as its row says where they are (`packs_dir` is
/// `data_dir/raw`), unchecked; `None` when there is no such row, or when its raw copy was
/// removed (retention, purge, erasure: the row is kept, empty and in no pack).
pub fn packed_raw(db: Db<'_>, packs_dir: &Path, sha256: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let Some((mut data, mut place)) = raw_row(db, sha256)? else { return Ok(None) };
    let mut read = place.as_ref().map(|at| packs::read(packs_dir, at));
    // Compaction may move the record to a new pack between reading the row and opening the
    // old pack, which it then deletes: the row, read again, names the new place.
    if matches!(&read, Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound) {
        let Some(again) = raw_row(db, sha256)? else { return Ok(None) };
        (data, place) = again;
        read = place.as_ref().map(|at| packs::read(packs_dir, at));
    }
    Ok(match (place, read) {
        (Some(place), Some(read)) => Some(read.with_context(|| {
            format!("cannot read raw mail {sha256} from {}", packs_dir.join(&place.pack).display())
        })?),
        (None, _) if data.is_empty() => None,
        // Stored before packs existed (schema version 5 and older), or on PostgreSQL.
        _ => Some(data),
    })
}

/// Unpacks stored bytes and checks them against the hash they are stored under.
pub fn unpack_raw(sha256: &str, packed: &[u8]) -> anyhow::Result<Vec<u8>> {
    let raw = lz4_flex::decompress_size_prepended(packed)
        .with_context(|| format!("the stored raw mail {sha256} is damaged (cannot decompress)"))?;
    if crate::digest::sha256_hex(&raw) != sha256 {
        anyhow::bail!("the stored raw mail {sha256} is damaged (its content does not match its hash)");
    }
    Ok(raw)
}

/// The raw bytes of a stored mail (`packs_dir` is `data_dir/raw`), checked against the
/// hash they are stored under; `None` when there is no such mail or its raw copy was removed.
pub fn raw(db: Db<'_>, packs_dir: &Path, sha256: &str) -> anyhow::Result<Option<Vec<u8>>> {
    packed_raw(db, packs_dir, sha256)?.map(|packed| unpack_raw(sha256, &packed)).transpose()
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
    /// The node that recorded it (`[storage] node`).
    pub node: Option<&'a str>,
}

/// The outcome a journal row records.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub outcome: Outcome,
    pub case: Option<CaseId>,
    pub reason: Option<&'a str>,
}

static MAIL: Appendable = Appendable {
    rank: 2,
    one: "INSERT INTO mails (received_at, origin, source, source_key, message_id, dedupe_key, raw_sha256, from_addr, subject,
           outcome, case_id, reason, node, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    many: "INSERT INTO mails (received_at, origin, source, source_key, message_id, dedupe_key, raw_sha256, from_addr, subject,
           outcome, case_id, reason, node, id)
         SELECT * FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], ?7::text[],
           ?8::text[], ?9::text[], ?10::text[], ?11::bigint[], ?12::text[], ?13::text[], ?14::bigint[])",
    key: &[],
};

static AUDIT: Appendable = Appendable {
    rank: 8,
    one: "INSERT INTO audit (at, mail_id, case_id, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    many: "INSERT INTO audit (at, mail_id, case_id, actor, action, detail)
         SELECT * FROM unnest(?1::text[], ?2::bigint[], ?3::bigint[], ?4::text[], ?5::text[], ?6::text[])",
    key: &[],
};

static QUARANTINED: Appendable = Appendable {
    rank: 3,
    one: "INSERT INTO quarantine (mail_id, reason, detail, created_at, id) VALUES (?1, ?2, ?3, ?4, ?5)",
    many: "INSERT INTO quarantine (mail_id, reason, detail, created_at, id)
         SELECT * FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::bigint[])",
    key: &[],
};

/// A raw mail's bytes in its row (PostgreSQL).
static RAW: Appendable = Appendable {
    rank: 1,
    one: "INSERT INTO raw_mails (sha256, size, data, pack, pack_offset, pack_length)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sha256) DO NOTHING",
    many: "INSERT INTO raw_mails (sha256, size, data, pack, pack_offset, pack_length)
         SELECT * FROM unnest(?1::text[], ?2::bigint[], ?3::bytea[], ?4::text[], ?5::bigint[], ?6::bigint[])
         ON CONFLICT (sha256) DO NOTHING",
    key: &[0],
};

pub fn insert_mail(db: Db<'_>, m: &NewMail<'_>, recorded: Recorded<'_>, now: &str) -> DbResult<i64> {
    db.insert_with_id(
        "mails",
        &MAIL,
        vals![
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
            recorded.reason,
            m.node
        ],
    )
}

/// Records a new outcome on a journal row (a quarantined mail released).
pub fn set_outcome(db: Db<'_>, id: i64, recorded: Recorded<'_>) -> DbResult<()> {
    db.defer(
        "UPDATE mails SET outcome = ?2, case_id = ?3, reason = ?4 WHERE id = ?1",
        vals![id, recorded.outcome.as_str(), recorded.case, recorded.reason],
    )?;
    Ok(())
}

/// Appends to the audit log.
pub fn audit(
    db: Db<'_>,
    mail: Option<i64>,
    case: Option<CaseId>,
    actor: Option<&str>,
    action: &str,
    detail: Option<&str>,
    now: &str,
) -> DbResult<()> {
    db.defer_row(&AUDIT, vals![now, mail, case, actor, action, detail])
}

pub fn quarantine(db: Db<'_>, mail: i64, reason: &str, detail: Option<&str>, now: &str) -> DbResult<i64> {
    db.insert_with_id("quarantine", &QUARANTINED, vals![mail, reason, detail, now])
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

pub fn list_quarantine(db: Db<'_>, include_released: bool) -> DbResult<Vec<QuarantineView>> {
    db.query_map(
        "SELECT q.id, q.mail_id, q.reason, q.detail, m.message_id, m.from_addr, m.subject, m.origin, r.size, q.created_at,
                q.released_at, q.released_outcome
         FROM quarantine q JOIN mails m ON m.id = q.mail_id JOIN raw_mails r ON r.sha256 = m.raw_sha256
         WHERE ?1 OR q.released_at IS NULL ORDER BY q.id",
        vals![include_released],
        |r| {
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
        },
    )
}

pub fn get_quarantine(db: Db<'_>, id: i64) -> DbResult<Option<QuarantineView>> {
    Ok(list_quarantine(db, true)?.into_iter().find(|q| q.id == id))
}

pub fn mark_released(db: Db<'_>, id: i64, outcome: Outcome, now: &str) -> DbResult<()> {
    db.execute(
        "UPDATE quarantine SET released_at = ?2, released_outcome = ?3 WHERE id = ?1",
        vals![id, now, outcome.as_str()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_mails_stored_inside_the_database_before_packs_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let mail = b"From: a@x.example\r\nSubject: old\r\n\r\nkept in the row\r\n";
        let sha = crate::digest::sha256_hex(mail);
        // As written before migration 6: the bytes in `data`, no pack.
        conn.execute(
            "INSERT INTO raw_mails (sha256, size, data) VALUES (?1, ?2, ?3)",
            rusqlite::params![sha, mail.len() as i64, pack_raw(mail)],
        )
        .unwrap();
        assert_eq!(raw(Db::Sqlite(&conn), dir.path(), &sha).unwrap().as_deref(), Some(&mail[..]));
        assert_eq!(raw(Db::Sqlite(&conn), dir.path(), &"0".repeat(64)).unwrap(), None);
    }

    #[test]
    fn the_same_content_is_staged_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        let db = Db::Sqlite(&conn);
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        let mail = b"Subject: twice\r\n\r\nsame bytes\r\n";
        let sha = crate::digest::sha256_hex(mail);
        store_raw(db, Some(&mut packs), &sha, mail.len(), &pack_raw(mail)).unwrap();
        let once = packs.mark();
        store_raw(db, Some(&mut packs), &sha, mail.len(), &pack_raw(mail)).unwrap();
        assert_eq!(packs.mark(), once, "the second copy was not staged");
        packs.flush().unwrap();
        assert_eq!(raw(db, dir.path(), &sha).unwrap().as_deref(), Some(&mail[..]));
    }
}
