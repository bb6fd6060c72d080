//! Orders of a project.

use crate::conn::Conn;
use crate::ops::customers;
use crate::ops::docs::{self, to_json, Table};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use tessera_domain::customer::{Customer, CustomerInput};
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::order::{Order, OrderInput};
use tessera_domain::time::now_string;

pub const TABLE: Table = Table {
    name: "orders",
    resource_type: "order",
};

pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
    filters: &[],
    default_limit: 10,
};

fn save(c: &mut dyn Conn, p: &str, o: &Order) -> Result<()> {
    c.execute(
        "INSERT INTO orders (project_id, id, source_id, status, customer_id, total_amount, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $9, $6, $7, $8) \
         ON CONFLICT (project_id, id) DO UPDATE SET source_id = excluded.source_id, status = excluded.status, \
         customer_id = excluded.customer_id, total_amount = excluded.total_amount, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            o.id.clone().into(),
            o.source_id.clone().into(),
            o.status.as_str().into(),
            o.customer_id.clone().into(),
            o.created_at.clone().into(),
            o.updated_at.clone().into(),
            to_json(o)?.into(),
            o.total_amount.into(),
        ],
    )?;
    Ok(())
}

/// Resolves a customer reference: details with a source id upsert the customer; a bare
/// id must name an existing one.
fn resolve_customer(c: &mut dyn Conn, p: &str, r: Option<CustomerInput>, id: Option<String>) -> Result<Option<String>> {
    if let Some(r) = r {
        if r.id.is_none() && r.source_id.is_none() {
            return Err(StoreError::Invalid(tessera_domain::InvalidInput::payload(
                "a customer reference needs 'id' or 'source_id'",
            )));
        }
        if r.is_reference_only() {
            // A bare reference reads the customer (creating it for a new source id) but
            // does not rewrite an existing one.
            let key = r.id.clone().or_else(|| r.source_id.clone()).unwrap_or_default();
            if let Some(found) = docs::find::<Customer>(c, &customers::TABLE, p, &key)? {
                return Ok(Some(found.id));
            }
        }
        return Ok(Some(customers::upsert(c, p, r)?.id));
    }
    if let Some(id) = id {
        let cust: Customer = docs::get(c, &customers::TABLE, p, &id)?;
        return Ok(Some(cust.id));
    }
    Ok(None)
}

/// Creates or updates an order (by `id` or `source_id`) with its customer, in the
/// caller's transaction.
pub fn upsert(c: &mut dyn Conn, p: &str, mut input: OrderInput, path_key: Option<&str>) -> Result<Order> {
    if let Some(sid) = &input.source_id {
        c.lock_key(&format!("order:{p}:{sid}"))?;
    }
    let existing: Option<Order> = match path_key {
        Some(k) => Some(docs::get_for_update(c, &TABLE, p, k)?),
        None => match (&input.id, &input.source_id) {
            (Some(id), source) => match docs::find_by_id(c, &TABLE, p, id)? {
                Some(o) => Some(o),
                None => match source {
                    Some(s) => docs::find_by_source_id(c, &TABLE, p, s)?,
                    None => return Err(StoreError::not_found("order", id.clone())),
                },
            },
            (None, Some(s)) => docs::find_by_source_id(c, &TABLE, p, s)?,
            (None, None) => None,
        },
    };
    let existing = match existing {
        Some(o) if path_key.is_none() => docs::relock::<Order>(c, &TABLE, p, &o.id)?,
        other => other,
    };
    let customer_id = resolve_customer(c, p, input.customer.take(), input.customer_id.take())?;
    let referrer_id = resolve_customer(c, p, input.referrer.take(), input.referrer_id.take())?;
    let id = existing.as_ref().map(|o| o.id.clone()).unwrap_or_else(|| new_id("ord"));
    let order = input.build(id, existing.as_ref(), customer_id, referrer_id, &now_string())?;
    save(c, p, &order)?;
    Ok(order)
}

impl Store {
    pub async fn upsert_order(&self, t: &Tenant, input: OrderInput) -> Result<Order> {
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let o = upsert(c, &p, input, None)?;
            crate::ops::metadata_schemas::enforce(c, &p, "order", &o.metadata)?;
            Ok(o)
        })
        .await
    }

    pub async fn update_order(&self, t: &Tenant, key: String, mut input: OrderInput) -> Result<Order> {
        input.id = None;
        input.source_id = None;
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let o = upsert(c, &p, input, Some(&key))?;
            crate::ops::metadata_schemas::enforce(c, &p, "order", &o.metadata)?;
            Ok(o)
        })
        .await
    }

    pub async fn get_order(&self, t: &Tenant, key: String) -> Result<Order> {
        let p = t.project_id().to_string();
        self.read(move |c| docs::get(c, &TABLE, &p, &key)).await
    }

    pub async fn list_orders(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<Order>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| docs::list(c, &TABLE, &p, &q, &[], &[])).await
    }
}
