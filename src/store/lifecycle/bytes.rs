//! Where the bytes of removed raw mails and attachments are, and how they are made
//! unreadable: the one part of retention and erasure that depends on the installation.
//!
//! [`Files`] is the embedded installation: SQLite, raw mails in packs under `data_dir/raw`,
//! attachments as files under `data_dir/blobs`.
//!
//! - A removed raw mail's record is overwritten with zeros where it is, in its pack (even
//!   a pack a running writer still appends to: a record is complete before the row that
//!   names it commits, and appends never touch it again). Compaction later gives the
//!   space back ([`crate::store::compaction`]).
//! - A removed attachment file is overwritten with zeros, then unlinked.
//! - Both happen before the unit that removed the rows commits, under its write lock:
//!   ingest writes attachment files only inside its own unit, so no mail can start using a
//!   file between the check that nobody names it and its removal. Should the commit then
//!   fail, the rows that still name the zeroed bytes are exactly those being removed, and
//!   the next run removes them.
//! - The database's own free space: the connection that removes runs with
//!   `secure_delete = ON`, so the cells and pages it frees are zeroed at once; afterwards
//!   [`Bytes::reclaim`] runs `VACUUM` (older copies that other connections' updates left in
//!   free space are not covered by `secure_delete`; only rewriting the file is) and
//!   truncates the write-ahead log.
//!
//! What no program can promise: blocks a file system frees when a file is truncated or
//! unlinked are not overwritten, and copy-on-write file systems and SSDs may keep old
//! blocks after an overwrite. Full-disk encryption covers that layer.
//!
//! A database that keeps raw mails and attachments in its own tables (PostgreSQL: rows of
//! `raw_mails.data` and a `blobs` table) is the second implementation,
//! [`super::rows::Rows`]: emptying and deleting the rows in the unit is the whole scrub,
//! and reclaiming is a `VACUUM FULL` of casegate's tables.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::Dead;
use crate::store::db::Db;
use crate::store::{blobs, packs};
use crate::vals;

/// How the bytes of one installation are made unreadable; see the module documentation.
pub trait Bytes {
    /// Readies a connection that removes data (SQLite: `secure_delete`).
    fn prepare(&self, db: Db<'_>) -> anyhow::Result<()>;
    /// Makes what `dead` names unreadable; called inside the unit that removed the rows
    /// (on its connection `db`), just before it commits.
    fn scrub(&self, db: Db<'_>, dead: &Dead) -> anyhow::Result<Scrubbed>;
    /// After the commit: gives the database's free space back, overwritten.
    fn reclaim(&self, db: Db<'_>) -> anyhow::Result<Reclaimed>;
}

/// What [`Bytes::scrub`] overwrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Scrubbed {
    pub raw_records: u64,
    pub raw_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
}

impl std::ops::AddAssign for Scrubbed {
    fn add_assign(&mut self, o: Scrubbed) {
        self.raw_records += o.raw_records;
        self.raw_bytes += o.raw_bytes;
        self.files += o.files;
        self.file_bytes += o.file_bytes;
    }
}

/// What [`Bytes::reclaim`] did to the database file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reclaimed {
    pub database_bytes_before: u64,
    pub database_bytes_after: u64,
    /// Whether the write-ahead log was emptied (a reader of another process can hold it;
    /// its frames are then overwritten as the log is reused).
    pub log_truncated: bool,
}

/// The embedded installation: SQLite with packs and blob files under `data_dir`.
#[derive(Debug, Clone)]
pub struct Files {
    packs: PathBuf,
    blobs: PathBuf,
    database: PathBuf,
}

impl Files {
    pub fn new(data_dir: &Path) -> Files {
        Files {
            packs: data_dir.join(packs::DIR),
            blobs: data_dir.join(blobs::DIR),
            database: data_dir.join("casegate.db"),
        }
    }

