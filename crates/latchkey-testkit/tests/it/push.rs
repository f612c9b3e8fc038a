//! Push approval with number matching (checklist PUSH-1…4): a sign-in on one screen approved on
//! an enrolled phone, through the SDK on both sides — the phone's requests signed by its keys.

use latchkey_client::{Client, SoftwareKeystore, Unlock};
use latchkey_testkit::proto::{
    ApprovalDecision, ApprovalRequest, Channel, DenialReason, FlowAnswer, MfaMethod, NextStep, SignUpRequest, codes,
};
use latchkey_testkit::{Backend, TestServer, totp_code};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";
const PIN: &str = "371946";

/// A user with an authenticator app and an enrolled phone: the phone's client (signing its own
/// requests) and its key store.
pub(super) async fn with_phone(s: &TestServer, name: &str) -> (Client, SoftwareKeystore) {
    s.create_user(name, PW).await;
    let c = s.client();
    let t = s.sign_in(name, PW).await;
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    let t = c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens;
    assert!(t.is_none());
    s.clock.advance(Duration::seconds(30));
    let f = c.sign_in(name, PW).await.unwrap();
    let t = c.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let ks = SoftwareKeystore::new();
    let (id, done) = c.enroll_device(&t.access_token, &ks, "Phone", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    (c.with_device_key(Arc::new(ks.clone()), &id).unwrap(), ks)
}

/// A password sign-in on another screen that chose push: the flow id and the number shown.
async fn push_sign_in(c: &Client, name: &str) -> (String, String) {
    let a = c.sign_in(name, PW).await.unwrap();
    let NextStep::SelectMfa { methods } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert!(methods.contains(&MfaMethod::PushApproval), "{methods:?}");
    let p = c.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap();
    let NextStep::PushApproval { number, .. } = p.next_step else { panic!("{:?}", p.next_step) };
    assert!(number.len() == 2 && number.bytes().all(|b| b.is_ascii_digit()) && !number.starts_with('0'));
    (a.flow_id, number)
}

/// The one approval the phone is asked.
pub(super) async fn asked(phone: &Client) -> ApprovalRequest {
    let list = phone.device_approvals().await.unwrap().approvals;
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

fn other(number: &str) -> String {
    if number == "42" { "43".into() } else { "42".into() }
}

fn denied(a: &FlowAnswer) -> Option<DenialReason> {
    match a.next_step {
        NextStep::Denied { reason } => Some(reason),
        _ => None,
    }
}

async fn push_1_approving_with_the_number_completes_the_waiting_sign_in(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, _) = with_phone(&s, "pam").await;
    let laptop = Client::with_user_agent(&s.url, "Firefox on a laptop").unwrap();
    let (flow, number) = push_sign_in(&laptop, "pam").await;
    let req = asked(&phone).await;
    assert_eq!((req.kind.as_str(), req.user_agent.as_deref()), ("sign_in", Some("Firefox on a laptop")));
    assert_eq!(req.app, s.auth.settings().product_name);
    assert_eq!(phone.device_approval(&req.id).await.unwrap(), req);
    // Still waiting: the flow says so, and a held request is answered as soon as the phone is.
    let p = laptop.flow(&flow).await.unwrap();
    assert!(matches!(p.next_step, NextStep::PushApproval { .. }) && p.tokens.is_none());
    let held = {
        let (laptop, flow) = (laptop.clone(), flow.clone());
        tokio::spawn(async move { laptop.wait_flow(&flow, 30).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let out = phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap();
    assert_eq!(out.status, "approved");
    let done = held.await.unwrap().unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let t = done.tokens.expect("the held request brings the tokens");
    let me = laptop.me(&t.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["pwd".to_string(), "hwk".into(), "mfa".into()]));
    // Tokens are handed out once; the approval is answered once.
    let again = laptop.flow(&flow).await.unwrap();
    assert_eq!((again.next_step, again.tokens), (NextStep::Done, None));
    let e = phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED), "replayed");
    assert!(phone.device_approvals().await.unwrap().approvals.is_empty());
}

async fn push_1_a_wrong_or_missing_number_denies_and_counts_as_a_failure(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, _) = with_phone(&s, "quin").await;
    let laptop = s.client();
    for given in [Some("wrong"), None] {
        s.clock.advance(Duration::seconds(1));
        let (flow, number) = push_sign_in(&laptop, "quin").await;
        let req = asked(&phone).await;
        let typed = given.map(|_| other(&number));
        let out = phone.answer_approval(&req, ApprovalDecision::Approve, typed.as_deref()).await.unwrap();
        assert_eq!(out.status, "denied", "approve-only is impossible ({given:?})");
        let a = laptop.flow(&flow).await.unwrap();
        assert_eq!((denied(&a), a.tokens.is_none()), (Some(DenialReason::Denied), true));
    }
    let events = s.auth.store().audit_events(None, 1000).await.unwrap();
    let wrong = events.iter().filter(|e| e.kind == "push_answer" && e.outcome == "wrong_number").count();
    assert_eq!(wrong, 2);
    let counted = s.db.dump_text().await.unwrap();
    assert!(counted.contains("quin"), "the account's second-factor counter holds the failures");
}

