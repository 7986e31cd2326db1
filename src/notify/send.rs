//! The outbox sender: claims due notifications, sends them over SMTP (or writes `.eml`
//! files, for the demo), and records the outcome.
//!
//! - **SMTP** through lettre's SMTP client (`AsyncSmtpConnection`: TLS `tls` (implicit),
//!   `starttls` (required) or `none`; AUTH when `smtp.username` is set — PLAIN/LOGIN with
//!   the password, or XOAUTH2/OAUTHBEARER with an OAuth2 token (`crate::oauth::smtp`,
//!   one token shared by the pool); `smtp.ca_file` adds a CA), with connections kept open and reused across mails and steps, and
//!   [`CONCURRENCY`] mails in flight at once. The pool is ours rather than lettre's
//!   `AsyncSmtpTransport`, because lettre writes a mail's final `\r\n.\r\n` as a second
//!   small write, which Nagle's algorithm holds back until the server's delayed ACK: about
//!   40 ms per mail per connection (≈ 160 mails/s here). Our `Smtp` sends the dot-stuffed
//!   body and its terminator in one write.
//! - **Transient** failures (a 4xx answer, a refused or dropped connection, a timeout, a
//!   TLS or login problem — the installation's, not the mail's) are retried after
//!   `retry_base · 2^(attempt-1)`, capped at `retry_max`, minus up to 20 % jitter so that
//!   a backlog does not retry in lockstep; after `max_attempts` the row is failed.
//! - **Permanent** failures (a 5xx answer about the mail or its recipient) fail the row at
//!   once, with the server's answer in `last_error`.
//!
//! SQLite is only touched in `spawn_blocking` (a fresh connection per step, never held
//! across an `.await`): the runtime's worker threads stay free for the network.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use futures::StreamExt;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, SmtpConfig, Tls};
use crate::oauth::{self, Account};
use crate::store::db::{Db, DbResult, TxMode};
use crate::store::outbox::{self, Attempt, Due};

/// Mails in flight at once (and SMTP connections in the pool).
pub const CONCURRENCY: usize = 8;
/// Notifications claimed per step (their outcomes are committed as they come in).
const CHUNK: usize = 64;

/// What one [`Sender::send_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub sent: usize,
    /// Transient failures, queued again for a later attempt.
    pub deferred: usize,
    /// Permanent failures (and notifications out of attempts).
    pub failed: usize,
}

impl Summary {
    pub fn is_clean(&self) -> bool {
        self.deferred == 0 && self.failed == 0
    }
}

/// Where mail goes.
enum Transport {
    Smtp(Smtp),
    /// `outbox.file_dir`: one `<Message-ID>.eml` per notification. The name makes a
    /// resend overwrite, not duplicate.
    Files(PathBuf),
}

/// Why a send failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Retry later; the mail may be fine.
    Transient(String),
    /// The connection itself failed: retry later, and stop this round (the next mails
    /// would only fail the same way).
    Connection(String),
    /// The server refused this mail for good.
    Permanent(String),
}

/// Sends the outbox of one installation.
pub struct Sender {
    config: Arc<Config>,
    transport: Transport,
    envelope_from: lettre::Address,
}

