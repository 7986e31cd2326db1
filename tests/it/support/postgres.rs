//! A throw-away PostgreSQL cluster for the tests: Debian's `initdb` and `postgres`, run as
//! a non-root user (the server refuses root; as root the harness runs it as `nobody`), on
//! 127.0.0.1 with a port and a socket directory of its own under a temp dir.
//!
//! One cluster serves the whole test process (starting one takes about a second); every
//! test gets a database of its own from [`database`]. The cluster is stopped when the test
//! process ends: a small shell watchdog beside it waits for the process and then stops the
//! server, so no cluster outlives a run, even one that was killed.
//!
//! A second cluster, started only by the tests that ask for it ([`tls_cluster`]), lets
//! clients in over TLS alone: `ssl=on` with a certificate for 127.0.0.1 and localhost from
//! a throw-away CA, and a pg_hba.conf of one `hostssl` line with SCRAM passwords, so the
//! server itself refuses every unencrypted connection.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::mailstack::{free_port, TestCa};

/// The one cluster of this test process.
pub struct Cluster {
    /// Kept for the life of the process (the watchdog removes it at the end).
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    /// On the TLS cluster: its CA and the password of [`USER`].
    tls: Option<Tls>,
}

/// What a client needs to reach the TLS cluster.
#[derive(Clone)]
pub struct Tls {
    /// The CA that signed the server's certificate (PEM; not a public root).
    pub ca_pem: PathBuf,
    /// The password of [`USER`] (SCRAM; the only way in).
    pub password: String,
}

/// The user the tests connect as (trust authentication, loopback only).
pub const USER: &str = "casegate";

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TLS_CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// Where Debian's PostgreSQL programs are (the newest version installed).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// The running cluster, started on first use; `None` (with the reason printed) when
/// PostgreSQL is not installed, so a test can say it skipped.
pub fn cluster() -> Option<&'static Cluster> {
    match CLUSTER.get_or_init(|| Cluster::start(false)) {
        Ok(c) => Some(c),
        Err(why) => {
            println!("skipping: no PostgreSQL for the tests: {why}");
            None
        }
    }
}

/// The cluster that lets clients in over TLS only (see the module's words), started on
/// first use; `None` (with the reason printed) when PostgreSQL is not installed.
pub fn tls_cluster() -> Option<&'static Cluster> {
    match TLS_CLUSTER.get_or_init(|| Cluster::start(true)) {
        Ok(c) => Some(c),
        Err(why) => {
            println!("skipping: no PostgreSQL with TLS for the tests: {why}");
            None
        }
    }
}

/// A new, empty database on the shared cluster; its connection URL.
pub fn database() -> Option<String> {
    let cluster = cluster()?;
    Some(cluster.url(&cluster.new_database()))
}

/// A new database with the tables and rows of `name` (which nobody may be connected to);
/// its connection URL.
pub fn copy_of(name: &str) -> String {
    let cluster = cluster().expect("the cluster runs: the database to copy is on it");
    let copy = new_name();
    cluster.psql("postgres", &format!("CREATE DATABASE {copy} TEMPLATE {name}"));
    cluster.url(&copy)
}

