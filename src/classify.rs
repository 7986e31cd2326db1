//! Machine mail: auto-replies, bulk and list mail, bounces and reports, our own mail coming
//! back. Such mail never opens a case, and casegate never answers it automatically.
//!
//! # How a mail is judged
//!
//! The checks run in this order and the first one that fires decides, so the order is also
//! the precedence between kinds when a mail carries several kinds of evidence (a bounce is
//! usually `Auto-Submitted` too; an out-of-office reply to a list post carries `List-Id`):
//!
//! 1. **Loop**: our own `X-Casegate-Loop` header carrying this installation's id, an
//!    `X-Loop` naming one of the system addresses (list managers and autoresponders add it
//!    with the address they passed the mail on for: our own mail is on its way back), or a
//!    `From:` that is one of the system addresses.
//! 2. **Challenge-response** (kind `AutoReply`): "please verify that you are human" filters
//!    (Bluebottle, Boxbe, TMDA, BoxTrapper). They often dress up as a delivery report, so
//!    they are recognised *before* bounces: a challenge is never a bounce.
//! 3. **Reports**: a `message/delivery-status` part (in a `multipart/report`, or on its own
//!    in a `multipart/mixed` as some gateways send it) is a `Bounce` unless every
//!    recipient's `Action:` is `delivered`, `relayed` or `expanded` (then a `Report`);
//!    `feedback-report` (ARF abuse reports) and `disposition-notification` (read receipts)
//!    are `Report`s. Amazon SES events delivered through SNS are judged the same way by
//!    their `notificationType`, also when SNS wraps the event as a string in its own JSON.
//! 4. **Bounces without report structure**: the `Bounce` rows of the rule table
//!    (`X-Failed-Recipients`), a `MAILER-DAEMON` sender, or a mail that comes *from a
//!    delivery system* and *says that delivery failed*. From a delivery system: a postmaster
//!    or "Mail Delivery System" sender, `From: <>`, a null or `MAILER-DAEMON` return path, an
//!    `Auto-Submitted` header, a `multipart/report` content type, or a no-reply sender that
//!    returns the undelivered message as an attachment. Says so: a bounce subject
//!    ("Undelivered Mail Returned to Sender", "Undeliverable:", "Non remis", "Unzustellbar",
//!    "Недоставленное сообщение", ...) or, in the first few kilobytes of the body, the
//!    wording mail systems use ("could not be delivered", "user unknown", "mailbox is
//!    full", ...); from a bare postmaster address, which people also write from, the
//!    wording counts only when the undelivered message comes back attached. A subject that
//!    forwards ("Fwd: Returned mail") was written by a person, and so was a reply ("Re:
//!    Undeliverable ..."), unless it quotes nothing and its text is a mail server's error
//!    line ("550 ... no such user"): some carriers answer an undeliverable mail as a reply
//!    to it. A `multipart/report` with neither a report type nor a status part is a
//!    `Report` when none of this applies.
//! 5. **Automatic replies**: the `AutoReply` rows of the rule table (`Auto-Submitted` other
//!    than `no`, `X-Autoreply`, `Precedence: auto_reply`, vacation programs in `X-Mailer`,
//!    ...), then *two or more* of the weak auto-reply signs together: an "Out of Office:" or
//!    "Automatic reply:" subject, a null return path, Exchange's inbox-rule headers. One
//!    sign alone never decides: people write "Out of office" subjects too.
//! 6. **Lists**, then 7. **Bulk**: the rows of those kinds (`List-Id`, `Precedence: list`;
//!    `Precedence: bulk|junk`, `List-Unsubscribe`, campaign ids).
//!
//! `Auto-Submitted: auto-generated` (a notification) and `auto-replied` (an answer) are both
//! `AutoReply`: the kind means "sent by a program in the sense of RFC 3834", and the reason
//! quotes the value, so the two stay apart in the log.
//!
//! The body is read only for challenge-response wording, and only when the mail already
//! looks automatic (multipart/report, null return path, `Auto-Submitted`, a `noreply@`
//! sender); for the wording of delivery failures, only when the mail comes from a delivery
//! system, and never more than [`MAX_BODY_SCAN`] bytes of it; and for the type of an SES
//! notification that SNS sent: a person who writes "out of office", "undelivered" or
//! "auto-reply" in a message is still a person.
//!
//! Deliberately *not* machine evidence on its own, though each stops
//! [`auto_response_allowed`]: a `noreply@` sender (contact forms send as `noreply@` with
//! the customer in `Reply-To`, and that mail must open a case), `X-Auto-Response-Suppress`
//! (a wish about answering, which Outlook also sets on ordinary mail), `X-Loop`, and
//! another casegate installation's loop header (its agents' replies are written by people).
//!
//! # Our own list
//! When the support address is itself a Google Group or Mailman list that delivers to
//! casegate, every customer's mail arrives with `List-Id: <support.example.com>`,
//! `List-Unsubscribe` and `Precedence: list` added by that list. When `List-Id` names one
//! of the system addresses, the headers a list manager adds are not held against the mail;
//! otherwise every case would silently vanish as "list mail".

pub mod bounce;
pub mod spam;

use crate::address::Address;
use crate::parse::InboundMail;

use MachineKind::{AutoReply, Bounce, Bulk, List};
use Test::{Contains, Is, IsNot, Lists, Present, StartsWith};

/// Header casegate puts on every mail it sends, so it recognises its own mail coming back.
pub const LOOP_HEADER: &str = "X-Casegate-Loop";

/// What kind of machine mail a mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineKind {
    /// Out-of-office and other automatic answers (RFC 3834).
    AutoReply,
    /// Newsletters and other bulk mail.
    Bulk,
    /// Mailing-list traffic.
    List,
    /// A delivery failure (or delay) notice.
    Bounce,
    /// Other automatic reports: delivery success, read receipts, abuse feedback.
    Report,
    /// casegate's own mail coming back, or mail claiming to be from a system address.
    Loop,
}

impl MachineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineKind::AutoReply => "auto-reply",
            MachineKind::Bulk => "bulk",
            MachineKind::List => "list",
            MachineKind::Bounce => "bounce",
            MachineKind::Report => "report",
            MachineKind::Loop => "loop",
        }
    }
}

/// Why a mail was judged to be machine mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: MachineKind,
    /// Human-readable reason naming the evidence, e.g. `Auto-Submitted: auto-replied`.
    pub reason: String,
}

/// What the classifier needs to know about this installation.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The support addresses; mail *from* one of them is a loop.
    pub system_addresses: &'a [Address],
    /// Value casegate writes into [`LOOP_HEADER`] (identifies this installation).
    pub instance_id: &'a str,
}

/// Classifies a mail; `None` means a person wrote it.
pub fn machine_mail(mail: &InboundMail, ctx: &Context<'_>) -> Option<Verdict> {
    let own_list = is_own_list(mail, ctx);
    own_loop(mail, ctx)
        .or_else(|| challenge_response(mail))
        .or_else(|| report(mail))
        .or_else(|| ses_notification(mail))
        .or_else(|| rule_verdict(mail, MachineKind::Bounce, own_list))
        .or_else(|| plain_bounce(mail))
        .or_else(|| untyped_report(mail))
        .or_else(|| rule_verdict(mail, MachineKind::AutoReply, own_list))
        .or_else(|| auto_reply_signs(mail))
        .or_else(|| rule_verdict(mail, MachineKind::List, own_list))
        .or_else(|| rule_verdict(mail, MachineKind::Bulk, own_list))
}

/// Whether casegate may send an automatic acknowledgement to this mail's sender.
///
/// `Err` names the reason when it may not: the mail is machine mail of any kind, it asks
/// not to be answered (`X-Auto-Response-Suppress: All|AutoReply|OOF`, `X-Loop`), it comes
/// from another casegate installation, or nobody would read the answer (a null return path,
/// a `noreply@`, `mailer-daemon@` or `postmaster@` sender, no sender at all). Answering
/// these is how two robots end up mailing each other forever.
pub fn auto_response_allowed(mail: &InboundMail) -> Result<(), String> {
    if let Some(value) = mail.header(LOOP_HEADER) {
        return Err(format!("{LOOP_HEADER}: {} (sent by a casegate installation)", shorten(value)));
    }
    // No installation context: the loop header was handled above, and a system address as
    // sender is the caller's to refuse (it would be a loop whatever this function says).
    let no_context = Context { system_addresses: &[], instance_id: "" };
    if let Some(verdict) = machine_mail(mail, &no_context) {
        return Err(format!("{} mail: {}", verdict.kind.as_str(), verdict.reason));
    }
    if let Some((rule, value)) = NO_AUTO_RESPONSE.iter().find_map(|r| matching_value(mail, r)) {
        return Err(rule_reason(rule, value));
    }
    let Some(from) = mail.from_address() else {
        return Err("no valid From address to answer".into());
    };
    let local = from.local_part();
    if NO_REPLY_LOCAL_PARTS.iter().any(|p| local.contains(p)) || DELIVERY_SYSTEM_LOCAL_PARTS.contains(&local) {
        return Err(format!("From: {from} (nobody reads this mailbox)"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The rule table
// ---------------------------------------------------------------------------------------

/// One piece of header evidence. Header names are matched case-insensitively; `Subject`
/// means the decoded subject. Every word in a [`Test`] is written in lower case.
struct Rule {
    header: &'static str,
    test: Test,
    kind: MachineKind,
    /// Why this is evidence; it ends up in the verdict's reason.
    why: &'static str,
}

/// How a rule looks at a header value (compared in lower case). The *token* is the value up
/// to the first `;`, `(` or space: `auto-replied; owner-email="a@b"` has token
/// `auto-replied`.
#[derive(Debug, Clone, Copy)]
enum Test {
    /// The header is there, whatever it says.
    Present,
    /// The token is one of these.
    Is(&'static [&'static str]),
    /// There is a token and it is none of these.
    IsNot(&'static [&'static str]),
    /// The value is a list (`DR, OOF, AutoReply`) naming one of these.
    Lists(&'static [&'static str]),
    /// The value contains one of these.
    Contains(&'static [&'static str]),
    /// The value starts with one of these.
    StartsWith(&'static [&'static str]),
}

