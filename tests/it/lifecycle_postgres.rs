//! The data lifecycle on PostgreSQL, through the real binary and a real server: `casegate
//! purge` and `casegate erase` remove the rows, the raw mails (`raw_mails.data`) and the
//! attachments (`blobs`) they say, and after their `VACUUM FULL` what was removed is in
//! none of the cluster's files (outside the write-ahead log, which is the server's — see
//! docs/data-lifecycle.md); a Resolved case is reminded, then closes itself.
//!
//! Every test gets a database of its own on the harness's one cluster
//! (`support::postgres`); without PostgreSQL installed, the tests say so and pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::lifecycle::{a_closed_and_an_open_case, outbox_mail, tomorrow, with_file};
use crate::support::casegate::{Daemon, Installation};
use crate::support::postgres;
use crate::support::survey::by_mail::{install, mail, outbox_mails, ANN, BOB};

/// The person erased: an address no other test uses, so no other database of the shared
/// cluster holds it.
const PIA: &str = "pia.eraseme7730@customer.example";
const WENDY: &str = "wendy@other.example";

/// An installation (survey on, outbox to files) whose data lives in the database `url`.
fn on_postgres(url: &str, extra: &str) -> Installation {
    install("127.0.0.1:9", &format!("[storage]\ndatabase_url = \"{url}\"\nnode = \"one\"\n{extra}"))
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().expect("a database name")
}

/// One value from the database `url` names, as psql prints it.
fn query(url: &str, sql: &str) -> String {
    postgres::cluster().expect("the cluster runs: the test has a database").psql(db_name(url), sql)
}

fn count(url: &str, sql: &str) -> i64 {
    query(url, sql).parse().unwrap_or_else(|e| panic!("{sql}: not a number: {e}"))
}

/// Rows of casegate's tables whose text (every column, as PostgreSQL prints the row)
/// contains `needle`, ASCII case ignored, as `table: n`; and the byte columns (raw mails,
/// attachments) that contain it.
fn rows_containing(url: &str, needle: &str) -> Vec<String> {
    let tables = query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    let mut hits = Vec::new();
    for table in tables.lines() {
        let n = count(url, &format!("SELECT count(*) FROM {table} t WHERE t::text ILIKE '%{needle}%'"));
        if n > 0 {
            hits.push(format!("{table}: {n}"));
        }
    }
    for (table, column) in [("raw_mails", "data"), ("blobs", "data")] {
        let sql =
            format!("SELECT count(*) FROM {table} WHERE position(convert_to('{needle}', 'UTF8') IN {column}) > 0");
        let n = count(url, &sql);
        if n > 0 {
            hits.push(format!("{table}.{column}: {n}"));
        }
    }
    hits
}

/// Every file of the cluster's data directory that contains `needle` (ASCII case
/// ignored), after a checkpoint wrote every changed page: all but the write-ahead log
/// (`pg_wal`) and the directories of the other tests' databases. Files the server removes
/// meanwhile are skipped.
fn cluster_files_containing(url: &str, needle: &str) -> Vec<PathBuf> {
    let cluster = postgres::cluster().expect("the cluster runs");
    cluster.psql(db_name(url), "CHECKPOINT");
    let data = cluster.data_dir();
    let ours = query(url, "SELECT oid FROM pg_database WHERE datname = current_database()");
    let skip = |p: &Path| {
        p == data.join("pg_wal") || (p.parent() == Some(&data.join("base")) && p.file_name().unwrap() != ours.as_str())
    };
    let needle = needle.to_ascii_lowercase().into_bytes();
    let mut hits = Vec::new();
    let mut todo = vec![data.clone()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if skip(&path) {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.to_ascii_lowercase().windows(needle.len()).any(|w| w == needle.as_slice()) {
                    hits.push(path);
                }
            }
        }
    }
    hits
}

/// Whether the write-ahead log still holds `needle` (printed, not asserted: the server
/// recycles its segments when it will, and casegate cannot overwrite them).
fn note_wal(url: &str, needle: &str) {
    let wal = postgres::cluster().expect("the cluster runs").data_dir().join("pg_wal");
    let needle_bytes = needle.as_bytes();
    let holding = std::fs::read_dir(&wal)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read(e.path()).is_ok_and(|b| b.windows(needle_bytes.len()).any(|w| w == needle_bytes))
                })
                .count()
        })
        .unwrap_or(0);
    println!("{}: {holding} write-ahead log segment(s) still hold {needle:?}", db_name(url));
}

