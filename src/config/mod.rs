//! Configuration: one TOML file → a validated [`Config`].
//!
//! The file is found from `--config`, else `$CASEGATE_CONFIG`, else `config/casegate.toml`.
//! Relative paths inside it (`data_dir`, folders, certificate files) are resolved against
//! the directory of the file, so a config behaves the same whatever the working directory.
//! Secrets never live in the file itself when avoidable: `password_env`/`password_file`
//! and `secret_env`/`secret_file` name where to read them, and are read only by the
//! commands that need them ([`Secret::read`]), so `cases list` works without IMAP passwords.
//!
//! Every error names the file, the key and what is wrong; the CLI maps them to exit code 2.
//! Unknown keys are reported as warnings (they are usually typos) rather than errors, so an
//! older casegate can still read a newer file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::address::{Address, AddressPattern};

pub const DEFAULT_CONFIG_PATH: &str = "config/casegate.toml";
pub const CONFIG_ENV: &str = "CASEGATE_CONFIG";

/// A configuration problem, phrased for the person who edits the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}\n  hint: pass --config FILE or set ${CONFIG_ENV}; config/casegate.example.toml documents every key")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// Where a secret comes from: an environment variable or a file (first line, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Env { var: String, key: String },
    File { path: PathBuf, key: String },
    Inline { value: String },
}

impl Secret {
    /// Reads the secret now. The error names the config key and what to do.
    pub fn read(&self, config_path: &Path) -> Result<String, ConfigError> {
        match self {
            Secret::Inline { value } => Ok(value.clone()),
            Secret::Env { var, key } => std::env::var(var).map_err(|_| ConfigError::Invalid {
                path: config_path.to_path_buf(),
                key: key.clone(),
                message: format!("environment variable {var} is not set; export it or use a *_file key"),
            }),
            Secret::File { path, key } => std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
                .map_err(|e| ConfigError::Invalid {
                    path: config_path.to_path_buf(),
                    key: key.clone(),
                    message: format!("cannot read {}: {e}", path.display()),
                }),
        }
    }
}

/// Transport security of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS; refusing to continue without it.
    Starttls,
    /// No encryption. Only sensible on loopback.
    None,
}

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
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: String,
    pub password: Secret,
    /// Extra CA certificate (PEM) to trust, e.g. for a self-signed test server.
    pub ca_file: Option<PathBuf>,
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
    /// Timeout of every network step (connect, login, fetch, store...).
    pub timeout: Duration,
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

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SurveyConfig {
    pub enabled: bool,
    pub base_url: String,
    pub listen: String,
    pub secret: Option<Secret>,
    pub delay: Duration,
    pub link_valid: Duration,
    /// Also offer the survey when a Resolved case waits this long without an answer.
    pub resolved_after: Option<Duration>,
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
}

