//! Moving an installation from SQLite (the embedded default) into an empty PostgreSQL
//! database (`casegate migrate-store`): every table of the journal and the cases, the raw
//! mails out of their pack files, and the attachment files, copied in one PostgreSQL
//! transaction and verified before it commits — row counts and a digest of every table's
//! rows on both sides, every raw mail and attachment read back from PostgreSQL and checked
//! against its SHA-256. A copy that does not verify is rolled back: the database is left
//! as empty as it was found.
//!
//! Row ids are copied as they are (case numbers stay what people have in their mail), and
//! PostgreSQL's identity sequences are moved past them, so new cases go on from the last.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::reconcile::Progress;
use crate::store::db::{Db, DbError, DbResult, Row, TxMode, Value};
use crate::store::{blobs, mails, packs, Store};
use crate::vals;

/// The tables copied, each after the tables its foreign keys name.
pub const COPIED: &[&str] = &[
    "raw_mails",
    "cases",
    "mails",
    "participants",
    "messages",
    "attachments",
    "case_message_ids",
    "ambiguous_message_ids",
    "quarantine",
    "outbox",
    "mailbox_state",
    "audit",
    "survey_invitations",
    "survey_answers",
    "bounces",
    "suppressions",
    "close_reminders",
    "periodic_jobs",
];

/// The tables of the SQLite schema that are not copied, and why.
pub const NOT_COPIED: &[(&str, &str)] = &[
    ("sqlite_sequence", "SQLite's own id counters: PostgreSQL's sequences are set after the copy"),
    ("health_probe", "a scratch row `doctor` writes to see that the database takes writes"),
    ("nodes", "the processes that ran on the old store: the nodes of the new one register themselves"),
    ("mailbox_leases", "those processes' leases: the new nodes take the mailboxes"),
];

/// The tables whose rows tell that a PostgreSQL database is in use already.
const MUST_BE_EMPTY: &[&str] = &["cases", "mails", "raw_mails", "outbox", "quarantine", "audit", "blobs"];

/// A node of the old store seen this recently (seconds), and not stopped, is taken for a
/// `casegate run` still working on it.
const RUNNING_WITHIN_SECS: i64 = 120;

/// What a migration copied.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The database copied into (without its password).
    pub target: String,
    pub tables: Vec<TableReport>,
    pub raw_mails: RawReport,
    pub attachments: FileReport,
    /// Row counts and digests agree on both sides, every raw mail and attachment was read
    /// back and matched its hash. (A copy that does not verify is rolled back and
    /// reported as an error, so a report always says `true`.)
    pub verified: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RawReport {
    /// Raw mails copied with their bytes.
    pub copied: u64,
    /// Rows whose raw copy had been removed (retention, purge, erasure): copied empty.
    pub removed: u64,
    /// Their size as received.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    pub files: u64,
    pub bytes: u64,
}

