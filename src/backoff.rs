//! Capped exponential backoff with jitter, shared by everything that retries after an
//! error: mailbox and Maildir watchers, the outbox worker.

use std::time::Duration;

/// Capped exponential backoff with jitter, for reconnecting after errors: 1 s, 2 s, 4 s …
/// up to `max`, each drawn from [½·d, d] so that many sources do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The delays used to reconnect or retry after an error: 1 s doubling to 60 s.
    pub fn after_errors() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { next: base, base, max }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let lo = d.as_millis() as u64 / 2;
        Duration::from_millis(rand::thread_rng().gen_range(lo..=d.as_millis() as u64))
    }

    /// After a success: start again from the base delay.
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        for (d, top) in delays.iter().zip([1, 2, 4, 8, 8, 8]) {
            let top = Duration::from_secs(top);
            assert!(*d <= top && *d >= top / 2, "{d:?} not in [{:?}, {top:?}]", top / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
