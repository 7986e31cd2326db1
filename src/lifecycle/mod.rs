//! The data lifecycle: how long casegate keeps what it stores, and what it removes on
//! request — above the store (whose SQL is `store::lifecycle`), the decisions and the
//! notifications.
//!
//! - [`retention`]: the `[retention]` keys, applied once a day by the daemon.
//! - [`purge`]: closed cases removed whole (`casegate purge`, and retention).
//! - [`erase`]: one person's personal data (`casegate erase`), their address replaced by
//!   a stable [`pseudonym`].
//! - [`auto_close`]: Resolved cases that close themselves after one reminder
//!   (`[workflow]`), through the same decisions, store and consequences as an `#accept`.
//! - Compaction of the raw-mail packs (`casegate compact`, and after each of the above)
//!   is `store::compaction`.
//!
//! The daemon calls [`run_due`] every minute. Each job claims its round in the database
//! first (`periodic_jobs`, through `store::nodes::claim_job`, as every periodic job of
//! the daemon): the retention runs once a day and the auto-close sweep once a minute,
//! across restarts and across the nodes sharing a database. The sweep is also safe
//! without its claim: each reminder and each closing claims its case (see [`auto_close`]).

pub mod auto_close;
pub mod erase;
pub mod pseudonym;
pub mod purge;
pub mod retention;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::lifecycle::{Bytes, Dead};
use crate::store::{self, compaction, Store};

/// How often the daemon looks whether a job is due.
pub const TICK: Duration = Duration::from_secs(60);

/// The daily retention job's name in `periodic_jobs`.
pub const RETENTION_JOB: &str = "retention";

/// The auto-close sweep's name in `periodic_jobs`.
pub const AUTO_CLOSE_JOB: &str = "auto-close";

/// How long after a run the retention is due again (a little under a day, so the node
/// whose timer fires first each day finds it due).
const RETENTION_EVERY: chrono::Duration = chrono::Duration::hours(23);

/// A failed retention run is tried again after this, not a day later.
const RETRY_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Told how far a long job is, for a progress bar or progress lines.
pub trait Progress {
    /// A new step: `what`, with `total` things to go through.
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// No progress reports (the daemon's jobs log what they did instead).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Runs the jobs that are due at `now` and configured: the auto-close sweep every
/// [`TICK`], retention once a day — each claimed, so run once however many processes call
/// this.
pub fn run_due(config: &Config, now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    // A little under a tick, so the node whose timer fires first each time finds it due.
    let sweep_every = chrono::Duration::from_std(TICK.mul_f64(0.9))?;
    if config.workflow.auto_close.is_some() && claim(config, AUTO_CLOSE_JOB, now, now + sweep_every)? {
        if let Err(e) = auto_close::run(config, now) {
            failures.push(format!("auto-close: {e:#}"));
        }
    }
    if config.retention.any() && claim(config, RETENTION_JOB, now, now + RETENTION_EVERY)? {
        if let Err(e) = retention::run(config, now, &Silent) {
            // Tried again in an hour rather than tomorrow.
            let session = store::Session::open(config)?;
            store::nodes::reschedule(session.db(), RETENTION_JOB, &store::stamp(now + RETRY_AFTER))?;
            failures.push(format!("retention: {e:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("; "))
    }
}

/// Claims this round of job `name` for this node if it is due at `now`; it is next due
/// at `next`.
fn claim(config: &Config, name: &str, now: DateTime<Utc>, next: DateTime<Utc>) -> anyhow::Result<bool> {
    let session = store::Session::open(config)?;
    Ok(store::nodes::claim_job(session.db(), name, &config.storage.node, &store::stamp(now), &store::stamp(next))?)
}

/// The store, opened for removing, with where its removed bytes are: packs and files
/// beside SQLite (whose connection then zeroes what it frees), or rows of PostgreSQL.
pub(crate) fn open_for_removal(config: &Config) -> anyhow::Result<(Store, Box<dyn Bytes>)> {
    let store = Store::open(config)?;
    let bytes: Box<dyn Bytes> = match store.sqlite() {
        Some(_) => Box::new(store::lifecycle::bytes::Files::new(&config.data_dir)),
        None => Box::new(store::lifecycle::rows::Rows),
    };
    bytes.prepare(store.db())?;
    Ok((store, bytes))
}

/// What happened to the space after a removal: packs compacted, database rewritten.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Space {
    pub compacted: Option<compaction::Compacted>,
    pub reclaimed: Option<store::lifecycle::Reclaimed>,
}

/// After a removal that committed: compacts the packs and, when `rewrite` (something was
/// removed), rewrites the database without its free pages — which holds the database's
/// write lock while it copies, so the daemon's writer waits meanwhile. Failures here leave
/// the removal done; they are reported for a later `casegate compact`.
pub(crate) fn give_back_space(
    store: &mut Store,
    bytes: &dyn Bytes,
    mode: compaction::Mode,
    rewrite: bool,
    progress: &dyn Progress,
) -> anyhow::Result<Space> {
    let (mut started, mut last) = (false, 0);
    let compacted = compaction::compact(store, mode, &mut |done, total| {
        if !started {
            progress.start("Compacting packs", total);
            started = true;
        }
        progress.advance(done.saturating_sub(last));
        last = done;
    });
    progress.finish();
    let compacted = compacted.map_err(|e| e.context("the removal is done; compacting the raw mail packs failed"))?;
    if !rewrite {
        return Ok(Space { compacted: Some(compacted), reclaimed: None });
    }
    let reclaimed =
        bytes.reclaim(store.db()).map_err(|e| e.context("the removal is done; rewriting the database failed"))?;
    Ok(Space { compacted: Some(compacted), reclaimed: Some(reclaimed) })
}

/// Makes `dead` unreadable just before the unit (on `db`) that removed it commits (or does nothing
/// for a dry run, which is rolled back).
pub(crate) fn scrub_unless(
    dry_run: bool,
    bytes: &dyn Bytes,
    db: store::db::Db<'_>,
    dead: &Dead,
) -> anyhow::Result<store::lifecycle::bytes::Scrubbed> {
    if dry_run {
        return Ok(Default::default());
    }
    bytes.scrub(db, dead)
}