impl Sender {
    /// Prepares the transport from `[smtp]` or `outbox.file_dir` (reading the SMTP
    /// password now). A configuration with neither is a [`ConfigError`].
    pub fn new(config: Arc<Config>) -> anyhow::Result<Sender> {
        let from: lettre::message::Mailbox = config
            .from_header()
            .parse()
            .map_err(|e| invalid(&config, "smtp.from", format!("not a usable From address: {e}")))?;
        let transport = match (&config.outbox.file_dir, &config.smtp) {
            (Some(dir), _) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create outbox.file_dir {}", dir.display()))?;
                Transport::Files(dir.clone())
            }
            (None, Some(smtp)) => Transport::Smtp(Smtp::new(&config, smtp)?),
            (None, None) => {
                return Err(invalid(
                    &config,
                    "smtp",
                    "no [smtp] section and no outbox.file_dir: there is nowhere to send notifications".into(),
                )
                .into())
            }
        };
        Ok(Sender { envelope_from: from.email, config, transport })
    }

    /// What one delivery's result makes of its row, counted in `summary`, logged;
    /// `connection_failed` is set when the server could not be reached.
    fn outcome(
        &self,
        id: i64,
        message_id: &str,
        result: Result<(), Failure>,
        attempt: u32,
        summary: &mut Summary,
        connection_failed: &mut bool,
    ) -> Attempt {
        match result {
            Ok(()) => {
                summary.sent += 1;
                tracing::info!(id, message_id = %message_id, "Notification sent");
                Attempt::Sent
            }
            Err(Failure::Permanent(error)) => {
                summary.failed += 1;
                crate::metrics::global().notification_outcome("failed");
                tracing::error!(id, message_id = %message_id, error = %error, "Notification refused for good");
                Attempt::Failed { error }
            }
            Err(Failure::Transient(error) | Failure::Connection(error)) if attempt >= self.max_attempts() => {
                summary.failed += 1;
                crate::metrics::global().notification_outcome("failed");
                let error = format!("gave up after {attempt} attempts; last: {error}");
                tracing::error!(id, message_id = %message_id, error = %error, "Notification failed");
                Attempt::Failed { error }
            }
            Err(failure) => {
                *connection_failed |= matches!(failure, Failure::Connection(_));
                let (Failure::Transient(error) | Failure::Connection(error) | Failure::Permanent(error)) = failure;
                summary.deferred += 1;
                crate::metrics::global().notification_outcome("deferred");
                let delay = retry_delay(attempt, self.config.outbox.retry_base, self.config.outbox.retry_max);
                let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
                tracing::warn!(id, message_id = %message_id, attempt, retry_in = ?delay, error = %error, "Notification deferred");
                Attempt::Retry { at: crate::store::stamp(at), error }
            }
        }
    }

    /// Sends every notification that is due now, then returns what happened. Stops early
    /// when the connection to the SMTP server fails (the rest stays due for the next
    /// call). This is the single step the daemon repeats and `outbox flush` runs once.
    pub async fn send_due(&self) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        // Outcomes are recorded a few at a time, each in a short session of its own. On
        // SQLite the last connection to close checkpoints the write-ahead log into the
        // database file: one kept open while sending (the daemon's writer holds one
        // anyway) makes each of those sessions cheap for `outbox flush` too.
        let _open = match self.config.storage.database_url {
            None => {
                let config = Arc::clone(&self.config);
                Some(tokio::task::spawn_blocking(move || crate::store::Session::open(&config)).await??)
            }
            Some(_) => None,
        };
        loop {
            let now = Utc::now();
            // The lease covers the worst case of a step: every connection timing out.
            let lease = now + chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::hours(1));
            let (now_text, lease_text) = (crate::store::stamp(now), crate::store::stamp(lease));
            let config = Arc::clone(&self.config);
            let due = with_db(&self.config, move |db| {
                let mut due = outbox::claim_due(db, &now_text, &lease_text, CHUNK)?;
                render_claimed(db, &config, &mut due)?;
                Ok(due)
            })
            .await?;
            if due.is_empty() {
                return Ok(summary);
            }
            // Outcomes are recorded as they come in, a few at a time, not when the whole
            // chunk is through: a node that dies mid-chunk leaves at most those few sent
            // and unrecorded (another node sends them again once the claim runs out).
            let mut results = futures::stream::iter(due)
                .map(|d| async move {
                    let started = std::time::Instant::now();
                    let result = self.deliver(&d).await;
                    record(&result, started.elapsed());
                    (d.id, d.message_id, result, d.attempts + 1)
                })
                .buffer_unordered(CONCURRENCY)
                .ready_chunks(CONCURRENCY);

            let mut connection_failed = false;
            // One write of outcomes at a time, beside the sending: what comes in while it
            // runs waits for the next, but [`CONCURRENCY`] outcomes at most: then sending
            // pauses until the write is through (on a busy machine a write may take longer
            // than many sends, and each outcome waiting is a mail sent and not recorded).
            let mut writing: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
            let mut waiting: Vec<(i64, Attempt)> = Vec::new();
            while let Some(done) = results.next().await {
                for (id, message_id, result, attempt) in done {
                    let outcome = self.outcome(id, &message_id, result, attempt, &mut summary, &mut connection_failed);
                    waiting.push((id, outcome));
                }
                if writing.as_ref().is_some_and(|w| !w.is_finished()) && waiting.len() < CONCURRENCY {
                    continue;
                }
                if let Some(write) = writing.take() {
                    write.await.context("the outbox recording task panicked")??;
                }
                writing = Some(tokio::spawn(record_outcomes(Arc::clone(&self.config), std::mem::take(&mut waiting))));
            }
            if let Some(write) = writing.take() {
                write.await.context("the outbox recording task panicked")??;
            }
            if !waiting.is_empty() {
                record_outcomes(Arc::clone(&self.config), waiting).await?;
            }
            if connection_failed {
                return Ok(summary);
            }
        }
    }

    /// For `doctor`: connects to the SMTP server and signs in as `send_due` would, then
    /// says goodbye. Errors are the ones a send would meet.
    pub async fn check_sign_in(&self) -> anyhow::Result<String> {
        let Transport::Smtp(smtp) = &self.transport else {
            return Ok("notifications are written as files".into());
        };
        let mut conn = smtp.checkout().await.map_err(|f| match f {
            Failure::Transient(e) | Failure::Connection(e) | Failure::Permanent(e) => anyhow::anyhow!(e),
        })?;
        let _ = tokio::time::timeout(smtp.timeout, conn.command(Quit)).await;
        let how = match &smtp.auth {
            SmtpAuth::None => "no AUTH".to_string(),
            SmtpAuth::Password(_) => "signed in with the password".to_string(),
            SmtpAuth::OAuth2 { user, tokens } => {
                format!("signed in as {user} with an OAuth2 token ({} grant)", tokens.settings().grant.name())
            }
        };
        Ok(format!(
            "connected; {}; {how}",
            match smtp.tls {
                Tls::Tls => "TLS",
                Tls::Starttls => "STARTTLS",
                Tls::None => "no encryption",
            }
        ))
    }

    /// The OAuth2 token source of `[smtp]`, when it signs in with tokens.
    pub fn token_source(&self) -> Option<&oauth::TokenSource> {
        match &self.transport {
            Transport::Smtp(Smtp { auth: SmtpAuth::OAuth2 { tokens, .. }, .. }) => Some(tokens),
            _ => None,
        }
    }

    /// Closes idle SMTP connections politely (QUIT). Call when done sending.
    pub async fn close(&self) {
        if let Transport::Smtp(smtp) = &self.transport {
            smtp.close().await;
        }
    }

    /// When the next queued notification falls due, if any.
    pub async fn next_due(&self) -> anyhow::Result<Option<chrono::DateTime<Utc>>> {
        let next = with_db(&self.config, outbox::next_due_at).await?;
        Ok(next.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc)))
    }

    fn max_attempts(&self) -> u32 {
        self.config.outbox.max_attempts
    }

    fn lease(&self) -> Duration {
        let timeout = self.config.smtp.as_ref().map_or(Duration::from_secs(30), |s| s.server.timeout);
        // Connect, greet, TLS, AUTH, MAIL, RCPT, DATA: each may take up to the timeout.
        (timeout * 8).max(Duration::from_secs(60))
    }

    /// The envelope sender of row `id`: its own return path under `[bounces] return_path`
    /// (bounces then name the row), else the From address.
    fn envelope_from_of(&self, id: i64) -> lettre::Address {
        let verp = self.config.bounces.return_path.as_ref().map(|base| crate::classify::bounce::return_path(base, id));
        verp.and_then(|a| a.parse().ok()).unwrap_or_else(|| self.envelope_from.clone())
    }

    async fn deliver(&self, due: &Due) -> Result<(), Failure> {
        let recipients: Vec<lettre::Address> = due.recipients.iter().filter_map(|r| r.parse().ok()).collect();
        if recipients.is_empty() || recipients.len() != due.recipients.len() {
            return Err(Failure::Permanent(format!("cannot send to {:?}: not a valid address", due.recipients)));
        }
        let Some(stored) = &due.payload else {
            let why =
                due.build_error.clone().unwrap_or_else(|| "the stored mail is damaged (cannot decompress it)".into());
            return Err(Failure::Permanent(why));
        };
        let payload = &self.with_files(stored).await?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(&self.envelope_from_of(due.id), &recipients, payload).await,
            Transport::Files(dir) => {
                let name: String = due
                    .message_id
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || "-._@".contains(c) { c } else { '_' })
                    .collect();
                let (dir, payload) = (dir.clone(), payload.to_vec());
                tokio::task::spawn_blocking(move || write_file(&dir, &format!("{name}.eml"), &payload))
                    .await
                    .map_err(|e| Failure::Transient(format!("writing the file failed: {e}")))?
                    .map_err(Failure::Transient)
            }
        }
    }
}

