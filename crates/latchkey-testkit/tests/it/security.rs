//! SECURITY-CHECKLIST items that apply to sign-up, password sign-in and recovery, each named
//! after its id. Concurrency claims use a barrier and real parallel HTTP requests.

use latchkey_testkit::latchkey_client::Client;
use latchkey_testkit::proto::{DenialReason, NextStep, SignUpRequest, codes};
use latchkey_testkit::{ADMIN_TOKEN, Backend, RawResponse, TestServer, captured_logs};
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

fn req(username: &str, email: &str) -> SignUpRequest {
    SignUpRequest {
        username: username.into(),
        password: Some(PW.into()),
        email: Some(email.into()),
        phone: None,
        locale: None,
    }
}

#[test]
fn a_code_is_found_as_a_number_but_not_inside_another_or_as_a_fraction() {
    for hit in ["123456", "code 123456.", "\"123456\"", "x.123456", "1 .123456"] {
        assert!(contains_number(hit, "123456"), "{hit}");
    }
    for miss in ["1234567", "0123456", "11:42:53.123456Z", "0.123456"] {
        assert!(!contains_number(miss, "123456"), "{miss}");
    }
}

fn other_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// `s` contains `digits` as a whole number (not inside a longer run of digits, and not the
/// fractional part of a decimal: `11:42:53.123456Z`, the microseconds of every log line's
/// timestamp, matched a six-digit code by chance now and then, since the log capture holds the
/// whole suite's lines).
fn contains_number(s: &str, digits: &str) -> bool {
    s.match_indices(digits).any(|(i, _)| {
        let mut back = s[..i].chars().rev();
        let before = back.next();
        let fraction = before == Some('.') && back.next().is_some_and(|c| c.is_ascii_digit());
        let before = before.is_some_and(|c| c.is_ascii_digit());
        let after = s[i + digits.len()..].chars().next().is_some_and(|c| c.is_ascii_digit());
        !before && !after && !fraction
    })
}

/// A response with its request id blanked, for byte comparisons.
fn without_request_id(r: &RawResponse) -> (u16, String, Vec<String>) {
    let mut body = r.json();
    if let Some(e) = body.get_mut("error") {
        e["request_id"] = serde_json::Value::Null;
    }
    let mut names: Vec<String> = r.headers.iter().map(|(k, _)| k.clone()).filter(|k| k != "date").collect();
    names.sort();
    (r.status, body.to_string(), names)
}

async fn sign_in_raw(s: &TestServer, username: &str, password: &str) -> RawResponse {
    s.raw()
        .request("POST", "/v1/sign-in", None, Some(serde_json::json!({"username": username, "password": password})))
        .await
}

async fn flow_3_a_pending_flow_expires_and_is_single_use(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("flow3", PW).await;
    s.raw().request("POST", "/admin/v1/users/flow3/require-password-change", Some(ADMIN_TOKEN), None).await;
    let c = s.client();
    let pending = c.sign_in("flow3", PW).await.unwrap();
    assert!(matches!(pending.next_step, NextStep::NewPassword { .. }));
    let done = c.new_password(&pending.flow_id, "first new passphrase").await.unwrap();
    assert!(done.tokens.is_some());
    let again = c.new_password(&pending.flow_id, "second new passphrase").await.unwrap_err();
    assert_eq!((again.status(), again.code()), (Some(409), Some(codes::FLOW_COMPLETED)));
    let polled = c.flow(&pending.flow_id).await.unwrap();
    assert_eq!(polled.next_step, NextStep::Done);
    assert!(polled.tokens.is_none(), "tokens are only in the answer that completed the flow");

    s.raw().request("POST", "/admin/v1/users/flow3/require-password-change", Some(ADMIN_TOKEN), None).await;
    let pending = c.sign_in("flow3", "first new passphrase").await.unwrap();
    s.clock.advance(Duration::minutes(5));
    let e = c.new_password(&pending.flow_id, "third new passphrase").await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_EXPIRED));
}

