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

pub async fn a_session_is_raised_in_place_only_while_live_and_its_tokens_spent(store: Arc<dyn Store>) {
    let (_, s) = with_session(&store).await;
    let t1 = T0 + Duration::minutes(2);
    let moved =
        ClientContext { ip: Some("192.0.2.9".into()), user_agent: Some("elsewhere".into()), app_integrity: None };
    let raise = |at| Write::RaiseSession {
        id: s.id,
        acr: "aal2".into(),
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        auth_time: at,
        context: moved.clone(),
    };
    // Checklist SES-8: flagged once (a second flag keeps the first time), cleared by the raise.
    let flag = |at| Write::RequireStepUp { id: s.id, at };
    store.apply(Batch(vec![flag(T0 + Duration::minutes(1)), flag(t1)])).await.unwrap();
    let flagged = store.session(s.id).await.unwrap().unwrap();
    assert_eq!(flagged.step_up_required_at, Some(T0 + Duration::minutes(1)));
    store
        .apply(Batch(vec![
            raise(t1),
            Write::SpendRefreshTokens { session_id: s.id, at: t1 },
            Write::InsertRefreshToken { hash: format!("h1-{}", s.id), session_id: s.id, created_at: t1 },
        ]))
        .await
        .unwrap();
    let raised = store.session(s.id).await.unwrap().unwrap();
    assert_eq!((raised.acr.as_str(), raised.amr.len(), raised.auth_time), ("aal2", 3, t1));
    assert_eq!((raised.step_up_required_at, &raised.context), (None, &moved), "the step-up's client, no flag");
    let cutoff = T0 - Duration::days(7);
    assert_eq!(
        store.rotate_refresh(&format!("h0-{}", s.id), "h2", t1, cutoff, None).await.unwrap(),
        RotateOutcome::Reused(s.id),
        "a token spent by the raise is reuse"
    );
    // Revoked (here by that reuse): nothing to raise, and the batch changes nothing.
    let e = store.apply(Batch(vec![raise(t1 + Duration::minutes(1))])).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict("session")), "{e:?}");
    assert_eq!(store.session(s.id).await.unwrap().unwrap().auth_time, t1);
}

pub async fn a_users_events_page_by_cursor_newest_first(store: Arc<dyn Store>) {
    let (u, _) = with_session(&store).await;
    let (other, _) = with_session(&store).await;
    let event = |user: UserId, n: i64, at: OffsetDateTime| {
        Write::Audit(AuditEvent {
            id: EventId::new(),
            at,
            user_id: Some(user),
            kind: "sign_in".into(),
            outcome: "success".into(),
            ip: None,
            user_agent: None,
            detail: serde_json::json!({"n": n}),
        })
    };
    // Five events, the last three at one instant (a fake clock does that): ids break the tie.
    let times = [
        T0,
        T0 + Duration::seconds(1),
        T0 + Duration::seconds(2),
        T0 + Duration::seconds(2),
        T0 + Duration::seconds(2),
    ];
    let writes: Vec<Write> = times.iter().enumerate().map(|(n, at)| event(u.id, n as i64, *at)).collect();
    for w in writes {
        store.apply(Batch(vec![w])).await.unwrap();
    }
    store.apply(Batch(vec![event(other.id, 99, T0)])).await.unwrap();
    let n = |e: &AuditEvent| e.detail["n"].as_i64().unwrap();
    let first = store.user_events(u.id, None, 2).await.unwrap();
    assert_eq!(first.iter().map(n).collect::<Vec<_>>(), vec![4, 3]);
    // A newer event written between pages does not shift the next one.
    store.apply(Batch(vec![event(u.id, 5, T0 + Duration::seconds(9))])).await.unwrap();
    let second = store.user_events(u.id, Some(first[1].id), 10).await.unwrap();
    assert_eq!(second.iter().map(n).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert!(store.user_events(u.id, Some(EventId::new()), 10).await.unwrap().is_empty(), "an unknown cursor");
    let theirs = store.user_events(other.id, None, 10).await.unwrap();
    assert_eq!(theirs.iter().map(n).collect::<Vec<_>>(), vec![99]);
    assert!(store.user_events(u.id, Some(theirs[0].id), 10).await.unwrap().is_empty(), "another user's cursor");
}

pub async fn remembered_clients_are_used_only_while_live_and_end_with_every_session(store: Arc<dyn Store>) {
    let (u, _) = with_session(&store).await;
    let client = |days: i64| RememberedClient {
        id: RememberedClientId::new(),
        user_id: u.id,
        public_key: vec![4; 65],
        name: "Laptop".into(),
        created_at: T0,
        expires_at: T0 + Duration::days(days),
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
    };
    let (a, b, short) = (client(30), client(30), client(1));
    for c in [&a, &b, &short] {
        store.apply(Batch(vec![Write::InsertRememberedClient(c.clone())])).await.unwrap();
    }
    assert_eq!(store.remembered_client(a.id).await.unwrap().as_ref(), Some(&a), "round trip");
    let t1 = T0 + Duration::days(2);
    assert_eq!(store.remembered_clients(u.id, t1).await.unwrap().len(), 2, "the expired one is not live");
    store.apply(Batch(vec![Write::RememberedClientUsed { id: a.id, at: t1 }])).await.unwrap();
    assert_eq!(store.remembered_client(a.id).await.unwrap().unwrap().last_used_at, Some(t1));
    let used = |id| Batch(vec![Write::RememberedClientUsed { id, at: t1 }]);
    assert!(matches!(store.apply(used(short.id)).await, Err(StoreError::Conflict("remembered_client"))), "expired");
    let forget = Write::ForgetRememberedClient { id: b.id, user_id: u.id, at: t1, reason: "by_user".into() };
    store.apply(Batch(vec![forget])).await.unwrap();
    assert!(matches!(store.apply(used(b.id)).await, Err(StoreError::Conflict("remembered_client"))), "forgotten");
    // Ending every session of the user forgets the rest.
    store
        .apply(Batch(vec![Write::RevokeUserSessions { user_id: u.id, at: t1, reason: "sign_out_all".into() }]))
        .await
        .unwrap();
    assert!(store.remembered_clients(u.id, t1).await.unwrap().is_empty());
    let a = store.remembered_client(a.id).await.unwrap().unwrap();
    assert_eq!((a.revoked_at, a.revoke_reason.as_deref()), (Some(t1), Some("sign_out_all")));
    let again = client(30);
    store.apply(Batch(vec![Write::InsertRememberedClient(again.clone())])).await.unwrap();
    let all = Write::ForgetUserRememberedClients { user_id: u.id, at: t1, reason: "factor_removed".into() };
    store.apply(Batch(vec![all])).await.unwrap();
    assert!(store.remembered_clients(u.id, t1).await.unwrap().is_empty());
}
