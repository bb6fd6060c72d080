//! The small capability both engines provide: run a statement, run a query. Every domain
//! operation in `ops` is written once against this trait and runs unchanged on SQLite
//! (inside the grouped writer, or on a read-only connection) and on PostgreSQL (inside a
//! transaction), so the conformance suite tests one implementation on two engines.
//!
//! SQL is written in the common dialect of both engines with PostgreSQL-style `$N`
//! placeholders, which SQLite accepts as named parameters (bound by name). Column types
//! are limited to TEXT and BIGINT so values map one-to-one.

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}
impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Int(b as i64)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(o: Option<T>) -> Self {
        o.map(Into::into).unwrap_or(Val::Null)
    }
}

#[derive(Debug, Clone)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn col(&self, i: usize) -> Result<&Val, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Internal(format!("column {i} missing from row")))
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.col(i)? {
            Val::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Internal(format!("column {i}: expected text, found {other:?}"))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.col(i)? {
            Val::Null => Ok(None),
            Val::Text(s) => Ok(Some(s.clone())),
            other => Err(StoreError::Internal(format!("column {i}: expected text, found {other:?}"))),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.col(i)? {
            Val::Int(v) => Ok(*v),
            other => Err(StoreError::Internal(format!("column {i}: expected integer, found {other:?}"))),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.col(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            other => Err(StoreError::Internal(format!("column {i}: expected integer, found {other:?}"))),
        }
    }

    /// Deserializes a JSON document column.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        let text = self.text(i)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored document in column {i} does not parse: {e}")))
    }
}

pub trait Conn {
    /// Runs a statement and returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError>;
    /// Runs a query and returns all its rows. Callers bound the row count with LIMIT.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError>;
    /// Serializes concurrent writers that touch the same logical key until the end of the
    /// transaction. SQLite's single writer already serializes everything, so only
    /// PostgreSQL takes a lock (an advisory transaction lock).
    fn lock_key(&mut self, key: &str) -> Result<(), StoreError>;

    /// For the few statements whose SQL must differ by engine (the outbox relay's order,
    /// claiming work with `FOR UPDATE SKIP LOCKED`).
    fn is_postgres(&self) -> bool {
        false
    }

    /// Sizes the connection's page cache for a bulk job (code generation) or back for
    /// everyday writes. Only SQLite's writer keeps a cache worth sizing.
    fn bulk_cache(&mut self, _bulk: bool) -> Result<(), StoreError> {
        Ok(())
    }

    fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Internal("query returned no row".into()))
    }
}