/// Header evidence that settles the question on its own. Read by kind: bounce rows first,
/// then automatic replies, lists and bulk (see the module documentation for the order).
static RULES: &[Rule] = &[
    // Bounces that carry no report structure.
    Rule {
        header: "X-Failed-Recipients",
        test: Present,
        kind: Bounce,
        why: "Exim and Gmail list the recipients they could not deliver to",
    },
    // Automatic replies: RFC 3834 and the headers autoresponders used before it.
    Rule {
        header: "Auto-Submitted",
        test: IsNot(&["no"]),
        kind: AutoReply,
        why: "RFC 3834: sent by a program, not a person",
    },
    Rule { header: "Precedence", test: Is(&["auto_reply"]), kind: AutoReply, why: "marked as an automatic reply" },
    Rule { header: "X-Precedence", test: Is(&["auto_reply"]), kind: AutoReply, why: "marked as an automatic reply" },
    Rule { header: "X-Autoreply", test: Present, kind: AutoReply, why: "set by vacation programs" },
    Rule { header: "X-Autorespond", test: Present, kind: AutoReply, why: "set by autoresponders" },
    Rule { header: "X-Autoresponder", test: Present, kind: AutoReply, why: "set by autoresponders" },
    Rule { header: "X-AutoReply-From", test: Present, kind: AutoReply, why: "set by autoresponders" },
    Rule { header: "X-Mail-Autoreply", test: Present, kind: AutoReply, why: "set by autoresponders" },
    Rule { header: "X-Autogenerated", test: Is(&["reply"]), kind: AutoReply, why: "CommuniGate Pro automatic reply" },
    Rule {
        header: "X-POST-MessageClass",
        test: Contains(&["autoresponder"]),
        kind: AutoReply,
        why: "Mailtraq autoresponder",
    },
    Rule { header: "X-FC-MachineGenerated", test: Is(&["true"]), kind: AutoReply, why: "FirstClass automatic mail" },
    Rule { header: "Delivered-To", test: Is(&["autoresponder"]), kind: AutoReply, why: "qmail autoresponder" },
    Rule {
        header: "X-Mailer",
        test: Contains(&["vacation", "autoreply", "auto-reply", "autorespond", "out of office"]),
        kind: AutoReply,
        why: "written by a vacation or autoresponder program",
    },
    // Mailing lists.
    Rule { header: "List-Id", test: Present, kind: List, why: "RFC 2919: distributed by a mailing list" },
    Rule { header: "List-Post", test: Present, kind: List, why: "RFC 2369: distributed by a mailing list" },
    Rule { header: "Mailing-List", test: Present, kind: List, why: "ezmlm and Google Groups mailing list" },
    Rule { header: "X-Mailing-List", test: Present, kind: List, why: "distributed by a mailing list" },
    Rule { header: "Precedence", test: Is(&["list"]), kind: List, why: "marked as list mail" },
    // Bulk mail.
    Rule { header: "Precedence", test: Is(&["bulk", "junk"]), kind: Bulk, why: "marked as bulk mail" },
    Rule {
        header: "List-Unsubscribe",
        test: Present,
        kind: Bulk,
        why: "RFC 2369 unsubscribe link: newsletters and notifications",
    },
    Rule { header: "X-Campaign", test: Present, kind: Bulk, why: "newsletter campaign" },
    Rule { header: "X-CampaignID", test: Present, kind: Bulk, why: "newsletter campaign" },
    Rule { header: "X-Campaign-Id", test: Present, kind: Bulk, why: "newsletter campaign" },
    Rule { header: "X-Amz-Sns-Message-Id", test: Present, kind: Bulk, why: "Amazon SNS topic notification" },
];

/// Signs of an automatic reply that people's mail can carry too. Two different signs
/// together make an automatic reply; one alone decides nothing.
static AUTO_REPLY_SIGNS: &[Rule] = &[
    Rule {
        header: "Subject",
        test: StartsWith(AUTO_REPLY_SUBJECTS),
        kind: AutoReply,
        why: "a subject autoresponders write",
    },
    Rule {
        header: "Return-Path",
        test: Is(&["<>"]),
        kind: AutoReply,
        why: "null sender, as RFC 3834 asks of automatic replies",
    },
    Rule {
        header: "X-Auto-Response-Suppress",
        test: Lists(&["all", "oof", "autoreply"]),
        kind: AutoReply,
        why: "Exchange marks its automatic replies so",
    },
    Rule {
        header: "X-MS-Exchange-Inbox-Rules-Loop",
        test: Present,
        kind: AutoReply,
        why: "sent by an Exchange inbox rule",
    },
    Rule {
        header: "X-MS-Exchange-Generated-Message-Source",
        test: Present,
        kind: AutoReply,
        why: "generated by Exchange itself",
    },
];

/// Subjects that out-of-office programs put first, in the languages support desks meet
/// most. Only ever a sign, see [`AUTO_REPLY_SIGNS`].
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply:",
    "automatic response:",
    "automated reply:",
    "automated response:",
    "auto reply:",
    "auto-reply:",
    "autoreply:",
    "auto response:",
    "auto-response:",
    "autoresponse:",
    "auto:",
    "vacation reply",
    "abwesenheitsnotiz",
    "automatische antwort",
    "autosvar",
    "automatisk svar",
    "automatisch antwoord",
    "réponse automatique",
    "risposta automatica",
    "respuesta automática",
    "resposta automática",
    "automaattinen vastaus",
    "odpowiedź automatyczna",
    "automatická odpověď",
    "自動応答",
    "自动回复",
];

/// Headers by which a sender asks not to be answered automatically. Not machine evidence:
/// they only stop [`auto_response_allowed`].
static NO_AUTO_RESPONSE: &[Rule] = &[
    Rule {
        header: "X-Auto-Response-Suppress",
        test: Lists(&["all", "autoreply", "oof"]),
        kind: AutoReply,
        why: "the sender asks for no automatic replies",
    },
    Rule { header: "X-Loop", test: Present, kind: AutoReply, why: "already passed through a mail robot" },
    Rule {
        header: "Return-Path",
        test: Is(&["<>"]),
        kind: AutoReply,
        why: "null sender: an answer could not be delivered",
    },
];

/// Local parts of mailboxes that nobody reads (matched anywhere in the local part).
const NO_REPLY_LOCAL_PARTS: &[&str] =
    &["noreply", "no-reply", "no_reply", "no.reply", "donotreply", "do-not-reply", "do_not_reply", "do.not.reply"];

/// Local parts used by mail systems for their own notices (matched exactly).
const DELIVERY_SYSTEM_LOCAL_PARTS: &[&str] =
    &["mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "post_master"];

/// Headers a mailing-list manager adds to every post; ignored when the list is our own
/// support address (see the module documentation).
const LIST_MANAGER_HEADERS: &[&str] =
    &["List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailing-List", "Precedence"];

impl Test {
    /// The words the test compares against, for checking the tables themselves.
    #[cfg(test)]
    fn words(self) -> &'static [&'static str] {
        match self {
            Present => &[],
            Is(w) | IsNot(w) | Lists(w) | Contains(w) | StartsWith(w) => w,
        }
    }

    fn matches(self, value: &str) -> bool {
        let value = value.trim().to_lowercase();
        match self {
            Present => true,
            Is(words) => words.contains(&token(&value)),
            IsNot(words) => {
                let t = token(&value);
                !t.is_empty() && !words.contains(&t)
            }
            Lists(words) => value.split([',', ';', ' ']).any(|item| words.contains(&item.trim())),
            Contains(words) => words.iter().any(|w| value.contains(w)),
            StartsWith(words) => words.iter().any(|w| value.starts_with(w)),
        }
    }
}

/// The value up to the first `;`, `(` or whitespace.
fn token(value: &str) -> &str {
    value.split(|c: char| c == ';' || c == '(' || c.is_whitespace()).next().unwrap_or_default()
}

/// The first value of the rule's header that passes its test.
fn matching_value<'a>(mail: &'a InboundMail, rule: &'a Rule) -> Option<(&'a Rule, &'a str)> {
    if rule.header.eq_ignore_ascii_case("subject") {
        // The decoded subject: the raw header may be RFC 2047 encoded.
        return Some((rule, mail.subject.as_str())).filter(|(_, s)| !s.is_empty() && rule.test.matches(s));
    }
    mail.headers_named(rule.header).find(|v| rule.test.matches(v)).map(|v| (rule, v))
}

fn rule_reason(rule: &Rule, value: &str) -> String {
    format!("{}: {} ({})", rule.header, shorten(value), rule.why)
}

/// The first row of the given kind that matches.
fn rule_verdict(mail: &InboundMail, kind: MachineKind, own_list: bool) -> Option<Verdict> {
    RULES
        .iter()
        .filter(|r| r.kind == kind)
        .filter(|r| !(own_list && LIST_MANAGER_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(r.header))))
        .find_map(|r| matching_value(mail, r))
        .and_then(|(rule, value)| verdict(kind, rule_reason(rule, value)))
}

fn verdict(kind: MachineKind, reason: String) -> Option<Verdict> {
    Some(Verdict { kind, reason })
}

// ---------------------------------------------------------------------------------------
// Structural checks
// ---------------------------------------------------------------------------------------

