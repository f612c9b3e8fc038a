//! Synchronous hooks (issue 15, item 2): `before_sign_up`, `custom_access_token`,
//! `custom_challenge` and `user_migration`, each asked over HTTP by a real server of a test
//! backend that checks every request's Standard Webhooks signature; each failing closed when the
//! backend does not answer within its deadline.

use crate::webhooks::verify;
use latchkey_proto::{MfaMethod, NextStep};
use latchkey_server::hooks::{HookConfig, OnFailure};
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer, jwt_claims};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

const PW: &str = "correct horse battery";
const OLD_PW: &str = "old system password";

/// What the test backend does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answer as the docs' examples do.
    Normal,
    /// Never answer.
    Hang,
    /// `custom_access_token` tries to replace `sub`.
    ReservedClaim,
}

struct Backend_ {
    mode: Mode,
    /// Every request: whether its signature verified, and its body.
    requests: Vec<(bool, Value)>,
}

struct HookBackend {
    url: String,
    secret: String,
    state: Arc<Mutex<Backend_>>,
}

impl HookBackend {
    fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }
    fn requests(&self, hook: &str) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        assert!(st.requests.iter().all(|(ok, _)| *ok), "every hook request is signed");
        st.requests.iter().filter(|(_, b)| b["hook"] == hook).map(|(_, b)| b.clone()).collect()
    }
    fn config(&self, timeout_ms: u64) -> HookConfig {
        HookConfig {
            url: self.url.clone(),
            secret: self.secret.clone(),
            timeout_ms,
            on_failure: OnFailure::Refuse,
            amr: None,
        }
    }
}

fn answer(body: &Value) -> Value {
    match body["hook"].as_str().unwrap_or_default() {
        "before_sign_up" if body["username"].as_str().unwrap_or_default().starts_with("blocked") => {
            json!({"decision": "deny", "message": "Sign-ups are by invitation only"})
        }
        "before_sign_up" => json!({"decision": "allow", "attributes": {"plan": "pro"}}),
        "custom_access_token" => json!({"claims": {"tenant": "acme", "roles": ["reader"]}}),
        "custom_challenge" if body["action"] == "create" => {
            json!({"parameters": {"question": "What is 6 × 7?"}, "private": {"answer": "forty-two"}})
        }
        "custom_challenge" => json!({"correct": body["answer"]["value"] == body["private"]["answer"]}),
        "user_migration"
            if body["username"] == "legacy-ann" && (body["trigger"] == "recovery" || body["password"] == OLD_PW) =>
        {
            json!({"user": {"email": "ann@example.com", "email_verified": true, "attributes": {"plan": "free"}}})
        }
        "user_migration" => json!({"user": null}),
        _ => json!({}),
    }
}

