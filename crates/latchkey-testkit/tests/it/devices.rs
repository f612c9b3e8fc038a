//! Device keys: enrolment from an `aal2` session, sign-in by biometric key or by possession key
//! and server-checked PIN, the PIN block, revocation, and the attacks of the device issue
//! (DEV-1…4, SES-10, FLOW-4), through the SDK and its software key store.

use latchkey_client::{Client, Keystore, KeystoreError, SoftwareKeystore, TokenVault, Unlock, key_alias};
use latchkey_core::factors::attestation::testing::{Claims, TestRoot};
use latchkey_testkit::proto::{DeviceKey, MfaMethod, NextStep, StepAnswer, Tokens, codes, device_message};
use latchkey_testkit::{AndroidKeystore, Backend, TestServer, totp_code};
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
pub(super) async fn aal2_user_and_secret(s: &TestServer, name: &str) -> (Tokens, String) {
    s.create_user(name, PW).await;
    with_totp(s, name).await
}

/// An existing account (password `PW`) adds an authenticator app and signs in at `aal2`.
pub(super) async fn with_totp(s: &TestServer, name: &str) -> (Tokens, String) {
    let c = s.client();
    let t = s.sign_in(name, PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    let t = aal2_session(s, name, &secret).await;
    (t, secret)
}

/// Password and TOTP: a fresh `aal2` session (the clock moves a step on, so the code is new).
/// With a device enrolled, push approval is offered too, so the app picks TOTP.
pub(super) async fn aal2_session(s: &TestServer, name: &str, secret: &str) -> Tokens {
    s.clock.advance(Duration::seconds(30));
    let c = s.client();
    let f = c.sign_in(name, PW).await.unwrap();
    if matches!(f.next_step, NextStep::SelectMfa { .. }) {
        c.select_mfa(&f.flow_id, MfaMethod::Totp).await.unwrap();
    }
    c.totp_code(&f.flow_id, &totp_code(secret, &s.clock, 0)).await.unwrap().tokens.unwrap()
}

/// A user with an enrolled software device; returns its id, key store and TOTP secret.
pub(super) async fn with_device(s: &TestServer, name: &str) -> (String, SoftwareKeystore, String) {
    let (t, secret) = aal2_user_and_secret(s, name).await;
    let ks = SoftwareKeystore::new();
    let (id, done) = s.client().enroll_device(&t.access_token, &ks, "Test phone", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    (id, ks, secret)
}

/// The app on the device: its requests carry DPoP proofs by the device's possession key.
fn on_device(c: &Client, ks: &SoftwareKeystore, device_id: &str) -> Client {
    c.with_device_key(Arc::new(ks.clone()), device_id).unwrap()
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
    let d = on_device(&c, &ks, &id);
    let bio = d.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap().tokens.unwrap();
    let me = d.me(&bio.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal1", vec!["hwk".to_string()]));
    // Possession key + the server-checked PIN: two factors.
    let pin = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let me = d.me(&pin.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["hwk".to_string(), "pin".into(), "mfa".into()]));
    // SES-4: the device's session refreshes with a proof by its possession key.
    let pin = d.refresh(&pin.refresh_token).await.unwrap();
    assert_eq!(pin.token_type, "DPoP");
    assert_eq!(d.me(&pin.access_token).await.unwrap().acr, "aal2");
    // New fingerprint enrolled: the OS invalidates the biometric key; the SDK says so before
    // sending anything, and the PIN still works.
    let bio_alias = key_alias(&id, DeviceKey::Biometric);
    let old_key = SoftwareKeystore::new();
    for (alias, pkcs8) in ks.export().into_iter().filter(|(a, _)| *a == bio_alias) {
        old_key.import(&alias, pkcs8).unwrap();
    }
    ks.invalidate(&bio_alias);
    let e = d.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Keystore(KeystoreError::Invalidated(_))), "{e}");
    let by_pin = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    // Re-keying needs this device's PIN sign-in: not the biometric session, not another one.
    for (token, who) in [(&bio.access_token, "a biometric session"), (&t.access_token, "a session of no device")] {
        let e = d.rekey_biometric(token, &ks, &id).await.unwrap_err();
        assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION), "{who}");
    }
    let done = d.rekey_biometric(&by_pin.access_token, &ks, &id).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    assert!(d.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap().tokens.is_some(), "the fresh key");
    let r = d.device_sign_in(&id, &old_key, Unlock::Biometric).await.unwrap();
    assert_eq!((refusal(&r), r.tokens.is_none()), (codes::CODE_MISMATCH.to_string(), true), "the old key, at once");
    assert!(s.outbox().await.iter().any(|m| m.to == "ada@example.com" && m.subject.contains("biometric key")));
    // SES-10: revoking the device ends its sessions and its keys at once (DEV-2: same second).
    c.revoke_device(&t.access_token, &id).await.unwrap();
    let e = d.me(&pin.access_token).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "a session signed in with the device");
    let e = d.refresh(&bio.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_GRANT), "and its refresh tokens, even with the key");
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
        attestation: None,
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
    // The owner recovers with another factor (password and app code), then sets a new PIN.
    let weak = c.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap().tokens.unwrap();
    let d = on_device(&c, &ks, &id);
    let e = d.set_device_pin(&weak.access_token, &id, "580213").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION), "the biometric key alone is aal1");
    let t = aal2_session(&s, "dan", &secret).await;
    let e = c.set_device_pin(&t.access_token, &id, "123456").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "an easy PIN");
    c.set_device_pin(&t.access_token, &id, "580213").await.unwrap();
    assert!(!c.devices(&t.access_token).await.unwrap().devices[0].pin_blocked);
    assert!(c.device_sign_in(&id, &ks, Unlock::Pin("580213")).await.unwrap().tokens.is_some());
    assert!(c.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.is_none(), "the old PIN is gone");
    assert!(s.outbox().await.iter().any(|m| m.to == "dan@example.com" && m.subject.contains("PIN was changed")));
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
    s.passwordless_account(name, phone, Some(&format!("{name}@example.com")), PIN).await
}

