//! SQLite picks plans without statistics (Tessera never runs ANALYZE), so a statement
//! that reads one row today can read a whole project tomorrow after a harmless-looking
//! edit to its WHERE clause or to an index. These tests pin the plans of statements
//! whose bad plan was found the hard way: each must search the index named, with the
//! columns named, on a database with the real schema.

use crate::conn::Val;
use crate::ops::{activity, customers, events, publications, redemptions, rules, segments};
use crate::Store;

pub(crate) async fn plan(store: &Store, sql: &str, params: usize) -> String {
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    store
        .read(move |c| {
            let args: Vec<Val> = (0..params).map(|i| Val::Text(format!("x{i}"))).collect();
            let rows = c.query(&sql, &args)?;
            rows.iter().map(|r| r.text(3)).collect::<crate::Result<Vec<_>>>()
        })
        .await
        .map(|lines| lines.join("\n"))
        .unwrap_or_else(|e| panic!("cannot explain: {e}"))
}

async fn plan_with(store: &Store, sql: &str, params: Vec<Val>) -> String {
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    store
        .read(move |c| {
            let rows = c.query(&sql, &params)?;
            rows.iter().map(|r| r.text(3)).collect::<crate::Result<Vec<_>>>()
        })
        .await
        .map(|lines| lines.join("\n"))
        .unwrap_or_else(|e| panic!("cannot explain: {e}"))
}

pub(crate) fn store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tessera-plans-{}", tessera_domain::ids::new_id("t")));
    let store = Store::open_sqlite(&dir).unwrap_or_else(|e| panic!("open: {e}"));
    (store, dir)
}

fn assert_uses(plan: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(plan.contains(w), "expected `{w}` in the plan:\n{plan}");
    }
    for line in plan.lines() {
        assert!(
            !line.starts_with("SCAN webhook") && !line.starts_with("SCAN redemptions"),
            "a scan in:\n{plan}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_cap_reads_its_count_not_its_redemptions() {
    let (s, dir) = store();
    let count = plan(&s, redemptions::CAMPAIGN_COUNT_SQL, 3).await;
    assert_uses(
        &count,
        &["redemption_counts USING INDEX sqlite_autoindex_redemption_counts_1 (project_id=? AND scope=? AND scope_id=?)"],
    );
    assert!(!count.contains("redemptions "), "{count}");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_find_a_stack_by_its_parent() {
    let (s, dir) = store();
    let sum = plan(&s, redemptions::ROLLED_BACK_DISCOUNT_SQL, 2).await;
    assert_uses(
        &sum,
        &[
            "redemptions USING INDEX sqlite_autoindex_redemptions_1 (project_id=? AND id=?)",
            "redemptions USING INDEX redemptions_parent (project_id=? AND parent_id=?)",
        ],
    );
    let remaining = plan(&s, redemptions::ORDER_REMAINING_SQL, 2).await;
    assert_uses(
        &remaining,
        &["redemptions USING INDEX redemptions_order (project_id=? AND order_id=?)"],
    );
    let children = plan(&s, redemptions::STACK_CHILDREN_SQL, 2).await;
    assert_uses(
        &children,
        &["redemptions USING INDEX redemptions_parent (project_id=? AND parent_id=?)"],
    );
    assert!(!children.contains("TEMP B-TREE"), "the index gives id order:\n{children}");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_claims_read_only_what_is_due() {
    let (s, dir) = store();
    let due = plan(&s, events::DUE_WEBHOOKS_SQL, 1).await;
    assert_uses(
        &due,
        &[
            "webhook_deliveries_due (project_id=? AND webhook_id=? AND status=? AND next_attempt_at<?)",
            "webhook_deliveries_due (project_id=? AND webhook_id=? AND status=?)",
        ],
    );
    let run_out = plan(&s, &events::claim_sql(events::CLAIM_RUN_OUT, ""), 5).await;
    assert_uses(&run_out, &["webhook_deliveries_due (project_id=? AND webhook_id=? AND status=?)"]);
    let pending = plan(&s, &events::claim_sql(events::CLAIM_DUE, ""), 5).await;
    assert_uses(
        &pending,
        &["webhook_deliveries_due (project_id=? AND webhook_id=? AND status=? AND next_attempt_at<?)"],
    );
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_lookups_take_one_customer_or_object() {
    let (s, dir) = store();
    let rules = plan(&s, rules::RULES_FOR_SQL, 2).await;
    assert_uses(
        &rules,
        &["rule_assignments USING COVERING INDEX rule_assignments_object (project_id=? AND related_object_id=?)"],
    );
    let segments = plan(&s, segments::MEMBERSHIPS_SQL, 2).await;
    assert_uses(
        &segments,
        &["segment_members USING COVERING INDEX segment_members_customer (project_id=? AND customer_id=?)"],
    );
    assert!(!segments.contains("TEMP B-TREE"), "{segments}");
    let last = plan(&s, customers::LAST_ORDER_SQL, 2).await;
    assert_uses(&last, &["orders USING INDEX orders_customer (project_id=? AND customer_id=?)"]);
    assert!(!last.contains("TEMP B-TREE"), "{last}");
    let first = plan(&s, publications::JOIN_ONCE_SQL, 3).await;
    assert_uses(
        &first,
        &["publications USING INDEX publications_customer (project_id=? AND customer_id=? AND campaign_id=?)"],
    );
    assert!(!first.contains("TEMP B-TREE"), "{first}");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_activity_reads_the_customers_rows() {
    let (s, dir) = store();
    let base = activity::ActivityQuery {
        limit: 10,
        ascending: false,
        starting_after_id: None,
        starting_after: None,
        since: None,
        until: None,
        campaign_id: None,
        campaign_type: None,
        category: None,
        kind: None,
        with_total: false,
    };
    let dated = activity::ActivityQuery {
        since: Some("2026-01-01T00:00:00.000Z".into()),
        until: Some("2026-12-01T00:00:00.000Z".into()),
        ascending: true,
        ..base.clone()
    };
    let cursor = ("2026-06-01T00:00:00.000Z".to_string(), "r_1".to_string());
    for (table, index) in [
        ("publications", "publications_customer (project_id=? AND customer_id=?)"),
        ("redemptions", "redemptions_customer_campaign (project_id=? AND customer_id=?)"),
    ] {
        let source = activity::SOURCES.iter().find(|x| x.table == table).expect("source");
        for (q, cur) in [(&base, None), (&dated, None), (&base, Some(&cursor))] {
            let (sql, params) = source.page_sql("p", "c", q, cur);
            let found = plan_with(&s, &sql, params).await;
            assert_uses(&found, &[index]);
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