async fn hook_backend() -> HookBackend {
    use axum::http::HeaderMap;
    use base64::Engine as _;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let state = Arc::new(Mutex::new(Backend_ { mode: Mode::Normal, requests: vec![] }));
    let (st, sec) = (state.clone(), secret.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (st, sec) = (st.clone(), sec.clone());
            async move {
                let valid = verify(&sec, &headers, &body);
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mode = {
                    let mut st = st.lock().unwrap();
                    st.requests.push((valid, json.clone()));
                    st.mode
                };
                if mode == Mode::Hang {
                    tokio::time::sleep(StdDuration::from_secs(3600)).await;
                }
                if mode == Mode::ReservedClaim && json["hook"] == "custom_access_token" {
                    return axum::Json(json!({"claims": {"sub": "someone-else"}}));
                }
                axum::Json(answer(&json))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    HookBackend { url, secret, state }
}

fn declare_plan(c: &mut latchkey_server::config::Config) {
    c.policy.attributes = serde_json::from_value(json!([
        {"name": "plan", "type": "string", "values": ["free", "pro"], "writable_by": "admin", "claim": true}
    ]))
    .unwrap();
}

async fn sign_up(s: &TestServer, username: &str) -> latchkey_testkit::RawResponse {
    let body = json!({"username": username, "password": PW, "email": format!("{username}@example.com")});
    s.raw().request("POST", "/v1/sign-up", None, Some(body)).await
}

async fn before_sign_up_allows_denies_sets_attributes_and_fails_closed(b: Backend) {
    let hook = hook_backend().await;
    let s = TestServer::start_with(b, |c| {
        declare_plan(c);
        c.hooks.before_sign_up = Some(hook.config(400));
    })
    .await;
    let r = sign_up(&s, "blocked-bea").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "sign_up_denied");
    assert_eq!(r.json()["error"]["message"], "Sign-ups are by invitation only");
    let r = s.raw().request("GET", "/admin/v1/users/blocked-bea", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 404, "a denied sign-up creates nothing: {}", r.body);
    assert_eq!(s.messages_to("blocked-bea@example.com").await, 0, "and sends nothing");

    s.create_user("carl", PW).await;
    let t = s.sign_in("carl", PW).await;
    assert_eq!(jwt_claims(&t.access_token)["plan"], "pro", "the hook's attribute is the account's");
    let asked = hook.requests("before_sign_up");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1]["username"], "carl");
    assert_eq!(asked[1]["email"], "carl@example.com");
    assert!(asked.iter().all(|b| !b.to_string().contains(PW)), "a hook never sees the password: {asked:?}");

    // No answer within the deadline: refused, nothing created.
    hook.set(Mode::Hang);
    let r = sign_up(&s, "dora").await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (503, Some("unavailable")), "{}", r.body);
    let r = s.raw().request("GET", "/admin/v1/users/dora", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // An operator who chose to go on: the sign-up goes ahead without the hook.
    let hook2 = hook_backend().await;
    hook2.set(Mode::Hang);
    let s2 = TestServer::start_with(b, |c| {
        c.hooks.before_sign_up = Some(HookConfig { on_failure: OnFailure::Continue, ..hook2.config(300) });
    })
    .await;
    let r = sign_up(&s2, "emil").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn custom_access_token_adds_claims_never_reserved_ones_and_fails_closed(b: Backend) {
    let hook = hook_backend().await;
    let s = TestServer::start_with(b, |c| {
        declare_plan(c);
        c.hooks.custom_access_token = Some(hook.config(400));
    })
    .await;
    s.create_user("fay", PW).await;
    let t = s.sign_in("fay", PW).await;
    let claims = jwt_claims(&t.access_token);
    assert_eq!((&claims["tenant"], &claims["roles"]), (&json!("acme"), &json!(["reader"])), "{claims}");
    let r = s.raw().request("GET", "/v1/me", Some(&t.access_token), None).await;
    assert_eq!(r.status, 200, "a token with added claims is a valid token: {}", r.body);
    let fresh = s.client().refresh(&t.refresh_token).await.unwrap();
    assert_eq!(jwt_claims(&fresh.access_token)["tenant"], "acme", "refreshed tokens carry them too");
    let asked = hook.requests("custom_access_token");
    let triggers: Vec<&str> = asked.iter().filter_map(|b| b["trigger"].as_str()).collect();
    assert!(triggers.ends_with(&["sign_in", "refresh"]), "{triggers:?}");
    assert_eq!(asked[0]["acr"], "aal1");
    assert!(asked.iter().all(|b| !b.to_string().contains(&t.refresh_token)), "a hook never sees a token");

    // A reserved claim is refused: no token at all rather than a token that lies.
    hook.set(Mode::ReservedClaim);
    let e = s.client().sign_in("fay", PW).await.unwrap_err();
    assert_eq!(e.code(), Some("unavailable"), "{e:?}");

    // No answer: no tokens, and the refresh token is left as it was, to be used again.
    hook.set(Mode::Hang);
    let e = s.client().refresh(&fresh.refresh_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(503), Some("unavailable")), "{e:?}");
    hook.set(Mode::Normal);
    let again = s.client().refresh(&fresh.refresh_token).await.unwrap();
    assert_eq!(jwt_claims(&again.access_token)["sub"], claims["sub"]);
}

/// The TOTP step that completes a sign-in asks the hook before it commits anything (a sign-in
/// without the hook commits it with its attempt, and signs the tokens after, issue 17): a hook
/// that does not answer leaves the step to be answered again, with the same code.
async fn a_hook_that_fails_at_the_totp_step_leaves_the_step_to_answer_again(b: Backend) {
    let hook = hook_backend().await;
    let s = TestServer::start_with(b, |c| c.hooks.custom_access_token = Some(hook.config(400))).await;
    s.create_user("ines", PW).await;
    let c = s.client();
    let t = s.sign_in("ines", PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &latchkey_testkit::totp_code(&secret, &s.clock, 0)).await.unwrap();
    s.clock.advance(time::Duration::seconds(30));
    let f = c.sign_in("ines", PW).await.unwrap().flow_id;
    let code = latchkey_testkit::totp_code(&secret, &s.clock, 0);
    hook.set(Mode::Hang);
    let e = c.totp_code(&f, &code).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(503), Some("unavailable")), "{e:?}");
    hook.set(Mode::Normal);
    let done = c.totp_code(&f, &code).await.unwrap();
    assert_eq!(jwt_claims(&done.tokens.expect("tokens").access_token)["tenant"], "acme");
}

