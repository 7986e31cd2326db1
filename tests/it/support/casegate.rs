//! A throw-away casegate installation: a temp directory with a config file, and the real
//! `casegate` binary run against it (black-box, as an operator or a mail server would):
//! one command at a time, or `casegate run` as a daemon.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::postgres;

/// The configuration most tests start from (the scenario fixtures' installation). Only
/// top-level keys and inline tables, so that tests can append keys and tables after it.
pub const BASE_CONFIG: &str = r#"
system_addresses = ["support@example.com", "help@example.com"]
staff = ["@support.example.com"]
admins = ["admin@example.com"]
case = { token_prefix = "CASE" }
accounts = { "customer.example" = "Customer Inc", "acme.example" = "ACME" }
"#;

/// The environment variable that chooses the store of the installations the harness
/// makes: unset or `sqlite`, SQLite in `data_dir`; `postgres`, a fresh database of its own
/// on the shared test cluster (see [`Installation::with_config`]).
pub const BACKEND_VAR: &str = "CASEGATE_TEST_BACKEND";

/// The node name of installations on PostgreSQL.
const NODE: &str = "test-node";

/// Whether [`BACKEND_VAR`] asks for PostgreSQL; panics on a value it does not know.
pub fn on_postgres() -> bool {
    static CHOICE: OnceLock<bool> = OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var(BACKEND_VAR).as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("{BACKEND_VAR}={other:?}: expected \"sqlite\" or \"postgres\""),
    })
}

pub struct Installation {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The database on the test cluster the harness gave this installation
    /// ([`BACKEND_VAR`]`=postgres`); `None`: SQLite in `var/`, or a store the test's own
    /// config names.
    pub database: Option<String>,
}

impl Installation {
    /// A fresh installation whose data lives in `<tmp>/var`; `extra` is appended to the
    /// base config (later keys and tables may extend it).
    pub fn new(extra: &str) -> Installation {
        Installation::with_config(&format!("data_dir = \"var\"\n{BASE_CONFIG}\n{extra}"))
    }

    /// An installation with the config `text`. With [`BACKEND_VAR`]`=postgres` and no
    /// `database_url` in `text`, it stores in a fresh database on the test cluster:
    /// `storage.database_url` and `storage.node` are added to the config.
    pub fn with_config(text: &str) -> Installation {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("casegate.toml");
        let (text, database) = if on_postgres() && !text.contains("database_url") {
            let url = postgres::database()
                .unwrap_or_else(|| panic!("{BACKEND_VAR}=postgres, but PostgreSQL is not installed"));
            (with_storage(text, &url), Some(postgres::database_name(&url).to_string()))
        } else {
            (text.to_string(), None)
        };
        std::fs::write(&config, text).expect("write config");
        Installation { dir, config, database }
    }

    /// An independent copy: the same config and data, in a new temp directory (and a new
    /// database, on PostgreSQL).
    pub fn copy(&self) -> Installation {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(self.path(), dir.path());
        let config = dir.path().join(self.config.file_name().expect("config file name"));
        let database = self.database.as_deref().map(|name| {
            let cluster = postgres::cluster().expect("the cluster runs");
            let url = postgres::copy_of(name);
            let text = std::fs::read_to_string(&config).expect("read config");
            std::fs::write(&config, text.replace(&cluster.url(name), &url)).expect("write config");
            postgres::database_name(&url).to_string()
        });
        Installation { dir, config, database }
    }

    /// Whether this installation stores in PostgreSQL (one the harness made for it).
    pub fn on_postgres(&self) -> bool {
        self.database.is_some()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `casegate --config <ours> ARGS...` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_casegate"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.path())
            .env_remove("CASEGATE_CONFIG")
            .env_remove("RUST_LOG");
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn casegate");
        if let Some(data) = stdin {
            child.stdin.take().expect("piped stdin").write_all(data).expect("write stdin");
        }
        child.wait_with_output().expect("wait for casegate")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "casegate {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs a `--json` command that must succeed; returns the parsed value.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("casegate {args:?} printed invalid JSON ({e}):\n{out}"))
    }

    /// `ingest --json` of files; one parsed line per mail.
    pub fn ingest(&self, files: &[&Path]) -> Vec<Value> {
        let mut args = vec!["ingest", "--json"];
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        self.ok(&args).lines().map(|l| serde_json::from_str(l).expect("ingest --json line")).collect()
    }

    /// `ingest --json` of one raw mail given as bytes (written to a file first).
    pub fn ingest_bytes(&self, name: &str, raw: &[u8]) -> Value {
        let path = self.path().join(name);
        std::fs::write(&path, raw).expect("write mail");
        self.ingest(&[&path]).remove(0)
    }

    pub fn case(&self, id: &str) -> Value {
        self.json(&["cases", "show", id, "--json"])
    }

