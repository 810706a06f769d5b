//! The two catalog back ends under one SQL surface: SQLite (embedded, the default) and
//! PostgreSQL (shared by several coordinators).
//!
//! The store's SQL is written once, in the dialect both accept (`?N` parameters, `ON
//! CONFLICT`, `RETURNING`, `CASE`, `CAST(SUM(..) AS BIGINT)`), and handed to either back end
//! through [`Sql`]. For PostgreSQL two lexical differences are bridged here, once per
//! statement and cached: `?N` becomes `$N`, and the column name `user` (reserved there) is
//! quoted. The schema's types are mapped when it is created (see [`postgres_ddl`]).
//! PostgreSQL is stricter in two more ways the SQL must respect: a subquery in FROM needs
//! an alias, and ORDER BY takes an output column's alias only on its own, not inside an
//! expression (`ORDER BY healthy - k` needs `healthy` to be a column of a subquery).
//!
//! Values cross as [`Value`]s: integers, text, bytes and NULL, the four kinds the catalog
//! stores. Rows are read whole, so a statement never holds its connection while the caller
//! runs another.
//!
//! Every write is a transaction: SQLite's are serial (one writer connection); PostgreSQL's
//! run `SERIALIZABLE` and are retried when the database aborts one for a conflict, so the
//! store's logic sees the same guarantees on both. Reads run on their own connections
//! (SQLite's WAL readers, PostgreSQL's pool) and never wait behind a write.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Rows per statement of [`Sql::insert_many`] at most: 512 rows of up to 8 values stay under
/// both back ends' limits on parameters per statement (SQLite 32,766, PostgreSQL 65,535).
pub const ROWS_PER_STATEMENT: usize = 512;

/// One value in or out of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans are 0 and 1).
    Int(i64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A catalog back end's failure.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// SQLite reported an error.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or the connection to it failed).
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A query that must return a row returned none.
    #[error("a row the catalog must hold is missing")]
    NoRow,
    /// A column held a value of another kind than the store expects: a damaged catalog.
    #[error("column {0} holds {1}, not what the catalog stores there")]
    Type(usize, String),
    /// No connection to PostgreSQL came free in time.
    #[error("no catalog connection came free within {0:?}; the catalog is overloaded or unreachable")]
    Exhausted(Duration),
}

fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL: {e}"),
    }
}

impl SqlError {
    /// Whether a uniqueness or foreign-key constraint refused the statement.
    pub fn is_constraint(&self) -> bool {
        match self {
            SqlError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::ConstraintViolation
            }
            SqlError::Postgres(e) => e.code().is_some_and(|c| c.code().starts_with("23")),
            _ => false,
        }
    }

    /// Whether PostgreSQL aborted the transaction for a conflict with another (serialization
    /// failure or deadlock): running it again is the remedy.
    fn is_conflict(&self) -> bool {
        match self {
            SqlError::Postgres(e) => e.code().is_some_and(|c| {
                *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            }),
            _ => false,
        }
    }
}

/// Something that can be bound as a statement parameter.
pub trait Param {
    /// The value bound.
    fn value(&self) -> Value;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, u8, u32);

impl Param for bool {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Param for [u8] {
    fn value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<const N: usize> Param for [u8; N] {
    fn value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}
impl Param for Value {
    fn value(&self) -> Value {
        self.clone()
    }
}

/// A value the store reads out of a column.
pub trait FromValue: Sized {
    /// Converts column `i`'s value, or says why it cannot.
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError>;
}

fn wrong(v: &Value, i: usize) -> SqlError {
    let kind = match v {
        Value::Null => "NULL".to_owned(),
        Value::Int(n) => format!("the integer {n}"),
        Value::Text(_) => "text".to_owned(),
        Value::Blob(b) => format!("{} bytes", b.len()),
    };
    SqlError::Type(i, kind)
}

impl FromValue for i64 {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        match v {
            Value::Int(n) => Ok(*n),
            _ => Err(wrong(v, i)),
        }
    }
}

macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
                <$t>::try_from(i64::from_value(v, i)?).map_err(|_| wrong(v, i))
            }
        }
    )*};
}
int_from!(u8, u32, u64, usize);

