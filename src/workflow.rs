//! The case workflow as a pure function: who may take which action, and what it does to
//! the status. No I/O — every decision about a case (`decide::request`) checks its
//! actions with [`transition`] first.
//!
//! ```text
//!            staff acts                staff resolves              requester/contact accepts
//!   New ────────────────▶ Open ───────────────────────▶ Resolved ─────────────────────────▶ Closed
//!    │                     ▲                              │                                    ▲
//!    │                     └──── requester/contact ───────┘                                    │
//!    │                           rejects (with a reason)                                       │
//!    └──────────── requester, contact, staff or admin close (from New, Open or Resolved) ──────┘
//!   Closed is final: later mail opens a new case that links it.
//! ```
//!
//! The permission table ([`PERMISSIONS`]) is the single source of truth; the README shows
//! the same table and a test checks they agree.

use crate::address::Address;
use crate::authorize::Standing;
use crate::case::{Impact, Status};

/// Something a person asks to be done to a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A public message on the thread.
    Reply,
    /// An internal note, never sent to customers.
    Note,
    /// Propose a solution (the message text).
    Resolve,
    /// Accept the proposed solution.
    Accept,
    /// Reject the proposed solution; the reason is required.
    Reject { reason: Option<String> },
    /// Close the case.
    Close,
    /// Pick the case up, or re-open a resolved case.
    Open,
    /// Change the impact.
    Impact(Impact),
    /// Add someone as a watcher.
    Watch(Address),
    /// Stop someone (by default the sender) watching.
    Unwatch(Option<Address>),
}

impl Action {
    /// The command word, as written in mail (`#accept`).
    pub fn word(&self) -> &'static str {
        match self {
            Action::Reply => "reply",
            Action::Note => "note",
            Action::Resolve => "resolve",
            Action::Accept => "accept",
            Action::Reject { .. } => "reject",
            Action::Close => "close",
            Action::Open => "open",
            Action::Impact(_) => "impact",
            Action::Watch(_) => "watch",
            Action::Unwatch(_) => "unwatch",
        }
    }

    fn kind(&self, sender: &Address) -> Kind {
        match self {
            Action::Reply => Kind::Reply,
            Action::Note => Kind::Note,
            Action::Resolve => Kind::Resolve,
            Action::Accept => Kind::Accept,
            Action::Reject { .. } => Kind::Reject,
            Action::Close => Kind::Close,
            Action::Open => Kind::Open,
            Action::Impact(_) => Kind::Impact,
            Action::Watch(_) => Kind::Watch,
            Action::Unwatch(None) => Kind::UnwatchSelf,
            Action::Unwatch(Some(a)) if a == sender => Kind::UnwatchSelf,
            Action::Unwatch(Some(_)) => Kind::UnwatchOther,
        }
    }
}

/// The columns of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requester,
    Contact,
    Watcher,
    SameAccount,
    Staff,
    Admin,
    Stranger,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::Requester, Role::Contact, Role::Watcher, Role::SameAccount, Role::Staff, Role::Admin, Role::Stranger];

    pub fn name(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Contact => "contact",
            Role::Watcher => "watcher",
            Role::SameAccount => "same-account",
            Role::Staff => "staff",
            Role::Admin => "admin",
            Role::Stranger => "stranger",
        }
    }

    /// Whether a sender with this standing holds the role.
    fn held_by(self, s: &Standing) -> bool {
        match self {
            Role::Requester => s.requester,
            Role::Contact => s.contact,
            Role::Watcher => s.watcher,
            Role::SameAccount => s.same_account,
            Role::Staff => s.staff,
            Role::Admin => s.admin,
            Role::Stranger => !s.is_participant(),
        }
    }
}

/// The rows of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reply,
    Note,
    Resolve,
    Accept,
    Reject,
    Close,
    Open,
    Impact,
    Watch,
    UnwatchSelf,
    UnwatchOther,
}

/// Who may do what. Columns: requester, contact, watcher, same-account, staff, admin,
/// stranger. A sender holding several roles may do what any of them may. A stranger may
/// do nothing: their mail on a case is quarantined (`sender-not-participant`), and as
/// they watch nothing there is nothing for them to unwatch.
#[rustfmt::skip]
pub const PERMISSIONS: &[(Kind, &str, [bool; 7])] = &[
    //                                         req    contact watcher account staff  admin  stranger
    (Kind::Reply,        "reply on the thread", [true,  true,  true,  true,  true,  true,  false]),
    (Kind::Note,         "#note (internal)",    [false, false, false, false, true,  true,  false]),
    (Kind::Resolve,      "#resolve",            [false, false, false, false, true,  true,  false]),
    (Kind::Accept,       "#accept",             [true,  true,  false, false, false, false, false]),
    (Kind::Reject,       "#reject <reason>",    [true,  true,  false, false, false, false, false]),
    (Kind::Close,        "#close",              [true,  true,  false, false, true,  true,  false]),
    (Kind::Open,         "#open",               [false, false, false, false, true,  true,  false]),
    (Kind::Impact,       "#impact <level>",     [false, false, false, false, true,  true,  false]),
    (Kind::Watch,        "#watch <addr>, Cc",   [true,  true,  true,  true,  true,  true,  false]),
    (Kind::UnwatchSelf,  "#unwatch (oneself)",  [true,  true,  true,  true,  true,  true,  false]),
    (Kind::UnwatchOther, "#unwatch <addr>",     [false, false, false, false, true,  true,  false]),
];