fn own_loop(mail: &InboundMail, ctx: &Context<'_>) -> Option<Verdict> {
    // An empty id would match an empty header; an installation always has an id.
    if !ctx.instance_id.is_empty() {
        if let Some(value) = mail.headers_named(LOOP_HEADER).find(|v| v.trim() == ctx.instance_id) {
            return verdict(MachineKind::Loop, format!("{LOOP_HEADER}: {} (our own mail came back)", shorten(value)));
        }
    }
    let names_us = |v: &str| {
        let v = v.to_lowercase();
        ctx.system_addresses.iter().any(|a| v.contains(a.as_str()))
    };
    if let Some(value) = mail.headers_named("X-Loop").find(|v| names_us(v)) {
        return verdict(MachineKind::Loop, format!("X-Loop: {} (names a system address)", shorten(value)));
    }
    let from = mail.from_address()?;
    if ctx.system_addresses.contains(from) {
        return verdict(MachineKind::Loop, format!("From: {from} (a system address)"));
    }
    None
}

/// `List-Id: <support.example.com>` where support@example.com is a system address: the
/// list is the support address itself (a Google Group or Mailman list feeding casegate).
fn is_own_list(mail: &InboundMail, ctx: &Context<'_>) -> bool {
    let Some(list_id) = mail.header("List-Id") else {
        return false;
    };
    // `Support list <support.example.com>`: the id is what is inside the brackets.
    let id = list_id.rsplit_once('<').map_or(list_id, |(_, rest)| rest.trim_end_matches('>')).trim().to_lowercase();
    ctx.system_addresses.iter().any(|a| format!("{}.{}", a.local_part(), a.domain()) == id)
}

/// Headers set only by challenge-response filters.
static CHALLENGE_HEADERS: &[Rule] = &[
    Rule { header: "X-Bluebottle-Request", test: Present, kind: AutoReply, why: "Bluebottle challenge-response" },
    Rule { header: "X-Boxtrapper", test: Present, kind: AutoReply, why: "cPanel BoxTrapper challenge-response" },
    Rule { header: "X-Delivery-Agent", test: StartsWith(&["tmda"]), kind: AutoReply, why: "TMDA challenge-response" },
];

/// What challenge-response filters say. People say it too, so the body is only read when
/// the mail already looks automatic.
const CHALLENGE_WORDING: &[&str] = &[
    "sender not pre-approved",
    "verify you are human",
    "verify that you are human",
    "verify you are a human",
    "verify that you are a human",
    "prove you are human",
    "prove you are a human",
    "to complete this verification",
    "added to the recipient's allowed list",
    "on my boxbe guest list",
];

fn challenge_response(mail: &InboundMail) -> Option<Verdict> {
    if let Some((rule, value)) = CHALLENGE_HEADERS.iter().find_map(|r| matching_value(mail, r)) {
        return verdict(AutoReply, rule_reason(rule, value));
    }
    let wording = |text: &str| {
        let text = text.to_lowercase();
        CHALLENGE_WORDING.iter().find(|w| text.contains(*w)).copied()
    };
    if let Some(w) = mail.delivery_status.as_deref().and_then(wording) {
        return verdict(AutoReply, format!("challenge-response: \"{w}\" in the delivery status"));
    }
    if looks_automatic(mail) {
        if let Some(w) = wording(&mail.text) {
            return verdict(AutoReply, format!("challenge-response: \"{w}\" in the body"));
        }
    }
    None
}

/// Cheap signs that a program sent the mail, used to decide whether the body may be read.
fn looks_automatic(mail: &InboundMail) -> bool {
    mail.content_type == "multipart/report"
        || has_null_return_path(mail)
        || auto_submitted(mail).is_some()
        || mail.from_address().is_some_and(|a| NO_REPLY_LOCAL_PARTS.iter().any(|p| a.local_part().contains(p)))
}

/// The first `Auto-Submitted` value other than `no` (RFC 3834: absent means `no`).
fn auto_submitted(mail: &InboundMail) -> Option<&str> {
    mail.headers_named("Auto-Submitted").find(|v| IsNot(&["no"]).matches(v))
}

fn has_null_return_path(mail: &InboundMail) -> bool {
    mail.headers_named("Return-Path").any(|v| token(v.trim()) == "<>")
}

/// Delivery-status actions that mean the mail got through (RFC 3464 section 2.3.3).
const SUCCESS_ACTIONS: &[&str] = &["delivered", "relayed", "expanded"];

/// Content types of a delivery status part.
const STATUS_TYPES: &[&str] = &["message/delivery-status", "message/global-delivery-status"];

/// Most bytes of a status part read when it is not in a `multipart/report` (the parser
/// keeps those whole; a part of a `multipart/mixed` is an attachment of any size).
const MAX_STATUS_PART: usize = 16 * 1024;

fn report(mail: &InboundMail) -> Option<Verdict> {
    if mail.content_type != "multipart/report" {
        return status_part_outside_report(mail);
    }
    let status = mail.delivery_status.as_deref().unwrap_or_default();
    // Some MTAs fold the report-type away or forget it; the status part tells the type.
    let report_type = match mail.report_type.as_deref() {
        Some(t) => t.to_string(),
        None if !fields(status, "Action").is_empty() => "delivery-status".into(),
        None if !fields(status, "Feedback-Type").is_empty() => "feedback-report".into(),
        None if !fields(status, "Disposition").is_empty() => "disposition-notification".into(),
        // Nothing says what this report is: the evidence of a bounce is looked for first
        // (see `untyped_report`).
        None => return None,
    };
    match report_type.as_str() {
        "delivery-status" | "global-delivery-status" => {
            let (kind, what) = judge_actions(status);
            verdict(kind, format!("multipart/report ({report_type}, {what})"))
        }
        "feedback-report" | "disposition-notification" | "global-disposition-notification" => {
            let field = if report_type == "feedback-report" { "Feedback-Type" } else { "Disposition" };
            let detail = fields(status, field).first().map(|v| format!(", {v}")).unwrap_or_default();
            verdict(MachineKind::Report, format!("multipart/report ({report_type}{detail})"))
        }
        other => verdict(MachineKind::Report, format!("multipart/report ({})", shorten(other))),
    }
}

/// A delivery status part in a mail that is not a `multipart/report`: some gateways (McAfee
/// appliances among them) send the human text, the status and the returned message as a
/// `multipart/mixed`. A person who forwards such a part ("Fwd: ...") is asking about it.
fn status_part_outside_report(mail: &InboundMail) -> Option<Verdict> {
    let part = mail.attachments.iter().find(|a| STATUS_TYPES.contains(&a.content_type.as_str()))?;
    if is_reply_or_forward(&mail.subject) {
        return None;
    }
    let data = &part.data[..part.data.len().min(MAX_STATUS_PART)];
    let (kind, what) = judge_actions(&String::from_utf8_lossy(data));
    verdict(kind, format!("{} part ({what})", part.content_type))
}

/// `Bounce` unless every recipient's action is a success; and the actions, for the reason.
fn judge_actions(status: &str) -> (MachineKind, String) {
    let mut actions = fields(status, "Action");
    let mut seen = Vec::new();
    actions.retain(|a| {
        let first = !seen.contains(a);
        seen.push(a.clone());
        first
    });
    let delivered = !actions.is_empty() && actions.iter().all(|a| SUCCESS_ACTIONS.contains(&a.as_str()));
    let what =
        if actions.is_empty() { "no Action field".to_string() } else { format!("action {}", actions.join(", ")) };
    (if delivered { MachineKind::Report } else { Bounce }, what)
}

/// A `multipart/report` that says neither its type nor carries a status part, and that
/// [`plain_bounce`] did not recognise as a bounce: some automatic report.
fn untyped_report(mail: &InboundMail) -> Option<Verdict> {
    (mail.content_type == "multipart/report" && report(mail).is_none())
        .then(|| Verdict { kind: MachineKind::Report, reason: "multipart/report (no report-type)".into() })
}

/// Lower-case tokens of every `name:` field in a delivery-status or feedback part.
fn fields(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| token(v.trim()).to_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Amazon SES reports bounces, complaints and deliveries as JSON, and SNS mails them:
/// `{"notificationType":"Bounce", ...}` (`eventType` in the newer event publishing). SNS
/// topics with raw delivery off wrap that JSON as a string in their own envelope,
/// `{"Type":"Notification", "Message":"{\"notificationType\":\"Bounce\", ...}"}`, so the
/// key and its value may come with escaped quotes.
fn ses_notification(mail: &InboundMail) -> Option<Verdict> {
    mail.header("X-Amz-Sns-Message-Id")?;
    let body = mail.text.trim_start();
    if !body.starts_with('{') {
        return None;
    }
    let event = json_string_field(body, "notificationType").or_else(|| json_string_field(body, "eventType"))?;
    let kind = match event {
        "Bounce" => Bounce,
        "Complaint" | "Delivery" => MachineKind::Report,
        _ => return None,
    };
    verdict(kind, format!("Amazon SES notification ({})", shorten(event)))
}

/// The string value of the first `"key": "value"` in JSON text, quotes escaped or not.
fn json_string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let quote = |c: char| c == '"' || c == '\\';
    let mut rest = json;
    // Each pass moves past one occurrence of the key: bounded by the text's length.
    while let Some(at) = rest.find(key) {
        let before = rest[..at].trim_end_matches('\\');
        let after = &rest[at + key.len()..];
        rest = after;
        if !before.ends_with('"') {
            continue;
        }
        let Some(value) = after.trim_start_matches(quote).trim_start().strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start();
        if !value.starts_with(quote) {
            continue;
        }
        let value = value.trim_start_matches(quote);
        return value.split(quote).next();
    }
    None
}

