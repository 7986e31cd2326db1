//! `casegate outbox list [--json] [--status S]`, `casegate outbox flush [--json]`, and the
//! addresses casegate does not mail: `casegate outbox suppressed [--json]` and
//! `casegate outbox unsuppress ADDRESS`.
//!
//! `flush` sends every notification that is due now and exits: 0 when all of them went
//! out (or nothing was due), 1 when some were deferred (the SMTP server is unreachable or
//! answered 4xx: they stay queued for a later attempt) or failed for good, so that a cron
//! job or a script notices. What happened is printed either way.

use std::sync::Arc;

use super::{print_json, table, UsageError};
use crate::address::Address;
use crate::case::AuditAction;
use crate::config::Config;
use crate::notify::{self, Sender};
use crate::store::unit::AuditRecord;
use crate::store::{bounces, Store};

/// The statuses an outbox row can have.
const STATUSES: &[&str] = &["queued", "sent", "failed", "bounced", "suppressed"];

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List notifications, oldest first: recipient, status, attempts, last error
    List {
        /// Only these: queued, sent, failed, bounced or suppressed
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Send every notification that is due now, then exit (1 if some could not be sent)
    Flush {
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the addresses not mailed for now (hard bounces, too many soft ones), and why
    Suppressed {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Mail an address again: lift its suppression (its bounces start counting afresh)
    Unsuppress {
        /// The address, e.g. jane@customer.example
        address: String,
        /// Who lifts it, for the audit log
        #[arg(long = "as", env = "CASEGATE_ANALYST", value_name = "ADDRESS")]
        actor: Option<String>,
    },
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { status, json } => list(&config, status.as_deref(), json),
        Command::Flush { json } => flush(config, json),
        Command::Suppressed { json } => suppressed(&config, json),
        Command::Unsuppress { address, actor } => unsuppress(&config, &address, actor.as_deref()),
    }
}

fn suppressed(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = Store::open(config)?;
    let rows = bounces::suppressions(store.db(), &crate::store::now())?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("No address is suppressed.");
        return Ok(());
    }
    let lines: Vec<Vec<String>> =
        rows.iter().map(|r| vec![r.address.clone(), r.since.clone(), r.until.clone(), r.reason.clone()]).collect();
    print!("{}", table::render(&["ADDRESS", "SINCE", "UNTIL", "REASON"], &lines, 80));
    Ok(())
}

fn unsuppress(config: &Config, address: &str, actor: Option<&str>) -> anyhow::Result<()> {
    let address = Address::parse(address)
        .ok_or_else(|| UsageError(format!("{address:?} is not an email address, e.g. jane@customer.example")))?;
    let actor = match actor {
        Some(a) => Some(Address::parse(a).ok_or_else(|| UsageError(format!("--as {a:?} is not an email address")))?),
        None => None,
    };
    let mut store = Store::open(config)?;
    let lifted = store.write(false, |unit| {
        let scope = unit.scope();
        let lifted = bounces::lift(scope.conn, &address, actor.as_ref().map(Address::as_str), scope.stamp)?;
        if lifted {
            let detail = format!("{address} may be mailed again");
            let actor = actor.as_ref().map(Address::as_str);
            let record = AuditRecord {
                mail: None,
                case: None,
                actor,
                action: AuditAction::SuppressionLifted,
                detail: Some(&detail),
            };
            scope.audit(&record)?;
        }
        Ok(Some(lifted))
    })?;
    if lifted == Some(true) {
        tracing::info!(address = %address, "Suppression lifted");
        println!("{address} is mailed again.");
        Ok(())
    } else {
        anyhow::bail!("{address} is not suppressed; `casegate outbox suppressed` lists the addresses that are")
    }
}

fn list(config: &Config, status: Option<&str>, json: bool) -> anyhow::Result<()> {
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(UsageError(format!("--status {s:?}: use one of {}", STATUSES.join(", "))).into());
        }
    }
    let store = Store::open(config)?;
    let rows = notify::list(store.db(), config, status)?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("The outbox is empty.");
        return Ok(());
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = match (&r.status[..], &r.last_error) {
                ("queued", Some(e)) => format!("queued, retry {} ({e})", r.next_attempt_at),
                ("failed" | "bounced" | "suppressed", Some(e)) => format!("{}: {e}", r.status),
                (s, _) => s.to_string(),
            };
            vec![
                r.id.to_string(),
                r.case.clone().unwrap_or_else(|| "-".into()),
                r.event.clone(),
                r.to.join(", "),
                r.attempts.to_string(),
                state,
            ]
        })
        .collect();
    print!("{}", table::render(&["ID", "CASE", "EVENT", "TO", "TRIES", "STATUS"], &lines, 60));
    Ok(())
}

fn flush(config: Arc<Config>, json: bool) -> anyhow::Result<()> {
    notify::check_templates(&config)?;
    // Creates and migrates the database if need be: the sender only opens sessions.
    drop(Store::open(&config)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let summary = runtime.block_on(async {
        let sender = Sender::new(Arc::clone(&config))?;
        let summary = sender.send_due().await;
        sender.close().await;
        summary
    })?;
    if json {
        print_json(&summary)?;
    } else {
        println!("sent {}, deferred {}, failed {}", summary.sent, summary.deferred, summary.failed);
    }
    if !summary.is_clean() {
        anyhow::bail!(
            "{} notification(s) deferred, {} failed; `casegate outbox list` shows why",
            summary.deferred,
            summary.failed
        );
    }
    Ok(())
}
