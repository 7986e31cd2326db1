//! Which mailboxes this node works, when several `casegate run` share one database (and,
//! the same way, when one runs alone): each mailbox is worked by the node holding its
//! lease (`store::nodes`).
//!
//! ```text
//! every lease/3:  heartbeat ─ renew the leases held ─ count the live nodes
//!                 ─ fair share = ⌈mailboxes / live nodes⌉
//!                 ─ fewer held: take free or expired leases (or this node's own, from
//!                   before a restart) and start a watcher for each
//!                 ─ more held: hand the excess back (the watcher finishes its batch,
//!                   then the lease is freed for the others)
//! shutdown:       every watcher finishes its batch, every lease is handed back at once
//! ```
//!
//! A lease not renewed (the node died, was paused, lost the database) runs out after
//! `storage.lease_secs`, and the other nodes take its mailboxes over. The node that lost
//! it cannot commit for the mailbox any more (every commit checks the lease's fencing
//! number) and stops marking once it is no longer sure of its lease (a local clock, two
//! thirds of the lease after the last renewal was sent).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MailboxConfig};
use crate::oauth::Credentials;
use crate::source::imap::Watcher;
use crate::source::{Lease, WriterHandle};
use crate::store::nodes::{self, Fence, NodeId};
use crate::store::{self, Session};

/// The mailboxes of `casegate run`, leased and watched.
pub struct Mailboxes {
    pub config: Arc<Config>,
    pub writer: WriterHandle,
    /// The credentials of each `[[mailbox]]`, by name.
    pub credentials: HashMap<String, Credentials>,
    pub once: bool,
    pub shutdown: CancellationToken,
}

/// A mailbox this node holds.
struct Held {
    lease: Arc<Lease>,
    watcher: JoinHandle<anyhow::Result<()>>,
    /// Being handed back: the lease is freed once the watcher has finished.
    leaving: bool,
    /// Set by the watcher's task as it ends (before its handle says so).
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Held {
    fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::SeqCst) || self.watcher.is_finished()
    }
}

/// What one round in the database found.
struct Round {
    /// When the round's requests were sent (what the leases are sure from).
    sent: Instant,
    live: usize,
    /// The leases held, and whether each was renewed.
    renewed: Vec<(String, bool)>,
    acquired: Vec<Fence>,
    /// Mailboxes another node holds.
    elsewhere: Vec<String>,
}

