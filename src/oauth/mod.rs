//! OAuth2 sign-in for IMAP and SMTP (`auth = "oauth2"`), as Microsoft 365 and Google
//! Workspace require.
//!
//! ```text
//! TokenSource (one per mailbox, one for [smtp])          cache
//!   token(): the cached access token while fresh, else one request at a time:
//!     grant ── client_credentials | refresh_token (rotation written back) | JWT bearer
//!          └─ endpoint: POST token_url, the answer sorted into TokenError
//!   renew(refused): a login refused a token that should be valid: drop it, fetch once more
//! imap::sign_in / smtp::sign_in: what the server announces → XOAUTH2 or OAUTHBEARER (sasl),
//!   the server's JSON error challenge answered and reported with advice for the provider
//! authorize: `casegate oauth authorize` — authorization code with PKCE, loopback redirect
//! ```
//!
//! Tokens are cached in memory only and shared by every connection of the account (the
//! IMAP fetching and marking connections, the SMTP pool), so reconnects re-use a valid
//! token and a burst of connections asks the token endpoint once. A failed token request
//! holds further requests of that account off with the usual capped backoff
//! ([`crate::backoff`]): whatever the callers do, the token endpoint is never asked in a
//! tight loop.
//!
//! Secrets (client secret, refresh tokens, keys) and access tokens never appear in logs,
//! errors or JSON: [`Bearer`] does not print its value, and texts from the token endpoint
//! are cleaned of every secret the request carried ([`redact`]).
//!
//! This module sits below `source` and `notify`, which sign in through it, and uses only
//! `config` and `backoff`.

mod advice;
pub mod authorize;
mod cache;
mod endpoint;
mod grant;
pub mod imap;
pub mod sasl;
pub mod smtp;
pub mod token_file;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use advice::Protocol;
pub use cache::{AccessToken, TokenSource};
pub use endpoint::{Bearer, TokenError};
pub use sasl::Mechanism;

use crate::config::{Auth, ConfigError, ServerConfig};

/// Which account a token source serves, for messages: what it is called and how the
/// operator obtains its refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `mailbox support` or `smtp`.
    pub label: String,
    /// The arguments of `casegate oauth authorize` for this account.
    pub authorize_args: String,
}

impl Account {
    /// The account as the metrics name it: the mailbox's name, or `smtp`.
    pub fn client(&self) -> &str {
        self.label.strip_prefix("mailbox ").unwrap_or(&self.label)
    }

    pub fn mailbox(name: &str) -> Account {
        let quoted = if name.chars().all(|c| c.is_ascii_alphanumeric() || "-._@/".contains(c)) {
            name.to_string()
        } else {
            format!("'{}'", name.replace('\'', "'\\''"))
        };
        Account { label: format!("mailbox {name}"), authorize_args: format!("--mailbox {quoted}") }
    }

    pub fn smtp() -> Account {
        Account { label: "smtp".into(), authorize_args: "--smtp".into() }
    }

    /// The command that obtains a new refresh token for this account.
    pub fn authorize_command(&self) -> String {
        format!("casegate oauth authorize {}", self.authorize_args)
    }
}

/// How to sign in to one server: read once at start, shared by all its connections.
#[derive(Clone)]
pub enum Credentials {
    /// No sign-in (an SMTP relay that trusts this host).
    None,
    Password {
        user: String,
        password: String,
    },
    OAuth2 {
        user: String,
        tokens: Arc<TokenSource>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("Credentials::None"),
            Credentials::Password { user, .. } => write!(f, "Credentials::Password({user:?}, …)"),
            Credentials::OAuth2 { user, .. } => write!(f, "Credentials::OAuth2({user:?}, …)"),
        }
    }
}

impl Credentials {
    /// Reads what signing in to `server` needs: the password, or for OAuth2 a checked
    /// token source (client secret readable, refresh token file or key present). The
    /// error names the key and what to do.
    pub fn for_server(server: &ServerConfig, config_path: &Path, account: Account) -> Result<Credentials, ConfigError> {
        // A loaded config has a username wherever a password or OAuth2 is configured; an
        // empty one would only be refused by the server.
        let user = server.username.clone().unwrap_or_default();
        match &server.auth {
            Auth::OAuth2(settings) => {
                let tokens = TokenSource::new((**settings).clone(), &user, account, config_path, server.timeout)?;
                Ok(Credentials::OAuth2 { user, tokens: Arc::new(tokens) })
            }
            Auth::Password(Some(_)) => Ok(Credentials::Password { password: server.read_password(config_path)?, user }),
            Auth::Password(None) => Ok(Credentials::None),
        }
    }

    /// Who signs in, if anyone.
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::None => None,
            Credentials::Password { user, .. } | Credentials::OAuth2 { user, .. } => Some(user),
        }
    }
}

/// Why signing in with a token failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No token: the token endpoint's answer or a local problem.
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error(
        "{server} offers no OAuth2 sign-in (neither XOAUTH2 nor OAUTHBEARER; it offers: {offered}): use auth = \"password\" for this server, or ask its administrator"
    )]
    NoMechanism { server: String, offered: String },
    /// The server refused the token; `advice` says what an administrator checks.
    #[error("{server} refused the {mechanism} sign-in of {user:?} (server said: {said})\n  hint: {advice}")]
    Refused { server: String, mechanism: &'static str, user: String, said: String, advice: String },
    /// The exchange itself failed (the connection, a timeout, an odd answer).
    #[error("{0}")]
    Failed(String),
}

/// `text` with every secret of `secrets` (those long enough to be one) replaced: texts
/// from a server may echo what they were sent.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_out_of_server_texts() {
        let text = "AADSTS7000215: Invalid client secret provided. Ensure the secret 'Xy8Q~abc' is right";
        assert_eq!(redact(text, &["Xy8Q~abc", ""]), text.replace("Xy8Q~abc", "[redacted]"));
        assert_eq!(redact("ok", &["o"]), "ok", "too short to be a secret, and it would mangle the text");
    }

    #[test]
    fn accounts_name_the_command_that_authorizes_them() {
        assert_eq!(Account::mailbox("support").authorize_command(), "casegate oauth authorize --mailbox support");
        assert_eq!(Account::mailbox("a b").authorize_command(), "casegate oauth authorize --mailbox 'a b'");
        assert_eq!(Account::smtp().authorize_command(), "casegate oauth authorize --smtp");
        assert_eq!(Account::mailbox("support").label, "mailbox support");
    }
}
