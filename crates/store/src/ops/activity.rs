//! A customer's activity: what happened to them, newest first, in Voucherify's customer
//! activity shape. Nothing is stored for it; a page is merged from the records that
//! already exist, each read through an index that starts with the customer:
//!
//! | Source | Read through | Activity types |
//! |---|---|---|
//! | outbox events about the customer | `outbox_resource` (project, resource id) | `customer.created`, `customer.updated` |
//! | publications | `publications_customer` | `customer.publication.succeeded` |
//! | redemptions, failures, rollbacks | `redemptions_customer_campaign` | `customer.redemption.succeeded`, `.failed`, `.rollback.succeeded` |
//! | orders | `orders_customer` | `customer.order.created`, `.paid`, `.canceled`, `.fulfilled` (its current status, at its last change) |
//!
//! Each source returns at most one page plus one row, in the page's order, so a page costs
//! four bounded queries whatever the customer's history holds; the sort inside each is over
//! the customer's own index range (no index orders a customer's rows by time, and adding
//! one to redemptions would slow every checkout for a read that is rare). Entries are
//! ordered by time, then id, which makes the order total; a cursor is the id of the last
//! entry seen, looked up for its time.

use crate::conn::{Conn, Val};
use crate::ops::customers;
use crate::ops::docs;
use crate::ops::org::Tenant;
use crate::{Result, Store};
use serde_json::{json, Map, Value};
use tessera_domain::customer::Customer;
use tessera_domain::order::{Order, OrderView};
use tessera_domain::InvalidInput;

/// Voucherify's two activity categories. Which is which is documented for one type only
/// (`customer.order.paid` is an EFFECT); Tessera counts what the API was asked to do to
/// the customer (created, updated, redeemed, rolled back) as ACTION, and what the customer
/// received as a consequence (a code published to them, an order's status) as EFFECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Action,
    Effect,
}

impl Category {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTION" => Some(Category::Action),
            "EFFECT" => Some(Category::Effect),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Category::Action => "ACTION",
            Category::Effect => "EFFECT",
        }
    }
}

/// One page request. Dates are stored-format timestamps; `since` and `until` are
/// inclusive.
#[derive(Debug, Clone)]
pub struct ActivityQuery {
    pub limit: u32,
    pub ascending: bool,
    /// Continue after the entry with this id.
    pub starting_after_id: Option<String>,
    /// Continue after this time (the deprecated `/activities` cursor).
    pub starting_after: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub campaign_id: Option<String>,
    pub campaign_type: Option<String>,
    pub category: Option<Category>,
    /// One activity type (`customer.redemption.succeeded`, ...).
    pub kind: Option<String>,
    /// Count every matching entry as well (the deprecated endpoint answers `total`).
    pub with_total: bool,
}

pub struct ActivityPage {
    pub items: Vec<Value>,
    pub has_more: bool,
    pub total: Option<i64>,
}

pub(crate) struct Source {
    pub(crate) table: &'static str,
    /// The column naming the customer.
    owner: &'static str,
    /// When the entry happened.
    ts: &'static str,
    /// The activity type, from the row.
    kind: &'static str,
    /// Every type `kind` can yield.
    kinds: &'static [&'static str],
    doc: &'static str,
    category: Category,
    /// Whether rows name a campaign (`campaign_id`); others drop out under a campaign filter.
    campaign: bool,
    /// Extra condition on every row.
    only: &'static str,
}

/// The time of publications and redemptions, as an expression rather than the bare
/// column. SQLite (without statistics) would otherwise order and bound by
/// `*_created (project_id, created_at)` and walk the project's rows by time, testing each
/// for the customer; the expression leaves it only the customer's index, and the sort
/// is over the customer's own rows. (`query_plans.rs` pins this.)
const TS_BY_CUSTOMER: &str = "(created_at || '')";

pub(crate) const SOURCES: [Source; 4] = [
    Source {
        table: "outbox",
        owner: "resource_id",
        ts: "created_at",
        kind: "event_type",
        kinds: &["customer.created", "customer.updated"],
        doc: "payload",
        category: Category::Action,
        campaign: false,
        only: "event_type IN ('customer.created', 'customer.updated')",
    },
    Source {
        table: "publications",
        owner: "customer_id",
        ts: TS_BY_CUSTOMER,
        kind: "'customer.publication.succeeded'",
        kinds: &["customer.publication.succeeded"],
        doc: "data",
        category: Category::Effect,
        campaign: true,
        only: "",
    },
    Source {
        table: "redemptions",
        owner: "customer_id",
        ts: TS_BY_CUSTOMER,
        kind: "CASE WHEN object = 'redemption_rollback' THEN 'customer.redemption.rollback.succeeded' \
               WHEN result = 'FAILURE' THEN 'customer.redemption.failed' ELSE 'customer.redemption.succeeded' END",
        kinds: &[
            "customer.redemption.succeeded",
            "customer.redemption.failed",
            "customer.redemption.rollback.succeeded",
        ],
        doc: "data",
        category: Category::Action,
        campaign: true,
        only: "",
    },
    Source {
        table: "orders",
        owner: "customer_id",
        ts: "COALESCE(updated_at, created_at)",
        kind: "CASE status WHEN 'PAID' THEN 'customer.order.paid' WHEN 'CANCELED' THEN 'customer.order.canceled' \
               WHEN 'FULFILLED' THEN 'customer.order.fulfilled' ELSE 'customer.order.created' END",
        kinds: &[
            "customer.order.created",
            "customer.order.paid",
            "customer.order.canceled",
            "customer.order.fulfilled",
        ],
        doc: "data",
        category: Category::Effect,
        campaign: false,
        only: "",
    },
];

