//! Every flow step: sign-up and confirmation, resend, sign-in, new password, forgot password;
//! expiry through the fake clock; the error codes an app branches on.

use latchkey_testkit::proto::{Channel, DenialReason, NextStep, SignUpRequest, codes};
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer};
use time::Duration;

const PW: &str = "correct horse battery";

fn sign_up_req(username: &str) -> SignUpRequest {
    SignUpRequest {
        username: username.into(),
        password: Some(PW.into()),
        email: Some(format!("{username}@example.com")),
        phone: None,
        locale: None,
    }
}

async fn a_user_signs_up_confirms_by_email_code_and_signs_in(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("alice")).await.unwrap();
    assert_eq!(
        a.next_step,
        NextStep::ConfirmSignUp { channel: Channel::Email, destination: "a***@e***.com".into(), attempts_left: 5 }
    );
    assert!(a.tokens.is_none());
    let outbox = s.outbox().await;
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].channel.as_str(), outbox[0].to.as_str()), ("email", "alice@example.com"));
    let code = s.code_for("alice@example.com").await;
    assert_eq!(code.len(), 6);

    let wrong = c.confirm_sign_up(&a.flow_id, if code == "000000" { "111111" } else { "000000" }).await.unwrap();
    assert_eq!(wrong.error.as_ref().map(|e| e.code.as_str()), Some(codes::CODE_MISMATCH));
    assert!(matches!(wrong.next_step, NextStep::ConfirmSignUp { attempts_left: 4, .. }));

    let done = c.confirm_sign_up(&a.flow_id, &code).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    assert!(done.tokens.is_none(), "sign-up ends without a session; the app signs in");

    let t = s.sign_in("ALICE", PW).await;
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!((me.username.as_str(), me.status.as_str(), me.email_verified), ("alice", "active", true));
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal1", vec!["pwd".to_string()]));
}

async fn sign_up_can_use_a_phone_and_confirms_it_by_sms(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "sam".into(),
            password: Some(PW.into()),
            email: None,
            phone: Some("+1 555 123 4567".into()),
            locale: None,
        })
        .await
        .unwrap();
    assert_eq!(
        a.next_step,
        NextStep::ConfirmSignUp { channel: Channel::Sms, destination: "+*******4567".into(), attempts_left: 5 }
    );
    let code = s.code_for("+15551234567").await;
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);
    let me = c.me(&s.sign_in("sam", PW).await.access_token).await.unwrap();
    assert!(me.phone_verified && !me.email_verified);
}

async fn sign_up_rejects_bad_input_with_stable_codes_and_changes_nothing(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let cases = [
        (SignUpRequest { username: "bad name".into(), ..sign_up_req("x") }, codes::INVALID_REQUEST),
        (SignUpRequest { email: None, ..sign_up_req("noemail") }, codes::INVALID_REQUEST),
        (SignUpRequest { email: Some("not-an-address".into()), ..sign_up_req("bademail") }, codes::INVALID_REQUEST),
        (SignUpRequest { password: None, ..sign_up_req("nopw") }, codes::INVALID_REQUEST),
        (SignUpRequest { password: Some("short".into()), ..sign_up_req("shortpw") }, codes::INVALID_PASSWORD),
        (SignUpRequest { password: Some("password1".into()), ..sign_up_req("commonpw") }, codes::INVALID_PASSWORD),
    ];
    for (req, code) in cases {
        let e = c.sign_up(&req).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(400), Some(code)), "{req:?}");
    }
    let e = c.sign_up(&sign_up_req("shortpw").clone()).await;
    assert!(e.is_ok(), "the refused attempts reserved nothing");
    let raw = s.raw().raw("POST", "/v1/sign-up", None, Some("{not json".into()), &[]).await;
    assert_eq!((raw.status, raw.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    let raw = s
        .raw()
        .request(
            "POST",
            "/v1/sign-up",
            None,
            Some(serde_json::json!({"username": "u", "password": PW, "email": "u@example.com", "admin": true})),
        )
        .await;
    assert_eq!(raw.status, 400, "unknown fields are refused");
    assert_eq!(s.outbox().await.len(), 1, "only the one valid sign-up sent a code");
}

async fn a_taken_username_gets_an_identical_looking_answer_whose_code_never_works(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("bob", PW).await;
    let c = s.client();
    let a =
        c.sign_up(&SignUpRequest { email: Some("mallory@example.com".into()), ..sign_up_req("Bob") }).await.unwrap();
    assert_eq!(
        a.next_step,
        NextStep::ConfirmSignUp { channel: Channel::Email, destination: "m***@e***.com".into(), attempts_left: 5 }
    );
    assert_eq!(s.messages_to("mallory@example.com").await, 0, "nothing is sent for a taken username");
    for guess in ["000000", "123456"] {
        let r = c.confirm_sign_up(&a.flow_id, guess).await.unwrap();
        assert_eq!(r.error.unwrap().code, codes::CODE_MISMATCH);
    }
}

async fn the_policy_can_reveal_a_taken_username(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.reveal_username_exists = true).await;
    s.create_user("carol", PW).await;
    let e = s.client().sign_up(&sign_up_req("CAROL")).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::USERNAME_EXISTS)));
}

