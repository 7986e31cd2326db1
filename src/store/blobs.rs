//! Content-addressed files: attachment bytes under `data_dir/blobs/ab/abcdef…` named by
//! their SHA-256, written atomically (temporary file, then rename) and stored once.
//!
//! Blobs are written *before* the database transaction that references them commits: if
//! it rolls back, an unreferenced file is left behind, which is harmless (and identical
//! content arriving later reuses it).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    fsync: bool,
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl BlobStore {
    pub fn open(root: &Path, fsync: bool) -> io::Result<BlobStore> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root: root.to_path_buf(), fsync })
    }

    /// Where the blob with this hash lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(sha256)
    }

    /// Stores `data` unless a blob with the same hash exists; returns the hash.
    pub fn put(&self, data: &[u8]) -> io::Result<String> {
        let sha = sha256_hex(data);
        let path = self.path(&sha);
        if path.metadata().is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(sha);
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
        Ok(sha)
    }

    pub fn get(&self, sha256: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_by_content_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let a = blobs.put(b"hello").unwrap();
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(blobs.put(b"hello").unwrap(), a);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        let files: usize = walk(dir.path()).iter().filter(|p| !p.starts_with(dir.path().join("tmp"))).count();
        assert_eq!(files, 1, "identical content is stored once");
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
