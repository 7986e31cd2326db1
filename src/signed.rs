//! Signed tokens for personal links: who may use a link, for what, and until when — the
//! survey link, the case page, "My cases" and attachment downloads all use this one format,
//! each under a purpose of its own.
//!
//! A token is `base64url(payload ‖ tag)` without padding, where
//!
//! ```text
//! payload = version (1 byte, 1) ‖ id (u64, big-endian) ‖ expires (i64 Unix seconds, big-endian)
//!           ‖ address (the lower-case address, UTF-8, the rest of the payload)
//! tag     = HMAC-SHA256(secret, purpose ‖ payload)   (32 bytes)
//! ```
//!
//! `id` names what the link is for (a case, an attachment; 0 when the address says it all,
//! as for "My cases"). The payload is only encoded, not encrypted: whoever holds the link
//! can read the number and the address it was sent to (both are in the mail anyway). The
//! HMAC gives integrity: without the secret nobody can make a token for another id,
//! another address or a later expiry, and changing any byte makes it invalid. The tag is
//! checked in constant time (`hmac`'s `verify_slice`) before anything in the payload is
//! believed, and decoding is strict (no padding, no non-zero trailing bits, one canonical
//! spelling per token), so a token cannot be re-spelled into a "different" valid one.
//!
//! The purpose is part of what is signed: a case-page token is not a download token, nor a
//! survey token, even for the same id and address. The same secret also makes form tags
//! ([`form_tag`]) that bind a rendered form to its token, under a context of their own.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::address::Address;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// version + id + expires.
const HEADER_LEN: usize = 1 + 8 + 8;
/// The shortest address `Address::parse` accepts is `a@b`.
const MIN_ADDRESS_LEN: usize = 3;
/// Longest token we even try to decode: header, the longest address (254 bytes) and tag
/// make 303 bytes, 404 characters in base64.
pub const MAX_TOKEN_LEN: usize = 404;
/// Longest form tag we even try to decode (a tag is 43 characters).
const MAX_FORM_TAG_LEN: usize = 64;

/// What a kind of link is for: the contexts its token and its form tags are signed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose {
    token: &'static [u8],
    form: &'static [u8],
}

/// The survey page (`/survey/{token}`): id = the case.
pub const SURVEY: Purpose = Purpose { token: b"casegate/survey-token\0", form: b"casegate/survey-form\0" };
/// The case page (`/case/{token}`): id = the case.
pub const CASE_PAGE: Purpose = Purpose { token: b"casegate/case-token\0", form: b"casegate/case-form\0" };
/// "My cases" (`/cases/{token}`): id = 0.
pub const MY_CASES: Purpose = Purpose { token: b"casegate/cases-token\0", form: b"casegate/cases-form\0" };
/// An attachment download (`/file/{token}`): id = the attachment.
pub const DOWNLOAD: Purpose = Purpose { token: b"casegate/file-token\0", form: b"casegate/file-form\0" };

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// What the link is for (see the purposes); never negative.
    pub id: i64,
    /// Whom the link was made for.
    pub address: Address,
    /// The link works strictly before this instant (whole seconds).
    pub expires: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token we made for this purpose: wrong shape, wrong length, bad encoding, or a
    /// tag that does not match (tampered, truncated, another purpose, or signed under
    /// another secret). Deliberately one case: telling a forger which check failed would
    /// only help them.
    #[error("the link is not valid")]
    Invalid,
    /// A genuine token whose time is up. The claims are trustworthy (the tag matched).
    #[error("the link expired at {}", .0.expires)]
    Expired(Claims),
}

