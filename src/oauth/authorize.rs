//! `casegate oauth authorize`: the first refresh token of a delegated account, by the
//! authorization code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252 §7.3).
//!
//! casegate listens on 127.0.0.1 (a free port unless one is given), prints the provider's
//! authorization address for a person to open in any browser, and waits for the browser
//! to come back with the code. The answer must carry the random `state` sent out (else it
//! may be another attempt's or a forged link's, and is refused); a person declining comes
//! back as `error=access_denied`. The code is exchanged, with the PKCE verifier, for the
//! refresh token. The local server reads at most `MAX_REQUEST_BYTES` of a request, each
//! within `REQUEST_TIMEOUT`, answers anything but the redirect with 404, and stops at
//! the deadline.

use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::endpoint::TokenError;
use super::grant;
use crate::config::{OAuth2Config, Provider};

/// The most of one request the loopback server reads.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long one connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A PKCE pair: the verifier stays here, its S256 challenge goes out with the browser.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A new verifier: 64 characters of the unreserved set (RFC 7636 §4.1).
    pub fn new() -> Pkce {
        Pkce::from_verifier(random_text(64))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        let digest = Sha256::digest(verifier.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        Pkce { verifier, challenge }
    }
}

impl Default for Pkce {
    fn default() -> Pkce {
        Pkce::new()
    }
}

/// Random letters and digits (for the PKCE verifier and the state).
pub fn random_text(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// Why no refresh token was obtained, in words for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("the authorization was declined ({error}{}): nothing was saved; run the command again and accept, signed in as the mailbox user", if .description.is_empty() { String::new() } else { format!(": {}", .description) })]
    Declined { error: String, description: String },
    #[error(
        "the answer that reached casegate does not carry the state of this sign-in: it may come from an older          attempt or from a forged link. Nothing was saved; run the command again and use the address it prints"
    )]
    StateMismatch,
    #[error("no answer from the browser within {0} s: nothing was saved; run the command again (--timeout-secs gives more time)")]
    TimedOut(u64),
    #[error("exchanging the authorization code failed: {0}")]
    Exchange(TokenError),
    #[error("{0} gave no refresh token: {1}")]
    NoRefreshToken(String, &'static str),
    #[error("{0}")]
    Setup(String),
}

/// The whole flow: `listener` (on 127.0.0.1) receives the redirect, `show` is given the
/// address to open and the redirect URI, and the refresh token comes back.
pub async fn obtain_refresh_token(
    settings: &OAuth2Config,
    config_path: &std::path::Path,
    user: &str,
    listener: &TcpListener,
    timeout: Duration,
    show: impl FnOnce(&str, &str),
) -> Result<String, AuthorizeError> {
    let authorize_url = settings.authorize_url.as_deref().ok_or_else(|| {
        AuthorizeError::Setup(format!("{}.authorize_url is required for this provider to authorize", settings.table))
    })?;
    let port = listener.local_addr().map_err(|e| AuthorizeError::Setup(e.to_string()))?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/");
    let (state, pkce) = (random_text(32), Pkce::new());
    let url = authorization_url(authorize_url, settings, &redirect_uri, &state, &pkce, user)
        .map_err(|e| AuthorizeError::Setup(format!("{}.authorize_url: {e}", settings.table)))?;
    show(&url, &redirect_uri);
    let code = match wait_for_answer(listener, &state, Instant::now() + timeout).await {
        Answer::Code(code) => code,
        Answer::Declined { error, description } => return Err(AuthorizeError::Declined { error, description }),
        Answer::StateMismatch => return Err(AuthorizeError::StateMismatch),
        Answer::TimedOut => return Err(AuthorizeError::TimedOut(timeout.as_secs())),
    };
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT * 3)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("casegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthorizeError::Setup(format!("cannot set up HTTPS: {e}")))?;
    let issued = grant::exchange_code(&http, settings, config_path, &code, &pkce.verifier, &redirect_uri)
        .await
        .map_err(AuthorizeError::Exchange)?;
    issued.refresh_token.ok_or_else(|| {
        AuthorizeError::NoRefreshToken(
            settings.token_url.clone(),
            match settings.provider {
                Provider::Microsoft { .. } => "the scope must include offline_access",
                Provider::Google => "remove casegate's access in the Google account (Security, Third-party access) and run the command again",
                Provider::Generic => "the scope must allow offline access (often: offline_access)",
            },
        )
    })
}

/// The address the browser opens: the provider's authorization endpoint with the client,
/// the redirect, the scope, the state, the PKCE challenge and, to pre-select the right
/// account, the mailbox user. Google gives a refresh token only with `access_type=offline`
/// (and again only with `prompt=consent`).
pub fn authorization_url(
    authorize_url: &str,
    settings: &OAuth2Config,
    redirect_uri: &str,
    state: &str,
    pkce: &Pkce,
    user: &str,
) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(authorize_url)?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("response_type", "code");
        if let Some(id) = &settings.client_id {
            query.append_pair("client_id", id);
        }
        query.append_pair("redirect_uri", redirect_uri);
        if let Some(scope) = &settings.scope {
            query.append_pair("scope", scope);
        }
        query.append_pair("state", state);
        query.append_pair("code_challenge", &pkce.challenge);
        query.append_pair("code_challenge_method", "S256");
        query.append_pair("login_hint", user);
        if settings.provider == Provider::Google {
            query.append_pair("access_type", "offline");
            query.append_pair("prompt", "consent");
        }
    }
    Ok(url.into())
}