/// Default of `limits.max_watchers_per_mail`.
pub const DEFAULT_MAX_WATCHERS_PER_MAIL: usize = 30;
/// Bytes of mail per IMAP fetch batch unless `batch_bytes` says otherwise.
pub const DEFAULT_BATCH_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for error messages).
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub system_addresses: Vec<Address>,
    pub staff: Vec<AddressPattern>,
    pub admins: Vec<AddressPattern>,
    pub authserv_id: Option<String>,
    /// Identifies this installation in the loop-detection header of outgoing mail.
    pub instance_id: String,
    pub token_prefix: String,
    /// The compiled `[PREFIX-n]` subject-token matcher for `token_prefix`.
    pub tokens: crate::route::TokenMatcher,
    /// Sender domain → account name.
    pub accounts: BTreeMap<String, String>,
    /// Who may name which accounts in an `Account:` line (besides staff and admins, who
    /// may name any): address or `@domain` → account names.
    pub account_access: Vec<(AddressPattern, Vec<String>)>,
    pub max_message_bytes: usize,
    /// At most this many watchers are added by one mail (Cc, To, `#watch`): a mail copied to
    /// thousands of addresses cannot make casegate write to all of them.
    pub max_watchers_per_mail: usize,
    /// fsync attachment files and use synchronous=FULL (survives power loss, slower).
    pub fsync: bool,
    pub from: Option<String>,
    pub templates_dir: Option<PathBuf>,
    pub mailboxes: Vec<MailboxConfig>,
    pub maildirs: Vec<MaildirConfig>,
    pub smtp: Option<SmtpConfig>,
    pub outbox: OutboxConfig,
    pub notify: NotifyConfig,
    pub survey: SurveyConfig,
    /// Unknown keys found in the file, for a warning at start-up.
    pub unknown_keys: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The file as written (serde); `validate` turns it into `Config`.

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    data_dir: Option<String>,
    system_addresses: Vec<String>,
    staff: Vec<String>,
    admins: Vec<String>,
    authserv_id: Option<String>,
    instance_id: Option<String>,
    templates_dir: Option<String>,
    case: RawCase,
    accounts: BTreeMap<String, String>,
    account_access: BTreeMap<String, Vec<String>>,
    limits: RawLimits,
    storage: RawStorage,
    mailbox: Vec<RawMailbox>,
    maildir: Vec<RawMaildir>,
    smtp: Option<RawSmtp>,
    outbox: RawOutbox,
    notify: RawNotify,
    survey: RawSurvey,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCase {
    token_prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLimits {
    max_message_bytes: Option<u64>,
    max_watchers_per_mail: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStorage {
    fsync: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMailbox {
    name: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<Tls>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    folder: Option<String>,
    processed_folder: Option<String>,
    quarantine_folder: Option<String>,
    mark: Option<MarkProcessed>,
    account: Option<String>,
    idle: Option<bool>,
    poll_interval_secs: Option<u64>,
    batch_size: Option<u32>,
    batch_bytes: Option<u64>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMaildir {
    name: Option<String>,
    path: Option<String>,
    seed_from: Option<String>,
    account: Option<String>,
    poll_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<Tls>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    from: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawOutbox {
    file_dir: Option<String>,
    max_attempts: Option<u32>,
    retry_base_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawNotify {
    staff_recipients: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSurvey {
    enabled: Option<bool>,
    base_url: Option<String>,
    listen: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    delay_secs: Option<u64>,
    link_valid_days: Option<u64>,
    resolved_after_days: Option<u64>,
}

impl Config {
    /// The config path the CLI should use: `--config`, else `$CASEGATE_CONFIG`, else the default.
    pub fn locate(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is used for messages and to resolve relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: describe_toml_error(text, &e),
        };
        let de = toml::de::Deserializer::parse(text).map_err(syntax)?;
        let mut unknown_keys = Vec::new();
        let raw: RawConfig = serde_ignored::deserialize(de, |p| unknown_keys.push(p.to_string())).map_err(syntax)?;
        let mut config = validate(raw, path)?;
        config.unknown_keys = unknown_keys;
        Ok(config)
    }

    /// The token prefix as shown in subjects, e.g. `CASE`.
    pub fn case_token(&self, number: i64) -> String {
        format!("{}-{number}", self.token_prefix)
    }

    pub fn is_system_address(&self, address: &Address) -> bool {
        self.system_addresses.contains(address)
    }

    /// Why staff and admin powers can be forged with this configuration: they are given
    /// by address, and no `authserv_id` says whose `Authentication-Results` to trust.
    pub fn forgeable_powers(&self) -> Option<String> {
        if self.authserv_id.is_some() || (self.staff.is_empty() && self.admins.is_empty()) {
            return None;
        }
        Some(format!(
            "staff and admin powers go by the From address alone, which anyone can forge; set authserv_id in {} to \
             the id your receiving mail server writes into Authentication-Results (e.g. \"mx.example.com\"), so they \
             also need DMARC or aligned DKIM to pass",
            self.path.display()
        ))
    }

    pub fn is_staff(&self, address: &Address) -> bool {
        self.staff.iter().any(|p| p.matches(address))
    }

    pub fn is_admin(&self, address: &Address) -> bool {
        self.admins.iter().any(|p| p.matches(address))
    }

    /// The account a sender's domain belongs to, if any.
    pub fn account_for(&self, address: &Address) -> Option<&str> {
        self.accounts.get(address.domain()).map(String::as_str)
    }

    /// The accounts `address` may name in an `Account:` line (its own domain's account,
    /// and those granted under `[account_access]`). Staff and admins may name any.
    pub fn accounts_of(&self, address: &Address) -> Vec<&str> {
        let mut out: Vec<&str> = self.account_for(address).into_iter().collect();
        for (pattern, names) in &self.account_access {
            if pattern.matches(address) {
                out.extend(names.iter().map(String::as_str));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The account as configured, matched case-insensitively (`customer inc` → `Customer Inc`).
    pub fn known_account(&self, name: &str) -> Option<&str> {
        self.accounts.values().find(|a| a.eq_ignore_ascii_case(name.trim())).map(String::as_str)
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("casegate.db")
    }

    /// The address outgoing mail is sent from: `smtp.from`, else the first system address.
    pub fn from_header(&self) -> String {
        self.from.clone().unwrap_or_else(|| self.system_addresses[0].to_string())
    }
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or_default().trim();
            format!("line {line}: {message}\n  | {snippet}")
        }
        None => message,
    }
}

fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let invalid =
        |key: &str, message: String| ConfigError::Invalid { path: path.to_path_buf(), key: key.to_string(), message };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base.join(p)
        }
    };

    let data_dir = resolve(raw.data_dir.as_deref().unwrap_or("var"));

    if raw.system_addresses.is_empty() {
        return Err(invalid(
            "system_addresses",
            "must list at least one support address, e.g. [\"support@example.com\"]".into(),
        ));
    }
    let mut system_addresses = Vec::new();
    for (i, s) in raw.system_addresses.iter().enumerate() {
        let a = Address::parse(s)
            .ok_or_else(|| invalid(&format!("system_addresses[{i}]"), format!("{s:?} is not an email address")))?;
        system_addresses.push(a);
    }
    let patterns = |key: &str, list: &[String]| -> Result<Vec<AddressPattern>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                AddressPattern::parse(s).ok_or_else(|| {
                    invalid(&format!("{key}[{i}]"), format!("{s:?} is neither an address nor an @domain entry"))
                })
            })
            .collect()
    };
    let staff = patterns("staff", &raw.staff)?;
    let admins = patterns("admins", &raw.admins)?;

    let token_prefix = raw.case.token_prefix.unwrap_or_else(|| "CASE".into());
    if token_prefix.is_empty() || token_prefix.len() > 16 || !token_prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "case.token_prefix",
            format!("{token_prefix:?} must be 1-16 ASCII letters or digits, e.g. \"CASE\""),
        ));
    }

    let mut accounts = BTreeMap::new();
    for (domain, account) in raw.accounts {
        let probe = Address::parse(&format!("x@{domain}")).ok_or_else(|| {
            invalid(
                &format!("accounts.{domain:?}"),
                "the key must be a mail domain such as \"customer.example\"".into(),
            )
        })?;
        if account.trim().is_empty() {
            return Err(invalid(&format!("accounts.{domain:?}"), "the account name is empty".into()));
        }
        accounts.insert(probe.domain().to_string(), account.trim().to_string());
    }

    let mut account_access = Vec::new();
    for (who, names) in raw.account_access {
        let key = format!("account_access.{who:?}");
        let pattern = AddressPattern::parse(&who)
            .ok_or_else(|| invalid(&key, "the key must be an address or an @domain entry".into()))?;
        let known: Vec<&String> = accounts.values().collect();
        for name in &names {
            if !known.contains(&name) {
                return Err(invalid(&key, format!("{name:?} is not an account listed under [accounts]")));
            }
        }
        account_access.push((pattern, names));
    }

    let max_message_bytes = raw.limits.max_message_bytes.unwrap_or(25 * 1024 * 1024);
    if max_message_bytes < 1024 {
        return Err(invalid(
            "limits.max_message_bytes",
            format!("{max_message_bytes} is too small; the default is 26214400 (25 MiB)"),
        ));
    }

    let max_watchers_per_mail = raw.limits.max_watchers_per_mail.unwrap_or(DEFAULT_MAX_WATCHERS_PER_MAIL as u64);
    if max_watchers_per_mail == 0 {
        return Err(invalid(
            "limits.max_watchers_per_mail",
            format!("0 would add no watcher at all; the default is {DEFAULT_MAX_WATCHERS_PER_MAIL}"),
        ));
    }

    let secret = |prefix: &str,
                  name: &str,
                  inline: Option<String>,
                  env: Option<String>,
                  file: Option<String>|
     -> Result<Option<Secret>, ConfigError> {
        let given = [inline.is_some(), env.is_some(), file.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(invalid(
                &format!("{prefix}{name}"),
                format!("give only one of {name}, {name}_env, {name}_file"),
            ));
        }
        Ok(if let Some(var) = env {
            Some(Secret::Env { var, key: format!("{prefix}{name}_env") })
        } else if let Some(f) = file {
            Some(Secret::File { path: resolve(&f), key: format!("{prefix}{name}_file") })
        } else {
            inline.map(|value| Secret::Inline { value })
        })
    };

    let mut mailboxes = Vec::new();
    for (i, m) in raw.mailbox.into_iter().enumerate() {
        let key = |k: &str| format!("mailbox[{i}].{k}");
        let host = m.host.ok_or_else(|| invalid(&key("host"), "is required".into()))?;
        let username = m.username.ok_or_else(|| invalid(&key("username"), "is required".into()))?;
        let tls = m.tls.unwrap_or(Tls::Tls);
        let port = m.port.unwrap_or(if tls == Tls::Tls { 993 } else { 143 });
        let password = secret(&format!("mailbox[{i}]."), "password", m.password, m.password_env, m.password_file)?
            .ok_or_else(|| {
                invalid(&key("password_env"), "one of password_env, password_file or password is required".into())
            })?;
        let folder = m.folder.unwrap_or_else(|| "INBOX".into());
        let batch_size = m.batch_size.unwrap_or(500);
        if batch_size == 0 {
            return Err(invalid(&key("batch_size"), "must be at least 1".into()));
        }
        let batch_bytes = m.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES);
        if batch_bytes < 1024 {
            return Err(invalid(
                &key("batch_bytes"),
                format!("{batch_bytes} is too small; the default is {DEFAULT_BATCH_BYTES} (32 MiB)"),
            ));
        }
        mailboxes.push(MailboxConfig {
            name: m.name.unwrap_or_else(|| format!("{username}/{folder}")),
            host,
            port,
            tls,
            username,
            password,
            ca_file: m.ca_file.as_deref().map(resolve),
            folder,
            processed_folder: m.processed_folder.unwrap_or_else(|| "Processed".into()),
            quarantine_folder: m.quarantine_folder.unwrap_or_else(|| "Quarantine".into()),
            mark: m.mark.unwrap_or(MarkProcessed::Move),
            account: m.account,
            idle: m.idle.unwrap_or(true),
            poll_interval: Duration::from_secs(m.poll_interval_secs.unwrap_or(60).max(1)),
            batch_size,
            batch_bytes,
            timeout: Duration::from_secs(m.timeout_secs.unwrap_or(30).max(1)),
        });
    }

    let mut maildirs = Vec::new();
    for (i, m) in raw.maildir.into_iter().enumerate() {
        let p = m.path.ok_or_else(|| invalid(&format!("maildir[{i}].path"), "is required".into()))?;
        maildirs.push(MaildirConfig {
            name: m.name.unwrap_or_else(|| format!("maildir:{p}")),
            path: resolve(&p),
            seed_from: m.seed_from.as_deref().map(resolve),
            account: m.account,
            poll_interval: Duration::from_millis(m.poll_interval_ms.unwrap_or(500).max(10)),
        });
    }

    let mut from = None;
    let smtp = match raw.smtp {
        None => None,
        Some(s) => {
            let host = s.host.ok_or_else(|| invalid("smtp.host", "is required when [smtp] is present".into()))?;
            let tls = s.tls.unwrap_or(Tls::Starttls);
            let port = s.port.unwrap_or(match tls {
                Tls::Tls => 465,
                Tls::Starttls => 587,
                Tls::None => 25,
            });
            let password = secret("smtp.", "password", s.password, s.password_env, s.password_file)?;
            if password.is_some() && s.username.is_none() {
                return Err(invalid("smtp.username", "is required when a password is configured".into()));
            }
            if let Some(f) = &s.from {
                if f.contains(['\r', '\n']) || !f.contains('@') {
                    return Err(invalid(
                        "smtp.from",
                        format!("{f:?} must be an address such as \"Support <support@example.com>\""),
                    ));
                }
                from = Some(f.clone());
            }
            Some(SmtpConfig {
                host,
                port,
                tls,
                username: s.username,
                password,
                ca_file: s.ca_file.as_deref().map(resolve),
                timeout: Duration::from_secs(s.timeout_secs.unwrap_or(30).max(1)),
            })
        }
    };

    let outbox = OutboxConfig {
        file_dir: raw.outbox.file_dir.as_deref().map(resolve),
        max_attempts: raw.outbox.max_attempts.unwrap_or(12).max(1),
        retry_base: Duration::from_secs(raw.outbox.retry_base_secs.unwrap_or(30).max(1)),
        retry_max: Duration::from_secs(raw.outbox.retry_max_secs.unwrap_or(3600).max(1)),
        poll_interval: Duration::from_millis(raw.outbox.poll_interval_ms.unwrap_or(1000).max(10)),
    };

    let staff_recipients = match raw.notify.staff_recipients {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Address::parse(s).ok_or_else(|| {
                    invalid(&format!("notify.staff_recipients[{i}]"), format!("{s:?} is not an email address"))
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
        return Err(invalid(
            "notify.staff_recipients",
            format!("{a} is a system address; mail to it would open cases, not reach an analyst"),
        ));
    }
    let notify = NotifyConfig { enabled: raw.notify.enabled.unwrap_or(true), staff_recipients };

    let survey = SurveyConfig {
        enabled: raw.survey.enabled.unwrap_or(true),
        base_url: raw
            .survey
            .base_url
            .unwrap_or_else(|| "http://127.0.0.1:8025".into())
            .trim_end_matches('/')
            .to_string(),
        listen: raw.survey.listen.unwrap_or_else(|| "127.0.0.1:8025".into()),
        secret: secret("survey.", "secret", raw.survey.secret, raw.survey.secret_env, raw.survey.secret_file)?,
        delay: Duration::from_secs(raw.survey.delay_secs.unwrap_or(0)),
        link_valid: Duration::from_secs(raw.survey.link_valid_days.unwrap_or(30) * 86_400),
        resolved_after: raw.survey.resolved_after_days.map(|d| Duration::from_secs(d * 86_400)),
    };
    if !(survey.base_url.starts_with("http://") || survey.base_url.starts_with("https://")) {
        return Err(invalid("survey.base_url", format!("{:?} must start with http:// or https://", survey.base_url)));
    }
    if survey.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(invalid(
            "survey.listen",
            format!("{:?} must be an address and port such as \"127.0.0.1:8025\"", survey.listen),
        ));
    }

    let instance_id = raw.instance_id.unwrap_or_else(|| system_addresses[0].domain().to_string());
    if instance_id.is_empty() || !instance_id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err(invalid("instance_id", "use letters, digits, '-', '.' or '_'".into()));
    }

    Ok(Config {
        path: path.to_path_buf(),
        data_dir,
        system_addresses,
        staff,
        admins,
        authserv_id: raw.authserv_id.filter(|s| !s.trim().is_empty()),
        instance_id,
        tokens: crate::route::TokenMatcher::new(&token_prefix),
        token_prefix,
        accounts,
        account_access,
        max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
        max_watchers_per_mail: usize::try_from(max_watchers_per_mail).unwrap_or(usize::MAX),
        fsync: raw.storage.fsync,
        from,
        templates_dir: raw.templates_dir.as_deref().map(resolve),
        mailboxes,
        maildirs,
        smtp,
        outbox,
        notify,
        survey,
        unknown_keys: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/casegate/casegate.toml"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = load("system_addresses = [\"Support@Example.com\"]").unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/casegate/var"));
        assert_eq!(c.token_prefix, "CASE");
        assert_eq!(c.max_message_bytes, 25 * 1024 * 1024);
        assert_eq!(c.system_addresses[0].as_str(), "support@example.com");
        assert_eq!(c.case_token(42), "CASE-42");
        assert!(c.smtp.is_none() && c.mailboxes.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let err =
            load("system_addresses = [\"support@example.com\"]\nstaff = [\"not an address\"]").unwrap_err().to_string();
        assert!(err.contains("/etc/casegate/casegate.toml") && err.contains("staff[0]"), "{err}");
        let err = load("system_addresses = []").unwrap_err().to_string();
        assert!(err.contains("system_addresses"), "{err}");
        let err =
            load("system_addresses = [\"a@b.c\"]\n[limits]\nmax_message_bytes = \"big\"").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("max_message_bytes"), "{err}");
        let err = load("system_addresses = [\"a@b.c\"]\n[limits]\nmax_watchers_per_mail = 0").unwrap_err().to_string();
        assert!(err.contains("limits.max_watchers_per_mail") && err.contains("default is 30"), "{err}");
        let err = load("system_addresses = [\"a@b.c\"]\n[[mailbox]]\nhost = \"127.0.0.1\"\nusername = \"u\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mailbox[0].password_env"), "{err}");
        let err = load("system_addresses = [\"a@b.c\"]\n[case]\ntoken_prefix = \"CA SE\"").unwrap_err().to_string();
        assert!(err.contains("case.token_prefix"), "{err}");
        let mailbox = "system_addresses = [\"a@b.c\"]\n[[mailbox]]\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n";
        let err = load(&format!("{mailbox}batch_bytes = 100")).unwrap_err().to_string();
        assert!(err.contains("mailbox[0].batch_bytes") && err.contains("default is 33554432"), "{err}");
        assert_eq!(load(mailbox).unwrap().mailboxes[0].batch_bytes, DEFAULT_BATCH_BYTES);
    }

    #[test]
    fn unknown_keys_are_collected_not_fatal() {
        let mut c = load("system_addresses = [\"a@b.c\"]\nsystem_adresses = []\n[case]\nprefix = \"X\"").unwrap();
        c.unknown_keys.sort();
        assert_eq!(c.unknown_keys, ["case.prefix", "system_adresses"]);
    }

    #[test]
    fn secrets_are_read_lazily_and_name_their_key() {
        let c = load("system_addresses = [\"a@b.c\"]\n[[mailbox]]\nhost = \"h\"\nusername = \"u\"\npassword_env = \"CASEGATE_TEST_UNSET_VAR\"").unwrap();
        let err = c.mailboxes[0].password.read(&c.path).unwrap_err().to_string();
        assert!(err.contains("mailbox[0].password_env") && err.contains("CASEGATE_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn every_shipped_config_file_loads_without_unknown_keys() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(c.unknown_keys.is_empty(), "{}: unknown keys {:?}", path.display(), c.unknown_keys);
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected casegate.example.toml and demo.toml in {}", dir.display());
    }

    #[test]
    fn staff_and_account_lookups() {
        let c = load("system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\nadmins = [\"boss@example.com\"]\n[accounts]\n\"Customer.Example\" = \"Customer Inc\"").unwrap();
        let why = c.forgeable_powers().expect("staff without authserv_id");
        assert!(why.contains("authserv_id") && why.contains("/etc/casegate/casegate.toml"), "{why}");
        let trusted = load("system_addresses = [\"a@b.c\"]\nstaff = [\"@b.c\"]\nauthserv_id = \"mx.b.c\"").unwrap();
        assert_eq!(trusted.forgeable_powers(), None);
        assert_eq!(load("system_addresses = [\"a@b.c\"]").unwrap().forgeable_powers(), None);
        let a = |s: &str| Address::parse(s).unwrap();
        assert!(c.is_staff(&a("ann@support.example.com")) && !c.is_staff(&a("ann@example.com")));
        assert!(c.is_admin(&a("boss@example.com")));
        assert_eq!(c.account_for(&a("jane@customer.example")), Some("Customer Inc"));
        assert!(c.is_system_address(&a("SUPPORT@example.com")));
    }

    #[test]
    fn staff_recipients_default_to_the_exact_staff_addresses_and_refuse_system_addresses() {
        let c = load(
            "system_addresses = [\"support@example.com\"]\nstaff = [\"Ann@example.com\", \"@support.example.com\"]",
        )
        .unwrap();
        assert_eq!(c.notify.staff_recipients, [Address::parse("ann@example.com").unwrap()]);
        let c = load("system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n[notify]\nstaff_recipients = [\"queue@support.example.com\"]").unwrap();
        assert_eq!(c.notify.staff_recipients[0].as_str(), "queue@support.example.com");
        let err = load(
            "system_addresses = [\"support@example.com\"]\n[notify]\nstaff_recipients = [\"support@example.com\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("notify.staff_recipients"), "{err}");
        let err = load("system_addresses = [\"support@example.com\"]\n[notify]\nstaff_recipients = [\"@x.example\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("notify.staff_recipients[0]"), "{err}");
    }

    #[test]
    fn account_access_grants_named_accounts_and_rejects_unknown_ones() {
        let c = load("system_addresses = [\"s@example.com\"]\n[accounts]\n\"customer.example\" = \"Customer Inc\"\n\"acme.example\" = \"ACME\"\n[account_access]\n\"@partner.example\" = [\"ACME\", \"Customer Inc\"]").unwrap();
        let a = |s: &str| Address::parse(s).unwrap();
        assert_eq!(c.accounts_of(&a("pat@partner.example")), ["ACME", "Customer Inc"]);
        assert_eq!(c.accounts_of(&a("jane@customer.example")), ["Customer Inc"]);
        assert_eq!(c.known_account("acme"), Some("ACME"));
        let err = load("system_addresses = [\"s@example.com\"]\n[account_access]\n\"@partner.example\" = [\"Nope\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("account_access") && err.contains("Nope"), "{err}");
    }
}
