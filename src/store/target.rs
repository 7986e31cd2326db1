//! The PostgreSQL database a `postgres://` URL names ([`Target`]): where it is, how to
//! sign in, and TLS with rustls.
//!
//! TLS follows the URL's `sslmode`: `disable` never encrypts; `prefer` (the default)
//! encrypts when the server offers it; `require`, `verify-ca` and `verify-full` refuse a
//! server that does not. Whenever TLS is used the server's certificate is checked for its
//! host name against the public roots and, if the URL names one with `sslrootcert=FILE`,
//! a private CA — as `verify-full` does in libpq: a certificate that cannot be checked is
//! refused rather than trusted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// How long connecting may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a session of this process may sit idle inside a transaction before the server
/// ends it (milliseconds; 0: no limit).
static IDLE_IN_TRANSACTION_MS: AtomicU64 = AtomicU64::new(0);

/// Limits how long this process's sessions may sit idle inside a transaction: to a
/// node's lease. A node that stalls mid-transaction (paused, swapping, cut off) would
/// otherwise keep its row locks, and the node that took its mailbox over would wait for
/// them for as long as it stalls; past its lease it has lost the mailbox anyway, so the
/// server ends its session and its transaction with it.
pub fn limit_idle_transactions(limit: Duration) {
    let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    IDLE_IN_TRANSACTION_MS.store(ms, Ordering::Relaxed);
}

/// A PostgreSQL database as a URL names it: where it is, how to sign in, and TLS.
pub struct Target {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The private CA the URL names (`sslrootcert`), for the words of a refusal.
    rootcert: Option<PathBuf>,
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

/// Why a session could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The server's TLS certificate could not be verified: the words say why and what to
    /// check.
    Unverified(String),
    Postgres(tokio_postgres::Error),
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
            "disable" => tokio_postgres::config::SslMode::Disable,
            "prefer" | "allow" => tokio_postgres::config::SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => tokio_postgres::config::SslMode::Require,
            other => {
                return Err(format!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"))
            }
        };
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let mut config: tokio_postgres::Config = parsed.as_str().parse().map_err(|e: tokio_postgres::Error| {
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
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls(rootcert.as_deref().map(Path::new))?),
        };
        let _ = parsed.set_password(None);
        Ok(Target { config, tls, rootcert: rootcert.map(PathBuf::from), shown: parsed.to_string() })
    }

    /// Opens a new session on `runtime` (the caller's: the session's connection is a task
    /// on it),
    /// limited in how long it may sit idle inside a transaction (see
    /// [`limit_idle_transactions`]).
    /// A server certificate that cannot be verified is refused with words that name the
    /// CA file and what to check ([`ConnectError::Unverified`]).
    pub fn connect(&self, runtime: &tokio::runtime::Runtime) -> Result<Session, ConnectError> {
        let connected = runtime.block_on(async {
            match &self.tls {
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
                None => {
                    let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                    Ok((client, tokio::spawn(drive(connection))))
                }
            }
        });
        let (client, connection) = connected.map_err(|e| match certificate_error(&e) {
            Some(why) => ConnectError::Unverified(self.unverified(why)),
            None => ConnectError::Postgres(e),
        })?;
        let ms = IDLE_IN_TRANSACTION_MS.load(Ordering::Relaxed);
        if ms > 0 {
            runtime
                .block_on(client.batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}")))
                .map_err(ConnectError::Postgres)?;
        }
        Ok(Session { client: Arc::new(client), connection })
    }
}

/// An open session: the client that sends requests, and the task that carries them to
/// the server and its answers back (it ends when the client is dropped, after telling
/// the server goodbye, or when the connection breaks).
pub struct Session {
    /// Shared with the writes sent ahead of their answers (see `store::db::PgConn`).
    pub client: Arc<tokio_postgres::Client>,
    pub connection: tokio::task::JoinHandle<()>,
}

/// Carries a session's requests and answers until it ends; a connection that broke is
/// seen by the client (its requests fail, `is_closed`).
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "PostgreSQL connection ended");
    }
}

impl Target {
    /// Why the server's certificate was refused (`why`, from rustls), and what to check.
    fn unverified(&self, why: &rustls::CertificateError) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
            _ => "the host".to_string(),
        };
        let name = format!(
            "that {host}, the host in the URL, is a name (DNS) or address (IP) in the \
             subjectAltName of the server's certificate"
        );
        let why = match why {
            rustls::CertificateError::UnknownIssuer => "no CA casegate trusts signed it (UnknownIssuer)".to_string(),
            rustls::CertificateError::BadSignature => {
                "it names a CA casegate trusts as its issuer, but that CA's key did not sign it (BadSignature)"
                    .to_string()
            }
            other => other.to_string(),
        };
        match &self.rootcert {
            Some(file) => format!(
                "the server's TLS certificate could not be verified: {why}; check that sslrootcert {} holds \
                 the CA certificate that signed the server's certificate, and {name}",
                file.display()
            ),
            None => format!(
                "the server's TLS certificate could not be verified: {why}; without sslrootcert only public CAs \
                 are trusted: name the CA that signed the server's certificate with sslrootcert=FILE (PEM) in \
                 the URL, and check {name}"
            ),
        }
    }
}

/// The certificate problem that made a TLS handshake fail, if that is why `e` happened.
fn certificate_error(e: &tokio_postgres::Error) -> Option<&rustls::CertificateError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        // tokio-rustls hands rustls's error on inside an io::Error, whose `source` skips it.
        let inner = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &dyn std::error::Error);
        for candidate in [Some(c), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(why)) = candidate.downcast_ref::<rustls::Error>() {
                return Some(why);
            }
        }
        cause = c.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_shown_without_their_password() {
        let t = Target::parse("postgres://casegate:s3cret@db.example:6543/cases?sslmode=verify-full&connect_timeout=3")
            .unwrap();
        assert!(!t.to_string().contains("s3cret"), "{t}");
        assert!(t.to_string().contains("db.example:6543/cases"), "{t}");
        assert_eq!(t.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
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
