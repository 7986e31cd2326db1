//! Notifications: the events of a change become mails in the outbox, in the same
//! transaction; the outbox worker sends them.
//!
//! ```text
//! events ─ recipients::RULES (who gets what) ─ templates (handlebars) ─ compose (RFC 5322)
//!        ─ outbox row per recipient (Message-ID, rendered mail) ── committed with the event
//! outbox ─ send::Sender::send_due: claim ─ SMTP (or .eml files) ─ sent | retry | failed
//! ```
//!
//! [`enqueue`] is called by the ingest path (and the analyst commands) inside the
//! transaction that records the change, so a notification exists exactly when its event
//! was committed. It renders each mail right then and gives it its Message-ID, which is
//! linked to the case: a reply to any notification routes back to its case, and a resend
//! after a crash is the very same mail.
//!
//! At start-up, `casegate run`, `ingest` and `outbox flush` call [`check_templates`], so a
//! broken template override stops them with a clear message instead of failing later.
//! The daemon then spawns [`run_worker`]; tests drain the outbox with
//! [`Sender::send_due`].

pub mod compose;
pub mod files;
pub mod limits;
mod personal;
pub mod recipients;
pub mod send;
pub mod templates;

use std::collections::HashMap;

use crate::store::db::{Db, DbResult};
use chrono::{Duration as ChronoDuration, Utc};

use crate::address::Address;
use crate::case::{CaseId, Event, MessageKind, Notice, ParticipantRole, Reason};
use crate::config::Config;
use crate::parse::InboundMail;
use crate::store::cases as case_store;
use crate::store::outbox::{self, NewNotification};
use recipients::{On, People, Recipient};
use templates::{
    CaseLine, CaseView, Change, FieldView, Links, MessageView, NoticeView, Person, RecipientView, Support, Templates,
    View,
};

pub use send::{run_worker, Sender, Summary};

/// How many of a thread's newest Message-IDs go into References (besides its first).
const REFERENCES_RECENT: usize = 10;
/// How many cases a case-list answer shows.
const CASE_LIST_MAX: usize = 50;
/// A sender gets at most one "could not be applied" answer per case in this time.
const NOT_APPLIED_EVERY_HOURS: i64 = 24;

/// Compiles the templates (built-in and overrides) and renders each with sample data;
/// warns when staff alerts have nowhere to go. Call before accepting work, so a broken
/// override stops the program at start.
pub fn check_templates(config: &Config) -> anyhow::Result<()> {
    let templates = Templates::cached(config)?;
    if crate::links::configured(config) {
        // A secret that is configured but cannot be read would leave every mail without
        // its links; better to stop now with the key named.
        crate::links::secret(config)?;
    }
    if !templates.overridden.is_empty() {
        tracing::info!(overridden = ?templates.overridden, "Template overrides loaded");
    }
    support_mailbox(config)?;
    if config.notify.staff_recipients.is_empty() {
        tracing::warn!(
            "No staff recipients: staff alerts (new case, customer reply, note) are sent to nobody; \
             list addresses under [notify] staff_recipients"
        );
    }
    Ok(())
}

/// The mail that caused a set of events: its Message-ID threads direct answers, and
/// `no_answers` says why its sender gets no automatic answer, if they get none (machine
/// mail, "do not answer" headers, an unauthenticated staff address: worked out when the
/// mail was analysed, see `ingest::no_answer_reason`).
#[derive(Clone, Copy)]
pub struct Trigger<'a> {
    pub mail: &'a InboundMail,
    pub no_answers: Option<&'a str>,
    /// What the mail says, as the loop breaker reads it, when worked out while the mail
    /// was prepared (else the loop breaker works it out from the mail's text).
    pub said: Option<Said<'a>>,
}

/// What a mail says, as the loop breaker reads it: worked out while the mail is prepared,
/// on the preparing threads, so that the database writer does not have to.
#[derive(Debug, Clone, Copy)]
pub struct Said<'a> {
    /// Its words as an autoresponder would repeat them (`classify::gist`) and their key.
    pub gist: &'a crate::classify::Gist,
    /// Why it quotes our own automatic mails back, if it does (see [`quotes_ours`]).
    pub quotes_ours: Option<&'a str>,
}

