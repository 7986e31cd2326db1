//! The grants: what casegate sends the token endpoint to get an access token.
//!
//! - client credentials: the application's id and secret (app-only access);
//! - refresh token: read from `refresh_token_file` at every refresh (so a new one written
//!   by `casegate oauth authorize` is picked up without a restart); a rotated one is
//!   written back before the access token is used;
//! - JWT bearer: a JWT signed (RS256) with the service account's key, naming the mailbox
//!   user as its subject (Google Workspace domain-wide delegation);
//! - authorization code with PKCE, for `casegate oauth authorize`.
//!
//! Secrets are read when a request is made (a client secret rotated in its file is used
//! at the next refresh) and passed to [`endpoint::post`] as the texts never to quote.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::endpoint::{self, Issued, TokenError};
use super::{token_file, Account};
use crate::config::{Grant, OAuth2Config, Provider};

/// The `grant_type` of RFC 7523.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a signed JWT is good for (Google accepts at most an hour).
const JWT_LIFETIME: Duration = Duration::from_secs(3600);

/// What one account's requests need besides the settings.
pub struct Context<'a> {
    pub http: &'a reqwest::Client,
    pub settings: &'a OAuth2Config,
    /// The mailbox user: the JWT's subject.
    pub username: &'a str,
    pub account: &'a Account,
    pub config_path: &'a Path,
    /// How long to wait for another refresh of the same refresh token file.
    pub lock_wait: Duration,
}

/// A rotated refresh token that could not be written to its file: used instead of the
/// file's (older, probably dead) one for as long as the file still holds that one.
#[derive(Default)]
pub struct Unsaved {
    /// (what the file held when the write failed, the token that should have replaced it)
    pending: Option<(String, String)>,
}

/// Asks the token endpoint for an access token with the configured grant.
pub async fn obtain(cx: &Context<'_>, unsaved: &mut Unsaved) -> Result<Issued, TokenError> {
    match &cx.settings.grant {
        Grant::ClientCredentials => client_credentials(cx).await,
        Grant::RefreshToken { file } => refresh(cx, file, unsaved).await,
        Grant::JwtBearer { key_file } => jwt_bearer(cx, key_file).await,
    }
}

fn client_secret(cx: &Context<'_>) -> Result<Option<String>, TokenError> {
    match &cx.settings.client_secret {
        Some(secret) => secret.read(cx.config_path).map(Some).map_err(|e| TokenError::Local(e.to_string())),
        None => Ok(None),
    }
}

/// The fields every grant but the JWT one sends: client id, secret and scope.
fn client_fields<'a>(settings: &'a OAuth2Config, secret: &'a Option<String>) -> Vec<(&'static str, &'a str)> {
    let mut form = Vec::new();
    if let Some(id) = &settings.client_id {
        form.push(("client_id", id.as_str()));
    }
    if let Some(secret) = secret {
        form.push(("client_secret", secret.as_str()));
    }
    if let Some(scope) = &settings.scope {
        form.push(("scope", scope.as_str()));
    }
    form
}

async fn client_credentials(cx: &Context<'_>) -> Result<Issued, TokenError> {
    let secret = client_secret(cx)?;
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend(client_fields(cx.settings, &secret));
    let secrets = [secret.as_deref().unwrap_or_default()];
    let advice = "the application's own credentials were refused as a grant; check client_id and the tenant";
    endpoint::post(cx.http, &cx.settings.token_url, &form, &secrets, advice).await
}

async fn refresh(cx: &Context<'_>, file: &Path, unsaved: &mut Unsaved) -> Result<Issued, TokenError> {
    let command = cx.account.authorize_command();
    let _lock = token_file::lock(file, cx.lock_wait).await.map_err(TokenError::Local)?;
    let on_disk = token_file::read(file, &command).map_err(TokenError::Local)?;
    let current = match &unsaved.pending {
        Some((was, newer)) if *was == on_disk => newer.clone(),
        _ => on_disk.clone(),
    };
    let secret = client_secret(cx)?;
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", current.as_str())];
    form.extend(client_fields(cx.settings, &secret));
    let secrets = [current.as_str(), secret.as_deref().unwrap_or_default()];
    let advice = format!(
        "the refresh token in {} was revoked or has expired (a password change, an administrator, or months \
         without use end it): run `{command}` to sign in again",
        file.display()
    );
    let issued = endpoint::post(cx.http, &cx.settings.token_url, &form, &secrets, &advice).await?;
    if let Some(rotated) = issued.refresh_token.as_deref().filter(|r| *r != current) {
        match token_file::write(file, rotated) {
            Ok(()) => {
                unsaved.pending = None;
                tracing::info!(account = %cx.account.label, file = %file.display(), "Rotated refresh token saved");
            }
            Err(e) => {
                tracing::error!(
                    account = %cx.account.label,
                    file = %file.display(),
                    error = %e,
                    "Cannot save the rotated refresh token: it is kept in memory, but after a restart `{command}` will be needed",
                );
                unsaved.pending = Some((on_disk, rotated.to_string()));
            }
        }
    }
    Ok(issued)
}

/// A Google service-account key file (the JSON the Cloud console downloads).
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
}

/// The JWT's claims (RFC 7523 §3, as Google reads them).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    iat: u64,
    exp: u64,
}

