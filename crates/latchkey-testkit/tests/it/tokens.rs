//! Tokens and sessions: rotation and reuse detection, revocation on the next request, the JWT
//! verified against the published JWKS, forged tokens refused, and replicas acting as one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_testkit::proto::{SignOutScope, codes};
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer};
use std::collections::HashSet;
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

async fn me_status(s: &TestServer, access: &str) -> u16 {
    s.raw().request("GET", "/v1/me", Some(access), None).await.status
}

async fn ses_1_tokens_are_long_random_and_die_at_sign_out(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("ses1", PW).await;
    let c = s.client();
    let mut t = s.sign_in("ses1", PW).await;
    let mut seen = HashSet::new();
    for _ in 0..200 {
        assert_eq!(URL_SAFE_NO_PAD.decode(&t.refresh_token).unwrap().len(), 32, "256-bit refresh tokens");
        assert!(seen.insert(t.refresh_token.clone()), "a refresh token repeated");
        t = c.refresh(&t.refresh_token).await.unwrap();
    }
    assert_eq!(me_status(&s, &t.access_token).await, 200);
    c.sign_out(&t.access_token, SignOutScope::Session).await.unwrap();
    assert_eq!(me_status(&s, &t.access_token).await, 401, "the access token dies with its session");
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
}

async fn ses_2_a_reused_refresh_token_revokes_the_whole_family(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("ses2", PW).await;
    let c = s.client();
    let t0 = s.sign_in("ses2", PW).await;
    let t1 = c.refresh(&t0.refresh_token).await.unwrap();
    assert_ne!(t1.refresh_token, t0.refresh_token);
    assert_ne!(t1.access_token, t0.access_token);
    let e = c.refresh(&t0.refresh_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_GRANT)));
    assert_eq!(
        c.refresh(&t1.refresh_token).await.unwrap_err().code(),
        Some(codes::INVALID_GRANT),
        "the new token died too"
    );
    assert_eq!(me_status(&s, &t1.access_token).await, 401);
    let events = s.auth.store().audit_events(None, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "refresh_reuse"), "an audit event records the reuse");
}

async fn ses_3_parallel_refreshes_of_one_token_leave_at_most_one_winner_and_a_dead_family(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("ses3", PW).await;
    let t = s.sign_in("ses3", PW).await;
    let barrier = Arc::new(Barrier::new(10));
    let mut tasks = vec![];
    for _ in 0..10 {
        let (c, barrier, rt) = (s.client(), barrier.clone(), t.refresh_token.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.refresh(&rt).await
        }));
    }
    let mut winners = vec![];
    for task in tasks {
        if let Ok(tokens) = task.await.unwrap() {
            winners.push(tokens);
        }
    }
    assert!(winners.len() <= 1, "{} refreshes succeeded", winners.len());
    let c = s.client();
    for w in &winners {
        assert_eq!(c.refresh(&w.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
        assert_eq!(me_status(&s, &w.access_token).await, 401);
    }
    assert_eq!(me_status(&s, &t.access_token).await, 401);
}

async fn ses_6_reset_disable_and_revoke_all_end_every_session_on_the_next_call(b: Backend) {
    let s = TestServer::start(b).await;
    let c = s.client();
    // Administrator: revoke all.
    s.create_user("ses6", PW).await;
    let (a, b2) = (s.sign_in("ses6", PW).await, s.sign_in("ses6", PW).await);
    let r = s.raw().request("DELETE", "/admin/v1/users/ses6/sessions", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204);
    for t in [&a, &b2] {
        assert_eq!(me_status(&s, &t.access_token).await, 401);
        assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    }
    // Administrator: disable, and the account cannot sign in; enable, and it can.
    let t = s.sign_in("ses6", PW).await;
    s.raw().request("POST", "/admin/v1/users/ses6/disable", Some(ADMIN_TOKEN), None).await;
    assert_eq!(me_status(&s, &t.access_token).await, 401);
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    assert_eq!(c.sign_in("ses6", PW).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    s.raw().request("POST", "/admin/v1/users/ses6/enable", Some(ADMIN_TOKEN), None).await;
    // Password reset.
    let t = s.sign_in("ses6", PW).await;
    s.reset_password_by_waiting("ses6", "ses6@example.com", "after the reset pw").await;
    assert_eq!(me_status(&s, &t.access_token).await, 401);
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
}

async fn sessions_are_listed_and_one_or_all_can_be_ended(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("sess", PW).await;
    s.create_user("other", PW).await;
    let c = s.client();
    let first = s.sign_in("sess", PW).await;
    let second = s.sign_in("sess", PW).await;
    let list = c.sessions(&second.access_token).await.unwrap().sessions;
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|x| x.current).count(), 1);
    assert!(list[0].current, "newest first, and it is this one");
    assert_eq!(list[1].user_agent.as_deref(), Some(latchkey_testkit::USER_AGENT));
    let stranger = s.sign_in("other", PW).await;
    let foreign = c.sessions(&stranger.access_token).await.unwrap().sessions[0].id.clone();
    assert_eq!(c.revoke_session(&first.access_token, &foreign).await.unwrap_err().code(), Some(codes::NOT_FOUND));
    c.revoke_session(&second.access_token, &list[1].id).await.unwrap();
    assert_eq!(me_status(&s, &first.access_token).await, 401);
    assert_eq!(me_status(&s, &second.access_token).await, 200);
    let third = s.sign_in("sess", PW).await;
    c.sign_out(&third.access_token, SignOutScope::All).await.unwrap();
    assert_eq!(me_status(&s, &second.access_token).await, 401);
    assert_eq!(me_status(&s, &stranger.access_token).await, 200, "other users are untouched");
}

