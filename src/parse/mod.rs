//! Raw bytes → [`InboundMail`]: everything later steps need, decoded once.
//!
//! Built on mail-parser, which never panics and decodes RFC 2047/2231 and the legacy
//! charsets. This module adds what a ticketing gateway needs on top: validated addresses,
//! headers sent in legacy charsets or with mislabelled encoded-words read right (see
//! `charset`), a sender recovered from a broken From line (or Sender, Reply-To,
//! Return-Path) rather than none, a readable text body (HTML-only mail rendered by
//! `html2text`), every attachment with a safe display name and its exact decoded bytes,
//! attached messages parsed in turn (bounded depth), and the delivery-status part of a
//! report so bounces can be recognised.

mod applefile;
mod attachments;
mod bounds;
mod charset;
pub mod forward;
mod html;
mod quoting;
pub mod reply;
mod tnef;
mod uuencode;

use attachments::collect_attachments;
pub use attachments::{safe_filename, type_for_name};
pub use bounds::{MAX_PARSED_MESSAGES, MAX_PARSED_MULTIPARTS};

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::address::{recover_mailbox, Address, Mailbox};
use charset::MailCharsets;

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
    let bounded = bounds::bounded(skip_preamble(raw));
    let message = MessageParser::default().parse(bounded.as_ref())?;
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

/// A message's subject, its charset repaired (for naming an attached message's file).
fn subject_of(message: &Message<'_>) -> Option<String> {
    let charsets = MailCharsets::new(message);
    let subject = message.root_part().headers.iter().rev().find(|h| h.name == HeaderName::Subject)?;
    match charsets.repair(charsets.raw_value(subject), None) {
        Some(fixed) => {
            let block = format!("Subject: {}\r\n\r\n", fixed.value);
            MessageParser::default().parse_headers(block.as_bytes())?.subject().map(str::to_string)
        }
        None => message.subject().map(str::to_string),
    }
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
    // Headers in legacy charsets or with mislabelled encoded-words are rewritten as UTF-8 and
    // parsed again; every other header is read as mail-parser parsed it.
    let charsets = MailCharsets::new(message);
    let repaired = charset::repaired_headers(&charsets);
    let fixed = repaired.as_ref().and_then(|(block, _)| MessageParser::default().parse_headers(block.as_slice()));
    let value = |name| charset::header_value(fixed.as_ref(), message, name);
    let address = |name| value(name).and_then(HeaderValue::as_address);
    let mut mail = InboundMail {
        message_id: message.message_id().and_then(clean_message_id),
        from: first_mailbox(address(HeaderName::From)),
        sender: first_mailbox(address(HeaderName::Sender)),
        reply_to: mailboxes(address(HeaderName::ReplyTo)),
        to: mailboxes(address(HeaderName::To)),
        cc: mailboxes(address(HeaderName::Cc)),
        subject: one_line(value(HeaderName::Subject).and_then(HeaderValue::as_text).unwrap_or_default()),
        date: message.date().and_then(to_utc),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        ..Default::default()
    };
    if let Some((_, notes)) = &repaired {
        mail.problems.extend(notes.iter().cloned());
    }
    // Values that are not UTF-8 are kept too, decoded, so the From line as sent stays readable.
    mail.headers = message
        .root_part()
        .headers
        .iter()
        .map(|h| (h.name.as_str().to_ascii_lowercase(), unfold(&charsets.text(charsets.raw_value(h)))))
        .collect();
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
    // Counted by addresses: `Smith, John <j@x>` (an unquoted comma) is one person.
    let from_count = address(HeaderName::From).map_or(0, |a| a.iter().filter(|a| a.address().is_some()).count());
    if mail.from.is_some() && from_count > 1 {
        mail.problems.push(format!("From: names {from_count} mailboxes; the first valid one is the sender"));
    }
    if mail.from.is_none() {
        fallback_sender(message, &charsets, &mut mail);
    }

    collect_body(message, &mut mail);
    collect_report(message, &mut mail);
    collect_attachments(message, &mut mail, depth);
    mail
}

