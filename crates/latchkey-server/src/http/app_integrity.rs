//! Proof of the operator's genuine app (`docs/attestation.md`): the challenge an app asks its
//! platform to vouch for. The proof itself rides on the request that needs it, in the
//! `Latchkey-App-Integrity` header, checked by the `Client` extractor.

use super::AppState;
use super::error::ApiError;
use super::extract::ApiJson;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_proto::{AppAttestKeyRequest, AppIntegrityChallenge, ErrorBody};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/app-integrity/challenge", post(challenge))
        .route("/v1/app-integrity/apple/keys", post(register_apple_key))
}

/// A single-use challenge: the `nonce` of a Play Integrity request (the verdict goes in
/// `Latchkey-App-Integrity: play <token>`), or the client data of an App Attest attestation
/// (`POST /v1/app-integrity/apple/keys`) or assertion (`Latchkey-App-Integrity: apple <key id>
/// <assertion> <challenge>`), on the request the policy gates (sign-up, code sends, device
/// enrolment, recovery). `404` when no verifier is configured.
#[utoipa::path(post, path = "/v1/app-integrity/challenge", tag = "flows",
    responses((status = 200, body = AppIntegrityChallenge),
        (status = 404, description = "not_found: no app integrity verifier is configured", body = ErrorBody)))]
pub async fn challenge(State(s): State<AppState>) -> Response {
    let policy = &s.auth.settings().app_integrity;
    if policy.play.is_none() && policy.apple.is_none() {
        return super::error::not_found("no app integrity verifier is configured ([policy.app_integrity])");
    }
    let (challenge, expires_at) = s.auth.app_integrity_challenge();
    Json(AppIntegrityChallenge { challenge, expires_at: latchkey_core::clock::rfc3339(expires_at) }).into_response()
}

/// Register an iOS app instance's App Attest key: the attestation object `attestKey` made with
/// `clientDataHash` = SHA-256 of a challenge from `POST /v1/app-integrity/challenge` (spent here),
/// verified offline against the configured App Attest root, the app ids and the environment.
/// Later requests carry assertions by the key. `404` without `[policy.app_integrity.apple]`.
#[utoipa::path(post, path = "/v1/app-integrity/apple/keys", tag = "flows", request_body = AppAttestKeyRequest,
    responses((status = 204, description = "registered"),
        (status = 400, description = "invalid_request, invalid_attestation: the message says why", body = ErrorBody),
        (status = 404, description = "not_found: App Attest is not configured", body = ErrorBody)))]
pub async fn register_apple_key(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AppAttestKeyRequest>,
) -> Result<StatusCode, ApiError> {
    s.auth.register_app_attest_key(&req.key_id, &req.attestation, &req.challenge).await?;
    Ok(StatusCode::NO_CONTENT)
}
