//! The Store conformance suite: every implementation must pass all of it. Each check takes a
//! fresh, migrated store. Concurrency checks start N tasks behind a barrier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod counters;
mod recovery;

use crate::ids::*;
use crate::model::*;
use crate::store::{Batch, RotateOutcome, Store, StoreError, Write};
use counters::a_quiet_counter_below_its_cap_is_forgotten_and_one_at_the_cap_is_kept;
use latchkey_proto::Channel;
use recovery::{
    a_single_use_value_takes_effect_in_one_batch_only, a_transition_sets_the_attempt_count_it_carries,
    recovery_flows_are_listed_per_account_and_change_times_round_trip,
};
use std::sync::Arc;
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn user(name: &str) -> User {
    User {
        id: UserId::new(),
        username: name.into(),
        username_canonical: name.to_lowercase(),
        email: Some(format!("{name}@example.com")),
        email_verified: false,
        phone: None,
        phone_verified: false,
        status: UserStatus::Unconfirmed,
        password_hash: Some("$argon2id$fake".into()),
        must_change_password: false,
        preferred_mfa: None,
        phone_changed_at: None,
        email_changed_at: None,
        created_at: T0,
        updated_at: T0,
    }
}

fn flow(user: Option<UserId>) -> Flow {
    Flow {
        id: FlowId::new(),
        kind: FlowKind::SignUp,
        user_id: user,
        state: FlowState::AwaitingConfirmation {
            code: CodeChallenge {
                mac: "mac".into(),
                channel: Channel::Email,
                destination: "a***@e***.com".into(),
                expires_at: T0 + Duration::minutes(10),
            },
            sign_in_after: false,
            then_enroll_device: false,
        },
        attempts: 0,
        sends: 1,
        version: 0,
        created_at: T0,
        expires_at: T0 + Duration::minutes(10),
        context: ClientContext { ip: Some("127.0.0.1".into()), user_agent: Some("test".into()) },
    }
}

fn session(user: UserId) -> Session {
    Session {
        id: SessionId::new(),
        user_id: user,
        acr: "aal1".into(),
        amr: vec!["pwd".into()],
        auth_time: T0,
        created_at: T0,
        last_refresh_at: T0,
        expires_at: T0 + Duration::days(30),
        revoked_at: None,
        revoke_reason: None,
        context: ClientContext::default(),
        device_id: None,
        dpop_jkt: None,
    }
}

fn message(provider: &str) -> OutboxMessage {
    OutboxMessage {
        id: MessageId::new(),
        channel: "email".into(),
        provider: provider.into(),
        to: "a@example.com".into(),
        subject: "s".into(),
        body_sealed: Some("sealed".into()),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: T0,
        last_error: None,
        created_at: T0,
        sent_at: None,
    }
}

async fn one(store: &dyn Store, w: Write) {
    store.apply(Batch(vec![w])).await.unwrap();
}

pub async fn users_round_trip_and_usernames_are_unique(store: Arc<dyn Store>) {
    let u = user("Alice");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    assert_eq!(store.user_by_username("alice").await.unwrap(), Some(u.clone()));
    assert_eq!(store.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    let mut dup = user("ALICE");
    dup.username_canonical = "alice".into();
    let err = store.apply(Batch(vec![Write::InsertUser(dup)])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("username")), "{err:?}");
    let mut changed = u.clone();
    changed.status = UserStatus::Active;
    changed.email_verified = true;
    changed.updated_at = T0 + Duration::seconds(1);
    one(store.as_ref(), Write::UpdateUser(changed.clone())).await;
    assert_eq!(store.user_by_id(u.id).await.unwrap(), Some(changed));
    assert_eq!(store.user_by_username("nobody").await.unwrap(), None);
}

pub async fn a_failed_batch_changes_nothing(store: Arc<dyn Store>) {
    let u = user("bob");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let f = flow(Some(u.id));
    let mut dup = user("other");
    dup.username_canonical = "bob".into();
    let r = store
        .apply(Batch(vec![Write::InsertFlow(f.clone()), Write::Enqueue(message("dev")), Write::InsertUser(dup)]))
        .await;
    assert!(r.is_err());
    assert_eq!(store.flow(f.id).await.unwrap(), None, "the flow insert was rolled back");
    assert!(store.outbox_messages(None).await.unwrap().is_empty(), "the message was rolled back");
}

