//! Device keys: enrolment from an `aal2` session, sign-in by biometric key or by possession key
//! and server-checked PIN, the PIN block, revocation, and the attacks of the device issue
//! (DEV-1…4, SES-10, FLOW-4), through the SDK and its software key store.

use latchkey_client::{Keystore, KeystoreError, SoftwareKeystore, Unlock, key_alias};
use latchkey_testkit::proto::{
    Channel, DeviceKey, MfaMethod, NextStep, SignUpRequest, StepAnswer, Tokens, codes, device_message,
};
use latchkey_testkit::{Backend, TestServer, totp_code};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";
const PIN: &str = "371946";

/// A user with an authenticator app, signed in at `aal2` just now.
async fn aal2_user(s: &TestServer, name: &str) -> Tokens {
    aal2_user_and_secret(s, name).await.0
}

/// The same, with the app's secret for later sign-ins.
async fn aal2_user_and_secret(s: &TestServer, name: &str) -> (Tokens, String) {
    s.create_user(name, PW).await;
    let c = s.client();
    let t = s.sign_in(name, PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    let t = aal2_session(s, name, &secret).await;
    (t, secret)
}

/// Password and TOTP: a fresh `aal2` session (the clock moves a step on, so the code is new).
async fn aal2_session(s: &TestServer, name: &str, secret: &str) -> Tokens {
    s.clock.advance(Duration::seconds(30));
    let c = s.client();
    let f = c.sign_in(name, PW).await.unwrap();
    c.totp_code(&f.flow_id, &totp_code(secret, &s.clock, 0)).await.unwrap().tokens.unwrap()
}

/// A user with an enrolled software device; returns its id, key store and TOTP secret.
async fn with_device(s: &TestServer, name: &str) -> (String, SoftwareKeystore, String) {
    let (t, secret) = aal2_user_and_secret(s, name).await;
    let ks = SoftwareKeystore::new();
    let (id, done) = s.client().enroll_device(&t.access_token, &ks, "Test phone", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    (id, ks, secret)
}

fn refusal(a: &latchkey_testkit::proto::FlowAnswer) -> String {
    match (&a.error, &a.next_step) {
        (_, NextStep::Denied { .. }) => "denied".into(),
        (Some(e), _) => e.code.clone(),
        (None, other) => format!("no refusal: {other:?}"),
    }
}

async fn the_passwordless_journey_enrol_biometric_pin_invalidation_and_revocation(b: Backend) {
    let s = TestServer::start(b).await;
    let t = aal2_user(&s, "ada").await;
    let c = s.client();
    let ks = SoftwareKeystore::new();
    let (id, done) = c.enroll_device(&t.access_token, &ks, "Ada's Pixel", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let listed = c.devices(&t.access_token).await.unwrap().devices;
    assert_eq!(
        listed.iter().map(|d| (d.id.as_str(), d.name.as_str(), d.platform.as_str(), d.pin_blocked)).collect::<Vec<_>>(),
        vec![(id.as_str(), "Ada's Pixel", "android", false)]
    );
    assert!(
        s.outbox().await.iter().any(|m| m.to == "ada@example.com" && m.body.contains("\"Ada's Pixel\" (android)")),
        "every enrolment is announced"
    );
    // Biometric key: possession only until attestation evidences user verification (DEV-4).
    let bio = c.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap().tokens.unwrap();
    let me = c.me(&bio.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal1", vec!["hwk".to_string()]));
    // Possession key + the server-checked PIN: two factors.
    let pin = c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let me = c.me(&pin.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["hwk".to_string(), "pin".into(), "mfa".into()]));
    // New fingerprint enrolled: the OS invalidates the biometric key; the SDK says so before
    // sending anything, and the PIN still works.
    ks.invalidate(&key_alias(&id, DeviceKey::Biometric));
    let e = c.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Keystore(KeystoreError::Invalidated(_))), "{e}");
    assert!(c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_some());
    // SES-10: revoking the device ends its sessions and its keys at once (DEV-2: same second).
    c.revoke_device(&t.access_token, &id).await.unwrap();
    let e = c.me(&pin.access_token).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "a session signed in with the device");
    assert!(c.refresh(&bio.refresh_token).await.is_err(), "and its refresh tokens");
    let r = c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap();
    assert_eq!((refusal(&r), r.tokens.is_none()), (codes::CODE_MISMATCH.to_string(), true));
    assert!(c.devices(&t.access_token).await.unwrap().devices.is_empty());
    assert!(s.outbox().await.iter().any(|m| m.to == "ada@example.com" && m.subject.contains("device was removed")));
    assert_eq!(c.me(&t.access_token).await.unwrap().username, "ada", "other sessions live on");
}

