//! Raw mails in append-only pack files under `data_dir/raw/`, their place (pack, offset,
//! length) recorded in the `raw_mails` row.
//!
//! Kept inside SQLite, the raw copy was more than half of what each mail wrote: its pages
//! went to the WAL at commit and were copied again at checkpoint, on the writer's critical
//! path. A pack file takes the same bytes with one `write` per batch.
//!
//! Each process that writes mail opens packs of its own (named by time, process and a
//! random part), so two writers never share a file, and appends to them only; a pack is
//! closed for good when it passes [`PACK_LIMIT`]. A batch's records are staged in memory
//! and written (and, with `storage.fsync`, synced) before the transaction that references
//! them commits. Bytes whose transaction then rolls back are left unreferenced in the
//! pack, which is harmless, like an attachment file written before a rollback.
//!
//! A record is the LZ4 block (size-prepended) of one raw mail. Reading checks it against
//! the SHA-256 it is stored under, so a damaged or mismatched pack is reported, never
//! returned as the mail.
//!
//! Records are never changed in place by the writer; what removes them (retention,
//! erasure) and what rewrites packs without the records no row names any more
//! ([`super::compaction`]) is elsewhere. A writer holds an exclusive lock on the pack it
//! writes, so compaction leaves that pack alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

/// The packs' directory under `data_dir`.
pub const DIR: &str = "raw";

/// A pack is closed and a new one started once it holds this many bytes.
pub const PACK_LIMIT: u64 = 64 * 1024 * 1024;

/// Where a staged record will be: the pack's file name and the record's byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub pack: String,
    pub offset: u64,
    pub length: u64,
}

/// Staged bytes are handed to the background writer in chunks of about this size, so
/// that the batch's pack write overlaps its database work.
const HANDOFF: usize = 512 * 1024;

/// The packs one process writes: the open pack, the records staged for the batch in hand,
/// and a thread that appends them while the batch goes on.
#[derive(Debug)]
pub struct RawPacks {
    dir: PathBuf,
    fsync: bool,
    open: Option<OpenPack>,
    staged: Vec<u8>,
    /// Whether staged bytes may be handed off before the batch ends (not while a staged
    /// record may still be taken back: see [`RawPacks::hand_off_early`]).
    early: bool,
    background: Option<Background>,
}

#[derive(Debug)]
struct OpenPack {
    name: String,
    file: Arc<File>,
    /// Bytes handed to the background writer so far (staged bytes go after them).
    written: u64,
    /// Past [`PACK_LIMIT`]: the next batch starts a new pack. It stays open (and locked)
    /// until then, because the rows naming its last records commit after [`RawPacks::flush`],
    /// and compaction must not take a pack whose records it cannot see yet.
    full: bool,
}

