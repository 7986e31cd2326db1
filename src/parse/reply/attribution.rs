//! Attribution lines: `On <date>, <name> wrote:` and its many relatives.
//!
//! Mail programs write them in many languages and orders (verb before or after the name,
//! date first or last), wrap them over two or three lines, and sometimes inside the address
//! (`<ann@x.example` then `>:` on the next line). A line is read as an attribution only with
//! evidence besides its verb (a date, a number or an address), and lines are joined only
//! after a first line that starts like one, so prose above an attribution is never
//! swallowed into it.

use std::sync::LazyLock;

use regex::Regex;

use super::lines::{is_address_piece, Kind, Line, MAX_ADDRESS_PIECES, WROTE};
use crate::parse::quoting::{constant_regex, looks_dated};

/// An attribution line longer than this (in characters) is prose, not a mail program's line.
const MAX_ATTRIBUTION_LINE: usize = 250;
/// How many lines a mail program may wrap an attribution over.
const MAX_ATTRIBUTION_LINES: usize = 3;

/// Words an attribution starts with ("On", "Am", "Le", "El", "Il", "Op", "Em", "Den", …).
static START: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^(?:on|at|am|le|el|il|op|em|den|dne|dnia|dňa|w\s+dniu|på|в|στις|pada|vào|ngày|in\s+message|in\s+data)\b",
    )
});
static WROTE_AT_END: LazyLock<Regex> = LazyLock::new(|| constant_regex(&format!(r"(?i)\b(?:{WROTE})\s*[:：]?$")));
static CJK_WROTE_AT_END: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"(?:写道|寫道)\s*[:：]?$"));
/// "Am 18.09.2013 um 16:24 schrieb Name <x@y>:" — the verb before the name.
static WROTE_IN_MIDDLE: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)\b(?:schrieb|schreef|skrev|wrote|escribió|escreveu|a\s+écrit|ha\s+scritto|napisał|написал|kirjoitti)\b",
    )
});
/// "Name <x@y> schrieb am Fr., 28. Apr. 2017 um 11:53 Uhr:" — name first.
static WROTE_ON: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)\b(?:wrote\s+on|schrieb\s+am|a\s+écrit\s+le|escribió\s+el|escreveu\s+em|schreef\s+op|skrev\s+den|ha\s+scritto\s+il)\b",
    )
});
static EMAIL_BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(r"<[^<>\s]+@[^<>\s]+>|\([^()\s]+@[^()\s]+\)|\[mailto:[^\[\]\s]+\]|\[[^\[\]\s]+@[^\[\]\s]+\]")
});
static EMAIL_ANY: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+"));
/// Gmail in some locales: "2016/3/3 Name <x@y>" and "2015-10-18 0:17 GMT+03:00 Name <x@y>:".
static DATE_THEN_EMAIL: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^\d{4}[/.-]\d{1,2}[/.-]\d{1,2}\b.{0,120}<[^<>\s]+@[^<>\s]+>\s*[:：]?$"));
static ISO_DATE_GMT: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^\d{4}-\d{2}-\d{2}\s+\d{1,2}:\d{2}\s+GMT[+-]\d{1,2}:?\d{2}\b"));
/// The first line of an attribution wrapped over several lines, when it has no start word:
/// a date first ("2016-03-03 …", "Понедельник, 6 октября …", "pe 20. lokakuuta …").
static WRAPPED_START: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"(?i)^(?:\p{L}{1,15}\.?,?\s+)?\d"));

/// How sure a line is an attribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strength {
    /// Only an attribution when quoted lines follow it.
    Weak,
    Strong,
}

/// The lines an attribution spans.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// The first line of the attribution.
    pub(super) start: usize,
    /// The last line of the attribution.
    pub(super) end: usize,
    pub(super) strength: Strength,
}

/// Removes bold/underline markers and dashes around a line ("---- On … wrote ----").
fn strip_decoration(s: &str) -> &str {
    s.trim_matches(|c: char| c == '-' || c == '*' || c == '_' || c.is_whitespace())
}

