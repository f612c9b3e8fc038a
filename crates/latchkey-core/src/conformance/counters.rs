//! Conformance checks for counters that must not grow without bound (issue 11, item 5).

use super::T0;
use crate::model::*;
use crate::store::{Batch, Store, StoreError, Write};
use std::sync::Arc;
use time::Duration;

pub async fn a_quiet_counter_below_its_cap_is_forgotten_and_one_at_the_cap_is_kept(store: Arc<dyn Store>) {
    let policy = LockoutPolicy {
        free_attempts: 10,
        base_delay_secs: 1,
        max_delay_secs: 1,
        hard_cap: 3,
        forget_after_secs: 3600,
    };
    assert_eq!(store.reserve_failure("user:quiet", "password", T0, &policy).await.unwrap(), Reservation::Allowed(1));
    for n in 1..=3 {
        assert_eq!(
            store.reserve_failure("user:capped", "password", T0, &policy).await.unwrap(),
            Reservation::Allowed(n)
        );
    }
    // Not yet forgotten an hour minus a second later.
    store.purge(T0 + Duration::seconds(3599)).await.unwrap();
    assert_eq!(store.reserve_failure("user:quiet", "password", T0, &policy).await.unwrap(), Reservation::Allowed(2));
    // Quiet for longer than `forget_after_secs` after its last failure: the row is gone, and a new
    // failure starts from one; the capped counter is kept, still locked.
    store.purge(T0 + Duration::seconds(3601)).await.unwrap();
    let later = T0 + Duration::hours(2);
    assert_eq!(store.reserve_failure("user:quiet", "password", later, &policy).await.unwrap(), Reservation::Allowed(1));
    assert_eq!(
        store.reserve_failure("user:capped", "password", later, &policy).await.unwrap(),
        Reservation::Locked(None)
    );
}

/// A step's two reservations (the flow's attempt, the account's failure counter) are one store
/// call (issue 17, item 2): under a burst the flow grants exactly `max` attempts, the account
/// counts only those and stops at its cap, a flow that refuses counts nothing on the account,
/// and batches failing in the same moment (sharing SQLite's group commit) undo none of it.
pub async fn a_steps_reservations_are_one_write_and_hold_under_concurrency(store: Arc<dyn Store>) {
    let policy = LockoutPolicy {
        free_attempts: 1000,
        base_delay_secs: 1,
        max_delay_secs: 1,
        hard_cap: 3,
        forget_after_secs: 3600,
    };
    let f = super::flow(None);
    store.apply(Batch(vec![Write::InsertFlow(f.clone()), Write::InsertUser(super::user("kim"))])).await.unwrap();
    let counter = |key: &str| AccountCounter { key: key.into(), kind: "otp".into(), now: T0, policy };
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = vec![];
    for i in 0..40 {
        let (store, barrier, id, account) = (store.clone(), barrier.clone(), f.id, counter("user:kim"));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i % 4 == 3 {
                // Loses to the account inserted above: rolls back alone.
                let lost = store.apply(Batch(vec![Write::InsertUser(super::user("kim"))])).await;
                assert!(matches!(lost, Err(StoreError::Conflict("username"))), "{lost:?}");
                return None;
            }
            Some(store.reserve_attempt(id, 5, Some(account)).await.unwrap())
        }));
    }
    let (mut granted, mut allowed, mut locked) = (vec![], vec![], 0);
    for t in tasks {
        let Some(r) = t.await.unwrap() else { continue };
        match (r.attempts, r.account) {
            (Some(n), Some(Reservation::Allowed(k))) => {
                granted.push(n);
                allowed.push(k);
            }
            (Some(n), Some(Reservation::Locked(None))) => {
                granted.push(n);
                locked += 1;
            }
            (None, None) => {}
            other => panic!("unexpected reservation {other:?}"),
        }
    }
    granted.sort_unstable();
    allowed.sort_unstable();
    assert_eq!(granted, vec![1, 2, 3, 4, 5]);
    assert_eq!(allowed, vec![1, 2, 3], "the account's cap holds inside the flow's");
    assert_eq!(locked, 2);
    assert_eq!(store.flow(f.id).await.unwrap().unwrap().attempts, 5);
    // The exhausted flow refuses before the account is counted.
    let r = store.reserve_attempt(f.id, 5, Some(counter("user:lee"))).await.unwrap();
    assert_eq!(r, AttemptReservation { attempts: None, account: None });
    assert_eq!(store.reserve_failure("user:lee", "otp", T0, &policy).await.unwrap(), Reservation::Allowed(1));
    // Without an account counter only the flow is counted.
    let g = super::flow(None);
    store.apply(Batch(vec![Write::InsertFlow(g.clone())])).await.unwrap();
    let r = store.reserve_attempt(g.id, 5, None).await.unwrap();
    assert_eq!(r, AttemptReservation { attempts: Some(1), account: None });
}

