//! One way to run SQL against either database: SQLite (the embedded default) or
//! PostgreSQL (several nodes on one database). Every query of the store goes through
//! [`Db`], written once in SQLite's dialect with numbered parameters (`?1`, `?2`); for
//! PostgreSQL the text is translated once and the prepared statement kept.
//!
//! The dialect both understand is used on purpose: `INSERT … ON CONFLICT … DO NOTHING`
//! rather than `INSERT OR IGNORE`, `RETURNING id` rather than `last_insert_rowid()`,
//! `COALESCE`, times as RFC 3339 text (compared as text), integers as 64-bit. The few
//! spellings that differ are translated: `?N` → `$N`, and the null-safe comparison
//! `x IS ?N` → `x IS NOT DISTINCT FROM $N`.
//!
//! Values go in as [`Value`] and come out through [`Col`], which knows both drivers.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::types::{ToSqlOutput, ValueRef};

/// A value bound to a query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
    Bool(bool),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i64, i32, u32, u16, u8);

impl From<usize> for Value<'_> {
    fn from(v: usize) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Value<'_> {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(Cow::Borrowed(v))
    }
}

impl From<Vec<u8>> for Value<'_> {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(Cow::Owned(v))
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `vals![a, b, c]`: the parameters of a query, each converted into a [`Value`].
#[macro_export]
macro_rules! vals {
    () => { &[] as &[$crate::store::db::Value<'_>] };
    ($($v:expr),+ $(,)?) => { &[$($crate::store::db::Value::from($v)),+] as &[$crate::store::db::Value<'_>] };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
        }))
    }
}

impl postgres_types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_types::Type;
        match self {
            Value::Null => Ok(postgres_types::IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_ref().to_sql(ty, out),
            Value::Blob(b) => b.as_ref().to_sql(ty, out),
            Value::Bool(b) => match *ty {
                Type::INT2 | Type::INT4 | Type::INT8 => i64::from(*b).to_sql(&Type::INT8, out),
                _ => b.to_sql(ty, out),
            },
        }
    }

    // The statement's parameter types decide; `to_sql` converts between the integer and
    // boolean widths, and the driver refuses what cannot be converted.
    fn accepts(_: &postgres_types::Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// A failure of either database, or a column that did not hold what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("column {column}: {problem}")]
    Column { column: usize, problem: String },
}

pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    /// Whether the database refused the statement because it would break a uniqueness
    /// rule (another writer recorded the same thing first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
                    && e.to_string().contains("UNIQUE")
            }
            DbError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            DbError::Column { .. } => false,
        }
    }
}

/// A column value read back, by either driver.
pub trait Col: Sized {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error>;
}

macro_rules! col_same {
    ($($t:ty),*) => {$(
        impl Col for $t {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
                row.try_get(i)
            }
        }
    )*};
}
col_same!(i64, Option<i64>, String, Option<String>, Vec<u8>, Option<Vec<u8>>, bool, Option<bool>);

/// One row of a result.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    pub fn get<T: Col>(&self, i: usize) -> DbResult<T> {
        match self {
            Row::Sqlite(r) => Ok(T::sqlite(r, i)?),
            Row::Postgres(r) => Ok(T::postgres(r, i)?),
        }
    }
}

/// A PostgreSQL connection as the store uses it: one session (transactions are begun and
/// ended with plain statements), with its prepared statements kept by their text.
pub struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn { client: RefCell::new(client), statements: RefCell::new(HashMap::new()) }
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.borrow_mut().prepare(&postgres_dialect(sql))?;
        self.statements.borrow_mut().insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn params<'v>(values: &'v [Value<'_>]) -> Vec<&'v (dyn postgres_types::ToSql + Sync)> {
        values.iter().map(|v| v as &(dyn postgres_types::ToSql + Sync)).collect()
    }
}

/// Where queries run: a SQLite connection or a PostgreSQL session. Cheap to copy.
#[derive(Clone, Copy)]
pub enum Db<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgConn),
}

