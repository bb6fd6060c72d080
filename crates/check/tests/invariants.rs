//! The checker against databases the real engine wrote: clean ones pass, and each
//! invariant, broken by hand with plain SQL, is reported by its own check (and, where
//! one invariant implies another, by exactly those).

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use support::*;
use tessera_check::{check_postgres, check_sqlite, Report};

struct Fixture {
    /// The database file as the stopped server left it (WAL folded in).
    bytes: Vec<u8>,
    live: Report,
    stopped: Report,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// One server run serves every SQLite test: each gets its own copy of the file.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = TempDir::new();
        let server = Server::start(["--data-dir", dir.0.to_str().expect("utf-8 path")]);
        runtime().block_on(populate(&server));
        // While the server runs: the checker reads a snapshot beside the engine's writer.
        let live = check_sqlite(&dir.0).expect("check the live database");
        server.stop();
        let stopped = check_sqlite(&dir.0.join("tessera.db")).expect("check the stopped database");
        let conn = rusqlite::Connection::open(dir.0.join("tessera.db")).expect("open");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .expect("fold the WAL into the file");
        drop(conn);
        let bytes = std::fs::read(dir.0.join("tessera.db")).expect("read the database");
        Fixture { bytes, live, stopped }
    })
}

/// A private copy of the clean database, changed by `sql`, then checked.
fn corrupt(sql: &str) -> Report {
    let dir = TempDir::new();
    let path: PathBuf = dir.0.join("tessera.db");
    std::fs::write(&path, &fixture().bytes).expect("copy the database");
    let conn = rusqlite::Connection::open(&path).expect("open the copy");
    // Off so orphans can be written on purpose (the bundled SQLite turns them on).
    conn.execute_batch("PRAGMA foreign_keys = OFF").expect("foreign keys off");
    conn.execute_batch(sql).expect("corrupt");
    drop(conn);
    check_sqlite(&path).expect("check")
}

fn assert_fails(report: &Report, expected: &[&str]) {
    let mut failed = report.failed();
    failed.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(failed, want, "\n{report}");
    for name in expected {
        let c = report.get(name).expect("check present");
        assert!(!c.examples.is_empty() && c.examples.len() as u64 <= c.violations.min(10), "{c:?}");
    }
}

const GIFT: &str = "(SELECT id FROM vouchers WHERE code = 'GIFT')";

#[test]
fn clean_database_passes_live_and_stopped() {
    let f = fixture();
    assert!(f.live.is_ok(), "live:\n{}", f.live);
    assert!(f.stopped.is_ok(), "stopped:\n{}", f.stopped);
    assert_eq!(f.stopped.checks.len(), tessera_check::checks().len());
    let text = f.stopped.to_text();
    assert_eq!(text.lines().count(), f.stopped.checks.len());
    assert!(text.lines().all(|l| l.starts_with("PASS ") && l.ends_with(" 0")), "{text}");
    let prom = f.stopped.to_prometheus();
    assert!(
        prom.contains("tessera_check_violations{check=\"rollback_consistency\"} 0\n"),
        "{prom}"
    );
    assert!(prom.contains(&format!("tessera_check_last_run_timestamp_seconds {}\n", f.stopped.finished_at)));
}

#[test]
fn the_database_is_never_created_or_written() {
    let dir = TempDir::new();
    assert!(check_sqlite(&dir.0.join("missing.db")).is_err());
    assert!(check_sqlite(&dir.0).is_err(), "a data directory without tessera.db");
    assert!(!dir.0.join("missing.db").exists() && !dir.0.join("tessera.db").exists());
}

#[test]
fn redeemed_quantity_disagreeing_with_the_log() {
    let r = corrupt("UPDATE vouchers SET redeemed_quantity = redeemed_quantity + 1 WHERE code = 'QUOTA'");
    assert_fails(&r, &["voucher_redeemed_quantity"]);
    let example = &r.get("voucher_redeemed_quantity").expect("check").examples[0];
    assert!(
        example.contains("code=QUOTA") && example.contains("redeemed_quantity=3") && example.contains("succeeded_redemptions=2"),
        "{example}"
    );
}

#[test]
fn quantity_exceeded_unless_lowered_after_the_redemptions() {
    assert_fails(
        &corrupt("UPDATE vouchers SET quantity = 1 WHERE code = 'QUOTA'"),
        &["voucher_quantity_limit"],
    );
    // An update may lower the quantity below what was redeemed before it.
    let lowered = corrupt("UPDATE vouchers SET quantity = 1, updated_at = '2999-01-01T00:00:00.000Z' WHERE code = 'QUOTA'");
    assert!(lowered.is_ok(), "{lowered}");
}

#[test]
fn gift_balance_off_its_ledger() {
    assert_fails(
        &corrupt("UPDATE vouchers SET gift_balance = gift_balance + 1 WHERE code = 'GIFT'"),
        &["gift_balance_matches_ledger"],
    );
}