async fn flow_6_a_pending_flow_is_not_a_session_and_differs_from_the_tokens(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    c.sign_up(&req("flow6", "flow6@example.com")).await.unwrap();
    let pending = c.sign_in("flow6", PW).await.unwrap();
    for route in ["/v1/me", "/v1/me/sessions"] {
        let r = s.raw().request("GET", route, Some(&pending.flow_id), None).await;
        assert_eq!(r.status, 401, "{route} with a flow id");
    }
    let r = s
        .raw()
        .request(
            "POST",
            "/v1/token",
            None,
            Some(serde_json::json!({"grant_type": "refresh_token", "refresh_token": pending.flow_id})),
        )
        .await;
    assert_eq!(r.json()["error"]["code"], codes::INVALID_GRANT);
    let code = s.code_for("flow6@example.com").await;
    let t = c.confirm_sign_up(&pending.flow_id, &code).await.unwrap().tokens.unwrap();
    assert_ne!(t.access_token, pending.flow_id);
    assert_ne!(t.refresh_token, pending.flow_id);
    assert_eq!(s.raw().request("GET", "/v1/me", Some(&pending.flow_id), None).await.status, 401);
}

async fn oob_1_codes_are_six_random_digits_stored_only_as_macs_and_expire_in_ten_minutes(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&req("oob1", "oob1@example.com")).await.unwrap();
    let code = s.code_for("oob1@example.com").await;
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    let dump = s.db.dump_text().await.unwrap();
    assert!(!contains_number(&dump, &code), "the database holds the code in clear");
    s.clock.advance(Duration::minutes(10));
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap_err().code(), Some(codes::EXPIRED_CODE));
}

async fn oob_2_parallel_submissions_of_one_confirmation_code_yield_exactly_one_success(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = unconfirmed_sign_in(&c, "oob2").await;
    let code = s.code_for("oob2@example.com").await;
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (c, barrier, id, code) = (c.clone(), barrier.clone(), a.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.confirm_sign_up(&id, &code).await
        }));
    }
    let mut done = 0;
    let mut sessions = 0;
    for t in tasks {
        if let Ok(answer) = t.await.unwrap()
            && answer.next_step == NextStep::Done
        {
            done += 1;
            sessions += usize::from(answer.tokens.is_some());
        }
    }
    assert_eq!((done, sessions), (1, 1));
}

/// Sign up, then sign in while unconfirmed: a flow whose confirmation completes a sign-in.
async fn unconfirmed_sign_in(c: &Client, username: &str) -> String {
    c.sign_up(&req(username, &format!("{username}@example.com"))).await.unwrap();
    c.sign_in(username, PW).await.unwrap().flow_id
}

async fn oob_3_after_five_wrong_codes_even_the_right_code_is_refused_identically(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&req("oob3", "oob3@example.com")).await.unwrap();
    let code = s.code_for("oob3@example.com").await;
    for _ in 0..5 {
        c.confirm_sign_up(&a.flow_id, other_code(&code)).await.unwrap();
    }
    let body = |code: &str| serde_json::json!({"step": "confirm_sign_up", "code": code});
    let right = s.raw().request("POST", &format!("/v1/flows/{}", a.flow_id), None, Some(body(&code))).await;
    let wrong = s.raw().request("POST", &format!("/v1/flows/{}", a.flow_id), None, Some(body(other_code(&code)))).await;
    assert_eq!(right.json()["next_step"], serde_json::json!({"type": "denied", "reason": "too_many_attempts"}));
    assert_eq!(without_request_id(&right), without_request_id(&wrong));
    assert_eq!(right.body, wrong.body, "byte-identical");
    // A new code is required: signing in starts a new flow with a new code.
    let again = c.sign_in("oob3", PW).await.unwrap();
    let fresh = s.code_for("oob3@example.com").await;
    assert!(c.confirm_sign_up(&again.flow_id, &fresh).await.unwrap().tokens.is_some());
}

