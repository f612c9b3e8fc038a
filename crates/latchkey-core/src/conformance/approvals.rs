//! Conformance checks: Push approvals: one pending per account, each answered once.

use super::*;

fn approval(user_id: UserId, at: OffsetDateTime) -> Approval {
    Approval {
        id: ApprovalId::new(),
        user_id,
        flow_id: FlowId::new(),
        kind: "sign_in".into(),
        number: "42".into(),
        nonce: "n".into(),
        status: ApprovalStatus::Pending,
        created_at: at,
        expires_at: at + Duration::minutes(2),
        decided_at: None,
        device_id: None,
        context: ClientContext { ip: Some("192.0.2.1".into()), user_agent: Some("ua".into()), app_integrity: None },
        action: None,
    }
}

/// An action approval keeps the action the phone is to show, exactly.
pub async fn an_approvals_action_round_trips(store: Arc<dyn Store>) {
    let u = user("ada");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let action = latchkey_proto::Action {
        kind: "payment".into(),
        text: "Pay €120.00 to ACME Ltd — \"now\"".into(),
        data: Some(serde_json::json!({"amount_minor": 12000, "payee": {"name": "ACME Ltd", "iban": "DE89…"}})),
    };
    let a = Approval { kind: "action:abc".into(), action: Some(action.clone()), ..approval(u.id, T0) };
    one(store.as_ref(), Write::InsertApproval(a.clone())).await;
    let got = store.approval(a.id).await.unwrap().unwrap();
    assert_eq!((got.kind.as_str(), got.action), ("action:abc", Some(action)));
}

/// Checklist PUSH-3 and PUSH-4 in the store: one pending approval per account however many
/// sign-ins ask at once, an expired one makes room, and an answer takes effect once.
pub async fn one_pending_approval_per_account_and_each_is_answered_once(store: Arc<dyn Store>) {
    let u = user("gil");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for _ in 0..10 {
        let (store, barrier, a) = (store.clone(), barrier.clone(), approval(u.id, T0));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.apply(Batch(vec![Write::InsertApproval(a.clone())])).await.map(|()| a)
        }));
    }
    let (mut first, mut refused) = (vec![], 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => first.push(a),
            Err(StoreError::Conflict("approval_pending")) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((first.len(), refused), (1, 9), "one outstanding approval per account");
    let first = first.remove(0);
    assert_eq!(store.approval(first.id).await.unwrap(), Some(first.clone()), "it round-trips");
    assert_eq!(store.pending_approvals(u.id, T0).await.unwrap(), vec![first.clone()]);
    let expiry = first.expires_at;
    assert!(store.pending_approvals(u.id, expiry).await.unwrap().is_empty(), "not listed once expired");
    let late = Write::DecideApproval {
        id: first.id,
        status: ApprovalStatus::Approved,
        device_id: DeviceId::new(),
        at: expiry,
    };
    assert!(matches!(store.apply(Batch(vec![late])).await, Err(StoreError::Conflict("approval"))), "too late");
    // The expired one makes room for the next, and is closed.
    let second = approval(u.id, expiry);
    one(store.as_ref(), Write::InsertApproval(second.clone())).await;
    assert_eq!(store.approval(first.id).await.unwrap().unwrap().status, ApprovalStatus::Expired);
    // Twenty parallel answers: one takes effect.
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20 {
        let (store, barrier) = (store.clone(), barrier.clone());
        let status = if i % 2 == 0 { ApprovalStatus::Approved } else { ApprovalStatus::Reported };
        let w = Write::DecideApproval {
            id: second.id,
            status,
            device_id: DeviceId::new(),
            at: expiry + Duration::seconds(1),
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.apply(Batch(vec![w])).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict("approval")) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    let decided = store.approval(second.id).await.unwrap().unwrap();
    assert_ne!(decided.status, ApprovalStatus::Pending);
    assert_eq!(decided.decided_at, Some(expiry + Duration::seconds(1)));
    assert!(decided.device_id.is_some());
    let reported = (decided.status == ApprovalStatus::Reported).then_some(expiry + Duration::seconds(1));
    assert_eq!(store.last_reported_approval(u.id).await.unwrap(), reported);
    // Withdrawing leaves an answered approval as it was, and ends a pending one for good.
    one(store.as_ref(), Write::WithdrawApproval { id: second.id, at: expiry + Duration::seconds(2) }).await;
    assert_eq!(store.approval(second.id).await.unwrap().unwrap(), decided);
    let third = approval(u.id, expiry + Duration::seconds(3));
    one(store.as_ref(), Write::InsertApproval(third.clone())).await;
    let at = expiry + Duration::seconds(4);
    let both = Batch(vec![Write::WithdrawApproval { id: third.id, at }, Write::InsertApproval(approval(u.id, at))]);
    store.apply(both).await.unwrap();
    assert_eq!(store.approval(third.id).await.unwrap().unwrap().status, ApprovalStatus::Withdrawn, "replaced at once");
    let late = Write::DecideApproval { id: third.id, status: ApprovalStatus::Approved, device_id: DeviceId::new(), at };
    assert!(matches!(store.apply(Batch(vec![late])).await, Err(StoreError::Conflict("approval"))));
    // Another account is not limited by this one's.
    let v = user("hal");
    one(store.as_ref(), Write::InsertUser(v.clone())).await;
    one(store.as_ref(), Write::InsertApproval(approval(v.id, T0))).await;
    assert!(store.purge(expiry + Duration::hours(1)).await.unwrap() >= 5);
    assert_eq!(store.approval(second.id).await.unwrap(), None, "purged");
}
