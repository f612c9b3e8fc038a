//! Account recovery (issue 10): the attacks a SIM-swapper tried, each recovery path — two proofs
//! at once, one proof and a delay with and without the owner's veto — cooldowns after a phone or
//! email change, look-alike answers, send budgets, and the notices read from the sinks.

use latchkey_client::{Client, SoftwareKeystore, Unlock};
use latchkey_testkit::proto::{Channel, DenialReason, FlowAnswer, MfaMethod, NextStep, SignUpRequest, codes};
use latchkey_testkit::{Backend, TestServer, totp_code};
use std::sync::Arc;
use time::Duration;

const PW: &str = "correct horse battery";
const PIN: &str = "371946";

fn methods(a: &FlowAnswer) -> Vec<MfaMethod> {
    match &a.next_step {
        NextStep::SelectMfa { methods } => methods.clone(),
        other => panic!("expected select_mfa, got {other:?}"),
    }
}

fn is_wait(a: &FlowAnswer) -> bool {
    matches!(a.next_step, NextStep::RecoveryWait { .. })
}

fn cancelled(a: &FlowAnswer) -> bool {
    matches!(a.next_step, NextStep::Denied { reason: DenialReason::Cancelled })
}

/// The token of the link in the newest notice to `to` whose subject contains `subject`.
async fn link_token(s: &TestServer, to: &str, subject: &str) -> String {
    let messages = s.outbox().await;
    let m = messages
        .iter()
        .rev()
        .find(|m| m.to == to && m.subject.contains(subject))
        .unwrap_or_else(|| panic!("no notice \"{subject}\" to {to}"));
    let start = m.body.find("token=").expect("a cancel link") + "token=".len();
    m.body[start..].split_whitespace().next().unwrap().to_owned()
}

/// The app on an enrolled device: its requests are signed by the device's possession key.
fn on_device(s: &TestServer, ks: &SoftwareKeystore, id: &str) -> Client {
    s.client().with_device_key(Arc::new(ks.clone()), id).unwrap()
}

async fn attack_1_the_sim_alone_never_resets_a_passwordless_account(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    let phone = "+14155550401";
    let (id, ks, _) = s.passwordless_account("ava", phone, None, PIN).await;
    // The owner sold the phone and removed it.
    let d = on_device(&s, &ks, &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    d.revoke_device(&t.access_token, &id).await.unwrap();
    // The attacker holds the SIM: forgot-password, the SMS code and a password of their choice…
    let thief = s.client();
    let f = thief.forgot_password("ava").await.unwrap();
    let r = thief.reset_password(&f.flow_id, &s.code_for(phone).await, "the thief's passphrase").await.unwrap();
    // …is one proof: the account has no second one, so the recovery waits, and nothing changed.
    assert!(is_wait(&r) && r.tokens.is_none(), "{:?}", r.next_step);
    let e = thief.sign_in("ava", "the thief's passphrase").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::NOT_AUTHORIZED), "no password was set");
    let r = thief.recover("ava", None).await.unwrap();
    assert!(matches!(r.next_step, NextStep::SmsCode { .. }), "{:?}", r.next_step);
    let r = thief.sms_code(&r.flow_id, &s.code_for(phone).await).await.unwrap();
    assert!(is_wait(&r), "the same through /v1/recovery: {:?}", r.next_step);
    assert!(
        s.outbox().await.iter().any(|m| m.to == phone && m.subject.contains("being recovered")),
        "the number hears of it with a cancel link"
    );
}