/// Whether a sender with this standing may take this kind of action.
pub fn allowed(kind: Kind, standing: &Standing) -> bool {
    let Some((_, _, cells)) = PERMISSIONS.iter().find(|(k, _, _)| *k == kind) else {
        return false;
    };
    Role::ALL.iter().zip(cells).any(|(role, &ok)| ok && role.held_by(standing))
}

/// What an allowed action does to the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new status, when it changes.
    pub status: Option<Status>,
}

/// Why an action was not taken; phrased for the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed { action: &'static str, role: &'static str },
    WrongStatus { action: &'static str, status: Status, hint: &'static str },
    ReasonRequired,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAllowed { action, role } => {
                let who = match *role {
                    "requester" => "the requester of",
                    "contact" => "the contact of",
                    "watcher" => "a watcher of",
                    "same-account" => "a member of the account of",
                    "staff" => "staff on",
                    "admin" => "an admin on",
                    _ => "not a participant of",
                };
                write!(f, "#{action} is not available to you (you are {who} this case)")
            }
            Refusal::WrongStatus { action, status, hint } => {
                write!(f, "#{action} does not apply to a case that is {status}; {hint}")
            }
            Refusal::ReasonRequired => write!(f, "#reject needs a reason, e.g. \"#reject the error still appears\""),
        }
    }
}

