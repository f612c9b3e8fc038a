//! The device's side of push approval: requests signed by an enrolled device
//! (`Authorization: Device <id>` plus a `DPoP` proof by its possession key), no session needed.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Client, SignedByDevice};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use latchkey_proto::{ApprovalAnswer, ApprovalList, ApprovalOutcome, ApprovalRequest, ErrorBody, PushRegistration};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/device/approvals", get(approvals))
        .route("/v1/device/approvals/{id}", get(approval).post(answer))
        .route("/v1/device/push-token", put(push_token))
}

/// Where this device is notified: `fcm`, `apns` or `webhook` with its token, or `none` to poll.
#[utoipa::path(put, path = "/v1/device/push-token", tag = "device", security(("device" = [])), request_body = PushRegistration,
    responses((status = 204, description = "registered"), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthenticated, invalid_dpop_proof", body = ErrorBody)))]
pub async fn push_token(
    State(s): State<AppState>,
    SignedByDevice(d): SignedByDevice,
    Client(ctx): Client,
    ApiJson(req): ApiJson<PushRegistration>,
) -> Result<StatusCode, ApiError> {
    s.auth.set_push_address(&d, req, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The approvals the device's account is asked (at most one: one outstanding per account).
#[utoipa::path(get, path = "/v1/device/approvals", tag = "device", security(("device" = [])),
    responses((status = 200, body = ApprovalList), (status = 401, description = "unauthenticated, invalid_dpop_proof", body = ErrorBody)))]
pub async fn approvals(
    State(s): State<AppState>,
    SignedByDevice(d): SignedByDevice,
) -> Result<Json<ApprovalList>, ApiError> {
    Ok(Json(s.auth.device_approvals(&d).await?))
}

/// What is being approved: the app, where from, when; and the nonce the answer signs.
#[utoipa::path(get, path = "/v1/device/approvals/{id}", tag = "device", security(("device" = [])),
    params(("id" = String, Path, description = "The approval id (what the notification carried)")),
    responses((status = 200, body = ApprovalRequest), (status = 401, body = ErrorBody),
        (status = 404, description = "not_found: not this account's", body = ErrorBody),
        (status = 409, description = "flow_completed: answered already", body = ErrorBody), (status = 410, description = "flow_expired", body = ErrorBody)))]
pub async fn approval(
    State(s): State<AppState>,
    SignedByDevice(d): SignedByDevice,
    Path(id): Path<String>,
) -> Result<Json<ApprovalRequest>, ApiError> {
    Ok(Json(s.auth.device_approval(&d, &id).await?))
}

/// Approve (with the number shown on the other screen), deny, or report "this wasn't me",
/// signed by the biometric key over `latchkey_proto::approval_message`. The first answer wins.
#[utoipa::path(post, path = "/v1/device/approvals/{id}", tag = "device", security(("device" = [])),
    params(("id" = String, Path, description = "The approval id")), request_body = ApprovalAnswer,
    responses((status = 200, description = "approved, denied (a deny or a wrong number) or reported", body = ApprovalOutcome),
        (status = 401, description = "unauthenticated, invalid_dpop_proof, not_authorized (the signature does not verify)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "flow_completed: answered already", body = ErrorBody),
        (status = 410, description = "flow_expired", body = ErrorBody)))]
pub async fn answer(
    State(s): State<AppState>,
    SignedByDevice(d): SignedByDevice,
    Client(ctx): Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ApprovalAnswer>,
) -> Result<Json<ApprovalOutcome>, ApiError> {
    Ok(Json(s.auth.answer_approval(&d, &id, req, ctx).await?))
}
