//! `/v1/client-certs`: client certificates for operators of the API over TCP. The client
//! makes the key pair and sends the public key only; the peer signs it with the cluster CA.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::body::Strict;
use super::{ApiError, ApiState};
use crate::wire::{ClientCertRequest, ClientCertResponse, ErrorBody};

/// Signs an operator's public key with the cluster CA (`knit client-cert`).
#[utoipa::path(
    post,
    path = "/v1/client-certs",
    tag = "operators",
    request_body = ClientCertRequest,
    responses(
        (status = 200, description = "The certificate, and the CA to trust the peers with", body = ClientCertResponse),
        (status = 400, description = "A bad name or key, or not a certificate request", body = ErrorBody),
    )
)]
pub(super) async fn client_cert(
    State(state): State<ApiState>,
    Strict(request): Strict<ClientCertRequest>,
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