fn new_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Cluster {
    /// Makes and starts a cluster: the shared one (trust, plain connections), or with
    /// `tls` the one that takes only TLS connections with a password.
    fn start(tls: bool) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("no /usr/lib/postgresql/*/bin/postgres (install Debian's postgresql)")?;
        let dir = tempfile::Builder::new().prefix("casegate-pg.").tempdir().map_err(|e| e.to_string())?.keep();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let tls = if tls {
            let ca = TestCa::generate(&dir.join("tls"));
            // The server reads its key only when no one else may (0600, its own user's).
            std::fs::set_permissions(&ca.key_pem, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
            let password = format!("Tls-pw-{}-{}", std::process::id(), rand::random::<u32>());
            std::fs::write(dir.join("pwfile"), format!("{password}\n")).map_err(|e| e.to_string())?;
            Some((ca, password))
        } else {
            None
        };
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            // The server refuses to run as root: its files belong to `nobody`.
            chown_tree(&dir, 65534, 65534)?;
        }
        let mut args = vec!["-D".to_string(), path(&data), "-U".into(), USER.into()];
        match &tls {
            None => args.push("--auth=trust".into()),
            Some(_) => args.extend(["--auth=scram-sha-256".into(), format!("--pwfile={}", path(&dir.join("pwfile")))]),
        }
        args.extend(["--no-sync", "-E", "UTF8", "--locale=C"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let initdb = run_as(as_root, &bin.join("initdb"), &args).output().map_err(|e| format!("initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr)));
        }
        let tls = match tls {
            None => None,
            Some((ca, password)) => {
                // TLS or nothing: no `host` line, no `local` line.
                let hba = data.join("pg_hba.conf");
                std::fs::write(&hba, "hostssl all all 127.0.0.1/32 scram-sha-256\n").map_err(|e| e.to_string())?;
                if as_root {
                    std::os::unix::fs::chown(&hba, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
                }
                let conf = format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nlog_connections = on\n",
                    path(&ca.cert_pem),
                    path(&ca.key_pem)
                );
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(data.join("postgresql.conf"))
                    .map_err(|e| e.to_string())?;
                std::io::Write::write_all(&mut file, conf.as_bytes()).map_err(|e| e.to_string())?;
                Some(Tls { ca_pem: ca.ca_pem, password })
            }
        };
        for attempt in 0..5 {
            let port = free_port();
            let cluster = Cluster { dir: dir.clone(), port, bin: bin.clone(), tls: tls.clone() };
            match cluster.launch(as_root) {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < 4 => eprintln!("PostgreSQL did not start on port {port}, trying another: {e}"),
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Starts the server with a watchdog that stops it when this process is gone, and
    /// waits until it accepts connections.
    fn launch(&self, as_root: bool) -> Result<(), String> {
        let data = path(&self.dir.join("data"));
        let log = path(&self.dir.join(format!("postgres-{}.log", self.port)));
        // Tests need speed, not durability; the cluster is thrown away.
        let server = format!(
            "{} -D {data} -p {} -k {} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=64MB",
            path(&self.bin.join("postgres")),
            self.port,
            path(&self.dir)
        );
        // The watchdog runs as the server's user, which may not signal this process:
        // it looks for it in /proc instead.
        let me = std::process::id();
        let watchdog = format!(
            "{server} >>{log} 2>&1 & pg=$!; while [ -d /proc/{me} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; \
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf {}",
            path(&self.dir)
        );
        run_as(as_root, Path::new("/bin/sh"), &["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("PostgreSQL did not accept connections within 30 s; see {log}"))
    }

    /// Makes a new, empty database; its name (unique in this process, across clusters).
    pub fn new_database(&self) -> String {
        // One sequence of names for every cluster and copy: no two databases share one.
        let name = new_name();
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The CA and password of the TLS cluster ([`tls_cluster`]); `None` on the shared one.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// What the server logged so far (on the TLS cluster, every connection it let in).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("postgres-{}.log", self.port))).unwrap_or_default()
    }

    /// The cluster's data directory (`PGDATA`): what the server writes to disk.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://casegate@127.0.0.1:PORT/NAME`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one SQL statement with psql; panics with psql's words when it fails. On the
    /// TLS cluster psql signs in with the password over TLS, checking the certificate.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut psql = Command::new(self.bin.join("psql"));
        if let Some(tls) = &self.tls {
            psql.env("PGPASSWORD", &tls.password).env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", &tls.ca_pem);
        }
        let out = psql
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Separators of [`Cluster::rows`]: ASCII unit, record and group separators, which no
/// value the tests read contains.
const FIELD_SEP: &str = "\u{1f}";
const RECORD_SEP: &str = "\u{1e}";
const NULL_MARK: &str = "\u{1d}";

impl Cluster {
    /// Runs SQL with psql; the rows of its last statement, every value as psql prints it
    /// (`None` for NULL).
    pub fn rows(&self, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", FIELD_SEP, "-R", RECORD_SEP])
            .args(["-P", &format!("null={NULL_MARK}"), "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8 from psql");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() {
            return Vec::new();
        }
        text.split(RECORD_SEP)
            .map(|row| row.split(FIELD_SEP).map(|v| if v == NULL_MARK { None } else { Some(v.to_string()) }).collect())
            .collect()
    }
}

/// The database name at the end of a URL of [`Cluster::url`].
pub fn database_name(url: &str) -> &str {
    url.rsplit('/').next().expect("a database name")
}

/// `program args…`, as `nobody` when we are root.
fn run_as(as_root: bool, program: &Path, args: &[&str]) -> Command {
    if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let p = entry.map_err(|e| e.to_string())?.path();
        if p.is_dir() {
            chown_tree(&p, uid, gid)?;
        } else {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_postgres_cluster_starts_as_a_non_root_user_and_gives_each_test_a_database() {
    let Some(url) = database() else { return };
    let cluster = cluster().expect("started above");
    let name = url.rsplit('/').next().unwrap();
    cluster.psql(name, "CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (42)");
    assert_eq!(cluster.psql(name, "SELECT x FROM t"), "42");
    let owner = cluster.psql("postgres", "SELECT current_setting('data_directory')");
    assert!(owner.contains("casegate-pg."), "{owner}");
    let other = database().unwrap();
    assert_ne!(other, url, "each test gets a database of its own");
}
