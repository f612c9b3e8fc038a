//! The HTTP error: the whole status table in one `match`. Bodies carry a stable code, a message
//! and the request id; 5xx bodies never carry internal detail (it is logged instead).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::AuthError;
use latchkey_proto::{ErrorBody, ErrorDetail};

/// An error answer. Rendered by [`render_errors`] once the request id is known.
#[derive(Debug)]
pub struct ApiError(pub AuthError);

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self(e)
    }
}

/// What `render_errors` needs to write the body.
#[derive(Debug, Clone)]
pub struct PendingError {
    code: &'static str,
    message: String,
}

fn status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::InvalidRequest(_)
        | AuthError::InvalidAttestation(_)
        | AuthError::InvalidPassword(_)
        | AuthError::InvalidGrant
        | AuthError::UnsupportedGrantType
        | AuthError::InvalidDpopProof { resource: false, .. } => StatusCode::BAD_REQUEST,
        AuthError::InvalidDpopProof { resource: true, .. } => StatusCode::UNAUTHORIZED,
        AuthError::NotAuthorized
        | AuthError::Unauthenticated
        | AuthError::InvalidClient
        | AuthError::InsufficientAuthentication { .. } => StatusCode::UNAUTHORIZED,
        AuthError::Forbidden
        | AuthError::ContextMismatch
        | AuthError::SignUpDenied(_)
        | AuthError::AppIntegrityRequired(_) => StatusCode::FORBIDDEN,
        AuthError::NotFound | AuthError::FlowNotFound => StatusCode::NOT_FOUND,
        AuthError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        AuthError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        AuthError::UsernameExists
        | AuthError::FlowCompleted
        | AuthError::StepMismatch { .. }
        | AuthError::MfaRequired(_) => StatusCode::CONFLICT,
        AuthError::FlowExpired | AuthError::ExpiredCode => StatusCode::GONE,
        AuthError::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        AuthError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        AuthError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status(&e);
        let message = match &e {
            AuthError::Unavailable(detail) => {
                tracing::error!(error = %detail, "dependency unavailable; failing closed");
                "the service is temporarily unavailable; nothing was changed".to_owned()
            }
            AuthError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut resp = status.into_response();
        match &e {
            AuthError::Unauthenticated => {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // RFC 6749 §5.2: a client that tried HTTP Basic is told to.
            AuthError::InvalidClient => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
            }
            // RFC 9449 §7.1.
            AuthError::InvalidDpopProof { resource: true, .. } => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("DPoP error=\"invalid_dpop_proof\", algs=\"ES256\""),
                );
            }
            // RFC 9470 §3: tell the client what a new authentication must achieve.
            AuthError::InsufficientAuthentication { acr, max_age } => {
                let v = format!(
                    "Bearer error=\"insufficient_user_authentication\", acr_values=\"{acr}\", max_age={max_age}"
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            // RFC 9110 §10.2.3: when trying again may succeed.
            AuthError::LimitExceeded { retry_after_secs, limit } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                metrics::counter!("latchkey_limit_refusals_total", "limit" => *limit).increment(1);
            }
            _ => {}
        }
        resp.extensions_mut().insert(PendingError { code: e.code(), message });
        resp
    }
}

/// `404 not_found` with a message saying what is missing (a route that exists but has nothing
/// to serve in this configuration).
pub fn not_found(message: &str) -> Response {
    let mut resp = StatusCode::NOT_FOUND.into_response();
    resp.extensions_mut().insert(PendingError { code: AuthError::NotFound.code(), message: message.to_owned() });
    resp
}

/// Middleware: write the JSON body of error answers, with the request id; and, on every
/// answer, `Cache-Control: no-store` (RFC 6749 §5.1: answers carry tokens, TOTP secrets and
/// recovery codes; none of them may sit in a cache) and `X-Content-Type-Options: nosniff`.
pub async fn render_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(p) = resp.extensions_mut().remove::<PendingError>() {
        let body = ErrorBody { error: ErrorDetail { code: p.code.into(), message: p.message, request_id } };
        let (mut parts, _) = resp.into_parts();
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parts.headers.remove(header::CONTENT_LENGTH);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    resp
}
