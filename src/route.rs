//! Which case a mail belongs to: the subject token (`[CASE-42]`), else In-Reply-To and
//! References against every Message-ID stored for a case, else a new case.
//!
//! Pure: the lookups are passed in, so the rules are tested with plain data.

use crate::case::token::TokenMatcher;
use crate::case::CaseId;
use crate::parse::InboundMail;

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
