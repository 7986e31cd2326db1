//! `casegate ingest` against hostile and broken input: every mail ends with exactly one
//! outcome, nothing panics, the quarantine keeps what could not be applied, and the exit
//! codes and messages tell an operator what happened.

use serde_json::Value;

use crate::support::casegate::Installation;

fn mail(headers: &str, body: &str) -> Vec<u8> {
    format!("{headers}\r\nMIME-Version: 1.0\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n").into_bytes()
}

fn opener() -> Vec<u8> {
    mail(
        "From: Jane <jane@customer.example>\r\nTo: support@example.com\r\nSubject: VPN drops\r\nMessage-ID: <open-1@customer.example>",
        "The VPN drops every hour.",
    )
}

#[test]
fn a_mail_piped_on_stdin_opens_a_case() {
    let install = Installation::new("");
    let out = install.run_with_stdin(&["ingest", "--json", "-"], Some(&opener()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["file"], "-");
    assert_eq!(line["outcome"], "created");
    assert_eq!(line["case"], "CASE-1");
    assert_eq!(line["message_id"], "open-1@customer.example");
    assert_eq!(line["reason"], Value::Null);
}

#[test]
fn an_oversized_mail_is_quarantined_listed_and_releasable_after_raising_the_limit() {
    let install = Installation::new("[limits]\nmax_message_bytes = 2048");
    let big = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Logs attached\r\nMessage-ID: <big-1@customer.example>",
        &"log line that repeats\r\n".repeat(200),
    );
    let line = install.ingest_bytes("big.eml", &big);
    assert_eq!(line["outcome"], "quarantined");
    assert!(line["reason"].as_str().unwrap().starts_with("too-large:"), "{line}");
    assert_eq!(line["message_id"], "big-1@customer.example", "the Message-ID is still read from the headers");

    let listed = install.json(&["quarantine", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["reason"], "too-large");
    assert_eq!(listed[0]["from"], "jane@customer.example");
    assert_eq!(listed[0]["subject"], "Logs attached");
    assert_eq!(listed[0]["size"], big.len());

    // Raise the limit, then release: the same raw mail now opens a case.
    let text = std::fs::read_to_string(&install.config)
        .unwrap()
        .replace("max_message_bytes = 2048", "max_message_bytes = 1048576");
    std::fs::write(&install.config, text).unwrap();
    let id = listed[0]["id"].to_string();
    let released = install.json(&["quarantine", "release", &id, "--json"]);
    assert_eq!(released["outcome"], "created", "{released}");
    assert_eq!(install.case("CASE-1")["subject"], "Logs attached");
    assert_eq!(install.json(&["quarantine", "list", "--json"]), Value::Array(vec![]));
    let again = install.run(&["quarantine", "release", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already released"));
}

#[test]
fn the_sender_of_an_oversized_mail_is_told_once_and_robots_are_not() {
    let install = Installation::new("[limits]\nmax_message_bytes = 2048\n[outbox]\nfile_dir = \"out\"");
    let padding = "log line that repeats\r\n".repeat(200);
    let person = mail(
        "From: Jane <jane@customer.example>\r\nTo: support@example.com\r\nSubject: Logs attached\r\nMessage-ID: <big-2@customer.example>",
        &padding,
    );
    let robot = mail(
        "From: monitor@customer.example\r\nTo: support@example.com\r\nSubject: Nightly report\r\nAuto-Submitted: auto-generated\r\nMessage-ID: <big-3@customer.example>",
        &padding,
    );
    let headerless = [b"\r\n".as_slice(), padding.as_bytes()].concat();
    for (name, raw) in [("person.eml", &person), ("robot.eml", &robot), ("headerless.eml", &headerless)] {
        assert_eq!(install.ingest_bytes(name, raw)["outcome"], "quarantined", "{name}");
    }

    let outbox = install.json(&["outbox", "list", "--json"]);
    let rows = outbox.as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the person is answered: {outbox}");
    assert_eq!(rows[0]["to"][0], "jane@customer.example");
    assert_eq!(rows[0]["event"], "not-applied");

    // The answer says why, in words, and threads with her mail.
    install.ok(&["outbox", "flush"]);
    let files: Vec<_> = std::fs::read_dir(install.path().join("out")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let answer = casegate::parse::parse(&std::fs::read(&files[0]).unwrap()).expect("a well-formed mail");
    assert!(answer.text.contains("larger than the 2 KB we accept"), "{}", answer.text);
    assert!(answer.text.contains("\"Logs attached\""), "names her mail: {}", answer.text);
    assert_eq!(answer.in_reply_to, ["big-2@customer.example"]);
}

#[test]
fn garbage_and_headerless_input_is_quarantined_not_dropped() {
    let install = Installation::new("");
    let inputs: [(&str, &[u8]); 4] = [
        ("empty.eml", b""),
        ("binary.eml", b"\x00\x01\x02\xff\xfe\r\n\r\n\x00"),
        ("no-from.eml", b"To: support@example.com\r\nSubject: who am I\r\n\r\nhello\r\n"),
        (
            "broken-mime.eml",
            b"From: jane@customer.example\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n--\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n",
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, raw) in inputs {
        outcomes.push(install.ingest_bytes(name, raw));
    }
    assert_eq!(outcomes[0]["outcome"], "quarantined");
    assert_eq!(outcomes[1]["outcome"], "quarantined");
    assert!(outcomes[1]["reason"].as_str().unwrap().starts_with("unparseable"), "{}", outcomes[1]);
    assert_eq!(outcomes[2]["outcome"], "quarantined");
    assert!(outcomes[2]["reason"].as_str().unwrap().starts_with("no-sender"), "{}", outcomes[2]);
    // Broken MIME still has a sender and a subject: it becomes a case, best effort.
    assert_eq!(outcomes[3]["outcome"], "created", "{}", outcomes[3]);
    let journal = install.count("SELECT count(*) FROM mails", []);
    let raws = install.count("SELECT count(*) FROM raw_mails", []);
    assert_eq!((journal, raws), (4, 4), "every input is journalled with its raw bytes");
}

#[test]
fn header_injection_in_the_subject_stays_one_line() {
    let install = Installation::new("");
    let raw = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: =?UTF-8?B?SGVscA0KQmNjOiBldmlsQG90aGVyLmV4YW1wbGU=?=\r\nMessage-ID: <inj@customer.example>",
        "hi",
    );
    assert_eq!(install.ingest_bytes("inj.eml", &raw)["outcome"], "created");
    let case = install.case("CASE-1");
    assert_eq!(case["subject"], "Help Bcc: evil@other.example");
    assert_eq!(case["watchers"], Value::Array(vec![]), "an injected Bcc must not become a watcher");
}

#[test]
fn hostile_attachment_names_are_made_safe_and_bytes_stored_by_hash() {
    let install = Installation::new("");
    let raw = format!(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: files\r\nMessage-ID: <files@customer.example>\r\n\
         Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nsee files\r\n\
         --X\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"../../../etc/passwd\"\r\n\r\nroot:x:0:0\r\n\
         --X\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice\u{202E}fdp.exe\"\r\n\r\nMZ\r\n\
         --X\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"{}.txt\"\r\n\r\nlong\r\n--X--\r\n",
        "a".repeat(400)
    );
    assert_eq!(install.ingest_bytes("files.eml", raw.as_bytes())["outcome"], "created");
    let case = install.case("CASE-1");
    let atts = case["messages"][0]["attachments"].as_array().unwrap();
    let names: Vec<&str> = atts.iter().map(|a| a["filename"].as_str().unwrap()).collect();
    assert_eq!(names[0], "passwd");
    assert_eq!(names[1], "invoicefdp.exe", "bidi override removed, so the real extension shows");
    assert!(names[2].len() <= 200 && names[2].ends_with(".txt"), "{}", names[2]);
    let sha = atts[0]["sha256"].as_str().unwrap();
    assert_eq!(install.blob(sha), b"root:x:0:0");
    assert!(!install.path().join("etc").exists() && !install.path().join("var/etc").exists());
}

#[test]
fn mail_from_our_own_address_never_opens_a_case() {
    let install = Installation::new("");
    let raw = mail(
        "From: support@example.com\r\nTo: support@example.com\r\nSubject: ping\r\nMessage-ID: <loop@example.com>",
        "loop",
    );
    let line = install.ingest_bytes("loop.eml", &raw);
    assert_eq!(line["outcome"], "ignored");
    assert!(line["reason"].as_str().unwrap().starts_with("loop"), "{line}");
    assert_eq!(install.json(&["cases", "list", "--json"]), Value::Array(vec![]));
}

#[test]
fn forged_staff_mail_is_treated_as_a_customers_when_authentication_is_required() {
    let install = Installation::new("authserv_id = \"mx.example.com\"");
    install.ingest_bytes("open.eml", &opener());
    // Claims to be staff, no Authentication-Results from our server: a stranger to CASE-1.
    let forged = mail(
        "From: ann@support.example.com\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] VPN drops\r\nMessage-ID: <forged@x.example>",
        "Closing this.",
    );
    let line = install.ingest_bytes("forged.eml", &forged);
    assert_eq!(line["outcome"], "quarantined");
    assert!(line["reason"].as_str().unwrap().starts_with("unauthenticated-staff: ann@support.example.com"), "{line}");
    // A new case "from" Ann opens as any mail would, but is not acknowledged to her either.
    let forged_new = mail(
        "From: ann@support.example.com\r\nTo: support@example.com\r\nSubject: Password reset\r\nMessage-ID: <forged-new@x.example>",
        "Please send me the admin password.",
    );
    assert_eq!(install.ingest_bytes("forged-new.eml", &forged_new)["outcome"], "created");
    // Nobody is answered: the real Ann did not write these.
    let outbox = install.json(&["outbox", "list", "--json"]);
    let to_ann = outbox.as_array().unwrap().iter().filter(|r| r["to"][0] == "ann@support.example.com").count();
    assert_eq!(to_ann, 0, "{outbox}");
    // The same address, authenticated by our server, is staff.
    let real = mail(
        "From: ann@support.example.com\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] VPN drops\r\nMessage-ID: <real@support.example.com>\r\n\
         Authentication-Results: mx.example.com; dkim=pass header.d=support.example.com; dmarc=pass header.from=support.example.com",
        "We are looking into it.",
    );
    assert_eq!(install.ingest_bytes("real.eml", &real)["outcome"], "replied");
    let case = install.case("CASE-1");
    assert_eq!(case["messages"][1]["kind"], "staff");
}

#[test]
fn a_reply_to_a_closed_case_opens_a_new_case_that_links_it() {
    let install = Installation::new("");
    install.ingest_bytes("open.eml", &opener());
    install.execute("UPDATE cases SET status = 'closed' WHERE id = 1", []);
    let reply = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] VPN drops\r\nMessage-ID: <after-close@customer.example>",
        "It is back.",
    );
    let line = install.ingest_bytes("reply.eml", &reply);
    assert_eq!(line["outcome"], "created");
    assert_eq!(line["case"], "CASE-2");
    assert!(line["reason"].as_str().unwrap().contains("CASE-1 is closed"), "{line}");
    assert_eq!(install.case("CASE-2")["linked_case"], "CASE-1");
    assert_eq!(install.case("CASE-1")["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn errors_say_what_is_wrong_with_exit_codes_1_and_2() {
    let install = Installation::new("");
    // A missing file is reported, the others are still processed, exit code 1.
    let good = install.path().join("good.eml");
    std::fs::write(&good, opener()).unwrap();
    let out = install.run(&["ingest", "missing.eml", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.eml"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created CASE-1"));
    // Usage errors: exit code 2.
    assert_eq!(install.run(&["cases", "show", "TICKET-1"]).status.code(), Some(2));
    assert_eq!(install.run(&["cases", "list", "--status", "Pending"]).status.code(), Some(2));
    assert_eq!(install.run(&["ingest"]).status.code(), Some(2));
    // A case that does not exist: a runtime failure with a hint.
    let out = install.run(&["cases", "show", "CASE-9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case CASE-9"));
    // A bad config names the file and the key, exit code 2.
    let bad = Installation::with_config("system_addresses = [\"support@example.com\"]\nstaff = [\"not-an-address\"]\n");
    let out = bad.run(&["cases", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("casegate.toml") && err.contains("staff[0]"), "{err}");
}

#[test]
fn help_is_available_for_every_command() {
    let install = Installation::new("");
    for args in [
        &["--help"][..],
        &["ingest", "--help"],
        &["cases", "--help"],
        &["cases", "list", "--help"],
        &["quarantine", "release", "--help"],
    ] {
        let out = install.run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn a_mail_copied_to_hundreds_adds_only_the_configured_number_of_watchers() {
    let install = Installation::new("[limits]\nmax_watchers_per_mail = 5");
    let cc =
        |from: usize, to: usize| (from..to).map(|i| format!("p{i}@elsewhere.example")).collect::<Vec<_>>().join(", ");
    let opener = mail(
        &format!(
            "From: jane@customer.example\r\nTo: support@example.com\r\nCc: {}\r\nSubject: Mass mail\r\nMessage-ID: <mass-1@customer.example>",
            cc(0, 300)
        ),
        "Everyone should know.",
    );
    assert_eq!(install.ingest_bytes("mass.eml", &opener)["outcome"], "created");
    let watchers = |i: &Installation| i.case("CASE-1")["watchers"].as_array().unwrap().len();
    assert_eq!(watchers(&install), 5);

    // A reply copying others, and a #watch list: five more each, no more.
    let reply = mail(
        &format!(
            "From: jane@customer.example\r\nTo: support@example.com\r\nCc: {}\r\nSubject: Re: [CASE-1] Mass mail\r\nMessage-ID: <mass-2@customer.example>",
            cc(300, 320)
        ),
        "More people.",
    );
    assert_eq!(install.ingest_bytes("reply.eml", &reply)["outcome"], "replied");
    assert_eq!(watchers(&install), 10);
    let addresses: Vec<String> = (400..410).map(|i| format!("w{i}@elsewhere.example")).collect();
    let command = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Re: [CASE-1] Mass mail\r\nMessage-ID: <mass-3@customer.example>",
        &format!("#watch {}", addresses.join(" ")),
    );
    let line = install.ingest_bytes("watch.eml", &command);
    assert_eq!(line["outcome"], "command", "{line}");
    assert_eq!(watchers(&install), 15);

    // Each mail that hit the limit says so once in the audit log.
    let details: Vec<String> = install
        .rows("SELECT detail FROM audit WHERE action = 'watchers-limited' ORDER BY id", [])
        .into_iter()
        .map(|r| r[0].clone().expect("a detail"))
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details[0].starts_with("295 more addresses were not added"), "{details:?}");
    assert!(details[1].starts_with("15 more") && details[2].starts_with("5 more"), "{details:?}");
}

/// Issue trackers, some mobile clients and mail re-sent after an edit reuse one Message-ID
/// for different mails: each is processed, and the reuse is audited. A reply that points
/// only at the shared Message-ID cannot tell which case it answers, so it opens its own.
#[test]
fn mails_that_reuse_a_message_id_with_other_content_are_each_processed() {
    let install = Installation::new("");
    let first = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Printer jams\r\nMessage-ID: <same@tracker.example>",
        "The printer jams on every page.",
    );
    let second = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Scanner is slow\r\nMessage-ID: <same@tracker.example>",
        "The scanner takes a minute a page.",
    );
    assert_eq!(install.ingest_bytes("first.eml", &first)["outcome"], "created");
    let line = install.ingest_bytes("second.eml", &second);
    assert_eq!(line["outcome"], "created", "{line}");
    assert_eq!(line["case"], "CASE-2");
    assert_eq!(install.case("CASE-2")["subject"], "Scanner is slow");

    let audit = install.rows("SELECT detail FROM audit WHERE action = 'message-id-reused'", []);
    let audit = audit.first().and_then(|r| r[0].clone()).expect("the reuse is audited");
    assert!(audit.contains("mail #1 (CASE-1)") && audit.contains("no longer routes"), "{audit}");

    let reply = mail(
        "From: jane@customer.example\r\nTo: support@example.com\r\nSubject: Re: your mail\r\n\
         Message-ID: <reply-1@customer.example>\r\nIn-Reply-To: <same@tracker.example>",
        "Any news?",
    );
    let line = install.ingest_bytes("reply.eml", &reply);
    assert_eq!(line["outcome"], "created", "neither case may get a reply meant for the other: {line}");
    assert_eq!(install.case("CASE-1")["messages"].as_array().unwrap().len(), 1);
    assert_eq!(install.case("CASE-2")["messages"].as_array().unwrap().len(), 1);
}

/// One mail delivered to two support addresses, or through two relays, differs only in
/// what the transport added (Received, Delivered-To) and how it encoded the body: it is one
/// mail, processed once.
#[test]
fn one_mail_through_two_relays_is_processed_once() {
    let install = Installation::new("");
    let headers = "From: jane@customer.example\r\nTo: support@example.com, help@example.com\r\n\
                   Subject: Grüße vom Drucker\r\nMessage-ID: <twice@customer.example>\r\n\
                   Content-Type: text/plain; charset=utf-8";
    let direct = mail(&format!("{headers}\r\nContent-Transfer-Encoding: 8bit"), "Der Drucker druckt nur noch Grüße.");
    let relayed = mail(
        &format!(
            "Received: from relay.example by mx.example.com; Mon, 23 Nov 2026 10:00:05 +0000\r\n\
             Delivered-To: help@example.com\r\n{headers}\r\nContent-Transfer-Encoding: quoted-printable"
        ),
        "Der Drucker druckt nur noch Gr=C3=BC=C3=9Fe.",
    );
    assert_eq!(install.ingest_bytes("direct.eml", &direct)["outcome"], "created");
    let line = install.ingest_bytes("relayed.eml", &relayed);
    assert_eq!(line["outcome"], "duplicate", "{line}");
    assert_eq!(line["case"], "CASE-1");
}
