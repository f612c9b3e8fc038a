//! Second factors beyond TOTP: SMS and email codes, recovery codes, `select_mfa` and switching,
//! the MFA policy (off, optional, required with set-up inside sign-in), managing factors, and
//! the checklist items they carry (FLOW-1/2/4/5, OOB-2/6/7, REC-1…5, RL-4, LIFE-1/2/5).

use latchkey_core::settings::MfaMode;
use latchkey_server::config::Config;
use latchkey_testkit::proto::{FlowAnswer, MfaMethod, NextStep, Tokens, codes};
use latchkey_testkit::{Backend, TestServer, totp_code};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

/// A confirmed user and a fresh session (aal1 until a factor exists).
async fn user(s: &TestServer, name: &str) -> Tokens {
    s.create_user(name, PW).await;
    s.sign_in(name, PW).await
}

/// Add a phone for SMS codes from a session; returns the phone.
async fn add_sms(s: &TestServer, t: &Tokens, phone: &str) {
    let c = s.client();
    let a = c.enroll_sms(&t.access_token, Some(phone)).await.unwrap();
    assert!(matches!(a.next_step, NextStep::VerifyCode { .. }), "{:?}", a.next_step);
    let done = c.verify_code(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
}

/// Add an authenticator app from a session; returns its secret. Moves the clock a step on.
async fn add_totp(s: &TestServer, t: &Tokens) -> String {
    let c = s.client();
    let a = c.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().next_step, NextStep::Done);
    s.clock.advance(Duration::seconds(30));
    secret
}

/// Sign in with the password and the SMS code; returns aal2 tokens.
async fn sign_in_sms(s: &TestServer, name: &str, phone: &str) -> Tokens {
    let c = s.client();
    let a = c.sign_in(name, PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::SmsCode { .. }), "{:?}", a.next_step);
    c.sms_code(&a.flow_id, &s.code_for(phone).await).await.unwrap().tokens.unwrap()
}

/// These tests send many codes from one IP in one window: the send limits (checklist OOB-5,
/// tested in security.rs) are raised so they do not get in the way.
fn roomy(c: &mut Config) {
    c.policy.limits.sends_per_account = 100;
    c.policy.limits.sends_per_destination = 100;
    c.policy.limits.sends_per_ip = 1000;
}

async fn start(b: Backend) -> TestServer {
    TestServer::start_with(b, roomy).await
}

fn with_mode(mode: MfaMode) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        roomy(c);
        c.policy.mfa.mode = mode
    }
}

/// The refusal in a flow answer: its error code, or `denied` when the flow ended.
fn refusal(a: &FlowAnswer) -> String {
    match (&a.error, &a.next_step) {
        (_, NextStep::Denied { .. }) => "denied".into(),
        (Some(e), _) => e.code.clone(),
        (None, other) => format!("no refusal: {other:?}"),
    }
}

async fn sms_factor_is_verified_before_use_and_sign_in_asks_for_its_code(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "anna").await;
    let c = s.client();
    let a = c.enroll_sms(&t.access_token, Some("+14155550101")).await.unwrap();
    let NextStep::VerifyCode { destination, attempts_left, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!((destination.as_str(), *attempts_left), ("+*******0101", 5));
    // Not a factor until its code is right.
    assert_eq!(c.sign_in("anna", PW).await.unwrap().next_step, NextStep::Done);
    let wrong = c.verify_code(&a.flow_id, "000000").await.unwrap();
    assert_eq!(wrong.error.unwrap().code, codes::CODE_MISMATCH);
    assert_eq!(c.verify_code(&a.flow_id, &s.code_for("+14155550101").await).await.unwrap().next_step, NextStep::Done);
    let factors = c.factors(&t.access_token).await.unwrap().factors;
    assert_eq!(
        factors.iter().map(|f| (f.kind.as_str(), f.state.as_str(), f.destination.as_deref())).collect::<Vec<_>>(),
        vec![("sms", "active", Some("+*******0101"))]
    );
    assert!(
        s.outbox().await.iter().any(|m| m.to == "anna@example.com" && m.subject.contains("phone number was added"))
    );
    let a = c.sign_in("anna", PW).await.unwrap();
    assert!(a.tokens.is_none());
    let NextStep::SmsCode { destination, attempts_left, other_methods } = &a.next_step else {
        panic!("{:?}", a.next_step)
    };
    assert_eq!((destination.as_str(), *attempts_left, other_methods.clone()), ("+*******0101", 5, vec![]));
    let t = c.sms_code(&a.flow_id, &s.code_for("+14155550101").await).await.unwrap().tokens.unwrap();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["pwd".to_string(), "sms".into(), "mfa".into()]));
    assert!(me.phone_verified);
}

