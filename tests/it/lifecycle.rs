//! The data lifecycle through the real binary: `casegate purge` and `casegate erase` leave
//! no trace of what they removed anywhere under the data directory (the database file, its
//! write-ahead log, the raw-mail packs, the attachment files), and every other case still
//! shows as before; the daily retention of `casegate run` does the same on its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::casegate::{Daemon, Installation};
use crate::support::survey::by_mail::{install, mail, outbox_mails, ANN, BOB, JANE};

const WENDY: &str = "wendy@other.example";

/// A mail with a text attachment (8bit, so its words are in the raw mail as written).
pub(crate) fn with_file(
    from: &str,
    subject: &str,
    id: &str,
    body: &str,
    name: &str,
    file: &str,
    headers: &str,
) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}@mail.example>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n{headers}\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{file}\r\n\
         --b--\r\n"
    )
    .into_bytes()
}

/// Every file under `dir` whose bytes contain `needle`, ASCII case ignored.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.to_ascii_lowercase().into_bytes();
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read data dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).expect("read data file").to_ascii_lowercase();
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                hits.push(path);
            }
        }
    }
    hits
}

pub(crate) fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string()
}

/// CASE-1: Jane's, with a file only she sent and one Bob sends too, resolved, accepted,
/// its survey answered with a comment. CASE-2: Bob's, open, with the shared file.
pub(crate) fn a_closed_and_an_open_case(install: &Installation, phrase: &str) {
    let open = with_file(
        JANE,
        &format!("Printer {phrase}-subject"),
        "open",
        &format!("The printer says {phrase}-body."),
        "printer.txt",
        &format!("log line {phrase}-file"),
        "",
    );
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let shared = "driver settings shared by two cases\r\n";
    let own = with_file(JANE, "Re: [CASE-1] Printer", "own", "The settings.", "settings.txt", shared, "");
    assert_eq!(install.ingest_bytes("own.eml", &own)["outcome"], "replied");
    let resolve = mail(ANN, "Re: [CASE-1] Printer", "resolve", "#resolve\r\nReplace the toner.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    let accept = mail(JANE, "Re: [CASE-1] Printer #accept", "accept", "Works again.", "");
    assert_eq!(install.ingest_bytes("accept.eml", &accept)["outcome"], "command");
    install.ok(&["outbox", "flush"]);
    let survey = outbox_mails(install).into_iter().find(|(_, m)| m.subject.contains("How did we do?")).expect("survey");
    let id = survey.1.message_id.clone().expect("survey Message-ID");
    let answer = mail(
        JANE,
        "Re: [CASE-1] How did we do?",
        "answer",
        &format!("4 yes {phrase}-comment"),
        &format!("In-Reply-To: <{id}>\r\n"),
    );
    assert_eq!(install.ingest_bytes("answer.eml", &answer)["outcome"], "command");
    let bobs = with_file(BOB, "Scanner jams", "bob", "It jams.", "settings.txt", shared, "");
    assert_eq!(install.ingest_bytes("bob.eml", &bobs)["case"], "CASE-2");
}

#[test]
fn purge_removes_closed_cases_whole_and_keeps_only_that_they_existed() {
    let install = install("127.0.0.1:9", "");
    let phrase = "quartzfalcon7319";
    a_closed_and_an_open_case(&install, phrase);
    let var = install.path().join("var");
    let case2 = install.case("CASE-2");
    install.ok(&["outbox", "flush"]);
    // The test can fail: before the purge the words are on disk.
    for what in ["subject", "body", "file", "comment"] {
        assert!(!files_containing(&var, &format!("{phrase}-{what}")).is_empty(), "{what} stored before");
    }

    let dry = install.json(&["purge", "--closed-before", &tomorrow(), "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["cases"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["cases"][0]["case"], "CASE-1");
    assert_eq!(dry["removed"]["survey_answers"], 1, "{dry}");
    assert_eq!(install.case("CASE-1")["status"], "Closed", "a dry run changes nothing");
    assert!(!files_containing(&var, &format!("{phrase}-file")).is_empty());

    let none = install.json(&["purge", "--closed-before", "2000-01-01", "--json"]);
    assert_eq!(none["removed"]["cases"], 0, "nothing was closed before 2000: {none}");

    let done = install.json(&["purge", "--closed-before", &tomorrow(), "--json"]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["removed"], dry["removed"], "the dry run counted exactly what went");
    assert_eq!(done["removed"]["cases"], 1);
    assert_eq!(done["removed"]["attachments"], 2, "{done}");
    assert_eq!(done["overwritten"]["files"], 1, "the shared file stays: {done}");
    assert!(!install.run(&["cases", "show", "CASE-1", "--json"]).status.success(), "CASE-1 is gone");
    assert_eq!(install.case("CASE-2"), case2, "the other case shows as before");

    for what in ["subject", "body", "file", "comment"] {
        let hits = files_containing(&var, &format!("{phrase}-{what}"));
        assert!(hits.is_empty(), "the purged case's {what} is still on disk in {hits:?}");
    }
    for (table, column) in [
        ("messages", "case_id"),
        ("participants", "case_id"),
        ("outbox", "case_id"),
        ("survey_answers", "case_id"),
        ("survey_invitations", "case_id"),
        ("mails", "case_id"),
    ] {
        assert_eq!(install.count(&format!("SELECT count(*) FROM {table} WHERE {column} = 1"), []), 0, "{table}");
    }
    let audit: Vec<String> = {
        let db = install.db();
        let mut q = db.prepare("SELECT action || ': ' || detail FROM audit WHERE case_id = 1").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(audit.len(), 1, "one audit line stays: {audit:?}");
    assert!(audit[0].starts_with("case-purged: opened ") && audit[0].contains("closed "), "{audit:?}");
    assert!(!audit[0].contains("Printer"), "no content in the audit: {audit:?}");

    // The journal still knows the mails: delivered again, they are duplicates, not new cases.
    let again = install.ingest(&[&install.path().join("open.eml")]);
    assert_eq!(again[0]["outcome"], "duplicate", "{again:?}");
}

#[test]
fn erase_replaces_the_address_everywhere_and_its_bytes_leave_the_disk() {
    let install = install("127.0.0.1:9", "");
    let phrase = "velvetotter4471";
    let open = with_file(
        JANE,
        "Printer on fire",
        "open",
        &format!("It burns, {phrase}-body."),
        "fire.txt",
        &format!("smoke {phrase}-file"),
        &format!("Cc: <{WENDY}>\r\n"),
    );
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let staff = mail(ANN, "Re: [CASE-1] Printer on fire", "staff", &format!("Called {JANE} back."), "");
    assert_eq!(install.ingest_bytes("staff.eml", &staff)["outcome"], "replied");
    let bobs = mail(BOB, "Scanner jams", "bob", "It jams.", &format!("Cc: <{JANE}>\r\n"));
    assert_eq!(install.ingest_bytes("bob.eml", &bobs)["case"], "CASE-2");
    // CASE-1 is solved; Jane accepts and answers the survey with a comment.
    let resolve = mail(ANN, "Re: [CASE-1] Printer on fire", "resolve", "#resolve\r\nWater.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    let accept = mail(JANE, "Re: [CASE-1] Printer on fire #accept", "accept", "Out now.", "");
    assert_eq!(install.ingest_bytes("accept.eml", &accept)["outcome"], "command");
    install.ok(&["outbox", "flush"]);
    let survey =
        outbox_mails(&install).into_iter().find(|(_, m)| m.subject.contains("How did we do?")).expect("survey");
    let survey_id = survey.1.message_id.clone().expect("survey Message-ID");
    let answer = mail(
        JANE,
        "Re: [CASE-1] How did we do?",
        "answer",
        &format!("5 yes {phrase}-comment"),
        &format!("In-Reply-To: <{survey_id}>\r\n"),
    );
    assert_eq!(install.ingest_bytes("answer.eml", &answer)["outcome"], "command");
    let var = install.path().join("var");
    for needle in [JANE, &format!("{phrase}-body"), &format!("{phrase}-file"), &format!("{phrase}-comment")] {
        assert!(!files_containing(&var, needle).is_empty(), "{needle} stored before");
    }
    assert!(install.case("CASE-2")["watchers"].as_array().unwrap().contains(&Value::from(JANE)));

    let dry = install.json(&["erase", "--address", JANE, "--dry-run", "--json"]);
    let cases: Vec<(String, String)> = dry["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["case"].as_str().unwrap().to_string(), c["roles"].to_string()))
        .collect();
    assert_eq!(
        cases,
        [("CASE-1".into(), "[\"contact\",\"requester\"]".into()), ("CASE-2".into(), "[\"watcher\"]".into())]
    );
    assert_eq!(dry["cases"][0]["opened"], true);
    assert_eq!(install.case("CASE-1")["reported_by"], JANE, "a dry run changes nothing");

    let done = install.json(&["erase", "--address", JANE, "--json"]);
    let pseudonym = done["pseudonym"].as_str().expect("a pseudonym").to_string();
    assert!(pseudonym.starts_with("erased-") && pseudonym.ends_with("@erased.invalid"), "{pseudonym}");
    assert_eq!(done["erased"]["entries"], 2, "the opening mail and the accepting one: {done}");
    assert_eq!(done["erased"]["files"], 1, "{done}");
    assert!(done["erased"]["kept_in_identifiers"].as_array().unwrap().is_empty(), "{done}");

    for needle in [JANE, &format!("{phrase}-body"), &format!("{phrase}-file"), &format!("{phrase}-comment")] {
        let hits = files_containing(&var, needle);
        assert!(hits.is_empty(), "{needle:?} is still on disk in {hits:?}");
    }
    let case1 = install.case("CASE-1");
    assert_eq!(case1["reported_by"], pseudonym.as_str());
    assert_eq!(case1["messages"][0]["body"], "(erased)");
    assert_eq!(case1["messages"][0]["from"], pseudonym.as_str());
    let staff_entry = case1["messages"].as_array().unwrap().iter().find(|m| m["kind"] == "staff").unwrap().clone();
    assert_eq!(staff_entry["body"], format!("Called {pseudonym} back."));
    assert_eq!(case1["watchers"], serde_json::json!([WENDY]), "other people stay");
    let case2 = install.case("CASE-2");
    assert!(!case2["watchers"].to_string().contains("erased"), "a watcher leaves: {case2}");
    assert_eq!(case2["reported_by"], BOB);
    assert_eq!(install.count("SELECT count(*) FROM audit WHERE action = 'person-erased'", []), 1);
    // The survey answer stays as a score, without its comment.
    let report = install.json(&["survey", "report", "--json"]);
    assert_eq!((report["answered"].as_i64(), report["average_score"].as_f64()), (Some(1), Some(5.0)), "{report}");
    assert_eq!(install.count("SELECT count(*) FROM survey_answers WHERE comment IS NOT NULL", []), 0);

    // Erasing again finds nothing; the pseudonym cannot be erased as a person.
    let again = install.json(&["erase", "--address", JANE, "--dry-run", "--json"]);
    assert!(again["cases"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(again["pseudonym"], pseudonym.as_str(), "the same address gets the same pseudonym");
    assert!(!install.run(&["erase", "--address", &pseudonym]).status.success());
}

#[tokio::test]
async fn the_daemon_applies_retention_once_a_day() {
    let install = Installation::new(
        "[outbox]\nfile_dir = \"outbox\"\n\
         [retention]\nclosed_cases_days = 30\nraw_mails_days = 90\nquarantine_days = 30\nsent_outbox_days = 30\n",
    );
    let old = mail(JANE, "Old printer", "old", "Old words oldwords5521.", "");
    assert_eq!(install.ingest_bytes("old.eml", &old)["case"], "CASE-1");
    install.ok(&["case", "close", "CASE-1", "--as", ANN]);
    let recent = mail(BOB, "New scanner", "new", "Recent words.", "");
    assert_eq!(install.ingest_bytes("new.eml", &recent)["case"], "CASE-2");
    install.ok(&["case", "close", "CASE-2", "--as", ANN]);
    let spam = mail(WENDY, "Cheap pills", "spam", "Buy spamwords8812 now.", "X-Spam-Flag: YES\r\n");
    assert_eq!(install.ingest_bytes("spam.eml", &spam)["outcome"], "quarantined");
    install.ok(&["outbox", "flush"]);
    let sent_copies = "SELECT count(*) FROM outbox WHERE case_id = 2 AND payload IS NOT NULL";
    assert!(install.count(sent_copies, []) > 0, "the sent notifications keep their copy");
    // CASE-1 was closed long ago; CASE-2 today, but its mail and notifications are old
    // (its raw copy goes, its thread entry stays); the spam waited long in the quarantine.
    {
        let db = rusqlite::Connection::open(install.path().join("var/casegate.db")).unwrap();
        let long_ago = "'2020-01-01T00:00:00.000Z'";
        db.execute_batch(&format!(
            "UPDATE cases SET updated_at = {long_ago} WHERE id = 1;
             UPDATE mails SET received_at = {long_ago} WHERE case_id = 2;
             UPDATE outbox SET created_at = {long_ago};
             UPDATE quarantine SET created_at = {long_ago};"
        ))
        .unwrap();
    }
    for words in ["oldwords5521", "spamwords8812"] {
        assert!(!files_containing(&install.path().join("var"), words).is_empty(), "{words} stored before");
    }
    let mut daemon = Daemon::start(&install, &[]);
    daemon.wait_log("Retention applied", 1, Duration::from_secs(30)).await;
    daemon.terminate().await;
    assert!(!install.run(&["cases", "show", "CASE-1", "--json"]).status.success(), "CASE-1 purged");
    let case2 = install.case("CASE-2");
    assert_eq!(case2["messages"][0]["body"], "Recent words.", "{case2}");
    assert_eq!(install.count("SELECT count(*) FROM mails WHERE case_id = 2 AND removed_at IS NOT NULL", []), 1);
    assert_eq!(install.count(sent_copies, []), 0, "the copies of old notifications are gone");
    assert_eq!(install.count("SELECT count(*) FROM quarantine", []), 0);
    let var = install.path().join("var");
    assert!(files_containing(&var, "oldwords5521").is_empty());
    assert!(files_containing(&var, "spamwords8812").is_empty());
    assert!(install.json(&["quarantine", "list", "--json"]).as_array().unwrap().is_empty());

    // Started again the same day, it does not run again.
    let mut daemon = Daemon::start(&install, &[]);
    daemon.wait_log("casegate running", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.terminate().await;
    assert_eq!(install.count("SELECT count(*) FROM audit WHERE action = 'retention-applied'", []), 1);
}

/// Every mail whose raw copy is kept reads back from its pack and matches its hash
/// (checked by `casegate::store::mails::raw`); how many.
fn verify_raw_mails(install: &Installation) -> usize {
    let db = install.db();
    let mut q = db.prepare("SELECT raw_sha256 FROM mails WHERE removed_at IS NULL").unwrap();
    let shas: Vec<String> = q.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let packs = install.path().join("var/raw");
    for sha in &shas {
        match casegate::store::mails::raw(casegate::store::db::Db::Sqlite(&db), &packs, sha) {
            Ok(Some(_)) => {}
            other => panic!("raw mail {sha}: {other:?}"),
        }
    }
    shas.len()
}

#[test]
fn compaction_killed_at_random_points_loses_no_live_mail() {
    use rand::Rng;
    let install = Installation::new("");
    let mut rng = rand::thread_rng();
    // Six packs (one per ingest run) of 30 mails each, of words that do not compress.
    for run in 0..6 {
        let files: Vec<PathBuf> = (0..30)
            .map(|i| {
                let words: String = (0..2500).map(|_| format!("{:08x} ", rng.gen::<u32>())).collect();
                let raw = mail(JANE, &format!("Mail {run}-{i}"), &format!("m{run}-{i}"), &words, "");
                let path = install.path().join(format!("m{run}-{i}.eml"));
                std::fs::write(&path, raw).unwrap();
                path
            })
            .collect();
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        install.ingest(&paths);
    }
    // Two mails in three are gone (as purges leave them: rows emptied, records in place).
    {
        let db = rusqlite::Connection::open(install.path().join("var/casegate.db")).unwrap();
        db.execute_batch(
            "UPDATE mails SET removed_at = '2026-01-01T00:00:00.000Z' WHERE id % 3 <> 0;
             UPDATE raw_mails SET data = x'', pack = NULL, pack_offset = NULL, pack_length = NULL
               WHERE sha256 IN (SELECT raw_sha256 FROM mails WHERE removed_at IS NOT NULL);",
        )
        .unwrap();
    }
    assert_eq!(verify_raw_mails(&install), 60);
    let size =
        |dir: &Path| -> u64 { std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum() };
    let before = size(&install.path().join("var/raw"));

    // Kills at random points; a run that finished before its kill (an earlier run may
    // have compacted everything) makes the next ones sooner, so kills keep landing while
    // a run is under way however fast the machine is.
    let (mut killed_running, mut upper) = (0, 80u64);
    for _ in 0..30 {
        if killed_running >= 6 {
            break;
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_casegate"))
            .arg("--config")
            .arg(&install.config)
            .arg("compact")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..=upper)));
        // SIGKILL: nothing of the process runs after it.
        let running = child.try_wait().unwrap().is_none();
        killed_running += running as u32;
        if !running {
            upper = (upper / 2).max(2);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(verify_raw_mails(&install), 60, "after a kill");
    }
    assert!(killed_running > 0, "no run was killed while it ran");
    let done = install.json(&["compact", "--json"]);
    assert_eq!(verify_raw_mails(&install), 60);
    let after = size(&install.path().join("var/raw"));
    assert!(after < before / 2, "{before} -> {after}: {done}");
    let again = install.json(&["compact", "--json"]);
    assert_eq!(again["bytes_won"], 0, "{again}");
}

/// Waits until the outbox folder holds a mail whose subject contains `needle`.
pub(crate) async fn outbox_mail(install: &Installation, needle: &str) -> casegate::parse::InboundMail {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, m)) = outbox_mails(install).into_iter().find(|(_, m)| m.subject.contains(needle)) {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "no mail {needle:?} in the outbox folder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_daemon_reminds_then_closes_a_case_left_resolved() {
    let install = install("127.0.0.1:9", "[workflow]\nauto_close_after_days = 10\nremind_after_days = 7\n");
    let open = mail(JANE, "Printer", "open", "It is broken.", "");
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let resolve = mail(ANN, "Re: [CASE-1] Printer", "resolve", "#resolve\r\nNew toner.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    let rw = || rusqlite::Connection::open(install.path().join("var/casegate.db")).unwrap();
    // Resolved eight days ago.
    let ago = (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    rw().execute("UPDATE audit SET at = ?1 WHERE case_id = 1", [&ago]).unwrap();
    rw().execute("UPDATE messages SET created_at = ?1 WHERE case_id = 1", [&ago]).unwrap();

    let mut daemon = Daemon::start(&install, &[]);
    daemon.wait_log("Reminded that a Resolved case closes itself", 1, Duration::from_secs(30)).await;
    let reminder = outbox_mail(&install, "or it closes on").await;
    assert_eq!(reminder.to[0].address.to_string(), JANE);
    assert!(reminder.subject.starts_with("[CASE-1] Accept, reject, or it closes on "), "{}", reminder.subject);
    // Remind at 7 days, close at 10: three days from the solution's eighth day are two;
    // the reminder gives the full three days' notice.
    let closes = (chrono::Utc::now() + chrono::Duration::days(3)).format("%-d %B %Y").to_string();
    assert!(reminder.text.contains(&format!("closes by itself on {closes}")), "{}", reminder.text);
    assert!(reminder.text.contains("#accept") && reminder.text.contains("#reject"), "{}", reminder.text);
    daemon.terminate().await;
    assert_eq!(install.case("CASE-1")["status"], "Resolved");

    // The promised day has come (and the sweep's next round, claimed a minute at a time).
    rw().execute("UPDATE close_reminders SET closes_at = ?1", [&ago]).unwrap();
    rw().execute("UPDATE periodic_jobs SET due_at = ?1 WHERE name = 'auto-close'", [&ago]).unwrap();
    let mut daemon = Daemon::start(&install, &[]);
    daemon.wait_log("Resolved case closed itself", 1, Duration::from_secs(30)).await;
    outbox_mail(&install, "How did we do?").await;
    daemon.terminate().await;
    let case = install.case("CASE-1");
    assert_eq!(case["status"], "Closed");
    let last = case["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "system", "{last}");
    let reminders = outbox_mails(&install).iter().filter(|(_, m)| m.subject.contains("or it closes on")).count();
    assert_eq!(reminders, 1, "one reminder");
}

#[tokio::test]
async fn compaction_runs_while_the_daemon_writes_mail() {
    let install = Installation::new("[[maildir]]\nname = \"local\"\npath = \"maildir\"\npoll_interval_ms = 50\n");
    for run in 0..3 {
        let files: Vec<PathBuf> = (0..20)
            .map(|i| {
                let raw = mail(JANE, &format!("Old {run}-{i}"), &format!("old{run}-{i}"), "Old words.", "");
                let path = install.path().join(format!("old{run}-{i}.eml"));
                std::fs::write(&path, raw).unwrap();
                path
            })
            .collect();
        install.ingest(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    }
    {
        let db = rusqlite::Connection::open(install.path().join("var/casegate.db")).unwrap();
        db.execute_batch(
            "UPDATE mails SET removed_at = '2026-01-01T00:00:00.000Z' WHERE id % 2 = 0;
             UPDATE raw_mails SET data = x'', pack = NULL, pack_offset = NULL, pack_length = NULL
               WHERE sha256 IN (SELECT raw_sha256 FROM mails WHERE removed_at IS NOT NULL);",
        )
        .unwrap();
    }
    let mut daemon = Daemon::start(&install, &[]);
    let maildir = install.path().join("maildir");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !maildir.join("tmp").is_dir() {
        assert!(std::time::Instant::now() < deadline, "the daemon made no Maildir");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reports = Vec::new();
    for i in 0..30 {
        let name = format!("17325252{i:02}.M{i}P1.host");
        let raw = mail(BOB, &format!("New {i}"), &format!("new-{i}"), "New words.", "");
        std::fs::write(maildir.join("tmp").join(&name), raw).unwrap();
        std::fs::rename(maildir.join("tmp").join(&name), maildir.join("new").join(&name)).unwrap();
        if i % 10 == 5 {
            reports.push(install.json(&["compact", "--json"]));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.wait_log("Mails marked maildir=local", 1, Duration::from_secs(30)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while install.count("SELECT count(*) FROM mails WHERE subject LIKE 'New %'", []) < 30 {
        assert!(std::time::Instant::now() < deadline, "the daemon did not take every mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reports.push(install.json(&["compact", "--json"]));
    daemon.terminate().await;
    assert_eq!(verify_raw_mails(&install), 30 + 30);
    let rewritten: u64 = reports.iter().map(|r| r["rewritten"].as_u64().unwrap()).sum();
    assert_eq!(rewritten, 3, "the three old packs, once: {reports:?}");
    assert!(reports.iter().any(|r| r["in_use"].as_u64().unwrap() > 0), "the daemon's pack is left alone: {reports:?}");
    assert!(reports[0]["bytes_won"].as_u64().unwrap() > 0, "{reports:?}");
}