async fn attack_2_a_sim_swappers_recovery_ends_no_session_every_channel_hears_and_one_tap_cancels(b: Backend) {
    let s = TestServer::start(b).await;
    let phone = "+14155550402";
    let (id, ks, _) = s.passwordless_account("bo", phone, Some("bo@example.com"), PIN).await;
    let owner = on_device(&s, &ks, &id);
    owner.set_push_token("fcm", Some("bo-phone-token")).await.unwrap();
    let session = owner.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    // The thief asks for the code by SMS: the second proof must be the mailbox (the owner's
    // phone is not one: SMS and that phone's key are one proof), or the wait.
    let thief = Client::with_user_agent(&s.url, "Thief").unwrap();
    let a = thief.recover("bo", Some(Channel::Sms)).await.unwrap();
    let r = thief.sms_code(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    assert_eq!(methods(&r), vec![MfaMethod::Email, MfaMethod::RecoveryWait]);
    let w = thief.select_mfa(&a.flow_id, MfaMethod::RecoveryWait).await.unwrap();
    assert!(is_wait(&w), "{:?}", w.next_step);
    // The owner's sessions live on, and every channel is told: the mailbox and the phone app.
    assert_eq!(owner.me(&session.access_token).await.unwrap().username, "bo");
    let outbox = s.outbox().await;
    assert!(outbox.iter().any(|m| m.to == "bo@example.com" && m.subject.contains("being recovered")));
    assert!(
        outbox.iter().any(|m| m.to == "fcm:bo-phone-token" && m.body.contains("\"type\":\"recovery\"")),
        "a push to the enrolled device"
    );
    // A mail scanner fetching the link cancels nothing; the owner's tap (a POST) does.
    let token = link_token(&s, "bo@example.com", "being recovered").await;
    let page = s.raw().request("GET", &format!("/v1/recovery/cancel?token={token}"), None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<form method=\"post\""), "{}", page.body);
    assert!(is_wait(&thief.flow(&a.flow_id).await.unwrap()), "a GET changes nothing");
    let form = format!("token={token}");
    let done = s
        .raw()
        .raw(
            "POST",
            "/v1/recovery/cancel",
            None,
            Some(form.clone()),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert!(done.body.contains("The recovery was stopped"), "{}", done.body);
    s.clock.advance(Duration::seconds(61));
    let end = thief.recovery_wait(&a.flow_id).await.unwrap();
    assert!(cancelled(&end) && end.tokens.is_none(), "{:?}", end.next_step);
    // The token worked once.
    let again = s.raw().request("POST", "/v1/recovery/cancel", None, Some(serde_json::json!({"token": token}))).await;
    assert_eq!((again.status, again.json()["error"]["code"].as_str()), (404, Some(codes::NOT_FOUND)));
    assert!(s.outbox().await.iter().any(|m| m.to == "bo@example.com" && m.subject.contains("was cancelled")));
}

async fn attack_3_a_new_number_is_no_sms_factor_new_device_step_or_recovery_channel_until_the_cooldown(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.recovery.phone_change_cooldown_secs = 3600).await;
    // A passwordless account whose number is changed (by whoever holds a session).
    let (id, ks, _) = s.passwordless_account("cy", "+14155550403", Some("cy@example.com"), PIN).await;
    let d = on_device(&s, &ks, &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let new_number = "+14155550493";
    let v = d.enroll_sms(&t.access_token, Some(new_number)).await.unwrap();
    d.verify_code(&v.flow_id, &s.code_for(new_number).await).await.unwrap();
    let sent = s.messages_to(new_number).await;
    // A new device's first step and a recovery by SMS send nothing to it…
    let c = s.client();
    let a = c.sign_in_new_device("cy").await.unwrap();
    assert!(matches!(a.next_step, NextStep::SmsCode { .. }), "it looks the same: {:?}", a.next_step);
    let r = c.recover("cy", Some(Channel::Sms)).await.unwrap();
    assert!(matches!(r.next_step, NextStep::SmsCode { .. }), "{:?}", r.next_step);
    assert_eq!(s.messages_to(new_number).await, sent, "no code to a number changed within the cooldown");
    // …a recovery by email does not offer it as a second proof…
    let r = c.recover("cy", Some(Channel::Email)).await.unwrap();
    let r = c.email_code(&r.flow_id, &s.code_for("cy@example.com").await).await.unwrap();
    assert_eq!(methods(&r), vec![MfaMethod::PushApproval, MfaMethod::RecoveryWait]);
    // …and after the cooldown the number counts.
    s.clock.advance(Duration::seconds(3601));
    let a = c.sign_in_new_device("cy").await.unwrap();
    let after = c.sms_code(&a.flow_id, &s.code_for(new_number).await).await.unwrap();
    assert!(matches!(after.next_step, NextStep::SelectMfa { .. }), "{:?}", after.next_step);

    // A password account that adds an SMS factor: not offered at sign-in until the cooldown ends.
    s.create_user("cyd", PW).await;
    let t = s.sign_in("cyd", PW).await;
    let v = c.enroll_sms(&t.access_token, Some("+14155550494")).await.unwrap();
    c.verify_code(&v.flow_id, &s.code_for("+14155550494").await).await.unwrap();
    let a = c.sign_in("cyd", PW).await.unwrap();
    assert_eq!((a.next_step.clone(), a.tokens.is_some()), (NextStep::Done, true), "SMS is not a factor yet");
    s.clock.advance(Duration::seconds(3601));
    let a = c.sign_in("cyd", PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::SmsCode { .. }), "{:?}", a.next_step);
}

