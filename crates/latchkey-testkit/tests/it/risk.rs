//! Risk-based decisions (`[policy.risk]`): each signal's decision from a forwarded address and
//! the fake clock, the notice of an unfamiliar sign-in with its one-tap "this wasn't me", the
//! timeline's places and reasons, and the metric.

use super::devices::aal2_user_and_secret as with_totp;
use latchkey_client::{Client, SoftwareKeystore, Unlock};
use latchkey_testkit::proto::{NextStep, SignUpRequest, StepUpRequest, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims, totp_code};
use time::Duration;

const PW: &str = "correct horse battery";
const BERLIN: &str = "198.51.100.7";
const HAMBURG: &str = "192.0.2.50";
const SYDNEY: &str = "203.0.113.9";
/// In the test GeoIP file (Paris) and on the distrust list.
const DISTRUSTED: &str = "2001:db8:bad::1";
const UA: &str = "LatchkeyRiskTest/1.0 (test)";

fn geoip() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geoip-test.mmdb").into()
}

/// A server that trusts `X-Forwarded-For`, with the test GeoIP file and `2001:db8:bad::/48`
/// distrusted, its policy changed by `f`.
async fn server(b: Backend, f: impl FnOnce(&mut latchkey_server::config::Config)) -> TestServer {
    TestServer::start_with(b, |c| {
        c.trust_forwarded_for = true;
        let list = c.data_dir.join("distrusted.txt");
        std::fs::create_dir_all(&c.data_dir).unwrap();
        std::fs::write(&list, "# test list\n2001:db8:bad::/48\n").unwrap();
        c.policy.risk.ip_reputation_file = Some(list.display().to_string());
        c.policy.risk.geoip_file = Some(geoip());
        f(c);
    })
    .await
}

/// An account signed up and signed in from `ip` (which becomes familiar); its tokens.
async fn account_at(s: &TestServer, name: &str, ip: &str) -> latchkey_testkit::proto::Tokens {
    let c = s.client_at(ip, UA);
    let email = format!("{name}@example.com");
    let req = SignUpRequest {
        username: name.into(),
        password: Some(PW.into()),
        email: Some(email.clone()),
        phone: None,
        locale: None,
    };
    let a = c.sign_up(&req).await.unwrap();
    c.confirm_sign_up(&a.flow_id, &s.code_for(&email).await).await.unwrap();
    c.sign_in(name, PW).await.unwrap().tokens.expect("a familiar place signs in with the password")
}

