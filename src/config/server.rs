//! The keys `[[mailbox]]` and `[smtp]` share: where the server is, how the connection is
//! secured, how casegate signs in, how long it waits. One function reads them for both
//! tables, so both accept the same keys and report the same mistake in the same words;
//! only the defaults and whether signing in is required differ ([`Protocol`]). Signing in
//! is by password or, with `auth = "oauth2"`, by OAuth2 access tokens (`super::oauth2`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::oauth2::{OAuth2Config, RawOAuth2};
use super::secret::RawSecret;
use super::{Check, ConfigError, Secret};

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

/// A server casegate talks to: an IMAP server (`[[mailbox]]`) or the SMTP server (`[smtp]`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The table this came from, as errors name it: `mailbox[0]` or `smtp`.
    pub table: String,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// Who casegate signs in as. Every `[[mailbox]]` has one; `[smtp]` without one sends
    /// without AUTH (a relay that trusts this host).
    pub username: Option<String>,
    /// How casegate proves it is `username`.
    pub auth: Auth,
    /// Extra CA certificate (PEM) to trust, e.g. for a self-signed test server.
    pub ca_file: Option<PathBuf>,
    /// Timeout of every network step (connect, greeting, TLS, sign-in, each command).
    pub timeout: Duration,
}

/// How casegate signs in, read and checked in one place for both tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A password from `password_env`, `password_file` or `password`. `None` when none is
    /// configured, which only `[smtp]` allows.
    Password(Option<Secret>),
    /// `auth = "oauth2"`: access tokens from the `oauth2` table's provider, presented with
    /// SASL XOAUTH2 or OAUTHBEARER.
    OAuth2(Box<OAuth2Config>),
}

/// The `auth` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Password,
    Oauth2,
}

impl ServerConfig {
    /// Where the password comes from, when casegate signs in with one.
    pub fn password(&self) -> Option<&Secret> {
        match &self.auth {
            Auth::Password(secret) => secret.as_ref(),
            Auth::OAuth2(_) => None,
        }
    }

    /// The OAuth2 settings, when casegate signs in with tokens.
    pub fn oauth2(&self) -> Option<&OAuth2Config> {
        match &self.auth {
            Auth::OAuth2(o) => Some(o),
            Auth::Password(_) => None,
        }
    }

    /// Reads the password now. The error names the key to set, or the variable or file
    /// that could not be read.
    pub fn read_password(&self, config_path: &Path) -> Result<String, ConfigError> {
        match self.password() {
            Some(secret) => secret.read(config_path),
            None => Err(ConfigError::Invalid {
                path: config_path.to_path_buf(),
                key: format!("{}.password_env", self.table),
                message: format!("{PASSWORD_KEYS} is required"),
            }),
        }
    }
}

/// What differs between the protocols sharing [`ServerConfig`].
pub(super) struct Protocol {
    pub default_tls: Tls,
    /// The well-known port for the chosen `tls`.
    pub default_port: fn(Tls) -> u16,
    /// IMAP cannot open a folder without signing in; SMTP may send without AUTH.
    pub sign_in_required: bool,
}

pub(super) const IMAP: Protocol = Protocol {
    default_tls: Tls::Tls,
    default_port: |tls| if tls == Tls::Tls { 993 } else { 143 },
    sign_in_required: true,
};

pub(super) const SMTP: Protocol = Protocol {
    default_tls: Tls::Starttls,
    default_port: |tls| match tls {
        Tls::Tls => 465,
        Tls::Starttls => 587,
        Tls::None => 25,
    },
    sign_in_required: false,
};

const PASSWORD_KEYS: &str = "one of password_env, password_file or password";

/// The server keys as written. Each table declares them among its own keys rather than
/// through `#[serde(flatten)]`, which would silently swallow misspelt keys (no warning)
/// and lose the line of a wrongly typed value.
pub(super) struct RawServer {
    pub host: Option<String>,
    /// Wider than a port, so that 70000 is reported with its key rather than as a type error.
    pub port: Option<i64>,
    pub tls: Option<Tls>,
    pub username: Option<String>,
    pub password: RawSecret,
    pub auth: Option<AuthMethod>,
    pub oauth2: Option<RawOAuth2>,
    pub ca_file: Option<String>,
    pub timeout_secs: Option<u64>,
}

