//! Delivery of outbox events: the relay's ordered reads and cursors, webhooks and their
//! deliveries, and the statistics read model.
//!
//! Every consumer keeps a cursor in `outbox_cursors`. It advances with a compare-and-set
//! in the same transaction as the consumer's own writes (webhook deliveries, statistics),
//! so each event is applied exactly once by those consumers even when two nodes run the
//! relay at once; the one that loses the race rolls back and reads again. Consumers that
//! write elsewhere (NATS) publish first and advance after: at least once, with the event
//! id for deduplication.

use crate::conn::{Conn, Row, Val};
use crate::{Result, Store, StoreError};
use serde::Serialize;
use serde_json::{json, Value};
use tessera_domain::ids::new_id;
use tessera_domain::time::now_string;

/// One event as the relay hands it to consumers.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub project_id: String,
    pub event_type: String,
    pub resource_id: Option<String>,
    pub payload: String,
    pub created_at: String,
    /// The cursor position just after this event.
    pub position: String,
}

/// Where a consumer that has never run starts: before the first event.
pub fn start_position(postgres: bool) -> &'static str {
    if postgres {
        "0:0"
    } else {
        "0"
    }
}

fn row_to_event(r: &Row, postgres: bool) -> Result<Event> {
    let position = if postgres {
        format!("{}:{}", r.text(6)?, r.int(7)?)
    } else {
        r.int(6)?.to_string()
    };
    Ok(Event {
        id: r.text(0)?,
        project_id: r.text(1)?,
        event_type: r.text(2)?,
        resource_id: r.opt_text(3)?,
        payload: r.text(4)?,
        created_at: r.text(5)?,
        position,
    })
}

/// The events after `position`, in commit order; with `payload` false, each event's
/// payload is left empty, for a consumer that reads it again itself.
pub fn read_after(c: &mut dyn Conn, position: &str, limit: i64, payload: bool) -> Result<Vec<Event>> {
    let cols = if payload {
        "id, project_id, event_type, resource_id, payload, created_at"
    } else {
        "id, project_id, event_type, resource_id, '' AS payload, created_at"
    };
    if c.is_postgres() {
        let (txid, seq) = position
            .split_once(':')
            .and_then(|(t, s)| Some((t.to_string(), s.parse::<i64>().ok()?)))
            .ok_or_else(|| StoreError::Internal(format!("bad outbox cursor '{position}'")))?;
        // Below the oldest running transaction's id every writer has finished, so the
        // order (txid, seq) of what is visible there never changes again.
        let rows = c.query(
            &format!(
                "SELECT {cols}, txid::text, seq FROM outbox \
                 WHERE (txid, seq) > (($1::text)::xid8, $2) AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY txid, seq LIMIT $3"
            ),
            &[txid.into(), Val::Int(seq), Val::Int(limit)],
        )?;
        rows.iter().map(|r| row_to_event(r, true)).collect()
    } else {
        let after: i64 = position
            .parse()
            .map_err(|_| StoreError::Internal(format!("bad outbox cursor '{position}'")))?;
        let rows = c.query(
            &format!("SELECT {cols}, rowid FROM outbox WHERE rowid > $1 ORDER BY rowid LIMIT $2"),
            &[Val::Int(after), Val::Int(limit)],
        )?;
        rows.iter().map(|r| row_to_event(r, false)).collect()
    }
}

pub fn cursor(c: &mut dyn Conn, consumer: &str) -> Result<String> {
    Ok(
        match c.query_opt("SELECT position FROM outbox_cursors WHERE consumer = $1", &[consumer.into()])? {
            Some(r) => r.text(0)?,
            None => start_position(c.is_postgres()).to_string(),
        },
    )
}

