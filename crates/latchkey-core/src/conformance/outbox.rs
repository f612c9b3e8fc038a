//! Conformance checks: The outbox: claims per provider, leases and their renewal, retries, the backlog.

use super::*;

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

pub async fn a_webhook_endpoint_round_trips_and_leaves_with_its_undelivered_events(store: Arc<dyn Store>) {
    let ep = |id: &str, at| WebhookEndpoint {
        id: id.into(),
        url: format!("https://hooks.example.com/{id}"),
        events: vec!["user.created".into(), "user.deleted".into()],
        secret_sealed: format!("sealed-{id}"),
        created_at: at,
    };
    let (a, b) = (ep("ep_a", T0 + Duration::seconds(1)), ep("ep_b", T0));
    one(store.as_ref(), Write::InsertWebhook(a.clone())).await;
    one(store.as_ref(), Write::InsertWebhook(b.clone())).await;
    assert_eq!(store.webhook_endpoints().await.unwrap(), vec![b.clone(), a.clone()], "oldest first");
    assert!(store.apply(Batch(vec![Write::InsertWebhook(a.clone())])).await.is_err(), "ids are unique");
    // Three events for a: one delivered, one pending, one dead; one for b.
    let (sent, pending, dead, other) =
        (message("event:ep_a"), message("event:ep_a"), message("event:ep_a"), message("event:ep_b"));
    for m in [&sent, &pending, &dead, &other] {
        one(store.as_ref(), Write::Enqueue(m.clone())).await;
    }
    store.claim_outbox("event:ep_a", T0, 10, Duration::seconds(60)).await.unwrap();
    store.outbox_sent(sent.id, T0, false).await.unwrap();
    store.outbox_failed(dead.id, "answered 500", None).await.unwrap();
    store.outbox_failed(pending.id, "answered 500", Some(T0 + Duration::seconds(5))).await.unwrap();
    one(store.as_ref(), Write::DeleteWebhook { id: "ep_a".into() }).await;
    assert_eq!(store.webhook_endpoints().await.unwrap(), vec![b]);
    let left: Vec<MessageId> = store.outbox_messages(Some("event:ep_a")).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(left, vec![sent.id], "only the delivered record stays");
    assert_eq!(store.outbox_messages(Some("event:ep_b")).await.unwrap().len(), 1, "another endpoint's stay");
}
