//! Raw bytes → [`InboundMail`]: everything later steps need, decoded once.
//!
//! Built on mail-parser, which never panics and decodes RFC 2047/2231 and the legacy
//! charsets. This module adds what a ticketing gateway needs on top: validated addresses,
//! a readable text body (HTML-only mail rendered by `html2text`), every attachment with a
//! safe display name and its exact decoded bytes, attached messages parsed in turn (bounded
//! depth), and the delivery-status part of a report so bounces can be recognised.

mod attachments;
pub mod forward;
mod html;
pub mod reply;

use attachments::collect_attachments;
pub use attachments::safe_filename;

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::address::{Address, Mailbox};

/// How deep attached messages are followed (a forward of a forward of a forward).
pub const MAX_ATTACHED_MESSAGE_DEPTH: usize = 3;
/// Parts beyond this many are not inspected; a mail with more is still processed.
pub const MAX_PARTS: usize = 1_000;
/// Longest header value kept for classification (bounds memory on hostile headers).
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// One mail as the rest of casegate sees it.
#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    /// Message-ID without angle brackets, when the mail has a usable one.
    pub message_id: Option<String>,
    pub from: Option<Mailbox>,
    pub sender: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Decoded subject, single line (CR/LF and other controls replaced by spaces).
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Top-level headers in order: lower-case name, unfolded raw value (bounded).
    pub headers: Vec<(String, String)>,
    /// Top-level `type/subtype`, lower-case (`text/plain` when absent).
    pub content_type: String,
    /// `report-type` parameter of a `multipart/report`, lower-case.
    pub report_type: Option<String>,
    /// Text of a `message/delivery-status` (or `message/feedback-report`) part, if any.
    pub delivery_status: Option<String>,
    /// The readable body: text/plain parts, or HTML rendered as text when there is none.
    pub text: String,
    /// The HTML body as sent, when there was one (kept for reply stripping of HTML mail).
    pub html: Option<String>,
    /// True when `text` was rendered from HTML.
    pub text_from_html: bool,
    pub attachments: Vec<Attachment>,
    /// Attached messages (message/rfc822), parsed, up to [`MAX_ATTACHED_MESSAGE_DEPTH`].
    pub attached_messages: Vec<InboundMail>,
    /// Things that were wrong but did not stop parsing, for the audit log.
    pub problems: Vec<String>,
}

/// How a part was presented by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Attachment,
    Inline,
    /// An attached message (message/rfc822), stored as an `.eml`.
    Message,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Attachment => "attachment",
            Disposition::Inline => "inline",
            Disposition::Message => "message",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attachment {
    /// Decoded and made safe for display: no path, no control or bidi characters, bounded.
    pub filename: String,
    /// `type/subtype`, lower-case.
    pub content_type: String,
    pub disposition: Disposition,
    pub content_id: Option<String>,
    /// The decoded bytes exactly as sent (transfer encoding removed, charset untouched).
    pub data: Vec<u8>,
    /// Hex SHA-256 of `data`: the blob's name (worked out here, while parsing, so the
    /// database writer need not hash).
    pub sha256: String,
}

impl InboundMail {
    /// First value of a top-level header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All values of a top-level header, by case-insensitive name.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The sender's address (From), if valid.
    pub fn from_address(&self) -> Option<&Address> {
        self.from.as_ref().map(|m| &m.address)
    }

    /// Every Message-ID this mail points back to: In-Reply-To first, then References
    /// newest first. Deduplicated.
    pub fn ancestors(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for id in self.in_reply_to.iter().chain(self.references.iter().rev()) {
            if !out.contains(&id.as_str()) {
                out.push(id);
            }
        }
        out
    }
}

/// Parses a raw mail. `None` only when there is nothing resembling a mail (no headers).
pub fn parse(raw: &[u8]) -> Option<InboundMail> {
    let message = MessageParser::default().parse(skip_preamble(raw))?;
    if message.headers().is_empty() {
        return None;
    }
    Some(convert(&message, 0))
}

/// Parses only the headers (for mail too large to process, so it can still be listed and
/// deduplicated by Message-ID).
pub fn parse_headers(raw: &[u8]) -> Option<InboundMail> {
    let message = MessageParser::default().parse_headers(skip_preamble(raw))?;
    if message.headers().is_empty() {
        return None;
    }
    Some(convert(&message, MAX_ATTACHED_MESSAGE_DEPTH))
}

