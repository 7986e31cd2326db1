//! What operators rely on, against real servers: `/metrics`, `/healthz` and `/readyz` of a
//! real `casegate run` on Dovecot and the SMTP sink (the counters match what happened; a
//! stopped Dovecot or SMTP sink shows, and recovery too), JSON logs, secrets from
//! `$CREDENTIALS_DIRECTORY`, the systemd notification protocol and unit file, `casegate
//! reconcile` on planted mail, and the example alert rules and dashboard.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::casegate::{Daemon, Installation};
use crate::support::mail::to_support;
use crate::support::mailstack::{free_port, Dovecot, SinkOptions, SmtpSink, CUSTOMER, PASSWORD, SUPPORT};

const WAIT: Duration = Duration::from_secs(30);

/// A customer's mail opening a case.
fn mail(id: &str, subject: &str) -> Vec<u8> {
    to_support(&format!("Customer <{CUSTOMER}>"), subject, &format!("{id}@customer.example"), "", "Hello.")
}

/// A mail without a sender: quarantined (`no-sender`).
fn senderless(id: &str) -> Vec<u8> {
    format!("To: support@example.com\r\nSubject: who am I\r\nMessage-ID: <{id}@nowhere.example>\r\n\r\nhi\r\n")
        .into_bytes()
}

/// An installation watching the support mailbox (password read from the credentials
/// folder), sending to `smtp_port`, serving metrics on the port it returns.
fn installation(dovecot: &Dovecot, smtp_port: u16, extra: &str) -> (Installation, u16) {
    let metrics = free_port();
    let inst = Installation::new(&format!(
        "[[mailbox]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{SUPPORT}\"\n\
         password_file = \"${{CREDENTIALS_DIRECTORY}}/imap-password\"\npoll_interval_secs = 1\ntimeout_secs = 5\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout_secs = 5\n\
         [outbox]\nretry_base_secs = 1\nretry_max_secs = 1\nmax_attempts = 100\n\
         [notify]\nstaff_recipients = [\"ann@support.example.com\"]\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n{extra}",
        dovecot.ports().imap
    ));
    let credentials = inst.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("imap-password"), format!("{PASSWORD}\n")).unwrap();
    (inst, metrics)
}

