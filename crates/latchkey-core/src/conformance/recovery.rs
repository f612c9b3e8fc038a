//! Conformance checks for what recovery needs of a store: the account's recovery flows, a
//! transition that sets the attempt count, the phone and email change times, and single-use
//! values spent inside a batch.

use super::{T0, flow, one, user};
use crate::model::*;
use crate::store::{Batch, Store, StoreError, Write};
use std::sync::Arc;
use time::Duration;

pub async fn recovery_flows_are_listed_per_account_and_change_times_round_trip(store: Arc<dyn Store>) {
    let mut u = user("rita");
    u.phone_changed_at = Some(T0);
    u.email_changed_at = Some(T0 + Duration::seconds(1));
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap(), u);
    let changed = User { phone_changed_at: Some(T0 + Duration::days(1)), email_changed_at: None, ..u.clone() };
    one(store.as_ref(), Write::UpdateUser(changed.clone())).await;
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap(), changed);
    let mut mine = flow(Some(u.id));
    mine.kind = FlowKind::Recovery;
    let sign_in = Flow { id: crate::ids::FlowId::new(), kind: FlowKind::SignIn, ..mine.clone() };
    let expired = Flow { id: crate::ids::FlowId::new(), expires_at: T0, ..mine.clone() };
    let others = Flow { id: crate::ids::FlowId::new(), user_id: None, ..mine.clone() };
    for f in [&mine, &sign_in, &expired, &others] {
        one(store.as_ref(), Write::InsertFlow(f.clone())).await;
    }
    let listed = store.recovery_flows(u.id, T0 + Duration::seconds(1)).await.unwrap();
    assert_eq!(listed.iter().map(|f| f.id).collect::<Vec<_>>(), vec![mine.id]);
}

pub async fn a_transition_sets_the_attempt_count_it_carries(store: Arc<dyn Store>) {
    let f = flow(None);
    one(store.as_ref(), Write::InsertFlow(f.clone())).await;
    // A right answer reserved an attempt; the transition it made gives it back.
    assert_eq!(store.reserve_flow_attempt(f.id, 5).await.unwrap(), Some(1));
    let next = Flow { state: FlowState::Completed { session_id: None }, version: 1, attempts: 0, ..f.clone() };
    one(store.as_ref(), Write::UpdateFlow { flow: next, expected_version: 0 }).await;
    assert_eq!(store.flow(f.id).await.unwrap().unwrap().attempts, 0);
}

pub async fn a_single_use_value_takes_effect_in_one_batch_only(store: Arc<dyn Store>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let event = AuditEvent {
                id: crate::ids::EventId::new(),
                at: T0,
                user_id: None,
                kind: "undo".into(),
                outcome: format!("try-{i}"),
                ip: None,
                user_agent: None,
                detail: serde_json::json!({}),
            };
            let spend = Write::UseOnce { id: "token-1".into(), expires_at: T0 + Duration::days(7) };
            barrier.wait().await;
            match store.apply(Batch(vec![spend, Write::Audit(event)])).await {
                Ok(()) => true,
                Err(StoreError::Conflict("used_once")) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut applied = 0;
    for t in tasks {
        applied += usize::from(t.await.unwrap());
    }
    assert_eq!(applied, 1);
    assert_eq!(store.audit_events(None, 100).await.unwrap().len(), 1, "the losers' batches were rolled back");
}
