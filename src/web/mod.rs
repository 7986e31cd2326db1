//! The pages casegate serves. Today the survey page over HTTP: `GET /survey/{token}`
//! shows the form ([`survey_page`]), `POST /survey/{token}` records the answer and thanks. [`router`] is the axum application; [`serve`] runs it on
//! `survey.listen` until shutdown (spawned by `casegate run`).
//!
//! What keeps it safe:
//! - A GET never writes: mail scanners that "click" every link see the form, nothing more.
//! - Nothing is recorded unless the token verifies (HMAC, expiry), an invitation exists for
//!   it, the form tag matches the token, and the request does not come from another site
//!   (`Sec-Fetch-Site`, `Origin`, `Referer` checked against `survey.base_url`).
//! - Every response carries a strict Content-Security-Policy (no scripts, the one inline
//!   style allowed by hash, no framing, forms post only to us), `Referrer-Policy:
//!   no-referrer` (the token is in the URL), `nosniff` and `Cache-Control: no-store`.
//! - Bodies over [`MAX_BODY_BYTES`] are refused; each connection serves one request
//!   (no idle keep-alive), must send its headers within [`HEADER_TIMEOUT`] and finish
//!   within [`CONNECTION_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are served at once.
//! - SQLite runs on the blocking pool with a connection of its own per request, never on
//!   the async workers, and no connection lives across an `.await`.

pub mod survey_page;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::store::surveys::{self as store, AnswerError, StoredAnswer};
use crate::survey::answer::{Answer, Channel, Score};
use crate::survey::token::{self, Claims, TokenError};
use survey_page::{self as page, CaseHeading, Values};

/// Largest request body accepted (the form is a few hundred bytes; a full comment in a
/// non-Latin script, percent-encoded, stays under 16 KiB).
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

/// What the handlers share: the configuration, the secret, the database path.
#[derive(Clone)]
pub struct SurveyState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    secret: Vec<u8>,
    db_path: PathBuf,
    /// `scheme://host[:port]` of `survey.base_url`: the only origin allowed to post.
    origin: String,
    csp: HeaderValue,
    db_jobs: Semaphore,
}

impl SurveyState {
    /// Reads the survey secret; a missing or short one is a configuration error.
    pub fn new(config: Arc<Config>) -> Result<SurveyState, ConfigError> {
        let secret = crate::survey::secret(&config)?;
        Ok(SurveyState::with_secret(config, secret))
    }

    pub fn with_secret(config: Arc<Config>, secret: Vec<u8>) -> SurveyState {
        let origin = origin_of(&config.survey.base_url).unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            page::style_csp_source()
        );
        SurveyState {
            inner: Arc::new(Inner {
                db_path: config.database_path(),
                config,
                secret,
                origin,
                // Made of base64 and ASCII punctuation only, so always a valid header value.
                csp: HeaderValue::from_str(&csp).expect("the CSP is ASCII"),
                db_jobs: Semaphore::new(MAX_DB_JOBS),
            }),
        }
    }

    /// Runs `f` with a fresh database connection on the blocking pool.
    /// Runs `f` on a blocking thread in one transaction of its own: `Deferred` to read,
    /// `Immediate` to read and then write (it waits for the writer's lock up front rather
    /// than failing when the daemon committed in between).
    async fn with_db<T, F>(&self, behavior: TransactionBehavior, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        // A permit, not a connection or a lock, is what lives across the awaits here.
        let _permit = self.inner.db_jobs.acquire().await.context("the survey page is shutting down")?;
        let (path, fsync) = (self.inner.db_path.clone(), self.inner.config.fsync);
        tokio::task::spawn_blocking(move || {
            // Never creates: the daemon (or `Store::open` in `serve`) made and migrated it.
            let mut conn = crate::store::connect(&path, fsync)?;
            let tx = conn.transaction_with_behavior(behavior)?;
            let result = f(&tx)?;
            tx.commit()?;
            Ok(result)
        })
        .await
        .context("database task failed")?
    }
}

/// The survey application: `GET`/`POST /survey/{token}`, security headers on every
/// response, the body limit, and a plain 404 page for everything else.
pub fn router(state: SurveyState) -> Router {
    let headers_state = state.clone();
    Router::new()
        .route("/survey/{token}", get(show).post(answer))
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
        return too_large();
    }
    next.run(request).await
}

fn too_large() -> Response {
    problem(StatusCode::PAYLOAD_TOO_LARGE, "Your answer is too long", "Please shorten your comment and send it again.")
}

