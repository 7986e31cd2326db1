//! Content hashes: the SHA-256 hex names of raw mails and attachment files.

use sha2::{Digest, Sha256};

/// The lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
