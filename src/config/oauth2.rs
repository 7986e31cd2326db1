//! `[mailbox.oauth2]` and `[smtp.oauth2]`: signing in with OAuth2 access tokens instead of
//! a password (`auth = "oauth2"`), as Microsoft 365 and Google Workspace require.
//!
//! The provider presets fill in what every installation of that provider shares (the token
//! and authorization endpoints, the scope); which grant casegate uses follows from the keys
//! given: `service_account_key_file` → JWT bearer (Google domain-wide delegation),
//! `refresh_token_file` → refresh token (delegated access), neither → client credentials
//! (app-only access, the usual choice for a shared Microsoft 365 mailbox).

use std::path::PathBuf;

use serde::Deserialize;

use super::secret::RawSecret;
use super::{Check, ConfigError, Secret};

/// Who issues the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// Microsoft Entra ID (Microsoft 365, Exchange Online), in this tenant (a domain such
    /// as `contoso.onmicrosoft.com`, or the directory's id).
    Microsoft {
        tenant: String,
    },
    Google,
    /// Any other OAuth2 server: `token_url` is required.
    Generic,
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::Microsoft { .. } => "microsoft",
            Provider::Google => "google",
            Provider::Generic => "generic",
        }
    }
}

/// How casegate obtains access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The application signs in as itself with its client secret (RFC 6749 §4.4).
    ClientCredentials,
    /// A refresh token obtained once by `casegate oauth authorize`, kept in this file; a
    /// rotated refresh token is written back to it.
    RefreshToken { file: PathBuf },
    /// A service account's key signs a JWT that asks for the mailbox user (RFC 7523).
    JwtBearer { key_file: PathBuf },
}

impl Grant {
    /// As the grant is called in the protocol and in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::JwtBearer { .. } => "JWT bearer",
        }
    }
}

/// A checked `[….oauth2]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Config {
    /// The table, as errors name it: `mailbox[0].oauth2` or `smtp.oauth2`.
    pub table: String,
    pub provider: Provider,
    pub token_url: String,
    /// Where `casegate oauth authorize` sends the browser; `None` for a generic provider
    /// without `authorize_url`.
    pub authorize_url: Option<String>,
    /// `None` only with a service-account key, whose JWT names the account itself.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// `None`: no scope parameter is sent (a generic provider without `scope`).
    pub scope: Option<String>,
    pub grant: Grant,
}

/// Microsoft's app-only scope: every application permission granted to the app for
/// Exchange Online (IMAP.AccessAsApp, SMTP.SendAsApp).
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// Microsoft's delegated scopes: IMAP and SMTP in one token, and a refresh token.
pub const MICROSOFT_DELEGATED_SCOPE: &str =
    "offline_access https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send";
/// Google's scope for IMAP and SMTP.
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const GOOGLE_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// The keys as written.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct RawOAuth2 {
    provider: Option<String>,
    tenant: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<String>,
    scope: Option<String>,
    refresh_token_file: Option<String>,
    service_account_key_file: Option<String>,
}