async fn resend_sends_a_new_code_and_the_old_one_stops_working(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("dave")).await.unwrap();
    let first = s.code_for("dave@example.com").await;
    let r = c.resend(&a.flow_id).await.unwrap();
    assert!(matches!(r.next_step, NextStep::ConfirmSignUp { .. }));
    let second = s.code_for("dave@example.com").await;
    assert_eq!(s.messages_to("dave@example.com").await, 2);
    if first != second {
        let old = c.confirm_sign_up(&a.flow_id, &first).await.unwrap();
        assert_eq!(old.error.unwrap().code, codes::CODE_MISMATCH);
    }
    assert_eq!(c.confirm_sign_up(&a.flow_id, &second).await.unwrap().next_step, NextStep::Done);
    let e = c.resend(&a.flow_id).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED));
}

async fn resend_is_limited_per_flow(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.limits.sends_per_account = 100).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("erin")).await.unwrap();
    for _ in 0..4 {
        c.resend(&a.flow_id).await.unwrap();
    }
    let e = c.resend(&a.flow_id).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(429), Some(codes::LIMIT_EXCEEDED)));
    assert_eq!(s.messages_to("erin@example.com").await, 5);
}

async fn an_unconfirmed_user_signing_in_confirms_and_then_gets_tokens(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    c.sign_up(&sign_up_req("fay")).await.unwrap();
    let a = c.sign_in("fay", PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::ConfirmSignUp { channel: Channel::Email, .. }));
    assert!(a.tokens.is_none());
    let code = s.code_for("fay@example.com").await;
    let done = c.confirm_sign_up(&a.flow_id, &code).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let t = done.tokens.expect("the password was verified in this flow");
    assert_eq!(c.me(&t.access_token).await.unwrap().status, "active");
}

async fn an_admin_can_require_a_new_password_at_the_next_sign_in(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("gus", PW).await;
    let r = s.raw().request("POST", "/admin/v1/users/GUS/require-password-change", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204);
    let c = s.client();
    let a = c.sign_in("gus", PW).await.unwrap();
    assert_eq!(a.next_step, NextStep::NewPassword { attempts_left: 5 });
    assert!(a.tokens.is_none());
    let weak = c.new_password(&a.flow_id, "password").await.unwrap();
    assert_eq!(weak.error.unwrap().code, codes::INVALID_PASSWORD);
    assert_eq!(weak.next_step, NextStep::NewPassword { attempts_left: 5 });
    let done = c.new_password(&a.flow_id, "a brand new passphrase").await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    assert!(done.tokens.is_some());
    assert_eq!(c.sign_in("gus", PW).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    assert!(c.sign_in("gus", "a brand new passphrase").await.unwrap().tokens.is_some());
    let bad = s.raw().request("POST", "/admin/v1/users/gus/disable", Some("wrong-token"), None).await;
    assert_eq!(bad.status, 401);
    let none = s.raw().request("POST", "/admin/v1/users/nobody/disable", Some(ADMIN_TOKEN), None).await;
    assert_eq!(none.status, 404);
}

async fn forgot_password_resets_with_a_code_and_a_new_password(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("hal", PW).await;
    let c = s.client();
    let a = c.forgot_password("Hal").await.unwrap();
    assert_eq!(a.next_step, NextStep::ResetPassword { channel: None, destination: String::new(), attempts_left: 5 });
    let code = s.code_for("hal@example.com").await;
    let weak = c.reset_password(&a.flow_id, &code, "12345678").await.unwrap();
    assert_eq!(weak.error.unwrap().code, codes::INVALID_PASSWORD);
    let wrong = c
        .reset_password(&a.flow_id, if code == "000000" { "111111" } else { "000000" }, "new passphrase here")
        .await
        .unwrap();
    assert_eq!(wrong.error.unwrap().code, codes::CODE_MISMATCH);
    // The email is hal's only proof: the new password waits out the delay hal could cancel.
    let wait = c.reset_password(&a.flow_id, &code, "new passphrase here").await.unwrap();
    assert!(matches!(wait.next_step, NextStep::RecoveryWait { .. }), "{:?}", wait.next_step);
    assert_eq!(c.sign_in("hal", "new passphrase here").await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    s.clock.advance(time::Duration::seconds(61));
    let done = c.recovery_wait(&a.flow_id).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    assert!(done.tokens.is_none());
    assert!(c.sign_in("hal", "new passphrase here").await.unwrap().tokens.is_some());
    assert_eq!(c.sign_in("hal", PW).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
}

async fn codes_expire_with_their_flow_after_ten_minutes(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("ivy")).await.unwrap();
    let code = s.code_for("ivy@example.com").await;
    s.clock.advance(Duration::minutes(10));
    let e = c.confirm_sign_up(&a.flow_id, &code).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(410), Some(codes::EXPIRED_CODE)));
    assert_eq!(c.flow(&a.flow_id).await.unwrap_err().code(), Some(codes::EXPIRED_CODE));
    assert_eq!(c.resend(&a.flow_id).await.unwrap_err().code(), Some(codes::EXPIRED_CODE));
    // Signing in starts over with a fresh code.
    let again = c.sign_in("ivy", PW).await.unwrap();
    let code = s.code_for("ivy@example.com").await;
    assert!(c.confirm_sign_up(&again.flow_id, &code).await.unwrap().tokens.is_some());
}

