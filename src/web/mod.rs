//! The pages casegate serves, on one HTTP server that `casegate run` starts ([`serve`]):
//!
//! ```text
//! GET/POST /survey/{token}   the survey of a closed case          (survey)
//! GET/POST /case/{token}     a person's page of one case          (case)
//! GET      /cases/{token}    a person's cases, "My cases"         (case)
//! GET      /file/{token}     one attachment, for one person       (case)
//! ```
//!
//! The tokens are signed personal links (`crate::links`, `crate::signed`). [`router`] is
//! the axum application; [`serve`] runs it on `web.listen` until shutdown.
//!
//! What keeps it safe:
//! - A GET never writes: mail scanners that "click" every link see a page, nothing more.
//! - Nothing is changed unless the token verifies (HMAC, expiry), the person still takes
//!   part in what it names, the form tag matches the token, and the request does not come
//!   from another site (`Sec-Fetch-Site`, `Origin`, `Referer` checked against
//!   `web.base_url`).
//! - Every response carries a strict Content-Security-Policy (no scripts, the one inline
//!   style allowed by hash, no framing, forms post only to us), `Referrer-Policy:
//!   no-referrer` (the token is in the URL), `nosniff` and `Cache-Control: no-store`.
//! - Bodies over [`MAX_BODY_BYTES`] are refused; each connection serves one request
//!   (no idle keep-alive), must send its headers within [`HEADER_TIMEOUT`] and finish
//!   within [`CONNECTION_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are served at once.
//! - The database is reached on the blocking pool with a session per request (SQLite: a
//!   connection of its own; PostgreSQL: one of the pool's), never on the async workers,
//!   and no session lives across an `.await`. Every node sharing a PostgreSQL database
//!   serves the same pages: a link works whichever node answers it.

pub mod case;
pub mod case_page;
pub mod html;
pub mod survey;
pub mod survey_page;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::store::db::{Db, TxMode};

/// Largest request body accepted (the forms are a few hundred bytes; a full comment or
/// reason in a non-Latin script, percent-encoded, stays under 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Requests that touch the database at once (each holds a blocking thread).
pub const MAX_DB_JOBS: usize = 8;
/// A client must send its request headers within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (one request: headers, body, answer) is closed after this time.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// After shutdown is requested, connections in flight get this long to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share: the configuration (which says where the database is) and the
/// link secret.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    secret: Vec<u8>,
    /// `scheme://host[:port]` of `web.base_url`: the only origin allowed to post.
    origin: String,
    csp: HeaderValue,
    db_jobs: Semaphore,
}

impl WebState {
    /// Reads the link secret; a missing or short one is a configuration error.
    pub fn new(config: Arc<Config>) -> Result<WebState, ConfigError> {
        let secret = crate::links::secret(&config)?;
        Ok(WebState::with_secret(config, secret))
    }

    pub fn with_secret(config: Arc<Config>, secret: Vec<u8>) -> WebState {
        let origin = origin_of(&config.web.base_url).unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            html::style_csp_source()
        );
        WebState {
            inner: Arc::new(Inner {
                config,
                secret,
                origin,
                // Made of base64 and ASCII punctuation only, so always a valid header value.
                csp: HeaderValue::from_str(&csp).expect("the CSP is ASCII"),
                db_jobs: Semaphore::new(MAX_DB_JOBS),
            }),
        }
    }

    fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    fn secret(&self) -> &[u8] {
        &self.inner.secret
    }

    /// Runs `f` on a blocking thread in one transaction of its own: `Read` to read,
    /// `Write` to read and then write (on SQLite it waits for the writer's lock up front
    /// rather than failing when the daemon committed in between).
    async fn with_db<T, F>(&self, mode: TxMode, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Db<'_>) -> anyhow::Result<T> + Send + 'static,
    {
        // A permit, not a connection or a lock, is what lives across the awaits here.
        let _permit = self.inner.db_jobs.acquire().await.context("the web pages are shutting down")?;
        let config = Arc::clone(&self.inner.config);
        tokio::task::spawn_blocking(move || {
            // Never creates: the daemon (or `Store::open` in `serve`) made and migrated it.
            let session = crate::store::Session::open(&config)?;
            session.db().transaction(mode, f)
        })
        .await
        .context("database task failed")?
    }

    /// Runs `f` on a blocking thread with the store itself, for work that goes through a
    /// unit of work (`Store::write`): the actions taken on a case page.
    async fn with_store<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::store::Store) -> anyhow::Result<T> + Send + 'static,
    {
        let _permit = self.inner.db_jobs.acquire().await.context("the web pages are shutting down")?;
        let config = self.inner.config.clone();
        tokio::task::spawn_blocking(move || f(&mut crate::store::Store::shared(&config)?))
            .await
            .context("database task failed")?
    }
}

