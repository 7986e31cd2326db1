//! `casegate run`: every mail source and the outbox sender as tasks of one process, under
//! one shutdown signal (the mini-redis pattern: shutdown is a parameter, and the writer
//! learns that the sources have finished when their handles are dropped).
//!
//! ```text
//!              ┌ IMAP watcher (one per [[mailbox]]) ┐
//! shutdown ──▶ ├ Maildir watcher (one per [[maildir]])├─ bounded channel ─▶ writer thread (Gateway, SQLite)
//!              └ outbox worker (notify::run_worker)  ┘
//! ```
//!
//! Beside them, for operators: the metrics and health listener on `[metrics] listen`
//! ([`crate::metrics::server`]), and under systemd the readiness and watchdog
//! notifications ([`crate::systemd`]): `READY=1` once everything runs, `WATCHDOG=1` while
//! the database writer answers, `STOPPING=1` at shutdown.
//!
//! On shutdown each source finishes the batch in hand (commit, then mark at the source),
//! starts no new one, and returns; the writer drains its queue (including checkpoints)
//! and closes the database. Whatever is still running after the drain deadline (a server
//! that stopped answering mid-fetch) is aborted: nothing is marked before its commit, so
//! an aborted task loses nothing — its mails are fetched again at the next start.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lifecycle;
use crate::metrics::health::Limits;
use crate::metrics::server::{Listener, Probe};
use crate::notify;
use crate::oauth::{Account, Credentials};
use crate::ownership::Mailboxes;
use crate::source::maildir::MaildirWatcher;
use crate::source::{Writer, WriterHandle, WriterProbe};
use crate::systemd::{self, Notifier};

/// How often Resolved cases are checked for a survey that is due.
const SURVEY_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Offers the survey of long-Resolved cases, every minute, until shutdown — once across
/// the nodes sharing a database: each minute, the node that claims the round runs it.
async fn sweep_surveys(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.survey.resolved_after.is_none() {
        return Ok(());
    }
    loop {
        let c = Arc::clone(&config);
        let sweep = move || -> anyhow::Result<usize> {
            if !crate::store::once_across_nodes(&c, "survey-sweep", SURVEY_SWEEP_EVERY)? {
                return Ok(0);
            }
            crate::consequences::sweep_resolved(&c)
        };
        match tokio::task::spawn_blocking(sweep).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "Survey sweep failed; trying again later"),
            Err(e) => tracing::error!(error = %e, "Survey sweep task failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(SURVEY_SWEEP_EVERY) => {}
        }
    }
}

/// Runs the data lifecycle's jobs that are due (retention once a day, cases that close
/// themselves), every [`lifecycle::TICK`], until shutdown.
async fn lifecycle_jobs(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !config.retention.any() && config.workflow.auto_close.is_none() {
        return Ok(());
    }
    loop {
        let c = Arc::clone(&config);
        match tokio::task::spawn_blocking(move || lifecycle::run_due(&c, chrono::Utc::now())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "Data lifecycle job failed; trying again later"),
            Err(e) => tracing::error!(error = %e, "Data lifecycle task failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(lifecycle::TICK) => {}
        }
    }
}

/// How `run` behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Process everything currently waiting in every source, let the outbox worker make
    /// one pass, and return (for operators and tests).
    pub once: bool,
    /// After shutdown is signalled, how long tasks get to finish before they are aborted.
    pub drain_deadline: Duration,
}

