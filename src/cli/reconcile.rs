//! `casegate reconcile [--fix] [--json] [--mailbox NAME]`: each mailbox's folders on the
//! server against the journal (see [`crate::reconcile`]). Exit 1 when a mailbox could not
//! be looked at; what was found is the output, not an error.

use crate::oauth::{Account, Credentials};
use std::sync::Arc;

use crate::config::Config;
use crate::reconcile::{self, Context, MailboxReport};
use crate::source::Writer;
use crate::store::Store;

use super::progress::Progress;
use super::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mark committed mail still in the watched folder; process mail in the processed
    /// folder that the journal does not know
    #[arg(long)]
    pub fix: bool,

    /// One JSON object per mailbox, one per line
    #[arg(long)]
    pub json: bool,

    /// Only this mailbox (its `name`)
    #[arg(long, value_name = "NAME")]
    pub mailbox: Option<String>,
}

pub fn run(config: Arc<Config>, args: Args) -> anyhow::Result<()> {
    let mailboxes: Vec<_> =
        config.mailboxes.iter().filter(|mb| args.mailbox.as_ref().is_none_or(|n| *n == mb.name)).collect();
    if let Some(name) = &args.mailbox {
        if mailboxes.is_empty() {
            let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
            return Err(UsageError(format!("no [[mailbox]] is named {name:?}; there are: {}", names.join(", "))).into());
        }
    }
    if mailboxes.is_empty() {
        println!("no [[mailbox]] configured: nothing to reconcile");
        return Ok(());
    }
    // Made and migrated if need be; the journal is read through sessions of its own.
    drop(Store::open(&config)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let progress = Progress::new();
    let mut failed = Vec::new();
    runtime.block_on(async {
        let writer = if args.fix { Some(Writer::start(Arc::clone(&config)).await?) } else { None };
        let ctx = Context { config: &config, writer: writer.as_ref().map(|(_, h)| h.clone()), progress: &progress };
        for mb in mailboxes {
            let credentials = Credentials::for_server(&mb.server, &config.path, Account::mailbox(&mb.name));
            let result = match credentials {
                Ok(credentials) => reconcile::mailbox(&ctx, mb, &credentials).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(report) if args.json => super::print_json(&report)?,
                Ok(report) => print_text(&report),
                Err(e) => {
                    let error = format!("{e:#}");
                    if args.json {
                        super::print_json(&serde_json::json!({ "mailbox": mb.name, "error": error }))?;
                    } else {
                        println!("mailbox {}: cannot reconcile: {error}", mb.name);
                    }
                    failed.push(mb.name.clone());
                }
            }
        }
        drop(ctx);
        if let Some((writer, handle)) = writer {
            drop(handle);
            writer.join().await;
        }
        anyhow::Ok(())
    })?;
    if !failed.is_empty() {
        anyhow::bail!("could not reconcile mailbox(es) {}; see above", failed.join(", "));
    }
    Ok(())
}

/// The report for people.
fn print_text(r: &MailboxReport) {
    let checkpoint = r.checkpoint.map_or("none".to_string(), |c| c.to_string());
    println!("mailbox {} ({}, UIDVALIDITY {}, checkpoint {checkpoint})", r.mailbox, r.folder, r.uidvalidity);
    for line in summary(r) {
        println!("  {line}");
    }
    for u in &r.unmarked {
        let done = if u.marked { "marked now" } else { "not marked (--fix marks it)" };
        println!(
            "    {} uid {}: committed ({}{}), {done}",
            r.folder,
            u.uid,
            u.outcome,
            u.case.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    if let Some(p) = &r.processed {
        for u in &p.unknown {
            let id = u.message_id.as_deref().map_or("no Message-ID".to_string(), |id| format!("<{id}>"));
            let done = match &u.ingested {
                Some(i) => format!(
                    "processed now: {}{}",
                    i.outcome,
                    i.case.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
                ),
                None => "not in the journal (--fix processes it)".into(),
            };
            println!("    {} uid {} {id}: {done}", p.folder, u.uid);
        }
    }
    let q = &r.quarantine;
    for m in &q.not_in_table {
        let id = m.message_id.as_deref().map_or("no Message-ID".to_string(), |id| format!("<{id}>"));
        println!(
            "    {} uid {} {id}: no unreleased quarantine row (released, or put there by someone)",
            q.folder, m.uid
        );
    }
    for t in &q.not_in_folder {
        println!("    quarantine #{} ({}): not in the {} folder", t.quarantine_id, t.reason, q.folder);
    }
}

/// One line per folder: what was found, in counts (also `doctor`'s summary).
pub fn summary(r: &MailboxReport) -> Vec<String> {
    let unmarked = r.unmarked.len();
    let marked = r.unmarked.iter().filter(|u| u.marked).count();
    let mut lines = vec![format!(
        "{}: {unmarked} committed but not marked{}, {} waiting to be processed",
        r.folder,
        if marked > 0 { format!(" ({marked} marked now)") } else { String::new() },
        r.waiting
    )];
    if let Some(p) = &r.processed {
        let ingested = p.unknown.iter().filter(|u| u.ingested.is_some()).count();
        lines.push(format!(
            "{}: {} mail(s), {} unknown to the journal{}",
            p.folder,
            p.checked,
            p.unknown.len(),
            if ingested > 0 { format!(" ({ingested} processed now)") } else { String::new() }
        ));
    }
    let q = &r.quarantine;
    lines.push(format!(
        "{}: {} mail(s) in the folder, {} quarantined in the database; {} only in the folder, {} only in the database",
        q.folder,
        q.in_folder,
        q.in_table,
        q.not_in_table.len(),
        q.not_in_folder.len()
    ));
    lines
}
