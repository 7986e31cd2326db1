//! `casegate outbox list [--json] [--status S]` and `casegate outbox flush [--json]`.
//!
//! `flush` sends every notification that is due now and exits: 0 when all of them went
//! out (or nothing was due), 1 when some were deferred (the SMTP server is unreachable or
//! answered 4xx: they stay queued for a later attempt) or failed for good, so that a cron
//! job or a script notices. What happened is printed either way.

use std::sync::Arc;

use super::{print_json, table, UsageError};
use crate::config::Config;
use crate::notify::{self, Sender};
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List notifications, oldest first: recipient, status, attempts, last error
    List {
        /// Only these: queued, sent or failed
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
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { status, json } => list(&config, status.as_deref(), json),
        Command::Flush { json } => flush(config, json),
    }
}

fn list(config: &Config, status: Option<&str>, json: bool) -> anyhow::Result<()> {
    if let Some(s) = status {
        if !["queued", "sent", "failed"].contains(&s) {
            return Err(UsageError(format!("--status {s:?}: use queued, sent or failed")).into());
        }
    }
    let store = Store::open(config)?;
    let rows = notify::list(&store.conn, config, status)?;
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
                ("failed", Some(e)) => format!("failed: {e}"),
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
