//! A mailbox's lease as the node holding it sees it: the fence every commit for the
//! mailbox carries (see `store::nodes`), and until when the node may take the lease for
//! granted without asking the database — checked before mail is marked at the server, so
//! a node that was paused or cut off past its lease does not mark either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::nodes::{Fence, LeaseLost};

/// A held lease. Cancelling [`Lease::stop`] stops the mailbox's watcher (after the batch
/// in hand); [`Lease::lose`] does it because the lease is gone.
#[derive(Debug)]
pub struct Lease {
    pub fence: Fence,
    /// Until when it is surely still ours (local monotonic time).
    until: Mutex<Instant>,
    /// Taken over, or not renewed in time: never ours again.
    lost: AtomicBool,
    stop: CancellationToken,
}

impl Lease {
    /// A lease taken at `taken` (when the request was sent), sure for `sure_for`.
    pub fn new(fence: Fence, taken: Instant, sure_for: Duration, stop: CancellationToken) -> Lease {
        Lease { fence, until: Mutex::new(taken + sure_for), lost: AtomicBool::new(false), stop }
    }

    /// Renewed: sure for `sure_for` from `sent`, the time the renewal was sent.
    pub fn renewed(&self, sent: Instant, sure_for: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        *until = (*until).max(sent + sure_for);
    }

    /// `Ok` while the lease is surely ours; else `Err(LeaseLost)` (and the watcher is
    /// told to stop).
    pub fn check(&self) -> Result<(), LeaseLost> {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < until && !self.is_lost() {
            return Ok(());
        }
        self.lose();
        Err(LeaseLost { mailbox: self.fence.mailbox.clone() })
    }

    /// The lease is gone (taken over, or not renewed in time): the watcher stops.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The watcher's stop signal.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

/// Whether `e` says a mailbox's lease was lost.
pub fn is_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<LeaseLost>().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence() -> Fence {
        Fence { mailbox: "support".into(), fencing: 3 }
    }

    #[test]
    fn a_lease_is_sure_until_its_time_and_then_stops_the_watcher() {
        let stop = CancellationToken::new();
        let lease = Lease::new(fence(), Instant::now(), Duration::from_millis(50), stop.clone());
        assert!(lease.check().is_ok());
        lease.renewed(Instant::now(), Duration::from_millis(80));
        std::thread::sleep(Duration::from_millis(60));
        assert!(lease.check().is_ok(), "renewed");
        std::thread::sleep(Duration::from_millis(40));
        let err = lease.check().unwrap_err();
        assert_eq!(err.mailbox, "support");
        assert!(stop.is_cancelled(), "the watcher is told to stop");
        assert!(is_lost(&anyhow::Error::new(err).context("marking")));
    }

    #[test]
    fn a_lost_lease_stays_lost_whatever_renewal_comes_late() {
        let lease = Lease::new(fence(), Instant::now(), Duration::from_secs(60), CancellationToken::new());
        lease.lose();
        lease.renewed(Instant::now(), Duration::from_secs(60));
        assert!(lease.check().is_err());
    }
}
