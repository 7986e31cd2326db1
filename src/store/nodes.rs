//! What several `casegate run` processes on one database agree through it: which nodes
//! are alive (`nodes`, a heartbeat each), which node works which mailbox (`mailbox_leases`,
//! a lease each with its fencing number), which node runs a periodic job this time
//! (`periodic_jobs`), and how far each mailbox is (`mailbox_state`, the checkpoints).
//!
//! A lease names its node and the process that took it (`instance`), and is renewed while
//! that process works the mailbox. Whoever takes a lease — a free one, an expired one, or
//! one its own node held in an earlier life — raises its fencing number. Every commit of a
//! mailbox's mail checks, in its own transaction, that the lease still has the number it
//! was taken with ([`check_fence`]): a node that lost its lease (paused, cut off, too slow
//! to renew) cannot commit for that mailbox any more, however it sees the time. Expiry
//! decides only when a lease may be taken over, so clocks that disagree can make a
//! takeover early or late, never two nodes committing for one mailbox.

use super::db::{Db, DbResult};
use crate::vals;

/// A lease as its holder knows it: the mailbox and the fencing number it was taken with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub mailbox: String,
    pub fencing: i64,
}

/// The lease of a mailbox was taken over: the work in hand for it must not be committed.
#[derive(Debug, thiserror::Error)]
#[error("mailbox {mailbox} is worked by another node now (its lease was taken over); nothing of this was committed")]
pub struct LeaseLost {
    pub mailbox: String,
}

/// Who a node is: its configured name, and this run of it.
#[derive(Debug, Clone)]
pub struct NodeId {
    pub name: String,
    /// Random for each start of the process: tells this run from an earlier one.
    pub instance: String,
}

/// Records that `node` runs (or runs again) from `now`.
pub fn register(db: Db<'_>, node: &NodeId, detail: &str, now: &str) -> DbResult<()> {
    db.execute(
        "INSERT INTO nodes (name, instance, started_at, seen_at, stopped_at, detail) VALUES (?1, ?2, ?3, ?3, NULL, ?4)
         ON CONFLICT (name) DO UPDATE SET instance = ?2, started_at = ?3, seen_at = ?3, stopped_at = NULL, detail = ?4",
        vals![&node.name, &node.instance, now, detail],
    )?;
    Ok(())
}

/// The heartbeat of `node`; `false` when another process has registered under its name
/// since (two processes must not share a node name).
pub fn heartbeat(db: Db<'_>, node: &NodeId, now: &str) -> DbResult<bool> {
    let changed = db.execute(
        "UPDATE nodes SET seen_at = ?3 WHERE name = ?1 AND instance = ?2",
        vals![&node.name, &node.instance, now],
    )?;
    Ok(changed > 0)
}

/// Records that `node` stopped (cleanly, its leases handed back).
pub fn stopped(db: Db<'_>, node: &NodeId, now: &str) -> DbResult<()> {
    db.execute(
        "UPDATE nodes SET stopped_at = ?3, seen_at = ?3 WHERE name = ?1 AND instance = ?2",
        vals![&node.name, &node.instance, now],
    )?;
    Ok(())
}

