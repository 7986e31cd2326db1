//! casegate reaching PostgreSQL over TLS, through the real binary, against a real server
//! that lets clients in over TLS only (`support::postgres::tls_cluster`: `ssl=on`, a
//! certificate for 127.0.0.1 from a throw-away CA, one `hostssl` line with SCRAM
//! passwords): the private CA named by `sslrootcert` lets casegate in, encrypted; a
//! certificate it cannot verify — another CA's file, or no private CA at all — is refused
//! with words that say so; and the password in the URL appears in no output.

use std::path::Path;
use std::process::Output;

use crate::support::casegate::Installation;
use crate::support::mailstack::TestCa;
use crate::support::postgres::{self, Cluster};

/// An installation whose `[storage] database_url` is `postgres://casegate:PASSWORD@…/db?query`.
fn with_url(cluster: &Cluster, db: &str, password: &str, query: &str) -> Installation {
    let url = format!("postgres://{}:{password}@127.0.0.1:{}/{db}?{query}", postgres::USER, cluster.port());
    Installation::new(&format!("[storage]\ndatabase_url = \"{url}\"\n"))
}

/// stdout and stderr of a run, checked to hold none of `secrets`.
fn said(out: &Output, secrets: &[&str]) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for secret in secrets {
        assert!(!text.contains(secret), "the password appears in the output:\n{text}");
    }
    text
}

fn verify(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

#[test]
fn over_tls_with_the_private_ca_casegate_gets_in_encrypted_and_unencrypted_sessions_are_refused() {
    let Some(cluster) = postgres::tls_cluster() else { return };
    let tls = cluster.tls().expect("the TLS cluster has a CA and a password");
    let db = cluster.new_database();
    let secrets = [tls.password.as_str()];

    let inst = with_url(cluster, &db, &tls.password, &verify(&tls.ca_pem));
    let out = inst.run(&["cases", "list", "--json"]);
    let text = said(&out, &secrets);
    assert!(out.status.success(), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "{text}");
    // casegate made its schema there, over the only way in: TLS.
    assert_eq!(cluster.psql(&db, "SELECT count(*) FROM casegate_schema"), "1");
    let log = cluster.log();
    let authorized: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains(&format!("database={db} ")))
        .filter(|l| l.contains("application_name=casegate"))
        .collect();
    assert!(!authorized.is_empty(), "the server let casegate in:\n{log}");
    for line in &authorized {
        assert!(line.contains("SSL enabled (protocol=TLSv1."), "every casegate session is encrypted: {line}");
    }

    // verify-ca takes the same CA (and checks the name all the same: 127.0.0.1 is in it).
    let ca_only =
        with_url(cluster, &db, &tls.password, &format!("sslmode=verify-ca&sslrootcert={}", tls.ca_pem.display()));
    let out = ca_only.run(&["doctor"]);
    let text = said(&out, &secrets);
    assert!(text.contains(&format!("PostgreSQL postgres://casegate@127.0.0.1:{}/{db}", cluster.port())), "{text}");
    assert!(text.contains("(schema "), "the database was read: {text}");

    // Without TLS the server itself turns casegate away: there is no way in but hostssl.
    let plain = with_url(cluster, &db, &tls.password, "sslmode=disable");
    let out = plain.run(&["cases", "list", "--json"]);
    let text = said(&out, &secrets);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no pg_hba.conf entry") && text.contains("no encryption"), "{text}");
    assert_eq!(text.matches("no pg_hba.conf entry").count(), 1, "the server's words once: {text}");
    assert!(text.contains(&format!("127.0.0.1:{}/{db}", cluster.port())), "the error names the database: {text}");

    // A wrong password is refused by name, and neither password is shown.
    let wrong = with_url(cluster, &db, "Wrong-pw-4711", &verify(&tls.ca_pem));
    let out = wrong.run(&["cases", "list", "--json"]);
    let text = said(&out, &[&tls.password, "Wrong-pw-4711"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
}

#[test]
fn a_server_certificate_casegate_cannot_verify_is_refused_with_words_that_say_why() {
    let Some(cluster) = postgres::tls_cluster() else { return };
    let tls = cluster.tls().expect("the TLS cluster has a CA and a password");
    let db = cluster.new_database();
    let secrets = [tls.password.as_str()];
    let other = tempfile::tempdir().unwrap();
    // Another CA's file: the server's certificate is not signed by it. A CA of another
    // name is not the issuer at all; a CA made again under the same name is, by name, but
    // its key did not sign the certificate.
    let stranger = other.path().join("stranger.pem");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-days", "1", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-subj", "/CN=another CA", "-keyout"])
        .arg(other.path().join("stranger.key"))
        .arg("-out")
        .arg(&stranger)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let namesake = TestCa::generate(&other.path().join("namesake")).ca_pem;
    for (ca, reason) in [(&stranger, "(UnknownIssuer)"), (&namesake, "(BadSignature)")] {
        let inst = with_url(cluster, &db, &tls.password, &verify(ca));
        let out = inst.run(&["cases", "list", "--json"]);
        let text = said(&out, &secrets);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("the server's TLS certificate could not be verified"), "{text}");
        assert!(text.contains(reason), "{text}");
        assert!(text.contains(&format!("sslrootcert {}", ca.display())), "names the file: {text}");
        assert!(text.contains("signed the server's certificate"), "says what to check: {text}");
        assert!(text.contains("127.0.0.1, the host in the URL"), "says what to check: {text}");
    }

    // require (and prefer, the default) without sslrootcert: only the public roots are
    // trusted, and a private CA is none of them.
    for query in ["sslmode=require", "sslmode=prefer", ""] {
        let inst = with_url(cluster, &db, &tls.password, query);
        let out = inst.run(&["cases", "list", "--json"]);
        let text = said(&out, &secrets);
        assert!(!out.status.success(), "{query}: {text}");
        assert!(text.contains("certificate could not be verified: no CA casegate trusts signed it"), "{query}: {text}");
        assert!(text.contains("sslrootcert=FILE"), "{query}: says how to trust a private CA: {text}");
    }
    // Nothing of casegate's reached the database.
    assert_eq!(cluster.psql(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");
}
