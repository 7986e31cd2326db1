//! Where mail comes from in `casegate run`: IMAP folders ([`imap`]) and local Maildirs
//! ([`maildir`]), and the one database writer they all share ([`Writer`]).
//!
//! The [`Gateway`] is synchronous (rusqlite), so it lives on a dedicated OS thread that
//! owns it. Sources talk to it through a bounded channel of jobs and get each answer
//! back on a oneshot: no SQLite call ever runs on the async runtime's worker threads, and
//! no connection is held across an `.await`. The bounded channel is the backpressure: a
//! source that fetches faster than the database commits waits in `send().await`.
//!
//! On SQLite there is one such thread (SQLite has one writer at a time). On PostgreSQL
//! there are `storage.writers` of them (lanes), each with a session of its own: every job
//! of one source goes to the same lane, in order, so a mailbox's mail and checkpoints are
//! written in the order it hands them over, while other mailboxes' mail is written beside
//! it — as two nodes would, and with the same guards (a case's row is held while mail for
//! it is decided, the journal's keys are unique, a batch another writer got in the way
//! of is written again).
//!
//! The contract every source keeps (see `docs/daemon.md` for the crash-point argument):
//!
//! 1. fetch a bounded batch without changing anything at the source;
//! 2. [`WriterHandle::ingest`]: one transaction for the batch; the answer arrives only
//!    after the commit;
//! 3. only then mark the mails at the source (move, flag, delete; quarantined mail to the
//!    quarantine folder), as the [`Settled`] of each says;
//! 4. only then advance the source's checkpoint ([`WriterHandle::save_checkpoint`]).
//!
//! A crash anywhere leaves each mail either untouched at the source (fetched again,
//! processed once) or committed but not marked (fetched again, recognised by the journal
//! as a duplicate, and only marked).
//!
//! When several nodes share a database, a mailbox is worked by the node that holds its
//! [`Lease`]: its batches and checkpoints carry the lease's fence, and commit only while
//! the lease is the node's; marking waits for nothing but also checks it.

pub mod imap;
pub mod lease;
pub mod maildir;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::case::Outcome;
use crate::config::Config;
use crate::ingest::{Gateway, IngestReport, Origin, Prepared};
use crate::store;
use crate::store::nodes::Fence;
pub use lease::Lease;

/// Jobs waiting for the writer, across all sources. Each source bounds its own batches in
/// flight (an IMAP watcher: three), so a small bound is enough to keep the writer busy.
const WRITER_QUEUE: usize = 8;

/// One mail handed to the writer: its bytes and where it came from.
#[derive(Debug, Clone)]
pub struct SourceMail {
    pub raw: Vec<u8>,
    pub origin: Origin,
    /// When the mail server received it (IMAP INTERNALDATE, a Maildir file's time), for
    /// the ingest latency metric; `None` when unknown.
    pub arrived: Option<SystemTime>,
}

/// How a mail was settled once its batch is committed, which says what the source does
/// with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Processed (or a duplicate of processed mail): mark it as configured.
    Processed,
    /// Quarantined now or before: put it where people look for quarantined mail.
    Quarantined,
}

/// The writer's answer for one mail.
#[derive(Debug, Clone)]
pub struct Processed {
    pub report: IngestReport,
    pub settled: Settled,
}

/// How far a source is: the folder's UIDVALIDITY and the highest UID below which every
/// mail is committed *and* marked at the source (table `mailbox_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// Work for the writer thread.
enum Job {
    Ingest {
        mails: Vec<(Prepared, Origin)>,
        /// When the server received each mail (see [`SourceMail::arrived`]).
        arrived: Vec<Option<SystemTime>>,
        reply: Reply<Vec<Processed>>,
        /// Released once the mails are written (and their bytes freed).
        permit: Option<OwnedSemaphorePermit>,
        /// The mailbox's lease, when the mails come from a leased mailbox.
        fence: Option<Fence>,
    },
    LoadCheckpoint {
        source: String,
        reply: Reply<Option<Checkpoint>>,
    },
    /// `reply` is None for a save nobody waits for (the writer logs a failure).
    SaveCheckpoint {
        source: String,
        checkpoint: Checkpoint,
        reply: Option<Reply<()>>,
        fence: Option<Fence>,
    },
    /// Health: answers at once, after a small committed write when `write` is set (see
    /// [`WriterProbe`]).
    Probe {
        write: bool,
        reply: Reply<()>,
    },
}

