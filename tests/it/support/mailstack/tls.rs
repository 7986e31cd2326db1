//! TLS for the test servers: a throw-away CA and a certificate for localhost / 127.0.0.1
//! that it signed, made with the `openssl` CLI, and client settings that trust only it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use lettre::transport::smtp::client::{Certificate, TlsParameters};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::{program, run};

fn openssl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| program("openssl", "openssl"))
}

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
    pub(super) fn copy_to(&self, dir: &Path) -> TestCa {
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
