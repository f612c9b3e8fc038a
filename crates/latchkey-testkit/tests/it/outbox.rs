//! The outbox under failing providers (issue 11, items 1–3): a hung mail server delays only
//! email, every send has a deadline, one provider's messages go out concurrently, and a message
//! whose worker died is sent again after a short lease, with the same id on the wire.

use crate::delivery::{eventually, smtp_sink};
use latchkey_core::clock::Clock;
use latchkey_core::ids::MessageId;
use latchkey_core::model::{OutboxMessage, OutboxStatus};
use latchkey_core::store::{Batch, Write};
use latchkey_server::webhook::MESSAGE_ID_HEADER;
use latchkey_testkit::proto::SignUpRequest;
use latchkey_testkit::{Backend, TestServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PW: &str = "correct horse battery";

/// A mail server that greets and then never answers (as one stopped with SIGSTOP mid-
/// conversation looks to a client). Returns its URL and how many connections it took.
async fn hung_smtp() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let _ = w.write_all(b"220 hung.test ESMTP\r\n").await;
                // Read and never reply; the socket stays open until the client gives up.
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(_)) = lines.next_line().await {}
                drop(w);
            });
        }
    });
    (url, connections)
}

/// What an SMS provider saw: per request, its message id and whether it was answered while
/// `together` requests were in flight at once.
#[derive(Default)]
struct Seen {
    ids: Vec<String>,
    released_together: usize,
}

