//! The Store conformance suite: every implementation must pass all of it. Each check takes a
//! fresh, migrated store. Concurrency checks start N tasks behind a barrier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod approvals;
mod counters;
mod erasure;
mod outbox;
mod passkeys;
mod recovery;
mod risk;
mod sessions;

use crate::ids::*;
use crate::model::*;
use crate::store::{Batch, RotateOutcome, Store, StoreError, Write};
use approvals::{an_approvals_action_round_trips, one_pending_approval_per_account_and_each_is_answered_once};
use counters::{
    a_completing_step_racing_its_flows_reservations_never_errors,
    a_quiet_counter_below_its_cap_is_forgotten_and_one_at_the_cap_is_kept,
    a_steps_reservations_are_one_write_and_hold_under_concurrency,
    a_steps_writes_take_effect_only_with_its_reserved_attempt,
};
use erasure::an_erased_account_leaves_nothing_personal_and_its_username_rests;
use latchkey_proto::Channel;
use outbox::{
    a_webhook_endpoint_round_trips_and_leaves_with_its_undelivered_events,
    each_provider_is_claimed_on_its_own_and_a_renewed_lease_holds, parallel_workers_never_claim_one_message_twice,
    the_outbox_is_claimed_once_retried_and_leased,
};
use passkeys::{
    a_batch_that_loses_a_race_rolls_back_whole_and_spares_the_others,
    a_credential_id_is_registered_once_across_accounts, an_app_attest_key_registers_once_and_each_counter_is_used_once,
    parallel_uses_of_one_passkey_move_its_counter_once,
};
use recovery::{
    a_single_use_value_takes_effect_in_one_batch_only, a_transition_sets_the_attempt_count_it_carries,
    recovery_flows_are_listed_per_account_and_change_times_round_trip,
};
use risk::{
    failures_are_counted_per_account_and_per_address_in_the_window,
    recent_recoveries_and_reports_are_found_in_the_window, sightings_are_upserted_per_account_newest_first,
    the_session_a_flow_started_is_ended_only_for_its_account,
};
use sessions::{
    a_bound_session_rotates_only_with_its_key_and_a_proof_is_used_once,
    a_session_is_raised_in_place_only_while_live_and_its_tokens_spent, a_users_events_page_by_cursor_newest_first,
    idle_and_absolute_session_limits_stop_rotation, parallel_refreshes_rotate_at_most_once,
    refresh_tokens_rotate_once_and_reuse_revokes_the_family,
    remembered_clients_are_used_only_while_live_and_end_with_every_session, sessions_are_listed_and_revoked,
};
use std::sync::Arc;
use time::{Duration, OffsetDateTime, macros::datetime};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00:00 UTC);

fn user(name: &str) -> User {
    User {
        profile: Profile::default(),
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
            invited: false,
        },
        attempts: 0,
        sends: 1,
        version: 0,
        created_at: T0,
        expires_at: T0 + Duration::minutes(10),
        context: ClientContext { ip: Some("127.0.0.1".into()), user_agent: Some("test".into()), app_integrity: None },
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
        flow_id: None,
        step_up_required_at: None,
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

/// A counter that counts and never locks within a check: races on it test the counting alone.
const NEVER_LOCKED: LockoutPolicy = LockoutPolicy {
    free_attempts: 1000,
    base_delay_secs: 1,
    max_delay_secs: 1,
    hard_cap: 10_000,
    forget_after_secs: 3600,
};

/// A success clears the counter while failures are being reserved in parallel (checklist REC-3:
/// one right recovery code among wrong ones). Every reservation gets an answer, never an error.
pub async fn a_counter_cleared_during_parallel_reservations_never_errors(store: Arc<dyn Store>) {
    let policy = NEVER_LOCKED;
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
        a_batch_that_loses_a_race_rolls_back_whole_and_spares_the_others,
        flow_updates_are_compare_and_swap,
        parallel_flow_transitions_yield_exactly_one_winner,
        flow_attempts_never_exceed_the_cap_under_concurrency,
        failure_counters_lock_progressively_and_hold_under_concurrency,
        a_counter_cleared_during_parallel_reservations_never_errors,
        a_steps_reservations_are_one_write_and_hold_under_concurrency,
        a_steps_writes_take_effect_only_with_its_reserved_attempt,
        a_completing_step_racing_its_flows_reservations_never_errors,
        one_active_factor_per_kind_holds_under_concurrency,
        one_pending_approval_per_account_and_each_is_answered_once,
        an_approvals_action_round_trips,
        rate_limits_count_per_bucket_and_window,
        refresh_tokens_rotate_once_and_reuse_revokes_the_family,
        parallel_refreshes_rotate_at_most_once,
        idle_and_absolute_session_limits_stop_rotation,
        a_bound_session_rotates_only_with_its_key_and_a_proof_is_used_once,
        sessions_are_listed_and_revoked,
        a_session_is_raised_in_place_only_while_live_and_its_tokens_spent,
        a_users_events_page_by_cursor_newest_first,
        remembered_clients_are_used_only_while_live_and_end_with_every_session,
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
        sightings_are_upserted_per_account_newest_first,
        failures_are_counted_per_account_and_per_address_in_the_window,
        recent_recoveries_and_reports_are_found_in_the_window,
        the_session_a_flow_started_is_ended_only_for_its_account,
        an_erased_account_leaves_nothing_personal_and_its_username_rests,
        a_webhook_endpoint_round_trips_and_leaves_with_its_undelivered_events,
        a_credential_id_is_registered_once_across_accounts,
        parallel_uses_of_one_passkey_move_its_counter_once,
        an_app_attest_key_registers_once_and_each_counter_is_used_once,
    ]
}

/// A boxed future, without a dependency on `futures`.
pub mod futures_like {
    /// A check's future.
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}
