//! The one thing the checks need from a database: run a SELECT with parameters and get
//! rows of integers and text back. Checks are written once in plain SQL that both engines
//! accept (`$N` placeholders, TEXT and BIGINT columns, sums cast to BIGINT), and each
//! backend runs every check inside one read-only snapshot, so a check run against a live
//! database sees one committed state and never reports a half-applied write.

use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => f.write_str("NULL"),
            Val::Int(n) => write!(f, "{n}"),
            Val::Text(s) => f.write_str(s),
        }
    }
}

impl Val {
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}

impl From<i64> for Val {
    fn from(n: i64) -> Self {
        Val::Int(n)
    }
}

pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Val>>,
}

pub trait Db {
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Rows, String>;
}

/// SQLite numbers parameters `?N`; PostgreSQL `$N`. Dollar signs inside string literals
/// are left alone.
pub fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_literal = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_literal = !in_literal;
        }
        if c == '$' && !in_literal && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Opens the SQLite file read-only (the checker must never be able to change what it
/// inspects) and runs `f` inside one read transaction.
pub fn with_sqlite<T>(path: &Path, f: impl FnOnce(&mut dyn Db) -> Result<T, String>) -> Result<T, String> {
    use rusqlite::OpenFlags;
    let mut conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {} read-only: {e}", path.display()))?;
    // The engine's writer may hold the lock briefly while committing a group.
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| format!("cannot set busy timeout: {e}"))?;
    let tx = conn.transaction().map_err(|e| format!("cannot begin a read transaction: {e}"))?;
    let result = f(&mut SqliteDb { conn: &tx });
    // Read-only: nothing to keep; dropping the transaction rolls it back.
    drop(tx);
    result
}

struct SqliteDb<'a> {
    conn: &'a rusqlite::Connection,
}

impl Db for SqliteDb<'_> {
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Rows, String> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        let sql = sqlite_placeholders(sql);
        let mut stmt = self.conn.prepare(&sql).map_err(|e| format!("{e} in: {sql}"))?;
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let bound: Vec<ToSqlOutput<'_>> = params
            .iter()
            .map(|p| match p {
                Val::Null => ToSqlOutput::Owned(Value::Null),
                Val::Int(n) => ToSqlOutput::Owned(Value::Integer(*n)),
                Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            })
            .collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bound.iter()))
            .map_err(|e| format!("{e} in: {sql}"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| format!("{e} in: {sql}"))? {
            let mut vals = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                vals.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(n) => Val::Int(n),
                    ValueRef::Real(x) => Val::Text(x.to_string()),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Text(format!("<{} byte blob>", b.len())),
                });
            }
            out.push(vals);
        }
        Ok(Rows { columns, rows: out })
    }
}

/// Connects with the synchronous `postgres` client and runs `f` in one REPEATABLE READ,
/// READ ONLY transaction: every check sees the same snapshot. The synchronous client
/// drives a private tokio runtime and panics when called on a thread that is already
/// inside one, so the caller (`check_postgres`) runs this on a thread of its own.
pub fn with_postgres<T>(url: &str, f: impl FnOnce(&mut dyn Db) -> Result<T, String>) -> Result<T, String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    let tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(|e| format!("cannot begin a read-only transaction: {e}"))?;
    let mut db = PgDb { tx };
    let result = f(&mut db);
    // Rolling back a read-only transaction loses nothing; an error here changes no result.
    let _ = db.tx.rollback();
    result
}

struct PgDb<'a> {
    tx: postgres::Transaction<'a>,
}

impl Db for PgDb<'_> {
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Rows, String> {
        use postgres::types::{ToSql, Type};
        // A NULL parameter binds as text; the checks pass none where an integer is expected.
        let null: Option<String> = None;
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                Val::Null => &null as &(dyn ToSql + Sync),
                Val::Int(n) => n as &(dyn ToSql + Sync),
                Val::Text(s) => s as &(dyn ToSql + Sync),
            })
            .collect();
        let stmt = self.tx.prepare(sql).map_err(|e| format!("{e} in: {sql}"))?;
        let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_string()).collect();
        let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let rows = self.tx.query(&stmt, &refs).map_err(|e| format!("{e} in: {sql}"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut vals = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                let err = |e: postgres::Error| format!("column {}: {e}", columns[i]);
                let v = if *ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i).map_err(err)?.map(Val::Int)
                } else if *ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i).map_err(err)?.map(|n| Val::Int(n.into()))
                } else if *ty == Type::INT2 {
                    row.try_get::<_, Option<i16>>(i).map_err(err)?.map(|n| Val::Int(n.into()))
                } else if *ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i).map_err(err)?.map(|b| Val::Int(b.into()))
                } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
                    row.try_get::<_, Option<String>>(i).map_err(err)?.map(Val::Text)
                } else {
                    // A check that forgot a cast (SUM of BIGINT is NUMERIC on PostgreSQL).
                    return Err(format!("column {} has type {ty}; cast it to BIGINT or TEXT in: {sql}", columns[i]));
                };
                vals.push(v.unwrap_or(Val::Null));
            }
            out.push(vals);
        }
        Ok(Rows { columns, rows: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        assert_eq!(
            sqlite_placeholders("a = $1 AND b = '$2' AND c = $10"),
            "a = ?1 AND b = '$2' AND c = ?10"
        );
        assert_eq!(sqlite_placeholders("x = '$' || $2"), "x = '$' || ?2");
    }
}
