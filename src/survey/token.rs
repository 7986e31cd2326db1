//! Signed survey tokens: who may answer which case's survey, and until when.
//!
//! A token is `base64url(payload ‖ tag)` without padding, where
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
//! address or a later expiry, and changing any byte of a token makes it invalid. The tag is
//! checked in constant time (`hmac`'s `verify_slice`) before anything in the payload is
//! believed, and decoding is strict (no padding, no non-zero trailing bits, one canonical
//! spelling per token), so a token cannot be re-spelled into a "different" valid one.
//!
//! The same secret also makes the form tag ([`form_tag`]) that binds a rendered form to its
//! token; a different context string keeps the two kinds of tag from ever standing in for
//! each other.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::address::Address;
use crate::case::CaseId;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// version + case + expires.
const HEADER_LEN: usize = 1 + 8 + 8;
/// The shortest address `Address::parse` accepts is `a@b`.
const MIN_RECIPIENT_LEN: usize = 3;
/// Longest token we even try to decode: header, the longest address (254 bytes) and tag
/// make 303 bytes, 404 characters in base64.
pub const MAX_TOKEN_LEN: usize = 404;

const TOKEN_CONTEXT: &[u8] = b"casegate/survey-token\0";
const FORM_CONTEXT: &[u8] = b"casegate/survey-form\0";

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
    /// Not a token we made: wrong shape, wrong length, bad encoding, or a tag that does not
    /// match (tampered, truncated, or signed under another secret). Deliberately one case:
    /// telling a forger which check failed would only help them.
    #[error("the survey link is not valid")]
    Invalid,
    /// A genuine token whose time is up. The claims are trustworthy (the tag matched).
    #[error("the survey link expired at {}", .0.expires)]
    Expired(Claims),
}

/// Makes the token for `recipient`'s survey of `case`, valid until `expires` (rounded down
/// to whole seconds).
pub fn sign(secret: &[u8], case: CaseId, recipient: &Address, expires: DateTime<Utc>) -> String {
    let mut bytes = Vec::with_capacity(HEADER_LEN + recipient.as_str().len() + TAG_LEN);
    bytes.push(VERSION);
    // Case numbers are positive (SQLite AUTOINCREMENT); the cast keeps the bit pattern
    // either way, and `verify` refuses anything that is not positive.
    bytes.extend_from_slice(&(case as u64).to_be_bytes());
    bytes.extend_from_slice(&expires.timestamp().to_be_bytes());
    bytes.extend_from_slice(recipient.as_str().as_bytes());
    let tag = mac(secret, TOKEN_CONTEXT, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a token and returns what it says. The tag is verified (in constant time) before
/// the payload is read; expiry is checked last, so [`TokenError::Expired`] is only ever
/// returned for a token that was really signed under `secret`.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Invalid)?;
    // The engine already refuses padding and non-zero trailing bits; comparing with the
    // canonical spelling makes "one token, one spelling" a property we check, not assume.
    if URL_SAFE_NO_PAD.encode(&bytes) != token {
        return Err(TokenError::Invalid);
    }
    if bytes.len() < HEADER_LEN + MIN_RECIPIENT_LEN + TAG_LEN {
        return Err(TokenError::Invalid);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    mac(secret, TOKEN_CONTEXT, payload).verify_slice(tag).map_err(|_| TokenError::Invalid)?;

    // From here on the payload is ours; the checks below only guard against our own
    // future format changes (or a secret shared with something else).
    if payload[0] != VERSION {
        return Err(TokenError::Invalid);
    }
    let case = u64::from_be_bytes(payload[1..9].try_into().map_err(|_| TokenError::Invalid)?);
    let case = CaseId::try_from(case).ok().filter(|c| *c > 0).ok_or(TokenError::Invalid)?;
    let expires = i64::from_be_bytes(payload[9..17].try_into().map_err(|_| TokenError::Invalid)?);
    let expires = DateTime::<Utc>::from_timestamp(expires, 0).ok_or(TokenError::Invalid)?;
    let recipient = std::str::from_utf8(&payload[HEADER_LEN..]).map_err(|_| TokenError::Invalid)?;
    let recipient = Address::parse(recipient).filter(|a| a.as_str() == recipient).ok_or(TokenError::Invalid)?;

    let claims = Claims { case, recipient, expires };
    if now >= expires {
        return Err(TokenError::Expired(claims));
    }
    Ok(claims)
}

/// The hidden form field that binds a rendered survey form to its token: a form copied
/// from one survey page cannot be posted to another token's address.
pub fn form_tag(secret: &[u8], token: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, FORM_CONTEXT, token.as_bytes()).finalize().into_bytes())
}

/// Checks a posted form tag against the token it was posted to (constant time).
pub fn verify_form_tag(secret: &[u8], token: &str, tag: &str) -> bool {
    if tag.len() > 64 {
        return false;
    }
    match URL_SAFE_NO_PAD.decode(tag) {
        Ok(bytes) => mac(secret, FORM_CONTEXT, token.as_bytes()).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

fn mac(secret: &[u8], context: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long ones are hashed), so this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(context);
    m.update(data);
    m
}

#[cfg(test)]
mod tests {
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
        // A token tag is not a form tag, even for the same bytes.
        assert_ne!(tag, URL_SAFE_NO_PAD.encode(mac(SECRET, TOKEN_CONTEXT, t.as_bytes()).finalize().into_bytes()));
    }
}
