//! One account's access token, cached in memory and shared by all its connections.
//!
//! - A token is used until a margin before it expires (a quarter of its lifetime, at most
//!   five minutes), then replaced: a login never presents a token about to run out.
//! - One request at a time: connections that want a token while one is being fetched
//!   wait for it (the lock is a tokio mutex, held across the request on purpose).
//! - A failed request holds the account's requests off for the next delay of a capped
//!   backoff (1 s doubling to 60 s, jittered): callers asking meanwhile get the same error
//!   at once. Whatever reconnects, the token endpoint is never asked in a tight loop.
//! - [`TokenSource::renew`]: a server refused a token that should still be valid (revoked,
//!   or the server's clock differs): it is dropped and one new token fetched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::endpoint::{Bearer, TokenError};
use super::grant::{self, Context, Unsaved};
use super::{token_file, Account};
use crate::backoff::Backoff;
use crate::config::{ConfigError, Grant, OAuth2Config};

/// The lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);
/// The most a token is replaced ahead of its expiry.
const MAX_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The lifetimes believed: an `expires_in` of 0 would have every sign-in ask for a token,
/// an absurdly large one overflow the clock.
const LIFETIMES: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// An access token handed to a sign-in.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub bearer: Bearer,
    /// Fetched for this request: a server refusing it will refuse another one too, so
    /// [`TokenSource::renew`] is for tokens that were not new.
    pub new: bool,
    /// How long it is still good for.
    pub expires_in: Duration,
}

/// Issues access tokens for one mailbox or the SMTP account.
pub struct TokenSource {
    settings: OAuth2Config,
    username: String,
    account: Account,
    config_path: PathBuf,
    http: reqwest::Client,
    /// How long a refresh waits for another one of the same refresh token file.
    lock_wait: Duration,
    state: Mutex<State>,
    requests: AtomicU64,
}

struct State {
    current: Option<Held>,
    backoff: Backoff,
    /// The last request failed: until when no other is made, and its error.
    failed: Option<(Instant, TokenError)>,
    unsaved: Unsaved,
}

struct Held {
    bearer: Bearer,
    /// Replaced from here on.
    fresh_until: Instant,
    expires_at: Instant,
}

/// When a token of `lifetime` is replaced: a quarter of its lifetime before it expires,
/// at most [`MAX_MARGIN`].
pub fn margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(MAX_MARGIN)
}

