//! Reading a bounce: for each recipient the report is about, the final address, what
//! happened (failed, delayed, delivered), the DSN status code (`5.1.1`), the SMTP reply
//! code (`550`), the server's diagnostic, a [`Cause`] and whether it is a hard bounce —
//! and the Message-IDs of the mail that came back, which tie the bounce to what was sent.
//!
//! # How a report is read
//!
//! Mail systems write bounces three ways, and the reader tries them in this order:
//!
//! 1. **A delivery status part** (RFC 3464 `message/delivery-status`, in a
//!    `multipart/report` or, from some gateways, in a `multipart/mixed`; or the same
//!    fields pasted into the text): one block of fields per recipient — `Final-Recipient`,
//!    `Action`, `Status`, `Diagnostic-Code`. Blocks that forget the blank line between them
//!    are split where a second recipient field starts.
//! 2. **`X-Failed-Recipients`** (Exim, Gmail): the addresses, with the reasons in the text.
//! 3. **The text alone** (qmail, old Sendmail and Exim, Exchange 2003, Lotus Notes, carriers'
//!    gateways, in any language): the text above the returned message is read for the
//!    addresses it names — other than those of the bounce's own sender and addressee and of
//!    mail system mailboxes such as `postmaster@` — and each recipient's part of the text
//!    (from its address to the next one's; the whole text when there is one recipient) for
//!    the codes and words that say why.
//!
//! Where the returned message starts is found by the separators mail systems write ("---
//! Below this line is a copy of the message.", "----- Original message -----", ...) or by
//! the first block of header lines; it is never read for recipients, since its own `To:`
//! names everyone the mail was for, not who it failed for.
//!
//! A status field of `x.0.0` says little: when the diagnostic has a more specific code of
//! the same class (`550 5.1.1 ...`), that one is the status. The cause is read from the
//! words first, then the codes (see [`cause_of`]).
//!
//! Everything is bounded: at most [`MAX_SCAN`] bytes of text are read, [`MAX_RECIPIENTS`]
//! recipients kept and [`MAX_RETURNED_IDS`] Message-IDs, and diagnostics are cut to
//! [`MAX_DIAGNOSTIC`] characters. The regular expressions are linear in their input. The
//! reader never panics; what it cannot read it leaves out.

mod cause;

pub use cause::{cause_in, cause_of, is_hard, stage_of, Cause, Stage};

use std::sync::OnceLock;

use regex::Regex;

use crate::address::Address;
use crate::parse::InboundMail;

/// Most bytes of text read from a bounce (its text, its status parts, its returned part).
pub const MAX_SCAN: usize = 64 * 1024;
/// Most recipients one report yields.
pub const MAX_RECIPIENTS: usize = 50;
/// Most Message-IDs of returned mail kept.
pub const MAX_RETURNED_IDS: usize = 8;
/// Longest diagnostic kept, in characters.
pub const MAX_DIAGNOSTIC: usize = 300;
/// Most lines of the text read for recipients.
const MAX_LINES: usize = 2_000;
/// Most lines after a recipient's address read as its part of the text.
const SEGMENT_LINES: usize = 15;

/// What a bounce says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every recipient the report is about, in its order.
    pub recipients: Vec<Recipient>,
    /// Message-IDs of the mail that came back (the attached or quoted original, then the
    /// bounce's own In-Reply-To and References), without angle brackets.
    pub returned_ids: Vec<String>,
}

impl Report {
    /// The recipients whose delivery failed for good.
    pub fn failed(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.action == Action::Failed)
    }
}

/// What happened to the mail for one recipient (RFC 3464 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    /// Not delivered yet; the sending server keeps trying.
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// One recipient of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The final address (`Final-Recipient`, else the address the text names).
    pub address: Address,
    /// The address as the sender wrote it, when the report says (`Original-Recipient`).
    pub original: Option<Address>,
    pub action: Action,
    /// The DSN status code, e.g. `5.1.1`.
    pub status: Option<String>,
    /// The SMTP reply code, e.g. `550`.
    pub reply_code: Option<u16>,
    /// What the receiving server said, on one line (bounded); empty when nothing did.
    pub diagnostic: String,
    pub cause: Cause,
    /// The address cannot receive mail (see [`is_hard`]).
    pub hard: bool,
}

