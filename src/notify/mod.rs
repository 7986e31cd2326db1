//! Notifications: the events of a change become outbox rows in the same transaction.
//!
//! [`enqueue`] is called by the ingest path (and the analyst commands) inside the
//! transaction that records the change, so a notification exists exactly when its event
//! was committed.

use rusqlite::Connection;

use crate::case::Event;
use crate::config::Config;
use crate::parse::InboundMail;

/// Writes the outbox rows the events call for. `trigger` is the mail that caused them,
/// when there is one (its Message-ID threads direct answers; its headers say whether an
/// automatic answer is allowed).
pub fn enqueue(
    conn: &Connection,
    config: &Config,
    events: &[Event],
    trigger: Option<&InboundMail>,
) -> anyhow::Result<()> {
    let _ = (conn, config, events, trigger);
    Ok(())
}

/// The outbox sender as a long-running task: sends what is due, waits, repeats, until
/// `shutdown` is cancelled. `casegate run` spawns it beside the mailbox watchers.
pub async fn run_worker(
    config: std::sync::Arc<Config>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let _ = config;
    shutdown.cancelled().await;
    Ok(())
}
