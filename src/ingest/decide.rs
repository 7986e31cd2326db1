//! Deciding what happens to a parsed mail: classify, route, authorize, and for a new
//! case, work out whom it is for and which fields it starts with. Reads the database,
//! writes nothing.

use rusqlite::Connection;

use super::{reasons, Analyzed};
use crate::address::Address;
use crate::authorize::{self, Standing};
use crate::case::token::TokenMatcher;
use crate::case::{CaseId, Impact, ParticipantRole, Status};
use crate::commands::{self, Commands};
use crate::config::Config;
use crate::fields;
use crate::parse::forward::{self, Forwarded};
use crate::parse::InboundMail;
use crate::route::{self, Route};
use crate::store::cases::{self as case_store, CaseRow};
use crate::survey;

/// What to do with a parsed mail; decided from the mail and the database, then applied.
#[derive(Debug)]
pub(super) enum Decision {
    Quarantine {
        case: Option<CaseId>,
        code: &'static str,
        detail: String,
    },
    /// A new case that cannot be opened as asked (a field it may not set).
    Refused {
        code: &'static str,
        field: String,
        problem: String,
    },
    Ignore {
        reason: String,
    },
    /// Machine mail on a known case: recorded on the thread, nothing else changes.
    Auto {
        case: CaseId,
        reason: String,
    },
    NewCase(Box<NewCasePlan>),
    /// A reply, note or commands on an existing, open case.
    OnCase {
        case: CaseRow,
        standing: Standing,
        commands: Commands,
    },
    /// "cases" by mail: answer with the sender's cases.
    ListCases,
    /// A reply to a survey mail that answers it.
    SurveyAnswer {
        case: CaseId,
        answer: survey::Answer,
    },
}

/// The closed case a new case follows up, and what it carried over.
#[derive(Debug)]
pub(super) struct FollowUp {
    pub(super) closed: CaseId,
    pub(super) contact: Option<Address>,
    pub(super) account: Option<String>,
    /// The new text of the mail (worked out while it was prepared): the follow-up's
    /// opening entry, not the quoted old thread.
    pub(super) description: String,
}

/// Who a new case is for and the fields it starts with.
#[derive(Debug)]
pub(super) struct NewCasePlan {
    pub(super) subject: String,
    /// The opening text when it is not the mail's whole text (a follow-up's new text).
    pub(super) description: Option<String>,
    /// Why it is new although the mail pointed at a case (unknown token, closed case).
    pub(super) note: Option<String>,
    /// The closed case this one follows up.
    pub(super) linked: Option<CaseId>,
    pub(super) contact: Address,
    /// The sender is (authenticated) staff or an admin.
    pub(super) staff_side: bool,
    pub(super) account: Option<String>,
    pub(super) impact: Option<Impact>,
    pub(super) environment: Option<String>,
    /// The customer's mail an admin or analyst forwarded.
    pub(super) forwarded: Option<Forwarded>,
}

/// Classify, route and authorize: what should happen to this mail.
pub(super) fn decide(
    tx: &Connection,
    config: &Config,
    tokens: &TokenMatcher,
    analyzed: &Analyzed,
) -> rusqlite::Result<Decision> {
    let mail = &analyzed.mail;
    let machine = analyzed.machine.clone();
    let route = route::route(
        mail,
        tokens,
        &config.token_prefix,
        |n| case_store::case_row(tx, n).map(|r| r.is_some()),
        |id| case_store::case_for_message_id(tx, id),
    )?;

    if let Some(verdict) = machine {
        let reason = format!("{}: {}", verdict.kind.as_str(), verdict.reason);
        return Ok(match route {
            Route::Existing { case, .. } => Decision::Auto { case, reason },
            Route::New { .. } => Decision::Ignore { reason },
        });
    }
    let Some(sender) = mail.from_address() else {
        let case = match route {
            Route::Existing { case, .. } => Some(case),
            Route::New { .. } => None,
        };
        return Ok(Decision::Quarantine {
            case,
            code: reasons::NO_SENDER,
            detail: "the mail has no valid From address".into(),
        });
    };
    let authenticated = analyzed.authenticated;
    match route {
        Route::New { note } => {
            if is_case_list_request(&mail.subject) {
                return Ok(Decision::ListCases);
            }
            Ok(plan_new_case(config, tokens, mail, sender, authenticated, note, None))
        }
        Route::Existing { case, .. } => {
            if let Some(answer) = survey_answer(tx, analyzed, sender)? {
                return Ok(answer);
            }
            let mut row = case_store::case_row(tx, case)?.expect("routing only returns cases that exist");
            // Mail on a closed case that already has an open follow-up goes to the follow-up,
            // so a customer who keeps answering the old thread opens one new case, not many.
            if row.status == Status::Closed {
                if let Some(next) = case_store::open_follow_up(tx, case)? {
                    row = case_store::case_row(tx, next)?.expect("follow-up exists");
                }
            }
            let case = row.id;
            let people = case_store::participants(tx, case)?;
            let standing = authorize::standing(config, sender, authenticated, &people, row.account.as_deref());
            if !standing.is_participant() {
                let token = config.case_token(case);
                // A staff address that failed authentication (not answered either: see
                // `no_answer_reason`).
                if !authenticated && (config.is_staff(sender) || config.is_admin(sender)) {
                    return Ok(Decision::Quarantine {
                        case: Some(case),
                        code: reasons::UNAUTHENTICATED_STAFF,
                        detail: format!(
                            "{sender} is a staff or admin address, but {} does not vouch for it (no DMARC or aligned DKIM pass); {token} was left alone",
                            config.authserv_id.as_deref().unwrap_or("the receiving server")
                        ),
                    });
                }
                return Ok(Decision::Quarantine {
                    case: Some(case),
                    code: reasons::SENDER_NOT_PARTICIPANT,
                    detail: format!("{sender} is not a participant of {token}"),
                });
            }
            let new_text = analyzed.new_text();
            let commands = commands::parse(&mail.subject, &new_text);
            // New words on a closed case open a follow-up case; bare commands (an
            // #unwatch from a notification link, a second #accept) are answered instead.
            let has_text = !commands.text.trim().is_empty() || !mail.attachments.is_empty();
            if row.status == Status::Closed && has_text && !commands.has("unwatch") {
                let note = format!("{} is closed; a new case was opened that links it", config.case_token(case));
                let contact = people.iter().find(|(_, r)| *r == ParticipantRole::Contact).map(|(a, _)| a.clone());
                let follows = FollowUp {
                    closed: case,
                    contact,
                    account: row.account.clone(),
                    description: new_text.into_owned(),
                };
                return Ok(plan_new_case(config, tokens, mail, sender, authenticated, Some(note), Some(follows)));
            }
            Ok(Decision::OnCase { case: row, standing, commands })
        }
    }
}

