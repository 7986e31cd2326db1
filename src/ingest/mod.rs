//! The one path every mail takes — from the daemon's mailboxes, from `casegate ingest`,
//! and again when a quarantined mail is released:
//!
//! ```text
//! raw bytes ─ prepare: parse (bounded, panic-proof), classify, fingerprint   (crate::prepare)
//!           ─ seen before? (source position, or Message-ID + content fingerprint) ─▶ duplicate
//!           ─ load the snapshot: routing facts, the case, its people          (store::snapshot)
//!           ─ decide: a plan of effects, pure                                 (crate::decide)
//!           ─ apply, in ONE unit of work: journal row, raw mail, the effects  (store::apply)
//!           ─ consequences: survey offers, notifications                      (crate::consequences)
//! ```
//!
//! Exactly once: the duplicate checks run inside the same transaction that writes the
//! journal row, and the journal's keys are unique in the database, so two processes (the
//! daemon and a piped `ingest`, or two nodes on one PostgreSQL) can never both create a
//! case for one mail. On SQLite the transaction is `BEGIN IMMEDIATE` (one writer at a
//! time); on PostgreSQL the second writer of one mail is refused by the unique key, and
//! its batch is written again at once, where the mail is found a duplicate. Attachment
//! files are written inside the transaction window but outside SQLite; if it rolls back
//! they are unreferenced, which is harmless (see [`crate::store::blobs`]).
//!
//! A batch from a mailbox carries the mailbox's lease ([`Fence`]): it commits only while
//! the lease is this node's (`store::nodes::check_fence`, in the same transaction).
//!
//! This file holds the pipeline (batches, savepoints); `journal.rs` the journal's side
//! (duplicates, Message-ID reuse).

#[doc(hidden)]
pub mod fuzzing;
mod journal;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;

use crate::case::{CaseId, Event, Outcome, Reason};
use crate::config::Config;
use crate::consequences;
use crate::decide;
use crate::digest::sha256_hex;
use crate::notify::{Said, Trigger};
use crate::prepare::{self, Parsed};
use crate::store::apply::{self as applying, Journal, RawMail};
use crate::store::mails::{self, NewMail};
use crate::store::nodes::{self, Fence};
use crate::store::{self, is_conflict, is_systemic, packs, Scope, Store, UnitOfWork};
use journal::{Known, Seen};

/// Mails per transaction in bulk ingest: large enough that commits are cheap (a page that
/// many mails touch — an index leaf, the WAL's — is written once per batch; on PostgreSQL
/// a batch's questions asked ahead and its round trips are shared by more mails: 1,000
/// against 400 was about 7 % faster there, and the same on SQLite), small enough that a
/// batch commits within about a tenth of a second.
pub const DEFAULT_BATCH: usize = 1_000;
/// A bulk-ingest batch also ends once it holds this many bytes of mail.
pub const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// How often a batch is written again at once when another writer got in the way (on
/// PostgreSQL: another node recorded one of its mails first, or a deadlock).
const CONFLICT_RETRIES: usize = 5;

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
    /// What changed, in order (the notifications were queued from these).
    #[serde(skip)]
    pub events: Vec<Event>,
}

/// How a batch protects its mails from each other: see [`Gateway::ingest_prepared`].
#[derive(Debug, Clone, Copy)]
enum Guard {
    Batch,
    PerMail,
}

/// Where a mail's journal row comes from: a mail seen now, or a released one re-processed.
#[derive(Debug, Clone, Copy)]
enum Passage<'a> {
    New(&'a Origin),
    Replay { mail_id: i64 },
}