struct Entry {
    id: String,
    ts: String,
    kind: String,
    doc: String,
    category: Category,
}

/// Builds a statement's WHERE clause and parameters.
struct Clauses {
    sql: Vec<String>,
    params: Vec<Val>,
}

impl Clauses {
    fn push(&mut self, template: &str, v: impl Into<Val>) {
        self.params.push(v.into());
        self.sql.push(template.replace('?', &format!("${}", self.params.len())));
    }
}

impl Source {
    fn included(&self, q: &ActivityQuery) -> bool {
        q.category.is_none_or(|c| c == self.category)
            && q.kind.as_deref().is_none_or(|k| self.kinds.contains(&k))
            && (self.campaign || (q.campaign_id.is_none() && q.campaign_type.is_none()))
    }

    /// The conditions of `q` on this source, the cursor excepted.
    fn filters(&self, p: &str, customer_id: &str, q: &ActivityQuery) -> Clauses {
        let mut w = Clauses {
            sql: Vec::new(),
            params: Vec::new(),
        };
        w.push("project_id = ?", p);
        w.push(&format!("{} = ?", self.owner), customer_id);
        if !self.only.is_empty() {
            w.sql.push(self.only.to_string());
        }
        if let Some(k) = &q.kind {
            w.push(&format!("{} = ?", self.kind), k.as_str());
        }
        if let Some(id) = &q.campaign_id {
            w.push("campaign_id = ?", id.as_str());
        }
        if let Some(kind) = &q.campaign_type {
            w.sql.push("campaign_id IS NOT NULL".into());
            w.push(
                "campaign_id IN (SELECT id FROM campaigns WHERE project_id = $1 AND campaign_type = ?)",
                kind.as_str(),
            );
        }
        if let Some(t) = &q.since {
            w.push(&format!("{} >= ?", self.ts), t.as_str());
        }
        if let Some(t) = &q.until {
            w.push(&format!("{} <= ?", self.ts), t.as_str());
        }
        w
    }

    fn page(
        &self,
        c: &mut dyn Conn,
        p: &str,
        customer_id: &str,
        q: &ActivityQuery,
        cursor: Option<&(String, String)>,
    ) -> Result<Vec<Entry>> {
        let (sql, params) = self.page_sql(p, customer_id, q, cursor);
        c.query(&sql, &params)?
            .iter()
            .map(|r| {
                Ok(Entry {
                    id: r.text(0)?,
                    ts: r.text(1)?,
                    kind: r.text(2)?,
                    doc: r.text(3)?,
                    category: self.category,
                })
            })
            .collect()
    }

    /// The SQL of one page of this source, and its parameters.
    pub(crate) fn page_sql(&self, p: &str, customer_id: &str, q: &ActivityQuery, cursor: Option<&(String, String)>) -> (String, Vec<Val>) {
        let mut w = self.filters(p, customer_id, q);
        let (cmp, dir) = if q.ascending { (">", "ASC") } else { ("<", "DESC") };
        if let Some(t) = &q.starting_after {
            w.push(&format!("{} {cmp} ?", self.ts), t.as_str());
        }
        if let Some((ts, id)) = cursor {
            let (a, b, c2) = (w.params.len() + 1, w.params.len() + 2, w.params.len() + 3);
            w.sql.push(format!(
                "({ts_col} {cmp} ${a} OR ({ts_col} = ${b} AND id {cmp} ${c2}))",
                ts_col = self.ts
            ));
            w.params.extend([ts.clone().into(), ts.clone().into(), id.clone().into()]);
        }
        w.params.push(Val::Int(i64::from(q.limit) + 1));
        let sql = format!(
            "SELECT id, {} AS ts, {} AS kind, {} FROM {} WHERE {} ORDER BY ts {dir}, id {dir} LIMIT ${}",
            self.ts,
            self.kind,
            self.doc,
            self.table,
            w.sql.join(" AND "),
            w.params.len()
        );
        (sql, w.params)
    }

