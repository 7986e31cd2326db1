//! Preparing a mail: everything that can be worked out from its bytes alone, before the
//! store is involved — parsing (bounded and panic-proof), the machine-mail verdict, the
//! text the sender added, whether staff powers may be believed, and the content
//! fingerprint. Pure, and done off the database writer's thread.

use std::borrow::Cow;
use std::panic;

use crate::case::Reason;
use crate::classify;
use crate::config::Config;
use crate::parse::{self, InboundMail};

/// The result of preparing a mail, before any decision.
pub enum Parsed {
    Mail(Box<Analyzed>),
    /// Not processable; `headers` may still name its Message-ID, sender and subject.
    Rejected {
        reason: Reason,
        detail: String,
        headers: Option<Box<InboundMail>>,
        /// Why the sender (named by the headers) gets no automatic answer, if they get none.
        no_answers: Option<String>,
    },
}

impl Parsed {
    /// Parses and analyses `raw`: too large, unreadable or crashing the parser each end as
    /// [`Parsed::Rejected`] with the reason.
    pub fn of(config: &Config, raw: &[u8]) -> Parsed {
        let limit = config.max_message_bytes;
        if raw.len() > limit {
            let headers = parse::parse_headers(raw);
            let no_answers = headers
                .as_ref()
                .and_then(|h| no_answer_reason(config, h, crate::authorize::is_authenticated(config, h)));
            return Parsed::Rejected {
                reason: Reason::TooLarge,
                detail: format!("{} bytes, over limits.max_message_bytes = {limit}", raw.len()),
                headers: headers.map(Box::new),
                no_answers,
            };
        }
        // mail-parser promises not to panic; the guard keeps that promise from being
        // load-bearing for the daemon. The analysis is guarded the same way.
        match panic::catch_unwind(|| parse::parse(raw).map(|mail| Analyzed::read(config, mail, raw))) {
            Ok(Some(analyzed)) => Parsed::Mail(Box::new(analyzed)),
            Ok(None) => Parsed::Rejected {
                reason: Reason::Unparseable,
                detail: "no mail headers found".into(),
                headers: None,
                no_answers: None,
            },
            Err(panic) => Parsed::Rejected {
                reason: Reason::Unparseable,
                detail: format!("the MIME parser failed: {}", panic_message(&panic)),
                headers: None,
                no_answers: None,
            },
        }
    }

    /// The mail's headers, when they could be read.
    pub fn headers(&self) -> Option<&InboundMail> {
        match self {
            Parsed::Mail(a) => Some(&a.mail),
            Parsed::Rejected { headers, .. } => headers.as_deref(),
        }
    }

    /// Why the sender gets no automatic answer, if they get none.
    pub fn no_answers(&self) -> Option<&str> {
        match self {
            Parsed::Mail(a) => a.no_answers.as_deref(),
            Parsed::Rejected { no_answers, .. } => no_answers.as_deref(),
        }
    }
}

/// What can be worked out from a readable mail alone.
pub struct Analyzed {
    pub mail: InboundMail,
    /// Machine mail, and the evidence.
    pub machine: Option<classify::Verdict>,
    /// The text the sender added (quoted history and signature removed) — worked out only
    /// for a mail that can reach an existing case (it names a case token or refers to
    /// earlier mail); see [`Analyzed::new_text`].
    new_text: Option<String>,
    /// Whether a staff or admin From address may be believed.
    pub authenticated: bool,
    /// Why the sender gets no automatic answer, if they get none.
    pub no_answers: Option<String>,
    /// What a bounce says per recipient (read only for mail judged a bounce).
    pub bounce: Option<classify::bounce::Report>,
    /// The outbox row whose return path the mail arrived at (`[bounces] return_path`).
    pub return_path_row: Option<i64>,
    /// Why the receiving server's marks make the mail spam, if they do.
    pub spam: Option<String>,
    /// The From domain, when the receiving server says DMARC failed for it.
    pub dmarc_failure: Option<String>,
    /// What the mail's text says as an autoresponder would repeat it ([`classify::gist`]),
    /// for the loop breaker.
    pub gist: classify::Gist,
}