async fn dev_1_enrolment_needs_a_recent_aal2_session_and_proofs_of_both_keys(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("bob", PW).await;
    let c = s.client();
    let aal1 = s.sign_in("bob", PW).await;
    let ks = SoftwareKeystore::new();
    let e = c.enroll_device(&aal1.access_token, &ks, "Phone", "ios", PIN).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    let t = aal2_user(&s, "bea").await;
    // Raw: a proof signed by a key other than the one registered is refused.
    let start = s.raw().request("POST", "/v1/me/devices", Some(&t.access_token), None).await.json();
    let (flow, device_id, nonce) = (
        start["flow_id"].as_str().unwrap().to_owned(),
        start["next_step"]["device_id"].as_str().unwrap().to_owned(),
        start["next_step"]["nonce"].as_str().unwrap().to_owned(),
    );
    let b64 = |v: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let p = ks.create_key("p", false).unwrap();
    let bio = ks.create_key("b", true).unwrap();
    ks.create_key("x", true).unwrap();
    let msg = |k| device_message("enroll", &flow, &nonce, k, &device_id);
    let answer = |bio_signer: &str| StepAnswer::EnrollDevice {
        name: "Phone".into(),
        platform: "ios".into(),
        possession_key: b64(&p),
        biometric_key: b64(&bio),
        possession_signature: b64(&ks.sign("p", msg(DeviceKey::Possession).as_bytes()).unwrap()),
        biometric_signature: b64(&ks.sign(bio_signer, msg(DeviceKey::Biometric).as_bytes()).unwrap()),
        pin: PIN.into(),
    };
    let r = c.answer(&flow, &answer("x")).await.unwrap();
    assert_eq!(refusal(&r), codes::CODE_MISMATCH, "the biometric proof is by another key");
    let r = c.answer(&flow, &answer("b")).await.unwrap();
    assert_eq!(r.next_step, NextStep::Done);
    // Only public keys are stored: the private key never left the key store.
    let dump = s.db.dump_text().await.unwrap();
    for (alias, pkcs8) in ks.export() {
        assert!(!dump.contains(&b64(&pkcs8)), "{alias}");
    }
    assert!(dump.contains(&b64(&p)), "the public key is there");
}

async fn dev_3_easy_pins_are_refused_and_the_enrolment_can_be_retried(b: Backend) {
    let s = TestServer::start(b).await;
    let t = aal2_user(&s, "cyd").await;
    let c = s.client();
    let ks = SoftwareKeystore::new();
    let (id, a) = c.enroll_device(&t.access_token, &ks, "Phone", "ios", "123456").await.unwrap();
    assert_eq!(a.error.unwrap().code, codes::INVALID_PIN);
    assert!(ks.export().is_empty(), "the SDK deleted the keys of the failed enrolment");
    assert!(c.devices(&t.access_token).await.unwrap().devices.is_empty());
    let r = c.device_sign_in(&id, &ks, Unlock::Pin("123456")).await.unwrap_err();
    assert!(matches!(r, latchkey_client::ClientError::Keystore(KeystoreError::NotFound(_))));
    let (_, a) = c.enroll_device(&t.access_token, &ks, "Phone", "ios", "48201957").await.unwrap();
    assert_eq!(a.next_step, NextStep::Done);
}

