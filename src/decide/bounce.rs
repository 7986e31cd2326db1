//! A bounce of casegate's own mail: which notification it was, what happens to the
//! notification's address, and who hears of it.
//!
//! ```text
//! a bounce that names notifications (by the Message-ID it returns, or by the return path
//! it came back to) ─ per notification:
//!     its address failed ─▶ row `bounced` (status and diagnostic in last_error)
//!                        ─▶ a `system` entry on the case naming the address
//!                        ─▶ staff told, once: the address's first bounce since it was last
//!                           suppressed, or within the soft-bounce window
//!                        ─▶ a hard bounce, or the soft bounce that makes
//!                           `soft_bounces_to_suppress`, suppresses the address for
//!                           `suppress_days`
//!     only delayed, or someone else failed ─▶ audited, nothing else
//! ```
//!
//! A bounce that names no notification casegate knows is machine mail like any other
//! (`decide::mail`).

use chrono::{DateTime, Utc};

use super::{BounceRecord, CaseRef, Effect, Entry, Plan, SentRow};
use crate::address::Address;
use crate::case::{AuditAction, Event, MessageKind, Outcome};
use crate::classify::bounce::{Action, Cause, Recipient, Report};
use crate::classify::MachineKind;
use crate::config::Config;
use crate::prepare::Analyzed;

/// The plan for a bounce of the notifications in `rows` (loaded by the snapshot), or
/// `None` when the mail is no bounce of them.
pub fn plan<'m>(config: &Config, analyzed: &'m Analyzed, rows: &[SentRow], now: DateTime<Utc>) -> Option<Plan<'m>> {
    let is_bounce = analyzed.machine.as_ref().is_some_and(|v| v.kind == MachineKind::Bounce);
    if !is_bounce || rows.is_empty() {
        return None;
    }
    let report = analyzed.bounce.as_ref();
    let mail = &analyzed.mail;
    let case = rows.iter().find_map(|r| r.case).map(CaseRef::Existing);
    let mut plan = Plan::new(if case.is_some() { Outcome::Replied } else { Outcome::Ignored }, case, None);
    let mut reasons = Vec::new();
    let mut told: Vec<Address> = Vec::new();
    for row in rows {
        let Some(failure) = failure_of(report, row) else {
            let detail = format!("notification #{} to {}: {}", row.id, row.to, not_failed(report));
            plan.audit(
                row.case.map(CaseRef::Existing),
                mail.from_address(),
                AuditAction::Bounced,
                Some(detail.clone()),
            );
            reasons.push(detail);
            continue;
        };
        if row.status == "bounced" {
            let detail = format!("notification #{} to {} had bounced already", row.id, row.to);
            plan.audit(
                row.case.map(CaseRef::Existing),
                mail.from_address(),
                AuditAction::Bounced,
                Some(detail.clone()),
            );
            reasons.push(detail);
            continue;
        }
        let suppress = suppression(config, row, &failure, now);
        reasons.push(format!("notification #{} to {} bounced: {}", row.id, row.to, failure.summary));
        record(&mut plan, analyzed, row, &failure, suppress.as_ref(), &mut told);
    }
    plan.reason = Some(format!("bounce: {}", reasons.join("; ")));
    Some(plan)
}

/// What the report says about the row's address, if it failed: its own recipient entry
/// (by final or original address); the only failed recipient, when the row's address is
/// not named (forwarding changed it); or, for a bounce at the row's return path that
/// names nobody, a failure without details.
fn failure_of(report: Option<&Report>, row: &SentRow) -> Option<BounceRecord> {
    let record = |r: &Recipient| BounceRecord {
        row: row.id,
        address: row.to.clone(),
        status: r.status.clone(),
        cause: r.cause,
        hard: r.hard,
        diagnostic: r.diagnostic.clone(),
        summary: r.summary(),
    };
    let Some(report) = report.filter(|r| !r.recipients.is_empty()) else {
        return row.by_return_path.then(|| BounceRecord {
            row: row.id,
            address: row.to.clone(),
            status: None,
            cause: Cause::Undefined,
            hard: false,
            diagnostic: String::new(),
            summary: "undefined: the report names no recipient (matched by the return path)".into(),
        });
    };
    let names_row = |r: &&Recipient| r.address == row.to || r.original.as_ref() == Some(&row.to);
    if let Some(own) = report.recipients.iter().find(names_row) {
        return (own.action == Action::Failed).then(|| record(own));
    }
    let mut failed = report.failed();
    match (failed.next(), failed.next()) {
        (Some(only), None) => Some(record(only)),
        _ => None,
    }
}

