//! Conformance checks for counters that must not grow without bound (issue 11, item 5).

use super::T0;
use crate::model::*;
use crate::store::Store;
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
