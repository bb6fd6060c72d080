//! Voucher imports (JSON and CSV) as async actions.
//!
//! Rows are checked for shape here and staged in the database in batches; the job then
//! imports them batch by batch. A CSV upload is streamed to a temporary file and parsed
//! from there, so memory does not grow with the file.

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::io::Write;
use tessera_store::Tenant;

/// Largest CSV upload accepted.
pub const MAX_CSV_BYTES: usize = 200 * 1024 * 1024;
/// Rows staged per write.
const STAGE_BATCH: usize = 1000;
/// Largest row count one import may hold.
const MAX_ROWS: i64 = 5_000_000;

fn accepted(action: String) -> Response {
    (StatusCode::ACCEPTED, Json(json!({"async_action_id": action}))).into_response()
}

async fn import_json(s: &AppState, t: &Tenant, kind: &'static str, campaign: Option<String>, rows: Vec<Value>) -> ApiResult<Response> {
    if rows.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid payload",
            "send a non-empty array of vouchers",
        ));
    }
    let missing = rows.iter().filter(|r| !r.get("code").is_some_and(Value::is_string)).count();
    if missing > 0 {
        return Err(ApiError::bad_request(
            "invalid_voucher",
            "Invalid Voucher",
            format!("Found {missing} voucher(s) without 'code' value"),
        ));
    }
    if let Some(c) = &campaign {
        s.store.get_campaign(t, c.clone()).await?;
    }
    let action = s
        .store
        .begin_import(t, kind, json!({"campaign_id": campaign, "rows": rows.len()}))
        .await?;
    let numbered: Vec<(i64, Value)> = rows.into_iter().enumerate().map(|(i, r)| (i as i64 + 1, r)).collect();
    for chunk in numbered.chunks(STAGE_BATCH) {
        s.store.stage_import_rows(t, action.clone(), chunk.to_vec()).await?;
    }
    s.store.finish_staging(t, action.clone(), None).await?;
    s.store.start_async_action(t, action.clone()).await?;
    Ok(accepted(action))
}

