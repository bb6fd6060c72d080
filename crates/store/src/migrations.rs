//! Embedded schema migrations, one list for both engines.
//!
//! Migrations are expand-then-contract: a new version only adds tables, columns and
//! indexes that the running older version ignores; removals come in a later release once
//! no node reads them. Each migration runs in one transaction with its version record.

use crate::conn::{Conn, Val};
use crate::StoreError;

pub trait Migrator {
    /// Runs `f` in one transaction (holding the migration lock on PostgreSQL).
    fn run(&mut self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<(), StoreError>) -> Result<(), StoreError>;
    /// Runs a script outside a transaction (used to create the version table).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
}

/// The schema version this build expects. Backups record it in their manifest.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&str] = &[
    // 1: organization, projects, keys, first tenant resources, idempotency records.
    r#"
    CREATE TABLE organization (
        id TEXT PRIMARY KEY,
        management_id TEXT NOT NULL UNIQUE,
        management_token_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE INDEX projects_created ON projects (created_at);
    CREATE TABLE api_keys (
        app_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects (id),
        kind TEXT NOT NULL,
        name TEXT,
        token_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_project ON api_keys (project_id, created_at);
    CREATE TABLE customers (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        source_id TEXT,
        email TEXT,
        name TEXT,
        city TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX customers_source_id ON customers (project_id, source_id);
    CREATE INDEX customers_email ON customers (project_id, email);
    CREATE INDEX customers_name ON customers (project_id, name);
    CREATE INDEX customers_city ON customers (project_id, city);
    CREATE INDEX customers_created ON customers (project_id, created_at);
    CREATE INDEX customers_updated ON customers (project_id, updated_at);
    CREATE TABLE products (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        source_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX products_source_id ON products (project_id, source_id);
    CREATE INDEX products_created ON products (project_id, created_at);
    CREATE INDEX products_updated ON products (project_id, updated_at);
    CREATE TABLE skus (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        product_id TEXT NOT NULL,
        source_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX skus_source_id ON skus (project_id, source_id);
    CREATE INDEX skus_product ON skus (project_id, product_id, created_at);
    CREATE TABLE orders (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        source_id TEXT,
        status TEXT NOT NULL,
        customer_id TEXT,
        total_amount BIGINT NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX orders_source_id ON orders (project_id, source_id);
    CREATE INDEX orders_created ON orders (project_id, created_at);
    CREATE INDEX orders_updated ON orders (project_id, updated_at);
    CREATE INDEX orders_customer ON orders (project_id, customer_id);
    CREATE TABLE idempotency (
        scope TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        status BIGINT,
        body TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, idem_key)
    );
    CREATE INDEX idempotency_created ON idempotency (created_at);
    "#,
    // 2: campaigns, vouchers, validation rules, redemptions, gift ledger, sessions,
    // the outbox and async actions. Vouchers have no created_at index: their ids are
    // time-sortable, so the primary key orders them by creation, and every index less
    // makes bulk code generation cheaper. (validation_rules.source_id is unused by rules; it
    // lets them share the generic document helpers. Statements are split on ';', so the
    // SQL holds no comments.)
    r#"
    CREATE TABLE campaigns (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        campaign_type TEXT NOT NULL,
        active BIGINT NOT NULL,
        vouchers_count BIGINT NOT NULL DEFAULT 0,
        generation_status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX campaigns_name ON campaigns (project_id, name);
    CREATE INDEX campaigns_created ON campaigns (project_id, created_at);
    CREATE TABLE vouchers (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        code TEXT NOT NULL,
        code_key TEXT NOT NULL,
        campaign_id TEXT,
        kind TEXT NOT NULL,
        active BIGINT NOT NULL,
        quantity BIGINT,
        redeemed_quantity BIGINT NOT NULL DEFAULT 0,
        gift_amount BIGINT,
        gift_balance BIGINT,
        redeemed_amount BIGINT NOT NULL DEFAULT 0,
        holder_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT,
        PRIMARY KEY (project_id, id),
        CHECK (redeemed_quantity >= 0),
        CHECK (gift_balance IS NULL OR gift_balance >= 0)
    );
    CREATE UNIQUE INDEX vouchers_code ON vouchers (project_id, code_key);
    CREATE INDEX vouchers_campaign ON vouchers (project_id, campaign_id, created_at);
    CREATE INDEX vouchers_holder ON vouchers (project_id, holder_id) WHERE holder_id IS NOT NULL;
    CREATE TABLE validation_rules (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        source_id TEXT,
        name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX validation_rules_created ON validation_rules (project_id, created_at);
    CREATE TABLE rule_assignments (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        related_object_type TEXT NOT NULL,
        related_object_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX rule_assignments_unique ON rule_assignments (project_id, rule_id, related_object_type, related_object_id);
    CREATE INDEX rule_assignments_object ON rule_assignments (project_id, related_object_id);
    CREATE TABLE redemptions (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        object TEXT NOT NULL,
        parent_id TEXT,
        redemption_id TEXT,
        voucher_id TEXT,
        campaign_id TEXT,
        customer_id TEXT,
        order_id TEXT,
        tracking_id TEXT,
        result TEXT NOT NULL,
        status TEXT NOT NULL,
        amount BIGINT NOT NULL DEFAULT 0,
        discount_amount BIGINT NOT NULL DEFAULT 0,
        order_amount BIGINT NOT NULL DEFAULT 0,
        rollback_id TEXT,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX redemptions_created ON redemptions (project_id, created_at);
    CREATE INDEX redemptions_voucher ON redemptions (project_id, voucher_id, created_at);
    CREATE INDEX redemptions_customer_voucher ON redemptions (project_id, customer_id, voucher_id, created_at);
    CREATE INDEX redemptions_customer_campaign ON redemptions (project_id, customer_id, campaign_id, created_at);
    CREATE INDEX redemptions_campaign ON redemptions (project_id, campaign_id, created_at);
    CREATE INDEX redemptions_parent ON redemptions (project_id, parent_id);
    CREATE TABLE gift_transactions (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        voucher_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount BIGINT NOT NULL,
        balance_after BIGINT NOT NULL,
        redemption_id TEXT,
        source_id TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project_id, id),
        CHECK (balance_after >= 0)
    );
    CREATE INDEX gift_transactions_voucher ON gift_transactions (project_id, voucher_id, id);
    CREATE TABLE voucher_sessions (
        project_id TEXT NOT NULL REFERENCES projects (id),
        voucher_id TEXT NOT NULL,
        session_key TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        amount BIGINT NOT NULL,
        expires_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project_id, voucher_id, session_key)
    );
    CREATE INDEX voucher_sessions_expiry ON voucher_sessions (project_id, voucher_id, expires_at);
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects (id),
        event_type TEXT NOT NULL,
        resource_id TEXT,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX outbox_project ON outbox (project_id, id);
    CREATE INDEX outbox_resource ON outbox (project_id, resource_id);
    CREATE TABLE async_actions (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        progress BIGINT NOT NULL DEFAULT 0,
        request_id TEXT,
        params TEXT NOT NULL,
        result TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX async_actions_created ON async_actions (project_id, created_at);
    CREATE TABLE import_rows (
        project_id TEXT NOT NULL REFERENCES projects (id),
        action_id TEXT NOT NULL,
        row_no BIGINT NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (project_id, action_id, row_no)
    );
    CREATE INDEX async_actions_status ON async_actions (status);
    "#,
    // 3: event delivery. The relay reads the outbox in commit order: on SQLite the rowid
    // (one writer, so insertion order is commit order); on PostgreSQL the writing
    // transaction's id with a sequence, read only below the oldest running transaction
    // so an event can never appear behind the relay's cursor.
    r#"
    @postgres ALTER TABLE outbox ADD COLUMN seq BIGSERIAL;
    @postgres ALTER TABLE outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
    @postgres CREATE INDEX outbox_relay ON outbox (txid, seq);
    CREATE TABLE outbox_cursors (
        consumer TEXT PRIMARY KEY,
        position TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE webhooks (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        target_url TEXT NOT NULL,
        events TEXT NOT NULL,
        active BIGINT NOT NULL,
        secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        PRIMARY KEY (project_id, id)
    );
    CREATE TABLE webhook_deliveries (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        webhook_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_at TEXT NOT NULL,
        lease_until TEXT,
        last_status BIGINT,
        replay_of TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (project_id, webhook_id, status, next_attempt_at);
    CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (project_id, webhook_id, id);
    CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (status, updated_at);
    CREATE TABLE webhook_attempts (
        project_id TEXT NOT NULL REFERENCES projects (id),
        delivery_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms BIGINT NOT NULL,
        status_code BIGINT,
        error TEXT,
        response TEXT,
        PRIMARY KEY (project_id, delivery_id, attempt)
    );
    CREATE TABLE stats_daily (
        project_id TEXT NOT NULL REFERENCES projects (id),
        scope TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        day TEXT NOT NULL,
        redemptions BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        rolled_back BIGINT NOT NULL,
        discount_amount BIGINT NOT NULL,
        gift_amount BIGINT NOT NULL,
        PRIMARY KEY (project_id, scope, scope_id, day)
    );
    CREATE TABLE audit_log (
        scope TEXT NOT NULL,
        id TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        resource TEXT NOT NULL,
        fields TEXT NOT NULL,
        request_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE INDEX audit_log_created ON audit_log (scope, created_at)
    "#,
    // 4: promotions. Tiers and stacks are documents with the columns lookups need; a
    // tier's redemptions are counted from the redemption log, so a tier has no counter
    // to race on. `cache_versions` is bumped in the transaction of every change a cached
    // promotion set depends on, so every node notices on its next read.
    r#"
    CREATE TABLE categories (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        hierarchy BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX categories_name ON categories (project_id, name);
    CREATE TABLE promotion_tiers (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        hierarchy BIGINT NOT NULL,
        active BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX promotion_tiers_campaign ON promotion_tiers (project_id, campaign_id, hierarchy);
    CREATE INDEX promotion_tiers_created ON promotion_tiers (project_id, created_at);
    CREATE TABLE promotion_stacks (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX promotion_stacks_campaign ON promotion_stacks (project_id, campaign_id, created_at);
    CREATE TABLE stacking_rules (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id)
    );
    CREATE TABLE cache_versions (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (project_id, name)
    );
    ALTER TABLE redemptions ADD COLUMN promotion_tier_id TEXT;
    CREATE INDEX redemptions_tier ON redemptions (project_id, promotion_tier_id, created_at)
    "#,
    // 5: publications. The next free code of a campaign is found from a cursor on SQLite
    // (its campaign index ends with the rowid, so "after the cursor" is an index range,
    // and the single writer serializes publishers); on PostgreSQL from a partial index of
    // unheld codes with SKIP LOCKED, so concurrent publishers take different codes.
    // Neither slows code generation on the default engine.
    r#"
    CREATE TABLE publications (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        source_id TEXT,
        campaign_id TEXT,
        voucher_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        channel TEXT,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX publications_source ON publications (project_id, source_id);
    CREATE INDEX publications_customer ON publications (project_id, customer_id, campaign_id);
    CREATE INDEX publications_created ON publications (project_id, created_at);
    CREATE INDEX publications_voucher ON publications (project_id, voucher_id);
    CREATE TABLE publication_cursors (
        project_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        after_created TEXT NOT NULL,
        after_row BIGINT NOT NULL,
        PRIMARY KEY (project_id, campaign_id)
    );
    @postgres CREATE INDEX vouchers_unheld ON vouchers (project_id, campaign_id, created_at, id) WHERE holder_id IS NULL
    "#,
    // 6: metadata schemas, at most one per resource type and project.
    r#"
    CREATE TABLE metadata_schemas (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        related_object TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE UNIQUE INDEX metadata_schemas_object ON metadata_schemas (project_id, related_object)
    "#,
    // 7: audience. Segment membership is a table keyed for the O(1) "is this customer in
    // that segment" of validation rules, with a second index for "the customer's
    // segments". Customer attributes are an inverted index (name, value -> customer) so
    // search by email, name, source id or any metadata key reads an index range, never
    // the table. Exports keep their CSV in the database in chunks, so any node can serve
    // the download.
    r#"
    CREATE TABLE segments (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX segments_kind ON segments (project_id, kind, created_at);
    CREATE TABLE segment_members (
        project_id TEXT NOT NULL,
        segment_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        PRIMARY KEY (project_id, segment_id, customer_id)
    );
    CREATE INDEX segment_members_customer ON segment_members (project_id, customer_id);
    CREATE TABLE customer_attrs (
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        PRIMARY KEY (project_id, name, value, customer_id)
    );
    CREATE INDEX customer_attrs_customer ON customer_attrs (project_id, customer_id);
    CREATE TABLE exports (
        project_id TEXT NOT NULL REFERENCES projects (id),
        id TEXT NOT NULL,
        exported_object TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, id)
    );
    CREATE INDEX exports_created ON exports (project_id, created_at);
    CREATE TABLE export_chunks (
        project_id TEXT NOT NULL,
        export_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (project_id, export_id, seq)
    )
    "#,
    // 8: customer data rights. A permanent deletion finds the webhook deliveries made
    // from the customer's events by event id, instead of reading a project's whole
    // delivery log.
    r#"
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (project_id, event_id)
    "#,
    // 9: indexes SQLite can use for what is asked. It has no statistics here, prefers a
    // covering index or one that gives the ORDER BY, and with only the project id for a
    // range read whole projects (see `query_plans.rs`, which pins these plans):
    // - a rule lookup by voucher or campaign (twice per checkout) read every rule
    //   assignment of the project, and a customer's segments (when a rule reads them)
    //   every membership: 8.6 ms a call with 60,000 members;
    // - rolling back a stack read the project's redemptions (children by parent in id
    //   order; the order's remaining redemptions by `order_id`, which no index had);
    // - a customer's last order walked the project's orders newest first, and a
    //   join-once publication check its publications.
    // A redemption's parent and promotion tier are NULL for most rows (single voucher
    // redemptions); partial indexes spare each redemption those two NULL entries.
    r#"
    DROP INDEX redemptions_parent;
    CREATE INDEX redemptions_parent ON redemptions (project_id, parent_id, id) WHERE parent_id IS NOT NULL;
    DROP INDEX redemptions_tier;
    CREATE INDEX redemptions_tier ON redemptions (project_id, promotion_tier_id, created_at) WHERE promotion_tier_id IS NOT NULL;
    CREATE INDEX redemptions_order ON redemptions (project_id, order_id) WHERE order_id IS NOT NULL;
    DROP INDEX rule_assignments_object;
    CREATE INDEX rule_assignments_object ON rule_assignments (project_id, related_object_id, rule_id);
    DROP INDEX segment_members_customer;
    CREATE INDEX segment_members_customer ON segment_members (project_id, customer_id, segment_id);
    DROP INDEX orders_customer;
    CREATE INDEX orders_customer ON orders (project_id, customer_id, created_at, id);
    DROP INDEX publications_customer;
    CREATE INDEX publications_customer ON publications (project_id, customer_id, campaign_id, created_at)
    "#,
    // 10: successful redemptions per campaign (per voucher for standalone vouchers),
    // kept with each redemption and rollback. A `campaign.redemptions.count` rule counted
    // the campaign's redemptions on every check, inside the single writer for a
    // redemption: a read that grew with the campaign. PostgreSQL spreads a campaign's
    // count over a few slots so concurrent redemptions of its codes do not queue on one
    // row; SQLite's single writer uses slot 0 only. Filled here from the redemptions
    // table (one pass over it).
    r#"
    CREATE TABLE redemption_counts (
        project_id TEXT NOT NULL REFERENCES projects (id),
        scope TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        slot BIGINT NOT NULL,
        succeeded BIGINT NOT NULL,
        PRIMARY KEY (project_id, scope, scope_id, slot)
    );
    INSERT INTO redemption_counts (project_id, scope, scope_id, slot, succeeded)
        SELECT project_id, 'campaign_id', campaign_id, 0, COUNT(*) FROM redemptions
        WHERE object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED' AND campaign_id IS NOT NULL
        GROUP BY project_id, campaign_id;
    INSERT INTO redemption_counts (project_id, scope, scope_id, slot, succeeded)
        SELECT project_id, 'voucher_id', voucher_id, 0, COUNT(*) FROM redemptions
        WHERE object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED' AND campaign_id IS NULL AND voucher_id IS NOT NULL
        GROUP BY project_id, voucher_id
    "#,
    // 11: a delivery made by the fan-out keeps no copy of its body (stored as ''): it is
    // built again, byte for byte, from the delivery's columns and its outbox event, so
    // the webhook's URL at fan-out time (part of the body) is kept with it. A stored body
    // of a few kilobytes put each delivery on a page of its own, written when made and
    // again when its attempt was recorded.
    r#"
    ALTER TABLE webhook_deliveries ADD COLUMN target_url TEXT
    "#,
];

pub fn apply(m: &mut dyn Migrator) -> Result<(), StoreError> {
    m.batch("CREATE TABLE IF NOT EXISTS tessera_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        m.run(&mut |c| {
            let done = c.query_opt("SELECT version FROM tessera_migrations WHERE version = $1", &[Val::Int(version)])?;
            if done.is_some() {
                return Ok(());
            }
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                // `@postgres ` / `@sqlite ` mark the few statements only one engine runs.
                let stmt = match (stmt.strip_prefix("@postgres "), stmt.strip_prefix("@sqlite ")) {
                    (Some(s), _) if c.is_postgres() => s,
                    (None, Some(s)) if !c.is_postgres() => s,
                    (Some(_), _) | (_, Some(_)) => continue,
                    (None, None) => stmt,
                };
                c.execute(stmt, &[])?;
            }
            c.execute(
                "INSERT INTO tessera_migrations (version, applied_at) VALUES ($1, $2)",
                &[Val::Int(version), Val::Text(tessera_domain::time::now_string())],
            )?;
            tracing::info!(version, "applied schema migration");
            Ok(())
        })?;
    }
    Ok(())
}
