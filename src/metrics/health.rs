//! `/readyz`: is this casegate doing its job? Three kinds of check, each named in the
//! answer so that whoever is paged reads what failed:
//!
//! - `database`: the database writer committed a small write just now (disk full, a
//!   read-only file system, a lock another process holds for too long all fail it);
//! - `mailbox <name>`, one per `[[mailbox]]`: connected, or not connected for less than
//!   `metrics.mailbox_retry_window_secs` (a reconnect after a dropped connection is
//!   normal; a server down for minutes is not);
//! - `outbox`: the oldest notification that is due has waited less than
//!   `metrics.outbox_stuck_secs` (an SMTP server that refuses or is gone shows here).
//!
//! The verdict is a pure function of what was found ([`evaluate`]), so its rules are
//! tested on plain data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::database::Figures;
use super::MailboxState;

/// The limits the checks compare against (`[metrics]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub mailbox_retry_window: Duration,
    pub outbox_stuck: Duration,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was found, in words; for a failure, what is wrong.
    pub detail: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// The names of the checks that failed.
    pub failed: Vec<String>,
    pub checks: Vec<Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The verdict on what was found at `now`: the database probe's result, each mailbox's
/// state, and the database's figures (`Err` when they could not be read).
pub fn evaluate(
    database: Result<(), String>,
    mailboxes: &BTreeMap<String, MailboxState>,
    figures: &Result<Figures, String>,
    limits: Limits,
    now: Instant,
) -> Readiness {
    let mut checks = Vec::with_capacity(mailboxes.len() + 2);
    checks.push(match database {
        Ok(()) => Check { name: "database".into(), ok: true, detail: "writable".into() },
        Err(e) => Check { name: "database".into(), ok: false, detail: e },
    });
    for (name, state) in mailboxes {
        checks.push(mailbox(name, state, limits.mailbox_retry_window, now));
    }
    checks.push(outbox(figures, limits.outbox_stuck));
    let failed: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| c.name.clone()).collect();
    Readiness { status: if failed.is_empty() { "ready" } else { "not ready" }, failed, checks }
}

fn mailbox(name: &str, state: &MailboxState, window: Duration, now: Instant) -> Check {
    let name = format!("mailbox {name}");
    let for_secs = now.saturating_duration_since(state.since).as_secs();
    if state.connected {
        return Check { name, ok: true, detail: format!("connected for {for_secs} s") };
    }
    let mut detail = match &state.last_error {
        Some(e) => format!("not connected for {for_secs} s: {e}"),
        None => format!("not connected yet ({for_secs} s since start)"),
    };
    if let Some(at) = state.retry_at {
        detail.push_str(&format!("; next attempt in {} s", at.saturating_duration_since(now).as_secs()));
    }
    let ok = now.saturating_duration_since(state.since) <= window;
    if !ok {
        detail.push_str(&format!(" (longer than metrics.mailbox_retry_window_secs = {})", window.as_secs()));
    }
    Check { name, ok, detail }
}

fn outbox(figures: &Result<Figures, String>, stuck: Duration) -> Check {
    let name = "outbox".to_string();
    match figures {
        Err(e) => Check { name, ok: false, detail: format!("cannot read the outbox: {e}") },
        Ok(f) => {
            let queued = f.outbox.iter().find(|(s, _)| s == "queued").map_or(0, |(_, n)| *n);
            let waited = f.oldest_queued_secs;
            let ok = waited <= stuck.as_secs_f64();
            let mut detail = format!("{queued} queued; the oldest due one has waited {waited:.0} s");
            if !ok {
                detail.push_str(&format!(
                    " (longer than metrics.outbox_stuck_secs = {}): is the SMTP server reachable? `casegate outbox list` shows the errors",
                    stuck.as_secs()
                ));
            }
            Check { name, ok, detail }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { mailbox_retry_window: Duration::from_secs(60), outbox_stuck: Duration::from_secs(600) };

    fn figures(queued: i64, oldest: f64) -> Result<Figures, String> {
        Ok(Figures { outbox: vec![("queued".into(), queued)], oldest_queued_secs: oldest, ..Figures::default() })
    }

    fn state(connected: bool, ago: Duration, now: Instant, error: Option<&str>) -> MailboxState {
        MailboxState {
            connected,
            since: now - ago,
            last_error: error.map(str::to_string),
            retry_at: (!connected).then_some(now + Duration::from_secs(8)),
        }
    }

    #[test]
    fn all_well_is_ready_and_says_so_per_check() {
        let now = Instant::now();
        let boxes = BTreeMap::from([("support".to_string(), state(true, Duration::from_secs(5), now, None))]);
        let r = evaluate(Ok(()), &boxes, &figures(2, 30.0), LIMITS, now);
        assert!(r.is_ready(), "{r:?}");
        assert_eq!(r.status, "ready");
        let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["database", "mailbox support", "outbox"]);
    }

    #[test]
    fn a_mailbox_down_longer_than_its_retry_window_fails_by_name_with_its_error() {
        let now = Instant::now();
        let boxes = BTreeMap::from([
            ("sales".to_string(), state(true, Duration::from_secs(500), now, None)),
            ("support".to_string(), state(false, Duration::from_secs(61), now, Some("connection refused"))),
            ("billing".to_string(), state(false, Duration::from_secs(10), now, Some("timeout"))),
        ]);
        let r = evaluate(Ok(()), &boxes, &figures(0, 0.0), LIMITS, now);
        assert_eq!(r.failed, ["mailbox support"], "billing is within its window: {r:?}");
        let support = r.checks.iter().find(|c| c.name == "mailbox support").unwrap();
        assert!(support.detail.contains("connection refused") && support.detail.contains("next attempt in 8 s"));
        assert!(support.detail.contains("mailbox_retry_window_secs = 60"), "{}", support.detail);
        assert_eq!(r.status, "not ready");
    }

    #[test]
    fn a_stuck_outbox_an_unwritable_database_and_unreadable_figures_fail() {
        let now = Instant::now();
        let r = evaluate(Err("disk full".into()), &BTreeMap::new(), &figures(3, 601.0), LIMITS, now);
        assert_eq!(r.failed, ["database", "outbox"]);
        assert!(r.checks[1].detail.contains("3 queued") && r.checks[1].detail.contains("outbox_stuck_secs = 600"));
        let r = evaluate(Ok(()), &BTreeMap::new(), &Err("locked".into()), LIMITS, now);
        assert_eq!(r.failed, ["outbox"]);
    }
}
