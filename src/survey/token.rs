//! Signed survey tokens: who may answer which case's survey, and until when.
//!
//! The token is the shared signed-link format of [`crate::signed`] under its
//! [`SURVEY`] purpose, with the case as its id:
//!
//! ```text
//! payload = version (1 byte, 1) ‖ case (u64, big-endian) ‖ expires (i64 Unix seconds, big-endian)
//!           ‖ recipient (the lower-case address, UTF-8, the rest of the payload)
//! tag     = HMAC-SHA256(secret, "casegate/survey-token\0" ‖ payload)   (32 bytes)
//! ```
//!
//! The payload is only encoded, not encrypted: whoever holds the link can read the case
//! number and the address it was sent to (both are in the survey mail anyway). What the HMAC
//! gives is integrity: without the secret nobody can make a token for another case, another
//! address or a later expiry, and changing any byte of a token makes it invalid. The form
//! tag ([`form_tag`]) binds a rendered form to its token, under a context of its own.

use chrono::{DateTime, Utc};

use crate::address::Address;
use crate::case::CaseId;
use crate::signed::{self, SURVEY};

pub use crate::signed::MAX_TOKEN_LEN;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub case: CaseId,
    pub recipient: Address,
    /// The link works strictly before this instant (whole seconds).
    pub expires: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a survey token we made (see [`signed::TokenError::Invalid`]).
    #[error("the survey link is not valid")]
    Invalid,
    /// A genuine token whose time is up. The claims are trustworthy (the tag matched).
    #[error("the survey link expired at {}", .0.expires)]
    Expired(Claims),
}

/// Makes the token for `recipient`'s survey of `case`, valid until `expires` (rounded down
/// to whole seconds).
pub fn sign(secret: &[u8], case: CaseId, recipient: &Address, expires: DateTime<Utc>) -> String {
    signed::sign(secret, &SURVEY, case, recipient, expires)
}

/// Checks a token and returns what it says; a survey is always about a case, so an id
/// that is not a case number is refused.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
    let claims = |c: signed::Claims| Claims { case: c.id, recipient: c.address, expires: c.expires };
    match signed::verify(secret, &SURVEY, token, now) {
        Ok(c) if c.id > 0 => Ok(claims(c)),
        Err(signed::TokenError::Expired(c)) if c.id > 0 => Err(TokenError::Expired(claims(c))),
        _ => Err(TokenError::Invalid),
    }
}

/// The hidden form field that binds a rendered survey form to its token: a form copied
/// from one survey page cannot be posted to another token's address.
pub fn form_tag(secret: &[u8], token: &str) -> String {
    signed::form_tag(secret, &SURVEY, token)
}

