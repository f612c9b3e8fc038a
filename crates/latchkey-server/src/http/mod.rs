//! The HTTP adapter: routes close to their handlers, one error type, request ids everywhere.

pub mod account;
pub mod adaptive;
pub mod admin;
pub mod app_integrity;
pub mod console;
pub mod device;
pub mod error;
pub mod extract;
pub mod flows;
pub mod introspection;
pub mod operator;
pub mod ops;
pub mod passkeys;
pub mod recovery;
pub mod session;
pub mod webhooks;

use crate::jwt::JwtSigner;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use latchkey_core::{Auth, AuthError};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The domain service.
    pub auth: Auth,
    /// For the JWKS.
    pub signer: Arc<JwtSigner>,
    /// For `/metrics`.
    pub metrics: PrometheusHandle,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<String>,
    /// The admin token, if the admin API is on.
    pub admin_token: Option<Arc<str>>,
    /// The backends that may introspect and revoke tokens: (client id, secret).
    pub backends: Arc<Vec<(String, String)>>,
    /// Whether `X-Forwarded-For` is trusted.
    pub trust_forwarded_for: bool,
    /// `sqlite` or `postgres`.
    pub database_kind: &'static str,
    /// A request not answered within this is `408 request_timeout`.
    pub request_timeout: std::time::Duration,
}

