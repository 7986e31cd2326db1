//! Opening a case from a mail: whom it is for and which fields it starts with — normally
//! the sender's own; for staff and admins, on a customer's behalf (from a forwarded mail,
//! whose sender becomes the contact, or a `Contact:` line) — then its participants, its
//! first thread entry, watchers from To/Cc, and the audit record.

use std::borrow::Cow;

use super::request::{People, Watchers};
use super::{CaseRef, Effect, Entry, NewCase, Plan};
use crate::address::Address;
use crate::authorize;
use crate::case::{AuditAction, CaseId, Event, Impact, MessageKind, Notice, Outcome, ParticipantRole, Reason};
use crate::config::Config;
use crate::fields;
use crate::parse::forward::{self, ForwardStyle, Forwarded};
use crate::parse::{self, Attachment, InboundMail};
use crate::prepare::Analyzed;

/// The closed case a new case follows up, and what it carries over.
#[derive(Debug)]
pub(super) struct FollowUp {
    pub(super) closed: CaseId,
    pub(super) contact: Option<Address>,
    pub(super) account: Option<String>,
    /// The new text of the mail: the follow-up's opening entry, not the quoted old thread.
    pub(super) description: String,
}

/// Who a new case is for and the fields it starts with.
struct Shape {
    subject: String,
    contact: Address,
    /// The sender is (authenticated) staff or an admin.
    staff_side: bool,
    account: Option<String>,
    impact: Option<Impact>,
    environment: Option<String>,
    /// The customer's mail an admin or analyst forwarded.
    forwarded: Option<Forwarded>,
}

/// A field the sender may not set as they asked: the mail is quarantined and they are told.
struct Refused {
    reason: Reason,
    field: String,
    problem: String,
}

/// Plans a new case for `analyzed` from `sender`. `note` says why it is new although the
/// mail pointed at a case; `follows` names the closed case it follows up.
pub(super) fn plan<'m>(
    config: &Config,
    analyzed: &'m Analyzed,
    sender: &Address,
    note: Option<String>,
    follows: Option<FollowUp>,
    origin_account: Option<&str>,
) -> Plan<'m> {
    let mail = &analyzed.mail;
    let linked = follows.as_ref().map(|f| f.closed);
    let shape = match shape(config, mail, sender, analyzed.authenticated, follows.as_ref()) {
        Ok(shape) => shape,
        Err(refused) => return refused_plan(mail, refused),
    };
    let on_behalf = shape.contact != *sender;
    let mut plan = Plan::new(Outcome::Created, Some(CaseRef::New), note.clone());
    let subject = if shape.subject.trim().is_empty() { "(no subject)".to_string() } else { shape.subject.clone() };
    plan.effects.push(Effect::OpenCase(NewCase {
        subject,
        impact: shape.impact.unwrap_or(Impact::Medium),
        account: shape.account.clone().or_else(|| origin_account.map(str::to_string)),
        environment: shape.environment.clone(),
        linked_case: linked,
        opening_gist: analyzed.gist.key.as_deref().map(|key| crate::classify::opening_key(key, sender.as_str())),
    }));
    let via = match (&shape.forwarded, on_behalf) {
        (Some(_), _) => "forward",
        (None, true) => "contact-line",
        (None, false) => "sender",
    };
    let new = CaseRef::New;
    let participant = |address: &Address, role, via, by: Option<&Address>| Effect::AddParticipant {
        case: new,
        address: address.clone(),
        role,
        via,
        by: by.cloned(),
    };
    plan.effects.push(participant(sender, ParticipantRole::Requester, "sender", None));
    plan.effects.push(participant(&shape.contact, ParticipantRole::Contact, via, Some(sender)));
    let people = vec![(sender.clone(), ParticipantRole::Requester), (shape.contact.clone(), ParticipantRole::Contact)];

    let copied = first_entries(&mut plan, mail, sender, &shape, follows.map(|f| f.description));
    if let Some(closed) = linked {
        plan.notice(mail, Some(new), Notice::FollowUpOpened { closed });
    }
    // The original's author still follows the case when a Contact: line named someone else.
    let author = shape.forwarded.as_ref().and_then(|f| f.from.as_ref()).map(|m| m.address.clone());
    let via = if shape.forwarded.is_some() { "forward" } else { "cc" };
    let mut watchers = Watchers::new(config);
    let mut people = People::new(people);
    for who in author.into_iter().chain(copied) {
        if who != shape.contact {
            watchers.add(&mut plan, &mut people, new, &who, sender, via);
        }
    }
    watchers.finish(&mut plan, new, sender);
    let mut detail = format!("opened by {sender}");
    if on_behalf {
        detail.push_str(&format!(" for {}", shape.contact));
    }
    if let Some(n) = &note {
        detail.push_str(&format!("; {n}"));
    }
    plan.audit(Some(new), Some(sender), AuditAction::CaseCreated, Some(detail));
    plan
}

