//! Real mail servers on 127.0.0.1 for the integration tests: Dovecot (IMAP, IMAPS,
//! STARTTLS, IDLE, LMTP, submission) and an SMTP sink (`smtp_sink.py`, aiosmtpd).
//!
//! Every instance lives in its own temp dir with its own free ports, config,
//! `instance_name` and `base_dir`, so tests run in parallel without colliding; nothing
//! is read from `/etc/dovecot`. Servers run as child processes and are killed on drop.
//!
//! ```ignore
//! let dovecot = Dovecot::start();                         // blocking, ≈50 ms
//! let sink = SmtpSink::start(SinkOptions::relay_for(&dovecot)); // Dovecot submission relays here
//! dovecot.append(SUPPORT, "INBOX", raw).await;
//! sink.set_fault(Fault::TempFail { count: 1 });
//! ```
//!
//! Starting servers is blocking (usable from `#[test]` and `#[tokio::test]`); the IMAP
//! helpers are async. Helpers panic with the tail of the server log instead of returning
//! errors: they are test fixtures, and a failed fixture should say why at once.
//!
//! Set `CASEGATE_KEEP_TEST_DIRS=1` to keep the temp dirs (config, logs, mail) after a run.

// Each test uses the part of the harness it needs; the rest must not warn.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_imap::Session;
use futures::TryStreamExt;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use rand::Rng;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// The support mailbox casegate reads (password [`PASSWORD`]).
pub const SUPPORT: &str = "support@example.com";
/// A customer with a mailbox of their own, to read notifications (password [`PASSWORD`]).
pub const CUSTOMER: &str = "customer@customer.example";
/// Password of the default users.
pub const PASSWORD: &str = "secret";

/// How long a server may take to come up before the test fails (CI machines are slow).
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Ports, programs, small process helpers
// ---------------------------------------------------------------------------------------

/// Ports this process has handed out: never twice, even after their server let go.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that was free a moment ago and that this process has not handed
/// out before. Another process may still take it before the server binds it: the
/// servers' starts retry with fresh ports when their bind fails.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768-60999 by default): outgoing connections take
    // their source ports from there, and must not grab ours between probe and bind.
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..1_000 {
        let port = rng.gen_range(RANGE);
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {RANGE:?} after 1000 tries");
}

/// Finds a program on PATH, then in the sbin/bin directories: `dovecot` lives in
/// /usr/sbin, which is not on a normal user's PATH.
fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: the integration tests need the Debian package(s) {package} \
         (scripts/test installs them when run as root; .ci/run always does)"
    );
}

fn dovecot_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("dovecot", "dovecot-imapd dovecot-lmtpd dovecot-submissiond"))
}

fn doveadm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("doveadm", "dovecot-core"))
}

fn openssl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("openssl", "openssl"))
}

