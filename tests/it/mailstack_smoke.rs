//! Proves the mail-stack harness (`support/mailstack/`) against the real servers:
//! IMAP and IMAPS logins, byte-exact APPEND/FETCH, IDLE, UIDVALIDITY changes, Dovecot
//! restarts, lettre through Dovecot submission into the SMTP sink and on into an INBOX,
//! and each of the sink's faults as lettre sees it.
//!
//! Every test starts its own servers, so they run in parallel.

use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor, Transport};

use crate::support::mailstack::{Dovecot, Fault, SinkOptions, SmtpSink, TestCa, CUSTOMER, PASSWORD, SUPPORT};

const WAIT: Duration = Duration::from_secs(10);

/// A small mail with CRLF line endings (what IMAP and SMTP carry) and an 8-bit body.
fn raw_mail(n: usize) -> Vec<u8> {
    format!(
        "From: Customer <{CUSTOMER}>\r\n\
         To: Support <{SUPPORT}>\r\n\
         Subject: Printer on fire #{n}\r\n\
         Message-ID: <smoke-{n}@customer.example>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße, the printer in room {n} is on fire.\r\n"
    )
    .into_bytes()
}

fn notification(to: &str, subject: &str) -> Message {
    Message::builder()
        .from(SUPPORT.parse().expect("valid address"))
        .to(to.parse().expect("valid address"))
        .subject(subject)
        .body(format!("{subject}\r\n"))
        .expect("valid message")
}

/// lettre straight to a sink: plain SMTP on loopback, with lettre's default connection
/// pool, so the sink also has to cope with connections reused after a fault.
fn plain_transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(sink.port()).timeout(Some(WAIT)).build()
}

/// Whether lettre failed because nothing listened on the port.
fn is_connection_refused(error: &lettre::transport::smtp::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn imaps_login_verifies_the_server_against_the_harness_ca() {
    let dovecot = Dovecot::start();

    let mut session = dovecot.login_tls(SUPPORT).await;
    let inbox = session.select("INBOX").await.expect("select INBOX");
    assert_eq!(inbox.exists, 0);
    session.logout().await.expect("logout");

    // The certificate is really checked: a client trusting another CA is refused.
    let other = tempfile::tempdir().expect("temp dir");
    let stranger = TestCa::generate(other.path());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dovecot.ports().imaps)).await.expect("connect IMAPS");
    let name = "localhost".try_into().expect("valid name");
    let refused = tokio_rustls::TlsConnector::from(stranger.rustls_client_config()).connect(name, tcp).await;
    assert!(refused.is_err(), "a certificate from another CA was accepted");
}

#[tokio::test]
async fn plain_login_accepts_the_right_password_only() {
    let dovecot = Dovecot::builder().user("agent@example.com", "hunter2").start();

    let mut session = dovecot.login("agent@example.com").await;
    session.noop().await.expect("noop");
    session.logout().await.expect("logout");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", dovecot.ports().imap)).await.expect("connect IMAP");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.expect("greeting");
    assert!(client.login(SUPPORT, "wrong").await.is_err());
}

#[tokio::test]
async fn appended_mail_is_fetched_back_byte_identical() {
    let dovecot = Dovecot::start();
    let mails: Vec<Vec<u8>> = (1..=3).map(raw_mail).collect();

    let first = dovecot.append(SUPPORT, "INBOX", &mails[0]).await;
    let rest = dovecot.append_many(SUPPORT, "INBOX", &mails[1..]).await;

    assert_eq!(first, 1);
    assert_eq!(rest, vec![2, 3]);
    let stored = dovecot.list_folder(SUPPORT, "INBOX").await;
    let expected: Vec<(u32, Vec<u8>)> = (1..=3).zip(mails).collect();
    assert_eq!(stored, expected);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 3);
    assert_eq!(dovecot.folder_count(CUSTOMER, "INBOX").await, 0);
}

#[tokio::test]
async fn mail_with_bare_lf_comes_back_with_crlf() {
    let dovecot = Dovecot::start();

    dovecot.append(SUPPORT, "INBOX", b"Subject: lf\n\nbody\n").await;

    let stored = dovecot.list_folder(SUPPORT, "INBOX").await;
    assert_eq!(stored, vec![(1, b"Subject: lf\r\n\r\nbody\r\n".to_vec())]);
}