/// Moves the cursor from `from` to `to`, or fails with a conflict if another relay moved
/// it first (the caller's transaction then rolls back with everything it wrote).
pub fn advance(c: &mut dyn Conn, consumer: &str, from: &str, to: &str) -> Result<()> {
    let now = now_string();
    let moved = c.execute(
        "UPDATE outbox_cursors SET position = $1, updated_at = $2 WHERE consumer = $3 AND position = $4",
        &[to.into(), now.clone().into(), consumer.into(), from.into()],
    )?;
    if moved == 1 {
        return Ok(());
    }
    let exists = c.query_opt("SELECT 1 FROM outbox_cursors WHERE consumer = $1", &[consumer.into()])?;
    if exists.is_none() && from == start_position(c.is_postgres()) {
        c.execute(
            "INSERT INTO outbox_cursors (consumer, position, updated_at) VALUES ($1, $2, $3)",
            &[consumer.into(), to.into(), now.into()],
        )?;
        return Ok(());
    }
    Err(StoreError::Conflict {
        key: "outbox_cursor_moved",
        message: "Cursor moved".into(),
        details: format!("another relay advanced '{consumer}' first"),
    })
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub object: &'static str,
    pub target_url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// The signing secret (Tessera addition; only management credentials see it).
    pub secret: String,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn row_to_webhook(r: &Row) -> Result<Webhook> {
    Ok(Webhook {
        id: r.text(0)?,
        object: "webhook",
        target_url: r.text(1)?,
        events: serde_json::from_str(&r.text(2)?).map_err(|e| StoreError::Internal(format!("webhook events: {e}")))?,
        active: r.int(3)? != 0,
        secret: r.text(4)?,
        created_at: r.text(5)?,
        updated_at: r.opt_text(6)?,
    })
}

const WEBHOOK_COLS: &str = "id, target_url, events, active, secret, created_at, updated_at";

pub(crate) fn project_exists(c: &mut dyn Conn, project_id: &str) -> Result<()> {
    c.query_opt("SELECT 1 FROM projects WHERE id = $1 AND deleted_at IS NULL", &[project_id.into()])?
        .ok_or_else(|| StoreError::not_found("project", project_id))?;
    Ok(())
}

fn load_webhook(c: &mut dyn Conn, project_id: &str, id: &str) -> Result<Webhook> {
    let row = c
        .query_opt(
            &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE project_id = $1 AND id = $2"),
            &[project_id.into(), id.into()],
        )?
        .ok_or_else(|| StoreError::not_found("webhook", id))?;
    row_to_webhook(&row)
}

/// At most this many webhooks per project: each event is matched against all of them.
pub const MAX_WEBHOOKS_PER_PROJECT: i64 = 50;

/// A delivery as the sender needs it.
#[derive(Debug, Clone)]
pub struct Due {
    pub project_id: String,
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub body: String,
    pub attempts: i64,
    pub target_url: String,
    pub secret: String,
    /// The lease it was claimed with: recording the attempt requires it still holds.
    pub lease_until: String,
}

/// Room the sender has for new deliveries right now: what the fan-out may hand it
/// already claimed. Projects and webhooks not listed have the defaults.
#[derive(Debug, Clone, Default)]
pub struct Room {
    pub total: usize,
    pub projects: std::collections::HashMap<String, usize>,
    pub webhooks: std::collections::HashMap<String, usize>,
    pub project_default: usize,
    pub webhook_default: usize,
    /// How long a claim made by the fan-out holds, in seconds.
    pub lease_secs: i64,
}

impl Room {
    /// Takes one place for a delivery to this webhook, if there is one.
    pub fn take(&mut self, project_id: &str, webhook_id: &str) -> bool {
        if self.total == 0 {
            return false;
        }
        let project = *self.projects.get(project_id).unwrap_or(&self.project_default);
        let webhook = *self.webhooks.get(webhook_id).unwrap_or(&self.webhook_default);
        if project == 0 || webhook == 0 {
            return false;
        }
        self.projects.insert(project_id.to_string(), project - 1);
        self.webhooks.insert(webhook_id.to_string(), webhook - 1);
        self.total -= 1;
        true
    }
}

/// What a fan-out made: how many deliveries, and those claimed for the caller to send.
#[derive(Debug, Default)]
pub struct FanOut {
    pub made: usize,
    pub claimed: Vec<Due>,
}

/// When a claim made now for `lease_secs` runs out, as stored.
pub fn lease_end(lease_secs: i64) -> Result<String> {
    Ok(tessera_domain::time::format(
        tessera_domain::time::now()
            .checked_add(jiff::SignedDuration::from_secs(lease_secs))
            .map_err(|e| StoreError::Internal(e.to_string()))?,
    ))
}

/// What a delivery's body is made of: the delivery's own columns and its event. Each is
/// stored, so a body built again later is the same bytes as the one first sent.
struct BodyOf<'a> {
    id: &'a str,
    created_at: &'a str,
    webhook_id: &'a str,
    target_url: &'a str,
    event: &'a Event,
}

/// The event's stored payload as a body's `data`: JSON already, so spliced in as text,
/// only checked, not rebuilt.
fn json_or_null(payload: &str) -> &str {
    if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok() {
        payload
    } else {
        "null"
    }
}

/// A delivery's body: the envelope, then the event's stored payload as `data`, spliced
/// in as text (it is JSON already; parsing it into a tree to write it out again was most
/// of a fan-out's cost).
fn delivery_body(d: &BodyOf) -> Result<String> {
    let (e, data) = (d.event, json_or_null(&d.event.payload));
    #[derive(Serialize)]
    struct Source<'a> {
        id: &'a str,
        object: &'static str,
        target_url: &'a str,
    }
    #[derive(Serialize)]
    struct EventRef<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        created_at: &'a str,
        entity_id: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Envelope<'a> {
        id: &'a str,
        project_id: &'a str,
        created_at: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        source: Source<'a>,
        event: EventRef<'a>,
    }
    let mut body = serde_json::to_string(&Envelope {
        id: d.id,
        project_id: &e.project_id,
        created_at: d.created_at,
        event_type: &e.event_type,
        source: Source {
            id: d.webhook_id,
            object: "webhook",
            target_url: d.target_url,
        },
        event: EventRef {
            id: &e.id,
            event_type: &e.event_type,
            created_at: &e.created_at,
            entity_id: e.resource_id.as_deref(),
        },
    })
    .map_err(|err| StoreError::Internal(format!("delivery body: {err}")))?;
    // The envelope is an object, so its text ends with `}`.
    body.pop();
    body.reserve(data.len() + 9);
    body.push_str(",\"data\":");
    body.push_str(data);
    body.push('}');
    Ok(body)
}

/// The body of a delivery made now (`id`, `created_at`) of `event` to `webhook`, as
/// the fan-out would store its parts: what a relay that sends before its fan-out has
/// committed sends.
pub fn webhook_body(id: &str, created_at: &str, webhook: &Webhook, event: &Event) -> Result<String> {
    delivery_body(&BodyOf {
        id,
        created_at,
        webhook_id: &webhook.id,
        target_url: &webhook.target_url,
        event,
    })
}

/// Whether `webhook` gets a delivery of `event`: subscribed to its type, and made before
/// it (a webhook does not receive what happened before it existed).
pub fn receives(webhook: &Webhook, event: &Event) -> bool {
    webhook.created_at <= event.created_at && subscribed(&webhook.events, &event.event_type)
}

/// A delivery a relay made and started sending before its fan-out committed (possible
/// only for the sole server of a database, see `fan_out_decided`).
#[derive(Debug, Clone)]
pub struct Decided {
    pub event_id: String,
    pub webhook_id: String,
    pub id: String,
    pub created_at: String,
    /// The URL its body names (the webhook's when the relay read it).
    pub target_url: String,
    pub lease_until: String,
}