impl Sender {
    /// The stored mail with the files it carries put in (read from their blobs, on the
    /// blocking pool; see [`super::files`]).
    async fn with_files<'a>(&self, stored: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, Failure> {
        if !super::files::carries_files(stored) {
            return Ok(std::borrow::Cow::Borrowed(stored));
        }
        let (mail, config) = (stored.to_vec(), Arc::clone(&self.config));
        let expanded = tokio::task::spawn_blocking(move || {
            let session =
                crate::store::Session::open(&config).map_err(|e| super::files::FileError::Io(format!("{e:#}")))?;
            let blobs = config.data_dir.join(crate::store::blobs::DIR);
            super::files::expand(&mail, session.db(), &blobs).map(|m| m.into_owned())
        })
        .await
        .map_err(|e| Failure::Transient(format!("reading the attached files failed: {e}")))?;
        expanded.map(std::borrow::Cow::Owned).map_err(|e| match e {
            super::files::FileError::Damaged(why) => Failure::Permanent(why),
            super::files::FileError::Io(why) => Failure::Transient(why),
        })
    }
}

/// The metrics of one send: its time when it went through, the kind of error when not.
/// (Whether a failure is retried is told by `outbox_sends_total`, from the outcomes.)
fn record(result: &Result<(), Failure>, took: Duration) {
    let metrics = crate::metrics::global();
    match result {
        Ok(()) => metrics.notification_sent(took),
        Err(Failure::Transient(_)) => metrics.smtp_error("transient"),
        Err(Failure::Connection(_)) => metrics.smtp_error("connection"),
        Err(Failure::Permanent(_)) => metrics.smtp_error("permanent"),
    }
}

