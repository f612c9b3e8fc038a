//! Step-up (RFC 9470) and the security timeline: a session raised in place through the SDK, on
//! Latchkey's own challenge and on the app's; `max_age`; what a step-up may ask for;
//! `acr_values` at sign-in; `GET /v1/me/events` (checklist SES-7).

use latchkey_core::settings::MfaMode;
use latchkey_testkit::proto::{MfaMethod, NextStep, SignInRequest, SignOutScope, StepUpRequest, Tokens, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims, totp_code};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

/// A confirmed user signed in with the password alone (aal1), who then added an authenticator
/// app: the session stays aal1. Returns the session's tokens and the app's secret.
async fn aal1_session_with_totp(s: &TestServer, name: &str) -> (Tokens, String) {
    s.create_user(name, PW).await;
    let t = s.sign_in(name, PW).await;
    let c = s.client();
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().next_step, NextStep::Done);
    // The next code is a new time step (each is used once).
    s.clock.advance(Duration::seconds(30));
    (t, secret)
}

async fn ses_7_the_sdk_steps_up_on_latchkeys_challenge_and_the_session_is_raised_in_place(b: Backend) {
    let s = TestServer::start(b).await;
    let (mut t, secret) = aal1_session_with_totp(&s, "stella").await;
    let before = jwt_claims(&t.access_token);
    assert_eq!(before["acr"], "aal1");
    s.clock.advance(Duration::seconds(5));
    let c = s.client();
    let (c2, clock) = (c.clone(), s.clock.clone());
    let mut steps = vec![];
    let codes = c
        .with_step_up(
            &mut t,
            |at| {
                let c = c.clone();
                async move { c.regenerate_recovery_codes(&at).await }
            },
            |first| {
                steps.push(first.next_step.name().to_owned());
                async move { c2.totp_code(&first.flow_id, &totp_code(&secret, &clock, 0)).await }
            },
        )
        .await
        .unwrap();
    assert_eq!(codes.codes.len(), 10, "the call was retried once the session was raised");
    assert_eq!(steps, ["totp_code"], "the step-up asked for what the session lacked");
    let after = jwt_claims(&t.access_token);
    assert_eq!(after["sid"], before["sid"], "the same session, not a second one");
    assert_eq!(after["acr"], "aal2");
    assert_eq!(after["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(after["auth_time"].as_i64(), Some(s.clock_unix()), "auth_time moved to the verification");
    assert_eq!(c.sessions(&t.access_token).await.unwrap().sessions.len(), 1);
    // The session's refresh token from before was spent by the step-up: the new one refreshes.
    let refreshed = c.refresh(&t.refresh_token).await.unwrap();
    assert_eq!(jwt_claims(&refreshed.access_token)["acr"], "aal2", "a refresh keeps the raised level");
}

async fn a_refresh_token_from_before_the_step_up_is_reuse_and_ends_the_session(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = aal1_session_with_totp(&s, "reuben").await;
    let c = s.client();
    let a = c.step_up(&t.access_token, &StepUpRequest::default()).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    let raised = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let e = c.refresh(&t.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_GRANT));
    let e = c.me(&raised.access_token).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "reuse of a spent refresh token ends the whole session (SES-2)");
}

async fn max_age_asks_a_fresh_factor_of_an_old_session_and_a_fresh_one_is_done_at_once(b: Backend) {
    let s = TestServer::start(b).await;
    let (_, secret) = aal1_session_with_totp(&s, "maxine").await;
    let c = s.client();
    // An aal2 sign-in.
    let a = c.sign_in("maxine", PW).await.unwrap();
    let t = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let signed_in_at = jwt_claims(&t.access_token)["auth_time"].clone();
    s.clock.advance(Duration::seconds(100));
    // Recent enough: done at once, the same session, auth_time unchanged.
    let req = StepUpRequest { acr_values: Some("aal2".into()), max_age: Some(300), action: None };
    let done = c.step_up(&t.access_token, &req).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let same = done.tokens.unwrap();
    assert_eq!(jwt_claims(&same.access_token)["auth_time"], signed_in_at, "nothing verified, nothing moved");
    assert_eq!(jwt_claims(&same.access_token)["sid"], jwt_claims(&t.access_token)["sid"]);
    // Too old: a factor again, and auth_time moves.
    s.clock.advance(Duration::seconds(300));
    let a = c.step_up(&same.access_token, &req).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    let wrong = c.totp_code(&a.flow_id, "000000").await.unwrap();
    assert_eq!(wrong.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()), "a wrong code is refused");
    let fresh = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let claims = jwt_claims(&fresh.access_token);
    assert_eq!((claims["acr"].as_str(), claims["auth_time"].as_i64()), (Some("aal2"), Some(s.clock_unix())));
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]), "the same method once");
}

