//! TOTP: enrolment from a session, the `totp_code` step at sign-in, and the checklist's TOTP
//! items (the RFC vectors, TOTP-1, are unit tests in latchkey-core).

use latchkey_core::clock::Clock as _;
use latchkey_testkit::proto::{MfaMethod, NextStep, codes};
use latchkey_testkit::{Backend, TestServer, totp_code};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

/// A user with an active authenticator app; returns its Base32 secret.
async fn enrolled(s: &TestServer, username: &str) -> String {
    s.create_user(username, PW).await;
    let c = s.client();
    let t = s.sign_in(username, PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    let done = c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    // The code just used cannot be used again: sign-ins in these tests start a step later.
    s.clock.advance(Duration::seconds(30));
    secret
}

/// Password, then the `totp_code` step's flow id.
async fn pending(s: &TestServer, username: &str) -> String {
    let a = s.client().sign_in(username, PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { attempts_left: 5, .. }), "{:?}", a.next_step);
    assert!(a.tokens.is_none());
    a.flow_id
}

async fn totp_2_enrolment_shows_a_key_uri_once_and_activates_only_after_a_right_code(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("Alice", PW).await;
    let c = s.client();
    let t = s.sign_in("alice", PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, uri, qr_svg, attempts_left, .. } = a.next_step.clone() else {
        panic!("{:?}", a.next_step)
    };
    assert_eq!(attempts_left, 5);
    assert_eq!(data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap().len(), 20, "160-bit secret");
    assert_eq!(
        uri,
        format!("otpauth://totp/Latchkey:Alice?secret={secret}&issuer=Latchkey&algorithm=SHA1&digits=6&period=30")
    );
    assert!(qr_svg.contains("<svg"), "{}", &qr_svg[..60.min(qr_svg.len())]);
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    assert_eq!((listed.len(), listed[0].state.as_str()), (1, "pending"));
    // Not active yet: sign-in does not ask for it.
    assert_eq!(c.sign_in("alice", PW).await.unwrap().next_step, NextStep::Done);
    let wrong = c.setup_totp(&a.flow_id, "000000").await.unwrap();
    assert_eq!(wrong.error.unwrap().code, codes::CODE_MISMATCH);
    let done = c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    assert_eq!(c.factors(&t.access_token).await.unwrap().factors[0].state, "active");
    // The secret never appears again: not in the finished flow, the factor list or the database.
    let polled = s.raw().request("GET", &format!("/v1/flows/{}", a.flow_id), None, None).await.body;
    let listed = s.raw().request("GET", "/v1/me/factors", Some(&t.access_token), None).await.body;
    assert!(!polled.contains(&secret) && !listed.contains(&secret));
    assert!(!s.db.dump_text().await.unwrap().contains(&secret), "the seed is sealed at rest");
    // Checklist LIFE-1: the account is told.
    assert!(
        s.outbox()
            .await
            .iter()
            .any(|m| m.to == "Alice@example.com" && m.subject.contains("authenticator app was added"))
    );
    s.clock.advance(Duration::seconds(30));
    let f = pending(&s, "alice").await;
    let t2 = c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let me = c.me(&t2.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["pwd".to_string(), "otp".into(), "mfa".into()]));
}

async fn enrolling_needs_a_recent_sign_in_and_only_one_app_at_a_time(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "bob").await;
    let c = s.client();
    let f = pending(&s, "bob").await;
    let t = c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let e = c.enroll_totp(&t.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_REQUEST)), "one authenticator app");
    // A refreshed token is valid, but its sign-in (auth_time) is 11 minutes old.
    s.clock.advance(Duration::minutes(11));
    let t = c.refresh(&t.refresh_token).await.unwrap();
    let r = s
        .raw()
        .request("POST", "/v1/me/factors", Some(&t.access_token), Some(serde_json::json!({"type": "totp"})))
        .await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_user_authentication", acr_values="aal2", max_age=600"#)
    );
    let r = s
        .raw()
        .request("POST", "/v1/me/factors", Some(&t.access_token), Some(serde_json::json!({"type": "passkey"})))
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some(codes::INVALID_REQUEST)),
        "passkeys are off without [policy.passkeys]"
    );
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("not configured"));
    let r = s
        .raw()
        .request("POST", "/v1/me/factors", Some(&t.access_token), Some(serde_json::json!({"type": "bogus"})))
        .await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "not a 501");
    let pending_flow = pending(&s, "bob").await;
    let r = s.raw().request("GET", "/v1/me/factors", Some(&pending_flow), None).await;
    assert_eq!(r.status, 401, "checklist FLOW-1: an MFA-pending flow is not a session");
}

