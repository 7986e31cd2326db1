//! OAuth2 sign-in against real servers: Dovecot checks every bearer token itself (its
//! `oauth2` passdb asks the harness's authorization server, `support::oauth_server`), for
//! IMAP and for submission, so the SASL exchanges (XOAUTH2, OAUTHBEARER) are the real
//! ones end to end. The real binary runs as an operator runs it: `run`, `doctor`,
//! `oauth authorize` (with the test as the browser).
//!
//! Every test starts its own servers and installation, so they run in parallel.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::support::casegate::{Daemon, Installation};
use crate::support::mail::to_support;
use crate::support::mailstack::{Dovecot, SinkOptions, SmtpSink, CUSTOMER, PASSWORD, SUPPORT};
use crate::support::oauth_server::AuthServer;

const WAIT: Duration = Duration::from_secs(30);
/// The application's client secret, as the installation reads it from `client.secret`.
const SECRET: &str = "client-s3cret-value";
/// The second support address of the base configuration, a mailbox of its own here.
const HELP: &str = "help@example.com";

/// The authorization server, a Dovecot that asks it about tokens (announcing
/// `mechanisms`), and the SMTP server Dovecot's submission relays to.
struct Stack {
    auth: AuthServer,
    dovecot: Dovecot,
    sink: SmtpSink,
}

impl Stack {
    fn start(mechanisms: &str, more_users: &[&str]) -> Stack {
        let auth = AuthServer::start();
        let mut builder = Dovecot::builder().oauth2(&auth.introspection_url(), mechanisms);
        for user in more_users {
            builder = builder.user(user, PASSWORD);
        }
        let dovecot = builder.start();
        let sink = SmtpSink::start(SinkOptions::relay_for(&dovecot));
        Stack { auth, dovecot, sink }
    }

    /// A `[[mailbox]]` signing in as `user` with `oauth2` (the `[mailbox.oauth2]` keys);
    /// `tls` picks the port.
    fn mailbox(&self, name: &str, user: &str, tls: &str, oauth2: &str) -> String {
        let ports = self.dovecot.ports();
        let port = if tls == "tls" { ports.imaps } else { ports.imap };
        format!(
            "[[mailbox]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{}\"\n\
             username = \"{user}\"\nauth = \"oauth2\"\npoll_interval_secs = 1\ntimeout_secs = 5\n[mailbox.oauth2]\n{oauth2}\n",
            self.dovecot.ca_pem().display()
        )
    }

    /// `[smtp]` to Dovecot's submission as the support user with `oauth2`, and an outbox
    /// that retries after a second.
    fn smtp(&self, tls: &str, oauth2: &str) -> String {
        let ports = self.dovecot.ports();
        let port = if tls == "tls" { ports.submissions } else { ports.submission };
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{}\"\nusername = \"{SUPPORT}\"\n\
             auth = \"oauth2\"\ntimeout_secs = 5\n[smtp.oauth2]\n{oauth2}\n\
             [outbox]\nretry_base_secs = 1\nretry_max_secs = 1\npoll_interval_ms = 100\n",
            self.dovecot.ca_pem().display()
        )
    }

    /// The `oauth2` keys of a client-credentials account at this authorization server.
    fn client_credentials(&self, client: &str) -> String {
        format!(
            "provider = \"generic\"\ntoken_url = \"{}\"\nclient_id = \"{client}\"\nclient_secret_file = \"client.secret\"\n",
            self.auth.token_url()
        )
    }

    fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.dovecot.log_path()).unwrap_or_default()
    }
}

fn installation(config: &str) -> Installation {
    let inst = Installation::new(config);
    std::fs::write(inst.path().join("client.secret"), format!("{SECRET}\n")).expect("write the client secret");
    inst
}

fn mail(id: &str, subject: &str, to: &str) -> Vec<u8> {
    // Each mail says something of its own: the loop breaker holds back answers to a sender
    // who repeats the same words (digits aside) like an autoresponder.
    let words: String = id.bytes().map(|b| char::from(b'a' + b % 26)).collect();
    let body = format!("Help with the {words} printer, please.");
    let raw = to_support(&format!("Customer <{CUSTOMER}>"), subject, &format!("{id}@customer.example"), "", &body);
    String::from_utf8(raw).expect("ASCII mail").replace("To: support@example.com", &format!("To: {to}")).into_bytes()
}

