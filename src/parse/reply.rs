//! The new text of a reply: quoted history and signature removed.
//!
//! A reply on a case becomes a thread entry, and the thread should show only what the sender
//! wrote this time. Mail programs mark earlier messages in many ways and none is standard,
//! so the text is read line by line and these are recognised:
//!
//! - attribution lines (`On <date>, <name> wrote:`) in many languages, also when a mail
//!   program wrapped them over two or three lines, or inside the address (`<ann@x.example`
//!   then `>:` or `> wrote:` on the next line, which would otherwise read as a quote);
//! - "-----Original Message-----" lines and Outlook header blocks ("From: … Sent: … To: …
//!   Subject: …", bold or localised, after an optional line of underscores or dashes);
//! - `>`-quoted lines: a trailing block, and the single leading block of a bottom-posted
//!   reply, are history; blocks the sender answers in between stay as context;
//! - a signature after a "-- " delimiter (or a bare "--", or the line of underscores mailing
//!   lists put above their footer), and "Sent from my iPhone"-style footers ("Envoyé de mon
//!   …", "Von meinem … gesendet", "Get Outlook for iOS", "Sent from Mail for Windows", …):
//!   as the last lines, or as a paragraph of their own below the sender's text, where phone
//!   apps put them above the earlier message, which they do not mark: everything below such
//!   a footer is history.
//!
//! HTML mail carries better evidence than any text pattern: the containers mail programs put
//! around quoted history (`gmail_quote`, Outlook's `divRplyFwdMsg`, `<blockquote>`, …).
//! [`parts_of`] marks such a container in the HTML before rendering it, and the lines that
//! came from inside it are treated as quoted.
//!
//! Where being wrong would lose words, the cut is conservative: lines the sender answers
//! inline keep their quoted context, an explicitly forwarded message ("---------- Forwarded
//! message ---------") is kept because it is new information for the case, fenced code
//! blocks are never read as markers, and when cutting would leave nothing the whole message
//! is kept. The raw mail is stored in full, so nothing is lost for good by trimming.

use std::sync::LazyLock;

use regex::Regex;

use super::quoting::{
    clean_line, constant_regex, forward_marker, header_field, is_original_message, is_separator, looks_dated,
    read_header_block, split_footnotes,
};
use super::{html_to_text, normalise_text, InboundMail};

/// Most non-blank lines after a "-- " delimiter that still read as a signature. A longer tail
/// is more likely content that happens to follow such a line.
const MAX_SIGNATURE_LINES: usize = 30;
/// The same for a bare "--", which people also type as an ordinary separator.
const MAX_BARE_DASH_SIGNATURE_LINES: usize = 12;
/// An attribution line longer than this (in characters) is prose, not a mail program's line.
const MAX_ATTRIBUTION_LINE: usize = 250;
/// How many lines a mail program may wrap an attribution over.
const MAX_ATTRIBUTION_LINES: usize = 3;
/// Words a "Sent from my …" footer may have; longer lines are sentences.
const MAX_FOOTER_WORDS: usize = 12;
/// Longest line (in bytes) read as a footer in the middle of a message; a cheap gate before
/// the patterns, as every paragraph of one line is a candidate.
const MAX_FOOTER_BYTES: usize = 200;
/// Pieces of an address an attribution may be wrapped into ("<", "mailto:…", "> wrote:").
const MAX_ADDRESS_PIECES: usize = 3;

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

/// A run of consecutive lines of one [`Part`], as written (LF line endings, otherwise raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub part: Part,
    pub text: String,
}

/// A message split into what is new and what was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyParts {
    /// The new text: LF line endings, trimmed, at most one blank line in a row.
    pub text: String,
    /// Every line of the message in order, grouped by what it is.
    pub fragments: Vec<Fragment>,
    /// True when cutting would have left nothing, so `text` is the whole message.
    pub kept_whole: bool,
}

impl ReplyParts {
    /// The quoted history that was cut, if any.
    pub fn quoted(&self) -> Option<String> {
        self.joined(Part::Quoted)
    }

    /// The signature (or phone footer) that was cut, if any.
    pub fn signature(&self) -> Option<String> {
        self.joined(Part::Signature)
    }

    fn joined(&self, part: Part) -> Option<String> {
        let texts: Vec<&str> = self.fragments.iter().filter(|f| f.part == part).map(|f| f.text.as_str()).collect();
        (!texts.is_empty()).then(|| texts.join("\n\n"))
    }
}

/// The text the sender added, without the quoted earlier messages or a signature.
pub fn new_text(text: &str) -> String {
    parts(text).text
}

/// [`new_text`] of a parsed mail. Uses the HTML body when the text was rendered from it or
/// when the HTML marks its quoted history (see the module documentation).
pub fn new_text_of(mail: &InboundMail) -> String {
    parts_of(mail).text
}

/// Splits a plain-text body into new text, quoted history and signature.
pub fn parts(text: &str) -> ReplyParts {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines = classify(&text);
    let fates = assign_parts(&lines);
    assemble(&lines, &fates)
}

