//! What the database says, read when `/metrics` or `/readyz` is asked: notifications by
//! status, the age of the oldest one waiting, quarantined mail, the database's size.
//! Read rather than counted as they happen, because other processes (a piped `casegate
//! ingest`, `outbox flush`, `quarantine release`) change them too.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{Metrics, StatusLabels};

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
    /// The database file and its write-ahead log, in bytes.
    pub size_bytes: u64,
}

impl Figures {
    /// Reads the figures through `conn` (a read transaction of its own) at `now`.
    pub fn read(conn: &Connection, db_path: &Path, now: DateTime<Utc>) -> rusqlite::Result<Figures> {
        let tx = conn.unchecked_transaction()?;
        let outbox = tx
            .prepare("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
        let oldest: Option<String> = tx.query_row(
            "SELECT min(created_at) FROM outbox WHERE status = 'queued' AND (attempts > 0 OR next_attempt_at <= ?1)",
            [crate::store::stamp(now)],
            |r| r.get(0),
        )?;
        let oldest_queued_secs = oldest
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| (now - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let quarantined =
            tx.query_row("SELECT count(*) FROM quarantine WHERE released_at IS NULL", [], |r| r.get(0))?;
        tx.finish()?;
        Ok(Figures { outbox, oldest_queued_secs, quarantined, size_bytes: size_on_disk(db_path) })
    }

    /// Opens the database of `db_path` (which must exist) and reads the figures now.
    pub fn read_from(db_path: &Path) -> anyhow::Result<Figures> {
        let conn = crate::store::connect(db_path, false)?;
        Ok(Figures::read(&conn, db_path, Utc::now())?)
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
