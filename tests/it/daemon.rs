//! `casegate run` and `casegate doctor` against a real Dovecot: the real binary, as an
//! operator runs it, killed and restarted the hard way; assertions on the database, on
//! `cases list --json` and on the server's folders.
//!
//! Every test starts its own Dovecot and installation, so they run in parallel.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::support::casegate::{fixtures, Daemon, Installation};
use crate::support::mail::to_support;
use crate::support::mailstack::{free_port, Dovecot, SinkOptions, SmtpSink, CUSTOMER, PASSWORD, SUPPORT};

const WAIT: Duration = Duration::from_secs(30);

/// A small customer mail.
fn mail(id: &str, subject: &str) -> Vec<u8> {
    let from = format!("Customer <{CUSTOMER}>");
    to_support(&from, subject, &format!("{id}@customer.example"), "", &format!("Hello, {subject}."))
}

/// A reply to `original` (by In-Reply-To only: the subject carries no token).
fn reply(id: &str, original: &str) -> Vec<u8> {
    let from = format!("Customer <{CUSTOMER}>");
    let thread = format!("In-Reply-To: <{original}@customer.example>\r\nReferences: <{original}@customer.example>\r\n");
    let body = format!("Some more details for {original}.");
    to_support(&from, "Re: more details", &format!("{id}@customer.example"), &thread, &body)
}

/// A `[[mailbox]]` table for the harness's support account over plain IMAP.
fn mailbox(dovecot: &Dovecot, extra: &str) -> String {
    format!(
        "[[mailbox]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{SUPPORT}\"\n\
         password = \"{PASSWORD}\"\npoll_interval_secs = 1\ntimeout_secs = 5\n{extra}\n",
        dovecot.ports().imap
    )
}

/// A number from the installation's database, 0 while it does not exist yet or cannot be
/// read: unlike [`Installation::count`], fit for polling what a running daemon is creating.
fn count(inst: &Installation, sql: &str) -> i64 {
    if !inst.path().join("var/casegate.db").exists() {
        return 0;
    }
    inst.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to [`WAIT`]) until the support user's `folder` holds `n` mails, and returns
/// what it holds then. A running daemon marks the last batches of a backlog after their
/// commit, once the drain has ended, so the folder settles a little after the database.
async fn folder_settles(dovecot: &Dovecot, folder: &str, n: u32) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = dovecot.folder_count(SUPPORT, folder).await;
        if now == n || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_appended_while_idle_becomes_a_case_and_moves_to_processed() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, ""));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;

    let appended = Instant::now();
    dovecot.append(SUPPORT, "INBOX", &mail("idle-1", "Printer on fire")).await;
    wait_until("the case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 1).await;
    let delay = appended.elapsed();

    let cases = inst.json(&["cases", "list", "--json"]);
    assert_eq!(cases[0]["subject"], "Printer on fire");
    assert_eq!(cases[0]["reported_by"], CUSTOMER);
    daemon.wait_log("moved to Processed", 1, WAIT).await;
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    let processed = dovecot.list_folder(SUPPORT, "Processed").await;
    assert_eq!(processed.len(), 1);
    assert!(String::from_utf8_lossy(&processed[0].1).contains("Message-ID: <idle-1@customer.example>"));
    // Dovecot reports EXISTS ≈0.5 s after the APPEND; the rest must be quick.
    assert!(delay < Duration::from_secs(5), "APPEND to commit took {delay:?}");
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
}