/// A cheap, cloneable way to reach the writer thread. The thread ends when every handle
/// is gone (after finishing the jobs already queued): dropped senders are how it learns
/// that the sources have stopped.
#[derive(Clone)]
pub struct WriterHandle {
    /// One queue a lane.
    lanes: Vec<mpsc::Sender<Job>>,
    /// The lane of each source seen so far (sources are spread over the lanes in turn).
    assigned: Arc<Mutex<HashMap<String, usize>>>,
    config: Arc<Config>,
}

impl WriterHandle {
    /// The configuration the writer runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The queue of the lane that writes for `source` (jobs of no source: the first).
    fn lane(&self, source: Option<&str>) -> &mpsc::Sender<Job> {
        let Some(source) = source.filter(|_| self.lanes.len() > 1) else { return &self.lanes[0] };
        let mut assigned = self.assigned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = assigned.len() % self.lanes.len();
        let lane = *assigned.entry(source.to_string()).or_insert(next);
        &self.lanes[lane]
    }
}

/// The writer threads; [`Writer::join`] waits for them after the last handle is dropped.
pub struct Writer {
    threads: Vec<JoinHandle<()>>,
    /// Cancelled if the thread dies of a panic (a bug): the daemon then stops rather
    /// than let every source retry against a writer that is gone.
    died: CancellationToken,
}

/// A batch handed to the writer; await it with [`Pending::wait`].
pub struct Pending {
    rx: oneshot::Receiver<anyhow::Result<Vec<Processed>>>,
}

impl Pending {
    /// The reports, available once the batch is committed. `Err` means nothing of the
    /// batch was committed (or the writer is gone).
    pub async fn wait(self) -> anyhow::Result<Vec<Processed>> {
        self.rx.await.context("the database writer stopped")?
    }
}

impl Writer {
    /// Opens (and migrates) the database on new threads that own their connections from
    /// then on: one on SQLite, `storage.writers` on PostgreSQL (see the module's
    /// documentation).
    pub async fn start(config: Arc<Config>) -> anyhow::Result<(Writer, WriterHandle)> {
        let count = if config.storage.database_url.is_some() { config.storage.writers.max(1) } else { 1 };
        let died = CancellationToken::new();
        let mut writer = Writer { threads: Vec::with_capacity(count), died: died.clone() };
        let mut lanes = Vec::with_capacity(count);
        let mut opened = Vec::with_capacity(count);
        for lane in 0..count {
            let (tx, rx) = mpsc::channel(WRITER_QUEUE);
            let (ready_tx, ready_rx) = oneshot::channel();
            let (config, guard) = (Arc::clone(&config), DeathNotice(died.clone()));
            let name = if count == 1 { "casegate-writer".to_string() } else { format!("casegate-writer-{lane}") };
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let _guard = guard;
                    writer_thread(config, rx, ready_tx)
                })
                .context("cannot start the database writer thread")?;
            writer.threads.push(thread);
            lanes.push(tx);
            opened.push(ready_rx);
            // The first opens (and migrates) the database before the others connect.
            if lane == 0 {
                let first = opened.pop().expect("just pushed");
                if let Err(e) = Writer::opened(first).await {
                    drop(lanes);
                    writer.join().await;
                    return Err(e);
                }
            }
        }
        for ready in opened {
            if let Err(e) = Writer::opened(ready).await {
                drop(lanes);
                writer.join().await;
                return Err(e);
            }
        }
        let handle = WriterHandle { lanes, assigned: Arc::default(), config };
        Ok((writer, handle))
    }

    /// Waits until a writer thread has opened the database, or says why it could not.
    async fn opened(ready: oneshot::Receiver<anyhow::Result<()>>) -> anyhow::Result<()> {
        match ready.await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the database writer thread failed while opening the database"),
        }
    }

    /// Completes if the writer thread dies of a panic.
    pub async fn died(&self) {
        self.died.cancelled().await
    }

    /// Whether the writer thread died of a panic.
    pub fn has_died(&self) -> bool {
        self.died.is_cancelled()
    }

    /// Waits (without blocking the runtime) until the thread has finished every queued
    /// job and closed the database. Call it after all handles are dropped.
    pub async fn join(self) {
        for thread in self.threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl WriterHandle {
    /// Prepares a batch (hashing, parsing, analysis — on a blocking thread, so the writer
    /// thread only writes), queues it (waiting while the queue is full) and returns the
    /// pending answer. `permit`, if given, is released as soon as the batch is written: a
    /// source bounds the mail it holds in memory with it.
    pub async fn submit(
        &self,
        mails: Vec<SourceMail>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> anyhow::Result<Pending> {
        self.submit_fenced(mails, permit, None).await
    }

    /// [`WriterHandle::submit`] for mails of a leased mailbox: committed only while
    /// `fence` is still the mailbox's lease.
    pub async fn submit_fenced(
        &self,
        mails: Vec<SourceMail>,
        permit: Option<OwnedSemaphorePermit>,
        fence: Option<Fence>,
    ) -> anyhow::Result<Pending> {
        let config = Arc::clone(&self.config);
        let arrived = mails.iter().map(|m| m.arrived).collect();
        let mails = tokio::task::spawn_blocking(move || {
            let (raws, origins): (Vec<Vec<u8>>, Vec<Origin>) = mails.into_iter().map(|m| (m.raw, m.origin)).unzip();
            Prepared::many(&config, raws).into_iter().zip(origins).collect::<Vec<_>>()
        })
        .await
        .context("preparing mail failed")?;
        let (reply, rx) = oneshot::channel();
        let source = mails.first().and_then(|(_, origin)| origin.source.clone());
        self.lane(source.as_deref())
            .send(Job::Ingest { mails, arrived, reply, permit, fence })
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?;
        Ok(Pending { rx })
    }

    /// Ingests a batch and waits for the commit.
    pub async fn ingest(&self, mails: Vec<SourceMail>) -> anyhow::Result<Vec<Processed>> {
        self.submit(mails, None).await?.wait().await
    }

    pub async fn load_checkpoint(&self, source: &str) -> anyhow::Result<Option<Checkpoint>> {
        let (reply, rx) = oneshot::channel();
        self.lane(Some(source))
            .send(Job::LoadCheckpoint { source: source.to_string(), reply })
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?;
        rx.await.context("the database writer stopped")?
    }

    /// Saves a checkpoint (fenced by the mailbox's lease, when it has one).
    pub async fn save_checkpoint(
        &self,
        source: &str,
        checkpoint: Checkpoint,
        fence: Option<Fence>,
    ) -> anyhow::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.lane(Some(source))
            .send(Job::SaveCheckpoint { source: source.to_string(), checkpoint, reply: Some(reply), fence })
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))?;
        rx.await.context("the database writer stopped")?
    }

    /// A way to ask the writer for its health that does not keep it running: the writer
    /// ends when the sources' handles are gone, whoever still holds a probe.
    pub fn probe(&self) -> WriterProbe {
        WriterProbe {
            lanes: self.lanes.iter().map(mpsc::Sender::downgrade).collect(),
            config: Arc::clone(&self.config),
        }
    }

    /// Queues a checkpoint without waiting for it. Jobs run in order, so it is written
    /// before anything queued later, and before the writer exits (it drains its queue).
    /// Not waiting matters: the writer is usually committing the next batch just then.
    pub async fn save_checkpoint_later(
        &self,
        source: &str,
        checkpoint: Checkpoint,
        fence: Option<Fence>,
    ) -> anyhow::Result<()> {
        self.lane(Some(source))
            .send(Job::SaveCheckpoint { source: source.to_string(), checkpoint, reply: None, fence })
            .await
            .map_err(|_| anyhow::anyhow!("the database writer stopped"))
    }
}

