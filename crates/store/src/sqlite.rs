//! The embedded backend: one SQLite file in WAL mode.
//!
//! One writer thread owns the only write connection. It drains whatever is queued (up to
//! `MAX_BATCH` commands), runs each inside its own SAVEPOINT so a failing command is rolled
//! back alone, commits the group with one fsync (`synchronous=FULL`), and only then answers
//! the callers. Reads go to a pool of read-only connections, which WAL lets proceed while
//! the writer works, so validation never waits for redemptions.

use crate::conn::{Conn, Row, Val};
use crate::StoreError;
use rusqlite::{types::ValueRef, Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Commands per group commit. Large enough to amortize fsync, small enough that one
/// group's latency stays in single-digit milliseconds.
pub const MAX_BATCH: usize = 512;
/// Commands waiting for the writer. Callers wait (backpressure) beyond this.
pub const QUEUE_CAPACITY: usize = 8192;
const READ_POOL_SIZE: u32 = 8;
/// Longest an API request's first write may wait in the queue before the writer refuses
/// it (503, retryable) instead of running it. Past the writer's capacity its queue only
/// grows (up to `QUEUE_CAPACITY` commands, seconds of work), every caller behind it waits
/// longer, and callers that gave up still get their work done for nothing. Refusing the
/// late ones keeps the others near normal latency. Background writes (code generation,
/// imports, relays) and a request's later writes (its first one committed, or its
/// idempotent response) are never refused: they wait.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(500);
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A queued write: `run` applies it inside its savepoint and says whether to keep it;
/// `finish` answers the caller once the group's commit outcome is known.
trait WriteJob: Send {
    fn run(&mut self, conn: &mut SqliteConn<'_>) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
    /// When a request's write was queued; `None` for background writes, never refused.
    fn queued_at(&self) -> Option<std::time::Instant>;
}

struct TypedJob<T, F> {
    f: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    queued_at: Option<std::time::Instant>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut SqliteConn<'_>) -> bool {
        let Some(f) = self.f.take() else { return false };
        let outcome = f(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Internal("write was not applied".into())),
        };
        let _ = self.reply.send(answer);
    }

    fn queued_at(&self) -> Option<std::time::Instant> {
        self.queued_at
    }
}

enum Msg {
    Job(Box<dyn WriteJob>),
    /// Everything queued before this is applied and committed, then the writer exits.
    Stop(std::sync::mpsc::Sender<()>),
}

pub struct SqliteBackend {
    path: PathBuf,
    jobs: mpsc::Sender<Msg>,
    queued: Arc<AtomicUsize>,
    readers: r2d2::Pool<ReadManager>,
    read_slots: Arc<tokio::sync::Semaphore>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Counts the writer's commits, so relays can wake on new events instead of polling.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// The checkpointer thread stops once this is dropped.
    _checkpointer_alive: Arc<()>,
}

pub struct SqliteConn<'a> {
    conn: &'a Connection,
}

/// `$1`, `$2`..., the names under which SQLite knows Tessera's placeholders.
static PARAM_NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| (1..=MAX_PARAMS).map(|i| format!("${i}")).collect());
/// Bulk statements (code generation) bind a few hundred values.
const MAX_PARAMS: usize = 1024;

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// SQLite reads `$N` as a named parameter, numbered by first appearance rather than by
/// N; binding each value by its name keeps `$N` meaning the N-th value, with no rewriting
/// of the statement and no copying of values.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Val]) -> Result<(), StoreError> {
    for (i, v) in params.iter().enumerate() {
        let name = PARAM_NAMES
            .get(i)
            .ok_or_else(|| StoreError::Internal("too many SQL parameters".into()))?;
        if let Some(idx) = stmt.parameter_index(name.as_str()).map_err(map_err)? {
            stmt.raw_bind_parameter(idx, v).map_err(map_err)?;
        }
    }
    Ok(())
}

