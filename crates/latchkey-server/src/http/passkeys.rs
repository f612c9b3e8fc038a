//! Passkey routes: the account's passkeys (`/v1/me/passkeys`) and the `.well-known` files that
//! tie the operator's apps to the relying-party id (`docs/passkeys.md`). Registering one is
//! `POST /v1/me/factors {"type":"passkey"}`; signing in with one is `POST /v1/sign-in
//! {"passkey":true}`.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Authenticated, Client};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_core::AuthError;
use latchkey_proto::{ErrorBody, PasskeyInfo, PasskeyList, RenamePasskeyRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/passkeys", get(list))
        .route("/v1/me/passkeys/{id}", delete(remove).patch(rename))
        .route("/.well-known/assetlinks.json", get(assetlinks))
        .route("/.well-known/apple-app-site-association", get(apple_app_site_association))
}

/// The signed-in user's passkeys, oldest first: name, authenticator (by AAGUID where it is a
/// well-known one), when registered and last used, and whether the passkey is synced
/// (`backup_eligible`) and backed up now.
#[utoipa::path(get, path = "/v1/me/passkeys", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = PasskeyList), (status = 401, description = "unauthenticated", body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, Authenticated(p): Authenticated) -> Result<Json<PasskeyList>, ApiError> {
    Ok(Json(s.auth.account().passkeys(&p).await?))
}

/// Rename one of the user's passkeys.
#[utoipa::path(patch, path = "/v1/me/passkeys/{id}", tag = "me", security(("bearer" = [])), request_body = RenamePasskeyRequest,
    params(("id" = String, Path, description = "The passkey's id")),
    responses((status = 200, body = PasskeyInfo), (status = 400, description = "invalid_request: the name", body = ErrorBody),
        (status = 401, description = "unauthenticated", body = ErrorBody),
        (status = 404, description = "not_found: not a passkey of this account", body = ErrorBody)))]
pub async fn rename(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenamePasskeyRequest>,
) -> Result<Json<PasskeyInfo>, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    Ok(Json(s.auth.account().rename_passkey(&p, id, &req, ctx).await?))
}

/// Remove one of the user's passkeys: it signs in no more. Needs a sign-in at `aal2` from the
/// last 10 minutes (`401 insufficient_user_authentication` otherwise: step up). The owner is
/// told, and the account's remembered clients are forgotten.
#[utoipa::path(delete, path = "/v1/me/passkeys/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path, description = "The passkey's id")),
    responses((status = 204, description = "removed"),
        (status = 401, description = "unauthenticated, insufficient_user_authentication", body = ErrorBody),
        (status = 404, description = "not_found: not a passkey of this account", body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id.parse().map_err(|_| ApiError(AuthError::NotFound))?;
    s.auth.account().remove_passkey(&p, id, ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn well_known(doc: Option<serde_json::Value>, missing: &str) -> Response {
    match doc {
        Some(doc) => ([(header::CACHE_CONTROL, "public, max-age=3600")], Json(doc)).into_response(),
        None => super::error::not_found(missing),
    }
}

/// Digital Asset Links for the Android apps in `[policy.passkeys] android_apps`: lets them use
/// the relying party's passkeys (`get_login_creds`). `404` without Android apps.
#[utoipa::path(get, path = "/.well-known/assetlinks.json", tag = "discovery",
    responses((status = 200, description = "The statements", body = Object), (status = 404, description = "not_found: no Android apps configured", body = ErrorBody)))]
pub async fn assetlinks(State(s): State<AppState>) -> Response {
    well_known(
        s.auth.settings().passkeys.assetlinks(),
        "no Android apps are configured ([policy.passkeys] android_apps)",
    )
}

/// The `webcredentials` of the iOS apps in `[policy.passkeys] apple_app_ids`: lets them use the
/// relying party's passkeys (their associated domains list `webcredentials:<rp_id>`). `404`
/// without iOS apps.
#[utoipa::path(get, path = "/.well-known/apple-app-site-association", tag = "discovery",
    responses((status = 200, description = "The association", body = Object), (status = 404, description = "not_found: no iOS apps configured", body = ErrorBody)))]
pub async fn apple_app_site_association(State(s): State<AppState>) -> Response {
    well_known(
        s.auth.settings().passkeys.apple_app_site_association(),
        "no iOS apps are configured ([policy.passkeys] apple_app_ids)",
    )
}