/// Asks the writer thread whether it works (see [`WriterHandle::probe`]).
#[derive(Clone)]
pub struct WriterProbe {
    lanes: Vec<mpsc::WeakSender<Job>>,
    /// For when the writer has ended: with no source configured it ends at once, and the
    /// database is then probed on a session of the probe's own.
    config: Arc<Config>,
}

impl WriterProbe {
    /// Answers once the writer has taken the probe from its queue (after the jobs before
    /// it) and, with `write`, committed a small write to the database. `Err` says what
    /// went wrong, in words.
    /// Every lane is asked; the first that fails says why.
    pub async fn check(&self, write: bool) -> Result<(), String> {
        let mut answers = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let (reply, rx) = oneshot::channel();
            // Upgraded only to queue the probe: holding the sender would keep the writer alive.
            let Some(tx) = lane.upgrade() else { return self.directly(write).await };
            if tx.send(Job::Probe { write, reply }).await.is_err() {
                return self.directly(write).await;
            }
            answers.push(rx);
        }
        for rx in answers {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{e:#}")),
                Err(_) => return Err("the database writer stopped before answering".into()),
            }
        }
        Ok(())
    }
}

impl WriterProbe {
    /// The probe without the writer, on a connection of its own (on the blocking pool).
    async fn directly(&self, write: bool) -> Result<(), String> {
        let config = Arc::clone(&self.config);
        let probed = tokio::task::spawn_blocking(move || {
            let session = store::Session::open(&config)?;
            if write {
                store::probe_write(session.db())?;
            }
            anyhow::Ok(())
        })
        .await;
        match probed {
            Ok(result) => result.map_err(|e| format!("{e:#}")),
            Err(e) => Err(format!("the database task failed: {e}")),
        }
    }
}