/// Runs the daemon until `shutdown` is cancelled (or, with `once`, until the sources are
/// drained). `Err` for start-up failures (database, secrets) and, with `once`, when a
/// source failed.
pub async fn run(config: Arc<Config>, options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Secrets first: a missing password (or OAuth2 client secret, refresh token file,
    // service-account key) is a configuration error, reported before anything starts
    // (exit code 2).
    let credentials = config
        .mailboxes
        .iter()
        .map(|mb| Credentials::for_server(&mb.server, &config.path, Account::mailbox(&mb.name)))
        .collect::<Result<Vec<_>, _>>()?;
    // Every template renders with sample data, so a broken override stops the start, not
    // a customer's mail.
    crate::notify::check_templates(&config)?;
    let (writer, handle) = Writer::start(Arc::clone(&config)).await?;
    // Bound before anything is announced ready: a port taken by another process stops
    // the start instead of leaving the service unmonitored.
    let listener = if options.once { None } else { bind_metrics(&config, &handle).await? };
    let probe = handle.probe();
    // Every mailbox is known to /readyz from the start, connected or not.
    for mb in &config.mailboxes {
        crate::metrics::global().mailbox(&mb.name);
    }

    let mut tasks = Tasks::start(&config, &options, &shutdown, handle, credentials);
    let notifier = Arc::new(Notifier::from_env());
    // READY before the watchdog's first WATCHDOG=1 (its task would race this one); the
    // metrics port is bound already, so a scrape right after READY waits in its backlog.
    notifier.ready(&format!(
        "Watching {} mailbox(es) and {} maildir(s)",
        config.mailboxes.len(),
        config.maildirs.len()
    ));
    tasks.operators(listener, probe, &notifier, &shutdown);
    let mut failures = Failures::default();
    tasks.supervise(&writer, &options, &shutdown, &mut failures).await;
    notifier.stopping();
    tasks.drain(options.drain_deadline, &mut failures).await;
    // Every handle is gone now: the writer finishes its queue and closes the database.
    let writer_died = writer.has_died();
    writer.join().await;
    // With --once, the notifications of what was just committed go out before returning.
    if options.once && !writer_died {
        send_due_once(&config, &mut failures).await;
    }
    tracing::info!("casegate stopped");
    if writer_died {
        anyhow::bail!("the database writer failed (see the log); nothing uncommitted was marked processed");
    }
    failures.into_result()
}

/// A task that reports which source or service it is, with how it ended.
type Named = (String, anyhow::Result<()>);

/// What `run` starts beside the writer thread, each under `shutdown`.
struct Tasks {
    /// One watcher per `[[mailbox]]` and `[[maildir]]`. They hold the only writer handles,
    /// so the writer thread ends once they all have.
    sources: JoinSet<Named>,
    /// The outbox worker, stopped by its own token only once the sources stop, so that it
    /// keeps sending while they finish the mail in hand.
    outbox: JoinHandle<anyhow::Result<()>>,
    outbox_stop: CancellationToken,
    /// The web pages and the survey sweep of long-Resolved cases.
    services: JoinSet<Named>,
}

impl Tasks {
    /// Starts the sources, the outbox worker and (unless `once`) the survey services.
    fn start(
        config: &Arc<Config>,
        options: &Options,
        shutdown: &CancellationToken,
        handle: WriterHandle,
        credentials: Vec<Credentials>,
    ) -> Tasks {
        let mut sources = JoinSet::new();
        if !config.mailboxes.is_empty() {
            // Each mailbox is watched by the node holding its lease (this one, when it runs
            // alone): see `ownership`.
            let mailboxes = Mailboxes {
                config: Arc::clone(config),
                writer: handle.clone(),
                credentials: config.mailboxes.iter().map(|m| m.name.clone()).zip(credentials).collect(),
                once: options.once,
                shutdown: shutdown.clone(),
            };
            sources.spawn(async move { ("mailboxes".to_string(), mailboxes.run().await) });
        }
        for md in &config.maildirs {
            let watcher = MaildirWatcher {
                maildir: Arc::new(md.clone()),
                writer: handle.clone(),
                shutdown: shutdown.clone(),
                once: options.once,
            };
            let name = format!("maildir {}", md.name);
            sources.spawn(async move { (name, watcher.run().await) });
        }
        // The writer thread ends once the sources' clones are gone too.
        drop(handle);
        if sources.is_empty() {
            tracing::warn!("No [[mailbox]] or [[maildir]] configured: only the outbox is served");
        }
        if let Some(why) = config.forgeable_powers() {
            tracing::warn!("Sender addresses are trusted: {why}");
        }
        tracing::info!(
            mailboxes = config.mailboxes.len(),
            maildirs = config.maildirs.len(),
            once = options.once,
            "casegate running"
        );

        let outbox_stop = shutdown.child_token();
        let outbox = tokio::spawn(notify::run_worker(Arc::clone(config), outbox_stop.clone()));
        // The web pages (survey, case pages, downloads) and the survey sweep of
        // long-Resolved cases run until shutdown; a one-off run needs neither.
        let mut services = JoinSet::new();
        if !options.once {
            let (c, s) = (Arc::clone(config), shutdown.clone());
            services.spawn(async move { ("web pages".into(), crate::web::serve(c, s).await) });
            let (c, s) = (Arc::clone(config), shutdown.clone());
            services.spawn(async move { ("survey sweep".into(), sweep_surveys(c, s).await) });
            let (c, s) = (Arc::clone(config), shutdown.clone());
            services.spawn(async move { ("data lifecycle".into(), lifecycle_jobs(c, s).await) });
        }
        Tasks { sources, outbox, outbox_stop, services }
    }

    /// The metrics listener (bound already) and, when systemd asks for it, the watchdog,
    /// as services that run until shutdown.
    fn operators(
        &mut self,
        listener: Option<Listener>,
        probe: WriterProbe,
        notifier: &Arc<Notifier>,
        shutdown: &CancellationToken,
    ) {
        if let Some(listener) = listener {
            let s = shutdown.clone();
            self.services.spawn(async move { ("metrics listener".into(), listener.serve(s).await) });
        }
        if let Some(interval) = systemd::watchdog_interval().filter(|_| notifier.is_active()) {
            let (n, s) = (Arc::clone(notifier), shutdown.clone());
            self.services.spawn(async move { ("watchdog".into(), watchdog(n, interval, probe, s).await) });
        }
    }

    /// Waits for shutdown (or, with `once`, for every source to be drained), noting every
    /// source or service that ends on the way. A writer that dies stops everything: the
    /// sources could not commit anything more.
    async fn supervise(
        &mut self,
        writer: &Writer,
        options: &Options,
        shutdown: &CancellationToken,
        failures: &mut Failures,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = writer.died() => {
                    shutdown.cancel();
                    break;
                }
                // A survey service that stops early (its port is taken, say) is reported at
                // once; mail keeps flowing without it.
                Some(joined) = self.services.join_next(), if !self.services.is_empty() => {
                    failures.joined("a service task", joined);
                }
                joined = self.sources.join_next() => match joined {
                    Some(joined) => failures.joined("a source task", joined),
                    None if options.once => break,
                    // Nothing to watch: wait for the signal.
                    None => {
                        shutdown.cancelled().await;
                        break;
                    }
                },
            }
        }
        if shutdown.is_cancelled() {
            tracing::info!("Shutting down: finishing the mail in hand");
        }
        self.outbox_stop.cancel();
    }

    /// Lets the sources finish the batch in hand and the outbox worker its step, within
    /// `deadline`; what is still busy then is aborted (nothing of it was marked before its
    /// commit, so its mail is fetched again next time). Then the web pages finish the
    /// requests in hand, within the same deadline.
    async fn drain(&mut self, deadline: Duration, failures: &mut Failures) {
        let sleep = tokio::time::sleep(deadline);
        tokio::pin!(sleep);
        let mut outbox_done = false;
        while !self.sources.is_empty() || !outbox_done {
            tokio::select! {
                joined = self.sources.join_next(), if !self.sources.is_empty() => match joined {
                    Some(Err(e)) if e.is_cancelled() => {}
                    Some(joined) => failures.joined("a source task", joined),
                    None => {}
                },
                result = &mut self.outbox, if !outbox_done => {
                    outbox_done = true;
                    match result {
                        Ok(r) => failures.note("outbox".into(), r),
                        Err(e) => failures.note("outbox".into(), Err(anyhow::anyhow!("task failed: {e}"))),
                    }
                },
                _ = &mut sleep => {
                    tracing::warn!(
                        tasks = self.sources.len() + usize::from(!outbox_done),
                        "Tasks still busy at the shutdown deadline were stopped; their mail was not marked and is fetched again next time"
                    );
                    self.sources.abort_all();
                    self.outbox.abort();
                    while self.sources.join_next().await.is_some() {}
                    break;
                }
            }
        }
        // The web pages finish the requests in hand (it watches `shutdown` itself).
        let services = &mut self.services;
        let services_done = async {
            while let Some(joined) = services.join_next().await {
                if let Ok((name, result)) = joined {
                    failures.note(name, result);
                }
            }
        };
        if tokio::time::timeout(deadline, services_done).await.is_err() {
            self.services.abort_all();
        }
    }
}

