//! Backups against the real binary: taken while redemptions keep committing, verified by
//! restoring them, restored into a new instance that answers validations exactly as the
//! original does, refused over a running server, and failing loudly when damaged.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn tessera(args: &[&str]) -> Output {
    std::process::Command::new(bin())
        .args(args)
        .env_remove("TESSERA_CONFIG")
        .output()
        .expect("run tessera")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The entries of `dir` whose names start with `prefix`, sorted.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)));
    found.sort();
    found
}

fn backups_in(root: &Path) -> Vec<PathBuf> {
    entries(root, "tessera-backup-")
}

fn create_backup(data: &Path, out: &Path, key: Option<&Path>) -> PathBuf {
    let (d, o) = (data.display().to_string(), out.display().to_string());
    let mut args = vec!["backup", "create", "--data-dir", &d, "--out", &o];
    let k = key.map(|k| k.display().to_string());
    if let Some(k) = &k {
        args.extend(["--backup-key-file", k]);
    }
    let before = backups_in(out);
    let res = tessera(&args);
    assert!(res.status.success(), "backup create failed: {}", text(&res));
    let after = backups_in(out);
    let new: Vec<_> = after.into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "one new backup directory: {new:?}");
    new[0].clone()
}

/// What a validation answers, without the parts that differ per call.
fn stable(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["id", "tracking_id", "request_id", "created_at"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

const SAMPLE: usize = 30;

async fn seed(server: &Server, p: &Project) {
    for i in 0..SAMPLE {
        let body = match i % 3 {
            0 => json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 5 + i}, "redemption": {"quantity": 3}}),
            1 => json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 100 * i as i64}}),
            _ => json!({"type": "GIFT_VOUCHER", "gift": {"amount": 1000 * i as i64}}),
        };
        let (status, v) = server.call(p, Method::POST, &format!("/v1/vouchers/S-{i}"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
    }
    // Some history in the sample: one redemption of each of the first five.
    for i in 0..5 {
        let (status, v) = server
            .call(
                p,
                Method::POST,
                "/v1/redemptions",
                Some(json!({"redeemables": [{"object": "voucher", "id": format!("S-{i}"), "gift": {"credits": 100}}], "order": {"amount": 5000}})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    for (code, body) in [
        (
            "LOAD",
            json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 10}}),
        ),
        ("CARD", json!({"type": "GIFT_VOUCHER", "gift": {"amount": 100_000_000}})),
    ] {
        let (status, v) = server.call(p, Method::POST, &format!("/v1/vouchers/{code}"), Some(body)).await;
        assert_eq!(status, 200, "{v}");
    }
}