/// Words of delivery failure (and delay) subjects, matched anywhere in the subject:
/// "Undelivered Mail Returned to Sender", "Undeliverable: ...", "Delivery Status
/// Notification (Failure)", "Mail delivery failed: returning message to sender",
/// "DELIVERY FAILURE: ...", "Returned mail: see transcript for details", "failure notice",
/// "Warning: could not send message for past 4 hours", and what Exchange and other
/// systems write in the languages support desks meet most.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "delivery status notification (failure)",
    "delivery status notification (delay)",
    "delivery notification",
    "delivery fail",
    "delivery has failed",
    "delivery problem",
    "not delivered",
    "not be delivered",
    "returned mail",
    "returned to sender",
    "non-delivery",
    "nondeliver",
    "failure notice",
    "could not send message",
    "mail system error",
    "unzustellbar",
    "nicht zustellbar",
    "non remis",
    "non distribuable",
    "no se puede entregar",
    "non recapitabile",
    "onbestelbaar",
    "não é possível entregar",
    "kan inte levereras",
    "kan ikke leveres",
    "niedostarczalne",
    "nedoručitelné",
    "недоставленное сообщение",
    "не доставлено",
    "配信不能",
    "メールエラー",
    "无法投递",
    "無法傳遞",
];

/// What mail systems write in the body of a delivery failure notice (lower case), read
/// only from mail that comes from a delivery system. Each phrase is one a person rarely
/// writes to a support desk in those words; "user unknown" and the like are the reasons
/// servers give.
const FAILURE_WORDING: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "cannot be delivered",
    "was not delivered",
    "has not been delivered",
    "undeliverable",
    "unable to deliver",
    "could not deliver",
    "delivery has failed",
    "delivery to the following recipient",
    "failed permanently",
    "permanent fatal error",
    "had delivery problems",
    "transcript of session follows",
    "user unknown",
    "unknown user",
    "no such user",
    "mailbox unavailable",
    "mailbox is full",
    "quota exceeded",
    "recipient address rejected",
    "host unknown",
    "requested action not taken",
    "konnte nicht zugestellt werden",
    "n'a pas pu être remis",
    "no se pudo entregar",
];

/// Most bytes of the body (and of parts the parser could not read as body) searched for the
/// wording of delivery failures: notices say what failed at the top, and the classifier
/// runs for every mail.
pub const MAX_BODY_SCAN: usize = 8 * 1024;

/// Prefixes of replies and forwards: mail a person wrote about a bounce.
const REPLY_PREFIXES: &[&str] = &["re:", "re :", "aw:", "sv:", "vs:", "antw:", "fwd:", "fw:", "wg:", "tr:", "rif:"];

/// The reply prefixes among [`REPLY_PREFIXES`] (the others forward).
const ANSWER_PREFIXES: &[&str] = &["re:", "re :", "aw:", "sv:", "vs:", "antw:", "rif:"];

fn is_reply_or_forward(subject: &str) -> bool {
    let subject = subject.trim().to_lowercase();
    REPLY_PREFIXES.iter().any(|p| subject.starts_with(p))
}

/// Display names mail systems sign their notices with.
const DELIVERY_SYSTEM_NAMES: &[&str] = &["mail delivery", "mail administrator"];

fn plain_bounce(mail: &InboundMail) -> Option<Verdict> {
    let from_raw = mail.header("From").unwrap_or_default();
    let from_lower = from_raw.to_lowercase();
    // Only mail systems call themselves MAILER-DAEMON (also as a display name: `MAILER-DAEMON <>`).
    if from_lower.contains("mailer-daemon")
        || mail.from_address().is_some_and(|a| matches!(a.local_part(), "mailer_daemon" | "mailerdaemon"))
    {
        return verdict(Bounce, format!("From: {}", shorten(from_raw)));
    }
    let (sender, strength) = delivery_system_evidence(mail)?;
    let subject = mail.subject.trim().to_lowercase();
    if !is_reply_or_forward(&subject) {
        if BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
            return verdict(Bounce, format!("{sender}, Subject: {}", shorten(&mail.subject)));
        }
        // A postmaster address is sometimes a person writing about mail trouble in these
        // very words; the message they returned shows it is a notice.
        if strength == Sender::Postmaster && !returns_message(mail) {
            return None;
        }
        let text = body_to_scan(mail).to_lowercase();
        let wording = FAILURE_WORDING.iter().find(|w| text.contains(*w))?;
        return verdict(Bounce, format!("{sender}, \"{wording}\" in the body"));
    }
    // A reply is a person's answer, unless it quotes nothing and what it says is a mail
    // server's error line: some carriers (Verizon's SMS gateway) bounce as a reply. People
    // answering quote what they answer.
    let answer = ANSWER_PREFIXES.iter().any(|p| subject.starts_with(p));
    if answer {
        let parts = crate::parse::reply::parts(&body_to_scan(mail));
        if parts.quoted().is_none() {
            if let Some(line) = smtp_error_line(&parts.text) {
                return verdict(Bounce, format!("{sender}, \"{}\" in a reply", shorten(line)));
            }
        }
    }
    None
}

/// How sure the sender evidence is that a mail system wrote the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// A postmaster address: the mail system's, or a person who administers it.
    Postmaster,
    /// Headers or names that only mail systems and other programs write.
    System,
}

/// Why the mail looks sent by a delivery system, if it does, and how sure that is.
fn delivery_system_evidence(mail: &InboundMail) -> Option<(String, Sender)> {
    let from_raw = mail.header("From").unwrap_or_default();
    let system = system_headers(mail);
    let from = mail.from_address();
    if from.is_some_and(|a| DELIVERY_SYSTEM_LOCAL_PARTS.contains(&a.local_part())) {
        let strength = if system.is_some() { Sender::System } else { Sender::Postmaster };
        return Some((format!("From: {}", shorten(from_raw)), strength));
    }
    if let Some(reason) = system {
        return Some((reason, Sender::System));
    }
    // A no-reply sender alone is a shop or a contact form; one that hands back a message
    // it was given is a mail system returning it.
    let from = from?;
    if NO_REPLY_LOCAL_PARTS.iter().any(|p| from.local_part().contains(p)) && returns_message(mail) {
        return Some((format!("From: {from} with the returned message attached"), Sender::System));
    }
    None
}

/// Headers and names only mail systems (and other programs) write.
fn system_headers(mail: &InboundMail) -> Option<String> {
    let from_raw = mail.header("From").unwrap_or_default();
    let from_lower = from_raw.to_lowercase();
    // `From: <>`: a notice from nobody.
    if DELIVERY_SYSTEM_NAMES.iter().any(|n| from_lower.contains(n))
        || (mail.from.is_none() && mail.header("From").is_some())
    {
        return Some(format!("From: {}", shorten(from_raw)));
    }
    if has_null_return_path(mail) {
        return Some("Return-Path: <>".to_string());
    }
    if let Some(path) = mail.headers_named("Return-Path").find(|v| v.to_lowercase().contains("mailer-daemon@")) {
        return Some(format!("Return-Path: {}", shorten(path)));
    }
    if let Some(auto) = auto_submitted(mail) {
        return Some(format!("Auto-Submitted: {}", shorten(auto)));
    }
    (mail.content_type == "multipart/report").then(|| "Content-Type: multipart/report".to_string())
}

/// Whether the mail carries a message back (whole, or its headers, RFC 3462).
fn returns_message(mail: &InboundMail) -> bool {
    mail.attachments.iter().any(|a| matches!(a.content_type.as_str(), "message/rfc822" | "text/rfc822-headers"))
}

/// The start of the readable body, for [`FAILURE_WORDING`], then the text-like parts the
/// parser kept as attachments (the plain-text status of a `multipart/mixed`, or a
/// `multipart/alternative` it could not split for lack of a boundary), never more than
/// [`MAX_BODY_SCAN`] bytes in all.
fn body_to_scan(mail: &InboundMail) -> String {
    let mut text = String::new();
    push_bounded(&mut text, &mail.text);
    let texty = |ct: &str| ct == "text/plain" || ct.starts_with("multipart/") || STATUS_TYPES.contains(&ct);
    for part in mail.attachments.iter().filter(|a| texty(&a.content_type)).take(4) {
        if text.len() >= MAX_BODY_SCAN {
            break;
        }
        let data = &part.data[..part.data.len().min(MAX_BODY_SCAN)];
        push_bounded(&mut text, &String::from_utf8_lossy(data));
    }
    text
}

/// Appends as much of `piece` as fits in [`MAX_BODY_SCAN`], cut at a character boundary.
fn push_bounded(text: &mut String, piece: &str) {
    let mut cut = piece.len().min(MAX_BODY_SCAN.saturating_sub(text.len()));
    while !piece.is_char_boundary(cut) {
        cut -= 1;
    }
    text.push_str(&piece[..cut]);
    if text.len() < MAX_BODY_SCAN {
        text.push('\n');
    }
}

/// A line of a mail server's error: a 4xx or 5xx reply code and failure wording on the same
/// line, as in "550 - Requested action not taken: no such user here".
fn smtp_error_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| {
        let has_code = line.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| {
            word.len() == 3 && matches!(word.as_bytes()[0], b'4' | b'5') && word.bytes().all(|b| b.is_ascii_digit())
        });
        has_code && {
            let lower = line.to_lowercase();
            FAILURE_WORDING.iter().any(|w| lower.contains(w))
        }
    })
}

fn auto_reply_signs(mail: &InboundMail) -> Option<Verdict> {
    let signs: Vec<String> = AUTO_REPLY_SIGNS
        .iter()
        .filter_map(|r| matching_value(mail, r))
        .map(|(rule, value)| format!("{}: {}", rule.header, shorten(value)))
        .collect();
    if signs.len() < 2 {
        return None;
    }
    verdict(AutoReply, format!("{} (together the signs of an automatic reply)", signs.join(" + ")))
}

/// Longest header value quoted in a reason.
const MAX_QUOTED: usize = 80;