/// Single mails picked up while idle, a second apart: the marking connection opened for
/// the first one does not know the later ones until it asks the server, which otherwise
/// answers OK to moving them and moves nothing. Checked on the server's folders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mails_picked_up_while_idle_are_all_moved_to_processed() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, ""));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;

    for i in 1..=5 {
        dovecot.append(SUPPORT, "INBOX", &mail(&format!("single-{i}"), &format!("Single {i}"))).await;
        wait_until("the case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == i).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    assert_eq!(folder_settles(&dovecot, "Processed", 5).await, 5, "{}", daemon.log());
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    let log = daemon.log();
    assert_eq!(log.matches("Mails marked").count(), 5, "one marking per mail:\n{log}");
    assert!(!log.contains("left mails unmarked"), "{log}");
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");
    // The checkpoint covers all five: a restart has nothing to do.
    assert_eq!(count(&inst, "SELECT last_uid FROM mailbox_state WHERE source = 'support'"), 5);
}

/// Committed mail the server was never told about (here: processed with `mark = "seen"`,
/// then the installation switched to moving) is marked on the next start, without being
/// processed twice.
#[tokio::test]
async fn committed_mail_still_in_the_folder_is_marked_on_the_next_start() {
    let dovecot = Dovecot::start();
    let mails: Vec<Vec<u8>> = (0..3).map(|i| mail(&format!("r{i}"), &format!("Reconcile {i}"))).collect();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "mark = \"seen\""));
    run_once(&inst);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 3, "flagged \\Seen, still in INBOX");
    assert_eq!(count(&inst, "SELECT last_uid FROM mailbox_state WHERE source = 'support'"), 3);

    let config = std::fs::read_to_string(&inst.config).unwrap().replace("mark = \"seen\"", "mark = \"move\"");
    std::fs::write(&inst.config, config).unwrap();
    let log = run_once(&inst);

    assert!(log.contains("still unmarked in the folder"), "{log}");
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0, "{log}");
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 3);
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 3, "nothing processed twice");
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 3, "duplicates write nothing");
    assert_eq!(log.matches("outcome=\"duplicate\"").count(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_new_mail_is_found_by_polling() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, "idle = false"));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Mailbox connected", 1, WAIT).await;

    dovecot.append(SUPPORT, "INBOX", &mail("poll-1", "Polled")).await;

    wait_until("the case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 1).await;
    assert!(!daemon.log().contains("Waiting for new mail (IDLE)"));
    let (status, took) = daemon.terminate().await;
    assert!(status.success() && took < Duration::from_secs(3), "{status} after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_idle_exits_cleanly_within_seconds() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, ""));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;

    let (status, took) = daemon.terminate().await;

    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(3), "SIGTERM to exit took {took:?}");
    assert!(daemon.log().contains("casegate stopped"));
}

#[tokio::test]
async fn waiting_mail_is_caught_up_in_batches_by_run_once() {
    let dovecot = Dovecot::start();
    let mails: Vec<Vec<u8>> = (0..25).map(|i| mail(&format!("c{i}"), &format!("Question {i}"))).collect();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 10"));

    let log = run_once(&inst);

    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 25);
    // Three batches, each committed as it came; the marking waited for the drain to end
    // and moved all of them with one command.
    let commits = log.lines().filter(|l| l.contains("Mail processed")).count();
    assert_eq!(commits, 25, "{log}");
    let marked: Vec<&str> = log.lines().filter(|l| l.contains("Mails marked")).collect();
    assert_eq!(marked.len(), 1, "expected one marking command for the three batches:\n{log}");
    assert!(marked[0].contains("mails=25") && marked[0].contains("uids=1:25"), "{}", marked[0]);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 25);
    assert_eq!(count(&inst, "SELECT last_uid FROM mailbox_state WHERE source = 'support'"), 25);

    // Nothing waits now: a second pass changes nothing.
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_batches_are_bounded_in_bytes_as_well_as_in_mails() {
    let dovecot = Dovecot::start();
    // Seven mails of ≈100 KB (a log pasted into the body) and batches of at most 250 KB:
    // two mails a batch, though batch_size would allow ten.
    let line = "2024-11-25 09:00:00 spooler: job 4711 stalled, retrying\r\n";
    let mails: Vec<Vec<u8>> = (0..7)
        .map(|i| {
            let mut m = mail(&format!("big{i}"), &format!("Spooler log {i}"));
            m.extend(line.repeat(100_000 / line.len()).as_bytes());
            m
        })
        .collect();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 10\nbatch_bytes = 250000"));

    let out = inst.run(&["-vv", "run", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run --once failed:\n{log}");

    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 7);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 7);
    let batches: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Batch committed"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("mails=")))
        .collect();
    assert_eq!(batches, ["mails=2", "mails=2", "mails=2", "mails=1"], "{log}");
}