/// Checks a posted form tag against the token it was posted to (constant time).
pub fn verify_form_tag(secret: &[u8], token: &str, tag: &str) -> bool {
    signed::verify_form_tag(secret, &SURVEY, token, tag)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;

    const SECRET: &[u8] = b"test secret: at least sixteen bytes";

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn jane() -> Address {
        Address::parse("jane@customer.example").unwrap()
    }

    fn token() -> String {
        sign(SECRET, 42, &jane(), at("2030-01-31T12:00:00Z"))
    }

    #[test]
    fn a_signed_token_verifies_to_what_it_was_signed_with() {
        let claims = verify(SECRET, &token(), at("2030-01-01T00:00:00Z")).unwrap();
        assert_eq!(claims, Claims { case: 42, recipient: jane(), expires: at("2030-01-31T12:00:00Z") });
    }

    #[test]
    fn tokens_are_url_safe() {
        let t = token();
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{t}");
        assert!(t.len() <= MAX_TOKEN_LEN);
    }

    #[test]
    fn the_longest_address_still_fits_the_length_limit() {
        let long = Address::parse(&format!("{}@{}.example", "l".repeat(64), "d".repeat(180))).unwrap();
        let t = sign(SECRET, i64::MAX, &long, at("2030-01-31T12:00:00Z"));
        assert!(t.len() <= MAX_TOKEN_LEN, "{}", t.len());
        assert_eq!(verify(SECRET, &t, at("2030-01-01T00:00:00Z")).unwrap().recipient, long);
    }

    #[test]
    fn flipping_any_bit_of_any_byte_is_refused() {
        let t = token();
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let forged = URL_SAFE_NO_PAD.encode(&b);
                assert_eq!(
                    verify(SECRET, &forged, at("2030-01-01T00:00:00Z")),
                    Err(TokenError::Invalid),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn changing_any_character_of_the_text_is_refused() {
        let t = token();
        for i in 0..t.len() {
            for replacement in ['A', 'z', '0', '-', '_'] {
                let mut chars: Vec<char> = t.chars().collect();
                if chars[i] == replacement {
                    continue;
                }
                chars[i] = replacement;
                let forged: String = chars.into_iter().collect();
                assert_eq!(verify(SECRET, &forged, at("2030-01-01T00:00:00Z")), Err(TokenError::Invalid), "char {i}");
            }
        }
    }

    #[test]
    fn an_expired_token_is_told_apart_from_a_forged_one() {
        let t = token();
        match verify(SECRET, &t, at("2030-01-31T12:00:00Z")) {
            Err(TokenError::Expired(c)) => assert_eq!(c.case, 42),
            other => panic!("{other:?}"),
        }
        assert!(verify(SECRET, &t, at("2030-01-31T11:59:59Z")).is_ok());
    }

    #[test]
    fn a_token_signed_under_another_secret_is_refused() {
        let t = sign(b"another secret of sixteen bytes+", 42, &jane(), at("2030-01-31T12:00:00Z"));
        assert_eq!(verify(SECRET, &t, at("2030-01-01T00:00:00Z")), Err(TokenError::Invalid));
    }

    #[test]
    fn truncated_and_extended_tokens_are_refused() {
        let t = token();
        let now = at("2030-01-01T00:00:00Z");
        for n in 0..t.len() {
            assert_eq!(verify(SECRET, &t[..n], now), Err(TokenError::Invalid), "first {n} chars");
        }
        for suffix in ["A", "AA", "AAAA", "-", "."] {
            assert_eq!(verify(SECRET, &format!("{t}{suffix}"), now), Err(TokenError::Invalid), "{suffix}");
        }
        assert_eq!(verify(SECRET, &"A".repeat(MAX_TOKEN_LEN + 4), now), Err(TokenError::Invalid));
    }

    #[test]
    fn padding_and_encoding_tricks_are_refused() {
        let t = token();
        let now = at("2030-01-01T00:00:00Z");
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let tricks = [
            format!("{t}="),
            format!("{t}=="),
            format!("{t}%3D"),
            standard.clone(),
            standard.trim_end_matches('=').to_string(),
            t.replace('-', "+").replace('_', "/"),
            format!(" {t}"),
            format!("{t}\n"),
            t.to_uppercase(),
            format!("{}.{}", &t[..10], &t[10..]),
        ];
        for trick in tricks {
            if trick == t {
                continue;
            }
            assert_eq!(verify(SECRET, &trick, now), Err(TokenError::Invalid), "{trick}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // The last character of an unpadded base64 string carries bits that the decoded
        // bytes do not use; a lenient decoder would accept several spellings of one token.
        let t = token();
        let now = at("2030-01-01T00:00:00Z");
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = t.chars().last().unwrap();
        let mut accepted = 0;
        for c in alphabet.chars() {
            let variant = format!("{}{c}", &t[..t.len() - 1]);
            if verify(SECRET, &variant, now).is_ok() {
                accepted += 1;
                assert_eq!(c, last);
            }
        }
        assert_eq!(accepted, 1);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let now = at("2030-01-01T00:00:00Z");
        for junk in ["", "x", "../../etc/passwd", "<script>", "ü", "\0\0\0", "====", "AAAA"] {
            assert_eq!(verify(SECRET, junk, now), Err(TokenError::Invalid), "{junk:?}");
        }
    }

    #[test]
    fn form_tags_bind_a_form_to_its_token() {
        let t = token();
        let other = sign(SECRET, 43, &jane(), at("2030-01-31T12:00:00Z"));
        let tag = form_tag(SECRET, &t);
        assert!(verify_form_tag(SECRET, &t, &tag));
        assert!(!verify_form_tag(SECRET, &other, &tag));
        assert!(!verify_form_tag(b"another secret of sixteen bytes+", &t, &tag));
        assert!(!verify_form_tag(SECRET, &t, ""));
        assert!(!verify_form_tag(SECRET, &t, &tag[..tag.len() - 1]));
        // A survey form tag is not a case page's form tag, even for the same token.
        assert!(!signed::verify_form_tag(SECRET, &signed::CASE_PAGE, &t, &tag));
    }
}
