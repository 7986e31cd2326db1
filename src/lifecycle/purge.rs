//! Purging closed cases (`casegate purge --closed-before DATE`, and the daily retention
//! with `retention.closed_cases_days`): see `store::lifecycle::purge` for what goes and
//! the one audit record that stays.
//!
//! Cases are purged a chunk at a time, each chunk one unit of work, so the daemon's writer
//! waits for a moment at most. A dry run is the same work in units that are rolled back:
//! its counts are exactly what a real run would remove.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{give_back_space, open_for_removal, scrub_unless, Progress, Space};
use crate::config::Config;
use crate::store::compaction::Mode;
use crate::store::lifecycle::bytes::Scrubbed;
use crate::store::lifecycle::purge::{self as sql, ClosedCase, Purged};
use crate::store::lifecycle::{Bytes, Dead};
use crate::store::Store;

/// Cases purged in one unit of work.
const CHUNK: usize = 50;

/// A purged case, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct PurgedCase {
    /// `CASE-42`.
    pub case: String,
    pub created_at: String,
    pub closed_at: String,
}

/// What a purge did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub closed_before: String,
    pub dry_run: bool,
    pub cases: Vec<PurgedCase>,
    pub removed: Purged,
    pub overwritten: Scrubbed,
    #[serde(flatten)]
    pub space: Space,
}

/// Purges the cases closed (and not changed since) before `before`, then compacts the
/// packs and rewrites the database without the freed pages. `why` goes into the audit
/// record each purged case leaves.
pub fn purge(
    config: &Config,
    before: DateTime<Utc>,
    why: &str,
    dry_run: bool,
    progress: &dyn Progress,
) -> anyhow::Result<PurgeReport> {
    let (mut store, bytes) = open_for_removal(config)?;
    let mut report = purge_cases(&mut store, bytes.as_ref(), config, before, why, dry_run, progress)?;
    if !dry_run && report.removed.cases > 0 {
        report.space = give_back_space(&mut store, bytes.as_ref(), Mode::Worthwhile, true, progress)?;
    }
    Ok(report)
}

/// The purge itself, in units of [`CHUNK`] cases, on a store opened for removal; the
/// space is given back by the caller.
pub(crate) fn purge_cases(
    store: &mut Store,
    bytes: &dyn Bytes,
    config: &Config,
    before: DateTime<Utc>,
    why: &str,
    dry_run: bool,
    progress: &dyn Progress,
) -> anyhow::Result<PurgeReport> {
    let found = sql::closed_before(store.db(), &crate::store::stamp(before))?;
    let mut report = PurgeReport {
        closed_before: crate::store::stamp(before),
        dry_run,
        cases: Vec::new(),
        removed: Purged::default(),
        overwritten: Scrubbed::default(),
        space: Space::default(),
    };
    progress.start(if dry_run { "Counting cases" } else { "Purging cases" }, found.len() as u64);
    for chunk in found.chunks(CHUNK) {
        let mut done: Vec<(ClosedCase, Purged)> = Vec::new();
        let mut overwritten = Scrubbed::default();
        let committed = store.write(false, |unit| {
            let scope = unit.scope();
            let db = scope.conn;
            let mut dead = Dead::default();
            for case in chunk {
                if let Some(n) = sql::purge_case(db, case, why, scope.stamp, &mut dead)? {
                    done.push((case.clone(), n));
                }
            }
            dead.blobs = crate::store::lifecycle::unused_blobs(db, std::mem::take(&mut dead.blobs))?;
            overwritten = scrub_unless(dry_run, bytes, db, &dead)?;
            Ok((!dry_run).then_some(()))
        })?;
        if committed.is_none() && !dry_run {
            anyhow::bail!("the purge was rolled back");
        }
        for (case, n) in done {
            report.removed += n;
            report.cases.push(PurgedCase {
                case: config.case_token(case.number),
                created_at: case.created_at,
                closed_at: case.closed_at,
            });
        }
        report.overwritten += overwritten;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    if !dry_run {
        for case in &report.cases {
            tracing::info!(case = %case.case, closed_at = %case.closed_at, why, "Case purged");
        }
    }
    Ok(report)
}