#[test]
fn ledger_entry_breaking_the_running_balance() {
    let sql = format!(
        "UPDATE gift_transactions SET balance_after = balance_after + 1 WHERE id = (SELECT MIN(id) FROM gift_transactions WHERE voucher_id = {GIFT})"
    );
    assert_fails(&corrupt(&sql), &["gift_ledger_chain"]);
}

#[test]
fn negative_balance_even_when_the_ledger_agrees() {
    // The schema's CHECK constraints forbid this; switched off to simulate a bug that
    // got past them (or a schema without them).
    let sql = format!(
        "PRAGMA ignore_check_constraints = ON;
         INSERT INTO gift_transactions (project_id, id, voucher_id, kind, amount, balance_after, created_at)
           SELECT project_id, 'vtx_zzzzzzzz', id, 'CREDITS_REMOVAL', -gift_balance - 5, -5, '2999-01-01T00:00:00.000Z' FROM vouchers WHERE id = {GIFT};
         UPDATE vouchers SET gift_balance = -5 WHERE id = {GIFT};"
    );
    assert_fails(&corrupt(&sql), &["gift_balance_not_negative"]);
}

#[test]
fn redeemed_amount_off_the_credits_taken() {
    assert_fails(
        &corrupt("UPDATE vouchers SET redeemed_amount = redeemed_amount + 1 WHERE code = 'GIFT'"),
        &["gift_redeemed_amount"],
    );
}

/// A second redemption in the once-per-customer campaign, with every counter and event
/// in step, so only the limit itself is broken.
#[test]
fn per_customer_rule_exceeded() {
    let sql = "
        CREATE TEMP TABLE target AS SELECT v.project_id, v.id, v.campaign_id FROM vouchers v JOIN campaigns c ON c.project_id = v.project_id
          AND c.id = v.campaign_id WHERE c.name = 'Once each' AND v.redeemed_quantity = 0;
        INSERT INTO redemptions (project_id, id, object, voucher_id, campaign_id, customer_id, result, status, created_at, data)
          SELECT t.project_id, 'r_forged', 'redemption', t.id, t.campaign_id, cu.id, 'SUCCESS', 'SUCCEEDED', '2999-01-01T00:00:00.000Z', '{}'
          FROM target t JOIN customers cu ON cu.project_id = t.project_id AND cu.source_id = 'cat' LIMIT 1;
        UPDATE vouchers SET redeemed_quantity = 1 WHERE id = (SELECT voucher_id FROM redemptions WHERE id = 'r_forged');
        INSERT INTO redemption_counts (project_id, scope, scope_id, slot, succeeded)
          SELECT project_id, CASE WHEN campaign_id IS NULL THEN 'voucher_id' ELSE 'campaign_id' END, COALESCE(campaign_id, voucher_id), 0, 1
          FROM redemptions WHERE id = 'r_forged' ON CONFLICT (project_id, scope, scope_id, slot) DO UPDATE SET succeeded = succeeded + 1;
        INSERT INTO outbox (id, project_id, event_type, resource_id, payload, created_at)
          SELECT 'evt_forged', project_id, 'redemption.succeeded', id, '{}', created_at FROM redemptions WHERE id = 'r_forged';";
    let r = corrupt(sql);
    assert_fails(&r, &["per_customer_limit"]);
    let example = &r.get("per_customer_limit").expect("check").examples[0];
    assert!(example.contains("allows 1") && example.contains("succeeded=2"), "{example}");
}

/// Two redemptions of a single-use code by one customer also exceed its quantity: both
/// checks say so.
#[test]
fn single_use_code_twice_for_one_customer() {
    let sql = "
        INSERT INTO redemptions (project_id, id, object, voucher_id, customer_id, result, status, created_at, data)
          SELECT project_id, 'r_forged', 'redemption', voucher_id, customer_id, 'SUCCESS', 'SUCCEEDED', '2999-01-01T00:00:00.000Z', '{}'
          FROM redemptions WHERE voucher_id = (SELECT id FROM vouchers WHERE code = 'ONCE') AND result = 'SUCCESS';
        UPDATE vouchers SET redeemed_quantity = 2 WHERE code = 'ONCE';
        INSERT INTO redemption_counts (project_id, scope, scope_id, slot, succeeded)
          SELECT project_id, CASE WHEN campaign_id IS NULL THEN 'voucher_id' ELSE 'campaign_id' END, COALESCE(campaign_id, voucher_id), 0, 1
          FROM redemptions WHERE id = 'r_forged' ON CONFLICT (project_id, scope, scope_id, slot) DO UPDATE SET succeeded = succeeded + 1;
        INSERT INTO outbox (id, project_id, event_type, resource_id, payload, created_at)
          SELECT 'evt_forged', project_id, 'redemption.succeeded', id, '{}', created_at FROM redemptions WHERE id = 'r_forged';";
    assert_fails(&corrupt(sql), &["per_customer_limit", "voucher_quantity_limit"]);
}