pub async fn flow_updates_are_compare_and_swap(store: Arc<dyn Store>) {
    let f = flow(None);
    one(store.as_ref(), Write::InsertFlow(f.clone())).await;
    assert_eq!(store.flow(f.id).await.unwrap(), Some(f.clone()));
    let done = Flow { state: FlowState::Completed { session_id: None }, version: 1, ..f.clone() };
    one(store.as_ref(), Write::UpdateFlow { flow: done.clone(), expected_version: 0 }).await;
    let stale =
        Flow { state: FlowState::Denied { reason: latchkey_proto::DenialReason::Denied }, version: 1, ..f.clone() };
    let err = store.apply(Batch(vec![Write::UpdateFlow { flow: stale, expected_version: 0 }])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("flow")));
    assert_eq!(store.flow(f.id).await.unwrap().unwrap().state, done.state);
}

pub async fn parallel_flow_transitions_yield_exactly_one_winner(store: Arc<dyn Store>) {
    let f = flow(None);
    one(store.as_ref(), Write::InsertFlow(f.clone())).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (store, barrier, f) = (store.clone(), barrier.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            let done = Flow { state: FlowState::Completed { session_id: None }, version: 1, ..f };
            barrier.wait().await;
            store.apply(Batch(vec![Write::UpdateFlow { flow: done, expected_version: 0 }])).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

pub async fn flow_attempts_never_exceed_the_cap_under_concurrency(store: Arc<dyn Store>) {
    let f = flow(None);
    one(store.as_ref(), Write::InsertFlow(f.clone())).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = vec![];
    for _ in 0..30 {
        let (store, barrier, id) = (store.clone(), barrier.clone(), f.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.reserve_flow_attempt(id, 5).await.unwrap()
        }));
    }
    let mut granted = vec![];
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            granted.push(n);
        }
    }
    granted.sort_unstable();
    assert_eq!(granted, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.flow(f.id).await.unwrap().unwrap().attempts, 5);
    assert_eq!(store.reserve_flow_send(f.id, 2).await.unwrap(), Some(2));
    assert_eq!(store.reserve_flow_send(f.id, 2).await.unwrap(), None);
}

pub async fn failure_counters_lock_progressively_and_hold_under_concurrency(store: Arc<dyn Store>) {
    let policy = LockoutPolicy {
        free_attempts: 3,
        base_delay_secs: 10,
        max_delay_secs: 60,
        hard_cap: 6,
        forget_after_secs: 3600,
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = vec![];
    for _ in 0..40 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.reserve_failure("user:carol", "password", T0, &policy).await.unwrap()
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if let Reservation::Allowed(_) = t.await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "the 3rd reservation sets a delay, so a burst evaluates only 3");
    assert_eq!(
        store.reserve_failure("user:carol", "password", T0 + Duration::seconds(9), &policy).await.unwrap(),
        Reservation::Locked(Some(T0 + Duration::seconds(10)))
    );
    assert_eq!(
        store.reserve_failure("user:carol", "password", T0 + Duration::seconds(10), &policy).await.unwrap(),
        Reservation::Allowed(4)
    );
    // Another kind and another key are separate counters.
    assert_eq!(store.reserve_failure("user:carol", "code", T0, &policy).await.unwrap(), Reservation::Allowed(1));
    assert_eq!(store.reserve_failure("user:dave", "password", T0, &policy).await.unwrap(), Reservation::Allowed(1));
    let later = T0 + Duration::hours(1);
    assert_eq!(store.reserve_failure("user:carol", "password", later, &policy).await.unwrap(), Reservation::Allowed(5));
    assert_eq!(
        store.reserve_failure("user:carol", "password", later + Duration::hours(1), &policy).await.unwrap(),
        Reservation::Allowed(6)
    );
    assert_eq!(
        store.reserve_failure("user:carol", "password", later + Duration::days(1), &policy).await.unwrap(),
        Reservation::Locked(None),
        "hard cap"
    );
    one(store.as_ref(), Write::ClearFailures { key: "user:carol".into(), kind: "password".into() }).await;
    assert_eq!(
        store.reserve_failure("user:carol", "password", later + Duration::days(1), &policy).await.unwrap(),
        Reservation::Allowed(1)
    );
}

