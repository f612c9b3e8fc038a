//! The operator's web console (`/console`): one page and its script and style, compiled into the
//! binary (no CDN, works offline). It signs in through Latchkey's own flows and calls the admin
//! API with the session's access token in the `Authorization` header — never a cookie, so a
//! cross-site request carries no credential (the console's CSRF protection). Every answer has a
//! strict Content-Security-Policy: scripts and styles from this origin only, nothing inline.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// The console's Content-Security-Policy: its own script and style, data: images (the TOTP QR
/// code), calls to its own origin, no frames, no plugins, no inline anything.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        // Every other console path is a page of the one-page app (`/console/invite`, …).
        .route("/console/{*page}", get(index))
}

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8", "no-store")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8", "no-cache")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8", "no-cache")
}
