//! Conformance checks: passkeys (issue 16). A credential id belongs to one account (checklist
//! WA-5); a use moves the counter once, however many assertions race (WA-4); only the owner
//! renames or removes one; deleting the account removes them.

use super::*;
use crate::store::Erasure;

fn passkey(user_id: UserId, credential_id: &str) -> Passkey {
    Passkey {
        id: PasskeyId::new(),
        user_id,
        credential_id: credential_id.into(),
        name: "Laptop".into(),
        aaguid: Some("fbfc3007-154e-4ecc-8c0b-6e020557d7bd".into()),
        credential: "{}".into(),
        sign_count: 0,
        backup_eligible: true,
        backed_up: false,
        created_at: T0,
        last_used_at: None,
    }
}

pub async fn a_credential_id_is_registered_once_across_accounts(store: Arc<dyn Store>) {
    let (a, b) = (user("Ada"), user("Bea"));
    store.apply(Batch(vec![Write::InsertUser(a.clone()), Write::InsertUser(b.clone())])).await.unwrap();
    let first = passkey(a.id, "cred-1");
    one(store.as_ref(), Write::InsertPasskey(first.clone())).await;
    assert_eq!(store.passkeys(a.id).await.unwrap(), vec![first.clone()]);
    assert_eq!(store.passkey_by_credential("cred-1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.passkey_by_credential("cred-2").await.unwrap(), None);
    // The same credential id for another account, or again for the same one: refused.
    for owner in [b.id, a.id] {
        let err = store.apply(Batch(vec![Write::InsertPasskey(passkey(owner, "cred-1"))])).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict("passkey")), "{err:?}");
    }
    assert!(store.passkeys(b.id).await.unwrap().is_empty());
    // Only the owner renames or removes it.
    let rename = |user_id| Write::RenamePasskey { id: first.id, user_id, name: "Work".into() };
    assert!(matches!(store.apply(Batch(vec![rename(b.id)])).await, Err(StoreError::Conflict("passkey"))));
    one(store.as_ref(), rename(a.id)).await;
    assert_eq!(store.passkeys(a.id).await.unwrap()[0].name, "Work");
    let delete = |user_id| Write::DeletePasskey { id: first.id, user_id };
    assert!(matches!(store.apply(Batch(vec![delete(b.id)])).await, Err(StoreError::Conflict("passkey"))));
    one(store.as_ref(), delete(a.id)).await;
    assert!(store.passkeys(a.id).await.unwrap().is_empty());
    // Removed, its credential id may be registered again.
    one(store.as_ref(), Write::InsertPasskey(passkey(b.id, "cred-1"))).await;
}

pub async fn parallel_uses_of_one_passkey_move_its_counter_once(store: Arc<dyn Store>) {
    let u = user("Cleo");
    let k = passkey(u.id, "cred-cleo");
    store.apply(Batch(vec![Write::InsertUser(u.clone()), Write::InsertPasskey(k.clone())])).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for i in 0..10u32 {
        let (store, barrier, id) = (store.clone(), barrier.clone(), k.id);
        tasks.push(tokio::spawn(async move {
            let used = Write::PasskeyUsed {
                id,
                seen_count: 0,
                credential: format!("{{\"n\":{i}}}"),
                sign_count: 1,
                backed_up: true,
                at: T0 + Duration::seconds(i64::from(i)),
            };
            barrier.wait().await;
            match store.apply(Batch(vec![used])).await {
                Ok(()) => true,
                Err(StoreError::Conflict("passkey")) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "one assertion per counter value");
    let stored = store.passkeys(u.id).await.unwrap().remove(0);
    assert_eq!((stored.sign_count, stored.backed_up), (1, true));
    assert!(stored.last_used_at.is_some() && stored.credential.starts_with("{\"n\":"));
    // Deleting the account removes its passkeys.
    let erasure = Erasure {
        user_id: u.id,
        counter_keys: vec![],
        rate_keys: vec![],
        addresses: vec![],
        notices: vec![],
        username_digest: "digest-of-cleo".into(),
        retire_until: T0,
    };
    one(store.as_ref(), Write::EraseUser(Box::new(erasure))).await;
    assert_eq!(store.passkey_by_credential("cred-cleo").await.unwrap(), None);
}

pub async fn an_app_attest_key_registers_once_and_each_counter_is_used_once(store: Arc<dyn Store>) {
    let key = AppAttestKey {
        key_id: "a2V5LWlkLW9mLXRoaXJ0eS10d28tYnl0ZXMtLS0tLS0=".into(),
        app_id: "ABCDE12345.com.example.app".into(),
        public_key: vec![4; 65],
        counter: 0,
        created_at: T0,
        last_used_at: None,
    };
    one(store.as_ref(), Write::InsertAppAttestKey(key.clone())).await;
    let again = store.apply(Batch(vec![Write::InsertAppAttestKey(key.clone())])).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict("app_attest_key")), "{again:?}");
    assert_eq!(store.app_attest_key(&key.key_id).await.unwrap(), Some(key.clone()));
    assert_eq!(store.app_attest_key("unknown").await.unwrap(), None);
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = vec![];
    for _ in 0..10 {
        let (store, barrier, key_id) = (store.clone(), barrier.clone(), key.key_id.clone());
        tasks.push(tokio::spawn(async move {
            let used = Write::AppAttestKeyUsed { key_id, seen: 0, counter: 1, at: T0 };
            barrier.wait().await;
            store.apply(Batch(vec![used])).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "one request per assertion counter");
    let stored = store.app_attest_key(&key.key_id).await.unwrap().unwrap();
    assert_eq!((stored.counter, stored.last_used_at), (1, Some(T0)));
}

/// Batches racing one another (which a store may commit together): one that loses its
/// compare-and-swap leaves nothing behind — not even its writes before the losing one — and the
/// batches beside it that conflict with nothing all take effect.
pub async fn a_batch_that_loses_a_race_rolls_back_whole_and_spares_the_others(store: Arc<dyn Store>) {
    let u = user("Dora");
    let k = passkey(u.id, "cred-dora");
    store.apply(Batch(vec![Write::InsertUser(u.clone()), Write::InsertPasskey(k.clone())])).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = vec![];
    for i in 0..20u32 {
        let (store, barrier, id) = (store.clone(), barrier.clone(), k.id);
        tasks.push(tokio::spawn(async move {
            let mine = user(&format!("racer{i}"));
            let mut batch = vec![Write::InsertUser(mine.clone())];
            // Even tasks race for the passkey's counter; odd ones only add their account.
            if i % 2 == 0 {
                batch.push(Write::PasskeyUsed {
                    id,
                    seen_count: 0,
                    credential: "{}".into(),
                    sign_count: 1,
                    backed_up: false,
                    at: T0,
                });
            }
            barrier.wait().await;
            let won = match store.apply(Batch(batch)).await {
                Ok(()) => true,
                Err(StoreError::Conflict("passkey")) => false,
                Err(e) => panic!("{e}"),
            };
            (i, mine.id, won)
        }));
    }
    let mut racing_wins = 0;
    for t in tasks {
        let (i, id, won) = t.await.unwrap();
        let kept = store.user_by_id(id).await.unwrap().is_some();
        assert_eq!(kept, won, "task {i}: its account exists exactly when its batch won");
        if i % 2 == 0 {
            racing_wins += usize::from(won);
        } else {
            assert!(won, "task {i} conflicted with nothing");
        }
    }
    assert_eq!(racing_wins, 1);
}
