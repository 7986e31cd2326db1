//! Why a delivery failed, in classes a support desk can act on, and whether the address
//! itself is dead (a hard bounce) or the failure may pass (a soft one).
//!
//! A cause is read from what the receiving server said, in this order, the first that
//! speaks deciding:
//!
//! 1. **Telling words** in the diagnostic ("mailbox full", "user unknown", "listed at
//!    Spamhaus"): servers often answer with a generic code (`550`, `5.0.0`, `5.7.1`) and say
//!    what they mean only in words.
//! 2. **The DSN status code** (RFC 3463 / RFC 5248): `5.1.1` a bad mailbox, `5.2.2` a full
//!    one, `5.7.26` failed authentication, ...
//! 3. **Vague words** ("rejected", "denied", "policy"), which only say that the mail was
//!    refused.
//! 4. **The SMTP reply code**, which says even less.
//!
//! Hard means the address cannot receive mail at all: its mailbox or domain does not exist
//! or has moved, or the domain accepts no mail (with a permanent code). Everything else —
//! full mailboxes, filters, blocklists, time-outs — may pass, and is soft.

/// A class of delivery failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The mailbox does not exist.
    UserUnknown,
    /// The domain or its mail servers do not exist.
    HostUnknown,
    /// The person moved and left a new address (551).
    HasMoved,
    /// The domain accepts no mail (null MX, `5.3.2`).
    NotAccepting,
    /// The mailbox is full.
    MailboxFull,
    /// The message is larger than the server takes.
    TooLarge,
    /// Over a per-mailbox or per-message limit other than the size.
    ExceedsLimit,
    /// The mailbox exists but is disabled, suspended or inactive.
    Suspended,
    /// The recipient's own filter refused the sender or the content.
    Filtered,
    /// The sender (address or domain) was refused.
    Rejected,
    /// The sending server is on a block list or refused by IP address.
    Blocked,
    /// The content was judged to be spam.
    Spam,
    /// The content carried a virus.
    Virus,
    /// The receiving site's policy forbids the mail.
    Policy,
    /// SPF, DKIM or DMARC failed.
    AuthFailure,
    /// The sending server has no (matching) reverse DNS.
    NoReverseDns,
    /// The sending server's reputation is too poor.
    BadReputation,
    /// TLS or another security requirement was not met.
    Security,
    /// The server refuses to relay.
    NoRelaying,
    /// Too many connections at once.
    TooManyConnections,
    /// Too many mails in too short a time.
    RateLimited,
    /// Delivery was retried until it gave up.
    Expired,
    /// The receiving server could not be reached, or mail looped.
    NetworkError,
    /// The receiving system's own trouble.
    SystemError,
    /// The receiving system is out of storage.
    SystemFull,
    /// A local delivery program failed.
    MailerError,
    /// The content or its encoding could not be taken.
    ContentError,
    /// The mail broke the mail standards (headers, line lengths).
    NotCompliant,
    /// The SMTP conversation itself failed (a syntax error).
    SyntaxError,
    /// Nothing says why.
    Undefined,
}

