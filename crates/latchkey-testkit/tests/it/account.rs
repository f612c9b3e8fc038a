//! The account's own life (issue 14): changing the password, or adding a first one.

use latchkey_client::Unlock;
use latchkey_testkit::proto::{NextStep, codes};
use latchkey_testkit::{Backend, TestServer};
use std::sync::Arc;

const PW: &str = "correct horse battery";
const NEW: &str = "a new passphrase, mine";

async fn a_password_change_ends_the_other_sessions_and_tells_every_channel(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("paula", PW).await;
    let (here, elsewhere) = (s.sign_in("paula", PW).await, s.sign_in("paula", PW).await);
    let c = s.client();
    // The current password is required, and a wrong one changes nothing.
    let e = c.change_password(&here.access_token, None, NEW, false).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_REQUEST)));
    let e = c.change_password(&here.access_token, Some("not the password"), NEW, false).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::NOT_AUTHORIZED)));
    let e = c.change_password(&here.access_token, Some(PW), "12345678", false).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_PASSWORD)));
    assert!(c.sign_in("paula", PW).await.unwrap().tokens.is_some(), "still the old password");
    let notices = s.messages_to("paula@example.com").await;
    // Changed: this session goes on, the other two (one just made by that sign-in) end.
    let done = c.change_password(&here.access_token, Some(PW), NEW, false).await.unwrap();
    assert_eq!(done.other_sessions_ended, 2);
    c.me(&here.access_token).await.unwrap();
    assert!(c.refresh(&here.refresh_token).await.is_ok());
    assert_eq!(c.refresh(&elsewhere.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    assert_eq!(c.me(&elsewhere.access_token).await.unwrap_err().status(), Some(401));
    assert_eq!(c.sign_in("paula", PW).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    assert!(c.sign_in("paula", NEW).await.unwrap().tokens.is_some());
    // Told, with a way to put the account on hold.
    assert_eq!(s.messages_to("paula@example.com").await, notices + 1);
    let m = s.outbox().await.into_iter().rev().find(|m| m.to == "paula@example.com").unwrap();
    assert!(m.subject.ends_with("Your password was changed") && m.body.contains("token=u."), "{m:?}");
    let t = s.sign_in("paula", NEW).await;
    let page = c.events(&t.access_token, None, Some(50)).await.unwrap();
    let changes: Vec<&str> =
        page.events.iter().filter(|e| e.kind == "password_change").map(|e| e.outcome.as_str()).collect();
    assert_eq!(changes, ["success", "failure"]);
}

async fn a_password_change_may_keep_the_other_sessions(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("kip", PW).await;
    let (here, elsewhere) = (s.sign_in("kip", PW).await, s.sign_in("kip", PW).await);
    let c = s.client();
    let done = c.change_password(&here.access_token, Some(PW), NEW, true).await.unwrap();
    assert_eq!(done.other_sessions_ended, 0);
    assert!(c.refresh(&elsewhere.refresh_token).await.is_ok());
}

async fn wrong_current_passwords_count_against_the_password_lockout(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("lou", PW).await;
    let t = s.sign_in("lou", PW).await;
    let c = s.client();
    let mut answers = vec![];
    for _ in 0..7 {
        answers.push(c.change_password(&t.access_token, Some("guess"), NEW, false).await.unwrap_err().status());
    }
    assert_eq!(answers[..5], [Some(401); 5]);
    assert!(answers[5..].iter().all(|a| *a == Some(429)), "{answers:?}");
    // The same counter as sign-in's: the right password is not evaluated either while it holds.
    let e = c.change_password(&t.access_token, Some(PW), NEW, false).await.unwrap_err();
    assert_eq!(e.status(), Some(429));
}

async fn a_passwordless_account_adds_a_first_password_after_a_fresh_aal2_sign_in(b: Backend) {
    let s = TestServer::start(b).await;
    let (id, ks, signed_up) = s.passwordless_account("pam", "+14155550188", Some("pam@example.com"), "371946").await;
    let phone = s.client().with_device_key(Arc::new(ks.clone()), &id).unwrap();
    // The sign-up's session is aal1 (the SMS code and the device's key): not enough.
    let e = phone.change_password(&signed_up.access_token, None, NEW, false).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    // The device's key and its PIN make aal2.
    let t = phone.device_sign_in(&id, &ks, Unlock::Pin("371946")).await.unwrap().tokens.unwrap();
    let done = phone.change_password(&t.access_token, None, NEW, false).await.unwrap();
    assert_eq!(done.other_sessions_ended, 1, "the sign-up's session");
    let m = s.outbox().await.into_iter().rev().find(|m| m.to == "pam@example.com").unwrap();
    assert!(m.subject.ends_with("A password was added"), "{m:?}");
    // Now the password signs in (the phone is the second factor).
    let a = s.client().sign_in("pam", NEW).await.unwrap();
    assert!(matches!(a.next_step, NextStep::SelectMfa { .. } | NextStep::PushApproval { .. }), "{:?}", a.next_step);
}

async fn the_export_holds_the_accounts_data_and_none_of_its_secrets(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = super::devices::aal2_user_and_secret(&s, "ezra").await;
    let c = s.client();
    let ks = latchkey_client::SoftwareKeystore::new();
    let (device_id, _) = c.enroll_device(&t.access_token, &ks, "Ezra's phone", "android", "371946").await.unwrap();
    let export = c.export(&t.access_token).await.unwrap();
    assert_eq!((export.profile.username.as_str(), export.profile.email.as_deref()), ("ezra", Some("ezra@example.com")));
    assert!(export.factors.factors.iter().any(|f| f.kind == "totp"), "{:?}", export.factors);
    assert_eq!(export.devices.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [device_id.as_str()]);
    assert!(export.sessions.sessions.iter().any(|x| x.current));
    let kinds: Vec<&str> = export.events.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["sign_up", "sign_in", "factor_added", "device_enrolled"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(export.events.last().unwrap().kind, "sign_up", "the whole timeline, newest first");
    // No secret: not the TOTP seed, the password or its hash, the PIN, a refresh token.
    let text = serde_json::to_string(&export).unwrap();
    for secret in [secret.as_str(), PW, "$argon2", "371946", t.refresh_token.as_str()] {
        assert!(!text.contains(secret), "the export holds {secret}");
    }
}

async fn the_profile_is_edited_field_by_field_and_checked(b: Backend) {
    use latchkey_testkit::proto::ProfileUpdate;
    let s = TestServer::start(b).await;
    s.create_user("zoe", PW).await;
    let t = s.sign_in("zoe", PW).await;
    let c = s.client();
    let set = ProfileUpdate {
        name: Some(Some("Zoë Łukasiewicz".into())),
        locale: Some(Some("de-CH".into())),
        zoneinfo: Some(Some("Europe/Zurich".into())),
        picture: Some(Some("https://cdn.example.com/zoe.png".into())),
        ..Default::default()
    };
    let me = c.update_profile(&t.access_token, &set).await.unwrap();
    assert_eq!(
        (me.name.as_deref(), me.locale.as_deref(), me.zoneinfo.as_deref(), me.picture.as_deref()),
        (Some("Zoë Łukasiewicz"), Some("de-CH"), Some("Europe/Zurich"), Some("https://cdn.example.com/zoe.png"))
    );
    // A field left out stays; null clears.
    let r = s.raw().request("PATCH", "/v1/me", Some(&t.access_token), Some(serde_json::json!({"picture": null}))).await;
    assert_eq!(
        (r.status, r.json()["picture"].is_null(), r.json()["name"].as_str()),
        (200, true, Some("Zoë Łukasiewicz"))
    );
    assert_eq!(c.me(&t.access_token).await.unwrap().locale.as_deref(), Some("de-CH"), "kept in the database");
    // Malformed values and fields that are not profile attributes are refused, changing nothing.
    for body in [
        serde_json::json!({"locale": "english"}),
        serde_json::json!({"zoneinfo": "Europe//Zurich"}),
        serde_json::json!({"picture": "http://cdn.example.com/zoe.png"}),
        serde_json::json!({"name": "a\u{0}b"}),
        serde_json::json!({"email": "other@example.com"}),
        serde_json::json!({"name": "ok", "locale": "e"}),
    ] {
        let r = s.raw().request("PATCH", "/v1/me", Some(&t.access_token), Some(body.clone())).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{body}");
    }
    let me = c.me(&t.access_token).await.unwrap();
    assert_eq!((me.name.as_deref(), me.email.as_deref()), (Some("Zoë Łukasiewicz"), Some("zoe@example.com")));
    // The timeline names the fields changed, never their values.
    let page = c.events(&t.access_token, None, Some(10)).await.unwrap();
    let e = page.events.iter().find(|e| e.kind == "profile").unwrap();
    assert_eq!((e.outcome.as_str(), &e.detail["fields"]), ("updated", &serde_json::json!(["picture"])));
    assert!(!serde_json::to_string(e).unwrap().contains("Zurich"));
}

async fn an_operator_sees_one_account_without_its_secrets(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = super::devices::aal2_user_and_secret(&s, "olga").await;
    let ks = latchkey_client::SoftwareKeystore::new();
    s.client().enroll_device(&t.access_token, &ks, "Olga's phone", "ios", "371946").await.unwrap();
    let admin = latchkey_testkit::ADMIN_TOKEN;
    let r = s.raw().request("GET", "/admin/v1/users/OLGA", Some(admin), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let u: latchkey_testkit::proto::AdminUser = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (u.username.as_str(), u.email.as_deref(), u.status.as_str()),
        ("olga", Some("olga@example.com"), "active")
    );
    assert!(u.factors.factors.iter().any(|f| f.kind == "totp"));
    assert_eq!(u.devices.devices.len(), 1);
    assert!(!u.sessions.sessions.is_empty() && u.sessions.sessions.iter().all(|x| !x.current));
    assert!(u.recent_events.iter().any(|e| e.kind == "device_enrolled"));
    for secret in [secret.as_str(), PW, "$argon2", "371946", t.refresh_token.as_str()] {
        assert!(!r.body.contains(secret), "the admin view holds {secret}");
    }
    assert_eq!(s.raw().request("GET", "/admin/v1/users/olga", None, None).await.status, 401);
    assert_eq!(s.raw().request("GET", "/admin/v1/users/olga", Some("not-the-token"), None).await.status, 401);
    // A user's own session is no admin's: authenticated, not allowed.
    assert_eq!(s.raw().request("GET", "/admin/v1/users/olga", Some(&t.access_token), None).await.status, 403);
    assert_eq!(s.raw().request("GET", "/admin/v1/users/nobody", Some(admin), None).await.status, 404);
}

async fn custom_attributes_are_written_by_whom_they_may_and_plan_rides_in_tokens(b: Backend) {
    use latchkey_core::attributes::{AttributeDecl, AttributeType, Writer};
    let decl = |name: &str, kind, writable_by, claim, values: &[&str]| AttributeDecl {
        name: name.into(),
        kind,
        writable_by,
        claim,
        max_length: None,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let s = TestServer::start_with(b, |c| {
        c.policy.attributes = vec![
            decl("plan", AttributeType::String, Writer::Admin, true, &["free", "pro"]),
            decl("nickname", AttributeType::String, Writer::User, false, &[]),
            decl("newsletter", AttributeType::Boolean, Writer::User, false, &[]),
        ];
    })
    .await;
    s.create_user("ivo", PW).await;
    let t = s.sign_in("ivo", PW).await;
    let me = |body: serde_json::Value| {
        let (s, t) = (&s, &t);
        async move { s.raw().request("PATCH", "/v1/me", Some(&t.access_token), Some(body)).await }
    };
    // The user writes their own attributes; they are fields of /v1/me.
    let r = me(serde_json::json!({"nickname": "Ivo the Bold", "newsletter": true, "locale": "de"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["nickname"].as_str(), r.json()["newsletter"].as_bool()), (Some("Ivo the Bold"), Some(true)));
    let got = s.client().me(&t.access_token).await.unwrap();
    assert_eq!(got.attributes.get("nickname"), Some(&serde_json::json!("Ivo the Bold")));
    // Not theirs to write, not declared, not of the type: refused, and nothing changes.
    let r = me(serde_json::json!({"plan": "pro", "nickname": "Sneaky"})).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (403, Some("forbidden")));
    for (body, says) in [
        (serde_json::json!({"newsletter": "yes"}), "newsletter: true or false"),
        (serde_json::json!({"shoe_size": 44}), "shoe_size: not an attribute"),
        (serde_json::json!({"email": "other@example.com"}), "email: changes only through verification"),
        (serde_json::json!({"nickname": "a\nb"}), "nickname: 1 to 256 characters"),
    ] {
        let r = me(body).await;
        assert_eq!(r.status, 400);
        assert!(r.json()["error"]["message"].as_str().unwrap_or_default().contains(says), "{}", r.body);
    }
    assert_eq!(s.client().me(&t.access_token).await.unwrap().attributes["nickname"], "Ivo the Bold");

    // The operator writes the plan; it rides in the next access token as a claim, the others don't.
    let admin = Some(latchkey_testkit::ADMIN_TOKEN);
    let r = s.raw().request("PATCH", "/admin/v1/users/ivo", admin, Some(serde_json::json!({"plan": "gold"}))).await;
    assert_eq!(r.status, 400, "not one of its values");
    let r = s.raw().request("PATCH", "/admin/v1/users/ivo", admin, Some(serde_json::json!({"plan": "pro"}))).await;
    assert_eq!((r.status, r.json()["attributes"]["plan"].as_str()), (200, Some("pro")), "{}", r.body);
    let fresh = s.client().refresh(&t.refresh_token).await.unwrap();
    let claims = latchkey_testkit::jwt_claims(&fresh.access_token);
    assert_eq!((claims["plan"].as_str(), claims.get("nickname")), (Some("pro"), None));
    assert!(claims["sub"].is_string() && claims["acr"] == "aal1", "the standard claims are untouched");
    // null clears.
    let r = me(serde_json::json!({"nickname": null})).await;
    assert!(r.json().get("nickname").is_none(), "{}", r.body);
    // The served OpenAPI document describes this deployment's attributes.
    let doc = s.raw().request("GET", "/openapi.json", None, None).await.json();
    let plan = &doc["components"]["schemas"]["ProfileUpdate"]["properties"]["plan"];
    assert_eq!(plan["enum"], serde_json::json!(["free", "pro", null]));
    assert_eq!(doc["components"]["schemas"]["ProfileUpdate"]["additionalProperties"], false);
    // The timeline names the fields, never the values.
    let page = s.client().events(&fresh.access_token, None, Some(10)).await.unwrap();
    let e = page.events.iter().find(|e| e.kind == "profile" && e.detail["fields"] == serde_json::json!(["plan"]));
    assert!(e.is_some() && !serde_json::to_string(&page).unwrap().contains("Ivo the Bold"));
}

async fn messages_use_the_users_language_and_the_operators_texts(b: Backend) {
    use latchkey_core::messages::Template;
    let s = TestServer::start_with(b, |c| {
        let text = Template {
            subject: "Passwort geändert".into(),
            body: "{product}: neues Passwort. Nicht Sie? {link}".into(),
        };
        c.policy.messages.insert("de".into(), [("password_changed".to_owned(), text)].into());
    })
    .await;
    s.create_user("lena", PW).await;
    let t = s.sign_in("lena", PW).await;
    let c = s.client();
    let newest = |to: &'static str| {
        let s = &s;
        async move { s.outbox().await.into_iter().rev().find(|m| m.to == to).unwrap() }
    };
    // English until the user says otherwise.
    c.change_password(&t.access_token, Some(PW), NEW, true).await.unwrap();
    assert!(newest("lena@example.com").await.subject.ends_with("Your password was changed"));
    // de-CH: German, from the operator's text for `de` (the tag, then its language).
    let de = latchkey_testkit::proto::ProfileUpdate { locale: Some(Some("de-CH".into())), ..Default::default() };
    c.update_profile(&t.access_token, &de).await.unwrap();
    c.change_password(&t.access_token, Some(NEW), PW, true).await.unwrap();
    let m = newest("lena@example.com").await;
    assert_eq!(m.subject, "Latchkey – Passwort geändert");
    assert!(m.body.starts_with("Latchkey: neues Passwort. Nicht Sie? http"), "{}", m.body);
    // A built-in German text: a second factor's code.
    c.enroll_email(&t.access_token, Some("lena.neu@example.com")).await.unwrap();
    let m = newest("lena.neu@example.com").await;
    assert_eq!(m.subject, "Latchkey – Bestätigen Sie Ihre E-Mail-Adresse");
    assert!(m.body.starts_with("Ihr Latchkey-Code lautet "), "{}", m.body);
    // A sign-up names its language: the very first code is in it.
    let signup = |locale: &str| latchkey_testkit::proto::SignUpRequest {
        username: "mia".into(),
        password: Some(PW.into()),
        email: Some("mia@example.com".into()),
        phone: None,
        locale: Some(locale.into()),
    };
    let e = c.sign_up(&signup("deutsch")).await.unwrap_err();
    assert_eq!(e.code(), Some(latchkey_testkit::proto::codes::INVALID_REQUEST));
    c.sign_up(&signup("de")).await.unwrap();
    let m = newest("mia@example.com").await;
    assert_eq!(m.subject, "Latchkey – Bestätigen Sie Ihre Registrierung");
    // An invitation in the invitee's language.
    let invite = serde_json::json!({"username": "jonas", "email": "jonas@example.com", "locale": "de"});
    let r = s.raw().request("POST", "/admin/v1/users", Some(latchkey_testkit::ADMIN_TOKEN), Some(invite)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = newest("jonas@example.com").await;
    assert_eq!(m.subject, "Latchkey – Ihre Einladung");
    assert!(m.body.starts_with("Sie sind zu Latchkey eingeladen, als jonas."), "{}", m.body);
}

both_stores!(
    messages_use_the_users_language_and_the_operators_texts,
    custom_attributes_are_written_by_whom_they_may_and_plan_rides_in_tokens,
    an_operator_sees_one_account_without_its_secrets,
    the_profile_is_edited_field_by_field_and_checked,
    the_export_holds_the_accounts_data_and_none_of_its_secrets,
    a_password_change_ends_the_other_sessions_and_tells_every_channel,
    a_password_change_may_keep_the_other_sessions,
    wrong_current_passwords_count_against_the_password_lockout,
    a_passwordless_account_adds_a_first_password_after_a_fresh_aal2_sign_in,
);