/// A number from the database, 0 while it does not exist yet (fit for polling a daemon).
fn count(inst: &Installation, sql: &str) -> i64 {
    if !inst.path().join("var/casegate.db").exists() {
        return 0;
    }
    inst.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// Waits until `n` notifications are recorded as sent.
async fn wait_sent(inst: &Installation, n: i64) {
    let what = format!("{n} notification(s) sent");
    wait_until(&what, WAIT, || count(inst, "SELECT count(*) FROM outbox WHERE status = 'sent'") == n).await;
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Neither the client secret nor any access token the server issued is in `text`.
fn assert_no_secrets(text: &str, auth: &AuthServer) {
    assert!(!text.contains(SECRET), "the client secret is in the output:\n{text}");
    for token in auth.issued_tokens() {
        assert!(!text.contains(&token), "an access token is in the output:\n{text}");
    }
}

/// One mail in, its acknowledgement out, both signed in with tokens; then (with
/// `revoke_early`) every token revoked before its time and Dovecot restarted: the cached
/// token is refused, replaced once, and the next mail goes the same way.
async fn mail_in_and_out_with(mechanism: &str, imap_tls: &str, smtp_tls: &str, revoke_early: bool) {
    let mut stack = Stack::start(&mechanism.to_ascii_lowercase(), &[]);
    stack.auth.register_client("casegate", Some(SECRET), SUPPORT);
    let oauth2 = stack.client_credentials("casegate");
    let inst = installation(&format!(
        "{}{}",
        stack.mailbox("support", SUPPORT, imap_tls, &oauth2),
        stack.smtp(smtp_tls, &oauth2)
    ));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 1, WAIT).await;

    stack.dovecot.append(SUPPORT, "INBOX", &mail("one", "Printer on fire", SUPPORT)).await;
    wait_sent(&inst, 1).await;
    if revoke_early {
        stack.auth.forget_access_tokens();
        stack.dovecot.restart();
        daemon.wait_log("Mailbox connected", 2, WAIT).await;
    }
    stack.dovecot.append(SUPPORT, "INBOX", &mail("two", "Printer still on fire", SUPPORT)).await;
    wait_sent(&inst, 2).await;
    let received = stack.sink.messages();
    let (status, _) = daemon.terminate().await;

    assert!(status.success(), "{status}");
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 2);
    assert_eq!(received.len(), 2, "one acknowledgement each");
    assert!(received.iter().all(|m| m.rcpt_to == [CUSTOMER]), "{received:?}");
    assert_eq!(stack.dovecot.folder_count(SUPPORT, "Processed").await, 2);
    let dovecot_log = stack.dovecot_log();
    for service in ["imap-login", "submission-login"] {
        let signed_in = dovecot_log.lines().any(|l| {
            l.contains(service)
                && l.contains("Login: user=<support@example.com>")
                && l.contains(&format!("method={mechanism}"))
        });
        assert!(signed_in, "no {mechanism} login at {service}:\n{dovecot_log}");
    }
    let requests = stack.auth.token_requests();
    assert!(requests.iter().all(|r| r.grant == "client_credentials" && r.outcome == "ok"), "{requests:?}");
    let log = daemon.log();
    if revoke_early {
        // One token each for IMAP and SMTP, and one more each after the revocation: the
        // refused login asked once, and the other connections took the new token.
        assert_eq!(requests.len(), 4, "{requests:?}\n{log}");
        assert!(log.matches("The server refused a token that should be valid").count() >= 2, "{log}");
    } else {
        assert_eq!(requests.len(), 2, "one token for the mailbox and one for SMTP, re-used: {requests:?}");
    }
    assert_no_secrets(&log, &stack.auth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_and_smtp_sign_in_with_xoauth2_and_a_token_revoked_early_is_replaced_once() {
    mail_in_and_out_with("XOAUTH2", "starttls", "starttls", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_and_smtp_sign_in_with_oauthbearer_over_implicit_tls() {
    mail_in_and_out_with("OAUTHBEARER", "tls", "tls", false).await;
}

/// 300 mails in waves, Dovecot restarted between them (every connection signs in again)
/// and tokens living 2 s, so each wave needs new ones: every mail becomes one case and
/// one acknowledgement, none twice, and the token endpoint is asked a few times a wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expiring_every_two_seconds_across_300_mails_lose_and_double_nothing() {
    const WAVES: usize = 5;
    const PER_WAVE: usize = 60;
    let mut stack = Stack::start("xoauth2 oauthbearer", &[]);
    stack.auth.set_lifetime(Duration::from_secs(2));
    stack.auth.register_client("casegate", Some(SECRET), SUPPORT);
    let oauth2 = stack.client_credentials("casegate");
    // One customer writes all 300: the loop breaker's daily limit on automatic answers to
    // one address would otherwise hold back their acknowledgements after the 20th.
    let limits = "[limits]\nauto_replies_per_address_per_day = 1000\n";
    let inst = installation(&format!(
        "{limits}{}{}",
        stack.mailbox("support", SUPPORT, "none", &oauth2),
        stack.smtp("none", &oauth2)
    ));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 1, WAIT).await;
    let started = Instant::now();

    for wave in 0..WAVES {
        let mails: Vec<Vec<u8>> =
            (0..PER_WAVE).map(|i| mail(&format!("w{wave}m{i}"), &format!("Wave {wave} mail {i}"), SUPPORT)).collect();
        stack.dovecot.append_many(SUPPORT, "INBOX", &mails).await;
        let done = ((wave + 1) * PER_WAVE) as i64;
        wait_until("the wave's cases", WAIT, || count(&inst, "SELECT count(*) FROM cases") == done).await;
        // Recorded as sent, not only arrived: a restart between the server's storing and
        // its answer would make the outbox send again (rightly, with the same Message-ID).
        wait_sent(&inst, done).await;
        if wave + 1 < WAVES {
            stack.dovecot.restart();
            // Past the fresh part of the tokens (1.5 s of 2): the next logins need new ones.
            tokio::time::sleep(Duration::from_millis(1600)).await;
        }
    }
    let took = started.elapsed();
    let total = WAVES * PER_WAVE;
    assert_eq!(stack.dovecot.folder_count(SUPPORT, "Processed").await as usize, total);
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");

    assert_eq!(count(&inst, "SELECT count(*) FROM cases") as usize, total);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails") as usize, total, "none lost, none doubled");
    assert_eq!(stack.dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    let sent = stack.sink.messages();
    let ids: HashSet<String> = sent
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.data);
            text.lines().find(|l| l.to_ascii_lowercase().starts_with("message-id:")).unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!((sent.len(), ids.len()), (total, total), "every acknowledgement once");
    let outbox = inst.json(&["outbox", "list", "--json"]);
    let rows = outbox.as_array().expect("an array");
    assert_eq!(rows.len(), total);
    assert!(rows.iter().all(|r| r["status"] == "sent"), "{outbox}");

    let requests = stack.auth.token_requests();
    assert!(requests.iter().all(|r| r.outcome == "ok"), "{requests:?}");
    // Each wave after the first needed new tokens for IMAP and for SMTP; a storm would
    // be a request per login or per mail.
    assert!(requests.len() >= 2 * WAVES - 1, "tokens were replaced: {} requests", requests.len());
    assert!(requests.len() <= 4 * WAVES, "{} token requests for {WAVES} waves in {took:?}", requests.len());
    let logins = stack.auth.introspections();
    assert!(logins <= 15 * WAVES as u64, "{logins} logins for {WAVES} waves");
    assert_no_secrets(&daemon.log(), &stack.auth);
    println!("300 mails in {took:?}: {} token requests, {logins} logins", requests.len());
}

/// Delegated access: the refresh token rotates at every use (strictly: the used one is
/// dead at once); each new one is in the file, mode 0600, before it is needed, so the
/// next start of casegate signs in with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_written_back_and_carry_over_a_restart() {
    let stack = Stack::start("xoauth2", &[]);
    stack.auth.register_client("desktop", None, SUPPORT);
    let first = stack.auth.issue_refresh_token("desktop", SUPPORT);
    let oauth2 = format!(
        "provider = \"generic\"\ntoken_url = \"{}\"\nclient_id = \"desktop\"\nrefresh_token_file = \"support.token\"\n",
        stack.auth.token_url()
    );
    let inst = installation(&stack.mailbox("support", SUPPORT, "none", &oauth2));
    let file = inst.path().join("support.token");
    std::fs::write(&file, format!("{first}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let read = |file: &Path| std::fs::read_to_string(file).unwrap().trim().to_string();

    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 1, WAIT).await;
    stack.dovecot.append(SUPPORT, "INBOX", &mail("r1", "Before the restart", SUPPORT)).await;
    wait_until("the first case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 1).await;
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
    let second = read(&file);
    assert_ne!(second, first, "the rotated token was written back");
    assert!(!stack.auth.refresh_token_valid(&first) && stack.auth.refresh_token_valid(&second));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 1, WAIT).await;
    stack.dovecot.append(SUPPORT, "INBOX", &mail("r2", "After the restart", SUPPORT)).await;
    wait_until("the second case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 2).await;
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
    let third = read(&file);
    assert!(third != second && stack.auth.refresh_token_valid(&third), "rotated again after the restart");
    assert_eq!(stack.auth.refresh_tokens_of("desktop"), std::slice::from_ref(&third), "one live refresh token");
    let requests = stack.auth.token_requests();
    assert_eq!(requests.len(), 2, "one refresh per start: {requests:?}");
    assert!(requests.iter().all(|r| r.grant == "refresh_token" && r.outcome == "ok"), "{requests:?}");
    let log = std::fs::read_to_string(inst.path().join("daemon.log")).unwrap();
    for secret in [&first, &second, &third] {
        assert!(!log.contains(secret.as_str()), "a refresh token is in the log");
    }
}

/// A fresh RSA key pair (PKCS#8 private key, SPKI public key), made with openssl.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(made.success());
    let public = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key).output().unwrap();
    assert!(public.status.success());
    (std::fs::read_to_string(&key).unwrap(), String::from_utf8(public.stdout).unwrap())
}

fn service_account_key(private_key: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "casegate-test",
        "private_key_id": "k1",
        "private_key": private_key,
        "client_email": "casegate@casegate-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

/// Google domain-wide delegation: a JWT signed with the service account's key, for the
/// mailbox user; the server checks the signature with the public key it knows. A key it
/// does not know is refused, and doctor says what to check.
#[test]
fn the_jwt_bearer_grant_signs_with_the_service_account_key_and_the_server_verifies_it() {
    let stack = Stack::start("xoauth2", &[]);
    let oauth2 = format!(
        "provider = \"google\"\ntoken_url = \"{}\"\nservice_account_key_file = \"service-account.json\"\n",
        stack.auth.token_url()
    );
    let inst = installation(&format!(
        "{}{}",
        stack.mailbox("support", SUPPORT, "tls", &oauth2),
        stack.smtp("starttls", &oauth2)
    ));
    let (private_key, public_key) = key_pair(inst.path(), "registered");
    stack.auth.register_service_account("casegate@casegate-test.iam.gserviceaccount.com", &public_key);
    std::fs::write(inst.path().join("service-account.json"), service_account_key(&private_key)).unwrap();

    let out = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "doctor failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("by the JWT bearer grant"), "{stdout}");
    assert!(stdout.contains("logged in as support@example.com with an OAuth2 token"), "{stdout}");
    assert!(stdout.contains("signed in as support@example.com with an OAuth2 token (JWT bearer grant)"), "{stdout}");
    let requests = stack.auth.token_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.grant == "urn:ietf:params:oauth:grant-type:jwt-bearer" && r.outcome == "ok"),
        "{requests:?}"
    );

    // Signed with another key: the server refuses the signature.
    let (unknown_key, _) = key_pair(inst.path(), "unknown");
    std::fs::write(inst.path().join("service-account.json"), service_account_key(&unknown_key)).unwrap();
    let out = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.iter().any(|l| l.contains("mailbox support") && l.contains("invalid_grant")), "{stdout}");
    assert!(stdout.contains("domain-wide delegation"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY") && !stdout.contains(unknown_key.lines().nth(1).unwrap()), "{stdout}");
    assert_eq!(stack.auth.token_requests().iter().filter(|r| r.outcome != "ok").count(), 2);
}

/// One application's secret is revoked while casegate runs: its mailbox fails to sign
/// in and backs off (a handful of token requests, not a loop), the other mailbox goes on,
/// and doctor exits 1 naming the mailbox and the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_stops_only_its_mailbox_which_backs_off_and_doctor_names_it() {
    let mut stack = Stack::start("xoauth2", &[HELP]);
    stack.auth.register_client("alpha", Some(SECRET), SUPPORT);
    stack.auth.register_client("beta", Some(SECRET), HELP);
    let inst = installation(&format!(
        "{}{}",
        stack.mailbox("alpha", SUPPORT, "none", &stack.client_credentials("alpha")),
        stack.mailbox("beta", HELP, "none", &stack.client_credentials("beta"))
    ));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 2, WAIT).await;

    stack.auth.revoke_client("alpha");
    let before = stack.auth.token_requests_of("alpha");
    stack.dovecot.restart();
    let restarted = Instant::now();
    stack.dovecot.append(HELP, "INBOX", &mail("b1", "For the help desk", HELP)).await;
    wait_until("beta's case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 1).await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(restarted.elapsed())).await;
    let attempts = stack.auth.token_requests_of("alpha") - before;
    let log = daemon.log();
    let (status, _) = daemon.terminate().await;

    assert!(status.success(), "{status}");
    assert!((2..=5).contains(&attempts), "{attempts} token requests in 6 s after the revocation:\n{log}");
    // (Both connections were cut by the restart; only alpha's token is refused since.)
    let failed = |mailbox: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains("Mailbox connection failed") && l.contains(&format!("mailbox={mailbox} ")))
            .filter(|l| l.contains("invalid_client"))
            .collect()
    };
    assert!(failed("alpha").len() >= 2, "alpha retries, telling why:\n{log}");
    assert!(failed("beta").is_empty(), "{log}");
    assert_eq!(log.matches("Mailbox connected mailbox=beta ").count(), 2, "beta reconnected:\n{log}");
    assert_no_secrets(&log, &stack.auth);

    let out = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let alpha = stdout.lines().find(|l| l.starts_with("FAIL  mailbox alpha")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(alpha.contains("invalid_client") && alpha.contains("client secret is wrong or has expired"), "{alpha}");
    assert!(stdout.lines().any(|l| l.starts_with("ok    mailbox beta") && l.contains("logged in")), "{stdout}");
    assert_no_secrets(&stdout, &stack.auth);
}