/// Renders the claimed notifications that are not rendered yet and stores each mail with
/// its row, so that every later attempt sends exactly these bytes. A notification that
/// cannot be built keeps no payload and carries the reason; it is then failed.
fn render_claimed(db: Db<'_>, config: &Config, due: &mut [Due]) -> DbResult<()> {
    if due.iter().all(|d| d.payload.is_some()) {
        return Ok(());
    }
    let mut renderer = match super::Renderer::new(db, config) {
        Ok(r) => r,
        Err(e) => {
            for d in due.iter_mut().filter(|d| d.payload.is_none()) {
                d.build_error = Some(e.clone());
            }
            return Ok(());
        }
    };
    let mut rendered = Vec::new();
    for (i, d) in due.iter_mut().enumerate().filter(|(_, d)| d.payload.is_none()) {
        let Some(spec) = d.spec.take() else { continue };
        let Some(to) = d.recipients.first().and_then(|r| crate::address::Address::parse(r)) else { continue };
        match renderer.render(&to, &d.message_id, &spec) {
            Ok((subject, mail)) => {
                d.subject = subject;
                d.payload = Some(mail);
                rendered.push(i);
            }
            Err(e) => d.build_error = Some(e),
        }
    }
    drop(renderer);
    if rendered.is_empty() {
        return Ok(());
    }
    // The chunk's new payloads, stored in one write transaction (reading was done first,
    // outside it, so the ingest writer is held up only for the writes).
    db.transaction(TxMode::Write, |db| {
        for i in rendered {
            if let Some(mail) = &due[i].payload {
                outbox::store_payload(db, due[i].id, &due[i].subject, mail)?;
            }
        }
        Ok(())
    })
}