/// A success clears the counter while failures are being reserved in parallel (checklist REC-3:
/// one right recovery code among wrong ones). Every reservation gets an answer, never an error.
pub async fn a_counter_cleared_during_parallel_reservations_never_errors(store: Arc<dyn Store>) {
    let policy = LockoutPolicy {
        free_attempts: 1000,
        base_delay_secs: 1,
        max_delay_secs: 1,
        hard_cap: 10_000,
        forget_after_secs: 3600,
    };
    for _ in 0..30 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = vec![];
        for i in 0..16 {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                if i % 2 == 0 {
                    store.reserve_failure("user:erin", "otp", T0, &policy).await.map(|_| ())
                } else {
                    store.apply(Batch(vec![Write::ClearFailures { key: "user:erin".into(), kind: "otp".into() }])).await
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }
    one(store.as_ref(), Write::ClearFailures { key: "user:erin".into(), kind: "otp".into() }).await;
    assert_eq!(store.reserve_failure("user:erin", "otp", T0, &policy).await.unwrap(), Reservation::Allowed(1));
}

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
        context: ClientContext { ip: Some("192.0.2.1".into()), user_agent: Some("ua".into()) },
    }
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

/// One active factor per kind and user, however many requests add one at once.
pub async fn one_active_factor_per_kind_holds_under_concurrency(store: Arc<dyn Store>) {
    let u = user("fay");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let factor = |kind: &str, state: &str| Factor {
        id: FactorId::new(),
        user_id: u.id,
        kind: kind.into(),
        state: state.into(),
        secret_sealed: None,
        last_step: None,
        created_at: T0,
        last_used_at: None,
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for _ in 0..10 {
        let (store, barrier, f) = (store.clone(), barrier.clone(), factor("sms", "active"));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.apply(Batch(vec![Write::InsertFactor(f)])).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let kinds = |fs: Vec<Factor>| fs.into_iter().map(|f| (f.kind, f.state)).collect::<Vec<_>>();
    assert_eq!(kinds(store.factors(u.id).await.unwrap()), vec![("sms".into(), "active".into())]);
    // Two pending authenticator apps confirmed at once: one becomes active, the other conflicts.
    let (a, b) = (factor("totp", "pending"), factor("totp", "pending"));
    let both = Batch(vec![Write::InsertFactor(a.clone()), Write::InsertFactor(b.clone())]);
    store.apply(both).await.unwrap();
    let (s1, s2) = (store.clone(), store.clone());
    let (r1, r2) = tokio::join!(
        s1.apply(Batch(vec![Write::ActivateFactor { id: a.id }])),
        s2.apply(Batch(vec![Write::ActivateFactor { id: b.id }]))
    );
    assert_eq!(
        [&r1, &r2].iter().filter(|r| matches!(r, Err(StoreError::Conflict("factor")))).count(),
        1,
        "{r1:?} {r2:?}"
    );
    assert!(r1.is_ok() || r2.is_ok());
    let active = store.factors(u.id).await.unwrap().into_iter().filter(|f| f.kind == "totp" && f.state == "active");
    assert_eq!(active.count(), 1);
    let err = store.apply(Batch(vec![Write::ActivateFactor { id: FactorId::new() }])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("factor")), "a factor that is gone");
}

pub async fn rate_limits_count_per_bucket_and_window(store: Arc<dyn Store>) {
    let b = vec![("send:account:x".to_string(), 2), ("send:ip:1".to_string(), 3)];
    assert!(store.hit_rate_limits(&b, T0).await.unwrap());
    assert!(store.hit_rate_limits(&b, T0).await.unwrap());
    assert!(!store.hit_rate_limits(&b, T0).await.unwrap(), "third send in the window exceeds 2");
    assert!(store.hit_rate_limits(&b, T0 + Duration::minutes(15)).await.unwrap(), "a new window");
    assert!(store.purge(T0 + Duration::minutes(1)).await.unwrap() >= 2);
}

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

pub async fn the_outbox_is_claimed_once_retried_and_leased(store: Arc<dyn Store>) {
    let m = message("smtp");
    one(store.as_ref(), Write::Enqueue(m.clone())).await;
    let claimed = store.claim_outbox("smtp", T0, 10, Duration::seconds(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    assert!(store.claim_outbox("smtp", T0, 10, Duration::seconds(60)).await.unwrap().is_empty(), "leased");
    store.outbox_failed(m.id, "connection refused", Some(T0 + Duration::seconds(30))).await.unwrap();
    assert!(
        store.claim_outbox("smtp", T0 + Duration::seconds(29), 10, Duration::seconds(60)).await.unwrap().is_empty()
    );
    let again = store.claim_outbox("smtp", T0 + Duration::seconds(30), 10, Duration::seconds(60)).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    // A worker that died mid-send: its lease ends and another worker takes the message.
    let retaken = store.claim_outbox("smtp", T0 + Duration::seconds(91), 10, Duration::seconds(60)).await.unwrap();
    assert_eq!(retaken.len(), 1);
    store.outbox_sent(m.id, T0 + Duration::seconds(92), false).await.unwrap();
    let all = store.outbox_messages(None).await.unwrap();
    assert_eq!(all[0].status, OutboxStatus::Sent);
    assert_eq!(all[0].body_sealed, None, "a delivered body is not kept");
    let dev = message("dev");
    one(store.as_ref(), Write::Enqueue(dev.clone())).await;
    store.claim_outbox("dev", T0, 10, Duration::seconds(60)).await.unwrap();
    store.outbox_sent(dev.id, T0, true).await.unwrap();
    let kept = store.outbox_messages(Some("dev")).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].body_sealed.as_deref(), Some("sealed"));
    let dead = message("smtp");
    one(store.as_ref(), Write::Enqueue(dead.clone())).await;
    store.outbox_failed(dead.id, "gave up", None).await.unwrap();
    assert!(
        store
            .outbox_messages(Some("smtp"))
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == dead.id && m.status == OutboxStatus::Dead)
    );
}

