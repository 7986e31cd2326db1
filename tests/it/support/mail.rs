//! Mails as a person's client writes them to the support address, for the tests that
//! feed casegate by `ingest`, by Maildir or through Dovecot.

/// A plain-text mail from `from` (an address, or `Name <address>`) to
/// support@example.com: CRLF line endings, a fixed Date, UTF-8 text. `headers` are more
/// header lines, each ending in CRLF (threading, Cc...); `message_id` goes inside `<>`.
pub fn to_support(from: &str, subject: &str, message_id: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n{headers}\r\n{body}\r\n"
    )
    .into_bytes()
}