/// Dropped when the writer thread ends; tells the daemon if it ended by a panic.
struct DeathNotice(CancellationToken);

impl Drop for DeathNotice {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("The database writer failed (a bug in casegate); stopping");
            self.0.cancel();
        }
    }
}

fn writer_thread(config: Arc<Config>, mut rx: mpsc::Receiver<Job>, ready: oneshot::Sender<anyhow::Result<()>>) {
    let mut gateway = match Gateway::open(config) {
        Ok(g) => {
            let _ = ready.send(Ok(()));
            g
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // WAL checkpoints (and their fsync) happen beside the writer, not in its commits.
    let _checkpoints = crate::store::Checkpointer::start(&gateway.store)
        .map_err(
            |e| tracing::warn!(error = %format!("{e:#}"), "No background checkpoints; the writer checkpoints itself"),
        )
        .ok();
    // `blocking_recv` parks this thread (not a runtime worker) until work arrives; it
    // returns None once every handle is dropped and the queue is empty.
    while let Some(job) = rx.blocking_recv() {
        match job {
            Job::Ingest { mails, arrived, reply, permit, fence } => {
                let started = std::time::Instant::now();
                let count = mails.len();
                let result = ingest(&mut gateway, mails, fence.as_ref());
                drop(permit);
                record(&result, &arrived, started.elapsed());
                match &result {
                    Ok(_) => tracing::debug!(
                        mails = count,
                        ms = started.elapsed().as_millis() as u64,
                        queued = rx.len(),
                        "Batch committed"
                    ),
                    Err(e) if lease::is_lost(e) => {
                        tracing::warn!(error = %format!("{e:#}"), mails = count, "Batch not committed: the mailbox's lease was lost")
                    }
                    Err(e) => tracing::error!(error = %format!("{e:#}"), mails = count, "Batch not committed"),
                }
                // The source may have gone (shutdown deadline): the commit stands anyway,
                // and the mails are recognised as duplicates when seen again.
                let _ = reply.send(result);
            }
            Job::LoadCheckpoint { source, reply } => {
                let _ = reply.send(load_checkpoint(&gateway, &source));
            }
            Job::Probe { write, reply } => {
                let result = if write { store::probe_write(gateway.store.db()) } else { Ok(()) };
                crate::metrics::global().writer_finished_job();
                let _ = reply.send(result);
            }
            Job::SaveCheckpoint { source, checkpoint, reply, fence } => {
                let result = save_checkpoint(&mut gateway, &source, checkpoint, fence.as_ref());
                match reply {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            tracing::error!(source = %source, error = %format!("{e:#}"), "Checkpoint not saved");
                        }
                    }
                }
            }
        }
    }
    tracing::debug!("Database writer finished");
}

/// The metrics of a batch: its time, and for each mail committed (not a duplicate, which
/// was committed before) the time since its server received it.
fn record(result: &anyhow::Result<Vec<Processed>>, arrived: &[Option<SystemTime>], took: Duration) {
    let metrics = crate::metrics::global();
    metrics.writer_batch(took, result.is_ok());
    let Ok(processed) = result else { return };
    let now = SystemTime::now();
    for (p, arrived) in processed.iter().zip(arrived) {
        if p.report.outcome == Outcome::Duplicate {
            continue;
        }
        if let Some(latency) = arrived.and_then(|at| now.duration_since(at).ok()) {
            metrics.ingest_latency(latency);
        }
    }
}

fn ingest(
    gateway: &mut Gateway,
    mails: Vec<(Prepared, Origin)>,
    fence: Option<&Fence>,
) -> anyhow::Result<Vec<Processed>> {
    let (prepared, origins): (Vec<Prepared>, Vec<Origin>) = mails.into_iter().unzip();
    let reports = gateway.ingest_fenced(prepared.into_iter().zip(origins.iter()).collect(), fence)?;
    Ok(reports.into_iter().map(|report| Processed { settled: settled(&report), report }).collect())
}

/// A quarantined mail goes to quarantine; so does a duplicate whose first passage was
/// quarantined (the crash-after-commit case: it must end where that passage would have
/// put it). Everything else is done.
fn settled(report: &IngestReport) -> Settled {
    let quarantined = report.outcome == Outcome::Quarantined || report.first_outcome == Some(Outcome::Quarantined);
    if quarantined {
        Settled::Quarantined
    } else {
        Settled::Processed
    }
}

