//! Rendered notification → RFC 5322 bytes: headers for threading and loop safety, and a
//! multipart/alternative body (text and HTML) — inside multipart/related with the inline
//! images its HTML shows, inside multipart/mixed with the files it carries. Files are
//! written as references to their blobs (see [`super::files`]), put in when the mail is
//! sent.
//!
//! Header values built from what customers wrote (the case subject, names) go through
//! lettre's header encoder, which turns any CR or LF into an RFC 2047 encoded word: a
//! subject such as `Hi\r\nBcc: x@y` stays one Subject header. Subjects and display names
//! are also made one line before that, so they read well (and because lettre panics on a
//! control character in a display name).

use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use rand::Rng;

use crate::address::Address;
use crate::classify::LOOP_HEADER;
use crate::store::records::StoredFile;

/// Longest subject we write, in characters (mail clients cut long ones anyway).
const MAX_SUBJECT_CHARS: usize = 200;

/// Everything that goes into one mail.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub from: &'a Mailbox,
    pub reply_to: &'a Mailbox,
    pub to: &'a Address,
    pub subject: &'a str,
    /// Without angle brackets, as stored.
    pub message_id: &'a str,
    pub in_reply_to: Option<&'a str>,
    /// Oldest first, without angle brackets.
    pub references: &'a [String],
    /// `auto-replied` for an answer to the recipient's own mail, else `auto-generated`.
    pub auto_submitted: &'static str,
    pub instance_id: &'a str,
    /// A `mailto:` URI that stops these mails (watchers).
    pub list_unsubscribe: Option<&'a str>,
    pub text: String,
    pub html: String,
    /// Images the HTML part shows (`<img src="cid:…">`), each with its Content-ID.
    pub inline: &'a [(StoredFile, String)],
    /// Files carried as attachments.
    pub attached: &'a [StoredFile],
}

/// Builds the mail. Fails only for an address lettre cannot write (then the notification
/// is recorded as failed, not sent).
pub fn build(o: Outgoing<'_>) -> Result<Vec<u8>, String> {
    let to: lettre::Address = o.to.as_str().parse().map_err(|e| format!("cannot address a mail to {}: {e}", o.to))?;
    let mut builder = Message::builder()
        .from(one_line_name(o.from))
        .reply_to(one_line_name(o.reply_to))
        .to(Mailbox::new(None, to))
        .subject(subject_line(o.subject))
        .message_id(Some(format!("<{}>", o.message_id)));
    if let Some(parent) = o.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !o.references.is_empty() {
        let refs: Vec<String> = o.references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(refs.join(" "));
    }
    builder = builder
        .raw_header(header("Auto-Submitted", o.auto_submitted))
        .raw_header(header("X-Auto-Response-Suppress", "All"))
        .raw_header(header(LOOP_HEADER, o.instance_id));
    if let Some(uri) = o.list_unsubscribe {
        builder = builder.raw_header(header("List-Unsubscribe", &format!("<{uri}>")));
    }
    // A NUL byte in a composed mail stands for a carried file (see `files`); one in what
    // people wrote is shown as a replacement character, so text can never pass for a file.
    let (text, html) = (o.text.replace('\0', "\u{fffd}"), o.html.replace('\0', "\u{fffd}"));
    let mut body = MultiPart::alternative_plain_html(text, html);
    if !o.inline.is_empty() {
        let mut related = MultiPart::related().multipart(body);
        for (file, cid) in o.inline {
            related = related.singlepart(file_part(file, Some(cid)));
        }
        body = related;
    }
    if !o.attached.is_empty() {
        let mut mixed = MultiPart::mixed().multipart(body);
        for file in o.attached {
            mixed = mixed.singlepart(file_part(file, None));
        }
        body = mixed;
    }
    let message = builder.multipart(body).map_err(|e| format!("cannot build the mail: {e}"))?;
    Ok(message.formatted())
}

/// One carried file: its name and type, inline (with `cid`) or as an attachment, and as
/// its body the reference to its blob (already in its final form: base64 once expanded).
fn file_part(file: &StoredFile, cid: Option<&String>) -> SinglePart {
    let kind = ContentType::parse(&file.content_type).unwrap_or_else(|_| {
        // Stored types were read from mail and lower-cased; one lettre cannot write is
        // sent as what it is to a mail client that cannot tell: bytes.
        ContentType::parse("application/octet-stream").expect("a constant, valid content type")
    });
    let body = Body::dangerous_pre_encoded(super::files::reference(file), ContentTransferEncoding::Base64);
    let name = crate::parse::one_line(&file.filename);
    match cid {
        Some(cid) => Attachment::new_inline_with_name(cid.clone(), name).body(body, kind),
        None => Attachment::new(name).body(body, kind),
    }
}

