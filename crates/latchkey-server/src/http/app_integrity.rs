//! Proof of the operator's genuine app (`docs/attestation.md`): the challenge an app asks its
//! platform to vouch for. The proof itself rides on the request that needs it, in the
//! `Latchkey-App-Integrity` header, checked by the `Client` extractor.

use super::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use latchkey_proto::{AppIntegrityChallenge, ErrorBody};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/app-integrity/challenge", post(challenge))
}

/// A single-use challenge for a Play Integrity request (`setNonce`): the verdict that comes back
/// goes in `Latchkey-App-Integrity: play <token>` on the request the policy gates (sign-up, code
/// sends, device enrolment, recovery). `404` when no verifier is configured.
#[utoipa::path(post, path = "/v1/app-integrity/challenge", tag = "flows",
    responses((status = 200, body = AppIntegrityChallenge),
        (status = 404, description = "not_found: no app integrity verifier is configured", body = ErrorBody)))]
pub async fn challenge(State(s): State<AppState>) -> Response {
    if s.auth.settings().app_integrity.play.is_none() {
        return super::error::not_found("no app integrity verifier is configured ([policy.app_integrity.play])");
    }
    let (challenge, expires_at) = s.auth.app_integrity_challenge();
    Json(AppIntegrityChallenge { challenge, expires_at: latchkey_core::clock::rfc3339(expires_at) }).into_response()
}
