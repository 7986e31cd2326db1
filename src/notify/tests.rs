//! `enqueue` against a real database, through the real ingest path.

use std::sync::Arc;

use super::*;
use crate::ingest::{Gateway, Origin};
use crate::store::Store;

fn gateway(extra: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"var\"\nsystem_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\n\
         [notify]\nstaff_recipients = [\"ann@support.example.com\"]\n{extra}"
    );
    let config = Config::from_toml(&text, &dir.path().join("casegate.toml")).unwrap();
    let gateway = Gateway::open(Arc::new(config)).unwrap();
    (dir, gateway)
}

/// A mail whose Message-ID is `<N@test.example>`, N counting up from 1 per test thread.
fn mail(from: &str, subject: &str, headers: &str, body: &str) -> Vec<u8> {
    thread_local!(static N: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    let n = N.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    format!("From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{n}@test.example>\r\n{headers}\r\n{body}\r\n")
        .into_bytes()
}

fn rows(g: &Gateway) -> Vec<(String, String)> {
    outbox::list(g.store.db(), "CASE", None).unwrap().into_iter().map(|r| (r.to[0].clone(), r.event)).collect()
}

#[test]
fn notifications_exist_exactly_when_their_event_commits() {
    let (_dir, mut g) = gateway("");
    let report = g.ingest(&mail("jane@customer.example", "printer", "", "on fire"), &Origin::file("a")).unwrap();
    assert_eq!(
        rows(&g),
        [
            ("jane@customer.example".into(), "acknowledgement".into()),
            ("ann@support.example.com".into(), "new-case".into())
        ]
    );

    // An event whose transaction rolls back leaves no notification behind.
    let events = report.events.clone();
    {
        let db = g.store.db();
        db.begin(crate::store::db::TxMode::Write).unwrap();
        enqueue(db, &g.config, &events, None).unwrap();
        assert_eq!(outbox::list(db, "CASE", None).unwrap().len(), 4);
        db.rollback();
    }
    assert_eq!(rows(&g).len(), 2);

    // Every Message-ID is stored and routes to the case.
    for row in outbox::list(g.store.db(), "CASE", None).unwrap() {
        assert_eq!(case_store::case_for_message_id(g.store.db(), &row.message_id).unwrap(), Some(1));
    }
}

#[test]
fn a_mail_that_asks_for_no_automatic_answer_gets_no_acknowledgement_but_staff_still_hear() {
    let (_dir, mut g) = gateway("");
    g.ingest(
        &mail("jane@customer.example", "printer", "X-Auto-Response-Suppress: All\r\n", "on fire"),
        &Origin::file("a"),
    )
    .unwrap();
    assert_eq!(rows(&g), [("ann@support.example.com".into(), "new-case".into())]);
}

#[test]
fn a_sender_is_answered_once_a_day_per_case_even_within_one_batch() {
    let (_dir, mut g) = gateway("");
    g.ingest(&mail("jane@customer.example", "printer", "", "on fire"), &Origin::file("a")).unwrap();
    let a = mail("eve@elsewhere.example", "Re: [CASE-1] one", "", "hi");
    let b = mail("eve@elsewhere.example", "Re: [CASE-1] two", "", "hi");
    let c = mail("eve@elsewhere.example", "about something else", "In-Reply-To: <nothing@x>\r\n", "#frobnicate");
    let (oa, ob, oc) = (Origin::file("a"), Origin::file("b"), Origin::file("c"));
    g.ingest_batch(&[(&a, &oa), (&b, &ob), (&c, &oc)]).unwrap();
    let to_eve: Vec<String> =
        rows(&g).into_iter().filter(|(to, _)| to == "eve@elsewhere.example").map(|(_, e)| e).collect();
    // One answer about CASE-1; the third mail opened a case of Eve's own.
    assert_eq!(to_eve, ["not-applied", "acknowledgement"]);
}

#[test]
fn a_broken_override_is_a_configuration_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tpl")).unwrap();
    std::fs::write(dir.path().join("tpl/reply.text.hbs"), "{{case.nonexistent}}").unwrap();
    let config = Config::from_toml(
        "system_addresses = [\"support@example.com\"]\ntemplates_dir = \"tpl\"",
        &dir.path().join("casegate.toml"),
    )
    .unwrap();
    let err = check_templates(&config).unwrap_err();
    let config_error = err.downcast_ref::<crate::config::ConfigError>().expect("a ConfigError (exit code 2)");
    let text = config_error.to_string();
    assert!(text.contains("templates_dir") && text.contains("template reply"), "{text}");
}

#[test]
fn references_name_the_people_s_mail_not_other_recipients_notifications() {
    let (_dir, mut g) = gateway("");
    g.ingest(&mail("jane@customer.example", "printer", "Cc: bob@customer.example\r\n", "on fire"), &Origin::file("a"))
        .unwrap();
    g.ingest(&mail("jane@customer.example", "Re: [CASE-1] printer", "", "still"), &Origin::file("b")).unwrap();
    let store = Store::open(&g.config).unwrap();
    let ids = crate::store::thread::inbound_thread_ids(store.db(), 1, 10).unwrap();
    assert_eq!(ids, ["1@test.example", "2@test.example"]);
}

