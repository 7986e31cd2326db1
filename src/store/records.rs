//! What people outside the support team may see of a case, read for the pages and the
//! notifications that show it: the public thread (no internal notes), the files on it with
//! their blob references, and the one file a download link names.

use super::db::{Db, DbResult, Row};
use crate::case::{CaseId, MessageKind};
use crate::parse::Disposition;
use crate::vals;

/// One stored attachment: its metadata and the blob (by SHA-256) that holds its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The row in `attachments`: what a download link names.
    pub id: i64,
    /// The thread entry it came with.
    pub message: i64,
    pub filename: String,
    pub content_type: String,
    pub disposition: Disposition,
    pub content_id: Option<String>,
    pub size: u64,
    pub sha256: String,
}

impl StoredFile {
    /// An image the sender showed inside their text (`cid:`), which mail keeps inline.
    pub fn is_inline_image(&self) -> bool {
        self.disposition == Disposition::Inline && self.content_type.starts_with("image/")
    }
}

const FILE_COLUMNS: &str = "a.id, a.message, a.filename, a.content_type, a.disposition, a.content_id, a.size, a.sha256";

fn file_of(r: &Row<'_>) -> DbResult<StoredFile> {
    let disposition: String = r.get(4)?;
    Ok(StoredFile {
        id: r.get(0)?,
        message: r.get(1)?,
        filename: r.get(2)?,
        content_type: r.get(3)?,
        disposition: match disposition.as_str() {
            "inline" => Disposition::Inline,
            "message" => Disposition::Message,
            _ => Disposition::Attachment,
        },
        content_id: r.get(5)?,
        size: u64::try_from(r.get::<i64>(6)?).unwrap_or(0),
        sha256: r.get(7)?,
    })
}

/// The files of one thread entry, in the order they came.
pub fn files_of(db: Db<'_>, message: i64) -> DbResult<Vec<StoredFile>> {
    db.query_map(
        &format!("SELECT {FILE_COLUMNS} FROM attachments a WHERE a.message = ?1 ORDER BY a.id"),
        vals![message],
        file_of,
    )
}

/// A file with the case and the kind of entry it belongs to (who may download it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file: StoredFile,
    pub case: CaseId,
    pub kind: MessageKind,
}

/// The file a download link names, if it exists.
pub fn file(db: Db<'_>, id: i64) -> DbResult<Option<FileRecord>> {
    db.query_row(
        &format!(
            "SELECT {FILE_COLUMNS}, m.case_id, m.kind FROM attachments a JOIN messages m ON m.id = a.message WHERE a.id = ?1"
        ),
        vals![id],
        |r| Ok(FileRecord { file: file_of(r)?, case: r.get(8)?, kind: r.parse(9)? }),
    )
}

/// One entry of the public thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEntry {
    pub id: i64,
    pub kind: MessageKind,
    pub from: Option<String>,
    pub body: String,
    pub created_at: String,
    pub files: Vec<StoredFile>,
}

/// A case's public thread: what its customers may read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicThread {
    /// The entry the case was opened with (its first public one).
    pub opening: Option<PublicEntry>,
    /// The newest entries after it, at most the limit asked for, oldest first.
    pub later: Vec<PublicEntry>,
    /// How many later entries there are in all (more than `later` holds when cut).
    pub later_total: usize,
}

/// Kinds of entry the public thread shows: internal notes never, and automatic replies
/// (out-of-office answers and the like) are left out as noise.
const PUBLIC: &str = "m.kind = 'customer' OR m.kind = 'staff' OR m.kind = 'system'";

