//! Deciding what a mail or an analyst's request means, as pure functions of the facts, a
//! [`Snapshot`] of what the store knows (loaded in one call by `store::snapshot`) and the
//! configuration. A decision is a [`Plan`]: the outcome and the effects — a case opened,
//! thread entries, status and impact changes, watchers added or removed, a quarantine,
//! audit records and the events people hear about — that the store then applies, in
//! order, inside the unit of work it already has (`store::apply`). Nothing here reads
//! or writes anything; the decisions are tested with plain data.
//!
//! - [`mail`]: an incoming mail (routing facts, machine mail, the sender's standing,
//!   commands, follow-ups of closed cases, survey answers by mail).
//! - [`request`]: actions on an existing case, by mail or from `casegate case …`.

pub mod bounce;
pub mod mail;
mod new_case;
pub mod request;

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::address::Address;
use crate::case::{
    AuditAction, CaseId, CaseRow, Event, Impact, MessageKind, Notice, Outcome, ParticipantRole, Reason, Status,
};
use crate::classify::bounce::Cause;
use crate::parse::{Attachment, InboundMail};
use crate::survey::Answer;

/// The case an effect is about: one that exists, or the one the plan opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseRef {
    Existing(CaseId),
    New,
}

/// A thread entry the plan writes: the n-th [`Effect::AddEntry`] of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef(pub usize);

/// An event as a plan announces it, about cases and entries it may not have written yet.
pub type PlannedEvent = Event<CaseRef, EntryRef>;

/// What a decision does: the outcome, and the effects in the order they are applied.
#[derive(Debug)]
pub struct Plan<'m> {
    pub outcome: Outcome,
    /// The case the mail or request ends on.
    pub case: Option<CaseRef>,
    /// Why, for the journal and the report.
    pub reason: Option<String>,
    pub effects: Vec<Effect<'m>>,
    entries: usize,
}

/// One change to write. `'m` is the life of the mail the plan is about: thread entries
/// borrow its text and attachments instead of copying them.
#[derive(Debug)]
pub enum Effect<'m> {
    /// Opens the plan's new case ([`CaseRef::New`]); always the first effect.
    OpenCase(NewCase),
    AddParticipant {
        case: CaseRef,
        address: Address,
        role: ParticipantRole,
        via: &'static str,
        by: Option<Address>,
    },
    RemoveWatcher {
        case: CaseId,
        address: Address,
    },
    AddEntry(Entry<'m>),
    SetStatus {
        case: CaseId,
        to: Status,
    },
    SetImpact {
        case: CaseId,
        impact: Impact,
    },
    /// The case changed in another way (a reply): its `updated_at` moves.
    Touch(CaseId),
    /// The mail is kept raw for people to look at and release.
    Quarantine {
        reason: Reason,
        detail: String,
    },
    /// A survey answer by mail, replacing an earlier one when `changed`.
    SurveyAnswer {
        case: CaseId,
        recipient: Address,
        answer: Answer,
        changed: bool,
    },
    Audit(Audit),
    /// Something people hear about (the notification step turns it into mail).
    Announce(PlannedEvent),
    /// A notification bounced: its outbox row becomes `bounced`, and the bounce is
    /// recorded for its address.
    RecordBounce(BounceRecord),
    /// An address is not mailed until `until` (its still queued mail is held back too).
    Suppress {
        address: Address,
        reason: String,
        until: DateTime<Utc>,
    },
}

/// A bounce of one notification, as it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceRecord {
    /// The outbox row.
    pub row: i64,
    pub address: Address,
    pub status: Option<String>,
    pub cause: Cause,
    pub hard: bool,
    pub diagnostic: String,
    /// The status, cause and diagnostic on one line: the row's `last_error`.
    pub summary: String,
}

/// The fields a new case starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCase {
    pub subject: String,
    pub impact: Impact,
    pub account: Option<String>,
    pub environment: Option<String>,
    pub linked_case: Option<CaseId>,
    /// The opening key of the mail's words and its requester (`classify::opening_key`), for the loop breaker.
    pub opening_gist: Option<String>,
}

