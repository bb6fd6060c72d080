//! The transactional outbox: events are written in the transaction that caused them, so
//! an event exists if and only if its change committed. Relays read them in id order.

use crate::conn::Conn;
use crate::Result;
use serde_json::Value;
use tessera_domain::ids::new_id;
use tessera_domain::time::now_string;

pub fn emit(c: &mut dyn Conn, project_id: &str, event_type: &str, resource_id: &str, payload: &Value) -> Result<String> {
    emit_json(c, project_id, event_type, resource_id, payload.to_string())
}

/// `emit` for a payload already serialized: a redemption stores the same JSON as its
/// own record and as its event, and serializing it once is a share of the writer's time.
pub fn emit_json(c: &mut dyn Conn, project_id: &str, event_type: &str, resource_id: &str, payload: String) -> Result<String> {
    let id = new_id("evt");
    c.execute(
        "INSERT INTO outbox (id, project_id, event_type, resource_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            id.clone().into(),
            project_id.into(),
            event_type.into(),
            resource_id.into(),
            payload.into(),
            now_string().into(),
        ],
    )?;
    Ok(id)
}
