//! An SMTP server on 127.0.0.1 that stores what it accepts: aiosmtpd running
//! `smtp_sink.py`, with TLS, AUTH, a relay on to Dovecot's LMTP, and faults set at run time.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    free_port, keep_dirs, log_file, mentions_port_in_use, tail, temp_dir, Dovecot, LaunchError, TestCa, START_TIMEOUT,
};

/// How the sink speaks TLS. With TLS and no [`SinkOptions::ca`], the sink uses
/// [`TestCa::shared`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SinkTls {
    /// Plain SMTP.
    #[default]
    None,
    /// STARTTLS offered (and required before AUTH when AUTH is configured).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// How to start an [`SmtpSink`].
#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    pub tls: SinkTls,
    /// Require `AUTH` with this user and password before MAIL.
    pub auth: Option<(String, String)>,
    /// Hand every accepted message on to Dovecot's LMTP at this port (127.0.0.1); its
    /// refusal is passed back to the SMTP client.
    pub lmtp_port: Option<u16>,
    /// Listen on this port (e.g. [`DovecotPorts::relay`]); default: a free one.
    pub port: Option<u16>,
    /// Certificates for TLS; default: [`TestCa::shared`].
    pub ca: Option<TestCa>,
}

impl SinkOptions {
    /// Plain SMTP, no AUTH, on a free port, storing only.
    pub fn plain() -> SinkOptions {
        SinkOptions::default()
    }

    /// The relay behind a Dovecot: listens on its [`DovecotPorts::relay`] and delivers
    /// what it accepts to its LMTP, so lettre → submission → sink → LMTP → INBOX works.
    pub fn relay_for(dovecot: &Dovecot) -> SinkOptions {
        SinkOptions {
            port: Some(dovecot.ports().relay),
            lmtp_port: Some(dovecot.ports().lmtp),
            ca: Some(dovecot.ca().clone()),
            ..SinkOptions::default()
        }
    }

    pub fn starttls(mut self) -> SinkOptions {
        self.tls = SinkTls::StartTls;
        self
    }

    pub fn implicit_tls(mut self) -> SinkOptions {
        self.tls = SinkTls::Implicit;
        self
    }

    pub fn auth(mut self, user: &str, password: &str) -> SinkOptions {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn lmtp(mut self, port: u16) -> SinkOptions {
        self.lmtp_port = Some(port);
        self
    }

    pub fn port(mut self, port: u16) -> SinkOptions {
        self.port = Some(port);
        self
    }

    pub fn ca(mut self, ca: &TestCa) -> SinkOptions {
        self.ca = Some(ca.clone());
        self
    }
}

/// What the sink does with the next transactions; set at run time with
/// [`SmtpSink::set_fault`] (the sink re-reads it at every MAIL FROM). A message that gets
/// a fault is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Accept everything (the default).
    Accept,
    /// Answer `451 4.3.0` after DATA for the next `count` transactions, then accept.
    TempFail { count: u32 },
    /// Answer `550 5.1.1` to `RCPT TO` for these addresses (case-insensitive), until changed.
    RejectRecipients(Vec<String>),
    /// Close the connection after DATA without any reply, for the next `count`
    /// transactions: the client cannot know whether the message arrived (it did not).
    Drop { count: u32 },
}

/// One message the sink accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`), empty for a null sender.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt_to: Vec<String>,
    /// The message as transmitted in DATA (CRLF line endings, dot-unstuffed).
    pub data: Vec<u8>,
}

/// A real SMTP server (aiosmtpd running `smtp_sink.py`) on 127.0.0.1 that stores what it
/// accepts in its temp dir (`messages/NNNNNN.eml` + `.json` envelope). Killed on drop.
pub struct SmtpSink {
    process: Option<Child>,
    /// Whether it ever came up (see `Dovecot::started`).
    started: bool,
    port: u16,
    options: SinkOptions,
    /// Certificates in the sink's own dir, when it speaks TLS.
    ca: Option<TestCa>,
    /// Numbers the fault instructions, so the sink knows a new one from one it is using.
    fault_seq: AtomicU64,
    // Last field: dropped after Drop::drop has killed the server using it.
    dir: TempDir,
}