pub async fn each_provider_is_claimed_on_its_own_and_a_renewed_lease_holds(store: Arc<dyn Store>) {
    let (mail, sms) = (message("smtp"), message("sms_webhook"));
    one(store.as_ref(), Write::Enqueue(mail.clone())).await;
    one(store.as_ref(), Write::Enqueue(sms.clone())).await;
    let lease = Duration::seconds(10);
    let got = store.claim_outbox("smtp", T0, 10, lease).await.unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![mail.id], "only the provider asked for");
    // A sender still at work renews its lease: nobody takes the message when the first ends.
    store.renew_outbox(&[mail.id], T0 + Duration::seconds(20)).await.unwrap();
    assert!(store.claim_outbox("smtp", T0 + Duration::seconds(15), 10, lease).await.unwrap().is_empty());
    // A sender that stopped renewing: the message is taken once the renewed lease ends.
    assert_eq!(store.claim_outbox("smtp", T0 + Duration::seconds(20), 10, lease).await.unwrap().len(), 1);
    // Renewing a message that is no longer being sent changes nothing.
    store.outbox_sent(mail.id, T0 + Duration::seconds(21), false).await.unwrap();
    store.renew_outbox(&[mail.id], T0 + Duration::seconds(99)).await.unwrap();
    assert_eq!(store.outbox_messages(Some("smtp")).await.unwrap()[0].status, OutboxStatus::Sent);
    let got = store.claim_outbox("sms_webhook", T0, 10, lease).await.unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![sms.id]);
    // The backlog operators see: undelivered messages per provider and status, oldest first.
    let mut later = message("sms_webhook");
    later.created_at = T0 + Duration::seconds(30);
    one(store.as_ref(), Write::Enqueue(later.clone())).await;
    let mut older = message("sms_webhook");
    older.created_at = T0 - Duration::seconds(30);
    one(store.as_ref(), Write::Enqueue(older)).await;
    store.outbox_failed(later.id, "gave up", None).await.unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    let row = |status| backlog.iter().find(|b| b.provider == "sms_webhook" && b.status == status).cloned();
    assert_eq!(row(OutboxStatus::Pending).map(|b| (b.count, b.oldest)), Some((1, T0 - Duration::seconds(30))));
    assert_eq!(row(OutboxStatus::Sending).map(|b| (b.count, b.oldest)), Some((1, T0)));
    assert_eq!(row(OutboxStatus::Dead).map(|b| b.count), Some(1));
    assert!(backlog.iter().all(|b| b.provider != "smtp"), "a delivered message is no backlog: {backlog:?}");
}

