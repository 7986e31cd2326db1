//! Claims of periodic jobs (table `job_runs`): a job that should run once a day runs once
//! a day across restarts, and — on a database several nodes share — on one node: the
//! claim is a single conditional write, which only one writer can win.

use crate::store::db::{Db, DbResult};
use crate::vals;

/// Claims job `name` for a run at `now` (stored time) when it last ran at or before
/// `due_if_before` (or never): true when this caller should run it.
pub fn claim(db: Db<'_>, name: &str, now: &str, due_if_before: &str) -> DbResult<bool> {
    let changed = db.execute(
        "INSERT INTO job_runs (name, last_run_at) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET last_run_at = ?2 WHERE job_runs.last_run_at <= ?3",
        vals![name, now, due_if_before],
    )?;
    Ok(changed > 0)
}

/// Sets when job `name` counts as last run (a failed run is tried again sooner by saying
/// it ran earlier).
pub fn set_last_run(db: Db<'_>, name: &str, at: &str) -> DbResult<()> {
    db.execute("UPDATE job_runs SET last_run_at = ?2 WHERE name = ?1", vals![name, at])?;
    Ok(())
}

/// When job `name` last ran, if ever.
pub fn last_run(db: Db<'_>, name: &str) -> DbResult<Option<String>> {
    db.query_row("SELECT last_run_at FROM job_runs WHERE name = ?1", vals![name], |r| r.get(0))
}
