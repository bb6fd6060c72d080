//! The official Voucherify clients against a real server. The Python client lives in a
//! virtualenv that `scripts/test.sh` creates; a missing client fails the test loudly.

mod common;

use common::*;

fn python() -> String {
    std::env::var("TESSERA_SDK_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/sdk-venv/bin/python").to_string())
}

#[tokio::test]
async fn python_sdk_customers() {
    let py = python();
    assert!(
        std::path::Path::new(&py).exists(),
        "the Python SDK environment is missing at {py}: run scripts/test.sh (it installs voucherify==6.1.1) or set TESSERA_SDK_PYTHON"
    );
    let dir = TempDir::new();
    let server = Server::sqlite(&dir);
    let p = server.create_project("SDK").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sdk/python/test_customers.py");
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .arg(script)
            .env("TESSERA_URL", base)
            .env("TESSERA_APP_ID", &p.app_id)
            .env("TESSERA_APP_TOKEN", &p.app_token)
            .env("TESSERA_TEST_VERBOSE", "1")
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Python SDK test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