/// `run --once`, which must succeed; returns its log.
fn run_once(inst: &Installation) -> String {
    let out = inst.run(&["run", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "run --once failed:\n{log}");
    log
}

/// A Dovecot with 800 new-case mails waiting and a daemon started on them in batches of
/// 10, so that something can interrupt it mid-run.
async fn daemon_on_a_backlog_of_800() -> (Dovecot, Installation, Daemon) {
    let dovecot = Dovecot::start();
    let mails: Vec<Vec<u8>> = (0..800).map(|i| mail(&format!("b{i}"), &format!("Issue {i}"))).collect();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 10"));
    let daemon = Daemon::start(&inst, &[]);
    (dovecot, inst, daemon)
}

/// After an interruption while 800 new-case mails were being ingested: the daemon noticed
/// and reconnected, and every mail became one case and was moved once. Returns the log.
async fn all_800_landed_once_after_a_reconnect(inst: &Installation, dovecot: &Dovecot, daemon: &Daemon) -> String {
    wait_until("all 800 mails", Duration::from_secs(60), || count(inst, "SELECT count(*) FROM mails") == 800).await;
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;
    assert_eq!(count(inst, "SELECT count(*) FROM cases"), 800);
    assert_eq!(count(inst, "SELECT count(DISTINCT message_id) FROM messages"), 800);
    assert_eq!(folder_settles(dovecot, "INBOX", 0).await, 0);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 800);
    let log = daemon.log();
    assert!(log.contains("reconnecting"), "the interruption went unnoticed:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_restart_mid_batch_loses_and_doubles_nothing() {
    let (mut dovecot, inst, mut daemon) = daemon_on_a_backlog_of_800().await;

    wait_until("the first batches", WAIT, || count(&inst, "SELECT count(*) FROM mails") >= 50).await;
    dovecot.restart();
    let at_restart = count(&inst, "SELECT count(*) FROM mails");
    assert!(at_restart < 800, "the restart came after the last batch; the test proves nothing");
    all_800_landed_once_after_a_reconnect(&inst, &dovecot, &daemon).await;
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marking_connection_dropped_mid_run_loses_and_doubles_nothing() {
    let (dovecot, inst, mut daemon) = daemon_on_a_backlog_of_800().await;

    // The daemon's two connections: the fetching one logged in first. Dovecot serves each
    // by a process of its own; stopping the later one drops the marking connection alone
    // (SIGTERM: the process ends cleanly; a SIGKILL mid-MOVE would leave the folder's lock
    // behind, and every later SELECT would wait for Dovecot to declare it stale).
    daemon.wait_log("Marking connection opened", 1, WAIT).await;
    let who = dovecot.doveadm(&["who", "-1"]).await;
    let mut pids: Vec<i32> = who
        .lines()
        .filter(|l| l.contains(SUPPORT) && l.contains("imap"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    pids.sort_unstable();
    assert_eq!(pids.len(), 2, "expected the fetching and the marking connection:\n{who}");
    let at_kill = count(&inst, "SELECT count(*) FROM mails");
    // SAFETY: kill has no memory-safety preconditions; the process is this test's Dovecot's.
    assert_eq!(unsafe { libc::kill(pids[1], libc::SIGTERM) }, 0);

    assert!(at_kill < 800, "the kill came after the last mail; the test proves nothing");
    let log = all_800_landed_once_after_a_reconnect(&inst, &dovecot, &daemon).await;
    // Each mail has exactly one line saying it was created, logged at its commit, also
    // when it was not marked before the connection dropped (it is a duplicate when seen
    // again, and only marked then).
    let created = log.lines().filter(|l| l.contains("Mail processed") && l.contains("outcome=\"created\"")).count();
    assert_eq!(created, 800, "one 'created' line per mail");
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backlog_marks_everything_committed_before_exiting() {
    let (dovecot, inst, mut daemon) = daemon_on_a_backlog_of_800().await;

    wait_until("the first batches", WAIT, || count(&inst, "SELECT count(*) FROM mails") >= 100).await;
    let (status, took) = daemon.terminate().await;

    assert!(status.success() && took < Duration::from_secs(5), "{status} after {took:?}");
    // What was committed (the batches waiting to be marked included) is marked and
    // checkpointed before the exit; the rest is still in INBOX, untouched.
    let committed = count(&inst, "SELECT count(*) FROM mails");
    assert!(committed < 800, "the signal came after the last mail; the test proves nothing");
    assert_eq!(i64::from(dovecot.folder_count(SUPPORT, "Processed").await), committed);
    assert_eq!(i64::from(dovecot.folder_count(SUPPORT, "INBOX").await), 800 - committed);
    assert_eq!(count(&inst, "SELECT last_uid FROM mailbox_state WHERE source = 'support'"), committed);
    let log = daemon.log();
    assert!(log.contains("Shutting down") && log.contains("casegate stopped"), "{log}");

    // The next run takes the rest, and nothing twice.
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 800);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 800);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_then_restart_every_mail_lands_exactly_once() {
    let dovecot = Dovecot::start();
    // 200 new cases and 100 replies, each reply right after the mail it answers.
    let mut mails = Vec::new();
    let mut replies = Vec::new();
    for i in 0..200 {
        mails.push(mail(&format!("k{i}"), &format!("Outage {i}")));
        if i % 2 == 1 {
            mails.push(reply(&format!("k{i}-re"), &format!("k{i}")));
            replies.push(i);
        }
    }
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 15"));

    // Kill points: when the journal passes random counts, plus a random few ms, so the
    // kills fall anywhere in fetch → commit → mark → checkpoint.
    let mut rng = rand::thread_rng();
    let mut thresholds: Vec<i64> = (0..10).map(|_| rng.gen_range(5..290)).collect();
    thresholds.sort_unstable();
    let mut kills = Vec::new();
    for threshold in thresholds {
        let mut daemon = Daemon::start(&inst, &[]);
        let deadline = Instant::now() + WAIT;
        while count(&inst, "SELECT count(*) FROM mails") < threshold && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
        daemon.signal(libc::SIGKILL);
        daemon.kill();
        let committed = count(&inst, "SELECT count(*) FROM mails");
        kills.push((threshold, committed, dovecot.folder_count(SUPPORT, "INBOX").await));
    }
    eprintln!("kills at (journal threshold, committed, left in INBOX): {kills:?}");
    let mut daemon = Daemon::start(&inst, &[]);
    wait_until("all 300 mails", Duration::from_secs(60), || count(&inst, "SELECT count(*) FROM mails") == 300).await;
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;
    let (status, _) = daemon.terminate().await;
    assert!(status.success(), "{status}");

    // The database: every mail once in the journal and once on a thread; 200 cases.
    assert_eq!(count(&inst, "SELECT count(DISTINCT message_id) FROM mails"), 300);
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 200);
    assert_eq!(count(&inst, "SELECT count(*) FROM messages WHERE message_id IS NOT NULL"), 300);
    assert_eq!(count(&inst, "SELECT count(DISTINCT message_id) FROM messages"), 300);
    let db = inst.db();
    for i in replies {
        let case_of = |id: String| -> i64 {
            db.query_row("SELECT case_id FROM messages WHERE message_id = ?1", [id], |r| r.get(0)).expect("message")
        };
        assert_eq!(
            case_of(format!("k{i}-re@customer.example")),
            case_of(format!("k{i}@customer.example")),
            "reply to k{i} is on another case"
        );
    }
    // The server: everything in Processed, once.
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    let processed = dovecot.list_folder(SUPPORT, "Processed").await;
    assert_eq!(processed.len(), 300);
}

#[tokio::test]
async fn uidvalidity_change_rescans_and_the_journal_prevents_duplicates() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, "mark = \"seen\""));
    let first: Vec<Vec<u8>> = (0..3).map(|i| mail(&format!("v{i}"), &format!("Topic {i}"))).collect();
    dovecot.append_many(SUPPORT, "INBOX", &first).await;
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 3);

    let new_validity = dovecot.change_uidvalidity(SUPPORT, "INBOX").await;
    dovecot.append(SUPPORT, "INBOX", &mail("v3", "Topic 3")).await;
    let log = run_once(&inst);
    assert!(log.contains("UIDVALIDITY changed"), "{log}");
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 4);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 4, "the re-scan wrote no second journal rows");
    assert_eq!(
        log.matches("a mail with this Message-ID and the same content was already processed").count(),
        3,
        "{log}"
    );
    assert_eq!(count(&inst, "SELECT uidvalidity FROM mailbox_state"), i64::from(new_validity));
    assert_eq!(count(&inst, "SELECT last_uid FROM mailbox_state"), 4);
    // mark = "seen": the mails stay in the INBOX, flagged \Seen.
    let mut session = dovecot.login(SUPPORT).await;
    session.examine("INBOX").await.expect("examine");
    assert_eq!(session.uid_search("ALL").await.expect("search").len(), 4);
    assert!(session.uid_search("UNSEEN").await.expect("search").is_empty());
    session.logout().await.expect("logout");
}