/// The active webhooks of a project, as the fan-out matches events against them.
fn active_hooks(c: &mut dyn Conn, project_id: &str) -> Result<Vec<Webhook>> {
    c.query(
        &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE project_id = $1 AND active = 1 LIMIT 1000"),
        &[project_id.into()],
    )?
    .iter()
    .map(row_to_webhook)
    .collect()
}

/// One delivery row. Its body is not stored: it is built from these columns and the
/// event whenever it is needed, the same bytes every time.
fn insert_delivery(
    c: &mut dyn Conn,
    e: &Event,
    id: &str,
    webhook_id: &str,
    target_url: &str,
    created_at: &str,
    lease_until: Option<&str>,
) -> Result<()> {
    let status = if lease_until.is_some() { "delivering" } else { "pending" };
    c.execute(
        "INSERT INTO webhook_deliveries (project_id, id, webhook_id, event_id, event_type, body, target_url, status, attempts, next_attempt_at, lease_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, '', $6, $7, 0, $8, $9, $8, $8)",
        &[
            e.project_id.clone().into(),
            id.into(),
            webhook_id.into(),
            e.id.clone().into(),
            e.event_type.clone().into(),
            target_url.into(),
            status.into(),
            created_at.into(),
            lease_until.map(str::to_string).into(),
        ],
    )?;
    Ok(())
}

/// What one attempt found.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The start of the receiver's answer, for the delivery log.
    pub response: Option<String>,
}

/// Webhooks with a delivery due now (or whose claim by a stopped node ran out). Two
/// EXISTS, not one with an OR: each is a range on the `due` index, where the OR made
/// SQLite walk every delivery the webhook ever had.
pub(crate) const DUE_WEBHOOKS_SQL: &str = "SELECT w.project_id, w.id FROM webhooks w WHERE w.active = 1 AND (\
     EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.project_id = w.project_id AND d.webhook_id = w.id \
     AND d.status = 'pending' AND d.next_attempt_at <= $1) \
     OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.project_id = w.project_id AND d.webhook_id = w.id \
     AND d.status = 'delivering' AND d.lease_until < $1)) LIMIT 10000";

pub(crate) const CLAIM_RUN_OUT: &str = "status = 'delivering' AND lease_until < $4";
pub(crate) const CLAIM_DUE: &str = "status = 'pending' AND next_attempt_at <= $4";

/// Claims up to `$5` of one webhook's deliveries matching `which` (one of the two above;
/// each a range on the `due` index, where one query with an OR of both read every
/// delivery the webhook ever had).
pub(crate) fn claim_sql(which: &str, lock: &str) -> String {
    format!(
        "UPDATE webhook_deliveries SET status = 'delivering', lease_until = $1 WHERE (project_id, id) IN (\
         SELECT project_id, id FROM webhook_deliveries WHERE project_id = $2 AND webhook_id = $3 AND {which} \
         ORDER BY next_attempt_at LIMIT $5{lock}) \
         RETURNING project_id, id, webhook_id, event_id, body, attempts, created_at, target_url"
    )
}

