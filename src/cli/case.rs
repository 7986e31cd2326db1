//! `casegate case reply|note|resolve|close|open|impact|watch|unwatch ID …` — analysts
//! working a case from a terminal, through the same workflow and notifications as mail.
//!
//! The acting analyst is `--as ADDRESS` (or `$CASEGATE_ANALYST`) and must be listed under
//! `staff` or `admins`: terminal access is trusted, mail is not. `--attach FILE…` adds
//! files to a reply, note, solution or closing message; they are stored like a mail's
//! attachments and carried by the notifications that report the message.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::{parse_case_id, print_json, UsageError};
use crate::address::Address;
use crate::authorize;
use crate::case::{Impact, Outcome};
use crate::config::Config;
use crate::consequences;
use crate::decide::request::{self, Request};
use crate::decide::{CaseRef, Plan};
use crate::parse::{self, Attachment, Disposition};
use crate::store::apply::{self, Journal};
use crate::store::{cases as case_store, snapshot, Store};
use crate::workflow::Action;

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Case id, e.g. CASE-42 or 42
    id: String,
    /// The analyst acting (an address listed under staff or admins)
    #[arg(long = "as", env = "CASEGATE_ANALYST", value_name = "ADDRESS")]
    actor: String,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct WithText {
    #[command(flatten)]
    common: Common,
    /// The text; '-' reads it from stdin
    #[arg(short, long, value_name = "TEXT")]
    message: Option<String>,
    /// Files sent with it (mailed to whoever gets the message; never to customers for a note)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    attach: Vec<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Public reply: mailed to the requester, contact and watchers
    Reply(WithText),
    /// Internal note, never sent to customers
    Note(WithText),
    /// Propose a solution (the message); the customer may accept or reject it
    Resolve(WithText),
    /// Close the case (optionally with a final message)
    Close(WithText),
    /// Pick the case up, or re-open a resolved case
    Open(Common),
    /// Set the impact: high, medium or low
    Impact {
        #[command(flatten)]
        common: Common,
        level: String,
    },
    /// Add watchers
    Watch {
        #[command(flatten)]
        common: Common,
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
    },
    /// Remove watchers
    Unwatch {
        #[command(flatten)]
        common: Common,
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
    },
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    let mut files = Vec::new();
    let (common, actions, text) = match cmd {
        Command::Reply(w) => {
            let text = required_text(&w, "reply")?;
            files = attachments(&config, &w.attach)?;
            (w.common, vec![], text)
        }
        Command::Note(w) => {
            let text = required_text(&w, "note")?;
            files = attachments(&config, &w.attach)?;
            (w.common, vec![Action::Note], text)
        }
        Command::Resolve(w) => {
            let text = required_text(&w, "solution")?;
            files = attachments(&config, &w.attach)?;
            (w.common, vec![Action::Resolve], text)
        }
        Command::Close(w) => {
            let text = optional_text(&w)?;
            files = attachments(&config, &w.attach)?;
            (w.common, vec![Action::Close], text)
        }
        Command::Open(c) => (c, vec![Action::Open], String::new()),
        Command::Impact { common, level } => {
            let level: Impact = level.parse().map_err(|e| UsageError(format!("impact: {e}")))?;
            (common, vec![Action::Impact(level)], String::new())
        }
        Command::Watch { common, addresses } => {
            let list = addresses_of(&addresses)?;
            (common, list.into_iter().map(Action::Watch).collect(), String::new())
        }
        Command::Unwatch { common, addresses } => {
            let list = addresses_of(&addresses)?;
            (common, list.into_iter().map(|a| Action::Unwatch(Some(a))).collect(), String::new())
        }
    };

    let number = parse_case_id(&common.id, &config.token_prefix)?;
    let actor = Address::parse(&common.actor)
        .ok_or_else(|| UsageError(format!("--as {:?} is not an email address", common.actor)))?;
    if !config.is_staff(&actor) && !config.is_admin(&actor) {
        return Err(UsageError(format!(
            "{actor} is not listed under staff or admins in {}; analysts act under their own address",
            config.path.display()
        ))
        .into());
    }

    let mut store = Store::open(&config)?;
    let done = store.write(true, |unit| {
        let scope = unit.scope();
        let Some(case) = snapshot::case_facts_to_change(scope.conn, number)? else {
            anyhow::bail!("there is no case {}; `casegate cases list` shows the cases", config.case_token(number));
        };
        let standing = authorize::standing(&config, &actor, true, &case.participants, case.row.account.as_deref());
        let request = Request {
            actions,
            text: text.as_str().into(),
            message_id: None,
            attachments: &files,
            copied: vec![],
            channel: "cli",
        };
        let mut plan = Plan::new(Outcome::Command, Some(CaseRef::Existing(number)), None);
        if let Err(refusals) = request::plan(&mut plan, &config, &case, &actor, &standing, request) {
            let why: Vec<String> = refusals.iter().map(|(_, r)| r.to_string()).collect();
            anyhow::bail!("{}: nothing changed: {}", config.case_token(number), why.join("; "));
        }
        let applied = apply::apply(&scope, &plan, Journal::None)?;
        let events = applied.events.len();
        consequences::follow(&scope, &config, applied.events, None)?;
        Ok(Some((case.row.status, events)))
    })?;
    let (before, events) = done.context("the change was rolled back")?;
    let after = case_store::case_row(store.db(), number)?.context("the case is gone")?;
    let token = config.case_token(number);
    if common.json {
        return print_json(&serde_json::json!({
            "case": token, "status": after.status, "impact": after.impact, "events": events,
        }));
    }
    if after.status != before {
        println!("{token}: {before} → {}", after.status);
    } else {
        println!("{token}: done ({})", after.status);
    }
    Ok(())
}

fn required_text(w: &WithText, what: &str) -> anyhow::Result<String> {
    let text = optional_text(w)?;
    if text.trim().is_empty() {
        return Err(
            UsageError(format!("the {what} text is missing: pass -m TEXT, or -m - to read it from stdin")).into()
        );
    }
    Ok(text)
}

fn optional_text(w: &WithText) -> anyhow::Result<String> {
    match w.message.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(s.trim().to_string())
        }
        Some(t) => Ok(t.trim().to_string()),
        None => Ok(String::new()),
    }
}

/// The files given with `--attach`, read whole: named as on disk (made safe as mail
/// attachments' names are), typed by their extension. Together they may be as large as a
/// mail casegate accepts (`limits.max_message_bytes`).
fn attachments(config: &Config, paths: &[PathBuf]) -> anyhow::Result<Vec<Attachment>> {
    let mut out = Vec::with_capacity(paths.len());
    let mut total = 0usize;
    for (i, path) in paths.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| UsageError(format!("--attach {}: {e}", path.display())))?;
        total = total.saturating_add(data.len());
        if total > config.max_message_bytes {
            return Err(UsageError(format!(
                "the attached files are larger than limits.max_message_bytes ({} bytes) together; send large files as a link",
                config.max_message_bytes
            ))
            .into());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let content_type = name.as_deref().map_or("application/octet-stream", parse::type_for_name).to_string();
        out.push(Attachment {
            filename: parse::safe_filename(name.as_deref(), &content_type, i + 1),
            content_type,
            disposition: Disposition::Attachment,
            content_id: None,
            sha256: crate::digest::sha256_hex(&data),
            data,
        });
    }
    Ok(out)
}

fn addresses_of(list: &[String]) -> Result<Vec<Address>, UsageError> {
    list.iter().map(|s| Address::parse(s).ok_or_else(|| UsageError(format!("{s:?} is not an email address")))).collect()
}
