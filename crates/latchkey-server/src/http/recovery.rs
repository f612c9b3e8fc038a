//! Recovery routes: starting one, and the owner's veto — the one-tap cancel of a notice (a page
//! on `GET`, the cancel only on `POST`, so mail scanners that fetch links cancel nothing), from a
//! signed-in session, or from an enrolled device.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Authenticated, Client, SignedByDevice};
use super::flows::answer;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use latchkey_core::AuthError;
use latchkey_proto::{ErrorBody, FlowAnswer, RecoveryCancelRequest, RecoveryCancelled, RecoveryRequest, UndoOutcome};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/recovery", post(start))
        .route("/v1/recovery/cancel", get(cancel_page).post(cancel))
        .route("/v1/me/recovery", delete(cancel_from_session))
        .route("/v1/device/recovery", delete(cancel_from_device))
}

/// Start recovering an account: a code to a recovery channel (`email_code` or `sms_code`),
/// then a second, independent proof (`select_mfa`), or `recovery_wait`. The answer looks the
/// same whether or not the account exists.
#[utoipa::path(post, path = "/v1/recovery", tag = "flows", request_body = RecoveryRequest,
    responses((status = 200, body = FlowAnswer), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 429, description = "limit_exceeded", body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    Client(ctx): Client,
    ApiJson(req): ApiJson<RecoveryRequest>,
) -> Result<Json<FlowAnswer>, ApiError> {
    let o = s.auth.start_recovery(req, ctx).await?;
    answer(&s, o)
}

/// `?token=…` of a notice's link.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token from the notice.
    #[serde(default)]
    token: String,
}

/// The page a notice's link opens: it only asks; the button posts the token.
#[utoipa::path(get, path = "/v1/recovery/cancel", tag = "flows", params(TokenQuery),
    responses((status = 200, description = "An HTML page whose button posts the token", content_type = "text/html")))]
pub async fn cancel_page(ApiQuery(q): ApiQuery<TokenQuery>) -> Html<String> {
    let (title, what, button) = if q.token.starts_with("u.") {
        ("Was this not you?", "If you did not make this change, undo it.", "This wasn't me")
    } else {
        (
            "Cancel this account recovery?",
            "Someone started recovering your account. If it was not you, cancel it: nothing will change.",
            "Cancel the recovery",
        )
    };
    Html(page(
        title,
        &format!(
            "<p>{what}</p><form method=\"post\" action=\"/v1/recovery/cancel\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">{button}</button></form>",
            escape(&q.token)
        ),
    ))
}

/// "This wasn't me": the token of a security notice (`{"token": …}` as JSON, or the page's
/// form). A waiting recovery is cancelled; a completed recovery, a password, phone or email change
/// puts the account on hold until it is recovered; a new device is removed. Each token works
/// once, until it expires; otherwise `404 not_found`.
#[utoipa::path(post, path = "/v1/recovery/cancel", tag = "flows", request_body = RecoveryCancelRequest,
    responses((status = 200, body = UndoOutcome), (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 404, description = "not_found: unknown, used or expired token", body = ErrorBody)))]
pub async fn cancel(State(s): State<AppState>, Client(ctx): Client, req: Request) -> Response {
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let Ok(Form(body)) = Form::<RecoveryCancelRequest>::from_request(req, &s).await else {
            return Html(page("Nothing to do", "<p>The link is incomplete.</p>")).into_response();
        };
        return match s.auth.this_wasnt_me(&body.token, ctx).await {
            Ok(o) => {
                let text = match o.outcome.as_str() {
                    "recovery_cancelled" => "The recovery was stopped and nothing was changed.",
                    "device_removed" => "The device was removed from your account.",
                    _ => "Every session was signed out and the account is on hold until you recover it.",
                };
                Html(page("Done", &format!("<p>{text}</p>"))).into_response()
            }
            Err(AuthError::NotFound) => {
                Html(page("Nothing to do", "<p>This link was used already or has expired.</p>")).into_response()
            }
            Err(e) => ApiError(e).into_response(),
        };
    }
    let body = match ApiJson::<RecoveryCancelRequest>::from_request(req, &s).await {
        Ok(ApiJson(b)) => b,
        Err(e) => return e.into_response(),
    };
    match s.auth.this_wasnt_me(&body.token, ctx).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// Cancel every recovery of the signed-in account that is in progress.
#[utoipa::path(delete, path = "/v1/me/recovery", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = RecoveryCancelled), (status = 401, body = ErrorBody)))]
pub async fn cancel_from_session(
    State(s): State<AppState>,
    Authenticated(p): Authenticated,
    Client(ctx): Client,
) -> Result<Json<RecoveryCancelled>, ApiError> {
    Ok(Json(s.auth.cancel_recoveries_of(&p.user, "session", ctx).await?))
}

/// Cancel every recovery of the device's account that is in progress (signed by the device).
#[utoipa::path(delete, path = "/v1/device/recovery", tag = "device", security(("device" = [])),
    responses((status = 200, body = RecoveryCancelled), (status = 401, description = "unauthenticated, invalid_dpop_proof", body = ErrorBody)))]
pub async fn cancel_from_device(
    State(s): State<AppState>,
    SignedByDevice(d): SignedByDevice,
    Client(ctx): Client,
) -> Result<Json<RecoveryCancelled>, ApiError> {
    Ok(Json(s.auth.cancel_recoveries_of_device(&d, ctx).await?))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
