//! The pseudonym an erased address is replaced by: `erased-<20 hex digits>@erased.invalid`,
//! the start of HMAC-SHA256 of the address under a key kept in the data directory
//! (`erasure.key`, 32 random bytes, made on the first erasure, readable by casegate only).
//!
//! The same address always gets the same pseudonym, so the cases of one erased person
//! still read as the cases of one person, and erasing again finds nothing new to change.
//! Without the key the pseudonym cannot be traced back to the address, not even by trying
//! addresses one by one; with it, whoever knows an address can check whether it was
//! erased. Deleting the key makes the pseudonyms anonymous for good (a later erasure then
//! makes a new key and new pseudonyms). `.invalid` is a domain that never receives mail.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::address::Address;

/// The key file's name under `data_dir`.
pub const KEY_FILE: &str = "erasure.key";
const KEY_LEN: usize = 32;
/// What the HMAC is computed under, besides the key: a pseudonym is no other kind of tag.
const CONTEXT: &[u8] = b"casegate/erasure-pseudonym\0";
/// The domain of every pseudonym.
pub const DOMAIN: &str = "erased.invalid";

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// The key, if one was made.
pub fn existing_key(data_dir: &Path) -> io::Result<Option<Vec<u8>>> {
    let path = key_path(data_dir);
    let mut key = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut key)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if key.len() != KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} holds {} bytes, not the {KEY_LEN} bytes of an erasure key; restore it from a backup, or delete \
                 it to make a new key (the same addresses then get new pseudonyms)",
                path.display(),
                key.len()
            ),
        ));
    }
    Ok(Some(key))
}

/// The key, made now (mode 0600, synced) if there is none yet. Two processes making it at
/// once agree: the second reads the first's.
pub fn key(data_dir: &Path) -> io::Result<Vec<u8>> {
    if let Some(key) = existing_key(data_dir)? {
        return Ok(key);
    }
    let path = key_path(data_dir);
    // On PostgreSQL nothing else may have made the data directory yet.
    fs::create_dir_all(data_dir)?;
    let key: [u8; KEY_LEN] = rand::random();
    let tmp = data_dir.join(format!(".{KEY_FILE}.{:08x}", rand::random::<u32>()));
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(&key)?;
    file.sync_all()?;
    drop(file);
    // A hard link fails if the key appeared meanwhile; the temporary name goes either way.
    let linked = fs::hard_link(&tmp, &path);
    fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            File::open(data_dir)?.sync_all()?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            existing_key(data_dir)?.ok_or_else(|| io::Error::other("the erasure key vanished"))
        }
        Err(e) => Err(e),
    }
}

/// The pseudonym of `address` under `key`.
pub fn of(key: &[u8], address: &Address) -> Address {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(CONTEXT);
    mac.update(address.as_str().as_bytes());
    let tag = hex::encode(mac.finalize().into_bytes());
    Address::parse(&format!("erased-{}@{DOMAIN}", &tag[..20])).expect("hex digits and a fixed domain form an address")
}

/// Whether `address` is a pseudonym (erasing it again would be a mistake).
pub fn is_pseudonym(address: &Address) -> bool {
    address.domain() == DOMAIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_address_gets_the_same_pseudonym_under_one_key_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(existing_key(dir.path()).unwrap().is_none());
        let key = super::key(dir.path()).unwrap();
        assert_eq!(super::key(dir.path()).unwrap(), key, "made once, then read");
        let jane = Address::parse("Jane@Customer.example").unwrap();
        let p = of(&key, &jane);
        assert!(p.as_str().starts_with("erased-") && p.as_str().ends_with("@erased.invalid"), "{p}");
        assert!(is_pseudonym(&p) && !is_pseudonym(&jane));
        assert_eq!(of(&key, &Address::parse("jane@customer.example").unwrap()), p);
        assert_ne!(of(&key, &Address::parse("john@customer.example").unwrap()), p);
        assert_ne!(of(&[7; 32], &jane), p, "another key, another pseudonym");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused_not_used() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let err = super::key(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not the 32 bytes"), "{err}");
    }
}