/// `casegate oauth authorize --mailbox support` run as a child; the test opens the
/// printed address at the authorization server (`extra` appended to it, as a person's
/// choice), changes the redirect with `tamper`, and follows it to casegate's loopback
/// address. Returns the exit code, the output, and the redirect's page status.
async fn authorize_as_browser(
    inst: &Installation,
    extra: &str,
    tamper: impl Fn(String) -> String,
) -> (Option<i32>, String, u16) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_casegate"))
        .arg("--config")
        .arg(&inst.config)
        .args(["oauth", "authorize", "--mailbox", "support", "--timeout-secs", "20"])
        .current_dir(inst.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn casegate oauth authorize");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut printed = String::new();
    let url = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("the address in time").unwrap();
        let line = line.unwrap_or_else(|| panic!("no address printed:\n{printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("http://") {
            break line;
        }
    };
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let consent = browser.get(format!("{url}{extra}")).send().await.expect("the authorization endpoint answers");
    assert_eq!(consent.status().as_u16(), 302);
    let location = consent.headers()["location"].to_str().unwrap().to_string();
    let page = browser.get(tamper(location)).send().await.expect("casegate's loopback address answers");
    let page_status = page.status().as_u16();
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("casegate exits").unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        printed.push_str(&line);
        printed.push('\n');
    }
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr).await.unwrap();
    (status.code(), format!("{printed}{stderr}"), page_status)
}