/// A completing step's batch (the account's counter cleared, then its flow moved on) racing
/// reservations of the same flow and counter (issue 17, item 2). On PostgreSQL the two take the
/// same two rows in opposite orders, so reserving both in one transaction deadlocked and one
/// side failed `Unavailable` (found by REC-3 in the testkit, not by this suite until this
/// check). Every call gets an answer — a reservation, or the batch's `Conflict("flow")` when
/// another completion won the compare-and-swap — and exactly one completion wins per flow.
pub async fn a_completing_step_racing_its_flows_reservations_never_errors(store: Arc<dyn Store>) {
    let policy = super::NEVER_LOCKED;
    store.apply(Batch(vec![Write::InsertUser(super::user("noor"))])).await.unwrap();
    for _ in 0..20 {
        let f = super::flow(None);
        store.apply(Batch(vec![Write::InsertFlow(f.clone())])).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = vec![];
        for i in 0..8 {
            let (store, barrier, f) = (store.clone(), barrier.clone(), f.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    let account = AccountCounter { key: "user:noor".into(), kind: "otp".into(), now: T0, policy };
                    return store.reserve_attempt(f.id, 100, Some(account)).await.map(|_| false);
                }
                let mut moved = f.clone();
                moved.version += 1;
                let completion = Batch(vec![
                    Write::ClearFailures { key: "user:noor".into(), kind: "otp".into() },
                    Write::UpdateFlow { flow: moved, expected_version: f.version },
                ]);
                match store.apply(completion).await {
                    Ok(()) => Ok(true),
                    Err(StoreError::Conflict("flow")) => Ok(false),
                    Err(e) => Err(e),
                }
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap().unwrap());
        }
        assert_eq!(won, 1, "one completion per flow");
        assert_eq!(store.flow(f.id).await.unwrap().unwrap().version, f.version + 1);
    }
}

