//! Applying a decision inside the open transaction: the journal row, the case, its
//! thread, watchers, quarantine and audit rows, and the events that notify people.

use rusqlite::Connection;

use super::decide::{Decision, NewCasePlan};
use super::{dedupe_key, Analyzed, IngestReport, Journal, Prepared};
use crate::address::{Address, Mailbox};
use crate::authorize::Standing;
use crate::case::{CaseId, Event, Impact, MessageKind, Notice, Outcome, ParticipantRole};
use crate::casework;
use crate::commands::Commands;
use crate::config::Config;
use crate::parse::forward::ForwardStyle;
use crate::parse::{self, InboundMail};
use crate::store::cases::{self as case_store, CaseRow, NewCase, NewMessage};
use crate::store::mails::{self, NewMail};
use crate::store::BlobSink;
use crate::survey;
use crate::workflow::Refusal;

/// Writes the consequences of a decision inside the open transaction.
pub(super) struct Writer<'t> {
    pub(super) tx: &'t Connection,
    pub(super) config: &'t Config,
    pub(super) now: String,
    pub(super) events: Vec<Event>,
    /// Where a new mail's raw copy is staged (written before the commit).
    pub(super) packs: &'t std::cell::RefCell<crate::store::packs::RawPacks>,
}

impl Writer<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn journal(
        &mut self,
        journal: Journal<'_>,
        prepared: &Prepared,
        headers: Option<&InboundMail>,
        outcome: Outcome,
        case: Option<CaseId>,
        reason: Option<&str>,
    ) -> anyhow::Result<i64> {
        match journal {
            Journal::Replay { mail_id } => {
                mails::set_outcome(self.tx, mail_id, outcome, case, reason)?;
                Ok(mail_id)
            }
            Journal::New(origin) => {
                mails::store_raw(
                    self.tx,
                    &mut self.packs.borrow_mut(),
                    &prepared.sha,
                    prepared.size,
                    &prepared.packed,
                )?;
                let message_id = headers.and_then(|m| m.message_id.as_deref());
                let key = dedupe_key(message_id, prepared);
                Ok(mails::insert_mail(
                    self.tx,
                    &NewMail {
                        origin: &origin.description,
                        source: origin.source.as_deref(),
                        source_key: origin.source_key.as_deref(),
                        message_id,
                        dedupe_key: &key,
                        raw_sha256: &prepared.sha,
                        from: headers.and_then(|m| m.from_address()).map(Address::as_str),
                        subject: headers.map(|m| m.subject.as_str()),
                        outcome,
                        case_id: case,
                        reason,
                    },
                    &self.now,
                )?)
            }
        }
    }

    pub(super) fn quarantine(
        &mut self,
        mail_id: i64,
        case: Option<CaseId>,
        code: &str,
        detail: &str,
    ) -> rusqlite::Result<IngestReport> {
        mails::quarantine(self.tx, mail_id, code, Some(detail), &self.now)?;
        mails::audit(self.tx, Some(mail_id), case, None, "quarantined", Some(&format!("{code}: {detail}")), &self.now)?;
        Ok(self.report(mail_id, Outcome::Quarantined, case, Some(format!("{code}: {detail}"))))
    }

    fn report(&mut self, mail_id: i64, outcome: Outcome, case: Option<CaseId>, reason: Option<String>) -> IngestReport {
        IngestReport {
            mail_id: Some(mail_id),
            message_id: None,
            outcome,
            case,
            reason,
            first_outcome: None,
            events: std::mem::take(&mut self.events),
        }
    }

    /// Answers the sender directly (unless their mail may get no automatic answer: the
    /// outbox withholds those, see `notify::Trigger`).
    pub(super) fn notice(&mut self, mail: &InboundMail, case: Option<CaseId>, notice: Notice) {
        if let Some(to) = mail.from_address() {
            self.events.push(Event::Notice { to: to.clone(), case, notice, in_reply_to: mail.message_id.clone() });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply(
        &mut self,
        decision: Decision,
        analyzed: &Analyzed,
        journal: Journal<'_>,
        prepared: &Prepared,
        origin_account: Option<&str>,
        blobs: &dyn BlobSink,
    ) -> anyhow::Result<IngestReport> {
        let mail = &analyzed.mail;
        let sender = mail.from_address();
        let actor = sender.map(Address::as_str);
        let mut report = match decision {
            Decision::Quarantine { case, code, detail } => {
                let reason = format!("{code}: {detail}");
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Quarantined, case, Some(&reason))?;
                self.notice(mail, case, Notice::NotApplied { reason: code.to_string() });
                self.quarantine(mail_id, case, code, &detail)?
            }
            Decision::Refused { code, field, problem } => {
                let detail = format!("{field}: {problem}");
                let reason = format!("{code}: {detail}");
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Quarantined, None, Some(&reason))?;
                self.notice(mail, None, Notice::CommandRefused { command: field, problem });
                self.quarantine(mail_id, None, code, &detail)?
            }
            Decision::Ignore { reason } => {
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Ignored, None, Some(&reason))?;
                mails::audit(self.tx, Some(mail_id), None, actor, "ignored", Some(&reason), &self.now)?;
                self.report(mail_id, Outcome::Ignored, None, Some(reason))
            }
            Decision::Auto { case, reason } => {
                let mail_id =
                    self.journal(journal, prepared, Some(mail), Outcome::Replied, Some(case), Some(&reason))?;
                // Recorded for the analysts, but the case itself does not change: no status,
                // watcher or updated_at change, and no notification.
                let body = analyzed.new_text().into_owned();
                let entry = NewMessage {
                    case,
                    mail_id: Some(mail_id),
                    message_id: mail.message_id.as_deref(),
                    kind: MessageKind::Auto,
                    from: sender,
                    body: &body,
                };
                casework::add_message(self.tx, blobs, &entry, &mail.attachments, &self.now)?;
                mails::audit(self.tx, Some(mail_id), Some(case), actor, "auto-recorded", Some(&reason), &self.now)?;
                self.report(mail_id, Outcome::Replied, Some(case), Some(reason))
            }
            Decision::SurveyAnswer { case, answer } => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Command, Some(case), None)?;
                let recorded =
                    survey::record_answer(self.tx, case, sender, &answer, survey::Channel::Mail, chrono::Utc::now());
                // A recorded answer is audited by `record_answer`; a refused one here.
                let reason = match recorded {
                    Ok(how) => format!(
                        "survey answer {}: score {}, solved {}",
                        if how == survey::store::Recorded::New { "recorded" } else { "changed" },
                        answer.score.get(),
                        survey::answer::solved_word(answer.solved)
                    ),
                    Err(survey::store::AnswerError::Database(e)) => return Err(e.into()),
                    Err(e) => {
                        let reason = format!("survey answer not recorded: {e}");
                        mails::audit(
                            self.tx,
                            Some(mail_id),
                            Some(case),
                            actor,
                            "survey-answer-refused",
                            Some(&reason),
                            &self.now,
                        )?;
                        reason
                    }
                };
                mails::set_outcome(self.tx, mail_id, Outcome::Command, Some(case), Some(&reason))?;
                self.report(mail_id, Outcome::Command, Some(case), Some(reason))
            }
            Decision::ListCases => {
                let reason = "list of cases requested".to_string();
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Command, None, Some(&reason))?;
                self.notice(mail, None, Notice::CaseList);
                mails::audit(self.tx, Some(mail_id), None, actor, "case-list-requested", None, &self.now)?;
                self.report(mail_id, Outcome::Command, None, Some(reason))
            }
            Decision::NewCase(plan) => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                self.new_case(mail, sender, *plan, journal, prepared, origin_account, blobs)?
            }
            Decision::OnCase { case, standing, commands } => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                self.on_case(mail, sender, &case, &standing, commands, journal, prepared, blobs)?
            }
        };
        report.message_id = mail.message_id.clone();
        Ok(report)
    }

    /// A reply, note or command on an existing case, through the workflow.
    #[allow(clippy::too_many_arguments)]
    fn on_case(
        &mut self,
        mail: &InboundMail,
        sender: &Address,
        case: &CaseRow,
        standing: &Standing,
        commands: Commands,
        journal: Journal<'_>,
        prepared: &Prepared,
        blobs: &dyn BlobSink,
    ) -> anyhow::Result<IngestReport> {
        let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Replied, Some(case.id), None)?;
        if commands.list_cases {
            self.notice(mail, None, Notice::CaseList);
        }
        // Unknown words or bad arguments: nothing is applied, the sender learns why.
        if !commands.problems.is_empty() {
            let reason = commands.problems.iter().map(|(w, p)| format!("{w}: {p}")).collect::<Vec<_>>().join("; ");
            for (command, problem) in commands.problems {
                self.notice(mail, Some(case.id), Notice::CommandRefused { command, problem });
            }
            return self.finish_refused(mail_id, case.id, sender, reason);
        }
        let copied: Vec<Address> = mail
            .to
            .iter()
            .chain(&mail.cc)
            .map(|m| m.address.clone())
            .filter(|a| a != sender && !self.config.is_system_address(a))
            .collect();
        let request = casework::Request {
            actions: commands.actions,
            text: &commands.text,
            mail_id: Some(mail_id),
            message_id: mail.message_id.as_deref(),
            attachments: &mail.attachments,
            copied,
            channel: "mail",
        };
        match casework::act(self.tx, self.config, blobs, case, sender, standing, &request, &self.now)? {
            Ok(done) => {
                self.events.extend(done.events);
                if done.applied.is_empty() {
                    Ok(self.report(mail_id, Outcome::Replied, Some(case.id), None))
                } else {
                    let reason = format!(
                        "applied: {}",
                        done.applied.iter().map(|w| format!("#{w}")).collect::<Vec<_>>().join(" ")
                    );
                    mails::set_outcome(self.tx, mail_id, Outcome::Command, Some(case.id), Some(&reason))?;
                    Ok(self.report(mail_id, Outcome::Command, Some(case.id), Some(reason)))
                }
            }
            Err(refusals) => {
                let reason = refusals.iter().map(|(w, r)| format!("{w}: {r}")).collect::<Vec<_>>().join("; ");
                for (command, refusal) in refusals {
                    let notice = match refusal {
                        Refusal::ReasonRequired => Notice::ReasonRequired,
                        other => Notice::CommandRefused { command, problem: other.to_string() },
                    };
                    self.notice(mail, Some(case.id), notice);
                }
                self.finish_refused(mail_id, case.id, sender, reason)
            }
        }
    }

    fn finish_refused(
        &mut self,
        mail_id: i64,
        case: CaseId,
        sender: &Address,
        reason: String,
    ) -> anyhow::Result<IngestReport> {
        let reason = format!("refused: {reason}");
        mails::set_outcome(self.tx, mail_id, Outcome::Command, Some(case), Some(&reason))?;
        mails::audit(
            self.tx,
            Some(mail_id),
            Some(case),
            Some(sender.as_str()),
            "command-refused",
            Some(&reason),
            &self.now,
        )?;
        Ok(self.report(mail_id, Outcome::Command, Some(case), Some(reason)))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_case(
        &mut self,
        mail: &InboundMail,
        sender: &Address,
        plan: NewCasePlan,
        journal: Journal<'_>,
        prepared: &Prepared,
        origin_account: Option<&str>,
        blobs: &dyn BlobSink,
    ) -> anyhow::Result<IngestReport> {
        // What the case is about: the forwarded original, or the mail itself.
        let (description, attachments, copied): (&str, &[parse::Attachment], Vec<&Mailbox>) = match &plan.forwarded {
            Some(f) => {
                let attached = (f.style == ForwardStyle::Attached).then(|| mail.attached_messages.first()).flatten();
                let attachments = attached.map_or(mail.attachments.as_slice(), |m| m.attachments.as_slice());
                (f.body.as_str(), attachments, f.to.iter().chain(&f.cc).collect())
            }
            None => (
                plan.description.as_deref().unwrap_or(mail.text.as_str()),
                mail.attachments.as_slice(),
                mail.to.iter().chain(&mail.cc).collect(),
            ),
        };
        let subject = plan.subject.clone();
        let subject = if subject.trim().is_empty() { "(no subject)".to_string() } else { subject };
        let account = plan.account.as_deref().or(origin_account);
        let case = case_store::insert_case(
            self.tx,
            &NewCase {
                subject: &subject,
                impact: plan.impact.unwrap_or(Impact::Medium),
                account,
                environment: plan.environment.as_deref(),
                linked_case: plan.linked,
            },
            &self.now,
        )?;
        let mail_id =
            self.journal(journal, prepared, Some(mail), Outcome::Created, Some(case), plan.note.as_deref())?;
        let on_behalf = plan.contact != *sender;
        case_store::add_participant(self.tx, case, sender, ParticipantRole::Requester, "sender", None, &self.now)?;
        let via = if plan.forwarded.is_some() {
            "forward"
        } else if on_behalf {
            "contact-line"
        } else {
            "sender"
        };
        case_store::add_participant(
            self.tx,
            case,
            &plan.contact,
            ParticipantRole::Contact,
            via,
            Some(sender),
            &self.now,
        )?;

        // The first thread entry: the customer's words (from the original when forwarded).
        let first = match &plan.forwarded {
            Some(f) => NewMessage {
                case,
                mail_id: Some(mail_id),
                message_id: mail.message_id.as_deref(),
                kind: MessageKind::Customer,
                // The original's author wrote these words (usually also the contact).
                from: Some(f.from.as_ref().map_or(&plan.contact, |m| &m.address)),
                body: description,
            },
            None => NewMessage {
                case,
                mail_id: Some(mail_id),
                message_id: mail.message_id.as_deref(),
                kind: if plan.staff_side { MessageKind::Staff } else { MessageKind::Customer },
                from: Some(sender),
                body: description,
            },
        };
        let message = casework::add_message(self.tx, blobs, &first, attachments, &self.now)?;
        self.events.push(Event::Created { case, message });
        // What the forwarder wrote above the forwarded part stays internal.
        if let Some(f) = &plan.forwarded {
            let preamble = strip_field_lines(&f.preamble);
            if !preamble.is_empty() {
                let note = NewMessage {
                    case,
                    mail_id: Some(mail_id),
                    message_id: None,
                    kind: MessageKind::Note,
                    from: Some(sender),
                    body: &preamble,
                };
                casework::add_message(self.tx, blobs, &note, &[], &self.now)?;
            }
        }
        if let Some(closed) = plan.linked {
            self.notice(mail, Some(case), Notice::FollowUpOpened { closed });
        }
        // When a Contact: line named someone else, the original's author still follows the case.
        let author = plan.forwarded.as_ref().and_then(|f| f.from.as_ref());
        let mut budget = casework::WatcherBudget::new(self.config);
        for mb in author.into_iter().chain(copied) {
            if mb.address != plan.contact {
                casework::add_watcher(
                    self.tx,
                    self.config,
                    case,
                    &mb.address,
                    sender,
                    if plan.forwarded.is_some() { "forward" } else { "cc" },
                    &mut budget,
                    &mut self.events,
                    &self.now,
                )?;
            }
        }
        budget.finish(self.tx, self.config, case, Some(mail_id), sender, &self.now)?;
        let mut detail = format!("opened by {sender}");
        if on_behalf {
            detail.push_str(&format!(" for {}", plan.contact));
        }
        if let Some(n) = &plan.note {
            detail.push_str(&format!("; {n}"));
        }
        mails::audit(
            self.tx,
            Some(mail_id),
            Some(case),
            Some(sender.as_str()),
            "case-created",
            Some(&detail),
            &self.now,
        )?;
        Ok(self.report(mail_id, Outcome::Created, Some(case), plan.note))
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