async fn a_passwordless_sign_up_confirms_the_phone_and_enrols_the_first_device(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, t) = passwordless(&s, "pia", "+14155550301").await;
    let c = s.client();
    let d = on_device(&c, &ks, &id);
    let me = d.me(&t.access_token).await.unwrap();
    assert_eq!(
        (me.acr.as_str(), me.amr.clone(), me.phone_verified),
        ("aal1", vec!["sms".to_string(), "hwk".into()], true)
    );
    assert!(me.email_verified, "a passwordless sign-up verifies the email it was given");
    assert_eq!(d.devices(&t.access_token).await.unwrap().devices[0].id, id);
    let pin = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    assert_eq!(d.me(&pin.access_token).await.unwrap().acr, "aal2");
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
    // The owner's email was verified at sign-up: a second proof for new devices.
    let d = on_device(&c, &ks, &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    // The attacker has the SIM: a new device, the SMS code…
    let a = c.sign_in_new_device("quy").await.unwrap();
    assert!(
        matches!(&a.next_step, NextStep::SmsCode { destination, .. } if destination.is_empty()),
        "{:?}",
        a.next_step
    );
    let after_sms = c.sms_code(&a.flow_id, &s.code_for("+14155550302").await).await.unwrap();
    // The owner's enrolled phone (push approval, see push.rs) or the verified mailbox.
    assert_eq!(after_sms.next_step, NextStep::SelectMfa { methods: vec![MfaMethod::PushApproval, MfaMethod::Email] });
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
    // The right SMS code cost no attempt: `attempts_left` counts wrong answers.
    assert!(matches!(email.next_step, NextStep::EmailCode { attempts_left: 5, .. }), "{:?}", email.next_step);
    let e = c.email_code(&a.flow_id, &s.code_for("quy@example.com").await).await.unwrap();
    let new_ks = SoftwareKeystore::new();
    let (new_id, done) = c.enroll_device_step(&e, &new_ks, "New phone", "android", "902817").await.unwrap();
    let me = on_device(&c, &new_ks, &new_id).me(&done.tokens.unwrap().access_token).await.unwrap();
    assert_eq!(me.amr, vec!["sms".to_string(), "email".into(), "hwk".into()]);
    assert_eq!(d.devices(&t.access_token).await.unwrap().devices.len(), 2);
    assert!(c.device_sign_in(&new_id, &new_ks, Unlock::Pin("902817")).await.unwrap().tokens.is_some());
    assert!(
        s.outbox().await.iter().filter(|m| m.to == "quy@example.com" && m.subject.contains("new device")).count() >= 1,
        "the owner hears of every new device"
    );
}