impl Analyzed {
    /// The text the sender added: worked out while preparing when the mail may reach a
    /// case (the only time it is needed), else now.
    pub fn new_text(&self) -> Cow<'_, str> {
        match &self.new_text {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(parse::reply::new_text_of(&self.mail)),
        }
    }

    pub fn of(config: &Config, mail: InboundMail) -> Analyzed {
        Analyzed::read(config, mail, &[])
    }

    /// [`Analyzed::of`], with the raw mail for a bounce whose parts the parser could not
    /// make out (see `classify::bounce::parse`).
    pub fn read(config: &Config, mail: InboundMail, raw: &[u8]) -> Analyzed {
        let ctx = classify::Context { system_addresses: &config.system_addresses, instance_id: &config.instance_id };
        let authenticated = crate::authorize::is_authenticated(config, &mail);
        let machine = classify::machine_mail(&mail, &ctx);
        let bounce = machine
            .as_ref()
            .filter(|v| v.kind == classify::MachineKind::Bounce)
            .and_then(|_| classify::bounce::parse(&mail, raw));
        let new_text = may_reach_a_case(config, &mail).then(|| parse::reply::new_text_of(&mail));
        // What the sender wrote, without the history they quoted: a person quotes our
        // acknowledgement below their answer, an autoresponder returns it as its text.
        let gist = classify::Gist::of(new_text.as_deref().unwrap_or(&mail.text));
        Analyzed {
            machine,
            bounce,
            return_path_row: config
                .bounces
                .return_path
                .as_ref()
                .and_then(|b| classify::bounce::return_path_row(&mail, b)),
            spam: classify::spam::verdict(&mail, config.spam.enabled, &config.spam.header_rules),
            dmarc_failure: crate::authorize::dmarc_failure(config, &mail),
            new_text,
            authenticated,
            no_answers: no_answer_reason(config, &mail, authenticated),
            gist,
            mail,
        }
    }

    /// Forgets the spam marks: a person released the mail from the quarantine, having
    /// looked at it.
    pub fn released_by_a_person(&mut self) {
        self.spam = None;
        self.dmarc_failure = None;
    }
}

/// Why the sender of `mail` must get no automatic answer, if so: machine mail, headers
/// asking for none, no-reply addresses (see [`classify::auto_response_allowed`]), or a
/// staff or admin address the receiving server does not vouch for (the answer would reach
/// the address's real owner, who did not write).
pub fn no_answer_reason(config: &Config, mail: &InboundMail, authenticated: bool) -> Option<String> {
    if let Some(from) = mail.from_address().filter(|_| !authenticated) {
        if config.is_staff(from) || config.is_admin(from) {
            return Some(format!("From: {from} is a staff or admin address, but the mail is not authenticated"));
        }
    }
    classify::auto_response_allowed(mail).err()
}

/// Routing needs a subject token or In-Reply-To/References to find an existing case; a
/// mail with neither can only open a new case, whose text is kept whole.
fn may_reach_a_case(config: &Config, mail: &InboundMail) -> bool {
    !mail.in_reply_to.is_empty() || !mail.references.is_empty() || !config.tokens.tokens(&mail.subject).is_empty()
}

/// The content fingerprint of a mail: a hash of what its author wrote — From, Date,
/// Subject, the decoded text and HTML bodies and every attachment's bytes — and of nothing
/// the transport adds or re-encodes (Received, Delivered-To, DKIM signatures, transfer
/// encodings). One mail delivered to two support addresses, or through two relays, has one
/// fingerprint; two mails that reuse one Message-ID (issue trackers, some mobile clients,
/// a mail re-sent after an edit) have two. A mail whose body was not parsed (too large)
/// is fingerprinted by its headers' facts and its raw body; one without headers by its
/// bytes. (Mail without a Message-ID is journalled by its bytes: see the journal.)
pub fn fingerprint(parsed: &Parsed, raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Each field is length-prefixed, so no two different mails hash the same bytes.
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    match parsed {
        Parsed::Mail(a) => {
            field(b"mail");
            author_facts(&a.mail, &mut field);
            field(a.mail.text.as_bytes());
            field(a.mail.html.as_deref().unwrap_or_default().as_bytes());
            for attachment in &a.mail.attachments {
                field(attachment.sha256.as_bytes());
            }
        }
        Parsed::Rejected { headers: Some(mail), .. } => {
            field(b"headers");
            author_facts(mail, &mut field);
            field(body_of(raw));
        }
        Parsed::Rejected { headers: None, .. } => {
            field(b"raw");
            field(raw);
        }
    }
    hex::encode(h.finalize())
}

/// The author's facts of a mail, for [`fingerprint`]: sender, date and subject.
fn author_facts(mail: &InboundMail, field: &mut impl FnMut(&[u8])) {
    field(mail.from_address().map(|a| a.as_str()).unwrap_or_default().as_bytes());
    // An unparseable date is taken as written.
    match mail.date {
        Some(date) => field(&date.timestamp().to_le_bytes()),
        None => field(mail.header("date").unwrap_or_default().as_bytes()),
    }
    field(mail.subject.as_bytes());
}

/// The raw body: everything after the first empty line (the end of the headers).
fn body_of(raw: &[u8]) -> &[u8] {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let start = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    };
    &raw[start..]
}

/// The message of a caught panic, for the log and the quarantine reason.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
