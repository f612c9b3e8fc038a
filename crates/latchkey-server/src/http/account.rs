//! The account's own life (issue 14): the profile, changing the password, exporting the data.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, Client};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use latchkey_proto::{AccountExport, ChangePasswordRequest, ErrorBody, Me, PasswordChanged, ProfileUpdate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", patch(update_profile).delete(delete_account))
        .route("/v1/me/password", put(change_password))
        .route("/v1/me/export", get(export))
}

/// Change the password with the current one, or add a first password to a passwordless account
/// (then a sign-in at `aal2` from the last 10 minutes is needed instead). The other sessions end
/// and remembered clients are forgotten unless `keep_other_sessions`; every verified channel and
/// enrolled device is told. A wrong `current_password` counts against the password lockout.
#[utoipa::path(put, path = "/v1/me/password", tag = "me", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 200, body = PasswordChanged),
        (status = 400, description = "invalid_request (current_password missing), invalid_password (the new one is refused)", body = ErrorBody),
        (status = 401, description = "unauthenticated; not_authorized (the current password is wrong); insufficient_user_authentication (a first password needs a recent aal2 sign-in)", body = ErrorBody),
        (status = 429, description = "limit_exceeded: the password lockout", body = ErrorBody)))]
pub async fn change_password(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<Json<PasswordChanged>, ApiError> {
    Ok(Json(s.auth.account().change_password(&p, req, ctx).await?))
}

/// Everything kept about the account that its owner may see, as one JSON document: the profile,
/// factors and devices (described, never their secrets or keys), live sessions and every
/// security event (the newest 10,000).
#[utoipa::path(get, path = "/v1/me/export", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = AccountExport), (status = 401, body = ErrorBody)))]
pub async fn export(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<AccountExport>, ApiError> {
    Ok(Json(s.auth.account().export(&p).await?))
}

/// Set the profile attributes sent (`null` clears one; one left out stays); answers `/v1/me`.
/// Email and phone change through verification (`POST /v1/me/factors`), not here.
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = ProfileUpdate,
    responses((status = 200, body = Me), (status = 400, description = "invalid_request: an attribute is malformed or unknown", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn update_profile(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> Result<Json<Me>, ApiError> {
    Ok(Json(s.auth.account().update_profile(&p, req, ctx).await?))
}

/// Delete the account, at once and for good: sessions, refresh tokens, devices, factors,
/// remembered clients, pending flows and approvals go, and personal data is erased (the audit log
/// keeps each event's time, kind and outcome without addresses or details). Every channel is
/// told. The username stays taken for `policy.sign_up.username_quarantine_days`. Needs a sign-in
/// at `aal2` from the last `mfa.step_up_max_age_secs` (else `insufficient_user_authentication`:
/// step up with `POST /v1/step-up`, then call again).
#[utoipa::path(delete, path = "/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "unauthenticated; insufficient_user_authentication (a recent aal2 sign-in is needed)", body = ErrorBody)))]
pub async fn delete_account(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<StatusCode, ApiError> {
    s.auth.account().delete(&p).await?;
    Ok(StatusCode::NO_CONTENT)
}
