//! Administration, with the configured admin token (constant-time compared).

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, Client, bearer};
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use latchkey_core::account::{AdminAction, Operator};
use latchkey_core::secret::ct_eq;
use latchkey_proto::{AdminUser, ErrorBody, ProfileUpdate};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users/{username}", get(show).delete(delete_user).patch(update_user))
        .route("/admin/v1/users/{username}/require-password-change", post(require_password_change))
        .route("/admin/v1/users/{username}/disable", post(disable))
        .route("/admin/v1/users/{username}/enable", post(enable))
        .route("/admin/v1/users/{username}/sessions", delete(revoke_sessions))
        .route("/admin/v1/users/{username}/unlock", post(unlock))
        .route("/admin/v1/users/{username}/factors/{id}", delete(reset_factor))
        .route("/admin/v1/users/{username}/devices/{id}", delete(revoke_user_device))
}

/// Who is calling the admin API: the configured admin token (automation), or an admin
/// account's session at `aal2` (`Authorization: Bearer <access token>`, or `DPoP`).
pub struct Admin(pub Operator);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let (Some(expected), Some(t)) = (state.admin_token.as_deref(), bearer(parts))
            && ct_eq(t.as_bytes(), expected.as_bytes())
        {
            return Ok(Admin(Operator::token()));
        }
        let Authenticated(p) = Authenticated::from_request_parts(parts, state).await?;
        Ok(Admin(state.auth.operator(&p).await?))
    }
}

async fn act(
    s: &AppState,
    username: &str,
    action: AdminAction,
    by: &Operator,
    ctx: latchkey_core::model::ClientContext,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().update(username, action, by, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One account: profile, status, factors and devices (described, never their secrets or keys),
/// remembered clients, live sessions and the newest 50 security events.
#[utoipa::path(get, path = "/admin/v1/users/{username}", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")),
    responses((status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    _a: Admin,
    Path(username): Path<String>,
) -> Result<Json<AdminUser>, ApiError> {
    Ok(Json(s.auth.admin().show(&username).await?))
}

/// Delete the account as `DELETE /v1/me` does (the owner is told on every channel; the username
/// rests for its quarantine). The audit log names the admin.
#[utoipa::path(delete, path = "/admin/v1/users/{username}", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_user(
    State(s): State<AppState>,
    Admin(by): Admin,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().delete(&username, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user must choose a new password at the next sign-in (`new_password` step).
#[utoipa::path(post, path = "/admin/v1/users/{username}/require-password-change", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn require_password_change(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    act(&s, &username, AdminAction::RequirePasswordChange, &by, ctx).await
}

/// Disable the account and end its sessions.
#[utoipa::path(post, path = "/admin/v1/users/{username}/disable", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    act(&s, &username, AdminAction::Disable, &by, ctx).await
}

/// Enable a disabled account.
#[utoipa::path(post, path = "/admin/v1/users/{username}/enable", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    act(&s, &username, AdminAction::Enable, &by, ctx).await
}

/// End every session of the account.
#[utoipa::path(delete, path = "/admin/v1/users/{username}/sessions", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_sessions(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    act(&s, &username, AdminAction::RevokeSessions, &by, ctx).await
}

/// Clear the account's password and second-factor lockouts — the only way out of the permanent
/// lock after `hard_cap` consecutive wrong second-factor codes (a password reset does not lift
/// it, so a reset cannot bypass MFA). Recorded in the audit log.
#[utoipa::path(post, path = "/admin/v1/users/{username}/unlock", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username")), responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlock(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    act(&s, &username, AdminAction::Unlock, &by, ctx).await
}

/// Reset a lost factor: remove it without a step-up (with the recovery codes when no strong
/// factor is left). The user is told on every channel; the next sign-in asks them to set one up
/// again when policy requires a second factor.
#[utoipa::path(delete, path = "/admin/v1/users/{username}/factors/{id}", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username"), ("id" = String, Path, description = "The factor id")),
    responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_factor(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path((username, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().reset_factor(&username, &id, &by, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke a device: it can no longer sign in and its sessions end. The user is told.
#[utoipa::path(delete, path = "/admin/v1/users/{username}/devices/{id}", tag = "admin", security(("admin" = [])),
    params(("username" = String, Path, description = "The username"), ("id" = String, Path, description = "The device id")),
    responses((status = 204, description = "Done"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_user_device(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path((username, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().revoke_device(&username, &id, &by, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set (or with `null` clear) profile attributes as `PATCH /v1/me` does, including the custom
/// attributes only admins write; answers the account.
#[utoipa::path(patch, path = "/admin/v1/users/{username}", tag = "admin", security(("admin" = [])), request_body = ProfileUpdate,
    params(("username" = String, Path, description = "The username")),
    responses((status = 200, body = AdminUser), (status = 400, description = "invalid_request: an attribute is malformed or unknown", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_user(
    State(s): State<AppState>,
    Admin(by): Admin,
    Client(ctx): Client,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> Result<Json<AdminUser>, ApiError> {
    Ok(Json(s.auth.admin().update_profile(&username, req, &by, ctx).await?))
}
