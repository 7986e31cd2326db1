//! Forwarded mail: recognising the markers mail programs put above a forwarded message.
//!
//! Reply trimming keeps an explicitly forwarded message, since it is new information for the
//! case; this module tells such markers apart from ordinary text.

use std::sync::LazyLock;

use regex::Regex;

/// How the original was embedded in the forwarder's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardStyle {
    /// A dashed "---------- Forwarded message ---------" line (Gmail, and webmail such as
    /// Yahoo and Outlook.com with five dashes).
    Gmail,
    /// Thunderbird's "-------- Forwarded Message --------" line.
    Thunderbird,
    /// Outlook's From/Sent header block, or "-----Original Message-----", with a forward
    /// prefix on the subject.
    Outlook,
    /// Apple Mail's "Begin forwarded message:".
    AppleMail,
    /// The original attached as a `message/rfc822` part.
    Attached,
}

// ---------------------------------------------------------------------------------------
// Marker lines

static DASHED_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[*_\s]*(-{2,})\s*(?:forwarded message|forwarded e-?mail|weitergeleitete nachricht|message transféré|message transfere|mensaje reenviado|messaggio inoltrato|doorgestuurd bericht|mensagem encaminhada|mensagem reencaminhada|vidarebefordrat meddelande|videresendt melding|videresendt meddelelse|przekazana wiadomość|wiadomość przekazana|пересылаемое сообщение|переслане повідомлення|přeposlaná zpráva|välitetty viesti|iletilen mesaj|转发的邮件|轉寄的郵件|転送されたメッセージ)\s*-*[*_\s]*:?$",
    )
});
static APPLE_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[*_\s]*(?:begin forwarded message|anfang der weitergeleiteten nachricht|début du message réexpédié|début du message transféré|inicio del mensaje reenviado|comienzo del mensaje reenviado|inizio messaggio inoltrato|begin doorgestuurd bericht|início da mensagem reencaminhada|início da mensagem encaminhada|vidarebefordrat brev|videresendt e-post|start på videresendt besked|начало переадресованного сообщения|początek przekazywanej wiadomości)\s*:[*_\s]*$",
    )
});
/// Compiles a pattern that is a constant of this module.
fn constant_regex(pattern: &str) -> Regex {
    // The patterns are literals in this file, each exercised by the unit tests.
    Regex::new(pattern).expect("constant regex compiles")
}

/// The forwarding style a marker line announces ("---------- Forwarded message ---------",
/// "Begin forwarded message:"), for a trimmed line.
pub(crate) fn forward_marker(line: &str) -> Option<ForwardStyle> {
    if line.len() > 120 {
        return None;
    }
    if let Some(caps) = DASHED_MARKER.captures(line) {
        let dashes = caps.get(1).map_or(0, |m| m.len());
        return Some(if dashes == 8 {
            ForwardStyle::Thunderbird
        } else {
            ForwardStyle::Gmail
        });
    }
    APPLE_MARKER
        .is_match(line)
        .then_some(ForwardStyle::AppleMail)
}
