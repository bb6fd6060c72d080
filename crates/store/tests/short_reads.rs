//! `Store::read_short` runs a checkout's lookups on the calling runtime thread when a read
//! connection is idle, and waits for one like `read` when none is: it must answer the
//! same either way, see committed writes, and never fail because the pool is busy.

use std::sync::{Arc, Barrier};
use std::time::Duration;
use tessera_store::Store;

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh database with an empty `probe` table.
async fn open() -> (Dir, Store) {
    let dir = Dir(std::env::temp_dir().join(format!("tessera-short-{}", &tessera_domain::secrets::new_token()[..16])));
    let store = Store::open_sqlite(&dir.0).expect("open sqlite");
    store
        .write(|c| c.execute("CREATE TABLE probe (n INTEGER)", &[]).map(|_| ()))
        .await
        .expect("create table");
    (dir, store)
}

async fn count(store: &Store) -> i64 {
    store
        .read_short(|c| c.query_one("SELECT COUNT(*) FROM probe", &[])?.int(0))
        .await
        .expect("short read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reads_run_on_the_calling_thread_and_see_commits() {
    let (_dir, store) = open().await;
    assert_eq!(count(&store).await, 0);
    store
        .write(|c| c.execute("INSERT INTO probe (n) VALUES (1)", &[]).map(|_| ()))
        .await
        .expect("insert");
    assert_eq!(count(&store).await, 1, "a short read sees what was committed before it");

    let caller = std::thread::current().id();
    let ran_on = store.read_short(|_| Ok(std::thread::current().id())).await.expect("short read");
    assert_eq!(ran_on, caller, "with idle connections the read runs where it was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reads_wait_for_a_connection_when_all_are_busy() {
    let (_dir, store) = open().await;
    // Occupy every read connection until the barrier opens.
    const HOLDERS: usize = 8;
    let hold = Arc::new(Barrier::new(HOLDERS + 1));
    let mut holders = Vec::new();
    for _ in 0..HOLDERS {
        let (store, hold) = (store.clone(), hold.clone());
        holders.push(tokio::spawn(async move {
            store
                .read(move |_| {
                    hold.wait();
                    Ok(())
                })
                .await
        }));
    }
    // Give the holders time to take their connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { count(&store).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "with every connection taken the short read waits");
    // Release the holders from a blocking thread: Barrier::wait blocks.
    let release = hold.clone();
    tokio::task::spawn_blocking(move || release.wait()).await.expect("release");
    for h in holders {
        h.await.expect("holder task").expect("holder read");
    }
    let n = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the short read finishes once a connection is free")
        .expect("short read task");
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_panics_does_not_leave_a_connection_inside_its_transaction() {
    let (_dir, store) = open().await;
    let panicked = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .read_short(|_| -> tessera_store::Result<()> { panic!("a bug in a read") })
                .await
        })
    };
    assert!(panicked.await.is_err(), "the read's task panicked");
    // Every connection of the pool at once, so the one the panic left would be among them.
    const READERS: usize = 8;
    let together = Arc::new(Barrier::new(READERS));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (store, together) = (store.clone(), together.clone());
        readers.push(tokio::spawn(async move {
            store
                .read(move |c| {
                    together.wait();
                    c.query_one("SELECT COUNT(*) FROM probe", &[])?.int(0)
                })
                .await
        }));
    }
    for r in readers {
        assert_eq!(r.await.expect("reader task").expect("every connection reads"), 0);
    }
}
