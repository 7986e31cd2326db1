//! Reaching PostgreSQL: a small pool of sessions ([`Pool`]) to the database a URL names
//! ([`Target`], in `target`) for the work beside the database writer — the outbox
//! sender, the web pages, metrics, the survey sweep — which each hold a session only for
//! one short transaction.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use super::db::{Db, DbResult, PgConn};
pub use super::target::{is_postgres_url, Target};

/// Sessions kept open for the short transactions beside the writer. At most `size` are
/// open at once; a caller waits for one when all are in use. A session that broke, or
/// whose holder left a transaction open (a panic), is closed instead of kept.
pub struct Pool {
    target: Arc<Target>,
    size: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
    /// Whether this process has brought the database's schema up to date.
    migrated: Mutex<bool>,
}

struct PoolState {
    idle: Vec<PgConn>,
    /// Sessions handed out and not returned yet.
    out: usize,
}

/// How long a caller waits for a session before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);

impl Pool {
    pub fn new(target: Arc<Target>, size: usize) -> Pool {
        Pool {
            target,
            size: size.max(1),
            state: Mutex::new(PoolState { idle: Vec::new(), out: 0 }),
            returned: Condvar::new(),
            migrated: Mutex::new(false),
        }
    }

    /// Runs `migrate` unless it succeeded in this process before.
    pub fn migrated_once(&self, migrate: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut done = self.migrated.lock().unwrap_or_else(|e| e.into_inner());
        if !*done {
            migrate()?;
            *done = true;
        }
        Ok(())
    }

    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// A session: an idle one, or a new one while fewer than `size` are open.
    pub fn get(self: &Arc<Self>) -> anyhow::Result<Pooled> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                state.out += 1;
                return Ok(Pooled { conn: Some(conn), pool: Arc::clone(self) });
            }
            if state.out < self.size {
                state.out += 1;
                drop(state);
                return match PgConn::connect(Arc::clone(&self.target)) {
                    Ok(conn) => Ok(Pooled { conn: Some(conn), pool: Arc::clone(self) }),
                    Err(e) => {
                        self.give_back(None);
                        Err(anyhow::Error::new(e).context(format!("cannot connect to {}", self.target)))
                    }
                };
            }
            let (next, timeout) = self.returned.wait_timeout(state, POOL_WAIT).unwrap_or_else(|e| e.into_inner());
            state = next;
            if timeout.timed_out() && state.idle.is_empty() && state.out >= self.size {
                anyhow::bail!("all {} database sessions stayed busy for {} s", self.size, POOL_WAIT.as_secs());
            }
        }
    }

    fn give_back(&self, conn: Option<PgConn>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.out = state.out.saturating_sub(1);
        if let Some(conn) = conn {
            state.idle.push(conn);
        }
        self.returned.notify_one();
    }
}

/// A session from the [`Pool`]; returned to it when dropped.
pub struct Pooled {
    conn: Option<PgConn>,
    pool: Arc<Pool>,
}

impl Pooled {
    pub fn db(&self) -> Db<'_> {
        Db::Postgres(self.conn.as_ref().expect("present until dropped"))
    }

    pub fn conn(&self) -> &PgConn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let conn = self.conn.take().filter(|c| !c.is_closed() && !c.in_transaction());
        self.pool.give_back(conn);
    }
}

/// The pools of this process, one per database (a process uses one; tests use several).
pub fn pool(target_url: &str, size: usize) -> anyhow::Result<Arc<Pool>> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static POOLS: OnceLock<Mutex<HashMap<String, Arc<Pool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pool) = pools.get(target_url) {
        return Ok(Arc::clone(pool));
    }
    let target = Target::parse(target_url).map_err(|e| anyhow::anyhow!("database URL: {e}"))?;
    let pool = Arc::new(Pool::new(Arc::new(target), size));
    pools.insert(target_url.to_string(), Arc::clone(&pool));
    Ok(pool)
}

/// Checks that a session can be opened, for `doctor`.
pub fn check(target: &Arc<Target>) -> anyhow::Result<String> {
    let conn = PgConn::connect(Arc::clone(target)).with_context(|| format!("cannot connect to {target}"))?;
    let version: String = Db::Postgres(&conn).query_one("SHOW server_version", crate::vals![], |r| r.get(0))?;
    Ok(format!("PostgreSQL {version} at {target}"))
}

/// `Ok` when `db` answers (a trivial query).
pub fn ping(db: Db<'_>) -> DbResult<()> {
    db.query_one("SELECT 1", crate::vals![], |_| Ok(()))
}