/// How many nodes are running: seen since `since` and not stopped.
pub fn live_nodes(db: Db<'_>, since: &str) -> DbResult<usize> {
    let n: i64 =
        db.query_one("SELECT count(*) FROM nodes WHERE seen_at >= ?1 AND stopped_at IS NULL", vals![since], |r| {
            r.get(0)
        })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Takes the lease of `mailbox` for `node` until `expires`, when it is free, expired at
/// `now`, or held by `node` in an earlier run (that process is gone: a node restarts
/// under its name). Returns the fencing number, or `None` when another node holds it.
pub fn acquire(db: Db<'_>, mailbox: &str, node: &NodeId, now: &str, expires: &str) -> DbResult<Option<Fence>> {
    let fencing = db.query_row(
        "INSERT INTO mailbox_leases (mailbox, node, instance, fencing, acquired_at, renewed_at, expires_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5)
         ON CONFLICT (mailbox) DO UPDATE SET node = ?2, instance = ?3, fencing = mailbox_leases.fencing + 1,
           acquired_at = ?4, renewed_at = ?4, expires_at = ?5
         WHERE mailbox_leases.node IS NULL OR mailbox_leases.expires_at <= ?4
            OR (mailbox_leases.node = ?2 AND mailbox_leases.instance <> ?3)
         RETURNING fencing",
        vals![mailbox, &node.name, &node.instance, now, expires],
        |r| r.get::<i64>(0),
    )?;
    Ok(fencing.map(|fencing| Fence { mailbox: mailbox.to_string(), fencing }))
}

/// Renews a lease until `expires`; `false` when it was taken over.
pub fn renew(db: Db<'_>, fence: &Fence, now: &str, expires: &str) -> DbResult<bool> {
    let changed = db.execute(
        "UPDATE mailbox_leases SET renewed_at = ?3, expires_at = ?4 WHERE mailbox = ?1 AND fencing = ?2",
        vals![&fence.mailbox, fence.fencing, now, expires],
    )?;
    Ok(changed > 0)
}

/// Hands a lease back: the mailbox is free for any node at once.
pub fn release(db: Db<'_>, fence: &Fence, now: &str) -> DbResult<()> {
    db.execute(
        "UPDATE mailbox_leases SET node = NULL, instance = NULL, expires_at = ?3 WHERE mailbox = ?1 AND fencing = ?2",
        vals![&fence.mailbox, fence.fencing, now],
    )?;
    Ok(())
}

/// Inside a unit of work: `Err(LeaseLost)` unless the lease still has the fencing number
/// it was taken with. On PostgreSQL the lease row stays locked until the unit ends, so a
/// takeover waits for this commit (and then raises the number) rather than overtaking it.
pub fn check_fence(db: Db<'_>, fence: &Fence) -> anyhow::Result<()> {
    let held = db.execute(
        "UPDATE mailbox_leases SET fencing = fencing WHERE mailbox = ?1 AND fencing = ?2",
        vals![&fence.mailbox, fence.fencing],
    )?;
    if held == 0 {
        return Err(LeaseLost { mailbox: fence.mailbox.clone() }.into());
    }
    Ok(())
}

/// One lease, for `casegate nodes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub mailbox: String,
    /// `None`: free.
    pub node: Option<String>,
    pub fencing: i64,
    pub acquired_at: String,
    pub renewed_at: String,
    pub expires_at: String,
}

/// Every lease, by mailbox.
pub fn leases(db: Db<'_>) -> DbResult<Vec<LeaseRow>> {
    db.query_map(
        "SELECT mailbox, node, fencing, acquired_at, renewed_at, expires_at FROM mailbox_leases ORDER BY mailbox",
        vals![],
        |r| {
            Ok(LeaseRow {
                mailbox: r.get(0)?,
                node: r.get(1)?,
                fencing: r.get(2)?,
                acquired_at: r.get(3)?,
                renewed_at: r.get(4)?,
                expires_at: r.get(5)?,
            })
        },
    )
}

/// One node, for `casegate nodes`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub name: String,
    pub started_at: String,
    pub seen_at: String,
    pub stopped_at: Option<String>,
    pub detail: Option<String>,
}

/// Every node that ever ran on this database, by name.
pub fn nodes(db: Db<'_>) -> DbResult<Vec<NodeRow>> {
    db.query_map("SELECT name, started_at, seen_at, stopped_at, detail FROM nodes ORDER BY name", vals![], |r| {
        Ok(NodeRow {
            name: r.get(0)?,
            started_at: r.get(1)?,
            seen_at: r.get(2)?,
            stopped_at: r.get(3)?,
            detail: r.get(4)?,
        })
    })
}

/// Claims this round of the periodic job `name` for `node`: `true` (and the job is next
/// due at `next`) when it is due at `now` and no other node claimed it first. So a job
/// every node schedules runs once across them each time it falls due.
pub fn claim_job(db: Db<'_>, name: &str, node: &str, now: &str, next: &str) -> DbResult<bool> {
    let claimed = db.execute(
        "INSERT INTO periodic_jobs (name, due_at, node, ran_at) VALUES (?1, ?4, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET due_at = ?4, node = ?2, ran_at = ?3 WHERE periodic_jobs.due_at <= ?3",
        vals![name, node, now, next],
    )?;
    Ok(claimed > 0)
}

/// Makes the periodic job `name` due at `at` (a failed run is tried again sooner than
/// its next round).
pub fn reschedule(db: Db<'_>, name: &str, at: &str) -> DbResult<()> {
    db.execute("UPDATE periodic_jobs SET due_at = ?2 WHERE name = ?1", vals![name, at])?;
    Ok(())
}