/// Makes the token for `address` and `id` under `purpose`, valid until `expires` (rounded
/// down to whole seconds). `id` is meant to be a row id or 0; a negative one is signed as
/// its bit pattern and refused by [`verify`].
pub fn sign(secret: &[u8], purpose: &Purpose, id: i64, address: &Address, expires: DateTime<Utc>) -> String {
    let mut bytes = Vec::with_capacity(HEADER_LEN + address.as_str().len() + TAG_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&(id as u64).to_be_bytes());
    bytes.extend_from_slice(&expires.timestamp().to_be_bytes());
    bytes.extend_from_slice(address.as_str().as_bytes());
    let tag = mac(secret, purpose.token, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a token made for `purpose` and returns what it says. The tag is verified (in
/// constant time) before the payload is read; expiry is checked last, so
/// [`TokenError::Expired`] is only ever returned for a token really signed under `secret`.
pub fn verify(secret: &[u8], purpose: &Purpose, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Invalid)?;
    // The engine already refuses padding and non-zero trailing bits; comparing with the
    // canonical spelling makes "one token, one spelling" a property we check, not assume.
    if URL_SAFE_NO_PAD.encode(&bytes) != token {
        return Err(TokenError::Invalid);
    }
    if bytes.len() < HEADER_LEN + MIN_ADDRESS_LEN + TAG_LEN {
        return Err(TokenError::Invalid);
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    mac(secret, purpose.token, payload).verify_slice(tag).map_err(|_| TokenError::Invalid)?;

    // From here on the payload is ours; the checks below only guard against our own
    // future format changes (or a secret shared with something else).
    if payload[0] != VERSION {
        return Err(TokenError::Invalid);
    }
    let id = u64::from_be_bytes(payload[1..9].try_into().map_err(|_| TokenError::Invalid)?);
    let id = i64::try_from(id).map_err(|_| TokenError::Invalid)?;
    let expires = i64::from_be_bytes(payload[9..17].try_into().map_err(|_| TokenError::Invalid)?);
    let expires = DateTime::<Utc>::from_timestamp(expires, 0).ok_or(TokenError::Invalid)?;
    let address = std::str::from_utf8(&payload[HEADER_LEN..]).map_err(|_| TokenError::Invalid)?;
    let address = Address::parse(address).filter(|a| a.as_str() == address).ok_or(TokenError::Invalid)?;

    let claims = Claims { id, address, expires };
    if now >= expires {
        return Err(TokenError::Expired(claims));
    }
    Ok(claims)
}

/// The hidden form field that binds a form rendered for `token` to it: a form copied
/// from one page cannot be posted to another token's address.
pub fn form_tag(secret: &[u8], purpose: &Purpose, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, purpose.form, token.as_bytes()).finalize().into_bytes())
}

/// Checks a posted form tag against the token it was posted to (constant time).
pub fn verify_form_tag(secret: &[u8], purpose: &Purpose, token: &str, tag: &str) -> bool {
    if tag.len() > MAX_FORM_TAG_LEN {
        return false;
    }
    match URL_SAFE_NO_PAD.decode(tag) {
        Ok(bytes) => mac(secret, purpose.form, token.as_bytes()).verify_slice(&bytes).is_ok(),
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

    #[test]
    fn a_token_verifies_only_for_the_purpose_it_was_signed_for() {
        let expires = at("2030-01-31T12:00:00Z");
        let now = at("2030-01-01T00:00:00Z");
        let purposes = [SURVEY, CASE_PAGE, MY_CASES, DOWNLOAD];
        for (i, signed_for) in purposes.iter().enumerate() {
            let t = sign(SECRET, signed_for, 42, &jane(), expires);
            for (j, checked_as) in purposes.iter().enumerate() {
                let result = verify(SECRET, checked_as, &t, now);
                if i == j {
                    assert_eq!(result, Ok(Claims { id: 42, address: jane(), expires }));
                } else {
                    assert_eq!(result, Err(TokenError::Invalid), "a token of purpose {i} checked as {j}");
                }
            }
        }
    }

    #[test]
    fn id_zero_is_a_valid_id_and_negative_ids_are_refused() {
        let now = at("2030-01-01T00:00:00Z");
        let t = sign(SECRET, &MY_CASES, 0, &jane(), at("2030-01-31T12:00:00Z"));
        assert_eq!(verify(SECRET, &MY_CASES, &t, now).unwrap().id, 0);
        let t = sign(SECRET, &MY_CASES, -1, &jane(), at("2030-01-31T12:00:00Z"));
        assert_eq!(verify(SECRET, &MY_CASES, &t, now), Err(TokenError::Invalid));
    }

    #[test]
    fn form_tags_are_bound_to_their_token_and_purpose() {
        let t = sign(SECRET, &CASE_PAGE, 42, &jane(), at("2030-01-31T12:00:00Z"));
        let tag = form_tag(SECRET, &CASE_PAGE, &t);
        assert!(verify_form_tag(SECRET, &CASE_PAGE, &t, &tag));
        assert!(!verify_form_tag(SECRET, &SURVEY, &t, &tag), "another purpose");
        let other = sign(SECRET, &CASE_PAGE, 43, &jane(), at("2030-01-31T12:00:00Z"));
        assert!(!verify_form_tag(SECRET, &CASE_PAGE, &other, &tag), "another token");
        assert!(!verify_form_tag(SECRET, &CASE_PAGE, &t, &"A".repeat(500)));
    }
}
