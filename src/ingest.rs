//! The one path every mail takes — from the daemon's mailboxes, from `casegate ingest`,
//! and again when a quarantined mail is released:
//!
//! ```text
//! raw bytes ─ seen before? (source position, then Message-ID or content hash) ─▶ duplicate
//!           ─ parse (bounded, panic-proof) ──────────────────────────────────▶ quarantine
//!           ─ classify: machine mail? ─── on a case ▶ thread entry `auto` │ else ▶ ignored
//!           ─ route: token │ In-Reply-To/References │ new case
//!           ─ authorize: the sender's standing on that case
//!           ─ apply, in ONE transaction: journal row, raw mail, case/thread/watchers,
//!             attachment metadata, Message-ID links, audit, events
//! ```
//!
//! Exactly once: the duplicate checks run inside the same `BEGIN IMMEDIATE` transaction
//! that writes the journal row, so two processes (the daemon and a piped `ingest`) can
//! never both create a case for one mail. Attachment files are written inside the
//! transaction window but outside SQLite; if it rolls back they are unreferenced, which is
//! harmless (see [`crate::store::blobs`]).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::address::{Address, Mailbox};
use crate::authorize::{self, Standing};
use crate::case::{CaseId, Event, Impact, MessageKind, Notice, Outcome, ParticipantRole, Status};
use crate::casework;
use crate::classify;
use crate::commands::{self, Commands};
use crate::config::Config;
use crate::fields;
use crate::notify;
use crate::parse::forward::{self, ForwardStyle, Forwarded};
use crate::parse::{self, reply, InboundMail};
use crate::route::{self, Route, TokenMatcher};
use crate::store::blobs::sha256_hex;
use crate::store::cases::{self as case_store, CaseRow, NewCase, NewMessage};
use crate::store::mails::{self, MailRecord, NewMail};
use crate::store::{self, Store};
use crate::workflow::Refusal;

/// Mails per transaction in bulk ingest: large enough that commits are cheap, small
/// enough that a batch commits within a few tens of milliseconds.
pub const DEFAULT_BATCH: usize = 100;

/// Where a mail came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// For people: `file:/path/x.eml`, `imap:support/INBOX uid 42`, `stdin`.
    pub description: String,
    /// The source (mailbox) name, when the mail has a stable position in it.
    pub source: Option<String>,
    /// The position within the source, e.g. `"<uidvalidity>:<uid>"`.
    pub source_key: Option<String>,
    /// Account for cases opened from this source when the sender's domain has none.
    pub account: Option<String>,
}

impl Origin {
    pub fn file(path: &str) -> Origin {
        Origin { description: format!("file:{path}"), ..Default::default() }
    }
}

/// What became of one mail.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The journal row (absent for duplicates, which write nothing).
    #[serde(skip)]
    pub mail_id: Option<i64>,
    pub message_id: Option<String>,
    pub outcome: Outcome,
    #[serde(skip)]
    pub case: Option<CaseId>,
    pub reason: Option<String>,
    /// What changed, in order (the notification step turns these into mail).
    #[serde(skip)]
    pub events: Vec<Event>,
}

/// Quarantine reasons (stable codes; the detail after the colon is for people).
pub mod reasons {
    pub const TOO_LARGE: &str = "too-large";
    pub const UNPARSEABLE: &str = "unparseable";
    pub const NO_SENDER: &str = "no-sender";
    pub const SENDER_NOT_PARTICIPANT: &str = "sender-not-participant";
    pub const INTERNAL_ERROR: &str = "internal-error";
    pub const ACCOUNT_NOT_ALLOWED: &str = "account-not-allowed";
    pub const BAD_FIELD: &str = "bad-field";
}

/// What to do with a parsed mail; decided from the mail and the database, then applied.
#[derive(Debug)]
enum Decision {
    Quarantine {
        case: Option<CaseId>,
        code: &'static str,
        detail: String,
    },
    /// A new case that cannot be opened as asked (a field it may not set).
    Refused {
        code: &'static str,
        field: String,
        problem: String,
    },
    Ignore {
        reason: String,
    },
    /// Machine mail on a known case: recorded on the thread, nothing else changes.
    Auto {
        case: CaseId,
        reason: String,
    },
    NewCase(Box<NewCasePlan>),
    /// A reply, note or commands on an existing, open case.
    OnCase {
        case: CaseRow,
        standing: Standing,
        commands: Commands,
    },
    /// "cases" by mail: answer with the sender's cases.
    ListCases,
}

/// The closed case a new case follows up, and what it carried over.
#[derive(Debug)]
struct FollowUp {
    closed: CaseId,
    contact: Option<Address>,
    account: Option<String>,
}