    /// The SQLite database, opened read-only, for assertions on what SQLite really holds
    /// (its file, its pragmas). Tests that may run on PostgreSQL read through [`rows`],
    /// [`count`] and [`execute`] instead.
    ///
    /// [`rows`]: Installation::rows
    /// [`count`]: Installation::count
    /// [`execute`]: Installation::execute
    pub fn db(&self) -> rusqlite::Connection {
        assert!(!self.on_postgres(), "Installation::db opens SQLite; this installation stores in PostgreSQL");
        self.sqlite(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    fn sqlite(&self, flags: rusqlite::OpenFlags) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.path().join("var/casegate.db"), flags).expect("open database")
    }

    /// The rows a query returns, on either store, every value as text (`None` for NULL;
    /// bytes as `\x` and hex). `sql` is written for both (casegate's tables and columns are
    /// the same); `?1`, `?2`… are its parameters.
    pub fn rows(&self, sql: &str, params: impl Args) -> Vec<Vec<Option<String>>> {
        let params = params.values();
        match &self.database {
            Some(name) => postgres::cluster().expect("the cluster runs").rows(name, &with_literals(sql, &params)),
            None => {
                let db = self.db();
                let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        (0..n).map(|c| r.get_ref(c).map(text_of)).collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.map(|r| r.unwrap_or_else(|e| panic!("{sql}: {e}"))).collect()
            }
        }
    }

    /// A number the database holds (`SELECT count(*) …`), for assertions on what was stored.
    pub fn count(&self, sql: &str, params: impl Args) -> i64 {
        let rows = self.rows(sql, params);
        let value = rows.first().and_then(|r| r.first()).cloned().flatten();
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{sql}: no number in {rows:?}"))
    }

    /// The stored bytes of the attachment `sha256`: its file under `var/blobs` on SQLite,
    /// its row of `blobs` on PostgreSQL.
    pub fn blob(&self, sha256: &str) -> Vec<u8> {
        if !self.on_postgres() {
            return std::fs::read(self.path().join("var/blobs").join(&sha256[..2]).join(sha256)).expect("blob file");
        }
        let rows = self.rows("SELECT data FROM blobs WHERE sha256 = ?1", [sha256]);
        let hex = rows.first().and_then(|r| r[0].as_deref()).expect("a blob row");
        let hex = hex.strip_prefix("\\x").expect("bytea in hex");
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
    }

    /// Changes the database behind casegate's back (a state no command makes).
    pub fn execute(&self, sql: &str, params: impl Args) {
        let params = params.values();
        match &self.database {
            Some(name) => {
                postgres::cluster().expect("the cluster runs").psql(name, &with_literals(sql, &params));
            }
            None => {
                self.sqlite(rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                    .execute(sql, rusqlite::params_from_iter(params))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}

/// The parameters of [`Installation::rows`]: `[]`, or an array of values (`[name]`,
/// `[id, 3]`…), as rusqlite takes them.
pub trait Args {
    fn values(&self) -> Vec<rusqlite::types::Value>;
}

impl Args for [&(dyn rusqlite::ToSql + Send + Sync); 0] {
    fn values(&self) -> Vec<rusqlite::types::Value> {
        Vec::new()
    }
}

macro_rules! args_of_arrays {
    ($($n:literal)*) => {$(
        impl<T: rusqlite::ToSql> Args for [T; $n] {
            fn values(&self) -> Vec<rusqlite::types::Value> {
                self.iter().map(|v| value_of(v)).collect()
            }
        }
    )*};
}
args_of_arrays!(1 2 3 4);

fn value_of(v: &dyn rusqlite::ToSql) -> rusqlite::types::Value {
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};
    match v.to_sql().expect("a parameter") {
        ToSqlOutput::Borrowed(ValueRef::Null) => Value::Null,
        ToSqlOutput::Borrowed(ValueRef::Integer(i)) => Value::Integer(i),
        ToSqlOutput::Borrowed(ValueRef::Real(r)) => Value::Real(r),
        ToSqlOutput::Borrowed(ValueRef::Text(t)) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ToSqlOutput::Borrowed(ValueRef::Blob(b)) => Value::Blob(b.to_vec()),
        ToSqlOutput::Owned(v) => v,
        other => panic!("unsupported parameter {other:?}"),
    }
}

/// A value read from SQLite as text, as [`Installation::rows`] gives it.
fn text_of(v: rusqlite::types::ValueRef) -> Option<String> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())),
    }
}

/// `sql` with its parameters `?1`, `?2`… written in as SQL literals (for psql).
fn with_literals(sql: &str, params: &[rusqlite::types::Value]) -> String {
    use rusqlite::types::Value;
    let mut sql = sql.to_string();
    for (i, v) in params.iter().enumerate().rev() {
        let literal = match v {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) => r.to_string(),
            Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
            Value::Blob(b) => format!("'\\x{}'::bytea", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        };
        sql = sql.replace(&format!("?{}", i + 1), &literal);
    }
    sql
}

/// `text` with `storage.database_url = url` and `storage.node`: in its `[storage]` table
/// if it has one, else as dotted keys at the top (the root table; TOML allows them beside
/// a `storage.fsync` key elsewhere at the top, and they cannot fall into another table).
fn with_storage(text: &str, url: &str) -> String {
    let header = |line: &str| line.split('#').next().unwrap_or_default().trim() == "[storage]";
    if text.lines().any(header) {
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if header(line) {
                out.push_str(&format!("database_url = \"{url}\"\nnode = \"{NODE}\"\n"));
            }
        }
        out
    } else {
        format!("storage.database_url = \"{url}\"\nstorage.node = \"{NODE}\"\n{text}")
    }
}

