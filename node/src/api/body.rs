//! JSON request bodies, read strictly: a body that is not JSON, names a field its schema
//! does not (a misspelled `"replica"`), or holds a value of the wrong type is refused with
//! 400 and a message that says which field, in the API's usual `{"error": ...}` form.
//!
//! Only the API is strict. The types themselves decode leniently, because a spec is also
//! what peers of different versions replicate: an older peer must read a newer spec.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use knit_scheduler::ServiceSpec;
use knit_scheduler::spec::Limits;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::shape::Shapes;
use crate::cluster::NodeSpec;
use crate::wire::{ClientCertRequest, UpdateRequest};

/// Unknown fields named in one answer; past it the message says how many more.
const UNKNOWN_SHOWN_MAX: usize = 5;

/// A type the API takes as a request body.
pub(crate) trait RequestBody: DeserializeOwned + utoipa::ToSchema {
    /// What the body is, for messages ("the service spec").
    const WHAT: &'static str;
}

impl RequestBody for ServiceSpec {
    const WHAT: &'static str = "the service spec";
}

impl RequestBody for UpdateRequest {
    const WHAT: &'static str = "the update request";
}

impl RequestBody for NodeSpec {
    const WHAT: &'static str = "the node spec";
}

impl RequestBody for Limits {
    const WHAT: &'static str = "the cluster limits";
}

impl RequestBody for ClientCertRequest {
    const WHAT: &'static str = "the client certificate request";
}

/// A request body of type `T`, read strictly (see the module doc).
#[derive(Debug)]
pub(crate) struct Strict<T>(pub(crate) T);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{} must be sent as JSON, with the header `Content-Type: application/json`",
                    T::WHAT
                ),
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    format!("{} is larger than a request body may be", T::WHAT),
                )
            } else {
                ApiError::new(
                    status,
                    format!("cannot read {}: {}", T::WHAT, e.body_text()),
                )
            }
        })?;
        parse(&bytes).map(Strict)
    }
}

/// `application/json`, or any `application/...+json`, parameters aside.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads `bytes` as a `T`: JSON, naming only the fields `T`'s schema in the API's document
/// names, each of the right type.
pub(crate) fn parse<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("{} is not valid JSON: {e}", T::WHAT)))?;
    // The document always has components (a test holds every body type to one).
    let unknown = super::openapi::components()
        .map(|c| Shapes::new(c).unknown_fields(&T::name(), &value))
        .unwrap_or_default();
    if !unknown.is_empty() {
        let mut lines: Vec<String> = unknown
            .iter()
            .take(UNKNOWN_SHOWN_MAX)
            .map(|u| u.message(T::WHAT))
            .collect();
        if unknown.len() > UNKNOWN_SHOWN_MAX {
            lines.push(format!(
                "and {} more unknown fields",
                unknown.len() - UNKNOWN_SHOWN_MAX
            ));
        }
        return Err(bad(lines.join("; ")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            bad(format!("{} is not valid: {}", T::WHAT, e.inner()))
        } else {
            bad(format!("{} is not valid at {path}: {}", T::WHAT, e.inner()))
        }
    })
}