/// The risk events of an account's timeline, newest first: (outcome, reasons, place country).
async fn risk_events(c: &Client, token: &str) -> Vec<(String, Vec<String>, Option<String>)> {
    let page = c.events(token, None, Some(100)).await.unwrap();
    page.events
        .into_iter()
        .filter(|e| e.kind == "risk")
        .map(|e| {
            let reasons =
                e.detail["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
            (e.outcome, reasons, e.place.and_then(|p| p.country))
        })
        .collect()
}

/// The "this wasn't me" token in the newest notice to `to` with `subject`.
async fn report_token(s: &TestServer, to: &str, subject: &str) -> String {
    let messages = s.outbox().await;
    let m = messages.iter().rev().find(|m| m.to == to && m.subject.ends_with(subject));
    let shown: Vec<(&str, &str)> = messages.iter().map(|m| (m.to.as_str(), m.subject.as_str())).collect();
    let m = m.unwrap_or_else(|| panic!("no notice {subject:?} to {to} in {shown:?}"));
    let at = m.body.find("token=").expect("a one-tap link") + "token=".len();
    m.body[at..].split_whitespace().next().unwrap().to_owned()
}

async fn risk_an_unfamiliar_sign_in_is_told_and_the_one_tap_report_ends_it(b: Backend) {
    let s = server(b, |_| {}).await;
    account_at(&s, "una", BERLIN).await;
    let thief = s.client_at(HAMBURG, "Thief browser");
    s.clock.advance(Duration::hours(2));
    // Another network and user agent: allowed (the default policy), with a notice.
    let t = thief.sign_in("una", PW).await.unwrap().tokens.expect("new network alone only notifies");
    let token = report_token(&s, "una@example.com", "New sign-in to your account").await;
    let notice =
        s.outbox().await.into_iter().rev().find(|m| m.subject.ends_with("New sign-in to your account")).unwrap();
    assert!(notice.body.contains(HAMBURG) && notice.body.contains("Hamburg, DE"), "{}", notice.body);
    assert!(notice.body.contains("new_network, new_device"), "{}", notice.body);
    let home_client = s.client_at(BERLIN, UA);
    let home = home_client.sign_in("una", PW).await.unwrap().tokens.unwrap();
    assert_eq!(
        risk_events(&home_client, &home.access_token).await,
        [("allow".to_owned(), vec!["new_network".to_owned(), "new_device".to_owned()], Some("DE".to_owned()))]
    );
    // The owner taps "this wasn't me": that session ends, the others stay.
    assert_eq!(s.client().this_wasnt_me(&token).await.unwrap().outcome, "sign_in_ended");
    assert_eq!(thief.me(&t.access_token).await.unwrap_err().status(), Some(401));
    assert!(thief.refresh(&t.refresh_token).await.is_err());
    home_client.me(&home.access_token).await.unwrap();
    assert_eq!(s.client().this_wasnt_me(&token).await.unwrap_err().status(), Some(404), "single use");
    // The account is marked: the next sign-in, even from home, asks for a second factor (the
    // account has no factor, so a code to its verified email).
    let again = home_client.sign_in("una", PW).await.unwrap();
    assert!(matches!(again.next_step, NextStep::EmailCode { .. }), "{:?}", again.next_step);
    let code = s.code_for("una@example.com").await;
    let done = home_client.email_code(&again.flow_id, &code).await.unwrap().tokens.unwrap();
    assert_eq!(jwt_claims(&done.access_token)["amr"], serde_json::json!(["pwd", "email"]));
    let events = risk_events(&home_client, &done.access_token).await;
    assert_eq!(events[0].0, "require_second_factor");
    assert_eq!(events[0].1, ["recent_report"]);
    // A week later the mark is gone.
    s.clock.advance(Duration::days(8));
    assert!(home_client.sign_in("una", PW).await.unwrap().tokens.is_some());
    let text = s.raw().request("GET", "/metrics", None, None).await.body;
    for needle in [
        r#"latchkey_risk_decisions_total{decision="allow",reason="new_network"}"#,
        r#"latchkey_risk_decisions_total{decision="require_second_factor",reason="recent_report"}"#,
        r#"latchkey_risk_decisions_total{decision="allow",reason="none"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}

async fn risk_a_new_country_and_impossible_travel_ask_for_a_second_factor(b: Backend) {
    let s = server(b, |_| {}).await;
    account_at(&s, "ines", BERLIN).await;
    // Hamburg an hour later: a new network in a known country, 255 km away: allowed.
    s.clock.advance(Duration::hours(1));
    assert!(s.client_at(HAMBURG, UA).sign_in("ines", PW).await.unwrap().tokens.is_some());
    // Sydney an hour after that: 16,000 km in an hour, and a new country.
    s.clock.advance(Duration::hours(1));
    let sydney = s.client_at(SYDNEY, UA);
    let a = sydney.sign_in("ines", PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::EmailCode { .. }), "{:?}", a.next_step);
    let t = sydney.email_code(&a.flow_id, &s.code_for("ines@example.com").await).await.unwrap().tokens.unwrap();
    let events = risk_events(&sydney, &t.access_token).await;
    assert_eq!(
        events[0],
        (
            "require_second_factor".to_owned(),
            ["new_network", "new_country", "impossible_travel"].map(String::from).to_vec(),
            Some("AU".to_owned())
        )
    );
    // The timeline places every sign-in it can.
    let page = sydney.events(&t.access_token, None, Some(100)).await.unwrap();
    let places: Vec<Option<String>> =
        page.events.iter().filter(|e| e.kind == "sign_in").map(|e| e.place.clone().and_then(|p| p.city)).collect();
    assert!(places.contains(&Some("Sydney".into())) && places.contains(&Some("Berlin".into())), "{places:?}");
    // Once the second factor vouched for Sydney it is familiar; Berlin a day later is a flight.
    s.clock.advance(Duration::days(1));
    assert!(sydney.sign_in("ines", PW).await.unwrap().tokens.is_some());
    s.clock.advance(Duration::days(1));
    assert!(s.client_at(BERLIN, UA).sign_in("ines", PW).await.unwrap().tokens.is_some());
}

async fn risk_a_distrusted_network_is_refused_like_a_wrong_password(b: Backend) {
    let s = server(b, |_| {}).await;
    let home = account_at(&s, "dora", BERLIN).await;
    let bad = s.client_at(DISTRUSTED, UA);
    let right = bad.sign_in("dora", PW).await.unwrap_err();
    let wrong = bad.sign_in("dora", "not the password").await.unwrap_err();
    assert_eq!((right.status(), right.code()), (Some(401), Some(codes::NOT_AUTHORIZED)));
    assert_eq!((wrong.status(), wrong.code()), (right.status(), right.code()), "no password oracle");
    // Only the right password tells the owner (a wrong one could be anyone's typo).
    let refused: Vec<_> = s.outbox().await.into_iter().filter(|m| m.subject.contains("was refused")).collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].body.contains("ip_reputation") && refused[0].body.contains("token="), "{}", refused[0].body);
    let home_client = s.client_at(BERLIN, UA);
    let events = risk_events(&home_client, &home.access_token).await;
    assert_eq!(events.len(), 2, "the right and the wrong password");
    for (decision, reasons, country) in &events {
        assert_eq!((decision.as_str(), reasons[0].as_str(), country.as_deref()), ("deny", "ip_reputation", Some("FR")));
    }
    // A step-up from there is refused too, with the session's own token.
    let e = bad.step_up(&home.access_token, &StepUpRequest::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    // Unknown usernames from there get the same answer, and nobody's timeline shows them.
    let e = bad.sign_in("nobody-here", PW).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::NOT_AUTHORIZED));
    // A device's own sign-in from there is asked to sign like an unknown device's, and fails.
    let (id, ks, _) = s.passwordless_account("dex", "+14155550177", Some("dex@example.com"), "371946").await;
    let keys = std::sync::Arc::new(ks.clone());
    let phone_there = s.client_at(DISTRUSTED, UA).with_device_key(keys.clone(), &id).unwrap();
    let a = phone_there.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap();
    assert!(a.tokens.is_none() && a.error.is_some(), "{a:?}");
    let phone_home = s.client_at(BERLIN, UA).with_device_key(keys, &id).unwrap();
    assert!(phone_home.device_sign_in(&id, &ks, Unlock::Biometric).await.unwrap().tokens.is_some());
    // A new phone's first sign-in from there looks like a username with no account: the same
    // step, and no code is sent.
    let sms = s.messages_to("+14155550177").await;
    let a = bad.sign_in_new_device("dex").await.unwrap();
    assert!(matches!(a.next_step, NextStep::SmsCode { .. }), "{:?}", a.next_step);
    assert_eq!(s.messages_to("+14155550177").await, sms, "no code for a refused sign-in");
    let a = s.client_at(BERLIN, UA).sign_in_new_device("dex").await.unwrap();
    assert!(matches!(a.next_step, NextStep::SmsCode { .. }), "{:?}", a.next_step);
    assert_eq!(s.messages_to("+14155550177").await, sms + 1, "from home the code goes");
}

