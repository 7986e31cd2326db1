//! A throw-away casegate installation: a temp directory with a config file, and the real
//! `casegate` binary run against it (black-box, as an operator or a mail server would):
//! one command at a time, or `casegate run` as a daemon.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The configuration most tests start from (the scenario fixtures' installation). Only
/// top-level keys and inline tables, so that tests can append keys and tables after it.
pub const BASE_CONFIG: &str = r#"
system_addresses = ["support@example.com", "help@example.com"]
staff = ["@support.example.com"]
admins = ["admin@example.com"]
case = { token_prefix = "CASE" }
accounts = { "customer.example" = "Customer Inc", "acme.example" = "ACME" }
"#;

pub struct Installation {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Installation {
    /// A fresh installation whose data lives in `<tmp>/var`; `extra` is appended to the
    /// base config (later keys and tables may extend it).
    pub fn new(extra: &str) -> Installation {
        Installation::with_config(&format!("data_dir = \"var\"\n{BASE_CONFIG}\n{extra}"))
    }

    pub fn with_config(text: &str) -> Installation {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("casegate.toml");
        std::fs::write(&config, text).expect("write config");
        Installation { dir, config }
    }

    /// An independent copy: the same config and data, in a new temp directory.
    pub fn copy(&self) -> Installation {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(self.path(), dir.path());
        let config = dir.path().join(self.config.file_name().expect("config file name"));
        Installation { dir, config }
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

    /// The SQLite database, opened read-only, for assertions on what was really stored.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.path().join("var/casegate.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open database")
    }

    /// A number the database holds (`SELECT count(*) …`), for assertions on what was stored.
    pub fn count(&self, sql: &str, params: impl rusqlite::Params) -> i64 {
        self.db().query_row(sql, params, |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
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

/// The repository's fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