async fn attack_5_look_alike_sign_ups_never_spend_the_owners_send_budget(b: Backend) {
    let s = TestServer::start_with(b, |c| c.trust_forwarded_for = true).await;
    s.create_user("fay", PW).await;
    let sign_up = |ip: String| {
        let raw = s.raw();
        async move {
            let body =
                serde_json::json!({"username": "fay", "password": "another passphrase", "email": "x@example.net"});
            raw.raw("POST", "/v1/sign-up", None, Some(body.to_string()), &[("x-forwarded-for", &ip)]).await
        }
    };
    // Strangers from fresh addresses send look-alike sign-ups for fay: nothing is sent…
    for i in 1..=5 {
        assert_eq!(sign_up(format!("203.0.113.{i}")).await.status, 200);
    }
    // …they are limited like real sign-ups (on a bucket of their own)…
    let r = sign_up("203.0.113.6".into()).await;
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(r.status, 429);
    assert!((1..=900).contains(&wait), "until the 15-minute window ends: {wait}");
    assert_eq!(s.messages_to("x@example.net").await, 0);
    // …and fay still gets her codes.
    let r = s
        .raw()
        .raw(
            "POST",
            "/v1/recovery",
            None,
            Some(serde_json::json!({"username": "fay"}).to_string()),
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.messages_to("fay@example.com").await, 2, "the sign-up code and the recovery code");
}

async fn sms_pumping_one_client_cannot_spend_the_daily_budget_and_only_allowed_prefixes_get_texts(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.trust_forwarded_for = true;
        c.policy.sign_up.require_email = false;
        c.policy.limits.sms_daily_per_ip = 3;
        c.policy.limits.sms_daily_budget = 5;
        c.policy.limits.sms_allowed_prefixes = vec!["+1".into()];
    })
    .await;
    let sign_up = |n: u32, ip: &'static str, phone: String| {
        let raw = s.raw();
        async move {
            let body = serde_json::json!({"username": format!("pump{n}"), "phone": phone});
            raw.raw("POST", "/v1/sign-up", None, Some(body.to_string()), &[("x-forwarded-for", ip)]).await.status
        }
    };
    // One client, rotating numbers: its daily share, then 429 with nothing sent.
    for n in 0..3 {
        assert_eq!(sign_up(n, "203.0.113.10", format!("+1415555060{n}")).await, 200);
    }
    assert_eq!(sign_up(3, "203.0.113.10", "+14155550603".into()).await, 429);
    assert_eq!(s.messages_to("+14155550603").await, 0);
    // Other clients still get texts, until the server's budget is spent.
    assert_eq!(sign_up(4, "203.0.113.11", "+14155550604".into()).await, 200);
    assert_eq!(sign_up(5, "203.0.113.12", "+14155550605".into()).await, 200);
    assert_eq!(sign_up(6, "203.0.113.13", "+14155550606".into()).await, 429, "the daily budget");
    // A number outside the allowed prefixes is refused before anything is counted or sent.
    let body = serde_json::json!({"username": "abroad", "phone": "+447700900123"});
    let r = s.raw().request("POST", "/v1/sign-up", None, Some(body)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
}

