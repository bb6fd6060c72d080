//! The official Voucherify clients against a real server. `scripts/test.sh` installs them
//! (Python `voucherify` into target/sdk-venv, Node `@voucherify/sdk` into
//! tests/sdk/node); a missing client fails the test loudly.

mod common;

use common::*;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn checked_python() -> String {
    let py = std::env::var("TESSERA_SDK_PYTHON").unwrap_or_else(|_| format!("{ROOT}/target/sdk-venv/bin/python"));
    assert!(
        std::path::Path::new(&py).exists(),
        "the Python SDK environment is missing at {py}: run scripts/test.sh (it installs voucherify==6.1.1) or set TESSERA_SDK_PYTHON"
    );
    py
}

fn checked_node() -> String {
    let modules = format!("{ROOT}/tests/sdk/node/node_modules/@voucherify/sdk");
    assert!(
        std::path::Path::new(&modules).exists(),
        "the Node SDK is missing: run scripts/test.sh (it runs npm ci in tests/sdk/node)"
    );
    "node".to_string()
}

/// Runs one SDK script against a fresh server and asserts every case passed.
async fn run_script(program: String, script: &'static str, backend: Backend) {
    let server = Server::start(backend);
    let p = server.create_project("SDK").await;
    let base = server.base.clone();
    let path = format!("{ROOT}/{script}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .arg(path)
            .env("TESSERA_URL", base)
            .env("TESSERA_APP_ID", &p.app_id)
            .env("TESSERA_APP_TOKEN", &p.app_token)
            .env("TESSERA_PROJECT_ID", &p.id)
            .env("TESSERA_MANAGEMENT_ID", MGMT_ID)
            .env("TESSERA_MANAGEMENT_TOKEN", MGMT_TOKEN)
            .env("TESSERA_TEST_VERBOSE", "1")
            .output()
    })
    .await
    .expect("join")
    .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
}

#[tokio::test]
async fn python_sdk_customers() {
    let dir = TempDir::new();
    run_script(
        checked_python(),
        "tests/sdk/python/test_customers.py",
        Backend::Sqlite(dir.0.clone()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_customer_import() {
    let dir = TempDir::new();
    run_script(
        checked_python(),
        "tests/sdk/python/test_customer_import.py",
        Backend::Sqlite(dir.0.clone()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_customer_import_on_postgres() {
    run_script(
        checked_python(),
        "tests/sdk/python/test_customer_import.py",
        Backend::Postgres(pg_fresh_url()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_coupons_and_gift_cards() {
    let dir = TempDir::new();
    run_script(checked_python(), "tests/sdk/python/test_coupons.py", Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn python_sdk_coupons_on_postgres() {
    run_script(
        checked_python(),
        "tests/sdk/python/test_coupons.py",
        Backend::Postgres(pg_fresh_url()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_categories_and_stacking_rules() {
    let dir = TempDir::new();
    run_script(
        checked_python(),
        "tests/sdk/python/test_promotions_admin.py",
        Backend::Sqlite(dir.0.clone()),
    )
    .await;
}

#[tokio::test]
async fn node_sdk_coupons_and_gift_cards() {
    let dir = TempDir::new();
    run_script(checked_node(), "tests/sdk/node/test_coupons.mjs", Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn python_sdk_promotions() {
    let dir = TempDir::new();
    run_script(
        checked_python(),
        "tests/sdk/python/test_promotions.py",
        Backend::Sqlite(dir.0.clone()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_exports() {
    let dir = TempDir::new();
    run_script(checked_python(), "tests/sdk/python/test_exports.py", Backend::Sqlite(dir.0.clone())).await;
}

#[tokio::test]
async fn python_sdk_exports_on_postgres() {
    run_script(
        checked_python(),
        "tests/sdk/python/test_exports.py",
        Backend::Postgres(pg_fresh_url()),
    )
    .await;
}

#[tokio::test]
async fn python_sdk_publications() {
    let dir = TempDir::new();
    run_script(
        checked_python(),
        "tests/sdk/python/test_publications.py",
        Backend::Sqlite(dir.0.clone()),
    )
    .await;
}
