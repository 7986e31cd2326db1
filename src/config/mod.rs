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
//!
//! Each table of the file is read and checked by its own function: the top level, `[case]`,
//! `[limits]` here; `[storage]` in `storage`; `[accounts]`/`[account_access]` in `accounts`;
//! `[[mailbox]]`/`[[maildir]]` in `sources`; `[smtp]`/`[outbox]`/`[notify]` in `outgoing`;
//! `[survey]` in `survey`; `[web]` in `web`; `[retention]` in `retention`; `[workflow]` in
//! `workflow`. The server keys `[[mailbox]]` and `[smtp]` share (host, port,
//! tls, username, password, ca_file, timeout) are one [`ServerConfig`], checked once in
//! `server`, with its `[….oauth2]` table in `oauth2`; secrets are read in `secret`.

mod accounts;
mod bounces;
mod log;
mod metrics;
mod oauth2;
mod outgoing;
mod retention;
mod secret;
mod server;
mod sources;
mod spam;
mod storage;
mod survey;
mod web;
mod workflow;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address::{Address, AddressPattern};

pub use bounces::BounceConfig;
pub use log::{LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use oauth2::{Grant, OAuth2Config, Provider};
pub use outgoing::{NotifyConfig, OutboxConfig, SmtpConfig};
pub use retention::RetentionConfig;
pub use secret::Secret;
pub use server::{Auth, ServerConfig, Tls};
pub use sources::{MailboxConfig, MaildirConfig, MarkProcessed, DEFAULT_BATCH_BYTES};
pub use spam::SpamConfig;
pub use storage::StorageConfig;
pub use survey::SurveyConfig;
pub use web::WebConfig;
pub use workflow::{AutoClose, WorkflowConfig};

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

/// Default of `limits.max_watchers_per_mail`.
pub const DEFAULT_MAX_WATCHERS_PER_MAIL: usize = 30;
/// Default of `limits.auto_replies_per_address_per_day`.
pub const DEFAULT_AUTO_REPLIES_PER_ADDRESS_PER_DAY: u32 = 20;

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
    pub tokens: crate::case::token::TokenMatcher,
    /// Sender domain → account name.
    pub accounts: BTreeMap<String, String>,
    /// Who may name which accounts in an `Account:` line (besides staff and admins, who
    /// may name any): address or `@domain` → account names.
    pub account_access: Vec<(AddressPattern, Vec<String>)>,
    pub max_message_bytes: usize,
    /// At most this many watchers are added by one mail (Cc, To, `#watch`): a mail copied to
    /// thousands of addresses cannot make casegate write to all of them.
    pub max_watchers_per_mail: usize,
    /// The loop breaker: at most this many automatic mails (acknowledgements, answers,
    /// case lists) to one address in 24 hours; see `notify::limits`.
    pub auto_replies_per_address_per_day: u32,
    /// The per-case brake: when two people have each written this many entries on one
    /// case within `case_exchange_window`, notifications between them are held back.
    pub case_exchange_limit: u32,
    pub case_exchange_window: std::time::Duration,
    /// fsync attachment files and use synchronous=FULL (survives power loss, slower).
    pub fsync: bool,
    /// Where the data lives (SQLite or PostgreSQL), and this node's name and leases.
    pub storage: StorageConfig,
    pub from: Option<String>,
    pub templates_dir: Option<PathBuf>,
    pub mailboxes: Vec<MailboxConfig>,
    pub maildirs: Vec<MaildirConfig>,
    pub smtp: Option<SmtpConfig>,
    pub outbox: OutboxConfig,
    pub notify: NotifyConfig,
    pub survey: SurveyConfig,
    /// The pages casegate serves and the secret of their links.
    pub web: WebConfig,
    pub bounces: BounceConfig,
    pub spam: SpamConfig,
    /// The operators' listener (`/metrics`, `/healthz`, `/readyz`) and its limits.
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    /// How long what casegate stores is kept (`[retention]`).
    pub retention: RetentionConfig,
    /// Cases that close themselves (`[workflow]`).
    pub workflow: WorkflowConfig,
    /// Unknown keys found in the file, for a warning at start-up.
    pub unknown_keys: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The file as written (serde); `validate` turns it into `Config`, table by table.

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
    storage: storage::RawStorage,
    mailbox: Vec<sources::RawMailbox>,
    maildir: Vec<sources::RawMaildir>,
    smtp: Option<outgoing::RawSmtp>,
    outbox: outgoing::RawOutbox,
    notify: outgoing::RawNotify,
    survey: survey::RawSurvey,
    web: web::RawWeb,
    bounces: bounces::RawBounces,
    spam: spam::RawSpam,
    metrics: metrics::RawMetrics,
    log: log::RawLog,
    retention: retention::RawRetention,
    workflow: workflow::RawWorkflow,
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
    auto_replies_per_address_per_day: Option<u32>,
    case_exchange_limit: Option<u32>,
    case_exchange_minutes: Option<u64>,
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
        let raw: RawConfig = serde_ignored::deserialize(de, |p| unknown_keys.push(key_of(&p))).map_err(syntax)?;
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

/// An unknown key spelt as errors spell keys (`mailbox[0].prot`, `smtp.usrename`), not as
/// serde_ignored does (`mailbox.0.prot`, `smtp.?.usrename`). The depth is that of the
/// known tables plus one: the first unknown key is not looked into.
fn key_of(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_of(parent)),
        Path::Map { parent, key } => match key_of(parent) {
            table if table.is_empty() => key.clone(),
            table => format!("{table}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => key_of(parent),
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

/// The file being checked: errors name it, and relative paths are resolved against its folder.
struct Check<'a> {
    path: &'a Path,
    base: PathBuf,
}

impl<'a> Check<'a> {
    fn new(path: &'a Path) -> Check<'a> {
        Check { path, base: path.parent().map(Path::to_path_buf).unwrap_or_default() }
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), key: key.to_string(), message: message.into() }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        }
    }
}