    fn count(&self, c: &mut dyn Conn, p: &str, customer_id: &str, q: &ActivityQuery) -> Result<i64> {
        let w = self.filters(p, customer_id, q);
        let mut params = w.params;
        if let Some(t) = &q.starting_after {
            let cmp = if q.ascending { ">" } else { "<" };
            params.push(t.clone().into());
            let n = params.len();
            return c
                .query_one(
                    &format!(
                        "SELECT COUNT(*) FROM {} WHERE {} AND {} {cmp} ${n}",
                        self.table,
                        w.sql.join(" AND "),
                        self.ts
                    ),
                    &params,
                )?
                .int(0);
        }
        c.query_one(
            &format!("SELECT COUNT(*) FROM {} WHERE {}", self.table, w.sql.join(" AND ")),
            &params,
        )?
        .int(0)
    }

    /// The time of the entry with this id, if it is this customer's.
    fn time_of(&self, c: &mut dyn Conn, p: &str, customer_id: &str, id: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE project_id = $1 AND id = $2 AND {} = $3",
            self.ts, self.table, self.owner
        );
        match c.query_opt(&sql, &[p.into(), id.into(), customer_id.into()])? {
            Some(r) => Ok(Some(r.text(0)?)),
            None => Ok(None),
        }
    }
}

/// The source an entry id comes from, by its prefix.
fn source_of(id: &str) -> &'static Source {
    let prefix = id.split('_').next().unwrap_or_default();
    match prefix {
        "evt" => &SOURCES[0],
        "pub" => &SOURCES[1],
        "ord" => &SOURCES[3],
        _ => &SOURCES[2],
    }
}

/// The event data of one entry, as Voucherify's `EventCustomer*` schemas name it.
fn event_data(c: &mut dyn Conn, p: &str, cust: &Customer, e: &Entry) -> Result<Value> {
    let doc: Value = serde_json::from_str(&e.doc).unwrap_or(Value::Null);
    let mut data = Map::new();
    let mut put = |k: &str, v: &Value| {
        if !v.is_null() {
            data.insert(k.to_string(), v.clone());
        }
    };
    match e.kind.as_str() {
        "customer.created" | "customer.updated" => put("customer", &doc),
        "customer.publication.succeeded" => {
            put("customer", &doc["customer"]);
            put("publication", &doc);
            put("voucher", &doc["voucher"]);
        }
        k if k.starts_with("customer.order.") => {
            put("customer", &crate::ops::redemptions::simple_customer(cust));
            if let Ok(order) = serde_json::from_value::<Order>(doc) {
                put("order", &serde_json::to_value(OrderView::from(order)).unwrap_or(Value::Null));
            }
        }
        k => {
            put("customer", &doc["customer"]);
            put("order", &doc["order"]);
            put("voucher", &doc["voucher"]);
            put("promotion_tier", &doc["promotion_tier"]);
            if k == "customer.redemption.rollback.succeeded" {
                let original = match doc["redemption"].as_str() {
                    Some(rid) => c
                        .query_opt(
                            "SELECT data FROM redemptions WHERE project_id = $1 AND id = $2",
                            &[p.into(), rid.into()],
                        )?
                        .map(|r| r.json::<Value>(0))
                        .transpose()?,
                    None => None,
                };
                put("redemption", &original.unwrap_or(Value::Null));
                put("redemption_rollback", &doc);
            } else {
                put("redemption", &doc);
            }
        }
    }
    Ok(json!({"data": data, "event_source": {"channel": "API"}}))
}

fn page(c: &mut dyn Conn, p: &str, key: &str, q: &ActivityQuery) -> Result<ActivityPage> {
    let cust: Customer = docs::get(c, &customers::TABLE, p, key)?;
    let cursor = match &q.starting_after_id {
        Some(id) => {
            let ts = source_of(id)
                .time_of(c, p, &cust.id, id)?
                .ok_or_else(|| InvalidInput::param(format!("'starting_after_id' {id} is no activity of customer {}", cust.id)))?;
            Some((ts, id.clone()))
        }
        None => None,
    };
    let mut entries = Vec::new();
    let mut total = q.with_total.then_some(0);
    for s in SOURCES.iter().filter(|s| s.included(q)) {
        entries.extend(s.page(c, p, &cust.id, q, cursor.as_ref())?);
        if let Some(t) = total.as_mut() {
            *t += s.count(c, p, &cust.id, q)?;
        }
    }
    entries.sort_by(|a, b| (&a.ts, &a.id).cmp(&(&b.ts, &b.id)));
    if !q.ascending {
        entries.reverse();
    }
    let has_more = entries.len() > q.limit as usize;
    entries.truncate(q.limit as usize);
    let mut items = Vec::with_capacity(entries.len());
    for e in &entries {
        items.push(json!({
            "id": e.id, "type": e.kind, "category": e.category.as_str(),
            "data": event_data(c, p, &cust, e)?, "created_at": e.ts,
        }));
    }
    Ok(ActivityPage { items, has_more, total })
}

impl Store {
    /// A page of the customer's activity (by id or source id); 404 for a customer that is
    /// not this project's.
    pub async fn customer_activity(&self, t: &Tenant, customer: String, q: ActivityQuery) -> Result<ActivityPage> {
        let p = t.project_id().to_string();
        self.read(move |c| page(c, &p, &customer, &q)).await
    }
}