impl<'a> From<&'a rusqlite::Connection> for Db<'a> {
    fn from(conn: &'a rusqlite::Connection) -> Self {
        Db::Sqlite(conn)
    }
}

impl Db<'_> {
    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value<'_>]) -> DbResult<usize> {
        match self {
            Db::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?),
            Db::Postgres(p) => {
                let statement = p.statement(sql)?;
                let changed = p.client.borrow_mut().execute(&statement, &PgConn::params(params))?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// The first row, read by `read`, if there is one.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        read: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        match self {
            Db::Sqlite(c) => {
                let mut statement = c.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params))?;
                match rows.next()? {
                    Some(row) => Ok(Some(read(&Row::Sqlite(row))?)),
                    None => Ok(None),
                }
            }
            Db::Postgres(p) => {
                let statement = p.statement(sql)?;
                let rows = p.client.borrow_mut().query(&statement, &PgConn::params(params))?;
                rows.first().map(|row| read(&Row::Postgres(row))).transpose()
            }
        }
    }

    /// Every row, each read by `read`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut read: impl FnMut(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<Vec<T>> {
        match self {
            Db::Sqlite(c) => {
                let mut statement = c.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(read(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            Db::Postgres(p) => {
                let statement = p.statement(sql)?;
                let rows = p.client.borrow_mut().query(&statement, &PgConn::params(params))?;
                rows.iter().map(|row| read(&Row::Postgres(row))).collect()
            }
        }
    }

    /// Runs statements without parameters, separated by semicolons (transaction control,
    /// migrations).
    pub fn batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(p) => Ok(p.client.borrow_mut().batch_execute(sql)?),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// SQLite's spelling of a statement in PostgreSQL's: numbered parameters `?N` become
/// `$N`, and `IS ?N` (SQLite's null-safe equality) `IS NOT DISTINCT FROM $N`. Text in
/// quotes is left alone.
pub fn postgres_dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            continue;
        }
        if quoted || c != '?' || !chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            out.push(c);
            continue;
        }
        if out.trim_end().to_ascii_uppercase().ends_with(" IS") && !sql[..i].trim_end().ends_with("NOT") {
            let keep = out.trim_end().len();
            out.truncate(keep);
            out.push_str(" NOT DISTINCT FROM ");
        }
        out.push('$');
        while let Some((_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
            out.push(*d);
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_spelt_for_postgres() {
        assert_eq!(
            postgres_dialect("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12"
        );
        assert_eq!(
            postgres_dialect("SELECT 1 FROM t WHERE case_id IS ?2"),
            "SELECT 1 FROM t WHERE case_id IS NOT DISTINCT FROM $2"
        );
        assert_eq!(
            postgres_dialect("SELECT 'is ?1' FROM t WHERE x IS NULL AND y = ?1"),
            "SELECT 'is ?1' FROM t WHERE x IS NULL AND y = $1"
        );
    }

    #[test]
    fn values_round_trip_through_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = Db::Sqlite(&conn);
        db.batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, f INTEGER, n TEXT)").unwrap();
        let none: Option<&str> = None;
        db.execute("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)", vals![42_i64, "x", &b"\x00\x01"[..], true, none])
            .unwrap();
        let row = db
            .query_row("SELECT i, s, b, f, n FROM t WHERE i = ?1", vals![42_i64], |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<String>(1)?,
                    r.get::<Vec<u8>>(2)?,
                    r.get::<bool>(3)?,
                    r.get::<Option<String>>(4)?,
                ))
            })
            .unwrap();
        assert_eq!(row, Some((42, "x".to_string(), vec![0, 1], true, None)));
        assert_eq!(db.query_map("SELECT i FROM t", vals![], |r| r.get::<i64>(0)).unwrap(), [42]);
        let dup = db
            .batch("CREATE UNIQUE INDEX u ON t(i)")
            .and_then(|()| db.execute("INSERT INTO t (i) VALUES (42)", vals![]));
        assert!(dup.unwrap_err().is_unique_violation());
    }
}
