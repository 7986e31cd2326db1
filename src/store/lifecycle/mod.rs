//! The data lifecycle's storage: what retention, purges and erasures remove, and how cases
//! that close themselves are found and claimed. Every statement goes through [`Db`], in
//! the dialect both databases understand, inside the caller's unit of work.
//!
//! Removing something is two steps. The rows go in the unit of work, and what they leave
//! behind — raw-mail records in packs and attachment files nobody names any more — is
//! collected as [`Dead`]; where those bytes live is the business of one [`Bytes`]
//! implementation per installation ([`bytes::Files`]: packs and blob files beside SQLite;
//! [`rows::Rows`]: rows of PostgreSQL), which makes them unreadable before the unit
//! commits and reclaims the database's free space afterwards.
//!
//! A removed mail keeps its journal row as a tombstone (see [`remove_mails`]): the journal
//! is what recognises a mail delivered again, and without it `reconcile --fix` or a
//! re-synchronised folder would turn an old mail into a new case.

pub mod bytes;
pub mod erase;
pub mod purge;
pub mod resolved;
pub mod retention;
pub mod rows;

use std::collections::BTreeSet;

use super::db::{Db, DbResult};
use super::packs::Place;
use crate::vals;

pub use bytes::{Bytes, Reclaimed};

/// What a removal left behind for [`Bytes`]: raw-mail records and attachment files that
/// no row uses any more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dead {
    pub raw: Vec<DeadRaw>,
    /// Attachment files (by SHA-256) no attachment row names any more.
    pub blobs: BTreeSet<String>,
}

impl Dead {
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.blobs.is_empty()
    }

    pub fn extend(&mut self, other: Dead) {
        self.raw.extend(other.raw);
        self.blobs.extend(other.blobs);
    }
}

/// A raw mail whose row was emptied: where its bytes were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRaw {
    pub sha256: String,
    /// The record in a pack; `None` for a copy kept inside the database row (before
    /// packs, and on a database that keeps raw mails in rows), which emptying the row
    /// already removed.
    pub place: Option<Place>,
    /// How many bytes the row itself held (and emptying it removed).
    pub in_row: u64,
}

/// Removes mails (journal row ids): each row keeps what recognises the mail again (source
/// position, dedupe key, Message-ID, outcome) and loses its sender, subject and reason;
/// its raw copy's row is emptied and its place returned; its quarantine rows go (a mail
/// without its raw copy cannot be released). Rows removed before are left alone.
///
/// A raw copy belongs to one journal row: the dedupe key is unique and follows from the
/// bytes (their Message-ID and fingerprint), so the same bytes are never journalled twice.
pub fn remove_mails(db: Db<'_>, ids: &[i64], now: &str) -> DbResult<Vec<DeadRaw>> {
    let mut dead = Vec::new();
    for &id in ids {
        let sha: Option<String> =
            db.query_row("SELECT raw_sha256 FROM mails WHERE id = ?1 AND removed_at IS NULL", vals![id], |r| r.get(0))?;
        let Some(sha) = sha else { continue };
        db.execute(
            "UPDATE mails SET removed_at = ?2, from_addr = NULL, subject = NULL, reason = NULL WHERE id = ?1",
            vals![id, now],
        )?;
        db.execute("DELETE FROM quarantine WHERE mail_id = ?1", vals![id])?;
        let row = db.query_row(
            "SELECT pack, pack_offset, pack_length, length(data) FROM raw_mails WHERE sha256 = ?1",
            vals![&sha],
            |r| {
                let place = match (r.get::<Option<String>>(0)?, r.get::<Option<i64>>(1)?, r.get::<Option<i64>>(2)?) {
                    (Some(pack), Some(offset), Some(length)) => {
                        Some(Place { pack, offset: offset as u64, length: length as u64 })
                    }
                    _ => None,
                };
                Ok((place, r.get::<Option<i64>>(3)?.unwrap_or(0)))
            },
        )?;
        let Some((place, bytes_in_row)) = row else { continue };
        if place.is_none() && bytes_in_row == 0 {
            // Emptied already.
            continue;
        }
        let empty: &[u8] = &[];
        db.execute(
            "UPDATE raw_mails SET data = ?2, pack = NULL, pack_offset = NULL, pack_length = NULL WHERE sha256 = ?1",
            vals![&sha, empty],
        )?;
        dead.push(DeadRaw { sha256: sha, place, in_row: u64::try_from(bytes_in_row).unwrap_or(0) });
    }
    Ok(dead)
}

/// Removes the attachment rows of one thread entry; returns the files they named (whether
/// another entry still names them is decided at the end, by [`unused_blobs`]).
pub fn remove_attachments(db: Db<'_>, message: i64) -> DbResult<Vec<String>> {
    let shas = db.query_map("SELECT sha256 FROM attachments WHERE message = ?1", vals![message], |r| r.get(0))?;
    db.execute("DELETE FROM attachments WHERE message = ?1", vals![message])?;
    Ok(shas)
}

/// Of the files `candidates`, those no attachment row names any more.
pub fn unused_blobs(db: Db<'_>, candidates: impl IntoIterator<Item = String>) -> DbResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for sha in candidates {
        let used = db.query_row("SELECT 1 FROM attachments WHERE sha256 = ?1 LIMIT 1", vals![&sha], |_| Ok(()))?;
        if used.is_none() {
            out.insert(sha);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