/// A header sent as raw 8-bit bytes that are not UTF-8 (RFC 5322 forbids it, old clients
/// do it). mail-parser can only replace such bytes; decode them instead with a charset the
/// mail declares elsewhere, else with the encoding `chardetng` (Firefox's detector) guesses.
/// `None` when the header is ASCII, valid UTF-8, or uses encoded-words.
fn raw_8bit_header(message: &Message<'_>, name: &str) -> Option<String> {
    let raw = message.raw_message();
    let header = message.root_part().headers.iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let bytes = raw.get(header.offset_start as usize..header.offset_end as usize)?;
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() || bytes.windows(2).any(|w| w == b"=?") {
        return None;
    }
    let declared = message.parts.iter().filter_map(|p| p.content_type()?.attribute("charset"));
    for label in declared {
        if let Some(enc) = encoding_rs::Encoding::for_label(label.as_bytes()) {
            if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
                return Some(text.into_owned());
            }
        }
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let (text, _) = detector.guess(None, true).decode_without_bom_handling(bytes);
    Some(text.into_owned())
}

/// Skips what some stores put before the headers: blank or whitespace-only lines, and an
/// mbox `From sender date` separator line. The parser would otherwise see no headers.
fn skip_preamble(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    loop {
        let line_end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        let line = &rest[..line_end];
        let blank = line.iter().all(|b| b.is_ascii_whitespace());
        let mbox_separator = line.starts_with(b"From ") && rest.len() > line_end;
        if line_end == 0 || !(blank || mbox_separator) || line_end == rest.len() {
            return rest;
        }
        rest = &rest[line_end..];
    }
}

fn convert(message: &Message<'_>, depth: usize) -> InboundMail {
    let mut mail = InboundMail {
        message_id: message.message_id().and_then(clean_message_id),
        from: first_mailbox(message.from()),
        sender: first_mailbox(message.sender()),
        reply_to: mailboxes(message.reply_to()),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        subject: one_line(message.subject().unwrap_or_default()),
        date: message.date().and_then(to_utc),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        ..Default::default()
    };
    if let Some(subject) = raw_8bit_header(message, "subject") {
        mail.subject = one_line(&subject);
        mail.problems.push("Subject: raw 8-bit text without a declared charset; charset guessed".into());
    }
    mail.headers = message.headers_raw().map(|(name, value)| (name.to_ascii_lowercase(), unfold(value))).collect();
    let root = message.root_part();
    mail.content_type = content_type_of(root).unwrap_or_else(|| "text/plain".into());
    if mail.content_type == "multipart/report" {
        mail.report_type =
            root.content_type().and_then(|ct| ct.attribute("report-type")).map(|s| s.to_ascii_lowercase());
    }
    if message.parts.len() > MAX_PARTS {
        mail.problems
            .push(format!("mail has {} MIME parts; only the first {MAX_PARTS} were inspected", message.parts.len()));
    }
    if message.parts.iter().any(|p| p.is_encoding_problem) {
        mail.problems.push("a part could not be decoded cleanly".into());
    }
    if mail.from.is_none() {
        // `From: "Name" <>` happens (mass mailers, some webmail); the address to answer is
        // then the Sender or Reply-To. Noted as a problem so the audit log shows it.
        mail.from = mail.sender.clone().or_else(|| mail.reply_to.first().cloned());
        if message.from().is_some() {
            let used = mail.from.as_ref().map_or("none".to_string(), |m| m.address.to_string());
            mail.problems.push(format!("From: holds no valid address; sender taken from Sender/Reply-To: {used}"));
        }
    }

    collect_body(message, &mut mail);
    collect_report(message, &mut mail);
    collect_attachments(message, &mut mail, depth);
    mail
}