/// Whether words reduced by `classify::gist` quote a line of our own automatic mails
/// (what an autoresponder that returns the mail it got does), and which.
pub fn quotes_ours(config: &Config, words: &str) -> Option<String> {
    limits::quotes_our_text(config, words)
}

/// A notification written to the outbox: for which of the events, to whom, and its
/// Message-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub event: usize,
    pub to: Address,
    pub message_id: String,
}

/// Writes the outbox rows the events call for, and says which.
pub fn enqueue(
    conn: Db<'_>,
    config: &Config,
    events: &[Event],
    trigger: Option<Trigger<'_>>,
) -> anyhow::Result<Vec<Queued>> {
    if events.is_empty() || !config.notify.enabled {
        return Ok(Vec::new());
    }
    let mut facts = Facts::new(conn, config, trigger)?;
    facts.preload(events)?;
    let mut limits = limits::Limits::new(conn, config, facts.now, facts.trigger, trigger.and_then(|t| t.said), events);
    let mut queued = Vec::new();
    for (index, recipient) in plan(events, &mut facts)? {
        // Checked before writing, so that what this batch already queued counts.
        let held = limits.held_back(&events[index], &recipient)?;
        if let Some(reason) = &held {
            tracing::info!(to = %recipient.address, event = recipient.rule.template, reason = %reason, "Notification held back");
        }
        let message_id = write_one(&mut facts, &events[index], &recipient, held.as_deref())?;
        queued.push(Queued { event: index, to: recipient.address, message_id });
    }
    Ok(queued)
}

/// The outbox as `outbox list` shows it: [`outbox::list`], with the subject of each
/// notification not sent yet rendered as it will be sent (it is stored only once the mail
/// is rendered).
pub fn list(conn: Db<'_>, config: &Config, status: Option<&str>) -> anyhow::Result<Vec<outbox::OutboxView>> {
    let mut rows = outbox::list(conn, &config.token_prefix, status)?;
    if rows.iter().all(|r| r.spec.is_none()) {
        return Ok(rows);
    }
    let mut renderer = Renderer::new(conn, config).map_err(|e| anyhow::anyhow!(e))?;
    for row in rows.iter_mut().filter(|r| r.subject.is_empty()) {
        let (Some(spec), Some(to)) = (&row.spec, row.to.first().and_then(|a| Address::parse(a))) else { continue };
        row.subject = renderer.subject(&to, spec).unwrap_or_else(|e| format!("({}: {e})", row.event));
    }
    Ok(rows)
}

/// Who gets what for a batch of events: the table applied event by event, then the
/// mails that another one of the batch makes redundant removed (a reply shown by the
/// status mail sent with it, an acknowledgement said by a follow-up notice, a copy of a
/// mail to someone it was addressed to), and answers that may not be sent left out.
fn plan(events: &[Event], facts: &mut Facts<'_>) -> anyhow::Result<Vec<(usize, Recipient)>> {
    let (conn, config) = (facts.conn, facts.config);
    let mut planned: Vec<(usize, Recipient)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let Some(on) = On::of(event) else { continue };
        let case = case_of(event);
        let participants = match case {
            Some(c) => facts.participants(c)?.to_vec(),
            None => Vec::new(),
        };
        let actor = actor_of(event, &participants);
        let (the_watcher, sender) = match event {
            Event::WatcherAdded { address, .. } | Event::WatcherRemoved { address, .. } => (Some(address), None),
            Event::Notice { to, .. } | Event::SurveyOffered { to, .. } => (None, Some(to)),
            _ => (None, None),
        };
        let people = People { participants: &participants, the_watcher, sender, actor: actor.as_ref() };
        planned.extend(recipients::resolve(config, on, &people).into_iter().map(|r| (index, r)));
    }

    // A status change that carries the thread entry written with it (a solution, a
    // reason for rejecting, a first answer) already shows that entry: whoever gets it
    // does not also get the plain reply.
    let shown_with_status: Vec<(i64, Address)> = planned
        .iter()
        .filter_map(|(i, r)| match &events[*i] {
            Event::StatusChanged { message: Some(m), .. } => Some((*m, r.address.clone())),
            _ => None,
        })
        .collect();
    // The answer about a follow-up case is its acknowledgement.
    let follow_ups: Vec<(Option<CaseId>, Address)> = planned
        .iter()
        .filter_map(|(i, r)| match &events[*i] {
            Event::Notice { notice: Notice::FollowUpOpened { .. }, case, .. } => Some((*case, r.address.clone())),
            _ => None,
        })
        .collect();
    // Whoever the mail itself was addressed to (To, Cc) already has its words.
    let copied: Vec<&Address> =
        facts.trigger.map(|m| m.to.iter().chain(&m.cc).map(|mb| &mb.address).collect()).unwrap_or_default();
    planned.retain(|(i, r)| match &events[*i] {
        Event::Replied { message, .. } => {
            !shown_with_status.contains(&(*message, r.address.clone())) && !copied.contains(&&r.address)
        }
        Event::Created { case, .. } => !follow_ups.contains(&(Some(*case), r.address.clone())),
        _ => true,
    });

    let mut kept = Vec::with_capacity(planned.len());
    for (index, r) in planned {
        if let Some(why) = facts.withheld_answer(&r.address) {
            tracing::info!(to = %r.address, event = r.rule.template, reason = %why, "Automatic answer not sent");
            continue;
        }
        if r.rule.on == On::NotApplied {
            let since = crate::store::stamp(facts.now - ChronoDuration::hours(NOT_APPLIED_EVERY_HOURS));
            if outbox::not_applied_answered_since(conn, &r.address, case_of(&events[index]), &since)? {
                tracing::info!(to = %r.address, "Already answered today that a mail could not be applied; not again");
                continue;
            }
        }
        kept.push((index, r));
    }
    Ok(kept)
}