async fn oob_7_and_flow_2_an_email_code_never_lifts_a_session_to_aal2(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "bert").await;
    let c = s.client();
    let a = c.enroll_email(&t.access_token, None).await.unwrap();
    assert!(matches!(a.next_step, NextStep::VerifyCode { .. }), "{:?}", a.next_step);
    c.verify_code(&a.flow_id, &s.code_for("bert@example.com").await).await.unwrap();
    let a = c.sign_in("bert", PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::EmailCode { .. }), "{:?}", a.next_step);
    let t = c.email_code(&a.flow_id, &s.code_for("bert@example.com").await).await.unwrap().tokens.unwrap();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!(
        (me.acr.as_str(), me.amr.clone()),
        ("aal1", vec!["pwd".to_string(), "email".into()]),
        "password + email code is not two factor classes"
    );
}

async fn select_mfa_lists_the_preferred_method_first_and_switching_keeps_the_attempt_count(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "cleo").await;
    let secret = add_totp(&s, &t).await;
    let c = s.client();
    // With an app enrolled, adding a phone needs aal2.
    let e = c.enroll_sms(&t.access_token, Some("+14155550102")).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    let a = c.sign_in("cleo", PW).await.unwrap();
    let t = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    add_sms(&s, &t, "+14155550102").await;
    let a = c.sign_in("cleo", PW).await.unwrap();
    assert_eq!(a.next_step, NextStep::SelectMfa { methods: vec![MfaMethod::Totp, MfaMethod::Sms] });
    c.set_preferred_mfa(&t.access_token, MfaMethod::Sms).await.unwrap();
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    assert!(
        listed.iter().any(|f| f.kind == "sms" && f.preferred)
            && listed.iter().any(|f| f.kind == "totp" && !f.preferred)
    );
    let e = c.set_preferred_mfa(&t.access_token, MfaMethod::Email).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "only an enrolled method");
    let a = c.sign_in("cleo", PW).await.unwrap();
    assert_eq!(a.next_step, NextStep::SelectMfa { methods: vec![MfaMethod::Sms, MfaMethod::Totp] });
    let e = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::STEP_MISMATCH), "pick first");
    let e = c.select_mfa(&a.flow_id, MfaMethod::Email).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "not offered");
    let sms = c.select_mfa(&a.flow_id, MfaMethod::Sms).await.unwrap();
    assert!(
        matches!(&sms.next_step, NextStep::SmsCode { attempts_left: 5, other_methods, .. } if other_methods == &vec![MfaMethod::Totp]),
        "{:?}",
        sms.next_step
    );
    let wrong = c.sms_code(&a.flow_id, "000000").await.unwrap();
    assert_eq!(wrong.error.unwrap().code, codes::CODE_MISMATCH);
    // Switching does not give the attempts back.
    let totp = c.select_mfa(&a.flow_id, MfaMethod::Totp).await.unwrap();
    assert!(matches!(totp.next_step, NextStep::TotpCode { attempts_left: 4, .. }), "{:?}", totp.next_step);
    let e = c.sms_code(&a.flow_id, &s.code_for("+14155550102").await).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::STEP_MISMATCH), "the SMS step was left");
    s.clock.advance(Duration::seconds(30));
    let done = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    assert_eq!(c.me(&done.tokens.unwrap().access_token).await.unwrap().acr, "aal2");
}

async fn flow_4_a_code_sent_for_one_sign_in_is_refused_in_another(b: Backend) {
    let s = start(b).await;
    for (name, phone) in [("dora", "+14155550103"), ("dirk", "+14155550104")] {
        let t = user(&s, name).await;
        add_sms(&s, &t, phone).await;
    }
    let c = s.client();
    let a = c.sign_in("dora", PW).await.unwrap();
    let code_a = s.code_for("+14155550103").await;
    let b2 = c.sign_in("dora", PW).await.unwrap();
    let other = c.sign_in("dirk", PW).await.unwrap();
    let code_b = s.code_for("+14155550103").await;
    let flows = if code_a == code_b { vec![&other.flow_id] } else { vec![&b2.flow_id, &other.flow_id] };
    for flow in flows {
        let r = c.sms_code(flow, &code_a).await.unwrap();
        assert_eq!(r.error.map(|e| e.code).as_deref(), Some(codes::CODE_MISMATCH), "transaction A's code elsewhere");
    }
    assert!(c.sms_code(&a.flow_id, &code_a).await.unwrap().tokens.is_some(), "and it still works where it belongs");
}