async fn a_step_up_offers_only_what_raises_the_session(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.limits.sends_per_ip = 1000).await;
    // Only an email factor: nothing can raise the session to aal2.
    s.create_user("emma", PW).await;
    let t = s.sign_in("emma", PW).await;
    let c = s.client();
    let e = c.step_up(&t.access_token, &StepUpRequest::default()).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::MFA_REQUIRED)));
    let raw = s
        .raw()
        .request("POST", "/v1/step-up", Some(&t.access_token), Some(serde_json::json!({"acr_values": "aal4 urn:x"})))
        .await;
    assert_eq!((raw.status, raw.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    // aal3 needs an attested passkey (attested_passkeys.rs): nothing here gives it.
    let raw = s
        .raw()
        .request("POST", "/v1/step-up", Some(&t.access_token), Some(serde_json::json!({"acr_values": "aal3"})))
        .await;
    assert_eq!((raw.status, raw.json()["error"]["code"].as_str()), (409, Some(codes::MFA_REQUIRED)));
    let raw = s.raw().request("POST", "/v1/step-up", None, Some(serde_json::json!({}))).await;
    assert_eq!(raw.status, 401, "a step-up needs the session's token");
    // With an authenticator app and a phone: both give aal2, the user picks. (A second factor is
    // added from a raised session; `t` signed in before any factor and stays aal1.)
    s.create_user("sol", PW).await;
    let t = s.sign_in("sol", PW).await;
    let mut other = s.sign_in("sol", PW).await;
    let a = c.enroll_totp(&other.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    s.clock.advance(Duration::seconds(30));
    let (c2, clock) = (c.clone(), s.clock.clone());
    let a = c
        .with_step_up(
            &mut other,
            |at| {
                let c = c.clone();
                async move { c.enroll_sms(&at, Some("+15550100777")).await }
            },
            |first| async move { c2.totp_code(&first.flow_id, &totp_code(&secret, &clock, 0)).await },
        )
        .await
        .unwrap();
    c.verify_code(&a.flow_id, &s.code_for("+15550100777").await).await.unwrap();
    let a = c
        .step_up(
            &t.access_token,
            &StepUpRequest { acr_values: Some("urn:unknown aal2".into()), max_age: None, action: None },
        )
        .await
        .unwrap();
    let NextStep::SelectMfa { methods, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert!(methods.contains(&MfaMethod::Totp) && methods.contains(&MfaMethod::Sms), "{methods:?}");
    assert!(!methods.contains(&MfaMethod::Email));
    // A revoked session cannot finish its step-up.
    let a2 = c.select_mfa(&a.flow_id, MfaMethod::Sms).await.unwrap();
    c.sign_out(&t.access_token, SignOutScope::All).await.unwrap();
    let e = c.sms_code(&a2.flow_id, &s.code_for("+15550100777").await).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
}

async fn parallel_answers_to_one_step_up_raise_the_session_once(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = aal1_session_with_totp(&s, "paula").await;
    let c = s.client();
    let a = c.step_up(&t.access_token, &StepUpRequest::default()).await.unwrap();
    let code = totp_code(&secret, &s.clock, 0);
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, id, code, barrier) = (c.clone(), a.flow_id.clone(), code.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                c.totp_code(&id, &code).await.ok().and_then(|a| a.tokens)
            })
        })
        .collect();
    let mut tokens = vec![];
    for t in tasks {
        tokens.extend(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 1, "one code, one step-up");
    assert_eq!(jwt_claims(&tokens[0].access_token)["acr"], "aal2");
}

async fn acr_values_at_sign_in_asks_for_a_second_factor_whatever_the_policy(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("olive", PW).await;
    let c = s.client();
    let aal2 = |u: &str| SignInRequest {
        username: Some(u.into()),
        password: Some(PW.into()),
        acr_values: Some("aal2".into()),
        max_age: Some(0),
        ..Default::default()
    };
    // Optional MFA and no factor: set one up inside this sign-in.
    let a = c.sign_in_with(&aal2("olive")).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    let done = c.setup_totp(&a.flow_id, &totp_code(secret, &s.clock, 0)).await.unwrap();
    assert_eq!(jwt_claims(&done.tokens.unwrap().access_token)["acr"], "aal2");
    // Without acr_values the same account is asked as the policy says; aal1 asks nothing more.
    let plain = SignInRequest { acr_values: Some("aal1".into()), ..aal2("olive") };
    assert!(matches!(c.sign_in_with(&plain).await.unwrap().next_step, NextStep::TotpCode { .. }));
    let off = TestServer::start_with(b, |c| c.policy.mfa.mode = MfaMode::Off).await;
    off.create_user("otto", PW).await;
    let e = off.client().sign_in_with(&aal2("otto")).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "aal2 cannot be reached with second factors off");
}