async fn oob_4_a_resend_does_not_reset_the_failure_count(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let a = c.sign_up(&req("oob4", "oob4@example.com")).await.unwrap();
    let first = s.code_for("oob4@example.com").await;
    for _ in 0..4 {
        c.confirm_sign_up(&a.flow_id, other_code(&first)).await.unwrap();
    }
    let r = c.resend(&a.flow_id).await.unwrap();
    assert!(matches!(r.next_step, NextStep::ConfirmSignUp { attempts_left: 1, .. }), "{r:?}");
    let fresh = s.code_for("oob4@example.com").await;
    let r = c.confirm_sign_up(&a.flow_id, other_code(&fresh)).await.unwrap();
    assert_eq!(r.next_step, NextStep::Denied { reason: DenialReason::TooManyAttempts });
    let r = c.confirm_sign_up(&a.flow_id, &fresh).await.unwrap();
    assert_eq!(r.next_step, NextStep::Denied { reason: DenialReason::TooManyAttempts });
}

async fn oob_5_sends_are_throttled_per_account_destination_ip_and_sms_budget(b: Backend) {
    // Per account: the sixth code in 15 minutes is refused and nothing reaches the sink.
    let s = TestServer::start(b).await;
    s.create_user("oob5", PW).await;
    let c = s.client();
    for _ in 0..4 {
        c.forgot_password("oob5").await.unwrap();
    }
    let e = c.forgot_password("OOB5").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(429), Some(codes::LIMIT_EXCEEDED)));
    assert_eq!(s.messages_to("oob5@example.com").await, 5, "sign-up code + 4 reset codes");
    s.clock.advance(Duration::minutes(15));
    c.forgot_password("oob5").await.unwrap();

    // Per destination: many accounts, one address.
    for i in 0..5 {
        c.sign_up(&req(&format!("dest{i}"), "victim@example.com")).await.unwrap();
    }
    let e = c.sign_up(&req("dest5", "victim@example.com")).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::LIMIT_EXCEEDED));
    assert_eq!(s.messages_to("victim@example.com").await, 5);

    // Per IP, and the global daily SMS budget.
    let s = TestServer::start_with(b, |c| {
        c.policy.limits.sends_per_ip = 3;
        c.policy.limits.sms_daily_budget = 2;
        c.policy.sign_up.require_email = false;
    })
    .await;
    let c = s.client();
    let phone = |i: u32| SignUpRequest {
        username: format!("sms{i}"),
        password: Some(PW.into()),
        email: None,
        phone: Some(format!("+1555000000{i}")),
        locale: None,
    };
    c.sign_up(&phone(1)).await.unwrap();
    c.sign_up(&phone(2)).await.unwrap();
    assert_eq!(c.sign_up(&phone(3)).await.unwrap_err().code(), Some(codes::LIMIT_EXCEEDED), "SMS budget");
    assert_eq!(s.outbox().await.iter().filter(|m| m.channel == "sms").count(), 2);
    assert_eq!(
        c.sign_up(&req("ip4", "ip4@example.com")).await.unwrap_err().code(),
        Some(codes::LIMIT_EXCEEDED),
        "per IP"
    );
}

async fn pwd_1_password_length_and_blocklist_rules_without_truncation(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let try_pw = |name: &str, pw: String| SignUpRequest {
        username: name.into(),
        password: Some(pw),
        email: Some(format!("{name}@example.com")),
        phone: None,
        locale: None,
    };
    let e = c.sign_up(&try_pw("p7", "Zq7!kd2".into())).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_PASSWORD)));
    assert!(e.to_string().contains("at least 8"), "{e}");
    let e = c.sign_up(&try_pw("pcommon", "iloveyou2".into())).await.unwrap_err();
    assert!(e.to_string().contains("too common"), "{e}");
    for (name, pw) in [
        ("p8", "Zq7!kd2x".to_string()),
        ("p64", "x".repeat(63) + "y"),
        ("p256", "ab".repeat(128)),
        ("plain", "alllowercaseletters".into()),
    ] {
        c.sign_up(&try_pw(name, pw)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let long_a = format!("{}A", "A".repeat(199));
    let long_b = format!("{}B", "A".repeat(199));
    let a = c.sign_up(&try_pw("p200", long_a.clone())).await.unwrap();
    let code = s.code_for("p200@example.com").await;
    c.confirm_sign_up(&a.flow_id, &code).await.unwrap();
    assert_eq!(c.sign_in("p200", &long_b).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED), "no truncation");
    assert!(c.sign_in("p200", &long_a).await.unwrap().tokens.is_some());
}

