//! What the loop breaker (`notify::limits`) reads: whether a sender's latest cases were
//! opened with the same words, and how many automatic answers an address was sent (who
//! wrote a case's latest entries is `store::thread`'s).
//!
//! On PostgreSQL a batch of mail reads the last two ahead, for all its mails in one round
//! trip ([`ReadAhead`]): the rows since the start of the window, kept for the
//! transaction (`Db::kept`), with the rows the transaction writes added as it writes them
//! (`opened`, `answered`). A question about a key or an address not read ahead goes to
//! the database.

use std::collections::HashMap;

use super::db::{Db, DbResult, Row, Value};
use crate::case::CaseId;
use crate::vals;

/// What a batch's loop breaker asks, read ahead (see the module documentation).
#[derive(Default)]
struct Ahead {
    /// Per opening key: the cases opened with it since the window's start (id, time),
    /// the newest [`OPENINGS_READ`] at most as read, and how many were read.
    openings: HashMap<String, (Vec<(CaseId, String)>, usize)>,
    /// Per recipient (as the outbox names it): when each automatic answer counted
    /// against the daily limit was queued.
    answers: HashMap<String, Vec<String>>,
}

/// The loop breaker's questions for a batch, asked ahead: since `since`, the cases opened
/// with any of its opening keys and the automatic answers to any of its recipients (as
/// the outbox names them). On PostgreSQL only, inside a transaction (elsewhere each
/// question is cheap). Its [`ReadAhead::queries`] go with other queries in one round
/// trip ([`Db::query_many`]); their rows go to [`ReadAhead::take`]; [`ReadAhead::keep`]
/// keeps the answers for the transaction.
pub struct ReadAhead {
    /// Lists go as text, a line each: keys and recipients hold no line break (a key is
    /// hex, a recipient a JSON string, which escapes it).
    keys: String,
    recipients: String,
    since: String,
    ahead: Ahead,
}

impl ReadAhead {
    /// The questions about `keys` and `recipients`; `None` where nothing is read ahead.
    pub fn new(db: Db<'_>, keys: &[String], recipients: &[String], since: &str) -> Option<ReadAhead> {
        if db.kept(|_: &mut Ahead| ()).is_none() || (keys.is_empty() && recipients.is_empty()) {
            return None;
        }
        let mut ahead = Ahead::default();
        ahead.openings.extend(keys.iter().map(|k| (k.clone(), (Vec::new(), 0))));
        ahead.answers.extend(recipients.iter().map(|r| (r.clone(), Vec::new())));
        Some(ReadAhead { keys: keys.join("\n"), recipients: recipients.join("\n"), since: since.to_string(), ahead })
    }

    /// The queries, in the order [`ReadAhead::take`] numbers them (their lists copied:
    /// the rows are taken while they are out).
    pub fn queries(&self) -> [(&'static str, Vec<Value<'static>>); 2] {
        [
            (
                "SELECT k.key, c.id, c.created_at FROM unnest(string_to_array(?1, chr(10))) AS k(key),
                 LATERAL (SELECT id, created_at FROM cases WHERE opening_gist = k.key COLLATE \"C\" AND created_at >= ?2
                          ORDER BY id DESC LIMIT ?3) AS c",
                vec![Value::from(self.keys.clone()), Value::from(self.since.clone()), Value::from(OPENINGS_READ)],
            ),
            (AUTOMATIC_ANSWERS, vec![Value::from(self.recipients.clone()), Value::from(self.since.clone())]),
        ]
    }

    /// A row of query `i`.
    pub fn take(&mut self, i: usize, r: &Row<'_>) -> DbResult<()> {
        let key: String = r.get(0)?;
        match i {
            0 => {
                let (rows, read) = self.ahead.openings.entry(key).or_default();
                rows.push((r.get(1)?, r.get(2)?));
                *read += 1;
            }
            _ => self.ahead.answers.entry(key).or_default().push(r.get(1)?),
        }
        Ok(())
    }

    /// Keeps the answers for the transaction.
    pub fn keep(self, db: Db<'_>) {
        let ahead = self.ahead;
        db.kept(|kept: &mut Ahead| *kept = ahead);
    }
}

/// The automatic answers to any of a list of recipients since a time, as
/// [`super::outbox::automatic_answers_since`] counts them (the kinds written out as the
/// partial index `outbox_automatic` has them).
const AUTOMATIC_ANSWERS: &str = "SELECT recipients, created_at FROM outbox
     WHERE recipients = ANY(string_to_array(?1, chr(10)) COLLATE \"C\") AND created_at >= ?2 AND status != 'suppressed'
       AND (event = 'acknowledgement' OR event = 'follow-up-opened' OR event = 'not-applied'
       OR event = 'command-refused' OR event = 'reason-required' OR event = 'case-list')";

/// How many of a key's openings are read ahead, the newest first: enough to tell a sender
/// who keeps writing the same text (see [`Openings`]).
const OPENINGS_READ: usize = 16;

/// How many cases were opened with a key: exactly `count`, or, with `or_more`, at least
/// that many (read ahead, where only the newest `OPENINGS_READ` are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Openings {
    pub count: usize,
    pub or_more: bool,
}

/// Notes a case the transaction opened with opening key `key`, at `now`.
pub fn opened(db: Db<'_>, key: &str, case: CaseId, now: &str) {
    db.kept(|a: &mut Ahead| a.openings.get_mut(key).map(|(rows, _)| rows.push((case, now.to_string()))));
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
pub fn openings_saying(db: Db<'_>, key: &str, since: &str, except: Option<CaseId>) -> DbResult<Openings> {
    let ahead = db.kept(|a: &mut Ahead| {
        let (rows, read) = a.openings.get(key)?;
        let count = rows.iter().filter(|(id, at)| at.as_str() >= since && Some(*id) != except).count();
        // All were read when fewer than the most were, or when the oldest read is out of
        // the window (the newest are read first); otherwise older ones may be in it too.
        let or_more = *read >= OPENINGS_READ && rows[..*read].iter().all(|(_, at)| at.as_str() >= since);
        Some(Openings { count, or_more })
    });
    if let Some(Some(openings)) = ahead {
        return Ok(openings);
    }
    let n: i64 = db.query_one(
        "SELECT count(*) FROM cases WHERE opening_gist = ?1 AND created_at >= ?2 AND id IS NOT ?3",
        vals![key, since, except],
        |r| r.get(0),
    )?;
    Ok(Openings { count: usize::try_from(n).unwrap_or(0), or_more: false })
}