/// Checks an action on a case in `status` by a sender with `standing`.
pub fn transition(
    status: Status,
    action: &Action,
    sender: &Address,
    standing: &Standing,
) -> Result<Transition, Refusal> {
    let kind = action.kind(sender);
    let word = action.word();
    if !allowed(kind, standing) {
        return Err(Refusal::NotAllowed { action: word, role: standing.role_name() });
    }
    // Closed is final; the ingest path turns mail on a closed case into a follow-up case
    // before it gets here, so this guards the CLI and commands.
    if status == Status::Closed && !matches!(kind, Kind::UnwatchSelf | Kind::UnwatchOther) {
        return Err(Refusal::WrongStatus {
            action: word,
            status,
            hint: "closed cases are final; write a new mail to open a new case",
        });
    }
    let staff_side = standing.staff || standing.admin;
    let to = match (kind, status) {
        // Any action by staff on a New case picks it up.
        (Kind::Reply | Kind::Note | Kind::Impact | Kind::Watch | Kind::UnwatchOther | Kind::Open, Status::New)
            if staff_side =>
        {
            Some(Status::Open)
        }
        (Kind::Open, Status::Resolved) => Some(Status::Open),
        (Kind::Open, _) => None,
        (Kind::Resolve, Status::New | Status::Open) => Some(Status::Resolved),
        (Kind::Resolve, _) => {
            return Err(Refusal::WrongStatus {
                action: word,
                status,
                hint: "a solution is already proposed; #open it first to change it",
            })
        }
        (Kind::Accept, Status::Resolved) => Some(Status::Closed),
        (Kind::Reject, Status::Resolved) => match action {
            Action::Reject { reason: Some(r) } if !r.trim().is_empty() => Some(Status::Open),
            _ => return Err(Refusal::ReasonRequired),
        },
        (Kind::Accept | Kind::Reject, _) => {
            return Err(Refusal::WrongStatus {
                action: word,
                status,
                hint: "there is no proposed solution to answer yet",
            })
        }
        (Kind::Close, _) => Some(Status::Closed),
        _ => None,
    };
    Ok(Transition { status: to.filter(|t| *t != status) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(role: Role) -> Standing {
        let mut s = Standing::default();
        match role {
            Role::Requester => s.requester = true,
            Role::Contact => s.contact = true,
            Role::Watcher => s.watcher = true,
            Role::SameAccount => s.same_account = true,
            Role::Staff => s.staff = true,
            Role::Admin => s.admin = true,
            Role::Stranger => {}
        }
        s
    }

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn every_cell_of_the_permission_table_is_enforced() {
        let me = addr("me@x.example");
        let actions = [
            (Kind::Reply, Action::Reply),
            (Kind::Note, Action::Note),
            (Kind::Resolve, Action::Resolve),
            (Kind::Accept, Action::Accept),
            (Kind::Reject, Action::Reject { reason: Some("still broken".into()) }),
            (Kind::Close, Action::Close),
            (Kind::Open, Action::Open),
            (Kind::Impact, Action::Impact(Impact::High)),
            (Kind::Watch, Action::Watch(addr("w@x.example"))),
            (Kind::UnwatchSelf, Action::Unwatch(None)),
            (Kind::UnwatchOther, Action::Unwatch(Some(addr("w@x.example")))),
        ];
        assert_eq!(actions.len(), PERMISSIONS.len());
        for (kind, action) in &actions {
            let (_, _, cells) = PERMISSIONS.iter().find(|(k, _, _)| k == kind).unwrap();
            for (role, &ok) in Role::ALL.iter().zip(cells) {
                // A status in which the action is meaningful, so only permission decides.
                let status = match kind {
                    Kind::Accept | Kind::Reject | Kind::Open => Status::Resolved,
                    _ => Status::Open,
                };
                let result = transition(status, action, &me, &standing(*role));
                let refused = matches!(result, Err(Refusal::NotAllowed { .. }));
                assert_eq!(
                    !refused,
                    ok,
                    "{kind:?} by {} should be {}: {result:?}",
                    role.name(),
                    if ok { "allowed" } else { "refused" }
                );
            }
        }
    }

    #[test]
    fn status_transitions() {
        let me = addr("me@x.example");
        let staff = standing(Role::Staff);
        let req = standing(Role::Requester);
        let to = |status, action: Action, s: &Standing| transition(status, &action, &me, s).map(|e| e.status);
        // New → Open when staff first acts.
        assert_eq!(to(Status::New, Action::Reply, &staff), Ok(Some(Status::Open)));
        assert_eq!(to(Status::New, Action::Note, &staff), Ok(Some(Status::Open)));
        assert_eq!(to(Status::New, Action::Open, &staff), Ok(Some(Status::Open)));
        assert_eq!(to(Status::New, Action::Reply, &req), Ok(None), "a customer reply does not pick the case up");
        assert_eq!(to(Status::Open, Action::Reply, &staff), Ok(None));
        // Open → Resolved.
        assert_eq!(to(Status::Open, Action::Resolve, &staff), Ok(Some(Status::Resolved)));
        assert_eq!(to(Status::New, Action::Resolve, &staff), Ok(Some(Status::Resolved)));
        assert!(matches!(to(Status::Resolved, Action::Resolve, &staff), Err(Refusal::WrongStatus { .. })));
        // Resolved → Closed on accept, → Open on reject with a reason.
        assert_eq!(to(Status::Resolved, Action::Accept, &req), Ok(Some(Status::Closed)));
        assert_eq!(to(Status::Resolved, Action::Reject { reason: Some("no".into()) }, &req), Ok(Some(Status::Open)));
        assert_eq!(to(Status::Resolved, Action::Reject { reason: None }, &req), Err(Refusal::ReasonRequired));
        assert_eq!(
            to(Status::Resolved, Action::Reject { reason: Some("  ".into()) }, &req),
            Err(Refusal::ReasonRequired)
        );
        assert!(matches!(to(Status::Open, Action::Accept, &req), Err(Refusal::WrongStatus { .. })));
        assert!(matches!(
            to(Status::New, Action::Reject { reason: Some("x".into()) }, &req),
            Err(Refusal::WrongStatus { .. })
        ));
        // Staff re-opens a resolved case.
        assert_eq!(to(Status::Resolved, Action::Open, &staff), Ok(Some(Status::Open)));
        // Close from New, Open and Resolved; Closed is final.
        for s in [Status::New, Status::Open, Status::Resolved] {
            assert_eq!(to(s, Action::Close, &req), Ok(Some(Status::Closed)));
            assert_eq!(to(s, Action::Close, &staff), Ok(Some(Status::Closed)));
        }
        for action in [Action::Reply, Action::Close, Action::Open, Action::Resolve, Action::Note] {
            assert!(matches!(
                to(Status::Closed, action, &staff),
                Err(Refusal::WrongStatus { status: Status::Closed, .. })
            ));
        }
        assert_eq!(to(Status::Closed, Action::Unwatch(None), &standing(Role::Watcher)), Ok(None));
    }

    #[test]
    fn participants_may_unwatch_themselves_but_only_staff_others() {
        let me = addr("me@x.example");
        assert!(transition(Status::Open, &Action::Unwatch(Some(me.clone())), &me, &standing(Role::Watcher)).is_ok());
        assert!(transition(Status::Open, &Action::Unwatch(None), &me, &standing(Role::SameAccount)).is_ok());
        assert!(transition(Status::Open, &Action::Unwatch(Some(addr("o@x.example"))), &me, &standing(Role::Watcher))
            .is_err());
        assert!(
            transition(Status::Open, &Action::Unwatch(Some(addr("o@x.example"))), &me, &standing(Role::Staff)).is_ok()
        );
    }

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(
            Refusal::NotAllowed { action: "resolve", role: "requester" }.to_string(),
            "#resolve is not available to you (you are the requester of this case)"
        );
        assert!(Refusal::ReasonRequired.to_string().contains("#reject needs a reason"));
    }
}
