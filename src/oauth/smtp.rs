//! Signing in to an SMTP server with a token over lettre's connection: `AUTH XOAUTH2` or
//! `AUTH OAUTHBEARER` with the first message on the command line (RFC 4954).
//!
//! lettre knows XOAUTH2 but not OAUTHBEARER, and its XOAUTH2 gives up on the server's
//! error challenge without answering it, so the exchange is ours: EHLO once more to read
//! the mechanisms the server announces (lettre keeps only those it knows), then AUTH; a
//! `334` error challenge is answered and reported with the server's JSON reason. A
//! refused cached token is replaced once and tried again on the same connection.

use base64::Engine as _;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;

use super::advice::{self, Protocol};
use super::sasl::{self, Mechanism};
use super::{AccessToken, SignInError, TokenSource};

/// Signs `user` in on `conn` (greeted, secured); returns the mechanism used.
pub async fn sign_in(
    conn: &mut AsyncSmtpConnection,
    hello: &ClientId,
    (host, port): (&str, u16),
    user: &str,
    tokens: &TokenSource,
) -> Result<Mechanism, SignInError> {
    let addr = format!("{host}:{port}");
    let ehlo = conn
        .command(Ehlo::new(hello.clone()))
        .await
        .map_err(|e| SignInError::Failed(format!("EHLO at {addr}: {e}")))?;
    let offered = announced_mechanisms(ehlo.message());
    let Some(mechanism) = sasl::choose(offered.iter().map(String::as_str)) else {
        return Err(SignInError::NoMechanism { server: addr, offered: offered.join(" ") });
    };
    let mut token = tokens.token().await?;
    let mut retried = false;
    loop {
        match attempt(conn, mechanism, (host, port), user, &token).await {
            Ok(()) => return Ok(mechanism),
            Err(Tried::Refused(_)) if !token.new && !retried => {
                retried = true;
                token = tokens.renew(&token).await?;
            }
            Err(Tried::Refused(said)) => {
                return Err(SignInError::Refused {
                    server: addr,
                    mechanism: mechanism.name(),
                    user: user.to_string(),
                    said,
                    advice: advice::refused(tokens.settings(), Protocol::Smtp, user),
                })
            }
            Err(Tried::Failed(e)) => {
                return Err(SignInError::Failed(format!("AUTH {} at {addr}: {e}", mechanism.name())))
            }
        }
    }
}

enum Tried {
    Refused(String),
    Failed(String),
}

/// One line to the server, CRLF included.
struct Line(String);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)?;
        f.write_str("\r\n")
    }
}

async fn attempt(
    conn: &mut AsyncSmtpConnection,
    mechanism: Mechanism,
    (host, port): (&str, u16),
    user: &str,
    token: &AccessToken,
) -> Result<(), Tried> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let first = b64.encode(mechanism.initial_response(user, token.bearer.expose(), host, port));
    let answer = conn.command(Line(format!("AUTH {} {first}", mechanism.name()))).await;
    match answer {
        Ok(r) if r.has_code(235) => Ok(()),
        Ok(r) if r.has_code(334) => {
            let line = r.message().next().unwrap_or_default().trim();
            let challenge = b64.decode(line).unwrap_or_else(|_| line.as_bytes().to_vec());
            let reason = sasl::describe_challenge(&challenge);
            match conn.command(Line(b64.encode(mechanism.error_acknowledgement()))).await {
                Err(e) if e.is_permanent() => Err(Tried::Refused(format!("{reason}; {e}"))),
                Err(e) => Err(Tried::Failed(format!("{reason}; {e}"))),
                Ok(r) => Err(Tried::Failed(format!("{reason}; then an unexpected {} answer", r.code()))),
            }
        }
        Ok(r) => Err(Tried::Failed(format!("unexpected {} answer", r.code()))),
        Err(e) if e.is_permanent() => Err(Tried::Refused(e.to_string())),
        Err(e) => Err(Tried::Failed(e.to_string())),
    }
}

/// The mechanisms of an EHLO answer's `AUTH` line (`AUTH PLAIN XOAUTH2`, or the old
/// `AUTH=PLAIN` form), upper-cased.
fn announced_mechanisms<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let upper = line.trim().to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("AUTH ").or_else(|| upper.strip_prefix("AUTH=")) {
            out.extend(rest.split_whitespace().map(str::to_string));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_are_read_from_the_auth_lines_of_ehlo() {
        let lines = ["localhost", "PIPELINING", "AUTH PLAIN LOGIN XOAUTH2 oauthbearer", "AUTH=LOGIN", "8BITMIME"];
        assert_eq!(announced_mechanisms(lines.into_iter()), ["LOGIN", "OAUTHBEARER", "PLAIN", "XOAUTH2"]);
        assert!(announced_mechanisms(["AUTHX FOO"].into_iter()).is_empty());
    }
}
