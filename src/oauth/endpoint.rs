//! The token endpoint: one form POST, and its answer sorted into what the operator must
//! do — nothing (a network error: retried later), fix the client secret
//! (`invalid_client`), obtain a new refresh token or fix the delegation
//! (`invalid_grant`), or something else the endpoint names.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::redact;

/// The largest token endpoint answer read (real ones are a few KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest text of the endpoint's quoted in an error.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// An access token. Its value is shown only to the SASL exchange: `Debug` and `Display`
/// hide it, so it cannot slip into a log line or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(Arc<str>);

impl Bearer {
    pub fn new(value: &str) -> Bearer {
        Bearer(Arc::from(value))
    }

    /// The token itself, for the SASL exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bearer(<{} bytes>)", self.0.len())
    }
}

/// What the token endpoint issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: Bearer,
    /// `expires_in`, when the endpoint said.
    pub expires_in: Option<Duration>,
    /// A new refresh token (rotation), when the endpoint sent one.
    pub refresh_token: Option<String>,
}

/// Why no token was obtained, in the operator's terms. Every text is free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// `invalid_client`: the endpoint does not accept the application's credentials.
    #[error(
        "{endpoint} refused the application (invalid_client{}): the client secret is wrong or has expired \
         (Microsoft Entra ID secrets expire: create a new one under the app registration's Certificates & \
         secrets and update client_secret_env/client_secret_file), or client_id is not the application's",
        described(.description)
    )]
    InvalidClient { endpoint: String, description: String },
    /// `invalid_grant`: the refresh token, the JWT or the code was refused; `what_to_do`
    /// says how to get a good one.
    #[error("{endpoint} refused the grant (invalid_grant{}): {what_to_do}", described(.description))]
    InvalidGrant { endpoint: String, description: String, what_to_do: String },
    /// Another OAuth2 error the endpoint named (`invalid_scope`, `unauthorized_client`…).
    #[error("{endpoint} refused the token request ({code}{})", described(.description))]
    Refused { endpoint: String, code: String, description: String },
    /// The endpoint could not be reached or answered with a server error: retried later.
    #[error("cannot get a token from {endpoint}: {reason} (retried with backoff)")]
    Unavailable { endpoint: String, reason: String },
    /// Something on this machine: a secret, the refresh token file, the key file.
    #[error("{0}")]
    Local(String),
}

impl TokenError {
    /// Whether waiting may help by itself (network, server errors), as opposed to
    /// something an administrator must change.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

fn described(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(": {description}")
    }
}

/// POSTs `form` to `url` and reads the answer. `secrets` are the values in the form
/// that must never be quoted back; `what_to_do` is the advice for `invalid_grant`.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    secrets: &[&str],
    what_to_do: &str,
) -> Result<Issued, TokenError> {
    let unavailable = |reason: String| TokenError::Unavailable { endpoint: url.to_string(), reason };
    let mut response = http
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(|e| unavailable(redact(&error_chain(&e), secrets)))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => body.extend_from_slice(&chunk),
            Ok(Some(_)) => return Err(unavailable(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"))),
            Ok(None) => break,
            Err(e) => return Err(unavailable(redact(&error_chain(&e), secrets))),
        }
    }
    answer(url, status, &body, secrets, what_to_do)
}

/// An error with its causes (reqwest's own text says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Sorts the endpoint's answer (RFC 6749 §5.1, §5.2).
pub fn answer(
    endpoint: &str,
    status: u16,
    body: &[u8],
    secrets: &[&str],
    what_to_do: &str,
) -> Result<Issued, TokenError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).unwrap_or_default();
    let endpoint = endpoint.to_string();
    if (200..300).contains(&status) {
        let token = field("access_token");
        if token.is_empty() {
            return Err(TokenError::Refused {
                endpoint,
                code: "no access_token".into(),
                description: format!("HTTP {status} without an access token in JSON"),
            });
        }
        let token_type = field("token_type");
        if !token_type.is_empty() && !token_type.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Refused {
                endpoint,
                code: "unsupported token_type".into(),
                description: format!("{token_type:?} is not a bearer token"),
            });
        }
        let expires_in = json.as_ref().and_then(|j| j.get("expires_in")).and_then(seconds);
        let refresh_token = Some(field("refresh_token").to_string()).filter(|r| !r.is_empty());
        return Ok(Issued { access_token: Bearer::new(token), expires_in, refresh_token });
    }
    let description = clean(field("error_description"), secrets);
    match field("error") {
        "invalid_client" => Err(TokenError::InvalidClient { endpoint, description }),
        "invalid_grant" => Err(TokenError::InvalidGrant { endpoint, description, what_to_do: what_to_do.into() }),
        "temporarily_unavailable" | "server_error" => {
            Err(TokenError::Unavailable { endpoint, reason: format!("HTTP {status}{}", described(&description)) })
        }
        "" if status >= 500 || status == 429 || status == 408 => {
            Err(TokenError::Unavailable { endpoint, reason: format!("HTTP {status}") })
        }
        "" if status == 401 => Err(TokenError::InvalidClient { endpoint, description: format!("HTTP {status}") }),
        "" => Err(TokenError::Refused { endpoint, code: format!("HTTP {status}"), description }),
        code => Err(TokenError::Refused { endpoint, code: clean(code, secrets), description }),
    }
}