impl Recipient {
    /// `5.1.1 user-unknown: 550 5.1.1 <a@x>: Recipient address rejected` — the status,
    /// the cause and the diagnostic, for `last_error` and the log.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if let Some(status) = &self.status {
            out.push_str(status);
            out.push(' ');
        } else if let Some(code) = self.reply_code {
            out.push_str(&format!("{code} "));
        }
        out.push_str(self.cause.as_str());
        if !self.diagnostic.is_empty() {
            out.push_str(": ");
            out.push_str(&self.diagnostic);
        }
        out
    }
}

/// Reads the report in `mail`, if it names any recipient. `raw` is the mail as received:
/// when the parser could not make out the report's parts (a boundary that does not match,
/// a broken part header), its body is read as text instead.
pub fn parse(mail: &InboundMail, raw: &[u8]) -> Option<Report> {
    read(mail, &readable_text(mail)).or_else(|| read(mail, &raw_body(raw)))
}

fn read(mail: &InboundMail, body: &str) -> Option<Report> {
    let (text, returned) = split_returned(body);
    let ours = own_addresses(mail);
    let mut found = status_recipients(mail, text);
    if found.is_empty() {
        found = header_recipients(mail);
    }
    if found.is_empty() {
        found = text_recipients(text, &ours);
    }
    if found.is_empty() {
        found = returned_recipient(mail, returned);
    }
    if found.is_empty() {
        return None;
    }
    found.truncate(MAX_RECIPIENTS);
    let all: Vec<Address> = found.iter().filter_map(|f| f.address.clone()).collect();
    let recipients = found.into_iter().map(|f| complete(f, text, &all)).collect();
    Some(Report { recipients, returned_ids: returned_ids(mail, returned) })
}

/// The body of a raw mail (after the first blank line), at most [`MAX_SCAN`] bytes.
fn raw_body(raw: &[u8]) -> String {
    let start = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let start = start.or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)).unwrap_or(raw.len());
    let body = &raw[start..];
    String::from_utf8_lossy(&body[..body.len().min(MAX_SCAN)]).into_owned()
}

/// The text of the report: the mail's text, and the parts the parser could not split for
/// lack of a boundary (kept as `multipart/...` attachments), or the text parts it kept as
/// attachments when there is no text body at all; at most [`MAX_SCAN`] bytes.
fn readable_text(mail: &InboundMail) -> String {
    let mut text = bounded(&mail.text).to_string();
    let empty = text.trim().is_empty();
    let unsplit = |ct: &str| ct.starts_with("multipart/") || (empty && ct == "text/plain");
    for part in mail.attachments.iter().filter(|a| unsplit(&a.content_type)).take(4) {
        if text.len() >= MAX_SCAN {
            break;
        }
        let data = &part.data[..part.data.len().min(MAX_SCAN - text.len())];
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(data));
    }
    text
}

/// A recipient as found, before its codes and cause are worked out.
#[derive(Debug, Default)]
struct Found {
    address: Option<Address>,
    original: Option<Address>,
    action: Option<Action>,
    status: Option<String>,
    /// The `Diagnostic-Code` field, or nothing.
    diagnostic: String,
    /// The part of the text about this recipient.
    context: String,
}

/// The first [`MAX_SCAN`] bytes of `text`, cut at a character boundary.
fn bounded(text: &str) -> &str {
    let mut cut = text.len().min(MAX_SCAN);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

// ---------------------------------------------------------------------------------------
// Regular expressions (compiled once; the crate's are linear in their input)
// ---------------------------------------------------------------------------------------

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("the pattern is a constant that compiles"))
}

/// Something that looks like a mail address (validated with [`Address::parse`] after).
fn address_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    regex(
        &CELL,
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}",
    )
}

/// A DSN status code, not part of a longer dotted number (an IP address, a version).
fn status_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    regex(&CELL, r"(?:^|[^0-9.])([245]\.[0-7]\.[0-9]{1,3})(?:[^0-9.]|\.\s|\.$|$)")
}