/// The case an event is about (`None` for an answer about no case).
fn case_of(event: &Event) -> Option<CaseId> {
    match event.case() {
        0 => None,
        c => Some(c),
    }
}

/// Who caused the event: the author of a reply, who acted, or who opened the case.
fn actor_of(event: &Event, participants: &[(Address, ParticipantRole)]) -> Option<Address> {
    match event {
        Event::Created { .. } => {
            participants.iter().find(|(_, r)| *r == ParticipantRole::Requester).map(|(a, _)| a.clone())
        }
        Event::Replied { from, .. } => from.clone(),
        Event::WatcherAdded { by, .. } | Event::StatusChanged { by, .. } | Event::FieldChanged { by, .. } => by.clone(),
        Event::WatcherRemoved { .. }
        | Event::Notice { .. }
        | Event::SurveyOffered { .. }
        | Event::Bounced { .. }
        | Event::ClosingSoon { .. } => None,
    }
}

/// What a queued notification is rendered from when it is sent: the event, whom it is
/// for, and what only the moment of queueing knows (the triggering mail's names, subject
/// and Message-ID). Stored as JSON with the outbox row.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Spec {
    event: Event,
    template: String,
    role: String,
    /// The triggering mail's author and the display name they wrote.
    author: Option<(Address, String)>,
    /// The subject of the mail being answered.
    your_subject: Option<String>,
    answer: bool,
    in_reply_to: Option<String>,
    references: Vec<String>,
}

/// Whom one notification is for, and which template it uses.
struct Target<'a> {
    template: &'static str,
    role: &'static str,
    address: &'a Address,
}

/// Queues one notification: its Message-ID now (so that replies route back at once), the
/// mail itself, subject included, rendered from the spec when it is sent. Returns the
/// Message-ID.
fn write_one(facts: &mut Facts<'_>, event: &Event, r: &Recipient, held_back: Option<&str>) -> anyhow::Result<String> {
    let (conn, config) = (facts.conn, facts.config);
    let case = case_of(event);
    let token = case.map(|c| config.case_token(c));
    let answer = facts.is_trigger_sender(&r.address);
    let (references, in_reply_to) = facts.threading(event, answer)?;
    let message_id = compose::new_message_id(token.as_deref(), facts.support.domain());

    // The survey waits `survey.delay` after the closing.
    let not_before = match event {
        Event::SurveyOffered { .. } => {
            let delay = ChronoDuration::from_std(config.survey.delay).unwrap_or_else(|_| ChronoDuration::zero());
            Some(crate::store::stamp(facts.now + delay))
        }
        _ => None,
    };
    let spec = Spec {
        event: event.clone(),
        template: r.rule.template.to_string(),
        role: r.via.role().to_string(),
        author: facts.author.clone(),
        your_subject: facts.your_subject.clone(),
        answer,
        in_reply_to,
        references,
    };
    let spec = serde_json::to_string(&spec)?;
    let row = NewNotification {
        case,
        event: r.rule.template,
        to: &r.address,
        subject: "",
        message_id: &message_id,
        payload: None,
        spec: Some(&spec),
        error: None,
        not_before: not_before.as_deref(),
        held_back,
    };
    // The row's Message-ID routes replies to the case (`case_store::case_for_message_id`).
    let id = outbox::insert(conn, &row, &facts.now_text)?;
    // Debug: every mail causes one or more; the send logs `Notification sent` at info.
    tracing::debug!(
        id,
        case = token.as_deref().unwrap_or("-"),
        to = %r.address,
        event = r.rule.template,
        message_id = %message_id,
        "Notification queued"
    );
    Ok(message_id)
}