/// A sign-in's SMS code is checked before its attempt is counted and takes effect only with it
/// (issue 17): the right code after the flow's last attempt, or while the account is locked, is
/// answered like a wrong one and leaves no session.
async fn oob_3_a_right_sms_code_past_the_last_attempt_or_during_a_lock_takes_no_effect(b: Backend) {
    use latchkey_core::clock::Clock as _;
    let s = start(b).await;
    let t = user(&s, "lena").await;
    let phone = "+14155550142";
    add_sms(&s, &t, phone).await;
    let c = s.client();
    let lena = s.auth.store().user_by_username("lena").await.unwrap().unwrap();
    let sessions = || async { s.auth.store().live_sessions(lena.id, s.clock.now()).await.unwrap().len() };
    let before = sessions().await;
    let wrong = |code: &str| if code == "000000" { "000001".to_owned() } else { "000000".to_owned() };
    // The flow's five attempts spent, then the right code.
    let f = c.sign_in("lena", PW).await.unwrap().flow_id;
    let code = s.code_for(phone).await;
    for _ in 0..5 {
        c.sms_code(&f, &wrong(&code)).await.unwrap();
    }
    let right = c.sms_code(&f, &code).await.unwrap();
    assert_eq!((refusal(&right), right.tokens.is_none()), ("denied".to_owned(), true));
    // Ten failures on the account (this flow's five and five more): locked; the right code is
    // answered as a wrong one.
    let f = c.sign_in("lena", PW).await.unwrap().flow_id;
    let code = s.code_for(phone).await;
    for _ in 0..5 {
        c.sms_code(&f, &wrong(&code)).await.unwrap();
    }
    let f = c.sign_in("lena", PW).await.unwrap().flow_id;
    let code = s.code_for(phone).await;
    let right = c.sms_code(&f, &code).await.unwrap();
    let wrong_answer = c.sms_code(&f, &wrong(&code)).await.unwrap();
    assert_eq!(refusal(&right), codes::LIMIT_EXCEEDED);
    assert_eq!((right.error, right.tokens.is_none()), (wrong_answer.error, true));
    assert_eq!(sessions().await, before, "no session from a right code refused");
    // After the delay, a new sign-in's code works.
    s.clock.advance(Duration::seconds(2));
    assert!(sign_in_sms(&s, "lena", phone).await.access_token.len() > 10);
    assert_eq!(sessions().await, before + 1);
}

async fn oob_2_twenty_parallel_submissions_of_one_sms_code_yield_one_session(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "edna").await;
    add_sms(&s, &t, "+14155550105").await;
    let a = s.client().sign_in("edna", PW).await.unwrap();
    let code = s.code_for("+14155550105").await;
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (c, barrier, f, code) = (s.client(), barrier.clone(), a.flow_id.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.sms_code(&f, &code).await.ok().and_then(|a| a.tokens).is_some()
        }));
    }
    let mut sessions = 0;
    for t in tasks {
        sessions += usize::from(t.await.unwrap());
    }
    assert_eq!(sessions, 1);
}

async fn rec_1_rec_2_recovery_codes_are_shown_once_and_stored_only_hashed(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "fay").await;
    let c = s.client();
    let e = c.regenerate_recovery_codes(&t.access_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "they stand in for a factor, so one must exist");
    add_sms(&s, &t, "+14155550106").await;
    let t = sign_in_sms(&s, "fay", "+14155550106").await;
    let set = c.regenerate_recovery_codes(&t.access_token).await.unwrap().codes;
    assert_eq!(set.len(), 10);
    let unique: std::collections::HashSet<_> = set.iter().collect();
    assert_eq!(unique.len(), 10);
    let dump = s.db.dump_text().await.unwrap();
    for code in &set {
        assert_eq!(code.len(), 29, "{code}: 24 Base32 characters (120 bits) in groups of four");
        assert!(!dump.contains(code.as_str()) && !dump.contains(&code.replace('-', "")), "stored hashed only");
    }
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    let rc = listed.iter().find(|f| f.kind == "recovery_codes").unwrap();
    assert_eq!(rc.remaining, Some(10));
    let body = s.raw().request("GET", "/v1/me/factors", Some(&t.access_token), None).await.body;
    assert!(set.iter().all(|code| !body.contains(code.as_str())), "never shown again");
    assert!(s.outbox().await.iter().any(|m| m.to == "fay@example.com" && m.subject.contains("New recovery codes")));
}

