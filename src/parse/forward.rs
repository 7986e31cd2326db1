//! Forwarded mail: the original message inside a forwarder's mail.
//!
//! An admin may forward a customer's mail to open a case on the customer's behalf. Mail
//! programs forward in two ways: inline, with a marker line and a header block above the
//! original text, or as an attached `message/rfc822`. [`find_forwarded`] recognises both and
//! returns the original sender, recipients, subject and text, and what the forwarder wrote.
//!
//! Evidence is required, not guessed: an inline forward needs a marker line that only
//! forwarding produces ("---------- Forwarded message ---------", "Begin forwarded
//! message:", and their translations) followed by a header block, or — for Outlook, whose
//! forward looks exactly like its reply — a forward prefix on the subject ("FW:", "WG:", …).
//! A mail that merely mentions forwarding is not a forward.

use std::sync::LazyLock;

use regex::Regex;

use super::quoting::{
    clean_line, constant_regex, forward_marker, is_original_message, read_header_block, split_footnotes, ForwardMarker,
    HeaderBlock, HeaderField,
};
use super::reply;
use super::{normalise_text, InboundMail};
use crate::address::{Address, Mailbox};

/// Most characters the forwarder may write around an attached message for the mail to count
/// as forwarding it, when the subject does not say so.
const MAX_ATTACHED_PREAMBLE: usize = 500;

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

/// The original message found inside a forwarder's mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The original sender.
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: Option<String>,
    /// The original's date as written in the header block (not parsed: its format depends
    /// on the forwarder's mail program and language).
    pub date_text: Option<String>,
    /// The original's text (normalised).
    pub body: String,
    /// What the forwarder wrote above the forwarded part (normalised).
    pub preamble: String,
    pub style: ForwardStyle,
}

/// The forwarded original in `mail`, or `None` when `mail` is not a forward.
pub fn find_forwarded(mail: &InboundMail) -> Option<Forwarded> {
    let lines: Vec<String> = mail.text.replace("\r\n", "\n").split('\n').map(clean_line).collect();
    let subject_says_forward = FORWARD_PREFIX.is_match(&mail.subject);
    inline_after_marker(mail, &lines, subject_says_forward)
        .or_else(|| attached(mail, subject_says_forward))
        .or_else(|| subject_says_forward.then(|| inline_outlook_block(mail, &lines)).flatten())
}

// ---------------------------------------------------------------------------------------
// Subject prefixes and rendered links

/// "Fwd:", "FW:", "WG:", "TR:", "RV:", "Doorst:", "VS:", "Enc:", "PD:", after an optional
/// list tag such as `[support]`.
static FORWARD_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(r"(?i)^\s*(?:\[[^\]]{0,40}\]\s*)?(?:fwd?|wg|tr|rv|doorst|vs|vb|enc|pd|reenv)\s*(?:\[\d+\])?\s*:")
});
static LEADING_FORWARD_PREFIXES: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"(?i)^(?:\s*(?:fwd?|wg|tr|rv|doorst|vs|vb|enc|pd|reenv)\s*(?:\[\d+\])?\s*:\s*)+"));
/// An html2text link, `[text][3]`: the text is what the sender saw.
static RENDERED_LINK: LazyLock<Regex> = LazyLock::new(|| constant_regex(r"\[([^\[\]]*)\]\[\d+\]"));

// ---------------------------------------------------------------------------------------
// Inline forwards

/// The style a forward marker line stands for.
fn style_of(marker: ForwardMarker) -> ForwardStyle {
    match marker {
        ForwardMarker::Dashed => ForwardStyle::Gmail,
        ForwardMarker::Thunderbird => ForwardStyle::Thunderbird,
        ForwardMarker::BeginForwarded => ForwardStyle::AppleMail,
    }
}

fn inline_after_marker(mail: &InboundMail, lines: &[String], subject_says_forward: bool) -> Option<Forwarded> {
    for (i, line) in lines.iter().enumerate() {
        let style = match forward_marker(line) {
            Some(marker) => style_of(marker),
            // Outlook writes the same line above a reply; only the subject tells them apart.
            None if subject_says_forward && is_original_message(line) => ForwardStyle::Outlook,
            None => continue,
        };
        let Some(start) = (i + 1..lines.len()).find(|&k| !lines[k].is_empty()) else {
            continue;
        };
        let Some(block) = read_header_block(lines, start) else {
            continue;
        };
        if block.value(HeaderField::From).is_none() && block.value(HeaderField::Subject).is_none() {
            continue;
        }
        return Some(build(mail, lines, i, &block, style));
    }
    None
}

