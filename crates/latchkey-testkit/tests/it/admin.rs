//! The operator's API (issue 14): accounts found and paged (correctly while accounts are being
//! created), the audit log queried, dead messages listed and requeued, the summary figures, and
//! admins who are people — an admin account at `aal2`, refused below it, `read_only` only looks.

use super::delivery::eventually;
use latchkey_core::ids::{MessageId, UserId};
use latchkey_core::model::{OutboxMessage, OutboxStatus, Profile, User, UserStatus};
use latchkey_core::store::{Batch, Write};
use latchkey_testkit::proto::{
    AdminSummary, AdminUser, AdminUserList, AuditEventList, Invitation, NextStep, OutboxList,
};
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer};
use std::collections::HashSet;
use std::sync::Arc;
use time::Duration;
use tokio::sync::Barrier;

const PW: &str = "correct horse battery";

fn account(name: &str, phone: Option<&str>, at: time::OffsetDateTime) -> User {
    User {
        id: UserId::new(),
        username: name.into(),
        username_canonical: name.to_lowercase(),
        email: Some(format!("{name}@Example.com")),
        email_verified: true,
        phone: phone.map(str::to_owned),
        phone_verified: phone.is_some(),
        status: UserStatus::Active,
        password_hash: None,
        must_change_password: false,
        preferred_mfa: None,
        phone_changed_at: None,
        email_changed_at: None,
        profile: Profile::default(),
        created_at: at,
        updated_at: at,
    }
}

