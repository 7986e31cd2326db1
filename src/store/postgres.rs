//! Reaching PostgreSQL: the database a `postgres://` URL names ([`Target`]: its
//! settings, TLS with rustls), and a small pool of sessions ([`Pool`]) for the work
//! beside the database writer — the outbox sender, the web pages, metrics, the survey
//! sweep — which each hold a session only for one short transaction.
//!
//! TLS follows the URL's `sslmode`: `disable` never encrypts; `prefer` (the default)
//! encrypts when the server offers it; `require`, `verify-ca` and `verify-full` refuse a
//! server that does not. Whenever TLS is used the server's certificate is checked for its
//! host name against the public roots and, if the URL names one with `sslrootcert=FILE`,
//! a private CA — as `verify-full` does in libpq: a certificate that cannot be checked is
//! refused rather than trusted.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::db::{Db, DbResult, PgConn};

/// How long connecting may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database as a URL names it: where it is, how to sign in, and TLS.
pub struct Target {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The URL as it may be shown: without the password.
    shown: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("url", &self.shown).finish()
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl Target {
    /// Reads a `postgres://user:password@host:port/database?sslmode=…` URL. The error
    /// says what is wrong without repeating the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Target, String> {
        if !is_postgres_url(url) {
            return Err("not a PostgreSQL URL: it must start with postgres:// or postgresql://".into());
        }
        let mut parsed = url::Url::parse(url.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
        let mut sslmode = String::from("prefer");
        let mut rootcert = None;
        let mut kept: Vec<(String, String)> = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => sslmode = value.into_owned(),
                "sslrootcert" => rootcert = Some(value.into_owned()),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        let mode = match sslmode.as_str() {
            "disable" => postgres::config::SslMode::Disable,
            "prefer" | "allow" => postgres::config::SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => postgres::config::SslMode::Require,
            other => {
                return Err(format!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"))
            }
        };
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let mut config: postgres::Config = parsed.as_str().parse().map_err(|e: postgres::Error| {
            // The driver's own words are in the source ("unknown option `colour`").
            match std::error::Error::source(&e) {
                Some(why) => format!("{e}: {why}"),
                None => e.to_string(),
            }
        })?;
        config.ssl_mode(mode);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("casegate");
        }
        let tls = match mode {
            postgres::config::SslMode::Disable => None,
            _ => Some(tls(rootcert.as_deref().map(Path::new))?),
        };
        let _ = parsed.set_password(None);
        Ok(Target { config, tls, shown: parsed.to_string() })
    }

    /// Opens a new session.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
    }
}

/// The rustls connector: public roots, plus the CA in `rootcert` if given.
fn tls(rootcert: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = rootcert {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sslrootcert {} is not a PEM certificate: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {} holds an unusable certificate: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("sslrootcert {} holds no PEM certificate", path.display()));
        }
    }
    // Named provider: two are in the dependency graph, and `builder()` would refuse.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_shown_without_their_password() {
        let t = Target::parse("postgres://casegate:s3cret@db.example:6543/cases?sslmode=verify-full&connect_timeout=3")
            .unwrap();
        assert!(!t.to_string().contains("s3cret"), "{t}");
        assert!(t.to_string().contains("db.example:6543/cases"), "{t}");
        assert_eq!(t.config.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert!(t.tls.is_some());
        let plain = Target::parse("postgresql://u@127.0.0.1/x?sslmode=disable").unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for (url, words) in [
            ("mysql://u:pw@h/db", "postgres://"),
            ("postgres://u:pw@h/db?sslmode=maybe", "sslmode=maybe"),
            ("postgres://u:pw@h/db?colour=blue", "colour"),
            ("postgres://u:pw@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem", "/nonexistent/ca.pem"),
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(err.contains(words), "{url}: {err}");
            assert!(!err.contains(":pw@"), "{err}");
        }
    }
}
