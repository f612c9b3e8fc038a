//! Token and session routes: refresh, sign-out, the signed-in user and their sessions.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, Client, Dpop};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_proto::{
    DeviceList, DevicePin, EnrollFactorRequest, ErrorBody, FactorList, FlowAnswer, Me, PreferredMfa, RecoveryCodes,
    SessionList, SignOutRequest, TokenRequest, Tokens,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/token", post(token))
        .route("/v1/sign-out", post(sign_out))
        .route("/v1/me", get(me))
        .route("/v1/me/sessions", get(sessions))
        .route("/v1/me/sessions/{id}", delete(revoke_session))
        .route("/v1/me/factors", get(factors).post(enroll_factor))
        .route("/v1/me/factors/preferred", put(set_preferred))
        .route("/v1/me/factors/{id}", delete(remove_factor))
        .route("/v1/me/recovery-codes", post(recovery_codes))
        .route("/v1/me/devices", get(devices).post(enroll_device))
        .route("/v1/me/devices/{id}", delete(revoke_device))
        .route("/v1/me/devices/{id}/biometric-key", post(rekey_biometric))
        .route("/v1/me/devices/{id}/pin", put(set_device_pin))
}

/// Rotate a refresh token. A spent token revokes its whole family (`invalid_grant`). A device
/// session's refresh needs a `DPoP` header: a proof (RFC 9449) by the device's possession key
/// for `POST` to this URL; without it nothing changes and the answer is `invalid_dpop_proof`.
#[utoipa::path(post, path = "/v1/token", tag = "tokens", request_body = TokenRequest,
    params(("DPoP" = Option<String>, Header, description = "DPoP proof JWT (RFC 9449); required for device sessions")),
    responses((status = 200, body = Tokens),
        (status = 400, description = "invalid_grant, unsupported_grant_type, invalid_dpop_proof", body = ErrorBody)))]
pub async fn token(
    State(s): State<AppState>,
    Client(ctx): Client,
    Dpop(proof): Dpop,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<Tokens>, ApiError> {
    Ok(Json(s.auth.sessions().refresh(req, proof, ctx).await?))
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
    s.auth.sessions().sign_out(&p, scope, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])), responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, Authenticated(p): Authenticated) -> Json<Me> {
    Json(s.auth.account().me(&p))
}

/// The user's live sessions.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "me", security(("bearer" = [])), responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
pub async fn sessions(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(s.auth.sessions().list(&p).await?))
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
    s.auth.sessions().revoke(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's second factors (never their secrets).
#[utoipa::path(get, path = "/v1/me/factors", tag = "me", security(("bearer" = [])), responses((status = 200, body = FactorList), (status = 401, body = ErrorBody)))]
pub async fn factors(State(s): State<AppState>, Authenticated(p): Authenticated) -> Result<Json<FactorList>, ApiError> {
    Ok(Json(s.auth.account().factors(&p).await?))
}

/// Start enrolling a factor: an `enroll` flow answered through `/v1/flows/{id}` — `setup_totp` for
/// `totp`, `verify_code` for `sms` and `email` (which also changes the phone or address, the old
/// one staying in force until the code is right), `save_recovery_codes` for `recovery_codes`,
/// `passkey` (a WebAuthn creation ceremony) for `passkey`, which needs `aal2`. Needs a sign-in from the last 10 minutes (and
/// `aal2` once a second factor exists); otherwise `401 insufficient_user_authentication` with
/// `WWW-Authenticate` saying what to redo (RFC 9470).
#[utoipa::path(post, path = "/v1/me/factors", tag = "me", security(("bearer" = [])), request_body = EnrollFactorRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, body = ErrorBody),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody)))]
pub async fn enroll_factor(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<EnrollFactorRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.enroll(&p, &req, ctx).await?;
    super::flows::answer(&s, o)
}

/// Remove a factor. Needs a sign-in at `aal2` from the last 10 minutes; the last factor that
/// gives `aal2` cannot be removed when policy requires MFA (`409 mfa_required`). Removing it
/// also removes the recovery codes. The account's email is told.
#[utoipa::path(delete, path = "/v1/me/factors/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "Factor id")),
    responses((status = 204, description = "Removed"), (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "mfa_required", body = ErrorBody)))]
pub async fn remove_factor(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.account().remove_factor(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the second factor sign-in lists first in `select_mfa`.
#[utoipa::path(put, path = "/v1/me/factors/preferred", tag = "me", security(("bearer" = [])), request_body = PreferredMfa,
    responses((status = 204, description = "Set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_preferred(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    ApiJson(req): ApiJson<PreferredMfa>,
) -> Result<StatusCode, ApiError> {
    s.auth.account().set_preferred_mfa(&p, req.method, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Generate ten recovery codes, shown this once; any earlier set stops working. Needs an
/// authenticator app or phone factor and a sign-in at `aal2` from the last 10 minutes.
#[utoipa::path(post, path = "/v1/me/recovery-codes", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 400, body = ErrorBody),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody)))]
pub async fn recovery_codes(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
) -> Result<Json<RecoveryCodes>, ApiError> {
    Ok(Json(s.auth.account().regenerate_recovery_codes(&p, ctx).await?))
}

/// The user's enrolled devices (not revoked).
#[utoipa::path(get, path = "/v1/me/devices", tag = "me", security(("bearer" = [])), responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody)))]
pub async fn devices(State(s): State<AppState>, Authenticated(p): Authenticated) -> Result<Json<DeviceList>, ApiError> {
    Ok(Json(s.auth.account().devices(&p).await?))
}

/// Enrol this device: an `enroll` flow whose step is `enroll_device` (the device id to use and a
/// nonce to sign). Needs a sign-in at `aal2` from the last 10 minutes. See `docs/devices.md`.
#[utoipa::path(post, path = "/v1/me/devices", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = FlowAnswer),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody)))]
pub async fn enroll_device(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.enroll_device(&p, ctx).await?;
    super::flows::answer(&s, o)
}

/// Revoke a device: its keys, its PIN and every session signed in with it stop working at once.
#[utoipa::path(delete, path = "/v1/me/devices/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.account().revoke_device(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register a fresh biometric key for this device after the OS invalidated the old one: an
/// `enroll` flow whose step is `rekey_biometric`. Only from the device itself, signed in with its
/// PIN in the last 10 minutes (else `401 insufficient_user_authentication`). See `docs/devices.md`.
#[utoipa::path(post, path = "/v1/me/devices/{id}/biometric-key", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = FlowAnswer),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn rekey_biometric(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    let o = s.auth.rekey_biometric(&p, id, ctx).await?;
    super::flows::answer(&s, o)
}

/// Set a device's app PIN; a blocked PIN is unblocked. Needs a sign-in at `aal2` from the last
/// 10 minutes (with another factor, when the PIN is blocked). The account's addresses are told.
#[utoipa::path(put, path = "/v1/me/devices/{id}/pin", tag = "me", security(("bearer" = [])), request_body = DevicePin,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Set"), (status = 400, description = "invalid_request (an easy PIN)", body = ErrorBody),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn set_device_pin(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DevicePin>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.account().set_device_pin(&p, id, latchkey_core::secret::SecretString::new(req.pin), ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