async fn a_flow_without_a_code_expires_after_five_minutes(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("jay", PW).await;
    s.raw().request("POST", "/admin/v1/users/jay/require-password-change", Some(ADMIN_TOKEN), None).await;
    let c = s.client();
    let a = c.sign_in("jay", PW).await.unwrap();
    s.clock.advance(Duration::seconds(299));
    assert!(matches!(c.flow(&a.flow_id).await.unwrap().next_step, NextStep::NewPassword { .. }));
    s.clock.advance(Duration::seconds(1));
    let e = c.new_password(&a.flow_id, "another fine passphrase").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(410), Some(codes::FLOW_EXPIRED)));
}

async fn a_flow_refuses_answers_for_other_steps_unknown_ids_and_other_clients(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("kim")).await.unwrap();
    let e = c.new_password(&a.flow_id, "whatever passphrase").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::STEP_MISMATCH)));
    let e = c.confirm_sign_up("01900000-0000-7000-8000-000000000000", "123456").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(404), Some(codes::FLOW_NOT_FOUND)));
    let e = c.confirm_sign_up("not-a-uuid", "123456").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_NOT_FOUND));
    let other = latchkey_testkit::latchkey_client::Client::with_user_agent(&s.url, "another-app/1.0").unwrap();
    let code = s.code_for("kim@example.com").await;
    let e = other.confirm_sign_up(&a.flow_id, &code).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(403), Some(codes::FLOW_CONTEXT_MISMATCH)));
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);
}

async fn too_many_wrong_codes_deny_the_flow(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&sign_up_req("lee")).await.unwrap();
    let code = s.code_for("lee@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (1..5).rev() {
        let r = c.confirm_sign_up(&a.flow_id, wrong).await.unwrap();
        assert!(matches!(r.next_step, NextStep::ConfirmSignUp { attempts_left, .. } if attempts_left == left));
    }
    let r = c.confirm_sign_up(&a.flow_id, wrong).await.unwrap();
    assert_eq!(r.next_step, NextStep::Denied { reason: DenialReason::TooManyAttempts });
}

async fn a_device_sign_in_needs_a_device_id_and_nothing_else(b: Backend) {
    let s = TestServer::start(b).await;
    let r = s.raw().request("POST", "/v1/sign-in", None, Some(serde_json::json!({"device_id": "x"}))).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    let both =
        serde_json::json!({"device_id": "01900000-0000-7000-8000-000000000000", "username": "u", "password": "p"});
    let r = s.raw().request("POST", "/v1/sign-in", None, Some(both)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
}

both_stores!(
    a_user_signs_up_confirms_by_email_code_and_signs_in,
    sign_up_can_use_a_phone_and_confirms_it_by_sms,
    sign_up_rejects_bad_input_with_stable_codes_and_changes_nothing,
    a_taken_username_gets_an_identical_looking_answer_whose_code_never_works,
    the_policy_can_reveal_a_taken_username,
    resend_sends_a_new_code_and_the_old_one_stops_working,
    resend_is_limited_per_flow,
    an_unconfirmed_user_signing_in_confirms_and_then_gets_tokens,
    an_admin_can_require_a_new_password_at_the_next_sign_in,
    forgot_password_resets_with_a_code_and_a_new_password,
    codes_expire_with_their_flow_after_ten_minutes,
    a_flow_without_a_code_expires_after_five_minutes,
    a_flow_refuses_answers_for_other_steps_unknown_ids_and_other_clients,
    too_many_wrong_codes_deny_the_flow,
    a_device_sign_in_needs_a_device_id_and_nothing_else,
);