impl FromValue for bool {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        Ok(i64::from_value(v, i)? != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(wrong(v, i)),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(wrong(v, i)),
        }
    }
}
impl<const N: usize> FromValue for [u8; N] {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        match v {
            Value::Blob(b) => b.as_slice().try_into().map_err(|_| wrong(v, i)),
            _ => Err(wrong(v, i)),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, i: usize) -> Result<Self, SqlError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, i).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    /// Column `i` as it is stored.
    pub fn value(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Null)
    }

    /// Column `i`, converted.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, SqlError> {
        T::from_value(self.0.get(i).unwrap_or(&Value::Null), i)
    }
}

/// A connection inside one transaction (or one read): what the store's queries run on.
pub struct Sql<'a>(Conn<'a>);

enum Conn<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(RefCell<PgTx<'a>>),
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    prepared: &'a mut HashMap<String, postgres::Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, SqlError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(&to_postgres(sql))?;
        self.prepared.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Sql<'_> {
    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, SqlError> {
        match &self.0 {
            Conn::Lite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values(params)))?),
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let stmt = c.statement(sql)?;
                let vals = values(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = vals.iter().map(|v| v as _).collect();
                Ok(c.tx.execute(&stmt, &refs)? as usize)
            }
        }
    }

    /// Runs a query and hands each row to `f`, in order, as it comes.
    pub fn each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row) -> Result<(), SqlError>,
    ) -> Result<(), SqlError> {
        self.scan(sql, params, |r| f(r).map(|()| true))
    }

    /// Runs a query and hands rows to `f` until it returns false.
    fn scan(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row) -> Result<bool, SqlError>,
    ) -> Result<(), SqlError> {
        match &self.0 {
            Conn::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(values(params)))?;
                while let Some(r) = rows.next()? {
                    if !f(&lite_row(r, n)?)? {
                        break;
                    }
                }
                Ok(())
            }
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let stmt = c.statement(sql)?;
                let vals = values(params);
                let mut rows = c.tx.query_raw(&stmt, vals.iter())?;
                while let Some(r) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
                    if !f(&pg_row(&r)?)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Every row of a query, each converted by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row) -> Result<T, SqlError>,
    ) -> Result<Vec<T>, SqlError> {
        let mut out = Vec::new();
        self.each(sql, params, |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query, if any, converted by `f`.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row) -> Result<T, SqlError>,
    ) -> Result<Option<T>, SqlError> {
        // The first row only: the rest are not read.
        let mut first = None;
        self.scan(sql, params, |r| {
            first = Some(Row(r.0.clone()));
            Ok(false)
        })?;
        first.as_ref().map(f).transpose()
    }

    /// The first row of a query, which must exist, converted by `f`.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        self.query_opt(sql, params, f)?.ok_or(SqlError::NoRow)
    }

    /// Whether a query returns a row.
    pub fn exists(&self, sql: &str, params: &[&dyn Param]) -> Result<bool, SqlError> {
        Ok(self.query_opt(sql, params, |_| Ok(()))?.is_some())
    }

    /// Runs several statements without parameters (schema changes).
    pub fn batch(&self, sql: &str) -> Result<(), SqlError> {
        match &self.0 {
            Conn::Lite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => Ok(c.borrow_mut().tx.batch_execute(&to_postgres(sql))?),
        }
    }

    /// Inserts `rows` (each `width` values, one after another) with `head` (`INSERT INTO t
    /// (cols) VALUES`) and `tail` (an `ON CONFLICT` or `RETURNING` clause, or nothing), many
    /// rows per statement: one statement per row costs a round trip each on PostgreSQL. `each`
    /// gets the rows a `RETURNING` yields.
    ///
    /// Statements take a power of two of rows, at most [`ROWS_PER_STATEMENT`], so each
    /// `head` and `tail` prepares a few statements (which connections keep), not one per
    /// count of rows.
    pub fn insert_many(
        &self,
        head: &str,
        tail: &str,
        width: usize,
        rows: &[Value],
        mut each: impl FnMut(&Row) -> Result<(), SqlError>,
    ) -> Result<(), SqlError> {
        use std::fmt::Write;
        debug_assert!(
            width > 0 && rows.len().is_multiple_of(width),
            "{} values do not make rows of {width}",
            rows.len()
        );
        let mut rest = rows;
        while !rest.is_empty() {
            let n = statement_rows(rest.len().div_ceil(width));
            let (batch, after) = rest.split_at((n * width).min(rest.len()));
            rest = after;
            let mut sql = String::with_capacity(head.len() + tail.len() + batch.len() * 8);
            sql.push_str(head);
            for i in 0..batch.len() {
                let sep = match (i % width, i) {
                    (0, 0) => " (",
                    (0, _) => "), (",
                    _ => ", ",
                };
                let _ = write!(sql, "{sep}?{}", i + 1);
            }
            sql.push_str(") ");
            sql.push_str(tail);
            let params: Vec<&dyn Param> = batch.iter().map(|v| v as &dyn Param).collect();
            self.each(&sql, &params, &mut each)?;
        }
        Ok(())
    }

    /// Which back end this is: a few statements (schema inspection) differ.
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Conn::Pg(_))
    }
}

