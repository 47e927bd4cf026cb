//! `/v1/client-certs`: client certificates for operators of the API over TCP. The client
//! makes the key pair and sends the public key only; the peer signs it with the cluster CA.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};

/// A request for an operator's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientCertRequest {
    /// The operator's name, a DNS label.
    pub(crate) name: String,
    /// The P-256 public key (uncompressed point), in hex.
    pub(crate) public_key: String,
}

/// The certificate, and the cluster CA to trust the peers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClientCertResponse {
    pub(crate) cert_pem: String,
    pub(crate) ca_pem: String,
}

pub(super) async fn client_cert(
    State(state): State<ApiState>,
    Json(request): Json<ClientCertRequest>,
) -> Result<Json<ClientCertResponse>, ApiError> {
    let bad = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::BAD_REQUEST, e.to_string());
    let public_key = hex::decode(request.public_key.trim())
        .map_err(|e| bad(&format!("public_key is not hex: {e}")))?;
    let cert_pem =
        knit_mesh::quic::operator::issue_client_cert(&state.creds, &request.name, &public_key)
            .map_err(|e| bad(&e))?;
    tracing::info!(operator = %request.name, "issued a client certificate for the admin API");
    Ok(Json(ClientCertResponse {
        cert_pem,
        ca_pem: knit_mesh::quic::operator::ca_pem(&state.creds),
    }))
}
