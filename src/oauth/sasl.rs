//! The two SASL mechanisms that carry an OAuth2 bearer token, for IMAP and SMTP alike:
//! XOAUTH2 (Google's and Microsoft's) and OAUTHBEARER (RFC 7628, the standard one).
//!
//! Both send the user and the token in the first message. A server that refuses answers
//! with a challenge holding a JSON error (`{"status":"401","schemes":"bearer",…}` or
//! `{"status":"invalid_token",…}`); the client must answer it — an empty message for
//! XOAUTH2, a lone `\x01` for OAUTHBEARER (RFC 7628 §3.2.3) — before the server ends
//! the exchange with its refusal. That JSON is the server's reason, and is reported.

use serde_json::Value;

/// The longest server reason quoted.
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    XOAuth2,
    OAuthBearer,
}

impl Mechanism {
    /// As servers announce it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The first message: who signs in, with which token. `host` and `port` are the
    /// server's, as OAUTHBEARER states them.
    pub fn initial_response(self, user: &str, token: &str, host: &str, port: u16) -> Vec<u8> {
        match self {
            Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes(),
            Mechanism::OAuthBearer => {
                format!("n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01", sasl_name(user))
                    .into_bytes()
            }
        }
    }

    /// The answer to the server's error challenge, after which it sends its refusal.
    pub fn error_acknowledgement(self) -> &'static [u8] {
        match self {
            Mechanism::XOAuth2 => b"",
            Mechanism::OAuthBearer => b"\x01",
        }
    }
}

/// The mechanism to use among those a server announces (names, any case): OAUTHBEARER,
/// the standard, when offered; else XOAUTH2.
pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Mechanism> {
    let offered: Vec<String> = offered.into_iter().map(str::to_ascii_uppercase).collect();
    [Mechanism::OAuthBearer, Mechanism::XOAuth2].into_iter().find(|m| offered.iter().any(|o| o == m.name()))
}

/// RFC 5801's saslname: `,` and `=` escaped, as the GS2 header needs.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The server's error challenge in words: its `status` (and `scope`, if it names one),
/// else the text itself, bounded and on one line.
pub fn describe_challenge(challenge: &[u8]) -> String {
    let text = String::from_utf8_lossy(challenge);
    let reason = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            let field = |k: &str| match map.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let mut parts = Vec::new();
            if let Some(status) = field("status") {
                parts.push(format!("status {status}"));
            }
            if let Some(scope) = field("scope") {
                parts.push(format!("scope {scope}"));
            }
            if parts.is_empty() {
                text.trim().to_string()
            } else {
                parts.join(", ")
            }
        }
        _ => text.trim().to_string(),
    };
    let one_line: String = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_is_user_and_bearer_token_between_ctrl_a() {
        assert_eq!(
            Mechanism::XOAuth2.initial_response("support@example.com", "tok", "imap.example.com", 993),
            b"user=support@example.com\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(Mechanism::XOAuth2.error_acknowledgement(), b"");
    }

    #[test]
    fn oauthbearer_has_a_gs2_header_host_and_port_as_rfc_7628_shows() {
        // RFC 7628 §4.1, with its user, host, port and token.
        let message = Mechanism::OAuthBearer.initial_response(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
            "server.example.com",
            143,
        );
        assert_eq!(
            message,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        let escaped = Mechanism::OAuthBearer.initial_response("a,b=c@x", "t", "h", 1);
        assert!(escaped.starts_with(b"n,a=a=2Cb=3Dc@x,\x01"), "{}", String::from_utf8_lossy(&escaped));
        assert_eq!(Mechanism::OAuthBearer.error_acknowledgement(), b"\x01");
    }

    #[test]
    fn the_standard_mechanism_is_preferred_among_those_announced() {
        assert_eq!(choose(["PLAIN", "xoauth2", "OAUTHBEARER"]), Some(Mechanism::OAuthBearer));
        assert_eq!(choose(["PLAIN", "LOGIN", "XOAUTH2"]), Some(Mechanism::XOAuth2));
        assert_eq!(choose(["PLAIN", "LOGIN"]), None);
    }

    #[test]
    fn the_servers_json_error_is_told_in_words() {
        let xoauth2 = br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(describe_challenge(xoauth2), "status 401, scope https://mail.google.com/");
        assert_eq!(describe_challenge(br#"{"status":"invalid_token"}"#), "status invalid_token");
        assert_eq!(describe_challenge(b"not json\r\n"), "not json");
        assert!(describe_challenge(&[b'x'; 5000]).chars().count() <= MAX_REASON_CHARS + 1);
    }
}
