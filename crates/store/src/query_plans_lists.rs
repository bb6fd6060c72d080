//! Plans of the management listings with a selective filter (see `query_plans.rs`).
//! Without statistics SQLite prefers the index that gives the ORDER BY and walks the
//! whole project through it, filtering row by row; a customer's or a segment's few rows
//! must come from the filter's own index instead.

use crate::conn::Val;
use crate::ops::{customers, docs, redemptions, vouchers};
use crate::query_plans::{plan, store};
use crate::Store;
use std::collections::BTreeMap;
use tessera_domain::list::{ListQuery, SortField};

fn query(sort: SortField, descending: bool, filters: &[(&str, &str)]) -> ListQuery {
    ListQuery {
        limit: 10,
        page: 2,
        sort,
        descending,
        sort_explicit: true,
        created_before: None,
        created_after: None,
        updated_before: None,
        updated_after: None,
        starting_after: None,
        filters: filters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Every variant of a query: both directions, each alone and with all its date bounds.
fn variants(sorts: &[SortField], filters: &[(&str, &str)]) -> Vec<ListQuery> {
    let mut out = Vec::new();
    for &sort in sorts {
        for descending in [true, false] {
            let plain = query(sort, descending, filters);
            let mut bounded = plain.clone();
            bounded.created_before = Some("2030-01-01T00:00:00.000Z".into());
            bounded.created_after = Some("2020-01-01T00:00:00.000Z".into());
            bounded.updated_before = Some("2030-01-01T00:00:00.000Z".into());
            bounded.updated_after = Some("2020-01-01T00:00:00.000Z".into());
            let mut cursor = plain.clone();
            cursor.starting_after = Some("2025-01-01T00:00:00.000Z".into());
            out.extend([plain, bounded, cursor]);
        }
    }
    out
}

/// Asserts both statements search `wanted` and no time index of the table.
async fn assert_lists(s: &Store, (count, page, params): (String, String, Vec<Val>), wanted: &str, time_indexes: &[&str]) {
    for (sql, n) in [(count, params.len() - 2), (page, params.len())] {
        let p = plan(s, &sql, n).await;
        assert!(p.contains(wanted), "expected `{wanted}` for\n{sql}\nin the plan:\n{p}");
        for bad in time_indexes {
            assert!(!p.contains(bad), "`{bad}` walks the project for\n{sql}\nin the plan:\n{p}");
        }
        assert!(!p.lines().any(|l| l.starts_with("SCAN")), "a scan for\n{sql}\nin:\n{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redemptions_of_a_customer_or_a_parent_read_only_theirs() {
    let (s, dir) = store();
    let cases: [(&[(&'static str, &str)], &str); 4] = [
        (&[("customer_id", "c")], "(project_id=? AND customer_id=?)"),
        (&[("result", "SUCCESS"), ("customer_id", "c")], "(project_id=? AND customer_id=?)"),
        (&[("parent_id", "r")], "redemptions_parent (project_id=? AND parent_id=?)"),
        (
            &[("result", "SUCCESS"), ("parent_id", "r")],
            "redemptions_parent (project_id=? AND parent_id=?)",
        ),
    ];
    for (eq, wanted) in cases {
        for q in variants(&[SortField::CreatedAt], &[]) {
            let eq = eq.iter().map(|(col, v)| (*col, Val::Text(v.to_string()))).collect();
            let sql = redemptions::list_redemptions_sql("p", eq, &q, true);
            assert_lists(&s, sql, wanted, &["redemptions_created"]).await;
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_by_email_city_or_segment_read_only_those() {
    let (s, dir) = store();
    // As `list_customers` passes them.
    let filters = [("email", "email"), ("name", "name"), ("city", "city"), ("source_id", "source_id")];
    let segment = "id IN (SELECT customer_id FROM segment_members WHERE project_id = $1 AND segment_id = ?)";
    let attr = "id IN (SELECT customer_id FROM customer_attrs WHERE project_id = $1 AND name = ? AND value = ?)";
    let sorts = [SortField::CreatedAt, SortField::UpdatedAt, SortField::SourceId];
    let time = ["customers_created", "customers_updated"];
    let by_filter: [(&str, &str); 3] = [
        ("email", "customers_email (project_id=? AND email=?)"),
        ("name", "customers_name (project_id=? AND name=?)"),
        ("city", "customers_city (project_id=? AND city=?)"),
    ];
    for (name, wanted) in by_filter {
        for q in variants(&sorts, &[(name, "x")]) {
            let sql = docs::list_sql(&customers::TABLE, "p", &q, &filters, &[], &[], true);
            assert_lists(&s, sql, wanted, &time).await;
        }
    }
    let extras: [Vec<(&str, Vec<Val>)>; 2] = [
        vec![(segment, vec![Val::Text("seg".into())])],
        vec![(attr, vec![Val::Text("metadata.region".into()), Val::Text("EU".into())])],
    ];
    for extra in &extras {
        for q in variants(&sorts, &[]) {
            let sql = docs::list_sql(&customers::TABLE, "p", &q, &filters, &[], extra, true);
            assert_lists(&s, sql, "sqlite_autoindex_customers_1 (project_id=? AND id=?)", &time).await;
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_of_a_holder_read_only_theirs() {
    let (s, dir) = store();
    let walks = ["sqlite_autoindex_vouchers_1 (project_id=?)", "vouchers_campaign (project_id=?)"];
    let cases: [(&[(&'static str, &str)], &str); 3] = [
        (&[("holder_id", "c")], "vouchers_holder (project_id=? AND holder_id=?)"),
        (
            &[("campaign_id", "k"), ("holder_id", "c")],
            "vouchers_holder (project_id=? AND holder_id=?)",
        ),
        (
            &[("code_key", "K"), ("holder_id", "c")],
            "vouchers_code (project_id=? AND code_key=?)",
        ),
    ];
    for (eq, wanted) in cases {
        for q in variants(&[SortField::CreatedAt, SortField::UpdatedAt], &[]) {
            let eq = eq.iter().map(|(col, v)| (*col, Val::Text(v.to_string()))).collect();
            let sql = vouchers::list_vouchers_sql("p", eq, &q, true);
            assert_lists(&s, sql, wanted, &walks).await;
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
