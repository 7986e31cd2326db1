//! Signing in to an IMAP server with a token: `AUTHENTICATE XOAUTH2` or `OAUTHBEARER`
//! (whichever the server announces; see [`sasl::choose`]), with the first message on the
//! command line where the server offers SASL-IR (RFC 4959), else after its empty
//! challenge. A refused token is answered, reported with the server's JSON reason, and —
//! if it was a cached one — replaced once and tried again on the same connection.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_imap::imap_proto::{Capability, Response};
use async_imap::types::UnsolicitedResponse;
use async_imap::{Client, Session};
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::advice::{self, Protocol};
use super::sasl::{self, Mechanism};
use super::{AccessToken, SignInError, TokenSource};

/// Where the server is, for OAUTHBEARER and for messages.
pub struct Server<'a> {
    pub host: &'a str,
    pub port: u16,
    pub timeout: Duration,
}

/// Signs `user` in on `client` (greeted, secured). `known` are the capabilities the
/// greeting named, if it named any `AUTH=` ones; otherwise CAPABILITY is asked.
pub async fn sign_in<T>(
    mut client: Client<T>,
    server: &Server<'_>,
    user: &str,
    tokens: &TokenSource,
    known: &HashSet<String>,
) -> Result<Session<T>, SignInError>
where
    T: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let addr = format!("{}:{}", server.host, server.port);
    let caps = if known.iter().any(|c| c.starts_with("AUTH=")) {
        known.clone()
    } else {
        capabilities(&mut client, server.timeout).await.map_err(|e| SignInError::Failed(format!("{addr}: {e}")))?
    };
    let offered: Vec<&str> = caps.iter().filter_map(|c| c.strip_prefix("AUTH=")).collect();
    let Some(mechanism) = sasl::choose(offered.iter().copied()) else {
        let mut offered: Vec<&str> = offered;
        offered.sort_unstable();
        return Err(SignInError::NoMechanism { server: addr, offered: offered.join(" ") });
    };
    let initial_response = caps.contains("SASL-IR");
    let mut token = tokens.token().await?;
    let mut retried = false;
    loop {
        match attempt(client, server, mechanism, initial_response, user, &token).await {
            Tried::In(session) => return Ok(session),
            Tried::Refused(_, back) if !token.new && !retried => {
                retried = true;
                client = back;
                token = tokens.renew(&token).await?;
            }
            Tried::Refused(said, _) => {
                return Err(SignInError::Refused {
                    server: addr,
                    mechanism: mechanism.name(),
                    user: user.to_string(),
                    said,
                    advice: advice::refused(tokens.settings(), Protocol::Imap, user),
                })
            }
            Tried::Failed(e) => {
                return Err(SignInError::Failed(format!("AUTHENTICATE {} at {addr}: {e}", mechanism.name())))
            }
        }
    }
}

/// How one AUTHENTICATE went.
enum Tried<T: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send> {
    In(Session<T>),
    /// Refused (what the server said), with the connection to try again on.
    Refused(String, Client<T>),
    Failed(String),
}

async fn attempt<T>(
    client: Client<T>,
    server: &Server<'_>,
    mechanism: Mechanism,
    initial_response: bool,
    user: &str,
    token: &AccessToken,
) -> Tried<T>
where
    T: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let exchange = Exchange {
        first: mechanism.initial_response(user, token.bearer.expose(), server.host, server.port),
        first_sent: AtomicBool::new(initial_response),
        acknowledgement: mechanism.error_acknowledgement(),
        challenge: Mutex::new(None),
    };
    let command = if initial_response {
        format!("{} {}", mechanism.name(), base64::engine::general_purpose::STANDARD.encode(&exchange.first))
    } else {
        mechanism.name().to_string()
    };
    let result = tokio::time::timeout(server.timeout, client.authenticate(command, &exchange)).await;
    let challenge = exchange.challenge.lock().unwrap_or_else(|e| e.into_inner()).take();
    match result {
        Err(_) => Tried::Failed(format!("no answer within {} s (timeout_secs)", server.timeout.as_secs())),
        Ok(Ok(session)) => Tried::In(session),
        Ok(Err((async_imap::error::Error::No(text), client))) => {
            let text = server_text(&text);
            let said = match challenge {
                Some(c) => format!("{}; {text}", sasl::describe_challenge(&c)),
                None => text,
            };
            Tried::Refused(said, client)
        }
        Ok(Err((e, _))) => Tried::Failed(e.to_string()),
    }
}