impl Cause {
    /// The name shown to people and in `last_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::UserUnknown => "user-unknown",
            Cause::HostUnknown => "host-unknown",
            Cause::HasMoved => "has-moved",
            Cause::NotAccepting => "not-accepting-mail",
            Cause::MailboxFull => "mailbox-full",
            Cause::TooLarge => "too-large",
            Cause::ExceedsLimit => "exceeds-limit",
            Cause::Suspended => "suspended",
            Cause::Filtered => "filtered",
            Cause::Rejected => "rejected",
            Cause::Blocked => "blocked",
            Cause::Spam => "spam",
            Cause::Virus => "virus",
            Cause::Policy => "policy",
            Cause::AuthFailure => "auth-failure",
            Cause::NoReverseDns => "no-reverse-dns",
            Cause::BadReputation => "bad-reputation",
            Cause::Security => "security",
            Cause::NoRelaying => "no-relaying",
            Cause::TooManyConnections => "too-many-connections",
            Cause::RateLimited => "rate-limited",
            Cause::Expired => "expired",
            Cause::NetworkError => "network-error",
            Cause::SystemError => "system-error",
            Cause::SystemFull => "system-full",
            Cause::MailerError => "mailer-error",
            Cause::ContentError => "content-error",
            Cause::NotCompliant => "not-compliant",
            Cause::SyntaxError => "syntax-error",
            Cause::Undefined => "undefined",
        }
    }

    /// The cause in words, for the case entry and the staff notice.
    pub fn describe(self) -> &'static str {
        match self {
            Cause::UserUnknown => "the mailbox does not exist",
            Cause::HostUnknown => "the domain does not exist or has no mail server",
            Cause::HasMoved => "the person has moved to another address",
            Cause::NotAccepting => "the domain accepts no mail",
            Cause::MailboxFull => "the mailbox is full",
            Cause::TooLarge => "the message is too large",
            Cause::ExceedsLimit => "a limit of the mailbox was exceeded",
            Cause::Suspended => "the mailbox is disabled",
            Cause::Filtered => "the recipient's filter refused it",
            Cause::Rejected => "the receiving server refused it",
            Cause::Blocked => "our sending server is blocked there",
            Cause::Spam => "it was taken for spam",
            Cause::Virus => "it was taken for a virus",
            Cause::Policy => "the receiving site's policy refused it",
            Cause::AuthFailure => "sender authentication (SPF, DKIM, DMARC) failed",
            Cause::NoReverseDns => "our sending server's reverse DNS was not accepted",
            Cause::BadReputation => "our sending server's reputation was not good enough",
            Cause::Security => "a security requirement (such as TLS) was not met",
            Cause::NoRelaying => "the server does not relay for us",
            Cause::TooManyConnections => "too many connections",
            Cause::RateLimited => "too many mails in a short time",
            Cause::Expired => "delivery was retried until it gave up",
            Cause::NetworkError => "the receiving server could not be reached",
            Cause::SystemError => "the receiving system had an error",
            Cause::SystemFull => "the receiving system is out of storage",
            Cause::MailerError => "a delivery program failed",
            Cause::ContentError => "the content was not accepted",
            Cause::NotCompliant => "the mail was not standard enough for the server",
            Cause::SyntaxError => "the mail conversation failed",
            Cause::Undefined => "no reason given",
        }
    }
}

/// Whether a failure with this cause means the address is dead. `permanent` is what the
/// codes say (a `5.x.x` status or a `5xx` reply), for causes where only that decides.
pub fn is_hard(cause: Cause, permanent: bool) -> bool {
    match cause {
        Cause::UserUnknown | Cause::HostUnknown | Cause::HasMoved => true,
        Cause::NotAccepting => permanent,
        _ => false,
    }
}

/// The SMTP command a server was answering when it refused the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting, HELO/EHLO or the connection itself.
    Connection,
    MailFrom,
    RcptTo,
    Data,
}

/// The command a report says the server answered: the last one it names (a transcript
/// lists them in order, the refused one last).
pub fn stage_of(text: &str) -> Option<Stage> {
    let lower = text.to_lowercase();
    let mut best: Option<(usize, Stage)> = None;
    for (stage, phrases) in STAGES {
        for p in *phrases {
            if let Some(at) = lower.rfind(p) {
                if best.is_none_or(|(b, _)| at > b) {
                    best = Some((at, *stage));
                }
            }
        }
    }
    best.map(|(_, stage)| stage)
}

/// How reports name the command that was refused (lower case).
#[rustfmt::skip]
static STAGES: &[(Stage, &[&str])] = &[
    (Stage::RcptTo, &[
        "rcpt to command", "after rcpt to", ">>> rcpt to", "rcpt to response", "[rcpt_to]", "smtp:rcpt",
        "our rcpt to", "rcpt to:<", "smtp rcpt", "(rcpt)", "rcpt-to",
    ]),
    (Stage::Data, &[
        "data command", "after end of data", "after data", ">>> data", "final data", "[data]",
        "message body", "(data)", "after the data",
    ]),
    (Stage::MailFrom, &["mail from command", "after mail from", ">>> mail from", "[mail_from]", "(mail from)"]),
    (Stage::Connection, &[
        "helo command", "ehlo command", "after helo", "after ehlo", ">>> helo", ">>> ehlo",
        "refused to talk to me", "greeting", "connect to",
    ]),
];

/// The cause of a failure, from the diagnostic (any text the server or the report wrote
/// about this recipient), the DSN status code, the SMTP reply code and the command the
/// server answered.
///
/// Words that a mailbox does not exist make a hard bounce only where they are believable:
/// with a status code that says so (`x.1.1`), or in answer to `RCPT TO`, where servers
/// check addresses. "User unknown" in answer to the message itself (after `DATA`), or
/// without saying when, is how carriers' and companies' filters refuse senders they do not
/// want — the address may well exist — and is taken as [`Cause::Filtered`].
pub fn cause_of(diagnostic: &str, status: Option<&str>, reply: Option<u16>, stage: Option<Stage>) -> Cause {
    judge(diagnostic, status, reply, stage).0
}

