//! The operators' listener on `[metrics] listen`, separate from the pages people see:
//! `GET /metrics` (Prometheus text), `GET /healthz` (the process serves: always 200) and
//! `GET /readyz` (200 or 503, with a JSON body naming each check; see [`super::health`]).
//!
//! It is meant for a monitoring system on a trusted network (the default address is the
//! loopback): nothing it answers names a person or a secret. Requests are small and
//! bounded like the survey page's: headers within 5 s, one request per
//! connection, at most 16 at once; database reads run on the blocking
//! pool, one at a time.

use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::database::Figures;
use super::health::{self, Limits};
use super::Metrics;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (one request and its answer) is closed after this time.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database writer's probe before calling it failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The media type of the OpenMetrics text format, which Prometheus scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Asks the database writer to commit a small write; `Err` says what went wrong. The
/// daemon provides it (the writer belongs to the sources, which this module is below).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
struct Served {
    metrics: &'static Metrics,
    /// Which database to read the figures from.
    config: Arc<Config>,
    limits: Limits,
    probe: Probe,
    /// One database reading at a time: scrapes that pile up wait rather than open more.
    reading: Arc<Semaphore>,
}

/// The application: the three endpoints, and 404 for anything else.
fn router(served: Served) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found: try /metrics, /healthz or /readyz\n") })
        .with_state(served)
}

impl Served {
    /// The database's figures now (on the blocking pool), published into the gauges.
    async fn figures(&self) -> Result<Figures, String> {
        let _permit = self.reading.acquire().await.map_err(|_| "shutting down".to_string())?;
        let config = Arc::clone(&self.config);
        let read = tokio::task::spawn_blocking(move || Figures::read_from(&config)).await;
        match read {
            Ok(Ok(figures)) => {
                figures.publish(self.metrics);
                Ok(figures)
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) => Err(format!("the database task failed: {e}")),
        }
    }
}

async fn metrics(State(served): State<Served>) -> Response {
    if let Err(e) = served.figures().await {
        // The rest is still worth scraping; the gauges keep their last values.
        tracing::warn!(error = %e, "Metrics: cannot read the database's figures");
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], served.metrics.render()).into_response()
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Plain data with string keys: serializing cannot fail.
    let text = serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn readyz(State(served): State<Served>) -> Response {
    let probe = match tokio::time::timeout(PROBE_TIMEOUT, (served.probe)()).await {
        Ok(result) => result,
        Err(_) => Err(format!("the database writer did not answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    let figures = served.figures().await;
    let readiness = health::evaluate(probe, &served.metrics.mailbox_states(), &figures, served.limits, Instant::now());
    let status = if readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &readiness)
}

/// The listener, bound: [`Listener::serve`] serves it until shutdown.
pub struct Listener {
    listener: TcpListener,
    served: Served,
}

impl Listener {
    /// Binds `listen` (bound before the service tells systemd it is ready, so that a
    /// port taken by another process stops the start instead of going unnoticed).
    pub async fn bind(
        listen: &str,
        metrics: &'static Metrics,
        config: Arc<Config>,
        limits: Limits,
        probe: Probe,
    ) -> anyhow::Result<Listener> {
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen on metrics.listen = {listen:?}"))?;
        let served = Served { metrics, config, limits, probe, reading: Arc::new(Semaphore::new(1)) };
        Ok(Listener { listener, served })
    }

    /// Where it listens (the port, when `listen` said 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled; requests in hand are cut off at their
    /// connection timeout at the latest (they are small and change nothing).
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let app = router(self.served);
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut backoff = Duration::from_secs(1);
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&connections).acquire_owned() => p.context("connection limit closed")?,
                _ = shutdown.cancelled() => break,
            };
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => { backoff = Duration::from_secs(1); stream }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "Metrics: accept failed");
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
            tokio::spawn(async move {
                let _permit = permit;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .max_buf_size(16 * 1024);
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                    tracing::debug!(error = %e, "Metrics: connection ended with an error");
                }
            });
        }
        Ok(())
    }
}