/// [`parts`] of a parsed mail, using its HTML when that is the better evidence.
pub fn parts_of(mail: &InboundMail) -> ReplyParts {
    if let Some(html) = mail.html.as_deref() {
        let container = find_quote_container(html);
        if mail.text_from_html || container.is_some() {
            return parts_of_html(html, container);
        }
    }
    parts(&mail.text)
}

// ---------------------------------------------------------------------------------------
// Lines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    /// Starts with `>`.
    Quote,
    Text,
    /// Inside a fenced code block (``` or ~~~): the sender's own text, never a marker.
    Code,
}

struct Line<'a> {
    raw: &'a str,
    /// Trimmed, invisible characters removed, no-break spaces as spaces: for matching only.
    clean: String,
    kind: Kind,
}

fn classify(text: &str) -> Vec<Line<'_>> {
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
fn is_address_piece(line: &Line<'_>) -> bool {
    line.kind == Kind::Text
        && (line.clean == "<" || line.clean.starts_with("mailto:") || CLOSING_BRACKET.is_match(&line.clean))
}

/// "-- " (RFC 3676), a bare "--", or a line of underscores (mailing-list footers).
fn is_signature_delimiter(clean: &str) -> bool {
    clean == "--" || (clean.len() >= 2 && clean.chars().all(|c| c == '_'))
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

// ---------------------------------------------------------------------------------------
// Attribution lines ("On <date>, <name> wrote:")

/// Verbs that end an attribution, in the languages mail programs localise them to.
const WROTE: &str = r"wrote|writes|a\s+écrit|a\s+ecrit|schrieb|schreef|geschreven|escribió|escribio|escreveu|ha\s+scritto|scrisse|skrev|kirjoitti|napisał\s*\(a\)|napisała|napisał|napisal|написал\s*\(а\)|написала|написал|написав|пише|έγραψε|yazdı|írta|napsal|napísal|a\s+scris";

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
/// The end of an attribution wrapped inside its address: ">:", "> wrote:", "> skrev:".
static CLOSING_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(&format!(r"(?i)^>\s*(?:(?:{WROTE})\s*)?[:：]$")));
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
enum Strength {
    /// Only an attribution when quoted lines follow it.
    Weak,
    Strong,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    strength: Strength,
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
fn find_attributions(lines: &[Line<'_>]) -> Vec<Span> {
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

/// "-------- Some words --------": above a header block, the title of the quoted message in
/// a language that [`is_original_message`] does not know.
static DASHED_TITLE: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"^[-=_*]{2,}\s*[\p{L}\p{M}' ]{2,40}?\s*[-=_*]{2,}$"));

// ---------------------------------------------------------------------------------------
// Phone footers

/// "Sent from my iPhone" and its relatives, optionally with "please excuse typos".
static FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^[(<\[]*(?:sent (?:from|via|with|using|by|on) |get outlook for |envoyé (?:de|depuis) |envoye (?:de|depuis) |von meinem |gesendet (?:von|mit|vom) |diese nachricht wurde von |enviado (?:desde|do|de|a partir d[eo]) |inviato da |inviato dal |verzonden (?:vanaf|met|van) |verstuurd (?:vanaf|met|van) |skickat från |sendt fra |lähetetty |wysłane z |wysłano z |отправлено (?:с|из) |надіслано з |从我的|發自我的|发自我的|從我的|iphoneから送信)[^,;!?]{0,60}(?:[.,;]?\s*(?:please\s+)?(?:excuse|pardon|forgive)\b[^!?]{0,60})?$",
    )
});
/// "Nik from mobile", "From my iPhone 6".
static SHORT_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^(?:\p{L}+ from (?:my )?(?:mobile|phone|cell|iphone|android)|from my (?:iphone|ipad|ipod|android|mobile|phone|cell|samsung|galaxy|blackberry|smartphone|tablet)\b[^,;!?]{0,30})\.?$",
    )
});
/// The Outlook apps' footer. Outlook for iOS and Android put it between the reply and the
/// quoted message, which they do not mark, so everything after it is history.
static OUTLOOK_APP_FOOTER: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(
        r"(?i)^(?:(?:get|télécharger|obtenir|obtener|descargar|scarica|ottieni|obter|baixe|holen sie sich|skaffa|hent|få|pobierz|загрузите|скачайте|sent from|sent with|envoyé (?:de|depuis)|enviado (?:de|desde)|inviato da|verzonden (?:met|vanaf)|gesendet (?:von|mit)|skickat från|sendt fra|wysłane z)\s+(?:(?:my|the|o|mon|mi|meu)\s+)?outlook\b|outlook (?:für|voor|för) \S+ (?:herunterladen|downloaden|hämta))",
    )
});
/// A link as html2text renders it ("[text][1]"), or a bare URL in brackets at the end.
static LINK_DECORATION: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"\[([^\[\]]*)\]\[\d+\]|\s*[<\[(]\s*(?:https?|mailto):[^\s>\])]*\s*[>\])]"));

