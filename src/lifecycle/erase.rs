//! Erasing one person's personal data (`casegate erase --address ADDR`): see
//! `store::lifecycle::erase` for what changes in the database. Around it, here:
//!
//! 1. the raw copies of all mails kept, and the rendered copies of notifications, are
//!    read and searched for the address (a mail of someone else may copy them in, or
//!    quote them); those that name them are removed too;
//! 2. one unit of work erases, and overwrites the removed records in their packs and the
//!    removed attachment files before it commits;
//! 3. the packs are compacted thoroughly (every dead byte of every pack no writer holds is
//!    overwritten) and the database is rewritten without free pages, its log emptied.
//!
//! The address itself is never logged (the log would keep it); the pseudonym is.
//! A dry run is the same work in a unit that is rolled back: it lists exactly what a real
//! run would change, and changes nothing (it makes no pseudonym key either).

use anyhow::Context as _;
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;

use super::{give_back_space, open_for_removal, pseudonym, scrub_unless, Progress, Space};
use crate::address::Address;
use crate::case::ParticipantRole;
use crate::config::Config;
use crate::store::compaction::Mode;
use crate::store::lifecycle::bytes::Scrubbed;
use crate::store::lifecycle::erase::{self as sql, Erased, Mentions};
use crate::store::lifecycle::Dead;
use crate::store::{mails, Store};

/// Rows read per page while searching.
const PAGE: usize = 500;

/// A case the person took part in, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CaseLine {
    /// `CASE-42`.
    pub case: String,
    pub roles: Vec<ParticipantRole>,
    pub entries: u64,
    /// Opened with their mail: its subject is erased too.
    pub opened: bool,
}

/// What an erasure did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    pub address: String,
    /// What the address is replaced by (`null` in a dry run before any erasure made the key).
    pub pseudonym: Option<String>,
    pub dry_run: bool,
    pub cases: Vec<CaseLine>,
    /// Other people's mails and notifications found to name them (removed too).
    pub mails_naming_them: u64,
    pub notifications_naming_them: u64,
    /// Raw copies that could not be read (damaged), so not searched.
    pub unreadable_mails: u64,
    pub erased: Erased,
    pub overwritten: Scrubbed,
    #[serde(flatten)]
    pub space: Space,
}

/// Erases `address`; see the module documentation.
pub fn erase(
    config: &Config,
    address: &Address,
    dry_run: bool,
    progress: &dyn Progress,
) -> anyhow::Result<EraseReport> {
    if pseudonym::is_pseudonym(address) {
        anyhow::bail!("{address} is the pseudonym of an address erased before");
    }
    if config.is_system_address(address) {
        anyhow::bail!("{address} is a system address of this installation, not a person's");
    }
    let key = match dry_run {
        true => pseudonym::existing_key(&config.data_dir)?,
        false => Some(pseudonym::key(&config.data_dir).with_context(|| {
            format!("cannot make the erasure key {}", config.data_dir.join(pseudonym::KEY_FILE).display())
        })?),
    };
    let shown = key.as_deref().map(|k| pseudonym::of(k, address));
    // A dry run before the first erasure still needs some pseudonym for the rolled-back
    // unit; one under a key nobody keeps.
    let pseudonym = shown.clone().unwrap_or_else(|| pseudonym::of(&rand::random::<[u8; 32]>(), address));

    let (mut store, bytes) = open_for_removal(config)?;
    let found = sql::footprint(store.db(), address)?;
    let (mentions, unreadable) = search(&store, config, address, progress)?;
    let mut report = EraseReport {
        address: address.to_string(),
        pseudonym: shown.map(|p| p.to_string()),
        dry_run,
        cases: found
            .cases
            .iter()
            .map(|c| CaseLine {
                case: config.case_token(c.case),
                roles: c.roles.clone(),
                entries: c.entries,
                opened: c.opened,
            })
            .collect(),
        mails_naming_them: mentions.mails.len() as u64,
        notifications_naming_them: mentions.notifications.len() as u64,
        unreadable_mails: unreadable,
        erased: Erased::default(),
        overwritten: Scrubbed::default(),
        space: Space::default(),
    };
    let mut erased = None;
    let mut overwritten = Scrubbed::default();
    let committed = store.write(false, |unit| {
        let scope = unit.scope();
        let mut dead = Dead::default();
        let db = scope.conn;
        let done = sql::erase(db, address, &pseudonym, &found, &mentions, scope.stamp, &mut dead)?;
        dead.blobs = crate::store::lifecycle::unused_blobs(db, std::mem::take(&mut dead.blobs))?;
        overwritten = scrub_unless(dry_run, bytes.as_ref(), db, &dead)?;
        erased = Some(done);
        Ok((!dry_run).then_some(()))
    })?;
    if committed.is_none() && !dry_run {
        anyhow::bail!("the erasure was rolled back");
    }
    report.erased = erased.unwrap_or_default();
    report.overwritten = overwritten;
    if !dry_run {
        tracing::info!(
            pseudonym = %pseudonym,
            cases = report.erased.cases,
            entries = report.erased.entries,
            mails = report.erased.mails,
            "Personal data of one person erased"
        );
        report.space = give_back_space(&mut store, bytes.as_ref(), Mode::Thorough, true, progress)?;
    }
    Ok(report)
}

/// Reads every raw mail kept and every rendered notification, and finds those that name
/// `address`; how many raw mails could not be read.
fn search(
    store: &Store,
    config: &Config,
    address: &Address,
    progress: &dyn Progress,
) -> anyhow::Result<(Mentions, u64)> {
    let pattern = needle(address);
    let db = store.db();
    let packs = config.data_dir.join(crate::store::packs::DIR);
    let mut found = Mentions::default();
    let mut unreadable = 0;
    progress.start("Searching raw mails", sql::kept_mail_count(db)?);
    let mut after = 0;
    loop {
        let page = sql::kept_mails(db, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, sha) in &page {
            match mails::raw(store.db(), &packs, sha) {
                Ok(Some(raw)) if pattern.is_match(&raw) => found.mails.push(*id),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mail = id, error = %format!("{e:#}"), "A raw mail could not be read to search it");
                    unreadable += 1;
                }
            }
        }
        progress.advance(page.len() as u64);
    }
    progress.finish();
    let mut after = 0;
    loop {
        let page = sql::rendered_notifications(db, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, payload) in &page {
            // A copy that cannot be decompressed is damaged; it goes too.
            let named = lz4_flex::decompress_size_prepended(payload).map_or(true, |mail| pattern.is_match(&mail));
            if named {
                found.notifications.push(*id);
            }
        }
    }
    Ok((found, unreadable))
}

/// Finds the address in bytes, ASCII case ignored.
fn needle(address: &Address) -> Regex {
    RegexBuilder::new(&regex::escape(address.as_str()))
        .case_insensitive(true)
        .unicode(false)
        .build()
        .expect("an escaped literal is a valid pattern")
}
