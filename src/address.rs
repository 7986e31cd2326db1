//! Email addresses as casegate compares them: bare, lower-case, validated once.
//!
//! Every address that reaches the store, the router or the permission checks is an
//! [`Address`]; code never compares raw header strings. Parsing is deliberately strict about
//! shape (one `@`, no whitespace or control characters, sane lengths) and lenient about
//! content (dotless and non-ASCII domains are real: `redacted@redacted`, `用户@例子.广告`).

use std::fmt;

use serde::Serialize;

/// A validated, lower-cased bare address such as `jane@customer.example`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Address(String);

/// Longest address SMTP can carry (RFC 5321 path limit minus the angle brackets).
const MAX_LEN: usize = 254;
const MAX_LOCAL: usize = 64;

impl Address {
    /// Parses `jane@example.com`, `<jane@example.com>` or `mailto:jane@example.com`.
    /// Returns `None` for anything that is not a single plausible address.
    pub fn parse(input: &str) -> Option<Address> {
        let mut s = input.trim();
        if let Some(rest) = s.strip_prefix("mailto:") {
            s = rest.split('?').next().unwrap_or_default();
        }
        let s = s.trim_start_matches('<').trim_end_matches('>').trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return None;
        }
        let (local, domain) = s.rsplit_once('@')?;
        if local.is_empty() || local.len() > MAX_LOCAL || domain.is_empty() {
            return None;
        }
        if local.contains('@') && !(local.starts_with('"') && local.ends_with('"')) {
            return None;
        }
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\\".contains(c);
        if local.chars().any(|c| c.is_control() || c == '<' || c == '>' || c == '\n') {
            return None;
        }
        if !local.starts_with('"') && local.chars().any(bad_char) {
            return None;
        }
        if domain.chars().any(|c| bad_char(c) || c == '"' || c == '@') {
            return None;
        }
        if domain.split('.').any(str::is_empty) {
            return None;
        }
        Some(Address(format!("{local}@{domain}").to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`, lower-case.
    pub fn domain(&self) -> &str {
        // Invariant from `parse`: exactly one unquoted `@` separates two non-empty parts.
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or_default()
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an email address")))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A display name and an address, as found in `From:`, `To:` and `Cc:`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Address,
}

/// An entry of the `staff`/`admins` lists: one address, or every address of a domain
/// (written `@support.example.com`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    Exact(Address),
    Domain(String),
}

impl AddressPattern {
    pub fn parse(input: &str) -> Option<AddressPattern> {
        let s = input.trim();
        if let Some(domain) = s.strip_prefix('@') {
            // Validate the domain by validating a probe address on it.
            return Address::parse(&format!("x@{domain}")).map(|a| AddressPattern::Domain(a.domain().to_string()));
        }
        Address::parse(s).map(AddressPattern::Exact)
    }

    pub fn matches(&self, address: &Address) -> bool {
        match self {
            AddressPattern::Exact(a) => a == address,
            AddressPattern::Domain(d) => address.domain() == d,
        }
    }
}

impl fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPattern::Exact(a) => write!(f, "{a}"),
            AddressPattern::Domain(d) => write!(f, "@{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases_plain_and_bracketed_addresses() {
        assert_eq!(Address::parse(" <Jane.Doe@Example.COM> ").unwrap().as_str(), "jane.doe@example.com");
        assert_eq!(Address::parse("mailto:a@b.example?subject=x").unwrap().as_str(), "a@b.example");
        assert_eq!(Address::parse("redacted@redacted").unwrap().domain(), "redacted");
    }

    #[test]
    fn rejects_things_that_are_not_one_address() {
        for bad in [
            "",
            "@",
            "a@",
            "@b",
            "a b@c.d",
            "a@b c",
            "a@b@c",
            "a@b..c",
            "a@.b",
            "a\r\n@b.c",
            "a@b.c\r\nBcc: x@y.z",
            "a@[127.0.0.1]",
            "a,b@c.d",
        ] {
            assert!(Address::parse(bad).is_none(), "{bad:?} should be rejected");
        }
        assert!(Address::parse(&format!("{}@b.c", "x".repeat(65))).is_none());
    }

    #[test]
    fn domain_patterns_match_exactly_that_domain() {
        let p = AddressPattern::parse("@Support.Example.com").unwrap();
        assert!(p.matches(&Address::parse("ann@support.example.com").unwrap()));
        assert!(!p.matches(&Address::parse("ann@evil-support.example.com").unwrap()));
        assert!(!p.matches(&Address::parse("ann@example.com").unwrap()));
        assert_eq!(p.to_string(), "@support.example.com");
        assert!(AddressPattern::parse("@").is_none());
    }
}
