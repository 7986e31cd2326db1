//! The IMAP source: one watcher per `[[mailbox]]`, each with up to two connections: one
//! that fetches, and one that marks what is committed.
//!
//! ```text
//! fetching connection: connect (TLS | STARTTLS | plain) ─ LOGIN/AUTHENTICATE PLAIN
//!   (or, with auth = "oauth2", AUTHENTICATE XOAUTH2/OAUTHBEARER: crate::oauth::imap) ─ SELECT
//!   └ checkpoint: same UIDVALIDITY? continue after last_uid : re-scan from UID 1
//!   reconcile: UID SEARCH UID 1:<last_uid> (UNSEEN) NOT DELETED → handed over again
//!   loop:
//!     UID SEARCH UID <last handed over+1>:* NOT DELETED, UID FETCH (RFC822.SIZE)
//!     per batch of `batch_size` UIDs and `batch_bytes`:
//!                                      UID FETCH (BODY.PEEK[])  → writer (commit)
//!                                      → queue for marking
//!     IDLE until the server reports news (re-issued every 25 min), or sleep poll_interval
//! marking connection (opened when a batch waits, closed after a minute without one):
//!   batches gather while a drain is under way (at most MARK_DELAY, MARK_QUEUE batches)
//!   per group of at most MARK_AT_ONCE mails, once committed:
//!     NOOP, mark (MOVE | \Seen | \Deleted+UID EXPUNGE), quarantined mail → quarantine
//!     folder; UID SEARCH: which are still unmarked? (once more, else an error)
//!     → checkpoint (last_uid)
//! ```
//!
//! Fetching uses `BODY.PEEK[]`, so nothing changes on the server before the commit, and
//! the checkpoint only advances once a batch is marked: after a crash, what was committed
//! but not marked is fetched again, recognised by the journal, and only marked. A server
//! answers OK to a MOVE or STORE of mail its session has not seen yet and does nothing,
//! so the marking connection asks for news (NOOP) first and checks the folder afterwards;
//! only what the folder shows marked is logged as marked, and on every start mail at or
//! below the checkpoint that is still unmarked is handed over again (reconciled). Fetching
//! and marking run side by side (the server's MOVE costs several times its FETCH); while
//! a backlog is fetched, marking waits for it (up to `MARK_DELAY`), so the cases come
//! first and the server moves mail in few large commands. Every network step has a timeout;
//! any error on either connection ends both, and the watcher reconnects with capped,
//! jittered exponential backoff. Watchers share nothing but the writer, so one mailbox's
//! trouble never stops another.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, ResponseCode, Status};
use async_imap::types::UnsolicitedResponse;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::{lease, Checkpoint, Lease, Pending, Processed, Settled, SourceMail, WriterHandle};
use crate::backoff::Backoff;
use crate::config::{MailboxConfig, MarkProcessed, Tls};
use crate::ingest::Origin;
use crate::metrics::MailboxMetrics;
use crate::oauth::Credentials;

/// RFC 2177: clients should re-issue IDLE at least every 29 minutes.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Without any word from the server for this long, IDLE is ended and the connection
/// checked with a command (which has the step timeout): a dead peer is found this way.
const IDLE_SILENCE: Duration = Duration::from_secs(5 * 60);
/// How long a logout may take when we are leaving anyway.
const GOODBYE: Duration = Duration::from_secs(1);
/// The marking connection is closed after this long without a batch to mark (and opened
/// again with the next one), so an idle watcher holds a single connection.
const MARKER_LINGER: Duration = Duration::from_secs(60);
/// Fetched batches not yet written, whose mails are in memory: the one being fetched and
/// prepared, and two waiting at the writer (which so finds the next batch ready when it
/// finishes one).
const BATCHES_IN_MEMORY: usize = 3;
/// Batches handed to the writer that may wait to be marked (they hold only UIDs and the
/// writer's answer, not the mails). Those waiting are marked together: the server's cost
/// per command is large beside its cost per mail.
const MARK_QUEUE: usize = 32;
/// While the fetching connection works through a backlog, committed batches wait this
/// long at most before they are marked: the cases come first, and the server's MOVE
/// (several times the cost of its FETCH) is done in fewer, larger commands.
const MARK_DELAY: Duration = Duration::from_secs(2);
/// Mails per marking command at most, so that other clients of the folder never wait
/// long for one (the server locks the folder while it moves mail).
const MARK_AT_ONCE: usize = 5_000;

/// Any byte stream async-imap can run on: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

pub type ImapSession = async_imap::Session<Box<dyn Io>>;

/// What the server offers that the watcher cares about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCaps {
    pub idle: bool,
    pub mv: bool,
    pub uidplus: bool,
}

impl fmt::Display for ServerCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (on, name) in [(self.idle, "IDLE"), (self.mv, "MOVE"), (self.uidplus, "UIDPLUS")] {
            names.push(if on { name.to_string() } else { format!("no {name}") });
        }
        f.write_str(&names.join(", "))
    }
}

/// A logged-in connection.
pub struct Connected {
    pub session: ImapSession,
    pub caps: ServerCaps,
}

/// Runs `fut` with a timeout; both failures carry `what` for the log and for `doctor`.
async fn step<T, E>(
    limit: Duration,
    what: impl fmt::Display,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into().context(what.to_string())),
        Err(_) => Err(anyhow!("{what}: no answer within {} s (timeout_secs)", limit.as_secs())),
    }
}

/// A TLS connector trusting the public web roots plus, if given, the CA in `ca_file`.
pub fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in
            CertificateDer::pem_file_iter(path).with_context(|| format!("cannot read ca_file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("ca_file {} is not a PEM certificate", path.display()))?;
            roots.add(cert).with_context(|| format!("ca_file {} holds an unusable certificate", path.display()))?;
            added += 1;
        }
        if added == 0 {
            bail!("ca_file {} holds no PEM certificate", path.display());
        }
    }
    // Named provider: lettre and tokio-rustls bring two into the graph, and builder()
    // would panic at run time.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects, secures and logs in, with every step under the server timeout. Errors are phrased
