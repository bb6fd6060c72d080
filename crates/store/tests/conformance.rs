//! The storage conformance suite: every test runs unchanged on SQLite and on PostgreSQL.
//! PostgreSQL tests need the server at TESSERA_TEST_PG_URL (default: the local service)
//! and fail loudly when it is missing; each test gets its own schema.

use std::collections::BTreeMap;
use tessera_domain::customer::CustomerInput;
use tessera_domain::list;
use tessera_domain::order::OrderInput;
use tessera_domain::product::{ProductInput, SkuInput};
use tessera_domain::project::ProjectInput;
use tessera_store::ops::events::Room;
use tessera_store::{IdemBegin, KeyKind, Store, StoreError, Tenant};

fn pg_base_url() -> String {
    std::env::var("TESSERA_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema per test so tests run in parallel without seeing each other.
/// Runs blocking driver calls off the async runtime.
fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("blocking helper panicked")
}

fn pg_admin() -> ::postgres::Client {
    ::postgres::Client::connect(&pg_base_url(), ::postgres::NoTls)
        .expect("PostgreSQL must be running for the conformance suite (set TESSERA_TEST_PG_URL)")
}

fn pg_url_with_fresh_schema() -> (String, String) {
    let schema = format!("t_{}", &tessera_domain::secrets::new_token()[..16]);
    let s2 = schema.clone();
    blocking(move || pg_admin().batch_execute(&format!("CREATE SCHEMA {s2}")).expect("create schema"));
    let sep = if pg_base_url().contains('?') { '&' } else { '?' };
    (format!("{}{sep}options=-c%20search_path%3D{schema}", pg_base_url()), schema)
}

pub enum Engine {
    Sqlite(tempdir::Dir),
    Postgres(String),
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("tessera-test-{}", &tessera_domain::secrets::new_token()[..16]));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct Ctx {
    pub store: Store,
    pub engine: Engine,
}

impl Ctx {
    fn sqlite() -> Self {
        let dir = tempdir::Dir::new();
        let store = Store::open_sqlite(&dir.0).expect("open sqlite");
        Ctx {
            store,
            engine: Engine::Sqlite(dir),
        }
    }

    fn postgres() -> Self {
        let (url, schema) = pg_url_with_fresh_schema();
        let store = Store::open_postgres(&url).expect("open postgres");
        Ctx {
            store,
            engine: Engine::Postgres(schema),
        }
    }

    async fn tenant(&self) -> (Tenant, tessera_store::ops::org::CreatedProject) {
        let m = self.management().await;
        let created = self
            .store
            .create_project(
                &m,
                ProjectInput {
                    name: Some("Shop".into()),
                    ..Default::default()
                },
            )
            .await
            .expect("create project");
        let t = self
            .store
            .authenticate_key(
                created.server_key.key.app_id.clone(),
                created.server_key.app_token.clone(),
                KeyKind::Server,
            )
            .await
            .expect("auth")
            .expect("valid key");
        (t, created)
    }

    async fn management(&self) -> tessera_store::ops::org::Management {
        self.store
            .init_organization(Some("mgmt".into()), Some("secret-token".into()))
            .await
            .expect("init org");
        self.store
            .authenticate_management("mgmt".into(), "secret-token".into())
            .await
            .expect("auth")
            .expect("management credentials")
    }
}

fn q(pairs: &[(&str, &str)], spec: &list::ListSpec) -> list::ListQuery {
    let m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    list::parse(spec, &m).expect("valid query")
}

fn customer(source_id: &str, name: &str, email: &str) -> CustomerInput {
    serde_json::from_value(serde_json::json!({"source_id": source_id, "name": name, "email": email, "address": {"city": "Berlin"}}))
        .expect("valid")
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Ctx::sqlite()).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::Ctx::postgres()).await }
            )*
        }
    };
}

conformance!(
    organization_credentials,
    keys_authenticate_and_revoke,
    customers_upsert_get_update_delete,
    customers_list_filters_and_pages,
    tenants_are_isolated,
    products_and_skus,
    orders_with_customers,
    idempotency_records,
    concurrent_writes_are_all_durable,
    failing_write_does_not_spoil_its_group,
    no_plaintext_secrets_at_rest,
    event_relay_and_webhook_delivery_lifecycle,
    categories_rules_and_stacks,
    exports_chunk_resume_and_isolate,
    deletion_between_relay_read_and_fan_out,
    fan_out_claims_what_the_sender_has_room_for,
);

