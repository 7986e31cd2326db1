//! The cases a unit of work holds, kept in memory for its transaction (PostgreSQL, where
//! reading them again is a round trip each time): a case the transaction opened, and a
//! case it read to change it (`cases::row_and_participants` with `to_change`, which locks
//! its row until the end). Nobody else can change such a case before the transaction
//! ends — the one is not visible to others yet, the other is locked, and whoever changes
//! a case locks it first — so what the transaction read, with what it wrote since, is
//! what the database holds. The store's writes keep it so: every change `cases` makes to
//! a held case (its row, its participants, its thread) is made here too, and anything
//! else forgets the case. Undoing a savepoint drops all of it (`Db::undo_savepoint`).
//!
//! Kept for each case: its row, its active participants in the order the database reads
//! them (by when added, then address), and, once asked for, the ends of its thread that
//! notifications and the loop breaker read: the first inbound entry, the newest inbound
//! entries and the newest entries of any kind.

use std::collections::HashMap;

use super::db::Db;
use crate::address::Address;
use crate::case::{CaseId, CaseRow, Impact, MessageKind, ParticipantRole, Status};

/// The newest inbound entries kept (`thread::inbound_thread_ids` asks for ten).
pub(super) const NEWEST_INBOUND: usize = 16;
/// The newest entries of any kind kept (the loop breaker's brake reads fifty).
pub const RECENT_ENTRIES: usize = 64;

/// An inbound thread entry: its id and Message-ID.
pub(super) type Inbound = (i64, String);

/// The ends of a case's thread (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Thread {
    /// The first inbound entry (customer or staff, with a Message-ID).
    pub first: Option<Inbound>,
    /// The newest inbound entries, newest first, at most [`NEWEST_INBOUND`].
    pub newest: Vec<Inbound>,
    /// The newest entries of any kind, newest first: author and time, at most
    /// [`RECENT_ENTRIES`].
    pub recent: Vec<(Option<String>, String)>,
}

/// An active participant: address, role, and when added.
pub(super) type Kept = (Address, ParticipantRole, String);

struct HeldCase {
    row: CaseRow,
    /// By when added, then address (as the database reads them).
    participants: Vec<Kept>,
    /// `None` until asked for.
    thread: Option<Thread>,
}

/// The cases of one transaction (see [`Db::kept`]).
#[derive(Default)]
struct Held {
    cases: HashMap<CaseId, HeldCase>,
}

/// Whether this transaction can hold cases (PostgreSQL, inside a transaction): what is
/// only worth building for a held case is built only then.
pub(super) fn active(db: Db<'_>) -> bool {
    db.kept(|_: &mut Held| ()).is_some()
}

/// Runs `change` on the held case `case`, if it is held.
fn with_case<R>(db: Db<'_>, case: CaseId, change: impl FnOnce(&mut HeldCase) -> R) -> Option<R> {
    db.kept(|held: &mut Held| held.cases.get_mut(&case).map(change)).flatten()
}

/// Holds a case the transaction read to change (its row locked) or opened.
pub(super) fn hold(db: Db<'_>, row: CaseRow, mut participants: Vec<Kept>) {
    sort(&mut participants);
    db.kept(|held: &mut Held| held.cases.insert(row.id, HeldCase { row, participants, thread: None }));
}

/// Holds a case the transaction opened: no participants and an empty thread yet.
pub(super) fn hold_new(db: Db<'_>, row: CaseRow) {
    db.kept(|held: &mut Held| {
        held.cases.insert(row.id, HeldCase { row, participants: Vec::new(), thread: Some(Thread::default()) })
    });
}

/// Stops holding `case` (a change the store does not keep here).
pub(super) fn forget(db: Db<'_>, case: CaseId) {
    db.kept(|held: &mut Held| held.cases.remove(&case));
}

/// Whether the transaction holds `case`.
pub(super) fn holds(db: Db<'_>, case: CaseId) -> bool {
    with_case(db, case, |_| ()).is_some()
}

/// A held case's row and active participants.
pub(super) fn facts(db: Db<'_>, case: CaseId) -> Option<(CaseRow, Vec<(Address, ParticipantRole)>)> {
    with_case(db, case, |c| (c.row.clone(), c.participants.iter().map(|(a, r, _)| (a.clone(), *r)).collect()))
}