impl Mailboxes {
    /// Leases and watches mailboxes until shutdown (with `once`: takes what it can once,
    /// and returns when those are drained), then hands every lease back. `Err` names the
    /// mailboxes whose watchers failed (only in `once` mode do they stop on errors).
    pub async fn run(self) -> anyhow::Result<()> {
        let node =
            NodeId { name: self.config.storage.node.clone(), instance: format!("{:016x}", rand::random::<u64>()) };
        let detail = format!("host {}, process {}, casegate {}", host(), std::process::id(), env!("CARGO_PKG_VERSION"));
        self.blocking({
            let (node, detail) = (node.clone(), detail.clone());
            move |db| Ok(nodes::register(db, &node, &detail, &store::now())?)
        })
        .await
        .context("cannot register this node in the database")?;
        tracing::info!(node = %node.name, "Node registered");
        let lease_time = self.config.storage.lease;
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut first = true;
        // Told when a watcher ends, so that its lease is handed back (and, with --once,
        // the run ends) at once rather than at the next round.
        let ended = Arc::new(tokio::sync::Notify::new());
        loop {
            self.reap(&mut held, &mut failures).await;
            if first || !self.once {
                match self.round(&node, &held).await {
                    Ok(round) => self.apply(round, &mut held, first, &ended),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "Cannot reach the database to renew the mailbox leases");
                        // Not renewed: a lease no longer sure is given up (its watcher stops).
                        for h in held.values() {
                            let _ = h.lease.check();
                        }
                    }
                }
            } else {
                self.renew_only(&held).await;
            }
            first = false;
            if self.once && held.values().all(|h| h.is_done()) {
                self.reap(&mut held, &mut failures).await;
                break;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = tokio::time::sleep(renew_every(lease_time)) => {}
                () = ended.notified() => {}
            }
        }
        self.finish(&node, held, &mut failures).await;
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    /// One round: heartbeat, renewals, the live nodes, and (up to the fair share) new leases.
    async fn round(&self, node: &NodeId, held: &BTreeMap<String, Held>) -> anyhow::Result<Round> {
        let fences: Vec<Fence> = held.values().filter(|h| !h.lease.is_lost()).map(|h| h.lease.fence.clone()).collect();
        let candidates = preferred_order(&self.config.mailboxes, &node.name);
        let (node, lease, once) = (node.clone(), self.config.storage.lease, self.once);
        let total = self.config.mailboxes.len();
        self.blocking(move |db| {
            let sent = Instant::now();
            let now = chrono::Utc::now();
            let (stamp, expires) = (store::stamp(now), store::stamp(now + chrono::Duration::from_std(lease)?));
            if !nodes::heartbeat(db, &node, &stamp)? {
                tracing::error!(node = %node.name, "Another process registered under this node's name: give each node its own [storage] node");
                let detail = format!("host {}, process {}", host(), std::process::id());
                nodes::register(db, &node, &detail, &stamp)?;
            }
            let mut renewed = Vec::new();
            for fence in &fences {
                renewed.push((fence.mailbox.clone(), nodes::renew(db, fence, &stamp, &expires)?));
            }
            let since = store::stamp(now - chrono::Duration::from_std(lease)?);
            let live = nodes::live_nodes(db, &since)?.max(1);
            // Those being handed back count until they are freed.
            let holding = renewed.iter().filter(|(_, ok)| *ok).count();
            // With --once, everything that is free; else this node's fair share.
            let fair = if once { total } else { total.div_ceil(live) };
            let mut room = fair.saturating_sub(holding);
            let mut acquired = Vec::new();
            let mut elsewhere = Vec::new();
            for mailbox in candidates {
                if fences.iter().any(|f| f.mailbox == mailbox) {
                    continue;
                }
                if room == 0 {
                    elsewhere.push(mailbox);
                    continue;
                }
                match nodes::acquire(db, &mailbox, &node, &stamp, &expires)? {
                    Some(fence) => {
                        acquired.push(fence);
                        room -= 1;
                    }
                    None => elsewhere.push(mailbox),
                }
            }
            Ok(Round { sent, live, renewed, acquired, elsewhere })
        })
        .await
    }

    /// Only renews (a `--once` run, after its first round).
    async fn renew_only(&self, held: &BTreeMap<String, Held>) {
        let fences: Vec<Fence> = held.values().map(|h| h.lease.fence.clone()).collect();
        let lease = self.config.storage.lease;
        let renewed = self
            .blocking(move |db| {
                let sent = Instant::now();
                let now = chrono::Utc::now();
                let (stamp, expires) = (store::stamp(now), store::stamp(now + chrono::Duration::from_std(lease)?));
                let mut out = Vec::new();
                for fence in &fences {
                    out.push((fence.mailbox.clone(), nodes::renew(db, fence, &stamp, &expires)?));
                }
                Ok((sent, out))
            })
            .await;
        match renewed {
            Ok((sent, renewed)) => self.note_renewals(sent, &renewed, held),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "Cannot renew the mailbox leases"),
        }
    }

    fn note_renewals(&self, sent: Instant, renewed: &[(String, bool)], held: &BTreeMap<String, Held>) {
        for (mailbox, ok) in renewed {
            let Some(h) = held.get(mailbox) else { continue };
            if *ok {
                h.lease.renewed(sent, sure_for(self.config.storage.lease));
            } else if !h.lease.is_lost() {
                tracing::warn!(mailbox = %mailbox, "Another node took this mailbox over; leaving it");
                h.lease.lose();
            }
        }
    }

    /// Acts on a round: starts watchers for new leases, hands back what is over the fair
    /// share.
    fn apply(&self, round: Round, held: &mut BTreeMap<String, Held>, first: bool, ended: &Arc<tokio::sync::Notify>) {
        self.note_renewals(round.sent, &round.renewed, held);
        for mailbox in &round.elsewhere {
            crate::metrics::global().mailbox_elsewhere(mailbox);
        }
        if first && !round.elsewhere.is_empty() {
            tracing::info!(mailboxes = ?round.elsewhere, live_nodes = round.live, "Mailboxes worked by other nodes");
        }
        for fence in round.acquired {
            let Some(mb) = self.config.mailboxes.iter().find(|m| m.name == fence.mailbox) else { continue };
            let Some(credentials) = self.credentials.get(&mb.name) else { continue };
            tracing::info!(mailbox = %mb.name, fencing = fence.fencing, live_nodes = round.live, "Mailbox taken");
            let stop = self.shutdown.child_token();
            let lease = Arc::new(Lease::new(fence, round.sent, sure_for(self.config.storage.lease), stop.clone()));
            let watcher = Watcher {
                mailbox: Arc::new(mb.clone()),
                credentials: credentials.clone(),
                writer: self.writer.clone(),
                shutdown: stop,
                once: self.once,
                lease: Some(Arc::clone(&lease)),
            };
            let (ended, done) = (Arc::clone(ended), Arc::new(std::sync::atomic::AtomicBool::new(false)));
            let flag = Arc::clone(&done);
            let watcher = tokio::spawn(async move {
                let result = watcher.run().await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                ended.notify_one();
                result
            });
            held.insert(mb.name.clone(), Held { lease, watcher, leaving: false, done });
        }
        if self.once {
            return;
        }
        let fair = self.config.mailboxes.len().div_ceil(round.live);
        let active: Vec<String> =
            held.iter().filter(|(_, h)| !h.leaving && !h.lease.is_lost()).map(|(n, _)| n.clone()).collect();
        for name in active.iter().skip(fair) {
            if let Some(h) = held.get_mut(name) {
                tracing::info!(mailbox = %name, live_nodes = round.live, fair_share = fair, "Handing a mailbox to another node");
                h.leaving = true;
                h.lease.stop().cancel();
            }
        }
    }

    /// Collects the watchers that have finished: their leases are handed back (unless
    /// lost), their errors noted.
    async fn reap(&self, held: &mut BTreeMap<String, Held>, failures: &mut Vec<String>) {
        let done: Vec<String> = held.iter().filter(|(_, h)| h.is_done()).map(|(n, _)| n.clone()).collect();
        for name in done {
            let Some(h) = held.remove(&name) else { continue };
            self.settle(&name, h, failures).await;
        }
    }

    /// Waits for a finished (or stopping) watcher, records how it ended, and hands its
    /// lease back unless it was lost already.
    async fn settle(&self, name: &str, h: Held, failures: &mut Vec<String>) {
        match h.watcher.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("mailbox {name}: {e:#}")),
            Err(e) => failures.push(format!("mailbox {name}: the watcher failed: {e}")),
        }
        if !h.lease.is_lost() {
            self.release(&h.lease.fence).await;
        }
    }

    /// Shutdown: every watcher finishes the batch in hand, then every lease is handed back
    /// at once (the other nodes need not wait for them to run out).
    async fn finish(&self, node: &NodeId, mut held: BTreeMap<String, Held>, failures: &mut Vec<String>) {
        for h in held.values() {
            h.lease.stop().cancel();
        }
        for (name, h) in std::mem::take(&mut held) {
            self.settle(&name, h, failures).await;
        }
        let node = node.clone();
        let stopped = self.blocking(move |db| Ok(nodes::stopped(db, &node, &store::now())?)).await;
        if let Err(e) = stopped {
            tracing::warn!(error = %format!("{e:#}"), "Cannot record that this node stopped");
        }
    }

    async fn release(&self, fence: &Fence) {
        let f = fence.clone();
        match self.blocking(move |db| Ok(nodes::release(db, &f, &store::now())?)).await {
            Ok(()) => tracing::info!(mailbox = %fence.mailbox, "Mailbox handed back"),
            Err(e) => {
                tracing::warn!(mailbox = %fence.mailbox, error = %format!("{e:#}"), "Cannot hand the mailbox back; its lease runs out instead")
            }
        }
    }

    /// Runs `f` on the blocking pool with a database session.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(store::db::Db<'_>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let config = Arc::clone(&self.config);
        tokio::task::spawn_blocking(move || {
            let session = Session::open(&config)?;
            f(session.db())
        })
        .await
        .context("the database task failed")?
    }
}

