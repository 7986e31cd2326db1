//! What the loop breaker (`notify::limits`) reads: who wrote a case's latest entries and
//! when, and what a sender's latest cases were opened with.

use rusqlite::{params, Connection};

use crate::address::Address;
use crate::case::CaseId;

/// Authors and times of a case's newest thread entries (newest first, at most `limit`).
pub fn recent_authors(
    conn: &Connection,
    case: CaseId,
    limit: usize,
) -> rusqlite::Result<Vec<(Option<String>, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT from_addr, created_at FROM messages WHERE case_id = ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = stmt.query_map(params![case, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// What the cases `requester` opened since `since` (other than `except`) were opened
/// with: their first entries, newest case first, at most `limit`.
pub fn recent_openings(
    conn: &Connection,
    requester: &Address,
    since: &str,
    except: Option<CaseId>,
    limit: usize,
) -> rusqlite::Result<Vec<String>> {
    let mut cases = conn.prepare_cached(
        "SELECT c.id FROM participants p JOIN cases c ON c.id = p.case_id
         WHERE p.address = ?1 AND p.role = 'requester' AND c.created_at >= ?2 AND c.id IS NOT ?3
         ORDER BY c.id DESC LIMIT ?4",
    )?;
    let ids: Vec<CaseId> = cases
        .query_map(params![requester.as_str(), since, except, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(body) = super::cases::description(conn, id)? {
            out.push(body);
        }
    }
    Ok(out)
}
