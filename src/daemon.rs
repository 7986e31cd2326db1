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
//! On shutdown each source finishes the batch in hand (commit, then mark at the source),
//! starts no new one, and returns; the writer drains its queue (including checkpoints)
//! and closes the database. Whatever is still running after the drain deadline (a server
//! that stopped answering mid-fetch) is aborted: nothing is marked before its commit, so
//! an aborted task loses nothing — its mails are fetched again at the next start.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::notify;
use crate::source::imap::Watcher;
use crate::source::maildir::MaildirWatcher;
use crate::source::Writer;
use crate::survey;

/// How often Resolved cases are checked for a survey that is due.
const SURVEY_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Offers the survey of long-Resolved cases, every minute, until shutdown.
async fn sweep_surveys(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    if config.survey.resolved_after.is_none() {
        return Ok(());
    }
    loop {
        let c = Arc::clone(&config);
        match tokio::task::spawn_blocking(move || survey::sweep_resolved(&c)).await {
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
    // Secrets first: a missing password is a configuration error, reported before
    // anything starts (exit code 2).
    let mut passwords = Vec::with_capacity(config.mailboxes.len());
    for mb in &config.mailboxes {
        passwords.push(mb.server.read_password(&config.path)?);
    }
    // Every template renders with sample data, so a broken override stops the start, not
    // a customer's mail.
    crate::notify::check_templates(&config)?;
    let (writer, handle) = Writer::start(Arc::clone(&config)).await?;

    let mut sources: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();
    for (mb, password) in config.mailboxes.iter().zip(passwords) {
        let watcher = Watcher {
            mailbox: Arc::new(mb.clone()),
            password,
            writer: handle.clone(),
            shutdown: shutdown.clone(),
            once: options.once,
        };
        let name = format!("mailbox {}", mb.name);
        sources.spawn(async move { (name, watcher.run().await) });
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
    let mut outbox = tokio::spawn(notify::run_worker(Arc::clone(&config), outbox_stop.clone()));
    // The survey page and the survey sweep of long-Resolved cases run until shutdown;
    // a one-off run needs neither.
    let mut services: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();
    if !options.once {
        let (c, s) = (Arc::clone(&config), shutdown.clone());
        services.spawn(async move { ("survey page".into(), survey::web::serve(c, s).await) });
        let (c, s) = (Arc::clone(&config), shutdown.clone());
        services.spawn(async move { ("survey sweep".into(), sweep_surveys(c, s).await) });
    }

    let mut failures = Vec::new();
    let mut note = |name: String, result: anyhow::Result<()>| {
        if let Err(e) = result {
            tracing::error!(source = %name, error = %format!("{e:#}"), "Source stopped with an error");
            failures.push(format!("{name}: {e:#}"));
        }
    };
    // Until shutdown (or, with --once, until every source is drained).
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = writer.died() => {
                shutdown.cancel();
                break;
            }
            // A survey service that stops early (its port is taken, say) is reported at once;
            // mail keeps flowing without it.
            Some(joined) = services.join_next(), if !services.is_empty() => match joined {
                Ok((name, result)) => note(name, result),
                Err(e) => note("a service task".into(), Err(anyhow::anyhow!("task failed: {e}"))),
            },
            joined = sources.join_next() => match joined {
                Some(Ok((name, result))) => note(name, result),
                Some(Err(e)) => note("a source task".into(), Err(anyhow::anyhow!("task failed: {e}"))),
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
    outbox_stop.cancel();

    let deadline = tokio::time::sleep(options.drain_deadline);
    tokio::pin!(deadline);
    let mut outbox_done = false;
    while !sources.is_empty() || !outbox_done {
        tokio::select! {
            joined = sources.join_next(), if !sources.is_empty() => match joined {
                Some(Ok((name, result))) => note(name, result),
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => note("a source task".into(), Err(anyhow::anyhow!("task failed: {e}"))),
                None => {}
            },
            result = &mut outbox, if !outbox_done => {
                outbox_done = true;
                match result {
                    Ok(r) => note("outbox".into(), r),
                    Err(e) => note("outbox".into(), Err(anyhow::anyhow!("task failed: {e}"))),
                }
            },
            _ = &mut deadline => {
                tracing::warn!(
                    tasks = sources.len() + usize::from(!outbox_done),
                    "Tasks still busy at the shutdown deadline were stopped; their mail was not marked and is fetched again next time"
                );
                sources.abort_all();
                outbox.abort();
                while sources.join_next().await.is_some() {}
                break;
            }
        }
    }
    // The survey page finishes the requests in hand (it watches `shutdown` itself).
    let services_done = async {
        while let Some(joined) = services.join_next().await {
            if let Ok((name, result)) = joined {
                note(name, result);
            }
        }
    };
    if tokio::time::timeout(options.drain_deadline, services_done).await.is_err() {
        services.abort_all();
    }
    // Every handle is gone now: the writer finishes its queue and closes the database.
    let writer_died = writer.has_died();
    writer.join().await;
    // With --once, the notifications of what was just committed go out before returning.
    if options.once && !writer_died {
        match notify::Sender::new(Arc::clone(&config)) {
            Ok(sender) => {
                let summary = sender.send_due().await;
                sender.close().await;
                match summary {
                    Ok(s) => tracing::info!(sent = s.sent, deferred = s.deferred, failed = s.failed, "Outbox pass"),
                    Err(e) => failures.push(format!("outbox: {e:#}")),
                }
            }
            Err(e) => tracing::warn!("Notifications stay queued: {e:#}"),
        }
    }
    tracing::info!("casegate stopped");
    if writer_died {
        anyhow::bail!("the database writer failed (see the log); nothing uncommitted was marked processed");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} source(s) failed: {}", failures.len(), failures.join("; "))
    }
}