fn collect_body(message: &Message<'_>, mail: &mut InboundMail) {
    let mut texts = Vec::new();
    let mut htmls = Vec::new();
    for &id in message.text_body.iter().take(MAX_PARTS) {
        match message.parts.get(id as usize).map(|p| &p.body) {
            Some(PartType::Text(t)) => texts.push(t.as_ref()),
            Some(PartType::Html(h)) => htmls.push(h.as_ref()),
            _ => {}
        }
    }
    for &id in message.html_body.iter().take(MAX_PARTS) {
        if let Some(PartType::Html(h)) = message.parts.get(id as usize).map(|p| &p.body) {
            if !htmls.contains(&h.as_ref()) {
                htmls.push(h.as_ref());
            }
        }
    }
    if !htmls.is_empty() {
        mail.html = Some(htmls.join("\n"));
    }
    if !texts.is_empty() {
        mail.text = normalise_text(&texts.join("\n\n"));
    } else if let Some(html) = &mail.html {
        mail.text = normalise_text(&html_to_text(html));
        mail.text_from_html = true;
    }
}

fn collect_report(message: &Message<'_>, mail: &mut InboundMail) {
    if mail.content_type != "multipart/report" {
        return;
    }
    for part in message.parts.iter().take(MAX_PARTS) {
        let ct = content_type_of(part).unwrap_or_default();
        let is_status = matches!(
            ct.as_str(),
            "message/delivery-status"
                | "message/global-delivery-status"
                | "message/feedback-report"
                | "message/disposition-notification"
        );
        if is_status {
            let text = String::from_utf8_lossy(part.contents()).into_owned();
            mail.delivery_status = Some(text);
            return;
        }
    }
}

/// Renders HTML as plain text (tables, lists and quotes kept readable; `> ` marks quotes),
/// within the bounds of [`html::to_text`].
pub fn html_to_text(html: &str) -> String {
    // Width is generous so sentences are not hard-wrapped into the thread.
    html::to_text(html, |html| html2text::from_read(html.as_bytes(), 10_000).unwrap_or_else(|_| String::new()))
}

/// LF line endings, no trailing whitespace per line, no leading/trailing blank lines.
pub fn normalise_text(text: &str) -> String {
    let text: std::borrow::Cow<'_, str> =
        if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n").into() } else { text.into() };
    let mut out = String::with_capacity(text.len());
    // Blank lines are written only once a line with text follows them.
    let mut blanks = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blanks += usize::from(!out.is_empty());
            continue;
        }
        if !out.is_empty() {
            out.extend(std::iter::repeat_n('\n', blanks + 1));
        }
        blanks = 0;
        out.push_str(line);
    }
    out
}

fn content_type_of(part: &MessagePart<'_>) -> Option<String> {
    let ct = part.content_type()?;
    let sub = ct.subtype().unwrap_or("octet-stream");
    let value = format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase();
    // Hostile or broken values (Yahoo once sent filenames in here) are cut to a sane token.
    let clean: String = value.chars().filter(|c| c.is_ascii_alphanumeric() || "/-+.".contains(*c)).take(100).collect();
    Some(clean).filter(|c| c.contains('/'))
}

fn first_mailbox(addr: Option<&mail_parser::Address<'_>>) -> Option<Mailbox> {
    mailboxes(addr).into_iter().next()
}

fn mailboxes(addr: Option<&mail_parser::Address<'_>>) -> Vec<Mailbox> {
    let Some(addr) = addr else { return Vec::new() };
    let mut out: Vec<Mailbox> = Vec::new();
    for a in addr.iter() {
        let Some(address) = a.address().and_then(Address::parse) else {
            continue;
        };
        if out.iter().any(|m| m.address == address) {
            continue;
        }
        let name = a.name().map(one_line).filter(|n| !n.is_empty());
        out.push(Mailbox { name, address });
    }
    out
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<&str> = match value {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(list) => list.iter().map(Cow::as_ref).collect(),
        _ => Vec::new(),
    };
    ids.into_iter().filter_map(clean_message_id).take(100).collect()
}

/// A Message-ID as stored and compared: no brackets or whitespace, bounded, non-empty.
pub fn clean_message_id(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    if id.is_empty() || id.len() > 998 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(id.to_string())
}

fn to_utc(dt: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(dt.to_timestamp(), 0).single()
}

fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_HEADER_VALUE));
    let mut last_space = false;
    for c in value.chars() {
        if out.len() >= MAX_HEADER_VALUE {
            break;
        }
        let c = if c == '\r' || c == '\n' || c == '\t' { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    out.trim().to_string()
}

/// One line of display text: CR, LF, tabs and other controls become a single space (so a
/// folded or hostile value cannot span lines); the sender's own spacing is kept otherwise.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> InboundMail {
        parse(s.as_bytes()).expect("parses")
    }

    #[test]
    fn text_is_normalised_to_lf_without_trailing_space_or_outer_blank_lines() {
        assert_eq!(normalise_text("\r\n  \r\nHello  \r\n\r\n\r\n  world\t\rend\r\n\r\n"), "Hello\n\n\n  world\nend");
        assert_eq!(normalise_text("one\n\ntwo"), "one\n\ntwo");
        assert_eq!(normalise_text(" \n\t\n"), "");
        assert_eq!(normalise_text(""), "");
        assert_eq!(normalise_text("  indented first"), "  indented first");
    }

    #[test]
    fn decodes_addresses_subject_and_ids() {
        let m = parse_str(
            "From: =?UTF-8?Q?J=C3=BCrgen?= <Jurgen@Customer.Example>\r\nTo: support@example.com, Bob <bob@x.example>\r\n\
             Cc: bad-address, carol@x.example\r\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe?= [CASE-7]\r\n\
             Message-ID: <abc@host>\r\nIn-Reply-To: <p1@h>\r\nReferences: <p0@h> <p1@h>\r\n\
             Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nHello\r\n",
        );
        assert_eq!(m.from.as_ref().unwrap().address.as_str(), "jurgen@customer.example");
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Jürgen"));
        assert_eq!(m.subject, "Grüße [CASE-7]");
        assert_eq!(m.message_id.as_deref(), Some("abc@host"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc.iter().map(|c| c.address.as_str()).collect::<Vec<_>>(), ["carol@x.example"]);
        assert_eq!(m.ancestors(), ["p1@h", "p0@h"]);
        assert_eq!(m.date.unwrap().to_rfc3339(), "2026-11-23T09:00:00+00:00");
        assert_eq!(m.text, "Hello");
    }

    #[test]
    fn html_only_mail_becomes_readable_text() {
        let m = parse_str(
            "From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><body><p>Hello <b>team</b>,</p><ul><li>one</li><li>two</li></ul><script>x()</script></body></html>",
        );
        assert!(m.text_from_html);
        assert!(m.text.contains("Hello"), "{}", m.text);
        assert!(m.text.contains("one") && m.text.contains("two"));
        assert!(!m.text.contains("<p>") && !m.text.contains("x()"));
    }

    #[test]
    fn subject_with_encoded_newline_cannot_carry_a_header() {
        let m = parse_str("From: a@b.example\r\nSubject: =?UTF-8?B?SGkNCkJjYzogZXZpbEB4LmV4YW1wbGU=?=\r\n\r\nx");
        assert!(!m.subject.contains('\n') && !m.subject.contains('\r'));
        assert_eq!(m.subject, "Hi Bcc: evil@x.example");
    }

    #[test]
    fn raw_8bit_subjects_are_decoded_with_a_declared_or_detected_charset() {
        let mut raw = b"From: a@b.example\r\nSubject: Gr".to_vec();
        raw.extend_from_slice(b"\xfc\xdfe\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nx\r\n");
        assert_eq!(parse(&raw).unwrap().subject, "Grüße");
        // Shift_JIS "ツール" in a mail that declares only iso-2022-jp (7-bit) for its body.
        let mut raw = b"From: a@b.example\r\nSubject: ".to_vec();
        raw.extend_from_slice(
            b"\x83\x63\x81\x5b\x83\x8b\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\nx\r\n",
        );
        assert_eq!(parse(&raw).unwrap().subject, "ツール");
    }

    #[test]
    fn leading_blank_lines_and_mbox_separator_are_skipped() {
        let m = parse_str(&format!("{}\nFrom: a@b.example\nSubject: hi\n\nbody", " ".repeat(255)));
        assert_eq!(m.subject, "hi");
        let m = parse_str("From a@b.example  Thu May  3 12:04:29 2012\nFrom: a@b.example\nSubject: mbox\n\nbody");
        assert_eq!(m.subject, "mbox");
        assert_eq!(m.from_address().unwrap().as_str(), "a@b.example");
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &b""[..],
            b"\0\0\0",
            b"\xff\xfe\r\n\r\n",
            b"From:\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        ] {
            let _ = parse(raw);
        }
        // Deep multipart nesting.
        let mut s = String::from("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
        for i in 0..2000 {
            s.push_str(&format!("--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n", i + 1));
        }
        let _ = parse(s.as_bytes());
    }
}