pub async fn parallel_workers_never_claim_one_message_twice(store: Arc<dyn Store>) {
    for _ in 0..20 {
        one(store.as_ref(), Write::Enqueue(message("smtp"))).await;
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = vec![];
    for _ in 0..4 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut ids = vec![];
            loop {
                let got = store.claim_outbox("smtp", T0, 3, Duration::seconds(60)).await.unwrap();
                if got.is_empty() {
                    return ids;
                }
                ids.extend(got.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (20, 20));
}

pub async fn audit_events_are_kept_in_order(store: Arc<dyn Store>) {
    let u = user("eve");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    for (i, kind) in ["sign_up", "sign_in"].iter().enumerate() {
        one(
            store.as_ref(),
            Write::Audit(AuditEvent {
                id: EventId::new(),
                at: T0 + Duration::seconds(i as i64),
                user_id: Some(u.id),
                kind: (*kind).into(),
                outcome: "success".into(),
                ip: Some("127.0.0.1".into()),
                user_agent: None,
                detail: serde_json::json!({"n": i}),
            }),
        )
        .await;
    }
    let events = store.audit_events(Some(u.id), 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), vec!["sign_in", "sign_up"]);
    assert_eq!(events[0].detail, serde_json::json!({"n": 1}));
    assert_eq!(store.audit_events(None, 1).await.unwrap().len(), 1);
}

pub async fn factors_round_trip_and_a_totp_step_is_consumed_once(store: Arc<dyn Store>) {
    let u = user("fiona");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let f = Factor {
        id: FactorId::new(),
        user_id: u.id,
        kind: "totp".into(),
        state: "pending".into(),
        secret_sealed: Some("sealed".into()),
        last_step: None,
        created_at: T0,
        last_used_at: None,
    };
    one(store.as_ref(), Write::InsertFactor(f.clone())).await;
    assert_eq!(store.factors(u.id).await.unwrap(), vec![f.clone()]);
    one(store.as_ref(), Write::ActivateFactor { id: f.id }).await;
    assert_eq!(store.factors(u.id).await.unwrap()[0].state, "active");
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for _ in 0..10 {
        let (store, barrier, id) = (store.clone(), barrier.clone(), f.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.apply(Batch(vec![Write::ConsumeTotpStep { id, step: 100, at: T0 }])).await.is_ok()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 1, "one step, one success");
    let err = store.apply(Batch(vec![Write::ConsumeTotpStep { id: f.id, step: 99, at: T0 }])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("totp_step")), "an earlier step after a later one");
    one(store.as_ref(), Write::ConsumeTotpStep { id: f.id, step: 101, at: T0 + Duration::seconds(30) }).await;
    let got = store.factors(u.id).await.unwrap().remove(0);
    assert_eq!((got.last_step, got.last_used_at), (Some(101), Some(T0 + Duration::seconds(30))));
}

pub async fn a_recovery_code_is_spent_once_and_a_new_set_replaces_the_old(store: Arc<dyn Store>) {
    let u = User { preferred_mfa: Some(latchkey_proto::MfaMethod::Sms), ..user("gwen") };
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap().preferred_mfa, Some(latchkey_proto::MfaMethod::Sms));
    let macs: Vec<String> = (0..10).map(|i| format!("mac-{i}")).collect();
    one(store.as_ref(), Write::ReplaceRecoveryCodes { user_id: u.id, macs: macs.clone(), at: T0 }).await;
    assert_eq!(store.recovery_codes(u.id).await.unwrap().len(), 10);
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for _ in 0..20 {
        let (store, barrier, uid) = (store.clone(), barrier.clone(), u.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.apply(Batch(vec![Write::UseRecoveryCode { user_id: uid, mac: "mac-3".into(), at: T0 }])).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert!(matches!(e, StoreError::Conflict("recovery_code")), "{e}"),
        }
    }
    assert_eq!(ok, 1, "one code, one success");
    let codes = store.recovery_codes(u.id).await.unwrap();
    assert_eq!(codes.iter().filter(|c| c.used_at.is_none()).count(), 9);
    let err = store
        .apply(Batch(vec![Write::UseRecoveryCode { user_id: u.id, mac: "unknown".into(), at: T0 }]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("recovery_code")));
    // Another user's code is not this user's.
    let other = user("hugo");
    one(store.as_ref(), Write::InsertUser(other.clone())).await;
    let err = store
        .apply(Batch(vec![Write::UseRecoveryCode { user_id: other.id, mac: "mac-4".into(), at: T0 }]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("recovery_code")));
    one(store.as_ref(), Write::ReplaceRecoveryCodes { user_id: u.id, macs: vec!["new".into()], at: T0 }).await;
    let codes = store.recovery_codes(u.id).await.unwrap();
    assert_eq!(codes.iter().map(|c| c.mac.as_str()).collect::<Vec<_>>(), vec!["new"], "the old set is gone");
    // Deleting the recovery-codes factor deletes the codes.
    let f = Factor {
        id: FactorId::new(),
        user_id: u.id,
        kind: "recovery_codes".into(),
        state: "active".into(),
        secret_sealed: None,
        last_step: None,
        created_at: T0,
        last_used_at: None,
    };
    one(store.as_ref(), Write::InsertFactor(f.clone())).await;
    one(store.as_ref(), Write::DeleteFactor { id: f.id }).await;
    assert!(store.factors(u.id).await.unwrap().is_empty());
    assert!(store.recovery_codes(u.id).await.unwrap().is_empty());
}

