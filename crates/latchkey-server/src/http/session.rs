//! Token and session routes: refresh, sign-out, the signed-in user and their sessions.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, Client};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_proto::{
    EnrollFactorRequest, ErrorBody, FactorList, FlowAnswer, Me, SessionList, SignOutRequest, TokenRequest, Tokens,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/token", post(token))
        .route("/v1/sign-out", post(sign_out))
        .route("/v1/me", get(me))
        .route("/v1/me/sessions", get(sessions))
        .route("/v1/me/sessions/{id}", delete(revoke_session))
        .route("/v1/me/factors", get(factors).post(enroll_factor))
}

/// Rotate a refresh token. A spent token revokes its whole family (`invalid_grant`).
#[utoipa::path(post, path = "/v1/token", tag = "tokens", request_body = TokenRequest,
    responses((status = 200, body = Tokens), (status = 400, description = "invalid_grant, unsupported_grant_type", body = ErrorBody)))]
pub async fn token(
    State(s): State<AppState>,
    Client(ctx): Client,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<Tokens>, ApiError> {
    Ok(Json(s.auth.refresh(req, ctx).await?))
}

/// End this session (`scope: session`, the default) or every session (`all`).
#[utoipa::path(post, path = "/v1/sign-out", tag = "tokens", request_body = SignOutRequest, security(("bearer" = [])),
    responses((status = 204, description = "Signed out"), (status = 401, body = ErrorBody)))]
pub async fn sign_out(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional: none means this session only.
    let scope = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        serde_json::from_slice::<SignOutRequest>(&body)
            .map_err(|e| ApiError(AuthError::InvalidRequest(e.to_string())))?
            .scope
    };
    s.auth.sign_out(&p, scope, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])), responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, Authenticated(p): Authenticated) -> Json<Me> {
    Json(s.auth.me(&p))
}

/// The user's live sessions.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "me", security(("bearer" = [])), responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
pub async fn sessions(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(s.auth.sessions(&p).await?))
}

/// Revoke one of the user's sessions; effective on its next request.
#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "me", security(("bearer" = [])), params(("id" = String, Path, description = "The session id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_session(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.revoke_session(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's second factors (never their secrets).
#[utoipa::path(get, path = "/v1/me/factors", tag = "me", security(("bearer" = [])), responses((status = 200, body = FactorList), (status = 401, body = ErrorBody)))]
pub async fn factors(State(s): State<AppState>, Authenticated(p): Authenticated) -> Result<Json<FactorList>, ApiError> {
    Ok(Json(s.auth.factors(&p).await?))
}

/// Start enrolling a factor: an `enroll` flow answered through `/v1/flows/{id}` (`setup_totp`).
/// Needs a sign-in from the last 10 minutes (and `aal2` once a second factor exists); otherwise
/// `401 insufficient_user_authentication` with `WWW-Authenticate` saying what to redo (RFC 9470).
#[utoipa::path(post, path = "/v1/me/factors", tag = "me", security(("bearer" = [])), request_body = EnrollFactorRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, body = ErrorBody),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn enroll_factor(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<EnrollFactorRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.enroll(&p, &req.kind, ctx).await?;
    super::flows::answer(&s, o)
}