async fn totp_3_a_code_used_in_one_sign_in_is_refused_in_the_next_like_a_wrong_one(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "carl").await;
    let c = s.client();
    let code = totp_code(&secret, &s.clock, 0);
    let first = pending(&s, "carl").await;
    assert!(c.totp_code(&first, &code).await.unwrap().tokens.is_some());
    let second = pending(&s, "carl").await;
    let replay = s
        .raw()
        .request(
            "POST",
            &format!("/v1/flows/{second}"),
            None,
            Some(serde_json::json!({"step": "totp_code", "code": code})),
        )
        .await;
    let wrong = s
        .raw()
        .request(
            "POST",
            &format!("/v1/flows/{second}"),
            None,
            Some(serde_json::json!({"step": "totp_code", "code": "000000"})),
        )
        .await;
    assert_eq!(replay.json()["error"], wrong.json()["error"]);
    assert_eq!(replay.json()["error"]["code"], codes::CODE_MISMATCH);
    let events = s.auth.store().audit_events(None, 200).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "totp_code" && e.outcome == "replay"), "the replay is recorded");
}

async fn totp_4_after_step_t_a_still_valid_code_for_t_minus_1_is_refused(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "dana").await;
    let c = s.client();
    let f = pending(&s, "dana").await;
    assert!(c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.is_some());
    let f = pending(&s, "dana").await;
    let r = c.totp_code(&f, &totp_code(&secret, &s.clock, -1)).await.unwrap();
    assert_eq!(r.error.unwrap().code, codes::CODE_MISMATCH);
}

async fn totp_5_only_the_current_and_previous_steps_are_accepted(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "eve").await;
    let c = s.client();
    s.clock.advance(Duration::seconds(90));
    for offset in [-2, 1, 2] {
        let f = pending(&s, "eve").await;
        let r = c.totp_code(&f, &totp_code(&secret, &s.clock, offset)).await.unwrap();
        assert_eq!(r.error.map(|e| e.code), Some(codes::CODE_MISMATCH.into()), "offset {offset}");
    }
    let f = pending(&s, "eve").await;
    assert!(c.totp_code(&f, &totp_code(&secret, &s.clock, -1)).await.unwrap().tokens.is_some(), "T-1 accepted");
    s.clock.advance(Duration::seconds(30));
    let f = pending(&s, "eve").await;
    let old = totp_code(&secret, &s.clock, 0);
    s.clock.advance(Duration::seconds(60));
    assert_eq!(
        c.totp_code(&f, &old).await.unwrap().error.unwrap().code,
        codes::CODE_MISMATCH,
        "two steps later it is dead"
    );
    assert!(c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.is_some());
}

async fn totp_6_client_supplied_time_is_ignored(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "fred").await;
    let f = pending(&s, "fred").await;
    let future = totp_code(&secret, &s.clock, 10);
    let t = (s.clock_unix() + 300).to_string();
    let r = s
        .raw()
        .raw(
            "POST",
            &format!("/v1/flows/{f}"),
            None,
            Some(serde_json::json!({"step": "totp_code", "code": future}).to_string()),
            &[("x-client-time", &t)],
        )
        .await;
    assert_eq!(r.json()["error"]["code"], codes::CODE_MISMATCH, "the header changes nothing");
    let r = s
        .raw()
        .request(
            "POST",
            &format!("/v1/flows/{f}"),
            None,
            Some(serde_json::json!({"step": "totp_code", "code": future, "timestamp": t})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some(codes::INVALID_REQUEST)),
        "a time field is refused"
    );
}