pub async fn expired_flows_are_claimed_once_across_parallel_sweepers(store: Arc<dyn Store>) {
    for i in 0..6 {
        let mut f = flow(None);
        f.expires_at = T0 + Duration::seconds(i);
        one(store.as_ref(), Write::InsertFlow(f)).await;
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = vec![];
    for _ in 0..4 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.claim_expired_flows(T0 + Duration::seconds(3), 100).await.unwrap().len()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        claimed += t.await.unwrap();
    }
    assert_eq!(claimed, 3, "flows expiring at +0, +1, +2 s, each claimed by one sweeper");
    assert_eq!(store.claim_expired_flows(T0 + Duration::seconds(3), 100).await.unwrap().len(), 0);
    assert_eq!(store.claim_expired_flows(T0 + Duration::hours(1), 2).await.unwrap().len(), 2, "the limit holds");
}

pub async fn pin_attempts_cap_under_concurrency_and_revoking_a_device_ends_its_sessions(store: Arc<dyn Store>) {
    let u = user("ivy");
    let d = Device {
        id: DeviceId::new(),
        user_id: u.id,
        name: "Phone".into(),
        platform: "ios".into(),
        possession_key: vec![4; 65],
        biometric_key: vec![4, 1, 2],
        biometric_evidence: Some(BiometricEvidence {
            format: "android_key".into(),
            security_level: "strongbox".into(),
            modality: "face".into(),
        }),
        push: None,
        pin_hash: "$argon2id$fake".into(),
        pin_failures: 0,
        created_at: T0,
        last_used_at: None,
        revoked_at: None,
    };
    let mut on_device = session(u.id);
    on_device.device_id = Some(d.id);
    let other = session(u.id);
    store
        .apply(Batch(vec![
            Write::InsertUser(u.clone()),
            Write::InsertDevice(d.clone()),
            Write::InsertSession(on_device.clone()),
            Write::InsertSession(other.clone()),
        ]))
        .await
        .unwrap();
    assert_eq!(store.device(d.id).await.unwrap(), Some(d.clone()), "the evidence round-trips");
    let push = Some(PushAddress { provider: "fcm".into(), token: "fcm-token-1".into() });
    one(store.as_ref(), Write::SetPushAddress { id: d.id, push: push.clone() }).await;
    assert_eq!(store.device(d.id).await.unwrap().unwrap().push, push, "the push address round-trips");
    one(store.as_ref(), Write::SetPushAddress { id: d.id, push: None }).await;
    assert_eq!(store.device(d.id).await.unwrap(), Some(d.clone()), "and clears");
    assert_eq!(store.devices(u.id).await.unwrap().len(), 1);
    // A new biometric key without evidence clears the old key's evidence with it.
    one(store.as_ref(), Write::UpdateDevice { id: d.id, biometric_key: Some((vec![4, 3], None)), pin_hash: None })
        .await;
    let rekeyed = store.device(d.id).await.unwrap().unwrap();
    assert_eq!((rekeyed.biometric_key, rekeyed.biometric_evidence), (vec![4, 3], None));
    let again = Some((vec![4, 1, 2], d.biometric_evidence.clone()));
    one(store.as_ref(), Write::UpdateDevice { id: d.id, biometric_key: again, pin_hash: None }).await;
    assert_eq!(store.device(d.id).await.unwrap(), Some(d.clone()));
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = vec![];
    for _ in 0..12 {
        let (store, barrier, id) = (store.clone(), barrier.clone(), d.id);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.reserve_pin_attempt(id, 5).await.unwrap()
        }));
    }
    let mut granted = vec![];
    for t in tasks {
        granted.extend(t.await.unwrap());
    }
    granted.sort_unstable();
    assert_eq!(granted, vec![1, 2, 3, 4, 5], "five attempts, each counted once");
    one(store.as_ref(), Write::DeviceUsed { id: d.id, at: T0, reset_pin: true }).await;
    assert_eq!(store.device(d.id).await.unwrap().unwrap().pin_failures, 0);
    one(store.as_ref(), Write::RevokeDevice { id: d.id, at: T0 }).await;
    assert!(store.session(on_device.id).await.unwrap().unwrap().revoked_at.is_some(), "its session ends");
    assert!(store.session(other.id).await.unwrap().unwrap().revoked_at.is_none(), "other sessions do not");
    assert!(store.devices(u.id).await.unwrap().is_empty());
    assert_eq!(store.reserve_pin_attempt(d.id, 5).await.unwrap(), None, "a revoked device has no PIN");
    let gone =
        Write::SetPushAddress { id: d.id, push: Some(PushAddress { provider: "fcm".into(), token: "t".into() }) };
    assert!(matches!(store.apply(Batch(vec![gone])).await, Err(StoreError::Conflict("device"))), "revoked");
    let err = store.apply(Batch(vec![Write::DeviceUsed { id: d.id, at: T0, reset_pin: false }])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict("device")), "a sign-in racing the revocation loses");
}

