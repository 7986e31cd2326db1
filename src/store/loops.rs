//! What the loop breaker (`notify::limits`) reads: who wrote a case's latest entries and
//! when, and whether a sender's latest cases were opened with the same words.

use super::db::{Db, DbResult};
use crate::case::CaseId;
use crate::vals;

/// Authors and times of a case's newest thread entries (newest first, at most `limit`).
pub fn recent_authors(db: Db<'_>, case: CaseId, limit: usize) -> DbResult<Vec<(Option<String>, String)>> {
    super::thread::recent_authors(db, case, limit)
}

/// How many cases opened since `since` (other than `except`) have the opening key `key`
/// (`classify::opening_key`: the words of the opening mail and its requester): one lookup
/// in the key's index, whose cost grows neither with the requester's cases nor with how
/// many other senders' cases opened with the same words.
pub fn openings_saying(db: Db<'_>, key: &str, since: &str, except: Option<CaseId>) -> DbResult<usize> {
    let n: i64 = db.query_one(
        "SELECT count(*) FROM cases WHERE opening_gist = ?1 AND created_at >= ?2 AND id IS NOT ?3",
        vals![key, since, except],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}
