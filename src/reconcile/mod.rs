//! `casegate reconcile`: each mailbox's folders on the server against the journal.
//!
//! - **Watched folder**: mail still unmarked there (not moved, not `\Seen`, not deleted,
//!   as `mark` says) whose position (UIDVALIDITY and UID) the journal has as committed:
//!   the server was never told. With `--fix` it is marked, by the daemon's own marking
//!   ([`crate::source::imap::mark_committed`]). Unmarked mail the journal does not know
//!   is only counted: it waits for the daemon.
//! - **Processed folder** (`mark = "move"`): mail there the journal does not know, by
//!   Message-ID (or, without one, by its bytes): someone put it there, or it was moved by
//!   hand before casegate saw it. With `--fix` it is processed through the daemon's writer
//!   exactly as if it had arrived (quarantined ones are then moved to the quarantine folder).
//! - **Quarantine folder** against the quarantine table (unreleased rows of mail from this
//!   mailbox): mail in one and not in the other is reported, not changed — a person
//!   decides whether to release, delete or put back.
//!
//! The daemon reconciles committed-but-unmarked mail at or below its checkpoint by itself
//! on every start; this command looks at everything, also while the daemon runs (marking
//! twice is harmless, and processing goes through the journal's duplicate checks).

pub mod folders;

use crate::oauth::Credentials;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::case::Outcome;
use crate::config::{Config, MailboxConfig, MarkProcessed};
use crate::ingest::Origin;
use crate::source::imap::{self, Watcher};
use crate::source::{Settled, SourceMail, WriterHandle};
use crate::store::db::{Db, DbResult};
use crate::store::{mails, Session};
use folders::{Identity, Reader};

/// Told how far reconciling is, for a progress bar or progress lines.
pub trait Progress {
    /// A new step: `what`, with `total` mails to look at.
    fn start(&self, what: &str, total: u64);
    fn advance(&self, mails: u64);
    fn finish(&self);
}

