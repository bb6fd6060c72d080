//! Customers of a project.

use crate::conn::Conn;
use crate::ops::docs::{self, to_json, Table};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use std::collections::HashMap;
use tessera_domain::customer::{Customer, CustomerInput, CustomerSummary};
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::metadata_schema::MetadataSchema;
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

pub const TABLE: Table = Table {
    name: "customers",
    resource_type: "customer",
};

pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt, SortField::SourceId],
    filters: &["email", "name", "city", "source_id"],
    default_limit: 10,
};

fn save(c: &mut dyn Conn, project_id: &str, cust: &Customer) -> Result<()> {
    let city = cust.address.as_ref().and_then(|a| a.city.clone());
    c.execute(
        "INSERT INTO customers (project_id, id, source_id, email, name, city, created_at, updated_at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (project_id, id) DO UPDATE SET source_id = excluded.source_id, email = excluded.email, \
         name = excluded.name, city = excluded.city, updated_at = excluded.updated_at, data = excluded.data",
        &[
            project_id.into(),
            cust.id.clone().into(),
            cust.source_id.clone().into(),
            cust.email.clone().into(),
            cust.name.clone().into(),
            city.into(),
            cust.created_at.clone().into(),
            cust.updated_at.clone().into(),
            to_json(cust)?.into(),
        ],
    )?;
    after_write(c, project_id, cust)
}

/// Saves an update of `old`. When nothing but the timestamp changed (an order or a
/// redemption naming a known customer), what is derived from the customer is left as it
/// is, which keeps those checkout writes as cheap as before.
fn save_update(c: &mut dyn Conn, project_id: &str, cust: &Customer, old: &Customer) -> Result<()> {
    let same = Customer {
        updated_at: None,
        ..cust.clone()
    } == Customer {
        updated_at: None,
        ..old.clone()
    };
    if !same {
        return save(c, project_id, cust);
    }
    c.execute(
        "UPDATE customers SET updated_at = $1, data = $2 WHERE project_id = $3 AND id = $4",
        &[
            cust.updated_at.clone().into(),
            to_json(cust)?.into(),
            project_id.into(),
            cust.id.clone().into(),
        ],
    )?;
    Ok(())
}

/// Keeps what is derived from a customer in step with it, in the same transaction: the
/// attribute index behind search and auto-update segment membership. Every write of a
/// customer row goes through here.
pub(crate) fn after_write(c: &mut dyn Conn, project_id: &str, cust: &Customer) -> Result<()> {
    crate::ops::segments::refresh_member(c, project_id, cust)?;
    c.execute(
        "DELETE FROM customer_attrs WHERE project_id = $1 AND customer_id = $2",
        &[project_id.into(), cust.id.clone().into()],
    )?;
    for (name, value) in cust.attributes() {
        c.execute(
            "INSERT INTO customer_attrs (project_id, name, value, customer_id) VALUES ($1, $2, $3, $4)",
            &[project_id.into(), name.into(), value.into(), cust.id.clone().into()],
        )?;
    }
    Ok(())
}

/// Removes what is derived from a customer that no longer exists.
pub(crate) fn after_delete(c: &mut dyn Conn, project_id: &str, customer_id: &str) -> Result<()> {
    for table in ["customer_attrs", "segment_members"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE project_id = $1 AND customer_id = $2"),
            &[project_id.into(), customer_id.into()],
        )?;
    }
    Ok(())
}

/// Creates a customer or, when `id` or `source_id` names an existing one, updates it.
/// Runs inside a write transaction; also used by orders to upsert their customer.
pub fn upsert(c: &mut dyn Conn, project_id: &str, input: CustomerInput) -> Result<Customer> {
    upsert_with(c, project_id, input, true)
}

/// The upsert a checkout makes of the customer it names: when the request changes none
/// of the customer's fields, nothing is written and `updated_at` stays. A shop sends
/// the same customer with every order; rewriting its row (and its `updated_at` index
/// entry) on each redemption was a sizeable share of the writer's time, and it made
/// concurrent redemptions by one customer queue on that row on PostgreSQL.
pub fn upsert_for_checkout(c: &mut dyn Conn, project_id: &str, input: CustomerInput) -> Result<Customer> {
    upsert_with(c, project_id, input, false)
}

/// `upsert_for_checkout` for a customer the caller has just read in this transaction
/// by the input's own `source_id`, on SQLite: its single writer runs one transaction at a
/// time, so that read is current, and looking the customer up twice more (by source id,
/// then by id to lock it) was three lookups and document parses per redemption.
pub fn upsert_for_checkout_read(c: &mut dyn Conn, project_id: &str, input: CustomerInput, read: Customer) -> Result<Customer> {
    debug_assert!(!c.is_postgres() && input.id.is_none() && input.source_id == read.source_id);
    apply_upsert(c, project_id, input, Some(read), false)
}