/// The thread that appends chunks to pack files, in order, and answers each.
#[derive(Debug)]
struct Background {
    jobs: Option<mpsc::Sender<(Arc<File>, Vec<u8>)>>,
    done: mpsc::Receiver<io::Result<()>>,
    in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawPacks {
    pub fn open(dir: &Path, fsync: bool) -> io::Result<RawPacks> {
        fs::create_dir_all(dir)?;
        Ok(RawPacks { dir: dir.to_path_buf(), fsync, open: None, staged: Vec::new(), early: true, background: None })
    }

    /// The directory the packs are in (what [`read`] needs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether records may be written while the batch is still going on (the default).
    /// Switch it off while a batch needs [`RawPacks::unstage`]: only bytes not handed off
    /// yet can be taken back.
    pub fn hand_off_early(&mut self, early: bool) {
        self.early = early;
    }

    /// Where the next record staged will be.
    pub fn next_place(&mut self, length: usize) -> io::Result<Place> {
        if self.open.as_ref().is_some_and(|p| p.full) && self.staged.is_empty() {
            self.open = None;
        }
        let pack = match &mut self.open {
            Some(pack) => pack,
            None => self.open.insert(self.create()?),
        };
        Ok(Place { pack: pack.name.clone(), offset: pack.written + self.staged.len() as u64, length: length as u64 })
    }

    /// Stages one record for the current batch and tells where it will be once
    /// [`RawPacks::flush`] has written it.
    pub fn stage(&mut self, record: &[u8]) -> io::Result<Place> {
        let place = self.next_place(record.len())?;
        self.staged.extend_from_slice(record);
        if self.early && self.staged.len() >= HANDOFF {
            self.hand_off()?;
        }
        Ok(place)
    }

    /// How much is staged: a mark to [`RawPacks::unstage`] back to.
    pub fn mark(&self) -> usize {
        self.staged.len()
    }

    /// Forgets what was staged after `mark` (its rows were rolled back). Only with early
    /// hand-off switched off.
    pub fn unstage(&mut self, mark: usize) {
        debug_assert!(!self.early, "unstaging with early hand-off on");
        self.staged.truncate(mark);
    }

    /// Writes the rest of the batch's records, waits until all of them are written (and,
    /// with `storage.fsync`, synced). Call before the commit of the transaction that
    /// references them. After an error the open pack is abandoned (its length is no longer
    /// known for sure) and the next batch starts a new one.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = self.hand_off().and_then(|()| self.wait()).and_then(|()| match (&self.open, self.fsync) {
            (Some(pack), true) => pack.file.sync_data(),
            _ => Ok(()),
        });
        match result {
            Ok(()) => {
                if let Some(pack) = self.open.as_mut().filter(|p| p.written >= PACK_LIMIT) {
                    pack.full = true;
                }
                Ok(())
            }
            Err(e) => {
                self.staged.clear();
                self.open = None;
                Err(e)
            }
        }
    }

    /// Drops what was staged (the batch was rolled back as a whole). Records already
    /// handed off stay in the pack, unreferenced.
    pub fn discard(&mut self) {
        self.staged.clear();
        if self.wait().is_err() {
            self.open = None;
        }
    }

    /// Sends the staged bytes to the background writer.
    fn hand_off(&mut self) -> io::Result<()> {
        let Some(pack) = &mut self.open else { return Ok(()) };
        if self.staged.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.staged, Vec::with_capacity(HANDOFF + HANDOFF / 4));
        pack.written += chunk.len() as u64;
        let background = match &mut self.background {
            Some(b) => b,
            None => self.background.insert(Background::start()?),
        };
        let jobs = background.jobs.as_ref().expect("the sender lives as long as the background writer");
        jobs.send((Arc::clone(&pack.file), chunk)).map_err(|_| io::Error::other("the raw mail pack writer stopped"))?;
        background.in_flight += 1;
        Ok(())
    }

    /// Waits for every chunk handed off; the first error, if any.
    fn wait(&mut self) -> io::Result<()> {
        let Some(background) = &mut self.background else { return Ok(()) };
        let mut first = Ok(());
        while background.in_flight > 0 {
            let answer =
                background.done.recv().unwrap_or_else(|_| Err(io::Error::other("the raw mail pack writer stopped")));
            background.in_flight -= 1;
            if first.is_ok() {
                first = answer;
            }
        }
        first
    }

    /// Starts a pack, locked (see [`lock_if_idle`]) before it gets its name: compaction never
    /// sees a pack of this writer that is not locked.
    fn create(&self) -> io::Result<OpenPack> {
        let name = new_name();
        let fresh = self.dir.join(format!(".{name}.new"));
        let file = OpenOptions::new().append(true).create_new(true).open(&fresh)?;
        if let Err(e) = file.try_lock() {
            let _ = fs::remove_file(&fresh);
            return Err(io::Error::other(format!("cannot lock a new raw mail pack: {e}")));
        }
        fs::rename(&fresh, self.dir.join(&name))?;
        if self.fsync {
            File::open(&self.dir)?.sync_all()?;
        }
        tracing::debug!(pack = %name, "Started a raw mail pack");
        Ok(OpenPack { name, file: Arc::new(file), written: 0, full: false })
    }
}

impl Background {
    fn start() -> io::Result<Background> {
        let (jobs, queue) = mpsc::channel::<(Arc<File>, Vec<u8>)>();
        let (answers, done) = mpsc::channel();
        let thread = std::thread::Builder::new().name("raw-packs".into()).spawn(move || {
            for (file, chunk) in queue {
                // Appends (the file is opened for appending and written by this thread only).
                let written = (&*file).write_all(&chunk);
                // Let go of the file before answering: once the writer closes a pack, its
                // lock must go with the writer's handle (see `OpenPack::full`).
                drop(file);
                if answers.send(written).is_err() {
                    return;
                }
            }
        })?;
        Ok(Background { jobs: Some(jobs), done, in_flight: 0, thread: Some(thread) })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A new pack's name: the time, the process and a random part, so two writers (or a
/// writer and compaction) never choose the same one.
pub(crate) fn new_name() -> String {
    let millis = chrono::Utc::now().timestamp_millis();
    format!("{millis:013}-{}-{:08x}.pack", std::process::id(), rand::random::<u32>())
}

/// Whether a process is writing `file` (an open pack of this module): its writer holds an
/// exclusive `flock` on it from before it had its name until it is closed, and the kernel
/// drops the lock when the writer dies. `Some(file)` (now locked by the caller, until it is
/// dropped) when nobody writes it.
pub(crate) fn lock_if_idle(path: &Path) -> io::Result<Option<File>> {
    let file = File::open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Reads one record back.
pub fn read(dir: &Path, place: &Place) -> io::Result<Vec<u8>> {
    if !is_pack_name(&place.pack) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("not a pack name: {:?}", place.pack)));
    }
    let file = File::open(dir.join(&place.pack))?;
    let length = usize::try_from(place.length).map_err(io::Error::other)?;
    let mut record = vec![0; length];
    file.read_exact_at(&mut record, place.offset)?;
    Ok(record)
}