/// The cause of a failure from what the server answered (`said`) and, where that says
/// nothing specific, from the rest of the report's text about the recipient (`context`).
pub fn cause_in(said: &str, context: &str, status: Option<&str>, reply: Option<u16>, stage: Option<Stage>) -> Cause {
    let (from_said, specific) = judge(said, status, reply, stage);
    if specific {
        return from_said;
    }
    let (from_all, specific) = judge(&format!("{said}\n{context}"), status, reply, stage);
    if specific || from_said == Cause::Undefined {
        from_all
    } else {
        from_said
    }
}

/// The cause, and whether it is specific (telling words, a specific status code, words
/// about the address) rather than vague words or a bare reply code.
fn judge(diagnostic: &str, status: Option<&str>, reply: Option<u16>, stage: Option<Stage>) -> (Cause, bool) {
    let text = normalise(diagnostic);
    if let Some(cause) = by_words(&text, TELLING) {
        return (cause, true);
    }
    if let Some(cause) = status.and_then(by_status) {
        return (cause, true);
    }
    if let Some(cause) = by_words(&text, ADDRESS) {
        return match cause {
            Cause::UserUnknown if stage != Some(Stage::RcptTo) => (Cause::Filtered, true),
            other => (other, true),
        };
    }
    if let Some(cause) = by_words(&text, LATE) {
        return (cause, true);
    }
    if let Some(cause) = by_words(&text, VAGUE) {
        return (cause, false);
    }
    (reply.and_then(by_reply).unwrap_or(Cause::Undefined), false)
}

/// Lower case, one space between words: how the phrase tables are written.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
    }
    out
}

fn by_words(text: &str, table: &[(Cause, &[&str])]) -> Option<Cause> {
    table.iter().find(|(_, phrases)| phrases.iter().any(|p| text.contains(p))).map(|(cause, _)| *cause)
}

