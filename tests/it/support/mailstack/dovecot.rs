//! Dovecot on 127.0.0.1: IMAP, IMAPS (and STARTTLS), IDLE, LMTP and submission, from a
//! config of its own in a temp dir, with passwd-file users and Maildir storage; and the
//! IMAP helpers the tests seed and inspect mailboxes with.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_imap::Session;
use futures::TryStreamExt;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{
    free_port, instance_tag, is_root, keep_dirs, log_file, mentions_port_in_use, program, run, tail, temp_dir,
    LaunchError, TestCa, CUSTOMER, PASSWORD, START_TIMEOUT, SUPPORT,
};

fn dovecot_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("dovecot", "dovecot-imapd dovecot-lmtpd dovecot-submissiond"))
}

fn doveadm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("doveadm", "dovecot-core"))
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
    oauth2: Option<OAuth2Passdb>,
}

/// Bearer tokens checked by Dovecot itself (its `oauth2` passdb) at an RFC 7662
/// introspection endpoint, for IMAP and submission alike; password logins keep working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Passdb {
    /// `http://127.0.0.1:PORT/introspect`.
    pub introspection_url: String,
    /// The SASL mechanisms announced for tokens: `xoauth2`, `oauthbearer` or both.
    pub mechanisms: String,
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

    /// Checks bearer tokens at `introspection_url` and announces `mechanisms` (`"xoauth2"`,
    /// `"oauthbearer"`, or both separated by a space) besides PLAIN and LOGIN.
    pub fn oauth2(mut self, introspection_url: &str, mechanisms: &str) -> DovecotBuilder {
        self.oauth2 =
            Some(OAuth2Passdb { introspection_url: introspection_url.to_owned(), mechanisms: mechanisms.to_owned() });
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
        if let Some(oauth2) = &self.oauth2 {
            // Dovecot POSTs `token=…` and believes `active` and `username` of the answer;
            // force_introspection: every login asks (nothing is taken from the token itself).
            let settings = format!(
                "introspection_mode = post\nintrospection_url = {}\nusername_attribute = username\n\
                 active_attribute = active\nactive_value = true\nforce_introspection = yes\n",
                oauth2.introspection_url
            );
            fs::write(dir.path().join("oauth2.conf.ext"), settings).expect("write oauth2.conf.ext");
        }

        let mut dovecot = Dovecot {
            process: None,
            started: false,
            ports: DovecotPorts::allocate(),
            tag: instance_tag(),
            users: self.users,
            imap_capability: self.imap_capability,
            oauth2: self.oauth2,
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
    oauth2: Option<OAuth2Passdb>,
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
        DovecotBuilder { users: Vec::new(), imap_capability: None, oauth2: None }
            .user(SUPPORT, PASSWORD)
            .user(CUSTOMER, PASSWORD)
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
        let (mechanisms, passwd_mechanisms, oauth2_passdb) = match &self.oauth2 {
            None => (String::new(), String::new(), String::new()),
            Some(o) => (
                format!(" {}", o.mechanisms),
                "  mechanisms = plain login\n".to_owned(),
                // Refused tokens are part of these tests: answered at once, and without
                // the growing delay (2 s, 4 s, …) Dovecot's auth penalty puts on the next
                // logins from an address after a failed one (mode 0 switches it off).
                format!(
                    "passdb {{\n  driver = oauth2\n  mechanisms = {}\n  args = {dir}/oauth2.conf.ext\n}}\n\
                     auth_failure_delay = 0\n\
                     service anvil {{\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n",
                    o.mechanisms
                ),
            ),
        };
        let dh = Path::new("/usr/share/dovecot/dh.pem");
        let ssl_dh = if dh.is_file() { format!("ssl_dh = <{}\n", dh.display()) } else { String::new() };
        format!(
            r#"# Test instance written by tests/it/support/mailstack/dovecot.rs: reads nothing from /etc/dovecot.
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
auth_mechanisms = plain login{mechanisms}
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
{passwd_mechanisms}  args = scheme=PLAIN username_format=%u {dir}/users
}}
{oauth2_passdb}userdb {{
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

    /// SIGKILL to the whole group, then reap the master and (last) the lifeline, and wait
    /// (a moment at most) until the group's other processes are gone too: a login process
    /// still exiting on a busy machine holds the listening ports.
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.master.wait();
        let pgid = libc::pid_t::try_from(self.lifeline.id()).expect("pid fits in pid_t");
        let _ = self.lifeline.wait();
        let deadline = Instant::now() + Duration::from_secs(2);
        // SAFETY: kill with signal 0 only asks whether the group still has a process.
        while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
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