/// Checks `[<table>.oauth2]` and fills in the provider's defaults.
pub(super) fn oauth2(check: &Check, table: &str, raw: RawOAuth2) -> Result<OAuth2Config, ConfigError> {
    let table = format!("{table}.oauth2");
    let key = |name: &str| format!("{table}.{name}");
    let provider = provider(check, &table, raw.provider.as_deref(), raw.tenant)?;
    let grant = match (&raw.refresh_token_file, &raw.service_account_key_file) {
        (Some(_), Some(_)) => {
            return Err(check.invalid(
                &key("service_account_key_file"),
                "give either refresh_token_file (delegated access) or service_account_key_file (domain-wide \
                 delegation), not both",
            ))
        }
        (Some(file), None) => Grant::RefreshToken { file: check.resolve(file) },
        (None, Some(file)) if provider == Provider::Google => Grant::JwtBearer { key_file: check.resolve(file) },
        (None, Some(_)) => {
            return Err(check.invalid(
                &key("service_account_key_file"),
                "is for provider = \"google\" only (a Google service account with domain-wide delegation)",
            ))
        }
        (None, None) => Grant::ClientCredentials,
    };
    let secret = RawSecret { inline: raw.client_secret, env: raw.client_secret_env, file: raw.client_secret_file };
    let client_secret = check.secret(&table, "client_secret", secret)?;
    let client_id = raw.client_id.filter(|id| !id.trim().is_empty());
    if client_id.is_none() && !matches!(grant, Grant::JwtBearer { .. }) {
        return Err(
            check.invalid(&key("client_id"), "is required: the application (client) id of the app registration")
        );
    }
    if grant == Grant::ClientCredentials && client_secret.is_none() {
        return Err(check.invalid(
            &key("client_secret_env"),
            "client_secret_env or client_secret_file is required: without refresh_token_file casegate signs in \
             as the application itself (client_credentials grant), with its client secret",
        ));
    }
    let token_url = match (raw.token_url, &provider) {
        (Some(url), _) => endpoint(check, &key("token_url"), url)?,
        (None, Provider::Microsoft { tenant }) => {
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
        }
        (None, Provider::Google) => GOOGLE_TOKEN_URL.to_string(),
        (None, Provider::Generic) => {
            return Err(check.invalid(&key("token_url"), "is required for provider = \"generic\""));
        }
    };
    let authorize_url = match (raw.authorize_url, &provider) {
        (Some(url), _) => Some(endpoint(check, &key("authorize_url"), url)?),
        (None, Provider::Microsoft { tenant }) => {
            Some(format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"))
        }
        (None, Provider::Google) => Some(GOOGLE_AUTHORIZE_URL.to_string()),
        (None, Provider::Generic) => None,
    };
    let scope = raw.scope.filter(|s| !s.trim().is_empty()).or_else(|| default_scope(&provider, &grant));
    Ok(OAuth2Config { table, provider, token_url, authorize_url, client_id, client_secret, scope, grant })
}

/// `provider` and `tenant`: a tenant belongs to Microsoft, and Microsoft needs one.
fn provider(check: &Check, table: &str, name: Option<&str>, tenant: Option<String>) -> Result<Provider, ConfigError> {
    let key = |name: &str| format!("{table}.{name}");
    let tenant = tenant.filter(|t| !t.trim().is_empty());
    match (name, tenant) {
        (Some("microsoft"), Some(tenant)) => {
            if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                return Err(check.invalid(&key("tenant"), format!("{tenant:?} is not a tenant domain or id")));
            }
            Ok(Provider::Microsoft { tenant })
        }
        (Some("microsoft"), None) => Err(check.invalid(
            &key("tenant"),
            "is required for provider = \"microsoft\": the tenant's domain (contoso.onmicrosoft.com) or its \
             directory (tenant) id",
        )),
        (Some("google" | "generic"), Some(_)) => {
            Err(check.invalid(&key("tenant"), "is for provider = \"microsoft\" only"))
        }
        (Some("google"), None) => Ok(Provider::Google),
        (Some("generic"), None) => Ok(Provider::Generic),
        (Some(other), _) => {
            Err(check.invalid(&key("provider"), format!("{other:?} is not one of microsoft, google, generic")))
        }
        (None, _) => Err(check.invalid(&key("provider"), "is required: microsoft, google or generic")),
    }
}

/// What each provider needs for mail, for the grant in use.
fn default_scope(provider: &Provider, grant: &Grant) -> Option<String> {
    match (provider, grant) {
        (Provider::Microsoft { .. }, Grant::ClientCredentials) => Some(MICROSOFT_APP_SCOPE.into()),
        (Provider::Microsoft { .. }, _) => Some(MICROSOFT_DELEGATED_SCOPE.into()),
        (Provider::Google, _) => Some(GOOGLE_SCOPE.into()),
        (Provider::Generic, _) => None,
    }
}