/// An SMTP reply code where servers write one: at the start, or after `said:`, `;`, `(` or
/// `#`, followed by a space, a dash or the end.
fn reply_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    regex(&CELL, r"(?:^|[\s:;(\[#<])([245][0-9][0-9])(?:[\s-]|$)")
}

/// A `Message-ID:` header line in returned text.
fn message_id_pattern() -> &'static Regex {
    static CELL: OnceLock<Regex> = OnceLock::new();
    regex(&CELL, r"(?im)^[ \t]*message-id:[ \t]*<?([^\s<>]+@[^\s<>]+?)>?[ \t]*$")
}

/// The first valid address in `text`.
fn first_address(text: &str) -> Option<Address> {
    address_pattern().find_iter(text).find_map(|m| Address::parse(m.as_str().trim_matches('.')))
}

// ---------------------------------------------------------------------------------------
// Where the returned message starts
// ---------------------------------------------------------------------------------------

/// What mail systems write above the message they return (lower case, matched anywhere in
/// a line).
const RETURNED_SEPARATORS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "copy of the original message",
    "original message follows",
    "----- original message -----",
    "-----original message-----",
    "------ this is a copy",
    "original message headers",
    "headers of the original message",
    "message headers follow",
    "returned message follows",
    "--- the header of the original message",
    "----- the header of the original message",
    "undelivered message attached",
    "------- returned message --------",
    "--- below this line",
    "original mail as follows",
    "message text follows",
];

/// Header names of a returned message's header block.
const HEADER_NAMES: &[&str] = &[
    "received",
    "return-path",
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "domainkey-signature",
    "delivered-to",
    "reply-to",
    "sender",
    "references",
    "in-reply-to",
    "x-mailer",
    "authentication-results",
    "arc-seal",
    "x-received",
    "x-google-smtp-source",
];

/// Of [`HEADER_NAMES`], those neither a report's own summary of the mail ("To: ...
/// Subject: ...") nor the headers of a MIME part (`Content-Type`) have: a block of header
/// lines with one of them is the returned message.
const TRANSPORT_HEADERS: &[&str] = &[
    "received",
    "return-path",
    "message-id",
    "dkim-signature",
    "domainkey-signature",
    "delivered-to",
    "references",
    "in-reply-to",
    "x-mailer",
    "authentication-results",
    "arc-seal",
    "x-received",
    "x-google-smtp-source",
];

/// The text above the returned message, and the returned part (possibly empty).
fn split_returned(text: &str) -> (&str, &str) {
    let mut offset = 0;
    // The block of header lines being read: where it starts, and whether it has a
    // transport header yet.
    let mut block: Option<(usize, usize, bool)> = None;
    for line in text.split_inclusive('\n') {
        let lower = line.to_lowercase();
        if RETURNED_SEPARATORS.iter().any(|s| lower.contains(s)) {
            return (&text[..offset], &text[offset..]);
        }
        match header_name(line) {
            Some(name) => {
                let transport = TRANSPORT_HEADERS.contains(&name.as_str());
                let (start, lines, seen) = block.unwrap_or((offset, 0, false));
                block = Some((start, lines + 1, seen || transport));
            }
            None if line.starts_with([' ', '\t']) && block.is_some() => {}
            None => block = None,
        }
        if let Some((start, lines, true)) = block {
            if lines >= 2 {
                return (&text[..start], &text[start..]);
            }
        }
        offset += line.len();
    }
    (text, "")
}

/// The lower-case name of a `Name: value` line a returned message's headers begin with.
fn header_name(line: &str) -> Option<String> {
    let (name, _) = line.split_once(':')?;
    let name = name.to_ascii_lowercase();
    (!name.starts_with([' ', '\t']) && HEADER_NAMES.contains(&name.as_str())).then_some(name)
}

// ---------------------------------------------------------------------------------------
// 1. Delivery status fields
// ---------------------------------------------------------------------------------------

/// Content types of a delivery status part.
const STATUS_TYPES: &[&str] = &["message/delivery-status", "message/global-delivery-status"];