/// Who a new case is for and the fields it starts with.
#[derive(Debug)]
struct NewCasePlan {
    subject: String,
    /// The opening text when it is not the mail's whole text (a follow-up's new text).
    description: Option<String>,
    /// Why it is new although the mail pointed at a case (unknown token, closed case).
    note: Option<String>,
    /// The closed case this one follows up.
    linked: Option<CaseId>,
    contact: Address,
    /// The sender is (authenticated) staff or an admin.
    staff_side: bool,
    account: Option<String>,
    impact: Option<Impact>,
    environment: Option<String>,
    /// The customer's mail an admin or analyst forwarded.
    forwarded: Option<Forwarded>,
}

/// How the journal row is written: a new mail, or a released one re-processed.
#[derive(Debug, Clone, Copy)]
enum Journal<'a> {
    New(&'a Origin),
    Replay { mail_id: i64 },
}

/// The ingest engine: configuration, the open store, and compiled matchers.
pub struct Gateway {
    pub config: Arc<Config>,
    pub store: Store,
    tokens: TokenMatcher,
}

impl Gateway {
    pub fn open(config: Arc<Config>) -> anyhow::Result<Gateway> {
        let store = Store::open(&config)?;
        Ok(Gateway::with_store(config, store))
    }

    pub fn with_store(config: Arc<Config>, store: Store) -> Gateway {
        let tokens = TokenMatcher::new(&config.token_prefix);
        Gateway { config, store, tokens }
    }

    /// Processes one mail. `Err` only for failures of casegate itself (database, disk);
    /// anything wrong with the mail ends as a quarantined or ignored outcome instead.
    pub fn ingest(&mut self, raw: &[u8], origin: &Origin) -> anyhow::Result<IngestReport> {
        let mut reports = self.ingest_batch(&[(raw, origin)])?;
        Ok(reports.pop().expect("one report per mail"))
    }

    /// Processes several mails in one database transaction, each in its own savepoint:
    /// every mail is applied atomically (all of its effects or none), and the batch
    /// becomes durable at once, which is what makes bulk ingest fast. The reports are
    /// returned only after the commit, so a caller may then mark the mails processed at
    /// their source. On `Err` nothing of the batch was committed.
    pub fn ingest_batch(&mut self, mails: &[(&[u8], &Origin)]) -> anyhow::Result<Vec<IngestReport>> {
        let prepared = Prepared::many(&self.config, mails.iter().map(|(raw, _)| raw.to_vec()).collect());
        self.ingest_prepared(prepared.into_iter().zip(mails.iter().map(|(_, o)| *o)).collect())
    }

    /// [`Gateway::ingest_batch`] for mails already [`Prepared`] (possibly on another thread).
    pub fn ingest_prepared(&mut self, mails: Vec<(Prepared, &Origin)>) -> anyhow::Result<Vec<IngestReport>> {
        let config = Arc::clone(&self.config);
        let tokens = self.tokens.clone();
        let blobs = self.store.blobs.clone();
        let mut tx = self.store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Attachment files are written by a second thread while the database work goes on;
        // all of them exist before the commit.
        let (reports, written) = store::blobs::with_background_writer(&blobs, |sink| {
            let mut reports = Vec::with_capacity(mails.len());
            for (prepared, origin) in &mails {
                let step =
                    Step { config: &config, tokens: &tokens, blobs: sink, prepared, journal: Journal::New(origin) };
                reports.push(step.run(&mut tx, &prepared.parsed)?);
            }
            anyhow::Ok(reports)
        });
        let reports = reports?;
        written.context("cannot write attachment files")?;
        tx.commit()?;
        for ((_, origin), report) in mails.iter().zip(&reports) {
            log_report(report, &origin.description, &config);
        }
        Ok(reports)
    }

    /// Processes a quarantined mail again (e.g. after the sender was added as a watcher,
    /// or a limit was raised). The same journal row gets the new outcome.
    pub fn release(&mut self, quarantine_id: i64) -> anyhow::Result<IngestReport> {
        let q = mails::get_quarantine(&self.store.conn, quarantine_id)?.with_context(|| {
            format!("there is no quarantined mail #{quarantine_id}; `casegate quarantine list` shows them")
        })?;
        if let Some(at) = &q.released_at {
            anyhow::bail!("quarantined mail #{quarantine_id} was already released at {at}");
        }
        let record =
            mails::find_by_id(&self.store.conn, q.mail_id)?.context("journal row of a quarantined mail is missing")?;
        let raw =
            mails::raw(&self.store.conn, &record.raw_sha256)?.context("raw copy of a quarantined mail is missing")?;
        let prepared = Prepared::new(&self.config, raw);
        let config = Arc::clone(&self.config);
        let tokens = self.tokens.clone();
        let blobs = self.store.blobs.clone();
        let mut tx = self.store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let step = Step {
            config: &config,
            tokens: &tokens,
            blobs: &blobs,
            prepared: &prepared,
            journal: Journal::Replay { mail_id: record.id },
        };
        let report = step.run(&mut tx, &prepared.parsed)?;
        mails::mark_released(&tx, quarantine_id, report.outcome, &store::now())?;
        tx.commit()?;
        log_report(&report, &format!("quarantine #{quarantine_id}"), &config);
        Ok(report)
    }
}