/// Capabilities of a server without MOVE (and, with `uidplus = false`, without UIDPLUS).
fn capabilities_without_move(uidplus: bool) -> String {
    let base = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE";
    if uidplus {
        format!("{base} UIDPLUS")
    } else {
        base.to_owned()
    }
}

/// Appends mails and one more that another client has flagged \Deleted (casegate must
/// neither process nor expunge it); returns that one's UID.
async fn mails_and_one_deleted_by_someone_else(dovecot: &Dovecot, mails: &[Vec<u8>]) -> u32 {
    dovecot.append_many(SUPPORT, "INBOX", mails).await;
    let theirs = dovecot.append(SUPPORT, "INBOX", &mail("theirs", "Flagged by a person")).await;
    let mut session = dovecot.login(SUPPORT).await;
    session.select("INBOX").await.expect("select");
    let _: Vec<_> = futures::TryStreamExt::try_collect(
        session.uid_store(theirs.to_string(), "+FLAGS.SILENT (\\Deleted)").await.expect("store"),
    )
    .await
    .expect("store");
    session.logout().await.expect("logout");
    theirs
}

#[tokio::test]
async fn without_move_processed_mail_is_copied_and_expunged_by_uid_only() {
    let dovecot = Dovecot::builder().imap_capability(&capabilities_without_move(true)).start();
    let mails: Vec<Vec<u8>> = (0..12).map(|i| mail(&format!("nm{i}"), &format!("No move {i}"))).collect();
    let theirs = mails_and_one_deleted_by_someone_else(&dovecot, &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 5"));

    let log = run_once(&inst);

    assert!(log.contains("server=IDLE, no MOVE, UIDPLUS"), "{log}");
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 12);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 12);
    // UID COPY, STORE \Deleted, UID EXPUNGE of exactly those UIDs: the mail another
    // client flagged \Deleted is still there, untouched.
    let left: Vec<u32> = dovecot.list_folder(SUPPORT, "INBOX").await.into_iter().map(|(uid, _)| uid).collect();
    assert_eq!(left, [theirs]);
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 12);
}

