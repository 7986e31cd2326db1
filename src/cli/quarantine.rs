//! `casegate quarantine list|release` — mail that could not be applied.

use std::sync::Arc;

use super::{print_json, table, UsageError};
use crate::config::Config;
use crate::ingest::Gateway;
use crate::store::mails;
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List quarantined mail with the reason
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// Include mail already released
        #[arg(long)]
        all: bool,
    },
    /// Process a quarantined mail again (e.g. after adding the sender as a watcher)
    Release {
        /// Quarantine id, as shown by `quarantine list`
        id: String,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { json, all } => {
            let store = Store::open(&config)?;
            let items = mails::list_quarantine(store.db(), all)?;
            if json {
                return print_json(&items);
            }
            if items.is_empty() {
                println!("Quarantine is empty.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|q| {
                    vec![
                        q.id.to_string(),
                        q.created_at.get(..16).unwrap_or(&q.created_at).replace('T', " "),
                        q.reason.clone(),
                        q.from.clone().unwrap_or_else(|| "-".into()),
                        q.subject.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table::render(&["ID", "SINCE (UTC)", "REASON", "FROM", "SUBJECT"], &rows, 50));
            Ok(())
        }
        Command::Release { id, json } => {
            let id: i64 = id.trim().trim_start_matches('#').parse().map_err(|_| {
                UsageError(format!("{id:?} is not a quarantine id; `casegate quarantine list` shows them"))
            })?;
            let mut gateway = Gateway::open(Arc::clone(&config))?;
            let report = gateway.release(id)?;
            let case = report.case.map(|c| config.case_token(c));
            if json {
                return print_json(&serde_json::json!({
                    "id": id, "outcome": report.outcome, "case": case, "reason": report.reason,
                }));
            }
            println!(
                "#{id}: {}{}{}",
                report.outcome,
                case.map(|c| format!(" {c}")).unwrap_or_default(),
                report.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            );
            Ok(())
        }
    }
}