/// Imports vouchers into a campaign from a JSON array.
#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/import", tag = "Campaigns", request_body = Vec<Object>, params(("campaignId" = String, Path)),
    responses((status = 202, description = "`{async_action_id}`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn campaign_import(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    ApiJson(rows): ApiJson<Vec<Value>>,
) -> ApiResult<Response> {
    let camp = s.store.get_campaign(&t, id).await?;
    import_json(&s, &t, "CAMPAIGN.VOUCHERS_IMPORT", Some(camp.campaign.id), rows).await
}

/// Imports standalone vouchers (or vouchers naming their campaign) from a JSON array.
#[utoipa::path(post, path = "/v1/vouchers/import", tag = "Vouchers", request_body = Vec<Object>,
    responses((status = 202, description = "`{async_action_id}`"), (status = 400, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn vouchers_import(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(rows): ApiJson<Vec<Value>>) -> ApiResult<Response> {
    import_json(&s, &t, "VOUCHERS.IMPORT", None, rows).await
}

fn bool_cell(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// One CSV row as a voucher definition. Amounts are integers in minor units; unknown
/// columns become metadata; counters (redeemed quantity/amount) are not importable, since
/// they must come from real redemptions.
pub fn csv_row(headers: &[String], record: &csv::StringRecord) -> Result<Value, String> {
    let mut v = Map::new();
    let mut metadata = Map::new();
    let mut value: Option<String> = None;
    let mut discount_type: Option<String> = None;
    for (h, cell) in headers.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let int = |name: &str| {
            cell.parse::<i64>()
                .map_err(|_| format!("'{name}' must be an integer, got '{cell}'"))
        };
        match h.trim().to_ascii_lowercase().as_str() {
            "code" => {
                v.insert("code".into(), cell.into());
            }
            "voucher type" => {
                v.insert("type".into(), cell.to_ascii_uppercase().into());
            }
            "value" => value = Some(cell.to_string()),
            "discount type" => discount_type = Some(cell.to_ascii_uppercase()),
            "gift amount" => {
                v.insert("gift".into(), json!({"amount": int("Gift Amount")?}));
            }
            "category" => {
                v.insert("category".into(), cell.into());
            }
            "start date" => {
                v.insert("start_date".into(), cell.into());
            }
            "expiration date" => {
                v.insert("expiration_date".into(), cell.into());
            }
            "redemption limit" => {
                v.insert("redemption".into(), json!({"quantity": int("Redemption Limit")?}));
            }
            "active" => {
                v.insert(
                    "active".into(),
                    bool_cell(cell)
                        .ok_or_else(|| format!("'Active' must be true or false, got '{cell}'"))?
                        .into(),
                );
            }
            "additional info" => {
                v.insert("additional_info".into(), cell.into());
            }
            "redeemed quantity" | "redeemed amount" | "loyalty points" => {
                return Err(format!("column '{h}' cannot be imported: counters come from real redemptions"));
            }
            _ => {
                metadata.insert(h.trim().to_string(), cell.into());
            }
        }
    }
    if let Some(val) = value {
        let n: f64 = val.parse().map_err(|_| format!("'Value' must be a number, got '{val}'"))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("DISCOUNT_VOUCHER").to_string();
        if kind == "GIFT_VOUCHER" {
            v.insert("gift".into(), json!({"amount": n as i64}));
        } else {
            let dt = discount_type.unwrap_or_else(|| "AMOUNT".into());
            let d = match dt.as_str() {
                "PERCENT" => json!({"type": "PERCENT", "percent_off": n}),
                "FIXED" => json!({"type": "FIXED", "fixed_amount": n as i64}),
                "UNIT" => json!({"type": "UNIT", "unit_off": n as i64}),
                _ => json!({"type": "AMOUNT", "amount_off": n as i64}),
            };
            v.insert("discount".into(), d);
        }
    }
    if !metadata.is_empty() {
        v.insert("metadata".into(), Value::Object(metadata));
    }
    if !v.contains_key("code") {
        return Err("the row has no Code".into());
    }
    Ok(Value::Object(v))
}

/// Streams the uploaded `file` field to a temporary file.
async fn receive_file(mut mp: Multipart) -> ApiResult<tempfile_path::TempPath> {
    let path = tempfile_path::TempPath::new();
    let mut file = std::fs::File::create(&path.0).map_err(|_| ApiError::internal())?;
    let mut size = 0usize;
    let mut found = false;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request("invalid_payload", "Invalid payload", e.to_string()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        found = true;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::bad_request("invalid_payload", "Invalid payload", e.to_string()))?
        {
            size += chunk.len();
            if size > MAX_CSV_BYTES {
                return Err(crate::json::too_large());
            }
            file.write_all(&chunk).map_err(|_| ApiError::internal())?;
        }
    }
    if !found {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid payload",
            "send the CSV as the multipart field 'file'",
        ));
    }
    file.flush().map_err(|_| ApiError::internal())?;
    Ok(path)
}

