//! `casegate cases list|show` — what the gateway made of the mail.

use std::sync::Arc;

use super::{parse_case_id, print_json, table, UsageError};
use crate::case::Status;
use crate::config::Config;
use crate::store::cases::{self as case_store, CaseView};
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List cases, newest first
    List {
        /// Only cases with this status (New, Open, Resolved, Closed)
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show one case with its whole thread
    Show {
        /// Case id, e.g. CASE-42 or 42
        id: String,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    let store = Store::open(&config)?;
    match cmd {
        Command::List { status, json } => {
            let status =
                status.map(|s| s.parse::<Status>().map_err(|e| UsageError(format!("--status: {e}")))).transpose()?;
            let cases = case_store::list_cases(store.db(), &config.token_prefix, status)?;
            if json {
                return print_json(&cases);
            }
            if cases.is_empty() {
                println!("No cases{}.", status.map(|s| format!(" with status {s}")).unwrap_or_default());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = cases
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.status.to_string(),
                        c.impact.to_string(),
                        c.updated_at.get(..16).unwrap_or(&c.updated_at).replace('T', " "),
                        c.contact.clone().unwrap_or_default(),
                        c.subject.clone(),
                    ]
                })
                .collect();
            print!("{}", table::render(&["ID", "STATUS", "IMPACT", "UPDATED (UTC)", "CONTACT", "SUBJECT"], &rows, 60));
            Ok(())
        }
        Command::Show { id, json } => {
            let number = parse_case_id(&id, &config.token_prefix)?;
            let case = case_store::show_case(store.db(), &config.token_prefix, number)?.ok_or_else(|| {
                anyhow::anyhow!("there is no case {}; `casegate cases list` shows the cases", config.case_token(number))
            })?;
            if json {
                return print_json(&case);
            }
            print!("{}", render_case(&case));
            Ok(())
        }
    }
}

fn render_case(c: &CaseView) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    out.push_str(&format!("{}  {}\n", c.id, table::cut(&c.subject, 200)));
    out.push_str(&format!("  status:      {}\n  impact:      {}\n", c.status, c.impact));
    out.push_str(&format!("  account:     {}\n  environment: {}\n", dash(&c.account), dash(&c.environment)));
    out.push_str(&format!("  reported by: {}\n  contact:     {}\n", dash(&c.reported_by), dash(&c.contact)));
    let watchers = if c.watchers.is_empty() { "-".to_string() } else { c.watchers.join(", ") };
    out.push_str(&format!("  watchers:    {watchers}\n"));
    if let Some(l) = &c.linked_case {
        out.push_str(&format!("  follows:     {l}\n"));
    }
    out.push_str(&format!("  created:     {}\n  updated:     {}\n", c.created_at, c.updated_at));
    for m in c.messages.iter().flatten() {
        out.push_str(&format!("\n--- {} · {} · {}\n", m.created_at, m.kind, m.from.as_deref().unwrap_or("-")));
        for line in m.body.lines() {
            out.push_str(&format!("  {}\n", table::cut(line, 500)));
        }
        for a in &m.attachments {
            out.push_str(&format!(
                "  [attachment] {} ({}, {} bytes)\n",
                table::cut(&a.filename, 120),
                a.content_type,
                a.size
            ));
        }
    }
    out
}