#[tokio::test]
async fn folders_are_created_and_counted_and_bulk_seeding_is_fast() {
    let dovecot = Dovecot::start();
    dovecot.create_folder(SUPPORT, "Processed").await;
    dovecot.create_folder(SUPPORT, "Archive/2024").await;
    let mails: Vec<Vec<u8>> = (0..2_500).map(raw_mail).collect();

    let started = std::time::Instant::now();
    let uids = dovecot.append_many(SUPPORT, "Archive/2024", &mails).await;
    let took = started.elapsed();

    assert_eq!(uids, (1..=2_500).collect::<Vec<u32>>());
    assert_eq!(dovecot.folder_count(SUPPORT, "Archive/2024").await, 2_500);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 0);
    assert!(took < Duration::from_secs(10), "seeding 2,500 mails took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_a_mail_appended_by_another_connection() {
    let dovecot = Dovecot::start();
    let mut session = dovecot.login(SUPPORT).await;
    session.select("INBOX").await.expect("select INBOX");
    let mut idle = session.idle();
    idle.init().await.expect("IDLE");

    let (wait, _interrupt) = idle.wait_with_timeout(WAIT);
    // Dovecot reports the new mail ≈0.5 s after an APPEND from another connection.
    let append = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dovecot.append(SUPPORT, "INBOX", &raw_mail(1)).await
    };
    let (seen, uid) = tokio::join!(wait, append);

    assert_eq!(uid, 1);
    match seen.expect("IDLE wait") {
        IdleResponse::NewData(data) => assert!(
            matches!(
                data.parsed(),
                Response::MailboxData(MailboxDatum::Exists(1)) | Response::MailboxData(MailboxDatum::Recent(1))
            ),
            "unexpected IDLE data: {:?}",
            data.parsed()
        ),
        other => panic!("IDLE ended without news: {other:?}"),
    }
    let mut session = idle.done().await.expect("DONE");
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn uidvalidity_change_is_real_and_keeps_the_mail() {
    let dovecot = Dovecot::start();
    dovecot.append_many(SUPPORT, "INBOX", &[raw_mail(1), raw_mail(2)]).await;
    let before = dovecot.uidvalidity(SUPPORT, "INBOX").await;

    let after = dovecot.change_uidvalidity(SUPPORT, "INBOX").await;

    assert!(after > before, "UIDVALIDITY went from {before} to {after}");
    let mut session = dovecot.login(SUPPORT).await;
    let inbox = session.select("INBOX").await.expect("select INBOX");
    assert_eq!(inbox.uid_validity, Some(after));
    assert_eq!(inbox.exists, 2);
    session.logout().await.expect("logout");
}

#[tokio::test]
async fn dovecot_restart_keeps_ports_and_mail() {
    let mut dovecot = Dovecot::start();
    let uid = dovecot.append(SUPPORT, "INBOX", &raw_mail(1)).await;
    let ports = dovecot.ports();
    let mut session = dovecot.login(SUPPORT).await;
    session.select("INBOX").await.expect("select INBOX");

    dovecot.restart();

    assert!(session.noop().await.is_err(), "session survived a restart");
    assert_eq!(dovecot.ports(), ports);
    assert_eq!(dovecot.list_folder(SUPPORT, "INBOX").await, vec![(uid, raw_mail(1))]);

    // A crash: nothing listens until the restart.
    dovecot.kill();
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", ports.imap)).await.is_err());
    dovecot.restart();
    assert_eq!(dovecot.append(SUPPORT, "INBOX", &raw_mail(2)).await, uid + 1);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 2);
}

#[tokio::test]
async fn lettre_sends_through_submission_and_the_sink_relays_into_the_inbox() {
    let dovecot = Dovecot::start();
    let sink = SmtpSink::start(SinkOptions::relay_for(&dovecot));
    let submission = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(dovecot.ports().submission)
        .tls(Tls::Required(dovecot.ca().lettre_tls()))
        .credentials(Credentials::new(SUPPORT.to_owned(), PASSWORD.to_owned()))
        .timeout(Some(WAIT))
        .build();

    submission
        .send(notification(CUSTOMER, "[CASE-1] Received"))
        .await
        .expect("send through submission (STARTTLS + AUTH)");

    let received = sink.wait_for(1, WAIT).await;
    assert_eq!(received[0].mail_from, SUPPORT);
    assert_eq!(received[0].rcpt_to, vec![CUSTOMER.to_owned()]);
    assert!(String::from_utf8_lossy(&received[0].data).contains("Subject: [CASE-1] Received"));
    // The sink handed it to LMTP: it is in the customer's INBOX.
    let inbox = dovecot.list_folder(CUSTOMER, "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(String::from_utf8_lossy(&inbox[0].1).contains("Subject: [CASE-1] Received"));
}

#[tokio::test]
async fn lettre_sends_over_implicit_tls_submission() {
    let dovecot = Dovecot::start();
    let sink = SmtpSink::start(SinkOptions::relay_for(&dovecot));
    let submissions = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(dovecot.ports().submissions)
        .tls(Tls::Wrapper(dovecot.ca().lettre_tls()))
        .credentials(Credentials::new(SUPPORT.to_owned(), PASSWORD.to_owned()))
        .timeout(Some(WAIT))
        .build();

    submissions.send(notification(CUSTOMER, "over TLS")).await.expect("send through submissions");

    assert_eq!(sink.wait_for(1, WAIT).await[0].rcpt_to, vec![CUSTOMER]);
}

#[tokio::test]
async fn sink_tempfail_gives_a_transient_error_then_accepts() {
    let sink = SmtpSink::start(SinkOptions::plain());
    let smtp = plain_transport(&sink);
    sink.set_fault(Fault::TempFail { count: 2 });

    for attempt in 1..=2 {
        let error = smtp.send(notification(CUSTOMER, "retry me")).await.expect_err("the sink should refuse this one");
        assert!(error.is_transient(), "attempt {attempt}: {error:?}");
    }
    smtp.send(notification(CUSTOMER, "retry me")).await.expect("third attempt is accepted");

    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn sink_rejected_recipient_gives_a_permanent_error() {
    let sink = SmtpSink::start(SinkOptions::plain());
    let smtp = plain_transport(&sink);
    sink.set_fault(Fault::RejectRecipients(vec!["Gone@Customer.example".into()]));

    let error =
        smtp.send(notification("gone@customer.example", "hello?")).await.expect_err("recipient should be rejected");
    assert!(error.is_permanent(), "{error:?}");
    smtp.send(notification(CUSTOMER, "still fine")).await.expect("other recipients are accepted");

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].rcpt_to, vec![CUSTOMER]);
}

