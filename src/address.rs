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

/// A mailbox read out of a From or Sender line that strict parsing found none in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The display name as written (encoded-words not decoded).
    pub name: Option<String>,
    pub address: Address,
    /// What had to be read leniently, for the audit trail ("trailing dot removed" ...).
    pub how: String,
}

/// Longest line [`recover_mailbox`] looks at.
const MAX_RECOVER_INPUT: usize = 4 * 1024;

/// Reads the most plausible mailbox out of a broken From or Sender line: a trailing dot
/// (`<user@domain.>`), a local part written with spaces (`John Smith@example.com`,
/// `"john smith"@example.com`), an address only in the quoted display name
/// (`"user@example.com"`), no angle brackets (`User Name user@example.com`), unbalanced
/// brackets, spaces around the `@`, comments anywhere. The first part of a list that yields
/// an address wins. The result must still pass [`Address::parse`], so nothing is made up from
/// a line without one (`Mailer-Daemon`); a comment's text is never taken.
///
/// Only for the sender fallback: every other use (configuration, commands, recipients) keeps
/// the strict [`Address::parse`].
pub fn recover_mailbox(line: &str) -> Option<Recovered> {
    let mut end = line.len().min(MAX_RECOVER_INPUT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let tokens = tokenize(&line[..end]);
    tokens.split(|t| matches!(t.kind, Kind::Separator)).find_map(recover_from_group)
}

#[derive(Debug)]
enum Kind {
    Word(String),
    Quoted(String),
    /// Content of `<…>`; `closed` is false when the `>` is missing.
    Angle {
        content: String,
        closed: bool,
    },
    /// `,` `;` or `:` between mailboxes (or after a group name).
    Separator,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    /// Whether white space (or a comment) came before it: `"john smith"@x` is one address,
    /// `"John" @x` is not.
    spaced: bool,
}

fn tokenize(line: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut spaced = true;
    let flush = |word: &mut String, out: &mut Vec<Token>, spaced: &mut bool| {
        if !word.is_empty() {
            out.push(Token { kind: Kind::Word(std::mem::take(word)), spaced: *spaced });
            *spaced = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                flush(&mut word, &mut out, &mut spaced);
                let mut depth = 1;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                spaced = true;
            }
            '"' => {
                flush(&mut word, &mut out, &mut spaced);
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => text.extend(chars.next()),
                        '"' => break,
                        c => text.push(c),
                    }
                }
                out.push(Token { kind: Kind::Quoted(text), spaced });
                spaced = false;
            }
            '<' => {
                flush(&mut word, &mut out, &mut spaced);
                let mut content = String::new();
                let mut closed = false;
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    chars.next();
                    if c == '>' {
                        closed = true;
                        break;
                    }
                    content.push(c);
                }
                out.push(Token { kind: Kind::Angle { content, closed }, spaced });
                spaced = false;
            }
            ',' | ';' | ':' => {
                flush(&mut word, &mut out, &mut spaced);
                out.push(Token { kind: Kind::Separator, spaced: true });
                spaced = true;
            }
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() || c.is_control() || c == '>' => {
                flush(&mut word, &mut out, &mut spaced);
                spaced = true;
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out, &mut spaced);
    out
}

/// Strips what commonly surrounds or trails an address in broken lines; `how` collects
/// what was removed.
fn tidy(candidate: &str, how: &mut Vec<&'static str>) -> String {
    let mut s = candidate.trim().trim_matches(['<', '>']).trim().to_string();
    if s.contains('@') && s.split('@').any(|p| p != p.trim()) {
        s = s.split('@').map(str::trim).collect::<Vec<_>>().join("@");
        how.push("spaces around @ removed");
    }
    if s.ends_with('.') {
        s = s.trim_end_matches('.').to_string();
        how.push("trailing dot removed");
    }
    s
}

/// The address one comma-separated group of a broken address line names, tried in order
/// of how sure the reading is.
fn recover_from_group(group: &[Token]) -> Option<Recovered> {
    in_angle_brackets(group)
        .or_else(|| quoted_local_part(group))
        .or_else(|| bare_words(group))
        .or_else(|| quoted_display_name(group))
}