/// The fan-out claims, in its own write, as many new deliveries as the sender has room
/// for (per webhook, per project, in all) and leaves the rest due in the table; a claim
/// round then takes only those, and an attempt settles a fan-out's claim like any other.
async fn fan_out_claims_what_the_sender_has_room_for(ctx: Ctx) {
    use tessera_store::ops::events::AttemptResult;
    let s = &ctx.store;
    let (_t, created) = ctx.tenant().await;
    let p = created.project.id.clone();
    let mut hooks = Vec::new();
    for url in ["https://a.example.com/hook", "https://b.example.com/hook"] {
        let h = s
            .create_webhook(p.clone(), url.into(), vec!["redemption.succeeded".into()], true)
            .await
            .expect("webhook");
        hooks.push(h.id);
    }
    let (a, b) = (hooks[0].clone(), hooks[1].clone());
    let (before, known) = s.outbox_batch("webhooks", 1000).await.expect("batch");
    let pp = p.clone();
    s.write_unmarked(move |c| {
        for i in 0..3 {
            let id = format!("r_{i}");
            tessera_store::ops::outbox::emit(c, &pp, "redemption.succeeded", &id, &serde_json::json!({"id": id}))?;
        }
        Ok(())
    })
    .await
    .expect("emit");
    // The sender reads only the events' heads; the fan-out reads payloads itself.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = s.outbox_heads("webhooks", 1000).await.expect("batch").1;
        if events.len() == known.len() + 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), known.len() + 3);
    assert!(events.iter().all(|e| e.payload.is_empty()));
    // Webhook A has room for one, B for any; the project for four in all.
    let room = Room {
        total: 10,
        webhooks: [(a.clone(), 1)].into_iter().collect(),
        project_default: 4,
        webhook_default: 10,
        lease_secs: 60,
        ..Room::default()
    };
    let out = s.fan_out_webhooks("webhooks", before, events, room).await.expect("fan out");
    assert_eq!(out.made, 6, "three events, two webhooks");
    let count = |id: &str| out.claimed.iter().filter(|d| d.webhook_id == id).count();
    assert_eq!((count(&a), count(&b)), (1, 3));
    for d in &out.claimed {
        assert_eq!(d.attempts, 0);
        assert!(d.target_url.ends_with(".example.com/hook"));
        let body: serde_json::Value = serde_json::from_str(&d.body).expect("the body is JSON");
        assert_eq!(body["id"], d.id.as_str());
        assert_eq!(body["event"]["id"], d.event_id.as_str());
        assert!(body["data"]["id"].as_str().is_some_and(|r| r.starts_with("r_")), "{body}");
    }
    let listed = s.list_deliveries(p.clone(), a.clone(), None, 10).await.expect("list");
    let stored = listed.iter().find(|d| d["id"] == out.claimed[0].id.as_str()).expect("listed");
    assert_eq!(stored["status"], "delivering");

    assert_eq!(
        s.due_webhooks().await.expect("due"),
        vec![(p.clone(), a.clone())],
        "only A has deliveries waiting"
    );
    // Claimed with a lease that has already run out, as if their node had stopped.
    let claimed = s
        .claim_deliveries(vec![(p.clone(), a.clone(), 10), (p.clone(), b.clone(), 10)], -1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "A's two waiting deliveries, none the fan-out holds");
    assert!(claimed
        .iter()
        .all(|d| d.webhook_id == a && out.claimed.iter().all(|o| o.id != d.id)));
    assert_eq!(
        s.due_webhooks().await.expect("due"),
        vec![(p.clone(), a.clone())],
        "run-out claims are due"
    );
    let mut again = s
        .claim_deliveries(vec![(p.clone(), a.clone(), 10), (p.clone(), b.clone(), 10)], 60)
        .await
        .expect("claim");
    let mut ids: Vec<String> = claimed.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    again.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        again.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        ids,
        "taken back once their lease ran out"
    );
    assert!(s.due_webhooks().await.expect("due").is_empty());

    let result = AttemptResult {
        started_at: tessera_domain::time::now_string(),
        duration_ms: 2,
        status_code: Some(200),
        error: None,
        response: Some("ok".into()),
    };
    s.record_attempts(vec![(out.claimed[0].clone(), result, true, None)])
        .await
        .expect("record");
    let done = s.list_deliveries(p, a, Some("succeeded".into()), 10).await.expect("list");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["id"], out.claimed[0].id.as_str());
}