/// The ingest engine: configuration and the open store.
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

    /// Processes several mails in one unit of work: every mail is applied atomically (all
    /// of its effects or none), and the batch becomes durable at once, which is what makes
    /// bulk ingest fast. The reports are returned only after the commit, so a caller may
    /// then mark the mails processed at their source. On `Err` nothing of the batch was
    /// committed.
    pub fn ingest_batch(&mut self, mails: &[(&[u8], &Origin)]) -> anyhow::Result<Vec<IngestReport>> {
        let prepared = Prepared::many(&self.config, mails.iter().map(|(raw, _)| raw.to_vec()).collect());
        self.ingest_prepared(prepared.into_iter().zip(mails.iter().map(|(_, o)| *o)).collect())
    }

    /// [`Gateway::ingest_batch`] for mails already [`Prepared`] (possibly on another thread).
    pub fn ingest_prepared(&mut self, mails: Vec<(Prepared, &Origin)>) -> anyhow::Result<Vec<IngestReport>> {
        self.ingest_fenced(mails, None)
    }

    /// [`Gateway::ingest_prepared`] for a batch of a mailbox whose lease is `fence`:
    /// nothing is committed unless the lease is still this node's.
    pub fn ingest_fenced(
        &mut self,
        mails: Vec<(Prepared, &Origin)>,
        fence: Option<&Fence>,
    ) -> anyhow::Result<Vec<IngestReport>> {
        let mut conflicts = 0;
        let reports = loop {
            match self.write_all(&mails, fence) {
                Err(e) if is_conflict(&e) && conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    tracing::info!(error = %format!("{e:#}"), attempt = conflicts, "Another writer got in the way; writing the batch again");
                }
                other => break other?,
            }
        };
        let metrics = crate::metrics::global();
        for ((_, origin), report) in mails.iter().zip(&reports) {
            log_report(report, &origin.description, &self.config);
            metrics.mail(report.outcome, report.reason.as_deref());
        }
        Ok(reports)
    }

    /// Writes a batch, with a savepoint per mail only when needed.
    fn write_all(&mut self, mails: &[(Prepared, &Origin)], fence: Option<&Fence>) -> anyhow::Result<Vec<IngestReport>> {
        // A mail is atomic because a failure of casegate on it (a panic or an error that is
        // the mail's, not the database's: see `is_systemic`) can be undone. The batch is
        // first written without a savepoint per mail, which would copy every page a mail
        // touches; if a mail fails, that attempt is rolled back and the batch is written
        // again with one savepoint per mail, where the failing mail is undone alone and
        // quarantined, so it can neither stop the mail behind it nor be retried forever.
        Ok(match self.write_batch(mails, Guard::Batch, fence)? {
            Some(reports) => reports,
            None => {
                tracing::warn!(mails = mails.len(), "Writing the batch again mail by mail");
                self.write_batch(mails, Guard::PerMail, fence)?
                    .context("a mail failed although each mail was guarded")?
            }
        })
    }

    /// One attempt at a batch; `None` when a mail failed unguarded and the attempt was
    /// rolled back.
    fn write_batch(
        &mut self,
        mails: &[(Prepared, &Origin)],
        guard: Guard,
        fence: Option<&Fence>,
    ) -> anyhow::Result<Option<Vec<IngestReport>>> {
        let config = Arc::clone(&self.config);
        // Mail by mail, a failed mail's staged raw copy is taken back, so nothing may be
        // written before the batch ends; otherwise the pack is written as the batch goes.
        self.store.write(matches!(guard, Guard::Batch), |unit| {
            let mut reports = Vec::with_capacity(mails.len());
            // On PostgreSQL the journal, the loop breaker and what the mails refer to are
            // asked about the whole batch at once, and then the cases the mails name.
            let conn = unit.scope().conn;
            let mut known = None;
            if conn.is_postgres() {
                known = read_ahead(conn, mails, unit.scope().now)?;
                crate::store::cases::hold_ahead(conn, &named_cases(conn, &config, mails))?;
            }
            for (prepared, origin) in mails {
                let step = Step { config: &config, prepared, passage: Passage::New(origin), known: known.as_ref() };
                let report = match guard {
                    Guard::PerMail => step.run_guarded(unit)?,
                    Guard::Batch => match step.run_unguarded(&unit.scope())? {
                        Some(report) => report,
                        None => return Ok(None),
                    },
                };
                if let Some(known) = &mut known {
                    known.wrote(origin, prepared.message_id(), prepared);
                }
                reports.push(report);
            }
            // Last, so that the lease row is held (PostgreSQL) only until the commit.
            if let Some(fence) = fence {
                nodes::check_fence(unit.scope().conn, fence)?;
            }
            Ok(Some(reports))
        })
    }

    /// Processes a quarantined mail again (e.g. after the sender was added as a watcher,
    /// or a limit was raised). The same journal row gets the new outcome.
    pub fn release(&mut self, quarantine_id: i64) -> anyhow::Result<IngestReport> {
        let db = self.store.db();
        let q = mails::get_quarantine(db, quarantine_id)?.with_context(|| {
            format!("there is no quarantined mail #{quarantine_id}; `casegate quarantine list` shows them")
        })?;
        if let Some(at) = &q.released_at {
            anyhow::bail!("quarantined mail #{quarantine_id} was already released at {at}");
        }
        let record = mails::find_by_id(db, q.mail_id)?.context("journal row of a quarantined mail is missing")?;
        let raw = mails::raw(db, &self.config.data_dir.join(packs::DIR), &record.raw_sha256)?
            .context("raw copy of a quarantined mail is missing")?;
        let mut prepared = Prepared::new(&self.config, raw);
        // A person looked at the mail and released it: spam marks no longer hold it.
        if let Parsed::Mail(analyzed) = &mut prepared.parsed {
            analyzed.released_by_a_person();
        }
        let config = Arc::clone(&self.config);
        let report = self.store.write(false, |unit| {
            let passage = Passage::Replay { mail_id: record.id };
            let step = Step { config: &config, prepared: &prepared, passage, known: None };
            let report = step.run_guarded(unit)?;
            let scope = unit.scope();
            mails::mark_released(scope.conn, quarantine_id, report.outcome, scope.stamp)?;
            Ok(Some(report))
        })?;
        let report = report.context("the release was rolled back")?;
        log_report(&report, &format!("quarantine #{quarantine_id}"), &config);
        Ok(report)
    }
}