/// Runs a short command to completion; panics with its stderr if it fails.
fn run(command: &mut Command) -> Output {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The last `lines` lines of a log file, for panic messages.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to the process group led by `child` (spawned with `process_group(0)`).
fn signal_group(child: &Child, signal: libc::c_int) {
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill has no memory-safety preconditions; ESRCH (group gone) is fine.
    unsafe { libc::kill(-pgid, signal) };
}

/// Whether the process has exited, *without* reaping it (waiting for an exit while the
/// process group it belongs to is still to be signalled).
fn has_exited_unreaped(child: &Child) -> bool {
    match fs::read_to_string(format!("/proc/{}/stat", child.id())) {
        // Format: "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

fn temp_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("cannot create a temp dir");
    // tempfile makes it 0700, but as root Dovecot's auth process (user dovecot) and mail
    // processes (uid 65534) must reach the users file and the mail below it.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

fn keep_dirs() -> bool {
    std::env::var_os("CASEGATE_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A unique tag per server instance in this machine: process id plus a counter.
fn instance_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("cg{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Why a server did not come up; `port_in_use` means another process won the race for
/// one of the ports, and a retry with new ports will do.
struct LaunchError {
    port_in_use: bool,
    message: String,
}

/// Whether a server's log says its bind failed with EADDRINUSE. Dovecot writes "Address
/// already in use", Python's asyncio lower-cases it: "address already in use".
fn mentions_port_in_use(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}

// ---------------------------------------------------------------------------------------
// TLS: a tiny CA and a leaf for localhost / 127.0.0.1
// ---------------------------------------------------------------------------------------

/// A throw-away CA and a server certificate it signed, made with the `openssl` CLI.
///
/// A separate CA is needed because rustls rejects a self-signed CA certificate used as
/// the server's own certificate. The leaf has SAN `DNS:localhost, IP:127.0.0.1`.
#[derive(Clone, Debug)]
pub struct TestCa {
    /// The CA certificate to trust (PEM).
    pub ca_pem: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert_pem: PathBuf,
    /// The server certificate's private key (PEM).
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Creates `dir` and writes a new CA, leaf certificate and key into it (≈30 ms).
    pub fn generate(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).expect("create tls dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        run(Command::new(openssl_bin())
            .current_dir(dir)
            .args(["req", "-x509", "-days", "3650"])
            .args(ec)
            .args(["-subj", "/CN=casegate test CA"])
            .args(["-keyout", "ca.key", "-out", "ca.pem"]));
        run(Command::new(openssl_bin())
            .current_dir(dir)
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=localhost"])
            .args(["-keyout", "key.pem", "-out", "leaf.csr"]));
        fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write leaf.ext");
        run(Command::new(openssl_bin()).current_dir(dir).args([
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ]));
        TestCa { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("cert.pem"), key_pem: dir.join("key.pem") }
    }

    /// Writes this process's CA, certificate and key into `dir`. They are made once per
    /// test process (openssl takes ≈80 ms, most of a Dovecot start) and kept in memory.
    pub fn shared(dir: &Path) -> TestCa {
        static PEMS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
        let pems = PEMS.get_or_init(|| {
            let scratch = tempfile::tempdir().expect("create temp dir");
            let ca = TestCa::generate(scratch.path());
            [&ca.ca_pem, &ca.cert_pem, &ca.key_pem].map(|p| fs::read(p).expect("read PEM"))
        });
        fs::create_dir_all(dir).expect("create tls dir");
        let [ca, cert, key] = pems;
        let write = |name: &str, pem: &[u8], mode: u32| {
            let path = dir.join(name);
            fs::write(&path, pem).expect("write PEM");
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod PEM");
            path
        };
        TestCa {
            ca_pem: write("ca.pem", ca, 0o644),
            cert_pem: write("cert.pem", cert, 0o644),
            key_pem: write("key.pem", key, 0o600),
        }
    }

    /// Copies the CA, certificate and key into `dir`, so a server keeps working after
    /// the instance that made them is gone.
    fn copy_to(&self, dir: &Path) -> TestCa {
        fs::create_dir_all(dir).expect("create tls dir");
        let copy = |from: &Path| {
            let to = dir.join(from.file_name().expect("certificate paths name files"));
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
            to
        };
        TestCa { ca_pem: copy(&self.ca_pem), cert_pem: copy(&self.cert_pem), key_pem: copy(&self.key_pem) }
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem_bytes(&self) -> Vec<u8> {
        fs::read(&self.ca_pem).expect("read CA certificate")
    }

    /// A rustls client config that trusts only this CA.
    pub fn rustls_client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_pem).expect("open CA certificate") {
            roots.add(cert.expect("parse CA certificate")).expect("add CA certificate");
        }
        // builder() would panic: lettre and tokio-rustls bring two crypto providers
        // into the graph, so the provider must be named.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// lettre TLS parameters for `localhost` that trust this CA.
    pub fn lettre_tls(&self) -> TlsParameters {
        let ca = Certificate::from_pem(&self.ca_pem_bytes()).expect("parse CA certificate");
        TlsParameters::builder("localhost".to_owned())
            .add_root_certificate(ca)
            .build_rustls()
            .expect("build lettre TLS parameters")
    }
}

// ---------------------------------------------------------------------------------------
// Dovecot
// ---------------------------------------------------------------------------------------

/// A mail account on the test Dovecot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub address: String,
    pub password: String,
}

/// Where one Dovecot instance listens, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DovecotPorts {
    /// IMAP, plain text, STARTTLS offered.
    pub imap: u16,
    /// IMAP over TLS from the first byte.
    pub imaps: u16,
    /// LMTP, for delivering into mailboxes.
    pub lmtp: u16,
    /// SMTP submission, STARTTLS (AUTH needs TLS or the loopback, both true here).
    pub submission: u16,
    /// SMTP submission over TLS from the first byte.
    pub submissions: u16,
    /// Where Dovecot's submission service relays mail to: reserved for an [`SmtpSink`]
    /// (see [`SinkOptions::relay_for`]); nothing listens there until one is started.
    pub relay: u16,
}

impl DovecotPorts {
    fn allocate() -> DovecotPorts {
        DovecotPorts {
            imap: free_port(),
            imaps: free_port(),
            lmtp: free_port(),
            submission: free_port(),
            submissions: free_port(),
            relay: free_port(),
        }
    }
}

/// Declares users before [`DovecotBuilder::start`]: Dovecot must find them in the
/// passwd-file when it starts (a user added within the same second may be unknown).
#[derive(Clone, Debug)]
pub struct DovecotBuilder {
    users: Vec<User>,
    imap_capability: Option<String>,
}

impl DovecotBuilder {
    /// Adds a user (or changes the password of one already declared).
    pub fn user(mut self, address: &str, password: &str) -> DovecotBuilder {
        assert!(
            !address.contains([':', '\n', ' ']) && !password.contains([':', '\n']),
            "the passwd-file cannot hold {address:?} / {password:?}"
        );
        self.users.retain(|u| u.address != address);
        self.users.push(User { address: address.to_owned(), password: password.to_owned() });
        self
    }

    /// Announces exactly these capabilities after login (Dovecot's `imap_capability`), to
    /// play a server without some extension (MOVE, UIDPLUS, IDLE...).
    pub fn imap_capability(mut self, capabilities: &str) -> DovecotBuilder {
        self.imap_capability = Some(capabilities.to_owned());
        self
    }

    /// Writes the config, certificates and users into a new temp dir and starts Dovecot;
    /// returns once it greets on the IMAP port.
    pub fn start(self) -> Dovecot {
        let dir = temp_dir("casegate-dovecot.");
        let ca = TestCa::shared(&dir.path().join("tls"));
        let owner = MailOwner::current();
        for sub in ["mail", "run", "state"] {
            fs::create_dir(dir.path().join(sub)).expect("create dovecot dir");
        }
        if is_root() {
            // As root, mail must not belong to uid 0: Dovecot refuses to run mail
            // processes as root, so they run as 65534, who must own the mail dir.
            std::os::unix::fs::chown(dir.path().join("mail"), Some(owner.uid), Some(owner.gid))
                .expect("chown mail dir");
        }
        let users: String = self
            .users
            .iter()
            .map(|u| {
                let home = dir.path().join("mail").join(&u.address);
                format!("{}:{{PLAIN}}{}:{}:{}::{}\n", u.address, u.password, owner.uid, owner.gid, home.display())
            })
            .collect();
        fs::write(dir.path().join("users"), users).expect("write users file");

        let mut dovecot = Dovecot {
            process: None,
            started: false,
            ports: DovecotPorts::allocate(),
            tag: instance_tag(),
            users: self.users,
            imap_capability: self.imap_capability,
            ca,
            owner,
            dir,
        };
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            fs::write(dovecot.config_path(), dovecot.config()).expect("write dovecot.conf");
            match dovecot.launch() {
                Ok(running) => {
                    dovecot.process = Some(running);
                    dovecot.started = true;
                    return dovecot;
                }
                Err(e) if e.port_in_use && attempt < ATTEMPTS => {
                    // Another process bound one of our ports first: take new ones.
                    dovecot.ports = DovecotPorts::allocate();
                    dovecot.tag = instance_tag();
                }
                Err(e) => panic!("{}", e.message),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// Who owns the mail, and whom the services run as.
#[derive(Clone, Debug)]
struct MailOwner {
    uid: u32,
    gid: u32,
    /// Running without root: user and group names that every service runs as.
    rootless: Option<(String, String)>,
}

impl MailOwner {
    fn current() -> MailOwner {
        if is_root() {
            MailOwner { uid: 65534, gid: 65534, rootless: None }
        } else {
            let id = |flag: &str| {
                let out = run(Command::new("id").arg(flag));
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            };
            MailOwner {
                uid: id("-u").parse().expect("numeric uid"),
                gid: id("-g").parse().expect("numeric gid"),
                rootless: Some((id("-un"), id("-gn"))),
            }
        }
    }
}

/// A Dovecot instance of its own: IMAP, IMAPS, LMTP and submission on 127.0.0.1,
/// Maildir storage, passwd-file users, everything in a temp dir. Killed on drop.
pub struct Dovecot {
    process: Option<Running>,
    /// Whether it ever came up: a failed start already panics with the log, so Drop
    /// need not print it again.
    started: bool,
    ports: DovecotPorts,
    /// Unique per instance: `instance_name` and the greeting, which proves that whoever
    /// answers on our IMAP port is really this instance.
    tag: String,
    users: Vec<User>,
    imap_capability: Option<String>,
    ca: TestCa,
    owner: MailOwner,
    // Last field: dropped after Drop::drop has killed the servers using it.
    dir: TempDir,
}

impl Dovecot {
    /// Starts an instance with the users [`SUPPORT`] and [`CUSTOMER`] (password
    /// [`PASSWORD`]). Blocking; ≈50 ms (the first in a test process ≈0.12 s: it makes
    /// the [`TestCa::shared`] certificates).
    pub fn start() -> Dovecot {
        Dovecot::builder().start()
    }

    /// A builder with the default users, to declare more before starting.
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder { users: Vec::new(), imap_capability: None }.user(SUPPORT, PASSWORD).user(CUSTOMER, PASSWORD)
    }

    pub fn ports(&self) -> DovecotPorts {
        self.ports
    }

    /// The CA that signed the server certificate: trust it to connect over TLS.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Path of the CA certificate (PEM).
    pub fn ca_pem(&self) -> &Path {
        &self.ca.ca_pem
    }

    /// The password of a declared user; panics for an unknown one.
    pub fn password(&self, user: &str) -> &str {
        match self.users.iter().find(|u| u.address == user) {
            Some(u) => &u.password,
            None => panic!(
                "{user} is not a user of this Dovecot (declare it with Dovecot::builder().user()); users: {:?}",
                self.users.iter().map(|u| &u.address).collect::<Vec<_>>()
            ),
        }
    }

    /// The temp dir holding config, logs, certificates and mail.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("dovecot.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("dovecot.log")
    }

    /// The last lines of Dovecot's log and of its stderr (errors before logging starts).
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} (tail) ---\n{}\n--- {} (tail) ---\n{}",
            self.log_path().display(),
            tail(&self.log_path(), 30),
            self.stderr_path().display(),
            tail(&self.stderr_path(), 10)
        )
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir().join("dovecot.stderr")
    }

    /// Shuts Dovecot down gracefully (clients get `* BYE`), keeping ports, config and
    /// mail for [`Dovecot::restart`]. Does nothing if it is not running.
    pub fn stop(&mut self) {
        let Some(mut running) = self.process.take() else {
            return;
        };
        // TERM to the whole group, not just the master: the imap processes say BYE to
        // their clients, and the master need not wait ≈1 s for its children to go.
        running.signal(libc::SIGTERM);
        // The BYEs go out at once; the master alone sometimes sits out a 1 s timer (when
        // its log process went first), and nothing is lost by not waiting for it.
        let deadline = Instant::now() + Duration::from_millis(250);
        while !has_exited_unreaped(&running.master) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Whatever is left of the group (a login process) would hold the ports.
        running.kill();
    }

    /// Kills every Dovecot process at once (SIGKILL), like a crash; ports, config and mail
    /// stay for [`Dovecot::restart`]. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut running) = self.process.take() {
            running.kill();
        }
    }

    /// Stops Dovecot if it runs and starts it again: same ports, same config, same mail.
    pub fn restart(&mut self) {
        self.stop();
        match self.launch() {
            Ok(running) => self.process = Some(running),
            Err(e) => panic!("restart failed: {}", e.message),
        }
    }

    fn config(&self) -> String {
        let dir = self.dir().display();
        let p = &self.ports;
        let tag = &self.tag;
        let users = match &self.owner.rootless {
            None => "default_login_user = dovenull\n\
                     default_internal_user = dovecot\n\
                     default_internal_group = dovecot\n"
                .to_owned(),
            // Rootless: every service runs as us, and chroot() needs root.
            Some((user, group)) => format!(
                "default_login_user = {user}\n\
                 default_internal_user = {user}\n\
                 default_internal_group = {group}\n\
                 service anvil {{\n  chroot =\n}}\n\
                 service imap-login {{\n  chroot =\n}}\n\
                 service submission-login {{\n  chroot =\n}}\n"
            ),
        };
        let capability = match &self.imap_capability {
            Some(c) => format!("  imap_capability = {c}\n"),
            None => String::new(),
        };
        let dh = Path::new("/usr/share/dovecot/dh.pem");
        let ssl_dh = if dh.is_file() { format!("ssl_dh = <{}\n", dh.display()) } else { String::new() };
        format!(
            r#"# Test instance written by tests/it/support/mailstack.rs: reads nothing from /etc/dovecot.
instance_name = casegate-test-{tag}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
{users}
listen = 127.0.0.1
protocols = imap lmtp submission
shutdown_clients = yes
login_greeting = casegate test {tag} ready.
mail_location = maildir:~/Maildir
# Test data need not survive a power cut; fsync would only slow seeding down.
mail_fsync = never
first_valid_uid = 1
auth_mechanisms = plain login
auth_verbose = yes
disable_plaintext_auth = no
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{ssl_dh}ssl_min_protocol = TLSv1.2
hostname = localhost
postmaster_address = postmaster@example.com
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
protocol imap {{
  # The default (10) is too few for a test that idles, polls and checks at once.
  mail_max_userip_connections = 100
{capability}}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
  inet_listener submissions {{
    port = {submissions}
    ssl = yes
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {relay}
submission_relay_trusted = no
submission_relay_ssl = no
service auth {{
  # doveadm (run by the tests as root or as us) looks users up through this socket.
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
"#,
            cert = self.ca.cert_pem.display(),
            key = self.ca.key_pem.display(),
            imap = p.imap,
            imaps = p.imaps,
            lmtp = p.lmtp,
            submission = p.submission,
            submissions = p.submissions,
            relay = p.relay,
        )
    }

    /// Spawns `dovecot -F` and waits for this instance's IMAP greeting.
    fn launch(&self) -> Result<Running, LaunchError> {
        // After a SIGKILL the pid file stays; should its pid be reused by then, Dovecot
        // would think it is already running.
        let _ = fs::remove_file(self.dir().join("run/master.pid"));
        let stderr = log_file(&self.stderr_path());
        let mut running = Running::spawn(
            Command::new(dovecot_bin())
                .arg("-F")
                .arg("-c")
                .arg(self.config_path())
                .stdin(Stdio::null())
                .stdout(stderr.try_clone().expect("clone log handle"))
                .stderr(stderr),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = running.master.try_wait() {
                running.kill();
                let log = self.log_tail();
                return Err(LaunchError {
                    port_in_use: mentions_port_in_use(&log),
                    message: format!("dovecot exited at start ({status}); ports {:?}\n{log}", self.ports),
                });
            }
            if greets(self.ports.imap, &self.tag) {
                return Ok(running);
            }
            if Instant::now() > deadline {
                running.kill();
                return Err(LaunchError {
                    port_in_use: false,
                    message: format!(
                        "dovecot did not greet on 127.0.0.1:{} within {START_TIMEOUT:?}\n{}",
                        self.ports.imap,
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!("{what}\n{}", self.log_tail())
    }

    // -----------------------------------------------------------------------------------
    // IMAP helpers
    // -----------------------------------------------------------------------------------

    /// Logs `user` in over plain IMAP (loopback; STARTTLS is not used).
    pub async fn login(&self, user: &str) -> Session<TcpStream> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.ports.imap))
            .await
            .unwrap_or_else(|e| self.fail(format!("connect to IMAP {}: {e}", self.ports.imap)));
        self.login_on(tcp, user).await
    }

    /// Logs `user` in over IMAPS, verifying the server certificate against [`Dovecot::ca`].
    pub async fn login_tls(&self, user: &str) -> Session<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.ports.imaps))
            .await
            .unwrap_or_else(|e| self.fail(format!("connect to IMAPS {}: {e}", self.ports.imaps)));
        let connector = tokio_rustls::TlsConnector::from(self.ca.rustls_client_config());
        let name = ServerName::try_from("localhost").expect("localhost is a valid name");
        let tls =
            connector.connect(name, tcp).await.unwrap_or_else(|e| self.fail(format!("TLS handshake on IMAPS: {e}")));
        self.login_on(tls, user).await
    }

    async fn login_on<S>(&self, stream: S, user: &str) -> Session<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
    {
        let mut client = async_imap::Client::new(stream);
        // Client::new does not read the greeting; login would read it as its answer.
        match client.read_response().await {
            Ok(Some(_greeting)) => {}
            other => self.fail(format!("no IMAP greeting: {other:?}")),
        }
        match client.login(user, self.password(user)).await {
            Ok(session) => session,
            Err((e, _)) => self.fail(format!("IMAP login as {user} failed: {e}")),
        }
    }

    /// Appends one message to `folder` (which must exist) and returns its UID, over a
    /// connection of its own (≈15 ms; seed many with [`Dovecot::append_many`]).
    /// Dovecot stores lines with CRLF: a message with bare LF comes back with CRLF.
    pub async fn append(&self, user: &str, folder: &str, raw: &[u8]) -> u32 {
        self.append_many(user, folder, &[raw]).await[0]
    }

    /// Appends messages to `folder` through the server, in order, and returns their UIDs.
    ///
    /// async-imap has no MULTIAPPEND, so this speaks IMAP itself: one `APPEND` command
    /// per batch with many non-synchronising literals (MULTIAPPEND, RFC 3502, with
    /// LITERAL+, RFC 7888), UIDs from UIDPLUS `APPENDUID`. No round trip per message:
    /// ≈4,000 mails/s on a busy 2-core machine, where [`Dovecot::append`] (a connection
    /// and login each) costs ≈15 ms a mail. Going through Dovecot (not writing Maildir
    /// files) keeps its indexes and UIDs exactly as in production.
    pub async fn append_many<M: AsRef<[u8]>>(&self, user: &str, folder: &str, raws: &[M]) -> Vec<u32> {
        let mut imap =
            RawImap::connect(self.ports.imap).await.unwrap_or_else(|e| self.fail(format!("raw IMAP connect: {e}")));
        let login = format!("LOGIN {} {}", quote(user), quote(self.password(user)));
        if let Err(e) = imap.command(login.as_bytes()).await {
            self.fail(format!("IMAP login as {user}: {e}"));
        }
        let mut uids = Vec::with_capacity(raws.len());
        // Bounded batches keep one command (and one Dovecot transaction) reasonable.
        let mut batch: Vec<u8> = Vec::new();
        let mut in_batch = 0;
        for (i, raw) in raws.iter().enumerate() {
            let raw = raw.as_ref();
            if in_batch == 0 {
                batch = format!("APPEND {}", quote(folder)).into_bytes();
            }
            batch.extend_from_slice(format!(" {{{}+}}\r\n", raw.len()).as_bytes());
            batch.extend_from_slice(raw);
            in_batch += 1;
            if in_batch == 1_000 || batch.len() > 16 << 20 || i + 1 == raws.len() {
                let done = imap
                    .command(&batch)
                    .await
                    .unwrap_or_else(|e| self.fail(format!("APPEND of {in_batch} message(s) to {folder}: {e}")));
                let appended = parse_appenduid(&done)
                    .unwrap_or_else(|| self.fail(format!("no APPENDUID in APPEND's answer: {done}")));
                assert_eq!(appended.len(), in_batch, "APPENDUID {done} for {in_batch} mails");
                uids.extend(appended);
                in_batch = 0;
            }
        }
        let _ = imap.command(b"LOGOUT").await;
        uids
    }

    /// Every message in `folder`, in UID order, as (UID, raw bytes). Uses EXAMINE and
    /// BODY.PEEK, so flags (\Seen, \Recent) are left as they were.
    pub async fn list_folder(&self, user: &str, folder: &str) -> Vec<(u32, Vec<u8>)> {
        let mut session = self.login(user).await;
        let mailbox =
            session.examine(folder).await.unwrap_or_else(|e| self.fail(format!("EXAMINE {folder} as {user}: {e}")));
        let mut messages = Vec::new();
        // "UID FETCH 1:*" on an empty mailbox would still name message "*".
        if mailbox.exists > 0 {
            let fetches: Vec<_> = session
                .uid_fetch("1:*", "(UID BODY.PEEK[])")
                .await
                .unwrap_or_else(|e| self.fail(format!("UID FETCH in {folder}: {e}")))
                .try_collect()
                .await
                .unwrap_or_else(|e| self.fail(format!("UID FETCH in {folder}: {e}")));
            for fetch in &fetches {
                let uid = fetch.uid.expect("asked for UID");
                let body = fetch.body().expect("asked for BODY[]");
                messages.push((uid, body.to_vec()));
            }
        }
        let _ = session.logout().await;
        messages.sort_by_key(|(uid, _)| *uid);
        messages
    }

    /// Creates a folder (a `/`-separated path creates its parents too).
    pub async fn create_folder(&self, user: &str, folder: &str) {
        let mut session = self.login(user).await;
        session.create(folder).await.unwrap_or_else(|e| self.fail(format!("CREATE {folder} as {user}: {e}")));
        let _ = session.logout().await;
    }

    /// How many messages `folder` holds (STATUS MESSAGES).
    pub async fn folder_count(&self, user: &str, folder: &str) -> u32 {
        let mut session = self.login(user).await;
        let status = session
            .status(folder, "(MESSAGES)")
            .await
            .unwrap_or_else(|e| self.fail(format!("STATUS {folder} as {user}: {e}")));
        let _ = session.logout().await;
        status.exists
    }

    /// The folder's UIDVALIDITY (STATUS UIDVALIDITY).
    pub async fn uidvalidity(&self, user: &str, folder: &str) -> u32 {
        let mut session = self.login(user).await;
        let status = session
            .status(folder, "(UIDVALIDITY)")
            .await
            .unwrap_or_else(|e| self.fail(format!("STATUS {folder} as {user}: {e}")));
        let _ = session.logout().await;
        status.uid_validity.unwrap_or_else(|| self.fail(format!("STATUS {folder} gave no UIDVALIDITY")))
    }

    /// Gives `folder` a new, greater UIDVALIDITY, as after a mailbox rebuild or a server
    /// migration; the mails stay, with the same UID numbers, which are now to be treated
    /// as new. Returns the new value, checked over IMAP. A session that has the folder
    /// selected at that moment is disconnected by Dovecot.
    pub async fn change_uidvalidity(&self, user: &str, folder: &str) -> u32 {
        let old = self.uidvalidity(user, folder).await;
        // RFC 3501: a new UIDVALIDITY must be greater than the old one.
        let new = old.checked_add(1).expect("UIDVALIDITY below u32::MAX");
        self.doveadm(&["mailbox", "update", "-u", user, "--uid-validity", &new.to_string(), folder]).await;
        let seen = self.uidvalidity(user, folder).await;
        if seen != new {
            self.fail(format!("UIDVALIDITY of {folder} is {seen} after doveadm set it from {old} to {new}"));
        }
        new
    }

    /// Runs `doveadm -c <this config> ARGS…` and returns its stdout. doveadm needs the
    /// `-c`, or it would read /etc/dovecot and talk to another instance.
    pub async fn doveadm(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new(doveadm_bin())
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run doveadm: {e}"));
        if !output.status.success() {
            self.fail(format!(
                "doveadm {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() && self.started {
            eprintln!("Dovecot at {}:\n{}", self.dir().display(), self.log_tail());
        }
        self.kill();
        if keep_dirs() {
            self.dir.disable_cleanup(true);
            eprintln!("kept Dovecot dir {}", self.dir().display());
        }
    }
}

/// A running Dovecot, in a process group of its own, so that signals reach the login and
/// service processes too: they hold the listening sockets.
struct Running {
    /// Leader of the group: `sh` reading a pipe whose write end only this process holds.
    /// When this process dies without running destructors (Ctrl-C, whose SIGINT never
    /// reaches another group, or SIGKILL), the pipe closes and the sh SIGKILLs the group
    /// (a TERM early in Dovecot's start-up is logged and ignored), so no Dovecot outlives
    /// the tests. It starts first: there is no moment with a Dovecot but no lifeline.
    /// Reaped last, so the group id (its pid) cannot be reused while we signal it.
    lifeline: Child,
    master: Child,
}

impl Running {
    fn spawn(dovecot: &mut Command) -> Running {
        let mut lifeline = Command::new("/bin/sh")
            .args(["-c", "read -r _; kill -KILL 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start /bin/sh as Dovecot's lifeline: {e}"));
        let pgid = libc::pid_t::try_from(lifeline.id()).expect("pid fits in pid_t");
        match dovecot.process_group(pgid).spawn() {
            Ok(master) => Running { lifeline, master },
            Err(e) => {
                let _ = lifeline.kill();
                let _ = lifeline.wait();
                panic!("cannot spawn {}: {e}", dovecot_bin().display());
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        signal_group(&self.lifeline, signal);
    }

    /// SIGKILL to the whole group, then reap the master and (last) the lifeline.
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.master.wait();
        let _ = self.lifeline.wait();
    }
}

/// Whether this instance (recognised by `tag` in its greeting) answers on `port`.
fn greets(port: u16, tag: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    // Short: a stranger on the port may never speak, and a slow Dovecot is asked again.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.starts_with("* OK") && line.contains(tag)
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    assert!(!s.contains(['\r', '\n']), "IMAP strings cannot hold CR/LF: {s:?}");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The UIDs in `... OK [APPENDUID <uidvalidity> <uid-set>] ...`, in order.
fn parse_appenduid(tagged: &str) -> Option<Vec<u32>> {
    let rest = &tagged[tagged.find("[APPENDUID ")? + "[APPENDUID ".len()..];
    let set = rest[..rest.find(']')?].split_whitespace().nth(1)?;
    let mut uids = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                uids.extend(a.min(b)..=a.max(b));
            }
            None => uids.push(part.parse().ok()?),
        }
    }
    Some(uids)
}

/// Just enough IMAP for LOGIN and MULTIAPPEND: send a tagged command, read lines up to
/// its tagged answer.
struct RawImap {
    stream: tokio::io::BufReader<TcpStream>,
    next_tag: u32,
}

impl RawImap {
    async fn connect(port: u16) -> std::io::Result<RawImap> {
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        // Commands are small and answered one by one: Nagle + delayed ACK would add ≈40 ms.
        tcp.set_nodelay(true)?;
        let mut imap = RawImap { stream: tokio::io::BufReader::new(tcp), next_tag: 1 };
        let greeting = imap.read_line().await?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(format!("greeting: {greeting}")));
        }
        Ok(imap)
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Sends `tag command CRLF`; returns the tagged OK line, or the NO/BAD line as error.
    async fn command(&mut self, command: &[u8]) -> std::io::Result<String> {
        let tag = format!("r{}", self.next_tag);
        self.next_tag += 1;
        // One write: tag, command and CRLF in one segment where they fit.
        let mut line = Vec::with_capacity(tag.len() + command.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        let stream = self.stream.get_mut();
        stream.write_all(&line).await?;
        stream.flush().await?;
        loop {
            let line = self.read_line().await?;
            if let Some(answer) = line.strip_prefix(&format!("{tag} ")) {
                return if answer.starts_with("OK") { Ok(line) } else { Err(std::io::Error::other(line)) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMTP sink
// ---------------------------------------------------------------------------------------

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
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                self.wait_failed(n, timeout, &messages);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`SmtpSink::wait_for`] for plain `#[test]`s (sleeps the thread).
    pub fn wait_for_blocking(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                self.wait_failed(n, timeout, &messages);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