/// A thread entry to add, with its attachments; its Message-ID (if any) is linked to the
/// case so replies to it find the case.
#[derive(Debug)]
pub struct Entry<'m> {
    pub case: CaseRef,
    pub kind: MessageKind,
    pub from: Option<Address>,
    pub body: Cow<'m, str>,
    pub message_id: Option<&'m str>,
    pub attachments: &'m [Attachment],
}

/// An audit record; the mail it is about (if any) is the one the plan is applied for.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub case: Option<CaseRef>,
    pub actor: Option<Address>,
    pub action: AuditAction,
    pub detail: Option<String>,
}

impl<'m> Plan<'m> {
    pub fn new(outcome: Outcome, case: Option<CaseRef>, reason: Option<String>) -> Plan<'m> {
        Plan { outcome, case, reason, effects: Vec::new(), entries: 0 }
    }

    /// Adds a thread entry and returns how later effects name it.
    pub fn entry(&mut self, entry: Entry<'m>) -> EntryRef {
        self.effects.push(Effect::AddEntry(entry));
        self.entries += 1;
        EntryRef(self.entries - 1)
    }

    pub fn audit(
        &mut self,
        case: Option<CaseRef>,
        actor: Option<&Address>,
        action: AuditAction,
        detail: Option<String>,
    ) {
        self.effects.push(Effect::Audit(Audit { case, actor: actor.cloned(), action, detail }));
    }

    pub fn announce(&mut self, event: PlannedEvent) {
        self.effects.push(Effect::Announce(event));
    }

    /// Answers the sender of `mail` directly (whether it may be sent is the notification
    /// step's business: machine mail and "no answers" headers get none).
    pub fn notice(&mut self, mail: &InboundMail, case: Option<CaseRef>, notice: Notice) {
        if let Some(to) = mail.from_address() {
            self.announce(Event::Notice { to: to.clone(), case, notice, in_reply_to: mail.message_id.clone() });
        }
    }

    /// The events the plan announces, in order.
    pub fn events(&self) -> impl Iterator<Item = &PlannedEvent> {
        self.effects.iter().filter_map(|e| match e {
            Effect::Announce(event) => Some(event),
            _ => None,
        })
    }
}

/// What the store knows about one case: its fields and its active participants.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFacts {
    pub row: CaseRow,
    pub participants: Vec<(Address, ParticipantRole)>,
}

/// The survey invitation a mail answers (its In-Reply-To or References name the survey mail).
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyInvitation {
    pub case: CaseId,
    pub recipient: Address,
    pub expires_at: DateTime<Utc>,
    /// Whether this person answered before (a new answer replaces it).
    pub answered: bool,
}

/// Where routing put a mail, with what the store knows about that case.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// A new case; `note` says why when the mail pointed somewhere that does not exist.
    New { note: Option<String> },
    /// An existing case, and the open case that follows it up when it is closed.
    Existing { case: Box<CaseFacts>, follow_up: Option<Box<CaseFacts>> },
}

/// A notification a bounce refers to (by its Message-ID or its return path), with what the
/// store knows about its address.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRow {
    pub id: i64,
    pub case: Option<CaseId>,
    pub to: Address,
    /// The row's outbox status now (`sent`, `bounced`, ...).
    pub status: String,
    /// Whether the bounce named it by its return path (else by its Message-ID).
    pub by_return_path: bool,
    /// Bounces of the address recorded within `[bounces] soft_bounce_window_days`, and
    /// how many of them were soft.
    pub recent_bounces: u32,
    pub recent_soft: u32,
    /// Whether the address is suppressed now.
    pub suppressed: bool,
}

/// What the store knows that a decision about a mail needs (see `store::snapshot`).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub routed: Routed,
    /// The survey invitation whose mail this one answers, if any.
    pub invitation: Option<SurveyInvitation>,
    /// The notifications a bounce refers to (looked up only for bounces).
    pub bounced: Vec<SentRow>,
    /// Whether the sender took part in any case before (looked up only when DMARC
    /// failed for the mail: `None` when not looked up).
    pub sender_known: Option<bool>,
}

impl Snapshot {
    /// A mail that goes to no existing case.
    pub fn new_case() -> Snapshot {
        Snapshot::routed(Routed::New { note: None })
    }

    /// A snapshot with only the routing known.
    pub fn routed(routed: Routed) -> Snapshot {
        Snapshot { routed, invitation: None, bounced: Vec::new(), sender_known: None }
    }
}
