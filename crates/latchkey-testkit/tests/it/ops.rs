//! Operations: health, metrics, the OpenAPI document covering every route, request ids.

use latchkey_testkit::proto::codes;
use latchkey_testkit::{Backend, TestServer};

const PW: &str = "correct horse battery";

async fn health_checks_report_liveness_and_database_readiness(b: Backend) {
    let s = TestServer::start(b).await;
    let live = s.raw().request("GET", "/health/live", None, None).await;
    assert_eq!((live.status, live.json()["status"].as_str()), (200, Some("ok")));
    let ready = s.raw().request("GET", "/health/ready", None, None).await;
    let kind = if b == Backend::Sqlite { "sqlite" } else { "postgres" };
    assert_eq!((ready.status, ready.json()["database"].as_str()), (200, Some(kind)));
}

async fn metrics_count_requests_by_route_and_flow_steps_by_outcome(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("metrics", PW).await;
    let _ = s.client().sign_in("metrics", "wrong password!").await;
    s.sign_in("metrics", PW).await;
    let text = s.raw().request("GET", "/metrics", None, None).await.body;
    for needle in [
        r#"latchkey_http_requests_total{route="/v1/sign-in",method="POST",status="401"}"#,
        r#"latchkey_http_requests_total{route="/v1/flows/{id}",method="POST",status="200"}"#,
        r#"latchkey_flow_steps_total{step="confirm_sign_up",outcome="issued"}"#,
        r#"latchkey_flow_steps_total{step="confirm_sign_up",outcome="verified"}"#,
        r#"latchkey_flow_steps_total{step="password",outcome="verified"}"#,
        "latchkey_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // Every write's commit is timed, by store: the figure that shows a slow flush.
    let store = if b == Backend::Sqlite { "sqlite" } else { "postgres" };
    let commits = format!(r#"latchkey_store_commit_seconds_count{{store="{store}"}}"#);
    let line = text.lines().find(|l| l.starts_with(&commits)).unwrap_or_else(|| panic!("missing {commits} in\n{text}"));
    let count: f64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap();
    assert!(count >= 3.0, "a sign-up and two sign-ins commit more than {count} times");
    assert!(text.contains("# HELP latchkey_store_commit_seconds Time from BEGIN to a durable COMMIT"));
    // A refusal by a limit says which limit: five codes per flow, then 429.
    let a = s
        .client()
        .sign_up(&latchkey_testkit::proto::SignUpRequest {
            username: "resender".into(),
            password: Some(PW.into()),
            email: Some("resender@example.com".into()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    let mut refused = false;
    for _ in 0..6 {
        refused |= s.client().resend(&a.flow_id).await.is_err();
    }
    assert!(refused);
    let text = s.raw().request("GET", "/metrics", None, None).await.body;
    for needle in [
        "# HELP latchkey_http_requests_total HTTP requests answered",
        "# HELP latchkey_outbox_messages_total Delivery attempts",
        "# HELP latchkey_limit_refusals_total",
        r#"latchkey_limit_refusals_total{limit="flow_sends"}"#,
        r#"latchkey_outbox_messages_total{channel="email",provider="dev",outcome="kept"}"#,
        r#"latchkey_outbox_messages{provider="smtp",status="pending"}"#,
        r#"latchkey_outbox_messages{provider="dev",status="dead"}"#,
        r#"latchkey_outbox_oldest_age_seconds{provider="sms_webhook"}"#,
        r#"latchkey_build_info{version=""#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

async fn metrics_and_admin_can_have_listeners_of_their_own(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.metrics_listen = Some("127.0.0.1:0".into());
        c.admin_listen = Some("127.0.0.1:0".into());
    })
    .await;
    s.create_user("split", PW).await;
    let (metrics, admin) = (s.raw_at(s.metrics_url.as_deref().unwrap()), s.raw_at(s.admin_url.as_deref().unwrap()));
    let disable = "/admin/v1/users/split/disable";
    let token = latchkey_testkit::ADMIN_TOKEN;
    // The public listener serves neither.
    assert_eq!(s.raw().request("GET", "/metrics", None, None).await.status, 404);
    assert_eq!(s.raw().request("POST", disable, Some(token), None).await.status, 404);
    assert_eq!(s.raw().request("GET", "/console", None, None).await.status, 404);
    // Each serves its own and its health checks; metrics nothing else, admin also the console
    // and the sign-in routes the console signs in with.
    let m = metrics.request("GET", "/metrics", None, None).await;
    assert!(m.status == 200 && m.body.contains("latchkey_http_requests_total"), "{}", m.body);
    for other in [&metrics, &admin] {
        assert_eq!(other.request("GET", "/health/ready", None, None).await.status, 200);
    }
    let sign_in = serde_json::json!({"username": "split", "password": PW});
    let r = metrics.request("POST", "/v1/sign-in", None, Some(sign_in.clone())).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(admin.request("POST", "/v1/sign-in", None, Some(sign_in)).await.status, 200);
    assert_eq!(admin.request("GET", "/console", None, None).await.status, 200);
    assert_eq!(metrics.request("GET", "/console", None, None).await.status, 404);
    assert_eq!(metrics.request("POST", disable, Some(token), None).await.status, 404);
    assert_eq!(admin.request("GET", "/metrics", None, None).await.status, 404);
    assert_eq!(admin.request("POST", disable, Some(token), None).await.status, 204);
    assert!(s.client().sign_in("split", PW).await.is_err(), "the admin action took effect");
}

/// Every route the router serves, as OpenAPI paths with methods.
const ROUTES: &[(&str, &str)] = &[
    ("put", "/v1/me/password"),
    ("get", "/admin/v1/users/{username}"),
    ("patch", "/v1/me"),
    ("delete", "/v1/me"),
    ("delete", "/admin/v1/users/{username}"),
    ("patch", "/admin/v1/users/{username}"),
    ("get", "/admin/v1/users"),
    ("post", "/v1/introspect"),
    ("post", "/v1/revoke"),
    ("post", "/admin/v1/users"),
    ("delete", "/admin/v1/users/{username}/factors/{id}"),
    ("delete", "/admin/v1/users/{username}/devices/{id}"),
    ("put", "/admin/v1/users/{username}/role"),
    ("get", "/admin/v1/audit"),
    ("get", "/admin/v1/outbox"),
    ("post", "/admin/v1/outbox/{id}/requeue"),
    ("get", "/admin/v1/summary"),
    ("post", "/admin/v1/webhooks"),
    ("get", "/admin/v1/webhooks"),
    ("get", "/admin/v1/webhooks/{id}"),
    ("delete", "/admin/v1/webhooks/{id}"),
    ("get", "/v1/me/export"),
    ("post", "/v1/sign-up"),
    ("post", "/v1/sign-in"),
    ("post", "/v1/forgot-password"),
    ("post", "/v1/recovery"),
    ("get", "/v1/recovery/cancel"),
    ("post", "/v1/recovery/cancel"),
    ("delete", "/v1/me/recovery"),
    ("delete", "/v1/device/recovery"),
    ("get", "/v1/flows/{id}"),
    ("post", "/v1/flows/{id}"),
    ("post", "/v1/flows/{id}/resend"),
    ("get", "/v1/device/approvals"),
    ("get", "/v1/device/approvals/{id}"),
    ("post", "/v1/device/approvals/{id}"),
    ("put", "/v1/device/push-token"),
    ("post", "/v1/token"),
    ("post", "/v1/sign-out"),
    ("get", "/v1/me"),
    ("get", "/v1/me/sessions"),
    ("delete", "/v1/me/sessions/{id}"),
    ("get", "/v1/me/factors"),
    ("post", "/v1/me/factors"),
    ("put", "/v1/me/factors/preferred"),
    ("delete", "/v1/me/factors/{id}"),
    ("post", "/v1/me/recovery-codes"),
    ("get", "/v1/me/devices"),
    ("post", "/v1/me/devices"),
    ("delete", "/v1/me/devices/{id}"),
    ("post", "/v1/me/devices/{id}/biometric-key"),
    ("put", "/v1/me/devices/{id}/pin"),
    ("post", "/v1/step-up"),
    ("get", "/v1/me/events"),
    ("post", "/v1/me/remembered-clients"),
    ("delete", "/v1/me/remembered-clients/{id}"),
    ("get", "/v1/me/passkeys"),
    ("patch", "/v1/me/passkeys/{id}"),
    ("delete", "/v1/me/passkeys/{id}"),
    ("get", "/.well-known/assetlinks.json"),
    ("post", "/v1/app-integrity/challenge"),
    ("post", "/v1/app-integrity/apple/keys"),
    ("get", "/.well-known/apple-app-site-association"),
    ("post", "/admin/v1/users/{username}/require-password-change"),
    ("post", "/admin/v1/users/{username}/disable"),
    ("post", "/admin/v1/users/{username}/enable"),
    ("delete", "/admin/v1/users/{username}/sessions"),
    ("post", "/admin/v1/users/{username}/unlock"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/openid-configuration"),
];

async fn the_openapi_document_is_3_1_and_describes_every_route(b: Backend) {
    let s = TestServer::start(b).await;
    let doc = s.raw().request("GET", "/openapi.json", None, None).await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).into(), (*p).into())).collect();
    expected.sort();
    assert_eq!(documented, expected);
    // And every documented route is served (none answers the router's 404 fallback).
    for (method, path) in ROUTES {
        let concrete = path.replace("{id}", "01900000-0000-7000-8000-000000000000").replace("{username}", "nobody");
        let r = s.raw().request(&method.to_uppercase(), &concrete, None, None).await;
        let fallback =
            r.status == 404 && r.json()["error"]["code"] == "not_found" && r.json()["error"]["message"] == "not found";
        assert!(!fallback || path.contains('{'), "{method} {path} is not routed");
    }
    for schema in ["FlowAnswer", "NextStep", "StepAnswer", "ErrorBody", "Tokens"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "schema {schema} missing");
    }
    // Exact where it can be: tagged unions name their tag, the error code is the closed list,
    // every response says what it is, and bearer routes take a device session's DPoP token too.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NextStep"]["discriminator"]["propertyName"], "type");
    assert_eq!(schemas["StepAnswer"]["discriminator"]["propertyName"], "step");
    let listed: Vec<&str> = schemas["ErrorDetail"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for code in [codes::METHOD_NOT_ALLOWED, codes::LIMIT_EXCEEDED, codes::INVALID_DPOP_PROOF, codes::INTERNAL] {
        assert!(listed.contains(&code), "{code}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}");
            }
        }
    }
    let me = &doc["paths"]["/v1/me"]["get"]["security"];
    assert!(me.to_string().contains("\"dpop\"") && me.to_string().contains("\"bearer\""), "{me}");
}

async fn every_response_carries_a_request_id_that_error_bodies_repeat(b: Backend) {
    let s = TestServer::start(b).await;
    let r = s.raw().request("GET", "/v1/me", None, None).await;
    let header = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["request_id"], header.as_str());
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    let r = s.raw().request("GET", "/no/such/route", None, None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("not_found")));
    let ok = s.raw().request("GET", "/health/live", None, None).await;
    assert!(ok.header("x-request-id").is_some_and(|id| !id.is_empty()));
    // A client's own id is kept when it is short and plain, and replaced when it is not: a
    // client cannot write kilobytes or control characters into every log line.
    let mine = s.raw().raw("GET", "/health/live", None, None, &[("x-request-id", "app-42:retry.1")]).await;
    assert_eq!(mine.header("x-request-id"), Some("app-42:retry.1"));
    for hostile in ["x".repeat(65), "two words".into(), "<script>".into()] {
        let r = s.raw().raw("GET", "/v1/me", None, None, &[("x-request-id", &hostile)]).await;
        let id = r.header("x-request-id").unwrap().to_owned();
        assert!(id != hostile && id.len() == 36, "{hostile:?} was replaced by a new id, not kept: {id}");
        assert_eq!(r.json()["error"]["request_id"], id.as_str());
    }
    let big = format!("{{\"username\":\"{}\"}}", "x".repeat(70 * 1024));
    let r = s.raw().raw("POST", "/v1/forgot-password", None, Some(big), &[]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "bodies over 64 KiB are refused"
    );
}

