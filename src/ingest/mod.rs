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
//!
//! This file holds the pipeline (batches, savepoints, the journal, duplicates);
//! `decide.rs` works out what a parsed mail means, and `apply.rs` writes it.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::Serialize;

mod apply;
mod decide;
#[doc(hidden)]
pub mod fuzzing;

use crate::case::{CaseId, Event, Notice, Outcome};
use crate::classify;
use crate::config::Config;
use crate::notify;
use crate::parse::{self, InboundMail};
use crate::store::blobs::sha256_hex;
use crate::store::mails::{self, MailRecord};
use crate::store::{self, Store};

/// Mails per transaction in bulk ingest: large enough that commits are cheap (a page that
/// many mails touch — an index leaf, the WAL's — is written once per batch), small enough
/// that a batch commits within about a tenth of a second.
pub const DEFAULT_BATCH: usize = 400;
/// A bulk-ingest batch also ends once it holds this many bytes of mail.
pub const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;

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
    /// For a duplicate: the outcome of the mail's first passage.
    #[serde(skip)]
    pub first_outcome: Option<Outcome>,
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
    /// A staff or admin address without the authentication `authserv_id` requires on a
    /// case it does not otherwise take part in: most likely forged.
    pub const UNAUTHENTICATED_STAFF: &str = "unauthenticated-staff";
    pub const INTERNAL_ERROR: &str = "internal-error";
    pub const ACCOUNT_NOT_ALLOWED: &str = "account-not-allowed";
    pub const BAD_FIELD: &str = "bad-field";
}

use apply::Writer;
use decide::decide;

/// How a batch protects its mails from each other: see [`Gateway::ingest_prepared`].
#[derive(Debug, Clone, Copy)]
enum Guard {
    Batch,
    PerMail,
}

enum Written {
    Committed(Vec<IngestReport>),
    /// A mail panicked; nothing of the attempt is kept.
    Panicked,
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
}

impl Gateway {
    pub fn open(config: Arc<Config>) -> anyhow::Result<Gateway> {
        let store = Store::open(&config)?;
        Ok(Gateway::with_store(config, store))
    }

    pub fn with_store(config: Arc<Config>, store: Store) -> Gateway {
        Gateway { config, store }
    }

    /// Processes one mail. `Err` only for failures of casegate itself (database, disk);
    /// anything wrong with the mail ends as a quarantined or ignored outcome instead.
    pub fn ingest(&mut self, raw: &[u8], origin: &Origin) -> anyhow::Result<IngestReport> {
        let mut reports = self.ingest_batch(&[(raw, origin)])?;
        Ok(reports.pop().expect("one report per mail"))
    }

    /// Processes several mails in one database transaction: every mail is applied
    /// atomically (all of its effects or none), and the batch becomes durable at once,
    /// which is what makes bulk ingest fast. The reports are returned only after the
    /// commit, so a caller may then mark the mails processed at their source. On `Err`
    /// nothing of the batch was committed.
    pub fn ingest_batch(&mut self, mails: &[(&[u8], &Origin)]) -> anyhow::Result<Vec<IngestReport>> {
        let prepared = Prepared::many(&self.config, mails.iter().map(|(raw, _)| raw.to_vec()).collect());
        self.ingest_prepared(prepared.into_iter().zip(mails.iter().map(|(_, o)| *o)).collect())
    }

    /// [`Gateway::ingest_batch`] for mails already [`Prepared`] (possibly on another thread).
    pub fn ingest_prepared(&mut self, mails: Vec<(Prepared, &Origin)>) -> anyhow::Result<Vec<IngestReport>> {
        // A mail is atomic because a failure of casegate on it (a panic or an error that is
        // the mail's, not the database's: see `is_systemic`) can be undone. The batch is
        // first written without a savepoint per mail, which would copy every page a mail
        // touches; if a mail fails, that attempt is rolled back and the batch is written
        // again with one savepoint per mail, where the failing mail is undone alone and
        // quarantined, so it can neither stop the mail behind it nor be retried forever.
        let first = self.write_batch(&mails, Guard::Batch);
        let reports = match first {
            Ok(Written::Committed(reports)) => reports,
            Err(e) if is_systemic(&e) => return Err(e),
            Ok(Written::Panicked) | Err(_) => {
                if let Err(e) = &first {
                    tracing::warn!(error = %format!("{e:#}"), "A mail could not be applied");
                }
                tracing::warn!(mails = mails.len(), "Writing the batch again mail by mail");
                match self.write_batch(&mails, Guard::PerMail)? {
                    Written::Committed(reports) => reports,
                    Written::Panicked => anyhow::bail!("a mail failed although each mail was guarded"),
                }
            }
        };
        for ((_, origin), report) in mails.iter().zip(&reports) {
            log_report(report, &origin.description, &self.config);
        }
        Ok(reports)
    }

