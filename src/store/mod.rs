//! Storage, on SQLite (the embedded default: one file under `data_dir`) or PostgreSQL
//! (several nodes on one database): the schema ([`migrations`] for SQLite,
//! [`pg_migrations`] for PostgreSQL), cases and threads ([`cases`]), the processed-mail
//! journal, raw mails, quarantine and audit ([`mails`]), notifications waiting to be sent
//! ([`outbox`]), bounces and suppressed addresses ([`bounces`]), attachment bytes
//! ([`blobs`]: files under `data_dir`, or rows on PostgreSQL) and raw mails (in pack files
//! ([`packs`], rewritten without removed records by [`compaction`]), or rows on PostgreSQL);
//! retention, purges, erasure and cases that close themselves ([`lifecycle`]).
//!
//! All of it is synchronous: the daemon calls it from a dedicated thread (never from the
//! async runtime's workers), and the CLI calls it directly. Query functions take a
//! [`Db`] — a SQLite connection or a PostgreSQL session — so they work the same
//! on both, and inside a transaction.

pub mod apply;
pub mod blobs;
pub mod bounces;
pub mod cases;
pub mod compaction;
pub mod db;
pub mod grouping;
mod held;
pub mod lifecycle;
pub mod loops;
pub mod mails;
pub mod migrations;
pub mod nodes;
pub mod outbox;
pub mod packs;
pub mod pg_migrations;
pub mod postgres;
pub mod records;
pub mod references;
pub mod snapshot;
pub mod survey_report;
pub mod surveys;
pub mod target;
pub mod thread;
pub mod unit;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::Connection;

use crate::config::Config;
pub use blobs::{BlobSink, BlobStore};
use db::{Db, PgConn};
pub use unit::{is_conflict, is_systemic, Scope, UnitOfWork};

/// An open database, with what lives beside it on SQLite (attachment files, raw mail
/// packs). Units of work run through [`Store::write`]; queries through [`Store::db`].
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite {
        conn: Connection,
        blobs: BlobStore,
        /// Where this process appends raw mails (the ingest writer stages them per batch).
        packs: RefCell<packs::RawPacks>,
    },
    Postgres(PgSession),
}

/// Sessions kept open by the pool of each process (see [`postgres::Pool`]): the outbox
/// sender, the web pages, metrics and the periodic jobs share them.
const POOL_SIZE: usize = 8;

impl Store {
    /// Opens the database the configuration names, creating and migrating it if needed:
    /// PostgreSQL with a session of its own when `[storage] database_url` is set, else
    /// SQLite under `config.data_dir`.
    pub fn open(config: &Config) -> anyhow::Result<Store> {
        match database_url(config)? {
            Some(url) => Store::open_postgres(&url),
            None => Store::open_dir(&config.data_dir, config.fsync),
        }
    }

    /// A store for a short piece of work beside the writer (a page's action, a periodic
    /// job): on PostgreSQL a session from this process's pool, on SQLite the file opened
    /// as by [`Store::open`].
    pub fn shared(config: &Config) -> anyhow::Result<Store> {
        match database_url(config)? {
            Some(url) => Ok(Store { backend: Backend::Postgres(PgSession::Pooled(pooled(&url)?)) }),
            None => Store::open_dir(&config.data_dir, config.fsync),
        }
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
        Ok(Store { backend: Backend::Sqlite { conn, blobs, packs: RefCell::new(packs) } })
    }

    /// Opens (migrating if needed) the PostgreSQL database `url` names, on a session of
    /// its own.
    pub fn open_postgres(url: &str) -> anyhow::Result<Store> {
        let target = Arc::new(target::Target::parse(url).map_err(|e| anyhow::anyhow!("database URL: {e}"))?);
        let conn = PgConn::connect(Arc::clone(&target)).with_context(|| format!("cannot connect to {target}"))?;
        pg_migrations::migrate(Db::Postgres(&conn)).with_context(|| format!("cannot migrate database {target}"))?;
        Ok(Store { backend: Backend::Postgres(PgSession::Own(conn)) })
    }