/// An endpoint URL: client secrets and tokens go there, so `https://`, or `http://` to
/// this machine only (a local test server, a proxy on loopback).
fn endpoint(check: &Check, key: &str, text: String) -> Result<String, ConfigError> {
    let url = url::Url::parse(&text).map_err(|e| check.invalid(key, format!("{text:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(text),
        "http" if loopback => Ok(text),
        _ => Err(check.invalid(
            key,
            format!("{text:?} must be an https:// URL (http:// only to 127.0.0.1 or localhost): secrets go there"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Auth, Config};

    const TOP: &str = "system_addresses = [\"support@example.com\"]\n";
    const MAILBOX: &str =
        "[[mailbox]]\nname = \"support\"\nhost = \"outlook.office365.com\"\nusername = \"support@contoso.com\"\nauth = \"oauth2\"\n";

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{TOP}{text}"), Path::new("/etc/casegate/casegate.toml"))
    }

    fn oauth(text: &str) -> OAuth2Config {
        let c = load(text).unwrap_or_else(|e| panic!("{e}"));
        match &c.mailboxes[0].server.auth {
            Auth::OAuth2(o) => (**o).clone(),
            other => panic!("expected OAuth2, got {other:?}"),
        }
    }

    fn refused(text: &str) -> (String, String) {
        match load(text).expect_err("the config should be refused") {
            ConfigError::Invalid { key, message, .. } => (key, message),
            other => panic!("expected an error naming a key, got: {other}"),
        }
    }

    #[test]
    fn microsoft_without_a_refresh_token_is_app_only_access_with_the_exchange_default_scope() {
        let o = oauth(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"app\"\nclient_secret_env = \"CASEGATE_OAUTH_SECRET\"\n"
        ));
        assert_eq!(o.table, "mailbox[0].oauth2");
        assert_eq!(o.grant, Grant::ClientCredentials);
        assert_eq!(o.token_url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_eq!(o.scope.as_deref(), Some(MICROSOFT_APP_SCOPE));
        assert_eq!(
            o.client_secret,
            Some(Secret::Env {
                var: "CASEGATE_OAUTH_SECRET".into(),
                key: "mailbox[0].oauth2.client_secret_env".into()
            })
        );
    }

    #[test]
    fn a_refresh_token_file_means_delegated_access_and_is_resolved_beside_the_config() {
        let o = oauth(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"app\"\nrefresh_token_file = \"support.token\"\n"
        ));
        assert_eq!(o.grant, Grant::RefreshToken { file: PathBuf::from("/etc/casegate/support.token") });
        assert_eq!(o.scope.as_deref(), Some(MICROSOFT_DELEGATED_SCOPE));
        assert!(o.authorize_url.unwrap().ends_with("/contoso.onmicrosoft.com/oauth2/v2.0/authorize"));
    }

    #[test]
    fn google_takes_a_service_account_key_and_an_overridden_token_url() {
        let o = oauth(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"google\"\nservice_account_key_file = \"/etc/casegate/key.json\"\n\
             token_url = \"http://127.0.0.1:8080/token\"\n"
        ));
        assert_eq!(o.grant, Grant::JwtBearer { key_file: PathBuf::from("/etc/casegate/key.json") });
        assert_eq!((o.client_id, o.scope.as_deref()), (None, Some(GOOGLE_SCOPE)));
        assert_eq!(o.token_url, "http://127.0.0.1:8080/token");
    }

    #[test]
    fn generic_needs_a_token_url_and_sends_no_scope_unless_given() {
        let (key, message) = refused(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"generic\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        ));
        assert_eq!(key, "mailbox[0].oauth2.token_url");
        assert!(message.contains("generic"), "{message}");
        let o = oauth(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"generic\"\ntoken_url = \"https://sso.example.com/token\"\n\
             client_id = \"c\"\nclient_secret = \"s\"\n"
        ));
        assert_eq!((o.scope, o.authorize_url), (None, None));
    }

    #[test]
    fn mistakes_are_named_by_their_key() {
        let base = |extra: &str| format!("{MAILBOX}[mailbox.oauth2]\n{extra}");
        let cases = [
            ("client_id = \"c\"\nclient_secret = \"s\"\n", "mailbox[0].oauth2.provider"),
            ("provider = \"azure\"\nclient_id = \"c\"\n", "mailbox[0].oauth2.provider"),
            ("provider = \"microsoft\"\nclient_id = \"c\"\nclient_secret = \"s\"\n", "mailbox[0].oauth2.tenant"),
            ("provider = \"google\"\ntenant = \"t\"\nclient_id = \"c\"\n", "mailbox[0].oauth2.tenant"),
            ("provider = \"google\"\nrefresh_token_file = \"f\"\n", "mailbox[0].oauth2.client_id"),
            ("provider = \"google\"\nclient_id = \"c\"\n", "mailbox[0].oauth2.client_secret_env"),
            (
                "provider = \"generic\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntoken_url = \"http://sso.example.com/t\"\n",
                "mailbox[0].oauth2.token_url",
            ),
            (
                "provider = \"generic\"\nservice_account_key_file = \"k\"\ntoken_url = \"https://x.example/t\"\n",
                "mailbox[0].oauth2.service_account_key_file",
            ),
            (
                "provider = \"google\"\nservice_account_key_file = \"k\"\nrefresh_token_file = \"f\"\n",
                "mailbox[0].oauth2.service_account_key_file",
            ),
            (
                "provider = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\nclient_secret_env = \"E\"\n",
                "mailbox[0].oauth2.client_secret",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(refused(&base(extra)).0, want, "{extra}");
        }
    }

    #[test]
    fn auth_and_the_table_go_together_and_passwords_are_not_mixed_in() {
        let table = "[mailbox.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nrefresh_token_file = \"f\"\n";
        let (key, message) = refused(MAILBOX);
        assert_eq!(key, "mailbox[0].oauth2");
        assert!(message.contains("auth = \"oauth2\""), "{message}");
        let no_auth = MAILBOX.replace("auth = \"oauth2\"\n", "password = \"p\"\n");
        assert_eq!(refused(&format!("{no_auth}{table}")).0, "mailbox[0].auth");
        let both = MAILBOX.replace("auth = \"oauth2\"\n", "auth = \"oauth2\"\npassword_env = \"P\"\n");
        assert_eq!(refused(&format!("{both}{table}")).0, "mailbox[0].password_env");
        let smtp = "[smtp]\nhost = \"smtp.gmail.com\"\nauth = \"oauth2\"\n[smtp.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nrefresh_token_file = \"f\"\n";
        assert_eq!(refused(smtp).0, "smtp.username");
        let c = load(&smtp.replace("auth = ", "username = \"support@example.com\"\nauth = ")).unwrap();
        let smtp = c.smtp.unwrap().server;
        assert!(matches!(&smtp.auth, Auth::OAuth2(o) if o.table == "smtp.oauth2"));
        assert_eq!(smtp.password(), None);
    }

    #[test]
    fn misspelt_oauth2_keys_are_reported_with_their_table() {
        let c = load(&format!(
            "{MAILBOX}[mailbox.oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nrefresh_token_fil = \"f\"\nclient_secret = \"s\"\n"
        ))
        .unwrap();
        assert_eq!(c.unknown_keys, ["mailbox[0].oauth2.refresh_token_fil"]);
    }
}