impl Conn for SqliteConn<'_> {
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        bind(&mut stmt, params)?;
        let n = stmt.raw_execute().map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let cols = stmt.column_count();
        bind(&mut stmt, params)?;
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(map_err)? {
            let mut vals = Vec::with_capacity(cols);
            for i in 0..cols {
                vals.push(match r.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Real(v) => Val::Int(v as i64),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn lock_key(&mut self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn bulk_cache(&mut self, bulk: bool) -> Result<(), StoreError> {
        let kib = if bulk { BULK_WRITER_CACHE_KIB } else { WRITER_CACHE_KIB };
        self.conn.pragma_update(None, "cache_size", -kib).map_err(map_err)
    }
}

/// Runs a statement without results through the connection's statement cache:
/// `execute_batch` parses its text on every call, and transaction control runs on every
/// read and every write group.
fn exec(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.raw_execute())
        .map(|_| ())
        .map_err(map_err)
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            rusqlite::ErrorCode::ConstraintViolation => {
                return StoreError::Constraint(msg.clone().unwrap_or_else(|| e.to_string()));
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return StoreError::Unavailable(format!("database busy: {e}"));
            }
            _ => {}
        }
    }
    StoreError::Internal(format!("sqlite: {e}"))
}

/// Page cache of the writer connection for everyday writes. A checkout touches a few pages
/// per commit; a larger cache would only fill, over hours, with pages already written.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// The writer's page cache while code generation runs (each chunk sets it, the end of the
/// job restores the everyday size): a million-code campaign's index inserts touch pages
/// all over the B-trees and spent most of their time re-reading pages with a small cache.
/// Counted in the memory budget (docs/ARCHITECTURE.md).
const BULK_WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each read connection: SQLite's default size. Reads of hot rows are
/// served from the operating system's file cache anyway, and eight readers with large
/// caches were most of the memory a long-running server grew by.
const READER_CACHE_KIB: i64 = 2 * 1024;

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(map_err)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

struct ReadManager {
    path: PathBuf,
}