/// The mailbox with its display name on one line: lettre panics on a control character
/// in a display name (it encodes them everywhere else).
fn one_line_name(mailbox: &Mailbox) -> Mailbox {
    let name = mailbox.name.as_deref().map(crate::parse::one_line).filter(|n| !n.is_empty());
    Mailbox::new(name, mailbox.email.clone())
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// One line, bounded: controls (CR, LF, tabs) become spaces.
pub fn subject_line(subject: &str) -> String {
    let one = crate::parse::one_line(subject);
    match one.char_indices().nth(MAX_SUBJECT_CHARS) {
        Some((cut, _)) => format!("{}…", one[..cut].trim_end()),
        None => one,
    }
}

/// A new, globally unique Message-ID (without brackets) in our own domain, e.g.
/// `19aa3f0c2d1.8f3a…e1.case-42@example.com`: the time in milliseconds (hex), 96 random
/// bits, and the case token for a person reading logs. Starting with the time makes IDs
/// sort in the order they are made, so the indexes that hold them (outbox, the case's
/// Message-IDs) grow at their end instead of touching a random page per notification.
pub fn new_message_id(token: Option<&str>, domain: &str) -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0);
    let random: u128 = rand::thread_rng().gen::<u128>() >> 32;
    let tag = token.map(|t| t.to_ascii_lowercase()).unwrap_or_else(|| "notice".into());
    format!("{millis:011x}.{random:024x}.{tag}@{domain}")
}