async fn refresh_tokens_stop_after_the_idle_and_absolute_lifetimes(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("life", PW).await;
    let c = s.client();
    let t = s.sign_in("life", PW).await;
    s.clock.advance(Duration::days(7) + Duration::seconds(1));
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT), "idle for 7 days");
    let mut t = s.sign_in("life", PW).await;
    for _ in 0..4 {
        s.clock.advance(Duration::days(6));
        t = c.refresh(&t.refresh_token).await.unwrap();
    }
    s.clock.advance(Duration::days(6) - Duration::seconds(1));
    t = c.refresh(&t.refresh_token).await.unwrap();
    s.clock.advance(Duration::seconds(1));
    assert_eq!(
        c.refresh(&t.refresh_token).await.unwrap_err().code(),
        Some(codes::INVALID_GRANT),
        "30 days after sign-in"
    );
}

async fn jwks(s: &TestServer) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_str(&s.raw().request("GET", "/.well-known/jwks.json", None, None).await.body).unwrap()
}

async fn tok_1_access_tokens_verify_against_the_published_jwks_with_the_required_claims(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("tok1", PW).await;
    let t = s.sign_in("tok1", PW).await;
    let set = jwks(&s).await;
    let header = jsonwebtoken::decode_header(&t.access_token).unwrap();
    assert_eq!((header.alg, header.typ.as_deref()), (Algorithm::ES256, Some("at+jwt")));
    let jwk = set.find(header.kid.as_deref().unwrap()).expect("the kid is published");
    let discovery = s.raw().request("GET", "/.well-known/openid-configuration", None, None).await.json();
    assert_eq!(discovery["issuer"], s.url.as_str());
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[s.url.as_str()]);
    v.set_audience(&["latchkey"]);
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(&t.access_token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims;
    for k in ["iss", "aud", "sub", "sid", "exp", "iat", "jti", "client_id", "acr", "amr", "auth_time"] {
        assert!(claims.get(k).is_some(), "claim {k} missing in {claims}");
    }
    assert_eq!(claims["acr"], "aal1");
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    let me = s.client().me(&t.access_token).await.unwrap();
    assert_eq!(claims["sub"], me.id.as_str());
    assert_eq!(claims["sid"], me.session_id.as_str());
}

