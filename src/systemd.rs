//! Telling the service manager how `casegate run` is doing, by systemd's notification
//! protocol (`sd_notify(3)`): one datagram per message on the unix socket named by
//! `$NOTIFY_SOCKET`, as `KEY=value` lines. Under `Type=notify`, systemd counts the
//! service as started only on `READY=1` (sent once the database is open and the sources,
//! the outbox and the listeners run), and with `WatchdogSec=` it restarts a service
//! whose `WATCHDOG=1` stops coming (the daemon sends it while its database writer
//! answers: see `daemon`). `STOPPING=1` says a stop is under way.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing. Sending never fails
//! the daemon: a message that cannot be sent is logged.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The variable naming the socket; a name starting with `@` is in the abstract namespace.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go, when the service manager asked for them.
pub struct Notifier {
    target: Option<Target>,
}

enum Target {
    Path(std::path::PathBuf),
    #[cfg(target_os = "linux")]
    Abstract(std::os::unix::net::SocketAddr),
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service.
    pub fn from_env() -> Notifier {
        Notifier::for_socket(std::env::var_os(NOTIFY_SOCKET).map(|s| s.to_string_lossy().into_owned()).as_deref())
    }

    /// For the socket `name` as `$NOTIFY_SOCKET` gives it (`None`: no service manager).
    pub fn for_socket(name: Option<&str>) -> Notifier {
        let target = match name.filter(|n| !n.is_empty()) {
            None => None,
            Some(name) if name.starts_with('/') => Some(Target::Path(name.into())),
            #[cfg(target_os = "linux")]
            Some(name) if name.starts_with('@') => {
                use std::os::linux::net::SocketAddrExt as _;
                match std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]) {
                    Ok(addr) => Some(Target::Abstract(addr)),
                    Err(e) => {
                        tracing::warn!(socket = name, error = %e, "Cannot use $NOTIFY_SOCKET");
                        None
                    }
                }
            }
            Some(name) => {
                tracing::warn!(socket = name, "$NOTIFY_SOCKET is neither a path nor an abstract name; ignored");
                None
            }
        };
        Notifier { target }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (`KEY=value` lines). Failures are logged, never returned: the
    /// service works on without its manager's notice.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|socket| match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path),
            #[cfg(target_os = "linux")]
            Target::Abstract(addr) => socket.send_to_addr(state.as_bytes(), addr),
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, state = state.lines().next().unwrap_or_default(), "Cannot notify systemd");
        }
    }

    /// The service is up; `status` is shown by `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A stop is under way.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=Finishing the mail in hand");
    }

    /// Still alive and working.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// How often systemd expects `WATCHDOG=1` (`WatchdogSec=`), if it does and the request is
/// for this process (`$WATCHDOG_PID`, when set, names it).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(&usec, pid.as_deref(), std::process::id())
}

fn parse_watchdog(usec: &str, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec))
}

/// A status is one line of the protocol.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams_on_the_named_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_socket(Some(path.to_str().unwrap()));
        assert!(notifier.is_active());

        notifier.ready("watching 2 mailboxes\nand more");
        notifier.watchdog();
        notifier.stopping();

        let mut buf = [0u8; 256];
        let mut next = || {
            let n = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(next(), "READY=1\nSTATUS=watching 2 mailboxes and more");
        assert_eq!(next(), "WATCHDOG=1");
        assert!(next().starts_with("STOPPING=1\n"));
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let notifier = Notifier::for_socket(None);
        assert!(!notifier.is_active());
        notifier.ready("x");
        // A socket nobody listens on: logged, not an error.
        Notifier::for_socket(Some("/nonexistent/casegate-notify.sock")).watchdog();
    }

    #[test]
    fn the_watchdog_interval_is_ours_only_when_the_pid_matches() {
        assert_eq!(parse_watchdog("30000000", None, 42), Some(Duration::from_secs(30)));
        assert_eq!(parse_watchdog("30000000", Some("42"), 42), Some(Duration::from_secs(30)));
        assert_eq!(parse_watchdog("30000000", Some("41"), 42), None);
        assert_eq!(parse_watchdog("0", None, 42), None);
        assert_eq!(parse_watchdog("soon", None, 42), None);
    }
}
