//! Flow routes: sign-up, sign-in, forgot-password, and answering or polling a flow.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Client};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_core::auth::FlowOutcome;
use latchkey_core::ids::FlowId;
use latchkey_proto::{ErrorBody, FlowAnswer, ForgotPasswordRequest, SignInRequest, SignUpRequest, StepAnswer};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sign-up", post(sign_up))
        .route("/v1/sign-in", post(sign_in))
        .route("/v1/forgot-password", post(forgot_password))
        .route("/v1/flows/{id}", get(get_flow).post(answer_flow))
        .route("/v1/flows/{id}/resend", post(resend))
}

pub(crate) fn answer(state: &AppState, o: FlowOutcome) -> Result<Json<FlowAnswer>, ApiError> {
    for e in &o.events {
        metrics::counter!("latchkey_flow_steps_total", "step" => e.step, "outcome" => e.outcome).increment(1);
    }
    Ok(Json(state.auth.answer(&o)?))
}

fn flow_id(raw: &str) -> Result<FlowId, ApiError> {
    raw.parse().map_err(|_| ApiError(AuthError::FlowNotFound))
}

/// Start a sign-up. The next step is `confirm_sign_up` (a code went to the email or phone).
#[utoipa::path(post, path = "/v1/sign-up", tag = "flows", request_body = SignUpRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, description = "invalid_request, invalid_password", body = ErrorBody),
        (status = 403, description = "sign_up_denied: the app's backend refused it (before_sign_up hook); show the message", body = ErrorBody),
        (status = 409, description = "username_exists (only when the policy reveals it)", body = ErrorBody), (status = 429, description = "limit_exceeded", body = ErrorBody)))]
pub async fn sign_up(
    State(s): State<AppState>,
    Client(ctx): Client,
    ApiJson(req): ApiJson<SignUpRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.sign_up(req, ctx).await?;
    answer(&s, o)
}

/// Sign in with a username and password. `done` with tokens, or `confirm_sign_up` /
/// `new_password`. Wrong username or password: 401 `not_authorized`, the same for both.
#[utoipa::path(post, path = "/v1/sign-in", tag = "flows", request_body = SignInRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "not_authorized", body = ErrorBody), (status = 429, description = "limit_exceeded", body = ErrorBody)))]
pub async fn sign_in(
    State(s): State<AppState>,
    Client(ctx): Client,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.sign_in(req, ctx).await?;
    answer(&s, o)
}

/// Start a password reset. Always answers `reset_password`, whether or not the user exists.
#[utoipa::path(post, path = "/v1/forgot-password", tag = "flows", request_body = ForgotPasswordRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, body = ErrorBody), (status = 429, description = "limit_exceeded", body = ErrorBody)))]
pub async fn forgot_password(
    State(s): State<AppState>,
    Client(ctx): Client,
    ApiJson(req): ApiJson<ForgotPasswordRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.forgot_password(req, ctx).await?;
    answer(&s, o)
}

/// `?wait=N`: hold the request up to N seconds (at most 30) while the flow waits for a push answer.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Wait {
    /// Seconds to hold the request while the flow is at `push_approval` (more than 30 is held 30).
    #[serde(default)]
    wait: Option<u64>,
}

/// The flow's current answer (tokens are only ever in the answer that completed it). At
/// `push_approval` this is where the phone's answer arrives: `done` with tokens once approved;
/// with `?wait=N` the request returns as soon as it does.
#[utoipa::path(get, path = "/v1/flows/{id}", tag = "flows", params(("id" = String, Path, description = "The flow id"), Wait),
    responses((status = 200, body = FlowAnswer), (status = 400, description = "invalid_request: `wait` is not a whole number of seconds", body = ErrorBody),
        (status = 403, description = "flow_context_mismatch", body = ErrorBody),
        (status = 404, description = "flow_not_found", body = ErrorBody), (status = 410, description = "flow_expired", body = ErrorBody)))]
pub async fn get_flow(
    State(s): State<AppState>,
    Client(ctx): Client,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<Wait>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(0).min(30));
    let o = s.auth.current_waiting(flow_id(&id)?, &ctx, wait).await?;
    answer(&s, o)
}

/// Answer the step the flow waits for. A wrong answer is `200` with the same step, fewer
/// `attempts_left` and an `error`; too many wrong answers end the flow with `denied`.
#[utoipa::path(post, path = "/v1/flows/{id}", tag = "flows", params(("id" = String, Path, description = "The flow id")), request_body = StepAnswer,
    responses((status = 200, body = FlowAnswer), (status = 400, body = ErrorBody), (status = 403, description = "flow_context_mismatch", body = ErrorBody),
        (status = 404, description = "flow_not_found", body = ErrorBody), (status = 409, description = "flow_completed, step_mismatch", body = ErrorBody),
        (status = 410, description = "flow_expired", body = ErrorBody)))]
pub async fn answer_flow(
    State(s): State<AppState>,
    Client(ctx): Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<StepAnswer>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.submit(flow_id(&id)?, req, ctx).await?;
    answer(&s, o)
}

/// Send the current step's code again. Rate limited; does not reset the attempt count.
#[utoipa::path(post, path = "/v1/flows/{id}/resend", tag = "flows", params(("id" = String, Path, description = "The flow id")),
    responses((status = 200, body = FlowAnswer), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody),
        (status = 429, description = "limit_exceeded", body = ErrorBody)))]
pub async fn resend(
    State(s): State<AppState>,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.resend(flow_id(&id)?, ctx).await?;
    answer(&s, o)
}