fn secure(mut response: Response, csp: HeaderValue) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Binds `survey.listen` and serves the survey page until `shutdown` is cancelled.
/// Makes sure the database exists and is migrated first. Without a survey secret key in
/// the config there are no links to answer: it warns (when surveys are enabled) and waits
/// for shutdown. A configured secret that cannot be read is a [`ConfigError`].
pub async fn serve(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.survey.secret.is_none() {
        if config.survey.enabled {
            tracing::warn!(
                "No survey secret configured (survey.secret_env or survey.secret_file): \
                 no surveys are offered and the survey page is not served"
            );
        }
        shutdown.cancelled().await;
        return Ok(());
    }
    let state = SurveyState::new(config.clone())?;
    let store_config = config.clone();
    tokio::task::spawn_blocking(move || crate::store::Store::open(&store_config).map(drop))
        .await
        .context("database task failed")??;
    let listener = TcpListener::bind(&config.survey.listen)
        .await
        .with_context(|| format!("cannot listen on survey.listen = {:?}", config.survey.listen))?;
    tracing::info!(listen = %config.survey.listen, base_url = %config.survey.base_url, "Survey page listening");
    serve_on(listener, state, shutdown).await
}

/// Serves the survey page on an already bound listener until `shutdown` is cancelled,
/// then gives connections in flight [`DRAIN_TIMEOUT`] to finish.
pub async fn serve_on(listener: TcpListener, state: SurveyState, shutdown: CancellationToken) -> anyhow::Result<()> {
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
                    tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "Survey page: accept failed");
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
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "Survey page: connection ended with an error"),
                Err(_) => tracing::debug!(%peer, "Survey page: connection timed out"),
            }
        });
    }
    drop(listener);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.acquire_many(all)).await.is_err() {
        let open = MAX_CONNECTIONS - connections.available_permits();
        tracing::warn!(open, "Survey page: connections still open at shutdown; leaving them to their timeout");
    }
    tracing::info!("Survey page stopped");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// What a request found in the database about its (verified) token.
struct Found {
    case_label: String,
    subject: String,
    current: Option<StoredAnswer>,
    expires_at: DateTime<Utc>,
}

/// Looks up the invitation behind verified claims, and the case it is about. `None`
/// when there is none: a genuine signature but no invitation (another installation with
/// the same secret, or a database restored from before the invitation).
fn find(conn: &Connection, config: &Config, claims: &Claims) -> anyhow::Result<Option<Found>> {
    let Some(invitation) = store::invitation(conn, claims.case, &claims.recipient)? else {
        return Ok(None);
    };
    if invitation.expires_at != claims.expires {
        return Ok(None);
    }
    let Some(case) = crate::store::cases::case_row(conn, claims.case)? else {
        return Ok(None);
    };
    Ok(Some(Found {
        case_label: config.case_token(case.id),
        // Named as the survey mail names it (token and Re: removed).
        subject: crate::notify::display_subject(config, &case.subject),
        current: store::current_answer(conn, claims.case, &claims.recipient)?,
        expires_at: invitation.expires_at,
    }))
}

