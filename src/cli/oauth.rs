//! `casegate oauth authorize --mailbox NAME | --smtp` — obtains the first refresh token
//! of a delegated account (`refresh_token_file`) by signing in once in a browser.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::UsageError;
use crate::config::{Config, Grant, ServerConfig};
use crate::oauth::{authorize, token_file, Account};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Sign in once in a browser and save the refresh token of a mailbox or of [smtp]
    Authorize(AuthorizeArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("account").required(true).args(["mailbox", "smtp"])))]
pub struct AuthorizeArgs {
    /// The [[mailbox]] by its name (as `casegate doctor` lists them)
    #[arg(long, value_name = "NAME")]
    pub mailbox: Option<String>,

    /// The [smtp] account
    #[arg(long)]
    pub smtp: bool,

    /// The port on 127.0.0.1 the browser comes back to (default: any free one; the
    /// provider must allow a loopback redirect, as "Mobile and desktop" apps in Microsoft
    /// Entra and "Desktop app" clients at Google do)
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,

    /// How long to wait for the browser, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout_secs: u64,
}

pub fn run(config: Arc<Config>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Authorize(args) => authorize_account(&config, &args),
    }
}

fn authorize_account(config: &Config, args: &AuthorizeArgs) -> anyhow::Result<()> {
    let (server, account) = account(config, args)?;
    let Some(settings) = server.oauth2() else {
        return Err(UsageError(format!(
            "{} signs in with a password: set auth = \"oauth2\" and a [{}.oauth2] table first (docs/oauth2.md)",
            account.label, server.table
        ))
        .into());
    };
    let Grant::RefreshToken { file } = &settings.grant else {
        return Err(UsageError(format!(
            "{} uses the {} grant, which needs no sign-in in a browser; `casegate oauth authorize` is for \
             delegated access with {}.refresh_token_file",
            account.label,
            settings.grant.name(),
            settings.table
        ))
        .into());
    };
    token_file::check_writable(file).map_err(anyhow::Error::msg)?;
    let user = server.username.clone().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let refresh_token = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{} for the browser's answer", args.port))?;
        let show = |url: &str, redirect: &str| {
            println!("Open this address in a browser and sign in as {user}:\n\n{url}\n");
            println!(
                "Waiting for the answer at {redirect} (up to {} s; the browser must run on this machine, or \
                 forward the port, e.g. ssh -L {port}:127.0.0.1:{port})",
                args.timeout_secs,
                port = redirect.trim_end_matches('/').rsplit(':').next().unwrap_or_default()
            );
        };
        let timeout = Duration::from_secs(args.timeout_secs.max(1));
        anyhow::Ok(authorize::obtain_refresh_token(settings, &config.path, &user, &listener, timeout, show).await?)
    })?;
    token_file::write(file, &refresh_token)
        .with_context(|| format!("cannot write the refresh token to {}", file.display()))?;
    println!("Saved the refresh token of {} to {} (readable by this user only).", account.label, file.display());
    Ok(())
}

/// The account the arguments name, as configured.
fn account<'c>(config: &'c Config, args: &AuthorizeArgs) -> Result<(&'c ServerConfig, Account), UsageError> {
    if args.smtp {
        let smtp =
            config.smtp.as_ref().ok_or_else(|| UsageError(format!("{} has no [smtp] table", config.path.display())))?;
        return Ok((&smtp.server, Account::smtp()));
    }
    let name = args.mailbox.as_deref().unwrap_or_default();
    match config.mailboxes.iter().find(|m| m.name == name) {
        Some(mb) => Ok((&mb.server, Account::mailbox(&mb.name))),
        None => {
            let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
            Err(UsageError(format!(
                "no [[mailbox]] is named {name:?} in {}; the mailboxes are: {}",
                config.path.display(),
                if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
            )))
        }
    }
}