async fn risk_failure_velocity_per_account_and_per_source(b: Backend) {
    let s = server(b, |c| {
        c.policy.risk.account_failures = 3;
        c.policy.risk.source_failures = 4;
        c.policy.risk.delay_secs = 1;
    })
    .await;
    account_at(&s, "vera", BERLIN).await;
    let home = s.client_at(BERLIN, UA);
    // Three wrong passwords for this account (from anywhere): the right one needs a second factor.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert!(s.client_at(ip, UA).sign_in("vera", "guess").await.is_err());
    }
    let a = home.sign_in("vera", PW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::EmailCode { .. }), "{:?}", a.next_step);
    // Fifteen minutes on, the window is empty again.
    s.clock.advance(Duration::minutes(16));
    assert!(home.sign_in("vera", PW).await.unwrap().tokens.is_some());
    // Stuffing: four failures across accounts from one address delay its next answers.
    let stuffer = s.client_at("198.51.100.66", UA);
    for name in ["a1", "a2", "a3", "a4"] {
        assert!(stuffer.sign_in(name, "123456").await.is_err());
    }
    let started = std::time::Instant::now();
    assert!(stuffer.sign_in("vera", PW).await.unwrap().tokens.is_some(), "the default rule only delays");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "held for delay_secs");
    let t = home.sign_in("vera", PW).await.unwrap().tokens.unwrap();
    let events = risk_events(&home, &t.access_token).await;
    assert_eq!(events[0].0, "delay");
    assert_eq!(events[0].1, ["source_failures"]);
}