/// Phrases that say what went wrong, in the order they are tried: the more specific
/// first (a full mailbox is also "unavailable"; a blocked IP is often "rejected as spam").
/// Every phrase is lower case with single spaces.
#[rustfmt::skip]
pub(super) static TELLING: &[(Cause, &[&str])] = &[
    // Exchange Online refuses recipients it does not know with these words, at RCPT.
    (Cause::UserUnknown, &["recipient address rejected: access denied"]),
    // A lookup that failed for now is no verdict on the domain.
    (Cause::NetworkError, &["host not found, try again", "try again later (dns)", "temporary dns"]),
    (Cause::MailerError, &[
        "mailer error", "command died", "exit status", "procmail", "unknown mailer",
        "command failed", "delivery program", "local delivery failed", "child process",
        "x-unix;",
    ]),
    (Cause::HasMoved, &[
        "has moved", "has been moved", "user not local; please try", "address has changed",
        "no longer uses this address", "mailbox has moved",
    ]),
    (Cause::MailboxFull, &[
        "mailbox full", "mailbox is full", "mailbox is over", "mailbox over quota",
        "over quota", "overquota", "over the quota", "quota exceeded", "exceeded quota",
        "exceeds quota", "quota exceed", "quota full", "quota violation", "mailbox size limit",
        "exceeded storage allocation", "insufficient storage for the mailbox",
        "user has exceeded", "user is over", "mailfolder is full", "mailbox not enough space",
        "not enough storage space", "full mailbox", "disk quota", "mail box full", "mailbox exceeded",
        "would exceed mailbox", "is full", "no space left in mailbox", "recipient's mailbox full",
    ]),
    (Cause::TooLarge, &[
        "message too large", "message is too large", "message too big", "message is too big",
        "message size exceeds", "message size limit", "message length exceeds", "size limit",
        "exceeds the maximum size", "exceeds maximum size", "maximum message size",
        "message exceeded", "size of message", "message file too big", "too big for",
        "message size is larger", "mail size limit",
    ]),
    (Cause::Suspended, &[
        "account disabled", "account has been disabled", "account is disabled",
        "mailbox disabled", "mailbox is disabled", "mailbox has been disabled",
        "account suspended", "account has been suspended", "account is suspended",
        "mailbox is inactive", "inactive mailbox", "account is inactive", "account inactive",
        "account has been deactivated", "mailbox is frozen", "account is locked",
        "account has been locked", "is a deactivated mailbox", "user suspended",
        "mailbox unavailable or access denied", "recipient suspended",
        "temporarily disabled", "account expired", "mailbox temporarily disabled",
    ]),
    (Cause::NotAccepting, &[
        "does not accept mail", "accepts no mail", "null mx", "not accepting mail",
        "does not receive mail", "no mail is accepted",
    ]),
    (Cause::Virus, &["virus", "malware", "infected", "trojan"]),
    (Cause::AuthFailure, &[
        "spf", "dkim", "dmarc", "sender policy framework", "not authenticated",
        "authentication checks", "unauthenticated email", "failed authentication",
        "sender authentication",
    ]),
    (Cause::NoReverseDns, &[
        "reverse dns", "reverse lookup", "reverse hostname", "ptr record", "no ptr",
        "rdns", "reverse-dns", "cannot find your hostname", "cannot resolve your address",
        "hostname does not match", "ip name lookup failed", "dns ptr", "without reverse",
        "no reverse", "forward-confirmed",
    ]),
    (Cause::BadReputation, &["reputation", "sender score"]),
    (Cause::Blocked, &[
        "blacklist", "blocklist", "black list", "block list", "blacklisted", "spamhaus",
        "spamcop", "dnsbl", "rbl", "listed at", "is listed",
        "client host rejected", "connection refused by",
        "access denied - invalid", "banned", "blocked using", "has been blocked",
        "are blocked", "is blocked", "blocked by", "ip blocked", "not allowed to send",
        "connections from", "refused to talk to me", "service unavailable, client host",
        "sending mta's poor", "poor reputation", "barracuda", "sorbs", "junkmail rejected",
    ]),
    (Cause::Spam, &[
        "spam", "junk mail", "unsolicited", "bulk mail", "looks like junk",
        "message content rejected", "content rejected", "considered as junk",
        "identified as junk", "suspicious", "phishing",
    ]),
    (Cause::NoRelaying, &[
        "relay access denied", "relaying denied", "relay denied", "relay not permitted",
        "not permitted to relay", "unable to relay", "relaying not allowed", "we do not relay",
        "relaying is not allowed", "relay not allowed", "not allowed to relay", "no relaying",
        "relaying to", "cannot relay", "relay prohibited",
    ]),
    (Cause::TooManyConnections, &["too many connections", "too many concurrent", "too many sessions"]),
    (Cause::RateLimited, &[
        "rate limit", "ratelimit", "rate-limit", "too many messages", "too many recipients",
        "sending rate", "throttl", "try again later, closing connection", "receiving mail at a rate",
        "exceeded the rate", "message rate", "too many mails",
    ]),
    (Cause::Security, &[
        "tls required", "starttls", "must issue a starttls", "encryption required",
        "requires tls", "ssl", "certificate", "authentication required", "must authenticate",
        "authentication is required", "insecure",
    ]),
];

