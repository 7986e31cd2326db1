//! One way to run SQL against either database: SQLite (the embedded default) or
//! PostgreSQL (several nodes on one database). Every query of the store goes through
//! [`Db`], written once in SQLite's dialect with numbered parameters (`?1`, `?2`); for
//! PostgreSQL the text is translated once and the prepared statement kept.
//!
//! The dialect both understand is used on purpose: `INSERT … ON CONFLICT … DO NOTHING`
//! rather than `INSERT OR IGNORE`, `COALESCE`, times as RFC 3339 text (compared as text:
//! PostgreSQL's text columns are declared `COLLATE "C"`, so they compare byte by byte as
//! SQLite's do), integers as 64-bit, `CASE WHEN flag THEN 1 ELSE 0 END` rather than
//! summing a flag. The few spellings that differ are translated: `?N` → `$N`, and the
//! null-safe comparisons `x IS ?N` → `x IS NOT DISTINCT FROM $N`, `x IS NOT ?N` →
//! `x IS DISTINCT FROM $N`. A new row's id comes back from [`Db::insert_with_id`] (SQLite's
//! `last_insert_rowid`; on PostgreSQL drawn from the table's sequence before the row is
//! written).
//!
//! Values go in as [`Value`] and come out through [`Col`], which knows both drivers.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::grouping::{self, Appendable, Item, Step};
use super::target::Target;

/// A value bound to a query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
    Bool(bool),
}

impl Value<'_> {
    /// The same value, owning its text or bytes (to be sent later).
    pub fn to_owned_value(&self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Int(v) => Value::Int(*v),
            Value::Text(s) => Value::Text(Cow::Owned(s.to_string())),
            Value::Blob(b) => Value::Blob(Cow::Owned(b.to_vec())),
            Value::Bool(b) => Value::Bool(*b),
        }
    }
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

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
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
            // PostgreSQL's text cannot hold NUL, which SQLite's can (a mail's text may
            // carry one): it is stored as U+FFFD, the character for "unreadable".
            Value::Text(s) if s.contains('\0') => s.replace('\0', "\u{FFFD}").to_sql(ty, out),
            Value::Text(s) => s.as_ref().to_sql(ty, out),
            Value::Blob(b) => b.as_ref().to_sql(ty, out),
            Value::Bool(b) => match *ty {
                Type::INT2 => i16::from(*b).to_sql(ty, out),
                Type::INT4 => i32::from(*b).to_sql(ty, out),
                Type::INT8 => i64::from(*b).to_sql(ty, out),
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
    /// Not the error's source: its words already say all the driver's chain would, and
    /// `{:#}` would print them again.
    #[error("{}", postgres_words(.0))]
    Postgres(postgres::Error),
    #[error("column {column}: {problem}")]
    Column { column: usize, problem: String },
    /// No runtime for the session (the system refused a thread's resources).
    #[error("cannot start the PostgreSQL session's runtime: {0}")]
    Runtime(std::io::Error),
    /// No session: the server's TLS certificate could not be verified (the words say why
    /// and what to check; see `Target::connect`).
    #[error("{0}")]
    Unverified(String),
}

pub type DbResult<T> = Result<T, DbError>;

impl From<super::target::ConnectError> for DbError {
    fn from(e: super::target::ConnectError) -> DbError {
        match e {
            super::target::ConnectError::Unverified(why) => DbError::Unverified(why),
            super::target::ConnectError::Postgres(e) => DbError::Postgres(e),
        }
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Postgres(e)
    }
}

/// A PostgreSQL error with the server's own words (the driver's `Display` says only
/// "db error" for them).
fn postgres_words(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => e.to_string(),
    }
}

impl DbError {
    /// A column that holds something the store cannot read (a value edited by hand, a
    /// database from an incompatible version).
    pub fn column(column: usize, problem: impl Into<String>) -> DbError {
        DbError::Column { column, problem: problem.into() }
    }

    /// Whether the database refused the statement because it would break a uniqueness
    /// rule (another writer recorded the same thing first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
                    && e.to_string().contains("UNIQUE")
            }
            DbError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            DbError::Column { .. } | DbError::Unverified(_) | DbError::Runtime(_) => false,
        }
    }

    /// Whether another writer got in the way and doing the same work again will succeed
    /// (PostgreSQL only: SQLite has one writer at a time): it recorded the same thing
    /// first (a uniqueness rule), or the two waited for each other (a deadlock), or the
    /// database could not order them (a serialization failure).
    pub fn is_conflict(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            DbError::Postgres(e) => e.code().is_some_and(|c| {
                [SqlState::UNIQUE_VIOLATION, SqlState::T_R_DEADLOCK_DETECTED, SqlState::T_R_SERIALIZATION_FAILURE]
                    .contains(c)
            }),
            _ => false,
        }
    }

    /// Whether the failure is the installation's (the database or its connection: busy,
    /// full, read only, gone, in the way of another writer) rather than the work's. See
    /// `store::is_systemic`.
    pub fn is_systemic(&self) -> bool {
        match self {
            DbError::Sqlite(e) => sqlite_is_systemic(e),
            DbError::Postgres(e) => match e.code() {
                // No code: the connection failed (closed, refused, timed out, I/O).
                None => true,
                Some(code) => postgres_is_systemic(code.code()),
            },
            // The installation's to mend (its CA file, the URL, the server's certificate).
            DbError::Unverified(_) | DbError::Runtime(_) => true,
            DbError::Column { .. } => false,
        }
    }
}

pub(crate) fn sqlite_is_systemic(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    e.sqlite_error_code().is_some_and(|code| {
        matches!(
            code,
            C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::ReadOnly
                | C::OperationInterrupted
                | C::SystemIoFailure
                | C::DatabaseCorrupt
                | C::DiskFull
                | C::CannotOpen
                | C::FileLockingProtocolFailed
                | C::SchemaChanged
                | C::NotADatabase
        )
    })
}

