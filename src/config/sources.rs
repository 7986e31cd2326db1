//! Where mail comes from: `[[mailbox]]` (an IMAP folder) and `[[maildir]]` (a local Maildir).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::RawSecret;
use super::server::{RawServer, ServerConfig, IMAP};
use super::{Check, ConfigError};

/// Bytes of mail per IMAP fetch batch unless `batch_bytes` says otherwise.
pub const DEFAULT_BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// What to do on the IMAP server with a mail once the database has committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkProcessed {
    /// Move to `processed_folder` (MOVE, or COPY + STORE \Deleted + EXPUNGE).
    Move,
    /// Set the `\Seen` flag and leave it in place.
    Seen,
    /// Delete it (STORE \Deleted + EXPUNGE).
    Delete,
}

#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// Short name used in logs and the database (default `username/folder`).
    pub name: String,
    /// Host, port, TLS, sign-in and timeout: the keys `[smtp]` has too.
    pub server: ServerConfig,
    pub folder: String,
    pub processed_folder: String,
    pub quarantine_folder: String,
    pub mark: MarkProcessed,
    /// Account (queue) the cases from this mailbox belong to when the sender's domain has none.
    pub account: Option<String>,
    pub idle: bool,
    pub poll_interval: Duration,
    pub batch_size: u32,
    /// Bytes of mail per fetch and per transaction at most (a larger mail is fetched alone).
    pub batch_bytes: u64,
}

impl MailboxConfig {
    /// The IMAP login. Never empty for a loaded config: every `[[mailbox]]` must name its
    /// `username` (an empty one would be refused by the server, not crash casegate).
    pub fn username(&self) -> &str {
        self.server.username.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct MaildirConfig {
    pub name: String,
    pub path: PathBuf,
    /// When `path` does not exist yet, create it and copy these messages in (demo only).
    pub seed_from: Option<PathBuf>,
    pub account: Option<String>,
    pub poll_interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMailbox {
    name: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    tls: Option<super::Tls>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    auth: Option<super::server::AuthMethod>,
    oauth2: Option<super::oauth2::RawOAuth2>,
    ca_file: Option<String>,
    timeout_secs: Option<u64>,
    folder: Option<String>,
    processed_folder: Option<String>,
    quarantine_folder: Option<String>,
    mark: Option<MarkProcessed>,
    account: Option<String>,
    idle: Option<bool>,
    poll_interval_secs: Option<u64>,
    batch_size: Option<u32>,
    batch_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMaildir {
    name: Option<String>,
    path: Option<String>,
    seed_from: Option<String>,
    account: Option<String>,
    poll_interval_ms: Option<u64>,
}

/// `[[mailbox]]` number `index`.
pub(super) fn mailbox(check: &Check, index: usize, m: RawMailbox) -> Result<MailboxConfig, ConfigError> {
    let table = format!("mailbox[{index}]");
    let server = RawServer {
        host: m.host,
        port: m.port,
        tls: m.tls,
        username: m.username,
        password: RawSecret { inline: m.password, env: m.password_env, file: m.password_file },
        auth: m.auth,
        oauth2: m.oauth2,
        ca_file: m.ca_file,
        timeout_secs: m.timeout_secs,
    };
    let server = ServerConfig::validate(check, &table, server, &IMAP)?;
    let batch_size = m.batch_size.unwrap_or(500);
    if batch_size == 0 {
        return Err(check.invalid(&format!("{table}.batch_size"), "must be at least 1"));
    }
    let batch_bytes = m.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES);
    if batch_bytes < 1024 {
        return Err(check.invalid(
            &format!("{table}.batch_bytes"),
            format!("{batch_bytes} is too small; the default is {DEFAULT_BATCH_BYTES} (32 MiB)"),
        ));
    }
    let folder = m.folder.unwrap_or_else(|| "INBOX".into());
    let name = m.name.unwrap_or_else(|| format!("{}/{folder}", server.username.as_deref().unwrap_or_default()));
    Ok(MailboxConfig {
        name,
        server,
        folder,
        processed_folder: m.processed_folder.unwrap_or_else(|| "Processed".into()),
        quarantine_folder: m.quarantine_folder.unwrap_or_else(|| "Quarantine".into()),
        mark: m.mark.unwrap_or(MarkProcessed::Move),
        account: m.account,
        idle: m.idle.unwrap_or(true),
        poll_interval: Duration::from_secs(m.poll_interval_secs.unwrap_or(60).max(1)),
        batch_size,
        batch_bytes,
    })
}

/// `[[maildir]]` number `index`.
pub(super) fn maildir(check: &Check, index: usize, m: RawMaildir) -> Result<MaildirConfig, ConfigError> {
    let path = m.path.ok_or_else(|| check.invalid(&format!("maildir[{index}].path"), "is required"))?;
    Ok(MaildirConfig {
        name: m.name.unwrap_or_else(|| format!("maildir:{path}")),
        path: check.resolve(&path),
        seed_from: m.seed_from.as_deref().map(|p| check.resolve(p)),
        account: m.account,
        poll_interval: Duration::from_millis(m.poll_interval_ms.unwrap_or(500).max(10)),
    })
}