async fn get<T: serde::de::DeserializeOwned>(s: &TestServer, path: &str, token: &str) -> T {
    let r = s.raw().request("GET", path, Some(token), None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

async fn accounts_are_found_and_paged_and_no_page_shifts_while_accounts_are_created(b: Backend) {
    let s = TestServer::start(b).await;
    let store = s.auth.store();
    let now = time::OffsetDateTime::from_unix_timestamp(s.clock_unix()).unwrap();
    let mut before = vec![];
    for i in 0..45 {
        let phone = (i % 3 == 0).then(|| format!("+4915100000{i:03}"));
        let u = account(&format!("member{i:02}"), phone.as_deref(), now - Duration::days(i));
        before.push(u.id);
        store.apply(Batch(vec![Write::InsertUser(u)])).await.unwrap();
    }
    // Page through in tens while 40 accounts are created alongside.
    let barrier = Arc::new(Barrier::new(2));
    let creator = {
        let (store, barrier) = (store.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            for i in 0..40 {
                let u = account(&format!("newcomer{i:02}"), None, now);
                store.apply(Batch(vec![Write::InsertUser(u)])).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    barrier.wait().await;
    let (mut seen, mut cursor, mut pages) = (vec![], None::<String>, 0);
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/users?query=member&limit=10&cursor={c}"),
            None => "/admin/v1/users?query=member&limit=10".to_owned(),
        };
        let page: AdminUserList = get(&s, &path, ADMIN_TOKEN).await;
        pages += 1;
        seen.extend(page.users.iter().map(|u| u.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    creator.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len(), pages), (45, 45, 5), "each account exactly once");
    let expected: Vec<String> = before.iter().rev().map(ToString::to_string).collect();
    assert_eq!(seen, expected, "newest first");

    // Search by prefix of the username, the email (any case) and the phone; filters combine.
    let s = &s;
    let q = |p: &'static str| async move { get::<AdminUserList>(s, p, ADMIN_TOKEN).await.users };
    assert_eq!(q("/admin/v1/users?query=MEMBER1").await.len(), 10);
    assert_eq!(q("/admin/v1/users?query=member07%40example.COM").await[0].username, "member07");
    assert_eq!(q("/admin/v1/users?query=%2B4915100000&limit=100").await.len(), 15);
    assert_eq!(q("/admin/v1/users?query=member_").await.len(), 0, "`_` is a character, not a wildcard");
    let after = time::OffsetDateTime::from_unix_timestamp(s.clock_unix() - 9 * 86_400).unwrap();
    let path = format!("/admin/v1/users?query=member&created_after={}", latchkey_core::clock::rfc3339(after));
    assert_eq!(get::<AdminUserList>(s, &path.replace('+', "%2B"), ADMIN_TOKEN).await.users.len(), 10);
    assert_eq!(q("/admin/v1/users?status=disabled").await.len(), 0);
    assert_eq!(q("/admin/v1/users?factor=totp").await.len(), 0);
    assert_eq!(q("/admin/v1/users?factor=none&query=newcomer&limit=100").await.len(), 40);
    for bad in ["status=gone", "factor=fingerprint", "limit=0", "limit=101", "cursor=nope", "created_after=yesterday"] {
        let r = s.raw().request("GET", &format!("/admin/v1/users?{bad}"), Some(ADMIN_TOKEN), None).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}");
    }
}

async fn the_audit_log_is_queried_and_dead_messages_are_requeued(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("ines", PW).await;
    let c = s.client();
    for _ in 0..3 {
        c.sign_in("ines", "not the password").await.unwrap_err();
    }
    s.sign_in("ines", PW).await;
    let r = s.raw().request("POST", "/admin/v1/users/ines/disable", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204);

    let failures: AuditEventList = get(&s, "/admin/v1/audit?user=ines&kind=sign_in&outcome=failure", ADMIN_TOKEN).await;
    assert_eq!(failures.events.len(), 3);
    let disabled: AuditEventList = get(&s, "/admin/v1/audit?kind=admin_disable", ADMIN_TOKEN).await;
    assert_eq!(disabled.events[0].detail["admin"], "admin_token", "the admin action names who did it");
    // Paged by cursor, newest first, without repeats.
    let first: AuditEventList = get(&s, "/admin/v1/audit?user=ines&limit=2", ADMIN_TOKEN).await;
    let cursor = first.next_cursor.clone().unwrap();
    let second: AuditEventList =
        get(&s, &format!("/admin/v1/audit?user=ines&limit=2&cursor={cursor}"), ADMIN_TOKEN).await;
    assert!(second.events.iter().all(|e| first.events.iter().all(|f| f.id != e.id)));
    assert!(first.events[1].at >= second.events[0].at);
    let later = latchkey_core::clock::rfc3339(time::OffsetDateTime::from_unix_timestamp(s.clock_unix() + 60).unwrap());
    let none: AuditEventList =
        get(&s, &format!("/admin/v1/audit?since={}", later.replace('+', "%2B")), ADMIN_TOKEN).await;
    assert!(none.events.is_empty());
    let r = s.raw().request("GET", "/admin/v1/audit?user=nobody", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 404);

    // A message that died is listed (never its body) and sent again when requeued.
    let id = MessageId::new();
    let now = time::OffsetDateTime::from_unix_timestamp(s.clock_unix()).unwrap();
    let dead = OutboxMessage {
        id,
        channel: "email".into(),
        provider: "dev".into(),
        to: "ines@example.com".into(),
        subject: "Latchkey: a notice".into(),
        body_sealed: Some(s.seal(&id.to_string(), "the secret body")),
        status: OutboxStatus::Pending,
        attempts: 5,
        next_attempt_at: now + Duration::days(365),
        last_error: None,
        created_at: now,
        sent_at: None,
    };
    s.auth.store().apply(Batch(vec![Write::Enqueue(dead)])).await.unwrap();
    s.auth.store().outbox_failed(id, "550 mailbox unavailable", None).await.unwrap();
    let list: OutboxList = get(&s, "/admin/v1/outbox?status=dead", ADMIN_TOKEN).await;
    assert_eq!(list.messages.len(), 1);
    let m = &list.messages[0];
    assert_eq!(
        (m.id.as_str(), m.last_error.as_deref(), m.attempts),
        (id.to_string().as_str(), Some("550 mailbox unavailable"), 5)
    );
    let raw = s.raw().request("GET", "/admin/v1/outbox", Some(ADMIN_TOKEN), None).await;
    assert!(!raw.body.contains("the secret body") && !raw.body.contains("body"), "{}", raw.body);
    let path = format!("/admin/v1/outbox/{id}/requeue");
    assert_eq!(s.raw().request("POST", &path, Some(ADMIN_TOKEN), None).await.status, 204);
    assert_eq!(s.raw().request("POST", &path, Some(ADMIN_TOKEN), None).await.status, 404, "not dead any more");
    eventually("the requeued message delivered", async || {
        s.outbox().await.into_iter().find(|m| m.body == "the secret body").map(|_| ())
    })
    .await;

    let summary: AdminSummary = get(&s, "/admin/v1/summary?days=7", ADMIN_TOKEN).await;
    assert_eq!((summary.users, summary.users_by_status.get("disabled")), (1, Some(&1)));
    assert_eq!(summary.users_without_factor, 1);
    let failed: u64 =
        summary.funnel.iter().filter(|p| p.step == "sign_in" && p.outcome == "failure").map(|p| p.count).sum();
    assert_eq!(failed, 3);
    let sent = s.auth.store().outbox_messages(Some("dev")).await.unwrap();
    let sent = sent.iter().filter(|m| m.status == OutboxStatus::Sent).count() as u64;
    let dev = summary.delivery.iter().find(|d| d.provider == "dev" && d.status == "sent").unwrap();
    assert_eq!((dev.count, dev.retried), (sent, 0), "a requeued message starts again from its first attempt");
    assert_eq!(s.raw().request("GET", "/admin/v1/summary?days=0", Some(ADMIN_TOKEN), None).await.status, 400);
}

async fn an_admin_account_signs_in_at_aal2_and_read_only_only_looks(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = super::devices::aal2_user_and_secret(&s, "ada").await;
    s.create_user("rob", PW).await;
    s.create_user("target", PW).await;
    let users = "/admin/v1/users";
    // No role yet: authenticated, not allowed.
    assert_eq!(s.raw().request("GET", users, Some(&t.access_token), None).await.status, 403);
    let role = |name: &'static str, role: serde_json::Value| {
        let s = &s;
        async move {
            let body = serde_json::json!({ "role": role });
            s.raw().request("PUT", &format!("/admin/v1/users/{name}/role"), Some(ADMIN_TOKEN), Some(body)).await.status
        }
    };
    assert_eq!(role("ada", "admin".into()).await, 204);
    assert_eq!(role("rob", "read_only".into()).await, 204);
    assert_eq!(role("rob", "superuser".into()).await, 400);
    let list: AdminUserList = get(&s, users, &t.access_token).await;
    assert_eq!(list.users.len(), 3);
    let r = s.raw().request("POST", "/admin/v1/users/target/disable", Some(&t.access_token), None).await;
    assert_eq!(r.status, 204);
    let audit: AuditEventList = get(&s, "/admin/v1/audit?kind=admin_disable", ADMIN_TOKEN).await;
    assert_eq!(audit.events[0].detail["admin"], "ada", "the audit log names the admin account");

    // A password-only session of an admin account is not enough.
    let aal1 = s.sign_in("rob", PW).await;
    let r = s.raw().request("GET", users, Some(&aal1.access_token), None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("insufficient_user_authentication")));

    // read_only: looks, never changes.
    let (rob, _) = super::devices::with_totp(&s, "rob").await;
    get::<AdminUserList>(&s, users, &rob.access_token).await;
    let r = s.raw().request("POST", "/admin/v1/users/target/enable", Some(&rob.access_token), None).await;
    assert_eq!(r.status, 403);
    let r = s.raw().request("DELETE", "/admin/v1/users/target", Some(&rob.access_token), None).await;
    assert_eq!(r.status, 403);
    let r = s
        .raw()
        .request("PUT", "/admin/v1/users/rob/role", Some(&rob.access_token), Some(serde_json::json!({"role": "admin"})))
        .await;
    assert_eq!(r.status, 403, "no promoting oneself");

    // An admin's session expires for the admin API after `policy.admin.session_max_age_secs`,
    // however often it is refreshed; a fresh sign-in at aal2 works again.
    s.clock.advance(Duration::hours(8) + Duration::seconds(1));
    let refreshed = s.client().refresh(&t.refresh_token).await.unwrap();
    let r = s.raw().request("GET", users, Some(&refreshed.access_token), None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("insufficient_user_authentication")));
    let again = super::devices::aal2_session(&s, "ada", &secret).await;
    get::<AdminUserList>(&s, users, &again.access_token).await;
    // The role can be taken away.
    assert_eq!(role("ada", serde_json::Value::Null).await, 204);
    assert_eq!(s.raw().request("GET", users, Some(&again.access_token), None).await.status, 403);
}