/// SQLSTATE classes that are the installation's: the connection (08, and 25P03/25P04: a
/// session ended for sitting in a transaction too long), another writer in
/// the way (40, 55 — a lock not available —, and 23505: the same mail recorded first
/// elsewhere), resources (53), an operator (57), the system (58), the server itself (XX),
/// its configuration (F0) and a missing privilege (42501). A data exception (22), a
/// broken rule (23), a limit a value exceeds (54: an index entry too large) are the
/// work's; so is 25P02 — a statement refused because an earlier one of the same work
/// failed.
fn postgres_is_systemic(code: &str) -> bool {
    code == "23505"
        || code == "42501"
        // The server ended a session that sat too long inside a transaction (idle, or in
        // all): the connection is gone, not the work wrong.
        || code == "25P03"
        || code == "25P04"
        || ["08", "40", "53", "55", "57", "58", "XX", "F0"].iter().any(|class| code.starts_with(class))
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
col_same!(String, Option<String>, Vec<u8>, Option<Vec<u8>>);

/// An integer of any width PostgreSQL returns (`smallint`, `integer`, `bigint`), or a
/// boolean as 0 or 1: SQLite has one integer type, and the store reads every integer
/// as `i64`.
struct PgInt(i64);

impl<'a> postgres_types::FromSql<'a> for PgInt {
    fn from_sql(ty: &postgres_types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_types::Type;
        Ok(PgInt(match *ty {
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            Type::BOOL => i64::from(bool::from_sql(ty, raw)?),
            _ => i64::from_sql(ty, raw)?,
        }))
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        use postgres_types::Type;
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::BOOL)
    }
}

impl Col for i64 {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(i).map(|v| v.0)
    }
}

impl Col for Option<i64> {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, Option<PgInt>>(i).map(|v| v.map(|v| v.0))
    }
}

impl Col for bool {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(i).map(|v| v.0 != 0)
    }
}

impl Col for Option<bool> {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, Option<PgInt>>(i).map(|v| v.map(|v| v.0 != 0))
    }
}

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

    /// A text column parsed into `T` (a status, a kind, a role).
    pub fn parse<T: std::str::FromStr<Err = String>>(&self, i: usize) -> DbResult<T> {
        let text: String = self.get(i)?;
        text.parse().map_err(|e: String| DbError::column(i, e))
    }
}

/// A PostgreSQL connection as the store uses it: one session (transactions are begun and
/// ended with plain statements), with its prepared statements kept by their text. A
/// session that broke (the server restarted, the network failed) is opened again before
/// the next transaction or statement outside one: the work in hand fails, the next
/// attempt gets a new session.
///
/// Inside a transaction, writes whose answer nobody reads ([`Db::defer`],
/// [`Db::insert_with_id`]) are not sent at once: they wait, in order, and go to the
/// server together with the next statement whose answer is needed (a read, the commit),
/// without waiting for each one's answer in between (a pipeline). A unit of work that
/// writes ten rows a mail and reads a few thus waits for the server a few times a mail
/// instead of a dozen and more. A deferred write that fails makes the statement it was
/// sent with fail with its error: the transaction is broken either way, and the unit's
/// work is undone (see `store::unit`).
pub struct PgConn {
    /// The session's own runtime, on which its connection is a task: driven while a
    /// statement waits for its answer.
    runtime: tokio::runtime::Runtime,
    session: RefCell<Option<super::target::Session>>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    target: Arc<Target>,
    /// Whether a transaction is open (begun by [`Db::begin`], not yet ended).
    in_transaction: Cell<bool>,
    /// What lives for the current transaction only (boxed: a connection is often moved
    /// and kept in enums beside smaller ones).
    tx: Box<TxState>,
    /// How many ids of each table the last transaction that wrote used (and whether they
    /// are numbers people see): the first draw of the next, made with its first read.
    used: RefCell<HashMap<&'static str, (i64, bool)>>,
    /// A transaction begun to write ([`TxMode::Write`]) is under way.
    writing: Cell<bool>,
    /// The transaction's `BEGIN` is still to be sent: it goes first, with the first
    /// statement sent in the transaction.
    begin_pending: Cell<bool>,
}

/// What a [`PgConn`] keeps for its current transaction; see its documentation.
#[derive(Default)]
struct TxState {
    /// Writes not sent yet, in order (grouped as they are sent: see `store::grouping`).
    deferred: RefCell<Vec<Deferred>>,
    /// Row ids drawn from a table's sequence for this transaction and not used yet, by
    /// table. What is left at the commit is dropped (a gap in the numbers, as a rollback
    /// leaves), except numbers people see: those are kept as spares (`spare_ids`) for
    /// the next transaction that opens a case, so none is skipped.
    ids: RefCell<HashMap<&'static str, IdBlock>>,
    /// What the store keeps for the transaction ([`Db::kept`]), by type.
    kept: RefCell<HashMap<std::any::TypeId, Box<dyn std::any::Any + Send>>>,
    /// Writes sent ahead, in order, whose answers are awaited at the next statement
    /// that waits (see [`PgConn::send_ahead`]).
    in_flight: RefCell<Vec<InFlight>>,
}

impl TxState {
    /// Everything dropped: a transaction begins or ends.
    fn clear(&self) {
        self.deferred.borrow_mut().clear();
        self.ids.borrow_mut().clear();
        self.kept.borrow_mut().clear();
        self.in_flight.borrow_mut().clear();
    }
}