async fn the_timeline_shows_the_users_own_events_newest_first_with_safe_details(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = aal1_session_with_totp(&s, "tina").await;
    let c = s.client();
    assert!(c.sign_in("tina", "not the password").await.is_err());
    let a = c.step_up(&t.access_token, &StepUpRequest::default()).await.unwrap();
    let t = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    s.create_user("other", PW).await;
    let page = c.events(&t.access_token, None, None).await.unwrap();
    let kinds: Vec<(&str, &str)> = page.events.iter().map(|e| (e.kind.as_str(), e.outcome.as_str())).collect();
    assert_eq!(kinds[..3], [("step_up", "success"), ("step_up", "started"), ("sign_in", "failure")], "{kinds:?}");
    assert!(kinds.contains(&("sign_in", "success")), "{kinds:?}");
    assert_eq!(page.next_before, None);
    let allowed = [
        "session_id",
        "device_id",
        "factor_id",
        "flow_id",
        "approval_id",
        "remembered_client_id",
        "method",
        "channel",
        "acr",
        "amr",
        "step",
        "reason",
        "new_device",
    ];
    for e in &page.events {
        assert!(e.detail.keys().all(|k| allowed.contains(&k.as_str())), "{:?}", e.detail);
        assert_eq!(e.user_agent.as_deref(), Some(latchkey_testkit::USER_AGENT));
    }
    let body = serde_json::to_string(&page).unwrap();
    assert!(!body.contains("other") && !body.contains(PW), "only the caller's events, no secrets");
    // Pages by cursor; an event written between pages shifts nothing.
    let first = c.events(&t.access_token, None, Some(2)).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert!(c.sign_in("tina", "wrong again").await.is_err());
    let second = c.events(&t.access_token, first.next_before.as_deref(), Some(2)).await.unwrap();
    assert_eq!(second.events[0].id, page.events[2].id, "the second page starts where the first ended");
    let raw = s.raw().request("GET", "/v1/me/events?before=nope", Some(&t.access_token), None).await;
    assert_eq!(raw.status, 400);
    let stranger = uuid::Uuid::now_v7().to_string();
    assert!(c.events(&t.access_token, Some(&stranger), None).await.unwrap().events.is_empty());
}

async fn the_sdk_steps_up_and_retries_once_on_a_challenge_from_the_apps_own_api(b: Backend) {
    use latchkey_client::ClientError;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = TestServer::start(b).await;
    let (mut t, secret) = aal1_session_with_totp(&s, "apio").await;
    // The app's own API: `/pay` wants an aal2 token, `/vault` an aal3 one this account (with no
    // attested passkey) cannot reach,
    // `/never` is never satisfied; otherwise each answers an RFC 9470 challenge.
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = |want: &'static str, calls: Arc<AtomicUsize>| {
        move |headers: axum::http::HeaderMap| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let token =
                headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").trim_start_matches("Bearer ");
            if jwt_claims(token)["acr"] == want {
                return (axum::http::StatusCode::OK, [("www-authenticate", String::new())], "paid");
            }
            let challenge = format!(r#"Bearer error="insufficient_user_authentication", acr_values="{want}""#);
            (axum::http::StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)], "")
        }
    };
    let app = axum::Router::new()
        .route("/pay", axum::routing::post(handler("aal2", calls.clone())))
        .route("/vault", axum::routing::post(handler("aal3", calls.clone())))
        .route("/never", axum::routing::post(handler("aal2 but never", calls.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let call = |path: &'static str| {
        let http = http.clone();
        move |at: String| {
            let http = http.clone();
            async move {
                let resp = http.post(format!("http://{addr}{path}")).bearer_auth(&at).send().await.unwrap();
                if resp.status() == 401 {
                    let h = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    return Err(ClientError::step_up_required(h).expect("an RFC 9470 challenge"));
                }
                Ok(resp.text().await.unwrap())
            }
        }
    };
    let c = s.client();
    let (c2, clock, secret2) = (c.clone(), s.clock.clone(), secret.clone());
    let paid = c
        .with_step_up(&mut t, call("/pay"), |first| async move {
            c2.totp_code(&first.flow_id, &totp_code(&secret2, &clock, 0)).await
        })
        .await
        .unwrap();
    assert_eq!(paid, "paid");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "refused once, stepped up, retried once");
    assert_eq!(jwt_claims(&t.access_token)["acr"], "aal2");
    // A level the account cannot reach: the step-up is refused and the call is not retried.
    let e = c.with_step_up(&mut t, call("/vault"), |a| async move { Ok(a) }).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::MFA_REQUIRED), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call, no retry");
    // An API that challenges again after a step-up gets its second challenge back: one retry.
    let e = c.with_step_up(&mut t, call("/never"), |a| async move { Ok(a) }).await.unwrap_err();
    assert!(e.challenge().is_some(), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 5, "the call and one retry, never a loop");
}

