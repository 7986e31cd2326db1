//! SQLite storage: the schema ([`migrations`]), cases and threads ([`cases`]), the
//! processed-mail journal, raw mails, quarantine and audit ([`mails`]), notifications
//! waiting to be sent ([`outbox`]), and attachment bytes on disk ([`blobs`]).
//!
//! All of it is synchronous: the daemon calls it from a dedicated thread (never from the
//! async runtime's workers), and the CLI calls it directly. Query functions take a
//! `&rusqlite::Connection`, so they work the same inside a transaction.

pub mod blobs;
pub mod cases;
pub mod mails;
pub mod migrations;
pub mod outbox;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::Connection;

use crate::config::Config;
pub use blobs::{BlobSink, BlobStore};

/// An open database plus the blob directory beside it.
pub struct Store {
    pub conn: Connection,
    pub blobs: BlobStore,
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
        let blobs = BlobStore::open(&data_dir.join("blobs"), fsync)
            .with_context(|| format!("cannot create blob directory under {}", data_dir.display()))?;
        Ok(Store { conn, blobs })
    }
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
    conn.set_prepared_statement_cache_capacity(256);
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

/// How often the background checkpointer runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
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
        let thread = std::thread::Builder::new().name("checkpointer".into()).spawn(move || loop {
            let done =
                !matches!(stopped.recv_timeout(CHECKPOINT_EVERY), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
            // PASSIVE: copies what it can without waiting for or blocking the writer.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "Background WAL checkpoint failed; the writer will checkpoint instead");
            }
            if done {
                return;
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

/// Current time as stored: RFC 3339, UTC, milliseconds (sorts as text).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
