//! The ends of a case's thread that outgoing mail and the loop breaker read: the
//! Message-IDs of its first and newest inbound entries (for References), and who wrote
//! its newest entries, and when (for the per-case brake). Read from what the transaction
//! holds when it holds the case (see `store::held`), else from the database.

use std::collections::HashMap;

use super::db::{Db, DbResult, Row, Value};
use super::held::{self, Thread, NEWEST_INBOUND, RECENT_ENTRIES};
use crate::case::CaseId;
use crate::vals;

// Plain index walks (messages_by_case, by id), asked at once (one round trip on
// PostgreSQL): SQLite evaluates the equivalent single query with a CTE far more slowly,
// and this runs for every notification. The newest may include the first.
const FIRST: &str = "SELECT id, message_id FROM messages
    WHERE case_id = ?1 AND message_id IS NOT NULL AND kind IN ('customer', 'staff') ORDER BY id LIMIT 1";
const NEWEST: &str = "SELECT id, message_id FROM messages
    WHERE case_id = ?1 AND message_id IS NOT NULL AND kind IN ('customer', 'staff') ORDER BY id DESC LIMIT ?2";
const RECENT: &str = "SELECT from_addr, created_at FROM messages WHERE case_id = ?1 ORDER BY id DESC LIMIT ?2";

// The same three walks for several cases at once (`cases::hold_ahead`), each row led by
// its case's number (a list, `?1`, of numbers separated by commas).
const FIRST_OF: &str = "SELECT c.id, m.id, m.message_id FROM unnest(string_to_array(?1, ',')::bigint[]) AS c(id),
    LATERAL (SELECT id, message_id FROM messages WHERE case_id = c.id AND message_id IS NOT NULL
             AND kind IN ('customer', 'staff') ORDER BY id LIMIT 1) AS m";
const NEWEST_OF: &str = "SELECT c.id, m.id, m.message_id FROM unnest(string_to_array(?1, ',')::bigint[]) AS c(id),
    LATERAL (SELECT id, message_id FROM messages WHERE case_id = c.id AND message_id IS NOT NULL
             AND kind IN ('customer', 'staff') ORDER BY id DESC LIMIT ?2) AS m
    ORDER BY c.id, m.id DESC";
const RECENT_OF: &str =
    "SELECT c.id, m.from_addr, m.created_at FROM unnest(string_to_array(?1, ',')::bigint[]) AS c(id),
    LATERAL (SELECT id, from_addr, created_at FROM messages WHERE case_id = c.id ORDER BY id DESC LIMIT ?2) AS m
    ORDER BY c.id, m.id DESC";

/// The walks of [`of_held`] for the cases of `list` (numbers separated by commas), whose
/// rows [`read_of_many`] takes as `0`, `1` and `2`.
pub(super) fn of_many(list: &str) -> [(&'static str, Vec<Value<'static>>); 3] {
    let list = || Value::from(list.to_string());
    [
        (FIRST_OF, vec![list()]),
        (NEWEST_OF, vec![list(), Value::from(NEWEST_INBOUND)]),
        (RECENT_OF, vec![list(), Value::from(RECENT_ENTRIES)]),
    ]
}

/// A row of the `query`th of [`of_many`], into its case's thread.
pub(super) fn read_of_many(threads: &mut HashMap<CaseId, Thread>, query: usize, r: &Row<'_>) -> DbResult<()> {
    read_from(threads.entry(r.get(0)?).or_default(), query, r, 1)
}

/// The queries for the first and the newest inbound entries (`case_and_limit`: the case
/// and how many of the newest), whose rows [`read`] takes as `0` and `1`.
pub(super) fn queries<'a>(case_and_limit: &'a [Value<'a>; 2]) -> [(&'static str, &'a [Value<'a>]); 2] {
    [(FIRST, &case_and_limit[..1]), (NEWEST, case_and_limit)]
}

/// A row of the `query`th of [`queries`] (0, 1) or of the newest entries' authors (2).
pub(super) fn read(thread: &mut Thread, query: usize, r: &Row<'_>) -> DbResult<()> {
    read_from(thread, query, r, 0)
}

/// [`read`] of a row whose columns start at `at`.
fn read_from(thread: &mut Thread, query: usize, r: &Row<'_>, at: usize) -> DbResult<()> {
    match query {
        0 => thread.first = Some((r.get(at)?, r.get(at + 1)?)),
        1 => thread.newest.push((r.get(at)?, r.get(at + 1)?)),
        _ => thread.recent.push((r.get(at)?, r.get(at + 1)?)),
    }
    Ok(())
}

/// The thread's root, then up to `recent` of the newest after it, oldest first.
pub(super) fn ids(thread: &Thread, recent: usize) -> Vec<String> {
    let Some(first) = &thread.first else { return Vec::new() };
    let mut newest: Vec<&String> =
        thread.newest.iter().filter(|(id, _)| *id > first.0).take(recent).map(|(_, m)| m).collect();
    newest.reverse();
    std::iter::once(&first.1).chain(newest).cloned().collect()
}

/// The Message-IDs of the people's mail on a case's thread (customer and staff entries,
/// in thread order), for the References of outgoing mail: the first one (the thread's
/// root) and up to `recent` of the newest. Left out: our own notifications (each went to
/// one recipient; the others never saw it), internal notes, and automatic replies.
pub fn inbound_thread_ids(db: Db<'_>, case: CaseId, recent: usize) -> DbResult<Vec<String>> {
    if recent <= NEWEST_INBOUND && held::holds(db, case) {
        return Ok(ids(&of_held(db, case)?, recent));
    }
    let mut thread = Thread::default();
    let limit = [Value::from(case), Value::from(recent)];
    db.query_many(&queries(&limit), |i, r| read(&mut thread, i, r))?;
    Ok(ids(&thread, recent))
}

/// Authors and times of a case's newest thread entries (newest first, at most `limit`).
pub fn recent_authors(db: Db<'_>, case: CaseId, limit: usize) -> DbResult<Vec<(Option<String>, String)>> {
    if limit <= RECENT_ENTRIES && held::holds(db, case) {
        return Ok(of_held(db, case)?.recent.into_iter().take(limit).collect());
    }
    db.query_map(RECENT, vals![case, limit], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// The thread of a case the transaction holds: kept, or read (one round trip) and kept.
fn of_held(db: Db<'_>, case: CaseId) -> DbResult<Thread> {
    if let Some(thread) = held::thread(db, case) {
        return Ok(thread);
    }
    let mut thread = Thread::default();
    let (newest, recent) =
        ([Value::from(case), Value::from(NEWEST_INBOUND)], [Value::from(case), Value::from(RECENT_ENTRIES)]);
    let [first, newest] = queries(&newest);
    db.query_many(&[first, newest, (RECENT, &recent)], |i, r| read(&mut thread, i, r))?;
    held::keep_thread(db, case, thread.clone());
    Ok(thread)
}