async fn a_new_device_is_denied_when_the_account_has_no_second_proof(b: Backend) {
    // Every passwordless account has a device to approve from, unless policy leaves push out.
    let s = TestServer::start_with(b, |c| {
        c.policy.devices.second_proofs = vec![MfaMethod::Email, MfaMethod::Totp, MfaMethod::RecoveryCode];
        c.policy.sign_up.require_email = false;
    })
    .await;
    s.passwordless_account("rex", "+14155550303", None, PIN).await;
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

/// POST /v1/token with this refresh token and, optionally, this `DPoP` header.
async fn raw_refresh(s: &TestServer, refresh_token: &str, proof: Option<&str>) -> latchkey_testkit::RawResponse {
    let body = serde_json::json!({"grant_type": "refresh_token", "refresh_token": refresh_token}).to_string();
    let headers: Vec<(&str, &str)> = proof.map(|p| ("DPoP", p)).into_iter().collect();
    s.raw().raw("POST", "/v1/token", None, Some(body), &headers).await
}

fn claims(jwt: &str) -> serde_json::Value {
    latchkey_testkit::jwt_claims(jwt)
}

async fn ses_4_a_device_session_needs_a_proof_by_its_key_to_refresh_and_to_be_used(b: Backend) {
    use base64::Engine;
    let s = TestServer::start(b).await;
    let (id, ks, _) = with_device(&s, "hal").await;
    let (other_id, other_ks, _) = with_device(&s, "ian").await;
    let c = s.client();
    let d = on_device(&c, &ks, &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    assert_eq!(t.token_type, "DPoP");
    // cnf.jkt is the RFC 7638 thumbprint of the possession key, as a JOSE library computes it.
    let point = ks.public_key(&key_alias(&id, DeviceKey::Possession)).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
    )
    .unwrap();
    let jkt = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap();
    assert_eq!(claims(&t.access_token)["cnf"]["jkt"], jkt.as_str());

    let token_url = format!("{}/v1/token", s.url);
    let refused = |r: latchkey_testkit::RawResponse, why: &str| {
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_DPOP_PROOF)), "{why}");
    };
    refused(raw_refresh(&s, &t.refresh_token, None).await, "no proof");
    let other = on_device(&c, &other_ks, &other_id);
    let p = other.dpop_proof("POST", &token_url, None, None).unwrap();
    refused(raw_refresh(&s, &t.refresh_token, Some(&p)).await, "another device's key");
    let now = latchkey_core::clock::Clock::now(&s.clock).unix_timestamp();
    for (p, why) in [
        (d.dpop_proof("GET", &token_url, None, None), "wrong htm"),
        (d.dpop_proof("POST", "http://evil.example/v1/token", None, None), "wrong htu"),
        (d.dpop_proof("POST", &token_url, None, Some(now - 61)), "iat 61 s early"),
        (d.dpop_proof("POST", &token_url, None, Some(now + 61)), "iat 61 s late"),
        (d.dpop_proof("POST", &token_url, None, Some(i64::MIN)), "iat at the end of time"),
    ] {
        refused(raw_refresh(&s, &t.refresh_token, Some(&p.unwrap())).await, why);
    }
    let forged = d.dpop_proof("POST", &token_url, None, None).unwrap().replace(".", "X.");
    refused(raw_refresh(&s, &t.refresh_token, Some(&forged)).await, "a proof that is not a good JWS");
    // None of that spent the token: with a proof inside the window it rotates, once per proof.
    let p = d.dpop_proof("POST", &token_url, None, Some(now - 59)).unwrap();
    let r = raw_refresh(&s, &t.refresh_token, Some(&p)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t2: Tokens = serde_json::from_str(&r.body).unwrap();
    refused(raw_refresh(&s, &t2.refresh_token, Some(&p)).await, "a replayed proof (same jti)");
    // A thief with the spent token and no key cannot use it, nor end the device's session by
    // making the server see reuse.
    refused(raw_refresh(&s, &t.refresh_token, None).await, "a stolen spent token");
    assert_eq!(d.me(&t2.access_token).await.unwrap().username, "hal");

    // The access token is bound too (RFC 9449 §7): not as a bearer token, not with a proof made
    // for another token or another request.
    let me_url = format!("{}/v1/me", s.url);
    let get_me = |auth: String, proof: Option<String>| {
        let raw = s.raw();
        async move {
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(p) = &proof {
                headers.push(("DPoP", p.as_str()));
            }
            raw.raw("GET", "/v1/me", None, None, &headers).await
        }
    };
    let at = &t2.access_token;
    let r = get_me(format!("Bearer {at}"), None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some(codes::INVALID_DPOP_PROOF)));
    assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("DPoP ")), "{:?}", r.headers);
    for (proof, why) in [
        (None, "no proof"),
        (Some(d.dpop_proof("GET", &me_url, Some(&t.access_token), None).unwrap()), "ath of another token"),
        (Some(d.dpop_proof("GET", &me_url, None, None).unwrap()), "no ath"),
        (Some(d.dpop_proof("POST", &me_url, Some(at), None).unwrap()), "wrong htm"),
        (Some(other.dpop_proof("GET", &me_url, Some(at), None).unwrap()), "another key"),
    ] {
        let r = get_me(format!("DPoP {at}"), proof).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some(codes::INVALID_DPOP_PROOF)), "{why}");
    }
    let good = d.dpop_proof("GET", &me_url, Some(at), None).unwrap();
    assert_eq!(get_me(format!("DPoP {at}"), Some(good.clone())).await.status, 200);
    assert_eq!(get_me(format!("DPoP {at}"), Some(good)).await.status, 401, "a proof is used once");
    // A token that is not bound is not accepted under the DPoP scheme.
    s.create_user("plain", PW).await;
    let plain = s.sign_in("plain", PW).await;
    let p = d.dpop_proof("GET", &me_url, Some(&plain.access_token), None).unwrap();
    assert_eq!(get_me(format!("DPoP {}", plain.access_token), Some(p)).await.status, 401);

    // Through the SDK: a client without the device key cannot refresh; the device can, even
    // after its idea of the server's time went stale (it retries dated by the server's Date).
    let e = c.refresh(&t2.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_DPOP_PROOF));
    s.clock.advance(Duration::minutes(10));
    let t3 = d.refresh(&t2.refresh_token).await.unwrap();
    assert_eq!(d.me(&t3.access_token).await.unwrap().username, "hal");
}

