//! Deleting an account (issue 14): by its owner after a recent `aal2` sign-in, or by the
//! operator. Everything that acted as the account stops, its personal data is gone from the
//! database (searched for afterwards, row by row and, on SQLite, byte by byte in its files), the
//! owner is told, and the username rests for its quarantine.

use super::delivery::{eventually, smtp_sink};
use latchkey_client::{SoftwareKeystore, Unlock};
use latchkey_testkit::proto::{MfaMethod, NextStep, ProfileUpdate, SignUpRequest, StepUpRequest, codes};
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer, totp_code};
use time::Duration;

const PW: &str = "correct horse battery";
const PIN: &str = "371946";

/// Every place the name could still be: each stored value and, for SQLite, the database's files.
async fn traces_of(s: &TestServer, needle: &str) -> Vec<String> {
    let mut found = vec![];
    for row in s.db.dump_text().await.unwrap().lines().filter(|l| l.contains(needle)) {
        found.push(format!("a row: {row}"));
    }
    for file in ["latchkey.db", "latchkey.db-wal"] {
        let path = s.config.data_dir.join(file);
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

async fn deleting_the_account_erases_it_and_stops_everything_that_acted_as_it(b: Backend) {
    let s = TestServer::start(b).await;
    let (t, secret) = super::devices::aal2_user_and_secret(&s, "dorothea").await;
    let c = s.client();
    let ks = SoftwareKeystore::new();
    let (device_id, _) = c.enroll_device(&t.access_token, &ks, "Dorothea's phone", "android", PIN).await.unwrap();
    let name = ProfileUpdate { name: Some(Some("Dorothea Quill".into())), ..Default::default() };
    c.update_profile(&t.access_token, &name).await.unwrap();
    // A sign-in left waiting at its second step.
    let pending = c.sign_in("dorothea", PW).await.unwrap();
    assert!(!matches!(pending.next_step, NextStep::Done));

    // An old sign-in is not enough: step up first, as the answer says.
    s.clock.advance(Duration::minutes(11));
    let t = c.refresh(&t.refresh_token).await.unwrap();
    let e = c.delete_account(&t.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    let req = StepUpRequest { acr_values: Some("aal2".into()), max_age: Some(600), action: None };
    let a = c.step_up(&t.access_token, &req).await.unwrap();
    assert!(matches!(a.next_step, NextStep::SelectMfa { .. }), "{:?}", a.next_step);
    c.select_mfa(&a.flow_id, MfaMethod::Totp).await.unwrap();
    let fresh = c.totp_code(&a.flow_id, &totp_code(&secret, &s.clock, 0)).await.unwrap().tokens.unwrap();

    // Deleted through a replica that sends email over SMTP, so the notice is a real message.
    let (smtp, received) = smtp_sink().await;
    let r = s.replica_with(|c| c.smtp_url = Some(smtp)).await;
    r.client().delete_account(&fresh.access_token).await.unwrap();
    let notice = eventually("the deletion notice", async || {
        received.lock().unwrap().iter().find(|m| m.contains("dorothea@example.com")).cloned()
    })
    .await;
    assert!(notice.contains("Your account was deleted"), "{notice}");

    // Nothing acts as the account any more.
    assert_eq!(c.me(&fresh.access_token).await.unwrap_err().status(), Some(401));
    assert_eq!(c.refresh(&fresh.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    assert_eq!(c.refresh(&t.refresh_token).await.unwrap_err().code(), Some(codes::INVALID_GRANT));
    let by_device = s.client().device_sign_in(&device_id, &ks, Unlock::Biometric).await;
    assert!(by_device.as_ref().map_or(true, |a| a.tokens.is_none()), "the device is gone: {by_device:?}");
    let late = c.totp_code(&pending.flow_id, &totp_code(&secret, &s.clock, 1)).await;
    assert!(late.as_ref().map_or(true, |a| a.tokens.is_none()), "the waiting sign-in is gone: {late:?}");

    // The audit log keeps the events, without addresses, user agents or details.
    let events = s.auth.store().audit_events(None, 1000).await.unwrap();
    let deleted = events.iter().find(|e| e.kind == "account_deleted").unwrap();
    assert_eq!(deleted.detail, serde_json::json!({"by": "owner"}));
    let theirs: Vec<_> = events.iter().filter(|e| e.user_id == deleted.user_id).collect();
    assert!(theirs.len() > 5 && theirs.iter().all(|e| e.ip.is_none() && e.user_agent.is_none()), "{theirs:?}");

    // And the database holds none of it: not the name, the email, the profile or the device.
    eventually("the delivered notice erased", async || {
        let left = s.auth.store().outbox_messages(None).await.unwrap();
        (!left.iter().any(|m| m.to.contains("dorothea"))).then_some(())
    })
    .await;
    for needle in ["dorothea", "Dorothea", "Quill"] {
        assert_eq!(traces_of(&s, needle).await, Vec::<String>::new(), "{needle} is still stored");
    }
    // A later sign-in with the name is a stranger's, counted against the name as for any
    // unknown username (that counter is new, and forgotten like any other).
    assert_eq!(c.sign_in("dorothea", PW).await.unwrap_err().code(), Some(codes::NOT_AUTHORIZED));
    r.stop().await;
}

async fn a_deleted_username_rests_for_its_quarantine(b: Backend) {
    let s = TestServer::start_with(b, |c| c.policy.sign_up.reveal_username_exists = true).await;
    s.create_user("rhea", PW).await;
    let admin = Some(ADMIN_TOKEN);
    let resp = s.raw().request("DELETE", "/admin/v1/users/RHEA", admin, None).await;
    assert_eq!(resp.status, 204, "{:?}", resp.json());
    assert_eq!(s.raw().request("GET", "/admin/v1/users/rhea", admin, None).await.status, 404);
    assert_eq!(s.raw().request("DELETE", "/admin/v1/users/rhea", admin, None).await.status, 404);
    let events = s.auth.store().audit_events(None, 100).await.unwrap();
    let deleted = events.iter().find(|e| e.kind == "account_deleted").unwrap();
    assert_eq!(deleted.detail, serde_json::json!({"by": "admin", "admin": "admin_token"}));

    let again = SignUpRequest {
        username: "Rhea".into(),
        password: Some(PW.into()),
        email: Some("someone-else@example.com".into()),
        phone: None,
        locale: None,
    };
    let e = s.client().sign_up(&again).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::USERNAME_EXISTS)), "29 days on");
    s.clock.advance(Duration::days(29));
    assert_eq!(s.client().sign_up(&again).await.unwrap_err().code(), Some(codes::USERNAME_EXISTS));
    s.clock.advance(Duration::days(1) + Duration::seconds(1));
    let a = s.client().sign_up(&again).await.unwrap();
    assert!(matches!(a.next_step, NextStep::ConfirmSignUp { .. }), "{:?}", a.next_step);
}

both_stores!(
    deleting_the_account_erases_it_and_stops_everything_that_acted_as_it,
    a_deleted_username_rests_for_its_quarantine,
);
