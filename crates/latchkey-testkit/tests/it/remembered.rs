//! Remembered clients ("remember this device", checklist SES-9): a client's key that lets a
//! password sign-in skip the second factor, proved by signature, never enough for a step-up, and
//! forgotten when asked, when every session ends, on expiry, or on a wrong signature.

use super::devices::aal2_user_and_secret as with_totp;
use data_encoding::BASE64URL_NOPAD as B64;
use latchkey_client::{Client, Keystore, REMEMBERED_KEY_ALIAS, SoftwareKeystore};
use latchkey_testkit::proto::{NextStep, SignOutScope, StepUpRequest, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims, totp_code};
use time::Duration;

const PW: &str = "correct horse battery";

async fn ses_9_a_remembered_client_skips_the_second_factor_but_never_a_step_up(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = with_totp(&s, "rita").await;
    let (c, ks) = (s.client(), SoftwareKeystore::new());
    let remembered = c.remember_client(&t.access_token, &ks, "Firefox on the laptop").await.unwrap();
    s.clock.advance(Duration::days(3));
    let done = c.sign_in_remembered("rita", PW, &remembered.id, &ks).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done, "no second factor asked");
    let r = done.tokens.unwrap();
    let claims = jwt_claims(&r.access_token);
    assert_eq!(
        (claims["acr"].as_str(), claims["amr"].clone()),
        (Some("aal2"), serde_json::json!(["pwd", "swk", "mfa"]))
    );
    // It is listed with the devices, last used now.
    let listed = c.devices(&r.access_token).await.unwrap().remembered_clients;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].name.as_str()), (remembered.id.as_str(), "Firefox on the laptop"));
    assert!(listed[0].last_used_at.is_some());
    // It never satisfies a step-up: a sensitive call asks for one, and the step-up asks the app.
    let e = c.regenerate_recovery_codes(&r.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    // Nor can it remember another client.
    let e = c.remember_client(&r.access_token, &SoftwareKeystore::new(), "Another").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    let a = c.step_up(&r.access_token, &StepUpRequest::default()).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    let raised = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    assert_eq!(c.regenerate_recovery_codes(&raised.access_token).await.unwrap().codes.len(), 10);
    // Forgotten: the next sign-in asks for the second factor again.
    c.forget_client(&raised.access_token, &remembered.id).await.unwrap();
    let again = c.sign_in_remembered("rita", PW, &remembered.id, &ks).await.unwrap();
    assert!(matches!(again.next_step, NextStep::TotpCode { .. }), "{:?}", again.next_step);
    assert_eq!(c.forget_client(&raised.access_token, &remembered.id).await.unwrap_err().status(), Some(404));
}

async fn a_client_id_without_its_key_gets_the_second_factor_and_the_client_is_forgotten(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, _) = with_totp(&s, "ravi").await;
    let (c, ks) = (s.client(), SoftwareKeystore::new());
    let remembered = c.remember_client(&t.access_token, &ks, "Phone browser").await.unwrap();
    // The id alone (copied from the victim's storage), signed with another key.
    let thief = Client::with_user_agent(&s.url, "thief").unwrap();
    let other = SoftwareKeystore::new();
    other.create_key(REMEMBERED_KEY_ALIAS, false).unwrap();
    let a = thief.sign_in_remembered("ravi", PW, &remembered.id, &other).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    assert_eq!(a.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    assert!(a.tokens.is_none());
    // A wrong signature was that client's last try: the real one is asked for the factor too.
    let owner = c.sign_in_remembered("ravi", PW, &remembered.id, &ks).await.unwrap();
    assert!(matches!(owner.next_step, NextStep::TotpCode { .. }), "{:?}", owner.next_step);
    // An unknown or malformed id is as if none was sent.
    let none = c.sign_in_remembered("ravi", PW, "not-an-id", &ks).await.unwrap();
    assert!(matches!(none.next_step, NextStep::TotpCode { .. }), "{:?}", none.next_step);
}

async fn a_remembered_client_is_forgotten_when_every_session_ends_and_when_it_expires(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.remember.max_age_secs = 7 * 24 * 3600).await;
    let (t, secret) = with_totp(&s, "rosa").await;
    let (c, ks) = (s.client(), SoftwareKeystore::new());
    let first = c.remember_client(&t.access_token, &ks, "Laptop").await.unwrap();
    c.sign_out(&t.access_token, SignOutScope::All).await.unwrap();
    s.clock.advance(Duration::seconds(30)); // a new TOTP step: each code works once
    let a = c.sign_in_remembered("rosa", PW, &first.id, &ks).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "signing out everywhere forgets it: {:?}", a.next_step);
    let t = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let second = c.remember_client(&t.access_token, &ks, "Laptop").await.unwrap();
    s.clock.advance(Duration::days(6));
    assert_eq!(c.sign_in_remembered("rosa", PW, &second.id, &ks).await.unwrap().next_step, NextStep::Done);
    s.clock.advance(Duration::days(2));
    let a = c.sign_in_remembered("rosa", PW, &second.id, &ks).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "7 days, however often used: {:?}", a.next_step);
}

async fn remembering_needs_a_fresh_second_factor_and_proof_of_the_key(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("remy", PW).await;
    let c = s.client();
    let aal1 = s.sign_in("remy", PW).await;
    let e = c.remember_client(&aal1.access_token, &SoftwareKeystore::new(), "X").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION), "a password alone");
    let (t, _) = with_totp(&s, "rhea").await;
    // A key the caller does not hold: the signature is another key's.
    let ks = SoftwareKeystore::new();
    let key = B64.encode(&ks.create_key("a", false).unwrap());
    let other = SoftwareKeystore::new();
    other.create_key("b", false).unwrap();
    let sid = jwt_claims(&t.access_token)["sid"].as_str().unwrap().to_owned();
    let msg = latchkey_testkit::proto::remember_message(&sid, &key);
    let forged = B64.encode(&other.sign("b", msg.as_bytes()).unwrap());
    let body = serde_json::json!({"public_key": key, "signature": forged, "name": "Forged"});
    let r = s.raw().request("POST", "/v1/me/remembered-clients", Some(&t.access_token), Some(body)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{}", r.body);
    let right = B64.encode(&ks.sign("a", msg.as_bytes()).unwrap());
    let body = serde_json::json!({"public_key": key, "signature": right, "name": "<a href=x>"});
    let r = s.raw().request("POST", "/v1/me/remembered-clients", Some(&t.access_token), Some(body)).await;
    assert_eq!(r.status, 400, "a name with markup: {}", r.body);
    // Ten minutes later the sign-in is too old to remember anything.
    s.clock.advance(Duration::minutes(11));
    let e = c.remember_client(&t.access_token, &SoftwareKeystore::new(), "Late").await;
    assert!(e.is_err_and(|e| e.status() == Some(401)), "a stale sign-in (or an expired token)");
}

both_stores!(
    ses_9_a_remembered_client_skips_the_second_factor_but_never_a_step_up,
    a_client_id_without_its_key_gets_the_second_factor_and_the_client_is_forgotten,
    a_remembered_client_is_forgotten_when_every_session_ends_and_when_it_expires,
    remembering_needs_a_fresh_second_factor_and_proof_of_the_key,
);