/// Words that a mailbox or a domain does not exist (see [`cause_of`] for when they are
/// believed).
#[rustfmt::skip]
pub(super) static ADDRESS: &[(Cause, &[&str])] = &[
    (Cause::UserUnknown, &[
        "user unknown", "unknown user", "no such user", "no such mailbox", "no such recipient",
        "no such account", "no such person", "no such address", "unknown recipient",
        "unknown mailbox", "unknown address", "unknown or illegal user", "invalid recipient",
        "invalid mailbox", "invalid address", "invalid user", "recipient not found",
        "recipient unknown", "recipient does not exist", "recipient address rejected: user",
        "recipient address rejected: unknown", "recipient address rejected: invalid",
        "recipient address rejected: undeliverable", "user does not exist",
        "mailbox does not exist", "address does not exist", "account does not exist",
        "email account that you tried to reach does not exist", "does not exist",
        "mailbox not found", "mailbox not present", "mailbox unavailable", "mailbox is unavailable",
        "user not found", "address not found", "addressee unknown", "not a valid mailbox",
        "is not a known user", "is not an active address", "no mailbox here",
        "recipient name is not recognized", "recipnotfound", "resolver.adr.recipnotfound",
        "not listed in domino directory", "not listed in public name & address book",
        "bad destination mailbox", "bad address", "unrouteable address",
        "user doesn't have", "this user doesn't have", "no account by that name",
        "invalid final delivery userid", "destination addresses were unknown",
        "not our customer", "unknown local part", "no valid recipients", "recipient rejected",
        "invalid recipient address", "user is unknown", "no user", "utilisateur inconnu",
        "benutzer unbekannt", "unbekannter empfänger", "address unknown", "unknown account",
        "is not a valid user", "550 unknown", "the email address you entered couldn't be found",
        "this account has been deleted", "account has been deleted", "archived recipient",
        "no such local user", "user invalid", "wasn't found at", "was not found at",
        "doesn't have an account", "invalid mail address", "the user you are trying to contact",
        "is not a valid e-mail address", "no existe", "mailbox not available",
        "recipient address rejected",
    ]),
    (Cause::HostUnknown, &[
        "host unknown", "unknown host", "host not found", "domain not found", "no such domain",
        "domain does not exist", "name service error", "nxdomain", "domain name not found",
        "unrouteable mail domain", "unroutable domain", "host or domain name not found",
        "no mx record", "mx record not found", "all relevant mx records point to non-existent",
        "domain is not known", "unknown domain", "invalid domain", "hostname lookup failed",
        "no route to domain", "domain could not be found", "could not resolve",
        "dns lookup failed", "bad destination system", "recipient domain not found",
        "host lookup did not complete", "name or service not known", "illegal host",
        "couldn't find any host named",
    ]),
];

/// Words of trouble on the way, tried after the status code (a report that gave up after
/// retrying says so whatever the server answered).
#[rustfmt::skip]
pub(super) static LATE: &[(Cause, &[&str])] = &[
    (Cause::Expired, &[
        "retry timeout exceeded", "retry time not reached", "delivery time expired",
        "message expired", "giving up", "gave up", "could not be delivered within",
        "not delivered within", "was not delivered for", "message timed out",
        "has been in the queue", "expired after", "deferred for too long", "too long in queue",
        "delivery attempts will continue", "delivery expired", "expired",
    ]),
    (Cause::NetworkError, &[
        "connection refused", "connection timed out", "timed out", "timeout",
        "network is unreachable", "no route to host", "mail loops back", "loops back to myself",
        "too many hops", "hop count exceeded", "routing loop", "mail loop", "loop detected",
        "connection reset", "lost connection", "connection dropped", "could not connect",
        "unable to connect", "can't connect", "failed to connect", "connection closed",
        "no answer from host", "temporary dns failure", "dns failure",
    ]),
    (Cause::SystemFull, &[
        "insufficient system storage", "system full", "out of disk", "no space left on device",
        "disk full", "not enough disk space",
    ]),
    (Cause::NotCompliant, &[
        "rfc 5322", "rfc5322", "rfc 2822", "rfc2822", "rfc 822", "not rfc",
        "line too long", "line length", "duplicate header", "bare lf", "bare linefeed",
        "header too long", "improperly formatted", "malformed", "8-bit",
    ]),
    (Cause::ContentError, &[
        "content type", "content-type", "attachment", "mime", "message content",
        "invalid header", "header error", "encoding",
    ]),
    (Cause::SystemError, &[
        "system error", "internal error", "server error", "local error", "system failure",
        "mail system problem", "temporary failure", "temporarily unavailable",
        "service unavailable", "too many errors", "misconfigur", "unavailable for",
        "configuration error", "permission denied",
    ]),
];

/// Words that say only that the mail was refused, and by whom.
#[rustfmt::skip]
pub(super) static VAGUE: &[(Cause, &[&str])] = &[
    (Cause::Filtered, &[
        "filter", "not accepted by the recipient", "rejected by the recipient",
        "refused by the recipient", "recipient has rejected", "recipient rejected your",
        "only accepting mail from", "not authorized to send to", "is not accepting",
        "denied by recipient", "rejected by recipient", "blocked by the recipient",
    ]),
    (Cause::Rejected, &[
        "sender address rejected", "sender rejected", "sender denied", "sender is not allowed",
        "sender verify failed", "sender verification", "invalid sender", "domain of sender",
        "sender domain", "your address", "from address", "mail from", "envelope sender",
        "access denied", "rejected", "refused", "denied", "not allowed", "not permitted",
        "blocked",
    ]),
    (Cause::Policy, &["policy", "prohibited", "violat", "not authorized", "unauthorized"]),
];

