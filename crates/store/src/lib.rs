//! Storage for Tessera: the contract the API relies on, and its two engines.
//!
//! The public surface is `Store`, whose methods are domain operations ("upsert this
//! customer", "authenticate this key"). Each operation is implemented once in `ops`
//! against the `Conn` capability and runs on either engine. Tenant-scoped operations take
//! a `Tenant`, which only `Store::authenticate_key` (or a management scope) can produce, so
//! no code path can reach a project's rows without having authenticated for it.

pub mod authcache;
pub mod conn;
pub mod imports;
pub mod jobs;
pub mod migrations;
pub mod ops;
pub mod postgres;
#[cfg(test)]
mod query_plans;
#[cfg(test)]
mod query_plans_lists;
pub mod sqlite;

use conn::Conn;
use std::path::Path;
use std::sync::Arc;
use tessera_domain::InvalidInput;

pub use ops::idempotency::IdemBegin;
pub use ops::org::{ApiKey, KeyKind, NewKey, Tenant};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{resource_type} {id} not found")]
    NotFound { resource_type: &'static str, id: String },
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("conflict: {message}")]
    Conflict {
        key: &'static str,
        message: String,
        details: String,
    },
    #[error("constraint violated: {0}")]
    Constraint(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("internal storage error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn not_found(resource_type: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            resource_type,
            id: id.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub enum Engine {
    Sqlite(sqlite::SqliteBackend),
    Postgres(postgres::PgBackend),
}

/// Cheap to clone; every clone shares the same engine.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Engine>,
    pub(crate) auth: Arc<authcache::AuthCache>,
    /// When this process became the only server of the database, if it is (see
    /// `declare_sole_server`), as a stored timestamp string.
    sole_since: Arc<std::sync::OnceLock<String>>,
    pub(crate) promos: Arc<ops::promotions::Cache>,
    /// CSV bytes per stored export chunk (`set_export_chunk_bytes`).
    pub(crate) export_chunk_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    pub fn open_sqlite(dir: &Path) -> Result<Self> {
        Ok(Store {
            engine: Arc::new(Engine::Sqlite(sqlite::SqliteBackend::open(dir)?)),
            // This process makes every change to keys, so its cache can be trusted.
            auth: Arc::new(authcache::AuthCache::new(true)),
            sole_since: Arc::default(),
            promos: Arc::default(),
            export_chunk_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(ops::exports::DEFAULT_CHUNK_BYTES)),
        })
    }

    /// Connects and migrates. The driver blocks on its own small runtime, so the work runs
    /// on a plain thread; this makes the call safe from inside or outside an async runtime.
    pub fn open_postgres(url: &str) -> Result<Self> {
        let url = url.to_string();
        let backend = std::thread::spawn(move || postgres::PgBackend::connect(&url))
            .join()
            .map_err(|_| StoreError::Internal("PostgreSQL connect thread panicked".into()))??;
        Ok(Store {
            engine: Arc::new(Engine::Postgres(backend)),
            auth: Arc::new(authcache::AuthCache::new(false)),
            sole_since: Arc::default(),
            promos: Arc::default(),
            export_chunk_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(ops::exports::DEFAULT_CHUNK_BYTES)),
        })
    }

    /// Declares that no other process serves this database from now on (the caller holds
    /// an exclusive lock on it). Work that another process left half-done, such as an
    /// idempotency key a killed request still held, is then known to be abandoned.
    /// Ignored on PostgreSQL, where other nodes may be serving.
    pub fn declare_sole_server(&self) {
        if matches!(&*self.engine, Engine::Sqlite(_)) {
            let _ = self.sole_since.set(tessera_domain::time::now_string());
        }
    }

    pub(crate) fn sole_server_since(&self) -> Option<String> {
        self.sole_since.get().cloned()
    }

    pub fn engine_name(&self) -> &'static str {
        match &*self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Operations waiting for the SQLite writer or for a PostgreSQL worker.
    pub fn write_queue_depth(&self) -> usize {
        match &*self.engine {
            Engine::Sqlite(b) => b.queue_depth(),
            Engine::Postgres(b) => b.queue_depth(),
        }
    }

    /// A signal that changes after each commit of this process's SQLite writer, for
    /// consumers of new rows to wake on; `None` on PostgreSQL, where other nodes commit
    /// too and consumers poll.
    pub fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &*self.engine {
            Engine::Sqlite(b) => Some(b.commits()),
            Engine::Postgres(_) => None,
        }
    }

    pub fn write_queue_capacity(&self) -> usize {
        match &*self.engine {
            Engine::Sqlite(_) => sqlite::QUEUE_CAPACITY,
            Engine::Postgres(_) => postgres::QUEUE_CAPACITY,
        }
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
    {
        match &*self.engine {
            Engine::Sqlite(b) => b.read(f).await,
            Engine::Postgres(b) => b.read(f).await,
        }
    }

    /// `read` for bounded point lookups on the checkout path; on SQLite it runs on the
    /// calling thread when a connection is idle (see `SqliteBackend::read_short`).
    pub async fn read_short<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
    {
        match &*self.engine {
            Engine::Sqlite(b) => b.read_short(f).await,
            Engine::Postgres(b) => b.read(f).await,
        }
    }

    /// Runs `f` in a write transaction. When the request carries an `Idempotency-Key`, the
    /// first write of the request also marks the key `applied` in the same transaction, so
    /// the record and the effect commit together and a retry can never apply it twice.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
    {
        self.write_marked(move |c| Ok((f(c)?, None))).await
    }

    /// `write` for a request whose path may carry personal data (a customer's source id,
    /// which can be an email): `f` also returns the resource it acted on, named by a
    /// non-personal id, and the audit entry records that instead of the path called.
    pub async fn write_naming<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<(T, String)> + Send + 'static,
    {
        self.write_marked(move |c| f(c).map(|(v, resource)| (v, Some(resource)))).await
    }

    async fn write_marked<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<(T, Option<String>)> + Send + 'static,
    {
        let claim = ops::idempotency::claim_current();
        let mark = claim.as_ref().map(|c| (c.scope.clone(), c.key.clone(), c.owner.clone()));
        // The request's audit entry rides on its first write, like the idempotency mark.
        let audit = Arc::new(ops::audit::claim_current());
        let audit_in = audit.clone();
        let request_id = if audit.is_some() {
            ops::idempotency::current_request_id()
        } else {
            String::new()
        };
        let f = move |c: &mut dyn Conn| -> Result<T> {
            let (v, resource) = f(c)?;
            if let Some((scope, key, owner)) = mark {
                ops::idempotency::mark_applied(c, &scope, &key, &owner)?;
            }
            if let Some(a) = audit_in.as_ref() {
                ops::audit::record(c, a, &request_id, resource.as_deref())?;
            }
            Ok(v)
        };
        // Only a request's first write may be shed under overload: nothing of the request
        // has committed yet, so the refusal leaves it all undone. Every API mutation is
        // audited, so the audit claim marks exactly that write.
        let sheddable = audit.is_some();
        let result = match &*self.engine {
            Engine::Sqlite(b) => b.write_with(f, sheddable).await,
            Engine::Postgres(b) => b.write(f).await,
        };
        if result.is_err() {
            if let Some(claim) = &claim {
                claim.release();
            }
            if let Some(a) = audit.as_ref() {
                a.release();
            }
        }
        result
    }

    /// A write that never takes part in a request's idempotency record (the record's own
    /// bookkeeping).
    pub async fn write_unmarked<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
    {
        match &*self.engine {
            Engine::Sqlite(b) => b.write(f).await,
            Engine::Postgres(b) => b.write(f).await,
        }
    }

    /// `write_unmarked`, in two steps: this returns once the write is queued (the single
    /// writer runs its queue in order, so a write queued after it runs after it), and the
    /// future it returns answers when it has committed. PostgreSQL has no queue: the
    /// write runs to its end here.
    pub async fn submit_unmarked<T, F>(&self, f: F) -> Result<impl std::future::Future<Output = Result<T>> + Send + 'static>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
    {
        enum Answer<T> {
            Queued(tokio::sync::oneshot::Receiver<Result<T>>),
            Done(Result<T>),
        }
        let answer = match &*self.engine {
            Engine::Sqlite(b) => Answer::Queued(b.submit(f).await?),
            Engine::Postgres(b) => Answer::Done(b.write(f).await),
        };
        Ok(async move {
            match answer {
                Answer::Queued(rx) => rx
                    .await
                    .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?,
                Answer::Done(r) => r,
            }
        })
    }

    /// Whether this process is the only one serving the database (SQLite, under its
    /// lock): nothing else can write between what it reads and what it writes.
    pub fn is_sole_server(&self) -> bool {
        self.sole_since.get().is_some()
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        self.read(|c| c.query("SELECT 1", &[]).map(|_| ())).await
    }

    /// Flushes queued writes and stops background threads. Blocking; call from a
    /// blocking context on shutdown.
    pub fn shutdown(&self) {
        if let Engine::Sqlite(b) = &*self.engine {
            b.shutdown();
        }
    }
}
