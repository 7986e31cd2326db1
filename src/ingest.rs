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

use crate::address::Address;
use crate::authorize::{self, Standing};
use crate::case::{CaseId, Event, Impact, MessageKind, Notice, Outcome, ParticipantRole, Status};
use crate::classify;
use crate::config::Config;
use crate::fields;
use crate::notify;
use crate::parse::{self, reply, InboundMail};
use crate::route::{self, Route, TokenMatcher};
use crate::store::blobs::sha256_hex;
use crate::store::cases::{self as case_store, AttachmentView, NewCase, NewMessage};
use crate::store::mails::{self, MailRecord, NewMail};
use crate::store::{self, Store};

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
        Origin {
            description: format!("file:{path}"),
            ..Default::default()
        }
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
}

/// What to do with a parsed mail; decided from the mail and the database, then applied.
#[derive(Debug)]
enum Decision {
    Quarantine {
        case: Option<CaseId>,
        code: &'static str,
        detail: String,
    },
    Ignore {
        reason: String,
    },
    /// Machine mail on a known case: recorded on the thread, nothing else changes.
    Auto {
        case: CaseId,
        reason: String,
    },
    NewCase {
        note: Option<String>,
        linked: Option<CaseId>,
    },
    Reply {
        case: CaseId,
        standing: Standing,
    },
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
        Gateway {
            config,
            store,
            tokens,
        }
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
    pub fn ingest_batch(
        &mut self,
        mails: &[(&[u8], &Origin)],
    ) -> anyhow::Result<Vec<IngestReport>> {
        // Parsing happens before the write lock is taken: it is the expensive, pure part.
        let prepared: Vec<(String, Parsed)> = mails
            .iter()
            .map(|(raw, _)| (sha256_hex(raw), self.parse_guarded(raw)))
            .collect();
        let config = Arc::clone(&self.config);
        let tokens = self.tokens.clone();
        let blobs = self.store.blobs.clone();
        let mut tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut reports = Vec::with_capacity(mails.len());
        for ((raw, origin), (sha, parsed)) in mails.iter().zip(&prepared) {
            let step = Step {
                config: &config,
                tokens: &tokens,
                blobs: &blobs,
                raw,
                sha,
                journal: Journal::New(origin),
            };
            reports.push(step.run(&mut tx, parsed)?);
        }
        tx.commit()?;
        for ((_, origin), report) in mails.iter().zip(&reports) {
            log_report(report, &origin.description, &config);
        }
        Ok(reports)
    }

    /// Processes a quarantined mail again (e.g. after the sender was added as a watcher,
    /// or a limit was raised). The same journal row gets the new outcome.
    pub fn release(&mut self, quarantine_id: i64) -> anyhow::Result<IngestReport> {
        let q = mails::get_quarantine(&self.store.conn, quarantine_id)?
            .with_context(|| format!("there is no quarantined mail #{quarantine_id}; `casegate quarantine list` shows them"))?;
        if let Some(at) = &q.released_at {
            anyhow::bail!("quarantined mail #{quarantine_id} was already released at {at}");
        }
        let record = mails::find_by_id(&self.store.conn, q.mail_id)?
            .context("journal row of a quarantined mail is missing")?;
        let raw = mails::raw(&self.store.conn, &record.raw_sha256)?
            .context("raw copy of a quarantined mail is missing")?;
        let sha = sha256_hex(&raw);
        let parsed = self.parse_guarded(&raw);
        let config = Arc::clone(&self.config);
        let tokens = self.tokens.clone();
        let blobs = self.store.blobs.clone();
        let mut tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let step = Step {
            config: &config,
            tokens: &tokens,
            blobs: &blobs,
            raw: &raw,
            sha: &sha,
            journal: Journal::Replay { mail_id: record.id },
        };
        let report = step.run(&mut tx, &parsed)?;
        mails::mark_released(&tx, quarantine_id, report.outcome, &store::now())?;
        tx.commit()?;
        log_report(&report, &format!("quarantine #{quarantine_id}"), &config);
        Ok(report)
    }

