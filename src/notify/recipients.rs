//! Who receives which notification: one table, [`RULES`], read as "on this event, these
//! people receive this mail". Watchers receive notifications about all case
//! interactions; customers never see internal notes; staff hear about what customers do.
//!
//! Three rules apply to every row, in [`resolve`]:
//! - system addresses never receive anything (their mail would open cases);
//! - the person who caused the event never receives it, unless the row is an answer to
//!   them (the acknowledgement of their new case, the confirmation of their `#unwatch`);
//! - one person receives one mail per event: the first row that names them decides which.

use crate::address::Address;
use crate::case::{Event, MessageKind, Notice, ParticipantRole, Status};
use crate::config::Config;

/// What happened, as far as notifications care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum On {
    /// A case was opened.
    Created,
    /// A customer, watcher or colleague of the customer wrote on the thread.
    CustomerReply,
    /// An analyst answered publicly.
    StaffReply,
    /// An analyst added an internal note.
    Note,
    WatcherAdded,
    WatcherRemoved,
    /// New → Open.
    PickedUp,
    /// → Resolved: a solution waits for the customer's verdict.
    Resolved,
    /// Resolved → Open.
    Reopened,
    /// → Closed.
    Closed,
    /// Impact (or another field) changed.
    FieldChanged,
    /// Answers to the sender of a mail ([`Notice`]).
    NotApplied,
    FollowUpOpened,
    CommandRefused,
    ReasonRequired,
    CaseList,
    /// A closed case's survey is offered to its requester or contact.
    Survey,
    /// A notification bounced: staff are told (once per address, see `decide::bounce`).
    Bounced,
    /// A Resolved case closes itself soon: the people who may accept or reject are reminded.
    ClosingSoon,
}

impl On {
    /// What an event is, or `None` when it notifies nobody (an `auto` or `system` entry,
    /// a status change that is none of the four announced ones).
    pub fn of(event: &Event) -> Option<On> {
        Some(match event {
            Event::Created { .. } => On::Created,
            Event::Replied { kind: MessageKind::Customer, .. } => On::CustomerReply,
            Event::Replied { kind: MessageKind::Staff, .. } => On::StaffReply,
            Event::Replied { kind: MessageKind::Note, .. } => On::Note,
            Event::Replied { kind: MessageKind::System | MessageKind::Auto, .. } => return None,
            Event::WatcherAdded { .. } => On::WatcherAdded,
            Event::WatcherRemoved { .. } => On::WatcherRemoved,
            Event::StatusChanged { from, to, .. } => match (from, to) {
                (_, Status::Resolved) => On::Resolved,
                (_, Status::Closed) => On::Closed,
                (Status::New, Status::Open) => On::PickedUp,
                (Status::Resolved, Status::Open) => On::Reopened,
                _ => return None,
            },
            Event::FieldChanged { .. } => On::FieldChanged,
            Event::Notice { notice, .. } => match notice {
                Notice::NotApplied { .. } => On::NotApplied,
                Notice::FollowUpOpened { .. } => On::FollowUpOpened,
                Notice::CommandRefused { .. } => On::CommandRefused,
                Notice::ReasonRequired => On::ReasonRequired,
                Notice::CaseList => On::CaseList,
            },
            Event::SurveyOffered { .. } => On::Survey,
            Event::Bounced { .. } => On::Bounced,
            Event::ClosingSoon { .. } => On::ClosingSoon,
        })
    }
}

/// A group of people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Who opened the case (reported_by).
    Requester,
    /// Who the case is for (the customer; the requester unless opened on their behalf).
    Contact,
    /// Everyone watching the case.
    Watchers,
    /// The analysts' addresses in `[notify] staff_recipients`.
    Staff,
    /// The watcher the event is about (added or removed).
    TheWatcher,
    /// The author of the mail being answered (notices).
    Sender,
}

