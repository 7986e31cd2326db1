//! What the loop breaker (`notify::limits`) reads: who wrote a case's latest entries and
//! when, and what a sender's latest cases were opened with.

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

/// What the cases `requester` opened since `since` (other than `except`) were opened
/// with: their first entries, newest case first, at most `limit`.
pub fn recent_openings(
    db: Db<'_>,
    requester: &Address,
    since: &str,
    except: Option<CaseId>,
    limit: usize,
) -> DbResult<Vec<String>> {
    let ids: Vec<CaseId> = db.query_map(
        "SELECT c.id FROM participants p JOIN cases c ON c.id = p.case_id
         WHERE p.address = ?1 AND p.role = 'requester' AND c.created_at >= ?2 AND c.id IS NOT ?3
         ORDER BY c.id DESC LIMIT ?4",
        vals![requester.as_str(), since, except, limit],
        |r| r.get(0),
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(body) = super::cases::description(db, id)? {
            out.push(body);
        }
    }
    Ok(out)
}