/// Field names that start a recipient's block.
const RECIPIENT_FIELDS: &[&str] = &["final-recipient", "original-recipient", "x-actual-recipient"];

/// The recipients of the status part (or of status fields pasted into the text).
fn status_recipients(mail: &InboundMail, text: &str) -> Vec<Found> {
    let mut sources: Vec<String> = Vec::new();
    if let Some(status) = &mail.delivery_status {
        sources.push(bounded(status).to_string());
    }
    for part in mail.attachments.iter().filter(|a| STATUS_TYPES.contains(&a.content_type.as_str())).take(4) {
        let data = &part.data[..part.data.len().min(MAX_SCAN)];
        sources.push(String::from_utf8_lossy(data).into_owned());
    }
    sources.push(text.to_string());
    for source in &sources {
        let found = status_blocks(source);
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// The recipient blocks of a status report: unfolded fields, blocks split at blank lines
/// or where a second recipient field begins.
fn status_blocks(status: &str) -> Vec<Found> {
    let fields = unfolded_fields(status);
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for field in fields {
        let Some((name, value)) = field else {
            blocks.push(Vec::new());
            continue;
        };
        let current = blocks.last_mut().expect("there is always a current block");
        let repeats = RECIPIENT_FIELDS.contains(&name.as_str()) && current.iter().any(|(n, _)| *n == name);
        if repeats {
            blocks.push(vec![(name, value)]);
        } else {
            current.push((name, value));
        }
        if blocks.len() > MAX_RECIPIENTS * 2 {
            break;
        }
    }
    blocks.iter().filter_map(|b| block_recipient(b)).take(MAX_RECIPIENTS).collect()
}

/// `Some((lower-case name, value))` for each field, continuation lines joined; `None` for
/// each blank line (a block boundary).
fn unfolded_fields(status: &str) -> Vec<Option<(String, String)>> {
    let mut out: Vec<Option<(String, String)>> = Vec::new();
    for line in status.lines().take(MAX_LINES) {
        if line.trim().is_empty() {
            out.push(None);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(Some((_, value))) = out.last_mut() {
                if value.len() < MAX_SCAN / 4 {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
            continue;
        }
        let field = line.split_once(':').filter(|(n, _)| {
            !n.is_empty() && n.len() <= 40 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        out.push(field.map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string())));
    }
    out
}

fn block_recipient(block: &[(String, String)]) -> Option<Found> {
    let get = |name: &str| block.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let address = ["final-recipient", "x-actual-recipient", "original-recipient"]
        .iter()
        .find_map(|f| get(f).and_then(field_address))?;
    let original = get("original-recipient").and_then(field_address);
    let status = get("status").and_then(|v| status_pattern().captures(v)).map(|c| c[1].to_string());
    let action = get("action").and_then(action_of);
    let diagnostic = get("diagnostic-code").map(|v| typed_value(v).to_string()).unwrap_or_default();
    Some(Found { address: Some(address), original, action, status, diagnostic, context: String::new() })
}

/// The address of a recipient field: the value itself (a quoted local part is an address
/// too), else the first address in it.
fn field_address(value: &str) -> Option<Address> {
    let value = typed_value(value);
    let bare = value.split_whitespace().next().unwrap_or_default();
    Address::parse(bare).or_else(|| first_address(value))
}

/// The value of a typed field (`rfc822; a@x`, `smtp; 550 ...`) without its type.
fn typed_value(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if kind.len() <= 20 && !kind.contains(' ') && !kind.contains('@') => rest.trim(),
        _ => value.trim(),
    }
}

fn action_of(value: &str) -> Option<Action> {
    let word = value.split(|c: char| !c.is_ascii_alphabetic()).find(|w| !w.is_empty())?.to_ascii_lowercase();
    Some(match word.as_str() {
        "failed" | "failure" => Action::Failed,
        "delayed" => Action::Delayed,
        "delivered" => Action::Delivered,
        "relayed" => Action::Relayed,
        "expanded" => Action::Expanded,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// 2. X-Failed-Recipients
// ---------------------------------------------------------------------------------------

fn header_recipients(mail: &InboundMail) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for value in mail.headers_named("X-Failed-Recipients") {
        for m in address_pattern().find_iter(value) {
            let Some(address) = Address::parse(m.as_str().trim_matches('.')) else { continue };
            if out.len() < MAX_RECIPIENTS && !out.iter().any(|f| f.address.as_ref() == Some(&address)) {
                out.push(Found { address: Some(address), ..Found::default() });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 3. The text
// ---------------------------------------------------------------------------------------

/// Local parts of mail system mailboxes, which a report names for help, not as recipients.
const SYSTEM_LOCAL_PARTS: &[&str] =
    &["postmaster", "mailer-daemon", "mailer_daemon", "mailerdaemon", "abuse", "hostmaster", "double-bounce"];

/// Words just before an address that make it the sender's or a Message-ID, not a recipient.
const NOT_RECIPIENT_BEFORE: &[&str] = &[
    "from:",
    "from: <",
    "from <",
    "from=<",
    "mail from:<",
    "mail from: <",
    "sender:",
    "sender: <",
    "sender <",
    "return-path:",
    "return-path: <",
    "message-id:",
    "message-id: <",
    " id:",
    " id: <",
    "reply-to:",
    "reply-to: <",
    "envelope-from",
    " by",
    "contact",
    "contact:",
    "contact <",
    "send mail to",
    "write to",
];

/// The bounce's own addresses: its sender's and its addressee's (the original sender).
fn own_addresses(mail: &InboundMail) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    let boxes = mail.from.iter().chain(&mail.sender).chain(&mail.to).chain(&mail.cc).chain(&mail.reply_to);
    out.extend(boxes.map(|m| m.address.clone()));
    for value in ["Return-Path", "Delivered-To"].iter().flat_map(|h| mail.headers_named(h)) {
        out.extend(first_address(value));
    }
    out
}

fn text_recipients(text: &str, ours: &[Address]) -> Vec<Found> {
    let lines: Vec<&str> = text.lines().take(MAX_LINES).collect();
    let mut anchors: Vec<(usize, Address)> = Vec::new();
    // An address first named as the sender, a contact or a Message-ID stays out, wherever
    // it comes again.
    let mut excluded: Vec<Address> = ours.to_vec();
    for (i, line) in lines.iter().enumerate() {
        for m in address_pattern().find_iter(line) {
            let Some(address) = Address::parse(m.as_str().trim_matches('.')) else { continue };
            if excluded.contains(&address) || anchors.iter().any(|(_, a)| *a == address) {
                continue;
            }
            let before = line[..m.start()].to_lowercase();
            let before = before.trim_end().trim_end_matches(['<', '"', '\'']).trim_end();
            if SYSTEM_LOCAL_PARTS.contains(&address.local_part())
                || NOT_RECIPIENT_BEFORE.iter().any(|w| before.ends_with(w.trim_end_matches([' ', '<'])))
            {
                excluded.push(address);
            } else {
                anchors.push((i, address));
            }
        }
        if anchors.len() >= MAX_RECIPIENTS {
            break;
        }
    }
    let single = anchors.len() == 1;
    let mut out = Vec::with_capacity(anchors.len());
    for (k, (line, address)) in anchors.iter().enumerate() {
        let end = anchors.get(k + 1).map_or(lines.len(), |(next, _)| (*next).max(line + 1));
        let end = end.min(line + 1 + SEGMENT_LINES);
        let context = if single { text.to_string() } else { lines[*line..end].join("\n") };
        out.push(Found { address: Some(address.clone()), context, ..Found::default() });
    }
    out
}

/// The one address the returned message was for, when the report names none: the mail
/// came back from its only recipient.
fn returned_recipient(mail: &InboundMail, returned: &str) -> Vec<Found> {
    let from_attached =
        mail.attached_messages.first().map(|m| m.to.iter().chain(&m.cc).map(|b| b.address.clone()).collect());
    let to: Vec<Address> = from_attached.unwrap_or_else(|| {
        let headers = crate::parse::parse_headers(returned.trim_start().as_bytes());
        headers.map(|h| h.to.iter().chain(&h.cc).map(|b| b.address.clone()).collect()).unwrap_or_default()
    });
    match to.as_slice() {
        [only] => vec![Found { address: Some(only.clone()), ..Found::default() }],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Completing each recipient: codes, cause, diagnostic
// ---------------------------------------------------------------------------------------

fn complete(found: Found, text: &str, all: &[Address]) -> Recipient {
    let address = found.address.expect("every found recipient has an address");
    // Where the diagnostic is thin, the text around the address (or all of it, for the
    // only recipient) says more.
    let context = if !found.context.is_empty() {
        found.context
    } else if all.len() == 1 {
        text.to_string()
    } else {
        segment_about(text, &address, all)
    };
    let said = if found.diagnostic.is_empty() { context.as_str() } else { found.diagnostic.as_str() };
    let status = best_status(found.status, said, &context);
    let reply_code = first_reply(said).or_else(|| first_reply(&context));
    let action = found.action.unwrap_or_else(|| action_from(status.as_deref(), reply_code, &context));
    // What the server answered decides; the rest of the text only where it says nothing.
    let words = format!("{}\n{}", found.diagnostic, context);
    let stage = stage_of(&words);
    let cause = cause_in(&found.diagnostic, &context, status.as_deref(), reply_code, stage);
    let permanent = match (status.as_deref(), reply_code) {
        (Some(s), _) => s.starts_with('5'),
        (None, Some(code)) => code >= 500,
        (None, None) => action != Action::Delayed,
    };
    let diagnostic = if found.diagnostic.is_empty() {
        one_line_bounded(&diagnostic_line(&context))
    } else {
        one_line_bounded(&found.diagnostic)
    };
    Recipient {
        address,
        original: found.original,
        action,
        status,
        reply_code,
        diagnostic,
        cause,
        hard: action == Action::Failed && is_hard(cause, permanent),
    }
}

/// The lines of `text` from the first that names `address`, to the next blank line or the
/// next line about another of the report's recipients (or a few lines on).
fn segment_about(text: &str, address: &Address, all: &[Address]) -> String {
    let lines: Vec<&str> = text.lines().take(MAX_LINES).collect();
    let names = |line: &str, a: &Address| line.to_lowercase().contains(a.as_str());
    let Some(start) = lines.iter().position(|l| names(l, address)) else {
        return String::new();
    };
    let last = lines.len().min(start + SEGMENT_LINES);
    let end = (start + 1..last)
        .find(|&i| {
            let line = lines[i];
            line.trim().is_empty()
                || all.iter().any(|other| other != address && names(line, other) && !names(line, address))
        })
        .unwrap_or(last);
    lines[start..end].join("\n")
}

/// The status code: the one in what the server said when it has one (the server's own
/// word is more precise than the reporting system's summary, which is often `x.0.0` or
/// the class of its last retry), else the status field, else the first code in the
/// context.
fn best_status(field: Option<String>, said: &str, context: &str) -> Option<String> {
    diagnostic_status(said).or(field).or_else(|| first_status(context))
}

/// The status code in a server's answer: the one right after a reply code (`550 5.1.1`,
/// `550-5.1.1`, `550-'5.7.1`) when there is one, else the first.
fn diagnostic_status(said: &str) -> Option<String> {
    static CELL: OnceLock<Regex> = OnceLock::new();
    let after_reply =
        regex(&CELL, r"(?:^|[^0-9])[245][0-9][0-9][ \-]['\x22]?([245]\.[0-7]\.[0-9]{1,3})(?:[^0-9.]|\.\s|\.$|$)");
    after_reply.captures(said).map(|c| c[1].to_string()).or_else(|| first_status(said))
}

fn first_status(text: &str) -> Option<String> {
    status_pattern().captures(text).map(|c| c[1].to_string())
}

fn first_reply(text: &str) -> Option<u16> {
    reply_pattern().captures(text).and_then(|c| c[1].parse().ok())
}

/// The action a report without an `Action` field implies: a temporary code with words of
/// retrying is a delay, a success code a delivery, anything else a failure.
fn action_from(status: Option<&str>, reply: Option<u16>, context: &str) -> Action {
    let class = status.map(|s| s.as_bytes()[0]).or_else(|| reply.map(|c| if c >= 500 { b'5' } else { b'4' }));
    if class == Some(b'2') {
        return Action::Delivered;
    }
    let lower = context.to_lowercase();
    let retrying = ["will keep trying", "will continue", "still trying", "will retry", "has been delayed", "delayed"]
        .iter()
        .any(|w| lower.contains(w));
    if class == Some(b'4') && retrying {
        Action::Delayed
    } else {
        Action::Failed
    }
}

/// The line that carries the server's answer (a reply or status code), with the line
/// after it when the answer wraps; else the first lines of the context.
fn diagnostic_line(context: &str) -> String {
    let lines: Vec<&str> = context.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let coded = lines.iter().position(|l| first_reply(l).is_some() || first_status(l).is_some());
    match coded {
        Some(i) => lines[i..lines.len().min(i + 2)].join(" "),
        None => lines.iter().take(3).copied().collect::<Vec<_>>().join(" "),
    }
}

/// `text` on one line, whitespace collapsed, at most [`MAX_DIAGNOSTIC`] characters.
fn one_line_bounded(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if out.chars().count() + word.chars().count() + 1 > MAX_DIAGNOSTIC {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

// ---------------------------------------------------------------------------------------
// What came back
// ---------------------------------------------------------------------------------------

/// The Message-IDs that name the mail that bounced: of the attached message, of returned
/// headers, of a `Message-ID:` line in the returned text, then the bounce's own
/// In-Reply-To and References (some systems thread their bounces).
fn returned_ids(mail: &InboundMail, returned_text: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut add = |id: &str| {
        if let Some(id) = crate::parse::clean_message_id(id) {
            if ids.len() < MAX_RETURNED_IDS && !ids.contains(&id) {
                ids.push(id);
            }
        }
    };
    for attached in mail.attached_messages.iter().take(MAX_RETURNED_IDS) {
        if let Some(id) = &attached.message_id {
            add(id);
        }
    }
    for part in mail.attachments.iter().filter(|a| a.content_type == "text/rfc822-headers").take(4) {
        let data = &part.data[..part.data.len().min(MAX_SCAN)];
        if let Some(id) = crate::parse::parse_headers(data).and_then(|h| h.message_id) {
            add(&id);
        }
    }
    let texty = mail.attachments.iter().filter(|a| a.content_type.starts_with("text/")).take(4);
    let texts = std::iter::once(returned_text.to_string())
        .chain(texty.map(|a| String::from_utf8_lossy(&a.data[..a.data.len().min(MAX_SCAN)]).into_owned()));
    for text in texts {
        for c in message_id_pattern().captures_iter(&text).take(MAX_RETURNED_IDS) {
            add(&c[1]);
        }
    }
    for id in mail.in_reply_to.iter().chain(mail.references.iter().rev()) {
        add(id);
    }
    ids
}

// ---------------------------------------------------------------------------------------
// The return path (VERP)
// ---------------------------------------------------------------------------------------

/// The envelope sender of outbox row `row` under the return path `base`
/// (`bounce@example.com` → `bounce+17@example.com`): a bounce comes back to it, and names
/// the row without being read at all.
pub fn return_path(base: &Address, row: i64) -> String {
    format!("{}+{row}@{}", base.local_part(), base.domain())
}

/// Headers in which the address a mail was delivered to shows.
const DELIVERY_HEADERS: &[&str] =
    &["To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Delivered-To"];

/// The outbox row a mail names by arriving at its return path, if it does.
pub fn return_path_row(mail: &InboundMail, base: &Address) -> Option<i64> {
    let prefix = format!("{}+", base.local_part());
    DELIVERY_HEADERS.iter().flat_map(|h| mail.headers_named(h)).take(20).find_map(|value| {
        address_pattern().find_iter(value).take(20).find_map(|m| {
            let address = Address::parse(m.as_str())?;
            let row = address.local_part().strip_prefix(&prefix)?;
            if address.domain() != base.domain() || row.is_empty() || !row.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            row.parse().ok().filter(|r: &i64| *r > 0)
        })
    })
}

#[cfg(test)]
mod tests;