/// Writes `name` into `dir` atomically (a reader never sees half a mail).
fn write_file(dir: &std::path::Path, name: &str, data: &[u8]) -> Result<(), String> {
    let (path, tmp) = (dir.join(name), dir.join(format!(".{name}.tmp")));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, data))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn invalid(config: &Config, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { path: config.path.clone(), key: key.to_string(), message }
}

/// SMTP connections to one server, opened on demand and reused while they work.
struct Smtp {
    host: String,
    port: u16,
    tls: Tls,
    params: Option<TlsParameters>,
    auth: SmtpAuth,
    timeout: Duration,
    hello: ClientId,
    /// Open connections not in use, with when they were last used. A std mutex: it is
    /// held only to push or pop, never across an `.await`.
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
}

/// How `Smtp` signs in.
enum SmtpAuth {
    /// A relay that trusts this host.
    None,
    Password(Credentials),
    /// The account's token source, shared by every connection of the pool.
    OAuth2 {
        user: String,
        tokens: Arc<oauth::TokenSource>,
    },
}

/// An idle connection older than this is checked with NOOP before it is reused (servers
/// close idle connections after a while).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(10);

impl Smtp {
    fn new(config: &Config, smtp: &SmtpConfig) -> anyhow::Result<Smtp> {
        let params = if smtp.server.tls == Tls::None {
            None
        } else {
            let mut params = TlsParameters::builder(smtp.server.host.clone());
            if let Some(ca) = &smtp.server.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| invalid(config, "smtp.ca_file", format!("cannot read {}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    invalid(config, "smtp.ca_file", format!("{} is not a PEM certificate: {e}", ca.display()))
                })?;
                params = params.add_root_certificate(cert);
            }
            Some(params.build_rustls().map_err(|e| invalid(config, "smtp.tls", format!("TLS setup failed: {e}")))?)
        };
        let auth = match oauth::Credentials::for_server(&smtp.server, &config.path, Account::smtp())? {
            oauth::Credentials::None => SmtpAuth::None,
            oauth::Credentials::Password { user, password } => SmtpAuth::Password(Credentials::new(user, password)),
            oauth::Credentials::OAuth2 { user, tokens } => SmtpAuth::OAuth2 { user, tokens },
        };
        Ok(Smtp {
            host: smtp.server.host.clone(),
            port: smtp.server.port,
            tls: smtp.server.tls,
            params,
            auth,
            timeout: smtp.server.timeout,
            hello: ClientId::default(),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Sends one mail. The connection goes back to the pool after a success; after any
    /// failure it is closed (a new one is cheap, a confused one is not).
    async fn send(&self, from: &lettre::Address, to: &[lettre::Address], payload: &[u8]) -> Result<(), Failure> {
        let mut conn = self.checkout().await?;
        // Every step may take up to the timeout; the whole mail gets a few of them.
        let result = tokio::time::timeout(self.timeout * 4, transaction(&mut conn, from, to, payload)).await;
        match result {
            Ok(Ok(())) => {
                self.idle.lock().unwrap_or_else(|e| e.into_inner()).push((conn, std::time::Instant::now()));
                Ok(())
            }
            Ok(Err(e)) => {
                conn.abort().await;
                Err(failure_of(&e))
            }
            Err(_) => {
                conn.abort().await;
                Err(Failure::Connection(format!("no answer within {:?}", self.timeout * 4)))
            }
        }
    }

    /// An open connection: an idle one that still works, or a new one. Failing to
    /// connect or log in is no verdict on the mail, whatever the server answered.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < CHECK_IDLE_AFTER || conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
        let connect = async {
            let failed = |e: SmtpError| Failure::Connection(e.to_string());
            let implicit = if self.tls == Tls::Tls { self.params.clone() } else { None };
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                implicit,
                None,
            )
            .await
            .map_err(failed)?;
            if let (Tls::Starttls, Some(params)) = (self.tls, &self.params) {
                conn.starttls(params.clone(), &self.hello).await.map_err(failed)?;
            }
            match &self.auth {
                SmtpAuth::None => {}
                SmtpAuth::Password(credentials) => {
                    conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await.map_err(failed)?;
                }
                SmtpAuth::OAuth2 { user, tokens } => {
                    oauth::smtp::sign_in(&mut conn, &self.hello, (&self.host, self.port), user, tokens)
                        .await
                        .map_err(|e| Failure::Connection(e.to_string()))?;
                }
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.timeout * 4, connect).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Connection(format!("cannot connect within {:?}", self.timeout * 4))),
        }
    }

    /// Says goodbye on every idle connection.
    async fn close(&self) {
        let idle: Vec<_> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for (mut conn, _) in idle {
            let _ = tokio::time::timeout(self.timeout, conn.command(Quit)).await;
        }
    }
}