async fn recovery_codes_through_an_enroll_flow_take_effect_only_once_saved(b: Backend) {
    let s = start(b).await;
    let old = with_recovery_codes(&s, "vera", "+14155550120").await;
    let c = s.client();
    let t = sign_in_sms(&s, "vera", "+14155550120").await;
    let a = c.enroll_recovery_codes(&t.access_token).await.unwrap();
    let NextStep::SaveRecoveryCodes { codes } = a.next_step.clone() else { panic!("{:?}", a.next_step) };
    assert_eq!(codes.len(), 10);
    assert!(!s.db.dump_text().await.unwrap().contains(codes[0].as_str()), "sealed in the flow, not in clear");
    // Not saved yet: the old set still works, the new one does not.
    let f = recovery_step(&s, "vera").await;
    assert_eq!(refusal(&c.recovery_code(&f, &codes[0]).await.unwrap()), codes::CODE_MISMATCH);
    assert!(c.recovery_code(&f, &old[0]).await.unwrap().tokens.is_some());
    assert_eq!(c.save_recovery_codes(&a.flow_id).await.unwrap().next_step, NextStep::Done);
    let f = recovery_step(&s, "vera").await;
    assert_eq!(refusal(&c.recovery_code(&f, &old[1]).await.unwrap()), codes::CODE_MISMATCH, "the old set is gone");
    assert!(c.recovery_code(&f, &codes[0]).await.unwrap().tokens.is_some());
    let e = c.save_recovery_codes(&a.flow_id).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED), "shown and saved once");
}

/// A user with SMS and a recovery-code set; returns the codes.
async fn with_recovery_codes(s: &TestServer, name: &str, phone: &str) -> Vec<String> {
    let t = user(s, name).await;
    add_sms(s, &t, phone).await;
    let t = sign_in_sms(s, name, phone).await;
    s.client().regenerate_recovery_codes(&t.access_token).await.unwrap().codes
}

/// Password, then switch to the recovery-code step; returns the flow id.
async fn recovery_step(s: &TestServer, name: &str) -> String {
    let c = s.client();
    let a = c.sign_in(name, PW).await.unwrap();
    let NextStep::SmsCode { other_methods, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(other_methods, &vec![MfaMethod::RecoveryCode]);
    let r = c.select_mfa(&a.flow_id, MfaMethod::RecoveryCode).await.unwrap();
    assert!(matches!(r.next_step, NextStep::RecoveryCode { .. }), "{:?}", r.next_step);
    a.flow_id
}

async fn rec_3_parallel_recovery_code_submissions_yield_one_success(b: Backend) {
    let s = start(b).await;
    let set = with_recovery_codes(&s, "gus", "+14155550107").await;
    let mut flows = vec![];
    for _ in 0..4 {
        flows.push(recovery_step(&s, "gus").await);
    }
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20 {
        // Typed in lower case without dashes: the same code.
        let (c, barrier, f, code) =
            (s.client(), barrier.clone(), flows[i % 4].clone(), set[0].replace('-', "").to_lowercase());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            match c.recovery_code(&f, &code).await {
                Ok(a) if a.tokens.is_some() => Ok(()),
                Ok(a) => Err(refusal(&a)),
                Err(e) => Err(e.code().unwrap_or_default().to_owned()),
            }
        }));
    }
    let (mut ok, mut refused) = (0, vec![]);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(code) => refused.push(code),
        }
    }
    assert_eq!(ok, 1, "one code, one session; refused: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|c| [codes::CODE_MISMATCH, codes::LIMIT_EXCEEDED, codes::FLOW_COMPLETED, "denied"]
                .contains(&c.as_str())),
        "{refused:?}"
    );
    // The losers' failures set a delay on the second-factor counter; wait it out.
    s.clock.advance(Duration::hours(1));
    let t = sign_in_sms(&s, "gus", "+14155550107").await;
    let listed = s.client().factors(&t.access_token).await.unwrap().factors;
    assert_eq!(listed.iter().find(|f| f.kind == "recovery_codes").unwrap().remaining, Some(9), "down by exactly one");
}

async fn rec_4_a_used_code_is_refused_forever_the_user_is_told_and_a_new_set_replaces_the_old(b: Backend) {
    let s = start(b).await;
    let set = with_recovery_codes(&s, "hedy", "+14155550108").await;
    let c = s.client();
    let f = recovery_step(&s, "hedy").await;
    let t = c.recovery_code(&f, &set[1]).await.unwrap().tokens.unwrap();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["pwd".to_string(), "otp".into(), "mfa".into()]));
    let told = s
        .outbox()
        .await
        .into_iter()
        .find(|m| m.to == "hedy@example.com" && m.subject.contains("recovery code was used"));
    assert!(told.unwrap().body.contains("9 unused codes are left"));
    // Regenerating needs a fresh aal2 sign-in: a refreshed token of an 11-minute-old one is not.
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&t.refresh_token).await.unwrap();
    let e = c.regenerate_recovery_codes(&stale.access_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    s.clock.advance(Duration::days(30));
    let f = recovery_step(&s, "hedy").await;
    let r = c.recovery_code(&f, &set[1]).await.unwrap();
    assert_eq!((r.error.unwrap().code.as_str(), r.tokens.is_none()), (codes::CODE_MISMATCH, true), "used is wrong");
    let t = sign_in_sms(&s, "hedy", "+14155550108").await;
    let fresh = c.regenerate_recovery_codes(&t.access_token).await.unwrap().codes;
    let f = recovery_step(&s, "hedy").await;
    let r = c.recovery_code(&f, &set[2]).await.unwrap();
    assert_eq!(r.error.unwrap().code, codes::CODE_MISMATCH, "an unused code of the old set");
    assert!(c.recovery_code(&f, &fresh[0]).await.unwrap().tokens.is_some());
}

