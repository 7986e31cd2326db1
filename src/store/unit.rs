//! The one way to write: a unit of work. It is a write transaction with everything that
//! must become durable with it, plus the time of the unit and an audit recorder bound to
//! it. On SQLite (`BEGIN IMMEDIATE`) that is the attachment files, written by a second
//! thread while the transaction runs, and the raw mails staged for their pack: committing
//! waits for the files, writes the packs, then commits; a unit that is not committed
//! leaves nothing behind (files already written are unreferenced, which is harmless;
//! staged raw mails are never written). On PostgreSQL the attachment bytes and raw mails
//! are rows of the same transaction, so every node reads them and a rollback takes them
//! back too.
//!
//! Inside a unit, [`UnitOfWork::guarded`] runs a piece of work (one mail) in a savepoint:
//! a failure or a panic there undoes that piece alone.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::blobs::{self, BlobSink};
use super::db::{Db, DbError, TxMode};
use super::packs::RawPacks;
use super::{mails, Backend, Store};
use crate::case::{AuditAction, CaseId};

/// What the writes of a unit go through: the transaction (or a savepoint in it), where
/// attachment bytes go, where raw mails are staged (SQLite), and the time of the unit.
pub struct Scope<'a> {
    pub conn: Db<'a>,
    pub blobs: &'a dyn BlobSink,
    /// The packs raw mails are staged for; `None` on PostgreSQL, where they are rows.
    pub packs: Option<&'a RefCell<RawPacks>>,
    pub now: DateTime<Utc>,
    /// `now` as stored.
    pub stamp: &'a str,
}

/// One audit record: who did what to which case, about which mail.
#[derive(Debug, Clone, Copy)]
pub struct AuditRecord<'a> {
    pub mail: Option<i64>,
    pub case: Option<CaseId>,
    pub actor: Option<&'a str>,
    pub action: AuditAction,
    pub detail: Option<&'a str>,
}

impl Scope<'_> {
    /// Appends to the audit log, at the unit's time.
    pub fn audit(&self, record: &AuditRecord<'_>) -> Result<(), DbError> {
        let AuditRecord { mail, case, actor, action, detail } = *record;
        mails::audit(self.conn, mail, case, actor, action.as_str(), detail, self.stamp)
    }
}

/// A write transaction and what must be durable with it; see the module documentation.
pub struct UnitOfWork<'t, 'b> {
    db: Db<'t>,
    blobs: &'b dyn BlobSink,
    packs: Option<&'t RefCell<RawPacks>>,
    now: DateTime<Utc>,
    stamp: String,
}

/// Why a guarded piece of work was undone.
#[derive(Debug)]
pub struct Undone {
    /// The error or the panic's message.
    pub what: String,
    pub panicked: bool,
}

impl UnitOfWork<'_, '_> {
    /// The writes of the unit, straight in its transaction.
    pub fn scope(&self) -> Scope<'_> {
        Scope { conn: self.db, blobs: self.blobs, packs: self.packs, now: self.now, stamp: &self.stamp }
    }

    /// Runs `work` in a savepoint: kept when it succeeds; undone, with the raw mails it
    /// staged, when it fails with an error that is not the installation's (see
    /// [`is_systemic`]) or panics (a bug in casegate). An error of the installation
    /// (the database or the disk) is returned as `Err`: the whole unit must not commit.
    pub fn guarded<R>(
        &mut self,
        work: impl FnOnce(&Scope<'_>) -> anyhow::Result<R>,
    ) -> anyhow::Result<Result<R, Undone>> {
        let (blobs, packs, now, db) = (self.blobs, self.packs, self.now, self.db);
        db.batch("SAVEPOINT guarded")?;
        let mark = packs.map(|p| p.borrow().mark());
        let scope = Scope { conn: db, blobs, packs, now, stamp: &self.stamp };
        let result = panic::catch_unwind(AssertUnwindSafe(|| work(&scope)));
        let undone = match result {
            Ok(Ok(value)) => match db.batch("RELEASE SAVEPOINT guarded") {
                Ok(()) => return Ok(Ok(value)),
                // PostgreSQL: a statement of the work failed and its error was not
                // passed on; the transaction refuses to go on until the savepoint is
                // undone. The work failed, whatever it said.
                Err(e) if !e.is_systemic() => Undone { what: format!("{e:#}"), panicked: false },
                Err(e) => return Err(e.into()),
            },
            Ok(Err(e)) if is_systemic(&e) => return Err(e),
            Ok(Err(e)) => Undone { what: format!("{e:#}"), panicked: false },
            Err(panic) => Undone { what: crate::prepare::panic_message(&panic), panicked: true },
        };
        db.undo_savepoint("guarded")?;
        if let (Some(packs), Some(mark)) = (packs, mark) {
            packs.borrow_mut().unstage(mark);
        }
        Ok(Err(undone))
    }
}

/// Rolls the transaction back unless it was committed, however the unit ends (an error,
/// or a panic outside a guarded piece).
struct Open<'t> {
    db: Db<'t>,
    done: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.db.rollback();
        }
    }
}