async fn push_2_only_this_devices_biometric_signature_over_this_approval_counts(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, ks) = with_phone(&s, "ray").await;
    let (stranger, _) = with_phone(&s, "sue").await;
    let laptop = s.client();
    let (flow, number) = push_sign_in(&laptop, "ray").await;
    let req = asked(&phone).await;
    // Another account's phone cannot see or answer it.
    assert!(stranger.device_approvals().await.unwrap().approvals.is_empty());
    assert_eq!(stranger.device_approval(&req.id).await.unwrap_err().code(), Some(codes::NOT_FOUND));
    let e = stranger.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::NOT_FOUND));
    // A signature over another nonce (a stale or forged request) is refused and changes nothing.
    let forged = ApprovalRequest { nonce: "AAAAAAAAAAAAAAAAAAAAAA".into(), ..req.clone() };
    let e = phone.answer_approval(&forged, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::NOT_AUTHORIZED)));
    // Requests without the device's proof, or with the plain client, are not the device's.
    let raw = s.raw().raw("GET", "/v1/device/approvals", None, None, &[]).await;
    assert_eq!((raw.status, raw.json()["error"]["code"].as_str()), (401, Some(codes::UNAUTHENTICATED)));
    let url = format!("{}/v1/device/approvals", s.url);
    let proof = phone.dpop_proof("GET", &url, None, None).unwrap();
    let device_header = format!("Device {}", device_id_of(&phone));
    let signed = [("authorization", device_header.as_str()), ("dpop", proof.as_str())];
    let once = s.raw().raw("GET", "/v1/device/approvals", None, None, &signed).await;
    assert_eq!(once.status, 200);
    let again = s.raw().raw("GET", "/v1/device/approvals", None, None, &signed).await;
    assert_eq!(
        (again.status, again.json()["error"]["code"].as_str()),
        (401, Some(codes::INVALID_DPOP_PROOF)),
        "replay"
    );
    let sues = stranger.dpop_proof("GET", &url, None, None).unwrap();
    let forged = [("authorization", device_header.as_str()), ("dpop", sues.as_str())];
    let r = s.raw().raw("GET", "/v1/device/approvals", None, None, &forged).await;
    assert_eq!(r.status, 401, "another device's key");
    // The right answer still works after all that.
    let out = phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap();
    assert_eq!(out.status, "approved");
    assert!(laptop.flow(&flow).await.unwrap().tokens.is_some());
    // A revoked phone can no longer be asked or answer.
    let id = device_id_of(&phone);
    let t = phone.device_sign_in(&id, &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    phone.revoke_device(&t.access_token, &id).await.unwrap();
    let e = phone.device_approvals().await.unwrap_err();
    assert_eq!(e.code(), Some(codes::UNAUTHENTICATED));
    let a = laptop.sign_in("ray", PW).await.unwrap();
    assert!(!matches!(&a.next_step, NextStep::SelectMfa { methods } if methods.contains(&MfaMethod::PushApproval)));
}