/// Rows the next statement of [`Sql::insert_many`] takes of `left` (at least 1).
fn statement_rows(left: usize) -> usize {
    ROWS_PER_STATEMENT.min(1 << left.max(1).ilog2())
}

fn values(params: &[&dyn Param]) -> Vec<Value> {
    params.iter().map(|p| p.value()).collect()
}

fn lite_row(r: &rusqlite::Row<'_>, n: usize) -> Result<Row, SqlError> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Real(f) => return Err(SqlError::Type(i, format!("the real number {f}"))),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(out))
}

fn pg_row(r: &postgres::Row) -> Result<Row, SqlError> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(|b| Value::Int(b.into()))
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            // NUMERIC (PostgreSQL's SUM of BIGINT) and the rest: the store casts instead.
            return Err(SqlError::Type(i, format!("a value of type {ty} (cast it to BIGINT in the query)")));
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(n) => ValueRef::Integer(*n),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Binds to whatever type PostgreSQL inferred for the parameter: an integer goes out as
/// the integer width the column has, so the store need not know them.
impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(n) if *ty == Type::INT8 => n.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::BOOL => (*n != 0).to_sql(ty, out),
            Value::Int(n) => n.to_string().to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::BYTEA,
        ]
        .contains(ty)
    }

    postgres::types::to_sql_checked!();
}

/// A statement in PostgreSQL's spelling: `$N` parameters and `user` quoted. String literals
/// are copied untouched.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    // The quote that opened the literal or quoted identifier being copied, if any.
    let mut quote: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                out.push('$');
                // An unnumbered `?` is not used by the store; numbered ones keep their number.
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &sql[start..end];
                if word == "user" {
                    out.push_str("\"user\"");
                } else {
                    out.push_str(word);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The schema in PostgreSQL's types: 64-bit integers, identity keys, bytea, and text that
/// compares and sorts byte by byte as in SQLite (whatever the database's locale).
pub fn postgres_ddl(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA")
        .replace("TEXT", "TEXT COLLATE \"C\"")
}

/// Where the catalog lives.
pub(super) enum Backend {
    Lite(Lite),
    Pg(Pool),
}

/// SQLite: one writer, and readers beside it (WAL lets them read while it writes).
pub(super) struct Lite {
    pub(super) writer: Mutex<rusqlite::Connection>,
    pub(super) readers: Mutex<Vec<rusqlite::Connection>>,
    pub(super) path: std::path::PathBuf,
}

/// Opens a SQLite connection to the catalog file with the store's settings.
pub(super) fn open_lite(path: &std::path::Path) -> Result<rusqlite::Connection, SqlError> {
    // Created readable by its owner only (SQLite gives its WAL and shared-memory files the
    // database file's mode): it lists every account, host and object, and hashes of secrets.
    #[cfg(unix)]
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        if let Err(e) = created.map(drop) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(SqlError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", path.display())),
                )));
            }
        }
    }
    #[cfg(unix)]
    private_files(path);
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Makes a catalog that others may read (created before catalogs were made 0600) readable
/// by its owner only, with its WAL and shared-memory files, and says so.
#[cfg(unix)]
fn private_files(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut names = vec![path.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        names.push(name.into());
    }
    for p in names {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.permissions().mode() & 0o077 != 0 {
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => tracing::warn!(file = %p.display(), "the catalog was readable by others; it is 0600 now"),
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "the catalog is readable by others; make it 0600")
                }
            }
        }
    }
}