async fn show(State(state): State<SurveyState>, Path(token): Path<String>) -> Response {
    let claims = match verify(&state, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let config = state.inner.config.clone();
    let found = match state.with_db(TransactionBehavior::Deferred, move |conn| find(conn, &config, &claims)).await {
        Ok(Some(f)) => f,
        Ok(None) => return unknown_link(),
        Err(e) => return server_error(e),
    };
    let tag = token::form_tag(&state.inner.secret, &token);
    let values = found.current.as_ref().map(|c| Values::from(&c.answer)).unwrap_or_default();
    let html = page::form(&page::Form {
        case: CaseHeading { label: &found.case_label, subject: &found.subject },
        form_tag: &tag,
        values,
        answered_at: found.current.as_ref().map(|c| c.updated_at),
        expires_at: found.expires_at,
        error: None,
    });
    Html(html).into_response()
}

/// The form as posted. Every field is optional here so that a missing one becomes a
/// friendly message, not a bare 422 from the extractor.
#[derive(Debug, Deserialize)]
struct Posted {
    form: Option<String>,
    score: Option<String>,
    solved: Option<String>,
    comment: Option<String>,
}

async fn answer(
    State(state): State<SurveyState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Response {
    let (claims, posted) = match admit(&state, &token, &headers, posted) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    let (values, checked) = read_answer(&posted);
    let config = state.inner.config.clone();
    let now = Utc::now();
    let db_claims = claims.clone();
    let to_record = checked.clone().ok();
    let result = state
        .with_db(TransactionBehavior::Immediate, move |conn| {
            let Some(found) = find(conn, &config, &db_claims)? else {
                return Ok(Err(None));
            };
            let Some(answer) = to_record else {
                return Ok(Ok((found, None)));
            };
            match store::record_answer(conn, db_claims.case, &db_claims.recipient, &answer, Channel::Web, now) {
                Ok(recorded) => Ok(Ok((found, Some((answer, recorded))))),
                Err(AnswerError::NotInvited { .. }) => Ok(Err(None)),
                Err(AnswerError::Expired { expires_at, .. }) => Ok(Err(Some(expires_at))),
                Err(AnswerError::Database(e)) => Err(e.into()),
            }
        })
        .await;
    let (found, recorded) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(None)) => return unknown_link(),
        Ok(Err(Some(expired))) => return expired_link(expired),
        Err(e) => return server_error(e),
    };
    let heading = CaseHeading { label: &found.case_label, subject: &found.subject };
    match (recorded, checked) {
        (Some((answer, recorded)), _) => {
            let changed = recorded == store::Recorded::Changed;
            Html(page::thanks(&heading, &answer, changed, &token, found.expires_at)).into_response()
        }
        (None, Err(message)) => {
            let tag = token::form_tag(&state.inner.secret, &token);
            let html = page::form(&page::Form {
                case: heading,
                form_tag: &tag,
                values,
                answered_at: found.current.as_ref().map(|c| c.updated_at),
                expires_at: found.expires_at,
                error: Some(message),
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response()
        }
        // `to_record` is `Some` exactly when `checked` is `Ok`.
        (None, Ok(_)) => server_error(anyhow::anyhow!("answer checked but not recorded")),
    }
}

/// Whether a posted answer may be looked at: sent from the survey page itself, with a
/// valid token, a readable form, and the form tag of this very link. `Err` is the page
/// that says why not.
fn admit(
    state: &SurveyState,
    token: &str,
    headers: &HeaderMap,
    posted: Result<Form<Posted>, FormRejection>,
) -> Result<(Claims, Posted), Box<Response>> {
    if let Err(why) = same_origin(headers, &state.inner.origin) {
        tracing::warn!(reason = %why, expected = %state.inner.origin, "Survey answer refused: posted from another site");
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "This form cannot be sent from here",
            "Answers are only accepted from the survey page itself. Please open the link in the survey mail and answer there.",
        )));
    }
    let claims = verify(state, token).map_err(|e| Box::new(refused(e)))?;
    let Form(posted) = match posted {
        Ok(p) => p,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(Box::new(too_large())),
        Err(rejection) => {
            tracing::info!(case = claims.case, error = %rejection.body_text(), "Survey answer refused: unreadable form");
            return Err(Box::new(problem(
                rejection.status(),
                "Your answer could not be read",
                "Please go back to the survey page and send the form again.",
            )));
        }
    };
    if !posted.form.as_deref().is_some_and(|tag| token::verify_form_tag(&state.inner.secret, token, tag)) {
        tracing::warn!(case = claims.case, "Survey answer refused: the form does not belong to this link");
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "This form does not belong to this survey link",
            "Please open the link in the survey mail again and answer on that page.",
        )));
    }
    Ok((claims, posted))
}

/// The values as posted (to show the form again) and the answer they make, or what is
/// missing from it.
fn read_answer(posted: &Posted) -> (Values, Result<Answer, &'static str>) {
    let values = Values {
        score: posted.score.as_deref().and_then(|s| s.trim().parse().ok()),
        solved: match posted.solved.as_deref().map(str::trim) {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        },
        comment: posted.comment.clone().unwrap_or_default(),
    };
    let checked = match (values.score.and_then(Score::new), values.solved) {
        (Some(score), Some(solved)) => Ok(Answer::new(score, Some(solved), posted.comment.as_deref())),
        (None, _) => Err("Please choose how satisfied you are, from 1 to 5."),
        (Some(_), None) => Err("Please say whether our solution solved your problem."),
    };
    (values, checked)
}

fn verify(state: &SurveyState, token: &str) -> Result<Claims, TokenError> {
    token::verify(&state.inner.secret, token, Utc::now())
}

/// The page for a token that did not verify.
fn refused(error: TokenError) -> Response {
    match error {
        TokenError::Invalid => {
            tracing::info!("Survey link refused: not a valid token");
            unknown_link()
        }
        TokenError::Expired(claims) => {
            tracing::info!(case = claims.case, expired = %claims.expires, "Survey link refused: expired");
            expired_link(claims.expires)
        }
    }
}

fn unknown_link() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "This survey link is not valid",
        "The link may have been cut off or changed on its way. Please open it again from the survey mail, \
         or copy the whole link into your browser. You can also answer by replying to the survey mail \
         with a score from 1 to 5.",
    )
}

fn expired_link(at: DateTime<Utc>) -> Response {
    problem(
        StatusCode::GONE,
        "This survey has closed",
        &format!(
            "The survey link expired on {}, so answers are no longer taken. Thank you all the same; \
             if there is something we should know, reply to any mail about your case.",
            page::human_date(at)
        ),
    )
}

fn server_error(e: anyhow::Error) -> Response {
    tracing::error!(error = format!("{e:#}"), "Survey page failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side",
        "Your answer was not saved. Please try again in a few minutes.",
    )
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "Page not found", "There is nothing here. Survey links look like …/survey/….")
}

fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    (status, Html(page::problem(title, message))).into_response()
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