/// The sender when From names no valid mailbox. Real mail has `<user@domain.>`, `John
/// Smith@example.com`, `"user@example.com"` alone, no angle brackets, and `"Name" <>` from
/// mass mailers; the address to answer is then read leniently from From itself, else taken
/// from Sender (strictly, then leniently), the first Reply-To, or Return-Path. How it was
/// found goes into the problems, so the audit log shows it; with none, the mail has no sender.
fn fallback_sender(message: &Message<'_>, charsets: &MailCharsets<'_, '_>, mail: &mut InboundMail) {
    let line = |name: HeaderName<'static>| {
        let header = message.root_part().headers.iter().rev().find(|h| h.name == name)?;
        let raw = charsets.raw_value(header);
        Some(match charsets.repair(raw, None) {
            Some(fixed) => fixed.value,
            None => charsets.text(raw).into_owned(),
        })
    };
    let lenient = |text: &str| {
        recover_mailbox(text).map(|r| {
            let name = r.name.map(|n| one_line(&charsets.decode_words(&n))).filter(|n| !n.is_empty());
            (Mailbox { name, address: r.address }, r.how)
        })
    };
    let from_line = line(HeaderName::From);
    let shown = |text: &str| one_line(text).chars().take(200).collect::<String>();
    if let Some(text) = &from_line {
        if let Some((mailbox, how)) = lenient(text) {
            mail.problems.push(format!("From: {:?} read as {} ({how})", shown(text), mailbox.address));
            mail.from = Some(mailbox);
            return;
        }
    }
    let what = match &from_line {
        Some(text) => format!("From: {:?} holds no address", shown(text)),
        None => "From: missing".to_string(),
    };
    let from_sender = mail.sender.clone().map(|m| (m, "Sender".to_string())).or_else(|| {
        let text = line(HeaderName::Sender)?;
        lenient(&text).map(|(m, how)| (m, format!("Sender, {how}")))
    });
    let found =
        from_sender.or_else(|| mail.reply_to.first().cloned().map(|m| (m, "Reply-To".to_string()))).or_else(|| {
            let path = match message.return_path() {
                HeaderValue::Text(t) => Some(t.as_ref()),
                HeaderValue::TextList(list) => list.first().map(|t| t.as_ref()),
                _ => None,
            }?;
            Address::parse(path).map(|a| (Mailbox { name: None, address: a }, "Return-Path".to_string()))
        });
    match found {
        Some((mailbox, source)) => {
            mail.problems.push(format!("{what}; sender taken from {source}: {}", mailbox.address));
            mail.from = Some(mailbox);
        }
        None => mail.problems.push(format!("{what}; neither do Sender, Reply-To or Return-Path")),
    }
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
/// within the size bounds the `html` module sets.
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
    // An attached message or a multipart beyond those parsed ([`bounds`]) is still one.
    let clean = bounds::real_type(&clean).unwrap_or(clean);
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

    /// A digest: `n` forwarded mails side by side, each a `message/rfc822` part.
    fn digest(n: usize) -> Vec<u8> {
        let mut mail = String::from(
            "From: list@example.org\r\nTo: support@example.com\r\nSubject: Digest\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"d\"\r\n\r\n--d\r\nContent-Type: text/plain\r\n\r\nThe digest.\r\n",
        );
        for i in 0..n {
            mail.push_str(&format!(
                "--d\r\nContent-Type: Message/RFC822\r\n\r\nFrom: m{i}@example.org\r\nSubject: Post {i}\r\n\r\nBody {i}.\r\n"
            ));
        }
        mail.push_str("--d--\r\n");
        mail.into_bytes()
    }

    #[test]
    fn attached_messages_beyond_those_parsed_are_kept_as_messages() {
        let mail = parse(&digest(12)).unwrap();
        assert_eq!(mail.attached_messages.len(), MAX_PARSED_MESSAGES);
        assert_eq!(mail.attached_messages[0].subject, "Post 0");
        let messages: Vec<&Attachment> =
            mail.attachments.iter().filter(|a| a.content_type == "message/rfc822").collect();
        assert_eq!(messages.len(), 12, "{:?}", mail.attachments.iter().map(|a| &a.content_type).collect::<Vec<_>>());
        assert!(messages.iter().all(|a| a.disposition == Disposition::Message));
        assert_eq!(messages[11].filename, "Post 11.eml");
        assert!(String::from_utf8_lossy(&messages[11].data).contains("Body 11."));
    }

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

    /// Real byte sequences of one legacy charset, and the text each must decode to.
    struct Legacy {
        label: &'static str,
        subject: &'static [u8],
        name: &'static [u8],
        file: &'static [u8],
        want: [&'static str; 3],
    }

    const LEGACY: &[Legacy] = &[
        Legacy {
            label: "gbk",
            subject: b"\xb9\xd8\xd3\xda\xb7\xa2\xc6\xb1\xb5\xc4\xce\xca\xcc\xe2",
            name: b"\xd5\xc5\xce\xb0",
            file: b"\xb1\xa8\xbc\xdb\xb5\xa5.xls",
            want: ["关于发票的问题", "张伟", "报价单.xls"],
        },
        Legacy {
            label: "big5",
            subject: b"\xb5o\xb2\xbc\xb0\xdd\xc3D",
            name: b"\xb3\xaf\xa4j\xa4\xe5",
            file: b"\xb3\xf8\xbb\xf9\xb3\xe6.pdf",
            want: ["發票問題", "陳大文", "報價單.pdf"],
        },
        Legacy {
            label: "shift_jis",
            subject: b"\x90\xbf\x8b\x81\x8f\x91\x82\xc9\x82\xc2\x82\xa2\x82\xc4",
            // "ソフト開発部": the first character's trail byte is 0x5C, a backslash in ASCII.
            name: b"\x83\x5c\x83t\x83g\x8aJ\x94\xad\x95\x94",
            file: b"\x8c\xa9\x90\xcf\x8f\x91.pdf",
            want: ["請求書について", "ソフト開発部", "見積書.pdf"],
        },
        Legacy {
            label: "euc-kr",
            subject: b"\xb0\xdf\xc0\xfb\xbc\xad \xbf\xe4\xc3\xbb",
            name: b"\xb1\xe8\xc3\xb6\xbc\xf6",
            file: b"\xb0\xdf\xc0\xfb\xbc\xad.hwp",
            want: ["견적서 요청", "김철수", "견적서.hwp"],
        },
        Legacy {
            label: "koi8-r",
            subject: b"\xf3\xde\xa3\xd4 \xce\xc1 \xcf\xd0\xcc\xc1\xd4\xd5",
            name: b"\xe9\xd7\xc1\xce \xf0\xc5\xd4\xd2\xcf\xd7",
            file: b"\xf3\xde\xa3\xd4.pdf",
            want: ["Счёт на оплату", "Иван Петров", "Счёт.pdf"],
        },
        Legacy {
            label: "iso-8859-2",
            subject: b"Za\xbf\xf3\xb3\xe6 g\xea\xb6l\xb1 ja\xbc\xf1",
            name: b"\xa3ukasz W\xf3jcik",
            file: b"Umowa-cz\xea\xb6\xe6.pdf",
            want: ["Zażółć gęślą jaźń", "Łukasz Wójcik", "Umowa-część.pdf"],
        },
        Legacy {
            label: "iso-8859-7",
            subject: b"\xd4\xe9\xec\xef\xeb\xfc\xe3\xe9\xef \xcc\xe1\xc0\xef\xf5",
            name: b"\xc5\xeb\xdd\xed\xe7 \xd0\xe1\xf0\xe1\xe4\xef\xf0\xef\xfd\xeb\xef\xf5",
            file: b"\xd4\xe9\xec\xef\xeb\xfc\xe3\xe9\xef.pdf",
            want: ["Τιμολόγιο Μαΐου", "Ελένη Παπαδοπούλου", "Τιμολόγιο.pdf"],
        },
        Legacy {
            label: "windows-1250",
            subject: b"P\xf8\xedloha faktura",
            name: b"Ji\xf8\xed Dvo\xf8\xe1k",
            file: b"P\xf8ehled.xlsx",
            want: ["Příloha faktura", "Jiří Dvořák", "Přehled.xlsx"],
        },
        Legacy {
            label: "windows-1251",
            subject: b"\xd1\xf7\xb8\xf2 \xed\xe0 \xee\xef\xeb\xe0\xf2\xf3",
            name: b"\xc8\xe2\xe0\xed \xcf\xe5\xf2\xf0\xee\xe2",
            file: b"\xd1\xf7\xb8\xf2.pdf",
            want: ["Счёт на оплату", "Иван Петров", "Счёт.pdf"],
        },
        Legacy {
            label: "windows-1252",
            subject: b"Gr\xfc\xdfe \x96 Rechnung \x80",
            name: b"J\xfcrgen M\xfcller",
            file: b"Gr\xf6\xdfe.pdf",
            want: ["Grüße – Rechnung €", "Jürgen Müller", "Größe.pdf"],
        },
    ];

    /// A mail whose Subject, From display name, Cc display name and attachment file name are
    /// raw 8-bit bytes; `body_charset` is the text part's declared charset (if any).
    fn legacy_mail(subject: &[u8], name: &[u8], file: &[u8], body_charset: Option<&str>) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(b"From: \"");
        m.extend_from_slice(name);
        m.extend_from_slice(b"\" <sender@customer.example>\r\nTo: support@example.com\r\nCc: ");
        m.extend_from_slice(name);
        m.extend_from_slice(b" <cc@customer.example>\r\nSubject: ");
        m.extend_from_slice(subject);
        m.extend_from_slice(b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n");
        match body_charset {
            Some(cs) => m.extend_from_slice(format!("Content-Type: text/plain; charset={cs}\r\n").as_bytes()),
            None => m.extend_from_slice(b"Content-Type: text/plain\r\n"),
        }
        m.extend_from_slice(b"\r\nbody\r\n--B\r\nContent-Type: application/octet-stream\r\n");
        m.extend_from_slice(b"Content-Disposition: attachment; filename=\"");
        m.extend_from_slice(file);
        m.extend_from_slice(b"\"\r\n\r\ndata\r\n--B--\r\n");
        m
    }

    fn assert_decoded(m: &InboundMail, want: &[&str; 3], what: &str) {
        assert_eq!(m.subject, want[0], "{what}: subject");
        let from = m.from.as_ref().expect("a sender");
        assert_eq!(from.address.as_str(), "sender@customer.example", "{what}");
        assert_eq!(from.name.as_deref(), Some(want[1]), "{what}: From display name");
        assert_eq!(m.cc.first().and_then(|c| c.name.as_deref()), Some(want[1]), "{what}: Cc display name");
        assert_eq!(m.cc.first().map(|c| c.address.as_str()), Some("cc@customer.example"), "{what}");
        assert_eq!(m.attachments.first().map(|a| a.filename.as_str()), Some(want[2]), "{what}: file name");
        let everything = format!("{} {:?} {:?} {:?}", m.subject, m.from, m.cc, m.attachments[0].filename);
        assert!(!everything.contains('\u{FFFD}'), "{what}: replacement character in {everything}");
    }

    #[test]
    fn raw_8bit_headers_in_each_legacy_charset_are_decoded_with_the_declared_charset() {
        for Legacy { label, subject, name, file, want } in LEGACY {
            let m = parse(&legacy_mail(subject, name, file, Some(label))).expect("parses");
            assert_decoded(&m, want, label);
            assert!(
                m.problems.iter().any(|p| p.starts_with("Subject: 8-bit text read as")),
                "{label}: {:?}",
                m.problems
            );
            // The raw From line stays available, decoded, for the audit and the thread.
            assert_eq!(
                m.header("from"),
                Some(format!("\"{}\" <sender@customer.example>", want[1]).as_str()),
                "{label}"
            );
        }
    }

    #[test]
    fn raw_8bit_headers_in_each_legacy_charset_are_detected_when_nothing_is_declared() {
        for Legacy { label, subject, name, file, want } in LEGACY {
            let m = parse(&legacy_mail(subject, name, file, None)).expect("parses");
            assert_decoded(&m, want, &format!("{label} (undeclared)"));
        }
    }

    fn with_body(headers: &[u8], charset: Option<&str>) -> InboundMail {
        let mut raw = headers.to_vec();
        if let Some(cs) = charset {
            raw.extend_from_slice(format!("Content-Type: text/plain; charset={cs}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody\r\n");
        parse(&raw).expect("parses")
    }

    #[test]
    fn encoded_words_with_a_wrong_label_are_read_with_the_right_charset() {
        // GBK bytes labelled UTF-8: the message's charset, else detection, reads them.
        let subject = b"From: a@b.example\r\nSubject: =?utf-8?B?udjT2reixrG1xM7KzOI=?=\r\n";
        assert_eq!(with_body(subject, Some("gb2312")).subject, "关于发票的问题");
        assert_eq!(with_body(subject, None).subject, "关于发票的问题");
        // UTF-8 bytes labelled ISO-8859-1; the decoded comma must not split the address list.
        let m = with_body(b"From: =?iso-8859-1?Q?M=C3=BCller=2C_J=C3=BCrgen?= <j@customer.example>\r\n", None);
        assert_eq!(m.from.as_ref().and_then(|f| f.name.as_deref()), Some("Müller, Jürgen"));
        assert_eq!(m.from_address().map(Address::as_str), Some("j@customer.example"));
        assert!(m.problems.iter().any(|p| p.starts_with("From: encoded-word labelled iso-8859-1")), "{:?}", m.problems);
        // 8-bit under a US-ASCII label: the body's charset says what it is.
        let m = with_body(b"From: a@b.example\r\nSubject: =?us-ascii?Q?Gr=FC=DFe?=\r\n", Some("iso-8859-1"));
        assert_eq!(m.subject, "Grüße");
    }

    #[test]
    fn a_character_split_between_encoded_words_is_joined_before_decoding() {
        // "关于发票" in UTF-8 with the second character cut after its first byte.
        let m = with_body(b"From: a@b.example\r\nSubject: =?UTF-8?B?5YWz5A==?=\r\n =?UTF-8?B?uo7lj5Hnpag=?=\r\n", None);
        assert_eq!(m.subject, "关于发票");
    }

    #[test]
    fn raw_8bit_text_mixed_with_encoded_words_is_decoded_in_both_parts() {
        let mut headers = b"From: a@b.example\r\nSubject: Re: ".to_vec();
        headers.extend_from_slice(b"\xb7\xa2\xc6\xb1 =?gb2312?B?zsrM4g==?=\r\n");
        let m = with_body(&headers, Some("gb2312"));
        assert_eq!(m.subject, "Re: 发票 问题");
        assert!(!m.subject.contains('\u{FFFD}'));
    }

    #[test]
    fn file_name_in_a_mislabelled_encoded_word_uses_the_part_then_the_message_charset() {
        let mail = |part_charset: &str, body_charset: &str| {
            format!(
                "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n\
                 --B\r\nContent-Type: text/plain; charset={body_charset}\r\n\r\nbody\r\n\
                 --B\r\nContent-Type: text/plain{part_charset}\r\n\
                 Content-Disposition: attachment; filename=\"=?utf-8?B?sai827WlLnhscw==?=\"\r\n\r\ndata\r\n--B--\r\n"
            )
        };
        let m = parse_str(&mail("; charset=gbk", "utf-8"));
        assert_eq!(m.attachments[0].filename, "报价单.xls");
        let m = parse_str(&mail("", "gb2312"));
        assert_eq!(m.attachments[0].filename, "报价单.xls");
    }

    #[test]
    fn correctly_labelled_encoded_words_are_left_to_the_parser() {
        let m = with_body(
            b"From: =?Windows-1252?Q?Hans_B=C4KO?= =?iso-8859-15?q?Sch=F6nland?= <me@customer.example>\r\n\
              Subject: utf8: =?UTF-8?Q?=E4=BD=BF=E3=81=A3=E3=81=A6?= / cp-1251: =?windows-1251?B?0eXw4+XpINPj6+j26uj1?=\r\n",
            None,
        );
        assert_eq!(m.from.as_ref().and_then(|f| f.name.as_deref()), Some("Hans BÄKOSchönland"));
        assert_eq!(m.subject, "utf8: 使って / cp-1251: Сергей Углицких");
        assert!(m.problems.is_empty(), "{:?}", m.problems);
    }

    fn sender_of(headers: &str) -> (Option<String>, Vec<String>) {
        let m = parse_str(&format!("{headers}Subject: x\r\n\r\nbody\r\n"));
        (m.from_address().map(|a| a.to_string()), m.problems)
    }

    #[test]
    fn a_broken_from_line_is_read_leniently_before_other_headers() {
        let (from, problems) = sender_of("From: <user@domain.example.>\r\nSender: s@x.example\r\n");
        assert_eq!(from.as_deref(), Some("user@domain.example"));
        assert_eq!(problems, ["From: \"<user@domain.example.>\" read as user@domain.example (trailing dot removed)"]);
        let (from, _) = sender_of("From: User Name user@example.com\r\n");
        assert_eq!(from.as_deref(), Some("user@example.com"));
        let (from, _) = sender_of("From: \"user@example.com\"\r\n");
        assert_eq!(from.as_deref(), Some("user@example.com"));
        let m = parse_str("From: =?utf-8?Q?J=C3=BCrgen?= <juergen@customer.example.>\r\n\r\nx");
        assert_eq!(m.from.as_ref().and_then(|f| f.name.as_deref()), Some("Jürgen"));
        assert_eq!(m.from_address().map(Address::as_str), Some("juergen@customer.example"));
    }

    #[test]
    fn without_an_address_in_from_the_sender_comes_from_sender_reply_to_then_return_path() {
        let (from, problems) = sender_of("From: Mailer-Daemon\r\nSender: s@x.example\r\nReply-To: r@x.example\r\n");
        assert_eq!(from.as_deref(), Some("s@x.example"));
        assert_eq!(problems, ["From: \"Mailer-Daemon\" holds no address; sender taken from Sender: s@x.example"]);
        let (from, problems) = sender_of("From: Mailer-Daemon\r\nSender: <s@x.example.>\r\nReply-To: r@x.example\r\n");
        assert_eq!(from.as_deref(), Some("s@x.example"));
        assert!(problems[0].ends_with("sender taken from Sender, trailing dot removed: s@x.example"), "{problems:?}");
        let (from, _) = sender_of("From: \"Name\" <>\r\nReply-To: r@x.example, q@x.example\r\n");
        assert_eq!(from.as_deref(), Some("r@x.example"));
        let (from, problems) = sender_of("Return-Path: <bounce@x.example>\r\nFrom: \"Name\" <>\r\n");
        assert_eq!(from.as_deref(), Some("bounce@x.example"));
        assert!(problems[0].ends_with("sender taken from Return-Path: bounce@x.example"), "{problems:?}");
        let (from, problems) = sender_of("Sender: s@x.example\r\n");
        assert_eq!(from.as_deref(), Some("s@x.example"));
        assert_eq!(problems, ["From: missing; sender taken from Sender: s@x.example"]);
    }

    #[test]
    fn no_sender_is_made_up_when_no_header_names_one() {
        let (from, problems) = sender_of("Return-Path: <>\r\nFrom: Mailer-Daemon\r\nReply-To: nobody\r\n");
        assert_eq!(from, None);
        assert_eq!(problems, ["From: \"Mailer-Daemon\" holds no address; neither do Sender, Reply-To or Return-Path"]);
        let (from, _) = sender_of("From: (sent by bob@evil.example) <>\r\n");
        assert_eq!(from, None);
    }

    #[test]
    fn with_several_from_mailboxes_the_first_valid_one_is_the_sender_and_sender_stays_sender() {
        let m = parse_str("From: broken@, a@x.example, b@y.example\r\nSender: b@y.example\r\n\r\nx");
        assert_eq!(m.from_address().map(Address::as_str), Some("a@x.example"));
        assert_eq!(m.sender.as_ref().map(|s| s.address.as_str()), Some("b@y.example"));
        assert_eq!(m.problems, ["From: names 3 mailboxes; the first valid one is the sender"]);
    }

    #[test]
    fn a_broken_from_line_in_a_legacy_charset_keeps_its_decoded_name() {
        let mut raw = b"From: \xd5\xc5\xce\xb0 <zhang@customer.example.>\r\nSubject: x\r\n".to_vec();
        raw.extend_from_slice(b"Content-Type: text/plain; charset=gbk\r\n\r\nbody\r\n");
        let m = parse(&raw).unwrap();
        assert_eq!(m.from_address().map(Address::as_str), Some("zhang@customer.example"));
        assert_eq!(m.from.as_ref().and_then(|f| f.name.as_deref()), Some("张伟"));
        assert_eq!(m.header("from"), Some("张伟 <zhang@customer.example.>"));
    }

    #[test]
    fn headers_of_an_attached_message_are_decoded_from_its_own_bytes() {
        let mut raw =
            b"From: admin@example.com\r\nSubject: Fwd\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n".to_vec();
        raw.extend_from_slice(
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n",
        );
        raw.extend_from_slice(b"From: \xd5\xc5\xce\xb0 <zhang@customer.example>\r\nSubject: \xb7\xa2\xc6\xb1\r\n");
        raw.extend_from_slice(b"Content-Type: text/plain; charset=gbk\r\n\r\ninner\r\n--B--\r\n");
        let m = parse(&raw).unwrap();
        let inner = &m.attached_messages[0];
        assert_eq!(inner.subject, "发票");
        assert_eq!(inner.from.as_ref().and_then(|f| f.name.as_deref()), Some("张伟"));
        assert_eq!(m.attachments[0].filename, "发票.eml");
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
