//! No body crashes or hangs the checkout path: generated request bodies, from random JSON
//! to near-valid carts with hostile values, go through the same parsing, validation,
//! evaluation and redemption code the API runs, on a real SQLite store.

use proptest::prelude::*;
use serde_json::{json, Value};
use tessera_api::json::parse_body;
use tessera_domain::project::ProjectInput;
use tessera_domain::redemption::CheckoutRequest;
use tessera_store::ops::org::Management;
use tessera_store::{KeyKind, Store, StoreError, Tenant};

fn setup() -> (tokio::runtime::Runtime, Store, Tenant, std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-{}", &tessera_domain::secrets::new_token()[..12]));
    let store = Store::open_sqlite(&dir).expect("store");
    let tenant = rt.block_on(async {
        let created = store.create_project(&Management::local_operator(), ProjectInput { name: Some("fuzz".into()), ..Default::default() }).await.expect("project");
        let t = store
            .authenticate_key(created.server_key.key.app_id.clone(), created.server_key.app_token.clone(), KeyKind::Server)
            .await
            .expect("auth")
            .expect("tenant");
        for (code, body) in [
            ("F-PCT", json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "PERCENT", "percent_off": 15, "amount_limit": 500}})),
            ("F-AMT", json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "AMOUNT", "amount_off": 300, "effect": "APPLY_TO_ITEMS_PROPORTIONALLY"}, "redemption": {"quantity": 3}})),
            ("F-UNIT", json!({"type": "DISCOUNT_VOUCHER", "discount": {"type": "UNIT", "unit_off": 1, "unit_type": "p1"}})),
            ("F-GIFT", json!({"type": "GIFT_VOUCHER", "gift": {"amount": 2000}})),
        ] {
            store.create_voucher(&t, Some(code.into()), serde_json::from_value(body).expect("voucher")).await.expect("create");
        }
        let rule: tessera_store::ops::rules::RuleInput = serde_json::from_value(json!({
            "rules": {"1": {"name": "order.amount", "conditions": {"$more_than": [100]}}, "2": {"name": "product.id", "conditions": {"$in": ["p1", "p2"]}}, "logic": "1 or 2"}
        }))
        .expect("rule");
        let rule = store.create_rule(&t, rule).await.expect("rule");
        store.assign_rule(&t, rule["id"].as_str().expect("id").into(), "voucher".into(), "F-PCT".into()).await.expect("assign");
        t
    });
    (rt, store, tenant, dir)
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "[A-Za-z0-9_ -]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("F-PCT"),
            Just("F-AMT"),
            Just("F-UNIT"),
            Just("F-GIFT"),
            Just("p1"),
            Just("voucher"),
            Just("LOCK")
        ]
        .prop_map(Value::from),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("redeemables".to_string()),
                    Just("order".to_string()),
                    Just("items".to_string()),
                    Just("amount".to_string()),
                    Just("quantity".to_string()),
                    Just("price".to_string()),
                    Just("object".to_string()),
                    Just("id".to_string()),
                    Just("gift".to_string()),
                    Just("credits".to_string()),
                    Just("customer".to_string()),
                    Just("source_id".to_string()),
                    Just("session".to_string()),
                    Just("ttl".to_string()),
                    Just("ttl_unit".to_string()),
                    Just("metadata".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like real carts, with every value drawn from hostile ranges.
fn arb_cart() -> impl Strategy<Value = Value> {
    // Mostly plausible values, sometimes hostile ones, so most cases reach evaluation.
    let small = || prop_oneof![30 => 0i64..20, 1 => any::<i64>()];
    let money = || prop_oneof![30 => 0i64..100_000, 1 => any::<i64>()];
    let item = (
        prop_oneof![Just("p1"), Just("p2"), Just("p3")],
        small(),
        money(),
        prop::option::of(money()),
    )
        .prop_map(|(p, q, price, amount)| json!({"product_id": p, "quantity": q, "price": price, "amount": amount}));
    let redeemables = (
        prop::sample::subsequence(vec!["F-PCT", "F-AMT", "F-UNIT", "F-GIFT", "NOPE"], 1..4),
        prop::option::of(money()),
    )
        .prop_map(|(ids, credits)| {
            ids.into_iter()
                .map(|id| match credits {
                    Some(c) if id == "F-GIFT" => json!({"object": "voucher", "id": id, "gift": {"credits": c}}),
                    _ => json!({"object": "voucher", "id": id}),
                })
                .collect::<Vec<_>>()
        });
    (
        redeemables,
        prop::collection::vec(item, 0..12),
        prop::option::of(money()),
        prop::option::of("[a-z]{1,6}"),
        any::<bool>(),
    )
        .prop_map(|(r, items, amount, customer, session)| {
            let mut body = json!({"redeemables": r, "order": {"items": items, "amount": amount}});
            if let Some(c) = customer {
                body["customer"] = json!({"source_id": c});
            }
            if session {
                body["session"] = json!({"type": "LOCK", "ttl": 1, "ttl_unit": "MINUTES"});
            }
            body
        })
}

fn acceptable(e: &StoreError) -> bool {
    // Every failure a body can cause is a client error or a refused race, never an
    // internal error or a panic.
    matches!(
        e,
        StoreError::Invalid(_) | StoreError::NotFound { .. } | StoreError::Conflict { .. }
    )
}

thread_local! {
    static REACHED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn checkout_never_panics_or_errors_internally(body in prop_oneof![arb_json(), arb_cart()]) {
        thread_local! {
            static ENV: (tokio::runtime::Runtime, Store, Tenant, std::path::PathBuf) = setup();
        }
        ENV.with(|(rt, store, tenant, _)| {
            let bytes = serde_json::to_vec(&body).expect("serializable");
            let Ok(req) = parse_body::<CheckoutRequest>(&bytes) else { return Ok(()) };
            let started = std::time::Instant::now();
            let validated = rt.block_on(store.validate_checkout(tenant, req.clone()));
            if validated.is_ok() {
                REACHED.with(|r| r.set(r.get() + 1));
            }
            if let Err(e) = &validated {
                prop_assert!(acceptable(e), "validation failed internally: {e:?} for {body}");
            }
            let redeemed = rt.block_on(store.redeem(tenant, req));
            if let Err(e) = &redeemed {
                prop_assert!(acceptable(e), "redemption failed internally: {e:?} for {body}");
            }
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?} for {body}", started.elapsed());
            Ok(())
        })?;
    }
}

/// The generators must reach evaluation, or the property above proves little.
#[test]
fn generated_carts_reach_evaluation() {
    use proptest::strategy::ValueTree;
    let (rt, store, tenant, _) = setup();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut evaluated = 0;
    for _ in 0..200 {
        let body = arb_cart().new_tree(&mut runner).expect("tree").current();
        let Ok(req) = parse_body::<CheckoutRequest>(&serde_json::to_vec(&body).expect("json")) else {
            continue;
        };
        if rt.block_on(store.validate_checkout(&tenant, req)).is_ok() {
            evaluated += 1;
        }
    }
    assert!(evaluated > 100, "only {evaluated} of 200 generated carts were evaluated");
}