#[tokio::test]
async fn without_move_or_uidplus_processed_mail_stays_flagged_deleted_and_is_not_fetched_again() {
    let dovecot = Dovecot::builder().imap_capability(&capabilities_without_move(false)).start();
    let mails: Vec<Vec<u8>> = (0..7).map(|i| mail(&format!("np{i}"), &format!("No UIDPLUS {i}"))).collect();
    mails_and_one_deleted_by_someone_else(&dovecot, &mails).await;
    let inst = Installation::new(&mailbox(&dovecot, "batch_size = 5"));

    let log = run_once(&inst);

    assert!(log.contains("server=IDLE, no MOVE, no UIDPLUS"), "{log}");
    assert!(log.contains("The server lacks UIDPLUS"), "{log}");
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 7);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 7);
    // Nothing expunged (a plain EXPUNGE would also remove the other client's mail): all
    // eight are still in INBOX, all flagged \Deleted.
    let mut session = dovecot.login(SUPPORT).await;
    session.examine("INBOX").await.expect("examine");
    assert_eq!(session.uid_search("ALL").await.expect("search").len(), 8);
    assert_eq!(session.uid_search("DELETED").await.expect("search").len(), 8);
    session.logout().await.expect("logout");
    // The search skips them: a second pass fetches nothing.
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 7);
}

#[tokio::test]
async fn delete_mode_removes_processed_mail_from_the_folder() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, "mark = \"delete\""));
    let mails: Vec<Vec<u8>> = (0..3).map(|i| mail(&format!("d{i}"), &format!("Gone {i}"))).collect();
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;

    inst.ok(&["run", "--once"]);

    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 3);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
}

#[tokio::test]
async fn hostile_mail_is_quarantined_on_both_sides_and_the_mail_behind_it_goes_through() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&format!("limits = {{ max_message_bytes = 4096 }}\n{}", mailbox(&dovecot, "")));
    let huge = {
        let mut m = mail("huge", "Big attachment");
        m.extend(std::iter::repeat_n(b'x', 8_000));
        m.extend_from_slice(b"\r\n");
        m
    };
    let garbage = b"\xff\xfe\xfd\x01 not a mail at all \xc3\x28\r\n".to_vec();
    let mails = vec![mail("h1", "Before"), garbage, huge, mail("h2", "After")];
    dovecot.append_many(SUPPORT, "INBOX", &mails).await;

    inst.ok(&["run", "--once"]);

    let subjects: Vec<Value> =
        inst.json(&["cases", "list", "--json"]).as_array().unwrap().iter().map(|c| c["subject"].clone()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert_eq!(count(&inst, "SELECT count(*) FROM quarantine"), 2);
    assert_eq!(dovecot.folder_count(SUPPORT, "Quarantine").await, 2);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 2);
    assert_eq!(dovecot.folder_count(SUPPORT, "INBOX").await, 0);
    // Not retried forever: a second pass finds nothing to do.
    inst.ok(&["run", "--once"]);
    assert_eq!(count(&inst, "SELECT count(*) FROM mails"), 4);
}