/// Ids drawn from a sequence: the unused ones, and how many to draw next time.
#[derive(Default)]
struct IdBlock {
    free: std::collections::VecDeque<i64>,
    next_draw: i64,
    /// How many were drawn in all (what the transaction used is this less `free`).
    drawn: i64,
    /// Numbers people see (case numbers): the unused ones are spares at the commit.
    numbered: bool,
}

impl IdBlock {
    /// How many to draw now: the first time `first` (what the session's last writing
    /// transaction used), then twice as many as the last time.
    fn next_count(&mut self, first: i64) -> i64 {
        if self.drawn == 0 {
            self.next_draw = first;
        }
        let count = self.next_draw.clamp(1, MAX_ID_DRAW);
        self.next_draw = (count * 2).min(MAX_ID_DRAW);
        self.drawn += count;
        count
    }
}

/// A number drawn for a transaction and not used by it, kept for the next one (see
/// [`PgConn::next_id`]).
static SPARE: Appendable = Appendable {
    rank: 11,
    one: "INSERT INTO spare_ids (seq_table, id) VALUES (?1, ?2)",
    many: "INSERT INTO spare_ids (seq_table, id) SELECT * FROM unnest(?1::text[], ?2::bigint[])",
    key: &[],
};

/// Draws ?2 ids of table ?1: the lowest spares first (only numbers people see have
/// spares; those another transaction holds are skipped), then new ones from the table's
/// sequence. Newly drawn ids are higher than any spare, which was drawn before them. (The
/// sequence is looked up once: `nextval` of a name would look it up for every id.)
const DRAW: &str = "WITH seq AS MATERIALIZED (SELECT pg_get_serial_sequence(?1, 'id')::regclass AS s),
     spare AS (
         DELETE FROM spare_ids WHERE seq_table = ?1 AND id IN (
             SELECT id FROM spare_ids WHERE seq_table = ?1 ORDER BY id LIMIT ?2 FOR UPDATE SKIP LOCKED)
         RETURNING id)
     SELECT id FROM spare
     UNION ALL
     SELECT nextval(seq.s) FROM seq, generate_series(1, ?2 - (SELECT count(*) FROM spare))
     ORDER BY 1";

/// The most ids drawn at once: a batch's rows of one table are drawn in a few steps.
const MAX_ID_DRAW: i64 = 4096;

/// A deferred write.
type Deferred = Item<postgres::Statement, Value<'static>>;

/// A write sent, and how many rows it changed once its answer is in.
type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, postgres::Error>> + Send>>;

/// How many deferred writes make the session send them ahead, without waiting for their
/// answers: the server writes them while casegate goes on with the transaction's work.
pub const SEND_AHEAD_AT: usize = 1024;

/// The statement sent after the deferred writes, whose answer is waited for.
enum Request<'s, 'v> {
    Query(postgres::Statement, &'s [Value<'v>]),
    Execute(postgres::Statement, &'s [Value<'v>]),
    Batch(&'s str),
}

/// What the server answered to a [`Request`].
enum Answer {
    Rows(Vec<postgres::Row>),
    Changed(u64),
    Done,
}

type PgFuture<'f, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, postgres::Error>> + 'f>>;

impl PgConn {
    /// Opens a session to `target`.
    pub fn connect(target: Arc<Target>) -> DbResult<PgConn> {
        // The connection is a task on a thread of its own, so that writes sent ahead go to
        // the server and their answers come in while this thread works on.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("casegate-postgres")
            .enable_all()
            .build()
            .map_err(DbError::Runtime)?;
        let session = target.connect(&runtime)?;
        Ok(PgConn {
            runtime,
            session: RefCell::new(Some(session)),
            statements: RefCell::new(HashMap::new()),
            target,
            in_transaction: Cell::new(false),
            tx: Box::default(),
            used: RefCell::new(HashMap::new()),
            writing: Cell::new(false),
            begin_pending: Cell::new(false),
        })
    }

    /// Where this session connects to.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Whether the session can no longer be used (the connection broke).
    pub fn is_closed(&self) -> bool {
        self.session.borrow().as_ref().is_none_or(|s| s.client.is_closed())
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }

    /// Opens the session again if it broke, unless a transaction was under way on it
    /// (that transaction is lost; its work fails, and the next attempt reconnects).
    fn reconnect_if_closed(&self) -> DbResult<()> {
        if !self.is_closed() || self.in_transaction.get() {
            return Ok(());
        }
        tracing::info!(database = %self.target, "PostgreSQL session lost; connecting again");
        let session = self.target.connect(&self.runtime)?;
        *self.session.borrow_mut() = Some(session);
        self.statements.borrow_mut().clear();
        Ok(())
    }

    /// The client of the session (present until the connection is dropped).
    fn client(&self) -> Arc<tokio_postgres::Client> {
        Arc::clone(&self.session.borrow().as_ref().expect("a session until dropped").client)
    }

