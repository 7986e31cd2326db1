//! Real mail servers on 127.0.0.1 for the integration tests: Dovecot (IMAP, IMAPS,
//! STARTTLS, IDLE, LMTP, submission; bearer tokens through its `oauth2` passdb when asked)
//! and an SMTP sink (`smtp_sink.py`, aiosmtpd).
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
//!
//! One file per server (`dovecot.rs`, `smtp_sink.rs`) and one for the certificates they
//! share (`tls.rs`); this file holds what every server needs: the default users, free
//! ports, finding programs, temp dirs and log tails. It uses nothing else of the test
//! crate, because `benches/imap.rs` includes it by path.

// Each test uses the part of the harness it needs; the rest must not warn.
#![allow(dead_code)]

mod dovecot;
mod smtp_sink;
mod tls;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tempfile::TempDir;

// The harness's whole API, named from here whichever part a test uses.
#[allow(unused_imports)]
pub use dovecot::{Dovecot, DovecotBuilder, DovecotPorts, OAuth2Passdb, User};
#[allow(unused_imports)]
pub use smtp_sink::{Fault, Received, SinkOptions, SinkTls, SmtpSink};
pub use tls::TestCa;

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