impl Store {
    pub async fn create_webhook(&self, project_id: String, target_url: String, events: Vec<String>, active: bool) -> Result<Webhook> {
        self.write(move |c| {
            project_exists(c, &project_id)?;
            let n = c
                .query_one("SELECT COUNT(*) FROM webhooks WHERE project_id = $1", &[project_id.clone().into()])?
                .int(0)?;
            if n >= MAX_WEBHOOKS_PER_PROJECT {
                return Err(StoreError::Invalid(tessera_domain::InvalidInput {
                    key: "limit_exceeded",
                    message: "Too many webhooks".into(),
                    details: format!("A project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks."),
                }));
            }
            let id = new_id("wh");
            let secret = tessera_domain::webhook::new_secret();
            let events_json = serde_json::to_string(&events).map_err(|e| StoreError::Internal(e.to_string()))?;
            c.execute(
                "INSERT INTO webhooks (project_id, id, target_url, events, active, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    project_id.clone().into(),
                    id.clone().into(),
                    target_url.into(),
                    events_json.into(),
                    active.into(),
                    secret.into(),
                    now_string().into(),
                ],
            )?;
            load_webhook(c, &project_id, &id)
        })
        .await
    }

    pub async fn update_webhook(
        &self,
        project_id: String,
        id: String,
        target_url: Option<String>,
        events: Option<Vec<String>>,
        active: Option<bool>,
    ) -> Result<Webhook> {
        self.write(move |c| {
            project_exists(c, &project_id)?;
            let mut w = load_webhook(c, &project_id, &id)?;
            if let Some(u) = target_url {
                w.target_url = u;
            }
            if let Some(e) = events {
                w.events = e;
            }
            if let Some(a) = active {
                w.active = a;
            }
            let events_json = serde_json::to_string(&w.events).map_err(|e| StoreError::Internal(e.to_string()))?;
            c.execute(
                "UPDATE webhooks SET target_url = $1, events = $2, active = $3, updated_at = $4 WHERE project_id = $5 AND id = $6",
                &[
                    w.target_url.clone().into(),
                    events_json.into(),
                    w.active.into(),
                    now_string().into(),
                    project_id.clone().into(),
                    id.clone().into(),
                ],
            )?;
            load_webhook(c, &project_id, &id)
        })
        .await
    }

    pub async fn get_webhook(&self, project_id: String, id: String) -> Result<Webhook> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            load_webhook(c, &project_id, &id)
        })
        .await
    }

    pub async fn list_webhooks(&self, project_id: String) -> Result<Vec<Webhook>> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            c.query(
                &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE project_id = $1 ORDER BY created_at, id LIMIT 1000"),
                &[project_id.into()],
            )?
            .iter()
            .map(row_to_webhook)
            .collect()
        })
        .await
    }

    /// Deletes the webhook; deliveries not yet made are cancelled, the log stays.
    pub async fn delete_webhook(&self, project_id: String, id: String) -> Result<()> {
        self.write(move |c| {
            project_exists(c, &project_id)?;
            load_webhook(c, &project_id, &id)?;
            c.execute("DELETE FROM webhooks WHERE project_id = $1 AND id = $2", &[project_id.clone().into(), id.clone().into()])?;
            c.execute(
                "UPDATE webhook_deliveries SET status = 'canceled', updated_at = $1 WHERE project_id = $2 AND webhook_id = $3 AND status IN ('pending', 'delivering')",
                &[now_string().into(), project_id.into(), id.into()],
            )?;
            Ok(())
        })
        .await
    }

    /// Deliveries of a webhook, newest first, optionally of one status.
    pub async fn list_deliveries(&self, project_id: String, webhook_id: String, status: Option<String>, limit: i64) -> Result<Vec<Value>> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            load_webhook(c, &project_id, &webhook_id)?;
            let rows = c.query(
                "SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status, replay_of, created_at, updated_at \
                 FROM webhook_deliveries WHERE project_id = $1 AND webhook_id = $2 AND ($3 = '' OR status = $3) ORDER BY id DESC LIMIT $4",
                &[
                    project_id.into(),
                    webhook_id.clone().into(),
                    status.unwrap_or_default().into(),
                    Val::Int(limit),
                ],
            )?;
            rows.iter().map(|r| delivery_view(r, &webhook_id)).collect()
        })
        .await
    }

    /// One delivery with its body and every attempt.
    pub async fn get_delivery(&self, project_id: String, webhook_id: String, id: String) -> Result<Value> {
        self.read(move |c| {
            project_exists(c, &project_id)?;
            let row = c
                .query_opt(
                    &format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE project_id = $1 AND webhook_id = $2 AND id = $3"),
                    &[project_id.clone().into(), webhook_id.clone().into(), id.clone().into()],
                )?
                .ok_or_else(|| StoreError::not_found("webhook_delivery", &id))?;
            let mut v = delivery_view(&row, &webhook_id)?;
            let stored = stored_of(&row, &project_id, &webhook_id)?;
            let body = bodies(c, std::slice::from_ref(&stored), false)?.pop().flatten();
            v["body"] = body.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or(Value::Null);
            let attempts = c.query(
                "SELECT attempt, started_at, duration_ms, status_code, error, response FROM webhook_attempts \
                 WHERE project_id = $1 AND delivery_id = $2 ORDER BY attempt LIMIT 100",
                &[project_id.into(), id.into()],
            )?;
            v["attempts"] = attempts
                .iter()
                .map(|a| {
                    Ok(json!({
                        "attempt": a.int(0)?, "started_at": a.text(1)?, "duration_ms": a.int(2)?,
                        "status_code": a.opt_int(3)?, "error": a.opt_text(4)?, "response": a.opt_text(5)?,
                    }))
                })
                .collect::<Result<Vec<Value>>>()?
                .into();
            Ok(v)
        })
        .await
    }

    /// Sends an event again: a new delivery with the same body, due now.
    pub async fn replay_delivery(&self, project_id: String, webhook_id: String, id: String) -> Result<Value> {
        self.write(move |c| {
            project_exists(c, &project_id)?;
            load_webhook(c, &project_id, &webhook_id)?;
            let row = c
                .query_opt(
                    &format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE project_id = $1 AND webhook_id = $2 AND id = $3"),
                    &[project_id.clone().into(), webhook_id.clone().into(), id.clone().into()],
                )?
                .ok_or_else(|| StoreError::not_found("webhook_delivery", &id))?;
            // The replay sends what the original sent, so it stores that body: its own
            // id and date would make another.
            let stored = stored_of(&row, &project_id, &webhook_id)?;
            let body = bodies(c, std::slice::from_ref(&stored), true)?
                .pop()
                .flatten()
                .ok_or_else(|| StoreError::Internal(format!("the event of webhook delivery {id} is gone")))?;
            let new = new_id("whs");
            let now = now_string();
            c.execute(
                "INSERT INTO webhook_deliveries (project_id, id, webhook_id, event_id, event_type, body, status, attempts, next_attempt_at, replay_of, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $7, $7)",
                &[
                    project_id.clone().into(),
                    new.clone().into(),
                    webhook_id.clone().into(),
                    stored.event_id.clone().into(),
                    row.text(2)?.into(),
                    body.into(),
                    now.into(),
                    id.into(),
                ],
            )?;
            let row = c.query_one(
                "SELECT id, event_id, event_type, status, attempts, next_attempt_at, last_status, replay_of, created_at, updated_at \
                 FROM webhook_deliveries WHERE project_id = $1 AND id = $2",
                &[project_id.into(), new.into()],
            )?;
            delivery_view(&row, &webhook_id)
        })
        .await
    }

    /// The relay's read: the events after the consumer's cursor, and that cursor.
    pub async fn outbox_batch(&self, consumer: &'static str, limit: i64) -> Result<(String, Vec<Event>)> {
        self.read(move |c| {
            let from = cursor(c, consumer)?;
            let events = read_after(c, &from, limit, true)?;
            Ok((from, events))
        })
        .await
    }

    /// `outbox_batch` without the payloads, for the webhook fan-out: it reads them again
    /// inside its own transaction (a deletion may scrub one in between), so copying a
    /// redemption's few kilobytes here as well was wasted.
    pub async fn outbox_heads(&self, consumer: &'static str, limit: i64) -> Result<(String, Vec<Event>)> {
        self.read(move |c| {
            let from = cursor(c, consumer)?;
            let events = read_after(c, &from, limit, false)?;
            Ok((from, events))
        })
        .await
    }

    /// Advances a consumer whose effects live outside the database (NATS), after they
    /// were made.
    pub async fn outbox_advance(&self, consumer: &'static str, from: String, to: String) -> Result<()> {
        self.write_unmarked(move |c| advance(c, consumer, &from, &to)).await
    }

    /// The webhook consumer: turns each event into one delivery per active webhook of its
    /// project subscribed to its type (and created before it), and advances the cursor,
    /// in one transaction. Deliveries within `room` are made already claimed for
    /// `room.lease_secs` and handed back to be sent at once; the rest wait, due now, for
    /// a claim round. A delivery claimed here costs one write less and reaches its
    /// receiver without waiting for that round.
    pub async fn fan_out_webhooks(&self, consumer: &'static str, from: String, events: Vec<Event>, room: Room) -> Result<FanOut> {
        self.write_unmarked(move |c| {
            let mut room = room;
            let Some(last) = events.last() else { return Ok(FanOut::default()) };
            let to = last.position.clone();
            let mut hooks: std::collections::HashMap<String, Vec<Webhook>> = std::collections::HashMap::new();
            // Which webhooks each event goes to, decided before anything is written.
            let mut targets: Vec<(&Event, Vec<usize>)> = Vec::new();
            for e in &events {
                if !hooks.contains_key(&e.project_id) {
                    let list = active_hooks(c, &e.project_id)?;
                    hooks.insert(e.project_id.clone(), list);
                }
                let matching: Vec<usize> = hooks[&e.project_id]
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| receives(w, e))
                    .map(|(i, _)| i)
                    .collect();
                if !matching.is_empty() {
                    targets.push((e, matching));
                }
            }
            let current = current_events(c, targets.iter().map(|(e, _)| e.id.clone()).collect(), true)?;
            let now = now_string();
            let until = lease_end(room.lease_secs)?;
            let mut out = FanOut::default();
            for (e, matching) in targets {
                // An event gone from the outbox has nothing left to deliver.
                let Some(event) = current.get(&e.id) else { continue };
                for w in matching.into_iter().map(|i| &hooks[&e.project_id][i]) {
                    let id = new_id("whs");
                    let claimed = room.take(&e.project_id, &w.id);
                    let lease = claimed.then_some(until.as_str());
                    insert_delivery(c, e, &id, &w.id, &w.target_url, &now, lease)?;
                    out.made += 1;
                    if claimed {
                        let body = delivery_body(&BodyOf {
                            id: &id,
                            created_at: &now,
                            webhook_id: &w.id,
                            target_url: &w.target_url,
                            event,
                        })?;
                        out.claimed.push(Due {
                            project_id: e.project_id.clone(),
                            id,
                            webhook_id: w.id.clone(),
                            event_id: e.id.clone(),
                            body,
                            attempts: 0,
                            target_url: w.target_url.clone(),
                            secret: w.secret.clone(),
                            lease_until: until.clone(),
                        });
                    }
                }
            }
            advance(c, consumer, &from, &to)?;
            Ok(out)
        })
        .await
    }

    /// The events after `position` (not the consumer's stored cursor): for a relay that
    /// reads on while its previous fan-out is still queued.
    pub async fn outbox_after(&self, position: String, limit: i64) -> Result<Vec<Event>> {
        self.read(move |c| read_after(c, &position, limit, true)).await
    }

    /// The active webhooks of these projects.
    pub async fn active_webhooks(&self, projects: Vec<String>) -> Result<std::collections::HashMap<String, Vec<Webhook>>> {
        self.read(move |c| {
            let mut out = std::collections::HashMap::new();
            for p in projects {
                let list = active_hooks(c, &p)?;
                out.insert(p, list);
            }
            Ok(out)
        })
        .await
    }

    /// The webhook fan-out of a relay that is the database's sole server: it decided the
    /// deliveries it had room for and started sending them before this commits (from
    /// what it read just after the events committed), and this records them as made and
    /// claimed, with the rest of each event's deliveries pending, and moves the cursor,
    /// in one transaction. Queued, not awaited: the relay reads on meanwhile, and a
    /// later fan-out's compare-and-set on the cursor fails if this one did not commit.
    ///
    /// The webhooks are read again here: a decided delivery whose webhook is gone or off
    /// by now is not recorded (it was sent as one already in flight at that moment is),
    /// and one the relay did not see gets a pending delivery.
    pub async fn submit_fan_out_decided(
        &self,
        consumer: &'static str,
        from: String,
        events: Vec<Event>,
        decided: Vec<Decided>,
    ) -> Result<impl std::future::Future<Output = Result<usize>> + Send + 'static> {
        self.submit_unmarked(move |c| {
            let Some(last) = events.last() else { return Ok(0) };
            let to = last.position.clone();
            let mut decided: std::collections::HashMap<(String, String), Decided> = decided
                .into_iter()
                .map(|d| ((d.event_id.clone(), d.webhook_id.clone()), d))
                .collect();
            let mut hooks: std::collections::HashMap<String, Vec<Webhook>> = std::collections::HashMap::new();
            let now = now_string();
            let mut made = 0;
            for e in &events {
                if !hooks.contains_key(&e.project_id) {
                    let list = active_hooks(c, &e.project_id)?;
                    hooks.insert(e.project_id.clone(), list);
                }
                for w in hooks[&e.project_id].iter().filter(|w| receives(w, e)) {
                    match decided.remove(&(e.id.clone(), w.id.clone())) {
                        Some(d) => insert_delivery(c, e, &d.id, &w.id, &d.target_url, &d.created_at, Some(&d.lease_until))?,
                        None => insert_delivery(c, e, &new_id("whs"), &w.id, &w.target_url, &now, None)?,
                    }
                    made += 1;
                }
            }
            advance(c, consumer, &from, &to)?;
            Ok(made)
        })
        .await
    }

    /// Webhooks with a delivery due now (or whose claim by a stopped node ran out).
    pub async fn due_webhooks(&self) -> Result<Vec<(String, String)>> {
        self.read(move |c| {
            let now = now_string();
            c.query(DUE_WEBHOOKS_SQL, &[now.into()])?
                .iter()
                .map(|r| Ok((r.text(0)?, r.text(1)?)))
                .collect()
        })
        .await
    }

    /// Claims, for each (project, webhook, n), up to `n` of its due deliveries for
    /// `lease_secs`, in one transaction. Asking per webhook lets the sender take only
    /// what it has room to send for each receiver.
    pub async fn claim_deliveries(&self, quota: Vec<(String, String, i64)>, lease_secs: i64) -> Result<Vec<Due>> {
        self.write_unmarked(move |c| {
            let now = now_string();
            let until = lease_end(lease_secs)?;
            // SKIP LOCKED lets every PostgreSQL node claim a different share at once.
            let lock = if c.is_postgres() { " FOR UPDATE SKIP LOCKED" } else { "" };
            // Claims whose node stopped first (they are the oldest), then deliveries due.
            let (expired, due) = (claim_sql(CLAIM_RUN_OUT, lock), claim_sql(CLAIM_DUE, lock));
            let mut out = Vec::new();
            for (project_id, webhook_id, n) in quota {
                let hook = c.query_opt(
                    "SELECT target_url, secret, active FROM webhooks WHERE project_id = $1 AND id = $2",
                    &[project_id.clone().into(), webhook_id.clone().into()],
                )?;
                let Some(hook) = hook.filter(|h| h.int(2).is_ok_and(|a| a != 0)) else {
                    continue;
                };
                let (target_url, secret) = (hook.text(0)?, hook.text(1)?);
                let mut rows = Vec::new();
                for sql in [&expired, &due] {
                    let left = n - rows.len() as i64;
                    if left <= 0 {
                        break;
                    }
                    rows.extend(c.query(
                        sql,
                        &[
                            until.clone().into(),
                            project_id.clone().into(),
                            webhook_id.clone().into(),
                            now.clone().into(),
                            Val::Int(left),
                        ],
                    )?);
                }
                let stored = rows
                    .iter()
                    .map(|r| {
                        Ok(Stored {
                            project_id: r.text(0)?,
                            id: r.text(1)?,
                            webhook_id: r.text(2)?,
                            event_id: r.text(3)?,
                            body: r.text(4)?,
                            created_at: r.text(6)?,
                            target_url: r.opt_text(7)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let bodies = bodies(c, &stored, true)?;
                for ((d, body), r) in stored.into_iter().zip(bodies).zip(&rows) {
                    let Some(body) = body else {
                        // Its event is gone (only damage does that): nothing can be sent,
                        // and retrying would not bring it back.
                        tracing::warn!(delivery = %d.id, event = %d.event_id, "webhook delivery without its event, canceled");
                        c.execute(
                            "UPDATE webhook_deliveries SET status = 'canceled', lease_until = NULL, updated_at = $1 WHERE project_id = $2 AND id = $3",
                            &[now.clone().into(), d.project_id.into(), d.id.into()],
                        )?;
                        continue;
                    };
                    out.push(Due {
                        project_id: d.project_id,
                        id: d.id,
                        webhook_id: d.webhook_id,
                        event_id: d.event_id,
                        body,
                        attempts: r.int(5)?,
                        target_url: target_url.clone(),
                        secret: secret.clone(),
                        lease_until: until.clone(),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Forgets finished deliveries (succeeded, dead, canceled) last changed before
    /// `cutoff`, with their attempts, at most `limit` per call so each call is short.
    pub async fn purge_webhook_log(&self, cutoff: String, limit: i64) -> Result<u64> {
        self.write_unmarked(move |c| {
            let old = c.query(
                "SELECT project_id, id FROM webhook_deliveries WHERE status IN ('succeeded', 'dead', 'canceled') AND updated_at < $1 LIMIT $2",
                &[cutoff.into(), Val::Int(limit)],
            )?;
            for r in &old {
                let (p, id) = (r.text(0)?, r.text(1)?);
                c.execute(
                    "DELETE FROM webhook_attempts WHERE project_id = $1 AND delivery_id = $2",
                    &[p.clone().into(), id.clone().into()],
                )?;
                c.execute("DELETE FROM webhook_deliveries WHERE project_id = $1 AND id = $2", &[p.into(), id.into()])?;
            }
            Ok(old.len() as u64)
        })
        .await
    }

    /// Logs attempts and moves each delivery on: `succeeded`, `pending` again at
    /// `retry_at`, or `dead` when `retry_at` is `None` after a failure. One transaction
    /// for many attempts keeps delivery from competing with checkout for the writer.
    pub async fn record_attempts(&self, done: Vec<(Due, AttemptResult, bool, Option<String>)>) -> Result<()> {
        self.write_unmarked(move |c| {
            for (d, result, succeeded, retry_at) in done {
                record_attempt(c, d, result, succeeded, retry_at)?;
            }
            Ok(())
        })
        .await
    }
}

/// PostgreSQL refuses NUL in text; a receiver's answer may hold any bytes.
fn clean(s: Option<String>) -> Option<String> {
    s.map(|s| if s.contains('\0') { s.replace('\0', "\u{fffd}") } else { s })
}

/// The events with these ids as they are now, read inside the caller's transaction: a
/// body sent is built from the current payload, which a permanent deletion may have
/// scrubbed since the relay read its batch. With `lock`, on PostgreSQL the rows are
/// share-locked, in id order (the order a deletion updates them in, so the two cannot
/// deadlock): a deletion still running is waited for, and one that starts later waits
/// for this transaction.
fn current_events(c: &mut dyn Conn, mut ids: Vec<String>, lock: bool) -> Result<std::collections::HashMap<String, Event>> {
    ids.sort();
    ids.dedup();
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    let lock = if lock && c.is_postgres() { " FOR SHARE" } else { "" };
    for chunk in ids.chunks(100) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let params: Vec<Val> = chunk.iter().map(|id| id.clone().into()).collect();
        let rows = c.query(
            &format!(
                "SELECT id, project_id, event_type, resource_id, payload, created_at FROM outbox WHERE id IN ({}) ORDER BY id{lock}",
                marks.join(", ")
            ),
            &params,
        )?;
        for r in rows {
            let e = Event {
                id: r.text(0)?,
                project_id: r.text(1)?,
                event_type: r.text(2)?,
                resource_id: r.opt_text(3)?,
                payload: r.text(4)?,
                created_at: r.text(5)?,
                position: String::new(),
            };
            out.insert(e.id.clone(), e);
        }
    }
    Ok(out)
}

/// A delivery as stored, for its body.
struct Stored {
    project_id: String,
    id: String,
    webhook_id: String,
    event_id: String,
    /// '' when it is to be built (every delivery a fan-out made since schema 11).
    body: String,
    created_at: String,
    target_url: Option<String>,
}

/// A delivery's columns for its log entry (`delivery_view`) and its body (`stored_of`).
const DELIVERY_COLS: &str =
    "id, event_id, event_type, status, attempts, next_attempt_at, last_status, replay_of, created_at, updated_at, body, target_url";

/// A row read with `DELIVERY_COLS`, for its body.
fn stored_of(r: &Row, project_id: &str, webhook_id: &str) -> Result<Stored> {
    Ok(Stored {
        project_id: project_id.to_string(),
        id: r.text(0)?,
        webhook_id: webhook_id.to_string(),
        event_id: r.text(1)?,
        body: r.text(10)?,
        created_at: r.text(8)?,
        target_url: r.opt_text(11)?,
    })
}

/// The bodies of `rows`, in order: the stored text, or the body built again from the
/// delivery and its event (`None` when that event is not in the delivery's project).
fn bodies(c: &mut dyn Conn, rows: &[Stored], lock: bool) -> Result<Vec<Option<String>>> {
    let wanted: Vec<String> = rows.iter().filter(|d| d.body.is_empty()).map(|d| d.event_id.clone()).collect();
    let events = if wanted.is_empty() {
        std::collections::HashMap::new()
    } else {
        current_events(c, wanted, lock)?
    };
    rows.iter()
        .map(|d| {
            if !d.body.is_empty() {
                return Ok(Some(d.body.clone()));
            }
            let (Some(event), Some(target_url)) = (events.get(&d.event_id), d.target_url.as_deref()) else {
                return Ok(None);
            };
            if event.project_id != d.project_id {
                return Ok(None);
            }
            delivery_body(&BodyOf {
                id: &d.id,
                created_at: &d.created_at,
                webhook_id: &d.webhook_id,
                target_url,
                event,
            })
            .map(Some)
        })
        .collect()
}

/// Records one attempt if this sender still holds the delivery's claim (the lease it was
/// claimed with, status `delivering`); a claim that ran out and was taken by another
/// round, or a delivery cancelled meanwhile, is left as it is.
fn record_attempt(c: &mut dyn Conn, d: Due, result: AttemptResult, succeeded: bool, retry_at: Option<String>) -> Result<()> {
    let attempt = d.attempts + 1;
    let (status, next) = match (succeeded, retry_at) {
        (true, _) => ("succeeded", now_string()),
        (false, Some(at)) => ("pending", at),
        (false, None) => ("dead", now_string()),
    };
    let moved = c.execute(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, lease_until = NULL, last_status = $4, updated_at = $5 \
         WHERE project_id = $6 AND id = $7 AND status = 'delivering' AND lease_until = $8",
        &[
            status.into(),
            Val::Int(attempt),
            next.into(),
            result.status_code.map(i64::from).into(),
            now_string().into(),
            d.project_id.clone().into(),
            d.id.clone().into(),
            d.lease_until.clone().into(),
        ],
    )?;
    if moved == 0 {
        return Ok(());
    }
    c.execute(
        "INSERT INTO webhook_attempts (project_id, delivery_id, attempt, started_at, duration_ms, status_code, error, response) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        &[
            d.project_id.into(),
            d.id.into(),
            Val::Int(attempt),
            result.started_at.into(),
            Val::Int(result.duration_ms),
            result.status_code.map(i64::from).into(),
            clean(result.error).into(),
            clean(result.response).into(),
        ],
    )?;
    Ok(())
}

impl Store {
    /// The statistics consumer: per campaign and per voucher and UTC day, redemptions,
    /// failures, rollbacks, and the discount and gift credits given. Applied with the
    /// cursor in one transaction, so exactly once.
    pub async fn apply_stats(&self, consumer: &'static str, from: String, events: Vec<Event>) -> Result<usize> {
        let Some(last) = events.last() else { return Ok(0) };
        let to = last.position.clone();
        // Parsed and summed here, on the relay's task, so the single writer runs one
        // upsert per counter and day instead of parsing every payload and updating the
        // campaign's row once per redemption.
        let mut sums: std::collections::BTreeMap<(String, &'static str, String, String), [i64; 5]> = std::collections::BTreeMap::new();
        let mut applied = 0;
        for e in &events {
            let (redemptions, failed, rolled_back, sign) = match e.event_type.as_str() {
                "redemption.succeeded" => (1, 0, 0, 1),
                "redemption.failed" => (0, 1, 0, 0),
                "redemption.rollback.succeeded" => (0, 0, 1, -1),
                _ => continue,
            };
            let p: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
            let items = stats_items(&p);
            if items.is_empty() {
                continue;
            }
            let day: String = e.created_at.chars().take(10).collect();
            for r in items {
                for (scope, id) in [("voucher", r.voucher_id.as_deref()), ("campaign", r.campaign_id.as_deref())] {
                    let Some(id) = id else { continue };
                    let sum = sums.entry((e.project_id.clone(), scope, id.to_string(), day.clone())).or_default();
                    for (total, add) in sum
                        .iter_mut()
                        .zip([redemptions, failed, rolled_back, sign * r.discount, sign * r.gift])
                    {
                        *total += add;
                    }
                }
            }
            applied += 1;
        }
        self.write_unmarked(move |c| {
            for ((project_id, scope, id, day), [redemptions, failed, rolled_back, discount, gift]) in sums {
                c.execute(
                    "INSERT INTO stats_daily (project_id, scope, scope_id, day, redemptions, failed, rolled_back, discount_amount, gift_amount) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (project_id, scope, scope_id, day) DO UPDATE SET \
                     redemptions = stats_daily.redemptions + excluded.redemptions, failed = stats_daily.failed + excluded.failed, \
                     rolled_back = stats_daily.rolled_back + excluded.rolled_back, \
                     discount_amount = stats_daily.discount_amount + excluded.discount_amount, \
                     gift_amount = stats_daily.gift_amount + excluded.gift_amount",
                    &[
                        project_id.into(),
                        scope.into(),
                        id.into(),
                        day.into(),
                        Val::Int(redemptions),
                        Val::Int(failed),
                        Val::Int(rolled_back),
                        Val::Int(discount),
                        Val::Int(gift),
                    ],
                )?;
            }
            advance(c, consumer, &from, &to)?;
            Ok(applied)
        })
        .await
    }

    /// Daily statistics of a campaign or voucher (by id), oldest day first.
    pub async fn stats(
        &self,
        t: &crate::ops::org::Tenant,
        scope: &'static str,
        scope_id: String,
        from: String,
        to: String,
    ) -> Result<Vec<Value>> {
        let project_id = t.project_id().to_string();
        self.read(move |c| {
            c.query(
                "SELECT day, redemptions, failed, rolled_back, discount_amount, gift_amount FROM stats_daily \
                 WHERE project_id = $1 AND scope = $2 AND scope_id = $3 AND day >= $4 AND day <= $5 ORDER BY day LIMIT 400",
                &[project_id.into(), scope.into(), scope_id.into(), from.into(), to.into()],
            )?
            .iter()
            .map(|r| {
                Ok(json!({
                    "day": r.text(0)?, "redemptions": r.int(1)?, "failed": r.int(2)?, "rolled_back": r.int(3)?,
                    "discount_amount": r.int(4)?, "gift_amount": r.int(5)?,
                }))
            })
            .collect()
        })
        .await
    }
}

/// One voucher's part of a redemption event, as the statistics count it.
struct StatsItem {
    voucher_id: Option<String>,
    campaign_id: Option<String>,
    discount: i64,
    gift: i64,
}

/// Redemption and rollback events carry the redemption object. Each voucher's redemption
/// has its own event; the parent of a stacked redemption (no voucher) has one too and is
/// not counted again. The discount is what the voucher's own calculated order applied.
fn stats_items(p: &Value) -> Vec<StatsItem> {
    if p["promotion_tier"]["id"].is_string() {
        // A promotion tier counts for its campaign.
        return vec![StatsItem {
            voucher_id: None,
            campaign_id: p["promotion_tier"]["campaign_id"].as_str().map(String::from),
            discount: p["order"]["total_applied_discount_amount"].as_i64().unwrap_or(0).abs(),
            gift: 0,
        }];
    }
    let Some(voucher_id) = p["voucher"]["id"].as_str() else {
        return Vec::new();
    };
    vec![StatsItem {
        voucher_id: Some(voucher_id.to_string()),
        campaign_id: p["voucher"]["campaign_id"].as_str().map(String::from),
        discount: p["order"]["total_applied_discount_amount"]
            .as_i64()
            .or(p["order"]["total_discount_amount"].as_i64())
            .unwrap_or(0)
            .abs(),
        gift: p["gift"]["amount"].as_i64().unwrap_or(0).abs(),
    }]
}

/// Whether a webhook subscribed to `types` receives `event_type`. The spec's enum spells
/// some types with a typo (`..._aded`); both spellings match.
pub fn subscribed(types: &[String], event_type: &str) -> bool {
    types.iter().any(|t| t == event_type || t.replace("_aded", "_added") == event_type)
}

fn delivery_view(r: &Row, webhook_id: &str) -> Result<Value> {
    Ok(json!({
        "id": r.text(0)?, "object": "webhook_delivery", "webhook_id": webhook_id,
        "event": {"id": r.text(1)?, "type": r.text(2)?},
        "status": r.text(3)?, "attempts": r.int(4)?, "next_attempt_at": r.text(5)?,
        "last_status_code": r.opt_int(6)?, "replay_of": r.opt_text(7)?,
        "created_at": r.text(8)?, "updated_at": r.text(9)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_both_spellings() {
        let t = vec!["voucher.gift.balance_aded".to_string(), "redemption.succeeded".to_string()];
        assert!(subscribed(&t, "voucher.gift.balance_added"));
        assert!(subscribed(&t, "redemption.succeeded"));
        assert!(!subscribed(&t, "redemption.failed"));
    }

    #[test]
    fn stats_items_of_single_and_stacked_redemptions() {
        let single = json!({"voucher": {"id": "v1", "campaign_id": "c1"}, "order": {"total_applied_discount_amount": 150}});
        let items = stats_items(&single);
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].voucher_id.as_deref(), items[0].campaign_id.as_deref(), items[0].discount),
            (Some("v1"), Some("c1"), 150)
        );
        let parent = json!({"related_object_type": "redemption", "order": {"total_applied_discount_amount": 150}});
        assert!(stats_items(&parent).is_empty(), "a stacked parent is counted through its children");
        let gift = json!({"voucher": {"id": "g"}, "gift": {"amount": 70}});
        assert_eq!(stats_items(&gift)[0].gift, 70);
    }
}
