//! Conformance checks: what the risk policy reads and writes — sightings upserted per account,
//! failures counted per account and per address in a window, recent recoveries and reports, and
//! the session a flow started ended by "this wasn't me".

use super::*;

fn event(user: Option<UserId>, at: OffsetDateTime, kind: &str, outcome: &str, ip: &str) -> Write {
    let ctx = ClientContext { ip: Some(ip.into()), user_agent: None, app_integrity: None };
    crate::auth::audit(at, user, kind, outcome, &ctx, serde_json::json!({}))
}

fn seen(user_id: UserId, value: &str, country: Option<&str>, at: OffsetDateTime) -> Sighting {
    Sighting {
        user_id,
        kind: "network".into(),
        value: value.into(),
        country: country.map(str::to_owned),
        position_e6: country.map(|_| (52_520_000, -13_405_000)),
        first_seen_at: at,
        last_seen_at: at,
    }
}

pub async fn sightings_are_upserted_per_account_newest_first(store: Arc<dyn Store>) {
    let (a, b) = (user("sia"), user("sib"));
    store.apply(Batch(vec![Write::InsertUser(a.clone()), Write::InsertUser(b.clone())])).await.unwrap();
    let later = T0 + Duration::hours(1);
    let agent = Sighting { kind: "agent".into(), value: "hash".into(), ..seen(a.id, "-", None, T0) };
    store
        .apply(Batch(vec![
            Write::Sightings(vec![seen(a.id, "198.51.100.0/24", None, T0), agent]),
            Write::Sightings(vec![seen(a.id, "192.0.2.0/24", Some("DE"), T0 + Duration::minutes(1))]),
            Write::Sightings(vec![seen(b.id, "203.0.113.0/24", None, T0)]),
            // Seen again: last seen and place replaced, first seen kept.
            Write::Sightings(vec![seen(a.id, "198.51.100.0/24", Some("FR"), later)]),
            Write::Sightings(vec![]),
        ]))
        .await
        .unwrap();
    let got = store.sightings(a.id, 10).await.unwrap();
    let shown: Vec<(&str, Option<&str>)> = got.iter().map(|s| (s.value.as_str(), s.country.as_deref())).collect();
    assert_eq!(shown, [("198.51.100.0/24", Some("FR")), ("192.0.2.0/24", Some("DE")), ("hash", None)]);
    assert_eq!((got[0].first_seen_at, got[0].last_seen_at), (T0, later));
    assert_eq!(got[0].position_e6, Some((52_520_000, -13_405_000)), "negative millionths round-trip");
    assert_eq!(store.sightings(a.id, 1).await.unwrap().len(), 1, "limited");
    assert_eq!(store.sightings(b.id, 10).await.unwrap().len(), 1, "per account");
}

pub async fn failures_are_counted_per_account_and_per_address_in_the_window(store: Arc<dyn Store>) {
    let u = user("fay");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    store
        .apply(Batch(vec![
            event(Some(u.id), T0, "sign_in", "failure", "192.0.2.1"),
            event(Some(u.id), T0 + Duration::minutes(5), "sign_in", "failure", "192.0.2.2"),
            event(None, T0 + Duration::minutes(6), "sign_in", "failure", "192.0.2.2"),
            event(Some(u.id), T0 + Duration::minutes(7), "sign_in", "success", "192.0.2.2"),
            event(Some(u.id), T0 + Duration::minutes(8), "totp_code", "failure", "192.0.2.2"),
        ]))
        .await
        .unwrap();
    let since = T0 + Duration::minutes(1);
    let counts = |user, ip, from| {
        let store = store.clone();
        async move { store.risk_counts(user, ip, from, T0).await.unwrap() }
    };
    let c = counts(u.id, Some("192.0.2.2"), T0).await;
    assert_eq!((c.account_failures, c.source_failures), (2, 2), "any account from the address");
    let c = counts(u.id, Some("192.0.2.9"), since).await;
    assert_eq!((c.account_failures, c.source_failures), (1, 0), "the window");
    let c = counts(UserId::new(), None, T0).await;
    assert_eq!((c.account_failures, c.source_failures), (0, 0));
}

pub async fn recent_recoveries_and_reports_are_found_in_the_window(store: Arc<dyn Store>) {
    let u = user("rex");
    one(store.as_ref(), Write::InsertUser(u.clone())).await;
    let at = |since| {
        let store = store.clone();
        async move {
            let c = store.risk_counts(u.id, None, T0, since).await.unwrap();
            (c.recovered_at, c.reported_at)
        }
    };
    assert_eq!(at(T0).await, (None, None));
    let (t1, t2, t3) = (T0 + Duration::minutes(1), T0 + Duration::minutes(2), T0 + Duration::minutes(3));
    store
        .apply(Batch(vec![
            event(Some(u.id), T0, "recovery", "waiting", "192.0.2.1"),
            event(Some(u.id), t1, "recovery", "completed", "192.0.2.1"),
            event(Some(u.id), t2, "recovery", "cancelled", "192.0.2.1"),
            event(Some(u.id), t3, "this_wasnt_me", "sign_in_reported", "192.0.2.1"),
        ]))
        .await
        .unwrap();
    assert_eq!(at(T0).await, (Some(t1), Some(t3)));
    assert_eq!(at(t2).await, (None, Some(t3)), "the window");
}

pub async fn the_session_a_flow_started_is_ended_only_for_its_account(store: Arc<dyn Store>) {
    let (a, b) = (user("fla"), user("flb"));
    let flow = FlowId::new();
    let mine = Session { flow_id: Some(flow), ..session(a.id) };
    let other = session(a.id);
    store
        .apply(Batch(vec![
            Write::InsertUser(a.clone()),
            Write::InsertUser(b.clone()),
            Write::InsertSession(mine.clone()),
            Write::InsertSession(other.clone()),
        ]))
        .await
        .unwrap();
    let end = |user_id| Write::RevokeFlowSession { flow_id: flow, user_id, at: T0, reason: "this_wasnt_me".into() };
    one(store.as_ref(), end(b.id)).await;
    assert!(store.session(mine.id).await.unwrap().unwrap().revoked_at.is_none(), "another account's token");
    one(store.as_ref(), end(a.id)).await;
    let ended = store.session(mine.id).await.unwrap().unwrap();
    assert_eq!(
        (ended.revoked_at, ended.revoke_reason.as_deref(), ended.flow_id),
        (Some(T0), Some("this_wasnt_me"), Some(flow))
    );
    assert!(store.session(other.id).await.unwrap().unwrap().revoked_at.is_none(), "other sessions stay");
}