/// Names this module makes: digits, dashes, hex and `.pack`, nothing that leaves `raw/`.
pub(crate) fn is_pack_name(name: &str) -> bool {
    name.ends_with(".pack")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_records_are_read_back_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        let a = packs.stage(b"first record").unwrap();
        let b = packs.stage(b"second").unwrap();
        assert_eq!(a.pack, b.pack);
        assert_eq!((a.offset, a.length, b.offset, b.length), (0, 12, 12, 6));
        packs.flush().unwrap();
        assert_eq!(read(dir.path(), &a).unwrap(), b"first record");
        assert_eq!(read(dir.path(), &b).unwrap(), b"second");
        // The next batch appends after them.
        let c = packs.stage(b"third").unwrap();
        packs.flush().unwrap();
        assert_eq!(c.offset, 18);
        assert_eq!(read(dir.path(), &c).unwrap(), b"third");
    }

    #[test]
    fn unstaged_and_discarded_records_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        packs.hand_off_early(false);
        let kept = packs.stage(b"kept").unwrap();
        let mark = packs.mark();
        packs.stage(b"rolled back").unwrap();
        packs.unstage(mark);
        let after = packs.stage(b"after").unwrap();
        assert_eq!(after.offset, 4, "a record staged after an unstage takes the freed place");
        packs.flush().unwrap();
        packs.stage(b"whole batch rolled back").unwrap();
        packs.discard();
        packs.flush().unwrap();
        let file = fs::read(dir.path().join(&kept.pack)).unwrap();
        assert_eq!(file, b"keptafter");
    }

    #[test]
    fn records_written_while_the_batch_goes_on_read_back_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        let record = |i: usize| vec![(i % 251) as u8; 10_000 + i];
        // Enough for several hand-offs to the background writer within one batch.
        let places: Vec<Place> = (0..300).map(|i| packs.stage(&record(i)).unwrap()).collect();
        packs.flush().unwrap();
        for (i, place) in places.iter().enumerate() {
            assert_eq!(read(dir.path(), place).unwrap(), record(i), "record {i}");
        }
        // A batch rolled back after a hand-off leaves unreferenced bytes; the next batch's
        // records are still found where they were said to be.
        for i in 0..100 {
            packs.stage(&record(i)).unwrap();
        }
        packs.discard();
        let after = packs.stage(b"after the rollback").unwrap();
        packs.flush().unwrap();
        assert_eq!(read(dir.path(), &after).unwrap(), b"after the rollback");
    }

    #[test]
    fn two_writers_never_share_a_pack() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = RawPacks::open(dir.path(), false).unwrap();
        let mut two = RawPacks::open(dir.path(), false).unwrap();
        let a = one.stage(b"one").unwrap();
        let b = two.stage(b"two").unwrap();
        one.flush().unwrap();
        two.flush().unwrap();
        assert_ne!(a.pack, b.pack);
        assert_eq!(read(dir.path(), &a).unwrap(), b"one");
        assert_eq!(read(dir.path(), &b).unwrap(), b"two");
    }

    #[test]
    fn a_full_pack_is_closed_and_the_next_batch_starts_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = RawPacks::open(dir.path(), false).unwrap();
        let big = vec![7u8; PACK_LIMIT as usize];
        let first = packs.stage(&big).unwrap();
        packs.flush().unwrap();
        // Its rows commit after the flush: until the next batch it stays locked, so
        // compaction does not take it for a pack of dead records.
        assert!(lock_if_idle(&dir.path().join(&first.pack)).unwrap().is_none(), "still held after the flush");
        let next = packs.stage(b"next").unwrap();
        assert!(lock_if_idle(&dir.path().join(&first.pack)).unwrap().is_some(), "let go by the next batch");
        packs.flush().unwrap();
        assert_ne!(first.pack, next.pack);
        assert_eq!(next.offset, 0);
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for pack in ["../casegate.db", "/etc/passwd", "a/b.pack", "..pack", ".pack"] {
            let place = Place { pack: pack.to_string(), offset: 0, length: 1 };
            let err = read(dir.path(), &place).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{pack}");
        }
    }
}