async fn rec_5_and_rl_1_recovery_code_guesses_share_the_second_factor_counter(b: Backend) {
    let s = start(b).await;
    let set = with_recovery_codes(&s, "ida", "+14155550109").await;
    let c = s.client();
    // Ten free consecutive failures on the account's second-factor counter: six wrong recovery
    // codes and four wrong SMS codes, across three sign-ins.
    let mut evaluated = 0;
    for _ in 0..2 {
        let f = recovery_step(&s, "ida").await;
        for _ in 0..3 {
            let r = c.recovery_code(&f, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF").await.unwrap();
            evaluated += usize::from(refusal(&r) == codes::CODE_MISMATCH);
        }
        c.select_mfa(&f, MfaMethod::Sms).await.unwrap();
        for _ in 0..2 {
            // The flow's fifth wrong answer ends it (`denied`); it was evaluated too.
            let r = c.sms_code(&f, "000000").await.unwrap();
            evaluated += usize::from([codes::CODE_MISMATCH, "denied"].contains(&refusal(&r).as_str()));
        }
    }
    assert_eq!(evaluated, 10);
    // Now a delay: a right recovery code is refused exactly like a wrong one (checklist RL-7).
    let f = recovery_step(&s, "ida").await;
    let body = |code: &str| Some(serde_json::json!({"step": "recovery_code", "code": code}));
    let right = s.raw().request("POST", &format!("/v1/flows/{f}"), None, body(&set[0])).await;
    let wrong = s.raw().request("POST", &format!("/v1/flows/{f}"), None, body("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")).await;
    assert_eq!(right.json()["error"]["code"], codes::LIMIT_EXCEEDED);
    assert_eq!((right.status, &right.json()["error"]), (wrong.status, &wrong.json()["error"]));
    assert_eq!(right.json()["next_step"]["type"], wrong.json()["next_step"]["type"]);
    s.clock.advance(Duration::seconds(2));
    let f = recovery_step(&s, "ida").await;
    assert!(c.recovery_code(&f, &set[0]).await.unwrap().tokens.is_some(), "after the delay, and it resets the count");
}

async fn rl_4_lockout_is_not_extended_by_attempts_and_the_second_factor_lock_is_permanent_at_the_cap(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.limits.code.free_attempts = 2;
        c.policy.limits.code.base_delay_secs = 60;
        c.policy.limits.code.hard_cap = 6;
        roomy(c);
    })
    .await;
    let t = user(&s, "jude").await;
    let secret = add_totp(&s, &t).await;
    let c = s.client();
    let mut evaluated = 0;
    let answer = |f: String| {
        let c = c.clone();
        async move { refusal(&c.totp_code(&f, "000000").await.unwrap()) }
    };
    // Two free failures, then each failure sets a delay (60 s, 120 s, …).
    for round in 0..6 {
        // A new sign-in each round: the delays outlast a pending sign-in's five minutes.
        let flow = c.sign_in("jude", PW).await.unwrap().flow_id;
        assert_eq!(answer(flow.clone()).await, codes::CODE_MISMATCH, "round {round}");
        evaluated += 1;
        if (1..5).contains(&round) {
            // While locked, attempts are refused unevaluated and do not extend the delay.
            let f = c.sign_in("jude", PW).await.unwrap().flow_id;
            for _ in 0..3 {
                assert_eq!(answer(f.clone()).await, codes::LIMIT_EXCEEDED);
            }
            let delay = 60 * (1 << (round - 1));
            s.clock.advance(Duration::seconds(delay));
        }
    }
    assert_eq!(evaluated, 6);
    // The cap is reached: no decay, however long one waits; a right code answers like a wrong one.
    s.clock.advance(Duration::days(30));
    let f = c.sign_in("jude", PW).await.unwrap().flow_id;
    let right = c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    let wrong = c.totp_code(&f, "000000").await.unwrap();
    assert_eq!((right.error.clone(), right.tokens.is_none()), (wrong.error.clone(), true));
    assert_eq!(right.error.unwrap().code, codes::LIMIT_EXCEEDED);
    // A password reset does not lift it (that would let a reset bypass MFA); an administrator can.
    s.reset_password_by_waiting("jude", "jude@example.com", "a brand new passphrase").await;
    let f = c.sign_in("jude", "a brand new passphrase").await.unwrap().flow_id;
    assert_eq!(refusal(&c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap()), codes::LIMIT_EXCEEDED);
    let r = s.raw().request("POST", "/admin/v1/users/jude/unlock", Some(latchkey_testkit::ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204);
    let f = c.sign_in("jude", "a brand new passphrase").await.unwrap().flow_id;
    assert!(c.totp_code(&f, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.is_some());
}

async fn life_1_and_life_5_a_changed_phone_counts_only_once_verified_and_the_old_one_is_told(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "kurt").await;
    add_sms(&s, &t, "+14155550110").await;
    let c = s.client();
    // Changing the number needs a recent aal2 sign-in.
    let t = sign_in_sms(&s, "kurt", "+14155550110").await;
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&t.refresh_token).await.unwrap();
    let e = c.enroll_sms(&stale.access_token, Some("+14155550111")).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    let t = sign_in_sms(&s, "kurt", "+14155550110").await;
    let change = c.enroll_sms(&t.access_token, Some("+14155550111")).await.unwrap();
    // Until the new number's code is right, the old number is the one sign-in uses.
    let a = c.sign_in("kurt", PW).await.unwrap();
    assert!(matches!(&a.next_step, NextStep::SmsCode { destination, .. } if destination.ends_with("0110")));
    assert_eq!(c.me(&t.access_token).await.unwrap().phone.as_deref(), Some("+14155550110"));
    c.verify_code(&change.flow_id, &s.code_for("+14155550111").await).await.unwrap();
    assert_eq!(c.me(&t.access_token).await.unwrap().phone.as_deref(), Some("+14155550111"));
    let out = s.outbox().await;
    assert!(out.iter().any(|m| m.to == "+14155550110" && m.subject.contains("phone number was changed")), "old number");
    assert!(out.iter().any(|m| m.to == "kurt@example.com" && m.subject.contains("phone number was changed")), "email");
    let t = sign_in_sms(&s, "kurt", "+14155550111").await;
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    assert_eq!(listed.iter().filter(|f| f.kind == "sms").count(), 1, "one phone factor, now the new number");
    // Checklist LIFE-1: every verified address hears of a new factor.
    add_totp(&s, &t).await;
    let out = s.outbox().await;
    for to in ["kurt@example.com", "+14155550111"] {
        assert!(out.iter().any(|m| m.to == to && m.subject.contains("authenticator app was added")), "{to}");
    }
}