    /// Where queries run.
    pub fn db(&self) -> Db<'_> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => Db::Sqlite(conn),
            Backend::Postgres(session) => Db::Postgres(session.conn()),
        }
    }

    /// The SQLite connection, on SQLite.
    pub fn sqlite(&self) -> Option<&Connection> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => Some(conn),
            Backend::Postgres(_) => None,
        }
    }

    /// The raw mail packs, on SQLite (PostgreSQL keeps raw mails in their rows).
    pub fn packs(&self) -> Option<&RefCell<packs::RawPacks>> {
        match &self.backend {
            Backend::Sqlite { packs, .. } => Some(packs),
            Backend::Postgres(_) => None,
        }
    }
}

/// Whether this node runs the periodic job `name` (due every `every`) this time: the job
/// runs once across the nodes sharing a database, by whichever claims its round first
/// (see [`nodes::claim_job`]). Alone, a node claims every round.
pub fn once_across_nodes(config: &Config, name: &str, every: Duration) -> anyhow::Result<bool> {
    let session = Session::open(config)?;
    let now = chrono::Utc::now();
    // A little early, so the node whose timer fires first each time finds the round due.
    let next = now + chrono::Duration::from_std(every.mul_f64(0.9))?;
    Ok(nodes::claim_job(session.db(), name, &config.storage.node, &stamp(now), &stamp(next))?)
}

/// The PostgreSQL URL of `[storage]`, if one is configured (read from where the
/// configuration says: the file, an environment variable, a file of its own).
pub fn database_url(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(secret) = &config.storage.database_url else { return Ok(None) };
    target::limit_idle_transactions(config.storage.lease);
    Ok(Some(secret.read(&config.path)?))
}

/// A session of this process's pool for `url` (made, and the database migrated, on first
/// use).
fn pooled(url: &str) -> anyhow::Result<postgres::Pooled> {
    let pool = postgres::pool(url, POOL_SIZE)?;
    let session = pool.get()?;
    pool.migrated_once(|| pg_migrations::migrate(session.db()).map(drop))
        .with_context(|| format!("cannot migrate database {}", pool.target()))?;
    Ok(session)
}

/// A way into the database for a short read or write beside the writer: a SQLite
/// connection to the existing file (never created or migrated here), or a PostgreSQL
/// session (from the pool, or of its own).
pub enum Session {
    Sqlite(Connection),
    Postgres(Box<PgSession>),
}

/// A PostgreSQL session: one of its own (the writer's, a command's), or one borrowed
/// from the pool.
pub enum PgSession {
    Own(PgConn),
    Pooled(postgres::Pooled),
}

impl PgSession {
    pub fn conn(&self) -> &PgConn {
        match self {
            PgSession::Own(conn) => conn,
            PgSession::Pooled(pooled) => pooled.conn(),
        }
    }
}

impl Session {
    /// A session to the database the configuration names, which must exist: the daemon
    /// (or `Store::open`) made and migrated it.
    pub fn open(config: &Config) -> anyhow::Result<Session> {
        match database_url(config)? {
            Some(url) => Ok(Session::Postgres(Box::new(PgSession::Pooled(pooled(&url)?)))),
            None => Ok(Session::Sqlite(connect(&config.database_path(), config.fsync)?)),
        }
    }

    pub fn db(&self) -> Db<'_> {
        match self {
            Session::Sqlite(conn) => Db::Sqlite(conn),
            Session::Postgres(session) => Db::Postgres(session.conn()),
        }
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
    /// Starts checkpointing the database of `store` in the background; on PostgreSQL,
    /// which checkpoints by itself, nothing.
    pub fn start(store: &Store) -> anyhow::Result<Checkpointer> {
        let Some(writer) = store.sqlite() else { return Ok(Checkpointer { stop: None, thread: None }) };
        let path = writer.path().map(std::path::PathBuf::from).context("database has no file path")?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
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
pub fn probe_write(db: Db<'_>) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO health_probe (id, checked_at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET checked_at = ?1",
        crate::vals![now()],
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
            let mut stmt = store.sqlite().unwrap().prepare_cached(sql).unwrap();
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