    fn write_batch(&mut self, mails: &[(Prepared, &Origin)], guard: Guard) -> anyhow::Result<Written> {
        let config = Arc::clone(&self.config);
        let blobs = self.store.blobs.clone();
        let packs = &self.store.packs;
        // Mail by mail, a failed mail's staged raw copy is taken back, so nothing may be
        // written before the batch ends; otherwise the pack is written as the batch goes.
        packs.borrow_mut().hand_off_early(matches!(guard, Guard::Batch));
        let mut tx = self.store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Attachment files are written by a second thread while the database work goes on;
        // all of them exist before the commit. (Files of an attempt that is rolled back are
        // harmless: they are named by their content and written again.)
        let (reports, written) = store::blobs::with_background_writer(&blobs, |sink| {
            let mut reports = Vec::with_capacity(mails.len());
            for (prepared, origin) in mails {
                let step = Step { config: &config, blobs: sink, packs, prepared, journal: Journal::New(origin) };
                let report = match guard {
                    Guard::PerMail => step.run(&mut tx, &prepared.parsed)?,
                    Guard::Batch => match step.run_unguarded(&tx, &prepared.parsed)? {
                        Some(report) => report,
                        None => return anyhow::Ok(Written::Panicked),
                    },
                };
                reports.push(report);
            }
            anyhow::Ok(Written::Committed(reports))
        });
        // The raw copies staged by an attempt that is rolled back (on `Err` or `Panicked`,
        // when `tx` is dropped) are never written.
        let reports = match reports {
            Ok(Written::Committed(reports)) => reports,
            other => {
                packs.borrow_mut().discard();
                return other;
            }
        };
        written.context("cannot write attachment files")?;
        packs.borrow_mut().flush().context("cannot write raw mails to their pack file")?;
        tx.commit()?;
        Ok(Written::Committed(reports))
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
        let raw = mails::raw(&self.store.conn, self.store.packs.borrow().dir(), &record.raw_sha256)?
            .context("raw copy of a quarantined mail is missing")?;
        let prepared = Prepared::new(&self.config, raw);
        let config = Arc::clone(&self.config);
        let blobs = self.store.blobs.clone();
        self.store.packs.borrow_mut().hand_off_early(false);
        let mut tx = self.store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let step = Step {
            config: &config,
            blobs: &blobs,
            packs: &self.store.packs,
            prepared: &prepared,
            journal: Journal::Replay { mail_id: record.id },
        };
        let report = step.run(&mut tx, &prepared.parsed)?;
        mails::mark_released(&tx, quarantine_id, report.outcome, &store::now())?;
        self.store.packs.borrow_mut().flush().context("cannot write raw mails to their pack file")?;
        tx.commit()?;
        log_report(&report, &format!("quarantine #{quarantine_id}"), &config);
        Ok(report)
    }
}

/// A mail made ready for the database — hashed, parsed (bounded, panic-proof) and
/// compressed — without touching the store, so it can be done on another thread while
/// the previous batch is written.
pub struct Prepared {
    /// Size of the raw mail (the bytes themselves are kept only compressed, in `packed`).
    size: usize,
    sha: String,
    packed: Vec<u8>,
    parsed: Parsed,
}