impl r2d2::ManageConnection for ReadManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(256);
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), rusqlite::Error> {
        conn.execute_batch("SELECT 1")
    }

    /// A connection handed back inside a transaction (its read panicked between BEGIN and
    /// COMMIT) would fail every later BEGIN and pin an old snapshot: drop it instead.
    fn has_broken(&self, conn: &mut Connection) -> bool {
        !conn.is_autocommit()
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) `tessera.db` in `dir`, applies migrations and starts
    /// the writer thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Internal(format!("cannot create data directory {}: {e}", dir.display())))?;
        let path = dir.join("tessera.db");
        let conn = Connection::open(&path).map_err(map_err)?;
        configure(&conn)?;
        // WAL lets readers proceed during writes; FULL makes every acknowledged commit durable.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
        crate::migrations::apply(&mut SqliteMigrator { conn: &conn })?;
        // Checkpoints run on their own thread (below) so the writer spends its time on
        // commits; the writer's own automatic checkpoint stays as a backstop for a
        // checkpointer that cannot keep up.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(map_err)?;
        // The statement journal of savepoints lives in memory, not in a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(map_err)?;
        let alive = Arc::new(());
        spawn_checkpointer(&path, Arc::downgrade(&alive))?;

        let readers = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .min_idle(Some(1))
            // A local file connection does not go stale; the default check ran a query
            // before every read.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(5))
            .build(ReadManager { path: path.clone() })
            .map_err(|e| StoreError::Internal(format!("cannot open read connections: {e}")))?;

        let (tx, rx) = mpsc::channel::<Msg>(QUEUE_CAPACITY);
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_w = queued.clone();
        let commits = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let commits_w = commits.clone();
        let writer = std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, queued_w, &commits_w))
            .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteBackend {
            path,
            jobs: tx,
            queued,
            readers,
            read_slots: Arc::new(tokio::sync::Semaphore::new(READ_POOL_SIZE as usize)),
            writer: std::sync::Mutex::new(Some(writer)),
            commits,
            _checkpointer_alive: alive,
        })
    }

    /// Changes after every group the writer commits.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        // Wait for a free connection here, asynchronously, rather than on a blocking
        // thread: under a flood, hundreds of blocking threads parked in the pool cost
        // memory and context switches and bought nothing.
        let slot = tokio::time::timeout(Duration::from_secs(5), self.read_slots.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Unavailable("no read connection became free within 5 s".into()))?
            .map_err(|_| StoreError::Unavailable("the read pool is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("no read connection available: {e}")))?;
            // A read spans several statements (page + count); one transaction gives them
            // one snapshot.
            exec(&conn, "BEGIN")?;
            let result = f(&mut SqliteConn { conn: &conn });
            let _ = exec(&conn, "COMMIT");
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }

    /// `read` for short point lookups on the checkout path (validation, qualification):
    /// runs on the calling runtime thread when a read connection is idle, instead of
    /// handing the work to a blocking thread and back. In profiles of validation that
    /// hand-off (two thread switches and their wake-ups) cost about a quarter of the
    /// server's CPU per request, more than the SQLite work itself. Only for reads that
    /// touch a bounded number of rows: a long scan here would hold up every connection
    /// this runtime thread serves. Without an idle connection it waits like `read`.
    pub async fn read_short<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let inline = match self.read_slots.clone().try_acquire_owned() {
            Ok(slot) => self.readers.try_get().map(|conn| (slot, conn)),
            Err(_) => None,
        };
        let Some((_slot, conn)) = inline else {
            return self.read(f).await;
        };
        exec(&conn, "BEGIN")?;
        let result = f(&mut SqliteConn { conn: &conn });
        let _ = exec(&conn, "COMMIT");
        result
    }

    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(f, false).await
    }

    /// Queues `f` and returns once it is in the writer's queue, with what answers when it
    /// has run: a caller can order later writes after it without waiting for its commit.
    pub async fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(f, None).await
    }

    async fn enqueue<T, F>(
        &self,
        f: F,
        queued_at: Option<std::time::Instant>,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job = Box::new(TypedJob {
            f: Some(f),
            outcome: None,
            reply: tx,
            queued_at,
        });
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.jobs.send(Msg::Job(job)).await.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable("the writer has stopped".into()));
        }
        Ok(rx)
    }

    /// `write`, refused without running if it waits longer than `MAX_QUEUE_WAIT` when
    /// `sheddable`: for the first write of an API request, which nothing has committed
    /// for yet, so a refusal leaves the request all undone.
    pub async fn write_with<T, F>(&self, f: F, sheddable: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(f, sheddable.then(std::time::Instant::now))
            .await?
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }

    /// Applies and commits everything already queued, then stops the writer. Called on
    /// graceful shutdown so that no accepted write is left behind.
    pub fn shutdown(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.jobs.blocking_send(Msg::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

struct SqliteMigrator<'a> {
    conn: &'a Connection,
}

impl crate::migrations::Migrator for SqliteMigrator<'_> {
    fn run(&mut self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
        let r = f(&mut SqliteConn { conn: self.conn });
        match r {
            Ok(()) => self.conn.execute_batch("COMMIT").map_err(map_err),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }
}

/// WAL pages after which the writer checkpoints by itself (64 MiB). By then the
/// checkpointer has copied most frames, so the writer's pass is mostly the final sync.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16384;
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Copies committed WAL frames into the database file from a second connection, in
/// parallel with the writer. PASSIVE never blocks the writer or readers; what it cannot
/// copy yet (frames a reader still needs) is copied on a later pass.
fn spawn_checkpointer(path: &Path, alive: std::sync::Weak<()>) -> Result<(), StoreError> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    std::thread::Builder::new()
        .name("tessera-sqlite-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                let started = std::time::Instant::now();
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                }) {
                    Ok((log, copied)) if log > 0 => {
                        metrics::histogram!("tessera_checkpoint_seconds").record(started.elapsed().as_secs_f64());
                        metrics::gauge!("tessera_wal_frames").set((log - copied) as f64);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own checkpoint takes over"),
                }
            }
        })
        .map_err(|e| StoreError::Internal(format!("cannot start checkpoint thread: {e}")))?;
    Ok(())
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Msg>, queued: Arc<AtomicUsize>, commits: &tokio::sync::watch::Sender<u64>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    let mut stop: Option<std::sync::mpsc::Sender<()>> = None;
    while stop.is_none() {
        match rx.blocking_recv() {
            Some(Msg::Job(job)) => batch.push(job),
            Some(Msg::Stop(ack)) => stop = Some(ack),
            None => break,
        }
        while batch.len() < MAX_BATCH && stop.is_none() {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Stop(ack)) => stop = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let n = batch.len();
            shed_late(&mut batch);
            if !batch.is_empty() {
                apply_group(&conn, &mut batch);
                commits.send_modify(|n| *n = n.wrapping_add(1));
            }
            queued.fetch_sub(n, Ordering::Relaxed);
        }
    }
    if let Some(ack) = stop {
        let _ = ack.send(());
    }
}