async fn the_token_vault_keeps_the_session_only_behind_the_biometric_unlock(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, _) = with_device(&s, "jo").await;
    let d = on_device(&s.client(), &ks, &id);
    let vault = TokenVault::new(Arc::new(ks.clone()), &id);
    let t = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let sealed = vault.seal(&t.refresh_token).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(&t.refresh_token), "sealed, not encoded");
    // The app resumes the session: open (biometric prompt), refresh with a DPoP proof, re-seal.
    let (t2, sealed2) = d.refresh_sealed(&vault, &sealed).await.unwrap();
    assert_eq!(d.me(&t2.access_token).await.unwrap().username, "jo");
    let e = d.refresh_sealed(&vault, &sealed).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_GRANT), "the old sealed token was spent");
    // Someone enrols their finger on the phone: the OS invalidates the vault key (and the
    // biometric key); the sealed session is gone for good, on the phone, not just on the server.
    ks.enroll_new_biometrics();
    let e = d.refresh_sealed(&vault, &sealed2).await.unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Keystore(KeystoreError::Invalidated(_))), "{e}");
    let e = vault.open(&sealed2).unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Keystore(KeystoreError::NotFound(_))), "cleared: {e}");
    assert!(d.device_sign_in(&id, &ks, Unlock::Biometric).await.is_err(), "the biometric key went too");
    // The owner signs in with the PIN and seals the new session under a fresh vault key.
    let t3 = d.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let sealed3 = vault.seal(&t3.refresh_token).unwrap();
    assert!(d.refresh_sealed(&vault, &sealed3).await.is_ok());
}