/// Outlook's forward without a marker: a separator line (maybe) and a From/Sent block.
fn inline_outlook_block(mail: &InboundMail, lines: &[String]) -> Option<Forwarded> {
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('>') {
            continue;
        }
        let Some(block) = read_header_block(lines, i) else {
            continue;
        };
        let fields = [HeaderField::Date, HeaderField::Subject, HeaderField::To];
        let from = block.value(HeaderField::From).is_some();
        if from && fields.iter().any(|f| block.value(*f).is_some()) {
            // The separator line above, if any, belongs to the forward, not the preamble.
            let mut top = i;
            while top > 0 && (lines[top - 1].is_empty() || is_rule(&lines[top - 1])) {
                top -= 1;
            }
            return Some(build(mail, lines, top, &block, ForwardStyle::Outlook));
        }
    }
    None
}

fn is_rule(line: &str) -> bool {
    line.len() >= 3 && line.chars().all(|c| matches!(c, '_' | '-' | '─' | '—' | '=' | ' '))
}

/// A [`Forwarded`] from an inline forward whose preamble ends before `lines[top]` and whose
/// header block is `block`.
fn build(mail: &InboundMail, lines: &[String], top: usize, block: &HeaderBlock, style: ForwardStyle) -> Forwarded {
    let value = |field| block.value(field).map(plain_value).filter(|v| !v.is_empty());
    let mut body = normalise_text(&lines[block.end + 1..].join("\n"));
    if mail.text_from_html {
        body = drop_unreferenced_footnotes(&body);
    }
    Forwarded {
        from: value(HeaderField::From).and_then(|v| parse_mailbox(&v)),
        to: value(HeaderField::To).map_or_else(Vec::new, |v| parse_mailbox_list(&v)),
        cc: value(HeaderField::Cc).map_or_else(Vec::new, |v| parse_mailbox_list(&v)),
        subject: value(HeaderField::Subject).or_else(|| forwarder_subject(mail)),
        date_text: value(HeaderField::Date),
        body,
        preamble: normalise_text(&lines[..top].join("\n")),
        style,
    }
}

/// For HTML-only mail the rendered text ends with the whole document's link list; the body
/// keeps only the links it refers to.
fn drop_unreferenced_footnotes(body: &str) -> String {
    let (text, notes) = split_footnotes(body);
    let kept: Vec<&String> =
        notes.iter().filter(|n| n.split_once(']').is_some_and(|(num, _)| text.contains(&format!("]{num}]")))).collect();
    let mut out = normalise_text(&text);
    if !kept.is_empty() {
        out.push('\n');
    }
    for note in kept {
        out.push('\n');
        out.push_str(note);
    }
    out
}

/// The forwarder's subject without its "Fwd:"-style prefixes.
fn forwarder_subject(mail: &InboundMail) -> Option<String> {
    let subject = LEADING_FORWARD_PREFIXES.replace(&mail.subject, "");
    let subject = subject.trim();
    (!subject.is_empty()).then(|| subject.to_string())
}

/// A header value as the reader saw it: rendered links and bold markers removed.
fn plain_value(value: &str) -> String {
    let plain = RENDERED_LINK.replace_all(value, "$1");
    plain.trim().trim_matches('*').trim().to_string()
}

// ---------------------------------------------------------------------------------------
// Attached forwards

fn attached(mail: &InboundMail, subject_says_forward: bool) -> Option<Forwarded> {
    let original = mail.attached_messages.first()?;
    let own_words = reply::new_text(&mail.text);
    if !subject_says_forward && own_words.chars().count() > MAX_ATTACHED_PREAMBLE {
        return None;
    }
    let subject = original.subject.trim();
    Some(Forwarded {
        from: original.from.clone(),
        to: original.to.clone(),
        cc: original.cc.clone(),
        subject: if subject.is_empty() { forwarder_subject(mail) } else { Some(subject.to_string()) },
        date_text: original.header("date").map(str::to_string),
        body: normalise_text(&original.text),
        preamble: normalise_text(&mail.text),
        style: ForwardStyle::Attached,
    })
}

// ---------------------------------------------------------------------------------------
// Addresses as written in header blocks