/// One SMTP transaction: MAIL, RCPT for each recipient, DATA, then the dot-stuffed mail
/// and its terminator in a single write (see the module documentation).
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    from: &lettre::Address,
    to: &[lettre::Address],
    payload: &[u8],
) -> Result<(), SmtpError> {
    let needs_utf8 = std::iter::once(from).chain(to).any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    let params = if needs_utf8 { vec![MailParameter::SmtpUtfEight] } else { Vec::new() };
    conn.command(Mail::new(Some(from.clone()), params)).await?;
    for rcpt in to {
        conn.command(Rcpt::new(rcpt.clone(), Vec::new())).await?;
    }
    conn.command(Data).await?;
    conn.command(DotStuffed(payload)).await?;
    Ok(())
}

/// A mail as DATA carries it: lines starting with a dot get a second one (RFC 5321
/// 4.5.2), CRLF line ends, and the `.` line that ends it.
struct DotStuffed<'a>(&'a [u8]);

impl std::fmt::Display for DotStuffed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Composed mail is 7-bit (lettre encodes every part); anything else is shown lossily
        // rather than failing, and the server judges it.
        let text = String::from_utf8_lossy(self.0);
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if lines.peek().is_none() && line.is_empty() {
                break; // the final line end was already written
            }
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
            f.write_str("\r\n")?;
        }
        f.write_str(".\r\n")
    }
}

/// Sorts an SMTP error into retry-or-not. Login (530, 534, 535, 538) and TLS problems
/// are the installation's, not the mail's: retried, so fixing the config sends the mail.
fn failure_of(e: &lettre::transport::smtp::Error) -> Failure {
    let text = e.to_string();
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_permanent() {
        if ["530", "534", "535", "538"].contains(&code.as_str()) {
            Failure::Connection(text)
        } else {
            Failure::Permanent(text)
        }
    } else if e.is_transient() {
        Failure::Transient(text)
    } else if e.is_client() {
        Failure::Permanent(text)
    } else {
        Failure::Connection(text)
    }
}

/// The delay before attempt `attempt + 1`, after `attempt` failed ones: `base · 2^(attempt-1)`
/// capped at `max`, then shortened by up to 20 % at random.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    let capped = base.saturating_mul(exp).min(max);
    capped.mul_f64(1.0 - 0.2 * rand::thread_rng().gen::<f64>())
}