async fn pwd_2_nfc_and_nfd_spellings_of_a_password_are_one_password(b: Backend) {
    let s = TestServer::start(b).await;
    let nfc = "gr\u{fc}n \u{fc}ber alles";
    let nfd = "gru\u{308}n u\u{308}ber alles";
    s.create_user("pwd2", nfc).await;
    assert!(s.client().sign_in("pwd2", nfd).await.unwrap().tokens.is_some());
}

async fn pwd_4_passwords_are_argon2id_with_unique_salts(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("pwd4a", PW).await;
    s.create_user("pwd4b", PW).await;
    let store = s.auth.store();
    let a = store.user_by_username("pwd4a").await.unwrap().unwrap().password_hash.unwrap();
    let b = store.user_by_username("pwd4b").await.unwrap().unwrap().password_hash.unwrap();
    assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
    assert_ne!(a, b);
    let salt = |h: &str| h.split('$').nth(4).unwrap().to_owned();
    assert_ne!(salt(&a), salt(&b));
    assert!(salt(&a).len() >= 16, "salt ≥ 96 bits in base64");
    assert!(!s.db.dump_text().await.unwrap().contains(PW));
}

async fn rl_1_a_parallel_burst_and_a_slow_loop_never_exceed_the_failure_cap(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("rl1", PW).await;
    let barrier = Arc::new(Barrier::new(200));
    let mut tasks = vec![];
    for _ in 0..200 {
        let (raw, barrier) = (s.raw(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            raw.request(
                "POST",
                "/v1/sign-in",
                None,
                Some(serde_json::json!({"username": "rl1", "password": "wrong password!"})),
            )
            .await
            .status
        }));
    }
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((evaluated, refused), (5, 195), "five free attempts, then a delay set before any result is known");

    // Waiting out every delay: evaluations stop at the hard cap of 50.
    let mut total = evaluated;
    for _ in 0..60 {
        s.clock.advance(Duration::minutes(16));
        if sign_in_raw(&s, "rl1", "wrong password!").await.status == 401 {
            total += 1;
        }
    }
    assert_eq!(total, 50);
    s.clock.advance(Duration::days(2));
    assert_eq!(sign_in_raw(&s, "rl1", PW).await.status, 429, "locked until a password reset");
    s.reset_password_by_waiting("rl1", "rl1@example.com", "recovered passphrase").await;
    assert!(s.client().sign_in("rl1", "recovered passphrase").await.unwrap().tokens.is_some());
}

async fn rl_3_case_and_normalisation_variants_share_one_lockout_counter(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("alice", PW).await;
    for name in ["Alice", "ALICE", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", " alice ", "aLiCe"] {
        assert_eq!(sign_in_raw(&s, name, "wrong password!").await.status, 401, "{name}");
    }
    assert_eq!(sign_in_raw(&s, "alice", PW).await.status, 429);
    s.clock.advance(Duration::seconds(1));
    assert_eq!(sign_in_raw(&s, "alice", PW).await.status, 200);
}