impl ServerConfig {
    /// Checks the server keys of `table` (`mailbox[0]`, `smtp`) and fills in the defaults
    /// of `protocol`.
    pub(super) fn validate(
        check: &Check,
        table: &str,
        raw: RawServer,
        protocol: &Protocol,
    ) -> Result<ServerConfig, ConfigError> {
        let key = |name: &str| format!("{table}.{name}");
        let host = raw.host.ok_or_else(|| check.invalid(&key("host"), "is required"))?;
        let tls = raw.tls.unwrap_or(protocol.default_tls);
        let port = match raw.port {
            None => (protocol.default_port)(tls),
            Some(port) => u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
                check.invalid(
                    &key("port"),
                    format!("{port} is not a TCP port: use 1-65535, or leave it out for the usual port of `tls`"),
                )
            })?,
        };
        if protocol.sign_in_required && raw.username.is_none() {
            return Err(check.invalid(&key("username"), "is required"));
        }
        let auth = auth(check, table, raw.auth, raw.oauth2, raw.password, raw.username.is_some(), protocol)?;
        Ok(ServerConfig {
            table: table.to_string(),
            host,
            port,
            tls,
            username: raw.username,
            auth,
            ca_file: raw.ca_file.as_deref().map(|f| check.resolve(f)),
            timeout: Duration::from_secs(raw.timeout_secs.unwrap_or(30).max(1)),
        })
    }
}