#[test]
fn size_limits_are_told_in_the_unit_people_use() {
    assert_eq!(super::human_size(25 * 1024 * 1024), "25 MB");
    assert_eq!(super::human_size(2048), "2 KB");
    assert_eq!(super::human_size(1536 * 1024), "1 MB");
    assert_eq!(super::human_size(100), "100 bytes");
}

#[test]
fn a_queued_notification_lists_the_subject_it_will_be_sent_with() {
    let (_dir, mut g) = gateway("");
    g.ingest(&mail("jane@customer.example", "Printer on fire", "", "smoke"), &Origin::file("a")).unwrap();
    let stored = outbox::list(g.store.db(), "CASE", None).unwrap();
    assert!(stored.iter().all(|r| r.subject.is_empty() && r.spec.is_some()), "rendered only when sent");
    let listed = list(g.store.db(), &g.config, None).unwrap();
    assert_eq!(listed.len(), 2);
    let mut renderer = Renderer::new(g.store.db(), &g.config).unwrap();
    for row in &listed {
        assert!(row.subject.starts_with("[CASE-1] ") && row.subject.contains("Printer on fire"), "{}", row.subject);
        let to = Address::parse(&row.to[0]).unwrap();
        let (subject, mail) = renderer.render(&to, &row.message_id, row.spec.as_deref().unwrap()).unwrap();
        assert_eq!(subject, row.subject, "the list shows what is sent");
        let sent = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(sent.subject(), Some(subject.as_str()));
    }
}

#[test]
fn files_and_personal_links_are_chosen_for_each_recipient_when_the_mail_is_made() {
    let (dir, mut g) = gateway("[web]\nbase_url = \"https://support.example.com\"\nsecret = \"0123456789abcdef-test\"");
    let body = "--b\r\nContent-Type: text/plain\r\n\r\non fire\r\n--b\r\nContent-Type: application/pdf\r\n\
                Content-Disposition: attachment; filename=\"smoke.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                JVBERi0xLjQgc21va2U=\r\n--b--";
    let raw = mail(
        "jane@customer.example",
        "printer",
        "Cc: bob@customer.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n",
        body,
    );
    g.ingest(&raw, &Origin::file("a")).unwrap();
    let mut renderer = Renderer::new(g.store.db(), &g.config).unwrap();
    let mut seen = Vec::new();
    for row in list(g.store.db(), &g.config, None).unwrap() {
        let to = Address::parse(&row.to[0]).unwrap();
        let (_, stored) = renderer.render(&to, &row.message_id, row.spec.as_deref().unwrap()).unwrap();
        let sent = files::expand(&stored, g.store.db(), &dir.path().join("var/blobs")).unwrap();
        let mail = crate::parse::parse(&sent).unwrap();
        let carried: Vec<&str> = mail.attachments.iter().map(|a| a.filename.as_str()).collect();
        let page = mail.text.split_whitespace().find(|w| w.starts_with("https://support.example.com/case/"));
        seen.push((row.event.clone(), to.to_string(), carried.join(","), page.map(str::to_string)));
        if let Some(url) = page {
            let token = url.rsplit('/').next().unwrap();
            let claims = crate::signed::verify(b"0123456789abcdef-test", &crate::signed::CASE_PAGE, token, Utc::now());
            assert_eq!(claims.unwrap().address, to, "the link is made for its recipient");
        }
    }
    let summary: Vec<(&str, &str, &str, bool)> =
        seen.iter().map(|(e, to, files, page)| (e.as_str(), to.as_str(), files.as_str(), page.is_some())).collect();
    assert_eq!(
        summary,
        [
            // The author is not sent her own file back; she gets her case page.
            ("acknowledgement", "jane@customer.example", "", true),
            // Staff get the file, and no case page (they are not of the case's people).
            ("new-case", "ann@support.example.com", "smoke.pdf", false),
            ("watcher-added", "bob@customer.example", "", true),
        ]
    );
}

#[test]
fn the_answer_to_cases_links_my_cases_and_each_case_page() {
    let (_dir, mut g) =
        gateway("[web]\nbase_url = \"https://support.example.com\"\nsecret = \"0123456789abcdef-test\"");
    g.ingest(&mail("jane@customer.example", "printer", "", "on fire"), &Origin::file("a")).unwrap();
    g.ingest(&mail("jane@customer.example", "cases", "", ""), &Origin::file("b")).unwrap();
    let row = list(g.store.db(), &g.config, None).unwrap().into_iter().find(|r| r.event == "case-list").unwrap();
    let jane = Address::parse("jane@customer.example").unwrap();
    let mut renderer = Renderer::new(g.store.db(), &g.config).unwrap();
    let (_, raw) = renderer.render(&jane, &row.message_id, row.spec.as_deref().unwrap()).unwrap();
    let text = crate::parse::parse(&raw).unwrap().text;
    let token_of = |prefix: &str| {
        let url =
            text.split_whitespace().find(|w| w.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}:\n{text}"));
        url.trim_start_matches(prefix).to_string()
    };
    let now = Utc::now();
    let secret = b"0123456789abcdef-test";
    let mine =
        crate::signed::verify(secret, &crate::signed::MY_CASES, &token_of("https://support.example.com/cases/"), now);
    assert_eq!(mine.unwrap().address, jane);
    let page =
        crate::signed::verify(secret, &crate::signed::CASE_PAGE, &token_of("https://support.example.com/case/"), now);
    assert_eq!(page.unwrap().id, 1, "each listed case links to its page");
}