fn acr_amr(me: &latchkey_testkit::proto::Me) -> (String, Vec<String>) {
    (me.acr.clone(), me.amr.clone())
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

async fn dev_4_a_biometric_sign_in_counts_as_a_biometric_only_with_an_attested_biometric_only_key(b: Backend) {
    let root = Arc::new(TestRoot::new());
    let pem = root.pem();
    let s = TestServer::start_with(b, move |c| c.policy.devices.android_attestation_roots = vec![pem]).await;
    let (t, secret) = aal2_user_and_secret(&s, "dora").await;
    let c = s.client();
    let pixel = AndroidKeystore::new(root.clone());
    let (id, done) = c.enroll_device(&t.access_token, &pixel, "Dora's Pixel", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let listed = c.devices(&t.access_token).await.unwrap().devices;
    assert_eq!(listed[0].biometric_evidence.as_deref(), Some("android_key/tee"));
    let d = on_device(&c, &pixel.keys, &id);
    let bio = d.device_sign_in(&id, &pixel, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(acr_amr(&d.me(&bio.access_token).await.unwrap()), ("aal2".into(), owned(&["hwk", "fpt", "mfa"])));

    // Keys that a device PIN also unlocks, that one check unlocks for a while, that software
    // holds, or attested under a root nobody configured, or with an earlier flow's challenge:
    // the enrolment is refused with the reason, and nothing is enrolled.
    type Lie = fn(Claims) -> Claims;
    let lenient: [(Lie, &str); 4] = [
        (|c| Claims { user_auth_type: Some(3), ..c }, "userAuthType"),
        (|c| Claims { auth_timeout: Some(300), ..c }, "authTimeout"),
        (|c| Claims { level: 0, ..c }, "TEE or StrongBox"),
        (|c| Claims { challenge: b"an earlier nonce".to_vec(), ..c }, "challenge"),
    ];
    let untrusted = AndroidKeystore::new(Arc::new(TestRoot::new()));
    let mut phones: Vec<(AndroidKeystore, &str)> = lenient
        .iter()
        .map(|(f, why)| (AndroidKeystore { claims: *f, ..AndroidKeystore::new(root.clone()) }, *why))
        .collect();
    phones.push((untrusted, "trusted attestation root"));
    for (phone, why) in &phones {
        let t = aal2_session(&s, "dora", &secret).await;
        let e = c.enroll_device(&t.access_token, phone, "Another", "android", PIN).await.unwrap_err();
        assert_eq!(e.code(), Some(codes::INVALID_ATTESTATION), "{why}");
        assert!(e.to_string().contains(why), "{why}: {e}");
    }
    assert_eq!(c.devices(&t.access_token).await.unwrap().devices.len(), 1, "nothing enrolled");

    // A phone with no attestation (iOS, or an Android app that sends none): possession only.
    let t = aal2_session(&s, "dora", &secret).await;
    let iphone = SoftwareKeystore::new();
    let (ios_id, _) = c.enroll_device(&t.access_token, &iphone, "Dora's iPhone", "ios", PIN).await.unwrap();
    let di = on_device(&c, &iphone, &ios_id);
    let bio = di.device_sign_in(&ios_id, &iphone, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(acr_amr(&di.me(&bio.access_token).await.unwrap()), ("aal1".into(), owned(&["hwk"])));

    // A new fingerprint: the re-keyed key is attested again, or, without attestation, loses the
    // old key's evidence with it.
    pixel.keys.invalidate(&key_alias(&id, DeviceKey::Biometric));
    let by_pin = d.device_sign_in(&id, &pixel, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    assert_eq!(d.rekey_biometric(&by_pin.access_token, &pixel, &id).await.unwrap().next_step, NextStep::Done);
    let bio = d.device_sign_in(&id, &pixel, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(acr_amr(&d.me(&bio.access_token).await.unwrap()).0, "aal2");
    let by_pin = d.device_sign_in(&id, &pixel, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let bad = AndroidKeystore { claims: |c| Claims { user_auth_type: Some(1), ..c }, ..pixel.clone() };
    let e = d.rekey_biometric(&by_pin.access_token, &bad, &id).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_ATTESTATION), "a device-PIN key is refused at re-keying too");
    assert_eq!(d.rekey_biometric(&by_pin.access_token, &pixel.keys, &id).await.unwrap().next_step, NextStep::Done);
    let bio = d.device_sign_in(&id, &pixel, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(acr_amr(&d.me(&bio.access_token).await.unwrap()), ("aal1".into(), owned(&["hwk"])));
    let t = aal2_session(&s, "dora", &secret).await;
    let listed = c.devices(&t.access_token).await.unwrap().devices;
    assert_eq!(listed.iter().map(|d| d.biometric_evidence.clone()).collect::<Vec<_>>(), vec![None, None]);

    // A server that trusts no root does not evaluate attestations: possession only.
    let plain = TestServer::start(b).await;
    let t = aal2_user(&plain, "eve").await;
    let phone = AndroidKeystore::new(root);
    let (id, _) = plain.client().enroll_device(&t.access_token, &phone, "Eve's Pixel", "android", PIN).await.unwrap();
    let d = on_device(&plain.client(), &phone.keys, &id);
    let bio = d.device_sign_in(&id, &phone, Unlock::Biometric).await.unwrap().tokens.unwrap();
    assert_eq!(acr_amr(&d.me(&bio.access_token).await.unwrap()), ("aal1".into(), owned(&["hwk"])));
}

both_stores!(
    dev_4_a_biometric_sign_in_counts_as_a_biometric_only_with_an_attested_biometric_only_key,
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
    ses_4_a_device_session_needs_a_proof_by_its_key_to_refresh_and_to_be_used,
    the_token_vault_keeps_the_session_only_behind_the_biometric_unlock,
);
