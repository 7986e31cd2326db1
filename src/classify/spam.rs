//! Mail the receiving server marked as spam: `X-Spam-Flag: YES` (SpamAssassin, rspamd and
//! most filters that follow them), `X-Spam-Status: Yes, score=...`, and the header rules
//! an installation adds (`[spam] header_rules`). Such mail never opens a case nor gets an
//! answer: an acknowledgement would go to a forged address (backscatter), and a queue of
//! spam cases buries the real ones.

use crate::parse::InboundMail;

/// Why the receiving server's marks make this mail spam, if they do. `flags`: honour the
/// usual flags; `rules`: more `(header name, value prefix)` pairs, the prefix lower case
/// (empty: the header's presence is enough).
pub fn verdict(mail: &InboundMail, flags: bool, rules: &[(String, String)]) -> Option<String> {
    if flags {
        let first_word = |v: &str| v.trim().split([',', ' ', ';']).next().unwrap_or_default().to_ascii_lowercase();
        if let Some(v) = mail.headers_named("X-Spam-Flag").find(|v| first_word(v) == "yes") {
            return Some(format!("X-Spam-Flag: {}", shorten(v)));
        }
        if let Some(v) = mail.headers_named("X-Spam-Status").find(|v| first_word(v) == "yes") {
            return Some(format!("X-Spam-Status: {}", shorten(v)));
        }
    }
    rules.iter().find_map(|(name, prefix)| {
        let value = mail.headers_named(name).find(|v| v.trim().to_lowercase().starts_with(prefix.as_str()))?;
        Some(format!("{name}: {} (a [spam] header rule)", shorten(value)))
    })
}

/// A header value as quoted in a reason: at most 80 characters.
fn shorten(value: &str) -> String {
    let value = value.trim();
    match value.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(headers: &str) -> InboundMail {
        let raw =
            format!("From: a@x.example\r\nTo: support@example.com\r\nSubject: Hi\r\n{headers}\r\n\r\nBuy now\r\n");
        crate::parse::parse(raw.as_bytes()).expect("test mail parses")
    }

    #[test]
    fn the_usual_spam_flags_mark_spam_and_their_negatives_do_not() {
        let v = verdict(&mail("X-Spam-Flag: YES"), true, &[]).unwrap();
        assert_eq!(v, "X-Spam-Flag: YES");
        let v = verdict(&mail("X-Spam-Status: Yes, score=12.3 required=5.0 tests=BAYES_99"), true, &[]).unwrap();
        assert!(v.starts_with("X-Spam-Status: Yes, score=12.3"), "{v}");
        assert_eq!(verdict(&mail("X-Spam-Flag: NO\r\nX-Spam-Status: No, score=0.1"), true, &[]), None);
        assert_eq!(verdict(&mail("X-Spam-Status: Yesterday"), true, &[]), None);
        assert_eq!(verdict(&mail("X-Spam-Flag: YES"), false, &[]), None, "flags can be turned off");
    }

    #[test]
    fn header_rules_match_by_presence_or_value_prefix() {
        let rules =
            vec![("X-Barracuda-Spam-Status".to_string(), "yes".to_string()), ("X-Junk".to_string(), String::new())];
        assert!(verdict(&mail("X-Barracuda-Spam-Status: Yes, SCORE=9"), true, &rules).unwrap().contains("header rule"));
        assert_eq!(verdict(&mail("X-Barracuda-Spam-Status: No, SCORE=0"), true, &rules), None);
        assert!(verdict(&mail("X-Junk: 1"), true, &rules).is_some());
    }
}