/// A mailbox's checkpoint (`uidvalidity`, `last_uid`), if one was saved.
pub fn checkpoint(db: Db<'_>, source: &str) -> DbResult<Option<(i64, i64)>> {
    db.query_row("SELECT uidvalidity, last_uid FROM mailbox_state WHERE source = ?1", vals![source], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

/// Saves a mailbox's checkpoint.
pub fn save_checkpoint(db: Db<'_>, source: &str, uidvalidity: i64, last_uid: i64, now: &str) -> DbResult<()> {
    db.execute(
        "INSERT INTO mailbox_state (source, uidvalidity, last_uid, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (source) DO UPDATE SET uidvalidity = ?2, last_uid = ?3, updated_at = ?4",
        vals![source, uidvalidity, last_uid, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn node(name: &str, instance: &str) -> NodeId {
        NodeId { name: name.into(), instance: instance.into() }
    }

    const T0: &str = "2030-01-01T00:00:00.000Z";
    const T1: &str = "2030-01-01T00:00:10.000Z";
    const T2: &str = "2030-01-01T00:00:20.000Z";
    const T3: &str = "2030-01-01T00:00:30.000Z";

    #[test]
    fn a_lease_is_taken_once_renewed_and_taken_over_only_when_it_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        let db = store.db();
        let (a, b) = (node("a", "a1"), node("b", "b1"));
        let fa = acquire(db, "support", &a, T0, T1).unwrap().unwrap();
        assert_eq!(fa.fencing, 1);
        assert_eq!(acquire(db, "support", &b, T0, T1).unwrap(), None, "held by a");
        assert!(renew(db, &fa, T1, T2).unwrap());
        assert_eq!(acquire(db, "support", &b, T1, T2).unwrap(), None, "renewed until T2");
        let fb = acquire(db, "support", &b, T2, T3).unwrap().unwrap();
        assert_eq!(fb.fencing, 2, "a takeover raises the fencing number");
        assert!(!renew(db, &fa, T2, T3).unwrap(), "a lost it");
        let held = leases(db).unwrap();
        assert_eq!((held[0].node.as_deref(), held[0].fencing), (Some("b"), 2));
    }

    #[test]
    fn a_node_that_restarts_takes_back_its_own_leases_at_once_and_a_handed_back_lease_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        let db = store.db();
        let before = acquire(db, "support", &node("a", "run-1"), T0, T3).unwrap().unwrap();
        let after = acquire(db, "support", &node("a", "run-2"), T1, T3).unwrap().unwrap();
        assert_eq!(after.fencing, before.fencing + 1);
        assert_eq!(acquire(db, "support", &node("b", "b1"), T1, T3).unwrap(), None);
        release(db, &after, T1).unwrap();
        assert_eq!(acquire(db, "support", &node("b", "b1"), T1, T3).unwrap().unwrap().fencing, after.fencing + 1);
    }

    #[test]
    fn a_unit_of_work_whose_lease_was_taken_over_does_not_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_dir(dir.path(), false).unwrap();
        let fa = acquire(store.db(), "support", &node("a", "a1"), T0, T1).unwrap().unwrap();
        let audit = |store: &mut Store, fence: &Fence| {
            store.write(false, |unit| {
                let scope = unit.scope();
                crate::store::mails::audit(scope.conn, None, None, None, "test", None, scope.stamp)?;
                check_fence(scope.conn, fence)?;
                Ok(Some(()))
            })
        };
        audit(&mut store, &fa).unwrap();
        acquire(store.db(), "support", &node("b", "b1"), T2, T3).unwrap().unwrap();
        let err = audit(&mut store, &fa).unwrap_err();
        assert!(err.downcast_ref::<LeaseLost>().is_some(), "{err:#}");
        assert!(crate::store::is_systemic(&err));
        let audits: i64 = store.db().query_one("SELECT count(*) FROM audit", vals![], |r| r.get(0)).unwrap();
        assert_eq!(audits, 1, "the unit after the takeover was rolled back");
    }

    #[test]
    fn a_periodic_job_runs_once_per_round_whoever_asks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        let db = store.db();
        assert!(claim_job(db, "sweep", "a", T0, T1).unwrap());
        assert!(!claim_job(db, "sweep", "b", T0, T1).unwrap(), "claimed by a for this round");
        assert!(!claim_job(db, "sweep", "a", T0, T1).unwrap());
        assert!(claim_job(db, "sweep", "b", T1, T2).unwrap(), "the next round");
    }

    #[test]
    fn live_nodes_are_those_seen_lately_and_not_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        let db = store.db();
        let (a, b) = (node("a", "a1"), node("b", "b1"));
        register(db, &a, "host a", T0).unwrap();
        register(db, &b, "host b", T0).unwrap();
        assert!(heartbeat(db, &a, T2).unwrap());
        assert_eq!(live_nodes(db, T1).unwrap(), 1, "b was not seen since T1");
        stopped(db, &a, T2).unwrap();
        assert_eq!(live_nodes(db, T1).unwrap(), 0);
        register(db, &node("a", "a2"), "host a", T3).unwrap();
        assert!(!heartbeat(db, &a, T3).unwrap(), "another run took the name");
    }
}