fn device_id_of(phone: &Client) -> String {
    phone.device_id().expect("a device client").to_owned()
}

async fn push_3_an_approval_takes_effect_once_expires_and_a_deny_ends_the_sign_in(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, _) = with_phone(&s, "tam").await;
    let laptop = s.client();
    let (flow, number) = push_sign_in(&laptop, "tam").await;
    let req = asked(&phone).await;
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20 {
        let (phone, barrier, req, number) = (phone.clone(), barrier.clone(), req.clone(), number.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let decision = if i % 2 == 0 { ApprovalDecision::Approve } else { ApprovalDecision::Deny };
            phone.answer_approval(&req, decision, Some(&number)).await.map(|o| o.status)
        }));
    }
    let (mut won, mut lost) = (vec![], 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(status) => won.push(status),
            Err(e) => {
                assert_eq!(e.code(), Some(codes::FLOW_COMPLETED));
                lost += 1;
            }
        }
    }
    assert_eq!((won.len(), lost), (1, 19), "exactly one answer takes effect");
    let a = laptop.flow(&flow).await.unwrap();
    match won[0].as_str() {
        "approved" => assert!(a.tokens.is_some()),
        _ => assert_eq!(denied(&a), Some(DenialReason::Denied)),
    }
    // Expiry by the server's clock: the phone cannot answer, the sign-in ends `expired`.
    s.clock.advance(Duration::seconds(1));
    let (flow, number) = push_sign_in(&laptop, "tam").await;
    let req = asked(&phone).await;
    s.clock.advance(Duration::seconds(121));
    let e = phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_EXPIRED));
    assert!(phone.device_approvals().await.unwrap().approvals.is_empty());
    assert_eq!(denied(&laptop.flow(&flow).await.unwrap()), Some(DenialReason::Expired));
    // A deny ends the sign-in and is recorded.
    let (flow, _) = push_sign_in(&laptop, "tam").await;
    let out = phone.answer_approval(&asked(&phone).await, ApprovalDecision::Deny, None).await.unwrap();
    assert_eq!(out.status, "denied");
    assert_eq!(denied(&laptop.wait_flow(&flow, 5).await.unwrap()), Some(DenialReason::Denied));
    let events = s.auth.store().audit_events(None, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "push_answer" && e.outcome == "denied"));
}

async fn push_4_one_outstanding_prompt_per_account_and_five_per_window(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.push.window_secs = 1_000_000_000).await;
    let (phone, _) = with_phone(&s, "uma").await;
    let laptop = s.client();
    let (first, _) = push_sign_in(&laptop, "uma").await;
    // A second sign-in while the first prompt is outstanding: refused, nothing new asked.
    let a = laptop.sign_in("uma", PW).await.unwrap();
    let e = laptop.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(429), Some(codes::LIMIT_EXCEEDED)));
    assert_eq!(asked(&phone).await.id, {
        let NextStep::PushApproval { approval_id, .. } = laptop.flow(&first).await.unwrap().next_step else { panic!() };
        approval_id
    });
    // The user can still use another method in that sign-in.
    assert!(matches!(
        laptop.select_mfa(&a.flow_id, MfaMethod::Totp).await.unwrap().next_step,
        NextStep::TotpCode { .. }
    ));
    // Prompts that expire unanswered make room for the next, up to five per window (the refused
    // one above counted): the sixth is refused and not sent.
    for _ in 0..3 {
        s.clock.advance(Duration::seconds(121));
        push_sign_in(&laptop, "uma").await;
    }
    s.clock.advance(Duration::seconds(121));
    let a = laptop.sign_in("uma", PW).await.unwrap();
    let e = laptop.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::LIMIT_EXCEEDED), "push bombing stops here");
    assert!(phone.device_approvals().await.unwrap().approvals.is_empty(), "and nothing is asked");
}

