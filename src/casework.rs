//! Carrying out actions on an existing case — from a mail or from the analyst CLI, by the
//! same code: check every action with [`workflow::decide`], then either apply all of them
//! or none (an unknown or refused command changes nothing), recording thread entries,
//! status and field changes, watchers, audit rows and the events that notify people.

use anyhow::Context as _;
use rusqlite::Connection;

use crate::address::Address;
use crate::authorize::Standing;
use crate::case::{CaseId, Event, MessageKind, ParticipantRole, Status};
use crate::config::Config;
use crate::parse::Attachment;
use crate::store::cases::{self as case_store, AttachmentView, CaseRow, NewMessage};
use crate::store::mails;
use crate::store::BlobSink;
use crate::workflow::{self, Action, Refusal};

/// What someone asks for on a case.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub actions: Vec<Action>,
    /// Text for the thread (a reply, a note, a solution, a reason); may be empty.
    pub text: &'a str,
    /// The journal row and Message-ID of the mail carrying the request, if any.
    pub mail_id: Option<i64>,
    pub message_id: Option<&'a str>,
    pub attachments: &'a [Attachment],
    /// Addresses from To/Cc who become watchers if the sender may add watchers.
    pub copied: Vec<Address>,
    /// How the entry was written: "mail" or "cli" (for the audit log).
    pub channel: &'static str,
}

/// The result of a request that was carried out.
#[derive(Debug, Clone, Default)]
pub struct Done {
    pub events: Vec<Event>,
    /// The thread entry written for the request's text, if any.
    pub message: Option<i64>,
    /// Command words that took effect, for the report.
    pub applied: Vec<&'static str>,
}

/// Carries out a request by `actor` (whose standing on the case is `standing`), or
/// refuses all of it. `Ok(Err(refusals))` means nothing was changed.
#[allow(clippy::too_many_arguments)]
pub fn act(
    conn: &Connection,
    config: &Config,
    blobs: &dyn BlobSink,
    case: &CaseRow,
    actor: &Address,
    standing: &Standing,
    req: &Request<'_>,
    now: &str,
) -> anyhow::Result<Result<Done, Vec<(String, Refusal)>>> {
    let note = req.actions.contains(&Action::Note);
    let has_text = !req.text.trim().is_empty() || !req.attachments.is_empty();
    // The thread entry itself is an action too (a reply or a note), checked like the rest.
    let mut checks: Vec<Action> = Vec::new();
    if has_text && !note {
        checks.push(Action::Reply);
    }
    checks.extend(req.actions.iter().cloned());

    let mut status = case.status;
    let mut refusals = Vec::new();
    for action in &checks {
        match workflow::decide(status, action, actor, standing) {
            Ok(effect) => status = effect.status.unwrap_or(status),
            Err(refusal) => refusals.push((format!("#{}", action.word()), refusal)),
        }
    }
    if !refusals.is_empty() {
        return Ok(Err(refusals));
    }

    let mut done = Done::default();
    let staff_side = standing.staff || standing.admin;
    if has_text || note {
        let kind = if note {
            MessageKind::Note
        } else if staff_side {
            MessageKind::Staff
        } else {
            MessageKind::Customer
        };
        let message = add_message(
            conn,
            blobs,
            &NewMessage {
                case: case.id,
                mail_id: req.mail_id,
                message_id: req.message_id,
                kind,
                from: Some(actor),
                body: req.text.trim(),
            },
            req.attachments,
            now,
        )?;
        done.message = Some(message);
        done.events.push(Event::Replied { case: case.id, message, kind, from: Some(actor.clone()) });
        mails::audit(
            conn,
            req.mail_id,
            Some(case.id),
            Some(actor.as_str()),
            kind_action(kind),
            Some(req.channel),
            now,
        )?;
    }

    let mut budget = WatcherBudget::new(config);
    for action in &req.actions {
        match action {
            Action::Impact(level) => {
                case_store::set_field(conn, case.id, "impact", Some(level.as_db()), now)?;
                let line = format!("Impact set to {level} by {actor}");
                system_entry(conn, case.id, req.mail_id, &line, now)?;
                done.events.push(Event::FieldChanged {
                    case: case.id,
                    field: "impact".into(),
                    value: level.to_string(),
                    by: Some(actor.clone()),
                });
                mails::audit(
                    conn,
                    req.mail_id,
                    Some(case.id),
                    Some(actor.as_str()),
                    "impact-changed",
                    Some(level.as_str()),
                    now,
                )?;
            }
            Action::Watch(who) => {
                add_watcher(conn, config, case.id, who, actor, "command", &mut budget, &mut done.events, now)?
            }
            Action::Unwatch(who) => {
                let who = who.as_ref().unwrap_or(actor);
                if case_store::remove_participant(conn, case.id, who, ParticipantRole::Watcher, now)? {
                    done.events.push(Event::WatcherRemoved { case: case.id, address: who.clone() });
                    mails::audit(
                        conn,
                        req.mail_id,
                        Some(case.id),
                        Some(actor.as_str()),
                        "watcher-removed",
                        Some(who.as_str()),
                        now,
                    )?;
                }
            }
            _ => {}
        }
        done.applied.push(action.word());
    }

    // Watchers from To/Cc, for senders who may add watchers.
    if workflow::allowed(workflow::Kind::Watch, standing) {
        for who in &req.copied {
            add_watcher(conn, config, case.id, who, actor, "cc", &mut budget, &mut done.events, now)?;
        }
    }
    budget.finish(conn, config, case.id, req.mail_id, actor, now)?;

    if status != case.status {
        case_store::set_status(conn, case.id, status, now)?;
        let line = status_line(case.status, status, actor, &req.actions);
        system_entry(conn, case.id, req.mail_id, &line, now)?;
        done.events.push(Event::StatusChanged {
            case: case.id,
            from: case.status,
            to: status,
            by: Some(actor.clone()),
            message: done.message,
        });
        let detail = format!("{} -> {}", case.status, status);
        mails::audit(conn, req.mail_id, Some(case.id), Some(actor.as_str()), "status-changed", Some(&detail), now)?;
    } else {
        case_store::touch(conn, case.id, now)?;
    }
    Ok(Ok(done))
}

