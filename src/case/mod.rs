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
    ($(#[$m:meta])* $name:ident { $($variant:ident => $db:literal, $shown:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

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

/// Something that happened to a case, recorded in the same transaction as the change and
/// turned into notifications there (stored with each notification, which is rendered when
/// it is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A case was opened; `message` is its first thread entry.
    Created { case: CaseId, message: i64 },
    /// A thread entry was added (customer, watcher or staff reply, or an internal note).
    Replied { case: CaseId, message: i64, kind: MessageKind, from: Option<Address> },
    /// Someone became a watcher.
    WatcherAdded { case: CaseId, address: Address, by: Option<Address> },
    /// Someone stopped watching.
    WatcherRemoved { case: CaseId, address: Address },
    /// The status changed.
    StatusChanged { case: CaseId, from: Status, to: Status, by: Option<Address>, message: Option<i64> },
    /// A field other than status changed (impact, account, environment, contact).
    FieldChanged { case: CaseId, field: String, value: String, by: Option<Address> },
    /// A direct, short answer to the sender of a mail (never to machine mail): why it
    /// could not be applied, or what they asked for. `in_reply_to` is the mail's Message-ID.
    Notice { to: Address, case: Option<CaseId>, notice: Notice, in_reply_to: Option<String> },
    /// A closed case's requester or contact is offered the survey, at `url`.
    SurveyOffered { case: CaseId, to: Address, url: String },
}

/// What a direct answer says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// The mail was quarantined (e.g. `sender-not-participant`); `reason` is the code.
    NotApplied { reason: String },
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

impl Event {
    /// The case the event concerns (0 for a notice not tied to a case).
    pub fn case(&self) -> CaseId {
        match self {
            Event::Created { case, .. }
            | Event::Replied { case, .. }
            | Event::WatcherAdded { case, .. }
            | Event::WatcherRemoved { case, .. }
            | Event::StatusChanged { case, .. }
            | Event::FieldChanged { case, .. } => *case,
            Event::Notice { case, .. } => case.unwrap_or(0),
            Event::SurveyOffered { case, .. } => *case,
        }
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
}