/// A mail made ready for the database — hashed, prepared (see [`crate::prepare`]) and
/// compressed — without touching the store, so it can be done on another thread while
/// the previous batch is written.
pub struct Prepared {
    /// Size of the raw mail (the bytes themselves are kept only compressed, in `packed`).
    size: usize,
    sha: String,
    /// What makes this mail this mail, whatever the transport added.
    fingerprint: String,
    packed: Vec<u8>,
    parsed: Parsed,
    /// Why the mail quotes our own automatic mails back, if it does (loop evidence, worked
    /// out here, on the preparing threads).
    quotes_ours: Option<String>,
}

impl Prepared {
    pub fn new(config: &Config, raw: Vec<u8>) -> Prepared {
        let sha = sha256_hex(&raw);
        let parsed = Parsed::of(config, &raw);
        let fingerprint = prepare::fingerprint(&parsed, &raw);
        let packed = mails::pack_raw(&raw);
        let quotes_ours = match &parsed {
            Parsed::Mail(analyzed) => crate::notify::quotes_ours(config, &analyzed.gist.words),
            Parsed::Rejected { .. } => None,
        };
        Prepared { size: raw.len(), sha, fingerprint, packed, parsed, quotes_ours }
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

/// One mail's passage through the unit of work.
struct Step<'a> {
    config: &'a Config,
    prepared: &'a Prepared,
    passage: Passage<'a>,
    /// What the journal held for the batch's mails when it began, if read ahead.
    known: Option<&'a Known>,
}

impl Step<'_> {
    /// Runs the mail in a savepoint of its own. A failure of casegate on it (a panic, or
    /// an error that is the mail's) undoes it alone and quarantines it instead: it is
    /// neither lost nor allowed to stop the daemon. A database error aborts the unit.
    fn run_guarded(&self, unit: &mut UnitOfWork<'_, '_>) -> anyhow::Result<IngestReport> {
        match unit.guarded(|scope| self.run(scope))? {
            Ok(report) => Ok(report),
            Err(undone) => {
                let what = if undone.panicked { "Processing a mail panicked" } else { "Processing a mail failed" };
                tracing::error!(error = %undone.what, "{what}; quarantining it");
                self.quarantine_failed(&unit.scope(), &undone.what)
            }
        }
    }

