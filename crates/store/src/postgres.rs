//! The scale-out backend: PostgreSQL, shared by any number of stateless nodes.
//!
//! Each write runs in its own READ COMMITTED transaction. Operations are written so that
//! this is race-free: counters and balances change through single conditional statements,
//! and read-modify-write sequences on one logical key take `lock_key` first.

use crate::conn::{Conn, Row, Val};
use crate::StoreError;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use std::time::Duration;

const POOL_SIZE: u32 = 16;
/// Operations waiting for a PostgreSQL worker; beyond this, callers get 503 at once
/// rather than queueing without bound.
pub const QUEUE_CAPACITY: usize = 4096;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Task = Box<dyn FnOnce(&Pool) + Send>;

/// The synchronous driver runs its own small runtime per connection and may not be used
/// (or even dropped) on a thread that belongs to a Tokio runtime. So PostgreSQL work runs
/// on plain worker threads that own the pool; async callers hand them closures.
pub struct PgBackend {
    tasks: std::sync::mpsc::SyncSender<Task>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ToSql for Val {
    fn to_sql(&self, ty: &Type, out: &mut postgres::types::private::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => {
                if *ty == Type::INT4 {
                    i32::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*i != 0).to_sql(ty, out)
                } else {
                    i.to_sql(ty, out)
                }
            }
            Val::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn params(vals: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn convert_row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut vals = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map(Val::from)
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i).map(|v| Val::from(v.map(i64::from)))
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i).map(|v| Val::from(v.map(i64::from)))
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i).map(Val::from)
        } else {
            row.try_get::<_, Option<String>>(i).map(Val::from)
        };
        vals.push(v.map_err(|e| StoreError::Internal(format!("postgres column {}: {e}", col.name())))?);
    }
    Ok(Row(vals))
}

pub(crate) fn map_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == postgres::error::SqlState::UNIQUE_VIOLATION
            || *code == postgres::error::SqlState::FOREIGN_KEY_VIOLATION
            || *code == postgres::error::SqlState::CHECK_VIOLATION
            || *code == postgres::error::SqlState::NOT_NULL_VIOLATION
        {
            return StoreError::Constraint(db.message().to_string());
        }
        if *code == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE || *code == postgres::error::SqlState::T_R_DEADLOCK_DETECTED {
            return StoreError::Unavailable(format!("transaction conflict: {}", db.message()));
        }
        return StoreError::Internal(format!("postgres: {} ({})", db.message(), code.code()));
    }
    if e.is_closed() {
        return StoreError::Unavailable("postgres connection closed".into());
    }
    StoreError::Unavailable(format!("postgres: {e}"))
}

struct PgConn<'a, C: postgres::GenericClient> {
    client: &'a mut C,
}

impl<C: postgres::GenericClient> Conn for PgConn<'_, C> {
    fn execute(&mut self, sql: &str, vals: &[Val]) -> Result<u64, StoreError> {
        self.client.execute(sql, &params(vals)).map_err(map_err)
    }

    fn query(&mut self, sql: &str, vals: &[Val]) -> Result<Vec<Row>, StoreError> {
        let rows = self.client.query(sql, &params(vals)).map_err(map_err)?;
        rows.iter().map(convert_row).collect()
    }

    fn lock_key(&mut self, key: &str) -> Result<(), StoreError> {
        self.client
            .execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&key])
            .map_err(map_err)?;
        Ok(())
    }

    fn is_postgres(&self) -> bool {
        true
    }
}

struct PgMigrator<'a> {
    client: &'a mut postgres::Client,
}

impl crate::migrations::Migrator for PgMigrator<'_> {
    fn run(&mut self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(map_err)?;
        // Several nodes may start at once; one migrates, the others wait and then see it done.
        tx.execute("SELECT pg_advisory_xact_lock(7265637365726100)", &[]).map_err(map_err)?;
        f(&mut PgConn { client: &mut tx })?;
        tx.commit().map_err(map_err)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(map_err)
    }
}

impl PgBackend {
    /// Connects, migrates and starts the workers. Must be called off any async runtime.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        {
            let mut client = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
            crate::migrations::apply(&mut PgMigrator { client: &mut client })?;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Task>(QUEUE_CAPACITY);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..POOL_SIZE {
            let rx = rx.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("tessera-pg-{i}"))
                .spawn(move || loop {
                    let task = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match task {
                        Ok(task) => task(&pool),
                        Err(_) => return,
                    }
                })
                .map_err(|e| StoreError::Internal(format!("cannot start PostgreSQL worker: {e}")))?;
        }
        Ok(PgBackend {
            tasks: tx,
            queued: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    async fn submit<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Pool) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.queued.clone();
        queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let q2 = queued.clone();
        let task: Task = Box::new(move |pool| {
            q2.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let _ = tx.send(f(pool));
        });
        self.tasks
            .try_send(task)
            .inspect_err(|_| {
                queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            })
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => StoreError::Unavailable("too many PostgreSQL operations queued".into()),
                std::sync::mpsc::TrySendError::Disconnected(_) => StoreError::Unavailable("PostgreSQL workers stopped".into()),
            })?;
        rx.await
            .map_err(|_| StoreError::Internal("PostgreSQL worker dropped the operation".into()))?
    }

    pub fn queue_depth(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(move |pool| {
            let mut client = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("no PostgreSQL connection available: {e}")))?;
            // REPEATABLE READ gives a multi-statement read (page + count) one snapshot.
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(map_err)?;
            let r = f(&mut PgConn { client: &mut tx });
            let _ = tx.commit();
            r
        })
        .await
    }

    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(move |pool| {
            let mut client = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("no PostgreSQL connection available: {e}")))?;
            let mut tx = client.transaction().map_err(map_err)?;
            let r = f(&mut PgConn { client: &mut tx })?;
            tx.commit().map_err(map_err)?;
            Ok(r)
        })
        .await
    }
}