async fn a_device_session_steps_up_with_the_devices_own_signature(b: Backend) {
    use latchkey_client::Unlock;
    let s = TestServer::start(b).await;
    let (device_id, ks, _) = s.passwordless_account("dora", "+15550100888", Some("dora@example.com"), "371946").await;
    let phone = s.client().with_device_key(Arc::new(ks.clone()), &device_id).unwrap();
    // The biometric key without attestation is possession only: an aal1 session.
    let t = phone.device_sign_in(&device_id, &ks, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(jwt_claims(&t.access_token)["acr"], "aal1");
    let a = phone.step_up(&t.access_token, &StepUpRequest::default()).await.unwrap();
    let NextStep::DeviceSignature { nonce, .. } = a.next_step.clone() else { panic!("{:?}", a.next_step) };
    // The biometric key again does not raise it: refused, with what to do instead.
    let again = phone.device_signature(&a.flow_id, &nonce, &device_id, &ks, Unlock::Biometric).await.unwrap();
    let e = again.error.expect("refused");
    assert_eq!(e.code, codes::INSUFFICIENT_USER_AUTHENTICATION, "{}", e.message);
    assert!(again.tokens.is_none());
    // The possession key and the PIN do: the same session, aal2, bound to the same device key.
    s.clock.advance(Duration::seconds(3));
    let done = phone.device_signature(&a.flow_id, &nonce, &device_id, &ks, Unlock::Pin("371946")).await.unwrap();
    let raised = done.tokens.expect("tokens");
    let (before, after) = (jwt_claims(&t.access_token), jwt_claims(&raised.access_token));
    assert_eq!((&after["sid"], &after["cnf"]), (&before["sid"], &before["cnf"]));
    assert_eq!((after["acr"].as_str(), after["auth_time"].as_i64()), (Some("aal2"), Some(s.clock_unix())));
    assert_eq!(after["amr"], serde_json::json!(["hwk", "pin", "mfa"]));
    assert_eq!(raised.token_type, "DPoP");
    assert_eq!(phone.me(&raised.access_token).await.unwrap().acr, "aal2");
    // Later, an old sign-in: the biometric key refreshes auth_time and keeps aal2.
    s.clock.advance(Duration::seconds(500));
    // The SDK dates its DPoP proofs by the server's clock as its last answer told it (the fake
    // clock just jumped): any request brings it up to date.
    phone.flow(&a.flow_id).await.unwrap();
    let req = StepUpRequest { max_age: Some(300), ..Default::default() };
    let a = phone.step_up(&raised.access_token, &req).await.unwrap();
    let NextStep::DeviceSignature { nonce, .. } = a.next_step.clone() else { panic!("{:?}", a.next_step) };
    let fresh = phone.device_signature(&a.flow_id, &nonce, &device_id, &ks, Unlock::Biometric).await.unwrap();
    let claims = jwt_claims(&fresh.tokens.expect("tokens").access_token);
    assert_eq!((claims["acr"].as_str(), claims["auth_time"].as_i64()), (Some("aal2"), Some(s.clock_unix())));
}

both_stores!(
    a_device_session_steps_up_with_the_devices_own_signature,
    the_sdk_steps_up_and_retries_once_on_a_challenge_from_the_apps_own_api,
    ses_7_the_sdk_steps_up_on_latchkeys_challenge_and_the_session_is_raised_in_place,
    a_refresh_token_from_before_the_step_up_is_reuse_and_ends_the_session,
    max_age_asks_a_fresh_factor_of_an_old_session_and_a_fresh_one_is_done_at_once,
    a_step_up_offers_only_what_raises_the_session,
    parallel_answers_to_one_step_up_raise_the_session_once,
    acr_values_at_sign_in_asks_for_a_second_factor_whatever_the_policy,
    the_timeline_shows_the_users_own_events_newest_first_with_safe_details,
);