/// Checks every table in the order of the file, so the first mistake is reported first.
fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let check = Check::new(path);
    let data_dir = check.resolve(raw.data_dir.as_deref().unwrap_or("var"));
    let system_addresses = system_addresses(&check, &raw.system_addresses)?;
    let staff = patterns(&check, "staff", &raw.staff)?;
    let admins = patterns(&check, "admins", &raw.admins)?;
    let token_prefix = token_prefix(&check, raw.case)?;
    let accounts = accounts::accounts(&check, raw.accounts)?;
    let account_access = accounts::account_access(&check, raw.account_access, &accounts)?;
    let limits = limits(&check, raw.limits)?;
    let fsync = raw.storage.fsync;
    let storage = storage::storage(&check, raw.storage)?;
    let mailboxes = raw
        .mailbox
        .into_iter()
        .enumerate()
        .map(|(i, m)| sources::mailbox(&check, i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let maildirs = raw
        .maildir
        .into_iter()
        .enumerate()
        .map(|(i, m)| sources::maildir(&check, i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (smtp, from) = match raw.smtp {
        Some(s) => outgoing::smtp(&check, s).map(|(smtp, from)| (Some(smtp), from))?,
        None => (None, None),
    };
    let outbox = outgoing::outbox(&check, raw.outbox);
    let notify = outgoing::notify(&check, raw.notify, &staff, &system_addresses)?;
    let (survey, legacy_web_keys) = survey::survey(raw.survey);
    let web = web::web(&check, raw.web, legacy_web_keys)?;
    let bounces = bounces::bounces(&check, raw.bounces)?;
    let spam = spam::spam(&check, raw.spam)?;
    let instance_id = instance_id(&check, raw.instance_id, &system_addresses)?;
    let metrics = metrics::metrics(&check, raw.metrics)?;
    let log = log::log(&check, raw.log)?;
    let retention = retention::retention(&check, raw.retention)?;
    let workflow = workflow::workflow(&check, raw.workflow)?;

    Ok(Config {
        path: path.to_path_buf(),
        data_dir,
        system_addresses,
        staff,
        admins,
        authserv_id: raw.authserv_id.filter(|s| !s.trim().is_empty()),
        instance_id,
        tokens: crate::case::token::TokenMatcher::new(&token_prefix),
        token_prefix,
        accounts,
        account_access,
        max_message_bytes: limits.max_message_bytes,
        max_watchers_per_mail: limits.max_watchers_per_mail,
        auto_replies_per_address_per_day: limits.auto_replies_per_address_per_day,
        case_exchange_limit: limits.case_exchange_limit,
        case_exchange_window: limits.case_exchange_window,
        fsync,
        storage,
        from,
        templates_dir: raw.templates_dir.as_deref().map(|d| check.resolve(d)),
        mailboxes,
        maildirs,
        smtp,
        outbox,
        notify,
        survey,
        web,
        bounces,
        spam,
        metrics,
        log,
        retention,
        workflow,
        unknown_keys: Vec::new(),
    })
}

/// `system_addresses`: at least one, each a mail address.
fn system_addresses(check: &Check, list: &[String]) -> Result<Vec<Address>, ConfigError> {
    if list.is_empty() {
        return Err(
            check.invalid("system_addresses", "must list at least one support address, e.g. [\"support@example.com\"]")
        );
    }
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            Address::parse(s).ok_or_else(|| {
                check.invalid(&format!("system_addresses[{i}]"), format!("{s:?} is not an email address"))
            })
        })
        .collect()
}

/// `staff` or `admins`: addresses or `@domain` entries.
fn patterns(check: &Check, key: &str, list: &[String]) -> Result<Vec<AddressPattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            AddressPattern::parse(s).ok_or_else(|| {
                check.invalid(&format!("{key}[{i}]"), format!("{s:?} is neither an address nor an @domain entry"))
            })
        })
        .collect()
}

