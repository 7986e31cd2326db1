//! `casegate migrate-store`: an installation on SQLite — cases with files, a closed case
//! with its survey answer, queued notifications, a quarantined mail — copied into an empty
//! PostgreSQL database through the real binary. Afterwards the same installation on
//! PostgreSQL shows exactly what it showed on SQLite, sends the notifications that were
//! waiting (with their files, read from the database), releases the quarantined mail (its
//! raw copy read from the database) into the next case number, and a second copy into the
//! now used database is refused.

use serde_json::Value;

use crate::lifecycle::a_closed_and_an_open_case;
use crate::support::casegate::Installation;
use crate::support::postgres;
use crate::support::survey::by_mail::{install, outbox_mails, ANN};

/// A password in the URL: the server trusts loopback and ignores it, casegate must never
/// show it.
const PASSWORD: &str = "migr8-secret-Pw";

/// What an operator looks at, as JSON: the same on both stores after the move.
fn views(install: &Installation) -> Vec<(String, Value)> {
    let mut views = Vec::new();
    for args in [
        vec!["cases", "list", "--json"],
        vec!["cases", "show", "CASE-1", "--json"],
        vec!["cases", "show", "CASE-2", "--json"],
        vec!["quarantine", "list", "--json"],
        vec!["outbox", "list", "--json"],
    ] {
        views.push((args.join(" "), install.json(&args)));
    }
    views
}

#[test]
fn migrate_store_copies_an_sqlite_installation_into_postgres_and_it_works_on_there() {
    let Some(url) = postgres::database() else { return };
    let url = url.replacen("@127.0.0.1", &format!(":{PASSWORD}@127.0.0.1"), 1);
    assert!(url.contains(PASSWORD), "{url}");
    let sqlite = install(
        "127.0.0.1:9",
        &format!("[limits]\nmax_message_bytes = 4096\n[notify]\nstaff_recipients = [\"{ANN}\"]\n"),
    );
    let phrase = "migrateowl4471";
    a_closed_and_an_open_case(&sqlite, phrase);
    let big = crate::lifecycle::with_file(
        crate::support::survey::by_mail::BOB,
        "Full log",
        "big",
        "The whole log.",
        "full.log",
        &"a log line that repeats itself\r\n".repeat(200),
        "",
    );
    assert_eq!(sqlite.ingest_bytes("big.eml", &big)["outcome"], "quarantined");
    let queued = sqlite.json(&["outbox", "list", "--json"]);
    let waiting = queued.as_array().unwrap().iter().filter(|r| r["status"] == "queued").count();
    assert!(waiting > 0, "notifications wait to be sent: {queued}");
    let before = views(&sqlite);

    let out = sqlite.run(&["migrate-store", "--to", &url, "--json"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate-store failed:\n{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD), "the password is shown:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["verified"], true, "{report}");
    let rows = |table: &str| {
        report["tables"].as_array().unwrap().iter().find(|t| t["table"] == table).unwrap_or_else(|| panic!("{table}"))
            ["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("cases"), 2);
    assert_eq!(rows("survey_answers"), 1);
    assert_eq!(rows("quarantine"), 1);
    assert_eq!(rows("mails") as i64, sqlite.count("SELECT count(*) FROM mails", []));
    assert_eq!(rows("audit") as i64, sqlite.count("SELECT count(*) FROM audit", []));
    assert_eq!(report["raw_mails"]["copied"].as_i64(), Some(sqlite.count("SELECT count(*) FROM raw_mails", [])));
    // printer.txt, settings.txt (one file for two cases), full.log is quarantined: two files.
    assert_eq!(report["attachments"]["files"], 2, "{report}");

    // The same installation on PostgreSQL: its own outbox folder, to see what it sends.
    let pg = sqlite.copy();
    std::fs::remove_dir_all(pg.path().join("outbox")).unwrap();
    std::fs::remove_dir_all(pg.path().join("var")).unwrap();
    let config = std::fs::read_to_string(&pg.config).unwrap();
    std::fs::write(&pg.config, format!("{config}\n[storage]\ndatabase_url = \"{url}\"\nnode = \"one\"\n")).unwrap();
    let after = views(&pg);
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        assert_eq!(was, is, "`casegate {what}` differs after the move");
    }

    // What waited is sent from the new store, with the file it reports.
    pg.ok(&["outbox", "flush"]);
    let sent = outbox_mails(&pg);
    assert_eq!(sent.len(), waiting, "every notification that waited is sent once");
    let shared = b"driver settings shared by two cases";
    let with_file = sent
        .iter()
        .filter(|(_, m)| m.attachments.iter().any(|a| a.filename == "settings.txt" && a.data.starts_with(shared)))
        .count();
    assert!(with_file > 0, "a notification carries the file, read from PostgreSQL");

    // The quarantined mail's raw copy comes out of PostgreSQL; new cases go on from the
    // last number.
    let text =
        std::fs::read_to_string(&pg.config).unwrap().replace("max_message_bytes = 4096", "max_message_bytes = 1048576");
    std::fs::write(&pg.config, text).unwrap();
    let id = after[3].1[0]["id"].to_string();
    let released = pg.json(&["quarantine", "release", &id, "--json"]);
    assert_eq!(released["outcome"], "created", "{released}");
    assert_eq!(released["case"], "CASE-3", "{released}");
    assert_eq!(pg.case("CASE-3")["subject"], "Full log");

    // A second copy into the database now in use is refused, and changes nothing.
    let again = sqlite.run(&["migrate-store", "--to", &url]);
    assert_eq!(again.status.code(), Some(1));
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("is in use") && why.contains("empty database"), "{why}");
    assert!(!why.contains(PASSWORD), "{why}");
    assert_eq!(pg.json(&["cases", "list", "--json"]).as_array().unwrap().len(), 3);
}

#[test]
fn migrate_store_says_what_is_missing() {
    let sqlite = Installation::new("");
    let none = sqlite.run(&["migrate-store"]);
    assert_eq!(none.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&none.stderr).contains("--to postgres://"));
    let not_pg = sqlite.run(&["migrate-store", "--to", "mysql://db/x"]);
    assert_eq!(not_pg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_pg.stderr).contains("postgres://"));
    let empty = sqlite.run(&["migrate-store", "--to", "postgres://127.0.0.1:9/none"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("no SQLite store"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
}
