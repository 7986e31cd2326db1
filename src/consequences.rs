//! What follows from the events a plan announced, in the same unit of work: surveys offered
//! for cases that were closed, and the notifications people get. Computed here, above
//! both [`crate::notify`] and [`crate::survey`], so neither needs the other: the survey
//! offers are events like any other, and the notification of an offer tells the survey
//! which Message-ID its answers by mail will refer to.

use chrono::{DateTime, Utc};

use crate::case::{CaseId, Event, Status};
use crate::config::Config;
use crate::notify::{self, Trigger};
use crate::store::{surveys, Scope, Store};

/// Offers surveys for the cases `events` closed, then queues every notification.
pub fn follow(
    scope: &Scope<'_>,
    config: &Config,
    events: Vec<Event>,
    trigger: Option<Trigger<'_>>,
) -> anyhow::Result<()> {
    let mut events = events;
    let closed: Vec<CaseId> = events
        .iter()
        .filter_map(|e| match e {
            Event::StatusChanged { case, to: Status::Closed, .. } => Some(*case),
            _ => None,
        })
        .collect();
    for case in closed {
        events.extend(survey_offers(scope, config, case, scope.now));
    }
    announce(scope, config, &events, trigger)
}

/// Queues the notifications of `events`; a survey offer's Message-ID is remembered, so a
/// reply with a score is recognised as the answer.
fn announce(scope: &Scope<'_>, config: &Config, events: &[Event], trigger: Option<Trigger<'_>>) -> anyhow::Result<()> {
    for queued in notify::enqueue(scope.conn, config, events, trigger)? {
        if let Event::SurveyOffered { case, to, .. } = &events[queued.event] {
            surveys::set_message_id(scope.conn, *case, to, &queued.message_id)?;
        }
    }
    Ok(())
}

/// Invites a case's requester and contact to its survey (once per case and person) and
/// returns the offers to mail. A survey secret that cannot be read is logged and the
/// case goes on without a survey, rather than failing the change that closed it.
fn survey_offers(scope: &Scope<'_>, config: &Config, case: CaseId, now: DateTime<Utc>) -> Vec<Event> {
    match surveys::invite_case(scope.conn, config, case, now) {
        Ok(invitations) => invitations
            .into_iter()
            .map(|i| Event::SurveyOffered { case: i.case, to: i.recipient, url: i.url })
            .collect(),
        Err(e) => {
            tracing::error!(case, error = %format!("{e:#}"), "Survey not offered");
            Vec::new()
        }
    }
}

/// Offers the survey of Resolved cases that have waited `survey.resolved_after` (once
/// per case): invitations and notifications in one unit of work. Returns how many cases.
/// The daemon runs it periodically.
pub fn sweep_resolved(config: &Config) -> anyhow::Result<usize> {
    if config.survey.resolved_after.is_none() || !crate::survey::offered(config) {
        return Ok(0);
    }
    let mut store = Store::shared(config)?;
    let swept = store.write(true, |unit| {
        let scope = unit.scope();
        let due = surveys::resolved_cases_due(scope.conn, config, scope.now)?;
        for &case in &due {
            let offers = survey_offers(&scope, config, case, scope.now);
            tracing::info!(case, offered = offers.len(), "Survey offered for a case waiting in Resolved");
            announce(&scope, config, &offers, None)?;
        }
        Ok(Some(due.len()))
    })?;
    Ok(swept.unwrap_or(0))
}
