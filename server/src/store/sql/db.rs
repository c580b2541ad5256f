//! One way to run a statement on either database. SQLite runs in this process through
//! `rusqlite`, inline: a statement is a few microseconds of work, and handing each one to a
//! connection thread and back (as `sqlx`'s SQLite driver does) cost ten times that in thread
//! switches, measured under load (see the README's Performance section). PostgreSQL runs
//! through `sqlx` (a network round trip dwarfs any of that).
//!
//! Statements use `$1, $2, ...` placeholders on both.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};

use super::writer::Durability;
use crate::store::{StoreError, StoreResult};

/// The type of a NULL (PostgreSQL wants bound parameters typed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Integer,
    Text,
    Bytes,
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null(Kind),
    Integer(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_string())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Bytes(value.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(value: &Vec<u8>) -> Self {
        Value::Bytes(value.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value
where
    T: Typed,
{
    fn from(value: Option<T>) -> Self {
        match value {
            Some(value) => value.into(),
            None => Value::Null(T::KIND),
        }
    }
}

impl From<&Option<String>> for Value {
    fn from(value: &Option<String>) -> Self {
        value.as_deref().into()
    }
}

impl From<&Option<i64>> for Value {
    fn from(value: &Option<i64>) -> Self {
        (*value).into()
    }
}

/// The kind of a Rust type bound as a parameter.
pub(crate) trait Typed {
    const KIND: Kind;
}

impl Typed for i64 {
    const KIND: Kind = Kind::Integer;
}
impl Typed for String {
    const KIND: Kind = Kind::Text;
}
impl Typed for &str {
    const KIND: Kind = Kind::Text;
}
impl Typed for &String {
    const KIND: Kind = Kind::Text;
}
impl Typed for &[u8] {
    const KIND: Kind = Kind::Bytes;
}
impl Typed for &Vec<u8> {
    const KIND: Kind = Kind::Bytes;
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null(_) => ValueRef::Null,
            Value::Integer(value) => ValueRef::Integer(*value),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Bytes(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

/// Where a statement runs.
pub(crate) enum Exec<'c> {
    /// An SQLite connection of this process, behind a lock held for one statement: the writer's
    /// (used by its thread, or by the one task holding it).
    Sqlite(&'c Mutex<rusqlite::Connection>),
    /// An SQLite reader's connection (readers are picked free when one is); a read answers
    /// once what it may have seen of the writer's commits is durable.
    SqliteRead(&'c Mutex<rusqlite::Connection>, &'c Durability),
    /// A PostgreSQL connection (in a transaction).
    Connection(&'c mut AnyConnection),
    /// Any connection of the PostgreSQL pool.
    Pool(&'c AnyPool),
}

/// A row read back.
pub(crate) enum Row {
    /// From SQLite: the column names and values.
    Sqlite {
        columns: Arc<[String]>,
        values: Vec<Value>,
    },
    /// From PostgreSQL.
    Any(AnyRow),
}

/// A Rust type a column reads as.
pub(crate) trait Column: Sized {
    /// From an SQLite value; `None` if the types disagree.
    fn from_value(value: &Value) -> Option<Self>;
    /// From a PostgreSQL row's column.
    fn from_any(row: &AnyRow, index: usize) -> Result<Self, sqlx::Error>;
}

macro_rules! column {
    ($type:ty, $pattern:pat => $value:expr) => {
        impl Column for $type {
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    $pattern => Some($value),
                    _ => None,
                }
            }
            fn from_any(row: &AnyRow, index: usize) -> Result<Self, sqlx::Error> {
                row.try_get(index)
            }
        }
    };
}

column!(i64, Value::Integer(value) => *value);
column!(String, Value::Text(text) => text.clone());
column!(Vec<u8>, Value::Bytes(bytes) => bytes.clone());

impl<T: Column> Column for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null(_) => Some(None),
            value => T::from_value(value).map(Some),
        }
    }
    fn from_any(row: &AnyRow, index: usize) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
}

impl Row {
    /// The value of column `name`.
    pub(crate) fn try_get<T: Column>(&self, name: &str) -> StoreResult<T> {
        match self {
            Row::Sqlite { columns, values } => {
                let index = columns
                    .iter()
                    .position(|column| column == name)
                    .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))?;
                T::from_value(&values[index]).ok_or_else(|| {
                    StoreError::Corrupt(format!("column {name} holds a value of another type"))
                })
            }
            Row::Any(row) => {
                use sqlx::Column as _;
                let index = row
                    .columns()
                    .iter()
                    .position(|column| column.name() == name)
                    .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))?;
                Ok(T::from_any(row, index)?)
            }
        }
    }

    /// The value of the first column.
    pub(crate) fn first<T: Column>(&self) -> StoreResult<T> {
        match self {
            Row::Sqlite { values, .. } => values
                .first()
                .and_then(T::from_value)
                .ok_or_else(|| StoreError::Corrupt("first column of another type".into())),
            Row::Any(row) => Ok(T::from_any(row, 0)?),
        }
    }
}