    fn database_bytes(&self) -> u64 {
        fs::metadata(&self.database).map_or(0, |m| m.len())
    }
}

/// Zeros are written in pieces of this size.
const ZEROS: usize = 64 * 1024;

/// Overwrites `length` bytes at `offset` with zeros.
fn zero_range(file: &File, offset: u64, length: u64) -> io::Result<()> {
    let zeros = [0u8; ZEROS];
    let mut done = 0;
    while done < length {
        let n = (length - done).min(ZEROS as u64);
        file.write_all_at(&zeros[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}

/// Overwrites the ranges of one pack with zeros and syncs it; bytes overwritten.
pub(crate) fn zero_ranges(path: &Path, ranges: &[(u64, u64)]) -> io::Result<u64> {
    let file = OpenOptions::new().write(true).open(path)?;
    let end = file.metadata()?.len();
    let mut total = 0;
    for &(offset, length) in ranges {
        // A range past the end was never written (its unit rolled back before the pack
        // write): there is nothing to overwrite, and writing would grow the file.
        let length = length.min(end.saturating_sub(offset));
        zero_range(&file, offset, length)?;
        total += length;
    }
    // Always synced, whatever `storage.fsync` says: the point is that the bytes are gone
    // from the disk, not only from the page cache.
    file.sync_data()?;
    Ok(total)
}

/// Overwrites a file with zeros, syncs it and unlinks it; its size (`None` when there was
/// no such file).
pub(crate) fn scrub_file(path: &Path) -> io::Result<Option<u64>> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    zero_range(&file, 0, length)?;
    file.sync_data()?;
    drop(file);
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(Some(length))
}

impl Bytes for Files {
    fn prepare(&self, db: Db<'_>) -> anyhow::Result<()> {
        db.batch("PRAGMA secure_delete = ON").context("cannot switch on secure_delete")?;
        Ok(())
    }

    fn scrub(&self, _: Db<'_>, dead: &Dead) -> anyhow::Result<Scrubbed> {
        let mut by_pack: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
        for raw in dead.raw.iter() {
            if let Some(place) = &raw.place {
                by_pack.entry(place.pack.as_str()).or_default().push((place.offset, place.length));
            }
        }
        let mut done = Scrubbed::default();
        for (pack, ranges) in by_pack {
            if !packs::is_pack_name(pack) {
                anyhow::bail!("a raw mail row names {pack:?}, which is not a pack; nothing was removed");
            }
            let path = self.packs.join(pack);
            match zero_ranges(&path, &ranges) {
                Ok(bytes) => {
                    done.raw_records += ranges.len() as u64;
                    done.raw_bytes += bytes;
                }
                // Only compaction deletes packs, and only after no row names them.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(pack, "A removed raw mail's pack does not exist; nothing to overwrite there");
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot overwrite removed raw mails in {}", path.display()))
                }
            }
        }
        for sha in &dead.blobs {
            let path = blobs::path_in(&self.blobs, sha);
            let removed =
                scrub_file(&path).with_context(|| format!("cannot remove attachment file {}", path.display()))?;
            if let Some(bytes) = removed {
                done.files += 1;
                done.file_bytes += bytes;
            }
        }
        Ok(done)
    }

    fn reclaim(&self, db: Db<'_>) -> anyhow::Result<Reclaimed> {
        let before = self.database_bytes();
        // VACUUM builds the new file as a temporary database first: in memory under the
        // store's `temp_store = MEMORY`, which for a large database is too much.
        db.batch("PRAGMA temp_store = FILE; VACUUM; PRAGMA temp_store = MEMORY")
            .context("cannot rewrite the database without its free pages (VACUUM)")?;
        let busy = db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", vals![], |r| r.get::<i64>(0))
            .context("cannot empty the write-ahead log")?;
        Ok(Reclaimed {
            database_bytes_before: before,
            database_bytes_after: self.database_bytes(),
            log_truncated: busy == Some(0),
        })
    }
}
