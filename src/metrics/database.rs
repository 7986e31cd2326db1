//! What the database says, read when `/metrics` or `/readyz` is asked: notifications by
//! status, the age of the oldest one waiting, quarantined mail, the database's size.
//! Read rather than counted as they happen, because other processes (a piped `casegate
//! ingest`, `outbox flush`, `quarantine release`) change them too.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Metrics, StatusLabels};
use crate::config::Config;
use crate::store::db::{Db, DbResult, TxMode};
use crate::vals;

/// The figures of one reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Notifications by status (`queued`, `sent`, `failed`, …), every status present.
    pub outbox: Vec<(String, i64)>,
    /// Age of the oldest queued notification that is due or was tried already, in
    /// seconds; 0 when none waits. Notifications waiting for their configured delay (a
    /// survey's `delay_secs`) are not waiting on anything and do not count.
    pub oldest_queued_secs: f64,
    pub quarantined: i64,
    /// The database file and its write-ahead log (PostgreSQL: the database), in bytes.
    pub size_bytes: u64,
}

impl Figures {
    /// Reads the figures through `db` (a read transaction of its own) at `now`; the size
    /// of a SQLite database is that of the file `db_path` and its log.
    pub fn read(db: Db<'_>, db_path: &Path, now: DateTime<Utc>) -> DbResult<Figures> {
        db.transaction(TxMode::Read, |db| {
            let outbox = db.query_map(
                "SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status",
                vals![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let oldest: Option<String> = db.query_one(
                "SELECT min(created_at) FROM outbox WHERE status = 'queued' AND (attempts > 0 OR next_attempt_at <= ?1)",
                vals![crate::store::stamp(now)],
                |r| r.get(0),
            )?;
            let oldest_queued_secs = oldest
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            let quarantined =
                db.query_one("SELECT count(*) FROM quarantine WHERE released_at IS NULL", vals![], |r| r.get(0))?;
            let size_bytes = match db {
                Db::Sqlite(_) => size_on_disk(db_path),
                Db::Postgres(_) => {
                    let size: i64 =
                        db.query_one("SELECT pg_database_size(current_database())", vals![], |r| r.get(0))?;
                    u64::try_from(size).unwrap_or(0)
                }
            };
            Ok(Figures { outbox, oldest_queued_secs, quarantined, size_bytes })
        })
    }

    /// Opens the configured database (which must exist) and reads the figures now.
    pub fn read_from(config: &Config) -> anyhow::Result<Figures> {
        let session = crate::store::Session::open(config)?;
        Ok(Figures::read(session.db(), &config.database_path(), Utc::now())?)
    }

    /// Sets the gauges of `metrics` to these figures. A status no longer present (every
    /// `failed` row deleted by hand, say) reads 0 rather than its last value.
    pub fn publish(&self, metrics: &Metrics) {
        for status in ["queued", "sent", "failed"] {
            metrics.outbox_rows.get_or_create(&StatusLabels { status: status.to_string() }).set(0);
        }
        for (status, n) in &self.outbox {
            metrics.outbox_rows.get_or_create(&StatusLabels { status: status.clone() }).set(*n);
        }
        metrics.outbox_oldest_age.set(self.oldest_queued_secs);
        metrics.quarantine_rows.set(self.quarantined);
        metrics.database_size.set(i64::try_from(self.size_bytes).unwrap_or(i64::MAX));
    }
}

/// The database file and its write-ahead log (absent files count 0).
fn size_on_disk(db_path: &Path) -> u64 {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    [db_path.to_path_buf(), wal.into()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}