fn attribution_strength(s: &str) -> Option<Strength> {
    if s.chars().count() > MAX_ATTRIBUTION_LINE * MAX_ATTRIBUTION_LINES {
        return None;
    }
    // Cheap gates first (this runs on every line of every mail): the date-first forms
    // start with a digit; every other form ends with a "wrote" word or a colon.
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) && (ISO_DATE_GMT.is_match(s) || DATE_THEN_EMAIL.is_match(s))
    {
        return Some(Strength::Strong);
    }
    let end = s.trim_end();
    let ends_colon = end.ends_with(':') || end.ends_with('：');
    let ends_word = end.chars().last().is_some_and(char::is_alphabetic);
    if !ends_colon && !ends_word {
        return None;
    }
    // The tests below are pure; each is run only where its answer decides.
    let has_digit = s.bytes().any(|b| b.is_ascii_digit());
    // `\d` is any Unicode digit (full-width dates in CJK attributions).
    let any_digit = has_digit || (!s.is_ascii() && s.chars().any(char::is_numeric));
    let dated = || any_digit && looks_dated(s);
    let bracketed = || s.contains(['<', '(', '[']) && EMAIL_BRACKETED.is_match(s);
    if WROTE_AT_END.is_match(s) || CJK_WROTE_AT_END.is_match(s) {
        if START.is_match(s) && dated() {
            return Some(Strength::Strong);
        }
        let bracketed = bracketed();
        if bracketed && s.chars().count() <= 120 {
            return Some(Strength::Strong);
        }
        if has_digit || bracketed || EMAIL_ANY.is_match(s) {
            return Some(Strength::Weak);
        }
        return None;
    }
    if ends_colon {
        if START.is_match(s) && WROTE_IN_MIDDLE.is_match(s) && dated() {
            return Some(Strength::Strong);
        }
        if WROTE_ON.is_match(s) && dated() {
            return Some(Strength::Strong);
        }
        // mail.ru and others: "Thu, 26 Jun 2014 14:00:51 +0400 от Name <x@y>:".
        if s.chars().count() <= 200 && dated() && bracketed() {
            return Some(Strength::Strong);
        }
    }
    None
}

/// Every attribution, in order and not overlapping.
pub(super) fn find_attributions(lines: &[Line<'_>]) -> Vec<Span> {
    let usable = |l: &Line<'_>| l.kind == Kind::Text && l.clean.chars().count() <= MAX_ATTRIBUTION_LINE;
    let mut spans = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !usable(&lines[i]) {
            i += 1;
            continue;
        }
        let first = strip_decoration(&lines[i].clean);
        // Only a line that starts like an attribution may be continued on the next lines,
        // and never past the end of a sentence; otherwise the prose above an attribution
        // would be swallowed into it.
        let starts = START.is_match(first) || WRAPPED_START.is_match(first) || WROTE_ON.is_match(first);
        // The first line alone, then joined with the next ones (copied only then). Pieces of
        // a wrapped address do not count against the lines a program may wrap over, and
        // one blank line may stand before them.
        let mut joined = String::new();
        let mut found = None;
        let (mut j, mut wrapped, mut pieces) = (i, 0, 0);
        loop {
            let candidate = if j == i { first } else { joined.as_str() };
            if let Some(strength) = attribution_strength(candidate) {
                found = Some(Span { start: i, end: j, strength });
                break;
            }
            if !starts {
                break;
            }
            let mut next = j + 1;
            let blank_then_piece = |k: usize| {
                lines.get(k).is_some_and(|l| l.kind == Kind::Blank) && lines.get(k + 1).is_some_and(is_address_piece)
            };
            if blank_then_piece(next) {
                next += 1;
            }
            let Some(line) = lines.get(next).filter(|l| usable(l)) else {
                break;
            };
            if is_address_piece(line) {
                pieces += 1;
                if pieces > MAX_ADDRESS_PIECES {
                    break;
                }
            } else {
                wrapped += 1;
                if wrapped >= MAX_ATTRIBUTION_LINES || ends_sentence(&lines[j].clean) {
                    break;
                }
            }
            if joined.is_empty() {
                joined.push_str(first);
            }
            // "<ann@x.example" and ">:" are one address again.
            if !line.clean.starts_with('>') {
                joined.push(' ');
            }
            joined.push_str(strip_decoration(&line.clean));
            j = next;
        }
        match found {
            Some(span) => {
                spans.push(span);
                i = span.end + 1;
            }
            None => i += 1,
        }
    }
    spans
}

/// Whether a line reads as the end of a sentence ("…let you know then...", "check it.")
/// rather than a line a mail program wrapped ("…, 23." or "So., 23. Juni").
fn ends_sentence(line: &str) -> bool {
    let t = line.trim_end();
    if t.ends_with(['!', '?', '…']) || t.ends_with("...") {
        return true;
    }
    let Some(body) = t.strip_suffix('.') else {
        return false;
    };
    let word = body.rsplit(char::is_whitespace).next().unwrap_or_default();
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    if word.is_empty() || word.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    // "Nov.", "So.", "Fr.": an abbreviation inside a date, not the end of a sentence.
    let abbreviation = word.chars().next().is_some_and(char::is_uppercase) && word.chars().count() <= 4;
    !abbreviation
}

#[cfg(test)]
mod tests {
    use crate::parse::reply::parts;
    use crate::parse::reply::tests::cut;

    #[test]
    fn english_attribution_and_trailing_quote_are_cut() {
        let text = "Thanks, that fixed it.\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Megan <m@x.example> wrote:\n\n> Try restarting.\n> \n> Megan\n";
        assert_eq!(cut(text), "Thanks, that fixed it.");
    }

