//! `casegate doctor` — checks the configuration, the database, every mailbox (connect,
//! TLS, login, folder, server capabilities, and a summary of `casegate reconcile`), every
//! Maildir and the SMTP connection, and says what is wrong in words a mail administrator
//! understands. Exit 1 when something is. With `auth = "oauth2"` it first obtains a token
//! (its own line: the token endpoint's verdict), then signs in with it.

use std::sync::Arc;

use anyhow::Context as _;
use lettre::transport::smtp::client::{Certificate, Tls as SmtpTls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::config::{Config, MailboxConfig, SmtpConfig, Tls};
use crate::oauth::{Account, Credentials, TokenSource};
use crate::reconcile;
use crate::source::imap;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn line(&mut self, status: &str, what: &str, text: &str) {
        let mut lines = text.lines();
        println!("{status:<5} {what}: {}", lines.next().unwrap_or_default());
        for l in lines {
            println!("      {l}");
        }
    }
    fn ok(&mut self, what: &str, text: &str) {
        self.line("ok", what, text);
    }
    fn warn(&mut self, what: &str, text: &str) {
        self.line("warn", what, text);
    }
    fn fail(&mut self, what: &str, text: &str) {
        self.problems += 1;
        self.line("FAIL", what, text);
    }
}

pub fn run(config: Arc<Config>, _args: Args) -> anyhow::Result<()> {
    let mut r = Report::default();
    let c = &config;
    r.ok(
        "config",
        &format!(
            "{} ({} mailbox(es), {} maildir(s), {})",
            c.path.display(),
            c.mailboxes.len(),
            c.maildirs.len(),
            match (&c.smtp, &c.outbox.file_dir) {
                (Some(s), _) => format!("SMTP {}:{}", s.server.host, s.server.port),
                (None, Some(d)) => format!("outbox written to {}", d.display()),
                (None, None) => "no SMTP".to_string(),
            }
        ),
    );
    for key in &c.unknown_keys {
        r.warn("config", &format!("unknown key `{key}` is ignored (a typo?)"));
    }
    if let Some(why) = c.forgeable_powers() {
        r.warn("config", &why);
    }

    match database(c) {
        Ok(text) => r.ok("database", &text),
        Err(e) => r.fail("database", &format!("{e:#}")),
    }
    if c.storage.database_url.is_some() {
        match leases(c) {
            Ok((text, None)) => r.ok("nodes", &text),
            Ok((text, Some(problem))) => r.warn("nodes", &format!("{text}; {problem}")),
            Err(e) => r.fail("nodes", &format!("{e:#}")),
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for mb in &c.mailboxes {
        let what = format!("mailbox {} ({} at {}:{})", mb.name, mb.username(), mb.server.host, mb.server.port);
        match Credentials::for_server(&mb.server, &c.path, Account::mailbox(&mb.name)) {
            Err(e) if mb.server.oauth2().is_some() => r.fail(&what, &format!("cannot sign in: {e}")),
            Err(e) => r.fail(&what, &format!("no password: {e}")),
            Ok(credentials) => {
                match &credentials {
                    Credentials::OAuth2 { tokens, .. } if !oauth_token(&mut r, &runtime, &what, tokens) => continue,
                    _ => {}
                }
                match runtime.block_on(imap::check(mb, &credentials)) {
                    Ok(text) => {
                        r.ok(&what, &text);
                        reconcile_summary(&mut r, c, &runtime, mb, &credentials);
                    }
                    Err(e) => r.fail(&what, &format!("{e:#}")),
                }
            }
        }
    }
    for md in &c.maildirs {
        let what = format!("maildir {}", md.name);
        let path = &md.path;
        if !path.exists() {
            match &md.seed_from {
                Some(seed) if seed.is_dir() => r.ok(
                    &what,
                    &format!("{} will be created at start and seeded from {}", path.display(), seed.display()),
                ),
                Some(seed) => r.fail(&what, &format!("seed_from {} does not exist", seed.display())),
                None => r.ok(&what, &format!("{} will be created at start", path.display())),
            }
        } else if crate::source::maildir::missing_maildir_folder(path).is_none() {
            // Counted as `run` will read them (files, no dot files).
            let waiting = crate::source::maildir::list_new(&path.join("new")).map_or(0, |n| n.len());
            r.ok(&what, &format!("{} is a Maildir; {waiting} mail(s) waiting in new/", path.display()));
        } else {
            r.fail(&what, &format!("{} exists but is not a Maildir (it needs new/, cur/ and tmp/)", path.display()));
        }
    }

    match (&c.smtp, &c.outbox.file_dir) {
        (Some(smtp), None) if smtp.server.oauth2().is_some() => smtp_oauth_check(&mut r, &runtime, &config, smtp),
        (Some(smtp), _) => match runtime.block_on(smtp_check(c, smtp)) {
            Ok(text) => r.ok(&format!("smtp {}:{}", smtp.server.host, smtp.server.port), &text),
            Err(e) => r.fail(&format!("smtp {}:{}", smtp.server.host, smtp.server.port), &format!("{e:#}")),
        },
        (None, Some(dir)) => r.ok("outbox", &format!("notifications are written as files into {}", dir.display())),
        (None, None) => r.warn("smtp", "no [smtp] section: notifications stay queued until one is configured"),
    }

    if r.problems > 0 {
        anyhow::bail!("{} problem(s) found; see above", r.problems);
    }
    println!("all checks passed");
    Ok(())
}

/// For an OAuth2 account: obtains a token and reports the token endpoint's verdict on a
/// line of its own. Whether signing in is worth trying.
fn oauth_token(r: &mut Report, runtime: &tokio::runtime::Runtime, what: &str, tokens: &TokenSource) -> bool {
    let settings = tokens.settings();
    match runtime.block_on(tokens.token()) {
        Ok(token) => {
            r.ok(
                &format!("{what} token"),
                &format!(
                    "{} ({}) issued a token by the {} grant, valid for {} s",
                    settings.token_url,
                    settings.provider.name(),
                    settings.grant.name(),
                    token.expires_in.as_secs()
                ),
            );
            true
        }
        Err(e) => {
            r.fail(what, &format!("no OAuth2 token: {e}"));
            false
        }
    }
}

/// `[smtp]` with OAuth2: a token, then connecting and signing in as the outbox does.
fn smtp_oauth_check(r: &mut Report, runtime: &tokio::runtime::Runtime, config: &Arc<Config>, smtp: &SmtpConfig) {
    let what = format!("smtp {}:{}", smtp.server.host, smtp.server.port);
    let sender = match crate::notify::Sender::new(Arc::clone(config)) {
        Ok(sender) => sender,
        Err(e) => return r.fail(&what, &format!("cannot sign in: {e:#}")),
    };
    if let Some(tokens) = sender.token_source() {
        if !oauth_token(r, runtime, &what, tokens) {
            return;
        }
    }
    match runtime.block_on(sender.check_sign_in()) {
        Ok(text) => r.ok(&what, &text),
        Err(e) => r.fail(&what, &format!("{e:#}")),
    }
}

/// What `casegate reconcile` would report for the mailbox, in counts (a warning when the
/// folders and the journal disagree).
fn reconcile_summary(
    r: &mut Report,
    c: &Arc<Config>,
    runtime: &tokio::runtime::Runtime,
    mb: &MailboxConfig,
    credentials: &Credentials,
) {
    let what = format!("reconcile {}", mb.name);
    // A database that cannot be opened was reported above already.
    let Ok(_store) = Store::open(c) else { return };
    let progress = super::progress::Progress::new();
    let ctx = reconcile::Context { config: c, writer: None, progress: &progress };
    match runtime.block_on(reconcile::mailbox(&ctx, mb, credentials)) {
        Ok(report) => {
            let text = super::reconcile::summary(&report).join("\n");
            if report.problems() == 0 {
                r.ok(&what, &text);
            } else {
                let hint = format!("hint: `casegate reconcile --mailbox {}` lists them; --fix repairs", mb.name);
                r.warn(&what, &format!("{text}\n{hint}"));
            }
        }
        Err(e) => r.warn(&what, &format!("cannot compare the folders with the journal: {e:#}")),
    }
}

fn database(c: &Config) -> anyhow::Result<String> {
    let store = Store::open(c)?;
    let db = store.db();
    let count = |sql: &str| -> anyhow::Result<i64> { Ok(db.query_one(sql, crate::vals![], |r| r.get(0))?) };
    let (place, version) = match db {
        crate::store::db::Db::Sqlite(_) => (c.database_path().display().to_string(), count("PRAGMA user_version")?),
        crate::store::db::Db::Postgres(conn) => {
            let version = crate::store::pg_migrations::version(db)?;
            (format!("PostgreSQL {}", conn.target()), i64::try_from(version).unwrap_or(i64::MAX))
        }
    };
    Ok(format!(
        "{place} (schema {version}; {} case(s), {} mail(s), {} in quarantine, {} notification(s) queued)",
        count("SELECT count(*) FROM cases")?,
        count("SELECT count(*) FROM mails")?,
        count("SELECT count(*) FROM quarantine WHERE released_at IS NULL")?,
        count("SELECT count(*) FROM outbox WHERE status = 'queued'")?,
    ))
}

/// The nodes sharing the database and the leases of the configured mailboxes: which node
/// holds each, and which mailbox no live node works (its lease ran out and nobody took it:
/// no node runs, or they all hold their fair share).
fn leases(c: &Config) -> anyhow::Result<(String, Option<String>)> {
    use crate::store::nodes;
    let store = Store::open(c)?;
    let now = crate::store::now();
    let live = nodes::live_nodes(
        store.db(),
        &crate::store::stamp(chrono::Utc::now() - chrono::Duration::from_std(c.storage.lease)?),
    )?;
    let leases = nodes::leases(store.db())?;
    let unworked: Vec<&str> = c
        .mailboxes
        .iter()
        .map(|m| m.name.as_str())
        .filter(|name| !leases.iter().any(|l| l.mailbox == *name && l.node.is_some() && l.expires_at > now))
        .collect();
    let held: Vec<String> = leases
        .iter()
        .filter(|l| l.node.is_some() && l.expires_at > now)
        .map(|l| format!("{} by {}", l.mailbox, l.node.as_deref().unwrap_or("?")))
        .collect();
    let text = format!(
        "{live} node(s) running; {}",
        if held.is_empty() { "no mailbox held".to_string() } else { format!("held: {}", held.join(", ")) }
    );
    let problem = (!unworked.is_empty() && !c.mailboxes.is_empty())
        .then(|| format!("no running node works {} (fine while no `casegate run` is up)", unworked.join(", ")));
    Ok((text, problem))
}

/// Connect, EHLO, STARTTLS or TLS, and AUTH when configured (lettre's test_connection).
async fn smtp_check(c: &Config, smtp: &SmtpConfig) -> anyhow::Result<String> {
    let params = || -> anyhow::Result<TlsParameters> {
        let mut b = TlsParameters::builder(smtp.server.host.clone());
        if let Some(ca) = &smtp.server.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read smtp.ca_file {}", ca.display()))?;
            b = b.add_root_certificate(
                Certificate::from_pem(&pem)
                    .with_context(|| format!("smtp.ca_file {} is not a PEM certificate", ca.display()))?,
            );
        }
        Ok(b.build_rustls()?)
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.server.host.as_str())
        .port(smtp.server.port)
        .timeout(Some(smtp.server.timeout));
    builder = match smtp.server.tls {
        Tls::Tls => builder.tls(SmtpTls::Wrapper(params()?)),
        Tls::Starttls => builder.tls(SmtpTls::Required(params()?)),
        Tls::None => builder,
    };
    let mut auth = "no AUTH".to_string();
    if let (Some(user), Some(secret)) = (&smtp.server.username, smtp.server.password()) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            secret.read(&c.path)?,
        ));
        auth = format!("AUTH as {user}");
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    match transport.test_connection().await {
        Ok(true) => Ok(format!(
            "connected; {}; {auth}",
            match smtp.server.tls {
                Tls::Tls => "TLS",
                Tls::Starttls => "STARTTLS",
                Tls::None => "no encryption",
            }
        )),
        Ok(false) => anyhow::bail!("connected, but the server did not answer NOOP"),
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            let hint = if text.contains("refused") {
                "is the SMTP server running, and is the port right (587 starttls, 465 tls, 25 none)?"
            } else if e.is_permanent() && smtp.server.username.is_some() {
                "the server refused the login: wrong username or password?"
            } else if text.contains("certificate") || text.contains("InvalidCertificate") {
                "the server's certificate is not trusted; for a private CA set smtp.ca_file"
            } else if e.is_timeout() {
                "no answer in time: wrong host or port, or a firewall in between?"
            } else {
                "check host, port and tls in [smtp]"
            };
            anyhow::bail!("{text}\n  hint: {hint}")
        }
    }
}
