//! Notifications, event by event, through the real binary and a real SMTP server: mails
//! are ingested, `casegate outbox flush` sends to the SMTP sink, and the tests read what
//! the sink received — envelope recipients, subject token, threading and loop headers,
//! the multipart body — and then reply to a notification *without* the token in the
//! subject, to show that the reply lands on the right case by its In-Reply-To alone.

use crate::support::notify::{
    assert_reply_lands, assert_well_formed, mail, mailto_link, open_case, pairs, reply_to, to, who_got, Setup, ANN,
    BOB, CAROL, EVE, JANE, OPENING, TOM,
};

#[test]
fn a_new_case_is_acknowledged_announced_to_staff_and_its_copied_watchers_are_told() {
    let mut s = Setup::new();
    let got = open_case(&mut s);

    assert_eq!(who_got(&got), pairs(&OPENING));
    for d in &got {
        assert_well_formed(d, "CASE-1");
    }
    let ack = to(&got, JANE);
    let opener = &ack.mail.in_reply_to[0];
    assert!(opener.starts_with('t') && opener.ends_with("@test.example"), "threads under Jane's mail: {opener}");
    assert_eq!(ack.header("Auto-Submitted"), Some("auto-replied"), "the acknowledgement answers Jane's mail");
    assert_eq!(to(&got, ANN).header("Auto-Submitted"), Some("auto-generated"));
    let bob = to(&got, BOB);
    assert!(bob.mail.text.contains("#unwatch") && bob.mail.text.contains("%23unwatch"), "{}", bob.mail.text);
    assert!(bob.header("List-Unsubscribe").is_some_and(|v| v.contains("%23unwatch")));
    assert!(ack.header("List-Unsubscribe").is_none(), "Jane does not watch, she asked");
    assert!(to(&got, ANN).mail.text.contains("The printer in room 4 is on fire."));

    // Every one of them routes a reply back to CASE-1.
    for who in [JANE, BOB, CAROL, ANN] {
        assert_reply_lands(&s, to(&got, who), who, "CASE-1");
    }
    let case = s.install.case("CASE-1");
    let written = case["messages"].as_array().unwrap().iter().filter(|m| m["kind"] != "system").count();
    assert_eq!(written, 5, "the opening mail and four replies: {case}");
}

#[test]
fn a_case_opened_on_a_customers_behalf_tells_the_customer_and_the_other_analyst() {
    let mut s = Setup::new();
    let line = s.ingest(&mail(
        &format!("Ann Analyst <{ANN}>"),
        "VPN drops for Jane",
        "",
        "Contact: jane@customer.example\r\n\r\nJane called: the VPN drops every hour.",
    ));
    assert_eq!(line["outcome"], "created", "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(ANN, "acknowledgement"), (JANE, "opened-on-your-behalf"), (TOM, "new-case")]));
    for d in &got {
        assert_well_formed(d, "CASE-1");
    }
    let jane = to(&got, JANE);
    assert!(jane.mail.text.contains("Ann Analyst opened case CASE-1 on your behalf"), "{}", jane.mail.text);
    assert_eq!(jane.header("Auto-Submitted"), Some("auto-generated"), "Jane did not write: this answers nobody");
    assert_reply_lands(&s, jane, JANE, "CASE-1");
}

#[test]
fn a_customer_reply_reaches_staff_and_the_watchers_but_not_its_author() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", "", "Now the scanner smokes too."));
    let got = s.flush();
    assert_eq!(
        who_got(&got),
        pairs(&[(ANN, "customer-reply"), (TOM, "customer-reply"), (BOB, "reply"), (CAROL, "reply")])
    );
    // Whoever the reply was addressed to (Cc) has it already: no copy. Dave, new in Cc,
    // is told he now watches the case.
    let cc = format!("Cc: {CAROL}, dave@customer.example\r\n");
    s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", &cc, "And the fax."));
    assert_eq!(
        who_got(&s.flush()),
        pairs(&[
            (ANN, "customer-reply"),
            (TOM, "customer-reply"),
            (BOB, "reply"),
            ("dave@customer.example", "watcher-added")
        ])
    );
    for d in &got {
        assert_well_formed(d, "CASE-1");
        assert!(d.mail.text.contains("Now the scanner smokes too."), "{}: {}", d.to, d.mail.text);
    }
    let bob = to(&got, BOB);
    assert!(
        bob.mail.references.len() >= 2,
        "References name the opening mail and the reply: {:?}",
        bob.mail.references
    );

    // Tom answers the alert from his mail client: a staff reply on CASE-1.
    assert_reply_lands(&s, to(&got, TOM), TOM, "CASE-1");
    s.flush();

    // A watcher's reply: staff and the other watcher (never Bob himself).
    assert_reply_lands(&s, bob, BOB, "CASE-1");
    let got = s.flush();
    assert_eq!(
        who_got(&got),
        pairs(&[
            (ANN, "customer-reply"),
            (TOM, "customer-reply"),
            (CAROL, "reply"),
            ("dave@customer.example", "reply")
        ])
    );
    assert_reply_lands(&s, to(&got, CAROL), CAROL, "CASE-1");
}

