//! Notifications, event by event, through the real binary and a real SMTP server: mails
//! are ingested, `casegate outbox flush` sends to the SMTP sink, and the tests read what
//! the sink received — envelope recipients, subject token, threading and loop headers,
//! the multipart body — and then reply to a notification *without* the token in the
//! subject, to show that the reply lands on the right case by its In-Reply-To alone.

use std::sync::atomic::{AtomicU32, Ordering};

use casegate::parse::{self, InboundMail};
use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::mailstack::{Received, SinkOptions, SmtpSink};

pub const JANE: &str = "jane@customer.example";
pub const BOB: &str = "bob@customer.example";
pub const CAROL: &str = "carol@partner.example";
pub const ANN: &str = "ann@support.example.com";
pub const TOM: &str = "tom@support.example.com";
pub const EVE: &str = "eve@elsewhere.example";

/// An installation whose notifications go to its own SMTP sink. Staff alerts go to Ann
/// and Tom (both analysts under `@support.example.com`).
pub struct Setup {
    pub install: Installation,
    pub sink: SmtpSink,
    seen: usize,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with_sink(SmtpSink::start(SinkOptions::plain()), "tls = \"none\"\n", "")
    }

    /// An installation sending to `sink`; `smtp` and `outbox` are extra lines for those
    /// tables (`smtp` must say `tls`). Retries come after 1 s, so tests can wait for them.
    pub fn with_sink(sink: SmtpSink, smtp: &str, outbox: &str) -> Setup {
        let install = Installation::new(&format!(
            "[notify]\nstaff_recipients = [\"{ANN}\", \"{TOM}\"]\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntimeout_secs = 10\n{smtp}\
             [outbox]\nretry_base_secs = 1\nretry_max_secs = 1\nmax_attempts = 5\n{outbox}",
            sink.port()
        ));
        Setup { install, sink, seen: 0 }
    }

    /// Ingests one mail; returns the `ingest --json` line.
    pub fn ingest(&self, raw: &[u8]) -> Value {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("in-{}.eml", N.fetch_add(1, Ordering::Relaxed));
        self.install.ingest_bytes(&name, raw)
    }

    /// `outbox flush`, which must succeed; returns the mails the sink received since the
    /// last call, each with the outbox row it came from.
    pub fn flush(&mut self) -> Vec<Delivered> {
        let out = self.install.run(&["outbox", "flush"]);
        assert!(
            out.status.success(),
            "outbox flush failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sink.log_tail()
        );
        self.received()
    }

    /// The mails that arrived since the last look.
    pub fn received(&mut self) -> Vec<Delivered> {
        let all = self.sink.messages();
        let rows = self.outbox();
        let new: Vec<Delivered> = all[self.seen..].iter().map(|r| Delivered::new(r, &rows)).collect();
        self.seen = all.len();
        new
    }

    pub fn outbox(&self) -> Vec<Value> {
        self.install.json(&["outbox", "list", "--json"]).as_array().expect("an array").clone()
    }
}

/// One mail the sink received, parsed, with its outbox row.
pub struct Delivered {
    pub to: String,
    pub event: String,
    pub row: Value,
    pub mail: InboundMail,
    pub received: Received,
}

impl Delivered {
    fn new(r: &Received, rows: &[Value]) -> Delivered {
        let mail = parse::parse(&r.data).expect("the sink holds a parseable mail");
        let id = mail.message_id.clone().expect("every notification has a Message-ID");
        let row = rows
            .iter()
            .find(|row| row["message_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no outbox row has Message-ID {id}"))
            .clone();
        assert_eq!(r.rcpt_to.len(), 1, "one recipient per mail: {:?}", r.rcpt_to);
        Delivered {
            to: r.rcpt_to[0].clone(),
            event: row["event"].as_str().unwrap().to_string(),
            row,
            mail,
            received: r.clone(),
        }
    }

    pub fn message_id(&self) -> &str {
        self.mail.message_id.as_deref().unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.mail.header(name)
    }
}

/// (recipient, event) pairs, sorted, for exact "who got what" assertions.
pub fn who_got(mails: &[Delivered]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = mails.iter().map(|d| (d.to.clone(), d.event.clone())).collect();
    v.sort();
    v
}

pub fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

pub fn to<'a>(mails: &'a [Delivered], address: &str) -> &'a Delivered {
    mails.iter().find(|d| d.to == address).unwrap_or_else(|| panic!("nothing was sent to {address}"))
}

/// A mail as a person's client writes it.
pub fn mail(from: &str, subject: &str, headers: &str, body: &str) -> Vec<u8> {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <t{n}.{}@test.example>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n{headers}\r\n{body}\r\n",
        std::process::id()
    )
    .into_bytes()
}