/// Renders and composes queued notifications from their specs (when they are first
/// sent). One renderer serves a whole claimed chunk, so the case, its people and its
/// thread are read once for all the chunk's recipients.
pub(crate) struct Renderer<'a> {
    facts: Facts<'a>,
    templates: std::sync::Arc<Templates>,
    /// The link secret, when personal links can be made (see [`check_templates`]); read
    /// when the first mail is made (`outbox list` renders only subjects).
    secret: std::cell::OnceCell<Option<Vec<u8>>>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(conn: Db<'a>, config: &'a Config) -> Result<Renderer<'a>, String> {
        let templates = Templates::cached(config).map_err(|e| format!("templates: {e}"))?;
        let facts = Facts::new(conn, config, None).map_err(|e| e.to_string())?;
        Ok(Renderer { facts, templates, secret: std::cell::OnceCell::new() })
    }

    /// The link secret, if links can be made. Checked at start-up; should it fail to be
    /// read now, mails go without links rather than not at all.
    fn secret(&self) -> Option<&[u8]> {
        let config = self.facts.config;
        self.secret
            .get_or_init(|| {
                let read = crate::links::configured(config).then(|| crate::links::secret(config)).transpose();
                read.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "Notifications go without personal links: the link secret cannot be read");
                    None
                })
            })
            .as_deref()
    }

    /// One notification: its subject line and the whole mail. `Err` says why it cannot be
    /// built (the row is then failed).
    pub(crate) fn render(&mut self, to: &Address, message_id: &str, spec: &str) -> Result<(String, Vec<u8>), String> {
        let (spec, mut view) = self.view(to, spec, true)?;
        let subject = self.subject_of(&spec, &view)?;
        let facts = &self.facts;
        let carried =
            personal::personalize(facts.conn, facts.config, self.secret(), &mut view, to, message_id, Utc::now())
                .map_err(|e| format!("cannot read the files of the notification: {e}"))?;
        let parts = self.templates.render(&view).map_err(|e| format!("template {}: {e}", spec.template))?;
        let unsubscribe = (view.recipient.is_watcher && !view.links.unwatch.is_empty()).then_some(&view.links.unwatch);
        let facts = &self.facts;
        let mail = compose::build(compose::Outgoing {
            from: &facts.from,
            reply_to: &facts.reply_to,
            to,
            subject: &subject,
            message_id,
            in_reply_to: spec.in_reply_to.as_deref(),
            references: &spec.references,
            auto_submitted: if spec.answer { "auto-replied" } else { "auto-generated" },
            instance_id: &facts.config.instance_id,
            list_unsubscribe: unsubscribe.map(String::as_str),
            text: parts.text,
            html: parts.html,
            inline: &carried.inline,
            attached: &carried.attached,
        })?;
        Ok((subject, mail))
    }

    /// Only the subject line a notification not sent yet will have (for `outbox list`).
    pub(crate) fn subject(&mut self, to: &Address, spec: &str) -> Result<String, String> {
        let (spec, view) = self.view(to, spec, false)?;
        self.subject_of(&spec, &view)
    }

    /// The stored spec, read, and the view its templates are rendered from (`whole`: with
    /// the description and the thread entry, which only bodies show).
    fn view(&mut self, to: &Address, spec: &str, whole: bool) -> Result<(Spec, View), String> {
        let spec: Spec = serde_json::from_str(spec).map_err(|e| format!("stored notification is unreadable: {e}"))?;
        let role = ["requester", "contact", "watcher", "staff", "sender"]
            .into_iter()
            .find(|r| *r == spec.role)
            .ok_or_else(|| format!("unknown recipient role {:?}", spec.role))?;
        let template = recipients::RULES
            .iter()
            .map(|r| r.template)
            .find(|t| *t == spec.template)
            .ok_or_else(|| format!("unknown notification kind {:?}", spec.template))?;
        let facts = &mut self.facts;
        facts.author = spec.author.clone();
        facts.your_subject = spec.your_subject.clone();
        let view = facts
            .view(&spec.event, &Target { template, role, address: to }, whole)
            .map_err(|e| format!("notification {template}: {e}"))?;
        Ok((spec, view))
    }

    /// The subject line: the rendered template behind the case token.
    fn subject_of(&self, spec: &Spec, view: &View) -> Result<String, String> {
        let line =
            self.templates.render_subject(view).map_err(|e| format!("template {} (subject): {e}", spec.template))?;
        Ok(match case_of(&spec.event) {
            Some(c) => compose::subject_line(&format!("[{}] {line}", self.facts.config.case_token(c))),
            None => compose::subject_line(&line),
        })
    }
}