/// `expires_in` as a number or, as some servers send it, a string of digits.
fn seconds(v: &Value) -> Option<Duration> {
    let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(Duration::from_secs(n))
}

/// A text of the endpoint's, fit for an error: one line, bounded, secrets removed.
fn clean(text: &str, secrets: &[&str]) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redact(&one_line, secrets);
    match redacted.char_indices().nth(MAX_DESCRIPTION_CHARS) {
        Some((at, _)) => format!("{}…", &redacted[..at]),
        None => redacted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://login.example/token";

    fn sorted(status: u16, body: &str) -> Result<Issued, TokenError> {
        answer(URL, status, body.as_bytes(), &["s3cret-value", "refresh-abc"], "run casegate oauth authorize --smtp")
    }

    #[test]
    fn a_token_answer_gives_the_token_its_lifetime_and_a_rotated_refresh_token() {
        let issued =
            sorted(200, r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"refresh_token":"rt-2"}"#)
                .unwrap();
        assert_eq!(issued.access_token.expose(), "at-1");
        assert_eq!(issued.expires_in, Some(Duration::from_secs(3599)));
        assert_eq!(issued.refresh_token.as_deref(), Some("rt-2"));
        let issued = sorted(200, r#"{"access_token":"at-1","expires_in":"60"}"#).unwrap();
        assert_eq!((issued.expires_in, issued.refresh_token), (Some(Duration::from_secs(60)), None));
        assert!(matches!(sorted(200, r#"{"token_type":"Bearer"}"#), Err(TokenError::Refused { .. })));
        assert!(matches!(sorted(200, r#"{"access_token":"x","token_type":"mac"}"#), Err(TokenError::Refused { .. })));
    }

    #[test]
    fn errors_are_told_apart_and_say_what_to_do() {
        let e = sorted(401, r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys are expired."}"#).unwrap_err();
        assert!(matches!(e, TokenError::InvalidClient { .. }) && !e.is_transient());
        let text = e.to_string();
        assert!(text.contains("AADSTS7000222") && text.contains("client secret") && text.contains(URL), "{text}");

        let e = sorted(400, r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#).unwrap_err();
        assert!(e.to_string().contains("casegate oauth authorize --smtp"), "{e}");
        assert!(matches!(e, TokenError::InvalidGrant { .. }));

        let e = sorted(400, r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!(e.to_string(), format!("{URL} refused the token request (invalid_scope)"));
        for (status, body) in [(503, "<html>busy</html>"), (400, r#"{"error":"temporarily_unavailable"}"#), (429, "")] {
            assert!(sorted(status, body).unwrap_err().is_transient(), "{status} {body}");
        }
        assert!(matches!(sorted(401, "Unauthorized"), Err(TokenError::InvalidClient { .. })));
        assert!(matches!(sorted(404, "not here"), Err(TokenError::Refused { .. })));
    }

    #[test]
    fn secrets_never_come_back_in_errors_and_tokens_never_print() {
        let body =
            r#"{"error":"invalid_grant","error_description":"token refresh-abc unknown; secret s3cret-value wrong"}"#;
        let text = sorted(400, body).unwrap_err().to_string();
        assert!(!text.contains("refresh-abc") && !text.contains("s3cret-value"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        let long = format!(r#"{{"error":"invalid_request","error_description":"{}"}}"#, "x ".repeat(1000));
        assert!(sorted(400, &long).unwrap_err().to_string().len() < 1000);
        let shown = format!("{:?}", Bearer::new("eyJ0eXAiOiJKV1Qi"));
        assert!(!shown.contains("eyJ0"), "{shown}");
    }
}