/// Jane opens CASE-1 with Bob and Carol in Cc (so they watch it); the opening mails are
/// flushed and returned.
pub fn open_case(s: &mut Setup) -> Vec<Delivered> {
    let line = s.ingest(&mail(
        &format!("Jane Doe <{JANE}>"),
        "Printer on fire",
        &format!("Cc: {BOB}, {CAROL}\r\n"),
        "The printer in room 4 is on fire.",
    ));
    assert_eq!((line["outcome"].as_str(), line["case"].as_str()), (Some("created"), Some("CASE-1")), "{line}");
    s.flush()
}

/// A reply to a notification as a mail client writes it, but with the case token removed
/// from the subject: only In-Reply-To/References can route it.
pub fn reply_to(n: &Delivered, from: &str, body: &str) -> Vec<u8> {
    let subject = strip_tokens(&n.mail.subject);
    assert!(!subject.contains('['), "{subject}");
    let mut refs: Vec<String> = n.mail.references.iter().map(|r| format!("<{r}>")).collect();
    refs.push(format!("<{}>", n.message_id()));
    let headers = format!("In-Reply-To: <{}>\r\nReferences: {}\r\n", n.message_id(), refs.join(" "));
    mail(from, &format!("Re: {subject}"), &headers, &format!("{body}\r\n\r\n> (quoted notification)"))
}

fn strip_tokens(subject: &str) -> String {
    let mut out = String::new();
    let mut rest = subject;
    while let Some(start) = rest.find("[CASE-") {
        out.push_str(&rest[..start]);
        rest = rest[start..].split_once(']').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replies to `n` from `from` (no token in the subject) and checks it lands on `case`.
pub fn assert_reply_lands(s: &Setup, n: &Delivered, from: &str, case: &str) {
    let line = s.ingest(&reply_to(n, from, "Thanks, noted."));
    assert!(
        matches!(line["outcome"].as_str(), Some("replied" | "command")) && line["case"] == case,
        "a reply by {from} to the {} notification should land on {case}: {line}",
        n.event
    );
}

/// What every notification about `case` must look like.
pub fn assert_well_formed(d: &Delivered, case: &str) {
    let m = &d.mail;
    let ctx = format!("{} to {}", d.event, d.to);
    assert_eq!(d.received.mail_from, "support@example.com", "{ctx}: envelope sender");
    assert_eq!(m.to.iter().map(|t| t.address.as_str()).collect::<Vec<_>>(), [d.to.as_str()], "{ctx}: To");
    assert!(m.subject.contains(&format!("[{case}]")), "{ctx}: subject {:?}", m.subject);
    assert_eq!(d.row["message_id"], d.message_id(), "{ctx}: the stored Message-ID is the one sent");
    assert!(d.message_id().ends_with("@example.com"), "{ctx}: Message-ID {}", d.message_id());
    assert!(!m.in_reply_to.is_empty() && !m.references.is_empty(), "{ctx}: threading headers missing");
    assert!(m.references.contains(&m.in_reply_to[0]), "{ctx}: In-Reply-To points into References");
    assert_eq!(d.header("Reply-To"), Some("support@example.com"), "{ctx}");
    assert!(matches!(d.header("Auto-Submitted"), Some("auto-generated" | "auto-replied")), "{ctx}");
    assert_eq!(d.header("X-Auto-Response-Suppress"), Some("All"), "{ctx}");
    assert_eq!(d.header("X-Casegate-Loop"), Some("example.com"), "{ctx}");
    assert!(m.content_type.starts_with("multipart/alternative"), "{ctx}: {}", m.content_type);
    let raw = String::from_utf8_lossy(&d.received.data);
    assert!(raw.contains("Content-Type: text/plain") && raw.contains("Content-Type: text/html"), "{ctx}");
    assert!(!m.text.trim().is_empty() && m.html.as_deref().is_some_and(|h| h.contains("</html>")), "{ctx}");
    assert_eq!(d.row["status"], "sent", "{ctx}");
}

/// A `mailto:` link of the text part whose subject ends with `command`, decoded into
/// (subject, body) as a mail client would pre-fill them.
pub fn mailto_link(d: &Delivered, command: &str) -> (String, String) {
    let encoded = format!("%23{}", command.trim_start_matches('#'));
    let uri = d
        .mail
        .text
        .split_whitespace()
        .find(|w| w.starts_with("mailto:support@example.com?subject=") && w.contains(&encoded))
        .unwrap_or_else(|| panic!("no {command} link in the {} mail:\n{}", d.event, d.mail.text));
    let query = uri.split_once('?').unwrap().1;
    let mut subject = String::new();
    let mut body = String::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("subject", v)) => subject = percent_decode(v),
            Some(("body", v)) => body = percent_decode(v),
            _ => {}
        }
    }
    (subject, body)
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_new_case_is_acknowledged_announced_to_staff_and_its_copied_watchers_are_told() {
    let mut s = Setup::new();
    let got = open_case(&mut s);

    assert_eq!(
        who_got(&got),
        pairs(&[
            (JANE, "acknowledgement"),
            (ANN, "new-case"),
            (TOM, "new-case"),
            (BOB, "watcher-added"),
            (CAROL, "watcher-added"),
        ])
    );
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
