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
        status BIGINT,
        body TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, idem_key)
    );
    CREATE INDEX idempotency_created ON idempotency (created_at);
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