/// The case's first thread entry — the customer's words, from the original when forwarded
/// — and, for a forward, what the forwarder wrote above it as an internal note. Returns
/// whom the words were addressed to (they become watchers).
fn first_entries<'m>(
    plan: &mut Plan<'m>,
    mail: &'m InboundMail,
    sender: &Address,
    shape: &Shape,
    description: Option<String>,
) -> Vec<Address> {
    let new = CaseRef::New;
    let (entry, copied) = match &shape.forwarded {
        Some(f) => {
            let attached = (f.style == ForwardStyle::Attached).then(|| mail.attached_messages.first()).flatten();
            let attachments: &'m [Attachment] = attached.map_or(mail.attachments.as_slice(), |m| &m.attachments);
            // The original's author wrote these words (usually also the contact).
            let from = f.from.as_ref().map_or(&shape.contact, |m| &m.address).clone();
            let entry = Entry {
                case: new,
                kind: MessageKind::Customer,
                from: Some(from),
                body: Cow::Owned(f.body.clone()),
                message_id: mail.message_id.as_deref(),
                attachments,
            };
            (entry, f.to.iter().chain(&f.cc).map(|m| m.address.clone()).collect())
        }
        None => {
            let body = match description {
                Some(d) => Cow::Owned(d),
                None => Cow::Borrowed(mail.text.as_str()),
            };
            let entry = Entry {
                case: new,
                kind: if shape.staff_side { MessageKind::Staff } else { MessageKind::Customer },
                from: Some(sender.clone()),
                body,
                message_id: mail.message_id.as_deref(),
                attachments: &mail.attachments,
            };
            (entry, mail.to.iter().chain(&mail.cc).map(|m| m.address.clone()).collect::<Vec<_>>())
        }
    };
    let first = plan.entry(entry);
    plan.announce(Event::Created { case: new, message: first });
    if let Some(f) = &shape.forwarded {
        // What the forwarder wrote above the forwarded part stays internal.
        let preamble = strip_field_lines(&f.preamble);
        if !preamble.is_empty() {
            let from = Some(sender.clone());
            let body = Cow::Owned(preamble);
            plan.entry(Entry { case: new, kind: MessageKind::Note, from, body, message_id: None, attachments: &[] });
        }
    }
    copied
}

/// A mail that cannot open a case as asked: quarantined, and its sender told which field.
fn refused_plan<'m>(mail: &InboundMail, refused: Refused) -> Plan<'m> {
    let Refused { reason, field, problem } = refused;
    let detail = format!("{field}: {problem}");
    let mut plan = Plan::new(Outcome::Quarantined, None, Some(format!("{reason}: {detail}")));
    plan.notice(mail, None, Notice::CommandRefused { command: field, problem });
    plan.effects.push(Effect::Quarantine { reason, detail: detail.clone() });
    plan.audit(None, None, AuditAction::Quarantined, Some(format!("{reason}: {detail}")));
    plan
}