mod tempfile_path {
    /// A temporary file removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn new() -> Self {
            TempPath(std::env::temp_dir().join(format!("tessera-import-{}.csv", tessera_domain::ids::new_id("up"))))
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Parses the CSV on a blocking thread and stages it batch by batch. Rows that do not
/// parse are staged as failures to report, so the import goes on around them.
async fn import_csv(s: &AppState, t: &Tenant, kind: &'static str, campaign: Option<String>, mp: Multipart) -> ApiResult<Response> {
    let path = receive_file(mp).await?;
    let action = s.store.begin_import(t, kind, json!({"campaign_id": campaign})).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<(i64, Value)>, String>>(4);
    let file = path.0.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let mut reader = match csv::ReaderBuilder::new().flexible(true).from_path(&file) {
            Ok(r) => r,
            Err(e) => return tx.blocking_send(Err(format!("cannot read the CSV: {e}"))).ok(),
        };
        let headers: Vec<String> = match reader.headers() {
            Ok(h) => h.iter().map(str::to_string).collect(),
            Err(e) => return tx.blocking_send(Err(format!("cannot read the CSV header: {e}"))).ok(),
        };
        if !headers.iter().any(|h| h.trim().eq_ignore_ascii_case("code")) {
            return tx.blocking_send(Err("the CSV needs a 'Code' column".into())).ok();
        }
        let mut batch = Vec::with_capacity(STAGE_BATCH);
        for (i, rec) in reader.records().enumerate() {
            let row_no = i as i64 + 2;
            if row_no > MAX_ROWS {
                return tx.blocking_send(Err(format!("an import may hold at most {MAX_ROWS} rows"))).ok();
            }
            let row = match rec {
                Ok(r) => csv_row(&headers, &r).unwrap_or_else(|e| json!({"invalid": e})),
                Err(e) => json!({"invalid": format!("malformed CSV: {e}")}),
            };
            batch.push((row_no, row));
            if batch.len() == STAGE_BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return None;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
        Some(())
    });
    let mut rows = 0i64;
    let mut error = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok(batch) => {
                rows += batch.len() as i64;
                s.store.stage_import_rows(t, action.clone(), batch).await?;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let _ = parser.await;
    drop(path);
    if let Some(e) = error {
        s.store.finish_staging(t, action, Some(e.clone())).await?;
        return Err(ApiError::bad_request("invalid_payload", "Invalid CSV", e));
    }
    s.store.set_import_size(t, action.clone(), rows).await?;
    s.store.finish_staging(t, action.clone(), None).await?;
    s.store.start_async_action(t, action.clone()).await?;
    Ok(accepted(action))
}

/// Imports vouchers into a campaign from a CSV file (multipart field `file`).
#[utoipa::path(post, path = "/v1/campaigns/{campaignId}/importCSV", tag = "Campaigns", params(("campaignId" = String, Path)),
    responses((status = 202, description = "`{async_action_id}`"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn campaign_import_csv(
    State(s): State<AppState>,
    Auth(t): Auth<Tenant>,
    Path(id): Path<String>,
    mp: Multipart,
) -> ApiResult<Response> {
    let camp = s.store.get_campaign(&t, id).await?;
    import_csv(&s, &t, "CAMPAIGN.VOUCHERS_IMPORT_CSV", Some(camp.campaign.id), mp).await
}

/// Imports vouchers from a CSV file (multipart field `file`).
#[utoipa::path(post, path = "/v1/vouchers/importCSV", tag = "Vouchers",
    responses((status = 202, description = "`{async_action_id}`"), (status = 400, body = ErrorBody)), security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn vouchers_import_csv(State(s): State<AppState>, Auth(t): Auth<Tenant>, mp: Multipart) -> ApiResult<Response> {
    import_csv(&s, &t, "VOUCHERS.IMPORT_CSV", None, mp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(headers: &[&str], cells: &[&str]) -> Result<Value, String> {
        let h: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        csv_row(&h, &csv::StringRecord::from(cells.to_vec()))
    }

    #[test]
    fn csv_rows_map_to_vouchers() {
        let v = row(
            &["Code", "Voucher Type", "Value", "Discount Type", "Active", "Region"],
            &["A1", "DISCOUNT_VOUCHER", "15", "PERCENT", "false", "EU"],
        )
        .expect("valid");
        assert_eq!(v["discount"]["percent_off"], 15.0);
        assert_eq!(v["active"], false);
        assert_eq!(v["metadata"]["Region"], "EU");
        let g = row(&["Code", "Gift Amount"], &["G1", "5000"]).expect("valid");
        assert_eq!(g["gift"]["amount"], 5000);
        assert!(row(&["Code", "Active"], &["X", "maybe"]).is_err());
        assert!(row(&["Code", "Redeemed Quantity"], &["X", "4"]).is_err());
        assert!(row(&["Category"], &["x"]).is_err());
    }
}

/// What the CSV splitter hands the request: the header, then chunks of rows, then the
/// row count; or why the file cannot be imported at all.
enum Split {
    Header(Vec<String>),
    Chunk(i64, String),
    Rows(i64),
}

/// Reads the uploaded CSV on a blocking thread into staged chunks (see
/// `tessera_domain::import::Chunk`). A record that is not UTF-8, or is too long, is kept
/// as an unreadable row with its reason, so the import reports it and goes on.
fn split_csv(file: std::path::PathBuf, chunk_rows: usize, tx: tokio::sync::mpsc::Sender<Result<Split, String>>) {
    use tessera_domain::import::{Chunk, CHUNK_BYTES, MAX_RECORD_BYTES};
    let send = |m: Result<Split, String>| tx.blocking_send(m).is_ok();
    let mut reader = match csv::ReaderBuilder::new().flexible(true).from_path(&file) {
        Ok(r) => r,
        Err(e) => {
            send(Err(format!("cannot read the CSV: {e}")));
            return;
        }
    };
    let header = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            send(Err(format!("cannot read the CSV header: {e}")));
            return;
        }
    };
    let header: Option<Vec<String>> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            std::str::from_utf8(h)
                .ok()
                .map(|s| if i == 0 { s.trim_start_matches('\u{feff}') } else { s }.to_string())
        })
        .collect();
    let Some(header) = header.filter(|h| h.iter().any(|c| !c.trim().is_empty())) else {
        send(Err("the CSV needs a header line (UTF-8) naming its columns".into()));
        return;
    };
    if !send(Ok(Split::Header(header))) {
        return;
    }
    let mut rec = csv::ByteRecord::new();
    let mut chunk = Chunk::default();
    let (mut bytes, mut first, mut row) = (0usize, 1i64, 0i64);
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                send(Err(format!("cannot read the CSV after row {row}: {e}")));
                return;
            }
        }
        // A blank line is no row.
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        row += 1;
        if row > MAX_ROWS {
            send(Err(format!("an import may hold at most {MAX_ROWS} rows")));
            return;
        }
        let size = rec.as_slice().len();
        let cells: Option<Vec<String>> = if size > MAX_RECORD_BYTES {
            None
        } else {
            rec.iter().map(|f| std::str::from_utf8(f).ok().map(str::to_string)).collect()
        };
        match cells {
            Some(cells) => chunk.cells.push(cells),
            None => {
                let why = if size > MAX_RECORD_BYTES {
                    format!("the row is longer than {MAX_RECORD_BYTES} bytes")
                } else {
                    "the row is not valid UTF-8".to_string()
                };
                chunk.unreadable.insert(chunk.cells.len(), why);
                chunk.cells.push(Vec::new());
            }
        }
        bytes += size.min(MAX_RECORD_BYTES);
        if chunk.len() >= chunk_rows || bytes >= CHUNK_BYTES {
            let payload = serde_json::to_string(&std::mem::take(&mut chunk)).unwrap_or_default();
            if !send(Ok(Split::Chunk(first, payload))) {
                return;
            }
            first = row + 1;
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        let payload = serde_json::to_string(&chunk).unwrap_or_default();
        if !send(Ok(Split::Chunk(first, payload))) {
            return;
        }
    }
    send(Ok(Split::Rows(row)));
}