/// Copies the SQLite store under `data_dir` into the empty PostgreSQL database `url`.
pub fn migrate(data_dir: &Path, url: &str, progress: &dyn Progress) -> anyhow::Result<Report> {
    let started = Instant::now();
    let db_path = data_dir.join("casegate.db");
    if !db_path.exists() {
        bail!(
            "there is no SQLite store at {}: nothing to move (data_dir in the configuration names the installation)",
            db_path.display()
        );
    }
    let source = Store::open_dir(data_dir, false)?;
    let target = Store::open_postgres(url)?;
    let shown = match target.db() {
        Db::Postgres(conn) => conn.target().to_string(),
        Db::Sqlite(_) => unreachable!("open_postgres opens PostgreSQL"),
    };
    refuse_running_daemon(source.db())?;
    refuse_used_database(target.db(), &shown)?;
    check_every_table_known(source.db())?;

    let (src, dst) = (source.db(), target.db());
    // One snapshot of the source, one transaction on the target: all or nothing.
    src.begin(TxMode::Read)?;
    dst.begin(TxMode::Write)?;
    let copied = copy_all(src, dst, &data_dir.join(packs::DIR), &data_dir.join(blobs::DIR), progress);
    src.rollback();
    let (tables, raw_mails, attachments) = match copied {
        Ok(copied) => copied,
        Err(e) => {
            dst.rollback();
            return Err(e.context(format!("nothing was copied into {shown} (the copy was rolled back)")));
        }
    };
    dst.commit().with_context(|| format!("cannot commit the copy into {shown}"))?;
    Ok(Report {
        target: shown,
        tables,
        raw_mails,
        attachments,
        verified: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

type Copied = (Vec<TableReport>, RawReport, FileReport);

fn copy_all(
    src: Db<'_>,
    dst: Db<'_>,
    packs_dir: &Path,
    blob_dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Copied> {
    let mut tables = Vec::new();
    let mut raw = RawReport::default();
    for &table in COPIED {
        let columns = shared_columns(src, dst, table)?;
        let total = count(src, table)?;
        progress.start(table, total);
        let digest = match table {
            "raw_mails" => copy_raw_mails(src, dst, packs_dir, &columns, &mut raw, progress)?,
            _ => copy_rows(src, dst, table, &columns, progress)?,
        };
        progress.finish();
        let rows = count(dst, table)?;
        if rows != total {
            bail!("{table}: {total} rows in SQLite but {rows} in PostgreSQL after the copy");
        }
        let copied = table_digest(dst, table, &columns)?;
        if copied != digest {
            bail!("{table}: the rows read back from PostgreSQL differ from SQLite's");
        }
        tables.push(TableReport { table: table.to_string(), rows });
    }
    check_raw_mails(dst, raw.copied)?;
    let files = copy_attachment_files(src, dst, blob_dir, progress)?;
    set_sequences(dst)?;
    Ok((tables, raw, files))
}

/// `casegate run` on the old store would go on changing it during the copy.
fn refuse_running_daemon(db: Db<'_>) -> anyhow::Result<()> {
    let since = crate::store::stamp(chrono::Utc::now() - chrono::Duration::seconds(RUNNING_WITHIN_SECS));
    for node in crate::store::nodes::nodes(db)? {
        if node.stopped_at.is_none() && node.seen_at >= since {
            bail!(
                "casegate run is running on this installation (node {}, last seen {}): stop it, then run migrate-store again",
                node.name,
                node.seen_at
            );
        }
    }
    Ok(())
}

fn refuse_used_database(db: Db<'_>, shown: &str) -> anyhow::Result<()> {
    for table in MUST_BE_EMPTY {
        let rows = count(db, table)?;
        if rows > 0 {
            bail!(
                "{shown} is in use: its table {table} holds {rows} rows. migrate-store copies into an empty database \
                 only; create a new one (CREATE DATABASE …) and name it with --to"
            );
        }
    }
    Ok(())
}

/// Every table of the SQLite schema is copied or known not to need it, so a table added
/// later cannot be left behind without a test noticing.
fn check_every_table_known(db: Db<'_>) -> anyhow::Result<()> {
    for table in sqlite_tables(db)? {
        if !COPIED.contains(&table.as_str()) && !NOT_COPIED.iter().any(|(t, _)| *t == table) {
            bail!("the SQLite table {table} is not known to migrate-store; nothing was copied");
        }
    }
    Ok(())
}

/// The tables of the SQLite schema.
pub fn sqlite_tables(db: Db<'_>) -> DbResult<Vec<String>> {
    db.query_map("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", &[], |r| r.get(0))
}

fn count(db: Db<'_>, table: &str) -> DbResult<u64> {
    let n: i64 = db.query_one(&format!("SELECT count(*) FROM {table}"), &[], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// A column of a table on PostgreSQL, with what SQLite's value becomes there.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
}

/// The columns `table` has on both sides. A SQLite column PostgreSQL lacks would be data
/// left behind: an error.
fn shared_columns(src: Db<'_>, dst: Db<'_>, table: &str) -> anyhow::Result<Vec<Column>> {
    let sqlite: Vec<String> =
        src.query_map(&format!("SELECT name FROM pragma_table_info('{table}')"), &[], |r| r.get(0))?;
    let postgres: Vec<(String, String)> = dst.query_map(
        "SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
        vals![table],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut columns = Vec::new();
    for name in sqlite {
        let Some((_, ty)) = postgres.iter().find(|(n, _)| *n == name) else {
            bail!("the SQLite column {table}.{name} has no place in the PostgreSQL schema; nothing was copied");
        };
        let kind = match ty.as_str() {
            "bigint" | "integer" | "smallint" | "boolean" => Kind::Int,
            "text" => Kind::Text,
            "bytea" => Kind::Bytes,
            other => bail!("the PostgreSQL column {table}.{name} has a type migrate-store does not know: {other}"),
        };
        columns.push(Column { name, kind });
    }
    Ok(columns)
}

/// One value as both sides agree on it: integers (and flags) as `i64`, text with NUL as
/// U+FFFD (PostgreSQL's text cannot hold NUL; the store writes it so), bytes.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    fn read(row: &Row<'_>, i: usize, column: &Column, table: &str) -> DbResult<Cell> {
        let bad = |what: &str| DbError::column(i, format!("{table}.{}: {what}", column.name));
        match row {
            Row::Sqlite(r) => {
                use rusqlite::types::ValueRef;
                Ok(match (r.get_ref(i)?, column.kind) {
                    (ValueRef::Null, _) => Cell::Null,
                    (ValueRef::Integer(v), Kind::Int) => Cell::Int(v),
                    (ValueRef::Text(t), Kind::Text) => Cell::Text(
                        std::str::from_utf8(t).map_err(|_| bad("text that is not UTF-8"))?.replace('\0', "\u{FFFD}"),
                    ),
                    (ValueRef::Blob(b), Kind::Bytes) => Cell::Bytes(b.to_vec()),
                    (other, kind) => {
                        return Err(bad(&format!("a {:?} value where {kind:?} belongs", other.data_type())))
                    }
                })
            }
            Row::Postgres(_) => Ok(match column.kind {
                Kind::Int => row.get::<Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
                Kind::Text => row.get::<Option<String>>(i)?.map_or(Cell::Null, Cell::Text),
                Kind::Bytes => row.get::<Option<Vec<u8>>>(i)?.map_or(Cell::Null, Cell::Bytes),
            }),
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(v) => Value::Int(*v),
            Cell::Text(t) => Value::from(t.as_str()),
            Cell::Bytes(b) => Value::Blob(std::borrow::Cow::Borrowed(b)),
        }
    }

    /// Feeds the value, with its kind and length, into a row's hash.
    fn hash(&self, h: &mut Sha256) {
        match self {
            Cell::Null => h.update([0]),
            Cell::Int(v) => {
                h.update([1]);
                h.update(v.to_le_bytes());
            }
            Cell::Text(t) => {
                h.update([2]);
                h.update((t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            Cell::Bytes(b) => {
                h.update([3]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
}

/// The rows of a table as a digest that does not depend on their order: each row hashed,
/// the hashes sorted, and hashed together.
#[derive(Debug, Default, PartialEq, Eq)]
struct TableDigest(Vec<[u8; 32]>);

impl TableDigest {
    fn add(&mut self, cells: &[Cell]) {
        let mut h = Sha256::new();
        for cell in cells {
            cell.hash(&mut h);
        }
        self.0.push(h.finalize().into());
    }

    fn finish(mut self) -> [u8; 32] {
        self.0.sort_unstable();
        let mut h = Sha256::new();
        for row in &self.0 {
            h.update(row);
        }
        h.finalize().into()
    }
}

/// A row's cells, column by column.
fn read_cells(row: &Row<'_>, table: &str, columns: &[Column]) -> DbResult<Vec<Cell>> {
    columns.iter().enumerate().map(|(i, column)| Cell::read(row, i, column, table)).collect()
}

fn select(table: &str, columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    format!("SELECT {} FROM {table}", names.join(", "))
}

/// Copies a table's rows as they are; returns the digest of what was read.
fn copy_rows(
    src: Db<'_>,
    dst: Db<'_>,
    table: &str,
    columns: &[Column],
    progress: &dyn Progress,
) -> anyhow::Result<[u8; 32]> {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let places: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), places.join(", "));
    // A case may be linked to a later one: the links are set once every case is there.
    let link = (table == "cases").then(|| columns.iter().position(|c| c.name == "linked_case")).flatten();
    let mut links = Vec::new();
    let mut digest = TableDigest::default();
    let order = if table == "cases" { " ORDER BY id" } else { "" };
    src.for_each(&format!("{}{order}", select(table, columns)), &[], |row| {
        let cells = read_cells(row, table, columns)?;
        digest.add(&cells);
        let mut values: Vec<Value<'_>> = cells.iter().map(Cell::value).collect();
        if let Some(at) = link {
            if let (Cell::Int(id), Cell::Int(linked)) = (&cells[0], &cells[at]) {
                links.push((*id, *linked));
                values[at] = Value::Null;
            }
        }
        dst.execute(&insert, &values)?;
        progress.advance(1);
        Ok(())
    })
    .with_context(|| format!("cannot copy the table {table}"))?;
    for (id, linked) in links {
        dst.execute("UPDATE cases SET linked_case = ?1 WHERE id = ?2", vals![linked, id])?;
    }
    Ok(digest.finish())
}

/// The digest of a table's rows on PostgreSQL.
fn table_digest(db: Db<'_>, table: &str, columns: &[Column]) -> anyhow::Result<[u8; 32]> {
    let mut digest = TableDigest::default();
    db.for_each(&select(table, columns), &[], |row| {
        let cells = read_cells(row, table, columns)?;
        digest.add(&cells);
        Ok(())
    })
    .with_context(|| format!("cannot read back the table {table}"))?;
    Ok(digest.finish())
}

/// Copies the raw mails with their bytes out of the pack files (PostgreSQL keeps them in
/// the row, packed as in the pack file, in no pack); returns the digest of the rows as
/// they must read back on PostgreSQL.
fn copy_raw_mails(
    src: Db<'_>,
    dst: Db<'_>,
    packs_dir: &Path,
    columns: &[Column],
    report: &mut RawReport,
    progress: &dyn Progress,
) -> anyhow::Result<[u8; 32]> {
    let rows: Vec<(String, i64)> =
        src.query_map("SELECT sha256, size FROM raw_mails ORDER BY sha256", &[], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut digest = TableDigest::default();
    for (sha, size) in rows {
        let data = match mails::packed_raw(src, packs_dir, &sha)? {
            Some(packed) => {
                // Checked before it goes: a damaged raw mail is not carried over in silence.
                let raw = mails::unpack_raw(&sha, &packed)?;
                report.copied += 1;
                report.bytes += raw.len() as u64;
                packed
            }
            None => {
                report.removed += 1;
                Vec::new()
            }
        };
        mails::store_raw(dst, None, &sha, size.max(0) as usize, &data)?;
        let cells: Vec<Cell> = columns
            .iter()
            .map(|c| match c.name.as_str() {
                "sha256" => Cell::Text(sha.clone()),
                "size" => Cell::Int(size),
                "data" => Cell::Bytes(data.clone()),
                _ => Cell::Null,
            })
            .collect();
        digest.add(&cells);
        progress.advance(1);
    }
    Ok(digest.finish())
}

/// Every raw mail PostgreSQL now holds decompresses to the content its hash names.
fn check_raw_mails(db: Db<'_>, expected: u64) -> anyhow::Result<()> {
    let mut checked = 0u64;
    db.for_each("SELECT sha256, data FROM raw_mails", &[], |row| {
        let (sha, data): (String, Vec<u8>) = (row.get(0)?, row.get(1)?);
        if !data.is_empty() {
            mails::unpack_raw(&sha, &data).map_err(|e| DbError::column(1, e.to_string()))?;
            checked += 1;
        }
        Ok(())
    })
    .context("a raw mail read back from PostgreSQL does not match its hash")?;
    if checked != expected {
        bail!("{expected} raw mails were copied but {checked} read back from PostgreSQL");
    }
    Ok(())
}

/// Copies the attachment files the attachments name into the `blobs` table, each checked
/// against its size and hash on the way in and read back after.
fn copy_attachment_files(
    src: Db<'_>,
    dst: Db<'_>,
    blob_dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<FileReport> {
    let files: Vec<(String, i64)> =
        src.query_map("SELECT sha256, max(size) FROM attachments GROUP BY sha256 ORDER BY sha256", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    progress.start("attachment files", files.len() as u64);
    let mut report = FileReport::default();
    for (sha, size) in &files {
        let size = (*size).max(0) as u64;
        let bytes = blobs::read(src, blob_dir, sha, size).map_err(|e| anyhow::anyhow!("{e}"))?;
        dst.execute(
            "INSERT INTO blobs (sha256, size, data) VALUES (?1, ?2, ?3) ON CONFLICT (sha256) DO NOTHING",
            vals![sha.as_str(), size, bytes.as_slice()],
        )?;
        // Read back as every node will read it: checked against its size and hash.
        blobs::read(dst, blob_dir, sha, size).map_err(|e| anyhow::anyhow!("read back from PostgreSQL: {e}"))?;
        report.files += 1;
        report.bytes += size;
        progress.advance(1);
    }
    progress.finish();
    Ok(report)
}

/// Moves each identity sequence past the ids copied, so new rows go on from the last.
fn set_sequences(db: Db<'_>) -> anyhow::Result<()> {
    let identities: Vec<(String, String)> = db.query_map(
        "SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (table, column) in identities {
        if !COPIED.contains(&table.as_str()) {
            continue;
        }
        let max: Option<i64> = db.query_one(&format!("SELECT max({column}) FROM {table}"), &[], |r| r.get(0))?;
        if let Some(max) = max {
            db.query_one(
                &format!("SELECT setval(pg_get_serial_sequence('{table}', '{column}'), ?1)"),
                vals![max],
                |r| r.get::<i64>(0),
            )
            .with_context(|| format!("cannot move the id sequence of {table} past {max}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::nodes::{self, NodeId};

    #[test]
    fn every_sqlite_table_is_copied_or_known_not_to_be() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        check_every_table_known(store.db()).unwrap();
        let tables = sqlite_tables(store.db()).unwrap();
        for table in COPIED {
            assert!(tables.iter().any(|t| t == table), "{table} is copied but SQLite has no such table");
        }
        // The check can fail: a table nobody told migrate-store about.
        store.db().batch("CREATE TABLE later_feature (id INTEGER PRIMARY KEY)").unwrap();
        let err = check_every_table_known(store.db()).unwrap_err().to_string();
        assert!(err.contains("later_feature"), "{err}");
    }

    #[test]
    fn a_running_daemon_on_the_old_store_stops_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path(), false).unwrap();
        let node = NodeId { name: "gw".into(), instance: "1".into() };
        nodes::register(store.db(), &node, "test", &crate::store::now()).unwrap();
        let err = refuse_running_daemon(store.db()).unwrap_err().to_string();
        assert!(err.contains("casegate run is running") && err.contains("node gw"), "{err}");
        nodes::stopped(store.db(), &node, &crate::store::now()).unwrap();
        refuse_running_daemon(store.db()).unwrap();
        // One that died long ago is not running either.
        let old = crate::store::stamp(chrono::Utc::now() - chrono::Duration::hours(1));
        nodes::register(store.db(), &NodeId { name: "old".into(), instance: "2".into() }, "test", &old).unwrap();
        refuse_running_daemon(store.db()).unwrap();
    }

    fn digest(rows: &[Vec<Cell>]) -> [u8; 32] {
        let mut d = TableDigest::default();
        for row in rows {
            d.add(row);
        }
        d.finish()
    }

    #[test]
    fn a_table_digest_ignores_row_order_and_sees_every_value() {
        let a = vec![Cell::Int(1), Cell::Text("jane@customer.example".into()), Cell::Null];
        let b = vec![Cell::Int(2), Cell::Text("bob@customer.example".into()), Cell::Bytes(vec![1, 2])];
        assert_eq!(digest(&[a.clone(), b.clone()]), digest(&[b.clone(), a.clone()]));
        assert_ne!(digest(&[a.clone(), b.clone()]), digest(std::slice::from_ref(&a)), "a missing row");
        assert_ne!(digest(&[a.clone(), b.clone()]), digest(&[a.clone(), a.clone()]), "a doubled row");
        for changed in [Cell::Int(0), Cell::Text(String::new()), Cell::Bytes(Vec::new())] {
            let mut c = a.clone();
            c[2] = changed;
            assert_ne!(digest(std::slice::from_ref(&a)), digest(&[c]), "NULL is not {:?}", a[2]);
        }
        // Values are not run together: ("ab", "c") is not ("a", "bc").
        let split = |x: &str, y: &str| digest(&[vec![Cell::Text(x.into()), Cell::Text(y.into())]]);
        assert_ne!(split("ab", "c"), split("a", "bc"));
    }
}