/// Why a bounce that names a notification does not count as its failure.
fn not_failed(report: Option<&Report>) -> String {
    match report {
        Some(r) if r.recipients.iter().any(|x| x.action == Action::Delayed) => {
            "delivery is delayed; the sending server keeps trying".into()
        }
        Some(r) if !r.recipients.is_empty() => {
            let named: Vec<&str> = r.recipients.iter().map(|x| x.address.as_str()).collect();
            format!("the report is about {}, not this address", named.join(", "))
        }
        _ => "the report names no recipient".into(),
    }
}

/// The suppression this bounce causes, if any: a hard bounce, or the soft one that reaches
/// `soft_bounces_to_suppress` within the window — unless the address is suppressed already.
fn suppression(
    config: &Config,
    row: &SentRow,
    failure: &BounceRecord,
    now: DateTime<Utc>,
) -> Option<(String, DateTime<Utc>)> {
    if row.suppressed {
        return None;
    }
    let limit = config.bounces.soft_bounces_to_suppress;
    let reason = if failure.hard {
        format!("hard bounce: {}", failure.summary)
    } else if row.recent_soft + 1 >= limit {
        let days = config.bounces.soft_window.as_secs() / 86_400;
        format!("{limit} soft bounces within {days} days, the last: {}", failure.summary)
    } else {
        return None;
    };
    let until = now + chrono::Duration::from_std(config.bounces.suppress_for).unwrap_or(chrono::Duration::days(36_500));
    Some((reason, until))
}

/// The effects of one failed notification.
fn record<'m>(
    plan: &mut Plan<'m>,
    analyzed: &'m Analyzed,
    row: &SentRow,
    failure: &BounceRecord,
    suppress: Option<&(String, DateTime<Utc>)>,
    told: &mut Vec<Address>,
) {
    let mail = &analyzed.mail;
    let case = row.case.map(CaseRef::Existing);
    plan.effects.push(Effect::RecordBounce(failure.clone()));
    let mut text = format!(
        "Mail to {} could not be delivered: {} ({}).",
        row.to,
        failure.cause.describe(),
        failure.status.as_deref().unwrap_or("no status code")
    );
    if !failure.diagnostic.is_empty() {
        text.push_str(&format!("\nThe receiving server said: {}", failure.diagnostic));
    }
    if let Some((reason, until)) = suppress {
        text.push_str(&format!("\n{} is not mailed until {} ({reason}).", row.to, until.format("%Y-%m-%d")));
        plan.effects.push(Effect::Suppress { address: row.to.clone(), reason: reason.clone(), until: *until });
        let detail = format!("{} until {}: {reason}", row.to, until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        plan.audit(case, mail.from_address(), AuditAction::AddressSuppressed, Some(detail));
    }
    let detail = format!("notification #{} to {}: {}", row.id, row.to, failure.summary);
    plan.audit(case, mail.from_address(), AuditAction::Bounced, Some(detail));
    let Some(CaseRef::Existing(id)) = case else { return };
    let entry = plan.entry(Entry {
        case: CaseRef::Existing(id),
        kind: MessageKind::System,
        from: None,
        body: text.into(),
        message_id: None,
        attachments: &[],
    });
    // Staff hear of an address once: not again while it is suppressed or bouncing.
    let first = row.recent_bounces == 0 && !row.suppressed && !told.contains(&row.to);
    if first {
        told.push(row.to.clone());
        plan.announce(Event::Bounced { case: CaseRef::Existing(id), message: entry, address: row.to.clone() });
    }
}

#[cfg(test)]
mod tests;