impl Prepared {
    pub fn new(config: &Config, raw: Vec<u8>) -> Prepared {
        let sha = sha256_hex(&raw);
        let parsed = parse_guarded(config, &raw);
        let packed = mails::pack_raw(&raw);
        Prepared { size: raw.len(), sha, packed, parsed }
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

fn parse_guarded(config: &Config, raw: &[u8]) -> Parsed {
    let limit = config.max_message_bytes;
    if raw.len() > limit {
        return Parsed::Rejected {
            code: reasons::TOO_LARGE,
            detail: format!("{} bytes, over limits.max_message_bytes = {limit}", raw.len()),
            headers: parse::parse_headers(raw).map(Box::new),
        };
    }
    // mail-parser promises not to panic; the guard keeps that promise from being
    // load-bearing for the daemon. The analysis is guarded the same way.
    match panic::catch_unwind(|| parse::parse(raw).map(|mail| Analyzed::of(config, mail))) {
        Ok(Some(analyzed)) => Parsed::Mail(Box::new(analyzed)),
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

/// What can be worked out from a mail alone, before the database is involved — done
/// while preparing, off the writer's thread.
pub(crate) struct Analyzed {
    pub(crate) mail: InboundMail,
    /// Machine mail, and the evidence.
    pub(crate) machine: Option<classify::Verdict>,
    /// The text the sender added (quoted history and signature removed) — worked out only
    /// for a mail that can reach an existing case (it names a case token or refers to
    /// earlier mail); see [`Analyzed::new_text`].
    new_text: Option<String>,
    /// Whether a staff or admin From address may be believed.
    pub(crate) authenticated: bool,
    /// Why the sender gets no automatic answer, if they get none.
    pub(crate) no_answers: Option<String>,
}

/// Why the sender of `mail` must get no automatic answer, if so: machine mail, headers
/// asking for none, no-reply addresses (see [`classify::auto_response_allowed`]), or a
/// staff or admin address the receiving server does not vouch for (the answer would reach
/// the address's real owner, who did not write).
pub(crate) fn no_answer_reason(config: &Config, mail: &InboundMail, authenticated: bool) -> Option<String> {
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

impl Analyzed {
    /// The text the sender added: worked out while preparing when the mail may reach a
    /// case (the only time it is needed), else now.
    pub(crate) fn new_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.new_text {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => std::borrow::Cow::Owned(parse::reply::new_text_of(&self.mail)),
        }
    }

    fn of(config: &Config, mail: InboundMail) -> Analyzed {
        let ctx = classify::Context { system_addresses: &config.system_addresses, instance_id: &config.instance_id };
        let authenticated = crate::authorize::is_authenticated(config, &mail);
        Analyzed {
            machine: classify::classify(&mail, &ctx),
            new_text: may_reach_a_case(config, &mail).then(|| parse::reply::new_text_of(&mail)),
            authenticated,
            no_answers: no_answer_reason(config, &mail, authenticated),
            mail,
        }
    }
}

/// One mail's passage through the open transaction.
struct Step<'a> {
    config: &'a Config,
    blobs: &'a dyn store::BlobSink,
    packs: &'a std::cell::RefCell<store::packs::RawPacks>,
    prepared: &'a Prepared,
    journal: Journal<'a>,
}

impl Step<'_> {
    /// Applies the mail inside its own savepoint. A panic (a bug in casegate) rolls the
    /// savepoint back and quarantines the mail instead: it is neither lost nor allowed to
    /// stop the daemon. A database error aborts the whole batch.
    fn run(&self, tx: &mut Transaction<'_>, parsed: &Parsed) -> anyhow::Result<IngestReport> {
        let sp = tx.savepoint()?;
        let mark = self.packs.borrow().mark();
        match panic::catch_unwind(AssertUnwindSafe(|| self.apply(&sp, parsed))) {
            Ok(Ok(report)) => {
                sp.commit()?;
                Ok(report)
            }
            Ok(Err(e)) if is_systemic(&e) => Err(e),
            Ok(Err(e)) => {
                drop(sp);
                self.packs.borrow_mut().unstage(mark);
                let what = format!("{e:#}");
                tracing::error!(error = %what, "Processing a mail failed; quarantining it");
                self.quarantine_failed(tx, parsed, &what)
            }
            Err(panic) => {
                drop(sp);
                self.packs.borrow_mut().unstage(mark);
                let what = panic_message(&panic);
                tracing::error!(panic = %what, "Processing a mail panicked; quarantining it");
                self.quarantine_failed(tx, parsed, &what)
            }
        }
    }

    /// Journals and quarantines a mail on which casegate itself failed (`internal-error`),
    /// after its own effects were rolled back.
    fn quarantine_failed(&self, tx: &mut Transaction<'_>, parsed: &Parsed, what: &str) -> anyhow::Result<IngestReport> {
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

    /// Applies the mail directly in the batch's transaction; `None` if it panicked, in
    /// which case the transaction holds part of its effects and must be rolled back.
    fn run_unguarded(&self, tx: &Transaction<'_>, parsed: &Parsed) -> anyhow::Result<Option<IngestReport>> {
        match panic::catch_unwind(AssertUnwindSafe(|| self.apply(tx, parsed))) {
            Ok(result) => result.map(Some),
            Err(panic) => {
                tracing::warn!(panic = %panic_message(&panic), "Processing a mail panicked");
                Ok(None)
            }
        }
    }

    fn apply(&self, conn: &Connection, parsed: &Parsed) -> anyhow::Result<IngestReport> {
        #[cfg(test)]
        tests::fail_if_asked(parsed)?;
        let headers = parsed.headers();
        let message_id = headers.and_then(|m| m.message_id.clone());
        if let Journal::New(origin) = self.journal {
            if let Some(found) = find_duplicate(conn, origin, message_id.as_deref(), &self.prepared.sha)? {
                // Nothing is written for a duplicate: the database stays exactly as it was.
                return Ok(duplicate_report(found, message_id, self.config));
            }
        }
        let mut w = Writer { tx: conn, config: self.config, now: store::now(), events: Vec::new(), packs: self.packs };
        let (prepared, journal) = (self.prepared, self.journal);
        match parsed {
            Parsed::Rejected { code, detail, .. } => {
                let reason = format!("{code}: {detail}");
                let mail_id = w.journal(journal, prepared, headers, Outcome::Quarantined, None, Some(&reason))?;
                // A person whose mail was too large (its headers still name them) is told
                // so; mail whose headers could not be read, or from a robot, gets nothing.
                if let Some(mail) = headers {
                    w.notice(mail, None, Notice::NotApplied { reason: code.to_string() });
                }
                let mut report = w.quarantine(mail_id, None, code, detail)?;
                report.message_id = message_id;
                let no_answers = headers
                    .and_then(|h| no_answer_reason(self.config, h, crate::authorize::is_authenticated(self.config, h)));
                let trigger = headers.map(|mail| notify::Trigger { mail, no_answers: no_answers.as_deref() });
                notify::enqueue(conn, self.config, &report.events, trigger)?;
                Ok(report)
            }
            Parsed::Mail(analyzed) => {
                let origin_account = match journal {
                    Journal::New(o) => o.account.as_deref(),
                    Journal::Replay { .. } => None,
                };
                let decision = decide(conn, self.config, &self.config.tokens, analyzed)?;
                let report = w.apply(decision, analyzed, journal, prepared, origin_account, self.blobs)?;
                // Notifications are rows of the same savepoint: they exist exactly when
                // the change they announce was committed.
                let trigger = notify::Trigger { mail: &analyzed.mail, no_answers: analyzed.no_answers.as_deref() };
                notify::enqueue(conn, self.config, &report.events, Some(trigger))?;
                Ok(report)
            }
        }
    }
}

/// Whether an error is the installation's (the database or the disk: busy, full, read
/// only, unreadable) rather than the mail's. Such an error stops the batch, which is then
/// retried as a whole, instead of quarantining good mail because of a bad moment.
fn is_systemic(e: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode as C;
    e.chain().any(|cause| {
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cause.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code).is_some_and(|code| {
            matches!(
                code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::OutOfMemory
                    | C::ReadOnly
                    | C::OperationInterrupted
                    | C::SystemIoFailure
                    | C::DatabaseCorrupt
                    | C::DiskFull
                    | C::CannotOpen
                    | C::FileLockingProtocolFailed
                    | C::SchemaChanged
                    | C::NotADatabase
            )
        })
    })
}

/// The result of parsing, before any decision.
enum Parsed {
    Mail(Box<Analyzed>),
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
            Parsed::Mail(a) => Some(&a.mail),
            Parsed::Rejected { headers, .. } => headers.as_deref(),
        }
    }
}

