//! The case model: statuses, impact, roles, thread-entry kinds, and the events a change
//! to a case produces (which the notification step turns into mail).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::Address;

pub mod token;

/// A case number; shown with the configured prefix as `CASE-42`.
pub type CaseId = i64;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $db:literal, $shown:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The value stored in the database.
            pub fn as_db(self) -> &'static str {
                match self { $($name::$variant => $db),+ }
            }
            /// The value shown to people and in JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $shown),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Case-insensitive; accepts the database and the display form.
            fn from_str(s: &str) -> Result<Self, String> {
                let s = s.trim();
                $(if s.eq_ignore_ascii_case($db) || s.eq_ignore_ascii_case($shown) { return Ok($name::$variant); })+
                let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                Err(format!("{s:?} is not one of {}", all.join(", ")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(
    /// New → Open → Resolved → Closed; Resolved → Open on reject; Closed is final.
    Status {
        New => "new", "New";
        Open => "open", "Open";
        Resolved => "resolved", "Resolved";
        Closed => "closed", "Closed";
    }
);

string_enum!(
    /// How badly the customer is affected.
    Impact {
        High => "high", "High";
        Medium => "medium", "Medium";
        Low => "low", "Low";
    }
);

string_enum!(
    /// What a thread entry is.
    MessageKind {
        Customer => "customer", "customer";
        Staff => "staff", "staff";
        Note => "note", "note";
        System => "system", "system";
        Auto => "auto", "auto";
    }
);

string_enum!(
    /// A person's standing on a case.
    ParticipantRole {
        Requester => "requester", "requester";
        Contact => "contact", "contact";
        Watcher => "watcher", "watcher";
    }
);

/// The outcome of one incoming mail: exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Replied,
    Command,
    Duplicate,
    Ignored,
    Quarantined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Replied => "replied",
            Outcome::Command => "command",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Quarantined => "quarantined",
        }
    }

    pub fn parse_db(s: &str) -> Option<Outcome> {
        [
            Outcome::Created,
            Outcome::Replied,
            Outcome::Command,
            Outcome::Duplicate,
            Outcome::Ignored,
            Outcome::Quarantined,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scalar fields of a case, as decisions need them.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub id: CaseId,
    pub subject: String,
    pub status: Status,
    pub impact: Impact,
    pub account: Option<String>,
    pub environment: Option<String>,
    pub linked_case: Option<CaseId>,
    pub created_at: String,
    pub updated_at: String,
}

string_enum!(
    /// Why a mail was quarantined (stable codes; the journal and the answer to the sender
    /// add the details for people).
    Reason {
        TooLarge => "too-large", "too-large";
        Unparseable => "unparseable", "unparseable";
        NoSender => "no-sender", "no-sender";
        SenderNotParticipant => "sender-not-participant", "sender-not-participant";
        /// A staff or admin address without the authentication `authserv_id` requires, on
        /// a case it does not otherwise take part in: most likely forged.
        UnauthenticatedStaff => "unauthenticated-staff", "unauthenticated-staff";
        InternalError => "internal-error", "internal-error";
        AccountNotAllowed => "account-not-allowed", "account-not-allowed";
        BadField => "bad-field", "bad-field";
        /// The receiving server marked it as spam (or it matched a `[spam]` header rule).
        Spam => "spam", "spam";
        /// DMARC failed at `authserv_id` for a sender casegate has never seen: most likely
        /// forged, and an answer would be backscatter.
        DmarcFail => "dmarc-fail", "dmarc-fail";
    }
);

string_enum!(
    /// What an audit record says happened (table `audit`, column `action`).
    AuditAction {
        CaseCreated => "case-created", "case-created";
        Replied => "replied", "replied";
        StaffReplied => "staff-replied", "staff-replied";
        NoteAdded => "note-added", "note-added";
        StatusChanged => "status-changed", "status-changed";
        ImpactChanged => "impact-changed", "impact-changed";
        WatcherAdded => "watcher-added", "watcher-added";
        WatcherRemoved => "watcher-removed", "watcher-removed";
        WatchersLimited => "watchers-limited", "watchers-limited";
        CommandRefused => "command-refused", "command-refused";
        CaseListRequested => "case-list-requested", "case-list-requested";
        AutoRecorded => "auto-recorded", "auto-recorded";
        Ignored => "ignored", "ignored";
        Quarantined => "quarantined", "quarantined";
        /// Not an outcome: the mail reused an earlier mail's Message-ID.
        MessageIdReused => "message-id-reused", "message-id-reused";
        /// Not an outcome: the mail was read despite something wrong with it (a header in
        /// an undeclared charset, a broken From line, a part that did not decode); the
        /// detail says what was wrong and how it was read.
        ReadDespite => "read-despite", "read-despite";
        SurveyInvited => "survey-invited", "survey-invited";
        SurveyAnswered => "survey-answered", "survey-answered";
        SurveyAnswerChanged => "survey-answer-changed", "survey-answer-changed";
        SurveyAnswerRefused => "survey-answer-refused", "survey-answer-refused";
        /// A notification bounced: the outbox row, the address and what the report said.
        Bounced => "bounced", "bounced";
        /// An address is not mailed for a while (hard bounce, too many soft ones).
        AddressSuppressed => "address-suppressed", "address-suppressed";
        /// Staff lifted an address's suppression.
        SuppressionLifted => "suppression-lifted", "suppression-lifted";
        /// A Resolved case's requester and contact were reminded that it closes itself;
        /// the detail is the closing time promised.
        CloseReminded => "close-reminded", "close-reminded";
        /// A case was purged (retention or `casegate purge`): the only record left of it,
        /// with its number and dates, nothing of its content.
        CasePurged => "case-purged", "case-purged";
        /// One person's personal data was erased (`casegate erase`): how much, not whose.
        PersonErased => "person-erased", "person-erased";
        /// The daily retention removed what it keeps no longer: how much of each.
        RetentionApplied => "retention-applied", "retention-applied";
    }
);

/// The row id of a thread entry (table `messages`).
pub type EntryId = i64;

/// Something that happened to a case, recorded in the same transaction as the change and
/// turned into notifications there (stored with each notification, which is rendered when
/// it is sent). `C` names the case and `M` a thread entry: their row ids once written;
/// a plan (see `decide`) names the ones it is about to write in its own terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event<C = CaseId, M = EntryId> {
    /// A case was opened; `message` is its first thread entry.
    Created { case: C, message: M },
    /// A thread entry was added (customer, watcher or staff reply, or an internal note).
    Replied { case: C, message: M, kind: MessageKind, from: Option<Address> },
    /// Someone became a watcher.
    WatcherAdded { case: C, address: Address, by: Option<Address> },
    /// Someone stopped watching.
    WatcherRemoved { case: C, address: Address },
    /// The status changed.
    StatusChanged { case: C, from: Status, to: Status, by: Option<Address>, message: Option<M> },
    /// A field other than status changed (impact, account, environment, contact).
    FieldChanged { case: C, field: String, value: String, by: Option<Address> },
    /// A direct, short answer to the sender of a mail (never to machine mail): why it
    /// could not be applied, or what they asked for. `in_reply_to` is the mail's Message-ID.
    Notice { to: Address, case: Option<C>, notice: Notice, in_reply_to: Option<String> },
    /// A closed case's requester or contact is offered the survey, at `url`.
    SurveyOffered { case: C, to: Address, url: String },
    /// A notification to `address` bounced; `message` is the `system` entry that says so.
    Bounced { case: C, message: M, address: Address },
    /// A Resolved case waits for its requester's verdict and closes itself at `closes_at`
    /// (stored time) unless they accept or reject the solution (or write) before.
    ClosingSoon { case: C, closes_at: String },
}

/// What a direct answer says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// The mail was quarantined (e.g. `sender-not-participant`).
    NotApplied { reason: Reason },
    /// The mail was about a closed case, so a new case (the event's `case`) was opened
    /// that links the closed one.
    FollowUpOpened { closed: CaseId },
    /// A command could not be carried out: what was asked and what went wrong.
    CommandRefused { command: String, problem: String },
    /// `#reject` without a reason: the solution stays proposed, the sender is asked why.
    ReasonRequired,
    /// The sender asked for the cases they take part in ("My cases" by mail).
    CaseList,
}

