//! Adaptive authentication routes: stepping up the calling session (RFC 9470) and the
//! signed-in user's security timeline.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, Client};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_proto::{ErrorBody, FlowAnswer, SecurityEvents, StepUpRequest};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/step-up", post(step_up)).route("/v1/me/events", get(events))
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
