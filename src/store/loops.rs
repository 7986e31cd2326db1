//! What the loop breaker (`notify::limits`) reads: who wrote a case's latest entries and
//! when, and whether a sender's latest cases were opened with the same words.

use super::db::{Db, DbResult};
use crate::address::Address;
use crate::case::CaseId;
use crate::vals;

/// Authors and times of a case's newest thread entries (newest first, at most `limit`).
pub fn recent_authors(db: Db<'_>, case: CaseId, limit: usize) -> DbResult<Vec<(Option<String>, String)>> {
    db.query_map(
        "SELECT from_addr, created_at FROM messages WHERE case_id = ?1 ORDER BY id DESC LIMIT ?2",
        vals![case, limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// How many of the cases `requester` opened since `since` (other than `except`) were
/// opened with a mail whose words have the key `key` (`classify::gist_key`): found
/// through the key's index, so the cost does not grow with the sender's cases.
pub fn openings_saying(
    db: Db<'_>,
    requester: &Address,
    key: &str,
    since: &str,
    except: Option<CaseId>,
) -> DbResult<usize> {
    let n: i64 = db.query_one(
        "SELECT count(*) FROM cases c JOIN participants p ON p.case_id = c.id
         WHERE c.opening_gist = ?1 AND p.address = ?2 AND p.role = 'requester'
           AND c.created_at >= ?3 AND c.id IS NOT ?4",
        vals![key, requester.as_str(), since, except],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}
