//! The operator's reads and roles (issue 14): accounts searched and paged, the audit log, the
//! outbox and its dead messages, the summary figures, and who is an admin.

use super::AppState;
use super::admin::Admin;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_core::account::{AdminRole, AuditFilter, UserFilter};
use latchkey_proto::{AdminSummary, AdminUserList, AuditEventList, ErrorBody, Invitation, InviteRequest, OutboxList};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users", get(list_users).post(invite))
        .route("/admin/v1/users/{username}/role", put(set_role))
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/outbox", get(outbox))
        .route("/admin/v1/outbox/{id}/requeue", post(requeue))
        .route("/admin/v1/summary", get(summary))
}

/// `GET /admin/v1/users`'s filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// A prefix of the username, the email address or the phone number (case-insensitive).
    #[param(max_length = 254)]
    query: Option<String>,
    /// Only accounts in this status.
    #[param(pattern = "^(active|unconfirmed|locked|disabled)$")]
    status: Option<String>,
    /// Only accounts with an active factor of this kind, an enrolled `device`, or `none` of either.
    #[param(pattern = "^(totp|sms|email|recovery_codes|device|none)$")]
    factor: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// A session started or refreshed at or after (RFC 3339).
    #[param(format = DateTime)]
    seen_after: Option<String>,
    /// No session started or refreshed since (RFC 3339); never-seen accounts included.
    #[param(format = DateTime)]
    seen_before: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
    /// Page size (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Find accounts: newest first, filtered, in pages. The cursor is the last account of the
/// previous page, so accounts created meanwhile never shift a page.
#[utoipa::path(get, path = "/admin/v1/users", tag = "admin", security(("admin" = [])), params(UsersQuery),
    responses((status = 200, body = AdminUserList), (status = 400, description = "invalid_request: a malformed filter, cursor or limit", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(q): ApiQuery<UsersQuery>,
) -> Result<Json<AdminUserList>, ApiError> {
    let f = UserFilter {
        query: q.query,
        status: q.status,
        factor: q.factor,
        created_after: q.created_after,
        created_before: q.created_before,
        seen_after: q.seen_after,
        seen_before: q.seen_before,
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(s.auth.admin().list(&f).await?))
}

/// Invite someone: the account is created unconfirmed, without a password, and the invitation
/// goes to its email (else its phone) with a link (`policy.sign_up.invite_url`, by default the
/// console's invitation page) carrying the flow id and code. The invitee answers the flow —
/// `confirm_sign_up` with the code, then `new_password` — and is signed in. `role` makes the
/// invitee an admin.
#[utoipa::path(post, path = "/admin/v1/users", tag = "admin", security(("admin" = [])), request_body = InviteRequest,
    responses((status = 201, body = Invitation), (status = 400, description = "invalid_request: a malformed username, email, phone or role", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "username_exists (or the username rests after a deletion)", body = ErrorBody)))]
pub async fn invite(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.auth.admin().invite(req, &by).await?)))
}

/// `GET /admin/v1/audit`'s filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// One account's events: its username, or its id (a deleted account is found by id only).
    user: Option<String>,
    /// One kind (`sign_in`, `totp_code`, `account_deleted`, `admin_disable`, …).
    kind: Option<String>,
    /// One outcome (`success`, `failure`, `denied`, `locked`, …).
    outcome: Option<String>,
    /// At or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
    /// Page size (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Query the audit log, newest first.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", security(("admin" = [])), params(AuditQueryParams),
    responses((status = 200, body = AuditEventList), (status = 400, description = "invalid_request: a malformed filter, cursor or limit", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "not_found: no such user", body = ErrorBody)))]
pub async fn audit(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(q): ApiQuery<AuditQueryParams>,
) -> Result<Json<AuditEventList>, ApiError> {
    let f = AuditFilter {
        user: q.user,
        kind: q.kind,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(s.auth.admin().audit(&f).await?))
}

/// `GET /admin/v1/outbox`'s filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only messages in this status (`dead`: given up on after the last retry).
    #[param(pattern = "^(pending|sending|sent|dead)$")]
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
    /// Page size (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The outbox, newest first, without message bodies.
#[utoipa::path(get, path = "/admin/v1/outbox", tag = "admin", security(("admin" = [])), params(OutboxQuery),
    responses((status = 200, body = OutboxList), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn outbox(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(q): ApiQuery<OutboxQuery>,
) -> Result<Json<OutboxList>, ApiError> {
    Ok(Json(s.auth.admin().outbox(q.status.as_deref(), q.cursor.as_ref(), q.limit).await?))
}

/// Send a dead message again, from its first attempt (a code in it may have expired meanwhile).
#[utoipa::path(post, path = "/admin/v1/outbox/{id}/requeue", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "The message id")),
    responses((status = 204, description = "Queued again"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "not_found: no dead message with this id (or its recipient was erased)", body = ErrorBody)))]
pub async fn requeue(
    State(s): State<AppState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().requeue(&id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/v1/summary`'s window.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// The funnel's and delivery's window, in UTC days ending today (1–366, default 30).
    #[param(minimum = 1, maximum = 366)]
    days: Option<u32>,
}

/// The figures an operator watches: accounts, MFA adoption, the sign-in funnel per day, step and
/// outcome, delivery health per provider, and the outbox's depth.
#[utoipa::path(get, path = "/admin/v1/summary", tag = "admin", security(("admin" = [])), params(SummaryQuery),
    responses((status = 200, body = AdminSummary), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn summary(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<AdminSummary>, ApiError> {
    Ok(Json(s.auth.admin().summary(q.days).await?))
}

/// `PUT /admin/v1/users/{username}/role`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    /// `admin`, `read_only`, or `null` to take the role away.
    #[schema(pattern = "^(admin|read_only)$")]
    role: Option<String>,
}

/// Make an account an admin (`admin`: everything; `read_only`: look only), or take the role away.
/// An admin account uses the admin API and the console with its own session at `aal2`.
#[utoipa::path(put, path = "/admin/v1/users/{username}/role", tag = "admin", security(("admin" = [])), request_body = RoleRequest,
    params(("username" = String, Path, description = "The username")),
    responses((status = 204, description = "Done"), (status = 400, description = "invalid_request: an unknown role", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_role(
    State(s): State<AppState>,
    Admin(by): Admin,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<RoleRequest>,
) -> Result<StatusCode, ApiError> {
    let role = match req.role.as_deref() {
        None => None,
        Some(r) => {
            Some(AdminRole::parse(r).ok_or(ApiError(AuthError::InvalidRequest("role: admin or read_only".into())))?)
        }
    };
    s.auth.admin().set_role(&username, role, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
