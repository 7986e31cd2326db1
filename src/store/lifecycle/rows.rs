//! Where removed bytes are on PostgreSQL: in rows. Raw mails are `raw_mails.data` and
//! attachments the `blobs` table, so every node reads everything; there are no packs and
//! no files.
//!
//! - A removed raw mail's row was emptied in the unit that removed it
//!   (`store::lifecycle::remove_mails`); a removed attachment's `blobs` row is deleted
//!   here, in the same unit, once nothing names it.
//! - Deleting or updating a row leaves its old version in the table's file until the
//!   table is rewritten: [`Bytes::reclaim`] runs `VACUUM (FULL, ANALYZE)` on casegate's
//!   tables after the commit (outside any transaction: PostgreSQL refuses `VACUUM` in
//!   one), which writes new files with the live rows only, rebuilds the indexes and
//!   TOAST tables, and drops the old files. `ANALYZE` replaces the column statistics
//!   (`pg_statistic` keeps sample values of columns, an address among them), and that
//!   catalog is rewritten too where the role may (the database's owner may; otherwise
//!   PostgreSQL skips it with a warning).
//! - `VACUUM FULL` holds each table's exclusive lock while it copies it: the daemon's
//!   writer waits meanwhile, as it does for SQLite's `VACUUM`.
//!
//! Beyond casegate's reach: the write-ahead log keeps the records of the changes until
//! the server recycles its segments, and WAL archives, replicas and backups keep what
//! they copied. See docs/data-lifecycle.md.

use anyhow::Context as _;

use super::bytes::{Bytes, Reclaimed, Scrubbed};
use super::Dead;
use crate::store::db::Db;
use crate::vals;

/// The PostgreSQL installation: raw mails and attachments as rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows;

/// Every table of casegate's schema (those an erasure may have changed are any with a
/// text column; the rest are small).
fn tables(db: Db<'_>) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = db.query_map(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
        vals![],
        |r| r.get(0),
    )?;
    // Names come from the catalog; quoted all the same.
    Ok(names.into_iter().map(|n| format!("\"{}\"", n.replace('"', "\"\""))).collect())
}

fn database_bytes(db: Db<'_>) -> anyhow::Result<u64> {
    let size: i64 = db.query_one("SELECT pg_database_size(current_database())", vals![], |r| r.get(0))?;
    Ok(u64::try_from(size).unwrap_or(0))
}

impl Bytes for Rows {
    fn prepare(&self, _: Db<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    fn scrub(&self, db: Db<'_>, dead: &Dead) -> anyhow::Result<Scrubbed> {
        let mut done = Scrubbed::default();
        for raw in dead.raw.iter().filter(|r| r.in_row > 0) {
            done.raw_records += 1;
            done.raw_bytes += raw.in_row;
        }
        if dead.blobs.is_empty() {
            return Ok(done);
        }
        // Another node may be adding an attachment that names one of these blobs right
        // now, finding the blob's row there: no new attachment row until this unit ends
        // (the lock waits for those being written to commit), and each blob is deleted
        // only if, then, none names it.
        db.batch("LOCK TABLE attachments IN SHARE MODE")
            .context("cannot hold back new attachments while unused ones are removed")?;
        for sha in &dead.blobs {
            let size: Option<i64> = db
                .query_row(
                    "DELETE FROM blobs WHERE sha256 = ?1
                     AND NOT EXISTS (SELECT 1 FROM attachments WHERE attachments.sha256 = ?1) RETURNING size",
                    vals![sha],
                    |r| r.get(0),
                )
                .with_context(|| format!("cannot remove attachment {sha} from the database"))?;
            if let Some(size) = size {
                done.files += 1;
                done.file_bytes += u64::try_from(size).unwrap_or(0);
            }
        }
        Ok(done)
    }

    fn reclaim(&self, db: Db<'_>) -> anyhow::Result<Reclaimed> {
        let before = database_bytes(db)?;
        let tables = tables(db)?;
        db.batch(&format!("VACUUM (FULL, ANALYZE) {}", tables.join(", ")))
            .context("cannot rewrite casegate's tables without their removed rows (VACUUM FULL)")?;
        db.batch("VACUUM FULL pg_catalog.pg_statistic").context("cannot rewrite the column statistics")?;
        Ok(Reclaimed {
            database_bytes_before: before,
            database_bytes_after: database_bytes(db)?,
            // The write-ahead log is the server's; see the module documentation.
            log_truncated: false,
        })
    }
}