impl Store {
    /// Runs `work` as one unit of work. When it returns `Ok(Some(value))` the attachment
    /// files are waited for, the staged raw mails written and the transaction committed;
    /// on `Ok(None)` or `Err` everything is rolled back and nothing staged is written.
    /// `pack_early` lets raw mails go to their pack while the unit runs (faster); it must
    /// be off when pieces of the unit may be undone ([`UnitOfWork::guarded`]), because
    /// only bytes not handed off yet can be taken back.
    pub fn write<R>(
        &mut self,
        pack_early: bool,
        work: impl FnOnce(&mut UnitOfWork<'_, '_>) -> anyhow::Result<Option<R>>,
    ) -> anyhow::Result<Option<R>> {
        let db = self.db();
        let now = Utc::now();
        let stamp = super::stamp(now);
        match &self.backend {
            Backend::Sqlite { blobs: files, packs, .. } => {
                packs.borrow_mut().hand_off_early(pack_early);
                db.begin(TxMode::Write)?;
                let mut open = Open { db, done: false };
                let (result, written) = blobs::with_background_writer(files, |sink| {
                    let mut unit = UnitOfWork { db, blobs: sink, packs: Some(packs), now, stamp };
                    work(&mut unit)
                });
                let value = match result {
                    Ok(Some(value)) => value,
                    other => {
                        packs.borrow_mut().discard();
                        return other;
                    }
                };
                written.context("cannot write attachment files")?;
                packs.borrow_mut().flush().context("cannot write raw mails to their pack file")?;
                db.commit()?;
                open.done = true;
                Ok(Some(value))
            }
            Backend::Postgres(_) => {
                db.begin(TxMode::Write)?;
                let mut open = Open { db, done: false };
                let sink = blobs::InTransaction(db);
                let mut unit = UnitOfWork { db, blobs: &sink, packs: None, now, stamp };
                let Some(value) = work(&mut unit)? else { return Ok(None) };
                db.commit()?;
                open.done = true;
                Ok(Some(value))
            }
        }
    }
}

/// Whether an error is the installation's (the database or the disk: busy, full, read
/// only, unreadable, its connection gone, another node in the way) rather than the
/// work's. Such an error stops the whole unit, which the caller may retry, instead of
/// undoing good work because of a bad moment.
pub fn is_systemic(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some()
            || cause.downcast_ref::<DbError>().is_some_and(DbError::is_systemic)
            // A driver error not wrapped in `DbError` is judged the same way.
            || cause.downcast_ref::<rusqlite::Error>().is_some_and(super::db::sqlite_is_systemic)
            || cause.downcast_ref::<super::nodes::LeaseLost>().is_some()
    })
}

/// Whether an error means another writer got in the way (PostgreSQL: the same mail
/// recorded first by another node, a deadlock, a serialization failure): doing the same
/// work again, at once, will succeed or find the other's result.
pub fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.downcast_ref::<DbError>().is_some_and(DbError::is_conflict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_and_disk_errors_are_systemic_and_a_mail_error_is_not() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(is_systemic(&anyhow::Error::new(busy).context("cannot write the journal")));
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        assert!(is_systemic(&anyhow::Error::new(DbError::from(full))));
        assert!(is_systemic(&anyhow::Error::new(std::io::Error::other("no space left on device"))));
        let constraint =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), None);
        assert!(!is_systemic(&anyhow::Error::new(DbError::from(constraint))));
        assert!(!is_systemic(&anyhow::anyhow!("a template failed")));
        let lost = super::super::nodes::LeaseLost { mailbox: "support".into() };
        assert!(is_systemic(&anyhow::Error::new(lost).context("the batch")));
    }

    #[test]
    fn a_unit_that_is_not_committed_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_dir(dir.path(), false).unwrap();
        let count =
            |s: &Store| s.db().query_one("SELECT count(*) FROM audit", crate::vals![], |r| r.get::<i64>(0)).unwrap();
        let record = AuditRecord { mail: None, case: None, actor: None, action: AuditAction::Ignored, detail: None };
        let none: Option<()> = store
            .write(false, |unit| {
                unit.scope().audit(&record)?;
                Ok(None)
            })
            .unwrap();
        assert!(none.is_none());
        assert_eq!(count(&store), 0, "rolled back");
        store
            .write(false, |unit| {
                // A piece that fails is undone alone; the unit goes on.
                let undone = unit.guarded(|scope| -> anyhow::Result<()> {
                    scope.audit(&record)?;
                    anyhow::bail!("this piece fails")
                })?;
                assert_eq!(undone.unwrap_err().what, "this piece fails");
                unit.scope().audit(&record)?;
                Ok(Some(()))
            })
            .unwrap();
        assert_eq!(count(&store), 1, "only the piece that succeeded");
        let failed: anyhow::Result<Option<()>> = store.write(false, |unit| {
            unit.scope().audit(&record)?;
            anyhow::bail!("the unit fails")
        });
        assert!(failed.is_err());
        assert_eq!(count(&store), 1, "a unit that fails is rolled back");
    }
}
