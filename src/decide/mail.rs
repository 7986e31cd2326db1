//! What an incoming mail means, given where routing put it:
//!
//! ```text
//! a bounce of our notifications ───────────────────────▶ decide::bounce
//! marked as spam by the receiving server ──────────────▶ quarantined (spam), no answer
//! DMARC fail at authserv_id, sender never seen ────────▶ quarantined (dmarc-fail), no answer
//! machine mail ─ on a case ▶ thread entry `auto` │ else ▶ ignored
//! no sender ─────────────────────────────────────────▶ quarantined (no-sender)
//! new ─ "cases" ▶ the sender's cases │ else ▶ a new case
//! on a case ─ a survey answer ▶ recorded
//!           ─ the sender takes no part ▶ quarantined (sender-not-participant, unauthenticated-staff)
//!           ─ new words on a closed case ▶ a new case that links it
//!           ─ else ▶ reply, note and commands (decide::request)
//! ```

use chrono::{DateTime, Utc};

use super::new_case::{self, FollowUp};
use super::request::{self, Request};
use super::{CaseFacts, CaseRef, Effect, Entry, Plan, Routed, Snapshot, SurveyInvitation};
use crate::address::Address;
use crate::authorize::{self, Standing};
use crate::case::{AuditAction, CaseId, MessageKind, Notice, Outcome, ParticipantRole, Reason, Status};
use crate::commands::{self, Commands};
use crate::config::Config;
use crate::parse::InboundMail;
use crate::prepare::Analyzed;
use crate::survey::{self, Answer};
use crate::workflow::Refusal;

/// Decides what `analyzed` means, given `snapshot` (loaded for it) and the time `now`.
/// `origin_account` is the account of the mailbox it came from, for new cases whose
/// sender's domain has none.
pub fn plan<'m>(
    config: &Config,
    analyzed: &'m Analyzed,
    snapshot: &Snapshot,
    origin_account: Option<&str>,
    now: DateTime<Utc>,
) -> Plan<'m> {
    let mut plan = outcome(config, analyzed, snapshot, origin_account, now);
    // What was wrong with the mail and how it was read anyway, for whoever looks later.
    let mail = &analyzed.mail;
    if !mail.problems.is_empty() {
        let detail = mail.problems.join("; ");
        plan.audit(plan.case, mail.from_address(), AuditAction::ReadDespite, Some(detail));
    }
    plan
}

fn outcome<'m>(
    config: &Config,
    analyzed: &'m Analyzed,
    snapshot: &Snapshot,
    origin_account: Option<&str>,
    now: DateTime<Utc>,
) -> Plan<'m> {
    let mail = &analyzed.mail;
    let routed = match &snapshot.routed {
        Routed::Existing { case, .. } => Some(case.row.id),
        Routed::New { .. } => None,
    };
    if let Some(plan) = super::bounce::plan(config, analyzed, &snapshot.bounced, now) {
        return plan;
    }
    if let Some(why) = &analyzed.spam {
        return unanswered_quarantine(mail, Reason::Spam, format!("marked as spam by the receiving server: {why}"));
    }
    if let Some(domain) = analyzed.dmarc_failure.as_ref().filter(|_| config.spam.quarantine_dmarc_fail) {
        if snapshot.sender_known == Some(false) {
            let detail = format!(
                "DMARC failed for {domain} at {} and the sender never wrote before: most likely forged",
                config.authserv_id.as_deref().unwrap_or("the receiving server")
            );
            return unanswered_quarantine(mail, Reason::DmarcFail, detail);
        }
    }
    if let Some(verdict) = &analyzed.machine {
        let reason = format!("{}: {}", verdict.kind.as_str(), verdict.reason);
        return match routed {
            Some(case) => auto_reply(analyzed, case, reason),
            None => ignored(mail, reason),
        };
    }
    let Some(sender) = mail.from_address() else {
        return quarantine(Some(mail), routed, Reason::NoSender, "the mail has no valid From address".into());
    };
    match &snapshot.routed {
        Routed::New { .. } if is_case_list_request(&mail.subject) => case_list(mail, sender),
        Routed::New { note } => new_case::plan(config, analyzed, sender, note.clone(), None, origin_account),
        Routed::Existing { case, follow_up } => {
            if let Some(plan) = survey_answer(analyzed, sender, snapshot.invitation.as_ref(), now) {
                return plan;
            }
            // Mail on a closed case that already has an open follow-up goes to the
            // follow-up, so a customer who keeps answering the old thread opens one new case.
            let case = follow_up.as_deref().filter(|_| case.row.status == Status::Closed).unwrap_or(case);
            on_case(config, analyzed, sender, case, origin_account)
        }
    }
}