/// Refuses a header that lacks what every row needs (checked before anything is staged).
fn check_header(kind: &str, header: &[String]) -> Result<(), String> {
    let has = |names: &[&str]| {
        header
            .iter()
            .any(|h| names.contains(&tessera_domain::import::normalize_header(h).as_str()))
    };
    let key = has(&["source_id", "sourceid", "id"]);
    match kind {
        "SKUS.IMPORT_CSV" if !has(&["product_id", "productid"]) || !has(&["source_id", "sourceid"]) => {
            Err("the CSV needs 'product_id' and 'source_id' columns".into())
        }
        _ if !key => {
            Err("the CSV needs a 'source_id' column: an import upserts by source_id, so running it again updates the same records".into())
        }
        _ => Ok(()),
    }
}

/// A customers, products or SKUs CSV import: streamed to a temporary file, split into
/// chunks on a blocking thread and staged, then run as an async action.
async fn records_csv(s: &AppState, t: &Tenant, kind: &'static str, mp: Multipart, status: StatusCode) -> ApiResult<Response> {
    let path = receive_file(mp).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Split, String>>(4);
    let file = path.0.clone();
    let chunk_rows = tessera_domain::import::chunk_rows(s.store.engine_name());
    let splitter = tokio::task::spawn_blocking(move || split_csv(file, chunk_rows, tx));
    let mut action: Option<String> = None;
    let mut rows = 0i64;
    let mut error = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok(Split::Header(h)) => {
                if let Err(e) = check_header(kind, &h) {
                    error = Some(e);
                    break;
                }
                action = Some(s.store.begin_import(t, kind, tessera_store::imports::csv_params(&h)).await?);
            }
            Ok(Split::Chunk(first, payload)) => {
                let a = action.clone().ok_or_else(ApiError::internal)?;
                s.store.stage_import_chunk(t, a, first, payload).await?;
            }
            Ok(Split::Rows(n)) => rows = n,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let _ = splitter.await;
    drop(path);
    match (action, error) {
        (None, e) => Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid CSV",
            e.unwrap_or_else(|| "the CSV could not be read".into()),
        )),
        (Some(a), Some(e)) => {
            s.store.finish_staging(t, a, Some(e.clone())).await?;
            Err(ApiError::bad_request("invalid_payload", "Invalid CSV", e))
        }
        (Some(a), None) => {
            s.store.set_import_size(t, a.clone(), rows).await?;
            s.store.finish_staging(t, a.clone(), None).await?;
            s.store.start_async_action(t, a.clone()).await?;
            Ok((status, Json(json!({"async_action_id": a}))).into_response())
        }
    }
}

