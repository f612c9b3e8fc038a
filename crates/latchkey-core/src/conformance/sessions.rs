//! Conformance checks: Sessions and refresh tokens: rotation once, reuse revokes the family, DPoP binding, limits,
//! listing and revocation.

use super::*;

async fn with_session(store: &Arc<dyn Store>) -> (User, Session) {
    let u = user(&format!("s{}", UserId::new().0.simple()));
    let s = session(u.id);
    store
        .apply(Batch(vec![
            Write::InsertUser(u.clone()),
            Write::InsertSession(s.clone()),
            Write::InsertRefreshToken { hash: format!("h0-{}", s.id), session_id: s.id, created_at: T0 },
        ]))
        .await
        .unwrap();
    (u, s)
}

pub async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let (_, s) = with_session(&store).await;
    let h0 = format!("h0-{}", s.id);
    let t1 = T0 + Duration::minutes(1);
    let cutoff = T0 - Duration::days(7);
    match store.rotate_refresh(&h0, "h1", t1, cutoff, None).await.unwrap() {
        RotateOutcome::Rotated(got) => assert_eq!(got.last_refresh_at, t1),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.rotate_refresh(&h0, "h2", t1, cutoff, None).await.unwrap(), RotateOutcome::Reused(s.id));
    let revoked = store.session(s.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoke_reason.as_deref(), Some("refresh_reuse"));
    assert_eq!(
        store.rotate_refresh("h1", "h3", t1, cutoff, None).await.unwrap(),
        RotateOutcome::Invalid,
        "the family is dead"
    );
    assert_eq!(store.rotate_refresh("unknown", "h4", t1, cutoff, None).await.unwrap(), RotateOutcome::Invalid);
}

pub async fn parallel_refreshes_rotate_at_most_once(store: Arc<dyn Store>) {
    let (_, s) = with_session(&store).await;
    let h0 = format!("h0-{}", s.id);
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for i in 0..10 {
        let (store, barrier, h0) = (store.clone(), barrier.clone(), h0.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.rotate_refresh(&h0, &format!("new-{i}-{h0}"), T0, T0 - Duration::days(1), None).await.unwrap()
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        if let RotateOutcome::Rotated(_) = t.await.unwrap() {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
    assert!(store.session(s.id).await.unwrap().unwrap().revoked_at.is_some(), "reuse revoked the family");
}

pub async fn a_bound_session_rotates_only_with_its_key_and_a_proof_is_used_once(store: Arc<dyn Store>) {
    let u = user(&format!("b{}", UserId::new().0.simple()));
    let mut s = session(u.id);
    s.dpop_jkt = Some("jkt-a".into());
    store
        .apply(Batch(vec![
            Write::InsertUser(u),
            Write::InsertSession(s.clone()),
            Write::InsertRefreshToken { hash: "b0".into(), session_id: s.id, created_at: T0 },
        ]))
        .await
        .unwrap();
    let cutoff = T0 - Duration::days(1);
    for proof in [None, Some("jkt-b")] {
        assert_eq!(store.rotate_refresh("b0", "b1", T0, cutoff, proof).await.unwrap(), RotateOutcome::ProofMismatch);
    }
    // Refused without changing anything: the token is still live for its device.
    assert!(matches!(
        store.rotate_refresh("b0", "b1", T0, cutoff, Some("jkt-a")).await.unwrap(),
        RotateOutcome::Rotated(_)
    ));
    // A spent token without the key neither works nor ends the session …
    assert_eq!(store.rotate_refresh("b0", "b2", T0, cutoff, None).await.unwrap(), RotateOutcome::ProofMismatch);
    assert!(store.session(s.id).await.unwrap().unwrap().revoked_at.is_none());
    // … with the key it is reuse, and the family ends.
    assert_eq!(store.rotate_refresh("b0", "b2", T0, cutoff, Some("jkt-a")).await.unwrap(), RotateOutcome::Reused(s.id));

    // Twenty parallel presentations of one proof: one is accepted.
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.use_dpop_proof("proof-1", T0 + Duration::minutes(1)).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap());
    }
    assert_eq!(accepted, 1);
    assert!(store.use_dpop_proof("proof-2", T0 + Duration::minutes(1)).await.unwrap());
    // Purged once expired, like flows.
    assert!(store.purge(T0 + Duration::minutes(2)).await.unwrap() >= 2);
    assert!(store.use_dpop_proof("proof-1", T0 + Duration::minutes(3)).await.unwrap());
}

pub async fn idle_and_absolute_session_limits_stop_rotation(store: Arc<dyn Store>) {
    let (_, s) = with_session(&store).await;
    let h0 = format!("h0-{}", s.id);
    assert_eq!(
        store.rotate_refresh(&h0, "x1", T0 + Duration::days(8), T0 + Duration::days(1), None).await.unwrap(),
        RotateOutcome::Invalid,
        "idle too long"
    );
    let (_, s) = with_session(&store).await;
    let h0 = format!("h0-{}", s.id);
    assert_eq!(
        store.rotate_refresh(&h0, "x2", T0 + Duration::days(31), T0, None).await.unwrap(),
        RotateOutcome::Invalid,
        "past the absolute lifetime"
    );
}

pub async fn sessions_are_listed_and_revoked(store: Arc<dyn Store>) {
    let (u, s1) = with_session(&store).await;
    let mut s2 = session(u.id);
    s2.created_at = T0 + Duration::seconds(5);
    one(store.as_ref(), Write::InsertSession(s2.clone())).await;
    let live: Vec<_> = store.live_sessions(u.id, T0).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(live, vec![s2.id, s1.id]);
    one(store.as_ref(), Write::RevokeSession { id: s2.id, at: T0, reason: "sign_out".into() }).await;
    assert_eq!(store.live_sessions(u.id, T0).await.unwrap().len(), 1);
    one(store.as_ref(), Write::RevokeUserSessions { user_id: u.id, at: T0, reason: "all".into() }).await;
    assert!(store.live_sessions(u.id, T0).await.unwrap().is_empty());
    assert_eq!(
        store.session(s2.id).await.unwrap().unwrap().revoke_reason.as_deref(),
        Some("sign_out"),
        "first reason kept"
    );
}