/// A mail that could not be read (too large, no headers): quarantined, and its sender —
/// when the headers still name one — told why.
pub fn rejected<'m>(headers: Option<&InboundMail>, reason: Reason, detail: &str) -> Plan<'m> {
    quarantine(headers, None, reason, detail.to_string())
}

/// A mail on an existing case from a sender who takes part in it.
fn on_case<'m>(
    config: &Config,
    analyzed: &'m Analyzed,
    sender: &Address,
    case: &CaseFacts,
    origin_account: Option<&str>,
) -> Plan<'m> {
    let mail = &analyzed.mail;
    let id = case.row.id;
    let standing =
        authorize::standing(config, sender, analyzed.authenticated, &case.participants, case.row.account.as_deref());
    if !standing.is_participant() {
        return stranger(config, analyzed, sender, id);
    }
    let new_text = analyzed.new_text();
    let commands = commands::parse(&mail.subject, &new_text);
    // New words on a closed case open a follow-up case; bare commands (an #unwatch from a
    // notification link, a second #accept) are answered instead.
    let has_text = !commands.text.trim().is_empty() || !mail.attachments.is_empty();
    if case.row.status == Status::Closed && has_text && !commands.has("unwatch") {
        let note = format!("{} is closed; a new case was opened that links it", config.case_token(id));
        let contact = case.participants.iter().find(|(_, r)| *r == ParticipantRole::Contact).map(|(a, _)| a.clone());
        let follows =
            FollowUp { closed: id, contact, account: case.row.account.clone(), description: new_text.into_owned() };
        return new_case::plan(config, analyzed, sender, Some(note), Some(follows), origin_account);
    }
    commands_on_case(config, mail, sender, case, &standing, commands)
}

/// A reply, note and commands on a case the sender takes part in.
fn commands_on_case<'m>(
    config: &Config,
    mail: &'m InboundMail,
    sender: &Address,
    case: &CaseFacts,
    standing: &Standing,
    commands: Commands,
) -> Plan<'m> {
    let id = case.row.id;
    let at = Some(CaseRef::Existing(id));
    let mut plan = Plan::new(Outcome::Replied, at, None);
    if commands.list_cases {
        plan.notice(mail, None, Notice::CaseList);
    }
    // Unknown words or bad arguments: nothing is applied, the sender learns why.
    if !commands.problems.is_empty() {
        let reason = commands.problems.iter().map(|(w, p)| format!("{w}: {p}")).collect::<Vec<_>>().join("; ");
        for (command, problem) in commands.problems {
            plan.notice(mail, at, Notice::CommandRefused { command, problem });
        }
        return refused(plan, id, sender, reason);
    }
    let copied = mail
        .to
        .iter()
        .chain(&mail.cc)
        .map(|m| m.address.clone())
        .filter(|a| a != sender && !config.is_system_address(a))
        .collect();
    let request = Request {
        actions: commands.actions,
        text: commands.text.into(),
        message_id: mail.message_id.as_deref(),
        attachments: &mail.attachments,
        copied,
        channel: "mail",
    };
    match request::plan(&mut plan, config, case, sender, standing, request) {
        Ok(applied) if applied.is_empty() => plan,
        Ok(applied) => {
            plan.outcome = Outcome::Command;
            plan.reason =
                Some(format!("applied: {}", applied.iter().map(|w| format!("#{w}")).collect::<Vec<_>>().join(" ")));
            plan
        }
        Err(refusals) => {
            let reason = refusals.iter().map(|(w, r)| format!("{w}: {r}")).collect::<Vec<_>>().join("; ");
            for (command, refusal) in refusals {
                let notice = match refusal {
                    Refusal::ReasonRequired => Notice::ReasonRequired,
                    other => Notice::CommandRefused { command, problem: other.to_string() },
                };
                plan.notice(mail, at, notice);
            }
            refused(plan, id, sender, reason)
        }
    }
}