impl SmtpSink {
    /// Starts the sink and returns once it listens. Blocking; ≈0.2 s (Python start-up).
    pub fn start(options: SinkOptions) -> SmtpSink {
        let dir = temp_dir("casegate-smtp-sink.");
        let tls_dir = dir.path().join("tls");
        let ca = match (&options.tls, &options.ca) {
            (SinkTls::None, _) => None,
            (_, Some(ca)) => Some(ca.copy_to(&tls_dir)),
            (_, None) => Some(TestCa::shared(&tls_dir)),
        };
        let mut sink = SmtpSink {
            process: None,
            started: false,
            port: options.port.unwrap_or_else(free_port),
            options,
            ca,
            fault_seq: AtomicU64::new(0),
            dir,
        };
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            match sink.launch() {
                Ok(child) => {
                    sink.process = Some(child);
                    sink.started = true;
                    return sink;
                }
                // A port we chose was taken by another process meanwhile: choose again.
                Err(e) if e.port_in_use && sink.options.port.is_none() && attempt < ATTEMPTS => {
                    sink.port = free_port();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA to trust for the sink's TLS (None for a plain sink).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("sink.log")
    }

    pub fn log_tail(&self) -> String {
        format!("--- {} (tail) ---\n{}", self.log_path().display(), tail(&self.log_path(), 30))
    }

    /// Changes what the sink does from its next transaction on.
    pub fn set_fault(&self, fault: Fault) {
        let seq = self.fault_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let control = match fault {
            Fault::Accept => serde_json::json!({ "seq": seq, "mode": "accept" }),
            Fault::TempFail { count } => {
                serde_json::json!({ "seq": seq, "mode": "tempfail", "count": count })
            }
            Fault::RejectRecipients(recipients) => {
                serde_json::json!({ "seq": seq, "mode": "reject_rcpt", "recipients": recipients })
            }
            Fault::Drop { count } => {
                serde_json::json!({ "seq": seq, "mode": "drop", "count": count })
            }
        };
        // Rename into place: the sink never reads a half-written file.
        let tmp = self.dir().join("control.json.new");
        fs::write(&tmp, control.to_string()).expect("write sink control file");
        fs::rename(&tmp, self.dir().join("control.json")).expect("install sink control file");
    }

    /// Every message accepted so far, in order of arrival.
    pub fn messages(&self) -> Vec<Received> {
        let messages = self.dir().join("messages");
        let Ok(entries) = fs::read_dir(&messages) else {
            return Vec::new();
        };
        let mut envelopes: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        envelopes.sort();
        envelopes
            .iter()
            .map(|path| {
                let text = fs::read_to_string(path).expect("read envelope");
                let envelope: serde_json::Value = serde_json::from_str(&text).expect("sink writes JSON envelopes");
                let data = fs::read(path.with_extension("eml")).expect("read message");
                Received {
                    mail_from: envelope["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_to: envelope["rcpt_to"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    data,
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived and returns all of them; panics after
    /// `timeout`, showing what did arrive. Async: it does not block the runtime, so the
    /// code that sends can run on the same one.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(messages) = self.arrived(n, deadline, timeout) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`SmtpSink::wait_for`] for plain `#[test]`s (sleeps the thread).
    pub fn wait_for_blocking(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(messages) = self.arrived(n, deadline, timeout) {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One look for [`SmtpSink::wait_for`]: all messages once there are `n`, `None` while
    /// there are fewer; past `deadline`, a panic that shows what did arrive.
    fn arrived(&self, n: usize, deadline: Instant, timeout: Duration) -> Option<Vec<Received>> {
        let messages = self.messages();
        if messages.len() >= n {
            return Some(messages);
        }
        if Instant::now() > deadline {
            self.wait_failed(n, timeout, &messages);
        }
        None
    }

    fn wait_failed(&self, n: usize, timeout: Duration, got: &[Received]) -> ! {
        let got: Vec<_> = got.iter().map(|m| (&m.mail_from, &m.rcpt_to)).collect();
        panic!(
            "SMTP sink on {} got {} of {n} messages within {timeout:?}: {got:?}\n{}",
            self.port,
            got.len(),
            self.log_tail()
        )
    }

    /// Kills the sink: its port refuses connections until [`SmtpSink::start_again`].
    /// Stored messages and the fault setting stay. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the sink again on the same port, with the same messages and fault setting.
    pub fn start_again(&mut self) {
        self.stop();
        match self.launch() {
            Ok(child) => self.process = Some(child),
            Err(e) => panic!("SMTP sink restart failed: {}", e.message),
        }
    }

    fn launch(&self) -> Result<Child, LaunchError> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_sink.py");
        let log_path = self.log_path();
        let log_len_before = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = log_file(&log_path);
        let mut command = Command::new(python());
        command
            .arg(&script)
            .arg("--dir")
            .arg(self.dir())
            .args(["--port", &self.port.to_string()])
            // The sink exits when this process is gone (it can outlive us otherwise).
            .args(["--parent-pid", &std::process::id().to_string()]);
        if let Some(ca) = &self.ca {
            let tls = match self.options.tls {
                SinkTls::None => "none",
                SinkTls::StartTls => "starttls",
                SinkTls::Implicit => "implicit",
            };
            command.args(["--tls", tls]).arg("--cert").arg(&ca.cert_pem).arg("--key").arg(&ca.key_pem);
        }
        if let Some((user, password)) = &self.options.auth {
            command.args(["--auth", &format!("{user}:{password}")]);
        }
        if let Some(lmtp) = self.options.lmtp_port {
            command.args(["--lmtp", &lmtp.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", python().display()));
        let ready = format!("READY {}", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Only this launch's part of the log counts (start_again appends to it).
            let mut this_run = String::new();
            if let Ok(mut f) = File::open(&log_path) {
                use std::io::Seek;
                let _ = f.seek(std::io::SeekFrom::Start(log_len_before));
                let _ = f.read_to_string(&mut this_run);
            }
            if this_run.lines().any(|l| l == ready) {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LaunchError {
                    port_in_use: mentions_port_in_use(&this_run),
                    message: format!(
                        "SMTP sink on 127.0.0.1:{} exited at start ({status})\n{}",
                        self.port,
                        self.log_tail()
                    ),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LaunchError {
                    port_in_use: false,
                    message: format!(
                        "SMTP sink on 127.0.0.1:{} not ready within {START_TIMEOUT:?}\n{}",
                        self.port,
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if std::thread::panicking() && self.started {
            eprintln!("SMTP sink at {}:\n{}", self.dir().display(), self.log_tail());
        }
        self.stop();
        if keep_dirs() {
            self.dir.disable_cleanup(true);
            eprintln!("kept SMTP sink dir {}", self.dir().display());
        }
    }
}

/// A Python that can import aiosmtpd: Debian's `/usr/bin/python3` (the `python3` first on
/// PATH on these machines is a separate install that does not see Debian's packages),
/// else `python3` from PATH (e.g. a venv with `pip install aiosmtpd`).
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let imports_aiosmtpd = |python: &str| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if imports_aiosmtpd("/usr/bin/python3") {
            Ok(PathBuf::from("/usr/bin/python3"))
        } else if imports_aiosmtpd("python3") {
            eprintln!("note: /usr/bin/python3 cannot import aiosmtpd; the SMTP sink uses `python3` from PATH");
            Ok(PathBuf::from("python3"))
        } else {
            Err("the SMTP sink needs aiosmtpd, but neither /usr/bin/python3 nor `python3` on PATH \
                 can import it: install the Debian package python3-aiosmtpd (scripts/test does \
                 when run as root) or `pip install aiosmtpd` into the python3 on PATH"
                .to_owned())
        }
    });
    match found {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}
