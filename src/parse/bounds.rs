//! Bounds on what mail-parser is given to parse: past a number of attached messages and of
//! multipart containers, their `Content-Type` is made opaque to it (one byte changed, so
//! every offset stays) and what they hold is kept as an attachment, unparsed.
//!
//! mail-parser's cost grows with both in hostile mail whose boundaries are broken: each
//! attached message whose boundary is never found gets the text of the rest of the mail
//! (862 nested in each other took 104 MB for 238 KB, fixtures/fuzz/010.eml), and each
//! multipart whose boundary is never found is searched for it to the end of the mail
//! before being read as text (1,897 such took 3.3 s for 8 MB, the generated fixture 012 in
//! tests/fuzz has its shape). Real mail stays far inside both: the shared corpus has at most 6
//! multipart containers in one mail.

use std::borrow::Cow;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};

/// Attached messages (`message/rfc822`, `message/global` parts, and digests of them) that
/// mail-parser parses as messages; the rest are kept as `.eml` files without being parsed.
pub const MAX_PARSED_MESSAGES: usize = 8;

/// Multipart containers (other than digests, counted as messages) that mail-parser parses;
/// the rest are kept as attachments of their own, unparsed.
pub const MAX_PARSED_MULTIPARTS: usize = 32;

/// What a `Content-Type` value is made to read when it is made opaque, and the type it
/// stands for: attached messages (the last byte changed) ...
const OPAQUE_MESSAGES: [(&str, &str); 3] = [
    ("message/rfc82-", "message/rfc822"),
    ("message/globa-", "message/global"),
    ("multipart/diges-", "multipart/digest"),
];

/// ... and multipart containers of any subtype (the last letter of the type changed).
const OPAQUE_MULTIPART: (&str, &str) = ("multipar-/", "multipart/");

/// The type an opaque `Content-Type` (lower case, as `content_type_of` cleans it) stands
/// for; `None` for a type that was not made opaque.
pub fn real_type(clean: &str) -> Option<String> {
    if let Some((_, real)) = OPAQUE_MESSAGES.iter().find(|(mark, _)| *mark == clean) {
        return Some(real.to_string());
    }
    let (mark, real) = OPAQUE_MULTIPART;
    clean.strip_prefix(mark).map(|subtype| format!("{real}{subtype}"))
}

/// `raw` with the `Content-Type` values of attached messages after the first
/// [`MAX_PARSED_MESSAGES`] and of multipart containers after the first
/// [`MAX_PARSED_MULTIPARTS`] made opaque to mail-parser; `raw` itself when it has no more.
pub fn bounded(raw: &[u8]) -> Cow<'_, [u8]> {
    opaque_beyond(raw, MAX_PARSED_MESSAGES, MAX_PARSED_MULTIPARTS)
}

/// The scan does not parse MIME: every `Content-Type` header line (folded ones included)
/// anywhere counts, also one in a body, which can only make it stop parsing sooner. It
/// walks the lines (a look at the first bytes of each) and searches only those of a
/// `Content-Type` header for the types, so base64 bodies cost next to nothing.
fn opaque_beyond(raw: &[u8], keep_messages: usize, keep_multiparts: usize) -> Cow<'_, [u8]> {
    static TYPES: OnceLock<AhoCorasick> = OnceLock::new();
    let types = TYPES.get_or_init(|| {
        let patterns = OPAQUE_MESSAGES.iter().map(|(_, real)| *real).chain([OPAQUE_MULTIPART.1]);
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)
            .expect("constant patterns")
    });
    let (mut messages, mut multiparts) = (0, 0);
    let mut out: Option<Vec<u8>> = None;
    let mut in_content_type = false;
    let mut start = 0;
    while start < raw.len() {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i + 1);
        let line = &raw[start..end];
        // A line starting with white space continues the header before it.
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            in_content_type = names_content_type(line);
        }
        if in_content_type {
            for found in types.find_iter(line) {
                let is_message = found.pattern().as_usize() < OPAQUE_MESSAGES.len();
                let (seen, keep) =
                    if is_message { (&mut messages, keep_messages) } else { (&mut multiparts, keep_multiparts) };
                *seen += 1;
                if *seen > keep {
                    // The last byte for a message, the `t` of `multipart` for a container.
                    let at = if is_message { found.end() - 1 } else { found.end() - 2 };
                    out.get_or_insert_with(|| raw.to_vec())[start + at] = b'-';
                }
            }
        }
        start = end;
    }
    out.map_or(Cow::Borrowed(raw), Cow::Owned)
}

/// Whether a header line is a `Content-Type` (any case, white space before the colon).
fn names_content_type(line: &[u8]) -> bool {
    const NAME: &[u8] = b"content-type";
    line.len() > NAME.len()
        && line[..NAME.len()].eq_ignore_ascii_case(NAME)
        && line[NAME.len()..].trim_ascii_start().first() == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn at_most_the_kept_number_the_mail_is_given_as_it_came() {
        let digests = b"Content-Type: multipart/digest; boundary=x\r\n\r\n--x\r\n\r\n".repeat(8);
        assert!(matches!(opaque_beyond(&digests, 8, 0), Cow::Borrowed(_)), "digests are messages, not multiparts");
        let mixed = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n".repeat(32);
        assert!(matches!(opaque_beyond(&mixed, 0, 32), Cow::Borrowed(_)));
    }

    #[test]
    fn messages_and_multiparts_are_counted_apart() {
        let one = "Content-Type: multipart/digest; boundary=x\r\n\r\n--x\r\nContent-Type: Message/RFC822\r\n\r\n\
                   Content-Type: MULTIPART/alternative; boundary=y\r\n\r\n";
        let bounded = text(&opaque_beyond(one.repeat(10).as_bytes(), 8, 4));
        assert_eq!(bounded.matches("multipart/diges-").count(), 10 - 4, "digests and attached messages share a count");
        assert_eq!(bounded.matches("Message/RFC82-").count(), 10 - 4);
        assert_eq!(bounded.matches("MULTIPAR-/alternative").count(), 10 - 4);
        assert_eq!(bounded.len(), one.len() * 10, "every offset stays");
    }

    #[test]
    fn folded_and_spaced_headers_count_prose_does_not() {
        let folded = b"Content-Type:\r\n\t multipart/related;\r\n boundary=x\r\n\r\n".repeat(3);
        assert_eq!(text(&opaque_beyond(&folded, 0, 1)).matches("multipar-/related").count(), 2);
        let spaced = b"content-type   :   message/rfc822\r\n\r\n".repeat(2);
        assert_eq!(text(&opaque_beyond(&spaced, 1, 0)).matches("message/rfc82-").count(), 1);
        let prose = b"Subject: send it as multipart/mixed or message/rfc822\r\n\r\nmultipart/mixed\r\n".repeat(50);
        assert!(matches!(opaque_beyond(&prose, 0, 0), Cow::Borrowed(_)));
        // Another header after a Content-Type ends it.
        let after = b"Content-Type: text/plain\r\nX-Note: multipart/mixed\r\n\r\n";
        assert!(matches!(opaque_beyond(after, 0, 0), Cow::Borrowed(_)));
    }

    #[test]
    fn opaque_types_map_back_to_the_real_ones() {
        assert_eq!(real_type("message/rfc82-").as_deref(), Some("message/rfc822"));
        assert_eq!(real_type("multipart/diges-").as_deref(), Some("multipart/digest"));
        assert_eq!(real_type("multipar-/related").as_deref(), Some("multipart/related"));
        assert_eq!(real_type("multipart/related"), None);
        assert_eq!(real_type("text/plain"), None);
    }
}
