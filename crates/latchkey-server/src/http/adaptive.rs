//! Adaptive authentication routes: stepping up the calling session (RFC 9470) and the
//! signed-in user's security timeline.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, Client};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_proto::{ErrorBody, FlowAnswer, RememberClientRequest, RememberedClient, SecurityEvents, StepUpRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/step-up", post(step_up))
        .route("/v1/me/events", get(events))
        .route("/v1/me/remembered-clients", post(remember))
        .route("/v1/me/remembered-clients/{id}", delete(forget))
}

/// Raise the calling session in place (RFC 9470): a `step_up` flow asking only for what the
/// session lacks (a second factor it has not used when `acr_values` is above its level, any
/// factor when its `auth_time` is older than `max_age`; a device's own session signs with the
/// device, `device_signature`), answered through `/v1/flows/{id}`. With `action`, the enrolled
/// phone approves that action (`push_approval`) and `done` carries an `approval` JWT.
/// Its `done` carries new tokens for the same session (`sid` kept): raised `acr`, new `amr` and
/// `auth_time`; the session's older refresh tokens are spent. A session that already meets the
/// request gets `done` at once. With neither field the target is `aal2`.
#[utoipa::path(post, path = "/v1/step-up", tag = "me", security(("bearer" = [])), request_body = StepUpRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, description = "invalid_request: no known level in `acr_values`", body = ErrorBody),
        (status = 401, description = "unauthenticated", body = ErrorBody),
        (status = 409, description = "mfa_required: the account has no second factor that can raise the session", body = ErrorBody),
        (status = 429, description = "limit_exceeded: code sends", body = ErrorBody)))]
pub async fn step_up(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.step_up(&p, req, ctx).await?;
    super::flows::answer(&s, o)
}

/// `?before=&limit=`: a page of the timeline.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `next_before` of the previous page: only events older than that one.
    #[serde(default)]
    before: Option<String>,
    /// How many events (1–100, default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The signed-in user's security timeline, newest first: sign-ins and failed attempts, step-ups,
/// new devices and factors, recoveries, pushes, with the client's IP and user agent. Only ids
/// and methods are shown of each event's details, never an address, code or secret.
#[utoipa::path(get, path = "/v1/me/events", tag = "me", security(("bearer" = [])), params(Page),
    responses((status = 200, body = SecurityEvents), (status = 400, description = "invalid_request: `before` or `limit` is malformed", body = ErrorBody),
        (status = 401, description = "unauthenticated", body = ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    ApiQuery(q): ApiQuery<Page>,
) -> Result<Json<SecurityEvents>, ApiError> {
    Ok(Json(s.auth.account().events(&p, q.before.as_deref(), q.limit).await?))
}

/// Remember the calling client: later password sign-ins that name it (`remembered_client`) and
/// sign the flow's nonce with its key skip the second factor, until `policy.remember.max_age_secs`
/// (30 days) or until it is forgotten — by `DELETE`, by signing out everywhere, a password reset
/// or recovery, a removed factor, or a wrong signature. Needs a sign-in from the last 10 minutes
/// with a real second factor (`aal2` without a remembered key); the body proves the caller holds
/// the key. The level it gives is `aal2` (`amr` `pwd`, `swk`), and never satisfies a step-up.
#[utoipa::path(post, path = "/v1/me/remembered-clients", tag = "me", security(("bearer" = [])), request_body = RememberClientRequest,
    responses((status = 200, body = RememberedClient), (status = 400, description = "invalid_request: a bad key, signature or name; remembering is off", body = ErrorBody),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody)))]
pub async fn remember(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<RememberClientRequest>,
) -> Result<Json<RememberedClient>, ApiError> {
    Ok(Json(s.auth.account().remember(&p, &req, ctx).await?))
}

/// Forget a remembered client: its next sign-in asks for the second factor.
#[utoipa::path(delete, path = "/v1/me/remembered-clients/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "The remembered client's id")),
    responses((status = 204, description = "forgotten"), (status = 401, body = ErrorBody),
        (status = 404, description = "not_found: not a live remembered client of this account", body = ErrorBody)))]
pub async fn forget(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.account().forget(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