/// A held case's thread, if it was asked for before.
pub(super) fn thread(db: Db<'_>, case: CaseId) -> Option<Thread> {
    with_case(db, case, |c| c.thread.clone()).flatten()
}

/// Keeps the thread of a held case, as read from the database.
pub(super) fn keep_thread(db: Db<'_>, case: CaseId, thread: Thread) {
    with_case(db, case, |c| c.thread = Some(thread));
}

pub(super) fn set_status(db: Db<'_>, case: CaseId, status: Status, now: &str) {
    with_case(db, case, |c| {
        c.row.status = status;
        c.row.updated_at = now.to_string();
    });
}

/// A field as `cases::set_field` sets it; a value the row cannot hold forgets the case.
pub(super) fn set_field(db: Db<'_>, case: CaseId, field: &str, value: Option<&str>, now: &str) {
    let kept = with_case(db, case, |c| {
        match field {
            "impact" => match value.map(str::parse::<Impact>) {
                Some(Ok(impact)) => c.row.impact = impact,
                _ => return false,
            },
            "account" => c.row.account = value.map(str::to_string),
            "environment" => c.row.environment = value.map(str::to_string),
            "subject" => match value {
                Some(subject) => c.row.subject = subject.to_string(),
                None => return false,
            },
            _ => return false,
        }
        c.row.updated_at = now.to_string();
        true
    });
    if kept == Some(false) {
        forget(db, case);
    }
}

pub(super) fn touch(db: Db<'_>, case: CaseId, now: &str) {
    with_case(db, case, |c| c.row.updated_at = now.to_string());
}

/// As `cases::add_participant` does: nothing when they hold the role already.
pub(super) fn add_participant(db: Db<'_>, case: CaseId, address: &Address, role: ParticipantRole, now: &str) {
    with_case(db, case, |c| {
        if !c.participants.iter().any(|(a, r, _)| a == address && *r == role) {
            c.participants.push((address.clone(), role, now.to_string()));
            sort(&mut c.participants);
        }
    });
}

pub(super) fn remove_participant(db: Db<'_>, case: CaseId, address: &Address, role: ParticipantRole) {
    with_case(db, case, |c| c.participants.retain(|(a, r, _)| !(a == address && *r == role)));
}

/// A new thread entry of a held case.
pub(super) fn add_entry(
    db: Db<'_>,
    case: CaseId,
    (id, message_id, kind): (i64, Option<&str>, MessageKind),
    from: Option<&Address>,
    now: &str,
) {
    with_case(db, case, |c| {
        let Some(thread) = &mut c.thread else { return };
        if let (Some(message_id), MessageKind::Customer | MessageKind::Staff) = (message_id, kind) {
            let entry = (id, message_id.to_string());
            thread.first.get_or_insert_with(|| entry.clone());
            thread.newest.insert(0, entry);
            thread.newest.truncate(NEWEST_INBOUND);
        }
        thread.recent.insert(0, (from.map(|a| a.as_str().to_string()), now.to_string()));
        thread.recent.truncate(RECENT_ENTRIES);
    });
}

/// The database's order of participants: by when added, then address (byte by byte, as
/// the `C` collation compares); ties keep the order they were added in.
fn sort(participants: &mut [Kept]) {
    participants.sort_by(|a, b| (a.2.as_str(), a.0.as_str()).cmp(&(b.2.as_str(), b.0.as_str())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn participants_keep_the_databases_order_and_roles_are_added_once() {
        let mut people = vec![
            (addr("zoe@x.example"), ParticipantRole::Requester, "2026-01-01T00:00:00.000Z".to_string()),
            (addr("al@x.example"), ParticipantRole::Watcher, "2026-01-02T00:00:00.000Z".to_string()),
            (addr("bo@x.example"), ParticipantRole::Contact, "2026-01-01T00:00:00.000Z".to_string()),
        ];
        sort(&mut people);
        let order: Vec<&str> = people.iter().map(|(a, _, _)| a.as_str()).collect();
        assert_eq!(order, ["bo@x.example", "zoe@x.example", "al@x.example"]);
    }
}