/// A mail made ready for the database — hashed, parsed (bounded, panic-proof) and
/// compressed — without touching the store, so it can be done on another thread while
/// the previous batch is written.
pub struct Prepared {
    raw: Vec<u8>,
    sha: String,
    packed: Vec<u8>,
    parsed: Parsed,
}

impl Prepared {
    pub fn new(config: &Config, raw: Vec<u8>) -> Prepared {
        let sha = sha256_hex(&raw);
        let parsed = parse_guarded(config.max_message_bytes, &raw);
        let packed = mails::pack_raw(&raw);
        Prepared { raw, sha, packed, parsed }
    }

    /// Prepares many mails, on two threads when there are enough to be worth it.
    pub fn many(config: &Config, mut raws: Vec<Vec<u8>>) -> Vec<Prepared> {
        if raws.len() < 8 {
            return raws.into_iter().map(|r| Prepared::new(config, r)).collect();
        }
        let second = raws.split_off(raws.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second.into_iter().map(|r| Prepared::new(config, r)).collect::<Vec<_>>());
            let mut out: Vec<Prepared> = raws.into_iter().map(|r| Prepared::new(config, r)).collect();
            out.extend(other.join().expect("preparing mail never panics: parsing is guarded"));
            out
        })
    }

    /// The mail's Message-ID, when it has a usable one.
    pub fn message_id(&self) -> Option<&str> {
        self.parsed.headers().and_then(|m| m.message_id.as_deref())
    }
}

fn parse_guarded(limit: usize, raw: &[u8]) -> Parsed {
    {
        if raw.len() > limit {
            return Parsed::Rejected {
                code: reasons::TOO_LARGE,
                detail: format!("{} bytes, over limits.max_message_bytes = {limit}", raw.len()),
                headers: parse::parse_headers(raw).map(Box::new),
            };
        }
        // mail-parser promises not to panic; the guard keeps that promise from being
        // load-bearing for the daemon.
        match panic::catch_unwind(|| parse::parse(raw)) {
            Ok(Some(mail)) => Parsed::Mail(Box::new(mail)),
            Ok(None) => {
                Parsed::Rejected { code: reasons::UNPARSEABLE, detail: "no mail headers found".into(), headers: None }
            }
            Err(panic) => Parsed::Rejected {
                code: reasons::UNPARSEABLE,
                detail: format!("the MIME parser failed: {}", panic_message(&panic)),
                headers: None,
            },
        }
    }
}

/// One mail's passage through the open transaction.
struct Step<'a> {
    config: &'a Config,
    tokens: &'a TokenMatcher,
    blobs: &'a dyn store::BlobSink,
    prepared: &'a Prepared,
    journal: Journal<'a>,
}

impl Step<'_> {
    /// Applies the mail inside its own savepoint. A panic (a bug in casegate) rolls the
    /// savepoint back and quarantines the mail instead: it is neither lost nor allowed to
    /// stop the daemon. A database error aborts the whole batch.
    fn run(&self, tx: &mut Transaction<'_>, parsed: &Parsed) -> anyhow::Result<IngestReport> {
        let sp = tx.savepoint()?;
        match panic::catch_unwind(AssertUnwindSafe(|| self.apply(&sp, parsed))) {
            Ok(Ok(report)) => {
                sp.commit()?;
                Ok(report)
            }
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                drop(sp);
                let what = panic_message(&panic);
                tracing::error!(panic = %what, "Processing a mail panicked; quarantining it");
                let failed = Parsed::Rejected {
                    code: reasons::INTERNAL_ERROR,
                    detail: format!("casegate failed on this mail: {what}"),
                    headers: parsed.headers().cloned().map(Box::new),
                };
                let sp = tx.savepoint()?;
                let report = self.apply(&sp, &failed)?;
                sp.commit()?;
                Ok(report)
            }
        }
    }

    fn apply(&self, conn: &Connection, parsed: &Parsed) -> anyhow::Result<IngestReport> {
        let headers = parsed.headers();
        let message_id = headers.and_then(|m| m.message_id.clone());
        if let Journal::New(origin) = self.journal {
            if let Some(found) = find_duplicate(conn, origin, message_id.as_deref(), &self.prepared.sha)? {
                // Nothing is written for a duplicate: the database stays exactly as it was.
                return Ok(duplicate_report(found, message_id, self.config));
            }
        }
        let mut w = Writer { tx: conn, config: self.config, now: store::now(), events: Vec::new() };
        let (prepared, journal) = (self.prepared, self.journal);
        match parsed {
            Parsed::Rejected { code, detail, .. } => {
                let reason = format!("{code}: {detail}");
                let mail_id = w.journal(journal, prepared, headers, Outcome::Quarantined, None, Some(&reason))?;
                let mut report = w.quarantine(mail_id, None, code, detail)?;
                report.message_id = message_id;
                Ok(report)
            }
            Parsed::Mail(mail) => {
                let origin_account = match journal {
                    Journal::New(o) => o.account.as_deref(),
                    Journal::Replay { .. } => None,
                };
                let decision = decide(conn, self.config, self.tokens, mail)?;
                let report = w.apply(decision, mail, journal, prepared, origin_account, self.blobs)?;
                // Notifications are rows of the same savepoint: they exist exactly when
                // the change they announce was committed.
                notify::enqueue(conn, self.config, &report.events, Some(mail))?;
                Ok(report)
            }
        }
    }
}

