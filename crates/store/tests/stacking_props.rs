//! Property tests of the checkout with promotion tiers: the order of cart lines, and
//! (under CATEGORY_HIERARCHY) the order of redeemables, never changes the result, and the
//! result's money always adds up.

use proptest::prelude::*;
use serde_json::{json, Value};
use tessera_domain::project::ProjectInput;
use tessera_domain::redemption::CheckoutRequest;
use tessera_store::{KeyKind, Store, Tenant};

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: Store,
    /// Stacking rules CATEGORY_HIERARCHY: the redeemables' order is not an input.
    tenant: Tenant,
    tiers: Vec<String>,
    /// The defaults (REQUESTED_ORDER): the redeemables' order is an input.
    requested: Tenant,
    requested_tiers: Vec<String>,
    _dir: Dir,
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture() -> Fixture {
    let dir = Dir(std::env::temp_dir().join(format!("tessera-props-{}", &tessera_domain::secrets::new_token()[..16])));
    std::fs::create_dir_all(&dir.0).expect("dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Store::open_sqlite(&dir.0).expect("open");
    rt.block_on(async {
        store
            .init_organization(Some("m".into()), Some("secret-token".into()))
            .await
            .expect("org");
    });
    let (tenant, tiers) = project(&rt, &store, Some("CATEGORY_HIERARCHY"));
    let (requested, requested_tiers) = project(&rt, &store, None);
    Fixture {
        rt,
        store,
        tenant,
        tiers,
        requested,
        requested_tiers,
        _dir: dir,
    }
}

fn project(rt: &tokio::runtime::Runtime, store: &Store, sorting: Option<&str>) -> (Tenant, Vec<String>) {
    rt.block_on(async {
        let m = store.authenticate_management("m".into(), "secret-token".into()).await.expect("auth").expect("mgmt");
        let created = store
            .create_project(&m, ProjectInput { name: Some("Props".into()), ..Default::default() })
            .await
            .expect("project");
        let t = store
            .authenticate_key(created.server_key.key.app_id.clone(), created.server_key.app_token.clone(), KeyKind::Server)
            .await
            .expect("auth")
            .expect("key");
        let shoes = json!({"included": [{"object": "product", "id": "b"}]});
        let rule = store
            .create_rule(&t, serde_json::from_value(json!({"name": "b only", "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [0]}}}, "applicable_to": shoes})).expect("rule"))
            .await
            .expect("rule");
        let rid = rule["id"].as_str().expect("rule id").to_string();
        let input = serde_json::from_value(json!({"name": "P", "campaign_type": "PROMOTION", "promotion": {"tiers": [
            {"name": "pct", "action": {"discount": {"type": "PERCENT", "percent_off": 15}}},
            {"name": "amount", "action": {"discount": {"type": "AMOUNT", "amount_off": 1234}}},
            {"name": "items", "action": {"discount": {"type": "PERCENT", "percent_off": 30, "effect": "APPLY_TO_ITEMS"}}, "validation_rules": [rid]},
            {"name": "prop", "action": {"discount": {"type": "AMOUNT", "amount_off": 999, "effect": "APPLY_TO_ITEMS_PROPORTIONALLY"}}},
            {"name": "capped", "action": {"discount": {"type": "PERCENT", "percent_off": 50, "amount_limit": 700}}},
        ]}}))
        .expect("campaign");
        let camp = store.create_campaign(&t, input).await.expect("campaign");
        let tiers = camp.campaign.promotion.as_ref().expect("promotion")["tiers"]
            .as_array()
            .expect("tiers")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect();
        let Some(sorting) = sorting else { return (t, tiers) };
        // Sorting by hierarchy makes the application order independent of the request's.
        let rules = json!({"redeemables_sorting_rule": sorting, "applicable_redeemables_limit": 5, "redeemables_limit": 30});
        let p = t.project_id().to_string();
        store
            .write(move |c| {
                let r: tessera_domain::stacking::StackingRulesInput = serde_json::from_value(rules).map_err(|e| tessera_store::StoreError::Internal(e.to_string()))?;
                let r = r.apply(&Default::default())?;
                c.execute(
                    "INSERT INTO stacking_rules (project_id, id, created_at, data) VALUES ($1, 'stk_props', '2026-01-01T00:00:00.000Z', $2)",
                    &[p.clone().into(), serde_json::to_string(&r).map_err(|e| tessera_store::StoreError::Internal(e.to_string()))?.into()],
                )?;
                tessera_store::ops::promotions::bump(c, &p, tessera_store::ops::promotions::PROMOTIONS)
            })
            .await
            .expect("stacking rules");
        (t, tiers)
    })
}

fn validate(f: &Fixture, lines: &[(String, i64, i64)], tiers: &[usize]) -> Value {
    validate_in(f, &f.tenant, &f.tiers, lines, tiers)
}

fn validate_in(f: &Fixture, t: &Tenant, ids: &[String], lines: &[(String, i64, i64)], tiers: &[usize]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(p, price, q)| json!({"product_id": p, "price": price, "quantity": q}))
        .collect();
    let redeemables: Vec<Value> = tiers.iter().map(|i| json!({"object": "promotion_tier", "id": ids[*i]})).collect();
    let req: CheckoutRequest = serde_json::from_value(json!({"redeemables": redeemables, "order": {"items": items}})).expect("request");
    f.rt.block_on(f.store.validate_checkout(t, req)).expect("validate")
}

fn summary(v: &Value) -> (Value, Vec<(String, i64, i64)>) {
    let o = &v["order"];
    let mut lines: Vec<(String, i64, i64)> = o["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        format!("{}|{}|{}", i["product_id"], i["price"], i["quantity"]),
                        i["discount_amount"].as_i64().unwrap_or(0),
                        i["subtotal_amount"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    let mut applied: Vec<String> = v["redeemables"]
        .as_array()
        .map(|a| a.iter().map(|r| r["id"].to_string()).collect())
        .unwrap_or_default();
    applied.sort();
    (
        json!({"amount": o["amount"], "discount": o["discount_amount"], "items": o["items_discount_amount"], "total": o["total_amount"], "applied": applied, "valid": v["valid"]}),
        lines,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn shuffles_never_change_totals_and_money_adds_up(
        lines in prop::collection::vec(("[abc]", 1i64..20_000, 1i64..4), 1..6),
        picks in prop::collection::btree_set(0usize..5, 1..5),
        seed in any::<u64>(),
    ) {
        let f = FIXTURE.with(|f| f.clone());
        let picks: Vec<usize> = picks.into_iter().collect();
        let base = validate(&f, &lines, &picks);
        let (s1, l1) = summary(&base);
        // Shuffle lines and redeemables with the seed.
        let mut rng = seed;
        let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let mut lines2 = lines.clone();
        for i in (1..lines2.len()).rev() { let j = (next() % (i as u64 + 1)) as usize; lines2.swap(i, j); }
        let mut picks2 = picks.clone();
        for i in (1..picks2.len()).rev() { let j = (next() % (i as u64 + 1)) as usize; picks2.swap(i, j); }
        let (s2, l2) = summary(&validate(&f, &lines2, &picks2));
        prop_assert_eq!(&s1, &s2);
        prop_assert_eq!(&l1, &l2);
        // Under REQUESTED_ORDER the redeemables' order is an input: shuffle only lines.
        let (r1, rl1) = summary(&validate_in(&f, &f.requested, &f.requested_tiers, &lines, &picks));
        let (r2, rl2) = summary(&validate_in(&f, &f.requested, &f.requested_tiers, &lines2, &picks));
        prop_assert_eq!(&r1, &r2);
        prop_assert_eq!(&rl1, &rl2);
        if base["valid"] == true {
            let o = &base["order"];
            let items_sum: i64 = l1.iter().map(|(_, d, _)| d).sum();
            prop_assert_eq!(items_sum, o["items_discount_amount"].as_i64().unwrap_or(-1), "per-line discounts add up to the items discount");
            prop_assert!(l1.iter().all(|(_, _, sub)| *sub >= 0), "no line below zero");
            let total = o["total_discount_amount"].as_i64().unwrap_or(-1);
            prop_assert_eq!(total, o["discount_amount"].as_i64().unwrap_or(0) + o["items_discount_amount"].as_i64().unwrap_or(0));
            prop_assert!(o["total_amount"].as_i64().unwrap_or(-1) >= 0);
            let per_redeemable: i64 = base["redeemables"].as_array().map(|a| a.len()).unwrap_or(0) as i64;
            prop_assert!(per_redeemable <= 5);
        }
    }
}

thread_local! {
    static FIXTURE: std::rc::Rc<Fixture> = std::rc::Rc::new(fixture());
}
