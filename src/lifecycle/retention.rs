//! The daily retention (`[retention]`): closed cases purged whole after
//! `closed_cases_days`, raw copies of mails removed after `raw_mails_days` (their thread
//! entries stay), quarantined mails nobody released removed after `quarantine_days`, and
//! the rendered copies of notifications dropped after `sent_outbox_days`. Then the packs
//! are compacted and the database rewritten without the freed pages, and one audit record
//! says how much went (never what).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::purge::{purge_cases, PurgeReport};
use super::{give_back_space, open_for_removal, scrub_unless, Progress, Space};
use crate::case::AuditAction;
use crate::config::{Config, RetentionConfig};
use crate::store::compaction::Mode;
use crate::store::db::Db;
use crate::store::lifecycle::bytes::Scrubbed;
use crate::store::lifecycle::{remove_mails, retention as sql, Bytes, Dead};
use crate::store::unit::AuditRecord;
use crate::store::Store;

/// Mails removed in one unit of work.
const CHUNK: usize = 200;

/// What one retention run removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    pub purge: Option<PurgeReport>,
    /// Raw copies of old mails removed.
    pub raw_mails: u64,
    /// Quarantined mails (never released) removed.
    pub quarantined_mails: u64,
    /// Released quarantine rows forgotten.
    pub released_quarantine_rows: u64,
    /// Notifications that lost their rendered copy, and those about no case removed.
    pub notifications_cleared: u64,
    pub notifications_removed: u64,
    pub overwritten: Scrubbed,
    #[serde(flatten)]
    pub space: Space,
}

/// `now - days` of a retention key, as stored.
fn cutoff(now: DateTime<Utc>, keep: std::time::Duration) -> DateTime<Utc> {
    // Saturates at the earliest time chrono knows: "keep for ever" removes nothing.
    chrono::Duration::from_std(keep).ok().and_then(|d| now.checked_sub_signed(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Applies every `[retention]` key at `now`.
pub fn run(config: &Config, now: DateTime<Utc>, progress: &dyn Progress) -> anyhow::Result<RetentionReport> {
    let keys: &RetentionConfig = &config.retention;
    let (mut store, bytes) = open_for_removal(config)?;
    let mut report = RetentionReport::default();
    if let Some(keep) = keys.closed_cases {
        let why = format!("retention.closed_cases_days = {}", keep.as_secs() / 86_400);
        let purged = purge_cases(&mut store, bytes.as_ref(), config, cutoff(now, keep), &why, false, progress)?;
        report.overwritten += purged.overwritten;
        report.purge = Some(purged);
    }
    if let Some(keep) = keys.quarantine {
        let before = crate::store::stamp(cutoff(now, keep));
        report.quarantined_mails = remove_in_chunks(&mut store, bytes.as_ref(), &mut report.overwritten, |db| {
            sql::old_quarantine(db, &before, CHUNK)
        })?;
        report.released_quarantine_rows =
            store.write(false, |unit| Ok(Some(sql::forget_released(unit.scope().conn, &before)?)))?.unwrap_or(0);
    }
    if let Some(keep) = keys.raw_mails {
        let before = crate::store::stamp(cutoff(now, keep));
        report.raw_mails = remove_in_chunks(&mut store, bytes.as_ref(), &mut report.overwritten, |db| {
            sql::old_mails(db, &before, CHUNK)
        })?;
    }
    if let Some(keep) = keys.sent_outbox {
        let before = crate::store::stamp(cutoff(now, keep));
        let (cleared, removed) = store
            .write(false, |unit| Ok(Some(sql::clear_old_notifications(unit.scope().conn, &before)?)))?
            .unwrap_or_default();
        (report.notifications_cleared, report.notifications_removed) = (cleared, removed);
    }
    let removed = record(&mut store, &report)?;
    report.space = give_back_space(&mut store, bytes.as_ref(), Mode::Worthwhile, removed, progress)?;
    Ok(report)
}

/// Removes the mails `next` finds, a chunk per unit of work, until it finds none; how
/// many. Each chunk's dead bytes are overwritten before its unit commits.
fn remove_in_chunks(
    store: &mut Store,
    bytes: &dyn Bytes,
    overwritten: &mut Scrubbed,
    mut next: impl FnMut(Db<'_>) -> crate::store::db::DbResult<Vec<i64>>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    // Ids handed to `remove_mails` before: should one come back (a row it leaves alone),
    // the loop ends instead of finding it again for ever.
    let mut seen = std::collections::HashSet::new();
    loop {
        let removed = store.write(false, |unit| {
            let scope = unit.scope();
            let db = scope.conn;
            let ids: Vec<i64> = next(db)?.into_iter().filter(|id| seen.insert(*id)).collect();
            if ids.is_empty() {
                return Ok(Some(0));
            }
            let raw = remove_mails(db, &ids, scope.stamp)?;
            *overwritten += scrub_unless(false, bytes, db, &Dead { raw, ..Dead::default() })?;
            Ok(Some(ids.len() as u64))
        })?;
        match removed {
            Some(0) | None => return Ok(total),
            Some(n) => total += n,
        }
    }
}

/// The audit record of a run that removed something: how much of each, nothing else.
/// Whether there was anything.
fn record(store: &mut Store, r: &RetentionReport) -> anyhow::Result<bool> {
    let cases = r.purge.as_ref().map_or(0, |p| p.removed.cases);
    if cases + r.raw_mails + r.quarantined_mails + r.notifications_cleared + r.notifications_removed == 0 {
        return Ok(false);
    }
    let detail = format!(
        "{cases} closed cases purged, {} raw mails and {} quarantined mails removed, {} notification copies cleared, {} notifications removed",
        r.raw_mails, r.quarantined_mails, r.notifications_cleared, r.notifications_removed
    );
    store.write(false, |unit| {
        let record = AuditRecord {
            mail: None,
            case: None,
            actor: None,
            action: AuditAction::RetentionApplied,
            detail: Some(&detail),
        };
        unit.scope().audit(&record)?;
        Ok(Some(()))
    })?;
    tracing::info!(
        cases,
        raw_mails = r.raw_mails,
        quarantined_mails = r.quarantined_mails,
        notifications_cleared = r.notifications_cleared,
        "Retention applied"
    );
    Ok(true)
}