#[tokio::test]
async fn sink_drop_fails_the_send_and_stores_nothing() {
    let sink = SmtpSink::start(SinkOptions::plain());
    let smtp = plain_transport(&sink);
    sink.set_fault(Fault::Drop { count: 1 });

    let error = smtp.send(notification(CUSTOMER, "lost")).await.expect_err("connection should drop");
    // No SMTP reply at all: neither a transient nor a permanent rejection.
    assert!(!error.is_permanent() && !error.is_transient(), "{error:?}");
    assert!(sink.messages().is_empty());

    smtp.send(notification(CUSTOMER, "found")).await.expect("the next connection works");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn sink_down_then_back_on_the_same_port() {
    let mut sink = SmtpSink::start(SinkOptions::plain());
    let smtp = plain_transport(&sink);
    let port = sink.port();
    smtp.send(notification(CUSTOMER, "before")).await.expect("send");
    sink.set_fault(Fault::TempFail { count: 1 });

    sink.stop();
    let error = smtp.send(notification(CUSTOMER, "while down")).await.expect_err("nobody listens");
    assert!(is_connection_refused(&error), "{error:?}");

    sink.start_again();
    assert_eq!(sink.port(), port);
    // The fault setting survived the restart, and so did the stored mail.
    let error = smtp.send(notification(CUSTOMER, "after")).await.expect_err("tempfail still pending");
    assert!(error.is_transient(), "{error:?}");
    smtp.send(notification(CUSTOMER, "after")).await.expect("send");
    let subjects: Vec<String> =
        sink.wait_for(2, WAIT).await.iter().map(|m| String::from_utf8_lossy(&m.data).into_owned()).collect();
    assert!(subjects[0].contains("Subject: before"));
    assert!(subjects[1].contains("Subject: after"));
}

#[tokio::test]
async fn sink_with_starttls_and_auth_accepts_only_the_right_password() {
    let sink = SmtpSink::start(SinkOptions::plain().starttls().auth("relay", "pw"));
    let ca = sink.ca().expect("TLS sink has a CA").clone();
    let transport = |password: &str| {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port())
            .tls(Tls::Required(ca.lettre_tls()))
            .credentials(Credentials::new("relay".to_owned(), password.to_owned()))
            .timeout(Some(WAIT))
            .build()
    };

    let error = transport("wrong").send(notification(CUSTOMER, "no")).await.expect_err("wrong password");
    assert!(error.is_permanent(), "{error:?}");
    transport("pw").send(notification(CUSTOMER, "yes")).await.expect("right password");

    assert_eq!(sink.wait_for(1, WAIT).await.len(), 1);
}

#[tokio::test]
async fn sink_with_implicit_tls_and_auth_accepts_mail() {
    let sink = SmtpSink::start(SinkOptions::plain().implicit_tls().auth("relay", "pw"));
    let smtps = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .tls(Tls::Wrapper(sink.ca().expect("TLS sink has a CA").lettre_tls()))
        .credentials(Credentials::new("relay".to_owned(), "pw".to_owned()))
        .timeout(Some(WAIT))
        .build();

    smtps.send(notification(CUSTOMER, "smtps")).await.expect("send");

    assert_eq!(sink.wait_for(1, WAIT).await[0].mail_from, SUPPORT);
}

/// The harness also serves plain `#[test]`s: nothing in it needs a runtime to start.
#[test]
fn servers_start_and_work_from_a_plain_test() {
    let dovecot = Dovecot::start();
    let sink = SmtpSink::start(SinkOptions::plain().lmtp(dovecot.ports().lmtp));
    let smtp = lettre::SmtpTransport::builder_dangerous("127.0.0.1").port(sink.port()).build();

    smtp.send(&notification(CUSTOMER, "blocking")).expect("send");

    let received = sink.wait_for_blocking(1, WAIT);
    assert_eq!(received[0].rcpt_to, vec![CUSTOMER]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    assert_eq!(runtime.block_on(dovecot.folder_count(CUSTOMER, "INBOX")), 1);
}