/// The result of parsing, before any decision.
enum Parsed {
    Mail(Box<InboundMail>),
    /// Not processable; `headers` may still name its Message-ID, sender and subject.
    Rejected {
        code: &'static str,
        detail: String,
        headers: Option<Box<InboundMail>>,
    },
}

impl Parsed {
    fn headers(&self) -> Option<&InboundMail> {
        match self {
            Parsed::Mail(m) => Some(m),
            Parsed::Rejected { headers, .. } => headers.as_deref(),
        }
    }
}

/// The journal key of a mail: its Message-ID, or the hash of its bytes when it has none.
pub fn dedupe_key(message_id: Option<&str>, sha: &str) -> String {
    match message_id {
        Some(id) => format!("mid:{id}"),
        None => format!("sha256:{sha}"),
    }
}

fn find_duplicate(
    tx: &Connection,
    origin: &Origin,
    message_id: Option<&str>,
    sha: &str,
) -> rusqlite::Result<Option<(MailRecord, &'static str)>> {
    if let (Some(source), Some(key)) = (&origin.source, &origin.source_key) {
        if let Some(found) = mails::find_by_position(tx, source, key)? {
            return Ok(Some((found, "already processed from this source position")));
        }
    }
    let key = dedupe_key(message_id, sha);
    Ok(mails::find_by_dedupe_key(tx, &key)?.map(|found| {
        (
            found,
            if message_id.is_some() {
                "a mail with this Message-ID was already processed"
            } else {
                "identical mail already processed"
            },
        )
    }))
}

fn duplicate_report((found, why): (MailRecord, &str), message_id: Option<String>, config: &Config) -> IngestReport {
    let case = found.case_id.map(|c| config.case_token(c));
    let first = match &case {
        Some(c) => format!("{} ({c})", found.outcome),
        None => found.outcome.to_string(),
    };
    IngestReport {
        mail_id: None,
        message_id: message_id.or(found.message_id),
        outcome: Outcome::Duplicate,
        case: found.case_id,
        reason: Some(format!("{why}: mail #{} from {}, outcome {first}", found.id, found.origin)),
        events: Vec::new(),
    }
}

/// Classify, route and authorize: what should happen to this mail.
fn decide(tx: &Connection, config: &Config, tokens: &TokenMatcher, mail: &InboundMail) -> rusqlite::Result<Decision> {
    let ctx = classify::Context { system_addresses: &config.system_addresses, instance_id: &config.instance_id };
    let machine = classify::classify(mail, &ctx);
    let route = route::route(
        mail,
        tokens,
        &config.token_prefix,
        |n| case_store::case_row(tx, n).map(|r| r.is_some()),
        |id| case_store::case_for_message_id(tx, id),
    )?;

    if let Some(verdict) = machine {
        let reason = format!("{}: {}", verdict.kind.as_str(), verdict.reason);
        return Ok(match route {
            Route::Existing { case, .. } => Decision::Auto { case, reason },
            Route::New { .. } => Decision::Ignore { reason },
        });
    }
    let Some(sender) = mail.from_address() else {
        let case = match route {
            Route::Existing { case, .. } => Some(case),
            Route::New { .. } => None,
        };
        return Ok(Decision::Quarantine {
            case,
            code: reasons::NO_SENDER,
            detail: "the mail has no valid From address".into(),
        });
    };
    let authenticated = authorize::is_authenticated(config, mail);
    match route {
        Route::New { note } => {
            if is_case_list_request(&mail.subject) {
                return Ok(Decision::ListCases);
            }
            Ok(plan_new_case(config, tokens, mail, sender, authenticated, note, None))
        }
        Route::Existing { case, .. } => {
            let mut row = case_store::case_row(tx, case)?.expect("routing only returns cases that exist");
            // Mail on a closed case that already has an open follow-up goes to the follow-up,
            // so a customer who keeps answering the old thread opens one new case, not many.
            if row.status == Status::Closed {
                if let Some(next) = case_store::open_follow_up(tx, case)? {
                    row = case_store::case_row(tx, next)?.expect("follow-up exists");
                }
            }
            let case = row.id;
            let people = case_store::participants(tx, case)?;
            let standing = authorize::standing(config, sender, authenticated, &people, row.account.as_deref());
            if !standing.is_participant() {
                return Ok(Decision::Quarantine {
                    case: Some(case),
                    code: reasons::SENDER_NOT_PARTICIPANT,
                    detail: format!("{sender} is not a participant of {}", config.case_token(case)),
                });
            }
            let new_text = reply::new_text_of(mail);
            let commands = commands::parse(&mail.subject, &new_text);
            // New words on a closed case open a follow-up case; bare commands (an
            // #unwatch from a notification link, a second #accept) are answered instead.
            let has_text = !commands.text.trim().is_empty() || !mail.attachments.is_empty();
            if row.status == Status::Closed && has_text && !commands.has("unwatch") {
                let note = format!("{} is closed; a new case was opened that links it", config.case_token(case));
                let contact = people.iter().find(|(_, r)| *r == ParticipantRole::Contact).map(|(a, _)| a.clone());
                let follows = FollowUp { closed: case, contact, account: row.account.clone() };
                return Ok(plan_new_case(config, tokens, mail, sender, authenticated, Some(note), Some(follows)));
            }
            Ok(Decision::OnCase { case: row, standing, commands })
        }
    }
}