#[test]
fn redemption_count_off_the_redemptions() {
    let r = corrupt("UPDATE redemption_counts SET succeeded = succeeded + 1 WHERE rowid = (SELECT MIN(rowid) FROM redemption_counts)");
    assert_fails(&r, &["redemption_counts"]);
    let example = &r.get("redemption_counts").expect("check").examples[0];
    assert!(example.contains("succeeded redemptions"), "{example}");
    let missing = corrupt("DELETE FROM redemption_counts");
    assert_fails(&missing, &["redemption_counts"]);
}

#[test]
fn redemption_without_its_event() {
    let r = corrupt("DELETE FROM outbox WHERE resource_id = (SELECT MIN(id) FROM redemptions WHERE result = 'FAILURE')");
    assert_fails(&r, &["redemption_has_event"]);
    let twice = corrupt(
        "INSERT INTO outbox (id, project_id, event_type, resource_id, payload, created_at)
           SELECT 'evt_dup', project_id, event_type, resource_id, payload, created_at FROM outbox WHERE event_type = 'redemption.rollback.succeeded' LIMIT 1",
    );
    assert_fails(&twice, &["redemption_has_event"]);
}

#[test]
fn webhook_delivery_off_its_event_or_its_attempts() {
    let r = corrupt("UPDATE webhook_deliveries SET event_type = 'voucher.created' WHERE id = (SELECT MIN(id) FROM webhook_deliveries)");
    assert_fails(&r, &["webhook_delivery_consistency"]);
    let r = corrupt("UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE id = (SELECT MIN(id) FROM webhook_deliveries)");
    assert_fails(&r, &["webhook_delivery_consistency"]);
    let r = corrupt("UPDATE webhook_deliveries SET status = 'lost' WHERE id = (SELECT MIN(id) FROM webhook_deliveries)");
    assert_fails(&r, &["webhook_delivery_consistency"]);
    let r = corrupt("UPDATE webhook_deliveries SET target_url = NULL WHERE id = (SELECT MIN(id) FROM webhook_deliveries)");
    assert_fails(&r, &["webhook_delivery_consistency"]);
}

#[test]
fn rolled_back_redemption_without_its_rollback() {
    let r = corrupt(&format!(
        "DELETE FROM redemptions WHERE object = 'redemption_rollback' AND voucher_id = {GIFT}"
    ));
    assert_fails(&r, &["rollback_consistency"]);
    assert_eq!(
        r.get("rollback_consistency").expect("check").violations,
        2,
        "the single and the stacked rollback\n{r}"
    );
}

#[test]
fn idempotency_record_done_without_response() {
    assert_fails(
        &corrupt("UPDATE idempotency SET body = NULL WHERE state = 'done'"),
        &["idempotency_single_effect"],
    );
}

#[test]
fn row_outside_any_project() {
    let r = corrupt(
        "INSERT INTO customers (project_id, id, created_at, data) VALUES ('proj_missing', 'cust_orphan', '2024-01-01T00:00:00.000Z', '{}')",
    );
    assert_fails(&r, &["rows_have_project"]);
    assert_eq!(
        r.get("rows_have_project").expect("check").examples,
        vec!["table_name=customers project_id=proj_missing row_id=cust_orphan"]
    );
}

#[test]
fn campaign_count_off_its_vouchers() {
    assert_fails(
        &corrupt("UPDATE campaigns SET vouchers_count = vouchers_count + 1"),
        &["campaign_voucher_count"],
    );
}

#[test]
fn postgres_clean_then_broken() {
    let (schema, url) = pg_fresh_schema();
    let server = Server::start(["--database-url", &url]);
    runtime().block_on(populate(&server));
    let live = check_postgres(&url).expect("check the live database");
    assert!(live.is_ok(), "{live}");
    server.stop();

    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    c.batch_execute("UPDATE vouchers SET redeemed_quantity = redeemed_quantity + 1 WHERE code = 'QUOTA'")
        .expect("corrupt");
    assert_fails(&check_postgres(&url).expect("check"), &["voucher_redeemed_quantity"]);
    c.batch_execute(
        "UPDATE vouchers SET redeemed_quantity = redeemed_quantity - 1 WHERE code = 'QUOTA';
         DELETE FROM outbox WHERE resource_id IN (SELECT id FROM redemptions WHERE object = 'redemption_rollback')",
    )
    .expect("corrupt differently");
    let r = check_postgres(&url).expect("check");
    assert_fails(&r, &["redemption_has_event"]);
    assert_eq!(
        r.get("redemption_has_event").expect("check").violations,
        4,
        "three rollbacks and one parent rollback\n{r}"
    );
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).expect("drop schema");
}