fn start(inst: &Installation) -> Daemon {
    let credentials = inst.path().join("credentials");
    Daemon::start_with_env(inst, &[], &[("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap())])
}

/// `GET path` on 127.0.0.1:`port`: the status and the body ("" and 0 when nothing answers).
async fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return (0, String::new()) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("an answer").unwrap();
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of one series in the `/metrics` text (`None` when absent).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metric(port: u16, series: &str) -> f64 {
    sample(&get(port, "/metrics").await.1, series).unwrap_or(f64::NAN)
}

/// Polls `/readyz` until its status is `want`; returns its body then.
async fn readyz_becomes(port: u16, want: u16, daemon: &Daemon) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(port, "/readyz").await;
        if status == want {
            return serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz body is not JSON ({e}): {body}"));
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status} (want {want}): {body}\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_real_run_did_and_readyz_follows_the_mailbox() {
    let mut dovecot = Dovecot::start();
    let sink = SmtpSink::start(SinkOptions::plain());
    let extra = "mailbox_retry_window_secs = 2\noutbox_stuck_secs = 60\n[log]\nformat = \"json\"\n";
    let (inst, port) = installation(&dovecot, sink.port(), extra);
    let mut daemon = start(&inst);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;
    assert_eq!(get(port, "/healthz").await, (200, r#"{"status":"ok"}"#.to_string()));

    for (i, raw) in [mail("m1", "Printer on fire"), mail("m2", "Scanner jammed"), senderless("q1")].iter().enumerate() {
        dovecot.append(SUPPORT, "INBOX", raw).await;
        // One at a time: each is fetched on its own, as mail arrives in real life.
        wait_for("the mail's outcome", async || {
            metric(port, "casegate_mails_total{outcome=\"created\"}").await
                + metric(port, "casegate_mails_total{outcome=\"quarantined\"}").await
                == (i + 1) as f64
        })
        .await;
    }
    // Every notification the cases caused is sent, and the scrape says so.
    let queued_or_sent = inst.count("SELECT count(*) FROM outbox", []);
    assert!(queued_or_sent >= 4, "acknowledgements and staff alerts: {queued_or_sent}");
    sink.wait_for(queued_or_sent as usize, WAIT).await;
    wait_for("the sends counted", async || {
        metric(port, "casegate_outbox_rows{status=\"sent\"}").await == queued_or_sent as f64
    })
    .await;

    let text = get(port, "/metrics").await.1;
    let cases = inst.count("SELECT count(*) FROM cases", []);
    assert_eq!(cases, 2);
    assert_eq!(sample(&text, r#"casegate_mails_total{outcome="created"}"#), Some(cases as f64), "{text}");
    assert_eq!(sample(&text, r#"casegate_mails_total{outcome="quarantined"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_mail_reasons_total{outcome="quarantined",reason="no-sender"}"#), Some(1.0));
    assert_eq!(sample(&text, "casegate_quarantine_rows"), Some(1.0));
    let sent = sink.messages().len() as f64;
    assert_eq!(sample(&text, r#"casegate_outbox_sends_total{result="sent"}"#), Some(sent), "{text}");
    assert_eq!(sample(&text, "casegate_outbox_send_duration_seconds_count"), Some(sent));
    assert_eq!(sample(&text, "casegate_outbox_oldest_queued_age_seconds"), Some(0.0));
    assert_eq!(sample(&text, "casegate_ingest_latency_seconds_count"), Some(3.0), "one per mail, from INTERNALDATE");
    assert_eq!(sample(&text, r#"casegate_mailbox_connected{mailbox="support"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"casegate_mailbox_idle{mailbox="support"}"#), Some(1.0));
    let fetched = sample(&text, r#"casegate_mailbox_last_fetch_timestamp_seconds{mailbox="support"}"#).unwrap();
    assert!((chrono::Utc::now().timestamp() as f64 - fetched).abs() < 60.0, "{fetched}");
    assert!(sample(&text, "casegate_database_size_bytes").unwrap() > 0.0);
    assert!(!text.contains(CUSTOMER) && !text.contains("Printer"), "no address or subject in a label:\n{text}");

    let ready = readyz_becomes(port, 200, &daemon).await;
    assert_eq!(ready["status"], "ready");
    let names: Vec<&str> = ready["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["database", "mailbox support", "outbox"]);

    // Dovecot goes away: after the retry window /readyz names the mailbox, and recovers.
    dovecot.stop();
    let down = readyz_becomes(port, 503, &daemon).await;
    assert_eq!(down["failed"], serde_json::json!(["mailbox support"]), "{down}");
    let detail = down["checks"][1]["detail"].as_str().unwrap();
    assert!(detail.contains("not connected") && detail.contains("127.0.0.1"), "{detail}");
    assert_eq!(metric(port, r#"casegate_mailbox_connected{mailbox="support"}"#).await, 0.0);
    assert!(metric(port, r#"casegate_mailbox_reconnects_total{mailbox="support"}"#).await >= 1.0);
    dovecot.restart();
    readyz_becomes(port, 200, &daemon).await;
    assert_eq!(metric(port, r#"casegate_mailbox_connected{mailbox="support"}"#).await, 1.0);

    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
    json_log_lines_parse(&daemon.log());
}

/// Every line of a `log.format = "json"` run is one JSON object with the usual fields.
fn json_log_lines_parse(log: &str) {
    let mut processed = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(event.get(field).is_some(), "no {field} in {line}");
        }
        if event["message"] == "Mail processed" {
            processed += 1;
            assert!(event["outcome"].is_string() && event["origin"].as_str().unwrap().starts_with("imap:support uid "));
        }
    }
    assert_eq!(processed, 3, "one event per mail:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_smtp_server_shows_in_the_outbox_age_and_readyz_and_recovers() {
    let dovecot = Dovecot::start();
    let mut sink = SmtpSink::start(SinkOptions::plain());
    sink.stop();
    let (inst, port) = installation(&dovecot, sink.port(), "outbox_stuck_secs = 3\n");
    let mut daemon = start(&inst);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;

    dovecot.append(SUPPORT, "INBOX", &mail("s1", "Nothing goes out")).await;
    wait_for("the age to grow past 3 s", async || {
        metric(port, "casegate_outbox_oldest_queued_age_seconds").await > 3.0
    })
    .await;
    assert!(metric(port, "casegate_outbox_rows{status=\"queued\"}").await >= 2.0);
    assert!(metric(port, "casegate_smtp_errors_total{kind=\"connection\"}").await >= 1.0);
    assert!(metric(port, "casegate_outbox_sends_total{result=\"deferred\"}").await >= 1.0);
    let stuck = readyz_becomes(port, 503, &daemon).await;
    assert_eq!(stuck["failed"], serde_json::json!(["outbox"]), "{stuck}");
    assert!(stuck["checks"][2]["detail"].as_str().unwrap().contains("outbox_stuck_secs = 3"), "{stuck}");

    sink.start_again();
    wait_for("the outbox to drain", async || metric(port, "casegate_outbox_oldest_queued_age_seconds").await == 0.0)
        .await;
    readyz_becomes(port, 200, &daemon).await;
    assert_eq!(metric(port, "casegate_outbox_rows{status=\"queued\"}").await, 0.0);
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_is_told_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let port = free_port();
    let inst = Installation::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut daemon = Daemon::start_with_env(
        &inst,
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    );
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification ({e}):\n{}", daemon.log()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };

    let ready = next();
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready}");
    // Ready means serving: the listener was bound before.
    assert_eq!(get(port, "/healthz").await.0, 200);
    // Every 0.2 s while the writer answers.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
    // What came meanwhile waits in the socket: a STOPPING among the last watchdog pings.
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut after = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(after.iter().any(|m| m.starts_with("STOPPING=1\n")), "{after:?}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/casegate.service"))
        .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/casegate "), "the documented install path");
    // The binary must exist for verify: the one just built stands in for the installed one.
    let unit = unit.replace("/usr/local/bin/casegate", env!("CARGO_BIN_EXE_casegate"));
    for required in [
        "Type=notify",
        "WatchdogSec=",
        "User=casegate",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/casegate",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "LoadCredential=imap-password:",
    ] {
        assert!(unit.contains(required), "the unit lacks {required:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casegate.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on settings it ignores; it names them on stderr.
    let about_ours: Vec<&str> = stderr.lines().filter(|l| l.contains("casegate.service")).collect();
    assert!(out.status.success() && about_ours.is_empty(), "systemd-analyze verify: {}\n{stderr}", out.status);
}

/// A broken unit makes the check above fail: it is not a check that always passes.
#[test]
fn systemd_analyze_verify_names_a_broken_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("casegate.service");
    let unit = format!("[Service]\nType=notifyy\nExecStart={}\n", env!("CARGO_BIN_EXE_casegate"));
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("casegate.service"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_and_fixes_an_unmarked_and_an_unknown_mail() {
    let dovecot = Dovecot::start();
    dovecot.append(SUPPORT, "INBOX", &mail("r1", "Committed, never moved")).await;
    let box_ = |mark: &str| {
        format!(
            "[[mailbox]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{SUPPORT}\"\n\
             password = \"{PASSWORD}\"\ntimeout_secs = 5\nmark = \"{mark}\"\n",
            dovecot.ports().imap
        )
    };
    // Committed with mark = "seen" (left in INBOX), then the installation moves mail:
    // the one in INBOX is committed but unmarked.
    let inst = Installation::new(&box_("seen"));
    let out = inst.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&inst.config, std::fs::read_to_string(&inst.config).unwrap().replace("\"seen\"", "\"move\""))
        .unwrap();
    // Mail nobody processed, put into Processed by hand; and one into Quarantine.
    dovecot.create_folder(SUPPORT, "Processed").await;
    dovecot.append(SUPPORT, "Processed", &mail("r2", "Moved by hand")).await;
    dovecot.create_folder(SUPPORT, "Quarantine").await;
    dovecot.append(SUPPORT, "Quarantine", &mail("r3", "Put aside by hand")).await;
    dovecot.append(SUPPORT, "INBOX", &mail("r4", "Just arrived")).await;

    let found = inst.json(&["reconcile", "--json"]);
    assert_eq!(found["mailbox"], "support");
    assert_eq!(found["unmarked"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["unmarked"][0]["uid"], 1);
    assert_eq!(found["unmarked"][0]["outcome"], "created");
    assert_eq!(found["unmarked"][0]["case"], "CASE-1");
    assert_eq!(found["unmarked"][0]["marked"], false);
    assert_eq!(found["waiting"], 1, "r4 waits for the daemon");
    assert_eq!(found["processed"]["checked"], 1);
    assert_eq!(found["processed"]["unknown"][0]["message_id"], "r2@customer.example", "{found}");
    assert_eq!(found["quarantine"]["not_in_table"][0]["message_id"], "r3@customer.example");
    // For people: the same in words on stdout; progress in the log (no terminal here).
    let text = inst.run(&["reconcile"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&text.stdout), String::from_utf8_lossy(&text.stderr));
    assert!(stdout.contains("INBOX: 1 committed but not marked, 1 waiting to be processed"), "{stdout}");
    assert!(stdout.contains("Processed uid 1 <r2@customer.example>: not in the journal"), "{stdout}");
    assert!(stderr.contains("Looked through") && !stderr.contains('\u{1b}'), "{stderr}");
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 2, "reporting changes nothing");
    assert_eq!(inst.count("SELECT count(*) FROM mails", []), 1);

    let fixed = inst.json(&["reconcile", "--fix", "--json"]);
    assert_eq!(fixed["unmarked"][0]["marked"], true, "{fixed}");
    assert_eq!(fixed["processed"]["unknown"][0]["ingested"]["outcome"], "created", "{fixed}");
    assert_eq!(fixed["processed"]["unknown"][0]["ingested"]["case"], "CASE-2");
    let inbox = dovecot.list_folder(SUPPORT, "INBOX").await;
    assert_eq!(inbox.len(), 1, "only r4 is left");
    assert!(String::from_utf8_lossy(&inbox[0].1).contains("r4@customer.example"));
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 2);
    assert_eq!(inst.count("SELECT count(*) FROM cases", []), 2);

    let after = inst.json(&["reconcile", "--json"]);
    assert!(after["unmarked"].as_array().unwrap().is_empty(), "{after}");
    assert!(after["processed"]["unknown"].as_array().unwrap().is_empty(), "{after}");
    assert_eq!(after["processed"]["checked"], 2);
    assert_eq!(after["quarantine"]["not_in_table"].as_array().unwrap().len(), 1, "reported, never moved");

    let doctor = String::from_utf8(inst.run(&["doctor"]).stdout).unwrap();
    let line = doctor.lines().find(|l| l.contains("reconcile support")).unwrap_or_else(|| panic!("{doctor}"));
    assert!(line.starts_with("warn"), "{doctor}");
    assert!(doctor.contains("Quarantine: 1 mail(s) in the folder, 0 quarantined in the database"), "{doctor}");
}

/// Every metric name the example alert rules and dashboard use is one casegate exports,
/// and both files have the shape Prometheus and Grafana load.
#[test]
fn the_example_alert_rules_and_dashboard_load_and_name_real_metrics() {
    let exported = exported_series();
    let names = regex::Regex::new(r"\bcasegate_[a-z_]+").unwrap();
    let duration = regex::Regex::new(r"^\d+[smhd]$").unwrap();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring");

    let rules: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(docs.join("casegate-alerts.yml")).unwrap()).unwrap();
    let groups = rules["groups"].as_array().expect("groups");
    let mut alerts = BTreeSet::new();
    for group in groups {
        assert!(group["name"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let keys: BTreeSet<&str> = rule.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(keys.is_subset(&BTreeSet::from(["alert", "expr", "for", "labels", "annotations"])), "{keys:?}");
            let name = rule["alert"].as_str().expect("alert name");
            assert!(alerts.insert(name.to_string()), "{name} twice");
            let expr = rule["expr"].as_str().expect("expr");
            for m in names.find_iter(expr) {
                assert!(exported.contains(m.as_str()), "{name}: {} is not exported", m.as_str());
            }
            if let Some(f) = rule.get("for") {
                assert!(duration.is_match(f.as_str().unwrap()), "{name}: for {f}");
            }
            assert!(["critical", "warning", "info"].contains(&rule["labels"]["severity"].as_str().unwrap()));
            assert!(rule["annotations"]["summary"].is_string() && rule["annotations"]["description"].is_string());
        }
    }
    assert!(alerts.len() >= 10, "{alerts:?}");

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(docs.join("casegate-dashboard.json")).unwrap()).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string() && dashboard["schemaVersion"].is_number());
    let mut ids = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "panel ids are unique");
        assert!(panel["gridPos"]["w"].is_number() && panel["type"].is_string());
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let used: Vec<&str> = names.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(!used.is_empty(), "{expr}");
            for m in used {
                assert!(exported.contains(m), "panel {}: {m} is not exported", panel["title"]);
            }
        }
    }
    assert!(panels.len() >= 10);
}

/// The series names casegate's metrics render, with every family recorded into once.
fn exported_series() -> BTreeSet<String> {
    use casegate::case::Outcome;
    let m = casegate::metrics::Metrics::new();
    m.mail(Outcome::Created, None);
    m.ingest_latency(Duration::from_secs(1));
    m.writer_batch(Duration::from_millis(1), true);
    m.writer_batch(Duration::from_millis(1), false);
    let mailbox = m.mailbox("support");
    mailbox.connected(true);
    mailbox.fetched();
    mailbox.failed("x", Duration::from_secs(1));
    m.token_refresh("support", true);
    m.notification_sent(Duration::from_millis(1));
    m.smtp_error("transient");
    casegate::metrics::database::Figures { outbox: vec![("queued".into(), 1)], ..Default::default() }.publish(&m);
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}