fn authorize_setup(stack: &Stack) -> Installation {
    stack.auth.register_client("desktop", None, SUPPORT);
    let oauth2 = format!(
        "provider = \"generic\"\ntoken_url = \"{}\"\nauthorize_url = \"{}\"\nclient_id = \"desktop\"\n\
         refresh_token_file = \"tokens/support.token\"\nscope = \"mail offline_access\"\n",
        stack.auth.token_url(),
        stack.auth.authorize_url()
    );
    let inst = installation(&stack.mailbox("support", SUPPORT, "none", &oauth2));
    std::fs::create_dir(inst.path().join("tokens")).unwrap();
    inst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_authorize_with_pkce_writes_a_refresh_token_that_signs_in() {
    let stack = Stack::start("oauthbearer", &[]);
    let inst = authorize_setup(&stack);

    let (code, output, page) = authorize_as_browser(&inst, "", |location| location).await;

    assert_eq!((code, page), (Some(0), 200), "{output}");
    let file = inst.path().join("tokens/support.token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(stack.auth.refresh_token_valid(&token), "{output}");
    assert_eq!(stack.auth.pkce_verified(), 1, "the code was exchanged with the PKCE verifier");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        output.contains("sign in as support@example.com") && output.contains("Saved the refresh token"),
        "{output}"
    );
    assert!(!output.contains(&token), "the token is not printed:\n{output}");

    let out = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("by the refresh_token grant") && stdout.contains("with an OAuth2 token"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_authorize_says_so_when_the_person_declines_and_saves_nothing() {
    let stack = Stack::start("xoauth2", &[]);
    let inst = authorize_setup(&stack);

    let (code, output, page) = authorize_as_browser(&inst, "&decision=deny", |location| location).await;

    assert_eq!((code, page), (Some(1), 400), "{output}");
    assert!(output.contains("the authorization was declined (access_denied: The user declined)"), "{output}");
    assert!(output.contains("nothing was saved"), "{output}");
    assert!(!inst.path().join("tokens/support.token").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_authorize_refuses_an_answer_with_another_state() {
    let stack = Stack::start("xoauth2", &[]);
    let inst = authorize_setup(&stack);

    let forged = |location: String| {
        let mut url = url::Url::parse(&location).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        url.query_pairs_mut().clear();
        for (k, v) in pairs {
            url.query_pairs_mut().append_pair(&k, if k == "state" { "forged" } else { &v });
        }
        url.to_string()
    };
    let (code, output, page) = authorize_as_browser(&inst, "", forged).await;

    assert_eq!((code, page), (Some(1), 400), "{output}");
    assert!(output.contains("does not carry the state of this sign-in"), "{output}");
    assert!(!inst.path().join("tokens/support.token").exists());
    assert_eq!(stack.auth.pkce_verified(), 0, "the code was not exchanged");
}

/// The `generic` example of docs/oauth2.md, taken from the file: only the server's
/// address, the token endpoint and the secret's path are this machine's (and the test
/// CA is trusted with `ca_file`); every other key is as written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_configured_as_docs_oauth2_md_says_for_generic_works() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/oauth2.md")).unwrap();
    let begin = docs.find("<!-- generic-example:begin -->").expect("the generic example's start marker");
    let end = docs.find("<!-- generic-example:end -->").expect("the generic example's end marker");
    let block = &docs[begin..end];
    let toml = block.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml block").to_string();
    let value = |key: &str| -> String {
        let line = toml
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{key} in {toml}"));
        line.split('"').nth(1).unwrap_or_else(|| panic!("a quoted {key}")).to_string()
    };
    let stack = Stack::start("xoauth2 oauthbearer", &[]);
    assert_eq!(value("username"), SUPPORT, "the example signs in to the support mailbox");
    stack.auth.register_client(&value("client_id"), Some(SECRET), SUPPORT);
    let config = toml
        .replace(&format!("host = \"{}\"", value("host")), "host = \"127.0.0.1\"")
        .replace(
            "port = 993",
            &format!("port = {}\nca_file = \"{}\"", stack.dovecot.ports().imaps, stack.dovecot.ca_pem().display()),
        )
        .replace(&value("token_url"), &stack.auth.token_url())
        .replace(&value("client_secret_file"), "client.secret");
    let inst = installation(&config);
    stack.dovecot.append(SUPPORT, "INBOX", &mail("doc1", "Configured from the docs", SUPPORT)).await;

    let out = inst.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cases: Value = inst.json(&["cases", "list", "--json"]);
    assert_eq!(cases[0]["subject"], "Configured from the docs");
    let doctor = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{stdout}");
    assert!(stdout.contains("with an OAuth2 token"), "{stdout}");
}

/// A token the endpoint issues but the mail server does not accept for the mailbox (here:
/// issued for another user), with the Microsoft preset: doctor quotes the server's reason
/// and names what a Microsoft 365 administrator checks, for IMAP and for SMTP.
#[test]
fn doctor_explains_a_refused_token_in_a_microsoft_administrators_terms() {
    let stack = Stack::start("xoauth2", &[]);
    stack.auth.register_client("app", Some(SECRET), "someone-else@example.com");
    let oauth2 = format!(
        "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\ntoken_url = \"{}\"\nclient_id = \"app\"\n\
         client_secret_file = \"client.secret\"\n",
        stack.auth.token_url()
    );
    let inst = installation(&format!(
        "{}{}",
        stack.mailbox("support", SUPPORT, "tls", &oauth2),
        stack.smtp("starttls", &oauth2)
    ));

    let out = inst.run(&["doctor"]);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok    mailbox support") && l.contains("token: ")), "{stdout}");
    let imap = stdout.split("FAIL  mailbox support").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    let imap = imap.split("\nok").next().unwrap_or_default();
    assert!(imap.contains("refused the XOAUTH2 sign-in of \"support@example.com\""), "{imap}");
    assert!(imap.contains("server said: status"), "the server's JSON reason is quoted: {imap}");
    for words in ["IMAP.AccessAsApp", "New-ServicePrincipal", "Add-MailboxPermission -Identity support@example.com"] {
        assert!(imap.contains(words), "{words}: {imap}");
    }
    let smtp = stdout.split("FAIL  smtp").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    assert!(smtp.contains("SMTP.SendAsApp") && smtp.contains("SmtpClientAuthenticationDisabled"), "{smtp}");
    assert_no_secrets(&stdout, &stack.auth);
}

/// A server without SASL-IR: the token goes after the server's empty challenge, and a
/// refused one is still answered and reported (here with an unknown client's token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sasl_ir_the_token_follows_the_servers_challenge() {
    let auth = AuthServer::start();
    let dovecot = Dovecot::builder()
        .oauth2(&auth.introspection_url(), "xoauth2 oauthbearer")
        .imap_capability("IMAP4rev1 IDLE MOVE UIDPLUS")
        .start();
    let greeting = {
        use tokio::io::AsyncReadExt;
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", dovecot.ports().imap)).await.unwrap();
        let mut buf = vec![0; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(greeting.contains("AUTH=OAUTHBEARER") && !greeting.contains("SASL-IR"), "{greeting}");
    auth.register_client("casegate", Some(SECRET), SUPPORT);
    auth.register_client("stranger", Some(SECRET), "someone-else@example.com");
    let stack_mailbox = |client: &str| {
        format!(
            "[[mailbox]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{SUPPORT}\"\n\
             auth = \"oauth2\"\ntimeout_secs = 5\n[mailbox.oauth2]\nprovider = \"generic\"\ntoken_url = \"{}\"\n\
             client_id = \"{client}\"\nclient_secret_file = \"client.secret\"\n",
            dovecot.ports().imap,
            auth.token_url()
        )
    };

    let good = installation(&stack_mailbox("casegate"));
    let out = good.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("logged in as support@example.com with an OAuth2 token"), "{stdout}");

    let refused = installation(&stack_mailbox("stranger"));
    let out = refused.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused the OAUTHBEARER sign-in") && stdout.contains("server said: status"), "{stdout}");
    let log = std::fs::read_to_string(dovecot.log_path()).unwrap();
    assert!(log.contains("method=OAUTHBEARER"), "{log}");
}