    #[test]
    fn attribution_wrapped_over_two_or_three_lines_is_cut() {
        let two = "Done.\n\nOn Tue, 16 Nov 2021, 12:34 pm John - Acme <john@acme.example>\nwrote:\n\nOld text here.";
        assert_eq!(cut(two), "Done.");
        let three =
            "Done.\nOn Tue, 16 Nov 2021 at 12:34,\nJohn Smith from Acme Corporation\n<john@acme.example> wrote:\n> old";
        assert_eq!(cut(three), "Done.");
    }

    #[test]
    fn prose_above_a_wrapped_attribution_is_not_swallowed() {
        // No blank line between the reply and a Dutch attribution wrapped over two lines.
        let text = "I can test this in 2 weeks. I will let you know then...\nOp 16 aug. 2014 05:13 schreef \"Jan\" <jan@x.example> het\nvolgende geschreven:\n\n> Hmm, we need to fix that.\n";
        assert_eq!(cut(text), "I can test this in 2 weeks. I will let you know then...");
    }

    #[test]
    fn localized_attributions_are_cut() {
        let cases = [
            "Am 18.09.2013 um 16:24 schrieb Hans Muster <hans@x.example>:",
            "Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Hans <hans@x.example>:",
            "Le 4 janv. 2016 à 19:03, \"Neil\" <neil@x.example> a écrit :",
            "El jueves, 21 de noviembre de 2013, Ana escribió:",
            "Il 26 marzo 2016 alle 13.16 Sam <sam@x.example> ha scritto:",
            "Op 10 dec. 2015 18:35 schreef \"Arpit\" <arpit@x.example>:",
            "Понедельник, 6 октября 2014 г. пользователь lidel написал:",
            "Em seg, 27 de jul de 2015 17:13, Neil <neil@x.example> escreveu:",
            "Den 15. jun. 2016 kl. 20.42 skrev Jeff <jeff@x.example>:",
            "Den 15 juni 2016 kl. 20:42 skrev Jeff Atwood <jeff@x.example>:",
            "Dnia 14 lip 2015 o godz. 00:25 Michał <m@x.example> napisał(a):",
            "W dniu 14.07.2015 o 00:25, Michał <m@x.example> pisze:",
            "2015-10-18 0:17 GMT+03:00 Matt Palmer <matt@x.example>:",
            "---- On Tue, 22 Dec 2015 14:17:36 +0530 Sam<sam@x.example> wrote ----",
            "Some One <someone@x.example> wrote:",
            "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander <a@x.example>:",
        ];
        for attribution in cases {
            let text = format!("My answer.\n\n{attribution}\n\n> the question\n");
            assert_eq!(cut(&text), "My answer.", "not cut at {attribution:?}");
        }
    }

    #[test]
    fn attribution_wrapped_inside_the_address_is_cut() {
        // Gmail in Norwegian: the closing ">" of the address went onto a line of its own,
        // where it looks like a quote.
        let norwegian =
            "Fine.\n\ntir. 18. apr. 2017 kl. 13:09 skrev Test user <test@example.com\n>:\n\n> Ok. Thanks.\n>";
        let p = parts(norwegian);
        assert_eq!(p.text, "Fine.");
        assert_eq!(
            p.quoted().as_deref(),
            Some("tir. 18. apr. 2017 kl. 13:09 skrev Test user <test@example.com\n>:\n\n> Ok. Thanks.\n>")
        );
        // A client that rendered "<mailto:…>" over three lines, blank lines between.
        let split = "One 1\n\nOn Thu, 31 Mar 2016 at 11:16 Some One\n\n<\nmailto:Some One <some.one@foo.bar>\n> wrote:\n\n\nTwo 2";
        assert_eq!(cut(split), "One 1");
        // A quote that starts with ">:" under a line without an open "<" is a quote.
        let quote = "See <https://x.example/doc>.\n\n>:\n> old text";
        assert_eq!(cut(quote), "See <https://x.example/doc>.");
        assert_eq!(parts(quote).fragments.len(), 2);
    }

    #[test]
    fn attributions_wrapped_after_a_name_or_weekday_are_cut_whole() {
        let cases = [
            "Aa Bb <abc@abc.example> schrieb am So., 23.\nJuni 2024, 21:08:",
            "pe 20. lokakuuta 2017 klo 17.50 John Coe\n<john@test.example> kirjoitti:",
            "Am Mi., 5. Feb. 2020 um 17:58 Uhr schrieb Company Questions\n<q@company.example>:",
            "On Wed, Dec 9, Mister Example\n<mr@example.com>\nwrote:",
        ];
        for attribution in cases {
            let text = format!("Answer.\n\n{attribution}\n\n> old\n");
            assert_eq!(cut(&text), "Answer.", "{attribution:?}");
        }
        // A sentence above an attribution is never joined to it.
        let text = "On Monday I will check it.\nBob <bob@x.example> wrote:\n> old";
        assert_eq!(cut(text), "On Monday I will check it.");
    }
}