async fn challenge_server(b: Backend, hook: &HookBackend, amr: Option<&str>) -> TestServer {
    let mut config = hook.config(400);
    config.amr = amr.map(str::to_owned);
    TestServer::start_with(b, |c| {
        c.hooks.custom_challenge = Some(config);
        c.policy.mfa.methods = vec![MfaMethod::CustomChallenge, MfaMethod::Totp];
    })
    .await
}

async fn custom_challenge_counts_as_possession_and_lifts_acr(b: Backend) {
    let hook = hook_backend().await;
    let s = challenge_server(b, &hook, None).await;
    s.create_user("gus", PW).await;
    let c = s.client();
    let a = c.sign_in("gus", PW).await.unwrap();
    let NextStep::CustomChallenge { parameters, attempts_left, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(parameters, &json!({"question": "What is 6 × 7?"}), "the app sees the public parameters");
    assert!(!serde_json::to_string(&a).unwrap().contains("forty-two"), "never the private ones: {a:?}");
    let wrong = c.custom_challenge(&a.flow_id, json!({"value": "forty-one"})).await.unwrap();
    assert_eq!(wrong.error.as_ref().map(|e| e.code.as_str()), Some("code_mismatch"), "{wrong:?}");
    assert!(
        matches!(wrong.next_step, NextStep::CustomChallenge { attempts_left: left, .. } if left == attempts_left - 1),
        "a wrong answer counts: {:?}",
        wrong.next_step
    );
    let done = c.custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let claims = jwt_claims(&done.tokens.unwrap().access_token);
    assert_eq!(claims["acr"], "aal2", "password and a possession factor: {claims}");
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
    // Single use: the flow is over.
    let e = c.custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await.unwrap_err();
    assert_eq!(e.code(), Some("flow_completed"), "{e:?}");
    let verifies = hook.requests("custom_challenge").iter().filter(|r| r["action"] == "verify").count();
    assert_eq!(verifies, 2);

    // Expired: refused as a wrong answer, without asking the hook.
    let a = c.sign_in("gus", PW).await.unwrap();
    s.clock.advance(time::Duration::seconds(i64::try_from(s.config.policy.flows.code_ttl_secs).unwrap() + 1));
    let late = c.custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await;
    assert!(
        late.as_ref().map_or(true, |l| l.tokens.is_none() && l.error.is_some()),
        "an expired challenge gives nothing: {late:?}"
    );
    let after = hook.requests("custom_challenge").iter().filter(|r| r["action"] == "verify").count();
    assert_eq!(after, 2, "the hook is not asked about an expired challenge");

    // The hook does not answer: no challenge, no sign-in.
    hook.set(Mode::Hang);
    let e = c.sign_in("gus", PW).await.unwrap_err();
    assert_eq!(e.code(), Some("unavailable"), "{e:?}");

    // Counted as knowledge, a right answer is no second class: aal1, no mfa.
    let hook = hook_backend().await;
    let s = challenge_server(b, &hook, Some("kba")).await;
    s.create_user("hal", PW).await;
    let a = s.client().sign_in("hal", PW).await.unwrap();
    let done = s.client().custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await.unwrap();
    let claims = jwt_claims(&done.tokens.unwrap().access_token);
    assert_eq!((&claims["acr"], &claims["amr"]), (&json!("aal1"), &json!(["pwd", "kba"])), "{claims}");
    // Asked for aal2, a knowledge challenge is not offered: the account sets up a real factor.
    let req = latchkey_proto::SignInRequest {
        username: Some("hal".into()),
        password: Some(PW.into()),
        acr_values: Some("aal2".into()),
        ..Default::default()
    };
    let a = s.client().sign_in_with(&req).await.unwrap();
    assert!(matches!(a.next_step, NextStep::SetupTotp { .. }), "{:?}", a.next_step);
}

async fn custom_challenge_raises_a_session_in_a_step_up(b: Backend) {
    let hook = hook_backend().await;
    let s = challenge_server(b, &hook, None).await;
    s.create_user("ida", PW).await;
    let a = s.client().sign_in("ida", PW).await.unwrap();
    let t = s.client().custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await.unwrap().tokens.unwrap();
    // Later (the access token still good), an action wants a sign-in of the last five minutes.
    s.clock.advance(time::Duration::seconds(301));
    let r = s
        .raw()
        .request("POST", "/v1/step-up", Some(&t.access_token), Some(json!({"acr_values": "aal2", "max_age": 300})))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a: latchkey_proto::FlowAnswer = serde_json::from_str(&r.body).unwrap();
    assert!(matches!(a.next_step, NextStep::CustomChallenge { .. }), "{:?}", a.next_step);
    let done = s.client().custom_challenge(&a.flow_id, json!({"value": "forty-two"})).await.unwrap();
    let claims = jwt_claims(&done.tokens.unwrap().access_token);
    assert_eq!(claims["acr"], "aal2", "{claims}");
    assert_eq!(claims["sid"], jwt_claims(&t.access_token)["sid"], "the same session, raised");
}

async fn user_migration_brings_an_account_at_its_first_sign_in_and_recovery(b: Backend) {
    let hook = hook_backend().await;
    let s = TestServer::start_with(b, |c| {
        declare_plan(c);
        c.hooks.user_migration = Some(hook.config(400));
    })
    .await;
    // Unknown there too, or the wrong password: the answer a wrong password gets.
    for (user, pw) in [("nobody", OLD_PW), ("legacy-ann", "wrong password")] {
        let e = s.client().sign_in(user, pw).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(401), Some("not_authorized")), "{user}: {e:?}");
    }
    let r = s.raw().request("GET", "/admin/v1/users/legacy-ann", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The old system does not answer: the same, and nothing is created.
    hook.set(Mode::Hang);
    let e = s.client().sign_in("legacy-ann", OLD_PW).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some("not_authorized")), "fail closed: {e:?}");
    hook.set(Mode::Normal);

    // The right password: the account is created with what the old system said.
    let t = s.sign_in("legacy-ann", OLD_PW).await;
    assert_eq!(jwt_claims(&t.access_token)["plan"], "free");
    let r = s.raw().request("GET", "/admin/v1/users/legacy-ann", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ann@example.com"), "{}", r.body);
    let asked = hook.requests("user_migration").len();
    // From now on it is Latchkey's own account: the old system is not asked again.
    s.sign_in("legacy-ann", OLD_PW).await;
    assert!(s.client().sign_in("legacy-ann", "wrong password").await.is_err());
    assert_eq!(hook.requests("user_migration").len(), asked);
    let migrated = hook.requests("user_migration");
    assert!(migrated.iter().all(|b| b["trigger"] == "sign_in"));

    // A recovery for an account only the old system has: created, and the code goes to the
    // address it verified.
    let s = TestServer::start_with(b, |c| {
        declare_plan(c);
        c.hooks.user_migration = Some(hook.config(400));
    })
    .await;
    let a = s.client().forgot_password("legacy-ann").await.unwrap();
    assert!(matches!(a.next_step, NextStep::ResetPassword { .. }), "{:?}", a.next_step);
    let code = s.code_for("ann@example.com").await;
    let one = s.client().reset_password(&a.flow_id, &code, "a new passphrase here").await.unwrap();
    // One proof (the email) and nothing else to prove: the delay the owner could veto.
    assert!(matches!(one.next_step, NextStep::RecoveryWait { .. }), "{one:?}");
    s.clock.advance(time::Duration::seconds(i64::try_from(s.config.policy.recovery.delay_secs).unwrap() + 1));
    let done = s.client().recovery_wait(&a.flow_id).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done, "{done:?}");
    s.sign_in("legacy-ann", "a new passphrase here").await;
    let last = hook.requests("user_migration");
    assert_eq!(last.last().unwrap()["trigger"], "recovery");
    assert!(last.last().unwrap()["password"].is_null(), "a recovery sends no password");
}