/// Answers 503 to the requests' writes that waited longer than `MAX_QUEUE_WAIT`,
/// without running them: nothing of them is written, and their idempotency keys are
/// released, so a retry runs them afresh.
fn shed_late(batch: &mut Vec<Box<dyn WriteJob>>) {
    let late = |j: &dyn WriteJob| j.queued_at().is_some_and(|t| t.elapsed() > MAX_QUEUE_WAIT);
    if !batch.iter().any(|j| late(j.as_ref())) {
        return;
    }
    let (shed, keep): (Vec<_>, Vec<_>) = batch.drain(..).partition(|j| late(j.as_ref()));
    *batch = keep;
    metrics::counter!("tessera_shed_total", "reason" => "writer_queue").increment(shed.len() as u64);
    for job in shed {
        job.finish(Err(StoreError::Unavailable(format!(
            "the write waited over {} ms for the writer; retry",
            MAX_QUEUE_WAIT.as_millis()
        ))));
    }
}

/// Applies one group of writes in one transaction, one savepoint per write, and answers
/// each caller after the commit.
fn apply_group(conn: &Connection, batch: &mut Vec<Box<dyn WriteJob>>) {
    let n = batch.len();
    metrics::histogram!("tessera_writer_batch_size").record(n as f64);
    let started = std::time::Instant::now();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        for job in batch.drain(..) {
            job.finish(Err(e.clone()));
        }
        return;
    }
    if n == 1 {
        // Alone in its group, a command needs no savepoint: the transaction is its own.
        // That spares copying every page it touches to the statement journal, which for
        // bulk commands (code generation, imports) was a sizeable share of their time.
        let job = &mut batch[0];
        let keep = job.run(&mut SqliteConn { conn });
        let commit = if keep { exec(conn, "COMMIT") } else { exec(conn, "ROLLBACK") };
        let commit = match commit {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = exec(conn, "ROLLBACK");
                Err(e)
            }
        };
        metrics::histogram!("tessera_writer_commit_seconds").record(started.elapsed().as_secs_f64());
        for job in batch.drain(..) {
            job.finish(commit.clone());
        }
        return;
    }
    for job in batch.iter_mut() {
        if exec(conn, "SAVEPOINT cmd").is_err() {
            continue;
        }
        let keep = job.run(&mut SqliteConn { conn });
        if !keep {
            let _ = exec(conn, "ROLLBACK TO cmd");
        }
        let _ = exec(conn, "RELEASE cmd");
    }
    let commit = exec(conn, "COMMIT");
    if commit.is_err() {
        let _ = exec(conn, "ROLLBACK");
    }
    metrics::histogram!("tessera_writer_commit_seconds").record(started.elapsed().as_secs_f64());
    for job in batch.drain(..) {
        job.finish(commit.clone());
    }
}