/// A `mailto:` URI (RFC 6068) that opens a mail to `to` with this subject and body.
pub fn mailto(to: &Address, subject: &str, body: &str) -> String {
    let mut uri = format!("mailto:{}?subject={}", to.as_str(), percent_encode(subject));
    if !body.is_empty() {
        uri.push_str("&body=");
        uri.push_str(&percent_encode(&body.replace("\r\n", "\n").replace('\n', "\r\n")));
    }
    uri
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn outgoing<'a>(from: &'a Mailbox, to: &'a Address, subject: &'a str, refs: &'a [String]) -> Outgoing<'a> {
        Outgoing {
            from,
            reply_to: from,
            to,
            subject,
            message_id: "case-1.abc@example.com",
            in_reply_to: Some("first@customer.example"),
            references: refs,
            auto_submitted: "auto-generated",
            instance_id: "example.com",
            list_unsubscribe: Some("mailto:support@example.com?subject=%23unwatch"),
            text: "Grüße\n".into(),
            html: "<p>Grüße</p>".into(),
            inline: &[],
            attached: &[],
        }
    }

    #[test]
    fn threading_loop_and_multipart_headers_are_all_there() {
        let from: Mailbox = "Support <support@example.com>".parse().unwrap();
        let to = Address::parse("jane@customer.example").unwrap();
        let refs = ["first@customer.example".to_string(), "second@customer.example".to_string()];
        let raw = build(outgoing(&from, &to, "[CASE-1] Printer", &refs)).unwrap();
        let mail = parse::parse(&raw).unwrap();
        assert_eq!(mail.message_id.as_deref(), Some("case-1.abc@example.com"));
        assert_eq!(mail.in_reply_to, ["first@customer.example"]);
        assert_eq!(mail.references, refs);
        assert_eq!(mail.subject, "[CASE-1] Printer");
        assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
        assert_eq!(mail.header("X-Auto-Response-Suppress"), Some("All"));
        assert_eq!(mail.header(LOOP_HEADER), Some("example.com"));
        assert_eq!(mail.header("Reply-To"), Some("Support <support@example.com>"));
        assert!(mail.header("List-Unsubscribe").unwrap().starts_with("<mailto:"));
        assert!(mail.content_type.starts_with("multipart/alternative"), "{}", mail.content_type);
        assert_eq!(mail.text.trim(), "Grüße");
        assert_eq!(mail.html.as_deref().map(str::trim), Some("<p>Grüße</p>"));
    }

    #[test]
    fn header_values_from_user_input_cannot_inject_headers() {
        let from =
            Mailbox::new(Some("Support\r\nBcc: evil@attacker.example".into()), "support@example.com".parse().unwrap());
        let to = Address::parse("jane@customer.example").unwrap();
        let raw = build(outgoing(&from, &to, "Hello\r\nBcc: evil@attacker.example\r\nX-Evil: 1", &[])).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let header_block = text.split("\r\n\r\n").next().unwrap();
        for line in header_block.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            assert!(
                !lower.starts_with("bcc:") && !lower.starts_with("x-evil:"),
                "injected header line {line:?}\n{text}"
            );
        }
        let mail = parse::parse(&raw).unwrap();
        assert_eq!(mail.subject, "Hello Bcc: evil@attacker.example X-Evil: 1");
        assert!(mail.header("Bcc").is_none() && mail.header("X-Evil").is_none());
        // The display name stays one From header, on one line.
        assert_eq!(mail.headers_named("From").count(), 1);
        assert_eq!(mail.from.as_ref().and_then(|m| m.name.as_deref()), Some("Support Bcc: evil@attacker.example"));
    }

    #[test]
    fn long_subjects_are_cut_and_message_ids_are_unique_in_our_domain() {
        assert_eq!(subject_line(&"x".repeat(500)).chars().count(), MAX_SUBJECT_CHARS + 1);
        let a = new_message_id(Some("CASE-7"), "example.com");
        assert!(a.ends_with(".case-7@example.com"), "{a}");
        let b = new_message_id(Some("CASE-7"), "example.com");
        assert_ne!(a, b);
        // Made later, sorts later (index-friendly), whatever the random part.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let c = new_message_id(None, "example.com");
        assert!(a < c && b < c && c.ends_with(".notice@example.com"), "{a} {b} {c}");
        assert!(parse::clean_message_id(&a).as_deref() == Some(a.as_str()));
    }

    #[test]
    fn carried_files_are_blob_references_until_sent_and_then_the_exact_bytes() {
        use crate::parse::Disposition;
        use crate::store::{BlobSink, BlobStore};
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let png: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let pdf = b"%PDF-1.4 not really a pdf \x00\x01".repeat(50);
        let stored = |id, name: &str, kind: &str, disposition, data: &[u8]| {
            let sha = crate::digest::sha256_hex(data);
            blobs.put(&sha, data).unwrap();
            StoredFile {
                id,
                message: 1,
                filename: name.into(),
                content_type: kind.into(),
                disposition,
                content_id: None,
                size: data.len() as u64,
                sha256: sha,
            }
        };
        let inline =
            [(stored(1, "shot.png", "image/png", Disposition::Inline, &png), "file1.x@example.com".to_string())];
        let attached = [stored(2, "Bericht März.pdf", "application/pdf", Disposition::Attachment, &pdf)];
        let from: Mailbox = "Support <support@example.com>".parse().unwrap();
        let to = Address::parse("jane@customer.example").unwrap();
        let mut o = outgoing(&from, &to, "[CASE-1] Files", &[]);
        o.html = "<p>See <img src=\"cid:file1.x@example.com\"></p>".into();
        o.inline = &inline;
        o.attached = &attached;

        let stored_mail = build(o).unwrap();
        assert!(stored_mail.len() < 3000, "the stored mail holds references, not the files: {}", stored_mail.len());
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let sent = super::super::files::expand(&stored_mail, crate::store::db::Db::Sqlite(&conn), dir.path()).unwrap();
        let mail = parse::parse(&sent).unwrap();
        assert!(mail.content_type.starts_with("multipart/mixed"), "{}", mail.content_type);
        assert_eq!(mail.attachments.len(), 2, "{:?}", mail.attachments.iter().map(|a| &a.filename).collect::<Vec<_>>());
        let shot = mail.attachments.iter().find(|a| a.filename == "shot.png").unwrap();
        assert_eq!((shot.data.as_slice(), shot.disposition), (png.as_slice(), Disposition::Inline));
        assert_eq!(shot.content_id.as_deref(), Some("file1.x@example.com"));
        let report = mail.attachments.iter().find(|a| a.content_type == "application/pdf").unwrap();
        assert_eq!((report.data.as_slice(), report.filename.as_str()), (pdf.as_slice(), "Bericht März.pdf"));
        assert!(mail.html.as_deref().unwrap().contains("cid:file1.x@example.com"));
        assert_eq!(mail.text.trim(), "Grüße");
    }

    #[test]
    fn text_that_imitates_a_file_reference_stays_text() {
        let from: Mailbox = "Support <support@example.com>".parse().unwrap();
        let to = Address::parse("jane@customer.example").unwrap();
        let mut o = outgoing(&from, &to, "[CASE-1] x", &[]);
        let forged = format!("\0casegate-blob:{}:5\0", "ab".repeat(32));
        o.text = format!("look: {forged}\n");
        o.html = format!("<p>{forged}</p>");
        let raw = build(o).unwrap();
        assert!(!super::super::files::carries_files(&raw), "{}", String::from_utf8_lossy(&raw));
        assert!(parse::parse(&raw).unwrap().text.contains("\u{fffd}casegate-blob:"));
    }

    #[test]
    fn mailto_links_prefill_subject_and_body() {
        let to = Address::parse("support@example.com").unwrap();
        let uri = mailto(&to, "Re: [CASE-1] #accept", "Thanks!\nIt works.");
        assert_eq!(
            uri,
            "mailto:support@example.com?subject=Re%3A%20%5BCASE-1%5D%20%23accept&body=Thanks%21%0D%0AIt%20works."
        );
    }
}