/// Binds `[metrics] listen`, if configured. `/readyz` asks the writer for a small write
/// through a probe, which does not keep the writer running once the sources are gone.
async fn bind_metrics(config: &Arc<Config>, handle: &WriterHandle) -> anyhow::Result<Option<Listener>> {
    let Some(listen) = &config.metrics.listen else { return Ok(None) };
    let writer = handle.probe();
    let probe: Probe = Arc::new(move || {
        let writer = writer.clone();
        Box::pin(async move { writer.check(true).await })
    });
    let limits =
        Limits { mailbox_retry_window: config.metrics.mailbox_retry_window, outbox_stuck: config.metrics.outbox_stuck };
    let listener = Listener::bind(listen, crate::metrics::global(), Arc::clone(config), limits, probe).await?;
    let at = listener.local_addr().map_or_else(|_| listen.clone(), |a| a.to_string());
    tracing::info!(listen = %at, "Metrics and health checks listening (/metrics, /healthz, /readyz)");
    Ok(Some(listener))
}

/// Tells systemd every half `interval` that casegate is alive — as long as the database
/// writer answers (or is visibly busy): a writer that hangs gets the service restarted,
/// which loses nothing (nothing is marked processed before its commit).
async fn watchdog(
    notifier: Arc<Notifier>,
    interval: Duration,
    writer: WriterProbe,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let every = interval / 2;
    notifier.watchdog();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        let answered = matches!(tokio::time::timeout(every, writer.check(false)).await, Ok(Ok(())));
        if answered || crate::metrics::global().writer_active_within(interval) {
            notifier.watchdog();
        } else {
            tracing::warn!(
                waited_ms = every.as_millis() as u64,
                "The database writer does not answer; systemd's watchdog will restart casegate if this goes on"
            );
        }
    }
}