#[test]
fn a_staff_reply_picks_the_case_up_and_reaches_requester_and_watchers_once_each() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.ingest(&mail(&format!("Ann Analyst <{ANN}>"), "Re: [CASE-1] Printer on fire", "", "Please unplug it first."));
    let got = s.flush();
    // One mail each: the "picked up" mail carries Ann's words, no separate reply.
    assert_eq!(who_got(&got), pairs(&[(JANE, "picked-up"), (BOB, "picked-up"), (CAROL, "picked-up")]));
    for d in &got {
        assert_well_formed(d, "CASE-1");
        assert!(d.mail.text.contains("Please unplug it first."), "{}", d.mail.text);
        assert!(d.mail.text.contains("Ann Analyst picked up case CASE-1"), "{}", d.mail.text);
    }
    assert_eq!(s.install.case("CASE-1")["status"], "Open");
    assert_reply_lands(&s, to(&got, CAROL), CAROL, "CASE-1");
    s.flush();

    s.ingest(&mail(ANN, "Re: [CASE-1] Printer on fire", "", "And then wait a minute."));
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "reply"), (BOB, "reply"), (CAROL, "reply")]));
    assert_reply_lands(&s, to(&got, JANE), JANE, "CASE-1");
    assert!(s.flush().iter().all(|d| d.to != JANE), "Jane's own reply is not sent back to her");
}

#[test]
fn an_internal_note_reaches_the_other_analysts_and_never_a_customer() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.ingest(&mail(ANN, "Re: [CASE-1] Printer on fire", "", "#note the customer sounds worried"));
    let got = s.flush();
    // Ann's note is the first staff action on the New case, so it picks the case up: the
    // customer side hears that, but never the note's words.
    assert_eq!(who_got(&got), pairs(&[(TOM, "note"), (JANE, "picked-up"), (BOB, "picked-up"), (CAROL, "picked-up")]));
    for d in got.iter().filter(|d| d.event == "picked-up") {
        let html = d.mail.html.as_deref().unwrap();
        assert!(!d.mail.text.contains("worried") && !html.contains("worried"), "the note leaked to {}", d.to);
    }

    // On an open case, a note reaches staff only.
    s.ingest(&mail(ANN, "Re: [CASE-1] Printer on fire", "", "#note the customer sounds worried"));
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(TOM, "note")]), "customers and watchers see nothing; Ann wrote it");
    let note = to(&got, TOM);
    assert_well_formed(note, "CASE-1");
    assert!(note.mail.text.contains("INTERNAL NOTE") && note.mail.text.contains("the customer sounds worried"));

    // Tom answers the note by mail: that is a staff reply on CASE-1.
    assert_reply_lands(&s, note, TOM, "CASE-1");
}

