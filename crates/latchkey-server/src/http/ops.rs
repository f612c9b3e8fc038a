//! Operations and discovery: health, metrics, OpenAPI, JWKS, OpenID configuration.

use super::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

/// Discovery and the OpenAPI document (with the public API).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(openid_configuration))
}

/// The health checks: on every listener.
pub fn health() -> Router<AppState> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready))
}

/// `GET /metrics`: on the main listener, or on `metrics_listen`.
pub fn metrics() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_text))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// The database answers. 503 otherwise, so a load balancer stops sending traffic.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Database unreachable")))]
pub async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    match s.auth.store().ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ok", "database": s.database_kind}))),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "database": s.database_kind})),
            )
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    crate::telemetry::record_backlog(s.auth.store().as_ref(), s.auth.now()).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], s.openapi.as_ref().clone())
}

/// The keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery", responses((status = 200, description = "JWK Set")))]
pub async fn jwks(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.signer.jwks())
}

/// Discovery metadata for APIs that verify Latchkey's tokens.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery", responses((status = 200, description = "Metadata")))]
pub async fn openid_configuration(State(s): State<AppState>) -> Json<serde_json::Value> {
    let iss = &s.auth.settings().tokens.issuer;
    Json(serde_json::json!({
        "issuer": iss,
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "token_endpoint": format!("{iss}/v1/token"),
        "introspection_endpoint": format!("{iss}/v1/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint": format!("{iss}/v1/revoke"),
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "acr_values_supported": ["aal1", "aal2", "aal3"],
        "claims_supported": ["iss", "aud", "sub", "sid", "exp", "iat", "jti", "client_id", "acr", "amr", "auth_time"],
    }))
}