/// The support mailbox outgoing mail is from (`smtp.from`, else the first system address).
fn support_mailbox(config: &Config) -> anyhow::Result<lettre::message::Mailbox> {
    let from = config.from_header();
    from.parse().map_err(|e| anyhow::anyhow!("smtp.from {from:?} is not a usable From address: {e}"))
}

/// What the notifications of one `enqueue` call need to know, read once.
struct Facts<'a> {
    conn: Db<'a>,
    config: &'a Config,
    trigger: Option<&'a InboundMail>,
    /// Why automatic answers to the trigger's sender are withheld, if they are.
    no_answers: Option<String>,
    now: chrono::DateTime<Utc>,
    now_text: String,
    from: lettre::message::Mailbox,
    reply_to: lettre::message::Mailbox,
    /// Where replies and the `mailto:` links go.
    support: Address,
    participants: HashMap<CaseId, Vec<(Address, ParticipantRole)>>,
    /// Case rows read ahead ([`Facts::preload`]), until their view is made.
    rows: HashMap<CaseId, case_store::CaseRow>,
    cases: HashMap<CaseId, CaseView>,
    /// Per case: the inbound Message-IDs for References (the same for every recipient).
    threads: HashMap<CaseId, Vec<String>>,
    /// Thread entries by id (one event's entry is shown to each of its recipients).
    messages: HashMap<i64, Option<case_store::MessageEntry>>,
    /// The triggering mail's author and their display name, if it gave one.
    author: Option<(Address, String)>,
    /// The subject of the triggering mail.
    your_subject: Option<String>,
}

