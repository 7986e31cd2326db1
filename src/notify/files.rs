//! The files a notification carries: the attachments of the thread entry it reports,
//! chosen per recipient and within `notify.attach_max_bytes`, and written into the mail
//! as references to their blobs rather than as copies.
//!
//! ```text
//! entry's files ─ choose (in order, while they fit) ─▶ inline images (cid:, in the HTML part)
//!                                                   ─▶ attachments
//!                                                   ─▶ the rest: listed, with personal download links
//! compose: each carried file's body is a blob reference ─ stored so in the outbox
//! send:    expand() reads each blob, checks its SHA-256, writes it as base64 ─ SMTP
//! ```
//!
//! A reference is `\0casegate-blob:<sha256>:<size>\0`, the whole (pre-encoded) body of one
//! MIME part. It cannot be forged from outside: `compose` replaces any NUL in the text and
//! HTML parts (customer text included), and header values carry no control characters, so
//! a NUL byte in a composed mail comes only from a reference. A rendered notification therefore
//! stays small in the outbox, however large its files, and every attempt sends the same
//! bytes.

use std::borrow::Cow;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::store::blobs::{self, BlobError};
use crate::store::db::Db;
use crate::store::records::StoredFile;

/// What one recipient gets of an entry's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Images the sender showed in their text: carried, shown inline in the HTML part.
    pub inline: Vec<StoredFile>,
    /// Carried as attachments.
    pub attached: Vec<StoredFile>,
    /// Over the size limit: listed, with a download link where one can be made.
    pub linked: Vec<StoredFile>,
}

/// Goes through `files` in their order and carries each one that still fits in
/// `max_bytes` (a large file does not keep the smaller ones after it out); the rest are
/// linked.
pub fn choose(files: Vec<StoredFile>, max_bytes: usize) -> Choice {
    let mut left = max_bytes as u64;
    let mut choice = Choice::default();
    for file in files {
        if file.size > left {
            choice.linked.push(file);
            continue;
        }
        left -= file.size;
        if file.is_inline_image() {
            choice.inline.push(file);
        } else {
            choice.attached.push(file);
        }
    }
    choice
}

/// A file size in the units people use: `980 bytes`, `12 KB`, `3.4 MB`.
pub fn size_in_words(bytes: u64) -> String {
    const KB: u64 = 1024;
    match bytes {
        b if b < KB => format!("{b} bytes"),
        b if b < KB * KB => format!("{} KB", b.div_ceil(KB)),
        b => format!("{:.1} MB", b as f64 / (KB * KB) as f64),
    }
}

const MARK: &[u8] = b"\0casegate-blob:";

/// The body that stands for a blob in a composed mail (see the module documentation).
pub fn reference(file: &StoredFile) -> Vec<u8> {
    format!("\0casegate-blob:{}:{}\0", file.sha256, file.size).into_bytes()
}

/// Why a carried file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// The blob is gone or does not hold what it should: sending again will not help.
    Damaged(String),
    /// Reading failed; it may work later.
    Io(String),
}

/// Whether a composed mail holds blob references (carries files).
pub fn carries_files(mail: &[u8]) -> bool {
    mail.windows(MARK.len()).any(|w| w == MARK)
}

/// The mail as it is sent: every blob reference replaced by its file (read through `db`;
/// on SQLite from the blob directory `blobs`), in base64 (lines of 76 characters). A mail
/// without references is returned as it is.
pub fn expand<'a>(mail: &'a [u8], db: Db<'_>, blobs: &Path) -> Result<Cow<'a, [u8]>, FileError> {
    if !carries_files(mail) {
        return Ok(Cow::Borrowed(mail));
    }
    let mut out = Vec::with_capacity(mail.len());
    let mut rest = mail;
    while let Some(start) = rest.windows(MARK.len()).position(|w| w == MARK) {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + MARK.len()..];
        let end = after.iter().position(|b| *b == 0).ok_or_else(|| damaged("an unfinished blob reference"))?;
        let (sha, size) = parse_reference(&after[..end])?;
        let bytes = read_blob(db, blobs, sha, size)?;
        write_base64(&mut out, &bytes);
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest);
    Ok(Cow::Owned(out))
}

fn damaged(what: &str) -> FileError {
    FileError::Damaged(format!("the stored mail is damaged: {what}"))
}

