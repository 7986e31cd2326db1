//! Actions on an existing case — from a mail or from `casegate case …`, by the same code:
//! every action is checked with [`workflow::transition`] first, then all of them are
//! planned, or none (an unknown or refused command changes nothing). Planned: the thread
//! entry, status and impact changes with their `system` lines, watchers, audit records
//! and the events that notify people.

use std::borrow::Cow;

use super::{CaseFacts, CaseRef, Effect, Entry, Plan};
use crate::address::Address;
use crate::authorize::Standing;
use crate::case::{AuditAction, Event, MessageKind, ParticipantRole, Status};
use crate::config::Config;
use crate::parse::Attachment;
use crate::workflow::{self, Action, Refusal};

/// What someone asks for on a case.
#[derive(Debug, Clone)]
pub struct Request<'m> {
    pub actions: Vec<Action>,
    /// Text for the thread (a reply, a note, a solution, a reason); may be empty.
    pub text: Cow<'m, str>,
    /// The Message-ID of the mail carrying the request, if any.
    pub message_id: Option<&'m str>,
    pub attachments: &'m [Attachment],
    /// Addresses from To/Cc who become watchers if the sender may add watchers.
    pub copied: Vec<Address>,
    /// How the request came: "mail" or "cli" (for the audit log).
    pub channel: &'static str,
}

/// The command words that took effect, for the report.
pub type Applied = Vec<&'static str>;

/// Plans `req` by `actor` (whose standing on the case is `standing`) into `plan`, or
/// refuses all of it: on `Err` the plan is left as it was.
pub fn plan<'m>(
    plan: &mut Plan<'m>,
    config: &Config,
    case: &CaseFacts,
    actor: &Address,
    standing: &Standing,
    req: Request<'m>,
) -> Result<Applied, Vec<(String, Refusal)>> {
    let note = req.actions.contains(&Action::Note);
    let has_text = !req.text.trim().is_empty() || !req.attachments.is_empty();
    let status = check(case.row.status, &req, has_text && !note, actor, standing)?;
    let id = case.row.id;
    let at = CaseRef::Existing(id);
    let mut people = People::of(case);

    let message = (has_text || note).then(|| {
        let kind = if note {
            MessageKind::Note
        } else if standing.staff || standing.admin {
            MessageKind::Staff
        } else {
            MessageKind::Customer
        };
        let body = match req.text {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
            Cow::Owned(t) => Cow::Owned(t.trim().to_string()),
        };
        let from = Some(actor.clone());
        let entry = plan.entry(Entry {
            case: at,
            kind,
            from: from.clone(),
            body,
            message_id: req.message_id,
            attachments: req.attachments,
        });
        plan.announce(Event::Replied { case: at, message: entry, kind, from });
        plan.audit(Some(at), Some(actor), entry_action(kind), Some(req.channel.to_string()));
        entry
    });

    let mut watchers = Watchers::new(config);
    let mut applied = Vec::new();
    for action in &req.actions {
        match action {
            Action::Impact(level) => {
                plan.effects.push(Effect::SetImpact { case: id, impact: *level });
                system_line(plan, at, format!("Impact set to {level} by {actor}"));
                let by = Some(actor.clone());
                plan.announce(Event::FieldChanged { case: at, field: "impact".into(), value: level.to_string(), by });
                plan.audit(Some(at), Some(actor), AuditAction::ImpactChanged, Some(level.as_str().to_string()));
            }
            Action::Watch(who) => watchers.add(plan, &mut people, at, who, actor, "command"),
            Action::Unwatch(who) => {
                let who = who.as_ref().unwrap_or(actor);
                if people.remove(who, ParticipantRole::Watcher) {
                    plan.effects.push(Effect::RemoveWatcher { case: id, address: who.clone() });
                    plan.announce(Event::WatcherRemoved { case: at, address: who.clone() });
                    plan.audit(Some(at), Some(actor), AuditAction::WatcherRemoved, Some(who.to_string()));
                }
            }
            _ => {}
        }
        applied.push(action.word());
    }
    // Watchers from To/Cc, for senders who may add watchers.
    if workflow::allowed(workflow::Kind::Watch, standing) {
        for who in &req.copied {
            watchers.add(plan, &mut people, at, who, actor, "cc");
        }
    }
    watchers.finish(plan, at, actor);

    let from = case.row.status;
    if status == from {
        plan.effects.push(Effect::Touch(id));
    } else {
        plan.effects.push(Effect::SetStatus { case: id, to: status });
        system_line(plan, at, status_line(from, status, actor, &req.actions));
        plan.announce(Event::StatusChanged { case: at, from, to: status, by: Some(actor.clone()), message });
        plan.audit(Some(at), Some(actor), AuditAction::StatusChanged, Some(format!("{from} -> {status}")));
    }
    Ok(applied)
}