/// for a mail administrator (they are what `casegate doctor` prints).
pub async fn connect(mb: &MailboxConfig, credentials: &Credentials) -> anyhow::Result<Connected> {
    let t = mb.server.timeout;
    let addr = format!("{}:{}", mb.server.host, mb.server.port);
    let tcp = match tokio::time::timeout(t, TcpStream::connect((mb.server.host.as_str(), mb.server.port))).await {
        Err(_) => {
            bail!("no answer from {addr} within {} s: wrong host or port, or a firewall in between?", t.as_secs())
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => bail!(
            "nothing accepts connections on {addr}: is the IMAP server running, and is the port right \
             (usually 993 for tls = \"tls\", 143 for \"starttls\" or \"none\")?"
        ),
        Ok(Err(e)) => bail!("cannot connect to {addr}: {e}"),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let handshake = |e: std::io::Error| {
        let text = e.to_string();
        let hint = if text.contains("certificate") || text.contains("Certificate") || text.contains("issuer") {
            "the server's certificate is not trusted for this host name; for a private CA set ca_file"
        } else {
            "does the server speak TLS on this port? (tls = \"tls\" is for port 993; use \"starttls\" for 143)"
        };
        anyhow!("TLS handshake with {addr} failed: {text}\n  hint: {hint}")
    };
    let server_name = || {
        ServerName::try_from(mb.server.host.clone())
            .map_err(|_| anyhow!("{:?} is not a valid host name for TLS", mb.server.host))
    };

    let (client, greeting_caps) = match mb.server.tls {
        Tls::None => {
            let mut client = async_imap::Client::new(Box::new(tcp) as Box<dyn Io>);
            let caps = read_greeting(&mut client, &addr, t).await?;
            (client, caps)
        }
        Tls::Tls => {
            let connector = tls_connector(mb.server.ca_file.as_deref())?;
            let tls = match tokio::time::timeout(t, connector.connect(server_name()?, tcp)).await {
                Err(_) => bail!("TLS handshake with {addr}: no answer within {} s", t.as_secs()),
                Ok(r) => r.map_err(handshake)?,
            };
            let mut client = async_imap::Client::new(Box::new(tls) as Box<dyn Io>);
            let caps = read_greeting(&mut client, &addr, t).await?;
            (client, caps)
        }
        Tls::Starttls => {
            let connector = tls_connector(mb.server.ca_file.as_deref())?;
            let mut plain = async_imap::Client::new(tcp);
            read_greeting(&mut plain, &addr, t).await?;
            step(
                t,
                format!("{addr} refused STARTTLS (tls = \"starttls\")"),
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let tcp = plain.into_inner();
            let tls = match tokio::time::timeout(t, connector.connect(server_name()?, tcp)).await {
                Err(_) => bail!("TLS handshake after STARTTLS with {addr}: no answer within {} s", t.as_secs()),
                Ok(r) => r.map_err(handshake)?,
            };
            // Capabilities announced before TLS are not to be trusted (RFC 3501 §6.2.1).
            (async_imap::Client::new(Box::new(tls) as Box<dyn Io>), HashSet::new())
        }
    };

    let session = match credentials {
        Credentials::OAuth2 { user, tokens } => {
            let server = crate::oauth::imap::Server { host: &mb.server.host, port: mb.server.port, timeout: t };
            crate::oauth::imap::sign_in(client, &server, user, tokens, &greeting_caps).await?
        }
        Credentials::Password { password, .. } => login(client, mb, password, &greeting_caps, &addr).await?,
        // A loaded config gives every mailbox a password or OAuth2; the server refuses this.
        Credentials::None => login(client, mb, "", &greeting_caps, &addr).await?,
    };
    let mut session = session;
    let caps = step(t, "CAPABILITY", session.capabilities()).await?;
    let caps = ServerCaps { idle: caps.has_str("IDLE"), mv: caps.has_str("MOVE"), uidplus: caps.has_str("UIDPLUS") };
    Ok(Connected { session, caps })
}

/// Reads the server's greeting (async-imap does not); returns the capabilities it names.
async fn read_greeting<T: Io>(
    client: &mut async_imap::Client<T>,
    addr: &str,
    t: Duration,
) -> anyhow::Result<HashSet<String>> {
    let greeting = match tokio::time::timeout(t, client.read_response()).await {
        Err(_) => bail!("connected to {addr}, but no IMAP greeting within {} s: is this an IMAP port?", t.as_secs()),
        Ok(Err(e)) => bail!("connected to {addr}, but reading the greeting failed: {e}"),
        Ok(Ok(None)) => bail!("{addr} closed the connection before greeting: is this an IMAP port?"),
        Ok(Ok(Some(g))) => g,
    };
    match greeting.parsed() {
        Response::Data { status: Status::Ok | Status::PreAuth, outcome } => {
            let mut caps = HashSet::new();
            if let Some(ResponseCode::Capabilities(list)) = &outcome.code {
                caps.extend(list.iter().map(crate::oauth::imap::capability_name));
            }
            Ok(caps)
        }
        Response::Data { outcome, .. } => {
            bail!("{addr} refused the connection: {}", outcome.information.as_deref().unwrap_or("(no reason given)"))
        }
        other => bail!("{addr} sent no IMAP greeting (got {other:?}): is this an IMAP port?"),
    }
}

/// SASL PLAIN: authorization id empty, then user and password.
struct PlainAuth<'a> {
    user: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for &PlainAuth<'_> {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("\0{}\0{}", self.user, self.password)
    }
}

/// LOGIN, or AUTHENTICATE PLAIN when the server announced LOGINDISABLED (or refused
/// LOGIN as a command rather than the credentials).
async fn login(
    client: async_imap::Client<Box<dyn Io>>,
    mb: &MailboxConfig,
    password: &str,
    greeting_caps: &HashSet<String>,
    addr: &str,
) -> anyhow::Result<ImapSession> {
    let t = mb.server.timeout;
    let refused = |e: async_imap::error::Error| match e {
        async_imap::error::Error::No(text) => anyhow!(
            "{addr} refused the login of {:?}: wrong username or password? (server said: {})",
            mb.username(),
            text.trim()
        ),
        other => anyhow!("login at {addr} failed: {other}"),
    };
    let plain = PlainAuth { user: mb.username(), password };
    let client = if greeting_caps.contains("LOGINDISABLED") {
        client
    } else {
        match tokio::time::timeout(t, client.login(mb.username(), password)).await {
            Err(_) => bail!("login at {addr}: no answer within {} s", t.as_secs()),
            Ok(Ok(session)) => return Ok(session),
            Ok(Err((async_imap::error::Error::Bad(_), client))) => client,
            Ok(Err((e, _))) => return Err(refused(e)),
        }
    };
    match tokio::time::timeout(t, client.authenticate("PLAIN", &plain)).await {
        Err(_) => bail!("AUTHENTICATE PLAIN at {addr}: no answer within {} s", t.as_secs()),
        Ok(Ok(session)) => Ok(session),
        Ok(Err((e, _))) => Err(refused(e)),
    }
}

/// Formats sorted UIDs as an IMAP sequence set: `1:5,7,9:12`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Everything a watcher needs; cheap to clone into its task.
#[derive(Clone)]
pub struct Watcher {
    pub mailbox: Arc<MailboxConfig>,
    /// The password, or the mailbox's OAuth2 token source (shared by both connections).
    pub credentials: Credentials,
    pub writer: WriterHandle,
    pub shutdown: CancellationToken,
    /// Process what is waiting, then return (`casegate run --once`).
    pub once: bool,
    /// The mailbox's lease, when this node works it under one (`casegate run`): batches
    /// and checkpoints commit only while it holds, marking only while it is sure.
    pub lease: Option<Arc<Lease>>,
}

impl Watcher {
    /// The fence its commits carry, under a lease.
    fn fence(&self) -> Option<crate::store::nodes::Fence> {
        self.lease.as_ref().map(|l| l.fence.clone())
    }

    /// Watches the mailbox until shutdown (or, with `once`, until it is drained).
    /// Reconnects after any error; returns `Err` only in `once` mode.
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self.mailbox.name.clone();
        let mut backoff = Backoff::after_errors();
        let metrics = crate::metrics::global().mailbox(&name);
        let _stopped = StopsMetrics(&metrics);
        loop {
            match self.session(&mut backoff, &metrics).await {
                Ok(()) => return Ok(()),
                Err(e) if lease::is_lost(&e) => {
                    tracing::warn!(mailbox = %name, error = %format!("{e:#}"), "Mailbox left: its lease was lost");
                    if let Some(lease) = &self.lease {
                        lease.lose();
                    }
                    return Ok(());
                }
                Err(e) if self.shutdown.is_cancelled() => {
                    tracing::debug!(mailbox = %name, error = %format!("{e:#}"), "Error while shutting down");
                    return Ok(());
                }
                Err(e) if self.once => return Err(e.context(format!("mailbox {name}"))),
                Err(e) => {
                    let delay = backoff.next_delay();
                    metrics.failed(&format!("{e:#}"), delay);
                    tracing::warn!(
                        mailbox = %name,
                        error = %format!("{e:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "Mailbox connection failed; reconnecting"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    /// One connection's life: connect, select, then drain and wait until shutdown, with
    /// a marking connection beside it.
    async fn session(&self, backoff: &mut Backoff, metrics: &MailboxMetrics) -> anyhow::Result<()> {
        let mb = &self.mailbox;
        let started = Instant::now();
        let Connected { session, caps } = tokio::select! {
            c = connect(mb, &self.credentials) => c?,
            _ = self.shutdown.cancelled() => return Ok(()),
        };
        tracing::debug!(mailbox = %mb.name, ms = started.elapsed().as_millis() as u64, "Logged in");
        let mut folder = Folder {
            w: self,
            session: Some(session),
            caps,
            uidvalidity: 0,
            handed_over: 0,
            drained: false,
            in_memory: Arc::new(Semaphore::new(BATCHES_IN_MEMORY)),
            draining: watch::channel(false).0,
            metrics,
        };
        folder.select().await?;
        metrics.connected(caps.idle && mb.idle);
        tracing::info!(
            mailbox = %mb.name,
            folder = %mb.folder,
            server = %caps,
            last_uid = folder.handed_over,
            ms = started.elapsed().as_millis() as u64,
            "Mailbox connected"
        );
        let mut marker = Marker {
            w: self,
            session: None,
            caps,
            uidvalidity: folder.uidvalidity,
            last_uid: folder.handed_over,
            known_folders: HashSet::new(),
            warned_no_expunge: false,
            failed: false,
            draining: folder.draining.subscribe(),
        };
        let (queue, batches) = mpsc::channel(MARK_QUEUE);
        let result = {
            let fetching = folder.watch(queue);
            let marking = marker.run(batches);
            tokio::pin!(fetching, marking);
            // The fetcher's end closes the queue; the marker then marks what is left (the
            // mail in hand at shutdown) and ends. A marker error ends the fetcher at once.
            tokio::select! {
                r = &mut fetching => {
                    let m = marking.await;
                    r.and(m)
                }
                m = &mut marking => match m {
                    Ok(()) => fetching.await,
                    Err(e) => Err(e),
                },
            }
        };
        // Only a connection that got its work done counts as recovered: one that fails in
        // the same place every time keeps backing off.
        if folder.drained && !marker.failed {
            backoff.reset();
        }
        goodbye(folder.session.take()).await;
        goodbye(marker.session.take()).await;
        result
    }
}

/// Marks the mailbox stopped in the metrics when its watcher returns, however it does.
struct StopsMetrics<'a>(&'a MailboxMetrics);

impl Drop for StopsMetrics<'_> {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

/// Splits `uids` (ascending; `sizes` in the same order) into fetch batches of at most
/// `max_mails` mails and `max_bytes` bytes; a mail larger than `max_bytes` is a batch of
/// its own.
fn batches<'u>(uids: &'u [u32], sizes: &[u64], max_mails: usize, max_bytes: u64) -> Vec<&'u [u32]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate().take(uids.len()) {
        if i > start && (i - start >= max_mails || bytes.saturating_add(size) > max_bytes) {
            out.push(&uids[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < uids.len() {
        out.push(&uids[start..]);
    }
    out
}

/// Splits batches, in order, into groups of at most `max` mails (a larger batch alone).
fn groups(batches: Vec<InFlight>, max: usize) -> Vec<Vec<InFlight>> {
    let mut out: Vec<Vec<InFlight>> = Vec::new();
    let mut mails = 0;
    for batch in batches {
        match out.last_mut() {
            Some(group) if mails + batch.uids.len() <= max => {
                mails += batch.uids.len();
                group.push(batch);
            }
            _ => {
                mails = batch.uids.len();
                out.push(vec![batch]);
            }
        }
    }
    out
}

/// Logs out, not waiting long: we are leaving anyway.
async fn goodbye(session: Option<ImapSession>) {
    if let Some(mut session) = session {
        let _ = tokio::time::timeout(GOODBYE, session.logout()).await;
    }
}

/// SELECTs the mailbox's folder; returns its UIDVALIDITY.
async fn select_folder(session: &mut ImapSession, mb: &MailboxConfig) -> anyhow::Result<u32> {
    let selected = open_folder(session, mb, false).await?;
    Ok(selected.uid_validity.unwrap_or(0))
}

/// Opens the mailbox's folder with `SELECT` (read-write) or `EXAMINE` (read-only), with
/// the step timeout and a plain word for a folder the server will not open.
async fn open_folder(
    session: &mut ImapSession,
    mb: &MailboxConfig,
    read_only: bool,
) -> anyhow::Result<async_imap::types::Mailbox> {
    let t = mb.server.timeout;
    let command = if read_only { "EXAMINE" } else { "SELECT" };
    let opening = async {
        if read_only {
            session.examine(&mb.folder).await
        } else {
            session.select(&mb.folder).await
        }
    };
    match tokio::time::timeout(t, opening).await {
        Err(_) => bail!("{command} {:?}: no answer within {} s", mb.folder, t.as_secs()),
        Ok(Err(async_imap::error::Error::No(text))) => bail!(
            "folder {:?} cannot be opened for {}: does it exist? (server said: {})",
            mb.folder,
            mb.username(),
            text.trim()
        ),
        Ok(r) => r.with_context(|| format!("{command} {:?}", mb.folder)),
    }
}

/// The fetching connection, with its folder selected.
struct Folder<'a> {
    w: &'a Watcher,
    /// `None` only while IDLE owns the session.
    session: Option<ImapSession>,
    caps: ServerCaps,
    uidvalidity: u32,
    /// Every UID up to this one is committed and marked (the checkpoint), or handed to
    /// the writer and queued for marking on this connection's watch.
    handed_over: u32,
    /// A drain completed on this connection.
    drained: bool,
    /// One permit per batch whose mails are in memory ([`BATCHES_IN_MEMORY`]).
    in_memory: Arc<Semaphore>,
    /// `true` while a drain is under way (the marker lets batches gather meanwhile).
    draining: watch::Sender<bool>,
    /// Where the last successful fetch is recorded.
    metrics: &'a MailboxMetrics,
}

/// The marking connection: marks committed batches in order and advances the checkpoint.
struct Marker<'a> {
    w: &'a Watcher,
    /// Whether the fetching connection is draining (see [`MARK_DELAY`]).
    draining: watch::Receiver<bool>,
    /// Opened when a batch is to be marked; closed after [`MARKER_LINGER`] without one.
    session: Option<ImapSession>,
    caps: ServerCaps,
    /// What the fetching connection selected: the marker must see the same.
    uidvalidity: u32,
    /// Every UID up to this one is committed and marked.
    last_uid: u32,
    /// Folders known to exist (created if needed) on this connection.
    known_folders: HashSet<String>,
    warned_no_expunge: bool,
    /// Marking failed on this connection.
    failed: bool,
}

/// One fetched batch on its way through the writer.
struct InFlight {
    /// Highest UID asked for (mails that vanished meanwhile count as done).
    max_uid: u32,
    uids: Vec<u32>,
    pending: Option<Pending>,
}

/// What marking does to a mail on the server.
#[derive(Debug, Clone, Copy)]
enum Mark<'a> {
    MoveTo(&'a str),
    Seen,
    Delete,
}

impl fmt::Display for Mark<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mark::MoveTo(folder) => write!(f, "moved to {folder}"),
            Mark::Seen => f.write_str("flagged \\Seen"),
            Mark::Delete => f.write_str("deleted"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Wake {
    News,
    Renew,
    Shutdown,
}

impl Folder<'_> {
    fn session(&mut self) -> &mut ImapSession {
        self.session.as_mut().expect("the session is back after IDLE")
    }

    fn t(&self) -> Duration {
        self.w.mailbox.server.timeout
    }

    async fn select(&mut self) -> anyhow::Result<()> {
        let mb = &self.w.mailbox;
        self.uidvalidity = select_folder(self.session.as_mut().expect("session present"), mb).await?;
        let name = &mb.name;
        self.handed_over = match self.w.writer.load_checkpoint(name).await? {
            Some(c) if c.uidvalidity == self.uidvalidity => c.last_uid,
            Some(c) => {
                tracing::warn!(
                    mailbox = %name,
                    old = c.uidvalidity,
                    new = self.uidvalidity,
                    "UIDVALIDITY changed: re-scanning the whole folder; mails already processed are recognised by the journal"
                );
                let checkpoint = Checkpoint { uidvalidity: self.uidvalidity, last_uid: 0 };
                self.w.writer.save_checkpoint(name, checkpoint, self.w.fence()).await?;
                0
            }
            None => 0,
        };
        Ok(())
    }

    /// Drains and waits for news until shutdown (or, with `once`, until drained), queueing
    /// every batch handed to the writer for marking. Returning drops `queue`.
    async fn watch(&mut self, queue: mpsc::Sender<InFlight>) -> anyhow::Result<()> {
        self.draining.send_replace(true);
        self.reconcile(&queue).await?;
        loop {
            self.draining.send_replace(true);
            self.drain(&queue).await?;
            self.draining.send_replace(false);
            self.drained = true;
            self.metrics.fetched();
            if self.w.once || self.w.shutdown.is_cancelled() {
                return Ok(());
            }
            let wake = if self.caps.idle && self.w.mailbox.idle {
                self.idle().await?
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.w.mailbox.poll_interval) => Wake::News,
                    _ = self.w.shutdown.cancelled() => Wake::Shutdown,
                }
            };
            if wake == Wake::Shutdown {
                return Ok(());
            }
        }
    }

    /// Waits in IDLE until the server reports something, the renewal time comes, or
    /// shutdown. The session is back in `self.session` afterwards (unless on error).
    async fn idle(&mut self) -> anyhow::Result<Wake> {
        let t = self.t();
        let shutdown = self.w.shutdown.clone();
        let session = self.session.take().expect("session present");
        // Notices from before are covered by the search that just found nothing new.
        let unsolicited = session.unsolicited_responses.clone();
        while unsolicited.try_recv().is_ok() {}
        let mut handle = session.idle();
        step(t, "IDLE", handle.init()).await?;
        // A server may report new mail before its "+ idling": async-imap files that away
        // as unsolicited, and waiting on would miss it until the next event.
        let mut early = false;
        while let Ok(r) = unsolicited.try_recv() {
            early |= matches!(r, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
        }
        if early {
            self.session = Some(step(t, "IDLE DONE", handle.done()).await?);
            return Ok(Wake::News);
        }
        tracing::debug!(mailbox = %self.w.mailbox.name, "Waiting for new mail (IDLE)");
        let wake = {
            let (wait, _interrupt) = handle.wait_with_timeout(IDLE_SILENCE);
            tokio::select! {
                r = wait => match r.context("IDLE")? {
                    IdleResponse::NewData(_) => Wake::News,
                    IdleResponse::Timeout | IdleResponse::ManualInterrupt => Wake::Renew,
                },
                _ = tokio::time::sleep(IDLE_RENEW) => Wake::Renew,
                _ = shutdown.cancelled() => Wake::Shutdown,
            }
        };
        let limit = if wake == Wake::Shutdown { GOODBYE } else { t };
        self.session = Some(step(limit, "IDLE DONE", handle.done()).await?);
        Ok(wake)
    }

    /// Hands everything waiting to the writer, batch by batch, until a search finds
    /// nothing new, queueing each batch for marking (waiting while [`MARK_QUEUE`]
    /// batches are queued already).
    async fn drain(&mut self, queue: &mpsc::Sender<InFlight>) -> anyhow::Result<()> {
        loop {
            let uids = self.search().await?;
            if uids.is_empty() {
                return Ok(());
            }
            self.hand_over(&uids, queue).await?;
            if self.w.shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Mail at or below the checkpoint that the folder still shows unmarked: the server
    /// was never told (a marking it answered OK to without doing it, by an earlier
    /// version), the marking was changed in the configuration, or someone put mail back
    /// or undeleted it. It is handed over again: the journal recognises what was
    /// processed, which is then only marked, and anything it does not know is processed.
    async fn reconcile(&mut self, queue: &mpsc::Sender<InFlight>) -> anyhow::Result<()> {
        let checkpoint = self.handed_over;
        if checkpoint == 0 {
            return Ok(());
        }
        let unmarked = match self.w.mailbox.mark {
            MarkProcessed::Seen => "UNSEEN NOT DELETED",
            MarkProcessed::Move | MarkProcessed::Delete => "NOT DELETED",
        };
        let query = format!("UID 1:{checkpoint} {unmarked}");
        let found = step(self.t(), "UID SEARCH (reconciling)", self.session().uid_search(&query)).await?;
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u <= checkpoint).collect();
        if uids.is_empty() {
            return Ok(());
        }
        uids.sort_unstable();
        tracing::info!(
            mailbox = %self.w.mailbox.name,
            mails = uids.len(),
            uids = %uid_set(&uids),
            last_uid = checkpoint,
            "Mail at or below the checkpoint is still unmarked in the folder; handing it over again"
        );
        self.hand_over(&uids, queue).await
    }

    /// Fetches `uids` (ascending) in batches bounded in mails and bytes, hands each to the
    /// writer and queues it for marking. Stops between batches at shutdown.
    async fn hand_over(&mut self, uids: &[u32], queue: &mpsc::Sender<InFlight>) -> anyhow::Result<()> {
        let batch = self.w.mailbox.batch_size as usize;
        let sizes = self.sizes(uids).await?;
        tracing::debug!(mailbox = %self.w.mailbox.name, waiting = uids.len(), bytes = sizes.iter().sum::<u64>(), "New mail");
        for chunk in batches(uids, &sizes, batch, self.w.mailbox.batch_bytes) {
            let permit = Arc::clone(&self.in_memory).acquire_owned().await.context("memory bound")?;
            // Finish the batch in hand, but start no new one after shutdown.
            if self.w.shutdown.is_cancelled() {
                return Ok(());
            }
            let fetch_started = Instant::now();
            let mails = self.fetch(chunk).await?;
            tracing::trace!(mails = mails.len(), ms = fetch_started.elapsed().as_millis() as u64, "Batch fetched");
            if mails.len() < chunk.len() {
                // Expunged by another client since the search. Counted as done: what is
                // not in the folder cannot be fetched again either.
                let got: HashSet<u32> = mails.iter().map(|(uid, _)| *uid).collect();
                let gone: Vec<u32> = chunk.iter().copied().filter(|u| !got.contains(u)).collect();
                tracing::warn!(mailbox = %self.w.mailbox.name, uids = %uid_set(&gone), "Mail vanished before it could be fetched (removed by another client?)");
            }
            let fetched: Vec<u32> = mails.iter().map(|(uid, _)| *uid).collect();
            let pending = if mails.is_empty() {
                None
            } else {
                let batch =
                    mails.into_iter().map(|(uid, (raw, arrived))| self.source_mail(uid, raw, arrived)).collect();
                Some(self.w.writer.submit_fenced(batch, Some(permit), self.w.fence()).await?)
            };
            let max_uid = *chunk.last().expect("chunks are not empty");
            // Fails only when the marker has ended with an error (reported by it).
            if queue.send(InFlight { max_uid, uids: fetched, pending }).await.is_err() {
                bail!("marking stopped");
            }
            self.handed_over = self.handed_over.max(max_uid);
        }
        Ok(())
    }

    fn source_mail(&self, uid: u32, raw: Vec<u8>, arrived: Option<SystemTime>) -> SourceMail {
        let mb = &self.w.mailbox;
        SourceMail {
            raw,
            origin: Origin {
                description: format!("imap:{} uid {uid}", mb.name),
                source: Some(mb.name.clone()),
                source_key: Some(format!("{}:{uid}", self.uidvalidity)),
                account: mb.account.clone(),
            },
            arrived,
        }
    }

    /// UIDs not handed over yet, ascending. `n:*` always includes the highest UID even
    /// when it is below n, hence the filter.
    async fn search(&mut self) -> anyhow::Result<Vec<u32>> {
        let t = self.t();
        let query = format!("UID {}:* NOT DELETED", self.handed_over.saturating_add(1));
        let found = step(t, "UID SEARCH", self.session().uid_search(&query)).await?;
        let last = self.handed_over;
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > last).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The sizes of `uids` (RFC822.SIZE), in their order; 0 for a mail the server gave
    /// no size for (it vanished meanwhile, say). One mail needs no size: it is a batch of
    /// its own anyway, so a single new mail costs no extra round trip.
    async fn sizes(&mut self, uids: &[u32]) -> anyhow::Result<Vec<u64>> {
        if uids.len() < 2 {
            return Ok(vec![0; uids.len()]);
        }
        let by_uid: HashMap<u32, u64> = self
            .fetch_each(uids, "(UID RFC822.SIZE)", |fetch| Some(u64::from(fetch.size?)))
            .await?
            .into_iter()
            .collect();
        Ok(uids.iter().map(|uid| by_uid.get(uid).copied().unwrap_or(0)).collect())
    }

    /// Fetches the raw mails of `uids` without setting \Seen, with when the server received
    /// each (INTERNALDATE). Mails expunged meanwhile by someone else are simply absent.
    async fn fetch(&mut self, uids: &[u32]) -> anyhow::Result<Vec<(u32, (Vec<u8>, Option<SystemTime>))>> {
        let mut out = self
            .fetch_each(uids, "(UID INTERNALDATE BODY.PEEK[])", |fetch| {
                let arrived = fetch.internal_date().map(SystemTime::from);
                fetch.body().map(|raw| (raw.to_vec(), arrived))
            })
            .await?;
        out.sort_by_key(|(uid, _)| *uid);
        out.dedup_by_key(|(uid, _)| *uid);
        Ok(out)
    }

    /// `UID FETCH <uids> <items>`, keeping what `read` takes from each response about
    /// one of `uids` (a server may add responses about other mails).
    async fn fetch_each<T>(
        &mut self,
        uids: &[u32],
        items: &str,
        mut read: impl FnMut(&async_imap::types::Fetch) -> Option<T>,
    ) -> anyhow::Result<Vec<(u32, T)>> {
        let t = self.t();
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let session = self.session.as_mut().expect("session present");
        let mut stream = step(t, "UID FETCH", session.uid_fetch(uid_set(uids), items)).await?;
        let mut out = Vec::with_capacity(uids.len());
        // The timeout applies to each response, so a large batch of large mails is fine
        // as long as the server keeps sending; the stream must be drained before the
        // session can be used again.
        while let Some(fetch) = step(t, "UID FETCH", stream.try_next()).await? {
            if let Some(uid) = fetch.uid.filter(|uid| wanted.contains(uid)) {
                if let Some(value) = read(&fetch) {
                    out.push((uid, value));
                }
            }
        }
        Ok(out)
    }
}

impl Marker<'_> {
    fn session(&mut self) -> &mut ImapSession {
        self.session.as_mut().expect("the marking connection is open")
    }

    fn t(&self) -> Duration {
        self.w.mailbox.server.timeout
    }

    /// Marks the queued batches in order until the queue is closed and empty. Any error
    /// ends the marking (and, through the closed queue, the fetching).
    async fn run(&mut self, mut batches: mpsc::Receiver<InFlight>) -> anyhow::Result<()> {
        loop {
            let next = if self.session.is_some() {
                match tokio::time::timeout(MARKER_LINGER, batches.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::debug!(mailbox = %self.w.mailbox.name, "Marking connection closed (nothing to mark)");
                        goodbye(self.session.take()).await;
                        continue;
                    }
                }
            } else {
                batches.recv().await
            };
            let Some(batch) = next else { return Ok(()) };
            let mut together = vec![batch];
            // While a backlog is being fetched, batches gather (committed mail is safe;
            // only the server's folder lags behind the database meanwhile).
            let deadline = tokio::time::Instant::now() + MARK_DELAY;
            while *self.draining.borrow_and_update() && together.len() < MARK_QUEUE {
                tokio::select! {
                    b = batches.recv() => match b {
                        Some(b) => together.push(b),
                        None => break,
                    },
                    changed = self.draining.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            // Those queued meanwhile join them: the server's cost per command is large
            // beside its cost per mail (Dovecot: ~6 ms, then ~50 µs a mail).
            while together.len() < MARK_QUEUE {
                match batches.try_recv() {
                    Ok(b) => together.push(b),
                    Err(_) => break,
                }
            }
            for group in groups(together, MARK_AT_ONCE) {
                if let Err(e) = self.finish(group).await {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// Opens the marking connection if it is not open, with the folder selected.
    async fn open(&mut self) -> anyhow::Result<()> {
        if self.session.is_some() {
            return Ok(());
        }
        let mb = &self.w.mailbox;
        let started = Instant::now();
        let Connected { mut session, caps } =
            connect(mb, &self.w.credentials).await.context("opening the connection that marks processed mail")?;
        let uidvalidity = select_folder(&mut session, mb).await?;
        if uidvalidity != self.uidvalidity {
            goodbye(Some(session)).await;
            bail!("UIDVALIDITY of {:?} changed from {} to {uidvalidity} while connected", mb.folder, self.uidvalidity);
        }
        tracing::debug!(mailbox = %mb.name, ms = started.elapsed().as_millis() as u64, "Marking connection opened");
        self.caps = caps;
        self.known_folders.clear();
        self.session = Some(session);
        Ok(())
    }

    /// Waits for the commits of `batches` (in order), marks their mails on the server with
    /// one command per outcome, then advances the checkpoint. On `Err` nothing after the
    /// failing step happened: the mails are seen again after reconnecting, and recognised
    /// by the journal.
    async fn finish(&mut self, batches: Vec<InFlight>) -> anyhow::Result<()> {
        let mut uids = Vec::new();
        let mut pending = Vec::new();
        let mut max_uid = 0;
        for batch in batches {
            uids.extend(batch.uids);
            pending.extend(batch.pending);
            max_uid = max_uid.max(batch.max_uid);
        }
        let committed = async {
            let mut processed = Vec::with_capacity(uids.len());
            for p in pending {
                processed.extend(p.wait().await?);
            }
            anyhow::Ok(processed)
        };
        // The connection is opened (if need be) while the writer commits.
        let processed: Vec<Processed> =
            if uids.is_empty() { committed.await? } else { tokio::try_join!(committed, self.open())?.0 };
        let mut done = Vec::new();
        let mut quarantine = Vec::new();
        for (uid, p) in uids.iter().zip(&processed) {
            match p.settled {
                Settled::Processed => done.push(*uid),
                Settled::Quarantined => quarantine.push(*uid),
            }
        }
        let mb = Arc::clone(&self.w.mailbox);
        // Committed under the lease; marked only while it is surely still ours (a node
        // paused past its lease leaves the marking to the node that took the mailbox).
        if let Some(lease) = &self.w.lease {
            lease.check()?;
        }
        // Each mail's outcome was logged when it was committed (`Mail processed`, origin
        // `imap:<mailbox> uid <N>`); marking logs what became of them on the server.
        self.mark(&done, &quarantine).await?;
        // Drop the EXPUNGE/EXISTS notices our own commands caused: nobody reads them on
        // this connection.
        if let Some(session) = &self.session {
            while session.unsolicited_responses.try_recv().is_ok() {}
        }
        self.last_uid = self.last_uid.max(max_uid);
        self.w
            .writer
            .save_checkpoint_later(
                &mb.name,
                Checkpoint { uidvalidity: self.uidvalidity, last_uid: self.last_uid },
                self.w.fence(),
            )
            .await?;
        Ok(())
    }

    /// Marks committed mail on the server: quarantined mail to the quarantine folder, the
    /// rest as configured. Returns only once the server's folder shows it happened.
    async fn mark(&mut self, done: &[u32], quarantine: &[u32]) -> anyhow::Result<()> {
        let mb = Arc::clone(&self.w.mailbox);
        // This connection may have been open (and silent) since before these mails
        // arrived: a server acts only on the mails the session knows of, and answers OK to
        // a command naming others while doing nothing. A NOOP brings the session up to date.
        step(self.t(), "NOOP", self.session().noop()).await?;
        if !quarantine.is_empty() {
            self.marked(quarantine, Mark::MoveTo(&mb.quarantine_folder)).await?;
        }
        if !done.is_empty() {
            let how = match mb.mark {
                MarkProcessed::Move => Mark::MoveTo(&mb.processed_folder),
                MarkProcessed::Seen => Mark::Seen,
                MarkProcessed::Delete => Mark::Delete,
            };
            self.marked(done, how).await?;
        }
        Ok(())
    }

    /// Applies `how` to `uids`, then asks the server which of them are still unmarked
    /// (an OK says the command was valid, not that it changed anything). What is left is
    /// tried once more after another NOOP; if the server still leaves mails unmarked, the
    /// error names them, and they are fetched, recognised and marked after reconnecting.
    async fn marked(&mut self, uids: &[u32], how: Mark<'_>) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut left = uids.to_vec();
        for attempt in 0..2 {
            if attempt > 0 {
                tracing::warn!(
                    mailbox = %self.w.mailbox.name,
                    uids = %uid_set(&left),
                    on_server = %how,
                    "The server answered OK but left mails unmarked; trying them again"
                );
                step(self.t(), "NOOP", self.session().noop()).await?;
            }
            match how {
                Mark::MoveTo(folder) => self.move_to(&left, folder).await?,
                Mark::Seen => self.store(&left, "+FLAGS.SILENT (\\Seen)").await?,
                Mark::Delete => {
                    self.store(&left, "+FLAGS.SILENT (\\Deleted)").await?;
                    self.expunge(&left).await?;
                }
            }
            left = self.unmarked(&left, how).await?;
            if left.is_empty() {
                // Logged only now that the folder shows it.
                tracing::info!(
                    mailbox = %self.w.mailbox.name,
                    mails = uids.len(),
                    uids = %uid_set(uids),
                    on_server = %how,
                    ms = started.elapsed().as_millis() as u64,
                    "Mails marked"
                );
                return Ok(());
            }
        }
        bail!(
            "the server left {} mail(s) unmarked ({how}) although it answered OK: UIDs {}",
            left.len(),
            uid_set(&left)
        )
    }

    /// Which of `uids` the folder still shows unmarked: present at all after a move or a
    /// delete (unless the server cannot expunge them: then not flagged \Deleted), or
    /// without \Seen.
    async fn unmarked(&mut self, uids: &[u32], how: Mark<'_>) -> anyhow::Result<Vec<u32>> {
        let set = uid_set(uids);
        let expunges = self.caps.uidplus || (matches!(how, Mark::MoveTo(_)) && self.caps.mv);
        let query = match how {
            Mark::Seen => format!("UID {set} UNSEEN"),
            Mark::MoveTo(_) | Mark::Delete if expunges => format!("UID {set}"),
            Mark::MoveTo(_) | Mark::Delete => format!("UID {set} NOT DELETED"),
        };
        let found = step(self.t(), "UID SEARCH (checking the marking)", self.session().uid_search(&query)).await?;
        let asked: HashSet<u32> = uids.iter().copied().collect();
        let mut left: Vec<u32> = found.into_iter().filter(|u| asked.contains(u)).collect();
        left.sort_unstable();
        Ok(left)
    }

    /// Makes sure `folder` exists (creating it once per connection if needed).
    async fn ensure_folder(&mut self, folder: &str) -> anyhow::Result<()> {
        if self.known_folders.contains(folder) {
            return Ok(());
        }
        let t = self.t();
        let exists = match tokio::time::timeout(t, self.session().status(folder, "(MESSAGES)")).await {
            Err(_) => bail!("STATUS {folder:?}: no answer within {} s", t.as_secs()),
            Ok(Ok(_)) => true,
            Ok(Err(async_imap::error::Error::No(_))) => false,
            Ok(Err(e)) => return Err(anyhow::Error::new(e).context(format!("STATUS {folder:?}"))),
        };
        if !exists {
            step(t, format!("cannot create folder {folder:?}"), self.session().create(folder)).await?;
            tracing::info!(mailbox = %self.w.mailbox.name, folder, "Folder created");
        }
        self.known_folders.insert(folder.to_string());
        Ok(())
    }

    /// Moves mails to `folder`: MOVE where offered; else COPY, then flag them \Deleted and
    /// expunge exactly those UIDs (UIDPLUS) — never a plain EXPUNGE, which would also
    /// remove mail others flagged \Deleted.
    async fn move_to(&mut self, uids: &[u32], folder: &str) -> anyhow::Result<()> {
        self.ensure_folder(folder).await?;
        let t = self.t();
        let set = uid_set(uids);
        if self.caps.mv {
            step(t, format!("UID MOVE to {folder:?}"), self.session().uid_mv(&set, folder)).await?;
        } else {
            step(t, format!("UID COPY to {folder:?}"), self.session().uid_copy(&set, folder)).await?;
            self.store(uids, "+FLAGS.SILENT (\\Seen \\Deleted)").await?;
            self.expunge(uids).await?;
        }
        Ok(())
    }

    async fn store(&mut self, uids: &[u32], what: &str) -> anyhow::Result<()> {
        let t = self.t();
        let set = uid_set(uids);
        let session = self.session.as_mut().expect("session present");
        let mut stream = step(t, "UID STORE", session.uid_store(&set, what)).await?;
        while step(t, "UID STORE", stream.try_next()).await?.is_some() {}
        Ok(())
    }

    /// UID EXPUNGE of exactly `uids`; without UIDPLUS the mails stay flagged \Deleted
    /// (the search skips them) until some client expunges the folder.
    async fn expunge(&mut self, uids: &[u32]) -> anyhow::Result<()> {
        if !self.caps.uidplus {
            if !self.warned_no_expunge {
                tracing::warn!(
                    mailbox = %self.w.mailbox.name,
                    "The server lacks UIDPLUS: processed mail stays flagged \\Deleted until a mail client expunges the folder"
                );
                self.warned_no_expunge = true;
            }
            return Ok(());
        }
        let t = self.t();
        let set = uid_set(uids);
        let session = self.session.as_mut().expect("session present");
        let stream = step(t, "UID EXPUNGE", session.uid_expunge(&set)).await?;
        let mut stream = std::pin::pin!(stream);
        while step(t, "UID EXPUNGE", stream.try_next()).await?.is_some() {}
        Ok(())
    }
}

/// Marks committed mail of `watcher`'s folder (UIDVALIDITY `uidvalidity`) on a connection
/// of its own, exactly as the daemon does after a commit: `done` as configured,
/// `quarantine` to the quarantine folder, checked against the folder afterwards. For
/// `casegate reconcile --fix`; the watcher's checkpoint is not touched.
pub async fn mark_committed(
    watcher: &Watcher,
    uidvalidity: u32,
    done: &[u32],
    quarantine: &[u32],
) -> anyhow::Result<()> {
    let mut marker = Marker {
        w: watcher,
        // Nothing drains here: marking need not wait for anything.
        draining: watch::channel(false).1,
        session: None,
        caps: ServerCaps::default(),
        uidvalidity,
        last_uid: 0,
        known_folders: HashSet::new(),
        warned_no_expunge: false,
        failed: false,
    };
    marker.open().await?;
    let result = marker.mark(done, quarantine).await;
    goodbye(marker.session.take()).await;
    result
}

/// For `doctor`: connect, log in, open the folder, and describe what was found.
pub async fn check(mb: &MailboxConfig, credentials: &Credentials) -> anyhow::Result<String> {
    let started = Instant::now();
    let Connected { mut session, caps } = connect(mb, credentials).await?;
    let t = mb.server.timeout;
    let selected =
        open_folder(&mut session, mb, true).await.with_context(|| format!("logged in as {}", mb.username()))?;
    let mut folders = Vec::new();
    let targets: Vec<&str> = match mb.mark {
        MarkProcessed::Move => vec![&mb.processed_folder, &mb.quarantine_folder],
        _ => vec![&mb.quarantine_folder],
    };
    for f in targets {
        let exists = matches!(tokio::time::timeout(t, session.status(f, "(MESSAGES)")).await, Ok(Ok(_)));
        folders.push(if exists { format!("{f:?} exists") } else { format!("{f:?} will be created") });
    }
    let _ = tokio::time::timeout(GOODBYE, session.logout()).await;
    let mut notes = Vec::new();
    if !caps.idle && mb.idle {
        notes.push(format!("no IDLE: new mail is found by polling every {} s", mb.poll_interval.as_secs()));
    }
    if !caps.mv && !caps.uidplus && mb.mark != MarkProcessed::Seen {
        notes.push("neither MOVE nor UIDPLUS: processed mail stays flagged \\Deleted in the folder".into());
    }
    let mut text = format!(
        "logged in as {}{} ({}); folder {:?} has {} message(s); {}; server offers {caps}; {} ms",
        mb.username(),
        if matches!(credentials, Credentials::OAuth2 { .. }) { " with an OAuth2 token" } else { "" },
        match mb.server.tls {
            Tls::Tls => "TLS",
            Tls::Starttls => "STARTTLS",
            Tls::None => "no encryption",
        },
        mb.folder,
        selected.exists,
        folders.join(", "),
        started.elapsed().as_millis()
    );
    for n in notes {
        text.push_str(&format!("\n  note: {n}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compressed_into_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn batches_are_marked_in_order_in_groups_of_at_most_so_many_mails() {
        let batch = |first: u32, n: u32| InFlight {
            max_uid: first + n.max(1) - 1,
            uids: (first..first + n).collect(),
            pending: None,
        };
        // 3 + 3 fit in 7; 3 more would not; a batch larger than the limit goes alone; an
        // empty batch (its mails vanished) still joins a group, to advance the checkpoint.
        let batches = vec![batch(1, 3), batch(4, 3), batch(7, 3), batch(10, 9), batch(19, 0), batch(20, 2)];
        let got: Vec<Vec<u32>> = groups(batches, 7).iter().map(|g| g.iter().map(|b| b.max_uid).collect()).collect();
        assert_eq!(got, vec![vec![3, 6], vec![9], vec![18], vec![19, 21]]);
        assert!(groups(Vec::new(), 7).is_empty());
    }

    #[test]
    fn fetch_batches_hold_at_most_so_many_mails_and_bytes() {
        let uids: Vec<u32> = (1..=9).collect();
        let sizes = [10, 10, 10, 10, 100, 10, 40, 40, 40];
        let got = batches(&uids, &sizes, 3, 50);
        // Three by count; then 10 + 100 > 50, so 4 alone; the 100-byte mail alone (over
        // the limit); 10 + 40 = 50 fits; 40 + 40 does not.
        let want: Vec<&[u32]> = vec![&[1, 2, 3], &[4], &[5], &[6, 7], &[8], &[9]];
        assert_eq!(got, want);
        // Sizes unknown (0): by count alone.
        let got = batches(&uids, &[0; 9], 4, 50);
        let want: Vec<&[u32]> = vec![&[1, 2, 3, 4], &[5, 6, 7, 8], &[9]];
        assert_eq!(got, want);
        assert!(batches(&[], &[], 3, 50).is_empty());
    }

    #[test]
    fn server_caps_read_as_words() {
        let caps = ServerCaps { idle: true, mv: false, uidplus: true };
        assert_eq!(caps.to_string(), "IDLE, no MOVE, UIDPLUS");
    }
}