#[tokio::test]
async fn imaps_with_an_extra_ca_file_is_trusted() {
    let dovecot = Dovecot::start();
    let table = format!(
        "[[mailbox]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"tls\"\nca_file = \"{}\"\nusername = \"{SUPPORT}\"\npassword = \"{PASSWORD}\"\ntimeout_secs = 5\n",
        dovecot.ports().imaps,
        dovecot.ca_pem().display()
    );
    let inst = Installation::new(&table);
    dovecot.append(SUPPORT, "INBOX", &mail("tls-1", "Over TLS")).await;

    inst.ok(&["run", "--once"]);

    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 1);
    assert_eq!(dovecot.folder_count(SUPPORT, "Processed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_mailbox_does_not_stop_the_others() {
    let dovecot = Dovecot::start();
    let broken = format!(
        "[[mailbox]]\nname = \"broken\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"x\"\npassword = \"y\"\ntimeout_secs = 2\n",
        free_port()
    );
    let inst = Installation::new(&format!("{broken}\n{}", mailbox(&dovecot, "")));
    let mut daemon = Daemon::start(&inst, &[]);
    daemon.wait_log("Waiting for new mail (IDLE)", 1, WAIT).await;

    dovecot.append(SUPPORT, "INBOX", &mail("b1", "Still served")).await;

    wait_until("the case", WAIT, || count(&inst, "SELECT count(*) FROM cases") == 1).await;
    let log = daemon.log();
    assert!(log.contains("mailbox=broken") && log.contains("nothing accepts connections"), "{log}");
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_source_moves_new_mail_to_cur_after_the_commit() {
    let inst = Installation::new("[[maildir]]\nname = \"local\"\npath = \"maildir\"\npoll_interval_ms = 100\n");
    let mut daemon = Daemon::start(&inst, &[]);
    let maildir = inst.path().join("maildir");
    wait_until("the Maildir", WAIT, || maildir.join("tmp").is_dir()).await;

    // Delivered the Maildir way: written into tmp/, renamed into new/.
    std::fs::write(maildir.join("tmp/1732525200.M1P1.host"), mail("md-1", "Local delivery")).unwrap();
    std::fs::rename(maildir.join("tmp/1732525200.M1P1.host"), maildir.join("new/1732525200.M1P1.host")).unwrap();

    wait_until("the file in cur/", WAIT, || maildir.join("cur/1732525200.M1P1.host:2,S").exists()).await;
    assert_eq!(count(&inst, "SELECT count(*) FROM cases"), 1);
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    daemon.wait_log("Mails marked maildir=local mails=1 quarantined=0", 1, WAIT).await;
    let (status, _) = daemon.terminate().await;
    assert!(status.success());
}

/// The quick start: the shipped demo config, run in a copy of the repository layout.
#[test]
fn demo_config_runs_without_any_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("fixtures/demo")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("config/demo.toml"), dir.path().join("config/demo.toml")).unwrap();
    std::os::unix::fs::symlink(fixtures().join("demo/inbox"), dir.path().join("fixtures/demo/inbox")).unwrap();
    let inst = Installation { config: dir.path().join("config/demo.toml"), dir, database: None };

    inst.ok(&["run", "--once"]);

    let cases = inst.json(&["cases", "list", "--json"]);
    assert!(cases.as_array().is_some_and(|c| !c.is_empty()), "{cases}");
    let new = std::fs::read_dir(inst.path().join("var/demo/inbox/new")).unwrap().count();
    let cur = std::fs::read_dir(inst.path().join("var/demo/inbox/cur")).unwrap().count();
    let seeded = std::fs::read_dir(fixtures().join("demo/inbox/new")).unwrap().count();
    assert_eq!((new, cur), (0, seeded));
}

