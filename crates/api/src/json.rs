//! JSON bodies: content type, size and depth checked before parsing; every failure is
//! a clear envelope naming the field at fault.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use tessera_domain::limits::{MAX_BODY_BYTES, MAX_JSON_DEPTH};

/// A body already written as JSON text, sent as it is instead of parsed and serialized
/// again.
pub fn json_text(body: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub struct ApiJson<T>(pub T);

pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Request entity too large",
        format!("The request body may be at most {MAX_BODY_BYTES} bytes."),
    )
}

pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    if !tessera_domain::json::depth_within(bytes, MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "Invalid payload",
            format!("JSON nesting is deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    // Plain serde_json first: tracking the path costs on every field, and only a refused
    // body needs it. Same acceptance either way (neither checks for trailing input).
    if let Ok(v) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let details = if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("'{path}': {inner}")
        };
        ApiError::bad_request("invalid_payload", "Invalid payload", details)
    })
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !(essence == "application/json" || essence.ends_with("+json")) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Unsupported media type",
                    "Send the body as JSON with 'Content-Type: application/json'.",
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            use axum::response::IntoResponse;
            if rejection.into_response().status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("invalid_payload", "Invalid payload", "The request body could not be read.")
            }
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        parse_body(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Inner {
        amount: i64,
    }

    #[derive(serde::Deserialize, Debug)]
    struct Outer {
        order: Inner,
    }

    #[test]
    fn a_refused_body_names_the_field_and_a_good_one_parses() {
        let ok: Outer = parse_body(br#"{"order": {"amount": 5}}"#).expect("a valid body parses");
        assert_eq!(ok.order.amount, 5);
        let err = parse_body::<Outer>(br#"{"order": {"amount": "five"}}"#).expect_err("a string is not an amount");
        assert_eq!(err.key, "invalid_payload");
        assert!(err.details.starts_with("'order.amount': invalid type"), "{}", err.details);
    }
}