async fn a_lost_phone_is_recovered_with_the_mailbox_and_the_number_on_a_new_phone(b: Backend) {
    let s = TestServer::start(b).await;
    let phone = "+14155550405";
    let (old_id, old_ks, old_session) = s.passwordless_account("eli", phone, Some("eli@example.com"), PIN).await;
    let new = Client::with_user_agent(&s.url, "New phone").unwrap();
    let a = new.recover("eli", None).await.unwrap();
    assert_eq!(
        a.next_step,
        NextStep::EmailCode { destination: String::new(), attempts_left: 5, other_methods: vec![] },
        "the email first; where the code went is not shown"
    );
    let r = new.email_code(&a.flow_id, &s.code_for("eli@example.com").await).await.unwrap();
    assert_eq!(methods(&r), vec![MfaMethod::PushApproval, MfaMethod::Sms, MfaMethod::RecoveryWait]);
    let r = new.select_mfa(&a.flow_id, MfaMethod::Sms).await.unwrap();
    // A right answer costs no attempt.
    assert!(matches!(r.next_step, NextStep::SmsCode { attempts_left: 5, .. }), "{:?}", r.next_step);
    let e = new.sms_code(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    assert!(matches!(e.next_step, NextStep::EnrollDevice { .. }) && e.tokens.is_none(), "{:?}", e.next_step);
    let ks = SoftwareKeystore::new();
    let (new_id, done) = new.enroll_device_step(&e, &ks, "New phone", "android", "902817").await.unwrap();
    let t = done.tokens.expect("the new phone is signed in");
    let me = new.with_device_key(Arc::new(ks.clone()), &new_id).unwrap().me(&t.access_token).await.unwrap();
    assert_eq!(me.amr, vec!["email".to_string(), "sms".into(), "hwk".into()]);
    // Older sessions ended; the old device stays listed (two proofs: the owner can remove it).
    let old = on_device(&s, &old_ks, &old_id);
    assert_eq!(old.me(&old_session.access_token).await.unwrap_err().status(), Some(401));
    let listed = new.with_device_key(Arc::new(ks), &new_id).unwrap().devices(&t.access_token).await.unwrap().devices;
    assert_eq!(listed.len(), 2);
    assert!(old.device_sign_in(&old_id, &old_ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_some());
    assert!(s.outbox().await.iter().any(|m| m.to == "eli@example.com" && m.subject.contains("was recovered")));
    assert!(s.outbox().await.iter().any(|m| m.to == phone && m.subject.contains("was recovered")));
}

async fn life_3_life_4_two_proofs_reset_a_password_at_once_and_the_next_sign_in_still_asks_the_factor(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("gil", PW).await;
    let c = s.client();
    let t = s.sign_in("gil", PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    s.clock.advance(Duration::seconds(30));
    let f = c.sign_in("gil", PW).await.unwrap();
    let aal2 = c.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let codes_ = c.regenerate_recovery_codes(&aal2.access_token).await.unwrap().codes;
    // Forgot-password: the code and the new password; the password waits for the second proof.
    let f = c.forgot_password("gil").await.unwrap();
    let r = c.reset_password(&f.flow_id, &s.code_for("gil@example.com").await, "gil's new passphrase").await.unwrap();
    assert_eq!(methods(&r), vec![MfaMethod::Totp, MfaMethod::RecoveryCode, MfaMethod::RecoveryWait]);
    assert_eq!(c.sign_in("gil", "gil's new passphrase").await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    c.select_mfa(&f.flow_id, MfaMethod::RecoveryCode).await.unwrap();
    let done = c.recovery_code(&f.flow_id, &codes_[0]).await.unwrap();
    assert_eq!((done.next_step, done.tokens.is_none()), (NextStep::Done, true), "no session (LIFE-3)");
    assert_eq!(c.me(&aal2.access_token).await.unwrap_err().status(), Some(401), "older sessions end");
    let next = c.sign_in("gil", "gil's new passphrase").await.unwrap();
    assert!(matches!(next.next_step, NextStep::SelectMfa { .. } | NextStep::TotpCode { .. }), "{:?}", next.next_step);
    assert!(next.tokens.is_none(), "the second factor is still asked");
    // The same through /v1/recovery: the code, a second proof, then `new_password`.
    let r = c.recover("gil", None).await.unwrap();
    let r = c.email_code(&r.flow_id, &s.code_for("gil@example.com").await).await.unwrap();
    c.select_mfa(&r.flow_id, MfaMethod::RecoveryCode).await.unwrap();
    let p = c.recovery_code(&r.flow_id, &codes_[1]).await.unwrap();
    assert!(matches!(p.next_step, NextStep::NewPassword { .. }), "{:?}", p.next_step);
    let weak = c.new_password(&r.flow_id, "12345678").await.unwrap();
    assert_eq!(weak.error.unwrap().code, codes::INVALID_PASSWORD);
    let done = c.new_password(&r.flow_id, "gil's third passphrase").await.unwrap();
    assert_eq!((done.next_step, done.tokens.is_none()), (NextStep::Done, true));
    assert!(s.outbox().await.iter().any(|m| m.to == "gil@example.com" && m.subject.contains("was recovered")));
}

async fn the_wait_completes_after_the_delay_and_removes_the_older_devices(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.sign_up.require_email = false;
        c.policy.recovery.delay_secs = 3600;
    })
    .await;
    let phone = "+14155550407";
    let (old_id, old_ks, old_session) = s.passwordless_account("hana", phone, None, PIN).await;
    let new = Client::with_user_agent(&s.url, "Hana's new phone").unwrap();
    let a = new.recover("hana", None).await.unwrap();
    let w = new.sms_code(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    let NextStep::RecoveryWait { ready_at } = &w.next_step else { panic!("{:?}", w.next_step) };
    let ready = time::OffsetDateTime::parse(ready_at, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(ready.unix_timestamp(), s.clock_unix() + 3600);
    // Before `ready_at` the same step comes back; nothing changed meanwhile.
    s.clock.advance(Duration::seconds(3500));
    assert!(is_wait(&new.recovery_wait(&a.flow_id).await.unwrap()));
    let old = on_device(&s, &old_ks, &old_id);
    assert!(old.device_sign_in(&old_id, &old_ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_some());
    s.clock.advance(Duration::seconds(101));
    let e = new.recovery_wait(&a.flow_id).await.unwrap();
    let ks = SoftwareKeystore::new();
    let (new_id, done) = new.enroll_device_step(&e, &ks, "New phone", "android", "902817").await.unwrap();
    let t = done.tokens.expect("signed in on the new phone");
    // The owner did not stop it: every older device and session is gone.
    let r = old.device_sign_in(&old_id, &old_ks, Unlock::Pin(PIN)).await.unwrap();
    assert!(r.tokens.is_none(), "the old device's keys no longer work");
    assert_eq!(old.refresh(&old_session.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    let listed = new.with_device_key(Arc::new(ks), &new_id).unwrap().devices(&t.access_token).await.unwrap().devices;
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![new_id.as_str()]);
}

async fn life_4_the_owner_vetoes_from_a_device_or_a_session_on_another_replica(b: Backend) {
    let s = TestServer::start(b).await;
    let other = s.replica().await;
    let phone = "+14155550408";
    let (id, ks, _) = s.passwordless_account("ivo", phone, Some("ivo@example.com"), PIN).await;
    // The thief talks to one replica, the owner's phone to the other (DPoP proofs name the
    // public URL, which is the first server's).
    let thief = Client::with_user_agent(&other.url, "Thief").unwrap();
    let start_waiting = async |thief: &Client| {
        let a = thief.recover("ivo", Some(Channel::Sms)).await.unwrap();
        thief.sms_code(&a.flow_id, &s.code_for(phone).await).await.unwrap();
        assert!(is_wait(&thief.select_mfa(&a.flow_id, MfaMethod::RecoveryWait).await.unwrap()));
        a.flow_id
    };
    // From the enrolled phone.
    let flow = start_waiting(&thief).await;
    let phone_app = on_device(&s, &ks, &id);
    assert_eq!(phone_app.cancel_recoveries_from_device().await.unwrap().cancelled, 1);
    s.clock.advance(Duration::seconds(61));
    assert!(cancelled(&thief.recovery_wait(&flow).await.unwrap()));
    // From a signed-in session, likewise.
    let flow = start_waiting(&thief).await;
    let session = phone_app.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    assert_eq!(phone_app.cancel_my_recoveries(&session.access_token).await.unwrap().cancelled, 1);
    assert_eq!(phone_app.cancel_my_recoveries(&session.access_token).await.unwrap().cancelled, 0, "nothing left");
    s.clock.advance(Duration::seconds(61));
    assert!(cancelled(&thief.recovery_wait(&flow).await.unwrap()));
    let events = s.auth.store().audit_events(None, 200).await.unwrap();
    let vias: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "recovery" && e.outcome == "cancelled")
        .map(|e| e.detail["via"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(vias, vec!["session".to_string(), "device".into()], "recorded as security events");
    other.stop().await;
}

async fn rl_5_a_recovery_looks_the_same_for_unknown_users_and_accounts_that_cannot_receive_it(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    s.create_user("real", PW).await;
    s.passwordless_account("phoneonly", "+14155550409", None, PIN).await;
    let sent = s.outbox().await.len();
    let shape = |r: &latchkey_testkit::RawResponse| {
        let j = r.json();
        let mut keys: Vec<_> = j.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut headers: Vec<_> = r.headers.iter().map(|(k, _)| k.clone()).filter(|k| k != "content-length").collect();
        headers.sort();
        (r.status, j["next_step"].clone(), keys, headers)
    };
    let mut shapes = vec![];
    let mut flows = vec![];
    for name in ["real", "nobody-at-all", "phoneonly"] {
        let body = serde_json::json!({"username": name, "channel": "email"});
        let r = s.raw().request("POST", "/v1/recovery", None, Some(body)).await;
        flows.push(r.json()["flow_id"].as_str().unwrap().to_owned());
        shapes.push(shape(&r));
    }
    assert_eq!(shapes[0], shapes[1], "an unknown username");
    assert_eq!(shapes[0], shapes[2], "an account without an email");
    assert_eq!(s.outbox().await.len(), sent + 1, "only the real account got a code");
    // A wrong code answers alike too.
    let c = s.client();
    let wrong: Vec<_> = {
        let mut v = vec![];
        for f in &flows {
            let r = c.email_code(f, "000001").await.unwrap();
            v.push((r.next_step, r.error.map(|e| e.code)));
        }
        v
    };
    assert!(wrong.iter().all(|w| *w == wrong[0]), "{wrong:?}");
    // Without a channel, an unknown name answers the same way each time it is asked.
    let first = c.recover("someone-else", None).await.unwrap().next_step;
    assert_eq!(c.recover("someone-else", None).await.unwrap().next_step, first);
    let r =
        s.raw().request("POST", "/v1/forgot-password", None, Some(serde_json::json!({"username": "phoneonly"}))).await;
    let u =
        s.raw().request("POST", "/v1/forgot-password", None, Some(serde_json::json!({"username": "unknown-1"}))).await;
    assert_eq!(shape(&r), shape(&u), "forgot-password");
}

async fn life_4_recovery_requests_refuse_multi_valued_parameters(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("jo", PW).await;
    let sent = s.outbox().await.len();
    for (path, body) in [
        ("/v1/recovery", r#"{"username":["jo","attacker"]}"#),
        ("/v1/recovery", r#"{"username":"jo","username":"attacker"}"#),
        ("/v1/forgot-password", r#"{"username":["jo","attacker"]}"#),
        ("/v1/recovery/cancel", r#"{"token":["a","b"]}"#),
    ] {
        let r = s.raw().raw("POST", path, None, Some(body.into()), &[]).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (400, Some(codes::INVALID_REQUEST)),
            "{path} {body}"
        );
    }
    assert_eq!(s.outbox().await.len(), sent, "nothing was sent");
}

async fn a_read_that_loses_the_race_to_settle_a_push_answers_the_flow_as_it_stands(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("kai", PW).await;
    let c = s.client();
    let t = s.sign_in("kai", PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!() };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    s.clock.advance(Duration::seconds(30));
    let f = c.sign_in("kai", PW).await.unwrap();
    let aal2 = c.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let ks = SoftwareKeystore::new();
    let (id, _) = c.enroll_device(&aal2.access_token, &ks, "Phone", "android", PIN).await.unwrap();
    let phone = on_device(&s, &ks, &id);
    for approve in [true, false] {
        let f = c.sign_in("kai", PW).await.unwrap();
        let p = c.select_mfa(&f.flow_id, MfaMethod::PushApproval).await.unwrap();
        let NextStep::PushApproval { number, .. } = p.next_step else { panic!("{:?}", p.next_step) };
        let req = phone.device_approvals().await.unwrap().approvals.remove(0);
        let decision = if approve {
            latchkey_testkit::proto::ApprovalDecision::Approve
        } else {
            latchkey_testkit::proto::ApprovalDecision::Deny
        };
        phone.answer_approval(&req, decision, Some(&number)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = vec![];
        for _ in 0..8 {
            let (c, barrier, flow) = (s.client(), barrier.clone(), f.flow_id.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                c.wait_flow(&flow, 5).await
            }));
        }
        let mut with_tokens = 0;
        for t in tasks {
            let a = t.await.unwrap().expect("a read never fails because another read won");
            with_tokens += usize::from(a.tokens.is_some());
            if approve {
                assert_eq!(a.next_step, NextStep::Done);
            } else {
                assert!(matches!(a.next_step, NextStep::Denied { .. }), "{:?}", a.next_step);
            }
        }
        assert_eq!(with_tokens, usize::from(approve), "the tokens go to one reader");
    }
}

async fn a_passwordless_sign_up_verifies_the_email_which_is_then_a_second_proof(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "lu".into(),
            password: None,
            email: Some("lu@example.com".into()),
            phone: Some("+14155550411".into()),
            locale: None,
        })
        .await
        .unwrap();
    let v = c.confirm_sign_up(&a.flow_id, &s.code_for("+14155550411").await).await.unwrap();
    assert!(
        matches!(&v.next_step, NextStep::VerifyCode { channel: Channel::Email, attempts_left: 5, .. }),
        "{:?}",
        v.next_step
    );
    // A wrong email code is an ordinary wrong answer; the right one leads to the first device.
    let wrong = c.verify_code(&a.flow_id, "000001").await.unwrap();
    assert_eq!(wrong.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_string()));
    let e = c.verify_code(&a.flow_id, &s.code_for("lu@example.com").await).await.unwrap();
    let (id, done) = c.enroll_device_step(&e, &SoftwareKeystore::new(), "Lu's phone", "ios", PIN).await.unwrap();
    assert!(done.tokens.is_some() && !id.is_empty());
    // A SIM swap: the mailbox is the second proof the thief lacks.
    let thief = Client::with_user_agent(&s.url, "Thief").unwrap();
    let r = thief.recover("lu", Some(Channel::Sms)).await.unwrap();
    let r = thief.sms_code(&r.flow_id, &s.code_for("+14155550411").await).await.unwrap();
    assert_eq!(methods(&r), vec![MfaMethod::Email, MfaMethod::RecoveryWait]);
}

async fn this_wasnt_me_after_a_recovery_holds_the_account_until_it_is_recovered_again(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("max", PW).await;
    let owner = s.sign_in("max", PW).await;
    // Someone with max's mailbox waits out the delay (max ignored the first notice) and sets a
    // password; the notice of it carries "this wasn't me".
    s.reset_password_by_waiting("max", "max@example.com", "the thief's passphrase").await;
    let thief = s.sign_in("max", "the thief's passphrase").await;
    let token = link_token(&s, "max@example.com", "was recovered").await;
    // A tampered token is refused and changes nothing.
    let forged = token.replacen(".lock.", ".device.", 1);
    let r = s.raw().request("POST", "/v1/recovery/cancel", None, Some(serde_json::json!({"token": forged}))).await;
    assert_eq!(r.status, 404);
    let r = s.raw().request("POST", "/v1/recovery/cancel", None, Some(serde_json::json!({"token": token}))).await;
    assert_eq!((r.status, r.json()["outcome"].as_str()), (200, Some("account_locked")), "{}", r.body);
    // Every session ends and nobody signs in, the thief's password included.
    let c = s.client();
    assert_eq!(c.me(&thief.access_token).await.unwrap_err().status(), Some(401));
    assert_eq!(c.refresh(&owner.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    assert_eq!(c.sign_in("max", "the thief's passphrase").await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    let again = s.raw().request("POST", "/v1/recovery/cancel", None, Some(serde_json::json!({"token": token}))).await;
    assert_eq!(again.status, 404, "the token worked once");
    assert!(s.outbox().await.iter().any(|m| m.to == "max@example.com" && m.subject.contains("on hold")));
    // A recovery releases the account.
    let done = s.reset_password_by_waiting("max", "max@example.com", "max's own passphrase").await;
    assert_eq!(done.next_step, NextStep::Done);
    assert!(c.sign_in("max", "max's own passphrase").await.unwrap().tokens.is_some());
}

async fn this_wasnt_me_on_a_new_device_notice_removes_the_device(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, _) = s.passwordless_account("nia", "+14155550412", Some("nia@example.com"), PIN).await;
    let d = on_device(&s, &ks, &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let other = SoftwareKeystore::new();
    let (new_id, _) = d.enroll_device(&t.access_token, &other, "Unknown tablet", "android", "902817").await.unwrap();
    let token = link_token(&s, "nia@example.com", "new device was added").await;
    let page = s.raw().request("GET", &format!("/v1/recovery/cancel?token={token}"), None, None).await;
    assert!(page.body.contains("This wasn't me"), "{}", page.body);
    assert!(
        on_device(&s, &other, &new_id)
            .device_sign_in(&new_id, &other, Unlock::Pin("902817"))
            .await
            .unwrap()
            .tokens
            .is_some()
    );
    let done = s
        .raw()
        .raw(
            "POST",
            "/v1/recovery/cancel",
            None,
            Some(format!("token={token}")),
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert!(done.body.contains("The device was removed"), "{}", done.body);
    let r = on_device(&s, &other, &new_id).device_sign_in(&new_id, &other, Unlock::Pin("902817")).await.unwrap();
    assert!(r.tokens.is_none(), "its keys stopped working");
    assert!(d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_some(), "the other device is fine");
}

async fn rl_7_a_locked_second_factor_answers_a_right_code_in_a_recovery_like_a_wrong_one(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.limits.code.free_attempts = 3;
        c.policy.limits.code.hard_cap = 3;
    })
    .await;
    s.create_user("ola", PW).await;
    let c = s.client();
    let t = s.sign_in("ola", PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    // Three wrong app codes at sign-in lock the account's second-factor counter…
    let f = c.sign_in("ola", PW).await.unwrap();
    for _ in 0..3 {
        c.totp_code(&f.flow_id, "000001").await.unwrap();
    }
    // …and a recovery buys no more guesses: past the email code, a right app code is refused
    // exactly like a wrong one.
    s.clock.advance(Duration::seconds(30));
    let mut answers = vec![];
    for code in [totp_code(&secret, &s.clock, 0), "000002".to_string()] {
        let r = c.recover("ola", None).await.unwrap();
        let m = c.email_code(&r.flow_id, &s.code_for("ola@example.com").await).await.unwrap();
        assert_eq!(methods(&m), vec![MfaMethod::Totp, MfaMethod::RecoveryWait]);
        c.select_mfa(&r.flow_id, MfaMethod::Totp).await.unwrap();
        let a = c.totp_code(&r.flow_id, &code).await.unwrap();
        answers.push((a.next_step, a.error, a.tokens.is_none()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].1.as_ref().map(|e| e.code.as_str()), Some(codes::LIMIT_EXCEEDED));
}

async fn oob_6_a_recovery_texts_only_a_number_verified_earlier(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    // Signed up with an email and a phone: the email was confirmed, the phone never was.
    let a = c
        .sign_up(&SignUpRequest {
            username: "pia".into(),
            password: Some(PW.into()),
            email: Some("pia@example.com".into()),
            phone: Some("+14155550413".into()),
            locale: None,
        })
        .await
        .unwrap();
    c.confirm_sign_up(&a.flow_id, &s.code_for("pia@example.com").await).await.unwrap();
    let r = c.recover("pia", Some(Channel::Sms)).await.unwrap();
    assert!(matches!(r.next_step, NextStep::SmsCode { .. }), "it looks the same: {:?}", r.next_step);
    assert_eq!(s.messages_to("+14155550413").await, 0, "no text to a number nobody verified");
    let r = c.recover("pia", None).await.unwrap();
    let m = c.email_code(&r.flow_id, &s.code_for("pia@example.com").await).await.unwrap();
    assert!(is_wait(&m), "nor is it a second proof: {:?}", m.next_step);
}

both_stores!(
    rl_7_a_locked_second_factor_answers_a_right_code_in_a_recovery_like_a_wrong_one,
    oob_6_a_recovery_texts_only_a_number_verified_earlier,
    this_wasnt_me_after_a_recovery_holds_the_account_until_it_is_recovered_again,
    this_wasnt_me_on_a_new_device_notice_removes_the_device,
    attack_1_the_sim_alone_never_resets_a_passwordless_account,
    attack_2_a_sim_swappers_recovery_ends_no_session_every_channel_hears_and_one_tap_cancels,
    attack_3_a_new_number_is_no_sms_factor_new_device_step_or_recovery_channel_until_the_cooldown,
    attack_5_look_alike_sign_ups_never_spend_the_owners_send_budget,
    sms_pumping_one_client_cannot_spend_the_daily_budget_and_only_allowed_prefixes_get_texts,
    a_lost_phone_is_recovered_with_the_mailbox_and_the_number_on_a_new_phone,
    life_3_life_4_two_proofs_reset_a_password_at_once_and_the_next_sign_in_still_asks_the_factor,
    the_wait_completes_after_the_delay_and_removes_the_older_devices,
    life_4_the_owner_vetoes_from_a_device_or_a_session_on_another_replica,
    rl_5_a_recovery_looks_the_same_for_unknown_users_and_accounts_that_cannot_receive_it,
    life_4_recovery_requests_refuse_multi_valued_parameters,
    a_read_that_loses_the_race_to_settle_a_push_answers_the_flow_as_it_stands,
    a_passwordless_sign_up_verifies_the_email_which_is_then_a_second_proof,
);