/// Records the outcomes of sent (or failed) notifications.
async fn record_outcomes(config: Arc<Config>, records: Vec<(i64, Attempt)>) -> anyhow::Result<()> {
    let now_text = crate::store::stamp(Utc::now());
    with_db(&config, move |db| outbox::record(db, &records, &now_text)).await
}

/// Runs `f` on the blocking pool with a database session (SQLite: a connection of its
/// own; PostgreSQL: one of the pool's).
async fn with_db<T, F>(config: &Arc<Config>, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Db<'_>) -> DbResult<T> + Send + 'static,
{
    let config = Arc::clone(config);
    tokio::task::spawn_blocking(move || {
        let session = crate::store::Session::open(&config)?;
        Ok(f(session.db())?)
    })
    .await
    .context("the database task panicked")?
}

/// The outbox sender as a long-running task: sends what is due, waits, repeats, until
/// `shutdown` is cancelled. `casegate run` spawns it beside the mailbox watchers (after
/// [`super::check_templates`]).
///
/// It wakes every `outbox.poll_interval` (rows are also written by other processes, such
/// as a piped `casegate ingest`), or earlier when a retry falls due. A step in progress
/// finishes before the worker stops, so no outcome is lost; a database error backs off
/// (1 s doubling to 64 s) instead of ending the daemon.
pub async fn run_worker(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sender = match Sender::new(Arc::clone(&config)) {
        Ok(s) => s,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() && config.smtp.is_none() => {
            tracing::warn!("Notifications stay queued: {e:#}");
            shutdown.cancelled().await;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut backoff = crate::backoff::Backoff::after_errors();
    loop {
        let wait = match sender.send_due().await {
            Ok(summary) => {
                backoff.reset();
                if summary != Summary::default() {
                    tracing::info!(
                        sent = summary.sent,
                        deferred = summary.deferred,
                        failed = summary.failed,
                        "Outbox step"
                    );
                }
                let next = sender.next_due().await.ok().flatten();
                let until_next =
                    next.and_then(|t| (t - Utc::now()).to_std().ok()).unwrap_or(config.outbox.poll_interval);
                until_next.min(config.outbox.poll_interval)
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::error!(error = format!("{e:#}"), retry_in = ?wait, "Outbox step failed");
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                sender.close().await;
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_the_base_is_capped_and_jittered_downwards() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(3600));
        for _ in 0..50 {
            let d1 = retry_delay(1, base, max);
            assert!(d1 <= base && d1 >= base.mul_f64(0.8), "{d1:?}");
            let d3 = retry_delay(3, base, max);
            assert!(d3 <= base * 4 && d3 >= (base * 4).mul_f64(0.8), "{d3:?}");
            let d20 = retry_delay(20, base, max);
            assert!(d20 <= max && d20 >= max.mul_f64(0.8), "{d20:?}");
            assert!(retry_delay(u32::MAX, base, max) <= max);
        }
    }

    #[test]
    fn data_is_dot_stuffed_with_crlf_and_ends_with_a_lone_dot() {
        let shown = DotStuffed(b"Subject: x\r\n\r\n.hidden\r\n..two\nbare lf\r\nend").to_string();
        assert_eq!(shown, "Subject: x\r\n\r\n..hidden\r\n...two\r\nbare lf\r\nend\r\n.\r\n");
        assert_eq!(DotStuffed(b"a\r\n").to_string(), "a\r\n.\r\n");
        assert_eq!(DotStuffed(b".").to_string(), "..\r\n.\r\n");
    }

    #[test]
    fn a_config_without_smtp_or_file_dir_cannot_send() {
        let config =
            Config::from_toml("system_addresses = [\"s@example.com\"]", std::path::Path::new("/x/c.toml")).unwrap();
        let err = Sender::new(Arc::new(config)).err().unwrap();
        assert!(err.downcast_ref::<ConfigError>().is_some(), "{err:#}");
        assert!(err.to_string().contains("nowhere to send"), "{err:#}");
    }
}