/// One check: it takes a fresh, migrated store.
pub type Check = fn(Arc<dyn Store>) -> futures_like::BoxFuture;

/// Every check, by name, for a harness that opens a fresh store per check.
pub fn all() -> Vec<(&'static str, Check)> {
    macro_rules! checks {
        ($($f:ident),* $(,)?) => {
            vec![$((stringify!($f), (|s| Box::pin($f(s))) as Check)),*]
        };
    }
    checks![
        users_round_trip_and_usernames_are_unique,
        a_failed_batch_changes_nothing,
        flow_updates_are_compare_and_swap,
        parallel_flow_transitions_yield_exactly_one_winner,
        flow_attempts_never_exceed_the_cap_under_concurrency,
        failure_counters_lock_progressively_and_hold_under_concurrency,
        a_counter_cleared_during_parallel_reservations_never_errors,
        one_active_factor_per_kind_holds_under_concurrency,
        one_pending_approval_per_account_and_each_is_answered_once,
        rate_limits_count_per_bucket_and_window,
        refresh_tokens_rotate_once_and_reuse_revokes_the_family,
        parallel_refreshes_rotate_at_most_once,
        idle_and_absolute_session_limits_stop_rotation,
        a_bound_session_rotates_only_with_its_key_and_a_proof_is_used_once,
        sessions_are_listed_and_revoked,
        the_outbox_is_claimed_once_retried_and_leased,
        parallel_workers_never_claim_one_message_twice,
        each_provider_is_claimed_on_its_own_and_a_renewed_lease_holds,
        audit_events_are_kept_in_order,
        factors_round_trip_and_a_totp_step_is_consumed_once,
        a_recovery_code_is_spent_once_and_a_new_set_replaces_the_old,
        expired_flows_are_claimed_once_across_parallel_sweepers,
        pin_attempts_cap_under_concurrency_and_revoking_a_device_ends_its_sessions,
        recovery_flows_are_listed_per_account_and_change_times_round_trip,
        a_transition_sets_the_attempt_count_it_carries,
        a_single_use_value_takes_effect_in_one_batch_only,
        a_quiet_counter_below_its_cap_is_forgotten_and_one_at_the_cap_is_kept,
    ]
}

/// A boxed future, without a dependency on `futures`.
pub mod futures_like {
    /// A check's future.
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}
