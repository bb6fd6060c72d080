//! The embedded writer refuses an API request's first write that waited too long in its
//! queue, and only that: background writes queued behind the same stall still run.

use std::time::Duration;
use tessera_store::ops::audit::{AuditMark, AUDIT};
use tessera_store::ops::idempotency::REQUEST_ID;
use tessera_store::sqlite::MAX_QUEUE_WAIT;
use tessera_store::{Store, StoreError};

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the API's audit middleware sets for a mutation: its first write carries it.
fn mark() -> AuditMark {
    AuditMark::new(
        "proj_test".into(),
        "key:app_test".into(),
        "POST /v1/test".into(),
        "/v1/test".into(),
        Vec::new(),
    )
}

/// Starts a background write that holds the writer well past the queue limit, and
/// returns once it is running.
async fn stall_writer(store: &Store) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let store = store.clone();
    let stall = MAX_QUEUE_WAIT + Duration::from_millis(300);
    let blocker = tokio::spawn(async move {
        store
            .write(move |_| {
                std::thread::sleep(stall);
                Ok(())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    blocker
}

async fn count_rows(store: &Store) -> i64 {
    store
        .read(|c| c.query_one("SELECT COUNT(*) FROM shed_probe", &[])?.int(0))
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_request_writes_are_refused_and_nothing_of_them_is_written() {
    let dir = Dir(std::env::temp_dir().join(format!("tessera-shed-{}", &tessera_domain::secrets::new_token()[..16])));
    let store = Store::open_sqlite(&dir.0).expect("open sqlite");
    store
        .write(|c| c.execute("CREATE TABLE shed_probe (n INTEGER)", &[]).map(|_| ()))
        .await
        .expect("create table");

    // A background write holds the writer well past the queue limit.
    let blocker = stall_writer(&store).await;

    // Behind it: one write made while serving a request, one background write.
    let request_write = {
        let store = store.clone();
        tokio::spawn(REQUEST_ID.scope(
            "req_test".to_string(),
            AUDIT.scope(mark(), async move {
                store
                    .write(|c| c.execute("INSERT INTO shed_probe (n) VALUES (1)", &[]).map(|_| ()))
                    .await
            }),
        ))
    };
    let background_write = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(|c| c.execute("INSERT INTO shed_probe (n) VALUES (2)", &[]).map(|_| ()))
                .await
        })
    };

    blocker.await.expect("join").expect("the stalling write itself commits");
    let refused = request_write.await.expect("join");
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    background_write.await.expect("join").expect("background writes wait instead");
    let rows = store
        .read(|c| {
            c.query_one("SELECT COUNT(*), COALESCE(SUM(n), 0) FROM shed_probe", &[])
                .and_then(|r| Ok((r.int(0)?, r.int(1)?)))
        })
        .await
        .expect("read");
    assert_eq!(rows, (1, 2), "only the background write is in the table");

    // Once the queue is short again, a request's write goes through.
    let ok = REQUEST_ID
        .scope(
            "req_test_2".to_string(),
            AUDIT.scope(mark(), async {
                store
                    .write(|c| c.execute("INSERT INTO shed_probe (n) VALUES (3)", &[]).map(|_| ()))
                    .await
            }),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(count_rows(&store).await, 2);

    // A request's later write, once its first has committed, waits out the same stall:
    // refusing it would leave the request half done.
    let later = AUDIT
        .scope(mark(), async {
            store
                .write(|c| c.execute("INSERT INTO shed_probe (n) VALUES (4)", &[]).map(|_| ()))
                .await
                .expect("the request's first write");
            let blocker = stall_writer(&store).await;
            let second = store
                .write(|c| c.execute("INSERT INTO shed_probe (n) VALUES (5)", &[]).map(|_| ()))
                .await;
            blocker.await.expect("join").expect("stall");
            second
        })
        .await;
    assert!(later.is_ok(), "{later:?}");
    assert_eq!(count_rows(&store).await, 4);
}
