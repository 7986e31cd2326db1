//! Where the new text ends: the part every line is, decided from the recognisers of the
//! other modules in five steps, each a function below.
//!
//! 1. From the top, the start of unquoted history: an "Original Message" line, a header
//!    block, or, below the sender's own text, an attribution not followed by quoted lines or
//!    a phone or mail app's footer standing as a paragraph of its own. A forwarded message
//!    is read past, not cut.
//! 2. A signature delimiter, if what follows it is short enough to be a signature.
//! 3. From the end up: phone footers, trailing quote blocks and rules, until the sender's
//!    own text is reached.
//! 4. The leading quote of a bottom-posted reply.
//! 5. The attributions of the quotes that stay, which add only noise to the thread.

use std::sync::LazyLock;

use regex::Regex;

use super::attribution::{find_attributions, Span, Strength};
use super::lines::{clean_lines_from, is_own_text, next_non_blank, prev_non_blank, Kind, Line, Part};
use super::signature::{is_footer_paragraph, is_outlook_app_footer, is_phone_footer, is_signature_delimiter};
use crate::parse::quoting::{
    constant_regex, forward_marker, header_field, is_original_message, is_separator, read_header_block,
};

/// Most non-blank lines after a "-- " delimiter that still read as a signature. A longer tail
/// is more likely content that happens to follow such a line.
const MAX_SIGNATURE_LINES: usize = 30;
/// The same for a bare "--", which people also type as an ordinary separator.
const MAX_BARE_DASH_SIGNATURE_LINES: usize = 12;