impl TokenSource {
    /// Checks that what the grant needs is there (the client secret readable, the
    /// refresh token file readable and its folder writable, the key file signing) and
    /// prepares the HTTP client. Errors name the key and what to do.
    pub fn new(
        settings: OAuth2Config,
        username: &str,
        account: Account,
        config_path: &Path,
        timeout: Duration,
    ) -> Result<TokenSource, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: config_path.to_path_buf(),
            key: format!("{}.{key}", settings.table),
            message,
        };
        if let Some(secret) = &settings.client_secret {
            secret.read(config_path)?;
        }
        match &settings.grant {
            Grant::ClientCredentials => {}
            Grant::RefreshToken { file } => {
                token_file::read(file, &account.authorize_command())
                    .and_then(|_| token_file::check_writable(file))
                    .map_err(|e| invalid("refresh_token_file", e))?;
            }
            Grant::JwtBearer { key_file } => {
                grant::signed_assertion(key_file, &settings, username, std::time::SystemTime::now())
                    .map_err(|e| invalid("service_account_key_file", e))?;
            }
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A token endpoint answers; it does not send the secrets elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("casegate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid("token_url", format!("cannot set up HTTPS: {e}")))?;
        Ok(TokenSource {
            username: username.to_string(),
            account,
            config_path: config_path.to_path_buf(),
            http,
            lock_wait: timeout,
            state: Mutex::new(State {
                current: None,
                backoff: Backoff::after_errors(),
                failed: None,
                unsaved: Unsaved::default(),
            }),
            requests: AtomicU64::new(0),
            settings,
        })
    }

    pub fn settings(&self) -> &OAuth2Config {
        &self.settings
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// How many requests this source has made to the token endpoint.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The cached token while it is fresh, else a new one (see the module documentation).
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(held) = state.current.as_ref().filter(|h| now < h.fresh_until) {
            return Ok(AccessToken { bearer: held.bearer.clone(), new: false, expires_in: held.expires_at - now });
        }
        if let Some((until, error)) = &state.failed {
            if now < *until {
                return Err(error.clone());
            }
        }
        self.fetch(&mut state).await
    }

    /// A server refused `refused` although it should be valid: forget it (unless another
    /// connection has replaced it already) and return a newer token.
    pub async fn renew(&self, refused: &AccessToken) -> Result<AccessToken, TokenError> {
        {
            let mut state = self.state.lock().await;
            if state.current.as_ref().is_some_and(|h| h.bearer == refused.bearer) {
                tracing::info!(account = %self.account.label, "The server refused a token that should be valid; fetching a new one");
                state.current = None;
                // Not a failure of the endpoint's: no reason to hold the request off.
                state.failed = None;
            }
        }
        self.token().await
    }

    async fn fetch(&self, state: &mut State) -> Result<AccessToken, TokenError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let cx = Context {
            http: &self.http,
            settings: &self.settings,
            username: &self.username,
            account: &self.account,
            config_path: &self.config_path,
            lock_wait: self.lock_wait,
        };
        let started = Instant::now();
        match grant::obtain(&cx, &mut state.unsaved).await {
            Ok(issued) => {
                let lifetime = issued.expires_in.unwrap_or(ASSUMED_LIFETIME).clamp(LIFETIMES.0, LIFETIMES.1);
                let now = Instant::now();
                // Counted from the request's start: the endpoint's clock began then.
                let expires_at = started + lifetime;
                state.current = Some(Held {
                    bearer: issued.access_token.clone(),
                    fresh_until: expires_at - margin(lifetime),
                    expires_at,
                });
                state.failed = None;
                state.backoff.reset();
                crate::metrics::global().token_refresh(self.account.client(), true);
                tracing::info!(
                    account = %self.account.label,
                    grant = self.settings.grant.name(),
                    expires_in_secs = lifetime.as_secs(),
                    ms = now.duration_since(started).as_millis() as u64,
                    "OAuth2 access token obtained"
                );
                Ok(AccessToken {
                    bearer: issued.access_token,
                    new: true,
                    expires_in: expires_at.saturating_duration_since(now),
                })
            }
            Err(error) => {
                let delay = state.backoff.next_delay();
                state.current = None;
                state.failed = Some((Instant::now() + delay, error.clone()));
                crate::metrics::global().token_refresh(self.account.client(), false);
                tracing::warn!(
                    account = %self.account.label,
                    error = %error,
                    next_request_in_ms = delay.as_millis() as u64,
                    "OAuth2 token request failed"
                );
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{Provider, Secret};

    /// A token endpoint on loopback answering each request with the next of `answers`
    /// (status, JSON body) and counting requests.
    async fn endpoint(answers: Vec<(u16, String)>) -> (String, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let count = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&count);
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The form is small: the head and body arrive before the answer is due.
                while !String::from_utf8_lossy(&request).contains("grant_type") {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "request ended early");
                    request.extend_from_slice(&buf[..n]);
                }
                seen.fetch_add(1, Ordering::Relaxed);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        (url, count)
    }

    fn source(url: &str) -> TokenSource {
        let settings = OAuth2Config {
            table: "mailbox[0].oauth2".into(),
            provider: Provider::Generic,
            token_url: url.into(),
            authorize_url: None,
            client_id: Some("casegate".into()),
            client_secret: Some(Secret::Inline { value: "client-secret".into() }),
            scope: None,
            grant: Grant::ClientCredentials,
        };
        TokenSource::new(
            settings,
            "support@example.com",
            Account::mailbox("support"),
            Path::new("/x/c.toml"),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn token(value: &str, expires_in: u64) -> (u16, String) {
        (200, format!(r#"{{"access_token":"{value}","token_type":"Bearer","expires_in":{expires_in}}}"#))
    }

    #[test]
    fn tokens_are_replaced_a_quarter_of_their_life_early_at_most_five_minutes() {
        assert_eq!(margin(Duration::from_secs(4)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_secs(3600)), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_fresh_token_is_reused_and_a_refused_one_replaced_once() {
        let (url, requests) = endpoint(vec![token("first", 3600), token("second", 3600)]).await;
        let tokens = source(&url);
        let a = tokens.token().await.unwrap();
        let b = tokens.token().await.unwrap();
        assert_eq!((a.bearer.expose(), a.new, b.bearer.expose(), b.new), ("first", true, "first", false));
        assert!(b.expires_in > Duration::from_secs(3590));
        let c = tokens.renew(&b).await.unwrap();
        assert_eq!((c.bearer.expose(), c.new), ("second", true));
        // A second connection reporting the same old token does not cost another request.
        let d = tokens.renew(&a).await.unwrap();
        assert_eq!((d.bearer.expose(), d.new), ("second", false));
        assert_eq!((requests.load(Ordering::Relaxed), tokens.requests()), (2, 2));
    }

    #[tokio::test]
    async fn a_token_near_its_end_is_replaced_before_it_expires() {
        let (url, requests) = endpoint(vec![token("short", 1), token("next", 3600)]).await;
        let tokens = source(&url);
        assert_eq!(tokens.token().await.unwrap().bearer.expose(), "short");
        // A quarter of a second before its end (1 s lifetime) it is no longer handed out.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(tokens.token().await.unwrap().bearer.expose(), "next");
        assert_eq!(requests.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn after_a_failure_requests_are_held_off_and_then_tried_again() {
        let unavailable = (503, r#"{"error":"temporarily_unavailable"}"#.to_string());
        let (url, requests) = endpoint(vec![unavailable, token("late", 3600)]).await;
        let tokens = source(&url);
        let first = tokens.token().await.unwrap_err();
        assert!(first.is_transient(), "{first}");
        // Asked again at once (by many connections): the same error, no request.
        for _ in 0..50 {
            assert_eq!(tokens.token().await.unwrap_err(), first);
        }
        assert_eq!(requests.load(Ordering::Relaxed), 1);
        // The first delay is at most 1 s.
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(tokens.token().await.unwrap().bearer.expose(), "late");
        assert_eq!(requests.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn invalid_client_is_told_apart_and_never_shows_the_secret() {
        let refused = (401, r#"{"error":"invalid_client","error_description":"bad secret client-secret"}"#.into());
        let (url, _) = endpoint(vec![refused]).await;
        let error = source(&url).token().await.unwrap_err();
        assert!(matches!(error, TokenError::InvalidClient { .. }), "{error}");
        assert!(!error.to_string().contains("client-secret"), "{error}");
    }
}
