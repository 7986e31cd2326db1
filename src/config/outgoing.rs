//! Where casegate's own mail goes: `[smtp]`, `[outbox]` and `[notify]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::RawSecret;
use super::server::{RawServer, ServerConfig, SMTP};
use super::{Check, ConfigError};
use crate::address::{Address, AddressPattern};

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Host, port, TLS, sign-in and timeout: the keys `[[mailbox]]` has too.
    pub server: ServerConfig,
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Write outgoing mail as `.eml` files here instead of sending by SMTP (demo).
    pub file_dir: Option<PathBuf>,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often the daemon's outbox worker looks for due notifications (other processes,
    /// such as a piped `casegate ingest`, add rows too).
    pub poll_interval: Duration,
}

/// Who is told what (see `notify::recipients`); the templates live under `templates_dir`.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Where staff alerts (new case, customer reply, internal note, re-opened, closed) go.
    /// `staff` may name whole domains, which cannot be mailed; default: the exact
    /// addresses listed under `staff`.
    pub staff_recipients: Vec<Address>,
    /// When false, no notification is written at all (casegate only takes cases in).
    pub enabled: bool,
    /// Attachment bytes one notification carries; the files beyond are listed with
    /// personal download links instead (0: every file as a link).
    pub attach_max_bytes: usize,
}

/// Default of `notify.attach_max_bytes`: 10 MiB, which most mail servers take whole.
pub const DEFAULT_ATTACH_MAX_BYTES: usize = 10 * 1024 * 1024;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawSmtp {
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
    from: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawOutbox {
    file_dir: Option<String>,
    max_attempts: Option<u32>,
    retry_base_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawNotify {
    staff_recipients: Option<Vec<String>>,
    enabled: Option<bool>,
    attach_max_bytes: Option<u64>,
}

/// `[smtp]`, and its `from` (which `Config` keeps, since it also applies to mail written
/// as files).
pub(super) fn smtp(check: &Check, s: RawSmtp) -> Result<(SmtpConfig, Option<String>), ConfigError> {
    let server = RawServer {
        host: s.host,
        port: s.port,
        tls: s.tls,
        username: s.username,
        password: RawSecret { inline: s.password, env: s.password_env, file: s.password_file },
        auth: s.auth,
        oauth2: s.oauth2,
        ca_file: s.ca_file,
        timeout_secs: s.timeout_secs,
    };
    let server = ServerConfig::validate(check, "smtp", server, &SMTP)?;
    if let Some(from) = &s.from {
        if from.contains(['\r', '\n']) || !from.contains('@') {
            return Err(check.invalid(
                "smtp.from",
                format!("{from:?} must be an address such as \"Support <support@example.com>\""),
            ));
        }
    }
    Ok((SmtpConfig { server }, s.from))
}

pub(super) fn outbox(check: &Check, o: RawOutbox) -> OutboxConfig {
    OutboxConfig {
        file_dir: o.file_dir.as_deref().map(|d| check.resolve(d)),
        max_attempts: o.max_attempts.unwrap_or(12).max(1),
        retry_base: Duration::from_secs(o.retry_base_secs.unwrap_or(30).max(1)),
        retry_max: Duration::from_secs(o.retry_max_secs.unwrap_or(3600).max(1)),
        poll_interval: Duration::from_millis(o.poll_interval_ms.unwrap_or(1000).max(10)),
    }
}

/// `[notify]`: staff alerts go to mailable addresses, never to a system address (mail to
/// it would open a case instead of reaching an analyst).
pub(super) fn notify(
    check: &Check,
    n: RawNotify,
    staff: &[AddressPattern],
    system_addresses: &[Address],
) -> Result<NotifyConfig, ConfigError> {
    let staff_recipients = match n.staff_recipients {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Address::parse(s).ok_or_else(|| {
                    check.invalid(&format!("notify.staff_recipients[{i}]"), format!("{s:?} is not an email address"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => staff
            .iter()
            .filter_map(|p| match p {
                AddressPattern::Exact(a) => Some(a.clone()),
                AddressPattern::Domain(_) => None,
            })
            .collect(),
    };
    if let Some(a) = staff_recipients.iter().find(|a| system_addresses.contains(a)) {
        return Err(check.invalid(
            "notify.staff_recipients",
            format!("{a} is a system address; mail to it would open cases, not reach an analyst"),
        ));
    }
    let attach_max_bytes =
        n.attach_max_bytes.map_or(DEFAULT_ATTACH_MAX_BYTES, |b| usize::try_from(b).unwrap_or(usize::MAX));
    Ok(NotifyConfig { enabled: n.enabled.unwrap_or(true), staff_recipients, attach_max_bytes })
}
