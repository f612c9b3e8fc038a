//! `latchkey bench outbox`: how fast a server's outbox drains to a provider that answers at
//! once. The generator is the provider: it serves the SMS webhook the server is configured with
//! (`sms_webhook_url = http://<--sink>/sms`), queues messages straight into the server's database
//! (sealed with its data key, as the server queues them), and times their arrival.

use anyhow::Context;
use latchkey_core::ids::MessageId;
use latchkey_core::model::{OutboxMessage, OutboxStatus};
use latchkey_core::secret::OsRandom;
use latchkey_core::store::{Batch, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arrival times at the sink.
#[derive(Default)]
struct Arrivals {
    times: Vec<Instant>,
}

/// Queue `messages` SMS messages and report the rate at which they arrive at the sink on
/// `sink`, which answers each `latency` after it came (one JSON line).
pub async fn run(
    data_dir: &Path,
    database_url: Option<String>,
    sink: &str,
    messages: usize,
    latency: Duration,
) -> anyhow::Result<()> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let seen = arrivals.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                // A real provider's round trip: the answer comes `latency` after the request.
                tokio::time::sleep(latency).await;
                if let Ok(mut a) = seen.lock() {
                    a.times.push(Instant::now());
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(sink).await.with_context(|| format!("cannot listen on {sink}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = latchkey_server::config::Config { data_dir: data_dir.to_owned(), database_url, ..Default::default() };
    let (ring, _) = latchkey_server::keys::load(data_dir, false)?;
    let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
    let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
    let store = db.store();
    let now = time::OffsetDateTime::now_utc();
    let mut queued = Vec::with_capacity(messages);
    for i in 0..messages {
        let id = MessageId::new();
        let body = format!("Your bench code is {:06}.", i % 1_000_000);
        queued.push(Write::Enqueue(OutboxMessage {
            id,
            channel: "sms".into(),
            provider: latchkey_server::delivery::SMS_WEBHOOK.into(),
            to: format!("+1555{:07}", i % 10_000_000),
            subject: "bench".into(),
            body_sealed: Some(ring.keys.seal(&OsRandom, &id.to_string(), body.as_bytes())?),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
        }));
    }
    // One transaction: the whole burst is due at once, as after a spike of sign-ups.
    store.apply(Batch(queued)).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = arrivals.lock().map(|a| a.times.len()).unwrap_or(0);
        if n >= messages {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {messages} messages arrived in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait for the sent marks too: a message counts when the server has recorded it.
    loop {
        let pending = store
            .outbox_messages(Some(latchkey_server::delivery::SMS_WEBHOOK))
            .await?
            .iter()
            .filter(|m| m.status != OutboxStatus::Sent)
            .count();
        if pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{pending} messages never marked sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = arrivals.lock().map(|a| a.times.clone()).unwrap_or_default();
    let (first, last) = (times[0], times[times.len() - 1]);
    let span = last.duration_since(first).as_secs_f64().max(1e-6);
    println!(
        "{{\"bench\":\"outbox\",\"messages\":{messages},\"sink_latency_ms\":{},\"arrived\":{},\"seconds_first_to_last\":{span:.3},\"messages_per_second\":{:.1}}}",
        latency.as_millis(),
        times.len(),
        (times.len() - 1) as f64 / span
    );
    Ok(())
}