impl<M> Event<CaseId, M> {
    /// The case the event concerns (0 for a notice not tied to a case).
    pub fn case(&self) -> CaseId {
        match self {
            Event::Created { case, .. }
            | Event::Replied { case, .. }
            | Event::WatcherAdded { case, .. }
            | Event::WatcherRemoved { case, .. }
            | Event::StatusChanged { case, .. }
            | Event::FieldChanged { case, .. }
            | Event::SurveyOffered { case, .. }
            | Event::Bounced { case, .. }
            | Event::ClosingSoon { case, .. } => *case,
            Event::Notice { case, .. } => case.unwrap_or(0),
        }
    }
}

impl<C, M> Event<C, M> {
    /// The same event with its case and thread entry named another way (a plan's
    /// references resolved into the row ids they were written as).
    pub fn try_resolve<C2, M2, E>(
        self,
        case: impl Fn(C) -> Result<C2, E>,
        message: impl Fn(M) -> Result<M2, E>,
    ) -> Result<Event<C2, M2>, E> {
        Ok(match self {
            Event::Created { case: c, message: m } => Event::Created { case: case(c)?, message: message(m)? },
            Event::Replied { case: c, message: m, kind, from } => {
                Event::Replied { case: case(c)?, message: message(m)?, kind, from }
            }
            Event::WatcherAdded { case: c, address, by } => Event::WatcherAdded { case: case(c)?, address, by },
            Event::WatcherRemoved { case: c, address } => Event::WatcherRemoved { case: case(c)?, address },
            Event::StatusChanged { case: c, from, to, by, message: m } => {
                Event::StatusChanged { case: case(c)?, from, to, by, message: m.map(message).transpose()? }
            }
            Event::FieldChanged { case: c, field, value, by } => {
                Event::FieldChanged { case: case(c)?, field, value, by }
            }
            Event::Notice { to, case: c, notice, in_reply_to } => {
                Event::Notice { to, case: c.map(case).transpose()?, notice, in_reply_to }
            }
            Event::SurveyOffered { case: c, to, url } => Event::SurveyOffered { case: case(c)?, to, url },
            Event::Bounced { case: c, message: m, address } => {
                Event::Bounced { case: case(c)?, message: message(m)?, address }
            }
            Event::ClosingSoon { case: c, closes_at } => Event::ClosingSoon { case: case(c)?, closes_at },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_show_their_display_form() {
        assert_eq!("resolved".parse::<Status>().unwrap(), Status::Resolved);
        assert_eq!("OPEN".parse::<Status>().unwrap().as_str(), "Open");
        assert_eq!("High".parse::<Impact>().unwrap().as_db(), "high");
        let err = "urgent".parse::<Impact>().unwrap_err();
        assert!(err.contains("High, Medium, Low"), "{err}");
        assert_eq!(serde_json::to_string(&MessageKind::Note).unwrap(), "\"note\"");
        assert_eq!(Outcome::parse_db("duplicate"), Some(Outcome::Duplicate));
    }

    #[test]
    fn reasons_keep_the_codes_stored_in_queued_notifications() {
        // Notifications queued by earlier versions stored the reason as its code.
        let stored = r#"{"NotApplied":{"reason":"sender-not-participant"}}"#;
        let notice: Notice = serde_json::from_str(stored).unwrap();
        assert_eq!(notice, Notice::NotApplied { reason: Reason::SenderNotParticipant });
        assert_eq!(serde_json::to_string(&notice).unwrap(), stored);
        assert_eq!(AuditAction::MessageIdReused.as_str(), "message-id-reused");
    }
}