/// What a DSN status code (`class.subject.detail`) says, when it says something specific.
/// The generic `x.0.0`, and `x.7.1` (mail refused for a reason the words must tell), say
/// nothing on their own.
fn by_status(status: &str) -> Option<Cause> {
    let mut parts = status.split('.');
    let class = parts.next()?;
    let subject: u32 = parts.next()?.parse().ok()?;
    let detail: u32 = parts.next()?.parse().ok()?;
    if !matches!(class, "4" | "5") {
        return None;
    }
    Some(match (subject, detail) {
        (1, 1) | (1, 3) | (1, 4) | (1, 9) => Cause::UserUnknown,
        (1, 2) => Cause::HostUnknown,
        (1, 6) => Cause::HasMoved,
        (1, 7) | (1, 8) => Cause::Rejected,
        (1, 10) => Cause::NotAccepting,
        (2, 0) | (2, 1) => Cause::Filtered,
        (2, 2) => Cause::MailboxFull,
        (2, 3) => Cause::ExceedsLimit,
        (2, 4) => Cause::SystemError,
        (3, 1) => Cause::SystemFull,
        (3, 2) => Cause::NotAccepting,
        (3, 4) => Cause::TooLarge,
        (3, 5) => Cause::SystemError,
        (4, 7) => Cause::Expired,
        (4, 4) => Cause::HostUnknown,
        (4, 1) | (4, 2) | (4, 3) | (4, 5) | (4, 6) => Cause::NetworkError,
        (5, 1..) => Cause::SyntaxError,
        (6, _) => Cause::ContentError,
        (7, 0) => Cause::Security,
        (7, 13) | (7, 14) => Cause::Suspended,
        (7, 25) => Cause::NoReverseDns,
        (7, 20..=24) | (7, 26..=27) | (7, 7) | (7, 8) => Cause::AuthFailure,
        (7, 9) | (7, 10) | (7, 11) | (7, 12) | (7, 15..=19) => Cause::Policy,
        (7, 28) => Cause::RateLimited,
        (7, 2) | (7, 3) | (7, 4) | (7, 5) | (7, 6) => Cause::Security,
        _ => return None,
    })
}

/// What a bare SMTP reply code says.
fn by_reply(code: u16) -> Option<Cause> {
    Some(match code {
        551 => Cause::HasMoved,
        552 => Cause::MailboxFull,
        553 => Cause::UserUnknown,
        452 => Cause::SystemFull,
        421 => Cause::TooManyConnections,
        554 | 550 | 571 => Cause::Rejected,
        450 | 451 => Cause::SystemError,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_tell_more_than_generic_codes() {
        let c = |text: &str, status: Option<&str>, reply: Option<u16>| cause_of(text, status, reply, stage_of(text));
        assert_eq!(c("550 5.1.1 <a@x>... User Unknown", Some("5.1.1"), Some(550)), Cause::UserUnknown);
        assert_eq!(c("552 Mailbox Full", Some("5.0.0"), Some(552)), Cause::MailboxFull);
        assert_eq!(c("554 rejected: listed at zen.spamhaus.org", Some("5.7.1"), None), Cause::Blocked);
        assert_eq!(c("Requested action not taken", Some("5.2.2"), None), Cause::MailboxFull);
        assert_eq!(c("Access   DENIED", Some("5.0.0"), None), Cause::Rejected);
        assert_eq!(c("", None, Some(551)), Cause::HasMoved);
        assert_eq!(c("", None, None), Cause::Undefined);
        // A vague word does not override a specific code.
        assert_eq!(c("550 rejected", Some("5.1.1"), Some(550)), Cause::UserUnknown);
    }

    #[test]
    fn only_dead_addresses_are_hard() {
        assert!(is_hard(Cause::UserUnknown, false));
        assert!(is_hard(Cause::HostUnknown, true));
        assert!(is_hard(Cause::NotAccepting, true) && !is_hard(Cause::NotAccepting, false));
        assert!(!is_hard(Cause::MailboxFull, true));
        assert!(!is_hard(Cause::Blocked, true));
    }

    #[test]
    fn phrase_tables_are_written_as_they_are_compared() {
        for (cause, phrases) in TELLING.iter().chain(ADDRESS).chain(LATE).chain(VAGUE) {
            for p in *phrases {
                assert_eq!(*p, normalise(p), "{cause:?}: {p:?} could never match");
            }
        }
    }
}