/// How often leases are renewed: three times per lease, so one late round does no harm.
pub fn renew_every(lease: Duration) -> Duration {
    lease / 3
}

/// How long after a renewal was sent the node is sure of its lease: two thirds of it,
/// which leaves a third for clocks that disagree between nodes.
fn sure_for(lease: Duration) -> Duration {
    lease * 2 / 3
}

/// The mailboxes in the order this node prefers them: the configured order, turned by the
/// node's name, so that nodes starting at once reach for different mailboxes first.
fn preferred_order(mailboxes: &[MailboxConfig], node: &str) -> Vec<String> {
    let names: Vec<String> = mailboxes.iter().map(|m| m.name.clone()).collect();
    if names.is_empty() {
        return names;
    }
    let turn = crate::digest::sha256_hex(node.as_bytes())
        .bytes()
        .take(8)
        .fold(0usize, |acc, b| acc.wrapping_mul(31).wrapping_add(usize::from(b)))
        % names.len();
    names[turn..].iter().chain(&names[..turn]).cloned().collect()
}

/// The machine's name, for the nodes table.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_prefer_mailboxes_in_turned_orders_that_hold_every_mailbox_once() {
        let config = crate::config::Config::from_toml(
            "system_addresses = [\"support@example.com\"]\n\
             [[mailbox]]\nname = \"a\"\nhost = \"127.0.0.1\"\nusername = \"a\"\npassword = \"p\"\n\
             [[mailbox]]\nname = \"b\"\nhost = \"127.0.0.1\"\nusername = \"b\"\npassword = \"p\"\n\
             [[mailbox]]\nname = \"c\"\nhost = \"127.0.0.1\"\nusername = \"c\"\npassword = \"p\"\n",
            std::path::Path::new("/c.toml"),
        )
        .unwrap();
        let orders: Vec<Vec<String>> =
            ["node-1", "node-2", "node-3", "node-4"].iter().map(|n| preferred_order(&config.mailboxes, n)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, ["a", "b", "c"]);
        }
        assert!(orders.iter().any(|o| o[0] != orders[0][0]), "not every node starts with the same mailbox: {orders:?}");
        assert_eq!(preferred_order(&config.mailboxes, "node-1"), orders[0], "the same node, the same order");
    }

    #[test]
    fn leases_are_renewed_three_times_a_lease_and_sure_for_two_thirds() {
        let lease = Duration::from_secs(30);
        assert_eq!(renew_every(lease), Duration::from_secs(10));
        assert_eq!(sure_for(lease), Duration::from_secs(20));
        assert!(sure_for(lease) > renew_every(lease), "a renewal comes before certainty ends");
    }
}