/// `<sha256>:<size>` → both, checked.
fn parse_reference(text: &[u8]) -> Result<(&str, u64), FileError> {
    let text = std::str::from_utf8(text).map_err(|_| damaged("a blob reference that is not text"))?;
    let (sha, size) = text.split_once(':').ok_or_else(|| damaged("a blob reference without a size"))?;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(damaged("a blob reference without a SHA-256"));
    }
    let size = size.parse().map_err(|_| damaged("a blob reference with a bad size"))?;
    Ok((sha, size))
}

/// A blob's bytes, checked against the size and hash they were stored with.
pub fn read_blob(db: Db<'_>, blobs: &Path, sha: &str, size: u64) -> Result<Vec<u8>, FileError> {
    blobs::read(db, blobs, sha, size).map_err(|e| match e {
        BlobError::Damaged(why) => FileError::Damaged(why),
        BlobError::Unavailable(why) => FileError::Io(why),
    })
}

/// Base64 in lines of 76 characters separated by CRLF, without a final line end (the
/// MIME part's own line end follows).
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let encoded = STANDARD.encode(bytes);
    for (i, line) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;
    use crate::parse::Disposition;
    use crate::store::{BlobSink, BlobStore};

    /// On SQLite blobs are files: the connection is not read (leaked: a test's lifetime).
    fn db() -> Db<'static> {
        Db::Sqlite(Box::leak(Box::new(rusqlite::Connection::open_in_memory().unwrap())))
    }

    fn file(id: i64, size: u64, inline: bool) -> StoredFile {
        StoredFile {
            id,
            message: 1,
            filename: format!("f{id}"),
            content_type: if inline { "image/png".into() } else { "application/pdf".into() },
            disposition: if inline { Disposition::Inline } else { Disposition::Attachment },
            content_id: None,
            size,
            sha256: "00".repeat(32),
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_in_words(980), "980 bytes");
        assert_eq!(size_in_words(12_000), "12 KB");
        assert_eq!(size_in_words(3_565_158), "3.4 MB");
    }

    #[test]
    fn files_are_carried_in_order_while_they_fit_and_the_rest_linked() {
        let files = vec![file(1, 400, true), file(2, 700, false), file(3, 500, false), file(4, 100, true)];
        let c = choose(files, 1000);
        let ids = |v: &[StoredFile]| v.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!((ids(&c.inline), ids(&c.attached), ids(&c.linked)), (vec![1, 4], vec![3], vec![2]));
        let none = choose(vec![file(1, 1, false)], 0);
        assert_eq!(ids(&none.linked), [1], "a limit of 0 links every file");
    }

    #[test]
    fn references_expand_to_the_exact_bytes_in_base64_and_damage_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sha = sha256_hex(&data);
        blobs.put(&sha, &data).unwrap();
        let mut f = file(1, 1000, false);
        f.sha256 = sha.clone();
        let mail = [b"head\r\n\r\n".as_slice(), &reference(&f), b"\r\n--end--\r\n"].concat();

        let sent = expand(&mail, db(), dir.path()).unwrap();
        let text = String::from_utf8(sent.to_vec()).unwrap();
        let body = text.strip_prefix("head\r\n\r\n").unwrap().strip_suffix("\r\n--end--\r\n").unwrap();
        assert!(body.split("\r\n").all(|l| l.len() <= 76), "{body}");
        assert_eq!(STANDARD.decode(body.replace("\r\n", "")).unwrap(), data);
        assert!(matches!(expand(b"no files here", db(), dir.path()).unwrap(), Cow::Borrowed(_)));

        f.size = 999;
        let wrong = [b"x".as_slice(), &reference(&f)].concat();
        assert!(matches!(expand(&wrong, db(), dir.path()), Err(FileError::Damaged(_))), "the size must match");
        f.sha256 = "11".repeat(32);
        let gone = [b"x".as_slice(), &reference(&f)].concat();
        let Err(FileError::Damaged(why)) = expand(&gone, db(), dir.path()) else { panic!("a missing blob") };
        assert!(why.contains("missing"), "{why}");
        assert!(matches!(expand(b"x\0casegate-blob:abc", db(), dir.path()), Err(FileError::Damaged(_))));
    }
}