async fn an_invitee_confirms_with_the_code_and_chooses_a_password(b: Backend) {
    let s = TestServer::start(b).await;
    let invite = serde_json::json!({"username": "Nina", "email": "nina@example.com", "role": "read_only"});
    let r = s.raw().request("POST", "/admin/v1/users", Some(ADMIN_TOKEN), Some(invite.clone())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let inv: Invitation = serde_json::from_str(&r.body).unwrap();
    assert_eq!(s.raw().request("POST", "/admin/v1/users", Some(ADMIN_TOKEN), Some(invite)).await.status, 409);
    for bad in [
        serde_json::json!({"username": "nobody"}),
        serde_json::json!({"username": "x", "email": "x@example.com", "role": "owner"}),
        serde_json::json!({"username": "x", "email": "not an address"}),
    ] {
        let r = s.raw().request("POST", "/admin/v1/users", Some(ADMIN_TOKEN), Some(bad)).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_request")));
    }
    // The invitation carries a link with the flow and the code, to the console's page by default.
    let m = s.outbox().await.into_iter().find(|m| m.to == "nina@example.com").unwrap();
    let link = format!("{}/console/invite#flow_id={}&code=", s.url, inv.flow_id);
    let code = m.body.split(&link).nth(1).map(|rest| rest[..6].to_owned()).unwrap_or_else(|| panic!("{}", m.body));
    let c = s.client();
    assert!(matches!(c.flow(&inv.flow_id).await.unwrap().next_step, NextStep::ConfirmSignUp { .. }));
    // Days later, within the week: the code proves the address, then a password completes it.
    s.clock.advance(Duration::days(6));
    let wrong = c.confirm_sign_up(&inv.flow_id, "000000").await.unwrap();
    assert!(wrong.error.is_some());
    let a = c.confirm_sign_up(&inv.flow_id, &code).await.unwrap();
    assert!(matches!(a.next_step, NextStep::NewPassword { .. }), "{:?}", a.next_step);
    let elsewhere = s.client_at("127.0.0.1", "another-app/1.0");
    let e = elsewhere.new_password(&inv.flow_id, PW).await.unwrap_err();
    assert_eq!(e.code(), Some("flow_context_mismatch"), "the code bound the invitation to the invitee's client");
    let done = c.new_password(&inv.flow_id, PW).await.unwrap();
    assert!(done.tokens.is_some(), "{:?}", done.next_step);
    s.sign_in("nina", PW).await;
    let u: AdminUser = get(&s, "/admin/v1/users/nina", ADMIN_TOKEN).await;
    assert_eq!((u.status.as_str(), u.email_verified, u.admin_role.as_deref()), ("active", true, Some("read_only")));
    let audit: AuditEventList = get(&s, "/admin/v1/audit?kind=admin_invite", ADMIN_TOKEN).await;
    assert_eq!(audit.events[0].detail["admin"], "admin_token");

    // An invitation not taken up within its week stops working.
    let later = serde_json::json!({"username": "late", "phone": "+14155550123"});
    let r = s.raw().request("POST", "/admin/v1/users", Some(ADMIN_TOKEN), Some(later)).await;
    let inv: Invitation = serde_json::from_str(&r.body).unwrap();
    let code =
        latchkey_testkit::extract_code(&s.outbox().await.into_iter().find(|m| m.to == "+14155550123").unwrap().body);
    s.clock.advance(Duration::days(7) + Duration::seconds(1));
    assert!(c.confirm_sign_up(&inv.flow_id, &code).await.is_err(), "expired");
}

async fn an_admin_resets_a_lost_factor_and_revokes_a_device(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, _) = super::devices::aal2_user_and_secret(&s, "faye").await;
    let ks = latchkey_client::SoftwareKeystore::new();
    let (device_id, _) =
        s.client().enroll_device(&t.access_token, &ks, "Faye's phone", "android", "371946").await.unwrap();
    let u: AdminUser = get(&s, "/admin/v1/users/faye", ADMIN_TOKEN).await;
    let totp = u.factors.factors.iter().find(|f| f.kind == "totp").unwrap().id.clone();
    let told = s.messages_to("faye@example.com").await;
    let path = format!("/admin/v1/users/faye/factors/{totp}");
    assert_eq!(s.raw().request("DELETE", &path, Some(ADMIN_TOKEN), None).await.status, 204);
    assert_eq!(s.raw().request("DELETE", &path, Some(ADMIN_TOKEN), None).await.status, 404);
    let u: AdminUser = get(&s, "/admin/v1/users/faye", ADMIN_TOKEN).await;
    assert!(u.factors.factors.iter().all(|f| f.kind != "totp"));
    assert_eq!(s.messages_to("faye@example.com").await, told + 1);
    let m = s.outbox().await.into_iter().rev().find(|m| m.to == "faye@example.com").unwrap();
    assert!(m.body.contains("by the service's administrators"), "{}", m.body);
    let audit: AuditEventList = get(&s, "/admin/v1/audit?user=faye&kind=factor_removed", ADMIN_TOKEN).await;
    assert_eq!(audit.events[0].detail["admin"], "admin_token");

    let path = format!("/admin/v1/users/faye/devices/{device_id}");
    assert_eq!(s.raw().request("DELETE", &path, Some(ADMIN_TOKEN), None).await.status, 204);
    let by_device = s.client().device_sign_in(&device_id, &ks, latchkey_client::Unlock::Biometric).await;
    assert!(by_device.as_ref().map_or(true, |a| a.tokens.is_none()), "revoked: {by_device:?}");
    assert_eq!(s.raw().request("DELETE", &path, Some(ADMIN_TOKEN), None).await.status, 404);
    let other = format!("/admin/v1/users/nobody/devices/{device_id}");
    assert_eq!(s.raw().request("DELETE", &other, Some(ADMIN_TOKEN), None).await.status, 404);
}

async fn the_console_is_served_from_the_binary_with_a_strict_policy(b: Backend) {
    let s = TestServer::start(b).await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/users/anyone", "text/html"),
        ("/console/invite", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = s.raw().request("GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with(kind)), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let html = s.raw().request("GET", "/console", None, None).await.body;
    assert!(!html.contains("<script>") && !html.contains("style="), "nothing inline");
    assert!(html.contains("<script type=\"module\" src=\"/console/app.js\">"));
    // Server values go into the page as text: the script never parses a string as markup.
    let script = s.raw().request("GET", "/console/app.js", None, None).await.body;
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!script.contains(sink), "the console's script uses {sink}");
    }
}

both_stores!(
    the_console_is_served_from_the_binary_with_a_strict_policy,
    an_invitee_confirms_with_the_code_and_chooses_a_password,
    an_admin_resets_a_lost_factor_and_revokes_a_device,
    accounts_are_found_and_paged_and_no_page_shifts_while_accounts_are_created,
    the_audit_log_is_queried_and_dead_messages_are_requeued,
    an_admin_account_signs_in_at_aal2_and_read_only_only_looks,
);
