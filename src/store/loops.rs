//! What the loop breaker (`notify::limits`) reads: who wrote a case's latest entries and
//! when, and whether a sender's latest cases were opened with the same words.

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

/// How many of the cases `requester` opened since `since` (other than `except`; at most
/// `limit` of the newest) were opened with a mail whose words have the key `key`
/// (`classify::gist_key`).
pub fn openings_saying(
    conn: &Connection,
    requester: &Address,
    key: &str,
    since: &str,
    except: Option<CaseId>,
    limit: usize,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "SELECT count(*) FROM (SELECT c.opening_gist FROM participants p JOIN cases c ON c.id = p.case_id
         WHERE p.address = ?1 AND p.role = 'requester' AND c.created_at >= ?2 AND c.id IS NOT ?3
         ORDER BY c.id DESC LIMIT ?4) WHERE opening_gist = ?5",
    )?
    .query_row(params![requester.as_str(), since, except, limit as i64, key], |r| r.get::<_, i64>(0))
    .map(|n| usize::try_from(n).unwrap_or(0))
}