fn upsert_with(c: &mut dyn Conn, project_id: &str, input: CustomerInput, touch: bool) -> Result<Customer> {
    let existing = find_for_upsert(c, project_id, &input)?;
    apply_upsert(c, project_id, input, existing, touch)
}

fn apply_upsert(c: &mut dyn Conn, project_id: &str, input: CustomerInput, existing: Option<Customer>, touch: bool) -> Result<Customer> {
    let now = now_string();
    let created = existing.is_none();
    let cust = match &existing {
        Some(e) => {
            let mut cust = input.update(e, &now);
            let stamp = std::mem::replace(&mut cust.updated_at, e.updated_at.clone());
            if touch || cust != *e {
                cust.updated_at = stamp;
                save_update(c, project_id, &cust, e)?;
            }
            cust
        }
        None => {
            let cust = input.create(new_id("cust"), &now);
            save(c, project_id, &cust)?;
            cust
        }
    };
    // Updates made on the way (an order naming its customer) are not events: every
    // redemption would emit one.
    if created {
        emit(c, project_id, "customer.created", &cust)?;
    }
    Ok(cust)
}

/// The customer an upsert input names by `id` or `source_id`, locked for the rest of
/// the transaction (PostgreSQL), or none. An `id` naming no customer, with no
/// `source_id` to fall back on, is an error.
fn find_for_upsert(c: &mut dyn Conn, project_id: &str, input: &CustomerInput) -> Result<Option<Customer>> {
    if let Some(sid) = &input.source_id {
        c.lock_key(&format!("customer:{project_id}:{sid}"))?;
    }
    let existing = match (&input.id, &input.source_id) {
        (Some(id), source) => match docs::find_by_id::<Customer>(c, &TABLE, project_id, id)? {
            Some(found) => Some(found),
            None => match source {
                Some(s) => docs::find_by_source_id(c, &TABLE, project_id, s)?,
                // An id names a customer Tessera created; an unknown one is a mistake.
                None => return Err(StoreError::not_found("customer", id.clone())),
            },
        },
        (None, Some(s)) => docs::find_by_source_id(c, &TABLE, project_id, s)?,
        (None, None) => None,
    };
    match existing {
        Some(e) => docs::relock::<Customer>(c, &TABLE, project_id, &e.id),
        None => Ok(None),
    }
}

/// How an import row was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Created,
    Updated,
}

/// Upserts one imported customer: the validation and the metadata schema check of the
/// customer endpoints, then `save`, so `after_write` keeps everything derived from the
/// customer in step, as for any other write. `schema` is the project's customer schema,
/// read once per batch (`metadata_schemas::by_resource`). With `merge_metadata` (CSV
/// rows), the row's metadata properties are set on the customer's metadata instead of
/// replacing it. The row must name its customer (`source_id`, or the `id` of one that
/// exists). No event is written: a file of a million rows would otherwise send a
/// million webhooks; the import's async action reports what happened.
///
/// `Ok(Err(_))` means the row was refused and nothing was written for it; `Err(_)` is a
/// storage failure after which the transaction must not be committed as it is.
pub fn import(
    c: &mut dyn Conn,
    project_id: &str,
    mut input: CustomerInput,
    merge_metadata: bool,
    schema: Option<&MetadataSchema>,
) -> Result<std::result::Result<Imported, InvalidInput>> {
    if let Err(e) = input.validate() {
        return Ok(Err(e));
    }
    if let Err(e) = tessera_domain::import::require_key(&input.id, &input.source_id) {
        return Ok(Err(e));
    }
    let existing = match find_for_upsert(c, project_id, &input) {
        Ok(e) => e,
        Err(StoreError::NotFound { resource_type, id }) => {
            return Ok(Err(InvalidInput::payload(format!("{resource_type} {id} not found"))));
        }
        Err(e) => return Err(e),
    };
    let now = now_string();
    let (cust, outcome) = match &existing {
        Some(e) => {
            if merge_metadata {
                if let Some(Some(m)) = input.metadata.take() {
                    let mut merged = e.metadata.clone();
                    merged.extend(m);
                    input.metadata = Some(Some(merged));
                }
            }
            (input.update(e, &now), Imported::Updated)
        }
        None => (input.create(new_id("cust"), &now), Imported::Created),
    };
    if let Err(e) = crate::ops::metadata_schemas::check(schema, &cust.metadata) {
        return Ok(Err(match e {
            StoreError::Invalid(i) => i,
            other => return Err(other),
        }));
    }
    if let Err(e) = tessera_domain::customer::check_metadata("metadata", &cust.metadata) {
        return Ok(Err(e));
    }
    match &existing {
        Some(e) => save_update(c, project_id, &cust, e)?,
        None => save(c, project_id, &cust)?,
    }
    Ok(Ok(outcome))
}

