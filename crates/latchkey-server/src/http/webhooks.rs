//! Event webhook endpoints on the admin API (issue 15): `POST`, `GET` and `DELETE
//! /admin/v1/webhooks`. What they receive is docs/integrations.md's.

use super::AppState;
use super::admin::Admin;
use super::error::ApiError;
use super::extract::ApiJson;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use latchkey_proto::{ErrorBody, Webhook, WebhookList, WebhookRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/admin/v1/webhooks/{id}", get(show_webhook).delete(delete_webhook))
}

/// Subscribe an endpoint to events. The answer carries its signing secret (`whsec_…`), shown
/// this once. Events are POSTed signed as Standard Webhooks asks, through the outbox (retries,
/// dead letters, a delivery lane of its own).
#[utoipa::path(post, path = "/admin/v1/webhooks", tag = "admin", security(("admin" = [])), request_body = WebhookRequest,
    responses((status = 201, body = Webhook),
        (status = 400, description = "invalid_request: an unknown event, a URL that is not https:// (or http:// to localhost), or too many endpoints", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiJson(req): ApiJson<WebhookRequest>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.auth.admin().create_webhook(req, &by).await?)))
}

/// Every endpoint, the configured ones first (never their secrets).
#[utoipa::path(get, path = "/admin/v1/webhooks", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(State(s): State<AppState>, _a: Admin) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(s.auth.admin().webhooks().await?))
}

/// One endpoint (without its secret).
#[utoipa::path(get, path = "/admin/v1/webhooks/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, body = Webhook), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show_webhook(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(s.auth.admin().webhook(&id).await?))
}

/// Remove an endpoint made through the API, with its undelivered events. A configured one is
/// removed from the configuration.
#[utoipa::path(delete, path = "/admin/v1/webhooks/{id}", tag = "admin", security(("admin" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Removed"), (status = 400, description = "invalid_request: the endpoint is in the configuration", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.auth.admin().delete_webhook(&id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