/// What was found in one mailbox (and, with `--fix`, done).
#[derive(Debug, Clone, Serialize)]
pub struct MailboxReport {
    pub mailbox: String,
    pub folder: String,
    pub uidvalidity: u32,
    /// Every UID up to this one is committed and marked, as far as the daemon knows.
    pub checkpoint: Option<u32>,
    /// Committed, but still unmarked in the watched folder.
    pub unmarked: Vec<Unmarked>,
    /// Unmarked mail the journal does not know: waiting for the daemon.
    pub waiting: usize,
    /// `None` unless `mark = "move"` (only then is there a processed folder).
    pub processed: Option<ProcessedReport>,
    pub quarantine: QuarantineReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unmarked {
    pub uid: u32,
    pub message_id: Option<String>,
    pub outcome: Outcome,
    pub case: Option<String>,
    /// Marked now (`--fix`).
    pub marked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessedReport {
    pub folder: String,
    /// Mails in the folder, all looked at.
    pub checked: usize,
    /// Mails the journal does not know.
    pub unknown: Vec<Unknown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    pub uid: u32,
    pub message_id: Option<String>,
    /// What processing it gave (`--fix`).
    pub ingested: Option<Ingested>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ingested {
    pub outcome: Outcome,
    pub case: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuarantineReport {
    pub folder: String,
    pub in_folder: usize,
    pub in_table: usize,
    /// In the quarantine folder without an unreleased quarantine row (released since,
    /// or put there by someone).
    pub not_in_table: Vec<FolderMail>,
    /// Quarantined, but not in the quarantine folder (moved away or deleted by someone,
    /// or not marked yet).
    pub not_in_folder: Vec<TableRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FolderMail {
    pub uid: u32,
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    pub quarantine_id: i64,
    pub message_id: Option<String>,
    pub reason: String,
}

impl MailboxReport {
    /// Whether anything is out of step (what remains after `--fix`).
    pub fn problems(&self) -> usize {
        self.unmarked.iter().filter(|u| !u.marked).count()
            + self.processed.as_ref().map_or(0, |p| p.unknown.iter().filter(|u| u.ingested.is_none()).count())
            + self.quarantine.not_in_table.len()
            + self.quarantine.not_in_folder.len()
    }
}

/// What a run needs: the configuration (the journal is read through it), and for
/// `--fix` the database writer the daemon uses.
pub struct Context<'a> {
    pub config: &'a Arc<Config>,
    pub writer: Option<WriterHandle>,
    pub progress: &'a dyn Progress,
}

impl Context<'_> {
    /// Reads the journal on the blocking pool, with a session of its own (database calls
    /// never run on the async runtime's threads).
    async fn journal<T: Send + 'static>(
        &self,
        read: impl FnOnce(Db<'_>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let config = Arc::clone(self.config);
        tokio::task::spawn_blocking(move || {
            let session = Session::open(&config)?;
            read(session.db())
        })
        .await
        .context("the journal task failed")?
    }
}

/// Reconciles one mailbox; with a writer in `ctx`, fixes what can be fixed.
pub async fn mailbox(
    ctx: &Context<'_>,
    mb: &MailboxConfig,
    credentials: &Credentials,
) -> anyhow::Result<MailboxReport> {
    let mut reader = Reader::open(mb, credentials).await?;
    let result = inspect(ctx, &mut reader, mb).await;
    reader.close().await;
    let mut report = result?;
    if let Some(writer) = &ctx.writer {
        let watcher = Watcher {
            mailbox: Arc::new(mb.clone()),
            credentials: credentials.clone(),
            writer: writer.clone(),
            shutdown: CancellationToken::new(),
            once: true,
            // Reconciling is an operator's, beside whichever node works the mailbox: it
            // marks only what is committed, and processes through the journal's checks.
            lease: None,
        };
        fix(ctx, &watcher, &mut report).await?;
    }
    Ok(report)
}

/// Reads the three folders and compares them with the journal; changes nothing.
async fn inspect(ctx: &Context<'_>, reader: &mut Reader, mb: &MailboxConfig) -> anyhow::Result<MailboxReport> {
    let uidvalidity = reader
        .examine(&mb.folder)
        .await?
        .with_context(|| format!("folder {:?} does not exist for {}", mb.folder, mb.username()))?;
    let unmarked_query = match mb.mark {
        MarkProcessed::Seen => "UNSEEN NOT DELETED",
        MarkProcessed::Move | MarkProcessed::Delete => "NOT DELETED",
    };
    let name = mb.name.clone();
    let checkpoint = ctx.journal(move |db| checkpoint(db, &name, uidvalidity)).await?;
    let mut report = MailboxReport {
        mailbox: mb.name.clone(),
        folder: mb.folder.clone(),
        uidvalidity,
        checkpoint,
        unmarked: Vec::new(),
        waiting: 0,
        processed: None,
        quarantine: QuarantineReport::default(),
    };
    let uids = reader.search(unmarked_query).await?;
    let name = mb.name.clone();
    let found = ctx
        .journal(move |db| {
            uids.into_iter()
                .map(|uid| Ok((uid, mails::find_by_position(db, &name, &format!("{uidvalidity}:{uid}"))?)))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await?;
    for (uid, found) in found {
        match found {
            Some(found) => report.unmarked.push(Unmarked {
                uid,
                message_id: found.message_id,
                outcome: found.outcome,
                case: found.case_id.map(|c| ctx.config.case_token(c)),
                marked: false,
            }),
            None => report.waiting += 1,
        }
    }
    if mb.mark == MarkProcessed::Move {
        report.processed = Some(processed(ctx, reader, &mb.processed_folder).await?);
    }
    report.quarantine = quarantine(ctx, reader, mb).await?;
    Ok(report)
}

/// The daemon's checkpoint, when it is for this UIDVALIDITY.
fn checkpoint(db: Db<'_>, mailbox: &str, uidvalidity: u32) -> anyhow::Result<Option<u32>> {
    let row = crate::store::nodes::checkpoint(db, mailbox)?;
    Ok(row.filter(|(v, _)| *v == i64::from(uidvalidity)).and_then(|(_, u)| u32::try_from(u).ok()))
}

/// Every mail of the folder in `reader`, identified, with progress.
async fn everything(ctx: &Context<'_>, reader: &mut Reader, what: &str) -> anyhow::Result<Vec<Identity>> {
    let uids = reader.search("NOT DELETED").await?;
    ctx.progress.start(what, uids.len() as u64);
    let found = reader.identities(&uids, &mut |n| ctx.progress.advance(n)).await;
    ctx.progress.finish();
    found
}

/// Mail in the processed folder the journal does not know.
async fn processed(ctx: &Context<'_>, reader: &mut Reader, folder: &str) -> anyhow::Result<ProcessedReport> {
    let mut report = ProcessedReport { folder: folder.to_string(), checked: 0, unknown: Vec::new() };
    if reader.examine(folder).await?.is_none() {
        return Ok(report);
    }
    let found = everything(ctx, reader, folder).await?;
    report.checked = found.len();
    let unknown = ctx
        .journal(move |db| {
            let mut unknown = Vec::new();
            for mail in found {
                if !known(db, &mail)? {
                    unknown.push(Unknown { uid: mail.uid, message_id: mail.message_id, ingested: None });
                }
            }
            Ok(unknown)
        })
        .await?;
    report.unknown = unknown;
    Ok(report)
}

/// Whether the journal has a mail with this identity.
fn known(conn: Db<'_>, mail: &Identity) -> anyhow::Result<bool> {
    Ok(match (&mail.message_id, &mail.sha256) {
        (Some(id), _) => !mails::find_by_message_id_key(conn, &format!("mid:{id}"))?.is_empty(),
        (None, Some(sha)) => mails::find_by_dedupe_key(conn, &format!("sha256:{sha}"))?.is_some(),
        (None, None) => false,
    })
}

/// The quarantine folder against the unreleased quarantine rows of this mailbox's mail.
async fn quarantine(ctx: &Context<'_>, reader: &mut Reader, mb: &MailboxConfig) -> anyhow::Result<QuarantineReport> {
    let folder = &mb.quarantine_folder;
    let in_folder = match reader.examine(folder).await? {
        Some(_) => everything(ctx, reader, folder).await?,
        None => Vec::new(),
    };
    let name = mb.name.clone();
    let rows = ctx.journal(move |db| Ok(quarantine_rows(db, &name)?)).await?;
    Ok(compare_quarantine(folder, in_folder, rows))
}

/// An unreleased quarantine row with what identifies its mail.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    message_id: Option<String>,
    sha256: String,
    reason: String,
}

fn quarantine_rows(db: Db<'_>, mailbox: &str) -> DbResult<Vec<Row>> {
    db.query_map(
        "SELECT q.id, m.message_id, m.raw_sha256, q.reason FROM quarantine q JOIN mails m ON m.id = q.mail_id
         WHERE q.released_at IS NULL AND m.source = ?1 ORDER BY q.id",
        crate::vals![mailbox],
        |r| Ok(Row { id: r.get(0)?, message_id: r.get(1)?, sha256: r.get(2)?, reason: r.get(3)? }),
    )
}

/// Pairs folder mails with rows by Message-ID (or bytes); what is left on either side is
/// reported.
fn compare_quarantine(folder: &str, in_folder: Vec<Identity>, rows: Vec<Row>) -> QuarantineReport {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_sha: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        match &row.message_id {
            Some(id) => by_id.entry(id.as_str()).or_default().push(i),
            None => by_sha.entry(row.sha256.as_str()).or_default().push(i),
        }
    }
    let mut matched: HashSet<usize> = HashSet::new();
    let mut not_in_table = Vec::new();
    for mail in &in_folder {
        let candidates = match (&mail.message_id, &mail.sha256) {
            (Some(id), _) => by_id.get(id.as_str()),
            (None, Some(sha)) => by_sha.get(sha.as_str()),
            (None, None) => None,
        };
        match candidates.and_then(|c| c.iter().find(|i| !matched.contains(i))) {
            Some(i) => {
                matched.insert(*i);
            }
            None => not_in_table.push(FolderMail { uid: mail.uid, message_id: mail.message_id.clone() }),
        }
    }
    let in_table = rows.len();
    let not_in_folder = rows
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !matched.contains(i))
        .map(|(_, r)| TableRow { quarantine_id: r.id, message_id: r.message_id, reason: r.reason })
        .collect();
    QuarantineReport { folder: folder.to_string(), in_folder: in_folder.len(), in_table, not_in_table, not_in_folder }
}

/// `--fix`: marks what is committed, processes what the journal does not know.
async fn fix(ctx: &Context<'_>, watcher: &Watcher, report: &mut MailboxReport) -> anyhow::Result<()> {
    if !report.unmarked.is_empty() {
        let (mut done, mut quarantined) = (Vec::new(), Vec::new());
        for u in &report.unmarked {
            if u.outcome == Outcome::Quarantined {
                quarantined.push(u.uid);
            } else {
                done.push(u.uid);
            }
        }
        imap::mark_committed(watcher, report.uidvalidity, &done, &quarantined).await?;
        for u in &mut report.unmarked {
            u.marked = true;
        }
    }
    if let Some(processed) = report.processed.as_mut().filter(|p| !p.unknown.is_empty()) {
        ingest_unknown(ctx, watcher, processed).await?;
    }
    Ok(())
}

/// Processes the processed folder's unknown mail through the writer, as if it had just
/// arrived; what ends quarantined moves on to the quarantine folder.
async fn ingest_unknown(ctx: &Context<'_>, watcher: &Watcher, processed: &mut ProcessedReport) -> anyhow::Result<()> {
    let mb = &watcher.mailbox;
    let mut reader = Reader::open(mb, &watcher.credentials).await?;
    let uidvalidity = reader.examine(&processed.folder).await?.context("the processed folder vanished")?;
    let uids: Vec<u32> = processed.unknown.iter().map(|u| u.uid).collect();
    let bodies = reader.bodies(&uids).await;
    reader.close().await;
    let bodies = bodies?;
    let fetched: Vec<u32> = bodies.iter().map(|(uid, _, _)| *uid).collect();
    let mails: Vec<SourceMail> = bodies
        .into_iter()
        .map(|(uid, raw, arrived)| SourceMail {
            raw,
            origin: Origin {
                description: format!("imap:{} {} uid {uid} (reconcile)", mb.name, processed.folder),
                source: None,
                source_key: None,
                account: mb.account.clone(),
            },
            arrived,
        })
        .collect();
    let writer = ctx.writer.as_ref().context("fixing needs the database writer")?;
    let results = writer.ingest(mails).await?;
    let mut quarantined = Vec::new();
    for (uid, p) in fetched.iter().zip(&results) {
        if p.settled == Settled::Quarantined {
            quarantined.push(*uid);
        }
        if let Some(u) = processed.unknown.iter_mut().find(|u| u.uid == *uid) {
            u.ingested = Some(Ingested {
                outcome: p.report.outcome,
                case: p.report.case.map(|c| ctx.config.case_token(c)),
                reason: p.report.reason.clone(),
            });
        }
    }
    if !quarantined.is_empty() {
        // The daemon's marking, on the processed folder this time.
        let mut in_processed = (**mb).clone();
        in_processed.folder = processed.folder.clone();
        let w = Watcher { mailbox: Arc::new(in_processed), ..watcher.clone() };
        imap::mark_committed(&w, uidvalidity, &[], &quarantined).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uid: u32, message_id: Option<&str>, sha: Option<&str>) -> Identity {
        Identity { uid, message_id: message_id.map(str::to_string), sha256: sha.map(str::to_string) }
    }

    fn row(id: i64, message_id: Option<&str>, sha: &str) -> Row {
        Row { id, message_id: message_id.map(str::to_string), sha256: sha.into(), reason: "no-sender".into() }
    }

    #[test]
    fn the_quarantine_folder_and_table_are_paired_by_message_id_or_bytes() {
        let folder = vec![id(1, Some("a@x"), None), id(2, None, Some("s2")), id(3, Some("c@x"), None)];
        let rows = vec![row(10, Some("a@x"), "s1"), row(11, None, "s2"), row(12, Some("d@x"), "s4")];
        let r = compare_quarantine("Quarantine", folder, rows);
        assert_eq!((r.in_folder, r.in_table), (3, 3));
        let not_in_table: Vec<u32> = r.not_in_table.iter().map(|m| m.uid).collect();
        assert_eq!(not_in_table, [3]);
        let not_in_folder: Vec<i64> = r.not_in_folder.iter().map(|t| t.quarantine_id).collect();
        assert_eq!(not_in_folder, [12]);
    }

    #[test]
    fn two_copies_in_the_folder_match_one_row_once() {
        let folder = vec![id(1, Some("a@x"), None), id(2, Some("a@x"), None)];
        let r = compare_quarantine("Q", folder, vec![row(10, Some("a@x"), "s1")]);
        assert_eq!(r.not_in_table.len(), 1);
        assert!(r.not_in_folder.is_empty());
    }
}