async fn life_2_removing_a_factor_needs_a_fresh_aal2_sign_in_and_required_mfa_keeps_the_last(b: Backend) {
    let s = TestServer::start_with(b, with_mode(MfaMode::Required)).await;
    s.create_user("lena", PW).await;
    let c = s.client();
    // Required: a user without a factor sets one up inside the sign-in.
    let a = c.sign_in("lena", PW).await.unwrap();
    let NextStep::SetupTotp { secret, other_methods, .. } = a.next_step.clone() else { panic!("{:?}", a.next_step) };
    assert!(other_methods.is_empty(), "SMS set-up is off by default");
    let t = c.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    assert_eq!(c.me(&t.access_token).await.unwrap().acr, "aal2");
    let totp_id = c.factors(&t.access_token).await.unwrap().factors[0].id.clone();
    let e = c.remove_factor(&t.access_token, &totp_id).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::MFA_REQUIRED)), "the last factor stays");
    add_sms(&s, &t, "+14155550112").await;
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&t.refresh_token).await.unwrap();
    let e = c.remove_factor(&stale.access_token, &totp_id).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION), "a stale sign-in");
    let a = c.sign_in("lena", PW).await.unwrap();
    let sms = c.select_mfa(&a.flow_id, MfaMethod::Sms).await.unwrap();
    assert!(matches!(sms.next_step, NextStep::SmsCode { .. }));
    let t = c.sms_code(&a.flow_id, &s.code_for("+14155550112").await).await.unwrap().tokens.unwrap();
    c.remove_factor(&t.access_token, &totp_id).await.unwrap();
    assert!(
        s.outbox().await.iter().any(|m| m.to == "lena@example.com" && m.subject.contains("second factor was removed"))
    );
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    assert_eq!(listed.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), vec!["sms"]);
    let e = c.remove_factor(&t.access_token, &totp_id).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
}