/// A bulk update (JSON array): staged in chunks and run as an async action.
async fn records_json(s: &AppState, t: &Tenant, kind: &'static str, rows: Vec<Value>) -> ApiResult<Response> {
    use tessera_domain::import::Chunk;
    if rows.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid payload",
            "send a non-empty array of objects",
        ));
    }
    let action = s.store.begin_import(t, kind, json!({"rows": rows.len()})).await?;
    let chunk_rows = tessera_domain::import::chunk_rows(s.store.engine_name());
    for (i, items) in rows.chunks(chunk_rows).enumerate() {
        let chunk = Chunk {
            items: items.to_vec(),
            ..Chunk::default()
        };
        let payload = serde_json::to_string(&chunk).map_err(|_| ApiError::internal())?;
        s.store
            .stage_import_chunk(t, action.clone(), (i * chunk_rows) as i64 + 1, payload)
            .await?;
    }
    s.store.finish_staging(t, action.clone(), None).await?;
    s.store.start_async_action(t, action.clone()).await?;
    Ok(accepted(action))
}

/// Imports or updates customers from a CSV file (multipart field `file`), upserting by
/// `source_id`.
#[utoipa::path(post, path = "/v1/customers/importCSV", tag = "Customers",
    responses((status = 202, description = "`{async_action_id}`; the action is `CUSTOMERS.IMPORT_CSV`"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn customers_import_csv(State(s): State<AppState>, Auth(t): Auth<Tenant>, mp: Multipart) -> ApiResult<Response> {
    records_csv(&s, &t, "CUSTOMERS.IMPORT_CSV", mp, StatusCode::ACCEPTED).await
}

/// Upserts customers by `source_id` from a JSON array, as an async action.
#[utoipa::path(post, path = "/v1/customers/bulk/async", tag = "Customers", request_body = Vec<Object>,
    responses((status = 202, description = "`{async_action_id}`; the action is `CUSTOMERS.BULK_UPDATE`"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn customers_bulk(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(rows): ApiJson<Vec<Value>>) -> ApiResult<Response> {
    records_json(&s, &t, "CUSTOMERS.BULK_UPDATE", rows).await
}

/// Imports or updates products from a CSV file (multipart field `file`).
#[utoipa::path(post, path = "/v1/products/importCSV", tag = "Products",
    responses((status = 200, description = "`{async_action_id}`; the action is `PRODUCTS.IMPORT_CSV`"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn products_import_csv(State(s): State<AppState>, Auth(t): Auth<Tenant>, mp: Multipart) -> ApiResult<Response> {
    records_csv(&s, &t, "PRODUCTS.IMPORT_CSV", mp, StatusCode::OK).await
}

/// Upserts products by `source_id` from a JSON array, as an async action.
#[utoipa::path(post, path = "/v1/products/bulk/async", tag = "Products", request_body = Vec<Object>,
    responses((status = 202, description = "`{async_action_id}`; the action is `PRODUCTS.BULK_UPDATE`"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn products_bulk(State(s): State<AppState>, Auth(t): Auth<Tenant>, ApiJson(rows): ApiJson<Vec<Value>>) -> ApiResult<Response> {
    records_json(&s, &t, "PRODUCTS.BULK_UPDATE", rows).await
}

/// Imports or updates SKUs of existing products from a CSV file (multipart field `file`).
#[utoipa::path(post, path = "/v1/skus/importCSV", tag = "Products",
    responses((status = 200, description = "`{async_action_id}`; the action is `SKUS.IMPORT_CSV`"), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("X-App-Id" = [], "X-App-Token" = [])))]
pub async fn skus_import_csv(State(s): State<AppState>, Auth(t): Auth<Tenant>, mp: Multipart) -> ApiResult<Response> {
    records_csv(&s, &t, "SKUS.IMPORT_CSV", mp, StatusCode::OK).await
}
