//! Signatures: the "-- " delimiter (RFC 3676), a bare "--", the line of underscores mailing
//! lists put above their footer, and the footers phones and mail apps append ("Sent from my
//! iPhone", "Envoyé de mon …", "Von meinem … gesendet", "Get Outlook for iOS", …).
//!
//! Phone apps often put their footer between the reply and the message answered, which
//! they do not mark: such a footer, as a paragraph of its own, is where the history starts.

use std::sync::LazyLock;

use regex::Regex;

use super::lines::{next_non_blank, Kind, Line};
use crate::parse::quoting::constant_regex;

/// Words a "Sent from my …" footer may have; longer lines are sentences.
const MAX_FOOTER_WORDS: usize = 12;
/// Longest line (in bytes) read as a footer in the middle of a message; a cheap gate before
/// the patterns, as every paragraph of one line is a candidate.
const MAX_FOOTER_BYTES: usize = 200;

/// "-- " (RFC 3676), a bare "--", or a line of underscores (mailing-list footers).
pub(super) fn is_signature_delimiter(clean: &str) -> bool {
    clean == "--" || (clean.len() >= 2 && clean.chars().all(|c| c == '_'))
}

// ---------------------------------------------------------------------------------------
// Phone and mail app footers

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
/// A link as html2text renders it (`[text][1]`), or a bare URL in brackets at the end.
static LINK_DECORATION: LazyLock<Regex> =
    LazyLock::new(|| constant_regex(r"\[([^\[\]]*)\]\[\d+\]|\s*[<\[(]\s*(?:https?|mailto):[^\s>\])]*\s*[>\])]"));

/// A footer line without its link ("Get Outlook for iOS<https://aka.ms/…>").
fn footer_text(clean: &str) -> String {
    let plain = LINK_DECORATION.replace_all(clean, "$1");
    plain.trim().trim_end_matches(['>', ')', ']']).trim().to_string()
}

/// A "Sent from my iPhone"-style line, with its link removed.
pub(super) fn is_phone_footer(clean: &str) -> bool {
    let plain = footer_text(clean);
    plain.split_whitespace().count() <= MAX_FOOTER_WORDS
        && (FOOTER.is_match(&plain) || SHORT_FOOTER.is_match(&plain) || OUTLOOK_APP_FOOTER.is_match(&plain))
}

/// A phone footer standing as a paragraph of its own with more text below it: phone apps
/// put it between the reply and the earlier message, which they do not mark ("Sent from my
/// Wiko RIDGE FAB 4G", a blank line, then the message answered).
pub(super) fn is_footer_paragraph(lines: &[Line<'_>], i: usize) -> bool {
    let blank = |k: usize| lines.get(k).is_some_and(|l| l.kind == Kind::Blank);
    lines[i].clean.len() <= MAX_FOOTER_BYTES
        && i > 0
        && blank(i - 1)
        && blank(i + 1)
        && next_non_blank(lines, i + 1).is_some()
        && is_phone_footer(&lines[i].clean)
}

/// The Outlook apps' footer ("Get Outlook for iOS"), which marks the history below it.
pub(super) fn is_outlook_app_footer(clean: &str) -> bool {
    // Every form names Outlook: most lines are ruled out without a regex or a copy.
    if !clean.as_bytes().windows(7).any(|w| w.eq_ignore_ascii_case(b"outlook")) {
        return false;
    }
    let plain = footer_text(clean);
    plain.split_whitespace().count() <= MAX_FOOTER_WORDS && OUTLOOK_APP_FOOTER.is_match(&plain)
}

#[cfg(test)]
mod tests {
    use crate::parse::reply::tests::cut;
    use crate::parse::reply::{parts, Part};

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
}