    fn statement(&self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        // Writes sent ahead answer first: an error of theirs is the transaction's error,
        // not the refusal of this statement that would follow it.
        if !self.tx.in_flight.borrow().is_empty() {
            self.send_after(Vec::new(), &[])?;
        }
        let client = self.client();
        let statement = self.runtime.block_on(client.prepare(&postgres_dialect(sql)))?;
        self.statements.borrow_mut().insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn params<'v>(values: &'v [Value<'_>]) -> Vec<&'v (dyn postgres_types::ToSql + Sync)> {
        values.iter().map(|v| v as &(dyn postgres_types::ToSql + Sync)).collect()
    }

    /// Sends the deferred writes and then `requests`, in this order and without waiting
    /// in between, and waits for all the answers: the requests', or the first error in
    /// order.
    fn send(&self, requests: &[Request<'_, '_>]) -> DbResult<Vec<Answer>> {
        self.send_after(std::mem::take(&mut *self.tx.deferred.borrow_mut()), requests)
    }

    /// The writes `deferred`, grouped (see `store::grouping`), each a request of its own
    /// that is sent when first polled.
    fn write_futures(&self, deferred: Vec<Deferred>) -> DbResult<Vec<InFlight>> {
        let client = self.client();
        let begin = self.begin_pending.replace(false).then(|| {
            let client = Arc::clone(&client);
            Box::pin(async move { client.batch_execute("BEGIN").await.map(|()| 0_u64) }) as InFlight
        });
        let writes = grouping::group(deferred)
            .into_iter()
            .map(|step| {
                let client = Arc::clone(&client);
                Ok(match step {
                    Step::One(statement, values) => {
                        Box::pin(async move { client.execute(&statement, &PgConn::params(&values)).await }) as InFlight
                    }
                    // A kind of row's: one array a column.
                    Step::Many(kind, columns) => {
                        let statement = self.statement(kind.many)?;
                        Box::pin(async move {
                            let params: Vec<&(dyn postgres_types::ToSql + Sync)> =
                                columns.iter().map(|c| c as &(dyn postgres_types::ToSql + Sync)).collect();
                            client.execute(&statement, &params).await
                        })
                    }
                })
            })
            .collect::<DbResult<Vec<InFlight>>>()?;
        Ok(begin.into_iter().chain(writes).collect())
    }

    /// Sends the deferred writes now, without waiting for their answers: the server works
    /// on them while this thread goes on. Their answers are awaited, in order, at the
    /// next statement that waits (a read, the commit), whose error an error of theirs
    /// becomes.
    fn send_ahead(&self) -> DbResult<()> {
        let deferred = std::mem::take(&mut *self.tx.deferred.borrow_mut());
        let mut writes = self.write_futures(deferred)?;
        let mut sent: Vec<InFlight> = Vec::with_capacity(writes.len());
        // A request goes when its future is first polled, in order.
        self.runtime.block_on(std::future::poll_fn(|cx| {
            for mut write in std::mem::take(&mut writes) {
                match write.as_mut().poll(cx) {
                    std::task::Poll::Ready(result) => sent.push(Box::pin(std::future::ready(result))),
                    std::task::Poll::Pending => sent.push(write),
                }
            }
            std::task::Poll::Ready(())
        }));
        self.tx.in_flight.borrow_mut().extend(sent);
        Ok(())
    }

    /// Drops the deferred writes, and waits for the writes sent ahead and drops their
    /// answers: the work they belong to is being undone, or the transaction rolled back.
    fn drop_unsent(&self) {
        self.tx.deferred.borrow_mut().clear();
        let in_flight = std::mem::take(&mut *self.tx.in_flight.borrow_mut());
        if !in_flight.is_empty() {
            self.runtime.block_on(futures::future::join_all(in_flight));
        }
    }

    /// [`PgConn::send`] with the writes `deferred` sent first (none: the deferred writes
    /// wait for a later statement), after those sent ahead.
    fn send_after(&self, deferred: Vec<Deferred>, requests: &[Request<'_, '_>]) -> DbResult<Vec<Answer>> {
        let writes = self.write_futures(deferred)?;
        let ahead = std::mem::take(&mut *self.tx.in_flight.borrow_mut());
        let client = self.client();
        let client: &tokio_postgres::Client = &client;
        let request_params: Vec<_> = requests
            .iter()
            .map(|r| match r {
                Request::Query(_, values) | Request::Execute(_, values) => PgConn::params(values),
                Request::Batch(_) => Vec::new(),
            })
            .collect();
        let mut futures: Vec<PgFuture<'_, Answer>> = ahead
            .into_iter()
            .chain(writes)
            .map(|write| Box::pin(async move { write.await.map(Answer::Changed) }) as PgFuture<'_, Answer>)
            .collect();
        let written = futures.len();
        futures.extend(requests.iter().zip(&request_params).map(|(request, params)| -> PgFuture<'_, Answer> {
            match request {
                Request::Query(statement, _) => {
                    Box::pin(async { client.query(statement, params).await.map(Answer::Rows) })
                }
                Request::Execute(statement, _) => {
                    Box::pin(async { client.execute(statement, params).await.map(Answer::Changed) })
                }
                Request::Batch(sql) => Box::pin(async { client.batch_execute(sql).await.map(|()| Answer::Done) }),
            }
        }));
        let mut answers: Vec<Option<Result<Answer, postgres::Error>>> = futures.iter().map(|_| None).collect();
        // Each request is sent when its future is first polled: a first pass polls them
        // in order, which sends them in order. Then only the futures an answer woke are
        // polled again, whatever the order they finish in (a pass over all of them at
        // every wake-up would cost the square of their number).
        let mut waiting = futures::stream::FuturesUnordered::new();
        self.runtime.block_on(std::future::poll_fn(|cx| {
            for (i, mut future) in std::mem::take(&mut futures).into_iter().enumerate() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(result) => answers[i] = Some(result),
                    std::task::Poll::Pending => waiting.push(async move { (i, future.await) }),
                }
            }
            std::task::Poll::Ready(())
        }));
        self.runtime.block_on(async {
            use futures::StreamExt as _;
            while let Some((i, result)) = waiting.next().await {
                answers[i] = Some(result);
            }
        });
        let mut out = Vec::with_capacity(requests.len());
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.expect("the pipeline ends only when every answer is in")?;
            if i >= written {
                out.push(answer);
            }
        }
        Ok(out)
    }

    /// Several queries sent together (after the deferred writes); their rows, in order.
    fn query_many(&self, queries: &[(&str, &[Value<'_>])]) -> DbResult<Vec<Vec<postgres::Row>>> {
        self.query_after(std::mem::take(&mut *self.tx.deferred.borrow_mut()), queries)
    }

    /// [`PgConn::query_many`] after the writes `deferred` (none: the deferred writes wait
    /// for a later statement).
    fn query_after(
        &self,
        deferred: Vec<Deferred>,
        queries: &[(&str, &[Value<'_>])],
    ) -> DbResult<Vec<Vec<postgres::Row>>> {
        self.reconnect_if_closed()?;
        let draws = self.draws_ahead();
        let draw_params: Vec<[Value<'_>; 2]> =
            draws.iter().map(|(table, count)| [Value::from(*table), Value::Int(*count)]).collect();
        let requests = queries
            .iter()
            .map(|(sql, params)| (*sql, *params))
            .chain(draw_params.iter().map(|params| (DRAW, &params[..])))
            .map(|(sql, params)| Ok(Request::Query(self.statement(sql)?, params)))
            .collect::<DbResult<Vec<_>>>()?;
        let mut answers = self
            .send_after(deferred, &requests)?
            .into_iter()
            .map(|answer| match answer {
                Answer::Rows(rows) => rows,
                _ => unreachable!("a query answers with rows"),
            })
            .collect::<Vec<_>>();
        for ((table, _), rows) in draws.iter().zip(answers.split_off(queries.len())) {
            self.drawn(table, &rows)?;
        }
        Ok(answers)
    }

    /// With the first read of a transaction that writes, the ids of each table that the
    /// session's last such transaction used are drawn too, as many as it used (table,
    /// count): a batch then draws nothing on its own, where every draw would wait for the
    /// writes sent ahead of it. Nothing once the transaction has drawn.
    fn draws_ahead(&self) -> Vec<(&'static str, i64)> {
        let mut ids = self.tx.ids.borrow_mut();
        if !self.writing.get() || !ids.is_empty() {
            return Vec::new();
        }
        let mut draws: Vec<(&'static str, i64)> = self
            .used
            .borrow()
            .iter()
            .filter(|(_, (count, _))| *count > 0)
            .map(|(table, (count, numbered))| {
                let block = ids.entry(table).or_default();
                block.numbered = *numbered;
                (*table, block.next_count(*count))
            })
            .collect();
        draws.sort_unstable();
        draws
    }

    /// Adds ids drawn for `table` (the rows of a [`DRAW`]) to the transaction's.
    fn drawn(&self, table: &'static str, rows: &[postgres::Row]) -> DbResult<()> {
        let drawn: Vec<i64> = rows.iter().map(|row| Row::Postgres(row).get(0)).collect::<DbResult<_>>()?;
        self.tx.ids.borrow_mut().entry(table).or_default().free.extend(drawn);
        Ok(())
    }

    fn query(&self, sql: &str, params: &[Value<'_>]) -> DbResult<Vec<postgres::Row>> {
        Ok(self.query_many(&[(sql, params)])?.pop().unwrap_or_default())
    }

    fn execute(&self, sql: &str, params: &[Value<'_>]) -> DbResult<u64> {
        self.reconnect_if_closed()?;
        let statement = self.statement(sql)?;
        match self.send(&[Request::Execute(statement, params)])?.pop() {
            Some(Answer::Changed(n)) => Ok(n),
            _ => unreachable!("a statement answers with the rows it changed"),
        }
    }

    /// Queues a write to be sent with the next statement (inside a transaction), or runs
    /// it at once (outside one). `late`: nothing deferred after it depends on it, so it
    /// may go after the rows deferred around it (see `store::grouping`).
    fn defer(&self, sql: &str, params: &[Value<'_>], late: bool) -> DbResult<()> {
        if !self.in_transaction.get() {
            return self.execute(sql, params).map(drop);
        }
        let statement = self.statement(sql)?;
        let owned = params.iter().map(Value::to_owned_value).collect();
        let item = if late { Item::Late(statement, owned) } else { Item::Barrier(statement, owned) };
        self.push_deferred(item)
    }

    /// Adds a deferred write; many waiting go ahead ([`PgConn::send_ahead`]).
    fn push_deferred(&self, item: Deferred) -> DbResult<()> {
        let waiting = {
            let mut deferred = self.tx.deferred.borrow_mut();
            deferred.push(item);
            deferred.len()
        };
        if waiting >= SEND_AHEAD_AT {
            self.send_ahead()?;
        }
        Ok(())
    }

    /// [`PgConn::defer`] for a row of a kind written together with others of its kind.
    fn defer_row(&self, kind: &'static Appendable, params: &[Value<'_>]) -> DbResult<()> {
        if !self.in_transaction.get() {
            return self.execute(kind.one, params).map(drop);
        }
        let owned = params.iter().map(Value::to_owned_value).collect();
        self.push_deferred(Item::Row(kind, owned))
    }

    /// The next id of `table`'s sequence for this transaction. Drawn in blocks: first as
    /// many as the session's last writing transaction used (one, the first time; drawn
    /// with the transaction's first read: see [`PgConn::draws_ahead`]), then twice as many
    /// each time. A session that writes one row a transaction (a quiet mailbox's mail, a
    /// release) leaves no gap in the ids people see (`mail #…`, quarantine and outbox
    /// ids); a batch draws once; a smaller transaction after a larger one leaves the
    /// difference as a gap, once. Outside a transaction, one at a time. With `numbered`
    /// (case numbers), spares left by earlier transactions go first and this
    /// transaction's unused numbers become spares at its commit: none is skipped.
    /// Drawing waits for no deferred write: the sequence does not depend on them.
    fn next_id(&self, table: &'static str, numbered: bool) -> DbResult<i64> {
        if let Some(id) = self.tx.ids.borrow_mut().get_mut(table).and_then(|b| b.free.pop_front()) {
            return Ok(id);
        }
        let count = {
            let mut ids = self.tx.ids.borrow_mut();
            let block = ids.entry(table).or_default();
            block.numbered = numbered;
            let first = self.used.borrow().get(table).map_or(1, |(count, _)| *count);
            if self.in_transaction.get() {
                block.next_count(first)
            } else {
                1
            }
        };
        // Alone (the block is there now, so no other table's is drawn with it): drawing
        // waits for no deferred write.
        let rows = self.query_after(Vec::new(), &[(DRAW, vals![table, count])])?.pop().unwrap_or_default();
        self.drawn(table, &rows)?;
        let mut ids = self.tx.ids.borrow_mut();
        let block = ids.entry(table).or_default();
        block.free.pop_front().ok_or_else(|| DbError::column(0, "the sequence gave no id"))
    }

    /// Defers the transaction's unused numbers people see as spares (before its commit).
    fn keep_spares(&self) -> DbResult<()> {
        let spares: Vec<(&'static str, i64)> = self
            .tx
            .ids
            .borrow_mut()
            .iter_mut()
            .filter(|(_, block)| block.numbered)
            .flat_map(|(table, block)| block.free.drain(..).map(|id| (*table, id)))
            .collect();
        for (table, id) in spares {
            self.defer_row(&SPARE, &[Value::from(table), Value::Int(id)])?;
        }
        Ok(())
    }

    /// Ends the transaction's deferred writes and unused ids (after a commit or rollback).
    fn end_transaction(&self) {
        if self.writing.get() {
            let mut used = self.used.borrow_mut();
            used.clear();
            for (table, block) in self.tx.ids.borrow().iter() {
                let count = block.drawn - i64::try_from(block.free.len()).unwrap_or(0);
                used.insert(*table, (count, block.numbered));
            }
        }
        self.begin_pending.set(false);
        self.writing.set(false);
        self.tx.clear();
        self.in_transaction.set(false);
    }

    /// Sends the deferred writes, if there are any, and waits for their answers.
    fn flush(&self) -> DbResult<()> {
        if self.tx.deferred.borrow().is_empty() && self.tx.in_flight.borrow().is_empty() && !self.begin_pending.get() {
            return Ok(());
        }
        self.send(&[]).map(drop)
    }

    /// Runs statements without parameters (simple protocol), after the deferred writes.
    fn batch(&self, sql: &str) -> DbResult<()> {
        self.send(&[Request::Batch(sql)]).map(drop)
    }
}

impl Drop for PgConn {
    /// Says goodbye to the server (the connection task sends its farewell once the
    /// client is gone), waiting a moment at most.
    fn drop(&mut self) {
        // Writes sent ahead hold the client too; they are abandoned with the session.
        self.tx.in_flight.get_mut().clear();
        if let Some(session) = self.session.get_mut().take() {
            drop(session.client);
            let wait = async { tokio::time::timeout(std::time::Duration::from_secs(1), session.connection).await };
            let _ = self.runtime.block_on(wait);
        }
    }
}

/// How a transaction begun by [`Db::begin`] treats the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Reads only (SQLite: `BEGIN DEFERRED`).
    Read,
    /// Reads, then writes: SQLite takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// it waits for another writer rather than failing when one committed meanwhile.
    Write,
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

impl<'a> From<&'a PgConn> for Db<'a> {
    fn from(conn: &'a PgConn) -> Self {
        Db::Postgres(conn)
    }
}

impl Db<'_> {
    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value<'_>]) -> DbResult<usize> {
        match self {
            Db::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?),
            Db::Postgres(p) => {
                let changed = p.execute(sql, params)?;
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs a write whose answer is not needed (how many rows it changed). On PostgreSQL,
    /// inside a transaction, it is sent with the next statement whose answer is (see
    /// [`PgConn`]); an error it meets fails that statement, or the commit.
    pub fn defer(&self, sql: &str, params: &[Value<'_>]) -> DbResult<()> {
        match self {
            Db::Sqlite(_) => self.execute(sql, params).map(drop),
            Db::Postgres(p) => p.defer(sql, params, false),
        }
    }

    /// [`Db::defer`] for a write that nothing deferred after it depends on (a case's
    /// fields): on PostgreSQL it may go after the rows deferred around it.
    pub fn defer_late(&self, sql: &str, params: &[Value<'_>]) -> DbResult<()> {
        match self {
            Db::Sqlite(_) => self.execute(sql, params).map(drop),
            Db::Postgres(p) => p.defer(sql, params, true),
        }
    }

    /// Writes a row of `kind` (its `one` statement, with `params`); on PostgreSQL, inside
    /// a transaction, deferred and written together with the other rows of its kind
    /// (see `store::grouping`).
    pub fn defer_row(&self, kind: &'static Appendable, params: &[Value<'_>]) -> DbResult<()> {
        match self {
            Db::Sqlite(_) => self.execute(kind.one, params).map(drop),
            Db::Postgres(p) => p.defer_row(kind, params),
        }
    }

    /// Writes a row of `kind` into `table`, whose key is `id`, and returns the new row's
    /// id: `kind` names `id` as the last column, its value the parameter after `params`.
    /// On SQLite the id is left to the database (`NULL`); on PostgreSQL it is drawn from
    /// the table's sequence ahead (in blocks, for the transaction) and the row deferred
    /// like [`Db::defer_row`]'s.
    pub fn insert_with_id(
        &self,
        table: &'static str,
        kind: &'static Appendable,
        params: &[Value<'_>],
    ) -> DbResult<i64> {
        self.insert_drawn(table, false, kind, params)
    }

    /// [`Db::insert_with_id`] for a table whose ids people see (case numbers): on
    /// PostgreSQL the numbers a transaction drew and did not use are kept for the next
    /// one (table `spare_ids`), so that none is skipped.
    pub fn insert_numbered(
        &self,
        table: &'static str,
        kind: &'static Appendable,
        params: &[Value<'_>],
    ) -> DbResult<i64> {
        self.insert_drawn(table, true, kind, params)
    }

    fn insert_drawn(
        &self,
        table: &'static str,
        one: bool,
        kind: &'static Appendable,
        params: &[Value<'_>],
    ) -> DbResult<i64> {
        let mut all = params.to_vec();
        match self {
            Db::Sqlite(c) => {
                all.push(Value::Null);
                c.prepare_cached(kind.one)?.execute(rusqlite::params_from_iter(&all))?;
                Ok(c.last_insert_rowid())
            }
            Db::Postgres(p) => {
                let id = p.next_id(table, one)?;
                all.push(Value::Int(id));
                p.defer_row(kind, &all)?;
                Ok(id)
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
                let rows = p.query(sql, params)?;
                rows.first().map(|row| read(&Row::Postgres(row))).transpose()
            }
        }
    }

    /// The one row a query always returns (an aggregate: `count(*)`, `min(…)`).
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        read: impl FnOnce(&Row<'_>) -> DbResult<T>,
    ) -> DbResult<T> {
        self.query_row(sql, params, read)?.ok_or_else(|| DbError::column(0, "the query returned no row"))
    }

    /// Whether the query returns a row.
    pub fn exists(&self, sql: &str, params: &[Value<'_>]) -> DbResult<bool> {
        Ok(self.query_row(sql, params, |_| Ok(()))?.is_some())
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
                let rows = p.query(sql, params)?;
                rows.iter().map(|row| read(&Row::Postgres(row))).collect()
            }
        }
    }

    /// Several queries at once, each row handed to `read` with the index of its query. On
    /// PostgreSQL they are sent together (with the deferred writes before them) and the
    /// answers waited for once: one round trip to the server instead of one a query.
    pub fn query_many(
        &self,
        queries: &[(&str, &[Value<'_>])],
        mut read: impl FnMut(usize, &Row<'_>) -> DbResult<()>,
    ) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => {
                for (i, (sql, params)) in queries.iter().enumerate() {
                    let mut statement = c.prepare_cached(sql)?;
                    let mut rows = statement.query(rusqlite::params_from_iter(*params))?;
                    while let Some(row) = rows.next()? {
                        read(i, &Row::Sqlite(row))?;
                    }
                }
                Ok(())
            }
            Db::Postgres(p) => {
                for (i, rows) in p.query_many(queries)?.iter().enumerate() {
                    for row in rows {
                        read(i, &Row::Postgres(row))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// What the store keeps of type `T` for the transaction (PostgreSQL, inside a
    /// transaction: `None` otherwise), handed to `use_it`. It starts as `T::default()` and
    /// is dropped at the transaction's end and when a savepoint is undone
    /// ([`Db::undo_savepoint`]): what the transaction's own writes made it stays true
    /// only while nothing of them is undone.
    pub fn kept<T: Default + Send + 'static, R>(&self, use_it: impl FnOnce(&mut T) -> R) -> Option<R> {
        let Db::Postgres(p) = self else { return None };
        if !p.in_transaction() {
            return None;
        }
        let mut kept = p.tx.kept.borrow_mut();
        let slot = kept.entry(std::any::TypeId::of::<T>()).or_insert_with(|| Box::new(T::default()));
        slot.downcast_mut::<T>().map(use_it)
    }

    /// Every row, each handed to `each` as it arrives rather than collected first: for
    /// reading whole tables (`casegate migrate-store`). `each` must not use this
    /// connection.
    pub fn for_each(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut each: impl FnMut(&Row<'_>) -> DbResult<()>,
    ) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => {
                let mut statement = c.prepare(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Sqlite(row))?;
                }
                Ok(())
            }
            Db::Postgres(p) => {
                use futures::StreamExt as _;
                p.reconnect_if_closed()?;
                let statement = p.statement(sql)?;
                // Nothing deferred may wait behind a statement streamed this way.
                p.flush()?;
                let client = p.client();
                let rows = p.runtime.block_on(client.query_raw(&statement, PgConn::params(params)))?;
                let mut rows = std::pin::pin!(rows);
                while let Some(row) = p.runtime.block_on(rows.next()) {
                    each(&Row::Postgres(&row?))?;
                }
                Ok(())
            }
        }
    }

    /// Runs statements without parameters, separated by semicolons (transaction control,
    /// migrations).
    pub fn batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(p) => {
                p.reconnect_if_closed()?;
                p.batch(sql)
            }
        }
    }

    /// Undoes the work since savepoint `name` (begun with `SAVEPOINT name` in
    /// [`Db::batch`]) and ends the savepoint. On PostgreSQL the writes of that work not
    /// sent yet are dropped rather than sent: they would be undone anyway, and one that
    /// fails must not fail the undoing.
    pub fn undo_savepoint(&self, name: &str) -> DbResult<()> {
        if let Db::Postgres(p) = self {
            p.drop_unsent();
            // What was kept may have been changed by the undone work.
            p.tx.kept.borrow_mut().clear();
        }
        self.batch(&format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"))
    }

    /// Begins a transaction on this connection (end it with [`Db::commit`] or
    /// [`Db::rollback`]). For work that is not a unit of work: claims, reads that must
    /// agree with each other, a page's answer.
    pub fn begin(&self, mode: TxMode) -> DbResult<()> {
        match (self, mode) {
            (Db::Sqlite(c), TxMode::Read) => Ok(c.execute_batch("BEGIN DEFERRED")?),
            (Db::Sqlite(c), TxMode::Write) => Ok(c.execute_batch("BEGIN IMMEDIATE")?),
            (Db::Postgres(p), mode) => {
                p.reconnect_if_closed()?;
                p.tx.clear();
                // Sent with the transaction's first statement (see `PgConn::write_futures`).
                p.begin_pending.set(true);
                p.in_transaction.set(true);
                p.writing.set(mode == TxMode::Write);
                Ok(())
            }
        }
    }

    /// Commits the transaction begun by [`Db::begin`]. On PostgreSQL a transaction in
    /// which a statement failed is refused here, rather than rolled back in silence (the
    /// server answers `COMMIT` in such a transaction with a rollback, not an error).
    pub fn commit(&self) -> DbResult<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch("COMMIT")?),
            Db::Postgres(p) => {
                // The deferred writes go with the check, and the commit with them: one
                // that failed fails the check, and the commit behind it is not run.
                // Nothing to send (not even its BEGIN, so it read nothing): nothing to commit.
                let result = p.keep_spares().and_then(|()| {
                    let untouched = p.begin_pending.get() && p.tx.deferred.borrow().is_empty();
                    if untouched {
                        Ok(())
                    } else {
                        p.batch("SELECT 1; COMMIT")
                    }
                });
                if result.is_err() {
                    let _ = p.batch("ROLLBACK");
                }
                p.end_transaction();
                result
            }
        }
    }

    /// Rolls back the transaction begun by [`Db::begin`] (errors are ignored: a broken
    /// connection has nothing left to roll back).
    pub fn rollback(&self) {
        match self {
            Db::Sqlite(c) => {
                if !c.is_autocommit() {
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
            Db::Postgres(p) => {
                p.drop_unsent();
                // Nothing sent yet (not even its BEGIN): nothing to roll back.
                if !p.begin_pending.get() {
                    let _ = p.batch("ROLLBACK");
                }
                p.end_transaction();
            }
        }
    }

    /// Runs `work` in a transaction of its own: committed when it returns `Ok`, rolled
    /// back when it returns `Err` (or panics: the caller's connection is then not used
    /// again, see `store::pool`).
    pub fn transaction<T, E: From<DbError>>(
        &self,
        mode: TxMode,
        work: impl FnOnce(Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.begin(mode)?;
        match work(*self) {
            Ok(value) => {
                self.commit()?;
                Ok(value)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// SQLite's spelling of a statement in PostgreSQL's: numbered parameters `?N` become
/// `$N`, and SQLite's null-safe comparisons `IS ?N` and `IS NOT ?N` become `IS NOT
/// DISTINCT FROM $N` and `IS DISTINCT FROM $N`. Text in quotes is left alone.
pub fn postgres_dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            continue;
        }
        if quoted || c != '?' || !chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            out.push(c);
            continue;
        }
        let before = out.trim_end().to_ascii_uppercase();
        if before.ends_with(" IS NOT") {
            let keep = out.trim_end().len() - " IS NOT".len();
            out.truncate(keep);
            out.push_str(" IS DISTINCT FROM ");
        } else if before.ends_with(" IS") {
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
            postgres_dialect("SELECT 1 FROM t WHERE c.id IS NOT ?3 ORDER BY c.id"),
            "SELECT 1 FROM t WHERE c.id IS DISTINCT FROM $3 ORDER BY c.id"
        );
        assert_eq!(
            postgres_dialect("SELECT 'is ?1' FROM t WHERE x IS NULL AND y = ?1"),
            "SELECT 'is ?1' FROM t WHERE x IS NULL AND y = $1"
        );
        assert_eq!(postgres_dialect("WHERE ?1 IS NULL OR s = ?1"), "WHERE $1 IS NULL OR s = $1");
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

    #[test]
    fn inserts_return_the_new_id_and_transactions_commit_or_roll_back() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = Db::Sqlite(&conn);
        static ROW: Appendable =
            Appendable { rank: 0, one: "INSERT INTO t (s, id) VALUES (?1, ?2)", many: "", key: &[] };
        db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)").unwrap();
        assert_eq!(db.insert_with_id("t", &ROW, vals!["a"]).unwrap(), 1);
        let failed: DbResult<()> = db.transaction(TxMode::Write, |db| {
            db.insert_with_id("t", &ROW, vals!["b"])?;
            Err(DbError::column(0, "the work failed"))
        });
        assert!(failed.is_err());
        let kept: DbResult<i64> = db.transaction(TxMode::Write, |db| db.insert_with_id("t", &ROW, vals!["c"]));
        assert_eq!(kept.unwrap(), 2, "the rolled back row's id is free again");
        assert_eq!(db.query_one("SELECT count(*) FROM t", vals![], |r| r.get::<i64>(0)).unwrap(), 2);
        assert!(db.exists("SELECT 1 FROM t WHERE s = ?1", vals!["c"]).unwrap());
        assert!(!db.exists("SELECT 1 FROM t WHERE s = ?1", vals!["b"]).unwrap());
    }

    #[test]
    fn errors_of_the_installation_are_told_from_errors_of_the_work() {
        for (code, systemic) in [
            ("23505", true),
            ("40P01", true),
            ("40001", true),
            ("08006", true),
            ("53100", true),
            ("57P01", true),
            ("22021", false),
            ("23503", false),
            ("23514", false),
            ("25P02", false),
            ("25P03", true),
            ("42703", false),
            ("54000", false),
        ] {
            assert_eq!(postgres_is_systemic(code), systemic, "{code}");
        }
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(DbError::from(busy).is_systemic());
        let constraint =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), None);
        assert!(!DbError::from(constraint).is_systemic());
    }
}