async fn rl_5_responses_do_not_reveal_whether_an_account_exists(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("known", PW).await;
    // Sign-in: wrong password versus unknown user.
    let a = sign_in_raw(&s, "known", "wrong password!").await;
    let b2 = sign_in_raw(&s, "unknown-user", "wrong password!").await;
    assert_eq!(without_request_id(&a), without_request_id(&b2));
    // Forgot password.
    let a = s.raw().request("POST", "/v1/forgot-password", None, Some(serde_json::json!({"username": "known"}))).await;
    let b2 = s
        .raw()
        .request("POST", "/v1/forgot-password", None, Some(serde_json::json!({"username": "unknown-user"})))
        .await;
    assert_eq!(a.status, b2.status);
    assert_eq!(a.json()["next_step"], b2.json()["next_step"]);
    assert_eq!(without_request_id(&a).2, without_request_id(&b2).2, "same headers");
    // Registration: a taken username answers like a free one.
    let a = s
        .raw()
        .request(
            "POST",
            "/v1/sign-up",
            None,
            Some(serde_json::json!({"username": "known", "password": PW, "email": "x1@example.com"})),
        )
        .await;
    let b2 = s
        .raw()
        .request(
            "POST",
            "/v1/sign-up",
            None,
            Some(serde_json::json!({"username": "fresh", "password": PW, "email": "x2@example.com"})),
        )
        .await;
    assert_eq!(a.status, b2.status);
    assert_eq!(a.json()["next_step"], b2.json()["next_step"]);
    assert_eq!(without_request_id(&a).2, without_request_id(&b2).2);
}