/// A step whose answer was found right before it was counted (a sign-in's TOTP code, issue 17):
/// its writes take effect only in the store call that grants its attempt. Under a burst the flow
/// grants exactly `max` attempts; of the step's writes racing for one TOTP step one wins, and
/// each loser's writes are undone alone while its attempt stays counted; a flow out of attempts
/// or a locked account applies nothing; batches failing in the same moment undo none of it.
pub async fn a_steps_writes_take_effect_only_with_its_reserved_attempt(store: Arc<dyn Store>) {
    let u = super::user("ines");
    let factor = Factor {
        id: crate::ids::FactorId::new(),
        user_id: u.id,
        kind: "totp".into(),
        state: "active".into(),
        secret_sealed: Some("sealed".into()),
        last_step: None,
        created_at: T0,
        last_used_at: None,
    };
    let f = super::flow(Some(u.id));
    store
        .apply(Batch(vec![
            Write::InsertUser(u.clone()),
            Write::InsertFactor(factor.clone()),
            Write::InsertFlow(f.clone()),
        ]))
        .await
        .unwrap();
    let counter = |key: &str, hard_cap: u32| AccountCounter {
        key: key.into(),
        kind: "otp".into(),
        now: T0,
        policy: LockoutPolicy { hard_cap, ..super::NEVER_LOCKED },
    };
    let step = |n: i64, who: &str| {
        // The audit event first: a loser's is written, then undone with its step.
        Batch(vec![
            Write::Audit(AuditEvent {
                id: crate::ids::EventId::new(),
                at: T0,
                user_id: Some(u.id),
                kind: "step_won".into(),
                outcome: who.into(),
                ip: None,
                user_agent: None,
                detail: serde_json::json!({}),
            }),
            Write::ConsumeTotpStep { id: factor.id, step: n, at: T0 },
        ])
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(24));
    let mut tasks = vec![];
    for i in 0..24 {
        let (store, barrier, id, account, then) =
            (store.clone(), barrier.clone(), f.id, counter("user:ines", 10_000), step(7, &i.to_string()));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i % 4 == 3 {
                // Loses to the account inserted above: rolls back alone.
                let lost = store.apply(Batch(vec![Write::InsertUser(super::user("ines"))])).await;
                assert!(matches!(lost, Err(StoreError::Conflict("username"))), "{lost:?}");
                return None;
            }
            Some(store.reserve_attempt_and_apply(id, 5, Some(account), then).await.unwrap())
        }));
    }
    let (mut granted, mut won, mut replays, mut refused) = (vec![], 0, 0, 0);
    for t in tasks {
        let Some(r) = t.await.unwrap() else { continue };
        match (r.reservation.attempts, r.applied) {
            (Some(n), Some(Ok(()))) => {
                granted.push(n);
                won += 1;
            }
            (Some(n), Some(Err(StoreError::Conflict("totp_step")))) => {
                granted.push(n);
                replays += 1;
            }
            (None, None) => refused += 1,
            other => panic!("unexpected step {other:?}"),
        }
    }
    granted.sort_unstable();
    assert_eq!(granted, vec![1, 2, 3, 4, 5], "exactly the flow's attempts are granted");
    assert_eq!((won, replays, refused), (1, 4, 13));
    assert_eq!(store.flow(f.id).await.unwrap().unwrap().attempts, 5, "the losers' attempts stay counted");
    let won_events = |store: Arc<dyn Store>| async move {
        store.audit_events(Some(u.id), 100).await.unwrap().into_iter().filter(|e| e.kind == "step_won").count()
    };
    assert_eq!(won_events(store.clone()).await, 1, "the losers' writes are undone");
    assert_eq!(store.factors(u.id).await.unwrap()[0].last_step, Some(7));

    // A flow out of attempts applies nothing, and counts nothing on the account.
    let r =
        store.reserve_attempt_and_apply(f.id, 5, Some(counter("user:ines", 10_000)), step(8, "late")).await.unwrap();
    assert_eq!((r.reservation, r.applied.is_none()), (AttemptReservation { attempts: None, account: None }, true));
    // A locked account applies nothing, though the flow counts the attempt.
    assert_eq!(
        store.reserve_failure("user:locked", "otp", T0, &counter("user:locked", 1).policy).await.unwrap(),
        Reservation::Allowed(1)
    );
    let g = super::flow(Some(u.id));
    store.apply(Batch(vec![Write::InsertFlow(g.clone())])).await.unwrap();
    let r = store.reserve_attempt_and_apply(g.id, 5, Some(counter("user:locked", 1)), step(9, "locked")).await.unwrap();
    assert_eq!(r.reservation, AttemptReservation { attempts: Some(1), account: Some(Reservation::Locked(None)) });
    assert!(r.applied.is_none(), "{:?}", r.applied);
    assert_eq!(won_events(store.clone()).await, 1);
    assert_eq!(store.factors(u.id).await.unwrap()[0].last_step, Some(7));
    // Granted, the step's writes are applied with its reservation.
    let r = store.reserve_attempt_and_apply(g.id, 5, None, step(10, "later")).await.unwrap();
    assert_eq!(r.reservation, AttemptReservation { attempts: Some(2), account: None });
    assert!(matches!(r.applied, Some(Ok(()))), "{:?}", r.applied);
    assert_eq!(store.factors(u.id).await.unwrap()[0].last_step, Some(10));
    assert_eq!(won_events(store).await, 2);
}
