//! Content-addressed attachment bytes, named by their SHA-256 and stored once.
//!
//! On SQLite they are files under `data_dir/blobs/ab/abcdef…`, written atomically
//! (temporary file, then rename) *before* the database transaction that references them
//! commits: if it rolls back, an unreferenced file is left behind, which is harmless (and
//! identical content arriving later reuses it). On PostgreSQL they are rows of the table
//! `blobs`, written in the transaction that references them, so every node reads every
//! case's files. Either way, [`read`] checks the bytes against the size and hash they were
//! stored with.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use super::db::Db;
use crate::digest::sha256_hex;
use crate::vals;

/// The blob directory's name under `data_dir`.
pub const DIR: &str = "blobs";

/// Where the blob with this hash lives under the blob directory `root`, for readers that
/// do not hold a [`BlobStore`] (the outbox sender, the download page).
pub fn path_in(root: &Path, sha256: &str) -> PathBuf {
    let prefix = sha256.get(..2).unwrap_or("xx");
    root.join(prefix).join(sha256)
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    fsync: bool,
}

impl BlobStore {
    pub fn open(root: &Path, fsync: bool) -> io::Result<BlobStore> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root: root.to_path_buf(), fsync })
    }

    /// Where the blob with this hash lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        path_in(&self.root, sha256)
    }

    pub fn get(&self, sha256: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(sha256))
    }

    /// Writes a blob (unless one with the same hash exists) whose hash the caller already
    /// computed.
    fn put_hashed(&self, sha: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path(sha);
        if path.metadata().is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(());
        }
        let dir = path.parent().expect("blob paths always have a two-letter parent");
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        tmp.write_all(data)?;
        if self.fsync {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(&path).map_err(|e| e.error)?;
        if self.fsync {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Somewhere to put attachment bytes: the store itself, or a background writer.
pub trait BlobSink {
    /// Stores `data`, whose hex SHA-256 is `sha256` (or arranges for it to be stored
    /// before the transaction commits).
    fn put(&self, sha256: &str, data: &[u8]) -> io::Result<()>;
}

impl BlobSink for BlobStore {
    fn put(&self, sha256: &str, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(sha256, sha256_hex(data));
        self.put_hashed(sha256, data)
    }
}

static BLOB: super::grouping::Appendable = super::grouping::Appendable {
    rank: 1,
    one: "INSERT INTO blobs (sha256, size, data) VALUES (?1, ?2, ?3) ON CONFLICT (sha256) DO NOTHING",
    many: "INSERT INTO blobs (sha256, size, data) SELECT * FROM unnest(?1::text[], ?2::bigint[], ?3::bytea[])
         ON CONFLICT (sha256) DO NOTHING",
    key: &[0],
};

/// A sink that writes into the transaction of a unit of work (PostgreSQL): the bytes are
/// committed, or rolled back, with the rows that reference them.
pub struct InTransaction<'t>(pub Db<'t>);

impl BlobSink for InTransaction<'_> {
    fn put(&self, sha256: &str, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(sha256, sha256_hex(data));
        // A failure here is the database's: the unit stops (an I/O error is systemic).
        self.0.defer_row(&BLOB, vals![sha256, data.len(), data]).map_err(io::Error::other)
    }
}

/// Why a blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// The blob is gone or does not hold what it should: reading again will not help.
    Damaged(String),
    /// Reading failed; it may work later.
    Unavailable(String),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::Damaged(why) | BlobError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BlobError {}

/// A blob's bytes — from the blob directory `root` on SQLite, from the `blobs` table on
/// PostgreSQL — checked against the size and hash they were stored with.
pub fn read(db: Db<'_>, root: &Path, sha: &str, size: u64) -> Result<Vec<u8>, BlobError> {
    let (bytes, place) = match db {
        Db::Sqlite(_) => {
            let path = path_in(root, sha);
            match fs::read(&path) {
                Ok(b) => (b, format!("attachment file {}", path.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BlobError::Damaged(format!("attachment file {} is missing", path.display())))
                }
                Err(e) => {
                    return Err(BlobError::Unavailable(format!("cannot read attachment file {}: {e}", path.display())))
                }
            }
        }
        Db::Postgres(_) => {
            let found =
                db.query_row("SELECT data FROM blobs WHERE sha256 = ?1", vals![sha], |r| r.get::<Vec<u8>>(0)).map_err(
                    |e| BlobError::Unavailable(format!("cannot read attachment {sha} from the database: {e}")),
                )?;
            match found {
                Some(bytes) => (bytes, format!("attachment {sha} in the database")),
                None => return Err(BlobError::Damaged(format!("attachment {sha} is missing from the database"))),
            }
        }
    };
    if bytes.len() as u64 != size || sha256_hex(&bytes) != sha {
        return Err(BlobError::Damaged(format!("{place} does not hold what was stored")));
    }
    Ok(bytes)
}

/// A sink that hands the bytes to a writer thread.
struct Deferred {
    queue: mpsc::Sender<(String, Vec<u8>)>,
}

impl BlobSink for Deferred {
    fn put(&self, sha256: &str, data: &[u8]) -> io::Result<()> {
        // If the writer has stopped, it stopped on an error, which it reports at the end.
        let _ = self.queue.send((sha256.to_string(), data.to_vec()));
        Ok(())
    }
}

/// Runs `work` with a sink whose files are written by a second thread meanwhile (creating
/// files is slow on some file systems; the database work goes on in parallel). Every file
/// has been written, or the first error is returned, when this returns — so the caller
/// commits only after its blobs exist.
pub fn with_background_writer<R>(store: &BlobStore, work: impl FnOnce(&dyn BlobSink) -> R) -> (R, io::Result<()>) {
    let (queue, jobs) = mpsc::channel::<(String, Vec<u8>)>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            for (sha, data) in jobs {
                store.put_hashed(&sha, &data)?;
            }
            Ok(())
        });
        let result = work(&Deferred { queue });
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("the attachment writer thread panicked")));
        (result, written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_by_content_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let a = sha256_hex(b"hello");
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        BlobSink::put(&blobs, &a, b"hello").unwrap();
        BlobSink::put(&blobs, &a, b"hello").unwrap();
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        let files: usize = walk(dir.path()).iter().filter(|p| !p.starts_with(dir.path().join("tmp"))).count();
        assert_eq!(files, 1, "identical content is stored once");
    }

    #[test]
    fn background_writer_has_written_everything_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let (shas, written) = with_background_writer(&blobs, |sink| {
            (0..50u8)
                .map(|i| {
                    let data = vec![i; 1000 + i as usize];
                    let sha = sha256_hex(&data);
                    sink.put(&sha, &data).unwrap();
                    sha
                })
                .collect::<Vec<_>>()
        });
        written.unwrap();
        for (i, sha) in shas.iter().enumerate() {
            assert_eq!(blobs.get(sha).unwrap(), vec![i as u8; 1000 + i]);
        }
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e))
            } else {
                out.push(e)
            }
        }
        out
    }
}