/// A footer line without its link ("Get Outlook for iOS<https://aka.ms/…>").
fn footer_text(clean: &str) -> String {
    let plain = LINK_DECORATION.replace_all(clean, "$1");
    plain.trim().trim_end_matches(['>', ')', ']']).trim().to_string()
}

fn is_phone_footer(clean: &str) -> bool {
    let plain = footer_text(clean);
    plain.split_whitespace().count() <= MAX_FOOTER_WORDS
        && (FOOTER.is_match(&plain) || SHORT_FOOTER.is_match(&plain) || OUTLOOK_APP_FOOTER.is_match(&plain))
}

/// A phone footer standing as a paragraph of its own with more text below it: phone apps
/// put it between the reply and the earlier message, which they do not mark ("Sent from my
/// Wiko RIDGE FAB 4G", a blank line, then the message answered).
fn is_footer_paragraph(lines: &[Line<'_>], i: usize) -> bool {
    let blank = |k: usize| lines.get(k).is_some_and(|l| l.kind == Kind::Blank);
    lines[i].clean.len() <= MAX_FOOTER_BYTES
        && i > 0
        && blank(i - 1)
        && blank(i + 1)
        && next_non_blank(lines, i + 1).is_some()
        && is_phone_footer(&lines[i].clean)
}

fn is_outlook_app_footer(clean: &str) -> bool {
    // Every form names Outlook: most lines are ruled out without a regex or a copy.
    if !clean.as_bytes().windows(7).any(|w| w.eq_ignore_ascii_case(b"outlook")) {
        return false;
    }
    let plain = footer_text(clean);
    plain.split_whitespace().count() <= MAX_FOOTER_WORDS && OUTLOOK_APP_FOOTER.is_match(&plain)
}

// ---------------------------------------------------------------------------------------
// Deciding the fate of every line

/// What becomes of one line.
type Fates = Vec<Part>;

fn next_non_blank(lines: &[Line<'_>], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&k| lines[k].kind != Kind::Blank)
}

fn prev_non_blank(lines: &[Line<'_>], before: usize) -> Option<usize> {
    (0..before).rev().find(|&k| lines[k].kind != Kind::Blank)
}

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

fn is_own_text(line: &Line<'_>) -> bool {
    match line.kind {
        Kind::Code => true,
        Kind::Text => !is_separator(&line.clean),
        Kind::Blank | Kind::Quote => false,
    }
}

/// The part every line is, decided in steps: where the unquoted history starts (from the
/// top), a signature, what trails the sender's text (from the end), the leading quote of a
/// bottom-posted reply, and the attributions of the quotes that stay.
fn assign_parts(lines: &[Line<'_>]) -> Fates {
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

/// Step 1, from the top: the start of unquoted history, which is the first attribution not
/// followed by quoted lines, "Original Message" line, device footer or header block that has
/// the sender's own text above it. An attribution with nothing of the sender's above it is
/// marked quoted in `fates` on the way.
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

/// Cleaned lines from `start`, at most a header block's worth (bounds the work per line).
fn clean_lines_from<'a>(lines: &'a [Line<'_>], start: usize) -> Vec<&'a str> {
    lines[start..].iter().take(64).map(|l| l.clean.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// Output

/// LF, no trailing spaces, at most one blank line in a row, trimmed.
fn tidy(text: &str) -> String {
    let normal = normalise_text(text);
    let mut out = String::with_capacity(normal.len());
    let mut blank_run = 0;
    for line in normal.split('\n') {
        if line.trim().is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

fn assemble(lines: &[Line<'_>], fates: &[Part]) -> ReplyParts {
    let new: Vec<&str> = lines.iter().zip(fates).filter(|(_, f)| **f == Part::New).map(|(l, _)| l.raw).collect();
    let text = tidy(&new.join("\n"));
    if text.is_empty() {
        let all: Vec<&str> = lines.iter().map(|l| l.raw).collect();
        let whole = all.join("\n");
        let fragments = if whole.trim().is_empty() {
            Vec::new()
        } else {
            vec![Fragment { part: Part::New, text: trim_blank_lines(&whole) }]
        };
        return ReplyParts { text: tidy(&whole), fragments, kept_whole: true };
    }

    // Group lines by fate; blank lines belong to the run they sit in.
    let mut fragments: Vec<Fragment> = Vec::new();
    let mut current: Option<(Part, Vec<&str>)> = None;
    let mut pending_blanks: Vec<&str> = Vec::new();
    for (line, fate) in lines.iter().zip(fates) {
        if line.kind == Kind::Blank {
            pending_blanks.push(line.raw);
            continue;
        }
        match &mut current {
            Some((part, body)) if part == fate => {
                body.append(&mut pending_blanks);
                body.push(line.raw);
            }
            _ => {
                if let Some((part, body)) = current.take() {
                    fragments.push(Fragment { part, text: trim_blank_lines(&body.join("\n")) });
                }
                pending_blanks.clear();
                current = Some((*fate, vec![line.raw]));
            }
        }
    }
    if let Some((part, body)) = current {
        fragments.push(Fragment { part, text: trim_blank_lines(&body.join("\n")) });
    }
    ReplyParts { text, fragments, kept_whole: false }
}

/// Removes leading and trailing blank lines, keeping every other character as written.
fn trim_blank_lines(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let start = lines.iter().position(|l| !l.trim().is_empty()).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(start, |e| e + 1);
    lines[start..end].join("\n")
}

// ---------------------------------------------------------------------------------------
// HTML

/// Text put into the HTML at the edges of a quote container; it survives rendering and
/// tells which rendered lines came from inside the container.
const QUOTE_BEGIN: &str = "CASEGATEQUOTEBEGIN7F3A";
const QUOTE_END: &str = "CASEGATEQUOTEEND7F3A";

/// Where a quote container's content starts and (unless it runs to the end) ends, as byte
/// offsets into the HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Container {
    inner_start: usize,
    inner_end: Option<usize>,
}

/// How far a container's quoted content reaches.
enum Reach {
    /// The element's own content (Gmail's `gmail_quote`, a `<blockquote>`).
    Element,
    /// Everything after the element's start (Outlook puts the header in a `div` and the
    /// quoted message after it).
    ToEnd,
}

fn parts_of_html(html: &str, container: Option<Container>) -> ReplyParts {
    let marked = match container {
        None => html.to_string(),
        Some(c) => {
            let begin = format!("<div>{QUOTE_BEGIN}</div>");
            let end = format!("<div>{QUOTE_END}</div>");
            let mut s = String::with_capacity(html.len() + begin.len() + end.len());
            s.push_str(&html[..c.inner_start]);
            s.push_str(&begin);
            match c.inner_end {
                Some(e) => {
                    s.push_str(&html[c.inner_start..e]);
                    s.push_str(&end);
                    s.push_str(&html[e..]);
                }
                None => s.push_str(&html[c.inner_start..]),
            }
            s
        }
    };
    let rendered = normalise_text(&html_to_text(&marked));
    let (body, footnotes) = split_footnotes(&rendered);
    let body = quote_container_lines(&body);
    let mut result = parts(&body);
    // html2text lists link targets at the end; keep those the new text still refers to.
    let referenced: Vec<&str> = footnotes
        .iter()
        .filter(|note| note.split_once(']').is_some_and(|(num, _)| result.text.contains(&format!("]{num}]"))))
        .map(String::as_str)
        .collect();
    if !referenced.is_empty() {
        result.text = format!("{}\n\n{}", result.text, referenced.join("\n"));
    }
    result
}

/// Prefixes the lines rendered from inside the marked container with "> " so they read as
/// quoted, and removes the marker text. A forwarded message in the container stays as it is.
fn quote_container_lines(body: &str) -> String {
    // Before the container, inside it, after it.
    let mut sections: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut section = 0;
    for line in body.split('\n') {
        let mut rest = line;
        let mut split = false;
        while section < 2 {
            let token = if section == 0 { QUOTE_BEGIN } else { QUOTE_END };
            let Some(at) = rest.find(token) else { break };
            // What shares the marker's line is kept only if it is more than a quote prefix.
            let piece = &rest[..at];
            if !piece.trim_matches(|c: char| c == '>' || c.is_whitespace()).is_empty() {
                sections[section].push(piece);
            }
            rest = &rest[at + token.len()..];
            section += 1;
            split = true;
        }
        if !split || !rest.trim_matches(|c: char| c == '>' || c.is_whitespace()).is_empty() {
            sections[section].push(rest);
        }
    }
    let [before, inside, after] = sections;
    let last_before = before.iter().rev().map(|l| clean_line(l)).find(|l| !l.is_empty());
    let first_inside = inside.iter().map(|l| clean_line(l.trim_start_matches(['>', ' ']))).find(|l| !l.is_empty());
    let forwarded = [last_before, first_inside].iter().flatten().any(|l| forward_marker(l).is_some());
    let mut out: Vec<String> = before.iter().map(|l| l.to_string()).collect();
    for line in inside {
        let quoted = line.trim_start().starts_with('>') || line.trim().is_empty();
        out.push(if forwarded || quoted { line.to_string() } else { format!("> {line}") });
    }
    out.extend(after.iter().map(|l| l.to_string()));
    out.join("\n")
}

/// The first quote container in an HTML body, found by a small tag scanner (linear in the
/// input; it need not build a DOM to find one start tag and its matching end tag).
fn find_quote_container(html: &str) -> Option<Container> {
    let mut tags = Tags::new(html);
    while let Some(tag) = tags.next() {
        if tag.closing {
            continue;
        }
        let Some(reach) = container_reach(&tag) else {
            continue;
        };
        let inner_start = tag.end;
        let inner_end = match reach {
            Reach::ToEnd => None,
            Reach::Element if tag.self_closing || is_void(tag.name) => None,
            Reach::Element => {
                let mut depth = 1usize;
                let mut end = None;
                for t in tags.by_ref() {
                    if !t.name.eq_ignore_ascii_case(tag.name) || t.self_closing {
                        continue;
                    }
                    if t.closing {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(t.start);
                            break;
                        }
                    } else {
                        depth += 1;
                    }
                }
                end
            }
        };
        return Some(Container { inner_start, inner_end });
    }
    None
}

fn container_reach(tag: &Tag<'_>) -> Option<Reach> {
    let lower = |name: &str| tag.attr(name).unwrap_or_default().to_ascii_lowercase();
    let class = lower("class");
    let id = lower("id");
    let name = tag.name.to_ascii_lowercase();
    let element_classes =
        ["gmail_quote", "yahoo_quoted", "protonmail_quote", "moz-cite-prefix", "zmail_extra", "ik_mail_quote"];
    if element_classes.iter().any(|c| class.contains(c)) || id.starts_with("yahoo_quoted") {
        return Some(Reach::Element);
    }
    if name == "blockquote" {
        // Gmail indents text with a borderless blockquote; that is not a quote.
        let style: String = lower("style").split_whitespace().collect();
        let indentation = style.contains("border:none") && !class.contains("quote");
        return (!indentation).then_some(Reach::Element);
    }
    let to_end_ids = [
        "divrplyfwdmsg",
        "appendonsend",
        "olk_src_body_section",
        "mail-editor-reference-message-container",
        "isreplycontent",
        "origbody",
    ];
    if to_end_ids.iter().any(|i| id.ends_with(i)) || class.contains("outlookmessageheader") {
        return Some(Reach::ToEnd);
    }
    let marker = lower("data-marker");
    let zimbra = id == "zwchr" || marker == "__divider__" || marker == "__quoted_text__";
    if (name == "hr" && id.contains("stopspelling")) || zimbra {
        return Some(Reach::ToEnd);
    }
    if name == "div" || name == "p" {
        // Outlook's reply header: a div with only a top border, in one of two colours.
        let style: String = lower("style").split_whitespace().collect();
        if style.contains("border-top:solid#e1e1e1") || style.contains("border-top:solid#b5c4df") {
            return Some(Reach::ToEnd);
        }
    }
    None
}

fn is_void(name: &str) -> bool {
    const VOID: [&str; 14] =
        ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];
    VOID.iter().any(|v| v.eq_ignore_ascii_case(name))
}

/// One start or end tag.
struct Tag<'a> {
    name: &'a str,
    /// Byte offset of the `<`.
    start: usize,
    /// Byte offset just after the `>`.
    end: usize,
    closing: bool,
    self_closing: bool,
    attrs: &'a str,
}

impl<'a> Tag<'a> {
    /// The value of an attribute, by case-insensitive name.
    fn attr(&self, want: &str) -> Option<&'a str> {
        let s = self.attrs;
        let b = s.as_bytes();
        let mut k = 0;
        loop {
            while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'/') {
                k += 1;
            }
            if k >= b.len() {
                return None;
            }
            let name_start = k;
            while k < b.len() && !b[k].is_ascii_whitespace() && !matches!(b[k], b'=' | b'/') {
                k += 1;
            }
            let name = &s[name_start..k];
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            let mut value = "";
            if k < b.len() && b[k] == b'=' {
                k += 1;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if k < b.len() && (b[k] == b'"' || b[k] == b'\'') {
                    let quote = b[k];
                    let value_start = k + 1;
                    k = value_start;
                    while k < b.len() && b[k] != quote {
                        k += 1;
                    }
                    value = &s[value_start..k];
                    k += 1;
                } else {
                    let value_start = k;
                    while k < b.len() && !b[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    value = &s[value_start..k];
                }
            }
            if name.eq_ignore_ascii_case(want) {
                return Some(value);
            }
        }
    }
}

/// Start and end tags of an HTML text in order; comments, doctypes and the content of
/// `script`/`style`-like elements are skipped. Never reads a byte twice.
struct Tags<'a> {
    html: &'a str,
    lower: String,
    pos: usize,
}

impl<'a> Tags<'a> {
    fn new(html: &'a str) -> Self {
        Tags { html, lower: html.to_ascii_lowercase(), pos: 0 }
    }

    /// Offset just after the `>` that ends a tag whose attributes start at `from`; a `>`
    /// inside a quoted attribute value does not count.
    fn tag_end(&self, from: usize) -> usize {
        let b = self.html.as_bytes();
        let mut k = from;
        let mut after_equals = false;
        while k < b.len() {
            match b[k] {
                b'>' => return k + 1,
                b'=' => after_equals = true,
                q @ (b'"' | b'\'') if after_equals => {
                    k += 1;
                    while k < b.len() && b[k] != q {
                        k += 1;
                    }
                    after_equals = false;
                }
                c if c.is_ascii_whitespace() => {}
                _ => after_equals = false,
            }
            k += 1;
        }
        b.len()
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let html = self.html;
        loop {
            let start = self.pos + html.get(self.pos..)?.find('<')?;
            let rest = &html[start..];
            if let Some(comment) = rest.strip_prefix("<!--") {
                self.pos = comment.find("-->").map_or(html.len(), |e| start + 4 + e + 3);
                continue;
            }
            if rest.starts_with("<!") || rest.starts_with("<?") {
                self.pos = rest.find('>').map_or(html.len(), |e| start + e + 1);
                continue;
            }
            let (closing, name_at) = if rest.starts_with("</") { (true, 2) } else { (false, 1) };
            let after = &rest[name_at..];
            if !after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                self.pos = start + 1;
                continue;
            }
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_')))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let attrs_start = start + name_at + name_len;
            let end = self.tag_end(attrs_start);
            let attrs_end = if html[..end].ends_with('>') { end - 1 } else { end };
            let attrs = &html[attrs_start..attrs_end.max(attrs_start)];
            self.pos = end;
            let raw_text = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"];
            if !closing && raw_text.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                let close = format!("</{}", name.to_ascii_lowercase());
                self.pos = self.lower[end..].find(&close).map_or(html.len(), |e| end + e);
            }
            return Some(Tag { name, start, end, closing, self_closing: attrs.trim_end().ends_with('/'), attrs });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str) -> String {
        new_text(text)
    }

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
    fn signature_after_delimiter_is_removed() {
        let p = parts("this is an email with a correct -- signature.\n\n-- \nrick\n");
        assert_eq!(p.text, "this is an email with a correct -- signature.");
        assert_eq!(p.signature().as_deref(), Some("-- \nrick"));
        let p = parts("Hi.\n\n--\nrick");
        assert_eq!(p.text, "Hi.");
        assert_eq!(p.signature().as_deref(), Some("--\nrick"));
    }

    #[test]
    fn signature_followed_by_quoted_history_is_removed_with_it() {
        let text =
            "Ok, will do.\n\n> Il 26 marzo 2016 alle 13.16 Sam <s@x.example> ha scritto:\n> old\n\n--\nStefano\nEditor";
        let p = parts(text);
        assert_eq!(p.text, "Ok, will do.");
        assert!(p.signature().unwrap().starts_with("--\nStefano"));
    }

    #[test]
    fn phone_footers_are_removed_but_sentences_stay() {
        assert_eq!(cut("Here is another email\n\nSent from my BlackBerry"), "Here is another email");
        assert_eq!(cut("Ok\n\nSent from my iPhone\n\nOn 1 May 2020, at 10:00, Bob <b@x.example> wrote:\n\n> q"), "Ok");
        assert_eq!(cut("Ok\n\nGet Outlook for iOS<https://aka.ms/o0ukef>"), "Ok");
        assert_eq!(cut("Ok\n\nVon meinem iPhone gesendet"), "Ok");
        assert_eq!(cut("Ok\n\nEnvoyé de mon iPhone"), "Ok");
        let sentence = "Here is another email\n\nSent from my desk, is much easier then my mobile phone.";
        assert_eq!(cut(sentence), sentence);
        let middle = "Sent from my iPhone\nbut the bug is on the desktop too.";
        assert_eq!(cut(middle), middle);
    }

    #[test]
    fn phone_footer_as_its_own_paragraph_cuts_the_unmarked_history_below() {
        for footer in [
            "Sent from my Wiko RIDGE FAB 4G",
            "Sent from my iPhone",
            "Sent from my Galaxy",
            "Sent from my Samsung Galaxy smartphone.",
            "Sent from Mail for Windows",
            "Sent from Yahoo Mail for iPhone",
            "Envoyé de mon iPhone",
            "Von meinem iPhone gesendet",
            "Enviado desde mi iPhone",
            "Inviato da iPhone",
            "Verzonden vanaf mijn iPhone",
            "Get Outlook for iOS",
        ] {
            let p = parts(&format!("My answer.\n\n{footer}\n\nThe earlier message, unmarked.\nIts second line."));
            assert_eq!(p.text, "My answer.", "{footer}");
            let kinds: Vec<Part> = p.fragments.iter().map(|f| f.part).collect();
            assert_eq!(kinds, [Part::New, Part::Signature, Part::Quoted], "{footer}");
        }
        // Only a paragraph of its own is a footer: not a line inside a paragraph...
        let inside = "My answer.\n\nSent from my iPhone\nbut the desktop shows the bug too.\n\nBob";
        assert_eq!(cut(inside), inside);
        // ...nor a first line with nothing of the sender's above it.
        let first = "Sent from my iPhone\n\nThe printer is on fire.";
        assert_eq!(cut(first), first);
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
    fn regards_bullets_code_and_markdown_rules_are_not_signatures() {
        let texts = [
            "I wanted to discuss this with regards to the payment system.\n\nIn this regards we need care.",
            "One:\n- first bullet\n- second bullet\n\nTwo:\n- Here is another bullet point",
            "Code:\n\n```\nfunction f() {\n  // Sent from my custom mailer\n--\n  return 1;\n}\n```\n\nDone.",
            "Analysis:\n\n## Key Points\n----\n\n1. faster\n\n----\n\nThe dashes are formatting.\n\n====\n\nEnd.",
        ];
        for text in texts {
            assert_eq!(cut(text), text);
        }
    }

    #[test]
    fn bottom_posted_reply_drops_the_leading_quote() {
        let text = "On 04/02/2012 06:26 PM, Megan One wrote:\n> Hi\nHello\n";
        assert_eq!(cut(text), "Hello");
        // With several quoted blocks it is an inline reply, and the quotes stay.
        let inline = "On 15 Dec 2024, at 14:00, Jane <j@x.example> wrote:\n> A?\n\nYes.\n\n> B?\n\nNo.";
        assert_eq!(cut(inline), "> A?\n\nYes.\n\n> B?\n\nNo.");
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

    #[test]
    fn outlook_app_footer_cuts_the_unmarked_history_below_it() {
        for footer in [
            "Get Outlook for Android<https://aka.ms/ghei36>",
            "Télécharger Outlook pour iOS<https://aka.ms/o0ukef>",
            "Gesendet von Outlook für Android<https://aka.ms/AAb9ysg>",
        ] {
            let p = parts(&format!("My answer.\n\n{footer}\n\nHi there, old text."));
            assert_eq!(p.text, "My answer.", "{footer}");
            let kinds: Vec<Part> = p.fragments.iter().map(|f| f.part).collect();
            assert_eq!(kinds, [Part::New, Part::Signature, Part::Quoted]);
        }
    }

    #[test]
    fn trailing_block_of_phone_footers_is_removed() {
        let text = "Sent this from too many devices ;)\n\nEnvoyé depuis mon iPhone\nVon meinem Mobilgerät gesendet\nNik from mobile\nFrom My Iphone 6\nSent from my cell, please excuse any typos.\n<<sent by galaxy>>\n(Sent from mobile device)\n從我的 iPhone 傳送\nGet Outlook for iOShttps://aka.ms/o0ukef";
        assert_eq!(cut(text), "Sent this from too many devices ;)");
    }

    #[test]
    fn mailing_list_footer_after_underscores_is_a_signature() {
        let text = "Oh thanks.\n\n-Abhishek\n\n__\nriak-users mailing list\nriak-users@lists.example\nhttp://lists.example/listinfo";
        let p = parts(text);
        assert_eq!(p.text, "Oh thanks.\n\n-Abhishek");
        assert!(p.signature().unwrap().starts_with("__\nriak-users"));
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
    fn nothing_left_keeps_the_whole_message() {
        let text = "> only a quote\n> nothing else\n";
        let p = parts(text);
        assert_eq!(p.text, "> only a quote\n> nothing else");
        let text = "-----Original Message-----\nFrom: a@x.example\nSubject: s\n\nbody";
        let p = parts(text);
        assert!(p.kept_whole);
        assert_eq!(p.text, text);
        assert_eq!(new_text(""), "");
    }

    #[test]
    fn output_has_lf_endings_and_single_blank_lines() {
        let got = cut("\r\n  a  \r\n\r\n\r\n\r\nb\r\n\r\n");
        assert_eq!(got, "a\n\nb");
    }

    #[test]
    fn fragments_cover_every_line_in_order() {
        let p = parts(
            "Awesome!\n\nOn Aug 22, 2011, at 7:37 PM, defunkt<reply@x.example> wrote:\n\n> Loader works.\n\n-- \nsig",
        );
        let parts_seen: Vec<Part> = p.fragments.iter().map(|f| f.part).collect();
        assert_eq!(parts_seen, [Part::New, Part::Quoted, Part::Signature]);
        assert!(p.fragments[1].text.starts_with("On Aug 22") && p.fragments[1].text.contains("Loader"));
    }

    fn html_mail(html: &str, text: Option<&str>) -> InboundMail {
        InboundMail {
            html: Some(html.to_string()),
            text: text.map_or_else(|| normalise_text(&html_to_text(html)), str::to_string),
            text_from_html: text.is_none(),
            ..Default::default()
        }
    }

    #[test]
    fn gmail_quote_container_is_cut() {
        let html = "<div dir=\"ltr\">Hello, see <a href=\"https://x.example/doc\">the doc</a></div><br><div class=\"gmail_quote\"><div class=\"gmail_attr\">On Mon, Apr 2, 2012 at 6:26 PM, Megan &lt;<a href=\"mailto:m@x.example\">m@x.example</a>&gt; wrote:<br></div><blockquote class=\"gmail_quote\">Hi</blockquote></div>";
        let got = new_text_of(&html_mail(html, None));
        assert_eq!(got, "Hello, see [the doc][1]\n\n[1]: https://x.example/doc");
    }

    #[test]
    fn outlook_reply_header_in_html_cuts_to_the_end() {
        let html = "<div>Done, see attached.</div><div id=\"appendonsend\"></div><hr style=\"display:inline-block;width:98%\"><div id=\"divRplyFwdMsg\"><b>De :</b> Jan &lt;jan@x.example&gt;<br><b>Envoyé :</b> vendredi<br></div><div>Could you send the contract?</div>";
        assert_eq!(new_text_of(&html_mail(html, None)), "Done, see attached.");
        let border = "<p>Yes.</p><div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in\"><p><b>From:</b> Jan</p></div><p>Old question</p>";
        // The mail also has a text part; the HTML marks the quote, so it is used.
        assert_eq!(new_text_of(&html_mail(border, Some("Yes.\n\nFrom: Jan\nOld question"))), "Yes.");
    }

    #[test]
    fn html_inline_reply_keeps_text_after_the_blockquote() {
        let html = "<blockquote type=\"cite\">Which version?</blockquote><div>4.2</div><blockquote type=\"cite\">Thanks</blockquote>";
        assert_eq!(new_text_of(&html_mail(html, None)), "> Which version?\n\n4.2");
    }

    #[test]
    fn html_forward_in_a_gmail_quote_is_kept() {
        let html = "<div>FYI</div><div class=\"gmail_quote\"><div class=\"gmail_attr\">---------- Forwarded message ---------<br>From: Vendor &lt;v@vendor.example&gt;<br>Subject: Patch<br></div><br>The patch is ready.</div>";
        let got = new_text_of(&html_mail(html, None));
        assert!(got.contains("The patch is ready."), "{got}");
    }

    #[test]
    fn text_part_is_used_when_html_has_no_quote_markup() {
        let mail = html_mail(
            "<p>Hello</p><p>-----Original Message-----<br>From: x</p>",
            Some("Hello\n\n-----Original Message-----\nFrom: x@x.example\nSubject: s\n\nold"),
        );
        assert!(find_quote_container(mail.html.as_deref().unwrap()).is_none());
        assert_eq!(new_text_of(&mail), "Hello");
    }

    #[test]
    fn tag_scanner_handles_quotes_comments_and_raw_text() {
        let html = "<!-- <blockquote> --><style>.x{}</style><script>if (a<b) {}</script><div title='a>b' class=\"gmail_quote\"><div>in</div>q</div>after";
        let c = find_quote_container(html).expect("container found");
        assert_eq!(&html[c.inner_start..c.inner_end.unwrap()], "<div>in</div>q");
        assert!(find_quote_container(
            "<p>plain</p><blockquote style=\"margin:0 0 0 40px;border:none\">indent</blockquote>"
        )
        .is_none());
    }

    /// Inputs built from the pieces that steer the parser, in random order; a cheap fuzzer
    /// that keeps the test fast and deterministic.
    #[test]
    fn never_panics_and_never_invents_text() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let pieces = [
            "On Mon, 1 Jan 2024 at 10:00, Bob <b@x.example> wrote:",
            "wrote:",
            "> ",
            ">",
            "-- ",
            "--",
            "\n",
            "\n\n",
            "\r\n",
            "\r",
            "From: a@x.example",
            "Sent: Monday 10:00",
            "Subject: s",
            "To: t",
            "________",
            "-----Original Message-----",
            "Sent from my iPhone",
            "```",
            "Begin forwarded message:",
            "é",
            "写道",
            "\u{200B}",
            "\u{A0}",
            "Am 1.1.2020 schrieb",
            " ",
            "text",
            "2016-03-03 17:21 GMT+01:00 X",
            ">:",
            "> wrote:",
            "<b@x.example",
            "mailto:b@x.example",
            "<blockquote>",
            "</blockquote>",
            "<div class=gmail_quote>",
            "</div>",
            "<!--",
            "<hr id=stopSpelling>",
            "\"",
            "'",
            "=",
            "<",
            "</",
            "<style>",
            "\u{FFFD}",
        ];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..3000 {
            let len = rng.gen_range(0..40);
            let input: String = (0..len).map(|_| pieces[rng.gen_range(0..pieces.len())]).collect();
            let out = new_text(&input);
            assert!(!out.contains('\r') && !out.contains("\n\n\n"), "{input:?}");
            assert_eq!(out, out.trim());
            assert_eq!(out.is_empty(), input.trim().is_empty(), "{input:?}");
            for line in out.lines() {
                assert!(input.contains(line.trim()), "invented {line:?} from {input:?}");
            }
            let _ = new_text_of(&html_mail(&input, None));
        }
    }

    #[test]
    fn large_inputs_are_handled_in_one_pass() {
        // Quadratic behaviour would make this test take minutes rather than milliseconds.
        let block = "On Mon, 1 Jan 2024 at 10:00, Bob <b@x.example> wrote:\n> quoted\nanswer\nFrom: x\n";
        let text = block.repeat(20_000);
        assert!(new_text(&text).starts_with("> quoted\nanswer"));
        // A signature delimiter above thousands of attributed quotes.
        let signed = format!("Hi\n-- \n{}", "On 1 Jan 2024 at 10:00, B <b@x.example> wrote:\n> q\n".repeat(20_000));
        assert_eq!(new_text(&signed), "Hi");
        let html = "<p>x</p>".repeat(50_000) + &"<blockquote>q</blockquote>".repeat(20_000);
        let _ = new_text_of(&html_mail(&html, Some("x")));
    }
}