impl Who {
    /// The recipient's role as templates see it.
    pub fn role(self) -> &'static str {
        match self {
            Who::Requester => "requester",
            Who::Contact => "contact",
            Who::Watchers | Who::TheWatcher => "watcher",
            Who::Staff => "staff",
            Who::Sender => "sender",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub on: On,
    pub who: &'static [Who],
    /// The notification kind: its templates, and the `event` shown by `outbox list`.
    pub template: &'static str,
    /// Also to the person who caused the event (the row answers them).
    pub to_actor: bool,
}

use Who::{Contact, Requester, Sender, Staff, TheWatcher, Watchers};

const fn rule(on: On, who: &'static [Who], template: &'static str, to_actor: bool) -> Rule {
    Rule { on, who, template, to_actor }
}

/// Who receives what. Rows for one event are read top to bottom; a person named by an
/// earlier row does not get a later row's mail for the same event.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    //   on                   who                                       template                 also to the actor
    rule(On::Created,        &[Requester],                              "acknowledgement",       true),
    rule(On::Created,        &[Contact],                                "opened-on-your-behalf", false),
    rule(On::Created,        &[Staff],                                  "new-case",              false),
    // Watchers copied on the opening mail hear of it through WatcherAdded.
    rule(On::CustomerReply,  &[Staff],                                  "customer-reply",        false),
    rule(On::CustomerReply,  &[Watchers],                               "reply",                 false),
    rule(On::StaffReply,     &[Requester, Contact, Watchers],           "reply",                 false),
    rule(On::Note,           &[Staff],                                  "note",                  false),
    rule(On::WatcherAdded,   &[TheWatcher],                             "watcher-added",         false),
    rule(On::WatcherRemoved, &[TheWatcher],                             "watcher-removed",       true),
    rule(On::PickedUp,       &[Requester, Contact, Watchers],           "picked-up",             false),
    rule(On::Resolved,       &[Requester, Contact, Watchers],           "resolved",              false),
    rule(On::Reopened,       &[Requester, Contact, Watchers, Staff],    "reopened",              false),
    rule(On::Closed,         &[Requester, Contact, Watchers, Staff],    "closed",                false),
    rule(On::FieldChanged,   &[Requester, Contact, Watchers],           "field-changed",         false),
    rule(On::NotApplied,     &[Sender],                                 "not-applied",           true),
    rule(On::FollowUpOpened, &[Sender],                                 "follow-up-opened",      true),
    rule(On::CommandRefused, &[Sender],                                 "command-refused",       true),
    rule(On::ReasonRequired, &[Sender],                                 "reason-required",       true),
    rule(On::CaseList,       &[Sender],                                 "case-list",             true),
    rule(On::Survey,         &[Sender],                                 "survey",                true),
    rule(On::Bounced,        &[Staff],                                  "bounced",               false),
    rule(On::ClosingSoon,    &[Requester, Contact],                     "closing-soon",          false),
];

/// One person a notification goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub rule: &'static Rule,
    pub address: Address,
    /// The group that named them.
    pub via: Who,
}

/// The people around a case, and the event's own addresses.
#[derive(Debug, Clone, Default)]
pub struct People<'a> {
    /// Active participants of the case (after the event).
    pub participants: &'a [(Address, ParticipantRole)],
    /// The watcher an added/removed event is about.
    pub the_watcher: Option<&'a Address>,
    /// The addressee of a notice.
    pub sender: Option<&'a Address>,
    /// Who caused the event.
    pub actor: Option<&'a Address>,
}

/// Everyone who receives a notification for an event of kind `on`, in table order.
pub fn resolve(config: &Config, on: On, people: &People<'_>) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for rule in RULES.iter().filter(|r| r.on == on) {
        for &who in rule.who {
            for address in members(config, who, people) {
                let is_actor = people.actor == Some(address);
                if config.is_system_address(address)
                    || (is_actor && !rule.to_actor)
                    || out.iter().any(|r| r.address == *address)
                {
                    continue;
                }
                out.push(Recipient { rule, address: address.clone(), via: who });
            }
        }
    }
    out
}