async fn removing_the_last_strong_factor_takes_the_recovery_codes_with_it(b: Backend) {
    let s = start(b).await;
    with_recovery_codes(&s, "mona", "+14155550113").await;
    let c = s.client();
    let t = sign_in_sms(&s, "mona", "+14155550113").await;
    let sms = c.factors(&t.access_token).await.unwrap().factors.into_iter().find(|f| f.kind == "sms").unwrap();
    c.remove_factor(&t.access_token, &sms.id).await.unwrap();
    assert!(c.factors(&t.access_token).await.unwrap().factors.is_empty());
    assert_eq!(c.sign_in("mona", PW).await.unwrap().next_step, NextStep::Done, "optional MFA, no factor left");
}

async fn required_mfa_may_set_up_sms_inside_sign_in_where_policy_allows(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.mfa.mode = MfaMode::Required;
        c.policy.mfa.allow_sms_setup = true;
        roomy(c);
    })
    .await;
    s.create_user("nico", PW).await;
    let c = s.client();
    let a = c.sign_in("nico", PW).await.unwrap();
    let NextStep::SetupTotp { other_methods, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(other_methods, &vec![MfaMethod::Sms]);
    let v = c.setup_sms(&a.flow_id, Some("+14155550114")).await.unwrap();
    assert!(matches!(&v.next_step, NextStep::VerifyCode { destination, .. } if destination.ends_with("0114")));
    let t = c.verify_code(&a.flow_id, &s.code_for("+14155550114").await).await.unwrap().tokens.unwrap();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!((me.acr.as_str(), me.amr.clone()), ("aal2", vec!["pwd".to_string(), "sms".into(), "mfa".into()]));
    let listed = c.factors(&t.access_token).await.unwrap().factors;
    assert_eq!(listed.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(), vec!["sms"], "no pending app left behind");
    assert!(matches!(c.sign_in("nico", PW).await.unwrap().next_step, NextStep::SmsCode { .. }));
}

async fn mfa_off_signs_in_with_the_password_alone_and_adds_no_factor(b: Backend) {
    let s = TestServer::start_with(b, with_mode(MfaMode::Off)).await;
    let t = user(&s, "otto").await;
    let e = s.client().enroll_totp(&t.access_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST));
    assert_eq!(s.client().me(&t.access_token).await.unwrap().acr, "aal1");
}

async fn oob_6_and_flow_5_a_phishing_resistant_policy_offers_no_sms_and_totp_stays_below_aal2(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.mfa.require_phishing_resistant = true;
        roomy(c);
    })
    .await;
    let t = user(&s, "pia").await;
    let e = s.client().enroll_sms(&t.access_token, Some("+14155550115")).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_REQUEST), "SMS is not offered");
    let secret = add_totp(&s, &t).await;
    let c = s.client();
    let a = c.sign_in("pia", PW).await.unwrap();
    let t = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!(me.acr, "aal1", "TOTP is not phishing-resistant; amr still tells what was verified: {:?}", me.amr);
}

async fn oob_6_sms_codes_go_only_to_a_phone_verified_earlier(b: Backend) {
    let s = start(b).await;
    let c = s.client();
    // A phone given at sign-up but never verified is not a factor and gets no sign-in codes.
    let a = c
        .sign_up(&latchkey_testkit::proto::SignUpRequest {
            username: "quin".into(),
            password: Some(PW.into()),
            email: Some("quin@example.com".into()),
            phone: Some("+14155550116".into()),
            locale: None,
        })
        .await
        .unwrap();
    c.confirm_sign_up(&a.flow_id, &s.code_for("quin@example.com").await).await.unwrap();
    let t = s.sign_in("quin", PW).await;
    assert_eq!(s.messages_to("+14155550116").await, 0);
    // Enrolling the account's own phone still sends it a code first.
    let v = c.enroll_sms(&t.access_token, None).await.unwrap();
    assert_eq!(s.messages_to("+14155550116").await, 1);
    assert_eq!(c.sign_in("quin", PW).await.unwrap().next_step, NextStep::Done, "unverified: not offered");
    c.verify_code(&v.flow_id, &s.code_for("+14155550116").await).await.unwrap();
    assert!(matches!(c.sign_in("quin", PW).await.unwrap().next_step, NextStep::SmsCode { .. }));
}

async fn flow_1_an_mfa_pending_flow_opens_no_other_route(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "rita").await;
    add_sms(&s, &t, "+14155550117").await;
    let a = s.client().sign_in("rita", PW).await.unwrap();
    assert!(a.tokens.is_none());
    let handle = a.flow_id.clone();
    // Every route the OpenAPI document marks as needing a bearer token refuses the handle.
    let doc = s.raw().request("GET", "/openapi.json", None, None).await.json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let bearer = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !bearer {
                continue;
            }
            let concrete = path.replace("{id}", &handle).replace("{username}", "rita");
            let body = (method != "get" && method != "delete").then(|| serde_json::json!({}));
            let r = s.raw().request(&method.to_uppercase(), &concrete, Some(&handle), body).await;
            assert_eq!(r.status, 401, "{method} {path} with the pending handle: {}", r.body);
            checked += 1;
        }
    }
    assert!(checked >= 9, "checked {checked} routes");
    let r = s
        .raw()
        .request(
            "POST",
            "/v1/token",
            None,
            Some(serde_json::json!({"grant_type": "refresh_token", "refresh_token": handle})),
        )
        .await;
    assert_eq!(r.json()["error"]["code"], codes::INVALID_GRANT, "nor is it a refresh token");
    // The flow itself still works.
    assert!(s.client().sms_code(&a.flow_id, &s.code_for("+14155550117").await).await.unwrap().tokens.is_some());
}