#[tokio::test]
async fn doctor_names_a_wrong_password_in_plain_words() {
    let dovecot = Dovecot::start();
    let table = mailbox(&dovecot, "").replace(&format!("password = \"{PASSWORD}\""), "password = \"wrong\"");
    let inst = Installation::new(&table);

    let out = inst.run(&["doctor"]);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  mailbox support"), "{stdout}");
    assert!(stdout.contains("refused the login") && stdout.contains("wrong username or password"), "{stdout}");
    assert!(stdout.contains("ok    database"), "{stdout}");
    // The base config names staff by address and trusts no Authentication-Results.
    assert!(stdout.contains("warn  config: staff and admin powers go by the From address alone"), "{stdout}");
}

#[tokio::test]
async fn doctor_and_run_name_a_folder_that_does_not_exist() {
    let dovecot = Dovecot::start();
    let inst = Installation::new(&mailbox(&dovecot, "folder = \"Support/Incoming\""));

    let out = inst.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  mailbox support"), "{stdout}");
    assert!(
        stdout.contains(&format!("logged in as {SUPPORT}"))
            && stdout.contains("folder \"Support/Incoming\" cannot be opened")
            && stdout.contains("does it exist?"),
        "{stdout}"
    );

    // The daemon says the same, and fails instead of waiting forever on a one-off pass.
    let out = inst.run(&["run", "--once"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("folder \"Support/Incoming\" cannot be opened"), "{stderr}");
}

#[tokio::test]
async fn doctor_passes_a_good_setup_over_plain_tls_starttls_and_smtp() {
    let dovecot = Dovecot::start();
    let ca = dovecot.ca_pem().display().to_string();
    let p = dovecot.ports();
    let table = |name: &str, port: u16, tls: &str| {
        format!(
            "[[mailbox]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{ca}\"\n\
             username = \"{SUPPORT}\"\npassword = \"{PASSWORD}\"\ntimeout_secs = 5\n"
        )
    };
    let smtp = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = \"{ca}\"\nusername = \"{SUPPORT}\"\npassword = \"{PASSWORD}\"\n",
        p.submission
    );
    // Dovecot's submission service relays every session to the sink.
    let _sink = SmtpSink::start(SinkOptions::relay_for(&dovecot));
    let inst = Installation::new(&format!(
        "{}{}{}{smtp}",
        table("plain", p.imap, "none"),
        table("imaps", p.imaps, "tls"),
        table("starttls", p.imap, "starttls")
    ));

    let out = inst.run(&["doctor"]);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for what in
        ["ok    mailbox plain", "ok    mailbox imaps", "ok    mailbox starttls", "ok    smtp", "all checks passed"]
    {
        assert!(stdout.contains(what), "{what:?} missing:\n{stdout}");
    }
    assert!(stdout.contains("server offers IDLE, MOVE, UIDPLUS"), "{stdout}");
    assert!(stdout.contains("\"Processed\" will be created"), "{stdout}");
}

/// A server that accepts connections and then says nothing: every step has a timeout, so
/// the watcher gives up on it (and `--once` reports it) instead of hanging.
#[test]
fn a_silent_server_is_detected_by_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = std::thread::spawn(move || {
        // Hold the first connection open without a word until the client gives up.
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            let _ = std::io::Read::read(&mut stream, &mut buf);
        }
    });
    let inst = Installation::new(&format!(
        "[[mailbox]]\nname = \"silent\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\ntimeout_secs = 1\n"
    ));

    let started = Instant::now();
    let out = inst.run(&["run", "--once"]);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no IMAP greeting within 1 s"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let _ = silent.join();
}

#[test]
fn a_broken_template_override_stops_run_before_any_mail_is_taken() {
    let inst = Installation::new("templates_dir = \"tpl\"\n[[maildir]]\nname = \"local\"\npath = \"inbox\"");
    std::fs::create_dir_all(inst.path().join("tpl")).unwrap();
    std::fs::write(inst.path().join("tpl/reply.text.hbs"), "{{case.no_such_value}}").unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(inst.path().join("inbox").join(sub)).unwrap();
    }
    std::fs::write(inst.path().join("inbox/new/1.eml"), mail("tpl", "Question")).unwrap();

    let out = inst.run(&["run", "--once"]);

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a configuration error: {stderr}");
    assert!(stderr.contains("templates_dir") && stderr.contains("template reply"), "{stderr}");
    assert!(inst.path().join("inbox/new/1.eml").exists(), "the mail was left where it was");
}