/// `auth` with either the password keys or the `oauth2` table: one way of signing in.
fn auth(
    check: &Check,
    table: &str,
    method: Option<AuthMethod>,
    oauth2: Option<RawOAuth2>,
    password: RawSecret,
    has_username: bool,
    protocol: &Protocol,
) -> Result<Auth, ConfigError> {
    let key = |name: &str| format!("{table}.{name}");
    let password = check.secret(table, "password", password)?;
    match (method.unwrap_or(AuthMethod::Password), oauth2) {
        (AuthMethod::Password, Some(_)) => Err(check.invalid(
            &key("auth"),
            format!(
                "[{table}.oauth2] is given, so set auth = \"oauth2\" (or remove the table to sign in with a password)"
            ),
        )),
        (AuthMethod::Password, None) => {
            if protocol.sign_in_required && password.is_none() {
                return Err(check.invalid(&key("password_env"), format!("{PASSWORD_KEYS} is required")));
            }
            if password.is_some() && !has_username {
                return Err(check.invalid(&key("username"), "is required when a password is configured"));
            }
            Ok(Auth::Password(password))
        }
        (AuthMethod::Oauth2, None) => Err(check.invalid(
            &key("oauth2"),
            format!("auth = \"oauth2\" needs a [{table}.oauth2] table (provider, client_id, …; see docs/oauth2.md)"),
        )),
        (AuthMethod::Oauth2, Some(raw)) => {
            if let Some(secret) = &password {
                let name = match secret {
                    Secret::Env { .. } => "password_env",
                    Secret::File { .. } => "password_file",
                    Secret::Inline { .. } => "password",
                };
                return Err(check.invalid(&key(name), "is not used with auth = \"oauth2\"; remove it"));
            }
            if !has_username {
                return Err(
                    check.invalid(&key("username"), "is required with auth = \"oauth2\": the mailbox to sign in to")
                );
            }
            Ok(Auth::OAuth2(Box::new(super::oauth2::oauth2(check, table, raw)?)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const TOP: &str = "system_addresses = [\"support@example.com\"]\n";
    const MAILBOX: &str = "[[mailbox]]\nhost = \"imap.example.com\"\nusername = \"u\"\npassword = \"p\"\n";
    const SMTP_TABLE: &str = "[smtp]\nhost = \"smtp.example.com\"\n";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{TOP}{text}"), Path::new("/etc/casegate/casegate.toml"))
    }

    /// The key and the message of an `Invalid` error, after checking it names the file.
    fn invalid(text: &str) -> (String, String) {
        match load(text).expect_err("the config should be refused") {
            ConfigError::Invalid { path, key, message } => {
                assert_eq!(path, Path::new("/etc/casegate/casegate.toml"));
                (key, message)
            }
            other => panic!("expected an error naming a key, got: {other}"),
        }
    }

    #[test]
    fn a_bad_port_is_reported_in_the_same_words_for_mailbox_and_smtp() {
        for port in ["0", "70000", "-1"] {
            let (mailbox_key, mailbox_message) = invalid(&format!("{MAILBOX}port = {port}\n"));
            let (smtp_key, smtp_message) = invalid(&format!("{SMTP_TABLE}port = {port}\n"));
            assert_eq!(mailbox_key, "mailbox[0].port");
            assert_eq!(smtp_key, "smtp.port");
            assert_eq!(mailbox_message, smtp_message, "one wording for both tables");
            assert!(mailbox_message.starts_with(&format!("{port} is not a TCP port")), "{mailbox_message}");
        }
        let err = load(&format!("{MAILBOX}[smtp]\nhost = \"h\"\nport = 70000\n")).unwrap_err().to_string();
        assert!(err.contains("/etc/casegate/casegate.toml") && err.contains("smtp.port"), "{err}");
    }

    #[test]
    fn each_protocol_gets_its_own_default_port_for_the_chosen_tls() {
        let port = |table: &str, tls: &str| {
            let c = load(&format!("{table}tls = \"{tls}\"\n")).unwrap();
            match c.smtp {
                Some(smtp) => smtp.server.port,
                None => c.mailboxes[0].server.port,
            }
        };
        assert_eq!([port(MAILBOX, "tls"), port(MAILBOX, "starttls"), port(MAILBOX, "none")], [993, 143, 143]);
        assert_eq!([port(SMTP_TABLE, "tls"), port(SMTP_TABLE, "starttls"), port(SMTP_TABLE, "none")], [465, 587, 25]);
        let c = load(&format!("{MAILBOX}{SMTP_TABLE}")).unwrap();
        assert_eq!(c.mailboxes[0].server.tls, Tls::Tls);
        assert_eq!(c.smtp.unwrap().server.tls, Tls::Starttls);
        let c = load(&format!("{MAILBOX}port = 1143\ntimeout_secs = 0\nca_file = \"ca.pem\"\n")).unwrap();
        let server = &c.mailboxes[0].server;
        assert_eq!((server.port, server.timeout), (1143, Duration::from_secs(1)));
        assert_eq!(server.ca_file.as_deref(), Some(Path::new("/etc/casegate/ca.pem")));
    }

    #[test]
    fn a_mailbox_must_sign_in_while_smtp_may_send_without_auth() {
        assert_eq!(invalid("[[mailbox]]\nhost = \"h\"\npassword = \"p\"\n").0, "mailbox[0].username");
        let (key, message) = invalid("[[mailbox]]\nhost = \"h\"\nusername = \"u\"\n");
        assert_eq!(key, "mailbox[0].password_env");
        assert!(message.contains("password_file"), "{message}");
        let smtp = load(SMTP_TABLE).unwrap().smtp.unwrap().server;
        assert_eq!((smtp.username, smtp.auth), (None, Auth::Password(None)));
        assert_eq!(invalid(&format!("{SMTP_TABLE}password = \"p\"\n")).0, "smtp.username");
        assert_eq!(invalid("[smtp]\nport = 25\n").0, "smtp.host");
        assert_eq!(invalid("[[mailbox]]\nusername = \"u\"\npassword = \"p\"\n").0, "mailbox[0].host");
    }

    #[test]
    fn a_password_given_twice_is_refused_in_the_same_words_for_both_tables() {
        let twice = "username = \"u\"\npassword = \"p\"\npassword_env = \"CASEGATE_TEST_PASSWORD\"\n";
        let (mailbox_key, mailbox_message) = invalid(&format!("[[mailbox]]\nhost = \"h\"\n{twice}"));
        let (smtp_key, smtp_message) = invalid(&format!("{SMTP_TABLE}{twice}"));
        assert_eq!((mailbox_key.as_str(), smtp_key.as_str()), ("mailbox[0].password", "smtp.password"));
        assert_eq!(mailbox_message, smtp_message);
    }

    #[test]
    fn the_password_is_read_when_asked_and_its_absence_names_the_key() {
        let c = load(&format!(
            "[[mailbox]]\nhost = \"h\"\nusername = \"u\"\npassword_file = \"/nonexistent/imap\"\n{SMTP_TABLE}"
        ))
        .unwrap();
        let err = c.mailboxes[0].server.read_password(&c.path).unwrap_err().to_string();
        assert!(err.contains("mailbox[0].password_file") && err.contains("/nonexistent/imap"), "{err}");
        let err = c.smtp.as_ref().unwrap().server.read_password(&c.path).unwrap_err().to_string();
        assert!(err.contains("smtp.password_env") && err.contains("is required"), "{err}");
        let c = load(MAILBOX).unwrap();
        assert_eq!(c.mailboxes[0].server.read_password(&c.path).unwrap(), "p");
        assert_eq!(c.mailboxes[0].username(), "u");
    }

    #[test]
    fn misspelt_server_keys_are_still_reported_in_both_tables() {
        let mut c = load(&format!("{MAILBOX}prot = 993\n{SMTP_TABLE}usrename = \"u\"\n")).unwrap();
        c.unknown_keys.sort();
        assert_eq!(c.unknown_keys, ["mailbox[0].prot", "smtp.usrename"], "spelt as errors spell keys");
    }
}
