//! Token introspection (RFC 7662) and revocation (RFC 7009) for the app's backend: checklist
//! TOK-4 and TOK-5.

use base64::Engine;
use latchkey_client::Unlock;
use latchkey_server::config::BackendClient;
use latchkey_testkit::proto::{SignOutScope, codes};
use latchkey_testkit::{Backend, RawResponse, TestServer};

const PW: &str = "correct horse battery";
const SECRET: &str = "orders-backend-secret-0123456789abcdef";

async fn server(b: Backend) -> TestServer {
    TestServer::start_with(b, |c| {
        c.backends = vec![BackendClient { client_id: "orders".into(), client_secret: SECRET.into() }];
    })
    .await
}

/// A form POST, with HTTP Basic credentials when given.
async fn post(s: &TestServer, path: &str, form: &str, basic: Option<(&str, &str)>) -> RawResponse {
    let auth = basic.map(|(id, secret)| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    });
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    s.raw().raw("POST", path, None, Some(form.to_owned()), &headers).await
}

async fn tok_5_introspection_needs_a_backend_and_says_nothing_of_a_dead_token(b: Backend) {
    let s = server(b).await;
    s.create_user("iris", PW).await;
    let t = s.sign_in("iris", PW).await;
    let token = format!("token={}", t.access_token);
    // No client authentication, or a wrong one: 401, nothing about the token.
    for basic in [None, Some(("orders", "not-the-secret")), Some(("payments", SECRET))] {
        let r = post(&s, "/v1/introspect", &token, basic).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some(codes::INVALID_CLIENT)), "{basic:?}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"latchkey\""));
        assert!(!r.body.contains("iris") && !r.body.contains("active"));
    }
    // A live access token, with HTTP Basic.
    let r = post(&s, "/v1/introspect", &token, Some(("orders", SECRET))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = s.client().me(&t.access_token).await.unwrap();
    let v = r.json();
    assert_eq!((v["active"].as_bool(), v["token_type"].as_str()), (Some(true), Some("access_token")));
    assert_eq!(
        (v["sub"].as_str(), v["sid"].as_str(), v["acr"].as_str()),
        (Some(me.id.as_str()), Some(me.session_id.as_str()), Some("aal1"))
    );
    // A live refresh token, with the credentials in the form.
    let form =
        format!("token={}&token_type_hint=refresh_token&client_id=orders&client_secret={SECRET}", t.refresh_token);
    let v = post(&s, "/v1/introspect", &form, None).await.json();
    assert_eq!((v["active"].as_bool(), v["token_type"].as_str()), (Some(true), Some("refresh_token")));
    // Unknown, and signed out: exactly {"active":false}.
    let r = post(&s, "/v1/introspect", "token=not-a-token", Some(("orders", SECRET))).await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"active":false}"#));
    s.client().sign_out(&t.access_token, SignOutScope::Session).await.unwrap();
    for dead in [&t.access_token, &t.refresh_token] {
        let r = post(&s, "/v1/introspect", &format!("token={dead}"), Some(("orders", SECRET))).await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"active":false}"#));
    }
    // The discovery document names both endpoints.
    let d = s.raw().request("GET", "/.well-known/openid-configuration", None, None).await.json();
    assert!(d["introspection_endpoint"].as_str().is_some_and(|u| u.ends_with("/v1/introspect")));
    assert!(d["revocation_endpoint"].as_str().is_some_and(|u| u.ends_with("/v1/revoke")));
}

async fn tok_4_revoking_a_refresh_token_ends_its_access_tokens_at_the_next_request(b: Backend) {
    let s = server(b).await;
    s.create_user("rex", PW).await;
    let t = s.sign_in("rex", PW).await;
    let other = s.sign_in("rex", PW).await;
    let c = s.client();
    // No token at all is a malformed request; an unknown token is 200, nothing else.
    let r = post(&s, "/v1/revoke", "token=", None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    assert_eq!(post(&s, "/v1/revoke", "token=unknown", None).await.status, 200);
    // Wrong client credentials are refused, even here.
    let r = post(&s, "/v1/revoke", &format!("token={}", t.refresh_token), Some(("orders", "wrong"))).await;
    assert_eq!(r.status, 401);
    c.me(&t.access_token).await.unwrap();
    // The holder revokes its refresh token: the session's access token stops at once.
    let r = post(&s, "/v1/revoke", &format!("token={}&token_type_hint=refresh_token", t.refresh_token), None).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(c.me(&t.access_token).await.unwrap_err().status(), Some(401));
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    assert_eq!(post(&s, "/v1/revoke", &format!("token={}", t.refresh_token), None).await.status, 200, "again");
    c.me(&other.access_token).await.expect("another session goes on");
    // A backend revokes an access token: its session ends too.
    let r = post(&s, "/v1/revoke", &format!("token={}", other.access_token), Some(("orders", SECRET))).await;
    assert_eq!(r.status, 200);
    assert_eq!(c.refresh(&other.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
}

async fn introspect(s: &TestServer, token: String) -> serde_json::Value {
    post(s, "/v1/introspect", &format!("token={token}"), Some(("orders", SECRET))).await.json()
}

async fn a_device_sessions_tokens_are_revoked_only_by_a_backend(b: Backend) {
    let s = server(b).await;
    let (device_id, ks, _) = super::devices::with_device(&s, "dora").await;
    let d = s.client().with_device_key(std::sync::Arc::new(ks.clone()), &device_id).unwrap();
    let t = d.device_sign_in(&device_id, &ks, Unlock::Biometric).await.unwrap().tokens.unwrap();
    let v = introspect(&s, t.access_token.clone()).await;
    assert!(v["cnf"]["jkt"].is_string(), "a bound token says what it is bound to: {v}");
    // Someone with the refresh token but not the key cannot end the device's session.
    assert_eq!(post(&s, "/v1/revoke", &format!("token={}", t.refresh_token), None).await.status, 200);
    assert_eq!(introspect(&s, t.access_token.clone()).await["active"], true);
    // The backend can.
    let r = post(&s, "/v1/revoke", &format!("token={}", t.refresh_token), Some(("orders", SECRET))).await;
    assert_eq!(r.status, 200);
    assert_eq!(introspect(&s, t.access_token).await, serde_json::json!({"active": false}));
}

both_stores!(
    tok_5_introspection_needs_a_backend_and_says_nothing_of_a_dead_token,
    tok_4_revoking_a_refresh_token_ends_its_access_tokens_at_the_next_request,
    a_device_sessions_tokens_are_revoked_only_by_a_backend,
);