/// The relay reads a batch, then fans it out in a later transaction. A permanent deletion
/// committed in between must win: the delivery is made from the scrubbed payload, since
/// a delivery body is never rewritten by anything but a later deletion.
async fn deletion_between_relay_read_and_fan_out(ctx: Ctx) {
    let s = &ctx.store;
    let (t, created) = ctx.tenant().await;
    let p = created.project.id.clone();
    let hook = s
        .create_webhook(p.clone(), "https://example.com/hook".into(), vec!["customer.created".into()], true)
        .await
        .expect("webhook");
    let (from, _) = s.outbox_batch("webhooks", 100).await.expect("batch");
    let c = s
        .upsert_customer(&t, customer("erase-me@example.com", "Erin Erased", "erase-me@example.com"))
        .await
        .expect("customer");
    let mut stale = Vec::new();
    for _ in 0..100 {
        stale = s.outbox_batch("webhooks", 100).await.expect("batch").1;
        if stale.iter().any(|e| e.event_type == "customer.created") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let event = stale
        .iter()
        .find(|e| e.event_type == "customer.created")
        .expect("the event")
        .clone();
    assert!(event.payload.contains("Erin Erased"), "the batch was read before the deletion");
    s.permanently_delete_customer(&t, c.id.clone()).await.expect("delete");
    let made = s.fan_out_webhooks("webhooks", from, stale, Room::default()).await.expect("fan out");
    assert_eq!(made.made, 1);
    let listed = s.list_deliveries(p.clone(), hook.id.clone(), None, 10).await.expect("list");
    let id = listed[0]["id"].as_str().expect("delivery id").to_string();
    let delivery = s.get_delivery(p, hook.id, id).await.expect("delivery");
    let body = delivery["body"].to_string();
    assert!(!body.contains("Erin") && !body.contains("erase-me"), "{body}");
    assert_eq!(delivery["body"]["data"]["id"], c.id.as_str());
}

/// The relay's cursor is a compare-and-set (a second fan-out of the same batch is
/// refused and writes nothing), a claimed delivery is not claimed again while leased, an
/// attempt settles it, and the housekeeping purge forgets finished deliveries.
async fn event_relay_and_webhook_delivery_lifecycle(ctx: Ctx) {
    use tessera_store::ops::events::AttemptResult;
    let s = &ctx.store;
    let (t, created) = ctx.tenant().await;
    let p = created.project.id.clone();
    let hook = s
        .create_webhook(
            p.clone(),
            "https://example.com/hook".into(),
            vec!["redemption.succeeded".into()],
            true,
        )
        .await
        .expect("webhook");
    let (before, events) = s.outbox_batch("webhooks", 100).await.expect("batch");
    let pp = p.clone();
    s.write_unmarked(move |c| {
        tessera_store::ops::outbox::emit(c, &pp, "redemption.succeeded", "r_1", &serde_json::json!({"id": "r_1"}))?;
        tessera_store::ops::outbox::emit(c, &pp, "voucher.created", "v_1", &serde_json::json!({"id": "v_1"}))
    })
    .await
    .expect("emit");
    // On PostgreSQL the relay sees an event once every older transaction in the cluster
    // has ended; other tests run transactions meanwhile, so give it a moment.
    let mut seen = (String::new(), Vec::new());
    for _ in 0..100 {
        seen = s.outbox_batch("webhooks", 100).await.expect("batch");
        if seen.1.len() == events.len() + 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (from, events_after) = seen;
    assert_eq!(from, before, "nothing consumed yet");
    assert_eq!(events_after.len(), events.len() + 2);
    let made = s
        .fan_out_webhooks("webhooks", from.clone(), events_after.clone(), Room::default())
        .await
        .expect("fan out");
    assert_eq!(made.made, 1, "one subscribed event, one webhook");
    assert!(made.claimed.is_empty(), "no room, nothing claimed");
    let again = s.fan_out_webhooks("webhooks", from.clone(), events_after, Room::default()).await;
    assert!(
        matches!(again, Err(tessera_store::StoreError::Conflict { .. })),
        "a second relay with the same batch loses: {again:?}"
    );
    let (moved, rest) = s.outbox_batch("webhooks", 100).await.expect("batch");
    assert_ne!(moved, from);
    assert!(rest.is_empty(), "the cursor is past both events");

    let due = s.due_webhooks().await.expect("due");
    assert_eq!(due, vec![(p.clone(), hook.id.clone())]);
    let claimed = s.claim_deliveries(vec![(p.clone(), hook.id.clone(), 10)], 60).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].target_url, "https://example.com/hook");
    let twice = s.claim_deliveries(vec![(p.clone(), hook.id.clone(), 10)], 60).await.expect("claim");
    assert!(twice.is_empty(), "a leased delivery is not claimed again");
    let result = AttemptResult {
        started_at: tessera_domain::time::now_string(),
        duration_ms: 3,
        status_code: Some(204),
        error: None,
        response: Some(String::new()),
    };
    s.record_attempts(vec![(claimed[0].clone(), result, true, None)])
        .await
        .expect("record");
    let listed = s
        .list_deliveries(p.clone(), hook.id.clone(), Some("succeeded".into()), 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attempts"], 1);
    let purged = s.purge_webhook_log("2000-01-01T00:00:00.000Z".into(), 100).await.expect("purge");
    assert_eq!(purged, 0, "recent deliveries stay");
    let purged = s.purge_webhook_log("9999-01-01T00:00:00.000Z".into(), 100).await.expect("purge");
    assert_eq!(purged, 1);
    assert!(s.list_deliveries(p, hook.id, None, 10).await.expect("list").is_empty());
    drop(t);
}

async fn organization_credentials(ctx: Ctx) {
    let s = &ctx.store;
    let generated = s.init_organization(None, None).await.expect("init").expect("generated pair");
    assert!(s
        .authenticate_management(generated.0.clone(), generated.1.clone())
        .await
        .expect("auth")
        .is_some());
    assert!(s
        .authenticate_management(generated.0.clone(), "wrong".into())
        .await
        .expect("auth")
        .is_none());
    // A second start without environment credentials keeps the stored pair.
    assert!(s.init_organization(None, None).await.expect("init").is_none());
    assert!(s
        .authenticate_management(generated.0.clone(), generated.1.clone())
        .await
        .expect("auth")
        .is_some());
    // Environment credentials replace the stored pair.
    s.init_organization(Some("new-id".into()), Some("new-token".into()))
        .await
        .expect("init");
    assert!(s.authenticate_management(generated.0, generated.1).await.expect("auth").is_none());
    assert!(s
        .authenticate_management("new-id".into(), "new-token".into())
        .await
        .expect("auth")
        .is_some());
}

async fn keys_authenticate_and_revoke(ctx: Ctx) {
    let s = &ctx.store;
    let m = ctx.management().await;
    let (t, created) = ctx.tenant().await;
    let pid = t.project_id().to_string();
    let client = &created.client_key;
    assert!(s
        .authenticate_key(client.key.app_id.clone(), client.app_token.clone(), KeyKind::Client)
        .await
        .expect("auth")
        .is_some());
    // A client key is not a server key, and a wrong token is refused.
    assert!(s
        .authenticate_key(client.key.app_id.clone(), client.app_token.clone(), KeyKind::Server)
        .await
        .expect("auth")
        .is_none());
    assert!(s
        .authenticate_key(created.server_key.key.app_id.clone(), client.app_token.clone(), KeyKind::Server)
        .await
        .expect("auth")
        .is_none());

    let extra = s
        .create_api_key(&m, pid.clone(), KeyKind::Server, Some("pos".into()))
        .await
        .expect("new key");
    assert!(s
        .authenticate_key(extra.key.app_id.clone(), extra.app_token.clone(), KeyKind::Server)
        .await
        .expect("auth")
        .is_some());
    let keys = s.list_api_keys(&m, pid.clone()).await.expect("list");
    assert_eq!(keys.len(), 3);
    let revoked = s.revoke_api_key(&m, pid.clone(), extra.key.app_id.clone()).await.expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert!(s
        .authenticate_key(extra.key.app_id.clone(), extra.app_token.clone(), KeyKind::Server)
        .await
        .expect("auth")
        .is_none());
    // A change to the project's budgets reaches the next authentication.
    let limits: ProjectInput = serde_json::from_value(serde_json::json!({"rate_limits": {"per_minute": 60, "burst": 5}})).expect("input");
    s.update_project(&m, pid.clone(), limits).await.expect("update");
    let t = s
        .authenticate_key(
            created.server_key.key.app_id.clone(),
            created.server_key.app_token.clone(),
            KeyKind::Server,
        )
        .await
        .expect("auth")
        .expect("still live");
    assert_eq!(t.rate_limits().map(|l| (l.per_minute, l.burst)), Some((60, 5)));
    // The other keys still work; deleting the project revokes them all.
    assert!(s
        .authenticate_key(
            created.server_key.key.app_id.clone(),
            created.server_key.app_token.clone(),
            KeyKind::Server
        )
        .await
        .expect("auth")
        .is_some());
    s.delete_project(&m, pid.clone()).await.expect("delete");
    assert!(s
        .authenticate_key(
            created.server_key.key.app_id.clone(),
            created.server_key.app_token.clone(),
            KeyKind::Server
        )
        .await
        .expect("auth")
        .is_none());
    assert!(matches!(s.get_project(&m, pid).await, Err(StoreError::NotFound { .. })));
}

async fn customers_upsert_get_update_delete(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    let a = s
        .upsert_customer(&t, customer("src-1", "Ann", "ann@example.com"))
        .await
        .expect("create");
    assert!(a.id.starts_with("cust_"));
    // Upsert by source id updates the same customer.
    let a2 = s
        .upsert_customer(
            &t,
            serde_json::from_value(serde_json::json!({"source_id": "src-1", "phone": "+48 1"})).expect("valid"),
        )
        .await
        .expect("upsert");
    assert_eq!(a2.id, a.id);
    assert_eq!(a2.name.as_deref(), Some("Ann"));
    assert_eq!(a2.phone.as_deref(), Some("+48 1"));
    assert_eq!(s.get_customer(&t, "src-1".into()).await.expect("by source").id, a.id);
    assert_eq!(s.get_customer(&t, a.id.clone()).await.expect("by id").id, a.id);
    let upd = s
        .update_customer(
            &t,
            a.id.clone(),
            serde_json::from_value(serde_json::json!({"name": null, "metadata": {"tier": "gold"}})).expect("valid"),
        )
        .await
        .expect("update");
    assert_eq!(upd.name, None);
    assert_eq!(upd.email.as_deref(), Some("ann@example.com"));
    assert_eq!(upd.metadata.get("tier"), Some(&serde_json::json!("gold")));
    assert!(upd.updated_at.is_some());
    // An unknown id is not silently created.
    let unknown: CustomerInput = serde_json::from_value(serde_json::json!({"id": "cust_nope"})).expect("valid");
    assert!(matches!(s.upsert_customer(&t, unknown).await, Err(StoreError::NotFound { .. })));
    s.delete_customer(&t, "src-1".into()).await.expect("delete");
    assert!(matches!(s.get_customer(&t, a.id.clone()).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(s.delete_customer(&t, a.id).await, Err(StoreError::NotFound { .. })));
    // Invalid input is refused before anything is written.
    let bad: CustomerInput = serde_json::from_value(serde_json::json!({"email": "not-an-email"})).expect("parses");
    assert!(matches!(s.upsert_customer(&t, bad).await, Err(StoreError::Invalid(_))));
}

async fn customers_list_filters_and_pages(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    for i in 0..25 {
        s.upsert_customer(&t, customer(&format!("c{i:02}"), &format!("N{}", i % 3), &format!("c{i}@x.io")))
            .await
            .expect("create");
    }
    let spec = &tessera_store::ops::customers::LIST_SPEC;
    let (page1, total) = s.list_customers(&t, q(&[("limit", "10")], spec), None, vec![]).await.expect("list");
    assert_eq!((page1.len(), total), (10, 25));
    // Newest first by default.
    assert_eq!(page1[0].source_id.as_deref(), Some("c24"));
    let (page3, _) = s
        .list_customers(&t, q(&[("limit", "10"), ("page", "3")], spec), None, vec![])
        .await
        .expect("list");
    assert_eq!(page3.len(), 5);
    let (asc, _) = s
        .list_customers(&t, q(&[("order", "source_id"), ("limit", "3")], spec), None, vec![])
        .await
        .expect("list");
    let ids: Vec<_> = asc.iter().map(|c| c.source_id.clone().unwrap_or_default()).collect();
    assert_eq!(ids, vec!["c00", "c01", "c02"]);
    let (by_email, total) = s
        .list_customers(&t, q(&[("email", "c7@x.io")], spec), None, vec![])
        .await
        .expect("list");
    assert_eq!((by_email.len(), total), (1, 1));
    let (by_name, total) = s.list_customers(&t, q(&[("name", "N1")], spec), None, vec![]).await.expect("list");
    assert_eq!((by_name.len(), total), (8, 8));
    let (by_city, total) = s
        .list_customers(&t, q(&[("city", "Berlin"), ("limit", "100")], spec), None, vec![])
        .await
        .expect("list");
    assert_eq!((by_city.len(), total), (25, 25));
    let (none, total) = s
        .list_customers(&t, q(&[("created_at[before]", "2000-01-01T00:00:00Z")], spec), None, vec![])
        .await
        .expect("list");
    assert_eq!((none.len(), total), (0, 0));
}

async fn tenants_are_isolated(ctx: Ctx) {
    let s = &ctx.store;
    let (a, _) = ctx.tenant().await;
    let (b, _) = ctx.tenant().await;
    let cust = s
        .upsert_customer(&a, customer("shared-src", "Ann", "a@x.io"))
        .await
        .expect("create");
    let prod = s
        .upsert_product(
            &a,
            serde_json::from_value(serde_json::json!({"source_id": "p1", "name": "P"})).expect("valid"),
        )
        .await
        .expect("product");
    let order = s
        .upsert_order(
            &a,
            serde_json::from_value(serde_json::json!({"source_id": "o1", "amount": 100})).expect("valid"),
        )
        .await
        .expect("order");
    assert!(matches!(
        s.get_customer(&b, cust.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_customer(&b, "shared-src".into()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_product(&b, prod.0.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(s.get_order(&b, order.id.clone()).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        s.delete_customer(&b, cust.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    let (list, total) = s
        .list_customers(&b, q(&[], &tessera_store::ops::customers::LIST_SPEC), None, vec![])
        .await
        .expect("list");
    assert!(list.is_empty() && total == 0);
    // The same source id is independent per project.
    let other = s
        .upsert_customer(&b, customer("shared-src", "Bob", "b@x.io"))
        .await
        .expect("create");
    assert_ne!(other.id, cust.id);
    assert_eq!(
        s.get_customer(&a, "shared-src".into()).await.expect("get").name.as_deref(),
        Some("Ann")
    );
}

async fn products_and_skus(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    let input: ProductInput =
        serde_json::from_value(serde_json::json!({"source_id": "shoe", "name": "Shoe", "price": 5000, "attributes": ["size"]}))
            .expect("valid");
    let (p, skus, n) = s.upsert_product(&t, input).await.expect("create");
    assert!(p.id.starts_with("prod_") && skus.is_empty() && n == 0);
    let sku_in: SkuInput =
        serde_json::from_value(serde_json::json!({"source_id": "shoe-42", "sku": "42", "price": 5100, "attributes": {"size": "42"}}))
            .expect("valid");
    let sku = s.upsert_sku(&t, "shoe".into(), sku_in).await.expect("sku");
    assert_eq!(sku.product_id, p.id);
    let (_, skus, n) = s.get_product(&t, p.id.clone()).await.expect("get");
    assert_eq!((skus.len(), n), (1, 1));
    assert_eq!(s.get_sku(&t, None, "shoe-42".into()).await.expect("sku").id, sku.id);
    let upd = s
        .update_sku(
            &t,
            p.id.clone(),
            sku.id.clone(),
            serde_json::from_value(serde_json::json!({"price": 4900})).expect("valid"),
        )
        .await
        .expect("update");
    assert_eq!(upd.price, Some(4900));
    let (list, total) = s
        .list_skus(&t, "shoe".into(), q(&[], &tessera_store::ops::products::LIST_SPEC))
        .await
        .expect("list");
    assert_eq!((list.len(), total), (1, 1));
    // A SKU of another product is not reachable under this product.
    let (other, _, _) = s
        .upsert_product(&t, serde_json::from_value(serde_json::json!({"name": "Hat"})).expect("valid"))
        .await
        .expect("create");
    assert!(matches!(
        s.get_sku(&t, Some(other.id.clone()), sku.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    s.delete_product(&t, p.id.clone()).await.expect("delete");
    assert!(matches!(s.get_sku(&t, None, sku.id).await, Err(StoreError::NotFound { .. })));
    let (list, total) = s
        .list_products(&t, q(&[], &tessera_store::ops::products::LIST_SPEC))
        .await
        .expect("list");
    assert_eq!((list.len(), total), (1, 1));
}

async fn orders_with_customers(ctx: Ctx) {
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    let input: OrderInput = serde_json::from_value(serde_json::json!({
        "source_id": "order-1",
        "items": [{"product_id": "p1", "quantity": 2, "price": 1000}],
        "customer": {"source_id": "buyer-1", "email": "buyer@x.io"},
        "metadata": {"channel": "web"}
    }))
    .expect("valid");
    let o = s.upsert_order(&t, input).await.expect("create");
    assert_eq!((o.amount, o.total_amount), (2000, 2000));
    let cust = s
        .get_customer(&t, "buyer-1".into())
        .await
        .expect("customer upserted with the order");
    assert_eq!(o.customer_id.as_deref(), Some(cust.id.as_str()));
    let paid = s
        .update_order(
            &t,
            "order-1".into(),
            serde_json::from_value(serde_json::json!({"status": "PAID"})).expect("valid"),
        )
        .await
        .expect("update");
    assert_eq!(paid.id, o.id);
    assert_eq!(paid.amount, 2000);
    assert_eq!(paid.status, tessera_domain::order::OrderStatus::Paid);
    assert_eq!(paid.customer_id, o.customer_id);
    let again = s
        .upsert_order(
            &t,
            serde_json::from_value(serde_json::json!({"source_id": "order-1", "amount": 1500})).expect("valid"),
        )
        .await
        .expect("upsert");
    assert_eq!((again.id.as_str(), again.amount), (o.id.as_str(), 1500));
    let bad: OrderInput = serde_json::from_value(serde_json::json!({"customer_id": "cust_missing"})).expect("valid");
    assert!(matches!(s.upsert_order(&t, bad).await, Err(StoreError::NotFound { .. })));
    let (list, total) = s
        .list_orders(&t, q(&[], &tessera_store::ops::orders::LIST_SPEC))
        .await
        .expect("list");
    assert_eq!((list.len(), total), (1, 1));
}

async fn idempotency_records(ctx: Ctx) {
    use tessera_store::ops::idempotency::{IdemMark, CURRENT};
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    let scope = t.project_id().to_string();
    let begin = |key: &'static str, hash: &'static str| {
        let (s, scope) = (s.clone(), scope.clone());
        async move { s.idempotency_begin(scope, key.into(), hash.into()).await.expect("begin") }
    };
    let owner = |b: IdemBegin| match b {
        IdemBegin::Proceed { owner } => owner,
        other => panic!("expected to own the key, got {other:?}"),
    };
    let o1 = owner(begin("k1", "h1").await);
    assert_eq!(begin("k1", "h1").await, IdemBegin::InFlight);
    assert_eq!(begin("k1", "h2").await, IdemBegin::InFlight, "in flight wins over a different body");
    s.idempotency_complete(scope.clone(), "k1".into(), o1, 200, "{\"ok\":true}".into(), true)
        .await
        .expect("complete");
    assert_eq!(
        begin("k1", "h1").await,
        IdemBegin::Replay {
            status: 200,
            body: "{\"ok\":true}".into()
        }
    );
    assert_eq!(begin("k1", "h2").await, IdemBegin::Mismatch);
    // Other scopes do not see the key.
    assert!(matches!(
        s.idempotency_begin("other".into(), "k1".into(), "h9".into()).await.expect("begin"),
        IdemBegin::Proceed { .. }
    ));
    // A key released after a server error can be used again.
    let o2 = owner(begin("k2", "h1").await);
    s.idempotency_complete(scope.clone(), "k2".into(), o2, 503, "{}".into(), false)
        .await
        .expect("release");
    let o3 = owner(begin("k2", "h1").await);
    // A write made under the key marks it applied in the same transaction; a server error
    // after it is not replayed, but the key stays applied: the request never runs twice.
    let mark = IdemMark::new(scope.clone(), "k2".into(), o3.clone());
    let (st, tt) = (s.clone(), t.clone());
    CURRENT
        .scope(
            mark,
            async move { st.upsert_customer(&tt, customer("idem-c", "I", "i@x.io")).await },
        )
        .await
        .expect("write");
    assert_eq!(begin("k2", "h1").await, IdemBegin::InFlight);
    s.idempotency_complete(scope.clone(), "k2".into(), o3, 500, "{\"e\":1}".into(), false)
        .await
        .expect("complete");
    assert_eq!(begin("k2", "h1").await, IdemBegin::InFlight, "applied moments ago: retry later");
    // A request that no longer owns its key (a retry took it over) cannot apply anything:
    // its write aborts whole.
    let _o4 = owner(begin("k3", "h1").await);
    let stale = IdemMark::new(scope.clone(), "k3".into(), "not-the-owner".into());
    let (st, tt) = (s.clone(), t.clone());
    let r = CURRENT
        .scope(
            stale,
            async move { st.upsert_customer(&tt, customer("fenced", "F", "f@x.io")).await },
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert!(
        matches!(s.get_customer(&t, "fenced".into()).await, Err(StoreError::NotFound { .. })),
        "nothing of the fenced write remains"
    );
}

async fn concurrent_writes_are_all_durable(ctx: Ctx) {
    let (t, _) = ctx.tenant().await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let s = ctx.store.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            s.upsert_customer(&t, customer(&format!("w{i}"), "W", "w@x.io")).await
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.push(task.await.expect("join").expect("acknowledged write"));
    }
    for c in acked {
        assert_eq!(ctx.store.get_customer(&t, c.id.clone()).await.expect("readable after ack").id, c.id);
    }
    let (_, total) = ctx
        .store
        .list_customers(&t, q(&[], &tessera_store::ops::customers::LIST_SPEC), None, vec![])
        .await
        .expect("list");
    assert_eq!(total, 400);
}

async fn failing_write_does_not_spoil_its_group(ctx: Ctx) {
    let (t, _) = ctx.tenant().await;
    let pid = t.project_id().to_string();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = ctx.store.clone();
        let pid = pid.clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |c| {
                c.execute(
                    "INSERT INTO customers (project_id, id, source_id, created_at, data) VALUES ($1, $2, $3, '2024-01-01T00:00:00.000Z', '{}')",
                    &[pid.into(), format!("cust_g{i}").into(), format!("g{i}").into()],
                )?;
                if i % 3 == 0 {
                    // The write above happened inside this command; failing must undo it alone.
                    return Err(StoreError::Internal("deliberate failure".into()));
                }
                Ok(())
            })
            .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let r = task.await.expect("join");
        assert_eq!(r.is_ok(), i % 3 != 0, "command {i}");
    }
    let rows = ctx
        .store
        .read(move |c| {
            c.query(
                "SELECT source_id FROM customers WHERE project_id = $1 AND source_id LIKE 'g%'",
                &[pid.into()],
            )
        })
        .await
        .expect("read");
    let present: std::collections::BTreeSet<String> = rows.iter().map(|r| r.text(0).expect("text")).collect();
    for i in 0..60 {
        assert_eq!(present.contains(&format!("g{i}")), i % 3 != 0, "row g{i}");
    }
}

async fn no_plaintext_secrets_at_rest(ctx: Ctx) {
    let (_, created) = ctx.tenant().await;
    let secrets = [
        created.server_key.app_token.clone(),
        created.client_key.app_token.clone(),
        "secret-token".to_string(),
    ];
    match &ctx.engine {
        Engine::Sqlite(dir) => {
            // Every byte the database holds: the main file and its write-ahead log.
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(&dir.0).expect("dir") {
                bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
            }
            assert!(bytes.len() > 1000, "database files should not be empty");
            let text = String::from_utf8_lossy(&bytes);
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "a secret is stored in plaintext");
            }
            assert!(text.contains(&created.server_key.key.app_id), "the scan must see stored data");
        }
        Engine::Postgres(schema) => {
            let schema = schema.clone();
            let secrets = secrets.clone();
            let app_id = created.server_key.key.app_id.clone();
            blocking(move || {
                let mut admin = pg_admin();
                let tables = admin
                    .query(
                        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                        &[&schema],
                    )
                    .expect("tables");
                assert!(tables.len() >= 5);
                let mut seen_app_id = false;
                for t in tables {
                    let name: String = t.get(0);
                    let rows = admin.query(&format!("SELECT t::text FROM {schema}.{name} t"), &[]).expect("dump");
                    for r in rows {
                        let text: String = r.get(0);
                        seen_app_id |= text.contains(&app_id);
                        for s in &secrets {
                            assert!(!text.contains(s.as_str()), "a secret is stored in plaintext in {name}");
                        }
                    }
                }
                assert!(seen_app_id, "the scan must see stored data");
            });
        }
    }
}

/// Two nodes on one PostgreSQL database: a key revoked through one is refused by the other
/// at once, although the other has just authenticated it (and may cache it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revocation_reaches_every_node_at_once() {
    let (url, _schema) = pg_url_with_fresh_schema();
    let (a, b) = (
        Store::open_postgres(&url).expect("node a"),
        Store::open_postgres(&url).expect("node b"),
    );
    a.init_organization(Some("org".into()), Some("org-token".into()))
        .await
        .expect("init");
    let m = a
        .authenticate_management("org".into(), "org-token".into())
        .await
        .expect("auth")
        .expect("management");
    let input: ProjectInput = serde_json::from_value(serde_json::json!({"name": "Nodes"})).expect("input");
    let created = a.create_project(&m, input).await.expect("project");
    let key = &created.server_key;
    for _ in 0..3 {
        assert!(a
            .authenticate_key(key.key.app_id.clone(), key.app_token.clone(), KeyKind::Server)
            .await
            .expect("auth")
            .is_some());
    }
    b.revoke_api_key(&m, created.project.id.clone(), key.key.app_id.clone())
        .await
        .expect("revoke on b");
    assert!(
        a.authenticate_key(key.key.app_id.clone(), key.app_token.clone(), KeyKind::Server)
            .await
            .expect("auth")
            .is_none(),
        "node a still accepted a key revoked on node b"
    );
}

/// Categories, a project's stacking rules and promotion stacks, with tiers and a campaign
/// put in by SQL (they have no store operations here). Every write bumps the promotions
/// cache version; a failed one does not.
async fn categories_rules_and_stacks(ctx: Ctx) {
    use tessera_domain::category::CategoryFields;
    use tessera_store::ops::promotions::{self, PROMOTIONS};
    let s = &ctx.store;
    let (t, created) = ctx.tenant().await;
    let (t2, _) = ctx.tenant().await;
    let pid = t.project_id().to_string();
    let project = created.project.id.clone();
    let version = |s: &Store, p: String| {
        let s = s.clone();
        async move { s.read(move |c| promotions::version(c, &p, PROMOTIONS)).await.expect("version") }
    };
    let p2 = pid.clone();
    s.write(move |c| {
        c.execute(
            "INSERT INTO campaigns (project_id, id, name, campaign_type, active, generation_status, created_at, data) \
             VALUES ($1, 'camp_1', 'Promo', 'PROMOTION', 1, 'DONE', '2024-01-01T00:00:00.000Z', '{}')",
            &[p2.clone().into()],
        )?;
        for (id, camp) in [("promo_1", "camp_1"), ("promo_2", "camp_1"), ("promo_x", "camp_2")] {
            c.execute(
                "INSERT INTO promotion_tiers (project_id, id, campaign_id, hierarchy, active, created_at, data) \
                 VALUES ($1, $2, $3, 1, 1, '2024-01-01T00:00:00.000Z', '{}')",
                &[p2.clone().into(), id.into(), camp.into()],
            )?;
        }
        Ok(())
    })
    .await
    .expect("seed campaign and tiers");

    let v0 = version(s, pid.clone()).await;
    let field = |name: &str, hierarchy| CategoryFields {
        name: name.into(),
        hierarchy,
    };
    let cat = s.create_category(&t, field("Gold", 1)).await.expect("create category");
    assert!(cat.id.starts_with("cat_"));
    assert!(matches!(
        s.create_category(&t, field("Gold", 2)).await,
        Err(StoreError::Conflict {
            key: "duplicate_found",
            ..
        })
    ));
    assert_eq!(version(s, pid.clone()).await, v0 + 1, "a refused write leaves the version alone");
    s.create_category(&t2, field("Gold", 1))
        .await
        .expect("another project may use the name");
    assert!(matches!(
        s.get_category(&t2, cat.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    let upd = s.update_category(&t, cat.id.clone(), field("Gold", 4)).await.expect("update");
    assert_eq!((upd.hierarchy, upd.updated_at.is_some()), (4, true));
    let (list, total) = s
        .list_categories(&t, q(&[], &tessera_store::ops::categories::LIST_SPEC))
        .await
        .expect("list");
    assert_eq!((list.len(), total), (1, 1));

    // Stacking rules: defaults, own, update, and the category they name is kept.
    let (own, rules) = s.stacking_rules(project.clone()).await.expect("rules");
    assert!(own.is_none());
    assert_eq!(rules, tessera_domain::stacking::StackingRules::default());
    let input: tessera_domain::stacking::StackingRulesInput =
        serde_json::from_value(serde_json::json!({"exclusive_categories": [cat.id]})).expect("input");
    let (stored, rules) = s.create_stacking_rules(project.clone(), input).await.expect("create rules");
    assert!(stored.id.starts_with("stk_"));
    assert_eq!(rules.exclusive_categories, vec![cat.id.clone()]);
    assert!(matches!(
        s.create_stacking_rules(project.clone(), Default::default()).await,
        Err(StoreError::Conflict {
            key: "stacking_rules_exist",
            ..
        })
    ));
    let bad: tessera_domain::stacking::StackingRulesInput =
        serde_json::from_value(serde_json::json!({"joint_categories": ["cat_missing"]})).expect("input");
    assert!(matches!(
        s.update_stacking_rules(project.clone(), stored.id.clone(), bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.delete_category(&t, cat.id.clone()).await,
        Err(StoreError::Invalid(tessera_domain::InvalidInput {
            key: "category_in_use",
            ..
        }))
    ));

    // Stacks name tiers of their own campaign only.
    let stack_in =
        |v: serde_json::Value| -> tessera_domain::promotion_stack::PromotionStackInput { serde_json::from_value(v).expect("input") };
    let before = version(s, pid.clone()).await;
    let stack = s
        .create_promotion_stack(
            &t,
            "camp_1".into(),
            stack_in(serde_json::json!({"name": "Both", "tiers": {"ids": ["promo_2", "promo_1"]}, "category_id": cat.id})),
        )
        .await
        .expect("create stack");
    assert_eq!(version(s, pid.clone()).await, before + 1);
    assert_eq!(stack["tiers"]["ids"], serde_json::json!(["promo_2", "promo_1"]));
    assert_eq!(stack["categories"][0]["hierarchy"], 4);
    let id = stack["id"].as_str().expect("id").to_string();
    for ids in [serde_json::json!(["promo_x"]), serde_json::json!(["promo_nope"])] {
        let r = s
            .create_promotion_stack(
                &t,
                "camp_1".into(),
                stack_in(serde_json::json!({"name": "Bad", "tiers": {"ids": ids}})),
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    }
    assert!(matches!(
        s.create_promotion_stack(
            &t2,
            "camp_1".into(),
            stack_in(serde_json::json!({"name": "B", "tiers": {"ids": ["promo_1"]}}))
        )
        .await,
        Err(StoreError::NotFound {
            resource_type: "campaign",
            ..
        })
    ));
    let upd = s
        .update_promotion_stack(
            &t,
            "camp_1".into(),
            id.clone(),
            stack_in(serde_json::json!({"tiers": {"ids": ["promo_1"]}})),
        )
        .await
        .expect("update stack");
    assert_eq!(
        (upd["name"].as_str(), upd["tiers"]["ids"].clone()),
        (Some("Both"), serde_json::json!(["promo_1"]))
    );
    let (all, total) = s
        .list_promotion_stacks(&t, None, q(&[("order", "-name")], &tessera_store::ops::stacks::LIST_SPEC))
        .await
        .expect("list");
    assert_eq!((all.len(), total), (1, 1));
    assert!(matches!(
        s.get_promotion_stack(&t2, "camp_1".into(), id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    s.delete_promotion_stack(&t, "camp_1".into(), id.clone())
        .await
        .expect("delete stack");
    assert!(matches!(
        s.get_promotion_stack(&t, "camp_1".into(), id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Deleting the rules restores the defaults and frees the category.
    s.delete_stacking_rules(project.clone(), stored.id.clone())
        .await
        .expect("delete rules");
    assert!(s.stacking_rules(project.clone()).await.expect("rules").0.is_none());
    assert!(matches!(
        s.get_stacking_rules(project, stored.id).await,
        Err(StoreError::NotFound { .. })
    ));
    s.delete_category(&t, cat.id.clone()).await.expect("delete category");
}

async fn export_done(s: &Store, t: &Tenant, id: &str) -> tessera_store::ops::exports::ExportRecord {
    for _ in 0..600 {
        let rec = s.get_export(t, id.to_string()).await.expect("export");
        match rec.status.as_str() {
            "DONE" => return rec,
            "SCHEDULED" | "IN_PROGRESS" => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => panic!("export ended {other}: {}", rec.stored),
        }
    }
    panic!("export {id} did not finish");
}

/// The CSV of a DONE export, chunk by chunk, through a download token.
async fn export_chunks(s: &Store, rec: &tessera_store::ops::exports::ExportRecord) -> Vec<String> {
    let token = rec.token(tessera_domain::time::now().as_second() + 60);
    let d = s
        .authorize_export_download(rec.id.clone(), token)
        .await
        .expect("authorize")
        .expect("a live token opens its export");
    let mut out = Vec::new();
    for seq in 0..d.chunks() {
        out.push(s.export_chunk(&d, seq).await.expect("chunk").expect("chunk exists"));
    }
    out
}

/// Exports are written in bounded chunks that split only between rows; a resumed run
/// discards what an interrupted one left; tokens open one export of one project until
/// they expire; deletion takes the chunks along, also while a run is writing them.
async fn exports_chunk_resume_and_isolate(ctx: Ctx) {
    use tessera_domain::export::ExportInput;
    let s = &ctx.store;
    let (t, _) = ctx.tenant().await;
    let (other, _) = ctx.tenant().await;
    for i in 0..300 {
        s.upsert_customer(
            &t,
            customer(&format!("c{i:03}"), &format!("Name, \"{i}\""), &format!("c{i}@example.com")),
        )
        .await
        .expect("customer");
    }
    s.upsert_customer(&other, customer("foreign", "Foreign", "f@example.com"))
        .await
        .expect("customer");
    s.set_export_chunk_bytes(1024);
    let spec = |fields: serde_json::Value| {
        serde_json::from_value::<ExportInput>(
            serde_json::json!({"exported_object": "customer", "parameters": {"fields": fields, "order": "created_at"}}),
        )
        .expect("shape")
        .validate()
        .expect("valid")
    };
    let (rec, action) = s
        .create_export(&t, spec(serde_json::json!(["source_id", "name", "email"])))
        .await
        .expect("create");
    assert_eq!(rec.status, "SCHEDULED");
    // A run that died midway left chunks behind, and its action still says IN_PROGRESS.
    let (p, id, a) = (t.project_id().to_string(), rec.id.clone(), action.clone());
    s.write_unmarked(move |c| {
        for seq in [0i64, 1, 50] {
            c.execute(
                "INSERT INTO export_chunks (project_id, export_id, seq, data) VALUES ($1, $2, $3, 'junk from a dead run\n')",
                &[p.clone().into(), id.clone().into(), seq.into()],
            )?;
        }
        c.execute(
            "UPDATE async_actions SET status = 'IN_PROGRESS', updated_at = '2000-01-01T00:00:00.000Z' WHERE project_id = $1 AND id = $2",
            &[p.into(), a.into()],
        )?;
        Ok(())
    })
    .await
    .expect("simulate a crash");
    assert!(s.sweep_async_actions().await.expect("sweep") >= 1, "the stale action is resumed");
    let done = export_done(s, &t, &rec.id).await;
    let chunks = export_chunks(s, &done).await;
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    assert_eq!(s.export_chunk_count(&t, rec.id.clone()).await.expect("count"), chunks.len() as i64);
    for c in &chunks {
        assert!(c.ends_with('\n'), "a chunk ends between rows");
        assert!(c.len() < 1024 + 100, "a chunk is at most the chunk size plus one row: {}", c.len());
        assert!(!c.contains("junk"), "the dead run's chunks were discarded");
    }
    let text = chunks.concat();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "source_id,name,email");
    assert_eq!(lines.len(), 301);
    assert_eq!(lines[1], "c000,\"Name, \"\"0\"\"\",c0@example.com");
    assert_eq!(lines[300], "c299,\"Name, \"\"299\"\"\",c299@example.com");
    assert!(!text.contains("foreign"));
    let action = s.get_async_action(&t, action).await.expect("action");
    assert_eq!(action.status, "DONE");
    assert_eq!(action.result.as_ref().and_then(|r| r["rows"].as_i64()), Some(300));

    // Tokens: expired, of another export, or presented to another project: refused.
    let now = tessera_domain::time::now().as_second();
    let expired = done.token(now - 1);
    assert!(s.authorize_export_download(rec.id.clone(), expired).await.expect("auth").is_none());
    let (rec2, a2) = s.create_export(&t, spec(serde_json::json!(["id"]))).await.expect("create");
    s.start_async_action(&t, a2).await.expect("start");
    let done2 = export_done(s, &t, &rec2.id).await;
    assert!(s
        .authorize_export_download(rec.id.clone(), done2.token(now + 60))
        .await
        .expect("auth")
        .is_none());
    assert!(s
        .authorize_export_download(rec2.id.clone(), done2.token(now + 60))
        .await
        .expect("auth")
        .is_some());
    assert!(matches!(
        s.get_export(&other, rec.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete_export(&other, rec.id.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    let (list, total) = s.list_exports(&other, 10, 1, "-created_at".into()).await.expect("list");
    assert_eq!((list.len(), total), (0, 0));
    let (list, total) = s.list_exports(&t, 10, 1, "-created_at".into()).await.expect("list");
    assert_eq!(total, 2);
    assert_eq!(list[0].id, rec2.id);

    // Deleted: its chunks go, and its token opens nothing.
    s.delete_export(&t, rec.id.clone()).await.expect("delete");
    assert_eq!(s.export_chunk_count(&t, rec.id.clone()).await.expect("count"), 0);
    assert!(s
        .authorize_export_download(rec.id.clone(), done.token(now + 60))
        .await
        .expect("auth")
        .is_none());

    // Deleted while it runs (tiny chunks, so many writes): no chunk is left behind.
    s.set_export_chunk_bytes(16);
    let (rec3, a3) = s
        .create_export(&t, spec(serde_json::json!(["source_id", "email"])))
        .await
        .expect("create");
    s.start_async_action(&t, a3.clone()).await.expect("start");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.delete_export(&t, rec3.id.clone()).await.expect("delete while running");
    for _ in 0..600 {
        let a = s.get_async_action(&t, a3.clone()).await.expect("action");
        if a.status == "DONE" || a.status == "FAILED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.export_chunk_count(&t, rec3.id.clone()).await.expect("count"), 0);
}