async fn dev_3_a_stolen_phone_without_the_app_pin_is_blocked_after_five_tries_with_no_oracle(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, secret) = with_device(&s, "dan").await;
    let c = s.client();
    // The thief has the phone (and its unlock PIN, so the possession key signs), not the app PIN.
    for guess in ["111222", "222333", "333444", "444555", "555666"] {
        let r = c.device_sign_in(&id, &ks, Unlock::Pin(guess)).await.unwrap();
        assert_eq!((refusal(&r), r.tokens.is_none()), (codes::CODE_MISMATCH.to_string(), true), "{guess}");
    }
    let t = aal2_session(&s, "dan", &secret).await;
    assert!(c.devices(&t.access_token).await.unwrap().devices[0].pin_blocked);
    // Blocked: the right PIN gets exactly the answer of a wrong one.
    let right = c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap();
    let wrong = c.device_sign_in(&id, &ks, Unlock::Pin("909182")).await.unwrap();
    let shape = |a: &latchkey_testkit::proto::FlowAnswer| match &a.next_step {
        NextStep::DeviceSignature { attempts_left, .. } => (a.error.clone(), *attempts_left),
        other => panic!("{other:?}"),
    };
    assert_eq!(shape(&right), shape(&wrong), "each in its own sign-in: only the nonce differs");
    assert!(right.tokens.is_none());
    // However long one waits.
    s.clock.advance(Duration::days(7));
    assert!(c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_none());
}

async fn dev_2_and_flow_4_signatures_bind_to_their_flow_nonce_device_and_user(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, _) = with_device(&s, "eve").await;
    let (other_id, other_ks, _) = with_device(&s, "fox").await;
    let c = s.client();
    let sign_in = |device: &str| {
        let req = serde_json::json!({"device_id": device});
        let raw = s.raw();
        async move { raw.request("POST", "/v1/sign-in", None, Some(req)).await.json() }
    };
    let a = sign_in(&id).await;
    let b2 = sign_in(&id).await;
    let (fa, na) = (a["flow_id"].as_str().unwrap().to_owned(), a["next_step"]["nonce"].as_str().unwrap().to_owned());
    let (fb, nb) = (b2["flow_id"].as_str().unwrap().to_owned(), b2["next_step"]["nonce"].as_str().unwrap().to_owned());
    assert!(na.len() >= 22, "at least 128 bits: {na}");
    assert_ne!(na, nb);
    let sig = |ks: &SoftwareKeystore, dev: &str, flow: &str, nonce: &str| {
        use base64::Engine;
        let m = device_message("sign_in", flow, nonce, DeviceKey::Biometric, dev);
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ks.sign(&key_alias(dev, DeviceKey::Biometric), m.as_bytes()).unwrap())
    };
    let answer = |signature: String| StepAnswer::DeviceSignature { key: DeviceKey::Biometric, signature, pin: None };
    // A signature over flow A's nonce, sent to flow B.
    let r = c.answer(&fb, &answer(sig(&ks, &id, &fa, &na))).await.unwrap();
    assert_eq!(refusal(&r), codes::CODE_MISMATCH, "another flow's nonce");
    // Another user's device key signing for this device.
    let r = c.answer(&fb, &answer(sig(&other_ks, &other_id, &fb, &nb))).await.unwrap();
    assert_eq!(refusal(&r), codes::CODE_MISMATCH, "another user's key");
    // The right one, once; then the nonce is spent.
    let good = sig(&ks, &id, &fa, &na);
    assert!(c.answer(&fa, &answer(good.clone())).await.unwrap().tokens.is_some());
    let e = c.answer(&fa, &answer(good)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED), "a replayed nonce");
    // An unknown device id looks like a known one and never verifies.
    let unknown = sign_in("01900000-0000-7000-8000-000000000000").await;
    assert_eq!(unknown["next_step"]["type"], "device_signature");
    assert_eq!(
        unknown.as_object().unwrap().keys().collect::<Vec<_>>(),
        a.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // The nonce expires after two minutes.
    let late = sign_in(&id).await;
    s.clock.advance(Duration::seconds(121));
    let (fl, nl) = (late["flow_id"].as_str().unwrap(), late["next_step"]["nonce"].as_str().unwrap());
    let e = c.answer(fl, &answer(sig(&ks, &id, fl, nl))).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_EXPIRED));
}