/// Idle readers kept per SQLite catalog.
const READERS: usize = 8;

/// Connections to PostgreSQL, opened on demand up to a bound and reopened after a failure
/// (a restarted server): a broken connection is dropped when it is handed back.
pub(super) struct Pool {
    config: postgres::Config,
    idle: Mutex<(Vec<PgConn>, usize)>,
    freed: Condvar,
    max: usize,
}

struct PgConn {
    client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

/// How long a request waits for a free PostgreSQL connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

impl Pool {
    pub(super) fn new(config: postgres::Config, max: usize) -> Self {
        Self { config, idle: Mutex::new((Vec::new(), 0)), freed: Condvar::new(), max }
    }

    fn take(&self) -> Result<PgConn, SqlError> {
        let deadline = std::time::Instant::now() + POOL_WAIT;
        let mut guard = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(c) = guard.0.pop() {
                if !c.client.is_closed() {
                    return Ok(c);
                }
                guard.1 -= 1;
            }
            if guard.1 < self.max {
                guard.1 += 1;
                drop(guard);
                return match self.config.connect(postgres::NoTls) {
                    Ok(client) => Ok(PgConn { client, prepared: HashMap::new() }),
                    Err(e) => {
                        self.idle.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                        self.freed.notify_one();
                        Err(e.into())
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(SqlError::Exhausted(POOL_WAIT));
            }
            guard = self.freed.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn give(&self, c: PgConn, healthy: bool) {
        let mut guard = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if healthy && !c.client.is_closed() {
            guard.0.push(c);
        } else {
            guard.1 -= 1;
        }
        drop(guard);
        self.freed.notify_one();
    }
}

/// PostgreSQL's synchronous client runs a runtime of its own to close a connection, which
/// panics on a thread that drives async tasks (the coordinator drops its store there at
/// shutdown): connections are closed on a thread of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).0);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

/// Attempts at a PostgreSQL transaction aborted by conflicts before giving up.
const ATTEMPTS: u32 = 20;

/// Whether a store error is a back end's conflict that a rerun resolves.
pub(super) trait Retry {
    /// The back end aborted the transaction for a conflict.
    fn conflict(&self) -> bool;
}

impl Backend {
    /// Runs `f` in a write transaction, committing what it returns `Ok` for.
    pub(super) fn write<T, E: From<SqlError> + Retry>(
        &self,
        mut f: impl FnMut(&Sql<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Backend::Lite(l) => {
                let mut conn = l.writer.lock().unwrap_or_else(|p| p.into_inner());
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(SqlError::from)?;
                let out = f(&Sql(Conn::Lite(&tx)))?;
                tx.commit().map_err(SqlError::from)?;
                Ok(out)
            }
            Backend::Pg(pool) => pg_run(pool, postgres::IsolationLevel::Serializable, Mode::Write, &mut f),
        }
    }

    /// Runs `f`, a few statements each atomic on its own, where losing the last moments of
    /// them in a machine crash is acceptable (records of credentials seen): PostgreSQL's
    /// READ COMMITTED without waiting for the commit to reach disk, so they neither conflict
    /// with transactions nor wait for a flush. On SQLite, a write transaction that does not
    /// wait for the disk either (`synchronous = NORMAL`: in the WAL, safe from a process
    /// crash, flushed with the next durable commit).
    pub(super) fn statement<T, E: From<SqlError> + Retry>(
        &self,
        mut f: impl FnMut(&Sql<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Backend::Lite(l) => {
                let mut conn = l.writer.lock().unwrap_or_else(|p| p.into_inner());
                conn.pragma_update(None, "synchronous", "NORMAL").map_err(SqlError::from)?;
                let out = (|| {
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(SqlError::from)?;
                    let out = f(&Sql(Conn::Lite(&tx)))?;
                    tx.commit().map_err(SqlError::from)?;
                    Ok(out)
                })();
                // Every other write waits for the disk, whatever happened above.
                conn.pragma_update(None, "synchronous", "FULL").map_err(SqlError::from)?;
                out
            }
            Backend::Pg(pool) => pg_run(pool, postgres::IsolationLevel::ReadCommitted, Mode::Relaxed, &mut f),
        }
    }

    /// Copies a SQLite catalog to `path` with `VACUUM INTO`; false for PostgreSQL.
    pub(super) fn vacuum_into(&self, path: &std::path::Path) -> Result<bool, SqlError> {
        match self {
            Backend::Lite(l) => {
                let conn = open_lite(&l.path)?;
                conn.execute("VACUUM INTO ?1", rusqlite::params![path.to_string_lossy()])?;
                Ok(true)
            }
            Backend::Pg(_) => Ok(false),
        }
    }

    /// Runs `f` on a consistent snapshot, without writing.
    pub(super) fn read<T, E: From<SqlError> + Retry>(
        &self,
        mut f: impl FnMut(&Sql<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Backend::Lite(l) => {
                let taken = l.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let mut conn = match taken {
                    Some(c) => c,
                    None => open_lite(&l.path)?,
                };
                let out = (|| {
                    let tx = conn.transaction().map_err(SqlError::from)?;
                    let out = f(&Sql(Conn::Lite(&tx)))?;
                    tx.commit().map_err(SqlError::from)?;
                    Ok(out)
                })();
                let mut idle = l.readers.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < READERS {
                    idle.push(conn);
                }
                out
            }
            Backend::Pg(pool) => pg_run(pool, postgres::IsolationLevel::RepeatableRead, Mode::Read, &mut f),
        }
    }
}

/// What a PostgreSQL transaction may do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Read only.
    Read,
    /// Write, durably.
    Write,
    /// Write without waiting for the flush (`synchronous_commit = off`).
    Relaxed,
}

fn pg_run<T, E: From<SqlError> + Retry>(
    pool: &Pool,
    level: postgres::IsolationLevel,
    mode: Mode,
    f: &mut impl FnMut(&Sql<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut conn = pool.take()?;
        let PgConn { client, prepared } = &mut conn;
        let outcome = match client.build_transaction().isolation_level(level).read_only(mode == Mode::Read).start() {
            Err(e) => Err(SqlError::from(e)),
            Ok(mut tx) => Ok((|| {
                if mode == Mode::Relaxed {
                    tx.batch_execute("SET LOCAL synchronous_commit TO OFF").map_err(SqlError::from)?;
                }
                let sql = Sql(Conn::Pg(RefCell::new(PgTx { tx, prepared })));
                let out = f(&sql)?;
                let Conn::Pg(c) = sql.0 else { unreachable!("built as PostgreSQL above") };
                c.into_inner().tx.commit().map_err(SqlError::from)?;
                Ok(out)
            })()),
        };
        // A failed statement leaves the prepared cache valid; a lost connection is replaced.
        let closed = conn.client.is_closed();
        pool.give(conn, !closed);
        match outcome {
            // An idle connection the server dropped (say it restarted): nothing was sent
            // yet, so begin again on a new one.
            Err(e) if closed && attempt < ATTEMPTS => {
                tracing::info!(error = %e, "a catalog connection was lost; reconnecting");
            }
            Err(e) => return Err(e.into()),
            Ok(Err(e)) if E::conflict(&e) && attempt < ATTEMPTS => {
                // Random within a window that doubles (to 256 ms): transactions that collided
                // do not collide again in step.
                let window = 2u64.pow(attempt.min(8));
                std::thread::sleep(Duration::from_millis(1 + rand::random::<u64>() % window));
            }
            Ok(result) => return result,
        }
    }
}

impl Retry for SqlError {
    fn conflict(&self) -> bool {
        self.is_conflict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_spelled_for_postgres() {
        assert_eq!(
            to_postgres("SELECT id FROM packs WHERE user = ?1 AND name = 'user?' AND p.user = ?12"),
            "SELECT id FROM packs WHERE \"user\" = $1 AND name = 'user?' AND p.\"user\" = $12"
        );
        assert_eq!(to_postgres("SELECT users.id, user_id FROM users"), "SELECT users.id, user_id FROM users");
        assert_eq!(to_postgres("'it''s' ?1"), "'it''s' $1");
        assert_eq!(to_postgres("SELECT \"user\", \"id\" FROM t"), "SELECT \"user\", \"id\" FROM t");
    }

    #[test]
    fn many_rows_go_in_few_statements_of_few_shapes() {
        let sizes = |mut left: usize| {
            let mut v = Vec::new();
            while left > 0 {
                v.push(statement_rows(left));
                left -= v[v.len() - 1];
            }
            v
        };
        assert_eq!(sizes(1300), [512, 512, 256, 16, 4]);
        assert_eq!(sizes(7), [4, 2, 1]);
        assert!(sizes(0).is_empty());
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
        let sql = Sql(Conn::Lite(&conn));
        sql.batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB NOT NULL)").expect("ddl");
        for (n, new) in [(0, 0), (1, 1), (1300, 1299), (1301, 1)] {
            let rows: Vec<Value> = (0..n).flat_map(|i| [Value::Int(i), Value::Blob(vec![i as u8])]).collect();
            let mut returned = Vec::new();
            let tail = "ON CONFLICT DO NOTHING RETURNING a";
            sql.insert_many("INSERT INTO t (a, b) VALUES", tail, 2, &rows, |r| {
                returned.push(r.get::<i64>(0)?);
                Ok(())
            })
            .expect("insert");
            assert_eq!(returned.len(), new, "{n} rows: only the new ones come back");
            let count: i64 = sql.query_row("SELECT COUNT(*) FROM t", &[], |r| r.get(0)).expect("count");
            assert_eq!(count, n, "{n} rows");
        }
    }

    #[test]
    fn the_schema_gets_postgres_types() {
        assert_eq!(
            postgres_ddl("id INTEGER PRIMARY KEY, n INTEGER NOT NULL, b BLOB, t TEXT"),
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA, t TEXT COLLATE \"C\""
        );
    }

    #[test]
    fn a_catalog_reconnects_by_itself_after_postgres_restarts() {
        let mut server = scatter_pgtest::TestPg::start();
        let store = super::super::Store::connect(&server.url()).expect("open");
        store.record_event(1, crate::store::Party::Grid, "test", "before", "").expect("before the restart");
        server.restart();
        // The pooled connections died with the old server; the next calls open new ones.
        store.record_event(2, crate::store::Party::Grid, "test", "after", "").expect("after the restart");
        let actions: Vec<String> = store.events(10).expect("read").into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["before", "after"]);
    }

    #[test]
    fn values_convert_with_range_checks() {
        assert_eq!(u8::from_value(&Value::Int(7), 0).expect("fits"), 7);
        assert!(u8::from_value(&Value::Int(300), 0).is_err());
        assert!(u64::from_value(&Value::Int(-1), 0).is_err());
        assert!(String::from_value(&Value::Int(1), 0).is_err());
        assert_eq!(Option::<i64>::from_value(&Value::Null, 0).expect("null"), None);
        assert!(<[u8; 32]>::from_value(&Value::Blob(vec![0; 31]), 0).is_err());
        assert!(bool::from_value(&Value::Int(1), 0).expect("int"));
    }
}
