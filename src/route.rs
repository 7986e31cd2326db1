//! Which case a mail belongs to: the subject token (`[CASE-42]`), else In-Reply-To and
//! References against every Message-ID stored for a case, else a new case.
//!
//! Pure: the lookups are passed in, so the rules are tested with plain data.

use regex::Regex;

use crate::case::CaseId;
use crate::parse::InboundMail;

/// Finds `[PREFIX-123]` tokens in subjects.
#[derive(Debug, Clone)]
pub struct TokenMatcher {
    re: Regex,
}

impl TokenMatcher {
    /// `prefix` is validated by the config (ASCII letters and digits only).
    pub fn new(prefix: &str) -> TokenMatcher {
        // Forgiving about case and spacing (`[case-7]`, `[ CASE-7 ]`, `[CASE#7]`), strict
        // about brackets and prefix, so "CASE-7" in running text or `[TICKET-7]` never match.
        let pattern = format!(r"(?i)\[\s*{}\s*[-#:]?\s*0*(\d{{1,12}})\s*\]", regex::escape(prefix));
        TokenMatcher { re: Regex::new(&pattern).expect("token pattern is built from a validated prefix") }
    }

    /// The subject without case tokens and without leading reply/forward prefixes, for a
    /// case opened from a mail that pointed at another one ("Re: [CASE-7] Printer" → "Printer").
    pub fn clean_subject(&self, subject: &str) -> String {
        let without = self.re.replace_all(subject, " ");
        let mut s = without.trim();
        loop {
            let lower = s.to_ascii_lowercase();
            let Some(p) = PREFIXES.iter().find(|p| lower.starts_with(**p)) else { break };
            s = s[p.len()..].trim_start();
        }
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Every case number named in the subject, in order of appearance.
    pub fn tokens(&self, subject: &str) -> Vec<CaseId> {
        self.re.captures_iter(subject).filter_map(|c| c[1].parse().ok()).filter(|n| *n > 0).collect()
    }
}

/// Reply and forward prefixes in the languages casegate meets.
const PREFIXES: &[&str] = &["re:", "aw:", "sv:", "vs:", "fwd:", "fw:", "wg:", "tr:", "rv:", "antw:", "doorst:"];

/// How a mail was matched to an existing case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Token,
    Reference(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Existing {
        case: CaseId,
        via: Via,
    },
    /// A new case; `note` says why when the mail pointed somewhere that does not exist.
    New {
        note: Option<String>,
    },
}

/// Routes a mail. `exists(n)` says whether case `n` exists; `by_message_id(id)` returns
/// the case a stored Message-ID belongs to.
pub fn route<E>(
    mail: &InboundMail,
    tokens: &TokenMatcher,
    prefix: &str,
    mut exists: impl FnMut(CaseId) -> Result<bool, E>,
    mut by_message_id: impl FnMut(&str) -> Result<Option<CaseId>, E>,
) -> Result<Route, E> {
    let named = tokens.tokens(&mail.subject);
    for &n in &named {
        if exists(n)? {
            return Ok(Route::Existing { case: n, via: Via::Token });
        }
    }
    if let Some(&first) = named.first() {
        // The design is explicit: a token for a case that does not exist opens a new case.
        return Ok(Route::New { note: Some(format!("unknown-token: {prefix}-{first} names no case")) });
    }
    for id in mail.ancestors() {
        if let Some(case) = by_message_id(id)? {
            return Ok(Route::Existing { case, via: Via::Reference(id.to_string()) });
        }
    }
    Ok(Route::New { note: None })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn mail(subject: &str, in_reply_to: &[&str], references: &[&str]) -> InboundMail {
        InboundMail {
            subject: subject.into(),
            in_reply_to: in_reply_to.iter().map(|s| s.to_string()).collect(),
            references: references.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn run(m: &InboundMail) -> Route {
        let existing = [1, 2, 42];
        let ids = [("a@x", 2), ("b@x", 42)];
        route::<Infallible>(
            m,
            &TokenMatcher::new("CASE"),
            "CASE",
            |n| Ok(existing.contains(&n)),
            |id| Ok(ids.iter().find(|(i, _)| *i == id).map(|(_, c)| *c)),
        )
        .unwrap()
    }

    #[test]
    fn token_anywhere_after_any_prefixes_case_insensitively() {
        for s in [
            "[CASE-42] Printer",
            "Re: [CASE-42]",
            "AW: SV: Fwd: FW: WG: RE: Printer [case-42]",
            "Re:[ Case-042 ] x",
            "[CASE#42]",
        ] {
            assert_eq!(run(&mail(s, &[], &[])), Route::Existing { case: 42, via: Via::Token }, "{s}");
        }
    }

    #[test]
    fn other_prefixes_and_bare_words_are_ignored() {
        for s in ["[TICKET-42] Printer", "CASE-42 without brackets", "[XCASE-42]", "[CASE-]"] {
            assert_eq!(run(&mail(s, &[], &[])), Route::New { note: None }, "{s}");
        }
    }

    #[test]
    fn unknown_token_opens_a_new_case_and_says_why() {
        let Route::New { note: Some(note) } = run(&mail("Re: [CASE-99] hi", &["b@x"], &[])) else { panic!() };
        assert!(note.contains("CASE-99"), "{note}");
    }

    #[test]
    fn clean_subject_drops_tokens_and_prefixes() {
        let t = TokenMatcher::new("CASE");
        assert_eq!(t.clean_subject("Re: AW: [CASE-7] Printer on fire"), "Printer on fire");
        assert_eq!(t.clean_subject("RE: Printer [case-7] on fire"), "Printer on fire");
        assert_eq!(t.clean_subject("[CASE-7]"), "");
    }

    #[test]
    fn first_existing_token_wins() {
        assert_eq!(run(&mail("[CASE-99] [CASE-2]", &[], &[])), Route::Existing { case: 2, via: Via::Token });
    }

    #[test]
    fn edited_subject_is_routed_by_in_reply_to_then_references() {
        assert_eq!(
            run(&mail("new words", &["b@x"], &["a@x"])),
            Route::Existing { case: 42, via: Via::Reference("b@x".into()) }
        );
        assert_eq!(
            run(&mail("new words", &["zz@x"], &["a@x", "zz@y"])),
            Route::Existing { case: 2, via: Via::Reference("a@x".into()) }
        );
        assert_eq!(run(&mail("new words", &["zz@x"], &[])), Route::New { note: None });
    }
}
