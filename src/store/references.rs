//! What the Message-IDs a batch's mails refer to (`In-Reply-To`, `References`) name: a
//! case ([`super::cases::case_for_message_id`]) and a survey invitation
//! ([`super::surveys::invitation_by_message_id`]).
//!
//! On PostgreSQL a batch reads them ahead, for all its mails in one round trip
//! ([`ReadAhead`]), and keeps them for the transaction (`Db::kept`). Without that, every
//! reply asked the database once or twice on its own, and every such question first sent
//! the writes deferred before it: a batch of replies turned into a round trip and a few
//! one-row statements per mail. What the transaction writes about an id read ahead is
//! added as it writes it: a mail's Message-ID linked to its case ([`linked`]), the common
//! case of a reply in the same batch as the mail it answers; any other change to what an
//! id names ([`changed`]) sends later questions about that id to the database again.

use std::collections::HashMap;

use super::db::{Db, DbResult, Row, Value};
use crate::case::CaseId;

/// What the database holds about one Message-ID read ahead.
#[derive(Default, Clone)]
struct Named {
    /// Its `case_message_ids` row: the case.
    link: Option<CaseId>,
    /// Listed in `ambiguous_message_ids`: it links to no case any more.
    ambiguous: bool,
    /// The case of the notification that was sent with it (its `outbox` row).
    notification: Option<CaseId>,
    /// The invitation whose survey mail was sent with it.
    invitation: Option<InvitationColumns>,
}

/// A survey invitation's columns as stored (`store::surveys` makes its row of them).
#[derive(Clone)]
pub struct InvitationColumns {
    pub case: CaseId,
    pub recipient: String,
    pub created_at: String,
    pub expires_at: String,
    pub message_id: Option<String>,
}

/// What a batch read ahead: per Message-ID asked, what it names.
#[derive(Default)]
struct Ahead {
    ids: HashMap<String, Named>,
}

/// The questions about the Message-IDs a batch refers to, asked ahead (see the module
/// documentation). On PostgreSQL only, inside a transaction. Its [`ReadAhead::queries`]
/// go with other queries in one round trip ([`Db::query_many`]); their rows go to
/// [`ReadAhead::take`]; [`ReadAhead::keep`] keeps the answers for the transaction.
pub struct ReadAhead {
    /// The ids as text, a line each (an id holding a line break or a NUL is not asked:
    /// it is asked on its own when needed).
    ids: String,
    ahead: Ahead,
}

/// The rows about any of a list of Message-IDs (one a line), in [`ReadAhead::take`]'s
/// order: links, ambiguous ids, notifications, invitations.
const QUERIES: [&str; 4] = [
    "SELECT message_id, case_id FROM case_message_ids WHERE message_id = ANY(string_to_array(?1, chr(10)) COLLATE \"C\")",
    "SELECT message_id FROM ambiguous_message_ids WHERE message_id = ANY(string_to_array(?1, chr(10)) COLLATE \"C\")",
    "SELECT message_id, case_id FROM outbox
     WHERE message_id = ANY(string_to_array(?1, chr(10)) COLLATE \"C\") AND case_id IS NOT NULL",
    "SELECT case_id, recipient, created_at, expires_at, message_id FROM survey_invitations
     WHERE message_id = ANY(string_to_array(?1, chr(10)) COLLATE \"C\")",
];

impl ReadAhead {
    /// The questions about `ids`; `None` where nothing is read ahead.
    pub fn new<'i>(db: Db<'_>, ids: impl IntoIterator<Item = &'i str>) -> Option<ReadAhead> {
        db.kept(|_: &mut Ahead| ())?;
        let mut ahead = Ahead::default();
        for id in ids {
            if !id.contains(['\n', '\0']) {
                ahead.ids.entry(id.to_string()).or_default();
            }
        }
        if ahead.ids.is_empty() {
            return None;
        }
        let mut list: Vec<&str> = ahead.ids.keys().map(String::as_str).collect();
        list.sort_unstable();
        Some(ReadAhead { ids: list.join("\n"), ahead })
    }

    /// The queries, in the order [`ReadAhead::take`] numbers them.
    pub fn queries(&self) -> Vec<(&'static str, Vec<Value<'static>>)> {
        QUERIES.iter().map(|sql| (*sql, vec![Value::from(self.ids.clone())])).collect()
    }

    /// A row of query `i`.
    pub fn take(&mut self, i: usize, r: &Row<'_>) -> DbResult<()> {
        let key: String = r.get(if i == 3 { 4 } else { 0 })?;
        let named = self.ahead.ids.entry(key).or_default();
        match i {
            0 => named.link = Some(r.get(1)?),
            1 => named.ambiguous = true,
            2 => named.notification = Some(r.get(1)?),
            // Several invitations with one id: the first, as a question on its own gets.
            _ if named.invitation.is_some() => {}
            _ => {
                named.invitation = Some(InvitationColumns {
                    case: r.get(0)?,
                    recipient: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    message_id: r.get(4)?,
                })
            }
        }
        Ok(())
    }

    /// Keeps the answers for the transaction.
    pub fn keep(self, db: Db<'_>) {
        let ahead = self.ahead;
        db.kept(|kept: &mut Ahead| *kept = ahead);
    }
}

/// The case `message_id` names (a mail on its thread first, then a notification about
/// it), if it was read ahead.
pub fn case_read_ahead(db: Db<'_>, message_id: &str) -> Option<Option<CaseId>> {
    db.kept(|a: &mut Ahead| a.ids.get(message_id).map(|n| n.link.or(n.notification))).flatten()
}

/// The invitation whose survey mail had `message_id`, if it was read ahead.
pub fn invitation_read_ahead(db: Db<'_>, message_id: &str) -> Option<Option<InvitationColumns>> {
    db.kept(|a: &mut Ahead| a.ids.get(message_id).map(|n| n.invitation.clone())).flatten()
}

/// Notes that the transaction linked `message_id` to `case`, as the link's insert does
/// it: the first link stays, and an ambiguous id gets none.
pub fn linked(db: Db<'_>, message_id: &str, case: CaseId) {
    db.kept(|a: &mut Ahead| {
        if let Some(named) = a.ids.get_mut(message_id).filter(|n| !n.ambiguous && n.link.is_none()) {
            named.link = Some(case);
        }
    });
}

/// Notes that the transaction changed what `message_id` names some other way: later
/// questions about it go to the database.
pub fn changed(db: Db<'_>, message_id: &str) {
    db.kept(|a: &mut Ahead| a.ids.remove(message_id));
}