/// A mail to the system address whose subject asks for the sender's cases.
fn is_case_list_request(subject: &str) -> bool {
    let s = subject.trim().trim_start_matches('#').trim();
    s.eq_ignore_ascii_case("cases") || s.eq_ignore_ascii_case("my cases")
}

/// Works out who a new case is for and which fields it gets: normally the sender's own;
/// for staff and admins, on a customer's behalf — from a forwarded mail (the original
/// sender becomes the contact) or a `Contact:` line. `Account:` lines are checked against
/// what the sender may use.
fn plan_new_case(
    config: &Config,
    tokens: &TokenMatcher,
    mail: &InboundMail,
    sender: &Address,
    authenticated: bool,
    note: Option<String>,
    follows: Option<FollowUp>,
) -> Decision {
    let (staff, admin) = authorize::privileges(config, sender, authenticated);
    let staff_side = staff || admin;
    let linked = follows.as_ref().map(|f| f.closed);
    let forwarded = if staff_side && linked.is_none() { forward::find_forwarded(mail) } else { None };
    // Field lines are read from what the sender wrote: above a forwarded part, or the text.
    let field_text = forwarded.as_ref().map_or(mail.text.as_str(), |f| f.preamble.as_str());

    // Whom the case is for: a `Contact:` line written by staff wins; then the sender of a
    // forwarded mail; for staff following up a closed case, that case's contact.
    let contact_line = if staff_side { fields::labelled_line(field_text, "contact") } else { None };
    let contact = if let Some(line) = contact_line {
        match Address::parse(line.split_whitespace().last().unwrap_or_default()) {
            Some(a) => a,
            None => {
                return Decision::Refused {
                    code: reasons::BAD_FIELD,
                    field: format!("Contact: {line}"),
                    problem: "the Contact: line must hold one email address".into(),
                }
            }
        }
    } else if let Some(original) = forwarded.as_ref().and_then(|f| f.from.as_ref()) {
        original.address.clone()
    } else if let (true, Some(previous)) = (staff_side, follows.as_ref().and_then(|f| f.contact.clone())) {
        previous
    } else {
        sender.clone()
    };
    if config.is_system_address(&contact) {
        return Decision::Refused {
            code: reasons::BAD_FIELD,
            field: format!("Contact: {contact}"),
            problem: "a support address cannot be the contact of a case".into(),
        };
    }

    let account = match fields::labelled_line(field_text, "account") {
        Some(name) => {
            let allowed = config.accounts_of(sender);
            match config.known_account(name) {
                Some(known) if staff_side || allowed.contains(&known) => Some(known.to_string()),
                _ => {
                    let yours = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                    return Decision::Refused {
                        code: reasons::ACCOUNT_NOT_ALLOWED,
                        field: format!("Account: {name}"),
                        problem: format!("you may not open cases for the account {name:?}; your accounts: {yours}"),
                    };
                }
            }
        }
        None => config
            .account_for(&contact)
            .or_else(|| config.account_for(sender))
            .map(str::to_string)
            .or_else(|| follows.as_ref().and_then(|f| f.account.clone())),
    };
    // A follow-up of a closed case must not carry the old token (replies would go there);
    // a forwarded mail is about the original's subject.
    let subject = match forwarded.as_ref() {
        Some(f) => f.subject.clone().unwrap_or_else(|| tokens.clean_subject(&mail.subject)),
        None if linked.is_some() => tokens.clean_subject(&mail.subject),
        None => mail.subject.clone(),
    };
    // A follow-up is a reply: its opening entry is the new text, not the quoted old thread.
    let description = follows.as_ref().map(|_| reply::new_text_of(mail));
    Decision::NewCase(Box::new(NewCasePlan {
        subject,
        description,
        note,
        linked,
        contact,
        staff_side,
        account,
        impact: fields::impact_of(mail, field_text),
        environment: fields::environment_of(field_text),
        forwarded,
    }))
}

