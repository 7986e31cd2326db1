//! The notification tests' installation: casegate sending to an SMTP sink of its own, the
//! people of a printer-on-fire case, and what every notification must look like; plus
//! replies to notifications as a mail client writes them (token taken out of the subject).

use std::sync::atomic::{AtomicU32, Ordering};

use casegate::parse::{self, InboundMail};
use serde_json::Value;

use crate::support::casegate::Installation;
use crate::support::mail::to_support;
use crate::support::mailstack::{Received, SinkOptions, SmtpSink};

pub const JANE: &str = "jane@customer.example";
pub const BOB: &str = "bob@customer.example";
pub const CAROL: &str = "carol@partner.example";
pub const ANN: &str = "ann@support.example.com";
pub const TOM: &str = "tom@support.example.com";
pub const EVE: &str = "eve@elsewhere.example";

/// Who hears of Jane's new case with Bob and Carol in Cc (as [`open_case`] opens it): Jane
/// is answered, staff alerted, and Bob and Carol told that they watch it.
pub const OPENING: [(&str, &str); 5] =
    [(JANE, "acknowledgement"), (ANN, "new-case"), (TOM, "new-case"), (BOB, "watcher-added"), (CAROL, "watcher-added")];

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
        Setup::with_retry(sink, smtp, outbox, 1)
    }

    /// [`Setup::with_sink`] with retries after `retry_secs` (less up to 20 % jitter).
    pub fn with_retry(sink: SmtpSink, smtp: &str, outbox: &str, retry_secs: u64) -> Setup {
        Setup::build(sink, "", smtp, outbox, retry_secs, "")
    }

    /// [`Setup::new`] with more `[notify]` keys (`notify`, lines) and more tables after the
    /// others (`tables`, e.g. `[web]`).
    pub fn with_tables(notify: &str, tables: &str) -> Setup {
        Setup::build(SmtpSink::start(SinkOptions::plain()), notify, "tls = \"none\"\n", "", 1, tables)
    }

    fn build(sink: SmtpSink, notify: &str, smtp: &str, outbox: &str, retry_secs: u64, tables: &str) -> Setup {
        let install = Installation::new(&format!(
            "[notify]\nstaff_recipients = [\"{ANN}\", \"{TOM}\"]\n{notify}\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntimeout_secs = 10\n{smtp}\
             [outbox]\nretry_base_secs = {retry_secs}\nretry_max_secs = {retry_secs}\nmax_attempts = 5\n{outbox}{tables}",
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

/// A mail as a person's client writes it, with a Message-ID of its own.
pub fn mail(from: &str, subject: &str, headers: &str, body: &str) -> Vec<u8> {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    to_support(from, subject, &format!("t{n}.{}@test.example", std::process::id()), headers, body)
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
