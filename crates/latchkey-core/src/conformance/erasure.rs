//! Conformance checks: deleting an account (issue 14) removes every row that is the user's, erases
//! what other rows keep about them, and retires the username for its quarantine.

use super::*;
use crate::store::Erasure;

const POLICY: LockoutPolicy =
    LockoutPolicy { free_attempts: 5, base_delay_secs: 1, max_delay_secs: 1, hard_cap: 50, forget_after_secs: 3600 };

pub async fn an_erased_account_leaves_nothing_personal_and_its_username_rests(store: Arc<dyn Store>) {
    let (u, other) = (user("Erasmus"), user("Otto"));
    let s = session(u.id);
    let f = Factor {
        id: FactorId::new(),
        user_id: u.id,
        kind: "totp".into(),
        state: "active".into(),
        secret_sealed: Some("sealed".into()),
        last_step: None,
        created_at: T0,
        last_used_at: None,
    };
    let mut delivered = message("smtp");
    delivered.to = "erasmus@example.com".into();
    let (mut pending, mut notice, mut others) = (delivered.clone(), delivered.clone(), message("smtp"));
    (pending.id, notice.id) = (MessageId::new(), MessageId::new());
    let ctx =
        ClientContext { ip: Some("192.0.2.7".into()), user_agent: Some("Erasmus's phone".into()), app_integrity: None };
    store
        .apply(Batch(vec![
            Write::InsertUser(u.clone()),
            Write::InsertUser(other.clone()),
            Write::InsertSession(s.clone()),
            Write::InsertRefreshToken { hash: "rt-erasmus".into(), session_id: s.id, created_at: T0 },
            Write::InsertFactor(f.clone()),
            Write::ReplaceRecoveryCodes { user_id: u.id, macs: vec!["code".into()], at: T0 },
            Write::InsertFlow(flow(Some(u.id))),
            Write::Sightings(vec![Sighting {
                user_id: u.id,
                kind: "network".into(),
                value: "192.0.2.0/24".into(),
                country: None,
                position_e6: None,
                first_seen_at: T0,
                last_seen_at: T0,
            }]),
            Write::Enqueue(delivered.clone()),
            Write::Enqueue(pending.clone()),
            Write::Enqueue(others.clone()),
            crate::auth::audit(T0, Some(u.id), "sign_in", "success", &ctx, serde_json::json!({"device": "Pixel"})),
        ]))
        .await
        .unwrap();
    store.outbox_sent(delivered.id, T0, true).await.unwrap();
    others.id = MessageId::new();
    let erasure = Erasure {
        user_id: u.id,
        counter_keys: vec!["erasmus".into()],
        rate_keys: vec!["send:destination:erasmus@example.com".into()],
        addresses: vec!["erasmus@example.com".into()],
        notices: vec![notice.id],
        username_digest: "digest-of-erasmus".into(),
        retire_until: T0 + Duration::days(30),
    };
    store.hit_rate_limits(&[("send:destination:erasmus@example.com".into(), 5)], T0).await.unwrap();
    store.reserve_failure("erasmus", "password", T0, &POLICY).await.unwrap();
    store.apply(Batch(vec![Write::Enqueue(notice.clone()), Write::EraseUser(Box::new(erasure))])).await.unwrap();

    assert_eq!(store.user_by_id(u.id).await.unwrap(), None);
    assert!(store.session(s.id).await.unwrap().is_none() && store.factors(u.id).await.unwrap().is_empty());
    assert!(store.recovery_codes(u.id).await.unwrap().is_empty() && store.sightings(u.id, 5).await.unwrap().is_empty());
    assert_eq!(store.rotate_refresh("rt-erasmus", "new", T0, T0, None).await.unwrap(), RotateOutcome::Invalid);
    assert!(store.user_by_id(other.id).await.unwrap().is_some(), "nobody else's account");
    // The event stays, without the address, the user agent or the detail.
    let events = store.audit_events(Some(u.id), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].ip.as_deref(), events[0].user_agent.as_deref()), (None, None));
    assert_eq!((events[0].kind.as_str(), &events[0].detail), ("sign_in", &serde_json::json!({})));
    // The pending message is gone, the delivered one has no recipient and no body; the notice
    // waits with its recipient and loses both once delivered.
    let left = store.outbox_messages(Some("smtp")).await.unwrap();
    let of = |id| left.iter().find(|m| m.id == id).cloned();
    assert!(of(pending.id).is_none());
    let d = of(delivered.id).unwrap();
    assert_eq!((d.to.as_str(), d.body_sealed), ("", None));
    assert_eq!(of(notice.id).unwrap().to, "erasmus@example.com");
    store.outbox_sent(notice.id, T0, true).await.unwrap();
    let n = store.outbox_messages(Some("smtp")).await.unwrap().into_iter().find(|m| m.id == notice.id).unwrap();
    assert_eq!((n.to.as_str(), n.body_sealed, n.status), ("", None, OutboxStatus::Sent));
    assert!(of(others.id).is_none() && left.iter().any(|m| m.to == "a@example.com"), "another's message stays");
    // The counters are gone: a fresh window, a fresh lockout count.
    assert_eq!(store.reserve_failure("erasmus", "password", T0, &POLICY).await.unwrap(), Reservation::Allowed(1));
    // The username rests until the quarantine ends, then purge forgets it.
    let claim = |at| Batch(vec![Write::ClaimUsername { digest: "digest-of-erasmus".into(), at }]);
    assert!(matches!(store.apply(claim(T0 + Duration::days(29))).await, Err(StoreError::Conflict("username"))));
    store.apply(claim(T0 + Duration::days(31))).await.unwrap();
    store.apply(Batch(vec![Write::ClaimUsername { digest: "another".into(), at: T0 }])).await.unwrap();
    store.purge(T0 + Duration::days(31)).await.unwrap();
    store.apply(claim(T0)).await.unwrap();
}