/// The public thread of `case`: its opening entry and the newest `limit` after it, each
/// with its files.
pub fn public_thread(db: Db<'_>, case: CaseId, limit: usize) -> DbResult<PublicThread> {
    let entry = |r: &Row<'_>| -> DbResult<(i64, MessageKind, Option<String>, String, String)> {
        Ok((r.get(0)?, r.parse(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    let first = db.query_row(
        &format!(
            "SELECT m.id, m.kind, m.from_addr, m.body, m.created_at FROM messages m
             WHERE m.case_id = ?1 AND ({PUBLIC}) ORDER BY m.id LIMIT 1"
        ),
        vals![case],
        entry,
    )?;
    let Some(first) = first else { return Ok(PublicThread::default()) };
    let later_total: i64 = db.query_one(
        &format!("SELECT count(*) FROM messages m WHERE m.case_id = ?1 AND ({PUBLIC}) AND m.id > ?2"),
        vals![case, first.0],
        |r| r.get(0),
    )?;
    let mut rows = db.query_map(
        &format!(
            "SELECT m.id, m.kind, m.from_addr, m.body, m.created_at FROM messages m
             WHERE m.case_id = ?1 AND ({PUBLIC}) AND m.id > ?2 ORDER BY m.id DESC LIMIT ?3"
        ),
        vals![case, first.0, limit],
        entry,
    )?;
    rows.reverse();
    let mut entries = Vec::with_capacity(rows.len() + 1);
    for (id, kind, from, body, created_at) in std::iter::once(first).chain(rows) {
        entries.push(PublicEntry { id, kind, from, body, created_at, files: files_of(db, id)? });
    }
    let opening = Some(entries.remove(0));
    Ok(PublicThread { opening, later: entries, later_total: usize::try_from(later_total).unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::case::Impact;
    use crate::decide::NewCase;
    use crate::store::cases::{self, AttachmentView, NewMessage};
    use crate::store::migrations;

    fn db() -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn entry(conn: &rusqlite::Connection, case: CaseId, kind: MessageKind, body: &str, files: &[&str]) -> i64 {
        let from = Address::parse("jane@customer.example").unwrap();
        let m = NewMessage { case, mail_id: None, message_id: None, kind, from: Some(&from), body };
        let id = cases::insert_message(conn.into(), &m, "2030-01-01T00:00:00.000Z").unwrap();
        for name in files {
            let view = AttachmentView {
                filename: name.to_string(),
                content_type: "image/png".into(),
                size: 3,
                sha256: "ab".repeat(32),
                disposition: Disposition::Inline,
            };
            cases::insert_attachment(conn.into(), id, &view, Some("cid-1")).unwrap();
        }
        id
    }

    #[test]
    fn the_public_thread_leaves_out_notes_and_automatic_replies_and_keeps_the_newest() {
        let conn = db();
        let new = NewCase {
            subject: "VPN".into(),
            impact: Impact::Medium,
            account: None,
            environment: None,
            linked_case: None,
            opening_gist: None,
        };
        let case = cases::insert_case((&conn).into(), &new, "2030-01-01T00:00:00.000Z").unwrap();
        entry(&conn, case, MessageKind::Note, "forwarder's words", &["secret.png"]);
        let opening = entry(&conn, case, MessageKind::Customer, "It drops.", &["shot.png"]);
        entry(&conn, case, MessageKind::Auto, "I am out of office", &[]);
        for i in 0..5 {
            entry(&conn, case, MessageKind::Staff, &format!("answer {i}"), &[]);
        }
        entry(&conn, case, MessageKind::Note, "internal", &["internal.png"]);

        let thread = public_thread((&conn).into(), case, 3).unwrap();
        let first = thread.opening.unwrap();
        assert_eq!((first.id, first.body.as_str()), (opening, "It drops."));
        assert_eq!(first.files[0].filename, "shot.png");
        assert!(first.files[0].is_inline_image());
        let later: Vec<&str> = thread.later.iter().map(|e| e.body.as_str()).collect();
        assert_eq!(later, ["answer 2", "answer 3", "answer 4"]);
        assert_eq!(thread.later_total, 5);

        let secret = file((&conn).into(), 1).unwrap().unwrap();
        assert_eq!((secret.file.filename.as_str(), secret.kind, secret.case), ("secret.png", MessageKind::Note, case));
        assert!(file((&conn).into(), 99).unwrap().is_none());
    }
}