/// `instance_id`, by default the domain of the first system address; it goes into a mail
/// header, so only characters that need no quoting there.
fn instance_id(check: &Check, raw: Option<String>, system_addresses: &[Address]) -> Result<String, ConfigError> {
    let id = raw.unwrap_or_else(|| system_addresses[0].domain().to_string());
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err(check.invalid("instance_id", "use letters, digits, '-', '.' or '_'"));
    }
    Ok(id)
}

/// `[case]`: the prefix of case ids, which must be easy to find again in a subject.
fn token_prefix(check: &Check, case: RawCase) -> Result<String, ConfigError> {
    let prefix = case.token_prefix.unwrap_or_else(|| "CASE".into());
    if prefix.is_empty() || prefix.len() > 16 || !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(check
            .invalid("case.token_prefix", format!("{prefix:?} must be 1-16 ASCII letters or digits, e.g. \"CASE\"")));
    }
    Ok(prefix)
}

/// `[limits]`, checked.
struct Limits {
    max_message_bytes: usize,
    max_watchers_per_mail: usize,
    auto_replies_per_address_per_day: u32,
    case_exchange_limit: u32,
    case_exchange_window: std::time::Duration,
}

fn limits(check: &Check, raw: RawLimits) -> Result<Limits, ConfigError> {
    let max_message_bytes = raw.max_message_bytes.unwrap_or(25 * 1024 * 1024);
    if max_message_bytes < 1024 {
        return Err(check.invalid(
            "limits.max_message_bytes",
            format!("{max_message_bytes} is too small; the default is 26214400 (25 MiB)"),
        ));
    }
    let max_watchers_per_mail = raw.max_watchers_per_mail.unwrap_or(DEFAULT_MAX_WATCHERS_PER_MAIL as u64);
    if max_watchers_per_mail == 0 {
        return Err(check.invalid(
            "limits.max_watchers_per_mail",
            format!("0 would add no watcher at all; the default is {DEFAULT_MAX_WATCHERS_PER_MAIL}"),
        ));
    }
    let auto_replies_per_address_per_day =
        raw.auto_replies_per_address_per_day.unwrap_or(DEFAULT_AUTO_REPLIES_PER_ADDRESS_PER_DAY);
    let case_exchange_limit = raw.case_exchange_limit.unwrap_or(4);
    if case_exchange_limit < 2 {
        return Err(check.invalid(
            "limits.case_exchange_limit",
            format!("{case_exchange_limit} would brake an ordinary conversation; the default is 4"),
        ));
    }
    let minutes = raw.case_exchange_minutes.unwrap_or(10);
    if minutes == 0 {
        return Err(check.invalid("limits.case_exchange_minutes", "must be at least 1; the default is 10"));
    }
    Ok(Limits {
        max_message_bytes: usize::try_from(max_message_bytes).unwrap_or(usize::MAX),
        max_watchers_per_mail: usize::try_from(max_watchers_per_mail).unwrap_or(usize::MAX),
        auto_replies_per_address_per_day,
        case_exchange_limit,
        case_exchange_window: std::time::Duration::from_secs(minutes.saturating_mul(60)),
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
        let err = c.mailboxes[0].server.read_password(&c.path).unwrap_err().to_string();
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