/// The outcome of a mail whose commands were all refused: kept, nothing applied.
fn refused<'m>(mut plan: Plan<'m>, case: CaseId, sender: &Address, reason: String) -> Plan<'m> {
    let reason = format!("refused: {reason}");
    plan.outcome = Outcome::Command;
    plan.audit(Some(CaseRef::Existing(case)), Some(sender), AuditAction::CommandRefused, Some(reason.clone()));
    plan.reason = Some(reason);
    plan
}

/// Mail on a case from someone who takes no part in it: quarantined. A staff address
/// that failed authentication is not answered (the answer would reach the real owner of
/// the address, who did not write: see `prepare::no_answer_reason`).
fn stranger<'m>(config: &Config, analyzed: &Analyzed, sender: &Address, case: CaseId) -> Plan<'m> {
    let token = config.case_token(case);
    let mail = Some(&analyzed.mail);
    if !analyzed.authenticated && (config.is_staff(sender) || config.is_admin(sender)) {
        let detail = format!(
            "{sender} is a staff or admin address, but {} does not vouch for it (no DMARC or aligned DKIM pass); {token} was left alone",
            config.authserv_id.as_deref().unwrap_or("the receiving server")
        );
        return quarantine(mail, Some(case), Reason::UnauthenticatedStaff, detail);
    }
    quarantine(mail, Some(case), Reason::SenderNotParticipant, format!("{sender} is not a participant of {token}"))
}

/// Quarantines the mail (kept raw, releasable) and tells its sender why.
fn quarantine<'m>(mail: Option<&InboundMail>, case: Option<CaseId>, reason: Reason, detail: String) -> Plan<'m> {
    let text = format!("{reason}: {detail}");
    let case = case.map(CaseRef::Existing);
    let mut plan = Plan::new(Outcome::Quarantined, case, Some(text.clone()));
    if let Some(mail) = mail {
        plan.notice(mail, case, Notice::NotApplied { reason });
    }
    plan.effects.push(Effect::Quarantine { reason, detail });
    plan.audit(case, None, AuditAction::Quarantined, Some(text));
    plan
}

/// Quarantines the mail without answering its sender (who is most likely not who wrote
/// it, so an answer would be backscatter). No case is touched: released by a person, the
/// mail is processed again from the start.
fn unanswered_quarantine<'m>(mail: &InboundMail, reason: Reason, detail: String) -> Plan<'m> {
    let text = format!("{reason}: {detail}");
    let mut plan = Plan::new(Outcome::Quarantined, None, Some(text.clone()));
    plan.effects.push(Effect::Quarantine { reason, detail });
    plan.audit(None, mail.from_address(), AuditAction::Quarantined, Some(text));
    plan
}

/// Machine mail on no case: recorded, nothing else.
fn ignored<'m>(mail: &InboundMail, reason: String) -> Plan<'m> {
    let mut plan = Plan::new(Outcome::Ignored, None, Some(reason.clone()));
    plan.audit(None, mail.from_address(), AuditAction::Ignored, Some(reason));
    plan
}

/// Machine mail on a known case: recorded on the thread for the analysts, but the case
/// itself does not change (no status, watcher or `updated_at` change) and nobody is told.
fn auto_reply(analyzed: &Analyzed, case: CaseId, reason: String) -> Plan<'_> {
    let mail = &analyzed.mail;
    let at = Some(CaseRef::Existing(case));
    let mut plan = Plan::new(Outcome::Replied, at, Some(reason.clone()));
    plan.entry(Entry {
        case: CaseRef::Existing(case),
        kind: MessageKind::Auto,
        from: mail.from_address().cloned(),
        body: analyzed.new_text(),
        message_id: mail.message_id.as_deref(),
        attachments: &mail.attachments,
    });
    plan.audit(at, mail.from_address(), AuditAction::AutoRecorded, Some(reason));
    plan
}