async fn every_answer_is_no_store_and_nosniff_and_every_refusal_is_the_json_error(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("cache", PW).await;
    // Issue 11, item 8: tokens (RFC 6749 §5.1), secrets and errors are never cached or sniffed.
    let tokens = s
        .raw()
        .request("POST", "/v1/sign-in", None, Some(serde_json::json!({"username": "cache", "password": PW})))
        .await;
    assert!(tokens.json()["tokens"]["access_token"].is_string());
    let refused = s.raw().request("GET", "/v1/me", None, None).await;
    let page = s.raw().request("GET", "/v1/recovery/cancel?token=x", None, None).await;
    for r in [&tokens, &refused, &page] {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    }
    // Item 7: a wrong method is 405 with `Allow` and the JSON error.
    let r = s.raw().request("PUT", "/v1/sign-in", None, None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (405, Some(codes::METHOD_NOT_ALLOWED)));
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["error"]["request_id"].as_str(), r.header("x-request-id"));
    // A bad query parameter is the JSON error with a code and a request id, not plain text.
    let r = s.raw().request("GET", "/v1/flows/0193a0b0-0000-7000-8000-000000000000?wait=-1", None, None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    // A 429 says when to try again: five wrong passwords, then one second's delay.
    let wrong = serde_json::json!({"username": "cache", "password": "not the password"});
    for _ in 0..5 {
        assert_eq!(s.raw().request("POST", "/v1/sign-in", None, Some(wrong.clone())).await.status, 401);
    }
    let r = s.raw().request("POST", "/v1/sign-in", None, Some(wrong)).await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
}