/// Works out who a new case is for and which fields it gets. `Account:` lines are checked
/// against what the sender may use.
fn shape(
    config: &Config,
    mail: &InboundMail,
    sender: &Address,
    authenticated: bool,
    follows: Option<&FollowUp>,
) -> Result<Shape, Refused> {
    let (staff, admin) = authorize::privileges(config, sender, authenticated);
    let staff_side = staff || admin;
    let forwarded = if staff_side && follows.is_none() { forward::find_forwarded(mail) } else { None };
    // Field lines are read from what the sender wrote: above a forwarded part, or the text.
    let field_text = forwarded.as_ref().map_or(mail.text.as_str(), |f| f.preamble.as_str());
    let contact = contact(config, sender, staff_side, field_text, forwarded.as_ref(), follows)?;
    let account = account(config, sender, &contact, staff_side, field_text, follows)?;
    // A follow-up of a closed case must not carry the old token (replies would go there);
    // a forwarded mail is about the original's subject.
    let subject = match forwarded.as_ref() {
        Some(f) => f.subject.clone().unwrap_or_else(|| config.tokens.clean_subject(&mail.subject)),
        None if follows.is_some() => config.tokens.clean_subject(&mail.subject),
        None => mail.subject.clone(),
    };
    Ok(Shape {
        subject,
        contact,
        staff_side,
        account,
        impact: fields::impact_of(mail, field_text),
        environment: fields::environment_of(field_text),
        forwarded,
    })
}

/// Whom the case is for: a `Contact:` line written by staff wins; then the sender of a
/// forwarded mail; for staff following up a closed case, that case's contact; else the
/// sender. Never a support address.
fn contact(
    config: &Config,
    sender: &Address,
    staff_side: bool,
    field_text: &str,
    forwarded: Option<&Forwarded>,
    follows: Option<&FollowUp>,
) -> Result<Address, Refused> {
    let contact_line = if staff_side { fields::labelled_line(field_text, "contact") } else { None };
    let contact = if let Some(line) = contact_line {
        Address::parse(line.split_whitespace().last().unwrap_or_default()).ok_or_else(|| Refused {
            reason: Reason::BadField,
            field: format!("Contact: {line}"),
            problem: "the Contact: line must hold one email address".into(),
        })?
    } else if let Some(original) = forwarded.and_then(|f| f.from.as_ref()) {
        original.address.clone()
    } else if let (true, Some(previous)) = (staff_side, follows.and_then(|f| f.contact.clone())) {
        previous
    } else {
        sender.clone()
    };
    if config.is_system_address(&contact) {
        return Err(Refused {
            reason: Reason::BadField,
            field: format!("Contact: {contact}"),
            problem: "a support address cannot be the contact of a case".into(),
        });
    }
    Ok(contact)
}

/// The account: an `Account:` line the sender may use, else the contact's or the sender's
/// domain, else the closed case's.
fn account(
    config: &Config,
    sender: &Address,
    contact: &Address,
    staff_side: bool,
    field_text: &str,
    follows: Option<&FollowUp>,
) -> Result<Option<String>, Refused> {
    let Some(name) = fields::labelled_line(field_text, "account") else {
        return Ok(config
            .account_for(contact)
            .or_else(|| config.account_for(sender))
            .map(str::to_string)
            .or_else(|| follows.and_then(|f| f.account.clone())));
    };
    let allowed = config.accounts_of(sender);
    match config.known_account(name) {
        Some(known) if staff_side || allowed.contains(&known) => Ok(Some(known.to_string())),
        _ => {
            let yours = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
            Err(Refused {
                reason: Reason::AccountNotAllowed,
                field: format!("Account: {name}"),
                problem: format!("you may not open cases for the account {name:?}; your accounts: {yours}"),
            })
        }
    }
}

/// The forwarder's text without the `Impact:`/`Account:`/`Environment:`/`Contact:` lines
/// that set fields.
fn strip_field_lines(text: &str) -> String {
    let is_field = |l: &str| {
        let l = l.trim().trim_start_matches(['*', '_']).to_ascii_lowercase();
        ["impact:", "account:", "environment:", "contact:"].iter().any(|p| l.starts_with(p))
    };
    parse::normalise_text(&text.lines().filter(|l| !is_field(l)).collect::<Vec<_>>().join("\n"))
}