fn load_checkpoint(gateway: &Gateway, source: &str) -> anyhow::Result<Option<Checkpoint>> {
    let row = store::nodes::checkpoint(gateway.store.db(), source)?;
    Ok(row.map(|(v, u)| Checkpoint {
        uidvalidity: u32::try_from(v).unwrap_or_default(),
        last_uid: u32::try_from(u).unwrap_or_default(),
    }))
}

/// Saves a checkpoint, in a unit of work that checks the mailbox's lease when there is
/// one: a node that lost the mailbox must not move its checkpoint back or forth.
fn save_checkpoint(gateway: &mut Gateway, source: &str, c: Checkpoint, fence: Option<&Fence>) -> anyhow::Result<()> {
    gateway.store.write(false, |unit| {
        let scope = unit.scope();
        let (v, u) = (i64::from(c.uidvalidity), i64::from(c.last_uid));
        store::nodes::save_checkpoint(scope.conn, source, v, u, scope.stamp)?;
        if let Some(fence) = fence {
            store::nodes::check_fence(scope.conn, fence)?;
        }
        Ok(Some(()))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Arc<Config> {
        let text = "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\n";
        Arc::new(Config::from_toml(text, &dir.join("casegate.toml")).unwrap())
    }

    fn mail(n: u32, key: &str) -> SourceMail {
        SourceMail {
            raw: format!("From: a@customer.example\r\nTo: support@example.com\r\nSubject: s{n}\r\nMessage-ID: <m{n}@x>\r\n\r\nhello\r\n")
                .into_bytes(),
            origin: Origin {
                description: format!("test {key}"),
                source: Some("box".into()),
                source_key: Some(key.into()),
                account: None,
            },
            arrived: None,
        }
    }

    #[test]
    fn each_source_keeps_its_lane_and_sources_are_spread_over_the_lanes() {
        let dir = tempfile::tempdir().unwrap();
        let (lanes, mut queues): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel::<Job>(4)).unzip();
        let handle = WriterHandle { lanes, assigned: Arc::default(), config: config(dir.path()) };
        let mut lane_of = |source: Option<&str>| {
            let (reply, _) = oneshot::channel();
            handle.lane(source).try_send(Job::LoadCheckpoint { source: String::new(), reply }).unwrap();
            let got: Vec<usize> =
                queues.iter_mut().enumerate().filter_map(|(i, q)| q.try_recv().ok().map(|_| i)).collect();
            assert_eq!(got.len(), 1, "one lane took the job");
            got[0]
        };
        let first: Vec<usize> = ["a", "b", "c", "d"].iter().map(|s| lane_of(Some(s))).collect();
        assert_eq!(first, [0, 1, 2, 0], "new sources go to the lanes in turn");
        assert_eq!(lane_of(Some("b")), 1, "a source stays on its lane");
        assert_eq!(lane_of(Some("d")), 0);
        assert_eq!(lane_of(None), 0, "jobs of no source go to the first lane");
    }

    #[tokio::test]
    async fn the_writer_commits_batches_and_keeps_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, handle) = Writer::start(config(dir.path())).await.unwrap();

        let first = handle.ingest(vec![mail(1, "7:1"), mail(2, "7:2")]).await.unwrap();
        let again = handle.ingest(vec![mail(1, "7:1"), mail(2, "8:2")]).await.unwrap();
        let garbage = SourceMail { raw: vec![0xff; 4], origin: mail(3, "7:3").origin, arrived: None };
        let bad = handle.ingest(vec![garbage.clone()]).await.unwrap();
        let bad_again = handle.ingest(vec![garbage]).await.unwrap();

        assert!(first.iter().all(|p| p.report.outcome == Outcome::Created && p.settled == Settled::Processed));
        assert!(again.iter().all(|p| p.report.outcome == Outcome::Duplicate && p.settled == Settled::Processed));
        assert_eq!(bad[0].report.outcome, Outcome::Quarantined);
        assert_eq!(bad[0].settled, Settled::Quarantined);
        assert_eq!(bad_again[0].report.outcome, Outcome::Duplicate);
        assert_eq!(bad_again[0].settled, Settled::Quarantined, "a quarantined mail seen again stays quarantined");

        assert_eq!(handle.load_checkpoint("box").await.unwrap(), None);
        let c = Checkpoint { uidvalidity: 7, last_uid: 3 };
        handle.save_checkpoint("box", c, None).await.unwrap();
        handle.save_checkpoint("box", Checkpoint { last_uid: 9, ..c }, None).await.unwrap();
        assert_eq!(handle.load_checkpoint("box").await.unwrap(), Some(Checkpoint { uidvalidity: 7, last_uid: 9 }));

        drop(handle);
        writer.join().await;
    }
}