/// Writes the consequences of a decision inside the open transaction.
struct Writer<'t> {
    tx: &'t Connection,
    config: &'t Config,
    now: String,
    events: Vec<Event>,
}

impl Writer<'_> {
    #[allow(clippy::too_many_arguments)]
    fn journal(
        &mut self,
        journal: Journal<'_>,
        prepared: &Prepared,
        headers: Option<&InboundMail>,
        outcome: Outcome,
        case: Option<CaseId>,
        reason: Option<&str>,
    ) -> rusqlite::Result<i64> {
        match journal {
            Journal::Replay { mail_id } => {
                mails::set_outcome(self.tx, mail_id, outcome, case, reason)?;
                Ok(mail_id)
            }
            Journal::New(origin) => {
                mails::store_raw(self.tx, &prepared.sha, prepared.raw.len(), &prepared.packed)?;
                let message_id = headers.and_then(|m| m.message_id.as_deref());
                let key = dedupe_key(message_id, &prepared.sha);
                mails::insert_mail(
                    self.tx,
                    &NewMail {
                        origin: &origin.description,
                        source: origin.source.as_deref(),
                        source_key: origin.source_key.as_deref(),
                        message_id,
                        dedupe_key: &key,
                        raw_sha256: &prepared.sha,
                        from: headers.and_then(|m| m.from_address()).map(Address::as_str),
                        subject: headers.map(|m| m.subject.as_str()),
                        outcome,
                        case_id: case,
                        reason,
                    },
                    &self.now,
                )
            }
        }
    }

    fn quarantine(
        &mut self,
        mail_id: i64,
        case: Option<CaseId>,
        code: &str,
        detail: &str,
    ) -> rusqlite::Result<IngestReport> {
        mails::quarantine(self.tx, mail_id, code, Some(detail), &self.now)?;
        mails::audit(self.tx, Some(mail_id), case, None, "quarantined", Some(&format!("{code}: {detail}")), &self.now)?;
        Ok(self.report(mail_id, Outcome::Quarantined, case, Some(format!("{code}: {detail}"))))
    }

    fn report(&mut self, mail_id: i64, outcome: Outcome, case: Option<CaseId>, reason: Option<String>) -> IngestReport {
        IngestReport {
            mail_id: Some(mail_id),
            message_id: None,
            outcome,
            case,
            reason,
            events: std::mem::take(&mut self.events),
        }
    }

    /// Answers the sender directly, unless the mail says not to (or is from a robot).
    fn notice(&mut self, mail: &InboundMail, case: Option<CaseId>, notice: Notice) {
        if let (Some(to), Ok(())) = (mail.from_address(), classify::auto_response_allowed(mail)) {
            self.events.push(Event::Notice { to: to.clone(), case, notice, in_reply_to: mail.message_id.clone() });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        decision: Decision,
        mail: &InboundMail,
        journal: Journal<'_>,
        prepared: &Prepared,
        origin_account: Option<&str>,
        blobs: &dyn store::BlobSink,
    ) -> anyhow::Result<IngestReport> {
        let sender = mail.from_address();
        let actor = sender.map(Address::as_str);
        let mut report = match decision {
            Decision::Quarantine { case, code, detail } => {
                let reason = format!("{code}: {detail}");
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Quarantined, case, Some(&reason))?;
                self.notice(mail, case, Notice::NotApplied { reason: code.to_string() });
                self.quarantine(mail_id, case, code, &detail)?
            }
            Decision::Refused { code, field, problem } => {
                let detail = format!("{field}: {problem}");
                let reason = format!("{code}: {detail}");
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Quarantined, None, Some(&reason))?;
                self.notice(mail, None, Notice::CommandRefused { command: field, problem });
                self.quarantine(mail_id, None, code, &detail)?
            }
            Decision::Ignore { reason } => {
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Ignored, None, Some(&reason))?;
                mails::audit(self.tx, Some(mail_id), None, actor, "ignored", Some(&reason), &self.now)?;
                self.report(mail_id, Outcome::Ignored, None, Some(reason))
            }
            Decision::Auto { case, reason } => {
                let mail_id =
                    self.journal(journal, prepared, Some(mail), Outcome::Replied, Some(case), Some(&reason))?;
                // Recorded for the analysts, but the case itself does not change: no status,
                // watcher or updated_at change, and no notification.
                let body = reply::new_text_of(mail);
                let entry = NewMessage {
                    case,
                    mail_id: Some(mail_id),
                    message_id: mail.message_id.as_deref(),
                    kind: MessageKind::Auto,
                    from: sender,
                    body: &body,
                };
                casework::add_message(self.tx, blobs, &entry, &mail.attachments, &self.now)?;
                mails::audit(self.tx, Some(mail_id), Some(case), actor, "auto-recorded", Some(&reason), &self.now)?;
                self.report(mail_id, Outcome::Replied, Some(case), Some(reason))
            }
            Decision::ListCases => {
                let reason = "list of cases requested".to_string();
                let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Command, None, Some(&reason))?;
                self.notice(mail, None, Notice::CaseList);
                mails::audit(self.tx, Some(mail_id), None, actor, "case-list-requested", None, &self.now)?;
                self.report(mail_id, Outcome::Command, None, Some(reason))
            }
            Decision::NewCase(plan) => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                self.new_case(mail, sender, *plan, journal, prepared, origin_account, blobs)?
            }
            Decision::OnCase { case, standing, commands } => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                self.on_case(mail, sender, &case, &standing, commands, journal, prepared, blobs)?
            }
        };
        report.message_id = mail.message_id.clone();
        Ok(report)
    }

    /// A reply, note or command on an existing case, through the workflow.
    #[allow(clippy::too_many_arguments)]
    fn on_case(
        &mut self,
        mail: &InboundMail,
        sender: &Address,
        case: &CaseRow,
        standing: &Standing,
        commands: Commands,
        journal: Journal<'_>,
        prepared: &Prepared,
        blobs: &dyn store::BlobSink,
    ) -> anyhow::Result<IngestReport> {
        let mail_id = self.journal(journal, prepared, Some(mail), Outcome::Replied, Some(case.id), None)?;
        if commands.list_cases {
            self.notice(mail, None, Notice::CaseList);
        }
        // Unknown words or bad arguments: nothing is applied, the sender learns why.
        if !commands.problems.is_empty() {
            let reason = commands.problems.iter().map(|(w, p)| format!("{w}: {p}")).collect::<Vec<_>>().join("; ");
            for (command, problem) in commands.problems {
                self.notice(mail, Some(case.id), Notice::CommandRefused { command, problem });
            }
            return self.finish_refused(mail_id, case.id, sender, reason);
        }
        let copied: Vec<Address> = mail
            .to
            .iter()
            .chain(&mail.cc)
            .map(|m| m.address.clone())
            .filter(|a| a != sender && !self.config.is_system_address(a))
            .collect();
        let request = casework::Request {
            actions: commands.actions,
            text: &commands.text,
            mail_id: Some(mail_id),
            message_id: mail.message_id.as_deref(),
            attachments: &mail.attachments,
            copied,
            channel: "mail",
        };
        match casework::act(self.tx, self.config, blobs, case, sender, standing, &request, &self.now)? {
            Ok(done) => {
                self.events.extend(done.events);
                if done.applied.is_empty() {
                    Ok(self.report(mail_id, Outcome::Replied, Some(case.id), None))
                } else {
                    let reason = format!(
                        "applied: {}",
                        done.applied.iter().map(|w| format!("#{w}")).collect::<Vec<_>>().join(" ")
                    );
                    mails::set_outcome(self.tx, mail_id, Outcome::Command, Some(case.id), Some(&reason))?;
                    Ok(self.report(mail_id, Outcome::Command, Some(case.id), Some(reason)))
                }
            }
            Err(refusals) => {
                let reason = refusals.iter().map(|(w, r)| format!("{w}: {r}")).collect::<Vec<_>>().join("; ");
                for (command, refusal) in refusals {
                    let notice = match refusal {
                        Refusal::ReasonRequired => Notice::ReasonRequired,
                        other => Notice::CommandRefused { command, problem: other.to_string() },
                    };
                    self.notice(mail, Some(case.id), notice);
                }
                self.finish_refused(mail_id, case.id, sender, reason)
            }
        }
    }

    fn finish_refused(
        &mut self,
        mail_id: i64,
        case: CaseId,
        sender: &Address,
        reason: String,
    ) -> anyhow::Result<IngestReport> {
        let reason = format!("refused: {reason}");
        mails::set_outcome(self.tx, mail_id, Outcome::Command, Some(case), Some(&reason))?;
        mails::audit(
            self.tx,
            Some(mail_id),
            Some(case),
            Some(sender.as_str()),
            "command-refused",
            Some(&reason),
            &self.now,
        )?;
        Ok(self.report(mail_id, Outcome::Command, Some(case), Some(reason)))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_case(
        &mut self,
        mail: &InboundMail,
        sender: &Address,
        plan: NewCasePlan,
        journal: Journal<'_>,
        prepared: &Prepared,
        origin_account: Option<&str>,
        blobs: &dyn store::BlobSink,
    ) -> anyhow::Result<IngestReport> {
        // What the case is about: the forwarded original, or the mail itself.
        let (description, attachments, copied): (&str, &[parse::Attachment], Vec<&Mailbox>) = match &plan.forwarded {
            Some(f) => {
                let attached = (f.style == ForwardStyle::Attached).then(|| mail.attached_messages.first()).flatten();
                let attachments = attached.map_or(mail.attachments.as_slice(), |m| m.attachments.as_slice());
                (f.body.as_str(), attachments, f.to.iter().chain(&f.cc).collect())
            }
            None => (
                plan.description.as_deref().unwrap_or(mail.text.as_str()),
                mail.attachments.as_slice(),
                mail.to.iter().chain(&mail.cc).collect(),
            ),
        };
        let subject = plan.subject.clone();
        let subject = if subject.trim().is_empty() { "(no subject)".to_string() } else { subject };
        let account = plan.account.as_deref().or(origin_account);
        let case = case_store::insert_case(
            self.tx,
            &NewCase {
                subject: &subject,
                impact: plan.impact.unwrap_or(Impact::Medium),
                account,
                environment: plan.environment.as_deref(),
                linked_case: plan.linked,
            },
            &self.now,
        )?;
        let mail_id =
            self.journal(journal, prepared, Some(mail), Outcome::Created, Some(case), plan.note.as_deref())?;
        let on_behalf = plan.contact != *sender;
        case_store::add_participant(self.tx, case, sender, ParticipantRole::Requester, "sender", None, &self.now)?;
        let via = if plan.forwarded.is_some() {
            "forward"
        } else if on_behalf {
            "contact-line"
        } else {
            "sender"
        };
        case_store::add_participant(
            self.tx,
            case,
            &plan.contact,
            ParticipantRole::Contact,
            via,
            Some(sender),
            &self.now,
        )?;

        // The first thread entry: the customer's words (from the original when forwarded).
        let first = match &plan.forwarded {
            Some(f) => NewMessage {
                case,
                mail_id: Some(mail_id),
                message_id: mail.message_id.as_deref(),
                kind: MessageKind::Customer,
                // The original's author wrote these words (usually also the contact).
                from: Some(f.from.as_ref().map_or(&plan.contact, |m| &m.address)),
                body: description,
            },
            None => NewMessage {
                case,
                mail_id: Some(mail_id),
                message_id: mail.message_id.as_deref(),
                kind: if plan.staff_side { MessageKind::Staff } else { MessageKind::Customer },
                from: Some(sender),
                body: description,
            },
        };
        let message = casework::add_message(self.tx, blobs, &first, attachments, &self.now)?;
        self.events.push(Event::Created { case, message });
        // What the forwarder wrote above the forwarded part stays internal.
        if let Some(f) = &plan.forwarded {
            let preamble = strip_field_lines(&f.preamble);
            if !preamble.is_empty() {
                let note = NewMessage {
                    case,
                    mail_id: Some(mail_id),
                    message_id: None,
                    kind: MessageKind::Note,
                    from: Some(sender),
                    body: &preamble,
                };
                casework::add_message(self.tx, blobs, &note, &[], &self.now)?;
            }
        }
        if let Some(closed) = plan.linked {
            self.notice(mail, Some(case), Notice::FollowUpOpened { closed });
        }
        // When a Contact: line named someone else, the original's author still follows the case.
        let author = plan.forwarded.as_ref().and_then(|f| f.from.as_ref());
        for mb in author.into_iter().chain(copied) {
            if mb.address != plan.contact {
                casework::add_watcher(
                    self.tx,
                    self.config,
                    case,
                    &mb.address,
                    sender,
                    if plan.forwarded.is_some() { "forward" } else { "cc" },
                    &mut self.events,
                    &self.now,
                )?;
            }
        }
        let mut detail = format!("opened by {sender}");
        if on_behalf {
            detail.push_str(&format!(" for {}", plan.contact));
        }
        if let Some(n) = &plan.note {
            detail.push_str(&format!("; {n}"));
        }
        mails::audit(
            self.tx,
            Some(mail_id),
            Some(case),
            Some(sender.as_str()),
            "case-created",
            Some(&detail),
            &self.now,
        )?;
        Ok(self.report(mail_id, Outcome::Created, Some(case), plan.note))
    }
}

/// The forwarder's text without the `Impact:`/`Account:`/`Environment:`/`Contact:` lines
/// that set fields.
fn strip_field_lines(text: &str) -> String {
    let is_field = |l: &str| {
        let l = l.trim().trim_start_matches(['*', '_']).to_ascii_lowercase();
        ["impact:", "account:", "environment:", "contact:"].iter().any(|p| l.starts_with(p))
    };
    parse::normalise_text(&text.lines().filter(|l| !is_field(l)).collect::<Vec<_>>().join("\n"))
}

fn log_report(report: &IngestReport, origin: &str, config: &Config) {
    let case = report.case.map(|c| config.case_token(c));
    tracing::info!(
        origin,
        message_id = report.message_id.as_deref().unwrap_or("-"),
        outcome = report.outcome.as_str(),
        case = case.as_deref().unwrap_or("-"),
        reason = report.reason.as_deref().unwrap_or("-"),
        "Mail processed"
    );
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