    /// Runs the mail directly in the unit's transaction; `None` if it failed (a panic, or
    /// an error that is the mail's), in which case the transaction holds part of its
    /// effects and must be rolled back.
    fn run_unguarded(&self, scope: &Scope<'_>) -> anyhow::Result<Option<IngestReport>> {
        match panic::catch_unwind(AssertUnwindSafe(|| self.run(scope))) {
            Ok(Ok(report)) => Ok(Some(report)),
            Ok(Err(e)) if is_systemic(&e) => Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "A mail could not be applied");
                Ok(None)
            }
            Err(panic) => {
                tracing::warn!(panic = %prepare::panic_message(&panic), "Processing a mail panicked");
                Ok(None)
            }
        }
    }

    /// Journals and quarantines a mail on which casegate itself failed (`internal-error`),
    /// after its own effects were rolled back.
    fn quarantine_failed(&self, scope: &Scope<'_>, what: &str) -> anyhow::Result<IngestReport> {
        // Seen before (its first passage failed the same way), it is a duplicate still.
        if let Err(duplicate) = self.seen(scope)? {
            return Ok(duplicate);
        }
        let headers = self.prepared.parsed.headers();
        let plan =
            decide::mail::rejected(headers, Reason::InternalError, &format!("casegate failed on this mail: {what}"));
        self.record(scope, &plan)
    }

    /// The mail's passage: a duplicate writes nothing; anything else is decided on a
    /// snapshot, applied, and followed by its consequences.
    fn run(&self, scope: &Scope<'_>) -> anyhow::Result<IngestReport> {
        #[cfg(test)]
        tests::fail_if_asked(&self.prepared.parsed)?;
        let reused = match self.seen(scope)? {
            Ok(reused) => reused,
            Err(duplicate) => return Ok(duplicate),
        };
        let message_id = self.prepared.message_id();
        let plan = match &self.prepared.parsed {
            Parsed::Mail(analyzed) => {
                let snapshot = store::snapshot::for_analyzed(scope.conn, self.config, analyzed, scope.now)?;
                let account = match self.passage {
                    Passage::New(origin) => origin.account.as_deref(),
                    Passage::Replay { .. } => None,
                };
                decide::mail::plan(self.config, analyzed, &snapshot, account, scope.now)
            }
            Parsed::Rejected { reason, detail, headers, .. } => {
                decide::mail::rejected(headers.as_deref(), *reason, detail)
            }
        };
        let report = self.record(scope, &plan)?;
        if let Some(id) = message_id.filter(|_| !reused.is_empty()) {
            journal::record_reuse(scope, self.config, id, &reused, &report)?;
        }
        Ok(report)
    }

    /// Whether the journal knows the mail: `Err` with the report of a duplicate (which
    /// writes nothing), else the earlier mails that used its Message-ID, if any.
    fn seen(&self, scope: &Scope<'_>) -> anyhow::Result<Result<Vec<mails::MailRecord>, IngestReport>> {
        let Passage::New(origin) = self.passage else { return Ok(Ok(Vec::new())) };
        let message_id = self.prepared.message_id();
        Ok(match journal::seen_before(scope.conn, self.config, origin, message_id, self.prepared, self.known)? {
            Seen::Duplicate(found, why) => Err(journal::duplicate_report(found, why, message_id, self.config)),
            Seen::IdReused(earlier) => Ok(earlier),
            Seen::New => Ok(Vec::new()),
        })
    }

    /// Applies `plan` under the mail's journal row and follows up its events.
    fn record(&self, scope: &Scope<'_>, plan: &decide::Plan<'_>) -> anyhow::Result<IngestReport> {
        let prepared = self.prepared;
        let headers = prepared.parsed.headers();
        let message_id = headers.and_then(|m| m.message_id.as_deref());
        let key = journal::dedupe_key(message_id, prepared);
        let journal = match self.passage {
            Passage::New(origin) => Journal::New {
                mail: NewMail {
                    origin: &origin.description,
                    source: origin.source.as_deref(),
                    source_key: origin.source_key.as_deref(),
                    message_id,
                    dedupe_key: &key,
                    raw_sha256: &prepared.sha,
                    from: headers.and_then(|m| m.from_address()).map(|a| a.as_str()),
                    subject: headers.map(|m| m.subject.as_str()),
                    node: Some(&self.config.storage.node),
                },
                raw: RawMail { sha256: &prepared.sha, size: prepared.size, packed: &prepared.packed },
            },
            Passage::Replay { mail_id } => Journal::Replay { mail_id },
        };
        let applied = applying::apply(scope, plan, journal)?;
        // Notifications are rows of the same unit: they exist exactly when the change they
        // announce was committed.
        let no_answers = prepared.parsed.no_answers();
        let said = match &prepared.parsed {
            Parsed::Mail(analyzed) => Some(Said { gist: &analyzed.gist, quotes_ours: prepared.quotes_ours.as_deref() }),
            Parsed::Rejected { .. } => None,
        };
        let trigger = headers.map(|mail| Trigger { mail, no_answers, said });
        consequences::follow(scope, self.config, applied.events.clone(), trigger)?;
        Ok(IngestReport {
            mail_id: applied.mail_id,
            message_id: message_id.map(str::to_string),
            outcome: plan.outcome,
            case: applied.case,
            reason: plan.reason.clone(),
            first_outcome: None,
            events: applied.events,
        })
    }
}