/// The application: every page's routes, security headers on every response, the body
/// limit, and a plain 404 page for everything else.
pub fn router(state: WebState) -> Router {
    let headers_state = state.clone();
    Router::new()
        .route("/survey/{token}", get(survey::show).post(survey::answer))
        .route("/case/{token}", get(case::show).post(case::act))
        .route("/cases/{token}", get(case::my_cases))
        .route("/file/{token}", get(case::download))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_large_bodies))
        .layer(axum::middleware::map_response(move |response: Response| {
            let csp = headers_state.inner.csp.clone();
            async move { secure(response, csp) }
        }))
        .with_state(state)
}

/// Answers 413 at once when the declared length is over the limit, instead of waiting for
/// a body that will be refused anyway (the body limit itself catches bodies that lie).
async fn refuse_declared_large_bodies(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large(request.uri().path().starts_with("/survey/"));
    }
    next.run(request).await
}

/// The page for a body over [`MAX_BODY_BYTES`] (`survey`: posted to the survey page).
fn too_large(survey: bool) -> Response {
    let title = if survey { "Your answer is too long" } else { "What you sent is too long" };
    problem(StatusCode::PAYLOAD_TOO_LARGE, title, "Please shorten your text and send it again.")
}

/// The security headers of every response; a response that set its own CSP (a download)
/// keeps it.
fn secure(mut response: Response, csp: HeaderValue) -> Response {
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Binds `web.listen` and serves the pages until `shutdown` is cancelled. Makes sure the
/// database exists and is migrated first. Without a link secret in the config there are
/// no links to open: it warns and waits for shutdown. A configured secret that cannot be
/// read is a [`ConfigError`].
pub async fn serve(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !crate::links::configured(&config) {
        tracing::warn!(
            "No link secret configured (web.secret_env or web.secret_file): notifications carry no case-page or \
             download links, no surveys are offered, and no pages are served"
        );
        shutdown.cancelled().await;
        return Ok(());
    }
    let state = WebState::new(config.clone())?;
    let store_config = config.clone();
    tokio::task::spawn_blocking(move || crate::store::Store::open(&store_config).map(drop))
        .await
        .context("database task failed")??;
    let listener = TcpListener::bind(&config.web.listen)
        .await
        .with_context(|| format!("cannot listen on web.listen = {:?}", config.web.listen))?;
    tracing::info!(listen = %config.web.listen, base_url = %config.web.base_url, "Web pages listening");
    serve_on(listener, state, shutdown).await
}

/// Serves the pages on an already bound listener until `shutdown` is cancelled, then gives
/// connections in flight [`DRAIN_TIMEOUT`] to finish.
pub async fn serve_on(listener: TcpListener, state: WebState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = router(state);
    // Each connection task holds a permit; getting them all back means all have finished.
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_secs(1);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.context("connection limit closed")?,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => { backoff = Duration::from_secs(1); a }
                Err(e) => {
                    // Usually out of file descriptors: wait for connections to finish.
                    tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "Web pages: accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(64));
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let served = tokio::time::timeout(CONNECTION_TIMEOUT, async {
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.as_mut().await
                    }
                }
            })
            .await;
            match served {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "Web pages: connection ended with an error"),
                Err(_) => tracing::debug!(%peer, "Web pages: connection timed out"),
            }
        });
    }
    drop(listener);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.acquire_many(all)).await.is_err() {
        let open = MAX_CONNECTIONS - connections.available_permits();
        tracing::warn!(open, "Web pages: connections still open at shutdown; leaving them to their timeout");
    }
    tracing::info!("Web pages stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the pages' handlers share.

fn server_error(e: anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "Web page failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side",
        "Nothing was changed. Please try again in a few minutes.",
    )
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing here. Please open the link from your mail again, or copy the whole link into your browser.",
    )
}

fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    (status, Html(html::problem(title, message))).into_response()
}

/// The page for a post from another site (checked with [`same_origin`]).
fn cross_site(what: &str, why: &str, expected: &str) -> Response {
    tracing::warn!(reason = %why, expected = %expected, "{what} refused: posted from another site");
    problem(
        StatusCode::FORBIDDEN,
        "This form cannot be sent from here",
        "Forms are only accepted from our own pages. Please open the link in your mail and use the page it shows.",
    )
}

/// Whether the request came from our own pages: `Err` is the page that says it did not.
fn check_origin(state: &WebState, headers: &HeaderMap, what: &str) -> Result<(), Box<Response>> {
    same_origin(headers, &state.inner.origin).map_err(|why| Box::new(cross_site(what, &why, &state.inner.origin)))
}

/// Refuses a request that a browser says came from another site. Browsers send
/// `Sec-Fetch-Site` and `Origin` with every form post; programs such as curl send neither
/// and are let through (the token and the form tag still have to be right).
///
/// Our own page sends `Referrer-Policy: no-referrer`, under which browsers post the form
/// with `Origin: null`; `Sec-Fetch-Site: same-origin` is what tells that post apart from a
/// cross-site one (which says `cross-site`), so `null` is accepted only together with it.
fn same_origin(headers: &HeaderMap, allowed: &str) -> Result<(), String> {
    let get = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    if let Some(site) = fetch_site {
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(format!("Sec-Fetch-Site: {site}"));
        }
    }
    if let Some(origin) = get(header::ORIGIN) {
        if origin == "null" {
            if !fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) {
                return Err("Origin: null without Sec-Fetch-Site: same-origin".into());
            }
        } else if origin_of(origin).as_deref() != Some(allowed) {
            return Err(format!("Origin: {origin}"));
        }
    } else if let Some(referer) = get(header::REFERER) {
        if origin_of(referer).as_deref() != Some(allowed) {
            return Err(format!("Referer from {}", origin_of(referer).unwrap_or_else(|| "?".into())));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL, lower-case, without the scheme's default port — the
/// form browsers send in `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
    if authority.is_empty() {
        return None;
    }
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host.to_string(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        assert_eq!(origin_of("https://Support.Example.com/").as_deref(), Some("https://support.example.com"));
        assert_eq!(origin_of("https://support.example.com:443/x").as_deref(), Some("https://support.example.com"));
        assert_eq!(origin_of("http://127.0.0.1:8025").as_deref(), Some("http://127.0.0.1:8025"));
        assert_eq!(origin_of("http://user@h:80?q").as_deref(), Some("http://h"));
        assert_eq!(origin_of("ftp://h"), None);
        assert_eq!(origin_of("nonsense"), None);
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        let ok = "https://support.example.com";
        assert!(same_origin(&headers(&[]), ok).is_ok(), "non-browser clients");
        assert!(same_origin(&headers(&[("origin", "https://support.example.com")]), ok).is_ok());
        assert!(same_origin(&headers(&[("origin", "null"), ("sec-fetch-site", "same-origin")]), ok).is_ok());
        assert!(same_origin(&headers(&[("referer", "https://support.example.com/survey/x")]), ok).is_ok());

        assert!(same_origin(&headers(&[("origin", "https://evil.example")]), ok).is_err());
        assert!(same_origin(&headers(&[("origin", "https://support.example.com.evil.example")]), ok).is_err());
        assert!(same_origin(&headers(&[("origin", "null")]), ok).is_err());
        assert!(same_origin(&headers(&[("origin", "null"), ("sec-fetch-site", "cross-site")]), ok).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")]), ok).is_err());
        assert!(same_origin(&headers(&[("origin", ok), ("sec-fetch-site", "cross-site")]), ok).is_err());
        assert!(same_origin(&headers(&[("referer", "https://evil.example/?https://support.example.com")]), ok).is_err());
    }
}