#[test]
fn resolving_asks_for_a_verdict_whose_mailto_links_close_or_reopen_the_case() {
    let mut s = Setup::new();
    open_case(&mut s);
    let out = s.install.run(&["case", "resolve", "CASE-1", "--as", ANN, "-m", "Replaced the fuser unit."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "resolved"), (BOB, "resolved"), (CAROL, "resolved")]));
    let jane = to(&got, JANE);
    assert_well_formed(jane, "CASE-1");
    assert!(jane.mail.text.contains("ACTION REQUIRED") && jane.mail.text.contains("Replaced the fuser unit."));
    assert!(!to(&got, BOB).mail.text.contains("%23accept"), "a watcher cannot accept");
    assert_reply_lands(&s, to(&got, BOB), BOB, "CASE-1");
    s.flush();

    // Jane clicks "reject": her client pre-fills subject and body; she completes the reason.
    let (subject, body) = mailto_link(jane, "#reject");
    assert_eq!(subject, "Re: [CASE-1] #reject");
    let line = s.ingest(&mail(JANE, &subject, "", &format!("{body}it still smells of smoke")));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("command"), Some("CASE-1")), "{line}");
    assert_eq!(s.install.case("CASE-1")["status"], "Open");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(BOB, "reopened"), (CAROL, "reopened"), (ANN, "reopened"), (TOM, "reopened")]));
    assert!(to(&got, ANN).mail.text.contains("it still smells of smoke"));
    assert_reply_lands(&s, to(&got, ANN), ANN, "CASE-1");
    s.flush();

    // Resolved again; this time Jane accepts with the other link.
    s.install.ok(&["case", "resolve", "CASE-1", "--as", TOM, "-m", "Aired the room."]);
    let got = s.flush();
    let (subject, body) = mailto_link(to(&got, JANE), "#accept");
    assert_eq!(subject, "Re: [CASE-1] #accept");
    let line = s.ingest(&mail(JANE, &subject, "", &body));
    assert_eq!(line["outcome"], "command", "{line}");
    assert_eq!(s.install.case("CASE-1")["status"], "Closed");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(BOB, "closed"), (CAROL, "closed"), (ANN, "closed"), (TOM, "closed")]));
    assert_well_formed(to(&got, BOB), "CASE-1");
    // A reply to the "closed" mail reaches CASE-1, which is final: it opens a follow-up.
    let line = s.ingest(&reply_to(to(&got, BOB), BOB, "The smell is back."));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("created"), Some("CASE-2")), "{line}");
    assert_eq!(s.install.case("CASE-2")["linked_case"], "CASE-1");
}

#[test]
fn a_watcher_stops_with_the_unwatch_link_and_is_told_so() {
    let mut s = Setup::new();
    let opened = open_case(&mut s);
    let (subject, body) = mailto_link(to(&opened, BOB), "#unwatch");
    let line = s.ingest(&mail(BOB, &subject, "", &body));
    assert_eq!(line["outcome"], "command", "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(BOB, "watcher-removed")]));
    assert_well_formed(&got[0], "CASE-1");
    assert!(got[0].header("List-Unsubscribe").is_none(), "Bob no longer watches");
    // Bob's answer still lands on CASE-1 (as a colleague of Jane's account he may write).
    assert_reply_lands(&s, &got[0], BOB, "CASE-1");
    assert!(s.flush().iter().all(|d| d.to != BOB));

    s.install.ok(&["case", "reply", "CASE-1", "--as", ANN, "-m", "Working on it."]);
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "picked-up"), (CAROL, "picked-up")]), "Bob hears nothing more");
}

#[test]
fn an_impact_change_is_announced_to_the_customer_side() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.install.ok(&["case", "impact", "CASE-1", "high", "--as", ANN]);
    let got = s.flush();
    let mut expected = pairs(&[(JANE, "field-changed"), (BOB, "field-changed"), (CAROL, "field-changed")]);
    // Ann's first action also picked the case up.
    expected.extend(pairs(&[(JANE, "picked-up"), (BOB, "picked-up"), (CAROL, "picked-up")]));
    expected.sort();
    assert_eq!(who_got(&got), expected);
    let change = got.iter().find(|d| d.to == JANE && d.event == "field-changed").unwrap();
    assert_well_formed(change, "CASE-1");
    assert!(change.mail.subject.contains("impact is now High"), "{}", change.mail.subject);
    assert!(change.mail.text.contains("To add to CASE-1, reply to this mail"), "{}", change.mail.text);
    assert_reply_lands(&s, change, JANE, "CASE-1");
}

#[test]
fn a_stranger_gets_one_short_answer_per_case_a_day_that_reveals_nothing() {
    let mut s = Setup::new();
    open_case(&mut s);
    let line = s.ingest(&mail(EVE, "Re: [CASE-1] status?", "", "What is going on?"));
    assert_eq!(line["outcome"], "quarantined", "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(EVE, "not-applied")]));
    let answer = &got[0];
    assert_well_formed(answer, "CASE-1");
    assert_eq!(answer.header("Auto-Submitted"), Some("auto-replied"));
    assert_eq!(answer.mail.references.len(), 1, "threads with Eve's mail only, not the case thread");
    for secret in ["Printer", "printer", "room 4", JANE] {
        assert!(!answer.mail.text.contains(secret) && !answer.mail.subject.contains(secret), "leaks {secret:?}");
    }
    assert!(answer.mail.text.contains("you do not take part in this case"), "{}", answer.mail.text);
    // Nor is she told how to add to the case, which she may not.
    assert!(!answer.mail.text.contains("To add to CASE-1"), "{}", answer.mail.text);

    // Eve insists, twice: no second answer today (no backscatter loop).
    s.ingest(&mail(EVE, "Re: [CASE-1] status?", "", "Hello??"));
    let line = s.ingest(&reply_to(answer, EVE, "Why not?"));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("quarantined"), Some("CASE-1")), "{line}");
    assert!(s.flush().is_empty());
    assert_eq!(s.outbox().iter().filter(|r| r["to"][0] == EVE).count(), 1);
}