/// Checklist RL-6 measures time, so it runs alone (see `exclusive_machine`), not in `both_stores!`.
mod rl_6 {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn rl_6_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password_sqlite() {
        let _alone = latchkey_testkit::exclusive_machine().await;
        super::rl_6_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(latchkey_testkit::Backend::Sqlite)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn rl_6_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password_postgres() {
        if latchkey_testkit::Backend::Postgres.available() {
            let _alone = latchkey_testkit::exclusive_machine().await;
            super::rl_6_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(
                latchkey_testkit::Backend::Postgres,
            )
            .await
        }
    }
}

async fn rl_6_sign_in_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        c.policy.limits.password.free_attempts = 1000;
        c.policy.limits.password.hard_cap = 100;
    })
    .await;
    s.create_user("timed", PW).await;
    let c = s.client();
    let time = |user: &'static str, pw: &'static str| {
        let c = c.clone();
        async move {
            let t = std::time::Instant::now();
            let _ = c.sign_in(user, pw).await;
            t.elapsed().as_secs_f64() * 1000.0
        }
    };
    for _ in 0..3 {
        time("timed", "warm-up attempt").await;
        time("nobody-here", "warm-up attempt").await;
    }
    let (mut known, mut unknown) = (vec![], vec![]);
    for i in 0..50 {
        let pw = if i % 10 == 0 { "" } else { "wrong password!" };
        unknown.push(time("nobody-here", pw).await);
        known.push(time("timed", pw).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    assert!((k - u).abs() < 5.0, "median {k:.2} ms for a known user, {u:.2} ms for an unknown one");
}

async fn rl_7_a_locked_account_answers_a_right_password_exactly_like_a_wrong_one(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("rl7", PW).await;
    for _ in 0..5 {
        sign_in_raw(&s, "rl7", "wrong password!").await;
    }
    let right = sign_in_raw(&s, "rl7", PW).await;
    let wrong = sign_in_raw(&s, "rl7", "wrong password!").await;
    assert_eq!(right.status, 429);
    assert_eq!(without_request_id(&right), without_request_id(&wrong));
    let unknown_locked = {
        for _ in 0..5 {
            sign_in_raw(&s, "ghost", "wrong password!").await;
        }
        sign_in_raw(&s, "ghost", "wrong password!").await
    };
    assert_eq!(without_request_id(&unknown_locked), without_request_id(&wrong), "an unknown user locks the same way");
}

async fn life_3_a_password_reset_gives_no_session_and_ends_existing_ones(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("life3", PW).await;
    let old = s.sign_in("life3", PW).await;
    let c = s.client();
    let done = s.reset_password_by_waiting("life3", "life3@example.com", "reset passphrase ok").await;
    assert_eq!((done.next_step, done.tokens), (NextStep::Done, None));
    assert_eq!(s.raw().request("GET", "/v1/me", Some(&old.access_token), None).await.status, 401);
    assert_eq!(c.refresh(&old.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    let fresh = c.sign_in("life3", "reset passphrase ok").await.unwrap();
    assert_eq!(fresh.next_step, NextStep::Done, "the next sign-in still goes through sign-in");
}

async fn log_1_no_password_code_or_token_reaches_the_logs_or_the_database(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    let pw = "log1 secret passphrase";
    let a = c
        .sign_up(&SignUpRequest {
            username: "log1".into(),
            password: Some(pw.into()),
            email: Some("log1@example.com".into()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    let code1 = s.code_for("log1@example.com").await;
    c.confirm_sign_up(&a.flow_id, &code1).await.unwrap();
    let _ = c.sign_in("log1", "log1 wrong passphrase").await;
    let t = s.sign_in("log1", pw).await;
    let t2 = c.refresh(&t.refresh_token).await.unwrap();
    let new_pw = "log1 new passphrase";
    let f = c.forgot_password("log1").await.unwrap();
    let code2 = s.code_for("log1@example.com").await;
    c.reset_password(&f.flow_id, &code2, new_pw).await.unwrap();
    s.clock.advance(Duration::seconds(61));
    assert_eq!(c.recovery_wait(&f.flow_id).await.unwrap().next_step, NextStep::Done);
    let _ = c.refresh(&t.refresh_token).await;

    let logs = captured_logs();
    let dump = s.db.dump_text().await.unwrap();
    let events = s.auth.store().audit_events(None, 1000).await.unwrap();
    let audit = format!("{events:?}");
    assert!(events.iter().any(|e| e.kind == "sign_in" && e.outcome == "failure"), "attempts are audited");
    assert!(events.iter().any(|e| e.kind == "refresh_reuse"));
    for (name, haystack) in [("logs", &logs), ("database", &dump), ("audit", &audit)] {
        for secret in [pw, "log1 wrong passphrase", new_pw, &t.refresh_token, &t2.refresh_token, &t.access_token] {
            assert!(!haystack.contains(secret), "{name} contains a secret");
        }
        for code in [&code1, &code2] {
            assert!(!contains_number(haystack, code), "{name} contains a code");
        }
    }
}

async fn log_2_with_the_database_down_nothing_is_issued_and_nothing_internal_leaks(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("log2", PW).await;
    s.db.close().await;
    for (method, path, body) in [
        ("POST", "/v1/sign-in", serde_json::json!({"username": "log2", "password": PW})),
        ("POST", "/v1/sign-up", serde_json::json!({"username": "log2b", "password": PW, "email": "log2b@example.com"})),
        ("POST", "/v1/forgot-password", serde_json::json!({"username": "log2"})),
    ] {
        let r = s.raw().request(method, path, None, Some(body)).await;
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        let e = r.json()["error"].clone();
        assert_eq!(e["code"], codes::UNAVAILABLE);
        assert!(e["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        for leak in ["sqlx", "pool", "sqlite", "postgres", "panicked", "src/"] {
            assert!(!r.body.to_lowercase().contains(leak), "{path} leaks {leak}: {}", r.body);
        }
        assert!(r.json().get("tokens").is_none());
    }
    assert_eq!(s.raw().request("GET", "/health/ready", None, None).await.status, 503);
    assert_eq!(s.raw().request("GET", "/health/live", None, None).await.status, 200);
}

async fn unbounded_usernames_never_reach_the_store(b: Backend) {
    let s = TestServer::start(b).await;
    // Issue 11, item 5: 60 KB usernames at every door that takes one are refused at the door, so
    // none becomes a counter or rate-limit key.
    let huge = "x".repeat(60 * 1024);
    let long = "y".repeat(65);
    // And control characters, which no username has: PostgreSQL cannot even store a NUL, so one
    // reaching a counter key was a 503 (found by schemathesis).
    let (nul, bell) = ("a\u{0}b".to_owned(), "\u{7}".to_owned());
    for name in [&huge, &long, &nul, &bell] {
        for (path, body) in [
            ("/v1/sign-in", serde_json::json!({"username": name, "password": "whatever it is"})),
            ("/v1/sign-in", serde_json::json!({"username": name})),
            ("/v1/forgot-password", serde_json::json!({"username": name})),
            ("/v1/recovery", serde_json::json!({"username": name})),
        ] {
            let r = s.raw().request("POST", path, None, Some(body)).await;
            assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{path}");
        }
    }
    let dump = s.db.dump_text().await.unwrap();
    assert!(!dump.contains(&long), "no key of the refused usernames was stored");
    // A 64-character name is a possible account, and answers as an unknown one.
    let r = sign_in_raw(&s, &"z".repeat(64), "whatever it is").await;
    assert_eq!(r.status, 401);
}

async fn input_that_would_turn_into_something_else_is_refused_at_the_door(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.require_email = false).await;
    s.create_user("victim1", PW).await;
    // Issue 11, item 6: an address is accepted only if it is delivered as typed.
    for email in [
        "x<attacker@evil.example>",
        "Victim <attacker@evil.example>",
        "=?utf-8?q?attacker=40evil.example?=@victim.example",
        "\"attacker@evil.example\"@victim.example",
    ] {
        let body = serde_json::json!({"username": "someone", "password": PW, "email": email});
        let r = s.raw().request("POST", "/v1/sign-up", None, Some(body)).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{email}");
    }
    assert_eq!(s.messages_to("attacker@evil.example").await, 0);
    // A username that passes for another (a Cyrillic і) is refused, not a second account.
    let body = serde_json::json!({"username": "v\u{0456}ctim1", "password": PW, "email": "v@example.com"});
    let r = s.raw().request("POST", "/v1/sign-up", None, Some(body)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    // A device name cannot forge lines or links in the notices that quote it.
    let c = s.client();
    let phone = "+14155550414";
    let req =
        SignUpRequest { username: "dana".into(), password: None, email: None, phone: Some(phone.into()), locale: None };
    let a = c.sign_up(&req).await.unwrap();
    let e = c.confirm_sign_up(&a.flow_id, &s.code_for(phone).await).await.unwrap();
    let ks = latchkey_client::SoftwareKeystore::new();
    for name in
        ["Phone\r\nYour account is safe", "Phone \u{202E}enohp", "Get help at https://evil.example", "<b>Phone</b>"]
    {
        let err = c.enroll_device_step(&e, &ks, name, "ios", "371946").await.unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(400), Some(codes::INVALID_REQUEST)), "{name:?}");
    }
    assert!(c.enroll_device_step(&e, &ks, "Dana's phone", "ios", "371946").await.unwrap().1.tokens.is_some());
}

both_stores!(
    input_that_would_turn_into_something_else_is_refused_at_the_door,
    unbounded_usernames_never_reach_the_store,
    flow_3_a_pending_flow_expires_and_is_single_use,
    flow_6_a_pending_flow_is_not_a_session_and_differs_from_the_tokens,
    oob_1_codes_are_six_random_digits_stored_only_as_macs_and_expire_in_ten_minutes,
    oob_2_parallel_submissions_of_one_confirmation_code_yield_exactly_one_success,
    oob_3_after_five_wrong_codes_even_the_right_code_is_refused_identically,
    oob_4_a_resend_does_not_reset_the_failure_count,
    oob_5_sends_are_throttled_per_account_destination_ip_and_sms_budget,
    pwd_1_password_length_and_blocklist_rules_without_truncation,
    pwd_2_nfc_and_nfd_spellings_of_a_password_are_one_password,
    pwd_4_passwords_are_argon2id_with_unique_salts,
    rl_1_a_parallel_burst_and_a_slow_loop_never_exceed_the_failure_cap,
    rl_3_case_and_normalisation_variants_share_one_lockout_counter,
    rl_5_responses_do_not_reveal_whether_an_account_exists,
    rl_7_a_locked_account_answers_a_right_password_exactly_like_a_wrong_one,
    life_3_a_password_reset_gives_no_session_and_ends_existing_ones,
    log_1_no_password_code_or_token_reaches_the_logs_or_the_database,
    log_2_with_the_database_down_nothing_is_issued_and_nothing_internal_leaks,
);