impl<'a> Facts<'a> {
    fn new(conn: Db<'a>, config: &'a Config, trigger: Option<Trigger<'a>>) -> anyhow::Result<Facts<'a>> {
        let no_answers = trigger.and_then(|t| t.no_answers).map(str::to_string);
        let trigger = trigger.map(|t| t.mail);
        let from = support_mailbox(config)?;
        // Replies must reach a system address even when From is, say, a no-reply address.
        let from_address = Address::parse(from.email.as_ref());
        let support = match from_address {
            Some(a) if config.is_system_address(&a) => a,
            _ => config.system_addresses[0].clone(),
        };
        let reply_to = lettre::message::Mailbox::new(
            from.name.clone(),
            support.as_str().parse().map_err(|e| anyhow::anyhow!("system address {support}: {e}"))?,
        );
        let now = Utc::now();
        Ok(Facts {
            conn,
            config,
            trigger,
            no_answers,
            now,
            now_text: crate::store::stamp(now),
            from,
            reply_to,
            support,
            participants: HashMap::new(),
            rows: HashMap::new(),
            cases: HashMap::new(),
            threads: HashMap::new(),
            messages: HashMap::new(),
            author: trigger.and_then(|m| m.from.as_ref()).and_then(|mb| {
                let name = crate::parse::one_line(mb.name.as_deref()?);
                (!name.is_empty()).then(|| (mb.address.clone(), name))
            }),
            your_subject: trigger.map(|m| crate::parse::one_line(&m.subject)).filter(|s| !s.is_empty()),
        })
    }

    /// Reads what the notifications about `events` show of their cases — each case's
    /// row, participants and thread — at once (one round trip a case on PostgreSQL),
    /// rather than piece by piece as they are needed.
    fn preload(&mut self, events: &[Event]) -> DbResult<()> {
        for case in events.iter().filter_map(case_of) {
            if self.participants.contains_key(&case) {
                continue;
            }
            if let Some(found) = case_store::case_for_mail(self.conn, case, REFERENCES_RECENT)? {
                self.participants.insert(case, found.participants);
                self.threads.insert(case, found.thread);
                self.rows.insert(case, found.row);
            }
        }
        Ok(())
    }

    fn participants(&mut self, case: CaseId) -> DbResult<&[(Address, ParticipantRole)]> {
        if !self.participants.contains_key(&case) {
            let people = case_store::participants(self.conn, case)?;
            self.participants.insert(case, people);
        }
        Ok(&self.participants[&case])
    }

    fn is_trigger_sender(&self, address: &Address) -> bool {
        self.trigger.and_then(InboundMail::from_address) == Some(address)
    }

    /// Why a mail to `address` may not be sent, when it would answer the trigger's
    /// author and their mail asks for no automatic answers (RFC 3834).
    fn withheld_answer(&self, address: &Address) -> Option<&str> {
        self.no_answers.as_deref().filter(|_| self.is_trigger_sender(address))
    }

    fn case_view(&mut self, case: CaseId) -> anyhow::Result<CaseView> {
        if let Some(v) = self.cases.get(&case) {
            return Ok(v.clone());
        }
        let row = match self.rows.remove(&case) {
            Some(row) => row,
            None => case_store::case_row(self.conn, case)?
                .ok_or_else(|| anyhow::anyhow!("event for case {case}, which does not exist"))?,
        };
        let people = self.participants(case)?;
        let first = |role| people.iter().find(|(_, r)| *r == role).map(|(a, _)| a.to_string());
        let (requester, contact) = (first(ParticipantRole::Requester), first(ParticipantRole::Contact));
        let view = CaseView {
            token: self.config.case_token(case),
            number: case,
            subject: display_subject(self.config, &row.subject),
            status: row.status.to_string(),
            impact: row.impact.to_string(),
            account: row.account,
            environment: row.environment,
            // Loaded by `view` when a whole mail is rendered; a subject does not need it.
            description: String::new(),
            requester,
            contact,
            opened_at: pretty_time(&row.created_at),
            updated_at: pretty_time(&row.updated_at),
            follows_up: row.linked_case.map(|c| self.config.case_token(c)),
        };
        self.cases.insert(case, view.clone());
        Ok(view)
    }

    fn message(&mut self, id: i64) -> DbResult<Option<case_store::MessageEntry>> {
        if !self.messages.contains_key(&id) {
            let entry = case_store::message_entry(self.conn, id)?;
            self.messages.insert(id, entry);
        }
        Ok(self.messages[&id].clone())
    }

    /// Who someone is, with their display name when the trigger mail gave one.
    fn person(&self, address: &Address) -> Person {
        let name = self.author.as_ref().filter(|(a, _)| a == address).map(|(_, n)| n.clone());
        Person { address: address.to_string(), name: name.unwrap_or_else(|| address.to_string()) }
    }

    /// The template data for one notification. `whole` is false when only the subject is
    /// rendered (at queueing time): the description, the thread entry, the case list and
    /// the links are then left empty.
    /// Who `r` is to the case whose people are `people`.
    fn recipient_view(&self, r: &Target<'_>, people: &[(Address, ParticipantRole)]) -> RecipientView {
        let holds = |role| people.iter().any(|(a, rl)| a == r.address && *rl == role);
        let is_staff = self.config.is_staff(r.address) || self.config.notify.staff_recipients.contains(r.address);
        let is_watcher = holds(ParticipantRole::Watcher);
        let can_decide = holds(ParticipantRole::Requester) || holds(ParticipantRole::Contact);
        RecipientView {
            address: r.address.to_string(),
            role: r.role,
            is_staff,
            is_watcher,
            can_decide,
            can_add: is_staff || is_watcher || can_decide,
        }
    }

    fn view(&mut self, event: &Event, r: &Target<'_>, whole: bool) -> anyhow::Result<View> {
        let case = case_of(event);
        let mut case_view = match case {
            Some(c) => Some(self.case_view(c)?),
            None => None,
        };
        if let (true, Some(c), Some(v)) = (whole, case, case_view.as_mut()) {
            v.description = case_store::description(self.conn, c)?.unwrap_or_default();
        }
        let people = match case {
            Some(c) => self.participants(c)?.to_vec(),
            None => Vec::new(),
        };
        let recipient = self.recipient_view(r, &people);
        let actor = actor_of(event, &people).map(|a| self.person(&a));
        let message_id = match event {
            Event::Created { message, .. } | Event::Replied { message, .. } | Event::Bounced { message, .. } => {
                Some(*message)
            }
            Event::StatusChanged { message, .. } => *message,
            _ => None,
        };
        let message = match message_id.filter(|_| whole) {
            Some(id) => self
                .message(id)?
                // An internal note can ride along with a public event (a note on a New
                // case picks it up): its words are for staff only, whatever the event.
                .filter(|m| m.kind != MessageKind::Note || recipient.is_staff)
                .map(|m| MessageView {
                    from: m.from,
                    kind: m.kind.to_string(),
                    body: m.body,
                    attachments: m.attachments,
                    // Chosen for the recipient when the mail is made (`personal`).
                    files: Vec::new(),
                    entry: Some(id),
                }),
            None => None,
        };
        let change = match event {
            Event::StatusChanged { from, to, .. } => Some(Change { from: from.to_string(), to: to.to_string() }),
            _ => None,
        };
        let field = match event {
            Event::FieldChanged { field, value, .. } => {
                Some(FieldView { name: field.to_string(), value: value.clone() })
            }
            _ => None,
        };
        let notice = match event {
            Event::Notice { notice, .. } => Some(self.notice_view(notice)),
            _ => None,
        };
        // Someone whose mail could not be applied may not be a participant: they learn
        // the case's number (they wrote to it) and nothing else about it.
        if let (Some(c), Event::Notice { notice: Notice::NotApplied { .. }, .. }) = (&mut case_view, event) {
            *c = CaseView { token: c.token.clone(), number: c.number, ..CaseView::default() };
        }
        let cases = match event {
            Event::Notice { notice: Notice::CaseList, to, .. } if whole => self.case_lines(to)?,
            _ => Vec::new(),
        };
        let links = if whole { self.links(case_view.as_ref()) } else { Links::default() };
        let survey = match event {
            Event::SurveyOffered { url, .. } => Some(templates::SurveyView { url: url.clone() }),
            _ => None,
        };
        let closing = match event {
            Event::ClosingSoon { closes_at, .. } => Some(closing_view(closes_at)),
            _ => None,
        };
        Ok(View {
            kind: r.template,
            support: Support {
                address: self.support.to_string(),
                name: self.from.name.clone().unwrap_or_else(|| "Support".into()),
            },
            recipient,
            case: case_view,
            actor,
            message,
            change,
            field,
            notice,
            cases,
            links,
            survey,
            closing,
        })
    }

    /// What a direct answer says, for its template.
    fn notice_view(&self, notice: &Notice) -> NoticeView {
        let mut view = NoticeView { your_subject: self.your_subject.clone(), ..NoticeView::default() };
        match notice {
            Notice::NotApplied { reason } => {
                view.explanation = Some(explain(*reason, self.config));
                view.reason = Some(reason.to_string());
            }
            Notice::FollowUpOpened { closed } => view.closed = Some(self.config.case_token(*closed)),
            Notice::CommandRefused { command, problem } => {
                view.command = Some(crate::parse::one_line(command));
                view.problem = Some(problem.clone());
            }
            Notice::ReasonRequired | Notice::CaseList => {}
        }
        view
    }

    /// The cases `to` takes part in, for the answer to "cases".
    fn case_lines(&self, to: &Address) -> DbResult<Vec<CaseLine>> {
        Ok(case_store::cases_of(self.conn, to, CASE_LIST_MAX)?
            .into_iter()
            .map(|c| CaseLine {
                token: self.config.case_token(c.case),
                subject: display_subject(self.config, &c.subject),
                status: c.status.to_string(),
                role: c.role.to_string(),
                updated_at: pretty_time(&c.updated_at),
                page: String::new(),
            })
            .collect())
    }

    fn links(&self, case: Option<&CaseView>) -> Links {
        let to = &self.support;
        let cases = compose::mailto(to, "#cases", "");
        let Some(case) = case else {
            return Links { cases, ..Links::default() };
        };
        let token = &case.token;
        let reply_subject =
            if case.subject.is_empty() { format!("Re: [{token}]") } else { format!("Re: [{token}] {}", case.subject) };
        Links {
            reply: compose::mailto(to, &reply_subject, ""),
            accept: compose::mailto(to, &format!("Re: [{token}] #accept"), "Thank you, the solution works."),
            reject: compose::mailto(to, &format!("Re: [{token}] #reject"), "The solution does not work because: "),
            unwatch: compose::mailto(to, &format!("Re: [{token}] #unwatch"), ""),
            cases,
            // Personal: filled in for each recipient when the mail is made (`personal`).
            ..Links::default()
        }
    }

    /// References (the case thread's inbound mail) and In-Reply-To (the mail that caused
    /// this, else the newest one) for a notification about `event`.
    fn threading(&mut self, event: &Event, answer: bool) -> anyhow::Result<(Vec<String>, Option<String>)> {
        let trigger_id = self.trigger.and_then(|m| m.message_id.clone());
        let answered = match event {
            Event::Notice { in_reply_to, .. } => in_reply_to.clone().or(trigger_id.clone()),
            _ => trigger_id.clone().filter(|_| answer),
        };
        // An answer to a mail that did not reach the case, or about no case, threads
        // with that mail only: its author may not know the case's thread.
        let private = matches!(
            event,
            Event::Notice { notice: Notice::NotApplied { .. } | Notice::CaseList, .. }
                | Event::Notice { case: None, .. }
        );
        let mut refs = match case_of(event) {
            Some(c) if !private => {
                if !self.threads.contains_key(&c) {
                    let ids = crate::store::thread::inbound_thread_ids(self.conn, c, REFERENCES_RECENT)?;
                    self.threads.insert(c, ids);
                }
                self.threads[&c].clone()
            }
            _ => Vec::new(),
        };
        if let Some(id) = &answered {
            if !refs.contains(id) {
                refs.push(id.clone());
            }
        }
        let parent = match (&answered, &trigger_id) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(id)) if refs.contains(id) => Some(id.clone()),
            _ => refs.last().cloned(),
        };
        Ok((refs, parent))
    }
}

