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
//! The daemon calls [`run_due`] every minute. The daily retention is claimed in the
//! database first (`store::lifecycle::jobs`), so it runs once a day, across restarts and
//! across nodes sharing a database; the auto-close sweep runs every time and is idempotent.

pub mod auto_close;
pub mod erase;
pub mod pseudonym;
pub mod purge;
pub mod retention;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::lifecycle::{jobs, Bytes, Dead};
use crate::store::{self, compaction, Store};

/// How often the daemon looks whether a job is due.
pub const TICK: Duration = Duration::from_secs(60);

/// The daily retention job's name in `job_runs`.
pub const RETENTION_JOB: &str = "retention";

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
/// [`TICK`], retention once a day (claimed, so once however many processes call this).
pub fn run_due(config: &Config, now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    // The sweep needs no claim: it is one unit of work that finds nothing left to do once
    // another process has done it.
    if config.workflow.auto_close.is_some() {
        if let Err(e) = auto_close::run(config, now) {
            failures.push(format!("auto-close: {e:#}"));
        }
    }
    if config.retention.any() && claim(config, RETENTION_JOB, now, chrono::Duration::hours(23))? {
        if let Err(e) = retention::run(config, now, &Silent) {
            // Tried again in an hour rather than tomorrow.
            let again = store::stamp(now - chrono::Duration::hours(23) + RETRY_AFTER);
            let store = Store::open(config)?;
            jobs::set_last_run(store.db(), RETENTION_JOB, &again)?;
            failures.push(format!("retention: {e:#}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("; "))
    }
}

/// Claims job `name` if it last ran at least `every` before `now`.
fn claim(config: &Config, name: &str, now: DateTime<Utc>, every: chrono::Duration) -> anyhow::Result<bool> {
    let store = Store::open(config)?;
    Ok(jobs::claim(store.db(), name, &store::stamp(now), &store::stamp(now - every))?)
}

/// The store, opened for removing: its connection zeroes what it frees.
pub(crate) fn open_for_removal(config: &Config) -> anyhow::Result<(Store, store::lifecycle::bytes::Files)> {
    let store = Store::open(config)?;
    if store.sqlite().is_none() {
        anyhow::bail!(
            "removing data (purge, erase, retention) is not available on PostgreSQL in this version: \
             its storage keeps raw mails and files as rows, which these commands do not yet scrub; \
             remove [storage] database_url to work on the SQLite store, or wait for the next release"
        );
    }
    let bytes = store::lifecycle::bytes::Files::new(&config.data_dir);
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
    bytes: &impl Bytes,
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

/// Makes `dead` unreadable just before the unit that removed it commits (or does nothing
/// for a dry run, which is rolled back).
pub(crate) fn scrub_unless(
    dry_run: bool,
    bytes: &impl Bytes,
    dead: &Dead,
) -> anyhow::Result<store::lifecycle::bytes::Scrubbed> {
    if dry_run {
        return Ok(Default::default());
    }
    bytes.scrub(dead)
}