fn kind_action(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Note => "note-added",
        MessageKind::Staff => "staff-replied",
        _ => "replied",
    }
}

fn status_line(from: Status, to: Status, actor: &Address, actions: &[Action]) -> String {
    let what = match (from, to) {
        (_, Status::Closed) if actions.contains(&Action::Accept) => "accepted the solution; the case is closed",
        (_, Status::Closed) => "closed the case",
        (Status::Resolved, Status::Open) if actions.iter().any(|a| matches!(a, Action::Reject { .. })) => {
            "rejected the solution; the case is open again"
        }
        (Status::Resolved, Status::Open) => "re-opened the case",
        (_, Status::Resolved) => "proposed a solution",
        (Status::New, Status::Open) => "picked the case up",
        _ => "changed the status",
    };
    format!("{actor} {what} ({from} → {to})")
}

/// A `system` thread entry: a status or field change, in words.
pub fn system_entry(
    conn: &Connection,
    case: CaseId,
    mail_id: Option<i64>,
    line: &str,
    now: &str,
) -> rusqlite::Result<i64> {
    case_store::insert_message(
        conn,
        &NewMessage { case, mail_id, message_id: None, kind: MessageKind::System, from: None, body: line },
        now,
    )
}

/// How many more watchers one mail (or one command) may add: `limits.max_watchers_per_mail`.
/// Addresses beyond it are counted, not added, and recorded once in the audit log.
pub struct WatcherBudget {
    left: usize,
    skipped: usize,
}

impl WatcherBudget {
    pub fn new(config: &Config) -> WatcherBudget {
        WatcherBudget { left: config.max_watchers_per_mail, skipped: 0 }
    }

    /// Records (once) that addresses were left out, if any were.
    pub fn finish(
        self,
        conn: &Connection,
        config: &Config,
        case: CaseId,
        mail_id: Option<i64>,
        by: &Address,
        now: &str,
    ) -> rusqlite::Result<()> {
        if self.skipped == 0 {
            return Ok(());
        }
        let detail = format!(
            "{} more addresses were not added as watchers (limits.max_watchers_per_mail = {})",
            self.skipped, config.max_watchers_per_mail
        );
        tracing::warn!(case = %config.case_token(case), by = %by, "{detail}");
        mails::audit(conn, mail_id, Some(case), Some(by.as_str()), "watchers-limited", Some(&detail), now)
    }
}

/// Adds a watcher unless they are a system address, already take part, or the mail has
/// added as many watchers as it may.
#[allow(clippy::too_many_arguments)]
pub fn add_watcher(
    conn: &Connection,
    config: &Config,
    case: CaseId,
    who: &Address,
    by: &Address,
    via: &str,
    budget: &mut WatcherBudget,
    events: &mut Vec<Event>,
    now: &str,
) -> rusqlite::Result<()> {
    if config.is_system_address(who) || who == by {
        return Ok(());
    }
    if budget.left == 0 {
        budget.skipped += 1;
        return Ok(());
    }
    if case_store::is_participant(conn, case, who)? {
        return Ok(());
    }
    if case_store::add_participant(conn, case, who, ParticipantRole::Watcher, via, Some(by), now)? {
        budget.left -= 1;
        events.push(Event::WatcherAdded { case, address: who.clone(), by: Some(by.clone()) });
        mails::audit(
            conn,
            None,
            Some(case),
            Some(by.as_str()),
            "watcher-added",
            Some(&format!("{who} via {via}")),
            now,
        )?;
    }
    Ok(())
}

/// Adds a thread entry with its attachments (bytes to the blob store) and links its
/// Message-ID to the case.
pub fn add_message(
    conn: &Connection,
    blobs: &dyn BlobSink,
    m: &NewMessage<'_>,
    attachments: &[Attachment],
    now: &str,
) -> anyhow::Result<i64> {
    let message = case_store::insert_message(conn, m, now)?;
    for a in attachments {
        blobs.put(&a.sha256, &a.data).with_context(|| format!("cannot store attachment {:?}", a.filename))?;
        let sha256 = a.sha256.clone();
        let view = AttachmentView {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.data.len() as u64,
            sha256,
            disposition: a.disposition,
        };
        case_store::insert_attachment(conn, message, &view, a.content_id.as_deref())?;
    }
    if let Some(id) = m.message_id {
        case_store::link_message_id(conn, id, m.case)?;
    }
    Ok(message)
}