/// How the browser came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Code(String),
    /// The person (or the provider) declined: the `error` and its description.
    Declined {
        error: String,
        description: String,
    },
    /// The state was not the one sent out.
    StateMismatch,
    /// Nobody came back before the deadline.
    TimedOut,
}

/// Serves the loopback redirect on `listener` until the browser comes back with an
/// answer carrying a `code` or an `error`, or until `deadline`.
pub async fn wait_for_answer(listener: &TcpListener, state: &str, deadline: Instant) -> Answer {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tokio::time::sleep_until(deadline) => return Answer::TimedOut,
        };
        let Ok((stream, _)) = accepted else { continue };
        if let Some(answer) = serve(stream, state).await {
            return answer;
        }
    }
}

/// One connection: the request line read (bounded), a page written, the answer it
/// carried (none for anything but the redirect).
async fn serve(mut stream: TcpStream, state: &str) -> Option<Answer> {
    let target = match tokio::time::timeout(REQUEST_TIMEOUT, request_target(&mut stream)).await {
        Ok(Some(target)) => target,
        _ => return None,
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/" {
        let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
        return None;
    }
    let answer = answer_of(query, state);
    let page = match &answer {
        Some(Answer::Code(_)) => "casegate received the authorization. You can close this window.",
        Some(Answer::Declined { .. }) => {
            "The authorization was declined; casegate saved nothing. You can close this window."
        }
        Some(Answer::StateMismatch) => {
            "This answer does not belong to the sign-in casegate is waiting for; casegate saved nothing."
        }
        Some(Answer::TimedOut) | None => "This address expects the answer of an authorization.",
    };
    let status = if matches!(answer, Some(Answer::Code(_))) { "200 OK" } else { "400 Bad Request" };
    let _ = respond(&mut stream, status, page).await;
    answer
}

/// What a redirect's query says: the state is checked before anything else is believed.
pub fn answer_of(query: &str, state: &str) -> Option<Answer> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let (code, error) = (get("code"), get("error"));
    if code.is_none() && error.is_none() {
        return None;
    }
    if get("state").as_deref() != Some(state) {
        return Some(Answer::StateMismatch);
    }
    match (error, code) {
        (Some(error), _) => Some(Answer::Declined { error, description: get("error_description").unwrap_or_default() }),
        (None, Some(code)) => Some(Answer::Code(code)),
        (None, None) => None,
    }
}

/// The target of a GET request line, reading no more than [`MAX_REQUEST_BYTES`].
async fn request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.lines().next()?.split(' ');
    match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => Some(target.to_string()),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>casegate</title></head><body><p>{text}</p></body></html>"
    );
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Grant;

    #[test]
    fn the_s256_challenge_matches_rfc_7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(pkce.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Pkce::new();
        assert_eq!(fresh.verifier.len(), 64);
        assert_ne!(fresh.verifier, Pkce::new().verifier);
    }

    #[test]
    fn the_authorization_url_carries_client_redirect_state_and_challenge() {
        let settings = OAuth2Config {
            table: "mailbox[0].oauth2".into(),
            provider: Provider::Google,
            token_url: "https://oauth2.googleapis.com/token".into(),
            authorize_url: None,
            client_id: Some("app.apps.googleusercontent.com".into()),
            client_secret: None,
            scope: Some("https://mail.google.com/".into()),
            grant: Grant::RefreshToken { file: "t".into() },
        };
        let pkce = Pkce::from_verifier("v".repeat(43));
        let url = authorization_url(
            "https://accounts.google.com/o/oauth2/v2/auth",
            &settings,
            "http://127.0.0.1:4711/",
            "st4te",
            &pkce,
            "support@example.com",
        )
        .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(query["redirect_uri"], "http://127.0.0.1:4711/");
        assert_eq!(query["code_challenge"], pkce.challenge);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!((query["state"].as_str(), query["access_type"].as_str()), ("st4te", "offline"));
        assert_eq!(query["scope"], "https://mail.google.com/");
    }

    #[test]
    fn answers_are_believed_only_with_the_state_sent_out() {
        assert_eq!(answer_of("code=abc&state=s1", "s1"), Some(Answer::Code("abc".into())));
        assert_eq!(answer_of("code=abc&state=evil", "s1"), Some(Answer::StateMismatch));
        assert_eq!(answer_of("code=abc", "s1"), Some(Answer::StateMismatch));
        assert_eq!(
            answer_of("error=access_denied&error_description=The+user+said+no&state=s1", "s1"),
            Some(Answer::Declined { error: "access_denied".into(), description: "The user said no".into() })
        );
        assert_eq!(answer_of("", "s1"), None);
    }

    #[tokio::test]
    async fn the_loopback_server_ignores_other_paths_and_returns_the_redirects_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let browser = tokio::spawn(async move {
            let get = |path: &'static str| async move {
                let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
                let mut page = String::new();
                s.read_to_string(&mut page).await.unwrap();
                page
            };
            let favicon = get("/favicon.ico").await;
            let done = get("/?state=st&code=c0de").await;
            (favicon, done)
        });
        let answer = wait_for_answer(&listener, "st", Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(answer, Answer::Code("c0de".into()));
        let (favicon, done) = browser.await.unwrap();
        assert!(favicon.starts_with("HTTP/1.1 404"), "{favicon}");
        assert!(done.starts_with("HTTP/1.1 200") && done.contains("You can close this window"), "{done}");
        let quiet = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(wait_for_answer(&quiet, "st", Instant::now() + Duration::from_millis(50)).await, Answer::TimedOut);
    }
}