async fn tok_2_forged_expired_and_misused_tokens_are_refused(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("tok2", PW).await;
    let t = s.sign_in("tok2", PW).await;
    let valid = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&t.access_token).unwrap();
    let claims = valid.claims.clone();
    let kid = valid.header.kid.clone().unwrap();
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let server_key = EncodingKey::from_ec_der(&std::fs::read(s.config.data_dir.join("jwt-signing-key.p8")).unwrap());
    let sign_real =
        |header: Header, claims: &serde_json::Value| jsonwebtoken::encode(&header, claims, &server_key).unwrap();
    let at_header = || {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        h
    };
    // Our own signature over the same claims is accepted: the forgeries below differ in one way each.
    assert_eq!(me_status(&s, &sign_real(at_header(), &claims)).await, 200);

    let mut forged = vec![];
    forged.push((
        "alg none",
        format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid})), b64(&claims)),
    ));
    let jwk = serde_json::to_value(jwks(&s).await.keys[0].clone()).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    forged.push((
        "HS256 keyed with the public key",
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(jwk.to_string().as_bytes())).unwrap(),
    ));
    let mut embedded = at_header();
    embedded.jwk = serde_json::from_value(jwk.clone()).ok();
    forged.push(("embedded jwk", sign_real(embedded, &claims)));
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "another-api".into();
    forged.push(("wrong audience", sign_real(at_header(), &wrong_aud)));
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = "https://evil.example".into();
    forged.push(("wrong issuer", sign_real(at_header(), &wrong_iss)));
    let mut id_token = at_header();
    id_token.typ = Some("JWT".into());
    forged.push(("an ID-token type", sign_real(id_token, &claims)));
    let mut tampered = t.access_token.clone();
    tampered.replace_range(tampered.len() - 3.., if tampered.ends_with("AAA") { "BBB" } else { "AAA" });
    forged.push(("bad signature", tampered));
    forged.push(("the refresh token", t.refresh_token.clone()));
    forged.push(("garbage", "not.a.jwt".into()));
    for (what, token) in &forged {
        let r = s.raw().request("GET", "/v1/me", Some(token), None).await;
        assert_eq!(r.status, 401, "{what} was accepted");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    s.clock.advance(Duration::seconds(600));
    assert_eq!(me_status(&s, &t.access_token).await, 401, "expired");
}

async fn two_replicas_on_one_database_behave_as_one_server(b: Backend) {
    let a = TestServer::start(b).await;
    let b2 = a.replica().await;
    let (ca, cb) = (a.client(), b2.client());
    let flow = ca
        .sign_up(&latchkey_testkit::proto::SignUpRequest {
            username: "rep".into(),
            password: Some(PW.into()),
            email: Some("rep@example.com".into()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    let code = b2.code_for("rep@example.com").await;
    cb.confirm_sign_up(&flow.flow_id, &code).await.unwrap();
    let t = cb.sign_in("rep", PW).await.unwrap().tokens.unwrap();
    assert_eq!(ca.me(&t.access_token).await.unwrap().username, "rep", "a token from B works on A");
    let t = ca.refresh(&t.refresh_token).await.unwrap();
    let barrier = Arc::new(Barrier::new(10));
    let mut tasks = vec![];
    for i in 0..10 {
        let (c, barrier, rt) =
            (if i % 2 == 0 { ca.clone() } else { cb.clone() }, barrier.clone(), t.refresh_token.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.refresh(&rt).await.is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap());
    }
    assert!(ok <= 1);
    for _ in 0..5 {
        let _ = cb.sign_in("rep", "wrong password!").await;
    }
    assert_eq!(ca.sign_in("rep", PW).await.unwrap_err().code(), Some(codes::LIMIT_EXCEEDED), "the lockout is shared");
}

both_stores!(
    ses_1_tokens_are_long_random_and_die_at_sign_out,
    ses_2_a_reused_refresh_token_revokes_the_whole_family,
    ses_3_parallel_refreshes_of_one_token_leave_at_most_one_winner_and_a_dead_family,
    ses_6_reset_disable_and_revoke_all_end_every_session_on_the_next_call,
    sessions_are_listed_and_one_or_all_can_be_ended,
    refresh_tokens_stop_after_the_idle_and_absolute_lifetimes,
    tok_1_access_tokens_verify_against_the_published_jwks_with_the_required_claims,
    tok_2_forged_expired_and_misused_tokens_are_refused,
    two_replicas_on_one_database_behave_as_one_server,
);