async fn switching_away_from_push_withdraws_the_prompt_and_asking_again_replaces_it(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, _) = with_phone(&s, "ned").await;
    let laptop = s.client();
    let (flow, number) = push_sign_in(&laptop, "ned").await;
    let first = asked(&phone).await;
    // Asking again from the same sign-in replaces the prompt (not a second outstanding push).
    let again = laptop.select_mfa(&flow, MfaMethod::PushApproval).await.unwrap();
    assert!(matches!(again.next_step, NextStep::PushApproval { .. }), "{:?}", again.next_step);
    let second = asked(&phone).await;
    assert_ne!(second.id, first.id);
    let e = phone.answer_approval(&first, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED), "the replaced prompt cannot be answered");
    // Switching to the authenticator app withdraws the prompt from the phone.
    laptop.select_mfa(&flow, MfaMethod::Totp).await.unwrap();
    assert!(phone.device_approvals().await.unwrap().approvals.is_empty());
    let e = phone.answer_approval(&second, ApprovalDecision::Approve, None).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED));
    // And another sign-in may push at once.
    push_sign_in(&laptop, "ned").await;
}

async fn push_report_ends_the_sign_in_pauses_prompts_and_tells_the_user(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, _) = with_phone(&s, "val").await;
    let laptop = s.client();
    let (flow, _) = push_sign_in(&laptop, "val").await;
    let out = phone.answer_approval(&asked(&phone).await, ApprovalDecision::Report, None).await.unwrap();
    assert_eq!(out.status, "reported");
    assert_eq!(denied(&laptop.flow(&flow).await.unwrap()), Some(DenialReason::Denied));
    assert!(
        s.outbox().await.iter().any(|m| m.to == "val@example.com" && m.subject.contains("did not make")),
        "the user is told by email"
    );
    let events = s.auth.store().audit_events(None, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "push_answer" && e.outcome == "reported"), "a security event");
    s.clock.advance(Duration::minutes(59));
    let a = laptop.sign_in("val", PW).await.unwrap();
    let e = laptop.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::LIMIT_EXCEEDED), "prompts are paused for an hour");
    s.clock.advance(Duration::minutes(2));
    push_sign_in(&laptop, "val").await;
}

async fn a_new_devices_first_sign_in_is_approved_from_the_enrolled_phone(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "wes".into(),
            password: None,
            email: None,
            phone: Some("+14155550311".into()),
            locale: None,
        })
        .await
        .unwrap();
    assert!(matches!(a.next_step, NextStep::ConfirmSignUp { channel: Channel::Sms, .. }));
    let e = c.confirm_sign_up(&a.flow_id, &s.code_for("+14155550311").await).await.unwrap();
    let old = SoftwareKeystore::new();
    let (old_id, _) = c.enroll_device_step(&e, &old, "Old phone", "android", PIN).await.unwrap();
    let old_phone = c.with_device_key(Arc::new(old.clone()), &old_id).unwrap();
    // The new phone: username, the SMS code, then — SMS proves a number, not a device — approval
    // from the old phone.
    s.clock.advance(Duration::minutes(2));
    let new = Client::with_user_agent(&s.url, "New phone").unwrap();
    let a = new.sign_in_new_device("wes").await.unwrap();
    let r = new.sms_code(&a.flow_id, &s.code_for("+14155550311").await).await.unwrap();
    let NextStep::SelectMfa { methods } = &r.next_step else { panic!("{:?}", r.next_step) };
    assert_eq!(methods, &vec![MfaMethod::PushApproval], "the only second proof this account has");
    let p = new.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap();
    let NextStep::PushApproval { number, .. } = p.next_step else { panic!("{:?}", p.next_step) };
    let req = asked(&old_phone).await;
    assert_eq!(req.kind, "new_device", "the phone says what it is approving");
    old_phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap();
    let e = new.wait_flow(&a.flow_id, 5).await.unwrap();
    assert!(matches!(e.next_step, NextStep::EnrollDevice { .. }) && e.tokens.is_none(), "{:?}", e.next_step);
    let ks = SoftwareKeystore::new();
    let (new_id, done) = new.enroll_device_step(&e, &ks, "New phone", "ios", PIN).await.unwrap();
    let t = done.tokens.expect("enrolled and signed in");
    let me = new.with_device_key(Arc::new(ks), &new_id).unwrap().me(&t.access_token).await.unwrap();
    // The SMS code and the old phone's key are both possession: one factor class, `aal1`, like a
    // first device's sign-up. The new phone's PIN sign-in gives `aal2`.
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal1", vec!["sms".to_string(), "hwk".into()]));
}