async fn resend_at_the_sms_step_sends_a_new_code_and_keeps_the_attempt_count(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "saul").await;
    add_sms(&s, &t, "+14155550118").await;
    let c = s.client();
    let a = c.sign_in("saul", PW).await.unwrap();
    let first = s.code_for("+14155550118").await;
    c.sms_code(&a.flow_id, "000000").await.unwrap();
    let r = c.resend(&a.flow_id).await.unwrap();
    assert!(matches!(r.next_step, NextStep::SmsCode { attempts_left: 4, .. }), "{:?}", r.next_step);
    assert_eq!(r.expires_at, a.expires_at, "the pending sign-in does not live longer");
    let second = s.code_for("+14155550118").await;
    if first != second {
        assert_eq!(c.sms_code(&a.flow_id, &first).await.unwrap().error.unwrap().code, codes::CODE_MISMATCH);
    }
    assert!(c.sms_code(&a.flow_id, &second).await.unwrap().tokens.is_some());
}

async fn abandoned_steps_are_counted_once_the_flow_expires(b: Backend) {
    let s = start(b).await;
    let t = user(&s, "tess").await;
    add_sms(&s, &t, "+14155550119").await;
    let metric = |text: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with("latchkey_flow_steps_total")
                    && l.contains("outcome=\"abandoned\"")
                    && l.contains("step=\"sms_code\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = metric(&s.raw().request("GET", "/metrics", None, None).await.body);
    s.client().sign_in("tess", PW).await.unwrap();
    s.clock.advance(Duration::minutes(6));
    let mut after = before;
    for _ in 0..200 {
        after = metric(&s.raw().request("GET", "/metrics", None, None).await.body);
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(after > before, "an sms_code step left unanswered is reported as abandoned");
    // The worker claimed it: nothing is left for another sweep (or another replica) to count.
    assert!(s.auth.sweep_expired_flows(100).await.unwrap().is_empty());
}

// The step metrics are process-wide: this test runs alone.
both_stores_alone!(abandoned_steps_are_counted_once_the_flow_expires);

both_stores!(
    sms_factor_is_verified_before_use_and_sign_in_asks_for_its_code,
    oob_7_and_flow_2_an_email_code_never_lifts_a_session_to_aal2,
    select_mfa_lists_the_preferred_method_first_and_switching_keeps_the_attempt_count,
    flow_4_a_code_sent_for_one_sign_in_is_refused_in_another,
    oob_2_twenty_parallel_submissions_of_one_sms_code_yield_one_session,
    oob_3_a_right_sms_code_past_the_last_attempt_or_during_a_lock_takes_no_effect,
    rec_1_rec_2_recovery_codes_are_shown_once_and_stored_only_hashed,
    rec_3_parallel_recovery_code_submissions_yield_one_success,
    rec_4_a_used_code_is_refused_forever_the_user_is_told_and_a_new_set_replaces_the_old,
    rec_5_and_rl_1_recovery_code_guesses_share_the_second_factor_counter,
    recovery_codes_through_an_enroll_flow_take_effect_only_once_saved,
    rl_4_lockout_is_not_extended_by_attempts_and_the_second_factor_lock_is_permanent_at_the_cap,
    life_1_and_life_5_a_changed_phone_counts_only_once_verified_and_the_old_one_is_told,
    life_2_removing_a_factor_needs_a_fresh_aal2_sign_in_and_required_mfa_keeps_the_last,
    removing_the_last_strong_factor_takes_the_recovery_codes_with_it,
    required_mfa_may_set_up_sms_inside_sign_in_where_policy_allows,
    mfa_off_signs_in_with_the_password_alone_and_adds_no_factor,
    oob_6_and_flow_5_a_phishing_resistant_policy_offers_no_sms_and_totp_stays_below_aal2,
    oob_6_sms_codes_go_only_to_a_phone_verified_earlier,
    flow_1_an_mfa_pending_flow_opens_no_other_route,
    resend_at_the_sms_step_sends_a_new_code_and_keeps_the_attempt_count,
);