/// An SMS provider that holds each request until `together` are in flight at once (a barrier),
/// then answers them all `200`; a request that waits 10 s for company is answered `503`.
async fn sms_barrier(together: usize) -> (String, Arc<Mutex<Seen>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(Seen::default()));
    let barrier = Arc::new(tokio::sync::Barrier::new(together));
    let st = seen.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |headers: HeaderMap| {
            let (st, barrier) = (st.clone(), barrier.clone());
            async move {
                let id = headers.get(MESSAGE_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                st.lock().unwrap().ids.push(id);
                match tokio::time::timeout(StdDuration::from_secs(10), barrier.wait()).await {
                    Ok(_) => {
                        st.lock().unwrap().released_together += 1;
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn sign_up(username: &str, email: Option<&str>, phone: Option<&str>) -> SignUpRequest {
    SignUpRequest {
        username: username.into(),
        password: Some(PW.into()),
        email: email.map(Into::into),
        phone: phone.map(Into::into),
        locale: None,
    }
}

async fn message(s: &TestServer, provider: &str) -> latchkey_core::model::OutboxMessage {
    s.auth.store().outbox_messages(Some(provider)).await.unwrap().remove(0)
}

async fn a_hung_mail_server_delays_only_email(b: Backend) {
    let (smtp, connections) = hung_smtp().await;
    let (sms, seen) = sms_barrier(1).await;
    let s = TestServer::start_with(b, |c| {
        c.smtp_url = Some(smtp);
        c.email_from = "auth@example.com".into();
        c.sms_webhook_url = Some(sms);
        c.sms_webhook_secret = Some("webhook-secret".into());
        c.policy.sign_up.require_email = false;
        // Longer than this test waits: the email is still stuck when the SMS has gone.
        c.outbox.send_timeout_secs = 60;
    })
    .await;
    let c = s.client();
    c.sign_up(&sign_up("mailer", Some("mailer@example.com"), None)).await.unwrap();
    eventually("the mail server's connection", async || (connections.load(Ordering::SeqCst) > 0).then_some(())).await;
    c.sign_up(&sign_up("texter", None, Some("+15550003333"))).await.unwrap();
    eventually("the SMS, while the mail server hangs", async || {
        (seen.lock().unwrap().released_together == 1).then_some(())
    })
    .await;
    // The provider answered; the sent mark follows.
    eventually("the SMS's sent mark", async || {
        (message(&s, "sms_webhook").await.status == OutboxStatus::Sent).then_some(())
    })
    .await;
    assert_eq!(message(&s, "smtp").await.status, OutboxStatus::Sending, "the email is still at the hung server");
}

async fn a_send_that_gets_no_answer_fails_at_its_deadline_and_is_retried(b: Backend) {
    let (smtp, connections) = hung_smtp().await;
    let s = TestServer::start_with(b, |c| {
        c.smtp_url = Some(smtp);
        c.email_from = "auth@example.com".into();
        c.outbox.send_timeout_secs = 1;
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    s.client().sign_up(&sign_up("stuck", Some("stuck@example.com"), None)).await.unwrap();
    let m = eventually("the failed attempt", async || {
        let m = message(&s, "smtp").await;
        (m.status == OutboxStatus::Pending && m.last_error.is_some()).then_some(m)
    })
    .await;
    assert_eq!(m.attempts, 1);
    assert_eq!(m.last_error.as_deref(), Some("smtp: no answer within 1 s"));
    assert_eq!(m.next_attempt_at, m.created_at + Duration::seconds(5), "retried after the backoff");
    // Tried again after its backoff, as any failure is.
    s.clock.advance(Duration::seconds(5));
    eventually("the second attempt", async || (connections.load(Ordering::SeqCst) >= 2).then_some(())).await;
}

async fn one_providers_messages_are_sent_concurrently(b: Backend) {
    // The provider answers only when four requests are in flight at once: a worker that sends
    // one message at a time gets 503s.
    let (sms, seen) = sms_barrier(4).await;
    let s = TestServer::start_with(b, |c| {
        c.sms_webhook_url = Some(sms);
        c.sms_webhook_secret = Some("webhook-secret".into());
        c.policy.sign_up.require_email = false;
        c.outbox.concurrency = 4;
    })
    .await;
    let c = s.client();
    for i in 0..4 {
        c.sign_up(&sign_up(&format!("burst{i}"), None, Some(&format!("+1555000400{i}")))).await.unwrap();
    }
    eventually("four messages answered together", async || (seen.lock().unwrap().released_together == 4).then_some(()))
        .await;
    let all = eventually("the sent marks", async || {
        let all = s.auth.store().outbox_messages(Some("sms_webhook")).await.unwrap();
        all.iter().all(|m| m.status == OutboxStatus::Sent).then_some(all)
    })
    .await;
    assert!(all.iter().all(|m| m.attempts == 1), "each went out on its first attempt: {all:?}");
    let mut ids = seen.lock().unwrap().ids.clone();
    ids.sort();
    let mut expected: Vec<String> = all.iter().map(|m| m.id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each request carries its message's id");
}

async fn a_live_sender_renews_its_lease_and_a_dead_ones_message_is_sent_again_soon(b: Backend) {
    let (smtp, connections) = hung_smtp().await;
    let mut s = TestServer::start_with(b, |c| {
        c.smtp_url = Some(smtp);
        c.email_from = "auth@example.com".into();
        c.outbox.send_timeout_secs = 60;
        c.outbox.lease_secs = 2;
    })
    .await;
    s.client().sign_up(&sign_up("leased", Some("leased@example.com"), None)).await.unwrap();
    eventually("the first send", async || (connections.load(Ordering::SeqCst) == 1).then_some(())).await;
    // Three leases' worth of the server's time passes while the send is in flight, as fast as
    // real time (the sender renews every third of a lease, about 0.7 s): the live sender keeps
    // renewing, so nobody sends it a second time. Without renewal it would be taken after 2 s.
    for _ in 0..24 {
        s.clock.advance(Duration::milliseconds(250));
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "a renewed lease is not taken");
    let claimed = message(&s, "smtp").await;
    assert_eq!((claimed.status, claimed.attempts), (OutboxStatus::Sending, 1));

    // The worker dies mid-send (its server stops; nothing renews any more). Another replica,
    // with a working mail server, sends the message once the lease runs out: seconds, not a
    // minute, and with the same Message-ID, so the receiver can drop a duplicate.
    let (sink, received) = smtp_sink().await;
    s.stop_now();
    let r = s.replica_with(|c| c.smtp_url = Some(sink)).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert!(received.lock().unwrap().is_empty(), "not before the lease ends");
    r.clock.advance(Duration::seconds(2));
    let data = eventually("the re-send", async || received.lock().unwrap().first().cloned()).await;
    assert!(data.contains(&format!("Message-ID: <{}@example.com>", claimed.id)), "{data}");
    let sent = eventually("the sent mark", async || {
        let m = message(&r, "smtp").await;
        (m.status == OutboxStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(sent.attempts, 2);
}

/// A message for `provider`, due now on the server's clock.
fn due_now(s: &TestServer, provider: &str, subject: &str) -> OutboxMessage {
    let id = MessageId::new();
    let now = s.clock.now();
    OutboxMessage {
        id,
        channel: "email".into(),
        provider: provider.into(),
        to: "ines@example.com".into(),
        subject: subject.into(),
        body_sealed: Some(s.seal(&id.to_string(), "the body")),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        created_at: now,
        last_error: None,
        sent_at: None,
    }
}

async fn a_replica_without_the_provider_leaves_a_fresh_message_to_one_that_has_it(b: Backend) {
    // No SMTP here: its worker looks at SMTP's messages only in its lane for providers it does
    // not have (every 20 polls: 0.5 s in tests), and only once they have been due that long.
    let s = TestServer::start(b).await;
    let fresh = due_now(&s, "smtp", "Latchkey: for the replica with SMTP");
    s.auth.store().apply(Batch(vec![Write::Enqueue(fresh.clone())])).await.unwrap();
    // Three of those looks, on a clock that has not moved: it is not taken, so it is not bounced
    // as "not configured" (an attempt spent, its retry pushed out by the backoff).
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let m = message(&s, "smtp").await;
    assert_eq!((m.status, m.attempts, m.last_error), (OutboxStatus::Pending, 0, None), "left for a replica with SMTP");

    // The replica that has SMTP sends it on its first attempt.
    let (sink, received) = smtp_sink().await;
    let r = s.replica_with(|c| c.smtp_url = Some(sink)).await;
    let data = eventually("the send", async || received.lock().unwrap().first().cloned()).await;
    assert!(data.contains("for the replica with SMTP"), "{data}");
    let sent = eventually("the sent mark", async || {
        let m = message(&r, "smtp").await;
        (m.status == OutboxStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(sent.attempts, 1);

    // A message for a provider no replica has is still taken once it has waited that long, and
    // fails as not configured.
    let orphan = due_now(&s, "sms_webhook", "Latchkey: for nobody");
    s.auth.store().apply(Batch(vec![Write::Enqueue(orphan)])).await.unwrap();
    s.clock.advance(Duration::seconds(1));
    let failed = eventually("the failed attempt", async || {
        let m = message(&s, "sms_webhook").await;
        m.last_error.is_some().then_some(m)
    })
    .await;
    assert_eq!(failed.attempts, 1);
    assert!(failed.last_error.as_deref().is_some_and(|e| e.contains("not configured")), "{failed:?}");
}

/// The delivery worker's claims so far, every provider's together.
async fn claims(s: &TestServer) -> f64 {
    let text = s.raw().request("GET", "/metrics", None, None).await.body;
    text.lines()
        .filter(|l| l.starts_with("latchkey_outbox_claims_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The claims once the worker is still: three reads 100 ms apart that agree (a claim a wake-up
/// caused has been made by then).
async fn settled_claims(s: &TestServer) -> f64 {
    let mut last = claims(s).await;
    let mut agreeing = 0;
    for _ in 0..100 {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        let now = claims(s).await;
        if now == last {
            agreeing += 1;
            if agreeing == 3 {
                break;
            }
        } else {
            (last, agreeing) = (now, 0);
        }
    }
    last
}

/// Every flow step used to wake the delivery worker whether or not it queued a message, and
/// each wake-up was a claim on the database per provider: four claims finding nothing per push
/// approval on PostgreSQL. Now only a committed change that queues a message wakes it.
async fn only_a_change_that_queues_a_message_wakes_the_delivery_worker(b: Backend) {
    let s = TestServer::start_with(b, |c| {
        // No poll and no lease renewal within the test: only wake-ups make the worker claim.
        c.outbox.poll_interval_ms = 3_600_000;
        c.outbox.lease_secs = 3_600;
    })
    .await;
    s.create_user("quiet", PW).await;
    let before = settled_claims(&s).await;
    for _ in 0..10 {
        let tokens = s.sign_in("quiet", PW).await;
        s.client().refresh(&tokens.refresh_token).await.unwrap();
    }
    assert_eq!(settled_claims(&s).await, before, "sign-ins and refreshes queue nothing and claim nothing");

    // A change that queues a message still wakes it at once: no poll is due for an hour.
    s.client().forgot_password("quiet").await.unwrap();
    eventually("the reset code's delivery", async || {
        let messages = s.auth.store().outbox_messages(Some(latchkey_server::delivery::DEV)).await.unwrap();
        (messages.len() == 2 && messages.iter().all(|m| m.status == OutboxStatus::Sent)).then_some(())
    })
    .await;
    assert!(settled_claims(&s).await > before, "the reset code was claimed");
}

// The claims metric is process-wide: this test runs alone.
both_stores_alone!(only_a_change_that_queues_a_message_wakes_the_delivery_worker);

both_stores!(
    a_replica_without_the_provider_leaves_a_fresh_message_to_one_that_has_it,
    a_hung_mail_server_delays_only_email,
    a_send_that_gets_no_answer_fails_at_its_deadline_and_is_retried,
    one_providers_messages_are_sent_concurrently,
    a_live_sender_renews_its_lease_and_a_dead_ones_message_is_sent_again_soon,
);