/// With `--once`: one outbox pass after the writer has committed everything, so the
/// notifications of this run's mail go out before `run` returns.
async fn send_due_once(config: &Arc<Config>, failures: &mut Failures) {
    match notify::Sender::new(Arc::clone(config)) {
        Ok(sender) => {
            let summary = sender.send_due().await;
            sender.close().await;
            match summary {
                Ok(s) => tracing::info!(sent = s.sent, deferred = s.deferred, failed = s.failed, "Outbox pass"),
                Err(e) => failures.0.push(format!("outbox: {e:#}")),
            }
        }
        Err(e) => tracing::warn!("Notifications stay queued: {e:#}"),
    }
}

/// The sources and services that ended with an error, for the log and for `run`'s result.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn note(&mut self, name: String, result: anyhow::Result<()>) {
        if let Err(e) = result {
            tracing::error!(source = %name, error = %format!("{e:#}"), "Source stopped with an error");
            self.0.push(format!("{name}: {e:#}"));
        }
    }

    /// A task of a `JoinSet<Named>` ended: how it ended, or that it panicked (`what` names
    /// it then, since its name went down with it).
    fn joined(&mut self, what: &str, joined: Result<Named, JoinError>) {
        match joined {
            Ok((name, result)) => self.note(name, result),
            Err(e) => self.note(what.into(), Err(anyhow::anyhow!("task failed: {e}"))),
        }
    }

    fn into_result(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{} source(s) failed: {}", self.0.len(), self.0.join("; "))
        }
    }
}