async fn twenty_parallel_answers_to_one_nonce_yield_one_session(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, _) = with_device(&s, "gil").await;
    let a = s.raw().request("POST", "/v1/sign-in", None, Some(serde_json::json!({"device_id": id}))).await.json();
    let (flow, nonce) =
        (a["flow_id"].as_str().unwrap().to_owned(), a["next_step"]["nonce"].as_str().unwrap().to_owned());
    let ks = Arc::new(ks);
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (c, barrier, flow, nonce, id, ks) =
            (s.client(), barrier.clone(), flow.clone(), nonce.clone(), id.clone(), ks.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.device_signature(&flow, &nonce, &id, ks.as_ref(), Unlock::Pin(PIN))
                .await
                .ok()
                .and_then(|a| a.tokens)
                .is_some()
        }));
    }
    let mut sessions = 0;
    for t in tasks {
        sessions += usize::from(t.await.unwrap());
    }
    assert_eq!(sessions, 1);
}

/// A passwordless account (username, phone, email) with its first device; returns the device's
/// id, key store and the sign-up's tokens.
async fn passwordless(s: &TestServer, name: &str, phone: &str) -> (String, SoftwareKeystore, Tokens) {
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: name.into(),
            password: None,
            email: Some(format!("{name}@example.com")),
            phone: Some(phone.into()),
        })
        .await
        .unwrap();
    assert!(
        matches!(&a.next_step, NextStep::ConfirmSignUp { channel: Channel::Sms, .. }),
        "the phone is what a passwordless sign-up confirms: {:?}",
        a.next_step
    );
    let e = c.confirm_sign_up(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    assert!(matches!(e.next_step, NextStep::EnrollDevice { .. }), "{:?}", e.next_step);
    assert!(e.tokens.is_none());
    let ks = SoftwareKeystore::new();
    let (id, done) = c.enroll_device_step(&e, &ks, "First phone", "ios", PIN).await.unwrap();
    let t = done.tokens.expect("the first device completes the sign-up");
    (id, ks, t)
}

async fn a_passwordless_sign_up_confirms_the_phone_and_enrols_the_first_device(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, t) = passwordless(&s, "pia", "+14155550301").await;
    let c = s.client();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!(
        (me.acr.as_str(), me.amr.clone(), me.phone_verified),
        ("aal1", vec!["sms".to_string(), "hwk".into()], true)
    );
    assert_eq!(c.devices(&t.access_token).await.unwrap().devices[0].id, id);
    let pin = c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    assert_eq!(c.me(&pin.access_token).await.unwrap().acr, "aal2");
    let e = c.sign_in("pia", "any password at all").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::NOT_AUTHORIZED), "there is no password to sign in with");
    let r = s
        .raw()
        .request(
            "POST",
            "/v1/sign-up",
            None,
            Some(serde_json::json!({"username": "nophone", "email": "n@example.com"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (400, Some(codes::INVALID_REQUEST)),
        "a phone is needed"
    );
}

async fn sim_swap_a_new_device_with_only_the_sms_code_gets_no_session(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, _) = passwordless(&s, "quy", "+14155550302").await;
    let c = s.client();
    // The owner verifies the email address (a second proof for new devices).
    let t = c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let v = c.enroll_email(&t.access_token, None).await.unwrap();
    c.verify_code(&v.flow_id, &s.code_for("quy@example.com").await).await.unwrap();
    // The attacker has the SIM: a new device, the SMS code…
    let a = c.sign_in_new_device("quy").await.unwrap();
    assert!(
        matches!(&a.next_step, NextStep::SmsCode { destination, .. } if destination.is_empty()),
        "{:?}",
        a.next_step
    );
    let after_sms = c.sms_code(&a.flow_id, &s.code_for("+14155550302").await).await.unwrap();
    assert_eq!(after_sms.next_step, NextStep::SelectMfa { methods: vec![MfaMethod::Email] });
    assert!(after_sms.tokens.is_none(), "SMS alone never completes a new device");
    let attacker_ks = SoftwareKeystore::new();
    let e = c.enroll_device_step(&after_sms, &attacker_ks, "Thief", "android", PIN).await.unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Decode(_)), "no enroll_device step is offered: {e}");
    let raw = s
        .raw()
        .request(
            "POST",
            &format!("/v1/flows/{}", a.flow_id),
            None,
            Some(serde_json::json!({"step": "enroll_device",
            "name": "x", "platform": "x", "possession_key": "x", "biometric_key": "y", "possession_signature": "x",
            "biometric_signature": "x", "pin": PIN})),
        )
        .await;
    assert_eq!((raw.status, raw.json()["error"]["code"].as_str()), (409, Some(codes::STEP_MISMATCH)));
    // …the owner, with the mailbox too, completes it: the device is enrolled and signed in.
    let email = c.select_mfa(&a.flow_id, MfaMethod::Email).await.unwrap();
    assert!(matches!(email.next_step, NextStep::EmailCode { .. }), "{:?}", email.next_step);
    let e = c.email_code(&a.flow_id, &s.code_for("quy@example.com").await).await.unwrap();
    let new_ks = SoftwareKeystore::new();
    let (new_id, done) = c.enroll_device_step(&e, &new_ks, "New phone", "android", "902817").await.unwrap();
    let me = c.me(&done.tokens.unwrap().access_token).await.unwrap();
    assert_eq!(me.amr, vec!["sms".to_string(), "email".into(), "hwk".into()]);
    assert_eq!(c.devices(&t.access_token).await.unwrap().devices.len(), 2);
    assert!(c.device_sign_in(&new_id, &new_ks, Unlock::Pin("902817")).await.unwrap().tokens.is_some());
    assert!(
        s.outbox().await.iter().filter(|m| m.to == "quy@example.com" && m.subject.contains("new device")).count() >= 1,
        "the owner hears of every new device"
    );
}

