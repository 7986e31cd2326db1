//! Getting notifications out: a stopped SMTP server, temporary and permanent refusals,
//! a dropped connection, STARTTLS and implicit TLS with AUTH, Dovecot submission into a
//! real INBOX, the daemon's worker, and the demo's `.eml` files. Nothing is lost, nothing
//! is sent twice (checked by Message-ID at the server).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use casegate::config::Config;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::casegate::Installation;
use crate::support::mailstack::{Dovecot, Fault, SinkOptions, SmtpSink, CUSTOMER, PASSWORD, SUPPORT};
use crate::support::notify::{
    assert_reply_lands, assert_well_formed, mail, open_case, pairs, to, who_got, Setup, ANN, BOB, CAROL, JANE, OPENING,
    TOM,
};

/// The retry delay configured by [`Setup`] (1 s, minus jitter) plus a margin.
const RETRY_WAIT: Duration = Duration::from_millis(1_300);

/// Jane's new case with Bob and Carol copied: five notifications, queued, not sent.
fn queue_five(s: &Setup) {
    let line = s.ingest(&mail(JANE, "Printer on fire", &format!("Cc: {BOB}, {CAROL}\r\n"), "Help."));
    assert_eq!(line["outcome"], "created", "{line}");
    assert_eq!(s.outbox().len(), 5);
}

/// `outbox flush` expected to report trouble: exit code 1 and the counts on stdout.
fn flush_fails(s: &Setup) -> String {
    let out = s.install.run(&["outbox", "flush"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outbox list"), "points the operator to the list");
    stdout
}

/// Every Message-ID the sink received, checking none arrived twice.
fn received_once(s: &Setup) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for m in s.sink.messages() {
        let mail = casegate::parse::parse(&m.data).unwrap();
        let id = mail.message_id.unwrap();
        assert!(ids.insert(id.clone()), "{id} was delivered twice");
    }
    ids
}

fn outbox_ids(s: &Setup) -> BTreeSet<String> {
    s.outbox().iter().map(|r| r["message_id"].as_str().unwrap().to_string()).collect()
}

fn now() -> String {
    casegate::store::now()
}

#[test]
fn with_the_smtp_server_down_mail_waits_and_goes_out_once_when_it_is_back() {
    // Restarting the sink takes ≈0.2 s, but seconds on a loaded machine: the retry must
    // not fall due before the flush that checks nothing is due yet.
    const RETRY_SECS: u64 = 5;
    let mut s = Setup::with_retry(SmtpSink::start(SinkOptions::plain()), "tls = \"none\"\n", "", RETRY_SECS);
    queue_five(&s);
    s.sink.stop();

    assert!(flush_fails(&s).contains("sent 0, deferred 5, failed 0"));
    let before = now();
    for row in s.outbox() {
        assert_eq!((row["status"].as_str(), row["attempts"].as_u64()), (Some("queued"), Some(1)), "{row}");
        assert!(row["next_attempt_at"].as_str().unwrap() > before.as_str(), "a retry is scheduled: {row}");
        assert!(row["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{row}");
    }

    // Back, but nothing is due yet: flush sends nothing and says all is well.
    s.sink.start_again();
    assert!(s.install.ok(&["outbox", "flush"]).contains("sent 0, deferred 0, failed 0"));
    std::thread::sleep(Duration::from_secs(RETRY_SECS) + Duration::from_millis(300));
    let got = s.flush();
    assert_eq!(got.len(), 5);
    for d in &got {
        assert_well_formed(d, "CASE-1");
        assert_eq!(d.row["attempts"], 2);
        assert_eq!(d.row["last_error"], Value::Null);
    }
    assert_eq!(received_once(&s), outbox_ids(&s));
    assert!(s.flush().is_empty(), "a second flush sends nothing again");
}

#[test]
fn a_temporary_refusal_is_retried_and_delivered_once() {
    let mut s = Setup::new();
    queue_five(&s);
    s.sink.set_fault(Fault::TempFail { count: 1 });

    assert!(flush_fails(&s).contains("sent 4, deferred 1, failed 0"));
    let deferred: Vec<Value> = s.outbox().into_iter().filter(|r| r["status"] == "queued").collect();
    assert_eq!(deferred.len(), 1);
    assert!(deferred[0]["last_error"].as_str().unwrap().contains("451"), "{}", deferred[0]);

    std::thread::sleep(RETRY_WAIT);
    s.flush();
    assert_eq!(received_once(&s), outbox_ids(&s));
    assert!(s.outbox().iter().all(|r| r["status"] == "sent"));
}

#[test]
fn a_connection_dropped_after_data_is_retried_without_a_duplicate() {
    let mut s = Setup::new();
    queue_five(&s);
    s.sink.set_fault(Fault::Drop { count: 1 });

    let summary = flush_fails(&s);
    assert!(summary.contains("deferred 1"), "{summary}");
    std::thread::sleep(RETRY_WAIT);
    s.flush();
    assert_eq!(received_once(&s), outbox_ids(&s));
}

#[test]
fn a_permanent_refusal_fails_that_notification_with_the_servers_answer() {
    let s = Setup::new();
    queue_five(&s);
    s.sink.set_fault(Fault::RejectRecipients(vec![BOB.into()]));

    assert!(flush_fails(&s).contains("sent 4, deferred 0, failed 1"));
    let rows = s.outbox();
    let bob = rows.iter().find(|r| r["to"][0] == BOB).unwrap();
    assert_eq!(bob["status"], "failed");
    let error = bob["last_error"].as_str().unwrap();
    assert!(error.contains("550") && error.contains("Recipient address rejected (test fault)"), "{error}");
    assert_eq!(bob["attempts"], 1, "not retried");
    let listed = s.install.ok(&["outbox", "list", "--status", "failed"]);
    assert!(listed.contains(BOB) && listed.contains("550"), "{listed}");

    // Nothing is due any more: the others went out, Bob's is given up.
    std::thread::sleep(RETRY_WAIT);
    assert!(s.install.ok(&["outbox", "flush"]).contains("sent 0, deferred 0, failed 0"));
    assert_eq!(s.sink.messages().len(), 4);
}

/// A TLS sink requiring AUTH as relay/pw, and an installation that logs in with
/// `password` (from a file) and trusts the harness CA.
fn tls_setup(options: SinkOptions, tls: &str, password: &str) -> Setup {
    let sink = SmtpSink::start(options);
    let ca = sink.ca().expect("a TLS sink has a CA").ca_pem.clone();
    let secret = sink.dir().join("casegate-smtp-password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let smtp = format!(
        "tls = \"{tls}\"\nusername = \"relay\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        secret.display(),
        ca.display()
    );
    Setup::with_sink(sink, &smtp, "")
}

#[test]
fn starttls_with_auth_delivers_and_a_wrong_password_keeps_mail_queued() {
    let mut s = tls_setup(SinkOptions::plain().starttls().auth("relay", "pw"), "starttls", "wrong");
    queue_five(&s);
    let summary = flush_fails(&s);
    assert!(summary.contains("deferred 5"), "a login failure is the installation's problem: {summary}");
    assert!(s.outbox().iter().all(|r| r["last_error"].as_str().unwrap().contains("535")));

    std::fs::write(s.sink.dir().join("casegate-smtp-password"), "pw\n").unwrap();
    std::thread::sleep(RETRY_WAIT);
    let got = s.flush();
    assert_eq!(got.len(), 5);
    assert_well_formed(to(&got, JANE), "CASE-1");
}

#[test]
fn implicit_tls_with_auth_delivers() {
    let mut s = tls_setup(SinkOptions::plain().implicit_tls().auth("relay", "pw"), "tls", "pw");
    queue_five(&s);
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&OPENING));
}