/// Reads the key file and signs the JWT for `username`, issued `now`.
pub fn signed_assertion(
    key_file: &Path,
    settings: &OAuth2Config,
    username: &str,
    now: SystemTime,
) -> Result<String, String> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read service_account_key_file {}: {e}", key_file.display()))?;
    // serde_json's errors name a line and column, never the content.
    let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
        format!(
            "service_account_key_file {} is not a service-account key (JSON with client_email and private_key): {e}",
            key_file.display()
        )
    })?;
    let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
        .map_err(|e| format!("the private_key in {} is not an RSA key in PEM: {e}", key_file.display()))?;
    let iat = now.duration_since(UNIX_EPOCH).map_err(|_| "the system clock is before 1970".to_string())?.as_secs();
    let claims = Claims {
        iss: &key.client_email,
        sub: username,
        aud: &settings.token_url,
        scope: settings.scope.as_deref(),
        iat,
        exp: iat + JWT_LIFETIME.as_secs(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key.private_key_id;
    jsonwebtoken::encode(&header, &claims, &signing_key).map_err(|e| format!("cannot sign the JWT: {e}"))
}

async fn jwt_bearer(cx: &Context<'_>, key_file: &Path) -> Result<Issued, TokenError> {
    let assertion =
        signed_assertion(key_file, cx.settings, cx.username, SystemTime::now()).map_err(TokenError::Local)?;
    let form = [("grant_type", JWT_BEARER), ("assertion", assertion.as_str())];
    let advice = match cx.settings.provider {
        Provider::Google => format!(
            "check that the service account's key is still active (Google Cloud console, IAM, Service \
             accounts, Keys), that domain-wide delegation is granted to its client ID for the scope {} \
             (Workspace admin console, Security, API controls), that {} is a user of the domain, and that \
             this machine's clock is right",
            cx.settings.scope.as_deref().unwrap_or("https://mail.google.com/"),
            cx.username
        ),
        _ => "the signed JWT was refused: check the key, the delegation to the mailbox user and the clock".into(),
    };
    endpoint::post(cx.http, &cx.settings.token_url, &form, &[assertion.as_str()], &advice).await
}

/// Exchanges an authorization code (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636).
pub async fn exchange_code(
    http: &reqwest::Client,
    settings: &OAuth2Config,
    config_path: &Path,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Issued, TokenError> {
    let secret = match &settings.client_secret {
        Some(s) => Some(s.read(config_path).map_err(|e| TokenError::Local(e.to_string()))?),
        None => None,
    };
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    form.extend(client_fields(settings, &secret).into_iter().filter(|(k, _)| *k != "scope"));
    let secrets = [code, verifier, secret.as_deref().unwrap_or_default()];
    let advice = "the code was refused (it is good for one use and a few minutes only): run the command again";
    endpoint::post(http, &settings.token_url, &form, &secrets, advice).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit RSA key made for this test only (PKCS#8, as Google's key files hold).
    fn test_key(dir: &Path) -> (std::path::PathBuf, String) {
        let key = dir.join("key.pem");
        let status = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&key)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed (scripts/test installs it)");
        assert!(status.success());
        let public = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).output().unwrap();
        assert!(public.status.success());
        (key, String::from_utf8(public.stdout).unwrap())
    }

    #[test]
    fn the_jwt_names_the_service_account_the_mailbox_and_the_token_url_and_verifies_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = test_key(dir.path());
        let key_file = dir.path().join("sa.json");
        let json = serde_json::json!({
            "type": "service_account",
            "client_email": "casegate@project.iam.gserviceaccount.com",
            "private_key_id": "k1",
            "private_key": std::fs::read_to_string(&key).unwrap(),
        });
        std::fs::write(&key_file, json.to_string()).unwrap();
        let settings = OAuth2Config {
            table: "mailbox[0].oauth2".into(),
            provider: Provider::Google,
            token_url: "https://oauth2.googleapis.com/token".into(),
            authorize_url: None,
            client_id: None,
            client_secret: None,
            scope: Some("https://mail.google.com/".into()),
            grant: Grant::JwtBearer { key_file: key_file.clone() },
        };
        let now = SystemTime::now();
        let jwt = signed_assertion(&key_file, &settings, "support@example.com", now).unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (jsonwebtoken::Algorithm::RS256, Some("k1")));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://oauth2.googleapis.com/token"]);
        validation.set_issuer(&["casegate@project.iam.gserviceaccount.com"]);
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
        let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &decoding, &validation).unwrap().claims;
        assert_eq!(claims["sub"], "support@example.com");
        assert_eq!(claims["scope"], "https://mail.google.com/");
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);

        // Another key's public half does not verify it: the signature is real.
        let other_dir = dir.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let (_, other_public) = test_key(&other_dir);
        let other = jsonwebtoken::DecodingKey::from_rsa_pem(other_public.as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&jwt, &other, &validation).is_err());
    }

    #[test]
    fn a_broken_key_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sa.json");
        std::fs::write(&key_file, r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nnotakey"}"#)
            .unwrap();
        let settings = OAuth2Config {
            table: "smtp.oauth2".into(),
            provider: Provider::Google,
            token_url: "https://oauth2.googleapis.com/token".into(),
            authorize_url: None,
            client_id: None,
            client_secret: None,
            scope: None,
            grant: Grant::JwtBearer { key_file: key_file.clone() },
        };
        let err = signed_assertion(&key_file, &settings, "u@example.com", SystemTime::now()).unwrap_err();
        assert!(err.contains("sa.json") && !err.contains("notakey"), "{err}");
        std::fs::write(&key_file, "{").unwrap();
        let err = signed_assertion(&key_file, &settings, "u@example.com", SystemTime::now()).unwrap_err();
        assert!(err.contains("not a service-account key"), "{err}");
    }
}