async fn a_new_device_is_denied_when_the_account_has_no_second_proof(b: Backend) {
    let s = TestServer::start(b).await;
    passwordless(&s, "rex", "+14155550303").await;
    let c = s.client();
    let a = c.sign_in_new_device("rex").await.unwrap();
    let r = c.sms_code(&a.flow_id, &s.code_for("+14155550303").await).await.unwrap();
    assert!(
        matches!(r.next_step, NextStep::Denied { .. }),
        "no verified email, app or recovery codes: {:?}",
        r.next_step
    );
    assert!(r.tokens.is_none());
}

async fn rl_5_a_new_device_sign_in_looks_the_same_for_unknown_and_password_accounts(b: Backend) {
    let s = TestServer::start(b).await;
    passwordless(&s, "sal", "+14155550304").await;
    s.create_user("pwuser", PW).await;
    let c = s.client();
    let sent_before = s.outbox().await.len();
    let shapes: Vec<_> = {
        let mut v = vec![];
        for name in ["sal", "nobody-here", "pwuser"] {
            let r = s.raw().request("POST", "/v1/sign-in", None, Some(serde_json::json!({"username": name}))).await;
            let j = r.json();
            // Asking for the code again looks the same too.
            let again = c.select_mfa(j["flow_id"].as_str().unwrap(), MfaMethod::Sms).await.unwrap().next_step;
            v.push((
                r.status,
                j["next_step"].clone(),
                j.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
                format!("{again:?}"),
            ));
            if name != "sal" {
                let f = j["flow_id"].as_str().unwrap();
                for guess in ["000000", "123456"] {
                    let r = c.sms_code(f, guess).await.unwrap();
                    assert!(r.tokens.is_none() && r.error.is_some(), "{name}");
                }
            }
        }
        v
    };
    assert_eq!(shapes[0], shapes[1], "unknown username");
    assert_eq!(shapes[0], shapes[2], "an account with a password");
    assert_eq!(s.outbox().await.len(), sent_before + 2, "only the real passwordless account got codes");
}

both_stores!(
    a_passwordless_sign_up_confirms_the_phone_and_enrols_the_first_device,
    sim_swap_a_new_device_with_only_the_sms_code_gets_no_session,
    a_new_device_is_denied_when_the_account_has_no_second_proof,
    rl_5_a_new_device_sign_in_looks_the_same_for_unknown_and_password_accounts,
    the_passwordless_journey_enrol_biometric_pin_invalidation_and_revocation,
    dev_1_enrolment_needs_a_recent_aal2_session_and_proofs_of_both_keys,
    dev_3_easy_pins_are_refused_and_the_enrolment_can_be_retried,
    dev_3_a_stolen_phone_without_the_app_pin_is_blocked_after_five_tries_with_no_oracle,
    dev_2_and_flow_4_signatures_bind_to_their_flow_nonce_device_and_user,
    twenty_parallel_answers_to_one_nonce_yield_one_session,
);
