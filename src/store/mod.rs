//! SQLite storage: the schema ([`migrations`]), cases and threads ([`cases`]), the
//! processed-mail journal, raw mails, quarantine and audit ([`mails`]), notifications
//! waiting to be sent ([`outbox`]), bounces and suppressed addresses ([`bounces`]), attachment bytes on disk ([`blobs`]) and raw mails in
//! pack files ([`packs`], rewritten without removed records by [`compaction`]); retention,
//! purges, erasure and cases that close themselves ([`lifecycle`]).
//!
//! All of it is synchronous: the daemon calls it from a dedicated thread (never from the
//! async runtime's workers), and the CLI calls it directly. Query functions take a
//! `&rusqlite::Connection`, so they work the same inside a transaction.

pub mod apply;
pub mod blobs;
pub mod bounces;
pub mod cases;
pub mod compaction;
pub mod db;
pub mod lifecycle;
pub mod loops;
pub mod mails;
pub mod migrations;
pub mod outbox;
pub mod packs;
pub mod records;
pub mod snapshot;
pub mod survey_report;
pub mod surveys;
pub mod unit;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::Connection;

use crate::config::Config;
pub use blobs::{BlobSink, BlobStore};
pub use unit::{is_systemic, Scope, UnitOfWork};

/// An open database plus the blob directory and raw mail packs beside it.
pub struct Store {
    pub conn: Connection,
    pub blobs: BlobStore,
    /// Where this process appends raw mails (the ingest writer stages them per batch).
    pub packs: std::cell::RefCell<packs::RawPacks>,
}

impl Store {
    /// Opens (creating and migrating if needed) the database under `config.data_dir`.
    pub fn open(config: &Config) -> anyhow::Result<Store> {
        Store::open_dir(&config.data_dir, config.fsync)
    }

    pub fn open_dir(data_dir: &Path, fsync: bool) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        let db_path = data_dir.join("casegate.db");
        let mut conn =
            Connection::open(&db_path).with_context(|| format!("cannot open database {}", db_path.display()))?;
        configure(&conn, fsync).with_context(|| format!("cannot configure database {}", db_path.display()))?;
        migrations::migrate(&mut conn).with_context(|| format!("cannot migrate database {}", db_path.display()))?;
        let blobs = BlobStore::open(&data_dir.join(blobs::DIR), fsync)
            .with_context(|| format!("cannot create blob directory under {}", data_dir.display()))?;
        let packs = packs::RawPacks::open(&data_dir.join(packs::DIR), fsync)
            .with_context(|| format!("cannot create raw mail directory under {}", data_dir.display()))?;
        Ok(Store { conn, blobs, packs: std::cell::RefCell::new(packs) })
    }
}

/// The page cache of each connection, in KiB.
const PAGE_CACHE_KIB: i64 = 64 * 1024;
/// How much of the database file is read through a memory map.
const MMAP_BYTES: i64 = 256 * 1024 * 1024;

/// Opens a database that exists and is migrated (never creates one), with the store's
/// settings: for processes beside the writer, such as the survey page.
pub fn connect(db_path: &Path, fsync: bool) -> anyhow::Result<Connection> {
    use rusqlite::OpenFlags;
    let conn =
        Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("cannot open database {}", db_path.display()))?;
    configure(&conn, fsync).with_context(|| format!("cannot configure database {}", db_path.display()))?;
    Ok(conn)
}

