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
//!
//! The rules live in one file each, by concern: `lines` reads what each line looks like,
//! `attribution` and `signature` recognise attribution lines, signatures and device footers
//! (header blocks, "Original Message" lines and forward markers are recognised in
//! `parse::quoting`, shared with forward detection), `cuts` decides from them where the new
//! text ends, and `html` finds and marks quote containers.

mod attribution;
mod cuts;
mod html;
mod lines;
mod signature;

use super::{normalise_text, InboundMail};
use lines::{Kind, Line};

pub use lines::Part;

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
    let lines = lines::classify(&text);
    let fates = cuts::assign_parts(&lines);
    assemble(&lines, &fates)
}

/// [`parts`] of a parsed mail, using its HTML when that is the better evidence.
pub fn parts_of(mail: &InboundMail) -> ReplyParts {
    if let Some(html) = mail.html.as_deref() {
        let container = html::find_quote_container(html);
        if mail.text_from_html || container.is_some() {
            return parts_of_html(html, container);
        }
    }
    parts(&mail.text)
}

/// [`parts`] of an HTML body, the lines from inside its quote container read as quoted.
fn parts_of_html(html: &str, container: Option<html::Container>) -> ReplyParts {
    let (body, footnotes) = html::render_with_quotes_marked(html, container);
    let mut result = parts(&body);
    // html2text lists link targets at the end; keep those the new text still refers to.
    html::append_referenced_footnotes(&mut result.text, &footnotes);
    result
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

/// The new text of lines whose parts are decided, and every line grouped into fragments;
/// the whole message when nothing would be left.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::html_to_text;

    /// The new text of a plain-text body, as most tests compare it.
    pub(super) fn cut(text: &str) -> String {
        new_text(text)
    }

    /// A mail with this HTML body, and this text part or else the text rendered from the HTML.
    pub(super) fn html_mail(html: &str, text: Option<&str>) -> InboundMail {
        InboundMail {
            html: Some(html.to_string()),
            text: text.map_or_else(|| normalise_text(&html_to_text(html)), str::to_string),
            text_from_html: text.is_none(),
            ..Default::default()
        }
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