#[test]
fn through_dovecot_submission_into_the_customers_inbox_and_back_onto_the_case() {
    let dovecot = Dovecot::start();
    let _relay = SmtpSink::start(SinkOptions::relay_for(&dovecot));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), PASSWORD).unwrap();
    let install = Installation::new(&format!(
        "[notify]\nstaff_recipients = []\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nusername = \"{SUPPORT}\"\n\
         password_file = \"{}\"\nca_file = \"{}\"\n",
        dovecot.ports().submission,
        dir.path().join("password").display(),
        dovecot.ca_pem().display()
    ));
    let line = install.ingest_bytes("open.eml", &mail(CUSTOMER, "Printer on fire", "", "Help."));
    assert_eq!(line["case"], "CASE-1", "{line}");
    assert!(install.ok(&["outbox", "flush"]).contains("sent 1,"));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let inbox = runtime.block_on(dovecot.list_folder(CUSTOMER, "INBOX"));
    assert_eq!(inbox.len(), 1, "the acknowledgement is in the customer's INBOX");
    let ack = casegate::parse::parse(&inbox[0].1).unwrap();
    let row = &install.json(&["outbox", "list", "--json"])[0];
    assert_eq!(ack.message_id.as_deref(), row["message_id"].as_str());
    assert!(ack.subject.starts_with("[CASE-1]"), "{}", ack.subject);

    // The customer answers from their mail client, token removed from the subject.
    let reply = format!(
        "From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: Re: Printer\r\nMessage-ID: <answer@customer.example>\r\n\
         In-Reply-To: <{id}>\r\nReferences: <{id}>\r\n\r\nStill burning.\r\n",
        id = ack.message_id.unwrap()
    );
    let line = install.ingest_bytes("reply.eml", reply.as_bytes());
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("replied"), Some("CASE-1")), "{line}");
}