async fn sim_swap_the_thief_can_only_ask_the_owners_phone_which_reports_it(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "yan".into(),
            password: None,
            email: None,
            phone: Some("+14155550312".into()),
            locale: None,
        })
        .await
        .unwrap();
    let e = c.confirm_sign_up(&a.flow_id, &s.code_for("+14155550312").await).await.unwrap();
    let ks = SoftwareKeystore::new();
    let (id, _) = c.enroll_device_step(&e, &ks, "Yan's phone", "android", PIN).await.unwrap();
    let owner = c.with_device_key(Arc::new(ks), &id).unwrap();
    // The thief has the SIM: the SMS code, then a prompt on the owner's phone saying a new device
    // is signing in, which the owner reports.
    let thief = Client::with_user_agent(&s.url, "Thief").unwrap();
    let a = thief.sign_in_new_device("yan").await.unwrap();
    thief.sms_code(&a.flow_id, &s.code_for("+14155550312").await).await.unwrap();
    thief.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap();
    let req = asked(&owner).await;
    assert_eq!((req.kind.as_str(), req.user_agent.as_deref()), ("new_device", Some("Thief")));
    owner.answer_approval(&req, ApprovalDecision::Report, None).await.unwrap();
    let end = thief.wait_flow(&a.flow_id, 5).await.unwrap();
    assert_eq!((denied(&end), end.tokens.is_none()), (Some(DenialReason::Denied), true));
    // Asking again within the hour prompts nobody.
    let a = thief.sign_in_new_device("yan").await.unwrap();
    thief.sms_code(&a.flow_id, &s.code_for("+14155550312").await).await.unwrap();
    let e = thief.select_mfa(&a.flow_id, MfaMethod::PushApproval).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::LIMIT_EXCEEDED));
    assert!(owner.device_approvals().await.unwrap().approvals.is_empty());
}

async fn push_across_replicas_the_phone_answers_one_and_the_waiting_sign_in_is_held_on_the_other(b: Backend) {
    let a = TestServer::start(b).await;
    let b2 = a.replica().await;
    // The phone talks to replica A; the signing-in screen to replica B, which holds its request.
    let (phone, _) = with_phone(&a, "xia").await;
    let laptop = b2.client();
    let (flow, number) = push_sign_in(&laptop, "xia").await;
    let held = {
        let (laptop, flow) = (laptop.clone(), flow.clone());
        tokio::spawn(async move { laptop.wait_flow(&flow, 30).await })
    };
    let req = asked(&phone).await;
    assert_eq!(phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap().status, "approved");
    let done = held.await.unwrap().unwrap();
    assert!(done.tokens.is_some(), "replica A saw replica B's answer in the database");
}

// ----- notifications ----------------------------------------------------------------------

#[derive(Default)]
struct Received {
    /// (signature valid, path, authorization header, JSON body).
    requests: Vec<(bool, String, String, serde_json::Value)>,
    failures_left: usize,
}

type Shared = Arc<std::sync::Mutex<Received>>;