    fn parse_guarded(&self, raw: &[u8]) -> Parsed {
        let limit = self.config.max_message_bytes;
        if raw.len() > limit {
            return Parsed::Rejected {
                code: reasons::TOO_LARGE,
                detail: format!(
                    "{} bytes, over limits.max_message_bytes = {limit}",
                    raw.len()
                ),
                headers: parse::parse_headers(raw).map(Box::new),
            };
        }
        // mail-parser promises not to panic; the guard keeps that promise from being
        // load-bearing for the daemon.
        match panic::catch_unwind(|| parse::parse(raw)) {
            Ok(Some(mail)) => Parsed::Mail(Box::new(mail)),
            Ok(None) => Parsed::Rejected {
                code: reasons::UNPARSEABLE,
                detail: "no mail headers found".into(),
                headers: None,
            },
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
    blobs: &'a store::BlobStore,
    raw: &'a [u8],
    sha: &'a str,
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
            if let Some(found) = find_duplicate(conn, origin, message_id.as_deref(), self.sha)? {
                // Nothing is written for a duplicate: the database stays exactly as it was.
                return Ok(duplicate_report(found, message_id, self.config));
            }
        }
        let mut w = Writer {
            tx: conn,
            config: self.config,
            now: store::now(),
            events: Vec::new(),
        };
        let (raw, sha, journal) = (self.raw, self.sha, self.journal);
        match parsed {
            Parsed::Rejected { code, detail, .. } => {
                let reason = format!("{code}: {detail}");
                let mail_id = w.journal(
                    journal,
                    raw,
                    sha,
                    headers,
                    Outcome::Quarantined,
                    None,
                    Some(&reason),
                )?;
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
                let report = w.apply(
                    decision,
                    mail,
                    journal,
                    raw,
                    sha,
                    origin_account,
                    self.blobs,
                )?;
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

fn duplicate_report(
    (found, why): (MailRecord, &str),
    message_id: Option<String>,
    config: &Config,
) -> IngestReport {
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
        reason: Some(format!(
            "{why}: mail #{} from {}, outcome {first}",
            found.id, found.origin
        )),
        events: Vec::new(),
    }
}

/// Classify, route and authorize: what should happen to this mail.
fn decide(
    tx: &Connection,
    config: &Config,
    tokens: &TokenMatcher,
    mail: &InboundMail,
) -> rusqlite::Result<Decision> {
    let ctx = classify::Context {
        system_addresses: &config.system_addresses,
        instance_id: &config.instance_id,
    };
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
    match route {
        Route::New { note } => Ok(Decision::NewCase { note, linked: None }),
        Route::Existing { case, .. } => {
            let row =
                case_store::case_row(tx, case)?.expect("routing only returns cases that exist");
            let people = case_store::participants(tx, case)?;
            let authenticated = authorize::is_authenticated(config, mail);
            let standing = authorize::standing(
                config,
                sender,
                authenticated,
                &people,
                row.account.as_deref(),
            );
            if !standing.is_participant() {
                return Ok(Decision::Quarantine {
                    case: Some(case),
                    code: reasons::SENDER_NOT_PARTICIPANT,
                    detail: format!(
                        "{sender} is not a participant of {}",
                        config.case_token(case)
                    ),
                });
            }
            if row.status == Status::Closed {
                let note = format!(
                    "{} is closed; a new case was opened that links it",
                    config.case_token(case)
                );
                return Ok(Decision::NewCase {
                    note: Some(note),
                    linked: Some(case),
                });
            }
            Ok(Decision::Reply { case, standing })
        }
    }
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
        raw: &[u8],
        sha: &str,
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
                mails::store_raw(self.tx, sha, raw)?;
                let message_id = headers.and_then(|m| m.message_id.as_deref());
                let key = dedupe_key(message_id, sha);
                mails::insert_mail(
                    self.tx,
                    &NewMail {
                        origin: &origin.description,
                        source: origin.source.as_deref(),
                        source_key: origin.source_key.as_deref(),
                        message_id,
                        dedupe_key: &key,
                        raw_sha256: sha,
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
        mails::audit(
            self.tx,
            Some(mail_id),
            case,
            None,
            "quarantined",
            Some(&format!("{code}: {detail}")),
            &self.now,
        )?;
        Ok(self.report(
            mail_id,
            Outcome::Quarantined,
            case,
            Some(format!("{code}: {detail}")),
        ))
    }

    fn report(
        &mut self,
        mail_id: i64,
        outcome: Outcome,
        case: Option<CaseId>,
        reason: Option<String>,
    ) -> IngestReport {
        IngestReport {
            mail_id: Some(mail_id),
            message_id: None,
            outcome,
            case,
            reason,
            events: std::mem::take(&mut self.events),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        decision: Decision,
        mail: &InboundMail,
        journal: Journal<'_>,
        raw: &[u8],
        sha: &str,
        origin_account: Option<&str>,
        blobs: &store::BlobStore,
    ) -> anyhow::Result<IngestReport> {
        let sender = mail.from_address();
        let mut report = match decision {
            Decision::Quarantine { case, code, detail } => {
                let reason = format!("{code}: {detail}");
                let mail_id = self.journal(
                    journal,
                    raw,
                    sha,
                    Some(mail),
                    Outcome::Quarantined,
                    case,
                    Some(&reason),
                )?;
                if let (Some(to), Ok(())) = (sender, classify::auto_response_allowed(mail)) {
                    self.events.push(Event::Notice {
                        to: to.clone(),
                        case,
                        notice: Notice::NotApplied { reason: code.to_string() },
                        in_reply_to: mail.message_id.clone(),
                    });
                }
                self.quarantine(mail_id, case, code, &detail)?
            }
            Decision::Ignore { reason } => {
                let mail_id = self.journal(
                    journal,
                    raw,
                    sha,
                    Some(mail),
                    Outcome::Ignored,
                    None,
                    Some(&reason),
                )?;
                mails::audit(
                    self.tx,
                    Some(mail_id),
                    None,
                    sender.map(Address::as_str),
                    "ignored",
                    Some(&reason),
                    &self.now,
                )?;
                self.report(mail_id, Outcome::Ignored, None, Some(reason))
            }
            Decision::Auto { case, reason } => {
                let mail_id = self.journal(
                    journal,
                    raw,
                    sha,
                    Some(mail),
                    Outcome::Replied,
                    Some(case),
                    Some(&reason),
                )?;
                // Recorded for the analysts, but the case itself does not change: no status,
                // watcher or updated_at change, and no notification.
                let body = reply::new_text_of(mail);
                self.add_message(case, mail_id, mail, MessageKind::Auto, &body, blobs)?;
                mails::audit(
                    self.tx,
                    Some(mail_id),
                    Some(case),
                    sender.map(Address::as_str),
                    "auto-recorded",
                    Some(&reason),
                    &self.now,
                )?;
                self.report(mail_id, Outcome::Replied, Some(case), Some(reason))
            }
            Decision::NewCase { note, linked } => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                self.new_case(
                    mail,
                    sender,
                    note,
                    linked,
                    journal,
                    raw,
                    sha,
                    origin_account,
                    blobs,
                )?
            }
            Decision::Reply { case, standing } => {
                let sender = sender.expect("decide() quarantines mail without a sender");
                let mail_id = self.journal(
                    journal,
                    raw,
                    sha,
                    Some(mail),
                    Outcome::Replied,
                    Some(case),
                    None,
                )?;
                let kind = if standing.staff {
                    MessageKind::Staff
                } else {
                    MessageKind::Customer
                };
                let body = reply::new_text_of(mail);
                let message = self.add_message(case, mail_id, mail, kind, &body, blobs)?;
                self.events.push(Event::Replied {
                    case,
                    message,
                    kind,
                    from: Some(sender.clone()),
                });
                self.add_watchers(case, mail, sender, "cc")?;
                case_store::touch(self.tx, case, &self.now)?;
                let detail = format!("{} replied as {}", sender, standing.role_name());
                mails::audit(
                    self.tx,
                    Some(mail_id),
                    Some(case),
                    Some(sender.as_str()),
                    "replied",
                    Some(&detail),
                    &self.now,
                )?;
                self.report(mail_id, Outcome::Replied, Some(case), None)
            }
        };
        report.message_id = mail.message_id.clone();
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_case(
        &mut self,
        mail: &InboundMail,
        sender: &Address,
        note: Option<String>,
        linked: Option<CaseId>,
        journal: Journal<'_>,
        raw: &[u8],
        sha: &str,
        origin_account: Option<&str>,
        blobs: &store::BlobStore,
    ) -> anyhow::Result<IngestReport> {
        let text = mail.text.as_str();
        let subject = if mail.subject.trim().is_empty() {
            "(no subject)"
        } else {
            mail.subject.as_str()
        };
        let account = self.config.account_for(sender).or(origin_account);
        let environment = fields::environment_of(text);
        let case = case_store::insert_case(
            self.tx,
            &NewCase {
                subject,
                description: text,
                impact: fields::impact_of(mail, text).unwrap_or(Impact::Medium),
                account,
                environment: environment.as_deref(),
                linked_case: linked,
            },
            &self.now,
        )?;
        let mail_id = self.journal(
            journal,
            raw,
            sha,
            Some(mail),
            Outcome::Created,
            Some(case),
            note.as_deref(),
        )?;
        case_store::add_participant(
            self.tx,
            case,
            sender,
            ParticipantRole::Requester,
            "sender",
            None,
            &self.now,
        )?;
        case_store::add_participant(
            self.tx,
            case,
            sender,
            ParticipantRole::Contact,
            "sender",
            None,
            &self.now,
        )?;
        let authenticated = authorize::is_authenticated(self.config, mail);
        let (staff, _) = authorize::privileges(self.config, sender, authenticated);
        let kind = if staff {
            MessageKind::Staff
        } else {
            MessageKind::Customer
        };
        let message = self.add_message(case, mail_id, mail, kind, text, blobs)?;
        self.events.push(Event::Created { case, message });
        if let Some(closed) = linked {
            self.events.push(Event::Notice {
                to: sender.clone(),
                case: Some(case),
                notice: Notice::FollowUpOpened { closed },
                in_reply_to: mail.message_id.clone(),
            });
        }
        self.add_watchers(case, mail, sender, "cc")?;
        let detail = match &note {
            Some(n) => format!("opened by {sender}; {n}"),
            None => format!("opened by {sender}"),
        };
        mails::audit(
            self.tx,
            Some(mail_id),
            Some(case),
            Some(sender.as_str()),
            "case-created",
            Some(&detail),
            &self.now,
        )?;
        Ok(self.report(mail_id, Outcome::Created, Some(case), note))
    }

    /// Adds a thread entry with its attachments and links its Message-ID to the case.
    fn add_message(
        &mut self,
        case: CaseId,
        mail_id: i64,
        mail: &InboundMail,
        kind: MessageKind,
        body: &str,
        blobs: &store::BlobStore,
    ) -> anyhow::Result<i64> {
        let message = case_store::insert_message(
            self.tx,
            &NewMessage {
                case,
                mail_id: Some(mail_id),
                message_id: mail.message_id.as_deref(),
                kind,
                from: mail.from_address(),
                body,
            },
            &self.now,
        )?;
        for a in &mail.attachments {
            let sha256 = blobs
                .put(&a.data)
                .with_context(|| format!("cannot store attachment {:?}", a.filename))?;
            let view = AttachmentView {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                size: a.data.len() as u64,
                sha256,
                disposition: a.disposition,
            };
            case_store::insert_attachment(self.tx, message, &view, a.content_id.as_deref())?;
        }
        if let Some(id) = &mail.message_id {
            case_store::link_message_id(self.tx, id, case, false)?;
        }
        Ok(message)
    }

    /// To/Cc addresses other than system addresses, the sender and existing participants
    /// become watchers, added by the sender.
    fn add_watchers(
        &mut self,
        case: CaseId,
        mail: &InboundMail,
        sender: &Address,
        via: &str,
    ) -> rusqlite::Result<()> {
        let existing = case_store::participants(self.tx, case)?;
        for mb in mail.to.iter().chain(mail.cc.iter()) {
            let a = &mb.address;
            if a == sender
                || self.config.is_system_address(a)
                || existing.iter().any(|(p, _)| p == a)
            {
                continue;
            }
            let via = if mail.cc.iter().any(|c| &c.address == a) {
                via
            } else {
                "to"
            };
            if case_store::add_participant(
                self.tx,
                case,
                a,
                ParticipantRole::Watcher,
                via,
                Some(sender),
                &self.now,
            )? {
                self.events.push(Event::WatcherAdded {
                    case,
                    address: a.clone(),
                    by: Some(sender.clone()),
                });
                mails::audit(
                    self.tx,
                    None,
                    Some(case),
                    Some(sender.as_str()),
                    "watcher-added",
                    Some(&format!("{a} via {via}")),
                    &self.now,
                )?;
            }
        }
        Ok(())
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
