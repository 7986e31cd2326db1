//! What an operator's monitoring sees of a running casegate: Prometheus metrics
//! (`GET /metrics`), and health (`GET /healthz`, `GET /readyz`), served on `[metrics]
//! listen` by `casegate run` ([`server`]).
//!
//! The parts of casegate that do the work record into one process-wide [`Metrics`]
//! ([`global`]) through small hooks: the ingest path counts mails by outcome and reason
//! class, the writer thread times its batches and the latency from the server's arrival
//! to the commit, each IMAP watcher reports its connection ([`MailboxMetrics`]), the
//! outbox worker its sends and SMTP errors. What the database knows — notifications by
//! status, the age of the oldest one waiting, quarantined mail, the database's size — is
//! read when scraped ([`database`]), so it also counts rows written by other processes
//! (a piped `casegate ingest`).
//!
//! Conventions (Prometheus'): every name starts with `casegate_`, carries its unit
//! (`_seconds`, `_bytes`), counters end in `_total`, and every label has a small, fixed
//! set of values — outcomes, reason classes ([`reason_class`]), configured mailbox names —
//! never an address or a subject. Recording is a few atomic operations (the counters of
//! the ingest outcomes are resolved once, up front), so the hooks cost the mail path
//! nothing measurable.

pub mod database;
pub mod health;
pub mod server;

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::case::{Outcome, Reason};