/// Asks the journal (what it holds for the batch's mails), the loop breaker (see
/// `store::loops::ReadAhead`) and what the mails refer to (see
/// `store::references::ReadAhead`) about a whole batch, in one round trip; the journal's
/// answers, unless a key of the batch cannot be listed.
fn read_ahead(
    conn: crate::store::db::Db<'_>,
    mails: &[(Prepared, &Origin)],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<Known>> {
    let (mut keys, mut senders) = (Vec::new(), Vec::new());
    let mut ancestors: Vec<&str> = Vec::new();
    for (prepared, _) in mails {
        let Parsed::Mail(analyzed) = &prepared.parsed else { continue };
        ancestors.extend(analyzed.mail.ancestors());
        let Some(from) = analyzed.mail.from_address() else { continue };
        if let Some(key) = &analyzed.gist.key {
            keys.push(crate::classify::opening_key(key, from.as_str()));
        }
        senders.push(crate::store::outbox::recipients_json(from));
    }
    keys.sort();
    keys.dedup();
    senders.sort();
    senders.dedup();
    // The loop breaker's window is a day; an hour more covers a batch that runs long.
    let since = crate::store::stamp(now - chrono::Duration::hours(25));
    let mut loops = crate::store::loops::ReadAhead::new(conn, &keys, &senders, &since);
    let mut references = crate::store::references::ReadAhead::new(conn, ancestors);
    let journal = Known::listable(mails).then(|| Known::lists(mails));
    let mut queries: Vec<(&str, Vec<crate::store::db::Value<'_>>)> = Vec::new();
    if let Some(journal) = &journal {
        queries.extend(journal.queries());
    }
    let asked_journal = queries.len();
    if let Some(loops) = &loops {
        queries.extend(loops.queries());
    }
    let asked_loops = queries.len();
    if let Some(references) = &references {
        queries.extend(references.queries());
    }
    let queries: Vec<(&str, &[crate::store::db::Value<'_>])> =
        queries.iter().map(|(sql, params)| (*sql, params.as_slice())).collect();
    let mut known = journal.as_ref().map(|_| Known::default());
    conn.query_many(&queries, |i, row| match (&mut known, &mut loops, &mut references) {
        (Some(known), _, _) if i < asked_journal => known.take(i, row),
        (_, Some(loops), _) if i < asked_loops => loops.take(i - asked_journal, row),
        (_, _, Some(references)) => references.take(i - asked_loops, row),
        _ => unreachable!("a row answers a query asked"),
    })?;
    if let Some(loops) = loops {
        loops.keep(conn);
    }
    if let Some(references) = references {
        references.keep(conn);
    }
    Ok(known)
}

/// The cases a batch's mails name, as routing will look for them (`route::route`): a
/// mail's subject tokens (the first few), or else the case of the first Message-ID it
/// refers to that names one (as read ahead: see `store::references`).
fn named_cases(conn: crate::store::db::Db<'_>, config: &Config, mails: &[(Prepared, &Origin)]) -> Vec<CaseId> {
    /// Routing takes the first token that names a case; more than a few tokens in one
    /// subject are left to be read when routing gets to them.
    const TOKENS_READ_AHEAD: usize = 4;
    let mut named = Vec::new();
    for (prepared, _) in mails {
        let Parsed::Mail(analyzed) = &prepared.parsed else { continue };
        let tokens = config.tokens.tokens(&analyzed.mail.subject);
        if tokens.is_empty() {
            let by_reference = analyzed
                .mail
                .ancestors()
                .into_iter()
                .find_map(|id| crate::store::references::case_read_ahead(conn, id).flatten());
            named.extend(by_reference);
        } else {
            named.extend(tokens.into_iter().take(TOKENS_READ_AHEAD));
        }
    }
    named
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vals;

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

        let count = |g: &Gateway, sql: &str| g.store.db().query_one(sql, vals![], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(count(&gateway, "SELECT count(*) FROM cases"), 2, "nothing of the panicking mail's case is left");
        assert_eq!(count(&gateway, "SELECT count(*) FROM mails"), 3, "every mail is journalled once");
        assert_eq!(count(&gateway, "SELECT count(*) FROM quarantine"), 1);
        let subjects: Vec<String> =
            gateway.store.db().query_map("SELECT subject FROM cases ORDER BY id", vals![], |r| r.get(0)).unwrap();
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
        let packs_dir = gateway.store.packs().expect("SQLite").borrow().dir().to_path_buf();
        for (i, raw) in raws.iter().enumerate() {
            let sha = sha256_hex(raw);
            let stored = mails::raw(gateway.store.db(), &packs_dir, &sha).unwrap();
            assert_eq!(stored.as_ref(), Some(raw), "mail {i}");
        }
        let recorded: i64 =
            gateway.store.db().query_one("SELECT sum(pack_length) FROM raw_mails", vals![], |r| r.get(0)).unwrap();
        let on_disk: u64 = std::fs::read_dir(&packs_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert_eq!(on_disk, recorded as u64);
    }

    #[test]
    fn mails_journalled_before_fingerprints_are_still_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("data_dir = {:?}\nsystem_addresses = [\"support@example.com\"]\n", dir.path().join("var"));
        let config = Config::from_toml(&toml, &dir.path().join("casegate.toml")).unwrap();
        let mut gateway = Gateway::open(Arc::new(config)).unwrap();
        let with_id = mail(1, "Printer");
        let without_id =
            b"From: a@customer.example\r\nTo: support@example.com\r\nSubject: No id\r\n\r\nhi\r\n".to_vec();
        for (raw, name) in [(&with_id, "a.eml"), (&without_id, "b.eml")] {
            assert_eq!(gateway.ingest(raw, &Origin::file(name)).unwrap().outcome, Outcome::Created);
        }
        // Keys as written before fingerprints existed.
        gateway
            .store
            .db()
            .execute("UPDATE mails SET dedupe_key = 'mid:' || message_id WHERE message_id IS NOT NULL", vals![])
            .unwrap();

        let outcome = |g: &mut Gateway, raw: &[u8]| g.ingest(raw, &Origin::file("again.eml")).unwrap().outcome;
        assert_eq!(outcome(&mut gateway, &with_id), Outcome::Duplicate, "the same bytes");
        assert_eq!(outcome(&mut gateway, &without_id), Outcome::Duplicate, "the same bytes, no Message-ID");
        let relayed = [b"Received: from relay.example by mx.example.com\r\n".as_slice(), &with_id].concat();
        assert_eq!(outcome(&mut gateway, &relayed), Outcome::Duplicate, "the same content, read from the stored copy");
        let other = String::from_utf8(with_id.clone()).unwrap().replace("Body 1", "Another body");
        assert_eq!(outcome(&mut gateway, other.as_bytes()), Outcome::Created, "the same Message-ID, other content");
    }

    #[test]
    fn a_damaged_raw_copy_is_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("data_dir = {:?}\nsystem_addresses = [\"support@example.com\"]\n", dir.path().join("var"));
        let config = Config::from_toml(&toml, &dir.path().join("casegate.toml")).unwrap();
        let mut gateway = Gateway::open(Arc::new(config)).unwrap();
        let raw = mail(1, "Printer");
        gateway.ingest(&raw, &Origin::file("m1.eml")).unwrap();
        let packs_dir = gateway.store.packs().expect("SQLite").borrow().dir().to_path_buf();
        let (pack, offset): (String, i64) = gateway
            .store
            .db()
            .query_one("SELECT pack, pack_offset FROM raw_mails", vals![], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        // One byte of the mail's text changed on disk (LZ4 stores short text as literals).
        let path = packs_dir.join(pack);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = offset as usize + bytes[offset as usize..].windows(6).position(|w| w == b"Body 1").unwrap();
        bytes[at] = b'X';
        std::fs::write(&path, bytes).unwrap();
        let err = mails::raw(gateway.store.db(), &packs_dir, &sha256_hex(&raw)).unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
        // A pack that is gone is named.
        std::fs::remove_file(&path).unwrap();
        let err = format!("{:#}", mails::raw(gateway.store.db(), &packs_dir, &sha256_hex(&raw)).unwrap_err());
        assert!(err.contains("cannot read raw mail") && err.contains(".pack"), "{err}");
    }
}