#[test]
fn the_daemon_worker_sends_new_rows_by_itself_retries_and_stops_on_shutdown() {
    let s = Setup::with_sink(SmtpSink::start(SinkOptions::plain()), "tls = \"none\"\n", "poll_interval_ms = 50\n");
    let config = Arc::new(Config::load(&s.install.config).unwrap());
    s.sink.set_fault(Fault::TempFail { count: 1 });
    queue_five(&s);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shutdown = CancellationToken::new();
    let worker = runtime.spawn(casegate::notify::run_worker(Arc::clone(&config), shutdown.clone()));
    // Four at once, the refused one after its retry delay.
    runtime.block_on(s.sink.wait_for(5, Duration::from_secs(15)));
    // Rows written by another process (an ingest) are picked up on the next poll.
    s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", "", "Any news?"));
    runtime.block_on(s.sink.wait_for(9, Duration::from_secs(15)));
    shutdown.cancel();
    runtime.block_on(worker).unwrap().expect("the worker ends cleanly");
    assert_eq!(received_once(&s), outbox_ids(&s));
}

#[test]
fn the_demo_file_transport_writes_each_mail_once() {
    let install = Installation::new("[outbox]\nfile_dir = \"outbox\"\n");
    install.ingest_bytes("a.eml", &mail(JANE, "Printer on fire", &format!("Cc: {BOB}\r\n"), "Help."));
    assert!(install.ok(&["outbox", "flush"]).contains("sent 2,"));
    assert!(install.ok(&["outbox", "flush"]).contains("sent 0,"));
    let files: Vec<_> = std::fs::read_dir(install.path().join("outbox")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let rows = install.json(&["outbox", "list", "--json"]);
    for f in &files {
        let mail = casegate::parse::parse(&std::fs::read(f).unwrap()).unwrap();
        let id = mail.message_id.unwrap();
        assert!(rows.as_array().unwrap().iter().any(|r| r["message_id"] == id.as_str() && r["status"] == "sent"));
        assert_eq!(f.file_name().unwrap().to_string_lossy(), format!("{id}.eml"));
    }
}

#[test]
fn outbox_commands_explain_themselves_and_refuse_nonsense() {
    let install = Installation::new("");
    for args in [&["outbox", "--help"][..], &["outbox", "list", "--help"], &["outbox", "flush", "--help"]] {
        let out = install.run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
    assert_eq!(install.run(&["outbox", "list", "--status", "lost"]).status.code(), Some(2));
    assert_eq!(install.run(&["outbox", "frobnicate"]).status.code(), Some(2));
    assert!(install.ok(&["outbox", "list"]).contains("empty"));
    assert_eq!(install.json(&["outbox", "list", "--json"]), Value::Array(vec![]));
    // Nowhere to send: a configuration error.
    let out = install.run(&["outbox", "flush"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere to send"));
}

#[test]
fn a_broken_template_override_stops_flush_before_anything_is_sent() {
    let mut s = Setup::new();
    open_case(&mut s);
    std::fs::create_dir(s.install.path().join("tpl")).unwrap();
    std::fs::write(s.install.path().join("tpl/reply.text.hbs"), "{{case.subjet}}\n").unwrap();
    let text = std::fs::read_to_string(&s.install.config).unwrap();
    std::fs::write(&s.install.config, format!("templates_dir = \"tpl\"\n{text}")).unwrap();
    let more = s.install.path().join("more.eml");
    std::fs::write(&more, mail(JANE, "Re: [CASE-1] Printer on fire", "", "more")).unwrap();
    let ingest = |install: &Installation| install.run(&["ingest", "--json", more.to_str().unwrap()]);
    // Nothing is sent, and the mail is not taken either: it stays where it came from.
    for out in [s.install.run(&["outbox", "flush"]), ingest(&s.install)] {
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("templates_dir") && err.contains("template reply"), "{err}");
    }
    assert!(s.received().is_empty());

    // Fixed, the same mail goes through and the override is used.
    std::fs::write(s.install.path().join("tpl/reply.text.hbs"), "New: {{case.subject}}\n{{> text-footer}}\n").unwrap();
    let out = ingest(&s.install);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = s.flush();
    assert!(to(&got, BOB).mail.text.starts_with("New: Printer on fire"), "{}", to(&got, BOB).mail.text);
    assert_reply_lands(&s, to(&got, BOB), BOB, "CASE-1");
}

#[test]
fn internationalised_addresses_and_lines_starting_with_dots_survive_smtp() {
    let mut s = Setup::new();
    let raw = "From: =?utf-8?b?5byg5LiJ?= <用户@例子.广告>\r\nTo: support@example.com\r\nSubject: 打印机\r\n\
               Message-ID: <uni@test.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
               你好\r\n.\r\n..two dots\r\n.one dot\r\n";
    assert_eq!(s.ingest(raw.as_bytes())["outcome"], "created");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[("用户@例子.广告", "acknowledgement"), (ANN, "new-case"), (TOM, "new-case")]));
    let ack = to(&got, "用户@例子.广告");
    assert_well_formed(ack, "CASE-1");
    assert!(ack.mail.subject.contains("打印机"), "{}", ack.mail.subject);
    // The description reaches staff line for line: dot-stuffing was undone by the server.
    let alert = to(&got, ANN);
    assert!(alert.mail.text.contains("你好\n.\n..two dots\n.one dot"), "{:?}", alert.mail.text);
}