/// The server's words in async-imap's text of a NO (`code: …, info: Some("…")`).
fn server_text(no: &str) -> String {
    match no.split_once("info: Some(\"").and_then(|(_, rest)| rest.rsplit_once("\")")) {
        Some((info, _)) => info.to_string(),
        None => no.trim().to_string(),
    }
}

/// One AUTHENTICATE's messages: the first one (unless it went with the command), then
/// the acknowledgement of an error challenge, which is kept for the report.
struct Exchange {
    first: Vec<u8>,
    first_sent: AtomicBool,
    acknowledgement: &'static [u8],
    challenge: Mutex<Option<Vec<u8>>>,
}

impl async_imap::Authenticator for &Exchange {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if !self.first_sent.swap(true, Ordering::SeqCst) {
            return self.first.clone();
        }
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(challenge.to_vec());
        self.acknowledgement.to_vec()
    }
}

/// Asks CAPABILITY before signing in (after STARTTLS, or when the greeting named none):
/// atoms upper-cased, mechanisms as `AUTH=NAME`.
async fn capabilities<T>(client: &mut Client<T>, timeout: Duration) -> Result<HashSet<String>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let (answers, received) = async_channel::bounded(16);
    match tokio::time::timeout(timeout, client.run_command_and_check_ok("CAPABILITY", Some(answers))).await {
        Err(_) => return Err(format!("CAPABILITY: no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => return Err(format!("CAPABILITY: {e}")),
        Ok(Ok(())) => {}
    }
    let mut caps = HashSet::new();
    while let Ok(answer) = received.try_recv() {
        if let UnsolicitedResponse::Other(data) = answer {
            if let Response::Capabilities(list) = data.parsed() {
                caps.extend(list.iter().map(capability_name));
            }
        }
    }
    Ok(caps)
}

/// A capability as the greeting's and CAPABILITY's are compared: upper case, with
/// mechanisms as `AUTH=NAME`.
pub fn capability_name(c: &Capability<'_>) -> String {
    match c {
        Capability::Imap4rev1 => "IMAP4REV1".into(),
        Capability::Auth(name) => format!("AUTH={}", name.to_ascii_uppercase()),
        Capability::Atom(name) => name.to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use async_imap::Authenticator as _;

    use super::*;

    fn exchange(initial_response: bool) -> Exchange {
        Exchange {
            first: b"user=u\x01auth=Bearer t\x01\x01".to_vec(),
            first_sent: AtomicBool::new(initial_response),
            acknowledgement: Mechanism::XOAuth2.error_acknowledgement(),
            challenge: Mutex::new(None),
        }
    }

    #[test]
    fn without_sasl_ir_the_first_message_answers_the_empty_challenge_then_an_error_is_acknowledged() {
        let ex = exchange(false);
        let mut auth = &ex;
        assert_eq!(auth.process(b""), ex.first);
        let error = br#"{"status":"401","schemes":"bearer"}"#;
        assert_eq!(auth.process(error), b"", "XOAUTH2's error challenge is answered with an empty line");
        assert_eq!(ex.challenge.lock().unwrap().as_deref(), Some(&error[..]));
    }

    #[test]
    fn with_sasl_ir_any_challenge_is_the_servers_error() {
        let ex = exchange(true);
        let mut auth = &ex;
        assert_eq!(auth.process(br#"{"status":"invalid_token"}"#), b"");
        assert!(ex.challenge.lock().unwrap().is_some());
    }

    #[test]
    fn the_servers_words_are_taken_out_of_the_libraries_text() {
        let no = r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#;
        assert_eq!(server_text(no), "[AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(server_text(" other "), "other");
    }

    #[test]
    fn capabilities_are_compared_in_one_spelling() {
        assert_eq!(capability_name(&Capability::Auth("xoauth2".into())), "AUTH=XOAUTH2");
        assert_eq!(capability_name(&Capability::Atom("sasl-ir".into())), "SASL-IR");
        assert_eq!(capability_name(&Capability::Imap4rev1), "IMAP4REV1");
    }
}