/// The words (and quoted strings) before token `end`, joined: a display name.
fn words_before(group: &[Token], end: usize) -> Option<String> {
    let parts: Vec<&str> = group[..end]
        .iter()
        .filter_map(|t| match &t.kind {
            Kind::Word(w) | Kind::Quoted(w) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    Some(parts.join(" ")).filter(|n| !n.trim().is_empty())
}

fn recovered(address: Address, name: Option<String>, how: Vec<&'static str>) -> Recovered {
    Recovered { name, address, how: if how.is_empty() { "read leniently".to_string() } else { how.join(", ") } }
}

/// First: an address in angle brackets, closed or not.
fn in_angle_brackets(group: &[Token]) -> Option<Recovered> {
    for (i, token) in group.iter().enumerate() {
        if let Kind::Angle { content, closed } = &token.kind {
            let mut how = Vec::new();
            if !closed {
                how.push("closing > missing");
            }
            if let Some(address) = Address::parse(&tidy(content, &mut how)) {
                return Some(recovered(address, words_before(group, i), how));
            }
        }
    }
    None
}

/// Second: a quoted local part: `"john smith"@example.com`.
fn quoted_local_part(group: &[Token]) -> Option<Recovered> {
    for pair in group.windows(2) {
        if let (Kind::Quoted(local), Kind::Word(rest), false) = (&pair[0].kind, &pair[1].kind, pair[1].spaced) {
            if rest.starts_with('@') {
                let mut how = vec!["quoted local part"];
                if let Some(address) = Address::parse(&tidy(&format!("\"{local}\"{rest}"), &mut how)) {
                    return Some(recovered(address, None, how));
                }
            }
        }
    }
    None
}

/// Third: bare words: `User Name user@example.com`, `John Smith@example.com`, or with
/// spaces around the at sign.
fn bare_words(group: &[Token]) -> Option<Recovered> {
    let mut words: Vec<(usize, String)> = Vec::new();
    let mut glued = false;
    for (i, token) in group.iter().enumerate() {
        let Kind::Word(w) = &token.kind else {
            continue;
        };
        // Obsolete syntax allows white space around the `@`: join `john @ example.com`.
        let joins = words.last().is_some_and(|(_, prev)| {
            (prev.ends_with('@') || w.starts_with('@')) && (prev.clone() + w).matches('@').count() == 1
        });
        match words.last_mut() {
            Some((_, prev)) if joins => {
                prev.push_str(w);
                glued = true;
            }
            _ => words.push((i, w.clone())),
        }
    }
    let with_at: Vec<usize> = (0..words.len()).filter(|&k| words[k].1.contains('@')).collect();
    let [k] = with_at[..] else {
        return with_at.iter().find_map(|&k| {
            let mut how = vec!["several addresses without separators; the first valid taken"];
            Address::parse(&tidy(&words[k].1, &mut how)).map(|address| recovered(address, None, how))
        });
    };
    let (index, word) = &words[k];
    let mut how = Vec::new();
    if glued {
        how.push("spaces around @ removed");
    }
    let candidate = tidy(word, &mut how);
    let before: Vec<&str> = words[..k].iter().map(|(_, w)| w.as_str()).collect();
    if let Some((local, domain)) = candidate.rsplit_once('@') {
        if !before.is_empty() && is_split_local_part(&before, local) {
            let quoted = format!("\"{} {local}\"@{domain}", before.join(" "));
            if let Some(address) = Address::parse(&quoted) {
                how.push("local part with spaces quoted");
                return Some(recovered(address, None, how));
            }
        }
    }
    let address = Address::parse(&candidate)?;
    let name = words_before(group, *index);
    if name.is_some() {
        how.push("no angle brackets");
    }
    Some(recovered(address, name, how))
}

/// Last: only a quoted display name that is itself an address: `"user@example.com" <>`.
fn quoted_display_name(group: &[Token]) -> Option<Recovered> {
    group.iter().find_map(|t| match &t.kind {
        Kind::Quoted(q) if q.contains('@') => {
            let mut how = vec!["address taken from the quoted display name"];
            Address::parse(&tidy(q, &mut how)).map(|a| recovered(a, None, how))
        }
        _ => None,
    })
}

/// Whether `John Smith@example.com` is a local part written with a space (`"John
/// Smith"@example.com`) rather than a display name before a bare address (`User Name
/// user@example.com`). Taking `smith@example.com` would attribute the mail to a mailbox the
/// line does not name, so the literal reading wins unless the words clearly are a name:
/// the local part is not a plain word (`jane.doe`, `user1`), repeats one of the words
/// (`Jane jane@…`), or is lower-case after capitalised words (`Sales Team info@…`).
fn is_split_local_part(before: &[&str], local: &str) -> bool {
    let plain = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_alphabetic() || c == '-' || c == '\'');
    if !plain(local) || !before.iter().all(|w| plain(w)) {
        return false;
    }
    let lower = local.to_lowercase();
    if before.iter().any(|w| w.chars().count() >= 2 && lower.contains(&w.to_lowercase())) {
        return false;
    }
    let capitalised = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
    capitalised(local) || !before.iter().all(|w| capitalised(w))
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

    fn recovered(line: &str) -> Option<(String, Option<String>)> {
        recover_mailbox(line).map(|r| (r.address.to_string(), r.name))
    }

    #[test]
    fn broken_sender_lines_yield_the_address_they_name() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("<user@domain.example.>", "user@domain.example", None),
            ("user@example.com.", "user@example.com", None),
            ("John Smith@example.com", "\"john smith\"@example.com", None),
            ("john smith@example.com", "\"john smith\"@example.com", None),
            ("\"john smith\"@x.example", "\"john smith\"@x.example", None),
            ("\"user@example.com\"", "user@example.com", None),
            ("\"user@example.com\" <>", "user@example.com", None),
            ("User Name user@example.com", "user@example.com", Some("User Name")),
            ("Jane Doe jane.doe@example.com", "jane.doe@example.com", Some("Jane Doe")),
            ("Sales Team info@example.com", "info@example.com", Some("Sales Team")),
            ("Jane jane@example.com", "jane@example.com", Some("Jane")),
            ("bad@, a@x.example, b@y.example", "a@x.example", None),
            ("user@example.com (John)", "user@example.com", None),
            ("(comment) <a@b.example>", "a@b.example", None),
            ("Ann (the boss) <ann@b.example.>", "ann@b.example", Some("Ann")),
            ("<user@example.com", "user@example.com", None),
            ("Name <user@example.com", "user@example.com", Some("Name")),
            ("user@example.com>", "user@example.com", None),
            ("John <john @ example.com>", "john@example.com", Some("John")),
            ("john @ example.com", "john@example.com", None),
            ("Group: a@x.example;", "a@x.example", None),
        ];
        for (line, address, name) in cases {
            let got = recovered(line);
            assert_eq!(got, Some((address.to_string(), name.map(str::to_string))), "{line:?}");
        }
    }

    #[test]
    fn nothing_is_made_up_from_lines_without_an_address() {
        for line in [
            "Mailer-Daemon",
            "MAILER-DAEMON <>",
            "\"Name\" <>",
            "undisclosed-recipients:;",
            "(sent by bob@evil.example) <>",
            "\"Bob via bob@evil.example\" <>",
            "user@",
            "@example.com",
            "a@b@c.example",
            "<a b@c d>",
            "",
            "<<<>>>",
            "\"unterminated",
            "(unterminated comment a@b.example",
        ] {
            assert_eq!(recovered(line), None, "{line:?}");
        }
        // Strict parsing is unchanged: recovery is only for the sender fallback.
        assert!(Address::parse("user@domain.").is_none());
        assert!(Address::parse("John Smith@example.com").is_none());
    }

    #[test]
    fn recovery_says_how_the_address_was_read() {
        assert_eq!(recover_mailbox("<user@domain.example.>").unwrap().how, "trailing dot removed");
        assert_eq!(recover_mailbox("<user@example.com").unwrap().how, "closing > missing");
        assert_eq!(recover_mailbox("User Name user@example.com").unwrap().how, "no angle brackets");
        assert_eq!(recover_mailbox("John Smith@example.com").unwrap().how, "local part with spaces quoted");
        assert_eq!(recover_mailbox("\"user@example.com\"").unwrap().how, "address taken from the quoted display name");
    }

    #[test]
    fn hostile_sender_lines_are_bounded() {
        let long = format!("{}<a@b.example>", "(((".repeat(100_000));
        assert_eq!(recover_mailbox(&long), None, "beyond the bound, inside an open comment");
        let long = format!("{}a@b.example", "x ".repeat(100_000));
        let _ = recover_mailbox(&long);
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
