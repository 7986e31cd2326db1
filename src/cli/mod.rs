//! The command line: argument definitions (clap), dispatch, and the mapping of errors to
//! exit codes — 0 success, 1 runtime failure, 2 usage or configuration error.
//!
//! Each command family lives in its own file and works through the library, exactly as
//! the daemon does.

mod case;
mod cases;
mod doctor;
mod ingest;
mod lifecycle;
mod migrate;
mod nodes;
mod oauth;
mod outbox;
mod progress;
mod quarantine;
mod reconcile;
mod run;
mod survey;
mod table;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// casegate — turns support mail into cases, threads replies, and notifies by mail.
#[derive(Debug, Parser)]
#[command(name = "casegate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $CASEGATE_CONFIG, else config/casegate.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: watch the configured mailboxes and Maildirs, send the outbox
    Run(run::Args),
    /// Check configuration, database, mailboxes and SMTP, and say what is wrong
    Doctor(doctor::Args),
    /// Process mail files exactly as the daemon would ('-' reads one mail from stdin)
    Ingest(ingest::Args),
    /// List and show cases
    #[command(subcommand)]
    Cases(cases::Command),
    /// Work a case as an analyst (same workflow and notifications as mail)
    #[command(subcommand)]
    Case(case::Command),
    /// Mail that could not be applied, kept with its reason
    #[command(subcommand)]
    Quarantine(quarantine::Command),
    /// Notifications: list them, or send what is due now
    #[command(subcommand)]
    Outbox(outbox::Command),
    /// Customer surveys after a case is closed
    #[command(subcommand)]
    Survey(survey::Command),
    /// OAuth2 sign-in: obtain the first refresh token of a mailbox or of the SMTP account
    #[command(subcommand)]
    Oauth(oauth::Command),
    /// Compare each mailbox's server folders with the journal (--fix repairs)
    Reconcile(reconcile::Args),
    /// Remove closed cases whole, keeping only that they existed
    Purge(lifecycle::PurgeArgs),
    /// Erase one person's personal data (their address becomes a pseudonym)
    Erase(lifecycle::EraseArgs),
    /// Rewrite the raw mail packs without the mails removed from them
    Compact(lifecycle::CompactArgs),
    /// The nodes sharing the database, the mailboxes each holds, and their lease ages
    Nodes(nodes::Args),
    /// Copy this installation's SQLite store into an empty PostgreSQL database, verified
    MigrateStore(migrate::Args),
}

impl Command {
    /// The log level that suits the command when no -v is given.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            // The daemon's log is its record of what happened to every mail.
            Command::Run(_) => "info",
            // Its progress and what it fixed are the point of running it.
            Command::Reconcile(_) => "info",
            // What they removed is logged; the log is their record.
            Command::Purge(_) | Command::Erase(_) | Command::Compact(_) | Command::MigrateStore(_) => "info",
            _ => "warn",
        }
    }
}

/// A mistake in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<UsageError>().is_some() || err.downcast_ref::<ConfigError>().is_some() {
        2
    } else {
        1
    }
}

/// Loads the configuration the command line points at. Its unknown keys are warned about
/// by [`run`], once logging is set up as the configuration says.
pub fn load_config(cli: &Cli) -> anyhow::Result<Arc<Config>> {
    let path = Config::locate(cli.config.as_deref());
    Ok(Arc::new(Config::load(&path)?))
}

/// Runs the command with the configuration [`load_config`] gave.
pub fn run(cli: Cli, config: anyhow::Result<Arc<Config>>) -> anyhow::Result<()> {
    let config = config?;
    for key in &config.unknown_keys {
        tracing::warn!(file = %config.path.display(), key = %key, "Unknown configuration key ignored (a typo?)");
    }
    match cli.command {
        Command::Run(args) => run::run(config, args),
        Command::Doctor(args) => doctor::run(config, args),
        Command::Ingest(args) => ingest::run(config, args),
        Command::Cases(cmd) => cases::run(config, cmd),
        Command::Quarantine(cmd) => quarantine::run(config, cmd),
        Command::Case(cmd) => case::run(config, cmd),
        Command::Outbox(cmd) => outbox::run(config, cmd),
        Command::Survey(cmd) => survey::run(config, cmd),
        Command::Oauth(cmd) => oauth::run(config, cmd),
        Command::Reconcile(args) => reconcile::run(config, args),
        Command::Purge(args) => lifecycle::purge(config, args),
        Command::Erase(args) => lifecycle::erase(config, args),
        Command::Compact(args) => lifecycle::compact(config, args),
        Command::Nodes(args) => nodes::run(config, args),
        Command::MigrateStore(args) => migrate::run(config, args),
    }
}

/// Parses `CASE-42`, `[CASE-42]`, `case-42` or `42` into a case number.
pub fn parse_case_id(input: &str, prefix: &str) -> Result<i64, UsageError> {
    let s = input.trim().trim_start_matches('[').trim_end_matches(']').trim();
    let digits = match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => s[prefix.len()..].trim_start_matches(['-', '#']),
        _ => s,
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| UsageError(format!("{input:?} is not a case id; write it as {prefix}-42 or 42")))
}

/// Prints JSON on stdout, one value per line.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_are_accepted_in_the_forms_people_write() {
        for s in ["CASE-42", "[CASE-42]", "case-42", "42", " CASE#42 "] {
            assert_eq!(parse_case_id(s, "CASE").unwrap(), 42, "{s}");
        }
        for s in ["CASE-", "TICKET-42", "0", "-3", "abc"] {
            assert!(parse_case_id(s, "CASE").is_err(), "{s}");
        }
    }

    #[test]
    fn usage_and_config_errors_exit_2_others_1() {
        assert_eq!(exit_code(&anyhow::Error::new(UsageError("x".into()))), 2);
        let cfg = ConfigError::Syntax { path: "c.toml".into(), message: "bad".into() };
        assert_eq!(exit_code(&anyhow::Error::new(cfg)), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), 1);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