/// "cases" by mail: the sender gets the list of their cases.
fn case_list<'m>(mail: &InboundMail, sender: &Address) -> Plan<'m> {
    let mut plan = Plan::new(Outcome::Command, None, Some("list of cases requested".into()));
    plan.notice(mail, None, Notice::CaseList);
    plan.audit(None, Some(sender), AuditAction::CaseListRequested, None);
    plan
}

/// A mail to the system address whose subject asks for the sender's cases.
fn is_case_list_request(subject: &str) -> bool {
    let s = subject.trim().trim_start_matches('#').trim();
    s.eq_ignore_ascii_case("cases") || s.eq_ignore_ascii_case("my cases")
}

/// A reply to a survey mail, from the person it was sent to, with a score on its first
/// line: the survey answer by mail, recorded unless the link has expired. Anything else
/// (no score, someone else) is handled as any mail on the case.
fn survey_answer<'m>(
    analyzed: &Analyzed,
    sender: &Address,
    invitation: Option<&SurveyInvitation>,
    now: DateTime<Utc>,
) -> Option<Plan<'m>> {
    let invitation = invitation.filter(|i| i.recipient == *sender)?;
    let answer = survey::parse_mail_answer(&analyzed.new_text())?;
    let at = Some(CaseRef::Existing(invitation.case));
    let mut plan = Plan::new(Outcome::Command, at, None);
    if now >= invitation.expires_at {
        let reason = format!(
            "survey answer not recorded: the survey link of case {} for {sender} expired at {}",
            invitation.case, invitation.expires_at
        );
        plan.audit(at, Some(sender), AuditAction::SurveyAnswerRefused, Some(reason.clone()));
        plan.reason = Some(reason);
        return Some(plan);
    }
    plan.reason = Some(answer_reason(&answer, invitation.answered));
    plan.effects.push(Effect::SurveyAnswer {
        case: invitation.case,
        recipient: sender.clone(),
        answer,
        changed: invitation.answered,
    });
    Some(plan)
}

fn answer_reason(answer: &Answer, changed: bool) -> String {
    format!(
        "survey answer {}: score {}, solved {}",
        if changed { "changed" } else { "recorded" },
        answer.score.get(),
        survey::answer::solved_word(answer.solved)
    )
}

#[cfg(test)]
mod tests {
    //! Decisions on plain data: a mail, a snapshot built by hand, a configuration. No
    //! database anywhere.

    use std::path::Path;

    use super::*;
    use crate::case::{CaseRow, Event, Impact};
    use crate::decide::{Effect, EntryRef, PlannedEvent};
    use crate::parse;

    const JANE: &str = "jane@customer.example";
    const ANN: &str = "ann@support.example.com";

