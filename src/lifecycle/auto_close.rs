//! Resolved cases that close themselves (`[workflow] auto_close_after_days`).
//!
//! A Resolved case waits for its customer from the moment the solution was proposed (or
//! staff last answered after it). At `remind_after_days` its requester and contact get one
//! reminder ("accept, reject, or it closes on DATE"); at `auto_close_after_days` — and
//! never sooner than the notice the reminder promised — it closes with a `system` entry,
//! its notifications and the survey, through the same store and consequences as a
//! customer's `#accept`. A customer's mail after the wait began stops the clock until
//! staff answer again (the wait, and the reminder, start anew from that answer).
//!
//! Exactly once: the reminder of a wait is a row of `close_reminders`, claimed by a
//! conditional write in the same unit as its notification, and closing claims the case by
//! removing that row (only one writer removes it) before it changes the status the sweep
//! looks for. So two processes sweeping at once — nodes sharing a database — remind and
//! close once between them.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::case::{AuditAction, CaseId, Event, MessageKind, Outcome, Status};
use crate::config::{AutoClose, Config};
use crate::consequences;
use crate::decide::{CaseRef, Effect, Entry, Plan};
use crate::store::apply::{self, Journal};
use crate::store::lifecycle::resolved::{self, Reminder, Waiting};
use crate::store::{Scope, Store};

/// What is due for one Resolved case at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet (or the customer answered: the clock is stopped).
    Nothing,
    /// Remind the requester and contact; the case closes at `closes_at`.
    Remind { waiting_since: DateTime<Utc>, closes_at: DateTime<Utc> },
    /// Close the case: it was reminded and the promised time has come.
    Close { waiting_since: DateTime<Utc> },
}

fn parse(stored: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stored).ok().map(|t| t.with_timezone(&Utc))
}

fn span(d: std::time::Duration) -> chrono::Duration {
    // Configured days are bounded by what chrono holds; beyond, "never".
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Decides what is due for `case` at `now` under `rule` (pure).
pub fn due(case: &Waiting, rule: &AutoClose, now: DateTime<Utc>) -> Due {
    let Some(resolved) = case.resolved_at.as_deref().or(Some(case.updated_at.as_str())).and_then(parse) else {
        return Due::Nothing;
    };
    let staff = case.last_staff_at.as_deref().and_then(parse);
    let waiting_since = staff.filter(|s| *s > resolved).unwrap_or(resolved);
    if case.last_customer_at.as_deref().and_then(parse).is_some_and(|c| c > waiting_since) {
        return Due::Nothing;
    }
    let reminded = case.reminder.as_ref().filter(|r| parse(&r.waiting_since) == Some(waiting_since));
    match reminded {
        Some(r) => match parse(&r.closes_at) {
            Some(closes_at) if now >= closes_at => Due::Close { waiting_since },
            _ => Due::Nothing,
        },
        None => {
            let remind_at = waiting_since.checked_add_signed(span(rule.remind_after));
            if remind_at.is_none_or(|t| now < t) {
                return Due::Nothing;
            }
            let closes = waiting_since.checked_add_signed(span(rule.after)).unwrap_or(DateTime::<Utc>::MAX_UTC);
            // A reminder sent late (the daemon was down) still gives the full notice.
            let notice = now.checked_add_signed(span(rule.notice())).unwrap_or(DateTime::<Utc>::MAX_UTC);
            Due::Remind { waiting_since, closes_at: closes.max(notice) }
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    pub reminded: Vec<CaseId>,
    pub closed: Vec<CaseId>,
}

/// Reminds and closes what is due at `now`, in one unit of work.
pub fn run(config: &Config, now: DateTime<Utc>) -> anyhow::Result<Swept> {
    let Some(rule) = config.workflow.auto_close else { return Ok(Swept::default()) };
    let mut store = Store::open(config)?;
    let swept = store.write(true, |unit| {
        let scope = unit.scope();
        let mut swept = Swept::default();
        for case in resolved::waiting(scope.conn)? {
            match due(&case, &rule, now) {
                Due::Nothing => {}
                Due::Remind { waiting_since, closes_at } => {
                    if remind(&scope, config, case.case, waiting_since, closes_at, now)? {
                        swept.reminded.push(case.case);
                    }
                }
                Due::Close { waiting_since } => {
                    if close(&scope, config, case.case, waiting_since)? {
                        swept.closed.push(case.case);
                    }
                }
            }
        }
        Ok(Some(swept))
    })?;
    let swept = swept.unwrap_or_default();
    for case in &swept.reminded {
        tracing::info!(case = %config.case_token(*case), "Reminded that a Resolved case closes itself");
    }
    for case in &swept.closed {
        tracing::info!(case = %config.case_token(*case), "Resolved case closed itself");
    }
    Ok(swept)
}

fn remind(
    scope: &Scope<'_>,
    config: &Config,
    case: CaseId,
    waiting_since: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let closes = crate::store::stamp(closes_at);
    let reminder = Reminder {
        waiting_since: crate::store::stamp(waiting_since),
        reminded_at: crate::store::stamp(now),
        closes_at: closes.clone(),
    };
    if !resolved::record_reminder(scope.conn, case, &reminder)? {
        return Ok(false);
    }
    let at = CaseRef::Existing(case);
    let mut plan = Plan::new(Outcome::Command, Some(at), None);
    plan.announce(Event::ClosingSoon { case: at, closes_at: closes.clone() });
    plan.audit(Some(at), None, AuditAction::CloseReminded, Some(closes));
    let applied = apply::apply(scope, &plan, Journal::None)?;
    consequences::follow(scope, config, applied.events, None)?;
    Ok(true)
}

/// Closes `case` as an `#accept` would, with a `system` entry; false when another process
/// closed it first.
fn close(scope: &Scope<'_>, config: &Config, case: CaseId, waiting_since: DateTime<Utc>) -> anyhow::Result<bool> {
    if !resolved::claim_close(scope.conn, case, &crate::store::stamp(waiting_since))? {
        return Ok(false);
    }
    let at = CaseRef::Existing(case);
    let (from, to) = (Status::Resolved, Status::Closed);
    let mut plan = Plan::new(Outcome::Command, Some(at), None);
    plan.effects.push(Effect::SetStatus { case, to });
    let since = waiting_since.format("%-d %B %Y");
    let line =
        format!("The case closed itself: the solution was neither accepted nor rejected since {since} ({from} → {to})");
    plan.entry(Entry {
        case: at,
        kind: MessageKind::System,
        from: None,
        body: Cow::Owned(line),
        message_id: None,
        attachments: &[],
    });
    plan.announce(Event::StatusChanged { case: at, from, to, by: None, message: None });
    plan.audit(Some(at), None, AuditAction::StatusChanged, Some(format!("{from} -> {to}")));
    let applied = apply::apply(scope, &plan, Journal::None)?;
    consequences::follow(scope, config, applied.events, None)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