async fn totp_7_wrong_codes_lock_the_factor_and_then_a_right_code_is_refused_identically(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "gail").await;
    let c = s.client();
    // Two flows of five wrong codes each: ten consecutive failures on the account.
    for _ in 0..2 {
        let f = pending(&s, "gail").await;
        for _ in 0..5 {
            c.totp_code(&f, "000000").await.unwrap();
        }
    }
    let f = pending(&s, "gail").await;
    let body = |code: String| Some(serde_json::json!({"step": "totp_code", "code": code}));
    let right = s.raw().request("POST", &format!("/v1/flows/{f}"), None, body(totp_code(&secret, &s.clock, 0))).await;
    let wrong = s.raw().request("POST", &format!("/v1/flows/{f}"), None, body("000000".into())).await;
    assert_eq!(right.json()["error"]["code"], codes::LIMIT_EXCEEDED);
    assert_eq!(right.json()["error"], wrong.json()["error"]);
    assert_eq!(right.json()["next_step"]["type"], wrong.json()["next_step"]["type"]);
    // The right code took no effect: no session, and its step is not spent (the sign-in below
    // uses the same step).
    let gail = s.auth.store().user_by_username("gail").await.unwrap().unwrap();
    let sessions = s.auth.store().live_sessions(gail.id, s.clock.now()).await.unwrap();
    assert_eq!(sessions.len(), 1, "only the enrolment's sign-in: {sessions:?}");
    // The client cannot tell; the operator's metric can.
    let metrics = s.raw().request("GET", "/metrics", None, None).await.body;
    assert!(metrics.contains(r#"latchkey_flow_steps_total{step="totp_code",outcome="locked"}"#), "{metrics}");
    s.clock.advance(Duration::seconds(2));
    let f = pending(&s, "gail").await;
    assert!(c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.is_some(), "after the delay");
}

async fn totp_8_a_hundred_parallel_wrong_codes_evaluate_no_more_than_the_limit(b: Backend) {
    let s = TestServer::start(b).await;
    let _secret = enrolled(&s, "hank").await;
    let mut flows = vec![];
    for _ in 0..20 {
        flows.push(pending(&s, "hank").await);
    }
    let barrier = Arc::new(Barrier::new(100));
    let mut tasks = vec![];
    for i in 0..100 {
        let (c, barrier, f) = (s.client(), barrier.clone(), flows[i % 20].clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.totp_code(&f, "000000").await.ok().and_then(|a| a.error).map(|e| e.code)
        }));
    }
    let mut evaluated = 0;
    for t in tasks {
        if t.await.unwrap().as_deref() == Some(codes::CODE_MISMATCH) {
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, 10, "ten free attempts on the account, then a delay set before any result");
    let failures = s
        .auth
        .store()
        .audit_events(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "totp_code" && e.outcome == "failure")
        .count();
    assert_eq!(failures, evaluated, "every evaluated code was counted");
}

async fn parallel_submissions_of_one_right_code_yield_one_session(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "ivan").await;
    let code = totp_code(&secret, &s.clock, 0);
    let mut flows = vec![];
    for _ in 0..4 {
        flows.push(pending(&s, "ivan").await);
    }
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20 {
        let (c, barrier, f, code) = (s.client(), barrier.clone(), flows[i % 4].clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.totp_code(&f, &code).await.ok().and_then(|a| a.tokens).is_some()
        }));
    }
    let mut sessions = 0;
    for t in tasks {
        sessions += usize::from(t.await.unwrap());
    }
    assert_eq!(sessions, 1, "one code, one session, across four sign-in flows");
}

async fn life_3_after_a_password_reset_the_next_sign_in_still_asks_for_the_code(b: Backend) {
    let s = TestServer::start(b).await;
    let secret = enrolled(&s, "jill").await;
    let c = s.client();
    let f = c.forgot_password("jill").await.unwrap();
    let code = s.code_for("jill@example.com").await;
    // The email code, then the authenticator app: two proofs, so the reset is immediate.
    let second = c.reset_password(&f.flow_id, &code, "a new passphrase now").await.unwrap();
    assert_eq!(second.next_step, NextStep::SelectMfa { methods: vec![MfaMethod::Totp, MfaMethod::RecoveryWait] });
    c.select_mfa(&f.flow_id, MfaMethod::Totp).await.unwrap();
    s.clock.advance(time::Duration::seconds(30));
    let done = c.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    assert_eq!((done.next_step, done.tokens.is_none()), (NextStep::Done, true));
    s.clock.advance(time::Duration::seconds(30));
    let a = c.sign_in("jill", "a new passphrase now").await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { attempts_left: 5, .. }), "{:?}", a.next_step);
    assert!(a.tokens.is_none());
    assert!(c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.is_some());
}

both_stores!(
    life_3_after_a_password_reset_the_next_sign_in_still_asks_for_the_code,
    totp_2_enrolment_shows_a_key_uri_once_and_activates_only_after_a_right_code,
    enrolling_needs_a_recent_sign_in_and_only_one_app_at_a_time,
    totp_3_a_code_used_in_one_sign_in_is_refused_in_the_next_like_a_wrong_one,
    totp_4_after_step_t_a_still_valid_code_for_t_minus_1_is_refused,
    totp_5_only_the_current_and_previous_steps_are_accepted,
    totp_6_client_supplied_time_is_ignored,
    totp_7_wrong_codes_lock_the_factor_and_then_a_right_code_is_refused_identically,
    totp_8_a_hundred_parallel_wrong_codes_evaluate_no_more_than_the_limit,
    parallel_submissions_of_one_right_code_yield_one_session,
);