async fn validations(server: &Server, p: &Project) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..SAMPLE {
        let (status, v) = server
            .call(
                p,
                Method::POST,
                "/v1/validations",
                Some(json!({"redeemables": [{"object": "voucher", "id": format!("S-{i}"), "gift": {"credits": 50}}], "order": {"amount": 4000, "items": [{"source_id": "sku-1", "quantity": 2, "price": 2000}]}})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        out.push(stable(v));
        let (_, voucher) = server.call(p, Method::GET, &format!("/v1/vouchers/S-{i}"), None).await;
        out.push(stable(voucher));
    }
    out
}

async fn load(base: String, p: Project, stop: Arc<AtomicBool>, acked: Arc<AtomicUsize>) {
    let http = reqwest::Client::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = if n.is_multiple_of(2) {
            json!({"redeemables": [{"object": "voucher", "id": "LOAD"}], "order": {"amount": 1000}})
        } else {
            json!({"redeemables": [{"object": "voucher", "id": "CARD", "gift": {"credits": 10}}], "order": {"amount": 10}})
        };
        let resp = http
            .post(format!("{base}/v1/redemptions"))
            .header("X-App-Id", &p.app_id)
            .header("X-App-Token", &p.app_token)
            .json(&body)
            .send()
            .await
            .expect("the server answers during the backup");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "a redemption failed while the backup ran: {v}");
        acked.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_verifies_and_restores_to_the_same_answers() {
    let (data, backups, restored_dir) = (TempDir::new(), TempDir::new(), TempDir::new());
    let key = data.0.join("..").join(format!("tessera-key-{}", random_suffix()));
    std::fs::write(&key, [42u8; 32]).expect("key");
    let server = Server::sqlite(&data);
    let p = server.create_project("Backed up").await;
    seed(&server, &p).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(server.base.clone(), p.clone(), stop.clone(), acked.clone())))
        .collect();
    while acked.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = acked.load(Ordering::Relaxed);
    let (d, b, k) = (data.0.clone(), backups.0.clone(), key.clone());
    let backup = tokio::task::spawn_blocking(move || create_backup(&d, &b, Some(&k)))
        .await
        .expect("backup thread");
    let during = acked.load(Ordering::Relaxed) - before;
    // Writes went on while the snapshot was taken (no pause in service).
    while acked.load(Ordering::Relaxed) < before + during + 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("load worker");
    }
    assert!(backup.join("tessera.db.enc").is_file(), "encrypted: {backup:?}");
    assert!(!backup.join("tessera.db").exists(), "no clear copy left behind");
    let manifest: Value = serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["engine"], "sqlite", "{manifest}");
    assert!(manifest["schema_version"].as_i64().is_some_and(|v| v > 0), "{manifest}");
    assert_eq!(manifest["files"][0]["sha256"].as_str().map(str::len), Some(64), "{manifest}");

    let res = tessera(&[
        "backup",
        "verify",
        &backup.display().to_string(),
        "--backup-key-file",
        &key.display().to_string(),
    ]);
    assert!(res.status.success(), "verify: {}", text(&res));
    assert!(text(&res).contains("is good"), "{}", text(&res));
    let res = tessera(&["backup", "verify", &backup.display().to_string()]);
    assert!(!res.status.success());
    assert!(text(&res).contains("is encrypted"), "{}", text(&res));

    let res = tessera(&[
        "restore",
        &backup.display().to_string(),
        "--data-dir",
        &restored_dir.0.display().to_string(),
        "--backup-key-file",
        &key.display().to_string(),
    ]);
    assert!(res.status.success(), "restore: {}", text(&res));
    let restored = Server::sqlite(&restored_dir);
    // Same keys, same data: the sample answers exactly as on the original.
    let original_answers = validations(&server, &p).await;
    let restored_answers = validations(&restored, &p).await;
    assert_eq!(original_answers.len(), 2 * SAMPLE);
    for (o, r) in original_answers.iter().zip(&restored_answers) {
        assert_eq!(o, r, "the restored instance answers differently");
    }
    // The snapshot holds a prefix of the load: no more than the original, and consistent.
    let (_, card_o) = server.call(&p, Method::GET, "/v1/vouchers/CARD", None).await;
    let (_, card_r) = restored.call(&p, Method::GET, "/v1/vouchers/CARD", None).await;
    let (ro, rr) = (
        card_o["redemption"]["redeemed_quantity"].as_i64().expect("count"),
        card_r["redemption"]["redeemed_quantity"].as_i64().expect("count"),
    );
    assert!(rr <= ro && rr > 0, "restored {rr}, original {ro}");
    assert_eq!(card_r["gift"]["balance"].as_i64(), Some(100_000_000 - 10 * rr), "{card_r}");
    restored.stop();
    server.stop();
    let _ = std::fs::remove_file(&key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_running_server_and_keeps_the_replaced_files() {
    let (data, backups) = (TempDir::new(), TempDir::new());
    let server = Server::sqlite(&data);
    let p = server.create_project("First").await;
    let backup = create_backup(&data.0, &backups.0, None);
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/AFTER",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let args = [
        "restore",
        &backup.display().to_string(),
        "--data-dir",
        &data.0.display().to_string(),
    ];
    let res = tessera(&args);
    assert!(!res.status.success(), "restore over a running server must fail");
    assert!(text(&res).contains("in use by a running Tessera server"), "{}", text(&res));
    // A second server on the same directory is refused the same way.
    let second = std::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data.0.display().to_string()])
        .env("TESSERA_MANAGEMENT_ID", MGMT_ID)
        .env("TESSERA_MANAGEMENT_TOKEN", MGMT_TOKEN)
        .env_remove("TESSERA_CONFIG")
        .output()
        .expect("second serve");
    assert!(!second.status.success());
    assert!(text(&second).contains("in use"), "{}", text(&second));
    server.stop();

    let res = tessera(&args);
    assert!(res.status.success(), "restore: {}", text(&res));
    let previous = entries(&data.0, "pre-restore-");
    assert_eq!(previous.len(), 1, "the replaced database is kept");
    assert!(previous[0].join("tessera.db").is_file());
    let server = Server::sqlite(&data);
    let (status, _) = server.call(&p, Method::GET, "/v1/vouchers/AFTER", None).await;
    assert_eq!(status, 404, "the restored state is the backup's, without the later voucher");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_fail_verification_with_a_clear_message() {
    let (data, backups) = (TempDir::new(), TempDir::new());
    let server = Server::sqlite(&data);
    let p = server.create_project("Damaged").await;
    let (status, v) = server
        .call(
            &p,
            Method::POST,
            "/v1/vouchers/DMG",
            Some(json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    server.stop();
    let good = create_backup(&data.0, &backups.0, None);
    let res = tessera(&["backup", "verify", &good.display().to_string()]);
    assert!(res.status.success(), "{}", text(&res));

    // One flipped byte in the middle of the database file.
    let db = good.join("tessera.db");
    let mut bytes = std::fs::read(&db).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&db, &bytes).expect("write");
    let res = tessera(&["backup", "verify", &good.display().to_string()]);
    assert_eq!(res.status.code(), Some(1), "{}", text(&res));
    let msg = text(&res);
    assert!(
        msg.contains("FAILED") && msg.contains("is corrupt") && msg.contains("tessera.db") && msg.contains("SHA-256"),
        "{msg}"
    );
    // A damaged backup is never restored.
    let target = TempDir::new();
    let res = tessera(&[
        "restore",
        &good.display().to_string(),
        "--data-dir",
        &target.0.display().to_string(),
    ]);
    assert!(!res.status.success());
    assert!(!target.0.join("tessera.db").exists(), "nothing half-restored");

    std::fs::remove_file(good.join("manifest.json")).expect("remove manifest");
    let res = tessera(&["backup", "verify", &good.display().to_string()]);
    assert!(text(&res).contains("not a Tessera backup"), "{}", text(&res));

    // A consistent copy of an inconsistent database: the checksums hold, the invariant
    // checker does not.
    let c = rusqlite::Connection::open(data.0.join("tessera.db")).expect("open");
    c.execute("UPDATE vouchers SET redeemed_quantity = 7 WHERE code = 'DMG'", [])
        .expect("corrupt");
    drop(c);
    let bad = create_backup(&data.0, &backups.0, None);
    let res = tessera(&["backup", "verify", &bad.display().to_string()]);
    assert_eq!(res.status.code(), Some(1));
    assert!(text(&res).contains("violates invariants"), "{}", text(&res));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_copied_pruned_and_reported() {
    let (data, backups, copies, uploads) = (TempDir::new(), TempDir::new(), TempDir::new(), TempDir::new());
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn", "--backup-interval", "1"])
        // Stands in for `rclone copy` / `aws s3 cp` to S3-compatible storage.
        .arg("--backup-upload-command")
        .arg(format!("cp -r \"$TESSERA_BACKUP_PATH\" '{}/'", uploads.0.display()))
        .args(["--backup-keep-hourly", "2", "--backup-keep-daily", "1"])
        .arg("--data-dir")
        .arg(&data.0)
        .arg("--backup-dir")
        .arg(&backups.0)
        .arg("--backup-copy-dir")
        .arg(&copies.0);
    let server = Server::start_with(cmd, Backend::Sqlite(data.0.clone()));
    let p = server.create_project("Scheduled").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..150 {
        seen.extend(backups_in(&backups.0));
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 4, "a backup a second: {seen:?}");
    let kept = backups_in(&backups.0);
    assert!(kept.len() <= 3, "retention keeps two (one more may be in progress): {kept:?}");
    assert!(!backups_in(&copies.0).is_empty(), "copies reach the second directory");
    let uploaded = backups_in(&uploads.0);
    assert!(!uploaded.is_empty(), "the upload command ran");
    assert!(uploaded[0].join("manifest.json").is_file(), "{uploaded:?}");
    let newest = kept.last().expect("a backup").clone();
    let res = tessera(&["backup", "verify", &newest.display().to_string()]);
    assert!(res.status.success(), "{}", text(&res));
    let metrics = server.metrics().await;
    let age = metric_value(&metrics, "tessera_backup_age_seconds").expect("age metric");
    assert!(age < 10.0, "{metrics}");
    assert!(metrics.contains("tessera_backup_last_success_timestamp_seconds"));
    // The project created before the last backups is in them.
    drop(p);
    server.stop();
}

/// A database of its own on the test server (pg_dump copies whole databases), and its URL.
fn pg_fresh_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}", random_suffix());
    let base = pg_base_url();
    let n = name.clone();
    let admin = base.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("PostgreSQL must be running for the test suite");
        c.batch_execute(&format!("CREATE DATABASE {n}")).expect("create database");
    })
    .join()
    .expect("create thread");
    let (prefix_url, _) = base.rsplit_once('/').expect("URL with a database");
    (name.clone(), format!("{prefix_url}/{name}"))
}