/// Checks every action in order (the thread entry is one too, a reply, when there is
/// text that is not a note) and returns the status they lead to, or every refusal.
fn check(
    status: Status,
    req: &Request<'_>,
    reply: bool,
    actor: &Address,
    standing: &Standing,
) -> Result<Status, Vec<(String, Refusal)>> {
    let mut status = status;
    let mut refusals = Vec::new();
    for action in reply.then_some(&Action::Reply).into_iter().chain(&req.actions) {
        match workflow::transition(status, action, actor, standing) {
            Ok(t) => status = t.status.unwrap_or(status),
            Err(refusal) => refusals.push((format!("#{}", action.word()), refusal)),
        }
    }
    if refusals.is_empty() {
        Ok(status)
    } else {
        Err(refusals)
    }
}

fn entry_action(kind: MessageKind) -> AuditAction {
    match kind {
        MessageKind::Note => AuditAction::NoteAdded,
        MessageKind::Staff => AuditAction::StaffReplied,
        _ => AuditAction::Replied,
    }
}

/// A `system` thread entry: a status or field change, in words.
fn system_line(plan: &mut Plan<'_>, case: CaseRef, line: String) {
    let body = Cow::Owned(line);
    plan.entry(Entry { case, kind: MessageKind::System, from: None, body, message_id: None, attachments: &[] });
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

/// Who takes part in a case as the plan goes: the snapshot's participants, with what the
/// plan adds and removes.
pub(super) struct People {
    active: Vec<(Address, ParticipantRole)>,
}

impl People {
    pub(super) fn of(case: &CaseFacts) -> People {
        People { active: case.participants.clone() }
    }

    pub(super) fn new(active: Vec<(Address, ParticipantRole)>) -> People {
        People { active }
    }

    fn takes_part(&self, who: &Address) -> bool {
        self.active.iter().any(|(a, _)| a == who)
    }

    fn add(&mut self, who: &Address, role: ParticipantRole) {
        self.active.push((who.clone(), role));
    }

    /// Whether `who` held `role` (and now does not).
    fn remove(&mut self, who: &Address, role: ParticipantRole) -> bool {
        let before = self.active.len();
        self.active.retain(|(a, r)| !(a == who && *r == role));
        self.active.len() < before
    }
}

/// Adds watchers, at most `limits.max_watchers_per_mail` for one mail or command: the
/// addresses beyond are counted, not added, and recorded once in the audit log.
pub(super) struct Watchers<'c> {
    config: &'c Config,
    left: usize,
    skipped: usize,
}

