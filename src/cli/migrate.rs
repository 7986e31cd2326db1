//! `casegate migrate-store [--to URL | --to-env VAR] [--json]`: copies the SQLite store
//! under `data_dir` into an empty PostgreSQL database and verifies the copy (see
//! [`crate::migrate`]).

use std::sync::Arc;

use super::progress::Progress;
use super::{print_json, UsageError};
use crate::config::Config;
use crate::migrate;
use crate::store::postgres::is_postgres_url;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The empty PostgreSQL database to copy into (postgres://user:password@host/db);
    /// default: [storage] database_url of the configuration
    #[arg(long, value_name = "URL", conflicts_with = "to_env")]
    pub to: Option<String>,
    /// Read that URL from this environment variable (keeps the password off the command line)
    #[arg(long, value_name = "VAR")]
    pub to_env: Option<String>,
    /// Print the report as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: Arc<Config>, args: Args) -> anyhow::Result<()> {
    let url = target_url(&config, &args)?;
    let report = migrate::migrate(&config.data_dir, &url, &Progress::new())?;
    if args.json {
        return print_json(&report);
    }
    for table in &report.tables {
        println!("{:<22} {:>9} rows", table.table, table.rows);
    }
    let (raw, files) = (&report.raw_mails, &report.attachments);
    println!(
        "raw mails: {} copied ({} bytes), {} already removed; attachment files: {} ({} bytes)",
        raw.copied, raw.bytes, raw.removed, files.files, files.bytes
    );
    println!(
        "copied into {} in {:.1} s and verified: every table's rows and digest agree, every raw mail and file \
         was read back and matches its SHA-256",
        report.target, report.seconds
    );
    if config.storage.database_url.is_none() {
        println!(
            "next: set [storage] database_url (or database_url_env) in {} and start casegate run",
            config.path.display()
        );
    }
    Ok(())
}

/// Where to copy to: `--to`, `--to-env`, else the configured database.
fn target_url(config: &Config, args: &Args) -> anyhow::Result<String> {
    let url = match (&args.to, &args.to_env) {
        (Some(url), _) => url.clone(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| UsageError(format!("--to-env {var}: the environment variable {var} is not set")))?,
        (None, None) => match crate::store::database_url(config)? {
            Some(url) => url,
            None => {
                return Err(UsageError(
                    "name the PostgreSQL database to copy into: --to postgres://user@host/db, --to-env VAR, \
                     or [storage] database_url in the configuration"
                        .to_string(),
                )
                .into())
            }
        },
    };
    if !is_postgres_url(&url) {
        return Err(
            UsageError("the database to copy into must be a postgres:// (or postgresql://) URL".to_string()).into()
        );
    }
    Ok(url)
}