/// The journal key of a mail: its Message-ID, or the hash of its bytes when it has none.
pub(crate) fn dedupe_key(message_id: Option<&str>, sha: &str) -> String {
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
        first_outcome: Some(found.outcome),
        events: Vec::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Subject that makes processing panic in test builds: a stand-in for a bug.
    const PANIC_SUBJECT: &str = "make casegate panic (test)";

    /// Subject that makes processing fail with an error that is the mail's.
    const ERROR_SUBJECT: &str = "make casegate fail (test)";

    pub(super) fn fail_if_asked(parsed: &Parsed) -> anyhow::Result<()> {
        if let Parsed::Mail(a) = parsed {
            if a.mail.subject == PANIC_SUBJECT {
                panic!("asked to by the test");
            }
            if a.mail.subject == ERROR_SUBJECT {
                anyhow::bail!("failing as the test asked");
            }
        }
        Ok(())
    }

    fn mail(id: usize, subject: &str) -> Vec<u8> {
        format!(
            "From: user{id}@customer.example\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <m{id}@customer.example>\r\n\r\nBody {id}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_mail_that_panics_is_quarantined_alone_and_its_batch_is_kept() {
        batch_with_a_failing_mail(PANIC_SUBJECT, "asked to by the test");
    }

    #[test]
    fn a_mail_that_fails_with_an_error_is_quarantined_alone_and_its_batch_is_kept() {
        batch_with_a_failing_mail(ERROR_SUBJECT, "failing as the test asked");
    }

    #[test]
    fn database_and_disk_errors_are_systemic_and_a_mail_error_is_not() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(is_systemic(&anyhow::Error::new(busy).context("cannot write the journal")));
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        assert!(is_systemic(&anyhow::Error::new(full)));
        assert!(is_systemic(&anyhow::Error::new(std::io::Error::other("no space left on device"))));
        let constraint =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), None);
        assert!(!is_systemic(&anyhow::Error::new(constraint)));
        assert!(!is_systemic(&anyhow::anyhow!("a template failed")));
    }

    fn batch_with_a_failing_mail(subject: &str, why: &str) {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("data_dir = {:?}\nsystem_addresses = [\"support@example.com\"]\n", dir.path().join("var"));
        let config = Config::from_toml(&toml, &dir.path().join("casegate.toml")).unwrap();
        let mut gateway = Gateway::open(Arc::new(config)).unwrap();
        let raws = [mail(1, "Printer"), mail(2, subject), mail(3, "Scanner")];
        let origins: Vec<Origin> = (1..=3).map(|i| Origin::file(&format!("m{i}.eml"))).collect();
        let items: Vec<(&[u8], &Origin)> = raws.iter().map(Vec::as_slice).zip(&origins).collect();

        let reports = gateway.ingest_batch(&items).unwrap();
        let outcomes: Vec<&str> = reports.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["created", "quarantined", "created"]);
        let reason = reports[1].reason.as_deref().unwrap();
        assert!(reason.starts_with("internal-error: casegate failed on this mail") && reason.contains(why), "{reason}");

        let count = |g: &Gateway, sql: &str| g.store.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(count(&gateway, "SELECT count(*) FROM cases"), 2, "nothing of the panicking mail's case is left");
        assert_eq!(count(&gateway, "SELECT count(*) FROM mails"), 3, "every mail is journalled once");
        assert_eq!(count(&gateway, "SELECT count(*) FROM quarantine"), 1);
        let subjects: Vec<String> = gateway
            .store
            .conn
            .prepare("SELECT subject FROM cases ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(subjects, ["Printer", "Scanner"]);
        assert_raw_copies_are_exact(&gateway, &raws);

        // The same batch again: all duplicates, nothing written.
        let again = gateway.ingest_batch(&items).unwrap();
        assert!(again.iter().all(|r| r.outcome.as_str() == "duplicate"), "{again:?}");
        assert_eq!(count(&gateway, "SELECT count(*) FROM mails"), 3);
        assert_raw_copies_are_exact(&gateway, &raws);
    }

    /// Every journalled mail reads back byte for byte from its pack, and the packs hold
    /// exactly those records: what attempts that were rolled back staged was never written.
    fn assert_raw_copies_are_exact(gateway: &Gateway, raws: &[Vec<u8>]) {
        let packs_dir = gateway.store.packs.borrow().dir().to_path_buf();
        for (i, raw) in raws.iter().enumerate() {
            let sha = sha256_hex(raw);
            let stored = mails::raw(&gateway.store.conn, &packs_dir, &sha).unwrap();
            assert_eq!(stored.as_ref(), Some(raw), "mail {i}");
        }
        let recorded: i64 =
            gateway.store.conn.query_row("SELECT sum(pack_length) FROM raw_mails", [], |r| r.get(0)).unwrap();
        let on_disk: u64 = std::fs::read_dir(&packs_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert_eq!(on_disk, recorded as u64);
    }

    #[test]
    fn a_damaged_raw_copy_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("data_dir = {:?}\nsystem_addresses = [\"support@example.com\"]\n", dir.path().join("var"));
        let config = Config::from_toml(&toml, &dir.path().join("casegate.toml")).unwrap();
        let mut gateway = Gateway::open(Arc::new(config)).unwrap();
        let raw = mail(1, "Printer");
        gateway.ingest(&raw, &Origin::file("m1.eml")).unwrap();
        let packs_dir = gateway.store.packs.borrow().dir().to_path_buf();
        let (pack, offset): (String, i64) = gateway
            .store
            .conn
            .query_row("SELECT pack, pack_offset FROM raw_mails", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        // One byte of the mail's text changed on disk (LZ4 stores short text as literals).
        let path = packs_dir.join(pack);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = offset as usize + bytes[offset as usize..].windows(6).position(|w| w == b"Body 1").unwrap();
        bytes[at] = b'X';
        std::fs::write(&path, bytes).unwrap();
        let err = mails::raw(&gateway.store.conn, &packs_dir, &sha256_hex(&raw)).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
        // A pack that is gone is named.
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", mails::raw(&gateway.store.conn, &packs_dir, &sha256_hex(&raw)).unwrap_err());
        assert!(err.contains("cannot read raw mail") && err.contains(".pack"), "{err}");
    }
}