/// One mailbox as a mail program writes it in a forwarded header block:
/// `Jane Doe <jane@x.example>`, `"Doe, Jane" <jane@x.example>`, `jane@x.example` or
/// Outlook's `Jane Doe [mailto:jane@x.example]`.
pub(crate) fn parse_mailbox(value: &str) -> Option<Mailbox> {
    let value = plain_value(value);
    let (name, address) = if let Some(open) = value.rfind('<') {
        let close = value[open..].find('>')? + open;
        (&value[..open], &value[open + 1..close])
    } else if let Some(open) = value.find("[mailto:") {
        let close = value[open..].find(']')? + open;
        (&value[..open], &value[open + 1..close])
    } else {
        let token = value.split_whitespace().find(|t| t.contains('@'))?.trim_matches(|c: char| "()[]\"',;".contains(c));
        ("", token)
    };
    let address = Address::parse(address)?;
    let name = name.trim().trim_matches(|c: char| c == '"' || c == '\'' || c == '*' || c.is_whitespace()).to_string();
    let name = (!name.is_empty() && !name.eq_ignore_ascii_case(address.as_str())).then_some(name);
    Some(Mailbox { name, address })
}

/// A list of mailboxes separated by `;` or `,`. A comma only separates once an address has
/// been seen, since Outlook writes names as "Doe, Jane" without quotes.
pub(crate) fn parse_mailbox_list(value: &str) -> Vec<Mailbox> {
    let mut items: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            '<' | '[' | '(' if !in_quotes => depth += 1,
            '>' | ']' | ')' if !in_quotes => depth = depth.saturating_sub(1),
            ';' if !in_quotes && depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            ',' if !in_quotes && depth == 0 && current.contains('@') => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    let mut out: Vec<Mailbox> = Vec::new();
    for mailbox in items.iter().filter_map(|i| parse_mailbox(i)) {
        if !out.iter().any(|m| m.address == mailbox.address) {
            out.push(mailbox);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{html_to_text, parse};

    fn mail(subject: &str, text: &str) -> InboundMail {
        InboundMail { subject: subject.to_string(), text: text.to_string(), ..Default::default() }
    }

    fn addresses(list: &[Mailbox]) -> Vec<&str> {
        list.iter().map(|m| m.address.as_str()).collect()
    }

    #[test]
    fn gmail_forward_yields_the_original_sender_and_text() {
        let m = mail(
            "Fwd: Printer on fire",
            "Please open a case for Jane.\n\n---------- Forwarded message ---------\nFrom: Jane Doe <Jane@Customer.example>\nDate: Mon, 23 Nov 2026 at 10:00\nSubject: Printer on fire\nTo: <support@example.com>\nCc: Bob <bob@customer.example>, carol@customer.example\n\n\nIt burns.\n\nJane",
        );
        let f = find_forwarded(&m).expect("a forward");
        assert_eq!(f.style, ForwardStyle::Gmail);
        let from = f.from.unwrap();
        assert_eq!(from.address.as_str(), "jane@customer.example");
        assert_eq!(from.name.as_deref(), Some("Jane Doe"));
        assert_eq!(addresses(&f.to), ["support@example.com"]);
        assert_eq!(addresses(&f.cc), ["bob@customer.example", "carol@customer.example"]);
        assert_eq!(f.subject.as_deref(), Some("Printer on fire"));
        assert_eq!(f.date_text.as_deref(), Some("Mon, 23 Nov 2026 at 10:00"));
        assert_eq!(f.body, "It burns.\n\nJane");
        assert_eq!(f.preamble, "Please open a case for Jane.");
    }

    #[test]
    fn outlook_desktop_forward_needs_the_subject_prefix() {
        let text = "Please handle.\n\nAdmin\n\nFrom: Doe, Jane <jane@customer.example>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Support <support@example.com>\nCc: Smith, Bob <bob@customer.example>; carol@customer.example\nSubject: Printer on fire\n\nIt burns.";
        let f = find_forwarded(&mail("FW: Printer on fire", text)).expect("a forward");
        assert_eq!(f.style, ForwardStyle::Outlook);
        let from = f.from.unwrap();
        assert_eq!(from.name.as_deref(), Some("Doe, Jane"));
        assert_eq!(addresses(&f.cc), ["bob@customer.example", "carol@customer.example"]);
        assert_eq!(f.date_text.as_deref(), Some("Monday, November 23, 2026 10:00 AM"));
        assert_eq!(f.body, "It burns.");
        assert_eq!(f.preamble, "Please handle.\n\nAdmin");
        // The same block under a reply subject is quoted history, not a forward.
        assert_eq!(find_forwarded(&mail("RE: Printer on fire", text)), None);
    }

    #[test]
    fn outlook_original_message_with_mailto_sender() {
        let text = "FYI\n\n-----Original Message-----\nFrom: Jane Doe [mailto:jane@customer.example]\nSent: Monday, November 23, 2026 10:00 AM\nTo: support@example.com\nSubject: Printer on fire\n\nIt burns.";
        let f = find_forwarded(&mail("WG: Printer on fire", text)).expect("a forward");
        assert_eq!(f.style, ForwardStyle::Outlook);
        assert_eq!(f.from.unwrap().address.as_str(), "jane@customer.example");
        assert_eq!(f.preamble, "FYI");
        assert_eq!(f.body, "It burns.");
    }

    #[test]
    fn outlook_web_and_localized_outlook_forwards() {
        let web = "See below.\n\n________________________________\nFrom: Jane Doe <jane@customer.example>\nSent: Monday, November 23, 2026 10:00\nTo: support <support@example.com>\nSubject: Printer on fire\n\nIt burns.";
        let f = find_forwarded(&mail("Fw: Printer on fire", web)).expect("a forward");
        assert_eq!(f.preamble, "See below.");
        assert_eq!(f.from.unwrap().address.as_str(), "jane@customer.example");

        let german = "Bitte aufnehmen.\n\nVon: Hans Muster <hans@kunde.example>\nGesendet: Montag, 23. November 2026 10:00\nAn: support@example.com\nBetreff: Drucker brennt\n\nEs brennt.";
        let f = find_forwarded(&mail("WG: Drucker brennt", german)).expect("a forward");
        assert_eq!(f.from.unwrap().address.as_str(), "hans@kunde.example");
        assert_eq!(f.subject.as_deref(), Some("Drucker brennt"));
        assert_eq!(f.date_text.as_deref(), Some("Montag, 23. November 2026 10:00"));

        let french = "*De :* Jeanne <jeanne@client.example>\n*Envoyé :* lundi 23 novembre 2026 10:00\n*À :* support@example.com\n*Objet :* Imprimante\n\nElle brûle.";
        let f = find_forwarded(&mail("TR: Imprimante", french)).expect("a forward");
        assert_eq!(f.from.unwrap().name.as_deref(), Some("Jeanne"));
        assert_eq!(f.body, "Elle brûle.");
        assert_eq!(f.preamble, "");
    }

    #[test]
    fn apple_mail_forward() {
        let text = "Begin forwarded message:\n\nFrom: Jane Doe <jane@customer.example>\nSubject: Printer on fire\nDate: 23 November 2026 at 10:00:00 CET\nTo: support@example.com\n\nIt burns.";
        let f = find_forwarded(&mail("Fwd: Printer on fire", text)).expect("a forward");
        assert_eq!(f.style, ForwardStyle::AppleMail);
        assert_eq!(f.from.unwrap().address.as_str(), "jane@customer.example");
        assert_eq!(f.date_text.as_deref(), Some("23 November 2026 at 10:00:00 CET"));
        assert_eq!(f.body, "It burns.");
    }

    #[test]
    fn thunderbird_forward_with_tabs() {
        let text = "Can you look at this?\n\n-------- Forwarded Message --------\nSubject: \tPrinter on fire\nDate: \tMon, 23 Nov 2026 10:00:00 +0100\nFrom: \tJane Doe <jane@customer.example>\nTo: \tsupport@example.com\n\nIt burns.";
        let f = find_forwarded(&mail("Fwd: Printer on fire", text)).expect("a forward");
        assert_eq!(f.style, ForwardStyle::Thunderbird);
        assert_eq!(f.subject.as_deref(), Some("Printer on fire"));
        assert_eq!(f.from.unwrap().address.as_str(), "jane@customer.example");
        assert_eq!(f.preamble, "Can you look at this?");
    }

    #[test]
    fn subject_comes_from_the_forwarder_when_the_block_has_none() {
        let text = "---------- Forwarded message ---------\nFrom: jane@customer.example\nDate: today\n\nIt burns.";
        let f = find_forwarded(&mail("Fwd: FW: Printer on fire", text)).expect("a forward");
        assert_eq!(f.subject.as_deref(), Some("Printer on fire"));
        assert_eq!(f.from.unwrap().name, None);
    }

    #[test]
    fn html_only_gmail_forward_is_read_from_the_rendered_text() {
        let html = "<div>Please open a case.</div><div class=\"gmail_quote\"><div class=\"gmail_attr\">---------- Forwarded message ---------<br>From: <strong class=\"gmail_sendername\">Jane Doe</strong> <span>&lt;<a href=\"mailto:jane@customer.example\">jane@customer.example</a>&gt;</span><br>Date: Mon, 23 Nov 2026 at 10:00<br>Subject: Printer on fire<br>To: &lt;<a href=\"mailto:support@example.com\">support@example.com</a>&gt;<br></div><br><br><div>It burns, see <a href=\"https://x.example/p.jpg\">photo</a>.</div></div>";
        let m = InboundMail {
            subject: "Fwd: Printer on fire".into(),
            text: normalise_text(&html_to_text(html)),
            html: Some(html.into()),
            text_from_html: true,
            ..Default::default()
        };
        let f = find_forwarded(&m).expect("a forward");
        let from = f.from.unwrap();
        assert_eq!(from.address.as_str(), "jane@customer.example");
        assert_eq!(from.name.as_deref(), Some("Jane Doe"));
        assert_eq!(addresses(&f.to), ["support@example.com"]);
        assert_eq!(f.body, "It burns, see [photo][3].\n\n[3]: https://x.example/p.jpg");
    }

    #[test]
    fn attached_original_is_used_when_the_forwarder_wrote_little() {
        let raw = concat!(
            "From: admin@example.com\r\nSubject: Fwd: printer\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
            "--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n",
            "--B\r\nContent-Type: message/rfc822\r\n\r\n",
            "From: Cust <cust@customer.example>\r\nTo: support@example.com\r\nSubject: Printer on fire\r\n",
            "Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nCc: boss@customer.example\r\n\r\nIt burns.\r\n",
            "--B--\r\n"
        );
        let m = parse(raw.as_bytes()).expect("parses");
        let f = find_forwarded(&m).expect("a forward");
        assert_eq!(f.style, ForwardStyle::Attached);
        assert_eq!(f.from.unwrap().address.as_str(), "cust@customer.example");
        assert_eq!(addresses(&f.cc), ["boss@customer.example"]);
        assert_eq!(f.subject.as_deref(), Some("Printer on fire"));
        assert_eq!(f.date_text.as_deref(), Some("Mon, 23 Nov 2026 10:00:00 +0100"));
        assert_eq!(f.body, "It burns.");
        assert_eq!(f.preamble, "see attached");

        // A long message that merely carries an old mail as evidence is not a forward...
        let mut long = m.clone();
        long.subject = "Printer".into();
        long.text = "This is a long account of what happened. ".repeat(20);
        assert_eq!(find_forwarded(&long), None);
        // ...unless the subject says it is.
        long.subject = "Fwd: Printer".into();
        assert!(find_forwarded(&long).is_some());
    }

    #[test]
    fn ordinary_mail_is_not_a_forward() {
        for (subject, text) in [
            ("Printer", "I forwarded your message to the team; they will call.\n\nThanks"),
            (
                "Re: Printer",
                "Ok.\n\nOn Mon, 23 Nov 2026 at 10:00, Jane <jane@x.example> wrote:\n> forwarded message below",
            ),
            ("Fwd: nothing", "---------- Forwarded message ---------\nno header here\n\nbody"),
            (
                "Printer",
                "Ok\n\nFrom: Jane <jane@x.example>\nSent: Monday\nTo: support@example.com\nSubject: Printer\n\nold",
            ),
            ("", ""),
        ] {
            assert_eq!(find_forwarded(&mail(subject, text)), None, "{text:?}");
        }
    }

    #[test]
    fn mailboxes_are_read_in_the_forms_mail_programs_write() {
        let cases = [
            ("Jane Doe <jane@x.example>", Some("Jane Doe"), "jane@x.example"),
            ("\"Doe, Jane\" <jane@x.example>", Some("Doe, Jane"), "jane@x.example"),
            ("jane@x.example", None, "jane@x.example"),
            ("<jane@x.example>", None, "jane@x.example"),
            ("Jane Doe [mailto:jane@x.example]", Some("Jane Doe"), "jane@x.example"),
            ("*Jane Doe* <[jane@x.example][1]>", Some("Jane Doe"), "jane@x.example"),
            ("jane@x.example <mailto:jane@x.example>", None, "jane@x.example"),
        ];
        for (value, name, address) in cases {
            let m = parse_mailbox(value).unwrap_or_else(|| panic!("{value:?} should parse"));
            assert_eq!((m.name.as_deref(), m.address.as_str()), (name, address), "{value:?}");
        }
        assert_eq!(parse_mailbox("Alexander"), None);
        assert_eq!(parse_mailbox("Jane <not an address>"), None);
        let list = parse_mailbox_list(
            "Doe, Jane <jane@x.example>; \"Smith, Bob\" <bob@x.example>, carol@x.example, jane@x.example",
        );
        assert_eq!(addresses(&list), ["jane@x.example", "bob@x.example", "carol@x.example"]);
    }
}