fn pg_drop_database(name: &str) {
    let (admin, n) = (pg_base_url(), name.to_string());
    std::thread::spawn(move || {
        if let Ok(mut c) = postgres::Client::connect(&admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
        }
    })
    .join()
    .expect("drop thread");
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts").join(name)
}

/// The documented PostgreSQL procedure: scripts/pg-backup.sh (pg_dump) under write load,
/// scripts/pg-restore.sh into a new database (with the checker), and a server on the copy
/// that answers like the original. A damaged dump is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_script_under_load_restores_to_the_same_answers() {
    let (src_name, src_url) = pg_fresh_database("tessera_bk");
    let (dst_name, dst_url) = pg_fresh_database("tessera_rs");
    let backups = TempDir::new();
    let server = Server::start(Backend::Postgres(src_url.clone()));
    let p = server.create_project("PG backed up").await;
    seed(&server, &p).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(server.base.clone(), p.clone(), stop.clone(), acked.clone())))
        .collect();
    while acked.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (url, root) = (src_url.clone(), backups.0.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script("pg-backup.sh"))
            .arg(&url)
            .arg(&root)
            .output()
            .expect("run pg-backup.sh")
    })
    .await
    .expect("backup thread");
    assert!(out.status.success(), "pg-backup.sh: {}", text(&out));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("load worker");
    }
    let dirs = entries(&backups.0, "tessera-pg-backup-");
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let restore = |target: &str| {
        std::process::Command::new(script("pg-restore.sh"))
            .arg(&dirs[0])
            .arg(target)
            .env("TESSERA_BIN", bin())
            .output()
            .expect("run pg-restore.sh")
    };
    let out = restore(&dst_url);
    assert!(out.status.success(), "pg-restore.sh: {}", text(&out));
    assert!(text(&out).contains("invariant check passed"), "{}", text(&out));
    // Restoring over a database that already holds Tessera is refused.
    let again = restore(&dst_url);
    assert!(!again.status.success());
    assert!(text(&again).contains("already holds a Tessera schema"), "{}", text(&again));

    let restored = Server::start(Backend::Postgres(dst_url.clone()));
    let original_answers = validations(&server, &p).await;
    let restored_answers = validations(&restored, &p).await;
    for (o, r) in original_answers.iter().zip(&restored_answers) {
        assert_eq!(o, r, "the restored instance answers differently");
    }
    let (_, card) = restored.call(&p, Method::GET, "/v1/vouchers/CARD", None).await;
    let n = card["redemption"]["redeemed_quantity"].as_i64().expect("count");
    assert!(n > 0, "the copy holds the load's redemptions up to the snapshot: {card}");
    assert_eq!(card["gift"]["balance"].as_i64(), Some(100_000_000 - 10 * n), "{card}");
    // The event relays run on the copy (their positions were re-based): the statistics
    // come to count every redemption, the restored ones and a new one.
    let (status, r) = restored
        .call(
            &p,
            Method::POST,
            "/v1/redemptions",
            Some(json!({"redeemables": [{"object": "voucher", "id": "CARD", "gift": {"credits": 10}}], "order": {"amount": 10}})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let mut counted = 0;
    for _ in 0..200 {
        let (_, stats) = restored.call(&p, Method::GET, "/v1/vouchers/CARD/stats", None).await;
        counted = stats["data"]
            .as_array()
            .map(|days| days.iter().filter_map(|d| d["redemptions"].as_i64()).sum())
            .unwrap_or(0);
        if counted == n + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, n + 1, "statistics on the restored database catch up");
    restored.stop();
    server.stop();

    // One flipped byte: the script names the file and refuses before touching anything.
    let dump = dirs[0].join("tessera.pgdump");
    let mut bytes = std::fs::read(&dump).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&dump, &bytes).expect("write");
    let (third_name, third_url) = pg_fresh_database("tessera_rs");
    let out = restore(&third_url);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is corrupt") && text(&out).contains("tessera.pgdump"),
        "{}",
        text(&out)
    );
    for name in [src_name, dst_name, third_name] {
        pg_drop_database(&name);
    }
}