fn emit(c: &mut dyn Conn, project_id: &str, kind: &str, cust: &Customer) -> Result<()> {
    let payload = serde_json::to_value(cust).map_err(|e| StoreError::Internal(e.to_string()))?;
    crate::ops::outbox::emit(c, project_id, kind, &cust.id, &payload).map(|_| ())
}

/// A customer's last order (the order index ends with `created_at, id`, so this is the
/// end of the customer's range, not a walk of the project's orders).
pub(crate) const LAST_ORDER_SQL: &str = "SELECT total_amount, created_at FROM orders WHERE project_id = $1 AND customer_id = $2 \
     AND status <> 'CANCELED' ORDER BY created_at DESC, id DESC LIMIT 1";

/// Order statistics per customer, from the orders table (canceled orders excluded).
pub(crate) fn summaries(c: &mut dyn Conn, project_id: &str, ids: &[String]) -> Result<HashMap<String, CustomerSummary>> {
    let mut out = HashMap::new();
    for id in ids {
        let row = c.query_one(
            "SELECT COUNT(*), CAST(COALESCE(SUM(total_amount), 0) AS BIGINT) FROM orders WHERE project_id = $1 AND customer_id = $2 AND status <> 'CANCELED'",
            &[project_id.into(), id.into()],
        )?;
        let (count, total) = (row.int(0)?, row.int(1)?);
        let mut s = CustomerSummary::default();
        if count > 0 {
            let last = c.query_one(LAST_ORDER_SQL, &[project_id.into(), id.into()])?;
            s.orders.total_count = count;
            s.orders.total_amount = total;
            s.orders.average_amount = total / count;
            s.orders.last_order_amount = last.int(0)?;
            s.orders.last_order_date = Some(last.text(1)?);
        }
        out.insert(id.clone(), s);
    }
    Ok(out)
}

impl Store {
    /// Summaries for customers about to be returned (at most a page of them).
    pub async fn customer_summaries(&self, t: &Tenant, ids: Vec<String>) -> Result<HashMap<String, CustomerSummary>> {
        let p = t.project_id().to_string();
        self.read(move |c| summaries(c, &p, &ids)).await
    }

    pub async fn upsert_customer(&self, t: &Tenant, input: CustomerInput) -> Result<Customer> {
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let cust = upsert(c, &p, input)?;
            // The customer endpoints answer to the schema; implicit upserts (a
            // redemption naming a new customer) do not, so a checkout never fails on it.
            crate::ops::metadata_schemas::enforce(c, &p, "customer", &cust.metadata)?;
            if cust.updated_at.is_some() {
                emit(c, &p, "customer.updated", &cust)?;
            }
            Ok(cust)
        })
        .await
    }

    pub async fn get_customer(&self, t: &Tenant, key: String) -> Result<Customer> {
        let p = t.project_id().to_string();
        self.read(move |c| docs::get(c, &TABLE, &p, &key)).await
    }

    pub async fn update_customer(&self, t: &Tenant, key: String, mut input: CustomerInput) -> Result<Customer> {
        // The path names the customer; identifiers in the body cannot redirect the update.
        input.id = None;
        input.source_id = None;
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let existing: Customer = docs::get_for_update(c, &TABLE, &p, &key)?;
            let cust = input.update(&existing, &now_string());
            crate::ops::metadata_schemas::enforce(c, &p, "customer", &cust.metadata)?;
            save_update(c, &p, &cust, &existing)?;
            emit(c, &p, "customer.updated", &cust)?;
            Ok(cust)
        })
        .await
    }

    pub async fn delete_customer(&self, t: &Tenant, key: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = docs::delete(c, &TABLE, &p, &key)?;
            after_delete(c, &p, &id)?;
            crate::ops::outbox::emit(c, &p, "customer.deleted", &id, &serde_json::json!({"id": id, "object": "customer"}))?;
            Ok(())
        })
        .await
    }

    /// Customers matching the list filters, a segment and attribute values
    /// (`("metadata.region", "EU")`), each an index lookup.
    pub async fn list_customers(
        &self,
        t: &Tenant,
        q: ListQuery,
        segment: Option<String>,
        attrs: Vec<(String, String)>,
    ) -> Result<(Vec<Customer>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let mut extra: Vec<(&str, Vec<crate::conn::Val>)> = Vec::new();
            if let Some(seg) = segment {
                extra.push((
                    "id IN (SELECT customer_id FROM segment_members WHERE project_id = $1 AND segment_id = ?)",
                    vec![seg.into()],
                ));
            }
            for (name, value) in attrs {
                extra.push((
                    "id IN (SELECT customer_id FROM customer_attrs WHERE project_id = $1 AND name = ? AND value = ?)",
                    vec![name.into(), value.into()],
                ));
            }
            let filters = [("email", "email"), ("name", "name"), ("city", "city"), ("source_id", "source_id")];
            docs::list_where(c, &TABLE, &p, &q, &filters, &[], &extra)
        })
        .await
    }
}