/// What a username field may hold: 1–64 characters (its `maxLength`), one of them not a space,
/// none a control character.
const USERNAME_PATTERN: &str =
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// The OpenAPI 3.1 description of every route.
#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Authentication for mobile apps: every flow answers with the next step."),
    paths(
        flows::sign_up, flows::sign_in, flows::forgot_password, flows::get_flow, flows::answer_flow, flows::resend,
        recovery::start, recovery::cancel_page, recovery::cancel, recovery::cancel_from_session, recovery::cancel_from_device,
        session::token, session::sign_out, introspection::introspect, introspection::revoke, session::me, session::sessions, session::revoke_session,
        session::factors, session::enroll_factor, session::remove_factor, session::set_preferred,
        session::recovery_codes, session::devices, session::enroll_device, session::revoke_device,
        session::rekey_biometric, session::set_device_pin, adaptive::step_up, adaptive::events,
        adaptive::remember, adaptive::forget, passkeys::list, passkeys::rename, passkeys::remove,
        passkeys::assetlinks, passkeys::apple_app_site_association, app_integrity::challenge, app_integrity::register_apple_key, account::change_password, account::export, account::update_profile, account::delete_account,
        device::approvals, device::approval, device::answer, device::push_token,
        admin::show, admin::delete_user, admin::update_user, admin::require_password_change, admin::disable, admin::enable, admin::revoke_sessions, admin::unlock,
        admin::reset_factor, admin::revoke_user_device, operator::list_users, operator::invite, operator::set_role, operator::audit, operator::outbox, operator::requeue, operator::summary,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::show_webhook, webhooks::delete_webhook,
        ops::live, ops::ready, ops::metrics_text, ops::openapi, ops::jwks, ops::openid_configuration,
    ),
    modifiers(&SecuritySchemes, &ResponseDescriptions),
    tags((name = "flows", description = "Sign-up, sign-in and recovery as server-run state machines"),
         (name = "tokens", description = "Refresh and sign-out"),
         (name = "device", description = "An enrolled device's own requests (push approval), signed by its key"), (name = "me", description = "The signed-in user"),
         (name = "admin", description = "Administration: the admin token (automation) or an admin account's session at aal2"), (name = "operations"), (name = "discovery"))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "backend",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A `[[backends]]` client id and secret (or `client_id` and `client_secret` in the form)",
                    ))
                    .build(),
            ),
        );
        // `Authorization` with schemes OpenAPI's `http` type does not name: described as the header.
        use utoipa::openapi::security::{ApiKey, ApiKeyValue};
        components.add_security_scheme(
            "device",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Device <device id>`, with a `DPoP` header: a proof (RFC 9449) by the device's possession key for this method and URL",
            ))),
        );
        components.add_security_scheme(
            "dpop",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`DPoP <access token>` for a device session, with a `DPoP` header: a proof by the device's possession key carrying the token's `ath` (RFC 9449)",
            ))),
        );
        // Tagged unions say which property tells their variants apart.
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Discriminator, Schema};
        for (name, tag) in [("NextStep", "type"), ("StepAnswer", "step")] {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
                one_of.discriminator = Some(Discriminator::new(tag));
            }
        }
        // The error code is one of the documented, stable codes.
        if let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail")
            && let Some(RefOr::T(Schema::Object(code))) = detail.properties.get_mut("code")
        {
            code.enum_values = Some(latchkey_proto::codes::ALL.iter().map(|c| serde_json::json!(c)).collect());
        }
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// OpenAPI requires a description on every response (3.1 §4.8.17.1): a response declared with a
/// status and a body only gets the status's meaning and where the reason is. Bearer routes also
/// list the DPoP scheme of device sessions.
struct ResponseDescriptions;

impl utoipa::Modify for ResponseDescriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                // A bearer route takes a device session's DPoP-bound token as well.
                let bearer = serde_json::to_value(&op.security).is_ok_and(|v| v.to_string().contains("\"bearer\""));
                if bearer && let Some(security) = op.security.as_mut() {
                    security.push(utoipa::openapi::security::SecurityRequirement::new("dpop", Vec::<String>::new()));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Answer");
                        r.description = if status.starts_with('2') {
                            reason.to_owned()
                        } else {
                            format!("{reason}: the error body; `error.code` says why")
                        };
                    }
                }
            }
        }
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    openapi_json_for(&[])
}

/// The OpenAPI document of a server with these custom attributes: each is a property of
/// `ProfileUpdate` and `Me` (the same document as `openapi_json` when none is declared).
pub fn openapi_json_for(attributes: &[latchkey_core::attributes::AttributeDecl]) -> String {
    let Ok(mut doc) = serde_json::to_value(ApiDoc::openapi()) else { return String::new() };
    exact(&mut doc);
    let schemas = &mut doc["components"]["schemas"];
    for a in attributes {
        for name in ["ProfileUpdate", "Me"] {
            if let Some(props) = schemas[name]["properties"].as_object_mut() {
                props.insert(a.name.clone(), a.schema());
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// What the derived document cannot say by itself (issue 11, item 13):
/// - the SDK's `unknown` fallbacks (for values a newer server may add) are never sent by this
///   server, so they are not in its enums or unions;
/// - each answer to a step refuses properties it does not name, as the server does.
fn exact(doc: &mut serde_json::Value) {
    let schemas = &mut doc["components"]["schemas"];
    for name in ["Channel", "DenialReason", "MfaMethod"] {
        if let Some(values) = schemas[name]["enum"].as_array_mut() {
            values.retain(|v| v != "unknown");
        }
    }
    if let Some(variants) = schemas["NextStep"]["oneOf"].as_array_mut() {
        variants.retain(|v| v["properties"]["type"]["enum"] != serde_json::json!(["unknown"]));
    }
    if let Some(variants) = schemas["StepAnswer"]["oneOf"].as_array_mut() {
        for v in variants.iter_mut().filter(|v| v["type"] == "object") {
            v["additionalProperties"] = serde_json::Value::Bool(false);
        }
    }
    // An endpoint subscribes to the events there are, at an https:// URL (or http:// to this
    // machine), as the server checks.
    let events: Vec<&str> = latchkey_core::events::EVENT_TYPES.to_vec();
    schemas["WebhookRequest"]["properties"]["events"]["items"] = serde_json::json!({"type": "string", "enum": events});
    schemas["WebhookRequest"]["properties"]["events"]["uniqueItems"] = serde_json::Value::Bool(true);
    schemas["WebhookRequest"]["properties"]["url"]["pattern"] = serde_json::Value::String(
        r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1|\[::1\]))(:[0-9]{1,5})?([/?#][!-~]*)?$".into(),
    );
    // A profile update names only known attributes (custom ones, when declared, are added by
    // `openapi_json_for`); anything else is refused, as the server does.
    schemas["ProfileUpdate"]["additionalProperties"] = serde_json::Value::Bool(false);
    // A sign-in is a device's id alone, a username (with its password, or without one for a
    // passwordless account's new device), or `passkey: true` alone: never two, never none.
    // A username holds something other than a space and no control character anywhere (the
    // server refuses them before they become a key: a NUL cannot even be stored in PostgreSQL).
    for schema in ["SignUpRequest", "SignInRequest", "ForgotPasswordRequest", "RecoveryRequest"] {
        schemas[schema]["properties"]["username"]["pattern"] = serde_json::json!(USERNAME_PATTERN);
    }
    schemas["SignInRequest"]["anyOf"] = serde_json::json!([
        {"required": ["device_id"], "properties": {"device_id": {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}, "username": {"type": "null"}, "password": {"type": "null"}, "passkey": {"const": false}}},
        {"required": ["username"], "properties": {"username": {"type": "string"}, "device_id": {"type": "null"}, "passkey": {"const": false}}},
        {"required": ["passkey"], "properties": {"passkey": {"const": true}, "username": {"type": "null"}, "password": {"type": "null"}, "device_id": {"type": "null"}}},
    ]);
    let error = |what: &str| {
        serde_json::json!({
            "description": what,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (_, op) in item.iter_mut() {
            let has_body = op.get("requestBody").is_some();
            let Some(responses) = op["responses"].as_object_mut() else { continue };
            // What any route can answer, besides what it documents itself.
            let mut add = |status: &str, what: &str| {
                responses.entry(status.to_owned()).or_insert_with(|| error(what));
            };
            add("408", "request_timeout: not answered within `http.request_timeout_secs`");
            add("503", "unavailable: the database cannot be reached; try again");
            if has_body {
                add("400", "invalid_request: the body is not JSON of this shape");
                add("413", "payload_too_large: the body is over 64 KiB");
            }
            // A flow's id leads to its other operations (schemathesis follows these).
            if matches!(
                path.as_str(),
                "/v1/sign-up" | "/v1/sign-in" | "/v1/forgot-password" | "/v1/recovery" | "/v1/step-up"
            ) && let Some(ok) = responses.get_mut("200")
            {
                let by_id = serde_json::json!({"id": "$response.body#/flow_id"});
                ok["links"] = serde_json::json!({
                    "GetFlow": {"operationId": "get_flow", "parameters": by_id},
                    "AnswerFlow": {"operationId": "answer_flow", "parameters": by_id},
                    "Resend": {"operationId": "resend", "parameters": by_id},
                });
            }
        }
    }
}

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Surfaces {
    /// The public API, discovery and the OpenAPI document.
    pub api: bool,
    /// `GET /metrics`.
    pub metrics: bool,
    /// `/admin/v1/…`.
    pub admin: bool,
}

impl Surfaces {
    /// Everything on one listener.
    pub const ALL: Surfaces = Surfaces { api: true, metrics: true, admin: true };
}

/// The whole router with its middleware.
pub fn router(state: AppState) -> Router {
    router_for(state, Surfaces::ALL)
}

/// A router serving `surfaces` (the health checks always), with the middleware every answer
/// gets.
pub fn router_for(state: AppState, surfaces: Surfaces) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    let mut routes = Router::new().merge(ops::health());
    if surfaces.api {
        routes = routes
            .merge(flows::router())
            .merge(recovery::router())
            .merge(device::router())
            .merge(session::router())
            .merge(adaptive::router())
            .merge(account::router())
            .merge(passkeys::router())
            .merge(app_integrity::router())
            .merge(introspection::router())
            .merge(ops::router());
    }
    if surfaces.metrics {
        routes = routes.merge(ops::metrics());
    }
    if surfaces.admin {
        routes =
            routes.merge(admin::router()).merge(operator::router()).merge(webhooks::router()).merge(console::router());
        // On a listener of its own, the console still signs in through the flows.
        if !surfaces.api {
            routes = routes.merge(flows::router()).merge(session::router());
        }
    }
    routes
        .layer(middleware::from_fn_with_state(state.clone(), server_date))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .fallback(|| async { error::ApiError(AuthError::NotFound) })
        // axum adds the `Allow` header to this answer.
        .method_not_allowed_fallback(|| async { error::ApiError(AuthError::MethodNotAllowed) })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::COOKIE,
                ]))
                .layer(middleware::from_fn(bound_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(error::render_errors))
                .layer(middleware::from_fn(track))
                .layer(CatchPanicLayer::custom(|_| {
                    error::ApiError(AuthError::Internal("handler panicked".into())).into_response()
                }))
                .layer(DefaultBodyLimit::max(64 * 1024)),
        )
}

/// A client's `X-Request-Id` is kept (it ties the client's logs to ours) only if it is at most
/// 64 characters of `A-Z a-z 0-9 . _ : -`; any other is replaced by a new id, so a client cannot
/// write kilobytes or control characters into every log line of its request.
async fn bound_request_id(mut req: Request, next: Next) -> Response {
    let bad = req.headers().get("x-request-id").is_some_and(|v| {
        let b = v.as_bytes();
        b.is_empty() || b.len() > 64 || !b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    });
    if bad {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

/// `Date` from the server's clock (the injected one), so a device whose own clock is off can
/// still date its DPoP proofs within the ±60 s the server accepts: the SDK keeps the offset.
async fn server_date(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    if let Ok(date) = state.auth.now().to_offset(time::UtcOffset::UTC).format(&format)
        && let Ok(v) = axum::http::HeaderValue::from_str(&date)
    {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    resp
}

/// The whole-request deadline (`http.request_timeout_secs`): past it, `408 request_timeout` with
/// the JSON error, and the handler is dropped (its transaction, if any, rolls back).
async fn deadline(axum::extract::State(state): axum::extract::State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error::ApiError(AuthError::RequestTimeout).into_response(),
    }
}

/// Request counts and latencies by route (the route template, never the raw path).
async fn track(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("latchkey_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status).increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}