/// A local stand-in for the app's backend (checks the webhook's HMAC) and for FCM: the OAuth
/// token endpoint checks the service-account JWT the way Google does (RS256 by the account's
/// key, `iss`, `aud`, `scope`), and `messages:send` checks the access token it issued.
async fn receivers(webhook_secret: &'static str, fcm_public_pem: String, failures: usize) -> (String, Shared) {
    use axum::http::{HeaderMap, StatusCode};
    use latchkey_server::webhook::{SIGNATURE_HEADER, sign_webhook};
    let state: Shared = Arc::new(std::sync::Mutex::new(Received { failures_left: failures, ..Default::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (st, st2, st3) = (state.clone(), state.clone(), state.clone());
    let token_aud = format!("{base}/token");
    let app = axum::Router::new()
        .route(
            "/webhook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let t: i64 =
                    sig.split(',').next().and_then(|p| p.strip_prefix("t=")).and_then(|t| t.parse().ok()).unwrap_or(0);
                let valid = sig == sign_webhook(webhook_secret.as_bytes(), t, &body);
                let json = serde_json::from_slice(&body).unwrap_or_default();
                let mut st = st.lock().unwrap();
                st.requests.push((valid, "/webhook".into(), String::new(), json));
                if st.failures_left > 0 {
                    st.failures_left -= 1;
                    StatusCode::SERVICE_UNAVAILABLE
                } else if valid {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route(
            "/token",
            axum::routing::post(move |body: String| async move {
                let form: std::collections::HashMap<String, String> = body
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
                    .collect();
                let key = jsonwebtoken::DecodingKey::from_rsa_pem(fcm_public_pem.as_bytes()).unwrap();
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                v.set_audience(&[token_aud.as_str()]);
                v.set_issuer(&["push@test-project.iam.gserviceaccount.com"]);
                let claims = jsonwebtoken::decode::<serde_json::Value>(&form["assertion"], &key, &v);
                let valid = form.get("grant_type").map(String::as_str)
                    == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    && claims.as_ref().is_ok_and(|c| c.claims["scope"] == latchkey_server::push::FCM_SCOPE);
                st2.lock().unwrap().requests.push((valid, "/token".into(), String::new(), serde_json::Value::Null));
                if valid {
                    (StatusCode::OK, axum::Json(serde_json::json!({"access_token": "ya29.test", "expires_in": 3600})))
                } else {
                    (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": "invalid_grant"})))
                }
            }),
        )
        .route(
            "/v1/projects/test-project/messages:send",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let valid = auth == "Bearer ya29.test";
                let json = serde_json::from_slice(&body).unwrap_or_default();
                st3.lock().unwrap().requests.push((valid, "/fcm".into(), auth, json));
                if valid { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn devices_are_notified_through_the_signed_webhook_and_fcm_and_failures_are_retried(b: Backend) {
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let (base, received) = receivers("push-secret", rsa.public_key_pem(), 1).await;
    let account = serde_json::json!({
        "type": "service_account",
        "project_id": "test-project",
        "client_email": "push@test-project.iam.gserviceaccount.com",
        "private_key": rsa.serialize_pem(),
        "token_uri": format!("{base}/token"),
    })
    .to_string();
    let s = TestServer::start_with(b, |c| {
        c.push_webhook_url = Some(format!("{base}/webhook"));
        c.push_webhook_secret = Some("push-secret".into());
        c.fcm_service_account = Some(account);
        c.fcm_base_url = base.clone();
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    let (phone, ks) = with_phone(&s, "zed").await;
    let e = phone.set_push_token("carrier-pigeon", Some("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST));
    assert_eq!(phone.set_push_token("fcm", None).await.unwrap_err().code(), Some(codes::INVALID_REQUEST));
    phone.set_push_token("webhook", Some("app-device-1")).await.unwrap();
    // A sign-in elsewhere: the phone's backend is told the approval id, and nothing more.
    let laptop = s.client();
    let (_, number) = push_sign_in(&laptop, "zed").await;
    let req = asked(&phone).await;
    let got = |path: &str| -> Vec<(bool, serde_json::Value)> {
        received.lock().unwrap().requests.iter().filter(|r| r.1 == path).map(|r| (r.0, r.3.clone())).collect()
    };
    eventually("the first webhook attempt", || got("/webhook").len() == 1).await;
    // The backend failed once: retried after the backoff, by the server's clock.
    s.clock.advance(Duration::seconds(5));
    eventually("the retry", || got("/webhook").len() == 2).await;
    let hooks = got("/webhook");
    assert!(hooks.iter().all(|(valid, _)| *valid), "signed");
    let body = &hooks[1].1;
    assert_eq!(body["device_token"], "app-device-1");
    assert_eq!(body["data"], serde_json::json!({"type": "approval", "approval_id": req.id}));
    assert!(!body.to_string().contains(&req.nonce) && !body.to_string().contains(&format!("\"{number}\"")), "{body}");
    phone.answer_approval(&req, ApprovalDecision::Deny, None).await.unwrap();
    // Through FCM now: a service-account token (fetched once), then messages:send.
    phone.set_push_token("fcm", Some("fcm-registration-token")).await.unwrap();
    s.clock.advance(Duration::seconds(1));
    push_sign_in(&laptop, "zed").await;
    let second = asked(&phone).await;
    eventually("the FCM send", || got("/fcm").len() == 1).await;
    let (valid, msg) = got("/fcm").remove(0);
    assert!(valid, "with the access token from the token endpoint");
    assert_eq!(msg["message"]["token"], "fcm-registration-token");
    assert_eq!(msg["message"]["data"], serde_json::json!({"type": "approval", "approval_id": second.id}));
    assert!(msg["message"]["notification"]["title"].is_string());
    assert_eq!(got("/token"), vec![(true, serde_json::Value::Null)], "a valid service-account JWT");
    phone.answer_approval(&second, ApprovalDecision::Deny, None).await.unwrap();
    // Every enrolment notifies the other devices: a tablet enrolled from the phone's PIN session
    // (a fresh aal2) tells the phone.
    let t = phone.device_sign_in(&device_id_of(&phone), &ks, Unlock::Pin(PIN)).await.unwrap().tokens.unwrap();
    let (_, done) =
        phone.enroll_device(&t.access_token, &SoftwareKeystore::new(), "Tablet", "android", PIN).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    eventually("the enrolment notice", || got("/fcm").len() == 2).await;
    let notice = got("/fcm").remove(1).1;
    assert_eq!(notice["message"]["data"], serde_json::json!({"type": "notice"}));
    assert_eq!(notice["message"]["notification"]["title"], "A new device was added");
    assert_eq!(got("/token").len(), 1, "the access token is reused until it nears expiry");
    // A device that registered `none` polls: nothing is sent for it.
    phone.set_push_token("none", None).await.unwrap();
    s.clock.advance(Duration::seconds(1));
    push_sign_in(&laptop, "zed").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(got("/fcm").len(), 2);
}

/// A local APNs: HTTP/2 only, an ES256 provider token by the team's key with its key id, the app's
/// topic. The first request is refused as Apple refuses an expired provider token.
async fn apns_receiver(
    public_pem: String,
) -> (String, Arc<std::sync::Mutex<Vec<(bool, String, String, serde_json::Value)>>>) {
    use axum::http::{HeaderMap, StatusCode, Version};
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let st = seen.clone();
    let app = axum::Router::new().route(
        "/3/device/{token}",
        axum::routing::post(
            move |version: Version,
                  axum::extract::Path(token): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: axum::body::Bytes| async move {
                let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let jwt = header("authorization").strip_prefix("bearer ").unwrap_or_default().to_owned();
                let key = jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap();
                let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.set_issuer(&["TEAM123456"]);
                let kid = jsonwebtoken::decode_header(&jwt).ok().and_then(|h| h.kid);
                let valid = version == Version::HTTP_2
                    && jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &v).is_ok()
                    && kid.as_deref() == Some("KEY123ABCD")
                    && header("apns-topic") == "com.example.latchkey"
                    && header("apns-push-type") == "alert";
                let json = serde_json::from_slice(&body).unwrap_or_default();
                let mut seen = st.lock().unwrap();
                seen.push((valid, token, jwt, json));
                if seen.len() == 1 {
                    (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"reason": "ExpiredProviderToken"})))
                } else if valid {
                    (StatusCode::OK, axum::Json(serde_json::json!({})))
                } else {
                    (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"reason": "InvalidProviderToken"})))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

async fn apns_gets_an_es256_provider_token_over_http2_and_a_refused_token_is_renewed(b: Backend) {
    let key = rcgen::KeyPair::generate().unwrap();
    let (base, seen) = apns_receiver(key.public_key_pem()).await;
    let s = TestServer::start_with(b, |c| {
        c.apns_key = Some(key.serialize_pem());
        c.apns_key_id = Some("KEY123ABCD".into());
        c.apns_team_id = Some("TEAM123456".into());
        c.apns_topic = Some("com.example.latchkey".into());
        c.apns_base_url = base;
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    let (phone, _) = with_phone(&s, "ari").await;
    phone.set_push_token("apns", Some("a1b2c3d4e5f6")).await.unwrap();
    push_sign_in(&s.client(), "ari").await;
    let req = asked(&phone).await;
    eventually("the first APNs request", || seen.lock().unwrap().len() == 1).await;
    s.clock.advance(Duration::seconds(5));
    eventually("the retry", || seen.lock().unwrap().len() == 2).await;
    let seen = seen.lock().unwrap().clone();
    let (valid, token, jwt, body) = &seen[1];
    assert!(*valid, "HTTP/2, a valid ES256 provider token with the key id, the topic");
    assert_eq!(token, "a1b2c3d4e5f6");
    assert_ne!(jwt, &seen[0].2, "the refused provider token was replaced");
    assert_eq!((body["type"].as_str(), body["approval_id"].as_str()), (Some("approval"), Some(req.id.as_str())));
    assert!(body["aps"]["alert"]["title"].is_string());
}

async fn a_request_held_past_the_deadline_is_408_with_the_json_error(b: Backend) {
    // Issue 11, items 4 and 7: the whole-request deadline, scaled to a second.
    let s = TestServer::start_with(b, |c| c.http.request_timeout_secs = 1).await;
    let (_phone, _) = with_phone(&s, "held").await;
    let (flow, _) = push_sign_in(&s.client(), "held").await;
    let r = s.raw().request("GET", &format!("/v1/flows/{flow}?wait=10"), None, None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (408, Some(codes::REQUEST_TIMEOUT)), "{}", r.body);
    assert_eq!(r.json()["error"]["request_id"].as_str(), r.header("x-request-id"));
}

both_stores!(
    a_request_held_past_the_deadline_is_408_with_the_json_error,
    apns_gets_an_es256_provider_token_over_http2_and_a_refused_token_is_renewed,
    devices_are_notified_through_the_signed_webhook_and_fcm_and_failures_are_retried,
    push_1_approving_with_the_number_completes_the_waiting_sign_in,
    push_1_a_wrong_or_missing_number_denies_and_counts_as_a_failure,
    push_2_only_this_devices_biometric_signature_over_this_approval_counts,
    push_3_an_approval_takes_effect_once_expires_and_a_deny_ends_the_sign_in,
    push_4_one_outstanding_prompt_per_account_and_five_per_window,
    push_report_ends_the_sign_in_pauses_prompts_and_tells_the_user,
    switching_away_from_push_withdraws_the_prompt_and_asking_again_replaces_it,
    a_new_devices_first_sign_in_is_approved_from_the_enrolled_phone,
    sim_swap_the_thief_can_only_ask_the_owners_phone_which_reports_it,
    push_across_replicas_the_phone_answers_one_and_the_waiting_sign_in_is_held_on_the_other,
);
