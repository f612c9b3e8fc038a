//! Token introspection (RFC 7662) and revocation (RFC 7009) for the app's backend, form-encoded,
//! with the backend's client id and secret as HTTP Basic or form fields (checklist TOK-4, TOK-5).

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiForm, Client};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use latchkey_core::AuthError;
use latchkey_core::secret::ct_eq;
use latchkey_proto::{ErrorBody, Introspection, TokenForm};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/introspect", post(introspect)).route("/v1/revoke", post(revoke))
}

/// RFC 7662 §2.1, RFC 7009 §2.1: the token is required; at most 4,096 characters, as the schema
/// says.
fn check_token(form: &TokenForm) -> Result<(), ApiError> {
    let n = form.token.chars().count();
    if n == 0 || n > 4096 {
        return Err(ApiError(AuthError::InvalidRequest("token: 1 to 4,096 characters".into())));
    }
    Ok(())
}

/// The authenticated backend's id: `None` when the request names none, `InvalidClient` when it
/// names one wrongly (or two different ways).
fn backend(s: &AppState, headers: &HeaderMap, form: &TokenForm) -> Result<Option<String>, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .map(|b64| {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap_or_default();
            let text = String::from_utf8(raw).unwrap_or_default();
            let (id, secret) = text.split_once(':').unwrap_or_default();
            (id.to_owned(), secret.to_owned())
        });
    let posted = match (&form.client_id, &form.client_secret) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        (None, None) => None,
        _ => return Err(ApiError(AuthError::InvalidClient)),
    };
    let (id, secret) = match (basic, posted) {
        (None, None) => return Ok(None),
        (Some(c), None) | (None, Some(c)) => c,
        (Some(_), Some(_)) => return Err(ApiError(AuthError::InvalidClient)),
    };
    // Every configured secret is compared, so the time taken names no client id.
    let mut found = None;
    for (known_id, known_secret) in s.backends.iter() {
        let right = ct_eq(known_id.as_bytes(), id.as_bytes()) & ct_eq(known_secret.as_bytes(), secret.as_bytes());
        if right {
            found = Some(known_id.clone());
        }
    }
    found.map(Some).ok_or(ApiError(AuthError::InvalidClient))
}

/// Introspect a token for an authenticated backend (RFC 7662): an access token or a refresh
/// token. Active while it verifies, has not expired, its session is live and its account active
/// — what every authenticated request checks; an inactive or unknown token answers exactly
/// `{"active":false}`. The backend authenticates with HTTP Basic (`client_secret_basic`) or
/// `client_id` and `client_secret` in the form (`client_secret_post`), as configured in
/// `[[backends]]`; without it, `401 invalid_client`.
#[utoipa::path(post, path = "/v1/introspect", tag = "tokens", security(("backend" = [])),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 400, description = "invalid_request: no token", body = ErrorBody),
        (status = 401, description = "invalid_client", body = ErrorBody)))]
pub async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiForm(form): ApiForm<TokenForm>,
) -> Result<Json<Introspection>, ApiError> {
    if backend(&s, &headers, &form)?.is_none() {
        return Err(ApiError(AuthError::InvalidClient));
    }
    check_token(&form)?;
    Ok(Json(s.auth.sessions().introspect(&form.token).await?))
}

/// Revoke a token (RFC 7009): its whole session ends, so every access and refresh token of it
/// is refused from the next request. `200` whatever the token was (unknown, expired or revoked
/// already). The token's holder may revoke it without client authentication; a device
/// session's tokens (bound to the device's key) only by an authenticated backend.
#[utoipa::path(post, path = "/v1/revoke", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or nothing to revoke"), (status = 400, description = "invalid_request: no token", body = ErrorBody),
        (status = 401, description = "invalid_client: client credentials were sent and are wrong", body = ErrorBody)))]
pub async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    Client(ctx): Client,
    ApiForm(form): ApiForm<TokenForm>,
) -> Result<StatusCode, ApiError> {
    let backend = backend(&s, &headers, &form)?;
    check_token(&form)?;
    s.auth.sessions().revoke_token(&form.token, backend.as_deref(), ctx).await?;
    Ok(StatusCode::OK)
}