/// A statement and its parameters.
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

/// A statement: `query("... $1 ...").bind(value)`.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// What a statement that returns no rows did.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    /// Rows inserted, changed or deleted.
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

impl Query {
    /// Binds the next parameter.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds each of `values`, in order (the ids of an `IN` list).
    pub(crate) fn bind_all<V: Into<Value>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        self.args.extend(values.into_iter().map(Into::into));
        self
    }

    /// Runs a statement that returns no rows.
    pub(crate) async fn execute(self, exec: Exec<'_>) -> StoreResult<Done> {
        match exec {
            Exec::Sqlite(connection) => {
                let (rows_affected, _) = run_sqlite(connection, &self.sql, &self.args, false)?;
                Ok(Done { rows_affected })
            }
            Exec::SqliteRead(connection, durability) => {
                let (rows_affected, _) = run_sqlite(connection, &self.sql, &self.args, false)?;
                durability.covers_reads_so_far().await?;
                Ok(Done { rows_affected })
            }
            Exec::Connection(connection) => self.execute_on(connection).await,
            Exec::Pool(pool) => self.execute_on(pool).await,
        }
    }

    /// Every row.
    pub(crate) async fn fetch_all(self, exec: Exec<'_>) -> StoreResult<Vec<Row>> {
        match exec {
            Exec::Sqlite(connection) => Ok(run_sqlite(connection, &self.sql, &self.args, true)?.1),
            Exec::SqliteRead(connection, durability) => {
                let (_, rows) = run_sqlite(connection, &self.sql, &self.args, true)?;
                durability.covers_reads_so_far().await?;
                Ok(rows)
            }
            Exec::Connection(connection) => self.fetch_all_on(connection).await,
            Exec::Pool(pool) => self.fetch_all_on(pool).await,
        }
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(self, exec: Exec<'_>) -> StoreResult<Option<Row>> {
        Ok(self.fetch_all(exec).await?.into_iter().next())
    }

    /// The one row.
    pub(crate) async fn fetch_one(self, exec: Exec<'_>) -> StoreResult<Row> {
        self.fetch_optional(exec)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
    }

    /// The first column of the first row, if any.
    pub(crate) async fn scalar_optional<T: Column>(self, exec: Exec<'_>) -> StoreResult<Option<T>> {
        self.fetch_optional(exec)
            .await?
            .map(|row| row.first())
            .transpose()
    }

    /// The first column of every row.
    pub(crate) async fn scalar_all<T: Column>(self, exec: Exec<'_>) -> StoreResult<Vec<T>> {
        self.fetch_all(exec).await?.iter().map(Row::first).collect()
    }

    /// The first column of the one row.
    pub(crate) async fn scalar<T: Column>(self, exec: Exec<'_>) -> StoreResult<T> {
        self.fetch_one(exec).await?.first()
    }

    /// [`execute`](Query::execute) on a PostgreSQL connection or pool.
    async fn execute_on<'e>(
        self,
        executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ) -> StoreResult<Done> {
        let result = self.any().execute(executor).await.map_err(from_postgres)?;
        Ok(Done {
            rows_affected: result.rows_affected(),
        })
    }

    /// [`fetch_all`](Query::fetch_all) on a PostgreSQL connection or pool.
    async fn fetch_all_on<'e>(
        self,
        executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ) -> StoreResult<Vec<Row>> {
        let rows = self
            .any()
            .fetch_all(executor)
            .await
            .map_err(from_postgres)?;
        Ok(rows.into_iter().map(Row::Any).collect())
    }

    /// The statement for `sqlx` (PostgreSQL).
    fn any(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql.into_owned()));
        for value in self.args {
            query = match value {
                Value::Null(Kind::Integer) => query.bind(None::<i64>),
                Value::Null(Kind::Text) => query.bind(None::<String>),
                Value::Null(Kind::Bytes) => query.bind(None::<Vec<u8>>),
                Value::Integer(value) => query.bind(value),
                Value::Text(text) => query.bind(text),
                Value::Bytes(bytes) => query.bind(bytes),
            };
        }
        query
    }
}