/// How long `casegate run` may take to exit after SIGTERM before the test fails.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `casegate run` as a child process, its log in the installation's `daemon.log`.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// Where this run's part of the (shared, appended) log starts.
    offset: usize,
}

impl Daemon {
    /// Starts `casegate run ARGS` on `inst`, logging at debug into `daemon.log`.
    pub fn start(inst: &Installation, args: &[&str]) -> Daemon {
        Daemon::start_with_env(inst, args, &[])
    }

    /// [`Daemon::start`] with extra environment variables (as a service manager sets them).
    pub fn start_with_env(inst: &Installation, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = inst.path().join("daemon.log");
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let file = OpenOptions::new().create(true).append(true).open(&log).expect("open daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_casegate"))
            .arg("--config")
            .arg(&inst.config)
            .arg("run")
            .args(args)
            .current_dir(inst.path())
            .env_remove("CASEGATE_CONFIG")
            .env("RUST_LOG", "info,casegate=debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn casegate run");
        Daemon { child: Some(child), log, offset }
    }

    /// This run's log.
    pub fn log(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(all.get(self.offset..).unwrap_or_default()).into_owned()
    }

    /// Waits until `needle` occurs at least `n` times in the log.
    pub async fn wait_log(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < n {
            if Instant::now() > deadline {
                panic!("{needle:?} not seen {n} time(s) in the daemon log within {timeout:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` to the daemon (which must be running).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the child is ours and unreaped.
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub async fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < STOP_TIMEOUT, "casegate did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, like a crash, and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create dir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Checks that `expected` is contained in `actual`: objects as subsets, arrays element by
/// element with equal length, scalars equal. Returns the path and reason of the first
/// difference.
pub fn contains(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .ok_or_else(|| format!("{path}.{k}: missing (have keys {:?})", a.keys().collect::<Vec<_>>()))?;
                contains(av, ev, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected {} elements, found {}: {}",
                    e.len(),
                    a.len(),
                    Value::Array(a.clone())
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                contains(av, ev, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: expected {e}, found {a}")),
    }
}

/// Runs `f` on a thread of its own and returns its result: casegate's blocking store
/// calls (the PostgreSQL client runs a runtime of its own) must not run on an async
/// test's runtime thread, just as casegate itself runs them with `spawn_blocking`.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// The repository's fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[test]
fn the_storage_keys_go_into_the_storage_table_or_the_root_table() {
    let url = "postgres://casegate@127.0.0.1:5/t1";
    let keys = |text: &str| -> toml::Table { with_storage(text, url).parse().expect("valid TOML") };
    // A config that ends inside a table (here an array of tables) keeps its table.
    let ends_in_table = keys("data_dir = \"var\"\n[[mailbox]]\nname = \"a\"\n");
    assert_eq!(ends_in_table["storage"]["database_url"].as_str(), Some(url));
    assert_eq!(ends_in_table["mailbox"][0].as_table().unwrap().len(), 1, "nothing added to the mailbox");
    // A `[storage]` table of its own gets the keys, and keeps its others.
    let own = keys("[storage] # tuned\nfsync = true\n[limits]\nmax_message_bytes = 1\n");
    assert_eq!(own["storage"]["database_url"].as_str(), Some(url));
    assert_eq!(own["storage"]["node"].as_str(), Some(NODE));
    assert_eq!(own["storage"]["fsync"].as_bool(), Some(true));
    assert!(own["limits"].get("database_url").is_none());
    // Dotted keys at the top stay valid.
    let dotted = keys("storage.fsync = true\n[web]\nlisten = \"x\"\n");
    assert_eq!(dotted["storage"]["fsync"].as_bool(), Some(true));
    assert_eq!(dotted["storage"]["database_url"].as_str(), Some(url));
}

#[test]
fn an_installation_stores_where_the_test_backend_says() {
    let install = Installation::new("");
    let raw = b"From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Hi\r\nMessage-ID: <b@c.example>\r\n\r\nhi\r\n";
    assert_eq!(install.ingest_bytes("hi.eml", raw)["outcome"], "created");
    assert_eq!(install.on_postgres(), on_postgres());
    assert_eq!(install.path().join("var/casegate.db").exists(), !on_postgres(), "the store is where it should be");
    assert_eq!(install.count("SELECT count(*) FROM cases WHERE subject = ?1", ["Hi"]), 1);
    install.execute("UPDATE cases SET subject = ?1 WHERE id = 1", ["It's me"]);
    assert_eq!(install.rows("SELECT subject, linked_case FROM cases", []), [[Some("It's me".to_string()), None]]);
    let copy = install.copy();
    copy.execute("UPDATE cases SET subject = 'Copied'", []);
    assert_eq!(
        install.count("SELECT count(*) FROM cases WHERE subject = 'It''s me'", []),
        1,
        "a copy has data of its own"
    );
}
