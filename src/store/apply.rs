//! Applying a [`Plan`]: the store writes its effects, in order, in the unit of work it is
//! given — and, for a mail, the journal row and the raw copy with them. What the plan
//! announced comes back as [`Event`]s naming the rows that were written.

use anyhow::Context as _;

use super::bounces;
use super::cases::{self, AttachmentView, NewMessage};
use super::mails::{self, NewMail, Recorded};
use super::surveys;
use super::unit::{AuditRecord, Scope};
use crate::case::{AuditAction, CaseId, EntryId, Event, ParticipantRole};
use crate::decide::{CaseRef, Effect, Entry, EntryRef, Plan};
use crate::survey::Channel;

/// The journal row a plan is recorded under.
pub enum Journal<'a> {
    /// A mail seen for the first time, with its raw copy.
    New { mail: NewMail<'a>, raw: RawMail<'a> },
    /// A released quarantined mail: its row gets the new outcome.
    Replay { mail_id: i64 },
    /// No mail (an analyst's command, a periodic job).
    None,
}

/// A raw mail as stored: its hash, size and compressed bytes (see [`mails::pack_raw`]).
#[derive(Debug, Clone, Copy)]
pub struct RawMail<'a> {
    pub sha256: &'a str,
    pub size: usize,
    pub packed: &'a [u8],
}

/// What applying a plan wrote.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The journal row, for a mail.
    pub mail_id: Option<i64>,
    /// The case the plan ended on (a new case's number, once opened).
    pub case: Option<CaseId>,
    /// What the plan announced, in order.
    pub events: Vec<Event>,
}

/// The rows a plan's references turned into.
#[derive(Default)]
struct Written {
    case: Option<CaseId>,
    entries: Vec<EntryId>,
}

impl Written {
    fn case(&self, r: CaseRef) -> anyhow::Result<CaseId> {
        match r {
            CaseRef::Existing(id) => Ok(id),
            CaseRef::New => self.case.context("the plan names its new case before opening it"),
        }
    }

    fn entry(&self, r: EntryRef) -> anyhow::Result<EntryId> {
        self.entries.get(r.0).copied().with_context(|| format!("the plan names its entry {} before writing it", r.0))
    }
}

/// Writes `plan` in `scope`, recorded under `journal`.
pub fn apply(scope: &Scope<'_>, plan: &Plan<'_>, journal: Journal<'_>) -> anyhow::Result<Applied> {
    let mut written = Written::default();
    let mut effects = plan.effects.iter().peekable();
    // A new case exists before the journal row that names it.
    if let Some(Effect::OpenCase(new)) = effects.peek() {
        written.case = Some(cases::insert_case(scope.conn, new, scope.stamp)?);
        effects.next();
    }
    let case = plan.case.map(|c| written.case(c)).transpose()?;
    let recorded = Recorded { outcome: plan.outcome, case, reason: plan.reason.as_deref() };
    let mail_id = match journal {
        Journal::New { mail, raw } => {
            let mut packs = scope.packs.map(|p| p.borrow_mut());
            mails::store_raw(scope.conn, packs.as_deref_mut(), raw.sha256, raw.size, raw.packed)?;
            Some(mails::insert_mail(scope.conn, &mail, recorded, scope.stamp)?)
        }
        Journal::Replay { mail_id } => {
            mails::set_outcome(scope.conn, mail_id, recorded)?;
            Some(mail_id)
        }
        Journal::None => None,
    };
    let mut events = Vec::new();
    for effect in effects {
        if let Effect::Announce(event) = effect {
            events.push(event.clone().try_resolve(|c| written.case(c), |e| written.entry(e))?);
        } else {
            write(scope, effect, mail_id, &mut written)?;
        }
    }
    Ok(Applied { mail_id, case, events })
}

/// Writes one effect (other than an announcement).
fn write(scope: &Scope<'_>, effect: &Effect<'_>, mail_id: Option<i64>, written: &mut Written) -> anyhow::Result<()> {
    let (conn, now) = (scope.conn, scope.stamp);
    match effect {
        Effect::OpenCase(_) => anyhow::bail!("a plan opens its case first, or not at all"),
        Effect::AddParticipant { case, address, role, via, by } => {
            cases::add_participant(conn, written.case(*case)?, address, *role, via, by.as_ref(), now)?;
        }
        Effect::RemoveWatcher { case, address } => {
            cases::remove_participant(conn, *case, address, ParticipantRole::Watcher, now)?;
        }
        Effect::AddEntry(entry) => {
            let id = add_entry(scope, entry, written.case(entry.case)?, mail_id)?;
            written.entries.push(id);
        }
        Effect::SetStatus { case, to } => cases::set_status(conn, *case, *to, now)?,
        Effect::SetImpact { case, impact } => cases::set_field(conn, *case, "impact", Some(impact.as_db()), now)?,
        Effect::Touch(case) => cases::touch(conn, *case, now)?,
        Effect::Quarantine { reason, detail } => {
            let mail = mail_id.context("only a mail can be quarantined")?;
            mails::quarantine(conn, mail, reason.as_str(), Some(detail), now)?;
        }
        Effect::SurveyAnswer { case, recipient, answer, changed } => {
            surveys::save_answer(scope.conn, *case, recipient, answer, Channel::Mail, scope.now, *changed)?;
        }
        Effect::Audit(audit) => {
            let case = audit.case.map(|c| written.case(c)).transpose()?;
            let actor = audit.actor.as_ref().map(|a| a.as_str());
            if audit.action == AuditAction::WatchersLimited {
                tracing::warn!(
                    case,
                    by = actor.unwrap_or("-"),
                    detail = audit.detail.as_deref().unwrap_or(""),
                    "Watchers left out"
                );
            }
            let detail = audit.detail.as_deref();
            scope.audit(&AuditRecord { mail: mail_id, case, actor, action: audit.action, detail })?;
        }
        Effect::RecordBounce(bounce) => bounces::record(conn, bounce, mail_id, now)?,
        Effect::Suppress { address, reason, until } => {
            tracing::warn!(address = %address, until = %until, reason = %reason, "Address suppressed");
            bounces::suppress(conn, address, reason, now, &super::stamp(*until))?;
        }
        Effect::Announce(_) => {}
    }
    Ok(())
}

/// Adds a thread entry with its attachments (bytes to the blob store) and links its
/// Message-ID to the case.
fn add_entry(scope: &Scope<'_>, entry: &Entry<'_>, case: CaseId, mail_id: Option<i64>) -> anyhow::Result<EntryId> {
    let message = NewMessage {
        case,
        mail_id,
        message_id: entry.message_id,
        kind: entry.kind,
        from: entry.from.as_ref(),
        body: &entry.body,
    };
    let id = cases::insert_message(scope.conn, &message, scope.stamp)?;
    for a in entry.attachments {
        scope.blobs.put(&a.sha256, &a.data).with_context(|| format!("cannot store attachment {:?}", a.filename))?;
        let view = AttachmentView {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.data.len() as u64,
            sha256: a.sha256.clone(),
            disposition: a.disposition,
        };
        cases::insert_attachment(scope.conn, id, &view, a.content_id.as_deref())?;
    }
    if let Some(message_id) = entry.message_id {
        cases::link_message_id(scope.conn, message_id, case)?;
    }
    Ok(id)
}