fn members<'a>(config: &'a Config, who: Who, people: &People<'a>) -> Vec<&'a Address> {
    let with_role = |role: ParticipantRole| -> Vec<&'a Address> {
        people.participants.iter().filter(|(_, r)| *r == role).map(|(a, _)| a).collect()
    };
    match who {
        Who::Requester => with_role(ParticipantRole::Requester),
        Who::Contact => with_role(ParticipantRole::Contact),
        Who::Watchers => with_role(ParticipantRole::Watcher),
        Who::Staff => config.notify.staff_recipients.iter().collect(),
        Who::TheWatcher => people.the_watcher.into_iter().collect(),
        Who::Sender => people.sender.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        Config::from_toml(
            r#"system_addresses = ["support@example.com", "help@example.com"]
               staff = ["ann@support.example.com", "bob@support.example.com", "@support.example.com"]"#,
            Path::new("/x/casegate.toml"),
        )
        .unwrap()
    }

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    /// (address, template) pairs, in order.
    fn who_gets(on: On, participants: &[(&str, ParticipantRole)], actor: Option<&str>) -> Vec<(String, &'static str)> {
        let participants: Vec<(Address, ParticipantRole)> = participants.iter().map(|(s, r)| (a(s), *r)).collect();
        let actor = actor.map(a);
        let people = People { participants: &participants, actor: actor.as_ref(), ..Default::default() };
        resolve(&config(), on, &people).into_iter().map(|r| (r.address.to_string(), r.rule.template)).collect()
    }

    use ParticipantRole::{Contact as C, Requester as R, Watcher as W};
    const CASE: &[(&str, ParticipantRole)] = &[
        ("jane@customer.example", R),
        ("jane@customer.example", C),
        ("bob@customer.example", W),
        ("carol@partner.example", W),
    ];

    #[test]
    fn watchers_receive_notifications_about_all_case_interactions() {
        // Every event on a case that people can see names the watchers (the opening mail's
        // watchers are told by WatcherAdded; notes are internal; answers are personal, and
        // so is the survey, which asks the requester and contact only).
        let private = [On::Created, On::Note, On::WatcherAdded, On::WatcherRemoved, On::Bounced];
        // The reminder before a case closes itself asks for a verdict only the requester
        // and contact may give.
        let answers = [
            On::NotApplied,
            On::FollowUpOpened,
            On::CommandRefused,
            On::ReasonRequired,
            On::CaseList,
            On::Survey,
            On::ClosingSoon,
        ];
        let mut seen = std::collections::HashSet::new();
        for r in RULES {
            seen.insert(r.on);
        }
        for on in seen {
            if private.contains(&on) || answers.contains(&on) {
                continue;
            }
            assert!(
                RULES.iter().any(|r| r.on == on && r.who.contains(&Watchers)),
                "{on:?} does not reach the watchers"
            );
        }
    }

    #[test]
    fn a_new_case_is_acknowledged_to_its_requester_and_announced_to_staff() {
        let got = who_gets(On::Created, &CASE[..2], Some("jane@customer.example"));
        assert_eq!(
            got,
            [
                ("jane@customer.example".into(), "acknowledgement"),
                ("ann@support.example.com".into(), "new-case"),
                ("bob@support.example.com".into(), "new-case"),
            ],
            "the contact who is also the requester gets one mail, not two"
        );
    }

    #[test]
    fn a_case_opened_on_behalf_tells_the_contact_and_skips_the_acting_analyst_alert() {
        let got = who_gets(
            On::Created,
            &[("ann@support.example.com", R), ("jane@customer.example", C)],
            Some("ann@support.example.com"),
        );
        assert_eq!(
            got,
            [
                ("ann@support.example.com".into(), "acknowledgement"),
                ("jane@customer.example".into(), "opened-on-your-behalf"),
                ("bob@support.example.com".into(), "new-case"),
            ]
        );
    }

    #[test]
    fn a_customer_reply_goes_to_staff_and_the_other_watchers_never_back_to_its_author() {
        let got = who_gets(On::CustomerReply, CASE, Some("bob@customer.example"));
        assert_eq!(
            got,
            [
                ("ann@support.example.com".into(), "customer-reply"),
                ("bob@support.example.com".into(), "customer-reply"),
                ("carol@partner.example".into(), "reply"),
            ]
        );
    }

    #[test]
    fn a_staff_reply_goes_to_requester_contact_and_watchers() {
        let got = who_gets(On::StaffReply, CASE, Some("ann@support.example.com"));
        let to: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(to, ["jane@customer.example", "bob@customer.example", "carol@partner.example"]);
        assert!(got.iter().all(|(_, t)| *t == "reply"));
    }

    #[test]
    fn internal_notes_reach_staff_only() {
        let got = who_gets(On::Note, CASE, Some("ann@support.example.com"));
        assert_eq!(got, [("bob@support.example.com".into(), "note")]);
        for r in RULES.iter().filter(|r| r.on == On::Note) {
            assert_eq!(r.who, [Staff], "a note must never name a customer group");
        }
    }

    #[test]
    fn system_addresses_are_never_notified_even_when_they_slipped_into_a_case() {
        let got = who_gets(On::StaffReply, &[("help@example.com", W), ("jane@customer.example", R)], None);
        assert_eq!(got, [("jane@customer.example".into(), "reply")]);
    }

    #[test]
    fn status_changes_map_to_the_four_announced_transitions() {
        let ev = |from, to| Event::StatusChanged { case: 1, from, to, by: None, message: None };
        assert_eq!(On::of(&ev(Status::New, Status::Open)), Some(On::PickedUp));
        assert_eq!(On::of(&ev(Status::Open, Status::Resolved)), Some(On::Resolved));
        assert_eq!(On::of(&ev(Status::New, Status::Resolved)), Some(On::Resolved));
        assert_eq!(On::of(&ev(Status::Resolved, Status::Open)), Some(On::Reopened));
        assert_eq!(On::of(&ev(Status::Resolved, Status::Closed)), Some(On::Closed));
        assert_eq!(On::of(&ev(Status::Open, Status::Open)), None);
        let auto = Event::Replied { case: 1, message: 1, kind: MessageKind::Auto, from: None };
        assert_eq!(On::of(&auto), None);
    }

    #[test]
    fn reopening_and_closing_tell_everyone_but_the_actor() {
        let got = who_gets(On::Closed, CASE, Some("jane@customer.example"));
        let to: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            to,
            ["bob@customer.example", "carol@partner.example", "ann@support.example.com", "bob@support.example.com"]
        );
    }

    #[test]
    fn watcher_events_reach_that_watcher_and_removal_confirms_to_the_actor() {
        let w = a("carol@partner.example");
        let people = People { the_watcher: Some(&w), actor: Some(&w), ..Default::default() };
        let got = resolve(&config(), On::WatcherRemoved, &people);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].address.as_str(), got[0].rule.template), ("carol@partner.example", "watcher-removed"));
        let by = a("jane@customer.example");
        let people = People { the_watcher: Some(&w), actor: Some(&by), ..Default::default() };
        let got = resolve(&config(), On::WatcherAdded, &people);
        assert_eq!((got[0].address.as_str(), got[0].via), ("carol@partner.example", TheWatcher));
    }

    #[test]
    fn every_template_named_by_the_table_exists() {
        for r in RULES {
            assert!(super::super::templates::KINDS.contains(&r.template), "{}", r.template);
        }
    }
}