/// A header value as quoted in a reason: trimmed and bounded.
fn shorten(value: &str) -> String {
    let value = value.trim();
    match value.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Most of a mail's text reduced by [`gist`]: an autoresponder's words are in its first
/// lines.
const MAX_GIST: usize = 16 * 1024;

/// A text reduced to what an autoresponder repeats: lower case, letters only (digits
/// differ from ticket to ticket), single spaces; about 16 KiB at most (a letter's lower
/// case may take a few bytes more).
pub fn gist(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_GIST));
    // A space is owed between two words; nothing before the first or after the last.
    let mut space = false;
    for c in text.chars() {
        if !c.is_alphabetic() {
            space = !out.is_empty();
            continue;
        }
        if out.len() >= MAX_GIST {
            break;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A short key of a [`gist`], stored with the case a mail opens, so that a sender who
/// keeps writing the same words is found with one lookup; `None` for a text without words.
pub fn gist_key(gist: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    (!gist.is_empty()).then(|| hex::encode(&Sha256::digest(gist.as_bytes())[..12]))
}

/// The key stored with a case a mail opens ([`gist_key`] of its words, bound to its
/// requester): the loop breaker finds a sender's cases that opened with the same words by
/// this one key, so the lookup costs the same however many cases the sender has or share
/// the words (a template many senders send).
pub fn opening_key(gist_key: &str, requester: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(gist_key.as_bytes());
    h.update(b"\n");
    h.update(requester.to_ascii_lowercase().as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// What a mail says as an autoresponder would repeat it: its [`gist`] and the gist's
/// [`gist_key`], worked out once while the mail is prepared (off the database writer).
#[derive(Debug, Clone, Default)]
pub struct Gist {
    pub words: String,
    pub key: Option<String>,
}

impl Gist {
    pub fn of(text: &str) -> Gist {
        let words = gist(text);
        let key = gist_key(&words);
        Gist { words, key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    #[test]
    fn a_gist_keeps_the_words_in_lower_case_and_is_bounded() {
        assert_eq!(gist("  Größe: 42 ÄPFEL -- ok?\r\n"), "größe äpfel ok");
        assert_eq!(gist("İ"), "i\u{307}");
        assert_eq!(gist("1 2 3"), "");
        let long = "word ".repeat(10_000) + &"x".repeat(100_000);
        let reduced = gist(&long);
        assert!(reduced.len() <= MAX_GIST + 4, "{}", reduced.len());
        assert!(reduced.starts_with("word word"));
        assert_eq!(Gist::of("Ticket 1 received").key, Gist::of("TICKET 2 RECEIVED!").key);
        assert_ne!(Gist::of("ticket received").key, Gist::of("ticket refused").key);
        assert_eq!(Gist::of("42").key, None);
    }

    const INSTANCE: &str = "inst-1";

    /// A mail from a customer to support with the given extra header lines (`\n`-separated)
    /// and body. From and Subject get ordinary defaults unless the lines set them.
    fn mail(headers: &str, body: &str) -> InboundMail {
        let has = |name: &str| headers.lines().any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")));
        let mut raw = String::new();
        if !has("from") {
            raw.push_str("From: Ann Customer <ann@customer.example>\r\n");
        }
        raw.push_str("To: support@example.com\r\nMessage-ID: <t1@customer.example>\r\n");
        if !has("subject") {
            raw.push_str("Subject: Printer on fire\r\n");
        }
        for line in headers.lines().filter(|l| !l.trim().is_empty()) {
            raw.push_str(line.trim_end());
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        raw.push_str(&body.replace('\n', "\r\n"));
        parse(raw.as_bytes()).expect("test mail parses")
    }

    fn judge(mail: &InboundMail) -> Option<Verdict> {
        let system = [Address::parse("support@example.com").expect("valid address")];
        machine_mail(mail, &Context { system_addresses: &system, instance_id: INSTANCE })
    }

    fn kind(headers: &str, body: &str) -> Option<MachineKind> {
        judge(&mail(headers, body)).map(|v| v.kind)
    }

    /// A `multipart/report` with one per-recipient block per action.
    fn report_mail(report_type: &str, status_type: &str, status: &str) -> InboundMail {
        let raw = format!(
            "From: MTA <mta@mx.example>\r\nTo: support@example.com\r\nSubject: Report\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type={report_type}; boundary=RB\r\n\r\n\
             --RB\r\nContent-Type: text/plain\r\n\r\nSee the report.\r\n\
             --RB\r\nContent-Type: {status_type}\r\n\r\n{status}\r\n\
             --RB--\r\n"
        );
        parse(raw.as_bytes()).expect("report parses")
    }

    fn dsn(actions: &[&str]) -> InboundMail {
        let mut status = String::from("Reporting-MTA: dns; mx.example\r\n");
        for (i, action) in actions.iter().enumerate() {
            status.push_str(&format!(
                "\r\nFinal-Recipient: rfc822; r{i}@customer.example\r\nAction: {action}\r\nStatus: 5.1.1\r\n"
            ));
        }
        report_mail("delivery-status", "message/delivery-status", &status)
    }

    // ---- The rule table: one case per row; removing a row makes its case fail. ----

    const RULE_CASES: &[(&str, MachineKind)] = &[
        ("X-Failed-Recipients: gone@customer.example", Bounce),
        ("Auto-Submitted: auto-replied", AutoReply),
        ("Auto-Submitted: auto-generated", AutoReply),
        ("Auto-Submitted: auto-notified", AutoReply),
        ("Precedence: auto_reply", AutoReply),
        ("X-Precedence: auto_reply", AutoReply),
        ("X-Autoreply: yes", AutoReply),
        ("X-Autorespond: on", AutoReply),
        ("X-Autoresponder: on", AutoReply),
        ("X-AutoReply-From: ann@customer.example", AutoReply),
        ("X-Mail-Autoreply: ann@customer.example", AutoReply),
        ("X-Autogenerated: Reply", AutoReply),
        ("X-POST-MessageClass: 9; Autoresponder", AutoReply),
        ("X-FC-MachineGenerated: true", AutoReply),
        ("Delivered-To: Autoresponder", AutoReply),
        ("X-Mailer: Unix Vacation 1.2", AutoReply),
        ("X-Mailer: Out of Office Assistant", AutoReply),
        ("List-Id: Users <users.lists.example.org>", List),
        ("List-Post: <mailto:users@lists.example.org>", List),
        ("Mailing-List: list users@lists.example.org; contact users-owner@lists.example.org", List),
        ("X-Mailing-List: users@lists.example.org", List),
        ("Precedence: list", List),
        ("Precedence: bulk", Bulk),
        ("Precedence: junk", Bulk),
        ("List-Unsubscribe: <https://news.example.com/u/1>", Bulk),
        ("X-Campaign: spring-sale", Bulk),
        ("X-CampaignID: spring-sale", Bulk),
        ("X-Campaign-Id: 42", Bulk),
        ("X-Amz-Sns-Message-Id: c1333a2d-d9a6-5a1c-bdcd-6a9c436bcaae", Bulk),
    ];

    fn header_of(line: &str) -> &str {
        line.split_once(':').map(|(h, _)| h).unwrap_or(line)
    }

    #[test]
    fn each_rule_case_is_judged_by_its_own_header() {
        for (line, expected) in RULE_CASES {
            let verdict = judge(&mail(line, "Hello")).unwrap_or_else(|| panic!("{line:?} was taken for a person"));
            assert_eq!(verdict.kind, *expected, "{line:?}: {}", verdict.reason);
            let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or_default();
            assert!(
                verdict.reason.starts_with(&format!("{}: {value} (", header_of(line))),
                "{line:?} gave reason {:?}",
                verdict.reason
            );
        }
    }

    #[test]
    fn every_rule_row_has_a_case() {
        for rule in RULES {
            let covered = RULE_CASES.iter().any(|(line, kind)| {
                *kind == rule.kind
                    && header_of(line) == rule.header
                    && rule.test.matches(line.split_once(':').map(|(_, v)| v).unwrap_or_default())
            });
            assert!(covered, "RULES row for {} has no case", rule.header);
        }
    }

    #[test]
    fn table_words_are_lower_case_because_values_are_compared_in_lower_case() {
        let tables = [RULES, AUTO_REPLY_SIGNS, NO_AUTO_RESPONSE, CHALLENGE_HEADERS];
        let rule_words = tables.iter().flat_map(|t| t.iter()).flat_map(|r| r.test.words().iter());
        let lists = [
            AUTO_REPLY_SUBJECTS,
            BOUNCE_SUBJECTS,
            REPLY_PREFIXES,
            ANSWER_PREFIXES,
            CHALLENGE_WORDING,
            FAILURE_WORDING,
            DELIVERY_SYSTEM_NAMES,
            NO_REPLY_LOCAL_PARTS,
            DELIVERY_SYSTEM_LOCAL_PARTS,
            SUCCESS_ACTIONS,
        ];
        for word in rule_words.chain(lists.iter().flat_map(|l| l.iter())) {
            assert_eq!(*word, word.to_lowercase(), "{word:?} could never match");
        }
    }

    // ---- People's mail stays people's mail. ----

    #[test]
    fn a_person_writing_about_out_of_office_bounces_and_auto_replies_is_a_person() {
        let body = "Hi, I was out of office last week. My mail to Bob was undelivered and\n\
                    came back as 'Undelivered Mail Returned to Sender'; his auto-reply said\n\
                    to verify you are human. Automatic reply: nothing since. Mail delivery failed?";
        for subject in [
            "Printer on fire",
            "Re: Out of Office: back Monday",
            "Re: Undeliverable: your invoice",
            "Fwd: Mail delivery failed",
            "My auto-reply is broken",
        ] {
            let m = mail(&format!("Subject: {subject}"), body);
            assert_eq!(judge(&m), None, "subject {subject:?}");
            assert_eq!(auto_response_allowed(&m), Ok(()), "subject {subject:?}");
        }
    }

    #[test]
    fn auto_submitted_no_is_a_person() {
        assert_eq!(kind("Auto-Submitted: no", "Hello"), None);
        assert_eq!(kind("Auto-Submitted: No (written by hand)", "Hello"), None);
        assert_eq!(kind("Auto-Submitted:", "Hello"), None);
    }

    #[test]
    fn an_out_of_office_subject_alone_is_not_enough() {
        // zammad's oo-02-zimbra-regular: a Zimbra user's ordinary mail.
        assert_eq!(kind("X-Mailer: Zimbra 7.1.3_GA_3346\nSubject: Lorem ipsum", "x"), None);
        for subject in [
            "Out of Office: back on Monday",
            "Automatic reply: Printer on fire",
            "Autosvar: Printer on fire",
            "Abwesenheitsnotiz: Printer on fire",
            "Réponse automatique : Printer on fire",
        ] {
            let alone = format!("Subject: {subject}");
            assert_eq!(kind(&alone, "I am away."), None, "{subject:?} alone");
            let with_null_sender = format!("{alone}\nReturn-Path: <>");
            assert_eq!(kind(&with_null_sender, "I am away."), Some(AutoReply), "{subject:?} with a null return path");
        }
    }

    const SIGN_CASES: &[&str] = &[
        "Subject: Out of Office: back on Monday",
        "Return-Path: <>",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: ann@customer.example",
        "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
    ];

    #[test]
    fn one_auto_reply_sign_is_not_enough_but_any_two_are() {
        for (i, a) in SIGN_CASES.iter().enumerate() {
            assert_eq!(kind(a, "x"), None, "{a:?} alone");
            for b in &SIGN_CASES[i + 1..] {
                let v = judge(&mail(&format!("{a}\n{b}"), "x"))
                    .unwrap_or_else(|| panic!("{a:?} + {b:?} taken for a person"));
                assert_eq!(v.kind, AutoReply, "{a:?} + {b:?}");
                assert!(v.reason.contains(header_of(a)) && v.reason.contains(header_of(b)), "{}", v.reason);
            }
        }
        for sign in AUTO_REPLY_SIGNS {
            assert!(SIGN_CASES.iter().any(|c| header_of(c) == sign.header), "sign {} has no case", sign.header);
        }
    }

    #[test]
    fn exchange_out_of_office_without_an_auto_reply_header_is_an_auto_reply() {
        // zammad's oo-04-exchange-autoreply: Exchange marks its replies only this way.
        let v = judge(&mail(
            "X-MS-Has-Attach:\nX-Auto-Response-Suppress: All\n\
             X-MS-Exchange-Inbox-Rules-Loop: aaa.bbb@example.com\nX-MS-TNEF-Correlator:",
            "Some Text",
        ))
        .expect("machine mail");
        assert_eq!(v.kind, AutoReply);
        assert_eq!(
            v.reason,
            "X-Auto-Response-Suppress: All + X-MS-Exchange-Inbox-Rules-Loop: aaa.bbb@example.com \
             (together the signs of an automatic reply)"
        );
    }

    // ---- Loops ----

    #[test]
    fn our_own_loop_header_is_a_loop_and_another_installations_is_not() {
        let v = judge(&mail(&format!("{LOOP_HEADER}: {INSTANCE}"), "x")).expect("loop");
        assert_eq!(v.kind, MachineKind::Loop);
        assert!(v.reason.starts_with("X-Casegate-Loop: inst-1"), "{}", v.reason);
        assert_eq!(kind(&format!("{LOOP_HEADER}: other-company"), "x"), None);
    }

    #[test]
    fn an_x_loop_naming_a_system_address_is_a_loop_and_another_is_only_not_answered() {
        let v = judge(&mail("X-Loop: Support@Example.com", "x")).expect("loop");
        assert_eq!(
            (v.kind, v.reason.as_str()),
            (MachineKind::Loop, "X-Loop: Support@Example.com (names a system address)")
        );
        let other = mail("X-Loop: helpdesk@customer.example", "x");
        assert_eq!(judge(&other), None);
        assert!(auto_response_allowed(&other).is_err());
    }

    #[test]
    fn mail_from_a_system_address_is_a_loop() {
        let v = judge(&mail("From: Support <SUPPORT@Example.com>", "x")).expect("loop");
        assert_eq!(v.kind, MachineKind::Loop);
        assert_eq!(v.reason, "From: support@example.com (a system address)");
    }

    #[test]
    fn a_loop_wins_over_every_other_kind() {
        let headers = format!("{LOOP_HEADER}: {INSTANCE}\nAuto-Submitted: auto-replied\nPrecedence: bulk");
        assert_eq!(kind(&headers, "x"), Some(MachineKind::Loop));
    }

    // ---- Reports and bounces ----

    #[test]
    fn a_failed_delivery_status_report_is_a_bounce() {
        let v = judge(&dsn(&["failed"])).expect("machine mail");
        assert_eq!(v.kind, Bounce);
        assert_eq!(v.reason, "multipart/report (delivery-status, action failed)");
        assert_eq!(judge(&dsn(&["delayed"])).unwrap().kind, Bounce);
        assert_eq!(judge(&dsn(&["delivered", "failed"])).unwrap().kind, Bounce);
    }

    #[test]
    fn a_delivery_status_report_where_everything_arrived_is_a_report() {
        let v = judge(&dsn(&["delivered"])).expect("machine mail");
        assert_eq!(v.kind, MachineKind::Report);
        assert_eq!(v.reason, "multipart/report (delivery-status, action delivered)");
        let v = judge(&dsn(&["relayed", "expanded", "relayed"])).unwrap();
        assert_eq!(v.kind, MachineKind::Report);
        assert_eq!(v.reason, "multipart/report (delivery-status, action relayed, expanded)");
    }

    #[test]
    fn abuse_reports_and_read_receipts_are_reports() {
        let arf = report_mail(
            "feedback-report",
            "message/feedback-report",
            "Feedback-Type: abuse\r\nUser-Agent: SomeISP/1.0\r\nVersion: 1",
        );
        let v = judge(&arf).expect("machine mail");
        assert_eq!((v.kind, v.reason.as_str()), (MachineKind::Report, "multipart/report (feedback-report, abuse)"));
        let mdn = report_mail(
            "disposition-notification",
            "message/disposition-notification",
            "Final-Recipient: rfc822; ann@customer.example\r\n\
             Disposition: manual-action/MDN-sent-manually; displayed",
        );
        let v = judge(&mdn).expect("machine mail");
        assert_eq!(v.kind, MachineKind::Report);
        assert!(v.reason.starts_with("multipart/report (disposition-notification"));
    }

    #[test]
    fn a_forwarded_bounce_is_a_person_asking_about_it() {
        let raw = "From: Ann Customer <ann@customer.example>\r\nTo: support@example.com\r\n\
                   Subject: Fwd: Undelivered Mail Returned to Sender\r\n\
                   Content-Type: multipart/mixed; boundary=B\r\n\r\n\
                   --B\r\nContent-Type: text/plain\r\n\r\nWhy did this bounce?\r\n\
                   --B\r\nContent-Type: message/rfc822\r\n\r\n\
                   From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
                   Auto-Submitted: auto-replied\r\n\r\nIt failed.\r\n--B--\r\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(judge(&m), None);
    }

    #[test]
    fn a_bounce_wins_over_its_auto_submitted_header() {
        let v = judge(&mail(
            "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nAuto-Submitted: auto-replied\n\
             Subject: Undelivered Mail Returned to Sender",
            "I'm sorry to have to inform you...",
        ))
        .unwrap();
        assert_eq!(v.kind, Bounce);
        assert_eq!(v.reason, "From: Mail Delivery System <MAILER-DAEMON@mx.example>");
    }

    #[test]
    fn bounce_subjects_count_only_from_a_delivery_system() {
        let cases = [
            (
                "From: postmaster@customer.example\nSubject: Undeliverable: Printer on fire",
                Some("From: postmaster@customer.example, Subject: Undeliverable: Printer on fire"),
            ),
            (
                "From: Mail Delivery Subsystem <mds@mx.example>\nSubject: Delivery Status Notification (Failure)",
                Some("From: Mail Delivery Subsystem <mds@mx.example>, Subject: Delivery Status Notification (Failure)"),
            ),
            (
                "Return-Path: <>\nFrom: mx@customer.example\nSubject: Mail delivery failed: returning message to sender",
                Some("Return-Path: <>, Subject: Mail delivery failed: returning message to sender"),
            ),
            (
                "Auto-Submitted: auto-generated (failure)\nSubject: Returned mail: see transcript for details",
                Some("Auto-Submitted: auto-generated (failure), Subject: Returned mail: see transcript for details"),
            ),
            (
                "From: MAILER-DAEMON@mx.example\nSubject: Warning: could not send message for past 4 hours",
                Some("From: MAILER-DAEMON@mx.example"),
            ),
            // A postmaster is a person too when the subject says nothing of a failure...
            ("From: postmaster@customer.example\nSubject: Our new MX", None),
            // ...or when it answers about one.
            ("From: postmaster@customer.example\nSubject: RE: Undeliverable: invoice", None),
            // And a customer's subject alone proves nothing.
            ("Subject: Returned mail", None),
        ];
        for (headers, reason) in cases {
            let v = judge(&mail(headers, "text"));
            assert_eq!(v.as_ref().map(|v| v.kind), reason.map(|_| Bounce), "{headers:?}");
            assert_eq!(v.map(|v| v.reason).as_deref(), reason, "{headers:?}");
        }
    }

    /// Real subjects of delivery failure notices; every word of [`BOUNCE_SUBJECTS`] must be
    /// needed by one of them.
    const BOUNCE_SUBJECT_CASES: &[&str] = &[
        "Undelivered Mail Returned to Sender",
        "Undeliverable: Printer on fire",
        "Delivery Status Notification (Failure)",
        "Delivery Status Notification (Delay)",
        "Delivery Notification: Delivery has failed",
        "Mail delivery failed: returning message to sender",
        "DELIVERY FAILURE: User ann not listed in Domino Directory",
        "Message delivery has failed",
        "Delivery problem (retrying)",
        "Message not delivered",
        "Returned mail: see transcript for details",
        "Returned to sender",
        "Non-delivery report",
        "Nondeliverable mail",
        "failure notice",
        "Warning: could not send message for past 4 hours",
        "Mail System Error - Returned Mail",
        "Mail could not be delivered",
        "Unzustellbar: Drucker brennt",
        "Nachricht nicht zustellbar",
        "Non remis : Imprimante en feu",
        "Message non distribuable",
        "No se puede entregar: Impresora",
        "Non recapitabile: Stampante",
        "Onbestelbaar: Printer",
        "Não é possível entregar: Impressora",
        "Meddelandet kan inte levereras",
        "Meldingen kan ikke leveres",
        "Niedostarczalne: Drukarka",
        "Nedoručitelné: Tiskárna",
        "Недоставленное сообщение",
        "Ваше сообщение не доставлено",
        "配信不能: プリンター",
        "メールエラー通知",
        "无法投递: 打印机",
        "無法傳遞: 印表機",
    ];

    #[test]
    fn delivery_failure_subjects_from_a_postmaster_are_bounces() {
        for subject in BOUNCE_SUBJECT_CASES {
            let headers = format!("From: postmaster@mx.example\nSubject: {subject}");
            assert_eq!(kind(&headers, "x"), Some(Bounce), "{subject:?}");
        }
        for word in BOUNCE_SUBJECTS {
            assert!(BOUNCE_SUBJECT_CASES.iter().any(|s| s.to_lowercase().contains(word)), "no case needs {word:?}");
        }
    }

    #[test]
    fn every_auto_reply_subject_is_a_sign() {
        for prefix in AUTO_REPLY_SUBJECTS {
            // Capitalised as programs write them; matching ignores case.
            let mut chars = prefix.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
            let subject = format!("{}{} Printer on fire", first.unwrap_or_default(), chars.as_str());
            let headers = format!("Subject: {subject}\nReturn-Path: <>");
            assert_eq!(kind(&headers, "Away."), Some(AutoReply), "{subject:?}");
        }
    }

    /// A `multipart/mixed` of the given parts (content type, body), with the given headers.
    fn mixed(headers: &str, parts: &[(&str, &str)]) -> InboundMail {
        let mut raw = format!("{headers}\nTo: support@example.com\nMIME-Version: 1.0\n");
        raw.push_str("Content-Type: multipart/mixed; boundary=MB\n\n");
        for (content_type, body) in parts {
            raw.push_str(&format!("--MB\nContent-Type: {content_type}\n\n{body}\n"));
        }
        raw.push_str("--MB--\n");
        parse(raw.replace('\n', "\r\n").as_bytes()).expect("test mail parses")
    }

    const RETURNED: (&str, &str) =
        ("message/rfc822", "From: ann@customer.example\nTo: gone@x.example\nSubject: Invoice\n\nHello");

    #[test]
    fn a_delivery_status_part_outside_a_report_is_judged_by_its_actions() {
        // McAfee's gateway: text, status and the returned message in a multipart/mixed.
        let from = "From: <postmaster@customer.example>\nSubject: Delivery Status";
        let status = |action: &str| format!("Original-Recipient: <gone@customer.example>\nAction: {action}\n");
        let failed = mixed(
            from,
            &[
                ("text/plain", "The following addresses had delivery problems"),
                ("message/delivery-status", &status("failed")),
                RETURNED,
            ],
        );
        let v = judge(&failed).unwrap();
        assert_eq!((v.kind, v.reason.as_str()), (Bounce, "message/delivery-status part (action failed)"));
        let delivered = mixed(from, &[("text/plain", "Delivered."), ("message/delivery-status", &status("delivered"))]);
        assert_eq!(judge(&delivered).map(|v| v.kind), Some(MachineKind::Report));
        // A person forwarding the status part asks about it.
        let forward = mixed(
            "From: Ann <ann@customer.example>\nSubject: Fwd: Delivery Status",
            &[("text/plain", "What does this mean?"), ("message/delivery-status", &status("failed"))],
        );
        assert_eq!(judge(&forward), None);
    }

    #[test]
    fn a_report_without_type_or_status_is_a_bounce_when_it_says_so() {
        let report = |from: &str, text: &str| {
            let raw = format!(
                "{from}\r\nTo: support@example.com\r\nSubject: Delivery status notification\r\n\
                 Content-Type: multipart/report; boundary=RB\r\n\r\n\
                 --RB\r\nContent-Type: text/plain\r\n\r\n{text}\r\n\
                 --RB\r\nContent-Type: message/rfc822\r\n\r\nSubject: Invoice\r\n\r\nHello\r\n--RB--\r\n"
            );
            judge(&parse(raw.as_bytes()).unwrap()).unwrap()
        };
        let v = report(
            "From: Mail Delivery System <mds@mx.example>",
            "Delivery to the following recipients failed permanently:\r\n\r\n   * gone@customer.example",
        );
        assert_eq!(
            (v.kind, v.reason.as_str()),
            (
                Bounce,
                "From: Mail Delivery System <mds@mx.example>, \"delivery to the following recipient\" in the body"
            )
        );
        let v = report("From: Reports <reports@mx.example>", "Your weekly summary.");
        assert_eq!((v.kind, v.reason.as_str()), (MachineKind::Report, "multipart/report (no report-type)"));
    }

    /// Bodies of real notices without report structure; every phrase of [`FAILURE_WORDING`]
    /// must be needed by one of them.
    const FAILURE_WORDING_CASES: &[&str] = &[
        "Your mail sent on: Thu, 29 Apr 2013\n     Could not be delivered to: <gone@x.example>",
        "Your message couldn't be delivered to gone@x.example.",
        "This message cannot be delivered to some recipients.",
        "Your message was not delivered to gone@x.example because the address is wrong.",
        "Your message has not been delivered yet; we keep trying.",
        "Your message is undeliverable.",
        "Unable to deliver message to <gone@x.example> (and other recipients in the same domain).",
        "We could not deliver your message to gone@x.example.",
        "Delivery has failed to these recipients or groups:",
        "Delevery to the following recipients failed permanently:",
        "Delivery to the following recipient failed permanently:\n\n     gone@x.example",
        "----- The following addresses had permanent fatal errors -----",
        "    --- The following addresses had delivery problems ---",
        "   ----- Transcript of session follows -----",
        "<gone@x.example>... User unknown",
        "550 5.1.1 Unknown user: gone",
        "SMTP:RCPT host 192.0.2.233: 553 5.3.0 <gone@x.example>... No such user here",
        "550 Requested action not taken: mailbox unavailable",
        "The recipient's mailbox is full and can't accept messages now.",
        "Quota exceeded for gone@x.example",
        "550 5.1.1 <gone@x.example>: Recipient address rejected: User unknown in local table",
        "Host unknown (Name server: x.example: host not found)",
        "550 - Requested action not taken: no such user here",
        "Ihre Nachricht konnte nicht zugestellt werden.",
        "Votre message n'a pas pu être remis à gone@x.example.",
        "Su mensaje no se pudo entregar a gone@x.example.",
    ];

    #[test]
    fn failure_wording_counts_from_a_delivery_system_only() {
        for body in FAILURE_WORDING_CASES {
            let v = judge(&mail("From: Mail Delivery System <mds@mx.example>\nSubject: Notice", body));
            assert_eq!(v.map(|v| v.kind), Some(Bounce), "{body:?}");
            // The same words from a customer are a customer's words.
            assert_eq!(kind("Subject: Notice", body), None, "{body:?}");
        }
        for word in FAILURE_WORDING {
            assert!(FAILURE_WORDING_CASES.iter().any(|c| c.to_lowercase().contains(word)), "no case needs {word:?}");
        }
        // Other signs of a delivery system than its name.
        for headers in ["Return-Path: <>", "Return-Path: <MAILER-DAEMON@mx.example>", "Auto-Submitted: auto-replied"] {
            let v = judge(&mail(&format!("{headers}\nSubject: Notice"), "Your message could not be delivered."));
            assert_eq!(v.map(|v| v.kind), Some(Bounce), "{headers}");
        }
    }

    #[test]
    fn a_postmaster_writing_about_mail_trouble_is_a_person_unless_a_message_comes_back() {
        let from = "From: Bob <postmaster@customer.example>\nSubject: Our mail server";
        let text = "Since Monday mail from you could not be delivered to us: user unknown. Can you check?";
        assert_eq!(kind(from, text), None);
        let notice = mixed(from, &[("text/plain", text), RETURNED]);
        let v = judge(&notice).unwrap();
        assert_eq!(
            (v.kind, v.reason.as_str()),
            (Bounce, "From: Bob <postmaster@customer.example>, \"could not be delivered\" in the body")
        );
    }

    #[test]
    fn a_no_reply_sender_is_a_delivery_system_only_when_it_returns_the_message() {
        // A shop's parcel notice says the same words and must still reach a case.
        let from = "From: Shop <noreply@shop.example>\nSubject: Your parcel";
        let text = "Your parcel could not be delivered. We will try again tomorrow.";
        assert_eq!(kind(from, text), None);
        // A Japanese carrier's notice: no report, a no-reply sender, the mail handed back.
        let notice = mixed(
            "From: no-reply@mail.carrier.example\nSubject: Notice",
            &[("text/plain", "Could not be delivered to: <gone@carrier.example>\nAs their mailbox is full."), RETURNED],
        );
        let v = judge(&notice).unwrap();
        assert_eq!(v.kind, Bounce);
        assert_eq!(v.reason, "From: no-reply@mail.carrier.example with the returned message attached, \"could not be delivered\" in the body");
    }

    #[test]
    fn a_reply_from_a_postmaster_is_a_bounce_only_when_it_is_a_server_error() {
        // Verizon's gateway answers an undeliverable message as a reply to it.
        let from = "From: post_master@sms.carrier.example\nSubject: Re:Printer on fire";
        let error =
            "Error: Invalid user address\n\nError message below:\n550 - Requested action not taken: no such user here";
        let v = judge(&mail(from, error)).unwrap();
        assert_eq!(v.kind, Bounce);
        assert!(
            v.reason.ends_with("\"550 - Requested action not taken: no such user here\" in a reply"),
            "{}",
            v.reason
        );
        // A postmaster answering a customer quotes what they answer.
        let answer = format!("{error}\n\nOn Mon, 2 Apr 2012 at 18:26, Ann <ann@customer.example> wrote:\n> Why?");
        assert_eq!(kind(from, &answer), None);
        assert!(ANSWER_PREFIXES.iter().all(|p| REPLY_PREFIXES.contains(p)), "answers are replies");
        // A forward is a person's, whatever it carries.
        assert_eq!(kind("From: postmaster@customer.example\nSubject: Fwd: Printer on fire", error), None);
    }

    #[test]
    fn a_bounce_wins_over_list_and_bulk_headers() {
        // A list relaying a bounce to its members (ezmlm adds Mailing-List).
        let relayed = "From: postmaster@mx.example\nSubject: Mail could not be delivered\n\
                       Mailing-List: contact users-help@lists.example.org; run by ezmlm";
        assert_eq!(kind(relayed, "Unable to deliver message to <gone@x.example>."), Some(Bounce));
    }

    #[test]
    fn the_body_is_read_only_up_to_its_bound() {
        let from = "From: Mail Delivery System <mds@mx.example>\nSubject: Notice";
        let late = format!("{}\nYour message could not be delivered.", "Status report.\n".repeat(MAX_BODY_SCAN / 14));
        assert_eq!(kind(from, &late), None);
        let early = format!("Your message could not be delivered.\n{}", "Status report.\n".repeat(MAX_BODY_SCAN));
        assert_eq!(kind(from, &early), Some(Bounce));
        // A cut inside a multi-byte character does not panic.
        let wide = format!("x{}", "é".repeat(MAX_BODY_SCAN));
        assert_eq!(kind(from, &wide), None);
    }

    // ---- Challenge-response ----

    #[test]
    fn challenge_response_is_an_auto_reply_never_a_bounce() {
        for header in ["X-Bluebottle-Request: <1234>", "X-Boxtrapper: yes", "X-Delivery-Agent: TMDA/1.1.12 (Macallan)"]
        {
            let v = judge(&mail(header, "Click the link to be added.")).unwrap();
            assert_eq!(v.kind, AutoReply, "{header}");
            assert!(v.reason.contains("challenge-response"), "{}", v.reason);
        }
        // Boxbe sends its challenge as a failed delivery-status report.
        let boxbe = dsn(&["failed"]);
        let mut boxbe_status = boxbe.clone();
        boxbe_status.delivery_status =
            Some("Action: failed\r\nDiagnostic-Code: X-Boxbe-Notice; Sender not pre-approved.\r\n".into());
        let v = judge(&boxbe_status).unwrap();
        assert_eq!(v.kind, AutoReply);
        assert_eq!(v.reason, "challenge-response: \"sender not pre-approved\" in the delivery status");
        let v = judge(&mail(
            "Return-Path: <>\nSubject: Please confirm your message",
            "Please verify you are human by following this link.",
        ))
        .unwrap();
        assert_eq!(v.kind, AutoReply);
        // The same words from a person are just words.
        assert_eq!(kind("", "Our captcha asks users to verify you are human. Broken?"), None);
    }

    // ---- Amazon SES through SNS ----

    #[test]
    fn ses_notifications_are_judged_by_their_type() {
        let sns = "X-Amz-Sns-Message-Id: c1333a2d\nFrom: SES <no-reply@sns.amazonaws.com>";
        let body = |t: &str| format!("{{\"notificationType\": \"{t}\",\"mail\":{{}}}}\n--\nunsubscribe");
        let v = judge(&mail(sns, &body("Bounce"))).unwrap();
        assert_eq!((v.kind, v.reason.as_str()), (Bounce, "Amazon SES notification (Bounce)"));
        assert_eq!(kind(sns, &body("Complaint")), Some(MachineKind::Report));
        assert_eq!(kind(sns, &body("Delivery")), Some(MachineKind::Report));
        // Any other SNS topic: a subscription, bulk.
        assert_eq!(kind(sns, "Your alarm fired."), Some(Bulk));
    }

    #[test]
    fn ses_events_wrapped_in_an_sns_envelope_are_judged_by_their_type() {
        let sns = "X-Amz-Sns-Message-Id: 02f86d9b\nFrom: SES <no-reply@sns.amazonaws.com>";
        let envelope = |t: &str| {
            format!(
                "{{\n  \"Type\" : \"Notification\",\n  \"Message\" : \"{{\\\"notificationType\\\":\\\"{t}\\\",\
                 \\\"bounce\\\":{{}}}}\",\n  \"UnsubscribeURL\" : \"https://sns.example/?Action=Unsubscribe\"\n}}"
            )
        };
        let v = judge(&mail(sns, &envelope("Bounce"))).unwrap();
        assert_eq!((v.kind, v.reason.as_str()), (Bounce, "Amazon SES notification (Bounce)"));
        assert_eq!(kind(sns, &envelope("Delivery")), Some(MachineKind::Report));
        // A key that is only a value elsewhere ("notificationType" as text) is no event.
        assert_eq!(json_string_field(r#"{"note": "notificationType", "x": 1}"#, "notificationType"), None);
        assert_eq!(json_string_field(r#"{"eventType" : "Bounce"}"#, "eventType"), Some("Bounce"));
    }

    // ---- Lists ----

    #[test]
    fn list_headers_of_our_own_support_list_do_not_hide_customers() {
        let group = "List-Id: <support.example.com>\nList-Post: <mailto:support@example.com>\n\
                     List-Unsubscribe: <mailto:support+unsubscribe@example.com>\n\
                     Mailing-List: list support@example.com\nPrecedence: list";
        assert_eq!(kind(group, "My printer is on fire"), None);
        // Real evidence still counts inside our own list.
        let auto = format!("{group}\nAuto-Submitted: auto-replied");
        assert_eq!(kind(&auto, "Away"), Some(AutoReply));
        // Somebody else's list is a list.
        assert_eq!(kind("List-Id: Users <users.lists.example.org>", "x"), Some(List));
    }

    #[test]
    fn kinds_take_precedence_in_documented_order() {
        assert_eq!(kind("Auto-Submitted: auto-replied\nList-Id: <users.lists.example.org>", "x"), Some(AutoReply));
        assert_eq!(kind("List-Id: <users.lists.example.org>\nPrecedence: bulk", "x"), Some(List));
        assert_eq!(kind("X-Failed-Recipients: a@b.example\nAuto-Submitted: auto-replied", "x"), Some(Bounce));
    }

    // ---- auto_response_allowed ----

    #[test]
    fn a_person_may_be_acknowledged() {
        assert_eq!(auto_response_allowed(&mail("", "Hello")), Ok(()));
        assert_eq!(auto_response_allowed(&mail("X-Auto-Response-Suppress: DR, RN, NRN", "Hello")), Ok(()));
        // Another installation's agents write to us: not a loop, but never acknowledged.
        assert_eq!(kind(&format!("{LOOP_HEADER}: other"), "x"), None);
        assert!(auto_response_allowed(&mail(&format!("{LOOP_HEADER}: other"), "x")).is_err());
    }

    #[test]
    fn no_acknowledgement_for_robots_or_those_who_ask_not_to_get_one() {
        let refused = [
            ("X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress: All"),
            ("X-Auto-Response-Suppress: OOF, AutoReply", "X-Auto-Response-Suppress: OOF"),
            ("X-Auto-Response-Suppress: AutoReply", "X-Auto-Response-Suppress: AutoReply"),
            ("X-Loop: support@customer.example", "X-Loop: support@customer.example"),
            ("Return-Path: <>", "Return-Path: <>"),
            ("Precedence: bulk", "bulk mail: Precedence: bulk"),
            ("Precedence: list", "list mail: Precedence: list"),
            ("Precedence: junk", "bulk mail: Precedence: junk"),
            ("Auto-Submitted: auto-generated", "auto-reply mail: Auto-Submitted"),
            ("From: noreply@shop.example", "From: noreply@shop.example"),
            ("From: Shop <No-Reply@shop.example>", "From: no-reply@shop.example"),
            ("From: do-not-reply@shop.example", "From: do-not-reply@shop.example"),
            ("From: postmaster@customer.example", "From: postmaster@customer.example"),
            ("From: mailer-daemon@mx.example", "bounce mail: From: mailer-daemon@mx.example"),
            ("From: Nobody <>", "no valid From address"),
        ];
        for (headers, reason) in refused {
            let verdict = auto_response_allowed(&mail(headers, "Hello"));
            let why = verdict.expect_err(headers);
            assert!(why.starts_with(reason), "{headers:?} refused with {why:?}");
        }
        for rule in NO_AUTO_RESPONSE {
            assert!(
                refused.iter().any(|(h, _)| header_of(h) == rule.header),
                "NO_AUTO_RESPONSE row {} has no case",
                rule.header
            );
        }
    }

    #[test]
    fn contact_form_mail_from_noreply_still_opens_a_case() {
        let form = "From: Website <noreply@customer.example>\nReply-To: Bob <bob@home.example>";
        assert_eq!(kind(form, "Name: Bob\nMessage: my printer is on fire"), None);
    }

    #[test]
    fn reasons_quote_long_values_bounded() {
        let long = format!("List-Unsubscribe: <https://news.example.com/{}>", "é".repeat(200));
        let v = judge(&mail(&long, "x")).unwrap();
        assert!(v.reason.contains('…') && v.reason.chars().count() < 200, "{}", v.reason);
    }
}