async fn parallel_first_sign_ins_migrate_an_account_once(b: Backend) {
    let hook = hook_backend().await;
    let s = TestServer::start_with(b, |c| {
        declare_plan(c);
        c.hooks.user_migration = Some(hook.config(2000));
    })
    .await;
    // Below the password lockout, which counts sign-ins in flight for one username.
    let n = 4;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = vec![];
    for _ in 0..n {
        let (c, barrier) = (s.client(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.sign_in("legacy-ann", OLD_PW).await
        }));
    }
    for t in tasks {
        let a = t.await.unwrap().unwrap();
        assert!(a.tokens.is_some(), "every parallel first sign-in gets in: {:?}", a.next_step);
    }
    let r = s.raw().request("GET", "/admin/v1/audit?kind=user_migrated", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(1), "one account made: {}", r.body);
}

both_stores!(
    parallel_first_sign_ins_migrate_an_account_once,
    before_sign_up_allows_denies_sets_attributes_and_fails_closed,
    custom_access_token_adds_claims_never_reserved_ones_and_fails_closed,
    a_hook_that_fails_at_the_totp_step_leaves_the_step_to_answer_again,
    custom_challenge_counts_as_possession_and_lifts_acr,
    custom_challenge_raises_a_session_in_a_step_up,
    user_migration_brings_an_account_at_its_first_sign_in_and_recovery,
);