    fn config(extra: &str) -> Config {
        let text = format!(
            "system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
             accounts = {{ \"customer.example\" = \"Customer Inc\" }}\n{extra}"
        );
        Config::from_toml(&text, Path::new("/casegate.toml")).unwrap()
    }

    fn analyzed(config: &Config, headers: &str, body: &str) -> Analyzed {
        let raw = format!("{headers}\r\nMessage-ID: <m1@x.example>\r\n\r\n{body}\r\n");
        Analyzed::of(config, parse::parse(raw.as_bytes()).unwrap())
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn case(id: CaseId, status: Status, people: &[(&str, ParticipantRole)]) -> CaseFacts {
        CaseFacts {
            row: CaseRow {
                id,
                subject: "Printer on fire".into(),
                status,
                impact: Impact::Medium,
                account: Some("Customer Inc".into()),
                environment: None,
                linked_case: None,
                created_at: "2026-12-01T10:00:00.000Z".into(),
                updated_at: "2026-12-01T10:00:00.000Z".into(),
            },
            participants: people.iter().map(|(a, r)| (addr(a), *r)).collect(),
        }
    }

    fn on(case: CaseFacts) -> Snapshot {
        Snapshot::routed(Routed::Existing { case: Box::new(case), follow_up: None })
    }

    fn now() -> DateTime<Utc> {
        "2026-12-07T10:00:00Z".parse().unwrap()
    }

    fn events(plan: &Plan<'_>) -> Vec<PlannedEvent> {
        plan.events().cloned().collect()
    }

    fn audits(plan: &Plan<'_>) -> Vec<AuditAction> {
        plan.effects.iter().filter_map(|e| if let Effect::Audit(a) = e { Some(a.action) } else { None }).collect()
    }

    #[test]
    fn a_new_mail_opens_a_case_for_its_sender_with_copied_people_watching() {
        let c = config("");
        let a = analyzed(&c, &format!("From: Jane <{JANE}>\r\nTo: support@example.com\r\nCc: bob@customer.example\r\nSubject: Printer on fire"), "It burns.");
        let plan = plan(&c, &a, &Snapshot::new_case(), None, now());
        assert_eq!((plan.outcome, plan.case), (Outcome::Created, Some(CaseRef::New)));
        let Effect::OpenCase(new) = &plan.effects[0] else { panic!("the case is opened first: {plan:?}") };
        assert_eq!(
            (new.subject.as_str(), new.impact, new.account.as_deref()),
            ("Printer on fire", Impact::Medium, Some("Customer Inc"))
        );
        let people: Vec<(String, ParticipantRole)> = plan
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::AddParticipant { address, role, .. } => Some((address.to_string(), *role)),
                _ => None,
            })
            .collect();
        assert_eq!(
            people,
            [
                (JANE.to_string(), ParticipantRole::Requester),
                (JANE.to_string(), ParticipantRole::Contact),
                ("bob@customer.example".to_string(), ParticipantRole::Watcher)
            ]
        );
        let evs = events(&plan);
        assert_eq!(evs[0], Event::Created { case: CaseRef::New, message: EntryRef(0) });
        assert!(matches!(&evs[1], Event::WatcherAdded { address, .. } if address.as_str() == "bob@customer.example"));
        assert_eq!(audits(&plan), [AuditAction::WatcherAdded, AuditAction::CaseCreated]);
    }

    #[test]
    fn machine_mail_is_recorded_on_its_case_or_ignored_and_nobody_is_told() {
        let c = config("");
        let a =
            analyzed(&c, &format!("From: {JANE}\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied"), "Away.");
        let on_case = plan(&c, &a, &on(case(7, Status::Open, &[(JANE, ParticipantRole::Requester)])), None, now());
        assert_eq!(on_case.outcome, Outcome::Replied);
        assert!(matches!(&on_case.effects[0], Effect::AddEntry(e) if e.kind == MessageKind::Auto));
        assert!(events(&on_case).is_empty(), "no notification for an auto-reply");
        let nowhere = plan(&c, &a, &Snapshot::new_case(), None, now());
        assert_eq!(nowhere.outcome, Outcome::Ignored);
        assert_eq!(audits(&nowhere), [AuditAction::Ignored]);
    }

    #[test]
    fn a_stranger_is_quarantined_and_told_and_a_forged_staff_address_is_not_told() {
        let c = config("authserv_id = \"mx.example.com\"");
        let snapshot = on(case(7, Status::Open, &[(JANE, ParticipantRole::Requester)]));
        let stranger = analyzed(&c, "From: eve@elsewhere.example\r\nSubject: Re: [CASE-7]", "Let me in.");
        let plan1 = plan(&c, &stranger, &snapshot, None, now());
        assert_eq!(plan1.outcome, Outcome::Quarantined);
        assert!(plan1.reason.as_deref().unwrap().starts_with("sender-not-participant: "), "{plan1:?}");
        assert!(matches!(
            events(&plan1)[..],
            [Event::Notice { notice: Notice::NotApplied { reason: Reason::SenderNotParticipant }, .. }]
        ));
        // A staff address without the receiving server's word for it.
        let forged = analyzed(&c, &format!("From: {ANN}\r\nSubject: Re: [CASE-7] #close"), "Closing.");
        let plan2 = plan(&c, &forged, &snapshot, None, now());
        assert!(plan2.reason.as_deref().unwrap().starts_with("unauthenticated-staff: "), "{plan2:?}");
        assert!(plan2
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Quarantine { reason: Reason::UnauthenticatedStaff, .. })));
    }

    #[test]
    fn accepting_a_solution_closes_the_case_and_a_reject_without_reason_changes_nothing() {
        let c = config("");
        let snapshot = on(case(7, Status::Resolved, &[(JANE, ParticipantRole::Requester)]));
        let accept = analyzed(&c, &format!("From: {JANE}\r\nSubject: Re: [CASE-7] #accept"), "Thanks!");
        let p = plan(&c, &accept, &snapshot, None, now());
        assert_eq!((p.outcome, p.reason.as_deref()), (Outcome::Command, Some("applied: #accept")));
        assert!(p.effects.iter().any(|e| matches!(e, Effect::SetStatus { case: 7, to: Status::Closed })));
        assert!(events(&p)
            .iter()
            .any(|e| matches!(e, Event::StatusChanged { from: Status::Resolved, to: Status::Closed, .. })));

        let reject = analyzed(&c, &format!("From: {JANE}\r\nSubject: Re: [CASE-7] #reject"), "");
        let p = plan(&c, &reject, &snapshot, None, now());
        assert_eq!(p.outcome, Outcome::Command);
        assert!(p.reason.as_deref().unwrap().starts_with("refused: #reject"), "{p:?}");
        assert!(
            !p.effects.iter().any(|e| matches!(e, Effect::SetStatus { .. } | Effect::AddEntry(_))),
            "nothing applied"
        );
        assert!(matches!(events(&p)[..], [Event::Notice { notice: Notice::ReasonRequired, .. }]));
        assert_eq!(audits(&p), [AuditAction::CommandRefused]);
    }

    #[test]
    fn new_words_on_a_closed_case_open_a_follow_up_or_go_to_the_open_one() {
        let c = config("");
        let closed = case(7, Status::Closed, &[(JANE, ParticipantRole::Requester), (JANE, ParticipantRole::Contact)]);
        let a = analyzed(&c, &format!("From: {JANE}\r\nSubject: Re: [CASE-7] Printer on fire"), "It burns again.");
        let p = plan(&c, &a, &on(closed.clone()), None, now());
        assert_eq!(p.outcome, Outcome::Created);
        let Effect::OpenCase(new) = &p.effects[0] else { panic!("{p:?}") };
        assert_eq!((new.linked_case, new.subject.as_str()), (Some(7), "Printer on fire"));
        assert!(events(&p)
            .iter()
            .any(|e| matches!(e, Event::Notice { notice: Notice::FollowUpOpened { closed: 7 }, .. })));

        let follow_up = case(8, Status::Open, &[(JANE, ParticipantRole::Requester)]);
        let snapshot =
            Snapshot::routed(Routed::Existing { case: Box::new(closed), follow_up: Some(Box::new(follow_up)) });
        let p = plan(&c, &a, &snapshot, None, now());
        assert_eq!((p.outcome, p.case), (Outcome::Replied, Some(CaseRef::Existing(8))));
    }

    #[test]
    fn a_score_in_reply_to_the_survey_mail_is_an_answer_until_the_link_expires() {
        let c = config("");
        let a = analyzed(&c, &format!("From: {JANE}\r\nSubject: Re: [CASE-7] How did we do?"), "5 yes great");
        let invitation = SurveyInvitation {
            case: 7,
            recipient: addr(JANE),
            expires_at: "2026-12-10T00:00:00Z".parse().unwrap(),
            answered: false,
        };
        let mut snapshot = on(case(7, Status::Closed, &[(JANE, ParticipantRole::Requester)]));
        snapshot.invitation = Some(invitation.clone());
        let p = plan(&c, &a, &snapshot, None, now());
        assert_eq!(p.reason.as_deref(), Some("survey answer recorded: score 5, solved yes"));
        assert!(matches!(&p.effects[..], [Effect::SurveyAnswer { case: 7, changed: false, .. }]));

        snapshot.invitation =
            Some(SurveyInvitation { expires_at: "2026-12-01T00:00:00Z".parse().unwrap(), ..invitation });
        let p = plan(&c, &a, &snapshot, None, now());
        assert!(p.reason.as_deref().unwrap().starts_with("survey answer not recorded"), "{p:?}");
        assert_eq!(audits(&p), [AuditAction::SurveyAnswerRefused]);
    }

    #[test]
    fn what_was_wrong_with_a_mail_that_was_read_anyway_is_audited() {
        let c = config("");
        let a = analyzed(&c, &format!("From: <{JANE}.>\r\nSubject: Printer"), "It burns.");
        let p = plan(&c, &a, &Snapshot::new_case(), None, now());
        assert_eq!(p.outcome, Outcome::Created);
        let detail = p.effects.iter().find_map(|e| match e {
            Effect::Audit(a) if a.action == AuditAction::ReadDespite => a.detail.clone(),
            _ => None,
        });
        assert!(detail.unwrap().contains("trailing dot removed"));
        let clean = analyzed(&c, &format!("From: {JANE}\r\nSubject: Printer"), "It burns.");
        assert!(!audits(&plan(&c, &clean, &Snapshot::new_case(), None, now())).contains(&AuditAction::ReadDespite));
    }

    #[test]
    fn spam_is_quarantined_without_an_answer_wherever_it_is_routed() {
        let c = config("[spam]\nheader_rules = [\"X-Verdict: junk\"]");
        for headers in ["X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1", "X-Verdict: JUNK mail"] {
            let a = analyzed(&c, &format!("From: {JANE}\r\nSubject: Re: [CASE-7] Cheap pills\r\n{headers}"), "Buy.");
            for snapshot in [Snapshot::new_case(), on(case(7, Status::Open, &[(JANE, ParticipantRole::Requester)]))] {
                let p = plan(&c, &a, &snapshot, None, now());
                assert_eq!((p.outcome, p.case), (Outcome::Quarantined, None), "{headers}");
                assert!(p.reason.as_deref().unwrap().starts_with("spam: marked as spam"), "{p:?}");
                assert!(events(&p).is_empty(), "no answer to spam");
                assert!(!p.effects.iter().any(|e| matches!(e, Effect::AddEntry(_) | Effect::OpenCase(_))));
            }
        }
        let released = {
            let mut a = analyzed(&c, &format!("From: {JANE}\r\nSubject: Printer\r\nX-Spam-Flag: YES"), "It burns.");
            a.released_by_a_person();
            a
        };
        assert_eq!(plan(&c, &released, &Snapshot::new_case(), None, now()).outcome, Outcome::Created);
    }

    #[test]
    fn a_dmarc_failure_from_a_new_sender_is_quarantined_without_an_answer() {
        let c = config("authserv_id = \"mx.example.com\"");
        let headers = format!(
            "From: {JANE}\r\nSubject: Invoice\r\n\
             Authentication-Results: mx.example.com; dmarc=fail (p=reject) header.from=customer.example"
        );
        let a = analyzed(&c, &headers, "Pay now.");
        let mut snapshot = Snapshot::new_case();
        snapshot.sender_known = Some(false);
        let p = plan(&c, &a, &snapshot, None, now());
        assert_eq!(p.outcome, Outcome::Quarantined);
        assert!(p.reason.as_deref().unwrap().starts_with("dmarc-fail: DMARC failed for customer.example"), "{p:?}");
        assert!(events(&p).is_empty(), "an acknowledgement would be backscatter");
        // Someone casegate knows is not held up by a failing DMARC record (mailing lists
        // and forwarders break it).
        snapshot.sender_known = Some(true);
        assert_eq!(plan(&c, &a, &snapshot, None, now()).outcome, Outcome::Created);
    }

    #[test]
    fn a_mail_without_a_sender_is_quarantined_and_nobody_is_answered() {
        let c = config("");
        let a = analyzed(&c, "Subject: who am I", "no From line at all");
        let p = plan(&c, &a, &Snapshot::new_case(), None, now());
        assert_eq!(p.outcome, Outcome::Quarantined);
        assert!(p.reason.as_deref().unwrap().starts_with("no-sender: "));
        assert!(events(&p).is_empty());
    }
}