#[test]
fn on_postgres_purge_removes_rows_raw_mails_and_attachments_and_vacuum_full_their_bytes() {
    let Some(url) = postgres::database() else { return };
    let install = on_postgres(&url, "");
    let phrase = "amberlynx6602";
    a_closed_and_an_open_case(&install, phrase);
    install.ok(&["outbox", "flush"]);
    let case2 = install.case("CASE-2");
    // The test can fail: before the purge the words are in rows and on disk.
    for what in ["subject", "body", "file", "comment"] {
        let needle = format!("{phrase}-{what}");
        assert!(!rows_containing(&url, &needle).is_empty(), "{what} stored before");
        assert!(!cluster_files_containing(&url, &needle).is_empty(), "{what} on disk before");
    }
    assert_eq!(count(&url, "SELECT count(*) FROM blobs"), 2, "the file only CASE-1 has, and the shared one");

    let dry = install.json(&["purge", "--closed-before", &tomorrow(), "--dry-run", "--json"]);
    assert_eq!(dry["cases"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(install.case("CASE-1")["status"], "Closed", "a dry run changes nothing");
    assert_eq!(count(&url, "SELECT count(*) FROM blobs"), 2, "a dry run changes nothing");

    let done = install.json(&["purge", "--closed-before", &tomorrow(), "--json"]);
    assert_eq!(done["removed"], dry["removed"], "the dry run counted exactly what went");
    assert_eq!(done["cases"], dry["cases"]);
    assert_eq!(done["removed"]["cases"], 1);
    assert_eq!(done["removed"]["attachments"], 2, "{done}");
    assert_eq!(done["overwritten"]["files"], 1, "the shared file stays: {done}");
    assert!(done["overwritten"]["raw_records"].as_u64().unwrap() >= 4, "CASE-1's mails emptied: {done}");
    let reclaimed = &done["reclaimed"];
    assert!(reclaimed["database_bytes_after"].as_u64().unwrap() > 0, "{done}");
    assert!(!install.run(&["cases", "show", "CASE-1", "--json"]).status.success(), "CASE-1 is gone");
    assert_eq!(install.case("CASE-2"), case2, "the other case shows as before");

    for (table, column) in [
        ("cases", "id"),
        ("messages", "case_id"),
        ("participants", "case_id"),
        ("outbox", "case_id"),
        ("survey_answers", "case_id"),
        ("survey_invitations", "case_id"),
        ("mails", "case_id"),
    ] {
        assert_eq!(count(&url, &format!("SELECT count(*) FROM {table} WHERE {column} = 1")), 0, "{table}");
    }
    let kept_bytes = "SELECT count(*) FROM mails m JOIN raw_mails r ON r.sha256 = m.raw_sha256
                      WHERE m.removed_at IS NOT NULL AND length(r.data) > 0";
    assert_eq!(count(&url, kept_bytes), 0, "no removed mail keeps its bytes");
    assert_eq!(count(&url, "SELECT count(*) FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM attachments)"), 0);
    assert_eq!(count(&url, "SELECT count(*) FROM blobs"), 1, "the shared file stays");
    for what in ["subject", "body", "file", "comment"] {
        let needle = format!("{phrase}-{what}");
        assert_eq!(rows_containing(&url, &needle), Vec::<String>::new(), "the purged case's {what} in rows");
        let hits = cluster_files_containing(&url, &needle);
        assert!(hits.is_empty(), "the purged case's {what} is still in the cluster's files {hits:?}");
    }
    note_wal(&url, &format!("{phrase}-body"));
    assert_eq!(count(&url, "SELECT count(*) FROM audit WHERE case_id = 1 AND action = 'case-purged'"), 1);
}

/// Pia opens CASE-1 (Wendy in Cc) with a file, staff names her in an answer, Bob opens
/// CASE-2 with her in Cc; CASE-1 is resolved, she accepts and comments in the survey.
fn pias_cases(install: &Installation, phrase: &str) {
    let open = with_file(
        PIA,
        "Printer on fire",
        "open",
        &format!("It burns, {phrase}-body."),
        "fire.txt",
        &format!("smoke {phrase}-file"),
        &format!("Cc: <{WENDY}>\r\n"),
    );
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let staff = mail(ANN, "Re: [CASE-1] Printer on fire", "staff", &format!("Called {PIA} back."), "");
    assert_eq!(install.ingest_bytes("staff.eml", &staff)["outcome"], "replied");
    let bobs = mail(BOB, "Scanner jams", "bob", "It jams.", &format!("Cc: <{PIA}>\r\n"));
    assert_eq!(install.ingest_bytes("bob.eml", &bobs)["case"], "CASE-2");
    let resolve = mail(ANN, "Re: [CASE-1] Printer on fire", "resolve", "#resolve\r\nWater.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    let accept = mail(PIA, "Re: [CASE-1] Printer on fire #accept", "accept", "Out now.", "");
    assert_eq!(install.ingest_bytes("accept.eml", &accept)["outcome"], "command");
    install.ok(&["outbox", "flush"]);
    let survey = outbox_mails(install).into_iter().find(|(_, m)| m.subject.contains("How did we do?")).expect("survey");
    let survey_id = survey.1.message_id.clone().expect("survey Message-ID");
    let answer = mail(
        PIA,
        "Re: [CASE-1] How did we do?",
        "answer",
        &format!("5 yes {phrase}-comment"),
        &format!("In-Reply-To: <{survey_id}>\r\n"),
    );
    assert_eq!(install.ingest_bytes("answer.eml", &answer)["outcome"], "command");
}

#[test]
fn on_postgres_erase_leaves_only_the_pseudonym_in_rows_and_no_byte_in_the_cluster_files() {
    let Some(url) = postgres::database() else { return };
    let install = on_postgres(&url, "");
    let phrase = "cobaltheron2258";
    pias_cases(&install, phrase);
    let needles = [PIA.to_string(), format!("{phrase}-body"), format!("{phrase}-file"), format!("{phrase}-comment")];
    for needle in &needles {
        assert!(!rows_containing(&url, needle).is_empty(), "{needle} stored before");
        assert!(!cluster_files_containing(&url, needle).is_empty(), "{needle} on disk before");
    }

    let dry = install.json(&["erase", "--address", PIA, "--dry-run", "--json"]);
    assert_eq!(install.case("CASE-1")["reported_by"], PIA, "a dry run changes nothing");
    assert!(!rows_containing(&url, PIA).is_empty(), "a dry run changes nothing");

    let done = install.json(&["erase", "--address", PIA, "--json"]);
    let pseudonym = done["pseudonym"].as_str().expect("a pseudonym").to_string();
    assert!(pseudonym.starts_with("erased-") && pseudonym.ends_with("@erased.invalid"), "{pseudonym}");
    for key in ["cases", "erased", "mails_naming_them", "notifications_naming_them", "unreadable_mails"] {
        assert_eq!(done[key], dry[key], "the dry run listed exactly what went ({key})");
    }
    assert_eq!(done["erased"]["entries"], 2, "the opening mail and the accepting one: {done}");
    assert_eq!(done["erased"]["files"], 1, "{done}");
    assert!(done["erased"]["kept_in_identifiers"].as_array().unwrap().is_empty(), "{done}");
    assert_eq!(done["overwritten"]["files"], 1, "her file's blob row deleted: {done}");

    for needle in &needles {
        assert_eq!(rows_containing(&url, needle), Vec::<String>::new(), "{needle} left in rows");
        let hits = cluster_files_containing(&url, needle);
        assert!(hits.is_empty(), "{needle:?} is still in the cluster's files {hits:?}");
    }
    note_wal(&url, PIA);
    assert!(!rows_containing(&url, &pseudonym).is_empty(), "the pseudonym stands in for her");
    let kept_bytes = "SELECT count(*) FROM mails m JOIN raw_mails r ON r.sha256 = m.raw_sha256
                      WHERE m.removed_at IS NOT NULL AND length(r.data) > 0";
    assert_eq!(count(&url, kept_bytes), 0, "no removed mail keeps its bytes");
    assert_eq!(count(&url, "SELECT count(*) FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM attachments)"), 0);

    let case1 = install.case("CASE-1");
    assert_eq!(case1["reported_by"], pseudonym.as_str());
    assert_eq!(case1["messages"][0]["body"], "(erased)");
    assert_eq!(case1["watchers"], serde_json::json!([WENDY]), "other people stay");
    let case2 = install.case("CASE-2");
    assert_eq!(case2["reported_by"], BOB);
    assert!(!case2["watchers"].to_string().contains("erased"), "a watcher leaves: {case2}");
    assert_eq!(count(&url, "SELECT count(*) FROM audit WHERE action = 'person-erased'"), 1);
    let again = install.json(&["erase", "--address", PIA, "--dry-run", "--json"]);
    assert_eq!(again["cases"], Value::Array(vec![]), "nothing left to erase: {again}");
}

#[tokio::test]
async fn on_postgres_the_daemon_reminds_then_closes_a_case_left_resolved() {
    let Some(url) = postgres::database() else { return };
    let install = on_postgres(&url, "[workflow]\nauto_close_after_days = 10\nremind_after_days = 7\n");
    let open = mail(BOB, "Printer", "open", "It is broken.", "");
    assert_eq!(install.ingest_bytes("open.eml", &open)["case"], "CASE-1");
    let resolve = mail(ANN, "Re: [CASE-1] Printer", "resolve", "#resolve\r\nNew toner.", "");
    assert_eq!(install.ingest_bytes("resolve.eml", &resolve)["outcome"], "command");
    // Resolved eight days ago.
    let ago = (chrono::Utc::now() - chrono::Duration::days(8)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    query(&url, &format!("UPDATE audit SET at = '{ago}' WHERE case_id = 1"));
    query(&url, &format!("UPDATE messages SET created_at = '{ago}' WHERE case_id = 1"));

    let mut daemon = Daemon::start(&install, &[]);
    daemon.wait_log("Reminded that a Resolved case closes itself", 1, Duration::from_secs(30)).await;
    let reminder = outbox_mail(&install, "or it closes on").await;
    assert_eq!(reminder.to[0].address.to_string(), BOB);
    daemon.terminate().await;
    assert_eq!(install.case("CASE-1")["status"], "Resolved");
    assert_eq!(count(&url, "SELECT count(*) FROM close_reminders WHERE case_id = 1"), 1);
    assert_eq!(count(&url, "SELECT count(*) FROM periodic_jobs WHERE name = 'auto-close' AND node = 'one'"), 1);

    // The promised day has come, and the sweep's next round.
    query(&url, &format!("UPDATE close_reminders SET closes_at = '{ago}'"));
    query(&url, &format!("UPDATE periodic_jobs SET due_at = '{ago}' WHERE name = 'auto-close'"));
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
