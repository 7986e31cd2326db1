//! `casegate purge --closed-before DATE`, `casegate erase --address ADDR` and
//! `casegate compact`: the data lifecycle on request (see [`crate::lifecycle`]). Each
//! takes `--json` (one object on stdout); purge and erase take `--dry-run`, which lists
//! what would go and changes nothing.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::progress::Progress;
use super::{print_json, UsageError};
use crate::address::Address;
use crate::config::Config;
use crate::lifecycle::{erase, purge, Space};
use crate::store::compaction::{self, Mode};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Purge the cases closed (and not changed since) before this day (YYYY-MM-DD, UTC
    /// midnight) or time (RFC 3339)
    #[arg(long, value_name = "DATE")]
    pub closed_before: String,
    /// List what would be purged; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// The person's address
    #[arg(long, value_name = "ADDR")]
    pub address: String,
    /// List what would be erased; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// Also overwrite the dead bytes of packs not worth rewriting
    #[arg(long)]
    pub thorough: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `2024-01-01` (midnight UTC) or an RFC 3339 time.
fn parse_date(text: &str) -> Result<DateTime<Utc>, UsageError> {
    if let Ok(day) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        // Midnight exists on every day.
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight is a valid time").and_utc());
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| UsageError(format!("--closed-before {text:?} is not a date; write it as 2024-01-31")))
}

pub fn purge(config: Arc<Config>, args: PurgeArgs) -> anyhow::Result<()> {
    let before = parse_date(&args.closed_before)?;
    let why = format!("casegate purge --closed-before {}", args.closed_before.trim());
    let report = purge::purge(&config, before, &why, args.dry_run, &Progress::new())?;
    if args.json {
        return print_json(&report);
    }
    let verb = if args.dry_run { "would be purged" } else { "purged" };
    for case in &report.cases {
        println!("{}  opened {}  closed {}  {verb}", case.case, case.created_at, case.closed_at);
    }
    let n = &report.removed;
    println!(
        "{} cases {verb}: {} thread entries, {} attachments, {} raw mails, {} notifications, {} survey answers",
        n.cases, n.entries, n.attachments, n.mails, n.notifications, n.survey_answers
    );
    print_space(&report.space);
    Ok(())
}

pub fn erase(config: Arc<Config>, args: EraseArgs) -> anyhow::Result<()> {
    let address = Address::parse(&args.address)
        .ok_or_else(|| UsageError(format!("--address {:?} is not an email address", args.address)))?;
    let report = erase::erase(&config, &address, args.dry_run, &Progress::new())?;
    if args.json {
        return print_json(&report);
    }
    let verb = if args.dry_run { "would be erased" } else { "erased" };
    for case in &report.cases {
        let roles: Vec<String> = case.roles.iter().map(|r| r.to_string()).collect();
        let opened = if case.opened { ", opened it (subject erased too)" } else { "" };
        println!("{}  {}  {} entries{opened}", case.case, roles.join(","), case.entries);
    }
    let e = &report.erased;
    println!(
        "{address}: {} entries, {} files, {} raw mails, {} notifications, {} survey answers {verb}; {} watcher rows removed",
        e.entries, e.files, e.mails, e.notifications, e.survey_answers, e.watcher_rows
    );
    if let Some(p) = &report.pseudonym {
        println!("replaced by {p}");
    }
    if !e.kept_in_identifiers.is_empty() {
        println!("kept in identifiers (Message-IDs, journal keys): {}", e.kept_in_identifiers.join(", "));
    }
    print_space(&report.space);
    Ok(())
}

pub fn compact(config: Arc<Config>, args: CompactArgs) -> anyhow::Result<()> {
    let mut store = Store::open(&config)?;
    let mode = if args.thorough { Mode::Thorough } else { Mode::Worthwhile };
    let done = compaction::compact(&mut store, mode, &mut |_, _| {})?;
    if args.json {
        return print_json(&done);
    }
    if done.busy {
        println!("another compaction is running; nothing done");
        return Ok(());
    }
    print_compacted(&done);
    Ok(())
}

fn print_compacted(c: &compaction::Compacted) {
    println!(
        "packs: {} looked at, {} rewritten, {} deleted, {} in use; {} bytes won ({} → {})",
        c.packs, c.rewritten, c.removed, c.in_use, c.bytes_won, c.bytes_before, c.bytes_after
    );
}

fn print_space(space: &Space) {
    if let Some(c) = &space.compacted {
        print_compacted(c);
    }
    if let Some(r) = &space.reclaimed {
        println!("database: {} → {} bytes", r.database_bytes_before, r.database_bytes_after);
    }
}