async fn risk_a_remembered_client_is_refused_and_forgotten_on_a_risk_signal(b: Backend) {
    let s = server(b, |_| {}).await;
    let (t, secret) = with_totp(&s, "remy").await;
    let ks = SoftwareKeystore::new();
    let berlin = s.client_at(BERLIN, UA);
    let remembered = berlin.remember_client(&t.access_token, &ks, "Laptop").await.unwrap();
    // Used from Berlin: the second factor is skipped.
    s.clock.advance(Duration::hours(1));
    assert_eq!(berlin.sign_in_remembered("remy", PW, &remembered.id, &ks).await.unwrap().next_step, NextStep::Done);
    // The same key an hour later from Sydney: it is somewhere it cannot be. Forgotten; TOTP asked.
    s.clock.advance(Duration::hours(1));
    let sydney = s.client_at(SYDNEY, UA);
    let a = sydney.sign_in_remembered("remy", PW, &remembered.id, &ks).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    let done = sydney.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    assert!(sydney.devices(&done.access_token).await.unwrap().remembered_clients.is_empty(), "forgotten");
    // Back home it is not remembered any more either.
    s.clock.advance(Duration::days(1));
    let a = berlin.sign_in_remembered("remy", PW, &remembered.id, &ks).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    // A new country alone (no impossible travel) asks for the second factor but keeps the client.
    let (t2, _) = with_totp(&s, "rosa").await;
    let ks2 = SoftwareKeystore::new();
    let kept = berlin.remember_client(&t2.access_token, &ks2, "Laptop").await.unwrap();
    let _ = berlin.sign_in_remembered("rosa", PW, &kept.id, &ks2).await.unwrap();
    s.clock.advance(Duration::days(2));
    let a = sydney.sign_in_remembered("rosa", PW, &kept.id, &ks2).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    s.clock.advance(Duration::days(2));
    let a = berlin.sign_in_remembered("rosa", PW, &kept.id, &ks2).await.unwrap();
    assert_eq!(a.next_step, NextStep::Done, "still remembered");
}

async fn risk_a_recent_recovery_is_recorded_and_the_operator_may_ask_a_second_factor_for_it(b: Backend) {
    let s = server(b, |c| c.policy.risk.rules.recent_change = latchkey_core::settings::RiskAction::RequireSecondFactor)
        .await;
    account_at(&s, "rhys", BERLIN).await;
    let c = s.client_at(BERLIN, UA);
    let a = c.forgot_password("rhys").await.unwrap();
    let code = s.code_for("rhys@example.com").await;
    c.reset_password(&a.flow_id, &code, "a brand new passphrase").await.unwrap();
    s.clock.advance(Duration::seconds(61));
    assert_eq!(c.recovery_wait(&a.flow_id).await.unwrap().next_step, NextStep::Done);
    // Recovered a minute ago: this operator asks for a second factor at the next sign-in.
    let a = c.sign_in("rhys", "a brand new passphrase").await.unwrap();
    assert!(matches!(a.next_step, NextStep::EmailCode { .. }), "{:?}", a.next_step);
    let t = c.email_code(&a.flow_id, &s.code_for("rhys@example.com").await).await.unwrap().tokens.unwrap();
    let events = risk_events(&c, &t.access_token).await;
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_slice()),
        ("require_second_factor", &["recent_change".to_owned()][..])
    );
    // Eight days on, nothing is recent.
    s.clock.advance(Duration::days(8));
    assert!(c.sign_in("rhys", "a brand new passphrase").await.unwrap().tokens.is_some());
}

