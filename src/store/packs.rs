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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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

/// The packs one process writes: the open pack and the records staged for the batch in
/// hand.
#[derive(Debug)]
pub struct RawPacks {
    dir: PathBuf,
    fsync: bool,
    open: Option<OpenPack>,
    staged: Vec<u8>,
}

#[derive(Debug)]
struct OpenPack {
    name: String,
    file: File,
    /// Bytes written to the file so far (staged bytes go after them).
    written: u64,
}

impl RawPacks {
    pub fn open(dir: &Path, fsync: bool) -> io::Result<RawPacks> {
        fs::create_dir_all(dir)?;
        Ok(RawPacks { dir: dir.to_path_buf(), fsync, open: None, staged: Vec::new() })
    }

    /// Stages one record for the current batch and tells where it will be once
    /// [`RawPacks::flush`] has written it.
    pub fn stage(&mut self, record: &[u8]) -> io::Result<Place> {
        let pack = match &mut self.open {
            Some(pack) => pack,
            None => self.open.insert(self.create()?),
        };
        let offset = pack.written + self.staged.len() as u64;
        self.staged.extend_from_slice(record);
        Ok(Place { pack: pack.name.clone(), offset, length: record.len() as u64 })
    }

    /// How much is staged: a mark to [`RawPacks::unstage`] back to.
    pub fn mark(&self) -> usize {
        self.staged.len()
    }

    /// Forgets what was staged after `mark` (its rows were rolled back).
    pub fn unstage(&mut self, mark: usize) {
        self.staged.truncate(mark);
    }

    /// Writes the staged records (and syncs them with `storage.fsync`). Call before the
    /// commit of the transaction that references them. After an error the open pack is
    /// abandoned (its length is no longer known for sure) and the next batch starts a new
    /// one.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let Some(pack) = &mut self.open else { return Ok(()) };
        let result =
            pack.file.write_all(&self.staged).and_then(|()| if self.fsync { pack.file.sync_data() } else { Ok(()) });
        let staged = std::mem::take(&mut self.staged).len() as u64;
        match result {
            Ok(()) => {
                pack.written += staged;
                if pack.written >= PACK_LIMIT {
                    self.open = None;
                }
                Ok(())
            }
            Err(e) => {
                self.open = None;
                Err(e)
            }
        }
    }

    /// Drops what was staged (the batch was rolled back as a whole).
    pub fn discard(&mut self) {
        self.staged.clear();
    }

    fn create(&self) -> io::Result<OpenPack> {
        let millis = chrono::Utc::now().timestamp_millis();
        let name = format!("{millis:013}-{}-{:08x}.pack", std::process::id(), rand::random::<u32>());
        let file = OpenOptions::new().append(true).create_new(true).open(self.dir.join(&name))?;
        if self.fsync {
            File::open(&self.dir)?.sync_all()?;
        }
        tracing::debug!(pack = %name, "Started a raw mail pack");
        Ok(OpenPack { name, file, written: 0 })
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
fn is_pack_name(name: &str) -> bool {
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
        let next = packs.stage(b"next").unwrap();
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