fn configure(conn: &Connection, fsync: bool) -> rusqlite::Result<()> {
    // Another casegate process (an `ingest` beside the daemon) may hold the write lock
    // briefly; wait for it rather than fail.
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode NORMAL never corrupts and loses nothing on a process crash; only a power
    // cut can lose the last commits. FULL closes that gap at the cost of an fsync per commit.
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A batch transaction dirties a few MB (raw mails, thread text, index pages). With
    // SQLite's default 2 MB page cache it spills pages to the WAL mid-transaction and reads
    // them back; 64 MB holds a batch and the hot index pages.
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    // Pages of the database file are read through a memory map instead of a read call
    // each (~8 % of ingest time). The usual price of mmap — an I/O error on the disk shows
    // as a crash instead of an error — costs nothing here: a crash loses no mail (nothing is
    // marked processed before its commit) and the service manager restarts the daemon.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    conn.set_prepared_statement_cache_capacity(256);
    // Keep each cached statement's plan for good. Without this SQLite re-compiles a
    // statement whenever a bound value *might* change its plan — for `case_id = ?1 …
    // ORDER BY` (most of ours), a bound LIMIT, STAT4 estimates — which profiles showed
    // as a sixth of the ingest time spent re-parsing SQL. casegate never runs ANALYZE and
    // its plans do not depend on the values.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Checkpoints the WAL on a thread of its own, so the writer never waits for the copy
/// into the database file and its fsync (a PASSIVE checkpoint runs beside a writer). The
/// writer's own automatic checkpoint stays as a safety net, at a larger WAL size. Stops
/// (after a last checkpoint) when dropped.
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How soon the background checkpointer looks again after copying frames (while mail is
/// being written; a lagging checkpointer lets the WAL reach the writer's own limit) and
/// after finding nothing to copy (an idle gateway).
const CHECKPOINT_BUSY: Duration = Duration::from_millis(50);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// The writer checkpoints itself only when the WAL grows past this many pages (~40 MB).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 10_000;

impl Checkpointer {
    /// Starts checkpointing the database of `store` in the background.
    pub fn start(store: &Store) -> anyhow::Result<Checkpointer> {
        let path = store.conn.path().map(std::path::PathBuf::from).context("database has no file path")?;
        store.conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let conn =
            Connection::open(&path).with_context(|| format!("cannot open {} for checkpoints", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("checkpointer".into()).spawn(move || {
            let mut wait = CHECKPOINT_BUSY;
            let mut last = (0, 0);
            loop {
                let done = !matches!(stopped.recv_timeout(wait), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                // PASSIVE: copies what it can without waiting for or blocking the writer.
                // Answers (busy, frames in the WAL, frames copied so far); while either
                // moves, mail is being written.
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get(2)?))) {
                    Ok(now) => {
                        wait = if now != last { CHECKPOINT_BUSY } else { CHECKPOINT_IDLE };
                        last = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Background WAL checkpoint failed; the writer will checkpoint instead");
                        wait = CHECKPOINT_IDLE;
                    }
                }
                if done {
                    return;
                }
            }
        })?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A small committed write (table `health_probe`), for health checks: it fails as the
/// writes of mail would when the disk is full, the file system read-only, or another
/// process holds the database's lock for too long.
pub fn probe_write(conn: &Connection) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET checked_at = ?1",
        [now()],
    )
    .context("the database is not writable")?;
    Ok(())
}

/// A time as stored everywhere in casegate: RFC 3339, UTC, milliseconds, so that text
/// comparison orders times.
pub fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The current time as stored (see [`stamp`]).
pub fn now() -> String {
    stamp(chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_statements_are_not_recompiled_for_each_new_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        // The shapes the ingest path runs for every notification: equality on a
        // non-unique indexed column with ORDER BY, and a bound LIMIT.
        for sql in [
            "SELECT address, role FROM participants WHERE case_id = ?1 AND removed_at IS NULL ORDER BY added_at, address",
            "SELECT id, message_id FROM messages WHERE case_id = ?1 AND message_id IS NOT NULL ORDER BY id DESC LIMIT ?2",
        ] {
            let mut stmt = store.conn.prepare_cached(sql).unwrap();
            for case in 1..=5_i64 {
                let params: Vec<&dyn rusqlite::ToSql> =
                    if stmt.parameter_count() == 2 { vec![&case, &case] } else { vec![&case] };
                let rows = stmt.query_map(params.as_slice(), |_| Ok(())).unwrap().count();
                assert_eq!(rows, 0);
                stmt.clear_bindings();
            }
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "re-prepared: {sql}");
        }
    }
}
