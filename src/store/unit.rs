//! The one way to write: a unit of work. It is a write transaction (`BEGIN IMMEDIATE`)
//! with everything that must become durable with it — the attachment files, written by a
//! second thread while the transaction runs, and the raw mails staged for their pack —
//! plus the time of the unit and an audit recorder bound to it. Committing waits for the
//! files, writes the packs, then commits; a unit that is not committed leaves nothing
//! behind (files already written are unreferenced, which is harmless; staged raw mails
//! are never written).
//!
//! Inside a unit, [`UnitOfWork::guarded`] runs a piece of work (one mail) in a savepoint:
//! a failure or a panic there undoes that piece alone.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::blobs::{self, BlobSink};
use super::packs::RawPacks;
use super::{mails, Store};
use crate::case::{AuditAction, CaseId};

/// What the writes of a unit go through: the transaction (or a savepoint in it), where
/// attachment bytes go, where raw mails are staged, and the time of the unit.
pub struct Scope<'a> {
    pub conn: &'a Connection,
    pub blobs: &'a dyn BlobSink,
    pub packs: &'a RefCell<RawPacks>,
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
    pub fn audit(&self, record: &AuditRecord<'_>) -> rusqlite::Result<()> {
        let AuditRecord { mail, case, actor, action, detail } = *record;
        mails::audit(self.conn, mail, case, actor, action.as_str(), detail, self.stamp)
    }
}

/// A write transaction and what must be durable with it; see the module documentation.
pub struct UnitOfWork<'t, 'b> {
    tx: Transaction<'t>,
    blobs: &'b dyn BlobSink,
    packs: &'t RefCell<RawPacks>,
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
        Scope { conn: &self.tx, blobs: self.blobs, packs: self.packs, now: self.now, stamp: &self.stamp }
    }

    /// Runs `work` in a savepoint: kept when it succeeds; undone, with the raw mails it
    /// staged, when it fails with an error that is not the installation's (see
    /// [`is_systemic`]) or panics (a bug in casegate). An error of the installation
    /// (the database or the disk) is returned as `Err`: the whole unit must not commit.
    pub fn guarded<R>(
        &mut self,
        work: impl FnOnce(&Scope<'_>) -> anyhow::Result<R>,
    ) -> anyhow::Result<Result<R, Undone>> {
        let (blobs, packs, now) = (self.blobs, self.packs, self.now);
        let sp = self.tx.savepoint()?;
        let mark = packs.borrow().mark();
        let scope = Scope { conn: &sp, blobs, packs, now, stamp: &self.stamp };
        let result = panic::catch_unwind(AssertUnwindSafe(|| work(&scope)));
        let undone = match result {
            Ok(Ok(value)) => {
                sp.commit()?;
                return Ok(Ok(value));
            }
            Ok(Err(e)) if is_systemic(&e) => return Err(e),
            Ok(Err(e)) => Undone { what: format!("{e:#}"), panicked: false },
            Err(panic) => Undone { what: crate::prepare::panic_message(&panic), panicked: true },
        };
        drop(sp);
        packs.borrow_mut().unstage(mark);
        Ok(Err(undone))
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
        let files = self.blobs.clone();
        let packs = &self.packs;
        packs.borrow_mut().hand_off_early(pack_early);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Utc::now();
        let ((result, tx), written) = blobs::with_background_writer(&files, |sink| {
            let mut unit = UnitOfWork { tx, blobs: sink, packs, now, stamp: super::stamp(now) };
            let result = work(&mut unit);
            (result, unit.tx)
        });
        let value = match result {
            Ok(Some(value)) => value,
            other => {
                // Dropping the transaction rolls it back.
                packs.borrow_mut().discard();
                return other;
            }
        };
        written.context("cannot write attachment files")?;
        packs.borrow_mut().flush().context("cannot write raw mails to their pack file")?;
        tx.commit()?;
        Ok(Some(value))
    }
}

/// Whether an error is the installation's (the database or the disk: busy, full, read
/// only, unreadable) rather than the work's. Such an error stops the whole unit, which
/// the caller may retry, instead of undoing good work because of a bad moment.
pub fn is_systemic(e: &anyhow::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_unit_that_is_not_committed_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open_dir(dir.path(), false).unwrap();
        let count = |s: &Store| s.conn.query_row("SELECT count(*) FROM audit", [], |r| r.get::<_, i64>(0)).unwrap();
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
    }
}