#[test]
fn mail_to_a_closed_case_opens_a_follow_up_and_one_mail_says_so() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.install.ok(&["case", "close", "CASE-1", "--as", ANN, "-m", "Fixed."]);
    s.flush();
    let line = s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", "", "It is burning again!"));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("created"), Some("CASE-2")), "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "follow-up-opened"), (ANN, "new-case"), (TOM, "new-case")]));
    let jane = to(&got, JANE);
    assert_well_formed(jane, "CASE-2");
    assert!(jane.mail.text.contains("case CASE-1 is closed") && jane.mail.text.contains("CASE-2"));
    assert_eq!(jane.header("Auto-Submitted"), Some("auto-replied"));
    assert_reply_lands(&s, jane, JANE, "CASE-2");
}

#[test]
fn refused_commands_and_a_reject_without_reason_are_answered_and_replies_route_back() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.ingest(&mail(JANE, "Re: [CASE-1] Printer on fire", "", "#frobnicate now"));
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "command-refused")]));
    assert_well_formed(&got[0], "CASE-1");
    assert!(got[0].mail.text.contains("#frobnicate") && got[0].mail.text.contains("unknown command"));
    assert_reply_lands(&s, &got[0], JANE, "CASE-1");
    s.flush();

    s.install.ok(&["case", "resolve", "CASE-1", "--as", ANN, "-m", "Try again."]);
    s.flush();
    s.ingest(&mail(JANE, "Re: [CASE-1] #reject", "", ""));
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "reason-required")]));
    assert_well_formed(&got[0], "CASE-1");
    // Jane answers the question: the reply, found by In-Reply-To, carries the reason.
    let line = s.ingest(&reply_to(&got[0], JANE, "#reject the paper jams now"));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("command"), Some("CASE-1")), "{line}");
    assert_eq!(s.install.case("CASE-1")["status"], "Open");
}

#[test]
fn a_case_list_request_is_answered_to_the_sender_only() {
    let mut s = Setup::new();
    open_case(&mut s);
    s.ingest(&mail(BOB, "Toner empty", "", "Please send toner."));
    s.flush();
    let line = s.ingest(&mail(BOB, "cases", "", ""));
    assert_eq!(line["outcome"], "command", "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(BOB, "case-list")]));
    let list = &got[0];
    assert_eq!(list.header("Auto-Submitted"), Some("auto-replied"));
    assert!(!list.mail.subject.contains("[CASE-"), "about no single case: {}", list.mail.subject);
    let text = &list.mail.text;
    let (two, one) = (text.find("[CASE-2] Toner empty").unwrap(), text.find("[CASE-1] Printer on fire").unwrap());
    assert!(two < one, "most recently active first:\n{text}");
    assert!(text.contains("you are the requester") && text.contains("you are the watcher"), "{text}");
}

#[test]
fn hostile_subjects_and_display_names_cannot_add_headers_or_recipients() {
    let mut s = Setup::new();
    // Encoded words carry CR/LF into the decoded subject and display name.
    let line = s.ingest(&mail(
        &format!("=?utf-8?q?Jane=0D=0ABcc=3A_evil=40attacker=2Eexample?= <{JANE}>"),
        "=?utf-8?q?Help=0D=0ABcc=3A_evil=40attacker=2Eexample=0D=0AX-Evil=3A_1?=",
        "",
        "<script>alert(1)</script>",
    ));
    assert_eq!(line["outcome"], "created", "{line}");
    let got = s.flush();
    assert_eq!(who_got(&got), pairs(&[(JANE, "acknowledgement"), (ANN, "new-case"), (TOM, "new-case")]));
    for d in &got {
        assert_well_formed(d, "CASE-1");
        let raw = String::from_utf8_lossy(&d.received.data);
        let headers = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(!headers.contains("\r\nbcc:") && !headers.contains("\r\nx-evil:"), "{headers}");
        assert!(d.mail.header("Bcc").is_none() && d.mail.header("X-Evil").is_none());
        let html = d.mail.html.as_deref().unwrap();
        assert!(!html.contains("<script>"), "customer text is escaped in HTML: {html}");
    }
    assert!(to(&got, ANN).mail.html.as_deref().unwrap().contains("&lt;script&gt;"));
}