/// Runs a statement on SQLite: binds `$N` by its number, returns the rows changed and (when
/// `rows` is set and the statement has columns) the rows.
fn run_sqlite(
    connection: &Mutex<rusqlite::Connection>,
    sql: &str,
    args: &[Value],
    rows: bool,
) -> Result<(u64, Vec<Row>), rusqlite::Error> {
    let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
    STATEMENTS.with_borrow_mut(|known| {
        let text = known.text_of(sql);
        let mut statement = connection.prepare_cached(&text.sql)?;
        // `?N` is parameter N: bound by index, without looking names up (SQLite finds a
        // name's index by walking the statement's list of names).
        for index in 1..=statement.parameter_count() {
            let value = args
                .get(index - 1)
                .ok_or(rusqlite::Error::InvalidParameterCount(index, args.len()))?;
            statement.raw_bind_parameter(index, value)?;
        }
        let column_count = statement.column_count();
        if column_count == 0 || !rows {
            if column_count == 0 {
                let changed = statement.raw_execute()?;
                return Ok((changed as u64, Vec::new()));
            }
            // A statement with RETURNING whose rows nobody wants: step through it all.
            let mut result = statement.raw_query();
            let mut count = 0;
            while result.next()?.is_some() {
                count += 1;
            }
            return Ok((count, Vec::new()));
        }
        let columns = Arc::clone(text.columns.get_or_insert_with(|| {
            statement
                .column_names()
                .into_iter()
                .map(str::to_string)
                .collect()
        }));
        let mut result = statement.raw_query();
        let mut read = Vec::new();
        while let Some(row) = result.next()? {
            let mut values = Vec::with_capacity(column_count);
            for index in 0..column_count {
                use rusqlite::types::ValueRef;
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null(Kind::Text),
                    ValueRef::Integer(value) => Value::Integer(value),
                    ValueRef::Real(value) => Value::Integer(value as i64),
                    ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
                    ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
                });
            }
            read.push(Row::Sqlite {
                columns: Arc::clone(&columns),
                values,
            });
        }
        let count = read.len() as u64;
        Ok((count, read))
    })
}

/// A PostgreSQL error as the store reports it: a deadlock the server broke (it aborts one of
/// the statements waiting in a circle) is a contended write, which trying again completes.
fn from_postgres(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some("40P01") => {
            StoreError::Contended(format!("rows locked in a circle ({database}); try again"))
        }
        _ => StoreError::Database(error),
    }
}

/// What a thread knows of a statement it ran on SQLite.
struct StatementText {
    /// Its text for SQLite (`?N` placeholders).
    sql: String,
    /// The names of its columns, once it returned rows: the rows share them.
    columns: Option<Arc<[String]>>,
}

/// The statements run on a thread, by their text as written: rewritten and named once, not on
/// every run (statement texts are few: `IN` lists are padded to a few lengths).
#[derive(Default)]
struct KnownStatements {
    by_text: std::collections::HashMap<String, StatementText, foldhash::fast::RandomState>,
    /// Room for texts past the bound, which are rewritten on every run.
    overflow: Option<StatementText>,
}

/// Statements a thread keeps at most.
const KNOWN_STATEMENTS: usize = 1024;

impl KnownStatements {
    fn text_of(&mut self, sql: &str) -> &mut StatementText {
        if !self.by_text.contains_key(sql) {
            let text = StatementText {
                sql: numbered_placeholders(sql).into_owned(),
                columns: None,
            };
            if self.by_text.len() >= KNOWN_STATEMENTS {
                return self.overflow.insert(text);
            }
            self.by_text.insert(sql.to_string(), text);
        }
        self.by_text.get_mut(sql).expect("inserted above")
    }
}

thread_local! {
    static STATEMENTS: std::cell::RefCell<KnownStatements> = Default::default();
}

/// The statement with PostgreSQL's `$N` placeholders written as SQLite's `?N` (the same
/// numbered parameter); text inside quotes is left alone.
fn numbered_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut rewritten = Vec::with_capacity(sql.len());
    // Inside '...' or "..." (a string or a quoted name), nothing is a placeholder.
    let mut quote = None;
    let bytes = sql.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        match (quote, byte) {
            (None, b'\'' | b'"') => quote = Some(byte),
            (Some(open), _) if byte == open => quote = None,
            (None, b'$') if bytes.get(index + 1).is_some_and(u8::is_ascii_digit) => {
                rewritten.push(b'?');
                continue;
            }
            _ => {}
        }
        rewritten.push(byte);
    }
    // Only one ASCII byte was swapped for another: still the valid UTF-8 it was.
    Cow::Owned(String::from_utf8(rewritten).expect("ASCII swapped for ASCII"))
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_become_numbered_parameters_outside_quotes() {
        assert_eq!(
            numbered_placeholders(
                "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '$3' AND \"e$4\" = $5"
            ),
            "SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '$3' AND \"e$4\" = ?5"
        );
        assert_eq!(numbered_placeholders("SELECT 1"), "SELECT 1");
    }
}