/// A reply to a survey mail, from the person it was sent to, with a score on its first
/// line: the survey answer by mail. Anything else (no score, someone else) is handled as
/// any mail on the case.
fn survey_answer(tx: &Connection, analyzed: &Analyzed, sender: &Address) -> rusqlite::Result<Option<Decision>> {
    for id in analyzed.mail.ancestors() {
        let Some(invitation) = survey::store::invitation_by_message_id(tx, id)? else { continue };
        if invitation.recipient != *sender {
            return Ok(None);
        }
        return Ok(survey::parse_mail_answer(&analyzed.new_text())
            .map(|answer| Decision::SurveyAnswer { case: invitation.case, answer }));
    }
    Ok(None)
}

/// A mail to the system address whose subject asks for the sender's cases.
fn is_case_list_request(subject: &str) -> bool {
    let s = subject.trim().trim_start_matches('#').trim();
    s.eq_ignore_ascii_case("cases") || s.eq_ignore_ascii_case("my cases")
}

/// Works out who a new case is for and which fields it gets: normally the sender's own;
/// for staff and admins, on a customer's behalf — from a forwarded mail (the original
/// sender becomes the contact) or a `Contact:` line. `Account:` lines are checked against
/// what the sender may use.
fn plan_new_case(
    config: &Config,
    tokens: &TokenMatcher,
    mail: &InboundMail,
    sender: &Address,
    authenticated: bool,
    note: Option<String>,
    follows: Option<FollowUp>,
) -> Decision {
    let (staff, admin) = authorize::privileges(config, sender, authenticated);
    let staff_side = staff || admin;
    let linked = follows.as_ref().map(|f| f.closed);
    let forwarded = if staff_side && linked.is_none() { forward::find_forwarded(mail) } else { None };
    // Field lines are read from what the sender wrote: above a forwarded part, or the text.
    let field_text = forwarded.as_ref().map_or(mail.text.as_str(), |f| f.preamble.as_str());

    // Whom the case is for: a `Contact:` line written by staff wins; then the sender of a
    // forwarded mail; for staff following up a closed case, that case's contact.
    let contact_line = if staff_side { fields::labelled_line(field_text, "contact") } else { None };
    let contact = if let Some(line) = contact_line {
        match Address::parse(line.split_whitespace().last().unwrap_or_default()) {
            Some(a) => a,
            None => {
                return Decision::Refused {
                    code: reasons::BAD_FIELD,
                    field: format!("Contact: {line}"),
                    problem: "the Contact: line must hold one email address".into(),
                }
            }
        }
    } else if let Some(original) = forwarded.as_ref().and_then(|f| f.from.as_ref()) {
        original.address.clone()
    } else if let (true, Some(previous)) = (staff_side, follows.as_ref().and_then(|f| f.contact.clone())) {
        previous
    } else {
        sender.clone()
    };
    if config.is_system_address(&contact) {
        return Decision::Refused {
            code: reasons::BAD_FIELD,
            field: format!("Contact: {contact}"),
            problem: "a support address cannot be the contact of a case".into(),
        };
    }

    let account = match fields::labelled_line(field_text, "account") {
        Some(name) => {
            let allowed = config.accounts_of(sender);
            match config.known_account(name) {
                Some(known) if staff_side || allowed.contains(&known) => Some(known.to_string()),
                _ => {
                    let yours = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                    return Decision::Refused {
                        code: reasons::ACCOUNT_NOT_ALLOWED,
                        field: format!("Account: {name}"),
                        problem: format!("you may not open cases for the account {name:?}; your accounts: {yours}"),
                    };
                }
            }
        }
        None => config
            .account_for(&contact)
            .or_else(|| config.account_for(sender))
            .map(str::to_string)
            .or_else(|| follows.as_ref().and_then(|f| f.account.clone())),
    };
    // A follow-up of a closed case must not carry the old token (replies would go there);
    // a forwarded mail is about the original's subject.
    let subject = match forwarded.as_ref() {
        Some(f) => f.subject.clone().unwrap_or_else(|| tokens.clean_subject(&mail.subject)),
        None if linked.is_some() => tokens.clean_subject(&mail.subject),
        None => mail.subject.clone(),
    };
    let description = follows.as_ref().map(|f| f.description.clone());
    Decision::NewCase(Box::new(NewCasePlan {
        subject,
        description,
        note,
        linked,
        contact,
        staff_side,
        account,
        impact: fields::impact_of(mail, field_text),
        environment: fields::environment_of(field_text),
        forwarded,
    }))
}