/// "-------- Some words --------": above a header block, the title of the quoted message in
/// a language that [`is_original_message`] does not know.
static DASHED_TITLE: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^[-=_*]{2,}\s*[\p{L}\p{M}' ]{2,40}?\s*[-=_*]{2,}$"));

/// Moves a cut up over the blank and separator lines directly above it, so that the
/// "________" above an Outlook header block goes with the history.
fn include_separators_above(lines: &[Line<'_>], mut cut: usize) -> usize {
    while cut > 0 {
        let above = &lines[cut - 1];
        let removable = above.kind == Kind::Blank
            || (above.kind == Kind::Text
                && (is_separator(&above.clean)
                    || is_original_message(&above.clean)
                    || DASHED_TITLE.is_match(&above.clean)));
        if !removable {
            break;
        }
        cut -= 1;
    }
    cut
}

/// The part every line is (its fate), by index, decided in the steps of the module
/// documentation.
pub(super) fn assign_parts(lines: &[Line<'_>]) -> Vec<Part> {
    let n = lines.len();
    let mut fates = vec![Part::New; n];
    let spans = find_attributions(lines);
    let mut span_starting: Vec<Option<Span>> = vec![None; n];
    let mut span_ending: Vec<Option<Span>> = vec![None; n];
    for span in &spans {
        span_starting[span.start] = Some(*span);
        span_ending[span.end] = Some(*span);
    }

    let history = find_unquoted_history(lines, &span_starting, &mut fates);
    for fate in &mut fates[history.start..] {
        *fate = Part::Quoted;
    }
    if let Some(footer) = history.footer {
        fates[footer] = Part::Signature;
    }

    let mut introduces = vec![false; n];
    for span in &history.introductions {
        introduces[span.start..=span.end].fill(true);
    }
    // The first line that is the sender's own: nothing above it may be cut as a signature
    // or trailing quote, or the message would vanish.
    let first_own = (0..history.start).find(|&k| fates[k] == Part::New && !introduces[k] && is_own_text(&lines[k]));

    let cut = cut_signature(lines, &mut fates, history.start, first_own, &introduces);
    let cut = cut_trailing_history(lines, &mut fates, cut, first_own, &span_ending);
    drop_bottom_posted_quote(lines, &mut fates, cut, &history.introductions);
    quote_introductions(&mut fates, &introduces);
    fates
}

/// Where the unquoted history starts, and what was learnt reading down to it.
struct History {
    /// The first line of the history: everything from here on was written before. The
    /// number of lines when there is no such history.
    start: usize,
    /// The device footer the history starts at, when that is what marked it.
    footer: Option<usize>,
    /// Attributions followed by quoted lines: they go wherever their quote goes.
    introductions: Vec<Span>,
}

/// Step 1, from the top: the start of unquoted history (see the module documentation). An
/// attribution with nothing of the sender's above it is marked quoted in `fates` on the way,
/// rather than cut at.
fn find_unquoted_history(lines: &[Line<'_>], span_starting: &[Option<Span>], fates: &mut [Part]) -> History {
    let mut introductions: Vec<Span> = Vec::new();
    let mut seen_own_text = false;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if line.kind != Kind::Text {
            seen_own_text |= is_own_text(line);
            i += 1;
            continue;
        }
        if let Some(span) = span_starting[i] {
            let quote_follows = next_non_blank(lines, span.end + 1).is_some_and(|k| lines[k].kind == Kind::Quote);
            if quote_follows {
                introductions.push(span);
                i = span.end + 1;
                continue;
            }
            if span.strength == Strength::Strong {
                if seen_own_text {
                    return History { start: include_separators_above(lines, i), footer: None, introductions };
                }
                // An attribution with nothing of the sender's above it (some mobile clients
                // put it first): drop that line and read on, rather than cut everything.
                for fate in &mut fates[span.start..=span.end] {
                    *fate = Part::Quoted;
                }
                i = span.end + 1;
                continue;
            }
        }
        if forward_marker(&line.clean).is_some() {
            // An explicitly forwarded message is kept, header block and all.
            seen_own_text = true;
            i = after_forwarded_header(lines, i);
            continue;
        }
        if is_original_message(&line.clean) {
            return History { start: include_separators_above(lines, i), footer: None, introductions };
        }
        if seen_own_text && (is_outlook_app_footer(&line.clean) || is_footer_paragraph(lines, i)) {
            return History { start: i, footer: Some(i), introductions };
        }
        if header_field(&line.clean).is_some() {
            if let Some(block) = read_header_block(&clean_lines_from(lines, i), 0) {
                if block.introduces_history(follows_separator(lines, i)) {
                    return History { start: include_separators_above(lines, i), footer: None, introductions };
                }
                seen_own_text = true;
                i += block.end + 1;
                continue;
            }
        }
        seen_own_text |= is_own_text(line);
        i += 1;
    }
    History { start: lines.len(), footer: None, introductions }
}

/// The line after the header block below a forward marker at `marker`, or after the marker
/// when no header block follows it.
fn after_forwarded_header(lines: &[Line<'_>], marker: usize) -> usize {
    match next_non_blank(lines, marker + 1) {
        Some(k) if lines[k].kind == Kind::Text => {
            read_header_block(&clean_lines_from(lines, k), 0).map_or(marker + 1, |b| k + b.end + 1)
        }
        _ => marker + 1,
    }
}

/// Whether the line above `i`, blank lines aside, is a rule or an "Original Message" line.
fn follows_separator(lines: &[Line<'_>], i: usize) -> bool {
    prev_non_blank(lines, i).is_some_and(|k| {
        lines[k].kind == Kind::Text && (is_separator(&lines[k].clean) || is_original_message(&lines[k].clean))
    })
}

/// Step 2: a signature delimiter below the sender's first own line, if its tail (before
/// `cut`) is short enough to be a signature. Returns where the text that may be new ends.
fn cut_signature(
    lines: &[Line<'_>],
    fates: &mut [Part],
    cut: usize,
    first_own: Option<usize>,
    introduces: &[bool],
) -> usize {
    let Some(delimiter) = (0..cut).find(|&k| {
        lines[k].kind == Kind::Text && is_signature_delimiter(&lines[k].clean) && first_own.is_some_and(|f| f < k)
    }) else {
        return cut;
    };
    let limit = if lines[delimiter].raw.trim_start().starts_with("-- ") {
        MAX_SIGNATURE_LINES
    } else {
        MAX_BARE_DASH_SIGNATURE_LINES
    };
    let tail = (delimiter + 1..cut)
        .filter(|&k| lines[k].kind != Kind::Blank && lines[k].kind != Kind::Quote && !introduces[k])
        .count();
    if tail > limit {
        return cut;
    }
    for k in delimiter..cut {
        fates[k] = if lines[k].kind == Kind::Quote || introduces[k] { Part::Quoted } else { Part::Signature };
    }
    delimiter
}

/// Step 3, from the end (`cut`) up: phone footers, trailing quote blocks (with the
/// attribution that introduces them) and separator lines, until the sender's own text is
/// reached. Returns where the text that may be new ends.
fn cut_trailing_history(
    lines: &[Line<'_>],
    fates: &mut [Part],
    mut cut: usize,
    first_own: Option<usize>,
    span_ending: &[Option<Span>],
) -> usize {
    while let Some(last) = prev_non_blank(lines, cut) {
        if first_own.is_none_or(|f| f >= last) {
            break;
        }
        let line = &lines[last];
        if line.kind == Kind::Text && is_phone_footer(&line.clean) {
            for fate in &mut fates[last..cut] {
                *fate = Part::Signature;
            }
            cut = last;
            continue;
        }
        if line.kind == Kind::Text && cut < lines.len() && is_separator(&line.clean) {
            for fate in &mut fates[last..cut] {
                *fate = Part::Quoted;
            }
            cut = last;
            continue;
        }
        if line.kind != Kind::Quote {
            break;
        }
        let mut start = last;
        while start > 0 && matches!(lines[start - 1].kind, Kind::Quote | Kind::Blank) {
            start -= 1;
        }
        let above = prev_non_blank(lines, start);
        if above.is_some_and(|k| lines[k].kind == Kind::Text && forward_marker(&lines[k].clean).is_some()) {
            // "Begin forwarded message:" followed by a quoted message (Apple Mail): keep.
            break;
        }
        if let Some(span) = above.and_then(|k| span_ending[k]) {
            start = span.start;
        }
        if first_own.is_none_or(|f| f >= start) {
            break;
        }
        for fate in &mut fates[start..cut] {
            *fate = Part::Quoted;
        }
        cut = start;
    }
    cut
}

/// Step 4, bottom-posting: the message opens with an attribution and one quoted block and
/// the sender's text follows with no other quote (before `cut`); the block is history, not
/// context.
fn drop_bottom_posted_quote(lines: &[Line<'_>], fates: &mut [Part], cut: usize, introductions: &[Span]) {
    let Some(first) = (0..cut).find(|&k| lines[k].kind != Kind::Blank && fates[k] == Part::New) else {
        return;
    };
    let Some(span) = introductions.iter().find(|s| s.start == first) else {
        return;
    };
    let mut end = span.end + 1;
    while end < cut && matches!(lines[end].kind, Kind::Quote | Kind::Blank) {
        end += 1;
    }
    let rest = end..cut;
    let more_quotes = rest.clone().any(|k| lines[k].kind == Kind::Quote && fates[k] == Part::New);
    let own_text = rest.clone().any(|k| fates[k] == Part::New && is_own_text(&lines[k]));
    if own_text && !more_quotes {
        for fate in &mut fates[first..end] {
            *fate = Part::Quoted;
        }
    }
}

/// Step 5: the attributions of quotes that stay (inline replies). The quoted lines give the
/// context; "On …, … wrote:" adds only noise to the thread.
fn quote_introductions(fates: &mut [Part], introduces: &[bool]) {
    for (fate, _) in fates.iter_mut().zip(introduces).filter(|(_, i)| **i) {
        if *fate == Part::New {
            *fate = Part::Quoted;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::reply::parts;
    use crate::parse::reply::tests::cut;

    #[test]
    fn attribution_followed_by_unquoted_history_cuts_everything_below() {
        let text =
            "Before.\n\nOn Wed, Sep 25, 2013, at 03:57 PM, richard wrote:\n\nRichard> embedded\n\nMore old text.";
        let p = parts(text);
        assert_eq!(p.text, "Before.");
        assert!(p.quoted().unwrap().starts_with("On Wed"));
    }

    #[test]
    fn original_message_lines_are_cut_in_several_languages() {
        for marker in [
            "-----Original Message-----",
            "----- Original Message -----",
            "-----Ursprüngliche Nachricht-----",
            "-----Mensaje original-----",
            "-------- Message d'origine --------",
            "*----- Original Message -----*",
        ] {
            let text = format!("Yes please.\n\n{marker}\nFrom: a@x.example\nSubject: hi\n\nold");
            assert_eq!(cut(&text), "Yes please.", "{marker}");
        }
    }

    #[test]
    fn outlook_header_blocks_are_cut_with_the_separator_above() {
        let plain = "Reply.\n________________________________\nFrom: Jane <jane@x.example>\nSent: Wednesday, September 25, 2019 5:45 PM\nTo: bob@x.example\nSubject: Question\n\nOld.";
        let bold = "Reply.\n\n ------------------------------\n\n*From:* Outlook user\n*Sent:* 2016-01-27\n*To:* info@x.example\n*Subject:* Are you using Outlook?\n\nOld.";
        let german = "Antwort.\n\nVon: Hans <hans@x.example>\nGesendet: Montag, 23. November 2026 10:00\nAn: support@x.example\nBetreff: Drucker\n\nAlt.";
        let french = "Réponse.\r\n\r\n   De : Company<mailto:q@company.example>\r\n   Envoyé le :jeudi 15 décembre 2016 09:35\r\n   À : someone@x.example\r\n   Objet :Question\r\n\r\nAncien.";
        let wrapped = "Reply.\n\nFrom: Alexander [mailto:a@x.example]\nSent: Friday, June 27, 2014 12:06\nPM\nTo: Alexander\nSubject: Test";
        for (text, want) in
            [(plain, "Reply."), (bold, "Reply."), (german, "Antwort."), (french, "Réponse."), (wrapped, "Reply.")]
        {
            assert_eq!(cut(text), want, "{text:?}");
        }
    }

    #[test]
    fn from_and_to_in_prose_are_not_a_header_block() {
        let text = "Our trip:\nFrom: Berlin\nTo: Paris\nDate: next Monday\n\nThanks";
        assert_eq!(cut(text), text);
    }

    #[test]
    fn header_blocks_in_other_shapes_are_cut() {
        let cases = [
            // The sender's address wrapped onto its own line.
            "From: Human Resources\n<hr+1234@humanresources.example>\nSent: Monday, August 26, 2019 4:37 PM\nTo: Abhishek <a@company.example>\nSubject: A new message",
            // A dashed title in a language not listed, and Danish field names.
            "-------- Oprindelig besked --------\nFra: A B C <abc@abc.example>\nDato: 04.07.2024  17.45  (GMT+01:00)\nTil: abc@abc.example\nEmne: Hello",
            "====\n\nMessage du : 12/12/2016 13:20\nDe : \"Questions \" <q@company.example>\nA : m@somewhere.example\nCopie à : \nSujet :  hello",
            // Russian Windows Mail: no subject, a dated "Sent".
            "От: Alexander L\nОтправлено: четверг, 26 июня 2014 г. 15:05\nКому: Alex",
        ];
        for block in cases {
            let text = format!("Fine.\n\n{block}\n\nOld text.");
            assert_eq!(cut(&text), "Fine.", "{block:?}");
        }
    }

    #[test]
    fn forwarded_message_inside_a_reply_is_kept() {
        let text = "Here is what the vendor said:\n\n---------- Forwarded message ---------\nFrom: Vendor <v@vendor.example>\nDate: Mon, 23 Nov 2026 at 10:00\nSubject: Patch\nTo: me@x.example\n\nThe patch is ready.";
        assert_eq!(cut(text), text);
    }

    #[test]
    fn inline_replies_keep_the_senders_lines_and_drop_the_trailing_quote() {
        let text = "On Mon, 2 Apr 2012 at 18:26, Bob <bob@x.example> wrote:\n> Which version?\n\n4.2.\n\n> And the OS?\n\nLinux.\n\n> Thanks,\n> Bob\n";
        let got = cut(text);
        assert_eq!(got, "> Which version?\n\n4.2.\n\n> And the OS?\n\nLinux.");
    }

    #[test]
    fn leading_attribution_without_quote_is_dropped_and_the_rest_kept() {
        let text = "On 15 May 2017 19:32, \"Sprite\" <s@x.example> wrote:\n\nThe intent was X.\n\nOn 8 May 2017 6:51 pm, \"Andy\" <a@x.example> wrote:\n\n> It should be Y.\n>\nAh, yes.\n\nCheers";
        assert_eq!(cut(text), "The intent was X.\n\n> It should be Y.\n>\nAh, yes.\n\nCheers");
    }

    #[test]
    fn bottom_posted_reply_drops_the_leading_quote() {
        let text = "On 04/02/2012 06:26 PM, Megan One wrote:\n> Hi\nHello\n";
        assert_eq!(cut(text), "Hello");
        // With several quoted blocks it is an inline reply, and the quotes stay.
        let inline = "On 15 Dec 2024, at 14:00, Jane <j@x.example> wrote:\n> A?\n\nYes.\n\n> B?\n\nNo.";
        assert_eq!(cut(inline), "> A?\n\nYes.\n\n> B?\n\nNo.");
    }
}
