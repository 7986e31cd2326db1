//! The lines of a message and how each looks: blank, quoted with `>`, inside a fenced code
//! block, or text; and [`Part`], what each turns out to be.
//!
//! A line that starts with `>` is not always a quote: a mail program that wraps an
//! attribution inside the address puts its closing ">:" on a line of its own, so such a
//! line is read together with the lines above it.

use std::sync::LazyLock;

use regex::Regex;

use crate::parse::quoting::{clean_line, constant_regex, is_separator};

/// Pieces of an address an attribution may be wrapped into ("<", "mailto:…", "> wrote:").
pub(super) const MAX_ADDRESS_PIECES: usize = 3;

/// What a piece of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Written by the sender this time, including quoted lines they answer inline.
    New,
    /// Earlier messages: attribution lines, header blocks and quoted lines.
    Quoted,
    /// The sender's signature or a "Sent from my phone" footer.
    Signature,
}

/// How a line looks, before anything is decided about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Blank,
    /// Starts with `>`.
    Quote,
    Text,
    /// Inside a fenced code block (``` or ~~~): the sender's own text, never a marker.
    Code,
}

/// One line of a message, as written and as matched.
pub(super) struct Line<'a> {
    pub(super) raw: &'a str,
    /// Trimmed, invisible characters removed, no-break spaces as spaces: for matching only.
    pub(super) clean: String,
    pub(super) kind: Kind,
}

/// The lines of a text with LF endings, each with its [`Kind`]. A `>` line that ends an
/// attribution wrapped inside its address is text, not a quote.
pub(super) fn classify(text: &str) -> Vec<Line<'_>> {
    let mut lines: Vec<Line<'_>> = text
        .split('\n')
        .map(|raw| {
            let clean = clean_line(raw);
            let kind = if clean.is_empty() {
                Kind::Blank
            } else if clean.starts_with('>') {
                Kind::Quote
            } else {
                Kind::Text
            };
            Line { raw, clean, kind }
        })
        .collect();
    // Only fences that are closed count: a stray ``` must not switch off trimming for the
    // rest of the message.
    let fences: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == Kind::Text && (l.clean.starts_with("```") || l.clean.starts_with("~~~")))
        .map(|(i, _)| i)
        .collect();
    for pair in fences.chunks_exact(2) {
        for line in &mut lines[pair[0]..=pair[1]] {
            line.kind = Kind::Code;
        }
    }
    for i in 0..lines.len() {
        if lines[i].kind == Kind::Quote && closes_wrapped_address(&lines, i) {
            lines[i].kind = Kind::Text;
        }
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Attributions wrapped inside their address

/// Verbs that end an attribution, in the languages mail programs localise them to.
/// Defined here rather than in `attribution`, whose patterns use it too, because telling
/// the end of a wrapped address from a quote is part of reading the lines.
pub(super) const WROTE: &str = r"wrote|writes|a\s+écrit|a\s+ecrit|schrieb|schreef|geschreven|escribió|escribio|escreveu|ha\s+scritto|scrisse|skrev|kirjoitti|napisał\s*\(a\)|napisała|napisał|napisal|написал\s*\(а\)|написала|написал|написав|пише|έγραψε|yazdı|írta|napsal|napísal|a\s+scris";

/// The end of an attribution wrapped inside its address: ">:", "> wrote:", "> skrev:".
static CLOSING_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(&format!(r"(?i)^>\s*(?:(?:{WROTE})\s*)?[:：]$")));

/// ">:" or "> wrote:" closing a "<" left open on the lines just above: the end of an
/// attribution a mail program wrapped inside the address ("… Test user <test@example.com"
/// then ">:"), not a quoted line.
fn closes_wrapped_address(lines: &[Line<'_>], i: usize) -> bool {
    if !CLOSING_BRACKET.is_match(&lines[i].clean) {
        return false;
    }
    let mut open = 0i32;
    let above = lines[..i].iter().rev().filter(|l| l.kind != Kind::Blank).take(MAX_ADDRESS_PIECES);
    for line in above {
        if line.kind != Kind::Text {
            break;
        }
        open += line.clean.matches('<').count() as i32 - line.clean.matches('>').count() as i32;
    }
    open > 0
}

/// A line of an address that a mail program wrapped: a lone "<", "mailto:…", or the
/// closing ">" with what follows it.
pub(super) fn is_address_piece(line: &Line<'_>) -> bool {
    line.kind == Kind::Text
        && (line.clean == "<" || line.clean.starts_with("mailto:") || CLOSING_BRACKET.is_match(&line.clean))
}

// ---------------------------------------------------------------------------------------
// Walking the lines

/// The first line from `from` on that is not blank.
pub(super) fn next_non_blank(lines: &[Line<'_>], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&k| lines[k].kind != Kind::Blank)
}

/// The last line before `before` that is not blank.
pub(super) fn prev_non_blank(lines: &[Line<'_>], before: usize) -> Option<usize> {
    (0..before).rev().find(|&k| lines[k].kind != Kind::Blank)
}

/// Whether a line is the sender's own writing: code, or text that is not a rule.
pub(super) fn is_own_text(line: &Line<'_>) -> bool {
    match line.kind {
        Kind::Code => true,
        Kind::Text => !is_separator(&line.clean),
        Kind::Blank | Kind::Quote => false,
    }
}

/// Cleaned lines from `start`, at most a header block's worth (bounds the work per line).
pub(super) fn clean_lines_from<'a>(lines: &'a [Line<'_>], start: usize) -> Vec<&'a str> {
    lines[start..].iter().take(64).map(|l| l.clean.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        classify(text).iter().map(|l| l.kind).collect()
    }

    #[test]
    fn lines_are_blank_quoted_text_or_code_inside_a_closed_fence() {
        use Kind::*;
        let text = "a\n\u{A0}\n> q\n```\n> in code\n```\n~~~ never closed\n-- ";
        assert_eq!(kinds(text), [Text, Blank, Quote, Code, Code, Code, Text, Text]);
    }

    #[test]
    fn a_closing_bracket_under_an_open_address_is_text_not_a_quote() {
        use Kind::*;
        assert_eq!(kinds("Bob <b@x.example\n>:\n> old"), [Text, Text, Quote]);
        assert_eq!(kinds("See <https://x.example>.\n\n>:\n> old"), [Text, Blank, Quote, Quote]);
        let lines = classify("On Thu, Some One\n\n<\nmailto:s@x.example\n> wrote:");
        assert_eq!(lines.iter().map(|l| l.kind).collect::<Vec<_>>(), [Text, Blank, Text, Text, Text]);
        assert!(lines[2..].iter().all(is_address_piece));
        assert!(!is_address_piece(&lines[0]));
    }
}