/// The case subject as notifications show it: without reply prefixes or stray tokens
/// (ours goes in front), on one line.
pub(crate) fn display_subject(config: &Config, subject: &str) -> String {
    let clean = config.tokens.clean_subject(subject);
    let clean = crate::parse::one_line(&clean);
    if clean.is_empty() {
        "(no subject)".into()
    } else {
        clean
    }
}

/// When a case closes itself, for the reminder: the day in words and the exact time.
fn closing_view(closes_at: &str) -> templates::ClosingView {
    let on = chrono::DateTime::parse_from_rfc3339(closes_at)
        .map(|t| t.with_timezone(&Utc).format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| closes_at.to_string());
    templates::ClosingView { on, at: pretty_time(closes_at) }
}

/// `2026-01-02T10:00:00.000Z` → `2026-01-02 10:00 UTC`.
fn pretty_time(stored: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(stored)
        .map(|t| t.with_timezone(&Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| stored.to_string())
}

/// A quarantine reason in words, for the sender.
fn explain(reason: Reason, config: &Config) -> String {
    match reason {
        Reason::SenderNotParticipant => "you do not take part in this case. Ask its requester to add you as a watcher \
             (#watch your@address), or write a new mail without the case number to open a case of your own."
            .into(),
        Reason::TooLarge => format!(
            "it is larger than the {} we accept. Please send large files as a link.",
            human_size(config.max_message_bytes)
        ),
        Reason::Unparseable => "its format could not be read. Please send it again as a plain mail.".into(),
        Reason::AccountNotAllowed => "it names an account you may not open cases for.".into(),
        Reason::BadField => "one of its field lines (Contact:, Account:, Impact:) could not be used.".into(),
        Reason::InternalError => "of a problem on our side. Our team has been told; you need not do anything.".into(),
        Reason::NoSender | Reason::UnauthenticatedStaff | Reason::Spam | Reason::DmarcFail => {
            "it could not be processed automatically. Our team has been told.".into()
        }
    }
}

/// A size limit in the unit people use for mail: "25 MB", "512 KB" (rounded down, so the
/// limit is never overstated).
fn human_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    if bytes >= KIB * KIB {
        format!("{} MB", bytes / (KIB * KIB))
    } else if bytes >= KIB {
        format!("{} KB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