impl<'c> Watchers<'c> {
    pub(super) fn new(config: &'c Config) -> Watchers<'c> {
        Watchers { config, left: config.max_watchers_per_mail, skipped: 0 }
    }

    /// Adds `who` unless they are a system address, already take part, or the budget is
    /// spent.
    pub(super) fn add(
        &mut self,
        plan: &mut Plan<'_>,
        people: &mut People,
        case: CaseRef,
        who: &Address,
        by: &Address,
        via: &'static str,
    ) {
        if self.config.is_system_address(who) || who == by {
            return;
        }
        if self.left == 0 {
            self.skipped += 1;
            return;
        }
        if people.takes_part(who) {
            return;
        }
        people.add(who, ParticipantRole::Watcher);
        self.left -= 1;
        let (address, by_whom) = (who.clone(), Some(by.clone()));
        plan.effects.push(Effect::AddParticipant {
            case,
            address: address.clone(),
            role: ParticipantRole::Watcher,
            via,
            by: by_whom.clone(),
        });
        plan.announce(Event::WatcherAdded { case, address, by: by_whom });
        plan.audit(Some(case), Some(by), AuditAction::WatcherAdded, Some(format!("{who} via {via}")));
    }

    /// Records (once) that addresses were left out, if any were.
    pub(super) fn finish(self, plan: &mut Plan<'_>, case: CaseRef, by: &Address) {
        if self.skipped > 0 {
            let detail = format!(
                "{} more addresses were not added as watchers (limits.max_watchers_per_mail = {})",
                self.skipped, self.config.max_watchers_per_mail
            );
            plan.audit(Some(case), Some(by), AuditAction::WatchersLimited, Some(detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::case::{AuditAction, CaseRow, Impact, Outcome};
    use crate::decide::EntryRef;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn config(extra: &str) -> Config {
        let text = format!("system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n{extra}");
        Config::from_toml(&text, Path::new("/casegate.toml")).unwrap()
    }

    fn case(status: Status) -> CaseFacts {
        CaseFacts {
            row: CaseRow {
                id: 42,
                subject: "VPN".into(),
                status,
                impact: Impact::Medium,
                account: None,
                environment: None,
                linked_case: None,
                created_at: String::new(),
                updated_at: String::new(),
            },
            participants: vec![
                (addr("jane@customer.example"), ParticipantRole::Requester),
                (addr("bob@customer.example"), ParticipantRole::Watcher),
            ],
        }
    }

    fn staff() -> Standing {
        Standing { staff: true, ..Standing::default() }
    }

    fn request(actions: Vec<Action>, text: &str) -> Request<'_> {
        Request { actions, text: text.into(), message_id: None, attachments: &[], copied: vec![], channel: "cli" }
    }

    #[test]
    fn a_staff_solution_is_one_entry_shown_with_the_status_change() {
        let (c, ann) = (config(""), addr("ann@support.example.com"));
        let mut plan = Plan::new(Outcome::Command, Some(CaseRef::Existing(42)), None);
        let applied = super::plan(
            &mut plan,
            &c,
            &case(Status::Open),
            &ann,
            &staff(),
            request(vec![Action::Resolve], "  Update to 5.3.2.  "),
        )
        .unwrap();
        assert_eq!(applied, ["resolve"]);
        let Effect::AddEntry(entry) = &plan.effects[0] else { panic!("{plan:?}") };
        assert_eq!((entry.kind, entry.body.as_ref()), (MessageKind::Staff, "Update to 5.3.2."));
        assert!(plan.effects.iter().any(|e| matches!(e, Effect::SetStatus { case: 42, to: Status::Resolved })));
        let status = plan.events().find(|e| matches!(e, Event::StatusChanged { .. })).unwrap();
        assert_eq!(
            *status,
            Event::StatusChanged {
                case: CaseRef::Existing(42),
                from: Status::Open,
                to: Status::Resolved,
                by: Some(ann),
                message: Some(EntryRef(0))
            }
        );
    }

    #[test]
    fn one_refused_action_refuses_all_and_plans_nothing() {
        let c = config("");
        let jane = addr("jane@customer.example");
        let standing = Standing { requester: true, ..Standing::default() };
        let mut plan = Plan::new(Outcome::Replied, Some(CaseRef::Existing(42)), None);
        let refused = super::plan(
            &mut plan,
            &c,
            &case(Status::Open),
            &jane,
            &standing,
            request(vec![Action::Watch(addr("x@customer.example")), Action::Resolve], "my fix"),
        )
        .unwrap_err();
        assert_eq!(refused.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(), ["#resolve"]);
        assert!(plan.effects.is_empty());
    }

    #[test]
    fn watchers_are_added_once_within_the_limit_and_the_rest_counted() {
        let c = config("[limits]\nmax_watchers_per_mail = 2");
        let ann = addr("ann@support.example.com");
        let actions =
            ["bob@customer.example", "a@x.example", "a@x.example", "b@x.example", "c@x.example", "support@example.com"]
                .iter()
                .map(|a| Action::Watch(addr(a)))
                .chain([Action::Unwatch(Some(addr("bob@customer.example")))])
                .collect();
        let mut plan = Plan::new(Outcome::Command, None, None);
        super::plan(&mut plan, &c, &case(Status::Open), &ann, &staff(), request(actions, "")).unwrap();
        let added: Vec<&str> = plan
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::AddParticipant { address, .. } => Some(address.as_str()),
                _ => None,
            })
            .collect();
        // bob watches already; a@ once; b@ makes two; c@ is over the limit; the support
        // address is never a watcher; bob is then removed.
        assert_eq!(added, ["a@x.example", "b@x.example"]);
        assert!(plan
            .effects
            .iter()
            .any(|e| matches!(e, Effect::RemoveWatcher { address, .. } if address.as_str() == "bob@customer.example")));
        let limited = plan.effects.iter().find_map(|e| match e {
            Effect::Audit(a) if a.action == AuditAction::WatchersLimited => a.detail.clone(),
            _ => None,
        });
        assert!(limited.unwrap().starts_with("1 more addresses"));
        // Staff acting on a New case would pick it up; on an Open one the status stays.
        assert!(plan.effects.iter().any(|e| matches!(e, Effect::Touch(42))));
    }
}
