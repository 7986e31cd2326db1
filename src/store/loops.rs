//! What the loop breaker (`notify::limits`) reads: whether a sender's latest cases were
//! opened with the same words, and how many automatic answers an address was sent (who
//! wrote a case's latest entries is `store::thread`'s).
//!
//! On PostgreSQL a batch of mail reads the last two ahead, for all its mails in one round
//! trip ([`read_ahead`]): the rows since the start of the window, kept for the
//! transaction (`Db::kept`), with the rows the transaction writes added as it writes them
//! (`opened`, `answered`). A question about a key or an address not read ahead goes to
//! the database.

use std::collections::HashMap;

use super::db::{Db, DbResult, Value};
use crate::case::CaseId;
use crate::vals;

/// What a batch's loop breaker asks, read ahead (see the module documentation).
#[derive(Default)]
struct Ahead {
    /// Per opening key: the cases opened with it since the window's start (id, time).
    openings: HashMap<String, Vec<(CaseId, String)>>,
    /// Per recipient (as the outbox names it): when each automatic answer counted
    /// against the daily limit was queued.
    answers: HashMap<String, Vec<String>>,
}

/// Reads ahead, since `since`, the cases opened with any of `keys` and the automatic
/// answers to any of `recipients` (as the outbox names them), in one round trip; on
/// PostgreSQL only, inside a transaction (elsewhere each question is cheap).
pub fn read_ahead(db: Db<'_>, keys: &[String], recipients: &[String], since: &str) -> DbResult<()> {
    if db.kept(|_: &mut Ahead| ()).is_none() || (keys.is_empty() && recipients.is_empty()) {
        return Ok(());
    }
    // Lists go as text, a line each: keys and recipients hold no line break (a key is
    // hex, a recipient a JSON string, which escapes it).
    let (keys_text, recipients_text) = (keys.join("\n"), recipients.join("\n"));
    let mut ahead = Ahead::default();
    ahead.openings.extend(keys.iter().map(|k| (k.clone(), Vec::new())));
    ahead.answers.extend(recipients.iter().map(|r| (r.clone(), Vec::new())));
    let queries: [(&str, &[Value<'_>]); 2] = [
        (
            "SELECT opening_gist, id, created_at FROM cases
             WHERE opening_gist = ANY(string_to_array(?1, chr(10)) COLLATE \"C\") AND created_at >= ?2",
            vals![&keys_text, since],
        ),
        (AUTOMATIC_ANSWERS, vals![&recipients_text, since]),
    ];
    db.query_many(&queries, |i, r| {
        let key: String = r.get(0)?;
        match i {
            0 => ahead.openings.entry(key).or_default().push((r.get(1)?, r.get(2)?)),
            _ => ahead.answers.entry(key).or_default().push(r.get(1)?),
        }
        Ok(())
    })?;
    db.kept(|kept: &mut Ahead| *kept = ahead);
    Ok(())
}

/// The automatic answers to any of a list of recipients since a time, as
/// [`super::outbox::automatic_answers_since`] counts them (the kinds written out as the
/// partial index `outbox_automatic` has them).
const AUTOMATIC_ANSWERS: &str = "SELECT recipients, created_at FROM outbox
     WHERE recipients = ANY(string_to_array(?1, chr(10)) COLLATE \"C\") AND created_at >= ?2 AND status != 'suppressed'
       AND (event = 'acknowledgement' OR event = 'follow-up-opened' OR event = 'not-applied'
       OR event = 'command-refused' OR event = 'reason-required' OR event = 'case-list')";

/// Notes a case the transaction opened with opening key `key`, at `now`.
pub fn opened(db: Db<'_>, key: &str, case: CaseId, now: &str) {
    db.kept(|a: &mut Ahead| a.openings.get_mut(key).map(|rows| rows.push((case, now.to_string()))));
}

/// Notes an automatic answer the transaction queued to `recipient` (as the outbox names
/// it), at `now`.
pub fn answered(db: Db<'_>, recipient: &str, now: &str) {
    db.kept(|a: &mut Ahead| a.answers.get_mut(recipient).map(|rows| rows.push(now.to_string())));
}

/// Forgets what was read ahead about `recipient`'s answers (their rows changed).
pub fn forget_answers(db: Db<'_>, recipient: &str) {
    db.kept(|a: &mut Ahead| a.answers.remove(recipient));
}

/// The automatic answers to `recipient` since `since`, if they were read ahead.
pub fn answers_read_ahead(db: Db<'_>, recipient: &str, since: &str) -> Option<usize> {
    db.kept(|a: &mut Ahead| a.answers.get(recipient).map(|at| at.iter().filter(|t| t.as_str() >= since).count()))
        .flatten()
}

/// How many cases opened since `since` (other than `except`) have the opening key `key`
/// (`classify::opening_key`: the words of the opening mail and its requester): one lookup
/// in the key's index, whose cost grows neither with the requester's cases nor with how
/// many other senders' cases opened with the same words.
pub fn openings_saying(db: Db<'_>, key: &str, since: &str, except: Option<CaseId>) -> DbResult<usize> {
    let ahead = db.kept(|a: &mut Ahead| {
        let rows = a.openings.get(key)?;
        Some(rows.iter().filter(|(id, at)| at.as_str() >= since && Some(*id) != except).count())
    });
    if let Some(Some(n)) = ahead {
        return Ok(n);
    }
    let n: i64 = db.query_one(
        "SELECT count(*) FROM cases WHERE opening_gist = ?1 AND created_at >= ?2 AND id IS NOT ?3",
        vals![key, since, except],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}