async fn ses_8_a_refresh_from_another_network_needs_a_step_up_before_a_sensitive_call(b: Backend) {
    let s = server(b, |_| {}).await;
    let t = account_at(&s, "seb", BERLIN).await;
    let berlin = s.client_at(BERLIN, UA);
    let a = berlin.enroll_totp(&t.access_token).await.unwrap();
    let NextStep::SetupTotp { secret, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    berlin.setup_totp(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap();
    s.clock.advance(Duration::seconds(30));
    let f = berlin.sign_in("seb", PW).await.unwrap();
    let t = berlin.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    // Refreshed where it runs: nothing changes.
    let t = berlin.refresh(&t.refresh_token).await.unwrap();
    assert_eq!(berlin.regenerate_recovery_codes(&t.access_token).await.unwrap().codes.len(), 10);
    // Refreshed from another network (the laptop went to a café, or the token was stolen): the
    // session goes on, but its next sensitive call needs a step-up. The level is not raised.
    let cafe = s.client_at(HAMBURG, UA);
    let moved = cafe.refresh(&t.refresh_token).await.unwrap();
    assert_eq!(jwt_claims(&moved.access_token)["acr"], "aal2");
    cafe.me(&moved.access_token).await.unwrap();
    let e = cafe.regenerate_recovery_codes(&moved.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    // The step-up asks for the factor even though the session is aal2 and fresh, and clears it.
    let a = cafe.step_up(&moved.access_token, &StepUpRequest::default()).await.unwrap();
    assert!(matches!(a.next_step, NextStep::TotpCode { .. }), "{:?}", a.next_step);
    s.clock.advance(Duration::seconds(30));
    let raised = cafe.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    assert_eq!(cafe.regenerate_recovery_codes(&raised.access_token).await.unwrap().codes.len(), 10);
    // The session now runs at the café: refreshing there asks nothing more.
    let again = cafe.refresh(&raised.refresh_token).await.unwrap();
    assert_eq!(cafe.regenerate_recovery_codes(&again.access_token).await.unwrap().codes.len(), 10);
    // An updated browser is not a move; another user agent is, and the timeline says why.
    let updated = s.client_at(HAMBURG, "LatchkeyRiskTest/1.1 (test)");
    let again = updated.refresh(&again.refresh_token).await.unwrap();
    assert_eq!(updated.regenerate_recovery_codes(&again.access_token).await.unwrap().codes.len(), 10);
    let other = s.client_at(HAMBURG, "Another browser");
    let t = other.refresh(&again.refresh_token).await.unwrap();
    let e = other.regenerate_recovery_codes(&t.access_token).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    let page = other.events(&t.access_token, None, Some(100)).await.unwrap();
    let flagged: Vec<&serde_json::Value> = page
        .events
        .iter()
        .filter(|e| e.kind == "risk" && e.outcome == "require_step_up")
        .map(|e| &e.detail["reasons"])
        .collect();
    assert_eq!(flagged, [&serde_json::json!(["new_device"]), &serde_json::json!(["new_network"])]);
}

async fn risk_a_phishing_resistant_factor_is_the_enrolled_phones_approval_or_nothing(b: Backend) {
    use latchkey_core::settings::RiskAction;
    let s = server(b, |c| c.policy.risk.rules.new_country = RiskAction::RequirePhishingResistant).await;
    // An account with TOTP and an enrolled phone: from a new country only the phone is offered.
    let (t, secret) = with_totp(&s, "pia").await;
    let ks = SoftwareKeystore::new();
    let (_, done) = s.client().enroll_device(&t.access_token, &ks, "Pia's phone", "android", "371946").await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let berlin = s.client_at(BERLIN, UA);
    let f = berlin.sign_in("pia", PW).await.unwrap();
    assert!(matches!(f.next_step, NextStep::SelectMfa { .. }), "at home, any factor: {:?}", f.next_step);
    berlin.select_mfa(&f.flow_id, latchkey_testkit::proto::MfaMethod::Totp).await.unwrap();
    s.clock.advance(Duration::seconds(30));
    berlin.totp_code(&f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    s.clock.advance(Duration::days(2));
    let a = s.client_at(SYDNEY, UA).sign_in("pia", PW).await.unwrap();
    assert_eq!(a.next_step, NextStep::SelectMfa { methods: vec![latchkey_testkit::proto::MfaMethod::PushApproval] });
    // An account with TOTP only has nothing phishing-resistant: refused like a wrong password.
    let (_, secret) = with_totp(&s, "quin").await;
    s.clock.advance(Duration::seconds(30));
    let berlin_f = berlin.sign_in("quin", PW).await.unwrap();
    berlin.totp_code(&berlin_f.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();
    s.clock.advance(Duration::days(2));
    let e = s.client_at(SYDNEY, UA).sign_in("quin", PW).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::NOT_AUTHORIZED)));
    assert!(s.outbox().await.iter().any(|m| m.to == "quin@example.com" && m.subject.contains("was refused")));
}

both_stores!(
    risk_a_phishing_resistant_factor_is_the_enrolled_phones_approval_or_nothing,
    ses_8_a_refresh_from_another_network_needs_a_step_up_before_a_sensitive_call,
    risk_a_recent_recovery_is_recorded_and_the_operator_may_ask_a_second_factor_for_it,
    risk_an_unfamiliar_sign_in_is_told_and_the_one_tap_report_ends_it,
    risk_a_new_country_and_impossible_travel_ask_for_a_second_factor,
    risk_a_distrusted_network_is_refused_like_a_wrong_password,
    risk_failure_velocity_per_account_and_per_source,
    risk_a_remembered_client_is_refused_and_forgotten_on_a_risk_signal,
);