/// What the server sends on `stream` until it closes it, or `None` if it is still open after
/// `within` (a bound for a loaded machine, far above the configured timeouts).
async fn until_closed(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![];
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

async fn slow_and_idle_clients_cannot_hold_the_server(b: Backend) {
    use tokio::io::AsyncWriteExt;
    // Issue 11, item 4, with the timeouts scaled down to a second.
    let s = TestServer::start_with(b, |c| {
        c.http.header_read_timeout_secs = 1;
        c.http.body_timeout_secs = 1;
        c.http.max_connections = 4;
    })
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let patience = std::time::Duration::from_secs(15);
    // Slowloris: headers that never end are cut off.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await.unwrap();
    assert!(until_closed(&mut slow, patience).await.is_some(), "a header that never ends holds nothing");
    // An idle keep-alive connection is closed after its answer.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answered = until_closed(&mut idle, patience).await.expect("closed once idle");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    // A body announced longer than it is gets an answer, not silence.
    let mut short = tokio::net::TcpStream::connect(&addr).await.unwrap();
    short
        .write_all(b"POST /v1/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{\"username\":")
        .await
        .unwrap();
    let answer = until_closed(&mut short, patience).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    // At most four connections: a fifth is closed unanswered while four idle ones are open…
    // (on a server whose idle connections outlive a slow machine's pauses: with the one-second
    // header deadline above, a held connection could time out before the fifth arrives).
    let capped = TestServer::start_with(b, |c| {
        c.http.header_read_timeout_secs = 60;
        c.http.max_connections = 4;
    })
    .await;
    let addr = capped.url.trim_start_matches("http://").to_owned();
    let mut held = vec![];
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = fifth.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let refused = until_closed(&mut fifth, patience).await.expect("closed at once");
    assert!(refused.is_empty(), "no answer beyond the cap: {refused}");
    // …and once the idle ones are gone, the server answers again.
    drop(held);
    let ok = capped.raw().request("GET", "/health/live", None, None).await;
    assert_eq!(ok.status, 200);
}

both_stores!(
    slow_and_idle_clients_cannot_hold_the_server,
    every_answer_is_no_store_and_nosniff_and_every_refusal_is_the_json_error,
    health_checks_report_liveness_and_database_readiness,
    metrics_count_requests_by_route_and_flow_steps_by_outcome,
    the_openapi_document_is_3_1_and_describes_every_route,
    every_response_carries_a_request_id_that_error_bodies_repeat,
    metrics_and_admin_can_have_listeners_of_their_own,
);