/// Seconds from a server's arrival of a mail to its commit: an idle daemon commits within a
/// second (IDLE); a backlog, a restart or a mailbox that was down shows as the long tail.
const INGEST_LATENCY_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Seconds for one SMTP transaction (a reused connection: milliseconds; a new TLS one more).
const SEND_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];
/// Seconds for one committed batch of the database writer (≈0.1 s for 400 mails).
const BATCH_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The ingest outcomes, in the order of [`Metrics::outcomes`].
const OUTCOMES: [Outcome; 6] =
    [Outcome::Created, Outcome::Replied, Outcome::Command, Outcome::Duplicate, Outcome::Ignored, Outcome::Quarantined];

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Created => 0,
        Outcome::Replied => 1,
        Outcome::Command => 2,
        Outcome::Duplicate => 3,
        Outcome::Ignored => 4,
        Outcome::Quarantined => 5,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabels {
    mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    client: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric casegate exports, and the state behind `/readyz`.
pub struct Metrics {
    registry: Registry,
    /// `casegate_mails_total{outcome}`, one counter per outcome, resolved up front.
    outcomes: [Counter; 6],
    reasons: Family<ReasonLabels, Counter>,
    ingest_latency: Histogram,
    batch_duration: Histogram,
    batch_failures: Counter,
    mailbox_connected: Family<MailboxLabels, Gauge>,
    mailbox_idle: Family<MailboxLabels, Gauge>,
    mailbox_last_fetch: Family<MailboxLabels, FloatGauge>,
    mailbox_reconnects: Family<MailboxLabels, Counter>,
    token_refreshes: Family<TokenLabels, Counter>,
    sends: Family<ResultLabels, Counter>,
    send_duration: Histogram,
    smtp_errors: Family<KindLabels, Counter>,
    pub(crate) outbox_rows: Family<StatusLabels, Gauge>,
    pub(crate) outbox_oldest_age: FloatGauge,
    pub(crate) quarantine_rows: Gauge,
    pub(crate) database_size: Gauge,
    /// What `/readyz` knows of each configured mailbox.
    mailboxes: Arc<Mutex<BTreeMap<String, MailboxState>>>,
    /// When the database writer last finished a job (see [`Metrics::writer_active_within`]).
    writer_active: AtomicU64,
    started: Instant,
}

/// Registers a new metric of type `M` and returns it (metrics are handles: the registry
/// and the caller share the values).
fn add<M: Default + Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> M {
    let metric = M::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// Registers a histogram of `buckets`, in seconds, and returns it.
fn histogram(registry: &mut Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let metric = Histogram::new(buckets.iter().copied());
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics (the process uses [`global`]; tests make their own).
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("casegate");
        let outcome_family = Family::<OutcomeLabels, Counter>::default();
        let outcomes = OUTCOMES.map(|o| outcome_family.get_or_create_owned(&OutcomeLabels { outcome: o.as_str() }));
        r.register("mails", "Mails processed, by outcome", outcome_family);
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "The running casegate's version (always 1)", info);
        Metrics {
            outcomes,
            reasons: add(&mut r, "mail_reasons", "Mails processed, by outcome and class of reason", None),
            ingest_latency: histogram(
                &mut r,
                "ingest_latency",
                "From the mail server's arrival of a mail (IMAP INTERNALDATE, Maildir file time) to its commit",
                &INGEST_LATENCY_BUCKETS,
            ),
            batch_duration: histogram(
                &mut r,
                "writer_batch_duration",
                "Time the database writer took to write and commit one batch of mail",
                &BATCH_BUCKETS,
            ),
            batch_failures: add(
                &mut r,
                "writer_batch_failures",
                "Batches the database writer could not commit (retried whole)",
                None,
            ),
            mailbox_connected: add(&mut r, "mailbox_connected", "1 while the mailbox's IMAP connection is up", None),
            mailbox_idle: add(&mut r, "mailbox_idle", "1 when the mailbox waits with IMAP IDLE, 0 when it polls", None),
            mailbox_last_fetch: add(
                &mut r,
                "mailbox_last_fetch_timestamp",
                "When the mailbox's folder was last searched and everything new in it fetched (Unix time)",
                Some(Unit::Seconds),
            ),
            mailbox_reconnects: add(&mut r, "mailbox_reconnects", "Times a mailbox's connection failed", None),
            token_refreshes: add(
                &mut r,
                "oauth_token_refreshes",
                "OAuth2 access tokens obtained (result=\"ok\") or refused (result=\"error\"), by mailbox or smtp",
                None,
            ),
            sends: add(&mut r, "outbox_sends", "Send attempts of notifications: sent, deferred, failed", None),
            send_duration: histogram(
                &mut r,
                "outbox_send_duration",
                "Time to hand one notification to the SMTP server (or write it as a file)",
                &SEND_BUCKETS,
            ),
            smtp_errors: add(
                &mut r,
                "smtp_errors",
                "Failed sends by kind: transient (4xx), permanent (5xx), connection (connect, TLS, login, timeout)",
                None,
            ),
            outbox_rows: add(&mut r, "outbox_rows", "Notifications in the outbox, by status", None),
            outbox_oldest_age: add(
                &mut r,
                "outbox_oldest_queued_age",
                "Age of the oldest queued notification that is due or was tried (0 when none waits)",
                Some(Unit::Seconds),
            ),
            quarantine_rows: add(&mut r, "quarantine_rows", "Quarantined mails not released", None),
            database_size: add(
                &mut r,
                "database_size",
                "Size of the SQLite database and its write-ahead log",
                Some(Unit::Bytes),
            ),
            registry: r,
            mailboxes: Arc::new(Mutex::new(BTreeMap::new())),
            writer_active: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// One mail's outcome (called once per mail on the ingest path).
    pub fn mail(&self, outcome: Outcome, reason: Option<&str>) {
        self.outcomes[outcome_index(outcome)].inc();
        self.reasons.get_or_create(&ReasonLabels { outcome: outcome.as_str(), reason: reason_class(reason) }).inc();
    }

    /// A mail committed `latency` after its server received it.
    pub fn ingest_latency(&self, latency: Duration) {
        self.ingest_latency.observe(latency.as_secs_f64());
    }

    /// A batch of the database writer: how long it took, and whether it was committed.
    pub fn writer_batch(&self, took: Duration, committed: bool) {
        if committed {
            self.batch_duration.observe(took.as_secs_f64());
        } else {
            self.batch_failures.inc();
        }
        self.writer_finished_job();
    }

    /// The database writer finished a job (any job: a batch, a checkpoint, a probe).
    pub fn writer_finished_job(&self) {
        self.writer_active.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// Whether the writer finished a job within `window` (it may be slow but it moves).
    pub fn writer_active_within(&self, window: Duration) -> bool {
        let last = self.writer_active.load(Ordering::Relaxed);
        last > 0 && self.elapsed_ms().saturating_sub(last) <= window.as_millis() as u64
    }

    fn elapsed_ms(&self) -> u64 {
        // Never 0, so that 0 can mean "never".
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// The handle an IMAP watcher records its connection through; registers the mailbox
    /// for `/readyz` as connecting (not yet connected, since now).
    pub fn mailbox(&self, name: &str) -> MailboxMetrics {
        let labels = MailboxLabels { mailbox: name.to_string() };
        self.mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(MailboxState::starting);
        MailboxMetrics {
            name: name.to_string(),
            connected: self.mailbox_connected.get_or_create_owned(&labels),
            idle: self.mailbox_idle.get_or_create_owned(&labels),
            last_fetch: self.mailbox_last_fetch.get_or_create_owned(&labels),
            reconnects: self.mailbox_reconnects.get_or_create_owned(&labels),
            states: Arc::clone(&self.mailboxes),
        }
    }

    /// What `/readyz` knows of each mailbox now.
    /// A mailbox another node works (several nodes on one database): not this node's to
    /// report on, so `/readyz` leaves it out until this node takes it.
    pub fn mailbox_elsewhere(&self, name: &str) {
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    pub fn mailbox_states(&self) -> BTreeMap<String, MailboxState> {
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An OAuth2 access token obtained (`ok`) or refused for `client` (a mailbox's name,
    /// or `smtp`).
    pub fn token_refresh(&self, client: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.token_refreshes.get_or_create(&TokenLabels { client: client.to_string(), result }).inc();
    }

    /// One notification handed to the SMTP server (or written as a file) in `took`.
    pub fn notification_sent(&self, took: Duration) {
        self.send_duration.observe(took.as_secs_f64());
        self.notification_outcome("sent");
    }

    /// What became of one send attempt that did not go through: `deferred` (tried again
    /// later) or `failed` (for good).
    pub fn notification_outcome(&self, result: &'static str) {
        self.sends.get_or_create(&ResultLabels { result }).inc();
    }

    /// A send failed: `kind` is `transient` (4xx), `permanent` (5xx) or `connection`.
    pub fn smtp_error(&self, kind: &'static str) {
        self.smtp_errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error could only come from our own labels.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "Metrics could not be written");
        }
        out
    }
}

/// What `/readyz` knows of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxState {
    pub connected: bool,
    /// Since when it is connected, or not connected (the first failure of a run of them,
    /// or the start).
    pub since: Instant,
    /// The last connection error, for people (never a password: errors name keys).
    pub last_error: Option<String>,
    /// When the next attempt is due, while not connected.
    pub retry_at: Option<Instant>,
}

impl MailboxState {
    fn starting() -> MailboxState {
        MailboxState { connected: false, since: Instant::now(), last_error: None, retry_at: None }
    }
}

/// Records one mailbox's connection (held by its watcher).
#[derive(Clone)]
pub struct MailboxMetrics {
    name: String,
    connected: Gauge,
    idle: Gauge,
    last_fetch: FloatGauge,
    reconnects: Counter,
    states: Arc<Mutex<BTreeMap<String, MailboxState>>>,
}

impl MailboxMetrics {
    fn update(&self, f: impl FnOnce(&mut MailboxState)) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(states.entry(self.name.clone()).or_insert_with(MailboxState::starting));
    }

    /// Logged in with the folder selected; `idle` says whether news comes by IDLE.
    pub fn connected(&self, idle: bool) {
        self.connected.set(1);
        self.idle.set(i64::from(idle));
        self.update(|s| *s = MailboxState { connected: true, since: Instant::now(), last_error: None, retry_at: None });
    }

    /// The folder was searched and everything new in it handed over.
    pub fn fetched(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_fetch.set(now.as_secs_f64());
    }

    /// The connection failed with `error`; the next attempt comes in `retry_in`.
    pub fn failed(&self, error: &str, retry_in: Duration) {
        self.connected.set(0);
        self.reconnects.inc();
        let now = Instant::now();
        self.update(|s| {
            if s.connected {
                s.since = now;
            }
            s.connected = false;
            s.last_error = Some(error.to_string());
            s.retry_at = Some(now + retry_in);
        });
    }

    /// The watcher stopped (shutdown).
    pub fn stopped(&self) {
        self.connected.set(0);
        self.update(|s| {
            if s.connected {
                s.since = Instant::now();
            }
            s.connected = false;
            s.retry_at = None;
        });
    }
}

/// The class of an ingest reason, as a label: the stable code at its head (a quarantine
/// [`Reason`], a kind of machine mail, `applied`, `refused`, …), `none` without a reason,
/// and `other` for anything else. Never the reason's text, which names senders.
pub fn reason_class(reason: Option<&str>) -> &'static str {
    let Some(reason) = reason else { return "none" };
    let head = reason.split(':').next().unwrap_or_default().trim();
    if let Ok(code) = Reason::from_str(head) {
        return code.as_str();
    }
    // Machine mail (`classify::MachineKind`) and the reasons `decide` and the journal give.
    const CLASSES: [(&str, &str); 14] = [
        ("auto-reply", "auto-reply"),
        ("bulk", "bulk"),
        ("list", "list"),
        ("bounce", "bounce"),
        ("report", "report"),
        ("loop", "loop"),
        ("applied", "applied"),
        ("refused", "refused"),
        ("list of cases requested", "case-list"),
        ("survey answer recorded", "survey-answer"),
        ("survey answer not recorded", "survey-answer-refused"),
        ("already processed from this source position", "same-position"),
        ("identical mail already processed", "same-bytes"),
        ("a mail with this Message-ID and the same content was already processed", "same-content"),
    ];
    CLASSES.iter().find(|(text, _)| head.eq_ignore_ascii_case(text)).map_or("other", |(_, class)| class)
}

#[cfg(test)]
mod tests;
